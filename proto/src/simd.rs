//! A SIP message head's line ends found in one vector pass: a bit per byte for every CR or
//! LF, 64 bytes a word, with the head's end (the first CRLFCRLF) and whether a NUL comes
//! before it noted on the way.
//!
//! Its `class` part finds where a `token`, a host name or a URI's user part stops, sixteen
//! bytes a compare ([`token_end`], [`host_name_run`], [`user_stop`]); its `ascii` part turns
//! ASCII bytes into text without re-validating them as UTF-8 ([`ascii_str`]).
//!
//! The same module finds where a quoted string's plain run stops ([`find_quoted_stop`]: the
//! closing `"`, a `\`, a control byte), for the `Authorization` header's values.
//!
//! The slowpath's parser asked `memmem` for the head's end, `memchr` for a NUL, then
//! `memchr2` once per header line for its CR (and again per fold): about fifteen searches a
//! REGISTER, each paying its set-up for a line of 40–300 bytes. Here the head is read once
//! ([`HeadLines::scan`]); each line's end is then a `trailing_zeros` of a stored word
//! ([`HeadLines::line_end_from`]).
//!
//! This is the one module of `proto` that may use `unsafe` (the crate is
//! `#![deny(unsafe_code)]`, this module `#[allow]`s it): x86-64's vector compares
//! (`core::arch`: SSE2, which every x86-64 has, and AVX2 when the CPU reports it at run
//! time) need it even where the target feature is the baseline. The `unsafe` here does
//! only three things, each with its `// SAFETY:`: unaligned vector loads from inside a slice
//! (or a local 64-byte block) whose length is checked first, a call of the AVX2 form
//! after `is_x86_feature_detected!("avx2")`, and `from_utf8_unchecked` of bytes just checked
//! to be ASCII ([`ascii_str`]). The portable form ([`masks_portable`]) is the
//! reference the vector forms are tested against, byte for byte.
#![allow(unsafe_code)]

mod ascii;
mod class;
mod quoted;

pub use ascii::ascii_str;
pub use class::{
    host_name_run, host_name_run_portable, is_dotted_byte, is_host_name_byte, is_token_byte,
    is_user_stop, token_end, token_end_portable, user_stop, user_stop_portable, HostRun, UserStop,
};
pub use quoted::{find_quoted_stop, find_quoted_stop_portable, is_quoted_stop};

/// How many bytes of head [`HeadLines`] holds; a longer head is not scanned here
/// ([`HeadLines::scan`] says `None` and the caller takes its general path).
pub const HEAD_SCAN_MAX: usize = 64 * HEAD_WORDS;
const HEAD_WORDS: usize = 64;

const CRLFCRLF_LEN: usize = 4;

/// The CR, LF and NUL bits of one 64-byte block (bit `i`: byte `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Masks {
    /// Bytes equal to `\r`.
    pub cr: u64,
    /// Bytes equal to `\n`.
    pub lf: u64,
    /// Bytes equal to 0.
    pub nul: u64,
}

/// The masks of `block` a byte at a time: the reference of the vector forms.
pub fn masks_portable(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in block.iter().enumerate() {
        m.cr |= u64::from(b == b'\r') << i;
        m.lf |= u64::from(b == b'\n') << i;
        m.nul |= u64::from(b == 0) << i;
    }
    m
}

/// The line ends of a head: one bit for each CR or LF of the input before its end, and the
/// end itself (where the first CRLFCRLF starts).
#[derive(Clone)]
pub struct HeadLines {
    words: [u64; HEAD_WORDS],
    head_end: usize,
    nul: bool,
}

impl Default for HeadLines {
    fn default() -> Self {
        HeadLines {
            words: [0; HEAD_WORDS],
            head_end: 0,
            nul: false,
        }
    }
}

impl std::fmt::Debug for HeadLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadLines")
            .field("head_end", &self.head_end)
            .field("nul", &self.nul)
            .finish_non_exhaustive()
    }
}

/// The previous block's CR and LF bits: a CRLFCRLF may straddle two blocks.
#[derive(Clone, Copy, Default)]
struct Carry {
    cr: u64,
    lf: u64,
}

impl HeadLines {
    /// An empty scan, to be filled by [`HeadLines::scan`].
    pub fn new() -> Self {
        HeadLines::default()
    }

    /// Scans `raw` from its start for its first CRLFCRLF, noting every CR and LF before it.
    /// `Some(head end)` — what [`crate::sipscan::find_head_end`] gives — when the CRLFCRLF
    /// ends within the first [`HEAD_SCAN_MAX`] bytes; `None` when there is none or the head
    /// is longer (the caller's general path then decides: this one never gives a wrong end).
    pub fn scan(&mut self, raw: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above), the only requirement of
                // `scan_avx2` beyond its safe signature.
                return unsafe { self.scan_avx2(raw) };
            }
            self.scan_blocks(raw, masks_sse2)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.scan_blocks(raw, masks_portable)
        }
    }

    /// [`HeadLines::scan`] with the given form of the block masks (every form gives the
    /// same answer; a test runs them all).
    #[inline(always)]
    fn scan_blocks(&mut self, raw: &[u8], masks: impl Fn(&[u8; 64]) -> Masks) -> Option<usize> {
        let mut carry = Carry::default();
        let mut nul_before = false;
        for (k, block) in raw.chunks_exact(64).take(HEAD_WORDS).enumerate() {
            let m = masks(<&[u8; 64]>::try_from(block).ok()?);
            if let Some(end) = self.step(k, m.cr, m.lf, &mut carry) {
                return Some(self.end_at(end, k, nul_before, m.nul));
            }
            nul_before |= m.nul != 0;
        }
        self.tail(raw, &mut carry, nul_before, masks)
    }

    /// The last (short) block of `raw`, zero-padded, if the scan got that far.
    #[inline(always)]
    fn tail(
        &mut self,
        raw: &[u8],
        carry: &mut Carry,
        nul_before: bool,
        masks: impl Fn(&[u8; 64]) -> Masks,
    ) -> Option<usize> {
        let k = raw.len() / 64;
        let rest = raw.get(k * 64..)?;
        if k >= HEAD_WORDS || rest.is_empty() {
            return None;
        }
        let mut block = [0u8; 64];
        block.get_mut(..rest.len())?.copy_from_slice(rest);
        let m = masks(&block);
        let end = self.step(k, m.cr, m.lf, carry)?;
        // The padding's zeros are not the input's; they are past the end anyway.
        Some(self.end_at(end, k, nul_before, m.nul))
    }

    /// Takes block `k`'s CR and LF bits: stores its line ends and looks for a CRLFCRLF
    /// ending in it (its start may be in the previous block): `Some(where it starts)`.
    #[inline(always)]
    fn step(&mut self, k: usize, cr: u64, lf: u64, carry: &mut Carry) -> Option<usize> {
        if let Some(w) = self.words.get_mut(k) {
            *w = cr | lf;
        }
        // Bit q: an LF at q, a CR at q-1, an LF at q-2 and a CR at q-3 (the earlier bits
        // from the previous block's top).
        let blank = lf
            & ((cr << 1) | (carry.cr >> 63))
            & ((lf << 2) | (carry.lf >> 62))
            & ((cr << 3) | (carry.cr >> 61));
        carry.cr = cr;
        carry.lf = lf;
        (blank != 0).then(|| (k * 64 + blank.trailing_zeros() as usize + 1) - CRLFCRLF_LEN)
    }

    /// Notes the head's end, found in block `k` whose NUL bits are `nul` (`nul_before`: a
    /// NUL in an earlier block), and whether a NUL comes before it.
    #[inline(always)]
    fn end_at(&mut self, end: usize, k: usize, nul_before: bool, nul: u64) -> usize {
        // NULs of this block before the end (the bytes of the CRLFCRLF are none).
        let before = end.saturating_sub(k * 64);
        let below = if before >= 64 {
            u64::MAX
        } else {
            (1u64 << before) - 1
        };
        self.nul = nul_before || nul & below != 0;
        self.head_end = end;
        end
    }

    /// The scan with AVX2: 32 bytes a compare; the NULs gathered in a vector and looked at
    /// only in the block where the head ends.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(&mut self, raw: &[u8]) -> Option<usize> {
        use std::arch::x86_64::{
            _mm256_cmpeq_epi8, _mm256_or_si256, _mm256_set1_epi8, _mm256_setzero_si256,
            _mm256_testz_si256,
        };
        let cr_v = _mm256_set1_epi8(b'\r' as i8);
        let lf_v = _mm256_set1_epi8(b'\n' as i8);
        let zero = _mm256_setzero_si256();
        let mut nuls = zero;
        let mut carry = Carry::default();
        for (k, block) in raw.chunks_exact(64).take(HEAD_WORDS).enumerate() {
            let Ok(block) = <&[u8; 64]>::try_from(block) else {
                break;
            };
            // SAFETY: AVX2 is enabled here and the CPU has it (this function's contract).
            let (lo, hi, cr, lf) = unsafe {
                let (lo, hi) = halves_avx2(block);
                (
                    lo,
                    hi,
                    eq_bits_avx2(lo, hi, cr_v),
                    eq_bits_avx2(lo, hi, lf_v),
                )
            };
            let (nul_lo, nul_hi) = (_mm256_cmpeq_epi8(lo, zero), _mm256_cmpeq_epi8(hi, zero));
            if let Some(end) = self.step(k, cr, lf, &mut carry) {
                let nul_before = _mm256_testz_si256(nuls, nuls) == 0;
                // SAFETY: as for the loads above.
                let nul = unsafe { bits_avx2(nul_lo, nul_hi) };
                return Some(self.end_at(end, k, nul_before, nul));
            }
            nuls = _mm256_or_si256(nuls, _mm256_or_si256(nul_lo, nul_hi));
        }
        let nul_before = _mm256_testz_si256(nuls, nuls) == 0;
        self.tail(raw, &mut carry, nul_before, |block| {
            // SAFETY: inlined into `scan_avx2` (AVX2 enabled, and the CPU has it: the
            // caller's contract).
            unsafe { masks_avx2(block) }
        })
    }

    /// The head's end found by the last [`HeadLines::scan`] that returned `Some`.
    pub fn head_end(&self) -> usize {
        self.head_end
    }

    /// True if a NUL byte comes before the head's end (a quoted-pair's may be allowed: the
    /// caller decides with its exact check).
    pub fn has_nul(&self) -> bool {
        self.nul
    }

    /// The first CR or LF of the scanned input at or after `from` and before the head's end;
    /// `None` past the last one. Only valid after a [`HeadLines::scan`] that returned `Some`.
    #[inline]
    pub fn line_end_from(&self, from: usize) -> Option<usize> {
        if from >= self.head_end {
            return None;
        }
        let mut k = from / 64;
        let mut word = self.words.get(k)? & (u64::MAX << (from % 64));
        while word == 0 {
            k += 1;
            word = *self.words.get(k)?;
        }
        let at = k * 64 + word.trailing_zeros() as usize;
        (at < self.head_end).then_some(at)
    }

    /// The first CRLF of the scanned input at or after `from` and before the head's end.
    pub fn crlf_from(&self, raw: &[u8], mut from: usize) -> Option<usize> {
        while let Some(at) = self.line_end_from(from) {
            if raw.get(at) == Some(&b'\r') && raw.get(at + 1) == Some(&b'\n') {
                return Some(at);
            }
            from = at + 1;
        }
        None
    }
}

/// The masks of `block` with SSE2 (every x86-64 has it): 16 bytes a compare.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn masks_sse2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    let mut m = Masks::default();
    for i in 0..4 {
        // SAFETY: SSE2 is part of x86-64's baseline; the load reads bytes 16i..16i+16 of a
        // 64-byte array (i < 4), unaligned loads being allowed.
        let (cr, lf, nul) = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
            (
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())),
            )
        };
        let at = 16 * i;
        m.cr |= u64::from(cr as u16) << at;
        m.lf |= u64::from(lf as u16) << at;
        m.nul |= u64::from(nul as u16) << at;
    }
    m
}

/// The masks of `block` with AVX2: 32 bytes a compare.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn masks_avx2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{_mm256_set1_epi8, _mm256_setzero_si256};
    // SAFETY: the CPU has AVX2 (this function's contract), all the helpers need.
    unsafe {
        let (lo, hi) = halves_avx2(block);
        Masks {
            cr: eq_bits_avx2(lo, hi, _mm256_set1_epi8(b'\r' as i8)),
            lf: eq_bits_avx2(lo, hi, _mm256_set1_epi8(b'\n' as i8)),
            nul: eq_bits_avx2(lo, hi, _mm256_setzero_si256()),
        }
    }
}

/// The two 32-byte halves of `block`, loaded.
///
/// # Safety
/// The CPU must support AVX2 (as for the two helpers below).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn halves_avx2(
    block: &[u8; 64],
) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256};
    let p = block.as_ptr().cast::<__m256i>();
    // SAFETY: the two loads read bytes 0..32 and 32..64 of a 64-byte array (unaligned loads
    // allowed); the CPU has AVX2 (the caller's contract).
    unsafe { (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1))) }
}

/// One bit a byte of the 64 bytes `lo`, `hi` (in that order) that equals `v`'s bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn eq_bits_avx2(
    lo: std::arch::x86_64::__m256i,
    hi: std::arch::x86_64::__m256i,
    v: std::arch::x86_64::__m256i,
) -> u64 {
    use std::arch::x86_64::_mm256_cmpeq_epi8;
    bits_avx2(_mm256_cmpeq_epi8(lo, v), _mm256_cmpeq_epi8(hi, v))
}

/// The byte masks `a` (bytes 0..32) and `b` (32..64) as one bit a byte.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bits_avx2(a: std::arch::x86_64::__m256i, b: std::arch::x86_64::__m256i) -> u64 {
    use std::arch::x86_64::_mm256_movemask_epi8;
    let a = u64::from(_mm256_movemask_epi8(a) as u32);
    let b = u64::from(_mm256_movemask_epi8(b) as u32);
    a | (b << 32)
}

#[cfg(test)]
mod tests;
