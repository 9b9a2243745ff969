//! Packet I/O for akagate workers: burst receive/transmit over reusable buffers.
//!
//! One interface ([`Port`] / [`PortQueue`]) with several backends: AF_PACKET TPACKET_V3 rings
//! ([`afpacket`]), DPDK ethdev behind the cargo feature `dpdk` (`dpdk`), and an in-memory pair
//! for tests ([`mempair`]). Frames are steered to queues by the UE's IP address ([`steer`]).

pub mod affinity;
#[cfg(target_os = "linux")]
pub mod afpacket;
pub mod buf;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod error;
pub mod mempair;
pub mod port;
pub mod steer;
#[cfg(target_os = "linux")]
pub mod testnet;

pub use buf::{BufLayout, BufPool, PacketBuf};
pub use error::{BufError, IoError};
pub use port::{LinkInfo, Port, PortQueue, QueueCounters, QueueStats};
pub use steer::UeSide;
