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

/// What [`measure`] saw: the worker's copies, its ESP packets in and out, SIP messages it
/// delivered and the UE received.
struct Seen {
    tally: CopyTally,
    esp_in: u64,
    esp_out: u64,
    sip: usize,
    ue_sip: usize,
}

impl Seen {
    /// The copies site by site, to compare whole with [`expect`].
    fn sites(&self) -> Vec<(CopySite, u64, u64)> {
        let s = self.tally.nonzero();
        eprintln!("copies (site, copies, bytes): {s:?}");
        s
    }

    /// The IP header moves of the ESP packets seen (20 bytes each way per packet), then
    /// `payload`: the payload copies, in `CopySite` order after them.
    fn expect(&self, payload: &[(CopySite, u64, u64)]) -> Vec<(CopySite, u64, u64)> {
        let moves = [
            (CopySite::EspHeaderIn, self.esp_in, self.esp_in * IPV4_HDR),
            (
                CopySite::EspHeaderOut,
                self.esp_out,
                self.esp_out * IPV4_HDR,
            ),
        ];
        let moves = moves.into_iter().filter(|m| m.1 > 0);
        moves.chain(payload.iter().copied()).collect()
    }
}

/// [`N`] times: `each` (the UE sends, and/or returns a command for the worker's first round),
/// then `rounds` rounds of both sides; the copies the worker made meanwhile.
fn measure(
    t: &mut Bed,
    rounds: usize,
    mut each: impl FnMut(&mut Bed) -> Option<WorkerCommand>,
) -> Seen {
    let (sip, ue_got) = (t.sip, ue_sip(t));
    let (esp_in, esp_out) = (t.count("esp_in"), t.count("esp_out"));
    let mut tally = CopyTally::default();
    for _ in 0..N {
        let mut cmd = each(t);
        for _ in 0..rounds {
            round(t, cmd.take(), &mut tally);
        }
    }
    Seen {
        tally,
        esp_in: t.count("esp_in") - esp_in,
        esp_out: t.count("esp_out") - esp_out,
        sip: t.sip - sip,
        ue_sip: ue_sip(t) - ue_got,
    }
}

/// The worker's command to send `m` to the UE over `proto` (port_ps -> port_uc).
fn send(proto: Transport, m: &[u8]) -> Option<WorkerCommand> {
    Some(WorkerCommand::Send {
        flow: pcscf_flow(proto),
        bytes: m.to_vec(),
        connect_if_absent: false,
    })
}

/// Payload bytes of [`N`] messages of [`MSG_LEN`].
const BYTES: u64 = (N * MSG_LEN) as u64;
/// [`N`] as a count of copies.
const NN: u64 = N as u64;

#[test]
fn a_protected_tcp_message_in_costs_one_copy_in_smoltcp_and_one_into_its_vec() {
    let mut t = established();
    let m = sip_message(MSG_LEN);
    let seen = measure(&mut t, 3, |t| {
        t.ue.send(ue_flow(Transport::Tcp), &m, false).unwrap();
        None
    });
    assert_eq!(seen.sip, N, "every message delivered");
    assert!(seen.esp_in >= NN && seen.esp_out > 0);
    // The worker answers with bare ACKs: nothing copied of them but their IP header.
    let payload = [
        (CopySite::StackRx, NN, BYTES),
        (CopySite::Message, NN, BYTES),
    ];
    assert_eq!(seen.sites(), seen.expect(&payload));
}

#[test]
fn two_messages_in_one_segment_are_cut_out_where_they_lie() {
    let mut t = established();
    let m = sip_message(MSG_LEN / 2);
    let seen = measure(&mut t, 3, |t| {
        // Both queued before the UE's stack polls: one segment carries both.
        t.ue.send(ue_flow(Transport::Tcp), &m, false).unwrap();
        t.ue.send(ue_flow(Transport::Tcp), &m, false).unwrap();
        None
    });
    assert_eq!(seen.sip, 2 * N, "every message delivered");
    // Nothing goes through the framer's buffer: each message is copied out of the socket's
    // ring once (before, both were buffered and then copied out of the buffer again).
    let payload = [
        (CopySite::StackRx, NN, BYTES),
        (CopySite::Message, 2 * NN, BYTES),
    ];
    assert_eq!(seen.sites(), seen.expect(&payload));
}

#[test]
fn a_protected_tcp_message_out_costs_one_copy_into_the_socket_and_one_into_the_tx_buffer() {
    let mut t = established();
    let m = sip_message(MSG_LEN);
    let seen = measure(&mut t, 3, |_| send(Transport::Tcp, &m));
    assert_eq!(seen.ue_sip, N, "every message reached the UE");
    assert!(seen.esp_out >= NN && seen.esp_in > 0);
    let payload = [
        (CopySite::StackSend, NN, BYTES),
        (CopySite::StackTx, NN, BYTES),
    ];
    assert_eq!(seen.sites(), seen.expect(&payload));
}

#[test]
fn a_protected_udp_message_costs_two_copies_each_way() {
    let mut t = bed();
    let m = sip_message(MSG_LEN);
    let seen = measure(&mut t, 2, |t| {
        t.ue.send(ue_flow(Transport::Udp), &m, false).unwrap();
        None
    });
    assert_eq!(seen.sip, N, "every datagram delivered");
    assert_eq!((seen.esp_in, seen.esp_out), (NN, 0));
    let payload = [
        (CopySite::StackRx, NN, BYTES),
        (CopySite::UdpMessage, NN, BYTES),
    ];
    assert_eq!(seen.sites(), seen.expect(&payload));
    let seen = measure(&mut t, 2, |_| send(Transport::Udp, &m));
    assert_eq!(seen.ue_sip, N, "every datagram reached the UE");
    assert_eq!((seen.esp_in, seen.esp_out), (0, NN));
    let payload = [
        (CopySite::StackSend, NN, BYTES),
        (CopySite::StackTx, NN, BYTES),
    ];
    assert_eq!(seen.sites(), seen.expect(&payload));
}
