//! akagate, the P-CSCF security edge: the validated configuration ([`config`]) and the daemon
//! that wires port queues, pinned fast-path workers and the slowpath thread together ([`daemon`]).
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod control;
pub mod daemon;
pub mod logger;
pub mod metrics;
pub mod stats;

pub use daemon::{Daemon, DaemonHandle, IdlePolicy, Pinning, StartError, StartOptions};
pub use stats::Stats;
