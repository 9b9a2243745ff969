//! The command lines of `akabench` and `akapktgen`: usage errors exit 2 with clap's message,
//! `--help` exits 0, a repeated option and a value that looks like an option are errors, a
//! subscriber file that cannot be read is a runtime error (exit 1), and a small run works.

use std::process::{Command, Output};

const AKABENCH: &str = env!("CARGO_BIN_EXE_akabench");
const AKAPKTGEN: &str = env!("CARGO_BIN_EXE_akapktgen");
const SUBSCRIBERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/subscribers.toml"
);

fn run(bin: &str, args: &[&str]) -> Output {
    run_logged(bin, args, None)
}

/// Runs `bin` with `RUST_LOG` set to `rust_log` (or unset).
fn run_logged(bin: &str, args: &[&str], rust_log: Option<&str>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("AKAGATE_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    cmd.output().expect("run the binary")
}

/// `akabench` on the inline backend: 2 UEs register, one call, with `RUST_LOG=rust_log`;
/// returns stderr after checking the run succeeded.
fn inline_run(report: &str, rust_log: Option<&str>) -> String {
    let report = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(report);
    let _ = std::fs::remove_file(&report);
    let args = [
        "--subscribers",
        SUBSCRIBERS,
        "--ues",
        "2",
        "--calls",
        "1",
        "--backend",
        "inline",
        "--quiet",
        "--report",
        report.to_str().unwrap(),
    ];
    let out = run_logged(AKABENCH, &args, rust_log);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("report: {}", report.display())),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["registered"], 2, "{json}");
    assert_eq!(json["calls_completed"], 1, "{json}");
    stderr
}

/// Expects exit status 2, nothing on stdout and clap's `error: ...` containing `needle`.
fn expect_usage_error(bin: &str, args: &[&str], needle: &str) {
    let out = run(bin, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {err}");
    assert!(out.stdout.is_empty(), "{bin} {args:?}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{bin} {args:?}: {err}"
    );
}

#[test]
fn usage_errors_exit_2_in_both_tools() {
    for bin in [AKABENCH, AKAPKTGEN] {
        expect_usage_error(bin, &["--ues"], "a value is required for '--ues <N>'");
        // `--ipv6` is a flag, not the number of UEs.
        expect_usage_error(
            bin,
            &["--ues", "--ipv6"],
            "a value is required for '--ues <N>'",
        );
        expect_usage_error(bin, &["--bogus"], "unexpected argument '--bogus' found");
        expect_usage_error(bin, &["stray"], "unexpected argument 'stray' found");
        expect_usage_error(
            bin,
            &["--ues", "1", "--ues", "2"],
            "the argument '--ues <N>' cannot be used multiple times",
        );
        expect_usage_error(
            bin,
            &["--ipv6", "--ipv6"],
            "the argument '--ipv6' cannot be used multiple times",
        );
        expect_usage_error(
            bin,
            &["--alg", "md5"],
            "invalid value 'md5' for '--alg <ALG>'",
        );
        expect_usage_error(bin, &["--pcscf", "nowhere"], "invalid value 'nowhere'");
    }
    expect_usage_error(
        AKABENCH,
        &["--ues", "1"],
        "the following required arguments were not provided",
    );
    // Checks of akabench's values and of option combinations, with a subscriber file.
    for (args, needle) in [
        (&["--ues", "0"][..], "invalid value '0' for '--ues <N>'"),
        (&["--ues", "1", "--reg-rate", "0"], "--reg-rate <R>"),
        (
            &["--ues", "1", "--backend", "af_packet"],
            "--backend af_packet needs --iface and --pcscf",
        ),
    ] {
        let with_file: Vec<&str> = ["--subscribers", SUBSCRIBERS]
            .iter()
            .chain(args)
            .copied()
            .collect();
        expect_usage_error(AKABENCH, &with_file, needle);
    }
    expect_usage_error(
        AKAPKTGEN,
        &["--pcscf", "10.0.0.1"],
        "--iface and --pcscf are for an external akagate",
    );
    expect_usage_error(
        AKAPKTGEN,
        &["--iface", "veth1", "--pcscf", "10.0.0.1"],
        "an external gateway needs --subscribers",
    );
}

#[test]
fn help_exits_0_and_lists_the_options() {
    for (bin, options) in [
        (
            AKABENCH,
            &[
                "--subscribers <FILE>",
                "--reg-rate <R>",
                "--eal-args <EAL ARGS>",
            ][..],
        ),
        (
            AKAPKTGEN,
            &[
                "--packets-per-ue <P>",
                "--pcap <FILE>",
                "--eal-args <EAL ARGS>",
            ],
        ),
    ] {
        for help in ["--help", "-h"] {
            let out = run(bin, &[help]);
            assert_eq!(out.status.code(), Some(0), "{bin} {help}");
            let text = String::from_utf8(out.stdout).unwrap();
            for option in options {
                assert!(text.contains(option), "{bin} {help}: {text}");
            }
        }
    }
}

#[test]
fn an_unreadable_subscriber_file_exits_1() {
    let out = run(
        AKABENCH,
        &["--subscribers", "/nonexistent/s.toml", "--ues", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("akabench: /nonexistent/s.toml: "), "{err}");
    let out = run(AKAPKTGEN, &["--subscribers", "/nonexistent/s.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("akapktgen: /nonexistent/s.toml: "), "{err}");
}

#[test]
fn eal_args_take_values_that_start_with_dashes() {
    // Parsing succeeds up to the build check: without DPDK the backend is refused (exit 2)
    // with the build hint, not a usage error about --eal-args.
    let out = run(
        AKAPKTGEN,
        &[
            "--backend",
            "dpdk",
            "--eal-args",
            "--no-huge --no-pci",
            "--pcscf",
            "10.0.0.1",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if akagate_sys::require_dpdk().is_err() {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.starts_with("akapktgen: --backend dpdk: "), "{err}");
    } else {
        assert!(!err.contains("--eal-args <EAL ARGS>"), "{err}");
    }
}

#[test]
fn a_small_inline_run_succeeds_and_writes_its_report() {
    // Without RUST_LOG the tool prints no log records.
    let stderr = inline_run("cli-plain.json", None);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn rust_log_filters_the_gateways_records_per_module() {
    // smoltcp's `log` records pass through the bridge; only the selected module's do.
    let stderr = inline_run("cli-filter.json", Some("warn,smoltcp::socket::tcp=trace"));
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" TRACE smoltcp::socket::tcp: ")),
        "{stderr}"
    );
    for line in &lines {
        let low = line.contains(" TRACE ") || line.contains(" DEBUG ") || line.contains(" INFO ");
        assert!(!low || line.contains(" smoltcp::socket::tcp: "), "{line}");
    }
}

#[test]
fn no_key_material_in_a_trace_log() {
    let stderr = inline_run("cli-trace.json", Some("trace")).to_ascii_lowercase();
    assert!(stderr.lines().count() > 10, "{stderr}");
    let subscribers = std::fs::read_to_string(SUBSCRIBERS).unwrap();
    let secrets: Vec<&str> = subscribers
        .lines()
        .filter_map(|l| l.split_once(" = \""))
        .filter(|(key, _)| matches!(key.trim(), "k" | "opc" | "op"))
        .map(|(_, v)| v.trim_end_matches('"'))
        .collect();
    assert!(secrets.len() >= 4, "{secrets:?}");
    for secret in secrets {
        assert!(
            !stderr.contains(&secret.to_ascii_lowercase()),
            "{secret} logged"
        );
    }
}
