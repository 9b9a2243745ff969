//! Not a test but a measurement (ignored by default): time stamp counter medians of
//! hmac-sha-1-96 + aes-cbc bursts of a few packets through `encapsulate_burst_with` /
//! `decapsulate_burst_with`, with the multi-buffer kernels allowed ("multi": the burst path
//! chooses) and with every packet on the single-packet path ("single"), for the thresholds
//! of `burst::multi_pays` (docs/BENCHMARKS.md, *Small bursts take the single path*):
//! `cargo test -p akagate-fastpath --release --test esp_small_bursts -- --ignored
//! --nocapture --test-threads 1`.

use akagate_fastpath::esp::burst::encapsulate_burst_with;
use akagate_fastpath::esp::{AuthAlg, CbcKernel, EncapItem, EncrAlg, OutboundSa, SaKeys, Suite};

fn tsc() -> u64 {
    #[allow(unsafe_code)]
    // SAFETY: RDTSC has no preconditions.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// ESP payload lengths measured (inner IPv4 packets).
const LENGTHS: [usize; 5] = [60, 200, 400, 800, 1400];
/// Burst sizes measured.
const COUNTS: [usize; 9] = [1, 2, 3, 4, 5, 6, 8, 12, 32];

/// An IPv4 packet of `len` bytes at offset 64 of `buf`.
fn pkt(buf: &mut [u8], len: usize) -> core::ops::Range<usize> {
    let start = 64;
    let b = &mut buf[start..start + len];
    b.fill(0x11);
    b[6] = 0;
    b[7] = 0;
    b[0] = 0x45;
    b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    b[8] = 64;
    b[9] = 6;
    b[12..16].copy_from_slice(&[10, 0, 0, 1]);
    b[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = akagate_fastpath::esp::ip::ipv4_checksum(&b[..20]);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    start..start + len
}

/// The suite measured: hmac-sha-1-96 + aes-cbc (the multi-buffer kernels' suite).
fn suite() -> Suite {
    Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: vec![1; 20],
            encr_key: vec![2; 16],
            salt: [0; 4],
        },
    }
}

/// Frames and seals a burst of `bufs.len()` packets of `len` bytes with `kernel` (`None`:
/// the single path); returns the ESP packets' ranges and the burst's TSC ticks.
fn seal(
    sas: &mut [OutboundSa],
    bufs: &mut [Vec<u8>],
    len: usize,
    kernel: Option<CbcKernel>,
) -> (Vec<core::ops::Range<usize>>, u64) {
    let mut items: Vec<EncapItem> = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            let r = pkt(b, len);
            EncapItem::new(i, b, r)
        })
        .collect();
    let t0 = tsc();
    encapsulate_burst_with(sas, &mut items, kernel).unwrap();
    let ticks = tsc() - t0;
    let ranges = items.iter().map(|it| it.result.clone().unwrap()).collect();
    (ranges, ticks)
}

/// Runs `burst` (one timed burst of `n` packets of `len` bytes, returning its ticks) 3000
/// times and prints the median.
fn report(name: &str, len: usize, n: usize, mut burst: impl FnMut() -> u64) {
    let mut t: Vec<u64> = (0..3000).map(|_| burst()).collect();
    t.sort();
    let median = t[t.len() / 2];
    eprintln!(
        "len {len:5} n {n} {name:6}: {median} ticks/burst, {} per pkt",
        median / n as u64
    );
}

#[test]
#[ignore]
fn small_encapsulation_bursts() {
    let suite = suite();
    let mut sas: Vec<OutboundSa> = (0..32)
        .map(|i| OutboundSa::new(0x1000 + i, &suite).unwrap())
        .collect();
    for len in LENGTHS {
        for n in COUNTS {
            for (name, k) in [("multi", CbcKernel::detect()), ("single", None)] {
                let mut bufs = vec![vec![0u8; 2048]; n];
                report(name, len, n, || seal(&mut sas, &mut bufs, len, k).1);
            }
        }
    }
}

#[test]
#[ignore]
fn small_decapsulation_bursts() {
    use akagate_fastpath::esp::burst::decapsulate_burst_with;
    use akagate_fastpath::esp::{DecapItem, InboundSa};
    let suite = suite();
    let mut outs: Vec<OutboundSa> = (0..32)
        .map(|i| OutboundSa::new(0x1000 + i, &suite).unwrap())
        .collect();
    let mut ins: Vec<InboundSa> = (0..32)
        .map(|i| InboundSa::new(0x1000 + i, &suite).unwrap())
        .collect();
    for len in LENGTHS {
        for n in COUNTS {
            for (name, multi) in [("multi", true), ("single", false)] {
                let mut bufs = vec![vec![0u8; 2048]; n];
                report(name, len, n, || {
                    let (ranges, _) = seal(&mut outs, &mut bufs, len, None);
                    let mut items: Vec<DecapItem> = bufs
                        .iter_mut()
                        .zip(ranges)
                        .enumerate()
                        .map(|(i, (b, r))| DecapItem::new(i, b, r))
                        .collect();
                    let t0 = tsc();
                    decapsulate_burst_with(&mut ins, &mut items, multi).unwrap();
                    let ticks = tsc() - t0;
                    assert!(items.iter().all(|it| it.result.is_ok()));
                    ticks
                });
            }
        }
    }
}
