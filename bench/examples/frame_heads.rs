//! Frames recorded REGISTER requests through the worker's SIP framer, whole and cut in two as
//! a segment boundary cuts them: the cost of the framer's head scan on this CPU.
//!
//! `AKG_FRAME_ROUNDS` (default 200 000) rounds, each framing every fixture whole and then in
//! two reads; prints the nanoseconds a message. Under `valgrind --tool=callgrind` the
//! instruction count a message is exact.

use akagate_fastpath::stack::framing::{Frame, SipFramer};
use std::time::Instant;

const FIXTURES: [&[u8]; 2] = [
    include_bytes!("../../fastpath/tests/fixtures/stack/register_boghe_openims.sip"),
    include_bytes!("../../fastpath/tests/fixtures/stack/register_chinamobile_ipv6_compact.sip"),
];

fn main() {
    let rounds: usize = std::env::var("AKG_FRAME_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut framer = SipFramer::new(8192, 65536);
    let (mut messages, mut bytes) = (0usize, 0usize);
    let t0 = Instant::now();
    for _ in 0..rounds {
        for msg in FIXTURES {
            let mut on_frame = |f: Frame| {
                if let Frame::Message(m) = f {
                    messages += 1;
                    bytes += m.len();
                }
            };
            framer
                .feed(msg, 0, &mut on_frame)
                .expect("a whole message frames");
            // The head cut in its middle: the second read resumes the scan.
            let cut = msg.len() / 3;
            framer
                .feed(&msg[..cut], msg.len() - cut, &mut on_frame)
                .expect("a head's first part");
            framer
                .feed(&msg[cut..], 0, &mut on_frame)
                .expect("the rest frames");
        }
    }
    let ns = t0.elapsed().as_nanos() as f64;
    assert_eq!(
        messages,
        rounds * 2 * FIXTURES.len(),
        "every message framed once"
    );
    println!(
        "{messages} messages ({bytes} bytes) framed, {:.1} ns a message",
        ns / messages as f64
    );
}
