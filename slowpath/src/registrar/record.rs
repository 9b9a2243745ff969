//! The registration store's record written straight from the registrar's state (issue 14):
//! the JSON of a [`PersistedRegistration`](super::PersistedRegistration), byte for byte as
//! serde_json writes it (compact form, its string escapes), without building the owned form
//! and its strings first. The record holds the SA keys in hex: it is written into a buffer
//! zeroized on drop, sized so it is not reallocated (which would leave a copy behind).

use std::io::Write;
use std::net::IpAddr;

use zeroize::Zeroizing;

use super::state::Active;
use super::Registration;

/// Room for one record (under 1 KiB with its Security-Server and hex keys).
const CAPACITY: usize = 2048;

/// The JSON of registration `key` (`reg`, registered over `active`, expiring at
/// `expires_unix_ms`) as the store keeps it.
pub(super) fn encode(
    key: &str,
    reg: &Registration,
    active: &Active,
    expires_unix_ms: u64,
) -> Zeroizing<Vec<u8>> {
    let mut o = Zeroizing::new(Vec::with_capacity(CAPACITY));
    let out: &mut Vec<u8> = &mut o;
    field_str(out, b"{\"key\":", key);
    field_str(out, b",\"impi\":", &reg.impi);
    out.extend_from_slice(b",\"impus\":[");
    for (i, u) in reg.impus.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, u);
    }
    out.push(b']');
    field_str(out, b",\"contact\":", &active.contact);
    field_str(out, b",\"transport\":", active.proto.token());
    field_num(out, b",\"expires_unix_ms\":", expires_unix_ms);
    out.extend_from_slice(b",\"security_server\":");
    match &active.security_server {
        None => out.extend_from_slice(b"null"),
        Some(m) => {
            out.push(b'[');
            string(out, &m.name);
            out.extend_from_slice(b",[");
            for (i, (k, v)) in m.params().enumerate() {
                out.extend_from_slice(if i > 0 { b",[" } else { b"[" });
                string(out, k);
                out.push(b',');
                string(out, v);
                out.push(b']');
            }
            out.extend_from_slice(b"]]");
        }
    }
    let set = &active.set;
    field_addr(out, b",\"set\":{\"ue\":", set.ue);
    field_addr(out, b",\"local\":", set.local);
    field_str(out, b",\"auth\":", set.suite.auth.token());
    field_str(out, b",\"encr\":", set.suite.encr.token());
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
    o
}

/// `name` (the punctuation and quoted field name before the value), then `s` as a string.
fn field_str(out: &mut Vec<u8>, name: &[u8], s: &str) {
    out.extend_from_slice(name);
    string(out, s);
}

/// `name`, then `n`.
fn field_num(out: &mut Vec<u8>, name: &[u8], n: u64) {
    out.extend_from_slice(name);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `name`, then `addr` as a string (what its `Display` writes: an IPv4 address digit by
/// digit, without the formatter).
fn field_addr(out: &mut Vec<u8>, name: &[u8], addr: IpAddr) {
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
fn field_hex(out: &mut Vec<u8>, name: &[u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(name);
    out.push(b'"');
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    out.push(b'"');
}

/// `s` as a JSON string with serde_json's escapes: `"` and `\` backslashed, the control
/// characters with a short escape as such, the others as `\u00xx`; everything else as is.
fn string(out: &mut Vec<u8>, s: &str) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.push(b'"');
    // The usual case: nothing to escape, one copy. Branch-free over the bytes (no early
    // exit), so it runs as vector compares.
    let escapes = b
        .iter()
        .fold(false, |e, &c| e | (c < 0x20) | (c == b'"') | (c == b'\\'));
    if !escapes {
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
    use super::{field_addr, field_hex, string};
    use std::net::IpAddr;

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
                let mut out = Vec::new();
                string(&mut out, &s);
                assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{:?}", s);
            }
        }
        let mut out = Vec::new();
        string(&mut out, &all);
        assert_eq!(out, serde_json::to_vec(&all).unwrap());
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
            let mut out = Vec::new();
            field_addr(&mut out, b"", ip);
            assert_eq!(out, serde_json::to_vec(&ip).unwrap(), "{a}");
        }
    }

    /// Keys are the `hex` crate's encoding (what stores written so far hold and what a
    /// restart decodes) over every byte value and the key lengths in use, empty included.
    #[test]
    fn keys_are_the_hex_crates_encoding() {
        let all: Vec<u8> = (0..=255).collect();
        for key in [&all[..], &[], &all[7..11], &all[100..120], &all[200..232]] {
            let mut out = Vec::new();
            field_hex(&mut out, b"", key);
            assert_eq!(out, format!("\"{}\"", hex::encode(key)).into_bytes());
        }
    }
}
