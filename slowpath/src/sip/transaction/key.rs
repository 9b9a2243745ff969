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
/// explicit port) and method (ACK counted as INVITE), in one text (inline, no allocation
/// for the usual lengths) with the lengths that split it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc3261Key {
    text: KeyText,
    branch_len: usize,
    sent_by_len: usize,
}

/// Up to this many bytes of a key are kept inline (a branch of 40, an IPv4 sent-by and a
/// method fit).
const INLINE: usize = 96;

/// A key's text: inline when it fits, on the heap when not. Equality and hash are the
/// text's, whichever way it is kept.
#[derive(Clone)]
enum KeyText {
    /// The first `len` bytes of `buf` (UTF-8: only whole `str`s are appended).
    Inline { len: u8, buf: [u8; INLINE] },
    /// A longer text.
    Heap(String),
}

impl KeyText {
    fn new() -> Self {
        KeyText::Inline {
            len: 0,
            buf: [0; INLINE],
        }
    }

    fn as_str(&self) -> &str {
        match self {
            KeyText::Inline { len, buf } => {
                // Only whole `str`s were appended (and lower-cased as ASCII).
                core::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default()
            }
            KeyText::Heap(s) => s,
        }
    }

    fn len(&self) -> usize {
        self.as_str().len()
    }

    fn push_str(&mut self, s: &str) {
        match self {
            KeyText::Inline { len, buf } => {
                let at = usize::from(*len);
                match buf.get_mut(at..at + s.len()) {
                    Some(dst) => {
                        dst.copy_from_slice(s.as_bytes());
                        // Fits in INLINE (< 256).
                        *len = (at + s.len()) as u8;
                    }
                    None => {
                        let mut heap = String::with_capacity(at + s.len() + 16);
                        heap.push_str(self.as_str());
                        heap.push_str(s);
                        *self = KeyText::Heap(heap);
                    }
                }
            }
            KeyText::Heap(h) => h.push_str(s),
        }
    }

    /// Lower-cases (ASCII) the text from byte `start` on.
    fn lower_from(&mut self, start: usize) {
        match self {
            KeyText::Inline { len, buf } => {
                if let Some(b) = buf.get_mut(start..usize::from(*len)) {
                    b.make_ascii_lowercase();
                }
            }
            KeyText::Heap(h) => {
                if let Some(t) = h.get_mut(start..) {
                    t.make_ascii_lowercase();
                }
            }
        }
    }
}

impl core::fmt::Write for KeyText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl PartialEq for KeyText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for KeyText {}

impl core::hash::Hash for KeyText {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h);
    }
}

impl core::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl Rfc3261Key {
    fn new(branch: &str, via: &Via<'_>, method: &str) -> Self {
        let mut text = KeyText::new();
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
        &self.text.as_str()[..self.branch_len]
    }

    /// Top Via sent-by, lower-cased host and explicit port.
    pub fn sent_by(&self) -> &str {
        &self.text.as_str()[self.branch_len..self.branch_len + self.sent_by_len]
    }

    /// Request method, with ACK counted as INVITE.
    pub fn method(&self) -> &str {
        &self.text.as_str()[self.branch_len + self.sent_by_len..]
    }

    /// The same key for another method.
    fn with_method(&self, method: &str) -> Self {
        let head = self.branch_len + self.sent_by_len;
        let mut text = KeyText::new();
        text.push_str(&self.text.as_str()[..head]);
        text.push_str(method);
        Rfc3261Key { text, ..*self }
    }
}

/// Appends `host:port` of the Via's sent-by, the host lower-cased (ASCII once parsed).
fn push_sent_by(s: &mut KeyText, via: &Via<'_>) {
    use std::fmt::Write as _;
    let start = s.len();
    // What `{host}:{port}` writes, without the formatter for the usual IPv4 or name.
    match via.host {
        Host::Name(n) => s.push_str(n),
        Host::Ipv4(a) => {
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    s.push_str(".");
                }
                s.push_str(itoa::Buffer::new().format(octet));
            }
        }
        Host::Ipv6(_) => {
            let _ = write!(s, "{}", via.host);
        }
    }
    s.push_str(":");
    s.push_str(itoa::Buffer::new().format(via.port_or_default()));
    s.lower_from(start);
}

fn sent_by(via: &Via<'_>) -> String {
    let mut s = KeyText::new();
    push_sent_by(&mut s, via);
    s.as_str().to_string()
}

impl ServerKey {
    /// The key of the server transaction a request belongs to.
    pub fn for_request(request: &Message<'_>) -> Result<ServerKey, ParseError> {
        let method = request.method().ok_or(ParseError::BadRequestLine)?;
        let method = if method == "ACK" { "INVITE" } else { method };
        let via = request.top_via()?;
        if let Some(branch) = via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            return Ok(ServerKey::Rfc3261(Rfc3261Key::new(branch, &via, method)));
        }
        Ok(ServerKey::Rfc2543 {
            request_uri: request.request_uri().unwrap_or_default().to_string(),
            from_tag: request.from_header()?.tag().unwrap_or_default().to_string(),
            call_id: request.call_id()?.to_string(),
            cseq: request.cseq()?.seq,
            top_via: format!("{};{}", sent_by(&via), via.branch().unwrap_or_default()),
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
        let via = msg.top_via()?;
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
            let mut s = KeyText::new();
            s.push_str("X");
            push_sent_by(&mut s, &v);
            let sent_by = format!("{}:{port}", v.host).to_ascii_lowercase();
            assert_eq!(
                s.as_str(),
                format!("X{sent_by}"),
                "only the sent-by lower-cased"
            );
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

    /// A key too long to keep inline moves to the heap as it grows, and equals (and hashes
    /// as) the same text kept either way; its parts split back as for a short one.
    #[test]
    fn a_long_key_is_the_same_key_on_the_heap() {
        use std::hash::BuildHasher;
        let branch = format!("z9hG4bK{}", "b".repeat(INLINE));
        let v = Via::parse("SIP/2.0/UDP Host.Example:5070").unwrap();
        let k = Rfc3261Key::new(&branch, &v, "REGISTER");
        assert!(matches!(k.text, KeyText::Heap(_)));
        assert_eq!(
            (k.branch(), k.sent_by(), k.method()),
            (branch.as_str(), "host.example:5070", "REGISTER")
        );
        let short = Rfc3261Key::new("z9hG4bK1", &v, "REGISTER");
        assert!(matches!(short.text, KeyText::Inline { .. }));
        let heap = Rfc3261Key {
            text: KeyText::Heap(short.text.as_str().to_string()),
            ..short
        };
        let short = Rfc3261Key::new("z9hG4bK1", &v, "REGISTER");
        assert_eq!(heap, short);
        let h = std::collections::hash_map::RandomState::new();
        assert_eq!(h.hash_one(&heap), h.hash_one(&short));
        assert_ne!(short, Rfc3261Key::new("z9hG4bK1", &v, "INVITE"));
        // Exactly full inline, then one byte over.
        let fill = INLINE - "host.example:5070".len() - "ACK".len();
        let full = Rfc3261Key::new(&"f".repeat(fill), &v, "ACK");
        assert!(matches!(full.text, KeyText::Inline { .. }));
        let over = Rfc3261Key::new(&"f".repeat(fill + 1), &v, "ACK");
        assert!(matches!(over.text, KeyText::Heap(_)));
        assert_eq!(over.method(), "ACK");
    }
}
