//! The shipped example `akagate.toml` and the embedded defaults both validate.

mod support;

use support::{akagate, assert_contains_all, stdout_of_success};

#[test]
fn example_file_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/akagate.toml");
    let stdout = stdout_of_success(akagate(&["--check-config", path]));
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("ok"));
    let summary = lines.next().unwrap();
    assert_contains_all(
        summary,
        &[
            "SIP on 10.0.0.1:5060 udp+tcp",
            "[2001:db8::1]:5060 udp+tcp",
            "port_pc 5062 and port_ps 5064",
            "ealg aes-cbc,des-ede3-cbc,null",
            "alg hmac-sha-1-96,hmac-md5-96",
            "backend af_packet on veth0 with 2 queue(s)",
            "workers on core(s) 1,2, slowpath on core 0",
            "registration expires 600..=7200 s (default 3600)",
            "SA table of 1048576 SPIs",
            "challenge timeout 240 s, keep-alives off",
            "SIP timers T1 500 ms, T2 4000 ms, T4 5000 ms, D 32 s, C 181 s",
            "metrics on http://127.0.0.1:9464/metrics",
        ],
    );
    // A relative subscriber file is resolved against the config file's directory.
    let subscribers = concat!(env!("CARGO_MANIFEST_DIR"), "/subscribers.toml");
    assert!(
        summary.contains(&format!("subscribers from {subscribers}")),
        "{summary}"
    );
}

#[test]
fn embedded_defaults_print_and_validate() {
    let out = akagate(&["--print-default-config"]);
    assert_eq!(out.status.code(), Some(0));
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("default-config.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let stdout = stdout_of_success(akagate(&["--check-config", path.to_str().unwrap()]));
    assert_contains_all(
        &stdout,
        &[
            "backend memory",
            "10.0.0.1:5060",
            "[2001:db8::1]:5060",
            "port_pc 5062 and port_ps 5064",
            "ealg aes-cbc,des-ede3-cbc,null, alg hmac-sha-1-96,hmac-md5-96",
        ],
    );
}
