//! The akagate slowpath: SIP, sec-agree, IMS-AKA, registrar and proxy, written sans-IO.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod aka;
mod context;
pub mod core;
pub mod hss;
pub mod proxy;
pub mod registrar;
pub mod secagree;
pub mod sip;
pub mod upstream;
pub use crate::core::{Core, CoreConfig, CoreStats, Withheld};
