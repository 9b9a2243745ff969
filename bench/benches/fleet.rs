//! The UE simulator's cost per step: `Fleet::step` with 10k and 100k idle UEs (`AKG_FLEET_UES`
//! = a,b to change), once with nothing to do and once with one UE made ready (a command), so
//! the figure shows whether a step costs the work or the number of UEs (docs/BENCHMARKS.md).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use akagate_bench::fleet::Fleet;
use akagate_bench::pktgen::establish::make_ue;
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::{generate_subscribers, Plmn};
use akagate_sys::mempair::{mem_pair, MemPairConfig, MemQueue};
use akagate_sys::Port;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use smoltcp::time::{Duration, Instant};

/// A fleet of `n` UEs that have been polled once and wait for nothing; the P-CSCF's end of
/// the pair is returned too (it must outlive the fleet's queue).
fn idle_fleet(n: usize) -> (Fleet<MemQueue>, impl Sized) {
    let (mut a, mut b) = mem_pair(&MemPairConfig::default()).expect("pair");
    let mut fleet = Fleet::new(b.take_queues().pop().expect("queue"));
    let pcscf = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    for (i, rec) in generate_subscribers(n as u64, 7, Plmn::default())
        .iter()
        .enumerate()
    {
        let ue = make_ue(i, rec, pcscf, false, AuthAlg::HmacSha1_96, EncrAlg::AesCbc).expect("ue");
        fleet.add(ue);
    }
    fleet.step(Instant::from_millis(0), |_, _| {});
    (fleet, a.take_queues())
}

fn sizes() -> Vec<usize> {
    std::env::var("AKG_FLEET_UES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

fn bench_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("fleet_step");
    g.sample_size(20);
    for n in sizes() {
        let (mut fleet, _peer) = idle_fleet(n);
        let mut now = Instant::from_millis(1);
        g.bench_with_input(BenchmarkId::new("idle", n), &n, |b, _| {
            b.iter(|| {
                now += Duration::from_micros(1);
                black_box(fleet.step(now, |_, _| {}))
            })
        });
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("one_ready", n), &n, |b, _| {
            b.iter(|| {
                now += Duration::from_micros(1);
                i = (i + 7919) % n;
                fleet.ue_mut(i);
                black_box(fleet.step(now, |_, _| {}))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
