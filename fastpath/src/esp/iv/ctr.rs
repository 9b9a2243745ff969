//! 16-byte CBC IVs as AES-128 in counter mode (see the parent module): each thread keeps
//! [`BLOCKS`] IVs made ahead, and refills them in one pass on AES-NI (sixteen xmm blocks in
//! flight, a few cycles an IV). xmm rather than VAES zmm: the single-packet path around it
//! runs on xmm only, and a zmm refill measured no better (docs/BENCHMARKS.md, *Burst CBC
//! encryption, round 12*). The key and the counter's start come from the thread's ChaCha12
//! generator, drawn again every [`CTR_REFILLS_PER_KEY`](super::CTR_REFILLS_PER_KEY)
//! refills.

#![allow(unsafe_code)]

use core::arch::x86_64::*;
use core::cell::RefCell;

use rand::rngs::StdRng;
use rand::RngCore;
use zeroize::Zeroize;

use super::super::aesni::{self, Aes128Ni};

/// IVs made per refill.
pub(super) const BLOCKS: usize = 16;

thread_local! {
    /// The thread's AES-CTR IV source, made at its first 16-byte IV.
    static CTR: RefCell<Option<CtrIvs>> = const { RefCell::new(None) };
}

/// Fills a 16-byte IV slot from the thread's AES-CTR source; false (slot untouched) if the
/// CPU lacks AES-NI.
#[inline]
pub(super) fn fill16(slot: &mut [u8; 16]) -> bool {
    fill16_many(core::slice::from_mut(slot))
}

/// Fills every 16-byte IV slot of `slots` from the thread's AES-CTR source, in one access to
/// it; false (slots untouched) if the CPU lacks AES-NI.
#[inline]
pub(super) fn fill16_many(slots: &mut [[u8; 16]]) -> bool {
    CTR.with(|cell| {
        let mut g = cell.borrow_mut();
        if g.is_none() {
            *g = super::with_thread_rng(|rng| CtrIvs::draw(rng, super::CTR_REFILLS_PER_KEY));
        }
        match g.as_mut() {
            Some(c) => {
                for slot in slots.iter_mut() {
                    *slot = c.take();
                }
                true
            }
            None => false,
        }
    })
}

/// An AES-128-CTR source of IVs: block `i` of the stream is `AES_K(start + i)`, the counter
/// a big-endian 128-bit integer.
pub(super) struct CtrIvs {
    /// The secret key's schedule (wiped on drop by `Aes128Ni`).
    keys: Aes128Ni,
    /// The counter of the next refill's first block.
    next: u128,
    /// The IVs made ahead; `blocks[used..]` are not handed out yet.
    blocks: [[u8; 16]; BLOCKS],
    /// How many of `blocks` were handed out.
    used: usize,
    /// Refills left under this key.
    left: u32,
    /// Refills per key.
    period: u32,
}

impl Drop for CtrIvs {
    fn drop(&mut self) {
        self.blocks.zeroize();
        self.next.zeroize();
    }
}

impl CtrIvs {
    /// A source keyed from `rng` (the key, then the counter's start), `None` without AES-NI.
    pub(super) fn draw(rng: &mut StdRng, period: u32) -> Option<Self> {
        if !aesni::available() {
            return None;
        }
        let mut s = Self {
            keys: Aes128Ni::new(&[0; 16])?,
            next: 0,
            blocks: [[0; 16]; BLOCKS],
            used: BLOCKS,
            left: 0,
            period: period.max(1),
        };
        s.rekey(rng);
        Some(s)
    }

    /// Draws a new key and counter start from `rng`.
    fn rekey(&mut self, rng: &mut StdRng) {
        let mut key = [0u8; 16];
        let mut start = [0u8; 16];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut start);
        if let Some(k) = Aes128Ni::new(&key) {
            self.keys = k;
        }
        self.next = u128::from_be_bytes(start);
        key.zeroize();
        start.zeroize();
        self.left = self.period;
    }

    /// The next IV of the stream.
    #[inline]
    pub(super) fn take(&mut self) -> [u8; 16] {
        if self.used >= BLOCKS {
            self.refill();
        }
        let iv = self.blocks[self.used % BLOCKS];
        self.used += 1;
        iv
    }

    /// Makes the next [`BLOCKS`] IVs (rekeying first when this key's refills are spent).
    #[cold]
    fn refill(&mut self) {
        if self.left == 0 {
            super::with_thread_rng(|rng| self.rekey(rng));
        }
        self.left -= 1;
        for (i, b) in self.blocks.iter_mut().enumerate() {
            *b = self.next.wrapping_add(i as u128).to_be_bytes();
        }
        self.next = self.next.wrapping_add(BLOCKS as u128);
        // SAFETY: an `Aes128Ni` exists only if AES-NI was detected.
        unsafe { ecb_ni(&self.keys, &mut self.blocks) };
        self.used = 0;
    }
}

/// Encrypts the 16 blocks in place on AES-NI, all in flight.
///
/// # Safety
/// AES-NI must be available.
#[target_feature(enable = "aes,sse2")]
unsafe fn ecb_ni(keys: &Aes128Ni, blocks: &mut [[u8; 16]; BLOCKS]) {
    let k = keys.enc_keys();
    let p = blocks.as_mut_ptr().cast::<__m128i>();
    // SAFETY: `blocks` is 16 blocks: unaligned 16-byte loads and stores at 0..16.
    let mut x: [__m128i; BLOCKS] =
        core::array::from_fn(|i| _mm_xor_si128(unsafe { _mm_loadu_si128(p.add(i)) }, k[0]));
    for r in &k[1..10] {
        for v in x.iter_mut() {
            *v = _mm_aesenc_si128(*v, *r);
        }
    }
    for (i, v) in x.iter().enumerate() {
        // SAFETY: as above.
        unsafe { _mm_storeu_si128(p.add(i), _mm_aesenclast_si128(*v, k[10])) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
    use rand::SeedableRng;

    /// The stream is AES-128 (the `aes` crate, a second implementation) of consecutive
    /// big-endian counters under the key drawn from the ChaCha12 generator, then the counter's
    /// start drawn after it; a new key and start every `period` refills.
    #[test]
    fn stream_is_aes_of_a_counter_under_a_drawn_key() {
        if !aesni::available() {
            eprintln!("SKIPPED: no AES-NI");
            return;
        }
        {
            let mut rng = StdRng::seed_from_u64(0x1e5);
            let mut truth = StdRng::seed_from_u64(0x1e5);
            let Some(mut src) = CtrIvs::draw(&mut rng, 3) else {
                return;
            };
            for key_no in 0..4 {
                let mut key = [0u8; 16];
                let mut start = [0u8; 16];
                truth.fill_bytes(&mut key);
                truth.fill_bytes(&mut start);
                let soft = aes::Aes128::new(&key.into());
                let start = u128::from_be_bytes(start);
                for i in 0..3 * BLOCKS {
                    let mut want = start.wrapping_add(i as u128).to_be_bytes();
                    soft.encrypt_block(GenericArray::from_mut_slice(&mut want));
                    let got = src.take();
                    assert_eq!(got, want, "key {key_no}, block {i}");
                    // When a refill needs a new key, it draws from the thread's generator,
                    // not from `rng`: hand the source the same stream in the test instead.
                    if i == 3 * BLOCKS - 1 {
                        src.rekey(&mut rng);
                    }
                }
            }
        }
    }

    /// Through the thread's source: 16-byte IVs do not repeat across refills and rekeys.
    #[test]
    fn thread_ivs_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(BLOCKS * 40) {
            let mut iv = [0u8; 16];
            assert!(fill16(&mut iv) || !aesni::available());
            assert!(seen.insert(iv) || !aesni::available());
        }
    }
}
