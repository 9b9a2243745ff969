//! Packets waiting for their next hop's Ethernet address: a small queue per neighbour and a
//! bound on all of them, preallocated, released in arrival order when the neighbour resolves
//! and dropped when it does not (Linux's `unres_qlen` per neighbour, RFC 4861 7.2.2: "the
//! sender SHOULD retain a small queue of packets waiting for address resolution").

use std::net::IpAddr;

use smoltcp::time::{Duration, Instant};

/// Packets one unresolved neighbour may hold (Linux's default `unres_qlen`, RFC 1122
/// 2.3.2.2's "at least one").
pub const PER_NEIGHBOR: usize = 3;

/// One waiting packet.
#[derive(Debug)]
struct Held<T> {
    hop: IpAddr,
    item: T,
    /// When resolution is given up for it.
    deadline: Instant,
}

/// What [`PendingQueue::hold`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Hold<T> {
    /// Queued.
    Queued,
    /// Queued; its neighbour already held [`PER_NEIGHBOR`] packets and this, the oldest of
    /// them, was dropped to make room (as Linux does).
    Evicted(T),
    /// Not queued: every slot of the queue is taken (the packet comes back).
    Full(T),
}

/// What happened to a packet handed back by [`PendingQueue::service`].
#[derive(Debug, PartialEq, Eq)]
pub enum Released<'a, R> {
    /// Its neighbour resolved to `R` (the Ethernet header): send it.
    Resolved(&'a R),
    /// Its neighbour did not answer in time: drop it.
    Failed,
}

/// The packets waiting for resolution, in arrival order; never allocates after
/// [`PendingQueue::new`].
#[derive(Debug)]
pub struct PendingQueue<T> {
    held: Vec<Held<T>>,
    total: usize,
    lifetime: Duration,
}

impl<T> PendingQueue<T> {
    /// A queue of at most `total` packets (at most [`PER_NEIGHBOR`] per neighbour), each
    /// given up `lifetime` after it was queued.
    pub fn new(total: usize, lifetime: Duration) -> Self {
        PendingQueue {
            held: Vec::with_capacity(total),
            total,
            lifetime,
        }
    }

    /// Queues `item` for the neighbour `hop` at `now`.
    pub fn hold(&mut self, hop: IpAddr, item: T, now: Instant) -> Hold<T> {
        let deadline = now + self.lifetime;
        if self.held.iter().filter(|h| h.hop == hop).count() >= PER_NEIGHBOR {
            // The oldest of this neighbour makes room (Linux's `unres_qlen` overflow).
            if let Some(i) = self.held.iter().position(|h| h.hop == hop) {
                let old = self.held.remove(i);
                self.held.push(Held {
                    hop,
                    item,
                    deadline,
                });
                return Hold::Evicted(old.item);
            }
        }
        if self.held.len() >= self.total {
            return Hold::Full(item);
        }
        self.held.push(Held {
            hop,
            item,
            deadline,
        });
        Hold::Queued
    }

    /// Hands back, in arrival order, every packet whose neighbour `resolve` now answers and
    /// every packet past its deadline; the others stay.
    pub fn service<R>(
        &mut self,
        now: Instant,
        mut resolve: impl FnMut(IpAddr) -> Option<R>,
        mut out: impl FnMut(T, Released<'_, R>),
    ) {
        let mut i = 0;
        while i < self.held.len() {
            let h = &self.held[i];
            let (hop, deadline) = (h.hop, h.deadline);
            match resolve(hop) {
                Some(r) => {
                    // Everything of this hop from here on, in order, with one answer.
                    let mut j = i;
                    while j < self.held.len() {
                        if self.held[j].hop == hop {
                            out(self.held.remove(j).item, Released::Resolved(&r));
                        } else {
                            j += 1;
                        }
                    }
                }
                None if now >= deadline => out(self.held.remove(i).item, Released::Failed),
                None => i += 1,
            }
        }
    }

    /// The neighbours packets wait for, once per waiting packet.
    pub fn hops(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.held.iter().map(|h| h.hop)
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}
