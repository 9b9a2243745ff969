//! One worker thread: pins itself, builds the fast-path [`Worker`] over its port queue, polls it
//! until told to stop, then drains its command queue so the slowpath's last answers go out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::ipc::{WorkerCommand, WorkerEvent};
use akagate_fastpath::worker::{InboundTable, Worker, WorkerConfig, WorkerCounters};
use akagate_sys::{IoError, PortQueue};
use crossbeam_channel::{Receiver, Sender};

use super::IdlePolicy;

/// After `stop`, how long the worker may keep running to empty its command queue.
const DRAIN_LIMIT: Duration = Duration::from_millis(250);
/// After `stop`, the worker exits once it has been idle (no commands, no frames, no due
/// stacks) this long: a few timer ticks, so stacks scheduled by the last commands are polled.
const DRAIN_IDLE: Duration = Duration::from_millis(5);
/// Idle iterations spent spinning, then yielding, before a backing-off worker sleeps.
const SPIN_ITERATIONS: u32 = 64;
const YIELD_ITERATIONS: u32 = 256;

/// What a worker thread is started with.
pub(super) struct WorkerThread<Q> {
    pub cfg: WorkerConfig,
    pub queue: Q,
    pub table: Arc<InboundTable>,
    pub events: Sender<WorkerEvent>,
    pub commands: Receiver<WorkerCommand>,
    pub core: Option<usize>,
    pub idle: IdlePolicy,
    pub stop: Arc<AtomicBool>,
}

/// Waits between idle iterations according to the [`IdlePolicy`].
struct Backoff {
    policy: IdlePolicy,
    idle: u32,
}

impl Backoff {
    fn after(&mut self, work: usize) {
        if work > 0 {
            self.idle = 0;
            return;
        }
        self.idle = self.idle.saturating_add(1);
        match self.policy {
            IdlePolicy::BusyPoll => std::hint::spin_loop(),
            IdlePolicy::Backoff { max_sleep } => {
                if self.idle < SPIN_ITERATIONS {
                    std::hint::spin_loop();
                } else if self.idle < YIELD_ITERATIONS {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(max_sleep);
                }
            }
        }
    }
}

impl<Q: PortQueue + 'static> WorkerThread<Q> {
    /// The thread body. `ready` gets the worker's counters once it runs, or the pinning error.
    pub fn run(self, ready: Sender<Result<Arc<WorkerCounters>, IoError>>) {
        let WorkerThread {
            cfg,
            queue,
            table,
            events,
            commands,
            core,
            idle,
            stop,
        } = self;
        let id = cfg.id;
        if let Some(core) = core {
            if let Err(e) = akagate_sys::affinity::pin_current_thread(core) {
                let _ = ready.send(Err(e));
                return;
            }
        }
        let start = Instant::now();
        let now = || {
            smoltcp::time::Instant::from_micros(
                i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX),
            )
        };
        // A second handle on the command queue, only to see whether it is empty when draining.
        let pending = commands.clone();
        let mut worker = Worker::new(cfg, queue, table, events, commands, now());
        if ready.send(Ok(worker.counters().clone())).is_err() {
            return;
        }
        drop(ready);
        log::debug!("worker {id} running (core {core:?})");
        let mut backoff = Backoff {
            policy: idle,
            idle: 0,
        };
        while !stop.load(Ordering::Acquire) {
            let work = worker.run_once(now());
            backoff.after(work);
        }
        // Drain: the slowpath has stopped and dropped its command senders; execute what it
        // sent and let the stacks transmit it.
        let limit = Instant::now() + DRAIN_LIMIT;
        let mut idle_since = Instant::now();
        loop {
            let work = worker.run_once(now());
            let t = Instant::now();
            if work > 0 || !pending.is_empty() {
                idle_since = t;
            } else if t.duration_since(idle_since) >= DRAIN_IDLE {
                break;
            }
            if t >= limit {
                log::warn!(
                    "worker {id}: stopped with {} command(s) unexecuted",
                    pending.len()
                );
                break;
            }
            std::thread::yield_now();
        }
        log::debug!("worker {id} stopped with {} UE stack(s)", worker.ue_count());
    }
}
