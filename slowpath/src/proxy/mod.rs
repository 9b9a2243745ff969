//! The proxy: requests from registered UEs routed to registered callees over the protected
//! client port (TS 24.229 5.2.6-5.2.7), responses back along Via, in-dialog requests, and the
//! reg-event subscription (RFC 3680).

pub(crate) mod message;
mod reginfo;
mod route;

use akagate_fastpath::ipc::Flow;

/// A request we forwarded: where its responses go (`None`: our own request, absorbed).
#[derive(Clone, Debug)]
pub(crate) struct Transaction {
    /// The flow the request arrived on.
    pub origin: Option<Flow>,
}

/// A call between two registered UEs, by IMPI key.
#[derive(Clone, Debug)]
pub(crate) struct Dialog {
    /// The UE that sent the initial INVITE.
    pub caller: String,
    /// The UE it was routed to.
    pub callee: String,
}
