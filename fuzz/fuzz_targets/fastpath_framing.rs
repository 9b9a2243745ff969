//! Fuzz target: the fast path's per-connection `SipFramer` (`fastpath/src/stack/framing.rs`)
//! over an arbitrary stream pushed in arbitrary pieces. It never panics, frames do not depend
//! on segmentation, and it agrees with the slowpath framer (`sip::next_frame`) on the
//! outcome at the front of the stream — the same message length, keep-alive, "need more" or
//! error — so a split between the two (say a folded `Subject: x\r\n l: 7` taken for a
//! Content-Length by one side only) is caught whichever side fails. A framed message that
//! the full parser accepts has exactly the body its Content-Length announces.
#![no_main]

use akagate_fastpath::stack::framing::{Frame, FramingError, SipFramer};
use akagate_slowpath::sip::{next_frame, Frame as SlowFrame, FrameLimits, Message, ParseError};
use libfuzzer_sys::fuzz_target;

fn drive<'a>(
    pieces: impl Iterator<Item = &'a [u8]>,
    max_header: usize,
    max_body: usize,
) -> (Vec<Result<Frame, FramingError>>, Option<usize>) {
    let mut f = SipFramer::new(max_header, max_body);
    let mut seen = Vec::new();
    for piece in pieces {
        f.push(piece);
        loop {
            match f.next_frame() {
                Ok(None) => break,
                Ok(Some(fr)) => seen.push(Ok(fr)),
                Err(e) => {
                    // How much was buffered when the error surfaced depends on segmentation.
                    seen.push(Err(e));
                    return (seen, None);
                }
            }
        }
    }
    (seen, Some(f.pending()))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ctl, stream) = data.split_at(3);
    let (max_header, max_body) = if ctl[0] & 1 == 0 {
        (8192, 65536)
    } else {
        (16 + usize::from(ctl[0]) * 4, usize::from(ctl[1]))
    };
    let whole = drive(std::iter::once(stream), max_header, max_body);
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
    assert_eq!(
        drive(pieces.into_iter(), max_header, max_body),
        whole,
        "framing depends on segmentation"
    );
    // Differential: the outcome at the front of the stream, failures included.
    let mut f = SipFramer::new(max_header, max_body);
    f.push(stream);
    let fast = match f.next_frame() {
        Ok(Some(Frame::Message(m))) => Ok(SlowFrame::Message(m.len())),
        Ok(Some(Frame::Ping)) => Ok(SlowFrame::Ping(4)),
        Ok(Some(Frame::Pong)) => Ok(SlowFrame::Pong(2)),
        Ok(None) => Ok(SlowFrame::NeedMore),
        Err(e) => Err(ParseError::from(e)),
    };
    let limits = FrameLimits {
        max_head: max_header,
        max_body,
    };
    let slow = next_frame(stream, &limits);
    assert_eq!(fast, slow, "fast path and slowpath framers disagree");
    if let Ok(SlowFrame::Message(n)) = slow {
        if let Ok(msg) = Message::parse(&stream[..n]) {
            assert_eq!(msg.content_length(), Some(msg.body().len()));
            assert_eq!(msg.body().as_ptr_range().end, stream[..n].as_ptr_range().end);
        }
    }
});
