//! name-addr / addr-spec values of From, To, Contact, Route, Record-Route, Path and
//! Service-Route (RFC 3261 20.10, 25.1), with their header parameters.

use std::borrow::Cow;

use super::error::ParseError;
use super::lex::{find_byte, is_lws, is_token_char, quoted_end, trim_lws, trim_lws_start, unquote};
use super::params::Params;
use super::uri::Uri;

mod walk;

/// `[display-name] <URI> *(;param)` or `URI *(;param)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Raw display name: a quoted string (quotes kept) or LWS-separated tokens.
    pub display_name: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// Header parameters after the URI (`;tag=`, `;expires=`, `;q=`, feature tags...).
    pub params: Params<'a>,
    /// True if the URI was enclosed in `<>`.
    pub bracketed: bool,
}

impl<'a> NameAddr<'a> {
    /// Parses one (already comma-split, trimmed) element.
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ParseError> {
        let s = trim_lws(s);
        let b = s.as_bytes();
        let (display_name, bracketed_rest) = if b.first() == Some(&b'"') {
            let end = quoted_end(b, 0)?;
            let rest = trim_lws_start(&s[end..]);
            if !rest.starts_with('<') {
                return Err(ParseError::BadUri);
            }
            (Some(&s[..end]), Some(rest))
        } else if let Some(lt) = find_byte(s, b'<') {
            let dn = trim_lws(&s[..lt]);
            // Unquoted display names are tokens separated by LWS (RFC 4475 3.1.2.15).
            if !dn.bytes().all(|c| is_token_char(c) || is_lws(c)) {
                return Err(ParseError::BadUri);
            }
            ((!dn.is_empty()).then_some(dn), Some(&s[lt..]))
        } else {
            (None, None)
        };
        match bracketed_rest {
            Some(rest) => {
                let gt = find_byte(rest, b'>').ok_or(ParseError::BadUri)?;
                let uri = Uri::parse(&rest[1..gt])?;
                let params = Params::new(&rest[gt + 1..]);
                params.validate()?;
                Ok(NameAddr {
                    display_name,
                    uri,
                    params,
                    bracketed: true,
                })
            }
            None => {
                // addr-spec: parameters after it belong to the header, and a URI with `?`
                // must be bracketed (RFC 3261 20, RFC 4475 3.1.2.13).
                let end = s
                    .bytes()
                    .position(|c| c == b';' || is_lws(c))
                    .unwrap_or(s.len());
                let uri_s = &s[..end];
                if find_byte(uri_s, b'?').is_some() {
                    return Err(ParseError::BadUri);
                }
                let uri = Uri::parse(uri_s)?;
                let params = Params::new(&s[end..]);
                params.validate()?;
                Ok(NameAddr {
                    display_name: None,
                    uri,
                    params,
                    bracketed: false,
                })
            }
        }
    }

    /// The `tag` parameter (From/To, RFC 3261 19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.value("tag")
    }

    /// The display name without quotes and escapes.
    pub fn display_name_unquoted(&self) -> Option<Cow<'a, str>> {
        self.display_name.map(unquote)
    }
}

/// One Contact value: `*` (remove all bindings, RFC 3261 10.2.2) or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *`
    Star,
    /// A contact address with its parameters.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one comma-split Contact element.
    pub fn parse(s: &'a str) -> Result<Contact<'a>, ParseError> {
        if trim_lws(s) == "*" {
            return Ok(Contact::Star);
        }
        NameAddr::parse(s).map(Contact::Addr)
    }

    /// The address, unless this is `*`.
    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }

    /// The `expires` parameter in seconds, saturated at 2^32-1 (RFC 3261 10.2.1.1).
    pub fn expires(&self) -> Option<u32> {
        self.addr()?.params.value("expires").map(delta_seconds)?
    }

    /// The `q` parameter text.
    pub fn q(&self) -> Option<&'a str> {
        self.addr()?.params.value("q")
    }

    /// The `+sip.instance` value without quotes (RFC 5626 4.1).
    pub fn sip_instance(&self) -> Option<Cow<'a, str>> {
        self.addr()?
            .params
            .iter()
            .map_while(Result::ok)
            .find(|p| p.name.eq_ignore_ascii_case("+sip.instance"))
            .and_then(|p| p.unquoted())
    }

    /// Feature-tag parameters (`+g.3gpp.icsi-ref`, `+sip.instance`, ... RFC 3840 9).
    pub fn feature_tags(&self) -> impl Iterator<Item = super::params::Param<'a>> + '_ {
        self.addr()
            .into_iter()
            .flat_map(|a| a.params.iter().map_while(Result::ok))
            .filter(|p| p.name.starts_with('+'))
    }
}

/// Parses delta-seconds, saturating at 2^32-1; `None` if not all digits.
pub(crate) fn delta_seconds(s: &str) -> Option<u32> {
    let s = trim_lws(s);
    if s.is_empty() {
        return None;
    }
    // One pass: a non-digit anywhere is `None`; the value saturates past 2^32 - 1 (held at
    // 2^32 on the way, so it never overflows). The same answer as checking every digit,
    // then parsing with a bound (a test compares the two).
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = (v * 10 + u64::from(d)).min(1 << 32);
    }
    Some(v.min(u64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display_name_unquoted().unwrap(), "J Rosenberg \\\"");
        assert_eq!(a.tag(), Some("98asjd8"));
        let b = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(b.display_name, Some("caller"));
        let c =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert!(!c.bracketed);
        assert_eq!(c.tag(), Some("1918181833n"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "<sip:joe@example.org>;;;;",
            "<sip:x@y",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
    }

    /// The two-pass form `delta_seconds` had: every byte a digit, then a bounded parse.
    fn delta_seconds_two_pass(s: &str) -> Option<u32> {
        let s = trim_lws(s);
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(super::super::lex::parse_decimal(s, u32::MAX.into()).map_or(u32::MAX, |v| v as u32))
    }

    #[test]
    fn one_pass_delta_seconds_is_the_two_pass_one() {
        for s in [
            "",
            " ",
            "0",
            "600000",
            " 3600 ",
            "4294967295",
            "4294967296",
            "00004294967296",
            "99999999999999999999999999",
            "12a",
            "-1",
            "1 2",
            "\t7\r\n",
            "\u{e9}",
        ] {
            assert_eq!(delta_seconds(s), delta_seconds_two_pass(s), "{s:?}");
        }
        let mut state = 0x05ee_d0fd_e17a_u64;
        let mut saturated = 0;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let s: String = (0..len)
                .map(|i| match (state >> (i * 2 % 60)) % 23 {
                    0 => ' ',
                    1 => 'x',
                    r => char::from(b'0' + (r % 10) as u8),
                })
                .collect();
            let got = delta_seconds(&s);
            saturated += usize::from(got == Some(u32::MAX));
            assert_eq!(got, delta_seconds_two_pass(&s), "{s:?}");
        }
        assert!(saturated > 100, "{saturated}");
    }

    #[test]
    fn contact_params() {
        let c = Contact::parse(r#"<sip:u@[2409:8800::1]:8904>;+sip.instance="<urn:gsma:imei:86717902-002037-0>";+g.3gpp.smsip;expires=99999999999"#).unwrap();
        assert_eq!(
            c.sip_instance().unwrap(),
            "<urn:gsma:imei:86717902-002037-0>"
        );
        assert_eq!(c.feature_tags().count(), 2);
        assert_eq!(c.expires(), Some(u32::MAX));
        assert_eq!(Contact::parse(" * ").unwrap(), Contact::Star);
    }
}
