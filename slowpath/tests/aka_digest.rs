//! RFC 2617 / RFC 3310 digest: the RFC 2617 3.5 worked example, the AKAv1-MD5 example of
//! TS 35.208 Test Set 1 (recomputed from the RFC 2617 formulas with a separate MD5 path),
//! the `auts` request with an empty password, nonce encoding and header round trips.

use akagate_slowpath::aka::{
    aka_response, decode_auts, digest_response, encode_auts, AkaNonce, AkaNonceError, Autn, Auts,
    DigestChallenge, DigestCredentials, DigestInput, DigestParseError, QopAuth, Res,
    ALGORITHM_AKAV1_MD5, AUTS_PASSWORD,
};
use md5::{Digest, Md5};

/// Independent RFC 2617 3.2.2.1 computation: hex(MD5(s)) over the literal strings.
fn md5_hex(s: &[u8]) -> String {
    hex::encode(Md5::digest(s))
}

const USER: &str = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org";
const REALM: &str = "ims.mnc001.mcc001.3gppnetwork.org";
const URI: &str = "sip:ims.mnc001.mcc001.3gppnetwork.org";
// TS 35.208 Test Set 1.
const RAND: &str = "23553cbe9637a89d218ae64dae47bf35";
const RES: &str = "a54211d5e3ba50bf";
const SQN_XOR_AK: &str = "55f328b43577"; // ff9bb4d0b607 xor aa689c648370
const AMF: &str = "b9b9";
const MAC_A: &str = "4a9ffac354dfafb3";

fn set1_nonce() -> AkaNonce {
    let autn: [u8; 16] = hex::decode(format!("{SQN_XOR_AK}{AMF}{MAC_A}"))
        .unwrap()
        .try_into()
        .unwrap();
    AkaNonce {
        rand: hex::decode(RAND).unwrap().try_into().unwrap(),
        autn: Autn::from_bytes(autn),
        server_data: Vec::new(),
    }
}

#[test]
fn rfc2617_section_3_5_example() {
    let input = DigestInput {
        username: "Mufasa",
        realm: "testrealm@host.com",
        method: "GET",
        uri: "/dir/index.html",
        nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop: Some(QopAuth {
            nc: "00000001",
            cnonce: "0a4f113b",
        }),
    };
    let r = digest_response(&input, b"Circle Of Life");
    assert_eq!(r.as_str(), "6629fae49393a05397450978507c4ef1");

    // The same through the header parser, as the example's Authorization header.
    let creds = DigestCredentials::parse(
        "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n \
         qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n \
         response=\"6629fae49393a05397450978507c4ef1\",\r\n \
         opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert!(creds.verify("GET", b"Circle Of Life"));
    assert!(!creds.verify("GET", b"Circle of Life"));
    assert!(!creds.verify("POST", b"Circle Of Life"));
}

#[test]
fn akav1_md5_test_set_1() {
    let nonce = set1_nonce().encode();
    assert_eq!(nonce, "I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=");

    // Recompute from the RFC 2617 formulas with RES as raw bytes (not hex).
    let res = hex::decode(RES).unwrap();
    let mut a1 = format!("{USER}:{REALM}:").into_bytes();
    a1.extend_from_slice(&res);
    let ha1 = md5_hex(&a1);
    let ha2 = md5_hex(format!("REGISTER:{URI}").as_bytes());
    assert_eq!(ha1, "da00069eb0de6587da7e09ef503c29db");
    assert_eq!(ha2, "df94ff42c4e05afeddd46c372e8208b4");
    let expected = md5_hex(format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}").as_bytes());
    assert_eq!(expected, "402ab8df9f3a4d63a9f47c2f90e02938");

    let input = DigestInput {
        username: USER,
        realm: REALM,
        method: "REGISTER",
        uri: URI,
        nonce: &nonce,
        qop: Some(QopAuth {
            nc: "00000001",
            cnonce: "0a4f113b",
        }),
    };
    let r = aka_response(&input, &Res::new(&res).unwrap());
    assert_eq!(r.as_str(), expected);

    // Without qop: MD5(H(A1):nonce:H(A2)).
    let no_qop = DigestInput { qop: None, ..input };
    assert_eq!(
        aka_response(&no_qop, &Res::new(&res).unwrap()).as_str(),
        md5_hex(format!("{ha1}:{nonce}:{ha2}").as_bytes())
    );
}

#[test]
fn auts_request_uses_empty_password() {
    // RFC 3310 3.4: the request carrying auts computes `response` with an empty password.
    // IMS-AKA-NOTES [derived]: da492ad7b08bb89514f214f8c2fdb82b; recomputed here.
    let nonce = set1_nonce().encode();
    let ha1 = md5_hex(format!("{USER}:{REALM}:").as_bytes());
    let ha2 = md5_hex(format!("REGISTER:{URI}").as_bytes());
    let expected = md5_hex(format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}").as_bytes());
    assert_eq!(expected, "da492ad7b08bb89514f214f8c2fdb82b");

    let auts = Auts::from_bytes(
        hex::decode("ba853f3c123ccf44e93596e355c6")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    assert_eq!(encode_auts(&auts), "uoU/PBI8z0TpNZbjVcY=");
    let header = format!(
        "Digest username=\"{USER}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
         response=\"{expected}\", algorithm=AKAv1-MD5, qop=auth, nc=00000001, \
         cnonce=\"0a4f113b\", auts=\"uoU/PBI8z0TpNZbjVcY=\""
    );
    let creds = DigestCredentials::parse(&header).unwrap();
    assert!(creds.verify("REGISTER", AUTS_PASSWORD));
    assert!(!creds.verify("REGISTER", &hex::decode(RES).unwrap()));
    assert_eq!(decode_auts(creds.auts.as_deref().unwrap()), Ok(auts));
}

#[test]
fn nonce_decode_errors_and_unpadded() {
    let n = set1_nonce();
    assert_eq!(
        AkaNonce::decode("I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M"),
        Ok(n.clone())
    );
    assert_eq!(
        AkaNonce::decode("I1U8vpY3qJ0h*uZN"),
        Err(AkaNonceError::BadBase64)
    );
    // 31 bytes: one short of RAND||AUTN.
    let short = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode([0u8; 31])
    };
    assert_eq!(AkaNonce::decode(&short), Err(AkaNonceError::TooShort(31)));
    assert_eq!(AkaNonce::decode(""), Err(AkaNonceError::TooShort(0)));
}

#[test]
fn challenge_render_parse_round_trip() {
    let c = DigestChallenge {
        realm: REALM.into(),
        nonce: set1_nonce().encode(),
        algorithm: Some(ALGORITHM_AKAV1_MD5.into()),
        qop: Some("auth".into()),
        opaque: None,
        stale: false,
    };
    let text = c.render().unwrap();
    assert_eq!(
        text,
        "Digest realm=\"ims.mnc001.mcc001.3gppnetwork.org\", \
         nonce=\"I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=\", algorithm=AKAv1-MD5, qop=\"auth\""
    );
    assert_eq!(DigestChallenge::parse(&text), Ok(c.clone()));
    let bad = DigestChallenge {
        realm: "a\r\nb".into(),
        ..c
    };
    assert_eq!(bad.render(), Err(DigestParseError::InvalidValue("value")));
}

#[test]
fn real_ims_authorization_header_parses() {
    // Shape of a protected REGISTER's Authorization as Boghe/Open IMS send it
    // (integrity-protected added by the P-CSCF, TS 24.229).
    let v = "Digest username=\"alice@open-ims.test\",realm=\"open-ims.test\",\
             nonce=\"I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=\",uri=\"sip:open-ims.test\",\
             response=\"402ab8df9f3a4d63a9f47c2f90e02938\",algorithm=AKAv1-MD5,\
             cnonce=\"0a4f113b\",qop=auth,nc=00000001,integrity-protected=yes";
    let c = DigestCredentials::parse(v).unwrap();
    assert_eq!(c.username, "alice@open-ims.test");
    assert_eq!(c.integrity_protected.as_deref(), Some("yes"));
    assert_eq!(c.algorithm.as_deref(), Some("AKAv1-MD5"));
    let again = DigestCredentials::parse(&c.render().unwrap()).unwrap();
    assert_eq!(again, c);
}
