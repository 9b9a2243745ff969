//! AES-128-GCM on 512-bit VAES and VPCLMULQDQ: four blocks per register, so one VAESENC
//! does a round of four counter blocks and one VPCLMULQDQ four of GHASH's carry-less
//! products. A batch is 16 blocks (256 bytes): CTR of the batch with the GHASH of 16
//! ciphertext blocks stitched into its AES rounds, multiplied by H^16..H^1 and reduced once
//! (deferred reduction); the last 0..=255 bytes go through the same kernel once more with
//! byte-masked loads and stores and the powers H^n..H^1 for their n blocks. Same GCM and
//! same GHASH representation as the 128-bit path (`gcm_ni`, whose module comment explains
//! the byte reversal and the reduction), which handles the AAD, the lengths block and the
//! tag. On AMD the batches' products are Karatsuba's three a block, not four ([`karatsuba`]).

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::gcm_ni::{self, Pass, Wide, AGG, HPOW, POLY_FOLD};

/// Blocks per register.
const PER: usize = 4;
/// Registers per batch: 16 blocks.
const REGS: usize = 4;
/// Bytes per batch.
const BATCH: usize = 16 * PER * REGS;

/// True if this CPU has what [`run`] needs beyond the 128-bit path's features: AVX-512 F and
/// BW (masked byte loads and stores, VPSHUFB on zmm), VAES and VPCLMULQDQ.
pub(super) fn available() -> bool {
    gcm_ni::available()
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("vaes")
        && std::is_x86_feature_detected!("vpclmulqdq")
}

/// A sum of 512-bit carry-less products before reduction: four lanes of [`Wide`], folded
/// into one when the batch is summed.
#[derive(Clone, Copy)]
struct WideZ {
    lo: __m512i,
    mid: __m512i,
    hi: __m512i,
}

impl WideZ {
    /// The four carry-less products of `a` and `b`, lane by lane, unreduced.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn mul(a: __m512i, b: __m512i) -> Self {
        WideZ {
            lo: _mm512_clmulepi64_epi128::<0x00>(a, b),
            mid: _mm512_xor_si512(
                _mm512_clmulepi64_epi128::<0x10>(a, b),
                _mm512_clmulepi64_epi128::<0x01>(a, b),
            ),
            hi: _mm512_clmulepi64_epi128::<0x11>(a, b),
        }
    }

    /// Adds the four products of `a` and `b`.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn add_mul(&mut self, a: __m512i, b: __m512i) {
        let p = WideZ::mul(a, b);
        self.lo = _mm512_xor_si512(self.lo, p.lo);
        self.mid = _mm512_xor_si512(self.mid, p.mid);
        self.hi = _mm512_xor_si512(self.hi, p.hi);
    }

    /// Adds a 128-bit sum of products into lane 0.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add_wide(&mut self, w: Wide) {
        self.lo = _mm512_xor_si512(self.lo, _mm512_zextsi128_si512(w.lo));
        self.mid = _mm512_xor_si512(self.mid, _mm512_zextsi128_si512(w.mid));
        self.hi = _mm512_xor_si512(self.hi, _mm512_zextsi128_si512(w.hi));
    }

    /// [`mul`](Self::mul) by Karatsuba: three carry-less products a lane, where `ak` and
    /// `bk` hold the XOR of each lane's two 64-bit halves of `a` and `b` ([`kara`]). `mid`
    /// then holds (a_hi + a_lo)(b_hi + b_lo), the middle product plus `lo` and `hi`: sums
    /// of such products are made whole once, by [`reduce_kara`](Self::reduce_kara).
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn mul_kara(a: __m512i, b: __m512i, ak: __m512i, bk: __m512i) -> Self {
        WideZ {
            lo: _mm512_clmulepi64_epi128::<0x00>(a, b),
            mid: _mm512_clmulepi64_epi128::<0x00>(ak, bk),
            hi: _mm512_clmulepi64_epi128::<0x11>(a, b),
        }
    }

    /// Adds the four products of `a` and `b` by Karatsuba (see [`mul_kara`](Self::mul_kara)).
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn add_mul_kara(&mut self, a: __m512i, b: __m512i, ak: __m512i, bk: __m512i) {
        let p = WideZ::mul_kara(a, b, ak, bk);
        self.lo = _mm512_xor_si512(self.lo, p.lo);
        self.mid = _mm512_xor_si512(self.mid, p.mid);
        self.hi = _mm512_xor_si512(self.hi, p.hi);
    }

    /// [`reduce`](Self::reduce) of a sum of [`mul_kara`](Self::mul_kara) products: the
    /// middle made whole (plus `lo` and `hi`, one VPTERNLOGQ) first.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn reduce_kara(self) -> __m128i {
        WideZ {
            mid: _mm512_ternarylogic_epi64::<0x96>(self.mid, self.lo, self.hi),
            ..self
        }
        .reduce()
    }

    /// [`reduce_kara`](Self::reduce_kara) on narrower registers, for the seal loop on AMD
    /// Zen 4 (see [`karatsuba`]): the three parts' lanes summed first ([`fold4`], on 256-
    /// and 128-bit registers), then the middle made whole and one 128-bit reduction
    /// ([`Wide::reduce`]). There a 128-bit carry-less product costs the AES pipes about half
    /// a 512-bit one, and a 512-bit XOR is not free: five lane sums more, for two 512-bit
    /// products and three 512-bit XORs fewer. Its longer chain slowed the open loop, whose
    /// next batch waits on the state sooner.
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn reduce_kara_narrow(self) -> __m128i {
        let (lo, hi) = (fold4(self.lo), fold4(self.hi));
        let mid = _mm_xor_si128(_mm_xor_si128(fold4(self.mid), lo), hi);
        Wide { lo, mid, hi }.reduce()
    }

    /// The sum of the four lanes, reduced: each lane reduced as [`Wide::reduce`] does (two
    /// [`fold64`] steps on all four at once), then the lanes summed, which is cheaper
    /// than summing the three unreduced parts first (one lane sum instead of three).
    #[inline]
    #[target_feature(enable = "avx512f,vpclmulqdq")]
    fn reduce(self) -> __m128i {
        let g = _mm512_xor_si512(self.mid, fold64(self.lo));
        fold4(_mm512_xor_si512(self.hi, fold64(g)))
    }
}

/// [`gcm_ni::fold64`] on the four lanes of `v`.
#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq")]
fn fold64(v: __m512i) -> __m512i {
    let c = _mm512_set1_epi64(POLY_FOLD as i64);
    _mm512_xor_si512(
        _mm512_shuffle_epi32::<0b01_00_11_10>(v),
        _mm512_clmulepi64_epi128::<0x00>(v, c),
    )
}

/// Each lane's two 64-bit halves XORed, in both halves: the Karatsuba operand of `v` for
/// [`WideZ::mul_kara`]: a VPSHUFD, which AMD Zen 4 issues beside its AES and carry-less
/// multiply pipes for free, and a VPXORQ, which costs them about a fifth of a cycle.
#[inline]
#[target_feature(enable = "avx512f")]
fn kara(v: __m512i) -> __m512i {
    _mm512_xor_si512(v, _mm512_shuffle_epi32::<0b01_00_11_10>(v))
}

/// True if the batch loop's GHASH should multiply by Karatsuba (three carry-less products a
/// block, not four, for two shuffle-port operations more): on AMD CPUs. Zen 4 runs
/// VPCLMULQDQ on the pipes VAESENC uses, so each product left out is a cycle of AES back
/// (a 16-block batch is bound at 40 VAESENC + 18 VPCLMULQDQ cycles: 58, 54 by Karatsuba),
/// its VPSHUFDs issue elsewhere for free and its XORs cost about a fifth of a cycle each
/// (docs/BENCHMARKS.md, *GCM on AMD Zen 4, round 18*: batches 2-4% faster). Intel's cores
/// run VPCLMULQDQ and VPSHUFD on the same port 5, where Karatsuba would trade a product for
/// more port-5 work (*Burst crypto at 1408 B, round 17*), so they keep four products.
/// Read once, then cached.
pub(super) fn karatsuba() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static KARA: AtomicU8 = AtomicU8::new(0);
    match KARA.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            // CPUID leaf 0: the vendor string in EBX, EDX, ECX.
            let id = __cpuid(0);
            let amd = [id.ebx, id.edx, id.ecx]
                .iter()
                .flat_map(|r| r.to_le_bytes())
                .eq(*b"AuthenticAMD");
            KARA.store(if amd { 2 } else { 1 }, Ordering::Relaxed);
            amd
        }
    }
}

/// XOR of the four 128-bit lanes of `v`.
#[inline]
#[target_feature(enable = "avx512f")]
fn fold4(v: __m512i) -> __m128i {
    let y = _mm256_xor_si256(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
    _mm_xor_si128(_mm256_castsi256_si128(y), _mm256_extracti128_si256::<1>(y))
}

/// AES-CTR keystream for the first `$n` of four registers of counter blocks `$ctrs` (the
/// others left zero) under the broadcast round keys `$k`, with the GHASH products of the
/// four registers of blocks `$hash` by the powers `$h` (H^16..H^1: `([__m512i; REGS],
/// Wide)`) computed between the AES rounds, one register per round, the one that carries
/// the running state last, so the AES and carry-less multiply units work side by side.
/// Without `$hash`, the keystream alone; with `$kara`, the products by Karatsuba. A macro,
/// so it is always inlined (a `target_feature` function cannot be `inline(always)`, and
/// where it was not inlined its registers went through the stack). Round keys and powers
/// are loaded from their stack arrays at each round, not held in registers: 15 fewer live
/// registers, and no spills or register shuffling in the loop.
macro_rules! aes_ghash {
    ($n:expr, $k:expr, $ctrs:expr) => {{
        let k: &[__m512i; 11] = $k;
        let ctrs: [__m512i; REGS] = $ctrs;
        let kk = |r: usize| key_at(k, r);
        let k0 = kk(0);
        let mut s = [_mm512_setzero_si512(); REGS];
        for (v, c) in s.iter_mut().zip(&ctrs).take($n) {
            *v = _mm512_xor_si512(*c, k0);
        }
        for r in 1..10 {
            let rk = kk(r);
            for v in s.iter_mut().take($n) {
                *v = _mm512_aesenc_epi128(*v, rk);
            }
        }
        let rk = kk(10);
        for v in s.iter_mut().take($n) {
            *v = _mm512_aesenclast_epi128(*v, rk);
        }
        s
    }};
    // `$kara`: the products by Karatsuba ([`WideZ::mul_kara`], `$hk` the powers' Karatsuba
    // operands, [`kara`]), to be reduced by [`WideZ::reduce_kara`]; else `$hk` is not read.
    ($n:expr, $k:expr, $ctrs:expr, $hash:expr, $h:expr, $kara:expr, $hk:expr) => {{
        let k: &[__m512i; 11] = $k;
        let ctrs: [__m512i; REGS] = $ctrs;
        let hash: &[__m512i; REGS] = $hash;
        let h: &[__m512i; REGS] = $h;
        let hk: &[__m512i; REGS] = $hk;
        let kk = |r: usize| key_at(k, r);
        let hh = |r: usize| key_at(h, r);
        let k0 = kk(0);
        let mut s = [_mm512_setzero_si512(); REGS];
        for (v, c) in s.iter_mut().zip(&ctrs).take($n) {
            *v = _mm512_xor_si512(*c, k0);
        }
        let j = REGS - 1;
        let mut acc = if $kara {
            WideZ::mul_kara(hash[j], hh(j), kara(hash[j]), key_at(hk, j))
        } else {
            WideZ::mul(hash[j], hh(j))
        };
        for r in 1..10 {
            let rk = kk(r);
            for v in s.iter_mut().take($n) {
                *v = _mm512_aesenc_epi128(*v, rk);
            }
            // Rounds 1..=3 carry the products of registers 2, 1, 0.
            if r < REGS {
                let j = REGS - 1 - r;
                if $kara {
                    acc.add_mul_kara(hash[j], hh(j), kara(hash[j]), key_at(hk, j));
                } else {
                    acc.add_mul(hash[j], hh(j));
                }
            }
        }
        let rk = kk(10);
        for v in s.iter_mut().take($n) {
            *v = _mm512_aesenclast_epi128(*v, rk);
        }
        (s, acc)
    }};
}

/// Entry `r` of a stack array of registers, loaded where it is used: a volatile read, so
/// the compiler neither hoists it out of the loop (and spills) nor keeps it live.
#[inline(always)]
fn key_at<const L: usize>(a: &[__m512i; L], r: usize) -> __m512i {
    // SAFETY: `a[r]` is an initialized, aligned `__m512i` (indexing checks `r`).
    unsafe { core::ptr::read_volatile(&a[r]) }
}

/// The sum of the carry-less products of the first `$n` registers of `$blocks` and `$h`
/// (each register's four lanes multiplied lane by lane), unreduced: `Wide`. A macro for
/// the same reason as [`aes_ghash!`] (as a function it was not inlined, and its registers
/// went through the stack).
macro_rules! mul_sum {
    ($n:expr, $blocks:expr, $h:expr) => {{
        let b: &[__m512i; REGS] = $blocks;
        let h: &[__m512i; REGS] = $h;
        let mut acc = WideZ::mul(b[0], h[0]);
        // Indexed, not an iterator chain: the adapters were not inlined. (For `$n` = 1 the
        // range is empty.)
        #[allow(clippy::reversed_empty_ranges, clippy::needless_range_loop)]
        for j in 1..$n {
            acc.add_mul(b[j], h[j]);
        }
        acc
    }};
}

/// What [`ctr_ghash`] starts from: J0 (the pre-counter block), E_K(J0) (SP 800-38D 7.1
/// step 6), the GHASH state `x`, the byte-reversed block `first` if any (the AAD of an ESP
/// packet, hashed before the payload) and the byte-reversed lengths block `lens`.
#[derive(Clone, Copy)]
pub(super) struct Front {
    /// J0, wire order.
    pub(super) j0: __m128i,
    /// E_K(J0), wire order.
    pub(super) ej0: __m128i,
    /// The GHASH state to continue from.
    pub(super) x: __m128i,
    /// A block hashed before the payload (byte-reversed), if any.
    pub(super) first: Option<__m128i>,
    /// The lengths block (byte-reversed).
    pub(super) lens: __m128i,
}

/// GHASH of `buf` (under `pass`) with CTR applied in place, continuing from [`Front`]'s GHASH
/// state `x` and block `first`, the payload's first counter block being `IV || 2`, then the
/// lengths block: the 512-bit counterpart of `Aes128GcmNi::run_blocks`' middle. Returns the
/// tag, S (the GHASH of the whole input, SP 800-38D 7.1 step 5) xor E_K(J0) (step 6), in
/// wire order; for [`CTR_ONLY`] a meaningless value.
///
/// `k` is `Aes128GcmNi`'s round keys, `h_pow` its table (H^1..H^16), `front` makes the
/// [`Front`] (called once, at the start): a closure, so that the ESP entry ([`esp_long`])
/// builds J0, AAD, lengths and E_K(J0) here from references to the packet, in registers
/// (made by the caller and passed in, each 128-bit argument went through the stack).
/// The last batch's reduction also covers the lengths block (times H^1, the tail's blocks
/// then times H^(n+1)..H^2) when the tail has at most 15 blocks, and a payload of at most
/// 14 blocks (an ESP packet's AAD, payload and lengths in one batch) takes `first` into it
/// as well: one carry-less multiply pass and one reduction per packet.
///
/// One copy per pass (`P`: [`SEAL`], [`OPEN`] or [`CTR_ONLY`]), so no pass is tested
/// inside the loops (the caller matches on [`Pass`]), and per product form (`K`: the
/// batches' GHASH by Karatsuba, where [`karatsuba`] says so).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
pub(super) fn ctr_ghash<const P: u8, const K: bool>(
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
    // Every line of the payload asked for at once, so a packet written long before (a NIC's
    // DMA, a bench's setup) costs about one miss, not one per batch as the loop reaches it.
    let ahead = buf.len().min(PREFETCH_MAX);
    for off in (0..ahead).step_by(64) {
        crate::sad::prefetch(buf.as_ptr().wrapping_add(off));
    }
    // The last line too, where the payload does not start on a line.
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
    // Broadcast from the key's own bytes (each a VBROADCASTI32X4 from memory).
    let kz: [__m512i; 11] = core::array::from_fn(|i| _mm512_broadcast_i32x4(gcm_ni::load(&k[i])));
    // Counter blocks kept with the 32-bit counter in native order in the last dword of each
    // lane, so one VPADDD steps all four (inc32 of SP 800-38D 6.2 wraps the same way), and
    // byte-swapped into place for AES.
    let ctr_swap = _mm512_broadcast_i32x4(_mm_set_epi8(
        12, 13, 14, 15, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
    ));
    let nonce = _mm_insert_epi32::<3>(j0, 0);
    // SP 800-38D 7.1 step 4: the payload's counter blocks start at inc32(J0) = IV || 2.
    let mut cz = _mm512_add_epi32(
        _mm512_broadcast_i32x4(nonce),
        _mm512_set_epi32(5, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0),
    );
    // 4 j added to each lane's counter: in native order (the lane's last dword), and in
    // the byte-swapped block (its last byte, the counter's least significant, is the top
    // byte of that dword).
    let step = |b: i32| _mm512_set_epi32(b, 0, 0, 0, b, 0, 0, 0, b, 0, 0, 0, b, 0, 0, 0);
    let nat_step: [__m512i; REGS + 1] = core::array::from_fn(|j| step((PER * j) as i32));
    let be_step: [__m512i; REGS] = core::array::from_fn(|j| step(((PER * j) as i32) << 24));
    // The counter of the next batch's first block (lane 0 of register 0).
    let mut first_ctr: u32 = 2;
    let mut next_ctrs = || -> [__m512i; REGS] {
        let ctrs = if first_ctr & 0xff <= 0xff - (PER * REGS - 1) as u32 {
            // No counter of the 16 carries out of its last byte: one byte swap, and the
            // other registers' blocks by adding to that byte (port 0 or 5, where the
            // swaps are port 5 only).
            let c = _mm512_shuffle_epi8(cz, ctr_swap);
            core::array::from_fn(|j| {
                if j == 0 {
                    c
                } else {
                    _mm512_add_epi32(c, be_step[j])
                }
            })
        } else {
            core::array::from_fn(|j| {
                _mm512_shuffle_epi8(_mm512_add_epi32(cz, nat_step[j]), ctr_swap)
            })
        };
        cz = _mm512_add_epi32(cz, nat_step[REGS]);
        first_ctr = first_ctr.wrapping_add((PER * REGS) as u32);
        ctrs
    };

    let (batches, rest) = buf.as_chunks_mut::<BATCH>();
    // Seal hashes a batch's ciphertext inside the next batch's AES rounds (the last whole
    // batch's inside the tail's, if there is a tail).
    let mut pending: Option<[__m512i; REGS]> = None;
    // H^16..H^13, H^12..H^9, H^8..H^5, H^4..H^1: block i of a batch times H^(16 - i).
    let all_powers =
        || -> [__m512i; REGS] { core::array::from_fn(|j| powers(h_pow, 16 - PER * j)) };
    // A whole batch's 256 bytes, and the keystream `ks` applied to them and stored back.
    let load = |b: &[u8; BATCH]| -> [__m512i; REGS] {
        // SAFETY: `b` is 256 bytes (`BATCH`): four unaligned 64-byte loads at 64 j.
        core::array::from_fn(|j| unsafe { _mm512_loadu_si512(b.as_ptr().add(64 * j).cast()) })
    };
    let xor_store = |b: &mut [u8; BATCH], data: [__m512i; REGS], ks: [__m512i; REGS]| {
        let out: [__m512i; REGS] = core::array::from_fn(|j| _mm512_xor_si512(data[j], ks[j]));
        for (j, v) in out.iter().enumerate() {
            // SAFETY: as for `load`: four unaligned 64-byte stores within `b`.
            unsafe { _mm512_storeu_si512(b.as_mut_ptr().add(64 * j).cast(), *v) };
        }
        out
    };
    // The batch products' reduction, as `K` made them (and for the seal loop by Karatsuba,
    // on narrower registers).
    let reduce = |acc: WideZ| match (K, P) {
        (true, SEAL) => acc.reduce_kara_narrow(),
        (true, _) => acc.reduce_kara(),
        _ => acc.reduce(),
    };
    // The powers' Karatsuba operands (with `K` only; unread otherwise).
    let kara_of = |hz: &[__m512i; REGS]| -> [__m512i; REGS] {
        if K {
            core::array::from_fn(|j| kara(hz[j]))
        } else {
            *hz
        }
    };
    if !batches.is_empty() {
        let hz = all_powers();
        let hk = kara_of(&hz);
        match pass {
            Pass::Open => {
                for b in batches.iter_mut() {
                    let data = load(b);
                    let hash = with_state(x, data);
                    let (ks, acc) = aes_ghash!(REGS, &kz, next_ctrs(), &hash, &hz, K, &hk);
                    x = reduce(acc);
                    xor_store(b, data, ks);
                }
            }
            Pass::Seal => {
                // The first batch's AES alone; each later one's hashes the one before.
                if let Some((b, later)) = batches.split_first_mut() {
                    let ks = aes_ghash!(REGS, &kz, next_ctrs());
                    let mut pend = with_state(x, xor_store(b, load(b), ks));
                    for b in later {
                        let (ks, acc) = aes_ghash!(REGS, &kz, next_ctrs(), &pend, &hz, K, &hk);
                        x = reduce(acc);
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

    // The last 0..=255 bytes: n blocks (the last one partial, SP 800-38D 6.5: the leftmost
    // bytes of its keystream block; GHASH sees it zero-padded, 6.4 via 7.1 step 5), register
    // j holding bytes 64 j.. under a byte mask. Masked-off bytes are neither read nor
    // written, and load as zero.
    let len = rest.len();
    let n = len.div_ceil(16);
    let mut hashed = [_mm512_setzero_si512(); REGS];
    if n > 0 {
        let masks: [__mmask64; REGS] = core::array::from_fn(|j| match len.saturating_sub(64 * j) {
            0 => 0,
            m if m >= 64 => u64::MAX,
            m => (1u64 << m) - 1,
        });
        let p = rest.as_mut_ptr();
        let data: [__m512i; REGS] = core::array::from_fn(|j| match masks[j] {
            0 => _mm512_setzero_si512(),
            // SAFETY: the mask selects bytes 64 j .. min(64 j + 64, len) of `rest` only, so
            // p + 64 j is within the slice and no byte outside it is read.
            m => unsafe { _mm512_maskz_loadu_epi8(m, p.add(64 * j).cast()) },
        });
        let ctrs = next_ctrs();
        let to_hash = pending.take();
        // Loaded again rather than kept live through the tail.
        let hz = match to_hash {
            Some(_) => all_powers(),
            None => [_mm512_setzero_si512(); REGS],
        };
        let hk = kara_of(&hz);
        let ks = match (to_hash, n.div_ceil(PER)) {
            (Some(b), regs) => {
                let (ks, acc) = match regs {
                    1 => aes_ghash!(1, &kz, ctrs, &b, &hz, K, &hk),
                    2 => aes_ghash!(2, &kz, ctrs, &b, &hz, K, &hk),
                    3 => aes_ghash!(3, &kz, ctrs, &b, &hz, K, &hk),
                    _ => aes_ghash!(REGS, &kz, ctrs, &b, &hz, K, &hk),
                };
                x = reduce(acc);
                ks
            }
            (None, 1) => aes_ghash!(1, &kz, ctrs),
            (None, 2) => aes_ghash!(2, &kz, ctrs),
            (None, 3) => aes_ghash!(3, &kz, ctrs),
            (None, _) => aes_ghash!(REGS, &kz, ctrs),
        };
        // Masked to the tail's bytes: the zero padding GHASH sees.
        let out: [__m512i; REGS] = core::array::from_fn(|j| {
            _mm512_maskz_mov_epi8(masks[j], _mm512_xor_si512(data[j], ks[j]))
        });
        for (j, v) in out.iter().enumerate() {
            if masks[j] != 0 {
                // SAFETY: as for the loads above: only the selected bytes are written.
                unsafe { _mm512_mask_storeu_epi8(p.add(64 * j).cast(), masks[j], *v) };
            }
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
        let h: [__m512i; REGS] = core::array::from_fn(|j| powers(h_pow, 16 - PER * j));
        let x = mul_sum!(REGS, &with_state(x, hashed), &h).reduce();
        return tag(gcm_ni::gf_mul(_mm_xor_si128(x, lens), h1), ej0);
    }
    // S = x H^(n+1) + sum of block i times H^(n+1-i) (i from 0, the state folded into block
    // 0) + lengths times H [+ pre times H^(n+2)], one reduction. Past block n-1 the lanes
    // are zero, as are the powers below H^1.
    let mut w = Wide::mul(lens, h1);
    if let Some(p) = pre {
        w = w.add(Wide::mul(p, gcm_ni::load(&h_pow[n + 1])));
    }
    if n == 0 {
        return tag(w.add(Wide::mul(x, h1)).reduce(), ej0);
    }
    let blocks = with_state(x, hashed);
    // Register j: H^(n+1-4j) down to H^(n-2-4j); j < regs, so its top is at least H^2.
    let h: [__m512i; REGS] = core::array::from_fn(|j| {
        if j < regs {
            powers(h_pow, n + 1 - PER * j)
        } else {
            _mm512_setzero_si512()
        }
    });
    let mut acc = match regs {
        1 => mul_sum!(1, &blocks, &h),
        2 => mul_sum!(2, &blocks, &h),
        3 => mul_sum!(3, &blocks, &h),
        _ => mul_sum!(REGS, &blocks, &h),
    };
    acc.add_wide(w);
    tag(acc.reduce(), ej0)
}

/// An ESP packet's body (RFC 4106; longer than [`SHORT_BODY_MAX`] on the seal and open
/// paths, any length for [`CTR_ONLY`]) through [`ctr_ghash`] under pass `P` and product form
/// `K`, from references to its key (`enc`, `h_pow`), salt and 16 bytes of SPI, sequence
/// number and IV: J0, the AAD and lengths blocks and E_K(J0) are made here, in registers,
/// and the kernel is inlined, so no 128-bit argument goes through the stack (passed to a
/// call, each did). Returns the tag in wire order (the expected one for [`OPEN`]).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
pub(super) fn esp_long<const P: u8, const K: bool>(
    enc: &[[u8; 16]; 11],
    h_pow: &[[u8; 16]; HPOW],
    salt: &[u8; 4],
    hdr_iv: &[u8; 16],
    seq_hi: Option<u32>,
    body: &mut [u8],
) -> [u8; 16] {
    let body_len = body.len();
    // The front made inside the kernel (this closure inherits the features).
    let front = || {
        let (j0, aad, lens) = gcm_ni::esp_blocks(salt, gcm_ni::load(hdr_iv), seq_hi, body_len);
        // E_K(J0), 128 bits wide.
        let mut ej0 = _mm_xor_si128(j0, gcm_ni::load(&enc[0]));
        for rk in &enc[1..10] {
            ej0 = _mm_aesenc_si128(ej0, gcm_ni::load(rk));
        }
        ej0 = _mm_aesenclast_si128(ej0, gcm_ni::load(&enc[10]));
        // Made here, before the payload: an empty asm that takes the value keeps the
        // compiler from sinking the chain to the tag at the packet's end (where it was
        // serial).
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
    let t = ctr_ghash::<P, K>(enc, h_pow, front, body);
    let mut tag = [0u8; 16];
    // SAFETY: `tag` is 16 writable bytes.
    unsafe { _mm_storeu_si128(tag.as_mut_ptr().cast(), t) };
    tag
}

/// The tag E_K(J0) xor S (SP 800-38D 7.1 step 6) from S byte-reversed (GHASH's
/// representation) and `ej0`, in wire order.
#[inline]
#[target_feature(enable = "ssse3")]
fn tag(s: __m128i, ej0: __m128i) -> __m128i {
    let rev = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    _mm_xor_si128(_mm_shuffle_epi8(s, rev), ej0)
}

/// [`Pass`] as the const parameter of [`ctr_ghash`].
pub(super) const SEAL: u8 = 0;
/// See [`SEAL`].
pub(super) const OPEN: u8 = 1;
/// See [`SEAL`].
pub(super) const CTR_ONLY: u8 = 2;

/// Bytes of a payload [`ctr_ghash`] asks the cache for before it starts (a jumbo frame's
/// rest streams in behind the loop).
const PREFETCH_MAX: usize = 4096;

/// Largest payload whose AAD block is hashed in the tail's batch: 14 blocks, so AAD, payload
/// and lengths are at most the 16 powers of the table.
const SHORT_MAX: usize = 16 * 14;

/// H^top, H^(top-1), H^(top-2), H^(top-3) in lanes 0..=3 (`top` in 0..=16), powers below
/// H^1 zero: four consecutive entries of the (ascending) table, lanes reversed.
#[inline]
#[target_feature(enable = "avx512f")]
fn powers(h_pow: &[[u8; 16]; HPOW], top: usize) -> __m512i {
    debug_assert!(top <= HPOW);
    let top = top.min(HPOW);
    // Entries top-4 .. top-1 (H^(top-3)..H^top); those below index 0 masked off, two
    // 64-bit lanes per entry (all four for `top` 0).
    let below = PER.saturating_sub(top);
    let mask = (0xffu32 << (2 * below)) as __mmask8;
    let first = h_pow.as_ptr().wrapping_add(top).wrapping_sub(PER);
    // SAFETY: the mask selects entries top-4+below .. top-1, all within the table
    // (0 <= top-4+below and top-1 < HPOW); masked-off lanes are not read and do not fault,
    // and `wrapping_*` keeps the address arithmetic itself defined.
    let v = unsafe { _mm512_maskz_loadu_epi64(mask, first.cast()) };
    _mm512_shuffle_i64x2::<0b00_01_10_11>(v, v)
}

/// The blocks to hash, each byte-reversed, with the running GHASH state folded into the
/// first.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn with_state(x: __m128i, blocks: [__m512i; REGS]) -> [__m512i; REGS] {
    let rev = _mm512_broadcast_i32x4(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let mut out = blocks.map(|b| _mm512_shuffle_epi8(b, rev));
    out[0] = _mm512_xor_si512(out[0], _mm512_zextsi128_si512(x));
    out
}

/// Largest ESP body [`short`] takes: six blocks, so J0 and the six counter blocks fit the
/// eight AES lanes of two registers, and the AAD, six blocks and the lengths block the
/// eight GHASH lanes (a 64-byte payload's body is five blocks).
pub(super) const SHORT_BODY_MAX: usize = 16 * 6;

/// One ESP packet for [`short`]: its key's round keys and powers of H, its salt, its 16
/// bytes of SPI, sequence number and IV, the ESN high half, and its body (at most
/// [`SHORT_BODY_MAX`] bytes). References only: J0, AAD and lengths are made in registers
/// inside the kernel (built outside and passed in, the blocks went through the stack).
pub(super) struct Short<'a> {
    pub(super) enc: &'a [[u8; 16]; 11],
    pub(super) h_pow: &'a [[u8; 16]; HPOW],
    pub(super) salt: &'a [u8; 4],
    pub(super) hdr_iv: &'a [u8; 16],
    pub(super) seq_hi: Option<u32>,
    pub(super) body: &'a mut [u8],
}

/// CTR over the bodies of `M` short ESP packets (RFC 4106; each may have its own key) and
/// their tags E_K(J0) xor S: [`SEAL`] hashes the ciphertext written, [`OPEN`] the
/// ciphertext read (the returned tag is then the expected one). Per packet, one register
/// pass of AES over J0 and its counter blocks (lane i is the counter block i + 1, so lane
/// 0's keystream is E_K(J0) and the body sits in lanes 1..=n), then one carry-less multiply
/// pass over the AAD, the body's ciphertext and the lengths block by H^(n+2)..H^1 and one
/// reduction. A single packet's kernel is one serial chain (rounds, products, reduction,
/// tag); `M` independent chains in the same straight code keep the AES and multiply units
/// busy while each waits on its own latency. A body longer than [`SHORT_BODY_MAX`] is
/// left untouched (the callers check).
#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
pub(super) fn short<const M: usize, const P: u8>(pk: &mut [Short<'_>; M]) -> [__m128i; M] {
    if pk.iter().any(|s| s.body.len() > SHORT_BODY_MAX) {
        return [_mm_setzero_si128(); M];
    }
    let ctr_swap = _mm512_broadcast_i32x4(_mm_set_epi8(
        12, 13, 14, 15, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
    ));
    // SP 800-38D 7.1: J0 = nonce || 1, the payload's blocks nonce || 2, nonce || 3, ...
    let lanes = [
        _mm512_set_epi32(4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0),
        _mm512_set_epi32(8, 0, 0, 0, 7, 0, 0, 0, 6, 0, 0, 0, 5, 0, 0, 0),
    ];
    let key = |s: &Short<'_>, r: usize| _mm512_broadcast_i32x4(gcm_ni::load(&s.enc[r]));
    // Loops over the packets rather than `array::from_fn` closures: a closure of this
    // kernel that the compiler did not inline passed its registers through the stack (64-B
    // decryption 16% slower in one build).
    // J0, the byte-reversed AAD and lengths blocks of each packet.
    let zero = _mm_setzero_si128();
    let mut blocks = [(zero, zero, zero); M];
    let mut st = [[_mm512_setzero_si512(); 2]; M];
    for m in 0..M {
        let s = &pk[m];
        blocks[m] = gcm_ni::esp_blocks(s.salt, gcm_ni::load(s.hdr_iv), s.seq_hi, s.body.len());
        let nonce = _mm512_broadcast_i32x4(_mm_insert_epi32::<3>(blocks[m].0, 0));
        let k0 = key(s, 0);
        for (v, l) in st[m].iter_mut().zip(lanes) {
            *v = _mm512_xor_si512(
                _mm512_shuffle_epi8(_mm512_add_epi32(nonce, l), ctr_swap),
                k0,
            );
        }
    }
    for r in 1..10 {
        for m in 0..M {
            let k = key(&pk[m], r);
            st[m] = st[m].map(|v| _mm512_aesenc_epi128(v, k));
        }
    }
    for m in 0..M {
        let k = key(&pk[m], 10);
        st[m] = st[m].map(|v| _mm512_aesenclast_epi128(v, k));
    }
    let rev = _mm512_broadcast_i32x4(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let mut tags = [zero; M];
    for m in 0..M {
        let (_, aad, lens) = blocks[m];
        let s = &mut pk[m];
        let len = s.body.len();
        let n = len.div_ceil(16);
        // The body in lanes 1..=n: the registers cover the 16 bytes before it (lane 0,
        // masked off) and bytes 0..len of it.
        let end = 16 + len;
        let masks: [__mmask64; 2] = [
            (u64::MAX >> (64 - end.min(64))) & !0xffff,
            (1u64 << end.saturating_sub(64)) - 1,
        ];
        let p = s.body.as_mut_ptr().wrapping_sub(16);
        // SAFETY: the mask selects, of the 64 bytes at p + 64 j, only bytes of `body`
        // (16..16 + len from p); masked-off bytes are neither read nor faulted on (register
        // 1's mask is empty when the body ends in register 0), and `wrapping_*` keeps the
        // address arithmetic defined.
        let data: [__m512i; 2] = unsafe {
            [
                _mm512_maskz_loadu_epi8(masks[0], p.cast()),
                _mm512_maskz_loadu_epi8(masks[1], p.wrapping_add(64).cast()),
            ]
        };
        let out: [__m512i; 2] = [
            _mm512_maskz_mov_epi8(masks[0], _mm512_xor_si512(data[0], st[m][0])),
            _mm512_maskz_mov_epi8(masks[1], _mm512_xor_si512(data[1], st[m][1])),
        ];
        for (j, v) in out.iter().enumerate() {
            // SAFETY: as for the loads: only the body's bytes are written.
            unsafe { _mm512_mask_storeu_epi8(p.wrapping_add(64 * j).cast(), masks[j], *v) };
        }
        // GHASH lanes: the AAD, C_1..C_n (zero-padded, as masked), the lengths block in
        // lane n + 1, zeros past it; times H^(n+2)..H^1, zero powers past H^1.
        let c = if P == OPEN { data } else { out };
        let lens_at = 0xfu32 << (4 * (n + 1));
        let g = [
            _mm512_mask_broadcast_i32x4(
                _mm512_mask_broadcast_i32x4(_mm512_shuffle_epi8(c[0], rev), 0xf, aad),
                lens_at as __mmask16,
                lens,
            ),
            _mm512_mask_broadcast_i32x4(
                _mm512_shuffle_epi8(c[1], rev),
                (lens_at >> 16) as __mmask16,
                lens,
            ),
        ];
        let mut acc = WideZ::mul(g[0], powers(s.h_pow, n + 2));
        acc.add_mul(g[1], powers(s.h_pow, (n + 2).saturating_sub(PER)));
        let sum = acc.reduce();
        // SP 800-38D 7.1 step 6: the tag is E_K(J0) xor S, E_K(J0) lane 0 of the keystream.
        let rev1 = _mm512_castsi512_si128(rev);
        tags[m] = _mm_xor_si128(
            _mm_shuffle_epi8(sum, rev1),
            _mm512_castsi512_si128(st[m][0]),
        );
    }
    tags
}

// A batch of 16 blocks takes the whole table; the 128-bit path's batch of 8 its first 8.
const _: () = assert!(HPOW == PER * REGS && AGG <= HPOW);
