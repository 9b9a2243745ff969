//! The slowpath thread's counters and gauges, and the SIP core's [`CoreStats`] described and
//! mirrored into atomics, so other threads read what the slowpath counted without touching it.

use std::sync::atomic::{AtomicU64, Ordering};

use akagate_proto::counters::CounterTable;
use akagate_slowpath::CoreStats;

akagate_proto::counters! {
    /// The slowpath's counters, written by the slowpath thread alone.
    pub struct SlowpathCounters {
        /// The core's counters, copied by the slowpath thread after every batch.
        pub core: CoreCounters,
    } => /// The slowpath thread's counters at a point in time.
    pub struct SlowpathStats;
    /// Events received from the workers.
    events: Counter,
    /// Complete SIP messages received from the workers.
    sip_messages: Counter,
    /// Commands handed to the workers.
    commands: Counter,
    /// Commands lost because a worker's command queue stayed full or was closed.
    commands_dropped: Counter,
    /// 401 challenges withheld because their batch's SQN commit failed.
    challenges_withheld: Counter,
    /// Successful SQN journal commits (fsyncs or state rewrites).
    sqn_commits: Counter,
    /// Batches whose SQN commit failed (their 401s withheld).
    sqn_commit_failures: Counter,
    /// SQN journal checkpoints while running (the journal outgrew `sqn-journal-max-bytes`
    /// and was folded into the state file).
    sqn_checkpoints: Counter,
    /// Bytes in the SQN journal now.
    sqn_journal_bytes: Gauge,
    /// Registrations restored from the registration store at start.
    registrations_restored: Counter,
    /// Stored registrations not restored at start: expired while the daemon was down,
    /// unreadable (a whole unreadable store counts one), restored too often for their ESP
    /// sequence numbers, or refused (SPI or IMPI taken).
    registrations_not_restored: Counter,
    /// Registration store commits (one per batch that changed a binding).
    registration_store_commits: Counter,
    /// Registration store commits that failed (retried with the next batch).
    registration_store_failures: Counter,
    /// SIP messages to the SIP port over a transport not configured for its address.
    sip_transport_refused: Counter,
    /// InstallSaSet commands sent (one per challenge).
    sa_sets_installed: Counter,
    /// RemoveSaSet commands sent.
    sa_sets_removed: Counter,
    /// Timer runs of the slowpath core that produced commands.
    timeouts: Counter,
    /// Registrations with an active SA set.
    registrations: Gauge,
    /// Subscribers loaded into the HSS.
    subscribers: Gauge,
    /// Live SIP transactions.
    transactions: Gauge,
    /// Dialogs between registered UEs.
    dialogs: Gauge,
    /// Events still queued at shutdown and handled before the workers stopped.
    drained_at_shutdown: Counter,
    /// Proxy mode: SIP messages received from the core side (kernel sockets).
    core_link_received: Counter,
    /// Proxy mode: SIP messages sent to the core side.
    core_link_sent: Counter,
    /// Proxy mode: core-side messages dropped (queue full, send error, bad framing,
    /// connection refused).
    core_link_dropped: Counter,
    /// Proxy mode: TCP connections opened to or accepted from core peers.
    core_link_connections: Counter,
}

/// Every counter of the slowpath core ([`CoreStats`]): SIP messages dropped or absorbed,
/// transaction timeouts, keep-alives, released dialogs (described where they are declared).
pub const CORE: CounterTable<CoreStats> = CoreStats::TABLE;

/// [`CoreStats`] as atomics, one per entry of [`CORE`] (single writer: the slowpath thread).
#[derive(Debug)]
pub struct CoreCounters {
    values: Box<[AtomicU64]>,
}

impl Default for CoreCounters {
    fn default() -> Self {
        CoreCounters {
            values: CORE.fields().iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl CoreCounters {
    /// Publishes `s`.
    pub fn store(&self, s: &CoreStats) {
        for (slot, (_, v)) in self.values.iter().zip(CORE.values(s)) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// What was last published.
    pub fn snapshot(&self) -> CoreStats {
        let mut s = CoreStats::default();
        for (slot, f) in self.values.iter().zip(CORE.fields()) {
            (f.set)(&mut s, slot.load(Ordering::Relaxed));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_counters_round_trip_every_field() {
        let mut s = CoreStats::default();
        for (i, f) in CORE.fields().iter().enumerate() {
            (f.set)(&mut s, 100 + i as u64);
        }
        let c = CoreCounters::default();
        c.store(&s);
        assert_eq!(c.snapshot(), s);
        let bye = CORE
            .fields()
            .iter()
            .position(|f| f.desc.name == "bye_failures")
            .unwrap();
        assert_eq!(c.snapshot().bye_failures, 100 + bye as u64);
        assert_eq!(CORE.get(&s, "malformed_requests"), Some(100));
    }

    #[test]
    fn slowpath_gauges_are_the_levels() {
        let gauges: Vec<&str> = SlowpathStats::TABLE
            .descs()
            .filter(|d| d.kind == akagate_proto::counters::CounterKind::Gauge)
            .map(|d| d.name)
            .collect();
        assert_eq!(
            gauges,
            [
                "sqn_journal_bytes",
                "registrations",
                "subscribers",
                "transactions",
                "dialogs"
            ]
        );
    }
}
