//! The daemon's counters as data: the [`Stats`] snapshot, the slowpath's counter set, and the
//! descriptors (name, help text, kind) of every counter, each written once next to its field.
//! A leaf: it imports no other module of this crate; the daemon fills it, and the control
//! socket, the Prometheus endpoint and docs/OPERATIONS.md render it.

pub mod catalog;
pub mod slowpath;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use akagate_fastpath::worker::WorkerCounterValues;
pub use akagate_proto::counters::{CounterDesc, CounterKind, CounterTable};
use akagate_slowpath::CoreStats;
use akagate_sys::QueueStats;
pub use catalog::Section;
pub use slowpath::{CoreCounters, SlowpathCounters, SlowpathStats, CORE};

/// Reads a [`Stats`] snapshot (what the control socket and the metrics endpoint are given).
pub type StatsFn = Arc<dyn Fn() -> Stats + Send + Sync>;

/// One worker's counters at a point in time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerStats {
    /// Worker index (= port queue index).
    pub id: usize,
    /// Core the worker is pinned to, `None` when unpinned.
    pub core: Option<usize>,
    /// The port queue's counters (frames and bytes on the wire, ring drops).
    pub queue: QueueStats,
    /// Every worker counter.
    pub counters: WorkerCounterValues,
}

impl WorkerStats {
    /// The worker counter called `name` (e.g. `echo_replies`, `drop_esp_invalid`).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters.get(name)
    }

    /// The non-zero per-reason drop counters (`drop_*`).
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counters
            .iter()
            .filter(|&(d, v)| v > 0 && d.name.starts_with(catalog::DROP_PREFIX))
            .map(|(d, v)| (d.name, v))
    }

    /// UE stacks held now (created minus freed).
    pub fn ue_stacks(&self) -> u64 {
        self.counters.ues.saturating_sub(self.counters.ues_freed)
    }

    /// `(descriptor, value)` of every counter of a per-worker `section` (none for the others).
    pub fn section(&self, section: Section) -> Vec<(&'static CounterDesc, u64)> {
        match section {
            Section::Port => catalog::QUEUE.values(&self.queue).collect(),
            Section::Worker => self.counters.iter().collect(),
            Section::Slowpath | Section::Sip | Section::SaTable => Vec::new(),
        }
    }
}

/// A snapshot of the whole daemon, from `DaemonHandle::stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Time since start.
    pub uptime: Duration,
    /// One entry per worker, by index.
    pub workers: Vec<WorkerStats>,
    /// The slowpath thread.
    pub slowpath: SlowpathStats,
    /// The slowpath core's SIP counters (drops, absorptions, timeouts, keep-alives).
    pub core: CoreStats,
    /// Inbound SAs currently installed in the SA table.
    pub sa_installed: usize,
    /// Inbound SPIs currently allocated (installed or waiting for their SA).
    pub sa_allocated: usize,
    /// Capacity of the SA table.
    pub sa_capacity: usize,
    /// With several slowpath shards, each shard's own counters (`slowpath` and `core` above
    /// are their sums); empty with one.
    pub shards: Vec<ShardStats>,
}

/// One slowpath shard's counters (docs/ARCHITECTURE.md, "Slowpath shards").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStats {
    /// The shard.
    pub id: usize,
    /// Its slowpath thread's counters and gauges.
    pub slowpath: SlowpathStats,
    /// Its core's SIP counters.
    pub core: CoreStats,
}

impl ShardStats {
    /// The values of a per-shard `section` (the slowpath's or the SIP core's; none else).
    pub fn section(&self, section: Section) -> Vec<(&'static CounterDesc, u64)> {
        match section {
            Section::Slowpath => self.slowpath.iter().collect(),
            Section::Sip => CORE.values(&self.core).collect(),
            Section::SaTable | Section::Port | Section::Worker => Vec::new(),
        }
    }
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

    /// The SA table's occupancy as `(descriptor, value)`.
    pub fn sa_table(&self) -> [(&'static CounterDesc, u64); 3] {
        let [installed, allocated, capacity] = &catalog::SA_TABLE;
        [
            (installed, self.sa_installed as u64),
            (allocated, self.sa_allocated as u64),
            (capacity, self.sa_capacity as u64),
        ]
    }

    /// `(descriptor, value)` of every counter of a daemon-wide `section` (none for the
    /// per-worker ones, see [`WorkerStats::section`]).
    pub fn section(&self, section: Section) -> Vec<(&'static CounterDesc, u64)> {
        match section {
            Section::Slowpath => self.slowpath.iter().collect(),
            Section::Sip => CORE.values(&self.core).collect(),
            Section::SaTable => self.sa_table().to_vec(),
            Section::Port | Section::Worker => Vec::new(),
        }
    }

    fn worker_sum(&self, get: impl Fn(&WorkerStats) -> u64) -> u64 {
        self.workers.iter().map(get).sum()
    }
}

impl fmt::Display for Stats {
    /// The periodic one-line log: traffic, SIP, registrations, SAs, then every non-zero drop.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sp = &self.slowpath;
        write!(
            f,
            "up {}s; {} worker(s); rx {} tx {} frames; esp in {} out {}; sip in {}; \
             ues {}; registrations {}; SAs {} installed, {} SPIs of {}; commands {} ({} lost, \
             {} 401s withheld)",
            self.uptime.as_secs(),
            self.workers.len(),
            self.worker_sum(|w| w.queue.rx_packets),
            self.worker_sum(|w| w.queue.tx_packets),
            self.worker_sum(|w| w.counters.esp_in),
            self.worker_sum(|w| w.counters.esp_out),
            sp.sip_messages,
            self.worker_sum(WorkerStats::ue_stacks),
            sp.registrations,
            self.sa_installed,
            self.sa_allocated,
            self.sa_capacity,
            sp.commands,
            sp.commands_dropped,
            sp.challenges_withheld,
        )?;
        let core = &self.core;
        let sip_drops = core.malformed_requests
            + core.malformed_responses
            + core.unprotected_responses
            + core.stray_responses
            + sp.sip_transport_refused;
        if sip_drops > 0 {
            write!(f, "; sip rejected {sip_drops}")?;
        }
        if core.transaction_timeouts > 0 {
            write!(f, "; sip timeouts {}", core.transaction_timeouts)?;
        }
        let q = &|w: &WorkerStats| {
            w.queue.rx_dropped + w.queue.rx_nobuf + w.queue.rx_truncated + w.queue.tx_errors
        };
        let ring = self.worker_sum(q);
        if ring > 0 {
            write!(f, "; port drops {ring}")?;
        }
        let drops = self.drops();
        if !drops.is_empty() {
            f.write_str("; drops")?;
            for (name, v) in drops {
                write!(f, " {}={v}", name.trim_start_matches(catalog::DROP_PREFIX))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A worker with `esp_in` 2, 10 frames in, 4 out and the given drops.
    pub(crate) fn worker(id: usize, drops: &[(&str, u64)]) -> WorkerStats {
        let mut counters = WorkerCounterValues {
            rx_frames: 10,
            esp_in: 2,
            ..WorkerCounterValues::default()
        };
        for &(name, v) in drops {
            let f = WorkerCounterValues::TABLE
                .fields()
                .iter()
                .find(|f| f.desc.name == name)
                .expect("a worker counter");
            (f.set)(&mut counters, v);
        }
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
            core: CoreStats::default(),
            sa_installed: 4,
            sa_allocated: 6,
            sa_capacity: 1024,
            shards: Vec::new(),
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

    #[test]
    fn sections_cover_every_descriptor_once() {
        let s = Stats {
            uptime: Duration::ZERO,
            workers: vec![worker(0, &[])],
            slowpath: SlowpathStats::default(),
            core: CoreStats::default(),
            sa_installed: 1,
            sa_allocated: 2,
            sa_capacity: 3,
            shards: Vec::new(),
        };
        for section in Section::ALL {
            let values = if section.per_worker() {
                s.workers[0].section(section)
            } else {
                s.section(section)
            };
            let names: Vec<&str> = values.iter().map(|(d, _)| d.name).collect();
            let descs: Vec<&str> = section.descs().iter().map(|d| d.name).collect();
            assert_eq!(names, descs, "{section:?}");
            assert!(!names.is_empty(), "{section:?}");
        }
        assert_eq!(
            s.section(Section::SaTable)
                .iter()
                .map(|&(d, v)| (d.name, v))
                .collect::<Vec<_>>(),
            [("installed", 1), ("allocated", 2), ("capacity", 3)]
        );
    }
}
