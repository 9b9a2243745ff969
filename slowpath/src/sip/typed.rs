//! Typed accessors on [`Message`] for the headers a P-CSCF reads: Via, From, To, Call-ID,
//! CSeq, Contact, the route sets, Max-Forwards, Expires and option tags (RFC 3261 20).

use super::error::ParseError;
use super::header_name::HeaderKind;
use super::lex::{is_lws, is_token, parse_decimal, trim_lws, ListIter};
use super::message::Message;
use super::name_addr::{delta_seconds, Contact, NameAddr};
use super::via::Via;

/// The CSeq header (RFC 3261 20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number, below 2^31 (RFC 3261 8.1.1.5).
    pub seq: u32,
    /// Method token.
    pub method: &'a str,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &'a str) -> Result<CSeq<'a>, ParseError> {
        let s = trim_lws(s);
        if let Some(cseq) = CSeq::parse_plain(s) {
            return Ok(cseq);
        }
        CSeq::parse_general(s)
    }

    /// `CSeq::parse` without its plain-form shortcut (`s` trimmed): the general reading,
    /// and the reference the shortcut is tested against.
    fn parse_general(s: &'a str) -> Result<CSeq<'a>, ParseError> {
        let bad = ParseError::BadHeader("CSeq");
        let split = s.bytes().position(is_lws).ok_or(bad)?;
        let seq = parse_decimal(&s[..split], (1 << 31) - 1).ok_or(bad)? as u32;
        let method = trim_lws(&s[split..]);
        if !is_token(method) {
            return Err(bad);
        }
        Ok(CSeq { seq, method })
    }

    /// `s` (trimmed) as `digits SP method` with nothing else: the digits up to the one SP,
    /// the method's letters eight at a time to the end. `None` for any other form (more
    /// LWS, a bad number or method), which [`CSeq::parse`] then reads in full; a test holds
    /// the two to the same answer.
    fn parse_plain(s: &'a str) -> Option<CSeq<'a>> {
        let b = s.as_bytes();
        let sp = b.iter().position(|c| !c.is_ascii_digit())?;
        if b[sp] != b' ' {
            return None;
        }
        let from = sp + 1;
        let mut i = from;
        while let Some(word) = akagate_proto::swar::word_at(b, i) {
            let run = akagate_proto::swar::leading_letters_or_dash(word);
            i += run;
            if run < 8 {
                break;
            }
        }
        while b.get(i).copied().is_some_and(super::lex::is_token_char) {
            i += 1;
        }
        if i == from || i != b.len() {
            return None;
        }
        let seq = parse_decimal(s.get(..sp)?, (1 << 31) - 1)? as u32;
        Some(CSeq {
            seq,
            method: s.get(from..)?,
        })
    }
}

/// Where the Contact list goes on after its first element (the cache of
/// [`Message::first_contact`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ContactTail<'a> {
    /// The first element was walked to its end: the text after its comma in the first
    /// Contact line (`None`: it was that line's only element).
    Rest(Option<&'a str>),
    /// The first element came from the list split: skip one element of the whole list.
    Unknown,
}

/// Call-ID = word ["@" word] (RFC 3261 25.1): a word's bytes (the reference of
/// [`CALL_ID_BYTE`]).
#[cfg(test)]
fn is_word_char(b: u8) -> bool {
    super::lex::is_token_char(b)
        || matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

/// The bytes of a Call-ID: a word's (`is_word_char`: a token's and the word's own), and
/// `@` (a test holds it to `is_word_char` on every byte value).
const CALL_ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let others = b"-.!%*_+`'~()<>:\\\"/[]?{}@";
    let mut i = 0;
    while i < others.len() {
        t[others[i] as usize] = true;
        i += 1;
    }
    t
};

/// `v` is a Call-ID, `word ["@" word]`, checked in one pass: every byte a word's or `@`, at
/// most one `@`, and neither at an end. `is_call_id_reference` is the same check as four
/// passes (a test compares them).
fn is_call_id(v: &str) -> bool {
    let b = v.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    let (mut ok, mut ats) = (true, 0u32);
    for &c in b {
        ok &= CALL_ID_BYTE[usize::from(c)];
        ats += u32::from(c == b'@');
    }
    ok && ats <= 1 && first != b'@' && last != b'@'
}

/// [`is_call_id`] as it was written first: the test's reference.
#[cfg(test)]
fn is_call_id_reference(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| is_word_char(b) || b == b'@')
        && v.bytes().filter(|&b| b == b'@').count() <= 1
        && !v.starts_with('@')
        && !v.ends_with('@')
}

/// A header that holds one name-addr (From, To) read in two steps: the list split, then the
/// element's parse. `Message::single_name_addr` takes it where the one walk does not decide;
/// the walk's tests hold the walk to it.
pub(crate) fn single_name_addr_two_step<'a>(
    value: &'a str,
    label: &'static str,
) -> Result<NameAddr<'a>, ParseError> {
    let mut it = super::lex::ListIter::new(value);
    let first = it
        .next()
        .ok_or(ParseError::BadHeader(label))?
        .map_err(|_| ParseError::BadHeader(label))?;
    if it.next().is_some() {
        return Err(ParseError::MultipleHeaders(label));
    }
    NameAddr::parse(first).map_err(|_| ParseError::BadHeader(label))
}

impl<'a> Message<'a> {
    fn single_name_addr(&self, kind: HeaderKind) -> Result<NameAddr<'a>, ParseError> {
        let label = kind.label();
        let value = self.required(kind)?;
        // From and To usually carry the same URI: the one parsed first (From, in `validate`)
        // stands for the other's where the text is the same.
        let other = match kind {
            HeaderKind::To => &self.from,
            _ => &self.to,
        };
        let known = other.get().and_then(|r| r.as_ref().ok()).map(|a| &a.uri);
        // One walk where it decides; the list split and the element's parse otherwise.
        if let Some((addr, rest)) = NameAddr::parse_list_head_known(value, known) {
            return match rest {
                None => Ok(addr),
                Some(_) => Err(ParseError::MultipleHeaders(label)),
            };
        }
        single_name_addr_two_step(value, label)
    }

    /// Every Via value, topmost first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.list_values(HeaderKind::Via).map(|r| {
            r.map_err(|_| ParseError::BadHeader("Via"))
                .and_then(Via::parse)
        })
    }

    /// The topmost Via (the one that identifies the transaction).
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        self.cached_top_via().copied()
    }

    /// [`Message::top_via`] borrowed from its cache: the parsed headers are a few hundred
    /// bytes each, and a caller that reads one field need not copy them out.
    pub(crate) fn cached_top_via(&self) -> Result<&Via<'a>, ParseError> {
        self.top_via
            .get_or_init(|| {
                // A first Via line the one walk reads whole is its own first element (the
                // walk passes no `,`, `"`, `<` or LWS at either end): no list split.
                if let Some(via) = self.header(HeaderKind::Via).and_then(Via::parse_walked) {
                    return Ok(via);
                }
                self.vias()
                    .next()
                    .unwrap_or(Err(ParseError::MissingHeader("Via")))
            })
            .as_ref()
            .map_err(|e| *e)
    }

    /// The From header.
    pub fn from_header(&self) -> Result<NameAddr<'a>, ParseError> {
        self.cached_from().copied()
    }

    /// [`Message::from_header`] borrowed from its cache.
    pub(crate) fn cached_from(&self) -> Result<&NameAddr<'a>, ParseError> {
        self.from
            .get_or_init(|| self.single_name_addr(HeaderKind::From))
            .as_ref()
            .map_err(|e| *e)
    }

    /// The To header.
    pub fn to_header(&self) -> Result<NameAddr<'a>, ParseError> {
        self.cached_to().copied()
    }

    /// [`Message::to_header`] borrowed from its cache.
    pub(crate) fn cached_to(&self) -> Result<&NameAddr<'a>, ParseError> {
        self.to
            .get_or_init(|| self.single_name_addr(HeaderKind::To))
            .as_ref()
            .map_err(|e| *e)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&'a str, ParseError> {
        *self.call_id.get_or_init(|| {
            let v = self.required(HeaderKind::CallId)?;
            is_call_id(v)
                .then_some(v)
                .ok_or(ParseError::BadHeader("Call-ID"))
        })
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        CSeq::parse(self.required(HeaderKind::CSeq)?)
    }

    /// Every Contact value in order.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, ParseError>> + '_ {
        self.list_values(HeaderKind::Contact).map(|r| {
            r.and_then(Contact::parse)
                .map_err(|_| ParseError::BadHeader("Contact"))
        })
    }

    /// The first Contact value ([`Message::contacts`]'s first item), parsed once per message.
    pub fn first_contact(&self) -> Option<Result<Contact<'a>, ParseError>> {
        self.cached_first_contact().map(|r| r.copied())
    }

    /// [`Message::first_contact`] borrowed from its cache.
    pub(crate) fn cached_first_contact(&self) -> Option<Result<&Contact<'a>, ParseError>> {
        self.first_contact_cell()
            .0
            .as_ref()
            .map(|r| r.as_ref().map_err(|e| *e))
    }

    /// The first Contact and what follows it: in one walk of its list element where
    /// [`NameAddr::parse_list_head`] decides, as [`Message::contacts`]'s first item otherwise.
    fn first_contact_cell(&self) -> &(Option<Result<Contact<'a>, ParseError>>, ContactTail<'a>) {
        self.first_contact.get_or_init(|| {
            let walked = self
                .header(HeaderKind::Contact)
                .and_then(NameAddr::parse_list_head);
            match walked {
                Some((addr, rest)) => (Some(Ok(Contact::Addr(addr))), ContactTail::Rest(rest)),
                None => (self.contacts().next(), ContactTail::Unknown),
            }
        })
    }

    /// Every Contact list element after the first, unparsed ([`Message::list_values`] of
    /// Contact but its first item), without splitting the first one off again where the walk
    /// found its end.
    pub(crate) fn contact_values_after_first(
        &self,
    ) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        let (walked, head) = match self.first_contact_cell().1 {
            ContactTail::Rest(rest) => (true, rest),
            ContactTail::Unknown => (false, None),
        };
        head.into_iter().flat_map(ListIter::new).chain(
            self.header_values(HeaderKind::Contact)
                .skip(usize::from(walked))
                .flat_map(ListIter::new)
                .skip(usize::from(!walked)),
        )
    }

    /// Every name-addr of a list header (Route, Record-Route, Path, Service-Route,
    /// P-Associated-URI ...), in order.
    pub fn name_addrs(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        let label = kind.label();
        self.list_values(kind).map(move |r| {
            r.and_then(NameAddr::parse)
                .map_err(|_| ParseError::BadHeader(label))
        })
    }

    /// Route values.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderKind::Route)
    }

    /// Record-Route values.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderKind::RecordRoute)
    }

    /// Path values (RFC 3327).
    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderKind::Path)
    }

    /// Service-Route values (RFC 3608).
    pub fn service_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderKind::ServiceRoute)
    }

    /// Max-Forwards, 0..=255 (RFC 3261 20.22).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single(HeaderKind::MaxForwards)?
            .map(|v| {
                parse_decimal(v, 255)
                    .map(|v| v as u8)
                    .ok_or(ParseError::BadHeader("Max-Forwards"))
            })
            .transpose()
    }

    /// Expires in seconds, saturated at 2^32-1 (RFC 3261 20.19).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.single(HeaderKind::Expires)?
            .map(|v| delta_seconds(v).ok_or(ParseError::BadHeader("Expires")))
            .transpose()
    }

    /// Option tags of Require / Proxy-Require / Supported / Unsupported.
    pub fn option_tags(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        let label = kind.label();
        self.list_values(kind).map(move |r| match r {
            Ok(t) if is_token(t) => Ok(t),
            _ => Err(ParseError::BadHeader(label)),
        })
    }

    /// Whether every option tag of every `kind` line is a token (`Err(BadHeader)` if not):
    /// what [`Message::option_tags`] would find, without splitting the lists
    /// ([`super::lex::is_token_list`]).
    pub(crate) fn check_option_tags(&self, kind: HeaderKind) -> Result<(), ParseError> {
        if self.header_values(kind).all(super::lex::is_token_list) {
            Ok(())
        } else {
            Err(ParseError::BadHeader(kind.label()))
        }
    }

    /// Require option tags.
    pub fn require(&self) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        self.option_tags(HeaderKind::Require)
    }

    /// Proxy-Require option tags.
    pub fn proxy_require(&self) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        self.option_tags(HeaderKind::ProxyRequire)
    }

    /// Supported option tags.
    pub fn supported(&self) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        self.option_tags(HeaderKind::Supported)
    }

    /// True if `tag` is listed in the option-tag header `kind`.
    pub fn has_option_tag(&self, kind: HeaderKind, tag: &str) -> bool {
        self.option_tags(kind)
            .any(|t| t.is_ok_and(|t| t.eq_ignore_ascii_case(tag)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_call_id_check_is_the_four_pass_one() {
        for c in 0..=255u8 {
            assert_eq!(
                CALL_ID_BYTE[usize::from(c)],
                is_word_char(c) || c == b'@',
                "{c}"
            );
        }
        // Every byte value at every position of short values around an `@`, and random ones.
        for base in ["a", "ab@cd", "x.y-z!@[v6]", "@", "a@b@c"] {
            for at in 0..=base.len() {
                for c in 0..=255u8 {
                    for replace in [false, true] {
                        let mut v = base.as_bytes().to_vec();
                        if replace && at < v.len() {
                            v[at] = c;
                        } else {
                            v.insert(at, c);
                        }
                        if let Ok(v) = std::str::from_utf8(&v) {
                            assert_eq!(is_call_id(v), is_call_id_reference(v), "{v:?}");
                        }
                    }
                }
            }
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(27);
        let alphabet = b"a0.@@<>\\\"{} \t;,\x7f\x00";
        let mut accepted = 0;
        for _ in 0..200_000 {
            let v: Vec<u8> = (0..rng.gen_range(0..12))
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let v = std::str::from_utf8(&v).expect("ASCII");
            assert_eq!(is_call_id(v), is_call_id_reference(v), "{v:?}");
            accepted += usize::from(is_call_id(v));
        }
        assert_eq!(is_call_id(""), is_call_id_reference(""));
        assert!(accepted > 1_000, "{accepted}");
    }

    #[test]
    fn a_call_id_read_again_is_what_its_first_check_said() {
        let msg = |call_id: &str| {
            format!(
                "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        for (id, ok) in [
            ("abc@host", true),
            ("a@b@c", false),
            ("@x", false),
            ("x y", false),
        ] {
            let text = msg(id);
            let m = Message::parse(text.as_bytes()).unwrap();
            // The first read checks, the later ones reuse the check: same answer each time.
            for _ in 0..3 {
                let got = m.call_id();
                assert_eq!(got.is_ok(), ok, "{id}");
                if ok {
                    assert_eq!(got, Ok(id));
                } else {
                    assert_eq!(got, Err(ParseError::BadHeader("Call-ID")));
                }
            }
        }
    }

    /// `CSeq::parse` without its plain-form shortcut: the reference.
    fn cseq_general(s: &str) -> Result<CSeq<'_>, ParseError> {
        CSeq::parse_general(trim_lws(s))
    }

    #[test]
    fn the_plain_cseq_shortcut_is_the_general_parse() {
        const PIECES: [&str; 16] = [
            "1",
            "0",
            "2147483647",
            "2147483648",
            "99999999999999999999",
            " ",
            "  ",
            "\t",
            "\r\n ",
            "REGISTER",
            "INVITE",
            "a.b-c!",
            "x y",
            "\u{e9}",
            ";",
            "",
        ];
        let mut state = 0xc5e9_0000_1234_5678u64;
        let (mut ok, mut plain) = (0, 0);
        for _ in 0..200_000 {
            let mut v = String::new();
            for _ in 0..state % 5 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                v.push_str(PIECES[(state % PIECES.len() as u64) as usize]);
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let got = CSeq::parse(&v);
            ok += usize::from(got.is_ok());
            if let Some(p) = CSeq::parse_plain(trim_lws(&v)) {
                plain += 1;
                assert_eq!(Ok(p), cseq_general(&v), "{v:?}");
            }
            assert_eq!(got, cseq_general(&v), "{v:?}");
        }
        assert!(ok > 1000 && plain > 300, "{ok} {plain}");
    }

    #[test]
    fn cseq_forms() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE").unwrap(),
            CSeq {
                seq: 9,
                method: "INVITE"
            }
        );
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert!(CSeq::parse("2147483647 INVITE").is_ok());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("1 INVITE x").is_err());
    }
}
