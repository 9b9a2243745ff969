//! `akacore`'s S-CSCF + HSS, sans-IO: an IMS core of our own for load tests of akagate's
//! proxy mode. It authenticates REGISTERs with IMS-AKA (RFC 3310, TS 33.203 6.1) from the
//! same subscriber file as akagate's embedded HSS, hands CK and IK to the P-CSCF in the 401
//! (TS 33.203 7.1), keeps Contact and Path per registration (RFC 3327) and routes calls
//! between registered UEs: an initial INVITE for a registered IMPU goes to the callee's
//! registered contact along its Path (TS 24.229 5.4.3.3), responses go back by our Via
//! branch, in-dialog requests follow Route / Request-URI (we record-route ourselves). The
//! P-CSCF's reg-event SUBSCRIBE (TS 24.229 5.2.3 / 5.4.2.1, RFC 3680) is answered 200 with a
//! full-state NOTIFY, and the de-registration ends it with a terminated NOTIFY.
//!
//! [`Scscf::handle`] takes one message and where it came from and returns what to send; the
//! sockets are [`net`]'s, which also call [`Scscf::poll`] for the retransmissions of requests
//! sent over UDP (RFC 3261 17.1.1.2 / 17.1.2.2 timers A and E). Not a conformant S-CSCF: no
//! iFC, no CANCEL, no forking, no retransmission of our own final responses.

pub mod net;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use akagate_fastpath::ipc::Transport;
use akagate_slowpath::aka::{decode_auts, AkaNonce, DigestCredentials, Res, ALGORITHM_AKAV1_MD5};
use akagate_slowpath::hss::Hss;
use akagate_slowpath::sip::{
    response_to, HeaderKind, Host, Message, MessageBuilder, MessageEdit, NameAddr, Uri,
};
use rand::RngCore;
use serde::Serialize;

/// How long transaction state is kept (64 x T1, RFC 3261 17.1.1.2 timer B).
const TX_LIFETIME: Duration = Duration::from_secs(32);
/// RFC 3261 17.1.1.1: T1 and T2.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// How long an unanswered challenge is kept.
const CHALLENGE_LIFETIME: Duration = Duration::from_secs(60);

/// Where a message came from, and so where its responses go (RFC 3261 18.2.2: TCP on the
/// same connection, UDP to the source address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The source address.
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// The TCP connection it arrived on (`None` for UDP).
    pub conn: Option<u64>,
}

/// Where an outgoing message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Back to a peer we heard from (its connection, or its UDP address).
    Reply(Peer),
    /// To an address, opening a TCP connection if none of ours is open to it.
    To(SocketAddr, Transport),
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    /// Where.
    pub dest: Dest,
    /// The message.
    pub bytes: Vec<u8>,
}

/// What the core counted (printed on exit and with `--stats-interval`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Registrations completed (200 OK to an authenticated REGISTER with a lifetime) of an
    /// IMPI not registered before.
    pub registrations: u64,
    /// Re-registrations completed (the IMPI was registered already).
    pub reregistrations: u64,
    /// De-registrations (200 OK with Expires 0).
    pub deregistrations: u64,
    /// 401 challenges sent.
    pub challenges: u64,
    /// Digest responses that did not match XRES (403).
    pub auth_failures: u64,
    /// AUTS re-synchronisations done (TS 33.102 6.3.5).
    pub resyncs: u64,
    /// REGISTERs refused otherwise (unknown IMPI, bad AUTS, no Contact, ...).
    pub register_rejected: u64,
    /// Initial INVITEs forwarded to a registered callee.
    pub calls: u64,
    /// 2xx to a forwarded INVITE.
    pub calls_answered: u64,
    /// Calls that failed: INVITEs we refused or whose final answer was not 2xx.
    pub call_failures: u64,
    /// In-dialog requests routed by their Request-URI among registered contacts (no Route
    /// left after ours).
    pub routed_by_contact: u64,
    /// Requests nobody registered here can take (404 / 480 / 481).
    pub unroutable: u64,
    /// SIP messages received.
    pub messages_in: u64,
    /// SIP messages sent.
    pub messages_out: u64,
    /// Request retransmissions absorbed.
    pub retransmissions: u64,
    /// Responses matching no transaction of ours.
    pub stray_responses: u64,
    /// Messages that did not parse.
    pub malformed: u64,
    /// Requests sent again over UDP for want of a response (timers A / E).
    pub requests_resent: u64,
    /// Requests over UDP given up after 64 x T1 without a response (timers B / F).
    pub request_timeouts: u64,
    /// Reg-event subscriptions accepted (RFC 3680).
    pub reg_subscriptions: u64,
    /// Reg-event NOTIFYs sent.
    pub notifies: u64,
    /// Responses to our NOTIFYs that were not 2xx.
    pub notify_failures: u64,
}

impl Counters {
    /// `name=value` pairs on one line.
    pub fn line(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    }
}

/// Configuration of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Our address (UDP and TCP): in Via, Service-Route and Record-Route.
    pub local: SocketAddr,
    /// The transport our Service-Route / Record-Route ask for (`;transport=`), and the one
    /// used towards a P-CSCF whose URI names none.
    pub transport: Transport,
    /// The largest registration lifetime granted.
    pub max_expires: u32,
    /// How long after the 200 OK to a de-registration its terminated reg-event NOTIFY
    /// waits (zero: sent right after the 200).
    pub dereg_notify_delay: Duration,
}

/// An outstanding challenge or the last successful one of an IMPI.
struct AuthState {
    nonce: String,
    rand: [u8; 16],
    xres: Res,
    at: Instant,
}

/// A registered contact.
#[derive(Clone, Debug)]
struct Binding {
    /// The Contact URI as registered.
    contact: String,
    /// The Path entries (name-addrs), the Route towards the UE.
    path: Vec<String>,
    /// Registered IMPUs (lower case, no parameters).
    impus: Vec<String>,
    expires_at: Instant,
}

/// A reg-event subscription (RFC 6665 dialog, we are the notifier).
#[derive(Clone, Debug)]
struct RegSubscription {
    call_id: String,
    /// The IMPU subscribed to.
    impu: String,
    /// Our tag (From of our NOTIFYs).
    tag: String,
    /// The subscriber's From (To of our NOTIFYs).
    subscriber: String,
    /// Where NOTIFYs go (the SUBSCRIBE's Contact).
    target: String,
    cseq: u32,
    expires: u32,
}

/// A request we forwarded, by our branch: where its responses go.
struct ClientTx {
    /// Where responses go; `None` for a request of our own (NOTIFY): they end here.
    source: Option<Peer>,
    invite: bool,
    /// A final response was relayed (2xx retransmissions are relayed but not counted).
    answered: bool,
    at: Instant,
}

/// A request we sent over UDP and have no response to yet (RFC 3261 17.1.1.2 / 17.1.2.2).
struct Retransmit {
    bytes: Vec<u8>,
    to: SocketAddr,
    next: Instant,
    interval: Duration,
    invite: bool,
    give_up: Instant,
}

/// A request we received, by its top Via branch and method: the last response we sent.
struct ServerTx {
    last: Option<Vec<u8>>,
    at: Instant,
}

/// The S-CSCF and HSS.
pub struct Scscf {
    cfg: CoreConfig,
    hss: Hss,
    /// IMPI (lower case) -> challenge outstanding.
    pending: HashMap<String, AuthState>,
    /// IMPI (lower case) -> registration.
    bindings: HashMap<String, Binding>,
    /// IMPU (lower case, no parameters) -> IMPI key.
    by_impu: HashMap<String, String>,
    /// Contact URI (lower case) -> IMPI key.
    by_contact: HashMap<String, String>,
    /// IMPI key -> the reg-event subscription to its registration.
    reg_subs: HashMap<String, RegSubscription>,
    /// Terminated NOTIFYs waiting for [`CoreConfig::dereg_notify_delay`]: (when, the
    /// subscription, the contact).
    delayed_notifies: Vec<(Instant, RegSubscription, String)>,
    clients: HashMap<String, ClientTx>,
    /// Our branch -> a request over UDP not answered yet.
    retransmits: HashMap<String, Retransmit>,
    servers: HashMap<(String, String), ServerTx>,
    next_branch: u64,
    last_purge: Option<Instant>,
    /// What happened so far.
    pub counters: Counters,
}

/// The host of a URI as written in SIP (IPv6 in brackets).
fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

/// An IMPU or contact as a lookup key: lower case, URI parameters and brackets dropped.
fn uri_key(uri: &str) -> String {
    let u = uri.trim().trim_start_matches('<');
    let end = u.find([';', '>', '?']).unwrap_or(u.len());
    u.get(..end).unwrap_or(u).to_ascii_lowercase()
}

/// The URI of a Route-like value (name-addr or bare URI).
fn uri_of(value: &str) -> Option<Uri<'_>> {
    match NameAddr::parse(value) {
        Ok(a) => Some(a.uri),
        Err(_) => Uri::parse(value.trim()).ok(),
    }
}

/// The address and transport a URI names (IP literals only; port 5060 by default).
fn addr_of(value: &str, default: Transport) -> Option<(SocketAddr, Transport)> {
    let u = uri_of(value)?;
    let ip: IpAddr = match u.host? {
        Host::Ipv4(a) => a.into(),
        Host::Ipv6(a) => a.into(),
        Host::Name(_) => return None,
    };
    let t = u
        .params
        .value("transport")
        .and_then(Transport::from_token)
        .unwrap_or(default);
    Some((SocketAddr::new(ip, u.port.unwrap_or(5060)), t))
}

/// The realm of an IMPI (`user@realm`).
fn realm_of(impi: &str) -> &str {
    impi.rsplit_once('@').map_or(impi, |(_, r)| r)
}

impl Scscf {
    /// A core serving the subscribers of `hss`.
    pub fn new(cfg: CoreConfig, hss: Hss) -> Self {
        Scscf {
            cfg,
            hss,
            pending: HashMap::new(),
            bindings: HashMap::new(),
            by_impu: HashMap::new(),
            by_contact: HashMap::new(),
            reg_subs: HashMap::new(),
            delayed_notifies: Vec::new(),
            clients: HashMap::new(),
            retransmits: HashMap::new(),
            servers: HashMap::new(),
            next_branch: 0,
            last_purge: None,
            counters: Counters::default(),
        }
    }

    /// Changes [`CoreConfig::dereg_notify_delay`].
    pub fn set_dereg_notify_delay(&mut self, delay: Duration) {
        self.cfg.dereg_notify_delay = delay;
    }

    /// Registered IMPIs right now.
    pub fn registered(&self) -> usize {
        self.bindings.len()
    }

    fn transport_param(&self) -> &'static str {
        match self.cfg.transport {
            Transport::Tcp => ";transport=tcp",
            Transport::Udp => ";transport=udp",
        }
    }

    /// Our Service-Route (TS 24.229 5.4.1.2.2): the originating S-CSCF.
    fn service_route(&self) -> String {
        format!(
            "<sip:orig@{};lr{}>",
            host_port(self.cfg.local),
            self.transport_param()
        )
    }

    /// Our Record-Route entry.
    fn record_route(&self) -> String {
        format!(
            "<sip:{};lr{}>",
            host_port(self.cfg.local),
            self.transport_param()
        )
    }

    /// Whether a Route value names us.
    fn is_us(&self, value: &str) -> bool {
        addr_of(value, self.cfg.transport).is_some_and(|(a, _)| a == self.cfg.local)
    }

    fn branch(&mut self) -> String {
        self.next_branch += 1;
        format!("z9hG4bKakacore{:x}", self.next_branch)
    }

    /// One received message; returns what to send.
    pub fn handle(&mut self, bytes: &[u8], from: Peer, now: Instant) -> Vec<Out> {
        self.counters.messages_in += 1;
        self.purge(now);
        let mut out = Vec::new();
        let Ok(msg) = Message::parse(bytes) else {
            self.counters.malformed += 1;
            return out;
        };
        if msg.is_request() {
            self.on_request(&msg, from, now, &mut out);
        } else {
            self.on_response(&msg, now, &mut out);
        }
        self.counters.messages_out += out.len() as u64;
        out
    }

    /// Drops transaction and challenge state past its lifetime, and expired registrations.
    fn purge(&mut self, now: Instant) {
        if self
            .last_purge
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_purge = Some(now);
        self.clients
            .retain(|_, c| now.duration_since(c.at) < TX_LIFETIME);
        self.servers
            .retain(|_, s| now.duration_since(s.at) < TX_LIFETIME);
        self.pending
            .retain(|_, p| now.duration_since(p.at) < CHALLENGE_LIFETIME);
        let gone: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.unbind(&k);
        }
    }

    /// A response to `req` from us, sent back to `from` and remembered for retransmissions.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        req: &Message<'_>,
        from: Peer,
        code: u16,
        reason: &str,
        headers: &[(&str, String)],
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let tag = format!("ac{:x}", rand::thread_rng().next_u32());
        let Ok(mut b) = response_to(req, code, reason, Some(&tag)) else {
            self.counters.malformed += 1;
            return;
        };
        for (n, v) in headers {
            b.push_header(n, v);
        }
        let bytes = b.build();
        if let Some(key) = server_key(req) {
            self.servers.insert(
                key,
                ServerTx {
                    last: Some(bytes.clone()),
                    at: now,
                },
            );
        }
        out.push(Out {
            dest: Dest::Reply(from),
            bytes,
        });
    }

    fn on_request(&mut self, msg: &Message<'_>, from: Peer, now: Instant, out: &mut Vec<Out>) {
        let method = msg.method().unwrap_or_default();
        // RFC 3261 17.2.3: a retransmission gets our last response again.
        if method != "ACK" {
            if let Some(key) = server_key(msg) {
                if let Some(s) = self.servers.get(&key) {
                    self.counters.retransmissions += 1;
                    if let Some(last) = &s.last {
                        out.push(Out {
                            dest: Dest::Reply(from),
                            bytes: last.clone(),
                        });
                    }
                    return;
                }
                self.servers.insert(
                    key,
                    ServerTx {
                        last: None,
                        at: now,
                    },
                );
            }
        }
        match method {
            "REGISTER" => self.on_register(msg, from, now, out),
            "SUBSCRIBE" if is_reg_event(msg) => self.on_reg_subscribe(msg, from, now, out),
            "OPTIONS" if self.is_for_us(msg) => {
                self.respond(msg, from, 200, "OK", &[], now, out);
            }
            _ => self.route(msg, from, now, out),
        }
    }

    /// An out-of-dialog request addressed to us, with no Route beyond ours.
    fn is_for_us(&self, msg: &Message<'_>) -> bool {
        let no_route = msg
            .list_values(HeaderKind::Route)
            .filter_map(Result::ok)
            .all(|r| self.is_us(r));
        no_route
            && msg
                .request_uri()
                .and_then(|u| addr_of(u, self.cfg.transport))
                .is_some_and(|(a, _)| a.ip() == self.cfg.local.ip())
    }

    // ---- registrar (TS 24.229 5.4.1) -----------------------------------------------------

    fn on_register(&mut self, msg: &Message<'_>, from: Peer, now: Instant, out: &mut Vec<Out>) {
        let creds = msg
            .header(HeaderKind::Authorization)
            .and_then(|a| DigestCredentials::parse(a).ok());
        let Some(creds) = creds else {
            // TS 24.229 5.2.2.1: the P-CSCF always forwards an Authorization with the IMPI.
            self.counters.register_rejected += 1;
            return self.respond(msg, from, 403, "Forbidden", &[], now, out);
        };
        let impi = creds.username.clone();
        let key = impi.to_ascii_lowercase();
        if self.hss.subscriber(&impi).is_none() {
            self.counters.register_rejected += 1;
            return self.respond(msg, from, 403, "Forbidden", &[], now, out);
        }
        let contact = msg
            .contacts()
            .filter_map(Result::ok)
            .find_map(|c| Some((c.addr()?.uri.raw.to_string(), c.expires())));
        let expires = contact
            .as_ref()
            .and_then(|(_, e)| *e)
            .or(msg.expires().ok().flatten())
            .unwrap_or(self.cfg.max_expires)
            .min(self.cfg.max_expires);
        let protected = creds
            .integrity_protected
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let answers_pending = self
            .pending
            .get(&key)
            .is_some_and(|p| !creds.nonce.is_empty() && p.nonce == creds.nonce);
        if answers_pending {
            if let Some(auts) = creds.auts.as_deref() {
                return self.resync(msg, from, &impi, auts, &creds, now, out);
            }
            let Some(p) = self.pending.remove(&key) else {
                return;
            };
            // RFC 3310 3.2 / TS 24.229 5.4.1.2.2: RES as the digest password.
            if !creds.verify("REGISTER", p.xres.as_bytes()) {
                self.counters.auth_failures += 1;
                return self.respond(msg, from, 403, "Forbidden", &[], now, out);
            }
            if expires == 0 {
                return self.deregister(msg, from, &key, now, out);
            }
            let Some((contact, _)) = contact else {
                self.counters.register_rejected += 1;
                return self.respond(msg, from, 400, "Missing Contact", &[], now, out);
            };
            return self.register_ok(msg, from, &impi, contact, expires, now, out);
        }
        if expires == 0 && protected {
            // TS 24.229 5.4.1.4: an integrity-protected de-registration needs no challenge.
            return self.deregister(msg, from, &key, now, out);
        }
        self.challenge(msg, from, &impi, now, out);
    }

    /// 401 with a fresh vector, CK and IK for the P-CSCF (TS 24.229 5.4.1.2.1).
    fn challenge(
        &mut self,
        msg: &Message<'_>,
        from: Peer,
        impi: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let mut rand = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut rand);
        let v = match self.hss.challenge(impi, rand) {
            Ok(v) => v,
            Err(_) => {
                self.counters.register_rejected += 1;
                return self.respond(msg, from, 403, "Forbidden", &[], now, out);
            }
        };
        let nonce = AkaNonce {
            rand,
            autn: v.autn,
            server_data: Vec::new(),
        }
        .encode();
        let www = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={ALGORITHM_AKAV1_MD5}, \
             qop=\"auth\", ck=\"{}\", ik=\"{}\"",
            realm_of(impi),
            hex::encode(v.ck.as_bytes()),
            hex::encode(v.ik.as_bytes())
        );
        self.pending.insert(
            impi.to_ascii_lowercase(),
            AuthState {
                nonce,
                rand,
                xres: v.xres,
                at: now,
            },
        );
        self.counters.challenges += 1;
        self.respond(
            msg,
            from,
            401,
            "Unauthorized",
            &[("WWW-Authenticate", www)],
            now,
            out,
        );
    }

    /// AUTS in answer to our challenge (TS 33.102 6.3.5): re-synchronise, challenge again.
    #[allow(clippy::too_many_arguments)]
    fn resync(
        &mut self,
        msg: &Message<'_>,
        from: Peer,
        impi: &str,
        auts: &str,
        creds: &DigestCredentials,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let key = impi.to_ascii_lowercase();
        let Some(p) = self.pending.remove(&key) else {
            return;
        };
        debug_assert_eq!(p.nonce, creds.nonce);
        let ok = decode_auts(auts)
            .ok()
            .is_some_and(|a| self.hss.resync(impi, &p.rand, a.as_bytes()).is_ok());
        if !ok {
            self.counters.register_rejected += 1;
            return self.respond(msg, from, 403, "Forbidden", &[], now, out);
        }
        self.counters.resyncs += 1;
        self.challenge(msg, from, impi, now, out);
    }

    /// 200 OK to an authenticated REGISTER: the binding is stored for calls.
    #[allow(clippy::too_many_arguments)]
    fn register_ok(
        &mut self,
        msg: &Message<'_>,
        from: Peer,
        impi: &str,
        contact: String,
        expires: u32,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let key = impi.to_ascii_lowercase();
        let impus: Vec<String> = self
            .hss
            .subscriber(impi)
            .map(|s| s.impu().to_vec())
            .unwrap_or_default();
        let path: Vec<String> = msg
            .list_values(HeaderKind::Path)
            .filter_map(Result::ok)
            .map(str::to_string)
            .collect();
        if self.bindings.contains_key(&key) {
            self.counters.reregistrations += 1;
        } else {
            self.counters.registrations += 1;
        }
        self.unbind(&key);
        for u in &impus {
            self.by_impu.insert(uri_key(u), key.clone());
        }
        self.by_contact.insert(uri_key(&contact), key.clone());
        self.bindings.insert(
            key,
            Binding {
                contact: contact.clone(),
                path: path.clone(),
                impus: impus.iter().map(|u| uri_key(u)).collect(),
                expires_at: now + Duration::from_secs(u64::from(expires)),
            },
        );
        let mut headers = vec![("Contact", format!("<{contact}>;expires={expires}"))];
        // RFC 3327 5.3: the Path is echoed in the 200.
        for p in path {
            headers.push(("Path", p));
        }
        headers.push(("Service-Route", self.service_route()));
        let assoc = impus
            .iter()
            .map(|u| format!("<{u}>"))
            .collect::<Vec<_>>()
            .join(", ");
        if !assoc.is_empty() {
            headers.push(("P-Associated-URI", assoc));
        }
        headers.push(("Expires", expires.to_string()));
        self.respond(msg, from, 200, "OK", &headers, now, out);
    }

    fn deregister(
        &mut self,
        msg: &Message<'_>,
        from: Peer,
        key: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let contact = self.bindings.get(key).map(|b| b.contact.clone());
        let sub = self.reg_subs.remove(key);
        self.unbind(key);
        self.pending.remove(key);
        self.counters.deregistrations += 1;
        let mut headers = Vec::new();
        if let Some(c) = &contact {
            headers.push(("Contact", format!("<{c}>;expires=0")));
        }
        headers.push(("Expires", "0".to_string()));
        self.respond(msg, from, 200, "OK", &headers, now, out);
        if let (Some(sub), Some(c)) = (sub, contact) {
            // RFC 3680 5.2 / TS 24.229 5.4.1.4: the subscription ends with the registration.
            if self.cfg.dereg_notify_delay.is_zero() {
                self.notify(sub, &c, false, now, out);
            } else {
                let at = now + self.cfg.dereg_notify_delay;
                self.delayed_notifies.push((at, sub, c));
            }
        }
    }

    fn unbind(&mut self, key: &str) {
        if let Some(b) = self.bindings.remove(key) {
            self.by_contact.remove(&uri_key(&b.contact));
            for u in &b.impus {
                if self.by_impu.get(u).is_some_and(|k| k == key) {
                    self.by_impu.remove(u);
                }
            }
        }
    }

    // ---- reg event (RFC 3680, TS 24.229 5.4.2.1) --------------------------------------

    /// A SUBSCRIBE to the reg event of a registered IMPU (new, refresh or Expires 0): 200,
    /// then a NOTIFY with the registration's full state (terminated for Expires 0).
    fn on_reg_subscribe(
        &mut self,
        msg: &Message<'_>,
        from: Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let to_tag = msg
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let key = match &to_tag {
            // A refresh or an unsubscription: by its dialog.
            Some(_) => self
                .reg_subs
                .iter()
                .find(|(_, s)| s.call_id == call_id)
                .map(|(k, _)| k.clone()),
            None => msg
                .request_uri()
                .and_then(|u| self.by_impu.get(&uri_key(u)))
                .cloned(),
        };
        let Some(contact) = key
            .as_ref()
            .and_then(|k| self.bindings.get(k))
            .map(|b| b.contact.clone())
        else {
            let (code, reason) = match to_tag {
                Some(_) => (481, "Call/Transaction Does Not Exist"),
                None => (404, "Not Found"),
            };
            return self.respond(msg, from, code, reason, &[], now, out);
        };
        let key = key.unwrap_or_default();
        let expires = msg
            .expires()
            .ok()
            .flatten()
            .unwrap_or(self.cfg.max_expires)
            .min(self.cfg.max_expires);
        let headers = [("Expires", expires.to_string())];
        let target = msg
            .contacts()
            .filter_map(Result::ok)
            .find_map(|c| c.addr().map(|a| a.uri.raw.to_string()));
        let (Some(target), Ok(subscriber)) = (target, msg.required(HeaderKind::From)) else {
            return self.respond(msg, from, 400, "Missing Contact", &[], now, out);
        };
        self.respond(msg, from, 200, "OK", &headers, now, out);
        let tag = match to_tag {
            Some(t) => t,
            None => out
                .last()
                .and_then(|o| {
                    Message::parse(&o.bytes)
                        .ok()?
                        .to_header()
                        .ok()?
                        .tag()
                        .map(str::to_string)
                })
                .unwrap_or_default(),
        };
        let sub = match self.reg_subs.remove(&key) {
            Some(s) if s.call_id == call_id => RegSubscription { expires, ..s },
            _ => {
                self.counters.reg_subscriptions += 1;
                RegSubscription {
                    call_id,
                    impu: msg.request_uri().unwrap_or_default().to_string(),
                    tag,
                    subscriber: subscriber.to_string(),
                    target,
                    cseq: 0,
                    expires,
                }
            }
        };
        if expires == 0 {
            return self.notify(sub, &contact, false, now, out);
        }
        let active = RegSubscription { ..sub.clone() };
        self.reg_subs.insert(key.clone(), sub);
        self.notify(active, &contact, true, now, out);
        if let Some(s) = self.reg_subs.get_mut(&key) {
            s.cseq += 1;
        }
    }

    /// A NOTIFY of `sub` saying `contact` is registered (`active`) or not any more.
    fn notify(
        &mut self,
        mut sub: RegSubscription,
        contact: &str,
        active: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some((addr, transport)) = addr_of(&sub.target, self.cfg.transport) else {
            return;
        };
        sub.cseq += 1;
        let (reg_state, contact_attrs, sub_state) = if active {
            (
                "active",
                format!(
                    "state=\"active\" event=\"registered\" expires=\"{}\"",
                    sub.expires
                ),
                format!("active;expires={}", sub.expires),
            )
        } else {
            (
                "terminated",
                "state=\"terminated\" event=\"unregistered\"".to_string(),
                "terminated;reason=noresource".to_string(),
            )
        };
        // RFC 3680 5.1: the full state of the one registration.
        let body = format!(
            "<?xml version=\"1.0\"?>\r\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" \
             version=\"{}\" state=\"full\">\r\n<registration aor=\"{}\" id=\"a1\" state=\"{reg_state}\">\r\n\
             <contact id=\"c1\" {contact_attrs}><uri>{}</uri></contact>\r\n</registration>\r\n</reginfo>\r\n",
            sub.cseq - 1,
            xml_escape(&sub.impu),
            xml_escape(contact)
        );
        let branch = self.branch();
        let bytes = MessageBuilder::request("NOTIFY", &sub.target)
            .header(
                "Via",
                &format!(
                    "SIP/2.0/{} {};branch={branch};rport",
                    transport.via_token(),
                    host_port(self.cfg.local)
                ),
            )
            .header("Max-Forwards", "70")
            .header("From", &format!("<{}>;tag={}", sub.impu, sub.tag))
            .header("To", &sub.subscriber)
            .header("Call-ID", &sub.call_id)
            .header("CSeq", &format!("{} NOTIFY", sub.cseq))
            .header("Event", "reg")
            .header("Subscription-State", &sub_state)
            .header("Contact", &format!("<sip:{}>", host_port(self.cfg.local)))
            .body("application/reginfo+xml", body.as_bytes())
            .build();
        self.send_own(branch, bytes, addr, transport, now, out);
        self.counters.notifies += 1;
    }

    /// Starts timer A (INVITE) or E for a request sent over UDP (RFC 3261 17.1.1.2, 17.1.2.2).
    fn arm_retransmit(
        &mut self,
        branch: &str,
        bytes: &[u8],
        to: SocketAddr,
        invite: bool,
        now: Instant,
    ) {
        let r = Retransmit {
            bytes: bytes.to_vec(),
            to,
            next: now + T1,
            interval: T1,
            invite,
            give_up: now + TX_LIFETIME,
        };
        self.retransmits.insert(branch.to_string(), r);
    }

    /// Sends a request of our own (its responses end here), retransmitted over UDP.
    fn send_own(
        &mut self,
        branch: String,
        bytes: Vec<u8>,
        addr: SocketAddr,
        transport: Transport,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if transport == Transport::Udp {
            self.arm_retransmit(&branch, &bytes, addr, false, now);
        }
        self.clients.insert(
            branch,
            ClientTx {
                source: None,
                invite: false,
                answered: false,
                at: now,
            },
        );
        out.push(Out {
            dest: Dest::To(addr, transport),
            bytes,
        });
    }

    // ---- proxy (RFC 3261 16) -----------------------------------------------------------

    /// Routes a request other than REGISTER: along its Route after ours, else to the
    /// registered callee of its Request-URI (IMPU: initial request; contact: in-dialog).
    fn route(&mut self, msg: &Message<'_>, from: Peer, now: Instant, out: &mut Vec<Out>) {
        let method = msg.method().unwrap_or_default();
        let is_ack = method == "ACK";
        let in_dialog = msg.to_header().is_ok_and(|t| t.tag().is_some());
        let initial = !in_dialog && matches!(method, "INVITE" | "SUBSCRIBE");
        let max_forwards = match msg.max_forwards() {
            Ok(None) => 70,
            Ok(Some(0)) => {
                if !is_ack {
                    self.respond(msg, from, 483, "Too Many Hops", &[], now, out);
                }
                return;
            }
            Ok(Some(n)) => n - 1,
            Err(_) => {
                if !is_ack {
                    self.respond(msg, from, 400, "Bad Max-Forwards", &[], now, out);
                }
                return;
            }
        };
        // RFC 3261 16.4: our own entry on top is consumed.
        let routes: Vec<String> = msg
            .list_values(HeaderKind::Route)
            .filter_map(Result::ok)
            .map(str::to_string)
            .collect();
        let skip = routes.iter().take_while(|r| self.is_us(r)).count();
        let rest: Vec<String> = routes.get(skip..).unwrap_or_default().to_vec();
        let ruri = msg.request_uri().unwrap_or_default();
        let mut e = MessageEdit::new(msg);
        let target = if let Some(next) = rest.first() {
            e.set_list("Route", &rest);
            addr_of(next, self.cfg.transport)
        } else if let Some(b) = self
            .by_impu
            .get(&uri_key(ruri))
            .filter(|_| !in_dialog)
            .and_then(|k| self.bindings.get(k))
        {
            // TS 24.229 5.4.3.3: to the contact, along the Path the UE registered.
            e.set_request_uri(&b.contact);
            e.set_list("Route", &b.path);
            b.path.first().and_then(|p| addr_of(p, self.cfg.transport))
        } else if let Some(b) = self
            .by_contact
            .get(&uri_key(ruri))
            .and_then(|k| self.bindings.get(k))
        {
            self.counters.routed_by_contact += 1;
            e.set_list("Route", &b.path);
            b.path.first().and_then(|p| addr_of(p, self.cfg.transport))
        } else {
            None
        };
        let Some((addr, transport)) = target else {
            self.counters.unroutable += 1;
            if initial {
                self.counters.call_failures += 1;
            }
            if !is_ack {
                let known = self.hss.by_impu(ruri).is_some();
                let (code, reason) = match (in_dialog, known) {
                    (true, _) => (481, "Call/Transaction Does Not Exist"),
                    (false, true) => (480, "Temporarily Unavailable"),
                    (false, false) => (404, "Not Found"),
                };
                self.respond(msg, from, code, reason, &[], now, out);
            }
            return;
        };
        e.replace("Max-Forwards", max_forwards.to_string());
        if initial {
            e.push_front("Record-Route", self.record_route());
        }
        let branch = self.branch();
        e.push_front(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                transport.via_token(),
                host_port(self.cfg.local)
            ),
        );
        if method == "INVITE" {
            // RFC 3261 16.2: stop the sender's retransmissions.
            self.respond(msg, from, 100, "Trying", &[], now, out);
            if initial {
                self.counters.calls += 1;
            }
        }
        let bytes = e.to_bytes();
        if !is_ack && transport == Transport::Udp {
            self.arm_retransmit(&branch, &bytes, addr, method == "INVITE", now);
        }
        if !is_ack {
            self.clients.insert(
                branch,
                ClientTx {
                    source: Some(from),
                    invite: method == "INVITE",
                    answered: false,
                    at: now,
                },
            );
        }
        out.push(Out {
            dest: Dest::To(addr, transport),
            bytes,
        });
    }

    /// Retransmissions due at `now` of requests sent over UDP: timer A doubles without
    /// bound for INVITE, timer E up to T2 for the rest; both give up after 64 x T1.
    pub fn poll(&mut self, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        let due: Vec<_> = {
            let (due, later) = std::mem::take(&mut self.delayed_notifies)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            self.delayed_notifies = later;
            due
        };
        for (_, sub, contact) in due {
            self.notify(sub, &contact, false, now, &mut out);
        }
        let mut gone = Vec::new();
        for (branch, r) in &mut self.retransmits {
            if r.next > now {
                continue;
            }
            if now >= r.give_up {
                gone.push(branch.clone());
                continue;
            }
            r.interval = if r.invite {
                r.interval * 2
            } else {
                (r.interval * 2).min(T2)
            };
            r.next = now + r.interval;
            self.counters.requests_resent += 1;
            out.push(Out {
                dest: Dest::To(r.to, Transport::Udp),
                bytes: r.bytes.clone(),
            });
        }
        for b in gone {
            self.retransmits.remove(&b);
            self.counters.request_timeouts += 1;
        }
        self.counters.messages_out += out.len() as u64;
        out
    }

    /// A response: to the peer the request came from, without our Via (RFC 3261 16.7).
    fn on_response(&mut self, msg: &Message<'_>, now: Instant, out: &mut Vec<Out>) {
        let branch = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string));
        let Some(c) = branch.as_ref().and_then(|b| self.clients.get_mut(b)) else {
            self.counters.stray_responses += 1;
            return;
        };
        let code = msg.status_code().unwrap_or(0);
        // Any response ends an INVITE's retransmissions, a final one the others'.
        if let Some(b) = branch.as_ref() {
            if c.invite || code >= 200 {
                self.retransmits.remove(b);
            }
        }
        if code == 100 {
            return;
        }
        let first_final = code >= 200 && !c.answered;
        if code >= 200 {
            c.answered = true;
        }
        let (source, invite) = (c.source, c.invite);
        let Some(source) = source else {
            if first_final && code >= 300 {
                self.counters.notify_failures += 1;
            }
            return;
        };
        if invite && first_final {
            if code < 300 {
                self.counters.calls_answered += 1;
            } else {
                self.counters.call_failures += 1;
            }
        }
        let mut e = MessageEdit::new(msg);
        e.pop_first_element("Via");
        let bytes = e.to_bytes();
        // The server transaction's last response, for retransmitted requests.
        if let Some(s) = server_key_of_response(msg).and_then(|k| self.servers.get_mut(&k)) {
            s.last = Some(bytes.clone());
            s.at = now;
        }
        out.push(Out {
            dest: Dest::Reply(source),
            bytes,
        });
    }
}

/// The server transaction of a request: its top Via branch and method (RFC 3261 17.2.3).
fn server_key(msg: &Message<'_>) -> Option<(String, String)> {
    let v = msg.top_via().ok()?;
    Some((v.branch()?.to_string(), msg.method()?.to_string()))
}

/// The server transaction a relayed response answers: the second Via's branch (the
/// sender's, under ours) and the CSeq method.
fn server_key_of_response(msg: &Message<'_>) -> Option<(String, String)> {
    let second = msg.vias().nth(1)?.ok()?;
    let method = msg.cseq().ok()?.method;
    Some((second.branch()?.to_string(), method.to_string()))
}

/// Whether `msg` is about the reg event package (RFC 3680).
fn is_reg_event(msg: &Message<'_>) -> bool {
    msg.header(HeaderKind::Event)
        .and_then(|e| e.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("reg"))
}

/// Text for an XML attribute or element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
