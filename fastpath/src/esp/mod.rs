//! RFC 4303 ESP in transport mode, in place on packet buffers.
//!
//! Build an [`OutboundSa`] / [`InboundSa`] from `(spi, &Suite)`; key schedules and HMAC pad
//! states are computed once there, so per-packet processing allocates nothing.
//!
//! - A packet is `buf[range]` (an IP packet) with headroom and tailroom around it;
//!   [`OutboundSa::encapsulate`] and [`InboundSa::decapsulate`] return the new range. Only the
//!   IP header (and IPv6 extension headers before ESP) moves; the payload stays put.
//! - Callers that parsed the IP header already (the worker, `crate::wire`) pass it along:
//!   [`spi_of`], [`InboundSa::decapsulate_parsed`], [`OutboundSa::encapsulate_parsed`].
//! - Inbound order (RFC 4303 3.4): caller finds the SA by [`peek_spi`]; sequence number against
//!   the [`ReplayWindow`]; ICV in constant time; window update; decryption; padding and
//!   next-header checks. Every drop is an [`EspError`] counted in the SA's [`EspCounters`].
//! - IPv6 placement: ESP follows hop-by-hop, routing and destination options that precede a
//!   routing header; final destination options are protected inside ESP (as Linux and scapy).
//! - IVs (`iv`): CBC from the thread's CSPRNG (one per worker core); GCM/GMAC the 64-bit
//!   sequence number XOR a random mask per SA (RFC 4106 8.1; the set's SAs share key and salt). Sequence numbers are 32-bit unless `with_esn()` (RFC 4303 2.2.1).
//! - Hot path: on CPUs with AES-NI and SHA-NI, `aes-cbc` + `hmac-sha-1-96` encryption runs
//!   both algorithms stitched in one pass (`stitch`); with AES-NI and PCLMULQDQ, AES-128-GCM
//!   and GMAC run CTR stitched with an aggregated GHASH (`gcm_ni`); elsewhere the RustCrypto
//!   crates are used.
//! - Bursts: [`encapsulate_burst`] / [`decapsulate_burst`] take a burst over several SAs and
//!   give each packet the result of the single-packet call; `aes-cbc` + `hmac-sha-1-96` runs
//!   multi-buffer there (`cbc_mb`: many CBC chains in lock-step, VAES or AES-NI;
//!   `sha1_x16`: sixteen HMAC-SHA-1 messages on AVX-512 lanes; `sha1_mb`: four interleaved
//!   on SHA-NI, for small bursts and CPUs without AVX-512). With AVX-512, VAES and
//!   VPCLMULQDQ, AES-128-GCM's payload runs on 512-bit registers (`gcm_vaes`); with VAES and
//!   VPCLMULQDQ but no AVX-512 (AMD Zen 3), on 256-bit registers (`gcm_ymm`).

#[cfg(target_arch = "x86_64")]
mod aesni;
pub mod burst;
#[cfg(target_arch = "x86_64")]
mod cbc_mb;
pub mod error;
#[cfg(target_arch = "x86_64")]
mod gcm_ni;
#[cfg(target_arch = "x86_64")]
mod gcm_vaes;
#[cfg(target_arch = "x86_64")]
mod gcm_ymm;
pub mod integ;
pub mod ip;
mod iv;
pub mod replay;
pub mod sa;
#[cfg(target_arch = "x86_64")]
mod sha1_mb;
#[cfg(target_arch = "x86_64")]
mod sha1_x16;
#[cfg(target_arch = "x86_64")]
mod sha1_x8;
#[cfg(target_arch = "x86_64")]
mod stitch;
mod transform;

#[cfg(all(test, target_arch = "x86_64"))]
mod finish_tests;
#[cfg(all(test, target_arch = "x86_64"))]
mod phases;
#[cfg(all(test, target_arch = "x86_64"))]
mod seal_tests;

pub use transform::cbc;

pub use akagate_proto::suite::{self, AuthAlg, EncrAlg, SaKeys, Suite};
#[cfg(target_arch = "x86_64")]
pub use burst::CbcKernel;
pub use burst::{
    decapsulate_burst, decapsulate_burst_in, encapsulate_burst, encapsulate_burst_in, BurstError,
    DecapItem, EncapItem, SaSlots,
};
pub use error::{EspCounters, EspError, SaError};
pub use replay::{ReplayWindow, REPLAY_WINDOW};
pub use sa::{peek_spi, spi_of, InboundSa, KeyedSuite, OutboundSa, MAX_HEADROOM, MAX_TAILROOM};
