//! The daemon in namespace A of a veth pair (`af_packet` backend), for the AF_PACKET and
//! DPDK end-to-end tests: skipped without root, stopped and cleaned up on drop, and the
//! namespaces checked gone afterwards.

use std::path::PathBuf;

use akagate::DaemonHandle;
use akagate_bench::netns::VethLink;
use akagate_sys::testnet::unavailable_reason;

/// Why namespaces and AF_PACKET are not available here (printed), or `None`.
pub fn skip_reason() -> Option<String> {
    let r = unavailable_reason();
    if let Some(why) = &r {
        eprintln!("skipped: {why}");
    }
    r
}

/// The daemon and its scratch directory; dropping it (also on a failed assertion) stops the
/// daemon, removes the directory and then, with `link`, both namespaces.
pub struct NetnsDaemon {
    /// The daemon in namespace A, once started.
    pub daemon: Option<DaemonHandle>,
    /// Its scratch directory (config, subscriber files, reports).
    pub dir: PathBuf,
    /// The veth pair between namespace A and namespace B.
    pub link: VethLink,
}

impl Drop for NetnsDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

impl NetnsDaemon {
    /// Stops the daemon (if it runs) and removes the scratch directory; the namespaces stay
    /// until the drop.
    pub fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            let _ = d.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The running daemon.
    pub fn daemon(&self) -> &DaemonHandle {
        self.daemon.as_ref().expect("daemon running")
    }

    /// The names of both namespaces, for [`assert_namespaces_removed`] after the drop.
    pub fn namespaces(&self) -> [String; 2] {
        [self.link.pair.ns_a.clone(), self.link.pair.ns_b.clone()]
    }
}

/// Neither of `namespaces` is left behind.
pub fn assert_namespaces_removed(namespaces: [String; 2]) {
    for n in namespaces {
        assert!(
            !std::path::Path::new(&format!("/var/run/netns/{n}")).exists(),
            "namespace {n} left behind"
        );
    }
}
