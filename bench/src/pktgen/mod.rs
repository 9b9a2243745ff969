//! `akapktgen`: the fast-path packet generator. N simulated UEs register through the gateway,
//! their state is snapshotted, ESP-protected SIP-over-TCP segments continuing each UE's
//! protected connection are pre-built, and the whole set is blasted at the gateway's port as
//! fast as the backend allows (or at a set rate), like pktgen-dpdk or TRex; the same frames
//! can be written as a pcap for replay on real NICs. The report gives packets/s and Gbps per
//! worker core from the gateway's own counters and its worker threads' CPU time. Against an
//! external gateway (over AF_PACKET or a DPDK port) only the transmit side is measured.

pub mod blast;
pub use crate::cputime;
pub mod establish;
pub mod pcap;
pub mod segments;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::{generate_subscribers, render_toml, Plmn, SubscriberRecord};
use akagate_sys::{Port, PortQueue};
use serde::Serialize;
use smoltcp::time::Instant;

use blast::{blast, BlastResult, Traffic};
use establish::{make_ue, register_all, snapshot, Lent, Snapshot};
use segments::sip_message;

use crate::fleet::Fleet;
use crate::load::DpdkPortSpec;
use crate::ue::Ue;

/// Where the gateway is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The akagate daemon started in-process on the memory backend (its own worker and
    /// slowpath threads); counters and worker CPU time are read from it.
    Daemon {
        /// Worker threads.
        workers: usize,
    },
    /// An external akagate reached through AF_PACKET on `iface`, at `pcscf`; only the
    /// transmit side and the returned frames are measured.
    AfPacket {
        /// Interface name.
        iface: String,
        /// The P-CSCF's address.
        pcscf: IpAddr,
    },
    /// An external akagate reached through a DPDK ethdev port (cargo feature `dpdk`), at
    /// `pcscf`; measured like [`Target::AfPacket`].
    Dpdk {
        /// EAL arguments and the port to open.
        port: DpdkPortSpec,
        /// The P-CSCF's address.
        pcscf: IpAddr,
    },
}

/// Receive buffer the in-process gateway gets for a blast (see `run`): covers the segments
/// one UE receives between two polls of its stack at full rate.
const BLAST_RX_WINDOW: usize = 64 * 1024;

/// Parameters of one pktgen run.
#[derive(Clone, Debug)]
pub struct PktgenConfig {
    /// Simulated UEs (each gets its own SAs and connection).
    pub ues: usize,
    /// Inner IP packet size in bytes (IP + TCP + SIP bytes, what ESP protects); 64 gives
    /// 24-byte TCP payloads, 1408 gives 1368.
    pub size: usize,
    /// Packets per UE (rounded up so each TCP stream ends with a whole SIP message).
    pub packets_per_ue: usize,
    /// Size of each SIP message in the stream.
    pub sip_bytes: usize,
    /// Fixed offered rate (packets/s), or `None` for as fast as possible.
    pub rate_pps: Option<f64>,
    /// Integrity algorithm offered by the UEs.
    pub alg: AuthAlg,
    /// Encryption algorithm offered by the UEs.
    pub ealg: EncrAlg,
    /// IPv6 instead of IPv4.
    pub ipv6: bool,
    /// Registrations in flight at most.
    pub concurrency: usize,
    /// Subscribers (the first `ues` are used); `None` generates them (seed 1, as
    /// `akactl subscribers` does by default).
    pub subscribers: Option<Vec<SubscriberRecord>>,
    /// Write the pre-built frames here as a pcap.
    pub pcap: Option<PathBuf>,
    /// Registration phase deadline.
    pub register_timeout: std::time::Duration,
    /// The gateway.
    pub target: Target,
}

impl PktgenConfig {
    /// Defaults: 64 UEs, 64-byte packets, 2000 per UE, 1024-byte SIP messages, hmac-sha-1-96
    /// with aes-cbc, IPv4, in-process daemon with one worker.
    pub fn new() -> Self {
        PktgenConfig {
            ues: 64,
            size: 64,
            packets_per_ue: 2000,
            sip_bytes: 1024,
            rate_pps: None,
            alg: AuthAlg::HmacSha1_96,
            ealg: EncrAlg::AesCbc,
            ipv6: false,
            concurrency: 64,
            subscribers: None,
            pcap: None,
            register_timeout: std::time::Duration::from_secs(120),
            target: Target::Daemon { workers: 1 },
        }
    }
}

impl Default for PktgenConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PktgenError {
    /// Bad parameters, subscribers, or the gateway did not start.
    #[error("setup: {0}")]
    Setup(String),
    /// Not every UE registered.
    #[error("registration: {0}")]
    Register(String),
    /// A registered UE's state could not be taken over.
    #[error("snapshot: {0}")]
    Snapshot(&'static str),
    /// The pre-built traffic could not be built or written.
    #[error("traffic: {0}")]
    Traffic(String),
}

/// The gateway's view of a blast (in-process daemon only).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GatewayFigures {
    /// Worker threads.
    pub workers: usize,
    /// ESP packets the workers decapsulated during the blast.
    pub esp_in: u64,
    /// SIP messages the workers passed to the slowpath during the blast.
    pub sip_in: u64,
    /// Frames the workers transmitted during the blast (ACKs).
    pub tx_frames: u64,
    /// Non-zero worker drop counters that grew during the blast.
    pub drops: BTreeMap<String, u64>,
    /// Seconds from the first frame sent to the last ESP packet decapsulated.
    pub wall_seconds: f64,
    /// CPU seconds of the worker threads during the blast (their idle loop sleeps).
    pub worker_busy_seconds: f64,
    /// CPU seconds of the slowpath thread during the blast.
    pub slowpath_busy_seconds: f64,
    /// Decapsulated packets per wall-clock second (all workers), millions.
    pub mpps: f64,
    /// Decapsulated packets per second of worker CPU time: the per-core figure, millions.
    pub mpps_per_core: f64,
    /// Ethernet frame bits per second of worker CPU time, Gbit/s.
    pub gbps_per_core: f64,
    /// Inner IP (ESP-protected) bits per second of worker CPU time, Gbit/s.
    pub inner_gbps_per_core: f64,
    /// Worker CPU nanoseconds per packet.
    pub ns_per_packet: f64,
    /// Beside `ns_per_packet`, never instead of it: wall-clock nanoseconds per packet of the
    /// workers' loop iterations that did work only (`akagate::daemon::busy_iteration_ns`,
    /// like VPP's clocks per packet over the calls that carried vectors), so without the
    /// idle turns thread CPU time includes. Preempted iterations (over 1 ms) are left out.
    pub busy_iteration_ns_per_packet: f64,
    /// Busy iterations left out of `busy_iteration_ns_per_packet` as preempted.
    pub busy_iterations_preempted: u64,
}

/// The result of one run (also written as JSON by `akapktgen`).
#[derive(Clone, Debug, Serialize)]
pub struct PktgenReport {
    /// Run parameters.
    pub params: BTreeMap<String, String>,
    /// UEs registered and blasted for.
    pub ues: usize,
    /// Pre-built frames.
    pub packets: u64,
    /// Average Ethernet frame length.
    pub frame_bytes_avg: f64,
    /// Complete SIP messages in the streams.
    pub sip_messages: u64,
    /// Seconds the registration phase took.
    pub register_seconds: f64,
    /// Frames the port accepted.
    pub sent: u64,
    /// Seconds from the first to the last frame accepted.
    pub tx_seconds: f64,
    /// Offered rate the port accepted, packets/s.
    pub tx_pps: f64,
    /// Bursts the port did not take whole (back-pressure from the gateway).
    pub tx_stalls: u64,
    /// Frames that came back (ACKs, responses).
    pub returned_frames: u64,
    /// The gateway's counters and CPU time, when it ran in-process.
    pub gateway: Option<GatewayFigures>,
    /// The pcap written, if any.
    pub pcap: Option<String>,
}

impl PktgenReport {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "pktgen: {} UEs, {} frames ({:.0} B avg), {} SIP messages; registered in {:.2} s\n\
             tx: {} frames in {:.3} s ({:.3} Mpps offered), {} stalls; {} frames returned\n",
            self.ues,
            self.packets,
            self.frame_bytes_avg,
            self.sip_messages,
            self.register_seconds,
            self.sent,
            self.tx_seconds,
            self.tx_pps / 1e6,
            self.tx_stalls,
            self.returned_frames
        );
        if let Some(g) = &self.gateway {
            s.push_str(&format!(
                "gateway ({} worker(s)): esp_in {} sip_in {} tx {} in {:.3} s wall, {:.3} s worker CPU, {:.3} s slowpath CPU\n\
                 \x20 {:.3} Mpps wall; per worker core: {:.3} Mpps, {:.2} Gbps frames, {:.2} Gbps inner, {:.0} ns/packet\n",
                g.workers,
                g.esp_in,
                g.sip_in,
                g.tx_frames,
                g.wall_seconds,
                g.worker_busy_seconds,
                g.slowpath_busy_seconds,
                g.mpps,
                g.mpps_per_core,
                g.gbps_per_core,
                g.inner_gbps_per_core,
                g.ns_per_packet
            ));
            s.push_str(&format!(
                "  busy iterations only (wall clock of the worker loop's iterations that did work; not CPU time, not the figure above): {:.0} ns/packet, {:.0}k SIP msg/s ({} preempted iterations left out)\n",
                g.busy_iteration_ns_per_packet,
                if g.busy_iteration_ns_per_packet > 0.0 && g.esp_in > 0 {
                    g.sip_in as f64 / (g.busy_iteration_ns_per_packet * g.esp_in as f64 / 1e9) / 1e3
                } else {
                    0.0
                },
                g.busy_iterations_preempted
            ));
            if g.drops.is_empty() {
                s.push_str("  drops: none\n");
            }
            for (k, v) in &g.drops {
                s.push_str(&format!("  drop {k}: {v}\n"));
            }
        }
        if let Some(p) = &self.pcap {
            s.push_str(&format!("pcap: {p}\n"));
        }
        s
    }
}

/// Pre-builds the traffic of the snapshotted UEs, round-robin: frame `k` belongs to UE
/// `k mod N` while it has segments left.
pub fn build_traffic<Q: PortQueue>(
    fleet: &mut Fleet<Q>,
    snaps: &[(usize, Snapshot)],
    gw_mac: [u8; 6],
    cfg: &PktgenConfig,
) -> Result<Traffic, PktgenError> {
    struct Gen {
        ue: usize,
        stream: Vec<u8>,
        off: usize,
        seg: usize,
        seq0: u32,
        ip_id: u16,
    }
    let mut traffic = Traffic::default();
    let mut gens = Vec::with_capacity(snaps.len());
    for (i, s) in snaps {
        let seg = s
            .tcp
            .payload_for(cfg.size)
            .map_err(|e| PktgenError::Traffic(e.to_string()))?;
        let want = cfg.packets_per_ue.max(1) * seg;
        let msgs = want.div_ceil(cfg.sip_bytes.max(1));
        let ue = fleet
            .ue(*i)
            .ok_or(PktgenError::Snapshot("UE index out of range"))?;
        let via = match ue.ip() {
            IpAddr::V4(a) => format!("{a}:{}", s.tcp.ports.0),
            IpAddr::V6(a) => format!("[{a}]:{}", s.tcp.ports.0),
        };
        let mut stream = Vec::with_capacity(msgs * cfg.sip_bytes);
        for m in 0..msgs as u64 {
            stream.extend(sip_message(&s.impu, *i, m, &via, cfg.sip_bytes));
        }
        traffic.sip_messages += msgs as u64;
        traffic.spis.push(s.spi_ps);
        gens.push(Gen {
            ue: *i,
            stream,
            off: 0,
            seg,
            seq0: s.tcp.seq,
            ip_id: 0x4000,
        });
    }
    let mut frame = Vec::with_capacity(2048);
    loop {
        let mut any = false;
        for (g, (_, s)) in gens.iter_mut().zip(snaps) {
            let Some(rest) = g.stream.get(g.off..).filter(|r| !r.is_empty()) else {
                continue;
            };
            any = true;
            let chunk = &rest[..rest.len().min(g.seg)];
            let inner = s
                .tcp
                .segment(g.seq0.wrapping_add(g.off as u32), chunk, g.ip_id);
            let ue: &mut Ue = fleet
                .ue_mut(g.ue)
                .ok_or(PktgenError::Snapshot("UE index out of range"))?;
            let mac = ue.mac().0;
            let esp = match ue.sas.as_mut().and_then(|sa| sa.protect(&inner)) {
                Some(Ok(p)) => p,
                Some(Err(e)) => return Err(PktgenError::Traffic(format!("ESP: {e}"))),
                None => return Err(PktgenError::Traffic("no SA covers the segment".into())),
            };
            frame.clear();
            frame.extend_from_slice(&gw_mac);
            frame.extend_from_slice(&mac);
            frame.extend_from_slice(if esp.first().map(|b| b >> 4) == Some(6) {
                &[0x86, 0xdd]
            } else {
                &[0x08, 0x00]
            });
            frame.extend_from_slice(&esp);
            traffic.push(&frame, inner.len());
            g.off += chunk.len();
            g.ip_id = g.ip_id.wrapping_add(1);
        }
        if !any {
            break;
        }
    }
    Ok(traffic)
}

fn params(cfg: &PktgenConfig) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    p.insert("ues".into(), cfg.ues.to_string());
    p.insert("size".into(), cfg.size.to_string());
    p.insert("packets_per_ue".into(), cfg.packets_per_ue.to_string());
    p.insert("sip_bytes".into(), cfg.sip_bytes.to_string());
    p.insert(
        "rate_pps".into(),
        cfg.rate_pps.map_or("max".into(), |r| format!("{r}")),
    );
    p.insert("alg".into(), cfg.alg.token().into());
    p.insert("ealg".into(), cfg.ealg.token().into());
    p.insert("ip".into(), if cfg.ipv6 { "ipv6" } else { "ipv4" }.into());
    p.insert(
        "target".into(),
        match &cfg.target {
            Target::Daemon { workers } => format!("daemon (memory, {workers} worker(s))"),
            Target::AfPacket { iface, pcscf } => format!("af_packet:{iface} -> {pcscf}"),
            Target::Dpdk { port, pcscf } => format!("dpdk:{} -> {pcscf}", port.device),
        },
    );
    p
}

/// The slowpath thread's name as `/proc` shows it (`comm` keeps 15 bytes of
/// "akagate-slowpath").
const SLOWPATH_COMM: &str = "akagate-slowpat";

/// CPU nanoseconds of each thread whose name starts with `prefix`, by its `/proc` task path.
fn threads_cpu_ns(prefix: &str) -> BTreeMap<PathBuf, u64> {
    cputime::threads_with_prefix(prefix)
        .into_iter()
        .filter_map(|p| Some((p.clone(), cputime::thread_cpu_ns(&p)?)))
        .collect()
}

/// CPU seconds the threads of `before` spent until `after` (threads that ended or started
/// in between are left out: with several daemons in one process, as in tests, names repeat).
fn cpu_seconds(before: &BTreeMap<PathBuf, u64>, after: &BTreeMap<PathBuf, u64>) -> f64 {
    before
        .iter()
        .filter_map(|(t, b)| Some(after.get(t)?.saturating_sub(*b)))
        .sum::<u64>() as f64
        / 1e9
}

/// Registers, snapshots, pre-builds and blasts; see the module documentation.
pub fn run(cfg: &PktgenConfig) -> Result<PktgenReport, PktgenError> {
    if cfg.ues == 0 || cfg.size == 0 || cfg.sip_bytes < 200 {
        return Err(PktgenError::Setup(
            "need at least one UE, a packet size and SIP messages of 200 bytes or more".into(),
        ));
    }
    let subscribers = match &cfg.subscribers {
        Some(s) => s.clone(),
        None => generate_subscribers(cfg.ues as u64, 1, Plmn::default()),
    };
    if subscribers.len() < cfg.ues {
        return Err(PktgenError::Setup(format!(
            "{} UEs requested but only {} subscribers",
            cfg.ues,
            subscribers.len()
        )));
    }
    match &cfg.target {
        Target::Daemon { workers } => run_daemon(cfg, &subscribers, *workers),
        Target::AfPacket { iface, pcscf } => run_af_packet(cfg, &subscribers, iface, *pcscf),
        Target::Dpdk { port, pcscf } => run_dpdk(cfg, &subscribers, port, *pcscf),
    }
}

/// Per-worker counter totals of interest, read from the daemon.
fn daemon_counters(h: &akagate::DaemonHandle) -> BTreeMap<String, u64> {
    let st = h.stats();
    let mut m = BTreeMap::new();
    for w in &st.workers {
        for (d, v) in w.counters.iter() {
            *m.entry(d.name.to_string()).or_default() += v;
        }
    }
    m
}

fn run_daemon(
    cfg: &PktgenConfig,
    subscribers: &[SubscriberRecord],
    workers: usize,
) -> Result<PktgenReport, PktgenError> {
    let dir = std::env::temp_dir().join(format!(
        "akapktgen-{}-{}",
        std::process::id(),
        crate::ue::token(4)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| PktgenError::Setup(e.to_string()))?;
    let result = (|| {
        let subs = dir.join("subscribers.toml");
        std::fs::write(&subs, render_toml(&subscribers[..cfg.ues]))
            .map_err(|e| PktgenError::Setup(format!("{}: {e}", subs.display())))?;
        // The blast is pre-built and ignores the gateway's advertised TCP window (a real
        // sender never would), so give the gateway's sockets room for a whole burst per UE
        // instead of the 4 KiB default; otherwise segments beyond the window are dropped by
        // TCP and the measurement would count them as lost.
        let mut d =
            crate::daemon::start_memory_daemon_with(&dir, &subs, workers, cfg.ues * 8, |c| {
                c.stack.tcp_rx_buffer = c.stack.tcp_rx_buffer.max(BLAST_RX_WINDOW);
            })
            .map_err(PktgenError::Setup)?;
        let pcscf = if cfg.ipv6 {
            IpAddr::V6(crate::daemon::DAEMON_V6)
        } else {
            IpAddr::V4(crate::daemon::DAEMON_V4)
        };
        let out = establish_and_blast(cfg, subscribers, &mut d.queue, pcscf, Some(&d.handle));
        let shut = d.handle.shutdown();
        let report = out?;
        shut.map_err(|e| PktgenError::Setup(format!("daemon shutdown: {e}")))?;
        Ok(report)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(target_os = "linux")]
fn run_af_packet(
    cfg: &PktgenConfig,
    subscribers: &[SubscriberRecord],
    iface: &str,
    pcscf: IpAddr,
) -> Result<PktgenReport, PktgenError> {
    use akagate_sys::afpacket::{AfPacketConfig, AfPacketPort};
    let mut port = AfPacketPort::open(&AfPacketConfig::new(iface))
        .map_err(|e| PktgenError::Setup(format!("{iface}: {e}")))?;
    let mut q = port
        .take_queues()
        .pop()
        .ok_or_else(|| PktgenError::Setup(format!("{iface}: no queue")))?;
    establish_and_blast(cfg, subscribers, &mut q, pcscf, None)
}

#[cfg(not(target_os = "linux"))]
fn run_af_packet(
    _: &PktgenConfig,
    _: &[SubscriberRecord],
    _: &str,
    _: IpAddr,
) -> Result<PktgenReport, PktgenError> {
    Err(PktgenError::Setup("AF_PACKET needs Linux".into()))
}

/// The UEs on a DPDK port; the EAL starts in this thread (see [`DpdkPortSpec::open`]).
#[cfg(feature = "dpdk")]
fn run_dpdk(
    cfg: &PktgenConfig,
    subscribers: &[SubscriberRecord],
    port: &DpdkPortSpec,
    pcscf: IpAddr,
) -> Result<PktgenReport, PktgenError> {
    let mut q = port
        .open("akapktgen")
        .map_err(|e| PktgenError::Setup(format!("DPDK {}: {e}", port.device)))?;
    establish_and_blast(cfg, subscribers, &mut q, pcscf, None)
}

#[cfg(not(feature = "dpdk"))]
fn run_dpdk(
    _: &PktgenConfig,
    _: &[SubscriberRecord],
    _: &DpdkPortSpec,
    _: IpAddr,
) -> Result<PktgenReport, PktgenError> {
    Err(PktgenError::Setup(akagate_sys::DPDK_HOWTO.into()))
}

fn establish_and_blast<Q: PortQueue>(
    cfg: &PktgenConfig,
    subscribers: &[SubscriberRecord],
    q: &mut Q,
    pcscf: IpAddr,
    daemon: Option<&akagate::DaemonHandle>,
) -> Result<PktgenReport, PktgenError> {
    let t0 = std::time::Instant::now();
    let clock =
        move || Instant::from_micros(i64::try_from(t0.elapsed().as_micros()).unwrap_or(i64::MAX));
    let peer_mac = Arc::new(Mutex::new(None));
    let (traffic, register_seconds) = {
        let mut fleet = Fleet::new(Lent::new(q, peer_mac.clone()));
        for (i, rec) in subscribers.iter().take(cfg.ues).enumerate() {
            fleet.add(make_ue(i, rec, pcscf, cfg.ipv6, cfg.alg, cfg.ealg)?);
        }
        let registered = register_all(
            &mut fleet,
            cfg.concurrency,
            cfg.register_timeout,
            std::time::Duration::from_millis(100),
            &clock,
            |_| 0,
        )?;
        let register_seconds = t0.elapsed().as_secs_f64();
        let now = clock();
        let mut snaps = Vec::with_capacity(registered.len());
        for i in registered {
            let ue = fleet
                .ue_mut(i)
                .ok_or(PktgenError::Snapshot("UE index out of range"))?;
            snaps.push((i, snapshot(ue, now)?));
        }
        let gw_mac = peer_mac
            .lock()
            .ok()
            .and_then(|m| *m)
            .ok_or(PktgenError::Snapshot("no frame from the gateway seen"))?;
        (
            build_traffic(&mut fleet, &snaps, gw_mac, cfg)?,
            register_seconds,
        )
    };
    let pcap = match &cfg.pcap {
        Some(p) => {
            let epoch_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            traffic
                .write_pcap(p, cfg.rate_pps, epoch_us)
                .map_err(|e| PktgenError::Traffic(format!("{}: {e}", p.display())))?;
            Some(p.display().to_string())
        }
        None => None,
    };
    // Frames that arrived since registration (late ACKs) are not the blast's.
    let mut rx = Vec::new();
    while q.rx_burst(&mut rx, 64) > 0 {
        for b in rx.drain(..) {
            q.free(b);
        }
    }
    let before = daemon.map(daemon_counters);
    let (w0, s0) = (threads_cpu_ns("akagate-w"), threads_cpu_ns(SLOWPATH_COMM));
    let busy0 = akagate::daemon::busy_iteration_ns();
    let expected = traffic.len() as u64;
    let start = std::time::Instant::now();
    let last_change = std::cell::Cell::new(start);
    let last_esp = std::cell::Cell::new(0u64);
    let base_esp = before
        .as_ref()
        .and_then(|b| b.get("esp_in").copied())
        .unwrap_or(0);
    let done = || match daemon {
        Some(h) => {
            let e = h.stats().worker_total("esp_in") - base_esp;
            if e != last_esp.get() {
                last_esp.set(e);
                last_change.set(std::time::Instant::now());
            }
            e >= expected
        }
        None => false,
    };
    let drain = if daemon.is_some() {
        std::time::Duration::from_secs(5)
    } else {
        std::time::Duration::from_millis(500)
    };
    let b: BlastResult = blast(q, &traffic, cfg.rate_pps, done, drain);
    let gateway = match (daemon, before) {
        (Some(h), Some(before)) => {
            let (w1, s1) = (threads_cpu_ns("akagate-w"), threads_cpu_ns(SLOWPATH_COMM));
            let busy1 = akagate::daemon::busy_iteration_ns();
            let after = daemon_counters(h);
            let delta =
                |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
            let esp_in = delta("esp_in");
            let wall = last_change.get().duration_since(start).as_secs_f64();
            let busy = cpu_seconds(&w0, &w1);
            let per_core = |x: f64| if busy > 0.0 { x / busy } else { 0.0 };
            let frac = if expected > 0 {
                esp_in as f64 / expected as f64
            } else {
                0.0
            };
            Some(GatewayFigures {
                workers: h.stats().workers.len(),
                esp_in,
                sip_in: delta("sip_in"),
                tx_frames: delta("tx_frames"),
                drops: after
                    .keys()
                    .filter(|k| k.starts_with("drop_") && delta(k) > 0)
                    .map(|k| (k.clone(), delta(k)))
                    .collect(),
                wall_seconds: wall,
                worker_busy_seconds: busy,
                slowpath_busy_seconds: cpu_seconds(&s0, &s1),
                mpps: if wall > 0.0 {
                    esp_in as f64 / wall / 1e6
                } else {
                    0.0
                },
                mpps_per_core: per_core(esp_in as f64) / 1e6,
                gbps_per_core: per_core(traffic.frame_bytes() as f64 * frac * 8.0) / 1e9,
                inner_gbps_per_core: per_core(traffic.inner_bytes as f64 * frac * 8.0) / 1e9,
                ns_per_packet: if esp_in > 0 {
                    busy * 1e9 / esp_in as f64
                } else {
                    0.0
                },
                busy_iteration_ns_per_packet: if esp_in > 0 {
                    busy1.0.saturating_sub(busy0.0) as f64 / esp_in as f64
                } else {
                    0.0
                },
                busy_iterations_preempted: busy1.1.saturating_sub(busy0.1),
            })
        }
        _ => None,
    };
    Ok(PktgenReport {
        params: params(cfg),
        ues: traffic.spis.len(),
        packets: traffic.len() as u64,
        frame_bytes_avg: if traffic.is_empty() {
            0.0
        } else {
            traffic.frame_bytes() as f64 / traffic.len() as f64
        },
        sip_messages: traffic.sip_messages,
        register_seconds,
        sent: b.sent,
        tx_seconds: b.tx_seconds,
        tx_pps: if b.tx_seconds > 0.0 {
            b.sent as f64 / b.tx_seconds
        } else {
            0.0
        },
        tx_stalls: b.tx_stalls,
        returned_frames: b.returned,
        gateway,
        pcap,
    })
}

#[cfg(test)]
mod tests;
