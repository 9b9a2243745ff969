//! The SA table itself: a preallocated array of epoch-protected pointers indexed by the SPI's
//! slot bits, read lock-free by workers and written by the slowpath under its allocator lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_epoch::{Atomic, Owned, Shared};

use super::backing::{BackingPolicy, HugeArray, MemoryBacking};
use super::slab::Slab;
use super::spi::{SlotAllocator, SpiLayout};
use super::{ReadGuard, SadError, SpiAllocator};

/// What one slot points at: the value and the full SPI it was installed under, so a lookup
/// verifies the SPI's generation with the same load that finds the value.
struct Entry<T> {
    spi: u32,
    value: T,
}

/// SPI-indexed table of inbound SAs of type `T`, with a fixed capacity chosen at start.
///
/// Memory: one pointer per slot in the table plus 8 bytes per slot in the allocator
/// (16 bytes per slot, 64 MiB for 4 Mi slots), allocated once; each installed SA is `T` plus
/// its 4-byte SPI in a cell of the table's slab (reserved for capacity + 1/8 SAs, committed as
/// used), or in its own heap box once removed SAs awaiting reclamation fill the spare eighth
/// (or when the slab got no room: no huge pages and over 16 MiB). Slot array and slab sit on
/// 2 MiB pages when at least that large and the host offers them
/// ([`SaTable::memory_backing`], [`SaTable::entry_backing`]), so a lookup's two accesses
/// miss no TLB.
pub struct SaTable<T> {
    layout: SpiLayout,
    slots: HugeArray<Atomic<Entry<T>>>,
    /// Where installed entries live; shared with the deferred destructors of removed ones.
    entries: Arc<Slab<Entry<T>>>,
    /// Slowpath side: every write to `slots` happens with this lock held, which orders
    /// install/remove against release of the same SPI.
    allocator: Mutex<SlotAllocator>,
    installed: AtomicUsize,
}

impl<T: Send + Sync + 'static> SaTable<T> {
    /// A table of `capacity` slots (1..=[`MAX_CAPACITY`](super::MAX_CAPACITY)), all free.
    /// The slot array goes on huge pages if it can ([`BackingPolicy::Auto`]).
    pub fn with_capacity(capacity: usize) -> Result<Self, SadError> {
        Self::with_backing(capacity, BackingPolicy::Auto)
    }

    /// A table of `capacity` slots whose slot array is placed as `policy` allows.
    pub fn with_backing(capacity: usize, policy: BackingPolicy) -> Result<Self, SadError> {
        let layout = SpiLayout::for_capacity(capacity)?;
        let slots = HugeArray::new(capacity, policy, Atomic::null);
        // Removed SAs keep their cell until the epoch moves on: leave an eighth spare.
        let cells = capacity
            .saturating_add(capacity / 8 + 64)
            .min(u32::MAX as usize) as u32;
        let entries = Arc::new(Slab::new(cells, policy));
        Ok(Self {
            layout,
            slots,
            entries,
            allocator: Mutex::new(SlotAllocator::new(layout, capacity)),
            installed: AtomicUsize::new(0),
        })
    }

    /// Worker side: the SA installed under `spi`, if any, with one atomic load.
    ///
    /// Returns `None` for SPIs never issued, released, removed, or of an older generation of a
    /// reissued slot. The reference lives as long as the guard, which the worker re-pins once
    /// per burst (see [`ReadGuard`]).
    #[inline]
    pub fn lookup<'g>(&'g self, spi: u32, guard: &'g ReadGuard) -> Option<&'g T> {
        let slot = self.slots.as_slice().get(self.layout.slot(spi))?;
        let shared = slot.load(Ordering::Acquire, guard.epoch_guard());
        // SAFETY: the pointer is null or was published by `install` (Release store, paired
        // with the Acquire load above) and has not been destroyed: `remove`/`release` unlink
        // it before deferring its destruction (slab cell or box), which runs only after every
        // guard pinned before the unlink, `guard` included, is dropped or re-pinned; `Drop`
        // needs `&mut self`, which cannot coexist with the `&'g self` borrow.
        let entry = unsafe { shared.as_ref() }?;
        (entry.spi == spi).then_some(&entry.value)
    }

    /// Slowpath side: publishes `value` under the allocated `spi`.
    ///
    /// Fails with `NotAllocated` for an SPI that is not currently issued and `AlreadyInstalled`
    /// if the slot is occupied; the value is dropped in both cases.
    pub fn install(&self, spi: u32, value: T) -> Result<(), SadError> {
        let allocator = self.lock_allocator();
        let slot = self.allocated_slot(&allocator, spi)?;
        let guard = crossbeam_epoch::pin();
        if !slot.load(Ordering::Relaxed, &guard).is_null() {
            return Err(SadError::AlreadyInstalled { spi });
        }
        let entry = Entry { spi, value };
        match self.entries.alloc(entry) {
            // The cell is ours until `unlink` retires it; `Shared::from` keeps its address.
            Ok(p) => slot.store(Shared::from(p), Ordering::Release),
            Err(entry) => slot.store(Owned::new(entry), Ordering::Release),
        }
        self.installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Slowpath side: unlinks the SA of `spi` with one swap; it is freed once every worker
    /// has moved past its current burst. The SPI stays allocated (late packets find nothing)
    /// until [`SpiAllocator::release`].
    pub fn remove(&self, spi: u32) -> Result<(), SadError> {
        let allocator = self.lock_allocator();
        let slot = self.allocated_slot(&allocator, spi)?;
        if self.unlink(slot) {
            Ok(())
        } else {
            Err(SadError::NotInstalled { spi })
        }
    }

    /// Swaps the slot to null and retires what was there; false if it was empty.
    fn unlink(&self, slot: &Atomic<Entry<T>>) -> bool {
        let guard = crossbeam_epoch::pin();
        let old = slot.swap(crossbeam_epoch::Shared::null(), Ordering::AcqRel, &guard);
        if old.is_null() {
            return false;
        }
        self.installed.fetch_sub(1, Ordering::Relaxed);
        if let Some(index) = self.entries.index_of(old.as_raw()) {
            let slab = Arc::clone(&self.entries);
            // SAFETY: `old` is no longer reachable from the table (swapped out above, and only
            // lock holders store into slots), so no new reader can obtain it; readers that
            // loaded it before the swap are pinned, and the collector runs this closure only
            // after they unpin. The closure holds the slab alive and is the only release of
            // this cell's value. `T: Send + 'static` lets it run on any thread, at any time.
            guard.defer(move || unsafe { slab.free(index) });
        } else {
            // SAFETY: as above, for an entry that overflowed into its own heap allocation.
            unsafe { guard.defer_destroy(old) };
        }
        true
    }

    /// The slot of an allocated `spi`, checked against the allocator held by the caller.
    fn allocated_slot(
        &self,
        allocator: &SlotAllocator,
        spi: u32,
    ) -> Result<&Atomic<Entry<T>>, SadError> {
        if !allocator.is_allocated(spi) {
            return Err(SadError::NotAllocated { spi });
        }
        self.slots
            .as_slice()
            .get(self.layout.slot(spi))
            .ok_or(SadError::NotAllocated { spi })
    }

    fn lock_allocator(&self) -> MutexGuard<'_, SlotAllocator> {
        // Nothing panics while the lock is held except a `T` destructor on `install`'s error
        // path, which leaves the allocator consistent, so a poisoned lock is still usable.
        self.allocator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of slots, fixed at construction.
    pub fn capacity(&self) -> usize {
        self.slots.as_slice().len()
    }

    /// Which pages hold the slot array (huge pages avoid TLB misses in large tables).
    pub fn memory_backing(&self) -> MemoryBacking {
        self.slots.backing()
    }

    /// Which pages hold the installed SAs.
    pub fn entry_backing(&self) -> MemoryBacking {
        self.entries.backing()
    }

    /// The SPI layout (slot and generation bits) of this table.
    pub fn layout(&self) -> SpiLayout {
        self.layout
    }

    /// Number of SAs currently installed.
    pub fn installed(&self) -> usize {
        self.installed.load(Ordering::Relaxed)
    }

    /// Slowpath side, at start: allocates exactly the SPIs of `spis` (those of SA sets
    /// restored after a restart, installed by their workers afterwards), so
    /// [`SpiAllocator::allocate`] never issues them. Returns the SPIs refused (generation 0,
    /// beyond the capacity, or given twice).
    pub fn reserve(&self, spis: &[u32]) -> Vec<u32> {
        self.lock_allocator().reserve(spis)
    }

    /// Number of SPIs currently allocated (installed or not).
    pub fn allocated(&self) -> usize {
        self.lock_allocator().allocated()
    }

    /// Bytes preallocated for the slot array and the allocator (not counting installed SAs).
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(self.slots.as_slice()) + self.lock_allocator().memory_bytes()
    }
}

impl<T: Send + Sync + 'static> SpiAllocator for SaTable<T> {
    fn allocate(&self) -> Result<u32, SadError> {
        self.lock_allocator().allocate()
    }

    fn release(&self, spi: u32) -> Result<(), SadError> {
        let mut allocator = self.lock_allocator();
        let slot = self.allocated_slot(&allocator, spi)?;
        self.unlink(slot);
        allocator.release(spi)
    }
}

impl<T> Drop for SaTable<T> {
    fn drop(&mut self) {
        for slot in self.slots.as_slice().iter() {
            // SAFETY: `&mut self` means no reader holds a reference obtained from `lookup`
            // (those borrow `&self`), and removed entries were already handed to the collector,
            // so every non-null pointer here is owned by the table alone.
            unsafe {
                let guard = crossbeam_epoch::unprotected();
                let entry = slot.load(Ordering::Relaxed, guard);
                if entry.is_null() {
                    continue;
                }
                match self.entries.index_of(entry.as_raw()) {
                    Some(index) => self.entries.drop_value(index),
                    None => drop(entry.into_owned()),
                }
            }
        }
    }
}

impl<T> core::fmt::Debug for SaTable<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never prints the SAs: they hold keys.
        f.debug_struct("SaTable")
            .field("capacity", &self.slots.as_slice().len())
            .field("backing", &self.slots.backing())
            .field("entry_backing", &self.entries.backing())
            .field("slot_bits", &self.layout.slot_bits())
            .field("installed", &self.installed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sad::{pin, RESERVED_SPI_MAX};
    use std::collections::HashSet;

    #[test]
    fn allocation_never_issues_reserved_spis() {
        let t = SaTable::<u32>::with_capacity(300).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..300 {
            let spi = t.allocate().unwrap();
            assert!(spi > RESERVED_SPI_MAX, "spi {spi} is reserved");
            assert!(seen.insert(spi));
        }
        assert_eq!(t.allocated(), 300);
        assert_eq!(t.allocate(), Err(SadError::Exhausted { capacity: 300 }));
    }

    #[test]
    fn released_slot_comes_back_with_next_generation_last() {
        let t = SaTable::<u32>::with_capacity(4).unwrap();
        let l = t.layout();
        let spis: Vec<u32> = (0..4).map(|_| t.allocate().unwrap()).collect();
        assert_eq!(spis, vec![256, 257, 258, 259]); // generation 1, slots 0..4
        t.release(spis[1]).unwrap();
        t.release(spis[3]).unwrap();
        let a = t.allocate().unwrap();
        let b = t.allocate().unwrap();
        assert_eq!((l.slot(a), l.generation(a)), (1, 2));
        assert_eq!((l.slot(b), l.generation(b)), (3, 2));
        assert_eq!(a, 2 << 8 | 1);
    }

    /// Issue 14: the SPIs of restored SA sets are allocated as they were, installable, never
    /// issued again, and released as usual.
    #[test]
    fn reserved_spis_are_never_issued_and_release_normally() {
        let t = SaTable::<u32>::with_capacity(8).unwrap();
        let l = t.layout();
        let kept = [l.compose(2, 5), l.compose(6, 1)];
        let bad = [l.compose(2, 7), l.compose(3, 0), l.compose(200, 1)];
        let refused = t.reserve(&[kept[0], kept[1], bad[0], bad[1], bad[2]]);
        assert_eq!(
            refused, bad,
            "a slot twice, generation 0, beyond the capacity"
        );
        assert_eq!(t.allocated(), 2);
        t.install(kept[0], 1).unwrap();
        let issued: Vec<u32> = (0..6).map(|_| t.allocate().unwrap()).collect();
        assert!(
            issued.iter().all(|s| ![2, 6].contains(&l.slot(*s))),
            "{issued:?}"
        );
        assert_eq!(t.allocate(), Err(SadError::Exhausted { capacity: 8 }));
        t.release(kept[0]).unwrap();
        assert_eq!(
            l.generation(t.allocate().unwrap()),
            6,
            "next generation of the slot"
        );
    }

    #[test]
    fn install_lookup_remove() {
        let t = SaTable::<String>::with_capacity(16).unwrap();
        let spi = t.allocate().unwrap();
        assert_eq!(t.lookup(spi, &pin()), None);
        t.install(spi, "sa".to_string()).unwrap();
        assert_eq!(t.installed(), 1);
        assert_eq!(t.lookup(spi, &pin()).map(String::as_str), Some("sa"));
        assert_eq!(
            t.install(spi, "again".to_string()),
            Err(SadError::AlreadyInstalled { spi })
        );
        t.remove(spi).unwrap();
        assert_eq!(t.lookup(spi, &pin()), None);
        assert_eq!(t.remove(spi), Err(SadError::NotInstalled { spi }));
        assert_eq!(t.installed(), 0);
        assert_eq!(t.allocated(), 1);
        t.release(spi).unwrap();
        assert_eq!(t.release(spi), Err(SadError::NotAllocated { spi }));
        assert_eq!(t.remove(spi), Err(SadError::NotAllocated { spi }));
        assert_eq!(t.allocated(), 0);
    }

    #[test]
    fn stale_spi_of_reissued_slot_finds_nothing() {
        let t = SaTable::<u32>::with_capacity(1).unwrap();
        let old = t.allocate().unwrap();
        t.install(old, 1).unwrap();
        t.release(old).unwrap(); // release also removes
        assert_eq!(t.installed(), 0);
        let new = t.allocate().unwrap();
        assert_eq!(t.layout().slot(new), t.layout().slot(old));
        assert_ne!(new, old);
        t.install(new, 2).unwrap();
        let g = pin();
        assert_eq!(t.lookup(new, &g), Some(&2));
        assert_eq!(t.lookup(old, &g), None);
        assert_eq!(t.install(old, 3), Err(SadError::NotAllocated { spi: old }));
    }

    #[test]
    fn lookup_of_unissued_spis_finds_nothing() {
        let t = SaTable::<u32>::with_capacity(1000).unwrap();
        let spi = t.allocate().unwrap();
        t.install(spi, 7).unwrap();
        let g = pin();
        let slot = t.layout().slot(spi) as u32;
        // Same slot with generation 0 (a reserved SPI when slot < 256), 2 and the maximum,
        // a slot beyond the capacity, and the extremes.
        for probe in [
            slot,
            2 << 10 | slot,
            u32::MAX << 10 | slot,
            1000 | 1 << 10,
            0,
            u32::MAX,
        ] {
            assert_eq!(t.lookup(probe, &g), None, "probe {probe:#x}");
        }
        assert_eq!(t.lookup(spi, &g), Some(&7));
    }

    #[test]
    fn usable_through_the_trait_object() {
        let t = std::sync::Arc::new(SaTable::<u64>::with_capacity(8).unwrap());
        let alloc: std::sync::Arc<dyn SpiAllocator> = t.clone();
        let spi = alloc.allocate().unwrap();
        t.install(spi, 42).unwrap();
        alloc.release(spi).unwrap();
        assert_eq!(t.lookup(spi, &pin()), None);
        assert_eq!(t.installed(), 0);
    }

    #[test]
    fn four_million_slots_fit_in_64_mib() {
        let t = SaTable::<[u8; 256]>::with_capacity(4 << 20).unwrap();
        assert_eq!(t.layout().slot_bits(), 22);
        assert_eq!(t.layout().max_generation(), 1023);
        assert_eq!(t.memory_bytes(), (4 << 20) * 16);
        let spi = t.allocate().unwrap();
        t.install(spi, [9; 256]).unwrap();
        assert_eq!(t.lookup(spi, &pin()).map(|v| v[255]), Some(9));
    }

    /// Removals faster than the epoch reclaims them use up the slab's spare cells; further
    /// installs overflow to the heap, lookups find both kinds, and every value is dropped once.
    #[test]
    fn removed_entries_beyond_the_spare_cells_overflow_to_the_heap() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct D(u32, Arc<AtomicUsize>);
        impl Drop for D {
            fn drop(&mut self) {
                self.1.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let t = SaTable::<D>::with_capacity(8).unwrap(); // 8 + 1 + 64 cells
        let held = pin(); // nothing removed from now on can be reclaimed
        let mut installs = 0;
        for _ in 0..200 {
            let spi = t.allocate().unwrap();
            t.install(spi, D(spi, drops.clone())).unwrap();
            installs += 1;
            assert_eq!(t.lookup(spi, &held).map(|d| d.0), Some(spi));
            t.release(spi).unwrap();
        }
        let kept: Vec<u32> = (0..8).map(|_| t.allocate().unwrap()).collect();
        for &spi in &kept {
            t.install(spi, D(spi, drops.clone())).unwrap();
            installs += 1;
        }
        for &spi in &kept {
            assert_eq!(t.lookup(spi, &held).map(|d| d.0), Some(spi));
        }
        drop(held);
        drop(t);
        for _ in 0..10_000 {
            if drops.load(Ordering::SeqCst) == installs {
                break;
            }
            crossbeam_epoch::pin().flush();
        }
        assert_eq!(drops.load(Ordering::SeqCst), installs);
    }

    #[test]
    fn debug_does_not_print_values() {
        let t = SaTable::<&'static str>::with_capacity(4).unwrap();
        let spi = t.allocate().unwrap();
        t.install(spi, "secret-key").unwrap();
        let s = format!("{t:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(s.contains("installed: 1"), "{s}");
    }
}
