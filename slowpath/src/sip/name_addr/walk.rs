//! The first name-addr of a list value in one walk (From, To, Contact: `[display-name]
//! <URI> *(;param)` up to its comma), instead of a list split ([`ListIter`]) that reads the
//! element for its `"`, `<` and `,`, then [`NameAddr::parse`] that reads it again for its `<`
//! and `>`, and its parameters a third time to check them.
//!
//! The walk decides only where it can give exactly what the two-step parse gives: a
//! bracketed address whose display name, URI and parameters read without a surprise. Anything
//! else (an addr-spec, `*`, a `<` or unterminated quote in the parameters, a bad URI or
//! parameter) returns `None` and the caller takes the two-step path, which then gives its own
//! result or error: every `400` reason stays the two-step parser's (a differential test and
//! the `sip_name_addr` fuzz target compare the two).
//!
//! [`ListIter`]: super::super::lex::ListIter

use super::super::lex::{is_lws, is_token_char, quoted_end};
use super::super::params::Params;
use super::super::uri::Uri;
use super::NameAddr;

/// What ends an unquoted parameter value for [`Params`] (LWS, `;`, `,`, `"`), plus what the
/// walk cannot pass in one (`<`, which the list split would take as the start of a bracket).
const STOPS_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let stops = [b' ', b'\t', b'\r', b'\n', b';', b',', b'"', b'<'];
    let mut i = 0;
    while i < stops.len() {
        t[stops[i] as usize] = true;
        i += 1;
    }
    t
};

/// The index of the first byte at or after `i` that is not LWS.
#[inline]
fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_lws) {
        i += 1;
    }
    i
}

impl<'a> NameAddr<'a> {
    /// The first element of a name-addr list `value`, parsed in one walk, and the text after
    /// its comma (`None`: it was the only element). `None` where the walk leaves the element
    /// to the list split and [`NameAddr::parse`] (which give the same address whenever this
    /// gives one).
    pub fn parse_list_head(value: &'a str) -> Option<(NameAddr<'a>, Option<&'a str>)> {
        NameAddr::parse_list_head_known(value, None)
    }

    /// [`NameAddr::parse_list_head`] given a URI already parsed from another header (To
    /// after From, which usually carry the same IMPU): where the bracketed text is `known`'s
    /// text byte for byte, `known` is the URI (the parse of the same text gives an equal
    /// one), and is not parsed again.
    pub(crate) fn parse_list_head_known(
        value: &'a str,
        known: Option<&Uri<'a>>,
    ) -> Option<(NameAddr<'a>, Option<&'a str>)> {
        let b = value.as_bytes();
        let start = skip_lws(b, 0);
        // The display name: a quoted string, or tokens and LWS up to the `<`.
        let (display_name, lt) = if b.get(start) == Some(&b'"') {
            let end = quoted_end(b, start).ok()?;
            let lt = skip_lws(b, end);
            if b.get(lt) != Some(&b'<') {
                return None;
            }
            (Some(value.get(start..end)?), lt)
        } else {
            let mut i = start;
            let mut last = start;
            loop {
                let c = *b.get(i)?;
                if is_token_char(c) {
                    i += 1;
                    last = i;
                } else if is_lws(c) {
                    i += 1;
                } else if c == b'<' {
                    break;
                } else {
                    return None;
                }
            }
            ((last > start).then(|| value.get(start..last)).flatten(), i)
        };
        let gt = lt + 1 + akagate_proto::swar::find_byte_near(b'>', b.get(lt + 1..)?)?;
        let text = value.get(lt + 1..gt)?;
        let uri = match known {
            Some(k) if k.raw == text => *k,
            _ => Uri::parse(text).ok()?,
        };
        // The parameters, checked as `ParamIter` checks them, up to the element's end.
        let mut i = gt + 1;
        let mut end = i;
        let comma = loop {
            i = skip_lws(b, i);
            match b.get(i) {
                None => break None,
                Some(b',') => break Some(i),
                Some(b';') => {}
                Some(_) => return None,
            }
            i = skip_lws(b, i + 1);
            let name_start = i;
            while b.get(i).copied().is_some_and(is_token_char) {
                i += 1;
            }
            if i == name_start {
                return None;
            }
            end = i;
            let eq = skip_lws(b, i);
            if b.get(eq) != Some(&b'=') {
                continue;
            }
            let v = skip_lws(b, eq + 1);
            let v_end = if b.get(v) == Some(&b'"') {
                quoted_end(b, v).ok()?
            } else {
                let mut j = v;
                while b.get(j).is_some_and(|&c| !STOPS_VALUE[usize::from(c)]) {
                    j += 1;
                }
                // A `<` here would open a bracket for the list split.
                if j == v || b.get(j) == Some(&b'<') {
                    return None;
                }
                j
            };
            i = v_end;
            end = v_end;
        };
        let addr = NameAddr {
            display_name,
            uri,
            params: Params::new(value.get(gt + 1..end)?),
            bracketed: true,
        };
        let rest = match comma {
            Some(c) => Some(value.get(c + 1..)?),
            None => None,
        };
        Some((addr, rest))
    }
}

#[cfg(test)]
mod tests;
