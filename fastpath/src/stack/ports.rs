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

/// The ports of an unfragmented IPv4/IPv6 packet whose payload is TCP or UDP directly
/// (ESP transport mode carries no extension headers between IP and the transport header).
/// `None` for anything else, including non-first fragments.
pub fn transport_ports(ip: &[u8]) -> Option<Ports> {
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
    let src = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    let dst = u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]);
    Some(Ports { proto, src, dst })
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
    }
}
