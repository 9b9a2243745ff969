//! A counting global allocator for the benches that measure the in-process gateway: the
//! heap bytes live and the allocation calls of the allocations made while a thread was inside
//! [`in_gateway`]. Its own module so the gateway (which reads the counters around each step)
//! and the memory probe (which drives the gateway) do not import each other.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The allocator the binaries of this crate run on (akabench's `#[global_allocator]`) and
/// that [`Counting`] wraps, chosen by the crate's features as the daemon's is
/// (docs/ARCHITECTURE.md, *The allocator*): mimalloc (feature `mimalloc`, the default).
#[cfg(feature = "mimalloc")]
pub type Chosen = mimalloc::MiMalloc;
/// The allocator the binaries of this crate run on: jemalloc (feature `jemalloc` without
/// `mimalloc`).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
pub type Chosen = tikv_jemallocator::Jemalloc;
/// The allocator the binaries of this crate run on: glibc's malloc (neither feature).
#[cfg(not(any(feature = "mimalloc", feature = "jemalloc")))]
pub type Chosen = std::alloc::System;

/// The value of [`Chosen`] (all three are unit structs).
#[cfg(feature = "mimalloc")]
pub const CHOSEN: Chosen = mimalloc::MiMalloc;
/// The value of [`Chosen`].
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
pub const CHOSEN: Chosen = tikv_jemallocator::Jemalloc;
/// The value of [`Chosen`].
#[cfg(not(any(feature = "mimalloc", feature = "jemalloc")))]
pub const CHOSEN: Chosen = std::alloc::System;

/// A global allocator that forwards to the [`Chosen`] allocator and counts the bytes allocated
/// minus freed of the allocations made while their thread was inside [`in_gateway`].
/// Declare it in the binary: `#[global_allocator] static A: Counting = Counting;`.
///
/// Each allocation carries its origin in a hidden header, so a block made by the gateway and
/// freed elsewhere still counts as freed: the in-process UE simulators share code with the
/// gateway (the TCP stack, the SIP framer and its recycled message buffers,
/// `akagate_proto::msgbuf`), and a buffer the gateway allocated may be taken and freed by a
/// simulated UE. Counting by the freeing thread instead would keep such a buffer as gateway
/// memory for ever.
pub struct Counting;

thread_local! {
    static IN_GATEWAY: Cell<bool> = const { Cell::new(false) };
}
static GATEWAY_LIVE: AtomicI64 = AtomicI64::new(0);
static GATEWAY_ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Allocation calls (allocations and reallocations) counted as the gateway's since the process
/// started; always 0 unless [`Counting`] is the binary's global allocator. The in-process
/// gateway reads it around each side of a step ([`crate::gateway::StepCpu`]).
pub fn gateway_allocations() -> u64 {
    GATEWAY_ALLOCS.load(Ordering::Relaxed)
}

/// Heap bytes live in allocations counted as the gateway's (allocated minus freed); always 0
/// unless [`Counting`] is the binary's global allocator.
pub fn gateway_live() -> i64 {
    GATEWAY_LIVE.load(Ordering::Relaxed)
}

/// Whether an allocation made now is the gateway's.
fn counted_here() -> bool {
    // The worker's SA slab segments are made ahead on helper threads: gateway memory too.
    IN_GATEWAY.with(Cell::get) || akagate_fastpath::sad::on_helper_thread()
}

/// The layout actually asked of the chosen allocator for `l`, and the header's size: a
/// header of at least 16 bytes (a multiple of the alignment) in front of the caller's block,
/// its last byte the origin flag.
fn with_header(l: Layout) -> Option<(Layout, usize)> {
    let align = l.align().max(16);
    let header = align;
    let size = l.size().checked_add(header)?;
    Some((Layout::from_size_align(size, align).ok()?, header))
}

/// Marks the block behind `base` as counted or not and returns the caller's pointer.
///
/// # Safety
/// `base` is null or a live block of at least `header + 1` bytes.
unsafe fn finish(base: *mut u8, header: usize, counted: bool) -> *mut u8 {
    if base.is_null() {
        return base;
    }
    // SAFETY: the block has `header` bytes in front of the caller's part (the caller's
    // contract); the flag is the last of them.
    unsafe {
        let user = base.add(header);
        user.sub(1).write(counted as u8);
        user
    }
}

/// Allocates `l` with its header through `system` (the chosen allocator, given the full
/// layout), counting it if this thread is the gateway's now; null if that allocator fails.
fn allocate(l: Layout, system: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
    let Some((full, header)) = with_header(l) else {
        return std::ptr::null_mut();
    };
    let counted = counted_here();
    let base = system(full);
    if counted && !base.is_null() {
        GATEWAY_LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        GATEWAY_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: `base` is null or a block of `full.size()` > `header` bytes.
    unsafe { finish(base, header, counted) }
}

// SAFETY: every call is forwarded to the chosen allocator with a header of `with_header`'s
// size in front of the caller's block, and the caller's pointer is that block's start plus
// the header, aligned as asked (the header is a multiple of the alignment).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: `full` has a non-zero size (it includes the header).
        allocate(l, |full| unsafe { CHOSEN.alloc(full) })
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        allocate(l, |full| unsafe { CHOSEN.alloc_zeroed(full) })
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some((full, header)) = with_header(l) else {
            return;
        };
        // SAFETY: `p` came from `alloc`/`realloc` above with layout `l`: its block starts
        // `header` bytes before it and the flag is the byte before `p`.
        unsafe {
            if p.sub(1).read() != 0 {
                GATEWAY_LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
            }
            CHOSEN.dealloc(p.sub(header), full)
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let (Some((full, header)), Some(new_full)) =
            (with_header(l), new.checked_add(l.align().max(16)))
        else {
            return std::ptr::null_mut();
        };
        // SAFETY: as for `dealloc`; the header (and its flag) moves with the block.
        unsafe {
            let counted = p.sub(1).read() != 0;
            let base = CHOSEN.realloc(p.sub(header), full, new_full);
            if base.is_null() {
                return base;
            }
            if counted {
                GATEWAY_LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
                GATEWAY_ALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            base.add(header)
        }
    }
}

/// Runs `f` with its allocations counted as the gateway's.
pub fn in_gateway<T>(f: impl FnOnce() -> T) -> T {
    IN_GATEWAY.with(|c| c.set(true));
    let r = f();
    IN_GATEWAY.with(|c| c.set(false));
    r
}
