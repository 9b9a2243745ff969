//! Memory-backend daemons for the tests: subscriber files, configs written from
//! `ConfigTemplate` and loaded like `--config`, and a started daemon with its simulated UE.

use std::path::Path;

use akagate::config::{Config, ConfigTemplate};
use akagate::{Daemon, DaemonHandle, StartOptions};

use super::{Ue, PCSCF_V4, SET1_K, SET1_OPC};

/// A `[[subscriber]]` entry with TS 35.208 Test Set 1 keys, AMF 8000 and SQN 0.
pub fn subscriber(impi: &str, impu: &[&str]) -> String {
    let impu: Vec<String> = impu.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[subscriber]]\nimpi = \"{impi}\"\nimpu = [{}]\n\
         k = \"{SET1_K}\"\nopc = \"{SET1_OPC}\"\namf = \"8000\"\nsqn = \"000000000000\"\n",
        impu.join(", ")
    )
}

/// Writes `entries` as `subscribers.toml` in `dir`.
pub fn write_subscribers(dir: &Path, entries: &[String]) {
    std::fs::write(dir.join("subscribers.toml"), entries.join("\n")).unwrap();
}

/// The tests' memory-backend template: the P-CSCF on [`PCSCF_V4`] only, one unpinned worker,
/// the subscribers of `subscribers.toml`, 1024 SPIs; callers change what they test.
pub fn memory_config() -> ConfigTemplate {
    ConfigTemplate {
        ipv4: vec![PCSCF_V4],
        ipv6: vec![],
        workers: vec![0],
        slowpath: vec![],
        subscribers: Some("subscribers.toml".into()),
        sa_capacity: 1024,
        ..ConfigTemplate::default()
    }
}

/// Starts `config` (memory backend, unpinned) with a UE on the far end of its pair.
pub fn start_memory(config: &Config) -> (DaemonHandle, Ue) {
    let mut handle = Daemon::start(config, StartOptions::unpinned()).unwrap();
    let mut peer = handle
        .take_memory_peer()
        .expect("memory backend keeps the far end");
    let ue = Ue::on(&mut peer);
    (handle, ue)
}
