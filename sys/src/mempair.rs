//! In-memory pair: two ends of an Ethernet link inside one process, over bounded lock-free
//! queues, with the same queue steering by UE address as AF_PACKET fanout. For fast,
//! deterministic tests and the in-process demo.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::buf::{BufLayout, PacketBuf};
use crate::error::IoError;
use crate::port::{LinkInfo, Port, PortQueue, QueueCounters, RxTally, TxTally};
use crate::steer::{queue_for_frame, Steering, UeSide};

/// Configuration of one end of a [`mem_pair`].
#[derive(Debug, Clone)]
pub struct MemEndConfig {
    /// Name reported in [`LinkInfo`].
    pub name: String,
    /// Ethernet address.
    pub mac: [u8; 6],
    /// Number of queues (workers) on this end.
    pub queues: usize,
    /// Which address of a frame arriving at this end is the UE's (steers it to a queue).
    pub ue_side: UeSide,
}

/// Configuration of a [`mem_pair`].
#[derive(Debug, Clone)]
pub struct MemPairConfig {
    /// End `a`.
    pub a: MemEndConfig,
    /// End `b`.
    pub b: MemEndConfig,
    /// Frames each receive queue holds before transmit reports a full ring.
    pub ring_size: usize,
    /// Buffers shared by both ends.
    pub pool_size: usize,
    /// Buffer geometry.
    pub layout: BufLayout,
    /// IP MTU reported for both ends.
    pub mtu: usize,
}

impl Default for MemPairConfig {
    fn default() -> Self {
        MemPairConfig {
            a: MemEndConfig {
                name: "mem-a".into(),
                mac: [0x02, 0, 0, 0, 0, 0x0a],
                queues: 1,
                ue_side: UeSide::Destination,
            },
            b: MemEndConfig {
                name: "mem-b".into(),
                mac: [0x02, 0, 0, 0, 0, 0x0b],
                queues: 1,
                ue_side: UeSide::Source,
            },
            ring_size: 1024,
            pool_size: 4096,
            layout: BufLayout::STANDARD,
            mtu: 1500,
        }
    }
}

/// One end of an in-memory link.
pub struct MemPort {
    link: LinkInfo,
    queues: Vec<MemQueue>,
    counters: Vec<Arc<QueueCounters>>,
}

/// One queue of a [`MemPort`].
pub struct MemQueue {
    id: usize,
    rx: Arc<ArrayQueue<PacketBuf>>,
    peer_rx: Arc<Vec<Arc<ArrayQueue<PacketBuf>>>>,
    peer_side: UeSide,
    pool: Arc<ArrayQueue<PacketBuf>>,
    max_frame: usize,
    retry: Vec<PacketBuf>,
    counters: Arc<QueueCounters>,
}

/// Create the two connected ends `(a, b)`: what `a` transmits, `b` receives, and back.
pub fn mem_pair(cfg: &MemPairConfig) -> Result<(MemPort, MemPort), IoError> {
    if cfg.a.queues == 0 || cfg.b.queues == 0 || cfg.ring_size == 0 || cfg.pool_size == 0 {
        return Err(IoError::Config(
            "queues, ring_size and pool_size must be at least 1".into(),
        ));
    }
    let pool = Arc::new(ArrayQueue::new(cfg.pool_size));
    for _ in 0..cfg.pool_size {
        let _ = pool.push(PacketBuf::new(cfg.layout));
    }
    let rings = |n: usize| -> Arc<Vec<Arc<ArrayQueue<PacketBuf>>>> {
        Arc::new(
            (0..n)
                .map(|_| Arc::new(ArrayQueue::new(cfg.ring_size)))
                .collect(),
        )
    };
    let a_rx = rings(cfg.a.queues);
    let b_rx = rings(cfg.b.queues);
    let end = |me: &MemEndConfig,
               my_rx: &Arc<Vec<Arc<ArrayQueue<PacketBuf>>>>,
               peer_rx: &Arc<Vec<Arc<ArrayQueue<PacketBuf>>>>,
               peer_side: UeSide| {
        let queues: Vec<MemQueue> = my_rx
            .iter()
            .enumerate()
            .map(|(id, rx)| MemQueue {
                id,
                rx: rx.clone(),
                peer_rx: peer_rx.clone(),
                peer_side,
                pool: pool.clone(),
                max_frame: cfg.layout.max_frame,
                retry: Vec::with_capacity(64),
                counters: Arc::default(),
            })
            .collect();
        MemPort {
            link: LinkInfo {
                name: me.name.clone(),
                mac: me.mac,
                mtu: cfg.mtu,
            },
            counters: queues.iter().map(|q| q.counters.clone()).collect(),
            queues,
        }
    };
    let a = end(&cfg.a, &a_rx, &b_rx, cfg.b.ue_side);
    let b = end(&cfg.b, &b_rx, &a_rx, cfg.a.ue_side);
    Ok((a, b))
}

impl Port for MemPort {
    type Queue = MemQueue;
    fn link(&self) -> &LinkInfo {
        &self.link
    }
    fn num_queues(&self) -> usize {
        self.counters.len()
    }
    fn take_queues(&mut self) -> Vec<MemQueue> {
        std::mem::take(&mut self.queues)
    }
    fn counters(&self) -> Vec<Arc<QueueCounters>> {
        self.counters.clone()
    }
    fn steering(&self) -> Steering {
        // The peer's transmit side steers with `queue_for_frame` on the UE key.
        Steering::UeKey {
            queues: self.counters.len(),
        }
    }
}

impl PortQueue for MemQueue {
    fn queue_id(&self) -> usize {
        self.id
    }

    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut n = 0;
        let mut bytes = 0;
        while n < max {
            match self.rx.pop() {
                Some(b) => {
                    bytes += b.len() as u64;
                    out.push(b);
                    n += 1;
                }
                None => break,
            }
        }
        self.counters.count_rx(RxTally {
            packets: n as u64,
            bytes,
            ..RxTally::default()
        });
        n
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        let (mut sent, mut bytes, mut errors, mut full) = (0u64, 0u64, 0u64, false);
        for b in pkts.drain(..) {
            if full {
                self.retry.push(b);
                continue;
            }
            if b.len() > self.max_frame || b.is_empty() {
                errors += 1;
                let _ = self.pool.push(b);
                continue;
            }
            let q = queue_for_frame(b.data(), self.peer_side, self.peer_rx.len());
            let len = b.len() as u64;
            let Some(ring) = self.peer_rx.get(q) else {
                errors += 1;
                let _ = self.pool.push(b);
                continue;
            };
            match ring.push(b) {
                Ok(()) => {
                    sent += 1;
                    bytes += len;
                }
                Err(b) => {
                    full = true;
                    self.retry.push(b);
                }
            }
        }
        pkts.append(&mut self.retry);
        self.counters.count_tx(TxTally {
            packets: sent,
            bytes,
            errors,
            ring_full: full,
        });
        sent as usize + errors as usize
    }

    fn alloc(&mut self) -> Option<PacketBuf> {
        let mut b = self.pool.pop()?;
        b.reset();
        Some(b)
    }

    fn free(&mut self, buf: PacketBuf) {
        let _ = self.pool.push(buf);
    }

    fn counters(&self) -> &Arc<QueueCounters> {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steer::queue_for_key;

    fn frame(q: &mut MemQueue, src: [u8; 4], tag: u8) -> PacketBuf {
        let mut b = q.alloc().unwrap();
        let mut f = [0u8; 60];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 50;
        f[26..30].copy_from_slice(&src);
        f[59] = tag;
        b.fill(&f).unwrap();
        b
    }

    #[test]
    fn frames_cross_and_steer_by_source() {
        let mut cfg = MemPairConfig::default();
        cfg.b.queues = 4;
        let (mut a, mut b) = mem_pair(&cfg).unwrap();
        let mut aq = a.take_queues();
        let mut bq = b.take_queues();
        let mut out = Vec::new();
        for i in 0..64u8 {
            out.push(frame(&mut aq[0], [10, 0, 1, i], i));
        }
        assert_eq!(aq[0].tx_burst(&mut out), 64);
        assert!(out.is_empty());
        let mut total = 0;
        for (qi, q) in bq.iter_mut().enumerate() {
            let mut got = Vec::new();
            q.rx_burst(&mut got, 128);
            for p in &got {
                let key =
                    u32::from_be_bytes([p.data()[26], p.data()[27], p.data()[28], p.data()[29]]);
                assert_eq!(queue_for_key(key, 4), qi);
                assert_eq!(p.data()[59], p.data()[29]);
            }
            total += got.len();
            for p in got {
                q.free(p);
            }
        }
        assert_eq!(total, 64);
        assert_eq!(aq[0].counters().snapshot().tx_packets, 64);
    }

    #[test]
    fn full_ring_keeps_unsent_in_order() {
        let cfg = MemPairConfig {
            ring_size: 2,
            ..MemPairConfig::default()
        };
        let (mut a, mut b) = mem_pair(&cfg).unwrap();
        let mut aq = a.take_queues();
        let mut bq = b.take_queues();
        let mut out: Vec<PacketBuf> = (0..5).map(|i| frame(&mut aq[0], [1, 1, 1, 1], i)).collect();
        assert_eq!(aq[0].tx_burst(&mut out), 2);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].data()[59], 2);
        assert_eq!(aq[0].counters().snapshot().tx_ring_full, 1);
        let mut got = Vec::new();
        assert_eq!(bq[0].rx_burst(&mut got, 8), 2);
        assert_eq!(got[1].data()[59], 1);
    }
}
