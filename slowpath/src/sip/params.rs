//! `;name[=value]` parameter lists of headers and URIs (RFC 3261 19.1.1, 25.1 generic-param),
//! read in place from the borrowed value.

use super::error::ParseError;
use super::lex::{is_token_char, quoted_end, trim_lws_start, unquote};
use std::borrow::Cow;

/// One parameter; `value` is raw (a quoted value keeps its quotes, see [`Param::unquoted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// Parameter name as written.
    pub name: &'a str,
    /// Raw value, `None` for a flag parameter such as `;lr` or `;rport`.
    pub value: Option<&'a str>,
}

impl<'a> Param<'a> {
    /// The value with surrounding quotes and escapes removed.
    pub fn unquoted(&self) -> Option<Cow<'a, str>> {
        self.value.map(unquote)
    }
}

/// A borrowed parameter list starting at its first `;` (may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// Wraps `raw` (`";a=b;c"`, LWS allowed around `;` and `=`).
    pub fn new(raw: &'a str) -> Self {
        Params { raw }
    }

    /// The raw text, as it appeared in the message.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Iterates over the parameters; a malformed one yields an error and ends the iteration.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            rest: Some(self.raw),
        }
    }

    /// Checks that every parameter is well formed.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.iter().try_for_each(|p| p.map(|_| ()))
    }

    /// The first parameter called `name` (case-insensitive); `Some(None)` for a flag.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .map_while(Result::ok)
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    /// The raw value of parameter `name`, if it is present with a value.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten()
    }

    /// True if parameter `name` is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The bytes that end an unquoted parameter value: LWS, `;`, `,` and `"` (one load a byte
/// instead of seven compares; a test holds it to them).
const ENDS_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let ends = [b' ', b'\t', b'\r', b'\n', b';', b',', b'"'];
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = true;
        i += 1;
    }
    t
};

/// Iterator over [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> ParamIter<'a> {
    fn fail(&mut self) -> Option<Result<Param<'a>, ParseError>> {
        self.rest = None;
        Some(Err(ParseError::BadParam))
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<Param<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = trim_lws_start(self.rest?);
        if s.is_empty() {
            self.rest = None;
            return None;
        }
        let Some(s) = s.strip_prefix(';') else {
            return self.fail();
        };
        let s = trim_lws_start(s);
        let name_len = s.bytes().take_while(|&b| is_token_char(b)).count();
        if name_len == 0 {
            return self.fail();
        }
        let (name, after) = s.split_at(name_len);
        let t = trim_lws_start(after);
        let Some(v) = t.strip_prefix('=') else {
            self.rest = Some(after);
            return Some(Ok(Param { name, value: None }));
        };
        let v = trim_lws_start(v);
        let vb = v.as_bytes();
        let end = if vb.first() == Some(&b'"') {
            match quoted_end(vb, 0) {
                Ok(end) => end,
                Err(e) => {
                    self.rest = None;
                    return Some(Err(e));
                }
            }
        } else {
            vb.iter()
                .take_while(|&&b| !ENDS_VALUE[usize::from(b)])
                .count()
        };
        if end == 0 {
            return self.fail();
        }
        let (value, rest) = v.split_at(end);
        self.rest = Some(rest);
        Some(Ok(Param {
            name,
            value: Some(value),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::lex::is_lws;

    #[test]
    fn ends_value_is_lws_and_the_separators() {
        for b in 0..=255u8 {
            let want = is_lws(b) || b == b';' || b == b',' || b == b'"';
            assert_eq!(ENDS_VALUE[usize::from(b)], want, "{b:#x}");
        }
    }

    #[test]
    fn lws_around_separators() {
        let p = Params::new(" ;   tag    = 1918181833n ; lr;q = 0.33");
        let all: Vec<_> = p.iter().map(|r| r.unwrap()).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(p.value("TAG"), Some("1918181833n"));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.value("q"), Some("0.33"));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn quoted_values_keep_semicolons() {
        let p = Params::new(r#";+sip.instance="<urn:gsma:imei:1;x>";video"#);
        assert_eq!(p.value("+sip.instance"), Some(r#""<urn:gsma:imei:1;x>""#));
        assert!(p.contains("video"));
    }

    #[test]
    fn empty_params_rejected() {
        assert_eq!(Params::new(";;").validate(), Err(ParseError::BadParam));
        assert_eq!(Params::new(";a=").validate(), Err(ParseError::BadParam));
        assert_eq!(Params::new("junk").validate(), Err(ParseError::BadParam));
        assert!(Params::new("").validate().is_ok());
    }
}
