//! Lexical helpers shared by the SIP parsers: LWS, tokens, quoted strings and comma lists
//! (RFC 3261 25.1). Header values keep folded line breaks, so CR and LF count as whitespace here.

use std::borrow::Cow;

use super::error::ParseError;

/// True for SP, HTAB and the CR/LF of a folded line (RFC 3261 25.1 LWS).
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing linear white space.
pub(crate) fn trim_lws(s: &str) -> &str {
    // Byte-wise: LWS is ASCII, so the cut is always on a character boundary (cheaper than
    // `trim_matches` over a char set, which decodes UTF-8 on the way).
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// `s` without leading linear white space.
#[inline]
pub(crate) fn trim_lws_start(s: &str) -> &str {
    // Byte-wise, as [`trim_lws`]: the cut is at an ASCII byte or the end.
    let start = s.bytes().position(|c| !is_lws(c)).unwrap_or(s.len());
    &s[start..]
}

pub(crate) use akagate_proto::sipscan::is_token_char;

/// The first `b` (ASCII, so the index is a character boundary) in `s`: eight bytes a step
/// over the first 32 (`swar::find_byte_near`: where `memchr`'s set-up, and `str::find`'s
/// searcher, cost more than the scan, and where the byte sought in a URI or name-addr
/// usually is), `memchr` over the rest.
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    akagate_proto::swar::find_byte_near(b, s.as_bytes())
}

/// `s` split at its first `b` (ASCII), without it.
pub(crate) fn split_once_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find_byte(s, b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// True if `s` is a non-empty `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Given `s[start] == b'"'`, the index just past the closing quote (backslash escapes honoured).
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Result<usize, ParseError> {
    let mut i = start + 1;
    // From one `"` or `\` to the next, eight bytes a step: a quoted value (a feature tag's
    // URN, a display name) runs dozens of bytes between them.
    while let Some(at) = s
        .get(i..)
        .and_then(|rest| akagate_proto::swar::find_of_two_near(b'"', b'\\', rest))
    {
        i += at;
        if s[i] == b'"' {
            return Ok(i + 1);
        }
        // A quoted-pair: the escaped byte is skipped, whatever it is.
        i += 2;
    }
    Err(ParseError::UnterminatedQuote)
}

/// The content of a quoted string (`"..."`, quotes included in `s`) with escapes resolved;
/// `s` without quotes is returned unchanged.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => return Cow::Borrowed(s),
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Iterator over the comma-separated elements of a header value, trimmed of LWS, that does not
/// split inside quoted strings or `<...>` (RFC 3261 7.3.1). Empty elements are yielded as `""`.
#[derive(Debug, Clone)]
pub struct ListIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> ListIter<'a> {
    /// Splits `value`.
    pub fn new(value: &'a str) -> Self {
        ListIter { rest: Some(value) }
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Result<&'a str, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?;
        let b = s.as_bytes();
        let mut i = 0;
        // Only `"`, `<` and `,` matter outside `<...>`, only `>` inside: jump between them.
        while let Some(at) = akagate_proto::swar::find_of_three_near(b'"', b'<', b',', &b[i..]) {
            i += at;
            match b[i] {
                b'"' => match quoted_end(b, i) {
                    Ok(end) => i = end,
                    Err(e) => {
                        self.rest = None;
                        return Some(Err(e));
                    }
                },
                b'<' => match akagate_proto::swar::find_byte_near(b'>', &b[i + 1..]) {
                    Some(close) => i += close + 2,
                    None => break,
                },
                _ => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(Ok(trim_lws(&s[..i])));
                }
            }
        }
        self.rest = None;
        Some(Ok(trim_lws(s)))
    }
}

/// True if every element [`ListIter`] splits `value` into is a `token` (an option-tag list:
/// Require, Proxy-Require, Supported, RFC 3261 20.32), in one walk: LWS, a token run, LWS,
/// then a `,` or the end. The same answer as the split and a check of each element (a test
/// compares the two): a `"` or `<` is in no token, so wherever the split would have honoured
/// one, some element is not a token and the walk refuses it too.
pub fn is_token_list(value: &str) -> bool {
    let b = value.as_bytes();
    let skip_lws = |mut i: usize| {
        while b.get(i).copied().is_some_and(is_lws) {
            i += 1;
        }
        i
    };
    let mut i = skip_lws(0);
    loop {
        let end = akagate_proto::simd::token_end(b, i);
        if end == i {
            return false;
        }
        i = skip_lws(end);
        match b.get(i) {
            None => return true,
            Some(b',') => i = skip_lws(i + 1),
            Some(_) => return false,
        }
    }
}

/// Parses a decimal number of at most `max`; `None` on an empty, non-digit or too large value.
pub(crate) fn parse_decimal(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    // One pass: a non-digit anywhere, an overflow or a value past `max` is `None`, whichever
    // comes first (the same answer as checking the digits first).
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng};

    #[test]
    fn list_respects_quotes_and_angles() {
        let v = r#""a, b" <sip:x@y;p=1,2>;q=1 , <sip:z>,"#;
        let parts: Vec<_> = ListIter::new(v).map(|r| r.unwrap()).collect();
        assert_eq!(parts, vec![r#""a, b" <sip:x@y;p=1,2>;q=1"#, "<sip:z>", ""]);
    }

    #[test]
    fn escaped_quote_does_not_close() {
        let parts: Vec<_> = ListIter::new(r#""x \", y", z"#)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(parts, vec![r#""x \", y""#, "z"]);
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), "J Rosenberg \\\"");
    }

    #[test]
    fn quoted_end_is_the_byte_loops() {
        // The byte-at-a-time walk `quoted_end` replaced.
        fn by_bytes(s: &[u8], start: usize) -> Result<usize, ParseError> {
            let mut i = start + 1;
            while let Some(&b) = s.get(i) {
                match b {
                    b'\\' => i += 2,
                    b'"' => return Ok(i + 1),
                    _ => i += 1,
                }
            }
            Err(ParseError::UnterminatedQuote)
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet = [b'"', b'\\', b'a', b' ', b'<', 0x80];
        for len in 1..120 {
            for _ in 0..300 {
                let mut s: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        // Mostly filler, so quotes and escapes land at every distance.
                        if state.is_multiple_of(6) {
                            alphabet[(state / 6 % alphabet.len() as u64) as usize]
                        } else {
                            b'x'
                        }
                    })
                    .collect();
                s[0] = b'"';
                assert_eq!(quoted_end(&s, 0), by_bytes(&s, 0), "{s:?}");
            }
        }
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert_eq!(
            ListIter::new("\"abc").next(),
            Some(Err(ParseError::UnterminatedQuote))
        );
    }

    #[test]
    fn find_byte_finds_the_first_anywhere() {
        for len in [0, 1, 15, 16, 17, 40] {
            let s = "a".repeat(len);
            assert_eq!(find_byte(&s, b':'), None);
            for at in 0..len {
                let t = format!("{}:{}:", &s[..at], &s[at..]);
                assert_eq!(find_byte(&t, b':'), Some(at), "{t}");
            }
        }
    }

    #[test]
    fn decimal_bounds() {
        assert_eq!(parse_decimal("0068", 255), Some(68));
        assert_eq!(parse_decimal("256", 255), None);
        assert_eq!(parse_decimal("-1", 255), None);
        assert_eq!(parse_decimal("99999999999999999999999", u64::MAX), None);
    }

    /// The split and a check of each element: what [`is_token_list`] stands in for.
    fn is_token_list_by_split(value: &str) -> bool {
        ListIter::new(value).all(|e| e.is_ok_and(is_token))
    }

    #[test]
    fn a_token_list_walk_is_the_split_and_check() {
        for (v, ok) in [
            ("sec-agree", true),
            ("path, sec-agree", true),
            ("a ,\r\n b", true),
            ("", false),
            ("a,", false),
            (",a", false),
            ("a,,b", false),
            ("a b", false),
            ("\"a\"", false),
            ("<a>", false),
            ("a;b", false),
        ] {
            assert_eq!(is_token_list(v), ok, "{v:?}");
            assert_eq!(is_token_list_by_split(v), ok, "{v:?}");
        }
        // Every byte value in every position of a short list.
        for c in 0..=255u8 {
            for at in 0..12 {
                let mut v = b"ab, c-d ,e".to_vec();
                v.insert(at.min(v.len()), c);
                let Ok(t) = std::str::from_utf8(&v) else {
                    continue;
                };
                assert_eq!(is_token_list(t), is_token_list_by_split(t), "{t:?}");
            }
        }
        const PIECES: [&str; 16] = [
            "sec-agree",
            "path",
            ",",
            ", ",
            " ",
            "\t",
            "\r\n ",
            "\"",
            "\"x,y\"",
            "<",
            ">",
            "<a,b>",
            "\u{e9}",
            ";",
            "x",
            "\\",
        ];
        let mut rng = StdRng::seed_from_u64(0x5eca_9ee0);
        let mut accepted = 0;
        for _ in 0..200_000 {
            let n = rng.gen_range(0..8);
            let v: String = (0..n)
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect();
            let ok = is_token_list(&v);
            accepted += usize::from(ok);
            assert_eq!(ok, is_token_list_by_split(&v), "{v:?}");
        }
        assert!(accepted > 1000, "{accepted}");
    }

    /// The two-pass form `parse_decimal` had: every byte a digit, then the value.
    fn parse_decimal_two_pass(s: &str, max: u64) -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut v: u64 = 0;
        for b in s.bytes() {
            v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            if v > max {
                return None;
            }
        }
        Some(v)
    }

    #[test]
    fn the_one_pass_decimal_is_the_two_pass_one() {
        const ALPHA: &[u8] = b"0123456789 x/:";
        let maxes = [0, 9, 255, 699, 65535, u64::from(u32::MAX), u64::MAX];
        let mut s = Vec::new();
        fn every(s: &mut Vec<u8>, left: usize, maxes: &[u64]) {
            let t = std::str::from_utf8(s).unwrap();
            for &max in maxes {
                assert_eq!(
                    parse_decimal(t, max),
                    parse_decimal_two_pass(t, max),
                    "{t:?}"
                );
            }
            if left > 0 {
                for &c in ALPHA {
                    s.push(c);
                    every(s, left - 1, maxes);
                    s.pop();
                }
            }
        }
        every(&mut s, 4, &maxes);
        let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let state: u64 = rng.gen();
            let len = (state % 26) as usize;
            let t: String = (0..len)
                .map(|i| {
                    let r = (state >> (i % 60)) as usize;
                    if r.is_multiple_of(17) {
                        'x'
                    } else {
                        char::from(b'0' + (r % 10) as u8)
                    }
                })
                .collect();
            for &max in &maxes {
                assert_eq!(
                    parse_decimal(&t, max),
                    parse_decimal_two_pass(&t, max),
                    "{t:?}"
                );
            }
        }
    }
}
