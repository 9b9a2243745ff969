//! ICMP (RFC 792) and ICMPv6 (RFC 4443 4.2) echo replies for our addresses, built from the
//! (reassembled) request packet.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr,
};

/// Hop limit of our replies.
const HOP_LIMIT: u8 = 64;

/// If `ip` is an ICMP/ICMPv6 echo request with valid checksums, the echo reply IP packet
/// (source and destination swapped, same identifier, sequence and data).
pub fn echo_reply(ip: &[u8]) -> Option<Vec<u8>> {
    let caps = ChecksumCapabilities::default();
    match ip.first()? >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip).ok()?;
            let r = Ipv4Repr::parse(&p, &caps).ok()?;
            if r.next_header != IpProtocol::Icmp {
                return None;
            }
            let icmp = Icmpv4Packet::new_checked(p.payload()).ok()?;
            let Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } = Icmpv4Repr::parse(&icmp, &caps).ok()?
            else {
                return None;
            };
            let reply = Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            };
            let out_ip = Ipv4Repr {
                src_addr: r.dst_addr,
                dst_addr: r.src_addr,
                next_header: IpProtocol::Icmp,
                payload_len: reply.buffer_len(),
                hop_limit: HOP_LIMIT,
            };
            let mut buf = vec![0u8; out_ip.buffer_len() + reply.buffer_len()];
            let mut op = Ipv4Packet::new_unchecked(&mut buf[..]);
            out_ip.emit(&mut op, &caps);
            reply.emit(&mut Icmpv4Packet::new_unchecked(op.payload_mut()), &caps);
            Some(buf)
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip).ok()?;
            let r = Ipv6Repr::parse(&p).ok()?;
            if r.next_header != IpProtocol::Icmpv6 || r.dst_addr.is_multicast() {
                return None;
            }
            let icmp = Icmpv6Packet::new_checked(p.payload()).ok()?;
            let Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } = Icmpv6Repr::parse(&r.src_addr, &r.dst_addr, &icmp, &caps).ok()?
            else {
                return None;
            };
            let reply = Icmpv6Repr::EchoReply {
                ident,
                seq_no,
                data,
            };
            let out_ip = Ipv6Repr {
                src_addr: r.dst_addr,
                dst_addr: r.src_addr,
                next_header: IpProtocol::Icmpv6,
                payload_len: reply.buffer_len(),
                hop_limit: HOP_LIMIT,
            };
            let mut buf = vec![0u8; out_ip.buffer_len() + reply.buffer_len()];
            let mut op = Ipv6Packet::new_unchecked(&mut buf[..]);
            out_ip.emit(&mut op);
            reply.emit(
                &r.dst_addr,
                &r.src_addr,
                &mut Icmpv6Packet::new_unchecked(op.payload_mut()),
                &caps,
            );
            Some(buf)
        }
        _ => None,
    }
}
