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
/// explicit port) and method (ACK counted as INVITE), in one text ([`KeyText`]: inline up to
/// [`KEY_INLINE`] bytes, so a usual request's key allocates nothing) with the lengths that
/// split it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rfc3261Key {
    text: KeyText,
    branch_len: usize,
    sent_by_len: usize,
}

/// Bytes of key text held inline: the magic cookie and a 32-character branch, an IPv6
/// sent-by with its port and the longest method fit.
pub const KEY_INLINE: usize = 110;

/// A key's text: inline when it fits [`KEY_INLINE`] bytes (always, when it does: equal texts
/// have equal forms), on the heap otherwise. Compared and hashed as its bytes.
#[derive(Clone)]
enum KeyText {
    Inline { len: u8, buf: [u8; KEY_INLINE] },
    Heap(Box<[u8]>),
}

impl KeyText {
    fn as_bytes(&self) -> &[u8] {
        match self {
            KeyText::Inline { len, buf } => &buf[..usize::from(*len)],
            KeyText::Heap(b) => b,
        }
    }
}

impl PartialEq for KeyText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyText {}

impl std::hash::Hash for KeyText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

/// Writes a [`KeyText`]: into a stack buffer while it fits, into a `Vec` after.
struct KeyWriter {
    buf: [u8; KEY_INLINE],
    len: usize,
    spill: Vec<u8>,
}

impl KeyWriter {
    fn new() -> Self {
        KeyWriter {
            buf: [0; KEY_INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.len + self.spill.len()
    }

    /// Appends one byte (a digit, a separator): no copy call.
    #[inline]
    fn push_byte(&mut self, b: u8) {
        match self.buf.get_mut(self.len) {
            Some(slot) if self.spill.is_empty() => {
                *slot = b;
                self.len += 1;
            }
            _ => self.push(&[b]),
        }
    }

    /// Appends `n` in decimal, a digit at a time (an octet or a port: at most five).
    #[inline]
    fn push_decimal(&mut self, n: u16) {
        let mut digits = [0u8; 5];
        let (mut n, mut i) = (n, digits.len());
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            self.push_byte(d);
        }
    }

    fn push(&mut self, s: &[u8]) {
        if self.spill.is_empty() {
            if let Some(dst) = self.buf.get_mut(self.len..self.len + s.len()) {
                dst.copy_from_slice(s);
                self.len += s.len();
                return;
            }
            self.spill.reserve(self.len + s.len() + 16);
            self.spill.extend_from_slice(&self.buf[..self.len]);
            self.len = 0;
        }
        self.spill.extend_from_slice(s);
    }

    /// Lower-cases the ASCII letters written from `start` on.
    fn lower_from(&mut self, start: usize) {
        let text = if self.spill.is_empty() {
            &mut self.buf[..self.len]
        } else {
            &mut self.spill[..]
        };
        if let Some(t) = text.get_mut(start..) {
            t.make_ascii_lowercase();
        }
    }

    fn finish(self) -> KeyText {
        match u8::try_from(self.len) {
            Ok(len) if self.spill.is_empty() => KeyText::Inline { len, buf: self.buf },
            _ => KeyText::Heap(self.spill.into_boxed_slice()),
        }
    }
}

impl std::fmt::Write for KeyWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl Rfc3261Key {
    fn new(branch: &str, via: &Via<'_>, method: &str) -> Self {
        let mut w = KeyWriter::new();
        w.push(branch.as_bytes());
        push_sent_by(&mut w, via);
        let sent_by_len = w.len() - branch.len();
        w.push(method.as_bytes());
        Rfc3261Key {
            text: w.finish(),
            branch_len: branch.len(),
            sent_by_len,
        }
    }

    /// The text between byte `from` and `to` (pieces of `&str`s, cut at their ends).
    fn piece(&self, from: usize, to: Option<usize>) -> &str {
        let b = self.text.as_bytes();
        let b = match to {
            Some(to) => b.get(from..to),
            None => b.get(from..),
        };
        b.and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Top Via branch.
    pub fn branch(&self) -> &str {
        self.piece(0, Some(self.branch_len))
    }

    /// Top Via sent-by, lower-cased host and explicit port.
    pub fn sent_by(&self) -> &str {
        self.piece(self.branch_len, Some(self.branch_len + self.sent_by_len))
    }

    /// Request method, with ACK counted as INVITE.
    pub fn method(&self) -> &str {
        self.piece(self.branch_len + self.sent_by_len, None)
    }

    /// The same key for another method.
    fn with_method(&self, method: &str) -> Self {
        let head = self.branch_len + self.sent_by_len;
        let mut w = KeyWriter::new();
        w.push(&self.text.as_bytes()[..head]);
        w.push(method.as_bytes());
        Rfc3261Key {
            text: w.finish(),
            ..*self
        }
    }
}

/// Appends `host:port` of the Via's sent-by, the host lower-cased (ASCII once parsed).
fn push_sent_by(w: &mut KeyWriter, via: &Via<'_>) {
    use std::fmt::Write as _;
    let start = w.len();
    // What `{host}:{port}` writes, without the formatter for the usual IPv4 or name.
    match via.host {
        Host::Name(n) => w.push(n.as_bytes()),
        Host::Ipv4(a) => {
            for (k, octet) in a.octets().into_iter().enumerate() {
                if k > 0 {
                    w.push_byte(b'.');
                }
                w.push_decimal(u16::from(octet));
            }
        }
        Host::Ipv6(_) => {
            let _ = write!(w, "{}", via.host);
        }
    }
    w.push_byte(b':');
    w.push_decimal(via.port_or_default());
    // Digits and dots have no case: only a name is lower-cased.
    if matches!(via.host, Host::Name(_)) {
        w.lower_from(start);
    }
}

fn sent_by(via: &Via<'_>) -> String {
    let mut w = KeyWriter::new();
    push_sent_by(&mut w, via);
    String::from_utf8_lossy(w.finish().as_bytes()).into_owned()
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
            let mut w = KeyWriter::new();
            w.push(b"x");
            push_sent_by(&mut w, &v);
            assert_eq!(
                w.finish().as_bytes(),
                format!("x{}:{port}", v.host)
                    .to_ascii_lowercase()
                    .as_bytes()
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

    /// A request whose top Via is `via` and method `method`.
    fn request(method: &str, via: &str) -> String {
        format!(
            "{method} sip:a@b SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n\r\n"
        )
    }

    #[test]
    fn keys_inline_and_on_the_heap_are_their_parts() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        // Branch lengths either side of the inline size, an IPv6 sent-by, upper-case hosts.
        for n in [1, 20, 60, 80, 90, 95, 100, 101, 102, 103, 110, 200, 600] {
            for host in ["10.0.255.1:5070", "Host.Example", "[2001:DB8::1]:5070"] {
                let branch = format!("z9hG4bK{}", "x".repeat(n));
                let via = format!("SIP/2.0/TCP {host};branch={branch}");
                let text = request("REGISTER", &via);
                let m = Message::parse(text.as_bytes()).unwrap();
                let ServerKey::Rfc3261(k) = ServerKey::for_request(&m).unwrap() else {
                    panic!("not an RFC 3261 key");
                };
                let v = Via::parse(&via).unwrap();
                let sent_by = format!("{}:{}", v.host, v.port_or_default()).to_ascii_lowercase();
                assert_eq!(
                    (k.branch(), k.sent_by(), k.method()),
                    (&*branch, &*sent_by, "REGISTER")
                );
                let inline = matches!(k.text, KeyText::Inline { .. });
                let whole = branch.len() + sent_by.len() + "REGISTER".len();
                assert_eq!(inline, whole <= KEY_INLINE, "{whole} bytes");
                // The same key made again is equal and hashes alike; another method is not.
                let again =
                    ServerKey::for_request(&Message::parse(text.as_bytes()).unwrap()).unwrap();
                let key = ServerKey::Rfc3261(k.clone());
                assert_eq!(key, again);
                assert_eq!(hasher.hash_one(&key), hasher.hash_one(&again));
                let other = ServerKey::Rfc3261(k.with_method("INVITE"));
                assert_ne!(key, other);
                let ServerKey::Rfc3261(o) = other else {
                    unreachable!()
                };
                assert_eq!(
                    (o.branch(), o.sent_by(), o.method()),
                    (&*branch, &*sent_by, "INVITE")
                );
            }
        }
    }

    #[test]
    fn a_heap_and_an_inline_text_of_the_same_bytes_are_equal() {
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let mut w = KeyWriter::new();
        w.push(b"z9hG4bKabc");
        let inline = w.finish();
        let heap = KeyText::Heap(b"z9hG4bKabc".to_vec().into_boxed_slice());
        assert!(matches!(inline, KeyText::Inline { .. }));
        assert_eq!(inline, heap);
        assert_eq!(hasher.hash_one(&inline), hasher.hash_one(&heap));
        assert_ne!(
            inline,
            KeyText::Heap(b"z9hG4bKabd".to_vec().into_boxed_slice())
        );
    }
}
