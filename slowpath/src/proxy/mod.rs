//! The proxy: requests from registered UEs routed to registered callees over the protected
//! client port (TS 24.229 5.2.6-5.2.7) through client transactions, responses back through
//! the server transactions, hop-by-hop CANCEL, in-dialog requests, the reg-event
//! subscription (RFC 3680), OPTIONS keep-alives and the release of a departing UE's dialogs.

mod core_route;
mod dialog;
mod failure;
mod keepalive;
mod regevent;
mod reginfo;
mod reject;
mod route;
mod transport;

pub(crate) use dialog::{Dialog, DialogTable};
pub(crate) use keepalive::KeepAlive;
pub(crate) use regevent::RegSubscription;
pub(crate) use reject::raw_error_response;
pub(crate) use transport::{host, received_note};

use akagate_proto::hash::KeyedMap;
use std::time::Instant;

use akagate_proto::ipc::Flow;

use crate::context::Cx;
use crate::sip::transaction::TxId;

/// The proxy's state: dialogs between registered UEs, the client transactions it started,
/// 2xx relays, reg-event subscriptions and keep-alives. Its handlers take the core's
/// [`Cx`](crate::context::Cx) (transactions, timers, registrar) as a parameter.
#[derive(Default)]
pub(crate) struct Proxy {
    /// Call-ID -> the dialog between two registered parties (indexed by party).
    dialogs: DialogTable,
    /// reg-event subscriptions by IMPI key of the registration watched.
    reg_subs: KeyedMap<String, Vec<RegSubscription>>,
    /// Keep-alive state by IMPI key.
    keepalives: KeyedMap<String, KeepAlive>,
    /// Client transactions the proxy started, with the server transaction they serve.
    forwarded: KeyedMap<TxId, Forwarded>,
    /// Server transaction -> the client transaction forwarding it (for CANCEL).
    forwarded_by_server: KeyedMap<TxId, TxId>,
    /// Our branch of an INVITE answered 2xx -> the caller's flow, for 2xx retransmissions.
    accepted: KeyedMap<String, Flow>,
    /// Proxy mode: Call-ID -> the registration on our access side of a dialog through the
    /// core (in-dialog requests from the core find their UE by it).
    core_dialogs: CoreDialogs,
    /// Proxy mode: Call-ID -> the unprotected flow of an anonymous emergency session's
    /// caller (TS 24.229 5.2.10.4), for the requests of that dialog in both directions.
    anonymous_emergency: KeyedMap<String, Flow>,
    /// Registrations whose keep-alives failed too often, for the core to end.
    unreachable: Vec<String>,
}

impl Proxy {
    /// Number of dialogs (and INVITEs establishing one).
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// Number of live reg-event subscriptions.
    pub fn reg_subscriptions(&self) -> usize {
        self.reg_subs.values().map(Vec::len).sum()
    }

    /// When registration `key` last answered an OPTIONS keep-alive.
    pub fn last_seen(&self, key: &str) -> Option<Instant> {
        self.keepalives.get(key).and_then(|k| k.last_seen)
    }

    /// Registration `key` is gone: the dialogs it was part of are forgotten.
    /// Returns the other parties left with no dialog here (another shard's UEs among them
    /// need watching no longer).
    pub fn forget_dialogs_of(&mut self, key: &str) -> Vec<String> {
        self.core_dialogs.forget_key(key);
        self.dialogs.forget_party(key)
    }

    /// Forgets dialog `call_id`; a party of another shard left with no dialog here is
    /// watched no longer (its end concerns this shard no more).
    pub(crate) fn drop_dialog(&mut self, cx: &mut Cx<'_>, call_id: &str) -> Option<Dialog> {
        let d = self.dialogs.remove(call_id)?;
        for party in [&d.caller, &d.callee] {
            if !self.dialogs.involves(party) {
                cx.registrar.unwatch_remote(party);
            }
        }
        Some(d)
    }

    /// 2xx retransmissions on our branch `branch` are no longer relayed (RFC 3261 16.7).
    pub fn end_accepted(&mut self, branch: &str) {
        self.accepted.remove(branch);
    }
}

pub(crate) use crate::registrar::RegEnd;

/// Proxy mode's dialogs through the core: Call-ID -> the registration on our access side,
/// indexed by registration so its end forgets its own without a walk of all.
#[derive(Default)]
struct CoreDialogs {
    by_id: KeyedMap<String, String>,
    by_key: KeyedMap<String, Vec<String>>,
}

impl CoreDialogs {
    /// Dialog `call_id` belongs to registration `key`.
    fn insert(&mut self, call_id: String, key: String) {
        self.remove(&call_id);
        self.by_key
            .entry(key.clone())
            .or_default()
            .push(call_id.clone());
        self.by_id.insert(call_id, key);
    }

    /// The registration of dialog `call_id`.
    fn get(&self, call_id: &str) -> Option<&str> {
        self.by_id.get(call_id).map(String::as_str)
    }

    /// Dialog `call_id` ended.
    fn remove(&mut self, call_id: &str) {
        let Some(key) = self.by_id.remove(call_id) else {
            return;
        };
        if let Some(ids) = self.by_key.get_mut(&key) {
            ids.retain(|id| id != call_id);
            if ids.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    /// Registration `key` is gone, with its dialogs.
    fn forget_key(&mut self, key: &str) {
        for id in self.by_key.remove(key).unwrap_or_default() {
            self.by_id.remove(&id);
        }
    }
}

/// A request the P-CSCF itself originated towards a UE, and what its outcome updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Own {
    /// A reg-event NOTIFY of registration `key`'s subscription `call_id`.
    Notify {
        /// The IMPI key of the registration.
        key: String,
        /// The subscription's Call-ID.
        call_id: String,
    },
    /// An OPTIONS keep-alive to registration `key`.
    KeepAlive {
        /// The IMPI key of the registration.
        key: String,
    },
    /// A BYE releasing a dialog of a departing UE (TS 24.229 5.2.8.1.2).
    Bye,
}

/// A client transaction the proxy started.
#[derive(Clone, Debug)]
pub(crate) struct Forwarded {
    /// The server transaction whose request it forwards (`None`: a request of our own).
    pub server: Option<TxId>,
    /// What a request of our own was for (`None` for a forwarded request).
    pub own: Option<Own>,
    /// The request as sent (for a CANCEL, RFC 3261 9.1).
    pub request: Vec<u8>,
    /// Where it went.
    pub flow: Flow,
    /// Our Via branch.
    pub branch: String,
    /// True for INVITE.
    pub invite: bool,
    /// A dialog-creating request outside any dialog (its failure ends the dialog record).
    pub initial: bool,
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
    /// Sent over TCP to a UE registered over UDP only for its size: the largest request that
    /// may go over UDP instead if the connection cannot be opened (RFC 3261 18.1.1).
    pub udp_fallback: Option<usize>,
}

impl Forwarded {
    /// A client transaction for a request of our own (`own`) on `flow`.
    pub(crate) fn own(own: Own, request: Vec<u8>, flow: Flow, branch: String) -> Self {
        Forwarded {
            server: None,
            own: Some(own),
            request,
            flow,
            branch,
            invite: false,
            initial: false,
            provisional: false,
            cancel_pending: false,
            cancelled: false,
            timer_c: None,
            timer_c_fired: false,
            udp_fallback: None,
        }
    }

    /// A client transaction forwarding server transaction `server`'s request on `flow`.
    pub(crate) fn relayed(
        server: TxId,
        request: Vec<u8>,
        flow: Flow,
        branch: String,
        invite: bool,
    ) -> Self {
        Forwarded {
            server: Some(server),
            own: None,
            invite,
            ..Forwarded::own(Own::Bye, request, flow, branch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registration's end forgets its dialogs through the core, and only those.
    #[test]
    fn core_dialogs_are_forgotten_by_registration() {
        let mut d = CoreDialogs::default();
        d.insert("c1".into(), "a".into());
        d.insert("c2".into(), "a".into());
        d.insert("c3".into(), "b".into());
        d.remove("c2");
        assert_eq!(d.get("c2"), None);
        d.insert("c3".into(), "a".into());
        d.forget_key("a");
        assert_eq!((d.get("c1"), d.get("c3")), (None, None));
        assert!(d.by_key.is_empty() && d.by_id.is_empty());
        d.insert("c4".into(), "b".into());
        assert_eq!(d.get("c4"), Some("b"));
    }
}
