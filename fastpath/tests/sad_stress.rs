//! Concurrency stress test of the SA table: readers look up SPIs while one writer installs,
//! removes and releases at a high rate; every SA a reader sees must be alive and match its SPI,
//! and every installed SA must be dropped exactly once.
//!
//! This test fails when reclamation is wrong. Checked by hand (not committed): replacing
//! `guard.defer_destroy(old)` in `SaTable::unlink` with an immediate `drop(old.into_owned())`
//! made it fail in 3 of 3 runs at the "readers saw freed or foreign SAs" assertion (poisoned
//! canaries, and freed boxes reused for newer SAs with other SPIs); making `lookup` skip its
//! SPI/generation comparison made it fail at the same assertion.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::sad::{self, SaTable, SpiAllocator};

const ALIVE: u64 = 0xA11C_E0F5_A11C_E0F5;
const POISON: u64 = 0xDEAD_DEAD_DEAD_DEAD;
const CAPACITY: usize = 512;
const READERS: usize = 3;
const RUN_TIME: Duration = Duration::from_millis(1500);

#[derive(Default)]
struct Counters {
    created: AtomicUsize,
    dropped: AtomicUsize,
    bad_drops: AtomicUsize,
}

/// An SA stand-in: knows its SPI, and its destructor poisons the canary and counts.
struct Probe {
    spi: u32,
    canary: AtomicU64,
    counters: Arc<Counters>,
}

impl Probe {
    fn new(spi: u32, counters: &Arc<Counters>) -> Self {
        counters.created.fetch_add(1, Ordering::SeqCst);
        Self {
            spi,
            canary: AtomicU64::new(ALIVE),
            counters: counters.clone(),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // A swap, not a plain store: the compiler may not elide it before the free.
        if self.canary.swap(POISON, Ordering::SeqCst) != ALIVE {
            self.counters.bad_drops.fetch_add(1, Ordering::SeqCst);
        }
        self.counters.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// xorshift64*: a tiny deterministic generator so each thread has its own stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Advances the global epoch until deferred destructors have run and `live()` reaches
/// `target`, or gives up.
fn reclaim_until(target: usize, live: impl Fn() -> usize) -> usize {
    for _ in 0..10_000 {
        if live() == target {
            break;
        }
        crossbeam_epoch::pin().flush();
        std::thread::yield_now();
    }
    live()
}

#[test]
fn readers_never_see_freed_or_foreign_sas() {
    let counters = Arc::new(Counters::default());
    let table = Arc::new(SaTable::<Probe>::with_capacity(CAPACITY).unwrap());
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
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (r as u64 + 1));
                let (mut hits, mut misses) = (0u64, 0u64);
                let mut guard = sad::pin();
                while !stop.load(Ordering::Relaxed) {
                    // One "burst" per pin, as a worker does.
                    guard.repin();
                    for _ in 0..32 {
                        let slot = rng.below(CAPACITY);
                        let mut spi = published[slot].load(Ordering::Relaxed);
                        if rng.below(8) == 0 {
                            spi ^= 1 << (table.layout().slot_bits() + rng.below(4) as u32);
                        }
                        match table.lookup(spi, &guard) {
                            Some(p) => {
                                hits += 1;
                                if p.spi != spi || p.canary.load(Ordering::SeqCst) != ALIVE {
                                    errors.fetch_add(1, Ordering::SeqCst);
                                }
                                // Hold the reference a while: the writer may unlink it now,
                                // but it must stay alive until this guard is re-pinned.
                                for _ in 0..64 {
                                    std::hint::spin_loop();
                                }
                                if p.spi != spi || p.canary.load(Ordering::SeqCst) != ALIVE {
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

    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut live_spis: Vec<u32> = Vec::with_capacity(CAPACITY);
    let mut removed_not_released: Vec<u32> = Vec::new();
    let mut ops = 0u64;
    let start = Instant::now();
    while start.elapsed() < RUN_TIME {
        for _ in 0..256 {
            ops += 1;
            let fill = live_spis.len() + removed_not_released.len();
            if fill < CAPACITY * 3 / 4 && rng.below(2) == 0 {
                let spi = table.allocate().unwrap();
                table.install(spi, Probe::new(spi, &counters)).unwrap();
                published[table.layout().slot(spi)].store(spi, Ordering::Relaxed);
                live_spis.push(spi);
            } else if !live_spis.is_empty() {
                let spi = live_spis.swap_remove(rng.below(live_spis.len()));
                if rng.below(2) == 0 {
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
        "readers saw freed or foreign SAs"
    );
    assert!(
        hits > 1_000,
        "readers found too few SAs ({hits}) to prove anything"
    );
    assert!(ops > 10_000, "writer did too little work ({ops} ops)");
    assert_eq!(table.installed(), live_spis.len());

    // Removed SAs are reclaimed while the table lives, not only when it is dropped.
    let live = || counters.created.load(Ordering::SeqCst) - counters.dropped.load(Ordering::SeqCst);
    assert_eq!(reclaim_until(live_spis.len(), live), live_spis.len());

    drop(table);
    assert_eq!(reclaim_until(0, live), 0, "installed SAs leaked");
    assert_eq!(
        counters.bad_drops.load(Ordering::SeqCst),
        0,
        "an SA was dropped twice"
    );
    assert_eq!(
        counters.created.load(Ordering::SeqCst),
        counters.dropped.load(Ordering::SeqCst)
    );
}
