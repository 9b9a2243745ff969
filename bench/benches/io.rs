//! Packet I/O throughput on a veth pair between two network namespaces: packets per second
//! through AF_PACKET transmit (TX ring or sendmmsg, with and without qdisc bypass) and
//! receive (TPACKET_V3 ring) at 64- and 1400-byte frames, and through DPDK's `net_af_packet`
//! vdev when built with `--features dpdk`. Needs root; prints a table, and writes JSON to
//! `$AKG_IO_JSON` if set. `AKG_IO_SECONDS` (default 2) sets each run's length;
//! `AKG_IO_AFPACKET_ONLY=1` skips the DPDK rows (`bench/run.sh pktgen` takes the raw rx
//! baseline that way, alternated with the fast path's runs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_sys::afpacket::{AfPacketConfig, AfPacketPort, TxMode};
use akagate_sys::testnet::{unavailable_reason, VethPair};
use akagate_sys::{Port, PortQueue};

const SIZES: [usize; 2] = [64, 1400];

struct Row {
    backend: &'static str,
    tx: String,
    size: usize,
    tx_pps: f64,
    rx_pps: f64,
    tx_ring_full: u64,
}

fn frame(size: usize, dst: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0xbe, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((size - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 50;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f
}

/// Busy-receive on `q` until `stop`; returns the queue, frames, and seconds from the first
/// frame to `stop`.
fn receiver<Q: PortQueue + 'static>(
    mut q: Q,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Q, u64, f64)> {
    std::thread::spawn(move || {
        let mut burst = Vec::with_capacity(64);
        let mut n = 0u64;
        let mut first: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let got = q.rx_burst(&mut burst, 64);
            if got > 0 && first.is_none() {
                first = Some(Instant::now());
            }
            n += got as u64;
            for b in burst.drain(..) {
                q.free(b);
            }
        }
        let el = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
        (q, n, el)
    })
}

/// Transmit `f` from `q` as fast as possible for `secs`; returns (pps, ring-full events).
fn blast<Q: PortQueue>(q: &mut Q, f: &[u8], secs: f64) -> (f64, u64) {
    let mut pending = Vec::with_capacity(32);
    let start = Instant::now();
    let before = q.counters().snapshot();
    while start.elapsed().as_secs_f64() < secs {
        while pending.len() < 32 {
            let Some(mut b) = q.alloc() else { break };
            if b.fill(f).is_err() {
                q.free(b);
                break;
            }
            pending.push(b);
        }
        if q.tx_burst(&mut pending) == 0 {
            std::hint::spin_loop();
        }
    }
    let el = start.elapsed().as_secs_f64();
    let after = q.counters().snapshot();
    for b in pending.drain(..) {
        q.free(b);
    }
    (
        (after.tx_packets - before.tx_packets) as f64 / el,
        after.tx_ring_full - before.tx_ring_full,
    )
}

fn open(ns: &str, cfg: AfPacketConfig) -> AfPacketPort {
    VethPair::run_in(ns, move || AfPacketPort::open(&cfg))
        .expect("enter namespace")
        .expect("open AF_PACKET")
}

fn afpacket_run(size: usize, mode: TxMode, bypass: bool, secs: f64) -> Row {
    let net = VethPair::new().expect("veth pair");
    let mut cfg_a = AfPacketConfig::new(&net.a);
    cfg_a.tx_mode = mode;
    cfg_a.qdisc_bypass = bypass;
    let mut pa = open(&net.ns_a, cfg_a);
    let mut pb = open(&net.ns_b, AfPacketConfig::new(&net.b));
    let f = frame(size, pb.link().mac);
    let stop = Arc::new(AtomicBool::new(false));
    let rx = receiver(pb.take_queues().remove(0), stop.clone());
    let mut qa = pa.take_queues().remove(0);
    let (tx_pps, full) = blast(&mut qa, &f, secs);
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let (_, n, el) = rx.join().expect("receiver");
    Row {
        backend: "af_packet",
        tx: format!(
            "{}{}",
            match mode {
                TxMode::Ring => "tx_ring",
                TxMode::Sendmmsg => "sendmmsg",
            },
            if bypass { "+qdisc_bypass" } else { "" }
        ),
        size,
        tx_pps,
        rx_pps: if el > 0.0 { n as f64 / el } else { 0.0 },
        tx_ring_full: full,
    }
}

#[cfg(feature = "dpdk")]
fn dpdk_runs(secs: f64, rows: &mut Vec<Row>) {
    use akagate_sys::dpdk::open_af_packet_vdev;
    let net = VethPair::new().expect("veth pair");
    let iface = net.b.clone();
    let mut dp = VethPair::run_in(&net.ns_b, move || {
        open_af_packet_vdev("akagate-bench", &iface, 256)
    })
    .expect("namespace")
    .expect("DPDK port");
    let mut cfg_a = AfPacketConfig::new(&net.a);
    cfg_a.qdisc_bypass = true;
    let mut ka = open(&net.ns_a, cfg_a);
    let (mac_d, mac_k) = (dp.link().mac, ka.link().mac);
    let mut dq = dp.take_queues().remove(0);
    let mut kq = ka.take_queues().remove(0);
    for size in SIZES {
        // Kernel AF_PACKET (TX ring, qdisc bypass) -> DPDK rx.
        let stop = Arc::new(AtomicBool::new(false));
        let rx = receiver(dq, stop.clone());
        let (tx_pps, full) = blast(&mut kq, &frame(size, mac_d), secs);
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        let (q, n, el) = rx.join().expect("receiver");
        dq = q;
        rows.push(Row {
            backend: "dpdk",
            tx: "rx: af_packet tx_ring+qdisc_bypass -> net_af_packet".into(),
            size,
            tx_pps,
            rx_pps: if el > 0.0 { n as f64 / el } else { 0.0 },
            tx_ring_full: full,
        });
        // DPDK tx -> kernel AF_PACKET rx.
        let stop = Arc::new(AtomicBool::new(false));
        let rx = receiver(kq, stop.clone());
        let (tx_pps, full) = blast(&mut dq, &frame(size, mac_k), secs);
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        let (q, n, el) = rx.join().expect("receiver");
        kq = q;
        rows.push(Row {
            backend: "dpdk",
            tx: "tx: net_af_packet -> af_packet rx ring".into(),
            size,
            tx_pps,
            rx_pps: if el > 0.0 { n as f64 / el } else { 0.0 },
            tx_ring_full: full,
        });
    }
}

fn main() {
    if let Some(why) = unavailable_reason() {
        println!("io bench skipped: {why}");
        return;
    }
    let secs: f64 = std::env::var("AKG_IO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let mut rows = Vec::new();
    for size in SIZES {
        for (mode, bypass) in [
            (TxMode::Ring, false),
            (TxMode::Ring, true),
            (TxMode::Sendmmsg, false),
            (TxMode::Sendmmsg, true),
        ] {
            rows.push(afpacket_run(size, mode, bypass, secs));
        }
    }
    let afpacket_only = std::env::var("AKG_IO_AFPACKET_ONLY").is_ok_and(|v| v == "1");
    #[cfg(feature = "dpdk")]
    if !afpacket_only {
        dpdk_runs(secs, &mut rows);
    }
    #[cfg(not(feature = "dpdk"))]
    if !afpacket_only {
        println!("(DPDK rows need `--features dpdk`: libdpdk-dev, libclang-dev, pkg-config)");
    }
    print(&rows, secs);
}

fn print(rows: &[Row], secs: f64) {
    println!(
        "{:10} {:50} {:>5} {:>10} {:>10} {:>9}",
        "backend", "path", "bytes", "tx Mpps", "rx Mpps", "ring_full"
    );
    for r in rows {
        println!(
            "{:10} {:50} {:>5} {:>10.3} {:>10.3} {:>9}",
            r.backend,
            r.tx,
            r.size,
            r.tx_pps / 1e6,
            r.rx_pps / 1e6,
            r.tx_ring_full
        );
    }
    if let Ok(path) = std::env::var("AKG_IO_JSON") {
        let results: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"backend": r.backend, "path": r.tx, "frame_bytes": r.size,
                    "tx_pps": r.tx_pps, "rx_pps": r.rx_pps, "tx_ring_full": r.tx_ring_full})
            })
            .collect();
        let doc = serde_json::json!({"section": "io", "seconds_per_run": secs,
            "note": "veth pair between two network namespaces, one queue, sender and receiver on separate threads",
            "results": results});
        if let Err(e) = std::fs::write(&path, format!("{doc:#}\n")) {
            eprintln!("writing {path}: {e}");
        }
    }
}
