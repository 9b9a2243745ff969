//! Fuzz target: the slowpath core over a sequence of worker events, starting from two
//! registered UEs (templates sent whole or altered, arbitrary bytes on any flow and SA,
//! answers to the core's requests, the right answer to its last challenge, TCP closes,
//! failed connects, lost sends, time passing). The harness is shared with
//! `slowpath/tests/core_events.rs`.
#![no_main]

#[path = "../../slowpath/tests/core_events_common/mod.rs"]
#[allow(dead_code)]
mod core_events_common;
#[path = "../../slowpath/tests/reg_common/mod.rs"]
#[allow(dead_code)]
mod reg_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    core_events_common::run(data);
});
