//! Where akabench's threads run on the memory backend (issue 10): the simulated UEs on one
//! CPU and the in-process daemon's threads on others, so that the daemon's per-thread CPU
//! figures read its cost rather than its contention with a load generator several times its
//! size (a lab runs the generator on its own box, or at least its own core).

use std::path::Path;

/// CPUs for the threads of an akabench memory run; `None` leaves a thread to the scheduler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The thread that drives the simulated UEs (akabench's main thread).
    pub ues: Option<usize>,
    /// Every worker thread of the daemon (`akagate-w*`).
    pub workers: Option<usize>,
    /// Every slowpath thread of the daemon (`akagate-slowpath`, `akagate-sp*`).
    pub slowpath: Option<usize>,
}

impl Placement {
    /// True if no thread is placed.
    pub fn is_unpinned(&self) -> bool {
        *self == Placement::default()
    }

    /// How the report's parameters name it: `unpinned`, or e.g. `ues 0, workers 1, slowpath 1`.
    pub fn describe(&self) -> String {
        if self.is_unpinned() {
            return "unpinned".into();
        }
        let one = |name: &str, cpu: Option<usize>| {
            format!("{name} {}", cpu.map_or("any".into(), |c| c.to_string()))
        };
        [
            one("ues", self.ues),
            one("workers", self.workers),
            one("slowpath", self.slowpath),
        ]
        .join(", ")
    }

    /// Pins the calling thread (the UEs') and the running daemon's threads, found by name in
    /// `/proc/self/task`. Errors name the thread and the CPU.
    pub fn apply(&self) -> Result<(), String> {
        if let Some(cpu) = self.ues {
            pin(0, cpu).map_err(|e| format!("UE thread to CPU {cpu}: {e}"))?;
        }
        for (prefix, cpu) in [
            ("akagate-w", self.workers),
            ("akagate-slowpat", self.slowpath),
            ("akagate-sp", self.slowpath),
        ] {
            let Some(cpu) = cpu else { continue };
            for task in crate::cputime::threads_with_prefix(prefix) {
                let tid = tid_of(&task).ok_or_else(|| format!("{}: no tid", task.display()))?;
                pin(tid, cpu).map_err(|e| format!("{prefix}* (tid {tid}) to CPU {cpu}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// The thread id of a `/proc/self/task/<tid>` directory.
fn tid_of(task: &Path) -> Option<libc::pid_t> {
    task.file_name()?.to_str()?.parse().ok()
}

/// `sched_setaffinity(tid, {cpu})`; `tid` 0 is the calling thread.
fn pin(tid: libc::pid_t, cpu: usize) -> Result<(), std::io::Error> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `cpu_set_t` is plain bits; all zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so CPU_SET stays inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel only reads it.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_what_it_pins() {
        assert_eq!(Placement::default().describe(), "unpinned");
        let p = Placement {
            ues: Some(0),
            workers: Some(1),
            slowpath: None,
        };
        assert_eq!(p.describe(), "ues 0, workers 1, slowpath any");
    }

    /// The calling thread ends up on the CPU asked for; a CPU beyond the set is an error.
    #[test]
    fn pins_the_calling_thread() {
        let t = std::thread::spawn(|| {
            let p = Placement {
                ues: Some(0),
                ..Placement::default()
            };
            p.apply().unwrap();
            // SAFETY: sched_getcpu takes no arguments.
            let cpu = unsafe { libc::sched_getcpu() };
            let bad = Placement {
                ues: Some(libc::CPU_SETSIZE as usize),
                ..Placement::default()
            };
            (cpu, bad.apply().is_err())
        });
        assert_eq!(t.join().unwrap(), (0, true));
    }
}
