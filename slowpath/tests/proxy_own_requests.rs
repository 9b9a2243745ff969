//! Requests the P-CSCF originates towards registered UEs: OPTIONS keep-alives (from port_pc
//! through the SA, Via sent-by port_ps, outcome counted) and the failure of every client
//! transaction waiting on a connection the worker could not open (`ConnectFailed`).

mod reg_common;

use std::time::Duration;

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand, WorkerEvent};
use reg_common::*;

const EVERY: Duration = Duration::from_secs(30);

fn keepalive_on(cfg: &mut akagate_slowpath::CoreConfig) {
    cfg.keepalive_interval = Some(EVERY);
}

/// The OPTIONS we expect towards `ue`, with the branch, tag and Call-ID the core chose.
fn expected_options(ue: &Ue, tp: &str, got: &str) -> String {
    let via = header(got, "Via").unwrap();
    let branch = semi_param(&via, "branch").unwrap();
    let tag = semi_param(&header(got, "From").unwrap(), "tag").unwrap();
    let call_id = header(got, "Call-ID").unwrap();
    assert!(
        branch.starts_with("z9hG4bK") && branch.len() > 7 + 16,
        "{branch}"
    );
    assert_eq!(tag.len(), 16);
    assert!(call_id.ends_with("@pcscf.ims.mnc001.mcc001.3gppnetwork.org"));
    format!(
        "OPTIONS sip:{imsi}@{ip}:{us};transport={tpl} SIP/2.0\r\nVia: SIP/2.0/{tp} 10.0.0.1:6100;branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:pcscf.ims.mnc001.mcc001.3gppnetwork.org>;tag={tag}\r\nTo: <{impu}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        imsi = ue.imsi,
        ip = ue.ip,
        us = ue.port_us,
        tpl = tp.to_ascii_lowercase(),
        impu = ue.impu(),
    )
}

#[test]
fn keepalives_are_off_by_default() {
    let (t, _a, _sa, _b, _sb) = registered_pair_over(Transport::Tcp, false);
    // The only deadline is the registrations' expiry.
    assert_eq!(
        t.core.poll_timeout(),
        Some(t.now + Duration::from_secs(600))
    );
}

#[test]
fn tcp_keepalive_from_port_pc_answered_failed_and_timed_out() {
    let (mut t, a, sa, _b, _sb) = registered_pair_with(Transport::Tcp, false, keepalive_on);
    let start = t.now;
    assert_eq!(t.core.poll_timeout(), Some(start + EVERY));
    assert!(t
        .core
        .handle_timeout(start + EVERY - Duration::from_millis(1))
        .is_empty());

    // Both UEs registered at `start`: one OPTIONS each, over port_pc -> port_us, opened if
    // absent, byte-exact (no Route: the contact is the next hop).
    let out = t.core.handle_timeout(start + EVERY);
    assert_eq!(out.len(), 2, "{out:?}");
    let to_a = client_flow(&a, &sa, Transport::Tcp);
    let i = out
        .iter()
        .position(|c| sent(c).0 == to_a)
        .expect("OPTIONS to a");
    assert!(sent_connect(&out[i]));
    let (_, opt) = sent(&out[i]);
    assert_eq!(opt, expected_options(&a, "TCP", &opt));
    assert_eq!(header(&opt, "Route"), None);
    assert_eq!(t.core.stats().keepalives_sent, 2);

    // A 200 over spi_pc proves the UE alive: nothing is relayed, last seen is now.
    t.now = start + EVERY + Duration::from_millis(80);
    let out = t.sip(to_a, Some(sa.spi_pc), &answer(&opt, 200, "OK"));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(t.core.stats().keepalives_answered, 1);
    assert_eq!(t.core.last_seen(&a.impi()), Some(t.now));
    let seen = t.now;

    // The next one, one interval later, gets 503: a failure; last seen stays.
    let out = t.core.handle_timeout(start + EVERY * 2);
    let opt2 = out
        .iter()
        .map(sent)
        .find(|(f, _)| *f == to_a)
        .expect("second OPTIONS")
        .1;
    assert_ne!(
        header(&opt2, "Call-ID"),
        header(&opt, "Call-ID"),
        "each keep-alive is a new request"
    );
    t.now = start + EVERY * 2 + Duration::from_millis(50);
    let out = t.sip(
        to_a,
        Some(sa.spi_pc),
        &answer(&opt2, 503, "Service Unavailable"),
    );
    assert!(out.is_empty(), "{out:?}");
    let s = t.core.stats();
    // b never answered its first OPTIONS: still outstanding, not yet failed.
    assert_eq!((s.keepalives_answered, s.keepalive_failures), (1, 1));
    assert_eq!(t.core.last_seen(&a.impi()), Some(seen));

    // b's first OPTIONS times out at timer F (64*T1 = 32 s); while it is outstanding no
    // second one is sent to b.
    let mut sent_to = Vec::new();
    for c in t
        .core
        .handle_timeout(start + EVERY + Duration::from_secs(32))
    {
        sent_to.push(sent(&c).0);
    }
    assert!(sent_to.is_empty(), "{sent_to:?}");
    let s = t.core.stats();
    assert_eq!(s.keepalive_failures, 2);
    assert_eq!(s.transaction_timeouts, 1);
    // IMPIs compare case-insensitively.
    assert_eq!(t.core.last_seen(&a.impi().to_uppercase()), Some(seen));
}

#[test]
fn udp_keepalive_uses_udp_and_stops_after_deregistration() {
    let (mut t, a, sa, b, sb) = registered_pair_with(Transport::Udp, false, keepalive_on);
    let start = t.now;
    let out = t.core.handle_timeout(start + EVERY);
    let to_b = client_flow(&b, &sb, Transport::Udp);
    let (f, opt) = out
        .iter()
        .map(sent)
        .find(|(f, _)| *f == to_b)
        .expect("OPTIONS to b");
    assert_eq!(f.proto, Transport::Udp);
    assert!(!out.iter().any(sent_connect), "no connection for UDP");
    assert_eq!(opt, expected_options(&b, "UDP", &opt));
    // The UE answers from port_us -> port_pc through spi_pc.
    let out = t.sip(to_b, Some(sb.spi_pc), &answer(&opt, 200, "OK"));
    assert!(out.is_empty());
    assert_eq!(t.core.last_seen(&b.impi()), Some(t.now));

    // a de-registers: its keep-alives stop; b's continue.
    t.now = start + EVERY + Duration::from_secs(1);
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &a.dereg(&sa));
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"));
    assert_eq!(t.core.last_seen(&a.impi()), None);
    let mut later = Vec::new();
    while let Some(at) = t.core.poll_timeout() {
        if at > start + EVERY * 3 {
            break;
        }
        later.extend(t.core.handle_timeout(at));
    }
    let options: Vec<_> = later
        .iter()
        .filter_map(|c| match c {
            WorkerCommand::Send { flow, bytes, .. } if bytes.starts_with(b"OPTIONS ") => {
                Some(*flow)
            }
            _ => None,
        })
        .collect();
    assert!(!options.is_empty());
    assert!(options.iter().all(|f| *f == to_b), "{options:?}");
    let _ = sa;
}

/// a's INVITE (branch `branch`) forwarded to b: the flow it left on and the bytes.
fn invite_a_to_b(
    t: &mut Testbed,
    a: &Ue,
    sa: &SaSet,
    b: &Ue,
    sb: &SaSet,
    branch: &str,
) -> (Flow, String) {
    let out = t.sip(
        a.protected_flow(sa),
        Some(sa.spi_ps),
        &invite_text(a, &b.impu(), branch, 70, &sdp(a)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let (to_b, forwarded) = sent(&out[1]);
    assert_eq!(to_b, client_flow(b, sb, Transport::Tcp));
    (to_b, forwarded)
}

/// `event` for a flow next to `flow` (another port) changes nothing.
fn other_flow_changes_nothing(t: &mut Testbed, flow: Flow, event: fn(Flow) -> WorkerEvent) {
    let mut other = flow;
    other.ue_port += 1;
    assert!(t.core.handle(event(other), t.now).is_empty());
}

/// No timer produces anything in the next 200 s (no 408 after timer B, no Timer C).
fn nothing_later(t: &mut Testbed) {
    let mut later = Vec::new();
    while let Some(at) = t.core.poll_timeout() {
        if at > t.now + Duration::from_secs(200) {
            break;
        }
        later.extend(t.core.handle_timeout(at));
    }
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn connect_failed_answers_the_caller_480_at_once() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let (to_b, _) = invite_a_to_b(&mut t, &a, &sa, &b, &sb, "z9hG4bKcf1");
    assert_eq!(t.core.dialogs(), 1);

    // Another flow failing changes nothing.
    other_flow_changes_nothing(&mut t, to_b, WorkerEvent::ConnectFailed);

    let out = t.core.handle(WorkerEvent::ConnectFailed(to_b), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(
        r.starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"),
        "{r}"
    );
    assert_eq!(
        headers(&r, "Via"),
        vec![format!(
            "SIP/2.0/TCP {}:{};branch=z9hG4bKcf1",
            a.ip, a.port_uc
        )]
    );
    assert!(header(&r, "To").unwrap().contains(";tag="));
    assert_eq!(header(&r, "CSeq").as_deref(), Some("1 INVITE"));
    assert_eq!(t.core.stats().connect_failures, 1);
    assert_eq!(t.core.dialogs(), 0);

    // Timer B has nothing left to do: no 408 after 32 s, no Timer C after 181 s.
    nothing_later(&mut t);
    assert_eq!(t.core.stats().transaction_timeouts, 0);
}

#[test]
fn connect_failed_fails_message_notify_and_keepalive() {
    let (mut t, a, sa, b, sb) = registered_pair_with(Transport::Tcp, false, keepalive_on);
    let to_a = client_flow(&a, &sa, Transport::Tcp);
    let to_b = client_flow(&b, &sb, Transport::Tcp);
    // A page-mode MESSAGE to b.
    let msg = format!(
        "MESSAGE {bi} SIP/2.0\r\nVia: SIP/2.0/TCP {ip}:{uc};branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <{ai}>;tag=m1\r\nTo: <{bi}>\r\nCall-ID: msg-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        bi = b.impu(), ai = a.impu(), ip = a.ip, uc = a.port_uc
    );
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &msg);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(sent(&out[0]).0, to_b);
    // a subscribes to its reg event: NOTIFY on to_a.
    let sub = format!(
        "SUBSCRIBE {impu} SIP/2.0\r\nVia: SIP/2.0/TCP {ip}:{uc};branch=z9hG4bKs1\r\nMax-Forwards: 70\r\nFrom: <{impu}>;tag=s1\r\nTo: <{impu}>\r\nCall-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{imsi}@{ip}:{us};transport=tcp>\r\nEvent: reg\r\nExpires: 600000\r\nContent-Length: 0\r\n\r\n",
        impu = a.impu(), ip = a.ip, uc = a.port_uc, us = a.port_us, imsi = a.imsi
    );
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &sub);
    assert_eq!(sent(&out[1]).0, to_a);
    assert_eq!(t.core.reg_subscriptions(), 1);

    // The connection to b fails: the MESSAGE's sender gets 480.
    let out = t.core.handle(WorkerEvent::ConnectFailed(to_b), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r.starts_with("SIP/2.0 480 "));
    assert_eq!(header(&r, "CSeq").as_deref(), Some("1 MESSAGE"));

    // The connection to a fails: the NOTIFY failed and the subscription ends (RFC 6665
    // 4.2.2); nothing is answered to anybody.
    let out = t.core.handle(WorkerEvent::ConnectFailed(to_a), t.now);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(t.core.stats().notify_failures, 1);
    assert_eq!(t.core.reg_subscriptions(), 0);

    // Keep-alives: both sent, a's connection fails -> counted at once.
    let out = t.core.handle_timeout(t.now + EVERY);
    assert_eq!(sends_starting(&out, "OPTIONS ").len(), 2);
    let out = t
        .core
        .handle(WorkerEvent::ConnectFailed(to_a), t.now + EVERY);
    assert!(out.is_empty());
    let s = t.core.stats();
    assert_eq!(s.keepalive_failures, 1);
    assert_eq!(s.connect_failures, 3);
    // The failed OPTIONS is not outstanding any more: the next interval sends again.
    let out = t.core.handle_timeout(t.now + EVERY * 2);
    assert!(out
        .iter()
        .any(|c| sent(c).0 == to_a && sent(c).1.starts_with("OPTIONS ")));
}

#[test]
fn send_lost_resends_the_invite_once_then_answers_480() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let (to_b, forwarded) = invite_a_to_b(&mut t, &a, &sa, &b, &sb, "z9hG4bKsl1");

    // Another flow's loss changes nothing.
    other_flow_changes_nothing(&mut t, to_b, WorkerEvent::SendLost);

    // b reset the connection the INVITE was written to (RFC 3261 18): the same INVITE goes
    // out again at once, on a connection the worker opens afresh.
    let out = t.core.handle(WorkerEvent::SendLost(to_b), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        matches!(&out[0], WorkerCommand::Send { flow, bytes, connect_if_absent: true }
            if *flow == to_b && *bytes == forwarded.as_bytes()),
        "{out:?}"
    );
    assert_eq!(t.core.stats().requests_resent, 1);

    // Lost again: the caller hears 480 now, not 408 after timer B.
    let out = t.core.handle(WorkerEvent::SendLost(to_b), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, a.protected_flow(&sa));
    assert!(r.starts_with("SIP/2.0 480 "), "{r}");
    assert_eq!(header(&r, "CSeq").as_deref(), Some("1 INVITE"));
    assert_eq!(t.core.dialogs(), 0);
    nothing_later(&mut t);
}

#[test]
fn send_lost_after_a_provisional_response_changes_nothing() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let (to_b, forwarded) = invite_a_to_b(&mut t, &a, &sa, &b, &sb, "z9hG4bKsl2");
    // b answered 180: the INVITE got through; a later reset loses nothing of it.
    let ringing = answer(&forwarded, 180, "Ringing");
    let out = t.sip(
        client_flow(&b, &sb, Transport::Tcp),
        Some(sb.spi_pc),
        &ringing,
    );
    assert!(
        out.iter().any(|c| sent(c).1.starts_with("SIP/2.0 180 ")),
        "{out:?}"
    );
    assert!(t.core.handle(WorkerEvent::SendLost(to_b), t.now).is_empty());
    assert_eq!(t.core.stats().requests_resent, 0);
}

#[test]
fn keepalives_failing_in_a_row_end_the_registration() {
    let (mut t, a, sa, _b, _sb) = registered_pair_with(Transport::Tcp, false, |c| {
        keepalive_on(c);
        c.keepalive_failures = 2;
    });
    let start = t.now;
    let to_a = client_flow(&a, &sa, Transport::Tcp);
    // Two OPTIONS to `a` answered 503 in a row (b answers nothing and times out later).
    for n in 1..=2u32 {
        let out = t.core.handle_timeout(start + EVERY * n);
        let opt = out
            .iter()
            .map(sent)
            .find(|(f, _)| *f == to_a)
            .expect("OPTIONS to a")
            .1;
        t.now = start + EVERY * n + Duration::from_millis(50);
        let out = t.sip(
            to_a,
            Some(sa.spi_pc),
            &answer(&opt, 503, "Service Unavailable"),
        );
        if n == 1 {
            assert!(out.is_empty(), "{out:?}");
            assert_eq!(t.core.registered(), 2);
        } else {
            // The second failure ends a's registration: its set is removed.
            assert!(
                out.iter().any(|c| matches!(c, WorkerCommand::RemoveSaSet { spi_ps, .. } if *spi_ps == sa.spi_ps)),
                "{out:?}"
            );
        }
    }
    assert_eq!(t.core.stats().keepalive_deregistrations, 1);
    assert_eq!(t.core.registered(), 1);
}
