//! Cells for the installed SAs of one table on huge pages: the slot array's second memory
//! access (the SA itself) then misses the cache but not the TLB. A cell freed by a removal
//! is reused only after the epoch collector has seen every reader move on.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use std::sync::{Mutex, PoisonError};

use super::backing::{BackingPolicy, HugeArray, MemoryBacking};

/// Largest slab kept on the heap when no huge pages back it; a larger one gets no cells and
/// its table boxes each SA, as it would without a slab.
const HEAP_SLAB_MAX: usize = 16 << 20;

/// Fixed-capacity storage of `E` values, reserved lazily (pages are touched on first use).
pub(crate) struct Slab<E> {
    cells: HugeArray<UnsafeCell<MaybeUninit<E>>>,
    free: Mutex<FreeCells>,
}

/// Cells never used yet start at `fresh`; reclaimed ones are reused first, lowest memory stays warm.
struct FreeCells {
    fresh: u32,
    reclaimed: Vec<u32>,
}

// SAFETY: the slab hands each cell to one owner at a time (`alloc` until `free`), so shared
// access to the slab never gives two threads the same cell's contents; the values are `E`s,
// which cross threads only if `E: Send`, and are read through `&E` only if `E: Sync`.
unsafe impl<E: Send + Sync> Sync for Slab<E> {}
// SAFETY: as above.
unsafe impl<E: Send> Send for Slab<E> {}

impl<E> Slab<E> {
    /// Room for `len` values, on transparent huge pages if `policy` allows and the host offers
    /// them; else on the heap up to [`HEAP_SLAB_MAX`] bytes, else no room at all.
    pub(crate) fn new(len: u32, policy: BackingPolicy) -> Self {
        Slab {
            cells: HugeArray::new_uninit_cells(len as usize, policy, HEAP_SLAB_MAX),
            free: Mutex::new(FreeCells {
                fresh: 0,
                reclaimed: Vec::new(),
            }),
        }
    }

    /// Moves `value` into a free cell and returns its address, or gives `value` back if
    /// every cell is taken.
    pub(crate) fn alloc(&self, value: E) -> Result<*const E, E> {
        let index = {
            let mut f = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            match f.reclaimed.pop() {
                Some(i) => i,
                None if (f.fresh as usize) < self.cells.as_slice().len() => {
                    f.fresh += 1;
                    f.fresh - 1
                }
                None => return Err(value),
            }
        };
        let Some(cell) = self.cells.as_slice().get(index as usize) else {
            return Err(value);
        };
        let p = cell.get().cast::<E>();
        // SAFETY: `index` came off the free list, so no one else owns the cell and it holds
        // no live value; `p` is valid and aligned for `E` (an element of the cell array).
        unsafe { p.write(value) };
        Ok(p.cast_const())
    }

    /// The cell index of `p` if it points into this slab.
    pub(crate) fn index_of(&self, p: *const E) -> Option<u32> {
        let base = self.cells.as_slice().as_ptr() as usize;
        let size = core::mem::size_of::<UnsafeCell<MaybeUninit<E>>>().max(1);
        let off = (p as usize).checked_sub(base)?;
        let index = off / size;
        (off % size == 0 && index < self.cells.as_slice().len()).then_some(index as u32)
    }

    /// Drops the value in cell `index` and makes the cell free.
    ///
    /// # Safety
    /// The cell must hold a value from [`Slab::alloc`] that nobody can reach any more (unlinked
    /// and past every reader's epoch), and this must be the only `free` of that value.
    pub(crate) unsafe fn free(&self, index: u32) {
        if let Some(cell) = self.cells.as_slice().get(index as usize) {
            // SAFETY: the caller guarantees the cell holds an unreachable live value.
            unsafe { core::ptr::drop_in_place(cell.get().cast::<E>()) };
            let mut f = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            f.reclaimed.push(index);
        }
    }

    /// Drops the value in cell `index` without making the cell reusable (table teardown).
    ///
    /// # Safety
    /// As for [`Slab::free`].
    pub(crate) unsafe fn drop_value(&self, index: u32) {
        if let Some(cell) = self.cells.as_slice().get(index as usize) {
            // SAFETY: the caller guarantees the cell holds an unreachable live value.
            unsafe { core::ptr::drop_in_place(cell.get().cast::<E>()) };
        }
    }

    /// Which pages hold the cells.
    pub(crate) fn backing(&self) -> MemoryBacking {
        self.cells.backing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct D(Arc<AtomicUsize>, u64);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn alloc_until_full_then_reuse_freed_cells() {
        let drops = Arc::new(AtomicUsize::new(0));
        let s = Slab::<D>::new(3, BackingPolicy::Auto);
        let ptrs: Vec<*const D> = (0..3)
            .map(|i| s.alloc(D(drops.clone(), i)).ok().unwrap())
            .collect();
        for (i, p) in ptrs.iter().enumerate() {
            assert_eq!(s.index_of(*p), Some(i as u32));
            // SAFETY: allocated above and not freed.
            assert_eq!(unsafe { &**p }.1, i as u64);
        }
        let back = s.alloc(D(drops.clone(), 9)).err().unwrap();
        assert_eq!(back.1, 9, "a full slab gives the value back");
        drop(back);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        // SAFETY: cell 1 holds a live value nobody else uses.
        unsafe { s.free(1) };
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        let p = s.alloc(D(drops.clone(), 7)).ok().unwrap();
        assert_eq!(s.index_of(p), Some(1));
        let outside = D(drops.clone(), 0);
        assert_eq!(s.index_of(&outside), None);
        for i in 0..3 {
            // SAFETY: every cell holds a live value.
            unsafe { s.drop_value(i) };
        }
        assert_eq!(drops.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn large_slabs_sit_on_huge_pages_when_the_host_offers_them() {
        let s = Slab::<[u64; 32]>::new(1 << 16, BackingPolicy::Auto); // 16 MiB
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|t| t.contains("[always]") || t.contains("[madvise]"));
        let expect = if thp {
            MemoryBacking::TransparentHuge
        } else {
            MemoryBacking::Plain
        };
        assert_eq!(s.backing(), expect);
        let plain = Slab::<[u64; 32]>::new(1 << 16, BackingPolicy::Plain);
        assert_eq!(plain.backing(), MemoryBacking::Plain);
        assert!(
            plain.alloc([1; 32]).is_ok(),
            "16 MiB still fits on the heap"
        );
        let big = Slab::<[u64; 32]>::new((1 << 16) + 1, BackingPolicy::Plain);
        assert!(big.alloc([1; 32]).is_err(), "no heap slab above 16 MiB");
    }
}
