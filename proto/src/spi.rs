//! Inbound SPI allocation as the slowpath sees it: the [`SpiAllocator`] trait, the SPI range
//! rule and the SA table's error (none of which carries key material).

/// SPIs `0..=RESERVED_SPI_MAX` are never issued: 1..=255 are reserved by IANA and 0 is for
/// local use only (RFC 4303 2.1).
pub const RESERVED_SPI_MAX: u32 = 255;

/// Issues and takes back inbound SPIs without knowing what kind of SA they will carry, so the
/// slowpath's sec-agree code can choose `spi_pc` / `spi_ps` (TS 33.203 7.1) on its own. The
/// fast path's SA table implements it.
pub trait SpiAllocator: Send + Sync {
    /// Allocates a fresh inbound SPI (never in `0..=RESERVED_SPI_MAX`, RFC 4303 2.1).
    fn allocate(&self) -> Result<u32, SadError>;
    /// Releases `spi`, removing its SA first if one is installed; the slot's generation advances
    /// so the same SPI is not reissued while late packets of the old SA may still arrive.
    fn release(&self, spi: u32) -> Result<(), SadError>;
}

/// Why an SA table operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SadError {
    /// The requested capacity is zero or above the table's largest supported capacity.
    #[error("SA table capacity {capacity} is outside 1..={max}")]
    InvalidCapacity {
        /// The capacity that was asked for.
        capacity: usize,
        /// The largest supported capacity.
        max: usize,
    },
    /// Every slot is allocated; no inbound SPI can be issued until one is released.
    #[error("SA table exhausted: all {capacity} SPIs are allocated")]
    Exhausted {
        /// The table's capacity.
        capacity: usize,
    },
    /// The SPI is not currently allocated (never issued, already released, or a stale
    /// generation of a reissued slot).
    #[error("SPI {spi:#010x} is not allocated")]
    NotAllocated {
        /// The SPI concerned.
        spi: u32,
    },
    /// The SPI is allocated but has no SA installed (e.g. removed twice).
    #[error("SPI {spi:#010x} has no SA installed")]
    NotInstalled {
        /// The SPI concerned.
        spi: u32,
    },
    /// The SPI already has an SA installed; remove it first.
    #[error("SPI {spi:#010x} already has an SA installed")]
    AlreadyInstalled {
        /// The SPI concerned.
        spi: u32,
    },
}
