//! Multi-buffer AES-128-CBC encryption for bursts: the CBC chains of several packets advance
//! in lock-step, so the AES unit always has independent blocks in flight where one chain alone
//! waits the full round latency for every block. Each lane has its own round keys (packets
//! of a burst belong to different SAs).
//!
//! Kernels: VAES + AVX-512 runs 16 lanes, four per zmm register (one VAESENC does a round
//! for four packets); VAES + AVX2 (no AVX-512: Zen 3) runs 16 lanes, two per ymm register;
//! AES-NI runs 8 lanes in xmm registers. A lane whose packet is done takes
//! the next packet of the burst (the refill shape of VPP's multi-buffer CBC).

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::aesni::Aes128Ni;

/// One CBC encryption of a burst: the SA's round keys, the IV and the plaintext (whole
/// 16-byte blocks), encrypted in place.
pub(super) struct CbcStream<'a> {
    /// AES-128 key schedule of the packet's SA.
    pub(super) keys: &'a Aes128Ni,
    /// The packet's IV (RFC 3602 2.1), the first chaining value.
    pub(super) iv: [u8; 16],
    /// Body to encrypt in place; a trailing partial block is left untouched.
    pub(super) data: &'a mut [u8],
}

/// A multi-buffer CBC kernel the CPU can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CbcKernel {
    /// VAES + AVX-512F: 16 lanes, four per zmm register.
    Vaes16,
    /// VAES + AVX2: 16 lanes, two per ymm register (on Zen 3 a ymm VAESENC issues on two
    /// pipes, as AESENC xmm does: twice the blocks a cycle of the 8-lane kernel).
    VaesYmm16,
    /// AES-NI: 8 lanes in xmm registers.
    AesNi8,
}

impl CbcKernel {
    /// The fastest kernel this CPU supports, or `None` without AES-NI.
    pub fn detect() -> Option<Self> {
        if std::is_x86_feature_detected!("vaes") && std::is_x86_feature_detected!("avx512f") {
            Some(CbcKernel::Vaes16)
        } else if CbcKernel::VaesYmm16.supported() {
            Some(CbcKernel::VaesYmm16)
        } else if super::aesni::available() {
            Some(CbcKernel::AesNi8)
        } else {
            None
        }
    }

    /// Whether this CPU can run the kernel (tests force each kernel they can run).
    pub fn supported(self) -> bool {
        match self {
            CbcKernel::Vaes16 => {
                std::is_x86_feature_detected!("vaes") && std::is_x86_feature_detected!("avx512f")
            }
            CbcKernel::VaesYmm16 => {
                std::is_x86_feature_detected!("vaes")
                    && std::is_x86_feature_detected!("avx2")
                    && super::aesni::available()
            }
            CbcKernel::AesNi8 => super::aesni::available(),
        }
    }
}

/// Per-lane state of the VAES kernel: round keys laid out `[round][lane]` so that one zmm
/// load fetches round `r` of four neighbouring lanes, and the chaining values. Blocks are
/// `u128` in memory byte order (`from_ne_bytes`), so wiping the keys is 16-byte volatile
/// stores, not byte stores.
#[repr(C, align(64))]
struct LaneTable<const L: usize> {
    keys: [[u128; L]; 11],
    chain: [u128; L],
}

/// Per-lane state of the AES-NI kernel: a reference to each lane's round keys where they
/// lie in the SA (an xmm kernel loads one lane's round key at a time, so it needs no
/// `[round][lane]` copy; nothing secret is copied, so there is nothing to wipe but the
/// chaining values) and the chaining values.
struct LaneRefs<'a, const L: usize> {
    keys: [&'a [[u8; 16]; 11]; L],
    chain: [u128; L],
}

/// Round keys for a lane no stream has used yet: it only re-encrypts its scratch block.
static IDLE_KEYS: [[u8; 16]; 11] = [[0; 16]; 11];

/// How a lane table takes a stream: its round keys and IV put in lane `l`.
trait Lanes<'a> {
    /// Makes lane `l` run under `keys` from the chaining value `iv`.
    fn load(&mut self, l: usize, keys: &'a Aes128Ni, iv: [u8; 16]);
}

impl<'a, const L: usize> Lanes<'a> for LaneTable<L> {
    #[inline(always)]
    fn load(&mut self, l: usize, keys: &'a Aes128Ni, iv: [u8; 16]) {
        for (r, k) in keys.enc_bytes().iter().enumerate() {
            self.keys[r][l] = u128::from_ne_bytes(*k);
        }
        self.chain[l] = u128::from_ne_bytes(iv);
    }
}

impl<'a, const L: usize> Lanes<'a> for LaneRefs<'a, L> {
    #[inline(always)]
    fn load(&mut self, l: usize, keys: &'a Aes128Ni, iv: [u8; 16]) {
        self.keys[l] = keys.enc_bytes();
        self.chain[l] = u128::from_ne_bytes(iv);
    }
}

/// Encrypts every stream with `kernel` (which the caller checked with
/// [`CbcKernel::supported`]: `Aes128Ni` exists only with AES-NI, and the VAES kernel is only
/// chosen after its own detection). Never inlined: inlined into `encapsulate_burst` (which
/// it was once the GCM seal's entry there shrank), it changed that function's register
/// allocation and cost the GCM 64-byte burst ~4% (docs/BENCHMARKS.md, round 25).
#[inline(never)]
pub(super) fn encrypt<'a>(streams: impl IntoIterator<Item = CbcStream<'a>>, kernel: CbcKernel) {
    match kernel {
        CbcKernel::Vaes16 if kernel.supported() => run_lanes::<16, _>(
            streams,
            LaneTable {
                keys: [[0; 16]; 11],
                chain: [0; 16],
            },
            |t, p, s, n| {
                // SAFETY: VAES and AVX-512F were detected just above; `run_lanes` hands over
                // pointers valid for `n` blocks at their stride (see `run_lanes`).
                unsafe { steps_vaes(t, p, s, n) }
            },
            // SAFETY: AVX-512F was detected just above.
            |t| unsafe { wipe_zmm(t) },
        ),
        CbcKernel::VaesYmm16 if kernel.supported() => run_lanes::<16, _>(
            streams,
            LaneTable {
                keys: [[0; 16]; 11],
                chain: [0; 16],
            },
            |t, p, s, n| {
                // SAFETY: VAES and AVX2 were detected just above; pointers as for
                // `steps_vaes`.
                unsafe { steps_vaes_ymm(t, p, s, n) }
            },
            // SAFETY: AVX (with AVX2) was detected just above.
            |t| unsafe { wipe_ymm(t) },
        ),
        _ => run_lanes::<8, _>(
            streams,
            LaneRefs {
                keys: [&IDLE_KEYS; 8],
                chain: [0; 8],
            },
            if std::is_x86_feature_detected!("avx") {
                |t: &mut LaneRefs<'_, 8>, p: &[*mut u8; 8], s: &[usize; 8], n| {
                    // SAFETY: AES-NI as below, and AVX was detected just above.
                    unsafe { steps_ni_avx(t, p, s, n) }
                }
            } else {
                |t: &mut LaneRefs<'_, 8>, p: &[*mut u8; 8], s: &[usize; 8], n| {
                    // SAFETY: the streams carry `Aes128Ni` keys, which exist only if AES-NI
                    // was detected; pointers as above.
                    unsafe { steps_ni(t, p, s, n) }
                }
            },
            |t| t.chain.zeroize(),
        ),
    }
}

/// Wipes the lane table (round keys and chaining values) with 64-byte volatile stores: 48
/// of them, where `zeroize` on the `u128` rows stores element by element (192 volatile
/// stores for sixteen lanes, per burst).
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn wipe_zmm<const L: usize>(t: &mut LaneTable<L>) {
    const { assert!(core::mem::size_of::<LaneTable<L>>().is_multiple_of(64)) };
    let n = core::mem::size_of::<LaneTable<L>>() / 64;
    let p = (t as *mut LaneTable<L>).cast::<__m512i>();
    for i in 0..n {
        // SAFETY: the table is 64-byte aligned (`repr(align(64))`) and `n` 64-byte slots
        // long, plain data; a volatile store keeps the wipe.
        unsafe { core::ptr::write_volatile(p.add(i), _mm512_setzero_si512()) };
    }
}

/// [`wipe_zmm`] with 32-byte volatile stores.
///
/// # Safety
/// AVX must be available.
#[target_feature(enable = "avx")]
unsafe fn wipe_ymm<const L: usize>(t: &mut LaneTable<L>) {
    const { assert!(core::mem::size_of::<LaneTable<L>>().is_multiple_of(32)) };
    let n = core::mem::size_of::<LaneTable<L>>() / 32;
    let p = (t as *mut LaneTable<L>).cast::<__m256i>();
    for i in 0..n {
        // SAFETY: the table is 64-byte aligned and `n` 32-byte slots long, plain data; a
        // volatile store keeps the wipe.
        unsafe { core::ptr::write_volatile(p.add(i), _mm256_setzero_si256()) };
    }
}

/// The lane scheduler: fills `L` lanes with streams, runs all lanes for as many blocks as
/// the shortest active one has left, retires and refills, until every stream is done.
/// Idle lanes encrypt a scratch block in place (stride 0), which keeps the kernels free of
/// per-lane branches.
fn run_lanes<'a, const L: usize, T: Lanes<'a>>(
    streams: impl IntoIterator<Item = CbcStream<'a>>,
    mut table: T,
    mut steps: impl FnMut(&mut T, &[*mut u8; L], &[usize; L], usize),
    wipe: impl FnOnce(&mut T),
) {
    let mut scratch = [0u128; L];
    // Remaining whole-block plaintext of each lane's stream; empty = idle.
    let mut rest: [&'a mut [u8]; L] = core::array::from_fn(|_| <&mut [u8]>::default());
    let mut next = streams.into_iter();
    loop {
        for (l, lane) in rest.iter_mut().enumerate() {
            if !lane.is_empty() {
                continue;
            }
            // Take the next stream with at least one block.
            for s in next.by_ref() {
                let whole = s.data.len() / 16 * 16;
                let data = s.data;
                if whole == 0 {
                    continue;
                }
                *lane = &mut data[..whole];
                table.load(l, s.keys, s.iv);
                break;
            }
        }
        let Some(n) = rest
            .iter()
            .filter(|d| !d.is_empty())
            .map(|d| d.len() / 16)
            .min()
        else {
            break;
        };
        let mut ptr = [core::ptr::null_mut::<u8>(); L];
        let mut stride = [0usize; L];
        for l in 0..L {
            if rest[l].is_empty() {
                ptr[l] = (&mut scratch[l] as *mut u128).cast();
            } else {
                ptr[l] = rest[l].as_mut_ptr();
                stride[l] = 16;
            }
        }
        // Every active lane has at least `n` blocks at `ptr`; idle lanes re-encrypt their
        // own 16-byte scratch block, never advancing.
        steps(&mut table, &ptr, &stride, n);
        for lane in rest.iter_mut().filter(|d| !d.is_empty()) {
            let taken = core::mem::take(lane);
            *lane = &mut taken[16 * n..];
        }
    }
    wipe(&mut table);
    scratch.zeroize();
}

/// The body of [`steps_ni`] and [`steps_ni_avx`], expanded in each (so compiled with each
/// one's target features); the callers' safety contract is its own.
macro_rules! steps_ni_body {
    ($t:expr, $ptr:expr, $stride:expr, $n:expr) => {{
        const L: usize = 8;
        let keys = $t.keys;
        let key = |r: usize, l: usize| -> __m128i {
            // SAFETY: `keys[l][r]` is 16 readable bytes.
            unsafe { _mm_loadu_si128(keys[l][r].as_ptr().cast()) }
        };
        // SAFETY: each chain slot is 16 bytes; unaligned load.
        let mut c: [__m128i; L] = core::array::from_fn(|l| unsafe {
            _mm_loadu_si128((&$t.chain[l] as *const u128).cast())
        });
        for i in 0..$n {
            let p: [*mut __m128i; L] = core::array::from_fn(|l| {
                // SAFETY: the caller guarantees block `i` of each lane is valid (see above).
                unsafe { $ptr[l].add($stride[l] * i) }.cast()
            });
            let mut x: [__m128i; L] = core::array::from_fn(|l| {
                // SAFETY: as above; unaligned load of the lane's plaintext block.
                let m = unsafe { _mm_loadu_si128(p[l]) };
                _mm_xor_si128(_mm_xor_si128(m, c[l]), key(0, l))
            });
            for r in 1..10 {
                for (l, v) in x.iter_mut().enumerate() {
                    *v = _mm_aesenc_si128(*v, key(r, l));
                }
            }
            for (l, v) in x.iter_mut().enumerate() {
                *v = _mm_aesenclast_si128(*v, key(10, l));
                // SAFETY: as above; unaligned store of the ciphertext block.
                unsafe { _mm_storeu_si128(p[l], *v) };
                c[l] = *v;
            }
        }
        for (l, v) in c.iter().enumerate() {
            // SAFETY: each chain slot is 16 writable bytes.
            unsafe { _mm_storeu_si128((&mut $t.chain[l] as *mut u128).cast(), *v) };
        }
    }};
}

/// [`steps_ni`] VEX-encoded: the round keys, which lie unaligned in their SAs, are memory
/// operands of `vaesenc` (legacy `aesenc` takes only aligned ones, so without AVX each key
/// is a load of its own, about twice the instructions a block).
///
/// # Safety
/// AES-NI and AVX must be available; pointers as for [`steps_ni`].
#[target_feature(enable = "aes,avx")]
unsafe fn steps_ni_avx(t: &mut LaneRefs<'_, 8>, ptr: &[*mut u8; 8], stride: &[usize; 8], n: usize) {
    steps_ni_body!(t, ptr, stride, n)
}

/// `n` lock-step blocks on 8 lanes with AES-NI.
///
/// # Safety
/// AES-NI must be available; for each lane, `ptr[l] + stride[l] * i .. + 16` must be valid
/// for reads and writes for every `i < n`, and not overlap another lane's blocks.
#[target_feature(enable = "aes,sse2")]
unsafe fn steps_ni(t: &mut LaneRefs<'_, 8>, ptr: &[*mut u8; 8], stride: &[usize; 8], n: usize) {
    steps_ni_body!(t, ptr, stride, n)
}

/// `n` lock-step blocks on 16 lanes with VAES: four zmm registers of four lanes each.
///
/// # Safety
/// VAES and AVX-512F must be available; pointers as for [`steps_ni`].
#[target_feature(enable = "aes,avx512f,vaes")]
unsafe fn steps_vaes(t: &mut LaneTable<16>, ptr: &[*mut u8; 16], stride: &[usize; 16], n: usize) {
    const G: usize = 4;
    let key = |r: usize, g: usize| -> __m512i {
        // SAFETY: lanes 4g..4g+4 of round r are 64 contiguous bytes (`[u128; 16]` rows).
        unsafe { _mm512_loadu_si512(t.keys[r][4 * g..].as_ptr().cast()) }
    };
    // SAFETY: as for the keys: 64 contiguous bytes of chaining values per group.
    let mut c: [__m512i; G] =
        core::array::from_fn(|g| unsafe { _mm512_loadu_si512(t.chain[4 * g..].as_ptr().cast()) });
    for i in 0..n {
        // SAFETY: the caller guarantees block `i` of each lane is valid.
        let p: [*mut __m128i; 16] =
            core::array::from_fn(|l| unsafe { ptr[l].add(stride[l] * i) }.cast());
        let mut x: [__m512i; G] = core::array::from_fn(|g| {
            // SAFETY: as above; four unaligned 16-byte loads, one per lane of the group.
            let m = unsafe {
                let v = _mm512_castsi128_si512(_mm_loadu_si128(p[4 * g]));
                let v = _mm512_inserti32x4::<1>(v, _mm_loadu_si128(p[4 * g + 1]));
                let v = _mm512_inserti32x4::<2>(v, _mm_loadu_si128(p[4 * g + 2]));
                _mm512_inserti32x4::<3>(v, _mm_loadu_si128(p[4 * g + 3]))
            };
            _mm512_xor_si512(_mm512_xor_si512(m, c[g]), key(0, g))
        });
        for r in 1..10 {
            for (g, v) in x.iter_mut().enumerate() {
                *v = _mm512_aesenc_epi128(*v, key(r, g));
            }
        }
        for (g, v) in x.iter_mut().enumerate() {
            *v = _mm512_aesenclast_epi128(*v, key(10, g));
            // SAFETY: as above; four unaligned 16-byte stores, one per lane of the group.
            unsafe {
                _mm_storeu_si128(p[4 * g], _mm512_castsi512_si128(*v));
                _mm_storeu_si128(p[4 * g + 1], _mm512_extracti32x4_epi32::<1>(*v));
                _mm_storeu_si128(p[4 * g + 2], _mm512_extracti32x4_epi32::<2>(*v));
                _mm_storeu_si128(p[4 * g + 3], _mm512_extracti32x4_epi32::<3>(*v));
            }
            c[g] = *v;
        }
    }
    for (g, v) in c.iter().enumerate() {
        // SAFETY: 64 writable contiguous bytes per group.
        unsafe { _mm512_storeu_si512(t.chain[4 * g..].as_mut_ptr().cast(), *v) };
    }
}

/// `n` lock-step blocks on 16 lanes with VAES on ymm: eight registers of two lanes each
/// (eight in flight: VAESENC's latency of four times its two pipes on Zen 3), each lane's
/// block put in and taken out by a 16-byte load or store of its own half.
///
/// # Safety
/// VAES and AVX2 must be available; pointers as for [`steps_ni`].
#[target_feature(enable = "aes,avx2,vaes")]
unsafe fn steps_vaes_ymm(
    t: &mut LaneTable<16>,
    ptr: &[*mut u8; 16],
    stride: &[usize; 16],
    n: usize,
) {
    const G: usize = 8;
    let key = |r: usize, g: usize| -> __m256i {
        // SAFETY: lanes 2g..2g+2 of round r are 32 contiguous bytes (`[u128; 16]` rows).
        unsafe { _mm256_loadu_si256(t.keys[r][2 * g..].as_ptr().cast()) }
    };
    // SAFETY: as for the keys: 32 contiguous bytes of chaining values per group.
    let mut c: [__m256i; G] =
        core::array::from_fn(|g| unsafe { _mm256_loadu_si256(t.chain[2 * g..].as_ptr().cast()) });
    for i in 0..n {
        // SAFETY: the caller guarantees block `i` of each lane is valid.
        let p: [*mut __m128i; 16] =
            core::array::from_fn(|l| unsafe { ptr[l].add(stride[l] * i) }.cast());
        let mut x: [__m256i; G] = core::array::from_fn(|g| {
            // SAFETY: as above; two unaligned 16-byte loads, lane 2g low, 2g + 1 high.
            let m = unsafe { _mm256_loadu2_m128i(p[2 * g + 1], p[2 * g]) };
            _mm256_xor_si256(_mm256_xor_si256(m, c[g]), key(0, g))
        });
        for r in 1..10 {
            for (g, v) in x.iter_mut().enumerate() {
                *v = _mm256_aesenc_epi128(*v, key(r, g));
            }
        }
        for (g, v) in x.iter_mut().enumerate() {
            *v = _mm256_aesenclast_epi128(*v, key(10, g));
            // SAFETY: as above; two unaligned 16-byte stores, one per lane of the group.
            unsafe { _mm256_storeu2_m128i(p[2 * g + 1], p[2 * g], *v) };
            c[g] = *v;
        }
    }
    for (g, v) in c.iter().enumerate() {
        // SAFETY: 32 writable contiguous bytes per group.
        unsafe { _mm256_storeu_si256(t.chain[2 * g..].as_mut_ptr().cast(), *v) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> u8 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }
    }

    /// Every kernel against the `aes` crate CBC (a second implementation), with per-stream
    /// keys, lengths from 0 to 100 blocks, more streams than lanes and a partial tail block.
    #[test]
    fn kernels_match_reference_cbc() {
        let mut r = rng(0xcbc);
        for kernel in [CbcKernel::Vaes16, CbcKernel::VaesYmm16, CbcKernel::AesNi8] {
            if !kernel.supported() {
                eprintln!("SKIPPED {kernel:?}: CPU lacks it");
                continue;
            }
            for count in [1usize, 3, 8, 9, 16, 17, 40] {
                let keys: Vec<[u8; 16]> =
                    (0..count).map(|_| core::array::from_fn(|_| r())).collect();
                let ivs: Vec<[u8; 16]> =
                    (0..count).map(|_| core::array::from_fn(|_| r())).collect();
                let lens: Vec<usize> = (0..count)
                    .map(|i| usize::from(r()) % 101 * 16 + usize::from(i % 5 == 4) * 7)
                    .collect();
                let plain: Vec<Vec<u8>> = lens
                    .iter()
                    .map(|&n| (0..n).map(|_| r()).collect())
                    .collect();
                let ni: Vec<Aes128Ni> = keys.iter().map(|k| Aes128Ni::new(k).unwrap()).collect();
                let mut bufs = plain.clone();
                let streams: Vec<CbcStream<'_>> = bufs
                    .iter_mut()
                    .zip(ni.iter())
                    .zip(ivs.iter())
                    .map(|((d, k), iv)| CbcStream {
                        keys: k,
                        iv: *iv,
                        data: d,
                    })
                    .collect();
                encrypt(streams, kernel);
                for i in 0..count {
                    let whole = lens[i] / 16 * 16;
                    let mut expect = plain[i].clone();
                    super::super::transform::cbc::aes128_encrypt(
                        &keys[i],
                        &ivs[i],
                        &mut expect[..whole],
                    );
                    assert_eq!(bufs[i], expect, "{kernel:?}, {count} streams, stream {i}");
                }
            }
        }
    }

    /// The wide wipe clears every byte of the lane table (keys and chains of all lanes).
    #[test]
    fn wipe_clears_the_whole_table() {
        if !CbcKernel::Vaes16.supported() {
            eprintln!("SKIPPED: CPU lacks AVX-512F");
            return;
        }
        let mut t = LaneTable::<16> {
            keys: [[u128::MAX; 16]; 11],
            chain: [0x5a5a; 16],
        };
        // SAFETY: AVX-512F checked above.
        unsafe { wipe_zmm(&mut t) };
        assert!(t.keys.iter().flatten().chain(&t.chain).all(|&w| w == 0));
    }

    /// The ymm wipe clears every byte of the lane table too.
    #[test]
    fn ymm_wipe_clears_the_whole_table() {
        if !std::is_x86_feature_detected!("avx") {
            eprintln!("SKIPPED: CPU lacks AVX");
            return;
        }
        let mut t = LaneTable::<16> {
            keys: [[u128::MAX; 16]; 11],
            chain: [0x5a5a; 16],
        };
        // SAFETY: AVX checked above.
        unsafe { wipe_ymm(&mut t) };
        assert!(t.keys.iter().flatten().chain(&t.chain).all(|&w| w == 0));
    }

    /// Timing of each kernel on 32 bodies of 1424 bytes (ESP packets of 1408 payload bytes),
    /// minimum over many rounds.
    /// `cargo test --release -p akagate-fastpath --lib cbc_mb::tests::kernel_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn kernel_timing() {
        let keys: Vec<Aes128Ni> = (0..4u8).filter_map(|i| Aes128Ni::new(&[i; 16])).collect();
        if keys.len() < 4 {
            return;
        }
        let mut data = vec![0x5au8; 32 * 1424];
        for kernel in [CbcKernel::Vaes16, CbcKernel::VaesYmm16, CbcKernel::AesNi8] {
            if !kernel.supported() {
                continue;
            }
            let mut best = u128::MAX;
            for _ in 0..2000 {
                let streams = data.chunks_mut(1424).enumerate().map(|(i, d)| CbcStream {
                    keys: &keys[i % 4],
                    iv: [i as u8; 16],
                    data: d,
                });
                let t = std::time::Instant::now();
                encrypt(streams, kernel);
                best = best.min(t.elapsed().as_nanos());
            }
            eprintln!(
                "{kernel:?}: {best} ns per 32 x 1424 B ({:.1} ns each)",
                best as f64 / 32.0
            );
        }
    }
}
