//! The TCP (RFC 9293) or UDP (RFC 768) ports of a parsed IP packet, and whether a TCP segment
//! opens a connection: what SA selection, selector checks and listener arming look at
//! (TS 33.203 7.1: an SA is bound to a port pair).

use super::ip::{IpRepr, IpVersion};
use crate::ipc::Transport;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Byte offsets in the transport header.
mod field {
    /// Source port (TCP and UDP).
    pub const SRC_PORT: core::ops::Range<usize> = 0..2;
    /// Destination port (TCP and UDP).
    pub const DST_PORT: core::ops::Range<usize> = 2..4;
    /// TCP flags (RFC 9293 3.1): SYN 0x02, ACK 0x10.
    pub const TCP_FLAGS: usize = 13;
}

/// Protocol, source port and destination port of a TCP or UDP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports {
    /// TCP or UDP.
    pub proto: Transport,
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
}

/// The transport facts of one packet, read once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Protocol and ports.
    pub ports: Ports,
    /// A TCP segment with SYN set and ACK clear (a connection attempt).
    pub syn: bool,
}

impl Segment {
    /// The ports of `pkt` (the IP packet `ip` was parsed from) when it carries TCP or UDP right
    /// after the IP header: ESP transport mode leaves no extension headers between them. `None`
    /// for anything else, including IPv4 fragments other than the first and IPv6 fragments.
    pub fn parse(pkt: &[u8], ip: &IpRepr) -> Option<Segment> {
        if ip.version == IpVersion::V6 && ip.payload_offset != 40 {
            return None;
        }
        if ip.fragment.is_some_and(|f| f.offset != 0) {
            return None;
        }
        let proto = match ip.next_header {
            IPPROTO_TCP => Transport::Tcp,
            IPPROTO_UDP => Transport::Udp,
            _ => return None,
        };
        let seg = pkt.get(ip.payload_offset..ip.len)?;
        let port =
            |f: core::ops::Range<usize>| seg.get(f).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let ports = Ports {
            proto,
            src: port(field::SRC_PORT)?,
            dst: port(field::DST_PORT)?,
        };
        let syn =
            proto == Transport::Tcp && seg.get(field::TCP_FLAGS).is_some_and(|f| f & 0x12 == 0x02);
        Some(Segment { ports, syn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::Direction;

    fn segment(p: &[u8]) -> Option<Segment> {
        Segment::parse(p, &IpRepr::from_bytes(p, Direction::Inbound).ok()?)
    }

    #[test]
    fn tcp_syn_udp_and_truncated() {
        // IPv4 + 20-byte TCP header, 5060 -> 5064, flags SYN, then SYN|ACK.
        let mut p = hex::decode("45000028000000004006000000a000010a000002").unwrap();
        p.extend_from_slice(&hex::decode("13c413c8000000010000000050020000").unwrap());
        p.extend_from_slice(&[0, 0, 0, 0]);
        let s = segment(&p).unwrap();
        assert_eq!(
            (s.ports.proto, s.ports.src, s.ports.dst, s.syn),
            (Transport::Tcp, 5060, 5064, true)
        );
        p[20 + 13] = 0x12;
        assert!(!segment(&p).unwrap().syn);
        // UDP, and a second fragment.
        p[9] = IPPROTO_UDP;
        assert_eq!(
            segment(&p).map(|s| (s.ports.proto, s.syn)),
            Some((Transport::Udp, false))
        );
        p[7] = 1;
        assert_eq!(segment(&p), None);
        // IPv6 with a destination-options header before UDP.
        let mut v6 = vec![0u8; 40 + 8 + 8];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&16u16.to_be_bytes());
        v6[6] = 60;
        v6[40] = IPPROTO_UDP;
        assert_eq!(segment(&v6), None);
        v6[6] = IPPROTO_UDP;
        v6[40..42].copy_from_slice(&5060u16.to_be_bytes());
        assert_eq!(segment(&v6).map(|s| s.ports.src), Some(5060));
    }
}
