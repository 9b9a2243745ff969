//! Request and response routing between registered UEs over their SA sets, through the
//! transaction layer: forwarding (RFC 3261 16.6), response relaying (16.7), CANCEL (16.10),
//! in-dialog requests and ACK along the recorded dialog.

use std::time::Instant;

use akagate_proto::ipc::{SaSet, SipIn, Transport, WorkerCommand};

use super::transport::{choose_transport, host, is_ours, udp_path_max};
use super::Proxy;
use super::{Dialog, Forwarded};
use crate::context::{peer_of, Cx, Req, Shared, TimerKey};
use crate::registrar::SetKind;
use crate::sip::transaction::{Incoming, TxEvent, TxId};
use crate::sip::{response_to, HeaderKind, Message, MessageBuilder, MessageEdit, NameAddr};

/// A URI without its parameters and headers, lower-cased, for identity comparison
/// (`sip:User@Host;user=phone` -> `sip:user@host`).
fn identity_key(uri: &str) -> String {
    uri.split([';', '?'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The URI of a name-addr header value.
fn uri_of(value: &str) -> Option<&str> {
    NameAddr::parse(value).ok().map(|a| a.uri.raw)
}

/// Where a request goes: the target registration's client flow.
struct Target {
    /// Target IMPI key.
    key: String,
    /// Its active SA set.
    set: SaSet,
    /// The transport it registered over.
    proto: Transport,
    /// Its registered contact (the Request-URI of an initial request).
    contact: String,
    /// Not part of a known dialog.
    initial: bool,
}

/// TS 24.229 5.2.6.3: sec-agree is hop-by-hop between UE and P-CSCF; its headers and option
/// tags do not go on.
pub(super) fn strip_sec_agree(e: &mut MessageEdit<'_>, msg: &Message<'_>) {
    e.remove("Security-Verify");
    e.remove("Security-Client");
    for kind in [HeaderKind::Require, HeaderKind::ProxyRequire] {
        let rest: Vec<String> = msg
            .option_tags(kind)
            .filter_map(Result::ok)
            .filter(|t| !t.eq_ignore_ascii_case("sec-agree"))
            .map(str::to_string)
            .collect();
        if let Some(name) = kind.name() {
            e.set_list(name, &rest);
        }
    }
}

/// TS 24.229 5.2.6.3.3: the identity asserted for registration `key`: its
/// `P-Preferred-Identity` if that is one of its URIs, else its default one. Whatever the UE
/// wrote as P-Asserted-Identity is never trusted.
pub(super) fn assert_identity(e: &mut MessageEdit<'_>, cx: &Cx<'_>, key: &str, msg: &Message<'_>) {
    // A UE of another shard (the callee's in-dialog request): its IMPUs from the directory.
    let remote = cx.registrar.located(key);
    let impus = (cx.registrar.impus(key))
        .or(remote.as_ref().map(|l| l.impus.as_slice()))
        .unwrap_or_default();
    let preferred = msg
        .header(HeaderKind::PPreferredIdentity)
        .and_then(uri_of)
        .map(identity_key);
    let asserted = preferred
        .and_then(|p| impus.iter().find(|u| identity_key(u) == p).cloned())
        .or_else(|| impus.first().cloned());
    e.remove("P-Preferred-Identity");
    e.remove("P-Asserted-Identity");
    if let Some(a) = asserted {
        e.push("P-Asserted-Identity", format!("<{a}>"));
    }
}

impl Proxy {
    /// The registration and SPI of a message that came through an active (or still living
    /// old) set (TS 24.229 5.2.6.1; TS 33.203 6.3: nothing but REGISTER passes unprotected).
    pub(crate) fn sender_of(&self, cx: &Cx<'_>, via_spi: Option<u32>) -> Option<(String, u32)> {
        let spi = via_spi?;
        match cx.registrar.set_of_spi(spi) {
            Some((key, kind)) => (kind != SetKind::Pending).then(|| (key.to_string(), spi)),
            // A UE another shard registered, in a dialog this shard owns (the directory
            // lists only live, 200 OK'd sets).
            None => cx.registrar.remote_key_of_spi(spi).map(|k| (k, spi)),
        }
    }

    /// The target of a request from `key`: the other party of its dialog, else the
    /// registered owner of the Request-URI (404 / 480 otherwise). A request with a To tag
    /// belongs to a dialog; one we do not know gets 481 (RFC 3261 12.2.2): we Record-Route
    /// every dialog we set up, so nobody else could route it.
    fn target_of(
        &self,
        cx: &Cx<'_>,
        msg: &Message<'_>,
        key: &str,
    ) -> Result<Target, (u16, &'static str)> {
        let call_id = msg.call_id().map_err(|_| (400, "Bad Request"))?;
        let dialog = self
            .dialogs
            .get(call_id)
            .filter(|d| d.caller == key || d.callee == key);
        let in_dialog = msg.to_header().is_ok_and(|t| t.tag().is_some());
        let target = match dialog {
            Some(d) if d.caller == key => d.callee.clone(),
            Some(d) => d.caller.clone(),
            None if in_dialog => return Err((481, "Call/Transaction Does Not Exist")),
            None => {
                let uri = msg.request_uri().ok_or((400, "Bad Request"))?;
                let impi = cx
                    .hss
                    .impi_of_impu(&identity_key(uri))
                    .ok_or((404, "Not Found"))?;
                impi.to_ascii_lowercase()
            }
        };
        let initial = dialog.is_none();
        if let Some(active) = cx.registrar.binding(&target) {
            return Ok(Target {
                set: active.set.clone(),
                proto: active.proto,
                contact: active.contact.to_string(),
                key: target,
                initial,
            });
        }
        // Registered by another shard: reached through the location directory.
        let l = cx
            .registrar
            .located(&target)
            .ok_or((480, "Temporarily Unavailable"))?;
        Ok(Target {
            key: target,
            set: l.set.clone(),
            proto: l.proto,
            contact: l.contact.clone(),
            initial,
        })
    }

    /// The copy of `msg` that leaves towards `target` (without our Via): sec-agree headers
    /// removed, our Route entries consumed, Max-Forwards set, and for an initial request the
    /// Request-URI, P-Asserted-Identity and (INVITE / SUBSCRIBE) Record-Route.
    fn prepare<'a>(
        &mut self,
        cx: &mut Cx<'_>,
        msg: &Message<'a>,
        key: &str,
        target: &Target,
        max_forwards: u8,
    ) -> MessageEdit<'a> {
        let mut e = MessageEdit::new(msg);
        let ours = host(target.set.local);
        strip_sec_agree(&mut e, msg);
        // Our own Route entries (Service-Route / Record-Route) are consumed here (16.4).
        let routes: Vec<String> = msg
            .list_values(HeaderKind::Route)
            .filter_map(Result::ok)
            .filter(|r| !is_ours(r, &cx.shared.cfg.pcscf_host, target.set.local))
            .map(str::to_string)
            .collect();
        e.set_list("Route", &routes);
        // RFC 3261 16.6 step 3.
        e.replace("Max-Forwards", max_forwards.to_string());
        if target.initial {
            e.set_request_uri(&target.contact);
            assert_identity(&mut e, cx, key, msg);
            if matches!(msg.method(), Some("INVITE" | "SUBSCRIBE")) {
                let port_ps = target.set.port_ps;
                // With shards, our URI names the dialog's shard (RFC 3261 16.6 step 4), so
                // in-dialog requests from either UE reach it.
                let tag = cx.shared.shard_param();
                e.push_front("Record-Route", format!("<sip:{ours}:{port_ps};lr{tag}>"));
            }
        }
        e
    }

    /// Puts our Via on top and serialises for the target's transport.
    fn with_our_via(
        edit: &MessageEdit<'_>,
        target: &Target,
        branch: &str,
    ) -> (Vec<u8>, akagate_proto::ipc::Flow) {
        let ours = host(target.set.local);
        let port_ps = target.set.port_ps;
        // TS 24.229: sent-by names our protected server port, so a UE sends the response
        // from its port_uc to port_ps (TS 33.203 7.1) when it does not reuse the connection.
        choose_transport(&target.set, target.proto, |t| {
            let mut e = edit.clone();
            e.push_front(
                "Via",
                format!("SIP/2.0/{t} {ours}:{port_ps};branch={branch}"),
            );
            e.to_bytes()
        })
    }

    /// A non-REGISTER request from a UE in its new server transaction.
    pub(crate) fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some((key, spi)) = self.sender_of(cx, req.via_spi) else {
            return cx.shared.respond(req, 403, "Forbidden", &[], now, out);
        };
        cx.note_traffic(&key, spi, out);
        let msg = req.msg;
        let method = msg.method().unwrap_or_default();
        if method == "CANCEL" {
            return self.on_cancel(cx, req, now, out);
        }
        let max_forwards = match msg.max_forwards() {
            Ok(None) => 70,
            // RFC 3261 16.3 step 3.
            Ok(Some(0)) => return cx.shared.respond(req, 483, "Too Many Hops", &[], now, out),
            Ok(Some(n)) => n - 1,
            Err(_) => {
                return cx
                    .shared
                    .respond(req, 400, "Bad Max-Forwards", &[], now, out)
            }
        };
        let is_reg_event = msg.header(HeaderKind::Event).is_some_and(|e| {
            e.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("reg"))
        });
        if method == "SUBSCRIBE" && is_reg_event {
            return self.reg_subscribe(cx, req, &key, now, out);
        }
        let target = match self.target_of(cx, msg, &key) {
            Ok(t) => t,
            Err((code, reason)) => return cx.shared.respond(req, code, reason, &[], now, out),
        };
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let edit = self.prepare(cx, msg, &key, &target, max_forwards);
        let invite = method == "INVITE";
        let initial = target.initial && matches!(method, "INVITE" | "SUBSCRIBE");
        if initial {
            self.dialogs
                .insert(call_id.clone(), Dialog::new(&key, &target.key, msg));
            // A callee of another shard: its shard tells us when it ends.
            cx.registrar.watch_remote(&target.key);
        } else if let (Some(d), Ok(cseq)) = (self.dialogs.get_mut(&call_id), msg.cseq()) {
            d.note_cseq(&key, cseq.seq);
        }
        if method == "BYE" {
            self.drop_dialog(cx, &call_id);
        }
        if invite {
            // RFC 3261 16.2 / 17.2.1: the INVITE is being forwarded; stop the caller's
            // retransmissions at once instead of after the transaction's 200 ms.
            cx.shared.respond(req, 100, "Trying", &[], now, out);
        }
        let branch = cx.shared.branch();
        let (bytes, flow) = Self::with_our_via(&edit, &target, &branch);
        if let Some(info) = cx.shared.txs.get_mut(&req.tx) {
            info.request = Some(msg.noted_bytes());
        }
        let Some(client) = cx.shared.send_request(bytes.clone(), flow, now, out) else {
            return cx
                .shared
                .respond(req, 500, "Server Internal Error", &[], now, out);
        };
        self.forwarded.insert(
            client,
            Forwarded {
                server: Some(req.tx),
                own: None,
                request: bytes,
                flow,
                branch,
                invite,
                initial,
                provisional: false,
                cancel_pending: false,
                cancelled: false,
                timer_c: None,
                timer_c_fired: false,
                udp_fallback: (target.proto == Transport::Udp && flow.proto == Transport::Tcp)
                    .then(|| udp_path_max(&target.set)),
            },
        );
        self.forwarded_by_server.insert(req.tx, client);
        if invite {
            self.set_timer_c(cx, client, Some(now + cx.shared.cfg.timer_c));
        }
    }

    /// CANCEL is hop-by-hop (RFC 3261 16.10): 200 to it, and a CANCEL of our own on the
    /// forwarded INVITE's branch; the callee's 487 then ends the INVITE.
    ///
    /// A CANCEL that matches no INVITE server transaction gets 481 (RFC 3261 9.2). 16.10
    /// would have a proxy forward it statelessly, because the INVITE may have been forwarded
    /// statelessly before; this P-CSCF forwards every INVITE statefully, so an unmatched
    /// CANCEL names an INVITE that never reached us or whose transaction is over, and there
    /// is no branch it could be forwarded to (the callee never saw that INVITE from us).
    pub(super) fn on_cancel(
        &mut self,
        cx: &mut Cx<'_>,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(invite) = cx.shared.txl.invite_for_cancel(req.msg) else {
            return cx
                .shared
                .respond(req, 481, "Call/Transaction Does Not Exist", &[], now, out);
        };
        cx.shared.respond(req, 200, "OK", &[], now, out);
        if let Some(&client) = self.forwarded_by_server.get(&invite) {
            self.cancel_client(cx, client, now, out);
        }
    }

    /// Sends CANCEL for client INVITE transaction `client` once it has a provisional
    /// response (RFC 3261 9.1: not before).
    pub(crate) fn cancel_client(
        &mut self,
        cx: &mut Cx<'_>,
        client: TxId,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(link) = self.forwarded.get_mut(&client) else {
            return;
        };
        if link.cancelled || !link.invite {
            return;
        }
        if !link.provisional {
            link.cancel_pending = true;
            return;
        }
        link.cancelled = true;
        let flow = link.flow;
        let Ok(invite) = Message::parse(&link.request) else {
            return;
        };
        let built = (|| {
            // RFC 3261 9.1: Request-URI, Call-ID, To, From, CSeq number and Route of the
            // INVITE; a single Via equal to the INVITE's top Via.
            let top_via = invite.list_values(HeaderKind::Via).next()?.ok()?;
            let cseq = invite.cseq().ok()?;
            let mut b = MessageBuilder::request("CANCEL", invite.request_uri()?)
                .header("Via", top_via)
                .header("Max-Forwards", "70")
                .header("From", invite.header(HeaderKind::From)?)
                .header("To", invite.header(HeaderKind::To)?)
                .header("Call-ID", invite.header(HeaderKind::CallId)?)
                .header("CSeq", &format!("{} CANCEL", cseq.seq));
            for r in invite.header_values(HeaderKind::Route) {
                b.push_header("Route", r);
            }
            Some(b.build())
        })();
        if let Some(cancel) = built {
            cx.shared.send_request(cancel, flow, now, out);
        }
    }

    /// An ACK that matched no INVITE server transaction: the ACK for a 2xx, routed along
    /// the dialog without a transaction (RFC 3261 16.11, 17.1.1.3).
    pub(crate) fn on_stray_request(
        &mut self,
        cx: &mut Cx<'_>,
        msg: &Message<'_>,
        sip: &SipIn,
        _now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        if msg.method() != Some("ACK") {
            return;
        }
        let Some((key, spi)) = self.sender_of(cx, sip.via_spi) else {
            return;
        };
        cx.note_traffic(&key, spi, out);
        let max_forwards = match msg.max_forwards() {
            Ok(None) => 70,
            Ok(Some(n)) if n > 0 => n - 1,
            _ => return,
        };
        let Ok(target) = self.target_of(cx, msg, &key) else {
            return;
        };
        let edit = self.prepare(cx, msg, &key, &target, max_forwards);
        let branch = cx.shared.branch();
        let (bytes, flow) = Self::with_our_via(&edit, &target, &branch);
        Shared::send_direct(out, flow, bytes, true);
    }

    /// A response from a UE: into its client transaction (whose events relay it), or, for
    /// a retransmitted 2xx to an INVITE, straight back to the caller.
    pub(crate) fn on_response(
        &mut self,
        cx: &mut Cx<'_>,
        msg: &Message<'_>,
        sip: &SipIn,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let key = sip.via_spi.and_then(|s| {
            (cx.registrar.key_of_spi(s).map(str::to_string))
                .or_else(|| cx.registrar.remote_key_of_spi(s))
        });
        let Some(key) = key else {
            cx.shared.stats.unprotected_responses += 1;
            tracing::debug!("dropping unprotected response from {}", sip.flow.ue);
            return;
        };
        if let Some(spi) = sip.via_spi {
            cx.note_traffic(&key, spi, out);
        }
        match cx.shared.txl.handle_message(msg, peer_of(sip.flow), now) {
            Ok(Incoming::Response(_)) => cx.shared.flush(out),
            Ok(_) => self.on_stray_response(cx, msg, out),
            Err(_) => cx.shared.stats.malformed_responses += 1,
        }
    }

    /// RFC 3261 16.7 / 17.1.1.2: 2xx retransmissions to an INVITE whose client transaction
    /// ended are relayed statelessly; anything else unmatched is dropped.
    pub(crate) fn on_stray_response(
        &mut self,
        cx: &mut Cx<'_>,
        msg: &Message<'_>,
        out: &mut Vec<WorkerCommand>,
    ) {
        let branch = msg.top_via().ok().and_then(|v| v.branch());
        let is_invite_2xx = msg.cseq().is_ok_and(|c| c.method == "INVITE")
            && msg.status_code().is_some_and(|c| (200..300).contains(&c));
        match branch.and_then(|b| self.accepted.get(b)) {
            Some(&origin) if is_invite_2xx => {
                let mut e = MessageEdit::new(msg);
                e.pop_first_element("Via");
                Shared::send_direct(out, origin, e.to_bytes(), false);
            }
            _ => cx.shared.stats.stray_responses += 1,
        }
    }

    /// A transaction event: relay responses, answer timeouts with 408, forget the ended.
    pub(crate) fn on_tx_event(
        &mut self,
        cx: &mut Cx<'_>,
        id: TxId,
        ev: TxEvent,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        match ev {
            TxEvent::Response(bytes) => self.relay_response(cx, id, &bytes, now, out),
            TxEvent::Timeout => {
                if let Some(f) = self.forwarded.get(&id) {
                    cx.shared.stats.transaction_timeouts += 1;
                    match f.own.clone() {
                        Some(own) => self.own_failed(cx, &own, now),
                        None => self.relay_timeout(cx, id, now, out),
                    }
                }
            }
            TxEvent::Terminated => self.forget_tx(cx, id),
        }
    }

    /// Drops everything the core keeps about transaction `id`.
    pub(crate) fn forget_tx(&mut self, cx: &mut Cx<'_>, id: TxId) {
        cx.shared.txs.remove(&id);
        if let Some(f) = self.forwarded.remove(&id) {
            cx.shared.arm(TimerKey::TimerC(id), f.timer_c, None);
            if let Some(s) = f.server {
                if self.forwarded_by_server.get(&s) == Some(&id) {
                    self.forwarded_by_server.remove(&s);
                }
            }
        }
        self.forwarded_by_server.remove(&id);
    }

    /// Moves Timer C of client transaction `client` to `at` (or stops it).
    pub(super) fn set_timer_c(&mut self, cx: &mut Cx<'_>, client: TxId, at: Option<Instant>) {
        let Some(f) = self.forwarded.get_mut(&client) else {
            return;
        };
        let previous = std::mem::replace(&mut f.timer_c, at);
        cx.shared.arm(TimerKey::TimerC(client), previous, at);
    }

    /// RFC 3261 16.8: Timer C fired on a ringing branch: CANCEL it and answer the caller 408;
    /// if the branch is still there 64*T1 later, forget it.
    pub(crate) fn on_timer_c(
        &mut self,
        cx: &mut Cx<'_>,
        client: TxId,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(f) = self.forwarded.get_mut(&client) else {
            return;
        };
        f.timer_c = None;
        if f.timer_c_fired {
            cx.shared.txl.abandon(client);
            return self.forget_tx(cx, client);
        }
        f.timer_c_fired = true;
        cx.shared.stats.timer_c_expiries += 1;
        self.cancel_client(cx, client, now, out);
        self.relay_timeout(cx, client, now, out);
        self.set_timer_c(cx, client, Some(now + cx.shared.cfg.timers.t1x64()));
    }

    /// A response of client transaction `client` goes back through its server transaction
    /// without our Via (RFC 3261 16.7); 100 Trying stays here (16.7 step 5).
    fn relay_response(
        &mut self,
        cx: &mut Cx<'_>,
        client: TxId,
        bytes: &[u8],
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Ok(msg) = Message::parse(bytes) else {
            return;
        };
        let Some(code) = msg.status_code() else {
            return;
        };
        let Some(link) = self.forwarded.get_mut(&client) else {
            return;
        };
        let (server, invite, branch) = (link.server, link.invite, link.branch.clone());
        let (fired, initial, own) = (link.timer_c_fired, link.initial, link.own.clone());
        if invite && code < 200 {
            link.provisional = true;
            if link.cancel_pending {
                self.cancel_client(cx, client, now, out);
            }
            // RFC 3261 16.7 step 2: a provisional response other than 100 resets Timer C.
            if code > 100 && !fired {
                self.set_timer_c(cx, client, Some(now + cx.shared.cfg.timer_c));
            }
        }
        if invite && code >= 200 && !fired {
            self.set_timer_c(cx, client, None);
        }
        // Only the initial request's answer makes or breaks the dialog record; a rejected
        // re-INVITE leaves the dialog as it was (RFC 3261 14.1).
        if initial && code >= 200 {
            if let Ok(cid) = msg.call_id() {
                if code >= 300 {
                    self.drop_dialog(cx, cid);
                } else if let Some(local) = self.forwarded.get(&client).map(|f| f.flow.local) {
                    let pcscf = cx.shared.cfg.pcscf_host.clone();
                    if let Some(d) = self.dialogs.get_mut(cid) {
                        d.confirm(&msg, |r| is_ours(r, &pcscf, local));
                    }
                }
            }
        }
        if let (Some(own), true) = (&own, code >= 200) {
            self.own_final(cx, own, code, now);
        }
        let Some(server) = server else {
            return;
        };
        if code == 100 {
            return;
        }
        let mut e = MessageEdit::new(&msg);
        e.pop_first_element("Via");
        if invite && (200..300).contains(&code) {
            if let Some(origin) = cx.shared.txs.get(&server).map(|i| i.flow) {
                self.accepted.insert(branch.clone(), origin);
                let until = now + cx.shared.cfg.timers.t1x64();
                cx.shared
                    .arm(TimerKey::Accepted(branch.into()), None, Some(until));
            }
        }
        cx.shared.send_response(server, e.to_bytes(), now, out);
    }

    /// Timer B / F of a forwarded request: the caller gets 408 (RFC 3261 16.8).
    fn relay_timeout(
        &mut self,
        cx: &mut Cx<'_>,
        client: TxId,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(server) = self.forwarded.get(&client).and_then(|f| f.server) else {
            return;
        };
        let Some(request) = cx.shared.txs.get(&server).and_then(|i| i.request.clone()) else {
            return;
        };
        let Ok(msg) = Message::parse(&request) else {
            return;
        };
        let initial = self.forwarded.get(&client).is_some_and(|f| f.initial);
        if initial {
            if let Ok(cid) = msg.call_id() {
                self.drop_dialog(cx, cid);
            }
        }
        let tag = cx.shared.token(8);
        if let Ok(b) = response_to(&msg, 408, "Request Timeout", Some(&tag)) {
            cx.shared.send_response(server, b.build(), now, out);
        }
    }
}
