//! The proxy: requests from registered UEs routed to registered callees over the protected
//! client port (TS 24.229 5.2.6-5.2.7) through client transactions, responses back through
//! the server transactions, hop-by-hop CANCEL, in-dialog requests, and the reg-event
//! subscription (RFC 3680).

mod reginfo;
mod reject;
mod route;
mod transport;

pub(crate) use reject::raw_error_response;
pub(crate) use transport::with_received;

use akagate_fastpath::ipc::Flow;

use crate::sip::transaction::TxId;

/// A client transaction the proxy started.
#[derive(Clone, Debug)]
pub(crate) struct Forwarded {
    /// The server transaction whose request it forwards (`None`: our own NOTIFY).
    pub server: Option<TxId>,
    /// The request as sent (for a CANCEL, RFC 3261 9.1).
    pub request: Vec<u8>,
    /// Where it went.
    pub flow: Flow,
    /// Our Via branch.
    pub branch: String,
    /// True for INVITE.
    pub invite: bool,
    /// A provisional response arrived (a CANCEL may be sent, RFC 3261 9.1).
    pub provisional: bool,
    /// The caller cancelled before any provisional response: send CANCEL on the first one.
    pub cancel_pending: bool,
    /// A CANCEL was sent.
    pub cancelled: bool,
    /// Timer C's deadline (INVITE only), also the grace period after it fired once.
    pub timer_c: Option<std::time::Instant>,
    /// Timer C fired once: the caller got 408 and the branch was cancelled.
    pub timer_c_fired: bool,
}

/// A call between two registered UEs, by IMPI key.
#[derive(Clone, Debug)]
pub(crate) struct Dialog {
    /// The UE that sent the initial INVITE.
    pub caller: String,
    /// The UE it was routed to.
    pub callee: String,
}
