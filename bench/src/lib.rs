//! UE simulator, pktgen harness and benchmark helpers for akagate.
//!
//! [`ue::Ue`] is a sans-IO simulated UE (Ethernet, ESP, TCP/UDP, IMS-AKA, SIP calls);
//! [`fleet::Fleet`] runs many of them behind one port queue; [`gateway::InProcessGateway`]
//! steps the real fast-path worker and slowpath core in-process for tests and `akabench`;
//! [`load`] is the `akabench` run and [`report`] its statistics; `netns` is the AF_PACKET bed
//! (two namespaces and a veth pair, Linux only); [`memprobe`] the heap per registered UE; [`core`] is `akacore`, the S-CSCF + HSS
//! behind akagate in proxy mode.
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod alloccount;
pub mod cli;
pub mod core;
pub mod cputime;
pub mod daemon;
pub mod fleet;
pub mod gateway;
pub mod load;
pub mod memprobe;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod pktgen;
pub mod placement;
pub mod report;
pub mod ue;
