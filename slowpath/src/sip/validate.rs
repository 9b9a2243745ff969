//! Semantic checks a stateful proxy applies after parsing (RFC 3261 8.2.1-8.2.2, 16.3):
//! mandatory and single-valued headers, well-formed typed headers, Request-URI scheme.

use super::error::ParseError;
use super::header_name::HeaderKind;
use super::lex::{trim_lws, ListIter};
use super::message::{Message, StartLine};
use super::name_addr::Contact;
use super::uri::{Scheme, Uri};
use super::via::Via;

impl<'a> Message<'a> {
    /// Checks everything the P-CSCF relies on. A request that fails is answered with
    /// `err.status_code()`; a response that fails is dropped.
    pub fn validate(&self) -> Result<(), ParseError> {
        if let StartLine::Request { method, .. } = self.start_line() {
            let ruri = self.parsed_request_uri()?;
            if ruri.headers.is_some() {
                return Err(ParseError::RequestUriHeaders);
            }
            let cseq = self.cseq()?;
            if cseq.method != method {
                return Err(ParseError::CSeqMethodMismatch);
            }
            self.max_forwards()?;
        } else {
            self.cseq()?;
        }
        let top_via = self.cached_top_via()?;
        self.check_vias_after(top_via)?;
        self.cached_from()?;
        self.cached_to()?;
        self.call_id()?;
        if let Some(first) = self.cached_first_contact() {
            first?;
            self.contact_values_after_first().try_for_each(|c| {
                c.and_then(Contact::parse)
                    .map(|_| ())
                    .map_err(|_| ParseError::BadHeader("Contact"))
            })?;
        }
        for kind in [
            HeaderKind::Route,
            HeaderKind::RecordRoute,
            HeaderKind::Path,
            HeaderKind::ServiceRoute,
        ] {
            self.name_addrs(kind).try_for_each(|a| a.map(|_| ()))?;
        }
        for kind in [
            HeaderKind::Require,
            HeaderKind::ProxyRequire,
            HeaderKind::Supported,
        ] {
            self.check_option_tags(kind)?;
        }
        self.expires()?;
        self.single(HeaderKind::ContentType)?;
        // RFC 3261 20.17: SIP-date is always GMT (RFC 4475 3.1.2.12).
        if let Some(date) = self.single(HeaderKind::Date)? {
            if !trim_lws(date).ends_with(" GMT") {
                return Err(ParseError::BadHeader("Date"));
            }
        }
        Ok(())
    }

    /// Every Via element after the top one (`top`, parsed and cached) parses. The top Via and
    /// first Contact are parsed (and cached) before: their raw values are skipped rather than
    /// parsed again. A top Via that is its whole line skips the line (the same elements after
    /// it as the list split's `skip(1)`, without splitting it).
    pub(crate) fn check_vias_after(&self, top: &Via<'a>) -> Result<(), ParseError> {
        let check_via = |v: Result<&'a str, ParseError>| {
            v.map_err(|_| ParseError::BadHeader("Via"))
                .and_then(Via::parse)
                .map(|_| ())
        };
        let mut lines = self.header_values(HeaderKind::Via);
        if lines.next().is_some_and(|first| top.spans_line(first)) {
            lines.flat_map(ListIter::new).try_for_each(check_via)
        } else {
            self.list_values(HeaderKind::Via)
                .skip(1)
                .try_for_each(check_via)
        }
    }

    /// [`Message::check_vias_after`] as it was: every element after the list split's first
    /// (the reference of a differential test).
    #[cfg(test)]
    pub(crate) fn check_vias_after_listed(&self) -> Result<(), ParseError> {
        self.list_values(HeaderKind::Via).skip(1).try_for_each(|v| {
            v.map_err(|_| ParseError::BadHeader("Via"))
                .and_then(Via::parse)
                .map(|_| ())
        })
    }

    /// The Request-URI parsed; schemes other than sip, sips and tel give 416 (RFC 3261 8.2.2.1),
    /// except the service URNs of RFC 5031 (`urn:service:sos`...), which a P-CSCF routes
    /// (TS 24.229 5.2.10).
    pub fn parsed_request_uri(&self) -> Result<Uri<'a>, ParseError> {
        let raw = self.request_uri().ok_or(ParseError::BadRequestLine)?;
        let uri = Uri::parse(raw)?;
        if let Scheme::Other(s) = uri.scheme {
            let service_urn = s.eq_ignore_ascii_case("urn")
                && uri
                    .opaque
                    .get(..8)
                    .is_some_and(|p| p.eq_ignore_ascii_case("service:"));
            if !service_urn {
                return Err(ParseError::UnsupportedUriScheme);
            }
        }
        Ok(uri)
    }
}
