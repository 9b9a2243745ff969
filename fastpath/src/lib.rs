//! The akagate fast path: packet views (`wire`), ESP, SA tables, per-UE TCP/IP stacks and
//! the worker loop.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod copies;
pub use akagate_proto::counters;
pub mod esp;
pub use akagate_proto::ipc;
pub mod l2;
pub mod phases;
pub mod reasm;
pub mod sad;
pub mod stack;
pub mod timer;
pub mod wire;
pub mod worker;
