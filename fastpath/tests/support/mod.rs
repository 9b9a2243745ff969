//! Set-up shared by the fast path's scenario tests (`worker_esp_e2e`, `worker_noalloc`,
//! `worker_neighbors`, `worker_handoff`, `worker_install`, `stack_sip_flows`, `nopanic_worker`
//! and the `l2_frame` fuzz target):
//! the addresses, ports and SPIs of the test bed (TS 33.203 7.1 names), a worker on one end
//! of an in-memory port pair, the SA set both sides install, and frames built with
//! `smoltcp::wire`.
//!
//! - [`bed`]: the worker configuration, one worker on an in-memory pair, the SA set and the
//!   UE's mirror SAs.
//! - [`frames`]: Ethernet, ARP and UDP/IPv4 packets, ESP encapsulation with room to spare.
//! - [`protected`]: a worker with one UE's SA set and that UE's stack on the other end,
//!   stepped together (`worker_noalloc`, `worker_copies`).
// Each test binary uses part of this module.
#![allow(dead_code, unused_imports)]

use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::wire::EthernetAddress;

pub mod bed;
pub mod frames;
pub mod protected;

pub use bed::{sa_set, suite, ue_sas, worker_config, worker_on_pair, PairSizes, WorkerOnPair};
pub use frames::{arp, encapsulate, eth_frame, neighbor_solicit, send_frame, udp_v4, udp_v6};

/// The P-CSCF's (the worker's) MAC address.
pub const PCSCF_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
/// The simulated UE's MAC address.
pub const UE_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);
/// The P-CSCF's IPv4 address (in a /24 with the UE).
pub const PCSCF_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The UE's IPv4 address.
pub const UE_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
/// The P-CSCF's IPv6 address (in a /64 with the UE).
pub const PCSCF_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The UE's IPv6 address.
pub const UE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
/// The unprotected SIP port.
pub const SIP_PORT: u16 = 5060;
/// The P-CSCF's protected server port (port_ps).
pub const PORT_PS: u16 = 5064;
/// The P-CSCF's protected client port (port_pc).
pub const PORT_PC: u16 = 5066;
/// The UE's protected client port (port_uc).
pub const PORT_UC: u16 = 31800;
/// The UE's protected server port (port_us).
pub const PORT_US: u16 = 31900;
/// The UE's inbound SPI at port_uc (spi_uc): the P-CSCF sends port_ps -> port_uc through it.
pub const SPI_UC: u32 = 0x0100_0001;
/// The UE's inbound SPI at port_us (spi_us): the P-CSCF sends port_pc -> port_us through it.
pub const SPI_US: u32 = 0x0100_0002;
