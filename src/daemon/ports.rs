//! Opening the configured port backend: AF_PACKET on an interface, DPDK from EAL arguments
//! (cargo feature `dpdk`), or an in-memory pair whose far end stays with the caller.

use akagate_sys::mempair::{mem_pair, MemEndConfig, MemPairConfig, MemPort};
use akagate_sys::{IoError, UeSide};

use crate::config::Config;

/// Our end's Ethernet address on the in-memory link (locally administered).
pub const MEMORY_DAEMON_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
/// The far end's Ethernet address on the in-memory link.
pub const MEMORY_PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];

/// The in-memory link for `config`: `(daemon end, peer end)`. The daemon end has one queue per
/// worker and steers by the UE (source) address like AF_PACKET fanout; the peer end, where
/// simulated UEs live, has one queue.
pub fn memory_pair(config: &Config) -> Result<(MemPort, MemPort), IoError> {
    let defaults = MemPairConfig::default();
    mem_pair(&MemPairConfig {
        a: MemEndConfig {
            name: "akagate-mem".into(),
            mac: MEMORY_DAEMON_MAC,
            queues: config.cores.workers.len(),
            ue_side: UeSide::Source,
        },
        b: MemEndConfig {
            name: "ue-mem".into(),
            mac: MEMORY_PEER_MAC,
            queues: 1,
            ue_side: UeSide::Destination,
        },
        ..defaults
    })
}

/// An AF_PACKET port on `interface` with one fanout member per worker.
#[cfg(target_os = "linux")]
pub(super) fn af_packet(
    config: &Config,
    interface: &str,
) -> Result<akagate_sys::afpacket::AfPacketPort, IoError> {
    let mut cfg = akagate_sys::afpacket::AfPacketConfig::new(interface);
    cfg.queues = config.cores.workers.len();
    cfg.ue_side = UeSide::Source;
    akagate_sys::afpacket::AfPacketPort::open(&cfg)
}

/// The device named in EAL arguments: the first `--vdev`'s name or `-a`/`--allow` address.
pub fn dpdk_device(eal_args: &[String]) -> Option<String> {
    let mut it = eal_args.iter();
    while let Some(a) = it.next() {
        let value = if let Some(v) = a.strip_prefix("--vdev=") {
            Some(v.to_string())
        } else if let Some(v) = a.strip_prefix("--allow=") {
            Some(v.to_string())
        } else if a == "--vdev" || a == "-a" || a == "--allow" {
            it.next().cloned()
        } else {
            a.strip_prefix("-a")
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        if let Some(v) = value {
            let name = v.split(',').next().unwrap_or_default().trim().to_string();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}

/// A started DPDK port for the device in `eal_args` (the EAL is initialised first).
#[cfg(feature = "dpdk")]
pub(super) fn dpdk(
    config: &Config,
    eal_args: &[String],
) -> Result<akagate_sys::dpdk::DpdkPort, IoError> {
    use akagate_sys::dpdk::{eal_init, DpdkConfig, DpdkPort};
    let device = dpdk_device(eal_args).ok_or_else(|| {
        IoError::Config(
            "port.eal-args name no device: add --vdev=NAME,... or -a PCI-ADDRESS".into(),
        )
    })?;
    let mut args = vec!["akagate".to_string()];
    args.extend_from_slice(eal_args);
    eal_init(&args)?;
    let mut cfg = DpdkConfig::new(&device);
    cfg.queues = config.cores.workers.len();
    // Hashed with the UE's address when the NIC cannot hash the source alone; UEs talking to
    // another of our addresses reach their worker through the handoff rings.
    cfg.rss_local_v4 = config.addresses.ipv4.first().copied();
    cfg.rss_local_v6 = config.addresses.ipv6.first().copied();
    DpdkPort::open(&cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn device_from_eal_args() {
        assert_eq!(
            dpdk_device(&s(&["--no-huge", "--vdev=net_af_packet0,iface=veth0"])).as_deref(),
            Some("net_af_packet0")
        );
        assert_eq!(
            dpdk_device(&s(&["-a", "0000:03:00.0", "-l", "1"])).as_deref(),
            Some("0000:03:00.0")
        );
        assert_eq!(
            dpdk_device(&s(&["-a0000:04:00.1,rxq=2"])).as_deref(),
            Some("0000:04:00.1")
        );
        assert_eq!(dpdk_device(&s(&["--no-huge", "--no-pci"])), None);
        assert_eq!(dpdk_device(&s(&["--vdev"])), None);
    }
}
