//! TCP checksum verification of inbound segments (RFC 9293 3.1, RFC 1071; the pseudo-header
//! of RFC 9293 3.1 for IPv4 and RFC 8200 8.1 for IPv6), eight bytes per addition.
//!
//! Why not smoltcp's: `smoltcp::wire::ip::checksum::data` adds two bytes at a time, 8% of the
//! worker's samples on 1408-byte segments (docs/BENCHMARKS.md, "The SIP framing scan in one
//! pass"). The per-UE interfaces are built with smoltcp's TCP receive check off
//! (`Checksum::Tx`: it still fills the checksum of what it sends) and every segment is
//! verified here first, protected or not, so no segment with a bad checksum reaches a socket.

use super::ip::{Direction, IpRepr};
use std::net::IpAddr;

/// IP protocol number of TCP.
const TCP: u8 = 6;

/// RFC 1071 ones'-complement sum of `data` (an odd last byte padded with zero), folded to 16
/// bits, not complemented. Big-endian 64-bit words summed in 128 bits: one add per 8 bytes,
/// no carry lost (the end-around carries are folded at the end, which RFC 1071 2(B) allows).
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut acc: u128 = 0;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        acc += u128::from(u64::from_be_bytes(b));
    }
    let tail = words.remainder();
    let mut b = [0u8; 8];
    b[..tail.len()].copy_from_slice(tail);
    acc += u128::from(u64::from_be_bytes(b));
    fold(acc)
}

/// Folds a wide ones'-complement accumulator to 16 bits.
fn fold(mut acc: u128) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The pseudo-header's sum: addresses, protocol and upper-layer length.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> u128 {
    let mut acc: u128 = u128::from(TCP) + len as u128;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc += u128::from(u32::from(s)) + u128::from(u32::from(d));
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (s, d) = (u128::from(s), u128::from(d));
            acc += (s >> 64) + (s & u128::from(u64::MAX)) + (d >> 64) + (d & u128::from(u64::MAX));
        }
        _ => {}
    }
    acc
}

/// Whether an inbound IP packet is acceptable as far as the TCP checksum goes: true when it
/// is not an unfragmented TCP segment (other protocols and fragments are not this check's;
/// smoltcp verifies UDP and ICMP and drops fragments), or when its checksum is right. A TCP
/// segment too short for its header is refused.
pub fn tcp_checksum_ok(packet: &[u8]) -> bool {
    let Ok(ip) = IpRepr::from_bytes(packet, Direction::Inbound) else {
        return true;
    };
    if ip.next_header != TCP || ip.fragment.is_some() {
        return true;
    }
    let Some(segment) = packet.get(ip.payload_offset..ip.len) else {
        return false;
    };
    if segment.len() < 20 {
        return false;
    }
    let sum =
        u128::from(ones_complement_sum(segment)) + pseudo_header_sum(ip.src, ip.dst, segment.len());
    fold(sum) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket,
        TcpRepr, TcpSeqNumber,
    };

    /// A TCP segment with `payload`, its checksum filled by smoltcp (an implementation that
    /// shares nothing with this one), in IPv4 or IPv6.
    fn segment(v6: bool, payload: &[u8]) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: 5064,
            dst_port: 6100,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(0x0102_0304),
            ack_number: Some(TcpSeqNumber(7)),
            window_len: 4096,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload,
        };
        let caps = ChecksumCapabilities::default();
        let tcp_len = tcp.buffer_len();
        let (src, dst): (IpAddress, IpAddress) = if v6 {
            ("fd00::2".parse().unwrap(), "fd00::1".parse().unwrap())
        } else {
            ("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap())
        };
        let mut buf;
        let off = if v6 {
            let repr = Ipv6Repr {
                src_addr: match src {
                    IpAddress::Ipv6(a) => a,
                    _ => unreachable!(),
                },
                dst_addr: match dst {
                    IpAddress::Ipv6(a) => a,
                    _ => unreachable!(),
                },
                next_header: IpProtocol::Tcp,
                payload_len: tcp_len,
                hop_limit: 64,
            };
            buf = vec![0u8; repr.buffer_len() + tcp_len];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf));
            repr.buffer_len()
        } else {
            let repr = Ipv4Repr {
                src_addr: match src {
                    IpAddress::Ipv4(a) => a,
                    _ => unreachable!(),
                },
                dst_addr: match dst {
                    IpAddress::Ipv4(a) => a,
                    _ => unreachable!(),
                },
                next_header: IpProtocol::Tcp,
                payload_len: tcp_len,
                hop_limit: 64,
            };
            buf = vec![0u8; repr.buffer_len() + tcp_len];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf), &caps);
            repr.buffer_len()
        };
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut buf[off..]),
            &src,
            &dst,
            &caps,
        );
        buf
    }

    /// Every length (odd and even tails), both families: smoltcp's checksums verify, and any
    /// single flipped bit of the segment or of an address is caught.
    #[test]
    fn agrees_with_smoltcp_and_catches_a_flipped_bit() {
        for v6 in [false, true] {
            for len in (0..80).chain([1367, 1368, 1369]) {
                let payload: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                let p = segment(v6, &payload);
                assert!(tcp_checksum_ok(&p), "v6 {v6} len {len}");
                let ip_hdr = if v6 { 40 } else { 20 };
                let src_at = if v6 { 8 } else { 12 };
                // The segment's first and last byte, its checksum field, a source address bit.
                for at in [ip_hdr, p.len() - 1, ip_hdr + 16, src_at] {
                    for bit in [0, 5] {
                        let mut bad = p.clone();
                        bad[at] ^= 1 << bit;
                        assert!(
                            !tcp_checksum_ok(&bad),
                            "v6 {v6} len {len} byte {at} bit {bit}"
                        );
                    }
                }
            }
        }
    }

    /// Not TCP, fragments and unparsable packets are left to smoltcp; a truncated TCP
    /// header is refused.
    #[test]
    fn only_whole_tcp_segments_are_judged() {
        let mut p = segment(false, b"INVITE");
        p[9] = 17; // UDP now: not this check's
        assert!(tcp_checksum_ok(&p));
        let mut frag = segment(false, b"INVITE");
        frag[6] = 0x20; // more fragments
        assert!(tcp_checksum_ok(&frag));
        assert!(tcp_checksum_ok(&[0x45, 0, 0]));
        let mut short = segment(false, b"");
        short.truncate(30);
        short[3] = 30; // total length 30: a 10-byte TCP "header"
        short[10..12].copy_from_slice(&[0, 0]);
        let c = super::super::ip::ipv4_checksum(&short[..20]);
        short[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(!tcp_checksum_ok(&short));
    }

    /// RFC 1071 3's worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(ones_complement_sum(&[0x00, 0x01, 0xf2]), 0xf201);
    }
}
