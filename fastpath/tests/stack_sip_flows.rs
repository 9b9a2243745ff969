//! Two per-UE stacks talking over in-memory queues: a "UE" (the stack type in client role)
//! and the P-CSCF's stack for that UE. Checks SIP framing on TCP, the P-CSCF-initiated
//! port_pc -> port_us connection, keep-alives, listener re-arming and UDP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod support;

use akagate_fastpath::ipc::{Flow, SipIn, Transport, WorkerEvent};
use akagate_fastpath::stack::ports::{transport_ports, Ports};
use akagate_fastpath::stack::{StackConfig, StackError, UeStack};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket};
use support::{PORT_PC, PORT_PS, PORT_UC, PORT_US, SIP_PORT};

const P4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const U4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 7));
const SPI_PS: u32 = 0x1000_0101;

const REGISTER: &[u8] = include_bytes!("fixtures/stack/register_boghe_openims.sip");
const REGISTER_V6: &[u8] = include_bytes!("fixtures/stack/register_chinamobile_ipv6_compact.sip");

fn invite(body_len: usize) -> Vec<u8> {
    let mut m = format!(
        "INVITE sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/TCP 10.45.0.7:31800;branch=z9hG4bK1\r\nContent-Type: application/sdp\r\nContent-Length: {body_len}\r\n\r\n"
    )
    .into_bytes();
    m.extend((0..body_len).map(|i| b'a' + (i % 26) as u8));
    m
}

/// An INVITE of exactly `total` bytes.
fn invite_of_len(total: usize) -> Vec<u8> {
    // The header is under 300 bytes, so the body is at least `total - 300`.
    let m = (total.saturating_sub(300)..total)
        .map(invite)
        .find(|m| m.len() == total)
        .unwrap();
    assert_eq!(m.len(), total);
    m
}

/// Both ends of one UE's traffic, the packets between them, and a clock.
struct Link {
    pcscf: UeStack,
    ue: UeStack,
    now: Instant,
    /// Events of the P-CSCF stack and of the UE stack.
    ev_p: Vec<WorkerEvent>,
    ev_u: Vec<WorkerEvent>,
    /// Every packet the P-CSCF sent and every packet the UE sent.
    wire_p: Vec<Vec<u8>>,
    wire_u: Vec<Vec<u8>>,
}

impl Link {
    fn new(p: IpAddr, u: IpAddr, cfg: StackConfig) -> Link {
        Link::with(p, u, cfg, StackConfig::default())
    }

    fn with(p: IpAddr, u: IpAddr, cfg: StackConfig, ue_cfg: StackConfig) -> Link {
        let now = Instant::from_millis(1_000);
        let mut pcscf = UeStack::new(cfg, p, u, now).unwrap();
        pcscf.listen(SIP_PORT, true, true);
        pcscf.listen(PORT_PS, true, true);
        pcscf.listen(PORT_PC, false, true);
        let mut ue = UeStack::new(ue_cfg, u, p, now).unwrap();
        ue.listen(PORT_US, true, true);
        ue.listen(PORT_UC, false, true);
        Link {
            pcscf,
            ue,
            now,
            ev_p: vec![],
            ev_u: vec![],
            wire_p: vec![],
            wire_u: vec![],
        }
    }

    /// Runs both stacks for `rounds` steps of 5 ms, moving packets both ways. Packets from
    /// the UE to port_ps are tagged as having come through SPI_PS.
    fn pump(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.pcscf.poll(self.now, &mut self.ev_p);
            self.ue.poll(self.now, &mut self.ev_u);
            while let Some(pk) = self.ue.pop_outbound() {
                let spi = match transport_ports(&pk) {
                    Some(Ports { dst: PORT_PS, .. }) => Some(SPI_PS),
                    _ => None,
                };
                self.wire_u.push(pk.clone());
                self.pcscf.push_inbound(pk, spi).unwrap();
            }
            while let Some(pk) = self.pcscf.pop_outbound() {
                self.wire_p.push(pk.clone());
                self.ue.push_inbound(pk, None).unwrap();
            }
            self.now += Duration::from_millis(5);
        }
    }

    fn sip_p(&self) -> Vec<&SipIn> {
        sips(&self.ev_p)
    }
}

fn sips(ev: &[WorkerEvent]) -> Vec<&SipIn> {
    ev.iter()
        .filter_map(|e| match e {
            WorkerEvent::Sip(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The UE's flow to our port `local_port` as the UE stack sees it.
fn ue_side(link: &Link, ue_port: u16, pcscf_port: u16, proto: Transport) -> Flow {
    Flow {
        ue: link.pcscf.local(),
        ue_port: pcscf_port,
        local: link.ue.local(),
        local_port: ue_port,
        proto,
    }
}

/// The same flow as the P-CSCF sees it.
fn pcscf_side(link: &Link, ue_port: u16, pcscf_port: u16, proto: Transport) -> Flow {
    Flow {
        ue: link.ue.local(),
        ue_port,
        local: link.pcscf.local(),
        local_port: pcscf_port,
        proto,
    }
}

/// TCP payloads (non-empty) in a list of IPv4 packets, with their ports.
fn tcp_payloads(wire: &[Vec<u8>]) -> Vec<(u16, u16, Vec<u8>)> {
    wire.iter()
        .filter_map(|pk| {
            let ip = Ipv4Packet::new_checked(pk.as_slice()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (!tcp.payload().is_empty())
                .then(|| (tcp.src_port(), tcp.dst_port(), tcp.payload().to_vec()))
        })
        .collect()
}

fn syns(wire: &[Vec<u8>]) -> Vec<(u16, u16)> {
    wire.iter()
        .filter_map(|pk| {
            let ip = Ipv4Packet::new_checked(pk.as_slice()).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (tcp.syn() && !tcp.ack()).then(|| (tcp.src_port(), tcp.dst_port()))
        })
        .collect()
}

#[test]
fn two_messages_in_one_segment_over_port_ps() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let both = [REGISTER, &invite(10)[..]].concat();
    l.ue.send(ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp), &both, true)
        .unwrap();
    l.pump(20);
    // Both messages travelled in one TCP segment.
    let segs = tcp_payloads(&l.wire_u);
    assert_eq!(segs, vec![(PORT_UC, PORT_PS, both.clone())]);
    let got = l.sip_p();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].bytes, REGISTER);
    assert_eq!(got[1].bytes, invite(10));
    for s in got {
        assert_eq!(s.flow, pcscf_side(&l, PORT_UC, PORT_PS, Transport::Tcp));
        assert_eq!(s.via_spi, Some(SPI_PS));
    }
}

#[test]
fn one_message_over_many_segments() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let msg = invite(3000);
    let flow = ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp);
    for chunk in msg.chunks(97) {
        l.ue.send(flow, chunk, true).unwrap();
        l.pump(2);
        assert!(l.sip_p().is_empty() || chunk.as_ptr_range().end == msg.as_ptr_range().end);
    }
    l.pump(20);
    assert!(tcp_payloads(&l.wire_u).len() >= msg.len() / 97);
    let got = l.sip_p();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, msg);
}

#[test]
fn pcscf_opens_port_pc_to_port_us_then_closes_and_reopens_from_port_pc() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let flow = pcscf_side(&l, PORT_US, PORT_PC, Transport::Tcp);
    // No connection yet and none requested.
    assert_eq!(
        l.pcscf.send(flow, b"x", false),
        Err(StackError::NoConnection)
    );
    let msg = invite(20);
    l.pcscf.send(flow, &msg, true).unwrap();
    l.pump(20);
    assert_eq!(syns(&l.wire_p), vec![(PORT_PC, PORT_US)]);
    let got = sips(&l.ev_u);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, msg);
    assert_eq!(got[0].flow, ue_side(&l, PORT_US, PORT_PC, Transport::Tcp));
    assert!(l.pcscf.is_established(&flow));

    // The UE answers on the same connection.
    let answer = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    l.ue.send(ue_side(&l, PORT_US, PORT_PC, Transport::Tcp), answer, false)
        .unwrap();
    l.pump(10);
    assert_eq!(l.sip_p().last().unwrap().bytes, answer);
    assert_eq!(l.sip_p().last().unwrap().flow, flow);

    l.pcscf.close(flow).unwrap();
    l.pump(40);
    assert!(l
        .ev_p
        .iter()
        .any(|e| matches!(e, WorkerEvent::TcpClosed(f) if *f == flow)));
    assert_eq!(l.pcscf.tcp_connections(), 0);
    assert!(l.pcscf.is_idle());

    // Reopened from port_pc, never from 5060.
    l.pcscf.send(flow, &msg, true).unwrap();
    l.pump(20);
    assert_eq!(
        syns(&l.wire_p),
        vec![(PORT_PC, PORT_US), (PORT_PC, PORT_US)]
    );
    assert_eq!(sips(&l.ev_u).len(), 2);
    assert!(l
        .wire_p
        .iter()
        .all(|p| transport_ports(p).is_some_and(|p| p.src != SIP_PORT)));
}

#[test]
fn connect_to_closed_port_reports_connect_failed() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let flow = pcscf_side(&l, 40000, PORT_PC, Transport::Tcp);
    l.pcscf.send(flow, b"x", true).unwrap();
    l.pump(10);
    assert!(matches!(l.ev_p.as_slice(), [WorkerEvent::ConnectFailed(f)] if *f == flow));
}

#[test]
fn crlfcrlf_ping_is_answered_by_crlf() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let flow = ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp);
    l.ue.send(flow, REGISTER, true).unwrap();
    l.pump(10);
    l.ue.send(flow, b"\r\n\r\n", false).unwrap();
    l.pump(10);
    let from_p = tcp_payloads(&l.wire_p);
    assert_eq!(from_p, vec![(PORT_PS, PORT_UC, b"\r\n".to_vec())]);
    assert_eq!(l.pcscf.counters().pings_answered, 1);
    assert_eq!(l.sip_p().len(), 1);
}

#[test]
fn listener_rearmed_for_successive_connections_to_5060() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    // Both SYNs reach the P-CSCF in the same poll.
    l.ue.send(ue_side(&l, 40001, SIP_PORT, Transport::Tcp), REGISTER, true)
        .unwrap();
    l.ue.send(
        ue_side(&l, 40002, SIP_PORT, Transport::Tcp),
        &invite(5),
        true,
    )
    .unwrap();
    l.pump(20);
    let mut got: Vec<(u16, Vec<u8>)> = l
        .sip_p()
        .iter()
        .map(|s| (s.flow.ue_port, s.bytes.clone()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(40001, REGISTER.to_vec()), (40002, invite(5))]);
    assert!(l
        .sip_p()
        .iter()
        .all(|s| s.via_spi.is_none() && s.flow.local_port == SIP_PORT));
    // A third one later still finds a listener.
    l.ue.send(ue_side(&l, 40003, SIP_PORT, Transport::Tcp), REGISTER, true)
        .unwrap();
    l.pump(10);
    assert_eq!(l.sip_p().len(), 3);
    assert_eq!(l.pcscf.counters().accepted, 3);
}

/// A recycling stack (the worker's) keeps the socket of a connection that ended and gives it
/// to the next listener: that connection carries messages both ways like one on a new socket
/// (smoltcp resets the socket when it listens; nothing of the old connection is read).
#[test]
fn a_recycled_socket_carries_the_next_connection() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    l.pcscf.recycle_sockets();
    let first = ue_side(&l, 40001, SIP_PORT, Transport::Tcp);
    l.ue.send(first, REGISTER, true).unwrap();
    l.pump(10);
    l.pcscf
        .send(
            pcscf_side(&l, 40001, SIP_PORT, Transport::Tcp),
            &invite(900),
            false,
        )
        .unwrap();
    l.pump(10);
    l.ue.close(first).unwrap();
    l.pump(40);
    assert_eq!(l.pcscf.socket_count(), 0);
    assert_eq!(
        akagate_fastpath::stack::spare_sockets(),
        1,
        "kept, not freed"
    );
    let second = ue_side(&l, 40002, SIP_PORT, Transport::Tcp);
    l.ue.send(second, &invite(1500), true).unwrap();
    l.pump(10);
    assert_eq!(
        akagate_fastpath::stack::spare_sockets(),
        0,
        "taken by the listener"
    );
    let got: Vec<(u16, Vec<u8>)> = l
        .sip_p()
        .iter()
        .map(|s| (s.flow.ue_port, s.bytes.clone()))
        .collect();
    assert_eq!(got, vec![(40001, REGISTER.to_vec()), (40002, invite(1500))]);
    l.pcscf
        .send(
            pcscf_side(&l, 40002, SIP_PORT, Transport::Tcp),
            REGISTER,
            false,
        )
        .unwrap();
    l.pump(10);
    let to_ue: Vec<(u16, Vec<u8>)> = sips(&l.ev_u)
        .iter()
        .map(|s| (s.flow.local_port, s.bytes.clone()))
        .collect();
    assert_eq!(
        to_ue,
        vec![(40001, invite(900)), (40002, REGISTER.to_vec())]
    );
}

/// A reserve of spare sockets made at start (`reserve_spare_sockets`, what a worker sized for
/// its UEs makes) serves the listeners of recycling stacks of the matching buffer sizes only,
/// each connection carrying messages both ways; the thread then keeps as many spares as the
/// reserve (not only the default 64), and a second reserve of the same size makes none.
#[test]
fn a_socket_reserve_serves_new_connections_and_raises_the_spare_cap() {
    use akagate_fastpath::stack::{reserve_spare_sockets, spare_sockets};
    let cfg = StackConfig::default();
    let n = 100;
    assert_eq!(reserve_spare_sockets(n, cfg.tcp_rx_buf, cfg.tcp_tx_buf), n);
    assert_eq!(spare_sockets(), n);
    assert_eq!(reserve_spare_sockets(n, cfg.tcp_rx_buf, cfg.tcp_tx_buf), 0);
    // A stack with other buffer sizes does not take them.
    let other = StackConfig {
        tcp_rx_buf: 2 * cfg.tcp_rx_buf,
        ..StackConfig::default()
    };
    let mut o = Link::new(P4, U4, other);
    o.pcscf.recycle_sockets();
    o.ue.send(ue_side(&o, 40001, SIP_PORT, Transport::Tcp), REGISTER, true)
        .unwrap();
    o.pump(10);
    assert_eq!(o.sip_p().len(), 1);
    assert_eq!(spare_sockets(), n, "no spare of another size taken");
    // Stacks of the reserve's sizes take one each, and talk both ways over it.
    let mut links: Vec<Link> = (0..3)
        .map(|_| {
            let mut l = Link::new(P4, U4, cfg.clone());
            l.pcscf.recycle_sockets();
            l
        })
        .collect();
    for (i, l) in links.iter_mut().enumerate() {
        let port = 41000 + i as u16;
        l.ue.send(
            ue_side(l, port, SIP_PORT, Transport::Tcp),
            &invite(1500 + i),
            true,
        )
        .unwrap();
        l.pump(10);
        l.pcscf
            .send(
                pcscf_side(l, port, SIP_PORT, Transport::Tcp),
                REGISTER,
                false,
            )
            .unwrap();
        l.pump(10);
        let got: Vec<Vec<u8>> = l.sip_p().iter().map(|s| s.bytes.clone()).collect();
        assert_eq!(got, vec![invite(1500 + i)]);
        let to_ue: Vec<Vec<u8>> = sips(&l.ev_u).iter().map(|s| s.bytes.clone()).collect();
        assert_eq!(to_ue, vec![REGISTER.to_vec()]);
    }
    assert_eq!(spare_sockets(), n - 3, "one taken per connection");
    // Closed, each comes back: the cap is the reserve's, so all of them are kept.
    for (i, l) in links.iter_mut().enumerate() {
        l.ue.close(ue_side(l, 41000 + i as u16, SIP_PORT, Transport::Tcp))
            .unwrap();
        l.pump(40);
        assert_eq!(l.pcscf.socket_count(), 0);
    }
    assert_eq!(spare_sockets(), n);
}

#[test]
fn connection_limit_refuses_then_recovers() {
    let cfg = StackConfig {
        max_tcp_conns: 1,
        ..StackConfig::default()
    };
    let mut l = Link::with(P4, U4, cfg, StackConfig::default());
    let first = ue_side(&l, 40001, SIP_PORT, Transport::Tcp);
    l.ue.send(first, REGISTER, true).unwrap();
    l.pump(10);
    l.ue.send(ue_side(&l, 40002, SIP_PORT, Transport::Tcp), REGISTER, true)
        .unwrap();
    l.pump(10);
    assert_eq!(l.sip_p().len(), 1);
    assert!(l
        .ev_u
        .iter()
        .any(|e| matches!(e, WorkerEvent::ConnectFailed(f) if f.local_port == 40002)));
    l.ue.close(first).unwrap();
    l.pump(40);
    l.ue.send(ue_side(&l, 40003, SIP_PORT, Transport::Tcp), REGISTER, true)
        .unwrap();
    l.pump(10);
    assert_eq!(l.sip_p().len(), 2);
}

#[test]
fn framing_error_aborts_connection() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let flow = ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp);
    l.ue.send(
        flow,
        b"REGISTER sip:x SIP/2.0\r\nContent-Length: zz\r\n\r\n",
        true,
    )
    .unwrap();
    l.pump(10);
    assert_eq!(l.pcscf.counters().framing_errors, 1);
    assert!(matches!(l.ev_p.as_slice(), [WorkerEvent::TcpClosed(f)] if f.ue_port == PORT_UC));
    assert_eq!(l.pcscf.tcp_connections(), 0);
    // The UE was told with a RST.
    assert!(l.wire_p.iter().any(|pk| {
        let ip = Ipv4Packet::new_checked(pk.as_slice()).unwrap();
        TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.rst())
    }));
    // The UE's bytes went unacknowledged: to it, they are lost.
    assert!(l
        .ev_u
        .iter()
        .any(|e| matches!(e, WorkerEvent::TcpClosed(_) | WorkerEvent::SendLost(_))));
}

/// A link on which the UE (port 45000) sent a REGISTER to the SIP port over UDP.
fn udp_registering_link() -> Link {
    let mut l = Link::new(P4, U4, StackConfig::default());
    l.ue.listen(45000, false, true);
    l.ue.send(
        ue_side(&l, 45000, SIP_PORT, Transport::Udp),
        REGISTER,
        false,
    )
    .unwrap();
    l.pump(3);
    l
}

#[test]
fn udp_datagrams_and_large_udp_request_goes_over_tcp() {
    let mut l = udp_registering_link();
    let got = l.sip_p();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, REGISTER);
    assert_eq!(got[0].flow, pcscf_side(&l, 45000, SIP_PORT, Transport::Udp));

    // With an inner MTU of 1400, a 1200-byte request fits UDP; one byte more must go over
    // TCP (RFC 3261 18.1.1: within 200 bytes of the path MTU).
    let small = invite_of_len(1200);
    let big = invite_of_len(1201);
    let udp = pcscf_side(&l, PORT_US, PORT_PC, Transport::Udp);
    l.pcscf.send(udp, &small, false).unwrap();
    l.pcscf.send(udp, &big, false).unwrap();
    l.pump(20);
    let at_ue = sips(&l.ev_u);
    assert_eq!(at_ue.len(), 2);
    assert_eq!(
        (at_ue[0].flow.proto, at_ue[0].bytes.len()),
        (Transport::Udp, small.len())
    );
    assert_eq!(at_ue[0].bytes, small);
    assert_eq!(
        (at_ue[1].flow.proto, at_ue[1].bytes.len()),
        (Transport::Tcp, big.len())
    );
    assert_eq!(at_ue[1].bytes, big);
    assert_eq!(syns(&l.wire_p), vec![(PORT_PC, PORT_US)]);
}

/// A UDP response has no TCP to go over (RFC 3261 18.2.2): one above the inner MTU leaves the
/// stack whole, as one IP packet without Don't Fragment, for the worker to encapsulate and then
/// fragment (RFC 4303 3.1.1; `worker_udp_fragments.rs`). Smoltcp's UDP socket lost it before,
/// then the stack refused it.
#[test]
fn udp_response_above_the_mtu_leaves_the_stack_whole() {
    let mut l = udp_registering_link();
    // The UE end takes datagrams of any size (its receive buffer is the only bound here).
    l.ue = UeStack::new(
        StackConfig {
            udp_rx_buf: 128 * 1024,
            ..StackConfig::default()
        },
        U4,
        P4,
        l.now,
    )
    .unwrap();
    l.ue.listen(45000, false, true);
    let udp = pcscf_side(&l, 45000, SIP_PORT, Transport::Udp);
    let response = |len: usize| {
        let mut r = b"SIP/2.0 401 Unauthorized\r\nContent-Length: 0\r\nX-Pad: ".to_vec();
        r.resize(len - 4, b'a');
        r.extend_from_slice(b"\r\n\r\n");
        r
    };
    // 20 (IPv4) + 8 (UDP) + 1372 = 1400, the inner MTU: smoltcp's own; one more byte: ours.
    let lens = [1372, 1373, 3000, 60_000];
    for len in lens {
        assert_eq!(l.pcscf.send(udp, &response(len), false), Ok(()), "{len}");
        l.pump(2);
    }
    let at_ue = sips(&l.ev_u);
    assert_eq!(at_ue.len(), lens.len());
    for (m, len) in at_ue.iter().zip(lens) {
        assert!(m.bytes == response(len), "{len}");
        assert_eq!(m.flow.ue_port, SIP_PORT);
    }
    let udp_packets: Vec<&Vec<u8>> = l.wire_p.iter().filter(|p| p[9] == 17).collect();
    assert_eq!(
        udp_packets.iter().map(|p| p.len()).collect::<Vec<_>>(),
        lens.map(|n| n + 28)
    );
    for p in &udp_packets[1..] {
        let ip = Ipv4Packet::new_checked(p.as_slice()).unwrap();
        assert!(ip.verify_checksum() && !ip.dont_frag() && !ip.more_frags());
    }
    assert!(l.pcscf.is_idle());

    // Beyond what an IP packet can hold once ESP is added: refused, typed.
    assert_eq!(
        l.pcscf.send(udp, &response(65535 - 28 - 63), false),
        Err(StackError::UdpTooLarge)
    );
    // The datagrams waiting for a poll are bounded by `max_pending` (64 KiB).
    assert_eq!(l.pcscf.send(udp, &response(40_000), false), Ok(()));
    assert_eq!(
        l.pcscf.send(udp, &response(40_000), false),
        Err(StackError::UdpBufferFull)
    );
    assert_eq!(l.pcscf.queued_bytes(SIP_PORT, 45000), 40_000);
}

/// The same over IPv6 (no Don't Fragment bit; the worker adds a Fragment header).
#[test]
fn ipv6_udp_response_above_the_mtu_leaves_the_stack_whole() {
    let p: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let u: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 0, 0, 0, 0, 7));
    let mut l = Link::new(p, u, StackConfig::default());
    l.ue.listen(45000, false, true);
    l.ue.send(
        ue_side(&l, 45000, SIP_PORT, Transport::Udp),
        REGISTER_V6,
        false,
    )
    .unwrap();
    l.pump(3);
    let mut big = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\nX-Pad: ".to_vec();
    big.resize(2996, b'b');
    big.extend_from_slice(b"\r\n\r\n");
    let udp = pcscf_side(&l, 45000, SIP_PORT, Transport::Udp);
    l.pcscf.send(udp, &big, false).unwrap();
    l.pump(2);
    let at_ue = sips(&l.ev_u);
    assert_eq!(at_ue.len(), 1);
    assert!(at_ue[0].bytes == big);
    assert!(l
        .wire_p
        .iter()
        .any(|p| p.len() == 40 + 8 + 3000 && p[6] == 17));
}

#[test]
fn ipv6_register_over_port_ps() {
    let p: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let u: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 0, 0, 0, 0, 7));
    let mut l = Link::new(p, u, StackConfig::default());
    l.ue.send(
        ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp),
        REGISTER_V6,
        true,
    )
    .unwrap();
    l.pump(10);
    let got = l.sip_p();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, REGISTER_V6);
    assert_eq!(got[0].flow.ue, u);
    assert_eq!(got[0].via_spi, Some(SPI_PS));
}

#[test]
fn mixed_families_are_refused() {
    let v6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert!(UeStack::new(StackConfig::default(), P4, v6, Instant::from_millis(0)).is_none());
}

/// Issue 10 (a million UEs in 16 GiB): the stack's share of a registered UE stays small —
/// smoltcp's per-interface IPv4/IPv6 fragmenter and reassembler (1.7 KB) are not built in (the
/// worker reassembles outer packets and fragments after ESP itself), and an open connection
/// holds 6 KiB of socket buffers (4 KiB to receive, 2 KiB to send). `bench/tests/mem_per_ue.rs`
/// checks the whole UE.
#[test]
fn the_stack_of_a_ue_stays_small() {
    let size = std::mem::size_of::<UeStack>();
    assert!(size <= 1280, "UeStack is {size} bytes");
    let c = StackConfig::default();
    assert!(c.tcp_rx_buf + c.tcp_tx_buf <= 6144);
}

#[test]
fn idle_stack_holds_no_socket_memory() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    l.pump(2);
    assert_eq!(
        l.pcscf.socket_count(),
        0,
        "listening costs nothing until a SYN comes"
    );
    let flow = ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp);
    l.ue.send(flow, REGISTER, true).unwrap();
    l.ue.listen(PORT_UC, false, true);
    l.ue.send(
        ue_side(&l, PORT_UC, PORT_PS, Transport::Udp),
        REGISTER,
        false,
    )
    .unwrap();
    l.pump(10);
    assert_eq!(l.sip_p().len(), 2);
    assert_eq!(l.pcscf.socket_count(), 1, "only the connection remains");
    l.ue.close(flow).unwrap();
    l.pump(40);
    assert_eq!(l.pcscf.socket_count(), 0);
    assert!(l.pcscf.is_idle());
}

/// The largest TCP window the P-CSCF stack advertised in `wire` (no window scaling: the
/// buffers are far below 64 KiB, RFC 7323 2.2).
fn max_window(wire: &[Vec<u8>]) -> usize {
    wire.iter()
        .filter_map(|pk| {
            let ip = Ipv4Packet::new_checked(pk.as_slice()).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            Some(usize::from(tcp.window_len()))
        })
        .max()
        .unwrap_or(0)
}

/// Sends `msg` from the UE over port_uc -> port_ps and back from the P-CSCF on the same
/// connection, and checks both arrive whole.
fn both_ways(l: &mut Link, msg: &[u8]) {
    let ue_flow = ue_side(l, PORT_UC, PORT_PS, Transport::Tcp);
    let p_flow = pcscf_side(l, PORT_UC, PORT_PS, Transport::Tcp);
    l.ue.send(ue_flow, msg, true).unwrap();
    l.pump(200);
    let got = l.sip_p();
    assert_eq!(got.len(), 1, "UE -> P-CSCF");
    assert!(got[0].bytes == msg, "UE -> P-CSCF bytes differ");
    assert_eq!(got[0].via_spi, Some(SPI_PS));
    l.pcscf.send(p_flow, msg, false).unwrap();
    l.pump(200);
    let got = sips(&l.ev_u);
    assert_eq!(got.len(), 1, "P-CSCF -> UE");
    assert!(got[0].bytes == msg, "P-CSCF -> UE bytes differ");
    assert_eq!(
        l.pcscf.queued_bytes(PORT_PS, PORT_UC),
        0,
        "all sent and acknowledged"
    );
}

#[test]
fn a_20_kib_message_crosses_the_small_default_buffers_both_ways() {
    let cfg = StackConfig::default();
    let msg = invite_of_len(20 * 1024);
    assert!(msg.len() > 4 * cfg.tcp_rx_buf.max(cfg.tcp_tx_buf));
    let mut l = Link::new(P4, U4, cfg.clone());
    both_ways(&mut l, &msg);
    // The receive buffer is the window: never more was offered, so it never had to hold more.
    assert!(max_window(&l.wire_p) <= cfg.tcp_rx_buf);
    // Our side sent it in several flights, fed from the pending queue as the UE acknowledged.
    let from_us: usize = tcp_payloads(&l.wire_p)
        .iter()
        .map(|(_, _, p)| p.len())
        .sum();
    assert_eq!(from_us, msg.len());
    assert!(tcp_payloads(&l.wire_p).len() >= msg.len() / 1360);
}

#[test]
fn a_64_kib_message_crosses_both_ways() {
    let cfg = StackConfig::default();
    // 64 KiB in all, the body just under `max_sip_body`.
    let msg = invite_of_len(64 * 1024);
    let mut l = Link::new(P4, U4, cfg);
    both_ways(&mut l, &msg);
}

#[test]
fn pending_bound_counts_only_what_the_socket_does_not_take() {
    let cfg = StackConfig {
        tcp_tx_buf: 4096,
        max_pending: 8192,
        ..StackConfig::default()
    };
    let mut l = Link::new(P4, U4, cfg);
    let p_flow = pcscf_side(&l, PORT_UC, PORT_PS, Transport::Tcp);
    l.ue.send(
        ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp),
        REGISTER,
        true,
    )
    .unwrap();
    l.pump(20);
    assert!(l.pcscf.is_established(&p_flow));
    // One more byte than the send buffer and the pending bound hold together: refused whole,
    // nothing of it leaves.
    let too_big = invite_of_len(4096 + 8192 + 1);
    assert_eq!(
        l.pcscf.send(p_flow, &too_big, false),
        Err(StackError::SendQueueFull)
    );
    l.pump(20);
    assert!(tcp_payloads(&l.wire_p).is_empty());
    // Exactly what they hold is taken, and then nothing more until the UE acknowledges.
    let fits = invite_of_len(4096 + 8192);
    l.pcscf.send(p_flow, &fits, false).unwrap();
    assert_eq!(
        l.pcscf.send(p_flow, b"\r\n", false),
        Err(StackError::SendQueueFull)
    );
    l.pump(100);
    let got = sips(&l.ev_u);
    assert_eq!(got.len(), 1);
    assert!(got[0].bytes == fits);
    l.pcscf.send(p_flow, &fits, false).unwrap();
}

/// Establishes the P-CSCF's port_pc -> port_us connection with one INVITE; returns the
/// P-CSCF's view of the flow.
fn established_to_port_us(l: &mut Link) -> Flow {
    let flow = pcscf_side(l, PORT_US, PORT_PC, Transport::Tcp);
    l.pcscf.send(flow, &invite(20), true).unwrap();
    l.pump(20);
    assert!(l.pcscf.is_established(&flow));
    assert_eq!(sips(&l.ev_u).len(), 1);
    flow
}

#[test]
fn request_after_the_ue_closed_goes_on_a_new_connection_from_port_pc() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let flow = established_to_port_us(&mut l);
    // The callee closes its side; its FIN reaches the P-CSCF, which answers with its own
    // (CLOSE-WAIT -> LAST-ACK) before the UE has acknowledged it.
    l.ue.close(ue_side(&l, PORT_US, PORT_PC, Transport::Tcp))
        .unwrap();
    l.ue.poll(l.now, &mut l.ev_u);
    while let Some(pk) = l.ue.pop_outbound() {
        l.pcscf.push_inbound(pk, None).unwrap();
    }
    l.pcscf.poll(l.now, &mut l.ev_p);
    assert!(!l.pcscf.is_established(&flow));
    // The next request for the callee arrives now: it must not wait behind that FIN.
    let next = invite(30);
    l.pcscf.send(flow, &next, true).unwrap();
    // Up to two seconds: the SYN may cross the UE's last ACK of the old connection and
    // be retransmitted.
    l.pump(400);
    let syns = syns(&l.wire_p);
    assert!(syns.len() >= 2 && syns.iter().all(|s| *s == (PORT_PC, PORT_US)));
    let got = sips(&l.ev_u);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].bytes, next);
    assert!(l.pcscf.is_established(&flow));
    // The old connection is reported closed, nothing is reported lost.
    assert!(l
        .ev_p
        .iter()
        .any(|e| matches!(e, WorkerEvent::TcpClosed(f) if *f == flow)));
    assert!(!l
        .ev_p
        .iter()
        .any(|e| matches!(e, WorkerEvent::SendLost(_) | WorkerEvent::ConnectFailed(_))));
}

#[test]
fn bytes_lost_to_a_reset_are_reported_and_the_next_send_reconnects() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    let flow = established_to_port_us(&mut l);
    // The UE's socket is gone without a FIN (an orphaned kernel socket): the next segment
    // the P-CSCF sends is answered by RST.
    let mut ev = Vec::new();
    assert_eq!(l.ue.discard_flows(PORT_US, PORT_PC, &mut ev), 1);
    let lost = invite(40);
    l.pcscf.send(flow, &lost, true).unwrap();
    l.pump(10);
    assert_eq!(sips(&l.ev_u).len(), 1);
    // RFC 3261 18: a transport error the transaction hears of at once, not a plain close.
    assert!(matches!(l.ev_p.as_slice(), [WorkerEvent::SendLost(f)] if *f == flow));
    assert_eq!(l.pcscf.tcp_connections(), 0);
    // The slowpath's retry opens a fresh connection from port_pc.
    l.pcscf.send(flow, &lost, true).unwrap();
    l.pump(20);
    let got = sips(&l.ev_u);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].bytes, lost);
}

#[test]
fn after_tcp_to_the_ports_failed_a_large_request_that_fits_the_mtu_goes_over_udp() {
    let mut l = Link::new(P4, U4, StackConfig::default());
    // The UE takes only UDP at port_us: the P-CSCF's SYN is refused.
    l.ue.unlisten(PORT_US);
    l.ue.listen(PORT_US, false, true);
    let udp = pcscf_side(&l, PORT_US, PORT_PC, Transport::Udp);
    let tcp = Flow {
        proto: Transport::Tcp,
        ..udp
    };
    let big = invite_of_len(1300);
    l.pcscf.send(udp, &big, false).unwrap();
    l.pump(10);
    assert!(matches!(l.ev_p.as_slice(), [WorkerEvent::ConnectFailed(f)] if *f == tcp));
    assert_eq!(syns(&l.wire_p).len(), 1);

    // RFC 3261 18.1.1: the retry may go over UDP; 1300 + 28 bytes fit the 1400-byte MTU.
    l.pcscf.send(udp, &big, false).unwrap();
    l.pump(10);
    let at_ue = sips(&l.ev_u);
    assert_eq!(at_ue.len(), 1);
    assert_eq!(
        (at_ue[0].flow.proto, &at_ue[0].bytes),
        (Transport::Udp, &big)
    );
    assert_eq!(syns(&l.wire_p).len(), 1);

    // One that would need fragmenting still goes over TCP.
    let too_big = invite_of_len(1400 - 28 + 1);
    l.pcscf.send(udp, &too_big, false).unwrap();
    l.pump(10);
    assert_eq!(sips(&l.ev_u).len(), 1);
    assert_eq!(syns(&l.wire_p).len(), 2);
}

/// RFC 9293 3.1: a segment whose payload was damaged on the way is dropped and counted (the
/// per-UE interfaces leave the receive check to the stack's own verification), and the
/// message arrives whole from the retransmission, in IPv4 and IPv6.
#[test]
fn a_segment_with_a_wrong_checksum_is_dropped_and_the_retransmission_delivers() {
    const P6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    const U6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7));
    for (p, u) in [(P4, U4), (P6, U6)] {
        let mut l = Link::new(p, u, StackConfig::default());
        let msg = invite(40);
        l.ue.send(ue_side(&l, PORT_UC, PORT_PS, Transport::Tcp), &msg, true)
            .unwrap();
        let mut damaged = 0;
        for _ in 0..400 {
            l.pcscf.poll(l.now, &mut l.ev_p);
            l.ue.poll(l.now, &mut l.ev_u);
            while let Some(mut pk) = l.ue.pop_outbound() {
                // The first segment carrying data (the only ones this long) loses a bit of
                // its last byte.
                if damaged == 0 && pk.len() > 200 {
                    let last = pk.len() - 1;
                    pk[last] ^= 0x04;
                    damaged += 1;
                }
                l.pcscf.push_inbound(pk, Some(SPI_PS)).unwrap();
            }
            while let Some(pk) = l.pcscf.pop_outbound() {
                l.ue.push_inbound(pk, None).unwrap();
            }
            l.now += Duration::from_millis(5);
            if !l.sip_p().is_empty() {
                break;
            }
        }
        assert_eq!(damaged, 1, "{p}");
        let got = l.sip_p();
        assert_eq!(got.len(), 1, "{p}");
        assert_eq!(got[0].bytes, msg, "{p}: the damaged bytes were delivered");
        assert_eq!(l.pcscf.take_counters().bad_checksum, 1, "{p}");
    }
}

/// Sends the UE's REGISTER datagram, damaged by `damage`, into the P-CSCF's stack: it is
/// dropped and counted as a bad checksum, not delivered; the next, undamaged one arrives.
fn a_damaged_datagram_is_dropped_and_the_next_arrives(damage: impl FnOnce(&mut [u8])) {
    let mut l = Link::new(P4, U4, StackConfig::default());
    l.ue.listen(45000, false, true);
    let flow = ue_side(&l, 45000, SIP_PORT, Transport::Udp);
    l.ue.send(flow, REGISTER, false).unwrap();
    l.ue.poll(l.now, &mut l.ev_u);
    let mut pk = l.ue.pop_outbound().expect("the REGISTER datagram");
    damage(&mut pk);
    l.pcscf.push_inbound(pk, None).unwrap();
    l.pump(3);
    assert!(l.sip_p().is_empty(), "the damaged datagram was delivered");
    assert_eq!(l.pcscf.take_counters().bad_checksum, 1);
    l.ue.send(flow, REGISTER, false).unwrap();
    l.pump(3);
    assert_eq!(l.sip_p().len(), 1);
    assert_eq!(l.sip_p()[0].bytes, REGISTER);
}

/// RFC 768: a UDP datagram damaged on the way is dropped and counted, not delivered with the
/// damage (smoltcp's own receive check is off, the stack verifies); the next one arrives.
#[test]
fn a_datagram_with_a_wrong_checksum_is_dropped() {
    a_damaged_datagram_is_dropped_and_the_next_arrives(|pk| {
        let last = pk.len() - 1;
        pk[last] ^= 0x01;
    });
}

/// RFC 791 3.1: the per-UE interfaces have smoltcp's IPv4 header checksum off both ways. What
/// the stack sends carries a right one (the device fills it; smoltcp's own check agrees), and
/// a datagram whose header was damaged on the way (its TTL, which no transport checksum
/// covers) is dropped and counted by the stack, not delivered; the next one arrives.
#[test]
fn an_ipv4_header_with_a_wrong_checksum_is_dropped_and_sent_ones_are_right() {
    a_damaged_datagram_is_dropped_and_the_next_arrives(|pk| {
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&pk[..]).expect("an IPv4 header");
        assert!(
            ip.verify_checksum(),
            "the device filled the header checksum"
        );
        assert_ne!(ip.checksum(), 0);
        pk[8] ^= 0x01;
    });
}
