//! Proxy mode's subscription to the reg event at the S-CSCF (TS 24.229 5.2.3, RFC 3680):
//! after a UE's first 200 OK the P-CSCF subscribes to the state of its default public
//! identity, and acts on each NOTIFY (TS 24.229 5.2.5): a contact of ours the network
//! terminated (deactivated, rejected, unregistered, expired ...) ends the registration and
//! its SAs at once (network-initiated de-registration); a shorter lifetime shortens ours.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use akagate_proto::ipc::WorkerCommand;

use crate::context::Req;
use crate::core::Core;
use crate::proxy::RegEnd;
use crate::sip::transaction::{TxEvent, TxId};
use crate::sip::{HeaderKind, Message, MessageBuilder};
use crate::upstream::{parse_reginfo, same_uri, verdict_for, ContactVerdict};

/// The lifetime asked for a reg-event subscription (TS 24.229 5.2.3: 600 000 s; the S-CSCF
/// may grant less and ends it with the registration anyway).
const SUBSCRIPTION_EXPIRES: u32 = 600_000;

/// Our reg-event subscriptions at the core, by Call-ID, and their SUBSCRIBE transactions.
#[derive(Default)]
pub(crate) struct RegSubs {
    /// Call-ID -> the registration (IMPI key) it watches.
    by_call_id: HashMap<String, String>,
    /// Our SUBSCRIBE client transactions -> their Call-ID.
    by_tx: HashMap<TxId, String>,
}

impl RegSubs {
    /// Whether `id` is one of our SUBSCRIBEs.
    pub fn owns(&self, id: TxId) -> bool {
        self.by_tx.contains_key(&id)
    }

    /// Forgets registration `key`'s subscriptions.
    pub fn forget(&mut self, key: &str) {
        self.by_call_id.retain(|_, k| k != key);
    }

    /// Whether registration `key` has a subscription.
    pub fn watches(&self, key: &str) -> bool {
        self.by_call_id.values().any(|k| k == key)
    }

    /// The registration a NOTIFY with `call_id` is about.
    pub fn key_of(&self, call_id: &str) -> Option<&str> {
        self.by_call_id.get(call_id).map(String::as_str)
    }
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
        let ours = format!("sip:{}", up.sent_by());
        let call_id = format!("{}@{}", self.shared.token(12), up.sent_by());
        let branch = self.shared.branch();
        let tag = self.shared.token(6);
        let build = |transport: &str| {
            MessageBuilder::request("SUBSCRIBE", &impu)
                .header(
                    "Via",
                    &format!("SIP/2.0/{transport} {};branch={branch};rport", up.sent_by()),
                )
                .header("Max-Forwards", "70")
                .header("From", &format!("<{ours}>;tag={tag}"))
                .header("To", &format!("<{impu}>"))
                .header("Call-ID", &call_id)
                .header("CSeq", "1 SUBSCRIBE")
                .header("Event", "reg")
                .header("Expires", &SUBSCRIPTION_EXPIRES.to_string())
                .header("Accept", "application/reginfo+xml")
                .header("Contact", &format!("<{ours}>"))
                .header("P-Asserted-Identity", &format!("<{ours}>"))
                .build()
        };
        let udp = build("UDP");
        let Some(flow) = up.flow_to(0, udp.len()) else {
            return;
        };
        let bytes = match flow.proto {
            akagate_proto::ipc::Transport::Udp => udp,
            akagate_proto::ipc::Transport::Tcp => build("TCP"),
        };
        if let Some(id) = self.shared.send_request(bytes, flow, now, out) {
            self.reg_subs.by_tx.insert(id, call_id.clone());
            self.reg_subs.by_call_id.insert(call_id, key.to_string());
        }
    }

    /// A transaction event of one of our SUBSCRIBEs: a failure (non-2xx, timeout) is
    /// counted and the subscription forgotten; the registration stays (the S-CSCF still
    /// holds it, we only lose its network-initiated events).
    pub(crate) fn on_reg_sub_event(&mut self, id: TxId, ev: TxEvent) {
        let failed = match ev {
            TxEvent::Response(bytes) => Message::parse(&bytes)
                .ok()
                .and_then(|m| m.status_code())
                .is_some_and(|c| c >= 300),
            TxEvent::Timeout => true,
            TxEvent::Terminated => {
                self.reg_subs.by_tx.remove(&id);
                self.shared.txs.remove(&id);
                return;
            }
        };
        if failed {
            self.shared.stats.core_reg_subscribe_failures += 1;
            if let Some(cid) = self.reg_subs.by_tx.get(&id).cloned() {
                tracing::warn!("reg-event SUBSCRIBE {cid} to the core failed");
                self.reg_subs.by_call_id.remove(&cid);
            }
        }
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
