//! SIP over UDP through the core: retransmitted REGISTERs absorbed by their server
//! transaction (RFC 3261 17.2.2), requests to a UDP-registered UE sent over UDP from port_pc
//! to port_us and over TCP when larger than 1300 bytes (RFC 3261 18.1.1), retransmission
//! timers A and E with their timeouts B and F (RFC 3261 17.1), and none of them over TCP.

mod reg_common;

use std::time::Duration;

use akagate_proto::ipc::{Transport, WorkerCommand};
use reg_common::*;

const T1: Duration = Duration::from_millis(500);

#[test]
fn udp_register_retransmissions_are_absorbed_and_the_last_response_resent() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000).with_proto(Transport::Udp);
    let first = t.sip(ue.unprotected_flow(), None, &ue.initial_register());
    assert_eq!(first.len(), 2, "{first:?}");
    let set = installed(&first[0]);
    let (flow, r401) = sent(&first[1]);
    assert_eq!(flow.proto, Transport::Udp);
    assert_eq!(flow, ue.unprotected_flow());
    assert!(r401.starts_with("SIP/2.0 401 Unauthorized\r\n"));
    assert_eq!(
        header(&r401, "Via").as_deref(),
        Some("SIP/2.0/UDP 10.0.1.1:5080;branch=z9hG4bKreg1")
    );

    // The same datagram again (the UE's timer E fired): the 401 again, byte for byte, and no
    // second challenge, SA set or SPI.
    t.now += T1;
    let again = t.sip(ue.unprotected_flow(), None, &ue.initial_register());
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(sent(&again[0]), (flow, r401.clone()));
    assert_eq!(t.core.stats().retransmissions_absorbed, 1);

    // The protected REGISTER over UDP, port_uc -> port_ps through spi_ps.
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let ue = ue.with_server(&set);
    let reg2 = ue.protected_register(&set, &nonce, &set1_usim_res(&nonce), None);
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &reg2);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, ok) = sent(&out[0]);
    assert_eq!(f, ue.protected_flow(&set));
    assert_eq!(f.proto, Transport::Udp);
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &reg2);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(sent(&out[0]).1, ok);
    assert_eq!(t.core.registered(), 1);
    assert!(t.released().is_empty());

    // Timer J keeps each completed REGISTER transaction for 64*T1 on UDP (RFC 3261 17.2.2),
    // then only the registration's expiry is left.
    let t0 = t.now - T1;
    assert_eq!(t.core.poll_timeout(), Some(t0 + T1 * 64));
    assert!(t.core.handle_timeout(t.now + T1 * 64).is_empty());
    assert_eq!(t.core.transactions(), 0);
    assert_eq!(
        t.core.poll_timeout(),
        Some(t.now + Duration::from_secs(600))
    );
}

/// Pads an SDP body so that the whole INVITE is `total` bytes.
fn invite_of_size(from: &Ue, to: &Ue, branch: &str, total: usize) -> String {
    let base = sdp(from);
    let empty = invite_text(from, &to.impu(), branch, 70, &base);
    // Content-Length grows from 3 to 4 digits on the way.
    let pad = total - empty.len() - "a=x-pad:\r\n".len() - 1;
    let body = format!("{base}a=x-pad:{}\r\n", "p".repeat(pad));
    let msg = invite_text(from, &to.impu(), branch, 70, &body);
    assert_eq!(msg.len(), total);
    msg
}

#[test]
fn udp_call_small_invite_over_udp_large_ipv6_invite_over_tcp() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Udp, true);

    // Small: UDP from port_pc to port_us, Via SIP/2.0/UDP, no connection to open.
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &invite_text(&a, &b.impu(), "z9hG4bKsmall", 70, &sdp(&a)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, trying) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(trying.starts_with("SIP/2.0 100 Trying\r\n"));
    let (f, fwd) = sent(&out[1]);
    assert_eq!(f, client_flow(&b, &sb, Transport::Udp));
    assert!(!sent_connect(&out[1]));
    assert!(fwd.len() <= 1300);
    assert!(
        headers(&fwd, "Via")[0].starts_with("SIP/2.0/UDP [2001:db8::1]:6100;branch=z9hG4bK"),
        "{fwd}"
    );

    // 1500 bytes: over TCP (RFC 3261 18.1.1), opened from port_pc to port_us if absent, and
    // the Via says TCP.
    let big = invite_of_size(&a, &b, "z9hG4bKbig", 1500);
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &big);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 100 Trying\r\n"));
    let (f, fwd) = sent(&out[1]);
    assert!(fwd.len() > 1300, "{}", fwd.len());
    assert_eq!(f, client_flow(&b, &sb, Transport::Tcp));
    assert_eq!((f.local_port, f.ue_port), (5100, b.port_us));
    assert!(sent_connect(&out[1]));
    let vias = headers(&fwd, "Via");
    assert!(
        vias[0].starts_with("SIP/2.0/TCP [2001:db8::1]:6100;branch=z9hG4bK"),
        "{vias:?}"
    );
    assert_eq!(
        vias[1],
        "SIP/2.0/UDP [2001:db8:1::1]:7000;branch=z9hG4bKbig"
    );
    assert!(fwd.starts_with(&format!(
        "INVITE sip:{}@[2001:db8:1::2]:{};transport=udp SIP/2.0\r\n",
        b.imsi, b.port_us
    )));

    // TCP: no retransmissions however long we wait (timer A only runs on UDP) ...
    let sends_before_b = |out: &[WorkerCommand]| {
        out.iter()
            .filter(|c| matches!(c, WorkerCommand::Send { .. }))
            .count()
    };
    let start = t.now;
    let mut retransmitted_big = 0;
    while let Some(at) = t.core.poll_timeout() {
        if at >= start + T1 * 64 {
            break;
        }
        for c in t.core.handle_timeout(at) {
            if let WorkerCommand::Send { bytes, flow, .. } = &c {
                if flow.proto == Transport::Tcp && bytes.windows(10).any(|w| w == b"z9hG4bKbig") {
                    retransmitted_big += 1;
                }
            }
        }
    }
    assert_eq!(retransmitted_big, 0);
    // ... and timer B ends both unanswered INVITEs with 408 to the caller (RFC 3261 16.8).
    let out = t.core.handle_timeout(start + T1 * 64);
    assert_eq!(sends_before_b(&out), 2, "{out:?}");
    for c in &out {
        let (f, r) = sent(c);
        assert_eq!(f, a.protected_flow(&sa));
        assert!(r.starts_with("SIP/2.0 408 Request Timeout\r\n"), "{r}");
    }
    assert_eq!(t.core.stats().transaction_timeouts, 2);
}

#[test]
fn udp_invite_retransmitted_by_timer_a_until_180() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Udp, false);
    let start = t.now;
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &invite_text(&a, &b.impu(), "z9hG4bKinvA", 70, &sdp(&a)),
    );
    let (flow, fwd) = sent(&out[1]);
    assert_eq!(flow, client_flow(&b, &sb, Transport::Udp));
    assert_eq!(t.core.poll_timeout(), Some(start + T1));

    // Timer A: T1, 2*T1, 4*T1 ... (RFC 3261 17.1.1.2), the same bytes each time.
    let mut at = start;
    for interval in [T1, T1 * 2, T1 * 4] {
        at += interval;
        assert!(t
            .core
            .handle_timeout(at - Duration::from_millis(1))
            .is_empty());
        let out = t.core.handle_timeout(at);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(sent(&out[0]), (flow, fwd.clone()));
    }

    // 180 from the callee (port_uc -> port_ps through spi_ps): relayed, and timer A stops.
    t.now = at + T1;
    let ringing = answer(&fwd, 180, "Ringing");
    let out = t.sip(b.protected_flow(&sb), Some(sb.spi_ps), &ringing);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r.starts_with("SIP/2.0 180 Ringing\r\n"));
    assert_eq!(
        headers(&r, "Via"),
        vec!["SIP/2.0/UDP 10.0.1.1:7000;branch=z9hG4bKinvA".to_string()]
    );
    let mut later = Vec::new();
    while let Some(next) = t.core.poll_timeout() {
        if next > start + Duration::from_secs(120) {
            break;
        }
        later.extend(t.core.handle_timeout(next));
    }
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn udp_notify_retransmitted_by_timer_e_then_timer_f() {
    let (mut t, a, sa, _b, sb) = registered_pair_over(Transport::Udp, false);
    let _ = sb;
    let sub = format!(
        "SUBSCRIBE {impu} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{uc};branch=z9hG4bKsub1\r\nMax-Forwards: 70\r\nFrom: <{impu}>;tag=s1\r\nTo: <{impu}>\r\nCall-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{imsi}@{ip}:{us};transport=udp>\r\nEvent: reg\r\nExpires: 600000\r\nContent-Length: 0\r\n\r\n",
        impu = a.impu(), ip = a.ip, uc = a.port_uc, us = a.port_us, imsi = a.imsi
    );
    let start = t.now;
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &sub);
    assert_eq!(out.len(), 2, "{out:?}");
    let (flow, notify) = sent(&out[1]);
    assert_eq!(flow, client_flow(&a, &sa, Transport::Udp));
    assert!(header(&notify, "Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 10.0.0.1:6100;branch="));

    // Timer E: T1, 2T1, 4T1, then T2 = 4 s until timer F at 64*T1 (RFC 3261 17.1.2.2).
    let mut offsets = Vec::new();
    while let Some(at) = t.core.poll_timeout() {
        if at > start + T1 * 64 {
            break;
        }
        for c in t.core.handle_timeout(at) {
            let (f, m) = sent(&c);
            assert_eq!((f, m.as_str()), (flow, notify.as_str()));
            offsets.push((at - start).as_millis());
        }
    }
    assert_eq!(
        offsets,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    // Timer F fired: our own request, so nobody gets a 408.
    assert_eq!(t.core.stats().transaction_timeouts, 1);
}

/// RFC 3261 18.1.1: a request over TCP only for its size, to a UE registered over UDP, whose
/// connection cannot be opened MAY be retried over UDP: it is when it fits the MTU (one
/// UDP datagram in one ESP packet), with the same branch and a Via saying UDP, and timer A
/// then retransmits it; a larger one fails with 480 at once as before.
#[test]
fn connect_failed_to_a_udp_registered_ue_retries_over_udp_within_the_mtu() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Udp, false);
    let tcp = client_flow(&b, &sb, Transport::Tcp);
    let udp = client_flow(&b, &sb, Transport::Udp);

    let mid = invite_of_size(&a, &b, "z9hG4bKmid", 1400);
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &mid);
    let (f, fwd) = sent(&out[1]);
    assert_eq!(f, tcp, "{}", fwd.len());
    assert!((1301..=1372).contains(&fwd.len()), "{}", fwd.len());

    let out = t
        .core
        .handle(akagate_proto::ipc::WorkerEvent::ConnectFailed(tcp), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, again) = sent(&out[0]);
    assert_eq!(f, udp);
    assert!(!sent_connect(&out[0]));
    assert_eq!(
        again,
        fwd.replacen(
            "SIP/2.0/TCP 10.0.0.1:6100;",
            "SIP/2.0/UDP 10.0.0.1:6100;",
            1
        )
    );
    assert_ne!(again, fwd);
    assert_eq!(t.core.stats().udp_fallbacks, 1);
    assert_eq!(t.core.stats().connect_failures, 0);
    // Timer A retransmits it over UDP (RFC 3261 17.1.1.2).
    let out = t.core.handle_timeout(t.now + T1);
    assert!(
        out.iter().any(|c| sent(c) == (udp, again.clone())),
        "{out:?}"
    );
    // The callee's 180 and 200 over UDP complete the call.
    let ok = answer(&again, 200, "OK");
    let out = t.sip(udp, Some(sb.spi_pc), &ok);
    assert!(
        out.iter()
            .any(|c| sent(c).0 == a.protected_flow(&sa) && sent(c).1.starts_with("SIP/2.0 200 OK")),
        "{out:?}"
    );

    // Beyond the MTU: 480 at once, no UDP.
    let big = invite_of_size(&a, &b, "z9hG4bKbig2", 1500);
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &big);
    assert_eq!(sent(&out[1]).0, tcp);
    let out = t
        .core
        .handle(akagate_proto::ipc::WorkerEvent::ConnectFailed(tcp), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r.starts_with("SIP/2.0 480 "), "{r}");
}
