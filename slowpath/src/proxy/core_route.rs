//! Proxy mode's request routing through the IMS core (TS 24.229 5.2.6 originating, 5.2.7
//! terminating): a request from a registered UE goes to the core along its Service-Route
//! with the identity we assert; a request from the core for a UE we registered goes to it
//! through its SAs, from our protected client port to its protected server port, opening
//! that connection when it does not exist. Dialog-creating requests get two Record-Route
//! entries (RFC 5658 double record-routing), one per side, so in-dialog requests from either
//! party come back through us on the right side. Responses, CANCEL, timer C and 2xx
//! retransmissions use the same client/server transaction pairs as embedded routing.

use std::net::IpAddr;
use std::time::Instant;

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand};

use super::route::{assert_identity, strip_sec_agree};
use super::transport::{choose_transport, host, is_ours, udp_path_max};
use super::{Forwarded, Proxy};
use crate::context::{Cx, Req, Shared};
use crate::sip::{HeaderKind, Message, MessageEdit};
use crate::upstream::Upstream;

/// Max-Forwards after our hop, or the response refusing the request (RFC 3261 16.3 step 3).
fn next_max_forwards(msg: &Message<'_>) -> Result<u8, (u16, &'static str)> {
    match msg.max_forwards() {
        Ok(None) => Ok(70),
        Ok(Some(0)) => Err((483, "Too Many Hops")),
        Ok(Some(n)) => Ok(n - 1),
        Err(_) => Err((400, "Bad Max-Forwards")),
    }
}

/// Where a request from the access side goes.
#[derive(Clone, Copy)]
enum Towards<'r> {
    /// Along the registration's Service-Route (TS 24.229 5.2.6).
    ServiceRoute(&'r [String]),
    /// To the E-CSCF (TS 24.229 5.2.10).
    Emergency,
}

/// `msg`'s Route entries after the ones naming us on top, consumed (RFC 3261 16.4): those
/// further down belong to the other party's side of the dialog.
fn routes_after_ours(msg: &Message<'_>, up: &Upstream, pcscf: &str, access: IpAddr) -> Vec<String> {
    msg.list_values(HeaderKind::Route)
        .filter_map(Result::ok)
        .skip_while(|r| up.is_ours(r) || is_ours(r, pcscf, access))
        .map(str::to_string)
        .collect()
}

/// `e` with our access-side Via (sent-by our protected server port, TS 24.229 / TS 33.203
/// 7.1) for the transport [`choose_transport`] picks towards `set`'s UE.
fn toward_ue(e: &MessageEdit<'_>, set: &SaSet, proto: Transport, branch: &str) -> (Vec<u8>, Flow) {
    let access = host(set.local);
    let port_ps = set.port_ps;
    choose_transport(set, proto, |t| {
        let mut v = e.clone();
        v.push_front(
            "Via",
            format!("SIP/2.0/{t} {access}:{port_ps};branch={branch}"),
        );
        v.to_bytes()
    })
}

/// Whether `msg` creates a dialog we record-route (an initial INVITE or SUBSCRIBE).
fn creates_dialog(msg: &Message<'_>) -> bool {
    let in_dialog = msg.to_header().is_ok_and(|t| t.tag().is_some());
    !in_dialog && matches!(msg.method(), Some("INVITE" | "SUBSCRIBE"))
}

impl Proxy {
    /// A request (not REGISTER) from registered UE `key`, through its SAs, to the core.
    /// `service_route` is what the S-CSCF gave at registration.
    pub(crate) fn originate(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        key: &str,
        service_route: &[String],
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(active) = cx.registrar.binding(key) else {
            return cx.shared.respond(req, 403, "Forbidden", &[], now, out);
        };
        let access = (active.set.local, active.set.port_ps);
        let towards = Towards::ServiceRoute(service_route);
        self.originate_from(cx, req, Some(key), access, towards, now, out);
    }

    /// An emergency request (TS 24.229 5.2.10) to the E-CSCF: from registered UE `key`
    /// through its SAs, or (`None`) from a UE that is not registered, on the unprotected
    /// port, where anonymous emergency sessions are allowed (5.2.10.4: no identity asserted).
    pub(crate) fn originate_emergency(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        key: Option<&str>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let access = match key.and_then(|k| cx.registrar.binding(k)) {
            Some(b) => (b.set.local, b.set.port_ps),
            None => (req.flow.local, req.flow.local_port),
        };
        self.originate_from(cx, req, key, access, Towards::Emergency, now, out);
    }

    /// The caller's flow of the anonymous emergency session `msg` belongs to (TS 24.229
    /// 5.2.10.4), if any.
    pub(crate) fn anonymous_emergency_flow(&self, msg: &Message<'_>) -> Option<Flow> {
        self.anonymous_emergency.get(msg.call_id().ok()?).copied()
    }

    /// A request from the core in an anonymous emergency session: to its caller on the
    /// unprotected flow the session started on, our Via naming that port.
    pub(crate) fn terminate_anonymous(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        flow: Flow,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        let Some(up) = cx.shared.cfg.upstream.clone() else {
            return;
        };
        if msg.method() == Some("BYE") {
            if let Ok(cid) = msg.call_id() {
                self.anonymous_emergency.remove(cid);
            }
        }
        let max_forwards = match next_max_forwards(msg) {
            Ok(n) => n,
            Err((code, reason)) => return cx.shared.respond(req, code, reason, &[], now, out),
        };
        let pcscf = cx.shared.cfg.pcscf_host.clone();
        let mut e = MessageEdit::new(msg);
        let routes: Vec<String> = routes_after_ours(msg, &up, &pcscf, flow.local);
        e.set_list("Route", &routes);
        e.replace("Max-Forwards", max_forwards.to_string());
        let branch = cx.shared.branch();
        e.push_front(
            "Via",
            format!(
                "SIP/2.0/{} {}:{};branch={branch}",
                flow.proto.via_token(),
                host(flow.local),
                flow.local_port
            ),
        );
        let invite = msg.method() == Some("INVITE");
        self.start_forward(cx, req, e.to_bytes(), flow, branch, invite, now, out);
    }

    /// Sends a request towards the core: `key`'s (or an anonymous emergency caller's) with
    /// our access side `access` (address, port) recorded, along `towards`.
    #[allow(clippy::too_many_arguments)]
    fn originate_from(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        key: Option<&str>,
        access: (IpAddr, u16),
        towards: Towards<'_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        let Some(up) = cx.shared.cfg.upstream.clone() else {
            return;
        };
        if msg.method() == Some("CANCEL") {
            return self.on_cancel(cx, req, now, out);
        }
        let max_forwards = match next_max_forwards(msg) {
            Ok(n) => n,
            Err((code, reason)) => return cx.shared.respond(req, code, reason, &[], now, out),
        };
        let (access_local, access_port) = access;
        let pcscf = cx.shared.cfg.pcscf_host.clone();
        let initial = creates_dialog(msg);
        let in_dialog = msg.to_header().is_ok_and(|t| t.tag().is_some());
        let mut e = MessageEdit::new(msg);
        strip_sec_agree(&mut e, msg);
        let routes: Vec<String> = match (in_dialog, towards) {
            // The dialog's route set, our own entries on top consumed (RFC 3261 16.4): those
            // further down belong to the other party's side of the dialog.
            (true, _) => routes_after_ours(msg, &up, &pcscf, access_local),
            // TS 24.229 5.2.6.3.2: the route is the Service-Route of the registration,
            // whatever the UE preloaded.
            (false, Towards::ServiceRoute(sr)) => sr.to_vec(),
            // TS 24.229 5.2.10.3: straight to the E-CSCF.
            (false, Towards::Emergency) => Vec::new(),
        };
        match key {
            Some(k) if !in_dialog => assert_identity(&mut e, cx, k, msg),
            // Only the P-CSCF asserts identities (TS 24.229 5.2.6.3.3), and nobody's for a
            // caller it has not authenticated.
            _ => {
                e.remove("P-Asserted-Identity");
                e.remove("P-Preferred-Identity");
            }
        }
        e.set_list("Route", &routes);
        e.replace("Max-Forwards", max_forwards.to_string());
        if initial {
            // RFC 5658: the core sees our core side on top, the UE our access side.
            // With shards both name ours, so in-dialog requests from either side reach it.
            let access = host(access_local);
            let tag = cx.shared.shard_param();
            e.push_front(
                "Record-Route",
                format!("<sip:{access}:{access_port};lr{tag}>"),
            );
            e.push_front("Record-Route", format!("<sip:{};lr{tag}>", up.sent_by()));
        }
        let next = routes
            .first()
            .map(String::as_str)
            .or(msg.request_uri().filter(|_| in_dialog));
        let len = msg.raw().len() + 200;
        let flow = match (in_dialog, towards) {
            (false, Towards::Emergency) => up.emergency_flow(len),
            _ => up.flow_for_via(next, len, cx.shared.hops.preferred(&up.next_hops, now)),
        };
        tracing::debug!("originate {:?} from {key:?} on {flow:?}", msg.method());
        let Some(flow) = flow else {
            return cx
                .shared
                .respond(req, 503, "Service Unavailable", &[], now, out);
        };
        let branch = cx.shared.branch();
        e.push_front(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                flow.proto.via_token(),
                up.sent_by()
            ),
        );
        let invite = msg.method() == Some("INVITE");
        let bytes = e.to_bytes();
        self.start_forward(cx, req, bytes, flow, branch, invite, now, out);
        let Ok(cid) = msg.call_id() else {
            return;
        };
        match key {
            Some(k) if initial => {
                self.core_dialogs.insert(cid.to_string(), k.to_string());
            }
            None if initial => {
                self.anonymous_emergency.insert(cid.to_string(), req.flow);
            }
            None if msg.method() == Some("BYE") => {
                self.anonymous_emergency.remove(cid);
            }
            // The UE ends the dialog: requests of it from the core are done.
            Some(_) if msg.method() == Some("BYE") => {
                self.core_dialogs.remove(cid);
            }
            _ => {}
        }
    }

    /// Starts the client transaction forwarding `req` as `bytes` on `flow` (100 Trying and
    /// timer C for INVITE).
    #[allow(clippy::too_many_arguments)]
    fn start_forward(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        bytes: Vec<u8>,
        flow: akagate_proto::ipc::Flow,
        branch: String,
        invite: bool,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> Option<crate::sip::transaction::TxId> {
        if invite {
            // RFC 3261 16.2 / 17.2.1: stop the sender's retransmissions at once.
            cx.shared.respond(req, 100, "Trying", &[], now, out);
        }
        if let Some(info) = cx.shared.txs.get_mut(&req.tx) {
            info.request = Some(req.msg.noted_bytes());
        }
        let Some(client) = cx.shared.send_request(bytes.clone(), flow, now, out) else {
            cx.shared
                .respond(req, 500, "Server Internal Error", &[], now, out);
            return None;
        };
        self.forwarded.insert(
            client,
            Forwarded::relayed(req.tx, bytes, flow, branch, invite),
        );
        self.forwarded_by_server.insert(req.tx, client);
        if invite {
            self.set_timer_c(cx, client, Some(now + cx.shared.cfg.timer_c));
        }
        Some(client)
    }

    /// The registration a request from the core is for, besides its Path token: the
    /// dialog it belongs to.
    pub(crate) fn core_dialog_key(&self, msg: &Message<'_>) -> Option<&str> {
        let cid = msg.call_id().ok()?;
        self.core_dialogs.get(cid)
    }

    /// A request from the core for registration `key`: to the UE through its SAs
    /// (TS 24.229 5.2.7), from port_pc to its port_us.
    pub(crate) fn terminate(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        let Some(up) = cx.shared.cfg.upstream.clone() else {
            return;
        };
        if msg.method() == Some("CANCEL") {
            return self.on_cancel(cx, req, now, out);
        }
        if msg.method() == Some("BYE") {
            if let Ok(cid) = msg.call_id() {
                self.core_dialogs.remove(cid);
            }
        }
        let max_forwards = match next_max_forwards(msg) {
            Ok(n) => n,
            Err((code, reason)) => return cx.shared.respond(req, code, reason, &[], now, out),
        };
        let Some(active) = cx.registrar.binding(key) else {
            return cx
                .shared
                .respond(req, 480, "Temporarily Unavailable", &[], now, out);
        };
        let (set, proto) = (active.set.clone(), active.proto);
        let pcscf = cx.shared.cfg.pcscf_host.clone();
        let initial = creates_dialog(msg);
        let mut e = MessageEdit::new(msg);
        let routes: Vec<String> = routes_after_ours(msg, &up, &pcscf, set.local);
        e.set_list("Route", &routes);
        e.replace("Max-Forwards", max_forwards.to_string());
        let access = host(set.local);
        if initial {
            // RFC 5658: the UE sees our access side on top, the core our core side.
            let tag = cx.shared.shard_param();
            e.push_front("Record-Route", format!("<sip:{};lr{tag}>", up.sent_by()));
            e.push_front(
                "Record-Route",
                format!("<sip:{access}:{};lr{tag}>", set.port_ps),
            );
        }
        let invite = msg.method() == Some("INVITE");
        let branch = cx.shared.branch();
        let (bytes, flow) = toward_ue(&e, &set, proto, &branch);
        let fallback =
            (proto == Transport::Udp && flow.proto == Transport::Tcp).then(|| udp_path_max(&set));
        if let Some(client) = self.start_forward(cx, req, bytes, flow, branch, invite, now, out) {
            if let Some(f) = self.forwarded.get_mut(&client) {
                f.udp_fallback = fallback;
            }
        }
        if initial {
            if let Ok(cid) = msg.call_id() {
                self.core_dialogs.insert(cid.to_string(), key.to_string());
            }
        }
    }

    /// An ACK for a 2xx (no transaction, RFC 3261 16.11) from UE `key` to the core, along
    /// the dialog's route.
    pub(crate) fn originate_ack(
        &mut self,
        cx: &mut Cx<'_>,
        msg: &Message<'_>,
        access_local: IpAddr,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(up) = cx.shared.cfg.upstream.clone() else {
            return;
        };
        let Ok(max_forwards) = next_max_forwards(msg) else {
            return;
        };
        let pcscf = cx.shared.cfg.pcscf_host.clone();
        let routes: Vec<String> = routes_after_ours(msg, &up, &pcscf, access_local);
        let mut e = MessageEdit::new(msg);
        strip_sec_agree(&mut e, msg);
        e.remove("P-Asserted-Identity");
        e.set_list("Route", &routes);
        e.replace("Max-Forwards", max_forwards.to_string());
        let next = routes.first().map(String::as_str).or(msg.request_uri());
        let Some(flow) = up.flow_for(next, msg.raw().len() + 200) else {
            return;
        };
        let branch = cx.shared.branch();
        e.push_front(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                flow.proto.via_token(),
                up.sent_by()
            ),
        );
        Shared::send_direct(out, flow, e.to_bytes(), true);
    }

    /// An ACK for a 2xx from the core to UE `key` (RFC 3261 16.11).
    pub(crate) fn terminate_ack(
        &mut self,
        cx: &mut Cx<'_>,
        msg: &Message<'_>,
        key: &str,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(up) = cx.shared.cfg.upstream.clone() else {
            return;
        };
        let Some(active) = cx.registrar.binding(key) else {
            return;
        };
        let (set, proto) = (active.set.clone(), active.proto);
        let Ok(max_forwards) = next_max_forwards(msg) else {
            return;
        };
        let pcscf = cx.shared.cfg.pcscf_host.clone();
        let routes: Vec<String> = routes_after_ours(msg, &up, &pcscf, set.local);
        let mut e = MessageEdit::new(msg);
        e.set_list("Route", &routes);
        e.replace("Max-Forwards", max_forwards.to_string());
        let branch = cx.shared.branch();
        let (bytes, flow) = toward_ue(&e, &set, proto, &branch);
        Shared::send_direct(out, flow, bytes, true);
    }
}
