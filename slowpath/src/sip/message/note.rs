//! The `received` / `rport` a server notes in the top Via of a request (RFC 3261 18.2.1,
//! RFC 3581 4), carried beside the parsed request instead of written into a copy of it: the
//! request keeps its bytes, and the note is applied only where a Via is written — a response
//! built from the request ([`crate::sip::response_to`]), the request edited for forwarding
//! ([`crate::sip::MessageEdit::new`]) and the copies kept for later
//! ([`Message::noted_bytes`]).

use std::io::Write as _;
use std::net::IpAddr;

use super::Message;
use crate::sip::header_name::HeaderKind;
use crate::sip::lex::ListIter;
use crate::sip::via::{NotedCuts, Via};

/// What a server notes in the top Via of a request it received (RFC 3261 18.2.1,
/// RFC 3581 4): the source address and, when the Via asks for it with `rport`, the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaNote {
    /// The source address, written as `received`.
    pub received: IpAddr,
    /// The source port, written as `rport=` (`None`: the Via has no `rport`).
    pub rport: Option<u16>,
}

/// The first Via line of a noted message, in pieces: the text before the top element, the
/// top element parsed, the text after it (the other elements of that line).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotedVia<'a> {
    /// Index of the first Via line in [`Message::headers`].
    pub(crate) line: usize,
    before: &'a str,
    via: Via<'a>,
    /// The top element as written (what `via` was parsed from).
    text: &'a str,
    after: &'a str,
    note: ViaNote,
    /// Offsets of the top element in the message's input.
    element: (usize, usize),
}

impl NotedVia<'_> {
    /// Calls `f` with each piece of the noted first Via line's value in order: the top
    /// element with its `received` / `rport` parameters replaced by the note's (written
    /// last, `received` first), the other elements as they are.
    pub(crate) fn pieces(&self, f: &mut dyn FnMut(&str)) {
        f(self.before);
        self.element_pieces(f);
        f(self.after);
    }

    /// The pieces of the noted top element alone: the element as written, without its
    /// `received` and `rport` parameters, then the note's.
    fn element_pieces(&self, f: &mut dyn FnMut(&str)) {
        if !self.kept_runs(f) {
            self.kept_params(f);
        }
        // An IPv6 address is 45 characters at most, a port 5.
        let mut buf = [0u8; 48];
        // via-received is a bare IPv4address / IPv6address (RFC 3261 25.1, RFC 5118 4.5).
        f(";received=");
        f(ip_text(self.note.received, &mut buf));
        if let Some(port) = self.note.rport {
            f(";rport=");
            f(itoa::Buffer::new().format(port));
        }
    }
}

impl NotedVia<'_> {
    /// The element's text up to the end of its last parameter, in as few pieces as there are
    /// runs between a `received` or `rport` parameter (each left out with its `;`): RFC 3261
    /// 8.2.6.2 wants the response's Via as the request's. The runs come from where the parse
    /// noted those parameters ([`Via::noted_cuts`]), not from a walk of the parameters again.
    /// False, with nothing written, if there are more than [`NotedCuts::MAX`] of them or a
    /// piece does not lie in the element's text (it always does).
    fn kept_runs(&self, f: &mut dyn FnMut(&str)) -> bool {
        let v = &self.via;
        let base = self.text.as_ptr() as usize;
        let Some(p) = (v.params.raw().as_ptr() as usize).checked_sub(base) else {
            return false;
        };
        let cuts = v.noted_cuts();
        let n = cuts.count as usize;
        let Some(noted) = cuts.cuts.get(..n) else {
            return false;
        };
        // Runs of the text to write: [start, end) pairs, one more than the cuts.
        let mut runs = [(0usize, 0usize); NotedCuts::MAX + 1];
        let mut run = 0;
        for (slot, &(before, own)) in runs.iter_mut().zip(noted) {
            *slot = (run, p + before as usize);
            run = p + own as usize;
        }
        runs[n] = (run, p + cuts.last_end as usize);
        self.write_runs(&runs[..=n], f)
    }

    /// Gives `f` each non-empty run `[a, b)` of the element's text, or nothing and false if
    /// one of them is not inside it.
    fn write_runs(&self, runs: &[(usize, usize)], f: &mut dyn FnMut(&str)) -> bool {
        if runs.iter().any(|&(a, b)| self.text.get(a..b).is_none()) {
            return false;
        }
        for &(a, b) in runs {
            if let Some(piece) = self.text.get(a..b).filter(|p| !p.is_empty()) {
                f(piece);
            }
        }
        true
    }

    /// [`NotedVia::kept_runs`] as it was: the runs found by walking the parameters (the
    /// reference the noted cuts are tested against).
    #[cfg(test)]
    fn kept_runs_walked(&self, f: &mut dyn FnMut(&str)) -> bool {
        let v = &self.via;
        let base = self.text.as_ptr() as usize;
        let at = |part: &str| (part.as_ptr() as usize).checked_sub(base);
        // Runs of the text to write: [start, end) pairs; a Via has a handful of parameters.
        let mut runs = [(0usize, 0usize); 4];
        let mut n = 0;
        let Some(mut end) = at(v.params.raw()) else {
            return false;
        };
        let mut run = 0;
        for p in v.params.iter().map_while(Result::ok) {
            let last = p.value.unwrap_or(p.name);
            let Some(p_end) = at(last).map(|a| a + last.len()) else {
                return false;
            };
            if p.name.eq_ignore_ascii_case("received") || p.name.eq_ignore_ascii_case("rport") {
                let Some(slot) = runs.get_mut(n) else {
                    return false;
                };
                *slot = (run, end);
                n += 1;
                run = p_end;
            }
            end = p_end;
        }
        let Some(slot) = runs.get_mut(n) else {
            return false;
        };
        *slot = (run, end);
        n += 1;
        self.write_runs(&runs[..n], f)
    }

    /// The element rebuilt from its parsed parts, `received` and `rport` left out.
    fn kept_params(&self, f: &mut dyn FnMut(&str)) {
        let v = &self.via;
        for part in [v.protocol, "/", v.version, "/", v.transport, " ", v.sent_by] {
            f(part);
        }
        for p in v.params.iter().map_while(Result::ok) {
            if p.name.eq_ignore_ascii_case("received") || p.name.eq_ignore_ascii_case("rport") {
                continue;
            }
            f(";");
            f(p.name);
            if let Some(value) = p.value {
                f("=");
                f(value);
            }
        }
    }
}

/// `ip` as text, written into `buf`: dotted decimal by hand, IPv6 in its RFC 5952 form
/// through the standard formatter.
fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    let len = match ip {
        IpAddr::V4(a) => {
            // At most 15 bytes: each octet's digits, no leading zero, straight into `buf`.
            let mut len = 0;
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let (hundreds, tens) = (octet / 100, octet / 10 % 10);
                if hundreds > 0 {
                    buf[len] = b'0' + hundreds;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + tens;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            len
        }
        IpAddr::V6(a) => {
            let mut w = &mut buf[..];
            let _ = write!(w, "{a}");
            48 - w.len()
        }
    };
    // Digits, dots, colons and hex letters: ASCII, checked a word at a time.
    akagate_proto::simd::ascii_str(&buf[..len]).unwrap_or_default()
}

impl<'a> Message<'a> {
    /// The `received` / `rport` noted for the top Via, if any.
    pub fn via_note(&self) -> Option<ViaNote> {
        self.via_note
    }

    /// Notes `received` / `rport` for the top Via (`None`: nothing to note). The bytes of the
    /// message do not change; [`Message::top_via`] still reads the Via as received.
    pub fn set_via_note(&mut self, note: Option<ViaNote>) {
        self.via_note = note;
    }

    /// This message with `note` set ([`Message::set_via_note`]).
    pub fn with_via_note(mut self, note: Option<ViaNote>) -> Self {
        self.via_note = note;
        self
    }

    /// The first Via line with the note, `None` without a note or when the top Via does not
    /// parse (the line is then written as it is).
    pub(crate) fn noted_via(&self) -> Option<NotedVia<'a>> {
        let note = self.via_note?;
        let via = self.top_via().ok()?;
        let line = self
            .headers()
            .iter()
            .position(|h| h.kind == HeaderKind::Via)?;
        let value = self.headers().get(line)?.value;
        // The top Via runs from the line's start to its end: the line is that one element,
        // no list split needed.
        let first = if via.spans_line(value) {
            value
        } else {
            ListIter::new(value).next()?.ok()?
        };
        let offset = |part: &str, base: usize| (part.as_ptr() as usize).checked_sub(base);
        let start = offset(first, value.as_ptr() as usize)?;
        let end = start.checked_add(first.len())?;
        let in_raw = offset(first, self.raw().as_ptr() as usize)?;
        Some(NotedVia {
            line,
            before: value.get(..start)?,
            via,
            text: first,
            after: value.get(end..)?,
            note,
            element: (in_raw, in_raw.checked_add(first.len())?),
        })
    }

    /// The input with the note written into its top Via (a plain copy without a note): what
    /// a transaction or relay keeps to build responses or requests later. CR, LF and NUL in
    /// the new element become spaces, as in every value a builder writes.
    pub fn noted_bytes(&self) -> Vec<u8> {
        let raw = self.raw();
        let Some(n) = self.noted_via() else {
            return raw.to_vec();
        };
        let (start, end) = n.element;
        let (Some(head), Some(tail)) = (raw.get(..start), raw.get(end..)) else {
            return raw.to_vec();
        };
        let mut out = Vec::with_capacity(raw.len() + 64);
        out.extend_from_slice(head);
        n.element_pieces(&mut |p| {
            out.extend(p.bytes().map(|b| match b {
                b'\r' | b'\n' | 0 => b' ',
                b => b,
            }))
        });
        out.extend_from_slice(tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "REGISTER sip:ims.example SIP/2.0\r\nv: SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport;RECEIVED=10.9.9.9;x=1, SIP/2.0/UDP y;branch=z9hG4bK9\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK0\r\nFrom: <sip:a@ims.example>;tag=1\r\nTo: <sip:a@ims.example>\r\nContact: <sip:a@10.1.0.2:5060>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 4\r\n\r\nbodyjunk";

    fn note(ip: &str, port: Option<u16>) -> Option<ViaNote> {
        Some(ViaNote {
            received: ip.parse().unwrap(),
            rport: port,
        })
    }

    /// `req` parsed, with `ip` and `port` noted for its top Via.
    fn noted_request<'a>(req: &'a str, ip: &str, port: Option<u16>) -> Message<'a> {
        Message::parse(req.as_bytes())
            .unwrap()
            .with_via_note(note(ip, port))
    }

    #[test]
    fn noted_bytes_replace_the_top_element_only() {
        let m = Message::parse(REQ.as_bytes()).unwrap();
        assert_eq!(m.noted_bytes(), REQ.as_bytes());
        for (n, element) in [
            (
                note("192.0.2.7", Some(40000)),
                "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;x=1;received=192.0.2.7;rport=40000",
            ),
            (
                note("2001:db8::1234:5678:9abc:def0", None),
                "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;x=1;received=2001:db8::1234:5678:9abc:def0",
            ),
        ] {
            let m = Message::parse(REQ.as_bytes()).unwrap().with_via_note(n);
            let expected = REQ.replace(
                "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport;RECEIVED=10.9.9.9;x=1",
                element,
            );
            assert_eq!(String::from_utf8(m.noted_bytes()).unwrap(), expected);
            // The message itself is unchanged.
            assert_eq!(m.raw(), REQ.as_bytes());
            let mut line = String::new();
            m.noted_via().unwrap().pieces(&mut |p| line.push_str(p));
            assert_eq!(line, format!("{element}, SIP/2.0/UDP y;branch=z9hG4bK9"));
        }
    }

    #[test]
    fn the_noted_cuts_give_the_runs_the_walk_of_the_parameters_gives() {
        // Sent-bys and parameters (every case of the noted names, flags, values, quoted
        // values, LWS around `;`), up to five parameters in random order, walked or not.
        const SENT_BY: &[&str] = &[
            "SIP/2.0/TCP 10.1.0.2:5060",
            "SIP / 2.0/UDP h",
            "SIP/2.0/TLS [::1]",
        ];
        const PARAMS: &[&str] = &[
            ";branch=z9hG4bK1",
            ";rport",
            ";RPORT=5",
            ";Rport=65535",
            ";received=10.0.0.1",
            ";RECEIVED=10.9.9.9",
            ";x=1",
            ";lr",
            ";x=\"a;b\"",
            " ; rport",
            " ;received=1.2.3.4 ",
            ";ttl=3",
            ";maddr=h",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut decided, mut over) = (0, 0);
        for _ in 0..20_000 {
            let mut via = SENT_BY[next(SENT_BY.len())].to_string();
            for _ in 0..next(6) {
                via.push_str(PARAMS[next(PARAMS.len())]);
            }
            let raw = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nCall-ID: c\r\n\r\n");
            let m = Message::parse(raw.as_bytes())
                .unwrap()
                .with_via_note(note("192.0.2.7", Some(4)));
            let Some(noted) = m.noted_via() else {
                continue;
            };
            let (mut cut, mut walked) = (Vec::new(), Vec::new());
            let a = noted.kept_runs(&mut |p| cut.push(p.to_string()));
            let b = noted.kept_runs_walked(&mut |p| walked.push(p.to_string()));
            assert_eq!((a, &cut), (b, &walked), "{via:?}");
            decided += usize::from(a);
            over += usize::from(!a);
        }
        assert!(decided > 10_000 && over > 100, "{decided} {over}");
    }

    #[test]
    fn a_line_of_one_element_is_that_element_however_it_was_read() {
        // Walked whole, read piece by piece (LWS inside: its runs as written, the `rport` and
        // the `;` before it left out), a trailing comma's empty element
        // after it, a second element: the noted line is the noted element and what follows.
        for (line, element, after) in [
            (
                "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport",
                "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1",
                "",
            ),
            ("SIP/2.0/TCP 10.1.0.2:5060", "SIP/2.0/TCP 10.1.0.2:5060", ""),
            (
                "SIP / 2.0/TCP h ;rport ; branch=z9hG4bK1",
                "SIP / 2.0/TCP h ; branch=z9hG4bK1",
                "",
            ),
            (
                "SIP/2.0/TCP h;branch=z9hG4bK1;rport,",
                "SIP/2.0/TCP h;branch=z9hG4bK1",
                ",",
            ),
            (
                "SIP/2.0/TCP h;rport , SIP/2.0/UDP y",
                "SIP/2.0/TCP h",
                " , SIP/2.0/UDP y",
            ),
        ] {
            let req = REQ.replace("SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport;RECEIVED=10.9.9.9;x=1, SIP/2.0/UDP y;branch=z9hG4bK9", line);
            let m = noted_request(&req, "192.0.2.7", Some(4));
            let mut noted = String::new();
            m.noted_via().unwrap().pieces(&mut |p| noted.push_str(p));
            assert_eq!(
                noted,
                format!("{element};received=192.0.2.7;rport=4{after}"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn the_runs_as_written_are_the_rebuilt_element_when_it_has_no_blanks() {
        for element in [
            "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/TCP 10.1.0.2:5060;rport;branch=z9hG4bK1",
            "SIP/2.0/UDP [2001:db8::1]:5062;Rport=5;branch=z9hG4bK1;received=10.0.0.1;x",
            "SIP/2.0/TLS h.example;received=10.0.0.1;RPORT;rport;received=10.0.0.2;ttl=3",
            "SIP/2.0/TCP h;branch=z9hG4bK1;x=\"a;b\";rport",
            "SIP/2.0/TCP h;branch=z9hG4bK1",
        ] {
            let req = REQ.replace(
                "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport;RECEIVED=10.9.9.9;x=1",
                element,
            );
            let m = noted_request(&req, "192.0.2.7", Some(4));
            let noted = m.noted_via().unwrap();
            let (mut runs, mut rebuilt) = (String::new(), String::new());
            // Four or more left-out parameters take the rebuilt form (at most three runs).
            let ran = noted.kept_runs(&mut |p| runs.push_str(p));
            noted.kept_params(&mut |p| rebuilt.push_str(p));
            let low = element.to_ascii_lowercase();
            assert_eq!(
                ran,
                low.matches("received").count() + low.matches("rport").count() < 4
            );
            if ran {
                assert_eq!(runs, rebuilt, "{element}");
            }
        }
        // With blanks the element keeps them, as the request wrote it (RFC 3261 8.2.6.2).
        let req = REQ.replace(
            "SIP/2.0/TCP 10.1.0.2:5060;branch=z9hG4bK1;rport;RECEIVED=10.9.9.9;x=1",
            "SIP / 2.0 / TCP 10.1.0.2:5060 ; branch = z9hG4bK1 ;rport ; x",
        );
        let m = noted_request(&req, "192.0.2.7", None);
        let mut line = String::new();
        m.noted_via()
            .unwrap()
            .element_pieces(&mut |p| line.push_str(p));
        assert_eq!(
            line,
            "SIP / 2.0 / TCP 10.1.0.2:5060 ; branch = z9hG4bK1 ; x;received=192.0.2.7"
        );
    }

    #[test]
    fn addresses_and_ports_as_the_formatter_writes_them() {
        let mut buf = [0u8; 48];
        for ip in [
            "0.0.0.0",
            "10.0.1.1",
            "1.20.100.9",
            "9.99.199.200",
            "192.168.255.100",
            "255.255.255.255",
            "2001:db8::9",
            "::ffff:192.0.2.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut buf), ip.to_string());
        }
    }

    #[test]
    fn nothing_to_note_without_a_via() {
        let raw = "OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n";
        let m = Message::parse(raw.as_bytes())
            .unwrap()
            .with_via_note(note("192.0.2.1", Some(1)));
        assert!(m.noted_via().is_none());
        assert_eq!(m.noted_bytes(), raw.as_bytes());
    }
}
