//! Typed SIP parse errors and the SIP status each one maps to (RFC 3261 8.2, 21.4, 21.5).

use akagate_proto::sipscan::ScanError;
use thiserror::Error;

/// Why a SIP message (or one of its headers) was rejected.
///
/// Every variant maps to a response code and a reason phrase with [`ParseError::status_code`]
/// and [`ParseError::reason_phrase`]; a malformed *response* is simply dropped by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The input ends before the empty line that closes the header section.
    #[error("truncated message")]
    Truncated,
    /// The start line and headers are not UTF-8 (RFC 3261 25.1: TEXT-UTF8).
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// The request line is not `Method SP Request-URI SP SIP-Version` (RFC 3261 7.1).
    #[error("malformed Request-Line")]
    BadRequestLine,
    /// The status line is not `SIP-Version SP 3DIGIT SP Reason-Phrase` (RFC 3261 7.2).
    #[error("malformed Status-Line")]
    BadStatusLine,
    /// The method is not a token.
    #[error("malformed method")]
    BadMethod,
    /// The status code is not three digits in 100..=699.
    #[error("malformed status code")]
    BadStatusCode,
    /// A version other than SIP/2.0 (RFC 3261 8.2.2 -> 505).
    #[error("unsupported SIP version")]
    UnsupportedVersion,
    /// A header line without a colon, with a bad name or with a stray CR/LF.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A NUL byte in the start line or a header (RFC 3261 25.1).
    #[error("NUL byte in a header")]
    NulInHeader,
    /// More headers than the parser accepts.
    #[error("too many headers")]
    TooManyHeaders,
    /// Content-Length is not a non-negative decimal number.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// Two or more Content-Length headers (RFC 4475 3.3.9).
    #[error("multiple Content-Length headers")]
    MultipleContentLength,
    /// Fewer body bytes than Content-Length announces (RFC 3261 18.3).
    #[error("body shorter than Content-Length")]
    BodyTooShort,
    /// A stream-transport message without Content-Length (RFC 3261 18.3, 20.14).
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// The header section or body exceeds the configured limit.
    #[error("message too large")]
    TooLarge,
    /// A mandatory header is absent (RFC 3261 8.1.1).
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A single-valued header appears more than once (RFC 3261 7.3.1).
    #[error("multiple {0} headers")]
    MultipleHeaders(&'static str),
    /// A header the parser understands has a malformed value.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// A malformed URI.
    #[error("malformed URI")]
    BadUri,
    /// A Request-URI scheme other than sip, sips or tel (RFC 3261 8.2.2.1 -> 416).
    #[error("unsupported URI scheme")]
    UnsupportedUriScheme,
    /// A Request-URI carrying `?headers` (RFC 3261 19.1.5, RFC 4475 3.1.2.11).
    #[error("Request-URI with headers")]
    RequestUriHeaders,
    /// A quoted string without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A malformed header or URI parameter (for example an empty `;;`).
    #[error("malformed parameter")]
    BadParam,
    /// The CSeq method differs from the request method (RFC 4475 3.1.2.17).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
}

impl From<ScanError> for ParseError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::BadHeaderLine => ParseError::BadHeaderLine,
            ScanError::NulInHeader => ParseError::NulInHeader,
            ScanError::BadContentLength => ParseError::BadContentLength,
            ScanError::ConflictingContentLength => ParseError::MultipleContentLength,
            ScanError::MissingContentLength => ParseError::MissingContentLength,
            ScanError::HeadTooLong(_) | ScanError::BodyTooLong(_) => ParseError::TooLarge,
        }
    }
}

impl ParseError {
    /// The SIP status code a server answers a request that failed this way with.
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion => 505,
            ParseError::UnsupportedUriScheme => 416,
            ParseError::TooLarge => 513,
            _ => 400,
        }
    }

    /// The reason phrase for that response, naming the cause after the standard phrase.
    pub fn reason_phrase(&self) -> String {
        let standard = match self.status_code() {
            505 => "Version Not Supported",
            416 => "Unsupported URI Scheme",
            513 => "Message Too Large",
            _ => "Bad Request",
        };
        format!("{standard}: {self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_status() {
        assert_eq!(ParseError::MissingHeader("To").status_code(), 400);
        assert_eq!(
            ParseError::MissingHeader("To").reason_phrase(),
            "Bad Request: missing To header"
        );
        assert_eq!(ParseError::UnsupportedVersion.status_code(), 505);
        assert_eq!(ParseError::UnsupportedUriScheme.status_code(), 416);
    }
}
