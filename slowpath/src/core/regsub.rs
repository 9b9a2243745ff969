//! Proxy mode's subscription to the reg event at the S-CSCF (TS 24.229 5.2.3, RFC 3680):
//! after a UE's first 200 OK the P-CSCF subscribes to the state of its default public
//! identity, and acts on each NOTIFY (TS 24.229 5.2.5): a contact of ours the network
//! terminated (deactivated, rejected, unregistered, expired ...) ends the registration and
//! its SAs at once (network-initiated de-registration); a shorter lifetime shortens ours.

use akagate_proto::hash::KeyedMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use akagate_proto::ipc::WorkerCommand;

use crate::context::{Req, TimerKey};
use crate::core::Core;
use crate::proxy::RegEnd;
use crate::sip::transaction::{TxEvent, TxId};
use crate::sip::{HeaderKind, Message, MessageBuilder};
use crate::upstream::{parse_reginfo, same_uri, verdict_for, ContactVerdict};

/// The lifetime asked for a reg-event subscription (TS 24.229 5.2.3: 600 000 s; the S-CSCF
/// may grant less and ends it with the registration anyway).
const SUBSCRIPTION_EXPIRES: u32 = 600_000;

/// One reg-event subscription of ours: the dialog it created (RFC 6665 4.1.2, RFC 3261 12.1.2).
#[derive(Clone, Debug)]
struct RegSub {
    /// The registration (IMPI key) it watches.
    key: String,
    /// The identity subscribed to (the initial Request-URI and To).
    impu: String,
    /// Our From tag.
    from_tag: String,
    /// The notifier's tag, from its 2xx or its first NOTIFY.
    to_tag: Option<String>,
    /// The remote target: the 2xx's Contact (else the identity).
    target: Option<String>,
    /// The route set: the 2xx's Record-Route, reversed.
    route: Vec<String>,
    /// The CSeq of our last SUBSCRIBE in the dialog.
    cseq: u32,
    /// When the refresh is due.
    refresh_at: Option<Instant>,
}

/// What one of our SUBSCRIBE transactions is.
#[derive(Clone, Debug)]
struct SubTx {
    /// The subscription's Call-ID.
    call_id: String,
    /// A refresh inside the dialog (not the initial SUBSCRIBE).
    refresh: bool,
}

/// Our reg-event subscriptions at the core, by Call-ID, and their SUBSCRIBE transactions.
#[derive(Default)]
pub(crate) struct RegSubs {
    /// Call-ID -> the subscription.
    by_call_id: KeyedMap<String, RegSub>,
    /// Our SUBSCRIBE client transactions.
    by_tx: KeyedMap<TxId, SubTx>,
    /// Call-IDs of subscriptions whose registration ended here, newest last (at most
    /// [`ENDED_KEPT`]): the S-CSCF's terminating NOTIFY that follows a de-registration gets
    /// 200, not an error (RFC 6665 4.1.3 leaves the subscriber free to accept it).
    ended: VecDeque<String>,
}

/// How many ended subscriptions are remembered for their last NOTIFY.
const ENDED_KEPT: usize = 4096;

impl RegSubs {
    /// Whether `id` is one of our SUBSCRIBEs.
    pub fn owns(&self, id: TxId) -> bool {
        self.by_tx.contains_key(&id)
    }

    /// Forgets registration `key`'s subscriptions (their refresh timers find nothing).
    pub fn forget(&mut self, key: &str) {
        let ended = &mut self.ended;
        self.by_call_id.retain(|call_id, s| {
            let keep = s.key != key;
            if !keep {
                if ended.len() == ENDED_KEPT {
                    ended.pop_front();
                }
                ended.push_back(call_id.clone());
            }
            keep
        });
    }

    /// Whether `call_id` is a subscription of a registration that ended here.
    pub fn ended(&self, call_id: &str) -> bool {
        self.ended.iter().rev().any(|c| c == call_id)
    }

    /// Whether registration `key` has a subscription.
    pub fn watches(&self, key: &str) -> bool {
        self.by_call_id.values().any(|s| s.key == key)
    }

    /// The registration a NOTIFY with `call_id` is about.
    pub fn key_of(&self, call_id: &str) -> Option<&str> {
        self.by_call_id.get(call_id).map(|s| s.key.as_str())
    }
}

/// When to refresh a subscription granted for `secs` (TS 24.229 5.2.3: 600 s before it
/// expires when it was granted for more than 1200 s, else when half of it has passed).
fn refresh_after(secs: u32) -> Duration {
    let secs = u64::from(secs);
    Duration::from_secs(if secs > 1200 { secs - 600 } else { secs / 2 })
}

impl Core {
    /// Subscribes to the reg event of registration `key` (TS 24.229 5.2.3): SUBSCRIBE to its
    /// default public identity, from and asserting the P-CSCF, towards the first next hop
    /// (the I-CSCF finds the S-CSCF, as for REGISTER).
    pub(crate) fn subscribe_reg_event(
        &mut self,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(up) = self.shared.cfg.upstream.clone() else {
            return;
        };
        if self.reg_subs.watches(key) {
            return;
        }
        let impus = self.registrar.impus(key).unwrap_or_default();
        let Some(impu) = impus
            .iter()
            .find(|u| u.starts_with("sip:"))
            .or(impus.first())
            .cloned()
        else {
            return;
        };
        let sub = RegSub {
            key: key.to_string(),
            impu,
            from_tag: self.shared.token(6),
            to_tag: None,
            target: None,
            route: Vec::new(),
            cseq: 1,
            refresh_at: None,
        };
        let call_id = format!("{}@{}", self.shared.token(12), up.sent_by());
        self.send_subscribe(call_id, sub, false, now, out);
    }

    /// Sends `sub`'s SUBSCRIBE with CSeq `sub.cseq`: the initial one to the identity
    /// towards the first next hop, a refresh to the remote target along the route set
    /// (RFC 3261 12.2.1.1), with the dialog's tags.
    fn send_subscribe(
        &mut self,
        call_id: String,
        sub: RegSub,
        refresh: bool,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(up) = self.shared.cfg.upstream.clone() else {
            return;
        };
        let ours = format!("sip:{}", up.sent_by());
        // Our Contact names the shard, so the NOTIFYs of this dialog reach it (their
        // Request-URI, RFC 6665 4.1.2.3, RFC 3261 12.2.1.1).
        let contact = format!("<{ours}{}>", self.shared.shard_param());
        let branch = self.shared.branch();
        let ruri = sub.target.clone().unwrap_or_else(|| sub.impu.clone());
        let to = match &sub.to_tag {
            Some(tag) => format!("<{}>;tag={tag}", sub.impu),
            None => format!("<{}>", sub.impu),
        };
        let build = |transport: &str| {
            let mut b = MessageBuilder::request("SUBSCRIBE", &ruri).header(
                "Via",
                &format!("SIP/2.0/{transport} {};branch={branch};rport", up.sent_by()),
            );
            for r in &sub.route {
                b = b.header("Route", r);
            }
            b.header("Max-Forwards", "70")
                .header("From", &format!("<{ours}>;tag={}", sub.from_tag))
                .header("To", &to)
                .header("Call-ID", &call_id)
                .header("CSeq", &format!("{} SUBSCRIBE", sub.cseq))
                .header("Event", "reg")
                .header("Expires", &SUBSCRIPTION_EXPIRES.to_string())
                .header("Accept", "application/reginfo+xml")
                .header("Contact", &contact)
                .header("P-Asserted-Identity", &format!("<{ours}>"))
                .build()
        };
        let udp = build("UDP");
        let flow = match refresh {
            false => up.flow_to(self.shared.hops.preferred(&up.next_hops, now), udp.len()),
            true => up.flow_for(Some(sub.route.first().unwrap_or(&ruri)), udp.len()),
        };
        let Some(flow) = flow else {
            return;
        };
        let bytes = match flow.proto {
            akagate_proto::ipc::Transport::Udp => udp,
            akagate_proto::ipc::Transport::Tcp => build("TCP"),
        };
        if let Some(id) = self.shared.send_request(bytes, flow, now, out) {
            let tx = SubTx {
                call_id: call_id.clone(),
                refresh,
            };
            self.reg_subs.by_tx.insert(id, tx);
            self.reg_subs.by_call_id.insert(call_id, sub);
        }
    }

    /// The refresh timer of subscription `call_id`: a SUBSCRIBE inside its dialog, unless
    /// the subscription (or its registration) is gone.
    pub(crate) fn refresh_reg_sub(
        &mut self,
        call_id: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(mut sub) = self.reg_subs.by_call_id.remove(call_id) else {
            return;
        };
        if self.registrar.impi(&sub.key).is_none() {
            return;
        }
        sub.cseq = sub.cseq.saturating_add(1);
        sub.refresh_at = None;
        self.shared.stats.core_reg_subscribe_refreshes += 1;
        self.send_subscribe(call_id.to_string(), sub, true, now, out);
    }

    /// A transaction event of one of our SUBSCRIBEs. A 2xx completes the dialog (the
    /// notifier's tag, Contact and Record-Route) and arms the refresh at the granted
    /// expiry; a failure (non-2xx, timeout) is counted and the subscription forgotten — the
    /// registration stays (the S-CSCF still holds it, we only lose its network-initiated
    /// events) — except that a failed refresh starts a new subscription once (RFC 6665
    /// 4.1.2.2: the notifier may have lost the dialog, 481).
    pub(crate) fn on_reg_sub_event(
        &mut self,
        id: TxId,
        ev: TxEvent,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let bytes = match ev {
            TxEvent::Response(bytes) => bytes,
            TxEvent::Timeout => Vec::new(),
            TxEvent::Terminated => {
                self.reg_subs.by_tx.remove(&id);
                self.shared.txs.remove(&id);
                return;
            }
        };
        let Some(tx) = self.reg_subs.by_tx.get(&id).cloned() else {
            return;
        };
        let msg = Message::parse(&bytes).ok();
        match msg.as_ref().and_then(|m| m.status_code()) {
            Some(code) if code < 200 => return,
            Some(200..=299) => {
                if let Some(m) = msg.as_ref() {
                    self.reg_sub_accepted(&tx.call_id, m, now);
                }
                return;
            }
            _ => {}
        }
        self.shared.stats.core_reg_subscribe_failures += 1;
        tracing::warn!("reg-event SUBSCRIBE {} to the core failed", tx.call_id);
        let Some(sub) = self.reg_subs.by_call_id.remove(&tx.call_id) else {
            return;
        };
        if tx.refresh && self.registrar.impi(&sub.key).is_some() {
            self.subscribe_reg_event(&sub.key, now, out);
        }
    }

    /// The 2xx to our SUBSCRIBE `call_id`: the dialog's remote tag, target and route set
    /// (the first 2xx sets them, RFC 3261 12.1.2), and the refresh timer at what was granted.
    fn reg_sub_accepted(&mut self, call_id: &str, msg: &Message<'_>, now: Instant) {
        let Some(sub) = self.reg_subs.by_call_id.get_mut(call_id) else {
            return;
        };
        if sub.to_tag.is_none() {
            sub.to_tag = msg
                .to_header()
                .ok()
                .and_then(|t| t.tag().map(str::to_string));
        }
        if sub.target.is_none() {
            sub.target = msg.contacts().find_map(|c| match c {
                Ok(crate::sip::Contact::Addr(a)) => Some(a.uri.raw.to_string()),
                _ => None,
            });
            let mut route: Vec<String> = msg
                .list_values(HeaderKind::RecordRoute)
                .filter_map(Result::ok)
                .map(str::to_string)
                .collect();
            route.reverse();
            sub.route = route;
        }
        let granted = msg
            .expires()
            .ok()
            .flatten()
            .unwrap_or(SUBSCRIPTION_EXPIRES)
            .min(SUBSCRIPTION_EXPIRES);
        if granted == 0 {
            // RFC 6665 4.1.2.1: a fetch; the terminating NOTIFY follows.
            return;
        }
        let previous = sub.refresh_at;
        let at = now + refresh_after(granted);
        sub.refresh_at = Some(at);
        let key = TimerKey::RegSubRefresh(call_id.into());
        self.shared.arm(key, previous, Some(at));
    }

    /// A NOTIFY of one of our subscriptions, for registration `key`: 200 OK, then the
    /// registration follows what the network says of its contact (TS 24.229 5.2.5.1).
    /// A body that is not reginfo gets 400 and changes nothing.
    pub(crate) fn on_reg_notify(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        let regs = match parse_reginfo(msg.body()) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("reg-event NOTIFY for {key} refused: {e}");
                return self.shared.respond(req, 400, "Bad reginfo", &[], now, out);
            }
        };
        self.shared.respond(req, 200, "OK", &[], now, out);
        if let (Ok(cid), Ok(from)) = (msg.call_id(), msg.from_header()) {
            if let Some(sub) = self.reg_subs.by_call_id.get_mut(cid) {
                if sub.to_tag.is_none() {
                    sub.to_tag = from.tag().map(str::to_string);
                }
            }
        }
        let terminated = msg.header_by_name("Subscription-State").is_some_and(|s| {
            s.trim_start()
                .to_ascii_lowercase()
                .starts_with("terminated")
        });
        if terminated {
            if let Ok(cid) = msg.call_id() {
                self.reg_subs.by_call_id.remove(cid);
            }
        }
        let Some(contact) = self.registrar.binding(key).map(|b| b.contact.to_string()) else {
            return;
        };
        let verdict = regs
            .iter()
            .flat_map(|r| r.contacts.iter())
            .find(|c| same_uri(&c.uri, &contact))
            .map(|c| c.uri.clone())
            .map_or(ContactVerdict::NotMentioned, |uri| verdict_for(&regs, &uri));
        match verdict {
            // A REGISTER of this UE is on its way through us (a de-registration whose 200
            // has not come back yet, the core's NOTIFY having overtaken it on another
            // connection): its answer decides, and its 200 must still reach the UE through
            // the SAs.
            ContactVerdict::Ended(why) if self.relay.relaying_for(key) => {
                tracing::debug!("reg-event for {key} ({why}) while its REGISTER is relayed");
            }
            ContactVerdict::Ended(why) => {
                tracing::info!("network de-registered {key} ({why})");
                self.shared.stats.core_deregistrations += 1;
                self.on_registration_ending(key, RegEnd::Deactivated, now, out);
                self.drop_registration(key, out);
                self.relay.forget(key);
                self.reg_subs.forget(key);
            }
            ContactVerdict::Active(Some(secs)) => {
                let at = now + Duration::from_secs(u64::from(secs));
                let later = self
                    .registrar
                    .binding(key)
                    .is_some_and(|b| b.expires_at > at);
                if later {
                    self.registrar.refresh(key, None, at);
                    self.rearm(key);
                }
            }
            ContactVerdict::Active(None) | ContactVerdict::NotMentioned => {}
        }
    }
}

/// Whether `msg` is a reg-event NOTIFY.
pub(crate) fn is_reg_notify(msg: &Message<'_>) -> bool {
    msg.method() == Some("NOTIFY")
        && msg.header(HeaderKind::Event).is_some_and(|e| {
            e.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("reg"))
        })
}
