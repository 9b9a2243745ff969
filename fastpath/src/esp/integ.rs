//! HMAC-96 integrity (RFC 2403 hmac-md5-96, RFC 2404 hmac-sha-1-96) with the ipad/opad hash
//! states computed once per SA, so a packet costs no key processing and no allocation.

use md5::Md5;
use sha1::digest::{Digest, FixedOutputReset, Reset};
use sha1::Sha1;

/// ICV length of both HMAC-96 algorithms (RFC 2403 / RFC 2404: first 96 bits).
pub const HMAC96_ICV_LEN: usize = 12;

/// True if the ICV `got` equals `want`, in constant time (RFC 4303 3.4.4): every byte pair
/// is XORed and the differences ORed together with no early exit, over a fixed `N` bytes
/// (straight-line code: loads and XORs, no loop, no call), and only the result goes through
/// `subtle`'s optimisation barrier. `subtle`'s slice compare put each byte through the
/// barrier (a call per byte); the 8-byte words before this copied each chunk into a zeroed
/// word with a `memcpy` call of variable length, whose narrow stores the word's load could
/// not forward from (two calls and two store-forwarding stalls per packet).
pub(super) fn tags_equal<const N: usize>(want: &[u8; N], got: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(got) = <&[u8; N]>::try_from(got) else {
        return false;
    };
    let diff = want.iter().zip(got).fold(0u8, |d, (a, b)| d | (a ^ b));
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
#[derive(Clone)]
pub enum Hmac96 {
    /// hmac-sha-1-96 (RFC 2404).
    Sha1(HmacSha1Key),
    /// hmac-md5-96 (RFC 2403).
    Md5(HmacMd5Key),
}

impl Hmac96 {
    /// The 96-bit ICV over the concatenation of `parts`.
    pub fn icv(&self, parts: &[&[u8]]) -> [u8; HMAC96_ICV_LEN] {
        match self {
            Hmac96::Sha1(k) => k.icv96(parts),
            Hmac96::Md5(k) => k.icv96(parts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
