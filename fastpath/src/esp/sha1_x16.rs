//! HMAC-SHA-1-96 (RFC 2104, RFC 2404) of a burst's packets on 16 lanes of AVX-512: one
//! message per 32-bit lane of a zmm register, so one instruction does a step of sixteen
//! SHA-1 computations. VPROLD does the rotations, VPTERNLOGD the round functions and the
//! three-way XOR of the message schedule; the sixteen schedule words stay in registers.
//! Each block step loads one 64-byte block per lane and transposes the 16 x 16 words.
//!
//! Lanes of different lengths run side by side: each call compresses as many blocks as every
//! lane has before its next phase (body, padded tail, outer block); a lane that finishes
//! takes the next message, an idle lane hashes a zero block whose result is dropped. Below
//! [`MIN_LANES`] messages in flight, or for messages of fewer than [`MIN_BODY_BLOCKS`]
//! whole blocks, the SHA-NI kernel (`sha1_mb`) is as fast or faster, so such a burst goes
//! there whole and the last few lanes of a burst are handed over to it.
//!
//! SHA-1 per FIPS 180-4 6.1.2; padding per 5.1.1 (the lane bookkeeping is `sha1_mb`'s).

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::sha1_mb::{self, HmacJob, Lane};
use super::stitch;

/// Messages hashed at once: one per 32-bit lane of a 512-bit register.
const LANES: usize = 16;

/// Fewest messages in flight worth the 16-lane kernel. A 16-lane block step costs the same
/// however many lanes are live: on Zen 4 (`lane_timing`, HMACs of 1448 bytes, minimum of 500
/// rounds) 16 lanes take 277 ns per HMAC, 12 lanes 355, 11 lanes 385, 8 lanes 516, 6 lanes
/// 678, where SHA-NI with four messages interleaved takes 370-420 ns each at any count.
const MIN_LANES: usize = 12;

/// True if this CPU has the AVX-512 subsets the kernel uses (F for VPROLD, VPTERNLOGD and
/// the 512-bit shuffles, BW for VPSHUFB on zmm, VL as the family's baseline) and the SHA-NI
/// kernel the small bursts fall back to. `is_x86_feature_detected!` caches the CPUID result.
pub(super) fn available() -> bool {
    stitch::available()
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
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
/// least [`MIN_LANES`] messages of [`MIN_BODY_BLOCKS`] on average, else on SHA-NI. The
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

/// [`hmac_sha1_96`], prefetching if `COLD`.
fn hmac<'a, const COLD: bool>(jobs: impl IntoIterator<Item = HmacJob<'a>>) {
    let mut jobs = jobs.into_iter();
    if !available() {
        return sha1_mb::hmac_sha1_96(jobs);
    }
    let mut lanes: [Option<Lane<'a>>; LANES] =
        core::array::from_fn(|_| jobs.next().map(Lane::start));
    let (live, body) = lanes
        .iter()
        .flatten()
        .fold((0, 0), |(n, b), l| (n + 1, b + l.segment().len() / 64));
    if live < MIN_LANES || body < live * MIN_BODY_BLOCKS {
        let rest = jobs.map(Lane::start);
        return sha1_mb::finish_lanes(lanes.into_iter().flatten().chain(rest));
    }
    run::<COLD>(&mut lanes, &mut jobs, MIN_LANES);
}

/// Drives the 16 lanes until every job is done; once no job is queued and fewer than
/// `handoff` lanes are live, the SHA-NI kernel finishes them. `COLD`: prefetch (see
/// [`hmac_sha1_96_cold`]).
fn run<'a, const COLD: bool>(
    lanes: &mut [Option<Lane<'a>>; LANES],
    jobs: &mut impl Iterator<Item = HmacJob<'a>>,
    handoff: usize,
) {
    const IDLE: [u8; 64] = [0; 64];
    let mut queued = true;
    // The lanes' chaining states, word-major (`state[w][lane]`), as the kernel loads them.
    let mut state = [[0u32; LANES]; 5];
    loop {
        if queued {
            for slot in lanes.iter_mut().filter(|l| l.is_none()) {
                match jobs.next() {
                    Some(j) => *slot = Some(Lane::start(j)),
                    None => {
                        queued = false;
                        break;
                    }
                }
            }
        }
        let live = lanes.iter().flatten().count();
        if live == 0 {
            break;
        }
        if !queued && live < handoff {
            sha1_mb::finish_lanes(lanes.iter_mut().filter_map(Option::take));
            break;
        }
        // A lane with nothing to compress cannot happen (`consume` retires it first); it
        // would be dropped without an ICV rather than loop for ever.
        for slot in lanes.iter_mut() {
            if slot.as_ref().is_some_and(|l| l.segment().len() < 64) {
                if let Some(mut l) = slot.take() {
                    l.wipe();
                }
            }
        }
        let blocks = lanes
            .iter()
            .flatten()
            .map(|l| l.segment().len() / 64)
            .min()
            .unwrap_or(0);
        if blocks == 0 {
            continue;
        }
        for (i, l) in lanes.iter().enumerate() {
            if let Some(l) = l {
                for (w, s) in state.iter_mut().zip(l.state) {
                    w[i] = s;
                }
            }
        }
        let segs: [&[u8]; LANES] =
            core::array::from_fn(|i| lanes[i].as_ref().map_or(&IDLE[..], |l| l.segment()));
        // SAFETY: every caller of `run` (`hmac_sha1_96`, the tests) checked `available()`
        // first, which found AVX-512 F and BW.
        unsafe { compress16::<COLD>(&mut state, segs, blocks) };
        for (i, slot) in lanes.iter_mut().enumerate() {
            let Some(l) = slot else { continue };
            for (s, w) in l.state.iter_mut().zip(&state) {
                *s = w[i];
            }
            if l.consume(blocks) {
                *slot = None;
            }
        }
    }
    state.zeroize();
}

/// Sixteen SHA-1 compressions side by side, each of `count` consecutive 64-byte blocks of
/// its lane's `segs[lane]` into `state[..][lane]`. A lane whose slice is shorter than
/// `count` blocks (an idle lane's zero block) compresses its first block `count` times.
/// Does nothing if a slice is shorter than one block. `COLD`: prefetch each lane's block
/// [`PREFETCH_AHEAD`] steps on.
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
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
    // Message words are big-endian: swap the bytes of every 32-bit word.
    let bswap = _mm512_broadcast_i32x4(_mm_set_epi8(
        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    ));
    // FIPS 180-4 4.2.1.
    let k = [0x5a82_7999u32, 0x6ed9_eba1, 0x8f1b_bcdc, 0xca62_c1d6]
        .map(|k| _mm512_set1_epi32(k as i32));
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
            let v = unsafe { _mm512_loadu_si512(segs[i].as_ptr().add(stride[i] * n).cast()) };
            _mm512_shuffle_epi8(v, bswap)
        });
        let mut w = transpose(rows);
        let (a0, b0, c0, d0, e0) = (a, b, c, d, e);
        // One round t (FIPS 180-4 6.1.2 step 3) with round function `f` as a VPTERNLOGD
        // truth table (Ch 0xca, Parity 0x96, Maj 0xe8) and constant `k[kk]`; from t = 16
        // the schedule word W[t] = ROTL1(W[t-3] ^ W[t-8] ^ W[t-14] ^ W[t-16]) (step 1)
        // replaces W[t-16] in the ring of sixteen.
        macro_rules! round {
            ($t:literal, $f:literal, $kk:literal) => {{
                let wt = if $t < 16 {
                    w[$t % 16]
                } else {
                    let x = _mm512_ternarylogic_epi32::<0x96>(
                        w[($t + 13) % 16],
                        w[($t + 8) % 16],
                        w[($t + 2) % 16],
                    );
                    let x = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, w[$t % 16]));
                    w[$t % 16] = x;
                    x
                };
                let f = _mm512_ternarylogic_epi32::<$f>(b, c, d);
                let kw = _mm512_add_epi32(k[$kk], wt);
                let t = _mm512_add_epi32(
                    _mm512_add_epi32(_mm512_rol_epi32::<5>(a), f),
                    _mm512_add_epi32(e, kw),
                );
                e = d;
                d = c;
                c = _mm512_rol_epi32::<30>(b);
                b = a;
                a = t;
            }};
        }
        macro_rules! rounds {
            ($f:literal, $kk:literal; $($t:literal)*) => { $( round!($t, $f, $kk); )* };
        }
        rounds!(0xca, 0; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19);
        rounds!(0x96, 1; 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39);
        rounds!(0xe8, 2; 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59);
        rounds!(0x96, 3; 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79);
        // Step 4.
        a = _mm512_add_epi32(a, a0);
        b = _mm512_add_epi32(b, b0);
        c = _mm512_add_epi32(c, c0);
        d = _mm512_add_epi32(d, d0);
        e = _mm512_add_epi32(e, e0);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        // SAFETY: each `state[w]` is 16 u32, one unaligned 64-byte store.
        unsafe { _mm512_storeu_si512(s.as_mut_ptr().cast(), v) };
    }
}

/// The 16 x 16 transpose of 32-bit words: row `i` in, word `i` of every row out.
#[target_feature(enable = "avx512f")]
fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
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
        out[k] = _mm512_shuffle_i32x4::<0x88>(x0, y0);
        out[k + 4] = _mm512_shuffle_i32x4::<0xdd>(x0, y0);
        out[k + 8] = _mm512_shuffle_i32x4::<0x88>(x1, y1);
        out[k + 12] = _mm512_shuffle_i32x4::<0xdd>(x1, y1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::stitch::Sha1NiKey;
    use hmac::{Hmac, Mac};

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

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
    fn check(rng: &mut Rng, lens: &[usize], handoff: usize, cold: bool) {
        let ikeys: Vec<Vec<u8>> = (0..5)
            .map(|_| (0..20).map(|_| rng.next() as u8).collect())
            .collect();
        let keys: Vec<Sha1NiKey> = ikeys.iter().map(|k| Sha1NiKey::new(k).unwrap()).collect();
        let data: Vec<u8> = (0..4200).map(|_| rng.next() as u8).collect();
        let cases: Vec<(usize, usize, usize, Option<u32>)> = lens
            .iter()
            .map(|&n| {
                let (k, off) = (rng.below(keys.len()), rng.below(64));
                let hi = (rng.below(2) == 1).then(|| rng.next() as u32);
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
        let mut rng = Rng(0x1234_5678_9abc_def1);
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
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        for n in 1..=40 {
            for handoff in [0, MIN_LANES] {
                let lens: Vec<usize> = (0..n)
                    .map(|_| match rng.below(3) {
                        0 => rng.below(200),
                        1 => 1400 + rng.below(100),
                        _ => rng.below(4097),
                    })
                    .collect();
                check(&mut rng, &lens, handoff, n % 2 == 0);
            }
        }
    }

    /// Through the dispatcher: small bursts (SHA-NI) and large ones (16 lanes) agree.
    #[test]
    fn dispatch_matches_hmac_crate() {
        if !stitch::available() {
            eprintln!("SKIPPED: no SHA-NI");
            return;
        }
        let ikey = [9u8; 20];
        let key = Sha1NiKey::new(&ikey).unwrap();
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [1, MIN_LANES - 1, MIN_LANES, 16, 17, 32] {
            let mut icvs = vec![[0u8; 12]; n];
            hmac_sha1_96(icvs.iter_mut().enumerate().map(|(i, icv)| HmacJob {
                key: &key,
                msg: &data[i..i + 1448],
                seq_hi: None,
                icv,
            }));
            for (i, icv) in icvs.iter().enumerate() {
                assert_eq!(icv, &expected(&ikey, &data[i..i + 1448], None), "{n} jobs");
            }
        }
    }

    /// Time per HMAC of 1448 bytes (an ESP packet of 1408 payload bytes) and of 104 (64) for
    /// bursts of 1..=32 messages: the 16-lane kernel against SHA-NI's four interleaved
    /// messages, minimum over many interleaved rounds (robust to other jobs on the box).
    /// Sets [`MIN_LANES`].
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
