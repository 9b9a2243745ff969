//! The slowpath thread: waits for worker events up to the core's next deadline, runs the
//! sans-IO [`Core`] over a batch of them, writes the batch's SQN records to the journal with
//! one fsync (group commit), reports them durable to the core, which releases the challenges
//! it held for them, and hands each command to the worker that owns the UE.
//! On stop it handles the events still queued, closes the command queues and compacts the
//! HSS's SQN state.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use akagate_fastpath::ipc::{Transport, WorkerCommand, WorkerEvent};
use akagate_slowpath::hss::{HssError, PersistRecord};
use akagate_slowpath::registrar::ChangeSet;
use akagate_slowpath::Core;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::journal::SqnJournal;
use super::setup::SipAccess;
use super::stats::{inc, SlowpathCounters, StatsSource};
use super::store::RegistrationStore;
use super::wake::WorkerWake;
use akagate_sys::steer::Steering;

/// Longest sleep without looking at the stop flag, the stats clock and the core's timers.
const TICK: Duration = Duration::from_millis(100);
/// Shortest sleep after a timer run, so a deadline the core does not advance cannot spin.
const MIN_TIMER_WAIT: Duration = Duration::from_millis(1);
/// Events handled per wake-up before timers and the stop flag are looked at again.
const EVENT_BATCH: usize = 256;
/// How long a command may wait for room in a worker's queue before it is dropped; workers
/// never block, so a full queue for this long means the worker is overloaded.
const COMMAND_SEND_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the registration gauge is refreshed (it walks all registrations), at least.
const GAUGE_PERIOD: Duration = Duration::from_millis(100);
/// The gauges' walk takes at most about 1/`GAUGE_COST_RATIO` of the thread: with many
/// registrations (a walk of a million takes tens of milliseconds) the period stretches to
/// this many times the last walk's duration ([`next_gauge_after`]).
const GAUGE_COST_RATIO: u32 = 50;

/// When the gauges are next refreshed after a refresh that started at `started` and took
/// `took`: [`GAUGE_PERIOD`] later, or [`GAUGE_COST_RATIO`] times `took` if that is longer.
fn next_gauge_after(started: Instant, took: Duration) -> Instant {
    started + GAUGE_PERIOD.max(took.saturating_mul(GAUGE_COST_RATIO))
}
/// Address space the thread grows its heap by before it runs (`worker::reserve_heap`): the
/// registrar's, the transactions' and the store's buffers then grow without an `mprotect`
/// per page (issue 10: 571 of them on this thread for 2,000 registrations).
const HEAP_RESERVE: usize = 48 << 20;

/// How the slowpath thread ended.
#[derive(Debug)]
pub(super) struct SlowpathExit {
    /// The SQN state file that was made durable, if the HSS has one.
    pub sqn_state: Option<PathBuf>,
    /// Why the SQN state could not be compacted at shutdown.
    pub persist_error: Option<(PathBuf, HssError)>,
}

/// The slowpath thread's state.
pub(super) struct Slowpath {
    pub core: Core,
    pub events: Receiver<WorkerEvent>,
    pub commands: Vec<Sender<WorkerCommand>>,
    /// Per worker, parallel to `commands`: wakes it when a command was queued.
    pub wakers: Vec<Arc<WorkerWake>>,
    pub counters: Arc<SlowpathCounters>,
    pub stop: Arc<AtomicBool>,
    /// Where the HSS's SQN records go (none without a subscriber file).
    pub journal: Option<SqnJournal>,
    /// Where registered bindings go, to survive a restart (none without a subscriber file,
    /// and in proxy mode).
    pub registrations: Option<RegistrationStore>,
    /// The registrations' changes not yet in the store: each turn's are taken into it and
    /// it is cleared once committed; after a failed commit they stay, written before the
    /// next turn's. One zeroizing buffer for all the records, reused from turn to turn.
    pub unstored: ChangeSet,
    /// The turn's commands, sent by [`Slowpath::dispatch`]; kept from turn to turn so the
    /// list does not grow again in each.
    pub batch: Vec<WorkerCommand>,
    /// The turn's SQN records for the group commit, kept from turn to turn the same way.
    pub records: Vec<PersistRecord>,
    pub stats_interval: Option<Duration>,
    pub stats: StatsSource,
    /// The port's steering: which worker owns a UE.
    pub steering: Steering,
    /// Read-only queries of the control socket, answered once per loop turn.
    pub control: crate::control::Queries,
    /// Which transports the unprotected SIP port takes on each address.
    pub access: SipAccess,
    /// Proxy mode: this shard's way to the kernel sockets towards the IMS core.
    pub core_link: Option<super::corelink::CoreLinkTx>,
    /// Proxy mode, one shard: the core link's threads (stopped, and counted, here).
    pub core_link_threads: Option<super::corelink::CoreLink>,
    /// Proxy mode with next hops given as names: their re-resolutions.
    pub hop_updates: Option<HopUpdates>,
}

/// Proxy mode's next hops re-resolved by the DNS refresh thread, as one shard receives them.
pub(super) struct HopUpdates {
    /// Each re-resolution: (next hops, E-CSCFs).
    pub rx: Receiver<super::resolve::Resolved>,
    /// One shard: the thread, to stop and join.
    pub refresh: Option<DnsRefresh>,
}

/// The DNS refresh thread.
pub(super) struct DnsRefresh {
    /// Stops the thread.
    pub stop: Arc<AtomicBool>,
    /// The thread.
    pub thread: std::thread::JoinHandle<()>,
}

impl Slowpath {
    /// The thread body.
    pub fn run(mut self) -> SlowpathExit {
        if super::worker::GLIBC_ARENAS {
            super::worker::reserve_heap(HEAP_RESERVE);
        }
        self.publish_gauges();
        let mut next_gauge = Instant::now() + GAUGE_PERIOD;
        let mut next_log = self.stats_interval.map(|i| Instant::now() + i);
        let mut timer_ran = false;
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let mut wake = now + TICK;
            if let Some(t) = self.core.poll_timeout() {
                wake = wake.min(t);
            }
            if let Some(t) = next_log {
                wake = wake.min(t);
            }
            if timer_ran {
                wake = wake.max(now + MIN_TIMER_WAIT);
            }
            let mut batch = std::mem::take(&mut self.batch);
            match self.events.recv_deadline(wake) {
                Ok(ev) => {
                    self.on_event(ev, &mut batch);
                    for _ in 1..EVENT_BATCH {
                        match self.events.try_recv() {
                            Ok(ev) => self.on_event(ev, &mut batch),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    tracing::error!("slowpath: every worker is gone; stopping");
                    self.release(&mut batch);
                    break;
                }
            }
            let now = Instant::now();
            timer_ran = false;
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                timer_ran = true;
                let actions = self.core.handle_timeout(now);
                if !actions.is_empty() {
                    inc(&self.counters.timeouts);
                }
                batch.extend(actions);
            }
            // Other shards saw our UEs' new sets in use (calls they own): old sets retire;
            // their UEs we hold calls with ended: those calls are released.
            batch.extend(self.core.apply_remote_traffic(now));
            self.release(&mut batch);
            self.batch = batch;
            self.publish_counters();
            if let Some(Ok((hops, emergency))) = self.hop_updates.as_ref().map(|h| h.rx.try_recv())
            {
                self.core.set_next_hops(hops, emergency);
            }
            let mut commands = self.control.serve(&mut self.core, now);
            self.dispatch(&mut commands);
            if now >= next_gauge {
                let started = Instant::now();
                self.publish_gauges();
                next_gauge = next_gauge_after(started, started.elapsed());
            }
            if let (Some(t), Some(i)) = (next_log, self.stats_interval) {
                if now >= t {
                    tracing::info!("stats: {}", self.stats.snapshot());
                    next_log = Some(now + i);
                }
            }
        }
        self.finish()
    }

    /// Handles the events queued when the stop came (not those that keep arriving, so a
    /// busy link cannot hold shutdown up), closes the command queues and persists SQNs.
    fn finish(mut self) -> SlowpathExit {
        let queued = self.events.len();
        let mut drained = 0;
        let mut batch = Vec::new();
        for _ in 0..queued {
            match self.events.try_recv() {
                Ok(ev) => {
                    self.on_event(ev, &mut batch);
                    drained += 1;
                }
                Err(_) => break,
            }
        }
        self.release(&mut batch);
        self.counters
            .drained_at_shutdown
            .store(drained, Ordering::Relaxed);
        self.publish_counters();
        self.publish_gauges();
        let Slowpath {
            core,
            commands,
            journal,
            registrations,
            core_link_threads,
            hop_updates,
            ..
        } = self;
        if let Some(link) = core_link_threads {
            link.stop();
        }
        if let Some(r) = hop_updates.and_then(|h| h.refresh) {
            r.stop.store(true, Ordering::Release);
            let _ = r.thread.join();
        }
        // Closing the queues tells nobody anything (workers stop on their own flag), but no
        // command can be added behind the drained ones.
        drop(commands);
        let mut exit = SlowpathExit {
            sqn_state: None,
            persist_error: None,
        };
        // Every SQN handed out is already durable (in the journal or, with a registration
        // store, in its log): the last batch was persisted before its commands were queued,
        // and the core holds nothing more. A checkpoint from the HSS's memory (each IMPI's
        // largest SQN ever handed out or recovered, as the checkpoints while running write
        // it) leaves the state as one snapshot and an empty journal, so it survives as one
        // file (TS 33.102 6.3: an SQN is never reused); the store's SQN records stay in its
        // log and are folded again at the next start, harmlessly. Reopening the journal did
        // the same by reading the snapshot, the journal and the whole store log back (~5.4k
        // instructions a registration, docs/BENCHMARKS.md round 26).
        if let Some(mut journal) = journal {
            let path = journal.path().to_path_buf();
            match journal.checkpoint(sqn_checkpoint(&core)) {
                Ok(()) => exit.sqn_state = Some(path),
                Err(e) => exit.persist_error = Some((path, e)),
            }
        }
        drop(registrations);
        // The process is ending: the core's keys are zeroized and its registrations left to
        // the exit, not freed one by one (~2.2k instructions a registration).
        core.release_at_exit();
        exit
    }

    /// Runs one event through the core; its commands join `batch` (sent by `release`). SIP
    /// over a transport the SIP port does not take on that address never reaches the core;
    /// its TCP connection is closed.
    fn on_event(&mut self, ev: WorkerEvent, batch: &mut Vec<WorkerCommand>) {
        inc(&self.counters.events);
        if let WorkerEvent::Sip(sip) = &ev {
            inc(&self.counters.sip_messages);
            let core_side = self.core_link.as_ref().is_some_and(|l| l.owns(&sip.flow));
            if !core_side && !self.access.allows(&sip.flow) {
                inc(&self.counters.sip_transport_refused);
                tracing::debug!(
                    "slowpath: SIP from {} over {:?} to {}:{} refused (transport-protocol)",
                    sip.flow.ue,
                    sip.flow.proto,
                    sip.flow.local,
                    sip.flow.local_port
                );
                if sip.flow.proto == Transport::Tcp {
                    batch.push(WorkerCommand::Close(sip.flow));
                }
                return;
            }
        }
        self.core.handle_into(ev, Instant::now(), batch);
    }

    /// Makes the batch's SQN records and registration changes durable (group commit), then
    /// sends the batch followed by the challenges the core released, so no 401 leaves before
    /// its SQN would survive a crash (TS 33.102 6.3; a restart never reuses a challenge) and
    /// no 200 OK before its binding would. With a registration store and a healthy journal
    /// both go into the store's log in one append and one `fdatasync`
    /// ([`Slowpath::commit_together`]); otherwise the journal and the store commit apart.
    fn release(&mut self, batch: &mut Vec<WorkerCommand>) {
        let together =
            self.registrations.is_some() && self.journal.as_ref().is_some_and(|j| !j.is_poisoned());
        if together {
            batch.extend(self.commit_together());
        } else {
            batch.extend(self.persist());
            self.store_registrations();
        }
        self.dispatch(batch);
    }

    /// The group commit as one append to the registration store: the SQN records (as the
    /// store's SQN records, folded into the SQN state at the next start) and the changed
    /// bindings, one `writev` and one `fdatasync`. If that append fails, the SQN records go
    /// the journal's way instead ([`Slowpath::persist_records`]: its own write and fsync, or a
    /// checkpoint, else the held 401s are withheld) and the changes are retried with the
    /// next batch, as a failed store commit always was. Returns the commands the core
    /// released (or gave back).
    fn commit_together(&mut self) -> Vec<WorkerCommand> {
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        records.extend(std::iter::from_fn(|| self.core.poll_persist()));
        let released = self.commit_records_together(&records);
        self.records = records;
        released
    }

    /// [`Slowpath::commit_together`] of the batch's SQN records `records`.
    fn commit_records_together(&mut self, records: &[PersistRecord]) -> Vec<WorkerCommand> {
        if self.core.has_registration_changes() {
            self.core.take_registration_changes_into(
                Instant::now(),
                SystemTime::now(),
                &mut self.unstored,
            );
        }
        if records.is_empty() && self.unstored.is_empty() {
            return Vec::new();
        }
        let Some(store) = self.registrations.as_mut() else {
            return Vec::new();
        };
        match store.commit_set(&self.unstored, records) {
            Ok(()) => {
                self.unstored.clear();
                inc(&self.counters.registration_store_commits);
                match self.core.hss().last_ticket() {
                    Some(ticket) if !records.is_empty() => self.core.on_durable(ticket),
                    _ => Vec::new(),
                }
            }
            Err(e) => {
                inc(&self.counters.registration_store_failures);
                tracing::error!("slowpath: {e}; SQNs to the journal, bindings retried");
                self.persist_records(records)
            }
        }
    }

    /// Writes the bindings the batch changed to the registration store (one transaction,
    /// fsynced) before its commands leave, so a UE that got its 200 OK is registered after a
    /// crash. A failure is counted and logged; the changes are retried with the next batch
    /// (the 200 OKs still leave: the registration works, it only would not survive a crash).
    fn store_registrations(&mut self) {
        let Some(store) = self.registrations.as_mut() else {
            return;
        };
        if !self.core.has_registration_changes() && self.unstored.is_empty() {
            return;
        }
        self.core.take_registration_changes_into(
            Instant::now(),
            SystemTime::now(),
            &mut self.unstored,
        );
        match store.commit_set(&self.unstored, &[]) {
            Ok(()) => {
                self.unstored.clear();
                inc(&self.counters.registration_store_commits);
            }
            Err(e) => {
                inc(&self.counters.registration_store_failures);
                tracing::error!("slowpath: {e}; retried with the next batch");
            }
        }
    }

    /// Group commit through the journal: takes the core's SQN records and makes them durable
    /// ([`Slowpath::persist_records`]); returns the commands the core held for them. A
    /// poisoned journal is retried every turn, records or not.
    fn persist(&mut self) -> Vec<WorkerCommand> {
        let records: Vec<PersistRecord> = std::iter::from_fn(|| self.core.poll_persist()).collect();
        self.persist_records(&records)
    }

    /// Writes `records` to the journal with one fsync (or rewrites the whole state if the
    /// journal failed) and reports them durable; returns the commands the core held for
    /// them. If nothing could be made durable, the held 401s are dropped (counted in
    /// `challenges_withheld`; UEs retry or retransmit) and the rest is returned: it carries
    /// no SQN, and holding back SA installs/removals would leave workers and core out of
    /// step.
    fn persist_records(&mut self, records: &[PersistRecord]) -> Vec<WorkerCommand> {
        let Slowpath {
            core,
            journal,
            counters,
            ..
        } = self;
        let Some(journal) = journal.as_mut() else {
            return Vec::new();
        };
        if records.is_empty() && !journal.is_poisoned() {
            return Vec::new();
        }
        // Records are taken as they are queued, so the latest ticket is the last record's;
        // a checkpoint covers it too.
        let Some(ticket) = core.hss().last_ticket() else {
            return Vec::new();
        };
        let hss = core.hss();
        match journal.commit(records, || sqn_checkpoint_of(hss)) {
            Ok(()) => core.on_durable(ticket),
            Err(e) => {
                let withheld = core.on_persist_failed(ticket);
                inc(&counters.sqn_commit_failures);
                let c = &counters.challenges_withheld;
                c.store(
                    c.load(Ordering::Relaxed)
                        .wrapping_add(withheld.challenges as u64),
                    Ordering::Relaxed,
                );
                tracing::error!(
                    "slowpath: SQN state not durable ({e}); {} 401 challenge(s) withheld",
                    withheld.challenges
                );
                withheld.actions
            }
        }
    }

    /// Sends each command, in order, to the worker owning its UE (one UE, one worker), so
    /// an `InstallSaSet` always reaches the worker before the 401 that announces the SAs, and
    /// a `RemoveSaSet` after the last message over the set (the worker drains the set).
    /// Each worker given a command is woken once, after the last (a worker woken by the
    /// first command of a batch would park again between them: ~1.8 unparks a turn before,
    /// each a `futex` call and on a VM an IPI); a worker whose queue is full is woken at once.
    fn dispatch(&mut self, actions: &mut Vec<WorkerCommand>) {
        let mut to_wake = Wakes::default();
        for cmd in actions.drain(..) {
            if let Some(owner) = self.send(cmd) {
                to_wake.add(owner);
            }
        }
        for owner in to_wake.iter() {
            self.wake(owner);
        }
    }

    /// Unparks worker `owner` if it sleeps.
    fn wake(&self, owner: usize) {
        if let Some(w) = self.wakers.get(owner) {
            w.wake();
        }
    }

    /// Hands one command to the worker that owns its UE; returns that worker if the command
    /// was queued for it (the caller wakes it).
    fn send(&mut self, cmd: WorkerCommand) -> Option<usize> {
        if let (Some(link), WorkerCommand::Send { flow, .. } | WorkerCommand::Close(flow)) =
            (&self.core_link, &cmd)
        {
            if link.owns(flow) {
                if link.submit(cmd) {
                    inc(&self.counters.commands);
                } else {
                    inc(&self.counters.commands_dropped);
                }
                return None;
            }
        }
        let ue = match &cmd {
            WorkerCommand::Send { flow, .. } | WorkerCommand::Close(flow) => flow.ue,
            WorkerCommand::InstallSaSet(set) | WorkerCommand::RestoreSaSet { set, .. } => set.ue,
            WorkerCommand::RemoveSaSet { ue, .. } => *ue,
        };
        let counter = match &cmd {
            WorkerCommand::InstallSaSet(_) | WorkerCommand::RestoreSaSet { .. } => {
                Some(&self.counters.sa_sets_installed)
            }
            WorkerCommand::RemoveSaSet { .. } => Some(&self.counters.sa_sets_removed),
            _ => None,
        };
        let owner = self.steering.queue_for_ue(ue);
        let Some(queue) = self.commands.get(owner) else {
            inc(&self.counters.commands_dropped);
            return None;
        };
        let sent = match queue.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(cmd)) => {
                // The worker drains its queue only awake: wake it before waiting for room.
                if let Some(w) = self.wakers.get(owner) {
                    w.wake();
                }
                queue.send_timeout(cmd, COMMAND_SEND_TIMEOUT).map_err(drop)
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        };
        match sent {
            Ok(()) => {
                inc(&self.counters.commands);
                if let Some(c) = counter {
                    inc(c);
                }
                Some(owner)
            }
            Err(()) => {
                inc(&self.counters.commands_dropped);
                tracing::warn!(
                    "slowpath: command for UE {ue} dropped, its worker's queue is full or gone"
                );
                None
            }
        }
    }

    /// Copies the core's counters and the HSS's commit count for other threads (cheap: a
    /// few stores, once per loop turn).
    fn publish_counters(&self) {
        let c = &self.counters;
        c.core.store(&self.core.stats());
        // SQN group commits: the journal's fsyncs and the store's commits that carried SQNs.
        let syncs = self.journal.as_ref().map_or(0, SqnJournal::syncs)
            + (self.registrations.as_ref()).map_or(0, RegistrationStore::sqn_commits);
        c.sqn_commits.store(syncs, Ordering::Relaxed);
        let checkpoints = self.journal.as_ref().map_or(0, SqnJournal::checkpoints);
        c.sqn_checkpoints.store(checkpoints, Ordering::Relaxed);
        let bytes = self.journal.as_ref().map_or(0, SqnJournal::journal_bytes);
        c.sqn_journal_bytes.store(bytes, Ordering::Relaxed);
        if let Some(link) = &self.core_link_threads {
            let l = &link.counters;
            for (to, from) in [
                (&c.core_link_received, &l.received),
                (&c.core_link_sent, &l.sent),
                (&c.core_link_dropped, &l.dropped),
                (&c.core_link_connections, &l.connections),
            ] {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    /// Levels that need a walk or a count of the core's state (every `GAUGE_PERIOD`).
    fn publish_gauges(&self) {
        let c = &self.counters;
        c.registrations
            .store(self.core.registered() as u64, Ordering::Relaxed);
        c.subscribers
            .store(self.core.hss().len() as u64, Ordering::Relaxed);
        c.transactions
            .store(self.core.transactions() as u64, Ordering::Relaxed);
        c.dialogs
            .store(self.core.dialogs() as u64, Ordering::Relaxed);
    }
}

/// The SQN state a checkpoint writes: the HSS's (each IMPI's largest SQN ever handed out or
/// recovered), without the subscribers that never had one (an IMPI absent from the state
/// resumes as one at 0 does, so a million provisioned subscribers of whom a few registered
/// write a few lines).
fn sqn_checkpoint_of(hss: &akagate_slowpath::hss::Hss) -> impl Iterator<Item = (&str, u64)> {
    hss.sqn_state().filter(|&(_, sqn)| sqn > 0)
}

/// [`sqn_checkpoint_of`] the core's HSS.
fn sqn_checkpoint(core: &Core) -> impl Iterator<Item = (&str, u64)> {
    sqn_checkpoint_of(core.hss())
}

/// The workers a dispatch queued commands for: a bit each for the first 64, a list beyond.
#[derive(Default)]
struct Wakes {
    low: u64,
    high: Vec<usize>,
}

impl Wakes {
    /// Notes worker `owner`.
    fn add(&mut self, owner: usize) {
        match u32::try_from(owner) {
            Ok(bit) if bit < 64 => self.low |= 1 << bit,
            _ if !self.high.contains(&owner) => self.high.push(owner),
            _ => {}
        }
    }

    /// The noted workers, each once.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let mut low = self.low;
        std::iter::from_fn(move || {
            let bit = low.trailing_zeros();
            low &= low.wrapping_sub(1);
            (bit < 64).then_some(bit as usize)
        })
        .chain(self.high.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigTemplate, Transport};
    use akagate_fastpath::ipc::{Flow, SipIn};
    use akagate_fastpath::worker::InboundTable;
    use akagate_slowpath::hss::{Hss, SubscriberRecord};
    use akagate_slowpath::CoreConfig;
    use crossbeam_channel::bounded;
    use rand::SeedableRng;

    const REGISTER: &[u8] = include_bytes!(
        "../../tests/fixtures/daemon/01_register_initial_security_client_boghe_openims.sip"
    );

    fn flow() -> Flow {
        Flow {
            ue: "192.168.200.100".parse().unwrap(),
            ue_port: 63373,
            local: "192.168.200.1".parse().unwrap(),
            local_port: 5060,
            proto: Transport::Udp,
        }
    }

    fn register() -> WorkerEvent {
        WorkerEvent::Sip(SipIn {
            flow: flow(),
            via_spi: None,
            bytes: REGISTER.to_vec(),
        })
    }

    /// A slowpath over one worker queue whose HSS (alice, TS 35.208 4.3.1 Test Set 1) keeps
    /// its SQN state in `dir`; returns it with its event sender and the worker's queue.
    fn slowpath_in(
        dir: &std::path::Path,
        stop: bool,
    ) -> (Slowpath, Sender<WorkerEvent>, Receiver<WorkerCommand>) {
        slowpath_with(dir, stop, CoreConfig::default())
    }

    /// [`slowpath_in`] with the core configured by `cfg`.
    fn slowpath_with(
        dir: &std::path::Path,
        stop: bool,
        cfg: CoreConfig,
    ) -> (Slowpath, Sender<WorkerEvent>, Receiver<WorkerCommand>) {
        slowpath_sqn(dir, stop, cfg, akagate_slowpath::hss::SQN_BLOCK, false)
    }

    /// [`slowpath_with`] with SQN blocks of `block` SEQ steps, reserved at start if
    /// `reserve` (as the daemon's start does, the bound durable in the snapshot) or else
    /// by the first challenge.
    fn slowpath_sqn(
        dir: &std::path::Path,
        stop: bool,
        cfg: CoreConfig,
        block: u64,
        reserve: bool,
    ) -> (Slowpath, Sender<WorkerEvent>, Receiver<WorkerCommand>) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let (journal, recovered) = SqnJournal::open(&dir.join("sqn-state")).unwrap();
        let journal_checkpoint = |path: &std::path::Path, hss: &Hss| {
            let (mut j, _) = SqnJournal::open(path).unwrap();
            j.checkpoint(hss.sqn_state()).unwrap();
        };
        let hss = Hss::from_records(&[SubscriberRecord {
            impi: "alice@open-ims.test".into(),
            impu: vec!["sip:alice@open-ims.test".into()],
            // TS 35.208 4.3.1 Test Set 1.
            k: "465b5ce8b199b49faa5f0a2ee238a6bc".into(),
            opc: Some("cd63cb71954a9f4e48a5994e37a02baf".into()),
            op: None,
            amf: "8000".into(),
            sqn: "000000000000".into(),
        }])
        .unwrap()
        .with_sqn_state(recovered)
        .unwrap()
        .with_sqn_block(block);
        let hss = if reserve {
            let mut hss = hss;
            hss.reserve_sqn_blocks();
            journal_checkpoint(&dir.join("sqn-state"), &hss);
            hss
        } else {
            hss
        };
        let table = Arc::new(InboundTable::with_capacity(64).unwrap());
        let core = Core::new(
            cfg,
            hss,
            table.clone(),
            Box::new(rand::rngs::StdRng::seed_from_u64(1)),
        );
        let (events_tx, events) = bounded(4);
        let (commands_tx, commands_rx) = bounded(4);
        let counters = Arc::new(SlowpathCounters::default());
        let slowpath = Slowpath {
            core,
            events,
            commands: vec![commands_tx],
            wakers: vec![Arc::default()],
            counters: counters.clone(),
            stop: Arc::new(AtomicBool::new(stop)),
            journal: Some(journal),
            registrations: None,
            unstored: Default::default(),
            batch: Vec::new(),
            records: Vec::new(),
            stats_interval: None,
            stats: StatsSource {
                started: Instant::now(),
                workers: Vec::new(),
                slowpath: counters,
                shards: Vec::new(),
                table,
            },
            steering: akagate_sys::steer::Steering::UeKey { queues: 1 },
            control: crate::control::channel(1).1.remove(0),
            access: access(&[Transport::Udp, Transport::Tcp]),
            core_link: None,
            core_link_threads: None,
            hop_updates: None,
        };
        (slowpath, events_tx, commands_rx)
    }

    /// SIP on 192.168.200.1:5060 (the fixture's P-CSCF) over `transports`.
    fn access(transports: &[Transport]) -> SipAccess {
        let config = ConfigTemplate {
            ipv4: vec!["192.168.200.1".parse().unwrap()],
            ipv6: vec![],
            transports: transports.to_vec(),
            ..ConfigTemplate::default()
        }
        .build()
        .unwrap();
        crate::daemon::setup::sip_access(&config, 5060)
    }

    /// A dispatch wakes each worker it queued commands for once, after the last of them
    /// (not once per command), and wakes no worker it queued nothing for.
    #[test]
    fn a_dispatch_wakes_its_worker_once() {
        let dir = tmp("wake-once");
        let (mut slowpath, _events_tx, commands_rx) = slowpath_in(&dir, true);
        slowpath.dispatch(&mut vec![WorkerCommand::Close(flow()); 3]);
        assert_eq!(commands_rx.try_iter().count(), 3);
        assert_eq!(slowpath.wakers[0].wakes(), 1);
        slowpath.dispatch(&mut Vec::new());
        assert_eq!(slowpath.wakers[0].wakes(), 1);
        let mut w = Wakes::default();
        for owner in [3, 63, 64, 3, 200, 64, 0] {
            w.add(owner);
        }
        assert_eq!(w.iter().collect::<Vec<_>>(), [0, 3, 63, 64, 200]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A command that finds its worker's queue full wakes the worker before it waits for
    /// room, so a parked worker drains the queue and nothing is dropped.
    #[test]
    fn a_full_queue_wakes_its_worker_before_waiting() {
        let dir = tmp("wake-full");
        let (mut slowpath, _events_tx, commands_rx) = slowpath_in(&dir, true);
        let wake = slowpath.wakers[0].clone();
        let worker = {
            let wake = wake.clone();
            std::thread::spawn(move || {
                wake.register_current();
                let (start, mut got) = (Instant::now(), 0);
                while got < 5 && start.elapsed() < Duration::from_secs(20) {
                    wake.sleep(Duration::from_secs(10), || false);
                    got += commands_rx.try_iter().count();
                }
                (got, start.elapsed())
            })
        };
        while !wake.is_sleeping() {
            std::thread::yield_now();
        }
        // The queue holds 4: the fifth command waits for room.
        slowpath.dispatch(&mut vec![WorkerCommand::Close(flow()); 5]);
        let (got, took) = worker.join().unwrap();
        assert_eq!(got, 5);
        assert!(
            took < Duration::from_secs(5),
            "woken, not timed out: {took:?}"
        );
        let c = &slowpath.counters;
        assert_eq!(c.commands_dropped.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A UDP REGISTER to a TCP-only SIP port never reaches the core (no SA set, no 401) and
    /// is counted; over TCP to a UDP-only port the connection is closed instead.
    #[test]
    fn sip_over_an_unconfigured_transport_is_refused() {
        let dir = tmp("transport");
        let (mut slowpath, _events_tx, _commands_rx) = slowpath_in(&dir, true);
        slowpath.access = access(&[Transport::Tcp]);
        let mut batch = Vec::new();
        slowpath.on_event(register(), &mut batch);
        assert!(batch.is_empty(), "{batch:?}");
        assert_eq!(slowpath.core.stats(), Default::default());
        let refused = |s: &Slowpath| s.counters.sip_transport_refused.load(Ordering::Relaxed);
        assert_eq!(refused(&slowpath), 1);

        slowpath.access = access(&[Transport::Udp]);
        let tcp = Flow {
            proto: Transport::Tcp,
            ..flow()
        };
        let WorkerEvent::Sip(mut sip) = register() else {
            unreachable!()
        };
        sip.flow = tcp;
        slowpath.on_event(WorkerEvent::Sip(sip), &mut batch);
        assert!(
            matches!(batch.as_slice(), [WorkerCommand::Close(f)] if *f == tcp),
            "{batch:?}"
        );
        assert_eq!(refused(&slowpath), 2);

        // Over UDP the same request is the core's: the SA set and the 401.
        batch.clear();
        slowpath.on_event(register(), &mut batch);
        assert!(matches!(
            batch.first(),
            Some(WorkerCommand::InstallSaSet(_))
        ));
        assert_eq!(refused(&slowpath), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The protected ports are not subject to `transport-protocol`; another of our addresses
    /// without a `[[sip-ports]]` entry takes nothing on the SIP port.
    #[test]
    fn access_applies_to_the_sip_port_of_listed_addresses() {
        let a = access(&[Transport::Tcp]);
        let udp = flow();
        assert!(!a.allows(&udp));
        assert!(a.allows(&Flow {
            local_port: 5064,
            ..udp
        }));
        assert!(a.allows(&Flow {
            proto: Transport::Tcp,
            ..udp
        }));
        assert!(!a.allows(&Flow {
            proto: Transport::Tcp,
            local: "192.168.200.2".parse().unwrap(),
            ..udp
        }));
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("akagate-slowpath-{name}-{}", std::process::id()))
    }

    /// An event queued before the stop is still handled, its commands reach the worker's
    /// queue in order (SA set before the 401), and the SQN state is compacted to one file.
    #[test]
    fn stop_handles_queued_events_and_persists_sqns() {
        let dir = tmp("stop");
        let (slowpath, events_tx, commands_rx) = slowpath_in(&dir, true);
        let state = dir.join("sqn-state");
        let counters = slowpath.counters.clone();
        events_tx.send(register()).unwrap();
        let exit = slowpath.run();
        assert!(exit.persist_error.is_none(), "{:?}", exit.persist_error);
        assert_eq!(exit.sqn_state.as_deref(), Some(state.as_path()));
        assert_eq!(counters.drained_at_shutdown.load(Ordering::Relaxed), 1);

        let cmds: Vec<WorkerCommand> = commands_rx.try_iter().collect();
        assert!(
            matches!(cmds.first(), Some(WorkerCommand::InstallSaSet(s)) if s.ue == flow().ue),
            "{cmds:?}"
        );
        match cmds.get(1) {
            Some(WorkerCommand::Send { flow: f, bytes, .. }) => {
                assert_eq!(*f, flow());
                assert!(bytes.starts_with(b"SIP/2.0 401 "));
            }
            other => panic!("expected the 401, got {other:?}"),
        }
        // The journal was folded into the snapshot and emptied.
        let snapshot = std::fs::read_to_string(&state).unwrap();
        assert!(snapshot.contains("\"alice@open-ims.test\""), "{snapshot}");
        let journal = std::fs::read_to_string(dir.join("sqn-state.journal")).unwrap();
        assert_eq!(journal, "");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn register_branch(branch: &str) -> WorkerEvent {
        let text = String::from_utf8(REGISTER.to_vec()).unwrap();
        WorkerEvent::Sip(SipIn {
            flow: flow(),
            via_spi: None,
            bytes: text.replace("z9hG4bK-332948456", branch).into_bytes(),
        })
    }

    fn is_401(c: &WorkerCommand) -> bool {
        matches!(c, WorkerCommand::Send { bytes, .. } if bytes.starts_with(b"SIP/2.0 401 "))
    }

    /// The core holds the 401 until the journal has its SQN; a batch whose write failed
    /// loses its 401 (counted) while the SA set install still reaches the worker; until the
    /// state is rewritten new challenges get 500, and a retransmitted REGISTER gets its 401
    /// once the rewrite succeeded.
    #[test]
    fn failed_write_withholds_the_401_until_the_state_is_durable() {
        let dir = tmp("failed-commit");
        let (mut slowpath, _events_tx, commands_rx) = slowpath_in(&dir, true);
        let counts = |s: &Slowpath| {
            let c = &s.counters;
            (
                c.challenges_withheld.load(Ordering::Relaxed),
                c.sqn_commit_failures.load(Ordering::Relaxed),
                c.commands_dropped.load(Ordering::Relaxed),
            )
        };
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        if let Some(j) = slowpath.journal.as_mut() {
            j.replace_file_for_test(full);
        }
        // Without its directory the state cannot be rewritten either.
        std::fs::remove_dir_all(&dir).unwrap();
        let mut batch = Vec::new();
        slowpath.on_event(register(), &mut batch);
        assert!(
            matches!(batch.as_slice(), [WorkerCommand::InstallSaSet(_)]),
            "the 401 waits in the core: {batch:?}"
        );
        assert_eq!(slowpath.core.held(), 1);
        slowpath.release(&mut { batch });
        let cmds: Vec<WorkerCommand> = commands_rx.try_iter().collect();
        assert!(
            matches!(cmds.as_slice(), [WorkerCommand::InstallSaSet(_)]),
            "{cmds:?}"
        );
        assert_eq!(slowpath.core.held(), 0);
        // One 401 withheld by one failed write; no command lost to a full queue.
        assert_eq!(counts(&slowpath), (1, 1, 0));

        // A new REGISTER is refused while nothing can be made durable; the retransmitted one
        // waits again for durability.
        let mut batch = Vec::new();
        slowpath.on_event(register_branch("z9hG4bK-second"), &mut batch);
        slowpath.on_event(register(), &mut batch);
        assert!(
            matches!(batch.as_slice(), [WorkerCommand::Send { bytes, .. }] if bytes.starts_with(b"SIP/2.0 500 ")),
            "{batch:?}"
        );
        assert_eq!(slowpath.core.held(), 1);
        slowpath.release(&mut { batch });
        assert_eq!(commands_rx.try_iter().count(), 1, "the 500 only");
        assert_eq!(counts(&slowpath), (2, 2, 0));

        // The directory is back: the next turn rewrites the state, and the retransmission
        // of the REGISTER now gets its 401.
        std::fs::create_dir_all(&dir).unwrap();
        let mut batch = Vec::new();
        slowpath.on_event(register(), &mut batch);
        assert!(batch.is_empty(), "{batch:?}");
        slowpath.release(&mut { batch });
        let cmds: Vec<WorkerCommand> = commands_rx.try_iter().collect();
        assert!(matches!(cmds.as_slice(), [c] if is_401(c)), "{cmds:?}");
        assert_eq!(counts(&slowpath), (2, 2, 0));
        let snapshot = std::fs::read_to_string(dir.join("sqn-state")).unwrap();
        assert!(
            // The bound of the block from SEQ 1 (SEQ 1,024, IND 31).
            snapshot.contains("\"alice@open-ims.test\" = \"00000000801f\""),
            "{snapshot}"
        );
        // Challenges are made again.
        let mut batch = Vec::new();
        slowpath.on_event(register_branch("z9hG4bK-third"), &mut batch);
        slowpath.release(&mut { batch });
        let cmds: Vec<WorkerCommand> = commands_rx.try_iter().collect();
        assert!(cmds.iter().any(is_401), "{cmds:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// [`slowpath_in`] with a registration store beside the SQN state.
    fn slowpath_with_store(
        dir: &std::path::Path,
    ) -> (Slowpath, Sender<WorkerEvent>, Receiver<WorkerCommand>) {
        let (mut slowpath, events_tx, commands_rx) = slowpath_in(dir, true);
        let path = super::super::store::shard_store_path(&dir.join("sqn-state"), 0);
        let (store, _) = RegistrationStore::open(&path, SystemTime::now()).unwrap();
        slowpath.registrations = Some(store);
        (slowpath, events_tx, commands_rx)
    }

    /// Issue 10: with a registration store, a batch's SQN records go into the store's log
    /// with its bindings (one `writev`, one `fdatasync`): the 401 leaves with the journal
    /// untouched, and after a crash (no `finish`) the next start finds its SQN in the state.
    #[test]
    fn one_commit_makes_the_sqn_durable_in_the_registration_store() {
        let dir = tmp("one-commit");
        let (mut slowpath, _events_tx, commands_rx) = slowpath_with_store(&dir);
        let mut batch = Vec::new();
        slowpath.on_event(register(), &mut batch);
        assert_eq!(slowpath.core.held(), 1, "the 401 waits for durability");
        slowpath.release(&mut { batch });
        let cmds: Vec<WorkerCommand> = commands_rx.try_iter().collect();
        assert!(cmds.iter().any(is_401), "{cmds:?}");
        slowpath.publish_counters();
        let c = &slowpath.counters;
        assert_eq!(c.registration_store_commits.load(Ordering::Relaxed), 1);
        assert_eq!(c.sqn_commits.load(Ordering::Relaxed), 1);
        let base = dir.join("sqn-state");
        let journal = std::fs::read_to_string(dir.join("sqn-state.journal")).unwrap();
        assert_eq!(journal, "", "no journal write, no journal fsync");
        // The crash: the thread is gone without its shutdown's compaction.
        drop(slowpath);
        let (_, state) = super::super::journal::open_shards(&base, 1, |_| 0).unwrap();
        // The first SEQ passed the bound (nothing reserved at this start): the record holds
        // a block from SEQ 1 on, written with the last IND.
        let bound = (akagate_slowpath::hss::SQN_BLOCK << 5) | 31;
        assert_eq!(state.get("alice@open-ims.test"), Some(&bound));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// If the store's append fails, the batch's SQNs take the journal's way (its own write
    /// and fsync) and the 401 still leaves; the failure is counted.
    #[test]
    fn a_failed_store_commit_sends_the_sqns_to_the_journal() {
        let dir = tmp("store-fails");
        let (mut slowpath, _events_tx, commands_rx) = slowpath_with_store(&dir);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        if let Some(s) = slowpath.registrations.as_mut() {
            s.replace_file_for_test(full);
        }
        let mut batch = Vec::new();
        slowpath.on_event(register(), &mut batch);
        slowpath.release(&mut { batch });
        let cmds: Vec<WorkerCommand> = commands_rx.try_iter().collect();
        assert!(cmds.iter().any(is_401), "{cmds:?}");
        let c = &slowpath.counters;
        assert_eq!(c.registration_store_failures.load(Ordering::Relaxed), 1);
        assert_eq!(c.challenges_withheld.load(Ordering::Relaxed), 0);
        let journal = std::fs::read_to_string(dir.join("sqn-state.journal")).unwrap();
        // The bound of the block from SEQ 1 (SEQ 1,024, IND 31).
        assert_eq!(journal, "00000000801f alice@open-ims.test\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// SQN blocks: with a bound reserved at start, a REGISTER's 401 leaves in its own turn
    /// without a commit (no record, no store append, no journal line); only the challenge
    /// that passes the bound waits for a commit, which then carries its one record.
    #[test]
    fn a_401_under_the_reserved_bound_waits_for_no_commit() {
        let dir = tmp("sqn-block");
        // A vector is reused for at most a millisecond: each REGISTER below spends an SQN.
        let cfg = CoreConfig {
            challenge_timeout: Duration::from_millis(1),
            ..CoreConfig::default()
        };
        let (mut slowpath, _events_tx, commands_rx) = slowpath_sqn(&dir, true, cfg, 2, true);
        let path = super::super::store::shard_store_path(&dir.join("sqn-state"), 0);
        let (store, _) = RegistrationStore::open(&path, SystemTime::now()).unwrap();
        slowpath.registrations = Some(store);
        let store_len = || std::fs::metadata(&path).unwrap().len();
        let len0 = store_len();
        // The third waits: its 401 and the removal of the set it replaces are held.
        for (i, waits) in [(0, false), (1, false), (2, true)] {
            std::thread::sleep(Duration::from_millis(2));
            let mut batch = Vec::new();
            slowpath.on_event(register_branch(&format!("z9hG4bK-blk{i}")), &mut batch);
            assert_eq!(slowpath.core.held() > 0, waits, "REGISTER {i}");
            slowpath.release(&mut { batch });
            let cmds: Vec<WorkerCommand> = commands_rx.try_iter().collect();
            assert!(cmds.iter().any(is_401), "REGISTER {i}: {cmds:?}");
            slowpath.publish_counters();
            let c = &slowpath.counters;
            let commits = c.registration_store_commits.load(Ordering::Relaxed);
            assert_eq!(commits, u64::from(waits), "REGISTER {i}");
            assert_eq!(c.sqn_commits.load(Ordering::Relaxed), u64::from(waits));
            if !waits {
                assert_eq!(store_len(), len0, "REGISTER {i}: nothing appended");
            }
        }
        let journal = std::fs::read_to_string(dir.join("sqn-state.journal")).unwrap();
        assert_eq!(journal, "", "no journal line either");
        // The third SEQ passed the bound reserved at start (SEQ 2): a block of 2 from it.
        drop(slowpath);
        let (_, state) =
            super::super::journal::open_shards(&dir.join("sqn-state"), 1, |_| 0).unwrap();
        assert_eq!(state.get("alice@open-ims.test"), Some(&((4 << 5) | 31)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 14: the journal is checkpointed while running once a commit leaves it beyond its
    /// bound (here 64 bytes: after every second SQN line), so it stays small however many challenges are
    /// made; the count is published, and the state on disk holds the last SQN handed out.
    #[test]
    fn the_journal_is_checkpointed_while_running() {
        let dir = tmp("checkpoint");
        // A vector is reused for at most a millisecond: each REGISTER below spends an SQN.
        let cfg = CoreConfig {
            challenge_timeout: Duration::from_millis(1),
            ..CoreConfig::default()
        };
        // A block of one SEQ: a record per challenge, as before SQN blocks.
        let (mut slowpath, _events_tx, commands_rx) = slowpath_sqn(&dir, true, cfg, 1, false);
        slowpath.journal = slowpath.journal.take().map(|j| j.with_max_bytes(64));
        let journal = dir.join("sqn-state.journal");
        for i in 0..10 {
            std::thread::sleep(Duration::from_millis(2));
            let mut batch = Vec::new();
            slowpath.on_event(register_branch(&format!("z9hG4bK-cp{i}")), &mut batch);
            slowpath.release(&mut { batch });
            assert!(commands_rx.try_iter().any(|c| is_401(&c)), "REGISTER {i}");
            let size = std::fs::metadata(&journal).unwrap().len();
            assert!(size < 64, "{size} bytes after {i}");
        }
        slowpath.publish_counters();
        let c = &slowpath.counters;
        assert_eq!(c.sqn_checkpoints.load(Ordering::Relaxed), 5);
        assert_eq!(c.sqn_journal_bytes.load(Ordering::Relaxed), 0);
        drop(slowpath);
        // Ten SQNs: the bound SEQ 10 (written with the last IND), whether in the snapshot or
        // the journal.
        let (_, state) = SqnJournal::open(&dir.join("sqn-state")).unwrap();
        assert_eq!(state.get("alice@open-ims.test"), Some(&((10 << 5) | 31)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// In the running loop the 401 reaches the worker's queue only once its SQN is in the
    /// journal (that the core holds it until `on_durable` is checked in
    /// `slowpath/tests/core_durability.rs`).
    #[test]
    fn loop_commits_before_dispatch() {
        let dir = tmp("loop-commit");
        let (slowpath, events_tx, commands_rx) = slowpath_in(&dir, false);
        let stop = slowpath.stop.clone();
        let thread = std::thread::spawn(move || slowpath.run());
        events_tx.send(register()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let journal = loop {
            let cmd = commands_rx
                .recv_deadline(deadline)
                .expect("no 401 from the slowpath");
            if is_401(&cmd) {
                break std::fs::read_to_string(dir.join("sqn-state.journal")).unwrap();
            }
        };
        stop.store(true, Ordering::Release);
        let exit = thread.join().unwrap();
        assert!(exit.persist_error.is_none(), "{:?}", exit.persist_error);
        // The bound of the block from SEQ 1: SEQ 1,024 with the last of the default 5 IND
        // bits' INDs (TS 33.102 C.3.2).
        assert_eq!(journal, "00000000801f alice@open-ims.test\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The gauges' walk of every registration keeps to its share of the thread however many
    /// registrations there are: a short walk keeps the 100 ms period, a long one stretches it
    /// so the walk is at most 1/50 of the time between walks.
    #[test]
    fn the_gauges_walk_takes_a_bounded_share_of_the_thread() {
        let t = Instant::now();
        assert_eq!(
            next_gauge_after(t, Duration::from_micros(10)),
            t + GAUGE_PERIOD
        );
        assert_eq!(next_gauge_after(t, Duration::ZERO), t + GAUGE_PERIOD);
        for ms in [3, 30, 300] {
            let took = Duration::from_millis(ms);
            let period = next_gauge_after(t, took) - t;
            assert!(period >= GAUGE_PERIOD, "{ms} ms: {period:?}");
            assert!(took * GAUGE_COST_RATIO <= period, "{ms} ms: {period:?}");
        }
        assert_eq!(
            next_gauge_after(t, Duration::from_millis(30)) - t,
            Duration::from_millis(1500)
        );
    }
}
