//! The sans-IO slowpath core: worker events and time in, worker commands out. It owns the
//! registrar (sec-agree, IMS-AKA, SA sets), the embedded HSS, the proxy's routing state and
//! the RFC 3261 17 transaction layer every message passes through. It never touches a file:
//! SQN advances come out as records ([`Core::poll_persist`]) and each challenge is held until
//! its owner reports them durable ([`Core::on_durable`]).

mod durability;
mod register;
mod shared;

pub use durability::Withheld;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_proto::ipc::{Flow, Proto, SipIn, WorkerCommand, WorkerEvent};
use akagate_proto::spi::SpiAllocator;
use rand::RngCore;

use crate::hss::{Hss, PersistRecord, PersistTicket};
use crate::proxy::{Proxy, RegEnd};
use crate::registrar::{Registrar, RegistrationView};
use crate::secagree::ImsAkaProfile;
use crate::sip::transaction::{Incoming, Peer, TimerConfig, Transport, TxId};
use crate::sip::{response_to, Message, MessageBuilder};
pub(crate) use shared::Shared;

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
        Core {
            shared: Shared::new(cfg, spis, rng),
            hss,
            registrar: Registrar::default(),
            proxy: Proxy::default(),
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
    pub fn on_durable(&mut self, ticket: PersistTicket) -> Vec<Action> {
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

    /// Number of commands waiting for durability.
    pub fn held(&self) -> usize {
        self.shared.held.len()
    }

    /// Holds `actions` until `ticket` is durable (`None`: they leave now), after a challenge
    /// whose 401 already waits for it.
    pub(crate) fn after_challenge(
        &mut self,
        ticket: Option<PersistTicket>,
        actions: Vec<Action>,
        out: &mut Vec<Action>,
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
    pub(crate) fn on_registered(&mut self, key: &str, now: Instant, out: &mut Vec<Action>) {
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
        out: &mut Vec<Action>,
    ) {
        let (proxy, mut cx) = self.proxy_cx();
        proxy.notify_ended(&mut cx, key, why, now, out);
        proxy.release_dialogs(&mut cx, key, why, now, out);
        proxy.abandon_towards(&mut cx, key, now, out);
        proxy.forget_keepalive(&mut cx, key);
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
            WorkerEvent::ConnectFailed(flow) => {
                let (proxy, mut cx) = self.proxy_cx();
                proxy.on_connect_failed(&mut cx, flow, now, &mut out);
            }
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
            let (proxy, mut cx) = self.proxy_cx();
            return proxy.on_response(&mut cx, &msg, sip, now, out);
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
        let id = match self.shared.txl.handle_message(msg, peer_of(sip.flow), now) {
            Ok(Incoming::NewRequest(id)) => id,
            Ok(Incoming::Absorbed(_)) => {
                self.shared.stats.retransmissions_absorbed += 1;
                return self.shared.flush(out);
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
        if msg.method() == Some("REGISTER") {
            self.on_register(&req, now, out);
        } else {
            let (proxy, mut cx) = self.proxy_cx();
            proxy.on_request(&mut cx, &req, now, out);
        }
    }

    /// Handles timers: transaction retransmissions and timeouts, expired registrations and
    /// challenges, and the end of 2xx relaying.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.shared.txl.handle_timeout(now);
        self.shared.flush(&mut out);
        self.process_events(now, &mut out);
        self.expire(now, &mut out);
        self.process_events(now, &mut out);
        out
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ours = self.shared.timers.first().map(|(at, _)| *at);
        match (ours, self.shared.txl.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Delivers transaction events (responses, timeouts, terminations) to the proxy.
    fn process_events(&mut self, now: Instant, out: &mut Vec<Action>) {
        let (proxy, mut cx) = self.proxy_cx();
        while let Some((id, ev)) = cx.shared.txl.poll_event() {
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
        out: &mut Vec<Action>,
    ) {
        let code = err.status_code();
        let reason = err.reason_phrase();
        let is_response = match parsed {
            Some(m) => !m.is_request(),
            None => raw.starts_with(b"SIP/"),
        };
        if is_response {
            self.shared.stats.malformed_responses += 1;
            log::debug!("dropping malformed response from {}: {err}", flow.ue);
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
                log::debug!("dropping malformed request from {}: {err}", flow.ue);
            }
        }
    }
}

/// What a handler outside the core's own state needs: the shared machinery, the registrar
/// and the HSS (subscribers by IMPU). The proxy's handlers take it as a parameter.
pub(crate) struct Cx<'a> {
    /// Configuration, transactions, timers, counters.
    pub shared: &'a mut Shared,
    /// Every registration.
    pub registrar: &'a mut Registrar,
    /// The subscribers (routing by IMPU).
    pub hss: &'a Hss,
}

impl Cx<'_> {
    /// Notes traffic from `key` over `spi`: the first message over a new active set retires
    /// the old one.
    pub fn note_traffic(&mut self, key: &str, spi: u32, out: &mut Vec<Action>) {
        if let Some(old) = self.registrar.note_traffic(key, spi) {
            self.shared.remove_set(&old, out);
            rearm(self.shared, self.registrar, key);
        }
    }
}

/// Puts registration `key`'s next deadline into the timer set (or takes it out), and the
/// deadlines of registrations gone meanwhile out.
pub(crate) fn rearm(shared: &mut Shared, registrar: &mut Registrar, key: &str) {
    for (gone, armed) in registrar.take_disarmed() {
        shared.arm(TimerKey::Registration(gone), armed, None);
    }
    if let Some((previous, next)) = registrar.rearm(key) {
        shared.arm(TimerKey::Registration(key.to_string()), previous, next);
    }
}
