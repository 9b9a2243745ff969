//! One `sec-mechanism` of a Security-Client/-Server/-Verify header (RFC 3329 2.2): parsing,
//! rendering, and the parameter-for-parameter comparison Security-Verify needs (RFC 3329 2.3.1).

use std::borrow::Cow;

use akagate_proto::sipscan::is_token_char;
use akagate_proto::swar;
use thiserror::Error;

use super::spans::{ParamSpan, Spans};
use crate::sip::lex::is_token;

/// Upper bound on mechanisms accepted in one header (real UEs send up to 6).
const MAX_MECHANISMS: usize = 32;
/// Upper bound on parameters of one mechanism.
const MAX_PARAMS: usize = 32;

/// Why a security header could not be parsed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SecAgreeError {
    /// The header value holds no mechanism.
    #[error("empty security header")]
    Empty,
    /// A mechanism has no name (e.g. `;alg=...` or `,,`).
    #[error("mechanism without a name")]
    MissingMechanismName,
    /// A mechanism name or parameter name is not a token.
    #[error("bad token in security header")]
    BadToken,
    /// A quoted string is not closed.
    #[error("unterminated quoted string in security header")]
    UnterminatedQuote,
    /// More mechanisms or parameters than we accept.
    #[error("too many mechanisms or parameters in security header")]
    TooLarge,
}

/// One security mechanism with its parameters, names lower-cased, values as sent (trimmed).
///
/// The parameters live in one string, written as [`SecMechanism::render`] writes them after
/// the name (`;name=value;name`…), indexed by spans kept inline up to nine parameters: a
/// parsed mechanism costs two allocations (name and text) whatever its parameter count up to
/// nine (a REGISTER's Security-Client carries six mechanisms of eight parameters each), our
/// Security-Server one (its text), and the rendering is the name and that string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecMechanism {
    /// Mechanism name, lower-case (`ipsec-3gpp`, `digest`, `tls`, ...): borrowed for a
    /// name fixed in the program (our Security-Server's, no allocation), owned when parsed.
    pub name: Cow<'static, str>,
    /// Every parameter as rendered: `;name` and, for a non-empty value, `=value`.
    text: String,
    /// Where each parameter's name and value are in `text`, in the order sent.
    spans: Spans,
}

impl SecMechanism {
    /// A mechanism with no parameters.
    pub fn new(name: &str) -> Self {
        Self {
            name: Cow::Owned(name.to_ascii_lowercase()),
            text: String::new(),
            spans: Spans::default(),
        }
    }

    /// An empty mechanism `name` with room for `params` parameters of `text` bytes in all
    /// (one allocation each for a mechanism built whole, as our Security-Server is).
    pub fn with_capacity(name: &str, params: usize, text: usize) -> Self {
        Self {
            name: Cow::Owned(name.to_ascii_lowercase()),
            text: String::with_capacity(text),
            spans: Spans::with_capacity(params),
        }
    }

    /// [`SecMechanism::with_capacity`] for a lower-case name fixed in the program
    /// (`ipsec-3gpp`, `tls`): the name is borrowed, not copied (one allocation fewer).
    pub fn with_capacity_static(name: &'static str, params: usize, text: usize) -> Self {
        debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        Self {
            name: Cow::Borrowed(name),
            text: String::with_capacity(text),
            spans: Spans::with_capacity(params),
        }
    }

    /// Appends a parameter (builder style).
    pub fn with(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        use std::fmt::Write as _;
        let name_start = self.start_param(name);
        self.text[name_start..].make_ascii_lowercase();
        let value_start = self.text.len();
        let _ = write!(self.text, "{value}");
        self.end_param(name_start, value_start);
        self
    }

    /// [`SecMechanism::with`] for a text value, without the formatter.
    pub fn with_str(mut self, name: &str, value: &str) -> Self {
        let name_start = self.start_param(name);
        self.text[name_start..].make_ascii_lowercase();
        let value_start = self.text.len();
        self.text.push_str(value);
        self.end_param(name_start, value_start);
        self
    }

    /// A mechanism of a lower-case `name` fixed in the program whose parameters were
    /// written whole, as rendered (`;name=value`…), with their `spans`: our Security-Server
    /// ([`ChosenMechanism::security_server`](super::ChosenMechanism::security_server)).
    pub(super) fn from_rendered(name: &'static str, text: String, spans: Spans) -> Self {
        debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
        Self {
            name: Cow::Borrowed(name),
            text,
            spans,
        }
    }

    /// Writes `;name=` and returns where the name starts (the value follows the `=`).
    #[inline]
    fn start_param(&mut self, name: &str) -> usize {
        self.text.push(';');
        let name_start = self.text.len();
        self.text.push_str(name);
        self.text.push('=');
        name_start
    }

    /// Ends the parameter whose name starts at `name_start` and whose value was written
    /// from `value_start` to the end of `text`: an empty value takes back its `=` (the
    /// rendering writes none), then the span is recorded.
    #[inline]
    fn end_param(&mut self, name_start: usize, mut value_start: usize) {
        if self.text.len() == value_start {
            self.text.pop();
            value_start -= 1;
        }
        self.push_span(name_start, value_start);
    }

    /// [`SecMechanism::with`] for a number (SPIs, ports), written without the formatter.
    pub fn with_u32(self, name: &str, value: u32) -> Self {
        self.with_str(name, itoa::Buffer::new().format(value))
    }

    /// Records the parameter whose name starts at `name_start` and whose value, from
    /// `value_start`, ends at the end of `text`.
    fn push_span(&mut self, name_start: usize, value_start: usize) {
        // A header value is bounded by the message size limit, far below 4 GiB.
        let at = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        self.spans.push(ParamSpan {
            name_start: at(name_start),
            value_start: at(value_start),
            end: at(self.text.len()),
        });
    }

    /// The parameters in the order sent: lower-case name, value as sent (empty when absent).
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.as_slice().iter().map(|s| {
            let (n, v, e) = (
                s.name_start as usize,
                s.value_start as usize,
                s.end as usize,
            );
            // A value follows its name's `=` when it is not empty.
            let name_end = if v == e { v } else { v - 1 };
            (
                self.text.get(n..name_end).unwrap_or(""),
                self.text.get(v..e).unwrap_or(""),
            )
        })
    }

    /// [`SecMechanism::params`] as bytes, without `str`'s boundary checks (every span starts
    /// and ends at an ASCII `;` or `=` of the text, or its end): what a record copies.
    pub(crate) fn param_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let text = self.text.as_bytes();
        self.spans.as_slice().iter().map(move |s| {
            let (n, v, e) = (
                s.name_start as usize,
                s.value_start as usize,
                s.end as usize,
            );
            let name_end = if v == e { v } else { v - 1 };
            (
                text.get(n..name_end).unwrap_or_default(),
                text.get(v..e).unwrap_or_default(),
            )
        })
    }

    /// Every parameter as rendered, in the order sent (`;name=value`…: one look over all of
    /// them, e.g. for bytes a record must escape).
    pub(crate) fn param_text(&self) -> &str {
        &self.text
    }

    /// How many parameters there are.
    pub(crate) fn param_count(&self) -> usize {
        self.spans.len()
    }

    /// The value of parameter `name` (case-insensitive), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A decimal `u32` parameter (`spi-c`, `spi-s`); `None` when absent or malformed.
    pub fn param_u32(&self, name: &str) -> Option<u32> {
        self.param(name).and_then(|v| v.parse().ok())
    }

    /// A decimal `u16` parameter (`port-c`, `port-s`); `None` when absent or malformed.
    pub fn param_u16(&self, name: &str) -> Option<u16> {
        self.param(name).and_then(|v| v.parse().ok())
    }

    /// Whether two mechanisms are the same parameter for parameter, ignoring case, whitespace
    /// and parameter order (RFC 3329 2.3.1 step 3, TS 33.203 7.2); `q` compared as a number.
    pub fn equivalent(&self, other: &impl Mechanism) -> bool {
        equivalent(self, other)
    }

    /// Renders the mechanism as `name;p=v;p=v` (no spaces).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(self.name.len() + self.text.len());
        self.render_pieces(|p| s.push_str(p));
        s
    }

    /// Whether `text` is exactly what [`SecMechanism::render`] writes: a UE that echoes the
    /// Security-Server it was sent as it was written (the usual case) is recognised without
    /// parsing the echo. Two compares: the parameters are kept as rendered.
    pub fn renders_as(&self, text: &str) -> bool {
        text.len() == self.name.len() + self.text.len()
            && text.as_bytes().starts_with(self.name.as_bytes())
            && text.as_bytes().ends_with(self.text.as_bytes())
    }

    /// [`SecMechanism::render`] handed piece by piece to `put` (written straight into a
    /// message, no intermediate string): the name, then the parameters as kept.
    pub fn render_pieces(&self, mut put: impl FnMut(&str)) {
        put(&self.name);
        put(&self.text);
    }
}

/// Whether `a` and `b` are the same mechanism parameter for parameter (see
/// [`SecMechanism::equivalent`]). The parameters are compared as multisets of normalised
/// (name, value) pairs without allocating: each of `a`'s is matched with an unused equal one
/// of `b`'s (equality of normal forms is an equivalence, so matching greedily is exact).
pub fn equivalent(a: &impl Mechanism, b: &impl Mechanism) -> bool {
    if !a.name().eq_ignore_ascii_case(b.name()) {
        return false;
    }
    // `b`'s parameters read once onto the stack; parsing bounds a mechanism to MAX_PARAMS.
    let mut theirs = [("", ""); MAX_PARAMS];
    let mut nb = 0;
    for p in b.each_param() {
        let Some(slot) = theirs.get_mut(nb) else {
            return false;
        };
        *slot = p;
        nb += 1;
    }
    let theirs = &theirs[..nb];
    let mut used = 0u64;
    let mut na = 0;
    let same = |(n, v): (&str, &str), (on, ov): (&str, &str)| {
        n.eq_ignore_ascii_case(on) && (v == ov || same_value(n, v, ov))
    };
    let all_found = a.each_param().all(|p| {
        let at = na;
        na += 1;
        // An echo usually keeps the order: the parameter at the same place first.
        let found = match theirs.get(at) {
            Some(&o) if used & (1 << at) == 0 && same(p, o) => Some(at),
            _ => theirs
                .iter()
                .enumerate()
                .position(|(i, &o)| used & (1 << i) == 0 && same(p, o)),
        };
        found.map(|i| used |= 1 << i).is_some()
    });
    all_found && na == nb
}

/// A value in the form equivalence compares: trimmed, unquoted; `q` in thousandths so `0.1`
/// equals `0.100`; a number without leading zeros; anything else compared ignoring case.
enum Normal<'a> {
    Number(u32),
    Digits(&'a str),
    Text(&'a str),
}

fn normal<'a>(name: &str, value: &'a str) -> Normal<'a> {
    let v = value.trim().trim_matches('"');
    if name.eq_ignore_ascii_case("q") {
        if let Some(t) = qvalue_thousandths(v) {
            return Normal::Number(t);
        }
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let t = v.trim_start_matches('0');
        return Normal::Digits(if t.is_empty() { "0" } else { t });
    }
    Normal::Text(v)
}

/// Whether values `a` and `b` of parameter `name` are equal once normalised ([`Normal`]).
fn same_value(name: &str, a: &str, b: &str) -> bool {
    match (normal(name, a), normal(name, b)) {
        (Normal::Number(x), Normal::Number(y)) => x == y,
        (Normal::Digits(x), Normal::Digits(y)) => x == y,
        (Normal::Text(x), Normal::Text(y)) => x.eq_ignore_ascii_case(y),
        // A `q` that reads as a qvalue is rendered in thousandths; the old comparison
        // compared those digits with the other side's normalised text.
        (Normal::Number(x), Normal::Digits(y)) | (Normal::Digits(y), Normal::Number(x)) => {
            y.parse::<u32>().is_ok_and(|y| y == x)
        }
        // Thousandths are digits, which a `Text` never is.
        _ => false,
    }
}

/// RFC 3261 qvalue (`0[.ddd]` / `1[.000]`) in thousandths.
fn qvalue_thousandths(v: &str) -> Option<u32> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let i: u32 = int.parse().ok()?;
    let mut f = 0u32;
    for k in 0..3 {
        f = f * 10 + frac.as_bytes().get(k).map_or(0, |d| u32::from(d - b'0'));
    }
    let t = i * 1000 + f;
    (t <= 1000).then_some(t)
}

/// Splits `s` at `sep` outside double quotes (backslash escapes honoured inside quotes).
pub(crate) fn split_outside_quotes(s: &str, sep: u8) -> Result<OutsideQuotes<'_>, SecAgreeError> {
    let mut it = OutsideQuotes {
        s,
        pos: 0,
        sep,
        done: false,
        plain: memchr::memchr(b'"', s.as_bytes()).is_none(),
    };
    if it.plain {
        return Ok(it);
    }
    // One pass to find an unclosed quote first, so the error does not depend on what precedes it.
    while it.next_end().is_some() {}
    if it.pos == usize::MAX {
        return Err(SecAgreeError::UnterminatedQuote);
    }
    it.pos = 0;
    it.done = false;
    Ok(it)
}

/// The pieces of [`split_outside_quotes`], borrowed from its input.
pub(crate) struct OutsideQuotes<'a> {
    s: &'a str,
    pos: usize,
    sep: u8,
    done: bool,
    /// No quote in the input: pieces end at every separator.
    plain: bool,
}

impl<'a> OutsideQuotes<'a> {
    /// No pieces at all.
    const EMPTY: Self = OutsideQuotes {
        s: "",
        pos: 0,
        sep: 0,
        done: true,
        plain: true,
    };

    /// The pieces of `s`, known to hold no quote, at every `sep`.
    fn plain(s: &'a str, sep: u8) -> Self {
        OutsideQuotes {
            s,
            pos: 0,
            sep,
            done: false,
            plain: true,
        }
    }

    /// The end of the next piece (at a separator or the end of input); leaves `pos` at
    /// `usize::MAX` when the input ends inside quotes.
    fn next_end(&mut self) -> Option<usize> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        if self.plain {
            let start = self.pos;
            match bytes
                .get(start..)
                .and_then(|rest| find_byte(self.sep, rest))
            {
                Some(i) => self.pos = start + i + 1,
                None => {
                    self.done = true;
                    self.pos = bytes.len();
                }
            }
            return Some(start);
        }
        let (mut in_q, mut esc) = (false, false);
        for (i, &b) in bytes.iter().enumerate().skip(self.pos) {
            if in_q {
                if esc {
                    esc = false;
                } else if b == b'\\' {
                    esc = true;
                } else if b == b'"' {
                    in_q = false;
                }
            } else if b == b'"' {
                in_q = true;
            } else if b == self.sep {
                let start = self.pos;
                self.pos = i + 1;
                return Some(start);
            }
        }
        self.done = true;
        let start = self.pos;
        self.pos = if in_q { usize::MAX } else { bytes.len() };
        Some(start)
    }
}

impl<'a> Iterator for OutsideQuotes<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.next_end()?;
        let end = if self.done {
            self.s.len()
        } else {
            self.pos - 1
        };
        // Separators and quotes are ASCII, so both ends are character boundaries.
        self.s.get(start..end)
    }
}

/// What choosing an offer and checking Security-Verify read of a mechanism: its name and
/// parameters (names compared ignoring case). [`SecMechanism`] owns them; [`MechanismView`]
/// borrows them from the header.
pub trait Mechanism {
    /// The mechanism name as sent or stored.
    fn name(&self) -> &str;

    /// Every parameter in order: name, value (trimmed; empty when absent).
    fn each_param(&self) -> impl Iterator<Item = (&str, &str)>;

    /// The value of parameter `name` (case-insensitive), if present.
    fn param(&self, name: &str) -> Option<&str> {
        self.each_param()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A decimal `u32` parameter (`spi-c`, `spi-s`); `None` when absent or malformed.
    fn param_u32(&self, name: &str) -> Option<u32> {
        self.param(name).and_then(|v| v.parse().ok())
    }

    /// A decimal `u16` parameter (`port-c`, `port-s`); `None` when absent or malformed.
    fn param_u16(&self, name: &str) -> Option<u16> {
        self.param(name).and_then(|v| v.parse().ok())
    }

    /// The first value of each of [`OFFER_PARAMS`] (what choosing an `ipsec-3gpp` offer
    /// reads), in that order.
    fn offer_params(&self) -> [Option<&str>; 8] {
        let mut read = [None; 8];
        for (n, v) in self.each_param() {
            note_offer_param(&mut read, n, v);
        }
        read
    }
}

/// The parameters of an `ipsec-3gpp` offer (TS 33.203 7.1), as [`Mechanism::offer_params`]
/// returns them.
pub const OFFER_PARAMS: [&str; 8] = [
    "prot", "mod", "alg", "ealg", "spi-c", "spi-s", "port-c", "port-s",
];

/// Records `value` for `name` if it is one of [`OFFER_PARAMS`] not seen yet (the first of
/// each name counts, as [`Mechanism::param`] reads it).
fn note_offer_param<'a>(read: &mut [Option<&'a str>; 8], name: &str, value: &'a str) {
    if let Some(i) = offer_slot(name.len(), packed_lower(name.as_bytes())) {
        read[i].get_or_insert(value);
    }
}

/// The first eight bytes of `name`, lower-cased and packed little-endian: with the length,
/// what [`offer_slot`] compares (one integer comparison per known name).
fn packed_lower(name: &[u8]) -> u64 {
    let mut word = 0u64;
    for (i, &c) in name.iter().take(8).enumerate() {
        word |= u64::from(c.to_ascii_lowercase()) << (8 * i);
    }
    word
}

/// [`packed_lower`] of a lower-case name, at compile time.
const fn packed(name: &[u8]) -> u64 {
    let mut word = 0u64;
    let mut i = 0;
    while i < name.len() && i < 8 {
        word |= (name[i] as u64) << (8 * i);
        i += 1;
    }
    word
}

/// Where a parameter of `len` bytes whose [`packed_lower`] is `word` goes in
/// [`Mechanism::offer_params`] ([`OFFER_PARAMS`] order); `None` for the others.
fn offer_slot(len: usize, word: u64) -> Option<usize> {
    const PROT: u64 = packed(b"prot");
    const MOD: u64 = packed(b"mod");
    const ALG: u64 = packed(b"alg");
    const EALG: u64 = packed(b"ealg");
    const SPI_C: u64 = packed(b"spi-c");
    const SPI_S: u64 = packed(b"spi-s");
    const PORT_C: u64 = packed(b"port-c");
    const PORT_S: u64 = packed(b"port-s");
    // Every known name is at most 8 bytes, so length and word identify it exactly.
    let i = match (len, word) {
        (4, PROT) => 0,
        (3, MOD) => 1,
        (3, ALG) => 2,
        (4, EALG) => 3,
        (5, SPI_C) => 4,
        (5, SPI_S) => 5,
        (6, PORT_C) => 6,
        (6, PORT_S) => 7,
        _ => return None,
    };
    debug_assert_eq!(packed(OFFER_PARAMS[i].as_bytes()), word);
    Some(i)
}

impl Mechanism for SecMechanism {
    fn name(&self) -> &str {
        &self.name
    }

    fn each_param(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params()
    }
}

/// One mechanism of a header value, checked and borrowed from it (no allocation): what
/// [`parse_security_header`] would turn into a [`SecMechanism`].
#[derive(Clone, Copy, Debug)]
pub struct MechanismView<'a> {
    name: &'a str,
    /// The `;`-separated parameters after the name (`None` without a `;`).
    params: Option<&'a str>,
    /// [`Mechanism::offer_params`], read in the pass that checked the view: choosing an offer
    /// does not walk the parameters again.
    offer: [Option<&'a str>; 8],
}

impl<'a> Mechanism for MechanismView<'a> {
    fn name(&self) -> &str {
        self.name
    }

    fn each_param(&self) -> impl Iterator<Item = (&str, &str)> {
        // Checked when the view was made: the split cannot fail, and every item is a param.
        view_params(self.params)
    }

    fn offer_params(&self) -> [Option<&str>; 8] {
        self.offer
    }
}

impl MechanismView<'_> {
    /// The owned mechanism (names lower-cased, values as sent).
    pub fn to_owned(&self) -> SecMechanism {
        let count = self.each_param().count();
        let mut m = SecMechanism {
            name: Cow::Owned(self.name.to_ascii_lowercase()),
            // `;` and `=` for each parameter beside its name and value.
            text: String::with_capacity(self.params.map_or(0, str::len) + 2 * count),
            spans: Spans::with_capacity(count),
        };
        for (n, v) in self.each_param() {
            let name_start = m.start_param(n);
            m.text[name_start..].make_ascii_lowercase();
            let value_start = m.text.len();
            m.text.push_str(v);
            m.end_param(name_start, value_start);
        }
        m
    }
}

/// The parameters of a view's `;`-separated text, borrowed from the header.
fn view_params(params: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    params
        .and_then(|p| split_outside_quotes(p, b';').ok())
        .into_iter()
        .flatten()
        .map(split_param)
}

/// The first `b` in `s`: a plain loop over short input (a parameter, a mechanism name),
/// where `memchr`'s set-up costs more than the scan; `memchr` over longer input.
fn find_byte(b: u8, s: &[u8]) -> Option<usize> {
    if s.len() < 32 {
        s.iter().position(|&c| c == b)
    } else {
        memchr::memchr(b, s)
    }
}

/// `name[=value]`, both trimmed.
fn split_param(item: &str) -> (&str, &str) {
    match find_byte(b'=', item.as_bytes()) {
        // `=` is ASCII: both sides are character boundaries.
        Some(i) => (trim(&item[..i]), trim(&item[i + 1..])),
        None => (trim(item), ""),
    }
}

/// `str::trim`, without decoding characters when both ends are printable ASCII (the usual
/// `name=value`: nothing to trim).
fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Checks the value of a Security-Client, Security-Server or Security-Verify header (one
/// header line's value) and appends a view of each of its mechanisms to `out`.
pub fn security_header_views<'a>(
    value: &'a str,
    out: &mut Vec<MechanismView<'a>>,
) -> Result<(), SecAgreeError> {
    each_security_view(value, |v| out.push(v)).map(|_| ())
}

/// [`security_header_views`] handing each view to `each` as it is checked instead of
/// collecting them (choosing an offer keeps none but the best); returns how many there
/// were. On an error some views may have been handed over already.
pub fn each_security_view<'a>(
    value: &'a str,
    mut each: impl FnMut(MechanismView<'a>),
) -> Result<usize, SecAgreeError> {
    let mut seen = 0;
    let mechs = split_outside_quotes(value, b',')?;
    let plain = mechs.plain;
    let blank = value.trim().is_empty();
    for mech in mechs {
        if blank && mech.trim().is_empty() {
            break;
        }
        if seen == MAX_MECHANISMS {
            return Err(SecAgreeError::TooLarge);
        }
        let (name, params) = match find_byte(b';', mech.as_bytes()) {
            // A `;` inside quotes cannot come before the first parameter's name.
            Some(i) => (&mech[..i], Some(&mech[i + 1..])),
            None => (mech, None),
        };
        let name = trim(name);
        if name.is_empty() {
            return Err(SecAgreeError::MissingMechanismName);
        }
        if !is_token(name) {
            return Err(SecAgreeError::BadToken);
        }
        let mut offer = [None; 8];
        // Without a quote in the value, none in its parameters: the usual parameters (token
        // names, no blanks) are read in one pass; anything else takes the general walk.
        let fast = plain
            && params.is_some_and(|p| {
                canonical_params(p, &mut offer) || {
                    offer = [None; 8];
                    plain_params(p, &mut offer)
                }
            });
        if !fast {
            offer = walk_params(params, plain)?;
        }
        each(MechanismView {
            name,
            params,
            offer,
        });
        seen += 1;
    }
    if seen == 0 {
        return Err(SecAgreeError::Empty);
    }
    Ok(seen)
}

/// Checks a mechanism's `;`-separated parameters `params` (split outside quotes unless the
/// header is `plain`, quote-free) and returns its offer parameters; every parameter's name
/// must be a token once trimmed.
fn walk_params(params: Option<&str>, plain: bool) -> Result<[Option<&str>; 8], SecAgreeError> {
    let mut offer = [None; 8];
    let items = match params {
        Some(p) if plain => OutsideQuotes::plain(p, b';'),
        Some(p) => split_outside_quotes(p, b';').unwrap_or(OutsideQuotes::EMPTY),
        None => OutsideQuotes::EMPTY,
    };
    for (count, item) in items.enumerate() {
        if count == MAX_PARAMS {
            return Err(SecAgreeError::TooLarge);
        }
        let (n, v) = split_param(item);
        // The name checked as a token and packed for `offer_slot` in one pass.
        let mut token = !n.is_empty();
        let mut word = 0u64;
        for (i, c) in n.bytes().enumerate() {
            token &= is_token_char(c);
            if i < 8 {
                word |= u64::from(c.to_ascii_lowercase()) << (8 * i);
            }
        }
        if !token {
            return Err(SecAgreeError::BadToken);
        }
        if let Some(i) = offer_slot(n.len(), word) {
            offer[i].get_or_insert(v);
        }
    }
    Ok(offer)
}

/// The `;`-separated parameters `p` of a mechanism whose header holds no quote, read in one
/// pass over their bytes: true, with the offer parameters noted in `offer`, if every name is
/// a non-empty token (so its own trimmed form) and there are at most [`MAX_PARAMS`]; false
/// (leaving `offer` partly filled) for anything else — blanks around a name, an empty or bad
/// name, too many parameters — which [`walk_params`] then checks and reports. Values are
/// trimmed as [`split_param`] trims them.
fn plain_params<'a>(p: &'a str, offer: &mut [Option<&'a str>; 8]) -> bool {
    let b = p.as_bytes();
    let mut start = 0;
    for _ in 0..MAX_PARAMS {
        let Some((name_len, slot)) = plain_name(b, start) else {
            return false;
        };
        let i = start + name_len;
        // The value (trimmed) and where the next parameter starts, if one does.
        let (value, next) = match b.get(i) {
            None => ("", None),
            Some(b';') => ("", Some(i + 1)),
            Some(b'=') => {
                let from = i + 1;
                let rest = b.get(from..).unwrap_or_default();
                let (end, next) = match swar::find_byte_near(b';', rest) {
                    Some(k) => (from + k, Some(from + k + 1)),
                    None => (b.len(), None),
                };
                // `=` and `;` are ASCII: both cuts are character boundaries.
                (p.get(from..end).map_or("", trim), next)
            }
            // A blank or another non-token byte after the name: the general walk decides.
            Some(_) => return false,
        };
        if let Some(slot) = slot {
            offer[slot].get_or_insert(value);
        }
        match next {
            Some(n) => start = n,
            None => return true,
        }
    }
    false
}

/// The names of an offer's parameters as UEs write them, `=` included, in the order they
/// write them (TS 33.203 7.2's example, and the real captures): [`OFFER_PARAMS`] reordered.
const CANONICAL: [(&[u8], usize); 8] = [
    (b"alg=", 2),
    (b"ealg=", 3),
    (b"prot=", 0),
    (b"mod=", 1),
    (b"spi-c=", 4),
    (b"spi-s=", 5),
    (b"port-c=", 6),
    (b"port-s=", 7),
];

/// [`plain_params`] for parameters written as UEs write them: only names of [`CANONICAL`],
/// lower-case, each followed by `=`, in that order (any of them left out), no other
/// parameter. Each name is compared as its bytes where it is expected, not found, lower-cased
/// and matched against every known name. True (with `offer` filled as [`plain_params`]
/// fills it: each name is a token, seen once, followed by `=`, its value up to the next `;`
/// trimmed alike) exactly when the parameters are of that form; false (leaving `offer`
/// partly filled) for anything else, which [`plain_params`] then reads.
fn canonical_params<'a>(p: &'a str, offer: &mut [Option<&'a str>; 8]) -> bool {
    let b = p.as_bytes();
    let mut start = 0;
    let mut names = CANONICAL.iter();
    loop {
        let rest = b.get(start..).unwrap_or_default();
        let Some(&(name, slot)) = names.by_ref().find(|(n, _)| rest.starts_with(n)) else {
            return false;
        };
        let from = start + name.len();
        let tail = b.get(from..).unwrap_or_default();
        let (end, next) = match swar::find_byte_near(b';', tail) {
            Some(k) => (from + k, Some(from + k + 1)),
            None => (b.len(), None),
        };
        // `=` and `;` are ASCII: both cuts are character boundaries.
        offer[slot] = Some(p.get(from..end).map_or("", trim));
        match next {
            Some(n) => start = n,
            None => return true,
        }
    }
}

/// The parameter name starting at `start` of `b`, for [`plain_params`]: its length and
/// [`offer_slot`], if it is a non-empty run of token characters followed by `=`, `;`, or the
/// end; `None` otherwise (it is not a plain name).
fn plain_name(b: &[u8], start: usize) -> Option<(usize, Option<usize>)> {
    // A name shorter than eight bytes with eight bytes to read: found, lower-cased and
    // matched a word at a time. A known name's match proves it a token; another name is
    // checked byte by byte.
    if let Some(word) = swar::word_at(b, start) {
        if let Some(len) = swar::first_of_two_in_word(word, b'=', b';') {
            let name = b.get(start..start + len)?;
            let lowered = swar::lower_ascii_word(swar::packed_prefix(b, start, len)?);
            return match offer_slot(len, lowered) {
                Some(slot) => Some((len, Some(slot))),
                None if len > 0 && name.iter().all(|&c| is_token_char(c)) => Some((len, None)),
                None => None,
            };
        }
    }
    // Near the end, or a long name: a byte at a time.
    let mut i = start;
    let mut word = 0u64;
    while let Some(&c) = b.get(i) {
        if !is_token_char(c) {
            break;
        }
        if i - start < 8 {
            word |= u64::from(c.to_ascii_lowercase()) << (8 * (i - start));
        }
        i += 1;
    }
    let len = i - start;
    (len > 0).then(|| (len, offer_slot(len, word)))
}

/// Parses the value of a Security-Client, Security-Server or Security-Verify header (one
/// header line's value; callers concatenate several lines' lists).
pub fn parse_security_header(value: &str) -> Result<Vec<SecMechanism>, SecAgreeError> {
    let mut views = Vec::new();
    security_header_views(value, &mut views)?;
    Ok(views.iter().map(MechanismView::to_owned).collect())
}

/// Renders a list of mechanisms as one header value, separated by `, `.
pub fn render_security_header(mechs: &[SecMechanism]) -> String {
    mechs
        .iter()
        .map(SecMechanism::render)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters kept as rendered read back as they were given, whichever way the
    /// mechanism was made (built, built with empty values, parsed), and the rendering is
    /// what writing `;name` and `=value` for each (a non-empty value) writes.
    #[test]
    fn parameters_kept_as_rendered_read_back_as_given() {
        let rendered = |m: &SecMechanism| {
            let mut s = m.name.to_string();
            for (n, v) in m.params() {
                s.push(';');
                s.push_str(n);
                if !v.is_empty() {
                    s.push('=');
                    s.push_str(v);
                }
            }
            s
        };
        let built = SecMechanism::new("IPsec-3GPP")
            .with("ALG", "hmac-sha-1-96")
            .with_str("flag", "")
            .with("e", "")
            .with_u32("spi-c", 4096)
            .with_str("q", "0.1");
        assert_eq!(
            built.params().collect::<Vec<_>>(),
            [
                ("alg", "hmac-sha-1-96"),
                ("flag", ""),
                ("e", ""),
                ("spi-c", "4096"),
                ("q", "0.1")
            ]
        );
        assert_eq!(
            built.render(),
            "ipsec-3gpp;alg=hmac-sha-1-96;flag;e;spi-c=4096;q=0.1"
        );
        let c = crate::secagree::ChosenMechanism {
            auth: akagate_proto::suite::AuthAlg::HmacSha1_96,
            encr: akagate_proto::suite::EncrAlg::AesCbc,
            spi_uc: 1111,
            spi_us: 2222,
            port_uc: 5060,
            port_us: 5062,
        };
        let server = c.security_server(4096, 4097, 5100, 6100);
        let header = "ipsec-3gpp; Alg=hmac-md5-96;FLAG; ealg=\"aes-cbc\" ;q=0.5, digest;x=\"a;b\"";
        let parsed = parse_security_header(header).unwrap();
        for m in [&built, &server, &parsed[0], &parsed[1]] {
            assert_eq!(m.render(), rendered(m));
            assert!(m.renders_as(&rendered(m)));
            let again = parse_security_header(&m.render()).unwrap();
            assert_eq!(&again[0], m);
        }
        assert_eq!(
            parsed[0].params().collect::<Vec<_>>(),
            [
                ("alg", "hmac-md5-96"),
                ("flag", ""),
                ("ealg", "\"aes-cbc\""),
                ("q", "0.5")
            ]
        );
        assert_eq!(parsed[1].param("x"), Some("\"a;b\""));
    }

    #[test]
    fn renders_as_is_exactly_the_rendered_text() {
        let m = &parse_security_header(
            "IPSEC-3gpp; q=0.1; alg=hmac-sha-1-96;spi-c=1;spi-s=2;port-c=5062;port-s=5064;mod",
        )
        .unwrap()[0];
        let text = m.render();
        assert!(m.renders_as(&text));
        for other in [
            String::new(),
            text[..text.len() - 1].to_owned(),
            format!("{text};"),
            format!("{text} "),
            text.replace("alg", "ALG"),
            text.replace(";q", "; q"),
        ] {
            assert!(!m.renders_as(&other), "{other:?}");
            // Equivalent or not, the general comparison still decides those.
        }
        assert!(m.equivalent(&parse_security_header(&text.replace(";q", "; q")).unwrap()[0]));
    }

    #[test]
    fn renders_as_is_the_rendering_compared_whatever_the_edit() {
        for header in [
            "IPSEC-3gpp; q=0.1; alg=hmac-sha-1-96;spi-c=1;spi-s=2;port-c=5062;port-s=5064;mod",
            "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=4294967295;spi-s=256;port-c=65535;port-s=5064;q=0.1",
            "tls;q=0.1",
            "digest",
            "x;a;b=;c=\"q;r\"",
        ] {
            let m = &parse_security_header(header).unwrap()[0];
            let text = m.render();
            let mut edits = vec![text.clone(), String::new()];
            let b = text.as_bytes();
            for i in 0..=b.len() {
                edits.push(String::from_utf8_lossy(&b[..i]).into_owned());
                for c in [b';', b'=', b'a', b'A', b'0', b' '] {
                    let mut ins = b.to_vec();
                    ins.insert(i, c);
                    edits.push(String::from_utf8_lossy(&ins).into_owned());
                    if i < b.len() {
                        let mut sub = b.to_vec();
                        sub[i] = c;
                        edits.push(String::from_utf8_lossy(&sub).into_owned());
                    }
                }
                if i < b.len() {
                    let mut del = b.to_vec();
                    del.remove(i);
                    edits.push(String::from_utf8_lossy(&del).into_owned());
                }
            }
            for e in &edits {
                assert_eq!(m.renders_as(e), *e == text, "{header}: {e:?}");
            }
        }
    }

    #[test]
    fn offer_params_are_noted_in_their_place_whatever_the_case_first_one_counting() {
        for (i, name) in OFFER_PARAMS.iter().enumerate() {
            let mut read = [None; 8];
            note_offer_param(&mut read, &name.to_ascii_uppercase(), "v");
            note_offer_param(&mut read, name, "w");
            assert_eq!(read.iter().position(Option::is_some), Some(i), "{name}");
            assert_eq!(read[i], Some("v"));
        }
        let mut read = [None; 8];
        for n in ["q", "spi", "port-cc", "algx", "", "port-ss", "ports"] {
            note_offer_param(&mut read, n, "v");
        }
        assert_eq!(read, [None; 8]);
    }

    #[test]
    fn parses_boghe_security_client() {
        // DoubangoTelecom/boghe issue 227, REGISTER to Open IMS Core.
        let v = "ipsec-3gpp;alg=hmac-sha-1-96;ealg=null;prot=esp;mod=trans;spi-c=51018934;spi-s=2732688522;port-c=63375;port-s=63374";
        let m = parse_security_header(v).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "ipsec-3gpp");
        assert_eq!(m[0].param("alg"), Some("hmac-sha-1-96"));
        assert_eq!(m[0].param_u32("spi-s"), Some(2732688522));
        assert_eq!(m[0].param_u16("port-c"), Some(63375));
        assert_eq!(m[0].render(), v);
    }

    #[test]
    fn parses_spaces_after_semicolons_and_several_mechanisms() {
        let v = "ipsec-3gpp; alg=hmac-md5-96; ealg=des-ede3-cbc; spi-c=1; spi-s=2; port-c=3; port-s=4,ipsec-3gpp ; alg = hmac-sha-1-96 ; q=0.5";
        let m = parse_security_header(v).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].param("ealg"), Some("des-ede3-cbc"));
        assert_eq!(m[1].param("alg"), Some("hmac-sha-1-96"));
        assert_eq!(m[1].param("q"), Some("0.5"));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_security_header(""), Err(SecAgreeError::Empty));
        assert_eq!(
            parse_security_header(";alg=x"),
            Err(SecAgreeError::MissingMechanismName)
        );
        assert_eq!(
            parse_security_header("ipsec-3gpp,,tls"),
            Err(SecAgreeError::MissingMechanismName)
        );
        assert_eq!(
            parse_security_header("digest;d-ver=\"abc"),
            Err(SecAgreeError::UnterminatedQuote)
        );
        assert_eq!(
            parse_security_header("ipsec 3gpp;alg=x"),
            Err(SecAgreeError::BadToken)
        );
        let many = vec!["tls"; 40].join(",");
        assert_eq!(parse_security_header(&many), Err(SecAgreeError::TooLarge));
    }

    #[test]
    fn quoted_comma_does_not_split() {
        let m = parse_security_header("digest;d-ver=\"a,b\";q=0.1,tls").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].param("d-ver"), Some("\"a,b\""));
    }

    #[test]
    fn equivalence_ignores_case_space_order_and_q_format() {
        let a = &parse_security_header(
            "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;spi-c=4096;spi-s=4097;port-c=5100;port-s=6100;q=0.1",
        )
        .unwrap()[0];
        let b = &parse_security_header(
            "IPSEC-3GPP; q=0.100 ; PORT-S=6100;port-c=5100; spi-s=4097;spi-c=4096;EALG=AES-CBC;alg=HMAC-SHA-1-96",
        )
        .unwrap()[0];
        assert!(a.equivalent(b));
        // A changed algorithm (bidding down) or a dropped parameter is not equivalent.
        let c = &parse_security_header(
            "ipsec-3gpp;alg=hmac-sha-1-96;ealg=null;spi-c=4096;spi-s=4097;port-c=5100;port-s=6100;q=0.1",
        )
        .unwrap()[0];
        assert!(!a.equivalent(c));
        let d = &parse_security_header(
            "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;spi-c=4096;spi-s=4097;port-c=5100;port-s=6100",
        )
        .unwrap()[0];
        assert!(!a.equivalent(d));
    }

    #[test]
    fn the_one_pass_parameters_read_what_the_general_walk_reads() {
        // A real Security-Client offer takes the one pass.
        let real = "alg=hmac-sha-1-96;ealg=aes-cbc;mod=trans;port-c=5086;port-s=5088;\
                    prot=esp;spi-c=3929102;spi-s=3929103";
        let mut offer = [None; 8];
        assert!(plain_params(real, &mut offer));
        assert_eq!(Ok(offer), walk_params(Some(real), true));
        assert_eq!(offer[2], Some("hmac-sha-1-96"));
        assert_eq!(offer[7], Some("5088"));
        // Random quote-free parameter lists from the bytes that matter: wherever the one pass
        // answers it reads what the walk reads, and it never accepts what the walk refuses.
        // Known names in both cases, names of eight bytes and more, and the bytes a
        // word-at-a-time lower-casing could confuse (`\r` | 0x20 is `-`, `@` | 0x20 is `` ` ``).
        let pieces: [&str; 24] = [
            "alg",
            "ALG",
            "spi-c",
            "port-s",
            "ealg",
            "x",
            "=",
            "=",
            ";",
            ";",
            " ",
            "\t",
            "1",
            "a@",
            "\u{e9}",
            "prot",
            "Port-C",
            "SPI-s",
            "spi\rc",
            "port\rs",
            "mod",
            "verylongname",
            "`lg",
            "m@d",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut fast, mut walked) = (0, 0);
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let text: String = (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let mut offer = [None; 8];
            let walk = walk_params(Some(&text), true);
            if plain_params(&text, &mut offer) {
                fast += 1;
                assert_eq!(walk, Ok(offer), "{text:?}");
            } else {
                walked += 1;
            }
        }
        assert!(fast > 1_000 && walked > 1_000, "{fast} {walked}");
        // More parameters than accepted: refused by both.
        let many = vec!["a=1"; MAX_PARAMS + 1].join(";");
        assert!(!plain_params(&many, &mut [None; 8]));
        assert_eq!(walk_params(Some(&many), true), Err(SecAgreeError::TooLarge));
        let most = vec!["a=1"; MAX_PARAMS].join(";");
        assert!(plain_params(&most, &mut [None; 8]));
    }

    #[test]
    fn the_canonical_reading_is_the_one_pass_and_the_walk_where_it_answers() {
        // The real captures' offers, and the bench UE's, are read in the canonical order.
        for real in [
            "alg=hmac-sha-1-96;ealg=null;prot=esp;mod=trans;spi-c=51018934;spi-s=2732688522;\
             port-c=63375;port-s=63374",
            "alg=hmac-md5-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=1;spi-s=2;port-c=3;port-s=4",
            "alg=hmac-sha-1-96;spi-c=1;spi-s=2;port-c=3;port-s=4",
        ] {
            let mut offer = [None; 8];
            assert!(canonical_params(real, &mut offer), "{real}");
            assert_eq!(Ok(offer), walk_params(Some(real), true));
            let mut plain = [None; 8];
            assert!(plain_params(real, &mut plain));
            assert_eq!(offer, plain);
        }
        // Random parameter lists of the canonical names, other names and the bytes that end
        // or change them, in and out of order: wherever the canonical reading answers, the
        // one pass answers the same and the walk reads the same; it answers for most lists
        // made of the canonical pieces in order.
        let pieces: [&str; 22] = [
            "alg=", "ealg=", "prot=", "mod=", "spi-c=", "spi-s=", "port-c=", "port-s=", "ALG=",
            "Mod=", "alg", "q=", "x", "=", ";", ";", " ", "\t", "1", "esp", "\u{e9}", "spi-c",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut canonical, mut other) = (0, 0);
        for round in 0..60_000 {
            let text: String = if round % 3 == 0 {
                // In order, each name kept one time in two, values from the pieces.
                let mut t = String::new();
                for (name, _) in CANONICAL {
                    if next() % 2 == 0 {
                        continue;
                    }
                    if !t.is_empty() {
                        t.push(';');
                    }
                    t.push_str(std::str::from_utf8(name).unwrap());
                    for _ in 0..next() % 3 {
                        t.push_str(pieces[(next() % pieces.len() as u64) as usize]);
                    }
                }
                t
            } else {
                let len = (next() % 12) as usize;
                (0..len)
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect()
            };
            let mut offer = [None; 8];
            if canonical_params(&text, &mut offer) {
                canonical += 1;
                let mut plain = [None; 8];
                assert!(plain_params(&text, &mut plain), "{text:?}");
                assert_eq!(offer, plain, "{text:?}");
                assert_eq!(walk_params(Some(&text), true), Ok(offer), "{text:?}");
            } else {
                other += 1;
            }
        }
        assert!(canonical > 5_000 && other > 5_000, "{canonical} {other}");
    }

    #[test]
    fn views_check_what_parsing_checks_and_read_the_same_parameters() {
        // A trailing `;` is an empty parameter name (BadToken), with or without quotes.
        for bad in ["tls;", "ipsec-3gpp;alg=x;", "digest;d-ver=\"a\";"] {
            let mut v = Vec::new();
            assert_eq!(
                security_header_views(bad, &mut v),
                Err(SecAgreeError::BadToken),
                "{bad}"
            );
            assert_eq!(parse_security_header(bad), Err(SecAgreeError::BadToken));
        }
        let text =
            "ipsec-3gpp; ALG = hmac-sha-1-96 ;spi-c=1;port-c=2;flag, digest;d-ver=\"a;b,c\";q=0.5";
        let mut views = Vec::new();
        security_header_views(text, &mut views).unwrap();
        let owned = parse_security_header(text).unwrap();
        assert_eq!(views.len(), 2);
        for (v, o) in views.iter().zip(&owned) {
            assert_eq!(v.to_owned(), *o);
            assert!(equivalent(v, o) && o.equivalent(v));
        }
        assert_eq!(views[0].param("alg"), Some("hmac-sha-1-96"));
        assert_eq!(views[0].param("flag"), Some(""));
        assert_eq!(views[1].param("d-ver"), Some("\"a;b,c\""));
        assert_eq!(
            owned[0].render(),
            "ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1;port-c=2;flag"
        );
    }

    #[test]
    fn a_view_reads_the_offer_parameters_as_a_walk_does() {
        // The view records them while it is checked; the owned mechanism walks its list: the
        // same values, first of each name, names ignoring case, unknown names skipped.
        let text = "ipsec-3gpp; Alg=hmac-md5-96; ealg=aes-cbc; ALG=hmac-sha-1-96; spi-c=1111; \
                    spi-s=2222; x=1; port-c=5060; port-s=5062; MOD=trans, tls;q=0.1";
        let mut views = Vec::new();
        security_header_views(text, &mut views).unwrap();
        let owned = parse_security_header(text).unwrap();
        for (v, o) in views.iter().zip(&owned) {
            assert_eq!(v.offer_params(), o.offer_params());
        }
        assert_eq!(
            views[0].offer_params(),
            [
                None,
                Some("trans"),
                Some("hmac-md5-96"),
                Some("aes-cbc"),
                Some("1111"),
                Some("2222"),
                Some("5060"),
                Some("5062")
            ]
        );
        assert_eq!(views[1].offer_params(), [None; 8]);
    }

    #[test]
    fn equivalence_counts_repeated_parameters() {
        let one = |s| parse_security_header(s).unwrap().remove(0);
        // Same names, a repeated parameter on one side only: not the same multiset.
        assert!(!one("tls;a=1;a=1;b=2").equivalent(&one("tls;a=1;b=2;b=2")));
        assert!(one("tls;a=1;b=2;a=01").equivalent(&one("tls;b=2;a=1;a=1")));
        assert!(!one("tls;a=1").equivalent(&one("tls;a=1;a=1")));
        assert!(one("tls;q=0.5").equivalent(&one("tls;q=0.500")));
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue_thousandths("0.1"), Some(100));
        assert_eq!(qvalue_thousandths("1"), Some(1000));
        assert_eq!(qvalue_thousandths("1.5"), None);
        assert_eq!(qvalue_thousandths("0.1234"), None);
    }
}
