//! ESP keys from CK_IM/IK_IM per TS 33.203 Annex I, into the fast path's `Suite`/`SaKeys`,
//! including the AES-GCM/GMAC salts from the TS 33.220 Annex B KDF.

use akagate_proto::suite::{AuthAlg, EncrAlg, SaKeys, Suite};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use super::material::{Ck, Ik};

/// FC of the KDF for the RFC 4106 AES-GCM salt (TS 33.203 Annex I).
pub const FC_AES_GCM_SALT: u8 = 0x59;
/// P0 of the KDF for the AES-GCM salt.
pub const P0_AES_GCM_SALT: &[u8] = b"AES_GCM_SALT";
/// FC of the KDF for the RFC 4543 AES-GMAC salt (TS 33.203 Annex I).
pub const FC_AES_GMAC_SALT: u8 = 0x58;
/// P0 of the KDF for the AES-GMAC salt.
pub const P0_AES_GMAC_SALT: &[u8] = b"AES_GMAC_SALT";

/// The negotiated algorithm pair has no key rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// aes-gmac is integrity-only (RFC 4543 ENCR_NULL_AUTH_AES_GMAC): only with ealg=null.
    #[error("alg=aes-gmac cannot be combined with ealg={0}")]
    GmacWithEncryption(&'static str),
    /// alg=null has no integrity of its own: only with ealg=aes-gcm (TS 33.203 Annex H).
    #[error("alg=null requires ealg=aes-gcm, not ealg={0}")]
    NullIntegrity(&'static str),
}

/// The TS 33.220 Annex B KDF with one parameter: HMAC-SHA-256(Key, FC || P0 || L0), where
/// L0 is the 2-byte big-endian length of P0.
pub fn kdf_33220(key: &[u8], fc: u8, p0: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .expect("HMAC accepts keys of any length (RFC 2104)");
    mac.update(&[fc]);
    mac.update(p0);
    // P0 values are short constants; saturate rather than truncate if one ever were not.
    let l0 = u16::try_from(p0.len()).unwrap_or(u16::MAX);
    mac.update(&l0.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// The salt of TS 33.203 Annex I: the 32 least significant bits (last 4 bytes) of
/// KDF(CK_IM || IK_IM, FC, P0).
pub fn salt(ck: &Ck, ik: &Ik, fc: u8, p0: &[u8]) -> [u8; 4] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(ck.as_bytes());
    key[16..].copy_from_slice(ik.as_bytes());
    let mut out = kdf_33220(&key, fc, p0);
    let salt = [out[28], out[29], out[30], out[31]];
    key.zeroize();
    out.zeroize();
    salt
}

/// Derives the ESP keys of one SA set from CK/IK (TS 33.203 Annex I):
/// hmac-sha-1-96: IK_ESP = IK_IM || 0^32; hmac-md5-96: IK_ESP = IK_IM; aes-gmac: IK_ESP = IK_IM
/// with the GMAC salt; aes-cbc: CK_ESP = CK_IM; des-ede3-cbc: CK_ESP = CK1 || CK2 || CK1 where
/// CK_IM = CK1 || CK2; null: no key; aes-gcm: CK_ESP = CK_IM with the GCM salt and no separate
/// integrity key (GCM's own ICV protects the packet), whether `alg` was offered as `null` or as
/// an HMAC (the HMAC is then unused).
pub fn derive_suite(
    auth: AuthAlg,
    encr: EncrAlg,
    ck_im: &Ck,
    ik_im: &Ik,
) -> Result<Suite, KeyError> {
    let ck = ck_im.as_bytes();
    let ik = ik_im.as_bytes();
    let mut salt_out = [0u8; 4];
    let encr_key = match encr {
        EncrAlg::Null => Vec::new(),
        EncrAlg::AesCbc => ck.to_vec(),
        EncrAlg::DesEde3Cbc => {
            // CK1 = CK_IM[0..8], CK2 = CK_IM[8..16]; no DES parity adjustment (none is
            // specified, and the kernel/OpenSSL ignore parity bits).
            let mut k = Vec::with_capacity(24);
            k.extend_from_slice(ck);
            k.extend_from_slice(&ck[..8]);
            k
        }
        EncrAlg::AesGcm => {
            salt_out = salt(ck_im, ik_im, FC_AES_GCM_SALT, P0_AES_GCM_SALT);
            ck.to_vec()
        }
    };
    let integ_key = match (encr, auth) {
        (EncrAlg::AesGcm, _) => Vec::new(),
        (_, AuthAlg::HmacSha1_96) => {
            let mut k = Vec::with_capacity(20);
            k.extend_from_slice(ik);
            k.extend_from_slice(&[0; 4]);
            k
        }
        (_, AuthAlg::HmacMd5_96) => ik.to_vec(),
        (EncrAlg::Null, AuthAlg::AesGmac) => {
            salt_out = salt(ck_im, ik_im, FC_AES_GMAC_SALT, P0_AES_GMAC_SALT);
            ik.to_vec()
        }
        (e, AuthAlg::AesGmac) => return Err(KeyError::GmacWithEncryption(e.token())),
        (e, AuthAlg::Null) => return Err(KeyError::NullIntegrity(e.token())),
    };
    Ok(Suite {
        auth,
        encr,
        keys: SaKeys {
            integ_key,
            encr_key,
            salt: salt_out,
        },
    })
}
