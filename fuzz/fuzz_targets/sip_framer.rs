//! Fuzz target: the slowpath's stream framer `sip::next_frame` over an arbitrary byte stream
//! delivered in arbitrary pieces. It never panics, reported lengths lie inside the buffer, and
//! TCP segmentation does not matter: the frames (and the first error) found when the stream
//! arrives piece by piece equal those found when it arrives at once.
#![no_main]

use akagate_slowpath::sip::{next_frame, Frame, FrameLimits, ParseError};
use libfuzzer_sys::fuzz_target;

/// What a consumer of the framer sees: frames with their bytes, then maybe an error.
#[derive(Debug, PartialEq)]
enum Seen {
    Message(Vec<u8>),
    Ping,
    Pong,
    Error(ParseError),
}

/// Feeds `pieces` in order, consuming every frame as soon as it is complete.
fn drive<'a>(
    pieces: impl Iterator<Item = &'a [u8]>,
    limits: &FrameLimits,
) -> (Vec<Seen>, Option<usize>) {
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let (n, what) = match next_frame(&buf, limits) {
                Ok(Frame::NeedMore) => break,
                Ok(Frame::Message(n)) => {
                    (n, Seen::Message(buf.get(..n).expect("in buffer").to_vec()))
                }
                Ok(Frame::Ping(n)) => (n, Seen::Ping),
                Ok(Frame::Pong(n)) => (n, Seen::Pong),
                Err(e) => {
                    // How much was buffered when the error surfaced depends on segmentation.
                    seen.push(Seen::Error(e));
                    return (seen, None);
                }
            };
            assert!(
                n > 0 && n <= buf.len(),
                "frame of {n} bytes in {}",
                buf.len()
            );
            buf.drain(..n);
            seen.push(what);
        }
    }
    (seen, Some(buf.len()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ctl, stream) = data.split_at(3);
    let limits = if ctl[0] & 1 == 0 {
        FrameLimits::default()
    } else {
        FrameLimits {
            max_head: 16 + usize::from(ctl[0]) * 4,
            max_body: usize::from(ctl[1]),
        }
    };
    let whole = drive(std::iter::once(stream), &limits);
    // Piece sizes 1..=16 from a small LCG seeded by the control byte.
    let mut x = u32::from(ctl[2]) | 1;
    let mut pieces = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = (1 + (x >> 16) as usize % 16).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    let cut = drive(pieces.into_iter(), &limits);
    assert_eq!(cut, whole, "framing depends on segmentation");
});
