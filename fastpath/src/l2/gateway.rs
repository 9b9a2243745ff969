//! Keeping the gateways resolved: every UE behind a router waits on that router's entry, so
//! it is refreshed before its lifetime runs out, the way Linux's NUD PROBE state does it (RFC
//! 4861 7.3.3: unicast solicitations to the cached link-layer address), instead of letting it
//! expire and holding every UE's packets while a broadcast solicitation goes out. A gateway
//! that stops answering is counted and then solicited by broadcast until it comes back.
//!
//! Sans-IO: [`GatewayWatch::poll`] takes the time and the neighbour cache and says which
//! probes to send; [`super::L2::maintain`] builds the frames.

use std::net::IpAddr;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

use super::neighbor::NeighborCache;

/// Unicast probes before a gateway's entry is given up (Linux's `ucast_solicit`, RFC 4861
/// 10 MAX_UNICAST_SOLICIT), one per solicitation interval.
pub const UNICAST_PROBES: u32 = 3;
/// After this many unanswered broadcast solicitations an unresolved gateway is asked only
/// every `BACKOFF` intervals (a router that is down is not flooded with ARP).
const BROADCAST_SOLICITS: u32 = 3;
/// The slower solicitation interval of a gateway that does not answer, in intervals.
const BACKOFF: u32 = 10;
/// No gateway due.
const NEVER: Instant = Instant::from_micros_const(i64::MAX);

/// A solicitation to send for a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Its entry is about to expire: ask it directly at the address we know (unicast ARP
    /// request / NS to the address itself).
    Unicast(IpAddr, EthernetAddress),
    /// It is unresolved: ask the link (broadcast ARP request / NS to the solicited-node
    /// multicast address).
    Broadcast(IpAddr),
}

/// What the watch counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayCounters {
    /// Unicast probes sent to gateways whose entry was about to expire.
    pub probes: u64,
    /// Unicast probes that got no answer within a solicitation interval.
    pub probe_failures: u64,
    /// Times a resolved gateway became unresolved (its entry ran out unanswered).
    pub unreachable: u64,
    /// Gateways unresolved now (a gauge).
    pub unresolved: u64,
}

/// One gateway's state.
#[derive(Clone, Copy, Debug)]
struct Watched {
    ip: IpAddr,
    /// Unicast probes sent since its entry was last refreshed.
    probes: u32,
    /// Broadcast solicitations sent since it was last resolved.
    solicits: u32,
    /// When to look at it next.
    next: Instant,
    /// Resolved when last looked at.
    reachable: bool,
}

/// The gateways of the routing table and when each is next due for a look.
#[derive(Clone, Debug)]
pub struct GatewayWatch {
    gateways: Vec<Watched>,
    next_due: Instant,
    retry: Duration,
    counters: GatewayCounters,
}

impl GatewayWatch {
    /// Watches `gateways`, probing one solicitation interval (`retry`) apart; each is first
    /// solicited at the first poll.
    pub fn new(gateways: &[IpAddr], retry: Duration) -> Self {
        let start = Instant::from_millis(0);
        GatewayWatch {
            gateways: gateways
                .iter()
                .map(|&ip| Watched {
                    ip,
                    probes: 0,
                    solicits: 0,
                    next: start,
                    reachable: false,
                })
                .collect(),
            next_due: if gateways.is_empty() { NEVER } else { start },
            retry,
            counters: GatewayCounters {
                unresolved: gateways.len() as u64,
                ..GatewayCounters::default()
            },
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> GatewayCounters {
        self.counters
    }

    /// True if [`GatewayWatch::poll`] has anything to look at `now` (false with no gateway).
    #[inline]
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// Looks at the gateways that are due at `now` against `neighbors` and hands the
    /// solicitations to send to `out`. Cheap when nothing is due (one comparison).
    pub fn poll(&mut self, now: Instant, neighbors: &NeighborCache, mut out: impl FnMut(Probe)) {
        if now < self.next_due {
            return;
        }
        // Probing starts this long before the entry expires, so all unicast probes fit.
        let window = self.retry * (UNICAST_PROBES + 1);
        let mut next_due = NEVER;
        for g in &mut self.gateways {
            if g.next <= now {
                match neighbors.entry(&g.ip) {
                    Some((mac, expires)) if expires > now => {
                        if !g.reachable {
                            g.reachable = true;
                            self.counters.unresolved -= 1;
                        }
                        g.solicits = 0;
                        let start = expires - window;
                        if now < start {
                            // Answered (or fresh): nothing to do until the window opens.
                            g.probes = 0;
                            g.next = start;
                        } else {
                            if g.probes > 0 {
                                // The entry was not refreshed since the last probe.
                                self.counters.probe_failures += 1;
                            }
                            if g.probes < UNICAST_PROBES {
                                out(Probe::Unicast(g.ip, mac));
                                self.counters.probes += 1;
                                g.probes += 1;
                                g.next = now + self.retry;
                            } else {
                                // Every probe failed (each counted); the entry runs out.
                                g.probes = 0;
                                g.next = expires;
                            }
                        }
                    }
                    _ => {
                        if g.reachable {
                            g.reachable = false;
                            self.counters.unreachable += 1;
                            self.counters.unresolved += 1;
                        }
                        g.probes = 0;
                        let backoff = if g.solicits < BROADCAST_SOLICITS {
                            1
                        } else {
                            BACKOFF
                        };
                        out(Probe::Broadcast(g.ip));
                        g.solicits = g.solicits.saturating_add(1);
                        g.next = now + self.retry * backoff;
                    }
                }
            }
            next_due = next_due.min(g.next);
        }
        self.next_due = next_due;
    }

    /// Makes the gateway `ip` due at once: its neighbour entry changed (an answer arrived),
    /// so its state and next look are worked out again at the next poll.
    pub fn wake(&mut self, ip: IpAddr, now: Instant) {
        if let Some(g) = self.gateways.iter_mut().find(|g| g.ip == ip) {
            g.next = g.next.min(now);
            self.next_due = self.next_due.min(now);
        }
    }
}
