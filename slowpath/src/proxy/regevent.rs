//! The reg event package (RFC 3680, TS 24.229 5.2.3 / 5.4.2.1.2) for a UE's own
//! registration: SUBSCRIBE answered 200 and a full-state NOTIFY, refreshes and unsubscribes
//! within the subscription dialog, and a NOTIFY on every change of the registration
//! (refreshed, de-registered, expired) with the `version` counting up from 0.

use akagate_proto::ipc::WorkerCommand;
use std::time::{Duration, Instant};

use super::reginfo::{reginfo_full, ContactEvent};
use super::transport::{host, own_request};
use super::Proxy;
use super::{Own, RegEnd};
use crate::context::{Cx, Req, Shared};
use crate::sip::{response_to, HeaderKind, MessageBuilder};

/// One reg-event subscription: a dialog in which we are the notifier (RFC 6665 4.2).
#[derive(Clone, Debug)]
pub(crate) struct RegSubscription {
    /// The subscription dialog's Call-ID.
    pub call_id: String,
    /// Our tag (To of the 200, From of every NOTIFY).
    pub our_tag: String,
    /// The IMPU subscribed to (the SUBSCRIBE's Request-URI).
    pub impu: String,
    /// The subscriber's From (To of every NOTIFY).
    pub subscriber: String,
    /// The subscriber's remote target (Contact of the SUBSCRIBE).
    pub target: String,
    /// NOTIFYs sent so far: the next one has version `notifies` (RFC 3680 5.2) and CSeq
    /// `notifies + 1`.
    pub notifies: u32,
    /// When the subscription lapses.
    pub expires_at: Instant,
}

/// The URI of a SUBSCRIBE's request (`sip:User@Host;x` -> `sip:user@host`).
fn identity_key(uri: &str) -> String {
    uri.split([';', '?'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// How a NOTIFY leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// In a client transaction (the registration stays: the answer can come back).
    Transaction,
    /// Without one: the registration's SAs are removed right after it.
    Last,
}

impl Proxy {
    /// SUBSCRIBE to the UE's own reg event (TS 24.229 5.2.3 sends it to the S-CSCF; here the
    /// P-CSCF is the registrar): 200 OK, then a full-state NOTIFY over port_pc. A SUBSCRIBE
    /// with our tag refreshes the subscription or, with `Expires: 0`, ends it (RFC 6665
    /// 4.2.1.2, 4.2.1.4); one with an unknown tag gets 481.
    pub(crate) fn reg_subscribe(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        // Every new server transaction gets a final response, or it would never end.
        let Some((impus, left)) = cx.registrar.binding(key).map(|b| {
            (
                b.impus.to_vec(),
                b.expires_at.saturating_duration_since(now).as_secs(),
            )
        }) else {
            return cx.shared.respond(req, 403, "Forbidden", &[], now, out);
        };
        let uri = msg.request_uri().unwrap_or_default();
        if !impus.iter().any(|u| identity_key(u) == identity_key(uri)) {
            return cx.shared.respond(req, 403, "Forbidden", &[], now, out);
        }
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let to_tag = msg
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let existing = to_tag.as_ref().map(|tag| {
            self.reg_subs
                .get(key)
                .and_then(|v| v.iter().find(|s| s.call_id == call_id && &s.our_tag == tag))
                .map(|s| s.our_tag.clone())
        });
        let our_tag = match existing {
            None => cx.shared.token(8),
            Some(Some(tag)) => tag,
            // RFC 6665 4.2.1.2: a refresh of a subscription we do not have.
            Some(None) => {
                return cx
                    .shared
                    .respond(req, 481, "Subscription Does Not Exist", &[], now, out)
            }
        };
        let expires = msg
            .expires()
            .ok()
            .flatten()
            .map_or(600_000, u64::from)
            .min(left);
        let Some((set, _)) = self.active_of(cx, key) else {
            return;
        };
        let Ok(ok) = response_to(msg, 200, "OK", Some(&our_tag)) else {
            return;
        };
        let ok = ok.header("Expires", &expires.to_string()).header(
            "Contact",
            &format!("<sip:{}:{}>", host(set.local), set.port_ps),
        );
        cx.shared.send_response(req.tx, ok.build(), now, out);

        let reg_contact = cx
            .registrar
            .binding(key)
            .map(|b| b.contact.to_string())
            .unwrap_or_default();
        let target = msg
            .contacts()
            .next()
            .and_then(Result::ok)
            .and_then(|c| c.addr().map(|a| a.uri.raw.to_string()))
            .unwrap_or(reg_contact);
        let subs = self.reg_subs.entry(key.to_string()).or_default();
        if !subs.iter().any(|s| s.call_id == call_id) {
            subs.push(RegSubscription {
                call_id: call_id.clone(),
                our_tag,
                impu: uri.to_string(),
                subscriber: msg.header(HeaderKind::From).unwrap_or_default().to_string(),
                target,
                notifies: 0,
                expires_at: now,
            });
        }
        if let Some(sub) = self.sub_mut(key, &call_id) {
            sub.expires_at = now + Duration::from_secs(expires);
        }
        if expires == 0 {
            // RFC 6665 4.2.1.4: unsubscribing gets a final NOTIFY.
            let Some(sub) = self.take_sub(key, &call_id) else {
                return;
            };
            let state = "terminated;reason=timeout".to_string();
            self.send_notify(
                cx,
                key,
                sub,
                ContactEvent::Registered,
                state,
                Delivery::Transaction,
                now,
                out,
            );
        } else {
            let state = format!("active;expires={expires}");
            if let Some(sub) = self.sub_mut(key, &call_id).cloned() {
                self.send_notify(
                    cx,
                    key,
                    sub,
                    ContactEvent::Registered,
                    state,
                    Delivery::Transaction,
                    now,
                    out,
                );
            }
        }
    }

    fn sub_mut(&mut self, key: &str, call_id: &str) -> Option<&mut RegSubscription> {
        self.reg_subs
            .get_mut(key)?
            .iter_mut()
            .find(|s| s.call_id == call_id)
    }

    /// Removes subscription `call_id` of `key` and returns it.
    fn take_sub(&mut self, key: &str, call_id: &str) -> Option<RegSubscription> {
        let subs = self.reg_subs.get_mut(key)?;
        let i = subs.iter().position(|s| s.call_id == call_id)?;
        let sub = subs.remove(i);
        if subs.is_empty() {
            self.reg_subs.remove(key);
        }
        Some(sub)
    }

    /// Ends subscription `call_id` of `key` (RFC 6665 4.2.2: its NOTIFY failed for good).
    pub(crate) fn drop_subscription(&mut self, key: &str, call_id: &str) {
        self.take_sub(key, call_id);
    }

    /// Registration `key` was refreshed: every live subscription gets a NOTIFY with the
    /// contact `event="refreshed"` (RFC 3680 5.1); lapsed subscriptions are dropped.
    pub(crate) fn notify_refreshed(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(subs) = self.reg_subs.get_mut(key) else {
            return;
        };
        subs.retain(|s| s.expires_at > now);
        let subs = subs.clone();
        for sub in subs {
            let left = sub.expires_at.saturating_duration_since(now).as_secs();
            let state = format!("active;expires={left}");
            self.send_notify(
                cx,
                key,
                sub,
                ContactEvent::Refreshed,
                state,
                Delivery::Transaction,
                now,
                out,
            );
        }
    }

    /// Registration `key` ends: a last NOTIFY to every live subscription with the contact
    /// and registration `terminated` (`event="unregistered"` / `"expired"`) and
    /// `Subscription-State: terminated;reason=noresource` (RFC 6665 4.1.3: the monitored
    /// resource is gone). They leave before the SAs are removed; the subscriptions end.
    pub(crate) fn notify_ended(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        why: RegEnd,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(subs) = self.reg_subs.remove(key) else {
            return;
        };
        let event = match why {
            RegEnd::Deregistered => ContactEvent::Unregistered,
            RegEnd::Expired => ContactEvent::Expired,
            RegEnd::Deactivated => ContactEvent::Deactivated,
        };
        // A subscription granted up to the registration's end lapses with it: it still
        // gets this last NOTIFY.
        for sub in subs.into_iter().filter(|s| s.expires_at >= now) {
            let state = "terminated;reason=noresource".to_string();
            self.send_notify(cx, key, sub, event, state, Delivery::Last, now, out);
        }
    }

    /// Builds and sends the next NOTIFY of `sub` (its counter is advanced in the stored
    /// copy, if any).
    #[allow(clippy::too_many_arguments)]
    fn send_notify(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        sub: RegSubscription,
        event: ContactEvent,
        state: String,
        delivery: Delivery,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some((impus, contact, left, set, proto)) = cx.registrar.binding(key).map(|b| {
            (
                b.impus.to_vec(),
                b.contact.to_string(),
                b.expires_at.saturating_duration_since(now).as_secs(),
                b.set.clone(),
                b.proto,
            )
        }) else {
            return;
        };
        let version = sub.notifies;
        if let Some(s) = self.sub_mut(key, &sub.call_id) {
            s.notifies = s.notifies.saturating_add(1);
        }
        let body = reginfo_full(version, &impus, &contact, event, left);
        let branch = cx.shared.branch();
        let ours = host(set.local);
        let port_ps = set.port_ps;
        let (bytes, flow) = own_request(&set, proto, &branch, |via| {
            MessageBuilder::request("NOTIFY", &sub.target)
                .header("Via", via)
                .header("Max-Forwards", "70")
                .header("From", &format!("<{}>;tag={}", sub.impu, sub.our_tag))
                .header("To", &sub.subscriber)
                .header("Call-ID", &sub.call_id)
                .header("CSeq", &format!("{} NOTIFY", version.saturating_add(1)))
                .header("Contact", &format!("<sip:{ours}:{port_ps}>"))
                .header("Event", "reg")
                .header("Subscription-State", &state)
                .body("application/reginfo+xml", body.as_bytes())
                .build()
        });
        match delivery {
            Delivery::Transaction => {
                let own = Own::Notify {
                    key: key.to_string(),
                    call_id: sub.call_id.clone(),
                };
                self.send_own(cx, own, bytes, flow, branch, now, out);
            }
            Delivery::Last => Shared::send_direct(out, flow, bytes, true),
        }
    }
}
