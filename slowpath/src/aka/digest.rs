//! RFC 3310 Digest AKA (AKAv1-MD5): the nonce base64(RAND || AUTN [|| server data]) and the
//! RFC 2617 digest response with the RES as password, verified in constant time.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::autn::{Autn, Auts};
use super::digest_params::{CredentialsRef, DigestCredentials};
use super::material::Res;

/// The `algorithm` token of RFC 3310 3.
pub const ALGORITHM_AKAV1_MD5: &str = "AKAv1-MD5";

/// The password of the request that carries `auts` (RFC 3310 3.4): empty.
///
/// Checked against the [derived] worked example in IMS-AKA-NOTES: Test Set 1 inputs with
/// `auts="uoU/PBI8z0TpNZbjVcY="` and an empty password give response
/// da492ad7b08bb89514f214f8c2fdb82b, which `tests/aka_digest.rs` recomputes both through this
/// module and by hashing the RFC 2617 strings directly. The RFC text itself could not be
/// re-read here, so the rule rests on the notes and on the RFC as remembered.
pub const AUTS_PASSWORD: &[u8] = b"";

// Nonces and AUTS are produced with padding but accepted with or without it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A nonce or `auts` value could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AkaNonceError {
    /// Not valid base64.
    #[error("invalid base64")]
    BadBase64,
    /// Decoded nonce shorter than RAND || AUTN (32 bytes).
    #[error("nonce decodes to {0} bytes, fewer than RAND||AUTN (32)")]
    TooShort(usize),
    /// Decoded `auts` is not 14 bytes.
    #[error("auts decodes to {0} bytes, not 14")]
    BadAutsLength(usize),
}

/// The AKA nonce of RFC 3310 3.1: RAND, AUTN and optional server-specific data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkaNonce {
    /// RAND.
    pub rand: [u8; 16],
    /// AUTN.
    pub autn: Autn,
    /// Opaque server data appended after AUTN (usually empty).
    pub server_data: Vec<u8>,
}

impl AkaNonce {
    /// base64(RAND || AUTN || server data), padded.
    pub fn encode(&self) -> String {
        self.text().into()
    }

    /// [`AkaNonce::encode`] kept inline when there is no server data (every nonce of ours:
    /// no allocation).
    pub fn text(&self) -> NonceText {
        if self.server_data.is_empty() {
            // RAND || AUTN from the stack, no intermediate buffer.
            let mut raw = [0u8; 32];
            raw[..16].copy_from_slice(&self.rand);
            raw[16..].copy_from_slice(self.autn.as_bytes());
            return NonceText(Text::Inline(base64_32(&raw)));
        }
        NonceText(Text::Owned(self.encode_long()))
    }

    /// base64 of RAND, AUTN and the server data.
    fn encode_long(&self) -> String {
        let mut raw = Vec::with_capacity(32 + self.server_data.len());
        raw.extend_from_slice(&self.rand);
        raw.extend_from_slice(self.autn.as_bytes());
        raw.extend_from_slice(&self.server_data);
        B64.encode(raw)
    }

    /// Decodes a `nonce` value.
    pub fn decode(nonce: &str) -> Result<Self, AkaNonceError> {
        let raw = B64
            .decode(nonce.trim())
            .map_err(|_| AkaNonceError::BadBase64)?;
        let (rand, rest) = raw
            .split_first_chunk::<16>()
            .ok_or(AkaNonceError::TooShort(raw.len()))?;
        let (autn, server_data) = rest
            .split_first_chunk::<16>()
            .ok_or(AkaNonceError::TooShort(raw.len()))?;
        Ok(AkaNonce {
            rand: *rand,
            autn: Autn::from_bytes(*autn),
            server_data: server_data.to_vec(),
        })
    }
}

/// Standard padded base64 (RFC 4648 4) of exactly 32 bytes, as [`B64`] writes it: ten
/// groups of three bytes and the last two with one `=`, 44 characters written straight into
/// the string's one allocation (the general engine's set-up and length checks cost more
/// than the encoding of a nonce).
fn base64_32(raw: &[u8; 32]) -> [u8; 44] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| ALPHABET[(v & 63) as usize];
    let mut out = [0u8; 44];
    for (src, dst) in raw.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
        let v = u32::from(src[0]) << 16 | u32::from(src[1]) << 8 | u32::from(src[2]);
        dst.copy_from_slice(&[sym(v >> 18), sym(v >> 12), sym(v >> 6), sym(v)]);
    }
    let v = u32::from(raw[30]) << 16 | u32::from(raw[31]) << 8;
    out[40..].copy_from_slice(&[sym(v >> 18), sym(v >> 12), sym(v >> 6), b'=']);
    out
}

/// A nonce as sent: ours (`base64(RAND || AUTN)`, 44 characters) inline, any other (the
/// S-CSCF's in proxy mode, one with server data) owned. Read as a `str` (an inline one checked
/// as UTF-8 on each read, so a caller reads it once) and compared as bytes (no check); two are
/// equal when their texts are. Not secret (it travels in the clear).
#[derive(Clone, Default)]
pub struct NonceText(Text);

#[derive(Clone)]
enum Text {
    /// 44 bytes of the base64 alphabet and `=`.
    Inline([u8; 44]),
    Owned(String),
}

impl Default for Text {
    fn default() -> Self {
        Text::Owned(String::new())
    }
}

impl NonceText {
    /// The nonce's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // ASCII (the alphabet and `=`): the check passes.
            Text::Inline(b) => std::str::from_utf8(b).unwrap_or_default(),
            Text::Owned(s) => s,
        }
    }

    /// The nonce's bytes (no UTF-8 check).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Text::Inline(b) => b,
            Text::Owned(s) => s.as_bytes(),
        }
    }
}

impl core::ops::Deref for NonceText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for NonceText {
    fn from(s: String) -> Self {
        NonceText(Text::Owned(s))
    }
}

impl From<NonceText> for String {
    fn from(n: NonceText) -> Self {
        match n.0 {
            Text::Owned(s) => s,
            Text::Inline(_) => n.as_str().to_owned(),
        }
    }
}

impl PartialEq for NonceText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for NonceText {}

impl PartialEq<str> for NonceText {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for NonceText {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl core::fmt::Debug for NonceText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// base64(AUTS) for the `auts` parameter (RFC 3310 3.4).
pub fn encode_auts(auts: &Auts) -> String {
    B64.encode(auts.as_bytes())
}

/// Decodes an `auts` parameter.
pub fn decode_auts(value: &str) -> Result<Auts, AkaNonceError> {
    let raw = B64
        .decode(value.trim())
        .map_err(|_| AkaNonceError::BadBase64)?;
    let bytes: [u8; 14] = raw
        .as_slice()
        .try_into()
        .map_err(|_| AkaNonceError::BadAutsLength(raw.len()))?;
    Ok(Auts::from_bytes(bytes))
}

/// `qop=auth` inputs: the nonce count (8 hex digits) and the client nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QopAuth<'a> {
    /// `nc`.
    pub nc: &'a str,
    /// `cnonce`.
    pub cnonce: &'a str,
}

/// Everything but the password that enters an RFC 2617 digest response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestInput<'a> {
    /// `username`.
    pub username: &'a str,
    /// `realm`.
    pub realm: &'a str,
    /// The request method, e.g. `REGISTER`.
    pub method: &'a str,
    /// `uri` (digest-uri).
    pub uri: &'a str,
    /// `nonce` exactly as sent.
    pub nonce: &'a str,
    /// `qop=auth` values, or `None` for the RFC 2069 compatible form.
    pub qop: Option<QopAuth<'a>>,
}

/// A digest response: 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestResponse([u8; 32]);

impl DigestResponse {
    /// The response as text.
    pub fn as_str(&self) -> &str {
        // Always ASCII hex, built by `hex_md5`.
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl core::fmt::Debug for DigestResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DigestResponse({})", self.as_str())
    }
}

fn hex_md5(parts: &[&[u8]]) -> [u8; 32] {
    // The parts joined by ':' on the stack, padded there and hashed block by block (a
    // digest's strings are a few hundred bytes); a longer join through the streaming hasher.
    let d: [u8; 16] = super::md5_short::md5_joined(parts).unwrap_or_else(|| {
        let mut h = Md5::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                h.update(b":");
            }
            h.update(p);
        }
        h.finalize().into()
    });
    let mut out = [0u8; 32];
    for (o, &b) in out.chunks_exact_mut(2).zip(&d) {
        o.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    out
}

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0x0f]];
        i += 1;
    }
    t
};

/// `w`'s eight bytes each lower-cased as [`u8::to_ascii_lowercase`] does (only `A`-`Z`
/// change), branch-free: a byte's low seven bits plus a bias set its top bit exactly when it
/// is at least `A` (or more than `Z`), without a carry into the next byte.
fn ascii_lower_word(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let low7 = w & !HIGH;
    let at_least_a = low7 + ONES * u64::from(0x80 - b'A');
    let above_z = low7 + ONES * u64::from(0x80 - b'Z' - 1);
    let upper = at_least_a & !above_z & !w & HIGH;
    w | (upper >> 2)
}

/// RFC 2617 3.2.2.1 response with algorithm MD5 (which AKAv1-MD5 uses, RFC 3310 3.1):
/// H(A1) = MD5(username:realm:password), H(A2) = MD5(method:uri), then
/// MD5(H(A1):nonce:nc:cnonce:qop:H(A2)) with qop=auth, or MD5(H(A1):nonce:H(A2)) without qop.
/// For AKAv1-MD5 the password is the RES as raw bytes (RFC 3310 3.2), or `AUTS_PASSWORD`.
pub fn digest_response(input: &DigestInput<'_>, password: &[u8]) -> DigestResponse {
    response_with_ha2(input, password, &ha2(input.method, input.uri))
}

/// H(A2) = MD5(method:uri) in lower-case hex (RFC 2617 3.2.2.3, `qop=auth` or none): public
/// values only, so it may be kept and reused for every request with the same method and
/// `uri` (every REGISTER of a realm names the same one).
pub(crate) fn ha2(method: &str, uri: &str) -> [u8; 32] {
    hex_md5(&[method.as_bytes(), uri.as_bytes()])
}

/// [`digest_response`] with H(A2) given ([`ha2`] of `input.method` and `input.uri`).
fn response_with_ha2(input: &DigestInput<'_>, password: &[u8], ha2: &[u8; 32]) -> DigestResponse {
    let ha1 = hex_md5(&[input.username.as_bytes(), input.realm.as_bytes(), password]);
    let ha2 = &ha2[..];
    let resp = match input.qop {
        Some(q) => hex_md5(&[
            &ha1,
            input.nonce.as_bytes(),
            q.nc.as_bytes(),
            q.cnonce.as_bytes(),
            b"auth",
            ha2,
        ]),
        None => hex_md5(&[&ha1, input.nonce.as_bytes(), ha2]),
    };
    DigestResponse(resp)
}

/// The AKAv1-MD5 response with RES as password (RFC 3310 3.2).
pub fn aka_response(input: &DigestInput<'_>, res: &Res) -> DigestResponse {
    digest_response(input, res.as_bytes())
}

/// Checks a received `response` against the expected one in constant time (hex digits
/// compared case-insensitively).
pub fn verify_response(input: &DigestInput<'_>, password: &[u8], received: &str) -> bool {
    verify_response_with_ha2(input, password, received, &ha2(input.method, input.uri))
}

/// [`verify_response`] with H(A2) given ([`ha2`] of `input.method` and `input.uri`).
fn verify_response_with_ha2(
    input: &DigestInput<'_>,
    password: &[u8],
    received: &str,
    ha2: &[u8; 32],
) -> bool {
    let expected = response_with_ha2(input, password, ha2);
    let Ok(received) = <&[u8; 32]>::try_from(received.as_bytes()) else {
        return false;
    };
    // Eight bytes at a time: the received digits lower-cased and every difference or'ed
    // together, then one constant-time test of the result.
    let mut diff = 0u64;
    for (r, e) in received.chunks_exact(8).zip(expected.0.chunks_exact(8)) {
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        diff |= ascii_lower_word(word(r)) ^ word(e);
    }
    bool::from(diff.ct_eq(&0))
}

/// `qop=auth` with its `nc` and `cnonce`, when the credentials carry all three.
fn qop_auth<'a>(
    qop: Option<&str>,
    nc: Option<&'a str>,
    cnonce: Option<&'a str>,
) -> Option<QopAuth<'a>> {
    match (qop, nc, cnonce) {
        (Some(_), Some(nc), Some(cnonce)) => Some(QopAuth { nc, cnonce }),
        _ => None,
    }
}

impl DigestCredentials {
    /// The digest inputs carried by these credentials, for a request with `method`.
    pub fn digest_input<'a>(&'a self, method: &'a str) -> DigestInput<'a> {
        DigestInput {
            username: &self.username,
            realm: &self.realm,
            method,
            uri: &self.uri,
            nonce: &self.nonce,
            qop: qop_auth(
                self.qop.as_deref(),
                self.nc.as_deref(),
                self.cnonce.as_deref(),
            ),
        }
    }

    /// Verifies `response` for a request with `method` and the given password (XRES for
    /// AKAv1-MD5), in constant time.
    pub fn verify(&self, method: &str, password: &[u8]) -> bool {
        verify_response(&self.digest_input(method), password, &self.response)
    }
}

impl CredentialsRef<'_> {
    /// [`DigestCredentials::verify`] of the borrowed credentials, with H(A2) given: `ha2`
    /// must be [`ha2`] of `method` and these credentials' `uri` (e.g. kept by an
    /// [`Ha2Cache`]).
    pub(crate) fn verify_with_ha2(&self, method: &str, password: &[u8], ha2: &[u8; 32]) -> bool {
        let input = DigestInput {
            username: &self.username,
            realm: &self.realm,
            method,
            uri: &self.uri,
            nonce: &self.nonce,
            qop: qop_auth(
                self.qop.as_deref(),
                self.nc.as_deref(),
                self.cnonce.as_deref(),
            ),
        };
        verify_response_with_ha2(&input, password, &self.response, ha2)
    }
}

/// The last REGISTER `uri` and its H(A2) ([`ha2`] of `REGISTER` and it): the UEs of a realm
/// all name the same `uri`, so the completing REGISTER's digest is two MD5s instead of
/// three. Holds public values only.
#[derive(Debug, Default)]
pub(crate) struct Ha2Cache {
    uri: String,
    ha2: [u8; 32],
    /// Whether `ha2` was computed (an empty `uri` is a valid one).
    set: bool,
}

impl Ha2Cache {
    /// H(A2) of a REGISTER naming `uri`, from the cache when it was the last one asked.
    pub(crate) fn register(&mut self, uri: &str) -> [u8; 32] {
        if !(self.set && self.uri == uri) {
            self.ha2 = ha2("REGISTER", uri);
            self.uri.clear();
            self.uri.push_str(uri);
            self.set = true;
        }
        self.ha2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nonce's own encoder writes what the general engine writes, for every byte in
    /// every position and random inputs.
    #[test]
    fn base64_of_32_bytes_is_the_engines() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut cases = vec![[0u8; 32], [0xff; 32]];
        for i in 0..32 {
            for b in [1u8, 0x80, 0xfc, 0x3f] {
                let mut raw = [0u8; 32];
                raw[i] = b;
                cases.push(raw);
            }
        }
        for _ in 0..2000 {
            let mut raw = [0u8; 32];
            for b in raw.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            cases.push(raw);
        }
        for raw in cases {
            assert_eq!(&base64_32(&raw)[..], B64.encode(raw).as_bytes());
        }
    }

    /// The word-wise lower-casing is `to_ascii_lowercase` for every byte value in every
    /// position, among random neighbours.
    #[test]
    fn word_lowercase_is_ascii_lowercase() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for pos in 0..8 {
            for v in 0..=255u8 {
                for _ in 0..4 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let mut b = x.to_le_bytes();
                    b[pos] = v;
                    let want = b.map(|c| c.to_ascii_lowercase());
                    assert_eq!(
                        ascii_lower_word(u64::from_le_bytes(b)).to_le_bytes(),
                        want,
                        "{b:?}"
                    );
                }
            }
        }
    }

    /// A digest input of one-letter fields, no qop (RFC 2069 compatibility).
    fn short_input() -> DigestInput<'static> {
        DigestInput {
            username: "u",
            realm: "r",
            method: "REGISTER",
            uri: "sip:r",
            nonce: "n",
            qop: None,
        }
    }

    /// A response is accepted in upper or mixed case, and refused when any one digit
    /// differs, is replaced by a byte that lower-cases to nothing it matches, or the length
    /// differs.
    #[test]
    fn verify_compares_every_digit() {
        let input = short_input();
        let good = digest_response(&input, b"pw");
        let good = good.as_str();
        assert!(verify_response(&input, b"pw", good));
        let mixed: String = good
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert!(verify_response(&input, b"pw", &mixed));
        for i in 0..32 {
            for c in [
                b'0', b'9', b'a', b'f', b'A', b'F', b'g', b'G', 0x10, 0x7f, b'@',
            ] {
                let mut b = good.as_bytes().to_vec();
                if b[i].eq_ignore_ascii_case(&c) {
                    continue;
                }
                b[i] = c;
                let s = String::from_utf8(b).unwrap();
                assert!(!verify_response(&input, b"pw", &s), "{s}");
            }
        }
        assert!(!verify_response(&input, b"pw", &format!("{good}0")));
    }

    #[test]
    fn joined_and_incremental_md5_agree() {
        let long = vec![b'x'; 600];
        for parts in [
            &[&b"a"[..], b"", b"bc"][..],
            &[&long[..400], &long[..111]][..],
            &[&long[..400], &long[..112]][..],
            &[&long[..]][..],
        ] {
            let mut h = Md5::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    h.update(b":");
                }
                h.update(p);
            }
            assert_eq!(
                hex_md5(parts).to_vec(),
                hex::encode(h.finalize()).into_bytes()
            );
        }
    }

    #[test]
    fn the_kept_ha2_is_the_one_computed_whatever_the_uri_sequence() {
        let mut cache = Ha2Cache::default();
        for uri in ["sip:a", "sip:a", "", "", "sip:b", "sip:a", "sip:b", "sip:b"] {
            assert_eq!(cache.register(uri), ha2("REGISTER", uri), "{uri:?}");
            let input = DigestInput {
                username: "u",
                realm: "r",
                method: "REGISTER",
                uri,
                nonce: "n",
                qop: Some(QopAuth {
                    nc: "00000001",
                    cnonce: "c",
                }),
            };
            let good = digest_response(&input, b"pw");
            let h = cache.register(uri);
            assert_eq!(response_with_ha2(&input, b"pw", &h), good);
            assert!(verify_response_with_ha2(&input, b"pw", good.as_str(), &h));
            assert!(!verify_response_with_ha2(&input, b"px", good.as_str(), &h));
        }
    }

    #[test]
    fn nonce_errors() {
        assert_eq!(AkaNonce::decode("!!!"), Err(AkaNonceError::BadBase64));
        assert_eq!(AkaNonce::decode("AAAA"), Err(AkaNonceError::TooShort(3)));
        assert_eq!(decode_auts("AAAA"), Err(AkaNonceError::BadAutsLength(3)));
    }

    #[test]
    fn nonce_with_server_data_round_trips() {
        let n = AkaNonce {
            rand: [1; 16],
            autn: Autn::from_bytes([2; 16]),
            server_data: vec![3, 4, 5],
        };
        assert_eq!(AkaNonce::decode(&n.encode()), Ok(n));
    }

    #[test]
    fn nonce_without_server_data_is_base64_of_rand_and_autn() {
        let n = AkaNonce {
            rand: [0xfa; 16],
            autn: Autn::from_bytes([0x07; 16]),
            server_data: Vec::new(),
        };
        let mut raw = vec![0xfa; 16];
        raw.extend([0x07; 16]);
        assert_eq!(n.encode(), B64.encode(&raw));
        assert_eq!(AkaNonce::decode(&n.encode()), Ok(n));
    }

    /// The inline text of a nonce without server data, the owned one of a nonce with it and
    /// one given as a `String` read, compare and convert as the encoded `String`.
    #[test]
    fn nonce_texts_are_the_encoded_strings() {
        let mut n = AkaNonce {
            rand: [0x5a; 16],
            autn: Autn::from_bytes([0xc3; 16]),
            server_data: Vec::new(),
        };
        let inline = n.text();
        assert!(matches!(inline.0, Text::Inline(_)));
        let s = n.encode();
        assert_eq!((inline.as_str(), &*inline), (s.as_str(), s.as_str()));
        assert_eq!(inline, NonceText::from(s.clone()));
        assert!(inline == s.as_str() && inline == *s.as_str());
        assert_eq!(format!("{inline:?}"), format!("{s:?}"));
        assert_eq!(String::from(inline.clone()), s);
        n.server_data = vec![1, 2, 3];
        let owned = n.text();
        assert_eq!(owned.as_str(), n.encode());
        assert_ne!(owned, inline);
        assert_eq!(NonceText::default().as_str(), "");
    }

    #[test]
    fn verify_rejects_wrong_length_and_accepts_upper_case() {
        let input = short_input();
        let good = digest_response(&input, b"pw");
        assert!(verify_response(
            &input,
            b"pw",
            &good.as_str().to_uppercase()
        ));
        assert!(!verify_response(&input, b"pw", &good.as_str()[..31]));
        assert!(!verify_response(&input, b"px", good.as_str()));
    }
}
