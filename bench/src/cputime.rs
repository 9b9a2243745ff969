//! CPU time of one thread of this process, by thread name, from Linux procfs: the busy time
//! of a thread, e.g. a gateway worker during a pktgen blast (its idle loop sleeps, so CPU
//! time ~ work).

use std::path::{Path, PathBuf};

/// The `/proc/self/task/<tid>` directory of the first thread called `name`.
pub fn find_thread(name: &str) -> Option<PathBuf> {
    let dir = std::fs::read_dir("/proc/self/task").ok()?;
    dir.flatten()
        .map(|e| e.path())
        .find(|p| std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim_end() == name))
}

/// Nanoseconds the thread at `task` has run on a CPU: `schedstat`'s first field, or
/// `stat`'s utime + stime (USER_HZ = 100 ticks per second on Linux) if schedstat is absent.
pub fn thread_cpu_ns(task: &Path) -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string(task.join("schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Some(ns);
        }
    }
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    // Fields after the parenthesised comm; utime and stime are fields 14 and 15 (1-based).
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): cheap enough to read
/// around each step of the in-process gateway (the gateway's `StepCpu`).
pub fn current_thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id needs nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// This process's threads (their `/proc/self/task/<tid>` directories) whose name starts
/// with `prefix`.
pub fn threads_with_prefix(prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    std::fs::read_to_string(p.join("comm"))
                        .is_ok_and(|c| c.trim_end().starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The CPU clocks of an in-process daemon's threads, read together at the two ends of a
/// run's phase so that a per-registration figure leaves out start-up and idle time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonCpu {
    /// Per slowpath thread (shard order), nanoseconds on a CPU.
    pub slowpath_ns: Vec<u64>,
    /// All worker threads together, nanoseconds on a CPU.
    pub worker_ns: u64,
    /// The workers' busy-iteration clock ([`akagate::daemon::busy_iteration_ns`]).
    pub busy_ns: u64,
    /// All worker threads together: what took them off their CPU and what they faulted in.
    pub worker_events: ThreadEvents,
    /// The workers' idle policy at work: idle turns, yields, parks
    /// ([`akagate::daemon::idle_counts`]).
    pub idle: akagate::daemon::IdleCounts,
}

/// Exact per-thread counts the kernel keeps (`/proc/<tid>/status` and `stat`), to tell a
/// thread's own waits from preemption by its neighbours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadEvents {
    /// Switches away because the thread blocked, slept or yielded (`voluntary_ctxt_switches`).
    pub voluntary_switches: u64,
    /// Switches away because the scheduler preempted it (`nonvoluntary_ctxt_switches`).
    pub preemptions: u64,
    /// Minor page faults (`stat` field 10).
    pub minor_faults: u64,
}

impl ThreadEvents {
    /// The counts of the thread at `task` (a `/proc/.../task/<tid>` directory); zeros for
    /// what cannot be read.
    pub fn read(task: &Path) -> ThreadEvents {
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        // Fields after the parenthesised comm; minflt is field 10 (1-based), the 8th after it.
        let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
        let minor_faults = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(7)?.parse().ok())
            .unwrap_or(0);
        ThreadEvents {
            voluntary_switches: field("voluntary_ctxt_switches:"),
            preemptions: field("nonvoluntary_ctxt_switches:"),
            minor_faults,
        }
    }

    /// `self - earlier`, per field, saturating.
    pub fn since(&self, earlier: &ThreadEvents) -> ThreadEvents {
        ThreadEvents {
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            preemptions: self.preemptions.saturating_sub(earlier.preemptions),
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
        }
    }

    fn add(self, o: ThreadEvents) -> ThreadEvents {
        ThreadEvents {
            voluntary_switches: self.voluntary_switches + o.voluntary_switches,
            preemptions: self.preemptions + o.preemptions,
            minor_faults: self.minor_faults + o.minor_faults,
        }
    }
}

impl DaemonCpu {
    /// `self - earlier`, per field (saturating: a thread that was not found reads 0).
    pub fn since(&self, earlier: &DaemonCpu) -> DaemonCpu {
        DaemonCpu {
            slowpath_ns: self
                .slowpath_ns
                .iter()
                .zip(earlier.slowpath_ns.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            worker_ns: self.worker_ns.saturating_sub(earlier.worker_ns),
            busy_ns: self.busy_ns.saturating_sub(earlier.busy_ns),
            worker_events: self.worker_events.since(&earlier.worker_events),
            idle: akagate::daemon::IdleCounts {
                turns: self.idle.turns.saturating_sub(earlier.idle.turns),
                yields: self.idle.yields.saturating_sub(earlier.idle.yields),
                parks: self.idle.parks.saturating_sub(earlier.idle.parks),
            },
        }
    }
}

/// Where a daemon's threads are in `/proc/self/task`, found once by name.
#[derive(Clone, Debug, Default)]
pub struct DaemonThreads {
    slowpath: Vec<Option<PathBuf>>,
    workers: Vec<PathBuf>,
}

impl DaemonThreads {
    /// Finds the slowpath threads called `slowpath` (in order) and every thread whose name
    /// starts with `worker_prefix`. Names are cut to Linux's 15 bytes of `comm`.
    pub fn find(slowpath: &[String], worker_prefix: &str) -> DaemonThreads {
        let comm = |n: &str| n.get(..15).unwrap_or(n).to_owned();
        let slowpath = slowpath.iter().map(|n| find_thread(&comm(n))).collect();
        let workers = threads_with_prefix(worker_prefix);
        DaemonThreads { slowpath, workers }
    }

    /// Reads every clock now.
    pub fn sample(&self) -> DaemonCpu {
        let read = |p: &Path| thread_cpu_ns(p).unwrap_or(0);
        DaemonCpu {
            slowpath_ns: self
                .slowpath
                .iter()
                .map(|p| p.as_deref().map_or(0, read))
                .collect(),
            worker_ns: self.workers.iter().map(|p| read(p)).sum(),
            busy_ns: akagate::daemon::busy_iteration_ns().0,
            worker_events: (self.workers.iter())
                .map(|p| ThreadEvents::read(p))
                .fold(ThreadEvents::default(), ThreadEvents::add),
            idle: akagate::daemon::idle_counts(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_spinning_thread_accumulates_cpu_time() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::Builder::new()
            .name("pktgen-cpu-test".into())
            .spawn(move || {
                let mut x = 0u64;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .unwrap();
        let task = (0..100)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                find_thread("pktgen-cpu-test")
            })
            .expect("thread visible in /proc/self/task");
        let a = thread_cpu_ns(&task).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let b = thread_cpu_ns(&task).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t.join().unwrap();
        assert!(b > a, "cpu time must grow while spinning ({a} -> {b})");
        assert!(find_thread("no-such-thread-name").is_none());
    }

    #[test]
    fn a_phase_is_the_difference_of_two_samples() {
        let a = DaemonCpu {
            slowpath_ns: vec![10, 20],
            worker_ns: 5,
            busy_ns: 7,
            ..DaemonCpu::default()
        };
        let b = DaemonCpu {
            slowpath_ns: vec![15, 45],
            worker_ns: 9,
            busy_ns: 7,
            ..DaemonCpu::default()
        };
        let d = b.since(&a);
        assert_eq!(d.slowpath_ns, vec![5, 25]);
        assert_eq!((d.worker_ns, d.busy_ns), (4, 0));
        // A clock that went missing reads 0, never wraps.
        assert_eq!(a.since(&b).slowpath_ns, vec![0, 0]);
    }

    #[test]
    fn daemon_threads_are_found_by_name_and_prefix() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spawn = |name: &str| {
            let s = stop.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let mut x = 0u64;
                    while !s.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                })
                .unwrap()
        };
        let ts = [
            spawn("cpt-sp-long-name-x"),
            spawn("cpt-wk0"),
            spawn("cpt-wk1"),
        ];
        std::thread::sleep(std::time::Duration::from_millis(20));
        let threads =
            DaemonThreads::find(&["cpt-sp-long-name-x".into(), "cpt-none".into()], "cpt-wk");
        let a = threads.sample();
        std::thread::sleep(std::time::Duration::from_millis(60));
        let b = threads.sample();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ts.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(threads.workers.len(), 2);
        let d = b.since(&a);
        assert!(d.slowpath_ns[0] > 0, "{d:?}");
        assert_eq!(d.slowpath_ns[1], 0, "a missing thread reads 0");
        assert!(d.worker_ns > 0, "{d:?}");
    }

    /// A thread that sleeps 20 times switches away voluntarily at least 20 times, and one
    /// that touches fresh pages faults them in.
    #[test]
    fn thread_events_count_sleeps_and_faults() {
        let t = std::thread::Builder::new()
            .name("cpt-events".into())
            .spawn(|| {
                let task = find_thread("cpt-events").expect("visible");
                let a = ThreadEvents::read(&task);
                for _ in 0..20 {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                let mut v = vec![0u8; 64 << 20];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                std::hint::black_box(&v);
                ThreadEvents::read(&task).since(&a)
            })
            .unwrap();
        let d = t.join().unwrap();
        assert!(d.voluntary_switches >= 20, "{d:?}");
        assert!(d.minor_faults >= 16, "{d:?}");
    }
}
