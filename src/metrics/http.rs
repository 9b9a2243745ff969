//! The little HTTP/1.1 the metrics endpoint speaks (RFC 9112): find the end of a bounded
//! request head, parse its request line, and build a `Connection: close` response. Pure
//! functions over bytes; the socket handling is in the parent module.

use std::fmt::Write as _;

/// Longest request head accepted (request line and header fields), in bytes.
pub const MAX_HEAD: usize = 8192;

/// The path that serves the metrics.
pub const METRICS_PATH: &str = "/metrics";

/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A request line that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, case-sensitive (RFC 9110 9.1).
    pub method: String,
    /// The path of the target, without the query.
    pub path: String,
}

/// Why a request head was refused, each with its status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is longer than [`MAX_HEAD`] (431).
    #[error("request head longer than {MAX_HEAD} bytes")]
    TooLarge,
    /// The request line is not `METHOD SP target SP HTTP/x.y` (400).
    #[error("malformed request line")]
    BadRequestLine,
    /// A version other than HTTP/1.0 or HTTP/1.1 (505).
    #[error("unsupported HTTP version")]
    Version,
}

impl HttpError {
    /// The status line's code and reason.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HttpError::TooLarge => (431, "Request Header Fields Too Large"),
            HttpError::BadRequestLine => (400, "Bad Request"),
            HttpError::Version => (505, "HTTP Version Not Supported"),
        }
    }
}

/// The length of the head in `buf` including its empty line, once it is complete; an error
/// when `buf` already holds more than [`MAX_HEAD`] bytes without one.
pub fn head_end(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    // RFC 9112 2.2: a recipient may accept a bare LF as a line terminator.
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let end = match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match end {
        Some(n) if n <= MAX_HEAD => Ok(Some(n)),
        Some(_) => Err(HttpError::TooLarge),
        None if buf.len() > MAX_HEAD => Err(HttpError::TooLarge),
        None => Ok(None),
    }
}

/// Parses the request line of a complete head (RFC 9112 3).
pub fn parse_request(head: &[u8]) -> Result<Request, HttpError> {
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(HttpError::BadRequestLine)?;
    let line = head.get(..line_end).ok_or(HttpError::BadRequestLine)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| HttpError::BadRequestLine)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    // RFC 9110 5.6.2: a method is a token.
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) || target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(HttpError::BadRequestLine);
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Err(HttpError::Version),
        _ => return Err(HttpError::BadRequestLine),
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// What to answer a parsed request: the metrics for `GET` / `HEAD /metrics` (no body for
/// HEAD, RFC 9110 9.3.2), 405 for another method there, 404 for any other path.
pub fn route(req: &Request) -> Route {
    if req.path != METRICS_PATH {
        return Route::Status(404, "Not Found");
    }
    match req.method.as_str() {
        "GET" => Route::Metrics { with_body: true },
        "HEAD" => Route::Metrics { with_body: false },
        _ => Route::MethodNotAllowed,
    }
}

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// 200 with the metrics (the body only for GET).
    Metrics {
        /// False for HEAD.
        with_body: bool,
    },
    /// 405 with `Allow: GET, HEAD`.
    MethodNotAllowed,
    /// Any other status with a one-line text body.
    Status(u16, &'static str),
}

/// A complete response: status line, `Content-Type`, `Content-Length`, `Connection: close`,
/// `extra` header lines, and `body` unless `head_only` (its length is announced either way).
pub fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    // Writing into a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// A short plain-text error response.
pub fn status_response(code: u16, reason: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    response(
        code,
        reason,
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_empty_line_within_the_limit() {
        assert_eq!(head_end(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(
            head_end(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nbody"),
            Ok(Some(34))
        );
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Ok(Some(16)));
        let long = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(head_end(&long), Err(HttpError::TooLarge));
        let mut late = vec![b'a'; MAX_HEAD];
        late.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head_end(&late), Err(HttpError::TooLarge));
        let mut exact = vec![b'a'; MAX_HEAD - 4];
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(head_end(&exact), Ok(Some(MAX_HEAD)));
    }

    #[test]
    fn request_lines_parse_and_bad_ones_are_typed() {
        let r = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(route(&r), Route::Metrics { with_body: true });
        let head = parse_request(b"HEAD /metrics HTTP/1.0\n\n").unwrap();
        assert_eq!(route(&head), Route::Metrics { with_body: false });
        let post = parse_request(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(route(&post), Route::MethodNotAllowed);
        // Methods are case-sensitive (RFC 9110 9.1).
        let lower = parse_request(b"get /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(route(&lower), Route::MethodNotAllowed);
        let other = parse_request(b"GET /metricsx HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(route(&other), Route::Status(404, "Not Found"));
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 x\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics FTP/1.1\r\n\r\n",
            b"GET /me\x01trics HTTP/1.1\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
            b"no line end",
        ] {
            assert_eq!(
                parse_request(bad),
                Err(HttpError::BadRequestLine),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_request(b"GET /metrics HTTP/2.0\r\n\r\n"),
            Err(HttpError::Version)
        );
    }

    #[test]
    fn responses_announce_their_length_and_close() {
        let r = response(200, "OK", CONTENT_TYPE, &[], b"a 1\n", false);
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
              Content-Length: 4\r\nConnection: close\r\n\r\na 1\n"
                .to_vec()
        );
        let head = response(200, "OK", CONTENT_TYPE, &[], b"a 1\n", true);
        assert!(head.ends_with(b"Content-Length: 4\r\nConnection: close\r\n\r\n"));
        let e = status_response(405, "Method Not Allowed", &[("Allow", "GET, HEAD")]);
        let text = String::from_utf8(e).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n405 Method Not Allowed\n"), "{text}");
    }
}
