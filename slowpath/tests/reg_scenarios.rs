//! Message-level IMS-AKA registration scenarios against the sans-IO core: real-phone
//! REGISTERs, 401 + Security-Server + SA install, protected REGISTER, 403, AUTS resync,
//! re-registration, de-registration ordering, 421/494 and unprotected-request refusal.

mod reg_common;

use akagate_proto::ipc::{SaSet, WorkerCommand};
use akagate_proto::suite::{AuthAlg, EncrAlg};
use akagate_slowpath::aka::{Milenage, SqnArray, SqnPolicy, Usim};
use reg_common::*;

#[test]
fn real_phone_register_gets_401_with_security_server_and_sa_set() {
    let mut t = Testbed::new();
    let flow = t.ue_flow(cmcc_ip(), 8904, 5060);
    let out = t.sip(flow, None, FIXTURE_02);
    assert_eq!(out.len(), 2, "{out:?}");
    let set = installed(&out[0]);
    let (sent_flow, r401) = sent(&out[1]);
    assert_eq!(sent_flow, flow);
    assert!(r401.starts_with("SIP/2.0 401 Unauthorized\r\n"));
    // Our SPIs come from the allocator (4096, 4097), ports from the profile; the UE's from
    // its Security-Client; the profile prefers aes-cbc with hmac-sha-1-96 among six offers.
    assert_eq!(
        header(&r401, "Security-Server").as_deref(),
        Some("ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=4096;spi-s=4097;port-c=5100;port-s=6100;q=0.1")
    );
    assert_eq!(
        (set.spi_pc, set.spi_ps, set.port_pc, set.port_ps),
        (4096, 4097, 5100, 6100)
    );
    assert_eq!(
        (set.spi_uc, set.spi_us, set.port_uc, set.port_us),
        (1028536224, 455113919, 8034, 8904)
    );
    assert_eq!(
        (set.suite.auth, set.suite.encr),
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc)
    );
    // TS 35.208 set 1 CK/IK -> TS 33.203 Annex I keys (IMS-AKA worked example).
    assert_eq!(
        hex::encode(&set.suite.keys.integ_key),
        "f769bcd751044604127672711c6d344100000000"
    );
    assert_eq!(
        hex::encode(&set.suite.keys.encr_key),
        "b40ba9a3c58b2a05bbf0d987b21bf8cb"
    );
    // nonce = base64(RAND || AUTN) with TS 35.208 set 1 RAND and an AUTN the USIM accepts.
    let www = header(&r401, "WWW-Authenticate").unwrap();
    let nonce = param(&www, "nonce").unwrap();
    assert_eq!(
        www,
        format!("Digest realm=\"ims.mnc002.mcc460.3gppnetwork.org\", nonce=\"{nonce}\", algorithm=AKAv1-MD5, qop=\"auth\"")
    );
    let mut usim = set1_usim();
    let ok = ue_authenticate(&mut usim, &nonce).expect("USIM accepts AUTN");
    assert_eq!(hex::encode(ok.res.as_bytes()), "a54211d5e3ba50bf");
    assert_eq!(
        header(&r401, "Call-ID").as_deref(),
        Some("1769466687_2327919096@2409:8800:8a03:3f8f:ab28:5799:cd69:d1e8")
    );
}

#[test]
fn boghe_register_single_offer_null_encryption() {
    let mut t = Testbed::new();
    let flow = t.ue_flow("192.168.200.100".parse().unwrap(), 63373, 5060);
    let out = t.sip(flow, None, FIXTURE_01);
    let set = installed(&out[0]);
    assert_eq!(
        (set.suite.auth, set.suite.encr),
        (AuthAlg::HmacSha1_96, EncrAlg::Null)
    );
    assert!(set.suite.keys.encr_key.is_empty());
    assert_eq!(
        (set.spi_uc, set.spi_us, set.port_uc, set.port_us),
        (51018934, 2732688522, 63375, 63374)
    );
    let (_, r) = sent(&out[1]);
    assert!(header(&r, "WWW-Authenticate")
        .unwrap()
        .starts_with("Digest realm=\"open-ims.test\", nonce=\""));
}

#[test]
fn full_registration_then_deregistration_ordering() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, r200) = ue.register(&mut t);
    let ue = ue.with_server(&set);
    assert!(r200.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(
        header(&r200, "Path").as_deref(),
        Some("<sip:term@pcscf.ims.mnc001.mcc001.3gppnetwork.org;lr>")
    );
    assert_eq!(
        header(&r200, "Service-Route").as_deref(),
        Some("<sip:orig@pcscf.ims.mnc001.mcc001.3gppnetwork.org;lr>")
    );
    assert_eq!(
        header(&r200, "P-Associated-URI").as_deref(),
        Some("<sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>, <tel:+15550001>")
    );
    assert_eq!(header(&r200, "Expires").as_deref(), Some("600"));
    assert_eq!(t.core.registered(), 1);

    // De-REGISTER over the SA: the 200 leaves through the SAs before they are removed.
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &ue.dereg(&set));
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, ue.protected_flow(&set));
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(header(&r, "Expires").as_deref(), Some("0"));
    assert!(
        matches!(out[1], WorkerCommand::RemoveSaSet { spi_pc, spi_ps, .. } if spi_pc == set.spi_pc && spi_ps == set.spi_ps)
    );
    assert_eq!(t.core.registered(), 0);
    assert_eq!(t.released(), vec![set.spi_pc, set.spi_ps]);
}

#[test]
fn wrong_res_gets_403_and_sas_removed() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, nonce) = ue.initial(&mut t);
    let mut bad = [0u8; 8];
    bad.copy_from_slice(&hex::decode("a54211d5e3ba50be").unwrap());
    let req = ue.protected_register(&set, &nonce, &bad, None);
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &req);
    let (_, r) = sent(&out[0]);
    assert!(r.starts_with("SIP/2.0 403 "));
    assert!(matches!(out[1], WorkerCommand::RemoveSaSet { spi_ps, .. } if spi_ps == set.spi_ps));
    assert_eq!(out.len(), 2);
    assert_eq!(t.core.registered(), 0);
}

#[test]
fn security_verify_mismatch_is_refused() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, nonce) = ue.initial(&mut t);
    let res = set1_usim_res(&nonce);
    // Bidding down: the UE echoes ealg=null instead of aes-cbc.
    let sv = ue.security_server.replace("ealg=aes-cbc", "ealg=null");
    let req = ue.protected_register(&set, &nonce, &res, Some(&sv));
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &req);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "));
    // Case, spaces and order of Security-Verify do not matter.
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, nonce) = ue.initial(&mut t);
    let res = set1_usim_res(&nonce);
    let sv = format!(
        "IPSEC-3GPP; q=0.1; port-s=6100; port-c=5100; spi-s={}; spi-c={}; mod=trans; prot=ESP; ealg=aes-cbc; alg=hmac-sha-1-96",
        set.spi_ps, set.spi_pc
    );
    let out = t.sip(
        ue.protected_flow(&set),
        Some(set.spi_ps),
        &ue.protected_register(&set, &nonce, &res, Some(&sv)),
    );
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"));
}

#[test]
fn protected_register_must_arrive_over_the_new_sa() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, nonce) = ue.initial(&mut t);
    let res = set1_usim_res(&nonce);
    // Same content, but unprotected (on port 6100 without ESP): refused, SAs of the attempt removed.
    let out = t.sip(
        ue.protected_flow(&set),
        None,
        &ue.protected_register(&set, &nonce, &res, None),
    );
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "));
    assert!(matches!(out[1], WorkerCommand::RemoveSaSet { .. }));
}

#[test]
fn auts_resynchronises_and_leaves_one_pending_set() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set1, nonce1) = ue.initial(&mut t);
    // A USIM that has already seen SEQ 1000 on every IND rejects the HSS's SQN.
    let m = Milenage::new(&hx16(SET1_K), &hx16(SET1_OPC));
    let mut usim = Usim::new(
        m,
        SqnArray::restore(SqnPolicy::default(), &[1000; 32]).unwrap(),
    );
    let auts = match ue_authenticate(&mut usim, &nonce1) {
        Err(akagate_slowpath::aka::AkaFailure::SyncFailure { auts, .. }) => auts,
        other => panic!("expected sync failure, got {other:?}"),
    };
    let req = ue.auts_register(&nonce1, &akagate_slowpath::aka::encode_auts(&auts));
    let out = t.sip(ue.unprotected_flow(), None, &req);
    // New set installed, new 401, then the previous pending set removed: one pending set.
    assert_eq!(out.len(), 3, "{out:?}");
    let set2 = installed(&out[0]);
    let (_, r) = sent(&out[1]);
    assert!(r.starts_with("SIP/2.0 401 "));
    assert!(matches!(out[2], WorkerCommand::RemoveSaSet { spi_ps, .. } if spi_ps == set1.spi_ps));
    assert_ne!(set2.spi_ps, set1.spi_ps);
    let nonce2 = param(&header(&r, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let ok = ue_authenticate(&mut usim, &nonce2).expect("fresh SQN after resync");
    let ue2 = ue.with_server(&set2);
    let res: [u8; 8] = ok.res.as_bytes().try_into().unwrap();
    let out = t.sip(
        ue2.protected_flow(&set2),
        Some(set2.spi_ps),
        &ue2.protected_register(&set2, &nonce2, &res, None),
    );
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"));
}

#[test]
fn reregistration_negotiates_new_set_and_retires_old_on_use() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (old, _) = ue.register(&mut t);
    let ue = ue.with_server(&old);
    // Refresh over the old SA with a new Security-Client (new UE ports and SPIs).
    let ue_b = ue.with_ports(7100);
    let req = ue_b.refresh(&old, &ue.security_server);
    let out = t.sip(ue.protected_flow(&old), Some(old.spi_ps), &req);
    let new = installed(&out[0]);
    let (f, r) = sent(&out[1]);
    assert_eq!(f, ue.protected_flow(&old), "401 goes back over the old SA");
    assert!(r.starts_with("SIP/2.0 401 "));
    assert_ne!((new.spi_pc, new.spi_ps), (old.spi_pc, old.spi_ps));
    assert_eq!((new.port_uc, new.port_us), (7100, 7101));
    let nonce = param(&header(&r, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let res = set1_usim_res(&nonce);
    let ue_b = ue_b.with_server(&new);
    let out = t.sip(
        ue_b.protected_flow(&new),
        Some(new.spi_ps),
        &ue_b.protected_register(&new, &nonce, &res, None),
    );
    // The old set is still there after the 200 ...
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"));
    // ... and goes when the new set carries traffic.
    let opt = ue_b.options(&new);
    let out = t.sip(ue_b.protected_flow(&new), Some(new.spi_ps), &opt);
    assert!(out
        .iter()
        .any(|c| matches!(c, WorkerCommand::RemoveSaSet { spi_ps, .. } if *spi_ps == old.spi_ps)));
}

#[test]
fn missing_sec_agree_gets_421_or_494() {
    let mut t = Testbed::new();
    let flow = t.ue_flow("10.0.0.9".parse().unwrap(), 5555, 5060);
    let plain = FIXTURE_01
        .lines()
        .filter(|l| {
            !l.starts_with("Security-Client")
                && !l.starts_with("Require")
                && !l.starts_with("Proxy-Require")
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let out = t.sip(flow, None, &plain);
    let (_, r) = sent(&out[0]);
    assert!(r.starts_with("SIP/2.0 421 "), "{r}");
    assert_eq!(header(&r, "Require").as_deref(), Some("sec-agree"));
    assert!(header(&r, "Security-Server")
        .unwrap()
        .starts_with("ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;q=0.1"));
    let tagged = plain.replace("Supported: path", "Supported: path, sec-agree");
    let out = t.sip(flow, None, &tagged);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 494 "));
    assert_eq!(out.len(), 1, "no SA for a refused REGISTER");
}

#[test]
fn unprotected_requests_and_foreign_sas_are_refused() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, _) = ue.register(&mut t);
    let opt = ue.options(&set);
    let out = t.sip(ue.unprotected_flow(), None, &opt);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "));
    // A REGISTER of subscriber 1 arriving through a SPI nobody owns.
    let out = t.sip(ue.protected_flow(&set), Some(999_999), &ue.dereg(&set));
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "));
    assert_eq!(t.core.registered(), 1);
}

#[test]
fn expiry_removes_binding_and_sas() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, _) = ue.register(&mut t);
    let deadline = t.core.poll_timeout().unwrap();
    assert_eq!(deadline, t.now + std::time::Duration::from_secs(600));
    assert!(t
        .core
        .handle_timeout(deadline - std::time::Duration::from_secs(1))
        .is_empty());
    let out = t.core.handle_timeout(deadline);
    assert!(matches!(out[..], [WorkerCommand::RemoveSaSet { spi_ps, .. }] if spi_ps == set.spi_ps));
    assert_eq!(t.core.registered(), 0);
    assert_eq!(t.core.poll_timeout(), None);
}

#[test]
fn garbage_never_panics() {
    let mut t = Testbed::new();
    let flow = t.ue_flow("10.0.0.9".parse().unwrap(), 5555, 5060);
    let base = FIXTURE_02.as_bytes();
    for cut in (0..base.len()).step_by(7) {
        let _ = t.raw(flow, None, base[..cut].to_vec());
        let mut b = base.to_vec();
        b[cut] ^= 0x5a;
        let _ = t.raw(flow, Some(4097), b);
    }
}

fn _assert_set(_: &SaSet) {}

/// RFC 3581 4 / RFC 3261 18.2.1: a REGISTER whose Via asks for `rport` gets `received` and
/// `rport` in the top Via of the 401 and of the 200, each with the source of that request
/// (the initial REGISTER from port_uc unprotected, the second one from the SA's port_uc).
#[test]
fn rport_register_answers_note_received_and_rport() {
    let mut t = Testbed::new();
    let mut ue = Ue::new(&mut t, 0, 7000);
    ue.rport = true;
    let out = t.sip(ue.unprotected_flow(), None, &ue.initial_register());
    let (_, r401) = sent(&out[1]);
    assert!(r401.starts_with("SIP/2.0 401 "), "{r401}");
    let flow = ue.unprotected_flow();
    assert_eq!(
        headers(&r401, "Via"),
        [format!(
            "SIP/2.0/TCP 10.0.1.1:{};branch=z9hG4bKreg1;received=10.0.1.1;rport={}",
            flow.ue_port, flow.ue_port
        )]
    );
    let set = installed(&out[0]);
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let out = ue.answer_challenge(&mut t, &set, &nonce);
    let (_, r200) = sent(&out[0]);
    assert!(r200.starts_with("SIP/2.0 200 OK\r\n"), "{r200}");
    let port = ue.with_server(&set).protected_flow(&set).ue_port;
    let via = headers(&r200, "Via");
    assert_eq!(via.len(), 1, "{via:?}");
    assert!(
        via[0].ends_with(&format!(";received=10.0.1.1;rport={port}")),
        "{via:?}"
    );
}
