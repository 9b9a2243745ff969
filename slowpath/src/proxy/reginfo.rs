//! The `application/reginfo+xml` body of a reg-event NOTIFY (RFC 3680 5.1).

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

/// A full-state reginfo document: one active `registration` per IMPU, each with the UE's
/// registered contact (`event="registered"`, remaining `expires` seconds).
pub(crate) fn reginfo_full(version: u32, impus: &[String], contact: &str, expires: u64) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\"?>\r\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"{version}\" state=\"full\">\r\n"
    );
    for (i, impu) in impus.iter().enumerate() {
        s.push_str(&format!(
            " <registration aor=\"{}\" id=\"a{i}\" state=\"active\">\r\n  <contact id=\"c{i}\" state=\"active\" event=\"registered\" expires=\"{expires}\">\r\n   <uri>{}</uri>\r\n  </contact>\r\n </registration>\r\n",
            xml_escape(impu),
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
            600,
        );
        assert_eq!(b.matches("<registration ").count(), 2);
        assert!(b.contains("aor=\"tel:+1\""));
        assert!(b.contains("<uri>sip:a@[2001:db8::1]:5064;x=&quot;&lt;&quot;</uri>"));
    }
}
