//! Starting the real akagate daemon in-process on the memory backend (its worker and slowpath
//! threads, `Daemon::start`), with the far end of the in-memory pair for simulated UEs.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use akagate::config::{Backend, ConfigTemplate};
use akagate::{Daemon, DaemonHandle, StartOptions};
use akagate_sys::mempair::MemQueue;
use akagate_sys::Port;

/// The daemon's IPv4 address on the memory link.
pub const DAEMON_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The daemon's IPv6 address on the memory link.
pub const DAEMON_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The daemon's protected client port (port_pc).
pub const PORT_PC: u16 = 5100;
/// The daemon's protected server port (port_ps).
pub const PORT_PS: u16 = 6100;

/// A running daemon and the UE end of its in-memory link.
pub struct MemoryDaemon {
    /// The daemon; dropping it stops the threads.
    pub handle: DaemonHandle,
    /// The queue of the link's far end.
    pub queue: MemQueue,
}

impl core::fmt::Debug for MemoryDaemon {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryDaemon").finish_non_exhaustive()
    }
}

/// Writes the memory-backend [`daemon_config`] into `dir` for the subscriber file
/// `subscribers` and starts the daemon with [`start_options`].
pub fn start_memory_daemon(
    dir: &Path,
    subscribers: &Path,
    workers: usize,
    sa_capacity: usize,
) -> Result<MemoryDaemon, String> {
    start_memory_daemon_with(dir, subscribers, workers, sa_capacity, |_| {})
}

/// [`start_memory_daemon`] with `tweak` applied to the loaded configuration before start.
pub fn start_memory_daemon_with(
    dir: &Path,
    subscribers: &Path,
    workers: usize,
    sa_capacity: usize,
    tweak: impl FnOnce(&mut akagate::config::Config),
) -> Result<MemoryDaemon, String> {
    let opts = start_options(dir);
    start_memory_daemon_opts(dir, subscribers, workers, sa_capacity, tweak, opts)
}

/// [`start_memory_daemon_with`] with the given start options instead of [`start_options`]
/// (e.g. busy-polling workers, as in production).
pub fn start_memory_daemon_opts(
    dir: &Path,
    subscribers: &Path,
    workers: usize,
    sa_capacity: usize,
    tweak: impl FnOnce(&mut akagate::config::Config),
    opts: StartOptions,
) -> Result<MemoryDaemon, String> {
    let subs = std::fs::canonicalize(subscribers)
        .map_err(|e| format!("{}: {e}", subscribers.display()))?;
    let path = dir.join("akagate.toml");
    let mut config = daemon_config(Backend::Memory, &subs, workers, sa_capacity)
        .write(&path)
        .map_err(|e| format!("{}: {e:?}", path.display()))?;
    tweak(&mut config);
    let mut handle = Daemon::start(&config, opts).map_err(|e| e.to_string())?;
    let mut peer = handle
        .take_memory_peer()
        .ok_or("the memory backend kept no peer end")?;
    let queue = peer.take_queues().pop().ok_or("peer end without a queue")?;
    Ok(MemoryDaemon { handle, queue })
}

/// The bench daemon's configuration on `backend`: addresses [`DAEMON_V4`] / [`DAEMON_V6`] with
/// SIP on 5060, protected ports [`PORT_PC`] / [`PORT_PS`], every ESP algorithm allowed,
/// `workers` worker threads (cores `0..workers`, for pinned runs), `subscribers` as the HSS
/// file and an SA table for at least `sa_capacity` SPIs (a power of two, at least 1024).
pub fn daemon_config(
    backend: Backend,
    subscribers: &Path,
    workers: usize,
    sa_capacity: usize,
) -> ConfigTemplate {
    ConfigTemplate {
        backend,
        ipv4: vec![DAEMON_V4],
        ipv6: vec![DAEMON_V6],
        profile: "all".into(),
        port_pc: PORT_PC,
        port_ps: PORT_PS,
        workers: (0..workers.max(1)).collect(),
        slowpath: vec![],
        subscribers: Some(subscribers.to_path_buf()),
        sa_capacity: sa_capacity.next_power_of_two().max(1024),
        ..ConfigTemplate::default()
    }
    .all_algorithms()
}

/// How the benches start a daemon: unpinned, its SQN state in `dir`, and event and command
/// queues deep enough for bursts of thousands of UEs.
pub fn start_options(dir: &Path) -> StartOptions {
    let mut opts = StartOptions::unpinned();
    opts.sqn_state = Some(dir.join("sqn.state"));
    opts.event_queue = 64 * 1024;
    opts.command_queue = 64 * 1024;
    opts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn af_packet_config_is_valid_with_rounded_capacity() {
        let mut template = daemon_config(
            Backend::AfPacket {
                interface: "veth-x".into(),
            },
            Path::new("/tmp/subs.toml"),
            2,
            3000,
        );
        template.control_socket = Some("/tmp/x.sock".into());
        let c = template.build().expect("valid configuration");
        assert_eq!(
            c.port.backend,
            Backend::AfPacket {
                interface: "veth-x".into()
            }
        );
        assert_eq!(c.cores.workers, vec![0, 1]);
        assert_eq!(c.sa_table.capacity, 4096);
        assert_eq!(c.control.socket, Some("/tmp/x.sock".into()));
        assert_eq!(c.addresses.ipv4, vec![DAEMON_V4]);
        assert_eq!(c.addresses.ipv6, vec![DAEMON_V6]);
        let p = &c.ims_aka_profiles[0];
        assert_eq!((p.port_pc, p.port_ps), (PORT_PC, PORT_PS));
    }
}
