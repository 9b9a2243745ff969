//! Editing a parsed message for proxying (RFC 3261 16.6): copy it, replace the Request-URI,
//! insert, replace or remove header lines and pop the top Via, then serialise it again with a
//! recomputed Content-Length. Untouched values are borrowed from the parsed input.

use std::borrow::Cow;

use super::builder::MessageBuilder;
use super::header_name::HeaderKind;
use super::lex::ListIter;
use super::message::{Message, StartLine};

/// One header line of a [`MessageEdit`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line<'a> {
    kind: HeaderKind,
    name: Cow<'a, str>,
    value: Cow<'a, str>,
}

/// An editable copy of a [`Message`]: the start line, the header lines in order (known headers
/// under their full name, RFC 3261 7.3.3) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEdit<'a> {
    start: StartLine<'a>,
    request_uri: Option<String>,
    lines: Vec<Line<'a>>,
    body: &'a [u8],
}

impl<'a> MessageEdit<'a> {
    /// Copies `msg`; its Content-Length line is dropped (it is recomputed when serialising).
    /// The first Via line carries the `received` / `rport` noted for `msg`, if any.
    pub fn new(msg: &Message<'a>) -> Self {
        let mut lines: Vec<Line<'a>> = msg
            .headers()
            .iter()
            .filter(|h| h.kind != HeaderKind::ContentLength)
            .map(|h| Line {
                kind: h.kind,
                name: Cow::Borrowed(h.kind.name().unwrap_or(h.name)),
                value: Cow::Borrowed(h.value),
            })
            .collect();
        if let Some(n) = msg.noted_via() {
            if let Some(l) = lines.iter_mut().find(|l| l.kind == HeaderKind::Via) {
                let mut value = String::with_capacity(l.value.len() + 48);
                n.pieces(&mut |p| value.push_str(p));
                l.value = Cow::Owned(value);
            }
        }
        MessageEdit {
            start: msg.start_line(),
            request_uri: None,
            lines,
            body: msg.body(),
        }
    }

    /// Replaces the Request-URI of a request (no effect on a response).
    pub fn set_request_uri(&mut self, uri: &str) {
        if let StartLine::Request { .. } = self.start {
            self.request_uri = Some(uri.to_string());
        }
    }

    fn matches(line: &Line<'_>, kind: HeaderKind, name: &str) -> bool {
        line.kind == kind && (kind != HeaderKind::Other || line.name.eq_ignore_ascii_case(name))
    }

    /// Removes every line of the header called `name` (full or compact form, any case).
    pub fn remove(&mut self, name: &str) {
        let kind = HeaderKind::from_name(name);
        self.lines.retain(|l| !Self::matches(l, kind, name));
    }

    /// The values of every line of the header called `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        let kind = HeaderKind::from_name(name);
        self.lines
            .iter()
            .filter(|l| Self::matches(l, kind, name))
            .map(|l| l.value.as_ref())
            .collect()
    }

    /// Appends a header line.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.lines.push(Line {
            kind: HeaderKind::from_name(name),
            name: Cow::Owned(name.to_string()),
            value: Cow::Owned(value.into()),
        });
    }

    /// Inserts a header line before all others (a proxy's Via or Record-Route, RFC 3261 16.6).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.lines.insert(
            0,
            Line {
                kind: HeaderKind::from_name(name),
                name: Cow::Owned(name.to_string()),
                value: Cow::Owned(value.into()),
            },
        );
    }

    /// Replaces every line of `name` by one line carrying `value` at the first one's position
    /// (appended if the header was absent).
    pub fn replace(&mut self, name: &str, value: impl Into<String>) {
        let kind = HeaderKind::from_name(name);
        let value = value.into();
        match self.lines.iter().position(|l| Self::matches(l, kind, name)) {
            Some(i) => {
                if let Some(l) = self.lines.get_mut(i) {
                    l.value = Cow::Owned(value);
                }
                let mut seen = 0usize;
                self.lines.retain(|l| {
                    if Self::matches(l, kind, name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.push(name, value),
        }
    }

    /// Replaces the list header `name` by `elements` joined in one line at the first line's
    /// position, or removes it when `elements` is empty.
    pub fn set_list(&mut self, name: &str, elements: &[String]) {
        if elements.is_empty() {
            self.remove(name);
        } else {
            self.replace(name, elements.join(", "));
        }
    }

    /// Removes and returns the first comma-separated element of the first line of `name` (the
    /// top Via of a response, RFC 3261 16.7 step 3); the line goes when it held only that one.
    pub fn pop_first_element(&mut self, name: &str) -> Option<String> {
        let kind = HeaderKind::from_name(name);
        let i = self
            .lines
            .iter()
            .position(|l| Self::matches(l, kind, name))?;
        let line = self.lines.get(i)?;
        let mut it = ListIter::new(&line.value);
        let first = it.next()?.ok()?.to_string();
        let rest: Vec<String> = it
            .map(|r| r.map(str::to_string))
            .collect::<Result<_, _>>()
            .ok()?;
        if rest.is_empty() {
            self.lines.remove(i);
        } else if let Some(l) = self.lines.get_mut(i) {
            l.value = Cow::Owned(rest.join(", "));
        }
        Some(first)
    }

    /// Replaces the first comma-separated element of the first line of `name` (the top Via
    /// when `received` / `rport` are filled in, RFC 3261 18.2.1, RFC 3581 4).
    pub fn replace_first_element(&mut self, name: &str, element: &str) -> bool {
        let kind = HeaderKind::from_name(name);
        let Some(i) = self.lines.iter().position(|l| Self::matches(l, kind, name)) else {
            return false;
        };
        let Some(line) = self.lines.get(i) else {
            return false;
        };
        let mut it = ListIter::new(&line.value);
        if !matches!(it.next(), Some(Ok(_))) {
            return false;
        }
        let Ok(mut all) = it
            .map(|r| r.map(str::to_string))
            .collect::<Result<Vec<String>, _>>()
        else {
            return false;
        };
        all.insert(0, element.to_string());
        if let Some(l) = self.lines.get_mut(i) {
            l.value = Cow::Owned(all.join(", "));
        }
        true
    }

    /// Serialises the message with Content-Length set to the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = match self.start {
            StartLine::Request { method, uri } => {
                MessageBuilder::request(method, self.request_uri.as_deref().unwrap_or(uri))
            }
            StartLine::Response { code, reason } => MessageBuilder::response(code, reason),
        };
        for l in &self.lines {
            b.push_header(&l.name, &l.value);
        }
        b.raw_body(self.body).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"INVITE sip:b@x SIP/2.0\r\nv: SIP/2.0/TCP a:1;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nX-A: 1\r\nx-a: 2\r\nl: 3\r\n\r\nabcIGNORED";

    #[test]
    fn edits_and_reserialises() {
        let m = Message::parse(REQ).unwrap();
        let mut e = MessageEdit::new(&m);
        assert_eq!(
            e.pop_first_element("Via").as_deref(),
            Some("SIP/2.0/TCP a:1;branch=z9hG4bK1")
        );
        e.replace("Max-Forwards", "69");
        e.replace("X-A", "3");
        e.push_front("Via", "SIP/2.0/UDP p:5;branch=z9hG4bKp");
        e.set_request_uri("sip:c@y");
        assert_eq!(
            e.to_bytes(),
            b"INVITE sip:c@y SIP/2.0\r\nVia: SIP/2.0/UDP p:5;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nMax-Forwards: 69\r\nX-A: 3\r\nContent-Length: 3\r\n\r\nabc"
        );
        assert!(e.replace_first_element("Via", "SIP/2.0/UDP q"));
        e.remove("via");
        e.set_list("Route", &[]);
        assert_eq!(e.values("Via"), Vec::<&str>::new());
    }
}
