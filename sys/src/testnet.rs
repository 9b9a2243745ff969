//! Throw-away network setups for tests and benches: a veth pair whose ends live in two fresh
//! network namespaces, deleted again by a guard's `Drop` (also when a test panics).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::IoError;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<(), IoError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| IoError::Sys {
            call: "exec ip",
            ifname: args.join(" "),
            source: e,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(IoError::Config(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Why namespace tests cannot run here, or `None` if they can (root and `ip netns` work).
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network-namespace tests need CAP_NET_ADMIN".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("iproute2 `ip` not found".into()),
    }
}

/// A veth pair with end `a` in namespace `ns_a` and end `b` in namespace `ns_b`, both up and
/// with IPv6 disabled (no kernel ND/MLD chatter). Dropping it deletes both namespaces, which
/// deletes the veth pair.
#[derive(Debug)]
pub struct VethPair {
    /// Namespace holding end `a`.
    pub ns_a: String,
    /// Namespace holding end `b`.
    pub ns_b: String,
    /// Interface name of end `a`.
    pub a: String,
    /// Interface name of end `b`.
    pub b: String,
}

impl VethPair {
    /// Create namespaces and a veth pair with names unique to this process and call.
    pub fn new() -> Result<Self, IoError> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}x{}", std::process::id(), n);
        let pair = VethPair {
            ns_a: format!("akg{id}a"),
            ns_b: format!("akg{id}b"),
            a: format!("ak{id}a"),
            b: format!("ak{id}b"),
        };
        if pair.a.len() > 15 {
            return Err(IoError::Config(format!(
                "interface name {} too long",
                pair.a
            )));
        }
        // From here on, Drop cleans up whatever part was created.
        ip(&["netns", "add", &pair.ns_a])?;
        ip(&["netns", "add", &pair.ns_b])?;
        ip(&[
            "link", "add", &pair.a, "netns", &pair.ns_a, "type", "veth", "peer", "name", &pair.b,
            "netns", &pair.ns_b,
        ])?;
        for (ns, dev) in [(&pair.ns_a, &pair.a), (&pair.ns_b, &pair.b)] {
            let key = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
            ip(&["netns", "exec", ns, "sysctl", "-qw", &key])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(pair)
    }

    /// Run `f` on a fresh thread inside namespace `ns` and return its result; sockets it
    /// opens stay in that namespace.
    pub fn run_in<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, IoError> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || -> Result<T, IoError> {
            let file = std::fs::File::open(&path).map_err(|e| IoError::Sys {
                call: "open netns",
                ifname: path.clone(),
                source: e,
            })?;
            // SAFETY: setns on a valid namespace fd; only this thread changes namespace.
            let r =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            if r < 0 {
                return Err(IoError::last_os("setns", &path));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| IoError::Config("thread in namespace panicked".into()))?
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
