//! AES-128-CBC on AES-NI with the round keys held in registers: the measured hot spot of the
//! aes-cbc suites (serial CBC encryption is latency bound, so per-block call overhead and
//! store-to-load chaining through memory cost ~1.5x over this loop).
//!
//! Used only when the CPU reports AES-NI at SA creation; otherwise the portable `aes` crate
//! path in `transform` runs. Key expansion follows FIPS-197 5.2 using AESKEYGENASSIST.

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// AES-128 encryption and decryption round keys (FIPS-197: 11 round keys; the decryption
/// keys are the equivalent inverse cipher's, FIPS-197 5.3.5). Zeroized on drop.
#[derive(Clone)]
#[repr(C)]
pub(super) struct Aes128Ni {
    /// First: decapsulation reads these, and they sit in the SA's prefetched lines
    /// (`transform::HOT_BYTES`).
    dec: [[u8; 16]; 11],
    enc: [[u8; 16]; 11],
}

/// Wipes the round keys as one 352-byte fill (a `memset` of a few wide stores), where the
/// derived `Zeroize` stored the 352 bytes one volatile byte store each (353 instructions a
/// drop: four a set, for every SA set removed and every worker's SAs at shutdown), and a
/// volatile store per round key still went through the stack (~70).
impl Zeroize for Aes128Ni {
    fn zeroize(&mut self) {
        let p: *mut Self = self;
        // SAFETY: `p` is valid for writes of the whole struct, which is plain bytes (any
        // value, zero included, is one it may hold).
        unsafe { core::ptr::write_bytes(p.cast::<u8>(), 0, core::mem::size_of::<Self>()) };
        // SAFETY: an empty asm block; it only takes the pointer. Not `nomem`: the compiler
        // must assume it reads the zeroed bytes, so the fill above is never elided as a
        // store to memory about to die.
        unsafe {
            core::arch::asm!("/* {0} */", in(reg) p, options(nostack, preserves_flags, readonly))
        };
    }
}

impl Drop for Aes128Ni {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Aes128Ni {}

/// True if this CPU has VAES and AVX-512F (16-block CBC decryption).
fn vaes_available() -> bool {
    std::is_x86_feature_detected!("vaes") && std::is_x86_feature_detected!("avx512f")
}

/// True if this CPU has VAES and AVX2 (16-block CBC decryption on ymm registers, for CPUs
/// without AVX-512 such as Zen 3, where VAESDEC ymm issues on two pipes: four blocks a
/// cycle against AESDEC xmm's two).
fn vaes_ymm_available() -> bool {
    std::is_x86_feature_detected!("vaes") && std::is_x86_feature_detected!("avx2")
}

/// True if this CPU can run [`Aes128Ni`].
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("sse2")
}

#[inline(always)]
fn load(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

macro_rules! expand_round {
    ($prev:expr, $rcon:literal) => {{
        let k = $prev;
        let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        _mm_xor_si128(k, t)
    }};
}

impl Aes128Ni {
    /// Address of the decryption round keys (for the layout test of the SA prefetch).
    #[cfg(test)]
    pub(super) fn dec_keys_addr(&self) -> usize {
        self.dec.as_ptr() as usize
    }

    /// Expands `key`; `None` if the CPU lacks AES-NI.
    pub(super) fn new(key: &[u8; 16]) -> Option<Self> {
        if !available() {
            return None;
        }
        // SAFETY: AES-NI and SSE2 presence was checked just above.
        Some(unsafe { Self::expand(key) })
    }

    #[target_feature(enable = "aes,sse2")]
    unsafe fn expand(key: &[u8; 16]) -> Self {
        let mut rk = [_mm_setzero_si128(); 11];
        rk[0] = load(key);
        rk[1] = expand_round!(rk[0], 0x01);
        rk[2] = expand_round!(rk[1], 0x02);
        rk[3] = expand_round!(rk[2], 0x04);
        rk[4] = expand_round!(rk[3], 0x08);
        rk[5] = expand_round!(rk[4], 0x10);
        rk[6] = expand_round!(rk[5], 0x20);
        rk[7] = expand_round!(rk[6], 0x40);
        rk[8] = expand_round!(rk[7], 0x80);
        rk[9] = expand_round!(rk[8], 0x1b);
        rk[10] = expand_round!(rk[9], 0x36);
        let mut out = Self {
            enc: [[0; 16]; 11],
            dec: [[0; 16]; 11],
        };
        for i in 0..11 {
            let d = if i == 0 || i == 10 {
                rk[10 - i]
            } else {
                _mm_aesimc_si128(rk[10 - i])
            };
            // SAFETY: each destination is a 16-byte array; unaligned stores are allowed.
            unsafe {
                _mm_storeu_si128(out.enc[i].as_mut_ptr().cast(), rk[i]);
                _mm_storeu_si128(out.dec[i].as_mut_ptr().cast(), d);
            }
        }
        rk.zeroize_registers();
        out
    }

    /// CBC-encrypts `data` (whole 16-byte blocks) in place; `on_chunk` sees each 64-byte
    /// chunk of ciphertext as soon as it is ready, so a MAC can run alongside.
    pub(super) fn cbc_encrypt(&self, iv: &[u8], data: &mut [u8], on_chunk: impl FnMut(&[u8])) {
        let mut chain = [0u8; 16];
        chain.copy_from_slice(&iv[..16]);
        // SAFETY: `Aes128Ni` only exists if AES-NI and SSE2 were detected (see `new`).
        unsafe { self.cbc_encrypt_ni(&chain, data, on_chunk) }
    }

    #[target_feature(enable = "aes,sse2")]
    unsafe fn cbc_encrypt_ni(
        &self,
        iv: &[u8; 16],
        data: &mut [u8],
        mut on_chunk: impl FnMut(&[u8]),
    ) {
        let k: [__m128i; 11] = core::array::from_fn(|i| load(&self.enc[i]));
        let mut chain = load(iv);
        for chunk in data.chunks_mut(64) {
            for block in chunk.chunks_exact_mut(16) {
                let p = block.as_mut_ptr().cast::<__m128i>();
                // SAFETY: `block` is exactly 16 bytes; unaligned load/store.
                let mut x = _mm_xor_si128(unsafe { _mm_loadu_si128(p) }, chain);
                x = _mm_xor_si128(x, k[0]);
                x = _mm_aesenc_si128(x, k[1]);
                x = _mm_aesenc_si128(x, k[2]);
                x = _mm_aesenc_si128(x, k[3]);
                x = _mm_aesenc_si128(x, k[4]);
                x = _mm_aesenc_si128(x, k[5]);
                x = _mm_aesenc_si128(x, k[6]);
                x = _mm_aesenc_si128(x, k[7]);
                x = _mm_aesenc_si128(x, k[8]);
                x = _mm_aesenc_si128(x, k[9]);
                x = _mm_aesenclast_si128(x, k[10]);
                // SAFETY: as above.
                unsafe { _mm_storeu_si128(p, x) };
                chain = x;
            }
            on_chunk(chunk);
        }
    }

    /// The encryption round keys as bytes (FIPS-197 5.2 order), for the burst kernels'
    /// per-lane key tables.
    pub(super) fn enc_bytes(&self) -> &[[u8; 16]; 11] {
        &self.enc
    }

    /// The encryption round keys, loaded into registers.
    #[inline(always)]
    pub(super) fn enc_keys(&self) -> [__m128i; 11] {
        core::array::from_fn(|i| load(&self.enc[i]))
    }

    /// Continues a CBC encryption: encrypts `data` (whole blocks) in place after `chain`.
    #[target_feature(enable = "aes,sse2")]
    pub(super) fn cbc_encrypt_blocks(&self, chain: &mut __m128i, data: &mut [u8]) {
        let k = self.enc_keys();
        for block in data.chunks_exact_mut(16) {
            let p = block.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `block` is exactly 16 bytes; unaligned load/store.
            let mut x = _mm_xor_si128(unsafe { _mm_loadu_si128(p) }, *chain);
            x = _mm_xor_si128(x, k[0]);
            for rk in &k[1..10] {
                x = _mm_aesenc_si128(x, *rk);
            }
            x = _mm_aesenclast_si128(x, k[10]);
            // SAFETY: as above.
            unsafe { _mm_storeu_si128(p, x) };
            *chain = x;
        }
    }

    /// CBC-decrypts `data` (whole 16-byte blocks) in place: with VAES + AVX-512 sixteen
    /// blocks in flight (four zmm registers), otherwise eight.
    pub(super) fn cbc_decrypt(&self, iv: &[u8], data: &mut [u8]) {
        let mut chain = [0u8; 16];
        chain.copy_from_slice(&iv[..16]);
        if vaes_available() {
            // SAFETY: VAES and AVX-512F were just detected (AES-NI by `new`).
            unsafe { self.cbc_decrypt_vaes(&chain, data) }
        } else if vaes_ymm_available() {
            // SAFETY: VAES and AVX2 were just detected (AES-NI by `new`).
            unsafe { self.cbc_decrypt_ymm(&chain, data) }
        } else {
            // SAFETY: `Aes128Ni` only exists if AES-NI and SSE2 were detected (see `new`).
            unsafe { self.cbc_decrypt_ni(&chain, data) }
        }
    }

    /// CBC decryption four blocks per zmm register, four registers per step; each block's
    /// predecessor comes from the same loads, shifted one block by VALIGNQ.
    #[target_feature(enable = "aes,avx512f,vaes")]
    unsafe fn cbc_decrypt_vaes(&self, iv: &[u8; 16], data: &mut [u8]) {
        let k: [__m512i; 11] = core::array::from_fn(|i| _mm512_broadcast_i32x4(load(&self.dec[i])));
        // The ciphertext block before the current one, in the top lane.
        let mut prev = _mm512_broadcast_i32x4(load(iv));
        let mut chunks = data.chunks_exact_mut(4 * 64);
        for chunk in &mut chunks {
            let p = chunk.as_mut_ptr().cast::<__m512i>();
            // SAFETY: `chunk` is 256 bytes: four unaligned 64-byte loads at p.add(0..4).
            let c: [__m512i; 4] = core::array::from_fn(|i| unsafe { _mm512_loadu_si512(p.add(i)) });
            let mut x: [__m512i; 4] = core::array::from_fn(|i| _mm512_xor_si512(c[i], k[0]));
            for rk in &k[1..10] {
                for v in x.iter_mut() {
                    *v = _mm512_aesdec_epi128(*v, *rk);
                }
            }
            for (i, v) in x.iter_mut().enumerate() {
                let before = if i == 0 { prev } else { c[i - 1] };
                // Blocks i-1.. of the stream: top lane of `before`, then lanes 0..3 of c[i].
                let chain = _mm512_alignr_epi64::<6>(c[i], before);
                *v = _mm512_xor_si512(_mm512_aesdeclast_epi128(*v, k[10]), chain);
                // SAFETY: as above.
                unsafe { _mm512_storeu_si512(p.add(i), *v) };
            }
            prev = c[3];
        }
        // The last 0..=15 blocks: up to four registers side by side, the last one's missing
        // blocks masked off (fault-suppressed loads; stores of its blocks only). One quad after another
        // and a lone block on xmm (with its own key loads) were a serial tail of 10 to 30
        // dependent rounds: at 64 payload bytes the whole body.
        let rest = chunks.into_remainder();
        let p = rest.as_mut_ptr();
        let blocks = rest.len() / 16;
        // SAFETY: VAES and AVX-512F are enabled here; `p` is valid for `blocks` 16-byte
        // blocks (see `tail_vaes`), in every arm.
        unsafe {
            match blocks.div_ceil(4) {
                1 => tail_vaes::<1>(&k, prev, p, blocks),
                2 => tail_vaes::<2>(&k, prev, p, blocks),
                3 => tail_vaes::<3>(&k, prev, p, blocks),
                4 => tail_vaes::<4>(&k, prev, p, blocks),
                _ => {}
            }
        }
    }

    /// CBC decryption two blocks per ymm register, eight registers per step (VAESDEC's
    /// latency times its two pipes); each block's predecessor comes from the same loads,
    /// VPERM2I128 joining a register's high block to the next one's low block.
    #[target_feature(enable = "aes,avx2,vaes")]
    unsafe fn cbc_decrypt_ymm(&self, iv: &[u8; 16], data: &mut [u8]) {
        let k: [__m256i; 11] =
            core::array::from_fn(|i| _mm256_broadcastsi128_si256(load(&self.dec[i])));
        // The ciphertext block before the current one, in the high 128-bit lane.
        let mut prev = _mm256_broadcastsi128_si256(load(iv));
        let mut chunks = data.chunks_exact_mut(8 * 32);
        for chunk in &mut chunks {
            let p = chunk.as_mut_ptr().cast::<__m256i>();
            // SAFETY: `chunk` is 256 bytes: eight unaligned 32-byte loads at p.add(0..8).
            let c: [__m256i; 8] = core::array::from_fn(|i| unsafe { _mm256_loadu_si256(p.add(i)) });
            let mut x: [__m256i; 8] = core::array::from_fn(|i| _mm256_xor_si256(c[i], k[0]));
            for rk in &k[1..10] {
                for v in x.iter_mut() {
                    *v = _mm256_aesdec_epi128(*v, *rk);
                }
            }
            for (i, v) in x.iter_mut().enumerate() {
                let before = if i == 0 { prev } else { c[i - 1] };
                // Blocks 2i-1 and 2i: the high block of `before`, the low block of c[i].
                let chain = _mm256_permute2x128_si256::<0x21>(before, c[i]);
                *v = _mm256_xor_si256(_mm256_aesdeclast_epi128(*v, k[10]), chain);
                // SAFETY: as above.
                unsafe { _mm256_storeu_si256(p.add(i), *v) };
            }
            prev = c[7];
        }
        // The last 0..=15 blocks: up to eight registers side by side, an odd last block alone
        // in the low half of the last one (a 16-byte load and store).
        let rest = chunks.into_remainder();
        let p = rest.as_mut_ptr();
        let blocks = rest.len() / 16;
        // SAFETY: VAES and AVX2 are enabled here; `p` is valid for `blocks` 16-byte blocks
        // (see `tail_ymm`), in every arm.
        unsafe {
            match blocks.div_ceil(2) {
                1 => tail_ymm::<1>(&k, prev, p, blocks),
                2 => tail_ymm::<2>(&k, prev, p, blocks),
                3 => tail_ymm::<3>(&k, prev, p, blocks),
                4 => tail_ymm::<4>(&k, prev, p, blocks),
                5 => tail_ymm::<5>(&k, prev, p, blocks),
                6 => tail_ymm::<6>(&k, prev, p, blocks),
                7 => tail_ymm::<7>(&k, prev, p, blocks),
                8 => tail_ymm::<8>(&k, prev, p, blocks),
                _ => {}
            }
        }
    }

    #[target_feature(enable = "aes,sse2")]
    unsafe fn cbc_decrypt_ni(&self, iv: &[u8; 16], data: &mut [u8]) {
        let k: [__m128i; 11] = core::array::from_fn(|i| load(&self.dec[i]));
        let mut chain = load(iv);
        let mut chunks = data.chunks_exact_mut(8 * 16);
        for chunk in &mut chunks {
            let p = chunk.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `chunk` is 128 bytes: eight unaligned 16-byte loads/stores at p.add(0..8).
            let c: [__m128i; 8] = core::array::from_fn(|i| unsafe { _mm_loadu_si128(p.add(i)) });
            let mut x: [__m128i; 8] = core::array::from_fn(|i| _mm_xor_si128(c[i], k[0]));
            for rk in &k[1..10] {
                for v in x.iter_mut() {
                    *v = _mm_aesdec_si128(*v, *rk);
                }
            }
            for (i, v) in x.iter_mut().enumerate() {
                let prev = if i == 0 { chain } else { c[i - 1] };
                *v = _mm_xor_si128(_mm_aesdeclast_si128(*v, k[10]), prev);
                // SAFETY: as above.
                unsafe { _mm_storeu_si128(p.add(i), *v) };
            }
            chain = c[7];
        }
        for block in chunks.into_remainder().chunks_exact_mut(16) {
            let p = block.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `block` is exactly 16 bytes; unaligned load/store.
            let c = unsafe { _mm_loadu_si128(p) };
            let mut x = _mm_xor_si128(c, k[0]);
            for rk in &k[1..10] {
                x = _mm_aesdec_si128(x, *rk);
            }
            x = _mm_xor_si128(_mm_aesdeclast_si128(x, k[10]), chain);
            // SAFETY: as above.
            unsafe { _mm_storeu_si128(p, x) };
            chain = c;
        }
    }
}

/// CBC-decrypts the `blocks` (`4 * R - 3 ..= 4 * R`) 16-byte blocks at `p` in place, four
/// per zmm register, all `R` registers at once; `prev` holds the ciphertext block before
/// them in its top 128-bit lane, `k` the decryption round keys broadcast to every lane.
///
/// # Safety
/// VAES and AVX-512F must be available, and `p` valid for reads and writes of `16 * blocks`
/// bytes (the masked loads and the stores touch no byte beyond them).
#[inline]
#[target_feature(enable = "aes,avx512f,vaes")]
unsafe fn tail_vaes<const R: usize>(k: &[__m512i; 11], prev: __m512i, p: *mut u8, blocks: usize) {
    let p = p.cast::<__m512i>();
    // Two 64-bit elements per block: register i holds blocks 4i..4i + 4 that exist.
    let mask = |i: usize| -> __mmask8 {
        let b = blocks.saturating_sub(4 * i).min(4);
        ((1u16 << (2 * b)) - 1) as __mmask8
    };
    // SAFETY: the mask selects only bytes of the `blocks` blocks (fault suppression covers
    // the rest); unaligned masked loads.
    let c: [__m512i; R] =
        core::array::from_fn(|i| unsafe { _mm512_maskz_loadu_epi64(mask(i), p.add(i).cast()) });
    let mut x: [__m512i; R] = core::array::from_fn(|i| _mm512_xor_si512(c[i], k[0]));
    for rk in &k[1..10] {
        for v in x.iter_mut() {
            *v = _mm512_aesdec_epi128(*v, *rk);
        }
    }
    for (i, v) in x.iter_mut().enumerate() {
        let before = if i == 0 { prev } else { c[i - 1] };
        let chain = _mm512_alignr_epi64::<6>(c[i], before);
        *v = _mm512_xor_si512(_mm512_aesdeclast_epi128(*v, k[10]), chain);
        // Plain stores of exactly the blocks there are: `finish` reads the last block back
        // at once (the padding check), and a load is not forwarded from a masked store
        // (with masked stores the 64-byte burst read 0.84x of the branch point, criterion).
        let q = p.wrapping_add(i).cast::<u8>();
        // SAFETY: every store lies within the `blocks` blocks at `p`; unaligned stores.
        unsafe {
            match blocks.saturating_sub(4 * i).min(4) {
                4 => _mm512_storeu_si512(q.cast(), *v),
                3 => {
                    _mm256_storeu_si256(q.cast(), _mm512_castsi512_si256(*v));
                    _mm_storeu_si128(q.add(32).cast(), _mm512_extracti32x4_epi32::<2>(*v));
                }
                2 => _mm256_storeu_si256(q.cast(), _mm512_castsi512_si256(*v)),
                1 => _mm_storeu_si128(q.cast(), _mm512_castsi512_si128(*v)),
                _ => {}
            }
        }
    }
}

/// CBC-decrypts the `blocks` (`2 * R - 1 ..= 2 * R`) 16-byte blocks at `p` in place, two
/// per ymm register, all `R` registers at once; `prev` holds the ciphertext block before
/// them in its high 128-bit lane, `k` the decryption round keys broadcast to both lanes.
///
/// # Safety
/// VAES and AVX2 must be available, and `p` valid for reads and writes of `16 * blocks`
/// bytes (an odd last block is loaded and stored alone).
#[inline]
#[target_feature(enable = "aes,avx2,vaes")]
unsafe fn tail_ymm<const R: usize>(k: &[__m256i; 11], prev: __m256i, p: *mut u8, blocks: usize) {
    let p = p.cast::<__m256i>();
    let whole = |i: usize| 2 * i + 2 <= blocks;
    let c: [__m256i; R] = core::array::from_fn(|i| {
        // SAFETY: register i's blocks 2i (and 2i + 1 if `whole`) lie within the `blocks`
        // blocks at `p`; unaligned loads.
        unsafe {
            if whole(i) {
                _mm256_loadu_si256(p.add(i))
            } else {
                _mm256_zextsi128_si256(_mm_loadu_si128(p.add(i).cast()))
            }
        }
    });
    let mut x: [__m256i; R] = core::array::from_fn(|i| _mm256_xor_si256(c[i], k[0]));
    for rk in &k[1..10] {
        for v in x.iter_mut() {
            *v = _mm256_aesdec_epi128(*v, *rk);
        }
    }
    for (i, v) in x.iter_mut().enumerate() {
        let before = if i == 0 { prev } else { c[i - 1] };
        let chain = _mm256_permute2x128_si256::<0x21>(before, c[i]);
        *v = _mm256_xor_si256(_mm256_aesdeclast_epi128(*v, k[10]), chain);
        // SAFETY: as for the loads: only the blocks that exist are stored; unaligned.
        unsafe {
            if whole(i) {
                _mm256_storeu_si256(p.add(i), *v);
            } else {
                _mm_storeu_si128(p.add(i).cast(), _mm256_castsi256_si128(*v));
            }
        }
    }
}

/// Overwrites a stack array of round keys (the registers themselves are not addressable).
trait ZeroizeRegisters {
    fn zeroize_registers(&mut self);
}

impl ZeroizeRegisters for [__m128i; 11] {
    #[inline(always)]
    fn zeroize_registers(&mut self) {
        for r in self.iter_mut() {
            // SAFETY: `r` is a valid, aligned __m128i slot; a volatile write keeps the wipe.
            unsafe { core::ptr::write_volatile(r, _mm_setzero_si128()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};

    /// FIPS-197 A.1's key: its last round key (w[40..44]) as the appendix lists it.
    const FIPS_KEY: [u8; 16] = [
        0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f,
        0x3c,
    ];
    const FIPS_ROUND_10: [u8; 16] = [
        0xd0, 0x14, 0xf9, 0xa8, 0xc9, 0xee, 0x25, 0x89, 0xe1, 0x3f, 0x0c, 0xc8, 0xb6, 0x63, 0x0c,
        0xa6,
    ];

    /// A dropped key schedule leaves only zeros where it was: the memory is read after the
    /// drop ran in place (before it, the FIPS-197 round key is there, so the check can fail).
    #[test]
    fn drop_leaves_zeros_where_the_round_keys_were() {
        use core::mem::{size_of, MaybeUninit};
        let Some(aes) = Aes128Ni::new(&FIPS_KEY) else {
            eprintln!("SKIPPED: no AES-NI");
            return;
        };
        let mut slot = MaybeUninit::new(aes);
        let bytes = |s: &MaybeUninit<Aes128Ni>| -> Vec<u8> {
            // SAFETY: the slot's bytes are all initialised (plain byte arrays, written by the
            // expansion or by the wipe), and `size_of` of them are in bounds.
            unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u8>(), size_of::<Aes128Ni>()) }
                .to_vec()
        };
        let before = bytes(&slot);
        assert!(before.windows(16).any(|w| w == FIPS_ROUND_10));
        // SAFETY: the slot holds a live `Aes128Ni`, dropped once here and never used after.
        unsafe { slot.assume_init_drop() };
        assert_eq!(bytes(&slot), vec![0u8; size_of::<Aes128Ni>()]);
    }

    /// Compares against the `aes` crate (a second implementation) on many keys and lengths
    /// (every remainder of the VAES decryption's 16-block loops: the zmm tails of one to
    /// four registers, the last one masked, the ymm tails of one to eight, an odd last
    /// block alone; the AES-NI loop's 8-block remainders), each kernel the CPU runs.
    #[test]
    fn matches_aes_crate_cbc() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI");
            return;
        }
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for blocks in (1usize..=40).chain([63, 64, 65, 88, 89, 95]) {
            let key: [u8; 16] = core::array::from_fn(|_| rnd());
            let iv: [u8; 16] = core::array::from_fn(|_| rnd());
            let plain: Vec<u8> = (0..blocks * 16).map(|_| rnd()).collect();
            let soft = aes::Aes128::new(&key.into());
            let mut expect = plain.clone();
            let mut chain = iv;
            for b in expect.chunks_exact_mut(16) {
                for (v, c) in b.iter_mut().zip(chain.iter()) {
                    *v ^= c;
                }
                soft.encrypt_block(GenericArray::from_mut_slice(b));
                chain.copy_from_slice(b);
            }
            let ni = Aes128Ni::new(&key).unwrap();
            let mut got = plain.clone();
            let mut seen = Vec::new();
            ni.cbc_encrypt(&iv, &mut got, |c| seen.extend_from_slice(c));
            assert_eq!(got, expect, "{blocks} blocks");
            assert_eq!(seen, expect, "chunks handed out in order");
            let ciphertext = got.clone();
            ni.cbc_decrypt(&iv, &mut got);
            assert_eq!(got, plain, "{blocks} blocks");
            // Every decryption kernel this CPU runs, whichever `cbc_decrypt` picks.
            let mut each = ciphertext.clone();
            // SAFETY: AES-NI and SSE2 detected by `new`.
            unsafe { ni.cbc_decrypt_ni(&iv, &mut each) };
            assert_eq!(each, plain, "AES-NI, {blocks} blocks");
            if vaes_ymm_available() {
                let mut each = ciphertext.clone();
                // SAFETY: VAES and AVX2 detected just now.
                unsafe { ni.cbc_decrypt_ymm(&iv, &mut each) };
                assert_eq!(each, plain, "VAES ymm, {blocks} blocks");
            }
            if vaes_available() {
                let mut each = ciphertext.clone();
                // SAFETY: VAES and AVX-512F detected just now.
                unsafe { ni.cbc_decrypt_vaes(&iv, &mut each) };
                assert_eq!(each, plain, "VAES zmm, {blocks} blocks");
            }
            // And the decryption round keys against the crate's decryption.
            let mut one = GenericArray::clone_from_slice(&expect[..16]);
            soft.decrypt_block(&mut one);
            let first: Vec<u8> = one.iter().zip(iv.iter()).map(|(a, b)| a ^ b).collect();
            assert_eq!(first, plain[..16]);
        }
    }

    /// Timing of CBC decryption of 1424 and 80 bytes (ESP bodies of 1408 and 64 payload
    /// bytes) with 16 (VAES zmm or ymm) and 8 (AES-NI) blocks in flight (a kernel the CPU
    /// lacks reads as the AES-NI one), TSC ticks, minimum over many
    /// rounds (the two RDTSC included).
    /// `cargo test --release -p akagate-fastpath --lib aesni::tests::decrypt_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn decrypt_timing() {
        let Some(ni) = Aes128Ni::new(&[3; 16]) else {
            return;
        };
        for len in [1424usize, 80] {
            let mut data = vec![0x5au8; len];
            let iv = [1u8; 16];
            let mut best = [u64::MAX; 3];
            for _ in 0..20000 {
                for (v, best) in best.iter_mut().enumerate() {
                    // SAFETY: RDTSC exists on every x86_64 CPU.
                    let t = unsafe { _rdtsc() };
                    if v == 0 && vaes_available() {
                        // SAFETY: VAES and AVX-512F detected just now.
                        unsafe { ni.cbc_decrypt_vaes(&iv, &mut data) }
                    } else if v == 1 && vaes_ymm_available() {
                        // SAFETY: VAES and AVX2 detected just now.
                        unsafe { ni.cbc_decrypt_ymm(&iv, &mut data) }
                    } else {
                        // SAFETY: AES-NI detected by `new`.
                        unsafe { ni.cbc_decrypt_ni(&iv, &mut data) }
                    }
                    // SAFETY: as above.
                    *best = (*best).min(unsafe { _rdtsc() } - t);
                }
            }
            eprintln!(
                "{len} B: VAES zmm {} ticks, VAES ymm {} ticks, AES-NI {} ticks",
                best[0], best[1], best[2]
            );
        }
    }
}
