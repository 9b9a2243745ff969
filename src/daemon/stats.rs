//! Counters of the running daemon: a [`Stats`] snapshot assembled from the workers' and the
//! slowpath's shared atomic counters, the port queues and the SA table, and its one-line form.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::worker::{InboundTable, WorkerCounters};
use akagate_slowpath::CoreStats;
use akagate_sys::{QueueCounters, QueueStats};

/// One named value of a snapshot with its meaning, for the control socket, `akactl` and the
/// Prometheus endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Name (snake_case, as in the JSON answer).
    pub name: &'static str,
    /// One-line meaning.
    pub help: &'static str,
    /// Value.
    pub value: u64,
}

const fn sample(name: &'static str, help: &'static str, value: u64) -> Sample {
    Sample { name, help, value }
}

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
    /// 401 challenges withheld because their batch's SQN commit failed (TS 33.102 6.3).
    pub challenges_withheld: u64,
    /// Successful SQN journal commits (one fsync per batch with challenges, or a rewrite of
    /// the SQN state after a failed fsync).
    pub sqn_commits: u64,
    /// Batches whose SQN commit failed (their 401s withheld).
    pub sqn_commit_failures: u64,
    /// SIP messages to the unprotected SIP port over a transport its `[[sip-ports]]` entry
    /// does not list (dropped; a TCP connection is closed).
    pub sip_transport_refused: u64,
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
    /// Live SIP transactions (refreshed about every 100 ms).
    pub transactions: u64,
    /// Dialogs between registered UEs (refreshed about every 100 ms).
    pub dialogs: u64,
    /// Events that were still queued at shutdown and handled before the workers stopped.
    pub drained_at_shutdown: u64,
}

impl SlowpathStats {
    /// Every monotonic counter, in a fixed order.
    pub fn counters(&self) -> [Sample; 12] {
        // Destructured without `..`: a new field does not compile until it is listed here
        // or in `gauges`.
        let SlowpathStats {
            events,
            sip_messages,
            commands,
            commands_dropped,
            challenges_withheld,
            sqn_commits,
            sqn_commit_failures,
            sip_transport_refused,
            sa_sets_installed,
            sa_sets_removed,
            timeouts,
            registrations: _,
            subscribers: _,
            transactions: _,
            dialogs: _,
            drained_at_shutdown,
        } = *self;
        [
            sample("events", "Events received from the workers.", events),
            sample(
                "sip_messages",
                "Complete SIP messages received from the workers.",
                sip_messages,
            ),
            sample("commands", "Commands handed to the workers.", commands),
            sample(
                "commands_dropped",
                "Commands lost because a worker's command queue stayed full or was closed.",
                commands_dropped,
            ),
            sample(
                "challenges_withheld",
                "401 challenges withheld because their batch's SQN commit failed.",
                challenges_withheld,
            ),
            sample(
                "sqn_commits",
                "Successful SQN journal commits (fsyncs or state rewrites).",
                sqn_commits,
            ),
            sample(
                "sqn_commit_failures",
                "Batches whose SQN commit failed (their 401s withheld).",
                sqn_commit_failures,
            ),
            sample(
                "sip_transport_refused",
                "SIP messages to the SIP port over a transport not configured for its address.",
                sip_transport_refused,
            ),
            sample(
                "sa_sets_installed",
                "InstallSaSet commands sent (one per challenge).",
                sa_sets_installed,
            ),
            sample(
                "sa_sets_removed",
                "RemoveSaSet commands sent.",
                sa_sets_removed,
            ),
            sample(
                "timeouts",
                "Timer runs of the slowpath core that produced commands.",
                timeouts,
            ),
            sample(
                "drained_at_shutdown",
                "Events still queued at shutdown and handled before the workers stopped.",
                drained_at_shutdown,
            ),
        ]
    }

    /// Every gauge (a level that goes up and down), in a fixed order.
    pub fn gauges(&self) -> [Sample; 4] {
        [
            sample(
                "registrations",
                "Registrations with an active SA set.",
                self.registrations,
            ),
            sample(
                "subscribers",
                "Subscribers loaded into the HSS.",
                self.subscribers,
            ),
            sample("transactions", "Live SIP transactions.", self.transactions),
            sample("dialogs", "Dialogs between registered UEs.", self.dialogs),
        ]
    }
}

/// Every counter of the slowpath core ([`CoreStats`]): SIP messages dropped or absorbed,
/// transaction timeouts, keep-alives, released dialogs, in a fixed order.
pub fn core_counters(s: &CoreStats) -> [Sample; 15] {
    // Destructured without `..`: a counter added to `CoreStats` must be listed here.
    let CoreStats {
        malformed_requests,
        malformed_requests_unanswered,
        malformed_responses,
        unprotected_responses,
        stray_responses,
        retransmissions_absorbed,
        transaction_timeouts,
        timer_c_expiries,
        connect_failures,
        keepalives_sent,
        keepalives_answered,
        keepalive_failures,
        notify_failures,
        dialogs_released,
        bye_failures,
    } = *s;
    [
        sample(
            "malformed_requests",
            "Requests that failed parsing or validation (answered 400/416/505 when possible).",
            malformed_requests,
        ),
        sample(
            "malformed_requests_unanswered",
            "Malformed requests too broken to answer.",
            malformed_requests_unanswered,
        ),
        sample(
            "malformed_responses",
            "Responses that failed parsing or validation (dropped).",
            malformed_responses,
        ),
        sample(
            "unprotected_responses",
            "Responses that arrived outside every SA (dropped).",
            unprotected_responses,
        ),
        sample(
            "stray_responses",
            "Responses that matched no client transaction (dropped).",
            stray_responses,
        ),
        sample(
            "retransmissions_absorbed",
            "Request retransmissions absorbed by a server transaction.",
            retransmissions_absorbed,
        ),
        sample(
            "transaction_timeouts",
            "Client transactions that timed out (timer B or F).",
            transaction_timeouts,
        ),
        sample(
            "timer_c_expiries",
            "Forwarded INVITEs given up after Timer C.",
            timer_c_expiries,
        ),
        sample(
            "connect_failures",
            "Client transactions failed because the worker could not open their connection.",
            connect_failures,
        ),
        sample(
            "keepalives_sent",
            "OPTIONS keep-alives sent.",
            keepalives_sent,
        ),
        sample(
            "keepalives_answered",
            "Keep-alives the UE answered (any final response but 408/503).",
            keepalives_answered,
        ),
        sample(
            "keepalive_failures",
            "Keep-alives that timed out, got 408/503 or could not be sent.",
            keepalive_failures,
        ),
        sample(
            "notify_failures",
            "reg-event NOTIFYs that failed (timeout, connection failure, non-2xx).",
            notify_failures,
        ),
        sample(
            "dialogs_released",
            "Dialogs released with BYE because a party's registration ended.",
            dialogs_released,
        ),
        sample(
            "bye_failures",
            "BYEs of the P-CSCF that failed (timeout, connection failure, non-2xx).",
            bye_failures,
        ),
    ]
}

/// Every counter of a port queue, in a fixed order.
pub fn queue_counters(q: &QueueStats) -> [Sample; 9] {
    let QueueStats {
        rx_packets,
        rx_bytes,
        rx_dropped,
        rx_nobuf,
        rx_truncated,
        tx_packets,
        tx_bytes,
        tx_ring_full,
        tx_errors,
    } = *q;
    [
        sample(
            "rx_packets",
            "Frames received by the port queue.",
            rx_packets,
        ),
        sample("rx_bytes", "Bytes received by the port queue.", rx_bytes),
        sample(
            "rx_dropped",
            "Frames dropped by the kernel or NIC (ring full).",
            rx_dropped,
        ),
        sample(
            "rx_nobuf",
            "Receive bursts cut short by an empty buffer pool.",
            rx_nobuf,
        ),
        sample(
            "rx_truncated",
            "Oversized or truncated frames discarded.",
            rx_truncated,
        ),
        sample(
            "tx_packets",
            "Frames transmitted by the port queue.",
            tx_packets,
        ),
        sample("tx_bytes", "Bytes transmitted by the port queue.", tx_bytes),
        sample(
            "tx_ring_full",
            "Transmit bursts cut short by a full ring.",
            tx_ring_full,
        ),
        sample("tx_errors", "Frames refused on transmit.", tx_errors),
    ]
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
    /// The slowpath core's SIP counters (drops, absorptions, timeouts, keep-alives).
    pub core: CoreStats,
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
             ues {}; registrations {}; SAs {} installed, {} SPIs of {}; commands {} ({} lost, \
             {} 401s withheld)",
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
    pub challenges_withheld: AtomicU64,
    pub sqn_commits: AtomicU64,
    pub sqn_commit_failures: AtomicU64,
    pub sip_transport_refused: AtomicU64,
    pub sa_sets_installed: AtomicU64,
    pub sa_sets_removed: AtomicU64,
    pub timeouts: AtomicU64,
    pub registrations: AtomicU64,
    pub subscribers: AtomicU64,
    pub transactions: AtomicU64,
    pub dialogs: AtomicU64,
    pub drained_at_shutdown: AtomicU64,
    /// The core's counters, copied by the slowpath thread after every batch.
    pub core: CoreCounters,
}

/// [`CoreStats`] as atomics, so other threads can read what the slowpath thread's core counted.
#[derive(Debug, Default)]
pub(super) struct CoreCounters {
    values: [AtomicU64; 15],
}

impl CoreCounters {
    /// Publishes `s` (single writer: the slowpath thread).
    pub fn store(&self, s: &CoreStats) {
        for (slot, sample) in self.values.iter().zip(core_counters(s)) {
            slot.store(sample.value, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> CoreStats {
        let v: [u64; 15] = std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed));
        let [malformed_requests, malformed_requests_unanswered, malformed_responses, unprotected_responses, stray_responses, retransmissions_absorbed, transaction_timeouts, timer_c_expiries, connect_failures, keepalives_sent, keepalives_answered, keepalive_failures, notify_failures, dialogs_released, bye_failures] =
            v;
        CoreStats {
            malformed_requests,
            malformed_requests_unanswered,
            malformed_responses,
            unprotected_responses,
            stray_responses,
            retransmissions_absorbed,
            transaction_timeouts,
            timer_c_expiries,
            connect_failures,
            keepalives_sent,
            keepalives_answered,
            keepalive_failures,
            notify_failures,
            dialogs_released,
            bye_failures,
        }
    }
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
            challenges_withheld: l(&self.challenges_withheld),
            sqn_commits: l(&self.sqn_commits),
            sqn_commit_failures: l(&self.sqn_commit_failures),
            sip_transport_refused: l(&self.sip_transport_refused),
            sa_sets_installed: l(&self.sa_sets_installed),
            sa_sets_removed: l(&self.sa_sets_removed),
            timeouts: l(&self.timeouts),
            registrations: l(&self.registrations),
            subscribers: l(&self.subscribers),
            transactions: l(&self.transactions),
            dialogs: l(&self.dialogs),
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
            core: self.slowpath.core.snapshot(),
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
            core: CoreStats::default(),
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
