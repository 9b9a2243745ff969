//! SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966) parsed in place; other schemes are kept
//! opaque so that a header may carry them (RFC 4475 3.3.4).

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use akagate_proto::simd;

use super::error::ParseError;
use super::lex::{find_byte, parse_decimal, split_once_byte};
use super::params::Params;

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other scheme (not routable by a P-CSCF).
    Other(&'a str),
}

/// A host: IPv4 address, IPv6 reference (`[2001:db8::1]`) or host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// Dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// IPv6 address (written in brackets).
    Ipv6(Ipv6Addr),
    /// A domain name, as written.
    Name(&'a str),
}

impl<'a> Host<'a> {
    /// Parses a host (`[v6]`, dotted IPv4 or hostname).
    pub fn parse(s: &'a str) -> Result<Host<'a>, ParseError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(ParseError::BadUri)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(Host::Ipv6)
                .map_err(|_| ParseError::BadUri);
        }
        if s.is_empty() {
            return Err(ParseError::BadUri);
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return parse_ipv4(s).map(Host::Ipv4).ok_or(ParseError::BadUri);
        }
        let ok = s.bytes().all(|b| HOST_NAME_BYTE[usize::from(b)]);
        if !ok || s.starts_with('.') || s.starts_with('-') {
            return Err(ParseError::BadUri);
        }
        Ok(Host::Name(s))
    }

    /// Parses `host[:port]` as in a URI or a Via sent-by.
    pub fn parse_with_port(s: &'a str) -> Result<(Host<'a>, Option<u16>), ParseError> {
        let (host, port) = if s.starts_with('[') {
            let close = find_byte(s, b']').ok_or(ParseError::BadUri)?;
            let (h, rest) = s.split_at(close + 1);
            match rest {
                "" => (h, None),
                _ => (h, Some(rest.strip_prefix(':').ok_or(ParseError::BadUri)?)),
            }
        } else {
            match split_once_byte(s, b':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        let port = match port {
            Some(p) => Some(parse_decimal(p, 65535).ok_or(ParseError::BadUri)? as u16),
            None => None,
        };
        Ok((Host::parse(host)?, port))
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed URI borrowing its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The whole URI as written.
    pub raw: &'a str,
    /// Its scheme.
    pub scheme: Scheme<'a>,
    /// User part (sip/sips), still %-escaped; may contain `;` (RFC 4475 3.1.1.9).
    pub user: Option<&'a str>,
    /// Password part (sip/sips), still %-escaped.
    pub password: Option<&'a str>,
    /// Host (sip/sips only).
    pub host: Option<Host<'a>>,
    /// Port (sip/sips only).
    pub port: Option<u16>,
    /// The subscriber number of a tel URI, or everything after `scheme:` for other schemes.
    pub opaque: &'a str,
    /// uri-parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// `?headers` part without the `?`.
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// `raw` of `scheme` with `rest` after its colon, before any part is read out of it.
    fn bare(raw: &'a str, scheme: Scheme<'a>, rest: &'a str) -> Self {
        Uri {
            raw,
            scheme,
            user: None,
            password: None,
            host: None,
            port: None,
            opaque: rest,
            params: Params::default(),
            headers: None,
        }
    }

    /// Parses a URI (no surrounding `<>`, no white space).
    pub fn parse(s: &'a str) -> Result<Uri<'a>, ParseError> {
        match s.strip_prefix("sip:") {
            Some(rest) => parse_sip_walk(s, rest),
            None => Uri::parse_general(s),
        }
    }

    /// [`Uri::parse`] step by step: the characters checked over the whole URI, then the
    /// scheme, then the scheme's part; what [`parse_sip_walk`] gives the same answer as (a
    /// test compares them), and what it falls back to.
    fn parse_general(s: &'a str) -> Result<Uri<'a>, ParseError> {
        check_uri_chars(s)?;
        let colon = find_byte(s, b':').ok_or(ParseError::BadUri)?;
        let scheme_s = &s[..colon];
        let valid_scheme = scheme_s
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme_s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(ParseError::BadUri);
        }
        let rest = &s[colon + 1..];
        let scheme = if scheme_s.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_s.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_s.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other(scheme_s)
        };
        let mut uri = Uri::bare(s, scheme, rest);
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip(rest, &mut uri)?,
            Scheme::Tel => {
                let (number, params) = rest.split_at(find_byte(rest, b';').unwrap_or(rest.len()));
                if number.is_empty() {
                    return Err(ParseError::BadUri);
                }
                uri.opaque = number;
                uri.params = Params::new(params);
                uri.params.validate().map_err(|_| ParseError::BadUri)?;
            }
            Scheme::Other(_) => {
                if rest.is_empty() {
                    return Err(ParseError::BadUri);
                }
            }
        }
        Ok(uri)
    }

    /// True for sip and sips URIs.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The user part with %-escapes decoded (RFC 3261 19.1.4).
    pub fn user_decoded(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(percent_decode)
    }
}

/// A `sip:` URI (`s`, `rest` after its `sip:`) read once: the user part's characters checked
/// on the walk to its `@`, the host by [`walk_hostpart`] (which refuses any byte a host
/// cannot hold), and only what follows the host and port (parameters, headers) by
/// [`check_uri_chars`]: the same checks as [`Uri::parse_general`]'s over the whole URI
/// first, with the same answer (every error there is `BadUri`). An escape or another byte
/// [`plain_uri_byte`] refuses in the user part, or an IPv6 reference, goes the general way.
fn parse_sip_walk<'a>(s: &'a str, rest: &'a str) -> Result<Uri<'a>, ParseError> {
    let b = rest.as_bytes();
    // The first `@` or byte `plain_uri_byte` refuses, sixteen bytes a compare.
    let stop = simd::user_stop(b);
    let at = match stop.at {
        Some(i) if b.get(i) == Some(&b'@') => Some(i),
        Some(_) => return Uri::parse_general(s),
        None => None,
    };
    let colon = stop.colon;
    let mut uri = Uri::bare(s, Scheme::Sip, rest);
    // Every cut is at an ASCII byte: a character boundary.
    let hostpart = match at {
        Some(at) => set_userinfo(&mut uri, rest, at, colon)?,
        None => rest,
    };
    if hostpart.starts_with('[') {
        return Uri::parse_general(s);
    }
    walk_hostpart(hostpart, &mut uri)?;
    // The host and port are checked by the walk; the rest was not read byte by byte (all of
    // it was, without an `@`).
    if at.is_some() {
        check_uri_chars(uri.params.raw())?;
        if let Some(h) = uri.headers {
            check_uri_chars(h)?;
        }
    }
    Ok(uri)
}

/// Sets `uri`'s user and password from the userinfo `rest[..at]` (`at` is the `@`; `colon`
/// is false when the caller saw no `:` before it, which saves the search) and returns the
/// host part after the `@`. An empty user is `BadUri`.
fn set_userinfo<'a>(
    uri: &mut Uri<'a>,
    rest: &'a str,
    at: usize,
    colon: bool,
) -> Result<&'a str, ParseError> {
    let userinfo = &rest[..at];
    let (user, password) = match colon.then(|| split_once_byte(userinfo, b':')) {
        Some(Some((u, p))) => (u, Some(p)),
        _ => (userinfo, None),
    };
    if user.is_empty() {
        return Err(ParseError::BadUri);
    }
    uri.user = Some(user);
    uri.password = password;
    Ok(&rest[at + 1..])
}

fn parse_sip<'a>(rest: &'a str, uri: &mut Uri<'a>) -> Result<(), ParseError> {
    // `@` cannot occur after the userinfo (RFC 3261 25.1), so the first one ends it.
    let hostpart = match find_byte(rest, b'@') {
        Some(at) => set_userinfo(uri, rest, at, true)?,
        None => rest,
    };
    if hostpart.starts_with('[') {
        split_hostpart(hostpart, uri)
    } else {
        walk_hostpart(hostpart, uri)
    }
}

/// `hostport [;params] [?headers]` split piece by piece (headers, then parameters, then the
/// port): the general form, taken for an IPv6 reference.
fn split_hostpart<'a>(hostpart: &'a str, uri: &mut Uri<'a>) -> Result<(), ParseError> {
    let (before_headers, headers) = match split_once_byte(hostpart, b'?') {
        Some((b, h)) => {
            if h.is_empty() {
                return Err(ParseError::BadUri);
            }
            (b, Some(h))
        }
        None => (hostpart, None),
    };
    let (hostport, params) =
        before_headers.split_at(find_byte(before_headers, b';').unwrap_or(before_headers.len()));
    let (host, port) = Host::parse_with_port(hostport)?;
    uri.host = Some(host);
    uri.port = port;
    uri.params = Params::new(params);
    uri.params.validate().map_err(|_| ParseError::BadUri)?;
    uri.headers = headers;
    Ok(())
}

/// `s` as a dotted IPv4 address, as `Ipv4Addr`'s `FromStr` reads it: four decimal octets of
/// one to three digits, none above 255, no leading zero. The usual address is read in one
/// walk ([`ipv4_dotted`]); anything that walk does not accept goes to `std`'s parser, so the
/// answer is `std`'s (a test compares the two).
pub(crate) fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    ipv4_dotted(s.as_bytes()).or_else(|| s.parse().ok())
}

/// The four octets of `b` if it is exactly `d.d.d.d` with each `d` one to three digits,
/// no leading zero and at most 255; `None` for anything else (not necessarily invalid:
/// [`parse_ipv4`] then asks `std`).
pub(crate) fn ipv4_dotted(b: &[u8]) -> Option<Ipv4Addr> {
    // One pass over the bytes (7 to 15 of them), the octet closed at each dot: no bounds
    // check or restart per octet.
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut n = 0;
    let mut value = 0u32;
    let mut digits = 0u32;
    for &c in b {
        if c == b'.' {
            if digits == 0 || n == 3 {
                return None;
            }
            octets[n] = value as u8;
            n += 1;
            (value, digits) = (0, 0);
            continue;
        }
        let d = u32::from(c.wrapping_sub(b'0'));
        // A fourth digit, a leading zero, or a value past 255.
        if d > 9 || digits == 3 || (digits == 1 && value == 0) {
            return None;
        }
        value = value * 10 + d;
        digits += 1;
        if value > 255 {
            return None;
        }
    }
    if n != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// [`split_hostpart`] for a host that is not an IPv6 reference, in one walk: the host runs to
/// the first `:`, `;` or `?` (a host name or IPv4 address holds none), and the walk notes on
/// the way what [`Host::parse`] asks of its bytes; the port to the next `;` or `?`. The same
/// URI or the same error as the general form (a test compares them).
fn walk_hostpart<'a>(hostpart: &'a str, uri: &mut Uri<'a>) -> Result<(), ParseError> {
    let b = hostpart.as_bytes();
    // The host-name bytes, sixteen a compare. The host runs to the first `:`, `;` or `?`; a
    // byte before it that is no host-name byte makes the host neither a name nor an IPv4
    // address (`BadUri`, the error wherever the host would have ended).
    let run = simd::host_name_run(b, 0);
    let end = run.end;
    if b.get(end)
        .is_some_and(|&c| HOST_CLASS[usize::from(c)] & STOP == 0)
    {
        return Err(ParseError::BadUri);
    }
    // Every cut below is at an ASCII byte or the end: a character boundary.
    let host = &hostpart[..end];
    uri.host = Some(if end == 0 {
        return Err(ParseError::BadUri);
    } else if run.dotted {
        Host::Ipv4(parse_ipv4(host).ok_or(ParseError::BadUri)?)
    } else if !host.starts_with('.') && !host.starts_with('-') {
        Host::Name(host)
    } else {
        return Err(ParseError::BadUri);
    });
    let mut at = end;
    if b.get(at) == Some(&b':') {
        let from = at + 1;
        at = from
            + b[from..]
                .iter()
                .position(|&c| c == b';' || c == b'?')
                .unwrap_or(b.len() - from);
        uri.port =
            Some(parse_decimal(&hostpart[from..at], 65535).ok_or(ParseError::BadUri)? as u16);
    }
    // `at` is the end, a `;` or the first `?`.
    let (params, headers) = match b.get(at) {
        Some(b'?') => ("", Some(&hostpart[at + 1..])),
        Some(_) => match find_byte(&hostpart[at..], b'?') {
            Some(q) => (&hostpart[at..at + q], Some(&hostpart[at + q + 1..])),
            None => (&hostpart[at..], None),
        },
        None => ("", None),
    };
    if headers.is_some_and(str::is_empty) {
        return Err(ParseError::BadUri);
    }
    uri.params = Params::new(params);
    uri.params.validate().map_err(|_| ParseError::BadUri)?;
    uri.headers = headers;
    Ok(())
}

/// [`HOST_CLASS`]: a host-name byte ([`HOST_NAME_BYTE`]).
pub(crate) const NAME: u8 = 1;
/// [`HOST_CLASS`]: a digit or a dot (an IPv4 address's bytes).
pub(crate) const DOTTED: u8 = 2;
/// [`HOST_CLASS`]: a byte that ends the host (`:`, `;`, `?`).
const STOP: u8 = 4;

/// Each byte's [`NAME`], [`DOTTED`] and [`STOP`] bits, for [`walk_hostpart`] (and the Via's
/// sent-by walk).
pub(crate) const HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if HOST_NAME_BYTE[c] {
            t[c] |= NAME;
        }
        if b.is_ascii_digit() || b == b'.' {
            t[c] |= DOTTED;
        }
        if matches!(b, b':' | b';' | b'?') {
            t[c] |= STOP;
        }
        c += 1;
    }
    t
};

/// The bytes of a host name: letters, digits, `-`, `.` and `_`.
const HOST_NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric() || matches!(c as u8, b'-' | b'.' | b'_');
        c += 1;
    }
    t
};

/// A byte a URI may hold outside escapes: printable ASCII but `<`, `>`, `"` and `%` (as
/// compares, which the compiler runs on many bytes at once).
#[inline(always)]
fn plain_uri_byte(c: u8) -> bool {
    (c.wrapping_sub(0x21) <= 0x7e - 0x21) & (c != b'<') & (c != b'>') & (c != b'"') & (c != b'%')
}

/// URIs are printable ASCII without `<>"` and with well-formed `%HH` escapes (RFC 3986 2.1).
fn check_uri_chars(s: &str) -> Result<(), ParseError> {
    let b = s.as_bytes();
    // Most URIs have no escape: a branch-free pass (vector compares) over the bytes.
    if b.iter().fold(true, |ok, &c| ok & plain_uri_byte(c)) {
        return Ok(());
    }
    for (i, &c) in b.iter().enumerate() {
        if !(0x21..=0x7e).contains(&c) || matches!(c, b'<' | b'>' | b'"') {
            return Err(ParseError::BadUri);
        }
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(ParseError::BadUri)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(ParseError::BadUri);
            }
        }
    }
    Ok(())
}

/// Decodes `%HH` escapes; malformed escapes are kept literally.
pub fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let decoded = if b[i] == b'%' {
            b.get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        } else {
            None
        };
        match decoded {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-walk IPv4 read against `std`'s: every string over digits and dots up to six
    /// bytes, every dotted quad of edge-case octets, random digit-and-dot strings up to 17.
    #[test]
    fn the_ipv4_walk_reads_as_std_does() {
        let check = |s: &str| {
            let std = s.parse::<Ipv4Addr>().ok();
            assert_eq!(parse_ipv4(s), std, "{s:?}");
            // The walk alone decides every string here as `std` does.
            assert_eq!(ipv4_dotted(s.as_bytes()), std, "{s:?}");
        };
        const ALPHA: &[u8] = b"0123456789.";
        let mut s = Vec::new();
        fn every(s: &mut Vec<u8>, left: usize, check: &dyn Fn(&str)) {
            check(std::str::from_utf8(s).unwrap());
            if left == 0 {
                return;
            }
            for &c in ALPHA {
                s.push(c);
                every(s, left - 1, check);
                s.pop();
            }
        }
        every(&mut s, 6, &check);
        let octets = [
            "0", "00", "000", "0000", "1", "01", "001", "9", "10", "99", "100", "199", "200",
            "249", "250", "255", "256", "300", "999", "1000", "",
        ];
        let mut accepted = 0;
        for a in octets {
            for b in octets {
                for c in octets {
                    for d in octets {
                        let s = format!("{a}.{b}.{c}.{d}");
                        check(&s);
                        accepted += usize::from(ipv4_dotted(s.as_bytes()).is_some());
                    }
                }
            }
        }
        assert!(accepted > 10_000, "{accepted}");
        let mut state = 0x1234_5678_9abc_def1_u64;
        for _ in 0..300_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 18) as usize;
            for i in 0..len {
                let r = (state >> (i * 3)) % 14;
                s.push(match r {
                    0..=2 => '.',
                    3 => '0',
                    4 => '2',
                    5 => '5',
                    _ => char::from(b'0' + (r as u8 % 10)),
                });
                state = state.rotate_left(7) ^ (i as u64);
            }
            check(&s);
        }
        for s in [
            "10.0.0.1",
            "192.0.2.255",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.4.",
            "1..2.3",
        ] {
            check(s);
        }
    }

    #[test]
    fn sip_uri_parts() {
        let u =
            Uri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?Subject=hi").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Some(Host::Ipv6("2001:db8::1".parse().unwrap())));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params.value("transport"), Some("tcp"));
        assert!(u.params.contains("lr"));
        assert_eq!(u.headers, Some("Subject=hi"));
    }

    #[test]
    fn tel_and_other() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.opaque, "+1-201-555-0123");
        assert_eq!(u.params.value("phone-context"), Some("example.com"));
        let o = Uri::parse("isbn:2983792873").unwrap();
        assert_eq!(o.scheme, Scheme::Other("isbn"));
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "sip:user@exa mple.com",
            "sip:@host",
            "sip:host:99999",
            "sip:[::1",
            "sip:1.2.3.256",
            "sip:u@h;;",
            "1sip:x",
            "sip:u%4@h",
            "nocolon",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_name_table_is_the_byte_rule() {
        for c in 0..=255u8 {
            let rule = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
            assert_eq!(HOST_NAME_BYTE[usize::from(c)], rule, "{c:#x}");
        }
    }

    #[test]
    fn plain_byte_is_the_byte_rule() {
        for c in 0..=255u8 {
            let rule = (0x21..=0x7e).contains(&c) && !matches!(c, b'<' | b'>' | b'"' | b'%');
            assert_eq!(plain_uri_byte(c), rule, "{c:#x}");
        }
        assert!(check_uri_chars("sip:a%41b@h").is_ok());
        assert!(check_uri_chars("sip:a%4@h").is_err());
        assert!(check_uri_chars("sip:a\u{7f}@h").is_err());
        assert!(check_uri_chars("sip:<a>@h").is_err());
    }

    /// The one-walk host part gives what the piece-by-piece split gives, URI or error, on
    /// host parts (not IPv6 references) made of the bytes that matter to either.
    #[test]
    fn walked_hostpart_is_the_split_one() {
        use rand::{Rng, SeedableRng};
        let empty = || Uri {
            raw: "",
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host: None,
            port: None,
            opaque: "",
            params: Params::default(),
            headers: None,
        };
        let both = |s: &str| {
            let (mut a, mut b) = (empty(), empty());
            let ra = walk_hostpart(s, &mut a).map(|()| a);
            let rb = split_hostpart(s, &mut b).map(|()| b);
            assert_eq!(ra, rb, "{s:?}");
            ra.is_ok()
        };
        for s in [
            "",
            "h",
            "ims.example.com",
            "10.0.1.1:5060;transport=tcp",
            "10.0.1.256",
            "123",
            ".a",
            "-a",
            "a_b-c.d:0",
            "h:65535",
            "h:65536",
            "h:",
            "h:1:2",
            "h;lr?x=y",
            "h?",
            "h;a?",
            "h?a;b",
            "h:5;a=b;c?h=1",
            "h;;",
            "h:1?x",
            "1.2.3.4;",
            "a]b",
        ] {
            both(s);
        }
        let mut accepted = 0;
        // Bytes of every class the walk's 16-byte blocks tell apart (`!`, `%`, space, DEL
        // and `é` are in none), and lengths past two blocks.
        let alphabet = b"ab1.0-_:;?=[]@9!% \x7f\xe9";
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        for _ in 0..300_000 {
            // Host bytes (up to two blocks' worth), then any of the alphabet.
            let (head, len) = (rng.gen_range(0..30), rng.gen_range(0..14));
            let mut s: String = (0..head)
                .map(|_| char::from(alphabet[rng.gen_range(0..7)]))
                .collect();
            s.extend((0..len).map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())])));
            if !s.starts_with('[') {
                accepted += usize::from(both(&s));
            }
        }
        // The walk must also be compared on URIs it accepts, not only on errors.
        assert!(accepted > 10_000, "{accepted}");
    }

    /// The one-walk `sip:` URI gives what the step-by-step parse gives, URI or error, on
    /// URIs made of the bytes either looks at.
    #[test]
    fn walked_sip_uri_is_the_general_one() {
        use rand::{Rng, SeedableRng};
        let both = |s: &str| {
            let walked = s.strip_prefix("sip:").map(|rest| parse_sip_walk(s, rest));
            let general = Uri::parse_general(s);
            assert_eq!(walked.unwrap_or(general), general, "{s:?}");
            assert_eq!(Uri::parse(s), general, "{s:?}");
            general.is_ok()
        };
        for s in [
            "sip:u@h",
            "sip:h",
            "sip:@h",
            "sip:u:pw@h:5060;transport=tcp?x=y",
            "sip:u@[::1]:5060",
            "sip:u%41@h",
            "sip:u@h;a=%4?x",
            "sip:u@h;a=%41?x=%2",
            "sip:u@h?",
            "sip:u@h;a=<",
            "sip:ims.mnc001.mcc001.3gppnetwork.org",
            "sip:001010000000001@10.0.0.1:5064",
            "sip:u;x=y@h",
            "sip:u@h@i",
            "sip:u@1.2.3.256",
            "sip:u@h\u{e9}",
            "sip:",
        ] {
            both(s);
        }
        let pieces = [
            "u", "@", ":", ";", "?", "=", "%", "%41", "4", "h", ".", "-", "[", "]", "::1", "<",
            "\"", " ", "\u{e9}", "1.2.3.4", "5060", "tag", "lr", "_", "x",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        let mut accepted = 0;
        for _ in 0..300_000 {
            let mut s = String::from("sip:");
            for _ in 0..rng.gen_range(0..16) {
                s.push_str(pieces[rng.gen_range(0..pieces.len())]);
            }
            accepted += usize::from(both(&s));
        }
        assert!(accepted > 10_000, "{accepted}");
    }

    #[test]
    fn host_class_is_the_byte_rules() {
        for c in 0..=255u8 {
            let class = HOST_CLASS[usize::from(c)];
            assert_eq!(class & NAME != 0, HOST_NAME_BYTE[usize::from(c)], "{c:#x}");
            assert_eq!(
                class & DOTTED != 0,
                c.is_ascii_digit() || c == b'.',
                "{c:#x}"
            );
            assert_eq!(class & STOP != 0, matches!(c, b':' | b';' | b'?'), "{c:#x}");
            // The vector walks' classes are these.
            assert_eq!(simd::is_host_name_byte(c), class & NAME != 0, "{c:#x}");
            assert_eq!(simd::is_dotted_byte(c), class & DOTTED != 0, "{c:#x}");
            assert_eq!(simd::is_user_stop(c), c == b'@' || !plain_uri_byte(c));
        }
    }

    #[test]
    fn decodes_escapes() {
        let u = Uri::parse("sip:null-%00-null@example.com").unwrap();
        assert_eq!(&*u.user_decoded().unwrap(), b"null-\0-null");
    }
}
