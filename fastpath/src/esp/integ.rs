//! HMAC-96 integrity (RFC 2403 hmac-md5-96, RFC 2404 hmac-sha-1-96) with the ipad/opad hash
//! states computed once per SA, so a packet costs no key processing and no allocation.

use std::sync::Arc;

use md5::Md5;
use sha1::digest::{Digest, FixedOutputReset, Reset};
use sha1::Sha1;

#[cfg(target_arch = "x86_64")]
use super::stitch::Sha1NiKey;

/// ICV length of both HMAC-96 algorithms (RFC 2403 / RFC 2404: first 96 bits).
pub const HMAC96_ICV_LEN: usize = 12;

/// True if the ICV `got` equals `want`, in constant time (RFC 4303 3.4.4): every byte pair
/// is XORed and the differences ORed together with no early exit, over a fixed `N` bytes
/// (straight-line code: loads and XORs, no loop, no call), and only the result goes through
/// `subtle`'s optimisation barrier. `subtle`'s slice compare put each byte through the
/// barrier (a call per byte); the 8-byte words before this copied each chunk into a zeroed
/// word with a `memcpy` call of variable length, whose narrow stores the word's load could
/// not forward from (two calls and two store-forwarding stalls per packet). The byte fold
/// that followed was vectorised into loads wider than a caller's 4-byte store of the ICV's
/// last word (a store-forwarding stall per received packet); now fixed 8- and 4-byte words
/// of both sides, which `N` unrolls.
pub(super) fn tags_equal<const N: usize>(want: &[u8; N], got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(got) = <&[u8; N]>::try_from(got) else {
        return false;
    };
    // Word by word: 8-byte words, then a 4-byte one, then bytes (12 = 8 + 4, 16 = 8 + 8),
    // loads no wider than a caller's stores of the same array, so they can be forwarded.
    let mut diff = 0u64;
    let mut i = 0;
    while let (Some(w), Some(g)) = (want.get(i..i + 8), got.get(i..i + 8)) {
        let (Ok(w), Ok(g)) = (<[u8; 8]>::try_from(w), <[u8; 8]>::try_from(g)) else {
            break;
        };
        diff |= u64::from_ne_bytes(w) ^ u64::from_ne_bytes(g);
        i += 8;
    }
    if let (Some(w), Some(g)) = (want.get(i..i + 4), got.get(i..i + 4)) {
        if let (Ok(w), Ok(g)) = (<[u8; 4]>::try_from(w), <[u8; 4]>::try_from(g)) {
            diff |= u64::from(u32::from_ne_bytes(w) ^ u32::from_ne_bytes(g));
            i += 4;
        }
    }
    for (a, b) in want.iter().zip(got).skip(i) {
        diff |= u64::from(a ^ b);
    }
    bool::from(diff.ct_eq(&0))
}

/// HMAC key state (RFC 2104): the hash after absorbing `K ^ ipad` and after `K ^ opad`.
#[derive(Clone)]
pub struct HmacKey<D: Digest + Clone + Reset + FixedOutputReset> {
    ipad: D,
    opad: D,
}

impl<D: Digest + Clone + Reset + FixedOutputReset> HmacKey<D> {
    /// Precomputes the inner and outer states for `key` (keys longer than the 64-byte block
    /// are hashed first, RFC 2104 section 2).
    pub fn new(key: &[u8]) -> Self {
        const BLOCK: usize = 64;
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            let digest = D::digest(key);
            block[..digest.len()].copy_from_slice(&digest);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; BLOCK];
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x36;
        }
        let mut ipad = D::new();
        Digest::update(&mut ipad, pad);
        for (p, k) in pad.iter_mut().zip(block.iter()) {
            *p = k ^ 0x5c;
        }
        let mut opad = D::new();
        Digest::update(&mut opad, pad);
        zeroize::Zeroize::zeroize(&mut block);
        zeroize::Zeroize::zeroize(&mut pad);
        Self { ipad, opad }
    }

    /// Starts a MAC computation (a copy of the inner state; no heap).
    #[inline]
    pub fn start(&self) -> HmacCtx<'_, D> {
        HmacCtx {
            key: self,
            inner: self.ipad.clone(),
        }
    }

    /// HMAC of the concatenation of `parts`, truncated to 96 bits.
    pub fn icv96(&self, parts: &[&[u8]]) -> [u8; HMAC96_ICV_LEN] {
        let mut ctx = self.start();
        for p in parts {
            ctx.update(p);
        }
        ctx.finish96()
    }
}

impl<D: Digest + Clone + Reset + FixedOutputReset> Drop for HmacKey<D> {
    fn drop(&mut self) {
        // The pad states are key-equivalent. The hash types offer no zeroize, so reset them to
        // the public initial value; black_box keeps the stores from being optimised away.
        Digest::reset(&mut self.ipad);
        Digest::reset(&mut self.opad);
        core::hint::black_box(&mut self.ipad);
        core::hint::black_box(&mut self.opad);
    }
}

/// A running HMAC over one packet.
pub struct HmacCtx<'k, D: Digest + Clone + Reset + FixedOutputReset> {
    key: &'k HmacKey<D>,
    inner: D,
}

impl<D: Digest + Clone + Reset + FixedOutputReset> HmacCtx<'_, D> {
    /// Absorbs `data`.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        Digest::update(&mut self.inner, data);
    }

    /// Finishes and returns the first 96 bits of the HMAC.
    pub fn finish96(mut self) -> [u8; HMAC96_ICV_LEN] {
        let inner = self.inner.finalize_reset();
        let mut outer = self.key.opad.clone();
        Digest::update(&mut outer, &inner);
        let full = outer.finalize();
        let mut icv = [0u8; HMAC96_ICV_LEN];
        icv.copy_from_slice(&full[..HMAC96_ICV_LEN]);
        icv
    }
}

/// HMAC-SHA-1 key state.
pub type HmacSha1Key = HmacKey<Sha1>;
/// HMAC-MD5 key state.
pub type HmacMd5Key = HmacKey<Md5>;

/// The precomputed integrity state of one SA for the HMAC-96 algorithms.
///
/// hmac-sha-1-96 keeps only its SHA-NI pad states where the CPU has the SHA extensions (40
/// bytes inline, the states the burst kernels read too: one keying, one copy per SA); the
/// `sha1`/`md5` crate states (about 200 bytes each) are on the heap, so the enum stays small
/// for the transform's hot bytes (`transform::HOT_BYTES`), and shared: a clone (the SAs of
/// one set, `KeyedSuite`) takes a reference, not an allocation and a copy of the states; the
/// last one to go resets them ([`HmacKey`]'s drop). `repr(u8)`: a one-byte tag and the pad
/// states right behind it.
#[derive(Clone)]
#[repr(u8)]
pub(super) enum Hmac96 {
    /// hmac-sha-1-96 (RFC 2404) on the SHA extensions.
    #[cfg(target_arch = "x86_64")]
    Sha1Ni(Sha1NiKey),
    /// hmac-sha-1-96 (RFC 2404) through the `sha1` crate.
    Sha1(Arc<HmacSha1Key>),
    /// hmac-md5-96 (RFC 2403).
    Md5(Arc<HmacMd5Key>),
}

impl Hmac96 {
    /// The state for hmac-sha-1-96 with `key`: the SHA-NI pad states where the CPU can run
    /// them, else the `sha1` crate's.
    pub(super) fn sha1(key: &[u8]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = Sha1NiKey::new(key) {
            return Hmac96::Sha1Ni(k);
        }
        Hmac96::Sha1(Arc::new(HmacSha1Key::new(key)))
    }

    /// The state for hmac-md5-96 with `key`.
    pub(super) fn md5(key: &[u8]) -> Self {
        Hmac96::Md5(Arc::new(HmacMd5Key::new(key)))
    }

    /// The 96-bit ICV over the concatenation of `parts`.
    pub(super) fn icv(&self, parts: &[&[u8]]) -> [u8; HMAC96_ICV_LEN] {
        match self {
            #[cfg(target_arch = "x86_64")]
            Hmac96::Sha1Ni(k) => {
                let mut ctx = Sha1NiCtx::start(k);
                for p in parts {
                    ctx.update(p);
                }
                ctx.finish96()
            }
            Hmac96::Sha1(k) => k.icv96(parts),
            Hmac96::Md5(k) => k.icv96(parts),
        }
    }
}

/// A running MAC over one packet, fed in pieces (the CBC seal hands it each chunk of
/// ciphertext as it is made).
pub(super) trait MacCtx {
    /// Absorbs `data`.
    fn update(&mut self, data: &[u8]);
    /// Finishes and returns the first 96 bits of the MAC.
    fn finish96(self) -> [u8; HMAC96_ICV_LEN];
}

impl<D: Digest + Clone + Reset + FixedOutputReset> MacCtx for HmacCtx<'_, D> {
    #[inline]
    fn update(&mut self, data: &[u8]) {
        HmacCtx::update(self, data)
    }
    fn finish96(self) -> [u8; HMAC96_ICV_LEN] {
        HmacCtx::finish96(self)
    }
}

/// A running HMAC-SHA-1 (RFC 2104, FIPS 180-4) from an SA's SHA-NI pad states: whole 64-byte
/// blocks go straight to the `sha1` crate's block function (SHA-NI), the rest waits in a
/// block buffer. (Per block through `stitch::compress`, one call and one state round trip a
/// block, a 1408-byte decapsulation took 5% longer.)
#[cfg(target_arch = "x86_64")]
pub(super) struct Sha1NiCtx<'k> {
    key: &'k Sha1NiKey,
    state: [u32; 5],
    buf: [u8; 64],
    /// Bytes waiting in `buf`.
    fill: usize,
    /// Bytes absorbed after the ipad block.
    len: u64,
}

#[cfg(target_arch = "x86_64")]
impl<'k> Sha1NiCtx<'k> {
    /// Starts a MAC from `key`'s inner state.
    pub(super) fn start(key: &'k Sha1NiKey) -> Self {
        Sha1NiCtx {
            key,
            state: key.ipad,
            buf: [0; 64],
            fill: 0,
            len: 0,
        }
    }

    /// SHA-1 compressions of `blocks` into `state`, all in one call of the `sha1` crate's
    /// block function (SHA-NI where the CPU has it, the state in registers across blocks).
    fn compress(state: &mut [u32; 5], blocks: &[[u8; 64]]) {
        // SAFETY: `GenericArray<u8, U64>` is `repr(transparent)` over `[u8; 64]` (the
        // `generic-array` crate guarantees its layout), so the slices have the same layout,
        // length and lifetime.
        let blocks: &[sha1::digest::generic_array::GenericArray<u8, sha1::digest::consts::U64>] =
            unsafe { &*(blocks as *const [[u8; 64]] as *const _) };
        sha1::compress(state, blocks);
    }

    /// The SHA-1 padding (FIPS 180-4 5.1.1) of a message of `bits` bits whose last `fill`
    /// bytes are in `buf`, compressed into `state`.
    fn pad_into(state: &mut [u32; 5], buf: &mut [u8; 64], fill: usize, bits: u64) {
        buf[fill] = 0x80;
        buf[fill + 1..].fill(0);
        if fill >= 56 {
            Self::compress(state, core::slice::from_ref(buf));
            buf.fill(0);
        }
        buf[56..].copy_from_slice(&bits.to_be_bytes());
        Self::compress(state, core::slice::from_ref(buf));
    }
}

#[cfg(target_arch = "x86_64")]
impl MacCtx for Sha1NiCtx<'_> {
    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.fill > 0 {
            let take = data.len().min(64 - self.fill);
            self.buf[self.fill..self.fill + take].copy_from_slice(&data[..take]);
            self.fill += take;
            data = &data[take..];
            if self.fill < 64 {
                return;
            }
            Self::compress(&mut self.state, core::slice::from_ref(&self.buf));
            self.fill = 0;
        }
        let (blocks, rest) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            Self::compress(&mut self.state, blocks);
        }
        self.buf[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    fn finish96(mut self) -> [u8; HMAC96_ICV_LEN] {
        // The inner hash covered the 64-byte ipad block too.
        let bits = (64 + self.len) * 8;
        Self::pad_into(&mut self.state, &mut self.buf, self.fill, bits);
        let mut outer = self.key.opad;
        let mut block = [0u8; 64];
        for (w, b) in self.state.iter().zip(block.chunks_exact_mut(4)) {
            b.copy_from_slice(&w.to_be_bytes());
        }
        Self::pad_into(&mut outer, &mut block, 20, (64 + 20) * 8);
        let mut icv = [0u8; HMAC96_ICV_LEN];
        for (w, b) in outer.iter().zip(icv.chunks_exact_mut(4)) {
            b.copy_from_slice(&w.to_be_bytes());
        }
        icv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(v: &serde_json::Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("valid hex")
    }

    /// RFC 2202's HMAC-SHA-1 cases through the state an SA gets for hmac-sha-1-96 (the
    /// SHA-NI pad states where the CPU has them; keys above 64 bytes take the `sha1` crate),
    /// each case's data fed whole and in three pieces.
    #[test]
    fn the_sas_hmac_sha1_matches_rfc_2202() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/esp/rfc_vectors.json"))
                .expect("fixture parses");
        let cases = v["hmac_sha1_96"]["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 7);
        for c in cases {
            let key = unhex(&c["key"]);
            let data = unhex(&c["data"]);
            let mac = Hmac96::sha1(&key);
            #[cfg(target_arch = "x86_64")]
            if super::super::stitch::available() && key.len() <= 64 {
                assert!(matches!(mac, Hmac96::Sha1Ni(_)), "case {}", c["test_case"]);
            }
            let (a, rest) = data.split_at(data.len() / 3);
            let (b, d) = rest.split_at(rest.len() / 2);
            let want = unhex(&c["digest_96"]);
            assert_eq!(mac.icv(&[&data]).to_vec(), want, "case {}", c["test_case"]);
            assert_eq!(
                mac.icv(&[a, b, d]).to_vec(),
                want,
                "case {}",
                c["test_case"]
            );
        }
    }

    /// The SHA-NI HMAC over every message length up to five blocks, cut into three pieces at
    /// every kind of place (inside a block, at its end, empty pieces), against the `hmac`
    /// crate: the block buffer, the padding's one- and two-block cases and the length.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_sha_ni_hmac_matches_the_hmac_crate_at_every_length() {
        use hmac::Mac;
        if !super::super::stitch::available() {
            return;
        }
        let key: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        let mac = Hmac96::sha1(&key);
        let msg: Vec<u8> = (0..330u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=msg.len() {
            let m = &msg[..len];
            let mut r = hmac::Hmac::<Sha1>::new_from_slice(&key).expect("key");
            r.update(m);
            let want = r.finalize().into_bytes();
            for cut in [0, 1, 55, 56, 63, 64, 65, 130] {
                let c1 = cut.min(len);
                let c2 = (c1 + 64 + cut % 9).min(len);
                let got = mac.icv(&[&m[..c1], &m[c1..c2], &m[c2..]]);
                assert_eq!(got[..], want[..HMAC96_ICV_LEN], "length {len}, cut {cut}");
            }
        }
    }

    /// A clone of a software HMAC state (the SAs of one set keyed once, `KeyedSuite`) shares
    /// the keyed pad states instead of allocating and copying them, MACs alike, and the
    /// states go (their drop resets them) when the last SA holding them does.
    #[test]
    fn clones_share_the_software_states_until_the_last_goes() {
        let key: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(29) ^ 0x3c).collect();
        let mac = Hmac96::md5(&key);
        let copies: Vec<Hmac96> = (0..3).map(|_| mac.clone()).collect();
        let Hmac96::Md5(state) = &mac else {
            panic!("hmac-md5-96 keeps the md5 crate's states");
        };
        let weak = Arc::downgrade(state);
        for c in &copies {
            let Hmac96::Md5(s) = c else {
                panic!("a clone keeps the variant");
            };
            assert!(Arc::ptr_eq(s, state), "a clone shares the states");
            assert_eq!(c.icv(&[b"abc", b"def"]), mac.icv(&[b"abcdef"]));
        }
        assert_eq!(Arc::strong_count(state), 4);
        drop(mac);
        assert!(weak.upgrade().is_some(), "the clones still hold the states");
        drop(copies);
        assert!(
            weak.upgrade().is_none(),
            "the last SA's drop drops the states"
        );
    }

    /// Equal tags compare equal; a tag differing in any one bit of any byte, or of another
    /// length, does not (both ICV lengths in use: 12 and 16).
    #[test]
    fn tags_equal_sees_every_bit() {
        fn check<const N: usize>() {
            let want: [u8; N] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
            assert!(tags_equal(&want, &want));
            for i in 0..N {
                for bit in 0..8 {
                    let mut got = want;
                    got[i] ^= 1 << bit;
                    assert!(!tags_equal(&want, &got), "byte {i} bit {bit}");
                }
            }
            assert!(!tags_equal(&want, &want[..N - 1]));
            let mut longer = want.to_vec();
            longer.push(0);
            assert!(!tags_equal(&want, &longer));
        }
        check::<12>();
        check::<16>();
        check::<13>();
        check::<3>();
    }
}
