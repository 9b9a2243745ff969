//! The `akagate` binary as an operator runs it: `--config FILE` starts the daemon, SIGTERM or
//! SIGINT stops it cleanly with exit status 0 and the SQN state on disk; start errors exit 1.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{akagate, akagate_bin, temp_dir, SET1_K, SET1_OPC};

/// A memory-backend config pinned to cores this host has, with one subscriber (TS 35.208
/// Test Set 1 keys).
fn write_config(dir: &Path, workers: &str) -> PathBuf {
    std::fs::write(
        dir.join("subs.toml"),
        format!(
            "[[subscriber]]\nimpi = \"alice@open-ims.test\"\nimpu = [\"sip:alice@open-ims.test\"]\n\
             k = \"{SET1_K}\"\nopc = \"{SET1_OPC}\"\nsqn = \"000000000020\"\n"
        ),
    )
    .unwrap();
    let text = akagate::config::DEFAULT_CONFIG.replace(
        "workers = [1]\nslowpath = 0",
        &format!("workers = {workers}"),
    ) + "\n[subscribers]\nfile = \"subs.toml\"\n";
    let path = dir.join("akagate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the binary and waits until it says it runs; the rest of stderr goes to the channel.
fn spawn(config: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(akagate_bin())
        .args(["--config", config.to_str().unwrap()])
        .env("AKAGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("akagate: running; SIGINT or SIGTERM stops it") => {
                return (child, rx);
            }
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("akagate did not report that it runs ({e}); exit: {status:?}");
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn worker_core() -> usize {
    *akagate_sys::affinity::available_cores()
        .last()
        .expect("at least one usable core")
}

#[test]
fn sigterm_and_sigint_stop_the_daemon_cleanly_and_persist_sqns() {
    for sig in ["-TERM", "-INT"] {
        let dir = temp_dir(&format!("daemon-cli-{}", sig.trim_start_matches('-')));
        let config = write_config(&dir, &format!("[{}]", worker_core()));
        let (mut child, rx) = spawn(&config);
        signal(&child, sig);
        let status = child.wait().unwrap();
        // Everything up to EOF of stderr (the reader thread ends there).
        let mut rest = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            rest.push(line);
        }
        assert_eq!(status.code(), Some(0), "{sig}: {rest:#?}");
        let state = dir.join("subs.toml.sqn-state");
        assert!(
            rest.iter().any(|l| l.contains(&format!(
                "akagate: stopped; SQN state saved in {}",
                state.display()
            ))),
            "{rest:#?}"
        );
        // The state file exists; no challenge was sent, so it records no SQN yet.
        let text = std::fs::read_to_string(&state).unwrap();
        assert_eq!(text.trim(), "");
    }
}

#[test]
fn a_missing_core_is_a_start_error_with_exit_status_1() {
    let dir = temp_dir("daemon-cli-nocore");
    let config = write_config(&dir, "[1023]");
    let out = akagate(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("akagate: cannot start: cores: core 1023 does not exist"),
        "{err}"
    );
}
