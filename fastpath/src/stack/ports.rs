//! Reads the transport protocol and ports of an inner IP packet, for SA selection on
//! egress and selector checks on ingress (TS 33.203 7.1: an SA is bound to a port pair).

use crate::wire::ip::{Direction, IpRepr};
pub use crate::wire::transport::{Ports, Segment};

/// The transport facts of an unfragmented IPv4/IPv6 packet (or a first fragment) carrying
/// TCP or UDP directly: one parse of the IP header, then [`Segment::parse`].
pub fn segment(ip: &[u8]) -> Option<Segment> {
    Segment::parse(ip, &IpRepr::from_bytes(ip, Direction::Inbound).ok()?)
}

/// The ports of an unfragmented IPv4/IPv6 packet carrying TCP or UDP directly.
pub fn transport_ports(ip: &[u8]) -> Option<Ports> {
    segment(ip).map(|s| s.ports)
}

/// True if the packet is a TCP segment with SYN set and ACK clear (a connection attempt).
pub fn is_tcp_syn(ip: &[u8]) -> bool {
    segment(ip).is_some_and(|s| s.syn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::Transport;

    #[test]
    fn ipv4_udp_and_truncated() {
        // IPv4, 20-byte header, total length 28, proto UDP (17), 10.0.0.1 -> 10.0.0.2,
        // UDP 5060 -> 6000.
        let mut p = hex::decode("4500001c000000004011000000a000010a000002").unwrap();
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p.extend_from_slice(&[0x13, 0xc4, 0x17, 0x70, 0, 8, 0, 0]);
        assert_eq!(
            transport_ports(&p),
            Some(Ports {
                proto: Transport::Udp,
                src: 5060,
                dst: 6000
            })
        );
        assert_eq!(transport_ports(&p[..22]), None);
        assert_eq!(transport_ports(&[]), None);
        assert_eq!(transport_ports(&[0x60; 10]), None);
        assert!(!is_tcp_syn(&p));
    }

    #[test]
    fn tcp_syn_flag() {
        // IPv4 + 20-byte TCP header, 5060 -> 5064, flags SYN, then SYN|ACK.
        let mut p = hex::decode("45000028000000004006000000a000010a000002").unwrap();
        p.extend_from_slice(&hex::decode("13c413c8000000010000000050020000").unwrap());
        p.extend_from_slice(&[0, 0, 0, 0]);
        assert!(is_tcp_syn(&p));
        p[20 + 13] = 0x12;
        assert!(!is_tcp_syn(&p));
        assert!(!is_tcp_syn(&p[..30]));
    }
}
