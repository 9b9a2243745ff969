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

/// The longest name [`HeaderKind::from_name`] can know (a test checks the table against it).
const LONGEST: usize = 32;

/// One name [`HeaderKind::from_name`] knows: a full name or a compact form, lower-cased and
/// zero-padded, with its fold mask.
#[derive(Clone, Copy)]
struct Known {
    kind: HeaderKind,
    len: usize,
    lower: [u8; LONGEST],
    /// 0x20 where `lower` has a letter, 0 elsewhere: a byte or'ed with it equals the letter
    /// only if it is that letter in either case, and any other byte must equal exactly.
    fold: [u8; LONGEST],
}

/// The fold mask of a lower-cased, zero-padded name ([`Known::fold`]).
const fn fold_of(lower: &[u8; LONGEST]) -> [u8; LONGEST] {
    let mut fold = [0; LONGEST];
    let mut j = 0;
    while j < LONGEST {
        if lower[j].is_ascii_lowercase() {
            fold[j] = 0x20;
        }
        j += 1;
    }
    fold
}

/// How many names are known: every full name and every compact form.
const KNOWN_COUNT: usize = {
    let mut n = TABLE.len();
    let mut i = 0;
    while i < TABLE.len() {
        if TABLE[i].2 != 0 {
            n += 1;
        }
        i += 1;
    }
    n
};

/// Every known name, full names first, then the compact forms.
const KNOWN: [Known; KNOWN_COUNT] = {
    let none = Known {
        kind: HeaderKind::Other,
        len: 0,
        lower: [0; LONGEST],
        fold: [0; LONGEST],
    };
    let mut known = [none; KNOWN_COUNT];
    let mut n = 0;
    let mut i = 0;
    while i < TABLE.len() {
        let (kind, name, compact) = TABLE[i];
        let name = name.as_bytes();
        assert!(name.len() <= LONGEST, "a known name longer than LONGEST");
        let mut lower = [0; LONGEST];
        let mut j = 0;
        while j < name.len() {
            lower[j] = name[j].to_ascii_lowercase();
            j += 1;
        }
        known[n] = Known {
            kind,
            len: name.len(),
            lower,
            fold: fold_of(&lower),
        };
        n += 1;
        if compact != 0 {
            let mut lower = [0; LONGEST];
            lower[0] = compact.to_ascii_lowercase();
            known[n] = Known {
                kind,
                len: 1,
                lower,
                fold: fold_of(&lower),
            };
            n += 1;
        }
        i += 1;
    }
    known
};

/// The multiplier of [`slot_of`]: found by a search for one that gives every known name its
/// own slot (the build fails in [`SLOTS`] if a name is added that collides).
const SLOT_MULTIPLIER: u32 = 0xf84a_bd7f;

/// A name's slot in [`SLOTS`], from its length and its first and last bytes (`| 0x20`: the
/// same for either case of a letter).
const fn slot_of(len: usize, first: u8, last: u8) -> usize {
    let key = (len as u32 & 0xff) | ((first as u32 | 0x20) << 8) | ((last as u32 | 0x20) << 16);
    (key.wrapping_mul(SLOT_MULTIPLIER) >> 24) as usize
}

/// For each slot, one more than the index in [`KNOWN`] of the name that hashes there (0: none).
const SLOTS: [u8; 256] = {
    let mut slots = [0u8; 256];
    let mut i = 0;
    while i < KNOWN_COUNT {
        let k = KNOWN[i];
        let slot = slot_of(k.len, k.lower[0], k.lower[k.len - 1]);
        assert!(slots[slot] == 0, "two known header names share a slot");
        slots[slot] = (i + 1) as u8;
        i += 1;
    }
    slots
};

/// The four bytes of `b` from `at`, little-endian.
fn half_word_at(b: &[u8], at: usize) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    bytes
        .try_into()
        .ok()
        .map(|w| u64::from(u32::from_le_bytes(w)))
}

/// True if `name` lower-cased is `k`'s name (of the same length as `name`, at most
/// [`LONGEST`]): eight bytes a compare, each word of `name` or'ed with the fold mask's
/// (letters of either case read as the lower, every other byte compared exactly: two
/// instructions where lower-casing the letters took a dozen), the last word (or the last
/// four bytes, or byte) overlapping the ones before, so every byte is compared.
fn eq_folded(name: &[u8], k: &Known) -> bool {
    let n = name.len();
    let (lower, fold) = (&k.lower, &k.fold);
    if n >= 8 {
        let same = |at: usize| match (
            swar::word_at(name, at),
            swar::word_at(fold, at),
            swar::word_at(lower, at),
        ) {
            (Some(x), Some(f), Some(t)) => x | f == t,
            _ => false,
        };
        let mut at = 0;
        while at + 8 < n {
            if !same(at) {
                return false;
            }
            at += 8;
        }
        same(n - 8)
    } else if n >= 4 {
        let pack = |b: &[u8]| Some(half_word_at(b, 0)? | (half_word_at(b, n - 4)? << 32));
        match (pack(name), pack(fold), pack(lower)) {
            (Some(x), Some(f), Some(t)) => x | f == t,
            _ => false,
        }
    } else {
        let pack = |b: &[u8]| {
            let at = |i: usize| b.get(i).map_or(0, |&c| u64::from(c));
            at(0) | (at(n / 2) << 8) | (at(n.wrapping_sub(1)) << 16)
        };
        n != 0 && pack(name) | pack(fold) == pack(lower)
    }
}

impl HeaderKind {
    /// Resolves a header name (full or compact form, any case).
    pub fn from_name(name: &str) -> HeaderKind {
        // One candidate from the name's length and first and last bytes (no two known names
        // share a slot), then the whole name compared with it, folded a word at a time.
        let b = name.as_bytes();
        let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
            return HeaderKind::Other;
        };
        if b.len() > LONGEST {
            return HeaderKind::Other;
        }
        let slot = SLOTS[slot_of(b.len(), first, last)];
        match KNOWN.get(usize::from(slot).wrapping_sub(1)) {
            Some(k) if k.len == b.len() && eq_folded(b, k) => k.kind,
            _ => HeaderKind::Other,
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

    /// The lower-casing copy and `match` `from_name` stands in for: the reference.
    fn from_name_reference(name: &str) -> HeaderKind {
        // Lower-case into a stack buffer, then one `match` the compiler turns into length and
        // word compares; no known name is longer than 32 bytes.
        let b = name.as_bytes();
        let mut buf = [0u8; 32];
        let Some(dst) = buf.get_mut(..b.len()) else {
            return HeaderKind::Other;
        };
        dst.copy_from_slice(b);
        // Eight bytes a step over the words the name covers (the zero padding stays zero).
        let words = b.len().div_ceil(8) * 8;
        for chunk in buf[..words].chunks_exact_mut(8) {
            let word = u64::from_le_bytes(<[u8; 8]>::try_from(&*chunk).unwrap_or_default());
            chunk.copy_from_slice(&swar::lower_ascii_word(word).to_le_bytes());
        }
        match &buf[..b.len()] {
            b"via" => HeaderKind::Via,
            b"v" => HeaderKind::Via,
            b"from" => HeaderKind::From,
            b"f" => HeaderKind::From,
            b"to" => HeaderKind::To,
            b"t" => HeaderKind::To,
            b"call-id" => HeaderKind::CallId,
            b"i" => HeaderKind::CallId,
            b"cseq" => HeaderKind::CSeq,
            b"contact" => HeaderKind::Contact,
            b"m" => HeaderKind::Contact,
            b"max-forwards" => HeaderKind::MaxForwards,
            b"expires" => HeaderKind::Expires,
            b"min-expires" => HeaderKind::MinExpires,
            b"content-length" => HeaderKind::ContentLength,
            b"l" => HeaderKind::ContentLength,
            b"content-type" => HeaderKind::ContentType,
            b"c" => HeaderKind::ContentType,
            b"content-encoding" => HeaderKind::ContentEncoding,
            b"e" => HeaderKind::ContentEncoding,
            b"supported" => HeaderKind::Supported,
            b"k" => HeaderKind::Supported,
            b"unsupported" => HeaderKind::Unsupported,
            b"require" => HeaderKind::Require,
            b"proxy-require" => HeaderKind::ProxyRequire,
            b"route" => HeaderKind::Route,
            b"record-route" => HeaderKind::RecordRoute,
            b"path" => HeaderKind::Path,
            b"service-route" => HeaderKind::ServiceRoute,
            b"subject" => HeaderKind::Subject,
            b"s" => HeaderKind::Subject,
            b"event" => HeaderKind::Event,
            b"o" => HeaderKind::Event,
            b"allow-events" => HeaderKind::AllowEvents,
            b"u" => HeaderKind::AllowEvents,
            b"refer-to" => HeaderKind::ReferTo,
            b"r" => HeaderKind::ReferTo,
            b"referred-by" => HeaderKind::ReferredBy,
            b"b" => HeaderKind::ReferredBy,
            b"session-expires" => HeaderKind::SessionExpires,
            b"x" => HeaderKind::SessionExpires,
            b"accept-contact" => HeaderKind::AcceptContact,
            b"a" => HeaderKind::AcceptContact,
            b"reject-contact" => HeaderKind::RejectContact,
            b"j" => HeaderKind::RejectContact,
            b"request-disposition" => HeaderKind::RequestDisposition,
            b"d" => HeaderKind::RequestDisposition,
            b"identity" => HeaderKind::Identity,
            b"y" => HeaderKind::Identity,
            b"allow" => HeaderKind::Allow,
            b"accept" => HeaderKind::Accept,
            b"date" => HeaderKind::Date,
            b"timestamp" => HeaderKind::Timestamp,
            b"authorization" => HeaderKind::Authorization,
            b"proxy-authorization" => HeaderKind::ProxyAuthorization,
            b"www-authenticate" => HeaderKind::WwwAuthenticate,
            b"proxy-authenticate" => HeaderKind::ProxyAuthenticate,
            b"authentication-info" => HeaderKind::AuthenticationInfo,
            b"security-client" => HeaderKind::SecurityClient,
            b"security-server" => HeaderKind::SecurityServer,
            b"security-verify" => HeaderKind::SecurityVerify,
            b"p-associated-uri" => HeaderKind::PAssociatedUri,
            b"p-asserted-identity" => HeaderKind::PAssertedIdentity,
            b"p-preferred-identity" => HeaderKind::PPreferredIdentity,
            b"p-access-network-info" => HeaderKind::PAccessNetworkInfo,
            b"p-visited-network-id" => HeaderKind::PVisitedNetworkId,
            b"p-charging-vector" => HeaderKind::PChargingVector,
            b"p-charging-function-addresses" => HeaderKind::PChargingFunctionAddresses,
            b"retry-after" => HeaderKind::RetryAfter,
            b"warning" => HeaderKind::Warning,
            b"user-agent" => HeaderKind::UserAgent,
            b"server" => HeaderKind::Server,
            _ => HeaderKind::Other,
        }
    }

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

    /// Every known name in every case mix (the longer ones in 4,096 random mixes), and near
    /// misses of each: a byte changed to every byte value at every position, the name
    /// cut short, a byte added at either end. The slot and word compare answer as the
    /// reference `match` does.
    #[test]
    fn from_name_is_the_reference_on_known_names_and_near_misses() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let check = |name: &[u8]| {
            if let Ok(name) = std::str::from_utf8(name) {
                assert_eq!(
                    HeaderKind::from_name(name),
                    from_name_reference(name),
                    "{name:?}"
                );
            }
        };
        let mut names: Vec<Vec<u8>> = Vec::new();
        for &(_, name, compact) in TABLE {
            names.push(name.as_bytes().to_vec());
            if compact != 0 {
                names.push(vec![compact]);
            }
        }
        let mut decided = 0;
        for name in &names {
            let n = name.len();
            let mixes: Vec<u64> = if n <= 12 {
                (0..1u64 << n).collect()
            } else {
                (0..4096).map(|_| rand()).collect()
            };
            for mix in mixes {
                let mixed: Vec<u8> = name
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        if mix >> (i % 64) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        }
                    })
                    .collect();
                check(&mixed);
                decided += usize::from(
                    HeaderKind::from_name(std::str::from_utf8(&mixed).unwrap())
                        != HeaderKind::Other,
                );
            }
            for at in 0..n {
                // Every byte value (the fold must not take `\r` for `-`, `@` for `` ` ``, …).
                for b in 0..=255u8 {
                    let mut near = name.clone();
                    near[at] = b;
                    check(&near);
                    near[at] ^= 0x20;
                    check(&near);
                }
                check(&name[..at]);
                check(&name[at..]);
            }
            for b in [b'a', b'-', b'S', b'x'] {
                check(&[name.as_slice(), &[b]].concat());
                check(&[&[b], name.as_slice()].concat());
            }
            let mut utf8 = String::from_utf8(name.clone()).unwrap();
            utf8.push('é');
            check(utf8.as_bytes());
        }
        assert!(decided > 50_000, "{decided}");
        // Random short tokens, letters and dashes mostly, and every one- and two-byte name.
        for _ in 0..200_000 {
            let n = (rand() % 34) as usize;
            let name: Vec<u8> = (0..n)
                .map(|_| {
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.!%*+`'~0123456789"
                        [(rand() % 72) as usize]
                })
                .collect();
            check(&name);
        }
        for a in 0..128u8 {
            check(&[a]);
            for b in 0..128u8 {
                check(&[a, b]);
            }
        }
        check(b"");
    }
}
