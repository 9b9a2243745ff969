//! Emergency requests (TS 24.229 5.2.10, RFC 5031): how the P-CSCF recognises one (an
//! emergency service URN, or a configured emergency number as the Request-URI's user part or
//! tel number) and the `380 Alternative Service` body it answers with when it cannot route it
//! (TS 24.229 7.6, `application/3gpp-ims+xml`).

use crate::sip::{Message, Scheme, Uri};

/// The RFC 5031 emergency service URN prefix (`urn:service:sos`, `urn:service:sos.police`...).
const SOS_URN: &str = "urn:service:sos";

/// Whether `msg` is an emergency request: its Request-URI is `urn:service:sos[.*]`, or a
/// `tel:` / `sip:...;user=phone` number listed in `numbers` (digits compared without
/// visual separators).
pub fn is_emergency(msg: &Message<'_>, numbers: &[String]) -> bool {
    let Some(ruri) = msg.request_uri() else {
        return false;
    };
    let lower = ruri.trim().to_ascii_lowercase();
    if lower == SOS_URN || lower.starts_with("urn:service:sos.") {
        return true;
    }
    let Ok(uri) = Uri::parse(ruri.trim()) else {
        return false;
    };
    let number = match uri.scheme {
        Scheme::Tel => uri.opaque,
        Scheme::Sip | Scheme::Sips => match uri.user {
            Some(u) => u.split(';').next().unwrap_or(u),
            None => return false,
        },
        Scheme::Other(_) => return false,
    };
    let digits: String = number
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
        .collect();
    numbers.iter().any(|n| n == &digits)
}

/// Why the P-CSCF sends the UE elsewhere for an emergency call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmergencyAction {
    /// The UE should register for emergency services first (TS 24.229 5.2.10.3: an
    /// emergency request from a UE that is not registered, without anonymous emergency
    /// sessions allowed).
    EmergencyRegistration,
    /// This P-CSCF cannot route emergency requests (no E-CSCF configured): the UE should
    /// use another domain (e.g. the CS domain).
    NotServed,
}

/// The `application/3gpp-ims+xml` body of a 380 for an emergency request (TS 24.229 7.6).
pub fn alternative_service_body(action: EmergencyAction) -> String {
    let (reason, action) = match action {
        EmergencyAction::EmergencyRegistration => (
            "emergency registration required",
            "<action>emergency-registration</action>",
        ),
        EmergencyAction::NotServed => ("emergency calls are not served here", ""),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ims-3gpp version=\"1\">\n<alternative-service>\n<type>emergency</type>\n<reason>{reason}</reason>\n{action}</alternative-service>\n</ims-3gpp>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(ruri: &str) -> Vec<u8> {
        format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.1.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn urns_and_configured_numbers_are_emergency() {
        let numbers = vec!["112".to_string(), "911".to_string()];
        for (ruri, want) in [
            ("urn:service:sos", true),
            ("URN:Service:SOS.police", true),
            ("urn:service:sossage", false),
            ("urn:service:counseling", false),
            ("tel:112", true),
            ("tel:9-1-1", true),
            ("sip:112@ims.example;user=phone", true),
            ("sip:1120@ims.example;user=phone", false),
            ("sip:alice@ims.example", false),
        ] {
            let bytes = invite(ruri);
            let msg = Message::parse(&bytes).unwrap();
            assert_eq!(is_emergency(&msg, &numbers), want, "{ruri}");
        }
    }

    #[test]
    fn alternative_service_names_the_action() {
        let body = alternative_service_body(EmergencyAction::EmergencyRegistration);
        assert!(body.contains("<type>emergency</type>"));
        assert!(body.contains("<action>emergency-registration</action>"));
        assert!(!alternative_service_body(EmergencyAction::NotServed).contains("<action>"));
    }
}
