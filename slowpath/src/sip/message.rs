//! Zero-copy SIP message (RFC 3261 7): start line, header index and body borrowed from the input.
//! The header index lives inline for up to [`INLINE_HEADERS`] headers, so the common path does
//! not allocate.

use akagate_proto::simd::HeadLines;
use akagate_proto::sipscan::{self, find_head_end, is_token_char};
use akagate_proto::swar;

use super::error::ParseError;
use super::header_name::HeaderKind;
use super::lex::{is_token, parse_decimal, trim_lws, ListIter};
use super::name_addr::{Contact, NameAddr};
use super::typed::ContactTail;
use super::via::Via;
use std::cell::OnceCell;

mod note;
#[cfg(test)]
mod scan_tests;

pub use note::ViaNote;

/// Headers kept without allocation; longer messages spill into a `Vec`.
pub const INLINE_HEADERS: usize = 32;
/// Upper bound on the number of header lines of one message.
pub const MAX_HEADERS: usize = 256;

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// The method token (case-sensitive, RFC 3261 7.1).
        method: &'a str,
        /// The Request-URI text, checked by [`Message::validate`].
        uri: &'a str,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase (may be empty, RFC 4475 3.1.1.13).
        reason: &'a str,
    },
}

/// One header line: name as written, value with surrounding LWS removed (folds kept inside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header<'a> {
    /// Name as written (may be the compact form).
    pub name: &'a str,
    /// Value, trimmed; a folded value still contains its CRLF + white space.
    pub value: &'a str,
    /// The resolved header kind.
    pub kind: HeaderKind,
}

#[derive(Debug, Clone)]
struct HeaderList<'a> {
    inline: [Header<'a>; INLINE_HEADERS],
    len: usize,
    spill: Vec<Header<'a>>,
    /// One bit per [`HeaderKind`] present ([`kind_bit`]): a lookup of a header the message
    /// does not have (most of those `validate` and the handlers ask for) scans nothing.
    present: u64,
    /// One bit per [`HeaderKind`] with more than one line.
    repeated: u64,
    /// The index of each present kind's first line (read only where `present` has its bit):
    /// a lookup starts there, and for a kind of one line reads that line alone.
    first: [u8; 64],
}

/// The bit of `kind` in [`HeaderList::present`] (fewer than 64 kinds; a test checks).
fn kind_bit(kind: HeaderKind) -> u64 {
    1u64 << ((kind as u32) & 63)
}

impl<'a> HeaderList<'a> {
    fn new() -> Self {
        HeaderList {
            inline: [Header::default(); INLINE_HEADERS],
            len: 0,
            spill: Vec::new(),
            present: 0,
            repeated: 0,
            first: [0; 64],
        }
    }

    fn push(&mut self, h: Header<'a>) -> Result<(), ParseError> {
        if self.len >= MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let bit = kind_bit(h.kind);
        if self.present & bit == 0 {
            // Below MAX_HEADERS (256): the index fits.
            self.first[(h.kind as usize) & 63] = self.len as u8;
        } else {
            self.repeated |= bit;
        }
        self.present |= bit;
        if self.len < INLINE_HEADERS {
            self.inline[self.len] = h;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(h);
        }
        self.len += 1;
        Ok(())
    }

    fn as_slice(&self) -> &[Header<'a>] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    /// The lines a lookup of `kind` need read: none if absent, its one line if it has one,
    /// else every line from its first.
    fn lines_of(&self, kind: HeaderKind) -> &[Header<'a>] {
        let bit = kind_bit(kind);
        if self.present & bit == 0 {
            return &[];
        }
        let all = self.as_slice();
        let first = usize::from(self.first[(kind as usize) & 63]);
        let end = if self.repeated & bit == 0 {
            first + 1
        } else {
            all.len()
        };
        all.get(first..end).unwrap_or_default()
    }
}

/// A parsed SIP request or response borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    start: StartLine<'a>,
    headers: HeaderList<'a>,
    body: &'a [u8],
    content_length: Option<usize>,
    /// No header value holds a CR, LF or NUL: no line was folded and the head has no NUL
    /// ([`Message::values_are_clean`]).
    values_clean: bool,
    /// The topmost Via and the To header, parsed on first use: validation, the transaction
    /// key, the registrar and the response builder all read them.
    pub(crate) top_via: OnceCell<Result<Via<'a>, ParseError>>,
    pub(crate) to: OnceCell<Result<NameAddr<'a>, ParseError>>,
    /// The From header, parsed on first use (validation and the transaction key read it).
    pub(crate) from: OnceCell<Result<NameAddr<'a>, ParseError>>,
    /// The first Contact (`None`: no Contact header), parsed on first use like the above.
    /// With it, where the Contact list goes on ([`ContactTail`]).
    pub(crate) first_contact: OnceCell<(Option<Result<Contact<'a>, ParseError>>, ContactTail<'a>)>,
    /// The Call-ID, checked on first use like the above (validation, then every response
    /// built reads it again).
    pub(crate) call_id: OnceCell<Result<&'a str, ParseError>>,
    /// The `received` / `rport` noted for the top Via, applied where a Via is written
    /// ([`ViaNote`]).
    via_note: Option<ViaNote>,
}

/// Parses a Content-Length value (RFC 3261 20.14: 1*DIGIT), by the shared scanner's rule.
pub(crate) fn parse_content_length(value: &str) -> Result<usize, ParseError> {
    Ok(sipscan::parse_content_length(value.as_bytes())?)
}

fn parse_version(v: &str) -> Result<(), ParseError> {
    // What nearly every message carries, and what every check below accepts.
    if v == "SIP/2.0" {
        return Ok(());
    }
    let rest = v.strip_prefix("SIP/").ok_or(ParseError::BadRequestLine)?;
    let (major, minor) = rest.split_once('.').ok_or(ParseError::BadRequestLine)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(ParseError::BadRequestLine);
    }
    if major != "2" || minor != "0" {
        return Err(ParseError::UnsupportedVersion);
    }
    Ok(())
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let sp = rest.find(' ').ok_or(ParseError::BadStatusLine)?;
        parse_version(&line[..4 + sp]).map_err(|e| match e {
            ParseError::BadRequestLine => ParseError::BadStatusLine,
            e => e,
        })?;
        let rest = &rest[sp + 1..];
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 {
            return Err(ParseError::BadStatusCode);
        }
        let code = parse_decimal(code, 699)
            .filter(|&c| c >= 100)
            .ok_or(ParseError::BadStatusCode)? as u16;
        if reason.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(ParseError::BadStatusLine);
        }
        return Ok(StartLine::Response { code, reason });
    }
    if let Some(request) = request_line_fast(line) {
        return Ok(request);
    }
    // Exactly three parts separated by single spaces (`str::split(' ')` into three), found
    // by one walk over the short line rather than a searcher per part.
    let b = line.as_bytes();
    let sp1 = b
        .iter()
        .position(|&c| c == b' ')
        .ok_or(ParseError::BadRequestLine)?;
    let sp2 = b[sp1 + 1..]
        .iter()
        .position(|&c| c == b' ')
        .map(|i| sp1 + 1 + i)
        .ok_or(ParseError::BadRequestLine)?;
    if b[sp2 + 1..].contains(&b' ') {
        return Err(ParseError::BadRequestLine);
    }
    // The spaces are ASCII: every cut is a character boundary.
    let (method, uri, version) = (&line[..sp1], &line[sp1 + 1..sp2], &line[sp2 + 1..]);
    if !is_token(method) {
        return Err(ParseError::BadMethod);
    }
    if uri.is_empty() || uri.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(ParseError::BadRequestLine);
    }
    parse_version(version)?;
    Ok(StartLine::Request { method, uri })
}

/// The request line `Method SP Request-URI SP SIP/2.0` as [`parse_start_line`] reads it,
/// where it is well formed: the method's letters eight at a time
/// ([`swar::leading_letters_or_dash`]), the version compared whole and the URI checked for
/// controls, SP and DEL eight bytes a step ([`swar::has_ctl_space_or_del`]). `None` for
/// anything else (another version, a bad part, a response), which the general walk then
/// decides with its own error; a test compares the two on random lines.
fn request_line_fast(line: &str) -> Option<StartLine<'_>> {
    const VERSION: &[u8] = b" SIP/2.0";
    let b = line.as_bytes();
    let i = token_end(b, 0);
    if i == 0 || b.get(i) != Some(&b' ') {
        return None;
    }
    let uri_end = b.len().checked_sub(VERSION.len())?;
    if uri_end <= i + 1 || b.get(uri_end..)? != VERSION {
        return None;
    }
    let uri = b.get(i + 1..uri_end)?;
    if swar::has_ctl_space_or_del(uri) {
        return None;
    }
    // Every cut is at an ASCII byte: a character boundary.
    Some(StartLine::Request {
        method: line.get(..i)?,
        uri: line.get(i + 1..uri_end)?,
    })
}

/// The end of the token run of `b` starting at `at` (`at` itself if none): letters and `-`
/// (every common method and header name) eight at a time, then any other token bytes one by
/// one; the same end as the byte loop alone.
#[inline]
fn token_end(b: &[u8], at: usize) -> usize {
    let mut i = at;
    while let Some(word) = swar::word_at(b, i) {
        let run = swar::leading_letters_or_dash(word);
        i += run;
        if run < 8 {
            break;
        }
    }
    while b.get(i).is_some_and(|&c| is_token_char(c)) {
        i += 1;
    }
    i
}

/// The first CRLF of `b` (`str::find("\r\n")` without its two-way searcher's set-up: the
/// start line is short).
fn find_crlf(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\r', b.get(from..)?) {
        let at = from + i;
        if b.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The logical header line of `section` starting at `at` (a line start), split in one pass:
/// its name (trailing SP/HT cut), its untrimmed value and where the next line starts (past
/// the line's CRLF; `section.len()` for the last line). What splitting the section into
/// lines (`sipscan::HeaderLines`) and each line at its colon
/// (`sipscan::split_nul_checked_header_line`) gives, with the same error for the same line,
/// without scanning a line for its end, then for its colon, then its value for CR and LF
/// again (a test compares the two). `line_end(from)` is the first CR or LF of `section` at or
/// after `from` (`None`: none before the section's end). A folded line sets `*folded`.
fn split_header_at(
    section: &[u8],
    at: usize,
    line_end: impl Fn(usize) -> Option<usize>,
    folded: &mut bool,
) -> Result<(std::ops::Range<usize>, std::ops::Range<usize>, usize), ParseError> {
    let bad = ParseError::from(sipscan::ScanError::BadHeaderLine);
    // name = token, then SP/HT, then the colon; anything else before a colon is refused
    // (the name could not be a token), and so is a line without one.
    let mut i = token_end(section, at);
    let name = at..i;
    while matches!(section.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    if name.is_empty() || section.get(i) != Some(&b':') {
        return Err(bad);
    }
    let value_start = i + 1;
    // The value runs to the first CRLF not followed by SP/HT (a fold continues it); a CR
    // without its LF or an LF without its CR is refused (RFC 3261 7.3.1).
    let mut from = value_start;
    loop {
        let Some(j) = line_end(from) else {
            return Ok((name, value_start..section.len(), section.len()));
        };
        if section[j] != b'\r' || section.get(j + 1) != Some(&b'\n') {
            return Err(bad);
        }
        if !matches!(section.get(j + 2), Some(b' ' | b'\t')) {
            return Ok((name, value_start..j, j + 2));
        }
        *folded = true;
        from = j + 2;
    }
}

/// The status code of `raw` from its start line alone (`None` for a request), for code that
/// built or parsed the whole message already and only needs to know what it is.
pub(crate) fn status_line_code(raw: &[u8]) -> Result<Option<u16>, ParseError> {
    let end = find_crlf(raw).ok_or(ParseError::Truncated)?;
    let line = std::str::from_utf8(&raw[..end]).map_err(|_| ParseError::NotUtf8)?;
    Ok(match parse_start_line(line)? {
        StartLine::Response { code, .. } => Some(code),
        StartLine::Request { .. } => None,
    })
}

impl<'a> Message<'a> {
    /// Parses one message. Content-Length, when present, bounds the body; extra bytes after it
    /// are ignored and fewer bytes are an error (RFC 3261 18.3). Without Content-Length the body
    /// is the rest of the input (datagram). Semantic checks are in [`Message::validate`].
    pub fn parse(raw: &'a [u8]) -> Result<Message<'a>, ParseError> {
        // The head's line ends in one vector pass; a head without an end or longer than the
        // scan holds takes the general path, which decides it as before.
        let mut lines = HeadLines::new();
        let Some(head_end) = lines.scan(raw) else {
            return Message::parse_general(raw);
        };
        // RFC 3261 25.1: no NUL before the body (start line included) but a quoted-pair's;
        // the exact check only when the scan saw a NUL at all.
        if lines.has_nul() && sipscan::has_bare_nul(&raw[..head_end]) {
            return Err(ParseError::NulInHeader);
        }
        // The scan's flag may count a NUL past the head's end: the exact answer only then.
        let head_has_nul = lines.has_nul() && memchr::memchr(0, &raw[..head_end]).is_some();
        let head = simdutf8::basic::from_utf8(&raw[..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let start_end = lines.crlf_from(raw, 0);
        Message::parse_lines(
            raw,
            head,
            start_end,
            |from| lines.line_end_from(from),
            head_has_nul,
        )
    }

    /// [`Message::parse`] without the head's vector scan: `memmem` for the head's end,
    /// `memchr2` for each line's. The path of a head longer than
    /// [`akagate_proto::simd::HEAD_SCAN_MAX`] (or without an end), and the reference the
    /// scan is tested and fuzzed against: both give the same message or the same error.
    pub fn parse_general(raw: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let head_end = find_head_end(raw).ok_or(ParseError::Truncated)?;
        // RFC 3261 25.1: no NUL before the body (start line included) but a quoted-pair's.
        if sipscan::has_bare_nul(&raw[..head_end]) {
            return Err(ParseError::NulInHeader);
        }
        // The whole head checked by simdutf8's vector walk (std's is byte-wise for the
        // ASCII it then finds: ~1.5 instructions a byte of a 1 KiB REGISTER head).
        let head = simdutf8::basic::from_utf8(&raw[..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let b = head.as_bytes();
        let line_end = |from: usize| {
            b.get(from..)
                .and_then(|rest| memchr::memchr2(b'\r', b'\n', rest))
                .map(|j| from + j)
        };
        let head_has_nul = memchr::memchr(0, b).is_some();
        Message::parse_lines(raw, head, find_crlf(b), line_end, head_has_nul)
    }

    /// The head (`raw` up to its blank line, checked: no bare NUL, UTF-8) split into its start
    /// line (ending at `start_end`, the head's first CRLF) and header lines, each line's end
    /// found by `line_end` (the first CR or LF of the head at or after an offset, `None` past
    /// the last), and the body after it.
    fn parse_lines(
        raw: &'a [u8],
        head: &'a str,
        start_end: Option<usize>,
        line_end: impl Fn(usize) -> Option<usize>,
        head_has_nul: bool,
    ) -> Result<Message<'a>, ParseError> {
        let head_end = head.len();
        let (start_line, section, offset) = match start_end {
            Some(p) => (&head[..p], &head[p + 2..], p + 2),
            None => (head, "", head_end),
        };
        if section.starts_with([' ', '\t']) {
            return Err(ParseError::BadHeaderLine);
        }
        let start = parse_start_line(start_line)?;
        let mut headers = HeaderList::new();
        let mut content_length = None;
        let mut at = 0;
        let mut folded = false;
        // The section's line ends are the head's, shifted by where the section starts.
        let section_end = |from: usize| line_end(offset + from).map(|j| j - offset);
        while at < section.len() {
            // The whole head was cleared of bare NULs above.
            let (name, value, next) =
                split_header_at(section.as_bytes(), at, section_end, &mut folded)?;
            at = next;
            // Both ranges are of `section` (checked UTF-8 above), at ASCII boundaries: take
            // them from it instead of validating them again.
            let name = section.get(name).ok_or(ParseError::NotUtf8)?;
            let value = trim_lws(section.get(value).ok_or(ParseError::NotUtf8)?);
            let kind = HeaderKind::from_name(name);
            if kind == HeaderKind::ContentLength {
                if content_length.is_some() {
                    return Err(ParseError::MultipleContentLength);
                }
                content_length = Some(parse_content_length(value)?);
            }
            headers.push(Header { name, value, kind })?;
        }
        let rest = &raw[head_end + 4..];
        let body = match content_length {
            Some(n) => rest.get(..n).ok_or(ParseError::BodyTooShort)?,
            None => rest,
        };
        Ok(Message {
            raw,
            start,
            headers,
            body,
            content_length,
            values_clean: !folded && !head_has_nul,
            top_via: OnceCell::new(),
            to: OnceCell::new(),
            from: OnceCell::new(),
            first_contact: OnceCell::new(),
            call_id: OnceCell::new(),
            via_note: None,
        })
    }

    /// True if no header value of this message holds a CR, LF or NUL (no line of its head
    /// was folded and its head has no NUL, a quoted-pair's included): a builder that copies
    /// values from it into another message need not scan them for line breaks. False says
    /// only "maybe": a fold inside the value, or one that LWS trimming removed.
    pub fn values_are_clean(&self) -> bool {
        self.values_clean
    }

    /// The input this message was parsed from (including any ignored trailing bytes).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The start line.
    pub fn start_line(&self) -> StartLine<'a> {
        self.start
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, for requests.
    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI text, for requests.
    pub fn request_uri(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, for responses.
    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase, for responses.
    pub fn reason(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// All header lines in order.
    pub fn headers(&self) -> &[Header<'a>] {
        self.headers.as_slice()
    }

    /// The body (bounded by Content-Length when present).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The Content-Length value, if the header is present.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// Values of every header line of `kind`, in order.
    pub fn header_values(&self, kind: HeaderKind) -> impl Iterator<Item = &'a str> + '_ {
        self.headers
            .lines_of(kind)
            .iter()
            .filter(move |h| h.kind == kind)
            .map(|h| h.value)
    }

    /// Whether the message has a header line of `kind`.
    pub fn has(&self, kind: HeaderKind) -> bool {
        self.headers.present & kind_bit(kind) != 0
    }

    /// The first value of `kind`.
    pub fn header(&self, kind: HeaderKind) -> Option<&'a str> {
        self.header_values(kind).next()
    }

    /// Values of every header line called `name` (full or compact form, any case).
    pub fn header_values_by_name<'s>(
        &'s self,
        name: &'s str,
    ) -> impl Iterator<Item = &'a str> + 's {
        let kind = HeaderKind::from_name(name);
        self.headers
            .lines_of(kind)
            .iter()
            .filter(move |h| {
                h.kind == kind && (kind != HeaderKind::Other || h.name.eq_ignore_ascii_case(name))
            })
            .map(|h| h.value)
    }

    /// The first value of the header called `name`.
    pub fn header_by_name(&self, name: &str) -> Option<&'a str> {
        self.header_values_by_name(name).next()
    }

    /// Comma-separated elements over all lines of a list header of `kind` (RFC 3261 7.3.1).
    pub fn list_values(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        self.header_values(kind).flat_map(ListIter::new)
    }

    /// The single value of a header that must appear at most once; `Ok(None)` if absent.
    pub fn single(&self, kind: HeaderKind) -> Result<Option<&'a str>, ParseError> {
        match self.headers.lines_of(kind) {
            [] => Ok(None),
            [one] => Ok(Some(one.value)),
            _ => Err(ParseError::MultipleHeaders(kind.label())),
        }
    }

    /// Like [`Message::single`] but the header is mandatory.
    pub fn required(&self, kind: HeaderKind) -> Result<&'a str, ParseError> {
        self.single(kind)?
            .ok_or(ParseError::MissingHeader(kind.label()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `section` as the shared scanner splits it (lines, then each at its
    /// colon), or the first error, as ranges of `section`.
    #[allow(clippy::type_complexity)]
    fn by_scanner(
        section: &[u8],
    ) -> Result<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>, ParseError> {
        let base = section.as_ptr() as usize;
        let at = |p: &[u8]| p.as_ptr() as usize - base;
        let mut out = Vec::new();
        for line in sipscan::HeaderLines::new(section) {
            let (name, value) = sipscan::split_nul_checked_header_line(line)?;
            out.push((
                at(name)..at(name) + name.len(),
                at(value)..at(value) + value.len(),
            ));
        }
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn by_one_pass(
        section: &[u8],
    ) -> Result<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>, ParseError> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < section.len() {
            let line_end = |from: usize| {
                section
                    .get(from..)
                    .and_then(|rest| memchr::memchr2(b'\r', b'\n', rest))
                    .map(|j| from + j)
            };
            let (name, value, next) = split_header_at(section, at, line_end, &mut false)?;
            assert!(next > at);
            out.push((name, value));
            at = next;
        }
        Ok(out)
    }

    #[test]
    fn one_pass_header_split_is_the_scanners() {
        let fixed: [&[u8]; 12] = [
            b"Via: a\r\nTo: b",
            b"Via : a\r\n\tb\r\nl:3",
            b"Via: a\rb",
            b"Via: a\nb",
            b"Via: a\r",
            b"Via a",
            b": a",
            b"V ia: a",
            b"Via:\r\n x\r\n\r\ny: z",
            b"Via:",
            b"Via: a\r\nNo colon",
            b"Via: a\r\r\n b",
        ];
        for f in fixed {
            assert_eq!(
                by_one_pass(f),
                by_scanner(f),
                "{:?}",
                String::from_utf8_lossy(f)
            );
        }
        const PIECES: [&[u8]; 14] = [
            b"Via",
            b":",
            b" ",
            b"\t",
            b"\r\n",
            b"\r",
            b"\n",
            b"\r\n ",
            b"x",
            b"@",
            b"; a=b",
            b"\r\n\t",
            b"l",
            b"\r\nTo: y",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..200_000 {
            let mut v = Vec::new();
            for _ in 0..next() % 10 {
                v.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let (a, b) = (by_one_pass(&v), by_scanner(&v));
            accepted += usize::from(a.as_ref().is_ok_and(|l| l.len() > 1));
            assert_eq!(a, b, "{:?}", String::from_utf8_lossy(&v));
        }
        // Sections of several lines are accepted too, not only refused.
        assert!(accepted > 100, "{accepted}");
    }

    /// The head is refused as not UTF-8 exactly when std's decoder refuses it: well-formed
    /// multi-byte characters pass, malformed ones anywhere in the head (split sequences,
    /// overlong forms, surrogates, bytes above U+10FFFF, a sequence cut by the blank line)
    /// are `NotUtf8`, on fixed cases and on heads with random bytes spliced in.
    #[test]
    fn a_head_is_refused_as_not_utf8_exactly_when_std_refuses_it() {
        const BYTES: [&[u8]; 14] = [
            "ö".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\xc3",
            b"\xc3\x28",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xff",
            b"\x80",
            b"\xf0\x9f\x98",
            b"a",
            b"\"",
        ];
        let verdict = |raw: &[u8]| !matches!(Message::parse(raw), Err(ParseError::NotUtf8));
        let head_of = |ins: &[u8], at: usize| {
            let mut v =
                b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: \""
                    .to_vec();
            let mut name = b"Jo".to_vec();
            name.splice(at.min(name.len())..at.min(name.len()), ins.iter().copied());
            v.extend_from_slice(&name);
            v.extend_from_slice(b"\" <sip:j@b>;tag=1\r\nl: 0\r\n\r\n");
            v
        };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut refused, mut passed) = (0, 0);
        for round in 0..20_000 {
            let mut ins = Vec::new();
            let pieces = if round < BYTES.len() {
                1
            } else {
                1 + next() % 4
            };
            for k in 0..pieces {
                let i = if round < BYTES.len() && k == 0 {
                    round
                } else {
                    (next() % 14) as usize
                };
                ins.extend_from_slice(BYTES[i]);
            }
            let raw = head_of(&ins, (next() % 3) as usize);
            let head_end = find_head_end(&raw).expect("a head");
            let std_ok = std::str::from_utf8(&raw[..head_end]).is_ok();
            assert_eq!(verdict(&raw), std_ok, "{:x?}", ins);
            if std_ok {
                passed += 1
            } else {
                refused += 1
            }
        }
        assert!(refused > 1000 && passed > 1000, "{refused} {passed}");
        // A sequence cut by the head's end: the head alone is malformed.
        assert!(!verdict(b"OPTIONS sip:a@b SIP/2.0\r\nX: \xe2\x82\r\n\r\n"));
        assert!(verdict(
            "OPTIONS sip:a@b SIP/2.0\r\nX: \u{20ac}\r\n\r\n".as_bytes()
        ));
    }

    const REQ: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX-Long: a\r\n  b\r\nl: 3\r\n\r\nabcdef";

    #[test]
    fn values_are_clean_without_a_fold_or_a_nul_in_the_head() {
        let head = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n";
        for (rest, clean) in [
            ("Subject: x\r\n\r\n", true),
            ("Subject: x\r\n\r\nbody\0with a NUL", true),
            ("Subject: x\r\n y\r\n\r\n", false),
            ("Subject: x\r\n\t\r\n\r\n", false),
            ("Subject: \"a\\\0b\"\r\n\r\n", false),
        ] {
            let raw = format!("{head}{rest}");
            for m in [
                Message::parse(raw.as_bytes()),
                Message::parse_general(raw.as_bytes()),
            ] {
                assert_eq!(m.unwrap().values_are_clean(), clean, "{raw:?}");
            }
        }
        // Past the scan's bound (the general path): the same answers.
        let long = format!("{head}X-Pad: {}\r\n x\r\n\r\n", "p".repeat(5000));
        assert!(!Message::parse(long.as_bytes()).unwrap().values_are_clean());
    }

    #[test]
    fn parses_headers_and_body() {
        let m = Message::parse(REQ).unwrap();
        assert_eq!(m.method(), Some("OPTIONS"));
        assert_eq!(m.request_uri(), Some("sip:a@b"));
        assert_eq!(m.headers().len(), 3);
        assert_eq!(m.header_by_name("x-long"), Some("a\r\n  b"));
        assert_eq!(m.body(), b"abc");
        assert_eq!(m.content_length(), Some(3));
    }

    #[test]
    fn first_crlf_is_what_str_find_finds() {
        for s in [
            "",
            "\r",
            "\n",
            "a\r\n",
            "\r\r\n",
            "a\rb\r\nc\r\n",
            "\n\r",
            "abc",
        ] {
            assert_eq!(find_crlf(s.as_bytes()), s.find("\r\n"), "{s:?}");
        }
    }

    /// Lookups through the first-line index give what a filter over every line gives: the
    /// values of a kind in order, `single`'s one value or its error, on random messages with
    /// repeated, compact-form and unknown headers, some past the inline capacity.
    #[test]
    fn indexed_lookups_are_a_filter_over_every_line() {
        const NAMES: [&str; 12] = [
            "Via", "v", "To", "Contact", "m", "Require", "X-A", "X-B", "Expires", "Route",
            "Call-ID", "cseq",
        ];
        let kinds: Vec<HeaderKind> = NAMES
            .iter()
            .map(|n| HeaderKind::from_name(n))
            .chain([HeaderKind::Date, HeaderKind::Other])
            .collect();
        let mut state = 0x0dd_ba11_cafe_f00du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut singles, mut multiples) = (0, 0);
        for round in 0..3000 {
            let mut text = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
            let lines = next() % if round % 10 == 0 { 60 } else { 12 };
            for i in 0..lines {
                let name = NAMES[(next() % NAMES.len() as u64) as usize];
                text.push_str(&format!("{name}: {i}\r\n"));
            }
            text.push_str("\r\n");
            let m = Message::parse(text.as_bytes()).unwrap();
            for &kind in &kinds {
                let plain: Vec<&str> = m
                    .headers()
                    .iter()
                    .filter(|h| h.kind == kind)
                    .map(|h| h.value)
                    .collect();
                assert_eq!(m.header_values(kind).collect::<Vec<_>>(), plain, "{kind:?}");
                let single = match plain.as_slice() {
                    [] => Ok(None),
                    [one] => Ok(Some(*one)),
                    _ => Err(ParseError::MultipleHeaders(kind.label())),
                };
                singles += usize::from(plain.len() == 1);
                multiples += usize::from(plain.len() > 1);
                assert_eq!(m.single(kind), single, "{kind:?}");
                assert_eq!(m.has(kind), !plain.is_empty());
            }
            assert_eq!(
                m.header_values_by_name("x-b").collect::<Vec<_>>(),
                m.headers()
                    .iter()
                    .filter(|h| h.name == "X-B")
                    .map(|h| h.value)
                    .collect::<Vec<_>>()
            );
        }
        assert!(singles > 1000 && multiples > 1000, "{singles} {multiples}");
    }

    #[test]
    fn every_kind_has_its_own_presence_bit() {
        assert!((HeaderKind::Other as u32) < 64);
        let m = Message::parse(REQ).unwrap();
        assert!(m.has(HeaderKind::Via) && m.has(HeaderKind::ContentLength));
        assert!(m.has(HeaderKind::Other));
        assert!(!m.has(HeaderKind::Contact) && !m.has(HeaderKind::To));
        assert_eq!(m.header(HeaderKind::Contact), None);
        assert_eq!(m.header_by_name("X-Other"), None);
    }

    #[test]
    fn spills_past_inline_capacity() {
        let mut s = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
        for i in 0..40 {
            s.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        s.push_str("\r\n");
        let m = Message::parse(s.as_bytes()).unwrap();
        assert_eq!(m.headers().len(), 40);
        assert_eq!(m.header_by_name("X-H39"), Some("39"));
        assert_eq!(m.header_by_name("X-H0"), Some("0"));
    }

    #[test]
    fn rejects_bare_lf_and_missing_colon() {
        assert_eq!(
            Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: a\nb\r\n\r\n").unwrap_err(),
            ParseError::BadHeaderLine
        );
        assert_eq!(
            Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n").unwrap_err(),
            ParseError::BadHeaderLine
        );
    }

    #[test]
    fn request_line_parts_are_a_split_at_single_spaces() {
        // The reference: three parts of `split(' ')`, then the same checks.
        fn by_split(line: &str) -> Result<StartLine<'_>, ParseError> {
            let mut parts = line.split(' ');
            let (Some(method), Some(uri), Some(version), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(ParseError::BadRequestLine);
            };
            if !is_token(method) {
                return Err(ParseError::BadMethod);
            }
            if uri.is_empty() || uri.bytes().any(|b| b <= 0x20 || b == 0x7f) {
                return Err(ParseError::BadRequestLine);
            }
            parse_version(version)?;
            Ok(StartLine::Request { method, uri })
        }
        let slots: [&[&str]; 6] = [
            &[
                "REGISTER",
                "",
                "x@",
                "é",
                "INVITE",
                "NOTIFY-1.x",
                "ABCDEFGHIJ",
                "A\u{7f}",
            ],
            &[" ", "", "  ", "\t"],
            &[
                "sip:a@b",
                "",
                "sip:\u{7f}",
                "x",
                "é",
                "sip:ims.example.com",
                "s\u{1}p",
                "a\tb",
            ],
            &[" ", "", "  "],
            &["SIP/2.0", "SIP/3.0", "", "SIP/2.0 ", "SIP/2.00", "SIP/02.0"],
            &["", "", " ", " x"],
        ];
        let mut state = 0x1234_5678_9abc_def1u64;
        let (mut ok, mut fast) = (0, 0);
        for _ in 0..100_000 {
            let mut line = String::new();
            for slot in slots {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                line.push_str(slot[(state % slot.len() as u64) as usize]);
            }
            if line.starts_with("SIP/") {
                continue;
            }
            let got = parse_start_line(&line);
            ok += usize::from(got.is_ok());
            assert_eq!(got, by_split(&line), "{line:?}");
            if let Some(f) = request_line_fast(&line) {
                fast += 1;
                assert_eq!(Ok(f), by_split(&line), "{line:?}");
            }
        }
        assert!(ok > 100, "{ok}");
        // The fast form decides a good share itself (and nothing it decides differs).
        assert!(fast > 100, "{fast}");
    }

    #[test]
    fn start_lines() {
        assert_eq!(
            Message::parse(b"SIP/2.0 100 \r\n\r\n")
                .unwrap()
                .start_line(),
            StartLine::Response {
                code: 100,
                reason: ""
            }
        );
        assert_eq!(
            Message::parse(b"SIP/2.0 4294967301 x\r\n\r\n").unwrap_err(),
            ParseError::BadStatusCode
        );
        assert_eq!(
            Message::parse(b"OPTIONS sip:a SIP/7.0\r\n\r\n").unwrap_err(),
            ParseError::UnsupportedVersion
        );
        assert_eq!(
            Message::parse(b"OPTIONS  sip:a SIP/2.0\r\n\r\n").unwrap_err(),
            ParseError::BadRequestLine
        );
    }
}
