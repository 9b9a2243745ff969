//! SA table benchmarks: lookup cost with 1 Ki and 4 Mi installed SAs (random SPIs, bursts of
//! 64 lookups, `burst64_prefetch` with the burst's slots prefetched first as a worker does), and the slowpath's allocate+install+remove+release rate
//! while another thread spins on lookups. `sad_lookup_plain` repeats the 4 Mi case with the
//! arrays on plain 4 KiB pages, the same-run baseline for the huge-page backing.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use akagate_fastpath::sad::{BackingPolicy, FlatEntry, SaTable, SpiAllocator};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;

const BURST: usize = 64;

fn full_table(n: usize) -> (SaTable<u64>, Vec<u32>) {
    full_table_on(n, BackingPolicy::Auto)
}

fn full_table_on(n: usize, policy: BackingPolicy) -> (SaTable<u64>, Vec<u32>) {
    let table = SaTable::with_backing(n, policy).expect("capacity");
    let mut spis = Vec::with_capacity(n);
    for _ in 0..n {
        let spi = table.allocate().expect("allocate");
        table.install(spi, u64::from(spi)).expect("install");
        spis.push(spi);
    }
    spis.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    // Probe a random sequence of at most 1 Mi SPIs (all SPIs for the small table).
    spis.truncate(1 << 20);
    (table, spis)
}

fn lookup(c: &mut Criterion) {
    lookup_on(c, "sad_lookup", &[1 << 10, 4 << 20], BackingPolicy::Auto);
    lookup_on(c, "sad_lookup_plain", &[4 << 20], BackingPolicy::Plain);
    lookup_entries(c);
}

/// The worker's own lookup: the daemon's `InboundTable` holding real `InboundEntry` values
/// (selectors, owner, slab slot: 56 bytes, one cache line with the SPI), each copied out and
/// checked as `Worker::esp_target` does (address, owner), at 1 Ki and 4 Mi SAs.
fn lookup_entries(c: &mut Criterion) {
    use akagate_fastpath::worker::{InboundEntry, InboundTable, UeTag};
    use std::net::{IpAddr, Ipv4Addr};
    let mut group = c.benchmark_group("sad_lookup_entry");
    group.throughput(Throughput::Elements(BURST as u64));
    let local = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    for n in [1usize << 10, 4 << 20] {
        let table = InboundTable::with_capacity(n).expect("capacity");
        let mut spis = Vec::with_capacity(n);
        for i in 0..n {
            let spi = table.allocate().expect("allocate");
            let entry = InboundEntry {
                ue: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i as u32 / 2))),
                local,
                ue_port: 31800,
                local_port: 5064,
                worker: 0,
                slot: i as u32,
                transform_lines: 4,
                owner: UeTag::NONE,
            };
            table.install(spi, entry).expect("install");
            spis.push(spi);
        }
        spis.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
        spis.truncate(1 << 20);
        bench_bursts(&mut group, n, &table, &spis, |e: InboundEntry| {
            (e.local == local && e.worker == 0).then_some(e.slot)
        });
    }
    group.finish();
}

/// Benchmarks bursts of 64 lookups over `spis` in `table` (one pin per burst, as a worker
/// does), each value found reduced to a number by `probe`.
fn bench_bursts<T: FlatEntry>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    n: usize,
    table: &SaTable<T>,
    spis: &[u32],
    probe: impl Fn(T) -> Option<u32>,
) {
    for (name, prefetch) in [("burst64", false), ("burst64_prefetch", true)] {
        let mut bursts = spis.chunks_exact(BURST).cycle();
        group.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter(|| {
                let burst = bursts.next().expect("cycle");
                if prefetch {
                    for &spi in burst {
                        table.prefetch(black_box(spi));
                    }
                }
                let mut found = 0u32;
                for &spi in burst {
                    if let Some(v) = table.lookup(black_box(spi)).and_then(&probe) {
                        found = found.wrapping_add(v);
                    }
                }
                black_box(found)
            })
        });
    }
}

fn lookup_on(c: &mut Criterion, name: &str, sizes: &[usize], policy: BackingPolicy) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BURST as u64));
    for &n in sizes {
        let (table, spis) = full_table_on(n, policy);
        eprintln!("{name}/{n}: slot array on {:?}", table.memory_backing());
        bench_bursts(&mut group, n, &table, &spis, |v| Some(v as u32));
    }
    group.finish();
}

fn install_remove(c: &mut Criterion) {
    let mut group = c.benchmark_group("sad_update");
    group.throughput(Throughput::Elements(1));
    let (table, spis) = full_table(1 << 16);
    let table = Arc::new(table);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (table, stop, spis) = (table.clone(), stop.clone(), spis.clone());
        std::thread::spawn(move || {
            let mut lookups = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for burst in spis.chunks_exact(BURST) {
                    for &spi in burst {
                        black_box(table.lookup(spi));
                    }
                    lookups += BURST as u64;
                }
            }
            lookups
        })
    };
    // Leave room for the churn: release a quarter of the table first.
    for &spi in &spis[..spis.len() / 4] {
        table.release(spi).expect("release");
    }
    group.bench_function("allocate_install_remove_release_with_reader", |b| {
        b.iter(|| {
            let spi = table.allocate().expect("allocate");
            table.install(spi, u64::from(spi)).expect("install");
            table.remove(spi).expect("remove");
            table.release(spi).expect("release");
        })
    });
    stop.store(true, Ordering::Relaxed);
    let lookups = reader.join().expect("reader thread");
    eprintln!("sad_update: concurrent reader did {lookups} lookups");
    group.finish();
}

criterion_group!(benches, lookup, install_remove);
criterion_main!(benches);
