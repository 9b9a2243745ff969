//! SPI-indexed, epoch-protected table of inbound SAs (see docs/ARCHITECTURE.md, "SPI-indexed
//! SA table"): the slowpath allocates SPIs and installs/removes SAs, workers look them up lock-free.
//!
//! An SPI is `generation << slot_bits | slot`; the table is one preallocated array of
//! epoch-protected pointers indexed by the slot. Workers read it under a [`ReadGuard`] that they
//! re-pin once per receive burst (see [`ReadGuard`] for why that matters).

mod backing;
mod guard;
mod slab;
mod spi;
mod table;

pub use akagate_proto::spi::{SadError, SpiAllocator, RESERVED_SPI_MAX};
pub use backing::{BackingPolicy, MemoryBacking, HUGE_PAGE};
pub use guard::{pin, ReadGuard};
pub use spi::{SpiLayout, MAX_CAPACITY, MIN_GENERATION_BITS};
pub use table::SaTable;
