//! Bounded lock-free rings between the workers of one port: a frame that reached a worker which
//! does not own its UE goes to the owner (and its buffer comes back), and neighbours learned by
//! one worker from ARP/ND are told to the worker that owns them (gateways to all the others).
//!
//! Ownership is the port's own steering function (`akagate_sys::steer::Steering`), so strays
//! are the exception: ARP (no IP address, queue 0), NICs that cannot hash the source address
//! alone, and packets from a UE to another of our addresses than the one RSS assumes.

use std::net::IpAddr;

use akagate_sys::steer::Steering;
use akagate_sys::PacketBuf;
use crossbeam_queue::ArrayQueue;
use smoltcp::wire::EthernetAddress;

use crate::ipc::WorkerEvent;
use crate::wire::IpRepr;
use akagate_proto::shard::{EventRouter, Shard};

/// A frame on its way to the worker that owns its UE, with what the sender's link layer
/// found (the owner's would find the same: the workers of a port share one configuration),
/// so the owner does not parse it again.
#[derive(Debug)]
pub(super) struct Handed {
    /// The worker it came from (the buffer goes back there).
    pub from: usize,
    /// The frame.
    pub buf: PacketBuf,
    /// Where its IP header starts in the frame.
    pub offset: usize,
    /// Its parsed IP header.
    pub ip: IpRepr,
}

/// One worker's inboxes.
#[derive(Debug)]
struct Mailbox {
    /// Frames for UEs this worker owns.
    frames: ArrayQueue<Handed>,
    /// Buffers this worker handed away, coming back so its pool does not drain.
    returns: ArrayQueue<PacketBuf>,
    /// Neighbours (IP, Ethernet address) another worker learned.
    neighbors: ArrayQueue<(IpAddr, EthernetAddress)>,
}

/// The rings of all workers of a port; shared by them behind an `Arc`.
#[derive(Debug)]
pub struct Handoff {
    boxes: Vec<Mailbox>,
}

impl Handoff {
    /// Rings for `workers` workers, each inbox holding `capacity` frames and `capacity`
    /// neighbours (at least 1). The return ring of a worker holds every buffer it can have
    /// lent out (a full inbox at each other worker plus the one each is processing), so
    /// returning does not fail.
    pub fn new(workers: usize, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let workers = workers.max(1);
        Handoff {
            boxes: (0..workers)
                .map(|_| Mailbox {
                    frames: ArrayQueue::new(capacity),
                    returns: ArrayQueue::new((capacity + 1) * workers),
                    neighbors: ArrayQueue::new(capacity),
                })
                .collect(),
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.boxes.len()
    }

    /// Hands `frame` to worker `to`; gives it back if the ring is full.
    // The frame goes back by value, as `ArrayQueue::push` gives it: boxing it would allocate
    // per handed frame.
    #[allow(clippy::result_large_err)]
    pub(super) fn send_frame(&self, to: usize, frame: Handed) -> Result<(), Handed> {
        match self.boxes.get(to) {
            Some(b) => b.frames.push(frame),
            None => Err(frame),
        }
    }

    /// The next frame handed to worker `me`.
    pub(super) fn recv_frame(&self, me: usize) -> Option<Handed> {
        self.boxes.get(me)?.frames.pop()
    }

    /// Gives a buffer back to the worker `owner` that received it from its port; returns it
    /// if that is impossible.
    pub(super) fn give_back(&self, owner: usize, buf: PacketBuf) -> Result<(), PacketBuf> {
        match self.boxes.get(owner) {
            Some(b) => b.returns.push(buf),
            None => Err(buf),
        }
    }

    /// A buffer worker `me` lent out and got back.
    pub(super) fn returned(&self, me: usize) -> Option<PacketBuf> {
        self.boxes.get(me)?.returns.pop()
    }

    /// Tells every worker but `from` that `ip` is at `mac`; returns how many rings were full.
    pub(super) fn share_neighbor(&self, from: usize, ip: IpAddr, mac: EthernetAddress) -> u64 {
        let mut full = 0;
        for (i, b) in self.boxes.iter().enumerate() {
            if i != from && b.neighbors.push((ip, mac)).is_err() {
                full += 1;
            }
        }
        full
    }

    /// Tells worker `to` alone that `ip` is at `mac`; returns 1 if its ring was full.
    pub(super) fn tell_neighbor(&self, to: usize, ip: IpAddr, mac: EthernetAddress) -> u64 {
        match self.boxes.get(to) {
            Some(b) => u64::from(b.neighbors.push((ip, mac)).is_err()),
            None => 1,
        }
    }

    /// The next neighbour another worker learned.
    pub(super) fn recv_neighbor(&self, me: usize) -> Option<(IpAddr, EthernetAddress)> {
        self.boxes.get(me)?.neighbors.pop()
    }
}

/// What a worker knows about the other workers of its port.
#[derive(Debug)]
pub(super) struct Peers {
    /// The port's steering: the owner of a UE is `steering.queue_for_ue(ue)`.
    pub steering: Steering,
    /// The rings.
    pub handoff: std::sync::Arc<Handoff>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_sys::BufLayout;

    #[test]
    fn frames_neighbours_and_returns_are_bounded_and_addressed() {
        let h = Handoff::new(3, 2);
        let b = || PacketBuf::new(BufLayout::STANDARD);
        // IPv4 UDP 10.0.0.1 -> 10.0.0.2, 8 bytes of UDP header.
        let pkt = hex::decode("4500001c00000000401100000a0000010a00000213c4177000080000").unwrap();
        let ip = IpRepr::from_bytes(&pkt, crate::wire::Direction::Inbound).unwrap();
        let handed = |from| Handed {
            from,
            buf: b(),
            offset: 14,
            ip,
        };
        assert!(h.send_frame(2, handed(0)).is_ok());
        assert!(h.send_frame(2, handed(1)).is_ok());
        assert!(h.send_frame(2, handed(0)).is_err(), "ring of 2");
        assert!(h.send_frame(7, handed(0)).is_err(), "no worker 7");
        let first = h.recv_frame(2).unwrap();
        assert_eq!((first.from, first.offset, first.ip), (0, 14, ip));
        assert_eq!(h.recv_frame(2).map(|f| f.from), Some(1));
        assert!(h.recv_frame(2).is_none());
        assert!(h.recv_frame(0).is_none());

        let mac = EthernetAddress([2, 0, 0, 0, 0, 9]);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(h.share_neighbor(1, ip, mac), 0);
        assert_eq!(h.recv_neighbor(0), Some((ip, mac)));
        assert_eq!(h.recv_neighbor(2), Some((ip, mac)));
        assert_eq!(h.recv_neighbor(1), None, "not told to itself");
        assert_eq!(h.tell_neighbor(2, ip, mac), 0);
        assert_eq!(h.recv_neighbor(2), Some((ip, mac)));
        assert_eq!(h.recv_neighbor(0), None, "told to worker 2 alone");
        assert_eq!(h.tell_neighbor(2, ip, mac) + h.tell_neighbor(2, ip, mac), 0);
        assert_eq!(h.tell_neighbor(2, ip, mac), 1, "ring of 2 full");

        for _ in 0..9 {
            assert!(h.give_back(0, b()).is_ok());
        }
        assert!(h.returned(0).is_some());
    }
}

/// Where a worker's events go: the one slowpath, or the slowpath shard each event belongs to
/// (docs/ARCHITECTURE.md, "Slowpath shards"). A worker never blocks on either.
#[derive(Clone)]
pub enum EventSink {
    /// One slowpath thread takes every event.
    One(crossbeam_channel::Sender<WorkerEvent>),
    /// One queue per shard; the router names the shard of each event.
    Shards {
        /// Queue `i` goes to shard `i`.
        queues: Vec<crossbeam_channel::Sender<WorkerEvent>>,
        /// Picks the shard of an event.
        router: std::sync::Arc<dyn EventRouter>,
    },
}

impl core::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EventSink::One(_) => f.write_str("EventSink::One"),
            EventSink::Shards { queues, .. } => write!(f, "EventSink::Shards({})", queues.len()),
        }
    }
}

impl From<crossbeam_channel::Sender<WorkerEvent>> for EventSink {
    fn from(tx: crossbeam_channel::Sender<WorkerEvent>) -> Self {
        EventSink::One(tx)
    }
}

/// The event could not be queued (a full or closed queue); the caller counts the drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventDropped;

impl EventSink {
    /// Queues `ev` for its shard without waiting. An event for every shard is dropped only
    /// where a queue is full (reported if any was).
    pub fn try_send(&self, ev: WorkerEvent) -> Result<(), EventDropped> {
        match self {
            EventSink::One(tx) => tx.try_send(ev).map_err(|_| EventDropped),
            EventSink::Shards { queues, router } => match router.route(&ev) {
                Shard::One(i) => match queues.get(i).or(queues.first()) {
                    Some(tx) => tx.try_send(ev).map_err(|_| EventDropped),
                    None => Err(EventDropped),
                },
                Shard::All => {
                    let mut ok = true;
                    for tx in queues {
                        ok &= tx.try_send(ev.clone()).is_ok();
                    }
                    ok.then_some(()).ok_or(EventDropped)
                }
            },
        }
    }
}
