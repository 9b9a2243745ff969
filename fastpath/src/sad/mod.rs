//! SPI-indexed table of inbound SAs' entries (see docs/ARCHITECTURE.md, "SPI-indexed SA
//! table"): the slowpath allocates SPIs, entries are installed and removed under the
//! allocator's lock, workers look them up lock-free.
//!
//! An SPI is `generation << slot_bits | slot`; the table is one preallocated array of
//! 64-byte slots indexed by the slot, each holding its SPI and entry inline under a sequence
//! lock, so a lookup is one cache line and copies the entry out.

mod backing;
mod spare;
mod spi;
mod table;

pub use akagate_proto::spi::{SadError, SpiAllocator, RESERVED_SPI_MAX};
pub use backing::{advise_huge, BackingPolicy, MemoryBacking, PageArray, HUGE_PAGE};
pub use spare::{helper_cpu_ns, on_helper_thread, Spare};
pub use spi::{SpiLayout, MAX_CAPACITY, MIN_GENERATION_BITS};
pub use table::{FlatEntry, SaTable, ENTRY_WORDS};

/// Starts loading the cache line at `p` (a hint: reads nothing, never faults, whatever `p`).
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86_64 baseline; PREFETCHT0 is a hint that never faults
        // and reads nothing the program can observe, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts loading the cache line at `p` into the L2 cache (`PREFETCHT1`; a hint: reads
/// nothing, never faults, whatever `p`). For lines wanted a little later and asked for with
/// many others, as a burst's SA transforms just before its decapsulation: on AMD Zen 4 such
/// `PREFETCHT0`s, issued while the L1's miss buffers are held by other misses, measured as
/// mostly dropped (the lines missed again when read; an inference from the bench's phases,
/// the VM has no counters), where `PREFETCHT1`s are queued by the L2 (docs/BENCHMARKS.md,
/// *Flat SA lookup on Zen 4, round 19*). An L2 hit costs the reader a few cycles more than
/// an L1 hit, nothing next to a miss.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch_l2<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        // SAFETY: SSE is part of the x86_64 baseline; PREFETCHT1 is a hint that never faults
        // and reads nothing the program can observe, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
