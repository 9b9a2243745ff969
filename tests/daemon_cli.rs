//! The `akagate` binary as an operator runs it: `--config FILE` starts the daemon, SIGTERM or
//! SIGINT stops it cleanly with exit status 0 and the SQN state on disk; start errors exit 1.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// Starts the binary with `--config config` and `extra` arguments and the log filter
/// `rust_log`, and waits until it says it runs; the lines before that and the rest of stderr
/// are returned.
fn spawn_with(
    config: &Path,
    extra: &[&str],
    rust_log: &str,
) -> (Child, Vec<String>, mpsc::Receiver<String>) {
    let mut child = Command::new(akagate_bin())
        .args(["--config", config.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .env_remove("AKAGATE_LOG")
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
    let mut before = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("running; SIGINT or SIGTERM stops it") => {
                before.push(line);
                return (child, before, rx);
            }
            Ok(line) => before.push(line),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("akagate did not report that it runs ({e}); exit: {status:?}");
            }
        }
    }
}

/// Starts the binary with `--config config` at log level info (see [`spawn_with`]).
fn spawn(config: &Path) -> (Child, mpsc::Receiver<String>) {
    let (child, _, rx) = spawn_with(config, &[], "info");
    (child, rx)
}

/// Sends `sig`, waits for the exit and returns its status with the rest of stderr.
fn stop(mut child: Child, rx: mpsc::Receiver<String>, sig: &str) -> (ExitStatus, Vec<String>) {
    signal(&child, sig);
    let status = child.wait().unwrap();
    // Everything up to EOF of stderr (the reader thread ends there).
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        rest.push(line);
    }
    (status, rest)
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
        let (child, rx) = spawn(&config);
        let (status, rest) = stop(child, rx, sig);
        assert_eq!(status.code(), Some(0), "{sig}: {rest:#?}");
        let state = dir.join("subs.toml.sqn-state");
        assert!(
            rest.iter().any(|l| l.contains(&format!(
                "akagate: stopped; SQN state saved in {}",
                state.display()
            ))),
            "{rest:#?}"
        );
        // The state file exists. No challenge was sent, so it records the bound the start
        // reserved above the provisioned SQN (SEQ 1 + a block of 1,024, IND 31; "SQN
        // blocks"): the shutdown checkpoints the HSS's memory, as the checkpoints while
        // running do (docs/ARCHITECTURE.md, round 26).
        let text = std::fs::read_to_string(&state).unwrap();
        assert_eq!(text.trim(), "\"alice@open-ims.test\" = \"00000000803f\"");
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

/// TS 35.208 Test Set 1's K and OPc as written in the subscriber file.
const SECRETS: [&str; 2] = [
    "465b5ce8b199b49faa5f0a2ee238a6bc",
    "cd63cb71954a9f4e48a5994e37a02baf",
];

#[test]
fn json_logs_are_one_object_per_line_and_carry_no_keys() {
    let dir = temp_dir("daemon-cli-json");
    let config = write_config(&dir, &format!("[{}]", worker_core()));
    let (child, before, rx) = spawn_with(&config, &["--log-format", "json"], "trace");
    let (status, rest) = stop(child, rx, "-TERM");
    assert_eq!(status.code(), Some(0), "{rest:#?}");
    let lines: Vec<String> = before.into_iter().chain(rest).collect();
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            let message = r["fields"]["message"].as_str().expect("a message");
            (r["target"].as_str().expect("a target"), message)
        })
        .collect();
    // The binary's own events and the daemon library's events both arrive, with their targets.
    assert!(
        messages.contains(&("akagate", "running; SIGINT or SIGTERM stops it")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|(t, m)| *t == "akagate::daemon" && m.starts_with("akagate running on")),
        "{messages:#?}"
    );
    for line in &lines {
        let lower = line.to_ascii_lowercase();
        for secret in SECRETS {
            assert!(!lower.contains(secret), "key material logged: {line}");
        }
    }
}

#[test]
fn rust_log_filters_per_module() {
    let dir = temp_dir("daemon-cli-filter");
    let config = write_config(&dir, &format!("[{}]", worker_core()));
    let filter = "info,akagate::control=off,akagate::daemon::worker=debug";
    let (child, before, rx) = spawn_with(&config, &[], filter);
    let (status, rest) = stop(child, rx, "-TERM");
    assert_eq!(status.code(), Some(0), "{rest:#?}");
    let lines: Vec<String> = before.into_iter().chain(rest).collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    // akagate::daemon::worker at debug; akagate::daemon at info; akagate::control silenced.
    assert!(
        has("DEBUG akagate::daemon::worker: worker 0 running"),
        "{lines:#?}"
    );
    assert!(
        has("INFO akagate::daemon: akagate running on"),
        "{lines:#?}"
    );
    assert!(!has("akagate::control"), "{lines:#?}");
    let debug_elsewhere = lines
        .iter()
        .filter(|l| l.contains("DEBUG") && !l.contains("DEBUG akagate::daemon::worker:"));
    assert_eq!(debug_elsewhere.count(), 0, "{lines:#?}");
}
