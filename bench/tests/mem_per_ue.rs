//! Issue 10's memory bound: a registered UE — its stack, its four SAs, one open protected TCP
//! connection and the slowpath's registration — costs at most 16 KiB of gateway heap
//! (`memprobe::BYTES_PER_UE_BOUND`), counted by allocator over 3000 UEs registered
//! through the in-process gateway. Adding 8 KiB per UE again (say, TCP buffers allocated up
//! front, or smoltcp's per-interface fragmenter) fails it; `make bench` (section `mem`)
//! measures the same at 10k / 100k / 1M UEs.

use akagate_bench::memprobe::{measure, Counting, BYTES_PER_UE_BOUND};

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_registered_ue_with_an_open_protected_connection_fits_16_kib() {
    // 3000 UEs hold 6000 SAs each way; the worker's SA slabs grow by an eighth, so any size
    // is measured with at most an eighth of empty cells (doubling left 27% empty here, 1 KiB
    // more per UE).
    let f = measure(3000, |_| {}).expect("3000 UEs register");
    println!("{f:?}");
    assert!(
        f.bytes_per_ue <= BYTES_PER_UE_BOUND,
        "{:.0} bytes per registered UE, above the {BYTES_PER_UE_BOUND} bound",
        f.bytes_per_ue
    );
}
