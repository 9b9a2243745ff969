//! The read-side epoch guard workers hold while they use SAs looked up in an [`SaTable`](super::SaTable).

use crossbeam_epoch::Guard;

/// A pinned epoch guard of the global `crossbeam-epoch` collector, the only kind of guard
/// [`SaTable::lookup`](super::SaTable::lookup) accepts (a guard of another collector would not
/// protect the table's SAs).
///
/// While any `ReadGuard` pinned in an old epoch is alive, SAs removed since then are not freed:
/// a worker that busy-polls must therefore not hold one guard forever. Pin once per receive
/// burst (`let g = sad::pin();` at the top of the burst, dropped at its end) or call
/// [`ReadGuard::repin`] between bursts; never keep a guard across an idle poll or a sleep.
/// Pinning costs a thread-local counter update and a fence, so once per 32-64 packets is cheap.
pub struct ReadGuard {
    guard: Guard,
}

/// Pins the current thread and returns a guard for SA lookups.
#[inline]
pub fn pin() -> ReadGuard {
    ReadGuard {
        guard: crossbeam_epoch::pin(),
    }
}

impl ReadGuard {
    /// Moves this guard to the current epoch so memory retired before now can be reclaimed;
    /// references obtained through it must not be used afterwards (the borrow checker enforces it).
    #[inline]
    pub fn repin(&mut self) {
        self.guard.repin();
    }

    /// The underlying `crossbeam-epoch` guard, for other epoch-based structures of the worker.
    #[inline]
    pub fn epoch_guard(&self) -> &Guard {
        &self.guard
    }
}

impl core::fmt::Debug for ReadGuard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ReadGuard")
    }
}
