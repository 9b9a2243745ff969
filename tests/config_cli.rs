//! The `akagate` binary's command line and exit statuses: 0 ok, 1 daemon start failure,
//! 2 invalid configuration or usage error.

mod support;

use std::process::{Command, Output};

use support::{akagate, akagate_bin};

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

/// Runs with `args`; expects exit status 2, nothing on stdout, and clap's message `needle`.
fn expect_usage_error(args: &[&str], needle: &str) {
    let out = akagate(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn usage_errors_exit_2() {
    expect_usage_error(
        &["--check-config"],
        "a value is required for '--check-config <FILE>'",
    );
    expect_usage_error(&["--config"], "a value is required for '--config <FILE>'");
    expect_usage_error(&["--frobnicate"], "unexpected argument '--frobnicate'");
    expect_usage_error(
        &["--check-config", EXAMPLE, "extra"],
        "unexpected argument 'extra'",
    );
    expect_usage_error(
        &["--config", EXAMPLE, "--config", EXAMPLE],
        "the argument '--config <FILE>' cannot be used multiple times",
    );
    expect_usage_error(
        &["--config", EXAMPLE, "--check-config", EXAMPLE],
        "cannot be used with",
    );
    // A value that looks like an option is not taken as the FILE.
    expect_usage_error(
        &["--config", "--print-default-config"],
        "a value is required for '--config <FILE>'",
    );
    expect_usage_error(
        &["--log-format", "xml"],
        "invalid value 'xml' for '--log-format <FORMAT>'",
    );
}

#[test]
fn help_and_version_exit_0() {
    let out = akagate(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--config <FILE>",
        "--check-config <FILE>",
        "--log-format <FORMAT>",
    ] {
        assert!(help.contains(option), "{help}");
    }
    let out = akagate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("akagate "));
}

#[test]
fn an_invalid_log_filter_exits_2_naming_the_variable() {
    let out = Command::new(akagate_bin())
        .env("RUST_LOG", "info,akagate=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("akagate: RUST_LOG: invalid filter \"info,akagate=loud\""),
        "{}",
        stderr(&out)
    );
}
