//! Fuzz target: outer IPv4/IPv6 reassembly (`fastpath/src/reasm`) on arbitrary fragment
//! sequences under tight bounds, and on real datagrams cut, shuffled and duplicated that must
//! be restored byte for byte. The harness is shared with `fastpath/tests/nopanic_reasm.rs`.
#![no_main]

#[path = "../../fastpath/tests/nopanic_common/input.rs"]
#[allow(dead_code)]
mod input;
#[path = "../../fastpath/tests/nopanic_common/reasm.rs"]
#[allow(dead_code)]
mod reasm;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    reasm::run(data);
});
