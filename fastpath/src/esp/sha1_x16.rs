//! HMAC-SHA-1-96 (RFC 2104, RFC 2404) of a burst's packets on 16 lanes of AVX-512: one
//! message per 32-bit lane of a zmm register, so one instruction does a step of sixteen
//! SHA-1 computations. VPROLD does the rotations, VPTERNLOGD the round functions and the
//! three-way XOR of the message schedule; the sixteen schedule words stay in registers.
//! Each block step loads one 64-byte block per lane and transposes the 16 x 16 words.
//!
//! A burst of like lengths (every packet the same size, as a uniform burst is) goes 16 jobs
//! at a time through [`group16`]: each group's HMACs start to end in registers, the padded
//! tails made in registers, the outer blocks of all lanes in one step, no lane bookkeeping.
//! Otherwise lanes of different lengths run side by side: each call compresses as many
//! blocks as every lane has before its next phase (body, padded tail, outer block); a lane that finishes
//! takes the next message, an idle lane hashes a zero block whose result is dropped. Below
//! a number of messages in flight that depends on the CPU ([`Crossing`]: 12 on Zen 4, 6 on
//! Intel, whose SHA-NI is about 2.5x slower), and on Zen 4 for messages of fewer than
//! [`MIN_BODY_BLOCKS`] whole blocks, the SHA-NI kernel (`sha1_mb`) is as fast or faster, so
//! such a burst goes there whole and the last few lanes of a burst are handed over to it.
//!
//! SHA-1 per FIPS 180-4 6.1.2; padding per 5.1.1 (the lane bookkeeping is `sha1_mb`'s).

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::sha1_mb::{self, sha1_lanes_block, HmacJob, Lane};
use super::stitch;

/// One SHA-1 block step on 16 lanes ([`sha1_mb::sha1_lanes_block`] on zmm).
macro_rules! sha1_block16 {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $w:expr) => {
        sha1_lanes_block!(__m512i, _mm512_ternarylogic_epi32, _mm512_rol_epi32,
            _mm512_xor_si512, _mm512_add_epi32, _mm512_set1_epi32; $a, $b, $c, $d, $e, $w)
    };
}

/// The body of [`transpose`] and [`transpose_bswap!`]: the first two stages (pairs, then
/// quads of rows, within 128-bit lanes) and the 128-bit lane gather, whose last picks are
/// `$pick(x, y, false)` (lanes 0 and 2 of `x`, then of `y`) and `$pick(x, y, true)` (lanes
/// 1 and 3). A macro, so each caller's target features cover every intrinsic.
macro_rules! transpose_body {
    ($r:expr, $pick:expr) => {{
        let r: [__m512i; 16] = $r;
        let pick = $pick;
        // Pairs of rows interleaved: t[2j] = words 0,1 (and +4, +8, +12 per 128-bit lane) of
        // rows 2j and 2j+1, t[2j+1] = words 2,3.
        let t: [__m512i; 16] = core::array::from_fn(|i| {
            let (x, y) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(x, y)
            } else {
                _mm512_unpackhi_epi32(x, y)
            }
        });
        // Quads: u[4g + k] holds word k (+4 per 128-bit lane) of rows 4g..4g+3.
        let u: [__m512i; 16] = core::array::from_fn(|i| {
            let (g, k) = (i / 4 * 4, i % 4);
            let (x, y) = (t[g + k / 2], t[g + 2 + k / 2]);
            if k % 2 == 0 {
                _mm512_unpacklo_epi64(x, y)
            } else {
                _mm512_unpackhi_epi64(x, y)
            }
        });
        // Gather the 128-bit lanes: word k + 4m of rows 4j..4j+3 is lane m of u[4j + k].
        let mut out = [_mm512_setzero_si512(); 16];
        for k in 0..4 {
            let x0 = _mm512_shuffle_i32x4::<0x44>(u[k], u[4 + k]);
            let x1 = _mm512_shuffle_i32x4::<0xee>(u[k], u[4 + k]);
            let y0 = _mm512_shuffle_i32x4::<0x44>(u[8 + k], u[12 + k]);
            let y1 = _mm512_shuffle_i32x4::<0xee>(u[8 + k], u[12 + k]);
            out[k] = pick(x0, y0, false);
            out[k + 4] = pick(x0, y0, true);
            out[k + 8] = pick(x1, y1, false);
            out[k + 12] = pick(x1, y1, true);
        }
        out
    }};
}

/// The two byte-permute indices of [`transpose_bswap!`]'s last stage, one after the other:
/// byte q of 128-bit lane m of a result is byte bswap(q) (big-endian message words, FIPS
/// 180-4 3.1) of lane `sel[m]` of the first source (m < 2) or of the second (bit 6 of the
/// index); `sel` is (0, 2, 0, 2) for the first index, (1, 3, 1, 3) for the second. In
/// read-only memory, so setting up a group is two loads.
#[repr(C, align(64))]
struct PickIndices([u8; 128]);

static BSWAP_PICKS: PickIndices = PickIndices({
    let mut b = [0u8; 128];
    let mut j = 0;
    while j < 128 {
        let (half, m, q) = (j / 64, j % 64 / 16, j % 16);
        let lane = 2 * (m % 2) + half;
        let from_y = if m >= 2 { 64 } else { 0 };
        b[j] = (from_y + 16 * lane + (q & !3) + (3 - (q & 3))) as u8;
        j += 1;
    }
    b
});

/// [`BSWAP_PICKS`] in two registers.
#[inline]
#[target_feature(enable = "avx512f")]
fn bswap_pick_indices() -> [__m512i; 2] {
    // SAFETY: 128 readable bytes, two 64-byte loads.
    unsafe {
        let p = BSWAP_PICKS.0.as_ptr().cast::<__m512i>();
        [_mm512_loadu_si512(p), _mm512_loadu_si512(p.add(1))]
    }
}

/// [`transpose`] with every 32-bit word byte-swapped, `$idx` from [`bswap_pick_indices`]:
/// the last stage's 128-bit lane picks done by a two-source byte permute (VPERMT2B, AVX-512
/// VBMI) that also swaps the bytes, where a VPSHUFB per row came before the transpose
/// (sixteen fewer shuffle-port operations per block step). A macro expanded in the group
/// kernel: as a function LLVM kept it out of line (its results through memory).
macro_rules! transpose_bswap {
    ($r:expr, $idx:expr) => {{
        let idx: [__m512i; 2] = $idx;
        let pick = |x: __m512i, y: __m512i, o: bool| {
            let i = idx[usize::from(o)];
            let mut out = x;
            // SAFETY: VPERMT2B (AVX-512 VBMI, which the expanding function enables) on
            // registers only: `out` (first table, then the result), the index, `y` (second
            // table). Not the intrinsic: LLVM lowers a constant-index VPERMT2B to a
            // VSHUFI64X2 and a VPSHUFB, two shuffle-port operations where this is one.
            unsafe {
                core::arch::asm!(
                    "vpermt2b {out}, {i}, {y}",
                    out = inout(zmm_reg) out,
                    i = in(zmm_reg) i,
                    y = in(zmm_reg) y,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
            out
        };
        transpose_body!($r, pick)
    }};
}

/// Messages hashed at once: one per 32-bit lane of a 512-bit register.
const LANES: usize = 16;

/// Fewest messages in flight worth the 16-lane kernel on a CPU whose SHA-NI is fast (AMD
/// Zen 4). A 16-lane block step costs the same however many lanes are live: on Zen 4
/// (`lane_timing`, HMACs of 1448 bytes, minimum of 500 rounds) 16 lanes take 277 ns per
/// HMAC, 12 lanes 355, 11 lanes 385, 8 lanes 516, 6 lanes 678, where SHA-NI with four
/// messages interleaved takes 370-420 ns each at any count. See [`Crossing`] for the other
/// CPUs.
const MIN_LANES: usize = 12;

/// Where the 16-lane kernel overtakes SHA-NI on this CPU, in live lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Crossing {
    /// Fewest lanes worth the lane scheduler ([`run`]) and [`group16`] for messages of at
    /// least [`MIN_BODY_BLOCKS`] body blocks (and the hand-over of a burst's last lanes).
    pub(super) long: usize,
    /// The same for shorter messages, in the lane scheduler (`usize::MAX`: never).
    pub(super) short: usize,
    /// Fewest hmac-sha-1-96 + aes-cbc packets of a burst, either way and of any length, for
    /// which the multi-buffer path beats the single-packet one (`burst::multi_pays`), if
    /// measured as one count on this CPU (`None`: the rule by count and bytes of Zen 4).
    pub(super) burst: Option<usize>,
    /// Fewest live lanes for which the 8-lane kernel (`sha1_x8`) beats SHA-NI, where fewer
    /// than `long` are left, for messages of at least [`MIN_BODY_BLOCKS`] body blocks
    /// (shorter ones stay on SHA-NI; `usize::MAX`: never).
    pub(super) narrow: usize,
}

impl Crossing {
    /// AMD Zen 4 (and any CPU not known to be otherwise): SHA-NI's four interleaved
    /// messages cost 370-420 ns per 1448-byte HMAC, so 12 lanes; short messages stay on
    /// SHA-NI in the lane scheduler (84 against 88 ns at 104 bytes).
    const FAST_SHA_NI: Self = Self {
        long: MIN_LANES,
        short: usize::MAX,
        burst: None,
        narrow: usize::MAX,
    };
    /// Intel (measured on a Xeon of family 6 model 207 with AVX-512, VAES and SHA-NI,
    /// `lane_timing`): SHA-NI takes 950-990 ns per 1448-byte HMAC whatever the count, the
    /// 16-lane kernel 927 ns each with 5 lanes, 776 with 6, 322 with 16; at 104 bytes SHA-NI
    /// 205-220 ns, 16 lanes 257 with 6, 233 with 7, 206 with 8, 142 with 16. Whole bursts
    /// (`esp_small_bursts`): through the kernels 1.2-2.2x faster than the single path from
    /// six packets of 60..=1400 bytes, 0.3-1.1x below. The 8-lane kernel (`sha1_x8`,
    /// `narrow`): 675 / 569 ns per 1448-byte HMAC with 4 / 5 lanes against SHA-NI's 930-970;
    /// at 104 bytes faster alone (135 against 158 ns) but not inside the bursts.
    const SLOW_SHA_NI: Self = Self {
        long: 6,
        short: 8,
        burst: Some(6),
        narrow: 4,
    };

    /// This CPU's crossing: Intel's SHA-NI is about 2.5x slower per message than Zen 4's,
    /// so the 16 lanes pay from fewer messages (docs/BENCHMARKS.md, *Burst crypto, round
    /// 11*). The vendor is read once.
    pub(super) fn get() -> Self {
        use std::sync::atomic::{AtomicU8, Ordering};
        static VENDOR: AtomicU8 = AtomicU8::new(0);
        let v = match VENDOR.load(Ordering::Relaxed) {
            0 => {
                let v = if is_intel() { 2 } else { 1 };
                VENDOR.store(v, Ordering::Relaxed);
                v
            }
            v => v,
        };
        if v == 2 {
            Self::SLOW_SHA_NI
        } else {
            Self::FAST_SHA_NI
        }
    }

    /// Fewest live lanes worth the 8-lane kernel for messages of `body_blocks` whole blocks
    /// on average (`usize::MAX`: never).
    pub(super) fn narrow_for(self, body_blocks: usize) -> usize {
        if body_blocks < MIN_BODY_BLOCKS {
            usize::MAX
        } else {
            self.narrow
        }
    }

    /// Fewest live lanes worth the 16-lane kernel for messages of `body_blocks` whole
    /// blocks on average.
    pub(super) fn lanes_for(self, body_blocks: usize) -> usize {
        if body_blocks < MIN_BODY_BLOCKS {
            self.short
        } else {
            self.long
        }
    }
}

/// True if CPUID leaf 0 names the vendor "GenuineIntel".
fn is_intel() -> bool {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID leaf 0 exists on every x86-64 CPU and has no side effects.
    let id = unsafe { __cpuid(0) };
    let mut name = [0u8; 12];
    name[..4].copy_from_slice(&id.ebx.to_le_bytes());
    name[4..8].copy_from_slice(&id.edx.to_le_bytes());
    name[8..].copy_from_slice(&id.ecx.to_le_bytes());
    &name == b"GenuineIntel"
}

/// True if this CPU has the AVX-512 subsets the kernel uses (F for VPROLD, VPTERNLOGD and
/// the 512-bit shuffles, BW for VPSHUFB on zmm, VL as the family's baseline, VBMI for the
/// group kernel's byte-swapping transpose) and the SHA-NI kernel the small bursts fall back
/// to. Every CPU with AVX-512 BW and SHA-NI has VBMI (Ice Lake and later, Zen 4 and later). `is_x86_feature_detected!` caches the CPUID result.
pub(super) fn available() -> bool {
    stitch::available()
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512vbmi")
}

/// Blocks ahead of the one being compressed that [`compress16`] asks the cache for, per lane.
const PREFETCH_AHEAD: usize = 4;

/// Fewest whole body blocks per message, on average over the first 16 of a burst, worth the
/// 16-lane kernel: short messages spend most of their time in the lane bookkeeping and the
/// tail and outer blocks, where SHA-NI is as fast (`lane_timing`: 104-byte messages, one
/// body block, 84 ns each on SHA-NI and 88 on 16 lanes; `esp_burst` `burst_timing`: 256-byte
/// payloads, four body blocks, 241 -> 200 ns per packet with the 16 lanes).
const MIN_BODY_BLOCKS: usize = 3;

/// Computes every job's ICV: on 16 AVX-512 lanes if the CPU has them and the burst has at
/// least [`Crossing::get`]'s count of messages for their length, else on SHA-NI. The
/// caller guarantees SHA-NI (a `Sha1NiKey` exists only after its feature check).
pub(super) fn hmac_sha1_96<'a>(jobs: impl IntoIterator<Item = HmacJob<'a>>) {
    hmac::<false>(jobs)
}

/// [`hmac_sha1_96`] over messages that are likely not in the cache (received packets, whose
/// first touch this is): the 16-lane kernel prefetches each lane's blocks
/// [`PREFETCH_AHEAD`] steps ahead. Sixteen streams are more than the hardware prefetcher
/// follows; on messages just written (outbound, after CBC) the hints are wasted work.
pub(super) fn hmac_sha1_96_cold<'a>(jobs: impl IntoIterator<Item = HmacJob<'a>>) {
    hmac::<true>(jobs)
}

/// [`hmac_sha1_96`], prefetching if `COLD`. Groups of 16 jobs of like lengths (a uniform
/// burst: every packet the same size) go through [`group16`], which runs each group's
/// HMACs start to end in registers; the first group that does not fit it, and all after,
/// take the lane scheduler ([`run`]) or SHA-NI.
fn hmac<'a, const COLD: bool>(jobs: impl IntoIterator<Item = HmacJob<'a>>) {
    let mut jobs = jobs.into_iter();
    if !available() {
        return sha1_mb::hmac_sha1_96(jobs);
    }
    loop {
        let mut group: [Option<HmacJob<'a>>; LANES] = core::array::from_fn(|_| jobs.next());
        if group[0].is_none() {
            return;
        }
        if !fits_group(&group) {
            let lanes = group.map(|j| j.map(Lane::start));
            return lanes_or_sha_ni::<COLD>(lanes, jobs);
        }
        let full = group[LANES - 1].is_some();
        // SAFETY: `available()` found AVX-512 F, BW and VBMI (and VL) above.
        unsafe { group16::<COLD>(&mut group) };
        if !full {
            return;
        }
    }
}

/// The lane scheduler from `lanes` (the first jobs, started) and the rest of `jobs`, or
/// SHA-NI for all if there are too few lanes or too short messages for the 16-lane kernel.
fn lanes_or_sha_ni<'a, const COLD: bool>(
    mut lanes: [Option<Lane<'a>>; LANES],
    mut jobs: impl Iterator<Item = HmacJob<'a>>,
) {
    let (live, body) = lanes
        .iter()
        .flatten()
        .fold((0, 0), |(n, b), l| (n + 1, b + l.segment().len() / 64));
    let crossing = Crossing::get();
    if live == 0 || live < crossing.lanes_for(body / live) {
        let rest = jobs.map(Lane::start);
        return sha1_mb::finish_lanes(lanes.into_iter().flatten().chain(rest));
    }
    run::<COLD>(&mut lanes, &mut jobs, crossing.long);
}

/// Inner-hash blocks of an HMAC over `len` bytes after the ipad block: the whole blocks, then
/// one or two padded tail blocks (FIPS 180-4 5.1.1: 0x80 and the 8-byte length).
fn inner_blocks(len: usize) -> usize {
    (len + 9).div_ceil(64)
}

/// True if [`group16`] should hash this group: no ESN suffix (its tail is built in memory by
/// the lane scheduler), and at least [`Crossing::long`] lanes' worth of useful blocks in the
/// group's steps (every lane runs as many steps as the longest: uniform lengths waste none).
fn fits_group(group: &[Option<HmacJob<'_>>; LANES]) -> bool {
    let mut max = 0;
    let mut sum = 0;
    for j in group.iter().flatten() {
        if j.seq_hi.is_some() {
            return false;
        }
        let n = inner_blocks(j.msg.len());
        max = max.max(n);
        sum += n;
    }
    sum >= Crossing::get().long * max
}

/// The HMAC-SHA-1-96 of up to 16 jobs (`None`: an idle lane) start to end on 16 lanes, in
/// registers: the lanes' pad states transposed in from their keys, each step a block of
/// every lane (body blocks from the message, then the padded tail made in registers, then
/// a lane that is done keeps its state under a mask), the outer block of all lanes from
/// their inner digests without leaving the registers, the ICVs transposed out. No lane
/// bookkeeping: a group of like lengths is one call. `COLD`: prefetch each lane's body
/// [`PREFETCH_AHEAD`] blocks on. Jobs with an ESN suffix are not handled (see
/// [`fits_group`]); their ICVs are left as they are.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[allow(unused_assignments)] // the last rounds' schedule and state writes are dead
unsafe fn group16<const COLD: bool>(group: &mut [Option<HmacJob<'_>>; LANES]) {
    // Per lane: the message, its whole blocks, its inner steps, and its tail blocks (the
    // last `len % 64` bytes, 0x80, zeros, the big-endian bit length, FIPS 180-4 5.1.1).
    let mut body = [core::ptr::null::<u8>(); LANES];
    let mut whole = [0usize; LANES];
    let mut steps = [0u32; LANES];
    let zero = _mm512_setzero_si512();
    let mut keys = [zero; LANES];
    if COLD {
        // The tails' lines of every lane asked for before any is loaded below: on received
        // packets this is their first touch, and one loop with a load per lane keeps only
        // the misses its window holds in flight (a sixth of the kernel at 104 B waited on
        // them).
        for j in group.iter().flatten() {
            let tail = j.msg.len() / 64 * 64;
            crate::sad::prefetch(j.msg.as_ptr().wrapping_add(tail));
            crate::sad::prefetch(j.msg.as_ptr().wrapping_add(j.msg.len().max(1) - 1));
        }
    }
    for (i, j) in group.iter().enumerate() {
        let Some(j) = j else { continue };
        if j.seq_hi.is_some() {
            return;
        }
        let len = j.msg.len();
        body[i] = j.msg.as_ptr();
        whole[i] = len / 64;
        steps[i] = inner_blocks(len) as u32;
        // SAFETY: five words of each pad state: the masked load reads `ipad`'s 20 bytes only,
        // the expand load `opad`'s 20 bytes only (into words 5..10).
        keys[i] = unsafe {
            let r = _mm512_maskz_loadu_epi32(0x1f, j.key.ipad.as_ptr().cast());
            _mm512_mask_expandloadu_epi32(r, 0x3e0, j.key.opad.as_ptr().cast())
        };
    }
    // Each lane's tail blocks, built in place (no 2 KiB zeroing of an array first: that was
    // a `memset` call per group).
    let tails: [[__m512i; 2]; LANES] = core::array::from_fn(|i| {
        let Some(j) = &group[i] else {
            return [zero; 2];
        };
        let len = j.msg.len();
        let (full, rem) = (len / 64, len % 64);
        // SAFETY: the mask selects the `rem` bytes after the whole blocks, all inside `msg`;
        // masked-off bytes are not read (AVX-512 fault suppression).
        let t = unsafe {
            _mm512_maskz_loadu_epi8((1u64 << rem) - 1, j.msg.as_ptr().add(64 * full).cast())
        };
        let t = _mm512_mask_set1_epi8(t, 1u64 << rem, 0x80u8 as i8);
        // The ipad block already hashed counts towards the length.
        let bits = (((64 + len) as u64) * 8).swap_bytes() as i64;
        if rem + 9 <= 64 {
            [_mm512_mask_set1_epi64(t, 0x80, bits), zero]
        } else {
            [t, _mm512_maskz_set1_epi64(0x80, bits)]
        }
    });
    // Word w of every lane's pad states: ipad in 0..5, opad in 5..10.
    let pads = transpose(keys);
    wipe_zmm(&mut keys, zero);
    let (mut a, mut b, mut c, mut d, mut e) = (pads[0], pads[1], pads[2], pads[3], pads[4]);
    let bswap = _mm512_broadcast_i32x4(_mm_set_epi8(
        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    ));
    // SAFETY: `steps` is 16 u32, one unaligned 64-byte load.
    let steps_v = unsafe { _mm512_loadu_si512(steps.as_ptr().cast()) };
    let picks = bswap_pick_indices();
    let max = steps.iter().copied().max().unwrap_or(0) as usize;
    for n in 0..max {
        if COLD {
            for (p, &w) in body.iter().zip(&whole) {
                if n + PREFETCH_AHEAD < w {
                    crate::sad::prefetch(p.wrapping_add(64 * (n + PREFETCH_AHEAD)));
                }
            }
        }
        let rows: [__m512i; LANES] = core::array::from_fn(|i| {
            if n < whole[i] {
                // SAFETY: block `n` of the message's `whole[i]` whole blocks.
                unsafe { _mm512_loadu_si512(body[i].add(64 * n).cast()) }
            } else {
                // A lane past its last step hashes its last tail block again, dropped below.
                tails[i][(n - whole[i]).min(1)]
            }
        });
        let live = _mm512_cmpgt_epu32_mask(steps_v, _mm512_set1_epi32(n as i32));
        let (a0, b0, c0, d0, e0) = (a, b, c, d, e);
        sha1_block16!(a, b, c, d, e, transpose_bswap!(rows, picks));
        a = _mm512_mask_mov_epi32(a0, live, a);
        b = _mm512_mask_mov_epi32(b0, live, b);
        c = _mm512_mask_mov_epi32(c0, live, c);
        d = _mm512_mask_mov_epi32(d0, live, d);
        e = _mm512_mask_mov_epi32(e0, live, e);
    }
    // RFC 2104: the outer hash over the 20-byte inner digest, one block: the digest's five
    // words, 0x80, zeros and the length of 84 bytes in bits.
    let mut w = [zero; 16];
    w[..5].copy_from_slice(&[a, b, c, d, e]);
    w[5] = _mm512_set1_epi32(0x8000_0000u32 as i32);
    w[15] = _mm512_set1_epi32((64 + 20) * 8);
    (a, b, c, d, e) = (pads[5], pads[6], pads[7], pads[8], pads[9]);
    sha1_block16!(a, b, c, d, e, w);
    // The ICV: the first 12 bytes of each lane's digest, big-endian. Words a, b, c (and d,
    // dropped) of a lane side by side first: a 4 x 4 transpose of 32-bit words within each
    // 128-bit lane puts lane 4k + r in 128-bit lane k of `rows[r]`, so each ICV is one
    // 12-byte copy. Three 4-byte copies per lane from word-major rows were compiled into a
    // gather and a masked store per lane (both slow on Zen 4: 8% of the kernel at 104 B).
    let (t0, t1) = (_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let (t2, t3) = (_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    let rows = [
        _mm512_unpacklo_epi64(t0, t2),
        _mm512_unpackhi_epi64(t0, t2),
        _mm512_unpacklo_epi64(t1, t3),
        _mm512_unpackhi_epi64(t1, t3),
    ];
    let mut out = [[[0u8; 16]; 4]; 4];
    for (o, v) in out.iter_mut().zip(rows) {
        // SAFETY: four 16-byte blocks, one unaligned 64-byte store.
        unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), _mm512_shuffle_epi8(v, bswap)) };
    }
    for (i, j) in group.iter_mut().enumerate() {
        let Some(j) = j else { continue };
        if let (Some(d), Some(w)) = (j.icv.get_mut(..12), out[i % 4][i / 4].get(..12)) {
            d.copy_from_slice(w);
        }
    }
}

/// Overwrites an array of zmm values that held key material with `zero` (best effort:
/// registers are not addressable). An AVX-512 function taking the caller's zero register:
/// the intrinsic called from code without the feature was an out-of-line call per slot.
#[inline]
#[target_feature(enable = "avx512f")]
fn wipe_zmm(regs: &mut [__m512i; LANES], zero: __m512i) {
    for r in regs.iter_mut() {
        // SAFETY: `r` is a valid, aligned __m512i slot; a volatile write keeps the wipe.
        unsafe { core::ptr::write_volatile(r, zero) };
    }
}

/// Drives the 16 lanes until every job is done; once no job is queued and fewer than
/// `handoff` lanes are live, the SHA-NI kernel finishes them. `COLD`: prefetch (see
/// [`hmac_sha1_96_cold`]).
fn run<'a, const COLD: bool>(
    lanes: &mut [Option<Lane<'a>>; LANES],
    jobs: &mut impl Iterator<Item = HmacJob<'a>>,
    handoff: usize,
) {
    sha1_mb::drive_lanes(
        lanes,
        &mut jobs.map(Lane::start),
        handoff,
        |rest| sha1_mb::finish_lanes(rest),
        // SAFETY: every caller of `run` (`hmac_sha1_96`, the tests) checked `available()`
        // first, which found AVX-512 F, BW and VBMI.
        |state, segs, blocks| unsafe { compress16::<COLD>(state, segs, blocks) },
    );
}

/// Sixteen SHA-1 compressions side by side, each of `count` consecutive 64-byte blocks of
/// its lane's `segs[lane]` into `state[..][lane]`. A lane whose slice is shorter than
/// `count` blocks (an idle lane's zero block) compresses its first block `count` times.
/// Does nothing if a slice is shorter than one block. `COLD`: prefetch each lane's block
/// [`PREFETCH_AHEAD`] steps on.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[allow(unused_assignments)] // the last rounds' schedule writes are dead
unsafe fn compress16<const COLD: bool>(
    state: &mut [[u32; LANES]; 5],
    segs: [&[u8]; LANES],
    count: usize,
) {
    let mut stride = [0usize; LANES];
    for (s, seg) in stride.iter_mut().zip(&segs) {
        if seg.len() < 64 {
            return;
        }
        if seg.len() / 64 >= count {
            *s = 64;
        }
    }
    // Message words are big-endian: the transpose swaps the bytes of every 32-bit word.
    let picks = bswap_pick_indices();
    // SAFETY: each `state[w]` is 16 u32, one unaligned 64-byte load.
    let load = |w: &[u32; LANES]| unsafe { _mm512_loadu_si512(w.as_ptr().cast()) };
    let (mut a, mut b, mut c, mut d, mut e) = (
        load(&state[0]),
        load(&state[1]),
        load(&state[2]),
        load(&state[3]),
        load(&state[4]),
    );
    for n in 0..count {
        // A hint: past a slice's end it reads nothing and never faults.
        if COLD {
            for (seg, st) in segs.iter().zip(&stride) {
                crate::sad::prefetch(seg.as_ptr().wrapping_add(st * (n + PREFETCH_AHEAD)));
            }
        }
        let rows: [__m512i; LANES] = core::array::from_fn(|i| {
            // SAFETY: block `n` of lane `i` starts at `stride[i] * n`, and
            // `stride[i] * n + 64 <= segs[i].len()` (stride 64 only if the slice has
            // `count` blocks, else 0 with at least one block).
            unsafe { _mm512_loadu_si512(segs[i].as_ptr().add(stride[i] * n).cast()) }
        });
        let w = transpose_bswap!(rows, picks);
        sha1_block16!(a, b, c, d, e, w);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        // SAFETY: each `state[w]` is 16 u32, one unaligned 64-byte store.
        unsafe { _mm512_storeu_si512(s.as_mut_ptr().cast(), v) };
    }
}

/// The 16 x 16 transpose of 32-bit words: row `i` in, word `i` of every row out.
/// Inlined: called out of line (LLVM's choice without the hint), every block step stored its
/// 16 rows to the stack, called through the GOT after a VZEROUPPER, and loaded the 16 words
/// back (2 KiB of stack traffic per step).
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
    let pick = |x, y, odd: bool| {
        if odd {
            _mm512_shuffle_i32x4::<0xdd>(x, y)
        } else {
            _mm512_shuffle_i32x4::<0x88>(x, y)
        }
    };
    transpose_body!(r, pick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::stitch::Sha1NiKey;
    use hmac::{Hmac, Mac};
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng};

    fn expected(key: &[u8], msg: &[u8], seq_hi: Option<u32>) -> [u8; 12] {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(msg);
        if let Some(hi) = seq_hi {
            m.update(&hi.to_be_bytes());
        }
        m.finalize().into_bytes()[..12].try_into().unwrap()
    }

    /// Runs the 16-lane kernel (no fallback to SHA-NI, `handoff` 0 unless given) over
    /// `lens` messages with random keys, offsets and ESN suffixes; compares each ICV with
    /// the `hmac` + `sha1` crates.
    fn check(rng: &mut StdRng, lens: &[usize], handoff: usize, cold: bool) {
        let ikeys: Vec<Vec<u8>> = (0..5)
            .map(|_| (0..20).map(|_| rng.gen::<u64>() as u8).collect())
            .collect();
        let keys: Vec<Sha1NiKey> = ikeys.iter().map(|k| Sha1NiKey::new(k).unwrap()).collect();
        let data: Vec<u8> = (0..4200).map(|_| rng.gen::<u64>() as u8).collect();
        let cases: Vec<(usize, usize, usize, Option<u32>)> = lens
            .iter()
            .map(|&n| {
                let (k, off) = (rng.gen_range(0..keys.len()), rng.gen_range(0..64));
                let hi = (rng.gen_range(0..2) == 1).then(|| rng.gen::<u64>() as u32);
                (k, off, n, hi)
            })
            .collect();
        let mut icvs = vec![[0u8; 12]; lens.len()];
        let mut jobs = icvs
            .iter_mut()
            .zip(&cases)
            .map(|(icv, &(k, off, n, hi))| HmacJob {
                key: &keys[k],
                msg: &data[off..off + n],
                seq_hi: hi,
                icv,
            });
        let mut lanes: [Option<Lane<'_>>; LANES] =
            core::array::from_fn(|_| jobs.next().map(Lane::start));
        if cold {
            run::<true>(&mut lanes, &mut jobs, handoff);
        } else {
            run::<false>(&mut lanes, &mut jobs, handoff);
        }
        for (icv, &(k, off, n, hi)) in icvs.iter().zip(&cases) {
            let want = expected(&ikeys[k], &data[off..off + n], hi);
            assert_eq!(icv, &want, "length {n} in burst {lens:?}");
        }
    }

    /// Every message length 0..300 (each tail shape: one or two padding blocks, with and
    /// without the ESN suffix), 16 lanes at a time, all on the AVX-512 kernel.
    #[test]
    fn every_length_matches_hmac_crate() {
        if !available() {
            eprintln!("SKIPPED: no AVX-512");
            return;
        }
        let mut rng = StdRng::seed_from_u64(0x1234_5678_9abc_def1);
        let lens: Vec<usize> = (0..300).collect();
        check(&mut rng, &lens, 0, false);
    }

    /// Bursts of 1..=40 messages of random, mixed lengths up to 4096 bytes: lanes finish at
    /// different blocks and are refilled while others are in their bodies; once with the
    /// 16-lane kernel throughout, once with the hand-over of the last lanes to SHA-NI.
    #[test]
    fn mixed_bursts_of_1_to_40_match_hmac_crate() {
        if !available() {
            eprintln!("SKIPPED: no AVX-512");
            return;
        }
        let mut rng = StdRng::seed_from_u64(0x0dd_ba11_cafe_f00d);
        for n in 1..=40 {
            for handoff in [0, Crossing::SLOW_SHA_NI.long, MIN_LANES] {
                let lens: Vec<usize> = (0..n)
                    .map(|_| match rng.gen_range(0..3) {
                        0 => rng.gen_range(0..200),
                        1 => 1400 + rng.gen_range(0..100),
                        _ => rng.gen_range(0..4097),
                    })
                    .collect();
                check(&mut rng, &lens, handoff, n % 2 == 0);
            }
        }
    }

    /// The group kernel alone: every message length 0..=300 (each tail shape), 16 at a time
    /// with mixed keys and offsets, groups with idle lanes, and groups of mixed lengths
    /// (lanes done early keep their state under the mask), against the `hmac` crate.
    #[test]
    fn group_kernel_matches_hmac_crate() {
        if !available() {
            eprintln!("SKIPPED: no AVX-512");
            return;
        }
        let mut rng = StdRng::seed_from_u64(0x6a09_e667_f3bc_c908);
        let ikeys: Vec<Vec<u8>> = (0..4)
            .map(|_| (0..20).map(|_| rng.gen::<u64>() as u8).collect())
            .collect();
        let keys: Vec<Sha1NiKey> = ikeys.iter().map(|k| Sha1NiKey::new(k).unwrap()).collect();
        let data: Vec<u8> = (0..3200).map(|_| rng.gen::<u64>() as u8).collect();
        let mut groups: Vec<Vec<usize>> = (0..=300)
            .collect::<Vec<_>>()
            .chunks(16)
            .map(<[_]>::to_vec)
            .collect();
        groups.push(vec![104; 16]);
        groups.push(vec![1448; 16]);
        groups.push(vec![1448; 3]);
        groups.push((0..16).map(|_| rng.gen_range(0..3000)).collect());
        for lens in groups {
            let cases: Vec<(usize, usize)> = lens
                .iter()
                .map(|_| (rng.gen_range(0..keys.len()), rng.gen_range(0..64)))
                .collect();
            let mut icvs = vec![[0u8; 12]; lens.len()];
            let mut jobs = icvs
                .iter_mut()
                .zip(&lens)
                .zip(&cases)
                .map(|((icv, &n), &(k, off))| HmacJob {
                    key: &keys[k],
                    msg: &data[off..off + n],
                    seq_hi: None,
                    icv,
                });
            let mut group: [Option<HmacJob<'_>>; LANES] = core::array::from_fn(|_| jobs.next());
            // SAFETY: `available()` above.
            unsafe { group16::<false>(&mut group) };
            for ((icv, &n), &(k, off)) in icvs.iter().zip(&lens).zip(&cases) {
                let want = expected(&ikeys[k], &data[off..off + n], None);
                assert_eq!(icv, &want, "length {n} in group {lens:?}");
            }
        }
    }

    /// Through the dispatcher: uniform bursts of 12..=40 packets (groups of 16, then a rest
    /// to the lane scheduler or SHA-NI), with an ESN job or a long one breaking the shape.
    #[test]
    fn uniform_bursts_match_hmac_crate() {
        if !stitch::available() {
            eprintln!("SKIPPED: no SHA-NI");
            return;
        }
        let ikey = [5u8; 20];
        let key = Sha1NiKey::new(&ikey).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 11 + 1) as u8).collect();
        for len in [104usize, 1448] {
            for n in [12usize, 16, 17, 20, 28, 32, 40] {
                for odd in [None, Some(3), Some(n - 1), Some(20)] {
                    let mut icvs = vec![[0u8; 12]; n];
                    let spec = |i: usize| -> (usize, Option<u32>) {
                        match odd {
                            Some(o) if o == i && i.is_multiple_of(2) => (len, Some(0x0102_0304)),
                            Some(o) if o == i => (3000, None),
                            _ => (len, None),
                        }
                    };
                    let jobs = icvs.iter_mut().enumerate().map(|(i, icv)| HmacJob {
                        key: &key,
                        msg: &data[i..i + spec(i).0],
                        seq_hi: spec(i).1,
                        icv,
                    });
                    hmac_sha1_96_cold(jobs);
                    for (i, icv) in icvs.iter().enumerate() {
                        let (l, hi) = spec(i);
                        assert_eq!(
                            icv,
                            &expected(&ikey, &data[i..i + l], hi),
                            "{n} x {len}, odd {odd:?}, job {i}"
                        );
                    }
                }
            }
        }
    }

    /// Cycles (time-stamp counter) per call of the group kernel on 16 jobs of 104 and 1448
    /// bytes (ESP packets of 64 and 1408 payload bytes: 3 and 25 block steps), median over
    /// many rounds: against the steps' own cost, what the group's setup and ICVs add.
    /// `cargo test --release -p akagate-fastpath --lib sha1_x16::tests::group_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn group_timing() {
        if !available() {
            return;
        }
        let key = Sha1NiKey::new(&[7u8; 20]).unwrap();
        for len in [104usize, 1448] {
            let data = vec![0x5au8; 16 * len];
            let mut icvs = [[0u8; 12]; 16];
            let mut t = Vec::new();
            for _ in 0..20000 {
                let mut jobs = icvs
                    .iter_mut()
                    .zip(data.chunks(len))
                    .map(|(icv, msg)| HmacJob {
                        key: &key,
                        msg,
                        seq_hi: None,
                        icv,
                    });
                let mut group: [Option<HmacJob<'_>>; LANES] = core::array::from_fn(|_| jobs.next());
                // SAFETY: RDTSC exists on every x86_64 CPU.
                let t0 = unsafe { _rdtsc() };
                // SAFETY: `available()` above found AVX-512 F, BW and VBMI.
                unsafe { group16::<false>(&mut group) };
                // SAFETY: as for `t0`.
                let t1 = unsafe { _rdtsc() };
                t.push(t1 - t0);
            }
            t.sort_unstable();
            let steps = inner_blocks(len) + 1;
            eprintln!(
                "{len} B: {} cycles per group of 16 ({steps} steps, {:.0} per step, {:.1} per HMAC)",
                t[t.len() / 2],
                t[t.len() / 2] as f64 / steps as f64,
                t[t.len() / 2] as f64 / 16.0
            );
        }
    }

    /// Through the dispatcher: small bursts (SHA-NI) and large ones (16 lanes) agree, on
    /// both sides of both CPUs' crossings, long and short messages, like and mixed lengths.
    #[test]
    fn dispatch_matches_hmac_crate() {
        if !stitch::available() {
            eprintln!("SKIPPED: no SHA-NI");
            return;
        }
        let ikey = [9u8; 20];
        let key = Sha1NiKey::new(&ikey).unwrap();
        let data: Vec<u8> = (0..2100u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [104, 200, 1448] {
            for mixed in [false, true] {
                for n in [1, 5, 6, 7, 8, 11, 12, 16, 17, 21, 22, 23, 28, 32] {
                    let len_of = |i: usize| if mixed { len + 16 * (i % 3) } else { len };
                    let mut icvs = vec![[0u8; 12]; n];
                    hmac_sha1_96(icvs.iter_mut().enumerate().map(|(i, icv)| HmacJob {
                        key: &key,
                        msg: &data[i..i + len_of(i)],
                        seq_hi: None,
                        icv,
                    }));
                    for (i, icv) in icvs.iter().enumerate() {
                        let want = expected(&ikey, &data[i..i + len_of(i)], None);
                        assert_eq!(icv, &want, "{n} jobs of {len}, mixed {mixed}");
                    }
                }
            }
        }
    }

    /// The crossing follows the vendor as the kernel reports it in `/proc/cpuinfo`.
    #[test]
    fn crossing_follows_the_vendor() {
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            eprintln!("SKIPPED: no /proc/cpuinfo");
            return;
        };
        let intel = info
            .lines()
            .find(|l| l.starts_with("vendor_id"))
            .is_some_and(|l| l.trim_end().ends_with("GenuineIntel"));
        assert_eq!(is_intel(), intel);
        let c = Crossing::get();
        let want = if intel {
            Crossing::SLOW_SHA_NI
        } else {
            Crossing::FAST_SHA_NI
        };
        assert_eq!(c, want);
        assert_eq!(Crossing::get(), c, "read once, the same after");
        assert_eq!(c.lanes_for(MIN_BODY_BLOCKS), c.long);
        assert_eq!(c.lanes_for(MIN_BODY_BLOCKS - 1), c.short);
    }

    /// Time per HMAC of 1448 bytes (an ESP packet of 1408 payload bytes) and of 104 (64) for
    /// bursts of 1..=32 messages: the 16-lane kernel against SHA-NI's four interleaved
    /// messages, minimum over many interleaved rounds (robust to other jobs on the box).
    /// Sets [`Crossing`].
    /// `cargo test --release -p akagate-fastpath --lib sha1_x16::tests::lane_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn lane_timing() {
        if !available() {
            return;
        }
        let key = Sha1NiKey::new(&[7u8; 20]).unwrap();
        for len in [1448usize, 104] {
            let data = vec![0x5au8; 32 * len];
            let mut icvs = vec![[0u8; 12]; 32];
            let mut best = [[u128::MAX; 2]; 33];
            for _ in 0..500 {
                for (n, best) in best.iter_mut().enumerate().skip(1) {
                    for (kernel, best) in best.iter_mut().enumerate() {
                        let mut jobs =
                            icvs.iter_mut()
                                .zip(data.chunks(len))
                                .take(n)
                                .map(|(icv, msg)| HmacJob {
                                    key: &key,
                                    msg,
                                    seq_hi: None,
                                    icv,
                                });
                        let t = std::time::Instant::now();
                        if kernel == 0 {
                            sha1_mb::hmac_sha1_96(jobs);
                        } else {
                            let mut lanes: [Option<Lane<'_>>; LANES] =
                                core::array::from_fn(|_| jobs.next().map(Lane::start));
                            run::<false>(&mut lanes, &mut jobs, 0);
                        }
                        *best = (*best).min(t.elapsed().as_nanos());
                    }
                }
            }
            for (n, b) in best.iter().enumerate().skip(1) {
                eprintln!(
                    "{len} B, {n:2} HMACs: SHA-NI {:6.1} ns each, AVX-512 x16 {:6.1} ns each",
                    b[0] as f64 / n as f64,
                    b[1] as f64 / n as f64
                );
            }
        }
    }
}
