//! RFC 3261 17 transactions driven with synthetic time: retransmission schedules of timers
//! A/E/G, timeouts B/F/H, wait timers D/I/J/K, reliable transports, absorption of
//! retransmissions and transaction matching (17.1.3, 17.2.3).

use std::time::{Duration, Instant};

use akagate_slowpath::sip::transaction::{
    Incoming, Peer, TimerConfig, TransactionLayer, Transport, TransportErrorOutcome, TxEvent, TxId,
};
use akagate_slowpath::sip::{response_to, Message, MessageBuilder};

fn peer(transport: Transport) -> Peer {
    Peer {
        remote: "192.0.2.10:5060".parse().unwrap(),
        local_port: 5060,
        transport,
    }
}

fn request(method: &str, branch: &str, sent_by: &str) -> Vec<u8> {
    MessageBuilder::request(method, "sip:bob@example.com")
        .header("Via", &format!("SIP/2.0/UDP {sent_by};branch={branch}"))
        .header("Max-Forwards", "70")
        .header("From", "<sip:alice@example.com>;tag=a1")
        .header("To", "<sip:bob@example.com>")
        .header("Call-ID", "call-1@example.com")
        .header("CSeq", &format!("1 {method}"))
        .build()
}

fn response(req: &[u8], code: u16) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    response_to(&m, code, "X", Some("b1")).unwrap().build()
}

fn ack(branch: &str) -> Vec<u8> {
    MessageBuilder::request("ACK", "sip:bob@example.com")
        .header(
            "Via",
            &format!("SIP/2.0/UDP ue.example.com;branch={branch}"),
        )
        .header("Max-Forwards", "70")
        .header("From", "<sip:alice@example.com>;tag=a1")
        .header("To", "<sip:bob@example.com>;tag=b1")
        .header("Call-ID", "call-1@example.com")
        .header("CSeq", "1 ACK")
        .build()
}

fn ms(t0: Instant, t: Instant) -> u64 {
    (t - t0).as_millis() as u64
}

/// Runs timers until `until`, returning (ms, bytes) of every transmit and (ms, event) of every
/// event.
type Log = (Vec<(u64, Vec<u8>)>, Vec<(u64, TxEvent)>);

fn run_until(layer: &mut TransactionLayer, t0: Instant, until: Duration) -> Log {
    let mut tx = Vec::new();
    let mut ev = Vec::new();
    while let Some(t) = layer.poll_timeout() {
        if t > t0 + until {
            break;
        }
        layer.handle_timeout(t);
        drain(layer, t0, t, &mut tx, &mut ev);
    }
    (tx, ev)
}

fn drain(
    layer: &mut TransactionLayer,
    t0: Instant,
    now: Instant,
    tx: &mut Vec<(u64, Vec<u8>)>,
    ev: &mut Vec<(u64, TxEvent)>,
) {
    while let Some(t) = layer.poll_transmit() {
        tx.push((ms(t0, now), t.bytes));
    }
    while let Some((_, e)) = layer.poll_event() {
        ev.push((ms(t0, now), e));
    }
}

fn times(log: &[(u64, Vec<u8>)]) -> Vec<u64> {
    log.iter().map(|(t, _)| *t).collect()
}

#[test]
fn non_invite_client_udp_retransmits_t1_doubling_to_t2_then_timer_f() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("OPTIONS", "z9hG4bKa", "pc.example.net");
    layer
        .send_request(req.clone(), peer(Transport::Udp), t0)
        .unwrap();
    assert_eq!(layer.poll_transmit().unwrap().bytes, req);
    let (tx, ev) = run_until(&mut layer, t0, Duration::from_secs(60));
    assert_eq!(
        times(&tx),
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(tx.iter().all(|(_, b)| *b == req));
    assert_eq!(
        ev,
        vec![(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
    assert!(layer.is_empty());
    assert_eq!(layer.poll_timeout(), None);
}

#[test]
fn invite_client_udp_timer_a_doubles_without_cap_then_timer_b() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKi", "pc.example.net");
    layer.send_request(req, peer(Transport::Udp), t0).unwrap();
    layer.poll_transmit().unwrap();
    let (tx, ev) = run_until(&mut layer, t0, Duration::from_secs(60));
    assert_eq!(times(&tx), vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(
        ev,
        vec![(32000, TxEvent::Timeout), (32000, TxEvent::Terminated)]
    );
}

#[test]
fn reliable_transport_has_no_retransmissions() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("OPTIONS", "z9hG4bKt", "pc.example.net");
    layer
        .send_request(req.clone(), peer(Transport::Tcp), t0)
        .unwrap();
    layer.poll_transmit().unwrap();
    assert_eq!(layer.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    let resp = response(&req, 200);
    let m = Message::parse(&resp).unwrap();
    let at = t0 + Duration::from_millis(100);
    assert!(matches!(
        layer.handle_message(&m, peer(Transport::Tcp), at).unwrap(),
        Incoming::Response(_)
    ));
    // Timer K is zero on TCP: the transaction ends at once.
    assert_eq!(layer.poll_event().unwrap().1, TxEvent::Response(resp));
    assert_eq!(layer.poll_event().unwrap().1, TxEvent::Terminated);
    assert!(layer.is_empty());
    assert!(layer.poll_transmit().is_none());
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_and_timer_k() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("REGISTER", "z9hG4bKr", "pc.example.net");
    layer
        .send_request(req.clone(), peer(Transport::Udp), t0)
        .unwrap();
    let (mut tx, mut ev) = (Vec::new(), Vec::new());
    drain(&mut layer, t0, t0, &mut tx, &mut ev);
    let mut events_at = |layer: &mut TransactionLayer, at_ms: u64, msg: Option<Vec<u8>>| {
        let now = t0 + Duration::from_millis(at_ms);
        while let Some(t) = layer.poll_timeout().filter(|&t| t <= now) {
            layer.handle_timeout(t);
            drain(layer, t0, t, &mut tx, &mut ev);
        }
        if let Some(msg) = msg {
            let m = Message::parse(&msg).unwrap();
            layer.handle_message(&m, peer(Transport::Udp), now).unwrap();
            drain(layer, t0, now, &mut tx, &mut ev);
        }
    };
    events_at(&mut layer, 1000, Some(response(&req, 100)));
    events_at(&mut layer, 10000, Some(response(&req, 401)));
    // A retransmitted final response in Completed is absorbed.
    events_at(&mut layer, 12000, Some(response(&req, 401)));
    events_at(&mut layer, 40000, None);
    assert_eq!(times(&tx), vec![0, 500, 1500, 5500, 9500]);
    let evs: Vec<_> = ev
        .iter()
        .map(|(t, e)| match e {
            TxEvent::Response(b) => (*t, Message::parse(b).unwrap().status_code().unwrap()),
            TxEvent::Timeout => (*t, 1),
            TxEvent::Terminated => (*t, 0),
        })
        .collect();
    // Timer K = T4 = 5 s after the final response.
    assert_eq!(evs, vec![(1000, 100), (10000, 401), (15000, 0)]);
}

#[test]
fn invite_client_acks_non_2xx_and_absorbs_retransmissions_until_timer_d() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKc", "pc.example.net");
    layer
        .send_request(req.clone(), peer(Transport::Udp), t0)
        .unwrap();
    layer.poll_transmit().unwrap();
    let busy = response(&req, 486);
    let m = Message::parse(&busy).unwrap();
    let t1 = t0 + Duration::from_millis(200);
    layer.handle_message(&m, peer(Transport::Udp), t1).unwrap();
    let ack = layer.poll_transmit().unwrap().bytes;
    let a = Message::parse(&ack).unwrap();
    assert_eq!(a.method(), Some("ACK"));
    assert_eq!(a.cseq().unwrap().method, "ACK");
    assert_eq!(a.to_header().unwrap().tag(), Some("b1"));
    assert_eq!(a.top_via().unwrap().branch(), Some("z9hG4bKc"));
    assert_eq!(
        layer.poll_event().unwrap().1,
        TxEvent::Response(busy.clone())
    );
    // The retransmitted 486 is not passed up again, but the ACK is re-sent.
    let t2 = t0 + Duration::from_secs(2);
    assert!(matches!(
        layer.handle_message(&m, peer(Transport::Udp), t2).unwrap(),
        Incoming::Response(_)
    ));
    assert_eq!(layer.poll_transmit().unwrap().bytes, ack);
    assert!(layer.poll_event().is_none());
    // Timer A stopped; only Timer D (32 s) is left.
    assert_eq!(layer.poll_timeout(), Some(t1 + Duration::from_secs(32)));
    let (tx, ev) = run_until(&mut layer, t0, Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(ev, vec![(32200, TxEvent::Terminated)]);
}

#[test]
fn invite_client_2xx_terminates_and_is_passed_up() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bK2xx", "pc.example.net");
    layer
        .send_request(req.clone(), peer(Transport::Udp), t0)
        .unwrap();
    layer.poll_transmit().unwrap();
    for code in [180, 200] {
        let r = response(&req, code);
        let m = Message::parse(&r).unwrap();
        layer.handle_message(&m, peer(Transport::Udp), t0).unwrap();
    }
    let ev: Vec<_> = std::iter::from_fn(|| layer.poll_event())
        .map(|e| e.1)
        .collect();
    assert_eq!(
        ev,
        vec![
            TxEvent::Response(response(&req, 180)),
            TxEvent::Response(response(&req, 200)),
            TxEvent::Terminated
        ]
    );
    // No ACK from the transaction for a 2xx (the TU sends it, 13.2.2.4).
    assert!(layer.poll_transmit().is_none());
    // A 2xx retransmission is now stray, for the core.
    let r = response(&req, 200);
    let m = Message::parse(&r).unwrap();
    assert_eq!(
        layer.handle_message(&m, peer(Transport::Udp), t0).unwrap(),
        Incoming::Stray
    );
}

fn recv(layer: &mut TransactionLayer, bytes: &[u8], at: Instant) -> Incoming {
    let m = Message::parse(bytes).unwrap();
    layer.handle_message(&m, peer(Transport::Udp), at).unwrap()
}

#[test]
fn non_invite_server_absorbs_then_replays_final_until_timer_j() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("OPTIONS", "z9hG4bKs", "ue.example.com");
    let Incoming::NewRequest(id) = recv(&mut layer, &req, t0) else {
        panic!("new request expected")
    };
    // Retransmission in Trying: absorbed, nothing sent.
    assert_eq!(
        recv(&mut layer, &req, t0 + Duration::from_millis(500)),
        Incoming::Absorbed(id)
    );
    assert!(layer.poll_transmit().is_none());
    let ok = response(&req, 200);
    layer
        .send_response(id, ok.clone(), t0 + Duration::from_secs(1))
        .unwrap();
    assert_eq!(layer.poll_transmit().unwrap().bytes, ok);
    // Retransmission in Completed: the final response is re-sent.
    assert_eq!(
        recv(&mut layer, &req, t0 + Duration::from_secs(2)),
        Incoming::Absorbed(id)
    );
    assert_eq!(layer.poll_transmit().unwrap().bytes, ok);
    assert!(layer
        .send_response(id, response(&req, 500), t0 + Duration::from_secs(2))
        .is_err());
    let (tx, ev) = run_until(&mut layer, t0, Duration::from_secs(60));
    assert!(tx.is_empty());
    // Timer J = 64*T1 after the final response.
    assert_eq!(ev, vec![(33000, TxEvent::Terminated)]);
    assert!(matches!(
        recv(&mut layer, &req, t0 + Duration::from_secs(34)),
        Incoming::NewRequest(_)
    ));
}

#[test]
fn invite_server_sends_100_after_200ms_and_retransmits_final_with_timer_g() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKsi", "ue.example.com");
    let Incoming::NewRequest(id) = recv(&mut layer, &req, t0) else {
        panic!("new request expected")
    };
    assert!(layer.poll_transmit().is_none());
    let (tx, _) = run_until(&mut layer, t0, Duration::from_millis(300));
    assert_eq!(times(&tx), vec![200]);
    let trying = Message::parse(&tx[0].1).unwrap();
    assert_eq!(trying.status_code(), Some(100));
    assert_eq!(trying.to_header().unwrap().tag(), None);
    assert_eq!(trying.top_via().unwrap().branch(), Some("z9hG4bKsi"));
    // A retransmitted INVITE gets the 100 again.
    recv(&mut layer, &req, t0 + Duration::from_millis(500));
    assert_eq!(layer.poll_transmit().unwrap().bytes, tx[0].1);

    let busy = response(&req, 486);
    let t1 = t0 + Duration::from_secs(1);
    layer.send_response(id, busy.clone(), t1).unwrap();
    assert_eq!(layer.poll_transmit().unwrap().bytes, busy);
    let (tx, ev) = run_until(&mut layer, t0, Duration::from_secs(5));
    assert_eq!(times(&tx), vec![1500, 2500, 4500]);
    assert!(ev.is_empty());
    // The ACK is absorbed (Confirmed), stops Timer G and starts Timer I (T4).
    let t2 = t0 + Duration::from_secs(5);
    assert_eq!(
        recv(&mut layer, &ack("z9hG4bKsi"), t2),
        Incoming::Absorbed(id)
    );
    assert!(layer.poll_transmit().is_none());
    let (tx, ev) = run_until(&mut layer, t0, Duration::from_secs(60));
    assert!(tx.is_empty());
    assert_eq!(ev, vec![(10000, TxEvent::Terminated)]);
}

#[test]
fn invite_server_timer_h_without_ack() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKh", "ue.example.com");
    let Incoming::NewRequest(id) = recv(&mut layer, &req, t0) else {
        panic!("new request expected")
    };
    layer.send_response(id, response(&req, 180), t0).unwrap();
    layer
        .send_response(id, response(&req, 603), t0 + Duration::from_secs(1))
        .unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| layer.poll_transmit()).collect();
    assert_eq!(sent.len(), 2, "no automatic 100 after a provisional");
    let (tx, ev) = run_until(&mut layer, t0, Duration::from_secs(60));
    assert_eq!(
        times(&tx),
        vec![1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500]
    );
    assert_eq!(
        ev,
        vec![(33000, TxEvent::Timeout), (33000, TxEvent::Terminated)]
    );
}

#[test]
fn invite_server_2xx_ends_transaction_and_ack_is_stray() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bK2", "ue.example.com");
    let Incoming::NewRequest(id) = recv(&mut layer, &req, t0) else {
        panic!("new request expected")
    };
    layer.send_response(id, response(&req, 200), t0).unwrap();
    assert!(layer.poll_transmit().is_some());
    assert!(layer.is_empty());
    assert_eq!(recv(&mut layer, &ack("z9hG4bK2"), t0), Incoming::Stray);
}

#[test]
fn matching_uses_branch_sent_by_and_method() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let inv = request("INVITE", "z9hG4bKm", "ue.example.com");
    let Incoming::NewRequest(inv_id) = recv(&mut layer, &inv, t0) else {
        panic!()
    };
    // Same branch, other sent-by: a different transaction (17.2.3).
    let other = request("INVITE", "z9hG4bKm", "ue2.example.com");
    assert!(matches!(recv(&mut layer, &other, t0), Incoming::NewRequest(i) if i != inv_id));
    // Same branch and sent-by with explicit default port: the same transaction.
    let same = request("INVITE", "z9hG4bKm", "UE.example.com:5060");
    assert_eq!(recv(&mut layer, &same, t0), Incoming::Absorbed(inv_id));
    // CANCEL has its own transaction but finds the INVITE one.
    let cancel = request("CANCEL", "z9hG4bKm", "ue.example.com");
    let Incoming::NewRequest(cancel_id) = recv(&mut layer, &cancel, t0) else {
        panic!()
    };
    assert_ne!(cancel_id, inv_id);
    let c = Message::parse(&cancel).unwrap();
    assert_eq!(layer.invite_for_cancel(&c), Some(inv_id));

    // Client side: a response matches by branch and CSeq method (17.1.3).
    let out = request("INVITE", "z9hG4bKout", "pc.example.net");
    let out_id: TxId = layer
        .send_request(out.clone(), peer(Transport::Udp), t0)
        .unwrap();
    let cancel_out = request("CANCEL", "z9hG4bKout", "pc.example.net");
    let resp_to_cancel = response(&cancel_out, 200);
    assert_eq!(recv(&mut layer, &resp_to_cancel, t0), Incoming::Stray);
    assert_eq!(
        recv(&mut layer, &response(&out, 180), t0),
        Incoming::Response(out_id)
    );
    // A branch already in use cannot start a second client transaction.
    assert!(layer.send_request(out, peer(Transport::Udp), t0).is_err());
}

#[test]
fn layer_deadline_is_the_earliest_of_all_transactions() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    layer
        .send_request(
            request("OPTIONS", "z9hG4bK1", "a"),
            peer(Transport::Udp),
            t0 + Duration::from_millis(300),
        )
        .unwrap();
    layer
        .send_request(
            request("OPTIONS", "z9hG4bK2", "a"),
            peer(Transport::Udp),
            t0,
        )
        .unwrap();
    assert_eq!(layer.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    layer.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(layer.poll_timeout(), Some(t0 + Duration::from_millis(800)));
    assert_eq!(layer.len(), 2);
}

/// RFC 3261 8.1.3.1 / 18: a transport error on a request nothing has answered queues it once
/// more (timer B keeps its deadline); a second one removes the transaction for the TU to
/// fail; once answered, a transport error changes nothing.
#[test]
fn transport_error_resends_once_then_fails_and_ignores_answered_requests() {
    let t0 = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let req = request("INVITE", "z9hG4bKte", "pc.example.net");
    let id = layer
        .send_request(req.clone(), peer(Transport::Tcp), t0)
        .unwrap();
    assert_eq!(layer.poll_transmit().unwrap().bytes, req);
    assert_eq!(layer.transport_error(id), TransportErrorOutcome::Resent);
    assert_eq!(layer.poll_transmit().unwrap().bytes, req);
    assert_eq!(layer.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    assert_eq!(layer.transport_error(id), TransportErrorOutcome::Failed);
    assert!(layer.is_empty());
    assert!(
        layer.poll_event().is_none(),
        "no Terminated: the TU fails it"
    );
    assert_eq!(layer.transport_error(id), TransportErrorOutcome::Ignored);

    let req = request("OPTIONS", "z9hG4bKte2", "pc.example.net");
    let id = layer
        .send_request(req.clone(), peer(Transport::Tcp), t0)
        .unwrap();
    layer.poll_transmit().unwrap();
    let trying = response(&req, 100);
    let m = Message::parse(&trying).unwrap();
    layer.handle_message(&m, peer(Transport::Tcp), t0).unwrap();
    assert_eq!(layer.transport_error(id), TransportErrorOutcome::Ignored);
    assert!(layer.poll_transmit().is_none());
    assert_eq!(layer.len(), 1);
}
