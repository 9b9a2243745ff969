//! The inbound SA path of a worker at 1 Ki, 64 Ki, 1 Mi and 4 Mi installed SAs: bursts of 32
//! ESP packets (hmac-sha-1-96 + aes-cbc, 64-byte inner IPv4/TCP packets unless `SA_PATH_INNER`
//! says otherwise) with random SPIs go
//! SPI -> table entry (selectors, worker, slot) -> the worker's slab slot -> burst
//! decapsulation -> selector check, with the worker's own types and calls.
//!
//! Each burst's packets are first copied from a pre-built ring into 32 reused receive
//! buffers (the kernel's or NIC's write, the same at every size). Each SA's sequence numbers
//! rise from its own start between 1 and 2^20 (an SA that has carried traffic for a while, so
//! the replay window's state sits anywhere in its ring, not always in its first word). After
//! each pass over the ring (32 Ki packets) the replay windows of the SAs it used are reset to
//! just below their start, the caches flushed by writing 64 MiB, and 64 bursts run untimed, so no
//! size starts a pass with SAs left warm by the reset. Ids: `sa_path/decap/<SAs>` (as the
//! worker does it: the burst's table slots and the first lines of the SAs in their SPIs'
//! direct cells prefetched first, then each SA's first lines again as its entry is found
//! (for an SA not in its direct cell), then its transform's lines just before the slab's
//! SPI check) and `sa_path/decap_no_prefetch/<SAs>` (the same without the prefetches,
//! the same-run baseline).
//!
//! Time is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on a shared box
//! the bench is descheduled, though other jobs still share its caches.
//!
//! After each id the bench prints the median time stamp counter ticks per burst of its four
//! phases (table lookup with the SAs' first prefetches, slab check with the rest,
//! decapsulation, delivery), so a size's extra cost can be placed: a line the decapsulation
//! reads but the prefetch does not load shows as decapsulation ticks above the 1 Ki figure.
//!
//! `SA_PATH_SIZES=1024,65536` chooses the sizes (default all four; 4 Mi needs about 7 GB);
//! `SA_PATH_INNER=1408` the inner packet's length (default 64), e.g. to profile the receive
//! path at full-size packets; `SA_PATH_GROUP=8` decapsulates the burst in calls of that many
//! packets (default 32, as the worker), to see whether later groups find their SAs loaded;
//! `SA_PATH_SUITE=gcm` uses aes-gcm-16 SAs instead of hmac-sha-1-96 + aes-cbc.
//!
//! `SA_PATH_PAIRED=<rounds>` measures the same passes without criterion, every size in turn
//! (round 20, the issue 11 figure's spread): all sizes' beds are built first, then each
//! round runs one pass of each size (flush, warm-up, then the pass's timed bursts, as above),
//! in ABBA order (ascending sizes on even rounds, descending on odd ones), and records each
//! pass's thread CPU time per burst. It prints each size's median per burst over the rounds
//! and, per size, the median of the rounds' ratios to the first size (each ratio taken from
//! two passes a few milliseconds apart, so a slow moment of a shared box moves both sides).
//! A line `sa_path/paired <SAs> <ns per burst> <ratio>` per size is for `bench/run.sh`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use akagate_bench::cputime::current_thread_cpu;
use akagate_fastpath::esp::{
    decapsulate_burst_in, spi_of, AuthAlg, DecapItem, EncrAlg, InboundSa, OutboundSa, SaKeys, Suite,
};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::wire::ip::{Direction, IpRepr};
use akagate_fastpath::wire::Segment;
use akagate_fastpath::worker::{InboundEntry, InboundTable, UeTag, WorkerSas};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};

const BURST: usize = 32;
const RING: usize = 32 * 1024;
const ROOM: usize = 64;
const WARM: usize = 64;
const UE_PORT: u16 = 31800;
const LOCAL_PORT: u16 = 5064;
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

/// The last sequence number SA `k` had received before the bench's stream (its first packet
/// carries one more): spread over 0..2^20 by a multiplicative hash.
fn seq_before(k: usize) -> u64 {
    (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44
}

/// hmac-sha-1-96 + aes-cbc, or aes-gcm-16 with `SA_PATH_SUITE=gcm`.
fn suite() -> Suite {
    if std::env::var("SA_PATH_SUITE").is_ok_and(|v| v == "gcm") {
        return Suite {
            auth: AuthAlg::Null,
            encr: EncrAlg::AesGcm,
            keys: SaKeys {
                integ_key: Vec::new(),
                encr_key: vec![0x22; 16],
                salt: [0x33; 4],
            },
        };
    }
    Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: vec![0x11; 20],
            encr_key: vec![0x22; 16],
            salt: [0; 4],
        },
    }
}

fn ue_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | (k as u32 / 2))
}

/// Length of the inner IPv4/TCP packets (`SA_PATH_INNER`, 64 by default).
fn inner_len() -> usize {
    std::env::var("SA_PATH_INNER")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| (40..=1500).contains(&n))
        .unwrap_or(64)
}

/// Bytes of a receive buffer for an inner packet of `inner` bytes: room before, the ESP
/// packet, room after (256 at 64 bytes).
fn slot_len(inner: usize) -> usize {
    (ROOM + inner + 64 + ROOM).next_multiple_of(64)
}

/// The inner IPv4/TCP packet (`inner` bytes) of UE `k` in `buf[ROOM..]`.
fn inner_packet(buf: &mut [u8], k: usize, inner: usize) -> core::ops::Range<usize> {
    let ip = &mut buf[ROOM..ROOM + inner];
    ip[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(inner as u16).to_be_bytes());
    ip[12..16].copy_from_slice(&ue_addr(k).octets());
    ip[16..20].copy_from_slice(&LOCAL.octets());
    let tcp = &mut ip[20..];
    tcp[0..2].copy_from_slice(&UE_PORT.to_be_bytes());
    tcp[2..4].copy_from_slice(&LOCAL_PORT.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH, ACK
    for (i, b) in tcp[20..].iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    ROOM..ROOM + inner
}

/// A worker's inbound SAs and table at one size, and a ring of packets for them.
struct Bed {
    table: InboundTable,
    sas: WorkerSas,
    spis: Vec<u32>,
    /// RING packets, `slot` bytes apart, as built.
    pristine: Vec<u8>,
    /// Bytes per packet in `pristine` and `rx`.
    slot: usize,
    /// Per packet: its range in its slot, its parsed header, its SA (index into `spis`).
    meta: Vec<(core::ops::Range<usize>, IpRepr, usize)>,
    rx: Vec<Vec<u8>>,
    pos: usize,
    evict: Vec<u8>,
    delivered: u64,
    /// Packets decapsulated per call (`SA_PATH_GROUP`, default 32).
    group: usize,
    /// Time stamp counter ticks of each timed burst's four phases (lookup, slab check,
    /// decapsulation, delivery), for the medians printed after each id.
    phases: Vec<[u64; 4]>,
}

impl Bed {
    fn new(n: usize) -> Self {
        let suite = suite();
        let table = InboundTable::with_capacity(n).expect("capacity");
        let mut sas = WorkerSas::default();
        // As the worker: inbound SAs in the direct cells of their SPIs' table slots.
        sas.index_inbound_by_spi(table.layout(), table.capacity());
        sas.inbound.reserve(n);
        let mut spis = Vec::with_capacity(n);
        for k in 0..n {
            let spi = table.allocate().expect("allocate");
            let sa = InboundSa::new(spi, &suite).expect("sa");
            let transform_lines = sa.transform_lines();
            let slot = sas.insert_inbound(spi, sa);
            let entry = InboundEntry {
                ue: IpAddr::V4(ue_addr(k)),
                local: IpAddr::V4(LOCAL),
                ue_port: UE_PORT,
                local_port: LOCAL_PORT,
                worker: 0,
                slot,
                transform_lines,
                owner: UeTag::NONE,
            };
            table.install(spi, entry).expect("install");
            spis.push(spi);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut next_seq = std::collections::HashMap::<usize, u64>::new();
        let inner = inner_len();
        let slot_bytes = slot_len(inner);
        let mut pristine = vec![0u8; RING * slot_bytes];
        let mut meta = Vec::with_capacity(RING);
        for (i, slot) in pristine.chunks_exact_mut(slot_bytes).enumerate() {
            let k = rng.gen_range(0..n);
            let seq = next_seq.entry(k).or_insert(seq_before(k));
            let mut out = OutboundSa::new(spis[k], &suite).expect("sa");
            out.set_last_seq_for_test(*seq);
            *seq += 1;
            let r = inner_packet(slot, k, inner);
            let r = out.encapsulate(slot, r).expect("encapsulate");
            let ip = IpRepr::from_bytes(&slot[r.clone()], Direction::Inbound).expect("ip");
            meta.push((r, ip, k));
            let _ = i;
        }
        Bed {
            table,
            sas,
            spis,
            pristine,
            slot: slot_bytes,
            meta,
            rx: vec![vec![0u8; slot_bytes]; BURST],
            pos: RING / BURST,
            evict: vec![0u8; 64 << 20],
            delivered: 0,
            group: std::env::var("SA_PATH_GROUP")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&g| (1..=BURST).contains(&g))
                .unwrap_or(BURST),
            phases: Vec::with_capacity(1 << 20),
        }
    }

    /// Untimed: replay windows back to their start, caches flushed, a few bursts to warm up.
    fn new_pass(&mut self, prefetch: bool) {
        for &(_, _, k) in &self.meta {
            let spi = self.spis[k];
            if let Some(e) = self.table.lookup(spi) {
                if let Some(sa) = self.sas.inbound.get_mut(e.slot, spi) {
                    sa.set_window_top_for_test(seq_before(k));
                }
            }
        }
        for (i, b) in self.evict.iter_mut().enumerate().step_by(64) {
            *b = b.wrapping_add(i as u8);
        }
        black_box(&self.evict);
        self.pos = 0;
        for _ in 0..WARM {
            self.burst(prefetch);
        }
    }

    /// One burst of the ring through the worker's inbound SA path (with the worker's two
    /// prefetch passes if `prefetch`).
    fn burst(&mut self, prefetch: bool) {
        let base = self.pos * BURST;
        self.pos += 1;
        for (j, rx) in self.rx.iter_mut().enumerate() {
            let from = (base + j) * self.slot;
            rx.copy_from_slice(&self.pristine[from..from + self.slot]);
        }
        let metas = &self.meta[base..base + BURST];
        let mut items: [DecapItem<'_>; BURST] =
            core::array::from_fn(|_| DecapItem::new(0, &mut [], 0..0));
        let mut found = [None; BURST];
        let t0 = tsc();
        // Phase zero (worker: `rx_burst`): the table slots of the burst's SPIs, and the first
        // lines of the SAs in their SPIs' direct cells.
        if prefetch {
            for (rx, (r, _, _)) in self.rx.iter().zip(metas) {
                let spi = &rx[r.start + 20..r.start + 24];
                let spi = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]);
                self.table.prefetch(spi);
                if let Some(slot) = self.sas.direct_slot(spi) {
                    self.sas.inbound.prefetch_head(slot, 0);
                }
            }
        }
        // Phase one (worker: `esp_target`): entry, address and owner checks, the SA's first
        // lines prefetched.
        let mut spis = [0u32; BURST];
        let mut seqs = [0u32; BURST];
        for ((((rx, (r, ip, _)), f), s), q) in self
            .rx
            .iter()
            .zip(metas)
            .zip(found.iter_mut())
            .zip(spis.iter_mut())
            .zip(seqs.iter_mut())
        {
            let Ok(spi) = spi_of(&rx[r.clone()], ip) else {
                continue;
            };
            let Some(entry) = self.table.lookup(spi) else {
                continue;
            };
            if entry.ue != ip.src || entry.local != ip.dst || entry.worker != 0 {
                continue;
            }
            if prefetch {
                let seq = &rx[r.start + 24..r.start + 28];
                let seq = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
                self.sas.inbound.prefetch_head(entry.slot, seq);
                *q = seq;
            }
            *s = spi;
            *f = Some(entry);
        }
        let t1 = tsc();
        // Phase two (worker: `esp_burst`): the SA's transform lines prefetched, slab check,
        // burst decapsulation.
        let mut n = 0;
        let mut delivered = [None; BURST];
        for ((((rx, (r, ip, _)), f), &spi), &seq) in self
            .rx
            .iter_mut()
            .zip(metas)
            .zip(&found)
            .zip(&spis)
            .zip(&seqs)
        {
            let Some(entry) = f else {
                continue;
            };
            // The second prefetch pass (worker: `esp_burst`): the SA's transform lines.
            if prefetch {
                self.sas
                    .inbound
                    .prefetch(entry.slot, seq, entry.transform_lines);
            }
            if !self.sas.inbound.holds(entry.slot, spi) {
                continue;
            }
            items[n] = DecapItem::new(entry.slot as usize, &mut rx[..], r.clone()).with_parsed(*ip);
            delivered[n] = Some(*entry);
            n += 1;
        }
        let t2 = tsc();
        for group in items[..n].chunks_mut(self.group) {
            decapsulate_burst_in(&mut self.sas.inbound, group).expect("slots");
        }
        let t3 = tsc();
        let entries = delivered.iter().flatten();
        for (it, e) in items[..n].iter().zip(entries) {
            let Some((inner, inner_ip)) = it.parsed_result() else {
                continue;
            };
            match Segment::parse(&it.buf[inner], &inner_ip) {
                Some(s) if s.ports.src == e.ue_port && s.ports.dst == e.local_port => {
                    self.delivered += 1
                }
                _ => {}
            }
        }
        let t4 = tsc();
        if self.phases.len() < 1 << 20 {
            self.phases.push([t1 - t0, t2 - t1, t3 - t2, t4 - t3]);
        }
    }
}

/// The time stamp counter (wall-clock ticks: the phases' medians leave out the bursts a
/// preemption fell into); 0 where there is none.
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC has no preconditions on x86_64.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    0
}

fn sizes() -> Vec<usize> {
    match std::env::var("SA_PATH_SIZES") {
        Ok(s) => s.split(',').filter_map(|v| v.trim().parse().ok()).collect(),
        Err(_) => vec![1 << 10, 64 << 10, 1 << 20, 4 << 20],
    }
}

/// The value at quantile `q` (0..=1) of `v` (sorted here; nearest rank), 0 if empty.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let i = ((v.len().max(1) - 1) as f64 * q).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// `SA_PATH_PAIRED`: every size's passes alternated within one process (see the module's
/// documentation).
fn paired(rounds: usize, sizes: &[usize]) {
    let mut beds: Vec<Bed> = sizes
        .iter()
        .map(|&n| {
            let t = Instant::now();
            let bed = Bed::new(n);
            eprintln!(
                "sa_path/{n}: built in {:.1} s, table on {:?}",
                t.elapsed().as_secs_f64(),
                bed.table.memory_backing()
            );
            bed
        })
        .collect();
    let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); sizes.len()];
    for r in 0..rounds {
        let order: Vec<usize> = if r % 2 == 0 {
            (0..sizes.len()).collect()
        } else {
            (0..sizes.len()).rev().collect()
        };
        for i in order {
            let bed = &mut beds[i];
            bed.new_pass(true);
            let k = RING / BURST - bed.pos;
            let t = current_thread_cpu();
            for _ in 0..k {
                bed.burst(true);
            }
            let dt = current_thread_cpu().saturating_sub(t);
            ns[i].push(dt.as_nanos() as f64 / k as f64);
        }
    }
    for (i, &n) in sizes.iter().enumerate() {
        let mut ratios: Vec<f64> = ns[i].iter().zip(&ns[0]).map(|(a, b)| a / b).collect();
        let mut v = ns[i].clone();
        let (med, lo, q1, q3, hi) = (
            quantile(&mut v, 0.5),
            quantile(&mut v, 0.0),
            quantile(&mut v, 0.25),
            quantile(&mut v, 0.75),
            quantile(&mut v, 1.0),
        );
        let (rmed, rq1, rq3) = (
            quantile(&mut ratios, 0.5),
            quantile(&mut ratios, 0.25),
            quantile(&mut ratios, 0.75),
        );
        let bed = &beds[i];
        let phase = |j: usize| {
            let mut v: Vec<f64> = bed.phases.iter().map(|p| p[j] as f64).collect();
            quantile(&mut v, 0.5)
        };
        eprintln!(
            "sa_path/paired/{n}: {rounds} passes, ns per burst median {med:.0} (quartiles \
             {q1:.0}..{q3:.0}, range {lo:.0}..{hi:.0}); ratio to {} median {rmed:.3} \
             (quartiles {rq1:.3}..{rq3:.3}); TSC ticks per burst (median): lookup {:.0}, \
             slab check {:.0}, decap {:.0}, deliver {:.0}",
            sizes[0],
            phase(0),
            phase(1),
            phase(2),
            phase(3)
        );
        println!("sa_path/paired {n} {med:.1} {rmed:.4}");
        assert!(bed.delivered > 0, "nothing delivered");
    }
}

fn sa_path(c: &mut Criterion) {
    if let Some(rounds) = std::env::var("SA_PATH_PAIRED")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&r| r > 0)
    {
        paired(rounds, &sizes());
        return;
    }
    let mut g = c.benchmark_group("sa_path");
    g.throughput(Throughput::Elements(BURST as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for n in sizes() {
        let t = Instant::now();
        let mut bed = Bed::new(n);
        let huge = std::fs::read_to_string("/proc/self/smaps_rollup")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("AnonHugePages"))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        eprintln!(
            "sa_path/{n}: built in {:.1} s, table on {:?}, process {huge}",
            t.elapsed().as_secs_f64(),
            bed.table.memory_backing()
        );
        for (name, prefetch) in [("decap", true), ("decap_no_prefetch", false)] {
            bed.pos = RING / BURST;
            bed.phases.clear();
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters as usize;
                    while left > 0 {
                        if bed.pos >= RING / BURST {
                            bed.new_pass(prefetch);
                        }
                        let k = left.min(RING / BURST - bed.pos);
                        let t = current_thread_cpu();
                        for _ in 0..k {
                            bed.burst(prefetch);
                        }
                        total += current_thread_cpu().saturating_sub(t);
                        left -= k;
                    }
                    total
                })
            });
            let med = |i: usize| {
                let mut v: Vec<u64> = bed.phases.iter().map(|p| p[i]).collect();
                v.sort_unstable();
                v.get(v.len() / 2).copied().unwrap_or(0)
            };
            eprintln!(
                "sa_path/{name}/{n}: TSC ticks per burst (median): lookup {}, slab check {}, \
                 decap {}, deliver {}",
                med(0),
                med(1),
                med(2),
                med(3)
            );
        }
        let expected = bed.meta.len() as u64;
        assert!(bed.delivered > 0, "nothing delivered");
        eprintln!(
            "sa_path/{n}: {} packets delivered ({expected} per pass)",
            bed.delivered
        );
    }
    g.finish();
}

criterion_group!(benches, sa_path);
criterion_main!(benches);
