//! Waking an idle worker when the slowpath queues a command for it, so a backing-off worker
//! can sleep when idle without adding its sleep to every command's latency.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

/// One worker's sleep flag and thread handle, shared with the slowpath.
#[derive(Debug, Default)]
pub(super) struct WorkerWake {
    sleeping: AtomicBool,
    /// Set by the first [`FrameBell::ring`]: whoever queues this worker's frames announces
    /// them, so an idle worker may park without first yielding for frames it cannot hear.
    frames_rung: AtomicBool,
    thread: OnceLock<Thread>,
    /// Calls of [`WorkerWake::wake`] (tests count the slowpath's wake-ups).
    #[cfg(test)]
    wakes: std::sync::atomic::AtomicU32,
}

impl WorkerWake {
    /// Whether frames for this worker are announced by a [`FrameBell`] (it has rung once).
    pub fn frames_rung(&self) -> bool {
        self.frames_rung.load(Ordering::Relaxed)
    }

    /// Whether the worker is parked or about to park (tests wait for it).
    #[cfg(test)]
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }

    /// Calls of [`WorkerWake::wake`] so far.
    #[cfg(test)]
    pub fn wakes(&self) -> u32 {
        self.wakes.load(Ordering::Relaxed)
    }

    /// Called by the worker thread once, before it first sleeps.
    pub fn register_current(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Parks the calling worker for at most `max`, unless `pending()` (commands queued)
    /// says there is work already. A [`WorkerWake::wake`] ends the park early. Returns
    /// whether it parked.
    pub fn sleep(&self, max: Duration, pending: impl Fn() -> bool) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake`: either the slowpath sees `sleeping` and unparks,
        // or this check sees its command (a store-load pair on each side, Dekker style).
        // Should both miss, the park still ends after `max`.
        fence(Ordering::SeqCst);
        let park = !pending();
        if park {
            std::thread::park_timeout(max);
        }
        self.sleeping.store(false, Ordering::Relaxed);
        park
    }

    /// Called by the slowpath after queueing a command: unparks the worker if it sleeps
    /// (an unpark before the park makes the park return at once).
    pub fn wake(&self) {
        #[cfg(test)]
        self.wakes.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// Wakes every worker of a daemon after frames were queued on its port from outside the
/// process's sight: the rx interrupt of the in-memory pair, rung by whoever holds its far
/// end (akabench's simulated UEs, tests). A parked backing-off worker then polls at once
/// instead of after its `max_sleep`; one that is not parked costs the caller a fence and a
/// load. The NIC backends have no such bell, so their frames wait for the next poll.
#[derive(Clone, Debug, Default)]
pub struct FrameBell {
    workers: Vec<std::sync::Arc<WorkerWake>>,
}

impl FrameBell {
    pub(super) fn new(workers: Vec<std::sync::Arc<WorkerWake>>) -> Self {
        FrameBell { workers }
    }

    /// Unparks the workers that sleep. The first ring also tells each worker that its
    /// frames are announced from now on, so it parks as soon as its spin ends.
    pub fn ring(&self) {
        for w in &self.workers {
            if !w.frames_rung.load(Ordering::Relaxed) {
                w.frames_rung.store(true, Ordering::Relaxed);
            }
            w.wake();
        }
    }

    /// Unparks the workers that sleep, without marking their frames as announced: after
    /// the stop flag is set, so a worker parked until its next timer leaves at once.
    pub(super) fn wake_all(&self) {
        for w in &self.workers {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// A worker parked for up to 10 s is back as soon as a command is announced, and a
    /// pending command keeps it from parking at all.
    #[test]
    fn wake_ends_a_long_sleep_and_pending_work_skips_it() {
        let w = Arc::new(WorkerWake::default());
        let (tx, rx) = crossbeam_channel::bounded::<u32>(4);
        let worker = {
            let w = w.clone();
            std::thread::spawn(move || {
                w.register_current();
                let t = Instant::now();
                while rx.is_empty() {
                    w.sleep(Duration::from_secs(10), || !rx.is_empty());
                }
                let first = t.elapsed();
                // A command already queued: no park at all.
                let t = Instant::now();
                w.sleep(Duration::from_secs(10), || !rx.is_empty());
                (first, t.elapsed(), rx.recv().unwrap())
            })
        };
        // Let the worker park, then hand it a command.
        while !w.sleeping.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        tx.send(7).unwrap();
        w.wake();
        let (first, second, cmd) = worker.join().unwrap();
        assert_eq!(cmd, 7);
        assert!(
            first < Duration::from_secs(5),
            "woken, not timed out: {first:?}"
        );
        assert!(second < Duration::from_secs(5), "did not park: {second:?}");
    }

    /// No lost wake-up: a command handed over while the worker is on its way into a park
    /// (its flag set, its queue just checked) still ends the park. The two threads play
    /// ping-pong 5,000 times, each command queued and announced at a random point of the
    /// worker's spin, check and park; a missed wake-up would hold the worker for the whole
    /// 10 s park, beyond the bound.
    #[test]
    fn a_hand_off_racing_the_park_is_never_lost() {
        const ROUNDS: u32 = 5_000;
        let w = Arc::new(WorkerWake::default());
        let (tx, rx) = crossbeam_channel::bounded::<u32>(1);
        let (ack_tx, ack_rx) = crossbeam_channel::bounded::<u32>(1);
        let worker = {
            let w = w.clone();
            std::thread::spawn(move || {
                w.register_current();
                let mut parks = 0u32;
                for want in 0..ROUNDS {
                    let cmd = loop {
                        if let Ok(c) = rx.try_recv() {
                            break c;
                        }
                        let t = Instant::now();
                        parks += u32::from(w.sleep(Duration::from_secs(10), || !rx.is_empty()));
                        assert!(
                            t.elapsed() < Duration::from_secs(5),
                            "round {want}: the park ran to its timeout (a lost wake-up)"
                        );
                    };
                    assert_eq!(cmd, want);
                    ack_tx.send(cmd).unwrap();
                }
                parks
            })
        };
        let started = Instant::now();
        let mut spin = 0u32;
        for i in 0..ROUNDS {
            // Vary where in the worker's way to its park the command lands.
            spin = spin.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            for _ in 0..(spin >> 20) % 2_000 {
                std::hint::spin_loop();
            }
            tx.send(i).unwrap();
            w.wake();
            assert_eq!(ack_rx.recv().unwrap(), i);
        }
        let parks = worker.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
        // The race was run: some hand-offs found the worker parked.
        assert!(parks > 0, "the worker never parked");
    }

    /// A ring of the frame bell ends a worker's long park (the frames it announces are not
    /// commands: `pending()` stays false throughout).
    #[test]
    fn the_frame_bell_ends_a_park() {
        let w = Arc::new(WorkerWake::default());
        let bell = FrameBell::new(vec![w.clone()]);
        let worker = {
            let w = w.clone();
            std::thread::spawn(move || {
                w.register_current();
                let t = Instant::now();
                w.sleep(Duration::from_secs(10), || false);
                t.elapsed()
            })
        };
        while !w.sleeping.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        bell.ring();
        let slept = worker.join().unwrap();
        assert!(
            slept < Duration::from_secs(5),
            "rung, not timed out: {slept:?}"
        );
    }
}
