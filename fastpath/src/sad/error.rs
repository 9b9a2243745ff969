//! Errors of the SA table; none of them carries key material.

/// Why an SA table operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SadError {
    /// The requested capacity is zero or above [`MAX_CAPACITY`](super::MAX_CAPACITY).
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
