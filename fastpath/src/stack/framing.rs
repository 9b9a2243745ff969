//! SIP message framing on a TCP byte stream: cut messages by `Content-Length` (RFC 3261 18.3)
//! and recognise RFC 5626 4.4.1 CRLF keep-alives between messages.
//!
//! Only the header end and the `Content-Length` / `l` header are looked at; full parsing
//! is the slowpath's job.

/// What the framer found at the front of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete SIP message (start line, headers, blank line, body).
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping; the receiver answers with a single CRLF (RFC 5626 4.4.1).
    Ping,
    /// A single-CRLF keep-alive pong.
    Pong,
}

/// Why a stream cannot be framed; the connection must be closed (RFC 3261 18.3).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The header section grew beyond the configured bound without a blank line.
    #[error("SIP header section longer than {0} bytes")]
    HeaderTooLong(usize),
    /// A message on a stream transport without `Content-Length` (mandatory, RFC 3261 18.3).
    #[error("SIP message on a stream without Content-Length")]
    MissingContentLength,
    /// `Content-Length` is not a decimal number.
    #[error("malformed Content-Length value")]
    BadContentLength,
    /// Two `Content-Length` headers with different values.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// The announced body is larger than the configured bound.
    #[error("SIP body of {0} bytes exceeds the bound")]
    BodyTooLong(usize),
}

/// The CRLF sequence ending each line.
const CRLF: &[u8] = b"\r\n";
/// The blank line ending the header section, also the keep-alive ping.
const CRLFCRLF: &[u8] = b"\r\n\r\n";

/// Incremental framer for one TCP connection; feed bytes with [`SipFramer::push`] and take
/// frames with [`SipFramer::next_frame`].
#[derive(Debug)]
pub struct SipFramer {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed by returned frames.
    start: usize,
    /// Bytes after `start` already searched for the end of the header section without
    /// finding it: a message arriving in many small segments is scanned once, not once per
    /// segment.
    scanned: usize,
    /// Total length of the message at `start`, once its header section is parsed.
    want: Option<usize>,
    max_header: usize,
    max_body: usize,
}

impl SipFramer {
    /// A framer accepting header sections up to `max_header` and bodies up to `max_body` bytes.
    pub fn new(max_header: usize, max_body: usize) -> Self {
        SipFramer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            want: None,
            max_header,
            max_body,
        }
    }

    /// Appends received stream bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Makes room for `n` more bytes at once, so bytes read in pieces (a socket's ring
    /// buffer wraps) cost one allocation.
    pub fn reserve(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        let data = self.buf.get(self.start..).unwrap_or_default();
        let total = match self.want {
            Some(total) => total,
            None => {
                // RFC 5626 4.4.1: keep-alives only appear between messages.
                if data.starts_with(CRLF) {
                    if data.starts_with(CRLFCRLF) {
                        self.consumed(CRLFCRLF.len());
                        return Ok(Some(Frame::Ping));
                    }
                    // "\r\n" alone or "\r\n\r" may still become a ping.
                    if data.len() < CRLFCRLF.len() && CRLFCRLF.starts_with(data) {
                        return Ok(None);
                    }
                    self.consumed(CRLF.len());
                    return Ok(Some(Frame::Pong));
                }
                // Resume the search where the last one ended, minus a possibly split CRLFCRLF.
                let from = self.scanned.saturating_sub(CRLFCRLF.len() - 1);
                let found = data
                    .get(from..)
                    .and_then(|rest| find(rest, CRLFCRLF))
                    .map(|i| from + i + CRLFCRLF.len());
                let Some(head_len) = found else {
                    self.scanned = data.len();
                    if data.len() > self.max_header {
                        return Err(FramingError::HeaderTooLong(self.max_header));
                    }
                    return Ok(None);
                };
                if head_len > self.max_header {
                    return Err(FramingError::HeaderTooLong(self.max_header));
                }
                let body_len = content_length(&data[..head_len])?;
                if body_len > self.max_body {
                    return Err(FramingError::BodyTooLong(body_len));
                }
                let total = head_len + body_len;
                self.want = Some(total);
                total
            }
        };
        if data.len() < total {
            // The rest of the message arrives in one allocation's room.
            let missing = total - data.len();
            self.buf.reserve(missing);
            return Ok(None);
        }
        let msg = if self.start == 0 && total == self.buf.len() {
            // The usual case, one message and nothing after it: hand over the buffer itself.
            self.want = None;
            self.scanned = 0;
            std::mem::take(&mut self.buf)
        } else {
            let m = data[..total].to_vec();
            self.consumed(total);
            m
        };
        Ok(Some(Frame::Message(msg)))
    }

    /// Moves past a returned frame of `n` bytes.
    fn consumed(&mut self, n: usize) {
        self.start += n;
        self.scanned = 0;
        self.want = None;
    }

    /// Frees the buffer's memory when nothing is pending, unless it is small (keep-alives),
    /// so an idle connection holds none.
    pub fn release_idle(&mut self) {
        if self.pending() == 0 {
            if self.buf.capacity() > 256 {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
            self.start = 0;
            self.scanned = 0;
            self.want = None;
        }
    }
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of `Content-Length` (or compact `l`, RFC 3261 7.3.3) in a header section
/// that ends with the blank line.
pub fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found: Option<usize> = None;
    // Skip the start line; header lines follow, each ending in CRLF.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        match found {
            Some(prev) if prev != n => return Err(FramingError::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    found.ok_or(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &[u8] = b"REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.2:5060\r\nContent-Length: 5\r\n\r\nhello";
    const OPT: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nl:0\r\n\r\n";

    fn framer() -> SipFramer {
        SipFramer::new(8192, 65536)
    }

    #[test]
    fn two_messages_in_one_push() {
        let mut f = framer();
        f.push(&[REG, OPT].concat());
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(REG.to_vec()))));
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(OPT.to_vec()))));
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn one_message_byte_by_byte() {
        let mut f = framer();
        for (i, b) in REG.iter().enumerate() {
            assert_eq!(f.next_frame(), Ok(None), "complete too early at {i}");
            f.push(&[*b]);
        }
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(REG.to_vec()))));
    }

    #[test]
    fn keepalive_ping_and_pong() {
        let mut f = framer();
        f.push(b"\r\n");
        assert_eq!(f.next_frame(), Ok(None));
        f.push(b"\r");
        assert_eq!(f.next_frame(), Ok(None));
        f.push(b"\n");
        assert_eq!(f.next_frame(), Ok(Some(Frame::Ping)));
        f.push(b"\r\nOPTIONS");
        assert_eq!(f.next_frame(), Ok(Some(Frame::Pong)));
        assert_eq!(f.next_frame(), Ok(None));
    }

    #[test]
    fn compact_and_case_insensitive_header() {
        assert_eq!(
            content_length(b"INVITE x SIP/2.0\r\nCONTENT-length :  12 \r\n\r\n"),
            Ok(12)
        );
        assert_eq!(content_length(b"INVITE x SIP/2.0\r\nL: 3\r\n\r\n"), Ok(3));
        // A header whose name only ends in "l" is not Content-Length.
        assert_eq!(
            content_length(b"INVITE x SIP/2.0\r\nUrl: 3\r\n\r\n"),
            Err(FramingError::MissingContentLength)
        );
    }

    #[test]
    fn errors() {
        let mut f = framer();
        f.push(b"INVITE x SIP/2.0\r\nContent-Length: x1\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BadContentLength));
        assert_eq!(
            content_length(b"A\r\nContent-Length: 1\r\nl: 2\r\n\r\n"),
            Err(FramingError::ConflictingContentLength)
        );
        assert_eq!(
            content_length(b"A\r\nContent-Length: 1\r\nl: 1\r\n\r\n"),
            Ok(1)
        );
        assert_eq!(
            content_length(b"A\r\nContent-Length: 99999999999\r\n\r\n"),
            Err(FramingError::BadContentLength)
        );
        let mut f = SipFramer::new(64, 10);
        f.push(b"A\r\nContent-Length: 11\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BodyTooLong(11)));
        let mut f = SipFramer::new(16, 10);
        f.push(&[b'a'; 17]);
        assert_eq!(f.next_frame(), Err(FramingError::HeaderTooLong(16)));
    }

    #[test]
    fn real_register_fixture_frames() {
        let msg = include_bytes!("../../tests/fixtures/stack/register_boghe_openims.sip");
        let mut f = framer();
        f.push(msg);
        f.push(msg);
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(msg.to_vec()))));
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(msg.to_vec()))));
        assert_eq!(f.next_frame(), Ok(None));
    }
}
