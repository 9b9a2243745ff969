//! An independent UE against the real daemon (issue 13): `tests/interop/run.py` starts the
//! akagate binary in a network namespace on AF_PACKET and drives it with a phone that shares
//! no code with akagate - the Linux kernel's TCP/UDP sockets in a second namespace, ESP by
//! python3-scapy in a TUN <-> AF_PACKET shim, AKA by its own Milenage (checked against the
//! TS 35.208 test sets first). The scenarios register over TCP and UDP (with lost responses
//! and timer E retransmissions), call with an INVITE over 1300 bytes, resynchronise with
//! AUTS, re-register on new ports and de-register, over IPv4 and IPv6, for every algorithm
//! pair, also with the UE behind a Linux router; see tests/interop/README.md.
//!
//! Needs root (namespaces, TUN, AF_PACKET); skipped with a printed reason otherwise. As root,
//! a missing python3-scapy (`make deps`) is a failure, not a skip. `INTEROP_SCENARIOS=all`
//! (or a comma-separated list) also runs the scenarios kept out of the default run
//! (tests/interop/KNOWN_FAILURES.md); `INTEROP_PYTHON` overrides the interpreter.

use std::path::Path;
use std::process::Command;

/// Debian's interpreter, where `make deps` installs python3-scapy and python3-cryptography.
const DEFAULT_PYTHON: &str = "/usr/bin/python3";

/// Runs `tests/interop/run.py` in `mode` and asserts every scenario passed.
fn run_interop(mode: &str) {
    run_interop_with(mode, 1, &[]);
}

/// [`run_interop`] with the daemon running `shards` slowpath shards, without the scenarios
/// `skip`.
fn run_interop_with(mode: &str, shards: usize, skip: &[&str]) {
    if let Some(why) = akagate_sys::testnet::unavailable_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let python = std::env::var("INTEROP_PYTHON").unwrap_or_else(|_| DEFAULT_PYTHON.into());
    let probe = Command::new(&python)
        .args(["-c", "import scapy.layers.ipsec, cryptography"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{python} cannot import scapy/cryptography (install python3-scapy \
             python3-cryptography: make deps): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {python}: {e}"),
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let out = Command::new(&python)
        .arg(dir.join("run.py"))
        .args(["--akagate", env!("CARGO_BIN_EXE_akagate"), "--mode", mode])
        .args(["--slowpath-shards", &shards.to_string()])
        .args(skip.iter().flat_map(|s| ["--skip", s]))
        .output()
        .expect("run tests/interop/run.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    println!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "interop UE run ({mode}) failed ({}); see the output above",
        out.status
    );
    assert!(
        stdout.contains("interop: every scenario passed"),
        "the interop run did not report its scenarios"
    );
}

#[test]
fn independent_ue_registers_calls_and_deregisters_through_the_daemon() {
    run_interop("embedded");
}

/// Issue 10: the same independent UEs against a daemon with two slowpath shards (the
/// fixture's subscribers spread over both): registration, calls between UEs of different
/// shards, re-registration, de-registration, resynchronisation, hostile input.
#[test]
fn independent_ue_through_a_daemon_with_two_slowpath_shards() {
    run_interop_with("embedded", 2, &[]);
}

/// Proxy mode (issue 9): SIPp (Debian `sip-tester`) plays the S-CSCF with vectors from the
/// suite's own Milenage; the independent UE registers through akagate, which relays the
/// REGISTERs over its core link and builds the SAs from the CK/IK of SIPp's 401.
#[test]
fn independent_ue_registers_through_the_daemon_in_front_of_sipp_as_s_cscf() {
    if akagate_sys::testnet::unavailable_reason().is_none()
        && Command::new("sipp").arg("-v").output().is_err()
    {
        panic!("sipp is missing (install sip-tester: make deps)");
    }
    run_interop("proxy");
}

/// Issue 10: proxy mode with two slowpath shards. The UE is a subscriber of shard 1, so
/// whatever the core sends that fell to shard 0 would fail: the 401 (our Via tag), the
/// terminating INVITE (our Path), in-dialog requests (our Record-Route) and the reg-event
/// NOTIFY, sent from a core address that hashes to shard 0 (our SUBSCRIBE's Contact).
#[test]
fn independent_ue_through_two_slowpath_shards_in_front_of_sipp_as_s_cscf() {
    if akagate_sys::testnet::unavailable_reason().is_none()
        && Command::new("sipp").arg("-v").output().is_err()
    {
        panic!("sipp is missing (install sip-tester: make deps)");
    }
    run_interop_with("proxy", 2, &[]);
}

/// Routed access (issue 10): the independent UE sits behind a Linux router namespace (kernel
/// IP forwarding, the UEs' prefixes on its far side); akagate reaches them through its
/// `[routes]` static routes via the router, resolving only the router. The UEs register,
/// re-register, call each other and de-register over IPv4 and IPv6.
#[test]
fn independent_ue_behind_a_linux_router_registers_and_calls() {
    run_interop("routed");
}
