//! Stitched AES-128-CBC encryption + HMAC-SHA-1 on AES-NI and SHA-NI: the two serial
//! dependency chains (CBC's block chain and SHA-1's round chain) are interleaved at the
//! instruction level, two AES rounds per SHA-1 quad-round, so one core runs both at once.
//! This is the outbound hot path of `hmac-sha-1-96` + `aes-cbc` (TS 33.203's usual suite).
//! The single-packet decryption is here too: the HMAC with its state in registers, the CBC
//! decryption (parallel, so not interleaved) issued beside its last two compressions.
//!
//! SHA-1 follows FIPS 180-4 6.1.2 using the SHA extensions (SHA1RNDS4 does four rounds,
//! SHA1NEXTE/SHA1MSG1/SHA1MSG2 the E rotation and message schedule); HMAC is RFC 2104.

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::aesni::Aes128Ni;

/// The 20 quad-rounds of a SHA-1 compression (FIPS 180-4 6.1.2: rounds 0-19 use f = Ch,
/// 20-39 Parity, 40-59 Maj, 60-79 Parity; SHA1RNDS4's immediate 0-3), each through the
/// caller's `$quad!(quad-round, function)`.
macro_rules! sha1_quad_rounds {
    ($quad:ident) => {
        $quad!(0, 0);
        $quad!(1, 0);
        $quad!(2, 0);
        $quad!(3, 0);
        $quad!(4, 0);
        $quad!(5, 1);
        $quad!(6, 1);
        $quad!(7, 1);
        $quad!(8, 1);
        $quad!(9, 1);
        $quad!(10, 2);
        $quad!(11, 2);
        $quad!(12, 2);
        $quad!(13, 2);
        $quad!(14, 2);
        $quad!(15, 3);
        $quad!(16, 3);
        $quad!(17, 3);
        $quad!(18, 3);
        $quad!(19, 3);
    };
}
pub(super) use sha1_quad_rounds;

/// FIPS 180-4 5.3.1 initial hash value.
const SHA1_IV: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

/// True if this CPU has AES-NI and the SHA extensions (and the SSE levels they need).
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("aes")
        && std::is_x86_feature_detected!("sha")
        && std::is_x86_feature_detected!("sse4.1")
        && std::is_x86_feature_detected!("ssse3")
}

/// HMAC-SHA-1 pad states (RFC 2104): the chaining values after `K ^ ipad` and `K ^ opad`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(super) struct Sha1NiKey {
    pub(super) ipad: [u32; 5],
    pub(super) opad: [u32; 5],
}

impl Sha1NiKey {
    /// Precomputes the pad states of a key of at most 64 bytes (ESP keys are 20); `None`
    /// if the CPU lacks the extensions or the key is longer.
    pub(super) fn new(key: &[u8]) -> Option<Self> {
        if !available() || key.len() > 64 {
            return None;
        }
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let mut out = Self {
            ipad: SHA1_IV,
            opad: SHA1_IV,
        };
        // SAFETY: the CPU features were checked by `available` above.
        unsafe {
            compress(&mut out.ipad, &ipad, None);
            compress(&mut out.opad, &opad, None);
        }
        ipad.zeroize();
        opad.zeroize();
        Some(out)
    }
}

/// An AES-128-CBC encryption in progress: the chaining value and the blocks still to encrypt.
pub(super) struct CbcJob<'a> {
    keys: [__m128i; 11],
    chain: __m128i,
    data: &'a mut [u8],
    /// Bytes of `data` already encrypted.
    done: usize,
}

/// One SHA-1 compression of `block` into `state`; if `aes` is given, up to four of its
/// blocks are CBC-encrypted in the shadow of the SHA-1 rounds.
///
/// # Safety
/// The CPU must support AES-NI, SHA, SSSE3 and SSE4.1 (see [`available`]).
#[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
pub(super) unsafe fn compress(
    state: &mut [u32; 5],
    block: &[u8; 64],
    aes: Option<&mut CbcJob<'_>>,
) {
    let mut st = St::load(state);
    // SAFETY: the caller guarantees the features; `Bytes` needs nothing more.
    unsafe { compress_from(&mut st, Src::Bytes(block), aes) };
    st.store(state);
}

/// A SHA-1 chaining value in the registers SHA1RNDS4 and SHA1NEXTE use: A..D with A in the
/// high dword, and E in the high dword of its own register (the rest zero).
#[derive(Clone, Copy)]
struct St {
    abcd: __m128i,
    e: __m128i,
}

impl St {
    /// From the FIPS 180-4 word order `[A, B, C, D, E]`.
    #[target_feature(enable = "sse2,sse4.1")]
    fn load(state: &[u32; 5]) -> Self {
        // SAFETY: `state` holds five u32; the first four are an unaligned 16-byte load.
        let v = unsafe { _mm_loadu_si128(state.as_ptr().cast()) };
        St {
            abcd: _mm_shuffle_epi32::<0x1b>(v),
            e: _mm_set_epi32(state[4] as i32, 0, 0, 0),
        }
    }

    /// Back to `[A, B, C, D, E]`.
    #[target_feature(enable = "sse2,sse4.1")]
    fn store(self, state: &mut [u32; 5]) {
        // SAFETY: as for the load above.
        unsafe {
            _mm_storeu_si128(
                state.as_mut_ptr().cast(),
                _mm_shuffle_epi32::<0x1b>(self.abcd),
            )
        };
        state[4] = _mm_extract_epi32::<3>(self.e) as u32;
    }
}

/// Where a compression's 64-byte block is read from.
#[derive(Clone, Copy)]
enum Src<'b> {
    /// A block of its own.
    Bytes(&'b [u8; 64]),
    /// `data[at..at + 64]` of the ride-along CBC job: ciphertext written by earlier
    /// compressions, read in place (no copy, no store-to-load forward of a gathered block).
    /// Its four loads come before this compression's first AES store, and the caller
    /// keeps `at + 64 <= done`.
    Job(usize),
    /// The block's four message registers, already in SHA1RNDS4's word order (W[4q] in
    /// the high dword of register q): blocks made in registers (the padding, the outer hash).
    Words([__m128i; 4]),
}

/// [`compress`] with the block taken from `src`.
///
/// # Safety
/// As [`compress`]; with `Src::Job(at)`, `aes` is `Some` and `at + 64 <= aes.done`.
/// Called only from functions with those features enabled, into which it is always inlined
/// (a `target_feature` function may not be `inline(always)`): so each caller's compressions
/// keep the state in registers and drop the branches of the sources and jobs it does not
/// use (out of line, one copy for every caller, each call took the state through memory).
#[inline(always)]
#[allow(unused_assignments)] // the last quad-rounds' ring and AES-state writes are dead
unsafe fn compress_from(state: &mut St, src: Src<'_>, mut aes: Option<&mut CbcJob<'_>>) {
    // SAFETY: the caller's functions enable AES-NI, SHA, SSSE3 and SSE4.1 (the contract),
    // so the intrinsics below run on a CPU that has them; every pointer access is in bounds
    // (each says why).
    unsafe {
        // Message words are big-endian; SHA1RNDS4 wants W[t] in the high dword.
        let bswap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
        let abcd0 = state.abcd;
        let e_save = state.e;
        let mut abcd = abcd0;
        let mut e_prev = e_save;
        let mut ring = [_mm_setzero_si128(); 4];

        // How many AES blocks ride along and where they are.
        let (n_aes, base) = match aes.as_deref() {
            Some(j) => (((j.data.len() - j.done) / 16).min(4), j.done),
            None => (0, 0),
        };
        let mut x = _mm_setzero_si128();
        // The CBC chaining value stays in a register: a round trip through memory would add a
        // store-to-load forward to the serial AES chain of every block.
        let mut chain = aes.as_deref().map_or(_mm_setzero_si128(), |j| j.chain);
        // Round key 10 ^ round key 0: the last round of a block made with this key and the next
        // plaintext block gives that block's whitened state directly (c ^ p' ^ k0), so the chain
        // from one block to the next is the ten AES rounds and no XOR.
        let k10_k0 = aes.as_deref().map_or(_mm_setzero_si128(), |j| {
            _mm_xor_si128(j.keys[10], j.keys[0])
        });

        macro_rules! quad {
            ($r:literal, $f:literal) => {{
                let m = if $r < 4 {
                    let at = match src {
                        Src::Words(w) => Err(w[$r % 4]),
                        Src::Bytes(b) => Ok(b.as_ptr()),
                        Src::Job(at) => match aes.as_deref() {
                            // In bounds: `at + 64 <= done <= data.len()` (the contract).
                            Some(j) => Ok(j.data.as_ptr().add(at)),
                            None => return,
                        },
                    };
                    match at {
                        Err(w) => w,
                        Ok(at) => {
                            // In bounds: 64 readable bytes at `at`; unaligned 16-byte load at 16 r.
                            let w = _mm_loadu_si128(at.add(16 * $r).cast());
                            _mm_shuffle_epi8(w, bswap)
                        }
                    }
                } else {
                    // FIPS 180-4 6.1.2 step 1, four words at a time.
                    let t = _mm_sha1msg1_epu32(ring[$r % 4], ring[($r + 1) % 4]);
                    _mm_sha1msg2_epu32(_mm_xor_si128(t, ring[($r + 2) % 4]), ring[($r + 3) % 4])
                };
                ring[$r % 4] = m;
                let e = if $r == 0 {
                    _mm_add_epi32(e_prev, m)
                } else {
                    _mm_sha1nexte_epu32(e_prev, m)
                };
                e_prev = abcd;
                abcd = _mm_sha1rnds4_epu32::<$f>(abcd, e);
                // Two AES rounds of block r/5 of the ride-along CBC job.
                if $r / 5 < n_aes {
                    if let Some(j) = aes.as_deref_mut() {
                        let off = base + 16 * ($r / 5);
                        let k = &j.keys;
                        match $r % 5 {
                            0 => {
                                if $r == 0 {
                                    // In bounds: off + 16 <= data.len() because r/5 < n_aes.
                                    let p = _mm_loadu_si128(j.data.as_ptr().add(off).cast());
                                    // The chaining value last: one XOR on the chain.
                                    x = _mm_xor_si128(_mm_xor_si128(p, k[0]), chain);
                                }
                                // Later blocks: `x` was whitened by the previous block's last round.
                                x = _mm_aesenc_si128(_mm_aesenc_si128(x, k[1]), k[2]);
                            }
                            1 => x = _mm_aesenc_si128(_mm_aesenc_si128(x, k[3]), k[4]),
                            2 => x = _mm_aesenc_si128(_mm_aesenc_si128(x, k[5]), k[6]),
                            3 => x = _mm_aesenc_si128(_mm_aesenc_si128(x, k[7]), k[8]),
                            _ => {
                                let y = _mm_aesenc_si128(x, k[9]);
                                chain = _mm_aesenclast_si128(y, k[10]);
                                if $r / 5 + 1 < n_aes {
                                    // In bounds: off + 32 <= data.len() because r/5 + 1 < n_aes.
                                    let p = _mm_loadu_si128(j.data.as_ptr().add(off + 16).cast());
                                    x = _mm_aesenclast_si128(y, _mm_xor_si128(k10_k0, p));
                                }
                                // In bounds: as above, within data.
                                _mm_storeu_si128(j.data.as_mut_ptr().add(off).cast(), chain);
                            }
                        }
                    }
                }
            }};
        }
        sha1_quad_rounds!(quad);

        state.e = _mm_sha1nexte_epu32(e_prev, e_save);
        state.abcd = _mm_add_epi32(abcd, abcd0);
        if let Some(j) = aes {
            j.chain = chain;
            j.done += 16 * n_aes;
        }
    }
}

/// Copies `m[at..at + 64]` of the message `m = head || tail` into `out`.
fn gather(head: &[u8], tail: &[u8], at: usize, out: &mut [u8; 64]) {
    let from_head = head.len().saturating_sub(at).min(64);
    if from_head > 0 {
        out[..from_head].copy_from_slice(&head[at..at + from_head]);
    }
    let t0 = at + from_head - head.len();
    out[from_head..].copy_from_slice(&tail[t0..t0 + 64 - from_head]);
}

/// Bytes of ciphertext the cipher runs ahead of the hash in [`seal_aes128_cbc_hmac_sha1_96`]
/// beyond what the next hash block needs (for bodies of at least four times this), so the
/// hash of a block never waits on the AES rounds of the same compression.
const LEAD: usize = 64;

/// AES-128-CBC-encrypts `body` (whole blocks) in place with `iv`, and returns
/// HMAC-SHA-1-96 over `hdr_iv || ciphertext` (RFC 4303 2.8 / RFC 2404), computing both in
/// one stitched pass.
pub(super) fn seal_aes128_cbc_hmac_sha1_96(
    aes: &Aes128Ni,
    mac: &Sha1NiKey,
    hdr_iv: &[u8],
    iv: &[u8],
    body: &mut [u8],
) -> [u8; 12] {
    // SAFETY: both key types exist only after `available`-style feature checks.
    unsafe { seal_ni(aes, mac, hdr_iv, iv, body) }
}

#[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
unsafe fn seal_ni(
    aes: &Aes128Ni,
    mac: &Sha1NiKey,
    hdr_iv: &[u8],
    iv: &[u8],
    body: &mut [u8],
) -> [u8; 12] {
    let mut ivb = [0u8; 16];
    ivb.copy_from_slice(&iv[..16]);
    let mut job = CbcJob {
        keys: aes.enc_keys(),
        // SAFETY: `ivb` is 16 bytes; unaligned load.
        chain: unsafe { _mm_loadu_si128(ivb.as_ptr().cast()) },
        data: body,
        done: 0,
    };
    let total = hdr_iv.len() + job.data.len();
    let mut state = St::load(&mac.ipad);
    let mut block = [0u8; 64];

    // Run the cipher ahead until the first hash block's bytes exist and `LEAD` more, then
    // keep the hash that far behind: hash block j needs ciphertext up to
    // 64 j + 64 - hdr_iv.len().
    // Short bodies keep no lead: their few blocks would all be encrypted before the first
    // hash block, none left to ride along.
    let lead = if job.data.len() >= 4 * LEAD { LEAD } else { 0 };
    while job.done < job.data.len() && hdr_iv.len() + job.done < 64 + lead {
        aes.cbc_encrypt_blocks(&mut job.chain, &mut job.data[job.done..job.done + 16]);
        job.done += 16;
    }
    let mut hashed = 0;
    loop {
        if hashed + 64 > total || hdr_iv.len() + job.done < hashed + 64 {
            // Whatever the cipher still has to do (short bodies) before the rest is hashed.
            if job.done < job.data.len() {
                let rest = &mut job.data[job.done..];
                aes.cbc_encrypt_blocks(&mut job.chain, rest);
                job.done = job.data.len();
                continue;
            }
            break;
        }
        if hashed >= hdr_iv.len() {
            // SAFETY: features are enabled on this function; the block's 64 bytes are in
            // `data` and encrypted (checked above).
            unsafe { compress_from(&mut state, Src::Job(hashed - hdr_iv.len()), Some(&mut job)) };
        } else {
            gather(hdr_iv, job.data, hashed, &mut block);
            // SAFETY: as above.
            unsafe { compress_from(&mut state, Src::Bytes(&block), Some(&mut job)) };
        }
        hashed += 64;
    }
    // FIPS 180-4 5.1.1 padding; the ipad block counts towards the length.
    let rem = total - hashed;
    let bits = ((64 + total) as u64) * 8;
    match pad_words(
        &job.data[(job.data.len() + hashed).saturating_sub(total)..],
        rem,
        bits,
    ) {
        // The usual ESP shapes: the last block made in registers from the body's tail (no
        // byte stores read back by wider loads on the way to the last compressions).
        // SAFETY: as above.
        Some(w) if hashed >= hdr_iv.len() => unsafe {
            compress_from(&mut state, Src::Words(w), None)
        },
        _ => {
            block = [0u8; 64];
            for (i, b) in block[..rem].iter_mut().enumerate() {
                let at = hashed + i;
                *b = if at < hdr_iv.len() {
                    hdr_iv[at]
                } else {
                    job.data[at - hdr_iv.len()]
                };
            }
            block[rem] = 0x80;
            if rem + 1 > 56 {
                // SAFETY: as above.
                unsafe { compress_from(&mut state, Src::Bytes(&block), None) };
                block = [0u8; 64];
            }
            block[56..].copy_from_slice(&bits.to_be_bytes());
            // SAFETY: as above.
            unsafe { compress_from(&mut state, Src::Bytes(&block), None) };
        }
    }

    // SAFETY: as above.
    unsafe { outer_icv(&state, mac) }
}

/// HMAC-SHA-1-96 over `hdr_iv || body` (RFC 4303 2.8 / RFC 2404), returned, and the
/// AES-128-CBC decryption of `body` (whole blocks) in place with `iv`: the HMAC's state in
/// registers from block to block, its padding and outer blocks made in registers, and the
/// decryption run once the hash has read the body, beside the last two compressions
/// (RFC 4303 3.4.4.2 lets decryption run beside the integrity check; the caller drops the
/// packet if the ICV does not match, and restores its ciphertext).
pub(super) fn open_aes128_cbc_hmac_sha1_96(
    aes: &Aes128Ni,
    mac: &Sha1NiKey,
    hdr_iv: &[u8],
    iv: &[u8],
    body: &mut [u8],
) -> [u8; 12] {
    // SAFETY: both key types exist only after `available`-style feature checks.
    unsafe { open_ni(aes, mac, hdr_iv, iv, body) }
}

#[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
unsafe fn open_ni(
    aes: &Aes128Ni,
    mac: &Sha1NiKey,
    hdr_iv: &[u8],
    iv: &[u8],
    body: &mut [u8],
) -> [u8; 12] {
    let h = hdr_iv.len();
    let total = h + body.len();
    let mut state = St::load(&mac.ipad);
    let mut block = [0u8; 64];
    let mut hashed = 0;
    while hashed + 64 <= total {
        if hashed >= h {
            let Some(b) = body[hashed - h..].first_chunk::<64>() else {
                break; // not reached: `hashed + 64 <= total`
            };
            // SAFETY: features are enabled on this function.
            unsafe { compress_from(&mut state, Src::Bytes(b), None) };
        } else {
            gather(hdr_iv, body, hashed, &mut block);
            // SAFETY: as above.
            unsafe { compress_from(&mut state, Src::Bytes(&block), None) };
        }
        hashed += 64;
    }
    // The padding block is read (into registers or `block`) before the rest of the body is
    // decrypted, so that decryption runs beside the last compressions.
    let rem = total - hashed;
    let bits = ((64 + total) as u64) * 8;
    let words = if hashed >= h {
        pad_words(&body[hashed - h..], rem, bits)
    } else {
        None
    };
    let two = words.is_none() && rem + 1 > 56;
    if words.is_none() {
        block = [0u8; 64];
        for (i, b) in block[..rem].iter_mut().enumerate() {
            let at = hashed + i;
            *b = if at < h { hdr_iv[at] } else { body[at - h] };
        }
        block[rem] = 0x80;
    }
    aes.cbc_decrypt(iv, body);
    match words {
        // SAFETY: as above.
        Some(w) => unsafe { compress_from(&mut state, Src::Words(w), None) },
        None => {
            if two {
                // SAFETY: as above.
                unsafe { compress_from(&mut state, Src::Bytes(&block), None) };
                block = [0u8; 64];
            }
            block[56..].copy_from_slice(&bits.to_be_bytes());
            // SAFETY: as above.
            unsafe { compress_from(&mut state, Src::Bytes(&block), None) };
        }
    }
    // SAFETY: as above.
    unsafe { outer_icv(&state, mac) }
}

/// The outer hash of HMAC-SHA-1 (RFC 2104) over the inner digest `inner`, truncated to 96
/// bits (RFC 2404), its block made from the inner state's registers: W0..W3 are A..D (the
/// `abcd` register as it stands), W4 is E, then the padding bit and the length
/// 8 * (64 + 20) (FIPS 180-4 5.1.1).
///
/// # Safety
/// As [`compress`].
#[target_feature(enable = "aes,sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn outer_icv(inner: &St, mac: &Sha1NiKey) -> [u8; 12] {
    let outer = [
        inner.abcd,
        _mm_or_si128(inner.e, _mm_set_epi32(0, 0x8000_0000u32 as i32, 0, 0)),
        _mm_setzero_si128(),
        _mm_set_epi32(0, 0, 0, (64 + 20) * 8),
    ];
    let mut st = St::load(&mac.opad);
    // SAFETY: the caller guarantees the features.
    unsafe { compress_from(&mut st, Src::Words(outer), None) };
    // A in the high dword: reversing the register's 16 bytes puts A, B, C big-endian first.
    let bswap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
    let mut out = [0u8; 16];
    // SAFETY: `out` is 16 bytes; unaligned store.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm_shuffle_epi8(st.abcd, bswap)) };
    let mut icv = [0u8; 12];
    icv.copy_from_slice(&out[..12]);
    icv
}

/// The SHA-1 padding block (FIPS 180-4 5.1.1) of a message whose last `rem` bytes are
/// `tail` (`tail.len() >= rem`, the bytes at its end) and whose length is `bits`, as the
/// four message registers of [`Src::Words`]; `None` unless `rem` is a multiple of 8 below
/// 56 (every ESP packet with an 8-byte header and a 16-byte IV: the rest go byte by byte).
#[target_feature(enable = "sse2,ssse3,sse4.1")]
#[inline]
fn pad_words(tail: &[u8], rem: usize, bits: u64) -> Option<[__m128i; 4]> {
    if !rem.is_multiple_of(8) || rem >= 56 || tail.len() < rem {
        return None;
    }
    let bswap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
    let from = tail.len() - rem;
    let mut w = [_mm_setzero_si128(); 4];
    for (q, wq) in w.iter_mut().enumerate() {
        let at = 16 * q;
        let raw = if at + 16 <= rem {
            // SAFETY: `from + at + 16 <= tail.len()`; unaligned 16-byte load.
            unsafe { _mm_loadu_si128(tail.as_ptr().add(from + at).cast()) }
        } else if at + 8 == rem {
            // SAFETY: `from + at + 8 == tail.len()`; unaligned 8-byte load.
            let lo = unsafe { _mm_loadl_epi64(tail.as_ptr().add(from + at).cast()) };
            _mm_or_si128(lo, _mm_set_epi64x(0x80, 0))
        } else if at == rem {
            _mm_set_epi64x(0, 0x80)
        } else {
            _mm_setzero_si128()
        };
        *wq = _mm_shuffle_epi8(raw, bswap);
    }
    // The length: W14 (high half) and W15 (low half), the low dwords of register 3.
    w[3] = _mm_or_si128(
        w[3],
        _mm_set_epi32(0, 0, (bits >> 32) as i32, bits as u32 as i32),
    );
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    fn rng(seed: u64) -> impl FnMut() -> u8 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }
    }

    /// Against the `aes` + `hmac`/`sha1` crates (second implementations) for every body
    /// length an ESP packet can have, up to 100 blocks.
    #[test]
    fn matches_reference_implementations() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/SHA-NI");
            return;
        }
        let mut r = rng(0x5eed);
        for blocks in 1..=100usize {
            for hdr_len in [24usize, 8, 40, 20] {
                let ck: [u8; 16] = core::array::from_fn(|_| r());
                let ik: Vec<u8> = (0..20).map(|_| r()).collect();
                let hdr_iv: Vec<u8> = (0..hdr_len).map(|_| r()).collect();
                let iv: [u8; 16] = core::array::from_fn(|_| r());
                let plain: Vec<u8> = (0..blocks * 16).map(|_| r()).collect();

                let mut expect = plain.clone();
                super::super::transform::cbc::aes128_encrypt(&ck, &iv, &mut expect);
                let mut m = Hmac::<sha1::Sha1>::new_from_slice(&ik).unwrap();
                m.update(&hdr_iv);
                m.update(&expect);
                let expect_icv = m.finalize().into_bytes();

                let aes = Aes128Ni::new(&ck).unwrap();
                let key = Sha1NiKey::new(&ik).unwrap();
                let mut got = plain.clone();
                let icv = seal_aes128_cbc_hmac_sha1_96(&aes, &key, &hdr_iv, &iv, &mut got);
                assert_eq!(got, expect, "{blocks} blocks, hdr {hdr_len}");
                assert_eq!(icv[..], expect_icv[..12], "{blocks} blocks, hdr {hdr_len}");

                // And back: the single-packet decryption returns the same HMAC over the
                // ciphertext and leaves the plaintext.
                let icv = open_aes128_cbc_hmac_sha1_96(&aes, &key, &hdr_iv, &iv, &mut got);
                assert_eq!(got, plain, "open: {blocks} blocks, hdr {hdr_len}");
                assert_eq!(
                    icv[..],
                    expect_icv[..12],
                    "open: {blocks} blocks, hdr {hdr_len}"
                );
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    fn ticks() -> u64 {
        // SAFETY: RDTSC has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// The single-packet decryption against the path it replaced, and the pieces of the
    /// single-packet encryption alone and stitched, minimum TSC ticks over many rounds
    /// (release; `-- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn stitch_timing() {
        if !available() {
            return;
        }
        let aes = Aes128Ni::new(&[7u8; 16]).unwrap();
        let key = Sha1NiKey::new(&[9u8; 20]).unwrap();
        let hdr = [3u8; 24];
        let iv = [5u8; 16];
        let mut body = vec![1u8; 1408];
        let blk = [0x42u8; 64];
        // The single-packet decryption against the HMAC (`integ::Sha1NiCtx`, the `sha1`
        // crate's SHA-NI blocks) and then the CBC decryption, as before, alternated.
        for _ in 0..3 {
            let mut line = String::new();
            for len in [1408usize, 80, 528] {
                let mut b = [u64::MAX; 2];
                for _ in 0..3000 {
                    let t = ticks();
                    let icv = open_aes128_cbc_hmac_sha1_96(&aes, &key, &hdr, &iv, &mut body[..len]);
                    core::hint::black_box(icv);
                    b[0] = b[0].min(ticks() - t);
                    let t = ticks();
                    let mut m = super::super::integ::Sha1NiCtx::start(&key);
                    super::super::integ::MacCtx::update(&mut m, &hdr);
                    super::super::integ::MacCtx::update(&mut m, &body[..len]);
                    let icv = super::super::integ::MacCtx::finish96(m);
                    core::hint::black_box(icv);
                    aes.cbc_decrypt(&iv, &mut body[..len]);
                    core::hint::black_box(&body);
                    b[1] = b[1].min(ticks() - t);
                }
                line += &format!(" open {len} B: {} ticks, apart {};", b[0], b[1]);
            }
            eprintln!("{line}");
        }
        for round in 0..3 {
            let mut best = [u64::MAX; 5];
            for _ in 0..3000 {
                let t = ticks();
                let mut st = key.ipad;
                for _ in 0..22 {
                    // SAFETY: `available` was checked.
                    unsafe { compress(&mut st, &blk, None) };
                }
                core::hint::black_box(&st);
                best[0] = best[0].min(ticks() - t);

                let t = ticks();
                // SAFETY: `available` was checked.
                let mut ch = unsafe { _mm_setzero_si128() };
                // SAFETY: `available` was checked.
                unsafe { aes.cbc_encrypt_blocks(&mut ch, &mut body) };
                core::hint::black_box(&body);
                best[1] = best[1].min(ticks() - t);

                let t = ticks();
                let icv = seal_aes128_cbc_hmac_sha1_96(&aes, &key, &hdr, &iv, &mut body);
                core::hint::black_box(icv);
                best[2] = best[2].min(ticks() - t);

                let t = ticks();
                let icv = seal_aes128_cbc_hmac_sha1_96(&aes, &key, &hdr, &iv, &mut body[..80]);
                core::hint::black_box(icv);
                best[3] = best[3].min(ticks() - t);

                let t = ticks();
                let mut st = key.ipad;
                let mut job = CbcJob {
                    keys: aes.enc_keys(),
                    // SAFETY: `available` was checked.
                    chain: unsafe { _mm_setzero_si128() },
                    data: &mut body,
                    done: 0,
                };
                for _ in 0..22 {
                    // SAFETY: `available` was checked.
                    unsafe { compress(&mut st, &blk, Some(&mut job)) };
                }
                core::hint::black_box(&st);
                best[4] = best[4].min(ticks() - t);
            }
            eprintln!(
                "round {round}: 22 SHA-NI blocks {} ticks, CBC 1408 B {} ticks, \
                 stitched 1408 B {} ticks, stitched 80 B {} ticks, \
                 22 compress with independent CBC {} ticks",
                best[0], best[1], best[2], best[3], best[4]
            );
        }
    }
}
