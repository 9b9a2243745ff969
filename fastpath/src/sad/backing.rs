//! Memory for the SA table's preallocated arrays on 2 MiB pages where the host offers them:
//! a lookup in a table of millions of SAs then finds its page in the TLB instead of walking
//! the page tables of a 64 MiB array of 4 KiB pages.

#![allow(unsafe_code)]

use core::ptr::NonNull;
use std::alloc::Layout;

/// Size of the huge pages asked for (x86_64 and aarch64 default).
pub const HUGE_PAGE: usize = 2 << 20;

/// Which pages hold a table's slot array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryBacking {
    /// Explicit huge pages (`MAP_HUGETLB`), taken from the pool of `/proc/sys/vm/nr_hugepages`.
    HugeTlb,
    /// Transparent huge pages asked for with `madvise(MADV_HUGEPAGE)` on a 2 MiB-aligned
    /// mapping (THP in `madvise` or `always` mode); the kernel may still use 4 KiB pages
    /// where it finds no free 2 MiB frame.
    TransparentHuge,
    /// Ordinary heap memory: a table under 2 MiB, THP disabled, or [`BackingPolicy::Plain`].
    Plain,
}

/// What a table may ask for when it allocates its arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackingPolicy {
    /// Explicit huge pages if enough are free, else transparent huge pages, else plain memory.
    #[default]
    Auto,
    /// Plain heap memory (benchmark baselines, hosts where huge pages are unwanted).
    Plain,
}

/// A fixed-length array of `S`, on huge pages if possible.
pub(crate) struct HugeArray<S> {
    ptr: NonNull<S>,
    len: usize,
    storage: Storage,
}

enum Storage {
    /// A `Box<[S]>` turned into `ptr`/`len`.
    Heap,
    /// An anonymous mapping (`base`, `map_len`) that contains the array.
    Mapped {
        base: NonNull<libc::c_void>,
        map_len: usize,
        backing: MemoryBacking,
    },
}

// SAFETY: `HugeArray<S>` owns its elements like a `Box<[S]>` does; sending or sharing it is
// sending or sharing the `S`s.
unsafe impl<S: Send> Send for HugeArray<S> {}
// SAFETY: as above; `&HugeArray<S>` only hands out `&[S]`.
unsafe impl<S: Sync> Sync for HugeArray<S> {}

impl<S> HugeArray<S> {
    /// `len` elements of all-zero bytes, placed as `policy` allows: a mapping's pages come
    /// zeroed from the kernel and are committed as they are first touched (so a large, mostly
    /// empty table costs only what is used), the heap's from a zeroed allocation.
    ///
    /// # Safety
    /// All-zero bytes must be a valid `S`.
    pub(crate) unsafe fn new_zeroed(len: usize, policy: BackingPolicy) -> Self {
        let bytes = len.saturating_mul(core::mem::size_of::<S>());
        if policy == BackingPolicy::Auto && bytes >= HUGE_PAGE {
            if let Some((base, map_len, backing)) = map_huge(bytes, false) {
                return HugeArray {
                    ptr: base.cast::<S>(),
                    len,
                    storage: Storage::Mapped {
                        base,
                        map_len,
                        backing,
                    },
                };
            }
        }
        // SAFETY: the caller guarantees that zeroed memory is a valid `S`.
        let boxed: Box<[S]> = unsafe { Box::<[S]>::new_zeroed_slice(len).assume_init() };
        let raw = Box::into_raw(boxed);
        // SAFETY: `Box::into_raw` never returns null.
        let ptr = unsafe { NonNull::new_unchecked(raw.cast::<S>()) };
        HugeArray {
            ptr,
            len,
            storage: Storage::Heap,
        }
    }

    /// The elements.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[S] {
        // SAFETY: `ptr` points at `len` initialized elements owned by `self` (zeroed in
        // `new_zeroed`, valid per its contract), alive until `drop`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Which pages hold the array.
    pub(crate) fn backing(&self) -> MemoryBacking {
        match self.storage {
            Storage::Heap => MemoryBacking::Plain,
            Storage::Mapped { backing, .. } => backing,
        }
    }
}

impl<S> Drop for HugeArray<S> {
    fn drop(&mut self) {
        let elems = core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        match self.storage {
            // SAFETY: `elems` is exactly the pointer and length `Box::into_raw` gave in
            // `new_zeroed`.
            Storage::Heap => drop(unsafe { Box::from_raw(elems) }),
            Storage::Mapped { base, map_len, .. } => {
                // SAFETY: the elements were initialized in `new_zeroed` and are dropped once
                // here; then the mapping it created is unmapped with its own base and length.
                unsafe {
                    core::ptr::drop_in_place(elems);
                    libc::munmap(base.as_ptr(), map_len);
                }
            }
        }
    }
}

/// A fixed-length array of `S` that starts on a 2 MiB boundary and fills whole 2 MiB pages,
/// from the global allocator (so it is counted like any heap block), with transparent huge
/// pages asked for before its first touch: each of its pages can then be one TLB entry.
/// Nothing in it ever moves. Used for the segments of a worker's SA slab.
pub struct PageArray<S> {
    ptr: NonNull<S>,
    len: usize,
    /// The allocation's layout (size a multiple of [`HUGE_PAGE`], aligned to it); `None` for
    /// an array of no bytes, which allocates nothing.
    layout: Option<Layout>,
}

// SAFETY: `PageArray<S>` owns its elements like a `Box<[S]>` does; sending or sharing it is
// sending or sharing the `S`s.
unsafe impl<S: Send> Send for PageArray<S> {}
// SAFETY: as above; `&PageArray<S>` only hands out `&[S]`.
unsafe impl<S: Sync> Sync for PageArray<S> {}

impl<S> PageArray<S> {
    /// As many elements as fit in `pages` 2 MiB pages (at least one), each made by `f`.
    pub fn filled(pages: usize, mut f: impl FnMut() -> S) -> Self {
        let size = core::mem::size_of::<S>();
        let bytes = pages.max(1).saturating_mul(HUGE_PAGE);
        let len = (bytes / size.max(1)).max(1);
        let layout = if size == 0 {
            None
        } else {
            (len * size)
                .max(bytes)
                .checked_next_multiple_of(HUGE_PAGE)
                .and_then(|n| {
                    Layout::from_size_align(n, HUGE_PAGE.max(core::mem::align_of::<S>())).ok()
                })
        };
        let (ptr, len) = match layout {
            Some(layout) => {
                // SAFETY: `layout` has a non-zero size (`len >= 1`, `size > 0`).
                let raw = unsafe { std::alloc::alloc(layout) }.cast::<S>();
                let Some(ptr) = NonNull::new(raw) else {
                    std::alloc::handle_alloc_error(layout);
                };
                // Before the first touch: the kernel then backs each 2 MiB page of it with a
                // huge page where it can, instead of 512 small ones (THP in `madvise` or
                // `always` mode).
                advise_huge(raw.cast(), layout.size());
                (ptr, len)
            }
            // Zero-sized elements need no memory; a size no layout takes gets no elements.
            None => (NonNull::dangling(), if size == 0 { len } else { 0 }),
        };
        // `len` counts the elements written so far, so a panicking `f` leaves an array that
        // drops exactly those.
        let mut a = PageArray {
            ptr,
            len: 0,
            layout,
        };
        while a.len < len {
            // SAFETY: `a.len < len` elements of `S` fit in the allocation (or `S` is zero-sized
            // and the dangling pointer is aligned); each is written once, then counted.
            unsafe { a.ptr.as_ptr().add(a.len).write(f()) };
            a.len += 1;
        }
        a
    }

    /// The elements.
    #[inline(always)]
    pub fn as_slice(&self) -> &[S] {
        // SAFETY: `ptr` points at `len` elements initialized in `filled`, owned by `self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The elements, for writing.
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [S] {
        // SAFETY: as in `as_slice`; `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Bytes allocated (whole 2 MiB pages).
    pub fn bytes(&self) -> usize {
        self.layout.map_or(0, |l| l.size())
    }
}

impl<S> Drop for PageArray<S> {
    fn drop(&mut self) {
        let elems = core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: the elements were initialized in `filled` and are dropped once, here; the
        // allocation is then freed with the layout it was made with.
        unsafe {
            core::ptr::drop_in_place(elems);
            if let Some(layout) = self.layout {
                std::alloc::dealloc(self.ptr.as_ptr().cast(), layout);
            }
        }
    }
}

impl<S> core::fmt::Debug for PageArray<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never prints the elements (SAs hold keys).
        f.debug_struct("PageArray")
            .field("len", &self.len)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

/// Free explicit huge pages of [`HUGE_PAGE`] size, from `/proc/meminfo`.
fn free_hugetlb_pages() -> u64 {
    match akagate_sys::hugepages::free_hugepages() {
        Some((free, kib)) if kib * 1024 == HUGE_PAGE as u64 => free,
        _ => 0,
    }
}

/// Maps at least `bytes` of zeroed, writable memory on huge pages: `MAP_HUGETLB` if enough
/// pages are free (not for `lazy` reservations, which also get `MAP_NORESERVE`), else a 2 MiB-aligned window of a larger anonymous mapping with
/// `MADV_HUGEPAGE`. Returns the array's base, the mapping's length (to unmap; for THP the
/// mapping starts at `base` too, its unused head and tail having been unmapped) and the kind.
fn map_huge(bytes: usize, lazy: bool) -> Option<(NonNull<libc::c_void>, usize, MemoryBacking)> {
    let rounded = bytes.checked_next_multiple_of(HUGE_PAGE)?;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let mut anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    if lazy {
        anon |= libc::MAP_NORESERVE;
    } else if free_hugetlb_pages() >= (rounded / HUGE_PAGE) as u64 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                rounded,
                prot,
                anon | libc::MAP_HUGETLB | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            return Some((NonNull::new(p)?, rounded, MemoryBacking::HugeTlb));
        }
        tracing::debug!("sad: MAP_HUGETLB of {rounded} bytes failed; trying THP");
    }
    if !thp_enabled() {
        return None;
    }
    // Over-allocate by one huge page so a 2 MiB-aligned window of `rounded` bytes fits, then
    // give the unaligned head and the tail back.
    let map_len = rounded.checked_add(HUGE_PAGE)?;
    // SAFETY: as above.
    let p = unsafe { libc::mmap(core::ptr::null_mut(), map_len, prot, anon, -1, 0) };
    if p == libc::MAP_FAILED {
        return None;
    }
    let addr = p as usize;
    let aligned = addr.checked_next_multiple_of(HUGE_PAGE)?;
    let head = aligned - addr;
    let tail = map_len - head - rounded;
    // SAFETY: `[addr, addr + head)` and `[aligned + rounded, addr + map_len)` lie inside the
    // mapping just created and nothing refers to them; `aligned..aligned + rounded` is a
    // range of that mapping too, and MADV_HUGEPAGE only changes how it is backed.
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((aligned + rounded) as *mut libc::c_void, tail);
        }
        let base = aligned as *mut libc::c_void;
        if libc::madvise(base, rounded, libc::MADV_HUGEPAGE) != 0 {
            libc::munmap(base, rounded);
            return None;
        }
        Some((NonNull::new(base)?, rounded, MemoryBacking::TransparentHuge))
    }
}

/// Asks for transparent huge pages (`MADV_HUGEPAGE`) for the 2 MiB-aligned part of
/// `[p, p + bytes)`, memory the caller owns (a large growable array); pages touched from then
/// on come as 2 MiB pages where the kernel has them. Returns true if advice was given.
pub fn advise_huge(p: *const u8, bytes: usize) -> bool {
    let start = (p as usize).next_multiple_of(HUGE_PAGE);
    let end = (p as usize).saturating_add(bytes) / HUGE_PAGE * HUGE_PAGE;
    if end <= start || !thp_enabled() {
        return false;
    }
    // SAFETY: `[start, end)` lies inside memory the caller owns (page-aligned, whole pages);
    // MADV_HUGEPAGE only changes how its pages are backed, never their contents.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) == 0 }
}

/// True if transparent huge pages are in `always` or `madvise` mode.
fn thp_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map(|s| s.contains("[always]") || s.contains("[madvise]"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn zeroed(n: usize, policy: BackingPolicy) -> HugeArray<AtomicU64> {
        // SAFETY: an `AtomicU64` of zero bytes is 0.
        unsafe { HugeArray::new_zeroed(n, policy) }
    }

    #[test]
    fn page_arrays_fill_whole_aligned_pages_and_drop_their_elements() {
        let drops = std::rc::Rc::new(());
        let mut a = PageArray::filled(1, || (drops.clone(), [0u8; 1000]));
        let cell = core::mem::size_of::<(std::rc::Rc<()>, [u8; 1000])>();
        assert_eq!(a.as_slice().len(), HUGE_PAGE / cell);
        assert_eq!(a.bytes(), HUGE_PAGE);
        assert_eq!(
            a.as_slice().as_ptr() as usize % HUGE_PAGE,
            0,
            "2 MiB aligned"
        );
        a.as_mut_slice()[7].1[999] = 5;
        assert_eq!(a.as_slice()[7].1[999], 5);
        assert_eq!(std::rc::Rc::strong_count(&drops), 1 + HUGE_PAGE / cell);
        drop(a);
        assert_eq!(
            std::rc::Rc::strong_count(&drops),
            1,
            "every element dropped"
        );
        // A panicking element maker: the elements made so far are dropped, nothing else.
        let mut made = 0;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            PageArray::filled(1, || {
                made += 1;
                assert!(made <= 3, "fourth element");
                drops.clone()
            })
        }));
        assert!(r.is_err());
        assert_eq!(
            std::rc::Rc::strong_count(&drops),
            1,
            "the three made dropped"
        );
        let z = PageArray::filled(0, || ());
        assert_eq!((z.bytes(), z.as_slice().is_empty()), (0, false));
    }

    #[test]
    fn small_arrays_stay_on_the_heap() {
        let a = zeroed(1000, BackingPolicy::Auto);
        assert_eq!(a.backing(), MemoryBacking::Plain);
        assert!(a.as_slice().iter().all(|v| v.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn large_arrays_get_huge_pages_when_the_host_offers_them() {
        let n = (4 << 20) / 8 + 3; // a bit over 4 MiB of u64
        let a = zeroed(n, BackingPolicy::Auto);
        let expect = if free_hugetlb_pages() >= 3 {
            MemoryBacking::HugeTlb
        } else if thp_enabled() {
            MemoryBacking::TransparentHuge
        } else {
            MemoryBacking::Plain
        };
        assert_eq!(a.backing(), expect);
        assert_eq!(a.as_slice().len(), n);
        assert!(a.as_slice().iter().all(|v| v.load(Ordering::Relaxed) == 0));
        a.as_slice()[n - 1].store(5, Ordering::Relaxed);
        if a.backing() != MemoryBacking::Plain {
            assert_eq!(
                a.as_slice().as_ptr() as usize % HUGE_PAGE,
                0,
                "2 MiB aligned"
            );
        }
        let plain = zeroed(n, BackingPolicy::Plain);
        assert_eq!(plain.backing(), MemoryBacking::Plain);
        assert_eq!(plain.as_slice()[n - 1].load(Ordering::Relaxed), 0);
    }
}
