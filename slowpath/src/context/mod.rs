//! What the parts of the slowpath core share, below all of them: configuration, counters,
//! the transaction and timer machinery ([`Shared`]), commands held for SQN durability, and
//! the context a handler outside the core's own state receives ([`Cx`]). `core` and `proxy`
//! both build on it; it imports neither, so the core's parts form no import cycle.

mod durability;
mod limits;
mod shared;
mod timers;

pub use durability::Withheld;
pub(crate) use limits::{Admission, DecoyLedger, RateVerdict};
pub(crate) use shared::Shared;

use std::net::SocketAddr;
use std::time::Duration;

use akagate_proto::ipc::{Flow, WorkerCommand};

use crate::hss::Hss;
use crate::registrar::Registrar;
use crate::secagree::ImsAkaProfile;
use crate::sip::transaction::{Peer, TimerConfig, TxId};
use crate::sip::Message;

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
    /// Consecutive failed keep-alives after which the UE is taken for gone and its
    /// registration ends (reg-event `deactivated`); 0: never.
    pub keepalive_failures: u32,
    /// Emergency registrations (`sos` in the Contact) of subscribers the HSS does not know
    /// are accepted without authentication, for emergency sessions only (TS 24.229 5.2.10).
    pub emergency_without_auth: bool,
    /// Proxy mode: the IMS core REGISTERs are relayed to (`None`: the embedded registrar).
    pub upstream: Option<crate::upstream::Upstream>,
    /// Outstanding challenges per IMPI (one per source address); beyond it the oldest
    /// challenge of the IMPI goes. At least 1.
    pub max_pending_per_impi: usize,
    /// Outstanding challenges (real and decoy) sent to one source address; a REGISTER that
    /// would need one more is answered 503.
    pub max_pending_per_source: usize,
    /// Outstanding challenges (real and decoy) in total; beyond it new ones are answered 503.
    pub max_pending_total: usize,
    /// Unauthenticated REGISTERs (outside every SA) taken from one source address per
    /// second; more are answered 503.
    pub register_rate_per_source: u32,
    /// Unauthenticated REGISTERs taken per second in total; more are answered 503.
    pub register_rate_total: u32,
    /// The `Retry-After` of those 503s, in seconds (RFC 3261 20.33).
    pub retry_after: u32,
    /// The unprotected SIP-over-TLS port (RFC 3261 26.2), if any: a REGISTER over TLS that
    /// offers sec-agree mechanism `tls` (RFC 3329 2.2) agrees on it, its registration bound
    /// to the TLS connection.
    pub tls_port: Option<u16>,
    /// With several slowpath shards: this core's shard, tagged in every branch it creates
    /// and in its Record-Route URI so workers route the answers and in-dialog requests back
    /// here (`akagate_proto::shard`). `None` (one shard): no tags.
    pub shard: Option<usize>,
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
            keepalive_failures: 0,
            emergency_without_auth: false,
            upstream: None,
            max_pending_per_impi: 4,
            max_pending_per_source: 64,
            max_pending_total: 65_536,
            register_rate_per_source: 20,
            register_rate_total: 10_000,
            retry_after: 5,
            tls_port: None,
            shard: None,
        }
    }
}

akagate_proto::counter_values! {
    /// Counters of messages the core dropped or absorbed, by reason. Each entry's doc comment
    /// is also its help text in `akactl stats`, on the metrics endpoint and in the docs.
    pub struct CoreStats;
    /// Requests that failed parsing or validation (answered 400/416/505 when possible).
    malformed_requests: Counter,
    /// Malformed requests that could not even be answered (no Via/From/To/Call-ID/CSeq, ACK).
    malformed_requests_unanswered: Counter,
    /// Responses that failed parsing or validation (dropped, RFC 3261 18.1.2).
    malformed_responses: Counter,
    /// Responses that arrived outside every SA (dropped).
    unprotected_responses: Counter,
    /// Responses that matched no client transaction (dropped, RFC 3261 16.7 / 17.1.3).
    stray_responses: Counter,
    /// Request retransmissions (and ACKs for non-2xx responses) absorbed by a server
    /// transaction (RFC 3261 17.2).
    retransmissions_absorbed: Counter,
    /// Client transactions that timed out (timer B or F).
    transaction_timeouts: Counter,
    /// Forwarded INVITEs given up after Timer C (RFC 3261 16.8).
    timer_c_expiries: Counter,
    /// Client transactions failed at once because the worker could not open their
    /// connection (`ConnectFailed`).
    connect_failures: Counter,
    /// Requests sent again on a fresh connection because a reset lost them (`SendLost`,
    /// RFC 3261 18).
    requests_resent: Counter,
    /// Requests sent over UDP after the TCP connection to a UE registered over UDP could not
    /// be opened (RFC 3261 18.1.1; only requests within the path MTU).
    udp_fallbacks: Counter,
    /// OPTIONS keep-alives sent.
    keepalives_sent: Counter,
    /// Keep-alives the UE answered (any final response but 408 / 503).
    keepalives_answered: Counter,
    /// Keep-alives that timed out, got 408 / 503, or could not be sent.
    keepalive_failures: Counter,
    /// Registrations ended by the operator (`akactl deregister`).
    operator_deregistrations: Counter,
    /// Registrations ended after `keepalive-failures` keep-alives in a row failed.
    keepalive_deregistrations: Counter,
    /// reg-event NOTIFYs that failed (timeout, connection failure, non-2xx).
    notify_failures: Counter,
    /// Dialogs the P-CSCF released with BYE because a party's registration ended.
    dialogs_released: Counter,
    /// BYEs of ours that failed (timeout, connection failure, non-2xx).
    bye_failures: Counter,
    /// 401s to REGISTERs for IMPIs the HSS does not know, answered like a real challenge
    /// but with nothing spent or stored (so strangers cannot tell which IMPIs exist).
    decoy_challenges: Counter,
    /// SIP on the core side from an address not trusted as the core (dropped).
    core_untrusted_dropped: Counter,
    /// 401s from the core without usable `ck`/`ik` (the UE got 500, nothing installed).
    core_challenges_without_keys: Counter,
    /// Relayed REGISTERs sent to the next core next hop after a timeout or transport failure.
    core_failovers: Counter,
    /// Relayed REGISTERs no core next hop answered (the UE got 408).
    core_timeouts: Counter,
    /// 200 OKs from the core completing a registration without a Service-Route (accepted;
    /// the UE's requests then go to the first next hop).
    core_ok_without_service_route: Counter,
    /// reg-event SUBSCRIBEs to the core that failed (non-2xx or timeout; the registration
    /// stays, without network-initiated events).
    core_reg_subscribe_failures: Counter,
    /// reg-event subscriptions refreshed inside their dialog before they expired (TS 24.229
    /// 5.2.3: 600 s before, or at half of a lifetime of 1200 s or less).
    core_reg_subscribe_refreshes: Counter,
    /// Relayed REGISTERs a core next hop did not answer at all within `hop-timeout` (the
    /// next hop got them, and the silent one is avoided for `hop-holddown-s`).
    core_hop_timeouts: Counter,
    /// Registrations the network ended by a reg-event NOTIFY (network-initiated
    /// de-registration, TS 24.229 5.2.5.1): their SAs were removed.
    core_deregistrations: Counter,
    /// Flow-bound registrations (no sec-agree) ended because their TCP connection closed.
    flow_registrations_closed: Counter,
    /// Emergency registrations of unknown subscribers accepted without authentication.
    emergency_registrations_unauthenticated: Counter,
    /// Emergency sessions routed to the E-CSCF (TS 24.229 5.2.10), anonymous ones included.
    emergency_sessions: Counter,
    /// Emergency requests answered 380 (no E-CSCF configured, or an unregistered UE where
    /// anonymous emergency sessions are not allowed).
    emergency_refused: Counter,
    /// Requests from the core for no UE registered here (404, or 481 inside a dialog).
    core_requests_unroutable: Counter,
    /// Challenges that reused the unanswered vector of an earlier challenge of the same IMPI
    /// (no SQN spent; only the UE can answer it).
    vectors_reused: Counter,
    /// Challenges dropped to make room for a newer one of the same IMPI from another address
    /// (beyond `max-pending-per-impi`; the oldest goes).
    challenges_evicted: Counter,
    /// Unauthenticated REGISTERs answered 503 because their source address sent more than
    /// `register-rate-per-source` in a second.
    register_rate_limited_source: Counter,
    /// Unauthenticated REGISTERs answered 503 because more than `register-rate-total` came
    /// in a second.
    register_rate_limited_all: Counter,
    /// REGISTERs answered 503 because their source address holds `max-pending-per-source`
    /// challenges.
    challenges_shed_source: Counter,
    /// REGISTERs answered 503 because `max-pending-total` challenges are outstanding.
    challenges_shed_all: Counter,
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

/// A deadline in the core's timer set (its text keys shared, so the set's heap and live
/// index hold one copy).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// A registration's next deadline (challenge, binding or old set), by IMPI key (the
    /// registrar's own key, shared: arming copies no string).
    Registration(std::sync::Arc<str>),
    /// How long 2xx retransmissions to a forwarded INVITE are still relayed, by our branch.
    Accepted(std::sync::Arc<str>),
    /// Timer C of a forwarded INVITE's client transaction (RFC 3261 16.6 step 11).
    TimerC(TxId),
    /// The next OPTIONS keep-alive of a registration, by IMPI key.
    KeepAlive(std::sync::Arc<str>),
    /// The refresh of one of our reg-event subscriptions, by Call-ID (TS 24.229 5.2.3).
    RegSubRefresh(std::sync::Arc<str>),
    /// The end of the wait for a core next hop's first answer to a relayed REGISTER.
    HopTimeout(TxId),
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

/// The transaction layer's view of a flow.
pub(crate) fn peer_of(flow: Flow) -> Peer {
    Peer {
        remote: SocketAddr::new(flow.ue, flow.ue_port),
        local_port: flow.local_port,
        transport: flow.proto,
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
    pub fn note_traffic(&mut self, key: &str, spi: u32, out: &mut Vec<WorkerCommand>) {
        if self.registrar.impi(key).is_none() {
            // Another shard's UE (a callee answering): its owner retires the old set.
            self.registrar.note_remote_traffic(key, spi);
            return;
        }
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
        shared.arm(TimerKey::Registration(gone.into()), armed, None);
    }
    if let Some((key, previous, next)) = registrar.rearm(key) {
        shared.arm(TimerKey::Registration(key), previous, next);
    }
}
