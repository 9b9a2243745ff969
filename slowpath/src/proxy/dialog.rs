//! Dialogs between registered UEs as the P-CSCF records them (RFC 3261 12, TS 24.229
//! 5.2.7.x): who called whom, the tags, remote targets, CSeq numbers and route sets it needs
//! to release a dialog itself with a BYE to both parties when one of them de-registers or
//! its registration expires (TS 24.229 5.2.8.1.2).

use akagate_proto::hash::KeyedMap;
use std::time::Instant;

use akagate_proto::ipc::{SaSet, Transport, WorkerCommand};

use super::transport::own_request;
use super::Proxy;
use super::{Forwarded, Own, RegEnd};
use crate::context::{Cx, Shared};
use crate::sip::{HeaderKind, Message, MessageBuilder};

/// The proxy's dialogs by Call-ID, indexed by party: a registration's end finds its own
/// dialogs without walking everyone's, so a storm of de-registrations at carrier scale costs
/// what it releases, not the number of calls up times the number of UEs leaving.
#[derive(Default)]
pub(crate) struct DialogTable {
    by_id: KeyedMap<String, Dialog>,
    /// Registration key -> Call-IDs of the dialogs it is caller or callee of.
    by_party: KeyedMap<String, Vec<String>>,
}

impl DialogTable {
    /// Number of dialogs (and INVITEs establishing one).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The dialog `call_id`.
    pub fn get(&self, call_id: &str) -> Option<&Dialog> {
        self.by_id.get(call_id)
    }

    /// The dialog `call_id`, to update (its parties never change).
    pub fn get_mut(&mut self, call_id: &str) -> Option<&mut Dialog> {
        self.by_id.get_mut(call_id)
    }

    /// Records dialog `call_id` (replacing one of the same Call-ID).
    pub fn insert(&mut self, call_id: String, dialog: Dialog) {
        self.remove(&call_id);
        for party in dialog.parties() {
            let ids = self.by_party.entry(party.to_string()).or_default();
            if !ids.contains(&call_id) {
                ids.push(call_id.clone());
            }
        }
        self.by_id.insert(call_id, dialog);
    }

    /// Forgets dialog `call_id`.
    pub fn remove(&mut self, call_id: &str) -> Option<Dialog> {
        let d = self.by_id.remove(call_id)?;
        for party in d.parties() {
            if let Some(ids) = self.by_party.get_mut(party) {
                ids.retain(|id| id != call_id);
                if ids.is_empty() {
                    self.by_party.remove(party);
                }
            }
        }
        Some(d)
    }

    /// The Call-IDs of the dialogs registration `key` is part of, in order.
    pub fn of_party(&self, key: &str) -> Vec<String> {
        let mut ids = self.by_party.get(key).cloned().unwrap_or_default();
        ids.sort();
        ids
    }

    /// Whether registration `key` is part of any dialog.
    pub fn involves(&self, key: &str) -> bool {
        self.by_party.contains_key(key)
    }

    /// Forgets every dialog registration `key` is part of; returns the other parties left
    /// with no dialog at all.
    pub fn forget_party(&mut self, key: &str) -> Vec<String> {
        let mut freed = Vec::new();
        for id in self.of_party(key) {
            if let Some(d) = self.remove(&id) {
                freed.extend(
                    d.parties()
                        .filter(|p| *p != key && !self.involves(p))
                        .map(str::to_string),
                );
            }
        }
        freed.sort();
        freed.dedup();
        freed
    }
}

/// A dialog (or an INVITE still establishing one) between two registered UEs, by IMPI key.
#[derive(Clone, Debug)]
pub(crate) struct Dialog {
    /// The UE that sent the initial request.
    pub caller: String,
    /// The UE it was routed to.
    pub callee: String,
    /// Created by INVITE (a session a BYE ends), not by SUBSCRIBE.
    pub session: bool,
    /// From of the initial request: the caller's URI and tag.
    pub caller_from: String,
    /// The caller's remote target (Contact URI of the initial request).
    pub caller_target: Option<String>,
    /// To of the 2xx: the callee's URI and tag. `None` while the dialog is not confirmed.
    pub callee_to: Option<String>,
    /// The callee's remote target (Contact URI of the 2xx).
    pub callee_target: Option<String>,
    /// Highest CSeq number the caller used in the dialog.
    pub caller_cseq: u32,
    /// Highest CSeq number the callee used in the dialog (0: none yet).
    pub callee_cseq: u32,
    /// Route set from us to the caller (Record-Route entries below ours), our entry removed.
    pub route_to_caller: Vec<String>,
    /// Route set from us to the callee (entries above ours, nearest first).
    pub route_to_callee: Vec<String>,
}

/// The first Contact URI of a message.
fn contact_target(msg: &Message<'_>) -> Option<String> {
    let c = msg.contacts().next()?.ok()?;
    Some(c.addr()?.uri.raw.to_string())
}

impl Dialog {
    /// Its two parties' registration keys (one, if a UE called itself).
    fn parties(&self) -> impl Iterator<Item = &str> {
        let callee = (self.callee != self.caller).then_some(self.callee.as_str());
        std::iter::once(self.caller.as_str()).chain(callee)
    }

    /// The record of an initial INVITE / SUBSCRIBE from `caller` routed to `callee`.
    pub(crate) fn new(caller: &str, callee: &str, msg: &Message<'_>) -> Self {
        Dialog {
            caller: caller.to_string(),
            callee: callee.to_string(),
            session: msg.method() == Some("INVITE"),
            caller_from: msg.header(HeaderKind::From).unwrap_or_default().to_string(),
            caller_target: contact_target(msg),
            callee_to: None,
            callee_target: None,
            caller_cseq: msg.cseq().map_or(0, |c| c.seq),
            callee_cseq: 0,
            route_to_caller: Vec::new(),
            route_to_callee: Vec::new(),
        }
    }

    /// Notes the CSeq number of an in-dialog request sent by `from_key` (RFC 3261 12.2.2:
    /// the remote sequence number only grows).
    pub(crate) fn note_cseq(&mut self, from_key: &str, seq: u32) {
        if from_key == self.caller {
            self.caller_cseq = self.caller_cseq.max(seq);
        } else {
            self.callee_cseq = self.callee_cseq.max(seq);
        }
    }

    /// The 2xx to the initial request confirms the dialog: the callee's tag, target and the
    /// route set (RFC 3261 12.1.2) split at our own Record-Route entry.
    pub(crate) fn confirm(&mut self, ok: &Message<'_>, ours: impl Fn(&str) -> bool) {
        self.callee_to = ok.header(HeaderKind::To).map(str::to_string);
        self.callee_target = contact_target(ok);
        let rr: Vec<String> = ok
            .list_values(HeaderKind::RecordRoute)
            .filter_map(Result::ok)
            .map(str::to_string)
            .collect();
        if let Some(i) = rr.iter().position(|r| ours(r)) {
            // Entries before ours were added by hops between us and the callee (the one
            // nearest to us last); entries after ours lie between us and the caller.
            self.route_to_callee = rr.iter().take(i).rev().cloned().collect();
            self.route_to_caller = rr.iter().skip(i + 1).cloned().collect();
        }
    }

    /// Whether the callee's 2xx arrived.
    pub(crate) fn confirmed(&self) -> bool {
        self.callee_to.is_some()
    }
}

/// One side of a dialog, as the BYE towards it is built.
struct ByeTo<'d> {
    target: &'d str,
    from: &'d str,
    to: &'d str,
    cseq: u32,
    route: &'d [String],
}

impl ByeTo<'_> {
    /// TS 24.229 5.2.8.1.2 / RFC 3261 12.2.1.1: Request-URI = the party's remote target,
    /// From / To as the other party would write them, the other party's next CSeq, the
    /// dialog's Route set and a Reason (RFC 3326).
    fn build(&self, via: &str, call_id: &str, reason: &str) -> Vec<u8> {
        let mut b = MessageBuilder::request("BYE", self.target)
            .header("Via", via)
            .header("Max-Forwards", "70");
        for r in self.route {
            b.push_header("Route", r);
        }
        b.header("From", self.from)
            .header("To", self.to)
            .header("Call-ID", call_id)
            .header("CSeq", &format!("{} BYE", self.cseq.saturating_add(1)))
            .header("Reason", reason)
            .build()
    }
}

impl Proxy {
    /// The active set and transport of registration `key`.
    pub(crate) fn active_of(&self, cx: &Cx<'_>, key: &str) -> Option<(SaSet, Transport)> {
        match cx.registrar.binding(key) {
            Some(b) => Some((b.set.clone(), b.proto)),
            // The other party of a dialog may be another shard's UE.
            None => cx.registrar.located(key).map(|l| (l.set.clone(), l.proto)),
        }
    }

    /// TS 24.229 5.2.8.1.2: registration `key` ends (`why`), so every dialog it is part of
    /// is released: a BYE to both parties over their protected client flows. The departing
    /// UE's BYE goes without a transaction (its SAs are removed right after, so no answer
    /// can come back); the other party's is a client transaction. A call still ringing is
    /// cancelled towards the callee and answered to the caller (RFC 3261 9.1, 16.10).
    pub(crate) fn release_dialogs(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        why: RegEnd,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let ids = self.dialogs.of_party(key);
        let reason = match why {
            RegEnd::Deregistered => "SIP;cause=480;text=\"De-registered\"",
            RegEnd::Expired => "SIP;cause=480;text=\"Registration expired\"",
            RegEnd::Deactivated => "SIP;cause=480;text=\"Registration deactivated\"",
        };
        for call_id in ids {
            let Some(d) = self.drop_dialog(cx, &call_id) else {
                continue;
            };
            if !d.session {
                continue; // a subscription dialog: nothing to release with BYE
            }
            if !d.confirmed() {
                self.abort_early(cx, &call_id, key == d.callee, now, out);
                continue;
            }
            cx.shared.stats.dialogs_released += 1;
            let Some(callee_to) = d.callee_to.as_deref() else {
                continue;
            };
            let to_callee = d.callee_target.as_deref().map(|target| ByeTo {
                target,
                from: &d.caller_from,
                to: callee_to,
                cseq: d.caller_cseq,
                route: &d.route_to_callee,
            });
            let to_caller = d.caller_target.as_deref().map(|target| ByeTo {
                target,
                from: callee_to,
                to: &d.caller_from,
                cseq: d.callee_cseq,
                route: &d.route_to_caller,
            });
            for (party, bye) in [(&d.callee, to_callee), (&d.caller, to_caller)] {
                let (Some(bye), Some((set, proto))) = (bye, self.active_of(cx, party)) else {
                    continue;
                };
                let branch = cx.shared.branch();
                let (bytes, flow) =
                    own_request(&set, proto, &branch, |via| bye.build(via, &call_id, reason));
                if party == key {
                    Shared::send_direct(out, flow, bytes, true);
                } else {
                    self.send_own(cx, Own::Bye, bytes, flow, branch, now, out);
                }
            }
        }
    }

    /// An INVITE of dialog `call_id` that has no 2xx yet, when one party leaves: CANCEL the
    /// branch to the callee (RFC 3261 9.1, sent once it has a provisional response) and
    /// answer the caller 480 if the callee left, 487 if the caller did (RFC 3261 9.2).
    fn abort_early(
        &mut self,
        cx: &mut Cx<'_>,
        call_id: &str,
        callee_left: bool,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let clients: Vec<_> = self
            .forwarded
            .iter()
            .filter(|(_, f)| f.invite && f.initial && request_call_id(f) == Some(call_id))
            .map(|(id, f)| (*id, f.server))
            .collect();
        for (client, server) in clients {
            self.cancel_client(cx, client, now, out);
            if let Some(server) = server {
                let (code, reason) = if callee_left {
                    (480, "Temporarily Unavailable")
                } else {
                    (487, "Request Terminated")
                };
                self.fail_server(cx, server, code, reason, now, out);
            }
        }
    }

    /// Starts a client transaction for a request of our own and remembers what it is for.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_own(
        &mut self,
        cx: &mut Cx<'_>,
        own: Own,
        bytes: Vec<u8>,
        flow: akagate_proto::ipc::Flow,
        branch: String,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> Option<crate::sip::transaction::TxId> {
        let client = cx.shared.send_request(bytes.clone(), flow, now, out)?;
        self.forwarded
            .insert(client, Forwarded::own(own, bytes, flow, branch));
        Some(client)
    }
}

/// The Call-ID of a forwarded request.
fn request_call_id(f: &Forwarded) -> Option<&str> {
    let raw = f.request.as_slice();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(raw.get(..end)?).ok()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        (HeaderKind::from_name(n.trim()) == HeaderKind::CallId).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_set_splits_at_our_record_route() {
        let invite = Message::parse(b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContact: <sip:a@1.2.3.4:5>\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut d = Dialog::new("a", "b", &invite);
        assert_eq!(d.caller_cseq, 7);
        assert_eq!(d.caller_target.as_deref(), Some("sip:a@1.2.3.4:5"));
        assert!(!d.confirmed());
        let ok = Message::parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nRecord-Route: <sip:p2;lr>, <sip:p1;lr>\r\nRecord-Route: <sip:us;lr>, <sip:q1;lr>\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContact: <sip:b@5.6.7.8:9>\r\nContent-Length: 0\r\n\r\n").unwrap();
        d.confirm(&ok, |r| r.contains("sip:us;"));
        assert_eq!(d.callee_to.as_deref(), Some("<sip:b@x>;tag=2"));
        assert_eq!(d.callee_target.as_deref(), Some("sip:b@5.6.7.8:9"));
        assert_eq!(d.route_to_callee, ["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(d.route_to_caller, ["<sip:q1;lr>"]);
        d.note_cseq("b", 3);
        d.note_cseq("a", 5);
        assert_eq!((d.caller_cseq, d.callee_cseq), (7, 3));
    }

    /// Issue 10: a registration's dialogs are found through the party index, which follows
    /// every insert and removal; forgetting a party names the others left with no dialog.
    #[test]
    fn the_party_index_follows_the_dialogs() {
        let invite = Message::parse(b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContact: <sip:a@1.2.3.4:5>\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut t = DialogTable::default();
        t.insert("c1".into(), Dialog::new("a", "b", &invite));
        t.insert("c2".into(), Dialog::new("c", "a", &invite));
        t.insert("c3".into(), Dialog::new("b", "d", &invite));
        t.insert("c4".into(), Dialog::new("e", "e", &invite));
        assert_eq!(t.len(), 4);
        assert_eq!(t.of_party("a"), ["c1", "c2"]);
        assert_eq!(t.of_party("b"), ["c1", "c3"]);
        assert_eq!(t.of_party("e"), ["c4"]);
        assert!(t.remove("c3").is_some());
        assert!(!t.involves("d"));
        assert_eq!(t.of_party("b"), ["c1"]);
        // Same Call-ID again: the old record's parties are unindexed.
        t.insert("c1".into(), Dialog::new("a", "f", &invite));
        assert!(!t.involves("b"));
        assert_eq!(t.forget_party("a"), ["c", "f"]);
        assert_eq!(t.len(), 1);
        assert!(t.of_party("a").is_empty());
        assert!(t.remove("c4").is_some());
        assert!(!t.involves("e"));
        assert_eq!(t.len(), 0);
    }
}
