//! Memory per registered UE (`make bench`, section `mem`): registers 10k, 100k and 1M UEs
//! (`AKG_MEM_UES=a,b,c` to change) through the in-process gateway (real worker + slowpath
//! core) and counts the heap bytes live in allocations made while the gateway ran
//! ([`akagate_bench::memprobe`]), and the process's peak RSS. Writes `AKG_MEM_JSON` (default
//! bench/results/mem.json). `AKG_MEM_INFLIGHT` sets the registrations in flight (256);
//! `AKG_MEM_SLOWDOWN=N` runs the gateway's clock N times slower than the wall clock (under valgrind).

use akagate_bench::memprobe::{measure, Counting};
use akagate_fastpath::worker::phases;

// Counts, and forwards to the crate's chosen allocator (`alloccount::Chosen`, mimalloc by default).
#[global_allocator]
static ALLOC: Counting = Counting;

/// The worker's cost per kind of work (built with `--features phase-tsc`; nothing otherwise):
/// instances per registration, median and 90th percentile in ns, and median x count per
/// registration, mean x count per registration. The settle after the last registration is
/// included in the counts.
fn print_phases(ues: usize, ticks_per_ns: f64) {
    let rows = phases::table();
    if rows.is_empty() || ticks_per_ns <= 0.0 {
        return;
    }
    println!(
        "mem {ues:>7} UEs: worker phases (TSC, {ticks_per_ns:.3} ticks/ns): per registration, median ns, p90 ns, median x count ns, mean x count ns"
    );
    for r in rows {
        let per_reg = r.count as f64 / ues.max(1) as f64;
        let med = r.median as f64 / ticks_per_ns;
        println!(
            "  {:<44} {:>7.2} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            r.phase.name(),
            per_reg,
            med,
            r.p90 as f64 / ticks_per_ns,
            med * per_reg,
            r.mean as f64 / ticks_per_ns * per_reg
        );
    }
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test` run passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("AKG_MEM_UES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut out = Vec::new();
    for n in sizes {
        eprintln!("mem: registering {n} UEs through the inline gateway");
        let helpers_before = akagate_fastpath::sad::helper_cpu_ns();
        phases::reset();
        let (tsc0, wall0) = (phases::stamp(), std::time::Instant::now());
        match measure(n, |done| eprint!("\r  registered {done}/{n}   ")) {
            Ok(f) => {
                eprintln!();
                let ticks_per_ns =
                    phases::stamp().saturating_sub(tsc0) as f64 / wall0.elapsed().as_nanos() as f64;
                print_phases(f.ues, ticks_per_ns);
                println!(
                    "mem {:>7} UEs: {:>8.0} B/UE heap (+ {:>6.0} B/UE slot preallocated), peak RSS {:.2} GiB, {:.0} registrations/s inline",
                    f.ues,
                    f.bytes_per_ue,
                    f.fixed_bytes_per_ue_slot,
                    f.peak_rss_bytes as f64 / (1u64 << 30) as f64,
                    f.registrations_per_second
                );
                println!(
                    "mem {:>7} UEs: CPU per registration: worker {:.1} us, slowpath core {:.1} us ({:.2} busy steps)",
                    f.ues,
                    f.worker_cpu_us_per_registration,
                    f.core_cpu_us_per_registration,
                    f.busy_steps_per_registration
                );
                println!(
                    "mem {:>7} UEs: per registration: {:.2} frames in, {:.2} out, {:.2} stack polls",
                    f.ues,
                    f.rx_frames_per_registration,
                    f.tx_frames_per_registration,
                    f.stack_polls_per_registration
                );
                println!(
                    "mem {:>7} UEs: per registration: {:.2} commands, allocations: worker {:.2}, slowpath core {:.2}",
                    f.ues,
                    f.commands_per_registration,
                    f.worker_allocations_per_registration,
                    f.core_allocations_per_registration
                );
                println!(
                    "mem {:>7} UEs: spare sockets made at start: {} ({:.0} B/UE, counted per UE)",
                    f.ues,
                    f.reserved_sockets,
                    f.reserve_bytes as f64 / f.ues.max(1) as f64
                );
                // The SA slab segments made ahead by helper threads off the worker's core:
                // CPU moved off the worker, not counted in its figure.
                let helpers = akagate_fastpath::sad::helper_cpu_ns() - helpers_before;
                println!(
                    "mem {:>7} UEs: CPU per registration off the worker (spare SA segments): {:.2} us",
                    f.ues,
                    helpers as f64 / 1e3 / f.ues.max(1) as f64
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
                   those live after start-up (SA table, neighbour table, pools: 'fixed'; the worker's \
                   spare sockets made at start, reserve_bytes, count per UE); each UE keeps its protected TCP \
                   connection open; peak_rss_bytes is the process's VmHWM during that size's run \
                   (simulator waves and subscriber records included)",
        "bound_bytes_per_ue": akagate_bench::memprobe::BYTES_PER_UE_BOUND,
        "results": out,
    });
    if let Err(e) = std::fs::write(&path, format!("{json:#}\n")) {
        eprintln!("mem: {path}: {e}");
        std::process::exit(1);
    }
}
