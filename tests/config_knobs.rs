//! The operator knobs added to the configuration — `[registration] challenge-timeout` and
//! `keepalive-interval`, `[sip-timers]`, `[metrics] listen` and the refusal of
//! `allow-anonymous = "all"` — validated by `akagate --check-config` with located errors
//! (`FILE:LINE:COL: message`, exit status 2) and shown in the summary when valid.

mod support;

use support::{assert_contains_all, CheckConfig};

/// A valid memory-backend configuration with every new key; cases replace one line (1-based).
const BASE: &str = r#"[[sip-ports]]
address = "10.0.0.1"
port = 5060
transport-protocol = ["tcp"]
allow-anonymous = "registered"
ims-aka-profile = "default"

[[ims-aka-profile]]
name = "default"
protected-client-port = 5062
protected-server-port = 5064

[port]
backend = "memory"

[cores]
workers = [1]

[addresses]
ipv4 = ["10.0.0.1"]

[registration]
min-expires = 600
max-expires = 7200
default-expires = 3600
challenge-timeout = 30
keepalive-interval = 120

[sip-timers]
t1-ms = 250
t2-ms = 4000
t4-ms = 5000
timer-d-s = 32
timer-c-s = 181

[metrics]
listen = "127.0.0.1:9464"
"#;

/// `--check-config` on [`BASE`] and its variants.
const CONFIG: CheckConfig = CheckConfig {
    dir: "config_knobs",
    base: BASE,
};

#[test]
fn every_knob_shows_in_the_summary() {
    let stdout = CONFIG.check_valid("base", BASE);
    assert_contains_all(
        &stdout,
        &[
            "SIP on 10.0.0.1:5060 tcp (profile \"default\")",
            "challenge timeout 30 s",
            "keep-alives every 120 s",
            "SIP timers T1 250 ms, T2 4000 ms, T4 5000 ms, D 32 s, C 181 s",
            "metrics on http://127.0.0.1:9464/metrics",
        ],
    );
}

#[test]
fn defaults_when_left_out() {
    let text = BASE
        .replace("challenge-timeout = 30\n", "")
        .replace("keepalive-interval = 120\n", "");
    let text = text.split("[sip-timers]").next().unwrap().to_string();
    let stdout = CONFIG.check_valid("defaults", &text);
    assert_contains_all(
        &stdout,
        &[
            "challenge timeout 240 s",
            "keep-alives off",
            "SIP timers T1 500 ms, T2 4000 ms, T4 5000 ms, D 32 s, C 181 s",
            "metrics off",
        ],
    );
    // keepalive-interval = 0 is "off" too.
    let (code, stdout, _) = CONFIG.check(
        "keepalive_off",
        &CONFIG.base_with(27, "keepalive-interval = 0"),
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("keep-alives off"), "{stdout}");
}

/// (case, line replaced, replacement, expected "LINE:COL: message" prefix)
const CASES: &[(&str, usize, &str, &str)] = &[
    (
        "anonymous_all",
        5,
        "allow-anonymous = \"all\"",
        "5:19: sip-ports[0].allow-anonymous: \"all\" is not supported: only REGISTER may \
         arrive outside the SAs (TS 33.203 6.3)",
    ),
    (
        "anonymous_unknown",
        5,
        "allow-anonymous = \"none\"",
        "5:19: sip-ports[0].allow-anonymous: unknown value \"none\" (expected \"registered\")",
    ),
    (
        "challenge_zero",
        26,
        "challenge-timeout = 0",
        "26:21: registration.challenge-timeout: 0 is not a timeout in seconds (1..=3600)",
    ),
    (
        "keepalive_short",
        27,
        "keepalive-interval = 5",
        "27:22: registration.keepalive-interval: 5 is not 0 (off) or an interval in seconds \
         (10..=86400)",
    ),
    (
        "keepalive_negative",
        27,
        "keepalive-interval = -1",
        "27:22: registration.keepalive-interval: -1 is not 0 (off)",
    ),
    (
        "t1_small",
        30,
        "t1-ms = 50",
        "30:9: sip-timers.t1-ms: 50 is not a time in milliseconds (100..=10000)",
    ),
    (
        "t2_below_t1",
        31,
        "t2-ms = 200",
        "31:9: sip-timers.t2-ms: 200 is below t1-ms 250; T2 caps the retransmit interval",
    ),
    (
        "t4_large",
        32,
        "t4-ms = 60001",
        "32:9: sip-timers.t4-ms: 60001 is not a time in milliseconds (100..=60000)",
    ),
    (
        "timer_d_short",
        33,
        "timer-d-s = 31",
        "33:13: sip-timers.timer-d-s: 31 is not a time in seconds (32..=600)",
    ),
    (
        "timer_c_three_minutes",
        34,
        "timer-c-s = 180",
        "34:13: sip-timers.timer-c-s: 180 is not a time in seconds (181..=86400)",
    ),
    (
        "sip_timers_unknown_key",
        34,
        "timer-b-s = 32",
        "34:1: unknown field `timer-b-s`",
    ),
    (
        "metrics_no_port",
        37,
        "listen = \"127.0.0.1\"",
        "37:10: metrics.listen: \"127.0.0.1\" is not an address and port",
    ),
    (
        "metrics_multicast",
        37,
        "listen = \"224.0.0.1:9464\"",
        "37:10: metrics.listen: 224.0.0.1:9464 is a multicast address",
    ),
    (
        "metrics_unknown_key",
        37,
        "address = \"127.0.0.1:9464\"",
        "37:1: unknown field `address`",
    ),
];

#[test]
fn each_bad_knob_is_located() {
    for &(name, line, with, expected) in CASES {
        let (code, _, errors) = CONFIG.check(name, &CONFIG.base_with(line, with));
        assert_eq!(code, 2, "{name}: {errors:?}");
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        assert!(
            errors[0].starts_with(expected),
            "{name}: expected {expected:?}, got {:?}",
            errors[0]
        );
    }
}

#[test]
fn t2_is_checked_against_the_default_t1() {
    // Only T2 given, below the default T1 of 500 ms.
    let text = BASE
        .replace("t1-ms = 250\n", "")
        .replace("t2-ms = 4000", "t2-ms = 400");
    let (code, _, errors) = CONFIG.check("t2_default_t1", &text);
    assert_eq!(code, 2);
    assert!(
        errors[0].starts_with("30:9: sip-timers.t2-ms: 400 is below t1-ms 500"),
        "{errors:?}"
    );
}
