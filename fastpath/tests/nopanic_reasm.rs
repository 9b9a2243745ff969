//! No-panic property of outer IP reassembly on stable: seeded mutations of the `reassembly`
//! fuzz harness's seeds (arbitrary fragment sequences under tight bounds, and real datagrams
//! cut, shuffled and duplicated that must be restored exactly); `fuzz/` runs the same harness.

#[path = "nopanic_common/input.rs"]
mod input;
#[path = "nopanic_common/mutate.rs"]
mod mutate;
#[path = "nopanic_common/reasm.rs"]
mod reasm;

#[test]
fn seeds_restore_their_datagrams() {
    for s in reasm::seeds() {
        assert_eq!(
            reasm::run(&s),
            reasm::Stats {
                raw_complete: 0,
                restored: 1
            }
        );
    }
}

#[test]
fn mutated_fragment_sequences_never_panic() {
    mutate::run_mutants(&reasm::seeds(), 20_000, 0x5245_4153, |d| {
        reasm::run(d);
    });
}
