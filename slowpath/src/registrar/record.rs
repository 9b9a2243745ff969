//! The registration store's record written straight from the registrar's state (issue 14):
//! a binary record ([`VERSION`] 2) of a [`PersistedRegistration`], without building the owned
//! form and its strings first, and its decoder ([`decode`]). Version 1 was the owned form's
//! JSON (serde_json's compact form, its first byte `{`): the store still reads it with
//! serde_json. The record holds the SA keys (raw bytes): it is written into a [`SecretBuf`],
//! sized from the record before writing, so it is not reallocated, and zeroized on drop (a
//! plain `Vec` that grows leaves the old copy of the keys in freed memory).
//!
//! ```text
//! record := VERSION:u8 expires_unix_ms:u64 spi_pc spi_ps spi_uc spi_us:u32
//!           port_pc port_ps port_uc port_us:u16 ue:addr local:addr
//!           key impi contact transport auth encr:str integ_key encr_key salt:bytes
//!           impus:(n:u32 str[n]) security_server:(0 | 1 name:str n:u32 (str str)[n])
//! str    := len:u32 utf8[len]        bytes := len:u32 byte[len]
//! addr   := 4 octets[4] | 6 octets[16]                      (integers little-endian)
//! ```

use std::io::Write;
use std::net::IpAddr;

use zeroize::{Zeroize, Zeroizing};

use super::state::Active;
use super::{PersistedRegistration, PersistedSet, Registration};

/// A byte buffer for secrets (records holding SA keys): zeroized on drop, and when a write
/// does not fit, its bytes move to a larger allocation and the old one is zeroized before it
/// is freed (a `Vec` growing by itself would leave them in freed memory). Never printed.
#[derive(Default)]
pub struct SecretBuf {
    buf: Zeroizing<Vec<u8>>,
    /// Times the buffer moved to a larger allocation.
    grows: u32,
}

/// [`SecretBuf::wipe`]'s piece.
const WIPE_CHUNK: usize = 1024;

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
        // The old allocation is zeroized (its whole capacity, word-wise) as it drops here.
        super::persist::wipe_on_drop(&mut self.buf);
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

    /// Appends `n` bytes that `fill` writes into a zeroed slice (one capacity check for
    /// all of them).
    #[inline]
    pub fn append_with(&mut self, n: usize, fill: impl FnOnce(&mut [u8])) {
        self.reserve(n);
        let at = self.buf.len();
        self.buf.resize(at + n, 0);
        fill(&mut self.buf[at..]);
    }

    /// Keeps the first `len` bytes (the rest stays in the allocation, zeroized on drop).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Forgets the content (overwritten by later writes; all of it zeroized on drop).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Empties the buffer and zeroizes the bytes it held now, behind an optimisation barrier
    /// (`zeroize` of the spare capacity they became, in 1 KiB pieces), keeping the
    /// allocation for the next writes.
    pub fn wipe(&mut self) {
        let used = self.buf.len();
        self.buf.clear();
        if let Some(held) = self.buf.spare_capacity_mut().get_mut(..used) {
            // In pieces below glibc's `rep stosb` threshold (2 KiB): the same stores
            // natively, but callgrind counts `rep stosb` a byte an instruction (~7k for a
            // turn's records), vector stores 32 bytes an instruction.
            for piece in held.chunks_mut(WIPE_CHUNK) {
                piece.zeroize();
            }
        }
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
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
    pub fn into_inner(mut self) -> Zeroizing<Vec<u8>> {
        std::mem::take(&mut self.buf)
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        // The whole allocation wiped word-wise by the `Zeroizing` drop that follows.
        super::persist::wipe_on_drop(&mut self.buf);
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

/// The record's first byte: its format's version (2, binary; 1 was JSON, first byte `{`).
pub const VERSION: u8 = 2;

/// The fixed part: the version, the expiry, four SPIs and four ports.
const FIXED: usize = 1 + 8 + 4 * 4 + 4 * 2;

/// Bytes of an address in the record.
fn addr_len(a: IpAddr) -> usize {
    match a {
        IpAddr::V4(_) => 1 + 4,
        IpAddr::V6(_) => 1 + 16,
    }
}

/// The record's size, exact but for the Security-Server's parameters, counted from their
/// rendered text (`;name=value`…, two bytes a parameter more): so the buffer is allocated
/// once, fitting it, and written in one pass without a capacity check per field.
fn size_of(key: &str, reg: &Registration, active: &Active) -> usize {
    let set = &active.set;
    let keys = &set.suite.keys;
    let mut n = FIXED + addr_len(set.ue) + addr_len(set.local);
    n += 6 * 4 + key.len() + reg.impi.len() + active.contact.len();
    n += active.proto.token().len() + set.suite.auth.token().len();
    n += set.suite.encr.token().len();
    n += 3 * 4 + keys.integ_key.len() + keys.encr_key.len() + keys.salt.len();
    n += 4 + reg.impus.iter().map(|u| 4 + u.len()).sum::<usize>();
    n += 1;
    if let Some(m) = &active.security_server {
        n += 4 + m.name.len() + 4 + m.param_text().len() + 8 * m.param_count();
    }
    n
}

/// The record of registration `key` (`reg`, registered over `active`, expiring at
/// `expires_unix_ms`) as the store keeps it: sized first ([`size_of`]), then written into
/// the buffer's zeroed bytes in one pass ([`Cursor`]) and cut to what was written.
pub(super) fn encode(
    key: &str,
    reg: &Registration,
    active: &Active,
    expires_unix_ms: u64,
) -> SecretBuf {
    let mut out = SecretBuf::with_capacity(size_of(key, reg, active));
    encode_into(key, reg, active, expires_unix_ms, &mut out);
    out
}

/// [`encode`] appending the record to `out` (a buffer the records of a turn share, so a
/// record costs no allocation of its own); returns where it is in `out`.
pub(super) fn encode_into(
    key: &str,
    reg: &Registration,
    active: &Active,
    expires_unix_ms: u64,
    out: &mut SecretBuf,
) -> core::ops::Range<usize> {
    let n = size_of(key, reg, active);
    let start = out.len();
    let mut written = 0;
    out.append_with(n, |buf| {
        let mut c = Cursor { buf, at: 0 };
        let set = &active.set;
        c.put(&[VERSION]);
        c.put(&expires_unix_ms.to_le_bytes());
        for spi in [set.spi_pc, set.spi_ps, set.spi_uc, set.spi_us] {
            c.put(&spi.to_le_bytes());
        }
        for port in [set.port_pc, set.port_ps, set.port_uc, set.port_us] {
            c.put(&port.to_le_bytes());
        }
        c.addr(set.ue);
        c.addr(set.local);
        for s in [
            key,
            &reg.impi,
            &active.contact,
            active.proto.token(),
            set.suite.auth.token(),
            set.suite.encr.token(),
        ] {
            c.bytes(s.as_bytes());
        }
        let keys = &set.suite.keys;
        for k in [&keys.integ_key[..], &keys.encr_key, &keys.salt] {
            c.bytes(k);
        }
        c.count(reg.impus.len());
        for u in reg.impus.iter() {
            c.bytes(u.as_bytes());
        }
        match &active.security_server {
            None => c.put(&[0]),
            Some(m) => {
                c.put(&[1]);
                c.bytes(m.name.as_bytes());
                c.count(m.param_count());
                for (k, v) in m.param_bytes() {
                    c.bytes(k);
                    c.bytes(v);
                }
            }
        }
        written = c.at;
    });
    debug_assert!(written <= n, "size_of is an upper bound");
    out.truncate(start + written.min(n));
    start..out.len()
}

/// [`encode`]'s writer over the record's bytes, sized up front. A write past the end (a
/// size the record does not have) is dropped, never a panic; the tests hold the size exact.
struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    /// Writes `b`.
    #[inline]
    fn put(&mut self, b: &[u8]) {
        let end = self.at + b.len();
        if let Some(dst) = self.buf.get_mut(self.at..end) {
            dst.copy_from_slice(b);
        }
        self.at = end;
    }

    /// A length or count as the record's `u32` (saturated, as [`count`]).
    #[inline]
    fn count(&mut self, n: usize) {
        self.put(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }

    /// `b` after its length.
    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.put(b);
    }

    /// An address: its family's tag (4 or 6) and its octets.
    #[inline]
    fn addr(&mut self, a: IpAddr) {
        match a {
            IpAddr::V4(a) => {
                let o = a.octets();
                self.put(&[4, o[0], o[1], o[2], o[3]]);
            }
            IpAddr::V6(a) => {
                self.put(&[6]);
                self.put(&a.octets());
            }
        }
    }
}

/// The record of the owned form `r` (byte for byte what [`encode`] writes from the
/// registrar's state for the same registration): for tests and tools. `None` if a key is
/// not hex (the owned form holds them as hex).
pub fn encode_owned(r: &PersistedRegistration) -> Option<SecretBuf> {
    let s = &r.set;
    let keys = [&s.integ_key, &s.encr_key, &s.salt].map(|k| hex::decode(k).map(Zeroizing::new));
    let [Ok(integ), Ok(encr), Ok(salt)] = keys else {
        return None;
    };
    let mut out = SecretBuf::with_capacity(1024);
    out.push(VERSION);
    out.extend_from_slice(&r.expires_unix_ms.to_le_bytes());
    for spi in [s.spi_pc, s.spi_ps, s.spi_uc, s.spi_us] {
        out.extend_from_slice(&spi.to_le_bytes());
    }
    for port in [s.port_pc, s.port_ps, s.port_uc, s.port_us] {
        out.extend_from_slice(&port.to_le_bytes());
    }
    addr(&mut out, s.ue);
    addr(&mut out, s.local);
    for t in [&r.key, &r.impi, &r.contact, &r.transport, &s.auth, &s.encr] {
        bytes(&mut out, t.as_bytes());
    }
    for k in [&integ, &encr, &salt] {
        bytes(&mut out, k);
    }
    count(&mut out, r.impus.len());
    for u in &r.impus {
        bytes(&mut out, u.as_bytes());
    }
    match &r.security_server {
        None => out.push(0),
        Some((name, params)) => {
            out.push(1);
            bytes(&mut out, name.as_bytes());
            count(&mut out, params.len());
            for (k, v) in params {
                bytes(&mut out, k.as_bytes());
                bytes(&mut out, v.as_bytes());
            }
        }
    }
    Some(out)
}

/// A length or count as the record's `u32` (a SIP message, a few KiB, never holds more;
/// saturated, so a record that could not be read back is refused by [`decode`], no panic).
#[inline]
fn count(out: &mut SecretBuf, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// `b` after its length.
#[inline]
fn bytes(out: &mut SecretBuf, b: &[u8]) {
    out.reserve(4 + b.len());
    count(out, b.len());
    out.extend_from_slice(b);
}

/// An address: its family's tag (4 or 6) and its octets.
#[inline]
fn addr(out: &mut SecretBuf, a: IpAddr) {
    match a {
        IpAddr::V4(a) => {
            let o = a.octets();
            out.extend_from_slice(&[4, o[0], o[1], o[2], o[3]]);
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// The registration in a record [`encode`] wrote; `None` if `record` is not one (another
/// version, cut short, bytes left over, a string not UTF-8, an unknown address family).
/// Never panics, whatever the bytes (the store's file is input). The keys come back as the
/// owned form's hex strings (zeroized on its drop).
pub fn decode(record: &[u8]) -> Option<PersistedRegistration> {
    let mut r = Reader(record);
    if r.u8()? != VERSION {
        return None;
    }
    let expires_unix_ms = r.u64()?;
    let (spi_pc, spi_ps, spi_uc, spi_us) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    let (port_pc, port_ps, port_uc, port_us) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    let (ue, local) = (r.addr()?, r.addr()?);
    let key = r.string()?;
    let impi = r.string()?;
    let contact = r.string()?;
    let transport = r.string()?;
    let auth = r.string()?;
    let encr = r.string()?;
    let integ_key = hex::encode(r.bytes()?);
    let encr_key = hex::encode(r.bytes()?);
    let salt = hex::encode(r.bytes()?);
    let n = r.u32()?;
    let mut impus = Vec::new();
    for _ in 0..n {
        impus.push(r.string()?);
    }
    let security_server = match r.u8()? {
        0 => None,
        1 => {
            let name = r.string()?;
            let n = r.u32()?;
            let mut params = Vec::new();
            for _ in 0..n {
                params.push((r.string()?, r.string()?));
            }
            Some((name, params))
        }
        _ => return None,
    };
    let set = PersistedSet {
        ue,
        local,
        auth,
        encr,
        integ_key,
        encr_key,
        salt,
        spi_pc,
        spi_ps,
        spi_uc,
        spi_us,
        port_pc,
        port_ps,
        port_uc,
        port_us,
    };
    r.0.is_empty().then_some(PersistedRegistration {
        key,
        impi,
        impus,
        contact,
        transport,
        expires_unix_ms,
        security_server,
        set,
    })
}

/// [`decode`]'s cursor: every read checks its length first.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }

    fn string(&mut self) -> Option<String> {
        std::str::from_utf8(self.bytes()?).ok().map(str::to_owned)
    }

    fn addr(&mut self) -> Option<IpAddr> {
        match self.u8()? {
            4 => Some(IpAddr::from(self.array::<4>()?)),
            6 => Some(IpAddr::from(self.array::<16>()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, SecretBuf, VERSION};
    use rand::{Rng, SeedableRng};
    use std::net::IpAddr;

    /// A record written by hand after the format's grammar (the module's doc): what
    /// `encode` writes must stay readable by this decoder, field for field.
    fn by_hand(ue: IpAddr, sec: bool) -> Vec<u8> {
        let mut b = vec![VERSION];
        b.extend_from_slice(&1_700_000_000_123u64.to_le_bytes());
        for spi in [1000u32, 1001, 2000, 2001] {
            b.extend_from_slice(&spi.to_le_bytes());
        }
        for port in [5064u16, 5066, 6000, 6001] {
            b.extend_from_slice(&port.to_le_bytes());
        }
        for a in [ue, "10.0.0.1".parse().unwrap()] {
            match a {
                IpAddr::V4(a) => b.extend(std::iter::once(4).chain(a.octets())),
                IpAddr::V6(a) => b.extend(std::iter::once(6).chain(a.octets())),
            }
        }
        let s = |b: &mut Vec<u8>, v: &[u8]| {
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(v);
        };
        for v in [
            "a@x",
            "A@x",
            "<sip:a@ue>",
            "udp",
            "hmac-sha-1-96",
            "aes-cbc",
        ] {
            s(&mut b, v.as_bytes());
        }
        for k in [&[0xab; 20][..], &[0x01; 16], &[0, 0, 0, 0]] {
            s(&mut b, k);
        }
        b.extend_from_slice(&2u32.to_le_bytes());
        s(&mut b, b"sip:a@x");
        s(&mut b, b"tel:+1");
        if sec {
            b.push(1);
            s(&mut b, b"ipsec-3gpp");
            b.extend_from_slice(&2u32.to_le_bytes());
            for v in ["alg", "hmac-sha-1-96", "q", ""] {
                s(&mut b, v.as_bytes());
            }
        } else {
            b.push(0);
        }
        b
    }

    /// The hand-written record reads back field for field, IPv4 and IPv6, with and without
    /// a Security-Server; the keys as the owned form's hex.
    #[test]
    fn a_record_written_by_the_grammar_reads_back() {
        for (ue, sec) in [("10.1.2.3", true), ("2001:db8::7", false)] {
            let ue: IpAddr = ue.parse().unwrap();
            let r = decode(&by_hand(ue, sec)).expect("reads");
            assert_eq!(
                (r.key.as_str(), r.impi.as_str(), r.contact.as_str()),
                ("a@x", "A@x", "<sip:a@ue>")
            );
            assert_eq!(
                (r.transport.as_str(), r.expires_unix_ms),
                ("udp", 1_700_000_000_123)
            );
            assert_eq!(r.impus, ["sip:a@x", "tel:+1"]);
            let s = &r.set;
            assert_eq!((s.ue, s.local), (ue, "10.0.0.1".parse().unwrap()));
            assert_eq!(
                (s.auth.as_str(), s.encr.as_str()),
                ("hmac-sha-1-96", "aes-cbc")
            );
            assert_eq!(s.integ_key, "ab".repeat(20));
            assert_eq!(
                (s.encr_key.as_str(), s.salt.as_str()),
                (&*"01".repeat(16), "00000000")
            );
            assert_eq!(
                (s.spi_pc, s.spi_ps, s.spi_uc, s.spi_us),
                (1000, 1001, 2000, 2001)
            );
            assert_eq!(
                (s.port_pc, s.port_ps, s.port_uc, s.port_us),
                (5064, 5066, 6000, 6001)
            );
            let want = sec.then(|| {
                let p = [("alg", "hmac-sha-1-96"), ("q", "")];
                let p = p.map(|(k, v)| (k.to_string(), v.to_string())).to_vec();
                ("ipsec-3gpp".to_string(), p)
            });
            assert_eq!(r.security_server, want);
        }
    }

    /// Input never panics and is refused unless whole: every cut of a record, a byte
    /// more, another version, an unknown address family or Security-Server tag, a string not
    /// UTF-8, huge lengths and counts, every single-byte change, and random bytes.
    #[test]
    fn a_damaged_record_is_refused_without_a_panic() {
        let good = by_hand("10.1.2.3".parse().unwrap(), true);
        assert!(decode(&good).is_some());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_none(), "cut at {cut}");
        }
        let mut more = good.clone();
        more.push(0);
        assert!(decode(&more).is_none());
        for (at, v) in [(0, 1), (0, b'{'), (33, 5), (33, 0)] {
            let mut b = good.clone();
            b[at] = v;
            assert!(decode(&b).is_none(), "{at} {v}");
        }
        // The key's length (after the two IPv4 addresses) made huge; the key not UTF-8.
        let key_at = 33 + 5 + 5;
        let mut b = good.clone();
        b[key_at..key_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&b).is_none());
        let mut b = good.clone();
        b[key_at + 4] = 0xff;
        assert!(decode(&b).is_none());
        for at in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = good.clone();
                b[at] ^= v;
                let _ = decode(&b);
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        for _ in 0..20_000 {
            let n = rng.gen_range(0..200);
            let mut b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            if let Some(first) = b.first_mut() {
                *first = VERSION;
            }
            let _ = decode(&b);
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
