//! The sans-IO slowpath core: worker events and time in, worker commands out. It owns the
//! registrar (sec-agree, IMS-AKA, SA sets), the embedded HSS, the proxy's routing state and
//! the RFC 3261 17 transaction layer every message passes through. It never touches a file:
//! SQN advances come out as records ([`Core::poll_persist`]) and each challenge is held until
//! its owner reports them durable ([`Core::on_durable`]).

mod decoy;
mod emergency;
mod register;
mod regsub;
mod relay;
mod saset;

use decoy::DecoyKey;
use relay::RelayState;

pub use crate::context::{CoreConfig, CoreStats, Withheld};

use std::sync::Arc;
use std::time::Instant;

use akagate_proto::ipc::{Flow, SipIn, WorkerCommand, WorkerEvent};
use akagate_proto::spi::SpiAllocator;
use rand::RngCore;

use crate::context::{peer_of, rearm, Cx, Req, Shared, TimerKey, TxInfo};
use crate::hss::{Hss, PersistRecord, PersistTicket};
use crate::proxy::{Proxy, RegEnd};
use crate::registrar::{
    self, PersistedRegistration, Registrar, RegistrationChange, RegistrationView, RestoreError,
};
use crate::sip::transaction::Incoming;
use crate::sip::{response_to, Message, MessageBuilder};

/// The slowpath state machine (`handle`, `handle_timeout`, `poll_timeout`; `poll_persist` and
/// `on_durable` for SQN durability), no I/O.
pub struct Core {
    /// What every part of the core uses: configuration, transactions, timers, counters.
    pub(crate) shared: Shared,
    pub(crate) hss: Hss,
    /// Every registration and its SA sets.
    pub(crate) registrar: Registrar,
    /// Dialogs, forwarded transactions, reg-event subscriptions and keep-alives.
    pub(crate) proxy: Proxy,
    /// Makes the challenges of unknown IMPIs recognisable without state (`decoy`).
    pub(crate) decoy_key: DecoyKey,
    /// Proxy mode: REGISTERs relayed to the IMS core and what the core granted.
    pub(crate) relay: RelayState,
    /// Proxy mode: our reg-event subscriptions at the S-CSCF.
    pub(crate) reg_subs: regsub::RegSubs,
    /// Registrations made without authentication for emergency sessions only.
    pub(crate) emergency_only: akagate_proto::hash::KeyedSet<String>,
    /// H(A2) of the last completing REGISTER's digest `uri` (the same for a realm's UEs).
    pub(crate) register_ha2: crate::aka::Ha2Cache,
    /// The 200's Path and Service-Route to a registration (TS 24.229 5.2.2.1), which name
    /// only the configuration's host: rendered once, copied whole into each 200.
    pub(crate) registered_routes: crate::sip::builder::HeaderLines,
}

impl core::fmt::Debug for Core {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Core")
            .field("registrations", &self.registrar.len())
            .field("dialogs", &self.proxy.dialogs())
            .field("transactions", &self.shared.txl.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core over an HSS, the SA table's SPI allocator and a random source (RAND, tags, branches).
    pub fn new(
        cfg: CoreConfig,
        hss: Hss,
        spis: Arc<dyn SpiAllocator>,
        mut rng: Box<dyn RngCore + Send>,
    ) -> Self {
        let decoy_key = DecoyKey::new(&mut *rng);
        // At most one registration per subscriber (emergency ones without authentication
        // aside): room for all of them up front.
        let registrar = Registrar::with_capacity(hss.len());
        let registered_routes = register::registered_routes(&cfg.pcscf_host);
        Core {
            decoy_key,
            shared: Shared::new(cfg, spis, rng),
            hss,
            registrar,
            proxy: Proxy::default(),
            relay: RelayState::default(),
            reg_subs: regsub::RegSubs::default(),
            emergency_only: akagate_proto::hash::keyed_set(),
            register_ha2: crate::aka::Ha2Cache::default(),
            registered_routes,
        }
    }

    /// The context of a handler outside the core's own state.
    pub(crate) fn cx(&mut self) -> Cx<'_> {
        Cx {
            shared: &mut self.shared,
            registrar: &mut self.registrar,
            hss: &self.hss,
        }
    }

    /// The proxy and the context its handlers work in.
    pub(crate) fn proxy_cx(&mut self) -> (&mut Proxy, Cx<'_>) {
        let cx = Cx {
            shared: &mut self.shared,
            registrar: &mut self.registrar,
            hss: &self.hss,
        };
        (&mut self.proxy, cx)
    }

    /// The HSS (e.g. for `akactl` queries).
    pub fn hss(&self) -> &Hss {
        &self.hss
    }

    /// The oldest SQN record not yet taken, in the order the SQNs were handed out (none
    /// unless the HSS persists SQNs, [`Hss::with_sqn_state`]). Write it durably, then report
    /// its ticket to [`Core::on_durable`]: until then its challenge stays in the core.
    pub fn poll_persist(&mut self) -> Option<PersistRecord> {
        self.hss.poll_persist()
    }

    /// Every record up to `ticket` is durable (or the whole SQN state was rewritten from
    /// [`Hss::sqn_state`]): the challenges waiting for them leave now, in the order they were
    /// made, with whatever followed them. Challenges are made again if a failure had
    /// stopped them.
    pub fn on_durable(&mut self, ticket: PersistTicket) -> Vec<WorkerCommand> {
        self.hss.on_durable();
        self.shared.held.release(ticket)
    }

    /// The records up to `ticket` could not be made durable: their challenges must never
    /// leave (TS 33.102 6.3.2) and are dropped; the commands that followed them carry no SQN
    /// and are returned. New challenges fail (500) until [`Core::on_durable`].
    pub fn on_persist_failed(&mut self, ticket: PersistTicket) -> Withheld {
        self.hss.on_persist_failed();
        self.shared.held.withhold(ticket)
    }

    /// The registrations whose binding changed since the last call, as a registration store
    /// must now hold them (issue 14: registrations survive a restart). `now` and `wall` are
    /// the same instant on the monotonic and the wall clock. Write them in the same group
    /// commit as the SQN records, before the batch's commands leave (the 200 OK).
    pub fn take_registration_changes(
        &mut self,
        now: Instant,
        wall: std::time::SystemTime,
    ) -> Vec<RegistrationChange> {
        self.registrar.take_changes(now, wall)
    }

    /// [`Core::take_registration_changes`] appended to `set`, the records written into its
    /// shared buffer (no allocation per record; the daemon's group commit reuses one set).
    pub fn take_registration_changes_into(
        &mut self,
        now: Instant,
        wall: std::time::SystemTime,
        set: &mut crate::registrar::ChangeSet,
    ) {
        self.registrar.take_changes_into(now, wall, set);
    }

    /// Every registration registered over SAs as a store keeps it, in its owned form (what
    /// the records of [`Core::take_registration_changes`] decode to), by key.
    pub fn registration_records(
        &self,
        now: Instant,
        wall: std::time::SystemTime,
    ) -> Vec<PersistedRegistration> {
        self.registrar.persisted_all(now, wall)
    }

    /// Keeps the registrations' changes for [`Core::take_registration_changes`] from now on
    /// (call it when a registration store is attached; without, nothing is kept).
    pub fn track_registration_changes(&mut self) {
        self.registrar.track_changes();
    }

    /// Whether [`Core::take_registration_changes`] has anything.
    pub fn has_registration_changes(&self) -> bool {
        self.registrar.has_changes()
    }

    /// At start, before any event: takes back the registrations a store kept (their SPIs
    /// already reserved in the SA table, their sets installed by the caller), each
    /// registered until its expiry with its deadline armed. Returns, per record, whether it
    /// was restored.
    pub fn restore_registrations(
        &mut self,
        records: &[PersistedRegistration],
        now: Instant,
        wall: std::time::SystemTime,
    ) -> Vec<Result<(), RestoreError>> {
        let results = records
            .iter()
            .map(|r| {
                self.registrar.restore(r, now, wall)?;
                self.rearm(&r.key);
                Ok(())
            })
            .collect();
        // With shards, the other shards find the restored UEs too.
        self.registrar.publish();
        results
    }

    /// Number of commands waiting for durability.
    pub fn held(&self) -> usize {
        self.shared.held.len()
    }

    /// Holds `actions` until `ticket` is durable (`None`: they leave now), after a challenge
    /// whose 401 already waits for it.
    pub(crate) fn after_challenge(
        &mut self,
        ticket: Option<PersistTicket>,
        actions: Vec<WorkerCommand>,
        out: &mut Vec<WorkerCommand>,
    ) {
        match ticket {
            Some(t) => actions
                .into_iter()
                .for_each(|a| self.shared.held.hold(t, a, false)),
            None => out.extend(actions),
        }
    }

    /// Number of registrations with an active (200 OK'd) SA set.
    pub fn registered(&self) -> usize {
        self.registrar.registered()
    }

    /// Every registration with its SA sets, ordered by IMPI; times are relative to `now`
    /// (`akactl sas`, `akactl registrations`).
    pub fn registrations_view(&self, now: Instant) -> Vec<RegistrationView<'_>> {
        self.registrar.view(now)
    }

    /// Drop and absorption counters.
    pub fn stats(&self) -> CoreStats {
        self.shared.stats
    }

    /// Number of live SIP transactions.
    pub fn transactions(&self) -> usize {
        self.shared.txl.len()
    }

    /// Number of dialogs (and INVITEs establishing one) between registered UEs.
    pub fn dialogs(&self) -> usize {
        self.proxy.dialogs()
    }

    /// Number of live reg-event subscriptions.
    pub fn reg_subscriptions(&self) -> usize {
        self.proxy.reg_subscriptions()
    }

    /// When the UE registered as `impi` last answered an OPTIONS keep-alive.
    pub fn last_seen(&self, impi: &str) -> Option<Instant> {
        self.proxy.last_seen(&impi.to_ascii_lowercase())
    }

    /// Registration `key` got its 200 OK (first registration, re-registration or refresh):
    /// reg-event subscribers learn of the refresh and keep-alives are armed.
    pub(crate) fn on_registered(&mut self, key: &str, now: Instant, out: &mut Vec<WorkerCommand>) {
        let (proxy, mut cx) = self.proxy_cx();
        proxy.notify_refreshed(&mut cx, key, now, out);
        proxy.arm_keepalive(&mut cx, key, now);
    }

    /// Registration `key` ends (`why`), while its SAs still exist: the last NOTIFYs and the
    /// BYEs of its dialogs leave first (TS 24.229 5.2.8.1.2, RFC 3680), then the caller
    /// removes the sets. Keep-alives stop.
    pub(crate) fn on_registration_ending(
        &mut self,
        key: &str,
        why: RegEnd,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        // Other shards holding calls with this UE release them too.
        self.registrar.announce_end(key, why);
        let (proxy, mut cx) = self.proxy_cx();
        proxy.notify_ended(&mut cx, key, why, now, out);
        proxy.release_dialogs(&mut cx, key, why, now, out);
        proxy.abandon_towards(&mut cx, key, now, out);
        proxy.forget_keepalive(&mut cx, key);
    }

    /// Proxy mode: the next hops and E-CSCFs as the daemon resolved them now (RFC 3263;
    /// names are re-resolved as their records expire). Transactions already under way keep
    /// their hop.
    pub fn set_next_hops(
        &mut self,
        next_hops: Vec<crate::upstream::NextHop>,
        emergency: Vec<crate::upstream::NextHop>,
    ) {
        if let Some(up) = self.shared.cfg.upstream.as_mut() {
            up.next_hops = next_hops;
            up.emergency_next_hops = emergency;
        }
    }

    /// Network-initiated de-registration by the operator (`akactl deregister`): the
    /// registration of `identity` (an IMPU or the IMPI) ends at once — its reg-event
    /// subscribers get a NOTIFY `deactivated` and its dialogs a BYE through its SAs, then the
    /// SAs are removed (TS 24.229 5.2.8.1.2 / 5.2.5.1). Returns its IMPI and the commands, or
    /// `None` when nothing of that identity is registered. In proxy mode the S-CSCF is not
    /// told: the UE's next REGISTER starts over.
    pub fn deregister_identity(
        &mut self,
        identity: &str,
        now: Instant,
    ) -> Option<(String, Vec<WorkerCommand>)> {
        let key = self.registrar.key_of_identity(identity)?.to_string();
        let impi = self.registrar.impi(&key).unwrap_or(&key).to_string();
        let mut out = Vec::new();
        self.shared.stats.operator_deregistrations += 1;
        self.on_registration_ending(&key, RegEnd::Deactivated, now, &mut out);
        self.drop_registration(&key, &mut out);
        self.process_events(now, &mut out);
        self.registrar.publish();
        Some((impi, out))
    }

    /// Handles one event from a worker.
    pub fn handle(&mut self, event: WorkerEvent, now: Instant) -> Vec<WorkerCommand> {
        let mut out = Vec::new();
        self.handle_into(event, now, &mut out);
        out
    }

    /// [`Core::handle`] appending the event's commands to `out` (the caller's list for a
    /// batch of events: no list allocated and freed per event).
    pub fn handle_into(&mut self, event: WorkerEvent, now: Instant, out: &mut Vec<WorkerCommand>) {
        match event {
            WorkerEvent::Sip(mut sip) => {
                // A flow-bound registration (no sec-agree): its flow stands for its set, as
                // an SA's SPI would (the fast path only sets `via_spi` for ESP).
                if sip.via_spi.is_none() {
                    sip.via_spi = self.registrar.spi_of_flow(&sip.flow);
                }
                self.on_sip(&sip, now, out);
                // Done with the message: its buffer goes back to the workers' queue
                // (`akagate_proto::msgbuf`) rather than to this thread's `free`.
                akagate_proto::msgbuf::recycle(sip.bytes);
            }
            // Connections come and go; registrations are bound to SAs, not to connections —
            // except a flow-bound one (no sec-agree), which is bound to its connection.
            WorkerEvent::TcpClosed(flow) => self.on_flow_closed(flow, now, out),
            // The requests waiting on a connection that could not be opened fail now, not
            // after timer B / F (RFC 3261 16.9).
            WorkerEvent::ConnectFailed(flow) | WorkerEvent::SendLost(flow)
                if self.is_core_flow(&flow) =>
            {
                self.on_core_flow_failed(flow, now, out)
            }
            WorkerEvent::ConnectFailed(flow) => {
                let (proxy, mut cx) = self.proxy_cx();
                proxy.on_connect_failed(&mut cx, flow, now, out);
            }
            // Requests lost to a reset are resent on a fresh connection, or fail now.
            WorkerEvent::SendLost(flow) => {
                let (proxy, mut cx) = self.proxy_cx();
                proxy.on_send_lost(&mut cx, flow, now, out);
            }
        }
        self.process_events(now, out);
        self.end_unreachable(now, out);
        self.registrar.publish();
    }

    /// Ends the core at the process's exit (the daemon's shutdown): every SA key of its
    /// registrations is zeroized, and the registrations and the HSS's IMPU index are left to
    /// the exit instead of freed a block at a time (about a dozen frees a registration,
    /// ~2.2k instructions: docs/BENCHMARKS.md round 28); the rest drops as usual, keys
    /// zeroizing themselves. The memory left is never returned: only where the process ends.
    pub fn release_at_exit(mut self) {
        self.registrar.forget_at_exit();
        self.hss.forget_impu_index_at_exit();
    }

    /// Several slowpath shards: this core publishes its registrations' bindings in
    /// `directory` and reaches the other shards' UEs through it (a call from one of its UEs
    /// to a UE of another shard, and that UE's answers and in-dialog requests, which the
    /// workers route here by our Via branch and Record-Route tags).
    pub fn attach_directory(
        &mut self,
        directory: Arc<crate::registrar::LocationDirectory>,
        shard: usize,
    ) {
        self.registrar.attach_directory(directory, shard);
    }

    /// With a directory: the first use of our UEs' new SA sets that other shards saw (a
    /// callee answering a call another shard owns) retires their old sets, as our own
    /// traffic would (TS 33.203 7.4); and the other shards' UEs whose registrations ended
    /// while this shard owned calls with them get those calls released (TS 24.229
    /// 5.2.8.1.2). Call it every loop turn; cheap when there is nothing.
    pub fn apply_remote_traffic(&mut self, now: Instant) -> Vec<WorkerCommand> {
        let mut out = Vec::new();
        for (key, spi) in self.registrar.take_remote_notes() {
            self.cx().note_traffic(&key, spi, &mut out);
        }
        // TS 24.229 5.2.8.1.2: a callee of another shard whose registration ended: the calls
        // this shard owns with it are released.
        let ended = self.registrar.take_ended();
        if !ended.is_empty() {
            for e in ended {
                self.registrar
                    .set_departing(e.last.map(|l| (e.key.clone(), l)));
                let (proxy, mut cx) = self.proxy_cx();
                proxy.release_dialogs(&mut cx, &e.key, e.why, now, &mut out);
                proxy.abandon_towards(&mut cx, &e.key, now, &mut out);
                self.registrar.set_departing(None);
            }
        }
        if !out.is_empty() {
            self.registrar.publish();
        }
        out
    }

    /// Ends the registrations whose keep-alives failed `keepalive_failures` times in a row:
    /// the UE is gone (TS 24.229 leaves the policy to the P-CSCF); its SAs go, reg-event
    /// subscribers learn `deactivated`.
    fn end_unreachable(&mut self, now: Instant, out: &mut Vec<WorkerCommand>) {
        for key in self.proxy.take_unreachable() {
            if self.registrar.binding(&key).is_none() {
                continue;
            }
            self.shared.stats.keepalive_deregistrations += 1;
            tracing::info!("{key}: keep-alives unanswered; registration ended");
            self.on_registration_ending(&key, RegEnd::Deactivated, now, out);
            self.drop_registration(&key, out);
        }
    }

    /// A TCP connection ended: a flow-bound registration (or challenge) on it ends with it
    /// (TS 24.229 5.2.2 binds such a UE to its flow; nothing can reach it any more, and the
    /// UE registers again on a new connection).
    fn on_flow_closed(&mut self, flow: Flow, now: Instant, out: &mut Vec<WorkerCommand>) {
        let Some(spi) = self.registrar.spi_of_flow(&flow) else {
            return;
        };
        let Some((key, kind)) = self
            .registrar
            .set_of_spi(spi)
            .map(|(k, kind)| (k.to_string(), kind))
        else {
            return;
        };
        match kind {
            registrar::SetKind::Active => {
                self.shared.stats.flow_registrations_closed += 1;
                self.on_registration_ending(&key, RegEnd::Deactivated, now, out);
                self.drop_registration(&key, out);
            }
            registrar::SetKind::Pending => {
                if let Some(set) = self.registrar.fail_pending(&key, spi) {
                    self.shared.remove_set(&set, out);
                }
                self.rearm(&key);
            }
            registrar::SetKind::Old => {}
        }
    }

    /// The registration of `req`'s sender if it is emergency-only and `req` opens no
    /// emergency session.
    fn emergency_only_sender(&self, req: &Req<'_, '_>) -> Option<String> {
        let key = self.registrar.key_of_spi(req.via_spi?)?;
        self.refused_as_emergency_only(key, req.msg)
            .then(|| key.to_string())
    }

    /// Whether `flow` is on the core side (proxy mode).
    fn is_core_flow(&self, flow: &Flow) -> bool {
        self.shared
            .cfg
            .upstream
            .as_ref()
            .is_some_and(|u| u.is_core_flow(flow))
    }

    fn on_sip(&mut self, sip: &SipIn, now: Instant, out: &mut Vec<WorkerCommand>) {
        if self.is_core_flow(&sip.flow) {
            return self.on_core_sip(sip, now, out);
        }
        // Read in place inside the parse's result: moving the message out of it copies its
        // header index (about 1.4 KiB) once more per message.
        let mut parsed = Message::parse(&sip.bytes);
        let msg = match &mut parsed {
            Ok(m) => m,
            Err(e) => return self.reject_malformed(&sip.bytes, None, *e, sip.flow, out),
        };
        if let Err(e) = msg.validate() {
            return self.reject_malformed(&sip.bytes, Some(msg), e, sip.flow, out);
        }
        if !msg.is_request() {
            let (proxy, mut cx) = self.proxy_cx();
            return proxy.on_response(&mut cx, msg, sip, now, out);
        }
        // RFC 3261 18.2.1, RFC 3581 4: note the source address for the top Via before the
        // request reaches a transaction, so every response (ours or relayed) carries it. The
        // note travels beside the request; its bytes are not copied (`ViaNote`).
        msg.set_via_note(crate::proxy::received_note(msg, sip.flow));
        let msg = &*msg;
        let id = match self.shared.txl.handle_message(msg, peer_of(sip.flow), now) {
            Ok(Incoming::NewRequest(id)) => id,
            Ok(Incoming::Absorbed(_)) => {
                self.shared.stats.retransmissions_absorbed += 1;
                return self.shared.flush(out);
            }
            Ok(Incoming::Stray) if self.shared.cfg.upstream.is_some() => {
                return self.originate_ack_from_ue(msg, sip, out);
            }
            Ok(Incoming::Stray) => {
                let (proxy, mut cx) = self.proxy_cx();
                return proxy.on_stray_request(&mut cx, msg, sip, now, out);
            }
            Ok(Incoming::Response(_)) => return,
            Err(e) => return self.reject_malformed(&sip.bytes, Some(msg), e, sip.flow, out),
        };
        self.shared.txs.insert(
            id,
            TxInfo {
                flow: sip.flow,
                connect_if_absent: false,
                request: None,
            },
        );
        // The server transaction may already have something queued (nothing today).
        self.shared.flush(out);
        let req = Req {
            msg,
            flow: sip.flow,
            via_spi: sip.via_spi,
            tx: id,
        };
        if msg.method() == Some("REGISTER") && self.shared.cfg.upstream.is_some() {
            self.relay_register(&req, now, out);
        } else if msg.method() == Some("REGISTER") {
            self.on_register(&req, now, out);
        } else if let Some(key) = self.emergency_only_sender(&req) {
            tracing::debug!("{key}: non-emergency request of an emergency-only registration");
            self.shared
                .respond(&req, 403, "Emergency Registration Only", &[], now, out);
        } else if self.is_emergency_request(msg) {
            self.on_emergency(&req, now, out);
        } else if self.shared.cfg.upstream.is_some() {
            self.originate_from_ue(&req, now, out);
        } else {
            let (proxy, mut cx) = self.proxy_cx();
            proxy.on_request(&mut cx, &req, now, out);
        }
    }

    /// Handles timers: transaction retransmissions and timeouts, expired registrations and
    /// challenges, and the end of 2xx relaying.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<WorkerCommand> {
        let mut out = Vec::new();
        self.shared.txl.handle_timeout(now);
        self.shared.flush(&mut out);
        self.process_events(now, &mut out);
        self.expire(now, &mut out);
        self.process_events(now, &mut out);
        self.end_unreachable(now, &mut out);
        self.registrar.publish();
        out
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ours = self.shared.timers.first();
        match (ours, self.shared.txl.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Delivers transaction events (responses, timeouts, terminations) to the proxy.
    fn process_events(&mut self, now: Instant, out: &mut Vec<WorkerCommand>) {
        while let Some((id, ev)) = self.shared.txl.poll_event() {
            if self.is_relay(id) {
                self.on_relay_event(id, ev, now, out);
                continue;
            }
            if self.reg_subs.owns(id) {
                self.on_reg_sub_event(id, ev, now, out);
                continue;
            }
            let (proxy, mut cx) = self.proxy_cx();
            proxy.on_tx_event(&mut cx, id, ev, now, out);
        }
    }

    /// Answers a malformed request statelessly with the error's status (RFC 3261 8.2.1,
    /// 8.2.2.1, 8.2.2: 400 / 416 / 505) or drops a malformed response (RFC 3261 18.1.2).
    fn reject_malformed(
        &mut self,
        raw: &[u8],
        parsed: Option<&Message<'_>>,
        err: crate::sip::ParseError,
        flow: Flow,
        out: &mut Vec<WorkerCommand>,
    ) {
        let code = err.status_code();
        let reason = err.reason_phrase();
        let is_response = match parsed {
            Some(m) => !m.is_request(),
            None => raw.starts_with(b"SIP/"),
        };
        if is_response {
            self.shared.stats.malformed_responses += 1;
            tracing::debug!("dropping malformed response from {}: {err}", flow.ue);
            return;
        }
        self.shared.stats.malformed_requests += 1;
        let tag = self.shared.token(8);
        let built = match parsed {
            Some(m) if m.method() == Some("ACK") => None,
            Some(m) => response_to(m, code, &reason, Some(&tag))
                .ok()
                .map(MessageBuilder::build)
                .or_else(|| crate::proxy::raw_error_response(raw, code, &reason, &tag)),
            None => crate::proxy::raw_error_response(raw, code, &reason, &tag),
        };
        match built {
            Some(bytes) => Shared::send_direct(out, flow, bytes, false),
            None => {
                self.shared.stats.malformed_requests_unanswered += 1;
                tracing::debug!("dropping malformed request from {}: {err}", flow.ue);
            }
        }
    }
}
