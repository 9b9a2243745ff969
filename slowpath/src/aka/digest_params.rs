//! Parser and renderer for Digest parameter lists, the values of `WWW-Authenticate` and
//! `Authorization` (RFC 2617 3.2.1/3.2.2, RFC 3261 25.1, RFC 3310 3), with typed challenge and
//! credentials views. Never panics on input; every failure is a `DigestParseError`.

use akagate_proto::{simd, swar};
use std::borrow::Cow;

/// Most parameters accepted in one header value (bounds the work per header).
pub const MAX_PARAMS: usize = 32;

/// A Digest parameter list could not be parsed or lacks what its role requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The value does not start with the `Digest` scheme.
    #[error("authentication scheme is not Digest")]
    NotDigest,
    /// A token (scheme or parameter name/value) was expected at this byte offset.
    #[error("expected a token at offset {0}")]
    ExpectedToken(usize),
    /// `=` was expected after a parameter name.
    #[error("expected '=' at offset {0}")]
    ExpectedEquals(usize),
    /// `,` or the end was expected after a parameter.
    #[error("expected ',' at offset {0}")]
    ExpectedComma(usize),
    /// A quoted-string was not closed.
    #[error("unterminated quoted-string starting at offset {0}")]
    UnterminatedQuote(usize),
    /// A control character or a bare CR/LF at this offset.
    #[error("invalid character at offset {0}")]
    InvalidChar(usize),
    /// The same parameter appeared twice (RFC 2617: each directive at most once).
    #[error("duplicate parameter {0}")]
    DuplicateParam(String),
    /// More than `MAX_PARAMS` parameters.
    #[error("more than {MAX_PARAMS} parameters")]
    TooManyParams,
    /// A parameter required for this header is missing.
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    /// A parameter has a value this implementation does not accept.
    #[error("invalid value for parameter {0}")]
    InvalidValue(&'static str),
    /// A parameter name given to the builder is not a token.
    #[error("invalid parameter name")]
    InvalidName,
}

/// One `name=value` parameter. Names are stored in lower case (they are case-insensitive);
/// values are unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestParam {
    /// Lower-case parameter name.
    pub name: String,
    /// The value, with quoted-string escapes removed.
    pub value: String,
    /// Whether the value was (or is to be rendered as) a quoted-string.
    pub quoted: bool,
}

/// The parameter list of a `Digest` challenge or credentials, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestParams {
    params: Vec<DigestParam>,
}

/// The token characters: RFC 3261 25.1's and RFC 7230's tchar (which adds `#$&^|`).
const TCHAR_EXTRA: &[u8] = b"-.!%*_+`'~#$&^|";

/// [`is_tchar`] of every byte, built once at compile time (a lookup per byte instead of a
/// search of [`TCHAR_EXTRA`]).
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut hit = b.is_ascii_alphanumeric();
        let mut i = 0;
        while i < TCHAR_EXTRA.len() {
            hit |= TCHAR_EXTRA[i] == b;
            i += 1;
        }
        table[c] = hit;
        c += 1;
    }
    table
};

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

struct Cursor<'a> {
    /// The input, whose slices at ASCII delimiters are handed out without checking UTF-8
    /// again.
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    /// Skips LWS: SP, HTAB, and CRLF/LF line folding followed by SP/HTAB (RFC 3261 25.1).
    /// Returns whether anything was skipped.
    fn skip_lws(&mut self) -> Result<bool, DigestParseError> {
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'\r' | b'\n') => {
                    let nl = if self.peek() == Some(b'\r') {
                        if self.b.get(self.pos + 1) != Some(&b'\n') {
                            return Err(DigestParseError::InvalidChar(self.pos));
                        }
                        2
                    } else {
                        1
                    };
                    match self.b.get(self.pos + nl) {
                        Some(b' ' | b'\t') => self.pos += nl + 1,
                        _ => return Err(DigestParseError::InvalidChar(self.pos)),
                    }
                }
                _ => return Ok(self.pos > start),
            }
        }
    }

    fn token(&mut self) -> Result<&'a str, DigestParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match self.b.get(start..self.pos) {
            // tchar is ASCII, so both ends are character boundaries.
            Some(t) if !t.is_empty() => self
                .s
                .get(start..self.pos)
                .ok_or(DigestParseError::ExpectedToken(start)),
            _ => Err(DigestParseError::ExpectedToken(start)),
        }
    }

    /// quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE (RFC 3261 25.1); the cursor is
    /// on the opening quote. The value is borrowed unless it held an escape or a fold.
    fn quoted(&mut self) -> Result<Cow<'a, str>, DigestParseError> {
        let start = self.pos;
        self.pos += 1;
        // Most values hold no escape, fold or control character: find the closing quote and
        // copy the value at once. The first `"`, `\\` or control byte in one vector pass: a
        // `"` there is the closing quote of a value with neither escapes nor controls.
        let b: &'a [u8] = self.b;
        let rest = b.get(self.pos..).unwrap_or_default();
        if let Some(len) = simd::find_quoted_stop(rest) {
            if rest[len] == b'"' {
                let from = self.pos;
                self.pos += len + 1;
                // Between two ASCII bytes of the input: character boundaries.
                return self
                    .s
                    .get(from..from + len)
                    .map(Cow::Borrowed)
                    .ok_or(DigestParseError::InvalidChar(start));
            }
        }
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(DigestParseError::UnterminatedQuote(start)),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out)
                        .map(Cow::Owned)
                        .map_err(|_| DigestParseError::InvalidChar(start));
                }
                Some(b'\\') => match self.b.get(self.pos + 1) {
                    // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F) (RFC 3261 25.1); escaped
                    // control characters other than HTAB are refused too, so a parsed value
                    // never holds one (the same rule the builder applies).
                    Some(&c) if (0x20..0x7f).contains(&c) || c == b'\t' => {
                        out.push(c);
                        self.pos += 2;
                    }
                    Some(_) => return Err(DigestParseError::InvalidChar(self.pos + 1)),
                    None => return Err(DigestParseError::UnterminatedQuote(start)),
                },
                Some(b'\r' | b'\n') => {
                    // Folded LWS inside a quoted-string stands for one SP.
                    self.skip_lws()?;
                    out.push(b' ');
                }
                Some(c) if (c < 0x20 && c != b'\t') || c == 0x7f => {
                    return Err(DigestParseError::InvalidChar(self.pos));
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Appends `value` as a quoted-string, escaping `"` and `\\` (RFC 3261 25.1 quoted-pair).
fn push_quoted(out: &mut String, value: &str) {
    quoted_pieces(value, &mut |p| out.push_str(p));
}

/// `value` as a quoted-string, in pieces: `"` and `\\` escaped (RFC 3261 25.1).
fn quoted_pieces(value: &str, f: &mut impl FnMut(&str)) {
    f("\"");
    quoted_body(value, f);
    f("\"");
}

/// [`quoted_pieces`] without its quotes: `value` with `"` and `\\` escaped.
fn quoted_body(value: &str, f: &mut impl FnMut(&str)) {
    let mut rest = value;
    while let Some(i) = memchr::memchr2(b'"', b'\\', rest.as_bytes()) {
        // Both bytes are ASCII: `i` and `i + 1` are character boundaries.
        f(&rest[..i]);
        f("\\");
        f(&rest[i..i + 1]);
        rest = &rest[i + 1..];
    }
    f(rest);
}

fn check_value(value: &str, name: &'static str) -> Result<(), DigestParseError> {
    if has_control(value.as_bytes()) {
        return Err(DigestParseError::InvalidValue(name));
    }
    Ok(())
}

/// One parameter borrowed from the parsed text: the name as written, the value unescaped
/// (borrowed unless it held an escape or a fold).
struct ParamRef<'a> {
    name: &'a str,
    value: Cow<'a, str>,
    quoted: bool,
    /// The credentials' name it is ([`Known::of`]), if it is one.
    known: Option<Known>,
}

/// The parameter names of credentials ([`CredentialsRef`]), recognised once as a list is
/// read so that the duplicate check and the lookups compare a small number, not names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Username,
    Realm,
    Nonce,
    Uri,
    Response,
    Algorithm,
    Qop,
    Nc,
    Cnonce,
    Opaque,
    Auts,
    IntegrityProtected,
}

/// `name`'s first eight bytes packed little-endian (the rest zero), with bit 5 of every byte
/// set ([`folded`]), as [`Known::of`] reads a name.
const fn packed(name: &[u8]) -> u64 {
    let mut word = 0;
    let mut i = 0;
    while i < name.len() && i < 8 {
        word |= (name[i] as u64) << (8 * i);
        i += 1;
    }
    folded(word)
}

/// `word` with bit 5 (0x20) of each byte set: a letter of either case reads as its lower
/// case, and a byte reads as a lower-case letter only if it is that letter in either case
/// (the first eight bytes of every known name are letters; the padding's zeros read 0x20
/// on both sides). Two instructions where lower-casing only the letters takes a dozen.
#[inline]
const fn folded(word: u64) -> u64 {
    word | 0x2020_2020_2020_2020
}

const USERNAME: u64 = packed(b"username");
const REALM: u64 = packed(b"realm");
const NONCE: u64 = packed(b"nonce");
const URI: u64 = packed(b"uri");
const RESPONSE: u64 = packed(b"response");
const ALGORITH: u64 = packed(b"algorithm");
const QOP: u64 = packed(b"qop");
const NC: u64 = packed(b"nc");
const CNONCE: u64 = packed(b"cnonce");
const OPAQUE: u64 = packed(b"opaque");
const AUTS: u64 = packed(b"auts");
const INTEGRIT: u64 = packed(b"integrity-protected");

impl Known {
    /// The known name `name` is (case-insensitive), if any: its length and first eight
    /// bytes folded decide, the rest of a longer name is compared.
    fn of(name: &str) -> Option<Known> {
        let b = name.as_bytes();
        let mut word = 0u64;
        for (i, &c) in b.iter().take(8).enumerate() {
            word |= u64::from(c) << (8 * i);
        }
        Self::of_folded(b, folded(word))
    }

    /// [`Known::of`] for the name `input[at..at + len]`, its first word read at once where
    /// the input has eight bytes from `at`.
    fn of_at(input: &'_ [u8], at: usize, len: usize) -> Option<Known> {
        let name = input.get(at..at + len)?;
        match swar::packed_prefix(input, at, len.min(8)) {
            Some(word) => Self::of_folded(name, folded(word)),
            None => std::str::from_utf8(name).ok().and_then(Self::of),
        }
    }

    /// The known name `b` is, given its first eight bytes packed and [`folded`] (`word`).
    fn of_folded(b: &[u8], word: u64) -> Option<Known> {
        Some(match (b.len(), word) {
            (8, USERNAME) => Known::Username,
            (5, REALM) => Known::Realm,
            (5, NONCE) => Known::Nonce,
            (3, URI) => Known::Uri,
            (8, RESPONSE) => Known::Response,
            (9, ALGORITH) if b[8].eq_ignore_ascii_case(&b'm') => Known::Algorithm,
            (3, QOP) => Known::Qop,
            (2, NC) => Known::Nc,
            (6, CNONCE) => Known::Cnonce,
            (6, OPAQUE) => Known::Opaque,
            (4, AUTS) => Known::Auts,
            (19, INTEGRIT) if b[8..].eq_ignore_ascii_case(b"y-protected") => {
                Known::IntegrityProtected
            }
            _ => return None,
        })
    }

    /// The name as the credentials' errors spell it.
    fn name(self) -> &'static str {
        match self {
            Known::Username => "username",
            Known::Realm => "realm",
            Known::Nonce => "nonce",
            Known::Uri => "uri",
            Known::Response => "response",
            Known::Algorithm => "algorithm",
            Known::Qop => "qop",
            Known::Nc => "nc",
            Known::Cnonce => "cnonce",
            Known::Opaque => "opaque",
            Known::Auts => "auts",
            Known::IntegrityProtected => "integrity-protected",
        }
    }
}

/// The known parameters of a list borrowing its input, by [`Known`]: the credentials of every
/// REGISTER are read from it without a `String` per name and value (only the values kept are
/// copied) and without a list on the heap.
struct ParamRefs<'a> {
    /// Each known parameter's value (`None`: absent, or taken).
    known: [Option<Cow<'a, str>>; KNOWN],
}

/// How many [`Known`] names there are.
const KNOWN: usize = Known::IntegrityProtected as usize + 1;

impl<'a> ParamRefs<'a> {
    /// The grammar of [`DigestParams::parse`] ([`each_param`]), keeping the known parameters.
    fn parse(input: &'a str) -> Result<Self, DigestParseError> {
        match Self::parse_plain(input) {
            Some(refs) => Ok(refs),
            None => Self::parse_general(input),
        }
    }

    /// [`ParamRefs::parse`] by the general walk ([`each_param`]), whatever the list's form.
    fn parse_general(input: &'a str) -> Result<Self, DigestParseError> {
        let mut refs = ParamRefs {
            known: Default::default(),
        };
        each_param(input, |p| {
            if let Some(k) = p.known {
                refs.known[k as usize] = Some(p.value);
            }
        })?;
        Ok(refs)
    }

    /// [`ParamRefs::parse`] of a list written the plain way every UE writes one: `Digest `,
    /// then `name=value` pairs joined by `,` or `, `, each name a known one ([`Known`]) of
    /// letters and `-` given once, each value a token or a quoted-string with no escape,
    /// fold or control byte. `None` for anything else (the general walk then reads it, and
    /// reports its errors). What it returns is what [`each_param`] finds for such a list: the
    /// same bytes end the scheme, each name, each value and each separator there, with no
    /// blank to skip in between.
    fn parse_plain(input: &'a str) -> Option<Self> {
        let b = input.as_bytes();
        if !b.get(..7)?.eq_ignore_ascii_case(b"Digest ") {
            return None;
        }
        let mut refs = ParamRefs {
            known: Default::default(),
        };
        let mut seen = 0u16;
        let mut at = 7;
        loop {
            // The name: letters and `-` up to `=`, read a word at a time.
            let word = swar::word_at(b, at)?;
            let len = swar::leading_letters_or_dash(word);
            let len = if len < 8 {
                len
            } else {
                // `integrity-protected`, the one known name past eight bytes.
                len + b
                    .get(at + 8..)?
                    .iter()
                    .take_while(|&&c| c.is_ascii_alphabetic() || c == b'-')
                    .count()
            };
            if len == 0 || b.get(at + len) != Some(&b'=') {
                return None;
            }
            let known = Known::of_folded(
                b.get(at..at + len)?,
                folded(swar::packed_prefix(b, at, len.min(8))?),
            )?;
            let bit = 1u16 << (known as u16);
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            at += len + 1;
            // The value: a quoted-string with no escape or control, or a token.
            let value = if b.get(at) == Some(&b'"') {
                let from = at + 1;
                let len = simd::find_quoted_stop(b.get(from..)?)?;
                if b.get(from + len) != Some(&b'"') {
                    return None;
                }
                at = from + len + 1;
                input.get(from..from + len)?
            } else {
                let from = at;
                while b.get(at).is_some_and(|&c| is_tchar(c)) {
                    at += 1;
                }
                if at == from {
                    return None;
                }
                input.get(from..at)?
            };
            refs.known[known as usize] = Some(Cow::Borrowed(value));
            // The end, or `,` / `, ` and the next name.
            match b.get(at) {
                None => return Some(refs),
                Some(b',') => at += 1,
                Some(_) => return None,
            }
            if b.get(at) == Some(&b' ') {
                at += 1;
            }
        }
    }

    /// Takes a known parameter's value out of the list.
    fn take_known(&mut self, known: Known) -> Option<Cow<'a, str>> {
        self.known[known as usize].take()
    }

    /// [`ParamRefs::take_known`] for a parameter the caller needs.
    fn take_required(&mut self, known: Known) -> Result<Cow<'a, str>, DigestParseError> {
        self.take_known(known)
            .ok_or(DigestParseError::MissingParam(known.name()))
    }
}

/// Reads `Digest name=value, name="value", ...` ([`DigestParams::parse`]) and calls `each`
/// with every parameter in order, once the list so far has been checked: each directive at
/// most once, at most [`MAX_PARAMS`] of them.
fn each_param<'a>(
    input: &'a str,
    mut each: impl FnMut(ParamRef<'a>),
) -> Result<(), DigestParseError> {
    let mut c = Cursor {
        s: input,
        b: input.as_bytes(),
        pos: 0,
    };
    c.skip_lws()?;
    let scheme_at = c.pos;
    let scheme = c.token()?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestParseError::NotDigest);
    }
    if !c.skip_lws()? && !c.at_end() {
        return Err(DigestParseError::ExpectedToken(scheme_at));
    }
    let mut count = 0;
    let mut seen = [false; KNOWN];
    // The names of the unknown parameters so far, for their duplicate check.
    let mut others = [""; MAX_PARAMS];
    let mut n_others = 0;
    loop {
        c.skip_lws()?;
        match c.peek() {
            None => break,
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name_at = c.pos;
        let name = c.token()?;
        c.skip_lws()?;
        if c.peek() != Some(b'=') {
            return Err(DigestParseError::ExpectedEquals(c.pos));
        }
        c.pos += 1;
        c.skip_lws()?;
        let (value, quoted) = if c.peek() == Some(b'"') {
            (c.quoted()?, true)
        } else {
            (Cow::Borrowed(c.token()?), false)
        };
        // RFC 2617 3.2.2: each directive at most once (names are case-insensitive). A
        // known name is equal to no other name: a bit per known name, names compared
        // only among the others.
        let known = Known::of_at(c.b, name_at, name.len());
        let duplicate = match known {
            Some(k) => std::mem::replace(&mut seen[k as usize], true),
            None => others[..n_others]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(name)),
        };
        if duplicate {
            return Err(DigestParseError::DuplicateParam(name.to_ascii_lowercase()));
        }
        if count >= MAX_PARAMS {
            return Err(DigestParseError::TooManyParams);
        }
        count += 1;
        if known.is_none() {
            // Fewer than `MAX_PARAMS` parameters so far: there is room.
            if let Some(slot) = others.get_mut(n_others) {
                *slot = name;
                n_others += 1;
            }
        }
        each(ParamRef {
            name,
            value,
            quoted,
            known,
        });
        c.skip_lws()?;
        match c.peek() {
            None => break,
            Some(b',') => c.pos += 1,
            Some(_) => return Err(DigestParseError::ExpectedComma(c.pos)),
        }
    }
    Ok(())
}

impl DigestParams {
    /// An empty list (for the builder).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `Digest name=value, name="value", ...` (scheme and names case-insensitive,
    /// whitespace and line folding around `=` and `,` tolerated, empty list elements skipped).
    pub fn parse(input: &str) -> Result<Self, DigestParseError> {
        let mut params = Vec::new();
        each_param(input, |p| {
            params.push(DigestParam {
                name: p.name.to_ascii_lowercase(),
                value: p.value.into_owned(),
                quoted: p.quoted,
            })
        })?;
        Ok(DigestParams { params })
    }

    fn insert(&mut self, p: DigestParam) -> Result<(), DigestParseError> {
        if self.get(&p.name).is_some() {
            return Err(DigestParseError::DuplicateParam(p.name));
        }
        if self.params.len() >= MAX_PARAMS {
            return Err(DigestParseError::TooManyParams);
        }
        self.params.push(p);
        Ok(())
    }

    /// Appends a parameter (builder). The name must be a token; a value that is not rendered
    /// quoted must be a token too; control characters are refused (header injection).
    pub fn push(&mut self, name: &str, value: &str, quoted: bool) -> Result<(), DigestParseError> {
        if !is_token(name) {
            return Err(DigestParseError::InvalidName);
        }
        check_value(value, "value")?;
        if !quoted && !is_token(value) {
            return Err(DigestParseError::InvalidValue("value"));
        }
        self.insert(DigestParam {
            name: name.to_ascii_lowercase(),
            value: value.to_owned(),
            quoted,
        })
    }

    /// The value of a parameter (name case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_str())
    }

    /// Removes a parameter, returning its value (e.g. `ck`/`ik` before a 401 leaves the
    /// P-CSCF).
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self
            .params
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))?;
        Some(self.params.remove(i).value)
    }

    /// All parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = &DigestParam> {
        self.params.iter()
    }

    /// Renders `Digest a="..", b=token, ...`.
    pub fn render(&self) -> String {
        let mut out = String::from("Digest");
        for (i, p) in self.params.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(&p.name);
            out.push('=');
            if p.quoted {
                push_quoted(&mut out, &p.value);
            } else {
                out.push_str(&p.value);
            }
        }
        out
    }

    fn require(&self, name: &'static str) -> Result<&str, DigestParseError> {
        self.get(name).ok_or(DigestParseError::MissingParam(name))
    }
}

/// A `WWW-Authenticate: Digest ...` challenge (RFC 2617 3.2.1, RFC 3310 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`.
    pub realm: String,
    /// `nonce` (for AKA: base64(RAND || AUTN [|| server data])).
    pub nonce: String,
    /// `algorithm`, e.g. `AKAv1-MD5`; absent means MD5.
    pub algorithm: Option<String>,
    /// `qop` options as sent, e.g. `auth` or `auth,auth-int`.
    pub qop: Option<String>,
    /// `opaque`.
    pub opaque: Option<String>,
    /// `stale=true`.
    pub stale: bool,
}

impl DigestChallenge {
    /// Parses a challenge header value.
    pub fn parse(value: &str) -> Result<Self, DigestParseError> {
        Self::from_params(&DigestParams::parse(value)?)
    }

    /// Extracts a challenge from a parsed list (`realm` and `nonce` required).
    pub fn from_params(p: &DigestParams) -> Result<Self, DigestParseError> {
        let stale = match p.get("stale") {
            None => false,
            Some(s) if s.eq_ignore_ascii_case("true") => true,
            Some(s) if s.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(DigestParseError::InvalidValue("stale")),
        };
        Ok(DigestChallenge {
            realm: p.require("realm")?.to_owned(),
            nonce: p.require("nonce")?.to_owned(),
            algorithm: p.get("algorithm").map(str::to_owned),
            qop: p.get("qop").map(str::to_owned),
            opaque: p.get("opaque").map(str::to_owned),
            stale,
        })
    }

    /// Whether `qop` offers `auth`.
    pub fn offers_qop_auth(&self) -> bool {
        self.qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")))
    }

    /// Renders the header value: `Digest realm="..", nonce="..", algorithm=.., qop="..",
    /// opaque="..", stale=TRUE`.
    pub fn render(&self) -> Result<String, DigestParseError> {
        ChallengeRef {
            realm: &self.realm,
            nonce: &self.nonce,
            algorithm: self.algorithm.as_deref(),
            qop: self.qop.as_deref(),
            opaque: self.opaque.as_deref(),
            stale: self.stale,
        }
        .render()
    }
}

/// A [`DigestChallenge`] borrowing its values: a 401 renders its challenge without copying
/// the realm, nonce and tokens into strings first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeRef<'a> {
    /// `realm`.
    pub realm: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
    /// `algorithm`; absent means MD5.
    pub algorithm: Option<&'a str>,
    /// `qop` options as sent.
    pub qop: Option<&'a str>,
    /// `opaque`.
    pub opaque: Option<&'a str>,
    /// `stale=true`.
    pub stale: bool,
}

impl ChallengeRef<'_> {
    /// [`DigestChallenge::render`].
    pub fn render(&self) -> Result<String, DigestParseError> {
        self.check()?;
        let mut out = String::with_capacity(64 + self.realm.len() + self.nonce.len());
        self.render_pieces(|p| out.push_str(p));
        Ok(out)
    }

    /// The checks of [`DigestParams::push`] on every value [`ChallengeRef::render_pieces`]
    /// writes: no control character, unquoted values are tokens.
    pub fn check(&self) -> Result<(), DigestParseError> {
        let quoted = [Some(self.realm), Some(self.nonce), self.qop, self.opaque];
        for value in quoted.into_iter().flatten() {
            check_value(value, "value")?;
        }
        if let Some(a) = self.algorithm {
            check_value(a, "value")?;
            if !is_token(a) {
                return Err(DigestParseError::InvalidValue("value"));
            }
        }
        Ok(())
    }

    /// Writes the challenge's value piece by piece (`Digest realm="..", nonce="..", ...`),
    /// straight into a message being built; [`ChallengeRef::check`] first, which this does
    /// not repeat.
    pub fn render_pieces(&self, mut f: impl FnMut(&str)) {
        // Each parameter's separator, name, `=` and opening quote go as one piece (the
        // realm is always first): eleven pieces for an IMS-AKA challenge, not the
        // twenty-three of a piece each, every piece a call into the message being built.
        /// `lead`, then `value` quoted-string'd, then its closing quote.
        fn quoted(f: &mut impl FnMut(&str), lead: &str, value: &str) {
            f(lead);
            quoted_body(value, f);
            f("\"");
        }
        quoted(&mut f, "Digest realm=\"", self.realm);
        quoted(&mut f, ", nonce=\"", self.nonce);
        if let Some(a) = self.algorithm {
            f(", algorithm=");
            f(a);
        }
        if let Some(q) = self.qop {
            quoted(&mut f, ", qop=\"", q);
        }
        if let Some(o) = self.opaque {
            quoted(&mut f, ", opaque=\"", o);
        }
        if self.stale {
            f(", stale=TRUE");
        }
    }
}

/// An `Authorization: Digest ...` credentials value (RFC 2617 3.2.2, RFC 3310 3.2/3.4,
/// TS 24.229 `integrity-protected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    /// `username` (the IMPI in IMS).
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, echoed from the challenge.
    pub nonce: String,
    /// `uri` (digest-uri).
    pub uri: String,
    /// `response`: 32 lower/upper-case hex digits, or empty (RFC 3310 MAC failure, or the
    /// initial unprotected REGISTER).
    pub response: String,
    /// `algorithm`.
    pub algorithm: Option<String>,
    /// `qop` (only `auth` is accepted).
    pub qop: Option<String>,
    /// `nc`, 8 hex digits, present with `qop`.
    pub nc: Option<String>,
    /// `cnonce`, present with `qop`.
    pub cnonce: Option<String>,
    /// `opaque`, echoed.
    pub opaque: Option<String>,
    /// `auts`: base64(AUTS) on a synchronisation failure (RFC 3310 3.4).
    pub auts: Option<String>,
    /// `integrity-protected` (the TS 24.229 Authorization extension), e.g. `yes`, `no`, `ip-assoc-pending`.
    pub integrity_protected: Option<String>,
}

impl DigestCredentials {
    /// Parses a credentials header value.
    pub fn parse(value: &str) -> Result<Self, DigestParseError> {
        CredentialsRef::parse(value).map(CredentialsRef::into_owned)
    }

    /// Extracts and checks credentials from a parsed list.
    pub fn from_params(p: &DigestParams) -> Result<Self, DigestParseError> {
        let mut refs = ParamRefs {
            known: Default::default(),
        };
        for p in p.iter() {
            if let Some(k) = Known::of(&p.name) {
                // The first of a name, as a lookup by name finds it.
                refs.known[k as usize].get_or_insert(Cow::Borrowed(&p.value));
            }
        }
        CredentialsRef::from_refs(refs).map(CredentialsRef::into_owned)
    }

    /// Renders the header value in the usual order (strings quoted; algorithm, qop, nc and
    /// integrity-protected as tokens).
    pub fn render(&self) -> Result<String, DigestParseError> {
        let mut p = DigestParams::new();
        p.push("username", &self.username, true)?;
        p.push("realm", &self.realm, true)?;
        p.push("nonce", &self.nonce, true)?;
        p.push("uri", &self.uri, true)?;
        p.push("response", &self.response, true)?;
        if let Some(a) = &self.algorithm {
            p.push("algorithm", a, false)?;
        }
        if let Some(q) = &self.qop {
            p.push("qop", q, false)?;
        }
        if let Some(nc) = &self.nc {
            p.push("nc", nc, false)?;
        }
        if let Some(c) = &self.cnonce {
            p.push("cnonce", c, true)?;
        }
        if let Some(o) = &self.opaque {
            p.push("opaque", o, true)?;
        }
        if let Some(a) = &self.auts {
            p.push("auts", a, true)?;
        }
        if let Some(i) = &self.integrity_protected {
            p.push("integrity-protected", i, false)?;
        }
        Ok(p.render())
    }
}

/// [`DigestCredentials`] borrowed from the header value they were parsed from (a value with
/// an escape or a fold is unescaped into its own string): what the core reads of a
/// REGISTER's `Authorization` without a `String` per parameter.
#[derive(Debug)]
pub(crate) struct CredentialsRef<'a> {
    /// `username` (the IMPI in IMS).
    pub username: Cow<'a, str>,
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`, echoed from the challenge.
    pub nonce: Cow<'a, str>,
    /// `uri` (digest-uri).
    pub uri: Cow<'a, str>,
    /// `response` (32 hex digits or empty).
    pub response: Cow<'a, str>,
    /// `algorithm`.
    pub algorithm: Option<Cow<'a, str>>,
    /// `qop` (only `auth`).
    pub qop: Option<Cow<'a, str>>,
    /// `nc`, present with `qop`.
    pub nc: Option<Cow<'a, str>>,
    /// `cnonce`, present with `qop`.
    pub cnonce: Option<Cow<'a, str>>,
    /// `opaque`.
    pub opaque: Option<Cow<'a, str>>,
    /// `auts` (RFC 3310 3.4).
    pub auts: Option<Cow<'a, str>>,
    /// `integrity-protected` (TS 24.229).
    pub integrity_protected: Option<Cow<'a, str>>,
}

impl<'a> CredentialsRef<'a> {
    /// Parses a credentials header value ([`DigestCredentials::parse`], borrowing).
    pub(crate) fn parse(value: &'a str) -> Result<Self, DigestParseError> {
        Self::from_refs(ParamRefs::parse(value)?)
    }

    /// Checks the credentials of a parsed list, borrowing the values kept.
    fn from_refs(mut p: ParamRefs<'a>) -> Result<Self, DigestParseError> {
        let response = p.take_required(Known::Response)?;
        if !(response.is_empty()
            || (response.len() == 32 && response.bytes().all(|b| b.is_ascii_hexdigit())))
        {
            return Err(DigestParseError::InvalidValue("response"));
        }
        let qop = p.take_known(Known::Qop);
        let (nc, cnonce) = match &qop {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = p.take_required(Known::Nc)?;
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(DigestParseError::InvalidValue("nc"));
                }
                (Some(nc), Some(p.take_required(Known::Cnonce)?))
            }
            // auth-int needs the body hash; RFC 3310 IMS use is qop=auth.
            Some(_) => return Err(DigestParseError::InvalidValue("qop")),
            None => (None, None),
        };
        Ok(CredentialsRef {
            username: p.take_required(Known::Username)?,
            realm: p.take_required(Known::Realm)?,
            nonce: p.take_required(Known::Nonce)?,
            uri: p.take_required(Known::Uri)?,
            response,
            algorithm: p.take_known(Known::Algorithm),
            qop,
            nc,
            cnonce,
            opaque: p.take_known(Known::Opaque),
            auts: p.take_known(Known::Auts),
            integrity_protected: p.take_known(Known::IntegrityProtected),
        })
    }

    /// The owned credentials.
    pub(crate) fn into_owned(self) -> DigestCredentials {
        let own = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned);
        DigestCredentials {
            username: self.username.into_owned(),
            realm: self.realm.into_owned(),
            nonce: self.nonce.into_owned(),
            uri: self.uri.into_owned(),
            response: self.response.into_owned(),
            algorithm: own(self.algorithm),
            qop: own(self.qop),
            nc: own(self.nc),
            cnonce: own(self.cnonce),
            opaque: own(self.opaque),
            auts: own(self.auts),
            integrity_protected: own(self.integrity_protected),
        }
    }
}

/// True if `b` holds a control character other than HTAB (or DEL): what a quoted value may
/// not carry unescaped. Branch-free over the bytes, so it runs as vector compares.
fn has_control(b: &[u8]) -> bool {
    b.iter().fold(false, |bad, &c| {
        bad | ((c < 0x20) & (c != b'\t')) | (c == 0x7f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain reading ([`ParamRefs::parse_plain`]) takes what UEs send, and whatever it
    /// takes the general walk reads alike: credentials as the UE simulator, SIPp and the
    /// interop peers write them, then each of them with every byte replaced by each
    /// delimiter, blank, control, escape, case change and a two-byte character, a byte
    /// deleted, a space inserted or a duplicate appended, and random lists.
    #[test]
    fn plain_reading_is_the_general_walks() {
        let same = |input: &str| -> bool {
            let general = ParamRefs::parse_general(input);
            match ParamRefs::parse_plain(input) {
                None => false,
                Some(plain) => {
                    let general =
                        general.unwrap_or_else(|e| panic!("{input:?}: plain read, general {e:?}"));
                    assert_eq!(plain.known, general.known, "{input:?}");
                    true
                }
            }
        };
        let usual = [
            concat!(
                "Digest username=\"001010000000001@ims.mnc001.mcc001.3gppnetwork.org\", ",
                "realm=\"ims.mnc001.mcc001.3gppnetwork.org\", nonce=\"\", ",
                "uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\", response=\"\""
            ),
            concat!(
                "Digest username=\"alice@ims.test\", realm=\"ims.test\", ",
                "nonce=\"3Q3ZgMzg5Ozr0Vqb3lQUQmFyTXJJTBAAAM9xW8ZsXZI=\", ",
                "uri=\"sip:ims.test\", response=\"6629fae49393a05397450978507c4ef1\", ",
                "algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\""
            ),
            concat!(
                "Digest username=\"u@r\",realm=\"r\",nonce=\"n\",uri=\"sip:r\",",
                "response=\"\",integrity-protected=yes,opaque=\"o\",auts=\"AAAA\""
            ),
            "DIGEST Username=\"u\", REALM=\"r\", nonce=\"n\", uri=\"u\", response=\"\"",
        ];
        for u in usual {
            assert!(same(u), "{u:?} not read the plain way");
        }
        let subs = [
            "", " ", "  ", "\t", "\r\n ", "\r\n", "\n", ",", ", ", ",,", "=", "\"", "\\", "\\\"",
            "\u{1}", "\u{7f}", "\u{e9}", "A", "z", "-", "0", ";", "x=y", "username",
        ];
        let mut tried = 0usize;
        for u in usual {
            for at in 0..=u.len() {
                if !u.is_char_boundary(at) {
                    continue;
                }
                for sub in subs {
                    // Replaced (one byte), inserted.
                    if at < u.len() {
                        same(&format!("{}{sub}{}", &u[..at], &u[at + 1..]));
                    }
                    same(&format!("{}{sub}{}", &u[..at], &u[at..]));
                    tried += 2;
                }
                // Case changed.
                let mut b = u.as_bytes().to_vec();
                if let Some(c) = b.get_mut(at) {
                    *c ^= 0x20 * u8::from(c.is_ascii_alphabetic());
                }
                same(&String::from_utf8(b).unwrap());
            }
            for dup in [
                ", realm=\"x\"",
                ", nc=1",
                ", domain=\"d\"",
                ", qop=auth",
                ",",
            ] {
                same(&format!("{u}{dup}"));
            }
            // Cut short at every byte.
            for at in 0..u.len() {
                same(&u[..at]);
            }
        }
        let pieces = [
            "Digest ",
            "digest ",
            "username=",
            "realm=",
            "nonce=",
            "uri=",
            "response=",
            "algorithm=",
            "qop=",
            "nc=",
            "cnonce=",
            "opaque=",
            "auts=",
            "integrity-protected=",
            "domain=",
            "\"v\"",
            "\"\"",
            "\"a,b\"",
            "\"a\\\"b\"",
            "tok",
            "AKAv1-MD5",
            ", ",
            ",",
            " ",
            "=",
            "\"",
            "\r\n ",
            "\t",
        ];
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        for _ in 0..50_000 {
            let mut s = String::from("Digest ");
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = 1 + (seed % 14) as usize;
            let mut r = seed;
            for i in 0..n {
                r = r
                    .rotate_left(7)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(i as u64);
                s.push_str(pieces[(r >> 33) as usize % pieces.len()]);
            }
            same(&s);
            tried += 1;
        }
        assert!(tried > 10_000);
    }

    #[test]
    fn known_names_are_exactly_the_credentials_names_in_any_case() {
        let all = [
            Known::Username,
            Known::Realm,
            Known::Nonce,
            Known::Uri,
            Known::Response,
            Known::Algorithm,
            Known::Qop,
            Known::Nc,
            Known::Cnonce,
            Known::Opaque,
            Known::Auts,
            Known::IntegrityProtected,
        ];
        for k in all {
            let n = k.name();
            assert_eq!(Known::of(n), Some(k));
            assert_eq!(Known::of(&n.to_ascii_uppercase()), Some(k));
            // One byte more, one less, one changed (first, eighth, ninth, last): none.
            assert_eq!(Known::of(&format!("{n}x")), None, "{n}x");
            assert_eq!(Known::of(&n[..n.len() - 1]), None, "{n} cut");
            for at in [0, 7, 8, n.len() - 1] {
                if let Some(c) = n.as_bytes().get(at) {
                    let mut b = n.as_bytes().to_vec();
                    b[at] = if *c == b'z' { b'y' } else { b'z' };
                    let other = String::from_utf8(b).unwrap();
                    assert_eq!(Known::of(&other), None, "{other}");
                }
            }
        }
        assert_eq!(Known::of(""), None);
        assert_eq!(Known::of("domain"), None);
        // Read in place, with and without eight bytes after the name's start.
        for k in all {
            for tail in ["", "=\"value, long enough\""] {
                let input = format!("x, {}{tail}", k.name().to_ascii_uppercase());
                assert_eq!(Known::of_at(input.as_bytes(), 3, k.name().len()), Some(k));
                assert_eq!(Known::of_at(input.as_bytes(), 3, k.name().len() - 1), None);
            }
        }
    }

    /// The folded word decides as a case-insensitive compare of the whole name: every byte
    /// value at every place of every known name (as written and upper-cased), read in place
    /// with and without eight bytes after its start.
    #[test]
    fn the_folded_name_is_the_case_insensitive_compare() {
        let names = [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
            "opaque",
            "auts",
            "integrity-protected",
        ];
        let spec = |b: &[u8]| {
            names
                .iter()
                .position(|n| b.eq_ignore_ascii_case(n.as_bytes()))
                .map(|i| Known::of(names[i]).unwrap())
        };
        for n in names {
            for name in [n.to_string(), n.to_ascii_uppercase()] {
                let mut b = name.into_bytes();
                for at in 0..b.len() {
                    let was = b[at];
                    for v in 0..=255u8 {
                        b[at] = v;
                        for tail in [&b""[..], b"=\"value, long enough\""] {
                            let input = [&b[..], tail].concat();
                            assert_eq!(Known::of_at(&input, 0, b.len()), spec(&b), "{b:?}");
                        }
                    }
                    b[at] = was;
                }
            }
        }
    }

    #[test]
    fn a_known_name_twice_in_other_cases_is_a_duplicate_and_unknown_names_too() {
        let dup = |v: &str| {
            matches!(
                DigestParams::parse(v),
                Err(DigestParseError::DuplicateParam(_))
            )
        };
        assert!(dup("Digest nonce=\"a\", NONCE=\"b\""));
        assert!(dup(
            "Digest Integrity-Protected=yes, integrity-PROTECTED=no"
        ));
        assert!(dup("Digest foo=1, FOO=2"));
        assert!(!dup("Digest foo=1, nonce=\"n\", fooo=2, nonc=3"));
    }

    #[test]
    fn the_token_table_is_alphanumerics_and_the_fifteen_marks() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-.!%*_+`'~#$&^|".contains(&b);
            assert_eq!(is_tchar(b), expected, "{b:#04x}");
        }
        assert_eq!((0..=255u8).filter(|&b| is_tchar(b)).count(), 62 + 15);
    }

    /// The quoted value's fast path decides as the `memchr2` and `has_control` it stands in
    /// for: borrowed at the same closing quote, or left to the byte loop, on random values
    /// with quotes, backslashes, controls, DEL and bytes above 0x7f at every distance.
    #[test]
    fn the_quoted_stop_decides_as_memchr2_and_has_control() {
        let old = |rest: &[u8]| {
            memchr::memchr2(b'"', b'\\', rest)
                .filter(|&len| rest[len] == b'"' && !has_control(&rest[..len]))
        };
        let new = |rest: &[u8]| simd::find_quoted_stop(rest).filter(|&len| rest[len] == b'"');
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n) as usize
        };
        const ODD: &[u8] = b"\"\\\t\r\n\0\x1f\x7f\x80\xff ,=";
        let mut borrowed = 0;
        for _ in 0..200_000 {
            let len = rand(90);
            let rest: Vec<u8> = (0..len)
                .map(|_| {
                    if rand(24) == 0 {
                        ODD[rand(ODD.len() as u64)]
                    } else {
                        b'A' + rand(58) as u8
                    }
                })
                .collect();
            assert_eq!(new(&rest), old(&rest), "{rest:?}");
            borrowed += usize::from(new(&rest).is_some());
        }
        assert!(borrowed > 5_000, "{borrowed}");
        // And whole credentials with such values parse as before (the rest is the same code).
        for v in ["a\\\"b", "x\ty", "ab\r\n c", "ab\x7f", "plain", ""] {
            let input = format!("Digest username=\"{v}\", realm=\"r\"");
            let _ = CredentialsRef::parse(&input);
        }
    }

    #[test]
    fn has_control_refuses_exactly_the_controls_but_htab() {
        for c in 0..=255u8 {
            let control = (c < 0x20 && c != b'\t') || c == 0x7f;
            assert_eq!(has_control(&[c]), control, "{c:#x}");
            // Anywhere in a longer value (the vector loop's tail and body).
            let mut v = vec![b'a'; 70];
            v[37] = c;
            assert_eq!(has_control(&v), control, "{c:#x} inside");
        }
        assert!(!has_control(b""));
    }

    #[test]
    fn parses_tolerantly() {
        let p = DigestParams::parse(
            "  dIgEsT   Username = \"a\\\"b\" ,, REALM=\"r\"\r\n\t,nonce=\"n\", algorithm = AKAv1-MD5 ,",
        )
        .unwrap();
        assert_eq!(p.get("username"), Some("a\"b"));
        assert_eq!(p.get("Realm"), Some("r"));
        assert_eq!(p.get("nonce"), Some("n"));
        assert_eq!(p.get("algorithm"), Some("AKAv1-MD5"));
        assert_eq!(p.iter().count(), 4);
    }

    #[test]
    fn typed_errors() {
        use DigestParseError as E;
        assert_eq!(DigestParams::parse("Basic abc"), Err(E::NotDigest));
        assert_eq!(DigestParams::parse(""), Err(E::ExpectedToken(0)));
        assert_eq!(
            DigestParams::parse("Digest realm"),
            Err(E::ExpectedEquals(12))
        );
        assert_eq!(
            DigestParams::parse("Digest realm=\"x"),
            Err(E::UnterminatedQuote(13))
        );
        assert_eq!(
            DigestParams::parse("Digest a=b c=d"),
            Err(E::ExpectedComma(11))
        );
        assert_eq!(
            DigestParams::parse("Digest a=\"\x01\""),
            Err(E::InvalidChar(10))
        );
        assert_eq!(
            DigestParams::parse("Digest a=b\r\nc=d"),
            Err(E::InvalidChar(10))
        );
        assert_eq!(
            DigestParams::parse("Digest a=b, A=c"),
            Err(E::DuplicateParam("a".into()))
        );
        assert_eq!(DigestParams::parse("Digest a="), Err(E::ExpectedToken(9)));
        assert_eq!(DigestParams::parse("Digestx a=b"), Err(E::NotDigest));
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        assert_eq!(
            DigestParams::parse(&format!("Digest {}", many.join(","))),
            Err(E::TooManyParams)
        );
    }

    #[test]
    fn builder_refuses_injection() {
        let mut p = DigestParams::new();
        assert_eq!(
            p.push("realm", "x\r\nVia: evil", true),
            Err(DigestParseError::InvalidValue("value"))
        );
        assert_eq!(
            p.push("bad name", "x", true),
            Err(DigestParseError::InvalidName)
        );
        assert_eq!(
            p.push("alg", "a b", false),
            Err(DigestParseError::InvalidValue("value"))
        );
    }

    #[test]
    fn render_parse_round_trip_with_escapes() {
        let mut p = DigestParams::new();
        p.push("username", "we\"ird\\name", true).unwrap();
        p.push("algorithm", "AKAv1-MD5", false).unwrap();
        let text = p.render();
        assert_eq!(
            text,
            r#"Digest username="we\"ird\\name", algorithm=AKAv1-MD5"#
        );
        assert_eq!(DigestParams::parse(&text).unwrap(), p);
    }

    #[test]
    fn challenge_render_writes_what_the_list_renders() {
        // The 401's value is written directly; it must be byte for byte what the parameter
        // list renders, escapes and the token/control checks included.
        let c = DigestChallenge {
            realm: "ims.\"x\\y".into(),
            nonce: "bm9uY2U=".into(),
            algorithm: Some("AKAv1-MD5".into()),
            qop: Some("auth".into()),
            opaque: Some("o\"".into()),
            stale: true,
        };
        let mut p = DigestParams::new();
        p.push("realm", &c.realm, true).unwrap();
        p.push("nonce", &c.nonce, true).unwrap();
        p.push("algorithm", "AKAv1-MD5", false).unwrap();
        p.push("qop", "auth", true).unwrap();
        p.push("opaque", "o\"", true).unwrap();
        p.push("stale", "TRUE", false).unwrap();
        assert_eq!(c.render().unwrap(), p.render());
        assert_eq!(DigestChallenge::parse(&c.render().unwrap()).unwrap(), c);
        let bad_alg = DigestChallenge {
            algorithm: Some("AKA v1".into()),
            ..c.clone()
        };
        assert_eq!(
            bad_alg.render(),
            Err(DigestParseError::InvalidValue("value"))
        );
        let ctl = DigestChallenge {
            nonce: "a\r\nb".into(),
            ..c
        };
        assert_eq!(ctl.render(), Err(DigestParseError::InvalidValue("value")));
    }

    #[test]
    fn challenge_pieces_are_the_list_rendered_with_any_parameter_left_out() {
        // Its leads join a separator, a name, `=` and a quote: with every optional parameter
        // present or absent, and values with and without escapes, the same bytes as the list.
        let values = [
            ("ims.mnc001.mcc001.3gppnetwork.org", "bm9uY2U="),
            ("a\"b\\c", "\"\""),
            ("", ""),
        ];
        for (realm, nonce) in values {
            for mask in 0..16u8 {
                let c = DigestChallenge {
                    realm: realm.into(),
                    nonce: nonce.into(),
                    algorithm: (mask & 1 != 0).then(|| "AKAv1-MD5".into()),
                    qop: (mask & 2 != 0).then(|| "auth".into()),
                    opaque: (mask & 4 != 0).then(|| "o\"p\\".into()),
                    stale: mask & 8 != 0,
                };
                let mut p = DigestParams::new();
                p.push("realm", &c.realm, true).unwrap();
                p.push("nonce", &c.nonce, true).unwrap();
                if let Some(a) = &c.algorithm {
                    p.push("algorithm", a, false).unwrap();
                }
                if let Some(q) = &c.qop {
                    p.push("qop", q, true).unwrap();
                }
                if let Some(o) = &c.opaque {
                    p.push("opaque", o, true).unwrap();
                }
                if c.stale {
                    p.push("stale", "TRUE", false).unwrap();
                }
                assert_eq!(c.render().unwrap(), p.render(), "{mask}");
            }
        }
    }

    #[test]
    fn credentials_parse_borrowing_matches_the_list() {
        // DigestCredentials::parse reads a borrowed list; DigestCredentials::from_params the
        // owned one: the same credentials, the same errors.
        let v = "Digest username=\"u@ims\", realm=\"ims\", nonce=\"n\\\"q\",\r\n uri=\"sip:ims\", response=\"\", algorithm=AKAv1-MD5, integrity-protected=yes";
        let owned = DigestCredentials::from_params(&DigestParams::parse(v).unwrap()).unwrap();
        let borrowed = DigestCredentials::parse(v).unwrap();
        assert_eq!(borrowed, owned);
        assert_eq!(borrowed.nonce, "n\"q");
        assert_eq!(borrowed.integrity_protected.as_deref(), Some("yes"));
        assert_eq!(
            DigestCredentials::parse("Digest Realm=a, realm=b"),
            Err(DigestParseError::DuplicateParam("realm".into()))
        );
    }

    #[test]
    fn strip_ck_ik() {
        let mut p = DigestParams::parse(
            r#"Digest realm="ims", nonce="abc", algorithm=AKAv1-MD5, ck="00112233", ik="44556677", qop="auth""#,
        )
        .unwrap();
        assert_eq!(p.remove("CK").as_deref(), Some("00112233"));
        assert_eq!(p.remove("ik").as_deref(), Some("44556677"));
        assert_eq!(
            p.render(),
            r#"Digest realm="ims", nonce="abc", algorithm=AKAv1-MD5, qop="auth""#
        );
    }

    #[test]
    fn credentials_checks() {
        let base = r#"Digest username="u", realm="r", nonce="n", uri="sip:r""#;
        assert_eq!(
            DigestCredentials::parse(base),
            Err(DigestParseError::MissingParam("response"))
        );
        let ok = DigestCredentials::parse(&format!(r#"{base}, response="""#)).unwrap();
        assert_eq!(ok.response, "");
        assert_eq!(
            DigestCredentials::parse(&format!(r#"{base}, response="zz""#)),
            Err(DigestParseError::InvalidValue("response"))
        );
        let r = "6629fae49393a05397450978507c4ef1";
        assert_eq!(
            DigestCredentials::parse(&format!(r#"{base}, response="{r}", qop=auth, cnonce="c""#)),
            Err(DigestParseError::MissingParam("nc"))
        );
        assert_eq!(
            DigestCredentials::parse(&format!(
                r#"{base}, response="{r}", qop=auth, nc=1, cnonce="c""#
            )),
            Err(DigestParseError::InvalidValue("nc"))
        );
        assert_eq!(
            DigestCredentials::parse(&format!(
                r#"{base}, response="{r}", qop=auth-int, nc=00000001, cnonce="c""#
            )),
            Err(DigestParseError::InvalidValue("qop"))
        );
    }

    #[test]
    fn random_input_never_panics_and_round_trips() {
        use rand::{Rng, SeedableRng};
        // Offline stand-in for the cargo-fuzz target: mutations of a real header over an
        // alphabet of the characters the grammar cares about.
        const ALPHABET: &[u8] = b"Digest ,=\"\\\t\r\nabcAKAv1-MD5\x01\x7f\xc3\xa9";
        let seed = r#"Digest username="u\"x", realm="r", nonce="bm9uY2U=", uri="sip:r", response="6629fae49393a05397450978507c4ef1", qop=auth, nc=00000001, cnonce="c", auts="AAAA""#;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3310);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut b = seed.as_bytes().to_vec();
            for _ in 0..rng.gen_range(1..6) {
                let at = rng.gen_range(0..=b.len());
                match rng.gen_range(0..3) {
                    0 if at < b.len() => {
                        b.remove(at);
                    }
                    1 if at < b.len() => b[at] = ALPHABET[rng.gen_range(0..ALPHABET.len())],
                    _ => b.insert(at, ALPHABET[rng.gen_range(0..ALPHABET.len())]),
                }
            }
            let Ok(text) = core::str::from_utf8(&b) else {
                continue;
            };
            if let Ok(p) = DigestParams::parse(text) {
                accepted += 1;
                assert_eq!(
                    DigestParams::parse(&p.render()).as_ref(),
                    Ok(&p),
                    "{text:?}"
                );
                let _ = DigestCredentials::from_params(&p);
                let _ = DigestChallenge::from_params(&p);
            }
        }
        // The mutations must leave a fair share parseable, or the round trip went untested.
        assert!(accepted > 2_000, "{accepted}");
    }

    #[test]
    fn challenge_qop_list() {
        let c =
            DigestChallenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int, auth""#).unwrap();
        assert!(c.offers_qop_auth());
        let c = DigestChallenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#).unwrap();
        assert!(!c.offers_qop_auth());
        assert_eq!(
            DigestChallenge::parse(r#"Digest realm="r""#),
            Err(DigestParseError::MissingParam("nonce"))
        );
    }
}
