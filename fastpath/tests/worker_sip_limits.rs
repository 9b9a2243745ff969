//! The unprotected SIP port under attack, through a worker on the in-memory pair: a SYN
//! flood from spoofed sources, a connection flood from one address, a client sending a
//! message one byte at a time, idle connections and a UDP flood are each refused or reset
//! and counted (`drop_sip_*`, `sip_conns_*`, `drop_udp_queue_full`, `drop_conn_limit`),
//! while a registered UE keeps talking over its SAs; afterwards the SIP port's connections
//! and the stacks of the attackers are gone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

mod support;

use akagate_fastpath::esp::{InboundSa, OutboundSa};
use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::worker::{SipPortLimits, Worker};
use akagate_sys::mempair::MemQueue;
use akagate_sys::{PacketBuf, PortQueue};
use crossbeam_channel::{Receiver, Sender};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Cidr,
    Ipv4Packet, Ipv4Repr, Ipv6Cidr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use support::{
    arp, encapsulate, eth_frame, sa_set, send_frame, suite, udp_v4, ue_sas, worker_config,
    worker_on_pair, PairSizes, PCSCF_MAC, PCSCF_V4, PCSCF_V6, PORT_PS, PORT_UC, SIP_PORT, UE_MAC,
    UE_V4,
};

const LIMITS: SipPortLimits = SipPortLimits {
    max_conns_per_source: 4,
    max_conns: 32,
    max_half_open: 8,
    max_unregistered: 16,
    message_deadline: Duration::from_secs(10),
    idle_deadline: Duration::from_secs(30),
};

const OPTIONS: &[u8] = b"OPTIONS sip:pcscf SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.7:31800;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

/// An IPv4 TCP segment with checksums filled.
fn tcp_v4(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.1,
        dst_port: dst.1,
        control: if syn {
            TcpControl::Syn
        } else {
            TcpControl::None
        },
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 65535,
        window_scale: None,
        max_seg_size: syn.then_some(1400),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let caps = ChecksumCapabilities::default();
    let mut p = vec![0u8; 20 + tcp.buffer_len()];
    let mut pk = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.emit(&mut pk, &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(pk.payload_mut()),
        &src.0.into(),
        &dst.0.into(),
        &caps,
    );
    p
}

struct Bed {
    worker: Worker<MemQueue>,
    ue: MemQueue,
    /// The worker's command channel.
    cmds: Sender<WorkerCommand>,
    events: Receiver<WorkerEvent>,
    now: Instant,
    /// The registered UE's outbound and inbound SAs.
    out: HashMap<(u16, u16), OutboundSa>,
    inbound: HashMap<u32, InboundSa>,
    /// Initial sequence number of each SYN-ACK seen, by (client address, client port).
    syn_acks: HashMap<(Ipv4Addr, u16), u32>,
    /// Resets seen, by (client address, client port).
    resets: Vec<(Ipv4Addr, u16)>,
    /// SIP messages passed up: (source, via an SA).
    sip: Vec<(IpAddr, bool)>,
    /// Sources whose MAC the worker learned (ARP).
    taught: Vec<Ipv4Addr>,
}

impl Bed {
    fn new() -> Bed {
        Bed::with(LIMITS)
    }

    fn with(limits: SipPortLimits) -> Bed {
        let mut cfg = worker_config(
            0,
            PCSCF_MAC,
            vec![Ipv4Cidr::new(PCSCF_V4, 24)],
            vec![Ipv6Cidr::new(PCSCF_V6, 64)],
        );
        cfg.max_ues = 1024;
        cfg.sip_limits = limits;
        let w = worker_on_pair(cfg, &PairSizes::default());
        let spi_pc = w.table.allocate().unwrap();
        let spi_ps = w.table.allocate().unwrap();
        let set = sa_set(UE_V4.into(), PCSCF_V4.into(), suite(), spi_pc, spi_ps);
        w.cmds
            .send(WorkerCommand::InstallSaSet(Box::new(set)))
            .unwrap();
        let (out, inbound) = ue_sas(&suite(), spi_pc, spi_ps);
        let mut bed = Bed {
            worker: w.worker,
            ue: w.ue,
            cmds: w.cmds,
            events: w.events,
            now: w.now,
            out,
            inbound,
            syn_acks: HashMap::new(),
            resets: Vec::new(),
            sip: Vec::new(),
            taught: Vec::new(),
        };
        // The set is installed, and an ARP request teaches the worker the UE's MAC.
        bed.step();
        bed.teach(UE_V4);
        bed
    }

    /// An ARP request from `ip` teaches the worker its MAC (RFC 826), so answers reach it.
    fn teach(&mut self, ip: Ipv4Addr) {
        if self.taught.contains(&ip) {
            return;
        }
        self.taught.push(ip);
        let request = arp(
            ArpOperation::Request,
            (UE_MAC, ip),
            (EthernetAddress([0; 6]), PCSCF_V4),
        );
        self.send_eth(EthernetProtocol::Arp, &request);
        self.step();
    }

    fn send_eth(&mut self, et: EthernetProtocol, payload: &[u8]) {
        send_frame(&mut self.ue, &eth_frame(UE_MAC, PCSCF_MAC, et, payload));
    }

    /// Sends a clear IPv4 packet (one frame; the worker runs at the next `step`).
    fn send_ip(&mut self, pkt: &[u8]) {
        self.send_eth(EthernetProtocol::Ipv4, pkt);
    }

    /// Sends an IPv4 packet of the registered UE through its SA port_uc -> port_ps.
    fn send_protected(&mut self, pkt: &[u8]) {
        let sa = self.out.get_mut(&(PORT_UC, PORT_PS)).unwrap();
        let esp = encapsulate(sa, pkt).unwrap();
        self.send_ip(&esp);
    }

    fn step(&mut self) {
        self.worker.run_once(self.now);
        let mut rx: Vec<PacketBuf> = Vec::new();
        self.ue.rx_burst(&mut rx, 256);
        for b in rx {
            let frame = b.data().to_vec();
            self.ue.free(b);
            self.take(&frame);
        }
        for ev in self.events.try_iter() {
            if let WorkerEvent::Sip(s) = ev {
                self.sip.push((s.flow.ue, s.via_spi.is_some()));
            }
        }
    }

    /// Runs the worker for `d` in 100 ms steps.
    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(100);
            self.step();
        }
    }

    /// Learns SYN-ACKs and RSTs the worker sent (in clear, or through the UE's SAs).
    fn take(&mut self, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return;
        }
        let mut ip = eth.payload().to_vec();
        if ip[9] == 50 {
            let spi = u32::from_be_bytes(ip[20..24].try_into().unwrap());
            let sa = self.inbound.get_mut(&spi).expect("an SA of the UE");
            let n = ip.len();
            let r = sa.decapsulate(&mut ip, 0..n).expect("valid ESP");
            ip = ip[r].to_vec();
        }
        let Ok(p) = Ipv4Packet::new_checked(&ip[..]) else {
            return;
        };
        if p.next_header() != IpProtocol::Tcp {
            return;
        }
        let Ok(t) = TcpPacket::new_checked(p.payload()) else {
            return;
        };
        let key = (p.dst_addr(), t.dst_port());
        if t.syn() && t.ack() {
            self.syn_acks.insert(key, t.seq_number().0 as u32);
        }
        if t.rst() {
            self.resets.push(key);
        }
    }

    /// Opens a clear connection from `src` to the SIP port (SYN, then ACK of the SYN-ACK);
    /// true if the worker answered the SYN.
    fn connect(&mut self, src: (Ipv4Addr, u16)) -> bool {
        self.teach(src.0);
        self.send_ip(&tcp_v4(src, (PCSCF_V4, SIP_PORT), 1000, None, true, &[]));
        self.step();
        let Some(&isn) = self.syn_acks.get(&src) else {
            return false;
        };
        let ack = tcp_v4(src, (PCSCF_V4, SIP_PORT), 1001, Some(isn + 1), false, &[]);
        self.send_ip(&ack);
        self.step();
        true
    }

    /// The registered UE opens port_uc -> port_ps over ESP and sends OPTIONS on it; true if
    /// the worker passed the message up as coming through the SA.
    fn protected_exchange(&mut self) -> bool {
        let src = (UE_V4, PORT_UC);
        self.syn_acks.remove(&src);
        let before = self.sip.len();
        let syn = tcp_v4(src, (PCSCF_V4, PORT_PS), 5000, None, true, &[]);
        self.send_protected(&syn);
        self.step();
        let Some(&isn) = self.syn_acks.get(&src) else {
            return false;
        };
        let data = tcp_v4(
            src,
            (PCSCF_V4, PORT_PS),
            5001,
            Some(isn + 1),
            false,
            OPTIONS,
        );
        self.send_protected(&data);
        self.step();
        // Close it again (RST), so each exchange opens a new connection.
        let rst = tcp_v4(
            src,
            (PCSCF_V4, PORT_PS),
            5001 + OPTIONS.len() as u32,
            None,
            false,
            &[],
        );
        let mut rst = rst;
        rst[33] = 0x04;
        let mut p = TcpPacket::new_unchecked(&mut rst[20..]);
        p.fill_checksum(&UE_V4.into(), &PCSCF_V4.into());
        self.send_protected(&rst);
        self.step();
        self.sip[before..]
            .iter()
            .any(|&(ue, via_sa)| ue == IpAddr::from(UE_V4) && via_sa)
    }

    fn counter(&self, name: &str) -> u64 {
        self.worker.counters().get(name).expect(name)
    }
}

/// Another source address of the access network (not the UE's), `i` < 230.
fn spoofed(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 20)) + i)
}

#[test]
fn syn_flood_from_spoofed_sources_is_bounded_and_counted() {
    let mut bed = Bed::new();
    assert!(bed.protected_exchange());
    // Two of the sources are on the link (their SYN-ACKs leave); none of them gets a RST.
    bed.teach(spoofed(0));
    bed.teach(spoofed(1));
    // 200 SYNs from 200 sources, never completed, sent in bursts of 20.
    for burst in 0..10 {
        for i in 0..20 {
            let src = (spoofed(burst * 20 + i), 40000);
            bed.send_ip(&tcp_v4(src, (PCSCF_V4, SIP_PORT), 1, None, true, &[]));
        }
        bed.step();
        // The registered UE is served in the middle of the flood.
        assert!(bed.protected_exchange(), "burst {burst}");
    }
    let (conns, half_open, unregistered) = bed.worker.sip_port_use();
    assert_eq!(half_open, LIMITS.max_half_open);
    assert_eq!(conns, LIMITS.max_half_open);
    assert_eq!(unregistered, LIMITS.max_half_open);
    // Every SYN is accounted for: a half-open connection, or refused by the half-open bound.
    assert_eq!(
        bed.counter("drop_sip_half_open") as usize + LIMITS.max_half_open,
        200
    );
    // The handshakes expire at the message deadline; the stacks go with them.
    bed.wait(LIMITS.message_deadline + Duration::from_secs(1));
    assert_eq!(
        bed.counter("sip_conns_handshake_timeout") as usize,
        LIMITS.max_half_open
    );
    assert!(bed.syn_acks.contains_key(&(spoofed(0), 40000)));
    assert!(
        bed.resets.is_empty(),
        "handshakes end silently: {:?}",
        bed.resets
    );
    assert_eq!(bed.worker.sip_port_use(), (0, 0, 0));
    assert_eq!(bed.worker.ue_count(), 1, "only the registered UE is left");
    assert!(bed.protected_exchange());
}

#[test]
fn new_sources_beyond_the_unregistered_bound_are_dropped() {
    let mut bed = Bed::new();
    // UDP from 30 sources in one burst (the worker's burst is 32 frames): 16 get a stack, the
    // rest are dropped and counted.
    for i in 0..30 {
        let p = udp_v4(spoofed(i), PCSCF_V4, 5080, SIP_PORT, OPTIONS);
        bed.send_ip(&p);
    }
    bed.step();
    assert_eq!(bed.counter("drop_sip_unregistered_limit"), 14);
    let from_strangers = bed.sip.iter().filter(|(_, via)| !via).count();
    assert_eq!(from_strangers, 16);
    assert!(bed.protected_exchange());
    bed.step();
    assert_eq!(
        bed.worker.ue_count(),
        1,
        "UDP-only stacks are freed at once"
    );
}

#[test]
fn connection_flood_from_one_address_is_bounded_and_counted() {
    let mut bed = Bed::new();
    let attacker = spoofed(1);
    let mut opened = 0;
    for port in 0..50u16 {
        if bed.connect((attacker, 41000 + port)) {
            opened += 1;
        }
        if port % 10 == 0 {
            assert!(bed.protected_exchange());
        }
    }
    assert_eq!(opened, LIMITS.max_conns_per_source);
    assert_eq!(bed.counter("drop_sip_conn_per_source"), 50 - opened as u64);
    assert!(bed.resets.is_empty(), "refused SYNs are not answered");
    // The connections carry nothing: closed at the idle deadline (the source has no SA set).
    bed.wait(LIMITS.idle_deadline + Duration::from_secs(1));
    assert_eq!(bed.counter("sip_conns_idle_timeout"), opened as u64);
    assert_eq!(bed.worker.sip_port_use(), (0, 0, 0));
    assert_eq!(bed.worker.ue_count(), 1);
    assert!(bed.protected_exchange());
}

#[test]
fn connections_in_all_are_bounded() {
    let mut bed = Bed::new();
    // 12 sources x 4 connections: 32 fit the port's bound, 16 are refused.
    for src in 0..12 {
        for port in 0..4u16 {
            bed.connect((spoofed(src), 42000 + port));
        }
    }
    assert_eq!(bed.worker.sip_port_use().0, LIMITS.max_conns);
    assert_eq!(bed.counter("drop_sip_conn_limit"), 16);
    assert!(bed.protected_exchange());
}

#[test]
fn a_message_sent_one_byte_at_a_time_is_cut_at_the_deadline() {
    let mut bed = Bed::new();
    let src = (spoofed(7), 43000);
    assert!(bed.connect(src));
    let isn = bed.syn_acks[&src];
    // One byte every 3 s (each within the idle deadline of the last): the message is never
    // complete, and the connection is reset 10 s after its first byte.
    for (i, b) in OPTIONS.iter().take(5).enumerate() {
        let seg = tcp_v4(
            (src.0, src.1),
            (PCSCF_V4, SIP_PORT),
            1001 + i as u32,
            Some(isn + 1),
            false,
            &[*b],
        );
        bed.send_ip(&seg);
        bed.wait(Duration::from_secs(3));
    }
    assert_eq!(bed.counter("sip_conns_message_timeout"), 1);
    assert!(bed.resets.contains(&src), "reset at the deadline");
    assert_eq!(bed.worker.sip_port_use(), (0, 0, 0));
    assert!(bed.sip.iter().all(|(ue, _)| *ue != IpAddr::from(src.0)));
}

#[test]
fn a_complete_message_is_not_cut() {
    let mut bed = Bed::new();
    let src = (spoofed(8), 43001);
    assert!(bed.connect(src));
    let isn = bed.syn_acks[&src];
    // The message in two pieces 5 s apart, well within the deadline.
    let (a, b) = OPTIONS.split_at(20);
    bed.send_ip(&tcp_v4(
        src,
        (PCSCF_V4, SIP_PORT),
        1001,
        Some(isn + 1),
        false,
        a,
    ));
    bed.wait(Duration::from_secs(5));
    let seq = 1001 + a.len() as u32;
    bed.send_ip(&tcp_v4(
        src,
        (PCSCF_V4, SIP_PORT),
        seq,
        Some(isn + 1),
        false,
        b,
    ));
    bed.wait(Duration::from_secs(12));
    assert_eq!(bed.counter("sip_conns_message_timeout"), 0);
    assert!(bed.sip.contains(&(IpAddr::from(src.0), false)));
    assert_eq!(
        bed.worker.sip_port_use().0,
        1,
        "open until the idle deadline"
    );
}

#[test]
fn a_udp_flood_from_one_ue_is_counted_datagram_by_datagram() {
    let mut bed = Bed::new();
    let from = spoofed(9);
    // Two bursts of 30 datagrams; the stack's UDP socket holds 8 until the next poll.
    for i in 0..30u16 {
        bed.send_ip(&udp_v4(from, PCSCF_V4, 5080 + i, SIP_PORT, OPTIONS));
    }
    bed.step();
    for i in 0..30u16 {
        bed.send_ip(&udp_v4(from, PCSCF_V4, 5080 + i, SIP_PORT, OPTIONS));
    }
    bed.step();
    let passed = bed
        .sip
        .iter()
        .filter(|(ue, _)| *ue == IpAddr::from(from))
        .count() as u64;
    let dropped = bed.counter("drop_udp_queue_full");
    assert_eq!(passed, 16);
    assert_eq!(passed + dropped, 60, "every datagram passed up or counted");
    assert_eq!(bed.worker.ue_count(), 1, "the flooder's stack is freed");
}

#[test]
fn syns_beyond_the_stacks_connection_limit_are_counted() {
    // The SIP port's per-source bound above the stack's own (8 connections per UE).
    let mut bed = Bed::with(SipPortLimits {
        max_conns_per_source: 100,
        ..LIMITS
    });
    let src = spoofed(10);
    let mut opened = 0;
    for port in 0..10u16 {
        if bed.connect((src, 44000 + port)) {
            opened += 1;
        }
    }
    assert_eq!(opened, 8);
    // smoltcp answers the two refused SYNs with RST; each is counted.
    assert_eq!(bed.counter("drop_conn_limit"), 2);
}

/// A command's effect on the SIP port's kept sums is there as soon as the command ran, before
/// any poll counts them again: a response on a connection to the SIP port changes no count,
/// a datagram to an address without a stack makes one (one more unregistered), and several
/// commands taken from the channel at once (their UEs looked up ahead) leave the same sums.
#[test]
fn the_kept_sums_are_right_after_each_command_before_a_poll() {
    let mut bed = Bed::new();
    let src = (spoofed(0), 40000);
    assert!(bed.connect(src));
    assert_eq!(bed.worker.sip_port_use(), (1, 0, 1));
    let on_conn = Flow {
        ue: src.0.into(),
        ue_port: src.1,
        local: PCSCF_V4.into(),
        local_port: SIP_PORT,
        proto: Transport::Tcp,
    };
    let response = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
    // One command run directly, then the kept sums: `expected`, and what a recount finds.
    let send_and_check =
        |bed: &mut Bed, flow: Flow, bytes: Vec<u8>, expected: (usize, usize, usize), what: &str| {
            let now = bed.now;
            bed.worker.command(
                WorkerCommand::Send {
                    flow,
                    bytes,
                    connect_if_absent: false,
                },
                now,
            );
            assert_eq!(bed.counter("drop_send_failed"), 0, "{what}");
            assert_eq!(bed.worker.sip_port_use(), expected, "{what}");
            assert_eq!(
                bed.worker.sip_port_use(),
                bed.worker.sip_port_use_recounted(),
                "{what}"
            );
        };
    send_and_check(
        &mut bed,
        on_conn,
        response.clone(),
        (1, 0, 1),
        "a send on the connection",
    );
    let to_new = Flow {
        ue: spoofed(1).into(),
        ue_port: 5080,
        proto: Transport::Udp,
        ..on_conn
    };
    send_and_check(
        &mut bed,
        to_new,
        OPTIONS.to_vec(),
        (1, 0, 2),
        "a stack made by a send",
    );
    assert!(bed.worker.has_ue(&spoofed(1).into()));
    // Through the channel, in one batch: sends to a third address (made by the first,
    // found by the second although the batch looked it up before it existed), one on the
    // connection, and one to the second address.
    let to_third = Flow {
        ue: spoofed(2).into(),
        ..to_new
    };
    let cmds = [
        (to_third, OPTIONS.to_vec()),
        (to_third, OPTIONS.to_vec()),
        (on_conn, response),
        (to_new, OPTIONS.to_vec()),
    ];
    for (flow, bytes) in cmds {
        bed.cmds
            .send(WorkerCommand::Send {
                flow,
                bytes,
                connect_if_absent: false,
            })
            .unwrap();
    }
    let before = bed.counter("commands");
    bed.step();
    assert_eq!(bed.counter("commands"), before + 4);
    assert_eq!(bed.counter("drop_send_failed"), 0);
    assert_eq!(
        bed.counter("ues"),
        4,
        "the registered UE and three senders' stacks"
    );
    assert_eq!(
        bed.worker.sip_port_use(),
        bed.worker.sip_port_use_recounted()
    );
}
