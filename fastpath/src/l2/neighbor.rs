//! The worker's neighbour cache: IPv4/IPv6 next hop to Ethernet address, learned from ARP
//! (RFC 826) and Neighbor Discovery (RFC 4861), with expiry and a size bound.

use akagate_proto::hash::{keyed_map, KeyedMap};
use std::net::IpAddr;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

/// Bounded neighbour cache with per-entry expiry and solicitation rate limiting.
#[derive(Debug)]
pub struct NeighborCache {
    entries: KeyedMap<IpAddr, (EthernetAddress, Instant)>,
    /// When we last solicited each unresolved next hop.
    solicited: KeyedMap<IpAddr, Instant>,
    max: usize,
    ttl: Duration,
    retry: Duration,
    /// Moves whenever an entry is dropped, changes its address or expires earlier than it
    /// did: what a caller copied out of the cache ([`NeighborCache::generation`]) is still
    /// right while this has not moved and the copy's expiry has not passed.
    generation: u32,
}

impl NeighborCache {
    /// A cache of at most `max` entries, each valid for `ttl`; an unresolved next hop is
    /// solicited at most once per `retry`.
    pub fn new(max: usize, ttl: Duration, retry: Duration) -> Self {
        NeighborCache {
            entries: keyed_map(),
            solicited: keyed_map(),
            max,
            ttl,
            retry,
            generation: 0,
        }
    }

    /// The cache's generation: an entry read from [`NeighborCache::entry`] (its address and
    /// expiry) stays what [`NeighborCache::lookup`] answers, until its expiry, for as long as
    /// this is unchanged. Refreshing an entry to the same address and a later expiry does not
    /// move it (a copy then expires early and is read again).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Marks every copy of an entry stale.
    fn invalidate(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// The Ethernet address of `ip` if known and not expired.
    pub fn lookup(&self, ip: &IpAddr, now: Instant) -> Option<EthernetAddress> {
        self.entries
            .get(ip)
            .filter(|(_, exp)| *exp > now)
            .map(|(mac, _)| *mac)
    }

    /// The Ethernet address of `ip` and when its entry expires, if it has one (even expired).
    pub fn entry(&self, ip: &IpAddr) -> Option<(EthernetAddress, Instant)> {
        self.entries.get(ip).copied()
    }

    /// Records `ip` at `mac`. A full cache drops expired entries first and otherwise refuses
    /// new addresses (existing ones are still refreshed).
    pub fn learn(&mut self, ip: IpAddr, mac: EthernetAddress, now: Instant) {
        self.learn_bounded(ip, mac, now, true);
    }

    /// Records `ip` at `mac` even when the cache is full: a router every UE behind it needs
    /// must not be crowded out by on-link hosts.
    pub fn learn_pinned(&mut self, ip: IpAddr, mac: EthernetAddress, now: Instant) {
        self.learn_bounded(ip, mac, now, false);
    }

    /// Drops the entry of `ip` (a neighbour another worker owns).
    pub fn forget(&mut self, ip: &IpAddr) {
        if self.entries.remove(ip).is_some() {
            self.invalidate();
        }
    }

    /// One look-up of `ip` in the usual cases (a known address refreshed, a new one with room:
    /// a UE's ARP request), and none in `solicited` while nothing is being solicited.
    fn learn_bounded(&mut self, ip: IpAddr, mac: EthernetAddress, now: Instant, bounded: bool) {
        use std::collections::hash_map::Entry;
        if !mac.is_unicast() {
            return;
        }
        let exp = now + self.ttl;
        let full = bounded && self.entries.len() >= self.max;
        match self.entries.entry(ip) {
            Entry::Occupied(mut e) => {
                let (old, old_exp) = e.insert((mac, exp));
                if old != mac || exp < old_exp {
                    self.invalidate();
                }
            }
            Entry::Vacant(v) if !full => {
                v.insert((mac, exp));
            }
            Entry::Vacant(_) => {
                let before = self.entries.len();
                self.entries.retain(|_, (_, exp)| *exp > now);
                if self.entries.len() != before {
                    self.invalidate();
                }
                if self.entries.len() >= self.max {
                    return;
                }
                self.entries.insert(ip, (mac, exp));
            }
        }
        if !self.solicited.is_empty() {
            self.solicited.remove(&ip);
        }
    }

    /// True if `ip` exists in the cache (even expired): RFC 826 updates only known senders.
    pub fn knows(&self, ip: &IpAddr) -> bool {
        self.entries.contains_key(ip)
    }

    /// True if a solicitation for `ip` should be sent now (and records it).
    pub fn should_solicit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if let Some(&last) = self.solicited.get(&ip) {
            if now < last + self.retry {
                return false;
            }
        }
        if self.solicited.len() >= self.max {
            let retry = self.retry;
            self.solicited.retain(|_, t| now < *t + retry);
            if self.solicited.len() >= self.max {
                return false;
            }
        }
        self.solicited.insert(ip, now);
        true
    }

    /// Number of entries (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
