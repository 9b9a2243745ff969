//! Cuts SIP messages out of a TCP byte stream by Content-Length (RFC 3261 18.3) and recognises
//! RFC 5626 keep-alives (CRLFCRLF ping, CRLF pong). Used by the fast path per connection.

use super::error::ParseError;
use super::message::{find_crlf, parse_content_length, split_header_line, HeaderLines};

/// The answer to a CRLFCRLF ping (RFC 5626 3.5.1).
pub const PONG: &[u8] = b"\r\n";

/// Size limits for one message on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest header section (start line to the empty line), bytes.
    pub max_head: usize,
    /// Largest body, bytes.
    pub max_body: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_head: 16 * 1024,
            max_body: 64 * 1024,
        }
    }
}

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
    if buf.starts_with(b"\r\n") {
        return Ok(match buf.get(2..4) {
            Some(b"\r\n") => Frame::Ping(4),
            Some(_) => Frame::Pong(2),
            // "\r\n" or "\r\n\r" could still become a ping.
            None if buf.get(2).is_some_and(|&b| b != b'\r') => Frame::Pong(2),
            None => Frame::NeedMore,
        });
    }
    let search_end = buf.len().min(limits.max_head + 4);
    let Some(head_end) = find_head_end(&buf[..search_end]) else {
        if buf.len() >= limits.max_head + 4 {
            return Err(ParseError::TooLarge);
        }
        return Ok(Frame::NeedMore);
    };
    let first = find_crlf(buf, 0).unwrap_or(head_end);
    let section = buf.get(first + 2..head_end).unwrap_or(&[]);
    let mut content_length = None;
    for line in HeaderLines::new(section) {
        let (name, value) = split_header_line(line)?;
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            if content_length.is_some() {
                return Err(ParseError::MultipleContentLength);
            }
            let value = std::str::from_utf8(value).map_err(|_| ParseError::BadContentLength)?;
            content_length = Some(parse_content_length(value)?);
        }
    }
    let body = content_length.ok_or(ParseError::MissingContentLength)?;
    if body > limits.max_body {
        return Err(ParseError::TooLarge);
    }
    let total = head_end + 4 + body;
    Ok(if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::NeedMore
    })
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    super::message::find_head_end(b)
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
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nx",
                &lim
            ),
            Err(ParseError::MultipleContentLength)
        );
        let small = FrameLimits {
            max_head: 8,
            max_body: 2,
        };
        assert_eq!(next_frame(&[b'A'; 12], &small), Err(ParseError::TooLarge));
        assert_eq!(next_frame(MSG, &small), Err(ParseError::TooLarge));
    }
}
