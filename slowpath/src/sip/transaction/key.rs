//! Transaction identifiers: server side per RFC 3261 17.2.3 (branch + sent-by + method, ACK
//! folded into INVITE, with the RFC 2543 fallback), client side per 17.1.3 (branch + CSeq method).

use crate::sip::error::ParseError;
use crate::sip::message::Message;
use crate::sip::uri::Host;
use crate::sip::via::{Via, MAGIC_COOKIE};

/// Identifies a server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// Branch carries the magic cookie `z9hG4bK` (17.2.3).
    Rfc3261(Rfc3261Key),
    /// Pre-RFC 3261 peers: the fields 17.2.3 lists for RFC 2543 matching, except the To tag
    /// (which the ACK carries and the INVITE does not).
    Rfc2543 {
        /// Request-URI.
        request_uri: String,
        /// From tag.
        from_tag: String,
        /// Call-ID.
        call_id: String,
        /// CSeq number.
        cseq: u32,
        /// Top Via sent-by and branch (if any).
        top_via: String,
        /// Request method, with ACK counted as INVITE.
        method: String,
    },
}

/// An RFC 3261 server transaction key: top Via branch, sent-by (lower-cased host and
/// explicit port) and method (ACK counted as INVITE), in one string (one allocation per
/// request rather than three) with the lengths that split it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc3261Key {
    text: String,
    branch_len: usize,
    sent_by_len: usize,
}

impl Rfc3261Key {
    fn new(branch: &str, via: &Via<'_>, method: &str) -> Self {
        let mut text = String::with_capacity(branch.len() + via.sent_by.len() + method.len() + 8);
        text.push_str(branch);
        push_sent_by(&mut text, via);
        let sent_by_len = text.len() - branch.len();
        text.push_str(method);
        Rfc3261Key {
            text,
            branch_len: branch.len(),
            sent_by_len,
        }
    }

    /// Top Via branch.
    pub fn branch(&self) -> &str {
        &self.text[..self.branch_len]
    }

    /// Top Via sent-by, lower-cased host and explicit port.
    pub fn sent_by(&self) -> &str {
        &self.text[self.branch_len..self.branch_len + self.sent_by_len]
    }

    /// Request method, with ACK counted as INVITE.
    pub fn method(&self) -> &str {
        &self.text[self.branch_len + self.sent_by_len..]
    }

    /// The same key for another method.
    fn with_method(&self, method: &str) -> Self {
        let head = self.branch_len + self.sent_by_len;
        let mut text = String::with_capacity(head + method.len());
        text.push_str(&self.text[..head]);
        text.push_str(method);
        Rfc3261Key { text, ..*self }
    }
}

/// Appends `host:port` of the Via's sent-by, the host lower-cased (ASCII once parsed).
fn push_sent_by(s: &mut String, via: &Via<'_>) {
    use std::fmt::Write as _;
    let start = s.len();
    // What `{host}:{port}` writes, without the formatter for the usual IPv4 or name.
    match via.host {
        Host::Name(n) => s.push_str(n),
        Host::Ipv4(a) => {
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    s.push('.');
                }
                s.push_str(itoa::Buffer::new().format(octet));
            }
        }
        Host::Ipv6(_) => {
            let _ = write!(s, "{}", via.host);
        }
    }
    s.push(':');
    s.push_str(itoa::Buffer::new().format(via.port_or_default()));
    s[start..].make_ascii_lowercase();
}

fn sent_by(via: &Via<'_>) -> String {
    let mut s = String::with_capacity(48);
    push_sent_by(&mut s, via);
    s
}

impl ServerKey {
    /// The key of the server transaction a request belongs to.
    pub fn for_request(request: &Message<'_>) -> Result<ServerKey, ParseError> {
        let method = request.method().ok_or(ParseError::BadRequestLine)?;
        let method = if method == "ACK" { "INVITE" } else { method };
        let via = request.cached_top_via()?;
        if let Some(branch) = via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            return Ok(ServerKey::Rfc3261(Rfc3261Key::new(branch, via, method)));
        }
        Ok(ServerKey::Rfc2543 {
            request_uri: request.request_uri().unwrap_or_default().to_string(),
            from_tag: request.cached_from()?.tag().unwrap_or_default().to_string(),
            call_id: request.call_id()?.to_string(),
            cseq: request.cseq()?.seq,
            top_via: format!("{};{}", sent_by(via), via.branch().unwrap_or_default()),
            method: method.to_string(),
        })
    }

    /// The key of the INVITE transaction a CANCEL targets (RFC 3261 9.2).
    pub fn invite_for_cancel(cancel: &Message<'_>) -> Result<ServerKey, ParseError> {
        Ok(match ServerKey::for_request(cancel)? {
            ServerKey::Rfc3261(k) => ServerKey::Rfc3261(k.with_method("INVITE")),
            ServerKey::Rfc2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                ..
            } => ServerKey::Rfc2543 {
                request_uri,
                from_tag,
                call_id,
                cseq,
                top_via,
                method: "INVITE".into(),
            },
        })
    }
}

/// Identifies a client transaction (17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Branch of the top Via the client inserted.
    pub branch: String,
    /// CSeq method.
    pub method: String,
}

impl ClientKey {
    /// Key of an outgoing request or of a response to it.
    pub fn for_message(msg: &Message<'_>) -> Result<ClientKey, ParseError> {
        let via = msg.cached_top_via()?;
        let branch = via.branch().ok_or(ParseError::BadHeader("Via"))?;
        Ok(ClientKey {
            branch: branch.to_string(),
            method: msg.cseq()?.method.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_by_is_what_the_formatter_writes() {
        for (via, port) in [
            ("SIP/2.0/UDP 10.0.255.1", 5060),
            ("SIP/2.0/TLS 0.0.0.0", 5061),
            ("SIP/2.0/TCP [2001:DB8::1]:5070", 5070),
            ("SIP/2.0/TCP Host.Example:1", 1),
        ] {
            let v = Via::parse(via).unwrap();
            assert_eq!(v.port_or_default(), port);
            let mut s = String::from("x");
            push_sent_by(&mut s, &v);
            assert_eq!(s, format!("x{}:{port}", v.host).to_ascii_lowercase());
        }
    }

    #[test]
    fn rfc3261_key_splits_back_into_its_parts() {
        let m = Message::parse(
            b"CANCEL sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP Host.Example:5070;branch=z9hG4bKx1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\n\r\n",
        )
        .unwrap();
        let ServerKey::Rfc3261(k) = ServerKey::for_request(&m).unwrap() else {
            panic!("not an RFC 3261 key");
        };
        assert_eq!(
            (k.branch(), k.sent_by(), k.method()),
            ("z9hG4bKx1", "host.example:5070", "CANCEL")
        );
        let ServerKey::Rfc3261(i) = ServerKey::invite_for_cancel(&m).unwrap() else {
            panic!("not an RFC 3261 key");
        };
        assert_eq!(
            (i.branch(), i.sent_by(), i.method()),
            ("z9hG4bKx1", "host.example:5070", "INVITE")
        );
    }
}
