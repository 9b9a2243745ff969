//! The `application/reginfo+xml` body of a reg-event NOTIFY (RFC 3680 5.1): full state of one
//! registration, its IMPUs and the UE's contact, in the state and with the event of the
//! change being reported.

/// What happened to the contact (RFC 3680 5.1 `event` attribute of `<contact>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContactEvent {
    /// First registration (or the state of an unchanged one).
    Registered,
    /// The binding was refreshed by a re-REGISTER.
    Refreshed,
    /// The UE de-registered; the contact and registration are `terminated`.
    Unregistered,
    /// The binding's lifetime ran out; the contact and registration are `terminated`.
    Expired,
    /// The network removed the binding (its flow closed, or the core deactivated it); the
    /// contact and registration are `terminated`.
    Deactivated,
}

impl ContactEvent {
    fn token(self) -> &'static str {
        match self {
            ContactEvent::Registered => "registered",
            ContactEvent::Refreshed => "refreshed",
            ContactEvent::Unregistered => "unregistered",
            ContactEvent::Expired => "expired",
            ContactEvent::Deactivated => "deactivated",
        }
    }

    /// Whether the contact is still bound after this event.
    pub(crate) fn is_active(self) -> bool {
        matches!(self, ContactEvent::Registered | ContactEvent::Refreshed)
    }
}

/// Escapes XML special characters in text and attribute values.
fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// A full-state reginfo document (RFC 3680 5.1: `version` counts the NOTIFYs of the
/// subscription from 0): one `registration` per IMPU with the UE's contact. While bound,
/// registration and contact are `active` with the remaining `expires` seconds; after
/// de-registration or expiry both are `terminated` (RFC 3680 5.3 state machine) and the
/// contact carries no `expires`.
pub(crate) fn reginfo_full(
    version: u32,
    impus: &[String],
    contact: &str,
    event: ContactEvent,
    expires: u64,
) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\"?>\r\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"{version}\" state=\"full\">\r\n"
    );
    let state = if event.is_active() {
        "active"
    } else {
        "terminated"
    };
    let expires = if event.is_active() {
        format!(" expires=\"{expires}\"")
    } else {
        String::new()
    };
    for (i, impu) in impus.iter().enumerate() {
        s.push_str(&format!(
            " <registration aor=\"{}\" id=\"a{i}\" state=\"{state}\">\r\n  <contact id=\"c{i}\" state=\"{state}\" event=\"{}\"{expires}>\r\n   <uri>{}</uri>\r\n  </contact>\r\n </registration>\r\n",
            xml_escape(impu),
            event.token(),
            xml_escape(contact)
        ));
    }
    s.push_str("</reginfo>\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_lists_every_impu() {
        let b = reginfo_full(
            0,
            &["sip:a@x".to_string(), "tel:+1".to_string()],
            "sip:a@[2001:db8::1]:5064;x=\"<\"",
            ContactEvent::Registered,
            600,
        );
        assert_eq!(b.matches("<registration ").count(), 2);
        assert!(b.contains("aor=\"tel:+1\""));
        assert!(b.contains("<uri>sip:a@[2001:db8::1]:5064;x=&quot;&lt;&quot;</uri>"));
        assert!(
            b.contains("<contact id=\"c0\" state=\"active\" event=\"registered\" expires=\"600\">")
        );
    }

    #[test]
    fn terminated_contacts_carry_the_event_and_no_expires() {
        let b = reginfo_full(
            3,
            &["sip:a@x".to_string()],
            "sip:a@h",
            ContactEvent::Expired,
            0,
        );
        assert!(b.contains("version=\"3\" state=\"full\""));
        assert!(b.contains("<registration aor=\"sip:a@x\" id=\"a0\" state=\"terminated\">"));
        assert!(b.contains("<contact id=\"c0\" state=\"terminated\" event=\"expired\">"));
    }
}
