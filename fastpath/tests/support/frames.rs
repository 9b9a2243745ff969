//! Frames and packets the simulated UE sends, built with `smoltcp::wire` (independently of
//! the code under test), and ESP encapsulation into a buffer with room on both sides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use akagate_fastpath::esp::{EspError, OutboundSa};
use akagate_sys::mempair::MemQueue;
use akagate_sys::PortQueue;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpProtocol, IpRepr, Ipv6Packet, Ipv6Repr, NdiscRepr,
    RawHardwareAddress, UdpPacket, UdpRepr,
};

/// Head- and tailroom [`encapsulate`] leaves around the packet (more than any suite needs).
const ROOM: usize = 64;

/// An Ethernet frame from `src` to `dst` carrying `payload`.
pub fn eth_frame(
    src: EthernetAddress,
    dst: EthernetAddress,
    ethertype: EthernetProtocol,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut f[..]);
    EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    f
}

/// An ARP packet (RFC 826) `operation` from `sender` (MAC, IPv4) to `target`.
pub fn arp(
    operation: ArpOperation,
    sender: (EthernetAddress, Ipv4Addr),
    target: (EthernetAddress, Ipv4Addr),
) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr: sender.0,
        source_protocol_addr: sender.1,
        target_hardware_addr: target.0,
        target_protocol_addr: target.1,
    };
    let mut p = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut p[..]));
    p
}

/// Sends `frame` on `q` as a burst of one; panics when the pool or the ring is full.
pub fn send_frame(q: &mut MemQueue, frame: &[u8]) {
    let mut b = q.alloc().expect("pool");
    b.fill(frame).unwrap();
    let mut burst = vec![b];
    assert_eq!(q.tx_burst(&mut burst), 1);
}

/// An IPv4 packet (TTL 64, checksums filled) carrying `payload` in UDP from `src:sport` to
/// `dst:dport`.
pub fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_ip(src.into(), dst.into(), sport, dport, payload)
}

/// The same over IPv6 (hop limit 64).
pub fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_ip(src.into(), dst.into(), sport, dport, payload)
}

/// A UDP packet of either family (both addresses of one).
fn udp_ip(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    let ip = IpRepr::new(
        src.into(),
        dst.into(),
        IpProtocol::Udp,
        udp.header_len() + payload.len(),
        64,
    );
    let mut p = vec![0u8; ip.buffer_len()];
    let caps = ChecksumCapabilities::default();
    ip.emit(&mut p[..], &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut p[ip.header_len()..]),
        &src.into(),
        &dst.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    p
}

/// An IPv6 neighbour solicitation (RFC 4861 4.3) from `src` with link-layer address `mac`
/// for `target`, to `target`'s solicited-node group (the bed's P-CSCF: ff02::1:ff00:1): it is
/// answered, and teaches the solicited node `src`'s MAC.
pub fn neighbor_solicit(src: Ipv6Addr, target: Ipv6Addr, mac: EthernetAddress) -> Vec<u8> {
    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from(mac)),
    });
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: ns.buffer_len(),
        hop_limit: 255,
    };
    let mut p = vec![0u8; 40 + ns.buffer_len()];
    let mut pk = Ipv6Packet::new_unchecked(&mut p[..]);
    ip.emit(&mut pk);
    ns.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(pk.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    p
}

/// The ESP packet `sa` makes of the IP packet `ip` (transport mode, RFC 4303).
pub fn encapsulate(sa: &mut OutboundSa, ip: &[u8]) -> Result<Vec<u8>, EspError> {
    let mut buf = vec![0u8; ROOM + ip.len() + ROOM];
    buf[ROOM..ROOM + ip.len()].copy_from_slice(ip);
    let r = sa.encapsulate(&mut buf, ROOM..ROOM + ip.len())?;
    Ok(buf[r].to_vec())
}
