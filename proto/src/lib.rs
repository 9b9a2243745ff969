//! The contract between akagate's fast path and its slowpath.
//!
//! Both sides depend on this crate and on nothing of each other: what a worker reports
//! ([`ipc::WorkerEvent`]), what the slowpath asks of it ([`ipc::WorkerCommand`], with the
//! [`ipc::SaSet`] descriptor and its negotiated [`suite::Suite`]), how inbound SPIs are
//! issued ([`spi::SpiAllocator`]), the one [`Transport`] enum, and the SIP header-line
//! scanner ([`sipscan`]) that the fast path's stream framer and the slowpath's parser share,
//! so the two cannot disagree on where a message ends; and the counter descriptors
//! ([`counters`](mod@counters)) both sides' statistics are declared with, so every counter's name, help text
//! and kind are written once; and the process-wide queue of recycled SIP message buffers
//! ([`msgbuf`]) the workers frame into and the slowpath gives back. It depends on no other akagate crate.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod counters;
pub mod hash;
pub mod ipc;
pub mod msgbuf;
pub mod shard;
pub mod simd;
pub mod sipscan;
pub mod spi;
pub mod stream;
pub mod suite;
pub mod swar;
mod transport;

pub use transport::Transport;
