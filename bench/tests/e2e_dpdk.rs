//! The UE simulator on DPDK (issue 6): the akagate daemon on one end of a veth pair in
//! namespace A (its `af_packet` backend), `akabench`'s DPDK backend (`load::run` with
//! `Backend::Dpdk`) on the other end in namespace B through DPDK's `net_af_packet` vdev. A few
//! UEs register over TCP/IPv4 (TS 33.203 7.1: unprotected REGISTER, 401, protected REGISTER
//! over spi_ps, 200 over spi_uc) and one call completes (the wire itself is checked in
//! `e2e_afpacket`, which shares the daemon side). The daemon's counters on the far end of the
//! veth confirm the traffic crossed it as ESP and nothing was dropped. Then the `akapktgen` binary
//! (its own process, so its own EAL) registers other UEs over IPv6 through the same vdev and
//! blasts ESP-protected SIP segments at the daemon, which must decapsulate every frame and
//! frame every SIP message.
//!
//! One test function: DPDK's EAL starts once per process and a closed vdev cannot be opened
//! again. Needs root (namespaces); skipped with a printed reason otherwise.
#![cfg(feature = "dpdk")]

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration as StdDuration;

use akagate_bench::load::{self, Backend, DpdkPortSpec, LoadConfig};
use akagate_bench::netns::{scratch_dir, VethLink};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use akagate_slowpath::hss::{generate_subscribers, render_toml, Plmn, SubscriberRecord};
use akagate_sys::testnet::VethPair;
use common::checks::assert_zero;
use common::netns::{assert_namespaces_removed, skip_reason, NetnsDaemon};
use smoltcp::time::Duration;

/// UEs that register; UE 0 calls UE 2 (`load`'s call k: UE k calls UE k + N/2).
const UES: usize = 4;

/// The run's own limit (`LoadConfig::timeout`), and the watchdog's beyond it.
const RUN_TIMEOUT: StdDuration = StdDuration::from_secs(60);
const WATCHDOG: StdDuration = StdDuration::from_secs(120);

#[test]
fn dpdk_ues_register_and_call_through_the_daemon_on_af_packet() {
    if skip_reason().is_some() {
        return;
    }
    let link = VethLink::new().expect("namespaces and veth pair");
    let dir = scratch_dir("e2e-dpdk").expect("scratch directory");
    let mut bed = NetnsDaemon {
        daemon: None,
        dir,
        link,
    };
    // The daemon knows 2 * UES subscribers: the first UES for the load, the rest for pktgen.
    let subscribers = generate_subscribers(2 * UES as u64, 6, Plmn::default());
    let subs = bed.dir.join("subscribers.toml");
    std::fs::write(&subs, render_toml(&subscribers)).expect("subscriber file");
    bed.daemon = Some(
        bed.link
            .start_daemon(&bed.dir, &subs, 1, 16 * UES)
            .expect("daemon in namespace A"),
    );

    let port = DpdkPortSpec::new(&bed.link.ue_eal_args(), None).expect("EAL arguments");
    assert_eq!(port.device, "net_af_packet0");
    let cfg = LoadConfig {
        subscribers: subscribers[..UES].to_vec(),
        ues: UES,
        calls: 1,
        transport: Transport::Tcp,
        alg: AuthAlg::HmacSha1_96,
        ealg: EncrAlg::AesCbc,
        ipv6: false,
        concurrency: UES,
        hold: Duration::from_millis(20),
        reregister: false,
        deregister: false,
        timeout: RUN_TIMEOUT,
        backend: Backend::Dpdk {
            port,
            pcscf: VethLink::pcscf_for(load::ue_addr(0, false)),
            more_pcscfs: Vec::new(),
        },
        progress: false,
    };
    // The EAL starts (and the PMD opens its socket) in a thread inside namespace B, which
    // then drives the UEs; the watchdog fails the test instead of hanging CI if it never ends.
    let ns_b = bed.link.pair.ns_b.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(VethPair::run_in(&ns_b, move || load::run(cfg)));
    });
    let report = rx
        .recv_timeout(WATCHDOG)
        .expect("the DPDK run ended within the watchdog")
        .expect("thread in namespace B")
        .expect("DPDK backend set up");

    assert_eq!(
        report.params.get("backend").map(String::as_str),
        Some("dpdk:net_af_packet0")
    );
    assert_eq!(
        (report.registered, report.calls_completed),
        (UES as u64, 1),
        "{}",
        report.summary()
    );
    assert_eq!(
        (report.registration_failures, report.call_failures),
        (0, 0),
        "{}",
        report.summary()
    );
    assert!(
        report.failures_by_cause.is_empty(),
        "{:?}",
        report.failures_by_cause
    );

    // The far end saw it all arrive over the veth: every registration, protected traffic
    // decapsulated and answered under ESP, and nothing dropped for a bad or missing SA.
    let regs = bed
        .daemon()
        .wait_for(StdDuration::from_secs(2), |s| {
            s.slowpath.registrations == UES as u64
        })
        .is_some();
    let stats = bed.daemon().stats();
    assert!(regs, "{:?}", stats.slowpath);
    let w = &stats.workers[0];
    // Per UE at least the protected REGISTER and its connection's segments came in as ESP
    // (three-way handshake, REGISTER, ACKs) and the 200 OK went out as ESP; the call adds
    // INVITE/180/200/ACK/BYE/200 on both legs.
    assert!(
        stats.worker_total("esp_in") >= 3 * UES as u64,
        "{:?}",
        w.counters
    );
    assert!(
        stats.worker_total("esp_out") >= 2 * UES as u64,
        "{:?}",
        w.counters
    );
    assert!(
        w.queue.rx_packets >= stats.worker_total("esp_in") && w.queue.tx_packets > 0,
        "{:?}",
        w.queue
    );
    assert_zero(
        |name| stats.worker_total(name),
        &[
            "drop_esp_invalid",
            "drop_esp_unknown_spi",
            "drop_clear_to_protected",
            "drop_egress_no_sa",
        ],
    );

    pktgen_over_dpdk(&bed, &subscribers[UES..]);

    let namespaces = bed.namespaces();
    drop(bed);
    assert_namespaces_removed(namespaces);
}

/// `akapktgen --backend dpdk` in namespace B (a child process under `ip netns exec`, killed
/// after [`WATCHDOG`]) with `subscribers` over IPv6, at a rate the daemon's AF_PACKET ring
/// keeps up with: every frame is sent, and the daemon decapsulates all of them and frames
/// every SIP message of the streams.
fn pktgen_over_dpdk(bed: &NetnsDaemon, subscribers: &[SubscriberRecord]) {
    let subs = bed.dir.join("pktgen-subscribers.toml");
    std::fs::write(&subs, render_toml(subscribers)).expect("pktgen subscriber file");
    let report = bed.dir.join("pktgen.json");
    let (out, err) = (bed.dir.join("pktgen.out"), bed.dir.join("pktgen.err"));
    let before = bed.daemon().stats();
    let ues = subscribers.len().to_string();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &bed.link.pair.ns_b])
        .arg(env!("CARGO_BIN_EXE_akapktgen"))
        .args(["--backend", "dpdk", "--eal-args", &bed.link.ue_eal_args()])
        .args([
            "--pcscf",
            &VethLink::pcscf_for(load::ue_addr(0, true)).to_string(),
        ])
        .args([
            "--ipv6",
            "--ues",
            &ues,
            "--size",
            "256",
            "--packets-per-ue",
            "100",
        ])
        .args(["--sip-bytes", "600", "--rate", "20000", "--quiet"])
        .arg("--subscribers")
        .arg(&subs)
        .arg("--report")
        .arg(&report)
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("ip netns exec akapktgen");
    let end = std::time::Instant::now() + WATCHDOG;
    let status = loop {
        match child.try_wait().expect("akapktgen status") {
            Some(s) => break Some(s),
            None if std::time::Instant::now() >= end => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(StdDuration::from_millis(50)),
        }
    };
    let logs = || {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", read(&out), read(&err))
    };
    let status = status.unwrap_or_else(|| panic!("akapktgen did not end; {}", logs()));
    assert!(status.success(), "akapktgen {status}; {}", logs());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("pktgen report"))
            .expect("pktgen report JSON");
    let num = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    let (packets, sip_messages) = (num("packets"), num("sip_messages"));
    assert_eq!(num("ues"), subscribers.len() as u64, "{r}");
    assert_eq!(num("sent"), packets, "{r}");
    assert!(packets >= 100 * subscribers.len() as u64, "{r}");
    assert_eq!(
        r["params"]["target"].as_str(),
        Some("dpdk:net_af_packet0 -> fd00::1"),
        "{r}"
    );
    // The blast's frames all reached the daemon: besides them each UE's registration brought
    // two SIP messages (the unprotected and the protected REGISTER; no retransmissions over
    // TCP, RFC 3261 17.1.1.2) and at least two ESP packets (SYN, REGISTER) under its SAs.
    let reg = 2 * subscribers.len() as u64;
    let delta = |s: &akagate::daemon::Stats, k: &str| s.worker_total(k) - before.worker_total(k);
    let got = bed.daemon().wait_for(StdDuration::from_secs(5), |s| {
        delta(s, "esp_in") >= packets + reg && delta(s, "sip_in") >= sip_messages + reg
    });
    let after = bed.daemon().stats();
    assert!(
        got.is_some(),
        "esp_in +{} sip_in +{} for {packets} frames, {sip_messages} SIP messages; queue {:?}",
        delta(&after, "esp_in"),
        delta(&after, "sip_in"),
        after.workers[0].queue
    );
    assert_eq!(delta(&after, "sip_in"), sip_messages + reg);
    assert_eq!(after.slowpath.registrations, 2 * UES as u64);
    assert_zero(
        |name| after.worker_total(name),
        &[
            "drop_esp_invalid",
            "drop_esp_unknown_spi",
            "drop_esp_selector",
        ],
    );
}
