//! Waking an idle worker when the slowpath queues a command for it, so a backing-off worker
//! can sleep when idle without adding its sleep to every command's latency.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

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

/// The slowpath's side of the worker→slowpath event queue: an `idle` flag the slowpath
/// sets before it parks, which whoever queued an event checks and rings ([`SlowpathBell::ring`]),
/// so a slowpath with nothing to do parks at once instead of first spinning and yielding
/// in crossbeam's backoff (about five `sched_yield`s a block). [`WorkerWake`] the other
/// way round.
#[derive(Debug)]
pub(super) struct SlowpathBell {
    idle: AtomicBool,
    /// Whether every sender of the slowpath's events rings: only then may it park without
    /// crossbeam's wait (proxy mode's core link does not ring).
    announced: bool,
    thread: OnceLock<Thread>,
    /// Calls of [`SlowpathBell::ring`] that unparked (tests count them).
    #[cfg(test)]
    unparks: std::sync::atomic::AtomicU32,
}

impl SlowpathBell {
    /// A bell; `announced` says that every sender of the events rings it.
    pub fn new(announced: bool) -> Self {
        SlowpathBell {
            idle: AtomicBool::new(false),
            announced,
            thread: OnceLock::new(),
            #[cfg(test)]
            unparks: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Called by a sender after it queued events: unparks the slowpath if it is idle (at
    /// most once a park: the first ringer clears the flag).
    #[inline]
    pub fn ring(&self) {
        // Pairs with the fence in `recv_deadline`: either the slowpath's check of its queue
        // sees the event queued before this fence, or this load sees `idle`.
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::Relaxed) && self.idle.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                #[cfg(test)]
                self.unparks.fetch_add(1, Ordering::Relaxed);
                t.unpark();
            }
        }
    }

    /// The next event, waiting for it until `deadline`. Unannounced, crossbeam's own wait;
    /// announced, the queue is checked, then the `idle` flag set, the queue checked again
    /// and only then the thread parked (a ring after the first check is never lost: the
    /// ringer either sees the flag and unparks, or queued before the second check).
    pub fn recv_deadline<T>(
        &self,
        events: &Receiver<T>,
        deadline: Instant,
    ) -> Result<T, RecvTimeoutError> {
        if !self.announced {
            return events.recv_deadline(deadline);
        }
        let _ = self.thread.get_or_init(std::thread::current);
        loop {
            match events.try_recv() {
                Ok(ev) => return Ok(ev),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            self.idle.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let again = events.try_recv();
            if !matches!(again, Err(TryRecvError::Empty)) {
                self.idle.store(false, Ordering::Relaxed);
                return again.map_err(|_| RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                self.idle.store(false, Ordering::Relaxed);
                return Err(RecvTimeoutError::Timeout);
            }
            std::thread::park_timeout(deadline - now);
            self.idle.store(false, Ordering::Relaxed);
        }
    }
}

/// Every slowpath shard's bell, rung by a worker after a turn that did work (it may have
/// queued events for any shard).
#[derive(Clone, Debug, Default)]
pub struct SlowpathBells {
    bells: Vec<std::sync::Arc<SlowpathBell>>,
}

impl SlowpathBells {
    pub(super) fn new(bells: Vec<std::sync::Arc<SlowpathBell>>) -> Self {
        SlowpathBells { bells }
    }

    /// Unparks the shards that are idle (a fence and a load each for those that are not).
    #[inline]
    pub fn ring(&self) {
        for b in &self.bells {
            b.ring();
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

    /// An idle slowpath parked for up to 10 s takes an event as soon as it is rung, with one
    /// unpark; an event already queued is taken without parking; no ring, no unpark.
    #[test]
    fn a_rung_slowpath_takes_its_event_at_once() {
        let bell = Arc::new(SlowpathBell::new(true));
        let (tx, rx) = crossbeam_channel::bounded::<u32>(4);
        tx.send(1).unwrap();
        let t = Instant::now();
        assert_eq!(bell.recv_deadline(&rx, t + Duration::from_secs(10)), Ok(1));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(bell.unparks.load(Ordering::Relaxed), 0);
        // A bell is the one slowpath thread's: another thread waits on a new one.
        let bell = Arc::new(SlowpathBell::new(true));
        let slowpath = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let got = bell.recv_deadline(&rx, t + Duration::from_secs(10));
                (got, t.elapsed())
            })
        };
        while !bell.idle.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        tx.send(2).unwrap();
        bell.ring();
        bell.ring();
        let (got, waited) = slowpath.join().unwrap();
        assert_eq!(got, Ok(2));
        assert!(
            waited < Duration::from_secs(5),
            "rung, not timed out: {waited:?}"
        );
        assert_eq!(bell.unparks.load(Ordering::Relaxed), 1, "one unpark a park");
    }

    /// Unrung, an announced bell's wait ends at its deadline (it parks, it does not poll),
    /// and a closed, empty queue ends it at once.
    #[test]
    fn an_unrung_wait_ends_at_its_deadline_and_a_closed_queue_at_once() {
        let bell = SlowpathBell::new(true);
        let (tx, rx) = crossbeam_channel::bounded::<u32>(4);
        let t = Instant::now();
        let got = bell.recv_deadline(&rx, t + Duration::from_millis(30));
        assert_eq!(got, Err(RecvTimeoutError::Timeout));
        assert!(t.elapsed() >= Duration::from_millis(30));
        drop(tx);
        let t = Instant::now();
        let got = bell.recv_deadline(&rx, t + Duration::from_secs(10));
        assert_eq!(got, Err(RecvTimeoutError::Disconnected));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// No wake-up is lost: two senders queue 20,000 events each, ringing after each (some
    /// after a pause, so the slowpath parks between them); the slowpath waits for each with
    /// a 10 s deadline. A lost ring would leave an event queued while it parks to the
    /// deadline: the whole run is bounded well below one.
    #[test]
    fn no_ring_is_lost() {
        const EACH: u32 = 20_000;
        let bell = Arc::new(SlowpathBell::new(true));
        let (tx, rx) = crossbeam_channel::bounded::<u32>(64);
        let senders: Vec<_> = (0..2)
            .map(|k| {
                let (bell, tx) = (bell.clone(), tx.clone());
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        tx.send(i).unwrap();
                        bell.ring();
                        if (i + k) % 97 == 0 {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                    // The last sender's drop closes the queue: rung too, as it says so.
                    drop(tx);
                    bell.ring();
                })
            })
            .collect();
        drop(tx);
        let t = Instant::now();
        let mut got = 0;
        loop {
            match bell.recv_deadline(&rx, Instant::now() + Duration::from_secs(10)) {
                Ok(_) => got += 1,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("a ring was lost after {got} events"),
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(got, 2 * EACH);
        assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
        assert!(
            bell.unparks.load(Ordering::Relaxed) > 0,
            "it parked between events"
        );
    }

    /// Unannounced (a sender that does not ring, such as proxy mode's core link), the wait
    /// is crossbeam's: an event sent without a ring is taken at once.
    #[test]
    fn an_unannounced_bell_needs_no_ring() {
        let bell = SlowpathBell::new(false);
        let (tx, rx) = crossbeam_channel::bounded::<u32>(4);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(5).unwrap();
        });
        let t = Instant::now();
        assert_eq!(bell.recv_deadline(&rx, t + Duration::from_secs(10)), Ok(5));
        assert!(t.elapsed() < Duration::from_secs(5));
        sender.join().unwrap();
    }
}
