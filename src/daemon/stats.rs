//! Counters of the running daemon: a [`Stats`] snapshot assembled from the workers' and the
//! slowpath's shared atomic counters, the port queues and the SA table, and its one-line form.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::worker::{InboundTable, WorkerCounters};
use akagate_sys::{QueueCounters, QueueStats};

/// One worker's counters at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerStats {
    /// Worker index (= port queue index).
    pub id: usize,
    /// Core the worker is pinned to, `None` when unpinned.
    pub core: Option<usize>,
    /// The port queue's counters (frames and bytes on the wire, ring drops).
    pub queue: QueueStats,
    /// Every worker counter as `(name, value)`, names as in `WorkerCounters`.
    pub counters: Vec<(&'static str, u64)>,
}

impl WorkerStats {
    /// The worker counter called `name` (e.g. `echo_replies`, `drop_esp_invalid`).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find_map(|&(n, v)| (n == name).then_some(v))
    }

    /// The non-zero per-reason drop counters (`drop_*`).
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counters
            .iter()
            .copied()
            .filter(|&(n, v)| v > 0 && n.starts_with("drop_"))
    }
}

/// The slowpath thread's counters at a point in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlowpathStats {
    /// Events received from the workers.
    pub events: u64,
    /// Of those, complete SIP messages.
    pub sip_messages: u64,
    /// Commands handed to workers.
    pub commands: u64,
    /// Commands lost because a worker's command queue stayed full or was closed.
    pub commands_dropped: u64,
    /// `InstallSaSet` commands sent (one per challenge, TS 33.203 7.1).
    pub sa_sets_installed: u64,
    /// `RemoveSaSet` commands sent.
    pub sa_sets_removed: u64,
    /// Timer runs of the core that produced at least one command.
    pub timeouts: u64,
    /// Registrations with an active SA set (refreshed about every 100 ms).
    pub registrations: u64,
    /// Subscribers loaded into the HSS.
    pub subscribers: u64,
    /// Events that were still queued at shutdown and handled before the workers stopped.
    pub drained_at_shutdown: u64,
}

/// A snapshot of the whole daemon, from [`DaemonHandle::stats`](super::DaemonHandle::stats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Time since start.
    pub uptime: Duration,
    /// One entry per worker, by index.
    pub workers: Vec<WorkerStats>,
    /// The slowpath thread.
    pub slowpath: SlowpathStats,
    /// Inbound SAs currently installed in the SA table.
    pub sa_installed: usize,
    /// Inbound SPIs currently allocated (installed or waiting for their SA).
    pub sa_allocated: usize,
    /// Capacity of the SA table.
    pub sa_capacity: usize,
}

impl Stats {
    /// The sum of the worker counter `name` over all workers (0 for an unknown name).
    pub fn worker_total(&self, name: &str) -> u64 {
        self.workers.iter().filter_map(|w| w.get(name)).sum()
    }

    /// All non-zero drop counters, summed over the workers, in counter order.
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for w in &self.workers {
            for (name, v) in w.drops() {
                match out.iter_mut().find(|(n, _)| *n == name) {
                    Some(e) => e.1 += v,
                    None => out.push((name, v)),
                }
            }
        }
        out
    }
}

impl fmt::Display for Stats {
    /// The periodic one-line log: traffic, SIP, registrations, SAs, then every non-zero drop.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |get: fn(&QueueStats) -> u64| self.workers.iter().map(|w| get(&w.queue)).sum();
        let (rx, tx): (u64, u64) = (q(|s| s.rx_packets), q(|s| s.tx_packets));
        let sp = &self.slowpath;
        write!(
            f,
            "up {}s; {} worker(s); rx {rx} tx {tx} frames; esp in {} out {}; sip in {}; \
             ues {}; registrations {}; SAs {} installed, {} SPIs of {}; commands {} ({} lost)",
            self.uptime.as_secs(),
            self.workers.len(),
            self.worker_total("esp_in"),
            self.worker_total("esp_out"),
            sp.sip_messages,
            self.worker_total("ues")
                .saturating_sub(self.worker_total("ues_freed")),
            sp.registrations,
            self.sa_installed,
            self.sa_allocated,
            self.sa_capacity,
            sp.commands,
            sp.commands_dropped,
        )?;
        let ring: u64 = q(|s| s.rx_dropped + s.rx_nobuf + s.rx_truncated + s.tx_errors);
        if ring > 0 {
            write!(f, "; port drops {ring}")?;
        }
        let drops = self.drops();
        if !drops.is_empty() {
            f.write_str("; drops")?;
            for (name, v) in drops {
                write!(f, " {}={v}", name.trim_start_matches("drop_"))?;
            }
        }
        Ok(())
    }
}

/// The slowpath's counters, written by the slowpath thread alone.
#[derive(Debug, Default)]
pub(super) struct SlowpathCounters {
    pub events: AtomicU64,
    pub sip_messages: AtomicU64,
    pub commands: AtomicU64,
    pub commands_dropped: AtomicU64,
    pub sa_sets_installed: AtomicU64,
    pub sa_sets_removed: AtomicU64,
    pub timeouts: AtomicU64,
    pub registrations: AtomicU64,
    pub subscribers: AtomicU64,
    pub drained_at_shutdown: AtomicU64,
}

/// Adds one: single writer, so a load and a store suffice.
pub(super) fn inc(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl SlowpathCounters {
    fn snapshot(&self) -> SlowpathStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SlowpathStats {
            events: l(&self.events),
            sip_messages: l(&self.sip_messages),
            commands: l(&self.commands),
            commands_dropped: l(&self.commands_dropped),
            sa_sets_installed: l(&self.sa_sets_installed),
            sa_sets_removed: l(&self.sa_sets_removed),
            timeouts: l(&self.timeouts),
            registrations: l(&self.registrations),
            subscribers: l(&self.subscribers),
            drained_at_shutdown: l(&self.drained_at_shutdown),
        }
    }
}

/// The shared counters of one worker, as the stats reader sees them.
#[derive(Clone, Debug)]
pub(super) struct WorkerSource {
    pub id: usize,
    pub core: Option<usize>,
    pub counters: Arc<WorkerCounters>,
    pub queue: Arc<QueueCounters>,
}

/// Everything a snapshot is read from; cheap to clone (all `Arc`s), shared by the handle and
/// the slowpath's periodic log.
#[derive(Clone, Debug)]
pub(super) struct StatsSource {
    pub started: Instant,
    pub workers: Vec<WorkerSource>,
    pub slowpath: Arc<SlowpathCounters>,
    pub table: Arc<InboundTable>,
}

impl StatsSource {
    /// Reads every counter now.
    pub fn snapshot(&self) -> Stats {
        Stats {
            uptime: self.started.elapsed(),
            workers: self
                .workers
                .iter()
                .map(|w| WorkerStats {
                    id: w.id,
                    core: w.core,
                    queue: w.queue.snapshot(),
                    counters: w.counters.snapshot(),
                })
                .collect(),
            slowpath: self.slowpath.snapshot(),
            sa_installed: self.table.installed(),
            sa_allocated: self.table.allocated(),
            sa_capacity: self.table.capacity(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: usize, drops: &[(&'static str, u64)]) -> WorkerStats {
        let mut counters = vec![("rx_frames", 10), ("esp_in", 2), ("drop_no_ue", 0)];
        counters.extend_from_slice(drops);
        WorkerStats {
            id,
            core: None,
            queue: QueueStats {
                rx_packets: 10,
                tx_packets: 4,
                ..QueueStats::default()
            },
            counters,
        }
    }

    #[test]
    fn drops_are_summed_over_workers_and_zeroes_left_out() {
        let s = Stats {
            uptime: Duration::from_secs(3),
            workers: vec![
                worker(0, &[("drop_esp_invalid", 2)]),
                worker(1, &[("drop_esp_invalid", 1), ("drop_closed_port", 5)]),
            ],
            slowpath: SlowpathStats::default(),
            sa_installed: 4,
            sa_allocated: 6,
            sa_capacity: 1024,
        };
        assert_eq!(
            s.drops(),
            vec![("drop_esp_invalid", 3), ("drop_closed_port", 5)]
        );
        assert_eq!(s.worker_total("esp_in"), 4);
        assert_eq!(s.worker_total("no_such_counter"), 0);
        let line = s.to_string();
        assert!(
            line.starts_with("up 3s; 2 worker(s); rx 20 tx 8 frames; esp in 4"),
            "{line}"
        );
        assert!(line.contains("SAs 4 installed, 6 SPIs of 1024"), "{line}");
        assert!(
            line.ends_with("; drops esp_invalid=3 closed_port=5"),
            "{line}"
        );
        assert!(!line.contains("no_ue"), "{line}");
    }
}
