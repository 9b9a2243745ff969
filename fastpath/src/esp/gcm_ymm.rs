//! AES-128-GCM on 256-bit VAES and VPCLMULQDQ, for CPUs that have them without AVX-512
//! (AMD Zen 3, Intel Alder Lake): two blocks per register, so one VAESENC does a round of
//! two counter blocks and one VPCLMULQDQ two of GHASH's carry-less products. The shape of
//! the 512-bit kernel (`gcm_vaes`): a batch is 16 blocks (256 bytes, eight registers), CTR
//! of the batch with the GHASH of 16 ciphertext blocks stitched into its AES rounds,
//! multiplied by H^16..H^1 and reduced once; the last 0..=255 bytes go through the same
//! kernel once more. AVX2 has no byte-masked loads or stores: the tail's whole registers
//! are loaded and stored in place, its last 1..=31 bytes by a dword-masked VPMASKMOVD (or,
//! when they are not whole words, through a zeroed 32-byte stack block), and its keystream
//! past the payload masked off in registers (by a mask loaded from a sliding window of ones
//! and zeros) before anything is stored or hashed. Same GCM and same
//! GHASH representation as the 128-bit path (`gcm_ni`, whose module comment explains the
//! byte reversal and the reduction).

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::gcm_ni::{self, Pass, Wide, HPOW, POLY_FOLD};
use super::gcm_vaes::{Front, Short, CTR_ONLY, OPEN, SEAL, SHORT_BODY_MAX};

/// Blocks per register.
const PER: usize = 2;
/// Registers per batch: 16 blocks.
const REGS: usize = 8;
/// Bytes per batch.
const BATCH: usize = 16 * PER * REGS;

/// Bytes of a payload [`ctr_ghash`] asks the cache for before it starts.
const PREFETCH_MAX: usize = 4096;

/// Largest payload whose AAD block is hashed in the tail's batch: 14 blocks, so AAD,
/// payload and lengths are at most the 16 powers of the table.
const SHORT_MAX: usize = 16 * 14;

/// True if this CPU has what [`ctr_ghash`] needs beyond the 128-bit path's features: AVX2,
/// VAES and VPCLMULQDQ.
pub(super) fn available() -> bool {
    gcm_ni::available()
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("vaes")
        && std::is_x86_feature_detected!("vpclmulqdq")
}

/// A sum of 256-bit carry-less products before reduction: two lanes of [`Wide`], folded
/// into one when reduced.
#[derive(Clone, Copy)]
struct WideY {
    lo: __m256i,
    mid: __m256i,
    hi: __m256i,
}

impl WideY {
    /// The two carry-less products of `a` and `b`, lane by lane, unreduced.
    #[inline]
    #[target_feature(enable = "avx2,vpclmulqdq")]
    fn mul(a: __m256i, b: __m256i) -> Self {
        WideY {
            lo: _mm256_clmulepi64_epi128::<0x00>(a, b),
            mid: _mm256_xor_si256(
                _mm256_clmulepi64_epi128::<0x10>(a, b),
                _mm256_clmulepi64_epi128::<0x01>(a, b),
            ),
            hi: _mm256_clmulepi64_epi128::<0x11>(a, b),
        }
    }

    /// Adds the two products of `a` and `b`.
    #[inline]
    #[target_feature(enable = "avx2,vpclmulqdq")]
    fn add_mul(&mut self, a: __m256i, b: __m256i) {
        let p = WideY::mul(a, b);
        self.lo = _mm256_xor_si256(self.lo, p.lo);
        self.mid = _mm256_xor_si256(self.mid, p.mid);
        self.hi = _mm256_xor_si256(self.hi, p.hi);
    }

    /// Adds a 128-bit sum of products into lane 0.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn add_wide(&mut self, w: Wide) {
        let z = _mm_setzero_si128();
        self.lo = _mm256_xor_si256(self.lo, _mm256_set_m128i(z, w.lo));
        self.mid = _mm256_xor_si256(self.mid, _mm256_set_m128i(z, w.mid));
        self.hi = _mm256_xor_si256(self.hi, _mm256_set_m128i(z, w.hi));
    }

    /// The sum of the two lanes, reduced: each lane reduced as [`Wide::reduce`] does (two
    /// [`fold64`] steps on both at once), then the lanes summed.
    #[inline]
    #[target_feature(enable = "avx2,vpclmulqdq")]
    fn reduce(self) -> __m128i {
        let g = _mm256_xor_si256(self.mid, fold64(self.lo));
        fold2(_mm256_xor_si256(self.hi, fold64(g)))
    }
}

/// [`gcm_ni::fold64`] on the two lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,vpclmulqdq")]
fn fold64(v: __m256i) -> __m256i {
    let c = _mm256_set1_epi64x(POLY_FOLD as i64);
    _mm256_xor_si256(
        _mm256_shuffle_epi32::<0b01_00_11_10>(v),
        _mm256_clmulepi64_epi128::<0x00>(v, c),
    )
}

/// XOR of the two 128-bit lanes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
fn fold2(v: __m256i) -> __m128i {
    _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v))
}

/// Entry `r` of a stack array of registers, loaded where it is used: a volatile read, so
/// the compiler neither hoists it out of the loop (and spills) nor keeps it live (AVX2 has
/// 16 vector registers, half of them the batch's AES state).
#[inline(always)]
fn at<const L: usize>(a: &[__m256i; L], r: usize) -> __m256i {
    // SAFETY: `a[r]` is an initialized, aligned `__m256i` (indexing checks `r`).
    unsafe { core::ptr::read_volatile(&a[r]) }
}

/// AES-CTR keystream for the first `$n` of eight registers of counter blocks `$ctrs` (the
/// others left zero) under the broadcast round keys `$k`, with the GHASH products of the
/// eight registers of blocks `$hash` by the powers `$h` computed between the AES rounds,
/// one register per round (the one carrying the running state last). A macro, so it is
/// always inlined (as `gcm_vaes`'s).
macro_rules! aes_ghash {
    ($n:expr, $k:expr, $ctrs:expr) => {{
        let k: &[__m256i; 11] = $k;
        let ctrs: [__m256i; REGS] = $ctrs;
        let k0 = at(k, 0);
        let mut s = [_mm256_setzero_si256(); REGS];
        for (v, c) in s.iter_mut().zip(&ctrs).take($n) {
            *v = _mm256_xor_si256(*c, k0);
        }
        for r in 1..10 {
            let rk = at(k, r);
            for v in s.iter_mut().take($n) {
                *v = _mm256_aesenc_epi128(*v, rk);
            }
        }
        let rk = at(k, 10);
        for v in s.iter_mut().take($n) {
            *v = _mm256_aesenclast_epi128(*v, rk);
        }
        s
    }};
    ($n:expr, $k:expr, $ctrs:expr, $hash:expr, $h:expr) => {{
        let k: &[__m256i; 11] = $k;
        let ctrs: [__m256i; REGS] = $ctrs;
        let hash: &[__m256i; REGS] = $hash;
        let h: &[__m256i; REGS] = $h;
        let k0 = at(k, 0);
        let mut s = [_mm256_setzero_si256(); REGS];
        for (v, c) in s.iter_mut().zip(&ctrs).take($n) {
            *v = _mm256_xor_si256(*c, k0);
        }
        let j = REGS - 1;
        let mut acc = WideY::mul(at(hash, j), at(h, j));
        for r in 1..10 {
            let rk = at(k, r);
            for v in s.iter_mut().take($n) {
                *v = _mm256_aesenc_epi128(*v, rk);
            }
            // Rounds 1..=7 carry the products of registers 6..=0.
            if r < REGS {
                let j = REGS - 1 - r;
                acc.add_mul(at(hash, j), at(h, j));
            }
        }
        let rk = at(k, 10);
        for v in s.iter_mut().take($n) {
            *v = _mm256_aesenclast_epi128(*v, rk);
        }
        (s, acc)
    }};
}

/// The sum of the carry-less products of the first `$n` registers of `$blocks` and `$h`,
/// unreduced. A macro for the same reason as [`aes_ghash!`].
macro_rules! mul_sum {
    ($n:expr, $blocks:expr, $h:expr) => {{
        let b: &[__m256i; REGS] = $blocks;
        let h: &[__m256i; REGS] = $h;
        let mut acc = WideY::mul(b[0], h[0]);
        #[allow(clippy::reversed_empty_ranges, clippy::needless_range_loop)]
        for j in 1..$n {
            acc.add_mul(b[j], h[j]);
        }
        acc
    }};
}

/// 32 bytes of ones then 32 of zeros: the 32 bytes at `32 - m` keep a register's first `m`
/// bytes (`m` in 0..=32).
static KEEP: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 32 {
        t[i] = 0xff;
        i += 1;
    }
    t
};

/// A mask of the first `m` bytes of a register (`m` at most 32).
#[inline]
#[target_feature(enable = "avx2")]
fn keep(m: usize) -> __m256i {
    let m = m.min(32);
    // SAFETY: 32 - m + 32 <= 64: the 32 bytes read lie within `KEEP`.
    unsafe { _mm256_loadu_si256(KEEP.as_ptr().add(32 - m).cast()) }
}

/// A 32-byte block aligned for the tail's last partial register when it is not whole words.
#[repr(C, align(32))]
struct Bounce([u8; 32]);

/// GHASH of `buf` (under pass `P`) with CTR applied in place, continuing from [`Front`]'s
/// GHASH state `x` and block `first`, the payload's first counter block being `IV || 2`,
/// then the lengths block: the 256-bit counterpart of `gcm_vaes::ctr_ghash`, same contract.
/// Returns the tag (wire order); for `CTR_ONLY` a meaningless value.
///
/// The last batch's reduction also covers the lengths block (times H^1) when the tail has
/// at most 15 blocks, and a payload of at most 14 blocks takes `first` into it as well: one
/// carry-less multiply pass and one reduction for a short packet.
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
pub(super) fn ctr_ghash<const P: u8>(
    k: &[[u8; 16]; 11],
    h_pow: &[[u8; 16]; HPOW],
    front: impl FnOnce() -> Front,
    buf: &mut [u8],
) -> __m128i {
    let Front {
        j0,
        ej0,
        x,
        first,
        lens,
    } = front();
    let pass = match P {
        SEAL => Pass::Seal,
        OPEN => Pass::Open,
        _ => Pass::CtrOnly,
    };
    let ahead = buf.len().min(PREFETCH_MAX);
    for off in (0..ahead).step_by(64) {
        crate::sad::prefetch(buf.as_ptr().wrapping_add(off));
    }
    crate::sad::prefetch(buf.as_ptr().wrapping_add(ahead.saturating_sub(1)));
    let h1 = gcm_ni::load(&h_pow[0]);
    // Short payloads keep `first` (with the state) for the tail's one reduction, times
    // H^(n+2); longer ones hash it now.
    let (mut x, pre) = match first {
        Some(a) if pass != Pass::CtrOnly && buf.len() <= SHORT_MAX => {
            (_mm_setzero_si128(), Some(_mm_xor_si128(x, a)))
        }
        Some(a) if pass != Pass::CtrOnly => (gcm_ni::gf_mul(_mm_xor_si128(x, a), h1), None),
        _ => (x, None),
    };
    let kz: [__m256i; 11] =
        core::array::from_fn(|i| _mm256_broadcastsi128_si256(gcm_ni::load(&k[i])));
    // Counter blocks kept with the 32-bit counter in native order in the last dword of each
    // lane, so one VPADDD steps both (inc32 of SP 800-38D 6.2 wraps the same way), and
    // byte-swapped into place for AES.
    let ctr_swap = _mm256_broadcastsi128_si256(_mm_set_epi8(
        12, 13, 14, 15, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
    ));
    let nonce = _mm_insert_epi32::<3>(j0, 0);
    // SP 800-38D 7.1 step 4: the payload's counter blocks start at inc32(J0) = IV || 2.
    let mut cz = _mm256_add_epi32(
        _mm256_broadcastsi128_si256(nonce),
        _mm256_set_epi32(3, 0, 0, 0, 2, 0, 0, 0),
    );
    let step = |b: i32| _mm256_set_epi32(b, 0, 0, 0, b, 0, 0, 0);
    let nat_step: [__m256i; REGS + 1] = core::array::from_fn(|j| step((PER * j) as i32));
    let be_step: [__m256i; REGS] = core::array::from_fn(|j| step(((PER * j) as i32) << 24));
    let mut first_ctr: u32 = 2;
    let mut next_ctrs = || -> [__m256i; REGS] {
        let ctrs = if first_ctr & 0xff <= 0xff - (PER * REGS - 1) as u32 {
            // No counter of the 16 carries out of its last byte: one byte swap, and the
            // other registers' blocks by adding to that byte.
            let c = _mm256_shuffle_epi8(cz, ctr_swap);
            core::array::from_fn(|j| {
                if j == 0 {
                    c
                } else {
                    _mm256_add_epi32(c, be_step[j])
                }
            })
        } else {
            core::array::from_fn(|j| {
                _mm256_shuffle_epi8(_mm256_add_epi32(cz, nat_step[j]), ctr_swap)
            })
        };
        cz = _mm256_add_epi32(cz, nat_step[REGS]);
        first_ctr = first_ctr.wrapping_add((PER * REGS) as u32);
        ctrs
    };

    let (batches, rest) = buf.as_chunks_mut::<BATCH>();
    let mut pending: Option<[__m256i; REGS]> = None;
    // H^16,H^15 .. H^2,H^1: block i of a batch times H^(16 - i).
    let all_powers =
        || -> [__m256i; REGS] { core::array::from_fn(|j| powers(h_pow, 16 - PER * j)) };
    let load = |b: &[u8; BATCH]| -> [__m256i; REGS] {
        // SAFETY: `b` is 256 bytes: eight unaligned 32-byte loads at 32 j.
        core::array::from_fn(|j| unsafe { _mm256_loadu_si256(b.as_ptr().add(32 * j).cast()) })
    };
    let xor_store = |b: &mut [u8; BATCH], data: [__m256i; REGS], ks: [__m256i; REGS]| {
        let out: [__m256i; REGS] = core::array::from_fn(|j| _mm256_xor_si256(data[j], ks[j]));
        for (j, v) in out.iter().enumerate() {
            // SAFETY: as for `load`: eight unaligned 32-byte stores within `b`.
            unsafe { _mm256_storeu_si256(b.as_mut_ptr().add(32 * j).cast(), *v) };
        }
        out
    };
    if !batches.is_empty() {
        let hz = all_powers();
        match pass {
            Pass::Open => {
                for b in batches.iter_mut() {
                    let data = load(b);
                    let hash = with_state(x, data);
                    let (ks, acc) = aes_ghash!(REGS, &kz, next_ctrs(), &hash, &hz);
                    x = acc.reduce();
                    xor_store(b, data, ks);
                }
            }
            Pass::Seal => {
                if let Some((b, later)) = batches.split_first_mut() {
                    let ks = aes_ghash!(REGS, &kz, next_ctrs());
                    let mut pend = with_state(x, xor_store(b, load(b), ks));
                    for b in later {
                        let (ks, acc) = aes_ghash!(REGS, &kz, next_ctrs(), &pend, &hz);
                        x = acc.reduce();
                        pend = with_state(x, xor_store(b, load(b), ks));
                    }
                    pending = Some(pend);
                }
            }
            Pass::CtrOnly => {
                for b in batches.iter_mut() {
                    let ks = aes_ghash!(REGS, &kz, next_ctrs());
                    xor_store(b, load(b), ks);
                }
            }
        }
    }

    // The last 0..=255 bytes: n blocks (the last one partial, SP 800-38D 6.5; GHASH sees it
    // zero-padded, 6.4 via 7.1 step 5), bounced through a zeroed block; the keystream past
    // the payload is masked off before anything is stored or hashed.
    let len = rest.len();
    let n = len.div_ceil(16);
    let mut hashed = [_mm256_setzero_si256(); REGS];
    if n > 0 {
        // Whole registers in place; the last 1..=31 bytes by a dword-masked load and store
        // when they are whole 4-byte words (an ESP body's always are), else through a
        // zeroed 32-byte block.
        let (whole, part) = (len / 32, len % 32);
        let words = part.is_multiple_of(4);
        let mut pad = Bounce([0; 32]);
        if !words {
            pad.0[..part].copy_from_slice(&rest[32 * whole..]);
        }
        let part_mask = dwords(part / 4);
        let p = rest.as_mut_ptr();
        let data: [__m256i; REGS] = core::array::from_fn(|j| {
            if j < whole {
                // SAFETY: j < whole: bytes 32 j .. 32 j + 32 lie within `rest`.
                unsafe { _mm256_loadu_si256(p.add(32 * j).cast()) }
            } else if j == whole && part > 0 && words {
                // SAFETY: the mask selects the first part / 4 dwords at 32 whole, the last
                // `part` bytes of `rest`; the others are neither read nor faulted on.
                unsafe { _mm256_maskload_epi32(p.add(32 * j).cast(), part_mask) }
            } else if j == whole && part > 0 {
                // SAFETY: `pad` is 32 bytes, aligned to 32.
                unsafe { _mm256_load_si256(pad.0.as_ptr().cast()) }
            } else {
                _mm256_setzero_si256()
            }
        });
        let ctrs = next_ctrs();
        let to_hash = pending.take();
        let hz = match to_hash {
            Some(_) => all_powers(),
            None => [_mm256_setzero_si256(); REGS],
        };
        // Registers of AES run: the tail's, rounded up to an even count (four copies of
        // the kernel, not eight).
        let ks = match (to_hash, n.div_ceil(PER)) {
            (Some(b), regs) => {
                let (ks, acc) = match regs {
                    1 | 2 => aes_ghash!(2, &kz, ctrs, &b, &hz),
                    3 | 4 => aes_ghash!(4, &kz, ctrs, &b, &hz),
                    5 | 6 => aes_ghash!(6, &kz, ctrs, &b, &hz),
                    _ => aes_ghash!(REGS, &kz, ctrs, &b, &hz),
                };
                x = acc.reduce();
                ks
            }
            (None, 1 | 2) => aes_ghash!(2, &kz, ctrs),
            (None, 3 | 4) => aes_ghash!(4, &kz, ctrs),
            (None, 5 | 6) => aes_ghash!(6, &kz, ctrs),
            (None, _) => aes_ghash!(REGS, &kz, ctrs),
        };
        let out: [__m256i; REGS] = core::array::from_fn(|j| {
            _mm256_and_si256(
                _mm256_xor_si256(data[j], ks[j]),
                keep(len.saturating_sub(32 * j)),
            )
        });
        for (j, v) in out.iter().enumerate().take(whole) {
            // SAFETY: as for the loads above.
            unsafe { _mm256_storeu_si256(p.add(32 * j).cast(), *v) };
        }
        if part > 0 && words {
            // SAFETY: as for the masked load above: only the last `part` bytes are written.
            unsafe { _mm256_maskstore_epi32(p.add(32 * whole).cast(), part_mask, out[whole]) };
        } else if part > 0 {
            // SAFETY: `pad` is 32 bytes, aligned to 32; `whole` < REGS when `part` > 0.
            unsafe { _mm256_store_si256(pad.0.as_mut_ptr().cast(), out[whole]) };
            rest[32 * whole..].copy_from_slice(&pad.0[..part]);
        }
        hashed = match pass {
            Pass::Open => data,
            Pass::Seal => out,
            Pass::CtrOnly => return x,
        };
    }
    if let Some(blocks) = pending {
        // No tail: the last whole batch is hashed on its own.
        x = mul_sum!(REGS, &blocks, &all_powers()).reduce();
    }
    if pass == Pass::CtrOnly {
        return x;
    }
    let regs = n.div_ceil(PER);
    if n == PER * REGS {
        // No power left for the lengths block: the tail alone (H^16..H^1), then the lengths.
        let h = all_powers();
        let x = mul_sum!(REGS, &with_state(x, hashed), &h).reduce();
        return tag(gcm_ni::gf_mul(_mm_xor_si128(x, lens), h1), ej0);
    }
    // S = x H^(n+1) + sum of block i times H^(n+1-i) (i from 0, the state folded into block
    // 0) + lengths times H [+ pre times H^(n+2)], one reduction. Past block n-1 the lanes
    // are zero.
    let mut w = Wide::mul(lens, h1);
    if let Some(p) = pre {
        w = w.add(Wide::mul(p, gcm_ni::load(&h_pow[n + 1])));
    }
    if n == 0 {
        return tag(w.add(Wide::mul(x, h1)).reduce(), ej0);
    }
    let blocks = with_state(x, hashed);
    // Register j: H^(n+1-2j), H^(n-2j); j < regs, so its top is at least H^2.
    let h: [__m256i; REGS] = core::array::from_fn(|j| {
        if j < regs {
            powers(h_pow, n + 1 - PER * j)
        } else {
            _mm256_setzero_si256()
        }
    });
    let mut acc = match regs {
        1 => mul_sum!(1, &blocks, &h),
        2 => mul_sum!(2, &blocks, &h),
        3 => mul_sum!(3, &blocks, &h),
        4 => mul_sum!(4, &blocks, &h),
        5 => mul_sum!(5, &blocks, &h),
        6 => mul_sum!(6, &blocks, &h),
        7 => mul_sum!(7, &blocks, &h),
        _ => mul_sum!(REGS, &blocks, &h),
    };
    acc.add_wide(w);
    tag(acc.reduce(), ej0)
}

/// An ESP packet's body (RFC 4106) through [`ctr_ghash`] under pass `P`, from references
/// to its key (`enc`, `h_pow`), salt and 16 bytes of SPI, sequence number and IV: J0, the
/// AAD and lengths blocks and E_K(J0) are made here, in registers (as `gcm_vaes::esp_long`).
/// Returns the tag in wire order (the expected one for [`OPEN`]).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
pub(super) fn esp<const P: u8>(
    enc: &[[u8; 16]; 11],
    h_pow: &[[u8; 16]; HPOW],
    salt: &[u8; 4],
    hdr_iv: &[u8; 16],
    seq_hi: Option<u32>,
    body: &mut [u8],
) -> [u8; 16] {
    let body_len = body.len();
    let front = || {
        let (j0, aad, lens) = gcm_ni::esp_blocks(salt, gcm_ni::load(hdr_iv), seq_hi, body_len);
        let mut ej0 = _mm_xor_si128(j0, gcm_ni::load(&enc[0]));
        for rk in &enc[1..10] {
            ej0 = _mm_aesenc_si128(ej0, gcm_ni::load(rk));
        }
        ej0 = _mm_aesenclast_si128(ej0, gcm_ni::load(&enc[10]));
        // Made here, before the payload (see `gcm_vaes::esp_long`).
        // SAFETY: the template is only a comment: no instruction, memory, stack or flags.
        unsafe {
            core::arch::asm!("/* {0} */", inout(xmm_reg) ej0, options(nomem, nostack, preserves_flags))
        };
        Front {
            j0,
            ej0,
            x: _mm_setzero_si128(),
            first: Some(aad),
            lens,
        }
    };
    let t = ctr_ghash::<P>(enc, h_pow, front, body);
    let mut tag = [0u8; 16];
    // SAFETY: `tag` is 16 writable bytes.
    unsafe { _mm_storeu_si128(tag.as_mut_ptr().cast(), t) };
    tag
}

/// The tag E_K(J0) xor S from S byte-reversed and `ej0`, in wire order.
#[inline]
#[target_feature(enable = "ssse3")]
fn tag(s: __m128i, ej0: __m128i) -> __m128i {
    let rev = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    _mm_xor_si128(_mm_shuffle_epi8(s, rev), ej0)
}

/// H^top in lane 0 and H^(top-1) in lane 1 (`top` in 0..=16), powers below H^1 zero.
#[inline]
#[target_feature(enable = "avx2")]
fn powers(h_pow: &[[u8; 16]; HPOW], top: usize) -> __m256i {
    debug_assert!(top <= HPOW);
    match top.min(HPOW) {
        0 => _mm256_setzero_si256(),
        1 => _mm256_set_m128i(_mm_setzero_si128(), gcm_ni::load(&h_pow[0])),
        top => {
            // SAFETY: entries top-2 and top-1 (H^(top-1), H^top) are 32 bytes within the
            // table (2 <= top <= HPOW).
            let v = unsafe { _mm256_loadu_si256(h_pow.as_ptr().add(top - 2).cast()) };
            _mm256_permute4x64_epi64::<0b01_00_11_10>(v)
        }
    }
}

/// The blocks to hash, each byte-reversed, with the running GHASH state folded into the
/// first.
#[inline]
#[target_feature(enable = "avx2")]
fn with_state(x: __m128i, blocks: [__m256i; REGS]) -> [__m256i; REGS] {
    let rev = _mm256_broadcastsi128_si256(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let mut out = blocks.map(|b| _mm256_shuffle_epi8(b, rev));
    out[0] = _mm256_xor_si256(out[0], _mm256_set_m128i(_mm_setzero_si128(), x));
    out
}

/// True if [`short`] takes an ESP body of `len` bytes: at most `gcm_vaes::SHORT_BODY_MAX`
/// (six blocks: J0 and the body's counter blocks fill at most four registers) and whole
/// 4-byte words, since AVX2's masked loads and stores move dwords (an ESP body is a
/// multiple of four bytes, RFC 4303 2.4; other lengths go through [`esp`]).
#[inline]
pub(super) fn takes_short(len: usize) -> bool {
    len <= SHORT_BODY_MAX && len.is_multiple_of(4)
}

/// Registers of counter blocks [`short`] runs for the longest body of `len` bytes it is
/// given: J0 and `len.div_ceil(16)` blocks, two a register, at least two registers (one
/// monomorph fewer; a body of at most one block wastes one register's rounds).
#[inline]
pub(super) fn short_regs(len: usize) -> usize {
    (len.div_ceil(16) + 1).div_ceil(PER).max(2)
}

/// Dwords 0..8 of a register: the first `m` of them set (the 32 bytes at `8 - m` of 8 ones
/// then 8 zeros, `m` at most 8).
static DKEEP: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// A mask of the first `m` dwords of a register (`m` at most 8), for VPMASKMOVD.
#[inline]
#[target_feature(enable = "avx2")]
fn dwords(m: usize) -> __m256i {
    let m = m.min(8);
    // SAFETY: 8 - m + 8 <= 16: the eight dwords read lie within `DKEEP`.
    unsafe { _mm256_loadu_si256(DKEEP.as_ptr().add(8 - m).cast()) }
}

/// The dword mask of register `r` of a short packet's memory (which starts 16 bytes before
/// the body, so lane 0 is J0's and the body sits in lanes 1..=n): dword `8 r + d` is the
/// body's if it lies in 4..4 + `words`.
#[inline]
#[target_feature(enable = "avx2")]
fn body_mask(r: usize, words: usize) -> __m256i {
    let v = dwords((4 + words).saturating_sub(8 * r));
    if r == 0 {
        _mm256_blend_epi32::<0x0f>(v, _mm256_setzero_si256())
    } else {
        v
    }
}

/// Round key `r` of `enc` in both lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn round_key(enc: &[[u8; 16]; 11], r: usize) -> __m256i {
    _mm256_broadcastsi128_si256(gcm_ni::load(&enc[r]))
}

/// The 256-bit counterpart of `gcm_vaes::short`: CTR over the bodies of `M` short ESP
/// packets (RFC 4106; each may have its own key) and their tags E_K(J0) xor S, [`SEAL`]
/// hashing the ciphertext written and [`OPEN`] the ciphertext read (the returned tag then
/// the expected one; [`CTR_ONLY`] hashes nothing). Per packet, `R` registers of AES over J0
/// and its counter blocks (lane i is counter block i + 1: lane 0's keystream is E_K(J0), the
/// body in lanes 1..=n), the rounds of the `M` packets interleaved, then one carry-less
/// multiply pass of the AAD and the ciphertext by H^(n+2)..H^2 on the same `R` registers,
/// the lengths block's H^1 product in lane 0, and one reduction. The body is loaded and
/// stored in place by dword masks (AVX2 has no byte masks; [`takes_short`]). Every body must
/// satisfy [`takes_short`] and need at most `R` registers ([`short_regs`]); otherwise
/// nothing is done and the tags are zero (the callers check).
#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
#[allow(clippy::needless_range_loop)]
pub(super) fn short<const M: usize, const R: usize, const P: u8>(
    pk: &mut [Short<'_>; M],
) -> [__m128i; M] {
    let zero = _mm_setzero_si128();
    if pk
        .iter()
        .any(|s| !takes_short(s.body.len()) || short_regs(s.body.len()) > R)
    {
        return [zero; M];
    }
    // Plain loops, no closures over registers (`array::map`, `from_fn`): in the two-packet
    // seal the compiler left such closures out of line, each a call with its registers
    // through the stack (the 64-B burst seal 3.6 times slower).
    // J0, the byte-reversed AAD and lengths blocks of each packet.
    let mut blocks = [(zero, zero, zero); M];
    let mut st = [[_mm256_setzero_si256(); R]; M];
    for m in 0..M {
        let s = &pk[m];
        blocks[m] = gcm_ni::esp_blocks(s.salt, gcm_ni::load(s.hdr_iv), s.seq_hi, s.body.len());
        // SP 800-38D 7.1: J0 = nonce || 1, the payload's blocks nonce || 2, nonce || 3, ...
        // J0's counter is big-endian in its last byte, so lane i's block is J0 plus i in
        // that byte (i at most 7: no carry).
        let j0 = _mm256_broadcastsi128_si256(blocks[m].0);
        let k0 = round_key(s.enc, 0);
        for (r, v) in st[m].iter_mut().enumerate() {
            let (lo, hi) = ((PER * r) as i32, (PER * r + 1) as i32);
            let c = _mm256_add_epi32(j0, _mm256_set_epi32(hi << 24, 0, 0, 0, lo << 24, 0, 0, 0));
            *v = _mm256_xor_si256(c, k0);
        }
    }
    for r in 1..10 {
        for m in 0..M {
            let k = round_key(pk[m].enc, r);
            for v in st[m].iter_mut() {
                *v = _mm256_aesenc_epi128(*v, k);
            }
        }
    }
    for m in 0..M {
        let k = round_key(pk[m].enc, 10);
        for v in st[m].iter_mut() {
            *v = _mm256_aesenclast_epi128(*v, k);
        }
    }
    let rev = _mm256_broadcastsi128_si256(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let mut tags = [zero; M];
    for m in 0..M {
        let (_, aad, lens) = blocks[m];
        let s = &mut pk[m];
        let len = s.body.len();
        let n = len.div_ceil(16);
        let p = s.body.as_mut_ptr().wrapping_sub(16).cast::<i32>();
        let mut data = [_mm256_setzero_si256(); R];
        let mut out = [_mm256_setzero_si256(); R];
        for r in 0..R {
            let mask = body_mask(r, len / 4);
            let q = p.wrapping_add(8 * r);
            // SAFETY: the mask selects, of the eight dwords at p + 8 r, only dwords of
            // `body` (bytes 16..16 + len from p, `len` a multiple of 4); masked-off dwords
            // are neither read nor written nor faulted on, and `wrapping_*` keeps the
            // address arithmetic defined.
            unsafe {
                data[r] = _mm256_maskload_epi32(q, mask);
                out[r] = _mm256_and_si256(_mm256_xor_si256(data[r], st[m][r]), mask);
                _mm256_maskstore_epi32(q, mask, out[r]);
            }
        }
        if P == CTR_ONLY {
            continue;
        }
        // GHASH lanes: the AAD (lane 0, zero in `c`), C_1..C_n (zero-padded, as masked),
        // zeros past them; lane i times H^(n+2-i), powers below H^1 zero. The lengths
        // block's product by H^1 goes into lane 0 before the one reduction.
        let c = if P == OPEN { data } else { out };
        let g0 = _mm256_xor_si256(_mm256_shuffle_epi8(c[0], rev), _mm256_set_m128i(zero, aad));
        let mut acc = WideY::mul(g0, powers(s.h_pow, n + 2));
        for r in 1..R {
            let top = (n + 2).saturating_sub(PER * r);
            acc.add_mul(_mm256_shuffle_epi8(c[r], rev), powers(s.h_pow, top));
        }
        acc.add_wide(Wide::mul(lens, gcm_ni::load(&s.h_pow[0])));
        // SP 800-38D 7.1 step 6: the tag is E_K(J0) xor S, E_K(J0) lane 0 of the keystream.
        tags[m] = tag(acc.reduce(), _mm256_castsi256_si128(st[m][0]));
    }
    tags
}

// A batch of 16 blocks takes the whole table.
const _: () = assert!(HPOW == PER * REGS);
