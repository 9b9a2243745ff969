//! CPU cost of one full IMS-AKA registration in the slowpath core, sans-IO (issue 10): the
//! unprotected REGISTER (HSS vector, Milenage, SPIs, 401 with Security-Server) and the
//! protected REGISTER answering it (digest check, binding, 200 OK), each UE a different
//! subscriber at its own address, as `Core::handle` sees them from the worker. Only the
//! core's `handle` calls are timed; the UE side (its USIM, building its requests) is not.
//!
//! `cargo bench -p akagate-slowpath --bench register` (`bench/run.sh regcost` prints the
//! figure per registration; docs/BENCHMARKS.md).

#[allow(unused_imports)]
#[path = "../tests/reg_common/mod.rs"]
mod reg_common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_proto::ipc::{Flow, SipIn, WorkerCommand, WorkerEvent};
use akagate_slowpath::hss::{Hss, SubscriberRecord};
use akagate_slowpath::{Core, CoreConfig};
use criterion::{criterion_group, Criterion};
use rand::SeedableRng;
use reg_common::{
    header, installed, param, sent, set1_usim_res, CountingSpis, Ue, SET1_K, SET1_OPC,
};

/// Subscribers per core; a fresh core (untimed) takes over when they are all registered.
const POOL: usize = 4096;

/// TS 35.208 set 1 keys for every subscriber (the UE side then needs one USIM model).
fn records() -> Vec<SubscriberRecord> {
    (0..POOL)
        .map(|i| SubscriberRecord {
            impi: format!("{}@{}", imsi(i), reg_common::REALM),
            impu: vec![format!("sip:{}@{}", imsi(i), reg_common::REALM)],
            k: SET1_K.into(),
            opc: Some(SET1_OPC.into()),
            op: None,
            amf: "8000".into(),
            sqn: "000000000000".into(),
        })
        .collect()
}

fn imsi(i: usize) -> String {
    format!("00101{i:010}")
}

/// CPU time of the calling thread (the figure is CPU time per thread, not wall time:
/// the box is shared, and a preempted call must not count the other jobs' time).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A core over `POOL` subscribers and its clock.
struct Bed {
    core: Core,
    ues: Vec<Ue>,
    next: usize,
    now: Instant,
}

impl Bed {
    fn new(recs: &[SubscriberRecord], ues: &[Ue]) -> Self {
        let hss = Hss::from_records(recs).expect("subscribers");
        let cfg = CoreConfig {
            default_expires: 600,
            ..CoreConfig::default()
        };
        let core = Core::new(
            cfg,
            hss,
            Arc::new(CountingSpis::default()),
            Box::new(rand::rngs::StdRng::seed_from_u64(10)),
        );
        Bed {
            core,
            ues: ues.to_vec(),
            next: 0,
            now: Instant::now(),
        }
    }

    /// `text` from `flow` (through `via_spi`) into the core; what it did and how long it took.
    fn handle(
        &mut self,
        flow: Flow,
        via_spi: Option<u32>,
        text: String,
    ) -> (Vec<WorkerCommand>, Duration) {
        let ev = WorkerEvent::Sip(SipIn {
            flow,
            via_spi,
            bytes: text.into_bytes(),
        });
        let start = thread_cpu();
        let out = self.core.handle(ev, self.now);
        (out, thread_cpu().saturating_sub(start))
    }

    /// One full registration of the next UE; returns the core's time for it.
    fn register_next(&mut self) -> Duration {
        let ue = self.ues[self.next].clone();
        self.next += 1;
        // 5000 registrations/s of simulated time: under the default total rate limit.
        self.now += Duration::from_micros(200);
        let (out, t1) = self.handle(ue.unprotected_flow(), None, ue.initial_register());
        let set = installed(&out[0]);
        let (_, r) = sent(&out[1]);
        let nonce = param(&header(&r, "WWW-Authenticate").expect("401"), "nonce").expect("nonce");
        let me = ue.with_server(&set);
        let req = me.protected_register(&set, &nonce, &set1_usim_res(&nonce), None);
        let (out, t2) = self.handle(me.protected_flow(&set), Some(set.spi_ps), req);
        assert!(
            matches!(&out[..], [WorkerCommand::Send { bytes, .. }] if bytes.starts_with(b"SIP/2.0 200 OK")),
            "{out:?}"
        );
        t1 + t2
    }
}

fn ues() -> Vec<Ue> {
    let mut bed_for_ue = reg_common::Testbed::new();
    (0..POOL)
        .map(|i| {
            let mut ue = Ue::new(&mut bed_for_ue, 0, 7000);
            ue.imsi = imsi(i);
            // As handsets send it (RFC 3581 rport in the Via; the core adds received/rport).
            ue.rport = true;
            let ip = IpAddr::from([10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            ue.with_ip(&ip.to_string(), "10.0.0.1")
        })
        .collect()
}

fn registration(c: &mut Criterion) {
    let recs = records();
    let ues = ues();
    let mut bed = Bed::new(&recs, &ues);
    let mut g = c.benchmark_group("registration");
    g.bench_function("full", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if bed.next == POOL {
                    bed = Bed::new(&recs, &ues);
                }
                total += bed.register_next();
            }
            total
        })
    });
    // What the two clock reads around each `handle` cost (two per registration are inside
    // the figure above): subtract twice this from it.
    g.bench_function("thread_cpu_clock_pair", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = thread_cpu();
                total += thread_cpu().saturating_sub(start);
            }
            total
        })
    });
    g.finish();
}

/// `AKG_REG_COUNT=N`: registers N UEs (a fresh core every `POOL`, untimed) outside criterion,
/// prints the core's mean thread CPU time per registration and exits: a run of a second or
/// two, so two builds can be run alternately many times on a shared box (docs/BENCHMARKS.md).
fn counted(n: usize) {
    let recs = records();
    let ues = ues();
    let mut bed = Bed::new(&recs, &ues);
    let mut core = Duration::ZERO;
    for _ in 0..n {
        if bed.next == POOL {
            bed = Bed::new(&recs, &ues);
        }
        core += bed.register_next();
    }
    let per = core.as_nanos() as f64 / n.max(1) as f64;
    println!("registered {n}: core thread CPU {per:.0} ns per registration");
}

criterion_group!(benches, registration);

fn main() {
    if let Some(n) = std::env::var("AKG_REG_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return counted(n);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
