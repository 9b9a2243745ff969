//! A value made ahead of need by a helper thread, off the worker's core (DPDK style: a
//! poll-mode worker takes no page faults for memory it could have been handed ready). Used
//! for the worker's SA slab segments: 2 MiB that the kernel zeroes on first touch, which the
//! worker would otherwise pay inside the install of the SA set that opens a segment.
//!
//! The helper thread is started when a spare is wanted, makes one value and ends (one per
//! 2 MiB segment: rare). It leaves the cores of the thread that started it, if the process
//! has others, so a pinned worker's core does not run it. The CPU time the helpers spent is
//! summed in [`helper_cpu_ns`] (benchmarks report it beside the worker's), and code running
//! on one can tell ([`on_helper_thread`]: the memory benchmark counts their allocations as
//! the gateway's).

#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

/// Thread CPU time spent by all helper threads so far, in nanoseconds.
static HELPER_CPU_NS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_HELPER: Cell<bool> = const { Cell::new(false) };
}

/// True on a [`Spare`]'s helper thread (allocates nothing: usable from a global allocator).
pub fn on_helper_thread() -> bool {
    ON_HELPER.with(Cell::get)
}

/// Thread CPU time spent by the helper threads of every [`Spare`] so far (nanoseconds): the
/// work moved off the workers, not removed.
pub fn helper_cpu_ns() -> u64 {
    HELPER_CPU_NS.load(Ordering::Relaxed)
}

/// Starts a helper thread that makes one value with the function given.
type Spawner<S> = fn(fn() -> S) -> Option<JoinHandle<S>>;

/// How a [`Spare`] makes its value, and how it starts a helper thread that makes it.
struct Maker<S> {
    make: fn() -> S,
    spawn: Spawner<S>,
}

/// One value of type `S` being made, or ready, on a helper thread; or nothing if disabled
/// (the default: [`Spare::take`] then always says `None` and the caller makes its own).
pub struct Spare<S> {
    maker: Option<Maker<S>>,
    pending: Option<JoinHandle<S>>,
    /// Values handed out by [`Spare::take`] so far.
    taken: u64,
}

impl<S> Default for Spare<S> {
    fn default() -> Self {
        Spare {
            maker: None,
            pending: None,
            taken: 0,
        }
    }
}

impl<S> core::fmt::Debug for Spare<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Spare")
            .field("enabled", &self.maker.is_some())
            .field("pending", &self.pending.is_some())
            .finish()
    }
}

impl<S: Send + 'static> Spare<S> {
    /// A spare made by `make` on a helper thread, the first one started now.
    pub fn new(make: fn() -> S) -> Self {
        Spare {
            pending: spawn(make),
            maker: Some(Maker {
                make,
                spawn: spawn::<S>,
            }),
            taken: 0,
        }
    }
}

impl<S> Spare<S> {
    /// The spare if its helper has finished it (never waits); then the next one is started.
    /// `None` if it is not ready yet (it stays pending for the next call), if the helper
    /// failed, or if this spare is disabled.
    pub fn take(&mut self) -> Option<S> {
        let maker = self.maker.as_ref()?;
        let ready = match self.pending.take() {
            Some(h) if h.is_finished() => h.join().ok(),
            still_running => {
                self.pending = still_running;
                None
            }
        };
        if self.pending.is_none() {
            self.pending = (maker.spawn)(maker.make);
        }
        self.taken += u64::from(ready.is_some());
        ready
    }

    /// True if the spare is made and waiting to be taken.
    pub fn is_ready(&self) -> bool {
        self.pending.as_ref().is_some_and(JoinHandle::is_finished)
    }

    /// How many spares [`Spare::take`] handed out so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// True if a spare is being made or ready.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }
}

/// Starts a helper thread that makes one `S` (`None` if no thread could be started).
fn spawn<S: Send + 'static>(make: fn() -> S) -> Option<JoinHandle<S>> {
    std::thread::Builder::new()
        .name("akg-spare".into())
        .spawn(move || {
            ON_HELPER.with(|h| h.set(true));
            leave_spawner_cores();
            let t0 = thread_cpu_ns();
            let s = make();
            HELPER_CPU_NS.fetch_add(thread_cpu_ns().saturating_sub(t0), Ordering::Relaxed);
            s
        })
        .ok()
}

/// This thread's CPU time in nanoseconds (0 if the clock cannot be read).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Moves the calling (helper) thread off the cores it inherited from its spawner (a worker
/// pinned to its core) onto the process's other cores, those of its main thread, if any.
#[cfg(target_os = "linux")]
fn leave_spawner_cores() {
    let size = core::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: all-zero bytes are an empty `cpu_set_t` (a plain bit array).
    let mut inherited: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut process: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    let mut others: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: both calls write at most `size` bytes into the sets passed, which are that
    // large; pid 0 is this thread, `getpid()` the main thread of the process.
    let ok = unsafe {
        libc::sched_getaffinity(0, size, &mut inherited) == 0
            && libc::sched_getaffinity(libc::getpid(), size, &mut process) == 0
    };
    if !ok {
        return;
    }
    let mut any = false;
    for cpu in 0..(8 * size) {
        // SAFETY: `cpu` is below the set's bit count (`8 * size`), so these only read or
        // write bits inside the sets.
        unsafe {
            if libc::CPU_ISSET(cpu, &process) && !libc::CPU_ISSET(cpu, &inherited) {
                libc::CPU_SET(cpu, &mut others);
                any = true;
            }
        }
    }
    if any {
        // SAFETY: `others` is a valid set of `size` bytes; pid 0 is this thread. A failure
        // leaves the thread where it was, which is only slower for the worker.
        unsafe { libc::sched_setaffinity(0, size, &others) };
    }
}

/// Elsewhere the helper stays where it was started.
#[cfg(not(target_os = "linux"))]
fn leave_spawner_cores() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn seven() -> u32 {
        7
    }

    #[test]
    fn a_disabled_spare_never_has_a_value() {
        let mut s: Spare<u32> = Spare::default();
        assert_eq!(s.take(), None);
        assert!(!s.is_pending());
    }

    #[test]
    fn a_spare_is_handed_once_ready_and_the_next_one_started() {
        let mut s = Spare::new(seven);
        assert!(s.is_pending());
        let mut got = None;
        for _ in 0..10_000 {
            got = s.take();
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!((got, s.taken()), (Some(7), 1));
        assert!(!on_helper_thread());
        assert_eq!(
            spawn(on_helper_thread).map(|h| h.join().ok()),
            Some(Some(true))
        );
        // The next one was started when this one was taken.
        assert!(s.is_pending());
    }
}
