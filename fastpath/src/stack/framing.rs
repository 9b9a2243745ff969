//! SIP message framing on a TCP byte stream: cut messages by `Content-Length` (RFC 3261 18.3)
//! and recognise RFC 5626 4.4.1 CRLF keep-alives between messages.
//!
//! The rule itself is `akagate_proto::sipscan::scan_frame`, shared with the slowpath's
//! parser and framer (header folding included); this module adds the per-connection buffer.
//! Full parsing is the slowpath's job.
//!
//! Message buffers come from [`akagate_proto::msgbuf`]: the slowpath gives each back when it
//! is done with the event, so a steady stream of messages reuses the same few buffers instead
//! of a `malloc` here and a cross-thread `free` there per message.

mod ahead;

use akagate_proto::msgbuf;
use akagate_proto::sipscan::{scan_frame_by, FrameLimits, HeadScan, Scanned, CRLF, CRLFCRLF};

/// `sipscan::scan_frame` with the head's LFs found 64 bytes at a time by SIMD compares where
/// the CPU has AVX-512BW, 32 at a time where it has AVX2 ([`walk_head`]); the same answer
/// (`scan_frame_by`'s contract, and the tests below against `scan_frame`).
fn scan_frame(buf: &[u8], limits: &FrameLimits, resume: usize) -> Result<Scanned, FramingError> {
    scan_frame_by(buf, limits, resume, walk_head)
}

/// The walk over a head's LFs for `scan_frame_by`: masks where the SWAR walk in `proto`
/// (which forbids `unsafe`, so cannot call intrinsics) stops at every LF and mispredicts
/// its branches, ~10 per head. AVX-512BW when the CPU has it and the walk spans a block at
/// least, else AVX2 (a Zen 3) when it spans two blocks, else `proto`'s walk (a resumed walk
/// over a small segment's few bytes: the masks' setup costs more than the few words).
fn walk_head(b: &[u8], from: usize, s: &mut HeadScan) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let span = b.len().saturating_sub(from);
        if span >= 64 && std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512F and AVX-512BW (checked just above; BW implies F).
            return unsafe { walk_head_avx512(b, from, s) };
        }
        if span >= 64 && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { walk_head_avx2(b, from, s) };
        }
    }
    HeadScan::walk(b, from, s)
}

/// [`walk_head`] on AVX2: [`walk_head_avx512`]'s mask per 32-byte block (an LF with CR
/// before it and CR, `c`, `C`, `l` or `L` after it) from three unaligned loads. AVX2 has no
/// masked byte loads, so a block's loads stay inside `b`: a block at `i` reads `i - 1 ..
/// i + 33`; the last block is moved back to end there at `b.len()` and its lanes already
/// walked are shifted out. An LF in the last byte is never looked at: with no byte after it
/// `note_lf` does nothing with it. With fewer than 34 bytes (no block fits), `proto`'s walk.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn walk_head_avx2(b: &[u8], from: usize, s: &mut HeadScan) -> bool {
    use std::arch::x86_64::*;
    let len = b.len();
    if len < 34 {
        return HeadScan::walk(b, from, s);
    }
    let (lf, cr) = (_mm256_set1_epi8(b'\n' as i8), _mm256_set1_epi8(b'\r' as i8));
    let (c, l, case) = (
        _mm256_set1_epi8(b'c' as i8),
        _mm256_set1_epi8(b'l' as i8),
        _mm256_set1_epi8(0x20),
    );
    // An LF at 0 has no CR before it: the first block starts at 1 at least. The lanes of a
    // block are bytes q .. q + 32, of which those from i on are new.
    let mut i = from.max(1);
    // The last lane that can matter is len - 2 (its byte after is len - 1).
    while i + 1 < len {
        // The block at i, or the last one (ending at len - 1, its "after" load at len).
        let q = i.min(len - 33);
        let p = b.as_ptr().wrapping_add(q);
        // SAFETY: q >= 1 (len >= 34) and q + 33 <= len, so q - 1 .. q + 33 lies inside `b`.
        let (here, before, after) = unsafe {
            (
                _mm256_loadu_si256(p.cast()),
                _mm256_loadu_si256(p.sub(1).cast()),
                _mm256_loadu_si256(p.add(1).cast()),
            )
        };
        let folded = _mm256_or_si256(after, case);
        let next = _mm256_or_si256(
            _mm256_cmpeq_epi8(after, cr),
            _mm256_or_si256(_mm256_cmpeq_epi8(folded, c), _mm256_cmpeq_epi8(folded, l)),
        );
        let hit = _mm256_and_si256(
            _mm256_and_si256(_mm256_cmpeq_epi8(here, lf), _mm256_cmpeq_epi8(before, cr)),
            next,
        );
        // Lanes before i (the moved last block's overlap) were walked already.
        let mut m = (_mm256_movemask_epi8(hit) as u32 as u64) >> (i - q) << (i - q);
        while m != 0 {
            if s.note_lf(b, from, q + m.trailing_zeros() as usize) {
                return true;
            }
            m &= m - 1;
        }
        i = q + 32;
    }
    false
}

/// [`walk_head`] on AVX-512BW: per 64-byte block, one mask of the LFs that have CR before
/// them and CR, `c`, `C`, `l` or `L` after them — the only LFs `HeadScan::note_lf` acts on
/// (it checks them again) — from three unaligned loads (the block, one byte before, one
/// byte after); the last block's loads are masked to the slice (masked-off bytes are not
/// read, so they cannot fault). LFs go to `note_lf` in order, as its contract asks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn walk_head_avx512(b: &[u8], from: usize, s: &mut HeadScan) -> bool {
    use std::arch::x86_64::*;
    let len = b.len();
    let (lf, cr) = (_mm512_set1_epi8(b'\n' as i8), _mm512_set1_epi8(b'\r' as i8));
    let (c, l, case) = (
        _mm512_set1_epi8(b'c' as i8),
        _mm512_set1_epi8(b'l' as i8),
        _mm512_set1_epi8(0x20),
    );
    // An LF at 0 has no CR before it: the first block starts at 1 at least.
    let mut i = from.max(1);
    while i < len {
        let p = b.as_ptr().wrapping_add(i);
        let left = len - i;
        // Bytes i .. i+64 of the block, those before them (from i-1, in bounds: i >= 1) and
        // those after them (from i+1, up to len: `left - 1` bytes, 63 for a full block).
        let (here, before, after) = if left > 64 {
            // SAFETY: i-1 .. i+65 lies inside `b` (i >= 1 and i + 64 < len).
            unsafe {
                (
                    _mm512_loadu_si512(p.cast()),
                    _mm512_loadu_si512(p.sub(1).cast()),
                    _mm512_loadu_si512(p.add(1).cast()),
                )
            }
        } else {
            let k_here: u64 = u64::MAX >> (64 - left);
            // SAFETY: masked loads read only the lanes of their mask: bytes i .. len, i-1 ..
            // len - 1 and i+1 .. len, all inside `b`; the other lanes are zero and not read.
            unsafe {
                (
                    _mm512_maskz_loadu_epi8(k_here, p.cast()),
                    _mm512_maskz_loadu_epi8(k_here, p.sub(1).cast()),
                    _mm512_maskz_loadu_epi8(k_here >> 1, p.add(1).cast()),
                )
            }
        };
        let folded = _mm512_or_si512(after, case);
        let next = _mm512_cmpeq_epi8_mask(after, cr)
            | _mm512_cmpeq_epi8_mask(folded, c)
            | _mm512_cmpeq_epi8_mask(folded, l);
        let mut m = _mm512_cmpeq_epi8_mask(here, lf) & _mm512_cmpeq_epi8_mask(before, cr) & next;
        while m != 0 {
            if s.note_lf(b, from, i + m.trailing_zeros() as usize) {
                return true;
            }
            m &= m - 1;
        }
        i += 64;
    }
    false
}

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

/// Why a stream cannot be framed; the connection must be closed (RFC 3261 18.3). The
/// shared scanner's error, so both framers fail alike.
pub use akagate_proto::sipscan::ScanError as FramingError;

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
    /// The next scan starts at the message's first byte, not at `scanned`: set when
    /// [`SipFramer::feed`] buffers a message whose header section a read cut. Resumed, the
    /// scan walks the head's rest, then the whole head again for its `Content-Length`
    /// (`sipscan::section_content_length`, a call per LF); from the start it is one walk that
    /// notes the candidate lines on the way. Only the first resumption of a message, so a
    /// head arriving in many small pieces is still walked about once (at most twice).
    rescan: bool,
    /// Length of the last message framed: the room a message whose length is not known yet
    /// gets (a connection's messages are alike), so it is not reallocated once it is.
    last_len: usize,
    limits: FrameLimits,
}

impl SipFramer {
    /// A framer accepting header sections up to `max_header` and bodies up to `max_body` bytes.
    pub fn new(max_header: usize, max_body: usize) -> Self {
        SipFramer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            want: None,
            rescan: false,
            last_len: 0,
            limits: FrameLimits {
                max_head: max_header,
                max_body,
            },
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
        crate::copies::note(crate::copies::CopySite::FramerBuffer, bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    /// Frames `data`, stream bytes just read (`more` further bytes are waiting to be read
    /// after them), handing each frame to `on_frame` in order. While nothing is buffered,
    /// complete messages are cut straight out of `data` (one copy each, into the message) and
    /// only an incomplete message at its end is buffered; a buffered message takes just the
    /// bytes it lacks once its length is known, and is handed over as its buffer. So a byte
    /// is copied once, whether messages share segments or straddle them, where [`push`]
    /// then [`next_frame`] copies twice the bytes of a message that shares the buffer with
    /// the start of the next.
    ///
    /// [`push`]: SipFramer::push
    /// [`next_frame`]: SipFramer::next_frame
    pub fn feed(
        &mut self,
        mut data: &[u8],
        more: usize,
        mut on_frame: impl FnMut(Frame),
    ) -> Result<(), FramingError> {
        while !data.is_empty() {
            if self.pending() > 0 {
                let take = match self.want {
                    Some(total) => total.saturating_sub(self.pending()).min(data.len()),
                    // Length not known yet: first what fits in the buffer's room (the header
                    // section most likely ends there), so once the length is known the
                    // message takes just its own bytes and what follows it is framed
                    // straight from `data`, not grown into this buffer and copied out again.
                    None => match self.buf.capacity() - self.buf.len() {
                        0 => data.len(),
                        room => room.min(data.len()),
                    },
                };
                let (now, rest) = data.split_at(take);
                self.push(now);
                data = rest;
                while let Some(f) = self.next_frame()? {
                    on_frame(f);
                }
                continue;
            }
            let (frame, used) = match scan_frame(data, &self.limits, 0)? {
                Scanned::Ping => (Frame::Ping, CRLFCRLF.len()),
                Scanned::Pong => (Frame::Pong, CRLF.len()),
                Scanned::Message { len } => {
                    crate::copies::note(crate::copies::CopySite::Message, len);
                    self.last_len = len;
                    (Frame::Message(ahead::copy_of(&data[..len])), len)
                }
                Scanned::Incomplete { scanned, len } => {
                    // The start of a message: buffered, with room for all of it at once (its
                    // length unknown until its header section is whole: the last one's).
                    let room = len.unwrap_or(self.last_len).max(data.len() + more);
                    self.buf.clear();
                    self.start = 0;
                    if self.buf.capacity() < room {
                        // Whatever small buffer was here goes back; the message gets one of
                        // the recycled ones.
                        msgbuf::recycle(std::mem::replace(&mut self.buf, ahead::take(room)));
                    }
                    self.push(data);
                    self.scanned = scanned;
                    self.want = len;
                    self.rescan = len.is_none();
                    return Ok(());
                }
            };
            on_frame(frame);
            data = data.get(used..).unwrap_or_default();
        }
        Ok(())
    }

    /// Makes room for `n` more bytes at once, so bytes read in pieces (a socket's ring
    /// buffer wraps) cost one allocation.
    pub fn reserve(&mut self, n: usize) {
        if self.buf.capacity() == 0 {
            self.buf = ahead::take(n);
        }
        self.buf.reserve(n);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        let data = self.buf.get(self.start..).unwrap_or_default();
        if data.is_empty() && self.want.is_none() {
            // Nothing buffered: what scanning it would say, without the call (`feed` asks
            // after every message it hands over from the buffer).
            self.scanned = 0;
            return Ok(None);
        }
        let resume = if std::mem::take(&mut self.rescan) {
            0
        } else {
            self.scanned
        };
        let total = match self.want {
            Some(total) => total,
            None => match scan_frame(data, &self.limits, resume)? {
                Scanned::Ping => {
                    self.consumed(CRLFCRLF.len());
                    return Ok(Some(Frame::Ping));
                }
                Scanned::Pong => {
                    self.consumed(CRLF.len());
                    return Ok(Some(Frame::Pong));
                }
                Scanned::Message { len } => len,
                Scanned::Incomplete { scanned, len } => {
                    self.scanned = scanned;
                    self.want = len;
                    if let Some(total) = len {
                        // The rest of the message arrives in one allocation's room.
                        self.buf.reserve(total.saturating_sub(data.len()));
                    }
                    return Ok(None);
                }
            },
        };
        if data.len() < total {
            return Ok(None);
        }
        self.last_len = total;
        let msg = if self.start == 0 && total == self.buf.len() {
            // The usual case, one message and nothing after it: hand over the buffer itself.
            self.want = None;
            self.scanned = 0;
            self.rescan = false;
            std::mem::take(&mut self.buf)
        } else if self.start == 0
            && self.buf.len() - total <= total
            // (Buffers come in power-of-two size classes of at least `MIN_KEPT` bytes.)
            && self.buf.capacity() <= 2 * total.max(msgbuf::MIN_KEPT)
        {
            // The message is the front of the buffer and the start of the next one follows:
            // those (fewer) bytes move to a new buffer with a message's room, and the buffer
            // goes as the message. Copying the message out instead would leave the next one at
            // an offset, and so every later message of the connection copied out again.
            let rest = self.buf.get(total..).unwrap_or_default();
            crate::copies::note(crate::copies::CopySite::FramerBuffer, rest.len());
            let mut next = ahead::take(total.max(rest.len()));
            next.extend_from_slice(rest);
            let mut m = std::mem::replace(&mut self.buf, next);
            m.truncate(total);
            self.consumed(0);
            m
        } else {
            crate::copies::note(crate::copies::CopySite::Message, total);
            let m = ahead::copy_of(&data[..total]);
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
        self.rescan = false;
    }

    /// Frees the buffer's memory when nothing is pending, unless it is small (keep-alives),
    /// so an idle connection holds none.
    pub fn release_idle(&mut self) {
        if self.pending() == 0 {
            if self.buf.capacity() > 256 {
                msgbuf::recycle(std::mem::take(&mut self.buf));
            } else {
                self.buf.clear();
            }
            self.start = 0;
            self.scanned = 0;
            self.want = None;
            self.rescan = false;
        }
    }
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
    fn folded_continuation_is_not_a_content_length() {
        // RFC 3261 7.3.1: " l: 7" continues Subject; the message has a 2-byte body.
        let m = b"MESSAGE sip:a@b SIP/2.0\r\nSubject: x\r\n l: 7\r\nContent-Length: 2\r\n\r\nhi";
        let mut f = framer();
        f.push(m);
        f.push(OPT);
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(m.to_vec()))));
        assert_eq!(f.next_frame(), Ok(Some(Frame::Message(OPT.to_vec()))));
    }

    #[test]
    fn errors() {
        let mut f = framer();
        f.push(b"INVITE x SIP/2.0\r\nContent-Length: x1\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BadContentLength));
        let mut f = framer();
        f.push(b"A\r\nContent-Length: 1\r\nl: 2\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::ConflictingContentLength));
        let mut f = framer();
        f.push(b"A\r\nContent-Length: 1\r\nl: 1\r\n\r\nx");
        assert_eq!(
            f.next_frame(),
            Ok(Some(Frame::Message(
                b"A\r\nContent-Length: 1\r\nl: 1\r\n\r\nx".to_vec()
            )))
        );
        let mut f = SipFramer::new(64, 10);
        f.push(b"A\r\nContent-Length: 11\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::BodyTooLong(11)));
        let mut f = SipFramer::new(16, 10);
        f.push(&[b'a'; 19]);
        assert_eq!(f.next_frame(), Ok(None));
        f.push(b"a");
        assert_eq!(f.next_frame(), Err(FramingError::HeadTooLong(16)));
    }

    /// The frames of a whole stream by `scan_frame` from each frame's first byte, never
    /// resumed: the reference `feed` must agree with however the stream is cut.
    fn frames_of_whole(stream: &[u8], lim: &FrameLimits) -> (Vec<Frame>, bool) {
        use akagate_proto::sipscan::{scan_frame, Scanned};
        let (mut out, mut rest) = (Vec::new(), stream);
        loop {
            let (frame, used) = match scan_frame(rest, lim, 0) {
                Err(_) => return (out, true),
                Ok(Scanned::Incomplete { .. }) => return (out, false),
                Ok(Scanned::Ping) => (Frame::Ping, 4),
                Ok(Scanned::Pong) => (Frame::Pong, 2),
                Ok(Scanned::Message { len }) => (Frame::Message(rest[..len].to_vec()), len),
            };
            out.push(frame);
            rest = &rest[used..];
        }
    }

    /// Random streams of messages (heads of 1 to 12 lines, `Content-Length` or `l` in any
    /// place, folds, keep-alives, a bad length now and then) cut at random points, each
    /// piece fed with a random count of bytes said to wait behind it: the same frames, and
    /// the same error, as the whole stream scanned from each frame's start. Heads cut once
    /// are rescanned from their start, heads cut many times resumed: both must agree.
    #[test]
    fn feed_agrees_with_the_whole_stream_however_it_is_cut() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1)) as usize
        };
        for round in 0..3000 {
            let mut stream = Vec::new();
            for _ in 0..1 + rnd(6) {
                match rnd(10) {
                    0 => stream.extend_from_slice(b"\r\n\r\n"),
                    1 => stream.extend_from_slice(b"\r\n"),
                    _ => {
                        let body = rnd(300);
                        let mut m = b"SIP/2.0 200 OK\r\n".to_vec();
                        let lines = rnd(12);
                        let at = rnd(lines as u64 + 1);
                        for i in 0..=lines {
                            if i == at {
                                let name = ["Content-Length", "l", "content-LENGTH", "L"][rnd(4)];
                                let value = if rnd(200) == 0 {
                                    "x".to_string()
                                } else {
                                    body.to_string()
                                };
                                m.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                            }
                            if i < lines {
                                let name = ["Call-ID", "CSeq", "Contact", "Via", "From", "Subject"]
                                    [rnd(6)];
                                m.extend_from_slice(
                                    format!("{name}: {}\r\n", "v".repeat(rnd(90))).as_bytes(),
                                );
                                if rnd(8) == 0 {
                                    m.extend_from_slice(b" l: 9\r\n");
                                }
                            }
                        }
                        m.extend_from_slice(b"\r\n");
                        m.extend(std::iter::repeat_n(b'b', body));
                        stream.extend_from_slice(&m);
                    }
                }
            }
            let lim = FrameLimits {
                max_head: 8192,
                max_body: 65536,
            };
            let (want, want_err) = frames_of_whole(&stream, &lim);
            let mut f = SipFramer::new(lim.max_head, lim.max_body);
            let (mut got, mut err, mut at) = (Vec::new(), false, 0);
            while at < stream.len() && !err {
                let n = 1 + match rnd(4) {
                    0 => rnd(8),
                    1 => rnd(64),
                    _ => rnd(1400),
                };
                let piece = &stream[at..(at + n).min(stream.len())];
                at += piece.len();
                let more = rnd(2000).min(stream.len() - at);
                err = f.feed(piece, more, |fr| got.push(fr)).is_err();
            }
            assert_eq!(err, want_err, "round {round}");
            assert_eq!(got, want, "round {round}");
        }
    }

    /// Feeds `chunks` one by one, returning the frames and the copies counted.
    fn feed_all(f: &mut SipFramer, chunks: &[&[u8]]) -> (Vec<Frame>, crate::copies::CopyTally) {
        let _ = crate::copies::take();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, 0, |fr| out.push(fr)).unwrap();
        }
        (out, crate::copies::take())
    }

    /// A message whose header section straddles two reads takes from the second read only
    /// what fits its buffer until its length is known, then just its own bytes: the messages
    /// after it are cut straight from the read, every byte copied once. (Appending the whole
    /// read grew the buffer and copied the later messages out of it again: twice.)
    #[test]
    fn a_straddling_header_does_not_pull_the_next_messages_into_its_buffer() {
        use crate::copies::CopySite;
        let body = [b'x'; 300];
        let msg = [
            b"MESSAGE sip:a SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.2:5060\r\nContent-Length: 300\r\n\r\n"
                .as_slice(),
            &body,
        ]
        .concat();
        let stream = [msg.clone(), msg.clone(), msg.clone()].concat();
        let mut f = framer();
        let (frames, c) = feed_all(&mut f, &[&stream[..20], &stream[20..]]);
        assert_eq!(frames, vec![Frame::Message(msg); 3]);
        let copied = c.bytes(CopySite::FramerBuffer) + c.bytes(CopySite::Message);
        assert_eq!(copied, stream.len() as u64, "{c:?}");
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn feed_cuts_whole_messages_where_they_lie_and_buffers_only_a_partial_one() {
        use crate::copies::CopySite;
        let mut f = framer();
        let all = [REG, b"\r\n\r\n", OPT, REG].concat();
        let cut = REG.len() + 4 + OPT.len() + 10;
        let (frames, c) = feed_all(&mut f, &[&all[..cut], &all[cut..]]);
        let expect = vec![
            Frame::Message(REG.to_vec()),
            Frame::Ping,
            Frame::Message(OPT.to_vec()),
            Frame::Message(REG.to_vec()),
        ];
        assert_eq!(frames, expect);
        // REG and OPT copied once into their messages; the last REG buffered in two pieces
        // and handed over as its buffer.
        assert_eq!(c.bytes(CopySite::Message), (REG.len() + OPT.len()) as u64);
        assert_eq!(c.bytes(CopySite::FramerBuffer), REG.len() as u64);
        assert_eq!(f.pending(), 0);
        // Byte by byte, and a header section split before its length is known.
        let (frames, _) = feed_all(&mut f, &REG.chunks(1).collect::<Vec<_>>());
        assert_eq!(frames, vec![Frame::Message(REG.to_vec())]);
        let (frames, _) = feed_all(&mut f, &[&all[..5], &all[5..]]);
        assert_eq!(frames, expect);
    }

    /// A message cut inside its header section is buffered with the room of the last
    /// message, so the buffer is not grown (reallocated and copied) when its length is known.
    #[test]
    fn a_split_header_gets_the_last_messages_room() {
        let mut f = framer();
        let (frames, _) = feed_all(&mut f, &[REG]);
        assert_eq!(frames.len(), 1);
        f.feed(&REG[..10], 0, |_| panic!("no frame")).unwrap();
        assert!(f.buf.capacity() >= REG.len(), "{}", f.buf.capacity());
        let before = f.buf.as_ptr();
        f.feed(&REG[10..30], 0, |_| panic!("no frame")).unwrap();
        assert_eq!(f.buf.as_ptr(), before, "grown while the header arrived");
        let mut got = Vec::new();
        f.feed(&REG[30..], 0, |m| got.push(m)).unwrap();
        assert_eq!(got, vec![Frame::Message(REG.to_vec())]);
    }

    /// A buffered message followed by the start of the next: the buffer goes as the message
    /// and the next one's bytes start a buffer of their own (at its front, so it too can be
    /// handed over whole rather than copied out).
    #[test]
    fn the_next_messages_start_moves_instead_of_the_message() {
        let mut f = framer();
        f.feed(&REG[..10], 0, |_| panic!("no frame")).unwrap();
        let mut got = Vec::new();
        f.feed(&[&REG[10..], &REG[..12]].concat(), 0, |m| got.push(m))
            .unwrap();
        assert_eq!(got, vec![Frame::Message(REG.to_vec())]);
        assert_eq!((f.start, f.pending()), (0, 12));
        let _ = crate::copies::take();
        f.feed(&REG[12..], 0, |m| got.push(m)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Frame::Message(REG.to_vec()));
        // Handed over as its buffer: no message copy.
        assert_eq!(
            crate::copies::take().bytes(crate::copies::CopySite::Message),
            0
        );
    }

    /// Complete messages are framed into recycled buffers (`akagate_proto::msgbuf`), both
    /// when cut straight out of a segment and when handed over as the framer's buffer.
    #[test]
    fn messages_are_framed_into_recycled_buffers() {
        for split in [None, Some(10)] {
            // The queue is first in, first out and shared with the other tests of the
            // process, which may take some of ours at the same time: several buffers queued,
            // any of them comes out within a queue's worth of messages.
            // Of the capacity the framer takes for this message (as every recycled buffer of
            // it), so the other tests find the queue as they would without this one.
            let room = REG.len().max(msgbuf::MIN_KEPT).next_power_of_two();
            let mine: Vec<Vec<u8>> = (0..32).map(|_| Vec::with_capacity(room)).collect();
            let ptrs: Vec<*const u8> = mine.iter().map(|b| b.as_ptr()).collect();
            for b in mine {
                msgbuf::recycle(b);
            }
            let mut f = framer();
            let mut seen = false;
            let mut held = Vec::new();
            for _ in 0..2 * msgbuf::CAPACITY {
                let mut got = Vec::new();
                match split {
                    None => f.feed(REG, 0, |m| got.push(m)).unwrap(),
                    Some(at) => {
                        f.feed(&REG[..at], 0, |m| got.push(m)).unwrap();
                        f.feed(&REG[at..], 0, |m| got.push(m)).unwrap();
                    }
                }
                let [Frame::Message(m)] = &got[..] else {
                    panic!("{got:?}")
                };
                assert_eq!(m, REG);
                if ptrs.contains(&m.as_ptr()) {
                    seen = true;
                    break;
                }
                // Held (then freed, not recycled), so the queue does not hand it out again.
                held.push(got);
            }
            assert!(seen, "no recycled buffer was used (split {split:?})");
        }
    }

    #[test]
    fn feed_refuses_what_push_refuses() {
        let mut f = framer();
        let bad = b"INVITE x SIP/2.0\r\nContent-Length: x1\r\n\r\n";
        assert_eq!(f.feed(bad, 0, |_| {}), Err(FramingError::BadContentLength));
        let mut f = framer();
        f.feed(&bad[..10], 0, |_| panic!("no frame")).unwrap();
        assert_eq!(
            f.feed(&bad[10..], 0, |_| {}),
            Err(FramingError::BadContentLength)
        );
    }

    /// The SIMD walk hands `note_lf` the LFs it acts on, in order: the same `HeadScan` as
    /// `proto`'s walk, and the same `scan_frame` answer, on random bytes dense in CR, LF,
    /// `c`/`C`/`l`/`L` (heads, blank lines and candidates at every offset and block
    /// boundary) at every length and start of the walk, and on real heads.
    #[test]
    fn simd_head_walk_agrees_with_protos_walk() {
        use akagate_proto::sipscan::scan_frame as reference;
        #[cfg(target_arch = "x86_64")]
        assert!(
            !std::is_x86_feature_detected!("avx512bw") || {
                let mut s = HeadScan::default();
                // SAFETY: the CPU has AVX-512BW (checked on the line above).
                unsafe { walk_head_avx512(b"ab\r\nl: 1\r\n\r\n", 0, &mut s) }
            },
            "the AVX-512 walk did not find a head's end"
        );
        #[cfg(target_arch = "x86_64")]
        assert!(
            !std::is_x86_feature_detected!("avx2") || {
                let mut s = HeadScan::default();
                let head = b"REGISTER sip:x SIP/2.0\r\nl: 1\r\nVia: a\r\n\r\nx";
                // SAFETY: the CPU has AVX2 (checked on the line above).
                unsafe { walk_head_avx2(head, 0, &mut s) }
            },
            "the AVX2 walk did not find a head's end"
        );
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        const ALPHABET: &[u8] = b"\r\n\r\n\r\nclCLa: 12\t";
        let lim = FrameLimits {
            max_head: 150,
            max_body: 65536,
        };
        let (mut ends, mut candidates, mut avx2_walks) = (0, 0, 0);
        for _ in 0..4000 {
            let n = rnd(200);
            let sparse = rnd(3) == 0;
            let buf: Vec<u8> = (0..n)
                .map(|_| match sparse {
                    true if rnd(8) > 0 => b'v',
                    _ => ALPHABET[rnd(ALPHABET.len() as u64)],
                })
                .collect();
            for from in 0..=n + 1 {
                let (mut a, mut b) = (HeadScan::default(), HeadScan::default());
                let found = HeadScan::walk(&buf, from, &mut a);
                assert_eq!(walk_head(&buf, from, &mut b), found, "{buf:?} from {from}");
                assert_eq!(a, b, "{buf:?} from {from}");
                // The AVX-512 walk itself on short walks too (`walk_head` leaves those to
                // the SWAR walk): its masked last block.
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx512bw") {
                    let mut c = HeadScan::default();
                    // SAFETY: the CPU has AVX-512BW (checked on the line above).
                    let f = unsafe { walk_head_avx512(&buf, from, &mut c) };
                    assert_eq!((f, &c), (found, &a), "{buf:?} from {from}");
                }
                // The AVX2 walk itself likewise: its last block moved back, its tail.
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    let mut c = HeadScan::default();
                    // SAFETY: the CPU has AVX2 (checked on the line above).
                    let f = unsafe { walk_head_avx2(&buf, from, &mut c) };
                    assert_eq!((f, &c), (found, &a), "{buf:?} from {from}");
                    avx2_walks += 1;
                }
                ends += usize::from(found);
                candidates += usize::from(a != HeadScan::default() && !found);
            }
            for resume in [0, rnd(n as u64 + 1)] {
                assert_eq!(
                    scan_frame(&buf, &lim, resume),
                    reference(&buf, &lim, resume),
                    "{buf:?} resume {resume}"
                );
            }
        }
        // The walks ended at heads and noted candidates often enough to test something.
        assert!(ends > 10_000 && candidates > 1_000, "{ends} {candidates}");
        #[cfg(target_arch = "x86_64")]
        assert!(!std::is_x86_feature_detected!("avx2") || avx2_walks > 100_000);
        let msg = include_bytes!("../../tests/fixtures/stack/register_boghe_openims.sip");
        for cut in 0..=msg.len() {
            assert_eq!(
                scan_frame(&msg[..cut], &FrameLimits::default(), 0),
                reference(&msg[..cut], &FrameLimits::default(), 0)
            );
        }
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
