//! Proxy transaction behaviour over TCP: hop-by-hop CANCEL (RFC 3261 16.10, 9.1) with the
//! client transaction's own ACK for the 487 (17.1.1.3), Max-Forwards (16.3 step 3, 16.6
//! step 3), and the refresh of a registration without a new Security-Client.

mod reg_common;

use akagate_proto::ipc::{SaSet, Transport, WorkerCommand};
use reg_common::*;

fn cancel_text(from: &Ue, to_uri: &str, branch: &str) -> String {
    format!(
        "CANCEL {to_uri} SIP/2.0\r\nVia: SIP/2.0/TCP {ip}:{uc};branch={branch}\r\nMax-Forwards: 70\r\nRoute: <sip:orig@pcscf.ims.mnc001.mcc001.3gppnetwork.org;lr>\r\nFrom: <{impu}>;tag=caller1\r\nTo: <{to_uri}>\r\nCall-ID: call-{branch}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        ip = from.host(),
        uc = from.port_uc,
        impu = from.impu(),
    )
}

fn start_call(t: &mut Testbed, a: &Ue, sa: &SaSet, b: &Ue, branch: &str) -> String {
    let out = t.sip(
        a.protected_flow(sa),
        Some(sa.spi_ps),
        &invite_text(a, &b.impu(), branch, 70, &sdp(a)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    sent(&out[1]).1
}

#[test]
fn cancel_is_hop_by_hop_and_the_487_is_acked_by_the_proxy() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let fwd = start_call(&mut t, &a, &sa, &b, "z9hG4bKinv1");
    let to_b = client_flow(&b, &sb, Transport::Tcp);
    let out = t.sip(to_b, Some(sb.spi_pc), &answer(&fwd, 180, "Ringing"));
    assert_eq!(out.len(), 1);

    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &cancel_text(&a, &b.impu(), "z9hG4bKinv1"),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    // 200 to the CANCEL on the caller's flow ...
    let (f, ok) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(header(&ok, "CSeq").as_deref(), Some("1 CANCEL"));
    // ... and our own CANCEL on the callee's branch: same Request-URI, top Via, From, To,
    // Call-ID and CSeq number as the INVITE we sent (RFC 3261 9.1).
    let (f, cancel) = sent(&out[1]);
    assert_eq!(f, to_b);
    let ruri = fwd.lines().next().unwrap().replace("INVITE ", "CANCEL ");
    assert!(cancel.starts_with(&format!("{ruri}\r\n")), "{cancel}");
    assert_eq!(
        headers(&cancel, "Via"),
        vec![headers(&fwd, "Via")[0].clone()]
    );
    for h in ["From", "To", "Call-ID"] {
        assert_eq!(header(&cancel, h), header(&fwd, h), "{h}");
    }
    assert_eq!(header(&cancel, "CSeq").as_deref(), Some("1 CANCEL"));

    // The callee's 200 to our CANCEL stays here.
    let out = t.sip(to_b, Some(sb.spi_pc), &answer(&cancel, 200, "OK"));
    assert!(out.is_empty(), "{out:?}");
    // Its 487 to the INVITE: ACKed by our client transaction, relayed to the caller.
    let out = t.sip(
        to_b,
        Some(sb.spi_pc),
        &answer(&fwd, 487, "Request Terminated"),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, ack) = sent(&out[0]);
    assert_eq!(f, to_b);
    assert!(ack.starts_with(&format!(
        "{}\r\n",
        fwd.lines().next().unwrap().replace("INVITE ", "ACK ")
    )));
    assert_eq!(headers(&ack, "Via"), vec![headers(&fwd, "Via")[0].clone()]);
    assert_eq!(header(&ack, "CSeq").as_deref(), Some("1 ACK"));
    assert_eq!(
        header(&ack, "To"),
        Some(format!("{};tag=callee1", header(&fwd, "To").unwrap()))
    );
    let (f, r487) = sent(&out[1]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r487.starts_with("SIP/2.0 487 Request Terminated\r\n"));
    assert_eq!(
        headers(&r487, "Via"),
        vec!["SIP/2.0/TCP 10.0.1.1:7000;branch=z9hG4bKinv1".to_string()]
    );
    // The caller's ACK for the 487 ends its INVITE server transaction here (hop-by-hop).
    let ack_a = format!(
        "ACK {to} SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.1.1:7000;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\nFrom: <{from}>;tag=caller1\r\nTo: <{to}>;tag=callee1\r\nCall-ID: call-z9hG4bKinv1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        to = b.impu(),
        from = a.impu()
    );
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &ack_a);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(t.core.transactions(), 0);
}

#[test]
fn cancel_before_any_provisional_waits_for_it() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let fwd = start_call(&mut t, &a, &sa, &b, "z9hG4bKinv2");
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &cancel_text(&a, &b.impu(), "z9hG4bKinv2"),
    );
    // RFC 3261 9.1: no CANCEL before a provisional response; only the 200 to the CANCEL.
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK\r\n"));
    let to_b = client_flow(&b, &sb, Transport::Tcp);
    let out = t.sip(to_b, Some(sb.spi_pc), &answer(&fwd, 180, "Ringing"));
    let starts: Vec<(bool, String)> = out
        .iter()
        .map(|c| {
            let (f, m) = sent(c);
            (f == to_b, m.lines().next().unwrap().to_string())
        })
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(starts.contains(&(
        true,
        fwd.lines().next().unwrap().replace("INVITE ", "CANCEL ")
    )));
    assert!(starts.contains(&(false, "SIP/2.0 180 Ringing".to_string())));
}

#[test]
fn cancel_of_an_unknown_invite_gets_481() {
    let (mut t, a, sa, b, _sb) = registered_pair_over(Transport::Tcp, false);
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &cancel_text(&a, &b.impu(), "z9hG4bKnever"),
    );
    assert_eq!(out.len(), 1);
    assert!(sent(&out[0])
        .1
        .starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"));
}

#[test]
fn max_forwards_zero_gets_483_and_one_is_forwarded_as_zero() {
    let (mut t, a, sa, b, _sb) = registered_pair_over(Transport::Tcp, false);
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &invite_text(&a, &b.impu(), "z9hG4bKmf0", 0, &sdp(&a)),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r.starts_with("SIP/2.0 483 Too Many Hops\r\n"), "{r}");
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &invite_text(&a, &b.impu(), "z9hG4bKmf1", 1, &sdp(&a)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        header(&sent(&out[1]).1, "Max-Forwards").as_deref(),
        Some("0")
    );
}

#[test]
fn refresh_without_security_client_keeps_the_sas() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let (set, _) = ue.register(&mut t);
    let ue = ue.with_server(&set);
    t.now += std::time::Duration::from_secs(300);
    let refresh: String = ue
        .refresh(&set, &ue.security_server)
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Security-Client:"))
        .collect();
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &refresh);
    // TS 24.229 5.4.1.2.2: not re-authenticated; 200 over the same SA, no new set.
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, ok) = sent(&out[0]);
    assert_eq!(f, ue.protected_flow(&set));
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(header(&ok, "Expires").as_deref(), Some("600"));
    assert!(!out.iter().any(|c| matches!(
        c,
        WorkerCommand::InstallSaSet(_) | WorkerCommand::RemoveSaSet { .. }
    )));
    // The binding now ends 600 s after the refresh, not after the first registration.
    assert_eq!(
        t.core.poll_timeout(),
        Some(t.now + std::time::Duration::from_secs(600))
    );
    // With a Security-Client it is a new challenge and a new set (TS 33.203 7.4).
    let out = t.sip(
        ue.protected_flow(&set),
        Some(set.spi_ps),
        &ue.with_ports(7100).refresh(&set, &ue.security_server),
    );
    assert!(matches!(out[0], WorkerCommand::InstallSaSet(_)));
    assert!(sent(&out[1]).1.starts_with("SIP/2.0 401 "));
}

#[test]
fn timer_c_cancels_a_branch_that_rings_too_long() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let start = t.now;
    let fwd = start_call(&mut t, &a, &sa, &b, "z9hG4bKlong");
    let to_b = client_flow(&b, &sb, Transport::Tcp);
    let secs = std::time::Duration::from_secs;
    assert_eq!(
        t.sip(to_b, Some(sb.spi_pc), &answer(&fwd, 180, "Ringing"))
            .len(),
        1
    );
    // RFC 3261 16.7 step 2: another provisional response at +100 s resets Timer C.
    t.now = start + secs(100);
    assert_eq!(
        t.sip(
            to_b,
            Some(sb.spi_pc),
            &answer(&fwd, 183, "Session Progress")
        )
        .len(),
        1
    );
    assert!(t.core.handle_timeout(start + secs(200)).is_empty());
    // 181 s after the last provisional: CANCEL to the callee, 408 to the caller (16.8).
    let out = t.core.handle_timeout(start + secs(281));
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, cancel) = sent(&out[0]);
    assert_eq!(f, to_b);
    assert!(cancel.starts_with("CANCEL "));
    let (f, r408) = sent(&out[1]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r408.starts_with("SIP/2.0 408 Request Timeout\r\n"));
    assert_eq!(t.core.stats().timer_c_expiries, 1);
    // A callee that never answers: 64*T1 later every transaction is gone.
    let _ = t.core.handle_timeout(start + secs(281 + 32));
    assert_eq!(t.core.transactions(), 0);
}
