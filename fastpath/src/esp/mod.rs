//! RFC 4303 ESP in transport mode, in place on packet buffers.

pub mod suite;

pub use suite::{AuthAlg, EncrAlg, SaKeys, Suite};
