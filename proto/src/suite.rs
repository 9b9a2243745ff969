//! ESP algorithm suites and their key material, as negotiated by sec-agree (TS 33.203 Annex H).

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Integrity algorithm (`alg=` in Security-Client/Server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthAlg {
    /// `hmac-md5-96` (RFC 2403): 128-bit key, 12-byte ICV.
    HmacMd5_96,
    /// `hmac-sha-1-96` (RFC 2404): 160-bit key, 12-byte ICV.
    HmacSha1_96,
    /// `aes-gmac` (RFC 4543): 128-bit key + 32-bit salt, 16-byte ICV, no encryption.
    AesGmac,
    /// `null`: no separate integrity algorithm. Only valid with `ealg=aes-gcm`, whose own ICV
    /// protects the packet (TS 33.203 Annex H, Rel-13+ offers `alg=null; ealg=aes-gcm`).
    Null,
}

/// Encryption algorithm (`ealg=` in Security-Client/Server; absent means null).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// `null` (RFC 2410).
    Null,
    /// `aes-cbc` (RFC 3602), 128-bit key.
    AesCbc,
    /// `des-ede3-cbc` (RFC 2451), 192-bit key.
    DesEde3Cbc,
    /// `aes-gcm` (RFC 4106), 128-bit key + 32-bit salt, 16-byte ICV (combined mode).
    AesGcm,
}

impl AuthAlg {
    /// The token used in `alg=`.
    pub fn token(self) -> &'static str {
        match self {
            AuthAlg::HmacMd5_96 => "hmac-md5-96",
            AuthAlg::HmacSha1_96 => "hmac-sha-1-96",
            AuthAlg::AesGmac => "aes-gmac",
            AuthAlg::Null => "null",
        }
    }

    /// Parses an `alg=` token (case-insensitive).
    pub fn from_token(s: &str) -> Option<Self> {
        [
            AuthAlg::HmacMd5_96,
            AuthAlg::HmacSha1_96,
            AuthAlg::AesGmac,
            AuthAlg::Null,
        ]
        .into_iter()
        .find(|a| a.token().eq_ignore_ascii_case(s))
    }
}

impl EncrAlg {
    /// The token used in `ealg=`.
    pub fn token(self) -> &'static str {
        match self {
            EncrAlg::Null => "null",
            EncrAlg::AesCbc => "aes-cbc",
            EncrAlg::DesEde3Cbc => "des-ede3-cbc",
            EncrAlg::AesGcm => "aes-gcm",
        }
    }

    /// Parses an `ealg=` token (case-insensitive).
    pub fn from_token(s: &str) -> Option<Self> {
        [
            EncrAlg::Null,
            EncrAlg::AesCbc,
            EncrAlg::DesEde3Cbc,
            EncrAlg::AesGcm,
        ]
        .into_iter()
        .find(|a| a.token().eq_ignore_ascii_case(s))
    }
}

/// Key material of one ESP SA: the integrity key, the encryption key and, for GCM/GMAC, the
/// 4-byte salt. Zeroized on drop; `Debug` never prints the keys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SaKeys {
    /// Integrity key (20 bytes for hmac-sha-1-96, 16 for hmac-md5-96 and aes-gmac; empty for aes-gcm).
    pub integ_key: Vec<u8>,
    /// Encryption key (16 for aes-cbc/aes-gcm, 24 for des-ede3-cbc; empty for null).
    pub encr_key: Vec<u8>,
    /// RFC 4106 / RFC 4543 salt; zero for the CBC and null suites.
    pub salt: [u8; 4],
}

impl core::fmt::Debug for SaKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SaKeys")
            .field("integ_key_len", &self.integ_key.len())
            .field("encr_key_len", &self.encr_key.len())
            .finish_non_exhaustive()
    }
}

/// The negotiated suite of one SA set: integrity algorithm, encryption algorithm and keys.
#[derive(Clone, Debug)]
pub struct Suite {
    /// Integrity algorithm (`alg`). For `ealg=aes-gcm` integrity comes from GCM itself.
    pub auth: AuthAlg,
    /// Encryption algorithm (`ealg`).
    pub encr: EncrAlg,
    /// Keys derived per TS 33.203 Annex I.
    pub keys: SaKeys,
}
