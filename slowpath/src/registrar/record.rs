//! The registration store's record written straight from the registrar's state (issue 14):
//! the JSON of a [`PersistedRegistration`](super::PersistedRegistration), byte for byte as
//! serde_json writes it (compact form, its string escapes), without building the owned form
//! and its strings first. The record holds the SA keys in hex: it is written into a
//! [`SecretBuf`], sized from the record before writing, so it is not reallocated, and zeroized
//! on drop (a plain `Vec` that grows leaves the old copy of the keys in freed memory).

use std::io::Write;
use std::net::IpAddr;

use zeroize::Zeroizing;

use super::state::Active;
use super::Registration;

/// A byte buffer for secrets (records holding SA keys): zeroized on drop, and when a write
/// does not fit, its bytes move to a larger allocation and the old one is zeroized before it
/// is freed (a `Vec` growing by itself would leave them in freed memory). Never printed.
#[derive(Default)]
pub struct SecretBuf {
    buf: Zeroizing<Vec<u8>>,
    /// Times the buffer moved to a larger allocation.
    grows: u32,
}

impl SecretBuf {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        SecretBuf {
            buf: Zeroizing::new(Vec::with_capacity(capacity)),
            grows: 0,
        }
    }

    /// Makes room for `additional` more bytes, moving to a larger allocation (the old one
    /// zeroized) if needed.
    #[inline]
    pub fn reserve(&mut self, additional: usize) {
        if self.buf.capacity() - self.buf.len() < additional {
            self.grow(additional);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, additional: usize) {
        let need = self.buf.len().saturating_add(additional);
        let mut bigger = Zeroizing::new(Vec::with_capacity(
            need.max(self.buf.capacity().saturating_mul(2)),
        ));
        bigger.extend_from_slice(&self.buf);
        // The old allocation is zeroized (its whole capacity) as it drops here.
        self.buf = bigger;
        self.grows += 1;
    }

    /// Appends `bytes`.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.reserve(1);
        self.buf.push(byte);
    }

    /// Appends `bytes` between double quotes (one capacity check for the three pieces).
    #[inline]
    pub fn append_quoted(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len() + 2);
        let buf = &mut *self.buf;
        buf.push(b'"');
        buf.extend_from_slice(bytes);
        buf.push(b'"');
    }

    /// Appends `n` bytes that `fill` writes into a zeroed slice (one capacity check for
    /// all of them).
    #[inline]
    pub fn append_with(&mut self, n: usize, fill: impl FnOnce(&mut [u8])) {
        self.reserve(n);
        let at = self.buf.len();
        self.buf.resize(at + n, 0);
        fill(&mut self.buf[at..]);
    }

    /// Forgets the content (overwritten by later writes; all of it zeroized on drop).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The allocation's size.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Times the buffer had to move to a larger allocation (0 when sized right up front).
    pub fn grows(&self) -> u32 {
        self.grows
    }

    /// The buffer, still zeroized on drop.
    pub fn into_inner(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }
}

impl core::ops::Deref for SecretBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl Write for SecretBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl core::fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecretBuf")
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// Room for everything of a record but its strings' and keys' contents: field names,
/// punctuation and quotes (~260 bytes), nine numbers of at most 20 digits, two addresses of
/// at most 45 characters, three algorithm and transport tokens.
const FIXED: usize = 640;

/// The record's size up front (exact but for string escapes, which are rare and take the
/// buffer's zeroizing grow path): so the buffer is allocated once, fitting the record.
fn capacity_for(key: &str, reg: &Registration, active: &Active) -> usize {
    let mut n = FIXED + key.len() + reg.impi.len() + active.contact.len();
    n += reg.impus.iter().map(|u| u.len() + 3).sum::<usize>();
    if let Some(m) = &active.security_server {
        // Each parameter `,["name","value"]`: its name and value (the kept text, with a
        // `;` and `=` beside them) and eight bytes.
        n += m.name.len() + 6 + m.param_text().len() + 8 * m.param_count();
    }
    let keys = &active.set.suite.keys;
    n + 2 * (keys.integ_key.len() + keys.encr_key.len() + keys.salt.len())
}

/// The JSON of registration `key` (`reg`, registered over `active`, expiring at
/// `expires_unix_ms`) as the store keeps it.
///
/// Every string is looked at once, eight bytes at a time ([`needs_escape`]); in the usual
/// record none needs an escape and each is copied between its quotes as it is (the tokens of
/// the transport and the algorithms are ours and never need one). Otherwise each string takes
/// serde_json's escapes ([`string`]).
pub(super) fn encode(
    key: &str,
    reg: &Registration,
    active: &Active,
    expires_unix_ms: u64,
) -> SecretBuf {
    let mut o = SecretBuf::with_capacity(capacity_for(key, reg, active));
    if escapes_in(key, reg, active) {
        write::<true>(&mut o, key, reg, active, expires_unix_ms);
    } else {
        write::<false>(&mut o, key, reg, active, expires_unix_ms);
    }
    o
}

/// [`encode`]'s writer: `ESCAPE` says whether strings are escaped or copied as they are.
fn write<const ESCAPE: bool>(
    out: &mut SecretBuf,
    key: &str,
    reg: &Registration,
    active: &Active,
    expires_unix_ms: u64,
) {
    let str_value = |out: &mut SecretBuf, s: &str| {
        if ESCAPE {
            string(out, s)
        } else {
            quoted(out, s)
        }
    };
    out.extend_from_slice(b"{\"key\":");
    str_value(out, key);
    out.extend_from_slice(b",\"impi\":");
    str_value(out, &reg.impi);
    out.extend_from_slice(b",\"impus\":[");
    for (i, u) in reg.impus.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str_value(out, u);
    }
    out.push(b']');
    out.extend_from_slice(b",\"contact\":");
    str_value(out, &active.contact);
    field_raw(out, b",\"transport\":", active.proto.token());
    field_num(out, b",\"expires_unix_ms\":", expires_unix_ms);
    out.extend_from_slice(b",\"security_server\":");
    match &active.security_server {
        None => out.extend_from_slice(b"null"),
        Some(m) => {
            out.push(b'[');
            str_value(out, &m.name);
            out.extend_from_slice(b",[");
            for (i, (k, v)) in m.params().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'[');
                str_value(out, k);
                out.push(b',');
                str_value(out, v);
                out.push(b']');
            }
            out.extend_from_slice(b"]]");
        }
    }
    let set = &active.set;
    field_addr(out, b",\"set\":{\"ue\":", set.ue);
    field_addr(out, b",\"local\":", set.local);
    field_raw(out, b",\"auth\":", set.suite.auth.token());
    field_raw(out, b",\"encr\":", set.suite.encr.token());
    let keys = &set.suite.keys;
    field_hex(out, b",\"integ_key\":", &keys.integ_key);
    field_hex(out, b",\"encr_key\":", &keys.encr_key);
    field_hex(out, b",\"salt\":", &keys.salt);
    field_num(out, b",\"spi_pc\":", set.spi_pc.into());
    field_num(out, b",\"spi_ps\":", set.spi_ps.into());
    field_num(out, b",\"spi_uc\":", set.spi_uc.into());
    field_num(out, b",\"spi_us\":", set.spi_us.into());
    field_num(out, b",\"port_pc\":", set.port_pc.into());
    field_num(out, b",\"port_ps\":", set.port_ps.into());
    field_num(out, b",\"port_uc\":", set.port_uc.into());
    field_num(out, b",\"port_us\":", set.port_us.into());
    out.extend_from_slice(b"}}");
}

/// Whether any string of the record needs a JSON escape.
fn escapes_in(key: &str, reg: &Registration, active: &Active) -> bool {
    needs_escape(key.as_bytes())
        || needs_escape(reg.impi.as_bytes())
        || reg.impus.iter().any(|u| needs_escape(u.as_bytes()))
        || needs_escape(active.contact.as_bytes())
        || active.security_server.as_ref().is_some_and(|m| {
            // The names and values back to back: one look at all of them.
            needs_escape(m.name.as_bytes()) || needs_escape(m.param_text().as_bytes())
        })
}

/// Whether `b` holds a byte serde_json escapes (`"`, `\\`, or a control character below
/// 0x20): [`akagate_proto::swar::has_control_or_two`], eight bytes a step.
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    akagate_proto::swar::has_control_or_two(b, b'"', b'\\')
}

/// `name`, then `s` between quotes as it is (a string without anything to escape).
#[inline]
fn field_raw<const N: usize>(out: &mut SecretBuf, name: &[u8; N], s: &str) {
    out.extend_from_slice(name);
    quoted(out, s);
}

/// `s` between quotes as it is (a string without anything to escape).
#[inline]
fn quoted(out: &mut SecretBuf, s: &str) {
    out.append_quoted(s.as_bytes());
}

/// `name`, then `n`.
#[inline]
fn field_num<const N: usize>(out: &mut SecretBuf, name: &[u8; N], n: u64) {
    out.extend_from_slice(name);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `name`, then `addr` as a string (what its `Display` writes: an IPv4 address digit by
/// digit, without the formatter).
fn field_addr<const N: usize>(out: &mut SecretBuf, name: &[u8; N], addr: IpAddr) {
    out.extend_from_slice(name);
    out.push(b'"');
    match addr {
        IpAddr::V4(a) => {
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        // Its text needs no escapes; writing into a Vec does not fail.
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
    out.push(b'"');
}

/// `name`, then `bytes` as a lower-case hex string (as the `hex` crate writes it).
fn field_hex<const N: usize>(out: &mut SecretBuf, name: &[u8; N], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(name);
    out.push(b'"');
    out.append_with(2 * bytes.len(), |hex| {
        for (pair, b) in hex.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
    });
    out.push(b'"');
}

/// `s` as a JSON string with serde_json's escapes: `"` and `\` backslashed, the control
/// characters with a short escape as such, the others as `\u00xx`; everything else as is.
fn string(out: &mut SecretBuf, s: &str) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.push(b'"');
    // Nothing to escape: one copy.
    if !needs_escape(b) {
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                DIGITS[usize::from(c >> 4)],
                DIGITS[usize::from(c & 0x0f)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(short);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::{field_addr, field_hex, needs_escape, string, SecretBuf};
    use akagate_proto::suite::{AuthAlg, EncrAlg};
    use akagate_proto::Transport;
    use std::net::IpAddr;

    /// The word-at-a-time check says what a byte-by-byte one says: every byte value at every
    /// position of strings of 0 to 24 bytes (around the 8-byte steps and the overlapping
    /// tail), among plain bytes and among bytes above 0x7f.
    #[test]
    fn the_escape_check_is_exact() {
        let slow = |b: &[u8]| b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
        for len in 0..=24 {
            for fill in [b'a', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
                let mut b = vec![fill; len];
                assert_eq!(needs_escape(&b), slow(&b), "{len} {fill:#x}");
                for at in 0..len {
                    for v in 0..=255u8 {
                        b[at] = v;
                        assert_eq!(needs_escape(&b), slow(&b), "{len} {fill:#x} {at} {v:#x}");
                    }
                    b[at] = fill;
                }
            }
        }
    }

    /// The tokens written without a look for escapes need none.
    #[test]
    fn tokens_need_no_escape() {
        let auth = [
            AuthAlg::HmacMd5_96,
            AuthAlg::HmacSha1_96,
            AuthAlg::AesGmac,
            AuthAlg::Null,
        ];
        let encr = [
            EncrAlg::Null,
            EncrAlg::AesCbc,
            EncrAlg::DesEde3Cbc,
            EncrAlg::AesGcm,
        ];
        let tokens = (auth.iter().map(|a| a.token()))
            .chain(encr.iter().map(|e| e.token()))
            .chain([Transport::Udp, Transport::Tcp].map(Transport::token));
        for t in tokens {
            assert!(!needs_escape(t.as_bytes()), "{t}");
        }
    }

    /// Strings are escaped as serde_json escapes them: every ASCII character, one at a time
    /// and between others, and text beyond ASCII.
    #[test]
    fn strings_are_serde_jsons() {
        let mut all = String::new();
        for c in (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '€', '😀', '\u{2028}'])
        {
            all.push(c);
            for s in [c.to_string(), format!("a{c}b{c}")] {
                let mut out = SecretBuf::default();
                string(&mut out, &s);
                assert_eq!(*out, serde_json::to_vec(&s).unwrap(), "{:?}", s);
            }
        }
        let mut out = SecretBuf::default();
        string(&mut out, &all);
        assert_eq!(*out, serde_json::to_vec(&all).unwrap());
    }

    /// Addresses are written as `Display` writes them, IPv4 and IPv6.
    #[test]
    fn addresses_are_their_display() {
        for a in [
            "0.0.0.0",
            "10.0.255.1",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            let mut out = SecretBuf::default();
            field_addr(&mut out, b"", ip);
            assert_eq!(*out, serde_json::to_vec(&ip).unwrap(), "{a}");
        }
    }

    /// Keys are the `hex` crate's encoding (what stores written so far hold and what a
    /// restart decodes) over every byte value and the key lengths in use, empty included.
    #[test]
    fn keys_are_the_hex_crates_encoding() {
        let all: Vec<u8> = (0..=255).collect();
        for key in [&all[..], &[], &all[7..11], &all[100..120], &all[200..232]] {
            let mut out = SecretBuf::default();
            field_hex(&mut out, b"", key);
            assert_eq!(*out, format!("\"{}\"", hex::encode(key)).into_bytes());
        }
    }

    /// A write that does not fit moves the content to a larger allocation (the old one
    /// zeroized as it drops, `Zeroizing`), keeps every byte, and is counted.
    #[test]
    fn a_secret_buffer_grows_by_moving_its_content() {
        let mut out = SecretBuf::with_capacity(4);
        out.extend_from_slice(b"abc");
        assert_eq!(out.grows(), 0);
        let long: Vec<u8> = (0..=255).collect();
        out.extend_from_slice(&long);
        assert_eq!(out.grows(), 1);
        out.push(b'z');
        assert_eq!(out.grows(), 2, "exactly full after the long write");
        assert!(out.capacity() > 3 + 256);
        assert_eq!(&out[..3], b"abc");
        assert_eq!(&out[3..259], &long[..]);
        assert_eq!(out[259], b'z');
        assert!(!format!("{out:?}").contains("abc"));
    }
}
