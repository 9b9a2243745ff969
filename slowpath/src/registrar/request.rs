//! What the registrar reads from a REGISTER: the IMPI and realm, the requested lifetime and
//! Contact, the Security-* mechanisms, and whether Security-Verify echoes what we sent.

use std::borrow::Cow;

use crate::aka::digest_params::CredentialsRef;
use crate::secagree::{
    each_security_view, security_header_views, Chooser, ChosenMechanism, ImsAkaProfile,
    MechanismView, SecMechanism,
};
use crate::sip::{HeaderKind, Message, Scheme};

/// The IMPI of a REGISTER: Authorization `username`, else derived from the To URI
/// (TS 24.229 5.1.1.2: a UE without ISIM derives it the same way).
pub(crate) fn impi_of<'a>(
    msg: &Message<'a>,
    creds: Option<&CredentialsRef<'a>>,
) -> Option<Cow<'a, str>> {
    if let Some(c) = creds {
        if !c.username.is_empty() {
            // Borrowed from the request unless the username had an escape.
            return Some(c.username.clone());
        }
    }
    let to = msg.cached_to().ok()?;
    if !matches!(to.uri.scheme, Scheme::Sip | Scheme::Sips) {
        return None;
    }
    let host = to.uri.host?;
    Some(Cow::Owned(match to.uri.user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    }))
}

/// The realm: the domain part of the IMPI (TS 33.203 6.1.1, TS 23.003 13.3).
pub(crate) fn realm_of(impi: &str) -> &str {
    impi.rsplit_once('@').map_or(impi, |(_, d)| d)
}

/// Requested lifetime: the Contact `expires` parameter, else the Expires header (RFC 3261 10.2.1.1).
pub(crate) fn requested_expires(msg: &Message<'_>) -> Option<u32> {
    let from_contact = msg
        .cached_first_contact()
        .and_then(Result::ok)
        .and_then(|c| c.expires());
    from_contact.or_else(|| msg.expires().ok().flatten())
}

/// The first Contact URI of a REGISTER (`None` for none or `*`).
pub(crate) fn contact_uri(msg: &Message<'_>) -> Option<String> {
    contact_uri_str(msg).map(str::to_string)
}

/// [`contact_uri`] borrowed from the message.
pub(crate) fn contact_uri_str<'a>(msg: &Message<'a>) -> Option<&'a str> {
    let c = msg.cached_first_contact()?.ok()?;
    Some(c.addr()?.uri.raw)
}

/// All mechanisms of every line of a Security-* header (RFC 3329 2.2), borrowed from the
/// message (nothing copied).
pub(crate) fn mechanism_views<'a>(
    msg: &Message<'a>,
    kind: HeaderKind,
) -> Result<Vec<MechanismView<'a>>, ()> {
    // A Security-Client of a UE offers a few mechanisms (commonly 2 to 6): room for them
    // up front rather than growing 1, 4, 8.
    let mut v = Vec::with_capacity(if kind == HeaderKind::SecurityVerify {
        1
    } else {
        8
    });
    for line in msg.header_values(kind) {
        security_header_views(line, &mut v).map_err(|_| ())?;
    }
    Ok(v)
}

/// The offer of `msg`'s Security-Client that `profile` prefers ([`crate::secagree::choose`]),
/// read line by line without a list of the views; `Err` if a line is malformed (every offer
/// is checked, as [`mechanism_views`] checks them).
pub(crate) fn choose_security_client(
    msg: &Message<'_>,
    profile: &ImsAkaProfile,
) -> Result<Option<ChosenMechanism>, ()> {
    let mut chooser = Chooser::new(profile);
    for line in msg.header_values(HeaderKind::SecurityClient) {
        each_security_view(line, |m| chooser.consider(&m)).map_err(|_| ())?;
    }
    Ok(chooser.chosen())
}

/// Whether Security-Verify echoes `sent` (RFC 3329 2.3.1, TS 33.203 7.2): exactly one
/// mechanism, equal parameter for parameter.
pub(crate) fn verify_matches(msg: &Message<'_>, sent: &SecMechanism) -> bool {
    // One line, written exactly as the Security-Server was: equal without parsing it (a
    // rendering is a valid header, and equal text is an equivalent mechanism).
    let mut lines = msg.header_values(HeaderKind::SecurityVerify);
    if let (Some(only), None) = (lines.next(), lines.next()) {
        if sent.renders_as(only) {
            return true;
        }
    }
    // Read in place: the only view is compared as it is checked, none is collected.
    let mut count = 0usize;
    let mut same = true;
    for line in msg.header_values(HeaderKind::SecurityVerify) {
        let walked = each_security_view(line, |m| {
            count += 1;
            same = same && count == 1 && sent.equivalent(&m);
        });
        if walked.is_err() {
            return false;
        }
    }
    count == 1 && same
}
