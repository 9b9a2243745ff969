//! The simulated UE on the far end of a memory-backend daemon's in-memory pair: it sends
//! Ethernet frames built with `smoltcp::wire` and waits for the daemon's answers; every frame
//! either way is kept with its time, for pcap captures.

use std::net::Ipv6Addr;
use std::time::Instant;

use akagate_sys::mempair::{MemPort, MemQueue};
use akagate_sys::{PacketBuf, Port, PortQueue};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, UdpPacket, UdpRepr,
};

use super::{PCSCF_MAC, PCSCF_V4, UE_MAC, UE_V4, UE_V6, WAIT};

/// The simulated UE: the peer end of the in-memory pair.
pub struct Ue {
    q: MemQueue,
    /// Every frame sent and received, in order, with the time it passed.
    pub frames: Vec<(Instant, Vec<u8>)>,
}

impl Ue {
    /// The UE on the (single) queue of the pair's peer end.
    pub fn on(peer: &mut MemPort) -> Ue {
        Ue {
            q: peer.take_queues().pop().expect("the peer's queue"),
            frames: Vec::new(),
        }
    }

    /// Sends `payload` in an Ethernet frame to the P-CSCF (ARP to broadcast).
    pub fn send(&mut self, ethertype: EthernetProtocol, payload: &[u8]) {
        let mut f = vec![0u8; 14 + payload.len()];
        let mut frame = EthernetFrame::new_unchecked(&mut f[..]);
        EthernetRepr {
            src_addr: UE_MAC,
            dst_addr: if ethertype == EthernetProtocol::Arp {
                EthernetAddress::BROADCAST
            } else {
                PCSCF_MAC
            },
            ethertype,
        }
        .emit(&mut frame);
        frame.payload_mut().copy_from_slice(payload);
        let mut b = self.q.alloc().expect("buffer");
        b.fill(&f).unwrap();
        self.frames.push((Instant::now(), f));
        let mut burst = vec![b];
        assert_eq!(self.q.tx_burst(&mut burst), 1);
    }

    /// The frames waiting for the UE now (one receive burst).
    pub fn received(&mut self) -> Vec<Vec<u8>> {
        let mut rx: Vec<PacketBuf> = Vec::new();
        self.q.rx_burst(&mut rx, 64);
        let mut out = Vec::with_capacity(rx.len());
        for b in rx {
            let f = b.data().to_vec();
            self.q.free(b);
            self.frames.push((Instant::now(), f.clone()));
            out.push(f);
        }
        out
    }

    /// What `pick` returns for the first frame it accepts, within [`WAIT`]; panics listing
    /// the frames it skipped otherwise.
    pub fn expect<T>(&mut self, pick: impl Fn(&[u8]) -> Option<T>) -> T {
        let end = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let mut found = None;
            for f in self.received() {
                if found.is_none() {
                    found = pick(&f);
                    if found.is_some() {
                        continue;
                    }
                }
                skipped.push(f);
            }
            if let Some(t) = found {
                return t;
            }
            assert!(
                Instant::now() < end,
                "no matching frame; got {skipped:02x?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// An ARP request for the P-CSCF's address (RFC 826: it teaches the P-CSCF our MAC).
    pub fn arp_request(&mut self) {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: UE_MAC,
            source_protocol_addr: UE_V4,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: PCSCF_V4,
        };
        let mut p = vec![0u8; arp.buffer_len()];
        arp.emit(&mut ArpPacket::new_unchecked(&mut p[..]));
        self.send(EthernetProtocol::Arp, &p);
    }

    /// ARP for the P-CSCF so it learns our MAC; returns its answer.
    pub fn learn_arp(&mut self) -> ArpRepr {
        self.arp_request();
        self.expect(|f| {
            let eth = EthernetFrame::new_checked(f).ok()?;
            (eth.ethertype() == EthernetProtocol::Arp)
                .then(|| ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok())?
        })
    }

    /// Sends `payload` as IP protocol `proto` from the UE to the P-CSCF over IPv4.
    pub fn ipv4(&mut self, proto: IpProtocol, payload: &[u8]) {
        self.send(EthernetProtocol::Ipv4, &ipv4_packet(proto, payload));
    }

    /// Sends a UDP datagram from the UE's `src_port` to the P-CSCF's `dst_port` over IPv4.
    pub fn udp(&mut self, src_port: u16, dst_port: u16, payload: &[u8]) {
        self.send(EthernetProtocol::Ipv4, &udp_v4(src_port, dst_port, payload));
    }

    /// Sends the ICMPv6 message `repr` from the UE's IPv6 address to `dst`.
    pub fn icmpv6(&mut self, dst: Ipv6Addr, hop_limit: u8, repr: &Icmpv6Repr<'_>) {
        let mut icmp = vec![0u8; repr.buffer_len()];
        repr.emit(
            &UE_V6,
            &dst,
            &mut Icmpv6Packet::new_unchecked(&mut icmp[..]),
            &ChecksumCapabilities::default(),
        );
        let ip = Ipv6Repr {
            src_addr: UE_V6,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: icmp.len(),
            hop_limit,
        };
        let mut p = vec![0u8; ip.buffer_len() + icmp.len()];
        let mut pkt = Ipv6Packet::new_unchecked(&mut p[..]);
        ip.emit(&mut pkt);
        pkt.payload_mut().copy_from_slice(&icmp);
        self.send(EthernetProtocol::Ipv6, &p);
    }
}

/// An IPv4 packet UE -> P-CSCF carrying a UDP datagram from `src_port` to `dst_port`.
pub fn udp_v4(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8 + payload.len()];
    UdpRepr { src_port, dst_port }.emit(
        &mut UdpPacket::new_unchecked(&mut u[..]),
        &IpAddress::Ipv4(UE_V4),
        &IpAddress::Ipv4(PCSCF_V4),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    ipv4_packet(IpProtocol::Udp, &u)
}

/// An IPv4 packet UE -> P-CSCF (TTL 64) carrying `payload` as protocol `proto`.
pub fn ipv4_packet(proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: UE_V4,
        dst_addr: PCSCF_V4,
        next_header: proto,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut p = vec![0u8; ip.buffer_len() + payload.len()];
    let mut pkt = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.emit(&mut pkt, &ChecksumCapabilities::default());
    pkt.payload_mut().copy_from_slice(payload);
    p
}

/// The IPv4 packet of a frame from the P-CSCF with protocol `proto`.
pub fn ipv4_from_pcscf(f: &[u8], proto: IpProtocol) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    (ip.next_header() == proto).then(|| eth.payload()[..usize::from(ip.total_len())].to_vec())
}

/// The IPv4 payload of a frame from the P-CSCF to the UE with protocol `proto`, the header
/// checksum verified; asserts the frame's MAC and IP addresses.
pub fn ipv4_payload_from_pcscf(f: &[u8], proto: IpProtocol) -> Option<Vec<u8>> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    assert_eq!(eth.src_addr(), PCSCF_MAC);
    assert_eq!(eth.dst_addr(), UE_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let repr = Ipv4Repr::parse(&ip, &ChecksumCapabilities::default()).ok()?;
    if repr.next_header != proto {
        return None;
    }
    assert_eq!((repr.src_addr, repr.dst_addr), (PCSCF_V4, UE_V4));
    Some(ip.payload().to_vec())
}
