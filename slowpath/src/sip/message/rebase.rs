//! A parsed message with its top Via element replaced, without parsing it again: the
//! `received` / `rport` a server notes in the top Via (RFC 3261 18.2.1, RFC 3581 4) are the
//! only change the core makes to a request before its transaction sees it, and a second
//! parse of the whole message for them cost as much as the first one.

use std::cell::OnceCell;

use akagate_proto::sipscan::find_head_end;

use super::{HeaderList, Message, StartLine};
use crate::sip::header_name::HeaderKind;
use crate::sip::lex::ListIter;

/// Where the replaced element was and how long its replacement is: maps an offset of the old
/// input to the same byte of the new one.
#[derive(Clone, Copy)]
struct Shift {
    /// First byte of the old element.
    start: usize,
    /// One past its last byte.
    end: usize,
    /// Length of the new element.
    new_len: usize,
}

impl Shift {
    /// The new range of the old range `off..off + len`: unchanged before the element, moved
    /// after it, stretched when it holds the element (the Via header's value); `None` when
    /// it cuts through the element.
    fn range(self, off: usize, len: usize) -> Option<(usize, usize)> {
        let end = off.checked_add(len)?;
        let moved = |o: usize| o - self.end + self.start + self.new_len;
        if end <= self.start {
            Some((off, end))
        } else if off >= self.end {
            Some((moved(off), moved(end)))
        } else if off <= self.start && end >= self.end {
            Some((off, moved(end)))
        } else {
            None
        }
    }
}

/// A cache holding `value` if there is one, else empty.
fn carried<T>(value: Option<T>) -> OnceCell<T> {
    value.map_or_else(OnceCell::new, OnceCell::from)
}

impl<'a> Message<'a> {
    /// This message with the first element of its top Via replaced by `element`, written into
    /// `out`. The header index is carried over with its offsets moved instead of parsing the
    /// message again, and so are the To, From and first Contact already parsed (they borrow
    /// `self`'s input, which outlives `out`); the new top Via is parsed on first use. The
    /// result reads as `Message::parse(out)` would, except that a missing Content-Length stays
    /// missing. `None` (and `out` unspecified) when there is no Via element or `element` is
    /// empty or not one line of text: the caller keeps `self`.
    pub(crate) fn with_top_via<'b>(
        &self,
        element: &str,
        out: &'b mut Vec<u8>,
    ) -> Option<Message<'b>>
    where
        'a: 'b,
    {
        if element.is_empty() || element.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return None;
        }
        let via = self.headers().iter().find(|h| h.kind == HeaderKind::Via)?;
        let first = ListIter::new(via.value).next()?.ok()?;
        let base = self.raw.as_ptr() as usize;
        let offset = |part: &[u8]| (part.as_ptr() as usize).checked_sub(base);
        let start = offset(first.as_bytes())?;
        let shift = Shift {
            start,
            end: start.checked_add(first.len())?,
            new_len: element.len(),
        };
        out.clear();
        out.reserve(self.raw.len() - first.len() + element.len());
        out.extend_from_slice(self.raw.get(..shift.start)?);
        out.extend_from_slice(element.as_bytes());
        out.extend_from_slice(self.raw.get(shift.end..)?);
        let out: &'b [u8] = out;
        let head = std::str::from_utf8(out.get(..find_head_end(out)?)?).ok()?;
        let text = |part: &str| -> Option<&'b str> {
            let (s, e) = shift.range(offset(part.as_bytes())?, part.len())?;
            head.get(s..e)
        };
        let start_line = match self.start {
            StartLine::Request { method, uri } => StartLine::Request {
                method: text(method)?,
                uri: text(uri)?,
            },
            StartLine::Response { code, reason } => StartLine::Response {
                code,
                reason: text(reason)?,
            },
        };
        let mut headers = HeaderList::new();
        for h in self.headers() {
            headers
                .push(super::Header {
                    name: text(h.name)?,
                    value: text(h.value)?,
                    kind: h.kind,
                })
                .ok()?;
        }
        let (s, e) = shift.range(offset(self.body)?, self.body.len())?;
        Some(Message {
            raw: out,
            start: start_line,
            headers,
            body: out.get(s..e)?,
            content_length: self.content_length,
            top_via: OnceCell::new(),
            to: carried(self.to.get().copied()),
            from: carried(self.from.get().copied()),
            first_contact: carried(self.first_contact.get().copied()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "REGISTER sip:ims.example SIP/2.0\r\nv: SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK0\r\nFrom: <sip:a@ims.example>;tag=1\r\nTo: <sip:a@ims.example>\r\nContact: <sip:a@10.1.0.2:5060>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 4\r\n\r\nbodyjunk";

    fn same(a: &Message<'_>, b: &Message<'_>) {
        assert_eq!(a.start_line(), b.start_line());
        assert_eq!(a.headers(), b.headers());
        assert_eq!(a.body(), b.body());
        assert_eq!(a.content_length(), b.content_length());
        assert_eq!(a.top_via(), b.top_via());
        assert_eq!(a.to_header(), b.to_header());
        assert_eq!(a.from_header(), b.from_header());
        assert_eq!(a.vias().collect::<Vec<_>>(), b.vias().collect::<Vec<_>>());
        assert_eq!(a.raw(), b.raw());
    }

    #[test]
    fn reads_as_a_second_parse() {
        let m = Message::parse(REQ.as_bytes()).unwrap();
        // The caches of the first parse are carried over (and must read the same).
        m.validate().unwrap();
        for element in [
            "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;received=192.0.2.7;rport=40000",
            "S",
            "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;received=2001:db8::1234:5678:9abc:def0;rport=65535;x=a-much-longer-parameter",
        ] {
            let mut out = Vec::new();
            let r = m.with_top_via(element, &mut out).unwrap();
            let expected = REQ.replace(
                "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport",
                element,
            );
            let p = Message::parse(expected.as_bytes()).unwrap();
            same(&r, &p);
        }
    }

    #[test]
    fn responses_and_first_of_several_elements() {
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nTo: <sip:a@b>;tag=2\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let m = Message::parse(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        let element = "SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1";
        let r = m.with_top_via(element, &mut out).unwrap();
        let expected = raw.replace("SIP/2.0/UDP a;branch=z9hG4bK1", element);
        let p = Message::parse(expected.as_bytes()).unwrap();
        same(&r, &p);
        assert_eq!(r.vias().count(), 2);
    }

    #[test]
    fn refuses_what_would_change_the_framing() {
        let m = Message::parse(REQ.as_bytes()).unwrap();
        let mut out = Vec::new();
        for bad in ["", "SIP/2.0/TCP a\r\nX: y", "a\nb", "a\0b"] {
            assert!(m.with_top_via(bad, &mut out).is_none(), "{bad:?}");
        }
        let no_via = "OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n";
        let m = Message::parse(no_via.as_bytes()).unwrap();
        assert!(m.with_top_via("SIP/2.0/UDP a", &mut out).is_none());
    }
}
