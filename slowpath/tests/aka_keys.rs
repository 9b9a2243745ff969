//! TS 33.203 Annex I ESP keys from TS 35.208 Test Set 1 CK/IK, with the GCM/GMAC salts
//! recomputed here from a hand-built KDF input S (TS 33.220 Annex B).

use akagate_proto::suite::{AuthAlg, EncrAlg};
use akagate_slowpath::aka::{derive_suite, Ck, Ik, KeyError};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const CK: &str = "b40ba9a3c58b2a05bbf0d987b21bf8cb";
const IK: &str = "f769bcd751044604127672711c6d3441";

fn ck() -> Ck {
    Ck::new(hex::decode(CK).unwrap().try_into().unwrap())
}
fn ik() -> Ik {
    Ik::new(hex::decode(IK).unwrap().try_into().unwrap())
}

/// TS 33.220 B.2: S = FC || P0 || L0 with L0 the 2-byte length of P0; Key = CK || IK;
/// output HMAC-SHA-256(Key, S); the salt is its 32 least significant bits.
fn salt_by_hand(fc: u8, p0: &str, l0: [u8; 2]) -> String {
    let mut s = vec![fc];
    s.extend_from_slice(p0.as_bytes());
    s.extend_from_slice(&l0);
    let key = hex::decode(format!("{CK}{IK}")).unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&s);
    let out = mac.finalize().into_bytes();
    hex::encode(&out[28..32])
}

#[test]
fn salts_match_hand_built_kdf_and_notes() {
    // "AES_GCM_SALT" is 12 bytes (L0 = 0x000C), "AES_GMAC_SALT" 13 (L0 = 0x000D).
    let gcm = salt_by_hand(0x59, "AES_GCM_SALT", [0x00, 0x0c]);
    let gmac = salt_by_hand(0x58, "AES_GMAC_SALT", [0x00, 0x0d]);
    // Also checked with: printf '\x59AES_GCM_SALT\x00\x0c' |
    //   openssl dgst -sha256 -mac HMAC -macopt hexkey:<CK||IK>  -> ...589273db6
    assert_eq!(gcm, "89273db6");
    assert_eq!(gmac, "dbc2b1c2");

    let s = derive_suite(AuthAlg::HmacSha1_96, EncrAlg::AesGcm, &ck(), &ik()).unwrap();
    assert_eq!(hex::encode(s.keys.salt), gcm);
    assert_eq!(hex::encode(&s.keys.encr_key), CK);
    assert!(s.keys.integ_key.is_empty(), "GCM carries its own ICV");
    // `alg=null; ealg=aes-gcm` (how OpenSIPS and handsets offer GCM): the same keys.
    let n = derive_suite(AuthAlg::Null, EncrAlg::AesGcm, &ck(), &ik()).unwrap();
    assert_eq!(hex::encode(n.keys.salt), gcm);
    assert_eq!(hex::encode(&n.keys.encr_key), CK);
    assert!(n.keys.integ_key.is_empty());
    // alg=null with any other ealg would leave the SA without integrity.
    for e in [EncrAlg::Null, EncrAlg::AesCbc, EncrAlg::DesEde3Cbc] {
        assert_eq!(
            derive_suite(AuthAlg::Null, e, &ck(), &ik()).unwrap_err(),
            KeyError::NullIntegrity(e.token())
        );
    }

    let s = derive_suite(AuthAlg::AesGmac, EncrAlg::Null, &ck(), &ik()).unwrap();
    assert_eq!(hex::encode(s.keys.salt), gmac);
    assert_eq!(hex::encode(&s.keys.integ_key), IK);
    assert!(s.keys.encr_key.is_empty());
}

#[test]
fn annex_i_keys_for_each_algorithm() {
    let cases = [
        (
            AuthAlg::HmacSha1_96,
            EncrAlg::Null,
            format!("{IK}00000000"),
            String::new(),
        ),
        (
            AuthAlg::HmacMd5_96,
            EncrAlg::Null,
            IK.to_string(),
            String::new(),
        ),
        (
            AuthAlg::HmacSha1_96,
            EncrAlg::AesCbc,
            format!("{IK}00000000"),
            CK.to_string(),
        ),
        (
            AuthAlg::HmacMd5_96,
            EncrAlg::AesCbc,
            IK.to_string(),
            CK.to_string(),
        ),
        // CK1 || CK2 || CK1.
        (
            AuthAlg::HmacSha1_96,
            EncrAlg::DesEde3Cbc,
            format!("{IK}00000000"),
            "b40ba9a3c58b2a05bbf0d987b21bf8cbb40ba9a3c58b2a05".to_string(),
        ),
    ];
    for (auth, encr, integ, enc) in cases {
        let s = derive_suite(auth, encr, &ck(), &ik()).unwrap();
        assert_eq!((s.auth, s.encr), (auth, encr));
        assert_eq!(hex::encode(&s.keys.integ_key), integ, "{auth:?}/{encr:?}");
        assert_eq!(hex::encode(&s.keys.encr_key), enc, "{auth:?}/{encr:?}");
        assert_eq!(s.keys.salt, [0; 4]);
        // The Debug output of the suite carries no key bytes.
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("f769") && !dbg.contains("b40b"), "{dbg}");
    }
}

#[test]
fn gmac_with_encryption_is_refused() {
    assert_eq!(
        derive_suite(AuthAlg::AesGmac, EncrAlg::AesCbc, &ck(), &ik()).unwrap_err(),
        KeyError::GmacWithEncryption("aes-cbc")
    );
}
