//! Packet I/O for akagate workers: burst receive/transmit over reusable buffers.
//!
//! One interface ([`Port`] / [`PortQueue`]) with several backends: AF_PACKET TPACKET_V3 rings
//! ([`afpacket`]), DPDK ethdev behind the cargo feature `dpdk` (`dpdk`), and an in-memory pair
//! for tests ([`mempair`]). Frames are steered to queues by the UE's IP address ([`steer`]).
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod affinity;
#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod buf;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod error;
pub mod hugepages;
pub mod mempair;
pub mod port;
pub mod sharedpool;
pub mod spsc;
pub mod steer;
#[cfg(target_os = "linux")]
pub mod testnet;

pub use buf::{BufLayout, BufPool, PacketBuf};
pub use error::{BufError, IoError};
pub use port::{LinkInfo, Port, PortQueue, QueueCounters, QueueStats, RxTally, TxTally};
pub use steer::UeSide;

/// Whether this build contains the DPDK backend (cargo feature `dpdk`).
pub const DPDK_ENABLED: bool = cfg!(feature = "dpdk");

/// How to get the DPDK backend into a build that lacks it.
pub const DPDK_HOWTO: &str = "this build has no DPDK backend: install libdpdk-dev, libclang-dev \
     and pkg-config (`make deps`), then build with `--features dpdk` (make does this when \
     `pkg-config libdpdk` succeeds)";

/// `Ok` if the DPDK backend is compiled in, otherwise an error that says how to enable it.
pub fn require_dpdk() -> Result<(), IoError> {
    if DPDK_ENABLED {
        Ok(())
    } else {
        Err(IoError::Config(DPDK_HOWTO.into()))
    }
}
