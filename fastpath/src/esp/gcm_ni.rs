//! AES-128-GCM on AES-NI and PCLMULQDQ: the hot path of `aes-gcm` / `aes-gmac` ESP SAs
//! (RFC 4106, RFC 4543). CTR runs eight blocks at a time with the GHASH of eight ciphertext
//! blocks stitched into its AES rounds, and GHASH multiplies by H^8..H^1 and reduces once per
//! eight blocks (aggregated reduction); the `aes-gcm` crate hashes one block per reduction.
//!
//! GCM itself is NIST SP 800-38D (J0 = IV || 1 for 96-bit IVs, 7.1; GHASH 6.4). GHASH works
//! on byte-reversed blocks, where the carry-less product of two bit-reflected polynomials is
//! the reflected product shifted right by one bit (Gueron and Kounavis, "Intel Carry-Less
//! Multiplication Instruction and its Usage for Computing the GCM Mode", 2010). The table
//! holds each power of H times x, which makes up for that bit, so a product with a table
//! entry is reduced modulo x^128 + x^7 + x^2 + x + 1 by two carry-less multiplies with the
//! polynomial's folding constant and no shift; only the table itself is computed with the
//! shifted reduction. An ESP packet's nonce, J0, AAD (one block) and lengths block are made
//! in registers from its header ([`Aes128GcmNi::seal_esp`]).

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::aesni::Aes128Ni;

/// Blocks per aggregated GHASH reduction and per CTR batch.
pub(super) const AGG: usize = 8;

/// Entries of the table of powers of H: H^1..H^16, lowest first (the 512-bit path multiplies
/// a batch of 16 blocks by them; the 128-bit path uses the first eight), so the powers a
/// short packet needs lie next to the round keys (see [`Aes128GcmNi`]).
pub(super) const HPOW: usize = 16;

/// True if this CPU can run [`Aes128GcmNi`].
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("aes")
        && std::is_x86_feature_detected!("pclmulqdq")
        && std::is_x86_feature_detected!("sse4.1")
        && std::is_x86_feature_detected!("ssse3")
}

/// AES-128-GCM key state: the AES encryption round keys and H^1..H^16 (byte-reversed, see
/// the module comment), all key material, zeroized on drop.
///
/// Laid out (`repr(C)`, alignment 1) for the fewest cache lines per packet when SAs come
/// from memory: the path flag, then the round keys, then the powers lowest first, 433 bytes
/// that sit within seven lines of the SA's transform (`transform::GCM_HOT_BYTES`); a packet
/// of up to 14 blocks (a 64-byte payload is five) reads the first 33 + 16 (n + 2) of them,
/// five lines at 64 bytes. GCM never decrypts with AES, so there are no decryption keys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
#[repr(C)]
pub(super) struct Aes128GcmNi {
    /// Which kernel runs the payload's CTR and GHASH ([`Path`], the widest this CPU has).
    #[zeroize(skip)]
    path: Path,
    /// AES-128 encryption round keys (FIPS-197 5.2).
    enc: [[u8; 16]; 11],
    /// `h_pow[i]` is H^(i + 1), byte-reversed and times x.
    h_pow: [[u8; 16]; HPOW],
}

/// The payload kernel a key state runs: one byte, the first of the state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Path {
    /// 128-bit AES-NI and PCLMULQDQ (`ctr_ghash` here).
    Xmm,
    /// 256-bit VAES and VPCLMULQDQ without AVX-512 (`gcm_ymm`).
    Ymm,
    /// 512-bit VAES and VPCLMULQDQ with AVX-512 F and BW (`gcm_vaes`).
    Zmm,
}

impl Path {
    /// The widest path this CPU runs (features read once by the std detection cache).
    fn best() -> Path {
        if super::gcm_vaes::available() {
            Path::Zmm
        } else if super::gcm_ymm::available() {
            Path::Ymm
        } else {
            Path::Xmm
        }
    }
}

/// What the CTR pass does with GHASH.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// Encrypt, then hash the ciphertext.
    Seal,
    /// Hash the ciphertext, then decrypt.
    Open,
    /// Only apply the keystream (undo a decryption whose tag did not match).
    CtrOnly,
}

impl Aes128GcmNi {
    /// Expands `key` and precomputes the powers of H; `None` if the CPU lacks the features.
    pub(super) fn new(key: &[u8; 16]) -> Option<Self> {
        if !available() {
            return None;
        }
        // The CBC cipher's expansion; its decryption keys are zeroized with it here.
        let aes = Aes128Ni::new(key)?;
        let mut enc = [[0u8; 16]; 11];
        for (slot, k) in enc.iter_mut().zip(aes.enc_keys()) {
            store(slot, k);
        }
        drop(aes);
        let mut g = Self {
            path: Path::best(),
            enc,
            h_pow: [[0; 16]; HPOW],
        };
        enc.zeroize();
        // SAFETY: the CPU features were checked by `available` above.
        g.h_pow = unsafe { powers_of_h(&g.enc_keys()) };
        Some(g)
    }

    /// The encryption round keys, loaded into registers.
    #[inline(always)]
    fn enc_keys(&self) -> [__m128i; 11] {
        core::array::from_fn(|i| load(&self.enc[i]))
    }

    /// Addresses and lengths of the flag, round keys and power table (for the layout test
    /// of the SA prefetch).
    #[cfg(test)]
    pub(super) fn parts_for_test(&self) -> [(usize, usize); 3] {
        [
            (&self.path as *const Path as usize, 1),
            (
                self.enc.as_ptr() as usize,
                core::mem::size_of_val(&self.enc),
            ),
            (
                self.h_pow.as_ptr() as usize,
                core::mem::size_of_val(&self.h_pow),
            ),
        ]
    }

    /// Encrypts `buf` in place under the 96-bit `nonce` and returns the 16-byte tag over
    /// `aad` and the ciphertext (SP 800-38D 7.1).
    pub(super) fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        // SAFETY: `Aes128GcmNi` only exists if the CPU features were detected (see `new`).
        unsafe { self.run(nonce, aad, buf, Pass::Seal) }
    }

    /// Verifies `tag` over `aad` and the ciphertext `buf` in constant time and decrypts `buf`
    /// in place (SP 800-38D 7.2), in one pass. Returns false, with `buf` restored to the
    /// ciphertext, if the tag does not match.
    pub(super) fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        // SAFETY: as in `seal`.
        let expect = unsafe { self.run(nonce, aad, buf, Pass::Open) };
        if super::integ::tags_equal(&expect, tag) {
            return true;
        }
        // The caller drops the packet; restore the ciphertext so no keystream of an
        // unauthenticated packet is left in the buffer.
        // SAFETY: as in `seal`.
        unsafe { self.run(nonce, aad, buf, Pass::CtrOnly) };
        false
    }

    /// Encrypts the body of an ESP packet in place and returns its 16-byte ICV (RFC 4106):
    /// `hdr_iv` is the packet's SPI, sequence number and explicit IV, in wire order. The
    /// nonce, J0, the AAD (SPI || seq, or SPI || `seq_hi` || seq_lo with ESN, RFC 4106 5)
    /// and the lengths block are built in registers from it, not in memory. Inlined: a
    /// dispatch to one of three calls (out of line, it cost the 64-byte seal a call more).
    #[inline(always)]
    pub(super) fn seal_esp(
        &self,
        salt: &[u8; 4],
        hdr_iv: &[u8; 16],
        seq_hi: Option<u32>,
        body: &mut [u8],
    ) -> [u8; 16] {
        use super::gcm_vaes::SEAL;
        let short = self.seals_short(body.len());
        match self.path {
            // SAFETY: `Zmm` is set only if `gcm_vaes::available()` found the features.
            Path::Zmm if short => unsafe { self.short_esp::<SEAL>(salt, hdr_iv, seq_hi, body) },
            // SAFETY: `Ymm` is set only if `gcm_ymm::available()` found the features.
            Path::Ymm if short => unsafe { self.ymm_short::<SEAL>(salt, hdr_iv, seq_hi, body) },
            // SAFETY: as above.
            Path::Zmm => unsafe { self.long_esp::<SEAL>(salt, hdr_iv, seq_hi, body) },
            // SAFETY: as above.
            Path::Ymm => unsafe { self.ymm_esp::<SEAL>(salt, hdr_iv, seq_hi, body) },
            // SAFETY: `Aes128GcmNi` only exists if the CPU features were detected (see `new`).
            Path::Xmm => unsafe { self.run_esp(salt, hdr_iv, seq_hi, body, Pass::Seal) },
        }
    }

    /// Verifies the ICV `tag` of an ESP packet (as in [`seal_esp`](Self::seal_esp)) in
    /// constant time and decrypts `body` in place, in one pass; false, with `body` restored
    /// to the ciphertext, if the tag does not match.
    pub(super) fn open_esp(
        &self,
        salt: &[u8; 4],
        hdr_iv: &[u8; 16],
        seq_hi: Option<u32>,
        body: &mut [u8],
        tag: &[u8],
    ) -> bool {
        use super::gcm_vaes::{CTR_ONLY, OPEN};
        // Opens with the wide kernel `$k` (`short_esp`, `ymm_short`, `ymm_esp` or `long_esp`); on a tag
        // mismatch applies its keystream again, so the ciphertext is restored. A macro, not a
        // helper: the three calls stay exactly as inlined as written out.
        macro_rules! open_or_restore {
            ($k:ident) => {{
                // SAFETY: `$k`'s features were found: `path` is `Ymm` or `Zmm` only if `new`
                // found that path's, and each arm calls its own path's kernels.
                let expect = unsafe { self.$k::<OPEN>(salt, hdr_iv, seq_hi, body) };
                if super::integ::tags_equal(&expect, tag) {
                    return true;
                }
                // SAFETY: as above; the keystream applied again restores the ciphertext.
                unsafe { self.$k::<CTR_ONLY>(salt, hdr_iv, seq_hi, body) };
                return false;
            }};
        }
        let short = self.seals_short(body.len());
        match self.path {
            Path::Zmm if short => open_or_restore!(short_esp),
            Path::Ymm if short => open_or_restore!(ymm_short),
            Path::Ymm => open_or_restore!(ymm_esp),
            Path::Zmm => open_or_restore!(long_esp),
            Path::Xmm => {}
        }
        // SAFETY: as in `seal_esp`.
        let expect = unsafe { self.run_esp(salt, hdr_iv, seq_hi, body, Pass::Open) };
        if super::integ::tags_equal(&expect, tag) {
            return true;
        }
        // As in `open`: no keystream of an unauthenticated packet is left behind.
        // SAFETY: as in `seal_esp`.
        unsafe { self.run_esp(salt, hdr_iv, seq_hi, body, Pass::CtrOnly) };
        false
    }

    /// One short packet (body at most `gcm_vaes::SHORT_BODY_MAX`) through the multi-packet
    /// kernel under pass `P`; returns its tag (the expected one for `OPEN`).
    ///
    /// # Safety
    /// The CPU must have the 512-bit path's features (`gcm_vaes::available`).
    #[target_feature(
        enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx2,avx512f,avx512bw,vaes,vpclmulqdq"
    )]
    unsafe fn short_esp<const P: u8>(
        &self,
        salt: &[u8; 4],
        hdr_iv: &[u8; 16],
        seq_hi: Option<u32>,
        body: &mut [u8],
    ) -> [u8; 16] {
        let mut pk = [super::gcm_vaes::Short {
            enc: &self.enc,
            h_pow: &self.h_pow,
            salt,
            hdr_iv,
            seq_hi,
            body,
        }];
        let [t] = super::gcm_vaes::short::<1, P>(&mut pk);
        let mut tag = [0u8; 16];
        store(&mut tag, t);
        tag
    }

    /// A body longer than the short kernel takes, on the 512-bit path: one call of
    /// `gcm_vaes::esp_long` (the product form [`karatsuba`](super::gcm_vaes::karatsuba)
    /// picks) under pass `P`; returns its tag (the expected one for `OPEN`).
    ///
    /// # Safety
    /// The CPU must have the 512-bit path's features (`gcm_vaes::available`).
    #[inline]
    unsafe fn long_esp<const P: u8>(
        &self,
        salt: &[u8; 4],
        hdr_iv: &[u8; 16],
        seq_hi: Option<u32>,
        body: &mut [u8],
    ) -> [u8; 16] {
        use super::gcm_vaes::{esp_long, karatsuba, CTR_ONLY};
        let (k, h) = (&self.enc, &self.h_pow);
        // SAFETY: the caller guarantees the features (this function's contract).
        unsafe {
            if P != CTR_ONLY && karatsuba() {
                esp_long::<P, true>(k, h, salt, hdr_iv, seq_hi, body)
            } else {
                esp_long::<P, false>(k, h, salt, hdr_iv, seq_hi, body)
            }
        }
    }

    /// One short packet (`gcm_ymm::takes_short` of its body) through the 256-bit
    /// multi-packet kernel under pass `P`, on as few registers as its body needs; returns
    /// its tag (the expected one for `OPEN`).
    ///
    /// # Safety
    /// The CPU must have the 256-bit path's features (`gcm_ymm::available`).
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
    unsafe fn ymm_short<const P: u8>(
        &self,
        salt: &[u8; 4],
        hdr_iv: &[u8; 16],
        seq_hi: Option<u32>,
        body: &mut [u8],
    ) -> [u8; 16] {
        use super::gcm_ymm::{short, short_regs};
        let regs = short_regs(body.len());
        let mut pk = [super::gcm_vaes::Short {
            enc: &self.enc,
            h_pow: &self.h_pow,
            salt,
            hdr_iv,
            seq_hi,
            body,
        }];
        let [t] = match regs {
            ..=2 => short::<1, 2, P>(&mut pk),
            3 => short::<1, 3, P>(&mut pk),
            _ => short::<1, 4, P>(&mut pk),
        };
        let mut tag = [0u8; 16];
        store(&mut tag, t);
        tag
    }

    /// One ESP body on the 256-bit path: `gcm_ymm::esp` under pass `P`; returns its tag
    /// (the expected one for `OPEN`).
    ///
    /// # Safety
    /// The CPU must have the 256-bit path's features (`gcm_ymm::available`).
    #[inline]
    unsafe fn ymm_esp<const P: u8>(
        &self,
        salt: &[u8; 4],
        hdr_iv: &[u8; 16],
        seq_hi: Option<u32>,
        body: &mut [u8],
    ) -> [u8; 16] {
        // SAFETY: the caller guarantees the features (this function's contract).
        unsafe { super::gcm_ymm::esp::<P>(&self.enc, &self.h_pow, salt, hdr_iv, seq_hi, body) }
    }

    /// [`seal_esp`](Self::seal_esp) / [`open_esp`](Self::open_esp) under `pass`.
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn run_esp(
        &self,
        salt: &[u8; 4],
        hdr_iv: &[u8; 16],
        seq_hi: Option<u32>,
        buf: &mut [u8],
        pass: Pass,
    ) -> [u8; 16] {
        let (j0, aad, lens) = esp_blocks(salt, load(hdr_iv), seq_hi, buf.len());
        self.run_blocks(j0, _mm_setzero_si128(), Some(aad), lens, buf, pass)
    }

    /// True if [`seal_esp_many`] seals a body of `len` bytes with this key in its
    /// multi-packet kernel: at most six blocks on the 512-bit path, six blocks of whole
    /// 4-byte words on the 256-bit one (`gcm_ymm::takes_short`).
    #[inline]
    pub(super) fn seals_short(&self, len: usize) -> bool {
        match self.path {
            Path::Zmm => len <= super::gcm_vaes::SHORT_BODY_MAX,
            Path::Ymm => super::gcm_ymm::takes_short(len),
            Path::Xmm => false,
        }
    }

    /// GHASH of `aad`, the CTR pass over `buf` (hashing the ciphertext as `pass` says) and
    /// the tag; for `CtrOnly` the returned tag is meaningless.
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn run(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], pass: Pass) -> [u8; 16] {
        let h: [__m128i; AGG] = core::array::from_fn(|i| load(&self.h_pow[i]));
        let mut tail = [0u8; 4];
        tail.copy_from_slice(&nonce[8..]);
        // SAFETY: `nonce` is 12 readable bytes; the 8-byte load reads its first 8.
        let j0 = unsafe { _mm_loadl_epi64(nonce.as_ptr().cast()) };
        let j0 = _mm_insert_epi32::<2>(j0, i32::from_le_bytes(tail));
        let j0 = _mm_insert_epi32::<3>(j0, 1u32.swap_bytes() as i32);
        let mut x = _mm_setzero_si128();
        if pass != Pass::CtrOnly {
            x = ghash_bytes(x, aad, &h);
        }
        let lens = lengths_block(aad.len() as u64, buf.len());
        self.run_blocks(j0, x, None, lens, buf, pass)
    }

    /// From J0 and the GHASH state `x` (then the byte-reversed block `first`, if given, hashed
    /// before the payload): the CTR pass over `buf`, GHASH of its ciphertext and of the
    /// byte-reversed lengths block `lens`, and the tag E_K(J0) xor S (SP 800-38D 7.1 steps
    /// 4 to 6).
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
    fn run_blocks(
        &self,
        j0: __m128i,
        x: __m128i,
        first: Option<__m128i>,
        lens: __m128i,
        buf: &mut [u8],
        pass: Pass,
    ) -> [u8; 16] {
        let k = self.enc_keys();
        // Step 6's E_K(J0) first: it depends on nothing else and overlaps the payload. (The
        // 512-bit kernel takes it as an argument, so it is computed before the call; made
        // only for the tag after it, the compiler sank it past the call, a serial 10-round
        // chain at the packet's end.)
        let ej0 = aes1(&k, j0);
        let t = if self.path == Path::Ymm {
            use super::gcm_vaes::{Front, CTR_ONLY, OPEN, SEAL};
            use super::gcm_ymm::ctr_ghash;
            let (ek, h) = (&self.enc, &self.h_pow);
            let f = move || Front {
                j0,
                ej0,
                x,
                first,
                lens,
            };
            // SAFETY: `Ymm` is set only if `gcm_ymm::available()` found the features.
            unsafe {
                match pass {
                    Pass::Seal => ctr_ghash::<SEAL>(ek, h, f, buf),
                    Pass::Open => ctr_ghash::<OPEN>(ek, h, f, buf),
                    Pass::CtrOnly => ctr_ghash::<CTR_ONLY>(ek, h, f, buf),
                }
            }
        } else if self.path == Path::Zmm {
            // SAFETY: `Zmm` is set only if `gcm_vaes::available()` found the features.
            unsafe {
                use super::gcm_vaes::{ctr_ghash, karatsuba, CTR_ONLY, OPEN, SEAL};
                // The round keys by reference to the key's bytes, not to `k`: passing `&k`
                // made `enc_keys` a libc memcpy of the 176 bytes to the stack each packet.
                let (ek, h) = (&self.enc, &self.h_pow);
                let f = move || super::gcm_vaes::Front {
                    j0,
                    ej0,
                    x,
                    first,
                    lens,
                };
                match (pass, karatsuba()) {
                    (Pass::Seal, false) => ctr_ghash::<SEAL, false>(ek, h, f, buf),
                    (Pass::Seal, true) => ctr_ghash::<SEAL, true>(ek, h, f, buf),
                    (Pass::Open, false) => ctr_ghash::<OPEN, false>(ek, h, f, buf),
                    (Pass::Open, true) => ctr_ghash::<OPEN, true>(ek, h, f, buf),
                    // No GHASH: the product form does not matter.
                    (Pass::CtrOnly, _) => ctr_ghash::<CTR_ONLY, false>(ek, h, f, buf),
                }
            }
        } else {
            let h: [__m128i; AGG] = core::array::from_fn(|i| load(&self.h_pow[i]));
            let mut x = x;
            if let (Some(a), true) = (first, pass != Pass::CtrOnly) {
                x = gf_mul(_mm_xor_si128(x, a), h[0]);
            }
            x = ctr_ghash(&k, &h, j0, x, buf, pass);
            // Step 5: the lengths block.
            let s = gf_mul(_mm_xor_si128(x, lens), h[0]);
            _mm_xor_si128(bswap(s), ej0)
        };
        let mut tag = [0u8; 16];
        store(&mut tag, t);
        tag
    }
}

/// An ESP packet's J0, byte-reversed AAD block and byte-reversed lengths block, made in
/// registers from its SPI, sequence number and explicit IV `hv` (wire order) and the body's
/// length `len`.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1")]
pub(super) fn esp_blocks(
    salt: &[u8; 4],
    hv: __m128i,
    seq_hi: Option<u32>,
    len: usize,
) -> (__m128i, __m128i, __m128i) {
    // RFC 4106 4: nonce = salt || IV; SP 800-38D 7.1: J0 = nonce || 0^31 || 1.
    let j0 = _mm_shuffle_epi8(
        hv,
        _mm_setr_epi8(-1, -1, -1, -1, 8, 9, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1),
    );
    let j0 = _mm_insert_epi32::<0>(j0, i32::from_le_bytes(*salt));
    let j0 = _mm_insert_epi32::<3>(j0, 1u32.swap_bytes() as i32);
    // RFC 4106 5: the AAD, zero-padded to one block.
    let (aad, aad_len) = match seq_hi {
        None => (_mm_move_epi64(hv), 8u64),
        Some(hi) => {
            let a = _mm_shuffle_epi8(
                hv,
                _mm_setr_epi8(0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1),
            );
            (_mm_insert_epi32::<1>(a, hi.swap_bytes() as i32), 12)
        }
    };
    (j0, bswap(aad), lengths_block(aad_len, len))
}

/// One ESP packet for [`seal_esp_many`]: its key, salt and ESN high half (RFC 4106 5), and
/// the packet from its SPI to its ICV slot (SPI, sequence number, 8-byte IV, the body, 16
/// bytes for the ICV).
pub(super) struct EspSeal<'a> {
    /// The SA's key state.
    pub(super) g: &'a Aes128GcmNi,
    /// The SA's salt.
    pub(super) salt: &'a [u8; 4],
    /// The sequence number's high half, with ESN.
    pub(super) seq_hi: Option<u32>,
    /// `hdr | IV | body | ICV`.
    pub(super) esp: &'a mut [u8],
}

/// Seals `M` ESP packets (each key's [`seals_short`](Aes128GcmNi::seals_short) true of its
/// body and all keys on one path, else all go through [`Aes128GcmNi::seal_esp`] one by one)
/// with the multi-packet kernel of their path: the same ciphertext and ICV as `seal_esp` on
/// each.
pub(super) fn seal_esp_many<const M: usize>(jobs: [EspSeal<'_>; M]) {
    let path = jobs.first().map(|j| j.g.path);
    let short = jobs
        .iter()
        .all(|j| Some(j.g.path) == path && j.esp.len() >= 32 && j.g.seals_short(j.esp.len() - 32));
    match path {
        // SAFETY: `Zmm` is set only if `gcm_vaes::available()` found the features.
        Some(Path::Zmm) if short => unsafe { seal_many_wide(jobs) },
        // SAFETY: `Ymm` is set only if `gcm_ymm::available()` found the features.
        Some(Path::Ymm) if short => unsafe { seal_many_ymm(jobs) },
        _ => {
            for j in jobs {
                let Some((hdr_iv, rest)) = j.esp.split_first_chunk_mut::<16>() else {
                    continue;
                };
                let Some(body_len) = rest.len().checked_sub(16) else {
                    continue;
                };
                let (body, icv) = rest.split_at_mut(body_len);
                icv.copy_from_slice(&j.g.seal_esp(j.salt, hdr_iv, j.seq_hi, body));
            }
        }
    }
}

/// [`seal_esp_many`]'s 512-bit kernel call.
///
/// # Safety
/// The CPU must have the 512-bit path's features (`gcm_vaes::available`).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx2,avx512f,avx512bw,vaes,vpclmulqdq")]
unsafe fn seal_many_wide<const M: usize>(jobs: [EspSeal<'_>; M]) {
    let (icvs, mut pk) = short_jobs(jobs);
    let tags = super::gcm_vaes::short::<M, { super::gcm_vaes::SEAL }>(&mut pk);
    store_icvs(icvs, tags);
}

/// [`seal_esp_many`]'s 256-bit kernel call, on as many registers a packet as the longest
/// body needs.
///
/// # Safety
/// The CPU must have the 256-bit path's features (`gcm_ymm::available`).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,vaes,vpclmulqdq")]
unsafe fn seal_many_ymm<const M: usize>(jobs: [EspSeal<'_>; M]) {
    use super::gcm_vaes::SEAL;
    use super::gcm_ymm::{short, short_regs};
    let regs = jobs
        .iter()
        .map(|j| short_regs(j.esp.len().saturating_sub(32)))
        .max()
        .unwrap_or(0);
    let (icvs, mut pk) = short_jobs(jobs);
    let tags = match regs {
        ..=2 => short::<M, 2, SEAL>(&mut pk),
        3 => short::<M, 3, SEAL>(&mut pk),
        _ => short::<M, 4, SEAL>(&mut pk),
    };
    store_icvs(icvs, tags);
}

/// `jobs` as the multi-packet kernels' packets, and their ICV slots.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn short_jobs<'a, const M: usize>(
    jobs: [EspSeal<'a>; M],
) -> ([&'a mut [u8]; M], [super::gcm_vaes::Short<'a>; M]) {
    let mut icvs: [&mut [u8]; M] = core::array::from_fn(|_| <&mut [u8]>::default());
    // The ICV slots by iterator, not by an index: with no bounds check (and its panic call)
    // the closure is small enough to be inlined, where as a call per packet it cost the
    // 64-B burst ~14 TSC ticks a packet (docs/BENCHMARKS.md, round 24).
    let mut slots = icvs.iter_mut();
    let pk = jobs.map(|j| {
        let (hdr_iv, rest) = j.esp.split_at_mut(j.esp.len().min(16));
        let (body, icv) = rest.split_at_mut(rest.len().saturating_sub(16));
        if let Some(slot) = slots.next() {
            *slot = icv;
        }
        let hdr_iv: &[u8; 16] = <&[u8; 16]>::try_from(&*hdr_iv).unwrap_or(&[0; 16]);
        super::gcm_vaes::Short {
            enc: &j.g.enc,
            h_pow: &j.g.h_pow,
            salt: j.salt,
            hdr_iv,
            seq_hi: j.seq_hi,
            body,
        }
    });
    (icvs, pk)
}

/// The multi-packet kernel's tags `tags` into their ICV slots.
#[inline(always)]
fn store_icvs<const M: usize>(icvs: [&mut [u8]; M], tags: [__m128i; M]) {
    for (icv, t) in icvs.into_iter().zip(tags) {
        if let Ok(icv) = <&mut [u8; 16]>::try_from(icv) {
            store(icv, t);
        }
    }
}

/// SP 800-38D 7.1 step 5: the lengths block len(A)_64 || len(C)_64 in bits, byte-reversed
/// (the form GHASH multiplies), made in a register.
#[inline]
#[target_feature(enable = "sse2")]
fn lengths_block(aad_len: u64, len: usize) -> __m128i {
    _mm_set_epi64x(
        aad_len.wrapping_mul(8) as i64,
        (len as u64).wrapping_mul(8) as i64,
    )
}

/// GHASH of `buf` (under `pass`) with CTR applied in place, continuing from GHASH state `x`,
/// the payload's first counter block being `IV || 2`, 128 bits at a time. Returns the GHASH
/// state before the lengths block.
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
fn ctr_ghash(
    k: &[__m128i; 11],
    h: &[__m128i; AGG],
    j0: __m128i,
    mut x: __m128i,
    buf: &mut [u8],
    pass: Pass,
) -> __m128i {
    // SP 800-38D 7.1 step 4: the payload's counter blocks start at inc32(J0) = IV || 2.
    let mut ctr: u32 = 2;
    let mut chunks = buf.chunks_exact_mut(16 * AGG);
    // Seal hashes a chunk's ciphertext inside the next chunk's AES rounds.
    let mut pending: Option<[__m128i; AGG]> = None;
    for chunk in &mut chunks {
        let p = chunk.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `chunk` is 16 * AGG bytes: AGG unaligned 16-byte loads at p.add(0..AGG).
        let data: [__m128i; AGG] = core::array::from_fn(|i| unsafe { _mm_loadu_si128(p.add(i)) });
        let ctrs: [__m128i; AGG] =
            core::array::from_fn(|i| counter_block(j0, ctr.wrapping_add(i as u32)));
        ctr = ctr.wrapping_add(AGG as u32);
        let to_hash = match pass {
            Pass::Open => Some(with_state(x, data)),
            Pass::Seal => pending.take(),
            Pass::CtrOnly => None,
        };
        let (ks, acc) = aes8_ghash8(k, ctrs, to_hash.as_ref(), h);
        if let Some(acc) = acc {
            x = acc.reduce();
        }
        let out: [__m128i; AGG] = core::array::from_fn(|i| _mm_xor_si128(data[i], ks[i]));
        for (i, v) in out.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm_storeu_si128(p.add(i), *v) };
        }
        if pass == Pass::Seal {
            pending = Some(with_state(x, out));
        }
    }
    if let Some(blocks) = pending {
        x = ghash8(&blocks, h).reduce();
    }
    let rest = chunks.into_remainder();
    let mut blocks = rest.chunks_exact_mut(16);
    for block in &mut blocks {
        let p = block.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `block` is exactly 16 bytes; unaligned load/store.
        let data = unsafe { _mm_loadu_si128(p) };
        if pass == Pass::Open {
            x = gf_mul(_mm_xor_si128(x, bswap(data)), h[0]);
        }
        let out = _mm_xor_si128(data, aes1(k, counter_block(j0, ctr)));
        ctr = ctr.wrapping_add(1);
        // SAFETY: as above.
        unsafe { _mm_storeu_si128(p, out) };
        if pass == Pass::Seal {
            x = gf_mul(_mm_xor_si128(x, bswap(out)), h[0]);
        }
    }
    let tail = blocks.into_remainder();
    if !tail.is_empty() {
        // SP 800-38D 6.5: the last partial block uses the leftmost bytes of its keystream
        // block; GHASH sees it padded with zeros (6.4 via 7.1 step 5).
        let mut pad = [0u8; 16];
        pad[..tail.len()].copy_from_slice(tail);
        if pass == Pass::Open {
            x = gf_mul(_mm_xor_si128(x, bswap(load(&pad))), h[0]);
        }
        let mut ks = [0u8; 16];
        store(&mut ks, aes1(k, counter_block(j0, ctr)));
        for (b, s) in tail.iter_mut().zip(ks.iter()) {
            *b ^= s;
        }
        if pass == Pass::Seal {
            pad = [0u8; 16];
            pad[..tail.len()].copy_from_slice(tail);
            x = gf_mul(_mm_xor_si128(x, bswap(load(&pad))), h[0]);
        }
        ks.zeroize();
    }
    x
}

/// H = E_K(0^128) and its powers in the table's order (H^1..H^16), byte-reversed, times x.
///
/// # Safety
/// The CPU must support the features of [`available`].
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
unsafe fn powers_of_h(k: &[__m128i; 11]) -> [[u8; 16]; HPOW] {
    let h = bswap(aes1(k, _mm_setzero_si128()));
    let mut out = [[0u8; 16]; HPOW];
    let mut p = h;
    for slot in out.iter_mut() {
        store(slot, times_x(p));
        p = Wide::mul(p, h).reduce_exact();
    }
    out
}

/// `v * x` modulo the GCM polynomial in the reflected, byte-reversed form: the 128-bit value
/// shifted left by one, the polynomial added if a bit fell off the top. The table holds the
/// powers of H in this form so [`Wide::reduce`] needs no one-bit shift.
fn times_x(v: __m128i) -> __m128i {
    let mut b = [0u8; 16];
    store(&mut b, v);
    let u = u128::from_le_bytes(b);
    let poly = 0xc200_0000_0000_0000_0000_0000_0000_0001u128 & (0u128.wrapping_sub(u >> 127));
    load(&((u << 1) ^ poly).to_le_bytes())
}

#[inline(always)]
pub(super) fn load(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[inline(always)]
fn store(b: &mut [u8; 16], v: __m128i) {
    // SAFETY: `b` is 16 writable bytes; the unaligned store has no alignment requirement.
    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
}

/// Reverses the 16 bytes of a block (GCM's bit order to the carry-less multiplier's).
#[inline]
#[target_feature(enable = "sse2,ssse3")]
fn bswap(v: __m128i) -> __m128i {
    _mm_shuffle_epi8(
        v,
        _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    )
}

/// The counter block J0 with its last 32 bits replaced by `ctr` (big-endian, inc32 of SP
/// 800-38D 6.2).
#[inline]
#[target_feature(enable = "sse2,sse4.1")]
fn counter_block(j0: __m128i, ctr: u32) -> __m128i {
    _mm_insert_epi32::<3>(j0, ctr.swap_bytes() as i32)
}

/// One AES-128 block encryption with the round keys in registers.
#[inline]
#[target_feature(enable = "aes,sse2")]
fn aes1(k: &[__m128i; 11], block: __m128i) -> __m128i {
    let mut x = _mm_xor_si128(block, k[0]);
    for rk in &k[1..10] {
        x = _mm_aesenc_si128(x, *rk);
    }
    _mm_aesenclast_si128(x, k[10])
}

/// The blocks to hash, byte-reversed, with the running GHASH state folded into the first.
#[inline]
#[target_feature(enable = "sse2,ssse3")]
fn with_state(x: __m128i, blocks: [__m128i; AGG]) -> [__m128i; AGG] {
    let mut out: [__m128i; AGG] = core::array::from_fn(|i| bswap(blocks[i]));
    out[0] = _mm_xor_si128(out[0], x);
    out
}

/// A 256-bit carry-less product before reduction: low, middle (the two cross products,
/// straddling the halves) and high 128 bits. Products of several blocks are summed (xor)
/// in this form and reduced once.
#[derive(Clone, Copy)]
pub(super) struct Wide {
    pub(super) lo: __m128i,
    pub(super) mid: __m128i,
    pub(super) hi: __m128i,
}

impl Wide {
    /// The carry-less product of `a` and `b`, unreduced.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    pub(super) fn mul(a: __m128i, b: __m128i) -> Self {
        Wide {
            lo: _mm_clmulepi64_si128::<0x00>(a, b),
            mid: _mm_xor_si128(
                _mm_clmulepi64_si128::<0x10>(a, b),
                _mm_clmulepi64_si128::<0x01>(a, b),
            ),
            hi: _mm_clmulepi64_si128::<0x11>(a, b),
        }
    }

    /// The sum (xor) of two unreduced products.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn add(self, o: Wide) -> Wide {
        Wide {
            lo: _mm_xor_si128(self.lo, o.lo),
            mid: _mm_xor_si128(self.mid, o.mid),
            hi: _mm_xor_si128(self.hi, o.hi),
        }
    }

    /// Adds the product of `a` and `b`.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    fn add_mul(&mut self, a: __m128i, b: __m128i) {
        let p = Wide::mul(a, b);
        self.lo = _mm_xor_si128(self.lo, p.lo);
        self.mid = _mm_xor_si128(self.mid, p.mid);
        self.hi = _mm_xor_si128(self.hi, p.hi);
    }

    /// Reduces the product of a block and a table entry (a power of H stored times x, see
    /// [`powers_of_h`]) modulo the GCM polynomial: no one-bit shift (the table's factor x
    /// makes up for the reflected product's missing bit), and two [`fold64`] steps, each a
    /// PCLMULQDQ by the polynomial's folding constant, a qword swap and two XORs.
    #[inline]
    #[target_feature(enable = "pclmulqdq,sse2")]
    pub(super) fn reduce(self) -> __m128i {
        // hi x^128 + mid x^64 + lo: the first step takes lo's 64 low bits off and leaves
        // hi x^64 + g, the second g's.
        let g = _mm_xor_si128(self.mid, fold64(self.lo));
        _mm_xor_si128(self.hi, fold64(g))
    }

    /// Shifts the reflected 255-bit product left by one bit and reduces it modulo the GCM
    /// polynomial (Gueron-Kounavis, algorithm 5, second half): the exact product of two
    /// plain elements, for computing the table.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn reduce_exact(self) -> __m128i {
        let lo = _mm_xor_si128(self.lo, _mm_slli_si128::<8>(self.mid));
        let hi = _mm_xor_si128(self.hi, _mm_srli_si128::<8>(self.mid));
        // hi:lo <<= 1, carrying across the 32-bit lanes and from lo into hi.
        let c_lo = _mm_srli_epi32::<31>(lo);
        let c_hi = _mm_srli_epi32::<31>(hi);
        let carry_over = _mm_srli_si128::<12>(c_lo);
        let lo = _mm_or_si128(_mm_slli_epi32::<1>(lo), _mm_slli_si128::<4>(c_lo));
        let hi = _mm_or_si128(
            _mm_or_si128(_mm_slli_epi32::<1>(hi), _mm_slli_si128::<4>(c_hi)),
            carry_over,
        );
        // First phase: fold x^7 + x^2 + x (shifts by 31, 30, 25 in the reflected domain).
        let a = _mm_xor_si128(
            _mm_xor_si128(_mm_slli_epi32::<31>(lo), _mm_slli_epi32::<30>(lo)),
            _mm_slli_epi32::<25>(lo),
        );
        let spill = _mm_srli_si128::<4>(a);
        let lo = _mm_xor_si128(lo, _mm_slli_si128::<12>(a));
        // Second phase.
        let b = _mm_xor_si128(
            _mm_xor_si128(_mm_srli_epi32::<1>(lo), _mm_srli_epi32::<2>(lo)),
            _mm_xor_si128(_mm_srli_epi32::<7>(lo), spill),
        );
        _mm_xor_si128(hi, _mm_xor_si128(lo, b))
    }
}

/// The folding constant of the reflected GCM polynomial x^128 + x^127 + x^126 + x^121 + 1:
/// its terms x^121, x^126, x^127 divided by x^64.
pub(super) const POLY_FOLD: u64 = 0xc200_0000_0000_0000;

/// One 64-bit step of the reduction: for `v` = v1 x^64 + v0 (the low 64 bits of a
/// reflected product), `v x^-64` modulo the reflected polynomial P less the x^64 carried
/// out, i.e. v1 + v0 x^64 + v0 (x^57 + x^62 + x^63): adding v0 P clears the low 64 bits
/// (P's constant term is 1), and the division by x^64 is the qword swap. The caller adds
/// what sits above `v` (Montgomery reduction with 64-bit digits).
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
pub(super) fn fold64(v: __m128i) -> __m128i {
    let c = _mm_set1_epi64x(POLY_FOLD as i64);
    _mm_xor_si128(
        _mm_shuffle_epi32::<0b01_00_11_10>(v),
        _mm_clmulepi64_si128::<0x00>(v, c),
    )
}

/// `a * b` in GF(2^128), both byte-reversed.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
pub(super) fn gf_mul(a: __m128i, b: __m128i) -> __m128i {
    Wide::mul(a, b).reduce()
}

/// Sum of `blocks[i] * H^(AGG - i)`: one aggregated GHASH step over AGG blocks whose first
/// already carries the running state.
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
fn ghash8(blocks: &[__m128i; AGG], h: &[__m128i; AGG]) -> Wide {
    let mut acc = Wide::mul(blocks[0], h[AGG - 1]);
    for i in 1..AGG {
        acc.add_mul(blocks[i], h[AGG - 1 - i]);
    }
    acc
}

/// AES-CTR keystream for eight counter blocks with, if given, the aggregated GHASH product
/// of eight blocks computed between the AES rounds (one block per round), so the AES and
/// multiplier units work side by side.
#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2")]
fn aes8_ghash8(
    k: &[__m128i; 11],
    ctrs: [__m128i; AGG],
    hash: Option<&[__m128i; AGG]>,
    h: &[__m128i; AGG],
) -> ([__m128i; AGG], Option<Wide>) {
    let mut s: [__m128i; AGG] = core::array::from_fn(|i| _mm_xor_si128(ctrs[i], k[0]));
    let Some(blocks) = hash else {
        for rk in &k[1..10] {
            for v in s.iter_mut() {
                *v = _mm_aesenc_si128(*v, *rk);
            }
        }
        for v in s.iter_mut() {
            *v = _mm_aesenclast_si128(*v, k[10]);
        }
        return (s, None);
    };
    let mut acc = Wide::mul(blocks[0], h[AGG - 1]);
    for (r, rk) in k[1..10].iter().enumerate() {
        for v in s.iter_mut() {
            *v = _mm_aesenc_si128(*v, *rk);
        }
        // Rounds 1..=7 carry the products of blocks 1..=7.
        if r + 1 < AGG {
            acc.add_mul(blocks[r + 1], h[AGG - 2 - r]);
        }
    }
    for v in s.iter_mut() {
        *v = _mm_aesenclast_si128(*v, k[10]);
    }
    (s, Some(acc))
}

/// GHASH of `data` zero-padded to whole blocks, continuing from state `x` (SP 800-38D 6.4).
#[target_feature(enable = "pclmulqdq,sse2,ssse3")]
fn ghash_bytes(mut x: __m128i, data: &[u8], h: &[__m128i; AGG]) -> __m128i {
    let mut chunks = data.chunks_exact(16 * AGG);
    for chunk in &mut chunks {
        let p = chunk.as_ptr().cast::<__m128i>();
        // SAFETY: `chunk` is 16 * AGG bytes: AGG unaligned 16-byte loads at p.add(0..AGG).
        let blocks: [__m128i; AGG] = core::array::from_fn(|i| unsafe { _mm_loadu_si128(p.add(i)) });
        x = ghash8(&with_state(x, blocks), h).reduce();
    }
    for block in chunks.remainder().chunks(16) {
        let mut pad = [0u8; 16];
        pad[..block.len()].copy_from_slice(block);
        x = gf_mul(_mm_xor_si128(x, bswap(load(&pad))), h[0]);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::{consts::U12, AeadInPlace, KeyInit};
    use aes_gcm::AesGcm;

    /// Every payload path this CPU runs, narrowest first (a CPU with the 512-bit path also
    /// runs the 256-bit one).
    fn paths() -> Vec<Path> {
        let mut p = vec![Path::Xmm];
        if super::super::gcm_ymm::available() {
            p.push(Path::Ymm);
        }
        if super::super::gcm_vaes::available() {
            p.push(Path::Zmm);
        }
        p
    }

    fn rng(seed: u64) -> impl FnMut() -> u8 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }
    }

    /// Ciphertext and tag of `plain` by the `aes-gcm` crate.
    fn crate_seal(
        key: &[u8; 16],
        nonce: &[u8; 12],
        aad: &[u8],
        plain: &[u8],
    ) -> (Vec<u8>, [u8; 16]) {
        let soft = AesGcm::<aes::Aes128, U12>::new(&(*key).into());
        let mut ct = plain.to_vec();
        let tag = soft
            .encrypt_in_place_detached(&(*nonce).into(), aad, &mut ct)
            .unwrap();
        (ct, tag.into())
    }

    /// Carry-less product of two 64-bit polynomials, bit by bit (the reference for
    /// PCLMULQDQ).
    fn clmul_soft(a: u64, b: u64) -> u128 {
        (0..64)
            .filter(|i| b >> i & 1 == 1)
            .fold(0u128, |acc, i| acc ^ (u128::from(a) << i))
    }

    /// `t` times x^-128 modulo x^128 + x^127 + x^126 + x^121 + 1 (the GCM polynomial with
    /// its bits reflected, where PCLMULQDQ works on byte-reversed blocks), one bit at a
    /// time: add the polynomial where the lowest bit is set, then divide by x. `t` is the
    /// 256-bit product as (high, low).
    fn montgomery_soft(t: (u128, u128)) -> u128 {
        let (mut hi, mut lo) = t;
        for _ in 0..128 {
            if lo & 1 == 1 {
                // The polynomial's bits 0, 121, 126, 127 and 128.
                lo ^= 1 | 1 << 121 | 1 << 126 | 1 << 127;
                hi ^= 1;
            }
            lo = lo >> 1 | hi << 127;
            hi >>= 1;
        }
        debug_assert_eq!(hi, 0);
        lo
    }

    /// The reduction of an unreduced product (`Wide::reduce`) against the bit-serial
    /// reference: for random factors, `a * b * x^-128` modulo the reflected polynomial, and
    /// for sums of several products (aggregated reduction), the sum of the reduced products.
    #[test]
    fn reduction_matches_a_bit_serial_reference() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/PCLMULQDQ");
            return;
        }
        let mut rnd = rng(0x0128_2026_1205_0013);
        let mut r128 = || u128::from_le_bytes(core::array::from_fn(|_| rnd()));
        let v = |x: u128| load(&x.to_le_bytes());
        let back = |x: __m128i| {
            let mut b = [0u8; 16];
            store(&mut b, x);
            u128::from_le_bytes(b)
        };
        let product = |a: u128, b: u128| {
            let (a1, a0, b1, b0) = ((a >> 64) as u64, a as u64, (b >> 64) as u64, b as u64);
            let mid = clmul_soft(a1, b0) ^ clmul_soft(a0, b1);
            let lo = clmul_soft(a0, b0) ^ (mid << 64);
            let hi = clmul_soft(a1, b1) ^ (mid >> 64);
            (hi, lo)
        };
        for case in 0..2000 {
            let (a, b, c, d) = (r128(), r128(), r128(), r128());
            let (a, b) = match case {
                0 => (u128::MAX, u128::MAX),
                1 => (1, 1),
                2 => (1 << 127, 1 << 127),
                _ => (a, b),
            };
            // SAFETY: the CPU features were checked above.
            let got = unsafe { Wide::mul(v(a), v(b)).reduce() };
            assert_eq!(back(got), montgomery_soft(product(a, b)), "{a:x} * {b:x}");
            // SAFETY: as above.
            let sum = unsafe { Wide::mul(v(a), v(b)).add(Wide::mul(v(c), v(d))).reduce() };
            let (p, q) = (product(a, b), product(c, d));
            assert_eq!(back(sum), montgomery_soft((p.0 ^ q.0, p.1 ^ q.1)));
        }
    }

    /// SP 800-38D's own example through the McGrew-Viega GCM spec, test case 4 (AES-128,
    /// 96-bit IV, 20 bytes of AAD, 60 bytes of plaintext).
    #[test]
    fn gcm_spec_test_case_4() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/PCLMULQDQ");
            return;
        }
        let key: [u8; 16] = hex::decode("feffe9928665731c6d6a8f9467308308")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 12] = hex::decode("cafebabefacedbaddecaf888")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let plain = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let cipher = hex::decode(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
        )
        .unwrap();
        let tag = hex::decode("5bc94fbc3221a5db94fae95ae7121a47").unwrap();
        let g = Aes128GcmNi::new(&key).unwrap();
        let mut buf = plain.clone();
        assert_eq!(g.seal(&iv, &aad, &mut buf).to_vec(), tag);
        assert_eq!(buf, cipher);
        assert!(g.open(&iv, &aad, &mut buf, &tag));
        assert_eq!(buf, plain);
    }

    /// Random keys, nonces, AAD and lengths (0..=300 bytes, and MTU-sized packets) against the
    /// `aes-gcm` crate, a second implementation: same ciphertext and tag, and `open` accepts
    /// what the crate sealed.
    #[test]
    fn matches_aes_gcm_crate() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/PCLMULQDQ");
            return;
        }
        let mut rnd = rng(0x9e37_79b9_7f4a_7c15);
        let lens = (0..=300usize).chain([1400, 1408, 1412, 1500, 4096, 9000]);
        for (n, len) in lens.enumerate() {
            let key: [u8; 16] = core::array::from_fn(|_| rnd());
            let nonce: [u8; 12] = core::array::from_fn(|_| rnd());
            let aad_len = [0usize, 8, 12, 16, 20, 127, 128, 129, 300][n % 9];
            let aad: Vec<u8> = (0..aad_len).map(|_| rnd()).collect();
            let plain: Vec<u8> = (0..len).map(|_| rnd()).collect();
            let (expect, expect_tag) = crate_seal(&key, &nonce, &aad, &plain);
            let g = Aes128GcmNi::new(&key).unwrap();
            let mut got = plain.clone();
            let tag = g.seal(&nonce, &aad, &mut got);
            assert_eq!(got, expect, "ciphertext, len {len} aad {aad_len}");
            assert_eq!(tag[..], expect_tag[..], "tag, len {len} aad {aad_len}");
            assert!(g.open(&nonce, &aad, &mut got, &expect_tag), "len {len}");
            assert_eq!(got, plain, "decrypted, len {len}");
        }
    }

    /// Both payload paths, 128-bit and (where the CPU has it) 512-bit VAES/VPCLMULQDQ,
    /// against the `aes-gcm` crate on random keys, nonces and AAD: every length 0..=600
    /// (so every tail of 1..=255 bytes after whole 256-byte batches, including tails of
    /// 1..=63 bytes, and batch counts 0..=2), and lengths around MTU and 4 KiB; the other
    /// path opens what one sealed.
    #[test]
    fn both_paths_match_aes_gcm_crate() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/PCLMULQDQ");
            return;
        }
        let ps = paths();
        eprintln!("paths {ps:?}");
        let mut rnd = rng(0x5151_2026_1203_0042);
        let lens = (0..=600usize).chain([1023, 1024, 1025, 1412, 1500, 4095, 4096, 4097]);
        for (n, len) in lens.enumerate() {
            let key: [u8; 16] = core::array::from_fn(|_| rnd());
            let nonce: [u8; 12] = core::array::from_fn(|_| rnd());
            let aad: Vec<u8> = (0..[8usize, 12, 0, 20][n % 4]).map(|_| rnd()).collect();
            let plain: Vec<u8> = (0..len).map(|_| rnd()).collect();
            let (expect, expect_tag) = crate_seal(&key, &nonce, &aad, &plain);
            let mut g = Aes128GcmNi::new(&key).unwrap();
            // Each path seals, the next one (round the list) opens.
            for (i, &w) in ps.iter().enumerate() {
                let other = ps[(i + 1) % ps.len()];
                g.path = w;
                let mut got = plain.clone();
                let tag = g.seal(&nonce, &aad, &mut got);
                assert_eq!(got, expect, "ciphertext, len {len}, path {w:?}");
                assert_eq!(tag[..], expect_tag[..], "tag, len {len}, path {w:?}");
                g.path = other;
                assert!(
                    g.open(&nonce, &aad, &mut got, &tag),
                    "len {len}, path {other:?}"
                );
                assert_eq!(got, plain, "decrypted, len {len}, path {other:?}");
                let mut bad = tag;
                bad[len % 16] ^= 1;
                let mut buf = expect.clone();
                assert!(!g.open(&nonce, &aad, &mut buf, &bad), "forged, len {len}");
                assert_eq!(buf, expect, "restored, len {len}, path {other:?}");
            }
        }
    }

    /// The 512-bit payload kernel's two product forms (four carry-less products a block, and
    /// Karatsuba's three, which `gcm_vaes::karatsuba` picks on AMD) give the same S and the
    /// same bytes, every pass, with and without a first block, on random keys, states and
    /// payloads of every length 0..=600 and around MTU and 4 KiB; whichever form this CPU
    /// runs is also checked against the `aes-gcm` crate by the tests around this one.
    #[test]
    fn wide_product_forms_agree() {
        use super::super::gcm_vaes::{ctr_ghash, Front, CTR_ONLY, OPEN, SEAL};
        if !super::super::gcm_vaes::available() {
            eprintln!("SKIPPED: no VAES/VPCLMULQDQ/AVX-512");
            return;
        }
        let mut rnd = rng(0x4b41_5241_5453_5542);
        let mut block = || -> __m128i { load(&core::array::from_fn(|_| rnd())) };
        let mut rnd = rng(0x0018_2026_1206_0001);
        let lens = (0..=600usize).chain([1023, 1024, 1025, 1412, 1500, 4095, 4096, 4097]);
        for (n, len) in lens.enumerate() {
            let key: [u8; 16] = core::array::from_fn(|_| rnd());
            let g = Aes128GcmNi::new(&key).unwrap();
            let h = &g.h_pow;
            let (j0, x, lens_block) = (block(), block(), block());
            let first = (n % 2 == 0).then(&mut block);
            let f = move || Front {
                j0,
                ej0: j0,
                x,
                first,
                lens: lens_block,
            };
            let data: Vec<u8> = (0..len).map(|_| rnd()).collect();
            for pass in [SEAL, OPEN, CTR_ONLY] {
                let (mut four, mut three) = (data.clone(), data.clone());
                // SAFETY: `gcm_vaes::available()` found the 512-bit path's features above.
                let (s4, s3) = unsafe {
                    match pass {
                        SEAL => (
                            ctr_ghash::<SEAL, false>(&g.enc, h, f, &mut four),
                            ctr_ghash::<SEAL, true>(&g.enc, h, f, &mut three),
                        ),
                        OPEN => (
                            ctr_ghash::<OPEN, false>(&g.enc, h, f, &mut four),
                            ctr_ghash::<OPEN, true>(&g.enc, h, f, &mut three),
                        ),
                        _ => (
                            ctr_ghash::<CTR_ONLY, false>(&g.enc, h, f, &mut four),
                            ctr_ghash::<CTR_ONLY, true>(&g.enc, h, f, &mut three),
                        ),
                    }
                };
                let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
                store(&mut a, s4);
                store(&mut b, s3);
                assert_eq!(a, b, "S, len {len}, pass {pass}");
                assert_eq!(four, three, "bytes, len {len}, pass {pass}");
            }
        }
    }

    /// The ESP entry points (nonce, AAD and lengths made in registers; on the 512-bit path
    /// AAD and lengths folded into the tail's reduction) against the `aes-gcm` crate with the
    /// RFC 4106 nonce and AAD, with and without ESN, on both paths: every body length
    /// 0..=2000 (payloads of 0..=14 blocks take AAD, payload and lengths in one batch, 15 and
    /// 16 tail blocks take the lengths apart; every tail after one to seven whole batches)
    /// and past 4 KiB (the counter across its low byte); forgeries refused and the
    /// ciphertext restored.
    #[test]
    fn esp_entry_points_match_aes_gcm_crate() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/PCLMULQDQ");
            return;
        }
        let ps = paths();
        let mut rnd = rng(0x4106_2026_1204_0001);
        let lens =
            (0..=2048usize).chain([3824, 3840, 4063, 4064, 4065, 4080, 4096, 4097, 4352, 8192]);
        for len in lens {
            let key: [u8; 16] = core::array::from_fn(|_| rnd());
            let salt: [u8; 4] = core::array::from_fn(|_| rnd());
            let hdr_iv: [u8; 16] = core::array::from_fn(|_| rnd());
            let seq_hi = (len % 3 == 1).then(|| u32::from_be_bytes([rnd(), rnd(), rnd(), rnd()]));
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&salt);
            nonce[4..].copy_from_slice(&hdr_iv[8..]);
            let mut aad = hdr_iv[..4].to_vec();
            if let Some(hi) = seq_hi {
                aad.extend_from_slice(&hi.to_be_bytes());
            }
            aad.extend_from_slice(&hdr_iv[4..8]);
            let plain: Vec<u8> = (0..len).map(|_| rnd()).collect();
            let (expect, expect_tag) = crate_seal(&key, &nonce, &aad, &plain);
            let mut g = Aes128GcmNi::new(&key).unwrap();
            for &w in &ps {
                g.path = w;
                let mut got = plain.clone();
                let tag = g.seal_esp(&salt, &hdr_iv, seq_hi, &mut got);
                assert_eq!(got, expect, "ciphertext, len {len}, path {w:?}");
                assert_eq!(
                    tag, expect_tag,
                    "tag, len {len}, path {w:?}, esn {seq_hi:?}"
                );
                assert!(
                    g.open_esp(&salt, &hdr_iv, seq_hi, &mut got, &tag),
                    "len {len}"
                );
                assert_eq!(got, plain, "decrypted, len {len}, path {w:?}");
                let mut buf = expect.clone();
                let mut bad_hdr = hdr_iv;
                bad_hdr[len % 16] ^= 0x10;
                assert!(
                    !g.open_esp(&salt, &bad_hdr, seq_hi, &mut buf, &tag),
                    "len {len}"
                );
                assert_eq!(buf, expect, "restored, len {len}, path {w:?}");
                let other_hi = Some(seq_hi.map_or(0, |h| h ^ 1));
                assert!(
                    !g.open_esp(&salt, &hdr_iv, other_hi, &mut buf, &tag),
                    "esn, {len}"
                );
                assert_eq!(buf, expect, "restored, len {len}, path {w:?}");
            }
        }
    }

    /// RFC 4106 nonce and AAD of an ESP packet `hdr_iv` (SPI, sequence number, IV).
    fn esp_nonce_aad(salt: &[u8; 4], hdr_iv: &[u8], seq_hi: Option<u32>) -> ([u8; 12], Vec<u8>) {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(salt);
        nonce[4..].copy_from_slice(&hdr_iv[8..16]);
        let mut aad = hdr_iv[..4].to_vec();
        if let Some(hi) = seq_hi {
            aad.extend_from_slice(&hi.to_be_bytes());
        }
        aad.extend_from_slice(&hdr_iv[4..8]);
        (nonce, aad)
    }

    /// The multi-packet seal against the `aes-gcm` crate, on every path this CPU runs: one,
    /// two and four packets of different keys side by side, every body length
    /// 0..=SHORT_BODY_MAX in every position (with and without ESN, bytes around each packet
    /// untouched), bursts of whole-word lengths only (the 256-bit kernel's) and mixed ones,
    /// and longer bodies through the single-packet fallback; each packet then opened in
    /// place (the bytes around it untouched) and, with a forged tag, refused and restored.
    #[test]
    fn seal_esp_many_matches_aes_gcm_crate() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/PCLMULQDQ");
            return;
        }
        let mut rnd = rng(0x4106_2026_1205_0008);
        let max = super::super::gcm_vaes::SHORT_BODY_MAX;
        let lens: Vec<usize> = (0..=max).chain([max + 1, 200, 1408]).collect();
        let words: Vec<usize> = (0..=max).step_by(4).chain([max + 4]).collect();
        fn run<const M: usize>(
            rnd: &mut impl FnMut() -> u8,
            lens: &[usize],
            shift: usize,
            path: Path,
        ) {
            for i in 0..lens.len() {
                let keys: [[u8; 16]; M] = core::array::from_fn(|_| core::array::from_fn(|_| rnd()));
                let gs: Vec<Aes128GcmNi> = keys
                    .iter()
                    .map(|k| {
                        let mut g = Aes128GcmNi::new(k).unwrap();
                        g.path = path;
                        g
                    })
                    .collect();
                let salts: [[u8; 4]; M] = core::array::from_fn(|_| core::array::from_fn(|_| rnd()));
                let his: [Option<u32>; M] = core::array::from_fn(|m| {
                    ((i + m) % 3 == 1).then(|| u32::from_be_bytes([rnd(), rnd(), rnd(), rnd()]))
                });
                let blens: [usize; M] =
                    core::array::from_fn(|m| lens[(i + m * shift) % lens.len()]);
                // Each packet with 7 guard bytes before and after it.
                let mut bufs: Vec<Vec<u8>> = blens
                    .iter()
                    .map(|&l| (0..7 + 16 + l + 16 + 7).map(|_| rnd()).collect())
                    .collect();
                let plain = bufs.clone();
                let mut expect = bufs.clone();
                for m in 0..M {
                    let e = &mut expect[m];
                    let (nonce, aad) = esp_nonce_aad(&salts[m], &e[7..23], his[m]);
                    let body = e[23..23 + blens[m]].to_vec();
                    let (ct, tag) = crate_seal(&keys[m], &nonce, &aad, &body);
                    e[23..23 + blens[m]].copy_from_slice(&ct);
                    e[23 + blens[m]..39 + blens[m]].copy_from_slice(&tag);
                }
                let mut it = bufs.iter_mut();
                let jobs: [EspSeal<'_>; M] = core::array::from_fn(|m| {
                    let b = it.next().unwrap();
                    let end = b.len() - 7;
                    EspSeal {
                        g: &gs[m],
                        salt: &salts[m],
                        seq_hi: his[m],
                        esp: &mut b[7..end],
                    }
                });
                seal_esp_many(jobs);
                let at = format!("M {M}, bodies {blens:?}, esn {his:?}, path {path:?}");
                assert_eq!(bufs, expect, "{at}");
                for m in 0..M {
                    let l = blens[m];
                    let b = &mut bufs[m];
                    let (head, rest) = b.split_at_mut(23);
                    let (body, icv) = rest.split_at_mut(l);
                    let hdr_iv: [u8; 16] = head[7..23].try_into().unwrap();
                    let mut forged = [0u8; 16];
                    forged.copy_from_slice(&icv[..16]);
                    forged[l % 16] ^= 1;
                    assert!(!gs[m].open_esp(&salts[m], &hdr_iv, his[m], body, &forged));
                    assert_eq!(bufs[m], expect[m], "restored, {at}");
                    let b = &mut bufs[m];
                    let (head, rest) = b.split_at_mut(23);
                    let (body, icv) = rest.split_at_mut(l);
                    let hdr_iv: [u8; 16] = head[7..23].try_into().unwrap();
                    assert!(gs[m].open_esp(&salts[m], &hdr_iv, his[m], body, &icv[..16]));
                    assert_eq!(b[..23 + l], plain[m][..23 + l], "opened, {at}");
                    assert_eq!(b[23 + l..], expect[m][23 + l..], "after the body, {at}");
                }
            }
        }
        for w in paths() {
            run::<1>(&mut rnd, &lens, 0, w);
            run::<2>(&mut rnd, &lens, 7, w);
            run::<4>(&mut rnd, &lens, 5, w);
            run::<2>(&mut rnd, &words, 3, w);
            run::<3>(&mut rnd, &words, 5, w);
            run::<4>(&mut rnd, &words, 7, w);
        }
    }

    /// What an aes-gcm-16 packet reads of its SA's transform lies in its first
    /// `GCM_HOT_BYTES` (the transform's tag, the salt, the `Gcm` tag, the path flag, the
    /// round keys and all powers of H), and what a 64-byte payload (five blocks, so H^1..H^7)
    /// reads in its first five lines (`GCM_SHORT_BYTES`); an inbound SA of the suite asks the
    /// lookup to prefetch those five.
    #[test]
    fn a_gcm_packet_reads_the_first_lines_of_its_transform() {
        use super::super::transform::{Transform, GCM_HOT_BYTES, GCM_SHORT_BYTES};
        use super::super::{AuthAlg, EncrAlg, SaKeys, Suite};
        if !available() {
            return;
        }
        let suite = Suite {
            auth: AuthAlg::Null,
            encr: EncrAlg::AesGcm,
            keys: SaKeys {
                integ_key: Vec::new(),
                encr_key: vec![2; 16],
                salt: [3; 4],
            },
        };
        let t = Transform::new(&suite).unwrap();
        let base = &t as *const Transform as usize;
        let (salt, g) = t.gcm_ni().unwrap();
        let end = |p: usize, len: usize| p + len - base;
        // The transform's tag (`repr(u8)`) is its first byte; the `Gcm` tag the first of `g`'s
        // enum, which is within the 9 bytes before the state.
        let parts = g.parts_for_test();
        assert!(end(salt.as_ptr() as usize, 4) <= 8, "salt beside the tag");
        assert!(parts[0].0 - base <= 9, "state right after the tags");
        for (p, len) in parts {
            assert!(end(p, len) <= GCM_HOT_BYTES, "{:?}", (p - base, len));
        }
        // Up to six blocks of body (a 64-byte payload is five): powers up to H^8.
        assert!(end(parts[1].0, parts[1].1) <= GCM_SHORT_BYTES);
        assert!(end(parts[2].0, 8 * 16) <= GCM_SHORT_BYTES);
        assert_eq!((GCM_SHORT_BYTES, GCM_HOT_BYTES), (5 * 64, 7 * 64));
        let sa = super::super::InboundSa::new(0x1000, &suite).unwrap();
        assert_eq!(sa.transform_lines(), 5);
    }

    /// A key state takes the widest path the CPU has: 512-bit with AVX-512 F and BW, VAES
    /// and VPCLMULQDQ, else 256-bit with AVX2, VAES and VPCLMULQDQ (so the ESP tests and the
    /// RFC 4106 vectors run through it on such a CPU).
    #[test]
    fn widest_path_is_used_where_available() {
        let Some(g) = available().then(|| Aes128GcmNi::new(&[1; 16]).unwrap()) else {
            return;
        };
        let has = |f: &[bool]| f.iter().all(|&b| b);
        let (avx2, vaes, clmul) = (
            std::is_x86_feature_detected!("avx2"),
            std::is_x86_feature_detected!("vaes"),
            std::is_x86_feature_detected!("vpclmulqdq"),
        );
        let avx512 = has(&[
            std::is_x86_feature_detected!("avx512f"),
            std::is_x86_feature_detected!("avx512bw"),
        ]);
        let want = if has(&[avx512, vaes, clmul]) {
            Path::Zmm
        } else if has(&[avx2, vaes, clmul]) {
            Path::Ymm
        } else {
            Path::Xmm
        };
        eprintln!("path {want:?}");
        assert_eq!(g.path, want);
    }

    /// Time of a seal and an open of 1412 bytes (an ESP body of 1408 payload bytes) and of 68
    /// (64), 128-bit against 512-bit path, minimum over many interleaved rounds (robust to
    /// other jobs on the box).
    /// `cargo test --release -p akagate-fastpath --lib gcm_ni::tests::path_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn path_timing() {
        if !available() {
            return;
        }
        let mut g = Aes128GcmNi::new(&[3; 16]).unwrap();
        let (nonce, aad) = ([1u8; 12], [2u8; 8]);
        for len in [68usize, 1412] {
            let mut buf = vec![0x5au8; len];
            let mut best = [[u128::MAX; 2]; 2];
            let mut ctr_only = [u128::MAX; 2];
            for _ in 0..20000 {
                for (w, best) in best.iter_mut().enumerate() {
                    g.path = if w == 1 { Path::best() } else { Path::Xmm };
                    let t = std::time::Instant::now();
                    // SAFETY: test only; the features were checked above.
                    unsafe { g.run(&nonce, &aad, &mut buf, Pass::CtrOnly) };
                    ctr_only[w] = ctr_only[w].min(t.elapsed().as_nanos());
                    let t = std::time::Instant::now();
                    let tag = g.seal(&nonce, &aad, &mut buf);
                    best[0] = best[0].min(t.elapsed().as_nanos());
                    let t = std::time::Instant::now();
                    assert!(g.open(&nonce, &aad, &mut buf, &tag));
                    best[1] = best[1].min(t.elapsed().as_nanos());
                }
            }
            eprintln!(
                "{len} B: 128-bit seal {} open {} ns, widest seal {} open {} ns (CTR alone {} / {})",
                best[0][0], best[0][1], best[1][0], best[1][1], ctr_only[0], ctr_only[1]
            );
        }
    }

    /// A tag that differs in any bit, or a flipped ciphertext or AAD bit, is refused and the
    /// buffer holds the ciphertext again afterwards.
    #[test]
    fn bad_tag_is_refused_and_ciphertext_restored() {
        if !available() {
            eprintln!("SKIPPED: no AES-NI/PCLMULQDQ");
            return;
        }
        let mut rnd = rng(42);
        let key: [u8; 16] = core::array::from_fn(|_| rnd());
        let nonce: [u8; 12] = core::array::from_fn(|_| rnd());
        let aad = [7u8; 8];
        let g = Aes128GcmNi::new(&key).unwrap();
        for len in [0usize, 5, 16, 129, 1412] {
            let mut ct: Vec<u8> = (0..len).map(|_| rnd()).collect();
            let tag = g.seal(&nonce, &aad, &mut ct);
            for bit in [0usize, 7, 64, 127] {
                let mut t = tag;
                t[bit / 8] ^= 1 << (bit % 8);
                let mut buf = ct.clone();
                assert!(!g.open(&nonce, &aad, &mut buf, &t), "len {len} bit {bit}");
                assert_eq!(buf, ct, "restored, len {len}");
            }
            if len > 0 {
                let mut buf = ct.clone();
                buf[len - 1] ^= 0x80;
                assert!(!g.open(&nonce, &aad, &mut buf, &tag));
                buf[len - 1] ^= 0x80;
                assert_eq!(buf, ct);
            }
            let mut buf = ct.clone();
            assert!(!g.open(&nonce, &[6u8; 8], &mut buf, &tag), "other AAD");
            assert!(g.open(&nonce, &aad, &mut buf, &tag));
        }
    }
}
