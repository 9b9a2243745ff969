//! Typed errors of the packet I/O layer.

use std::io;

/// A packet-buffer operation would leave the buffer's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    /// The requested data range does not lie inside the buffer.
    #[error("range {start}..{end} outside buffer of {capacity} bytes")]
    OutOfBounds {
        /// Start of the requested range.
        start: usize,
        /// End of the requested range.
        end: usize,
        /// Total buffer size.
        capacity: usize,
    },
    /// Not enough headroom in front of the data.
    #[error("need {need} bytes of headroom, have {have}")]
    NoHeadroom {
        /// Bytes requested.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Not enough tailroom behind the data.
    #[error("need {need} bytes of tailroom, have {have}")]
    NoTailroom {
        /// Bytes requested.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// Opening or configuring a port failed.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A system call failed.
    #[error("{call} on {ifname}: {source}")]
    Sys {
        /// The failing call, e.g. `setsockopt(PACKET_RX_RING)`.
        call: &'static str,
        /// Interface the call was for.
        ifname: String,
        /// The OS error.
        source: io::Error,
    },
    /// The interface does not exist (in the calling thread's network namespace).
    #[error("no such interface {0:?}")]
    NoSuchInterface(String),
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The requested CPU core does not exist or is not usable by this process.
    #[error("core {core} does not exist or is not allowed; usable cores: {available:?}")]
    NoSuchCore {
        /// Core that was asked for.
        core: usize,
        /// Cores this process may run on.
        available: Vec<usize>,
    },
    /// Pinning the thread to a core failed.
    #[error("could not pin thread to core {0}")]
    PinFailed(usize),
    /// The DPDK backend reported an error.
    #[error("dpdk: {0}")]
    Dpdk(String),
}

impl IoError {
    /// Wrap the current `errno` as an [`IoError::Sys`].
    pub(crate) fn last_os(call: &'static str, ifname: &str) -> Self {
        IoError::Sys {
            call,
            ifname: ifname.to_owned(),
            source: io::Error::last_os_error(),
        }
    }
}
