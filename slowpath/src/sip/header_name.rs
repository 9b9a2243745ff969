//! Header names the P-CSCF knows, with their compact forms (RFC 3261 7.3.3, IANA SIP registry),
//! resolved once per header at parse time so lookups compare a small enum.

use akagate_proto::swar;

/// A known SIP header, or `Other` for any extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(missing_docs)]
pub enum HeaderKind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    Expires,
    MinExpires,
    ContentLength,
    ContentType,
    ContentEncoding,
    Supported,
    Unsupported,
    Require,
    ProxyRequire,
    Route,
    RecordRoute,
    Path,
    ServiceRoute,
    Subject,
    Event,
    AllowEvents,
    ReferTo,
    ReferredBy,
    SessionExpires,
    AcceptContact,
    RejectContact,
    RequestDisposition,
    Identity,
    Allow,
    Accept,
    Date,
    Timestamp,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    AuthenticationInfo,
    SecurityClient,
    SecurityServer,
    SecurityVerify,
    PAssociatedUri,
    PAssertedIdentity,
    PPreferredIdentity,
    PAccessNetworkInfo,
    PVisitedNetworkId,
    PChargingVector,
    PChargingFunctionAddresses,
    RetryAfter,
    Warning,
    UserAgent,
    Server,
    /// Any header not listed above; compare its name case-insensitively.
    #[default]
    Other,
}

/// (kind, canonical name, compact form or 0).
const TABLE: &[(HeaderKind, &str, u8)] = &[
    (HeaderKind::Via, "Via", b'v'),
    (HeaderKind::From, "From", b'f'),
    (HeaderKind::To, "To", b't'),
    (HeaderKind::CallId, "Call-ID", b'i'),
    (HeaderKind::CSeq, "CSeq", 0),
    (HeaderKind::Contact, "Contact", b'm'),
    (HeaderKind::MaxForwards, "Max-Forwards", 0),
    (HeaderKind::Expires, "Expires", 0),
    (HeaderKind::MinExpires, "Min-Expires", 0),
    (HeaderKind::ContentLength, "Content-Length", b'l'),
    (HeaderKind::ContentType, "Content-Type", b'c'),
    (HeaderKind::ContentEncoding, "Content-Encoding", b'e'),
    (HeaderKind::Supported, "Supported", b'k'),
    (HeaderKind::Unsupported, "Unsupported", 0),
    (HeaderKind::Require, "Require", 0),
    (HeaderKind::ProxyRequire, "Proxy-Require", 0),
    (HeaderKind::Route, "Route", 0),
    (HeaderKind::RecordRoute, "Record-Route", 0),
    (HeaderKind::Path, "Path", 0),
    (HeaderKind::ServiceRoute, "Service-Route", 0),
    (HeaderKind::Subject, "Subject", b's'),
    (HeaderKind::Event, "Event", b'o'),
    (HeaderKind::AllowEvents, "Allow-Events", b'u'),
    (HeaderKind::ReferTo, "Refer-To", b'r'),
    (HeaderKind::ReferredBy, "Referred-By", b'b'),
    (HeaderKind::SessionExpires, "Session-Expires", b'x'),
    (HeaderKind::AcceptContact, "Accept-Contact", b'a'),
    (HeaderKind::RejectContact, "Reject-Contact", b'j'),
    (HeaderKind::RequestDisposition, "Request-Disposition", b'd'),
    (HeaderKind::Identity, "Identity", b'y'),
    (HeaderKind::Allow, "Allow", 0),
    (HeaderKind::Accept, "Accept", 0),
    (HeaderKind::Date, "Date", 0),
    (HeaderKind::Timestamp, "Timestamp", 0),
    (HeaderKind::Authorization, "Authorization", 0),
    (HeaderKind::ProxyAuthorization, "Proxy-Authorization", 0),
    (HeaderKind::WwwAuthenticate, "WWW-Authenticate", 0),
    (HeaderKind::ProxyAuthenticate, "Proxy-Authenticate", 0),
    (HeaderKind::AuthenticationInfo, "Authentication-Info", 0),
    (HeaderKind::SecurityClient, "Security-Client", 0),
    (HeaderKind::SecurityServer, "Security-Server", 0),
    (HeaderKind::SecurityVerify, "Security-Verify", 0),
    (HeaderKind::PAssociatedUri, "P-Associated-URI", 0),
    (HeaderKind::PAssertedIdentity, "P-Asserted-Identity", 0),
    (HeaderKind::PPreferredIdentity, "P-Preferred-Identity", 0),
    (HeaderKind::PAccessNetworkInfo, "P-Access-Network-Info", 0),
    (HeaderKind::PVisitedNetworkId, "P-Visited-Network-ID", 0),
    (HeaderKind::PChargingVector, "P-Charging-Vector", 0),
    (
        HeaderKind::PChargingFunctionAddresses,
        "P-Charging-Function-Addresses",
        0,
    ),
    (HeaderKind::RetryAfter, "Retry-After", 0),
    (HeaderKind::Warning, "Warning", 0),
    (HeaderKind::UserAgent, "User-Agent", 0),
    (HeaderKind::Server, "Server", 0),
];

/// The longest known name (`P-Charging-Function-Addresses`), in bytes.
const MAX_NAME: usize = 32;
/// Words of a packed name of at most [`MAX_NAME`] bytes.
const NAME_WORDS: usize = MAX_NAME / 8;

/// One known name (full or compact form) in [`NAME_SLOTS`]: its length (0: an empty slot),
/// its lower-cased bytes packed into words, and its kind.
#[derive(Clone, Copy)]
struct NameSlot {
    len: u8,
    words: [u64; NAME_WORDS],
    kind: HeaderKind,
}

/// The slot where the lookup of a name of `len` bytes whose first lower-cased word is
/// `first` begins (a multiplicative hash's top seven bits).
const fn name_hash(len: usize, first: u64) -> usize {
    ((first ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize
}

/// `name` lower-cased and packed into words, little-endian, the rest zero.
const fn packed_lower(name: &[u8]) -> [u64; NAME_WORDS] {
    let mut words = [0u64; NAME_WORDS];
    let mut i = 0;
    while i < name.len() {
        words[i / 8] |= (name[i].to_ascii_lowercase() as u64) << (8 * (i % 8));
        i += 1;
    }
    words
}

/// Puts `name` for `kind` in the first free slot from its hash (open addressing).
const fn place(slots: &mut [NameSlot; 128], name: &[u8], kind: HeaderKind) {
    let words = packed_lower(name);
    let mut at = name_hash(name.len(), words[0]);
    while slots[at].len != 0 {
        at = (at + 1) % 128;
    }
    slots[at] = NameSlot {
        len: name.len() as u8,
        words,
        kind,
    };
}

/// Every name of [`TABLE`] and every compact form, by hash: 128 slots for 72 names, so a
/// lookup of an unknown name soon meets an empty slot.
static NAME_SLOTS: [NameSlot; 128] = {
    let mut slots = [NameSlot {
        len: 0,
        words: [0; NAME_WORDS],
        kind: HeaderKind::Other,
    }; 128];
    let mut i = 0;
    while i < TABLE.len() {
        let (kind, name, compact) = TABLE[i];
        assert!(name.len() <= MAX_NAME);
        place(&mut slots, name.as_bytes(), kind);
        if compact != 0 {
            place(&mut slots, &[compact], kind);
        }
        i += 1;
    }
    slots
};

impl HeaderKind {
    /// Resolves a header name (full or compact form, any case).
    pub fn from_name(name: &str) -> HeaderKind {
        let b = name.as_bytes();
        if b.len() > MAX_NAME {
            return HeaderKind::Other;
        }
        let mut words = [0u64; NAME_WORDS];
        for (i, word) in words.iter_mut().enumerate().take(b.len().div_ceil(8)) {
            let chunk = &b[i * 8..b.len().min(i * 8 + 8)];
            *word = match swar::word_at(chunk, 0) {
                Some(w) => w,
                // Fewer than eight bytes: packed by hand, the rest zero.
                None => chunk
                    .iter()
                    .rev()
                    .fold(0u64, |w, &c| (w << 8) | u64::from(c)),
            };
        }
        Self::from_words(b.len(), words)
    }

    /// [`HeaderKind::from_name`] of the `len` bytes of `hay` from `at`, reading them a word
    /// at a time where `hay` has eight bytes from each word's start (a name in a header
    /// section is followed by its colon and value); otherwise as `from_name` does.
    pub(crate) fn from_name_in(hay: &str, at: usize, len: usize) -> HeaderKind {
        let mut words = [0u64; NAME_WORDS];
        if len <= MAX_NAME {
            for (i, word) in words.iter_mut().enumerate().take(len.div_ceil(8)) {
                match swar::packed_prefix(hay.as_bytes(), at + i * 8, (len - i * 8).min(8)) {
                    Some(w) => *word = w,
                    None => return hay.get(at..at + len).map_or(HeaderKind::Other, Self::from_name),
                }
            }
        }
        Self::from_words(len, words)
    }

    /// The kind of the name of `len` bytes packed in `words` (little-endian, zero past the
    /// name): lower-cased a word at a time, then looked up in [`NAME_SLOTS`].
    fn from_words(len: usize, mut words: [u64; NAME_WORDS]) -> HeaderKind {
        if len == 0 || len > MAX_NAME {
            return HeaderKind::Other;
        }
        for word in &mut words {
            *word = swar::lower_ascii_word(*word);
        }
        let mut at = name_hash(len, words[0]);
        loop {
            let slot = &NAME_SLOTS[at];
            if slot.len == 0 {
                return HeaderKind::Other;
            }
            if usize::from(slot.len) == len && slot.words == words {
                return slot.kind;
            }
            at = (at + 1) % NAME_SLOTS.len();
        }
    }

    /// The canonical (full) name, or `None` for `Other`.
    pub fn name(self) -> Option<&'static str> {
        TABLE
            .iter()
            .find(|(k, _, _)| *k == self)
            .map(|(_, n, _)| *n)
    }

    /// A static name for error messages (`"header"` for `Other`).
    pub(crate) fn label(self) -> &'static str {
        self.name().unwrap_or("header")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_full_forms() {
        for (c, k) in [
            ("v", HeaderKind::Via),
            ("F", HeaderKind::From),
            ("t", HeaderKind::To),
            ("i", HeaderKind::CallId),
            ("m", HeaderKind::Contact),
            ("L", HeaderKind::ContentLength),
            ("k", HeaderKind::Supported),
            ("c", HeaderKind::ContentType),
            ("e", HeaderKind::ContentEncoding),
            ("s", HeaderKind::Subject),
            ("o", HeaderKind::Event),
            ("u", HeaderKind::AllowEvents),
            ("r", HeaderKind::ReferTo),
            ("b", HeaderKind::ReferredBy),
            ("x", HeaderKind::SessionExpires),
            ("a", HeaderKind::AcceptContact),
            ("j", HeaderKind::RejectContact),
            ("d", HeaderKind::RequestDisposition),
            ("y", HeaderKind::Identity),
            ("MaX-fOrWaRdS", HeaderKind::MaxForwards),
            ("call-id", HeaderKind::CallId),
            ("X-Foo", HeaderKind::Other),
            ("q", HeaderKind::Other),
            (
                "P-Charging-Function-Addresses-Extra-Long",
                HeaderKind::Other,
            ),
        ] {
            assert_eq!(HeaderKind::from_name(c), k, "{c}");
        }
    }

    /// The kind by a walk over [`TABLE`], case-insensitive: what the slots must give.
    fn by_table(name: &str) -> HeaderKind {
        TABLE
            .iter()
            .find(|(_, full, compact)| {
                full.eq_ignore_ascii_case(name)
                    || (*compact != 0 && name.len() == 1 && name.as_bytes()[0].to_ascii_lowercase() == *compact)
            })
            .map_or(HeaderKind::Other, |(k, _, _)| *k)
    }

    /// Known names with a letter changed, cut short or run long, and random token bytes:
    /// the slots give what the table gives, from a name alone and from a name inside a
    /// header section followed by anything from nothing to a long value.
    #[test]
    fn slots_agree_with_the_table() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        let mut names: Vec<String> = Vec::new();
        for &(_, full, compact) in TABLE {
            names.push(full.to_string());
            names.push(full.to_ascii_lowercase());
            names.push(full[..full.len() - 1].to_string());
            names.push(format!("{full}x"));
            names.push(format!("x{full}"));
            if compact != 0 {
                names.push((compact as char).to_string());
            }
        }
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let alphabet = b"aceiotAZ-z_.!%0";
            names.push(
                (0..len)
                    .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
                    .collect(),
            );
        }
        for name in &names {
            let want = by_table(name);
            assert_eq!(HeaderKind::from_name(name), want, "{name:?}");
            for tail in ["", ":", ": v", ": a value longer than a couple of words\r\n"] {
                let hay = format!("Via: x\r\n{name}{tail}");
                assert_eq!(HeaderKind::from_name_in(&hay, 8, name.len()), want, "{hay:?}");
            }
        }
        assert_eq!(HeaderKind::from_name(""), HeaderKind::Other);
        assert_eq!(HeaderKind::from_name(&"a".repeat(33)), HeaderKind::Other);
    }

    #[test]
    fn every_table_name_round_trips() {
        for &(kind, name, compact) in TABLE {
            assert_eq!(HeaderKind::from_name(name), kind);
            assert_eq!(HeaderKind::from_name(&name.to_ascii_uppercase()), kind);
            assert_eq!(kind.name(), Some(name));
            if compact != 0 {
                assert_eq!(HeaderKind::from_name(&(compact as char).to_string()), kind);
            }
        }
    }
}
