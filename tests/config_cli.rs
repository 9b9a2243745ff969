//! The `akagate` binary's command line and exit statuses: 0 ok, 1 daemon start failure,
//! 2 invalid configuration, 64 usage error.

mod support;

use std::process::Output;

use support::akagate;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/akagate.toml");

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_config_ok_exits_0() {
    assert_eq!(akagate(&["--check-config", EXAMPLE]).status.code(), Some(0));
}

#[test]
fn missing_file_exits_2_naming_it() {
    let out = akagate(&["--check-config", "/nonexistent/akagate.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("/nonexistent/akagate.toml: cannot read:"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_is_loaded_and_the_daemon_start_fails_clearly() {
    // The example's interface (veth0), cores (1, 2) or subscriber file do not exist here.
    let out = akagate(&["--config", EXAMPLE]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("akagate: cannot start: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_with_errors_exits_2_with_located_errors() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-bad.toml");
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("backend = \"af_packet\"", "backend = \"pcap\"");
    std::fs::write(&path, text).unwrap();
    let out = akagate(&["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let want = format!(
        "{}:27:11: port.backend: unknown value \"pcap\"",
        path.display()
    );
    assert!(stderr(&out).starts_with(&want), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &["--check-config"][..],
        &["--config"][..],
        &["--frobnicate"][..],
        &["--check-config", EXAMPLE, "extra"][..],
    ] {
        let out = akagate(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(stderr(&out).contains("usage: akagate"), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    let out = akagate(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--check-config FILE"));
    let out = akagate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("akagate "));
}
