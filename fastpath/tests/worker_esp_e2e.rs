//! End to end through a worker over the in-memory port pair: a simulated UE (the per-UE
//! stack type in client role, ESP from the `esp` module, hand-made Ethernet) registers in
//! clear on 5060, then talks over the four SAs of TS 33.203 7.1; negative cases are counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

mod support;

use akagate_fastpath::esp::{InboundSa, OutboundSa};
use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::stack::ports::transport_ports;
use akagate_fastpath::stack::tls::{server_config, ClientAuth, TlsListener};
use akagate_fastpath::stack::{StackConfig, UeStack};
use akagate_fastpath::worker::{InboundTable, Worker, WorkerConfig};
use akagate_sys::mempair::MemQueue;
use akagate_sys::{PacketBuf, PortQueue};
use crossbeam_channel::{Receiver, Sender};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr,
    IpProtocol, Ipv4Cidr, Ipv4Packet, Ipv4Repr, Ipv6Cidr,
};
use support::{
    arp, encapsulate, eth_frame, neighbor_solicit, sa_set, send_frame, suite, udp_v4, ue_sas,
    worker_config, worker_on_pair, PairSizes, PCSCF_MAC, PCSCF_V4, PORT_PC, PORT_PS, PORT_UC,
    PORT_US, SPI_UC, SPI_US, UE_MAC, UE_V4,
};

const REGISTER: &[u8] = include_bytes!("fixtures/stack/register_boghe_openims.sip");

fn msg(first: &str) -> Vec<u8> {
    format!("{first}\r\nVia: SIP/2.0/TCP 10.0.0.7:31800;branch=z9hG4bK77\r\nContent-Length: 4\r\n\r\nbody").into_bytes()
}

/// The UE: a stack in client role, its ESP SAs and an Ethernet port.
struct UeSim {
    q: MemQueue,
    stack: UeStack,
    events: Vec<WorkerEvent>,
    /// Outbound SAs by (local port, remote port).
    out: HashMap<(u16, u16), OutboundSa>,
    inbound: HashMap<u32, InboundSa>,
    /// SPIs of ESP packets received from the P-CSCF, in order.
    spis_seen: Vec<u32>,
    /// ESP sequence numbers last seen per SPI, and how many packets arrived with a number
    /// not above the last one of their SA (RFC 4303 3.3.3: the sender counts up).
    last_seq: HashMap<u32, u32>,
    seq_out_of_order: usize,
    /// The TCP sequence number after the last data segment seen per SPI, and how many data
    /// segments arrived before one they follow in the stream (sent out of order).
    tcp_next: HashMap<u32, u32>,
    tcp_out_of_order: usize,
    /// Clear frames received (ARP replies, echo replies, clear TCP).
    clear_seen: Vec<Vec<u8>>,
    /// Send everything in clear (to test the P-CSCF's refusal).
    force_clear: bool,
    /// Use this SPI's SA for everything (to test selector checks).
    force_sa: Option<(u16, u16)>,
}

impl UeSim {
    /// Notes the order of an IPv4 TCP data segment that came through `spi`.
    fn note_tcp_order(&mut self, spi: u32, pkt: &[u8]) {
        if pkt[0] >> 4 != 4 || pkt[9] != 6 {
            return;
        }
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let tcp = &pkt[ihl..];
        let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        let data = pkt.len() - ihl - usize::from(tcp[12] >> 4) * 4;
        if data == 0 {
            return;
        }
        if let Some(&next) = self.tcp_next.get(&spi) {
            // Wrapping comparison (RFC 793 3.3): a segment starting before the end of the
            // last one is out of order (no retransmission happens in these tests).
            if (seq.wrapping_sub(next) as i32) < 0 {
                self.tcp_out_of_order += 1;
            }
        }
        let end = seq.wrapping_add(data as u32);
        let e = self.tcp_next.entry(spi).or_insert(end);
        if (end.wrapping_sub(*e) as i32) > 0 {
            *e = end;
        }
    }

    /// Whether the UE's stack passed up `bytes` as a SIP message on `flow`.
    fn received(&self, flow: Flow, bytes: &[u8]) -> bool {
        sips(&self.events)
            .iter()
            .any(|(f, _, b)| *f == flow && b == bytes)
    }

    /// Sends `payload` to the P-CSCF in an Ethernet frame.
    fn send_eth(&mut self, ethertype: EthernetProtocol, payload: &[u8]) {
        send_frame(
            &mut self.q,
            &eth_frame(UE_MAC, PCSCF_MAC, ethertype, payload),
        );
    }

    fn send_ip(&mut self, pkt: &[u8]) {
        let ethertype = if pkt[0] >> 4 == 6 {
            EthernetProtocol::Ipv6
        } else {
            EthernetProtocol::Ipv4
        };
        self.send_eth(ethertype, pkt);
    }

    fn step(&mut self, now: Instant) {
        let mut rx: Vec<PacketBuf> = Vec::new();
        self.q.rx_burst(&mut rx, 64);
        for mut b in rx {
            let frame = b.data().to_vec();
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(eth.src_addr(), PCSCF_MAC);
            let ip = eth.payload();
            let be32 = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().unwrap());
            let esp_spi = match eth.ethertype() {
                EthernetProtocol::Ipv4 => {
                    let p = Ipv4Packet::new_checked(ip).unwrap();
                    (p.next_header() == IpProtocol::IpSecEsp)
                        .then(|| (be32(p.payload()), be32(&p.payload()[4..])))
                }
                // No extension headers in this test bed.
                EthernetProtocol::Ipv6 => (ip[6] == 50).then(|| (be32(&ip[40..]), be32(&ip[44..]))),
                _ => {
                    self.clear_seen.push(frame.clone());
                    self.q.free(b);
                    continue;
                }
            };
            if let Some((spi, seq)) = esp_spi {
                self.spis_seen.push(spi);
                let last = self.last_seq.insert(spi, seq);
                if last.is_some_and(|l| seq <= l) {
                    self.seq_out_of_order += 1;
                }
                let Some(sa) = self.inbound.get_mut(&spi) else {
                    // The UE dropped this SA (de-registration): nothing to open it with.
                    self.q.free(b);
                    continue;
                };
                b.trim_front(14).unwrap();
                let (raw, r) = b.raw_mut();
                let inner = sa.decapsulate(raw, r).expect("valid ESP");
                let (raw, _) = b.raw();
                self.note_tcp_order(spi, &raw[inner.clone()]);
                self.stack
                    .push_inbound(raw[inner].to_vec(), Some(spi))
                    .unwrap();
            } else {
                self.clear_seen.push(frame.clone());
                self.stack.push_inbound(ip.to_vec(), None).unwrap();
            }
            self.q.free(b);
        }
        self.stack.poll(now, &mut self.events);
        while let Some(pkt) = self.stack.pop_outbound() {
            let p = transport_ports(&pkt).unwrap();
            let key = self.force_sa.unwrap_or((p.src, p.dst));
            match self.out.get_mut(&key) {
                Some(sa) if !self.force_clear => {
                    let mut b = self.q.alloc().unwrap();
                    b.fill(&pkt).unwrap();
                    let (raw, r) = b.raw_mut();
                    let nr = sa.encapsulate(raw, r).unwrap();
                    b.set_range(nr).unwrap();
                    let ip = b.data().to_vec();
                    self.q.free(b);
                    self.send_ip(&ip);
                }
                _ => self.send_ip(&pkt),
            }
        }
    }
}

struct Bed {
    ue_ip: IpAddr,
    pcscf_ip: IpAddr,
    worker: Worker<MemQueue>,
    ue: UeSim,
    table: Arc<InboundTable>,
    events: Receiver<WorkerEvent>,
    cmds: Sender<WorkerCommand>,
    now: Instant,
}

impl Bed {
    fn new() -> Bed {
        Bed::with(UE_V4.into(), PCSCF_V4.into())
    }

    fn with(ue_ip: IpAddr, pcscf_ip: IpAddr) -> Bed {
        Bed::with_worker(ue_ip, pcscf_ip, |_| {})
    }

    /// A bed whose worker configuration `tweak` adjusts.
    fn with_worker(ue_ip: IpAddr, pcscf_ip: IpAddr, tweak: impl FnOnce(&mut WorkerConfig)) -> Bed {
        let (ipv4, ipv6) = match pcscf_ip {
            IpAddr::V4(a) => (vec![Ipv4Cidr::new(a, 24)], vec![]),
            IpAddr::V6(a) => (vec![], vec![Ipv6Cidr::new(a, 64)]),
        };
        let mut cfg = worker_config(0, PCSCF_MAC, ipv4, ipv6);
        tweak(&mut cfg);
        let w = worker_on_pair(cfg, &PairSizes::default());
        let mut stack = UeStack::new(StackConfig::default(), ue_ip, pcscf_ip, w.now).unwrap();
        stack.listen(PORT_US, true, true);
        let ue = UeSim {
            q: w.ue,
            stack,
            events: vec![],
            out: HashMap::new(),
            inbound: HashMap::new(),
            spis_seen: vec![],
            last_seq: HashMap::new(),
            seq_out_of_order: 0,
            tcp_next: HashMap::new(),
            tcp_out_of_order: 0,
            clear_seen: vec![],
            force_clear: false,
            force_sa: None,
        };
        Bed {
            ue_ip,
            pcscf_ip,
            worker: w.worker,
            ue,
            table: w.table,
            events: w.events,
            cmds: w.cmds,
            now: w.now,
        }
    }

    fn pump(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.ue.step(self.now);
            self.worker.run_once(self.now);
            self.now += Duration::from_millis(5);
        }
    }

    /// The UE's stack sends `bytes` on `flow` (connecting first if asked).
    fn ue_send(&mut self, flow: Flow, bytes: &[u8], connect: bool) {
        self.ue.stack.send(flow, bytes, connect).unwrap();
    }

    /// The slowpath sends `bytes` on `flow` (opening a TCP connection if asked).
    fn pcscf_send(&self, flow: Flow, bytes: impl Into<Vec<u8>>, connect_if_absent: bool) {
        self.cmds
            .send(WorkerCommand::Send {
                flow,
                bytes: bytes.into(),
                connect_if_absent,
            })
            .unwrap();
    }

    /// The slowpath removes the UE's SA set.
    fn remove_sa_set(&self, spi_pc: u32, spi_ps: u32) {
        self.cmds
            .send(WorkerCommand::RemoveSaSet {
                ue: UE_V4.into(),
                spi_pc,
                spi_ps,
            })
            .unwrap();
    }

    fn events(&self) -> Vec<WorkerEvent> {
        self.events.try_iter().collect()
    }

    fn count(&self, name: &str) -> u64 {
        self.worker.counters().get(name).unwrap()
    }

    /// ARP so the worker learns the UE's MAC (RFC 826: a request for us teaches the sender).
    fn arp(&mut self) {
        let request = arp(
            ArpOperation::Request,
            (UE_MAC, UE_V4),
            (EthernetAddress([0; 6]), PCSCF_V4),
        );
        self.ue.send_eth(EthernetProtocol::Arp, &request);
        self.pump(2);
    }

    /// Allocates SPIs, sends InstallSaSet and gives the UE the mirror SAs; returns (spi_pc, spi_ps).
    fn install(&mut self) -> (u32, u32) {
        let spi_pc = self.table.allocate().unwrap();
        let spi_ps = self.table.allocate().unwrap();
        let set = sa_set(self.ue_ip, self.pcscf_ip, suite(), spi_pc, spi_ps);
        self.cmds
            .send(WorkerCommand::InstallSaSet(Box::new(set)))
            .unwrap();
        let (out, inbound) = ue_sas(&suite(), spi_pc, spi_ps);
        self.ue.out.extend(out);
        self.ue.inbound.extend(inbound);
        self.pump(1);
        (spi_pc, spi_ps)
    }
}

fn pcscf_flow(ue_port: u16, local_port: u16) -> Flow {
    Flow {
        ue: UE_V4.into(),
        ue_port,
        local: PCSCF_V4.into(),
        local_port,
        proto: Transport::Tcp,
    }
}

fn ue_flow(ue_port: u16, pcscf_port: u16) -> Flow {
    Flow {
        ue: PCSCF_V4.into(),
        ue_port: pcscf_port,
        local: UE_V4.into(),
        local_port: ue_port,
        proto: Transport::Tcp,
    }
}

fn sips(ev: &[WorkerEvent]) -> Vec<(Flow, Option<u32>, Vec<u8>)> {
    ev.iter()
        .filter_map(|e| match e {
            WorkerEvent::Sip(s) => Some((s.flow, s.via_spi, s.bytes.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn register_in_clear_then_four_sas_end_to_end() {
    let mut t = Bed::new();
    t.arp();
    // The ARP reply came back.
    let arp_reply =
        t.ue.clear_seen
            .iter()
            .find(|f| f[12..14] == [0x08, 0x06])
            .expect("ARP reply");
    assert_eq!(&arp_reply[0..6], UE_MAC.as_bytes());
    assert_eq!(t.count("arp_replies"), 1);

    // 1. Initial REGISTER in clear to 5060.
    t.ue_send(ue_flow(40000, 5060), REGISTER, true);
    t.pump(10);
    let got = sips(&t.events());
    assert_eq!(
        got,
        vec![(pcscf_flow(40000, 5060), None, REGISTER.to_vec())]
    );
    assert!(t.worker.has_ue(&IpAddr::V4(UE_V4)));

    // 2. SAs installed; protected REGISTER from port_uc to port_ps through spi_ps.
    let (spi_pc, spi_ps) = t.install();
    let reg2 = msg("REGISTER sip:ims.example SIP/2.0");
    t.ue_send(ue_flow(PORT_UC, PORT_PS), &reg2, true);
    t.pump(10);
    let got = sips(&t.events());
    assert_eq!(
        got,
        vec![(pcscf_flow(PORT_UC, PORT_PS), Some(spi_ps), reg2.clone())]
    );
    assert!(t.count("esp_in") >= 2); // SYN, then the ACK carrying the data

    // 3. 200 OK back on the same connection, through spi_uc.
    let ok = msg("SIP/2.0 200 OK");
    t.pcscf_send(pcscf_flow(PORT_UC, PORT_PS), ok.clone(), false);
    t.pump(10);
    assert!(t.ue.received(ue_flow(PORT_UC, PORT_PS), &ok));
    assert!(t.ue.spis_seen.contains(&SPI_UC));
    assert!(!t.ue.spis_seen.contains(&SPI_US));

    // 4. The P-CSCF opens port_pc -> port_us (the third connection) through spi_us.
    let invite = msg("INVITE sip:ue@10.0.0.7:31900 SIP/2.0");
    t.pcscf_send(pcscf_flow(PORT_US, PORT_PC), invite.clone(), true);
    t.pump(10);
    assert!(t.ue.received(ue_flow(PORT_US, PORT_PC), &invite));
    assert!(t.ue.spis_seen.contains(&SPI_US));
    // The UE answers through spi_pc.
    let ringing = msg("SIP/2.0 180 Ringing");
    t.ue_send(ue_flow(PORT_US, PORT_PC), &ringing, false);
    t.pump(10);
    assert_eq!(
        sips(&t.events()),
        vec![(pcscf_flow(PORT_US, PORT_PC), Some(spi_pc), ringing)]
    );
    // Everything the P-CSCF sent after installation was ESP (the only clear frames are the
    // ARP reply and the 5060 connection's segments).
    assert!(t
        .ue
        .clear_seen
        .iter()
        .all(|f| f[12..14] == [0x08, 0x06] || transport_ports(&f[14..]).unwrap().src == 5060));
    assert_eq!(t.count("drop_egress_no_sa"), 0);
    assert_eq!(t.count("drop_esp_invalid"), 0);
}

#[test]
fn unprotected_and_misrouted_packets_are_dropped_and_counted() {
    let mut t = Bed::new();
    t.arp();
    t.ue_send(ue_flow(40000, 5060), REGISTER, true);
    t.pump(10);
    let (_spi_pc, _spi_ps) = t.install();
    let _ = t.events();

    // Clear TCP to port_ps.
    t.ue.force_clear = true;
    t.ue_send(ue_flow(40001, PORT_PS), REGISTER, true);
    t.pump(4);
    assert!(t.count("drop_clear_to_protected") >= 1);
    assert!(sips(&t.events()).is_empty());
    t.ue.force_clear = false;

    // uc -> ps traffic through the SA of spi_pc: decrypts, but the selectors do not match.
    t.ue.force_sa = Some((PORT_US, PORT_PC));
    t.ue_send(ue_flow(PORT_UC, PORT_PS), REGISTER, true);
    t.pump(4);
    assert!(t.count("drop_esp_selector") >= 1);
    assert!(sips(&t.events()).is_empty());
    t.ue.force_sa = None;

    // An unknown SPI.
    let mut sa = OutboundSa::new(0x00ab_cdef, &suite()).unwrap();
    let ip = udp_packet(PORT_UC, PORT_PS, b"x");
    t.ue.send_ip(&encapsulate(&mut sa, &ip).unwrap());
    t.pump(1);
    assert_eq!(t.count("drop_esp_unknown_spi"), 1);

    // Clear UDP to a closed port.
    t.ue.send_ip(&udp_packet(40000, 6000, b"x"));
    t.pump(1);
    assert_eq!(t.count("drop_closed_port"), 1);
}

/// Issue 11: the worker finds an SA from its SPI's slot (the inbound slab's direct cell), and
/// the table and the cell's whole SPI still decide: random SPIs, and SPIs of the installed
/// SAs' slots in other generations, reach no SA, never panic, and are counted as unknown;
/// the set's own packets still go through.
#[test]
fn forged_spis_at_the_sas_slots_find_nothing_and_are_counted() {
    let mut t = Bed::new();
    t.arp();
    let (spi_pc, spi_ps) = t.install();
    let _ = t.events();
    let layout = t.table.layout();
    let mut forged: Vec<u32> = (1..=8)
        .flat_map(|g| [spi_pc, spi_ps].map(|spi| layout.compose(layout.slot(spi) as u32, g)))
        .filter(|&s| s != spi_pc && s != spi_ps)
        .collect();
    let mut x = 0x9e37_79b9_u32;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x > 255 && x != spi_pc && x != spi_ps {
            forged.push(x);
        }
    }
    let ip = udp_packet(PORT_UC, PORT_PS, b"x");
    for &spi in &forged {
        let mut sa = OutboundSa::new(spi, &suite()).unwrap();
        t.ue.send_ip(&encapsulate(&mut sa, &ip).unwrap());
    }
    t.pump(4);
    assert_eq!(t.count("drop_esp_unknown_spi"), forged.len() as u64);
    assert!(sips(&t.events()).is_empty());
    // The set's own SA still opens the UE's request.
    t.ue_send(ue_flow(PORT_UC, PORT_PS), REGISTER, true);
    t.pump(10);
    assert_eq!(sips(&t.events()).len(), 1);
    assert_eq!(t.count("drop_esp_unknown_spi"), forged.len() as u64);
}

/// Clear TCP to the TLS port reaches the UE's stack only when the worker has one (RFC 3261
/// 26.2): the connection is accepted in clear (no SA), and plain SIP on it, which is no TLS,
/// resets it and counts `drop_tls` without a SIP event. Without a TLS port the same segments
/// are dropped as to a closed port.
#[test]
fn tls_port_takes_clear_tcp_and_refuses_plain_sip() {
    const TLS_PORT: u16 = 5061;
    let config = server_config(
        include_bytes!("fixtures/tls/server-chain.pem"),
        include_bytes!("fixtures/tls/server.key"),
        &ClientAuth::None,
    )
    .unwrap();
    let mut t = Bed::with_worker(UE_V4.into(), PCSCF_V4.into(), |c| {
        c.tls = Some(TlsListener {
            port: TLS_PORT,
            config,
        })
    });
    t.arp();
    t.ue_send(ue_flow(40000, TLS_PORT), REGISTER, true);
    t.pump(20);
    assert!(sips(&t.events()).is_empty());
    assert_eq!(t.count("drop_tls"), 1);
    assert_eq!(t.count("drop_closed_port"), 0);

    let mut t = Bed::new();
    t.arp();
    t.ue_send(ue_flow(40000, TLS_PORT), REGISTER, true);
    t.pump(20);
    assert!(t.count("drop_closed_port") >= 1);
    assert_eq!(t.count("drop_tls"), 0);
}

#[test]
fn icmp_echo_is_answered() {
    let mut t = Bed::new();
    t.arp();
    let echo = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: b"ping",
    };
    let ip = Ipv4Repr {
        src_addr: UE_V4,
        dst_addr: PCSCF_V4,
        next_header: IpProtocol::Icmp,
        payload_len: echo.buffer_len(),
        hop_limit: 64,
    };
    let mut p = vec![0u8; 20 + echo.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut pk = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.emit(&mut pk, &caps);
    echo.emit(&mut Icmpv4Packet::new_unchecked(pk.payload_mut()), &caps);
    t.ue.send_ip(&p);
    t.pump(2);
    assert_eq!(t.count("echo_replies"), 1);
    let reply =
        t.ue.clear_seen
            .iter()
            .find(|f| f[12..14] == [0x08, 0x00])
            .expect("echo reply");
    let ipr = Ipv4Packet::new_checked(&reply[14..]).unwrap();
    assert_eq!(ipr.dst_addr(), UE_V4);
    let icmp = Icmpv4Packet::new_checked(ipr.payload()).unwrap();
    assert_eq!(
        Icmpv4Repr::parse(&icmp, &caps).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 1,
            data: b"ping"
        }
    );
}

#[test]
fn sa_removal_and_idle_ue_is_freed() {
    let mut t = Bed::new();
    t.arp();
    let (spi_pc, spi_ps) = t.install();
    t.ue_send(ue_flow(PORT_UC, PORT_PS), REGISTER, true);
    t.pump(10);
    assert_eq!(sips(&t.events()).len(), 1);
    t.ue.stack.close(ue_flow(PORT_UC, PORT_PS)).unwrap();
    t.pump(20);
    assert!(t
        .events()
        .iter()
        .any(|e| matches!(e, WorkerEvent::TcpClosed(f) if f.ue_port == PORT_UC)));
    assert!(
        t.worker.has_ue(&IpAddr::V4(UE_V4)),
        "the registration keeps the stack"
    );
    t.remove_sa_set(spi_pc, spi_ps);
    t.pump(2);
    assert!(!t.worker.has_ue(&IpAddr::V4(UE_V4)));
    assert_eq!(t.count("ues_freed"), 1);
    assert!(t.table.lookup(spi_ps).is_none());
    // Late ESP for the removed SA is counted as unknown.
    t.ue_send(ue_flow(PORT_UC, PORT_PS), REGISTER, true);
    t.pump(2);
    assert!(t.count("drop_esp_unknown_spi") >= 1);
}

/// A UDP/IPv4 packet from the UE to the P-CSCF.
fn udp_packet(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_v4(UE_V4, PCSCF_V4, sport, dport, payload)
}

#[test]
fn idle_stacks_are_not_polled() {
    let mut t = Bed::new();
    t.arp();
    t.install();
    t.ue_send(ue_flow(PORT_UC, PORT_PS), REGISTER, true);
    t.pump(40);
    assert_eq!(sips(&t.events()).len(), 1);
    // The connection is established and quiet: no deadline, so no polls.
    let polls = t.count("stack_polls");
    assert!(polls > 0);
    for _ in 0..200 {
        t.worker.run_once(t.now);
        t.now += Duration::from_millis(5);
    }
    assert_eq!(t.count("stack_polls"), polls);
    // A command makes the stack due again.
    t.pcscf_send(pcscf_flow(PORT_UC, PORT_PS), msg("SIP/2.0 200 OK"), false);
    t.pump(5);
    assert!(t.count("stack_polls") > polls);
}

/// Splits an IPv4 packet into fragments of at most `max_data` payload bytes (RFC 791).
fn fragment_v4(pkt: &[u8], max_data: usize) -> Vec<Vec<u8>> {
    let hl = 20;
    let data = &pkt[hl..];
    let step = max_data / 8 * 8;
    let mut out = Vec::new();
    for (i, chunk) in data.chunks(step).enumerate() {
        let mut f = pkt[..hl].to_vec();
        f.extend_from_slice(chunk);
        let len = f.len() as u16;
        let more = (i + 1) * step < data.len();
        let mut p = Ipv4Packet::new_unchecked(&mut f[..]);
        p.set_total_len(len);
        p.set_dont_frag(false);
        p.set_more_frags(more);
        p.set_frag_offset((i * step) as u16);
        p.fill_checksum();
        out.push(f);
    }
    out
}

#[test]
fn fragmented_esp_is_reassembled_before_decryption() {
    let mut t = Bed::new();
    t.arp();
    let (_, spi_ps) = t.install();
    // A 2000-byte SIP response over UDP port_uc -> port_ps, ESP-protected, then fragmented.
    let mut body = msg("SIP/2.0 200 OK");
    let pad = 2000 - body.len();
    let head = format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.7:31800;branch=z9hG4bK77\r\nContent-Length: {pad}\r\n\r\n");
    body = head.into_bytes();
    body.extend(std::iter::repeat_n(b'z', pad));
    let ip = udp_packet(PORT_UC, PORT_PS, &body);
    let sa = t.ue.out.get_mut(&(PORT_UC, PORT_PS)).unwrap();
    let esp = encapsulate(sa, &ip).unwrap();
    let frags = fragment_v4(&esp, 1000);
    assert_eq!(frags.len(), 3);
    // Out of order.
    for i in [2, 0, 1] {
        t.ue.send_ip(&frags[i]);
    }
    t.pump(2);
    let got = sips(&t.events());
    assert_eq!(got.len(), 1);
    let (flow, spi, bytes) = &got[0];
    assert_eq!(
        (flow.proto, flow.ue_port, flow.local_port, *spi),
        (Transport::Udp, PORT_UC, PORT_PS, Some(spi_ps))
    );
    assert_eq!(bytes, &body);
    assert_eq!(t.count("esp_in"), 1);
    assert_eq!(t.count("reasm_completed"), 1);
}

#[test]
fn ipv6_neighbor_discovery_register_and_esp() {
    let ue6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
    let p6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let mut t = Bed::with(ue6.into(), p6.into());
    // NS for the P-CSCF's address with our link-layer address: answered, and teaches the worker.
    t.ue.send_ip(&neighbor_solicit(ue6, p6, UE_MAC));
    t.pump(2);
    let na =
        t.ue.clear_seen
            .iter()
            .find(|f| f[12..14] == [0x86, 0xdd])
            .expect("NA");
    assert_eq!(na[14 + 40], 136);

    let flow = |ue_port, local_port| Flow {
        ue: ue6.into(),
        ue_port,
        local: p6.into(),
        local_port,
        proto: Transport::Tcp,
    };
    let uflow = |ue_port, pport| Flow {
        ue: p6.into(),
        ue_port: pport,
        local: ue6.into(),
        local_port: ue_port,
        proto: Transport::Tcp,
    };
    t.ue_send(uflow(40000, 5060), REGISTER, true);
    t.pump(10);
    assert_eq!(
        sips(&t.events()),
        vec![(flow(40000, 5060), None, REGISTER.to_vec())]
    );
    let (_, spi_ps) = t.install();
    t.ue_send(uflow(PORT_UC, PORT_PS), REGISTER, true);
    t.pump(10);
    assert_eq!(
        sips(&t.events()),
        vec![(flow(PORT_UC, PORT_PS), Some(spi_ps), REGISTER.to_vec())]
    );
    let ok = msg("SIP/2.0 200 OK");
    t.pcscf_send(flow(PORT_UC, PORT_PS), ok.clone(), false);
    t.pump(10);
    assert!(t.ue.received(uflow(PORT_UC, PORT_PS), &ok));
    assert!(t.ue.spis_seen.contains(&SPI_UC));
}

/// What the slowpath does when it removes a set: release the inbound SPIs (the table drops
/// the SAs with them), then send `RemoveSaSet` behind the last message over the set.
fn release(t: &Bed, spi_pc: u32, spi_ps: u32) {
    t.table.release(spi_pc).unwrap();
    t.table.release(spi_ps).unwrap();
}

/// A bed whose UE, with its SA set installed, sent a de-REGISTER (Expires: 0) over its
/// protected connection port_uc -> port_ps, which reached the slowpath; returns it with the
/// set's (spi_pc, spi_ps).
fn de_registered_over_tcp() -> (Bed, u32, u32) {
    let mut t = Bed::new();
    t.arp();
    let (spi_pc, spi_ps) = t.install();
    let dereg = msg("REGISTER sip:ims.example SIP/2.0\r\nExpires: 0");
    t.ue_send(ue_flow(PORT_UC, PORT_PS), &dereg, true);
    t.pump(10);
    assert_eq!(sips(&t.events()).len(), 1);
    (t, spi_pc, spi_ps)
}

fn esp_count(t: &Bed, spi: u32) -> usize {
    t.ue.spis_seen.iter().filter(|&&s| s == spi).count()
}

/// TS 33.203 7.4 / issue 4: the 200 OK to a de-REGISTER over TCP, queued just before
/// `RemoveSaSet`, leaves encrypted with the old outbound SA (spi_uc). The UE's ACK comes back
/// through spi_ps, whose SPI the slowpath already released: the draining set still opens it,
/// so the ACK ends the drain at once (no unknown SPI, no 2 s wait) and the connection is
/// discarded without a segment; nothing leaves through the set afterwards.
#[test]
fn de_register_200_over_tcp_leaves_through_the_removed_set_whose_inbound_sa_takes_the_ack() {
    let (mut t, spi_pc, spi_ps) = de_registered_over_tcp();
    let before = esp_count(&t, SPI_UC);

    release(&t, spi_pc, spi_ps);
    let ok = msg("SIP/2.0 200 OK");
    t.pcscf_send(pcscf_flow(PORT_UC, PORT_PS), ok.clone(), false);
    t.remove_sa_set(spi_pc, spi_ps);
    // 4 rounds of 5 ms: far below SA_DRAIN_LIMIT and smoltcp's 1 s retransmission timeout.
    t.pump(4);
    assert!(
        t.ue.received(ue_flow(PORT_UC, PORT_PS), &ok),
        "the 200 OK reached the UE"
    );
    assert_eq!(esp_count(&t, SPI_UC), before + 1, "once, through spi_uc");
    assert_eq!(t.count("drop_esp_unknown_spi"), 0, "the ACK was taken");
    assert_eq!(t.count("sa_sets_drained"), 1, "drained by the ACK");
    assert_eq!(t.count("sa_drain_timeouts"), 0);
    assert_eq!(t.count("sa_conns_discarded"), 1);
    assert!(t
        .events()
        .iter()
        .any(|e| matches!(e, WorkerEvent::TcpClosed(f) if *f == pcscf_flow(PORT_UC, PORT_PS))));
    assert!(!t.worker.has_ue(&IpAddr::V4(UE_V4)), "the stack is freed");
    let frames = t.ue.spis_seen.len() + t.ue.clear_seen.len();

    // The set is gone: its inbound SA with it, and nothing can be sent on its flow.
    t.ue_send(
        ue_flow(PORT_UC, PORT_PS),
        &msg("OPTIONS sip:x SIP/2.0"),
        false,
    );
    t.pcscf_send(pcscf_flow(PORT_UC, PORT_PS), msg("SIP/2.0 200 OK"), false);
    t.pump(400);
    assert!(t.count("drop_esp_unknown_spi") >= 1, "late ESP is unknown");
    assert_eq!(t.count("drop_no_ue"), 1, "no stack left to send from");
    assert_eq!(t.count("drop_egress_no_sa"), 0);
    assert_eq!(
        t.ue.spis_seen.len() + t.ue.clear_seen.len(),
        frames,
        "nothing from the P-CSCF after the set went"
    );
}

/// A UE that drops its SAs right after its de-REGISTER never ACKs the 200 OK: the P-CSCF
/// retransmits it through the draining set until `SA_DRAIN_LIMIT`, then discards the
/// connection without a segment. Nothing tries to leave afterwards (no retransmission, FIN
/// or RST without an SA: `drop_egress_no_sa` stays 0) and the stack is freed.
#[test]
fn a_drain_that_times_out_discards_its_tcp_connection_silently() {
    let (mut t, spi_pc, spi_ps) = de_registered_over_tcp();
    // The UE forgets everything at once (its SAs and its connection, silently).
    let mut ev = Vec::new();
    assert_eq!(t.ue.stack.discard_flows(PORT_UC, PORT_PS, &mut ev), 1);
    t.ue.inbound.clear();
    t.ue.out.clear();

    release(&t, spi_pc, spi_ps);
    t.pcscf_send(pcscf_flow(PORT_UC, PORT_PS), msg("SIP/2.0 200 OK"), false);
    t.remove_sa_set(spi_pc, spi_ps);
    let rounds = (akagate_fastpath::worker::SA_DRAIN_LIMIT.total_millis() / 5 + 10) as usize;
    t.pump(rounds);
    assert_eq!(t.count("sa_drain_timeouts"), 1);
    assert_eq!(t.count("sa_conns_discarded"), 1);
    let sent = esp_count(&t, SPI_UC);
    assert!(
        sent >= 2,
        "the 200 and its retransmission(s) left encrypted: {sent}"
    );
    assert!(!t.worker.has_ue(&IpAddr::V4(UE_V4)), "the stack is freed");
    // Ten more seconds: smoltcp's backoff would retransmit at 3 s and 7 s after the 200.
    t.pump(2_000);
    assert_eq!(
        esp_count(&t, SPI_UC),
        sent,
        "nothing through the removed set"
    );
    assert_eq!(t.count("drop_egress_no_sa"), 0, "nothing tried to leave");
    assert_eq!(t.count("drop_esp_unknown_spi"), 0);
    assert!(t.ue.clear_seen.iter().all(|f| f[12..14] == [0x08, 0x06]));
}

/// Over UDP the set is dropped right after the poll that sent the 200 OK: nothing is left
/// queued on its flows, so there is nothing to wait for.
#[test]
fn de_register_200_over_udp_leaves_through_the_removed_set_which_then_goes_at_once() {
    let mut t = Bed::new();
    t.arp();
    let (spi_pc, spi_ps) = t.install();
    t.ue.stack.listen(PORT_UC, false, true);
    let udp = |f: Flow| Flow {
        proto: Transport::Udp,
        ..f
    };
    let dereg = msg("REGISTER sip:ims.example SIP/2.0\r\nExpires: 0");
    t.ue_send(udp(ue_flow(PORT_UC, PORT_PS)), &dereg, false);
    t.pump(4);
    assert_eq!(sips(&t.events()).len(), 1);

    release(&t, spi_pc, spi_ps);
    let ok = msg("SIP/2.0 200 OK");
    t.pcscf_send(udp(pcscf_flow(PORT_UC, PORT_PS)), ok.clone(), false);
    t.remove_sa_set(spi_pc, spi_ps);
    t.pump(2);
    assert!(sips(&t.ue.events)
        .iter()
        .any(|(f, spi, b)| *f == udp(ue_flow(PORT_UC, PORT_PS))
            && *spi == Some(SPI_UC)
            && *b == ok));
    assert_eq!(t.count("sa_sets_drained"), 1);
    assert_eq!(t.count("sa_drain_timeouts"), 0);
    let seen = esp_count(&t, SPI_UC);
    t.pcscf_send(udp(pcscf_flow(PORT_UC, PORT_PS)), ok, false);
    t.pump(2);
    assert_eq!(esp_count(&t, SPI_UC), seen);
    // port_ps is no longer ours to send from: the set that protected it is gone.
    assert_eq!(t.count("drop_send_failed"), 1);
}

/// TS 33.203 7.4, issue 13: a re-registration that keeps the UE's ports (only the SPIs
/// change) installs a pending set whose outbound SAs the UE cannot open before it has the
/// 401. The 401 (and everything else on those ports) leaves through the old set until the UE
/// sends through the new one; from then on the new set carries the answers.
#[test]
fn a_re_registration_with_the_same_ports_answers_through_the_old_set_until_the_new_one_is_used() {
    const SPI_UC_NEW: u32 = 0x0200_0001;
    const SPI_US_NEW: u32 = 0x0200_0002;
    let mut t = Bed::new();
    t.arp();
    t.install();
    let flow = pcscf_flow(PORT_UC, PORT_PS);
    let reg = msg("REGISTER sip:ims.example SIP/2.0\r\nExpires: 600");
    t.ue_send(ue_flow(PORT_UC, PORT_PS), &reg, true);
    t.pump(10);
    assert_eq!(sips(&t.events()).len(), 1);

    // The re-REGISTER offered new SPIs and the same ports: the slowpath installs the pending
    // set and answers 401 on the connection the request came on.
    let (spi_pc_new, spi_ps_new) = (t.table.allocate().unwrap(), t.table.allocate().unwrap());
    let pending = akagate_fastpath::ipc::SaSet {
        spi_uc: SPI_UC_NEW,
        spi_us: SPI_US_NEW,
        ..sa_set(t.ue_ip, t.pcscf_ip, suite(), spi_pc_new, spi_ps_new)
    };
    t.cmds
        .send(WorkerCommand::InstallSaSet(Box::new(pending)))
        .unwrap();
    let challenge = msg("SIP/2.0 401 Unauthorized");
    t.pcscf_send(flow, challenge.clone(), false);
    t.pump(4);
    assert!(t.ue.received(ue_flow(PORT_UC, PORT_PS), &challenge));
    assert_eq!(
        esp_count(&t, SPI_UC_NEW),
        0,
        "the 401 left through the pending set"
    );

    // The UE derives the new keys from the 401 and sends its protected REGISTER through the
    // new set, on the same connection.
    let s = suite();
    t.ue.inbound
        .insert(SPI_UC_NEW, InboundSa::new(SPI_UC_NEW, &s).unwrap());
    t.ue.inbound
        .insert(SPI_US_NEW, InboundSa::new(SPI_US_NEW, &s).unwrap());
    t.ue.out
        .insert((PORT_UC, PORT_PS), OutboundSa::new(spi_ps_new, &s).unwrap());
    t.ue.out
        .insert((PORT_US, PORT_PC), OutboundSa::new(spi_pc_new, &s).unwrap());
    t.ue_send(ue_flow(PORT_UC, PORT_PS), &reg, false);
    t.pump(6);
    assert!(sips(&t.events())
        .iter()
        .any(|(_, spi, b)| *spi == Some(spi_ps_new) && *b == reg));
    let ok = msg("SIP/2.0 200 OK");
    let old_before = esp_count(&t, SPI_UC);
    t.pcscf_send(flow, ok.clone(), false);
    t.pump(4);
    assert!(t.ue.received(ue_flow(PORT_UC, PORT_PS), &ok));
    assert!(
        esp_count(&t, SPI_UC_NEW) >= 1,
        "the 200 OK left through the new set"
    );
    assert_eq!(
        esp_count(&t, SPI_UC),
        old_before,
        "nothing more through the old set"
    );
}

/// A bed whose UE sent one request with the request line `first` over a new protected TCP
/// connection port_uc -> port_ps, which the worker passed up.
fn protected_request(first: &str) -> Bed {
    let mut t = Bed::new();
    t.arp();
    t.install();
    t.ue_send(ue_flow(PORT_UC, PORT_PS), &msg(first), true);
    t.pump(10);
    assert_eq!(sips(&t.events()).len(), 1);
    t
}

/// RFC 3261 18.2.2: the UE closed the connection its request came on before the answer was
/// ready; the answer goes on a new connection from port_pc to the UE's protected server port
/// (its Via sent-by, TS 24.229 5.1.2A.1), through the same set's spi_us, instead of being
/// dropped as "no connection".
#[test]
fn a_response_after_the_ue_closed_goes_on_a_new_connection_to_port_us() {
    let mut t = protected_request("INVITE sip:bob@ims.example SIP/2.0");
    t.ue.stack.close(ue_flow(PORT_UC, PORT_PS)).unwrap();
    t.pump(40);
    assert_eq!(t.ue.stack.tcp_connections(), 0);
    let before = esp_count(&t, SPI_US);

    let ok = msg("SIP/2.0 200 OK");
    t.pcscf_send(pcscf_flow(PORT_UC, PORT_PS), ok.clone(), false);
    t.pump(40);
    assert!(
        t.ue.received(ue_flow(PORT_US, PORT_PC), &ok),
        "the 200 OK reached the UE's port_us"
    );
    assert!(esp_count(&t, SPI_US) > before, "through spi_us");
    assert_eq!(t.count("drop_send_failed"), 0);
    assert!(!t
        .events()
        .iter()
        .any(|e| matches!(e, WorkerEvent::ConnectFailed(_) | WorkerEvent::SendLost(_))));
}

/// Issue 13: a phone that lost its state (a reboot) opens its protected connection again
/// from the same port_uc. Its SYN comes through an SA, so it is the UE's own: the P-CSCF's
/// stale connection on that four-tuple is dropped without a segment and the SYN opens the
/// new one at once, instead of being ignored until the UE gives up (32 s).
#[test]
fn a_syn_through_an_sa_on_a_stale_four_tuple_replaces_the_old_connection() {
    let mut t = Bed::new();
    t.arp();
    t.install();
    let first = msg("REGISTER sip:ims.example SIP/2.0\r\nCSeq: 1 REGISTER");
    t.ue_send(ue_flow(PORT_UC, PORT_PS), &first, true);
    t.pump(10);
    assert_eq!(sips(&t.events()).len(), 1);

    // The UE forgets everything but its SAs (as after a reboot and a new registration that
    // kept the ports) and connects from the same port again.
    let mut stack = UeStack::new(StackConfig::default(), t.ue_ip, t.pcscf_ip, t.now).unwrap();
    stack.listen(PORT_US, true, true);
    t.ue.stack = stack;
    let second = msg("REGISTER sip:ims.example SIP/2.0\r\nCSeq: 2 REGISTER");
    t.ue_send(ue_flow(PORT_UC, PORT_PS), &second, true);
    t.pump(10);
    let events = t.events();
    assert!(
        sips(&events).iter().any(|(_, _, b)| *b == second),
        "the new connection did not carry the message: {events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, WorkerEvent::TcpClosed(f) if *f == pcscf_flow(PORT_UC, PORT_PS))));
    assert_eq!(t.count("conns_replaced"), 1);
}

#[test]
fn a_large_answer_leaves_in_segments_with_consecutive_esp_sequence_numbers() {
    let mut t = protected_request("REGISTER sip:ims.example SIP/2.0");
    // A 3 KiB answer: several TCP segments from one poll of the stack, sealed together
    // by the loop turn's burst encapsulation.
    let before = esp_count(&t, SPI_UC);
    let body = "x".repeat(3000);
    let big = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 10.0.0.7:31800;branch=z9hG4bK77\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    t.pcscf_send(pcscf_flow(PORT_UC, PORT_PS), big.clone(), false);
    t.pump(10);
    assert!(t.ue.received(ue_flow(PORT_UC, PORT_PS), &big));
    assert!(
        esp_count(&t, SPI_UC) - before >= 3,
        "{}",
        esp_count(&t, SPI_UC) - before
    );
    // RFC 4303 3.3.3: on the wire each SA's sequence numbers count up, packet after packet,
    // and the segments leave in the order the stack wrote them.
    assert_eq!(t.ue.seq_out_of_order, 0);
    assert_eq!(t.ue.tcp_out_of_order, 0);
    assert_eq!(t.count("drop_egress_esp"), 0);
}
