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
}
