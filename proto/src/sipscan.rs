//! The one SIP header-line and Content-Length scanner (RFC 3261 7.3.1, 7.5, 18.3, 20.14).
//!
//! Both the fast path's per-connection stream framer and the slowpath's parser use these
//! functions, so they cannot disagree on where a header line or a message ends. Header lines
//! honour folding: a line that starts with SP or HTAB continues the one before it, so a folded
//! `Subject: x\r\n l: 7` is part of `Subject`, never a compact `Content-Length`.
//!
//! [`scan_frame`] is the framing rule for stream transports: RFC 5626 keep-alives between
//! messages, then a header section up to the blank line and exactly `Content-Length` body
//! bytes. It looks only at what framing needs. A header line it cannot split is skipped
//! there (the full parser rejects the message with a `400` later), but two `Content-Length`
//! values that differ leave no way to find the next message, so that is an error.

/// CRLF, the end of every line.
pub const CRLF: &[u8] = b"\r\n";
/// The blank line ending a header section; alone between messages it is a keep-alive ping.
pub const CRLFCRLF: &[u8] = b"\r\n\r\n";
/// Largest Content-Length accepted (RFC 3261 20.14 sets no bound; a body over 4 GiB is
/// not a SIP message).
pub const MAX_CONTENT_LENGTH: usize = u32::MAX as usize;

/// Why bytes cannot be scanned as SIP; on a stream the connection cannot be resynchronised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A header line without a colon, with an empty or non-token name, or with a bare CR or
    /// LF in its value.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A NUL byte in a header line other than a quoted-pair's (see [`has_bare_nul`]).
    #[error("NUL byte in a header line")]
    NulInHeader,
    /// `Content-Length` is not `1*DIGIT` or is above [`MAX_CONTENT_LENGTH`].
    #[error("malformed Content-Length value")]
    BadContentLength,
    /// Two `Content-Length` headers with different values.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// A message on a stream transport without `Content-Length` (mandatory, RFC 3261 18.3).
    #[error("SIP message on a stream without Content-Length")]
    MissingContentLength,
    /// The header section is longer than [`FrameLimits::max_head`] without ending.
    #[error("SIP header section longer than {0} bytes")]
    HeadTooLong(usize),
    /// The announced body is longer than [`FrameLimits::max_body`].
    #[error("SIP body of {0} bytes exceeds the bound")]
    BodyTooLong(usize),
}

/// Size limits for one message on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest header section (start line to the last header line, without the blank line).
    pub max_head: usize,
    /// Largest body.
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

/// What the front of a stream buffer holds, by [`scan_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned {
    /// A complete message of `len` bytes (header section, blank line, body).
    Message {
        /// Bytes of the whole message.
        len: usize,
    },
    /// A CRLFCRLF keep-alive ping of 4 bytes: consume it and answer CRLF (RFC 5626 4.4.1).
    Ping,
    /// A lone CRLF (a pong, or CRLF before a start line, RFC 3261 7.5) of 2 bytes: consume it.
    Pong,
    /// More bytes are needed.
    Incomplete {
        /// How far the search for the end of the header section got; pass it back as
        /// `resume` so a message arriving in small pieces is scanned once.
        scanned: usize,
        /// The whole message's length once its header section is complete: the caller may
        /// wait for that many bytes without scanning again.
        len: Option<usize>,
    },
}

/// Position of the first CRLF in `b` at or after `from`.
pub fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        i += memchr::memchr(b'\r', b.get(i..)?)?;
        if b.get(i + 1) == Some(&b'\n') {
            return Some(i);
        }
        i += 1;
    }
}

/// Position of the CRLFCRLF that ends the header section (the index of its first CR).
pub fn find_head_end(b: &[u8]) -> Option<usize> {
    find_head_end_from(b, 0)
}

/// [`find_head_end`], starting the search at `from` (a line boundary or any earlier offset).
/// The first CRLFCRLF at or after `from` — what walking the CRLFs one by one finds, since no
/// CRLFCRLF can start inside a CRLF — in one vectorised pass (issue 11: the per-line walk
/// was a fifth of the worker's time at 1 KiB messages).
fn find_head_end_from(b: &[u8], from: usize) -> Option<usize> {
    static BLANK_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(CRLFCRLF));
    Some(from + BLANK_LINE.find(b.get(from..)?)?)
}

/// Iterator over the logical header lines of a header section, folded continuation lines
/// joined into the line they continue (their CRLF and leading white space stay in the slice).
#[derive(Debug, Clone)]
pub struct HeaderLines<'a> {
    rest: &'a [u8],
}

impl<'a> HeaderLines<'a> {
    /// `section` starts after the start line's CRLF and ends before the blank line.
    pub fn new(section: &'a [u8]) -> Self {
        HeaderLines { rest: section }
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let mut i = 0;
        loop {
            match find_crlf(b, i) {
                Some(p) if matches!(b.get(p + 2), Some(b' ' | b'\t')) => i = p + 2,
                Some(p) => {
                    self.rest = b.get(p + 2..).unwrap_or_default();
                    return Some(&b[..p]);
                }
                None => {
                    self.rest = &[];
                    return Some(b);
                }
            }
        }
    }
}

/// The `token` characters (RFC 3261 25.1), one entry per byte: a lookup instead of a
/// chain of comparisons (tokens are checked byte by byte all over a message).
const TOKEN_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    t
};

/// True for a `token` character (RFC 3261 25.1).
#[inline]
pub fn is_token_char(b: u8) -> bool {
    TOKEN_CHAR[usize::from(b)]
}

/// Splits a logical header line into (name, value); refuses lines without a colon or with a
/// bad name, CR/LF that are not part of a fold (RFC 3261 7.3.1) and bare NUL bytes
/// ([`has_bare_nul`]). The value is untrimmed.
pub fn split_header_line(line: &[u8]) -> Result<(&[u8], &[u8]), ScanError> {
    if has_bare_nul(line) {
        return Err(ScanError::NulInHeader);
    }
    split_nul_checked_header_line(line)
}

/// [`split_header_line`] for a line of a header section that [`has_bare_nul`] already
/// cleared as a whole (a line starts after a CRLF, so its escapes read the same): the same
/// answer without scanning the line for NUL again.
pub fn split_nul_checked_header_line(line: &[u8]) -> Result<(&[u8], &[u8]), ScanError> {
    let colon = memchr::memchr(b':', line).ok_or(ScanError::BadHeaderLine)?;
    let mut name = &line[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    if name.is_empty() || !name.iter().all(|&b| is_token_char(b)) {
        return Err(ScanError::BadHeaderLine);
    }
    let value = &line[colon + 1..];
    for i in memchr::memchr2_iter(b'\r', b'\n', value) {
        let ok = match value[i] {
            b'\r' => value.get(i + 1) == Some(&b'\n'),
            _ => i > 0 && value[i - 1] == b'\r' && matches!(value.get(i + 1), Some(b' ' | b'\t')),
        };
        if !ok {
            return Err(ScanError::BadHeaderLine);
        }
    }
    Ok((name, value))
}

/// True if `b` holds a NUL byte that is not escaped as a quoted-pair. RFC 3261 25.1 allows
/// %x00 in a header section only as `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)` inside
/// a quoted string (RFC 4475 3.1.1.2 is a valid message with one); anywhere else a NUL is
/// refused, since C-string handling downstream would cut the value short there.
pub fn has_bare_nul(b: &[u8]) -> bool {
    memchr::memchr_iter(0, b).any(|i| {
        let escapes = b[..i].iter().rev().take_while(|&&c| c == b'\\').count();
        escapes % 2 == 0
    })
}

/// True for the `Content-Length` header name or its compact form `l` (RFC 3261 7.3.3).
pub fn is_content_length_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")
}

/// Parses a Content-Length value (`1*DIGIT`, RFC 3261 20.14) with the surrounding linear
/// white space (folds included) trimmed.
pub fn parse_content_length(value: &[u8]) -> Result<usize, ScanError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ScanError::BadContentLength);
    }
    digits
        .iter()
        .try_fold(0usize, |n, &d| {
            n.checked_mul(10)?
                .checked_add(usize::from(d - b'0'))
                .filter(|&n| n <= MAX_CONTENT_LENGTH)
        })
        .ok_or(ScanError::BadContentLength)
}

/// The body length a header section announces for a stream. `head` runs from the start line
/// to the blank line (which it may include). Lines that cannot be split are skipped here (the
/// parser answers them); equal repeated values are accepted, different ones are not.
pub fn stream_content_length(head: &[u8]) -> Result<usize, ScanError> {
    let head = match find_head_end(head) {
        Some(end) => &head[..end],
        None => head,
    };
    section_content_length(head)
}

/// [`stream_content_length`] of a head already cut before its blank line. Only lines that
/// can name `Content-Length` or `l` are split: a logical line starts at the section's start
/// or after a CRLF not followed by SP/HTAB (a fold), and begins with its name, so a line
/// whose first byte is not `c`, `C`, `l` or `L` cannot be one — one vectorised pass over the
/// LFs finds the candidates instead of splitting every line.
fn section_content_length(head: &[u8]) -> Result<usize, ScanError> {
    let Some(first) = find_crlf(head, 0) else {
        return Err(ScanError::MissingContentLength);
    };
    let section = &head[first + 2..];
    let starts = names_content_length(section)
        .then_some(0)
        .into_iter()
        .chain(
            memchr::memchr_iter(b'\n', section)
                .filter(|&lf| {
                    lf > 0
                        && section[lf - 1] == b'\r'
                        && names_content_length(section.get(lf + 1..).unwrap_or_default())
                })
                .map(|lf| lf + 1),
        );
    let mut found = None;
    for start in starts {
        let Some(line) = HeaderLines::new(&section[start..]).next() else {
            continue;
        };
        let Ok((name, value)) = split_header_line(line) else {
            continue;
        };
        if !is_content_length_name(name) {
            continue;
        }
        let n = parse_content_length(value)?;
        match found {
            Some(prev) if prev != n => return Err(ScanError::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    found.ok_or(ScanError::MissingContentLength)
}

/// True if a header line starting at `line` may be a Content-Length header: its name,
/// `Content-Length` or `l` in any case, is followed by white space or the colon. Any line
/// whose [`split_header_line`] name [`is_content_length_name`] passes, so lines that fail
/// are skipped before their (costlier) split.
fn names_content_length(line: &[u8]) -> bool {
    const LONG: &[u8] = b"content-length";
    let name_len = match line.first() {
        Some(b'l' | b'L') => 1,
        Some(b'c' | b'C') if is_content_length_prefix(line) => LONG.len(),
        _ => return false,
    };
    matches!(line.get(name_len), Some(b' ' | b'\t' | b':'))
}

/// True if `line` starts with `Content-Length` in any case: two overlapping eight-byte words
/// compared at once, each letter's case bit set (`X | 0x20` is `c` only for `C` and `c`; the
/// `-` is compared as it is), instead of a byte-by-byte loop that ran through most of every
/// `Content-Type`.
fn is_content_length_prefix(line: &[u8]) -> bool {
    // "content-" and "t-length", with the case bit of their letters.
    const A: u64 = u64::from_le_bytes(*b"content-");
    const A_CASE: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0]);
    const B: u64 = u64::from_le_bytes(*b"t-length");
    const B_CASE: u64 = u64::from_le_bytes([0x20, 0, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20]);
    let word = |r: core::ops::Range<usize>| {
        line.get(r)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    match (word(0..8), word(6..14)) {
        (Some(a), Some(b)) => a | A_CASE == A && b | B_CASE == B,
        _ => false,
    }
}

/// Content-Length candidate lines [`HeadScan`] keeps; a head with more lines starting with
/// `c`/`C`/`l`/`L` is scanned again by [`section_content_length`].
const HEAD_CANDIDATES: usize = 16;

/// Where a header section ends and which of its lines may name Content-Length, found in one
/// pass over its LFs (issue 11: the blank line by `memmem`, then the line starts by
/// `memchr_iter`, were two passes and a call per LF). A CRLFCRLF is an LF with CR before it
/// and CR LF after it; a logical line starts after a CRLF, so a candidate line is an LF with
/// CR before it and `c`, `C`, `l` or `L` after it — the same candidates
/// [`section_content_length`] finds (checked against it, and against splitting every line,
/// by the tests).
///
/// The walk over the LFs is [`HeadScan::walk`] (eight bytes at a time) for [`scan_frame`];
/// [`scan_frame_by`] takes another walker (the fast path's, over SIMD masks, where `unsafe`
/// is allowed), which decides nothing itself: it hands LFs to [`HeadScan::note_lf`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadScan {
    /// Index of the first CR of the first CRLFCRLF at or after the walk's start.
    head_end: usize,
    /// Starts of candidate lines before `head_end`, in order (`n` of them; more than
    /// [`HEAD_CANDIDATES`]: `overflow`).
    starts: [u32; HEAD_CANDIDATES],
    n: usize,
    overflow: bool,
}

impl HeadScan {
    /// The walk [`scan_frame`] uses: every LF of `b` at or after `from`, in order, to
    /// [`HeadScan::note_lf`] until it answers true, eight bytes at a time. True if the walk
    /// found the head's end.
    pub fn walk(b: &[u8], from: usize, s: &mut HeadScan) -> bool {
        const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
        const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
        let Some(rest) = b.get(from..) else {
            return false;
        };
        let mut words = rest.chunks_exact(8);
        let mut base = from;
        for w in words.by_ref() {
            let Ok(w) = <[u8; 8]>::try_from(w) else {
                return false;
            };
            let x = u64::from_le_bytes(w) ^ LFS;
            // 0x80 in each byte of `x` that is zero (an LF), exactly (no borrow between bytes).
            let mut m = !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7);
            while m != 0 {
                let lf = base + (m.trailing_zeros() / 8) as usize;
                if s.note_lf(b, from, lf) {
                    return true;
                }
                m &= m - 1;
            }
            base += 8;
        }
        for (i, &c) in words.remainder().iter().enumerate() {
            if c == b'\n' && s.note_lf(b, from, base + i) {
                return true;
            }
        }
        false
    }

    /// One LF of `b` at `lf` (a walk starting at `from`): true if it ends the walk (a
    /// CRLFCRLF starting at `lf - 1 >= from`), else notes a candidate line after it. A walker
    /// hands it the LFs at or after `from` in increasing order; it may skip an LF only where
    /// this does nothing: the byte before it is not CR, or the byte after it is none of CR,
    /// `c`, `C`, `l`, `L`.
    #[inline]
    pub fn note_lf(&mut self, b: &[u8], from: usize, lf: usize) -> bool {
        if lf == 0 || b.get(lf - 1) != Some(&b'\r') {
            return false;
        }
        match (b.get(lf + 1), b.get(lf + 2)) {
            (Some(b'\r'), Some(b'\n')) if lf > from => {
                self.head_end = lf - 1;
                true
            }
            (Some(b'c' | b'C' | b'l' | b'L'), _) => {
                match self.starts.get_mut(self.n) {
                    Some(slot) => *slot = (lf + 1) as u32,
                    None => self.overflow = true,
                }
                self.n += 1;
                false
            }
            _ => false,
        }
    }

    /// [`section_content_length`] of `head` (the buffer cut at `head_end`, walked from its
    /// start), from the candidates found on the way.
    fn content_length(&self, head: &[u8]) -> Result<usize, ScanError> {
        if self.overflow {
            return section_content_length(head);
        }
        let mut found = None;
        for &start in self.starts.iter().take(self.n) {
            let line = head.get(start as usize..).unwrap_or_default();
            if !names_content_length(line) {
                continue;
            }
            let n = match plain_content_length(line) {
                Some(n) => n,
                None => match general_content_length(line)? {
                    Some(n) => n,
                    None => continue,
                },
            };
            match found {
                Some(prev) if prev != n => return Err(ScanError::ConflictingContentLength),
                _ => found = Some(n),
            }
        }
        found.ok_or(ScanError::MissingContentLength)
    }
}

/// The value of the candidate line at `line`'s start (one [`names_content_length`] passed)
/// by the rule: the logical line, split, its name checked, its value parsed; `None` if it
/// is not a Content-Length line that splits.
fn general_content_length(line: &[u8]) -> Result<Option<usize>, ScanError> {
    let Some(line) = HeaderLines::new(line).next() else {
        return Ok(None);
    };
    let Ok((name, value)) = split_header_line(line) else {
        return Ok(None);
    };
    if !is_content_length_name(name) {
        return Ok(None);
    }
    parse_content_length(value).map(Some)
}

/// The usual Content-Length line, `name *WSP ":" *WSP 1*DIGIT *WSP` then CRLF not followed
/// by SP/HTAB (no fold) or the head's end, read in one pass: what
/// [`general_content_length`] answers for it (a NUL-free line, its name the one before the
/// colon, a value without CR/LF, digits trimmed) without the line's five searches. `None`
/// for any other line (folded, odd bytes, a value over [`MAX_CONTENT_LENGTH`]): the
/// general rule answers those. `line` starts with a name [`names_content_length`] passed.
fn plain_content_length(line: &[u8]) -> Option<usize> {
    let mut i = match line.first()? {
        b'l' | b'L' => 1,
        _ => 14,
    };
    let skip_wsp = |mut i: usize| {
        while matches!(line.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    i = skip_wsp(i);
    if line.get(i) != Some(&b':') {
        return None;
    }
    i = skip_wsp(i + 1);
    let digits = i;
    let mut n = 0usize;
    while let Some(&d @ b'0'..=b'9') = line.get(i) {
        n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
        i += 1;
    }
    if i == digits || n > MAX_CONTENT_LENGTH {
        return None;
    }
    i = skip_wsp(i);
    match (line.get(i), line.get(i + 1), line.get(i + 2)) {
        (None, _, _) | (Some(b'\r'), Some(b'\n'), None) => Some(n),
        (Some(b'\r'), Some(b'\n'), Some(next)) if !matches!(next, b' ' | b'\t') => Some(n),
        _ => None,
    }
}

/// Inspects the front of a stream buffer: a keep-alive, a complete message, or how much is
/// missing. `resume` is the `scanned` of the previous [`Scanned::Incomplete`] for the same
/// buffer front (0 the first time).
pub fn scan_frame(buf: &[u8], limits: &FrameLimits, resume: usize) -> Result<Scanned, ScanError> {
    scan_frame_by(buf, limits, resume, HeadScan::walk)
}

/// [`scan_frame`] with another walk over the head's LFs (see [`HeadScan::note_lf`] for what
/// it must hand over): the same answer for any walker that keeps that contract.
pub fn scan_frame_by(
    buf: &[u8],
    limits: &FrameLimits,
    resume: usize,
    walk: impl FnOnce(&[u8], usize, &mut HeadScan) -> bool,
) -> Result<Scanned, ScanError> {
    // RFC 5626 4.4.1: keep-alives only appear between messages.
    if buf.starts_with(CRLF) {
        return Ok(if buf.starts_with(CRLFCRLF) {
            Scanned::Ping
        } else if buf.len() < CRLFCRLF.len() && CRLFCRLF.starts_with(buf) {
            // "\r\n" alone or "\r\n\r" may still become a ping.
            Scanned::Incomplete {
                scanned: 0,
                len: None,
            }
        } else {
            Scanned::Pong
        });
    }
    let search_end = buf.len().min(limits.max_head + CRLFCRLF.len());
    // Resume before a CRLFCRLF that may have been split by the previous end of the buffer.
    let from = resume.min(search_end).saturating_sub(CRLFCRLF.len() - 1);
    // One pass over the LFs finds the blank line and, when it starts at the front, the
    // lines that may name Content-Length on the way (`HeadScan`).
    // Filled in place, not returned in an `Option`: the copy out of the walker's frame was
    // a load of the struct just stored, a store-forwarding stall in the worker's profile.
    let mut scan = HeadScan::default();
    if !walk(&buf[..search_end], from, &mut scan) {
        if buf.len() >= limits.max_head + CRLFCRLF.len() {
            return Err(ScanError::HeadTooLong(limits.max_head));
        }
        return Ok(Scanned::Incomplete {
            scanned: buf.len(),
            len: None,
        });
    }
    let head_end = scan.head_end;
    let head_len = head_end + CRLFCRLF.len();
    let body = if from == 0 {
        scan.content_length(&buf[..head_end])?
    } else {
        // Resumed: the lines before `from` were not walked this time.
        section_content_length(&buf[..head_end])?
    };
    if body > limits.max_body {
        return Err(ScanError::BodyTooLong(body));
    }
    let len = head_len + body;
    Ok(if buf.len() >= len {
        Scanned::Message { len }
    } else {
        // Resuming here finds the same blank line again.
        Scanned::Incomplete {
            scanned: head_end,
            len: Some(len),
        }
    })
}

/// What [`StreamFramer::next_item`] found at the front of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// One whole SIP message.
    Message(Vec<u8>),
    /// A CRLFCRLF keep-alive ping (consumed): answer it with CRLF (RFC 5626 4.4.1).
    Ping,
    /// A lone CRLF (consumed).
    Pong,
}

/// A byte stream's receive buffer cut into SIP messages by [`scan_frame`] (RFC 3261 18.3:
/// Content-Length delimits messages on a stream): bytes go in as they arrive, whole messages
/// and keep-alives come out, a message arriving in pieces is scanned once.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    resume: usize,
    limits: FrameLimits,
}

impl StreamFramer {
    /// An empty buffer with these limits.
    pub fn new(limits: FrameLimits) -> Self {
        StreamFramer {
            buf: Vec::new(),
            resume: 0,
            limits,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next message or keep-alive, `None` until more bytes arrive; an error means the
    /// stream cannot be framed any more (close it).
    pub fn next_item(&mut self) -> Result<Option<StreamItem>, ScanError> {
        Ok(Some(
            match scan_frame(&self.buf, &self.limits, self.resume)? {
                Scanned::Message { len } => {
                    let rest = self.buf.split_off(len);
                    self.resume = 0;
                    StreamItem::Message(core::mem::replace(&mut self.buf, rest))
                }
                Scanned::Ping => {
                    self.buf.drain(..4);
                    StreamItem::Ping
                }
                Scanned::Pong => {
                    self.buf.drain(..2);
                    StreamItem::Pong
                }
                Scanned::Incomplete { scanned, .. } => {
                    self.resume = scanned;
                    return Ok(None);
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng};

    #[test]
    fn token_table_is_the_token_rule() {
        for b in 0..=255u8 {
            let rule = b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                );
            assert_eq!(is_token_char(b), rule, "{b:#x}");
        }
    }

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc";

    fn scan(b: &[u8]) -> Result<Scanned, ScanError> {
        scan_frame(b, &FrameLimits::default(), 0)
    }

    #[test]
    fn nul_in_a_header_line_is_refused() {
        assert_eq!(
            split_header_line(b"Subject: a\0b"),
            Err(ScanError::NulInHeader)
        );
        assert_eq!(
            split_header_line(b"Sub\0ject: ab"),
            Err(ScanError::NulInHeader)
        );
        assert_eq!(
            split_header_line(b"To: \"a\\\\\0\" <sip:a@b>"),
            Err(ScanError::NulInHeader)
        );
        // A quoted-pair may escape NUL (RFC 3261 25.1, RFC 4475 3.1.1.2).
        assert!(split_header_line(b"To: \"NUL:\\\0\" <sip:a@b>").is_ok());
        // Framing skips the line; a NUL in Content-Length leaves the stream without one.
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\0\r\n\r\nabc";
        assert_eq!(scan(m), Err(ScanError::MissingContentLength));
        let m = b"OPTIONS sip:a@b SIP/2.0\r\nX: \0\r\nl: 3\r\n\r\nabc";
        assert_eq!(scan(m), Ok(Scanned::Message { len: m.len() }));
    }

    #[test]
    fn frames_by_content_length_at_every_cut() {
        for cut in 0..MSG.len() {
            assert!(
                matches!(scan(&MSG[..cut]), Ok(Scanned::Incomplete { .. })),
                "{cut}"
            );
        }
        assert_eq!(
            scan(&[MSG, MSG].concat()),
            Ok(Scanned::Message { len: MSG.len() })
        );
    }

    #[test]
    fn resumed_scan_finds_a_split_blank_line() {
        let lim = FrameLimits::default();
        let mut scanned = 0;
        for cut in 1..=MSG.len() {
            match scan_frame(&MSG[..cut], &lim, scanned).unwrap() {
                Scanned::Incomplete { scanned: s, .. } => scanned = s,
                Scanned::Message { len } => {
                    assert_eq!((cut, len), (MSG.len(), MSG.len()));
                    return;
                }
                other => panic!("{other:?}"),
            }
        }
        panic!("never complete");
    }

    #[test]
    fn folded_line_is_not_a_content_length() {
        // RFC 3261 7.3.1: " l: 7" continues Subject.
        let m = b"MESSAGE sip:a@b SIP/2.0\r\nSubject: x\r\n l: 7\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(scan(m), Ok(Scanned::Message { len: m.len() }));
        let m = b"MESSAGE sip:a@b SIP/2.0\r\nSubject: x\r\n l: 7\r\n\r\n";
        assert_eq!(scan(m), Err(ScanError::MissingContentLength));
        // A folded Content-Length value is still one value.
        let m = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nhi";
        assert_eq!(scan(m), Ok(Scanned::Message { len: m.len() }));
    }

    #[test]
    fn keepalives() {
        assert_eq!(scan(b"\r\n\r\n"), Ok(Scanned::Ping));
        assert!(matches!(scan(b"\r\n"), Ok(Scanned::Incomplete { .. })));
        assert!(matches!(scan(b"\r\n\r"), Ok(Scanned::Incomplete { .. })));
        assert_eq!(scan(b"\r\nOPTIONS"), Ok(Scanned::Pong));
        assert_eq!(scan(b"\r\n\rX"), Ok(Scanned::Pong));
    }

    /// Content-Length of a head by splitting every logical line after the start line: the
    /// rule as first written, the oracle of the differential tests below.
    fn content_length_by_every_line(head: &[u8]) -> Result<usize, ScanError> {
        let first = find_crlf(head, 0).ok_or(ScanError::MissingContentLength)?;
        let mut found = None;
        for line in HeaderLines::new(&head[first + 2..]) {
            let Ok((name, value)) = split_header_line(line) else {
                continue;
            };
            if is_content_length_name(name) {
                let n = parse_content_length(value)?;
                match found {
                    Some(prev) if prev != n => return Err(ScanError::ConflictingContentLength),
                    _ => found = Some(n),
                }
            }
        }
        found.ok_or(ScanError::MissingContentLength)
    }

    /// The bytes that matter to framing, for random heads: CR, LF, folds, colons, both names
    /// in any case, digits, NUL; the last four make whole lines and blank lines.
    const HEAD_PIECES: [&[u8]; 20] = [
        b"\r\n",
        b"\r",
        b"\n",
        b" ",
        b"\t",
        b":",
        b"\r\nContent-Length",
        b"content-length",
        b"\r\nl",
        b"L",
        b"C",
        b": 7",
        b"12",
        b"Via",
        b"x",
        b"\0",
        b"\r\nCall-ID: a",
        b"\r\nCSeq: 1",
        b"\r\n\r\n",
        b"\r\nl:3",
    ];

    /// The next word of a seeded stream (random heads that reproduce).
    fn next_word(rng: &mut StdRng) -> u64 {
        rng.gen()
    }

    /// The candidate-line scan finds what splitting every logical line finds (the rule as
    /// first written), on heads built from the bytes that matter: CR, LF, folds, colons,
    /// both names in any case, digits, NUL.
    #[test]
    fn candidate_scan_agrees_with_splitting_every_line() {
        let (mut lengths, mut conflicts) = (0, 0);
        let mut seed = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let mut head = b"INVITE sip:a SIP/2.0\r\n".to_vec();
            for _ in 0..(next_word(&mut seed) % 24) {
                head.extend_from_slice(HEAD_PIECES[(next_word(&mut seed) % 16) as usize]);
            }
            next_word(&mut seed);
            let got = section_content_length(&head);
            assert_eq!(
                got,
                content_length_by_every_line(&head),
                "{:?}",
                String::from_utf8_lossy(&head)
            );
            lengths += usize::from(got.is_ok());
            conflicts += usize::from(got == Err(ScanError::ConflictingContentLength));
        }
        // The inputs reach every outcome, not only "missing".
        assert!(lengths > 1000 && conflicts > 10, "{lengths} {conflicts}");
    }

    /// The one-pass read of a plain Content-Length line answers what the rule answers
    /// (split, name, value parsed), or leaves the line to it: lines built from the pieces
    /// around a value (white space, folds, bare CR, NUL, letters, values near and over the
    /// bound) after either name.
    #[test]
    fn plain_content_length_is_the_rule_where_it_answers() {
        const PIECES: [&[u8]; 14] = [
            b" ",
            b"\t",
            b":",
            b"0",
            b"7",
            b"4294967295",
            b"4294967296",
            b"99999999999999999999",
            b"\r\n",
            b"\r\n ",
            b"\r",
            b"\n",
            b"\0",
            b"x",
        ];
        let (mut plain, mut seed) = (0, StdRng::seed_from_u64(0x5851_f42d_4c95_7f2d));
        for _ in 0..200_000 {
            let mut line = [b"Content-Length".as_slice(), b"l", b"L", b"content-LENGTH"]
                [(next_word(&mut seed) % 4) as usize]
                .to_vec();
            // Mostly the usual shape, `*WSP ":" *WSP digits *WSP`, each part now and then
            // any piece; then any pieces.
            for part in [0, 0, 2, 0, 0, 3, 0, 14, 14] {
                let r = (next_word(&mut seed) % 16) as usize;
                let piece = match part {
                    0 if r < 8 => PIECES[r % 2],
                    2 if r < 14 => b":",
                    3 if r < 14 => PIECES[3 + r % 5],
                    _ if r < 4 || part == 14 => PIECES[(next_word(&mut seed) % 14) as usize],
                    _ => b"",
                };
                line.extend_from_slice(piece);
            }
            if !names_content_length(&line) {
                continue;
            }
            let rule = general_content_length(&line);
            if let Some(n) = plain_content_length(&line) {
                assert_eq!(rule, Ok(Some(n)), "{:?}", String::from_utf8_lossy(&line));
                plain += 1;
            }
        }
        assert!(plain > 10_000, "{plain}");
        assert_eq!(
            plain_content_length(b"Content-Length: 1024\r\nVia"),
            Some(1024)
        );
        assert_eq!(plain_content_length(b"l:4294967295"), Some(4294967295));
        assert_eq!(plain_content_length(b"l:4294967296"), None);
        assert_eq!(plain_content_length(b"l: 5\r\n 6"), None);
    }

    /// `scan_frame`'s one walk over the LFs (`HeadScan`) frames what the rule as first
    /// written frames — the blank line by `memmem` from the resume point, then every logical
    /// line split — on random heads (folds, bare CR/LF, NUL, both names in any case, many
    /// candidate lines), whole and resumed at every cut.
    #[test]
    fn one_walk_frames_as_memmem_and_every_line() {
        fn old_rule(buf: &[u8], lim: &FrameLimits, resume: usize) -> Result<Scanned, ScanError> {
            if buf.starts_with(CRLF) {
                return scan_frame(buf, lim, resume);
            }
            let search_end = buf.len().min(lim.max_head + 4);
            let from = resume.min(search_end).saturating_sub(3);
            let Some(head_end) = find_head_end_from(&buf[..search_end], from) else {
                if buf.len() >= lim.max_head + 4 {
                    return Err(ScanError::HeadTooLong(lim.max_head));
                }
                return Ok(Scanned::Incomplete {
                    scanned: buf.len(),
                    len: None,
                });
            };
            let body = content_length_by_every_line(&buf[..head_end])?;
            if body > lim.max_body {
                return Err(ScanError::BodyTooLong(body));
            }
            let len = head_end + 4 + body;
            Ok(if buf.len() >= len {
                Scanned::Message { len }
            } else {
                Scanned::Incomplete {
                    scanned: head_end,
                    len: Some(len),
                }
            })
        }
        let lim = FrameLimits {
            max_head: 200,
            max_body: 64,
        };
        let (mut messages, mut incomplete) = (0, 0);
        let mut seed = StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        let mut next = || next_word(&mut seed);
        for _ in 0..100_000 {
            let mut buf = b"MESSAGE sip:a SIP/2.0".to_vec();
            for _ in 0..(next() % 40) {
                buf.extend_from_slice(HEAD_PIECES[(next() % 20) as usize]);
            }
            if next() % 2 == 0 {
                buf.extend_from_slice(b"\r\n\r\nabcdefgh");
            }
            let got = scan_frame(&buf, &lim, 0);
            assert_eq!(
                got,
                old_rule(&buf, &lim, 0),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            messages += usize::from(matches!(got, Ok(Scanned::Message { .. })));
            incomplete += usize::from(matches!(got, Ok(Scanned::Incomplete { .. })));
            // Resumed from a cut, as the framers do when more bytes arrive.
            let cut = (next() as usize) % (buf.len() + 1);
            if let Ok(Scanned::Incomplete { scanned, .. }) = scan_frame(&buf[..cut], &lim, 0) {
                assert_eq!(
                    scan_frame(&buf, &lim, scanned),
                    old_rule(&buf, &lim, scanned),
                    "{:?} resumed at {scanned}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
        assert!(
            messages > 1000 && incomplete > 1000,
            "{messages} {incomplete}"
        );
    }

    /// The word compare of the long name is `eq_ignore_ascii_case` on every byte value at
    /// every position (a case bit set on a non-letter, `\r` to `-`, must not match).
    #[test]
    fn content_length_prefix_is_case_insensitive_and_exact() {
        const LONG: &[u8] = b"content-length";
        for pos in 0..LONG.len() {
            for v in 0..=255u8 {
                let mut line = b"Content-Length: 1".to_vec();
                line[pos] = v;
                let want = line[..LONG.len()].eq_ignore_ascii_case(LONG);
                assert_eq!(is_content_length_prefix(&line), want, "{pos} {v:#x}");
            }
        }
        assert!(!is_content_length_prefix(b"Content-Lengt"));
        assert!(is_content_length_prefix(b"CONTENT-LENGTH"));
    }

    #[test]
    fn content_length_rules() {
        let cl = stream_content_length;
        assert_eq!(
            cl(b"INVITE x SIP/2.0\r\nCONTENT-length :  12 \r\n\r\n"),
            Ok(12)
        );
        assert_eq!(cl(b"INVITE x SIP/2.0\r\nL: 3\r\n\r\n"), Ok(3));
        assert_eq!(
            cl(b"A\r\nUrl: 3\r\n\r\n"),
            Err(ScanError::MissingContentLength)
        );
        assert_eq!(cl(b"A\r\nl: 1\r\nContent-Length: 1\r\n\r\n"), Ok(1));
        assert_eq!(
            cl(b"A\r\nContent-Length: 1\r\nl: 2\r\n\r\n"),
            Err(ScanError::ConflictingContentLength)
        );
        assert_eq!(cl(b"A\r\nl: -1\r\n\r\n"), Err(ScanError::BadContentLength));
        assert_eq!(cl(b"A\r\nl: x1\r\n\r\n"), Err(ScanError::BadContentLength));
        assert_eq!(
            cl(b"A\r\nl: 4294967296\r\n\r\n"),
            Err(ScanError::BadContentLength)
        );
        assert_eq!(cl(b"A\r\nl: 4294967295\r\n\r\n"), Ok(4294967295));
        // A line the parser will refuse does not hide the Content-Length after it.
        assert_eq!(cl(b"A\r\nno colon here\r\nl: 5\r\n\r\n"), Ok(5));
    }

    #[test]
    fn limits() {
        let small = FrameLimits {
            max_head: 8,
            max_body: 2,
        };
        assert_eq!(
            scan_frame(&[b'A'; 12], &small, 0),
            Err(ScanError::HeadTooLong(8))
        );
        assert!(matches!(
            scan_frame(&[b'A'; 11], &small, 0),
            Ok(Scanned::Incomplete { .. })
        ));
        let lim = FrameLimits {
            max_head: 64,
            max_body: 2,
        };
        assert_eq!(scan_frame(MSG, &lim, 0), Err(ScanError::BodyTooLong(3)));
    }

    #[test]
    fn header_line_splitting() {
        assert_eq!(split_header_line(b"Via : x"), Ok((&b"Via"[..], &b" x"[..])));
        assert_eq!(
            split_header_line(b"no colon"),
            Err(ScanError::BadHeaderLine)
        );
        assert_eq!(split_header_line(b": x"), Err(ScanError::BadHeaderLine));
        assert_eq!(split_header_line(b"A: x\ry"), Err(ScanError::BadHeaderLine));
        assert_eq!(
            split_header_line(b"A: x\r\n y"),
            Ok((&b"A"[..], &b" x\r\n y"[..]))
        );
        let lines: Vec<_> = HeaderLines::new(b"A: 1\r\n 2\r\nB: 3").collect();
        assert_eq!(lines, vec![&b"A: 1\r\n 2"[..], &b"B: 3"[..]]);
    }

    #[test]
    fn stream_framer_cuts_messages_keepalives_and_pieces() {
        let mut f = StreamFramer::new(FrameLimits::default());
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(MSG);
        two.extend_from_slice(MSG);
        two.extend_from_slice(&MSG[..10]);
        f.push(&two);
        assert_eq!(f.next_item(), Ok(Some(StreamItem::Ping)));
        assert_eq!(f.next_item(), Ok(Some(StreamItem::Message(MSG.to_vec()))));
        assert_eq!(f.next_item(), Ok(Some(StreamItem::Message(MSG.to_vec()))));
        assert_eq!(f.next_item(), Ok(None));
        f.push(&MSG[10..]);
        assert_eq!(f.next_item(), Ok(Some(StreamItem::Message(MSG.to_vec()))));
        assert_eq!(f.next_item(), Ok(None));
        f.push(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n");
        assert!(f.next_item().is_err());
    }
}
