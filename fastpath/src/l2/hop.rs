//! A UE's next hop as last resolved, kept with the UE: the Ethernet header of its frames out,
//! so a frame out does not look its next hop up in the neighbour cache (a map with one entry
//! per on-link UE, whose bucket misses at many UEs).
//!
//! A copy is right while the neighbour cache's generation has not moved and the entry's
//! expiry has not passed ([`NeighborCache::generation`]): a neighbour whose address changes,
//! that is forgotten or evicted moves the generation; one that expires (a gateway that stopped
//! answering its probes) fails the expiry. The route table is fixed for the worker's life, so
//! the next hop of an address never changes.

use std::net::IpAddr;

use smoltcp::time::Instant;

use super::neighbor::NeighborCache;
use super::{ETH_HDR_LEN, L2};

/// The Ethernet header last resolved for one destination, and until when it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resolved {
    dst: IpAddr,
    hdr: [u8; ETH_HDR_LEN],
    expires: Instant,
    generation: u32,
}

/// A destination's resolved Ethernet header, or nothing (see the module's comment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HopCache(Option<Resolved>);

impl HopCache {
    /// The header for a packet to `dst` at `now`, if the copy is for `dst` and still right
    /// against `neighbors`.
    pub fn get(
        &self,
        dst: IpAddr,
        now: Instant,
        neighbors: &NeighborCache,
    ) -> Option<[u8; ETH_HDR_LEN]> {
        self.0
            .filter(|r| r.dst == dst && r.generation == neighbors.generation() && now < r.expires)
            .map(|r| r.hdr)
    }
}

impl L2 {
    /// The Ethernet header for an IP packet to `dst`: from `hop` when its copy is right,
    /// else from the route table and the neighbour cache, the copy then refreshed. `None`:
    /// no route or an unresolved next hop (nothing is solicited here: see
    /// [`L2::header_for`]).
    pub fn header_cached(
        &self,
        dst: IpAddr,
        now: Instant,
        hop: &mut HopCache,
    ) -> Option<[u8; ETH_HDR_LEN]> {
        if let Some(h) = hop.get(dst, now, &self.neighbors) {
            return Some(h);
        }
        let next = self.next_hop(dst)?;
        let (mac, expires) = self.neighbors.entry(&next)?;
        if expires <= now {
            return None;
        }
        let hdr = self.header_of(next, mac);
        hop.0 = Some(Resolved {
            dst,
            hdr,
            expires,
            generation: self.neighbors.generation(),
        });
        Some(hdr)
    }
}
