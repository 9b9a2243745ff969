//! Cuts SIP messages out of a TCP byte stream by Content-Length (RFC 3261 18.3) and recognises
//! RFC 5626 keep-alives (CRLFCRLF ping, CRLF pong). The rule is the shared scanner's
//! (`akagate_proto::sipscan`), the same the fast path's per-connection framer runs.

use akagate_proto::sipscan::{scan_frame, Scanned, CRLF, CRLFCRLF};

use super::error::ParseError;

pub use akagate_proto::sipscan::FrameLimits;

/// The answer to a CRLFCRLF ping (RFC 5626 3.5.1).
pub const PONG: &[u8] = b"\r\n";

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete message of this many bytes (headers + body); parse it with
    /// [`super::Message::parse`] and consume it.
    Message(usize),
    /// A CRLFCRLF keep-alive ping of this many bytes: consume it and send [`PONG`].
    Ping(usize),
    /// A lone CRLF (a pong, or CRLF before a start line, RFC 3261 7.5): consume and ignore.
    Pong(usize),
    /// Not enough bytes yet.
    NeedMore,
}

/// Inspects the start of `buf`. Errors mean the stream cannot be resynchronised and the
/// connection should be closed (after a 400/513 if a request can be identified).
pub fn next_frame(buf: &[u8], limits: &FrameLimits) -> Result<Frame, ParseError> {
    Ok(match scan_frame(buf, limits, 0)? {
        Scanned::Message { len } => Frame::Message(len),
        Scanned::Ping => Frame::Ping(CRLFCRLF.len()),
        Scanned::Pong => Frame::Pong(CRLF.len()),
        Scanned::Incomplete { .. } => Frame::NeedMore,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc";

    #[test]
    fn frames_by_content_length() {
        let lim = FrameLimits::default();
        for cut in 0..MSG.len() {
            assert_eq!(next_frame(&MSG[..cut], &lim), Ok(Frame::NeedMore), "{cut}");
        }
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(next_frame(&two, &lim), Ok(Frame::Message(MSG.len())));
    }

    #[test]
    fn keepalives() {
        let lim = FrameLimits::default();
        assert_eq!(next_frame(b"\r\n\r\n", &lim), Ok(Frame::Ping(4)));
        assert_eq!(next_frame(b"\r\n", &lim), Ok(Frame::NeedMore));
        assert_eq!(next_frame(b"\r\n\r", &lim), Ok(Frame::NeedMore));
        assert_eq!(next_frame(b"\r\nOPTIONS", &lim), Ok(Frame::Pong(2)));
    }

    #[test]
    fn errors() {
        let lim = FrameLimits::default();
        assert_eq!(
            next_frame(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", &lim),
            Err(ParseError::MissingContentLength)
        );
        assert_eq!(
            next_frame(b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n", &lim),
            Err(ParseError::BadContentLength)
        );
        assert_eq!(
            next_frame(
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nxy",
                &lim
            ),
            Err(ParseError::MultipleContentLength)
        );
        // Equal repeated values still frame; the parser then refuses the message (400).
        let twice = b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(next_frame(twice, &lim), Ok(Frame::Message(twice.len())));
        assert!(crate::sip::Message::parse(twice).is_err());
        let small = FrameLimits {
            max_head: 8,
            max_body: 2,
        };
        assert_eq!(next_frame(&[b'A'; 12], &small), Err(ParseError::TooLarge));
        assert_eq!(next_frame(MSG, &small), Err(ParseError::TooLarge));
    }
}
