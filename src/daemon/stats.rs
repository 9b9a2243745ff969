//! Where the daemon's [`Stats`] snapshot is read from: the workers' and the slowpath's shared
//! atomic counters, the port queues and the SA table (the types are in [`crate::stats`]).

use std::sync::Arc;
use std::time::Instant;

use akagate_fastpath::worker::{InboundTable, WorkerCounters};
pub(super) use akagate_proto::counters::inc;
use akagate_sys::QueueCounters;

pub(super) use crate::stats::SlowpathCounters;
use crate::stats::{Stats, WorkerStats};

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
            core: self.slowpath.core.snapshot(),
            sa_installed: self.table.installed(),
            sa_allocated: self.table.allocated(),
            sa_capacity: self.table.capacity(),
        }
    }
}
