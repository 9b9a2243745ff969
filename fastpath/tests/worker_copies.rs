//! Copies of packet bytes per SIP message through a real worker with SAs (issue 11), counted
//! by `akagate_fastpath::copies` at every place the fast path copies packet bytes, like the
//! no-allocation test counts allocations. Only the worker's calls are counted (the simulated
//! UE copies freely).
//!
//! What a protected SIP message costs, exactly:
//! - in, TCP or UDP: the IP header moved over the ESP header and IV once per ESP packet (the
//!   payload is decrypted and stays in the receive buffer), smoltcp's copy of the payload into
//!   its socket, and the one copy that cuts the message out into the `Vec` the slowpath gets;
//!   two messages in one segment are cut out where they lie, not buffered first;
//! - out, TCP or UDP: the message into the socket's send buffer, smoltcp's copy of it into
//!   the transmit buffer of the port's pool, and the IP header moved into the headroom in
//!   front of it once per ESP packet (ESP header, IV and trailer are written around the
//!   payload in that buffer, and it is encrypted there).
//!
//! Each test asserts the complete list of places that copied, so a copy added anywhere on
//! the path fails it.

mod support;

use akagate_fastpath::copies::{self, CopySite, CopyTally};
use akagate_fastpath::ipc::{Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::stack::StackConfig;
use support::protected::{pcscf_flow, ue_flow, Bed};

/// Bytes of every message: a quarter of the worker's TCP receive ring, so messages never
/// straddle its wrap (one that does is assembled in the framer's buffer instead: the same
/// bytes, copied once, in two pieces).
const MSG_LEN: usize = 512;
/// The worker's TCP receive buffer.
const RX_RING: usize = 4 * MSG_LEN;
/// Messages measured per test.
const N: usize = 40;
/// Bytes of the inner IPv4 header moved per ESP packet.
const IPV4_HDR: u64 = 20;

/// A SIP MESSAGE request of exactly `len` bytes (RFC 3428), its body padding it out.
fn sip_message(len: usize) -> Vec<u8> {
    let head = |body: usize| {
        format!(
            "MESSAGE sip:ue@ims.example SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.7:31800;branch=z9hG4bK1\r\nContent-Type: text/plain\r\nContent-Length: {body:04}\r\n\r\n"
        )
    };
    let body = len - head(0).len();
    let mut m = head(body).into_bytes();
    m.resize(len, b'x');
    m
}

/// The bed with the worker's TCP receive ring at [`RX_RING`] and the UE's send ring holding
/// a whole number of messages.
fn bed() -> Bed {
    let ue_cfg = StackConfig {
        tcp_tx_buf: MSG_LEN * 16,
        ..StackConfig::default()
    };
    Bed::new(|c| c.stack.tcp_rx_buf = RX_RING, ue_cfg)
}

/// One round of both sides; `cmd` (if any) goes to the worker before its `run_once`. Adds
/// the copies the worker made to `tally`.
fn round(t: &mut Bed, cmd: Option<WorkerCommand>, tally: &mut CopyTally) {
    *tally += t.round(|w, now| {
        let _ = copies::take();
        if let Some(c) = cmd {
            w.command(c, now);
        }
        w.run_once(now);
        copies::take()
    });
}

/// The bed with the protected TCP connection port_uc -> port_ps open (one message over it)
/// and settled.
fn established() -> Bed {
    let mut t = bed();
    let m = sip_message(MSG_LEN);
    t.ue.send(ue_flow(Transport::Tcp), &m, true).unwrap();
    let mut ignore = CopyTally::default();
    for _ in 0..20 {
        round(&mut t, None, &mut ignore);
    }
    assert_eq!(t.sip, 1, "a message over the protected connection");
    t
}

/// Messages the UE's stack received.
fn ue_sip(t: &Bed) -> usize {
    t.ue_events
        .iter()
        .filter(|e| matches!(e, WorkerEvent::Sip(s) if s.bytes.len() == MSG_LEN))
        .count()
}

/// The copies of `tally`, site by site, to compare whole.
fn sites(tally: &CopyTally) -> Vec<(CopySite, u64, u64)> {
    let s = tally.nonzero();
    eprintln!("copies (site, copies, bytes): {s:?}");
    s
}

/// The worker's ESP packets in and out since `before`.
fn esp_delta(t: &Bed, before: (u64, u64)) -> (u64, u64) {
    (t.count("esp_in") - before.0, t.count("esp_out") - before.1)
}

#[test]
fn a_protected_tcp_message_in_costs_one_copy_in_smoltcp_and_one_into_its_vec() {
    let mut t = established();
    let m = sip_message(MSG_LEN);
    let (sip, before) = (t.sip, (t.count("esp_in"), t.count("esp_out")));
    let mut tally = CopyTally::default();
    for _ in 0..N {
        t.ue.send(ue_flow(Transport::Tcp), &m, false).unwrap();
        for _ in 0..3 {
            round(&mut t, None, &mut tally);
        }
    }
    assert_eq!(t.sip - sip, N, "every message delivered");
    let (esp_in, esp_out) = esp_delta(&t, before);
    assert!(esp_in >= N as u64 && esp_out > 0);
    let n = N as u64;
    let bytes = n * MSG_LEN as u64;
    // The worker answers with bare ACKs: headers only, nothing copied but their IP header.
    assert_eq!(
        sites(&tally),
        vec![
            (CopySite::EspHeaderIn, esp_in, esp_in * IPV4_HDR),
            (CopySite::EspHeaderOut, esp_out, esp_out * IPV4_HDR),
            (CopySite::StackRx, n, bytes),
            (CopySite::Message, n, bytes),
        ]
    );
}

#[test]
fn two_messages_in_one_segment_are_cut_out_where_they_lie() {
    let mut t = established();
    let m = sip_message(MSG_LEN / 2);
    let (sip, before) = (t.sip, (t.count("esp_in"), t.count("esp_out")));
    let mut tally = CopyTally::default();
    for _ in 0..N {
        // Both queued before the UE's stack polls: one segment carries both.
        t.ue.send(ue_flow(Transport::Tcp), &m, false).unwrap();
        t.ue.send(ue_flow(Transport::Tcp), &m, false).unwrap();
        for _ in 0..3 {
            round(&mut t, None, &mut tally);
        }
    }
    assert_eq!(t.sip - sip, 2 * N, "every message delivered");
    let (esp_in, esp_out) = esp_delta(&t, before);
    let n = N as u64;
    let bytes = n * MSG_LEN as u64;
    // Nothing goes through the framer's buffer: each message is copied out of the socket's
    // ring once (before, both were buffered and the first copied out of the buffer again).
    assert_eq!(
        sites(&tally),
        vec![
            (CopySite::EspHeaderIn, esp_in, esp_in * IPV4_HDR),
            (CopySite::EspHeaderOut, esp_out, esp_out * IPV4_HDR),
            (CopySite::StackRx, n, bytes),
            (CopySite::Message, 2 * n, bytes),
        ]
    );
}

#[test]
fn a_protected_tcp_message_out_costs_one_copy_into_the_socket_and_one_into_the_tx_buffer() {
    let mut t = established();
    let m = sip_message(MSG_LEN);
    let (got, before) = (ue_sip(&t), (t.count("esp_in"), t.count("esp_out")));
    let mut tally = CopyTally::default();
    for _ in 0..N {
        let send = WorkerCommand::Send {
            flow: pcscf_flow(Transport::Tcp),
            bytes: m.clone(),
            connect_if_absent: false,
        };
        round(&mut t, Some(send), &mut tally);
        for _ in 0..2 {
            round(&mut t, None, &mut tally);
        }
    }
    assert_eq!(ue_sip(&t) - got, N, "every message reached the UE");
    let (esp_in, esp_out) = esp_delta(&t, before);
    assert!(esp_out >= N as u64 && esp_in > 0);
    let n = N as u64;
    let bytes = n * MSG_LEN as u64;
    assert_eq!(
        sites(&tally),
        vec![
            (CopySite::EspHeaderIn, esp_in, esp_in * IPV4_HDR),
            (CopySite::EspHeaderOut, esp_out, esp_out * IPV4_HDR),
            (CopySite::StackSend, n, bytes),
            (CopySite::StackTx, n, bytes),
        ]
    );
}

#[test]
fn a_protected_udp_message_costs_two_copies_each_way() {
    let mut t = bed();
    let m = sip_message(MSG_LEN);
    let mut tally = CopyTally::default();
    for _ in 0..N {
        t.ue.send(ue_flow(Transport::Udp), &m, false).unwrap();
        for _ in 0..2 {
            round(&mut t, None, &mut tally);
        }
    }
    assert_eq!(t.sip, N, "every datagram delivered");
    let n = N as u64;
    let bytes = n * MSG_LEN as u64;
    assert_eq!(t.count("esp_in"), n);
    assert_eq!(
        sites(&tally),
        vec![
            (CopySite::EspHeaderIn, n, n * IPV4_HDR),
            (CopySite::StackRx, n, bytes),
            (CopySite::UdpMessage, n, bytes),
        ]
    );
    let mut tally = CopyTally::default();
    for _ in 0..N {
        let send = WorkerCommand::Send {
            flow: pcscf_flow(Transport::Udp),
            bytes: m.clone(),
            connect_if_absent: false,
        };
        round(&mut t, Some(send), &mut tally);
        round(&mut t, None, &mut tally);
    }
    assert_eq!(ue_sip(&t), N, "every datagram reached the UE");
    assert_eq!(t.count("esp_out"), n);
    assert_eq!(
        sites(&tally),
        vec![
            (CopySite::EspHeaderOut, n, n * IPV4_HDR),
            (CopySite::StackSend, n, bytes),
            (CopySite::StackTx, n, bytes),
        ]
    );
}
