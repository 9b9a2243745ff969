//! Reading the S-CSCF's reg-event NOTIFY bodies (`application/reginfo+xml`, RFC 3680 5) in
//! proxy mode (TS 24.229 5.2.3, 5.2.5): which of our UE's contacts the network still holds,
//! for how long, or that it ended the registration (network-initiated de-registration).
//! The XML is parsed by `roxmltree` (DTDs refused, so no entity expansion).

/// One `<contact>` of a `<registration>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactState {
    /// Its `<uri>`.
    pub uri: String,
    /// `state="active"` (else terminated).
    pub active: bool,
    /// The `event` attribute (`registered`, `shortened`, `deactivated`, `rejected`,
    /// `unregistered`, `expired`, `probation`, ...).
    pub event: String,
    /// The `expires` attribute, seconds.
    pub expires: Option<u32>,
}

/// One `<registration>` (an address of record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationState {
    /// Its `aor`.
    pub aor: String,
    /// `state="active"` (else init or terminated).
    pub active: bool,
    /// Its contacts.
    pub contacts: Vec<ContactState>,
}

/// Why a reginfo body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReginfoError {
    /// Not well-formed XML (or it has a DTD).
    #[error("not well-formed reginfo XML: {0}")]
    Xml(String),
    /// The root element is not `reginfo`.
    #[error("the root element is not reginfo")]
    NotReginfo,
}

/// The child elements of `n` named `name` (any namespace).
fn children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// Parses a reginfo document: every registration with its contacts.
pub fn parse_reginfo(body: &[u8]) -> Result<Vec<RegistrationState>, ReginfoError> {
    let text = std::str::from_utf8(body).map_err(|e| ReginfoError::Xml(e.to_string()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| ReginfoError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "reginfo" {
        return Err(ReginfoError::NotReginfo);
    }
    Ok(children(root, "registration")
        .map(|r| RegistrationState {
            aor: r.attribute("aor").unwrap_or_default().to_string(),
            active: r.attribute("state") == Some("active"),
            contacts: children(r, "contact")
                .map(|c| ContactState {
                    uri: children(c, "uri")
                        .next()
                        .and_then(|u| u.text())
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    active: c.attribute("state") == Some("active"),
                    event: c.attribute("event").unwrap_or_default().to_string(),
                    expires: c.attribute("expires").and_then(|e| e.trim().parse().ok()),
                })
                .collect(),
        })
        .collect())
}

/// What a NOTIFY says about one UE's contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactVerdict {
    /// The network ended it (the event names why): remove the registration and its SAs.
    Ended(String),
    /// Still registered, for this many more seconds.
    Active(Option<u32>),
    /// The NOTIFY does not mention it.
    NotMentioned,
}

/// The verdict for `contact` (compared without case): a terminated contact, or a
/// terminated registration listing it, ends it.
pub fn verdict_for(regs: &[RegistrationState], contact: &str) -> ContactVerdict {
    let mut seen = ContactVerdict::NotMentioned;
    for r in regs {
        for c in r
            .contacts
            .iter()
            .filter(|c| c.uri.eq_ignore_ascii_case(contact))
        {
            if !c.active || !r.active {
                let why = if c.event.is_empty() {
                    "terminated"
                } else {
                    &c.event
                };
                return ContactVerdict::Ended(why.to_string());
            }
            seen = match (seen, c.expires) {
                (ContactVerdict::Active(Some(a)), Some(b)) => {
                    ContactVerdict::Active(Some(a.min(b)))
                }
                (ContactVerdict::Active(a), None) => ContactVerdict::Active(a),
                (_, e) => ContactVerdict::Active(e),
            };
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFY_BODY: &str = r#"<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">
  <registration aor="sip:001010000000001@ims.example" id="a7" state="active">
    <contact id="76" state="active" event="shortened" expires="60">
      <uri>sip:001010000000001@[2001:db8::5]:5060</uri>
    </contact>
    <contact id="77" state="terminated" event="deactivated">
      <uri>sip:001010000000001@10.0.1.9:5060</uri>
    </contact>
  </registration>
</reginfo>"#;

    #[test]
    fn contacts_and_their_fate() {
        let regs = parse_reginfo(NOTIFY_BODY.as_bytes()).unwrap();
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0].contacts.len(), 2);
        assert_eq!(
            verdict_for(&regs, "SIP:001010000000001@[2001:db8::5]:5060"),
            ContactVerdict::Active(Some(60))
        );
        assert_eq!(
            verdict_for(&regs, "sip:001010000000001@10.0.1.9:5060"),
            ContactVerdict::Ended("deactivated".into())
        );
        assert_eq!(verdict_for(&regs, "sip:x@y"), ContactVerdict::NotMentioned);
    }

    #[test]
    fn hostile_bodies_are_refused() {
        assert!(parse_reginfo(b"<reginfo").is_err());
        assert_eq!(parse_reginfo(b"<other/>"), Err(ReginfoError::NotReginfo));
        let bomb =
            br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><reginfo>&a;</reginfo>"#;
        assert!(parse_reginfo(bomb).is_err());
        assert!(parse_reginfo(&[0xff, 0xfe]).is_err());
    }
}
