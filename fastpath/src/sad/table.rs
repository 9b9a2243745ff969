//! The SA table itself: a preallocated array of cache-line slots indexed by the SPI's slot
//! bits, each holding its SPI and entry inline, read lock-free by workers and written under
//! the allocator lock.
//!
//! A lookup is one cache line: the slot holds the entry (for the worker: selectors, owner and
//! slab slot), not a pointer to it, so at millions of SAs it costs one cache miss instead of
//! two dependent ones, and a caller can prefetch it ([`SaTable::prefetch`]) for a whole burst
//! before looking any SPI up. Readers copy the entry out under a sequence lock (each slot's
//! `version` is odd while a writer changes it; a reader that saw it change reads again), so
//! nothing a reader holds can be freed under it and no epoch or guard is needed.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::backing::{BackingPolicy, HugeArray, MemoryBacking};
use super::spi::{SlotAllocator, SpiLayout};
use super::{SadError, SpiAllocator};

/// Words of an entry held inline in a slot (the slot is one 64-byte line: a version, the SPI
/// and these seven words).
pub const ENTRY_WORDS: usize = 7;

/// How many times a lookup re-reads a slot a writer is changing before it gives up (the
/// packet is then handled as if it arrived just before the install or just after the
/// removal). Writers hold a slot for a few stores, so this is only reached if the writer's
/// thread was descheduled in between; a worker never waits on it.
const READ_TRIES: usize = 64;

/// A value a [`SaTable`] holds inline: `Copy`, and encoded in [`ENTRY_WORDS`] words so a
/// reader can copy it out with atomic loads while a writer may be changing it.
pub trait FlatEntry: Copy + Send + Sync + 'static {
    /// The entry as words.
    fn to_words(&self) -> [u64; ENTRY_WORDS];
    /// The entry of words written by [`FlatEntry::to_words`]; `None` if they form none
    /// (never for words read under the slot's version check).
    fn from_words(words: [u64; ENTRY_WORDS]) -> Option<Self>;
}

/// One slot: all zero is empty (SPI 0 is never issued).
#[repr(C, align(64))]
struct Slot {
    /// Even while stable, odd while the writer changes the slot (sequence lock).
    version: AtomicU32,
    /// The SPI installed here, 0 if none.
    spi: AtomicU32,
    /// The entry's words.
    words: [AtomicU64; ENTRY_WORDS],
}

/// SPI-indexed table of inbound SAs' entries of type `T`, with a fixed capacity chosen at
/// start.
///
/// Memory: one 64-byte slot per SPI slot plus 8 bytes per slot in the allocator (72 bytes per
/// slot, 288 MiB for 4 Mi slots), reserved once; the slot array is mapped zeroed (empty) and
/// on 2 MiB pages when at least that large and the host offers them
/// ([`SaTable::memory_backing`]), so its pages are committed as slots are first used and a
/// lookup misses no TLB.
pub struct SaTable<T> {
    layout: SpiLayout,
    slots: HugeArray<Slot>,
    /// Slowpath side: every write to `slots` happens with this lock held, which makes each
    /// slot single-writer (the sequence lock needs that) and orders install/remove against
    /// release of the same SPI.
    allocator: Mutex<SlotAllocator>,
    installed: AtomicUsize,
    _entry: core::marker::PhantomData<T>,
}

impl<T: FlatEntry> SaTable<T> {
    /// A table of `capacity` slots (1..=[`MAX_CAPACITY`](super::MAX_CAPACITY)), all free.
    /// The slot array goes on huge pages if it can ([`BackingPolicy::Auto`]).
    pub fn with_capacity(capacity: usize) -> Result<Self, SadError> {
        Self::with_backing(capacity, BackingPolicy::Auto)
    }

    /// A table of `capacity` slots whose slot array is placed as `policy` allows.
    pub fn with_backing(capacity: usize, policy: BackingPolicy) -> Result<Self, SadError> {
        let layout = SpiLayout::for_capacity(capacity)?;
        // SAFETY: a `Slot` of all zero bytes is valid (atomics of 0) and means "empty".
        let slots = unsafe { HugeArray::new_zeroed(capacity, policy) };
        Ok(Self {
            layout,
            slots,
            allocator: Mutex::new(SlotAllocator::new(layout, capacity)),
            installed: AtomicUsize::new(0),
            _entry: core::marker::PhantomData,
        })
    }

    /// Worker side: a copy of the entry installed under `spi`, if any: one cache line read
    /// with plain loads (x86) and no write.
    ///
    /// Returns `None` for SPIs never issued, released, removed, or of an older generation of a
    /// reissued slot.
    #[inline]
    pub fn lookup(&self, spi: u32) -> Option<T> {
        if spi == 0 {
            return None; // never issued: the mark of an empty slot
        }
        let slot = self.slots.as_slice().get(self.layout.slot(spi))?;
        for _ in 0..READ_TRIES {
            let v = slot.version.load(Ordering::Acquire);
            if v & 1 == 0 {
                let installed = slot.spi.load(Ordering::Relaxed);
                let words = core::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
                // Sequence lock, reader side: the loads above happen before the re-check.
                fence(Ordering::Acquire);
                if slot.version.load(Ordering::Relaxed) == v {
                    return if installed == spi {
                        T::from_words(words)
                    } else {
                        None
                    };
                }
            }
            core::hint::spin_loop();
        }
        None
    }

    /// Worker side: starts loading the slot of `spi` into the cache, so a [`lookup`] of it a
    /// little later (after the other packets of a burst were looked at) does not wait for
    /// memory. Reads nothing and never faults.
    ///
    /// [`lookup`]: SaTable::lookup
    #[inline]
    pub fn prefetch(&self, spi: u32) {
        if let Some(slot) = self.slots.as_slice().get(self.layout.slot(spi)) {
            super::prefetch(slot);
        }
    }

    /// Slowpath side (or the owning worker): publishes `value` under the allocated `spi`.
    ///
    /// Fails with `NotAllocated` for an SPI that is not currently issued and `AlreadyInstalled`
    /// if the slot is occupied.
    pub fn install(&self, spi: u32, value: T) -> Result<(), SadError> {
        let allocator = self.lock_allocator();
        let slot = self.allocated_slot(&allocator, spi)?;
        if slot.spi.load(Ordering::Relaxed) != 0 {
            return Err(SadError::AlreadyInstalled { spi });
        }
        write(slot, spi, value.to_words());
        self.installed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Slowpath side: empties the slot of `spi`. The SPI stays allocated (late packets find
    /// nothing) until [`SpiAllocator::release`].
    pub fn remove(&self, spi: u32) -> Result<(), SadError> {
        let allocator = self.lock_allocator();
        let slot = self.allocated_slot(&allocator, spi)?;
        if self.unlink(slot) {
            Ok(())
        } else {
            Err(SadError::NotInstalled { spi })
        }
    }

    /// Empties the slot; false if it was empty. Called with the allocator lock held.
    fn unlink(&self, slot: &Slot) -> bool {
        if slot.spi.load(Ordering::Relaxed) == 0 {
            return false;
        }
        write(slot, 0, [0; ENTRY_WORDS]);
        self.installed.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// The slot of an allocated `spi`, checked against the allocator held by the caller.
    fn allocated_slot(&self, allocator: &SlotAllocator, spi: u32) -> Result<&Slot, SadError> {
        if !allocator.is_allocated(spi) {
            return Err(SadError::NotAllocated { spi });
        }
        self.slots
            .as_slice()
            .get(self.layout.slot(spi))
            .ok_or(SadError::NotAllocated { spi })
    }

    fn lock_allocator(&self) -> MutexGuard<'_, SlotAllocator> {
        // Nothing panics while the lock is held, so a poisoned lock is still consistent.
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

    /// Bytes reserved for the slot array and the allocator (the slot array is committed as
    /// slots are first used).
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(self.slots.as_slice()) + self.lock_allocator().memory_bytes()
    }
}

/// Sequence lock, writer side (one writer per slot: the allocator lock is held): version odd,
/// new contents, version even again.
fn write(slot: &Slot, spi: u32, words: [u64; ENTRY_WORDS]) {
    let v = slot.version.load(Ordering::Relaxed);
    slot.version.store(v.wrapping_add(1), Ordering::Relaxed);
    // Orders the odd version before the stores below for any reader that sees one of them.
    fence(Ordering::Release);
    slot.spi.store(spi, Ordering::Relaxed);
    for (w, value) in slot.words.iter().zip(words) {
        w.store(value, Ordering::Relaxed);
    }
    slot.version.store(v.wrapping_add(2), Ordering::Release);
}

impl<T: FlatEntry> SpiAllocator for SaTable<T> {
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

impl<T> core::fmt::Debug for SaTable<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never prints the entries.
        f.debug_struct("SaTable")
            .field("capacity", &self.slots.as_slice().len())
            .field("backing", &self.slots.backing())
            .field("slot_bits", &self.layout.slot_bits())
            .field("installed", &self.installed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Test and benchmark entries: a number in the first word.
impl FlatEntry for u64 {
    fn to_words(&self) -> [u64; ENTRY_WORDS] {
        let mut w = [0; ENTRY_WORDS];
        w[0] = *self;
        w
    }
    fn from_words(words: [u64; ENTRY_WORDS]) -> Option<Self> {
        Some(words[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sad::RESERVED_SPI_MAX;
    use std::collections::HashSet;

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<Slot>(), 64);
        assert_eq!(core::mem::align_of::<Slot>(), 64);
    }

    #[test]
    fn allocation_never_issues_reserved_spis() {
        let t = SaTable::<u64>::with_capacity(300).unwrap();
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
        let t = SaTable::<u64>::with_capacity(4).unwrap();
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
        let t = SaTable::<u64>::with_capacity(8).unwrap();
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
        let t = SaTable::<u64>::with_capacity(16).unwrap();
        let spi = t.allocate().unwrap();
        assert_eq!(t.lookup(spi), None);
        t.install(spi, 77).unwrap();
        assert_eq!(t.installed(), 1);
        assert_eq!(t.lookup(spi), Some(77));
        assert_eq!(t.install(spi, 78), Err(SadError::AlreadyInstalled { spi }));
        assert_eq!(t.lookup(spi), Some(77), "a refused install changes nothing");
        t.remove(spi).unwrap();
        assert_eq!(t.lookup(spi), None);
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
        let t = SaTable::<u64>::with_capacity(1).unwrap();
        let old = t.allocate().unwrap();
        t.install(old, 1).unwrap();
        t.release(old).unwrap(); // release also removes
        assert_eq!(t.installed(), 0);
        let new = t.allocate().unwrap();
        assert_eq!(t.layout().slot(new), t.layout().slot(old));
        assert_ne!(new, old);
        t.install(new, 2).unwrap();
        assert_eq!(t.lookup(new), Some(2));
        assert_eq!(t.lookup(old), None);
        assert_eq!(t.install(old, 3), Err(SadError::NotAllocated { spi: old }));
    }

    #[test]
    fn lookup_of_unissued_spis_finds_nothing() {
        let t = SaTable::<u64>::with_capacity(1000).unwrap();
        let spi = t.allocate().unwrap();
        t.install(spi, 7).unwrap();
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
            assert_eq!(t.lookup(probe), None, "probe {probe:#x}");
            t.prefetch(probe); // any SPI: never faults
        }
        assert_eq!(t.lookup(spi), Some(7));
    }

    #[test]
    fn usable_through_the_trait_object() {
        let t = std::sync::Arc::new(SaTable::<u64>::with_capacity(8).unwrap());
        let alloc: std::sync::Arc<dyn SpiAllocator> = t.clone();
        let spi = alloc.allocate().unwrap();
        t.install(spi, 42).unwrap();
        alloc.release(spi).unwrap();
        assert_eq!(t.lookup(spi), None);
        assert_eq!(t.installed(), 0);
    }

    #[test]
    fn four_million_slots_take_288_mib_reserved() {
        let t = SaTable::<u64>::with_capacity(4 << 20).unwrap();
        assert_eq!(t.layout().slot_bits(), 22);
        assert_eq!(t.layout().max_generation(), 1023);
        assert_eq!(t.memory_bytes(), (4 << 20) * (64 + 8));
        let spi = t.allocate().unwrap();
        t.install(spi, 9).unwrap();
        assert_eq!(t.lookup(spi), Some(9));
    }

    /// A reader racing a writer of the same slot sees an old or a new entry whole, never a
    /// mix of the two (the sequence lock).
    #[test]
    fn readers_never_see_a_torn_entry() {
        #[derive(Clone, Copy, PartialEq, Debug)]
        struct Same([u64; ENTRY_WORDS]);
        impl FlatEntry for Same {
            fn to_words(&self) -> [u64; ENTRY_WORDS] {
                self.0
            }
            fn from_words(words: [u64; ENTRY_WORDS]) -> Option<Self> {
                Some(Same(words))
            }
        }
        let t = std::sync::Arc::new(SaTable::<Same>::with_capacity(4).unwrap());
        let spi = t.allocate().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Same(w)) = t.lookup(spi) {
                        assert!(w.iter().all(|&x| x == w[0]), "torn entry {w:?}");
                        seen += 1;
                    }
                }
                seen
            })
        };
        for i in 1..=20_000u64 {
            t.install(spi, Same([i; ENTRY_WORDS])).unwrap();
            t.remove(spi).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }

    #[test]
    fn debug_does_not_print_values() {
        let t = SaTable::<u64>::with_capacity(4).unwrap();
        let spi = t.allocate().unwrap();
        t.install(spi, 0x5ec2e7).unwrap();
        let s = format!("{t:?}");
        assert!(!s.contains(&0x5ec2e7u64.to_string()), "{s}");
        assert!(s.contains("installed: 1"), "{s}");
    }
}
