//! Memory per registered UE (issue 10: a million UEs in 16 GiB): registers N UEs through the
//! in-process gateway (real worker + slowpath core) and counts, with [`Counting`] as the
//! global allocator of the binary, the heap bytes live in allocations made while the gateway
//! ran. The UE simulators register in waves of 1000 and are dropped, so their own memory is
//! not counted and does not accumulate. Each UE keeps its protected TCP connection open
//! (port_uc -> port_ps, its receive and send buffers), as a phone does.
//!
//! Used by `benches/mem.rs` (`make bench`, section `mem`: 10k / 100k / 1M UEs, peak RSS) and
//! by `tests/mem_per_ue.rs` (the 16 KiB bound, at a few thousand UEs).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::{generate_subscribers, Hss, Plmn};
use akagate_sys::mempair::{mem_pair, MemPairConfig};
use akagate_sys::Port;
use smoltcp::time::Instant;

use crate::alloccount::gateway_live;
pub use crate::alloccount::{gateway_allocations, in_gateway, Counting};
use crate::fleet::Fleet;
use crate::gateway::{GatewayConfig, InProcessGateway};
use crate::pktgen::establish::{make_ue, register_all, Lent};

/// Registration lifetime the probe's UEs ask for (s): six hours.
const REGISTRATION_EXPIRES: u32 = 6 * 3600;

/// The bound of issue 10: a registered UE, its SAs, its stack and one open protected
/// connection in at most 16 KiB.
pub const BYTES_PER_UE_BOUND: f64 = 16.0 * 1024.0;

/// Heap bytes of the gateway: fixed after start, and per registered UE.
#[derive(Debug, serde::Serialize)]
pub struct MemFigure {
    /// UEs registered.
    pub ues: usize,
    /// Bytes live after start-up (SA table, neighbour table, pools).
    pub fixed_bytes: i64,
    /// Spare TCP sockets the worker made at start ([`InProcessGateway::reserve_sockets`]).
    pub reserved_sockets: usize,
    /// Their bytes: counted per UE (in `bytes_after_registration`), not as fixed.
    pub reserve_bytes: i64,
    /// Bytes live once every UE is registered.
    pub bytes_after_registration: i64,
    /// (after - fixed) / UEs.
    pub bytes_per_ue: f64,
    /// Fixed bytes per UE slot the gateway was sized for.
    pub fixed_bytes_per_ue_slot: f64,
    /// Peak resident set of the whole process while registering (VmHWM; the simulator's
    /// waves of 1000 UEs and the subscriber records included), bytes.
    pub peak_rss_bytes: u64,
    /// Wall time of the registrations.
    pub register_seconds: f64,
    /// Registrations per second (one thread steps gateway and simulator).
    pub registrations_per_second: f64,
    /// Worker CPU per registration (its loop and the commands into it, busy steps only;
    /// the counting allocator's bookkeeping included).
    pub worker_cpu_us_per_registration: f64,
    /// Slowpath core CPU per registration.
    pub core_cpu_us_per_registration: f64,
    /// Gateway steps that did work, per registration.
    pub busy_steps_per_registration: f64,
    /// Frames the worker received per registration (counted from the gateway's start).
    pub rx_frames_per_registration: f64,
    /// Frames the worker sent per registration.
    pub tx_frames_per_registration: f64,
    /// Per-UE stack polls (`UeStack::poll_with`) per registration.
    pub stack_polls_per_registration: f64,
    /// Allocation calls (allocations and reallocations) in the worker's part of the busy
    /// steps, per registration.
    pub worker_allocations_per_registration: f64,
    /// Allocation calls in the slowpath core's part of the busy steps, per registration.
    pub core_allocations_per_registration: f64,
    /// Commands the core gave the worker, per registration.
    pub commands_per_registration: f64,
}

/// Reads a `kB` field of `/proc/<file>` (e.g. `self/status` `VmHWM`, `meminfo`
/// `MemAvailable`), in bytes.
fn proc_kb(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak resident set (VmHWM) of this process (Linux: `echo 5 >
/// /proc/self/clear_refs`); ignored where unavailable.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Host memory the run leaves free: registering stops with an error below it, so a run that
/// would not fit fails instead of pushing the host into the OOM killer.
const MIN_AVAILABLE: u64 = 2 << 30;

/// How many times slower than the wall clock the gateway's clock runs: 1, or
/// `AKG_MEM_SLOWDOWN` (under valgrind, about 50: at the wall clock's pace its timers would
/// fire as if the host were that much slower, and retransmissions and polls would be
/// counted that a native run does not have).
fn clock_slowdown() -> u128 {
    std::env::var("AKG_MEM_SLOWDOWN")
        .ok()
        .and_then(|v| v.parse::<u128>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(1)
}

/// Gateway steps after the last registration when the clock is slowed (the instruction-count
/// runs): enough for the last ACK and the frames already in the rings.
const SETTLE_STEPS_SLOWED: usize = 64;

/// Registrations kept in flight at once: 256, or `AKG_MEM_INFLIGHT` (the worker's CPU per
/// registration depends on it: with more UEs mid-registration, less of their state is still
/// in the caches when their next packet comes; docs/BENCHMARKS.md, "Fifth round, worker").
fn in_flight() -> usize {
    std::env::var("AKG_MEM_INFLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(256)
}

/// Registers `n` UEs (IPv4, hmac-sha-1-96 + aes-cbc, over TCP) through a fresh in-process
/// gateway and measures its heap. `progress` is told the UEs registered after each wave.
pub fn measure(n: usize, mut progress: impl FnMut(usize)) -> Result<MemFigure, String> {
    const WAVE: usize = 1000;
    reset_peak_rss();
    let subs = generate_subscribers(n as u64, 7, Plmn::default());
    let hss = Hss::from_records(&subs).map_err(|e| e.to_string())?;
    let ring = 8192;
    let (mut a, mut b) = mem_pair(&MemPairConfig {
        ring_size: ring,
        pool_size: ring * 4,
        ..MemPairConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let (Some(qa), Some(mut qb)) = (a.take_queues().pop(), b.take_queues().pop()) else {
        return Err("memory pair without queues".into());
    };
    let t0 = std::time::Instant::now();
    let slow = clock_slowdown();
    let clock = move || Instant::from_micros((t0.elapsed().as_micros() / slow) as i64);
    let before = gateway_live();
    let mut gw = in_gateway(|| {
        let mut cfg = GatewayConfig::new(n + 16);
        cfg.ipv4 = Some((std::net::Ipv4Addr::new(10, 0, 0, 1), 8));
        cfg.core.profile.auth_alg_list = vec![AuthAlg::HmacSha1_96];
        cfg.core.profile.encr_alg_list = vec![EncrAlg::AesCbc];
        // The bench registers faster than the default admission limit of 10 000
        // unauthenticated REGISTERs per second (an overload guard, not what is measured
        // here): above it the run would be shed with 503s.
        cfg.core.register_rate_total = u32::MAX;
        InProcessGateway::new(cfg, hss, qa, clock())
    })
    .map_err(|e| e.to_string())?;
    // The SA slabs' first spare segments are being made off the worker: wait for them, so
    // this constant reserve (one segment per slab, also there at the end) counts as fixed.
    let wait = std::time::Instant::now();
    while !gw.sa_spares_ready() && wait.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The worker's reserve of spare sockets, made and first touched at start as a node sized
    // for its UEs would: not counted as fixed, so every socket its UEs took from it (and what
    // is left of it at the end) counts per UE, as if allocated during the registrations.
    let reserve_start = gateway_live();
    let reserved_sockets =
        in_gateway(|| gw.reserve_sockets(crate::gateway::socket_reserve(n, in_flight())));
    let reserve_bytes = gateway_live() - reserve_start;
    let fixed = gateway_live() - before - reserve_bytes;
    gw.account_cpu(true);
    let pcscf = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    let mac = Arc::new(Mutex::new(None));
    let start = std::time::Instant::now();
    let mut first = 0;
    while first < n {
        if proc_kb("meminfo", "MemAvailable:").is_some_and(|a| a < MIN_AVAILABLE) {
            return Err(format!(
                "stopped after {first} UEs: less than {} GiB of host memory left",
                MIN_AVAILABLE >> 30
            ));
        }
        let last = (first + WAVE).min(n);
        let mut fleet = Fleet::new(Lent::new(&mut qb, mac.clone()));
        for (i, rec) in subs.iter().enumerate().take(last).skip(first) {
            let mut ue = make_ue(i, rec, pcscf, false, AuthAlg::HmacSha1_96, EncrAlg::AesCbc)
                .map_err(|e| e.to_string())?;
            // Long enough that the first registrations of a million, at about a thousand
            // per second on a shared box, are still held when the last one completes.
            ue.config_mut().expires = REGISTRATION_EXPIRES;
            fleet.add(ue);
        }
        register_all(
            &mut fleet,
            in_flight(),
            std::time::Duration::from_secs(300),
            std::time::Duration::from_millis(20),
            &clock,
            |now| in_gateway(|| gw.step(now)),
        )
        .map_err(|e| e.to_string())?;
        first = last;
        progress(first);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = gw.cpu();
    let per_reg = |name: &str| gw.counters().get(name).unwrap_or(0) as f64 / n as f64;
    let (rx_frames, tx_frames, stack_polls) = (
        per_reg("rx_frames"),
        per_reg("tx_frames"),
        per_reg("stack_polls"),
    );
    gw.account_cpu(false);
    // Let the last ACKs and timers run so nothing transient is counted. Under a slowed
    // clock (valgrind) 200 ms of wall time is 2 ms or less of the gateway's time, in which
    // nothing comes due, but it would be anywhere from a few to thousands of empty steps
    // with the host's load, each counted by callgrind's toggle on `step`: a fixed number of
    // steps there keeps the instruction count a property of the registrations.
    if clock_slowdown() > 1 {
        for _ in 0..SETTLE_STEPS_SLOWED {
            in_gateway(|| gw.step(clock()));
        }
    } else {
        let settle = std::time::Instant::now();
        while settle.elapsed() < std::time::Duration::from_millis(200) {
            in_gateway(|| gw.step(clock()));
        }
    }
    let registered = gw
        .core()
        .registrations_view(std::time::Instant::now())
        .iter()
        .filter(|r| r.contact.is_some())
        .count();
    if registered != n {
        return Err(format!("{registered} of {n} registrations held"));
    }
    let live = gateway_live() - before;
    let peak_rss_bytes = proc_kb("self/status", "VmHWM:").unwrap_or(0);
    drop(gw);
    Ok(MemFigure {
        ues: n,
        fixed_bytes: fixed,
        reserved_sockets,
        reserve_bytes,
        bytes_after_registration: live,
        bytes_per_ue: (live - fixed) as f64 / n as f64,
        fixed_bytes_per_ue_slot: fixed as f64 / (n + 16) as f64,
        peak_rss_bytes,
        register_seconds: secs,
        registrations_per_second: n as f64 / secs,
        worker_cpu_us_per_registration: cpu.worker.as_secs_f64() * 1e6 / n as f64,
        core_cpu_us_per_registration: cpu.core.as_secs_f64() * 1e6 / n as f64,
        busy_steps_per_registration: cpu.busy_steps as f64 / n as f64,
        rx_frames_per_registration: rx_frames,
        tx_frames_per_registration: tx_frames,
        stack_polls_per_registration: stack_polls,
        worker_allocations_per_registration: cpu.worker_allocations as f64 / n as f64,
        core_allocations_per_registration: cpu.core_allocations as f64 / n as f64,
        commands_per_registration: cpu.commands as f64 / n as f64,
    })
}
