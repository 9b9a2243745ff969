//! OPTIONS keep-alives (RFC 3261 11): at `CoreConfig::keepalive_interval` the P-CSCF asks
//! each registered UE whether it is still reachable, from port_pc through the SA to its
//! port_us, like every request it originates. Any final answer but 408 / 503 proves the UE
//! alive (RFC 3261 11.2: a UA answers OPTIONS as it would an INVITE, so 486 still means
//! "reachable"); a timeout (timer F), 408, 503 or a failed connection counts as a failure.

use akagate_proto::ipc::WorkerCommand;
use std::time::Instant;

use super::transport::own_request;
use super::Own;
use super::Proxy;
use crate::context::{Cx, TimerKey};
use crate::sip::MessageBuilder;

/// Keep-alive state of one registration.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeepAlive {
    /// The deadline of the next OPTIONS in the core's timer set.
    pub armed: Option<Instant>,
    /// When the UE last answered an OPTIONS.
    pub last_seen: Option<Instant>,
    /// An OPTIONS is still waiting for its answer (no second one is sent meanwhile).
    pub outstanding: bool,
    /// Consecutive failed keep-alives.
    pub failures: u32,
}

impl Proxy {
    /// The registrations whose keep-alives failed `keepalive-failures` times in a row since
    /// the last call: the core ends them.
    pub(crate) fn take_unreachable(&mut self) -> Vec<String> {
        std::mem::take(&mut self.unreachable)
    }

    /// Arms registration `key`'s keep-alive one interval from `now`, unless it is armed or
    /// keep-alives are off.
    pub(crate) fn arm_keepalive(&mut self, cx: &mut Cx<'_>, key: &str, now: Instant) {
        let Some(every) = cx.shared.cfg.keepalive_interval else {
            return;
        };
        let ka = self.keepalives.entry(key.to_string()).or_default();
        if ka.armed.is_some() {
            return;
        }
        let at = now + every;
        ka.armed = Some(at);
        cx.shared
            .arm(TimerKey::KeepAlive(key.into()), None, Some(at));
    }

    /// Stops registration `key`'s keep-alives and forgets their state.
    pub(crate) fn forget_keepalive(&mut self, cx: &mut Cx<'_>, key: &str) {
        if let Some(ka) = self.keepalives.remove(key) {
            cx.shared
                .arm(TimerKey::KeepAlive(key.into()), ka.armed, None);
        }
    }

    /// The keep-alive timer of `key` fired: send OPTIONS to its registered contact and arm
    /// the next one.
    pub(crate) fn on_keepalive_timer(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(ka) = self.keepalives.get_mut(key) else {
            return;
        };
        ka.armed = None;
        let outstanding = ka.outstanding;
        let Some((set, proto, contact, impu)) = cx.registrar.binding(key).and_then(|b| {
            Some((
                b.set.clone(),
                b.proto,
                b.contact.to_string(),
                b.impus.first()?.clone(),
            ))
        }) else {
            return self.forget_keepalive(cx, key);
        };
        self.arm_keepalive(cx, key, now);
        if outstanding || contact.is_empty() {
            return;
        }
        let (branch, tag) = (cx.shared.branch(), cx.shared.token(8));
        // The sequence number keeps Call-IDs unique even with a poor random source.
        let call_id = format!("{}{:x}", cx.shared.token(12), cx.shared.branch_seq);
        let pcscf = cx.shared.cfg.pcscf_host.clone();
        let (bytes, flow) = own_request(&set, proto, &branch, |via| {
            MessageBuilder::request("OPTIONS", &contact)
                .header("Via", via)
                .header("Max-Forwards", "70")
                .header("From", &format!("<sip:{pcscf}>;tag={tag}"))
                .header("To", &format!("<{impu}>"))
                .header("Call-ID", &format!("{call_id}@{pcscf}"))
                .header("CSeq", "1 OPTIONS")
                .build()
        });
        let own = Own::KeepAlive {
            key: key.to_string(),
        };
        if self
            .send_own(cx, own, bytes, flow, branch, now, out)
            .is_some()
        {
            cx.shared.stats.keepalives_sent += 1;
            if let Some(ka) = self.keepalives.get_mut(key) {
                ka.outstanding = true;
            }
        }
    }

    /// The outcome of registration `key`'s keep-alive: answered (`alive`) or failed.
    pub(crate) fn keepalive_outcome(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        alive: bool,
        now: Instant,
    ) {
        let Some(ka) = self.keepalives.get_mut(key) else {
            return;
        };
        ka.outstanding = false;
        if alive {
            ka.last_seen = Some(now);
            ka.failures = 0;
            cx.shared.stats.keepalives_answered += 1;
        } else {
            ka.failures = ka.failures.saturating_add(1);
            cx.shared.stats.keepalive_failures += 1;
            let failures = ka.failures;
            let impi = cx.registrar.impi(key).unwrap_or(key);
            tracing::info!("keep-alive to {impi} failed ({failures} in a row)");
            let limit = cx.shared.cfg.keepalive_failures;
            if limit > 0 && failures >= limit {
                self.unreachable.push(key.to_string());
            }
        }
    }
}
