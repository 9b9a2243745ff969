//! Strangers cannot tell which IMPIs exist (issue 14): a REGISTER for an IMPI the HSS does not
//! know gets the answers a real one gets — a 401 with the same headers, 421 without sec-agree,
//! 403 for an answer outside the SAs — while nothing is spent on it: no SA set, no SQN, no
//! SPI held, no registration kept.

mod reg_common;

use akagate_proto::ipc::{Flow, WorkerCommand};
use reg_common::*;

/// A UE whose IMPI is not provisioned.
fn stranger(t: &mut Testbed) -> Ue {
    Ue {
        imsi: "001019999999999".into(),
        ..Ue::new(t, 9, 5090)
    }
}

/// The names of a header's `;`/`,` parameters, in order (what a stranger could compare).
fn param_names(v: &str) -> Vec<String> {
    v.split([';', ','])
        .filter_map(|p| p.split_once('=').map(|(n, _)| n.trim().to_string()))
        .collect()
}

#[test]
fn an_unknown_impi_is_challenged_like_a_real_one_and_nothing_is_spent() {
    let mut t = Testbed::new();
    let real = Ue::new(&mut t, 0, 5080);
    let out = t.sip(real.unprotected_flow(), None, &real.initial_register());
    assert_eq!(out.len(), 2, "SA set + 401: {out:?}");
    let (_, real_401) = sent(&out[1]);

    let who = stranger(&mut t);
    let out = t.sip(who.unprotected_flow(), None, &who.initial_register());
    assert_eq!(out.len(), 1, "only the 401, no SA set: {out:?}");
    let (flow, fake_401) = sent(&out[0]);
    assert_eq!(flow, who.unprotected_flow());
    assert!(
        fake_401.starts_with("SIP/2.0 401 Unauthorized\r\n"),
        "{fake_401}"
    );
    for name in ["WWW-Authenticate", "Security-Server"] {
        let (a, b) = (
            header(&real_401, name).unwrap(),
            header(&fake_401, name).unwrap(),
        );
        assert_eq!(param_names(&a), param_names(&b), "{name}: {a} vs {b}");
    }
    let www = header(&fake_401, "WWW-Authenticate").unwrap();
    let nonce = param(&www, "nonce").unwrap();
    assert_eq!(nonce.len(), 44, "base64 of RAND || AUTN: {nonce}");
    // Its SPIs were issued like real ones and given back at once.
    let server = header(&fake_401, "Security-Server").unwrap();
    let spi_c: u32 = semi_param(&server, "spi-c").unwrap().parse().unwrap();
    let spi_s: u32 = semi_param(&server, "spi-s").unwrap().parse().unwrap();
    assert_eq!(t.released(), vec![spi_c, spi_s]);
    let stats = t.core.stats();
    assert_eq!(stats.decoy_challenges, 1);
    assert!(t
        .core
        .registrations_view(t.now)
        .iter()
        .all(|r| r.impi != who.impi()));
}

#[test]
fn an_answer_to_a_decoy_outside_the_sas_gets_403_as_a_real_one_does() {
    let mut t = Testbed::new();
    // The real IMPI: answering the challenge outside its SAs is refused (TS 33.203 6.1).
    let real = Ue::new(&mut t, 0, 5080);
    let out = t.sip(real.unprotected_flow(), None, &real.initial_register());
    let nonce = param(
        &header(&sent(&out[1]).1, "WWW-Authenticate").unwrap(),
        "nonce",
    )
    .unwrap();
    let out = t.sip(
        real.unprotected_flow(),
        None,
        &real.auts_register(&nonce, "AAAA"),
    );
    let real_answer = sent(out.iter().find(|c| sent_opt(c)).unwrap()).1;

    let who = stranger(&mut t);
    let out = t.sip(who.unprotected_flow(), None, &who.initial_register());
    let nonce = param(
        &header(&sent(&out[0]).1, "WWW-Authenticate").unwrap(),
        "nonce",
    )
    .unwrap();
    let out = t.sip(
        who.unprotected_flow(),
        None,
        &who.auts_register(&nonce, "AAAA"),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let (_, r) = sent(&out[0]);
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    assert_eq!(
        real_answer.lines().next(),
        r.lines().next(),
        "the same status line"
    );

    // A nonce that is not ours (or is another IMPI's) is simply challenged again.
    let other = who.auts_register("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "AAAA");
    let out = t.sip(who.unprotected_flow(), None, &other);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 401 "), "{out:?}");
}

#[test]
fn an_unknown_impi_without_security_client_gets_the_same_refusal_as_a_real_one() {
    let mut t = Testbed::new();
    let strip = |r: String| {
        r.split("\r\n")
            .filter(|l| !l.starts_with("Security-Client:"))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let mut status = Vec::new();
    for ue in [Ue::new(&mut t, 0, 5080), stranger(&mut t)] {
        let out = t.sip(ue.unprotected_flow(), None, &strip(ue.initial_register()));
        assert_eq!(out.len(), 1);
        let (_, r) = sent(&out[0]);
        status.push(r.lines().next().unwrap().to_string());
    }
    // RFC 3329 2.3.1: sec-agree in Require but no Security-Client -> 494.
    assert!(status[0].starts_with("SIP/2.0 494 "), "{status:?}");
    assert_eq!(status[0], status[1]);
}

/// True for a Send command.
fn sent_opt(c: &WorkerCommand) -> bool {
    matches!(c, WorkerCommand::Send { .. })
}

/// `stranger`'s initial REGISTER as an emergency registration (`sos` in the Contact).
fn emergency_register(ue: &Ue) -> String {
    ue.initial_register().replace(
        ";transport=tcp>;expires=600",
        ";transport=tcp;sos>;expires=600",
    )
}

#[test]
fn emergency_registration_of_an_unknown_subscriber_where_allowed() {
    // Not allowed (the default): the usual decoy challenge.
    let mut t = Testbed::new();
    let ue = stranger(&mut t);
    let out = t.sip(ue.unprotected_flow(), None, &emergency_register(&ue));
    assert!(
        sent(out.last().unwrap()).1.starts_with("SIP/2.0 401 "),
        "{out:?}"
    );
    assert_eq!(t.core.registered(), 0);

    // Allowed: 200 at once, bound to its flow, no SAs.
    let mut t = Testbed::with_config(|c| c.emergency_without_auth = true);
    let ue = stranger(&mut t);
    let reg = emergency_register(&ue);
    assert!(reg.contains(";sos>"), "{reg}");
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    assert_eq!(out.len(), 1, "only the 200, no InstallSaSet: {out:?}");
    let (to, ok) = sent(&out[0]);
    assert_eq!(to, ue.unprotected_flow());
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
    assert_eq!(t.core.registered(), 1);
    assert_eq!(t.core.stats().emergency_registrations_unauthenticated, 1);
    // Only emergency sessions: an ordinary INVITE from its flow is refused...
    let invite = |ruri: &str, n: u32| {
        format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP {h}:{p};branch=z9hG4bKe{n}\r\nMax-Forwards: 70\r\nFrom: <{impu}>;tag=e{n}\r\nTo: <{ruri}>\r\nCall-ID: e{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            h = ue.host(),
            p = ue.unprotected_flow().ue_port,
            impu = ue.impu(),
        )
    };
    let out = t.sip(
        ue.unprotected_flow(),
        None,
        &invite("sip:someone@example.com", 1),
    );
    let r = sent(out.last().unwrap()).1;
    assert!(
        r.starts_with("SIP/2.0 403 Emergency Registration Only"),
        "{r}"
    );
    // ...an emergency one is not (embedded mode has no E-CSCF: 380, not 403).
    let out = t.sip(ue.unprotected_flow(), None, &invite("urn:service:sos", 2));
    let r = sent(out.last().unwrap()).1;
    assert!(r.starts_with("SIP/2.0 380 "), "{r}");
    // An ordinary REGISTER of the same stranger is still only a decoy challenge.
    let out = t.sip(
        Flow {
            ue_port: 5091,
            ..ue.unprotected_flow()
        },
        None,
        &ue.initial_register()
            .replace("branch=z9hG4bKreg1", "branch=z9hG4bKreg9"),
    );
    assert!(
        sent(out.last().unwrap()).1.starts_with("SIP/2.0 401 "),
        "{out:?}"
    );
}
