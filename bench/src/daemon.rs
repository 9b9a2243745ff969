//! Starting the real akagate daemon in-process on the memory backend (its worker and slowpath
//! threads, `Daemon::start`), with the far end of the in-memory pair for simulated UEs.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use akagate::config::Config;
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

/// Writes a memory-backend configuration into `dir` (addresses [`DAEMON_V4`]/[`DAEMON_V6`],
/// every ESP algorithm allowed, ports [`PORT_PC`]/[`PORT_PS`], `workers` worker threads) for
/// the subscriber file `subscribers`, and starts the daemon unpinned with its SQN state in
/// `dir`.
pub fn start_memory_daemon(
    dir: &Path,
    subscribers: &Path,
    workers: usize,
    sa_capacity: usize,
) -> Result<MemoryDaemon, String> {
    let subs = std::fs::canonicalize(subscribers)
        .map_err(|e| format!("{}: {e}", subscribers.display()))?;
    let cores: Vec<String> = (0..workers.max(1)).map(|i| i.to_string()).collect();
    let text = format!(
        r#"
[[sip-ports]]
address = "{DAEMON_V4}"
port = 5060
ims-aka-profile = "all"

[[sip-ports]]
address = "{DAEMON_V6}"
port = 5060
ims-aka-profile = "all"

[[ims-aka-profile]]
name = "all"
protected-client-port = {PORT_PC}
protected-server-port = {PORT_PS}
encr-alg-list = ["aes-cbc", "aes-gcm", "des-ede3-cbc", "null"]
auth-alg-list = ["hmac-sha-1-96", "hmac-md5-96", "aes-gmac"]

[port]
backend = "memory"

[cores]
workers = [{}]

[addresses]
ipv4 = ["{DAEMON_V4}"]
ipv6 = ["{DAEMON_V6}"]

[subscribers]
file = "{}"

[sa-table]
capacity = {}
"#,
        cores.join(", "),
        subs.display(),
        sa_capacity.next_power_of_two().max(1024),
    );
    let path = dir.join("akagate.toml");
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = Config::load(&path).map_err(|e| format!("{}: {e:?}", path.display()))?;
    let mut opts = StartOptions::unpinned();
    opts.sqn_state = Some(dir.join("sqn.state"));
    opts.event_queue = 64 * 1024;
    opts.command_queue = 64 * 1024;
    let mut handle = Daemon::start(&config, opts).map_err(|e| e.to_string())?;
    let mut peer = handle
        .take_memory_peer()
        .ok_or("the memory backend kept no peer end")?;
    let queue = peer.take_queues().pop().ok_or("peer end without a queue")?;
    Ok(MemoryDaemon { handle, queue })
}
