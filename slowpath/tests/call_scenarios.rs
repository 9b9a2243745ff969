//! Message-level call scenarios: INVITE between registered UEs over the protected ports,
//! responses along Via, in-dialog ACK/BYE, 404/480, and the reg-event SUBSCRIBE/NOTIFY.

mod reg_common;

use akagate_proto::ipc::{Flow, SaSet, Transport};
use reg_common::*;

fn invite(from: &Ue, to_uri: &str, _set: &SaSet) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.1.1\r\ns=-\r\nc=IN IP4 10.0.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    format!(
        "INVITE {to_uri} SIP/2.0\r\nVia: SIP/2.0/TCP {ip}:{uc};branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\nRoute: <sip:orig@pcscf.ims.mnc001.mcc001.3gppnetwork.org;lr>\r\nFrom: <{impu}>;tag=caller1\r\nTo: <{to_uri}>\r\nCall-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:{imsi}@{ip}:{us};transport=tcp>\r\nP-Preferred-Identity: <tel:+15550001>\r\nSecurity-Verify: {sv}\r\nRequire: sec-agree\r\nProxy-Require: sec-agree\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        ip = from.ip,
        uc = from.port_uc,
        us = from.port_us,
        impu = from.impu(),
        imsi = from.imsi,
        sv = from.security_server,
        len = sdp.len(),
    )
}

/// A response from the callee to the forwarded request `req` (Via copied, To tag added).
fn answer(req: &str, code: u16, reason: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!("From: {}\r\n", header(req, "From").unwrap()));
    s.push_str(&format!(
        "To: {};tag=callee1\r\n",
        header(req, "To").unwrap()
    ));
    s.push_str(&format!(
        "Call-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(req, "Call-ID").unwrap(),
        header(req, "CSeq").unwrap()
    ));
    s
}

fn registered_pair() -> (Testbed, Ue, SaSet, Ue, SaSet) {
    let mut t = Testbed::new();
    let a = Ue::new(&mut t, 0, 7000);
    let (sa, _) = a.register(&mut t);
    let a = a.with_server(&sa);
    let b = Ue::new(&mut t, 1, 9000);
    let (sb, _) = b.register(&mut t);
    let b = b.with_server(&sb);
    (t, a, sa, b, sb)
}

#[test]
fn invite_routed_over_port_pc_to_callee_port_us_and_back() {
    let (mut t, a, sa, b, sb) = registered_pair();
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &invite(&a, &b.impu(), &sa),
    );
    // RFC 3261 16.2 / 17.2.1: 100 Trying to the caller (no To tag, 8.2.6.2), then the INVITE.
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, trying) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(trying.starts_with("SIP/2.0 100 Trying\r\n"), "{trying}");
    assert_eq!(
        header(&trying, "To").as_deref(),
        Some(format!("<{}>", b.impu()).as_str())
    );
    assert!(!sent_connect(&out[0]));
    let (flow, fwd) = sent(&out[1]);
    assert!(
        sent_connect(&out[1]),
        "the port_pc connection is opened when absent"
    );
    assert_eq!(
        flow,
        Flow {
            ue: b.ip,
            ue_port: b.port_us,
            local: t.local,
            local_port: 5100,
            proto: Transport::Tcp
        }
    );
    assert_eq!(sb.port_us, b.port_us);
    assert!(
        fwd.starts_with(&format!(
            "INVITE sip:{}@{}:{};transport=tcp SIP/2.0\r\n",
            b.imsi, b.ip, b.port_us
        )),
        "{fwd}"
    );
    let vias = headers(&fwd, "Via");
    assert!(
        vias[0].starts_with("SIP/2.0/TCP 10.0.0.1:6100;branch=z9hG4bK"),
        "sent-by names port_ps: {vias:?}"
    );
    assert_eq!(vias[1], "SIP/2.0/TCP 10.0.1.1:7000;branch=z9hG4bKinv1");
    assert_eq!(
        header(&fwd, "Record-Route").as_deref(),
        Some("<sip:10.0.0.1:6100;lr>")
    );
    assert_eq!(
        header(&fwd, "P-Asserted-Identity").as_deref(),
        Some("<tel:+15550001>")
    );
    assert_eq!(header(&fwd, "P-Preferred-Identity"), None);
    assert_eq!(header(&fwd, "Security-Verify"), None);
    assert_eq!(header(&fwd, "Require"), None);
    assert_eq!(header(&fwd, "Route"), None);
    assert_eq!(header(&fwd, "Max-Forwards").as_deref(), Some("69"));
    assert!(fwd.ends_with("m=audio 4000 RTP/AVP 0\r\n"));

    // 180 and 200 come back over port_pc (spi_pc) and go to the caller's flow.
    let callee_flow = flow;
    for (code, reason) in [(180, "Ringing"), (200, "OK")] {
        let out = t.sip(callee_flow, Some(sb.spi_pc), &answer(&fwd, code, reason));
        assert_eq!(out.len(), 1, "{out:?}");
        let (f, r) = sent(&out[0]);
        assert_eq!(f, a.protected_flow(&sa));
        assert!(r.starts_with(&format!("SIP/2.0 {code} {reason}\r\n")));
        assert_eq!(
            headers(&r, "Via"),
            vec!["SIP/2.0/TCP 10.0.1.1:7000;branch=z9hG4bKinv1".to_string()]
        );
    }

    // ACK and BYE follow the dialog to the callee.
    let ack = format!(
        "ACK sip:{imsi}@{ip}:{us};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.1.1:7000;branch=z9hG4bKack1\r\nRoute: <sip:10.0.0.1:6100;lr>\r\nMax-Forwards: 70\r\nFrom: <{a}>;tag=caller1\r\nTo: <{b}>;tag=callee1\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        imsi = b.imsi, ip = b.ip, us = b.port_us, a = a.impu(), b = b.impu()
    );
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &ack);
    let (f, r) = sent(&out[0]);
    assert_eq!(f, callee_flow);
    assert!(r.starts_with(&format!(
        "ACK sip:{}@{}:{};transport=tcp SIP/2.0\r\n",
        b.imsi, b.ip, b.port_us
    )));
    assert_eq!(header(&r, "Route"), None);
    // BYE from the callee goes to the caller's protected server port.
    let bye = format!(
        "BYE sip:{imsi}@{ip}:{us};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {bip}:{buc};branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\nFrom: <{b}>;tag=callee1\r\nTo: <{a}>;tag=caller1\r\nCall-ID: call-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        imsi = a.imsi, ip = a.ip, us = a.port_us, a = a.impu(), b = b.impu(), bip = b.ip, buc = b.port_uc
    );
    let out = t.sip(b.protected_flow(&sb), Some(sb.spi_ps), &bye);
    let (f, r) = sent(&out[0]);
    assert_eq!(
        f,
        Flow {
            ue: a.ip,
            ue_port: a.port_us,
            local: t.local,
            local_port: 5100,
            proto: Transport::Tcp
        }
    );
    assert!(sent_connect(&out[0]));
    assert!(header(&r, "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP 10.0.0.1:6100;branch="));
    // Its 200 goes back to the callee on the flow the BYE came on.
    let out = t.sip(f, Some(sa.spi_pc), &answer(&r, 200, "OK"));
    let (f2, _) = sent(&out[0]);
    assert_eq!(f2, b.protected_flow(&sb));
}

#[test]
fn unknown_and_unregistered_callees() {
    let (mut t, a, sa, _b, _sb) = registered_pair();
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &invite(&a, "sip:nobody@ims.mnc001.mcc001.3gppnetwork.org", &sa),
    );
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 404 "));
    // Subscriber 3 is provisioned but not registered.
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        // A new request has a new branch (RFC 3261 8.1.1.7); with the old one it would be a
        // retransmission of the first INVITE and get its 404 again (17.2.3).
        &invite(&a, "tel:+15550003", &sa)
            .replace("call-1", "call-2")
            .replace("z9hG4bKinv1", "z9hG4bKinv2"),
    );
    let (f, r) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r.starts_with("SIP/2.0 480 "));
}

#[test]
fn reg_event_subscribe_gets_200_and_notify_over_port_pc() {
    let (mut t, a, sa, _b, _sb) = registered_pair();
    let sub = format!(
        "SUBSCRIBE {impu} SIP/2.0\r\nVia: SIP/2.0/TCP {ip}:{uc};branch=z9hG4bKsub1\r\nMax-Forwards: 70\r\nFrom: <{impu}>;tag=s1\r\nTo: <{impu}>\r\nCall-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{imsi}@{ip}:{us};transport=tcp>\r\nEvent: reg\r\nAccept: application/reginfo+xml\r\nExpires: 600000\r\nContent-Length: 0\r\n\r\n",
        impu = a.impu(), ip = a.ip, uc = a.port_uc, us = a.port_us, imsi = a.imsi
    );
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &sub);
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, ok) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(header(&ok, "Expires").as_deref(), Some("600"));
    let (f, n) = sent(&out[1]);
    assert_eq!(
        f,
        Flow {
            ue: a.ip,
            ue_port: a.port_us,
            local: t.local,
            local_port: 5100,
            proto: Transport::Tcp
        }
    );
    assert!(sent_connect(&out[1]));
    assert!(n.starts_with(&format!(
        "NOTIFY sip:{}@{}:{};transport=tcp SIP/2.0\r\n",
        a.imsi, a.ip, a.port_us
    )));
    assert!(header(&n, "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP 10.0.0.1:6100;branch=z9hG4bK"));
    assert_eq!(header(&n, "Event").as_deref(), Some("reg"));
    assert_eq!(
        header(&n, "Subscription-State").as_deref(),
        Some("active;expires=600")
    );
    assert_eq!(
        header(&n, "Content-Type").as_deref(),
        Some("application/reginfo+xml")
    );
    assert_eq!(
        header(&n, "To").as_deref(),
        Some(format!("<{}>;tag=s1", a.impu()).as_str())
    );
    let body = n.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.contains(&format!(
        "<registration aor=\"{}\" id=\"a0\" state=\"active\">",
        a.impu()
    )));
    assert!(body.contains("<registration aor=\"tel:+15550001\""));
    assert!(body.contains(&format!(
        "<uri>sip:{}@{}:{};transport=tcp</uri>",
        a.imsi, a.ip, a.port_us
    )));
}
