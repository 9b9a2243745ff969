//! Steps an in-process gateway with nothing to do: the cost of the worker's idle turn.
//!
//! `valgrind --tool=callgrind --toggle-collect='*InProcessGateway*step*' idle_turn` counts
//! its instructions exactly (`AKG_IDLE_STEPS`, default 100 000 steps, the clock one
//! microsecond further each step so the timer wheel turns as a live worker's does).

use akagate_bench::gateway::{GatewayConfig, InProcessGateway};
use akagate_slowpath::hss::{generate_subscribers, Hss, Plmn};
use akagate_sys::mempair::{mem_pair, MemPairConfig};
use akagate_sys::Port;
use smoltcp::time::Instant;

fn main() {
    let steps: i64 = std::env::var("AKG_IDLE_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let hss = Hss::from_records(&generate_subscribers(16, 7, Plmn::default())).expect("hss");
    let (mut a, _b) = mem_pair(&MemPairConfig::default()).expect("memory pair");
    let qa = a.take_queues().pop().expect("a queue");
    let mut gw = InProcessGateway::new(GatewayConfig::new(64), hss, qa, Instant::from_micros(0))
        .expect("gateway");
    let mut work = 0;
    for t in 1..=steps {
        work += gw.step(Instant::from_micros(t));
    }
    println!("{steps} idle steps, {work} did work");
}
