//! akagate, the P-CSCF security edge: the validated configuration ([`config`]) and the daemon
//! that wires port queues, pinned fast-path workers and the slowpath thread together ([`daemon`]).

pub mod config;
pub mod control;
pub mod daemon;
pub mod logger;

pub use daemon::{Daemon, DaemonHandle, IdlePolicy, Pinning, StartError, StartOptions, Stats};
