//! Transaction identifiers: server side per RFC 3261 17.2.3 (branch + sent-by + method, ACK
//! folded into INVITE, with the RFC 2543 fallback), client side per 17.1.3 (branch + CSeq method).

use crate::sip::error::ParseError;
use crate::sip::message::Message;
use crate::sip::via::Via;

/// Identifies a server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerKey {
    /// Branch carries the magic cookie `z9hG4bK` (17.2.3).
    Rfc3261 {
        /// Top Via branch.
        branch: String,
        /// Top Via sent-by, lower-cased host and explicit port.
        sent_by: String,
        /// Request method, with ACK counted as INVITE.
        method: String,
    },
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

fn sent_by(via: &Via<'_>) -> String {
    use std::fmt::Write as _;
    // One buffer, lower-cased in place (the host's text is ASCII once parsed).
    let mut s = String::with_capacity(48);
    let _ = write!(s, "{}:{}", via.host, via.port_or_default());
    s.make_ascii_lowercase();
    s
}

impl ServerKey {
    /// The key of the server transaction a request belongs to.
    pub fn for_request(request: &Message<'_>) -> Result<ServerKey, ParseError> {
        let method = request.method().ok_or(ParseError::BadRequestLine)?;
        let method = if method == "ACK" { "INVITE" } else { method }.to_string();
        let via = request.top_via()?;
        if let Some(branch) = via.branch().filter(|_| via.is_rfc3261_branch()) {
            return Ok(ServerKey::Rfc3261 {
                branch: branch.to_string(),
                sent_by: sent_by(&via),
                method,
            });
        }
        Ok(ServerKey::Rfc2543 {
            request_uri: request.request_uri().unwrap_or_default().to_string(),
            from_tag: request.from_header()?.tag().unwrap_or_default().to_string(),
            call_id: request.call_id()?.to_string(),
            cseq: request.cseq()?.seq,
            top_via: format!("{};{}", sent_by(&via), via.branch().unwrap_or_default()),
            method,
        })
    }

    /// The key of the INVITE transaction a CANCEL targets (RFC 3261 9.2).
    pub fn invite_for_cancel(cancel: &Message<'_>) -> Result<ServerKey, ParseError> {
        Ok(match ServerKey::for_request(cancel)? {
            ServerKey::Rfc3261 {
                branch, sent_by, ..
            } => ServerKey::Rfc3261 {
                branch,
                sent_by,
                method: "INVITE".into(),
            },
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
