//! A UDP SIP message above the inner MTU through a worker (issue 14, "UDP must work too"):
//! the stack builds the datagram whole, the worker encapsulates it whole (transport-mode ESP
//! takes whole datagrams only, RFC 4303 3.1.1) and fragments the ESP packet to the link MTU
//! (IPv4 RFC 791, IPv6 RFC 8200 4.5); an unprotected one is fragmented the same way. The UE
//! end here reassembles with our reassembler and opens the ESP with its mirror SA, over IPv4
//! and IPv6.

use std::collections::HashMap;
use std::net::IpAddr;

mod support;

use akagate_fastpath::esp::{InboundSa, OutboundSa};
use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::reasm::{Reasm, ReasmConfig, Reassembler};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::wire::{Direction, IpRepr};
use akagate_fastpath::worker::{InboundTable, Worker};
use akagate_sys::mempair::MemQueue;
use akagate_sys::{PacketBuf, PortQueue};
use crossbeam_channel::{Receiver, Sender};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Cidr, Ipv6Cidr, UdpPacket,
};
use std::sync::Arc;
use support::{
    arp, encapsulate, eth_frame, neighbor_solicit, sa_set, send_frame, suite, udp_v4, udp_v6,
    ue_sas, worker_config, worker_on_pair, PairSizes, PCSCF_MAC, PCSCF_V4, PCSCF_V6, PORT_PS,
    PORT_UC, SIP_PORT, SPI_UC, UE_MAC, UE_V4, UE_V6,
};

const REGISTER: &[u8] = b"REGISTER sip:ims.example SIP/2.0\r\nContent-Length: 0\r\n\r\n";

/// The UE's unprotected port.
const UE_PORT: u16 = 45000;

/// A SIP response of exactly `len` bytes.
fn response(first: &str, len: usize) -> Vec<u8> {
    let mut r = format!("{first}\r\nContent-Length: 0\r\nX-Pad: ").into_bytes();
    r.resize(len - 4, b'p');
    r.extend_from_slice(b"\r\n\r\n");
    r
}

/// A worker and a UE end that reassembles what it receives.
struct Bed {
    worker: Worker<MemQueue>,
    q: MemQueue,
    table: Arc<InboundTable>,
    events: Receiver<WorkerEvent>,
    cmds: Sender<WorkerCommand>,
    now: Instant,
    ue: IpAddr,
    pcscf: IpAddr,
    out: HashMap<(u16, u16), OutboundSa>,
    inbound: HashMap<u32, InboundSa>,
    reasm: Reassembler,
    /// Every IP packet received (fragments as they came).
    wire: Vec<Vec<u8>>,
}

impl Bed {
    fn new(ue: IpAddr, pcscf: IpAddr) -> Bed {
        let (v4, v6) = match pcscf {
            IpAddr::V4(a) => (vec![Ipv4Cidr::new(a, 24)], vec![]),
            IpAddr::V6(a) => (vec![], vec![Ipv6Cidr::new(a, 64)]),
        };
        let w = worker_on_pair(worker_config(0, PCSCF_MAC, v4, v6), &PairSizes::default());
        let mut t = Bed {
            worker: w.worker,
            q: w.ue,
            table: w.table,
            events: w.events,
            cmds: w.cmds,
            now: w.now,
            ue,
            pcscf,
            out: HashMap::new(),
            inbound: HashMap::new(),
            reasm: Reassembler::new(ReasmConfig::default()),
            wire: vec![],
        };
        t.teach_neighbor();
        t
    }

    fn send_ip(&mut self, pkt: &[u8]) {
        let ethertype = match pkt[0] >> 4 {
            6 => EthernetProtocol::Ipv6,
            _ => EthernetProtocol::Ipv4,
        };
        send_frame(&mut self.q, &eth_frame(UE_MAC, PCSCF_MAC, ethertype, pkt));
    }

    /// ARP (IPv4) or a neighbour solicitation (IPv6) that teaches the worker our MAC.
    fn teach_neighbor(&mut self) {
        match (self.ue, self.pcscf) {
            (IpAddr::V4(u), IpAddr::V4(p)) => {
                let req = arp(
                    ArpOperation::Request,
                    (UE_MAC, u),
                    (EthernetAddress([0; 6]), p),
                );
                send_frame(
                    &mut self.q,
                    &eth_frame(UE_MAC, PCSCF_MAC, EthernetProtocol::Arp, &req),
                );
            }
            (IpAddr::V6(u), IpAddr::V6(p)) => self.send_ip(&neighbor_solicit(u, p, UE_MAC)),
            _ => unreachable!("one family"),
        }
        self.pump(2);
        self.wire.clear();
    }

    fn pump(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.worker.run_once(self.now);
            let mut rx: Vec<PacketBuf> = Vec::new();
            self.q.rx_burst(&mut rx, 64);
            for b in rx {
                let eth = EthernetFrame::new_checked(b.data()).unwrap();
                if matches!(
                    eth.ethertype(),
                    EthernetProtocol::Ipv4 | EthernetProtocol::Ipv6
                ) {
                    self.wire.push(eth.payload().to_vec());
                }
                self.q.free(b);
            }
            self.now += Duration::from_millis(5);
        }
    }

    /// A UDP packet from the UE's `sport` to our `dport`.
    fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        match (self.ue, self.pcscf) {
            (IpAddr::V4(u), IpAddr::V4(p)) => udp_v4(u, p, sport, dport, payload),
            (IpAddr::V6(u), IpAddr::V6(p)) => udp_v6(u, p, sport, dport, payload),
            _ => unreachable!("one family"),
        }
    }

    fn flow(&self, ue_port: u16, local_port: u16) -> Flow {
        Flow {
            ue: self.ue,
            ue_port,
            local: self.pcscf,
            local_port,
            proto: Transport::Udp,
        }
    }

    fn send(&self, flow: Flow, bytes: Vec<u8>) {
        self.cmds
            .send(WorkerCommand::Send {
                flow,
                bytes,
                connect_if_absent: false,
            })
            .unwrap();
    }

    fn count(&self, name: &str) -> u64 {
        self.worker.counters().get(name).unwrap()
    }

    /// Installs the SA set and gives the UE its mirror SAs.
    fn install(&mut self) {
        let spi_pc = self.table.allocate().unwrap();
        let spi_ps = self.table.allocate().unwrap();
        let set = sa_set(self.ue, self.pcscf, suite(), spi_pc, spi_ps);
        self.cmds
            .send(WorkerCommand::InstallSaSet(Box::new(set)))
            .unwrap();
        let (out, inbound) = ue_sas(&suite(), spi_pc, spi_ps);
        self.out = out;
        self.inbound = inbound;
        self.pump(1);
    }

    /// The datagrams the UE received: each packet (or reassembled fragment train) opened with
    /// the UE's SA if it is ESP; returns (SPI if protected, UDP ports, UDP payload).
    fn datagrams(&mut self) -> Vec<(Option<u32>, u16, u16, Vec<u8>)> {
        let mut out = vec![];
        for pkt in std::mem::take(&mut self.wire) {
            let mut whole = match self.reasm.push(&pkt, self.now).expect("valid fragment") {
                Reasm::NotFragment => pkt,
                Reasm::Complete(p) => p,
                Reasm::Incomplete => continue,
            };
            let ip = IpRepr::from_bytes(&whole, Direction::Inbound).unwrap();
            assert!(ip.fragment.is_none());
            let spi = (ip.next_header == 50).then(|| {
                let at = ip.payload_offset;
                let spi = u32::from_be_bytes(whole[at..at + 4].try_into().unwrap());
                let sa = self.inbound.get_mut(&spi).expect("an SA of ours");
                let len = whole.len();
                let inner = sa.decapsulate(&mut whole, 0..len).expect("valid ESP");
                whole = whole[inner].to_vec();
                spi
            });
            let ip = IpRepr::from_bytes(&whole, Direction::Inbound).unwrap();
            assert_eq!(ip.next_header, 17);
            let udp = UdpPacket::new_checked(&whole[ip.payload_offset..]).unwrap();
            assert!(udp.verify_checksum(&ip.src.into(), &ip.dst.into()));
            out.push((spi, udp.src_port(), udp.dst_port(), udp.payload().to_vec()));
        }
        out
    }

    /// After a few turns, the wire holds three fragments of at most the link MTU that
    /// reassemble (and open) to the one datagram `want`.
    fn expect_fragmented(&mut self, want: (Option<u32>, u16, u16, Vec<u8>)) {
        self.pump(3);
        let frags = self.fragments_on_wire();
        assert!(
            frags.len() == 3 && frags.iter().all(|&l| l <= 1500),
            "{frags:?}"
        );
        assert_eq!(self.datagrams(), vec![want]);
    }

    /// Lengths of the IP fragments on the wire.
    fn fragments_on_wire(&self) -> Vec<usize> {
        self.wire
            .iter()
            .filter(|p| {
                IpRepr::from_bytes(p, Direction::Inbound)
                    .unwrap()
                    .fragment
                    .is_some()
            })
            .map(Vec::len)
            .collect()
    }
}

/// Unprotected: a REGISTER over UDP to 5060, a 3 KB 401 back in IP fragments; then through
/// the SAs: a protected REGISTER over UDP to port_ps, a 3 KB 200 OK back as one ESP packet
/// in fragments, reassembled and opened with the UE's SA.
fn over_udp_both_ways(ue: IpAddr, pcscf: IpAddr) {
    let mut t = Bed::new(ue, pcscf);
    let register = t.udp(UE_PORT, SIP_PORT, REGISTER);
    t.send_ip(&register);
    t.pump(2);
    assert_eq!(t.events.try_iter().count(), 1);

    let challenge = response("SIP/2.0 401 Unauthorized", 3000);
    t.send(t.flow(UE_PORT, SIP_PORT), challenge.clone());
    t.expect_fragmented((None, SIP_PORT, UE_PORT, challenge));
    assert_eq!(t.count("tx_fragments"), 3);

    t.install();
    let reg = t.udp(PORT_UC, PORT_PS, REGISTER);
    let sa = t.out.get_mut(&(PORT_UC, PORT_PS)).unwrap();
    let esp = encapsulate(sa, &reg).unwrap();
    t.send_ip(&esp);
    t.pump(2);
    assert_eq!(t.events.try_iter().count(), 1);
    let ok = response("SIP/2.0 200 OK", 3000);
    let esp_out = t.count("esp_out");
    t.send(t.flow(PORT_UC, PORT_PS), ok.clone());
    // The fragments are of the ESP packet: reassembled, it opens with spi_uc.
    t.expect_fragmented((Some(SPI_UC), PORT_PS, PORT_UC, ok));
    assert_eq!(t.count("esp_out"), esp_out + 1, "one ESP packet");
    assert_eq!(t.count("tx_fragments"), 6);
    assert_eq!(t.count("drop_send_failed"), 0);
    assert_eq!(t.count("drop_egress_too_big"), 0);
}

#[test]
fn a_3_kb_udp_response_leaves_in_fragments_of_its_esp_packet_ipv4() {
    over_udp_both_ways(UE_V4.into(), PCSCF_V4.into());
}

#[test]
fn a_3_kb_udp_response_leaves_in_fragments_of_its_esp_packet_ipv6() {
    over_udp_both_ways(UE_V6.into(), PCSCF_V6.into());
}
