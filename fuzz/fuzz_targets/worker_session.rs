//! Fuzz target: the whole worker (`Worker::run_once` over an in-memory port, SA sets
//! installed) in a session: frames from the UE (raw, IP, clear and ESP-protected UDP/TCP, a
//! TCP connection with stream bytes) and from spoofed sources, interleaved with the
//! slowpath's commands (sends, closes, SA sets installed and removed) and time passing in
//! large steps. The harness is shared with `fastpath/tests/nopanic_worker.rs`.
#![no_main]

#[path = "../../fastpath/tests/nopanic_common/esp.rs"]
#[allow(dead_code)]
mod esp;
#[path = "../../fastpath/tests/nopanic_common/input.rs"]
#[allow(dead_code)]
mod input;
#[path = "../../fastpath/tests/support/mod.rs"]
mod support;
#[path = "../../fastpath/tests/nopanic_common/worker.rs"]
#[allow(dead_code)]
mod worker;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    worker::run_session(data);
});
