//! AKA end to end, network and UE both in-process: challenge -> UE response -> network
//! verification, a synchronisation failure ending in AUTS -> resync -> fresh challenge ->
//! success, and a MAC failure.

use akagate_proto::suite::{AuthAlg, EncrAlg};
use akagate_slowpath::aka::{
    aka_response, derive_suite, AkaFailure, AkaNonce, AuthVector, DigestChallenge,
    DigestCredentials, DigestInput, Milenage, QopAuth, SqnArray, SqnGenerator, SqnPolicy,
    SqnReject, Usim, ALGORITHM_AKAV1_MD5, AUTS_PASSWORD,
};

// TS 35.208 Test Set 3 keys (any set works; a different one from the unit tests).
const K: &str = "fec86ba6eb707ed08905757b1bb44b8f";
const OPC: &str = "1006020f0a478bf6b699f15c062e42b3";
const REALM: &str = "ims.mnc001.mcc001.3gppnetwork.org";
const USER: &str = "001010000000003@ims.mnc001.mcc001.3gppnetwork.org";
const URI: &str = "sip:ims.mnc001.mcc001.3gppnetwork.org";

fn milenage() -> Milenage {
    let k: [u8; 16] = hex::decode(K).unwrap().try_into().unwrap();
    let opc: [u8; 16] = hex::decode(OPC).unwrap().try_into().unwrap();
    Milenage::new(&k, &opc)
}

fn rand(n: u8) -> [u8; 16] {
    core::array::from_fn(|i| n.wrapping_mul(31).wrapping_add(i as u8))
}

/// Network: the 401's WWW-Authenticate value for a vector.
fn challenge(av: &AuthVector) -> String {
    DigestChallenge {
        realm: REALM.into(),
        nonce: AkaNonce {
            rand: av.rand,
            autn: av.autn,
            server_data: Vec::new(),
        }
        .encode(),
        algorithm: Some(ALGORITHM_AKAV1_MD5.into()),
        qop: Some("auth".into()),
        opaque: None,
        stale: false,
    }
    .render()
    .unwrap()
}

/// UE: parse the challenge, run the USIM, build the Authorization value.
fn ue_answer(usim: &mut Usim, www_authenticate: &str) -> (Result<(), AkaFailure>, String) {
    let c = DigestChallenge::parse(www_authenticate).unwrap();
    assert!(c.offers_qop_auth());
    let nonce = AkaNonce::decode(&c.nonce).unwrap();
    let qop = QopAuth {
        nc: "00000001",
        cnonce: "6b8b4567",
    };
    let input = DigestInput {
        username: USER,
        realm: &c.realm,
        method: "REGISTER",
        uri: URI,
        nonce: &c.nonce,
        qop: Some(qop),
    };
    let (outcome, response, auts) = match usim.authenticate(&nonce.rand, &nonce.autn) {
        Ok(ok) => (
            Ok(()),
            aka_response(&input, &ok.res).as_str().to_owned(),
            None,
        ),
        Err(e @ AkaFailure::SyncFailure { auts, .. }) => (
            Err(e),
            akagate_slowpath::aka::digest_response(&input, AUTS_PASSWORD)
                .as_str()
                .to_owned(),
            Some(akagate_slowpath::aka::encode_auts(&auts)),
        ),
        // TS 33.102 6.3.3: a MAC failure is reported without a response value.
        Err(e @ AkaFailure::MacFailure) => (Err(e), String::new(), None),
    };
    let creds = DigestCredentials {
        username: USER.into(),
        realm: c.realm.clone(),
        nonce: c.nonce.clone(),
        uri: URI.into(),
        response,
        algorithm: c.algorithm.clone(),
        qop: Some("auth".into()),
        nc: Some(qop.nc.into()),
        cnonce: Some(qop.cnonce.into()),
        opaque: None,
        auts,
        integrity_protected: None,
    };
    (outcome, creds.render().unwrap())
}

#[test]
fn challenge_response_verification_and_keys_agree() {
    let policy = SqnPolicy::default();
    let mut hss = SqnGenerator::new(policy, 0).unwrap();
    let mut usim = Usim::new(milenage(), SqnArray::new(policy));
    let m = milenage();
    for n in 0..40 {
        let sqn = hss.next_sqn().unwrap();
        let av = AuthVector::generate(&m, rand(n), sqn, [0x80, 0x00]);
        let (outcome, authorization) = ue_answer(&mut usim, &challenge(&av));
        outcome.unwrap();
        let creds = DigestCredentials::parse(&authorization).unwrap();
        assert!(creds.verify("REGISTER", av.xres.as_bytes()), "round {n}");
        assert!(!creds.verify("INVITE", av.xres.as_bytes()));
        // Replaying the same challenge is refused as stale: SQN already used.
        let (outcome, _) = ue_answer(&mut usim, &challenge(&av));
        assert!(matches!(
            outcome,
            Err(AkaFailure::SyncFailure {
                reason: SqnReject::NotFresh,
                ..
            })
        ));
    }
    // Both ends derive the same ESP keys from their CK/IK.
    let sqn = hss.next_sqn().unwrap();
    let av = AuthVector::generate(&m, rand(99), sqn, [0x80, 0x00]);
    let ue = usim.authenticate(&av.rand, &av.autn).unwrap();
    let net = derive_suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc, &av.ck, &av.ik).unwrap();
    let ue_s = derive_suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc, &ue.ck, &ue.ik).unwrap();
    assert_eq!(net.keys.integ_key, ue_s.keys.integ_key);
    assert_eq!(net.keys.encr_key, ue_s.keys.encr_key);
}

#[test]
fn sync_failure_auts_resync_fresh_challenge_success() {
    let policy = SqnPolicy::default();
    let m = milenage();
    // The UE has already accepted SEQ 1..=1000 with IND cycling (TS 33.102 C.3.2), so every
    // SEQ_MS(i) is in 969..=1000; the network lost its state and restarts at SEQ 0, so its
    // next SQN is stale for whatever IND it carries.
    let mut ue_sqn = SqnArray::new(policy);
    for seq in 1..=1000u64 {
        ue_sqn
            .accept(policy.join(seq, (seq % 32) as usize).unwrap())
            .unwrap();
    }
    let mut usim = Usim::new(milenage(), ue_sqn);
    let mut hss = SqnGenerator::new(policy, 0).unwrap();

    let av = AuthVector::generate(&m, rand(1), hss.next_sqn().unwrap(), [0x80, 0x00]);
    let (outcome, authorization) = ue_answer(&mut usim, &challenge(&av));
    assert!(matches!(
        outcome,
        Err(AkaFailure::SyncFailure {
            reason: SqnReject::NotFresh,
            ..
        })
    ));

    // Network: the request carries auts and a response made with the empty password.
    let creds = DigestCredentials::parse(&authorization).unwrap();
    assert!(creds.verify("REGISTER", AUTS_PASSWORD));
    let auts = akagate_slowpath::aka::decode_auts(creds.auts.as_deref().unwrap()).unwrap();
    let nonce = AkaNonce::decode(&creds.nonce).unwrap();
    let sqn_ms = auts.resync(&m, &nonce.rand).unwrap();
    assert_eq!(policy.split(sqn_ms), (1000, 1000 % 32));
    hss.resync(sqn_ms);
    assert_eq!(hss.seq_he(), 1000);

    // A fresh challenge now succeeds.
    let av = AuthVector::generate(&m, rand(2), hss.next_sqn().unwrap(), [0x80, 0x00]);
    let (outcome, authorization) = ue_answer(&mut usim, &challenge(&av));
    outcome.unwrap();
    let creds = DigestCredentials::parse(&authorization).unwrap();
    assert!(creds.auts.is_none());
    assert!(creds.verify("REGISTER", av.xres.as_bytes()));

    // AUTS from another subscriber's keys does not verify at this HSS.
    let other = Milenage::new(&[1; 16], &[2; 16]);
    assert!(auts.resync(&other, &nonce.rand).is_err());
}

#[test]
fn age_limit_l_rejects_an_old_seq_on_an_unused_ind() {
    // Without L, SEQ 1 on an IND the UE never used is fresh (C.2.2 array semantics); with
    // L = 32 it is too old next to SEQ_MS = 1000 and ends in AUTS.
    let m = milenage();
    let av = AuthVector::generate(
        &m,
        rand(5),
        SqnPolicy::default().join(1, 0).unwrap(),
        [0x80, 0],
    );
    for (policy, expect_ok) in [
        (SqnPolicy::default(), true),
        (SqnPolicy::default().with_l(Some(32)), false),
    ] {
        let mut ue_sqn = SqnArray::new(policy);
        ue_sqn.accept(policy.join(1000, 7).unwrap()).unwrap();
        let mut usim = Usim::new(milenage(), ue_sqn);
        match usim.authenticate(&av.rand, &av.autn) {
            Ok(_) => assert!(expect_ok),
            Err(AkaFailure::SyncFailure { auts, reason }) => {
                assert!(!expect_ok);
                assert_eq!(reason, SqnReject::TooOld);
                assert_eq!(policy.split(auts.resync(&m, &av.rand).unwrap()), (1000, 7));
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

#[test]
fn mac_failure() {
    let policy = SqnPolicy::default();
    let mut usim = Usim::new(milenage(), SqnArray::new(policy));
    let mut hss = SqnGenerator::new(policy, 0).unwrap();
    // A network with different keys (a false base station / wrong OPc).
    let wrong = Milenage::new(&[0x42; 16], &[0x24; 16]);
    let av = AuthVector::generate(&wrong, rand(3), hss.next_sqn().unwrap(), [0x80, 0x00]);
    let (outcome, authorization) = ue_answer(&mut usim, &challenge(&av));
    assert_eq!(outcome, Err(AkaFailure::MacFailure));
    assert_eq!(
        DigestCredentials::parse(&authorization).unwrap().response,
        ""
    );
    // Tampered AUTN (AMF bit flipped) under the right keys: also a MAC failure, and the UE's
    // SQN state is untouched.
    let m = milenage();
    let mut av = AuthVector::generate(&m, rand(4), hss.next_sqn().unwrap(), [0x80, 0x00]);
    let mut autn = *av.autn.as_bytes();
    autn[6] ^= 0x01;
    av.autn = akagate_slowpath::aka::Autn::from_bytes(autn);
    assert_eq!(
        usim.authenticate(&av.rand, &av.autn).unwrap_err(),
        AkaFailure::MacFailure
    );
    assert!(usim.sqn_array().entries().iter().all(|&s| s == 0));
}
