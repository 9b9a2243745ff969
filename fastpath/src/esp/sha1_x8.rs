//! HMAC-SHA-1-96 (RFC 2104, RFC 2404) of a small burst's packets on 8 lanes of 256-bit
//! AVX-512 (VL): one message per 32-bit lane of a ymm register, the same step as the 16-lane
//! kernel (`sha1_x16`: VPROLD for the rotations, VPTERNLOGD for the round functions and the
//! schedule's three-way XOR, the sixteen schedule words in registers, a transpose per block
//! step) at half the width. On Intel cores 256-bit integer ops issue on three ports and
//! 256-bit rotates on two, against two and one at 512 bits, so an 8-lane step costs about
//! two thirds of a 16-lane one. It takes what the 16-lane kernel leaves to
//! `sha1_mb::finish_lanes` (small bursts, a burst's last lanes) from four live lanes of
//! long messages on Intel (`sha1_x16::Crossing::narrow_for`), where SHA-NI costs about 40 ns
//! a block whatever the interleaving (docs/BENCHMARKS.md, *Small-burst and single-packet
//! HMAC, round 12*).
//!
//! The lane bookkeeping (blocks, padded tails, outer blocks, ICVs) is `sha1_mb`'s [`Lane`].
//! SHA-1 per FIPS 180-4 6.1.2; padding per 5.1.1.

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::sha1_mb::{self, sha1_lanes_block, Lane};
use super::stitch;

/// Messages hashed at once: one per 32-bit lane of a ymm register.
const LANES: usize = 8;

/// True if this CPU has what the kernel uses (AVX-512 F and VL for VPROLD and VPTERNLOGD
/// on ymm, AVX2 for the shuffles) and the SHA-NI kernel it hands the last lanes to.
pub(super) fn available() -> bool {
    stitch::available()
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vl")
}

/// Drives up to 8 lanes over `lanes` (started or part-way through) until every HMAC is
/// done and its ICV written; once fewer than `handoff` are live and none is queued, the
/// SHA-NI kernel finishes them. The caller checked [`available`].
pub(super) fn finish_lanes<'a>(lanes: impl IntoIterator<Item = Lane<'a>>, handoff: usize) {
    let mut jobs = lanes.into_iter();
    let mut slots: [Option<Lane<'a>>; LANES] = core::array::from_fn(|_| None);
    sha1_mb::drive_lanes(
        &mut slots,
        &mut jobs,
        handoff,
        |rest| sha1_mb::finish_lanes_ni(rest),
        // SAFETY: callers checked `available()` (AVX2, AVX-512 F and VL).
        |state, segs, blocks| unsafe { compress8(state, segs, blocks) },
    );
}

/// Eight SHA-1 compressions side by side, each of `count` consecutive 64-byte blocks of its
/// lane's `segs[lane]` into `state[..][lane]`. A lane whose slice is shorter than `count`
/// blocks (an idle lane's zero block) compresses its first block `count` times. Does
/// nothing if a slice is shorter than one block.
///
/// # Safety
/// The CPU must support AVX2 and AVX-512 F and VL.
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[allow(unused_assignments)] // the last rounds' schedule writes are dead
unsafe fn compress8(state: &mut [[u32; LANES]; 5], segs: [&[u8]; LANES], count: usize) {
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
    let bswap = _mm256_broadcastsi128_si256(_mm_set_epi8(
        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    ));
    // SAFETY: each `state[w]` is 8 u32, one unaligned 32-byte load.
    let load = |w: &[u32; LANES]| unsafe { _mm256_loadu_si256(w.as_ptr().cast()) };
    let (mut a, mut b, mut c, mut d, mut e) = (
        load(&state[0]),
        load(&state[1]),
        load(&state[2]),
        load(&state[3]),
        load(&state[4]),
    );
    for n in 0..count {
        let half = |h: usize| -> [__m256i; LANES] {
            core::array::from_fn(|i| {
                // SAFETY: block `n` of lane `i` starts at `stride[i] * n`, and
                // `stride[i] * n + 64 <= segs[i].len()` (stride 64 only if the slice has
                // `count` blocks, else 0 with at least one block); `h` is 0 or 1.
                let v = unsafe {
                    _mm256_loadu_si256(segs[i].as_ptr().add(stride[i] * n + 32 * h).cast())
                };
                _mm256_shuffle_epi8(v, bswap)
            })
        };
        let lo = transpose8(half(0));
        let hi = transpose8(half(1));
        let w: [__m256i; 16] = core::array::from_fn(|t| if t < 8 { lo[t] } else { hi[t - 8] });
        sha1_lanes_block!(__m256i, _mm256_ternarylogic_epi32, _mm256_rol_epi32,
            _mm256_xor_si256, _mm256_add_epi32, _mm256_set1_epi32; a, b, c, d, e, w);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        // SAFETY: each `state[w]` is 8 u32, one unaligned 32-byte store.
        unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), v) };
    }
}

/// The 8 x 8 transpose of 32-bit words: row `i` in, word `i` of every row out.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    // Pairs of rows interleaved by words, then by pairs of words: each 128-bit half holds
    // one word of four rows; the halves are then put together.
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::sha1_mb::HmacJob;
    use crate::esp::stitch::Sha1NiKey;
    use hmac::{Hmac, Mac};

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    fn expected(key: &[u8], msg: &[u8], seq_hi: Option<u32>) -> [u8; 12] {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        m.update(msg);
        if let Some(h) = seq_hi {
            m.update(&h.to_be_bytes());
        }
        m.finalize().into_bytes()[..12].try_into().unwrap()
    }

    /// Bursts of `lens` through [`finish_lanes`] (SHA-NI below `handoff` lanes) against the
    /// `hmac` + `sha1` crates.
    fn check(r: &mut impl FnMut() -> u64, lens: &[usize], handoff: usize) {
        let keys: Vec<Vec<u8>> = (0..3)
            .map(|_| (0..20).map(|_| r() as u8).collect())
            .collect();
        let nikeys: Vec<Sha1NiKey> = keys.iter().map(|k| Sha1NiKey::new(k).unwrap()).collect();
        let msgs: Vec<Vec<u8>> = lens
            .iter()
            .map(|&n| (0..n).map(|_| r() as u8).collect())
            .collect();
        let esn: Vec<Option<u32>> = lens
            .iter()
            .map(|_| r().is_multiple_of(3).then(|| r() as u32))
            .collect();
        let mut icvs = vec![[0u8; 12]; lens.len()];
        let jobs = icvs.iter_mut().enumerate().map(|(i, icv)| HmacJob {
            key: &nikeys[i % 3],
            msg: &msgs[i],
            seq_hi: esn[i],
            icv,
        });
        finish_lanes(jobs.map(Lane::start), handoff);
        for (i, icv) in icvs.iter().enumerate() {
            assert_eq!(
                *icv,
                expected(&keys[i % 3], &msgs[i], esn[i]),
                "lens {lens:?}, job {i}"
            );
        }
    }

    /// Every length 0..=1500, in bursts of 1 to 12 alike and mixed, against the reference.
    #[test]
    fn matches_hmac_crate_at_every_length_and_lane_count() {
        if !available() {
            eprintln!("SKIPPED: no AVX-512 VL / SHA-NI");
            return;
        }
        let mut r = rng(0x8a5e);
        for len in 0..=1500usize {
            let n = 1 + len % 12;
            check(&mut r, &vec![len; n], 1 + len % 4);
        }
        for n in 1..=12usize {
            for _ in 0..20 {
                let lens: Vec<usize> = (0..n).map(|_| (r() % 1501) as usize).collect();
                check(&mut r, &lens, 1 + n % 4);
            }
        }
    }

    /// RFC 2202 section 3, test cases 1-3 (HMAC-SHA-1), truncated to 96 bits (RFC 2404),
    /// five lanes at once.
    #[test]
    fn rfc_2202_vectors() {
        if !available() {
            return;
        }
        let cases: [(Vec<u8>, Vec<u8>, &str); 3] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b617318655057264e28bc0b6",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "effcdf6ae5eb2fa2d27416d5",
            ),
            (vec![0xaa; 20], vec![0xdd; 50], "125d7342b9ac11cd91a39af4"),
        ];
        let keys: Vec<Sha1NiKey> = cases
            .iter()
            .map(|c| Sha1NiKey::new(&c.0).unwrap())
            .collect();
        let mut icvs = [[0u8; 12]; 5];
        let jobs = icvs.iter_mut().enumerate().map(|(i, icv)| HmacJob {
            key: &keys[i % 3],
            msg: &cases[i % 3].1,
            seq_hi: None,
            icv,
        });
        finish_lanes(jobs.map(Lane::start), 1);
        for (i, icv) in icvs.iter().enumerate() {
            let want: Vec<u8> = (0..12)
                .map(|j| u8::from_str_radix(&cases[i % 3].2[2 * j..2 * j + 2], 16).unwrap())
                .collect();
            assert_eq!(icv[..], want[..], "case {}", i % 3 + 1);
        }
    }

    /// ns per 1448-byte and 104-byte HMAC, 1 to 8 in a burst, this kernel against SHA-NI
    /// (minimum over interleaved rounds; release, `-- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn lane_timing() {
        if !available() {
            return;
        }
        let key = Sha1NiKey::new(&[7u8; 20]).unwrap();
        for len in [1448usize, 104] {
            let msgs: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; len]).collect();
            for n in 1..=8usize {
                let mut best = [u64::MAX; 2];
                let mut icvs = vec![[0u8; 12]; n];
                for _ in 0..400 {
                    for (k, b) in best.iter_mut().enumerate() {
                        let t = std::time::Instant::now();
                        let jobs = icvs.iter_mut().zip(&msgs).map(|(icv, m)| HmacJob {
                            key: &key,
                            msg: m,
                            seq_hi: None,
                            icv,
                        });
                        if k == 0 {
                            sha1_mb::finish_lanes_ni(jobs.map(Lane::start));
                        } else {
                            finish_x8_all(jobs.map(Lane::start));
                        }
                        *b = (*b).min(t.elapsed().as_nanos() as u64);
                    }
                }
                eprintln!(
                    "{len} B x {n}: SHA-NI {} ns, 8 lanes {} ns each",
                    best[0] / n as u64,
                    best[1] / n as u64
                );
            }
        }
    }

    /// Every lane on this kernel, whatever the count (the timing's forced case).
    fn finish_x8_all<'a>(lanes: impl Iterator<Item = Lane<'a>>) {
        let mut all: Vec<Lane<'a>> = lanes.collect();
        let mut state = [[0u32; LANES]; 5];
        const IDLE: [u8; 64] = [0; 64];
        while !all.is_empty() {
            let blocks = all
                .iter()
                .map(|l| l.segment().len() / 64)
                .min()
                .unwrap_or(0);
            for (i, l) in all.iter().enumerate() {
                for (w, s) in state.iter_mut().zip(l.state) {
                    w[i] = s;
                }
            }
            let segs: [&[u8]; LANES] =
                core::array::from_fn(|i| all.get(i).map_or(&IDLE[..], |l| l.segment()));
            // SAFETY: `available()` was checked by the caller.
            unsafe { compress8(&mut state, segs, blocks) };
            let mut i = 0;
            all.retain_mut(|l| {
                for (s, w) in l.state.iter_mut().zip(&state) {
                    *s = w[i];
                }
                i += 1;
                !l.consume(blocks)
            });
        }
    }
}
