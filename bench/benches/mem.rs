//! Memory per registered UE: registers 10k and 100k UEs (`AKG_MEM_UES=a,b` to change)
//! through the in-process gateway (real worker + slowpath core) and counts, with a counting
//! global allocator, the heap bytes live in allocations made while the gateway ran. The UE
//! simulators register in waves of 1000 and are dropped, so their own memory is not counted
//! and does not accumulate. Writes `AKG_MEM_JSON` (default bench/results/mem.json).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use akagate_bench::fleet::Fleet;
use akagate_bench::gateway::{GatewayConfig, InProcessGateway};
use akagate_bench::pktgen::establish::{make_ue, register_all, Lent};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::{generate_subscribers, Hss, Plmn};
use akagate_sys::mempair::{mem_pair, MemPairConfig};
use akagate_sys::Port;
use smoltcp::time::Instant;

/// Counts bytes allocated minus freed while the current thread is inside the gateway.
struct Counting;

thread_local! {
    static IN_GATEWAY: Cell<bool> = const { Cell::new(false) };
}
static GATEWAY_LIVE: AtomicI64 = AtomicI64::new(0);

fn account(delta: i64) {
    if IN_GATEWAY.with(Cell::get) {
        GATEWAY_LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        account(l.size() as i64);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        account(l.size() as i64);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        account(-(l.size() as i64));
        // SAFETY: `p` was allocated by `System` with layout `l` (all allocations go there).
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        account(new as i64 - l.size() as i64);
        // SAFETY: as for `dealloc`; `new` is the caller's valid new size.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn in_gateway<T>(f: impl FnOnce() -> T) -> T {
    IN_GATEWAY.with(|c| c.set(true));
    let r = f();
    IN_GATEWAY.with(|c| c.set(false));
    r
}

/// Heap bytes of the gateway: fixed after start, and per registered UE.
#[derive(serde::Serialize)]
struct MemFigure {
    ues: usize,
    fixed_bytes: i64,
    bytes_after_registration: i64,
    bytes_per_ue: f64,
    fixed_bytes_per_ue_slot: f64,
    register_seconds: f64,
    registrations_per_second: f64,
    /// Worker CPU per registration (its loop and the commands into it, busy steps only;
    /// the counting allocator's bookkeeping included).
    worker_cpu_us_per_registration: f64,
    /// Slowpath core CPU per registration.
    core_cpu_us_per_registration: f64,
    /// Gateway steps that did work, per registration.
    busy_steps_per_registration: f64,
}

fn measure(n: usize) -> Result<MemFigure, String> {
    const WAVE: usize = 1000;
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
    let fixed = GATEWAY_LIVE.load(Ordering::Relaxed) - before;
    gw.account_cpu(true);
    let pcscf = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    let mac = Arc::new(Mutex::new(None));
    let start = std::time::Instant::now();
    let mut first = 0;
    while first < n {
        let last = (first + WAVE).min(n);
        let mut fleet = Fleet::new(Lent::new(&mut qb, mac.clone()));
        for (i, rec) in subs.iter().enumerate().take(last).skip(first) {
            fleet.add(
                make_ue(i, rec, pcscf, false, AuthAlg::HmacSha1_96, EncrAlg::AesCbc)
                    .map_err(|e| e.to_string())?,
            );
        }
        register_all(
            &mut fleet,
            256,
            std::time::Duration::from_secs(300),
            std::time::Duration::from_millis(20),
            &clock,
            |now| in_gateway(|| gw.step(now)),
        )
        .map_err(|e| e.to_string())?;
        first = last;
        eprint!("\r  registered {first}/{n}   ");
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = gw.cpu();
    gw.account_cpu(false);
    eprintln!();
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
    drop(gw);
    Ok(MemFigure {
        ues: n,
        fixed_bytes: fixed,
        bytes_after_registration: live,
        bytes_per_ue: (live - fixed) as f64 / n as f64,
        fixed_bytes_per_ue_slot: fixed as f64 / (n + 16) as f64,
        register_seconds: secs,
        registrations_per_second: n as f64 / secs,
        worker_cpu_us_per_registration: cpu.worker.as_secs_f64() * 1e6 / n as f64,
        core_cpu_us_per_registration: cpu.core.as_secs_f64() * 1e6 / n as f64,
        busy_steps_per_registration: cpu.busy_steps as f64 / n as f64,
    })
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test` run passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("AKG_MEM_UES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut out = Vec::new();
    for n in sizes {
        eprintln!("mem: registering {n} UEs through the inline gateway");
        match measure(n) {
            Ok(f) => {
                println!(
                    "mem {:>7} UEs: {:>8.0} B/UE heap (+ {:>6.0} B/UE slot preallocated), {:.0} registrations/s inline",
                    f.ues, f.bytes_per_ue, f.fixed_bytes_per_ue_slot, f.registrations_per_second
                );
                println!(
                    "mem {:>7} UEs: CPU per registration: worker {:.1} us, slowpath core {:.1} us ({:.2} busy steps)",
                    f.ues,
                    f.worker_cpu_us_per_registration,
                    f.core_cpu_us_per_registration,
                    f.busy_steps_per_registration
                );
                out.push(f);
            }
            Err(e) => {
                eprintln!("mem: {n} UEs: {e}");
                std::process::exit(1);
            }
        }
    }
    let path = std::env::var("AKG_MEM_JSON").unwrap_or_else(|_| "bench/results/mem.json".into());
    let json = serde_json::json!({
        "section": "mem",
        "method": "counting global allocator: heap bytes live in allocations made inside the \
                   in-process gateway (worker + slowpath core) after registering N UEs, minus \
                   those live after start-up (SA table, neighbour table, pools: 'fixed')",
        "results": out,
    });
    if let Err(e) = std::fs::write(&path, format!("{json:#}\n")) {
        eprintln!("mem: {path}: {e}");
        std::process::exit(1);
    }
}
