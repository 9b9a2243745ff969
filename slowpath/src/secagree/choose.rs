//! Choosing one `ipsec-3gpp` offer of a Security-Client by the profile (TS 33.203 7.2), and
//! the Security-Server the P-CSCF answers with.

use akagate_proto::suite::{AuthAlg, EncrAlg};
use akagate_proto::swar;

use super::spans::{ParamSpan, Spans};
use super::{ImsAkaProfile, Mechanism, SecMechanism};

/// The mechanism name of IMS-AKA ESP (TS 33.203 Annex H).
pub const IPSEC_3GPP: &str = "ipsec-3gpp";
/// The mechanism name of SIP over TLS (RFC 3329 2.2).
pub const TLS_MECHANISM: &str = "tls";
/// The `q` value we put in Security-Server (a single mechanism, as real P-CSCFs do).
const SERVER_Q: &str = "0.1";

/// `Security-Server: tls;q=0.1`: what the P-CSCF answers a UE that offers `tls` on a TLS
/// connection (RFC 3329 2.3.1).
pub fn tls_security_server() -> SecMechanism {
    SecMechanism::new(TLS_MECHANISM).with("q", SERVER_Q)
}

/// The offer the P-CSCF picked: algorithms and the UE's SPIs and ports (TS 33.203 7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenMechanism {
    /// Integrity algorithm.
    pub auth: AuthAlg,
    /// Encryption algorithm (`null` when `ealg` was absent).
    pub encr: EncrAlg,
    /// UE's inbound SPI at its protected client port (`spi-c`).
    pub spi_uc: u32,
    /// UE's inbound SPI at its protected server port (`spi-s`).
    pub spi_us: u32,
    /// UE's protected client port (`port-c`).
    pub port_uc: u16,
    /// UE's protected server port (`port-s`).
    pub port_us: u16,
}

impl ChosenMechanism {
    /// The single-entry Security-Server for this choice with our SPIs and ports.
    pub fn security_server(
        &self,
        spi_pc: u32,
        spi_ps: u32,
        port_pc: u16,
        port_ps: u16,
    ) -> SecMechanism {
        let mut t = ServerText::new();
        t.param(b";alg=", |t| t.put(self.auth.token().as_bytes()));
        t.param(b";ealg=", |t| t.put(self.encr.token().as_bytes()));
        t.param(b";prot=", |t| t.put(b"esp"));
        t.param(b";mod=", |t| t.put(b"trans"));
        t.param(b";spi-c=", |t| t.decimal(spi_pc));
        t.param(b";spi-s=", |t| t.decimal(spi_ps));
        t.param(b";port-c=", |t| t.decimal(u32::from(port_pc)));
        t.param(b";port-s=", |t| t.decimal(u32::from(port_ps)));
        t.param(b";q=", |t| t.put(SERVER_Q.as_bytes()));
        t.finish()
    }
}

/// The longest parameter text of our Security-Server: `;alg=hmac-sha-1-96` (18 bytes),
/// `;ealg=des-ede3-cbc` (18), `;prot=esp` (9), `;mod=trans` (10), two SPIs of ten digits
/// (17 each), two ports of five (13 each), `;q=0.1` (6): 121 bytes.
const SERVER_TEXT_MAX: usize = 128;

/// Our Security-Server's parameters written on the stack with their spans, then copied into
/// the mechanism's string once: one allocation and one copy, where appending nine names and
/// values to the string checked its room and called a copy eighteen times (about a third of
/// the instructions).
struct ServerText {
    /// The parameters as rendered (`;name=value`…), `len` bytes of it written.
    buf: [u8; SERVER_TEXT_MAX],
    /// How much of `buf` is written.
    len: usize,
    /// Where each parameter's name and value are in `buf`.
    spans: Spans,
}

impl ServerText {
    /// Nothing written yet.
    fn new() -> Self {
        ServerText {
            buf: [0; SERVER_TEXT_MAX],
            len: 0,
            spans: Spans::default(),
        }
    }

    /// Appends `s`. Our parameters never exceed [`SERVER_TEXT_MAX`] (a test writes the
    /// longest): a piece that would is dropped, not written past the end.
    #[inline]
    fn put(&mut self, s: &[u8]) {
        let end = self.len + s.len();
        if let Some(d) = self.buf.get_mut(self.len..end) {
            d.copy_from_slice(s);
            self.len = end;
        }
    }

    /// Appends `n` in decimal (no leading zeros).
    #[inline]
    fn decimal(&mut self, n: u32) {
        self.put(itoa::Buffer::new().format(n).as_bytes());
    }

    /// Appends one parameter: `lead` (`;name=`, lower-case), then its value as `value`
    /// writes it (never empty here), and records where its name and value are.
    #[inline]
    fn param(&mut self, lead: &[u8], value: impl FnOnce(&mut Self)) {
        debug_assert!(lead.len() > 2 && lead.starts_with(b";") && lead.ends_with(b"="));
        let name_start = self.len + 1;
        self.put(lead);
        let value_start = self.len;
        value(self);
        debug_assert!(self.len > value_start);
        // Below SERVER_TEXT_MAX: every offset fits.
        let at = |i: usize| i as u32;
        self.spans.push(ParamSpan {
            name_start: at(name_start),
            value_start: at(value_start),
            end: at(self.len),
        });
    }

    /// The `ipsec-3gpp` mechanism of these parameters.
    fn finish(self) -> SecMechanism {
        // Every piece written is ASCII (tokens, digits, `;`, `=`).
        let text = std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default();
        SecMechanism::from_rendered(IPSEC_3GPP, text.to_owned(), self.spans)
    }
}

/// Reads one `ipsec-3gpp` offer whose [`Mechanism::offer_params`] are `params` and whose
/// algorithms [`algorithms`] read already: `None` for `prot=ah`, `mod=tun`, `alg=null`
/// without aes-gcm, or missing/invalid SPIs and ports.
fn offer_of(
    params: &[Option<&str>; 8],
    (auth, encr): (AuthAlg, EncrAlg),
) -> Option<ChosenMechanism> {
    // The first of each name counts, as `param` reads it (a view read them when checked).
    let [prot, mode, _, _, spi_c, spi_s, port_c, port_s] = *params;
    // TS 33.203 7.1: ESP in transport mode; absent means the default (esp, trans).
    if prot.is_some_and(|p| !p.eq_ignore_ascii_case("esp"))
        || mode.is_some_and(|p| !p.eq_ignore_ascii_case("trans"))
    {
        return None;
    }
    // TS 33.203 Annex H: `alg=null` is only meaningful with the combined-mode aes-gcm, whose
    // ICV is the integrity protection; with any other ealg the SA would have none.
    if auth == AuthAlg::Null && encr != EncrAlg::AesGcm {
        return None;
    }
    // RFC 4303 2.1: SPIs 0..=255 are reserved.
    let spi_uc = decimal_u32(spi_c?).filter(|s| *s > 255)?;
    let spi_us = decimal_u32(spi_s?).filter(|s| *s > 255)?;
    let port_uc = decimal_u16(port_c?).filter(|p| *p != 0)?;
    let port_us = decimal_u16(port_s?).filter(|p| *p != 0)?;
    Some(ChosenMechanism {
        auth,
        encr,
        spi_uc,
        spi_us,
        port_uc,
        port_us,
    })
}

/// Picks the offer the profile prefers most: the first `encr_alg_list` entry that is offered
/// with any allowed `alg`, then the first such `auth_alg_list` entry; `None` if nothing fits.
/// For `aes-gcm` an offer with `alg=null` is accepted after the listed `alg`s: GCM brings its
/// own integrity, so `auth_alg_list` does not need to (and cannot) name `null`.
pub fn choose<M: Mechanism>(profile: &ImsAkaProfile, offers: &[M]) -> Option<ChosenMechanism> {
    let mut chooser = Chooser::new(profile);
    for m in offers {
        chooser.consider(m);
    }
    chooser.chosen()
}

/// [`choose`] over offers seen one at a time (as a Security-Client is read, with no list of
/// them kept).
#[derive(Debug)]
pub struct Chooser<'p> {
    profile: &'p ImsAkaProfile,
    /// The best valid offer so far and its rank.
    best: Option<((usize, usize), ChosenMechanism)>,
}

impl<'p> Chooser<'p> {
    /// Nothing chosen yet.
    pub fn new(profile: &'p ImsAkaProfile) -> Self {
        Chooser {
            profile,
            best: None,
        }
    }

    /// Takes the next offer into account. One pass, no list of the valid offers: each valid
    /// offer's rank is where its pair comes in the profile's order, and the first offer of
    /// the lowest rank wins — the offer a walk over the profile's pairs would find first.
    pub fn consider(&mut self, m: &impl Mechanism) {
        // The algorithms and their rank first, each read once: an offer the profile does not
        // allow, or that could not beat the best so far, need not be read further (its SPIs
        // and ports parsed): whether it is valid changes nothing.
        let params = m.offer_params();
        let Some(algs) = algorithms(m, &params) else {
            return;
        };
        let Some(r) = rank_of(self.profile, algs) else {
            return;
        };
        if self.best.as_ref().is_some_and(|(b, _)| r >= *b) {
            return;
        }
        if let Some(c) = offer_of(&params, algs) {
            self.best = Some((r, c));
        }
    }

    /// The offer the profile prefers most of those considered, if any fits.
    pub fn chosen(self) -> Option<ChosenMechanism> {
        self.best.map(|(_, c)| c)
    }
}

/// The algorithms an `ipsec-3gpp` offer (its [`Mechanism::offer_params`]: `params`) names,
/// if it names known ones (not yet checked further: see [`offer_of`]).
fn algorithms(m: &impl Mechanism, params: &[Option<&str>; 8]) -> Option<(AuthAlg, EncrAlg)> {
    if !is_lower_token(m.name(), IPSEC_3GPP) {
        return None;
    }
    let [_, _, alg, ealg, ..] = *params;
    let alg = alg?;
    let auth = AUTH_ALGS
        .into_iter()
        .find(|a| is_lower_token(alg, a.token()))?;
    // A missing ealg means null encryption (TS 33.203 Annex H, Rel-5 UEs).
    let encr = match ealg {
        Some(e) => ENCR_ALGS
            .into_iter()
            .find(|a| is_lower_token(e, a.token()))?,
        None => EncrAlg::Null,
    };
    Some((auth, encr))
}

/// Every `alg` [`AuthAlg::from_token`] knows.
const AUTH_ALGS: [AuthAlg; 4] = [
    AuthAlg::HmacMd5_96,
    AuthAlg::HmacSha1_96,
    AuthAlg::AesGmac,
    AuthAlg::Null,
];
/// Every `ealg` [`EncrAlg::from_token`] knows.
const ENCR_ALGS: [EncrAlg; 4] = [
    EncrAlg::Null,
    EncrAlg::AesCbc,
    EncrAlg::DesEde3Cbc,
    EncrAlg::AesGcm,
];

/// Whether `s` is `lower` (a lower-case token) in any case, as `eq_ignore_ascii_case`
/// answers, eight bytes a step: a Security-Client's six offers name the mechanism and two
/// algorithms each, 7 to 13 bytes, which a byte loop compares a byte at a time.
fn is_lower_token(s: &str, lower: &str) -> bool {
    let (a, b) = (s.as_bytes(), lower.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.eq_ignore_ascii_case(b);
    }
    let word = |x: &[u8], at: usize| swar::word_at(x, at).unwrap_or(0);
    let same = |at: usize| swar::lower_ascii_word(word(a, at)) == word(b, at);
    // The whole words, then the last eight bytes (overlapping the last word when `n` is
    // not a multiple of eight).
    (0..n / 8).all(|i| same(8 * i)) && same(n - 8)
}

/// `s.parse::<u32>().ok()` without the generic radix parser (about a third of its
/// instructions for an SPI's ten digits): an optional `+`, then one or more ASCII digits,
/// `None` on overflow.
fn decimal_u32(s: &str) -> Option<u32> {
    let digits = s.strip_prefix('+').unwrap_or(s).as_bytes();
    if digits.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(d))?;
    }
    Some(n)
}

/// `s.parse::<u16>().ok()` ([`decimal_u32`], then the range).
fn decimal_u16(s: &str) -> Option<u16> {
    decimal_u32(s).and_then(|n| u16::try_from(n).ok())
}

/// Where the pair `(auth, encr)` comes in the profile's order (`encr_alg_list` first, then
/// `auth_alg_list`, then `null` for aes-gcm): lower is preferred; `None` if not allowed.
fn rank_of(profile: &ImsAkaProfile, (auth, encr): (AuthAlg, EncrAlg)) -> Option<(usize, usize)> {
    let e = profile.encr_alg_list.iter().position(|e| *e == encr)?;
    let a = match profile.auth_alg_list.iter().position(|a| *a == auth) {
        Some(a) => a,
        None if encr == EncrAlg::AesGcm && auth == AuthAlg::Null => profile.auth_alg_list.len(),
        None => return None,
    };
    Some((e, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagree::parse_security_header;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng};

    /// The six offers of a China Mobile VoLTE phone (real capture, see tests/fixtures/reg).
    const CMCC: &str = "ipsec-3gpp; alg=hmac-md5-96; ealg=des-ede3-cbc; spi-c=1028536224; spi-s=455113919; port-c=8034; port-s=8904,ipsec-3gpp; alg=hmac-md5-96; ealg=aes-cbc; spi-c=1028536224; spi-s=455113919; port-c=8034; port-s=8904,ipsec-3gpp; alg=hmac-md5-96; ealg=null; spi-c=1028536224; spi-s=455113919; port-c=8034; port-s=8904,ipsec-3gpp; alg=hmac-sha-1-96; ealg=des-ede3-cbc; spi-c=1028536224; spi-s=455113919; port-c=8034; port-s=8904,ipsec-3gpp; alg=hmac-sha-1-96; ealg=aes-cbc; spi-c=1028536224; spi-s=455113919; port-c=8034; port-s=8904,ipsec-3gpp; alg=hmac-sha-1-96; ealg=null; spi-c=1028536224; spi-s=455113919; port-c=8034; port-s=8904";

    #[test]
    fn decimals_are_what_std_parses() {
        let mut cases: Vec<String> = [
            "",
            "+",
            "-",
            "++1",
            "+-1",
            "-0",
            "+0",
            "0",
            " 1",
            "1 ",
            "1a",
            "a1",
            "255",
            "256",
            "65535",
            "65536",
            "0065535",
            "4294967295",
            "4294967296",
            "+4294967295",
            "00000000004294967295",
            "99999999999",
            "1028536224",
            "٣",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every string of up to three bytes over the digits, signs and two neighbours of
        // the digit range, and random digit strings of up to 12 digits.
        let alphabet = ['0', '1', '5', '9', '+', '-', '/', ':'];
        for a in alphabet {
            cases.push(a.to_string());
            for b in alphabet {
                cases.push(format!("{a}{b}"));
                for c in alphabet {
                    cases.push(format!("{a}{b}{c}"));
                }
            }
        }
        let mut rng = StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let x: u64 = rng.gen();
            let len = (x % 13) as usize;
            let digits: String = (0..len)
                .map(|i| char::from(b'0' + ((x >> (4 * i)) % 10) as u8))
                .collect();
            cases.push(digits);
        }
        for s in &cases {
            assert_eq!(decimal_u32(s), s.parse::<u32>().ok(), "{s:?}");
            assert_eq!(decimal_u16(s), s.parse::<u16>().ok(), "{s:?}");
        }
    }

    /// The word-at-a-time token compare answers what `eq_ignore_ascii_case` answers, and
    /// the algorithm lists are what `from_token` knows.
    #[test]
    fn lower_tokens_compare_as_eq_ignore_ascii_case() {
        let mut tokens: Vec<&str> = AUTH_ALGS.iter().map(|a| a.token()).collect();
        tokens.extend(ENCR_ALGS.iter().map(|e| e.token()));
        tokens.extend([
            IPSEC_3GPP,
            TLS_MECHANISM,
            "",
            "abcdefgh",
            "abcdefghijklmnopq",
        ]);
        let mut cases: Vec<String> = Vec::new();
        for t in &tokens {
            assert_eq!(*t, t.to_ascii_lowercase());
            cases.push(t.to_string());
            cases.push(t.to_ascii_uppercase());
            // Every one-byte edit: each byte flipped in case, bumped, set high, and the
            // token cut or lengthened.
            for i in 0..t.len() {
                for f in [0x20u8, 0x01, 0x80, 0x40] {
                    let mut b = t.as_bytes().to_vec();
                    b[i] ^= f;
                    cases.push(String::from_utf8_lossy(&b).into_owned());
                }
                cases.push(t[..i].to_string());
            }
            cases.push(format!("{t}x"));
            cases.push(format!("{t}é"));
        }
        for t in &tokens {
            for c in &cases {
                assert_eq!(
                    is_lower_token(c, t),
                    c.eq_ignore_ascii_case(t),
                    "{c:?} {t:?}"
                );
            }
        }
        for c in &cases {
            let auth = AUTH_ALGS.into_iter().find(|a| is_lower_token(c, a.token()));
            let encr = ENCR_ALGS.into_iter().find(|a| is_lower_token(c, a.token()));
            assert_eq!(auth, AuthAlg::from_token(c), "{c:?}");
            assert_eq!(encr, EncrAlg::from_token(c), "{c:?}");
        }
    }

    #[test]
    fn default_profile_picks_sha1_aes_from_six_offers() {
        let c = choose(
            &ImsAkaProfile::default(),
            &parse_security_header(CMCC).unwrap(),
        )
        .unwrap();
        assert_eq!(c.auth, AuthAlg::HmacSha1_96);
        assert_eq!(c.encr, EncrAlg::AesCbc);
        assert_eq!(
            (c.spi_uc, c.spi_us, c.port_uc, c.port_us),
            (1028536224, 455113919, 8034, 8904)
        );
    }

    #[test]
    fn security_server_is_what_the_formatter_wrote() {
        let c = ChosenMechanism {
            auth: AuthAlg::HmacSha1_96,
            encr: EncrAlg::AesCbc,
            spi_uc: 1,
            spi_us: 2,
            port_uc: 3,
            port_us: 4,
        };
        let by_formatter = SecMechanism::new(IPSEC_3GPP)
            .with("alg", c.auth.token())
            .with("ealg", c.encr.token())
            .with("prot", "esp")
            .with("mod", "trans")
            .with("spi-c", 4294967295u32)
            .with("spi-s", 256u32)
            .with("port-c", 65535u16)
            .with("port-s", 5064u16)
            .with("q", SERVER_Q);
        let server = c.security_server(4294967295, 256, 65535, 5064);
        assert_eq!(server, by_formatter);
        // Our name is the program's, not a copy (one allocation a challenge fewer).
        assert!(matches!(
            server.name,
            std::borrow::Cow::Borrowed(IPSEC_3GPP)
        ));
        assert_eq!(
            server.render(),
            "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=4294967295;spi-s=256;port-c=65535;port-s=5064;q=0.1"
        );
        let mut pieces = String::new();
        server.render_pieces(|p| pieces.push_str(p));
        assert_eq!(pieces, server.render());
    }

    #[test]
    fn chooser_over_views_is_choose_over_parsed_offers() {
        let profile = ImsAkaProfile::default();
        let mut chooser = Chooser::new(&profile);
        let n = crate::secagree::each_security_view(CMCC, |v| chooser.consider(&v)).unwrap();
        assert_eq!(n, 6);
        assert_eq!(
            chooser.chosen(),
            choose(&profile, &parse_security_header(CMCC).unwrap())
        );
    }

    /// The choice over views (read in one pass, the canonical reading first) is the choice
    /// over the parsed mechanisms (each offer's parameters walked from its owned list), and
    /// both refuse the same headers, on real Security-Clients and on mutations of them: order
    /// changed, names upper-cased, blanks, bytes dropped, doubled and substituted.
    #[test]
    fn the_choice_over_views_is_the_choice_over_parsed_offers_on_mutated_headers() {
        const COMPACT: &str = "ipsec-3gpp;alg=hmac-sha-1-96;ealg=null;prot=esp;mod=trans;\
                               spi-c=51018934;spi-s=2732688522;port-c=63375;port-s=63374";
        const TWO: &str = "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;\
                           spi-c=1111;spi-s=2222;port-c=31800;port-s=31900, ipsec-3gpp;\
                           alg=hmac-md5-96;ealg=null;prot=esp;mod=trans;spi-c=1111;\
                           spi-s=2222;port-c=31800;port-s=31900";
        const GCM: &str = "ipsec-3gpp;alg=null;ealg=aes-gcm;prot=esp;mod=trans;spi-c=4096;\
                           spi-s=4097;port-c=5100;port-s=6100,ipsec-3gpp;alg=aes-gmac;\
                           ealg=aes-gcm;spi-c=300;spi-s=301;port-c=1;port-s=2";
        let profiles = [ImsAkaProfile::default(), gcm_profile()];
        let bytes = b";=, \t\"aAmM0-9+";
        let mut rng = StdRng::seed_from_u64(28);
        let (mut chosen, mut refused) = (0, 0);
        for round in 0..40_000 {
            let base = [COMPACT, TWO, GCM, CMCC][round % 4];
            let mut text = base.as_bytes().to_vec();
            for _ in 0..rng.gen_range(0..4) {
                let at = rng.gen_range(0..text.len());
                match rng.gen_range(0..6) {
                    0 => {
                        text.remove(at);
                    }
                    1 => text.insert(at, bytes[rng.gen_range(0..bytes.len())]),
                    2 => text[at] = bytes[rng.gen_range(0..bytes.len())],
                    3 => text[at] = text[at].to_ascii_uppercase(),
                    4 => {
                        // A parameter moved to the end of its mechanism's list.
                        let s = String::from_utf8_lossy(&text).into_owned();
                        let mut mechs: Vec<String> = s.split(',').map(str::to_string).collect();
                        let m = rng.gen_range(0..mechs.len());
                        let mut params: Vec<&str> = mechs[m].split(';').collect();
                        if params.len() > 2 {
                            let p = params.remove(rng.gen_range(1..params.len()));
                            params.push(p);
                        }
                        mechs[m] = params.join(";");
                        text = mechs.join(",").into_bytes();
                    }
                    _ => {
                        // A parameter doubled in place.
                        let s = String::from_utf8_lossy(&text).into_owned();
                        let params: Vec<&str> = s.split(';').collect();
                        let p = rng.gen_range(0..params.len());
                        let mut out = params[..=p].to_vec();
                        if p > 0 {
                            out.push(params[p]);
                        }
                        out.extend_from_slice(&params[p + 1..]);
                        text = out.join(";").into_bytes();
                    }
                }
                if text.is_empty() {
                    text.push(b'x');
                }
            }
            let Ok(text) = String::from_utf8(text) else {
                continue;
            };
            let parsed = parse_security_header(&text);
            for profile in &profiles {
                let mut chooser = Chooser::new(profile);
                let viewed = crate::secagree::each_security_view(&text, |v| chooser.consider(&v));
                assert_eq!(viewed.is_ok(), parsed.is_ok(), "{text:?}");
                if let Ok(parsed) = &parsed {
                    let by_parse = choose(profile, parsed);
                    let by_view = chooser.chosen();
                    assert_eq!(by_view, by_parse, "{text:?}");
                    if by_view.is_some() {
                        chosen += 1;
                    }
                } else {
                    refused += 1;
                }
            }
        }
        assert!(chosen > 20_000 && refused > 2_000, "{chosen} {refused}");
    }

    /// Our Security-Server written whole on the stack is the one appended parameter by
    /// parameter (name, text, spans and rendering), for every pair of algorithms and SPIs
    /// and ports from the least to the longest.
    #[test]
    fn the_security_server_written_whole_is_the_one_appended() {
        let auths = [
            AuthAlg::HmacMd5_96,
            AuthAlg::HmacSha1_96,
            AuthAlg::AesGmac,
            AuthAlg::Null,
        ];
        let encrs = [
            EncrAlg::Null,
            EncrAlg::AesCbc,
            EncrAlg::DesEde3Cbc,
            EncrAlg::AesGcm,
        ];
        let mut rng = StdRng::seed_from_u64(2028);
        let mut numbers: Vec<u32> = vec![0, 1, 9, 10, 99, 100, 255, 256, 65535, 65536];
        numbers.extend([999_999_999, 1_000_000_000, u32::MAX - 1, u32::MAX]);
        numbers.extend((0..40).map(|_| rng.gen::<u32>() >> rng.gen_range(0..32)));
        let mut checked = 0;
        for auth in auths {
            for encr in encrs {
                let c = ChosenMechanism {
                    auth,
                    encr,
                    spi_uc: 1,
                    spi_us: 2,
                    port_uc: 3,
                    port_us: 4,
                };
                for (i, &spi_pc) in numbers.iter().enumerate() {
                    let spi_ps = numbers[(i * 7 + 3) % numbers.len()];
                    let port_pc = (numbers[(i * 5 + 1) % numbers.len()] & 0xffff) as u16;
                    let port_ps = (numbers[(i * 3 + 2) % numbers.len()] & 0xffff) as u16;
                    let appended = SecMechanism::new(IPSEC_3GPP)
                        .with_str("alg", auth.token())
                        .with_str("ealg", encr.token())
                        .with_str("prot", "esp")
                        .with_str("mod", "trans")
                        .with_u32("spi-c", spi_pc)
                        .with_u32("spi-s", spi_ps)
                        .with_u32("port-c", u32::from(port_pc))
                        .with_u32("port-s", u32::from(port_ps))
                        .with_str("q", SERVER_Q);
                    let whole = c.security_server(spi_pc, spi_ps, port_pc, port_ps);
                    assert_eq!(whole, appended);
                    assert_eq!(whole.render(), appended.render());
                    assert_eq!(whole.param_count(), 9);
                    checked += 1;
                }
                // The longest text fits.
                let longest = c.security_server(u32::MAX, u32::MAX, 65535, 65535);
                assert!(longest.param_text().len() <= SERVER_TEXT_MAX);
                assert!(longest.render().ends_with(";port-s=65535;q=0.1"));
            }
        }
        assert_eq!(checked, 16 * numbers.len());
    }

    #[test]
    fn profile_order_decides() {
        let p = ImsAkaProfile {
            encr_alg_list: vec![EncrAlg::Null, EncrAlg::AesCbc],
            auth_alg_list: vec![AuthAlg::HmacMd5_96, AuthAlg::HmacSha1_96],
            ..ImsAkaProfile::default()
        };
        let c = choose(&p, &parse_security_header(CMCC).unwrap()).unwrap();
        assert_eq!((c.auth, c.encr), (AuthAlg::HmacMd5_96, EncrAlg::Null));
    }

    #[test]
    fn first_of_equally_preferred_offers_wins_and_later_better_ones_beat_it() {
        let p = ImsAkaProfile {
            encr_alg_list: vec![EncrAlg::AesCbc, EncrAlg::Null],
            auth_alg_list: vec![AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96],
            ..ImsAkaProfile::default()
        };
        let offers = parse_security_header(
            "ipsec-3gpp;alg=hmac-md5-96;ealg=null;spi-c=1000;spi-s=1001;port-c=1;port-s=2, \
             ipsec-3gpp;alg=hmac-md5-96;ealg=aes-cbc;spi-c=2000;spi-s=2001;port-c=1;port-s=2, \
             ipsec-3gpp;alg=hmac-md5-96;ealg=aes-cbc;spi-c=3000;spi-s=3001;port-c=1;port-s=2, \
             ipsec-3gpp;alg=hmac-sha-1-96;ealg=null;spi-c=4000;spi-s=4001;port-c=1;port-s=2",
        )
        .unwrap();
        // aes-cbc before null; md5 is the only alg offered with aes-cbc; of the two such
        // offers the first counts.
        let c = choose(&p, &offers).unwrap();
        assert_eq!(
            (c.auth, c.encr, c.spi_uc),
            (AuthAlg::HmacMd5_96, EncrAlg::AesCbc, 2000)
        );
        // Only null: sha1 before md5, although md5's offer came first.
        let c = choose(
            &p,
            &offers[..1]
                .iter()
                .chain(&offers[3..])
                .cloned()
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(
            (c.auth, c.encr, c.spi_uc),
            (AuthAlg::HmacSha1_96, EncrAlg::Null, 4000)
        );
    }

    #[test]
    fn missing_ealg_is_null_and_unacceptable_offers_are_skipped() {
        let offers = parse_security_header(
            "tls;q=0.2, ipsec-3gpp;alg=hmac-sha-1-96;prot=ah;spi-c=1000;spi-s=1001;port-c=1;port-s=2, \
             ipsec-3gpp;alg=hmac-sha-1-96;spi-c=7;spi-s=1001;port-c=1;port-s=2, \
             ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1000;spi-s=1001;port-c=5062;port-s=5064",
        )
        .unwrap();
        let c = choose(&ImsAkaProfile::default(), &offers).unwrap();
        assert_eq!(c.encr, EncrAlg::Null);
        assert_eq!((c.spi_uc, c.port_uc), (1000, 5062));
    }

    #[test]
    fn nothing_acceptable() {
        let offers = parse_security_header(
            "ipsec-3gpp;alg=hmac-md5-96;ealg=null;spi-c=1000;spi-s=1001;port-c=1;port-s=2",
        )
        .unwrap();
        assert_eq!(choose(&ImsAkaProfile::default(), &offers), None);
    }

    /// How OpenSIPS and Rel-13+ handsets offer AES-GCM.
    const GCM_NULL: &str =
        "ipsec-3gpp; alg=null; ealg=aes-gcm; spi-c=3000; spi-s=3001; port-c=7000; port-s=7001";

    fn gcm_profile() -> ImsAkaProfile {
        ImsAkaProfile {
            encr_alg_list: vec![EncrAlg::AesGcm, EncrAlg::AesCbc],
            ..ImsAkaProfile::default()
        }
    }

    #[test]
    fn alg_null_with_aes_gcm_is_chosen_and_echoed() {
        let c = choose(&gcm_profile(), &parse_security_header(GCM_NULL).unwrap()).unwrap();
        assert_eq!((c.auth, c.encr), (AuthAlg::Null, EncrAlg::AesGcm));
        assert_eq!(
            c.security_server(4096, 4097, 5100, 6100).render(),
            "ipsec-3gpp;alg=null;ealg=aes-gcm;prot=esp;mod=trans;spi-c=4096;spi-s=4097;port-c=5100;port-s=6100;q=0.1"
        );
        // Not offered with aes-gcm allowed by the profile: nothing fits.
        assert_eq!(
            choose(
                &ImsAkaProfile::default(),
                &parse_security_header(GCM_NULL).unwrap()
            ),
            None
        );
    }

    #[test]
    fn hmac_with_aes_gcm_is_still_preferred_over_alg_null() {
        let offers = parse_security_header(&format!(
            "{GCM_NULL}, ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-gcm;spi-c=3000;spi-s=3001;port-c=7000;port-s=7001"
        ))
        .unwrap();
        let c = choose(&gcm_profile(), &offers).unwrap();
        assert_eq!((c.auth, c.encr), (AuthAlg::HmacSha1_96, EncrAlg::AesGcm));
    }

    #[test]
    fn alg_null_without_aes_gcm_is_never_accepted() {
        let p = ImsAkaProfile {
            encr_alg_list: vec![EncrAlg::AesGcm, EncrAlg::AesCbc, EncrAlg::Null],
            auth_alg_list: vec![AuthAlg::HmacSha1_96, AuthAlg::Null],
            ..ImsAkaProfile::default()
        };
        for ealg in ["null", "aes-cbc", "des-ede3-cbc"] {
            let offers = parse_security_header(&format!(
                "ipsec-3gpp;alg=null;ealg={ealg};spi-c=3000;spi-s=3001;port-c=7000;port-s=7001"
            ))
            .unwrap();
            assert_eq!(choose(&p, &offers), None, "ealg={ealg}");
        }
        // alg=null without ealg (null encryption) carries no protection at all.
        let offers = parse_security_header(
            "ipsec-3gpp;alg=null;spi-c=3000;spi-s=3001;port-c=7000;port-s=7001",
        )
        .unwrap();
        assert_eq!(choose(&p, &offers), None);
    }

    #[test]
    fn security_server_rendering_is_stable() {
        let c = choose(
            &ImsAkaProfile::default(),
            &parse_security_header(CMCC).unwrap(),
        )
        .unwrap();
        assert_eq!(
            c.security_server(4096, 4097, 5100, 6100).render(),
            "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=4096;spi-s=4097;port-c=5100;port-s=6100;q=0.1"
        );
    }
}
