//! Concurrency stress test of the SA table: readers look up SPIs while one writer installs,
//! removes and releases at a high rate; every entry a reader gets must be whole (no mix of an
//! old and a new entry of the slot) and belong to the SPI it looked up.
//!
//! This test fails when the sequence lock is wrong. Checked by hand (not committed): making
//! `lookup` skip its version re-check made it fail at the "readers saw torn or foreign
//! entries" assertion in 3 of 3 runs; making it accept an entry of another SPI failed it in
//! 2 of 2.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::sad::{self, FlatEntry, SaTable, SpiAllocator, ENTRY_WORDS};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

const CAPACITY: usize = 512;
const READERS: usize = 3;
const RUN_TIME: Duration = Duration::from_millis(1500);

/// An entry stand-in: every word derived from the SPI and a generation of the writer, so a
/// torn read (words of two installs) or another SPI's entry shows.
#[derive(Clone, Copy, Debug)]
struct Stamp([u64; ENTRY_WORDS]);

impl Stamp {
    fn new(spi: u32, n: u64) -> Self {
        Stamp(core::array::from_fn(|i| {
            (u64::from(spi) << 32 | n).wrapping_mul(i as u64 * 2 + 1)
        }))
    }
    fn belongs_to(&self, spi: u32) -> bool {
        let first = self.0[0];
        u64::from(spi) == first >> 32
            && self
                .0
                .iter()
                .enumerate()
                .all(|(i, &w)| w == first.wrapping_mul(i as u64 * 2 + 1))
    }
}

impl FlatEntry for Stamp {
    fn to_words(&self) -> [u64; ENTRY_WORDS] {
        self.0
    }
    fn from_words(words: [u64; ENTRY_WORDS]) -> Option<Self> {
        Some(Stamp(words))
    }
}

#[test]
fn readers_never_see_torn_or_foreign_entries() {
    let table = Arc::new(SaTable::<Stamp>::with_capacity(CAPACITY).unwrap());
    // The last SPI the writer issued per slot; readers also probe stale ones.
    let published: Arc<Vec<AtomicU32>> =
        Arc::new((0..CAPACITY).map(|_| AtomicU32::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (table, published, stop, errors) = (
                table.clone(),
                published.clone(),
                stop.clone(),
                errors.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(0x9E37_79B9_7F4A_7C15 ^ (r as u64 + 1));
                let (mut hits, mut misses) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..32 {
                        let slot = rng.gen_range(0..CAPACITY);
                        let mut spi = published[slot].load(Ordering::Relaxed);
                        if rng.gen_range(0..8) == 0 {
                            spi ^= 1 << (table.layout().slot_bits() + rng.gen_range(0..4) as u32);
                        }
                        table.prefetch(spi);
                        match table.lookup(spi) {
                            Some(p) => {
                                hits += 1;
                                if !p.belongs_to(spi) {
                                    errors.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            None => misses += 1,
                        }
                    }
                }
                (hits, misses)
            })
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(0xD1B5_4A32_D192_ED03);
    let mut live_spis: Vec<u32> = Vec::with_capacity(CAPACITY);
    let mut removed_not_released: Vec<u32> = Vec::new();
    let mut ops = 0u64;
    let start = Instant::now();
    while start.elapsed() < RUN_TIME {
        for _ in 0..256 {
            ops += 1;
            let fill = live_spis.len() + removed_not_released.len();
            if fill < CAPACITY * 3 / 4 && rng.gen_range(0..2) == 0 {
                let spi = table.allocate().unwrap();
                table.install(spi, Stamp::new(spi, ops)).unwrap();
                published[table.layout().slot(spi)].store(spi, Ordering::Relaxed);
                live_spis.push(spi);
            } else if !live_spis.is_empty() {
                let spi = live_spis.swap_remove(rng.gen_range(0..live_spis.len()));
                if rng.gen_range(0..2) == 0 {
                    table.release(spi).unwrap(); // removes and frees the slot at once
                } else {
                    table.remove(spi).unwrap();
                    removed_not_released.push(spi);
                }
            }
            if removed_not_released.len() > 16 {
                let spi = removed_not_released.swap_remove(0);
                assert_eq!(table.remove(spi), Err(sad::SadError::NotInstalled { spi }));
                table.release(spi).unwrap();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut hits = 0;
    for r in readers {
        let (h, _m) = r.join().unwrap();
        hits += h;
    }

    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "readers saw torn or foreign entries"
    );
    assert!(
        hits > 1_000,
        "readers found too few SAs ({hits}) to prove anything"
    );
    assert!(ops > 10_000, "writer did too little work ({ops} ops)");
    assert_eq!(table.installed(), live_spis.len());
}
