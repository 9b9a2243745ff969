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

impl HeaderKind {
    /// Resolves a header name (full or compact form, any case).
    pub fn from_name(name: &str) -> HeaderKind {
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
