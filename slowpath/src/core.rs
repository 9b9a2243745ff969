//! The sans-IO slowpath core: worker events and time in, worker commands out. It owns the
//! registrar (sec-agree, IMS-AKA, SA sets), the embedded HSS, the proxy's routing state and
//! the RFC 3261 17 transaction layer every message passes through.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_proto::ipc::{Flow, Proto, SipIn, WorkerCommand, WorkerEvent};
use akagate_proto::spi::SpiAllocator;
use rand::RngCore;

use crate::hss::Hss;
use crate::proxy::{Dialog, Forwarded, KeepAlive, RegEnd, RegSubscription};
use crate::registrar::Registration;
use crate::secagree::ImsAkaProfile;
use crate::sip::transaction::{Incoming, Peer, TimerConfig, TransactionLayer, Transport, TxId};
use crate::sip::{response_to, Message, MessageBuilder};

/// What the core asks the workers to do; executed in order.
pub type Action = WorkerCommand;

/// Configuration of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// sec-agree profile (ports, algorithms, whether sec-agree is required).
    pub profile: ImsAkaProfile,
    /// Our host name or address as it appears in `Path` and `Service-Route`.
    pub pcscf_host: String,
    /// Registration lifetime granted when the UE asks for none (seconds).
    pub default_expires: u32,
    /// Shortest registration lifetime accepted (seconds); a REGISTER asking for less (but not
    /// 0) gets `423 Interval Too Brief` with `Min-Expires` (RFC 3261 10.3 step 7). 0: no minimum.
    pub min_expires: u32,
    /// Largest registration lifetime granted (seconds).
    pub max_expires: u32,
    /// How long a challenge and its SA set wait for the protected REGISTER
    /// (TS 24.229 reg-await-auth).
    pub challenge_timeout: Duration,
    /// SIP transaction timers (RFC 3261 17, Table 4).
    pub timers: TimerConfig,
    /// Timer C: how long a forwarded INVITE may ring without a new provisional response
    /// (RFC 3261 16.6 step 11: more than 3 minutes).
    pub timer_c: Duration,
    /// How often the P-CSCF sends an OPTIONS keep-alive to each registered UE (from port_pc
    /// through the SA); `None` turns keep-alives off.
    pub keepalive_interval: Option<Duration>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            profile: ImsAkaProfile::default(),
            pcscf_host: "pcscf.ims.mnc001.mcc001.3gppnetwork.org".into(),
            default_expires: 3600,
            min_expires: 0,
            max_expires: 600_000,
            challenge_timeout: Duration::from_secs(240),
            timers: TimerConfig::default(),
            timer_c: Duration::from_secs(181),
            keepalive_interval: None,
        }
    }
}

/// Counters of messages the core dropped or absorbed, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Requests that failed parsing or validation (answered 400/416/505 when possible).
    pub malformed_requests: u64,
    /// Malformed requests that could not even be answered (no Via/From/To/Call-ID/CSeq, ACK).
    pub malformed_requests_unanswered: u64,
    /// Responses that failed parsing or validation (dropped, RFC 3261 18.1.2).
    pub malformed_responses: u64,
    /// Responses that arrived outside every SA (dropped).
    pub unprotected_responses: u64,
    /// Responses that matched no client transaction (dropped, RFC 3261 16.7 / 17.1.3).
    pub stray_responses: u64,
    /// Request retransmissions (and ACKs for non-2xx responses) absorbed by a server
    /// transaction (RFC 3261 17.2).
    pub retransmissions_absorbed: u64,
    /// Client transactions that timed out (timer B or F).
    pub transaction_timeouts: u64,
    /// Forwarded INVITEs given up after Timer C (RFC 3261 16.8).
    pub timer_c_expiries: u64,
    /// Client transactions failed at once because the worker could not open their
    /// connection (`ConnectFailed`).
    pub connect_failures: u64,
    /// OPTIONS keep-alives sent.
    pub keepalives_sent: u64,
    /// Keep-alives the UE answered (any final response but 408 / 503).
    pub keepalives_answered: u64,
    /// Keep-alives that timed out, got 408 / 503, or could not be sent.
    pub keepalive_failures: u64,
    /// reg-event NOTIFYs that failed (timeout, connection failure, non-2xx).
    pub notify_failures: u64,
    /// Dialogs the P-CSCF released with BYE because a party's registration ended.
    pub dialogs_released: u64,
    /// BYEs of ours that failed (timeout, connection failure, non-2xx).
    pub bye_failures: u64,
}

/// What a live transaction needs to reach the worker: the flow and, for requests the core
/// sends over TCP, whether the worker opens the connection when it is gone.
#[derive(Clone, Debug)]
pub(crate) struct TxInfo {
    /// The flow the request arrived on (server) or leaves on (client).
    pub flow: Flow,
    /// `connect_if_absent` of every Send for this transaction.
    pub connect_if_absent: bool,
    /// Server transactions of proxied requests: the request as received (for 408 / 487).
    pub request: Option<Vec<u8>>,
}

/// A deadline in the core's timer set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// A registration's next deadline (challenge, binding or old set), by IMPI key.
    Registration(String),
    /// How long 2xx retransmissions to a forwarded INVITE are still relayed, by our branch.
    Accepted(String),
    /// Timer C of a forwarded INVITE's client transaction (RFC 3261 16.6 step 11).
    TimerC(TxId),
    /// The next OPTIONS keep-alive of a registration, by IMPI key.
    KeepAlive(String),
}

/// One received request in its server transaction.
#[derive(Clone, Copy)]
pub(crate) struct Req<'m, 'a> {
    /// The validated request.
    pub msg: &'m Message<'a>,
    /// The flow it arrived on.
    pub flow: Flow,
    /// The inbound SA it came through.
    pub via_spi: Option<u32>,
    /// Its server transaction.
    pub tx: TxId,
}

/// The slowpath state machine (`handle`, `handle_timeout`, `poll_timeout`), no I/O except the
/// HSS's SQN journal.
pub struct Core {
    pub(crate) cfg: CoreConfig,
    pub(crate) hss: Hss,
    pub(crate) spis: Arc<dyn SpiAllocator>,
    pub(crate) rng: Box<dyn RngCore + Send>,
    /// Registrations by lower-cased IMPI.
    pub(crate) regs: HashMap<String, Registration>,
    /// Inbound SPI (spi_pc or spi_ps of any live set) -> IMPI key.
    pub(crate) by_spi: HashMap<u32, String>,
    /// Call-ID -> the dialog between two registered parties.
    pub(crate) dialogs: HashMap<String, Dialog>,
    /// reg-event subscriptions by IMPI key of the registration watched.
    pub(crate) reg_subs: HashMap<String, Vec<RegSubscription>>,
    /// Keep-alive state by IMPI key.
    pub(crate) keepalives: HashMap<String, KeepAlive>,
    /// Every server and client transaction (RFC 3261 17).
    pub(crate) txl: TransactionLayer,
    /// Transport state of each live transaction.
    pub(crate) txs: HashMap<TxId, TxInfo>,
    /// Client transactions the proxy started, with the server transaction they serve.
    pub(crate) forwarded: HashMap<TxId, Forwarded>,
    /// Server transaction -> the client transaction forwarding it (for CANCEL).
    pub(crate) forwarded_by_server: HashMap<TxId, TxId>,
    /// Our branch of an INVITE answered 2xx -> the caller's flow, for 2xx retransmissions.
    pub(crate) accepted: HashMap<String, Flow>,
    /// Registration and 2xx-relay deadlines, earliest first.
    pub(crate) timers: BTreeSet<(Instant, TimerKey)>,
    /// Makes every branch we create unique even with a poor random source.
    pub(crate) branch_seq: u64,
    pub(crate) stats: CoreStats,
}

impl core::fmt::Debug for Core {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Core")
            .field("registrations", &self.regs.len())
            .field("dialogs", &self.dialogs.len())
            .field("transactions", &self.txl.len())
            .finish_non_exhaustive()
    }
}

/// The transaction layer's view of a flow.
pub(crate) fn peer_of(flow: Flow) -> Peer {
    Peer {
        remote: SocketAddr::new(flow.ue, flow.ue_port),
        local_port: flow.local_port,
        transport: match flow.proto {
            Proto::Udp => Transport::Udp,
            Proto::Tcp => Transport::Tcp,
        },
    }
}

impl Core {
    /// A core over an HSS, the SA table's SPI allocator and a random source (RAND, tags, branches).
    pub fn new(
        cfg: CoreConfig,
        hss: Hss,
        spis: Arc<dyn SpiAllocator>,
        rng: Box<dyn RngCore + Send>,
    ) -> Self {
        let txl = TransactionLayer::new(cfg.timers);
        Core {
            cfg,
            hss,
            spis,
            rng,
            regs: HashMap::new(),
            by_spi: HashMap::new(),
            dialogs: HashMap::new(),
            reg_subs: HashMap::new(),
            keepalives: HashMap::new(),
            txl,
            txs: HashMap::new(),
            forwarded: HashMap::new(),
            forwarded_by_server: HashMap::new(),
            accepted: HashMap::new(),
            timers: BTreeSet::new(),
            branch_seq: 0,
            stats: CoreStats::default(),
        }
    }

    /// The HSS (e.g. for `akactl` queries).
    pub fn hss(&self) -> &Hss {
        &self.hss
    }

    /// Group commit from here on: challenges only append their SQN to the HSS's journal, and
    /// the caller must call [`Core::commit`] before dispatching any actions.
    pub fn defer_sqn_commit(&mut self) {
        self.hss.set_commit_mode(crate::hss::CommitMode::Deferred);
    }

    /// Makes every SQN handed out so far durable (one fsync if any); call before dispatching
    /// the actions returned since the last commit. On error, no 401 of those may be sent
    /// (TS 33.102 6.3: an SQN is never reused after a restart).
    pub fn commit(&mut self) -> Result<(), crate::hss::HssError> {
        self.hss.commit()
    }

    /// Number of registrations with an active (200 OK'd) SA set.
    pub fn registered(&self) -> usize {
        self.regs.values().filter(|r| r.active.is_some()).count()
    }

    /// Drop and absorption counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// Number of live SIP transactions.
    pub fn transactions(&self) -> usize {
        self.txl.len()
    }

    /// Number of dialogs (and INVITEs establishing one) between registered UEs.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// Number of live reg-event subscriptions.
    pub fn reg_subscriptions(&self) -> usize {
        self.reg_subs.values().map(Vec::len).sum()
    }

    /// When the UE registered as `impi` last answered an OPTIONS keep-alive.
    pub fn last_seen(&self, impi: &str) -> Option<Instant> {
        self.keepalives
            .get(&impi.to_ascii_lowercase())
            .and_then(|k| k.last_seen)
    }

    /// Registration `key` got its 200 OK (first registration, re-registration or refresh):
    /// reg-event subscribers learn of the refresh and keep-alives are armed.
    pub(crate) fn on_registered(&mut self, key: &str, now: Instant, out: &mut Vec<Action>) {
        self.notify_refreshed(key, now, out);
        self.arm_keepalive(key, now);
    }

    /// Registration `key` ends (`why`), while its SAs still exist: the last NOTIFYs and the
    /// BYEs of its dialogs leave first (TS 24.229 5.2.8.1.2, RFC 3680), then the caller
    /// removes the sets. Keep-alives stop.
    pub(crate) fn on_registration_ending(
        &mut self,
        key: &str,
        why: RegEnd,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.notify_ended(key, why, now, out);
        self.release_dialogs(key, why, now, out);
        self.abandon_towards(key, now, out);
        self.forget_keepalive(key);
    }

    /// Handles one event from a worker.
    pub fn handle(&mut self, event: WorkerEvent, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            WorkerEvent::Sip(sip) => self.on_sip(&sip, now, &mut out),
            // Connections come and go; registrations are bound to SAs, not to connections.
            WorkerEvent::TcpClosed(_) => {}
            // The requests waiting on a connection that could not be opened fail now, not
            // after timer B / F (RFC 3261 16.9).
            WorkerEvent::ConnectFailed(flow) => self.on_connect_failed(flow, now, &mut out),
        }
        self.process_events(now, &mut out);
        out
    }

    fn on_sip(&mut self, sip: &SipIn, now: Instant, out: &mut Vec<Action>) {
        let msg = match Message::parse(&sip.bytes) {
            Ok(m) => m,
            Err(e) => return self.reject_malformed(&sip.bytes, None, e, sip.flow, out),
        };
        if let Err(e) = msg.validate() {
            return self.reject_malformed(&sip.bytes, Some(&msg), e, sip.flow, out);
        }
        if !msg.is_request() {
            return self.on_response(&msg, sip, now, out);
        }
        // RFC 3261 18.2.1, RFC 3581 4: note the source address in the top Via before the
        // request reaches a transaction, so every response (ours or relayed) carries it.
        let rewritten = crate::proxy::with_received(&msg, sip.flow);
        let reparsed;
        let msg = match &rewritten {
            Some(bytes) => match Message::parse(bytes) {
                Ok(m) => {
                    reparsed = m;
                    &reparsed
                }
                Err(_) => &msg,
            },
            None => &msg,
        };
        let id = match self.txl.handle_message(msg, peer_of(sip.flow), now) {
            Ok(Incoming::NewRequest(id)) => id,
            Ok(Incoming::Absorbed(_)) => {
                self.stats.retransmissions_absorbed += 1;
                return self.flush(out);
            }
            Ok(Incoming::Stray) => return self.on_stray_request(msg, sip, now, out),
            Ok(Incoming::Response(_)) => return,
            Err(e) => return self.reject_malformed(&sip.bytes, Some(msg), e, sip.flow, out),
        };
        self.txs.insert(
            id,
            TxInfo {
                flow: sip.flow,
                connect_if_absent: false,
                request: None,
            },
        );
        // The server transaction may already have something queued (nothing today).
        self.flush(out);
        let req = Req {
            msg,
            flow: sip.flow,
            via_spi: sip.via_spi,
            tx: id,
        };
        if msg.method() == Some("REGISTER") {
            self.on_register(&req, now, out);
        } else {
            self.on_request(&req, now, out);
        }
    }

    /// Handles timers: transaction retransmissions and timeouts, expired registrations and
    /// challenges, and the end of 2xx relaying.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.txl.handle_timeout(now);
        self.flush(&mut out);
        self.process_events(now, &mut out);
        self.expire(now, &mut out);
        self.process_events(now, &mut out);
        out
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ours = self.timers.first().map(|(at, _)| *at);
        match (ours, self.txl.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves everything the transaction layer wants to send into `out`, in order.
    pub(crate) fn flush(&mut self, out: &mut Vec<Action>) {
        while let Some((id, t)) = self.txl.poll_transmit_with_id() {
            match self.txs.get(&id) {
                Some(info) => out.push(WorkerCommand::Send {
                    flow: info.flow,
                    bytes: t.bytes,
                    connect_if_absent: info.connect_if_absent,
                }),
                None => log::warn!("transmit for unknown transaction {id:?} dropped"),
            }
        }
    }

    /// Sends `response` through server transaction `tx`.
    pub(crate) fn send_response(
        &mut self,
        tx: TxId,
        response: Vec<u8>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Err(e) = self.txl.send_response(tx, response, now) {
            log::debug!("response on {tx:?} not sent: {e}");
        }
        self.flush(out);
    }

    /// Answers `req` with `code reason` plus `extra` headers (RFC 3261 8.2.6).
    pub(crate) fn respond(
        &mut self,
        req: &Req<'_, '_>,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let tag = self.token(8);
        let mut b = match response_to(req.msg, code, reason, Some(&tag)) {
            Ok(b) => b,
            Err(e) => return log::debug!("cannot answer {code}: {e}"),
        };
        for (n, v) in extra {
            b.push_header(n, v);
        }
        self.send_response(req.tx, b.build(), now, out);
    }

    /// Starts a client transaction for `request` on `flow` and sends it.
    pub(crate) fn send_request(
        &mut self,
        request: Vec<u8>,
        flow: Flow,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Option<TxId> {
        let id = match self.txl.send_request(request, peer_of(flow), now) {
            Ok(id) => id,
            Err(e) => {
                log::warn!("request to {} not sent: {e}", flow.ue);
                return None;
            }
        };
        self.txs.insert(
            id,
            TxInfo {
                flow,
                connect_if_absent: flow.proto == Proto::Tcp,
                request: None,
            },
        );
        self.flush(out);
        Some(id)
    }

    /// Sends bytes outside any transaction (ACK for a 2xx, relayed 2xx retransmissions).
    pub(crate) fn send_direct(out: &mut Vec<Action>, flow: Flow, bytes: Vec<u8>, connect: bool) {
        out.push(WorkerCommand::Send {
            flow,
            bytes,
            connect_if_absent: connect && flow.proto == Proto::Tcp,
        });
    }

    /// Delivers transaction events (responses, timeouts, terminations) to the proxy.
    fn process_events(&mut self, now: Instant, out: &mut Vec<Action>) {
        while let Some((id, ev)) = self.txl.poll_event() {
            self.on_tx_event(id, ev, now, out);
        }
    }

    /// Arms `key`'s timer at `at`, replacing `previous`.
    pub(crate) fn arm(&mut self, key: TimerKey, previous: Option<Instant>, at: Option<Instant>) {
        if previous == at {
            return;
        }
        if let Some(p) = previous {
            self.timers.remove(&(p, key.clone()));
        }
        if let Some(a) = at {
            self.timers.insert((a, key));
        }
    }

    /// Takes every timer due at `now`, earliest first.
    pub(crate) fn due_timers(&mut self, now: Instant) -> Vec<(Instant, TimerKey)> {
        let mut due = Vec::new();
        while let Some(first) = self.timers.first() {
            if first.0 > now {
                break;
            }
            if let Some(t) = self.timers.pop_first() {
                due.push(t);
            }
        }
        due
    }

    /// A random lower-case hex token of `n` bytes (tags, branches).
    pub(crate) fn token(&mut self, n: usize) -> String {
        let mut b = vec![0u8; n];
        self.rng.fill_bytes(&mut b);
        hex::encode(b)
    }

    /// A new RFC 3261 branch (magic cookie, random part, per-core sequence number).
    pub(crate) fn branch(&mut self) -> String {
        self.branch_seq += 1;
        format!("z9hG4bK{}{:x}", self.token(8), self.branch_seq)
    }

    /// Answers a malformed request statelessly with the error's status (RFC 3261 8.2.1,
    /// 8.2.2.1, 8.2.2: 400 / 416 / 505) or drops a malformed response (RFC 3261 18.1.2).
    fn reject_malformed(
        &mut self,
        raw: &[u8],
        parsed: Option<&Message<'_>>,
        err: crate::sip::ParseError,
        flow: Flow,
        out: &mut Vec<Action>,
    ) {
        let code = err.status_code();
        let reason = err.reason_phrase();
        let is_response = match parsed {
            Some(m) => !m.is_request(),
            None => raw.starts_with(b"SIP/"),
        };
        if is_response {
            self.stats.malformed_responses += 1;
            log::debug!("dropping malformed response from {}: {err}", flow.ue);
            return;
        }
        self.stats.malformed_requests += 1;
        let tag = self.token(8);
        let built = match parsed {
            Some(m) if m.method() == Some("ACK") => None,
            Some(m) => response_to(m, code, &reason, Some(&tag))
                .ok()
                .map(MessageBuilder::build)
                .or_else(|| crate::proxy::raw_error_response(raw, code, &reason, &tag)),
            None => crate::proxy::raw_error_response(raw, code, &reason, &tag),
        };
        match built {
            Some(bytes) => Core::send_direct(out, flow, bytes, false),
            None => {
                self.stats.malformed_requests_unanswered += 1;
                log::debug!("dropping malformed request from {}: {err}", flow.ue);
            }
        }
    }
}
