//! Per-packet ESP processing allocates nothing: a counting global allocator watches
//! encapsulation and decapsulation of every suite (SA creation may allocate).
//!
//! Only allocations made by the test's own thread count: the test harness allocates on its
//! other threads (output capture, the runner) at arbitrary moments.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use akagate_fastpath::esp::{AuthAlg, EncrAlg, InboundSa, OutboundSa, SaKeys, Suite};

struct Counting;

thread_local! {
    // A const-initialised Cell needs no allocation and no destructor, so it is safe to touch
    // from inside the allocator.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs_on_this_thread() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with` fails only while the thread is being torn down; nothing to count then.
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn encapsulate_and_decapsulate_do_not_allocate() {
    let suites = [
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc, 20, 16),
        (AuthAlg::HmacMd5_96, EncrAlg::AesCbc, 16, 16),
        (AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc, 20, 24),
        (AuthAlg::HmacSha1_96, EncrAlg::Null, 20, 0),
        (AuthAlg::HmacSha1_96, EncrAlg::AesGcm, 0, 16),
        (AuthAlg::AesGmac, EncrAlg::Null, 16, 0),
    ];
    let mut buf = vec![0u8; 128 + 1500 + 128];
    let total = 20 + 1408;
    for (auth, encr, ik, ek) in suites {
        let keys = SaKeys {
            integ_key: (0..ik as u8).collect(),
            encr_key: (1..=ek as u8).collect(),
            salt: [1, 2, 3, 4],
        };
        let suite = Suite { auth, encr, keys };
        let mut out = OutboundSa::new(0x4000, &suite).unwrap();
        let mut inb = InboundSa::new(0x4000, &suite).unwrap();
        let before = allocs_on_this_thread();
        for _ in 0..100 {
            buf[128..148].copy_from_slice(&[
                0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ]);
            buf[130..132].copy_from_slice(&(total as u16).to_be_bytes());
            let r = out.encapsulate(&mut buf, 128..128 + total).unwrap();
            let r = inb.decapsulate(&mut buf, r).unwrap();
            assert_eq!(r.len(), total);
        }
        assert_eq!(
            allocs_on_this_thread(),
            before,
            "{auth:?}/{encr:?} allocated"
        );
    }
}

/// Burst encapsulation and decapsulation (multi-buffer kernels included) allocate nothing
/// beyond the caller's item slices.
#[test]
fn bursts_do_not_allocate() {
    use akagate_fastpath::esp::{decapsulate_burst, encapsulate_burst, DecapItem, EncapItem};
    let suite = |i: u8| Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: vec![i; 20],
            encr_key: vec![i ^ 0x5a; 16],
            salt: [0; 4],
        },
    };
    let mut out: Vec<OutboundSa> = (0..4u8)
        .map(|i| OutboundSa::new(0x4000 + u32::from(i), &suite(i)).unwrap())
        .collect();
    let mut inb: Vec<InboundSa> = (0..4u8)
        .map(|i| InboundSa::new(0x4000 + u32::from(i), &suite(i)).unwrap())
        .collect();
    let total = 20 + 1408;
    let mut bufs = vec![vec![0u8; 128 + 1500 + 128]; 32];
    for round in 0..10 {
        for b in bufs.iter_mut() {
            b[128..148].copy_from_slice(&[
                0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ]);
            b[130..132].copy_from_slice(&(total as u16).to_be_bytes());
        }
        // The item vectors are the caller's; only the calls are watched.
        let mut enc: Vec<EncapItem<'_>> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| EncapItem::new(i % 4, b, 128..128 + total))
            .collect();
        let before = allocs_on_this_thread();
        encapsulate_burst(&mut out, &mut enc).unwrap();
        assert_eq!(
            allocs_on_this_thread(),
            before,
            "round {round}: encapsulation allocated"
        );
        let ranges: Vec<_> = enc.into_iter().map(|it| it.result.unwrap()).collect();
        let mut dec: Vec<DecapItem<'_>> = bufs
            .iter_mut()
            .zip(&ranges)
            .enumerate()
            .map(|(i, (b, r))| DecapItem::new(i % 4, b, r.clone()))
            .collect();
        let before = allocs_on_this_thread();
        decapsulate_burst(&mut inb, &mut dec).unwrap();
        assert_eq!(
            allocs_on_this_thread(),
            before,
            "round {round}: decapsulation allocated"
        );
        for it in dec {
            assert_eq!(it.result.unwrap().len(), total, "round {round}");
        }
    }
}
