//! A simulated IMS UE, sans-IO: Ethernet frames and `now` in, frames and [`UeEvent`]s out.
//!
//! It answers ARP/ND for its own address and resolves the P-CSCF's (fastpath `l2`), runs its
//! own smoltcp stack (the fastpath `UeStack` in client role), holds its own ESP SAs (the
//! mirror image of the P-CSCF's, TS 33.203 7.1) and a SIP UA: IMS-AKA registration with
//! sec-agree, calls as caller and callee, de-registration. Many UEs run in one thread.

pub mod call;
pub mod esp;
pub mod register;
pub mod sip;
pub mod usim;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use akagate_fastpath::esp::ip::IPPROTO_ESP;
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::{Flow, SipIn, Transport, WorkerEvent};
use akagate_fastpath::l2::{icmp, Input, L2Config, L2};
use akagate_fastpath::stack::ports::transport_ports;
use akagate_fastpath::stack::{StackConfig, StackError, UeStack};
use akagate_slowpath::aka::Usim;
use rand::RngCore;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr, Ipv6Cidr};

use call::Call;
use esp::UeSaSet;
use register::RegState;
pub use sip::ClientSecParams;
use sip::UaIdentity;

/// Packets held while the next hop's Ethernet address is being resolved.
const MAX_AWAITING_L2: usize = 64;
/// Requests remembered in [`Ue::requests_received`].
const MAX_REQUEST_LOG: usize = 64;
/// How long SAs outlive the final 200 OK that ends their use (de-registration, or the
/// re-registration that replaced them): long enough for the stack's delayed ACK (smoltcp
/// waits 10 ms) to acknowledge the 200 through them, so the P-CSCF's drain ends at once.
pub const SA_TEARDOWN_GRACE: Duration = Duration::from_millis(50);

/// Everything a UE is configured with.
#[derive(Clone, Debug)]
pub struct UeConfig {
    /// Our Ethernet address.
    pub mac: EthernetAddress,
    /// Our IP address.
    pub ip: IpAddr,
    /// On-link prefix length of `ip`.
    pub prefix_len: u8,
    /// The P-CSCF's address.
    pub pcscf: IpAddr,
    /// Next hop for the P-CSCF if it is not on-link.
    pub gateway: Option<IpAddr>,
    /// Private identity (must exist in the subscriber file).
    pub impi: String,
    /// Default public identity.
    pub impu: String,
    /// SIP transport for our requests (TCP, or UDP with TCP for large requests).
    pub transport: Transport,
    /// Security-Client offers, most preferred first.
    pub offers: Vec<(AuthAlg, EncrAlg)>,
    /// Our SPIs and protected ports: those of the SA set in use (a re-registration replaces
    /// them with [`ClientSecParams::renewed`] ones once its 200 OK arrives).
    pub sec: ClientSecParams,
    /// Our source port of the unprotected initial REGISTER.
    pub unprotected_port: u16,
    /// The P-CSCF's unprotected SIP port.
    pub pcscf_sip_port: u16,
    /// Requested registration lifetime (seconds).
    pub expires: u32,
    /// Our TCP/IP stack's sizes.
    pub stack: StackConfig,
    /// How long a request waits for its final response.
    pub transaction_timeout: Duration,
    /// How long an answered call is held before the caller sends BYE (`None`: until
    /// [`Ue::hangup`]).
    pub hold: Option<Duration>,
    /// Callee: delay between 180 Ringing and 200 OK.
    pub answer_delay: Duration,
    /// Size of our INVITEs in bytes (SDP padded), or 0 for the natural size.
    pub invite_size: usize,
    /// Synchronisation failures answered with AUTS before giving up.
    pub max_resyncs: u8,
    /// Re-register by itself at half the granted Expires (TS 24.229 5.1.1.4.1), over the
    /// SAs in use and with a new Security-Client (TS 33.203 7.4).
    pub auto_reregister: bool,
}

impl UeConfig {
    /// Defaults for a UE with these addresses and identities: TCP, hmac-sha-1-96 with
    /// aes-cbc then null, protected ports 31800/31900, 600 s registration.
    pub fn new(mac: EthernetAddress, ip: IpAddr, pcscf: IpAddr, impi: &str, impu: &str) -> Self {
        let mut r = rand::thread_rng();
        // SPIs 256.. (RFC 4303 2.1 reserves 1..=255); distinct for spi-c and spi-s.
        let spi_uc = 0x1000 + (r.next_u32() % 0x7fff_0000);
        UeConfig {
            mac,
            ip,
            prefix_len: if ip.is_ipv4() { 16 } else { 64 },
            pcscf,
            gateway: None,
            impi: impi.into(),
            impu: impu.into(),
            transport: Transport::Tcp,
            offers: vec![
                (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
                (AuthAlg::HmacSha1_96, EncrAlg::Null),
            ],
            sec: ClientSecParams {
                spi_uc,
                spi_us: spi_uc + 1,
                port_uc: 31800,
                port_us: 31900,
            },
            unprotected_port: 5060,
            pcscf_sip_port: 5060,
            expires: 600,
            stack: StackConfig::default(),
            transaction_timeout: Duration::from_secs(32),
            hold: Some(Duration::from_millis(0)),
            answer_delay: Duration::from_millis(0),
            invite_size: 0,
            max_resyncs: 2,
            auto_reregister: false,
        }
    }

    /// The home domain: the part of the IMPI after `@`.
    pub fn domain(&self) -> &str {
        self.impi.rsplit_once('@').map_or(&self.impi, |(_, d)| d)
    }
}

/// A client transaction type, for latency statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxKind {
    /// Unprotected REGISTER -> 401 (or the AUTS REGISTER -> new 401).
    RegisterChallenge,
    /// Protected REGISTER -> 200.
    RegisterProtected,
    /// Whole registration: first REGISTER -> 200.
    Registration,
    /// Whole re-registration: re-REGISTER over the old SAs -> 200 over the new ones.
    Reregistration,
    /// REGISTER with Expires: 0 -> 200.
    Deregister,
    /// INVITE -> 180.
    InviteRinging,
    /// INVITE -> 200.
    InviteAnswer,
    /// BYE -> 200.
    Bye,
}

impl TxKind {
    /// A short stable name for reports.
    pub fn name(self) -> &'static str {
        match self {
            TxKind::RegisterChallenge => "register_401",
            TxKind::RegisterProtected => "register_200",
            TxKind::Registration => "registration",
            TxKind::Reregistration => "reregistration",
            TxKind::Deregister => "deregister",
            TxKind::InviteRinging => "invite_180",
            TxKind::InviteAnswer => "invite_200",
            TxKind::Bye => "bye_200",
        }
    }
}

/// Why a registration or call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No final response in time.
    #[error("timeout waiting for {0:?}")]
    Timeout(TxKind),
    /// A final error response.
    #[error("{0:?} answered {1}")]
    Rejected(TxKind, u16),
    /// AUTN did not verify: the network is not authentic (TS 33.102 6.3.3).
    #[error("AUTN MAC failure")]
    AkaMac,
    /// Still out of sync after the allowed AUTS rounds.
    #[error("SQN synchronisation failed")]
    AkaSync,
    /// The P-CSCF's answer broke the protocol (missing/odd header, unoffered algorithm).
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// A TCP connection we needed could not be opened or was lost.
    #[error("transport: {0}")]
    Transport(&'static str),
}

impl Failure {
    /// A short stable cause label for summaries.
    pub fn cause(&self) -> String {
        match self {
            Failure::Timeout(k) => format!("timeout_{}", k.name()),
            Failure::Rejected(k, c) => format!("{}_{c}", k.name()),
            Failure::AkaMac => "aka_mac".into(),
            Failure::AkaSync => "aka_sync".into(),
            Failure::Protocol(p) => format!("protocol: {p}"),
            Failure::Transport(t) => format!("transport: {t}"),
        }
    }
}

/// What happened, for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UeEvent {
    /// 200 OK to the protected REGISTER: SAs in use.
    Registered,
    /// 200 OK to the protected REGISTER of a re-registration: the new SAs are in use, the
    /// old ones are dropped.
    Reregistered,
    /// 200 OK to the de-REGISTER; SAs dropped.
    Deregistered,
    /// A registration attempt failed.
    RegistrationFailed(Failure),
    /// A client transaction completed (final response or the 180 of an INVITE).
    Transaction {
        /// Which one.
        kind: TxKind,
        /// Status code.
        code: u16,
        /// Request sent -> response received.
        latency: Duration,
    },
    /// Our INVITE was answered with 180.
    CallRinging(String),
    /// Our INVITE was answered with 200 and ACKed.
    CallAnswered(String),
    /// Our BYE got its 200 (or our call was ended by the other side).
    CallEnded(String),
    /// Our call failed.
    CallFailed(String, Failure),
    /// An INVITE arrived for us.
    IncomingCall(String),
    /// The caller ACKed our 200.
    IncomingCallEstablished(String),
    /// The caller's BYE arrived and was answered.
    IncomingCallEnded(String),
}

/// API misuse by the driver.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UeError {
    /// The operation needs a registration.
    #[error("not registered")]
    NotRegistered,
    /// A registration transaction is already running.
    #[error("registration in progress")]
    Busy,
    /// The stack refused the send.
    #[error("stack: {0}")]
    Stack(#[from] StackError),
    /// The configuration cannot be used (e.g. address families differ).
    #[error("bad configuration: {0}")]
    Config(&'static str),
}

/// Counters of one UE, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UeCounters {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// ESP packets accepted.
    pub esp_in: u64,
    /// ESP packets sent.
    pub esp_out: u64,
    /// ESP packets dropped (unknown SPI, ICV, replay, selector).
    pub drop_esp: u64,
    /// Clear TCP/UDP to one of our protected ports (must never happen).
    pub drop_clear_to_protected: u64,
    /// Outbound packets of a protected port with no SA left to protect them (never sent in
    /// clear).
    pub drop_no_sa: u64,
    /// Frames not for us or malformed.
    pub drop_l2: u64,
    /// Packets dropped because the next hop stayed unresolved.
    pub drop_no_neighbor: u64,
    /// SIP messages that could not be parsed or matched.
    pub drop_sip: u64,
    /// SIP messages received.
    pub sip_in: u64,
    /// Challenges whose SQN was not fresh (SEQ not above SEQ_MS(IND), or too old: TS 33.102
    /// C.2.2), answered with AUTS: a P-CSCF/HSS that reused an SQN, e.g. after a restart.
    pub sqn_stale: u64,
}

/// A request we received: method, the flow (UE view) and the SPI it came through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// SIP method.
    pub method: String,
    /// The flow, UE view (`ue`/`ue_port` are the P-CSCF's address and port).
    pub flow: Flow,
    /// Inbound SPI, or `None` if it came in clear.
    pub via_spi: Option<u32>,
}

/// One simulated UE.
pub struct Ue {
    pub(crate) cfg: UeConfig,
    pub(crate) id: UaIdentity,
    pub(crate) usim: Usim,
    l2: L2,
    pub(crate) stack: UeStack,
    pub(crate) sas: Option<UeSaSet>,
    /// The set negotiated by a re-registration, in use once its 200 OK arrives.
    pub(crate) next_sas: Option<UeSaSet>,
    /// Sets whose use ended, deleted with their connections at the given time.
    pub(crate) retiring: Vec<(Instant, UeSaSet)>,
    awaiting_l2: VecDeque<(IpAddr, Vec<u8>)>,
    out_frames: Vec<Vec<u8>>,
    pub(crate) events: VecDeque<UeEvent>,
    pub(crate) reg: RegState,
    pub(crate) reg_data: Option<register::RegData>,
    pub(crate) calls: HashMap<String, Call>,
    pub(crate) counters: UeCounters,
    pub(crate) requests: VecDeque<ReceivedRequest>,
    /// TCP connections the P-CSCF opened to our port_us (UE view flows).
    pub(crate) server_flows: Vec<Flow>,
    dirty: bool,
}

impl core::fmt::Debug for Ue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ue")
            .field("impi", &self.cfg.impi)
            .field("ip", &self.cfg.ip)
            .field("registered", &self.is_registered())
            .finish_non_exhaustive()
    }
}

/// A random lower-case hex token of `n` bytes.
pub(crate) fn token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl Ue {
    /// A UE with `cfg` and the USIM holding its K/OPc and SQN state.
    pub fn new(cfg: UeConfig, usim: Usim, now: Instant) -> Result<Self, UeError> {
        let mut l2cfg = L2Config {
            mac: cfg.mac,
            ipv4: vec![],
            ipv6: vec![],
            gateway_v4: None,
            gateway_v6: None,
            routes: Vec::new(),
            max_neighbors: 8,
            neighbor_ttl: Duration::from_secs(3600),
            solicit_retry: Duration::from_millis(500),
        };
        match (cfg.ip, cfg.gateway) {
            (IpAddr::V4(a), g) => {
                l2cfg.ipv4.push(Ipv4Cidr::new(a, cfg.prefix_len));
                l2cfg.gateway_v4 = match g {
                    Some(IpAddr::V4(g)) => Some(g),
                    None => None,
                    Some(_) => return Err(UeError::Config("gateway family")),
                };
            }
            (IpAddr::V6(a), g) => {
                l2cfg.ipv6.push(Ipv6Cidr::new(a, cfg.prefix_len));
                l2cfg.gateway_v6 = match g {
                    Some(IpAddr::V6(g)) => Some(g),
                    None => None,
                    Some(_) => return Err(UeError::Config("gateway family")),
                };
            }
        }
        let mut stack = UeStack::new(cfg.stack.clone(), cfg.ip, cfg.pcscf, now)
            .ok_or(UeError::Config("UE and P-CSCF address families differ"))?;
        // TS 33.203 7.1: we accept the P-CSCF's requests at port_us (TCP and UDP) and take
        // responses at port_uc (UDP; TCP ones arrive on our own connection).
        stack.listen(cfg.sec.port_us, true, true);
        stack.listen(cfg.sec.port_uc, false, true);
        stack.listen(cfg.unprotected_port, false, true);
        let id = UaIdentity {
            impi: cfg.impi.clone(),
            impu: cfg.impu.clone(),
            domain: cfg.domain().to_string(),
            ip: cfg.ip,
            pcscf: cfg.pcscf,
        };
        Ok(Ue {
            l2: L2::new(l2cfg),
            id,
            usim,
            stack,
            sas: None,
            next_sas: None,
            retiring: Vec::new(),
            awaiting_l2: VecDeque::new(),
            out_frames: Vec::new(),
            events: VecDeque::new(),
            reg: RegState::Idle,
            reg_data: None,
            calls: HashMap::new(),
            counters: UeCounters::default(),
            requests: VecDeque::new(),
            server_flows: Vec::new(),
            dirty: true,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &UeConfig {
        &self.cfg
    }

    /// The configuration, for changes that apply to later requests (hold, INVITE size).
    pub fn config_mut(&mut self) -> &mut UeConfig {
        &mut self.cfg
    }

    /// Our address.
    pub fn ip(&self) -> IpAddr {
        self.cfg.ip
    }

    /// Our Ethernet address.
    pub fn mac(&self) -> EthernetAddress {
        self.cfg.mac
    }

    /// Counters so far.
    pub fn counters(&self) -> UeCounters {
        self.counters
    }

    /// TCP connections our stack accepted so far (the P-CSCF's port_pc -> port_us ones).
    pub fn accepted_connections(&self) -> u64 {
        self.stack.counters().accepted
    }

    /// The last requests received (newest last), with the flow and SPI they came through.
    pub fn requests_received(&self) -> impl Iterator<Item = &ReceivedRequest> {
        self.requests.iter()
    }

    /// The SA set in use, if any.
    pub fn sa_set(&self) -> Option<&UeSaSet> {
        self.sas.as_ref()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<UeEvent> {
        self.events.pop_front()
    }

    /// Takes the frames to transmit.
    pub fn drain_frames(&mut self, out: &mut Vec<Vec<u8>>) {
        self.counters.frames_out += self.out_frames.len() as u64;
        out.append(&mut self.out_frames);
    }

    /// The flow to the P-CSCF, UE view.
    pub(crate) fn flow(&self, local_port: u16, pcscf_port: u16, proto: Transport) -> Flow {
        Flow {
            ue: self.cfg.pcscf,
            ue_port: pcscf_port,
            local: self.cfg.ip,
            local_port,
            proto,
        }
    }

    /// Sends a SIP message on `flow` through our stack.
    pub(crate) fn send(&mut self, flow: Flow, bytes: &[u8], connect: bool) -> Result<(), UeError> {
        self.dirty = true;
        self.stack
            .send(flow, bytes, connect)
            .map_err(UeError::Stack)
    }

    /// Handles one received Ethernet frame.
    pub fn handle_frame(&mut self, frame: &[u8], now: Instant) {
        self.counters.frames_in += 1;
        self.dirty = true;
        let mut replies = Vec::new();
        let input = self.l2.input(frame, now, &mut replies);
        self.out_frames.append(&mut replies);
        let (offset, len) = match input {
            Ok(Input::Handled) => return,
            Ok(Input::Ip { offset, ip }) => (offset, ip.len),
            Err(_) => {
                self.counters.drop_l2 += 1;
                return;
            }
        };
        let Some(pkt) = frame.get(offset..offset + len) else {
            self.counters.drop_l2 += 1;
            return;
        };
        let proto = match akagate_fastpath::esp::ip::layout(pkt) {
            Ok(l) => l.next_header,
            Err(_) => {
                self.counters.drop_l2 += 1;
                return;
            }
        };
        if proto == IPPROTO_ESP {
            let spi = akagate_fastpath::esp::peek_spi(pkt).unwrap_or(0);
            // A retiring set still takes what arrives before its grace ends.
            let set = [self.next_sas.as_mut(), self.sas.as_mut()]
                .into_iter()
                .flatten()
                .chain(self.retiring.iter_mut().map(|(_, s)| s))
                .find(|s| s.has_inbound_spi(spi));
            let Some(sas) = set else {
                self.counters.drop_esp += 1;
                return;
            };
            match sas.unprotect(pkt) {
                Ok((inner, spi)) => {
                    self.counters.esp_in += 1;
                    if self.stack.push_inbound(inner, Some(spi)).is_err() {
                        self.counters.drop_l2 += 1;
                    }
                }
                Err(_) => self.counters.drop_esp += 1,
            }
            return;
        }
        if let Some(p) = transport_ports(pkt) {
            // TS 33.203 7.1: our protected ports take only ESP.
            if self.is_protected_port(p.dst) {
                self.counters.drop_clear_to_protected += 1;
                return;
            }
            if self.stack.push_inbound(pkt.to_vec(), None).is_err() {
                self.counters.drop_l2 += 1;
            }
            return;
        }
        if let Some(reply) = icmp::echo_reply(pkt) {
            self.transmit_ip(reply, now);
        }
    }

    /// When [`Ue::poll`] should run next.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        if self.dirty {
            return Some(now);
        }
        let mut at = self.stack.poll_at(now);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        consider(self.reg_deadline());
        consider(self.retiring.iter().map(|(t, _)| *t).min());
        for c in self.calls.values() {
            consider(c.next_deadline());
        }
        if !self.awaiting_l2.is_empty() {
            consider(Some(now + Duration::from_millis(100)));
        }
        at
    }

    /// Runs the UE: stack, SIP, timers, and egress (ESP, Ethernet).
    pub fn poll(&mut self, now: Instant) {
        self.dirty = false;
        let mut evs = Vec::new();
        // Two rounds so SIP answers produced in the first go out in the same call.
        for _ in 0..2 {
            self.stack.poll(now, &mut evs);
            for ev in evs.drain(..) {
                self.on_stack_event(ev, now);
            }
            self.run_timers(now);
            self.stack.poll(now, &mut evs);
            for ev in evs.drain(..) {
                self.on_stack_event(ev, now);
            }
            if !self.dirty {
                break;
            }
            self.dirty = false;
        }
        self.egress(now);
        self.retire_due(now);
    }

    /// True if `port` is a protected port of ours: of the set in use, of the one being
    /// negotiated, of one being retired, or offered in our Security-Client.
    pub(crate) fn is_protected_port(&self, port: u16) -> bool {
        port == self.cfg.sec.port_uc
            || port == self.cfg.sec.port_us
            || [self.sas.as_ref(), self.next_sas.as_ref()]
                .into_iter()
                .flatten()
                .chain(self.retiring.iter().map(|(_, s)| s))
                .any(|s| s.is_protected_port(port))
    }

    /// Schedules the deletion of `set` after [`SA_TEARDOWN_GRACE`].
    pub(crate) fn retire(&mut self, set: UeSaSet, now: Instant) {
        self.retiring.push((now + SA_TEARDOWN_GRACE, set));
        self.dirty = true;
    }

    /// Deletes the retired sets whose time has come, with their connections.
    fn retire_due(&mut self, now: Instant) {
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.retiring = keep;
        for (_, set) in due {
            self.delete_set(&set);
        }
    }

    /// Deletes retired sets at once (a new registration starts).
    pub(crate) fn retire_all(&mut self) {
        for (_, set) in std::mem::take(&mut self.retiring) {
            self.delete_set(&set);
        }
    }

    /// Deletes an SA set (TS 33.203 7.4/7.5): its TCP connections are discarded without a
    /// segment (no FIN through SAs the P-CSCF has dropped or is dropping) and its ports,
    /// unless still protected, are no longer listened on.
    pub(crate) fn delete_set(&mut self, set: &UeSaSet) {
        let p = *set.params();
        let mut evs = Vec::new();
        self.stack.discard_flows(p.port_uc, p.port_ps, &mut evs);
        self.stack.discard_flows(p.port_us, p.port_pc, &mut evs);
        for ev in evs {
            if let WorkerEvent::TcpClosed(f)
            | WorkerEvent::ConnectFailed(f)
            | WorkerEvent::SendLost(f) = ev
            {
                self.server_flows.retain(|x| *x != f);
            }
        }
        for port in [p.port_uc, p.port_us] {
            if !self.is_protected_port(port) {
                self.stack.unlisten(port);
            }
        }
    }

    fn egress(&mut self, now: Instant) {
        // Held packets first, in order, once the neighbour is known.
        let held = self.awaiting_l2.len();
        for _ in 0..held {
            if let Some((dst, pkt)) = self.awaiting_l2.pop_front() {
                self.frame_out(dst, pkt, now);
            }
        }
        while let Some(pkt) = self.stack.pop_outbound() {
            let protected = [self.next_sas.as_mut(), self.sas.as_mut()]
                .into_iter()
                .flatten()
                .chain(self.retiring.iter_mut().map(|(_, s)| s))
                .find_map(|s| s.protect(&pkt));
            let pkt = match protected {
                Some(Ok(esp)) => {
                    self.counters.esp_out += 1;
                    esp
                }
                Some(Err(_)) => {
                    self.counters.drop_esp += 1;
                    continue;
                }
                None if transport_ports(&pkt).is_some_and(|p| self.is_protected_port(p.src)) => {
                    self.counters.drop_no_sa += 1;
                    continue;
                }
                None => pkt,
            };
            self.transmit_ip(pkt, now);
        }
    }

    fn transmit_ip(&mut self, pkt: Vec<u8>, now: Instant) {
        self.frame_out(self.cfg.pcscf, pkt, now);
    }

    fn frame_out(&mut self, dst: IpAddr, pkt: Vec<u8>, now: Instant) {
        let mut ctrl = Vec::new();
        match self.l2.header_for(dst, now, &mut ctrl) {
            Ok(h) => {
                let mut f = Vec::with_capacity(h.len() + pkt.len());
                f.extend_from_slice(&h);
                f.extend_from_slice(&pkt);
                self.out_frames.push(f);
            }
            Err(_) => {
                if self.awaiting_l2.len() < MAX_AWAITING_L2 {
                    self.awaiting_l2.push_back((dst, pkt));
                } else {
                    self.counters.drop_no_neighbor += 1;
                }
            }
        }
        self.out_frames.append(&mut ctrl);
    }

    fn on_stack_event(&mut self, ev: WorkerEvent, now: Instant) {
        match ev {
            WorkerEvent::Sip(sip) => self.on_sip(sip, now),
            WorkerEvent::TcpClosed(flow) | WorkerEvent::SendLost(flow) => {
                self.server_flows.retain(|f| *f != flow);
            }
            WorkerEvent::ConnectFailed(flow) => self.on_connect_failed(flow),
        }
    }

    fn on_sip(&mut self, sip: SipIn, now: Instant) {
        self.counters.sip_in += 1;
        self.dirty = true;
        let flow = sip.flow;
        // Messages at our protected ports must have come through the matching SA.
        let expected = [self.next_sas.as_ref(), self.sas.as_ref()]
            .into_iter()
            .flatten()
            .chain(self.retiring.iter().map(|(_, s)| s))
            .map(UeSaSet::params)
            .find_map(|p| {
                if flow.local_port == p.port_uc {
                    Some(p.spi_uc)
                } else if flow.local_port == p.port_us {
                    Some(p.spi_us)
                } else {
                    None
                }
            })
            .or_else(|| {
                let s = &self.cfg.sec;
                [(s.port_uc, s.spi_uc), (s.port_us, s.spi_us)]
                    .into_iter()
                    .find_map(|(port, spi)| (port == flow.local_port).then_some(spi))
            });
        if expected.is_some() && sip.via_spi != expected {
            self.counters.drop_sip += 1;
            return;
        }
        let Ok(msg) = akagate_slowpath::sip::Message::parse(&sip.bytes) else {
            self.counters.drop_sip += 1;
            return;
        };
        if msg.is_request() {
            let method = msg.method().unwrap_or_default().to_string();
            if self.requests.len() == MAX_REQUEST_LOG {
                self.requests.pop_front();
            }
            self.requests.push_back(ReceivedRequest {
                method,
                flow,
                via_spi: sip.via_spi,
            });
            if flow.proto == Transport::Tcp
                && flow.local_port == self.cfg.sec.port_us
                && !self.server_flows.contains(&flow)
            {
                self.server_flows.push(flow);
            }
            self.on_request(&msg, flow, now);
        } else {
            self.on_response(&msg, flow, now);
        }
    }

    fn on_response(&mut self, msg: &akagate_slowpath::sip::Message<'_>, flow: Flow, now: Instant) {
        let Ok(cseq) = msg.cseq() else {
            self.counters.drop_sip += 1;
            return;
        };
        match cseq.method {
            "REGISTER" => self.on_register_response(msg, flow, now),
            "INVITE" | "BYE" => self.on_call_response(msg, cseq.method, now),
            _ => {}
        }
    }

    fn on_connect_failed(&mut self, flow: Flow) {
        if flow.local_port == self.cfg.sec.port_uc || flow.local_port == self.cfg.unprotected_port {
            self.fail_registration(Failure::Transport("connection to the P-CSCF failed"));
        }
    }

    fn run_timers(&mut self, now: Instant) {
        self.reg_timers(now);
        self.call_timers(now);
    }

    /// Closes every TCP connection the P-CSCF opened to our port_us (the next request the
    /// P-CSCF sends us must reopen it from port_pc, TS 33.203 7.1).
    pub fn close_server_connections(&mut self) {
        for f in std::mem::take(&mut self.server_flows) {
            let _ = self.stack.close(f);
        }
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_slowpath::aka::{Milenage, SqnArray, SqnPolicy};
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr,
    };
    use std::net::Ipv4Addr;

    const PEER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
    const ME: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 1, 7]);

    fn ue() -> Ue {
        let cfg = UeConfig::new(
            ME,
            IpAddr::V4(Ipv4Addr::new(10, 0, 1, 7)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            "1@ims.example",
            "sip:1@ims.example",
        );
        let usim = Usim::new(
            Milenage::new(&[1; 16], &[2; 16]),
            SqnArray::new(SqnPolicy::default()),
        );
        Ue::new(cfg, usim, Instant::from_millis(0)).unwrap()
    }

    fn arp(op: ArpOperation, target: Ipv4Addr, dst: EthernetAddress) -> Vec<u8> {
        let repr = ArpRepr::EthernetIpv4 {
            operation: op,
            source_hardware_addr: PEER,
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        };
        let mut f = vec![0u8; 14 + repr.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        EthernetRepr {
            src_addr: PEER,
            dst_addr: dst,
            ethertype: EthernetProtocol::Arp,
        }
        .emit(&mut eth);
        repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        f
    }

    #[test]
    fn answers_arp_for_its_own_address_only() {
        let mut u = ue();
        let now = Instant::from_millis(1);
        u.handle_frame(
            &arp(
                ArpOperation::Request,
                Ipv4Addr::new(10, 0, 1, 7),
                EthernetAddress::BROADCAST,
            ),
            now,
        );
        let mut out = Vec::new();
        u.drain_frames(&mut out);
        assert_eq!(out.len(), 1);
        let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (PEER, ME));
        let reply = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        assert!(matches!(
            reply,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: ME,
                ..
            }
        ));
        u.handle_frame(
            &arp(
                ArpOperation::Request,
                Ipv4Addr::new(10, 0, 1, 8),
                EthernetAddress::BROADCAST,
            ),
            now,
        );
        u.drain_frames(&mut out);
        assert_eq!(out.len(), 1, "no answer for someone else's address");
    }

    #[test]
    fn resolves_the_pcscf_before_sending_and_then_flushes() {
        let mut u = ue();
        let t0 = Instant::from_millis(1);
        u.register(t0).unwrap();
        u.poll(t0);
        let mut out = Vec::new();
        u.drain_frames(&mut out);
        // Only an ARP request for the P-CSCF leaves; the SYN waits for the answer.
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0][12..14], &[0x08, 0x06]);
        let reply = arp(ArpOperation::Reply, Ipv4Addr::new(10, 0, 1, 7), ME);
        u.handle_frame(&reply, t0);
        u.poll(t0);
        out.clear();
        u.drain_frames(&mut out);
        assert!(!out.is_empty());
        let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
        assert_eq!(eth.dst_addr(), PEER);
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    }
}
