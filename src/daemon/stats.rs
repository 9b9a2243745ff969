//! Where the daemon's [`Stats`] snapshot is read from: the workers' and the slowpath's shared
//! atomic counters, the port queues and the SA table (the types are in [`crate::stats`]).

use std::sync::Arc;
use std::time::Instant;

use akagate_fastpath::worker::{InboundTable, WorkerCounters};
pub(super) use akagate_proto::counters::inc;
use akagate_sys::QueueCounters;

pub(super) use crate::stats::SlowpathCounters;
use crate::stats::SlowpathStats;
use crate::stats::{ShardStats, Stats, WorkerStats};
use akagate_slowpath::CoreStats;

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
    /// Shard 0's counters (the only shard's with one).
    pub slowpath: Arc<SlowpathCounters>,
    /// The counters of shards 1.. (docs/ARCHITECTURE.md, "Slowpath shards").
    pub shards: Vec<Arc<SlowpathCounters>>,
    pub table: Arc<InboundTable>,
}

impl StatsSource {
    /// Every shard's counters, shard 0 first.
    pub fn shard_counters(&self) -> Vec<Arc<SlowpathCounters>> {
        std::iter::once(&self.slowpath)
            .chain(&self.shards)
            .cloned()
            .collect()
    }

    /// The slowpath counters and the core's, summed over the shards.
    fn slowpath_sums(&self) -> (SlowpathStats, CoreStats) {
        let mut sp = self.slowpath.snapshot();
        let mut core = self.slowpath.core.snapshot();
        for s in &self.shards {
            SlowpathStats::TABLE.add_into(&mut sp, &s.snapshot());
            CoreStats::TABLE.add_into(&mut core, &s.core.snapshot());
        }
        (sp, core)
    }

    /// Reads every counter now (the slowpath's summed over its shards).
    pub fn snapshot(&self) -> Stats {
        let (slowpath, core) = self.slowpath_sums();
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
            slowpath,
            core,
            sa_installed: self.table.installed(),
            sa_allocated: self.table.allocated(),
            sa_capacity: self.table.capacity(),
            shards: match self.shards.is_empty() {
                true => Vec::new(),
                false => (self.shard_counters().iter().enumerate())
                    .map(|(id, c)| ShardStats {
                        id,
                        slowpath: c.snapshot(),
                        core: c.core.snapshot(),
                    })
                    .collect(),
            },
        }
    }
}
