//! IPv6 Neighbor Discovery (RFC 4861) for our addresses: answer Neighbor Solicitations with
//! Neighbor Advertisements, learn from NS/NA, build solicitations.

use std::net::{IpAddr, Ipv6Addr};

use smoltcp::phy::{ChecksumCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, HardwareAddress, Icmpv6Packet,
    Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress,
};

use super::{L2Drop, L2};

/// RFC 4861 7.1: ND messages must arrive with hop limit 255 (not forwarded by a router).
const ND_HOP_LIMIT: u8 = 255;

/// True if the IPv6 packet is an NS or NA (ICMPv6 type 135/136 right after the header).
pub(super) fn is_nd(ip: &[u8]) -> bool {
    ip.get(6) == Some(&58) && matches!(ip.get(40), Some(135 | 136))
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast address of an IPv6 multicast address (RFC 2464 7).
pub fn multicast_mac(a: Ipv6Addr) -> EthernetAddress {
    let o = a.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

impl L2 {
    /// Handles an NS/NA in `ip`; an NA answering an NS for our address goes to `replies`.
    pub(super) fn nd_input(
        &mut self,
        eth_src: EthernetAddress,
        ip: &[u8],
        now: Instant,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<(), L2Drop> {
        let pkt = Ipv6Packet::new_checked(ip).map_err(|_| L2Drop::Malformed)?;
        let ip_repr = Ipv6Repr::parse(&pkt).map_err(|_| L2Drop::Malformed)?;
        if ip_repr.hop_limit != ND_HOP_LIMIT {
            return Err(L2Drop::Malformed);
        }
        let icmp = Icmpv6Packet::new_checked(pkt.payload()).map_err(|_| L2Drop::Malformed)?;
        let repr = Icmpv6Repr::parse(
            &ip_repr.src_addr,
            &ip_repr.dst_addr,
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .map_err(|_| L2Drop::Malformed)?;
        let Icmpv6Repr::Ndisc(nd) = repr else {
            return Err(L2Drop::Malformed);
        };
        match nd {
            NdiscRepr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                let src = ip_repr.src_addr;
                let dad = src.is_unspecified();
                // RFC 4861 7.1.1: a DAD probe carries no source link-layer option.
                if dad && lladdr.is_some() {
                    return Err(L2Drop::Malformed);
                }
                if !dad {
                    if let Some(HardwareAddress::Ethernet(mac)) =
                        lladdr.and_then(|l| l.parse(Medium::Ethernet).ok())
                    {
                        self.learn(IpAddr::V6(src), mac, now);
                    }
                }
                let ours = self.cfg.ipv6.iter().any(|c| c.address() == target_addr);
                if !ours {
                    return Err(L2Drop::NotForUs);
                }
                // RFC 4861 7.2.4: solicited NA to the soliciter; to all-nodes for DAD.
                let (dst_ip, dst_mac, flags) = if dad {
                    (
                        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                        multicast_mac(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
                        NdiscNeighborFlags::OVERRIDE,
                    )
                } else {
                    (
                        src,
                        eth_src,
                        NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                    )
                };
                let na = NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    lladdr: Some(RawHardwareAddress::from(self.cfg.mac)),
                };
                let buf = self.frame_buf();
                replies.push(nd_frame_in(
                    buf,
                    self.cfg.mac,
                    dst_mac,
                    target_addr,
                    dst_ip,
                    &na,
                ));
                self.counters.nd_replies += 1;
                Ok(())
            }
            NdiscRepr::NeighborAdvert {
                target_addr,
                lladdr,
                ..
            } => {
                let mac = match lladdr.and_then(|l| l.parse(Medium::Ethernet).ok()) {
                    Some(HardwareAddress::Ethernet(m)) => m,
                    _ => eth_src,
                };
                self.learn(IpAddr::V6(target_addr), mac, now);
                Ok(())
            }
            _ => Err(L2Drop::Malformed),
        }
    }

    /// A Neighbor Solicitation for `target`: to its solicited-node multicast address, or to
    /// the address itself at `known` when refreshing an entry (RFC 4861 7.2.2, 7.3.3 PROBE).
    pub(super) fn nd_solicit(
        &self,
        target: Ipv6Addr,
        known: Option<EthernetAddress>,
    ) -> Option<Vec<u8>> {
        let src = self
            .cfg
            .ipv6
            .iter()
            .find(|c| c.contains_addr(&target))
            .or(self.cfg.ipv6.first())?;
        let (dst, dst_mac) = match known {
            Some(mac) => (target, mac),
            None => (
                solicited_node(target),
                multicast_mac(solicited_node(target)),
            ),
        };
        let ns = NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: Some(RawHardwareAddress::from(self.cfg.mac)),
        };
        Some(nd_frame_in(
            Vec::new(),
            self.cfg.mac,
            dst_mac,
            src.address(),
            dst,
            &ns,
        ))
    }
}

/// An Ethernet frame carrying an IPv6 ND message, in `buf` (a spare frame's storage, or a
/// new `Vec`).
pub(super) fn nd_frame_in(
    mut buf: Vec<u8>,
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    nd: &NdiscRepr<'_>,
) -> Vec<u8> {
    let icmp = Icmpv6Repr::Ndisc(*nd);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: ND_HOP_LIMIT,
    };
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv6,
    };
    buf.clear();
    buf.resize(eth.buffer_len() + ip.buffer_len() + icmp.buffer_len(), 0);
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut ipp = Ipv6Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut ipp);
    icmp.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(ipp.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    buf
}
