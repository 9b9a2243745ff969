//! ESP transport-mode encapsulation and decapsulation per suite at 64, 256, 1024 and 1408
//! bytes of upper-layer payload (IPv4, in place, one core). Throughput is payload bytes.
//!
//! Bench ids: `esp_encrypt/<suite>/<size>`, `esp_decrypt/<suite>/<size>` and
//! `esp_burst/<variant>/<size>` (a burst of 32); `bench/run.sh` reads criterion's estimates
//! under these names.
//!
//! Time is the thread's CPU time ([`cpu_time::ThreadCpu`]), not wall time, like the
//! baselines `bench/run.sh crypto` prints beside these figures (intel-ipsec-mb and OpenSSL
//! count CPU time): on a loaded box wall time also counts the time the bench was descheduled.

use std::time::Duration;

mod cpu_time;

use akagate_fastpath::esp::{AuthAlg, EncrAlg, InboundSa, OutboundSa, SaKeys, Suite};
use cpu_time::ThreadCpu;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 4] = [64, 256, 1024, 1408];

/// Bursts set up and timed together in `esp_burst` / `esp_burst_decrypt`: eight bursts of 32
/// (about 400 KiB of packets) stay in L2 between their setup and the timed call, as the 32
/// buffers that `bench/baseline/ipsecmb.c` reuses do and as the few mbufs that
/// dpdk-test-crypto-perf's mempool cache hands out again do. `SmallInput` sets up a tenth of
/// a sample at once (up to ~50 MB at 1408 B), so its packets came from L3 or DRAM: cold
/// buffers cost intel-ipsec-mb 1.23x at 1408-B CBC encryption (`IPSECMB_POOL` in
/// `ipsecmb.c`; docs/BENCHMARKS.md, *Burst crypto at 1408 B on Zen 4, round 20*).
const WARM_BURSTS: BatchSize = BatchSize::NumIterations(8);
const ROOM: usize = 128;
const SPI: u32 = 0x0001_0001;

fn suites() -> Vec<(&'static str, Suite)> {
    let s = |auth, encr, integ_key: &[u8], encr_key: &[u8]| Suite {
        auth,
        encr,
        keys: SaKeys {
            integ_key: integ_key.to_vec(),
            encr_key: encr_key.to_vec(),
            salt: [1, 2, 3, 4],
        },
    };
    let ik20 = [0x11u8; 20];
    let k16 = [0x22u8; 16];
    let k24: Vec<u8> = (1..=24).collect();
    vec![
        (
            "sha1_aescbc",
            s(AuthAlg::HmacSha1_96, EncrAlg::AesCbc, &ik20, &k16),
        ),
        (
            "md5_aescbc",
            s(AuthAlg::HmacMd5_96, EncrAlg::AesCbc, &k16, &k16),
        ),
        (
            "sha1_3des",
            s(AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc, &ik20, &k24),
        ),
        (
            "sha1_null",
            s(AuthAlg::HmacSha1_96, EncrAlg::Null, &ik20, &[]),
        ),
        (
            "aesgcm",
            s(AuthAlg::HmacSha1_96, EncrAlg::AesGcm, &[], &k16),
        ),
        ("aesgmac", s(AuthAlg::AesGmac, EncrAlg::Null, &k16, &[])),
    ]
}

/// An IPv4/UDP packet whose IP payload is `size` bytes, placed in a buffer with room.
fn packet(size: usize) -> (Vec<u8>, core::ops::Range<usize>) {
    let total = 20 + size;
    let mut buf = vec![0u8; ROOM + total + ROOM];
    let ip = &mut buf[ROOM..ROOM + total];
    ip[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    for (i, b) in ip[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    (buf, ROOM..ROOM + total)
}

fn bench_esp(c: &mut Criterion<ThreadCpu>) {
    let fast = std::env::var_os("ESP_BENCH_QUICK").is_some();
    for (dir, encrypt) in [("esp_encrypt", true), ("esp_decrypt", false)] {
        let mut g = c.benchmark_group(dir);
        g.warm_up_time(Duration::from_millis(if fast { 300 } else { 1000 }));
        g.measurement_time(Duration::from_millis(if fast { 700 } else { 2000 }));
        g.sample_size(if fast { 10 } else { 30 });
        for (name, suite) in suites() {
            for size in SIZES {
                g.throughput(Throughput::Bytes(size as u64));
                let id = BenchmarkId::new(name, size);
                let mut out = OutboundSa::new(SPI, &suite).expect("suite");
                let (template, range) = packet(size);
                if encrypt {
                    g.bench_function(id, |b| {
                        b.iter_batched_ref(
                            || template.clone(),
                            |buf| out.encapsulate(buf, range.clone()).expect("encapsulate"),
                            BatchSize::SmallInput,
                        )
                    });
                } else {
                    let mut inb = InboundSa::new(SPI, &suite).expect("suite");
                    g.bench_function(id, |b| {
                        b.iter_batched_ref(
                            || {
                                let mut buf = template.clone();
                                let r = out.encapsulate(&mut buf, range.clone()).expect("encap");
                                (buf, r)
                            },
                            |(buf, r)| inb.decapsulate(buf, r.clone()).expect("decapsulate"),
                            BatchSize::SmallInput,
                        )
                    });
                }
            }
        }
        g.finish();
    }
}

/// Same-run baseline for the aes-gcm suite: the `aes-gcm` crate (what `esp_*/aesgcm` used
/// before `gcm_ni`) sealing/opening the ESP body of a 1408-byte payload (1412 bytes, 8 bytes
/// of AAD), crypto only. Ids: `esp_gcm_baseline/{seal,open}/1412`.
fn bench_gcm_baseline(c: &mut Criterion<ThreadCpu>) {
    use aes_gcm::{AeadInPlace, Aes128Gcm, KeyInit};
    let fast = std::env::var_os("ESP_BENCH_QUICK").is_some();
    let mut g = c.benchmark_group("esp_gcm_baseline");
    g.warm_up_time(Duration::from_millis(if fast { 300 } else { 1000 }));
    g.measurement_time(Duration::from_millis(if fast { 700 } else { 2000 }));
    g.sample_size(if fast { 10 } else { 30 });
    let body = 1412;
    g.throughput(Throughput::Bytes(1408));
    let aead = Aes128Gcm::new(&[0x22u8; 16].into());
    let nonce = [1u8, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1].into();
    let aad = [0u8, 1, 0, 1, 0, 0, 0, 1];
    let plain = vec![0x5au8; body];
    g.bench_function(BenchmarkId::new("seal", body), |b| {
        b.iter_batched_ref(
            || plain.clone(),
            |buf| {
                aead.encrypt_in_place_detached(&nonce, &aad, buf)
                    .expect("seal")
            },
            BatchSize::SmallInput,
        )
    });
    let mut sealed = plain.clone();
    let tag = aead
        .encrypt_in_place_detached(&nonce, &aad, &mut sealed)
        .expect("seal");
    g.bench_function(BenchmarkId::new("open", body), |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |buf| {
                aead.decrypt_in_place_detached(&nonce, &aad, buf, &tag)
                    .expect("open")
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Multi-buffer encapsulation: bursts of `BURST` hmac-sha-1-96 + aes-cbc packets spread
/// round-robin over 4 SAs (different keys), through `encapsulate_burst`. Ids:
/// `esp_burst/<variant>/<size>`, time per burst; `mb` is the kernel the CPU picks, `vaes16`
/// and `aesni8` force one, `single` runs the same burst API with every packet through the
/// single-packet stitched path (the same-run baseline), and `gcm` the same bursts over 4
/// aes-gcm-16 SAs (128-bit keys). Then `esp_burst_decrypt/{mb,single,gcm}`: the same bursts
/// through `decapsulate_burst`, multi-buffer HMAC or not, and the GCM bursts.
fn bench_burst(c: &mut Criterion<ThreadCpu>) {
    use akagate_fastpath::esp::burst::encapsulate_burst_with;
    use akagate_fastpath::esp::{CbcKernel, EncapItem};
    const BURST: usize = 32;
    const SAS: usize = 4;
    let fast = std::env::var_os("ESP_BENCH_QUICK").is_some();
    let mut g = c.benchmark_group("esp_burst");
    g.warm_up_time(Duration::from_millis(if fast { 300 } else { 1000 }));
    g.measurement_time(Duration::from_millis(if fast { 700 } else { 2000 }));
    g.sample_size(if fast { 10 } else { 30 });
    let suite = |i: u8, gcm: bool| Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: if gcm {
            EncrAlg::AesGcm
        } else {
            EncrAlg::AesCbc
        },
        keys: SaKeys {
            integ_key: if gcm { Vec::new() } else { vec![0x11 ^ i; 20] },
            encr_key: vec![0x22 ^ i; 16],
            salt: [i, 1, 2, 3],
        },
    };
    let mut sas: Vec<OutboundSa> = (0..SAS as u8)
        .map(|i| OutboundSa::new(SPI + u32::from(i), &suite(i, false)).expect("suite"))
        .collect();
    let mut gcm_sas: Vec<OutboundSa> = (0..SAS as u8)
        .map(|i| OutboundSa::new(SPI + u32::from(i), &suite(i, true)).expect("suite"))
        .collect();
    let variants = [
        ("mb", CbcKernel::detect()),
        ("vaes16", Some(CbcKernel::Vaes16)),
        ("aesni8", Some(CbcKernel::AesNi8)),
        ("single", None),
        ("gcm", CbcKernel::detect()),
    ];
    for size in SIZES {
        g.throughput(Throughput::Bytes((BURST * size) as u64));
        let (template, range) = packet(size);
        for (name, kernel) in variants {
            if kernel.is_some_and(|k| !k.supported()) {
                continue;
            }
            let sas = if name == "gcm" {
                &mut gcm_sas
            } else {
                &mut sas
            };
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_batched_ref(
                    || vec![template.clone(); BURST],
                    |bufs| {
                        let mut items: Vec<EncapItem<'_>> = bufs
                            .iter_mut()
                            .enumerate()
                            .map(|(i, buf)| EncapItem::new(i % SAS, buf, range.clone()))
                            .collect();
                        encapsulate_burst_with(sas, &mut items, kernel).expect("burst");
                        items.iter().all(|i| i.result.is_ok())
                    },
                    WARM_BURSTS,
                )
            });
        }
    }
    g.finish();

    // Inbound: the same bursts decapsulated (`esp_burst_decrypt/{mb,single}/<size>`); each
    // iteration's packets are fresh (setup, not timed), as the replay window requires.
    use akagate_fastpath::esp::burst::decapsulate_burst_with;
    use akagate_fastpath::esp::{DecapItem, InboundSa};
    let mut g = c.benchmark_group("esp_burst_decrypt");
    g.warm_up_time(Duration::from_millis(if fast { 300 } else { 1000 }));
    g.measurement_time(Duration::from_millis(if fast { 700 } else { 2000 }));
    g.sample_size(if fast { 10 } else { 30 });
    let mut inb: Vec<InboundSa> = (0..SAS as u8)
        .map(|i| InboundSa::new(SPI + u32::from(i), &suite(i, false)).expect("suite"))
        .collect();
    let mut gcm_inb: Vec<InboundSa> = (0..SAS as u8)
        .map(|i| InboundSa::new(SPI + u32::from(i), &suite(i, true)).expect("suite"))
        .collect();
    for size in SIZES {
        g.throughput(Throughput::Bytes((BURST * size) as u64));
        let (template, range) = packet(size);
        for (name, multi) in [("mb", true), ("single", false), ("gcm", true)] {
            let (sas, inb) = if name == "gcm" {
                (&mut gcm_sas, &mut gcm_inb)
            } else {
                (&mut sas, &mut inb)
            };
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_batched_ref(
                    || {
                        (0..BURST)
                            .map(|i| {
                                let mut buf = template.clone();
                                let r = sas[i % SAS]
                                    .encapsulate(&mut buf, range.clone())
                                    .expect("encap");
                                (buf, r)
                            })
                            .collect::<Vec<_>>()
                    },
                    |pkts| {
                        let mut items: Vec<DecapItem<'_>> = pkts
                            .iter_mut()
                            .enumerate()
                            .map(|(i, (buf, r))| DecapItem::new(i % SAS, buf, r.clone()))
                            .collect();
                        decapsulate_burst_with(inb, &mut items, multi).expect("burst");
                        items.iter().all(|i| i.result.is_ok())
                    },
                    WARM_BURSTS,
                )
            });
        }
    }
    g.finish();
}

/// Burst shapes a worker sees besides full uniform bursts, hmac-sha-1-96 + aes-cbc over 4
/// SAs through the burst calls with the kernels the CPU picks (`burst::multi_pays` and the
/// HMAC's lane crossing decide): `esp_burst_shape/{out,in}/<shape>`, time per burst. Shapes:
/// `8x64` and `8x1408` (small bursts: the single path or the kernels), `24x1408` (a group of
/// 16 and one of 8), `mixed32` (32 packets of eight payload lengths 64..=1408 in turn: the
/// lane scheduler).
fn bench_burst_shapes(c: &mut Criterion<ThreadCpu>) {
    use akagate_fastpath::esp::burst::{decapsulate_burst_with, encapsulate_burst_with};
    use akagate_fastpath::esp::{CbcKernel, DecapItem, EncapItem, InboundSa};
    const SAS: usize = 4;
    const MIXED: [usize; 8] = [64, 1408, 200, 576, 1024, 90, 1300, 400];
    let fast = std::env::var_os("ESP_BENCH_QUICK").is_some();
    let suite = |i: u8| Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: vec![0x11 ^ i; 20],
            encr_key: vec![0x22 ^ i; 16],
            salt: [i, 1, 2, 3],
        },
    };
    let mut outs: Vec<OutboundSa> = (0..SAS as u8)
        .map(|i| OutboundSa::new(SPI + u32::from(i), &suite(i)).expect("suite"))
        .collect();
    let mut ins: Vec<InboundSa> = (0..SAS as u8)
        .map(|i| InboundSa::new(SPI + u32::from(i), &suite(i)).expect("suite"))
        .collect();
    let shapes: [(&str, Vec<usize>); 4] = [
        ("8x64", vec![64; 8]),
        ("8x1408", vec![1408; 8]),
        ("24x1408", vec![1408; 24]),
        ("mixed32", (0..32).map(|i| MIXED[i % MIXED.len()]).collect()),
    ];
    let mut g = c.benchmark_group("esp_burst_shape");
    g.warm_up_time(Duration::from_millis(if fast { 300 } else { 1000 }));
    g.measurement_time(Duration::from_millis(if fast { 700 } else { 2000 }));
    g.sample_size(if fast { 10 } else { 30 });
    for (name, sizes) in &shapes {
        let packets: Vec<_> = sizes.iter().map(|&s| packet(s)).collect();
        g.bench_function(BenchmarkId::new("out", name), |b| {
            b.iter_batched_ref(
                || packets.clone(),
                |pkts| {
                    let mut items: Vec<EncapItem<'_>> = pkts
                        .iter_mut()
                        .enumerate()
                        .map(|(i, (buf, r))| EncapItem::new(i % SAS, buf, r.clone()))
                        .collect();
                    encapsulate_burst_with(&mut outs, &mut items, CbcKernel::detect())
                        .expect("burst");
                    items.iter().all(|i| i.result.is_ok())
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(BenchmarkId::new("in", name), |b| {
            b.iter_batched_ref(
                || {
                    packets
                        .iter()
                        .enumerate()
                        .map(|(i, (template, range))| {
                            let mut buf = template.clone();
                            let r = outs[i % SAS]
                                .encapsulate(&mut buf, range.clone())
                                .expect("encap");
                            (buf, r)
                        })
                        .collect::<Vec<_>>()
                },
                |pkts| {
                    let mut items: Vec<DecapItem<'_>> = pkts
                        .iter_mut()
                        .enumerate()
                        .map(|(i, (buf, r))| DecapItem::new(i % SAS, buf, r.clone()))
                        .collect();
                    decapsulate_burst_with(&mut ins, &mut items, true).expect("burst");
                    items.iter().all(|i| i.result.is_ok())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(cpu_time::ThreadCpu);
    targets = bench_esp, bench_gcm_baseline, bench_burst, bench_burst_shapes
}
criterion_main!(benches);
