//! sec-agree choices a handset or OpenSIPS makes that the default test UE does not: the
//! `alg=null; ealg=aes-gcm` offer (TS 33.203 Annex H/I), and registration without sec-agree
//! when the profile's `sec-agree-required` is false.

mod reg_common;

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand, WorkerEvent};
use akagate_proto::suite::{AuthAlg, EncrAlg};
use reg_common::*;

/// The only offer, exactly as OpenSIPS and Rel-13+ handsets send AES-GCM.
fn gcm_null_offer(ue: &Ue) -> String {
    format!(
        "ipsec-3gpp; alg=null; ealg=aes-gcm; prot=esp; mod=trans; spi-c={}; spi-s={}; port-c={}; port-s={}",
        ue.spi_uc, ue.spi_us, ue.port_uc, ue.port_us
    )
}

#[test]
fn alg_null_aes_gcm_registers_with_annex_i_keys_and_echoed_security_server() {
    let mut t = Testbed::with_config(|c| {
        c.profile.encr_alg_list = vec![EncrAlg::AesGcm, EncrAlg::AesCbc];
    });
    let ue = Ue::new(&mut t, 0, 7000);
    let offer = gcm_null_offer(&ue);
    let initial = ue.initial_register().replace(&ue.security_client(), &offer);
    let out = t.sip(ue.unprotected_flow(), None, &initial);
    assert_eq!(out.len(), 2, "{out:?}");
    let set = installed(&out[0]);
    let (_, r401) = sent(&out[1]);
    assert!(r401.starts_with("SIP/2.0 401 "), "{r401}");
    // The Security-Server echoes what was offered: alg=null, ealg=aes-gcm.
    let server = header(&r401, "Security-Server").unwrap();
    assert_eq!(
        server,
        format!(
            "ipsec-3gpp;alg=null;ealg=aes-gcm;prot=esp;mod=trans;spi-c={};spi-s={};port-c=5100;port-s=6100;q=0.1",
            set.spi_pc, set.spi_ps
        )
    );
    assert_eq!(
        (set.suite.auth, set.suite.encr),
        (AuthAlg::Null, EncrAlg::AesGcm)
    );
    // TS 33.203 Annex I: CK_ESP = CK_IM (TS 35.208 set 1), the GCM salt from the TS 33.220
    // KDF (FC 0x59, "AES_GCM_SALT"; IMS-AKA-NOTES worked example), no integrity key.
    assert_eq!(
        hex::encode(&set.suite.keys.encr_key),
        "b40ba9a3c58b2a05bbf0d987b21bf8cb"
    );
    assert_eq!(hex::encode(set.suite.keys.salt), "89273db6");
    assert!(set.suite.keys.integ_key.is_empty());

    // The protected REGISTER echoes the Security-Server in Security-Verify: 200 OK.
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let res = set1_usim_res(&nonce);
    let me = Ue {
        security_server: server.clone(),
        ..ue.clone()
    };
    let reg2 = me
        .protected_register(&set, &nonce, &res, None)
        .replace(&ue.security_client(), &offer);
    let out = t.sip(me.protected_flow(&set), Some(set.spi_ps), &reg2);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK\r\n"), "{out:?}");
}

#[test]
fn alg_null_aes_gcm_security_verify_with_an_hmac_is_refused() {
    let mut t = Testbed::with_config(|c| {
        c.profile.encr_alg_list = vec![EncrAlg::AesGcm];
    });
    let ue = Ue::new(&mut t, 0, 7000);
    let offer = gcm_null_offer(&ue);
    let out = t.sip(
        ue.unprotected_flow(),
        None,
        &ue.initial_register().replace(&ue.security_client(), &offer),
    );
    let set = installed(&out[0]);
    let (_, r401) = sent(&out[1]);
    let server = header(&r401, "Security-Server").unwrap();
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    // A Security-Verify that names another alg than the one we sent is a bidding-down sign.
    let forged = server.replace("alg=null", "alg=hmac-sha-1-96");
    let reg2 = ue
        .protected_register(&set, &nonce, &set1_usim_res(&nonce), Some(&forged))
        .replace(&ue.security_client(), &offer);
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &reg2);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "), "{out:?}");
}

#[test]
fn alg_null_with_other_ealg_gets_494() {
    let mut t = Testbed::with_config(|c| {
        c.profile.encr_alg_list = vec![EncrAlg::AesGcm, EncrAlg::AesCbc, EncrAlg::Null];
    });
    let ue = Ue::new(&mut t, 0, 7000);
    for ealg in ["aes-cbc", "null"] {
        let offer = gcm_null_offer(&ue).replace("aes-gcm", ealg);
        let out = t.sip(
            ue.unprotected_flow(),
            None,
            &ue.initial_register().replace(&ue.security_client(), &offer),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            sent(&out[0]).1.starts_with("SIP/2.0 494 "),
            "ealg={ealg}: {out:?}"
        );
    }
}

/// The single message in `out` that starts with `start`, and its flow.
fn only(out: &[WorkerCommand], start: &str) -> (Flow, String) {
    let i = sends_starting(out, start);
    assert_eq!(i.len(), 1, "one {start:?} expected: {out:?}");
    sent(&out[i[0]])
}

/// `text` with every sec-agree trace removed: no Security-Client/Verify, no option tag.
fn without_sec_agree(text: &str) -> String {
    text.split("\r\n")
        .filter(|l| {
            !(l.starts_with("Security-Client:")
                || l.starts_with("Security-Verify:")
                || l.starts_with("Require: sec-agree")
                || l.starts_with("Proxy-Require: sec-agree"))
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        .replace("Supported: path, sec-agree", "Supported: path")
}

/// A UE without sec-agree sends its first REGISTER on its unprotected flow: the 401 has no
/// Security-Server and no set is installed. Returns the answering REGISTER (digest over the
/// nonce) and a throwaway set (of another subscriber) for the helpers that take one unused.
fn plain_challenge(t: &mut Testbed, ue: &Ue) -> (String, SaSet) {
    let flow = ue.unprotected_flow();
    let out = t.sip(flow, None, &without_sec_agree(&ue.initial_register()));
    assert_eq!(out.len(), 1, "only the 401, no InstallSaSet: {out:?}");
    let (to, r401) = sent(&out[0]);
    assert_eq!(to, flow);
    assert!(r401.starts_with("SIP/2.0 401 "), "{r401}");
    assert_eq!(header(&r401, "Security-Server"), None);
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let res = set1_usim_res(&nonce);
    let (dummy, _) = Ue::new(t, 2, 11000).initial(t);
    let reg2 = without_sec_agree(&ue.protected_register(&dummy, &nonce, &res, None));
    (reg2, dummy)
}

/// [`plain_challenge`], then the answer on the same flow gets 200 OK.
fn register_plain(t: &mut Testbed, ue: &Ue) -> SaSet {
    let flow = ue.unprotected_flow();
    let (reg2, dummy) = plain_challenge(t, ue);
    let out = t.sip(flow, None, &reg2);
    assert_eq!(out.len(), 1, "{out:?}");
    let (to, ok) = sent(&out[0]);
    assert_eq!(to, flow);
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
    dummy
}

fn no_sec_agree_testbed() -> Testbed {
    Testbed::with_config(|c| c.profile.sec_agree_required = false)
}

#[test]
fn sec_agree_required_true_still_gets_421_without_any_set() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let out = t.sip(
        ue.unprotected_flow(),
        None,
        &without_sec_agree(&ue.initial_register()),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 421 "), "{out:?}");
}

#[test]
fn sec_agree_not_required_registers_flow_bound_over_tcp_and_udp() {
    for proto in [Transport::Tcp, Transport::Udp] {
        let mut t = no_sec_agree_testbed();
        let ue = Ue::new(&mut t, 0, 7000).with_proto(proto);
        let dummy = register_plain(&mut t, &ue);
        // An OPTIONS on the registered flow is the UE's: it is proxied (not 403).
        let opts = without_sec_agree(&ue.options(&dummy));
        let out = t.sip(ue.unprotected_flow(), None, &opts);
        let answers: Vec<_> = out.iter().map(sent).map(|(_, m)| m).collect();
        assert!(!answers.is_empty(), "{proto:?}: {out:?}");
        assert!(
            answers.iter().all(|m| !m.starts_with("SIP/2.0 403")),
            "{proto:?}: {answers:?}"
        );
        // The same request from the UE's address on another port (another connection, or
        // another UDP source port) is not the registered flow: 403.
        let other = Flow {
            ue_port: 5090,
            ..ue.unprotected_flow()
        };
        let out = t.sip(
            other,
            None,
            &opts.replace("branch=z9hG4bKopt", "branch=z9hG4bKopt2"),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let (to, r) = sent(&out[0]);
        assert_eq!(to, other);
        assert!(r.starts_with("SIP/2.0 403 "), "{proto:?}: {r}");
    }
}

#[test]
fn sec_agree_not_required_answer_from_another_flow_is_refused() {
    let mut t = no_sec_agree_testbed();
    let ue = Ue::new(&mut t, 0, 7000);
    let (reg2, _) = plain_challenge(&mut t, &ue);
    let other = Flow {
        ue_port: 5090,
        ..ue.unprotected_flow()
    };
    let out = t.sip(other, None, &reg2);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "), "{out:?}");
}

#[test]
fn call_between_ipsec_ue_and_flow_bound_ue_both_ways() {
    for proto in [Transport::Tcp, Transport::Udp] {
        let mut t = no_sec_agree_testbed();
        let a = Ue::new(&mut t, 0, 7000).with_proto(proto);
        let (sa, _) = a.register(&mut t);
        let a = a.with_server(&sa);
        let b = Ue::new(&mut t, 1, 9000).with_proto(proto);
        register_plain(&mut t, &b);
        let b_flow = b.unprotected_flow();

        // IPsec UE -> flow-bound UE: the INVITE goes to b's registered flow, unprotected.
        let inv = invite_text(&a, &b.impu(), "z9hG4bKab1", 70, &sdp(&a));
        let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &inv);
        let (to, fwd) = only(&out, "INVITE ");
        assert_eq!(to, b_flow, "{proto:?}");
        // b answers on its flow; the 200 reaches a over its SA's flow.
        let out = t.sip(b_flow, None, &answer(&fwd, 200, "OK"));
        assert_eq!(
            only(&out, "SIP/2.0 200 ").0,
            a.protected_flow(&sa),
            "{proto:?}"
        );

        // Flow-bound UE -> IPsec UE: accepted from b's flow, sent to a's port_us.
        let b_inv = without_sec_agree(&invite_text(&b, &a.impu(), "z9hG4bKba1", 70, &sdp(&b)))
            .replace("call-z9hG4bKba1", "call-ba");
        let out = t.sip(b_flow, None, &b_inv);
        assert_eq!(
            only(&out, "INVITE ").0,
            client_flow(&a, &sa, proto),
            "{proto:?}"
        );
    }
}

#[test]
fn flow_bound_deregistration_removes_no_sa_and_closes_the_flow() {
    let mut t = no_sec_agree_testbed();
    let ue = Ue::new(&mut t, 0, 7000).with_proto(Transport::Udp);
    let dummy = register_plain(&mut t, &ue);
    let flow = ue.unprotected_flow();
    let out = t.sip(flow, None, &without_sec_agree(&ue.dereg(&dummy)));
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"), "{out:?}");
    assert!(
        !out.iter()
            .any(|c| matches!(c, WorkerCommand::RemoveSaSet { .. })),
        "a flow-bound registration has no SAs to remove: {out:?}"
    );
    // The flow no longer stands for anyone.
    let out = t.sip(flow, None, &without_sec_agree(&ue.options(&dummy)));
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "), "{out:?}");
}

#[test]
fn flow_bound_tcp_registration_ends_with_its_connection() {
    let mut t = no_sec_agree_testbed();
    let ue = Ue::new(&mut t, 0, 7000).with_proto(Transport::Tcp);
    register_plain(&mut t, &ue);
    assert_eq!(t.core.registered(), 1);
    // Another connection of the UE closing changes nothing.
    let other = Flow {
        ue_port: 5090,
        ..ue.unprotected_flow()
    };
    t.core.handle(WorkerEvent::TcpClosed(other), t.now);
    assert_eq!(t.core.registered(), 1);
    // Its own flow closing ends it: nothing can reach the UE there any more.
    let out = t
        .core
        .handle(WorkerEvent::TcpClosed(ue.unprotected_flow()), t.now);
    assert!(
        out.iter()
            .all(|c| !matches!(c, WorkerCommand::RemoveSaSet { .. })),
        "a flow-bound set has no SAs to remove: {out:?}"
    );
    assert_eq!(t.core.registered(), 0);
    let impi = ue.impi();
    assert!(t
        .core
        .registrations_view(t.now)
        .iter()
        .all(|r| r.impi != impi));
    assert_eq!(t.core.stats().flow_registrations_closed, 1);
}

#[test]
fn ipsec_registration_outlives_its_connections() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, _) = ue.register(&mut t);
    t.core
        .handle(WorkerEvent::TcpClosed(ue.protected_flow(&set)), t.now);
    t.core
        .handle(WorkerEvent::TcpClosed(ue.unprotected_flow()), t.now);
    assert_eq!(t.core.registered(), 1);
    assert_eq!(t.core.stats().flow_registrations_closed, 0);
}

/// The P-CSCF's SIP-over-TLS port in these tests (RFC 3261 26.2).
const TLS_PORT: u16 = 5061;

/// The UE's TLS connection to our TLS port.
fn tls_flow(ue: &Ue) -> Flow {
    Flow {
        local_port: TLS_PORT,
        proto: Transport::Tcp,
        ..ue.unprotected_flow()
    }
}

/// On a TLS connection, a UE offering `tls` (with or without IPsec offers) agrees on `tls`
/// (RFC 3329 2.2, 2.3.1): the 401 carries `Security-Server: tls;q=0.1` and installs no SAs;
/// the answer must echo it in `Security-Verify` and then binds the registration to that
/// connection; a request on another connection gets 403. sec-agree stays required.
#[test]
fn tls_mechanism_is_agreed_on_the_tls_port() {
    for verify in ["tls;q=0.1", "tls;q=0.5"] {
        let mut t = Testbed::with_config(|c| c.tls_port = Some(TLS_PORT));
        let ue = Ue::new(&mut t, 0, 7000);
        let (dummy, _) = Ue::new(&mut t, 2, 11000).initial(&mut t);
        let flow = tls_flow(&ue);
        let sc = ue.security_client();
        let offer = format!("{sc}, tls");
        let out = t.sip(flow, None, &ue.initial_register().replace(&sc, &offer));
        assert_eq!(out.len(), 1, "only the 401, no InstallSaSet: {out:?}");
        let (to, r401) = sent(&out[0]);
        assert_eq!(to, flow);
        assert!(r401.starts_with("SIP/2.0 401 "), "{r401}");
        assert_eq!(
            header(&r401, "Security-Server").as_deref(),
            Some("tls;q=0.1")
        );
        let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
        let res = set1_usim_res(&nonce);
        let reg2 = ue
            .protected_register(&dummy, &nonce, &res, Some(verify))
            .replace(&sc, &offer);
        let out = t.sip(flow, None, &reg2);
        let (to, answer) = sent(&out[0]);
        assert_eq!(to, flow);
        if verify != "tls;q=0.1" {
            // RFC 3329 2.3.1: Security-Verify must be the Security-Server sent.
            assert!(!answer.starts_with("SIP/2.0 200 "), "{answer}");
            continue;
        }
        assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
        // The registration is the connection's: a request on another one is refused.
        let opts = ue.options(&dummy);
        let other = Flow {
            ue_port: 5090,
            ..flow
        };
        let out = t.sip(other, None, &opts);
        assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "), "{out:?}");
        let out = t.sip(flow, None, &opts.replace("z9hG4bKopt", "z9hG4bKopt2"));
        assert!(
            out.iter()
                .map(sent)
                .all(|(_, m)| !m.starts_with("SIP/2.0 403")),
            "{out:?}"
        );
    }
}

/// `tls` is agreed only on the TLS port: offered alone on the clear SIP port it fits no
/// profile entry (494).
#[test]
fn tls_mechanism_outside_the_tls_port_is_refused() {
    let mut t = Testbed::with_config(|c| c.tls_port = Some(TLS_PORT));
    let ue = Ue::new(&mut t, 0, 7000);
    let sc = ue.security_client();
    let out = t.sip(
        ue.unprotected_flow(),
        None,
        &ue.initial_register().replace(&sc, "tls"),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 494 "), "{out:?}");
}
