//! In-memory pair: two ends of an Ethernet link inside one process, with the same queue
//! steering by UE address as AF_PACKET fanout. For fast, deterministic tests, the in-process
//! demo and the benches. Each (transmitting queue, receiving queue) pair has its own
//! single-producer single-consumer ring ([`crate::spsc`]), so a burst crosses with one
//! release store per destination ring and one acquire load per source ring; buffers come
//! from one pool both ends share, through a small cache per queue ([`crate::sharedpool`]).
//! So the benches measure the worker rather than the link.

use std::sync::Arc;

use crate::buf::{BufLayout, PacketBuf};
use crate::error::IoError;
use crate::port::{LinkInfo, Port, PortQueue, QueueCounters, RxTally, TxTally};
use crate::sharedpool::{PoolCache, SharedPool};
use crate::spsc::{ring, Consumer, Producer};
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
    /// Frames each ring (one per transmitting queue of the other end, per receiving queue)
    /// holds before transmit reports it full.
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
    /// One ring from each queue of the peer end.
    rx: Vec<Consumer<PacketBuf>>,
    /// The ring `rx_burst` looks at first (rotates, so no peer queue starves the others).
    rx_next: usize,
    /// One ring to each queue of the peer end.
    tx: Vec<Producer<PacketBuf>>,
    peer_side: UeSide,
    /// This queue's cache of the pool both ends share.
    pool: PoolCache,
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
    let pool = SharedPool::new(cfg.layout, cfg.pool_size, cfg.a.queues + cfg.b.queues);
    // rings[i][j]: from queue i of one end to queue j of the other, as its two ends.
    type Mesh = Vec<Vec<(Option<Producer<PacketBuf>>, Option<Consumer<PacketBuf>>)>>;
    let mesh = |from: usize, to: usize| -> Mesh {
        (0..from)
            .map(|_| {
                (0..to)
                    .map(|_| {
                        let (p, c) = ring(cfg.ring_size);
                        (Some(p), Some(c))
                    })
                    .collect()
            })
            .collect()
    };
    let (na, nb) = (cfg.a.queues, cfg.b.queues);
    let mut a_to_b = mesh(na, nb);
    let mut b_to_a = mesh(nb, na);
    let end = |me: &MemEndConfig,
               n: usize,
               outgoing: &mut Mesh,
               incoming: &mut Mesh,
               peer_side: UeSide| {
        let queues: Vec<MemQueue> = (0..n)
            .map(|id| MemQueue {
                id,
                rx: incoming
                    .iter_mut()
                    .filter_map(|from| from.get_mut(id).and_then(|r| r.1.take()))
                    .collect(),
                rx_next: 0,
                tx: outgoing
                    .get_mut(id)
                    .map(|to| to.iter_mut().filter_map(|r| r.0.take()).collect())
                    .unwrap_or_default(),
                peer_side,
                pool: pool.cache(),
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
    let a = end(&cfg.a, na, &mut a_to_b, &mut b_to_a, cfg.b.ue_side);
    let b = end(&cfg.b, nb, &mut b_to_a, &mut a_to_b, cfg.a.ue_side);
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
        let first = out.len();
        let rings = self.rx.len();
        let mut n = 0;
        for k in 0..rings {
            if n >= max {
                break;
            }
            let i = (self.rx_next + k) % rings;
            if let Some(r) = self.rx.get_mut(i) {
                n += r.pop_burst(out, max - n);
            }
        }
        if rings > 1 {
            self.rx_next = (self.rx_next + 1) % rings;
        }
        if n == 0 {
            // An empty burst (most loop turns of an idle worker) adds nothing to count.
            return 0;
        }
        let bytes = out[first..].iter().map(|b| b.len() as u64).sum();
        self.counters.count_rx(RxTally {
            packets: n as u64,
            bytes,
            ..RxTally::default()
        });
        n
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        let (mut sent, mut bytes, mut errors, mut full) = (0u64, 0u64, 0u64, false);
        let rings = self.tx.len();
        for b in pkts.drain(..) {
            if full {
                self.retry.push(b);
                continue;
            }
            if b.len() > self.max_frame || b.is_empty() {
                errors += 1;
                self.pool.put(b);
                continue;
            }
            let q = queue_for_frame(b.data(), self.peer_side, rings);
            let len = b.len() as u64;
            let Some(ring) = self.tx.get_mut(q) else {
                errors += 1;
                self.pool.put(b);
                continue;
            };
            match ring.stage(b) {
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
        for ring in &mut self.tx {
            ring.publish();
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
        self.pool.get()
    }

    fn free(&mut self, buf: PacketBuf) {
        self.pool.put(buf);
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

    /// Several queues on both ends: every queue of `a` reaches every queue of `b` through its
    /// own ring, nothing is lost, and each sender's frames arrive in the order sent.
    #[test]
    fn mesh_of_queues_keeps_each_senders_order() {
        let mut cfg = MemPairConfig::default();
        cfg.a.queues = 2;
        cfg.b.queues = 3;
        let (mut a, mut b) = mem_pair(&cfg).unwrap();
        let mut aq = a.take_queues();
        let mut bq = b.take_queues();
        for (qi, q) in aq.iter_mut().enumerate() {
            // Tag: sender in the high bit, sequence below; sources spread over b's queues.
            let mut out: Vec<PacketBuf> = (0..60u8)
                .map(|i| frame(q, [10, 0, qi as u8, i], (qi as u8) << 7 | i))
                .collect();
            assert_eq!(q.tx_burst(&mut out), 60);
        }
        let mut last = [[None::<u8>; 2]; 3];
        let mut total = 0;
        for (j, q) in bq.iter_mut().enumerate() {
            let mut got = Vec::new();
            // Small bursts: the rotation over source rings must still drain them all.
            while q.rx_burst(&mut got, 7) > 0 {}
            for p in got {
                let tag = p.data()[59];
                let (from, seq) = ((tag >> 7) as usize, tag & 0x7f);
                let src = [p.data()[26], p.data()[27], p.data()[28], p.data()[29]];
                assert_eq!(queue_for_key(u32::from_be_bytes(src), 3), j);
                if let Some(prev) = last[j][from] {
                    assert!(seq > prev, "queue {j}: {seq} after {prev} from {from}");
                }
                last[j][from] = Some(seq);
                total += 1;
                q.free(p);
            }
        }
        assert_eq!(total, 120);
    }
}
