//! The worker's link layer: Ethernet in and out, ARP and IPv6 Neighbor Discovery for our
//! addresses, a neighbour cache for egress, and ICMP echo replies.

pub mod arp;
pub mod gateway;
pub mod hop;
pub mod icmp;
pub mod nd;
pub mod neighbor;
pub mod pending;
pub mod route;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, IpCidr, Ipv4Cidr, Ipv6Cidr};

use crate::wire::ip::{Direction, IpPacket, IpRepr, IpVersion};
use gateway::{GatewayCounters, GatewayWatch, Probe};
use neighbor::NeighborCache;
pub use route::{Route, RouteTable};

/// Ethernet header length (untagged).
pub const ETH_HDR_LEN: usize = 14;

/// Spare frame buffers kept for ARP and ND answers ([`L2::recycle`]).
const SPARE_FRAMES: usize = 16;

/// The largest storage a spare frame buffer keeps: ARP and ND answers and solicitations are
/// at most 90 bytes (an NA with its option behind a VLAN tag); a larger buffer given back
/// (an ICMP error quoting a packet) is freed rather than held for a 42-byte reply.
const SPARE_FRAME_MAX: usize = 128;

/// Our link: MAC, addresses with their on-link prefixes, default gateways, static routes.
#[derive(Clone, Debug)]
pub struct L2Config {
    /// Our Ethernet address.
    pub mac: EthernetAddress,
    /// Our IPv4 addresses and on-link prefixes.
    pub ipv4: Vec<Ipv4Cidr>,
    /// Our IPv6 addresses and on-link prefixes.
    pub ipv6: Vec<Ipv6Cidr>,
    /// IPv4 next hop for destinations not on a link prefix.
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 next hop for destinations not on a link prefix.
    pub gateway_v6: Option<Ipv6Addr>,
    /// Static routes (the UE pools behind a PGW/UPF); the longest matching prefix among
    /// these, the link prefixes and the defaults picks the next hop.
    pub routes: Vec<Route>,
    /// Neighbour cache size.
    pub max_neighbors: usize,
    /// Lifetime of a learned neighbour.
    pub neighbor_ttl: Duration,
    /// Minimum interval between solicitations of one unresolved next hop.
    pub solicit_retry: Duration,
}

/// What an inbound frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// An IP packet for us at `frame[offset..offset + ip.len]` (Ethernet padding removed),
    /// its header parsed once here for everything after the link layer.
    Ip {
        /// Start of the IP header in the frame.
        offset: usize,
        /// The packet's header: addresses, length, where ESP or the upper layer starts,
        /// fragment fields.
        ip: IpRepr,
    },
    /// ARP or ND, fully handled here (replies, if any, were queued).
    Handled,
}

/// Why a frame was dropped or could not be sent; each is a drop counter reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum L2Drop {
    /// Truncated or inconsistent Ethernet/ARP/ND, or an IP packet whose version, fixed
    /// header or length field does not fit the frame.
    #[error("malformed frame")]
    Malformed,
    /// An IP packet for us whose header is malformed beyond its framing: IPv4 header length
    /// or checksum, IPv6 extension headers (counted as an IP-layer drop).
    #[error("malformed IP header")]
    IpHeader,
    /// Not addressed to us (MAC, ARP target, ND target or IP destination).
    #[error("not for us")]
    NotForUs,
    /// An ethertype we do not handle.
    #[error("unsupported ethertype")]
    Ethertype,
    /// Egress: the next hop's Ethernet address is not known yet (a solicitation was sent).
    #[error("next hop unresolved")]
    NoNeighbor,
    /// Egress: no address of ours or gateway for the destination's family.
    #[error("no route")]
    NoRoute,
}

/// Link-layer counters of one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Counters {
    /// ARP replies sent.
    pub arp_replies: u64,
    /// Neighbor Advertisements sent.
    pub nd_replies: u64,
    /// ARP requests / Neighbor Solicitations sent.
    pub solicitations: u64,
}

/// Link-layer state of one worker.
#[derive(Debug)]
pub struct L2 {
    cfg: L2Config,
    neighbors: NeighborCache,
    routes: RouteTable,
    gateways: GatewayWatch,
    counters: L2Counters,
    /// Storage of frames already sent, for the next answers: a UE's ARP request (one per
    /// registration in the mem bench) costs no allocation.
    spare: Vec<Vec<u8>>,
}

impl L2 {
    /// Link layer for `cfg` with an empty neighbour cache; its gateways are solicited at the
    /// first [`L2::maintain`].
    pub fn new(cfg: L2Config) -> Self {
        let neighbors = NeighborCache::new(cfg.max_neighbors, cfg.neighbor_ttl, cfg.solicit_retry);
        let on_link = (cfg.ipv4.iter().map(|&c| IpCidr::Ipv4(c)))
            .chain(cfg.ipv6.iter().map(|&c| IpCidr::Ipv6(c)));
        let defaults =
            (cfg.gateway_v4.map(IpAddr::V4).into_iter()).chain(cfg.gateway_v6.map(IpAddr::V6));
        let routes = RouteTable::new(on_link, &cfg.routes, defaults);
        let gateways = GatewayWatch::new(routes.gateways(), cfg.solicit_retry);
        L2 {
            cfg,
            neighbors,
            routes,
            gateways,
            counters: L2Counters::default(),
            spare: Vec::new(),
        }
    }

    /// The routing table.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// What the gateway watch counted.
    pub fn gateway_counters(&self) -> GatewayCounters {
        self.gateways.counters()
    }

    /// Records that the neighbour `ip` is at `mac` (from ARP/ND here or from a peer worker).
    /// Only hosts on a link prefix are kept (nothing else is ever resolved); gateways are
    /// kept even in a full cache.
    pub fn learn(&mut self, ip: IpAddr, mac: EthernetAddress, now: Instant) {
        if !self.routes.is_on_link(ip) {
            return;
        }
        if self.routes.is_gateway(ip) {
            self.neighbors.learn_pinned(ip, mac, now);
            self.gateways.wake(ip, now);
        } else {
            self.neighbors.learn(ip, mac, now);
        }
    }

    /// Keeps the gateways resolved: refreshes an entry about to expire with unicast probes
    /// to the known address (RFC 4861 7.3.3 PROBE) and solicits an unresolved gateway by
    /// broadcast (rate-limited); the frames go to `replies`. Call once per loop turn; it
    /// costs one comparison when no gateway is due.
    #[inline]
    pub fn maintain(&mut self, now: Instant, replies: &mut Vec<Vec<u8>>) {
        if self.gateways.is_due(now) {
            self.maintain_due(now, replies);
        }
    }

    /// [`L2::maintain`] once a gateway is due.
    fn maintain_due(&mut self, now: Instant, replies: &mut Vec<Vec<u8>>) {
        // Allocates only on a turn that sends probes (a few per `neighbor_ttl`).
        let mut probes = Vec::new();
        self.gateways.poll(now, &self.neighbors, |p| probes.push(p));
        for p in probes {
            match p {
                Probe::Broadcast(ip) => self.solicit(ip, now, replies),
                Probe::Unicast(ip, mac) => {
                    let f = match ip {
                        IpAddr::V4(a) => self.arp_request(a, Some(mac)),
                        IpAddr::V6(a) => self.nd_solicit(a, Some(mac)),
                    };
                    if let Some(f) = f {
                        self.counters.solicitations += 1;
                        replies.push(f);
                    }
                }
            }
        }
    }

    /// Gives back the storage of a frame [`L2::input`] or [`L2::maintain`] built, once it
    /// was copied out, for a later answer (at most [`SPARE_FRAMES`] are kept, each of at most
    /// [`SPARE_FRAME_MAX`] bytes).
    pub fn recycle(&mut self, frame: Vec<u8>) {
        let cap = frame.capacity();
        if self.spare.len() < SPARE_FRAMES && cap > 0 && cap <= SPARE_FRAME_MAX {
            self.spare.push(frame);
        }
    }

    /// Storage for a frame: a spare one, or a new `Vec`.
    fn frame_buf(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// The configuration.
    pub fn config(&self) -> &L2Config {
        &self.cfg
    }

    /// Counters so far.
    pub fn counters(&self) -> L2Counters {
        self.counters
    }

    /// The neighbour cache.
    pub fn neighbors(&mut self) -> &mut NeighborCache {
        &mut self.neighbors
    }

    /// The neighbour cache, to read.
    pub fn neighbor_cache(&self) -> &NeighborCache {
        &self.neighbors
    }

    /// True if `ip` is one of our addresses.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.cfg.ipv4.iter().any(|c| c.address() == a),
            IpAddr::V6(a) => self.cfg.ipv6.iter().any(|c| c.address() == a),
        }
    }

    /// Classifies an inbound Ethernet frame: ARP and ND are handled here (answers appended
    /// to `replies`), IP packets for our addresses are returned with their parsed header
    /// (IPv4 checksum verified).
    pub fn input(
        &mut self,
        frame: &[u8],
        now: Instant,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<Input, L2Drop> {
        let eth = EthernetFrame::new_checked(frame).map_err(|_| L2Drop::Malformed)?;
        let dst = eth.dst_addr();
        if dst != self.cfg.mac && !dst.is_broadcast() && !dst.is_multicast() {
            return Err(L2Drop::NotForUs);
        }
        let payload = eth.payload();
        match eth.ethertype() {
            EthernetProtocol::Arp => self
                .arp_input(payload, now, replies)
                .map(|()| Input::Handled),
            EthernetProtocol::Ipv4 => self.ip_input(ip_view(payload, IpVersion::V4)?),
            EthernetProtocol::Ipv6 => {
                let pkt = ip_view(payload, IpVersion::V6)?;
                if nd::is_nd(pkt.packet()) {
                    return self
                        .nd_input(eth.src_addr(), pkt.packet(), now, replies)
                        .map(|()| Input::Handled);
                }
                self.ip_input(pkt)
            }
            _ => Err(L2Drop::Ethertype),
        }
    }

    /// An IP packet, if it is for us: the one parse of its header on the inbound path.
    fn ip_input(&self, pkt: IpPacket<&[u8]>) -> Result<Input, L2Drop> {
        if !self.is_local(pkt.dst_addr()) {
            return Err(L2Drop::NotForUs);
        }
        if !pkt.verify_checksum() {
            return Err(L2Drop::IpHeader);
        }
        let ip = IpRepr::parse(&pkt, Direction::Inbound).map_err(|_| L2Drop::IpHeader)?;
        Ok(Input::Ip {
            offset: ETH_HDR_LEN,
            ip,
        })
    }

    /// The next hop towards `dst`: itself if on one of our link prefixes, else the router
    /// of the longest matching static route or default (`None`: no route).
    pub fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        self.routes.next_hop(dst)
    }

    /// The Ethernet header for sending an IP packet to `dst`, or a drop reason. When the
    /// next hop is unresolved a rate-limited ARP request / NS is appended to `replies`.
    pub fn header_for(
        &mut self,
        dst: IpAddr,
        now: Instant,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<[u8; ETH_HDR_LEN], L2Drop> {
        let hop = self.next_hop(dst).ok_or(L2Drop::NoRoute)?;
        self.header_to(hop, now).ok_or_else(|| {
            self.solicit(hop, now, replies);
            L2Drop::NoNeighbor
        })
    }

    /// The Ethernet header for sending an IP packet to the next hop `hop` (an IP packet of
    /// the same family), if its Ethernet address is known.
    pub fn header_to(&self, hop: IpAddr, now: Instant) -> Option<[u8; ETH_HDR_LEN]> {
        let mac = self.neighbors.lookup(&hop, now)?;
        Some(self.header_of(hop, mac))
    }

    /// The Ethernet header from us to `mac`, the next hop `hop` (its family gives the
    /// ethertype).
    fn header_of(&self, hop: IpAddr, mac: EthernetAddress) -> [u8; ETH_HDR_LEN] {
        let ethertype: u16 = match hop {
            IpAddr::V4(_) => 0x0800,
            IpAddr::V6(_) => 0x86dd,
        };
        let mut h = [0u8; ETH_HDR_LEN];
        h[..6].copy_from_slice(mac.as_bytes());
        h[6..12].copy_from_slice(self.cfg.mac.as_bytes());
        h[12..].copy_from_slice(&ethertype.to_be_bytes());
        h
    }

    /// Appends an ARP request / NS for the unresolved next hop `hop` to `replies`, unless
    /// one went out less than `solicit_retry` ago.
    pub fn solicit(&mut self, hop: IpAddr, now: Instant, replies: &mut Vec<Vec<u8>>) {
        if !self.neighbors.should_solicit(hop, now) {
            return;
        }
        let req = match hop {
            IpAddr::V4(a) => self.arp_request(a, None),
            IpAddr::V6(a) => self.nd_solicit(a, None),
        };
        if let Some(f) = req {
            self.counters.solicitations += 1;
            replies.push(f);
        }
    }
}

/// The checked view of the IP packet at the front of `p`, which the ethertype says is of
/// `version`.
fn ip_view(p: &[u8], version: IpVersion) -> Result<IpPacket<&[u8]>, L2Drop> {
    match IpPacket::new_checked(p) {
        Ok(pkt) if pkt.version() == version => Ok(pkt),
        _ => Err(L2Drop::Malformed),
    }
}

#[cfg(test)]
mod tests;
