//! The AF_PACKET test bed: two fresh network namespaces joined by a veth pair, the akagate
//! daemon on end `a` (its `af_packet` backend opened inside namespace `a`) and the simulated
//! UEs' AF_PACKET port on end `b` (opened inside namespace `b`), or a DPDK port on end `b`
//! through the `net_af_packet` vdev ([`VethLink::ue_eal_args`]). Needs root.
//!
//! The kernels of both namespaces stay out of the way: neither end has an address, so the
//! UEs' and the P-CSCF's TCP is never answered or reset by a kernel stack (AF_PACKET sees
//! every frame anyway), and IPv6 is disabled on both ends (no DAD, RS or MLD frames).
//! Checksums: frames written through AF_PACKET keep the checksums their writer computed
//! (veth passes them unchanged, with offload on or off; `e2e_afpacket` verifies every TCP and
//! UDP checksum it sees); only segments of a kernel TCP stack would reach a packet socket with a
//! partial checksum (CHECKSUM_PARTIAL). Offload is switched off anyway, so a kernel packet on
//! the link could not carry one either.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use akagate::config::Backend;
use akagate::{Daemon, DaemonHandle};
use akagate_sys::afpacket::{AfPacketConfig, AfPacketPort, AfPacketQueue};
use akagate_sys::testnet::VethPair;
use akagate_sys::{IoError, Port};

use crate::daemon::{daemon_config, start_options, DAEMON_V4, DAEMON_V6};

/// Why the bed could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Creating the namespaces or the veth pair, or opening a port, failed.
    #[error("{0}")]
    Io(#[from] IoError),
    /// A helper command (`ip`, `ethtool`) failed.
    #[error("{0}")]
    Command(String),
    /// The daemon's configuration or start failed.
    #[error("daemon: {0}")]
    Daemon(String),
}

/// Two namespaces and the veth pair between them; dropping it deletes both namespaces (and
/// with them the pair), also when a test panics.
#[derive(Debug)]
pub struct VethLink {
    /// Namespaces and interface names.
    pub pair: VethPair,
    /// Whether `ethtool` switched checksum offload off on both ends (false: no `ethtool`).
    pub offload_off: bool,
}

/// Runs `ethtool -K dev tx off rx off` in namespace `ns`; `Ok(false)` if there is no ethtool.
pub fn checksum_offload_off(ns: &str, dev: &str) -> Result<bool, NetnsError> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off",
        ])
        .output()
        .map_err(|e| NetnsError::Command(format!("ip netns exec {ns} ethtool: {e}")))?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // `ip netns exec` reports a missing program as exec failure with status 255.
    if err.contains("No such file") || err.contains("not found") {
        return Ok(false);
    }
    Err(NetnsError::Command(format!(
        "ethtool -K {dev} tx off rx off in {ns}: {}",
        err.trim()
    )))
}

impl VethLink {
    /// Fresh namespaces `pair.ns_a` / `pair.ns_b` with veth ends `pair.a` / `pair.b`, up,
    /// without IPv6 and (if `ethtool` is installed) without checksum offload.
    pub fn new() -> Result<Self, NetnsError> {
        let pair = VethPair::new()?;
        let mut offload_off = true;
        for (ns, dev) in [(&pair.ns_a, &pair.a), (&pair.ns_b, &pair.b)] {
            offload_off &= checksum_offload_off(ns, dev)?;
        }
        Ok(VethLink { pair, offload_off })
    }

    /// Opens a one-queue AF_PACKET port on end `b` inside namespace `b` and returns its queue
    /// (the simulated UEs' side).
    pub fn open_ue_queue(&self) -> Result<AfPacketQueue, NetnsError> {
        let iface = self.pair.b.clone();
        let q = VethPair::run_in(&self.pair.ns_b, move || -> Result<_, IoError> {
            let mut port = AfPacketPort::open(&AfPacketConfig::new(&iface))?;
            port.take_queues()
                .pop()
                .ok_or_else(|| IoError::Config(format!("{iface}: no queue")))
        })??;
        Ok(q)
    }

    /// EAL arguments (after `argv[0]`) for a DPDK port of the simulated UEs on end `b`: no
    /// huge pages, no PCI scan, no shared configuration (hence no multi-process socket) and no
    /// telemetry socket, so nothing is shared with another DPDK process on the host, and
    /// `net_af_packet0` on end `b`. The EAL must start in a thread inside namespace `b` (the
    /// PMD opens its socket there), e.g. under [`VethPair::run_in`] or `ip netns exec`.
    pub fn ue_eal_args(&self) -> String {
        format!(
            "--no-huge --no-pci --no-shconf --no-telemetry -m 128 -l 0 --log-level=error \
             --vdev=net_af_packet0,iface={}",
            self.pair.b
        )
    }

    /// Writes the daemon's af_packet configuration into `dir` (see [`daemon_config`]) and
    /// starts the daemon inside namespace `a` on end `a` with [`start_options`], its control
    /// socket in `dir`.
    pub fn start_daemon(
        &self,
        dir: &Path,
        subscribers: &Path,
        workers: usize,
        sa_capacity: usize,
    ) -> Result<DaemonHandle, NetnsError> {
        let subs = std::fs::canonicalize(subscribers)
            .map_err(|e| NetnsError::Daemon(format!("{}: {e}", subscribers.display())))?;
        let interface = self.pair.a.clone();
        let mut template =
            daemon_config(Backend::AfPacket { interface }, &subs, workers, sa_capacity);
        template.control_socket = Some(dir.join("akagate.sock"));
        let path = dir.join("akagate.toml");
        let config = template
            .write(&path)
            .map_err(|e| NetnsError::Daemon(format!("{}: {e:?}", path.display())))?;
        let opts = start_options(dir);
        // The worker threads are spawned from the thread inside namespace `a`; their socket
        // is already open there, so where they run later does not matter.
        let handle = VethPair::run_in(&self.pair.ns_a, move || Daemon::start(&config, opts))?
            .map_err(|e| NetnsError::Daemon(e.to_string()))?;
        Ok(handle)
    }

    /// The daemon's address of the family of `ue` ([`DAEMON_V4`] or [`DAEMON_V6`]).
    pub fn pcscf_for(ue: IpAddr) -> IpAddr {
        match ue {
            IpAddr::V4(_) => IpAddr::V4(DAEMON_V4),
            IpAddr::V6(_) => IpAddr::V6(DAEMON_V6),
        }
    }
}

/// A fresh directory under the system temp dir for one bed's files (configuration, SQN
/// state, control socket); the caller removes it.
pub fn scratch_dir(tag: &str) -> Result<PathBuf, NetnsError> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("akagate-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| NetnsError::Command(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}
