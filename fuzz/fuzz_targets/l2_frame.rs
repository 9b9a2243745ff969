//! Fuzz target: a worker's rx path (`Worker::run_once` over an in-memory port with one SA set
//! installed): raw Ethernet frames, IP packets, clear and ESP-protected UDP/TCP and a TCP
//! connection carrying arbitrary stream bytes, through L2/ARP/ND/ICMP, reassembly, ESP, the
//! selector checks, the per-UE stacks and SIP framing. The harness is shared with
//! `fastpath/tests/nopanic_worker.rs`.
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
    worker::run(data);
});
