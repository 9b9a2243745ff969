//! Each class of configuration error is reported by `akagate --check-config` as
//! `FILE:LINE:COL: message` at the line and column of the offending key or value, exit status 2.

mod support;

use support::CheckConfig;

/// A valid configuration; the cases below replace one numbered line (1-based) of it.
const BASE: &str = r#"[[sip-ports]]
address = "10.0.0.1"
port = 5060
transport-protocol = ["udp", "tcp"]
allow-anonymous = "registered"
ims-aka-profile = "default"

[[ims-aka-profile]]
name = "default"
protected-client-port = 5062
protected-server-port = 5064
encr-alg-list = ["aes-cbc", "null"]
auth-alg-list = ["hmac-sha-1-96"]
sec-agree-required = true

[port]
backend = "af_packet"
interface = "veth0"
queues = 2

[cores]
workers = [1, 2]
slowpath = 0

[addresses]
ipv4 = ["10.0.0.1"]
ipv6 = ["2001:db8::1"]

[registration]
min-expires = 600
max-expires = 7200
default-expires = 3600

[sa-table]
capacity = 1048576

[stack]
tcp-rx-buffer = 16384
tcp-tx-buffer = 16384
"#;

/// `--check-config` on [`BASE`] and its variants.
const CONFIG: CheckConfig = CheckConfig {
    dir: "config_errors",
    base: BASE,
};

#[test]
fn base_is_valid() {
    let stdout = CONFIG.check_valid("base", BASE);
    assert!(stdout.starts_with("ok\n"), "{stdout}");
}

/// (case, line replaced, replacement, expected "LINE:COL: " prefix, expected message part)
const CASES: &[(&str, usize, &str, &str, &str)] = &[
    ("syntax", 3, "port = 50 60", "3:11: ", "expected newline"),
    (
        "wrong_type",
        3,
        "port = \"5060\"",
        "3:8: ",
        "invalid type: string",
    ),
    (
        "unknown_key",
        14,
        "sec-agree-mandatory = true",
        "14:1: ",
        "unknown field `sec-agree-mandatory`",
    ),
    (
        "bad_address",
        2,
        "address = \"10.0.0.300\"",
        "2:11: ",
        "sip-ports[0].address: \"10.0.0.300\" is not an IP address",
    ),
    (
        "foreign_address",
        2,
        "address = \"10.0.0.2\"",
        "2:11: ",
        "sip-ports[0].address: 10.0.0.2 is not one of [addresses]",
    ),
    (
        "port_zero",
        3,
        "port = 0",
        "3:8: ",
        "sip-ports[0].port: 0 is not a port number (1..=65535)",
    ),
    (
        "port_too_big",
        3,
        "port = 70000",
        "3:8: ",
        "sip-ports[0].port: 70000 is not a port number",
    ),
    (
        "transport",
        4,
        "transport-protocol = [\"udp\", \"sctp\"]",
        "4:30: ",
        "sip-ports[0].transport-protocol: unknown value \"sctp\"",
    ),
    (
        "transport_tls_not_alone",
        4,
        "transport-protocol = [\"udp\", \"tls\"]",
        "4:22: ",
        "sip-ports[0].transport-protocol: \"tls\" must be alone on its port",
    ),
    (
        "transport_empty",
        4,
        "transport-protocol = []",
        "4:22: ",
        "sip-ports[0].transport-protocol: must not be empty",
    ),
    (
        "anonymous",
        5,
        "allow-anonymous = \"none\"",
        "5:19: ",
        "sip-ports[0].allow-anonymous: unknown value \"none\"",
    ),
    (
        "unknown_profile",
        6,
        "ims-aka-profile = \"gold\"",
        "6:19: ",
        "sip-ports[0].ims-aka-profile: no [[ims-aka-profile]] is named \"gold\"",
    ),
    (
        "protected_is_sip_port",
        11,
        "protected-server-port = 5060",
        "11:25: ",
        "ims-aka-profile[0].protected-server-port: 5060 is also the SIP port sip-ports[0].port",
    ),
    (
        "pc_equals_ps",
        11,
        "protected-server-port = 5062",
        "11:25: ",
        "ims-aka-profile[0].protected-server-port: 5062 equals protected-client-port",
    ),
    (
        "protected_port_zero",
        10,
        "protected-client-port = 0",
        "10:25: ",
        "ims-aka-profile[0].protected-client-port: 0 is not a port number",
    ),
    (
        "unknown_ealg",
        12,
        "encr-alg-list = [\"aes-cbc\", \"rot13\"]",
        "12:29: ",
        "ims-aka-profile[0].encr-alg-list: unknown value \"rot13\"",
    ),
    (
        "duplicate_ealg",
        12,
        "encr-alg-list = [\"null\", \"null\"]",
        "12:26: ",
        "ims-aka-profile[0].encr-alg-list: \"null\" is listed twice",
    ),
    (
        "unknown_alg",
        13,
        "auth-alg-list = [\"hmac-sha-256\"]",
        "13:18: ",
        "ims-aka-profile[0].auth-alg-list: unknown value \"hmac-sha-256\"",
    ),
    (
        // alg=null is implied by aes-gcm (TS 33.203 Annex H); listed alone it would mean no
        // integrity.
        "null_alg",
        13,
        "auth-alg-list = [\"null\"]",
        "13:18: ",
        "ims-aka-profile[0].auth-alg-list: unknown value \"null\"",
    ),
    (
        "unknown_backend",
        17,
        "backend = \"netmap\"",
        "17:11: ",
        "port.backend: unknown value \"netmap\"",
    ),
    (
        "af_packet_no_interface",
        18,
        "",
        "17:11: ",
        "port.interface: required with backend = \"af_packet\"",
    ),
    (
        "bad_interface",
        18,
        "interface = \"a/b\"",
        "18:13: ",
        "port.interface: \"a/b\" is not a Linux interface name",
    ),
    (
        "memory_with_interface",
        17,
        "backend = \"memory\"",
        "18:13: ",
        "port.interface: only used with backend = \"af_packet\"",
    ),
    (
        "queues_mismatch",
        19,
        "queues = 3",
        "19:10: ",
        "port.queues: 3 queues for 2 worker(s)",
    ),
    (
        "workers_empty",
        22,
        "workers = []",
        "22:11: ",
        "cores.workers: at least one worker core is required",
    ),
    (
        "worker_twice",
        22,
        "workers = [1, 1]",
        "22:15: ",
        "cores.workers[1]: core 1 is listed twice",
    ),
    (
        "worker_negative",
        22,
        "workers = [1, -2]",
        "22:15: ",
        "cores.workers[1]: -2 is not a core id",
    ),
    (
        "slowpath_on_worker",
        23,
        "slowpath = 2",
        "23:12: ",
        "cores.slowpath: core 2 is also a worker core",
    ),
    (
        "ipv6_in_ipv4",
        26,
        "ipv4 = [\"10.0.0.1\", \"2001:db8::2\"]",
        "26:21: ",
        "addresses.ipv4[1]: 2001:db8::2 is not an ipv4 address",
    ),
    (
        "address_twice",
        27,
        "ipv6 = [\"2001:db8::1\", \"2001:DB8::1\"]",
        "27:24: ",
        "addresses.ipv6[1]: 2001:db8::1 is listed twice",
    ),
    (
        "multicast",
        27,
        "ipv6 = [\"2001:db8::1\", \"ff02::1\"]",
        "27:24: ",
        "addresses.ipv6[1]: ff02::1 is not a unicast host address",
    ),
    (
        "max_below_min",
        31,
        "max-expires = 300",
        "31:15: ",
        "registration.max-expires: 300 is below min-expires 600",
    ),
    (
        "default_outside",
        32,
        "default-expires = 60",
        "32:19: ",
        "registration.default-expires: 60 is outside min-expires..=max-expires",
    ),
    (
        "expires_zero",
        30,
        "min-expires = 0",
        "30:15: ",
        "registration.min-expires: 0 is not an expiry in seconds",
    ),
    (
        "capacity",
        35,
        "capacity = 0",
        "35:12: ",
        "sa-table.capacity: 0 is not a capacity (2..=16777216)",
    ),
    (
        "buffer",
        38,
        "tcp-rx-buffer = 10",
        "38:17: ",
        "stack.tcp-rx-buffer: 10 is not a buffer size in bytes",
    ),
    (
        "socket_reserve",
        39,
        "socket-reserve = -1",
        "39:18: ",
        "stack.socket-reserve: -1 is not a socket count (0..=1048576)",
    ),
    (
        "missing_key",
        10,
        "",
        "8:1: ",
        "missing field `protected-client-port`",
    ),
];

#[test]
fn each_error_class_is_located() {
    let mut failures = Vec::new();
    for &(name, line, with, at, message) in CASES {
        let (code, stdout, errors) = CONFIG.check(name, &CONFIG.base_with(line, with));
        let expected = format!("{at}{message}");
        let found = errors
            .iter()
            .any(|e| e.starts_with(at) && e.contains(message));
        if code != 2 || !stdout.is_empty() || !found {
            failures.push(format!(
                "{name}: exit {code}, want `{expected}`, got {errors:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn dpdk_backend_needs_eal_args_and_no_interface() {
    let (code, _, errors) = CONFIG.check("dpdk", &CONFIG.base_with(17, "backend = \"dpdk\""));
    assert_eq!(code, 2);
    assert_eq!(
        errors,
        vec![
            "17:11: port.eal-args: required with backend = \"dpdk\"".to_string(),
            "18:13: port.interface: only used with backend = \"af_packet\"".to_string(),
        ]
    );
    let text = CONFIG.base_with(17, "backend = \"dpdk\"").replace(
        "interface = \"veth0\"",
        "eal-args = [\"--no-huge\", \"--vdev=net_af_packet0,iface=veth0\"]",
    );
    let stdout = CONFIG.check_valid("dpdk_ok", &text);
    assert!(stdout.contains("dpdk with EAL args [--no-huge --vdev=net_af_packet0,iface=veth0]"));
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let text = CONFIG
        .base_with(35, "capacity = 1")
        .replace("port = 5060", "port = 0");
    let (code, _, errors) = CONFIG.check("several", &text);
    assert_eq!(code, 2);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("3:8: sip-ports[0].port"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("35:12: sa-table.capacity"),
        "{errors:?}"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    // "é" is two bytes in UTF-8 but one column.
    let text = BASE.replace("name = \"default\"\n", "name = \"default\" # é\n");
    let text = text.replace("[port]", "# ééé\n[port]");
    let text = text.replace("interface = \"veth0\"", "interface = \"véth 0\"");
    let (code, _, errors) = CONFIG.check("utf8", &text);
    assert_eq!(code, 2);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("19:13: port.interface"), "{errors:?}");
}
