//! Core pinning: workers on configured cores, the slowpath on another core or unpinned, with
//! a clear error naming the usable cores when a configured one does not exist.

use crate::error::IoError;

/// Cores this process may run on, ascending.
pub fn available_cores() -> Vec<usize> {
    let mut v: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    v.sort_unstable();
    v
}

/// Check that `core` exists and is usable.
pub fn check_core(core: usize) -> Result<(), IoError> {
    let available = available_cores();
    if available.contains(&core) {
        Ok(())
    } else {
        Err(IoError::NoSuchCore { core, available })
    }
}

/// Pin the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> Result<(), IoError> {
    check_core(core)?;
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(IoError::PinFailed(core))
    }
}

/// Where the threads of the process run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorePlan {
    /// Core of worker `i`.
    pub workers: Vec<usize>,
    /// Core of the slowpath thread, or `None` to leave it unpinned.
    pub slowpath: Option<usize>,
}

impl CorePlan {
    /// Check that every core exists, that no two workers share a core and that the slowpath
    /// is not on a worker's core (a busy-polling worker would starve it).
    pub fn validate(&self) -> Result<(), IoError> {
        for &c in self.workers.iter().chain(self.slowpath.iter()) {
            check_core(c)?;
        }
        let mut seen = std::collections::HashSet::new();
        for &c in &self.workers {
            if !seen.insert(c) {
                return Err(IoError::Config(format!("core {c} assigned to two workers")));
            }
        }
        if let Some(s) = self.slowpath {
            if seen.contains(&s) {
                return Err(IoError::Config(format!(
                    "slowpath core {s} is also a worker core"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_core_is_a_clear_error() {
        let err = check_core(100_000).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("core 100000 does not exist"), "{msg}");
        assert!(matches!(err, IoError::NoSuchCore { core: 100_000, .. }));
    }

    #[test]
    fn pin_to_an_available_core() {
        let cores = available_cores();
        assert!(!cores.is_empty());
        let c = *cores.last().unwrap_or(&0);
        std::thread::spawn(move || pin_current_thread(c))
            .join()
            .unwrap()
            .unwrap();
    }

    #[test]
    fn plan_rejects_shared_cores() {
        let c = available_cores()[0];
        let p = CorePlan {
            workers: vec![c, c],
            slowpath: None,
        };
        assert!(p.validate().is_err());
        let p = CorePlan {
            workers: vec![c],
            slowpath: Some(c),
        };
        assert!(p.validate().is_err());
        let p = CorePlan {
            workers: vec![c],
            slowpath: None,
        };
        assert!(p.validate().is_ok());
    }
}
