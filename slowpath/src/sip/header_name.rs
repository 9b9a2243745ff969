//! Header names the P-CSCF knows, with their compact forms (RFC 3261 7.3.3, IANA SIP registry),
//! resolved once per header at parse time so lookups compare a small enum.

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
        let b = name.as_bytes();
        if b.len() == 1 {
            let c = b[0].to_ascii_lowercase();
            return TABLE
                .iter()
                .find(|(_, _, compact)| *compact == c)
                .map_or(HeaderKind::Other, |(k, _, _)| *k);
        }
        TABLE
            .iter()
            .find(|(_, full, _)| full.len() == b.len() && full.eq_ignore_ascii_case(name))
            .map_or(HeaderKind::Other, |(k, _, _)| *k)
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
        ] {
            assert_eq!(HeaderKind::from_name(c), k, "{c}");
        }
    }
}
