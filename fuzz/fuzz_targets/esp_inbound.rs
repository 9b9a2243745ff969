//! Fuzz target: the fast path's ESP inbound path (`InboundSa::decapsulate`, `peek_spi`) for
//! every suite, on raw bytes, on authentic packets forged around arbitrary plaintext (compared
//! with a model of RFC 4303 3.4) and on tampered round trips. The harness is shared with
//! `fastpath/tests/nopanic_esp.rs`.
#![no_main]

#[path = "../../fastpath/tests/nopanic_common/esp.rs"]
#[allow(dead_code)]
mod esp;
#[path = "../../fastpath/tests/nopanic_common/input.rs"]
#[allow(dead_code)]
mod input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    esp::run(data);
});
