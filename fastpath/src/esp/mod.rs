//! RFC 4303 ESP in transport mode, in place on packet buffers.
//!
//! Build an [`OutboundSa`] / [`InboundSa`] from `(spi, &Suite)`; key schedules and HMAC pad
//! states are computed once there, so per-packet processing allocates nothing.

#[cfg(target_arch = "x86_64")]
mod aesni;
pub mod error;
pub mod integ;
pub mod ip;
pub mod replay;
pub mod sa;
#[cfg(target_arch = "x86_64")]
mod stitch;
pub mod suite;
mod transform;

pub use transform::cbc;

pub use error::{EspCounters, EspError, SaError};
pub use replay::{ReplayWindow, REPLAY_WINDOW};
pub use sa::{peek_spi, InboundSa, OutboundSa, MAX_HEADROOM, MAX_TAILROOM};
pub use suite::{AuthAlg, EncrAlg, SaKeys, Suite};
