//! The cryptographic transform of one SA: keyed cipher and integrity state built once, then
//! applied in place to the ESP part of a packet (`SPI | seq | IV | body | ICV`).

use aes::cipher::{
    generic_array::GenericArray, BlockDecrypt, BlockEncrypt, BlockSizeUser, KeyInit,
};
use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::consts::U12;
use aes_gcm::{AeadInPlace, AesGcm};
use des::TdesEde3;

use super::error::{EspError, SaError};
use super::integ::{Hmac96, MacCtx, HMAC96_ICV_LEN};
use super::suite::{AuthAlg, EncrAlg, Suite};

/// ESP header length: SPI and sequence number (RFC 4303 2).
pub const ESP_HDR_LEN: usize = 8;
/// ICV length of AES-GCM-16 and AES-GMAC (RFC 4106 / RFC 4543).
const GCM_ICV_LEN: usize = 16;
/// Explicit IV length of AES-GCM / AES-GMAC (RFC 4106 3.1).
const GCM_IV_LEN: usize = 8;
/// How many blocks CBC decryption hands to the cipher at once (AES-NI pipelines 8).
const CBC_PAR: usize = 8;
/// HMAC is fed ciphertext in chunks of one hash block while CBC encryption proceeds, so the
/// CPU overlaps the two dependency chains (software "stitching").
const STITCH_CHUNK: usize = 64;

/// Block cipher for the CBC suites. Held inline: an SA is long-lived and the key schedule is
/// read on every packet, so a box would only add a pointer chase.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
#[repr(C)]
pub(super) enum CbcCipher {
    /// AES-128 on AES-NI with register-resident round keys (the decryption keys first in
    /// `Aes128Ni`: with the MAC's pad states before them, what decapsulation reads is the
    /// transform's first [`HOT_BYTES`]).
    #[cfg(target_arch = "x86_64")]
    Aes128Ni(super::aesni::Aes128Ni),
    /// AES-128 through the `aes` crate (portable fallback; boxed, like the other cold
    /// variants, so an SA of the hot suites stays small: see `InboundSa::prefetch_at`).
    Aes128(Box<Aes128>),
    /// Three-key triple DES.
    Tdes(Box<TdesEde3>),
}

/// CBC mode over whole blocks, in place (RFC 3602 2.4, RFC 2451).
trait CbcMode {
    /// Encrypts; `on_chunk` sees each `STITCH_CHUNK` of ciphertext as soon as it is ready.
    fn encrypt(&self, iv: &[u8], data: &mut [u8], on_chunk: impl FnMut(&[u8]));
    /// Decrypts.
    fn decrypt(&self, iv: &[u8], data: &mut [u8]);
}

impl<C: BlockEncrypt + BlockDecrypt> CbcMode for C {
    fn encrypt(&self, iv: &[u8], data: &mut [u8], on_chunk: impl FnMut(&[u8])) {
        cbc_encrypt_chunked(self, iv, data, on_chunk)
    }
    fn decrypt(&self, iv: &[u8], data: &mut [u8]) {
        cbc_decrypt(self, iv, data)
    }
}

#[cfg(target_arch = "x86_64")]
impl CbcMode for super::aesni::Aes128Ni {
    fn encrypt(&self, iv: &[u8], data: &mut [u8], on_chunk: impl FnMut(&[u8])) {
        self.cbc_encrypt(iv, data, on_chunk)
    }
    fn decrypt(&self, iv: &[u8], data: &mut [u8]) {
        self.cbc_decrypt(iv, data)
    }
}

/// AES-GCM with a 128-, 192- or 256-bit key (RFC 4106 allows all three).
///
/// `repr(u8)`: a one-byte tag, the AES-NI state right after it (it has alignment 1), so
/// what a packet reads starts at the enum's first byte (see [`GCM_HOT_BYTES`]).
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
#[repr(u8)]
pub(super) enum Gcm {
    /// AES-128 on AES-NI + PCLMULQDQ, CTR stitched with an aggregated GHASH.
    #[cfg(target_arch = "x86_64")]
    Ni128(super::gcm_ni::Aes128GcmNi),
    A128(Box<AesGcm<Aes128, U12>>),
    A192(Box<AesGcm<Aes192, U12>>),
    A256(Box<AesGcm<Aes256, U12>>),
}

/// Bytes at the start of a [`Transform`] that hold everything an hmac-sha-1-96 + aes-cbc
/// decapsulation on AES-NI and SHA-NI reads (tags, HMAC pad states, decryption round keys):
/// what `InboundSa::prefetch_at` loads ahead (checked by a test).
pub(crate) const HOT_BYTES: usize = 256;

/// Bytes at the start of a [`Transform`] that hold everything an aes-gcm-16 SA on AES-NI
/// reads (both tags, the salt, the path flag, the encryption round keys and H^1..H^16):
/// seven lines where the transform starts one (checked by a test). A packet of n <= 14
/// blocks reads only up to H^(n+2): the first [`GCM_SHORT_BYTES`] for up to six blocks.
pub(crate) const GCM_HOT_BYTES: usize = 448;

/// Bytes at the start of a [`Transform`] that an aes-gcm-16 packet of up to six blocks (96
/// bytes of body: a 64-byte payload is five) reads: five lines, what the SA lookup
/// prefetches for the suite. A longer packet reads the two lines after them too, which its
/// own crypto leaves time to load (measured: docs/BENCHMARKS.md, *Eighth round*).
pub(crate) const GCM_SHORT_BYTES: usize = 320;
const _: () = assert!(GCM_SHORT_BYTES <= GCM_HOT_BYTES && GCM_HOT_BYTES.is_multiple_of(64));

/// The keyed transform of one SA (`repr(u8)`: a fixed layout with a one-byte tag, for
/// [`HOT_BYTES`] and [`GCM_HOT_BYTES`]; each variant is laid out as a `repr(C)` struct
/// behind the tag). A clone is keyed alike (the SAs of one set share their keys, see
/// `KeyedSuite`) and zeroizes its own copy on drop.
#[derive(Clone)]
#[repr(u8)]
pub(crate) enum Transform {
    /// aes-cbc or des-ede3-cbc with an HMAC-96 (RFC 3602, RFC 2451); the MAC first, its
    /// SHA-NI pad states in the transform's first line.
    Cbc { integ: Hmac96, cipher: CbcCipher },
    /// null encryption (RFC 2410) with an HMAC-96.
    Null { integ: Hmac96 },
    /// aes-gcm-16 (RFC 4106); the salt first, beside the tag, in the line every packet reads.
    Gcm { salt: [u8; 4], aead: Gcm },
    /// aes-gmac (RFC 4543): null encryption, GMAC over header, IV and payload.
    Gmac { salt: [u8; 4], aead: Gcm },
}

impl Drop for Transform {
    fn drop(&mut self) {
        // The cipher and MAC states zeroize themselves; the RFC 4106 salt is key material too.
        if let Transform::Gcm { salt, .. } | Transform::Gmac { salt, .. } = self {
            zeroize::Zeroize::zeroize(salt);
        }
    }
}

/// Sizes that shape an ESP packet of one transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Explicit IV bytes after the ESP header.
    pub iv_len: usize,
    /// The body (payload, padding, pad length, next header) is a multiple of this
    /// (RFC 4303 2.4: the cipher block size, at least 4).
    pub align: usize,
    /// ICV bytes at the end.
    pub icv_len: usize,
}

fn integ_from(suite: &Suite) -> Result<Hmac96, SaError> {
    let key = &suite.keys.integ_key;
    match suite.auth {
        AuthAlg::HmacSha1_96 if key.len() == 20 => Ok(Hmac96::sha1(key)),
        AuthAlg::HmacMd5_96 if key.len() == 16 => Ok(Hmac96::md5(key)),
        AuthAlg::HmacSha1_96 | AuthAlg::HmacMd5_96 => Err(SaError::BadKeyLength {
            which: "integrity",
            len: key.len(),
        }),
        // alg=null carries no integrity of its own: only aes-gcm (handled before) may use it.
        AuthAlg::AesGmac | AuthAlg::Null => Err(SaError::UnsupportedSuite),
    }
}

fn gcm_from(key: &[u8]) -> Result<Gcm, SaError> {
    let bad = || SaError::BadKeyLength {
        which: "encryption",
        len: key.len(),
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(g) = <&[u8; 16]>::try_from(key)
        .ok()
        .and_then(super::gcm_ni::Aes128GcmNi::new)
    {
        return Ok(Gcm::Ni128(g));
    }
    Ok(match key.len() {
        16 => Gcm::A128(Box::new(AesGcm::new_from_slice(key).map_err(|_| bad())?)),
        24 => Gcm::A192(Box::new(AesGcm::new_from_slice(key).map_err(|_| bad())?)),
        32 => Gcm::A256(Box::new(AesGcm::new_from_slice(key).map_err(|_| bad())?)),
        _ => return Err(bad()),
    })
}

impl Transform {
    /// Keys the transform for `suite` (key schedules and HMAC pads computed here, once).
    pub(crate) fn new(suite: &Suite) -> Result<Self, SaError> {
        let ekey = &suite.keys.encr_key;
        let bad_ekey = || SaError::BadKeyLength {
            which: "encryption",
            len: ekey.len(),
        };
        match (suite.encr, suite.auth) {
            (EncrAlg::AesGcm, _) => Ok(Transform::Gcm {
                aead: gcm_from(ekey)?,
                salt: suite.keys.salt,
            }),
            (EncrAlg::Null, AuthAlg::AesGmac) => Ok(Transform::Gmac {
                aead: gcm_from(&suite.keys.integ_key).map_err(|_| SaError::BadKeyLength {
                    which: "integrity",
                    len: suite.keys.integ_key.len(),
                })?,
                salt: suite.keys.salt,
            }),
            (_, AuthAlg::AesGmac) => Err(SaError::UnsupportedSuite),
            (EncrAlg::Null, _) => Ok(Transform::Null {
                integ: integ_from(suite)?,
            }),
            (EncrAlg::AesCbc, _) => {
                let integ = integ_from(suite)?;
                let key: &[u8; 16] = ekey.as_slice().try_into().map_err(|_| bad_ekey())?;
                #[cfg(target_arch = "x86_64")]
                if let Some(c) = super::aesni::Aes128Ni::new(key) {
                    let cipher = CbcCipher::Aes128Ni(c);
                    return Ok(Transform::Cbc { integ, cipher });
                }
                let c = Aes128::new(key.into());
                Ok(Transform::Cbc {
                    cipher: CbcCipher::Aes128(Box::new(c)),
                    integ,
                })
            }
            (EncrAlg::DesEde3Cbc, _) => {
                let c = TdesEde3::new_from_slice(ekey).map_err(|_| bad_ekey())?;
                Ok(Transform::Cbc {
                    cipher: CbcCipher::Tdes(Box::new(c)),
                    integ: integ_from(suite)?,
                })
            }
        }
    }

    /// The AES-NI round keys and SHA-NI HMAC pad states of an aes-cbc + hmac-sha-1-96 SA
    /// when this CPU runs those kernels: what the multi-buffer burst path (`burst`) needs.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn aes_sha1_ni(
        &self,
    ) -> Option<(&super::aesni::Aes128Ni, &super::stitch::Sha1NiKey)> {
        match self {
            Transform::Cbc {
                integ: Hmac96::Sha1Ni(k),
                cipher: CbcCipher::Aes128Ni(c),
            } => Some((c, k)),
            _ => None,
        }
    }

    /// The AES-GCM state and salt of an aes-gcm-16 SA on AES-NI (`None` for other suites),
    /// whose layout puts what a packet reads in the first [`GCM_HOT_BYTES`].
    #[cfg(target_arch = "x86_64")]
    pub(super) fn gcm_ni(&self) -> Option<(&[u8; 4], &super::gcm_ni::Aes128GcmNi)> {
        match self {
            Transform::Gcm {
                salt,
                aead: Gcm::Ni128(g),
            } => Some((salt, g)),
            _ => None,
        }
    }

    /// How many bytes from its start a packet of this transform reads, if the layout keeps
    /// them there: [`HOT_BYTES`] for hmac-sha-1-96 + aes-cbc on AES-NI/SHA-NI,
    /// [`GCM_SHORT_BYTES`] for aes-gcm-16 on AES-NI (a short packet's; a long one reads
    /// [`GCM_HOT_BYTES`]); `None` for the others (their state spans the transform, or is
    /// boxed).
    pub(crate) fn hot_bytes(&self) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            if self.aes_sha1_ni().is_some() {
                return Some(HOT_BYTES);
            }
            if self.gcm_ni().is_some() {
                return Some(GCM_SHORT_BYTES);
            }
        }
        None
    }

    /// Packet geometry of this transform.
    pub(crate) fn geometry(&self) -> Geometry {
        match self {
            Transform::Cbc { cipher, .. } => {
                // RFC 3602 / RFC 2451: the IV is one cipher block, the body whole blocks.
                let block = match cipher {
                    CbcCipher::Tdes(_) => 8,
                    _ => 16,
                };
                Geometry {
                    iv_len: block,
                    align: block,
                    icv_len: HMAC96_ICV_LEN,
                }
            }
            Transform::Null { .. } => Geometry {
                iv_len: 0,
                align: 4,
                icv_len: HMAC96_ICV_LEN,
            },
            Transform::Gcm { .. } | Transform::Gmac { .. } => Geometry {
                iv_len: GCM_IV_LEN,
                align: 4,
                icv_len: GCM_ICV_LEN,
            },
        }
    }

    /// True if the IV is made from the sequence number (GCM/GMAC, RFC 4106 8.1; masked per
    /// SA, `iv::counter_iv`) rather than drawn at random (CBC, RFC 3602 2.1).
    pub(crate) fn iv_from_seq(&self) -> bool {
        matches!(self, Transform::Gcm { .. } | Transform::Gmac { .. })
    }

    /// True if the transform can carry extended sequence numbers (RFC 4303 2.2.1). AES-GMAC
    /// with ESN would need a non-contiguous AAD and is not offered.
    pub(crate) fn supports_esn(&self) -> bool {
        !matches!(self, Transform::Gmac { .. })
    }

    /// Encrypts and authenticates `esp` = `hdr | IV | body | ICV space` in place; header,
    /// IV and plaintext body are already in place, the body aligned per [`Geometry`].
    /// `seq_hi` is the high half of an extended sequence number, authenticated but not sent.
    pub(crate) fn seal(&self, esp: &mut [u8], seq_hi: Option<u32>) {
        let g = self.geometry();
        let (authed, icv) = esp.split_at_mut(esp.len() - g.icv_len);
        let (hdr_iv, body) = authed.split_at_mut(ESP_HDR_LEN + g.iv_len);
        // RFC 4303 2.2.1 / 3.3.2.1: the ESN high bits follow the payload in the ICV input.
        let hi_bytes = seq_hi.map(u32::to_be_bytes);
        let suffix: &[u8] = hi_bytes.as_ref().map_or(&[], |b| &b[..]);
        match self {
            Transform::Cbc { cipher, integ } => {
                let iv = &hdr_iv[ESP_HDR_LEN..];
                let out = match cipher {
                    #[cfg(target_arch = "x86_64")]
                    CbcCipher::Aes128Ni(c) => match integ {
                        Hmac96::Sha1Ni(mac) if seq_hi.is_none() => {
                            super::stitch::seal_aes128_cbc_hmac_sha1_96(c, mac, hdr_iv, iv, body)
                        }
                        _ => cbc_seal(c, integ, hdr_iv, iv, body, suffix),
                    },
                    CbcCipher::Aes128(c) => cbc_seal(&**c, integ, hdr_iv, iv, body, suffix),
                    CbcCipher::Tdes(c) => cbc_seal(&**c, integ, hdr_iv, iv, body, suffix),
                };
                icv.copy_from_slice(&out);
            }
            Transform::Null { integ } => icv.copy_from_slice(&integ.icv(&[hdr_iv, body, suffix])),
            #[cfg(target_arch = "x86_64")]
            Transform::Gcm {
                aead: Gcm::Ni128(g),
                salt,
            } if hdr_iv.len() == 16 => {
                // Nonce, AAD and lengths made in registers from the packet's own bytes, read
                // where they lie (no copy to the stack).
                if let Ok(hi) = <&[u8; 16]>::try_from(&*hdr_iv) {
                    icv.copy_from_slice(&g.seal_esp(salt, hi, seq_hi, body));
                }
            }
            Transform::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, &hdr_iv[ESP_HDR_LEN..]);
                let (aad, aad_len) = gcm_aad(&hdr_iv[..ESP_HDR_LEN], seq_hi);
                let tag = aead.seal(&nonce, &aad[..aad_len], body);
                icv.copy_from_slice(&tag);
            }
            Transform::Gmac { aead, salt } => {
                let nonce = gcm_nonce(salt, &hdr_iv[ESP_HDR_LEN..]);
                // RFC 4543 3.3: everything from the SPI to the trailer is AAD, nothing encrypted.
                let tag = aead.seal(&nonce, authed, &mut []);
                icv.copy_from_slice(&tag);
            }
        }
    }

    /// Verifies the ICV of `esp` (`hdr | IV | body | ICV`) in constant time and, only if it
    /// matches, decrypts the body in place (the single aes-cbc + hmac-sha-1-96 packet on
    /// SHA-NI decrypts beside the HMAC and, on a mismatch, restores the ciphertext).
    /// `before_decrypt` runs once the ICV has matched (the caller's replay-window update,
    /// RFC 4303 3.4.3). `precomputed` is the expected HMAC-96
    /// ICV if the burst path already computed it (multi-buffer) over the same bytes; the
    /// GCM/GMAC transforms ignore it.
    pub(crate) fn open_with(
        &self,
        esp: &mut [u8],
        seq_hi: Option<u32>,
        precomputed: Option<&[u8; HMAC96_ICV_LEN]>,
        before_decrypt: impl FnOnce(),
    ) -> Result<(), EspError> {
        let g = self.geometry();
        let hi_bytes = seq_hi.map(u32::to_be_bytes);
        let suffix: &[u8] = hi_bytes.as_ref().map_or(&[], |b| &b[..]);
        if esp.len() < ESP_HDR_LEN + g.iv_len + g.icv_len {
            return Err(EspError::Truncated);
        }
        let (authed, icv) = esp.split_at_mut(esp.len() - g.icv_len);
        let (hdr_iv, body) = authed.split_at_mut(ESP_HDR_LEN + g.iv_len);
        if body.len() < 2 {
            return Err(EspError::Truncated);
        }
        match self {
            Transform::Cbc { integ, .. } | Transform::Null { integ } => {
                // RFC 4303 2.4: CBC ciphertext is whole blocks (checked before any crypto).
                // Every alignment is a power of two (`geometry`): a mask, not a division.
                if body.len() & (g.align - 1) != 0 && matches!(self, Transform::Cbc { .. }) {
                    return Err(EspError::BadLength);
                }
                // The burst's ICV is compared where it lies: a copy to the stack (an 8- and a
                // 4-byte store) read back with wider loads waited for the stores to drain
                // (burst decryption at 64 B: half of this function's samples).
                let computed;
                // The single packet of aes-cbc + hmac-sha-1-96 on SHA-NI: decrypted beside the
                // HMAC's last compressions (`stitch`; RFC 4303 3.4.4.2), the ICV still checked
                // before the window moves, and on a mismatch dropped as below.
                let mut decrypted = false;
                let expect = match precomputed {
                    Some(icv) => icv,
                    None => {
                        #[cfg(target_arch = "x86_64")]
                        let stitched = match self.aes_sha1_ni() {
                            Some((c, mac)) if seq_hi.is_none() => {
                                let iv = &hdr_iv[ESP_HDR_LEN..];
                                Some(super::stitch::open_aes128_cbc_hmac_sha1_96(
                                    c, mac, hdr_iv, iv, body,
                                ))
                            }
                            _ => None,
                        };
                        #[cfg(not(target_arch = "x86_64"))]
                        let stitched = None;
                        decrypted = stitched.is_some();
                        computed = stitched.unwrap_or_else(|| integ.icv(&[hdr_iv, body, suffix]));
                        &computed
                    }
                };
                // RFC 4303 3.4.4: ICV first, compared in constant time.
                if !super::integ::tags_equal(expect, icv) {
                    // A dropped packet keeps the bytes it came with, as on the burst path:
                    // the stitched decryption undone (CBC encryption with the same IV).
                    #[cfg(target_arch = "x86_64")]
                    if let (true, Some((c, _))) = (decrypted, self.aes_sha1_ni()) {
                        c.cbc_encrypt(&hdr_iv[ESP_HDR_LEN..], body, |_| {});
                    }
                    return Err(EspError::AuthFailed);
                }
                before_decrypt();
                if decrypted {
                    return Ok(());
                }
                if let Transform::Cbc { cipher, .. } = self {
                    let iv = &hdr_iv[ESP_HDR_LEN..];
                    match cipher {
                        #[cfg(target_arch = "x86_64")]
                        CbcCipher::Aes128Ni(c) => c.decrypt(iv, body),
                        CbcCipher::Aes128(c) => CbcMode::decrypt(&**c, iv, body),
                        CbcCipher::Tdes(c) => CbcMode::decrypt(&**c, iv, body),
                    }
                }
                Ok(())
            }
            #[cfg(target_arch = "x86_64")]
            Transform::Gcm {
                aead: Gcm::Ni128(g),
                salt,
            } if hdr_iv.len() == 16 => {
                let mut hi = [0u8; 16];
                hi.copy_from_slice(hdr_iv);
                if !g.open_esp(salt, &hi, seq_hi, body, icv) {
                    return Err(EspError::AuthFailed);
                }
                before_decrypt();
                Ok(())
            }
            Transform::Gcm { aead, salt } => {
                let nonce = gcm_nonce(salt, &hdr_iv[ESP_HDR_LEN..]);
                let (aad, aad_len) = gcm_aad(&hdr_iv[..ESP_HDR_LEN], seq_hi);
                // aes-gcm checks the tag (constant time) before it applies the keystream.
                aead.verify_then(&nonce, &aad[..aad_len], body, icv, before_decrypt)
            }
            Transform::Gmac { aead, salt } => {
                let nonce = gcm_nonce(salt, &hdr_iv[ESP_HDR_LEN..]);
                aead.verify_then(&nonce, authed, &mut [], icv, before_decrypt)
            }
        }
    }
}

/// RFC 4106 5: AAD is SPI || seq (8 bytes), or SPI || seq_hi || seq_lo (12 bytes) with ESN.
fn gcm_aad(hdr: &[u8], seq_hi: Option<u32>) -> ([u8; 12], usize) {
    let mut aad = [0u8; 12];
    match seq_hi {
        None => {
            aad[..8].copy_from_slice(&hdr[..8]);
            (aad, 8)
        }
        Some(hi) => {
            aad[..4].copy_from_slice(&hdr[..4]);
            aad[4..8].copy_from_slice(&hi.to_be_bytes());
            aad[8..].copy_from_slice(&hdr[4..8]);
            (aad, 12)
        }
    }
}

fn gcm_nonce(salt: &[u8; 4], iv: &[u8]) -> [u8; 12] {
    // RFC 4106 4: nonce = salt || explicit IV.
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    n
}

impl Gcm {
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; GCM_ICV_LEN] {
        let n = GenericArray::from_slice(nonce);
        // Encryption of a slice in place cannot fail below the GCM length limit (2^36 bytes).
        let tag = match self {
            #[cfg(target_arch = "x86_64")]
            Gcm::Ni128(g) => return g.seal(nonce, aad, buf),
            Gcm::A128(a) => a.encrypt_in_place_detached(n, aad, buf),
            Gcm::A192(a) => a.encrypt_in_place_detached(n, aad, buf),
            Gcm::A256(a) => a.encrypt_in_place_detached(n, aad, buf),
        };
        tag.map(Into::into).unwrap_or([0; GCM_ICV_LEN])
    }

    fn verify_then(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        icv: &[u8],
        before_decrypt: impl FnOnce(),
    ) -> Result<(), EspError> {
        let n = GenericArray::from_slice(nonce);
        let t = GenericArray::from_slice(icv);
        // aes-gcm decrypts only after a successful tag check and restores nothing on
        // failure, so the window update can follow; the body is plaintext afterwards.
        let ok = match self {
            // One pass: hashes and decrypts together, restores the ciphertext on a bad tag.
            #[cfg(target_arch = "x86_64")]
            Gcm::Ni128(g) => {
                if !g.open(nonce, aad, buf, icv) {
                    return Err(EspError::AuthFailed);
                }
                before_decrypt();
                return Ok(());
            }
            Gcm::A128(a) => a.decrypt_in_place_detached(n, aad, buf, t),
            Gcm::A192(a) => a.decrypt_in_place_detached(n, aad, buf, t),
            Gcm::A256(a) => a.decrypt_in_place_detached(n, aad, buf, t),
        };
        ok.map_err(|_| EspError::AuthFailed)?;
        before_decrypt();
        Ok(())
    }
}

/// CBC encryption of `body` in place with HMAC over `hdr_iv || ciphertext || suffix`, the
/// MAC fed one hash block behind the cipher so the two chains run side by side.
fn cbc_seal<C: CbcMode>(
    c: &C,
    integ: &Hmac96,
    hdr_iv: &[u8],
    iv: &[u8],
    body: &mut [u8],
    suffix: &[u8],
) -> [u8; HMAC96_ICV_LEN] {
    match integ {
        #[cfg(target_arch = "x86_64")]
        Hmac96::Sha1Ni(k) => cbc_seal_with(
            c,
            super::integ::Sha1NiCtx::start(k),
            hdr_iv,
            iv,
            body,
            suffix,
        ),
        Hmac96::Sha1(k) => cbc_seal_with(c, k.start(), hdr_iv, iv, body, suffix),
        Hmac96::Md5(k) => cbc_seal_with(c, k.start(), hdr_iv, iv, body, suffix),
    }
}

/// [`cbc_seal`] with the MAC's running state `mac`.
fn cbc_seal_with<C: CbcMode>(
    c: &C,
    mut mac: impl MacCtx,
    hdr_iv: &[u8],
    iv: &[u8],
    body: &mut [u8],
    suffix: &[u8],
) -> [u8; HMAC96_ICV_LEN] {
    mac.update(hdr_iv);
    c.encrypt(iv, body, |chunk| mac.update(chunk));
    mac.update(suffix);
    mac.finish96()
}

/// CBC encryption in place; `on_chunk` sees each `STITCH_CHUNK` of ciphertext as soon as it
/// is ready. `data` must be whole blocks.
fn cbc_encrypt_chunked<C: BlockEncrypt>(
    c: &C,
    iv: &[u8],
    data: &mut [u8],
    mut on_chunk: impl FnMut(&[u8]),
) {
    let mut prev = GenericArray::<u8, C::BlockSize>::clone_from_slice(iv);
    for chunk in data.chunks_mut(STITCH_CHUNK) {
        for block in chunk.chunks_exact_mut(C::block_size()) {
            let block = GenericArray::from_mut_slice(block);
            for (b, p) in block.iter_mut().zip(prev.iter()) {
                *b ^= p;
            }
            c.encrypt_block(block);
            prev.copy_from_slice(block);
        }
        on_chunk(chunk);
    }
}

/// Plain CBC (RFC 3602 2.4) on whole blocks, exposed for known-answer tests of the chaining.
pub mod cbc {
    use super::*;

    /// Encrypts `data` (a multiple of 16 bytes) in place with AES-128-CBC.
    pub fn aes128_encrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
        let c = Aes128::new(key.into());
        cbc_encrypt_chunked(&c, iv, data, |_| {});
    }

    /// Decrypts `data` (a multiple of 16 bytes) in place with AES-128-CBC.
    pub fn aes128_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
        let c = Aes128::new(key.into());
        cbc_decrypt(&c, iv, data);
    }
}

/// CBC decryption of `body` in place, `CBC_PAR` blocks per cipher call.
fn cbc_decrypt<C: BlockDecrypt + BlockSizeUser>(c: &C, iv: &[u8], body: &mut [u8]) {
    let bs = C::block_size();
    let mut prev = GenericArray::<u8, C::BlockSize>::clone_from_slice(iv);
    let mut tmp: [GenericArray<u8, C::BlockSize>; CBC_PAR] = Default::default();
    for chunk in body.chunks_mut(CBC_PAR * bs) {
        let n = chunk.len() / bs;
        for (t, b) in tmp.iter_mut().zip(chunk.chunks_exact(bs)) {
            t.copy_from_slice(b);
        }
        c.decrypt_blocks(&mut tmp[..n]);
        // Walk backwards so each block still sees the ciphertext of the one before it.
        let next_prev = GenericArray::<u8, C::BlockSize>::clone_from_slice(&chunk[(n - 1) * bs..]);
        for j in (0..n).rev() {
            let (before, this) = chunk.split_at_mut(j * bs);
            let chain: &[u8] = if j == 0 {
                &prev
            } else {
                &before[(j - 1) * bs..]
            };
            for ((o, d), p) in this[..bs].iter_mut().zip(tmp[j].iter()).zip(chain.iter()) {
                *o = d ^ p;
            }
        }
        prev = next_prev;
    }
}
