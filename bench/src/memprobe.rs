//! Memory per registered UE (issue 10: a million UEs in 16 GiB): registers N UEs through the
//! in-process gateway (real worker + slowpath core) and counts, with [`Counting`] as the
//! global allocator of the binary, the heap bytes live in allocations made while the gateway
//! ran. The UE simulators register in waves of 1000 and are dropped, so their own memory is
//! not counted and does not accumulate. Each UE keeps its protected TCP connection open
//! (port_uc -> port_ps, its receive and send buffers), as a phone does.
//!
//! Used by `benches/mem.rs` (`make bench`, section `mem`: 10k / 100k / 1M UEs, peak RSS) and
//! by `tests/mem_per_ue.rs` (the 16 KiB bound, at a few thousand UEs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::{generate_subscribers, Hss, Plmn};
use akagate_sys::mempair::{mem_pair, MemPairConfig};
use akagate_sys::Port;
use smoltcp::time::Instant;

use crate::fleet::Fleet;
use crate::gateway::{GatewayConfig, InProcessGateway};
use crate::pktgen::establish::{make_ue, register_all, Lent};

/// Registration lifetime the probe's UEs ask for (s): six hours.
const REGISTRATION_EXPIRES: u32 = 6 * 3600;

/// The bound of issue 10: a registered UE, its SAs, its stack and one open protected
/// connection in at most 16 KiB.
pub const BYTES_PER_UE_BOUND: f64 = 16.0 * 1024.0;

/// A global allocator that forwards to the system allocator and counts the bytes allocated
/// minus freed of the allocations made while their thread was inside [`in_gateway`].
/// Declare it in the binary: `#[global_allocator] static A: Counting = Counting;`.
///
/// Each allocation carries its origin in a hidden header, so a block made by the gateway and
/// freed elsewhere still counts as freed: the in-process UE simulators share code with the
/// gateway (the TCP stack, the SIP framer and its recycled message buffers,
/// `akagate_proto::msgbuf`), and a buffer the gateway allocated may be taken and freed by a
/// simulated UE. Counting by the freeing thread instead would keep such a buffer as gateway
/// memory for ever.
pub struct Counting;

thread_local! {
    static IN_GATEWAY: Cell<bool> = const { Cell::new(false) };
}
static GATEWAY_LIVE: AtomicI64 = AtomicI64::new(0);
static GATEWAY_ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Allocation calls (allocations and reallocations) counted as the gateway's since the process
/// started; always 0 unless [`Counting`] is the binary's global allocator. The in-process
/// gateway reads it around each side of a step ([`crate::gateway::StepCpu`]).
pub fn gateway_allocations() -> u64 {
    GATEWAY_ALLOCS.load(Ordering::Relaxed)
}

/// Whether an allocation made now is the gateway's.
fn counted_here() -> bool {
    // The worker's SA slab segments are made ahead on helper threads: gateway memory too.
    IN_GATEWAY.with(Cell::get) || akagate_fastpath::sad::on_helper_thread()
}

/// The layout actually asked of the system for `l`, and the header's size: a header of at
/// least 16 bytes (a multiple of the alignment) in front of the caller's block, its last byte
/// the origin flag.
fn with_header(l: Layout) -> Option<(Layout, usize)> {
    let align = l.align().max(16);
    let header = align;
    let size = l.size().checked_add(header)?;
    Some((Layout::from_size_align(size, align).ok()?, header))
}

/// Marks the block behind `base` as counted or not and returns the caller's pointer.
///
/// # Safety
/// `base` is null or a live block of at least `header + 1` bytes.
unsafe fn finish(base: *mut u8, header: usize, counted: bool) -> *mut u8 {
    if base.is_null() {
        return base;
    }
    // SAFETY: the block has `header` bytes in front of the caller's part (the caller's
    // contract); the flag is the last of them.
    unsafe {
        let user = base.add(header);
        user.sub(1).write(counted as u8);
        user
    }
}

/// Allocates `l` with its header through `system` (given the full layout), counting it if
/// this thread is the gateway's now; null if the system allocator fails.
fn allocate(l: Layout, system: impl FnOnce(Layout) -> *mut u8) -> *mut u8 {
    let Some((full, header)) = with_header(l) else {
        return std::ptr::null_mut();
    };
    let counted = counted_here();
    let base = system(full);
    if counted && !base.is_null() {
        GATEWAY_LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        GATEWAY_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: `base` is null or a block of `full.size()` > `header` bytes.
    unsafe { finish(base, header, counted) }
}

// SAFETY: every call is forwarded to the system allocator with a header of `with_header`'s
// size in front of the caller's block, and the caller's pointer is that block's start plus
// the header, aligned as asked (the header is a multiple of the alignment).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: `full` has a non-zero size (it includes the header).
        allocate(l, |full| unsafe { System.alloc(full) })
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        allocate(l, |full| unsafe { System.alloc_zeroed(full) })
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some((full, header)) = with_header(l) else {
            return;
        };
        // SAFETY: `p` came from `alloc`/`realloc` above with layout `l`: its block starts
        // `header` bytes before it and the flag is the byte before `p`.
        unsafe {
            if p.sub(1).read() != 0 {
                GATEWAY_LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
            }
            System.dealloc(p.sub(header), full)
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let (Some((full, header)), Some(new_full)) =
            (with_header(l), new.checked_add(l.align().max(16)))
        else {
            return std::ptr::null_mut();
        };
        // SAFETY: as for `dealloc`; the header (and its flag) moves with the block.
        unsafe {
            let counted = p.sub(1).read() != 0;
            let base = System.realloc(p.sub(header), full, new_full);
            if base.is_null() {
                return base;
            }
            if counted {
                GATEWAY_LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
                GATEWAY_ALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            base.add(header)
        }
    }
}

/// Runs `f` with its allocations counted as the gateway's.
pub fn in_gateway<T>(f: impl FnOnce() -> T) -> T {
    IN_GATEWAY.with(|c| c.set(true));
    let r = f();
    IN_GATEWAY.with(|c| c.set(false));
    r
}

/// Heap bytes of the gateway: fixed after start, and per registered UE.
#[derive(Debug, serde::Serialize)]
pub struct MemFigure {
    /// UEs registered.
    pub ues: usize,
    /// Bytes live after start-up (SA table, neighbour table, pools).
    pub fixed_bytes: i64,
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
    let clock = move || Instant::from_micros(t0.elapsed().as_micros() as i64);
    let before = GATEWAY_LIVE.load(Ordering::Relaxed);
    let mut gw = in_gateway(|| {
        let mut cfg = GatewayConfig::new(n + 16);
        cfg.ipv4 = Some((std::net::Ipv4Addr::new(10, 0, 0, 1), 8));
        cfg.core.profile.auth_alg_list = vec![AuthAlg::HmacSha1_96];
        cfg.core.profile.encr_alg_list = vec![EncrAlg::AesCbc];
        InProcessGateway::new(cfg, hss, qa, clock())
    })
    .map_err(|e| e.to_string())?;
    // The SA slabs' first spare segments are being made off the worker: wait for them, so
    // this constant reserve (one segment per slab, also there at the end) counts as fixed.
    let wait = std::time::Instant::now();
    while !gw.sa_spares_ready() && wait.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let fixed = GATEWAY_LIVE.load(Ordering::Relaxed) - before;
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
    // Let the last ACKs and timers run so nothing transient is counted.
    let settle = std::time::Instant::now();
    while settle.elapsed() < std::time::Duration::from_millis(200) {
        in_gateway(|| gw.step(clock()));
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
    let live = GATEWAY_LIVE.load(Ordering::Relaxed) - before;
    let peak_rss_bytes = proc_kb("self/status", "VmHWM:").unwrap_or(0);
    drop(gw);
    Ok(MemFigure {
        ues: n,
        fixed_bytes: fixed,
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
