//! Set-up shared by the root integration tests (`daemon_*`, `metrics_endpoint`,
//! `control_socket`, `config_*`) and by `tools/tests/`: the addresses and subscriber of the
//! test bed, scratch directories, memory-backend daemons with a simulated UE on the far end
//! of the in-memory pair, SIP header look-ups, the `akagate` binary, and the control-socket
//! harness (an IMS-AKA registration through ESP, requests over the socket, pcap captures).
//!
//! - [`ue`]: the simulated UE: Ethernet frames built and read with `smoltcp::wire`.
//! - [`daemon`]: subscriber files, memory-backend configs, a started daemon with its UE.
//! - [`control`]: the control-socket harness.
//! - [`cli`]: the built `akagate` binary and `--check-config` runs.
// Each test binary uses part of this module.
#![allow(dead_code, unused_imports)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use akagate::daemon::{MEMORY_DAEMON_MAC, MEMORY_PEER_MAC};
use smoltcp::wire::EthernetAddress;

pub mod cli;
pub mod control;
pub mod daemon;
pub mod ue;

pub use cli::{akagate, akagate_bin, assert_contains_all, stdout_of_success, CheckConfig};
pub use control::{
    ask, config_in, start, write_pcap, Harness, Registered, PORT_PC, PORT_PS, PORT_UC, PORT_US,
    SPI_UC, SPI_US, UE_PORT,
};
pub use daemon::{memory_config, start_memory, subscriber, write_subscribers};
pub use ue::{ipv4_from_pcscf, ipv4_payload_from_pcscf, udp_v4, Ue};

/// The P-CSCF's IPv4 address.
pub const PCSCF_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 1);
/// The UE's IPv4 address (the Boghe client's in the REGISTER fixture).
pub const UE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 100);
/// The P-CSCF's IPv6 address.
pub const PCSCF_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The UE's IPv6 address.
pub const UE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// The UE's end of the in-memory pair.
pub const UE_MAC: EthernetAddress = EthernetAddress(MEMORY_PEER_MAC);
/// The daemon's end of the in-memory pair.
pub const PCSCF_MAC: EthernetAddress = EthernetAddress(MEMORY_DAEMON_MAC);
/// alice, the subscriber of every daemon test.
pub const IMPI: &str = "alice@open-ims.test";
/// alice's first public identity.
pub const IMPU: &str = "sip:alice@open-ims.test";
/// TS 35.208 4.3.1 Test Set 1: K.
pub const SET1_K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
/// TS 35.208 4.3.1 Test Set 1: OPc.
pub const SET1_OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
/// How long a test waits for the daemon to answer or to reach a state.
pub const WAIT: Duration = Duration::from_secs(10);

/// `s` (hex) as `N` bytes.
pub fn hx<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// A fresh, empty directory `name` under cargo's temp dir for this test target.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The value of header `name` in a SIP message.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A `name=value` parameter of a header value (quotes removed).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value
        .split([';', ','])
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().trim_matches('"'))
}
