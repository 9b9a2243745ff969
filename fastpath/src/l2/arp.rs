//! ARP (RFC 826) for our IPv4 addresses: answer requests, learn senders, build requests.

use std::net::{IpAddr, Ipv4Addr};

use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

use super::{L2Drop, L2};

/// Bytes of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;

impl L2 {
    /// Handles an ARP payload; a reply frame for a request to us is appended to `replies`.
    pub(super) fn arp_input(
        &mut self,
        payload: &[u8],
        now: Instant,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<(), L2Drop> {
        let pkt = ArpPacket::new_checked(payload).map_err(|_| L2Drop::Malformed)?;
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = ArpRepr::parse(&pkt).map_err(|_| L2Drop::Malformed)?
        else {
            return Err(L2Drop::Malformed);
        };
        let for_us = self
            .cfg
            .ipv4
            .iter()
            .any(|c| c.address() == target_protocol_addr);
        let sender = IpAddr::V4(source_protocol_addr);
        // RFC 826 "merge": update a known sender; add it if the packet is for us.
        if for_us || self.neighbors.knows(&sender) {
            self.learn(sender, source_hardware_addr, now);
        }
        if !for_us {
            return Err(L2Drop::NotForUs);
        }
        if operation == ArpOperation::Request {
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.cfg.mac,
                source_protocol_addr: target_protocol_addr,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            let buf = self.frame_buf();
            replies.push(arp_frame_in(
                buf,
                self.cfg.mac,
                source_hardware_addr,
                &reply,
            ));
            self.counters.arp_replies += 1;
        }
        Ok(())
    }

    /// An ARP request for `target` from our address on its subnet: broadcast, or unicast to
    /// `known` when refreshing an entry (RFC 1122 2.3.2.1, as Linux's NUD PROBE does).
    pub(super) fn arp_request(
        &self,
        target: Ipv4Addr,
        known: Option<EthernetAddress>,
    ) -> Option<Vec<u8>> {
        let src = self
            .cfg
            .ipv4
            .iter()
            .find(|c| c.contains_addr(&target))
            .or(self.cfg.ipv4.first())?;
        let req = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: src.address(),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let dst = known.unwrap_or(EthernetAddress::BROADCAST);
        Some(arp_frame_in(Vec::new(), self.cfg.mac, dst, &req))
    }
}

/// An Ethernet frame carrying `arp`, in `buf` (a spare frame's storage, or a new `Vec`).
fn arp_frame_in(
    mut buf: Vec<u8>,
    src: EthernetAddress,
    dst: EthernetAddress,
    arp: &ArpRepr,
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EthernetProtocol::Arp,
    };
    buf.clear();
    buf.resize(eth.buffer_len() + ARP_LEN, 0);
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}
