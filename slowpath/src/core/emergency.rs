//! Emergency requests from UEs (TS 24.229 5.2.10): to the E-CSCF of `[ims-core]` — from a
//! registered UE through its SAs with the identity we assert, or from a UE that is not
//! registered (on the unprotected port) where anonymous emergency sessions are allowed — or,
//! when they cannot be routed, `380 Alternative Service` telling the UE what to do instead.

use std::time::Instant;

use akagate_proto::ipc::WorkerCommand;

use crate::context::Req;
use crate::core::Core;
use crate::sip::{response_to, Message};
use crate::upstream::{alternative_service_body, is_emergency, EmergencyAction};

/// Whether a REGISTER is an emergency registration: a Contact with the `sos` URI parameter
/// (TS 24.229 5.1.6.2).
pub(crate) fn is_emergency_registration(msg: &Message<'_>) -> bool {
    msg.contacts()
        .filter_map(Result::ok)
        .any(|c| c.addr().is_some_and(|a| a.uri.params.contains("sos")))
}

impl Core {
    /// Whether a request of registration `key` is refused because the registration is an
    /// unauthenticated emergency one and the request opens no emergency session (403).
    pub(crate) fn refused_as_emergency_only(&self, key: &str, msg: &Message<'_>) -> bool {
        let in_dialog = msg.to_header().is_ok_and(|t| t.tag().is_some());
        self.emergency_only.contains(key) && !in_dialog && !self.is_emergency_request(msg)
    }

    /// Whether a UE's request opens an emergency session (an initial INVITE or MESSAGE whose
    /// Request-URI is an emergency service URN or a configured emergency number).
    pub(crate) fn is_emergency_request(&self, msg: &Message<'_>) -> bool {
        let initial = !msg.to_header().is_ok_and(|t| t.tag().is_some());
        let numbers = self
            .shared
            .cfg
            .upstream
            .as_ref()
            .map_or(&[][..], |u| &u.emergency_numbers[..]);
        initial && matches!(msg.method(), Some("INVITE" | "MESSAGE")) && is_emergency(msg, numbers)
    }

    /// An emergency request: routed to the E-CSCF, or answered 380.
    pub(crate) fn on_emergency(
        &mut self,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let (routable, anonymous_ok) = match &self.shared.cfg.upstream {
            Some(u) => (!u.emergency_next_hops.is_empty(), u.anonymous_emergency),
            None => (false, false),
        };
        if !routable {
            self.shared.stats.emergency_refused += 1;
            return self.alternative_service(req, EmergencyAction::NotServed, now, out);
        }
        let (proxy, mut cx) = self.proxy_cx();
        let sender = proxy.sender_of(&cx, req.via_spi);
        match sender {
            Some((key, spi)) => {
                cx.note_traffic(&key, spi, out);
                cx.shared.stats.emergency_sessions += 1;
                proxy.originate_emergency(&mut cx, req, Some(&key), now, out);
            }
            None if req.via_spi.is_none() && anonymous_ok => {
                cx.shared.stats.emergency_sessions += 1;
                proxy.originate_emergency(&mut cx, req, None, now, out);
            }
            None => {
                self.shared.stats.emergency_refused += 1;
                self.alternative_service(req, EmergencyAction::EmergencyRegistration, now, out);
            }
        }
    }

    /// `380 Alternative Service` with its `application/3gpp-ims+xml` body (TS 24.229 7.6).
    fn alternative_service(
        &mut self,
        req: &Req<'_, '_>,
        action: EmergencyAction,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let tag = self.shared.token(8);
        let Ok(b) = response_to(req.msg, 380, "Alternative Service", Some(&tag)) else {
            return;
        };
        let body = alternative_service_body(action);
        let bytes = b.body("application/3gpp-ims+xml", body.as_bytes()).build();
        self.shared.send_response(req.tx, bytes, now, out);
    }
}
