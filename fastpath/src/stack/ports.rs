//! Reads the transport protocol and ports of an inner IP packet, for SA selection on
//! egress and selector checks on ingress (TS 33.203 7.1: an SA is bound to a port pair).

use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv6Packet};

use crate::ipc::Proto;

/// Protocol, source port and destination port of a TCP or UDP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports {
    /// TCP or UDP.
    pub proto: Proto,
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
}

/// The transport protocol and transport segment of an unfragmented IPv4/IPv6 packet whose
/// payload is TCP or UDP directly (ESP transport mode carries no extension headers between IP
/// and the transport header). `None` for anything else, including non-first fragments.
fn transport(ip: &[u8]) -> Option<(Proto, &[u8])> {
    let (proto, payload) = match ip.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            if p.frag_offset() != 0 {
                return None;
            }
            let hl = usize::from(p.header_len());
            let end = usize::from(p.total_len());
            (p.next_header(), ip.get(hl..end)?)
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip).ok()?;
            let end = 40 + usize::from(p.payload_len());
            (p.next_header(), ip.get(40..end)?)
        }
        _ => return None,
    };
    let proto = match proto {
        IpProtocol::Tcp => Proto::Tcp,
        IpProtocol::Udp => Proto::Udp,
        _ => return None,
    };
    Some((proto, payload))
}

/// The ports of an unfragmented IPv4/IPv6 packet carrying TCP or UDP directly.
pub fn transport_ports(ip: &[u8]) -> Option<Ports> {
    let (proto, seg) = transport(ip)?;
    let src = u16::from_be_bytes([*seg.first()?, *seg.get(1)?]);
    let dst = u16::from_be_bytes([*seg.get(2)?, *seg.get(3)?]);
    Some(Ports { proto, src, dst })
}

/// True if the packet is a TCP segment with SYN set and ACK clear (a connection attempt).
pub fn is_tcp_syn(ip: &[u8]) -> bool {
    // RFC 9293 3.1: flags in byte 13 of the TCP header; SYN 0x02, ACK 0x10.
    match transport(ip) {
        Some((Proto::Tcp, seg)) => seg.get(13).is_some_and(|f| f & 0x12 == 0x02),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                proto: Proto::Udp,
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
