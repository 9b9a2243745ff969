//! Proxy mode's registration relay (TS 24.229 5.2.2): the UE's REGISTERs go to the IMS core
//! (I-CSCF / S-CSCF) instead of the embedded registrar; the S-CSCF authenticates the UE and
//! hands CK and IK to the P-CSCF inside its 401 (TS 33.203 7.1), which takes them out, builds
//! and installs the SA set and announces it in `Security-Server`; the S-CSCF's 200 OK to the
//! protected REGISTER activates the set. Sec-agree (421 / 494, Security-Verify), the SA sets
//! and their lifecycle are the same as in embedded mode; what differs is who owns the
//! vectors and the registration's lifetime.
//!
//! Messages on the core side travel as flows whose local address is our core-facing address
//! (`Upstream::is_core_flow`); the daemon carries them over kernel sockets.

use akagate_proto::hash::KeyedMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_proto::ipc::{Flow, SipIn, WorkerCommand};
use rand::RngCore;
use zeroize::Zeroize;

use super::saset::{new_sa_set, NoSet};
use crate::aka::{AkaNonce, AuthVector, Autn, DigestParams, Res};
use crate::context::{peer_of, Req, TimerKey, TxInfo};
use crate::core::Core;
use crate::proxy::RegEnd;
use crate::registrar::{choose_security_client, contact_uri, verify_matches, Pending, SetKind};
use crate::secagree::{tls_security_server, ChosenMechanism, TLS_MECHANISM};
use crate::sip::transaction::{Incoming, TxEvent, TxId};
use crate::sip::{HeaderKind, Message, MessageEdit};
use crate::upstream::{forward_register, registration_facts, take_keys, Integrity, RegisterHop};

/// How the relayed REGISTER reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Through {
    /// Outside every SA: the initial REGISTER (or a new one after the UE lost its SAs).
    Unprotected,
    /// Through the pending set: the answer to the S-CSCF's challenge (or AUTS).
    Pending,
    /// Through the active set: a re-registration, refresh or de-registration.
    Active,
}

/// A REGISTER relayed to the core, by the client transaction carrying it.
#[derive(Clone, Debug)]
pub(crate) struct Relay {
    /// The UE's server transaction.
    server: TxId,
    /// The registration's IMPI key.
    key: String,
    /// The IMPI as the UE wrote it.
    impi: String,
    /// The flow the UE's REGISTER arrived on.
    flow: Flow,
    /// The inbound SA it came through (the pending set it answers, or the active one).
    via_spi: Option<u32>,
    through: Through,
    /// The mechanism of the REGISTER's Security-Client, if it had one we accept.
    chosen: Option<ChosenMechanism>,
    /// No sec-agree at all (`sec-agree-required = false`), or `tls` on the TLS port: the set
    /// stands for the flow.
    flow_bound: bool,
    /// Flow-bound through sec-agree mechanism `tls` (RFC 3329 2.2): the 401 carries
    /// `Security-Server: tls;q=0.1`.
    tls: bool,
    /// The UE's Contact.
    contact: Option<String>,
    /// The REGISTER as forwarded, without our Via (sent again to the next hop on failure).
    request: Vec<u8>,
    /// The next hops to try, in order (usable ones first, see `HopHealth::order`).
    order: Vec<usize>,
    /// Position in `order` of the hop it went to.
    hop: usize,
    /// Until when that hop may stay silent before the next one gets the REGISTER; `None`
    /// once it answered, or for the last hop (Timer F decides there).
    hop_deadline: Option<Instant>,
}

/// What proxy mode keeps per registration besides the registrar's state.
#[derive(Clone, Debug, Default)]
pub(crate) struct CoreBinding {
    /// The registered Contact (lower case): a request from the core addressed to it is for
    /// this UE.
    pub contact: Option<String>,
    /// Our Path entry's user part: a request from the core carrying it is for this UE.
    pub path_token: String,
    /// The Service-Route the S-CSCF gave (the Route set of the UE's requests).
    pub service_route: Vec<String>,
    /// The mechanism of the last challenge, for a new challenge to a REGISTER without one.
    pub chosen: Option<ChosenMechanism>,
}

/// Proxy mode's state in the core.
#[derive(Default)]
pub(crate) struct RelayState {
    relays: KeyedMap<TxId, Relay>,
    /// Path token -> IMPI key.
    by_path: KeyedMap<String, String>,
    /// IMPI key -> what the core told us.
    bindings: KeyedMap<String, CoreBinding>,
    /// Registered Contact (lower case) -> IMPI key.
    by_contact: KeyedMap<String, String>,
}

impl RelayState {
    /// Whether a REGISTER of registration `key` is being relayed now.
    pub fn relaying_for(&self, key: &str) -> bool {
        self.relays.values().any(|r| r.key == key)
    }

    /// Registration `key` is gone.
    pub fn forget(&mut self, key: &str) {
        if let Some(b) = self.bindings.remove(key) {
            self.by_path.remove(&b.path_token);
            if let Some(c) = b.contact {
                self.by_contact.remove(&c);
            }
        }
    }

    /// The registration a request from the core is for: the Path token in its Route
    /// (initial requests, TS 24.229 5.2.7), else its Request-URI among registered contacts.
    fn key_for(&self, up: &crate::upstream::Upstream, msg: &Message<'_>) -> Option<String> {
        msg.list_values(HeaderKind::Route)
            .filter_map(Result::ok)
            .find_map(|r| up.path_token(r))
            .and_then(|t| self.by_path.get(t))
            .or_else(|| {
                let uri = msg.request_uri()?.to_ascii_lowercase();
                self.by_contact.get(&uri)
            })
            .cloned()
    }
}

/// The quiet choice of a REGISTER's Security-Client (protected REGISTERs: no 494 over SAs).
fn quiet_choice(core: &Core, msg: &Message<'_>) -> Option<ChosenMechanism> {
    choose_security_client(msg, &core.shared.cfg.profile)
        .ok()
        .flatten()
}

impl Core {
    /// A REGISTER from a UE in proxy mode (see the module documentation).
    pub(crate) fn relay_register(
        &mut self,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        let Some((_, impi)) = self.register_identity(req, now, out) else {
            return;
        };
        let key = impi.to_ascii_lowercase();
        // Which set did it come through? Decided by the SA, never by the port.
        let through = match req.via_spi {
            None => Through::Unprotected,
            Some(spi) => match self.registrar.key_of_spi(spi) {
                Some(k) if k == key => match self.registrar.kind_of(&key, spi) {
                    Some(SetKind::Pending) => Through::Pending,
                    Some(SetKind::Active) => Through::Active,
                    _ => return self.shared.respond(req, 403, "Forbidden", &[], now, out),
                },
                // Through another UE's SA, or one we no longer know (a UE never speaks for
                // another, TS 24.229 5.2.6.1).
                _ => return self.shared.respond(req, 403, "Forbidden", &[], now, out),
            },
        };
        let (chosen, flow_bound) = match through {
            Through::Unprotected => {
                // The same bounds on unauthenticated work as in embedded mode (issue 14):
                // a flood must not reach the core either.
                if !self.admit_unauthenticated(req, now, out) {
                    return;
                }
                if self.missing_sec_agree(req, now, out) {
                    return;
                }
                let exempt = self.registrar.has_pending_for(&key, req.flow.ue);
                if !self.room_for_challenge(req, exempt, now, out) {
                    return;
                }
                match self.choose_offer(req, now, out) {
                    None => return,
                    Some(c) => (c.clone(), c.is_none()),
                }
            }
            Through::Pending => {
                let spi = req.via_spi.unwrap_or_default();
                let Some(p) = self.registrar.pending_of_spi(&key, spi) else {
                    return self.shared.respond(req, 403, "Forbidden", &[], now, out);
                };
                let flow_bound = p.bound_flow.is_some();
                if p.security_server
                    .as_ref()
                    .is_some_and(|s| !verify_matches(msg, s))
                {
                    self.shared
                        .respond(req, 403, "Security-Verify mismatch", &[], now, out);
                    if let Some(set) = self.registrar.fail_pending(&key, spi) {
                        self.shared.remove_set(&set, out);
                    }
                    self.forget_if_gone(&key);
                    return self.rearm(&key);
                }
                (quiet_choice(self, msg), flow_bound)
            }
            Through::Active => {
                let Some(sent) = self.registrar.active_security_server(&key) else {
                    return self.shared.respond(req, 403, "Forbidden", &[], now, out);
                };
                if sent.is_some_and(|s| !verify_matches(msg, s)) {
                    return self.shared.respond(
                        req,
                        403,
                        "Security-Verify mismatch",
                        &[],
                        now,
                        out,
                    );
                }
                let flow_bound = sent.is_none_or(|s| s.name == TLS_MECHANISM);
                if let Some(spi) = req.via_spi {
                    self.cx().note_traffic(&key, spi, out);
                }
                (quiet_choice(self, msg), flow_bound)
            }
        };
        let max_forwards = match msg.max_forwards() {
            Ok(None) => 70,
            // RFC 3261 16.3 step 3.
            Ok(Some(0)) => {
                return self
                    .shared
                    .respond(req, 483, "Too Many Hops", &[], now, out)
            }
            Ok(Some(n)) => n - 1,
            Err(_) => {
                return self
                    .shared
                    .respond(req, 400, "Bad Max-Forwards", &[], now, out)
            }
        };
        let Some(up) = self.shared.cfg.upstream.clone() else {
            return;
        };
        // A registration keeps its Path token; a new one is kept only once the REGISTER
        // leaves, and forgotten if no registration comes of it.
        let existing = self.relay.bindings.get(&key).map(|b| b.path_token.clone());
        let token = match &existing {
            Some(t) => t.clone(),
            None => format!("r{}", self.shared.token(8)),
        };
        // With shards the Path names ours: the S-CSCF routes terminating requests along it
        // (RFC 3327 5.3, TS 24.229 5.4.3.3), and the workers' router reads the tag.
        let path = format!(
            "sip:{token}@{};lr{}",
            up.sent_by(),
            self.shared.shard_param()
        );
        let icid = self.shared.token(16);
        let generated_at = crate::proxy::host(up.local.ip());
        let hop = RegisterHop {
            impi: &impi,
            integrity: match through {
                Through::Unprotected => Integrity::No,
                _ => Integrity::Yes,
            },
            path: &path,
            icid: &icid,
            icid_generated_at: &generated_at,
            visited_network_id: &up.visited_network_id,
            max_forwards,
        };
        let Some(request) = forward_register(msg, &hop) else {
            return self
                .shared
                .respond(req, 400, "Bad Authorization", &[], now, out);
        };
        if let Some(info) = self.shared.txs.get_mut(&req.tx) {
            info.request = Some(msg.noted_bytes());
        }
        if existing.is_none() {
            self.relay.by_path.insert(token.clone(), key.clone());
            self.relay.bindings.insert(
                key.clone(),
                CoreBinding {
                    path_token: token,
                    ..CoreBinding::default()
                },
            );
        }
        let relay = Relay {
            server: req.tx,
            key,
            impi: impi.into_owned(),
            flow: req.flow,
            via_spi: req.via_spi,
            through,
            chosen,
            flow_bound,
            tls: flow_bound && self.agrees_tls(req),
            contact: contact_uri(msg),
            request,
            order: self.shared.hops.order(&up.next_hops, now),
            hop: 0,
            hop_deadline: None,
        };
        self.send_relay(relay, now, out);
    }

    /// Sends `relay`'s REGISTER to its next hop (or the first after it that takes it) with
    /// our Via on top; answers the UE 503 when no next hop is left.
    fn send_relay(&mut self, mut relay: Relay, now: Instant, out: &mut Vec<WorkerCommand>) {
        let Some(up) = self.shared.cfg.upstream.clone() else {
            return;
        };
        let Ok(base) = Message::parse(&relay.request) else {
            return;
        };
        // Our Via adds at most this much; the transport follows the size with it.
        let via_room = 120;
        while let Some(&index) = relay.order.get(relay.hop) {
            let Some(flow) = up.flow_to(index, relay.request.len() + via_room) else {
                break;
            };
            let branch = self.shared.branch();
            let mut e = MessageEdit::new(&base);
            e.push_front(
                "Via",
                format!(
                    "SIP/2.0/{} {};branch={branch};rport",
                    flow.proto.via_token(),
                    up.sent_by()
                ),
            );
            if let Some(id) = self.shared.send_request(e.to_bytes(), flow, now, out) {
                // RFC 3263 4.3: a hop that stays silent is given up on before Timer F when
                // another hop is left to try.
                relay.hop_deadline =
                    (relay.hop + 1 < relay.order.len()).then(|| now + up.hop_timeout);
                self.shared
                    .arm(TimerKey::HopTimeout(id), None, relay.hop_deadline);
                self.relay.relays.insert(id, relay);
                return;
            }
            self.shared
                .hops
                .mark_down(up.next_hops[index].addr, now, up.hop_holddown);
            relay.hop += 1;
        }
        self.relay_failed(&relay, 503, "Service Unavailable", now, out);
    }

    /// The relay of `relay` ends without an answer from the core: the UE gets `code`
    /// (RFC 3261 16.7 step 6 / 16.8), a challenge it was answering is dropped.
    fn relay_failed(
        &mut self,
        relay: &Relay,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        tracing::warn!(
            "REGISTER of {} not answered by any core next hop: {code}",
            relay.impi
        );
        let (proxy, mut cx) = self.proxy_cx();
        proxy.fail_server(&mut cx, relay.server, code, reason, now, out);
        if relay.through == Through::Pending {
            self.drop_pending(relay, out);
        }
        self.forget_if_gone(&relay.key);
    }

    /// Drops the pending set `relay`'s REGISTER came through (after what `out` holds).
    fn drop_pending(&mut self, relay: &Relay, out: &mut Vec<WorkerCommand>) {
        let (key, spi) = (relay.key.as_str(), relay.via_spi.unwrap_or_default());
        if let Some(set) = self.registrar.fail_pending(key, spi) {
            self.shared.remove_set(&set, out);
        }
        self.forget_if_gone(key);
        self.rearm(key);
    }

    /// Forgets proxy mode's binding of `key` when the registrar no longer has it.
    fn forget_if_gone(&mut self, key: &str) {
        if self.registrar.impi(key).is_none() {
            self.relay.forget(key);
        }
    }

    /// Whether client transaction `id` carries a relayed REGISTER.
    pub(crate) fn is_relay(&self, id: TxId) -> bool {
        self.relay.relays.contains_key(&id)
    }

    /// A transaction event of a relayed REGISTER.
    pub(crate) fn on_relay_event(
        &mut self,
        id: TxId,
        ev: TxEvent,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        match ev {
            TxEvent::Response(mut bytes) => {
                self.on_relay_response(id, &bytes, now, out);
                // A 401 from the core carried CK and IK.
                bytes.zeroize();
            }
            TxEvent::Timeout => {
                self.shared.stats.transaction_timeouts += 1;
                self.relay_failover(id, "timed out", now, out);
            }
            TxEvent::Terminated => {
                self.relay.relays.remove(&id);
                self.shared.txs.remove(&id);
            }
        }
    }

    /// Client transaction `id` failed (timeout, transport, or its hop stayed silent past
    /// `hop-timeout`): the hop is avoided for a while and the next next hop gets the
    /// REGISTER (RFC 3263 4.3), or the UE 408 when none is left (RFC 3261 16.8).
    fn relay_failover(&mut self, id: TxId, why: &str, now: Instant, out: &mut Vec<WorkerCommand>) {
        let Some(mut relay) = self.relay.relays.remove(&id) else {
            return;
        };
        self.shared
            .arm(TimerKey::HopTimeout(id), relay.hop_deadline.take(), None);
        self.shared.txl.abandon(id);
        self.shared.txs.remove(&id);
        if let Some(up) = self.shared.cfg.upstream.clone() {
            let hop = relay
                .order
                .get(relay.hop)
                .and_then(|&i| up.next_hops.get(i));
            if let Some(hop) = hop {
                self.shared.hops.mark_down(hop.addr, now, up.hop_holddown);
            }
        }
        relay.hop += 1;
        tracing::debug!("REGISTER of {} to the core {why}", relay.impi);
        if relay.hop < relay.order.len() {
            self.shared.stats.core_failovers += 1;
            return self.send_relay(relay, now, out);
        }
        self.shared.stats.core_timeouts += 1;
        self.relay_failed(&relay, 408, "Request Timeout", now, out);
    }

    /// The hop a relayed REGISTER went to gave no answer at all within `hop-timeout`.
    pub(crate) fn on_hop_timeout(&mut self, id: TxId, now: Instant, out: &mut Vec<WorkerCommand>) {
        let silent = self
            .relay
            .relays
            .get(&id)
            .and_then(|r| r.hop_deadline)
            .is_some_and(|d| d <= now);
        if silent {
            self.shared.stats.core_hop_timeouts += 1;
            self.relay_failover(id, "not answered within hop-timeout", now, out);
        }
    }

    /// A core-side flow could not be opened or lost what was written to it: every REGISTER
    /// waiting on it fails over at once.
    pub(crate) fn on_core_flow_failed(
        &mut self,
        flow: Flow,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        if let Some(up) = self.shared.cfg.upstream.clone() {
            let addr = std::net::SocketAddr::new(flow.ue, flow.ue_port);
            self.shared.hops.mark_down(addr, now, up.hop_holddown);
        }
        let mut ids: Vec<TxId> = self
            .relay
            .relays
            .keys()
            .copied()
            .filter(|id| self.shared.txs.get(id).is_some_and(|i| i.flow == flow))
            .collect();
        ids.sort();
        for id in ids {
            self.relay_failover(id, "could not be delivered", now, out);
        }
    }

    /// A response from the core to a relayed REGISTER.
    fn on_relay_response(
        &mut self,
        id: TxId,
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
        // The hop answered: it is alive, and this transaction runs its course there.
        if let Some(relay) = self.relay.relays.get_mut(&id) {
            let deadline = relay.hop_deadline.take();
            let hop = relay.order.get(relay.hop).copied();
            self.shared.arm(TimerKey::HopTimeout(id), deadline, None);
            let up = self.shared.cfg.upstream.clone();
            if let Some(h) = hop.and_then(|i| up.as_ref()?.next_hops.get(i).cloned()) {
                self.shared.hops.mark_up(h.addr);
            }
        }
        if code < 200 {
            // RFC 3261 16.7 step 5: 100 stays here; other provisionals go on.
            if let (true, Some(server)) = (code > 100, self.relay.relays.get(&id).map(|r| r.server))
            {
                self.relay_as_is(server, &msg, now, out);
            }
            return;
        }
        let Some(relay) = self.relay.relays.remove(&id) else {
            return;
        };
        match code {
            401 => self.relay_challenge(&relay, &msg, now, out),
            200..=299 => self.relay_ok(&relay, &msg, now, out),
            _ => {
                // 403 / 404 / 5xx ...: the UE learns it; its attempt's set goes.
                self.relay_as_is(relay.server, &msg, now, out);
                if relay.through == Through::Pending {
                    self.drop_pending(&relay, out);
                }
                self.forget_if_gone(&relay.key);
            }
        }
    }

    /// Sends a core response to the UE without our Via (RFC 3261 16.7 step 3).
    fn relay_as_is(
        &mut self,
        server: TxId,
        msg: &Message<'_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let mut e = MessageEdit::new(msg);
        e.pop_first_element("Via");
        self.shared.send_response(server, e.to_bytes(), now, out);
    }

    /// The S-CSCF's 401: CK and IK out, SA set in, Security-Server on, 401 to the UE
    /// (TS 24.229 5.2.2.1, TS 33.203 7.1). Without usable keys the UE gets 500 and nothing
    /// is installed.
    fn relay_challenge(
        &mut self,
        relay: &Relay,
        msg: &Message<'_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let keys = msg
            .header(HeaderKind::WwwAuthenticate)
            .ok_or(crate::upstream::KeyExtractError::NoChallenge)
            .and_then(take_keys);
        let (www, ck, ik) = match keys {
            Ok(k) => k,
            Err(e) => {
                self.shared.stats.core_challenges_without_keys += 1;
                tracing::warn!(
                    "401 from the core for {} has no usable CK/IK ({e}); the UE gets 500",
                    relay.impi
                );
                return self.relay_failed(relay, 500, "Server Internal Error", now, out);
            }
        };
        let remembered = self
            .relay
            .bindings
            .get(&relay.key)
            .and_then(|b| b.chosen.clone());
        let chosen = relay.chosen.clone().or(remembered);
        if chosen.is_none() && !relay.flow_bound {
            tracing::warn!(
                "401 for {}: no sec-agree mechanism to build SAs from",
                relay.impi
            );
            return self.relay_failed(relay, 500, "Server Internal Error", now, out);
        }
        let chosen = chosen.filter(|_| !relay.flow_bound);
        let (set, server) =
            match new_sa_set(&mut self.shared, relay.flow, chosen.as_ref(), &ck, &ik) {
                Ok(s) => s,
                Err(NoSet { code, reason }) => {
                    return self.relay_failed(relay, code, reason, now, out)
                }
            };
        let server = server.or_else(|| relay.tls.then(tls_security_server));
        let nonce = DigestParams::parse(&www)
            .ok()
            .and_then(|p| p.get("nonce").map(str::to_string))
            .unwrap_or_default();
        let (rand, autn) = AkaNonce::decode(&nonce)
            .map(|n| (n.rand, *n.autn.as_bytes()))
            .unwrap_or_default();
        let mut e = MessageEdit::new(msg);
        e.pop_first_element("Via");
        e.replace("WWW-Authenticate", www);
        if chosen.is_some() {
            // TS 33.203 7.1: the SAs exist before the UE can use them.
            out.push(WorkerCommand::InstallSaSet(Box::new(set.clone())));
        }
        if let Some(s) = &server {
            e.push("Security-Server", s.render());
        }
        self.shared
            .send_response(relay.server, e.to_bytes(), now, out);
        // The S-CSCF checks the answer; this XRES is random so no digest could ever match
        // it should embedded-mode code look at a relayed challenge.
        let mut unguessable = [0u8; 16];
        self.shared.rng.fill_bytes(&mut unguessable);
        let Ok(xres) = Res::new(&unguessable) else {
            return;
        };
        let vector = AuthVector {
            rand,
            xres,
            ck,
            ik,
            autn: Autn::from_bytes(autn),
        };
        let pending = Pending {
            set,
            security_server: server,
            nonce: nonce.into(),
            vector: Arc::new(vector),
            issued: now,
            ticket: None,
            deadline: now + self.shared.cfg.challenge_timeout,
            bound_flow: relay.flow_bound.then_some(relay.flow),
        };
        let impus = self
            .registrar
            .impus(&relay.key)
            .unwrap_or_default()
            .to_vec();
        let max = self.shared.cfg.max_pending_per_impi;
        let displaced = self
            .registrar
            .challenged(&relay.key, &relay.impi, &impus, pending, max);
        if let Some(b) = self.relay.bindings.get_mut(&relay.key) {
            b.chosen = chosen;
        }
        self.shared.stats.challenges_evicted += displaced.evicted.len() as u64;
        for old in displaced.replaced.iter().chain(&displaced.evicted) {
            self.shared.remove_set(old, out);
        }
        self.rearm(&relay.key);
    }

    /// The S-CSCF's 2xx: the pending set becomes active with the lifetime, Service-Route
    /// and associated identities the core granted; a refresh renews the binding; a lifetime
    /// of 0 de-registers (the 200 leaves through the SAs, then they go).
    fn relay_ok(
        &mut self,
        relay: &Relay,
        msg: &Message<'_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let facts = registration_facts(msg, relay.contact.as_deref());
        let key = relay.key.as_str();
        let expires_at = now + Duration::from_secs(u64::from(facts.expires));
        if relay.through == Through::Unprotected {
            // The core registered a UE it did not challenge: nothing is bound here, and the
            // UE has no SAs to send anything else through.
            tracing::warn!("core accepted an unprotected REGISTER of {}", relay.impi);
            self.relay_as_is(relay.server, msg, now, out);
            return self.forget_if_gone(key);
        }
        if facts.expires == 0 {
            self.relay_as_is(relay.server, msg, now, out);
            self.on_registration_ending(key, RegEnd::Deregistered, now, out);
            self.drop_registration(key, out);
            self.relay.forget(key);
            return;
        }
        let contact = relay.contact.clone().unwrap_or_default();
        let superseded = match relay.through {
            Through::Pending => {
                let spi = relay.via_spi.unwrap_or_default();
                self.registrar
                    .complete(key, spi, contact, relay.flow.proto, expires_at)
                    .unwrap_or_default()
            }
            _ => {
                self.registrar
                    .refresh(key, relay.contact.clone(), expires_at);
                Vec::new()
            }
        };
        if relay.through == Through::Pending && facts.service_route.is_empty() {
            // TS 24.229 5.4.1.2.2: the S-CSCF returns a Service-Route; without one the UE's
            // requests go to the first next hop.
            self.shared.stats.core_ok_without_service_route += 1;
            tracing::warn!("200 from the core for {} has no Service-Route", relay.impi);
        }
        if !facts.associated_uris.is_empty() {
            self.registrar.set_impus(key, facts.associated_uris);
        }
        let contact = relay.contact.as_ref().map(|c| c.to_ascii_lowercase());
        if let Some(b) = self.relay.bindings.get_mut(key) {
            b.service_route = facts.service_route;
            if let Some(old) = std::mem::replace(&mut b.contact, contact.clone()) {
                self.relay.by_contact.remove(&old);
            }
            if let Some(c) = contact {
                self.relay.by_contact.insert(c, key.to_string());
            }
        }
        self.relay_as_is(relay.server, msg, now, out);
        self.on_registered(key, now, out);
        if relay.through == Through::Pending {
            self.subscribe_reg_event(key, now, out);
        }
        for old in &superseded {
            self.shared.remove_set(old, out);
        }
        self.rearm(key);
    }

    /// SIP from the core side: only from trusted addresses; responses go to their client
    /// transactions (whose events the relay handles). Requests from the core are not routed
    /// to UEs yet: OPTIONS is answered 200 (the core's health check), the rest 501.
    pub(crate) fn on_core_sip(&mut self, sip: &SipIn, now: Instant, out: &mut Vec<WorkerCommand>) {
        let trusted = self
            .shared
            .cfg
            .upstream
            .as_ref()
            .is_some_and(|u| u.trusts(sip.flow.ue));
        if !trusted {
            self.shared.stats.core_untrusted_dropped += 1;
            tracing::debug!(
                "SIP on the core side from untrusted {} dropped",
                sip.flow.ue
            );
            return;
        }
        let Ok(msg) = Message::parse(&sip.bytes) else {
            return self.on_malformed_core(&sip.bytes);
        };
        if msg.validate().is_err() {
            return self.on_malformed_core(&sip.bytes);
        }
        match self.shared.txl.handle_message(&msg, peer_of(sip.flow), now) {
            Ok(Incoming::Response(_)) => self.shared.flush(out),
            Ok(Incoming::NewRequest(id)) => {
                self.shared.txs.insert(
                    id,
                    TxInfo {
                        flow: sip.flow,
                        connect_if_absent: false,
                        request: None,
                    },
                );
                let req = Req {
                    msg: &msg,
                    flow: sip.flow,
                    via_spi: None,
                    tx: id,
                };
                self.on_core_request(&req, now, out);
            }
            Ok(Incoming::Absorbed(_)) => {
                self.shared.stats.retransmissions_absorbed += 1;
                self.shared.flush(out);
            }
            Ok(Incoming::Stray) if msg.is_request() => {
                // An ACK for a 2xx: along the dialog to its UE (RFC 3261 16.11).
                let key = self.core_key(&msg);
                if let (Some(key), Some("ACK")) = (key, msg.method()) {
                    let (proxy, mut cx) = self.proxy_cx();
                    proxy.terminate_ack(&mut cx, &msg, &key, out);
                }
                // (An anonymous emergency caller gets no ACK for a 2xx: it is the caller.)
            }
            Ok(Incoming::Stray) => {
                let (proxy, mut cx) = self.proxy_cx();
                proxy.on_stray_response(&mut cx, &msg, out);
            }
            Err(_) => self.on_malformed_core(&sip.bytes),
        }
    }

    /// The registration a request from the core is for (Path token, dialog, contact).
    fn core_key(&self, msg: &Message<'_>) -> Option<String> {
        let up = self.shared.cfg.upstream.as_ref()?;
        self.relay
            .key_for(up, msg)
            .or_else(|| self.proxy.core_dialog_key(msg).map(str::to_string))
    }

    /// A new request from the core: to the UE it is for (TS 24.229 5.2.7); OPTIONS to us is
    /// the core's health check (200); anything for nobody here gets 404 (481 in a dialog).
    fn on_core_request(&mut self, req: &Req<'_, '_>, now: Instant, out: &mut Vec<WorkerCommand>) {
        let msg = req.msg;
        let sub_key = msg
            .call_id()
            .ok()
            .filter(|_| super::regsub::is_reg_notify(msg))
            .and_then(|c| self.reg_subs.key_of(c))
            .map(str::to_string);
        if let Some(key) = sub_key {
            return self.on_reg_notify(req, &key, now, out);
        }
        let ended = msg
            .call_id()
            .is_ok_and(|c| super::regsub::is_reg_notify(msg) && self.reg_subs.ended(c));
        if ended {
            // The S-CSCF's last word on a registration that already ended here.
            return self.shared.respond(req, 200, "OK", &[], now, out);
        }
        if let Some(key) = self.core_key(msg) {
            let (proxy, mut cx) = self.proxy_cx();
            return proxy.terminate(&mut cx, req, &key, now, out);
        }
        if let Some(flow) = self.proxy.anonymous_emergency_flow(msg) {
            let (proxy, mut cx) = self.proxy_cx();
            return proxy.terminate_anonymous(&mut cx, req, flow, now, out);
        }
        let in_dialog = msg.to_header().is_ok_and(|t| t.tag().is_some());
        let (code, reason) = match msg.method() {
            Some("OPTIONS") if !in_dialog => (200, "OK"),
            _ if in_dialog => (481, "Call/Transaction Does Not Exist"),
            _ => (404, "Not Found"),
        };
        if code != 200 {
            self.shared.stats.core_requests_unroutable += 1;
        }
        self.shared.respond(req, code, reason, &[], now, out);
    }

    /// A request (not REGISTER) from a UE in proxy mode: through the SAs of a registered UE
    /// to the core along its Service-Route (TS 24.229 5.2.6); anything else 403.
    pub(crate) fn originate_from_ue(
        &mut self,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let (proxy, mut cx) = self.proxy_cx();
        let Some((key, spi)) = proxy.sender_of(&cx, req.via_spi) else {
            // An in-dialog request of an anonymous emergency session, from its caller.
            let caller = proxy
                .anonymous_emergency_flow(req.msg)
                .filter(|f| req.via_spi.is_none() && f.ue == req.flow.ue);
            if caller.is_some() {
                return proxy.originate_emergency(&mut cx, req, None, now, out);
            }
            return self.shared.respond(req, 403, "Forbidden", &[], now, out);
        };
        let route = self
            .relay
            .bindings
            .get(&key)
            .map(|b| b.service_route.clone())
            .unwrap_or_default();
        let (proxy, mut cx) = self.proxy_cx();
        cx.note_traffic(&key, spi, out);
        proxy.originate(&mut cx, req, &key, &route, now, out);
    }

    /// An ACK for a 2xx from a UE in proxy mode (RFC 3261 16.11).
    pub(crate) fn originate_ack_from_ue(
        &mut self,
        msg: &Message<'_>,
        sip: &SipIn,
        out: &mut Vec<WorkerCommand>,
    ) {
        if msg.method() != Some("ACK") {
            return;
        }
        let (proxy, mut cx) = self.proxy_cx();
        let access_local = match proxy.sender_of(&cx, sip.via_spi) {
            Some((key, spi)) => {
                cx.note_traffic(&key, spi, out);
                cx.registrar.binding(&key).map(|b| b.set.local)
            }
            // The ACK of an anonymous emergency session, from its caller's address.
            None => proxy
                .anonymous_emergency_flow(msg)
                .filter(|f| sip.via_spi.is_none() && f.ue == sip.flow.ue)
                .map(|f| f.local),
        };
        if let Some(local) = access_local {
            proxy.originate_ack(&mut cx, msg, local, out);
        }
    }

    fn on_malformed_core(&mut self, raw: &[u8]) {
        if raw.starts_with(b"SIP/") {
            self.shared.stats.malformed_responses += 1;
        } else {
            self.shared.stats.malformed_requests += 1;
        }
    }
}
