//! The backend-independent port interface: a port owns queues, each queue belongs to one
//! worker and does burst receive/transmit over [`PacketBuf`]s from its own pool.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::buf::PacketBuf;
use crate::steer::Steering;

/// Link facts of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface or device name.
    pub name: String,
    /// Ethernet address.
    pub mac: [u8; 6],
    /// IP MTU of the link (frame payload), e.g. 1500.
    pub mtu: usize,
}

/// A network port split into independent queues, one per worker.
pub trait Port {
    /// The per-worker queue type.
    type Queue: PortQueue;
    /// Link address, MTU and name.
    fn link(&self) -> &LinkInfo;
    /// Number of queues the port was opened with.
    fn num_queues(&self) -> usize;
    /// Hand out the queues (once); index `i` of the result is queue `i`.
    fn take_queues(&mut self) -> Vec<Self::Queue>;
    /// Shared counters of every queue, for stats readers on other threads.
    fn counters(&self) -> Vec<Arc<QueueCounters>>;
    /// How this port spreads ingress frames over its queues, matching its own kernel or
    /// hardware steering (shareable with the slowpath and the workers).
    fn steering(&self) -> Steering;
    /// The queue that receives the frames of the UE at `ue` (one UE, one worker).
    fn queue_for_ue(&self, ue: IpAddr) -> usize {
        self.steering().queue_for_ue(ue)
    }
}

/// One queue of a port, used by exactly one worker thread.
pub trait PortQueue: Send {
    /// Index of this queue within its port.
    fn queue_id(&self) -> usize;
    /// Append up to `max` received frames to `out`; returns how many were appended.
    /// Never blocks.
    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize;
    /// Transmit frames from the front of `pkts`; the sent ones are removed (their buffers go
    /// back to this queue's pool), unsent ones stay in order. Returns how many were sent.
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> usize;
    /// An empty buffer from this queue's pool, for frames the worker builds itself.
    fn alloc(&mut self) -> Option<PacketBuf>;
    /// Return a buffer to this queue's pool (e.g. after dropping a frame).
    fn free(&mut self, buf: PacketBuf);
    /// This queue's counters.
    fn counters(&self) -> &Arc<QueueCounters>;
}

impl<Q: PortQueue + ?Sized> PortQueue for Box<Q> {
    fn queue_id(&self) -> usize {
        (**self).queue_id()
    }
    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        (**self).rx_burst(out, max)
    }
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        (**self).tx_burst(pkts)
    }
    fn alloc(&mut self) -> Option<PacketBuf> {
        (**self).alloc()
    }
    fn free(&mut self, buf: PacketBuf) {
        (**self).free(buf)
    }
    fn counters(&self) -> &Arc<QueueCounters> {
        (**self).counters()
    }
}

akagate_proto::counters! {
    /// Per-queue counters: written by the owning worker only, read by anyone.
    pub struct QueueCounters => /// A point-in-time copy of [`QueueCounters`].
    pub struct QueueStats;
    /// Frames received by the port queue.
    rx_packets: Counter,
    /// Bytes received by the port queue.
    rx_bytes: Counter,
    /// Frames the kernel or NIC dropped because the receive ring was full.
    rx_dropped: Counter,
    /// Receive bursts cut short by an empty buffer pool.
    rx_nobuf: Counter,
    /// Frames larger than a buffer, or cut short by the ring, that were discarded.
    rx_truncated: Counter,
    /// Frames transmitted by the port queue.
    tx_packets: Counter,
    /// Bytes transmitted by the port queue.
    tx_bytes: Counter,
    /// Transmit bursts cut short by a full ring.
    tx_ring_full: Counter,
    /// Frames the backend refused to transmit (too long, rejected by the kernel).
    tx_errors: Counter,
}

/// What one receive burst did, added to a queue's counters by [`QueueCounters::count_rx`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxTally {
    /// Frames handed to the caller.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames discarded as oversized or cut short.
    pub truncated: u64,
    /// Whether the burst stopped early for want of a pool buffer.
    pub nobuf: bool,
}

/// What one transmit burst did, added to a queue's counters by [`QueueCounters::count_tx`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxTally {
    /// Frames transmitted.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames refused (too long, rejected by the kernel or the NIC).
    pub errors: u64,
    /// Whether the burst stopped early on a full transmit ring.
    pub ring_full: bool,
}

impl QueueCounters {
    /// Add `n` to `c`. Only the owning worker writes, so a load and a store suffice
    /// (no locked read-modify-write on the hot path).
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        akagate_proto::counters::add(c, n);
    }

    /// Adds what one receive burst did; `rx_nobuf` counts bursts cut short, not frames.
    #[inline]
    pub fn count_rx(&self, t: RxTally) {
        Self::add(&self.rx_packets, t.packets);
        Self::add(&self.rx_bytes, t.bytes);
        Self::add(&self.rx_truncated, t.truncated);
        if t.nobuf {
            Self::add(&self.rx_nobuf, 1);
        }
    }

    /// Adds what one transmit burst did; `tx_ring_full` counts bursts cut short, not frames.
    #[inline]
    pub fn count_tx(&self, t: TxTally) {
        Self::add(&self.tx_packets, t.packets);
        Self::add(&self.tx_bytes, t.bytes);
        Self::add(&self.tx_errors, t.errors);
        if t.ring_full {
            Self::add(&self.tx_ring_full, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_frames_and_count_cut_bursts_once() {
        let c = QueueCounters::default();
        let rx = RxTally {
            packets: 3,
            bytes: 180,
            truncated: 1,
            nobuf: true,
        };
        c.count_rx(rx);
        c.count_rx(RxTally { nobuf: false, ..rx });
        c.count_tx(TxTally {
            packets: 2,
            bytes: 120,
            errors: 1,
            ring_full: true,
        });
        c.count_tx(TxTally::default());
        assert_eq!(
            c.snapshot(),
            QueueStats {
                rx_packets: 6,
                rx_bytes: 360,
                rx_dropped: 0,
                rx_nobuf: 1,
                rx_truncated: 2,
                tx_packets: 2,
                tx_bytes: 120,
                tx_ring_full: 1,
                tx_errors: 1,
            }
        );
    }
}
