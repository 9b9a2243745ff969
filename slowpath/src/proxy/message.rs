//! A small owned SIP message (RFC 3261 7) the registrar and proxy edit and re-serialise:
//! start line, headers in order (compact names expanded), body. Private to this crate until
//! the `sip` module's builder covers editing; parsing never panics on input.

use thiserror::Error;

use crate::secagree::split_outside_quotes;

/// Upper bound on headers of one message.
const MAX_HEADERS: usize = 128;

/// Why bytes are not a SIP message we can handle.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MsgError {
    /// No blank line ends the header section.
    #[error("incomplete header section")]
    Incomplete,
    /// Headers are not UTF-8.
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// The start line is malformed.
    #[error("bad start line")]
    BadStartLine,
    /// A header line has no colon or an empty name.
    #[error("bad header line")]
    BadHeader,
    /// Too many headers.
    #[error("too many headers")]
    TooManyHeaders,
    /// A header the message needs is missing or malformed.
    #[error("missing or bad {0}")]
    Missing(&'static str),
}

/// Request or status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// Method (case-sensitive, RFC 3261 7.1).
        method: String,
        /// Request-URI.
        uri: String,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// An owned SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipMsg {
    /// Start line.
    pub start: Start,
    /// Headers in order, names in their long form.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// RFC 3261 7.3.3 and later RFCs' compact forms.
fn long_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes().first().map(u8::to_ascii_lowercase) {
        Some(b'i') => "Call-ID",
        Some(b'm') => "Contact",
        Some(b'e') => "Content-Encoding",
        Some(b'l') => "Content-Length",
        Some(b'c') => "Content-Type",
        Some(b'f') => "From",
        Some(b's') => "Subject",
        Some(b'k') => "Supported",
        Some(b't') => "To",
        Some(b'v') => "Via",
        Some(b'o') => "Event",
        Some(b'u') => "Allow-Events",
        Some(b'r') => "Refer-To",
        Some(b'b') => "Referred-By",
        Some(b'x') => "Session-Expires",
        Some(b'a') => "Accept-Contact",
        Some(b'j') => "Reject-Contact",
        Some(b'd') => "Request-Disposition",
        _ => name,
    }
}

impl SipMsg {
    /// Parses one complete message (TCP-framed or one datagram).
    pub fn parse(bytes: &[u8]) -> Result<Self, MsgError> {
        let (head_end, body_start) = find_blank_line(bytes).ok_or(MsgError::Incomplete)?;
        let head = std::str::from_utf8(bytes.get(..head_end).ok_or(MsgError::Incomplete)?)
            .map_err(|_| MsgError::NotUtf8)?;
        let mut lines: Vec<String> = Vec::new();
        for line in head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
            // RFC 3261 7.3.1: a line starting with whitespace continues the previous one.
            if line.starts_with([' ', '\t']) {
                let last = lines.last_mut().ok_or(MsgError::BadStartLine)?;
                last.push(' ');
                last.push_str(line.trim_start());
            } else {
                lines.push(line.to_string());
            }
        }
        let mut it = lines.into_iter();
        let start = parse_start(&it.next().ok_or(MsgError::BadStartLine)?)?;
        let mut headers = Vec::new();
        for line in it {
            if headers.len() == MAX_HEADERS {
                return Err(MsgError::TooManyHeaders);
            }
            let (n, v) = line.split_once(':').ok_or(MsgError::BadHeader)?;
            let n = n.trim();
            if n.is_empty() || n.contains(' ') {
                return Err(MsgError::BadHeader);
            }
            headers.push((long_name(n).to_string(), v.trim().to_string()));
        }
        let mut m = SipMsg {
            start,
            headers,
            body: Vec::new(),
        };
        let rest = bytes.get(body_start..).unwrap_or(&[]);
        let len = match m.header("Content-Length") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| MsgError::Missing("Content-Length"))?,
            None => rest.len(),
        };
        m.body = rest
            .get(..len)
            .ok_or(MsgError::Missing("Content-Length"))?
            .to_vec();
        Ok(m)
    }

    /// A request with no headers.
    pub fn request(method: &str, uri: &str) -> Self {
        SipMsg {
            start: Start::Request {
                method: method.into(),
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The method of a request, or of the CSeq of a response.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => self
                .header("CSeq")
                .and_then(|c| c.split_whitespace().nth(1)),
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name`, split at commas outside quotes (RFC 3261 7.3.1).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_outside_quotes(v, b',').unwrap_or_else(|_| vec![v.as_str()]))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Whether an option tag appears in header `name` (Require, Proxy-Require, Supported).
    pub fn has_tag(&self, name: &str, tag: &str) -> bool {
        self.list(name).iter().any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// Removes every header called `name`.
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Appends a header.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }

    /// Inserts a header before all others.
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.headers.insert(0, (name.into(), value.into()));
    }

    /// Removes the first comma-separated value of the first `name` header (the top Via or
    /// Route), returning it.
    pub fn pop_first(&mut self, name: &str) -> Option<String> {
        let i = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        let v = self.headers.get(i)?.1.clone();
        let parts = split_outside_quotes(&v, b',').ok()?;
        let first = parts.first()?.trim().to_string();
        let rest: Vec<&str> = parts.iter().skip(1).map(|s| s.trim()).collect();
        if rest.is_empty() {
            self.headers.remove(i);
        } else if let Some(h) = self.headers.get_mut(i) {
            h.1 = rest.join(", ");
        }
        Some(first)
    }

    /// Serialises with a recomputed Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = match &self.start {
            Start::Request { method, uri } => format!("{method} {uri} SIP/2.0\r\n"),
            Start::Response { code, reason } => format!("SIP/2.0 {code} {reason}\r\n"),
        };
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case("Content-Length") {
                s.push_str(n);
                s.push_str(": ");
                s.push_str(v);
                s.push_str("\r\n");
            }
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// A response to this request (RFC 3261 8.2.6.2): Via, From, To (with `to_tag` added when
    /// the To has none), Call-ID and CSeq copied.
    pub fn response(&self, code: u16, reason: &str, to_tag: &str) -> SipMsg {
        let mut r = SipMsg {
            start: Start::Response {
                code,
                reason: reason.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        for (n, v) in &self.headers {
            let copy = ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .any(|h| n.eq_ignore_ascii_case(h));
            if copy {
                let v = if n.eq_ignore_ascii_case("To") && code > 100 && tag_of(v).is_none() {
                    format!("{v};tag={to_tag}")
                } else {
                    v.clone()
                };
                r.headers.push((n.clone(), v));
            }
        }
        r
    }
}

/// The `tag` parameter of a From/To value (outside the `<...>`).
pub fn tag_of(v: &str) -> Option<&str> {
    let params = match v.rfind('>') {
        Some(i) => v.get(i + 1..)?,
        None => v,
    };
    params.split(';').skip(1).find_map(|p| {
        let (n, val) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case("tag").then_some(val.trim())
    })
}

/// The URI of a name-addr or addr-spec (`"A" <sip:a@b>;tag=1` or `sip:a@b;tag=1`).
pub fn uri_of(v: &str) -> &str {
    if let (Some(a), Some(b)) = (v.find('<'), v.find('>')) {
        if a < b {
            return v.get(a + 1..b).unwrap_or("").trim();
        }
    }
    v.split(';').next().unwrap_or("").trim()
}

/// A URI without its parameters and headers, lower-cased, for identity comparison
/// (`sip:User@Host;user=phone` -> `sip:user@host`).
pub fn identity_key(uri: &str) -> String {
    uri.split([';', '?'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `branch` parameter of a Via value.
pub fn via_branch(via: &str) -> Option<&str> {
    via.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case("branch").then_some(v.trim())
    })
}

fn find_blank_line(b: &[u8]) -> Option<(usize, usize)> {
    let crlf = b
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_start(line: &str) -> Result<Start, MsgError> {
    let mut p = line.splitn(3, ' ');
    let (a, b, c) = (
        p.next().unwrap_or(""),
        p.next().unwrap_or(""),
        p.next().unwrap_or(""),
    );
    if a == "SIP/2.0" {
        let code = b.parse::<u16>().map_err(|_| MsgError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(MsgError::BadStartLine);
        }
        return Ok(Start::Response {
            code,
            reason: c.to_string(),
        });
    }
    if c != "SIP/2.0"
        || a.is_empty()
        || b.is_empty()
        || !a.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-')
    {
        return Err(MsgError::BadStartLine);
    }
    Ok(Start::Request {
        method: a.into(),
        uri: b.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_compact_folded_and_round_trip() {
        let raw = b"REGISTER sip:ims.example SIP/2.0\r\nv: SIP/2.0/TCP [2001:db8::1]:8904;branch=z9hG4bK1, SIP/2.0/UDP x;branch=z9hG4bK2\r\nf: <sip:a@ims.example>;tag=9\r\nt: <sip:a@ims.example>\r\nSubject: folded\r\n  line\r\nl: 4\r\n\r\nbodyEXTRA";
        let m = SipMsg::parse(raw).unwrap();
        assert_eq!(m.method(), Some("REGISTER"));
        assert_eq!(m.list("Via").len(), 2);
        assert_eq!(m.header("subject"), Some("folded line"));
        assert_eq!(m.body, b"body");
        assert_eq!(tag_of(m.header("From").unwrap()), Some("9"));
        assert_eq!(uri_of(m.header("To").unwrap()), "sip:a@ims.example");
        let mut m2 = SipMsg::parse(&m.to_bytes()).unwrap();
        assert_eq!(m2, m);
        assert_eq!(via_branch(&m2.pop_first("Via").unwrap()), Some("z9hG4bK1"));
        assert_eq!(
            m2.list("Via"),
            vec!["SIP/2.0/UDP x;branch=z9hG4bK2".to_string()]
        );
    }

    #[test]
    fn malformed_is_an_error() {
        for raw in [
            &b""[..],
            b"REGISTER sip:x SIP/2.0\r\nVia: a\r\n",
            b"REGISTER sip:x SIP/3.0\r\n\r\n",
            b"SIP/2.0 99 x\r\n\r\n",
            b"REGISTER sip:x SIP/2.0\r\nnocolon\r\n\r\n",
            b"REGISTER sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nab",
            b"REGISTER sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b" REGISTER sip:x SIP/2.0\r\n\r\n",
            b"REGISTER sip:x SIP/2.0\r\nX: \xff\r\n\r\n",
        ] {
            assert!(SipMsg::parse(raw).is_err(), "{raw:?}");
        }
    }
}
