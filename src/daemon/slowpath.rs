//! The slowpath thread: waits for worker events up to the core's next deadline, runs the
//! sans-IO [`Core`], and hands each resulting command to the worker that owns the UE.
//! On stop it handles the events still queued, closes the command queues and makes the
//! HSS's SQN state durable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::ipc::{WorkerCommand, WorkerEvent};
use akagate_slowpath::hss::{HssError, SqnJournal};
use akagate_slowpath::Core;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use super::stats::{inc, SlowpathCounters, StatsSource};
use super::steer::worker_for;

/// Longest sleep without looking at the stop flag, the stats clock and the core's timers.
const TICK: Duration = Duration::from_millis(100);
/// Shortest sleep after a timer run, so a deadline the core does not advance cannot spin.
const MIN_TIMER_WAIT: Duration = Duration::from_millis(1);
/// Events handled per wake-up before timers and the stop flag are looked at again.
const EVENT_BATCH: usize = 256;
/// How long a command may wait for room in a worker's queue before it is dropped; workers
/// never block, so a full queue for this long means the worker is overloaded.
const COMMAND_SEND_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the registration gauge is refreshed (it walks all registrations).
const GAUGE_PERIOD: Duration = Duration::from_millis(100);

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
    pub counters: Arc<SlowpathCounters>,
    pub stop: Arc<AtomicBool>,
    pub sqn_state: Option<PathBuf>,
    pub stats_interval: Option<Duration>,
    pub stats: StatsSource,
}

impl Slowpath {
    /// The thread body.
    pub fn run(mut self) -> SlowpathExit {
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
            match self.events.recv_deadline(wake) {
                Ok(ev) => {
                    self.on_event(ev);
                    for _ in 1..EVENT_BATCH {
                        match self.events.try_recv() {
                            Ok(ev) => self.on_event(ev),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    log::error!("slowpath: every worker is gone; stopping");
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
                self.dispatch(actions);
            }
            if now >= next_gauge {
                self.publish_gauges();
                next_gauge = now + GAUGE_PERIOD;
            }
            if let (Some(t), Some(i)) = (next_log, self.stats_interval) {
                if now >= t {
                    log::info!("stats: {}", self.stats.snapshot());
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
        for _ in 0..queued {
            match self.events.try_recv() {
                Ok(ev) => {
                    self.on_event(ev);
                    drained += 1;
                }
                Err(_) => break,
            }
        }
        self.counters
            .drained_at_shutdown
            .store(drained, Ordering::Relaxed);
        self.publish_gauges();
        let Slowpath {
            core,
            commands,
            sqn_state,
            ..
        } = self;
        // Closing the queues tells nobody anything (workers stop on their own flag), but no
        // command can be added behind the drained ones.
        drop(commands);
        // Dropping the core closes the HSS's journal; every SQN handed out is already in it.
        drop(core);
        let mut exit = SlowpathExit {
            sqn_state: None,
            persist_error: None,
        };
        if let Some(path) = sqn_state {
            // Reopening compacts the journal into the snapshot file (atomic rename + fsync),
            // so the state survives as one file (TS 33.102 6.3: an SQN is never reused).
            match SqnJournal::open(&path) {
                Ok(_) => exit.sqn_state = Some(path),
                Err(e) => exit.persist_error = Some((path, e)),
            }
        }
        exit
    }

    fn on_event(&mut self, ev: WorkerEvent) {
        inc(&self.counters.events);
        if matches!(ev, WorkerEvent::Sip(_)) {
            inc(&self.counters.sip_messages);
        }
        let actions = self.core.handle(ev, Instant::now());
        self.dispatch(actions);
    }

    /// Sends each command, in order, to the worker owning its UE (one UE, one worker), so
    /// an `InstallSaSet` always reaches the worker before the 401 that announces the SAs.
    fn dispatch(&mut self, actions: Vec<WorkerCommand>) {
        let n = self.commands.len();
        for cmd in actions {
            let ue = match &cmd {
                WorkerCommand::Send { flow, .. } | WorkerCommand::Close(flow) => flow.ue,
                WorkerCommand::InstallSaSet(set) => set.ue,
                WorkerCommand::RemoveSaSet { ue, .. } => *ue,
            };
            let counter = match &cmd {
                WorkerCommand::InstallSaSet(_) => Some(&self.counters.sa_sets_installed),
                WorkerCommand::RemoveSaSet { .. } => Some(&self.counters.sa_sets_removed),
                _ => None,
            };
            let Some(queue) = self.commands.get(worker_for(ue, n)) else {
                inc(&self.counters.commands_dropped);
                continue;
            };
            match queue.send_timeout(cmd, COMMAND_SEND_TIMEOUT) {
                Ok(()) => {
                    inc(&self.counters.commands);
                    if let Some(c) = counter {
                        inc(c);
                    }
                }
                Err(SendTimeoutError::Timeout(_) | SendTimeoutError::Disconnected(_)) => {
                    inc(&self.counters.commands_dropped);
                    log::warn!(
                        "slowpath: command for UE {ue} dropped, its worker's queue is full or gone"
                    );
                }
            }
        }
    }

    fn publish_gauges(&self) {
        let c = &self.counters;
        c.registrations
            .store(self.core.registered() as u64, Ordering::Relaxed);
        c.subscribers
            .store(self.core.hss().len() as u64, Ordering::Relaxed);
    }
}
