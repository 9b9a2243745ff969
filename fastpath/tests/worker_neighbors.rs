//! A never-seen UE that did not announce itself (no ARP request before its REGISTER): the
//! worker's first answer waits for ARP to resolve the UE and then leaves, with nothing for the
//! UE to retransmit; a UE that never answers costs three solicitations and the held packets.

use std::net::IpAddr;

mod support;

use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_sys::mempair::MemQueue;
use akagate_sys::{PacketBuf, PortQueue};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol,
    Ipv4Cidr, Ipv4Packet, UdpPacket,
};
use support::{
    arp, eth_frame, send_frame, udp_v4, worker_config, worker_on_pair, PairSizes, WorkerOnPair,
    PCSCF_MAC, PCSCF_V4, SIP_PORT, UE_MAC, UE_V4,
};

const REGISTER: &[u8] = include_bytes!("fixtures/stack/register_boghe_openims.sip");
const UE_PORT: u16 = 5060;

/// What reached the UE's end of the link.
#[derive(Debug, Default)]
struct Seen {
    /// Targets of ARP requests.
    arp_requests: Vec<std::net::Ipv4Addr>,
    /// UDP payloads to the UE.
    udp: Vec<Vec<u8>>,
}

fn drain(ue: &mut MemQueue) -> Seen {
    drain_to(ue, UE_MAC)
}

/// [`drain`], every IP frame addressed to `mac`.
fn drain_to(ue: &mut MemQueue, mac: EthernetAddress) -> Seen {
    let mut rx: Vec<PacketBuf> = Vec::new();
    ue.rx_burst(&mut rx, 64);
    let mut seen = Seen::default();
    for b in rx {
        let frame = b.data().to_vec();
        ue.free(b);
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                let pkt = ArpPacket::new_checked(eth.payload()).unwrap();
                if let Ok(ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request,
                    target_protocol_addr,
                    ..
                }) = ArpRepr::parse(&pkt)
                {
                    seen.arp_requests.push(target_protocol_addr);
                }
            }
            EthernetProtocol::Ipv4 => {
                assert_eq!(eth.dst_addr(), mac, "IP only to the resolved MAC");
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                if ip.next_header() == IpProtocol::Udp {
                    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
                    seen.udp.push(udp.payload().to_vec());
                }
            }
            _ => {}
        }
    }
    seen
}

/// `from` (at `UE_MAC`) answers the worker's ARP request.
fn arp_reply(w: &mut WorkerOnPair, from: std::net::Ipv4Addr) {
    arp_reply_at(w, from, UE_MAC);
}

/// `from`, now at `mac`, answers (or announces itself) to the worker.
fn arp_reply_at(w: &mut WorkerOnPair, from: std::net::Ipv4Addr, mac: EthernetAddress) {
    let reply = arp(ArpOperation::Reply, (mac, from), (PCSCF_MAC, PCSCF_V4));
    send_frame(
        &mut w.ue,
        &eth_frame(mac, PCSCF_MAC, EthernetProtocol::Arp, &reply),
    );
}

/// Hands `body` to the worker for the UE's SIP flow (from `ue`) and runs a loop turn.
fn answer(w: &mut WorkerOnPair, ue: std::net::Ipv4Addr, body: &[u8], now: Instant) {
    let flow = Flow {
        ue: IpAddr::V4(ue),
        ..sip_flow()
    };
    w.cmds
        .send(WorkerCommand::Send {
            flow,
            bytes: body.to_vec(),
            connect_if_absent: false,
        })
        .unwrap();
    w.worker.run_once(now);
}

/// The UE's unprotected SIP flow over UDP, as the slowpath names it.
fn sip_flow() -> Flow {
    Flow {
        ue: IpAddr::V4(UE_V4),
        ue_port: UE_PORT,
        local: IpAddr::V4(PCSCF_V4),
        local_port: SIP_PORT,
        proto: Transport::Udp,
    }
}

fn count(w: &WorkerOnPair, name: &str) -> u64 {
    w.worker
        .counters()
        .get(name)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// A worker whose UE sends a REGISTER in clear over UDP without ARPing first; returns the
/// worker after the REGISTER reached the slowpath and the slowpath's answer was handed over.
fn unannounced_register(answers: &[&[u8]]) -> (WorkerOnPair, Instant) {
    let cfg = worker_config(0, PCSCF_MAC, vec![Ipv4Cidr::new(PCSCF_V4, 24)], vec![]);
    register_from(cfg, UE_V4, answers)
}

/// [`unannounced_register`] with the worker configured as `cfg` and the UE at `ue`.
fn register_from(
    cfg: akagate_fastpath::worker::WorkerConfig,
    ue: std::net::Ipv4Addr,
    answers: &[&[u8]],
) -> (WorkerOnPair, Instant) {
    let mut w = worker_on_pair(cfg, &PairSizes::default());
    let mut now = w.now;
    let register = udp_v4(ue, PCSCF_V4, UE_PORT, SIP_PORT, REGISTER);
    send_frame(
        &mut w.ue,
        &eth_frame(UE_MAC, PCSCF_MAC, EthernetProtocol::Ipv4, &register),
    );
    w.worker.run_once(now);
    let flow = match w.events.try_recv() {
        Ok(WorkerEvent::Sip(s)) => s.flow,
        other => panic!("REGISTER not passed up: {other:?}"),
    };
    assert_eq!(
        flow,
        Flow {
            ue: IpAddr::V4(ue),
            ..sip_flow()
        }
    );
    for answer in answers {
        w.cmds
            .send(WorkerCommand::Send {
                flow,
                bytes: answer.to_vec(),
                connect_if_absent: false,
            })
            .unwrap();
    }
    now += Duration::from_millis(1);
    w.worker.run_once(now);
    (w, now)
}

#[test]
fn the_first_answer_to_an_unannounced_ue_leaves_once_arp_resolves() {
    let answer = b"SIP/2.0 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    let (mut w, mut now) = unannounced_register(&[answer]);
    // The 401 waits; the worker asks who the UE is.
    let seen = drain(&mut w.ue);
    assert_eq!(seen.arp_requests, vec![UE_V4]);
    assert!(seen.udp.is_empty());
    assert_eq!(count(&w, "neighbor_queued"), 1);

    // The UE answers the ARP request; the held 401 leaves, nothing was lost.
    arp_reply(&mut w, UE_V4);
    now += Duration::from_millis(1);
    w.worker.run_once(now);
    let seen = drain(&mut w.ue);
    assert_eq!(seen.udp, vec![answer.to_vec()]);
    assert_eq!(count(&w, "neighbor_released"), 1);
    assert_eq!(count(&w, "drop_egress_no_neighbor"), 0);
    assert_eq!(count(&w, "drop_neighbor_queue_full"), 0);
    assert_eq!(count(&w, "solicitations"), 1);

    // The next answer goes straight out.
    let flow = sip_flow();
    w.cmds
        .send(WorkerCommand::Send {
            flow,
            bytes: b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
            connect_if_absent: false,
        })
        .unwrap();
    w.worker.run_once(now);
    let seen = drain(&mut w.ue);
    assert_eq!(seen.udp, vec![b"SIP/2.0 200 OK\r\n\r\n".to_vec()]);
    assert_eq!(count(&w, "neighbor_queued"), 1);
}

#[test]
fn a_ue_that_never_answers_gets_three_solicitations_then_its_packets_are_dropped() {
    let (mut w, start) = unannounced_register(&[b"SIP/2.0 401 Unauthorized\r\n\r\n"]);
    let mut asked = drain(&mut w.ue).arp_requests.len();
    let mut now = start;
    for _ in 0..400 {
        now += Duration::from_millis(10);
        w.worker.run_once(now);
        asked += drain(&mut w.ue).arp_requests.len();
    }
    // RFC 4861 7.2.2 / Linux: MAX_MULTICAST_SOLICIT (3) one retry apart, then failure.
    assert_eq!(asked, 3);
    assert_eq!(count(&w, "solicitations"), 3);
    assert_eq!(count(&w, "drop_egress_no_neighbor"), 1);
    assert_eq!(count(&w, "neighbor_released"), 0);
}

#[test]
fn a_neighbour_holds_three_packets_and_counts_the_overflow() {
    let (mut w, now) = unannounced_register(&[b"one"]);
    // One answer per loop: the UE's stack sends one queued datagram per poll.
    for body in [&b"two"[..], b"three", b"four"] {
        answer(&mut w, UE_V4, body, now);
    }
    assert_eq!(count(&w, "neighbor_queued"), 4);
    assert_eq!(count(&w, "drop_neighbor_queue_full"), 1);
    arp_reply(&mut w, UE_V4);
    w.worker.run_once(now + Duration::from_millis(1));
    // The oldest made room; the other three leave in order.
    let udp = drain(&mut w.ue).udp;
    assert_eq!(
        udp,
        vec![b"two".to_vec(), b"three".to_vec(), b"four".to_vec()]
    );
}

/// Several answers handed over in one loop to a UE without SAs: its stack sends one queued
/// datagram per poll, and must stay alive (not freed as idle) until the last one has left.
#[test]
fn several_answers_in_one_loop_all_reach_the_ue() {
    let (mut w, mut now) = unannounced_register(&[b"one", b"two", b"three"]);
    arp_reply(&mut w, UE_V4);
    let mut udp = Vec::new();
    for _ in 0..10 {
        now += Duration::from_millis(1);
        w.worker.run_once(now);
        udp.extend(drain(&mut w.ue).udp);
    }
    assert_eq!(
        udp,
        vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

/// A worker whose UE 10.45.0.7 sits behind the router 10.0.0.254 on a static route
/// 10.45.0.0/16: the configuration, the UE's address and the router's.
fn routed_config() -> (
    akagate_fastpath::worker::WorkerConfig,
    std::net::Ipv4Addr,
    std::net::Ipv4Addr,
) {
    let ue = std::net::Ipv4Addr::new(10, 45, 0, 7);
    let router = std::net::Ipv4Addr::new(10, 0, 0, 254);
    let mut cfg = worker_config(0, PCSCF_MAC, vec![Ipv4Cidr::new(PCSCF_V4, 24)], vec![]);
    cfg.l2.routes = vec![akagate_fastpath::l2::Route {
        prefix: smoltcp::wire::IpCidr::new(ue.into(), 16),
        via: IpAddr::V4(router),
    }];
    (cfg, ue, router)
}

/// Routed access: the UE (10.45.0.7) sits behind a router (10.0.0.254, at `UE_MAC` here) on
/// a static route. The worker resolves the router only - its own gateway probe at start, no
/// second request when the 401 waits for it - and the 401 leaves to the router's MAC with the
/// UE's address.
#[test]
fn an_answer_to_a_ue_behind_a_router_goes_to_the_router() {
    let (cfg, ue, router) = routed_config();
    let answer = b"SIP/2.0 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    let (mut w, mut now) = register_from(cfg, ue, &[answer]);
    let seen = drain(&mut w.ue);
    assert_eq!(seen.arp_requests, vec![router], "the router, never the UE");
    assert!(seen.udp.is_empty());
    assert_eq!(count(&w, "gateways_unresolved"), 1);

    arp_reply(&mut w, router);
    now += Duration::from_millis(1);
    w.worker.run_once(now);
    // `drain` checks that IP frames go to UE_MAC: the router's MAC here.
    let seen = drain(&mut w.ue);
    assert_eq!(seen.udp, vec![answer.to_vec()]);
    assert_eq!(count(&w, "gateways_unresolved"), 0);
    assert_eq!(count(&w, "solicitations"), 1);
    assert_eq!(count(&w, "drop_egress_no_neighbor"), 0);
}

/// The UE's frames out take its next hop from the UE's own copy of it; when the UE moves to
/// another MAC (a new ARP announcement), the next answer goes to the new MAC, not the copy's.
#[test]
fn a_ue_that_moves_to_another_mac_gets_its_next_answer_there() {
    let (mut w, now) = unannounced_register(&[b"one"]);
    let moved = EthernetAddress([0x02, 0, 0, 0, 0, 0x0c]);
    answers_follow_next_hop(&mut w, now, UE_V4, UE_V4, moved);
    assert_eq!(count(&w, "neighbor_queued"), 1);
}

/// A routed UE's frames go to its router's MAC, and follow the router to a new one.
#[test]
fn a_routed_ues_answers_follow_its_router_to_a_new_mac() {
    let (cfg, ue, router) = routed_config();
    let (mut w, now) = register_from(cfg, ue, &[b"one"]);
    let standby = EthernetAddress([0x02, 0, 0, 0, 1, 0xfe]);
    answers_follow_next_hop(&mut w, now, ue, router, standby);
}

/// The common steps of the two tests above: the next hop `hop` of `ue` answers ARP, the
/// queued answer "one" and a fresh "two" reach it (at UE_MAC, which `drain` checks), then
/// `hop` announces `moved` and the answer "three" goes to `moved`.
fn answers_follow_next_hop(
    w: &mut WorkerOnPair,
    mut now: Instant,
    ue: std::net::Ipv4Addr,
    hop: std::net::Ipv4Addr,
    moved: EthernetAddress,
) {
    arp_reply(w, hop);
    now += Duration::from_millis(1);
    w.worker.run_once(now);
    assert_eq!(drain(&mut w.ue).udp, vec![b"one".to_vec()]);
    answer(w, ue, b"two", now);
    assert_eq!(drain(&mut w.ue).udp, vec![b"two".to_vec()]);
    arp_reply_at(w, hop, moved);
    now += Duration::from_millis(1);
    w.worker.run_once(now);
    answer(w, ue, b"three", now);
    assert_eq!(drain_to(&mut w.ue, moved).udp, vec![b"three".to_vec()]);
}
