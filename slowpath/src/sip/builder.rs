//! Building SIP messages: a compact request/response builder that always writes a correct
//! Content-Length, responses derived from a request (RFC 3261 8.2.6) and the ACK for a
//! non-2xx final response (RFC 3261 17.1.1.3).

use super::error::ParseError;
use super::header_name::HeaderKind;
use super::message::Message;

/// Accumulates a start line, headers and a body; [`MessageBuilder::build`] appends
/// Content-Length. CR and LF inside names or values are replaced by spaces so a value can
/// never inject a header line.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    head: Vec<u8>,
    body: Vec<u8>,
}

/// Head capacity a builder starts with: a 401 or 200 to a REGISTER (several Vias, a
/// Security-Server, Path, Service-Route, P-Associated-URI) fits without growing.
const HEAD_CAPACITY: usize = 1536;

/// Head room [`response_to`] leaves beyond what it copies from the request: the 401's
/// WWW-Authenticate and Security-Server, the 200's Path, Service-Route, P-Associated-URI,
/// Contact and Expires, the To tag, the Via note and Content-Length.
const ADDED_ROOM: usize = 640;

/// A header name fixed where the program is written (`const`): checked once, when it is
/// made ([`StaticName::new`], at compile time in a `const`), so writing it copies `N` bytes
/// of a known length (no call, no per-byte CR/LF check, no Content-Length lookup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticName<const N: usize>([u8; N]);

impl<const N: usize> StaticName<N> {
    /// `name` as a header name. Panics (a compile error in a `const`) unless it is a
    /// non-empty token (RFC 3261 25.1: no CR, LF, space or colon) other than
    /// Content-Length or its compact form `l`, which [`MessageBuilder::build`] writes.
    pub const fn new(name: &[u8; N]) -> Self {
        assert!(N > 0, "empty header name");
        let mut i = 0;
        while i < N {
            let b = name[i];
            let token = b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                );
            assert!(token, "a header name is a token");
            i += 1;
        }
        assert!(
            !(N == 1 && (name[0] == b'l' || name[0] == b'L')),
            "Content-Length is computed"
        );
        if N == 14 {
            let c = b"content-length";
            let mut same = true;
            let mut i = 0;
            while i < N {
                same &= name[i].to_ascii_lowercase() == c[i];
                i += 1;
            }
            assert!(!same, "Content-Length is computed");
        }
        StaticName(*name)
    }
}

/// Whether a value copied into a message is scanned for CR and LF.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Blank every CR and LF (values of unknown origin).
    Blank,
    /// Copy as is: the source message said its values hold none ([`Message::values_are_clean`]).
    Clean,
}

fn push_clean(out: &mut Vec<u8>, s: &str) {
    let start = out.len();
    out.extend_from_slice(s.as_bytes());
    clean_from(out, start);
}

/// Blanks every CR and LF of `out[start..]` (values almost never hold them: they are copied
/// at once, then checked). A header value written in pieces is checked once, whole.
fn clean_from(out: &mut [u8], start: usize) {
    let Some(tail) = out.get_mut(start..) else {
        return;
    };
    // A plain loop over a short piece, where `memchr`'s set-up costs more than the scan.
    // (A word-at-a-time scan up to 64 bytes, `swar::find_of_two_near`, measured +0.2k
    // instructions a registration: not kept.)
    if tail.len() < 32 {
        for b in tail {
            if matches!(*b, b'\r' | b'\n') {
                *b = b' ';
            }
        }
        return;
    }
    let mut at = 0;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', &tail[at..]) {
        tail[at + i] = b' ';
        at += i + 1;
    }
}

/// Appends `n` in decimal (`itoa`: no `format!` and no allocation on the build path).
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

impl MessageBuilder {
    /// Starts a request `method request_uri SIP/2.0`.
    pub fn request(method: &str, request_uri: &str) -> Self {
        let mut head = Vec::with_capacity(HEAD_CAPACITY);
        push_clean(&mut head, method);
        head.push(b' ');
        push_clean(&mut head, request_uri);
        head.extend_from_slice(b" SIP/2.0\r\n");
        MessageBuilder {
            head,
            body: Vec::new(),
        }
    }

    /// Starts a response `SIP/2.0 code reason`.
    pub fn response(code: u16, reason: &str) -> Self {
        Self::response_with_capacity(code, reason, HEAD_CAPACITY)
    }

    /// [`MessageBuilder::response`] with `capacity` bytes of head reserved.
    fn response_with_capacity(code: u16, reason: &str, capacity: usize) -> Self {
        let mut head = Vec::with_capacity(capacity);
        head.extend_from_slice(b"SIP/2.0 ");
        push_decimal(&mut head, usize::from(code));
        head.push(b' ');
        push_clean(&mut head, reason);
        head.extend_from_slice(b"\r\n");
        MessageBuilder {
            head,
            body: Vec::new(),
        }
    }

    /// Appends a header line; a Content-Length given here is ignored (it is computed).
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.push_header_parts(name, &[value]);
    }

    /// Appends a header line whose value is `parts` concatenated (no intermediate string).
    pub fn push_header_parts(&mut self, name: &str, parts: &[&str]) {
        // Only "Content-Length" and its compact form "l" can name it: skip the lookup otherwise.
        if matches!(name.len(), 1 | 14) && HeaderKind::from_name(name) == HeaderKind::ContentLength
        {
            return;
        }
        push_clean(&mut self.head, name);
        self.head.extend_from_slice(b": ");
        let value = self.head.len();
        for p in parts {
            self.head.extend_from_slice(p.as_bytes());
        }
        clean_from(&mut self.head, value);
        self.head.extend_from_slice(b"\r\n");
    }

    /// Appends a header line whose value `write` produces piece by piece into the message
    /// (lists and numbers without intermediate strings).
    pub fn push_header_with(&mut self, name: &str, write: impl FnOnce(&mut ValueWriter<'_>)) {
        if matches!(name.len(), 1 | 14) && HeaderKind::from_name(name) == HeaderKind::ContentLength
        {
            return;
        }
        push_clean(&mut self.head, name);
        self.head.extend_from_slice(b": ");
        self.value_with(write, Scan::Blank);
    }

    /// [`MessageBuilder::push_header_with`] under a name checked when it was made.
    pub fn push_named_with<const N: usize>(
        &mut self,
        name: &StaticName<N>,
        write: impl FnOnce(&mut ValueWriter<'_>),
    ) {
        self.push_name(name);
        self.value_with(write, Scan::Blank);
    }

    /// [`MessageBuilder::push_header_parts`] under a name checked when it was made.
    pub fn push_named_parts<const N: usize>(&mut self, name: &StaticName<N>, parts: &[&str]) {
        self.named_parts(name, parts, Scan::Blank);
    }

    /// `name: ` and `parts`, their CR and LF blanked unless `scan` says they hold none.
    #[inline]
    fn named_parts<const N: usize>(&mut self, name: &StaticName<N>, parts: &[&str], scan: Scan) {
        self.push_name(name);
        let value = self.head.len();
        for p in parts {
            self.head.extend_from_slice(p.as_bytes());
        }
        if scan == Scan::Blank {
            clean_from(&mut self.head, value);
        }
        self.head.extend_from_slice(b"\r\n");
    }

    /// `name: `, copied as two pieces of known length.
    #[inline]
    fn push_name<const N: usize>(&mut self, name: &StaticName<N>) {
        self.head.extend_from_slice(&name.0);
        self.head.extend_from_slice(b": ");
    }

    /// The value `write` produces, its CR and LF blanked, and the line's end.
    #[inline]
    fn value_with(&mut self, write: impl FnOnce(&mut ValueWriter<'_>), scan: Scan) {
        let value = self.head.len();
        write(&mut ValueWriter(&mut self.head));
        // The pieces were copied as they came: CR and LF blanked once over the whole value.
        if scan == Scan::Blank {
            clean_from(&mut self.head, value);
        }
        self.head.extend_from_slice(b"\r\n");
    }

    /// Appends header lines rendered once ([`HeaderLines`]) as one copy.
    pub fn push_lines(&mut self, lines: &HeaderLines) {
        self.head.extend_from_slice(&lines.0);
    }

    /// Appends a header line (builder style).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.push_header(name, value);
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.push_header("Content-Type", content_type);
        self.body = body.to_vec();
        self
    }

    /// Sets the body without adding a Content-Type (the caller's headers already carry it).
    pub fn raw_body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// Serialises the message with `Content-Length` set to the body length.
    pub fn build(mut self) -> Vec<u8> {
        self.head.reserve_exact(24 + self.body.len());
        self.head.extend_from_slice(b"Content-Length: ");
        push_decimal(&mut self.head, self.body.len());
        self.head.extend_from_slice(b"\r\n\r\n");
        self.head.extend_from_slice(&self.body);
        self.head
    }
}

/// Header lines written once by a [`MessageBuilder`]'s own header methods (names checked,
/// CR and LF of values blanked) and copied into many messages whole
/// ([`MessageBuilder::push_lines`]): headers whose values depend only on the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderLines(Box<[u8]>);

impl HeaderLines {
    /// The lines `write` pushes into an empty builder, kept as written.
    pub fn new(write: impl FnOnce(&mut MessageBuilder)) -> Self {
        let mut b = MessageBuilder {
            head: Vec::new(),
            body: Vec::new(),
        };
        write(&mut b);
        HeaderLines(b.head.into_boxed_slice())
    }

    /// The lines as bytes (each ends in CR LF).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Writes one header value into a [`MessageBuilder`] ([`MessageBuilder::push_header_with`]);
/// CR and LF become spaces as in every value (checked once the value is written).
#[derive(Debug)]
pub struct ValueWriter<'a>(&'a mut Vec<u8>);

impl ValueWriter<'_> {
    /// Appends text.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// Appends a number in decimal.
    pub fn decimal(&mut self, n: u32) -> &mut Self {
        push_decimal(self.0, n as usize);
        self
    }
}

/// The names a response copies from its request.
const VIA: StaticName<3> = StaticName::new(b"Via");
const FROM: StaticName<4> = StaticName::new(b"From");
const TO: StaticName<2> = StaticName::new(b"To");
const CALL_ID: StaticName<7> = StaticName::new(b"Call-ID");
const CSEQ: StaticName<4> = StaticName::new(b"CSeq");

/// A response to `request` per RFC 3261 8.2.6.2: Via headers in order, From, To (adding
/// `to_tag` unless the To already has a tag or the code is 100), Call-ID and CSeq; a 100 also
/// copies Timestamp (8.2.6.1). Fails if one of those headers is missing or malformed.
pub fn response_to(
    request: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> Result<MessageBuilder, ParseError> {
    // A request whose values hold no CR or LF (no folded line) is copied without the scan.
    let scan = if request.values_are_clean() {
        Scan::Clean
    } else {
        Scan::Blank
    };
    response_with(request, code, reason, to_tag.map(str::as_bytes), scan)
}

/// [`response_to`] with a To tag given as bytes (ours, [`crate::context`]'s 16 hex digits:
/// no UTF-8 check to read them as text; CR and LF are blanked in them as in any tag).
pub(crate) fn response_tagged(
    request: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: &[u8],
) -> Result<MessageBuilder, ParseError> {
    let scan = if request.values_are_clean() {
        Scan::Clean
    } else {
        Scan::Blank
    };
    response_with(request, code, reason, Some(to_tag), scan)
}

/// A header that must appear once, as [`Message::required`] reads it: seen not at all,
/// once (its value), or more.
#[derive(Clone, Copy)]
enum Once<'a> {
    None,
    One(&'a str),
    More,
}

impl<'a> Once<'a> {
    fn see(&mut self, value: &'a str) {
        *self = match self {
            Once::None => Once::One(value),
            _ => Once::More,
        };
    }

    /// The value, or [`Message::required`]'s error for `kind`.
    fn required(self, kind: HeaderKind) -> Result<&'a str, ParseError> {
        match self {
            Once::One(v) => Ok(v),
            Once::None => Err(ParseError::MissingHeader(kind.label())),
            Once::More => Err(ParseError::MultipleHeaders(kind.label())),
        }
    }
}

/// [`response_to`], the copied values scanned for CR and LF as `scan` says.
fn response_with(
    request: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    scan: Scan,
) -> Result<MessageBuilder, ParseError> {
    let to = request.cached_to()?;
    // One pass over the header lines: the Vias' length, and From, To and CSeq, each of
    // which must be there once (what `Message::required` checks, a pass each).
    let (mut vias, mut from, mut to_raw, mut cseq) = (0usize, Once::None, Once::None, Once::None);
    for h in request.headers() {
        match h.kind {
            HeaderKind::Via => vias += h.value.len() + 8,
            HeaderKind::From => from.see(h.value),
            HeaderKind::To => to_raw.see(h.value),
            HeaderKind::CSeq => cseq.see(h.value),
            _ => {}
        }
    }
    let to_raw = to_raw.required(HeaderKind::To)?;
    let from = from.required(HeaderKind::From)?;
    let call_id = request.call_id()?;
    let cseq = cseq.required(HeaderKind::CSeq)?;
    request.cached_top_via()?;
    // What is copied from the request, and room for what the caller adds: a 401 or 200 to a
    // REGISTER stays under 1 KiB, where the allocator serves it from its per-thread cache
    // (a fixed 1.5 KiB head went through the slower general path every time).
    let copied = vias + from.len() + to_raw.len() + call_id.len() + cseq.len() + 64;
    let mut b =
        MessageBuilder::response_with_capacity(code, reason, copied + reason.len() + ADDED_ROOM);
    // The first Via line carries the `received` / `rport` noted for the request, if any (the
    // noted address is text this node wrote).
    let noted = request.noted_via();
    for (i, h) in request.headers().iter().enumerate() {
        if h.kind != HeaderKind::Via {
            continue;
        }
        match noted {
            Some(n) if n.line == i => {
                b.push_name(&VIA);
                b.value_with(
                    |w| {
                        n.pieces(&mut |p| {
                            w.str(p);
                        })
                    },
                    scan,
                );
            }
            _ => b.named_parts(&VIA, &[h.value], scan),
        }
    }
    b.named_parts(&FROM, &[from], scan);
    match to_tag {
        Some(tag) if code > 100 && to.tag().is_none() => {
            // The caller's tag is not the request's: it is always scanned.
            b.push_name(&TO);
            let value = b.head.len();
            b.head.extend_from_slice(to_raw.as_bytes());
            b.head.extend_from_slice(b";tag=");
            let tag_at = b.head.len();
            b.head.extend_from_slice(tag);
            clean_from(
                &mut b.head,
                if scan == Scan::Blank { value } else { tag_at },
            );
            b.head.extend_from_slice(b"\r\n");
        }
        _ => b.named_parts(&TO, &[to_raw], scan),
    }
    b.named_parts(&CALL_ID, &[call_id], scan);
    b.named_parts(&CSEQ, &[cseq], scan);
    if code == 100 {
        if let Some(ts) = request.header(HeaderKind::Timestamp) {
            b.push_header("Timestamp", ts);
        }
    }
    Ok(b)
}

/// The ACK a client INVITE transaction sends for a 300-699 response (RFC 3261 17.1.1.3):
/// Request-URI, top Via, From, Call-ID and Route of the INVITE, To of the response and
/// CSeq with the INVITE's number and method ACK.
pub fn ack_for_non2xx(invite: &Message<'_>, response: &Message<'_>) -> Result<Vec<u8>, ParseError> {
    let ruri = invite.request_uri().ok_or(ParseError::BadRequestLine)?;
    let top_via = invite
        .list_values(HeaderKind::Via)
        .next()
        .ok_or(ParseError::MissingHeader("Via"))??;
    let cseq = invite.cseq()?;
    let mut b = MessageBuilder::request("ACK", ruri)
        .header("Via", top_via)
        .header("Max-Forwards", "70")
        .header("From", invite.required(HeaderKind::From)?)
        .header("To", response.required(HeaderKind::To)?)
        .header("Call-ID", invite.call_id()?)
        .header("CSeq", &format!("{} ACK", cseq.seq));
    for route in invite.header_values(HeaderKind::Route) {
        b.push_header("Route", route);
    }
    Ok(b.build())
}

/// The default reason phrase of a status code (RFC 3261 21, RFC 3329, RFC 5626).
pub fn default_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_doubled_headers_fail_as_required_reads_them() {
        let lines = [
            "Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1",
            "From: <sip:a@b>;tag=1",
            "To: <sip:a@b>",
            "Call-ID: c",
            "CSeq: 1 REGISTER",
            "Max-Forwards: 70",
        ];
        // Each line left out, and each doubled.
        for i in 0..lines.len() {
            for doubled in [false, true] {
                let mut head = String::from("REGISTER sip:b SIP/2.0\r\n");
                for (k, l) in lines.iter().enumerate() {
                    let n = match (k == i, doubled) {
                        (false, _) => 1,
                        (true, false) => 0,
                        (true, true) => 2,
                    };
                    for _ in 0..n {
                        head.push_str(l);
                        head.push_str("\r\n");
                    }
                }
                head.push_str("\r\n");
                let Ok(m) = Message::parse(head.as_bytes()) else {
                    continue;
                };
                let by_required = m
                    .cached_to()
                    .map(|_| ())
                    .and_then(|_| m.required(HeaderKind::To).map(|_| ()))
                    .and_then(|_| m.required(HeaderKind::From).map(|_| ()))
                    .and_then(|_| m.call_id().map(|_| ()))
                    .and_then(|_| m.required(HeaderKind::CSeq).map(|_| ()))
                    .and_then(|_| m.cached_top_via().map(|_| ()));
                let built = response_to(&m, 200, "OK", Some("t")).map(|_| ());
                assert_eq!(built, by_required, "line {i} doubled {doubled}");
            }
        }
    }

    #[test]
    fn clean_from_blanks_what_a_byte_loop_blanks() {
        // Every length up to past the word scan's 64 bytes, CR, LF and their neighbours at
        // every position and in pairs, from every start.
        for len in 0..150usize {
            for at in 0..len.max(1) {
                for (c, d) in [
                    (b'\r', b'\n'),
                    (b'\n', b'\n'),
                    (b'\x0c', b'\x0e'),
                    (b'\r', b'a'),
                ] {
                    let mut v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if let Some(x) = v.get_mut(at) {
                        *x = c;
                    }
                    if let Some(x) = v.get_mut((at * 7 + 3) % len.max(1)) {
                        *x = d;
                    }
                    for start in [0, 1, at, len] {
                        let mut want = v.clone();
                        for b in want.iter_mut().skip(start) {
                            if matches!(*b, b'\r' | b'\n') {
                                *b = b' ';
                            }
                        }
                        let mut got = v.clone();
                        clean_from(&mut got, start);
                        assert_eq!(got, want, "len {len} at {at} start {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn values_written_in_pieces_are_cleaned_whole() {
        let long = "x".repeat(40) + "\r\n" + &"y".repeat(40);
        let mut b = MessageBuilder::response(200, "OK");
        b.push_header_parts("A", &["1\r", "\n2", &long]);
        b.push_header_with("B", |w| {
            w.str("\n").decimal(7).str("a\rb");
        });
        b.push_header_with("C", |w| {
            w.str(&long);
        });
        let m = String::from_utf8(b.build()).unwrap();
        let spaced = "x".repeat(40) + "  " + &"y".repeat(40);
        assert_eq!(
            m,
            format!("SIP/2.0 200 OK\r\nA: 1  2{spaced}\r\nB:  7a b\r\nC: {spaced}\r\nContent-Length: 0\r\n\r\n")
        );
    }

    /// Lines rendered once and pushed whole are the bytes the same pushes write in place,
    /// a CR or LF in a value blanked alike.
    #[test]
    fn header_lines_rendered_once_are_what_the_pushes_write() {
        const PATH: StaticName<4> = StaticName::new(b"Path");
        for host in ["pcscf.example.org", "a\r\nVia: x", ""] {
            let write = |b: &mut MessageBuilder| {
                b.push_named_parts(&PATH, &["<sip:term@", host, ";lr>"]);
                b.push_header("Service-Route", host);
            };
            let lines = HeaderLines::new(write);
            let mut direct = MessageBuilder::response(200, "OK");
            write(&mut direct);
            let mut copied = MessageBuilder::response(200, "OK");
            copied.push_lines(&lines);
            assert_eq!(copied.build(), direct.build());
            assert!(lines.as_bytes().ends_with(b"\r\n"));
            assert_eq!(lines.as_bytes().iter().filter(|&&b| b == b'\n').count(), 2);
        }
    }

    /// A name made once is written as a `&str` name is, and a name that is not a token,
    /// or Content-Length in either form and any case, is refused where it is made.
    #[test]
    fn static_names_write_what_str_names_write_and_refuse_bad_ones() {
        const X_NAME: StaticName<6> = StaticName::new(b"X-Name");
        let mut a = MessageBuilder::response(200, "OK");
        let mut b = MessageBuilder::response(200, "OK");
        a.push_named_parts(&X_NAME, &["1\r", "\n2"]);
        a.push_named_with(&X_NAME, |w| {
            w.str("v").decimal(9);
        });
        b.push_header_parts("X-Name", &["1\r", "\n2"]);
        b.push_header_with("X-Name", |w| {
            w.str("v").decimal(9);
        });
        assert_eq!(a.build(), b.build());
        for bad in [
            &b"Content-Length"[..],
            b"content-LENGTH",
            b"l",
            b"L",
            b"X Y",
            b"X:",
            b"X\r",
            b"X\n",
            b"",
        ] {
            let refused = std::panic::catch_unwind(|| match bad.len() {
                0 => drop(StaticName::<0>::new(&[])),
                1 => drop(StaticName::<1>::new(bad.try_into().unwrap())),
                2 => drop(StaticName::<2>::new(bad.try_into().unwrap())),
                3 => drop(StaticName::<3>::new(bad.try_into().unwrap())),
                _ => drop(StaticName::<14>::new(bad.try_into().unwrap())),
            });
            assert!(refused.is_err(), "{bad:?}");
        }
        let _ = StaticName::new(b"Content-Lengths");
    }

    /// A response copied without the scan (its request's values are clean) is byte for byte
    /// the scanned one, over the fixture messages, folded forms of them and hostile To tags;
    /// a folded request's values are still blanked.
    #[test]
    fn clean_requests_copy_without_the_scan_what_the_scan_writes() {
        let mut checked = (0, 0);
        for raw in crate::sip::test_fixtures::fixture_messages() {
            let mut forms = vec![raw.clone()];
            // Each header line folded once after its colon's first following space.
            let head_end = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(raw.len());
            for (i, _) in raw[..head_end]
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b':')
            {
                if raw.get(i + 1) == Some(&b' ') {
                    let mut f = raw.clone();
                    f.splice(i + 1..i + 2, b"\r\n  ".iter().copied());
                    forms.push(f);
                }
            }
            for form in &forms {
                let Ok(m) = Message::parse(form) else {
                    continue;
                };
                for (code, tag) in [(100, None), (401, Some("a1b2")), (200, Some("t\r\nX: y"))] {
                    let (Ok(fast), Ok(scanned)) = (
                        response_to(&m, code, default_reason(code), tag),
                        response_with(
                            &m,
                            code,
                            default_reason(code),
                            tag.map(str::as_bytes),
                            Scan::Blank,
                        ),
                    ) else {
                        continue;
                    };
                    let fast = fast.build();
                    assert_eq!(fast, scanned.build(), "{}", String::from_utf8_lossy(form));
                    let head = &fast[..fast.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
                    assert!(head
                        .split(|&b| b == b'\n')
                        .all(|l| !l.contains(&b'\r') || l.ends_with(b"\r")));
                    if m.values_are_clean() {
                        checked.0 += 1;
                    } else {
                        checked.1 += 1;
                    }
                }
            }
        }
        assert!(checked.0 > 50 && checked.1 > 50, "{checked:?}");
    }

    #[test]
    fn builds_with_content_length() {
        let m = MessageBuilder::request("MESSAGE", "sip:b@example.com")
            .header("Via", "SIP/2.0/TCP a.example.com;branch=z9hG4bK1")
            .header("Content-Length", "999")
            .header("X-Evil", "a\r\nInjected: yes")
            .body("text/plain", b"hello")
            .build();
        assert_eq!(
            m,
            b"MESSAGE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/TCP a.example.com;branch=z9hG4bK1\r\nX-Evil: a  Injected: yes\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        );
    }
}
