//! The daemon's TOML configuration: typed, validated, and with every error located at the
//! line and column of the offending key (keys and their meaning are documented in docs/CONFIG.md).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::sad::MAX_CAPACITY;
use akagate_slowpath::upstream::{HopTarget, Upstream, DEFAULT_HOP_HOLDDOWN, DEFAULT_HOP_TIMEOUT};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

mod template;
pub use template::ConfigTemplate;

/// The embedded default configuration: an in-memory demo that needs no NIC.
pub const DEFAULT_CONFIG: &str = r#"# akagate embedded defaults: the in-memory demo (no NIC needed).
[[sip-ports]]
address = "10.0.0.1"
port = 5060
transport-protocol = ["udp", "tcp"]
allow-anonymous = "registered"
ims-aka-profile = "default"

[[sip-ports]]
address = "2001:db8::1"
port = 5060
transport-protocol = ["udp", "tcp"]
allow-anonymous = "registered"
ims-aka-profile = "default"

[[ims-aka-profile]]
name = "default"
protected-client-port = 5062
protected-server-port = 5064
encr-alg-list = ["aes-cbc", "des-ede3-cbc", "null"]
auth-alg-list = ["hmac-sha-1-96", "hmac-md5-96"]
sec-agree-required = true

[port]
backend = "memory"
queues = 1

[cores]
workers = [1]
slowpath = 0

[addresses]
ipv4 = ["10.0.0.1"]
ipv6 = ["2001:db8::1"]

[registration]
min-expires = 600
max-expires = 7200
default-expires = 3600

[sa-table]
capacity = 1048576

[stack]
tcp-rx-buffer = 4096
tcp-tx-buffer = 2048
"#;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listening SIP ports (`[[sip-ports]]`), at least one.
    pub sip_ports: Vec<SipPort>,
    /// IMS-AKA / sec-agree profiles (`[[ims-aka-profile]]`), at least one.
    pub ims_aka_profiles: Vec<ImsAkaProfile>,
    /// Packet I/O backend (`[port]`).
    pub port: PortConfig,
    /// Core pinning (`[cores]`).
    pub cores: Cores,
    /// Addresses the fast path owns (`[addresses]`).
    pub addresses: Addresses,
    /// On-link prefixes, default gateways and static routes (`[routes]`). `None`: every
    /// destination is on the link (resolved by ARP/ND directly).
    pub routes: Option<Routes>,
    /// Subscriber store file (`[subscribers]`), resolved against the config file's directory.
    pub subscribers: Option<PathBuf>,
    /// Registration expiry bounds (`[registration]`).
    pub registration: Registration,
    /// Inbound SA table size (`[sa-table]`).
    pub sa_table: SaTableConfig,
    /// Per-UE TCP/IP stack sizes (`[stack]`).
    pub stack: StackConfig,
    /// Limits of the unprotected SIP port, per worker (`[sip-limits]`).
    pub sip_limits: SipLimits,
    /// Control socket for `akactl` (`[control]`).
    pub control: ControlConfig,
    /// SIP transaction timers (`[sip-timers]`).
    pub sip_timers: SipTimers,
    /// Prometheus metrics endpoint (`[metrics]`).
    pub metrics: MetricsConfig,
    /// Proxy mode (`[ims-core]`): REGISTERs go to this IMS core instead of the embedded
    /// registrar. `None`: embedded mode.
    pub ims_core: Option<Upstream>,
    /// Bounds on unauthenticated work and on the SQN journal (`[limits]`).
    pub limits: Limits,
    /// Certificate, key and client-auth policy of the TLS sip-ports (`[tls]`); present
    /// exactly when a sip-port uses `transport-protocol = ["tls"]`.
    pub tls: Option<TlsConfig>,
}

/// The TLS server identity and client-auth policy (`[tls]`, RFC 3261 26.2). Relative paths
/// are resolved against the config file's directory; the files are read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, end entity first.
    pub certificate: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// Whether clients present a certificate.
    pub client_auth: ClientAuthPolicy,
    /// PEM CA certificates client certificates must chain to (`optional`, `required`).
    pub client_ca: Option<PathBuf>,
}

/// `[tls] client-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthPolicy {
    /// No client certificate is asked for (the UE authenticates with IMS-AKA).
    None,
    /// Asked for; if sent it must chain to `client-ca`.
    Optional,
    /// Required, chaining to `client-ca`.
    Required,
}

/// One listening SIP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipPort {
    /// Local address, one of `[addresses]`.
    pub address: IpAddr,
    /// Unprotected SIP port (usually 5060).
    pub port: u16,
    /// Transports accepted on it; SIP over any other transport to this address and port is
    /// dropped by the daemon (`sip_transport_refused`).
    pub transports: Vec<Transport>,
    /// Index into [`Config::ims_aka_profiles`].
    pub ims_aka_profile: usize,
    /// SIP over TLS (`transport-protocol = ["tls"]`): TCP connections carrying TLS;
    /// `transports` is then `[Tcp]`.
    pub tls: bool,
}

/// A SIP transport protocol (the contract crate's one enum).
pub use akagate_proto::Transport;

/// An IMS-AKA profile: the P-CSCF's protected ports and its sec-agree algorithm preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsAkaProfile {
    /// Profile name referenced by `sip-ports.ims-aka-profile`.
    pub name: String,
    /// `port_pc`, the P-CSCF's protected client port (TS 33.203 7.1).
    pub port_pc: u16,
    /// `port_ps`, the P-CSCF's protected server port (TS 33.203 7.1).
    pub port_ps: u16,
    /// Encryption algorithms, most preferred first.
    pub encr_algs: Vec<EncrAlg>,
    /// Integrity algorithms, most preferred first.
    pub auth_algs: Vec<AuthAlg>,
    /// Whether a REGISTER without `Security-Client` / `Require: sec-agree` is refused.
    pub sec_agree_required: bool,
}

/// The packet I/O backend and its queue count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Which backend and its own settings.
    pub backend: Backend,
    /// Receive/transmit queue pairs, one per worker.
    pub queues: u16,
}

/// A packet I/O backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// AF_PACKET TPACKET_V3 rings on a kernel interface.
    AfPacket {
        /// Interface name, e.g. `veth0`.
        interface: String,
    },
    /// DPDK ethdev; the EAL arguments are passed verbatim.
    Dpdk {
        /// `rte_eal_init` arguments.
        eal_args: Vec<String>,
    },
    /// In-memory port pair (demo and tests).
    Memory,
}

impl Backend {
    /// The configuration token.
    pub fn token(&self) -> &'static str {
        match self {
            Backend::AfPacket { .. } => "af_packet",
            Backend::Dpdk { .. } => "dpdk",
            Backend::Memory => "memory",
        }
    }
}

/// CPU cores for the worker and slowpath threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores {
    /// One pinned worker per core, at least one.
    pub workers: Vec<usize>,
    /// One slowpath shard per entry, pinned to that core (`[cores] slowpath`, a core id or a
    /// list); empty: one unpinned shard. Each shard is a thread with its own `Core` owning the
    /// subscribers whose IMPI hashes to it (docs/ARCHITECTURE.md, "Slowpath shards").
    pub slowpath: Vec<usize>,
    /// What an idle worker does (`idle`, `idle-sleep-us`).
    pub idle: WorkerIdle,
}

/// What an idle worker does between polls (`[cores] idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerIdle {
    /// Spin without pause: lowest latency, a whole core per worker (production, DPDK style).
    BusyPoll,
    /// Spin briefly, then yield, then park up to `max_sleep` (woken at once by slowpath
    /// commands): for hosts with fewer cores than threads, so a test box measures the
    /// gateway and not an idle spin loop.
    Adaptive {
        /// Longest park per idle loop turn (`idle-sleep-us`).
        max_sleep: Duration,
    },
}

/// The addresses the fast path answers for (ARP/ND, ICMP echo, SIP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
}

/// Where the fast path sends what is not for a host on its link (`[routes]`): our addresses'
/// on-link prefixes, a default gateway per family and static routes (the UE pools behind a
/// PGW/UPF); the longest matching prefix picks the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Our addresses with their prefix lengths (`"10.0.0.1/24"`); an address of
    /// `[addresses]` not listed has no on-link neighbours (a /32 or /128).
    pub on_link: Vec<IpNet>,
    /// IPv4 default gateway, on an on-link prefix.
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 default gateway, on an on-link prefix.
    pub gateway_v6: Option<Ipv6Addr>,
    /// Static routes (`[[routes.static]]`), each prefix once.
    pub statics: Vec<StaticRoute>,
}

/// `[[routes.static]]`: destinations in `prefix` go through the on-link router `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticRoute {
    /// The destinations (host bits zero).
    pub prefix: IpNet,
    /// The router, on an on-link prefix of the same family.
    pub via: IpAddr,
}

/// Registration expiry bounds in seconds (RFC 3261 10.2.8, 10.3), the challenge timeout and
/// the OPTIONS keep-alive interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// Shorter requested expiries are answered with 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requested expiries are shortened to this.
    pub max_expires: u32,
    /// Used when the REGISTER carries no expiry.
    pub default_expires: u32,
    /// How long a challenge and its pending SA set wait for the protected REGISTER
    /// (TS 24.229 reg-await-auth).
    pub challenge_timeout: Duration,
    /// Period of the OPTIONS keep-alives to each registered UE; `None` is off.
    pub keepalive_interval: Option<Duration>,
    /// Consecutive failed keep-alives that end a registration (0: never).
    pub keepalive_failures: u32,
    /// Emergency registrations of unknown subscribers accepted without authentication.
    pub emergency_without_auth: bool,
}

/// Bounds on what strangers can make the P-CSCF do (issue 14) and on the SQN journal
/// (`[limits]`). Registered UEs' requests through their SAs are never limited by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unauthenticated REGISTERs (outside every SA) taken per source address per second.
    pub register_rate_per_source: u32,
    /// Unauthenticated REGISTERs taken per second in total.
    pub register_rate_total: u32,
    /// Outstanding challenges (real and decoy) sent to one source address.
    pub max_pending_per_source: usize,
    /// Outstanding challenges (real and decoy) in total.
    pub max_pending_total: usize,
    /// Outstanding challenges of one IMPI (one per source address; the oldest goes).
    pub max_pending_per_impi: usize,
    /// `Retry-After` of the 503s answering shed REGISTERs, in seconds.
    pub retry_after: u32,
    /// The SQN journal is checkpointed into the state file once it holds this many bytes
    /// (or the state file's size, if larger).
    pub sqn_journal_max_bytes: u64,
}

/// SIP transaction timers (RFC 3261 17, Table 4; 16.6 step 11 for Timer C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipTimers {
    /// T1, the round-trip estimate (500 ms); timers A, B, E, F, G, H, J derive from it.
    pub t1: Duration,
    /// T2, the longest retransmit interval of non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// T4, how long a message may stay in the network (5 s; timers I and K).
    pub t4: Duration,
    /// Timer D, how long a client INVITE transaction absorbs retransmitted final responses
    /// over UDP (at least 32 s).
    pub timer_d: Duration,
    /// Timer C, how long a forwarded INVITE may ring without a new provisional response
    /// (more than 3 minutes).
    pub timer_c: Duration,
}

/// The Prometheus metrics endpoint (`[metrics]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// TCP address of the HTTP endpoint serving `GET /metrics`; off when `None`. Port 0 picks
    /// a free port (see `DaemonHandle::metrics_addr`).
    pub listen: Option<SocketAddr>,
}

/// Size of the inbound SA table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaTableConfig {
    /// Number of inbound SPIs (two per registration, four while one is refreshed).
    pub capacity: usize,
}

/// Per-UE TCP/IP stack settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackConfig {
    /// Receive buffer of each TCP socket, in bytes.
    pub tcp_rx_buffer: usize,
    /// Transmit buffer of each TCP socket, in bytes.
    pub tcp_tx_buffer: usize,
    /// TCP sockets, with their buffers, each worker makes and first touches at start, so
    /// the connections of its next UEs cost no allocation or page fault in a registration.
    pub socket_reserve: usize,
}

/// Limits of the unprotected SIP port, per worker (`[sip-limits]`): anyone may connect
/// there, so connections, handshakes, slow or idle clients and unregistered sources are
/// bounded; every refusal is dropped and counted (`drop_sip_*`, `sip_conns_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipLimits {
    /// TCP connections to the SIP port from one source address.
    pub max_connections_per_source: usize,
    /// TCP connections to the SIP port in all.
    pub max_connections: usize,
    /// Connections to the SIP port still in the handshake (SYN-RECEIVED).
    pub max_half_open: usize,
    /// Stacks of source addresses that have no SA set (not yet challenged).
    pub max_unregistered: usize,
    /// The handshake, and a SIP message once begun, must complete within this time.
    pub message_deadline: Duration,
    /// An unregistered source's connection carrying no message for this long is closed.
    pub idle_deadline: Duration,
}

/// `[sip-limits]` when the section or a key is absent.
pub const DEFAULT_SIP_LIMITS: SipLimits = SipLimits {
    max_connections_per_source: 4,
    max_connections: 4096,
    max_half_open: 1024,
    max_unregistered: 16384,
    message_deadline: Duration::from_secs(10),
    idle_deadline: Duration::from_secs(64),
};

/// The `akactl` control socket (`[control]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Unix socket path; `None` means the default (`crate::control::default_socket`).
    pub socket: Option<PathBuf>,
    /// Whether the `keys` command may export ESP keys (for Wireshark); off by default.
    pub allow_key_export: bool,
}

/// One configuration error, located in the source text (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Line of the offending key or value.
    pub line: usize,
    /// Column (in characters) of the offending key or value.
    pub column: usize,
    /// What is wrong, starting with the key's dotted path.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The file was read but is invalid.
    #[error("{} error(s) in the configuration", .0.len())]
    Invalid(Vec<ConfigError>),
}

const DEFAULT_REGISTRATION: Registration = Registration {
    min_expires: 600,
    max_expires: 7200,
    default_expires: 3600,
    challenge_timeout: Duration::from_secs(240),
    keepalive_interval: None,
    keepalive_failures: 0,
    emergency_without_auth: false,
};
/// `[limits]` defaults: a few REGISTERs a second per address (a NAT of phones retrying),
/// about twice the re-registration rate of a million UEs, and a journal of about 16k SQNs.
pub const DEFAULT_LIMITS: Limits = Limits {
    register_rate_per_source: 20,
    register_rate_total: 10_000,
    max_pending_per_source: 64,
    max_pending_total: 65_536,
    max_pending_per_impi: 4,
    retry_after: 5,
    sqn_journal_max_bytes: 1 << 20,
};
/// RFC 3261 17.1.1.1 (T1, T2), 17.1.2.2 (T4), 17.1.1.2 (Timer D: at least 32 s),
/// 16.6 step 11 (Timer C: more than 3 minutes).
const DEFAULT_SIP_TIMERS: SipTimers = SipTimers {
    t1: Duration::from_millis(500),
    t2: Duration::from_secs(4),
    t4: Duration::from_secs(5),
    timer_d: Duration::from_secs(32),
    timer_c: Duration::from_secs(181),
};
/// Challenge timeout bounds in seconds.
const CHALLENGE_TIMEOUT_RANGE: Range<i64> = 1..3601;
/// Keep-alive interval bounds in seconds (0 is off).
const KEEPALIVE_RANGE: Range<i64> = 10..86401;
/// T1 in ms: RFC 3261 17.1.1.1 advises against less than 500 ms on the public Internet but
/// allows it in managed networks; 10 s bounds Timer B/F (64*T1) to about 11 minutes.
const T1_MS: Range<i64> = 100..10_001;
/// T2 in ms (4 s by default), at least T1.
const T2_MS: Range<i64> = 100..60_001;
/// T4 in ms (5 s by default).
const T4_MS: Range<i64> = 100..60_001;
/// Timer D in s: at least 32 (RFC 3261 17.1.1.2).
const TIMER_D_S: Range<i64> = 32..601;
/// Timer C in s: more than 3 minutes (RFC 3261 16.6 step 11).
const TIMER_C_S: Range<i64> = 181..86_401;
const DEFAULT_SA_TABLE_CAPACITY: usize = 1 << 20;
/// A TCP connection's receive buffer: 4 KiB, so a SIP request of up to 2 KiB (a REGISTER, an
/// INVITE with its SDP) fills at most half the window and its ACK can ride on the answer
/// (smoltcp, like RFC 1122 4.2.3.3, acknowledges at once a read that frees half the buffer).
const DEFAULT_TCP_RX_BUFFER: usize = 4096;
/// A TCP connection's send buffer; a larger message waits in the connection's queue.
const DEFAULT_TCP_TX_BUFFER: usize = 2048;
/// Spare TCP sockets each worker makes at start (`[stack] socket-reserve`): about 6.6 MiB
/// per worker with the default buffers.
const DEFAULT_SOCKET_RESERVE: usize = 1024;
const SOCKET_RESERVE_RANGE: Range<i64> = 0..(1 << 20) + 1;
const TCP_BUFFER_RANGE: Range<i64> = 1024..(4 << 20) + 1;
/// Highest core id accepted (Linux's CPU_SETSIZE is 1024).
const MAX_CORE: i64 = 1023;
/// IFNAMSIZ - 1.
const MAX_IFNAME: usize = 15;

impl Default for Config {
    /// The embedded in-memory demo configuration ([`DEFAULT_CONFIG`]).
    fn default() -> Self {
        // Not input: a constant whose validity `tests::default_config_is_valid` checks.
        parse(DEFAULT_CONFIG).expect("the embedded default configuration is valid")
    }
}

impl Config {
    /// Reads and validates `path`; a relative subscriber file is resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let src = std::fs::read_to_string(path)?;
        let mut config = parse(&src).map_err(LoadError::Invalid)?;
        if let (Some(file), Some(dir)) = (config.subscribers.as_mut(), path.parent()) {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
        if let (Some(file), Some(dir)) = (config.control.socket.as_mut(), path.parent()) {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
        if let (Some(tls), Some(dir)) = (config.tls.as_mut(), path.parent()) {
            let files = [&mut tls.certificate, &mut tls.key];
            for file in files.into_iter().chain(tls.client_ca.as_mut()) {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        Ok(config)
    }

    /// A one-paragraph human summary, printed by `akagate --check-config`.
    pub fn summary(&self) -> String {
        let join = |v: Vec<String>| v.join(", ");
        let ports = join(
            self.sip_ports
                .iter()
                .map(|p| {
                    let mut transports: Vec<&str> =
                        p.transports.iter().map(|t| t.token()).collect();
                    if p.tls {
                        transports = vec!["tls"];
                    }
                    let profile = self
                        .ims_aka_profiles
                        .get(p.ims_aka_profile)
                        .map_or("?", |a| a.name.as_str());
                    format!(
                        "{} {} (profile \"{profile}\")",
                        SocketAddr::new(p.address, p.port),
                        transports.join("+"),
                    )
                })
                .collect(),
        );
        let profiles = join(
            self.ims_aka_profiles
                .iter()
                .map(|a| {
                    let ealg: Vec<&str> = a.encr_algs.iter().map(|e| e.token()).collect();
                    let alg: Vec<&str> = a.auth_algs.iter().map(|e| e.token()).collect();
                    format!(
                        "\"{}\" with port_pc {} and port_ps {}, ealg {}, alg {}, sec-agree {}",
                        a.name,
                        a.port_pc,
                        a.port_ps,
                        ealg.join(","),
                        alg.join(","),
                        if a.sec_agree_required {
                            "required"
                        } else {
                            "optional"
                        }
                    )
                })
                .collect(),
        );
        let backend = match &self.port.backend {
            Backend::AfPacket { interface } => format!("af_packet on {interface}"),
            Backend::Dpdk { eal_args } => format!("dpdk with EAL args [{}]", eal_args.join(" ")),
            Backend::Memory => "memory".to_string(),
        };
        let workers: Vec<String> = self.cores.workers.iter().map(|c| c.to_string()).collect();
        let slowpath = match self.cores.slowpath.as_slice() {
            [] => "unpinned".to_string(),
            [c] => format!("on core {c}"),
            many => format!(
                "{} shards on cores {}",
                many.len(),
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let addresses: Vec<String> = self
            .addresses
            .ipv4
            .iter()
            .map(ToString::to_string)
            .chain(self.addresses.ipv6.iter().map(ToString::to_string))
            .collect();
        let routes = self
            .routes
            .as_ref()
            .map_or("all on the link".to_string(), |r| {
                let mut parts: Vec<String> =
                    r.on_link.iter().map(|n| format!("{n} on-link")).collect();
                let defaults = r.gateway_v4.map(IpAddr::V4).into_iter();
                let defaults = defaults.chain(r.gateway_v6.map(IpAddr::V6));
                parts.extend(defaults.map(|g| format!("default via {g}")));
                parts.extend(
                    r.statics
                        .iter()
                        .map(|s| format!("{} via {}", s.prefix, s.via)),
                );
                parts.join(", ")
            });
        let subscribers = self
            .subscribers
            .as_ref()
            .map_or("no subscriber file".to_string(), |f| {
                format!("subscribers from {}", f.display())
            });
        let r = self.registration;
        let keepalive = r
            .keepalive_interval
            .map_or("off".to_string(), |d| format!("every {} s", d.as_secs()));
        let t = self.sip_timers;
        let metrics = self
            .metrics
            .listen
            .map_or("off".to_string(), |a| format!("on http://{a}/metrics"));
        format!(
            "SIP on {ports}; IMS-AKA profile(s) {profiles}; backend {backend} with {} queue(s); \
             workers on core(s) {}, slowpath {slowpath}; addresses {}; routes {routes}; \
             {subscribers}; \
             registration expires {}..={} s (default {}), challenge timeout {} s, \
             keep-alives {keepalive}; SIP timers T1 {} ms, T2 {} ms, T4 {} ms, D {} s, C {} s; \
             SA table of {} SPIs; TCP buffers {} rx / {} tx bytes, {} sockets reserved per worker; \
             metrics {metrics}.",
            self.port.queues,
            workers.join(","),
            addresses.join(", "),
            r.min_expires,
            r.max_expires,
            r.default_expires,
            r.challenge_timeout.as_secs(),
            t.t1.as_millis(),
            t.t2.as_millis(),
            t.t4.as_millis(),
            t.timer_d.as_secs(),
            t.timer_c.as_secs(),
            self.sa_table.capacity,
            self.stack.tcp_rx_buffer,
            self.stack.tcp_tx_buffer,
            self.stack.socket_reserve,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written, with spans.

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    sip_ports: S<Vec<RawSipPort>>,
    ims_aka_profile: S<Vec<RawProfile>>,
    port: RawPort,
    cores: RawCores,
    addresses: RawAddresses,
    routes: Option<RawRoutes>,
    subscribers: Option<RawSubscribers>,
    registration: Option<RawRegistration>,
    sa_table: Option<RawSaTable>,
    stack: Option<RawStack>,
    sip_limits: Option<RawSipLimits>,
    control: Option<RawControl>,
    sip_timers: Option<S<RawSipTimers>>,
    metrics: Option<RawMetrics>,
    ims_core: Option<RawImsCore>,
    limits: Option<RawLimits>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTls {
    certificate: S<String>,
    key: S<String>,
    client_auth: Option<S<String>>,
    client_ca: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImsCore {
    next_hops: S<Vec<S<String>>>,
    local: S<String>,
    #[serde(default)]
    trusted: Vec<S<String>>,
    visited_network_id: Option<S<String>>,
    #[serde(default)]
    emergency_next_hops: Vec<S<String>>,
    #[serde(default)]
    emergency_numbers: Vec<S<String>>,
    anonymous_emergency: Option<bool>,
    #[serde(default)]
    dns_servers: Vec<S<String>>,
    hop_timeout_ms: Option<S<i64>>,
    hop_holddown_s: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    register_rate_per_source: Option<S<i64>>,
    register_rate_total: Option<S<i64>>,
    max_pending_per_source: Option<S<i64>>,
    max_pending_total: Option<S<i64>>,
    max_pending_per_impi: Option<S<i64>>,
    retry_after: Option<S<i64>>,
    sqn_journal_max_bytes: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSipPort {
    address: S<String>,
    port: S<i64>,
    transport_protocol: Option<S<Vec<S<String>>>>,
    allow_anonymous: Option<S<String>>,
    ims_aka_profile: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawProfile {
    name: S<String>,
    protected_client_port: S<i64>,
    protected_server_port: S<i64>,
    encr_alg_list: Option<S<Vec<S<String>>>>,
    auth_alg_list: Option<S<Vec<S<String>>>>,
    sec_agree_required: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPort {
    backend: S<String>,
    interface: Option<S<String>>,
    queues: Option<S<i64>>,
    eal_args: Option<S<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCores {
    workers: S<Vec<S<i64>>>,
    /// One core id or a list of them (`slowpath = 0`, `slowpath = [2, 3]`).
    slowpath: Option<S<toml::Value>>,
    idle: Option<S<String>>,
    idle_sleep_us: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAddresses {
    #[serde(default)]
    ipv4: Vec<S<String>>,
    #[serde(default)]
    ipv6: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRoutes {
    #[serde(default)]
    on_link: Vec<S<String>>,
    gateway_v4: Option<S<String>>,
    gateway_v6: Option<S<String>>,
    #[serde(default, rename = "static")]
    statics: Vec<RawStaticRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStaticRoute {
    prefix: S<String>,
    via: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSubscribers {
    file: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRegistration {
    min_expires: Option<S<i64>>,
    max_expires: Option<S<i64>>,
    default_expires: Option<S<i64>>,
    challenge_timeout: Option<S<i64>>,
    keepalive_interval: Option<S<i64>>,
    keepalive_failures: Option<S<i64>>,
    emergency_without_auth: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSipTimers {
    t1_ms: Option<S<i64>>,
    t2_ms: Option<S<i64>>,
    t4_ms: Option<S<i64>>,
    timer_d_s: Option<S<i64>>,
    timer_c_s: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMetrics {
    listen: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSaTable {
    capacity: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStack {
    tcp_rx_buffer: Option<S<i64>>,
    tcp_tx_buffer: Option<S<i64>>,
    socket_reserve: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSipLimits {
    max_connections_per_source: Option<S<i64>>,
    max_connections: Option<S<i64>>,
    max_half_open: Option<S<i64>>,
    max_unregistered: Option<S<i64>>,
    message_deadline: Option<S<i64>>,
    idle_deadline: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawControl {
    socket: Option<S<String>>,
    allow_key_export: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Parses and validates a configuration; on failure returns every error found, in file order.
pub fn parse(src: &str) -> Result<Config, Vec<ConfigError>> {
    let mut v = Validator {
        src,
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(src) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            // toml's messages can span lines; keep one error per output line.
            let message = e.message().trim_end().replace('\n', "; ");
            v.error(&span, message);
            return Err(v.errors);
        }
    };
    let config = v.config(raw);
    if v.errors.is_empty() {
        config.ok_or(v.errors)
    } else {
        v.errors.sort_by_key(|e| (e.line, e.column));
        Err(v.errors)
    }
}

struct Validator<'a> {
    src: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    /// Records an error at the start of `span`.
    fn error(&mut self, span: &Range<usize>, message: String) {
        let (line, column) = line_column(self.src, span.start);
        self.errors.push(ConfigError {
            line,
            column,
            message,
        });
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let addresses = self.addresses(&raw.addresses);
        let routes = match (&raw.routes, addresses.as_ref()) {
            (Some(r), Some(a)) => self.routes(r, a).map(Some),
            (Some(_), None) => None,
            (None, _) => Some(None),
        };
        let profiles = self.profiles(&raw.ims_aka_profile);
        let sip_ports = self.sip_ports(&raw.sip_ports, &raw.ims_aka_profile, addresses.as_ref());
        self.protected_ports_clash(&raw.sip_ports, &raw.ims_aka_profile);
        let cores = self.cores(&raw.cores);
        let port = self.port(&raw.port, cores.as_ref());
        let subscribers = raw.subscribers.as_ref().and_then(|s| self.subscribers(s));
        let registration = match &raw.registration {
            Some(r) => self.registration(r),
            None => Some(DEFAULT_REGISTRATION),
        };
        let sa_table = self.sa_table(raw.sa_table.as_ref());
        let stack = self.stack(raw.stack.as_ref());
        let sip_limits = self.sip_limits(raw.sip_limits.as_ref());
        let control = self.control(raw.control.as_ref());
        let sip_timers = match &raw.sip_timers {
            Some(t) => self.sip_timers(t),
            None => Some(DEFAULT_SIP_TIMERS),
        };
        let metrics = self.metrics(raw.metrics.as_ref());
        let ims_core = match &raw.ims_core {
            Some(c) => self.ims_core(c, addresses.as_ref()).map(Some),
            None => Some(None),
        };
        let limits = self.limits(raw.limits.as_ref());
        let tls = self.tls(raw.tls.as_ref(), sip_ports.as_deref(), &raw.sip_ports);
        Some(Config {
            sip_ports: sip_ports?,
            ims_aka_profiles: profiles?,
            port: port?,
            cores: cores?,
            addresses: addresses?,
            routes: routes?,
            subscribers: match raw.subscribers {
                Some(_) => Some(subscribers?),
                None => None,
            },
            registration: registration?,
            sa_table: sa_table?,
            stack: stack?,
            sip_limits: sip_limits?,
            control: control?,
            sip_timers: sip_timers?,
            metrics: metrics?,
            ims_core: ims_core?,
            limits: limits?,
            tls: tls?,
        })
    }

    /// `[ims-core]`: next hops (addresses; RFC 3263 names are refused with a clear error),
    /// our core-facing address (not one the fast path owns: the core side uses the kernel's
    /// sockets), trusted prefixes.
    fn ims_core(&mut self, raw: &RawImsCore, addresses: Option<&Addresses>) -> Option<Upstream> {
        let mut ok = true;
        let mut next_hops = Vec::new();
        let mut emergency_next_hops = Vec::new();
        for h in &raw.emergency_next_hops {
            match HopTarget::parse(h.get_ref()) {
                Ok(hop) => emergency_next_hops.push(hop),
                Err(e) => {
                    self.error(
                        &h.span(),
                        format!("ims-core.emergency-next-hops: \"{}\": {e}", h.get_ref()),
                    );
                    ok = false;
                }
            }
        }
        let mut emergency_numbers = Vec::new();
        for n in &raw.emergency_numbers {
            let digits = n.get_ref();
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '+') {
                self.error(
                    &n.span(),
                    format!("ims-core.emergency-numbers: \"{digits}\" is not a number"),
                );
                ok = false;
            } else {
                emergency_numbers.push(digits.clone());
            }
        }
        if raw.next_hops.get_ref().is_empty() {
            self.error(
                &raw.next_hops.span(),
                "ims-core.next-hops: must not be empty".into(),
            );
            ok = false;
        }
        for h in raw.next_hops.get_ref() {
            match HopTarget::parse(h.get_ref()) {
                Ok(hop) => next_hops.push(hop),
                Err(e) => {
                    self.error(
                        &h.span(),
                        format!("ims-core.next-hops: \"{}\": {e}", h.get_ref()),
                    );
                    ok = false;
                }
            }
        }
        let local = match raw.local.get_ref().parse::<SocketAddr>() {
            Ok(a)
                if addresses.is_some_and(|x| match a.ip() {
                    IpAddr::V4(v4) => x.ipv4.contains(&v4),
                    IpAddr::V6(v6) => x.ipv6.contains(&v6),
                }) =>
            {
                self.error(
                    &raw.local.span(),
                    format!(
                        "ims-core.local: {} belongs to the fast path ([addresses]); the core side \
                         needs an address of the host's own network stack",
                        a.ip()
                    ),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    &raw.local.span(),
                    format!(
                        "ims-core.local: \"{}\" is not an address and port (e.g. \"10.0.0.1:5060\")",
                        raw.local.get_ref()
                    ),
                );
                None
            }
        };
        let mut trusted = Vec::new();
        for t in &raw.trusted {
            let parsed = t
                .get_ref()
                .parse::<IpNet>()
                .or_else(|_| t.get_ref().parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => trusted.push(n),
                Err(_) => {
                    self.error(
                        &t.span(),
                        format!(
                            "ims-core.trusted: \"{}\" is not an address or prefix",
                            t.get_ref()
                        ),
                    );
                    ok = false;
                }
            }
        }
        let mut dns_servers = Vec::new();
        for d in &raw.dns_servers {
            match d.get_ref().parse::<IpAddr>() {
                Ok(a) => dns_servers.push(a),
                Err(_) => {
                    self.error(
                        &d.span(),
                        format!(
                            "ims-core.dns-servers: \"{}\" is not an address",
                            d.get_ref()
                        ),
                    );
                    ok = false;
                }
            }
        }
        let visited_network_id = raw
            .visited_network_id
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or_default();
        let hop_timeout = match &raw.hop_timeout_ms {
            Some(v) => self
                .int_in(
                    v,
                    "ims-core.hop-timeout-ms",
                    100..32_001,
                    "a time in milliseconds",
                )
                .map(|ms| Duration::from_millis(ms as u64)),
            None => Some(DEFAULT_HOP_TIMEOUT),
        };
        let hop_holddown = match &raw.hop_holddown_s {
            Some(v) => self
                .int_in(v, "ims-core.hop-holddown-s", 1..3601, "a time in seconds")
                .map(|s| Duration::from_secs(s as u64)),
            None => Some(DEFAULT_HOP_HOLDDOWN),
        };
        if !ok {
            return None;
        }
        Some(Upstream {
            hop_timeout: hop_timeout?,
            hop_holddown: hop_holddown?,
            local: local?,
            trusted,
            visited_network_id,
            next_hops: Upstream::literal_hops(&next_hops),
            targets: next_hops,
            emergency_next_hops: Upstream::literal_hops(&emergency_next_hops),
            emergency_targets: emergency_next_hops,
            dns_servers,
            emergency_numbers,
            anonymous_emergency: raw.anonymous_emergency.unwrap_or(false),
        })
    }

    /// `[limits]`: each key a positive integer within its range.
    fn limits(&mut self, raw: Option<&RawLimits>) -> Option<Limits> {
        let d = DEFAULT_LIMITS;
        let Some(raw) = raw else {
            return Some(d);
        };
        let mut get = |v: &Option<S<i64>>, key: &str, range: Range<i64>, default: u64| match v {
            None => Some(default),
            Some(v) => self
                .int_in(v, key, range, "a positive count")
                .and_then(|n| u64::try_from(n).ok()),
        };
        let per_second = 1..1_000_001;
        let pending = 1..(1 << 24) + 1;
        let rate_source = get(
            &raw.register_rate_per_source,
            "limits.register-rate-per-source",
            per_second.clone(),
            u64::from(d.register_rate_per_source),
        );
        let rate_total = get(
            &raw.register_rate_total,
            "limits.register-rate-total",
            per_second,
            u64::from(d.register_rate_total),
        );
        let per_source = get(
            &raw.max_pending_per_source,
            "limits.max-pending-per-source",
            pending.clone(),
            d.max_pending_per_source as u64,
        );
        let total = get(
            &raw.max_pending_total,
            "limits.max-pending-total",
            pending,
            d.max_pending_total as u64,
        );
        let per_impi = get(
            &raw.max_pending_per_impi,
            "limits.max-pending-per-impi",
            1..65,
            d.max_pending_per_impi as u64,
        );
        let retry_after = get(
            &raw.retry_after,
            "limits.retry-after",
            1..3601,
            u64::from(d.retry_after),
        );
        let journal = get(
            &raw.sqn_journal_max_bytes,
            "limits.sqn-journal-max-bytes",
            4096..(1 << 40) + 1,
            d.sqn_journal_max_bytes,
        );
        let count = |n: Option<u64>| n.and_then(|n| usize::try_from(n).ok());
        let small = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok());
        Some(Limits {
            register_rate_per_source: small(rate_source)?,
            register_rate_total: small(rate_total)?,
            max_pending_per_source: count(per_source)?,
            max_pending_total: count(total)?,
            max_pending_per_impi: count(per_impi)?,
            retry_after: small(retry_after)?,
            sqn_journal_max_bytes: journal?,
        })
    }

    /// An integer in `range`, or an error naming `key`.
    fn int_in(&mut self, v: &S<i64>, key: &str, range: Range<i64>, what: &str) -> Option<i64> {
        let n = *v.get_ref();
        if range.contains(&n) {
            Some(n)
        } else {
            self.error(
                &v.span(),
                format!(
                    "{key}: {n} is not {what} ({}..={})",
                    range.start,
                    range.end - 1
                ),
            );
            None
        }
    }

    fn port_number(&mut self, v: &S<i64>, key: &str) -> Option<u16> {
        self.int_in(v, key, 1..65536, "a port number")
            .and_then(|n| u16::try_from(n).ok())
    }

    /// A non-empty list of known tokens without repetitions.
    fn token_list<T: PartialEq + Copy>(
        &mut self,
        list: &S<Vec<S<String>>>,
        key: &str,
        known: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<Vec<T>> {
        if list.get_ref().is_empty() {
            self.error(&list.span(), format!("{key}: must not be empty"));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in list.get_ref() {
            match parse(item.get_ref()) {
                Some(t) if out.contains(&t) => {
                    self.error(
                        &item.span(),
                        format!("{key}: \"{}\" is listed twice", item.get_ref()),
                    );
                    ok = false;
                }
                Some(t) => out.push(t),
                None => {
                    self.error(
                        &item.span(),
                        format!(
                            "{key}: unknown value \"{}\" (expected one of {known})",
                            item.get_ref()
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn addresses(&mut self, raw: &RawAddresses) -> Option<Addresses> {
        let mut ok = true;
        let mut seen = HashSet::new();
        let mut ipv4 = Vec::new();
        let mut ipv6 = Vec::new();
        for (family, list) in [("ipv4", &raw.ipv4), ("ipv6", &raw.ipv6)] {
            for (i, a) in list.iter().enumerate() {
                let key = format!("addresses.{family}[{i}]");
                match a.get_ref().parse::<IpAddr>() {
                    Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                        self.error(
                            &a.span(),
                            format!("{key}: {ip} is not a unicast host address"),
                        );
                        ok = false;
                    }
                    Ok(ip) if !seen.insert(ip) => {
                        self.error(&a.span(), format!("{key}: {ip} is listed twice"));
                        ok = false;
                    }
                    Ok(IpAddr::V4(ip)) if family == "ipv4" => ipv4.push(ip),
                    Ok(IpAddr::V6(ip)) if family == "ipv6" => ipv6.push(ip),
                    Ok(ip) => {
                        self.error(&a.span(), format!("{key}: {ip} is not an {family} address"));
                        ok = false;
                    }
                    Err(_) => {
                        self.error(
                            &a.span(),
                            format!("{key}: \"{}\" is not an IP address", a.get_ref()),
                        );
                        ok = false;
                    }
                }
            }
        }
        if ok && ipv4.is_empty() && ipv6.is_empty() {
            self.error(
                &(0..0),
                "addresses: at least one of addresses.ipv4 and addresses.ipv6 must be set"
                    .to_string(),
            );
            ok = false;
        }
        ok.then_some(Addresses { ipv4, ipv6 })
    }

    /// `[routes]`: on-link prefixes of our own addresses, each address once; gateways and
    /// routers on an on-link prefix and not ours; static prefixes without host bits, each
    /// once and none equal to an on-link prefix or a configured default.
    fn routes(&mut self, raw: &RawRoutes, addresses: &Addresses) -> Option<Routes> {
        let mut ok = true;
        let ours = |ip: IpAddr| match ip {
            IpAddr::V4(a) => addresses.ipv4.contains(&a),
            IpAddr::V6(a) => addresses.ipv6.contains(&a),
        };
        let mut on_link: Vec<IpNet> = Vec::new();
        for (i, e) in raw.on_link.iter().enumerate() {
            let key = format!("routes.on-link[{i}]");
            let text = e.get_ref();
            let msg = match text.parse::<IpNet>() {
                Err(_) => format!(
                    "{key}: \"{text}\" is not an address with a prefix length (e.g. \"10.0.0.1/24\")"
                ),
                Ok(n) if !ours(n.addr()) => {
                    format!("{key}: {} is not one of [addresses]", n.addr())
                }
                Ok(n) if on_link.iter().any(|o| o.addr() == n.addr()) => {
                    format!("{key}: {} has its prefix listed twice", n.addr())
                }
                Ok(n) => {
                    on_link.push(n);
                    continue;
                }
            };
            self.error(&e.span(), msg);
            ok = false;
        }
        let on_a_link = |ip: IpAddr| on_link.iter().any(|n| n.contains(&ip));
        // A router must be a neighbour: on a link prefix, and not us.
        let router = |v: &mut Self, key: &str, text: &S<String>| -> Option<IpAddr> {
            let msg = match text.get_ref().parse::<IpAddr>() {
                Err(_) => format!("{key}: \"{}\" is not an IP address", text.get_ref()),
                Ok(ip) if ours(ip) => format!("{key}: {ip} is one of our own [addresses]"),
                Ok(ip) if !on_a_link(ip) => format!(
                    "{key}: {ip} is not on a link prefix (routes.on-link); a gateway must be \
                     reachable without a route"
                ),
                Ok(ip) => return Some(ip),
            };
            v.error(&text.span(), msg);
            None
        };
        // The default gateway of each family, checked alike.
        let mut defaults: [Option<IpAddr>; 2] = [None, None];
        for (slot, v4, g) in [(0, true, &raw.gateway_v4), (1, false, &raw.gateway_v6)] {
            let Some(g) = g else { continue };
            let key = format!("routes.gateway-v{}", if v4 { 4 } else { 6 });
            match router(self, &key, g) {
                Some(a) if a.is_ipv4() == v4 => defaults[slot] = Some(a),
                Some(a) => {
                    let family = if v4 { "an IPv4" } else { "an IPv6" };
                    self.error(&g.span(), format!("{key}: {a} is not {family} address"));
                    ok = false;
                }
                None => ok = false,
            }
        }
        let gateway_v4 = match defaults[0] {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        };
        let gateway_v6 = match defaults[1] {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        };
        let mut statics: Vec<StaticRoute> = Vec::new();
        for (i, r) in raw.statics.iter().enumerate() {
            let key = format!("routes.static[{i}]");
            let text = r.prefix.get_ref();
            let defaults = [
                gateway_v4.map(|_| "0.0.0.0/0".parse::<IpNet>()),
                gateway_v6.map(|_| "::/0".parse::<IpNet>()),
            ];
            let msg = match text.parse::<IpNet>() {
                Err(_) => Some(format!(
                    "{key}.prefix: \"{text}\" is not a prefix (e.g. \"10.45.0.0/16\")"
                )),
                Ok(n) if n.trunc() != n => Some(format!(
                    "{key}.prefix: {n} has host bits set (the prefix is {})",
                    n.trunc()
                )),
                Ok(n) if statics.iter().any(|s| s.prefix == n) => {
                    Some(format!("{key}.prefix: {n} is routed twice"))
                }
                Ok(n) if on_link.iter().any(|o| o.trunc() == n) => Some(format!(
                    "{key}.prefix: {n} is an on-link prefix (routes.on-link)"
                )),
                Ok(n) if defaults.iter().flatten().any(|d| d.as_ref() == Ok(&n)) => Some(format!(
                    "{key}.prefix: {n} duplicates the default route (routes.gateway-v{})",
                    if n.addr().is_ipv4() { 4 } else { 6 }
                )),
                Ok(n) => {
                    let via = router(self, &format!("{key}.via"), &r.via);
                    match via {
                        Some(v) if v.is_ipv4() == n.addr().is_ipv4() => {
                            statics.push(StaticRoute { prefix: n, via: v });
                            None
                        }
                        Some(v) => {
                            self.error(
                                &r.via.span(),
                                format!("{key}.via: {v} is not of the family of {n}"),
                            );
                            ok = false;
                            None
                        }
                        None => {
                            ok = false;
                            None
                        }
                    }
                }
            };
            if let Some(msg) = msg {
                self.error(&r.prefix.span(), msg);
                ok = false;
            }
        }
        ok.then_some(Routes {
            on_link,
            gateway_v4,
            gateway_v6,
            statics,
        })
    }

    fn profiles(&mut self, raw: &S<Vec<RawProfile>>) -> Option<Vec<ImsAkaProfile>> {
        if raw.get_ref().is_empty() {
            self.error(
                &raw.span(),
                "ims-aka-profile: at least one is required".into(),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut names = HashSet::new();
        for (i, p) in raw.get_ref().iter().enumerate() {
            let key = |k: &str| format!("ims-aka-profile[{i}].{k}");
            let name = p.name.get_ref();
            if name.is_empty() {
                self.error(
                    &p.name.span(),
                    format!("{}: must not be empty", key("name")),
                );
                ok = false;
            } else if !names.insert(name.as_str()) {
                self.error(
                    &p.name.span(),
                    format!("{}: profile \"{name}\" is defined twice", key("name")),
                );
                ok = false;
            }
            let port_pc = self.port_number(&p.protected_client_port, &key("protected-client-port"));
            let port_ps = self.port_number(&p.protected_server_port, &key("protected-server-port"));
            if let (Some(pc), Some(ps)) = (port_pc, port_ps) {
                // TS 33.203 7.1: port_pc and port_ps are two distinct ports.
                if pc == ps {
                    self.error(
                        &p.protected_server_port.span(),
                        format!(
                            "{}: {ps} equals protected-client-port; port_pc and port_ps must differ",
                            key("protected-server-port")
                        ),
                    );
                    ok = false;
                }
            }
            let encr_algs = match &p.encr_alg_list {
                Some(list) => self.token_list(
                    list,
                    &key("encr-alg-list"),
                    "aes-cbc, des-ede3-cbc, aes-gcm, null",
                    EncrAlg::from_token,
                ),
                None => Some(vec![EncrAlg::AesCbc, EncrAlg::DesEde3Cbc, EncrAlg::Null]),
            };
            let auth_algs = match &p.auth_alg_list {
                Some(list) => self.token_list(
                    list,
                    &key("auth-alg-list"),
                    "hmac-sha-1-96, hmac-md5-96, aes-gmac",
                    // `alg=null` is implied by aes-gcm in encr-alg-list (TS 33.203 Annex H),
                    // never listed: on its own it would mean no integrity.
                    |t| AuthAlg::from_token(t).filter(|a| *a != AuthAlg::Null),
                ),
                None => Some(vec![AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96]),
            };
            match (port_pc, port_ps, encr_algs, auth_algs) {
                (Some(port_pc), Some(port_ps), Some(encr_algs), Some(auth_algs)) => {
                    out.push(ImsAkaProfile {
                        name: name.clone(),
                        port_pc,
                        port_ps,
                        encr_algs,
                        auth_algs,
                        sec_agree_required: p.sec_agree_required.unwrap_or(true),
                    })
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn sip_ports(
        &mut self,
        raw: &S<Vec<RawSipPort>>,
        profiles: &S<Vec<RawProfile>>,
        addresses: Option<&Addresses>,
    ) -> Option<Vec<SipPort>> {
        if raw.get_ref().is_empty() {
            self.error(&raw.span(), "sip-ports: at least one is required".into());
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut seen = HashSet::new();
        for (i, p) in raw.get_ref().iter().enumerate() {
            let key = |k: &str| format!("sip-ports[{i}].{k}");
            let address = match p.address.get_ref().parse::<IpAddr>() {
                Ok(ip) => {
                    let owned = addresses.map_or(true, |a| match ip {
                        IpAddr::V4(v4) => a.ipv4.contains(&v4),
                        IpAddr::V6(v6) => a.ipv6.contains(&v6),
                    });
                    if !owned {
                        self.error(
                            &p.address.span(),
                            format!("{}: {ip} is not one of [addresses]", key("address")),
                        );
                    }
                    owned.then_some(ip)
                }
                Err(_) => {
                    self.error(
                        &p.address.span(),
                        format!(
                            "{}: \"{}\" is not an IP address",
                            key("address"),
                            p.address.get_ref()
                        ),
                    );
                    None
                }
            };
            let port = self.port_number(&p.port, &key("port"));
            if let (Some(a), Some(n)) = (address, port) {
                if !seen.insert((a, n)) {
                    self.error(
                        &p.port.span(),
                        format!("{}: {a} port {n} is listed twice", key("port")),
                    );
                    ok = false;
                }
            }
            // (transport, over TLS)
            let transports =
                match &p.transport_protocol {
                    Some(list) => {
                        self.token_list(list, &key("transport-protocol"), "udp, tcp, tls", |s| {
                            match s {
                                "udp" => Some((Transport::Udp, false)),
                                "tcp" => Some((Transport::Tcp, false)),
                                "tls" => Some((Transport::Tcp, true)),
                                _ => None,
                            }
                        })
                        .and_then(|t| {
                            // TLS and clear SIP cannot be told apart on one port before the first
                            // bytes; RFC 3261 26.2 gives TLS its own port (5061).
                            if t.len() > 1 && t.iter().any(|&(_, tls)| tls) {
                                self.error(
                                    &list.span(),
                                    format!(
                                        "{}: \"tls\" must be alone on its port; list TLS as a \
                                     sip-ports entry of its own (usually port 5061)",
                                        key("transport-protocol")
                                    ),
                                );
                                return None;
                            }
                            Some(t)
                        })
                    }
                    None => Some(vec![(Transport::Udp, false), (Transport::Tcp, false)]),
                };
            // TS 33.203 6.3 / TS 24.229 5.2.6.1: only REGISTER passes outside the SAs; the core
            // answers anything else from an unregistered source 403. The key states that
            // policy; it has no other value.
            let allow_anonymous = match &p.allow_anonymous {
                None => Some(()),
                Some(s) => match s.get_ref().as_str() {
                    "registered" => Some(()),
                    "all" => {
                        self.error(
                            &s.span(),
                            format!(
                                "{}: \"all\" is not supported: only REGISTER may arrive outside \
                                 the SAs (TS 33.203 6.3), other requests from unregistered \
                                 sources get 403; remove the key or write \"registered\"",
                                key("allow-anonymous")
                            ),
                        );
                        None
                    }
                    other => {
                        self.error(
                            &s.span(),
                            format!(
                                "{}: unknown value \"{other}\" (expected \"registered\")",
                                key("allow-anonymous")
                            ),
                        );
                        None
                    }
                },
            };
            let wanted = p.ims_aka_profile.get_ref();
            let profile = profiles
                .get_ref()
                .iter()
                .position(|q| q.name.get_ref() == wanted);
            if profile.is_none() {
                self.error(
                    &p.ims_aka_profile.span(),
                    format!(
                        "{}: no [[ims-aka-profile]] is named \"{wanted}\"",
                        key("ims-aka-profile")
                    ),
                );
            }
            match (address, port, transports, allow_anonymous, profile) {
                (Some(address), Some(port), Some(transports), Some(()), Some(p)) => {
                    out.push(SipPort {
                        address,
                        port,
                        tls: transports.iter().any(|&(_, tls)| tls),
                        transports: transports.into_iter().map(|(t, _)| t).collect(),
                        ims_aka_profile: p,
                    })
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Protected ports must not be any SIP port: the unprotected port and the SAs' ports are
    /// told apart by port number alone.
    fn protected_ports_clash(&mut self, sip: &S<Vec<RawSipPort>>, profiles: &S<Vec<RawProfile>>) {
        for (i, p) in profiles.get_ref().iter().enumerate() {
            for (k, v) in [
                ("protected-client-port", &p.protected_client_port),
                ("protected-server-port", &p.protected_server_port),
            ] {
                if let Some(j) = sip
                    .get_ref()
                    .iter()
                    .position(|s| s.port.get_ref() == v.get_ref())
                {
                    self.error(
                        &v.span(),
                        format!(
                            "ims-aka-profile[{i}].{k}: {} is also the SIP port sip-ports[{j}].port",
                            v.get_ref()
                        ),
                    );
                }
            }
        }
    }

    fn core(&mut self, v: &S<i64>, key: &str) -> Option<usize> {
        self.int_in(v, key, 0..MAX_CORE + 1, "a core id")
            .and_then(|n| usize::try_from(n).ok())
    }

    fn cores(&mut self, raw: &RawCores) -> Option<Cores> {
        let mut ok = true;
        if raw.workers.get_ref().is_empty() {
            self.error(
                &raw.workers.span(),
                "cores.workers: at least one worker core is required".into(),
            );
            ok = false;
        }
        let mut workers = Vec::new();
        for (i, w) in raw.workers.get_ref().iter().enumerate() {
            let key = format!("cores.workers[{i}]");
            match self.core(w, &key) {
                Some(c) if workers.contains(&c) => {
                    self.error(&w.span(), format!("{key}: core {c} is listed twice"));
                    ok = false;
                }
                Some(c) => workers.push(c),
                None => ok = false,
            }
        }
        // One core or a list; each element keeps the key's span for its error.
        let mut listed: Vec<(S<i64>, String)> = Vec::new();
        if let Some(v) = &raw.slowpath {
            let spanned = |n: i64| S::new(v.span(), n);
            match v.get_ref() {
                toml::Value::Integer(n) => listed.push((spanned(*n), "cores.slowpath".into())),
                toml::Value::Array(items) if items.is_empty() => {
                    self.error(
                        &v.span(),
                        "cores.slowpath: at least one core when given as a list".into(),
                    );
                    ok = false;
                }
                toml::Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let key = format!("cores.slowpath[{i}]");
                        match item.as_integer() {
                            Some(n) => listed.push((spanned(n), key)),
                            None => {
                                self.error(&v.span(), format!("{key}: expected a core id"));
                                ok = false;
                            }
                        }
                    }
                }
                _ => {
                    self.error(
                        &v.span(),
                        "cores.slowpath: expected a core id or a list of core ids".into(),
                    );
                    ok = false;
                }
            }
        }
        let mut slowpath = Vec::new();
        for (s, key) in &listed {
            match self.core(s, key) {
                Some(c) if workers.contains(&c) => {
                    self.error(
                        &s.span(),
                        format!("{key}: core {c} is also a worker core; workers busy-poll"),
                    );
                    ok = false;
                }
                Some(c) => slowpath.push(c),
                None => ok = false,
            }
        }
        let max_sleep = match &raw.idle_sleep_us {
            None => Some(Duration::from_micros(200)),
            Some(v) => self
                .int_in(
                    v,
                    "cores.idle-sleep-us",
                    1..100_001,
                    "a sleep in microseconds",
                )
                .map(|n| Duration::from_micros(n.unsigned_abs())),
        };
        let idle = match raw.idle.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("busy-poll", _)) => Some(WorkerIdle::BusyPoll),
            Some(("adaptive", _)) => max_sleep.map(|max_sleep| WorkerIdle::Adaptive { max_sleep }),
            Some((other, span)) => {
                self.error(
                    &span,
                    format!(
                        "cores.idle: unknown value \"{other}\" (expected busy-poll or adaptive)"
                    ),
                );
                None
            }
        };
        let idle = idle?;
        ok.then_some(Cores {
            workers,
            slowpath,
            idle,
        })
    }

    fn port(&mut self, raw: &RawPort, cores: Option<&Cores>) -> Option<PortConfig> {
        let only = |this: &mut Self, span: Range<usize>, key: &str, backend: &str| {
            this.error(
                &span,
                format!("port.{key}: only used with backend = \"{backend}\""),
            );
        };
        let backend = match raw.backend.get_ref().as_str() {
            "af_packet" => {
                if let Some(e) = &raw.eal_args {
                    only(self, e.span(), "eal-args", "dpdk");
                }
                match &raw.interface {
                    None => {
                        self.error(
                            &raw.backend.span(),
                            "port.interface: required with backend = \"af_packet\"".into(),
                        );
                        None
                    }
                    Some(i) => {
                        let name = i.get_ref();
                        let bad = name.is_empty()
                            || name.len() > MAX_IFNAME
                            || name.contains(['/', ':'])
                            || name.chars().any(|c| c.is_whitespace() || c.is_control());
                        if bad {
                            self.error(
                                &i.span(),
                                format!(
                                    "port.interface: \"{name}\" is not a Linux interface name \
                                     (1..={MAX_IFNAME} characters, no '/', ':' or whitespace)"
                                ),
                            );
                            None
                        } else {
                            Some(Backend::AfPacket {
                                interface: name.clone(),
                            })
                        }
                    }
                }
            }
            "dpdk" => {
                if let Some(i) = &raw.interface {
                    only(self, i.span(), "interface", "af_packet");
                }
                match &raw.eal_args {
                    None => {
                        self.error(
                            &raw.backend.span(),
                            "port.eal-args: required with backend = \"dpdk\"".into(),
                        );
                        None
                    }
                    Some(a) => Some(Backend::Dpdk {
                        eal_args: a.get_ref().clone(),
                    }),
                }
            }
            "memory" => {
                if let Some(i) = &raw.interface {
                    only(self, i.span(), "interface", "af_packet");
                }
                if let Some(e) = &raw.eal_args {
                    only(self, e.span(), "eal-args", "dpdk");
                }
                Some(Backend::Memory)
            }
            other => {
                self.error(
                    &raw.backend.span(),
                    format!(
                        "port.backend: unknown value \"{other}\" \
                         (expected \"af_packet\", \"dpdk\" or \"memory\")"
                    ),
                );
                None
            }
        };
        let workers = cores.map(|c| c.workers.len());
        let queues = match &raw.queues {
            None => workers.and_then(|w| u16::try_from(w).ok()),
            Some(q) => {
                let n = self
                    .int_in(q, "port.queues", 1..1025, "a queue count")
                    .and_then(|n| u16::try_from(n).ok());
                match (n, workers) {
                    (Some(n), Some(w)) if usize::from(n) != w => {
                        self.error(
                            &q.span(),
                            format!(
                                "port.queues: {n} queues for {w} worker(s); each worker owns \
                                 exactly one queue"
                            ),
                        );
                        None
                    }
                    (n, _) => n,
                }
            }
        };
        Some(PortConfig {
            backend: backend?,
            queues: queues?,
        })
    }

    /// `[tls]`: required by, and only allowed with, a TLS sip-port; `client-ca` exactly when
    /// client certificates are asked for. `Some(None)`: no TLS.
    fn tls(
        &mut self,
        raw: Option<&RawTls>,
        ports: Option<&[SipPort]>,
        raw_ports: &S<Vec<RawSipPort>>,
    ) -> Option<Option<TlsConfig>> {
        let first_tls = ports.and_then(|p| p.iter().position(|p| p.tls));
        let Some(raw) = raw else {
            if let Some(i) = first_tls {
                let span = raw_ports.get_ref()[i].port.span();
                self.error(
                    &span,
                    format!("sip-ports[{i}]: transport \"tls\" needs a [tls] section (certificate, key)"),
                );
                return None;
            }
            return Some(None);
        };
        if ports.is_some() && first_tls.is_none() {
            self.error(
                &raw.certificate.span(),
                "tls: no sip-ports entry uses transport-protocol = [\"tls\"]".into(),
            );
            return None;
        }
        let mut ok = true;
        let mut path = |this: &mut Self, v: &S<String>, key: &str| {
            if v.get_ref().is_empty() {
                this.error(&v.span(), format!("tls.{key}: must not be empty"));
                ok = false;
            }
            PathBuf::from(v.get_ref())
        };
        let certificate = path(self, &raw.certificate, "certificate");
        let key = path(self, &raw.key, "key");
        let client_ca = raw.client_ca.as_ref().map(|c| path(self, c, "client-ca"));
        let client_auth = match raw.client_auth.as_ref() {
            None => ClientAuthPolicy::None,
            Some(s) => match s.get_ref().as_str() {
                "none" => ClientAuthPolicy::None,
                "optional" => ClientAuthPolicy::Optional,
                "required" => ClientAuthPolicy::Required,
                other => {
                    self.error(
                        &s.span(),
                        format!(
                            "tls.client-auth: unknown value \"{other}\" (expected one of none, \
                             optional, required)"
                        ),
                    );
                    return None;
                }
            },
        };
        match (client_auth, &client_ca, &raw.client_ca) {
            (ClientAuthPolicy::None, Some(_), Some(s)) => {
                self.error(
                    &s.span(),
                    "tls.client-ca: only used with client-auth = \"optional\" or \"required\""
                        .into(),
                );
                return None;
            }
            (ClientAuthPolicy::Optional | ClientAuthPolicy::Required, None, _) => {
                self.error(
                    &raw.certificate.span(),
                    "tls: client-auth asks for client certificates; client-ca must name the CA \
                     file they chain to"
                        .into(),
                );
                return None;
            }
            _ => {}
        }
        ok.then_some(Some(TlsConfig {
            certificate,
            key,
            client_auth,
            client_ca,
        }))
    }

    fn subscribers(&mut self, raw: &RawSubscribers) -> Option<PathBuf> {
        if raw.file.get_ref().is_empty() {
            self.error(
                &raw.file.span(),
                "subscribers.file: must not be empty".into(),
            );
            return None;
        }
        Some(PathBuf::from(raw.file.get_ref()))
    }

    fn registration(&mut self, raw: &RawRegistration) -> Option<Registration> {
        let range = 1..i64::from(u32::MAX) + 1;
        let get = |this: &mut Self, v: &Option<S<i64>>, key: &str, default: u32| match v {
            None => Some(default),
            Some(v) => this
                .int_in(v, key, range.clone(), "an expiry in seconds")
                .and_then(|n| u32::try_from(n).ok()),
        };
        let d = DEFAULT_REGISTRATION;
        let min = get(
            self,
            &raw.min_expires,
            "registration.min-expires",
            d.min_expires,
        );
        let max = get(
            self,
            &raw.max_expires,
            "registration.max-expires",
            d.max_expires,
        );
        let default = get(
            self,
            &raw.default_expires,
            "registration.default-expires",
            d.default_expires,
        );
        let (challenge_timeout, keepalive_interval) = self.registration_timers(raw);
        let keepalive_failures = match &raw.keepalive_failures {
            None => Some(DEFAULT_REGISTRATION.keepalive_failures),
            Some(v) => self
                .int_in(v, "registration.keepalive-failures", 0..101, "a count")
                .and_then(|n| u32::try_from(n).ok()),
        };
        let (min, max, default) = (min?, max?, default?);
        // Point at the key that breaks the order, or at the table if neither is written.
        let span_of = |v: &Option<S<i64>>| v.as_ref().map(|v| v.span());
        if min > max {
            let span = span_of(&raw.max_expires)
                .or(span_of(&raw.min_expires))
                .unwrap_or(0..0);
            self.error(
                &span,
                format!("registration.max-expires: {max} is below min-expires {min}"),
            );
            return None;
        }
        if !(min..=max).contains(&default) {
            let span = span_of(&raw.default_expires)
                .or(span_of(&raw.min_expires))
                .or(span_of(&raw.max_expires))
                .unwrap_or(0..0);
            self.error(
                &span,
                format!(
                    "registration.default-expires: {default} is outside min-expires..=max-expires \
                     ({min}..={max})"
                ),
            );
            return None;
        }
        Some(Registration {
            min_expires: min,
            max_expires: max,
            default_expires: default,
            challenge_timeout: challenge_timeout?,
            keepalive_interval: keepalive_interval?,
            keepalive_failures: keepalive_failures?,
            emergency_without_auth: raw.emergency_without_auth.unwrap_or(false),
        })
    }

    /// `[registration] challenge-timeout` (seconds) and `keepalive-interval` (seconds, 0 off).
    fn registration_timers(
        &mut self,
        raw: &RawRegistration,
    ) -> (Option<Duration>, Option<Option<Duration>>) {
        let challenge = match &raw.challenge_timeout {
            None => Some(DEFAULT_REGISTRATION.challenge_timeout),
            Some(v) => self
                .int_in(
                    v,
                    "registration.challenge-timeout",
                    CHALLENGE_TIMEOUT_RANGE,
                    "a timeout in seconds",
                )
                .map(secs),
        };
        let keepalive = match &raw.keepalive_interval {
            None => Some(DEFAULT_REGISTRATION.keepalive_interval),
            Some(v) if *v.get_ref() == 0 => Some(None),
            Some(v) => {
                let n = *v.get_ref();
                if KEEPALIVE_RANGE.contains(&n) {
                    Some(Some(secs(n)))
                } else {
                    self.error(
                        &v.span(),
                        format!(
                            "registration.keepalive-interval: {n} is not 0 (off) or an interval \
                             in seconds ({}..={})",
                            KEEPALIVE_RANGE.start,
                            KEEPALIVE_RANGE.end - 1
                        ),
                    );
                    None
                }
            }
        };
        (challenge, keepalive)
    }

    /// `[sip-timers]`: each timer within its range, and T2 not below T1 (RFC 3261 17.1.2.2:
    /// the retransmit interval doubles from T1 up to T2).
    fn sip_timers(&mut self, raw: &S<RawSipTimers>) -> Option<SipTimers> {
        let table = raw.get_ref();
        let d = DEFAULT_SIP_TIMERS;
        let mut get = |v: &Option<S<i64>>,
                       key: &str,
                       range: Range<i64>,
                       what: &str,
                       unit: fn(i64) -> Duration,
                       default: Duration| match v {
            None => Some(default),
            Some(v) => self.int_in(v, key, range, what).map(unit),
        };
        let ms = "a time in milliseconds";
        let s = "a time in seconds";
        let t1 = get(&table.t1_ms, "sip-timers.t1-ms", T1_MS, ms, millis, d.t1);
        let t2 = get(&table.t2_ms, "sip-timers.t2-ms", T2_MS, ms, millis, d.t2);
        let t4 = get(&table.t4_ms, "sip-timers.t4-ms", T4_MS, ms, millis, d.t4);
        // RFC 3261 17.1.1.2: Timer D at least 32 s for unreliable transports.
        let timer_d = get(
            &table.timer_d_s,
            "sip-timers.timer-d-s",
            TIMER_D_S,
            s,
            secs,
            d.timer_d,
        );
        // RFC 3261 16.6 step 11: Timer C MUST be larger than 3 minutes.
        let timer_c = get(
            &table.timer_c_s,
            "sip-timers.timer-c-s",
            TIMER_C_S,
            s,
            secs,
            d.timer_c,
        );
        let (t1, t2, t4, timer_d, timer_c) = (t1?, t2?, t4?, timer_d?, timer_c?);
        if t2 < t1 {
            let span = table
                .t2_ms
                .as_ref()
                .or(table.t1_ms.as_ref())
                .map_or(raw.span(), |v| v.span());
            self.error(
                &span,
                format!(
                    "sip-timers.t2-ms: {} is below t1-ms {}; T2 caps the retransmit interval \
                     that starts at T1 (RFC 3261 17.1.2.2)",
                    t2.as_millis(),
                    t1.as_millis()
                ),
            );
            return None;
        }
        Some(SipTimers {
            t1,
            t2,
            t4,
            timer_d,
            timer_c,
        })
    }

    fn metrics(&mut self, raw: Option<&RawMetrics>) -> Option<MetricsConfig> {
        let Some(listen) = raw.and_then(|r| r.listen.as_ref()) else {
            return Some(MetricsConfig::default());
        };
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.ip().is_multicast() => {
                self.error(
                    &listen.span(),
                    format!("metrics.listen: {a} is a multicast address"),
                );
                None
            }
            Ok(a) => Some(MetricsConfig { listen: Some(a) }),
            Err(_) => {
                self.error(
                    &listen.span(),
                    format!(
                        "metrics.listen: \"{}\" is not an address and port \
                         (e.g. \"127.0.0.1:9464\" or \"[::1]:9464\")",
                        listen.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn sa_table(&mut self, raw: Option<&RawSaTable>) -> Option<SaTableConfig> {
        match raw.and_then(|r| r.capacity.as_ref()) {
            None => Some(SaTableConfig {
                capacity: DEFAULT_SA_TABLE_CAPACITY,
            }),
            Some(c) => {
                let max = i64::try_from(MAX_CAPACITY).unwrap_or(i64::MAX);
                // Two inbound SPIs per registration (spi_pc, spi_ps; TS 33.203 7.1).
                self.int_in(c, "sa-table.capacity", 2..max + 1, "a capacity")
                    .and_then(|n| usize::try_from(n).ok())
                    .map(|capacity| SaTableConfig { capacity })
            }
        }
    }

    fn control(&mut self, raw: Option<&RawControl>) -> Option<ControlConfig> {
        let socket = match raw.and_then(|r| r.socket.as_ref()) {
            None => None,
            Some(s) if s.get_ref().is_empty() => {
                self.error(&s.span(), "control.socket: must not be empty".into());
                return None;
            }
            Some(s) => Some(PathBuf::from(s.get_ref())),
        };
        Some(ControlConfig {
            socket,
            allow_key_export: raw.and_then(|r| r.allow_key_export).unwrap_or(false),
        })
    }

    fn stack(&mut self, raw: Option<&RawStack>) -> Option<StackConfig> {
        let mut buffer = |v: Option<&S<i64>>, key: &str, default: usize| match v {
            None => Some(default),
            Some(v) => self
                .int_in(v, key, TCP_BUFFER_RANGE, "a buffer size in bytes")
                .and_then(|n| usize::try_from(n).ok()),
        };
        let rx = buffer(
            raw.and_then(|r| r.tcp_rx_buffer.as_ref()),
            "stack.tcp-rx-buffer",
            DEFAULT_TCP_RX_BUFFER,
        );
        let tx = buffer(
            raw.and_then(|r| r.tcp_tx_buffer.as_ref()),
            "stack.tcp-tx-buffer",
            DEFAULT_TCP_TX_BUFFER,
        );
        let reserve = match raw.and_then(|r| r.socket_reserve.as_ref()) {
            None => Some(DEFAULT_SOCKET_RESERVE),
            Some(v) => self
                .int_in(
                    v,
                    "stack.socket-reserve",
                    SOCKET_RESERVE_RANGE,
                    "a socket count",
                )
                .and_then(|n| usize::try_from(n).ok()),
        };
        Some(StackConfig {
            tcp_rx_buffer: rx?,
            tcp_tx_buffer: tx?,
            socket_reserve: reserve?,
        })
    }
}

impl Validator<'_> {
    fn sip_limits(&mut self, raw: Option<&RawSipLimits>) -> Option<SipLimits> {
        let d = DEFAULT_SIP_LIMITS;
        let mut count = |v: Option<&S<i64>>, key: &str, default: usize| match v {
            None => Some(default),
            Some(v) => self
                .int_in(v, key, 1..(1 << 24) + 1, "a count")
                .and_then(|n| usize::try_from(n).ok()),
        };
        let per_source = count(
            raw.and_then(|r| r.max_connections_per_source.as_ref()),
            "sip-limits.max-connections-per-source",
            d.max_connections_per_source,
        );
        let conns = count(
            raw.and_then(|r| r.max_connections.as_ref()),
            "sip-limits.max-connections",
            d.max_connections,
        );
        let half_open = count(
            raw.and_then(|r| r.max_half_open.as_ref()),
            "sip-limits.max-half-open",
            d.max_half_open,
        );
        let unregistered = count(
            raw.and_then(|r| r.max_unregistered.as_ref()),
            "sip-limits.max-unregistered",
            d.max_unregistered,
        );
        let mut deadline = |v: Option<&S<i64>>, key: &str, default: Duration| match v {
            None => Some(default),
            Some(v) => self.int_in(v, key, 1..3601, "seconds").map(secs),
        };
        let message = deadline(
            raw.and_then(|r| r.message_deadline.as_ref()),
            "sip-limits.message-deadline",
            d.message_deadline,
        );
        let idle = deadline(
            raw.and_then(|r| r.idle_deadline.as_ref()),
            "sip-limits.idle-deadline",
            d.idle_deadline,
        );
        Some(SipLimits {
            max_connections_per_source: per_source?,
            max_connections: conns?,
            max_half_open: half_open?,
            max_unregistered: unregistered?,
            message_deadline: message?,
            idle_deadline: idle?,
        })
    }
}

/// `n` seconds (`n` already checked non-negative by its range).
fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

/// `n` milliseconds (`n` already checked non-negative by its range).
fn millis(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}

/// 1-based line and character column of byte `offset` in `src`.
fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let c = parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.port.backend, Backend::Memory);
        assert_eq!(c.addresses.ipv4, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(
            c.addresses.ipv6,
            vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(c.sip_ports.len(), 2);
        assert!(c.sip_ports.iter().all(|p| p.port == 5060));
        let p = &c.ims_aka_profiles[0];
        assert_eq!((p.port_pc, p.port_ps), (5062, 5064));
        assert_eq!(
            p.encr_algs,
            vec![EncrAlg::AesCbc, EncrAlg::DesEde3Cbc, EncrAlg::Null]
        );
        assert_eq!(p.auth_algs, vec![AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96]);
    }

    /// `[cores] slowpath` takes one core (one shard, as before) or a list (one shard per
    /// entry); a core that is a worker's or an empty list is refused.
    #[test]
    fn slowpath_takes_a_core_or_a_list_of_shard_cores() {
        let with = |v: &str| parse(&DEFAULT_CONFIG.replace("slowpath = 0", v));
        assert_eq!(with("slowpath = 0").unwrap().cores.slowpath, vec![0]);
        assert_eq!(
            with("slowpath = [2, 3]").unwrap().cores.slowpath,
            vec![2, 3]
        );
        assert_eq!(with("slowpath = [5]").unwrap().cores.slowpath, vec![5]);
        assert_eq!(with("").unwrap().cores.slowpath, Vec::<usize>::new());
        let err = |v: &str| {
            let e = with(v).unwrap_err();
            e.iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        };
        assert!(
            err("slowpath = [0, 1]").contains("cores.slowpath[1]: core 1 is also a worker core"),
            "{}",
            err("slowpath = [0, 1]")
        );
        // Shards may share a core (a small test box); production gives each its own.
        assert_eq!(
            with("slowpath = [2, 2]").unwrap().cores.slowpath,
            vec![2, 2]
        );
        assert!(err("slowpath = []").contains("cores.slowpath: at least one core"));
        assert!(err("slowpath = [2, -1]").contains("cores.slowpath[1]: -1 is not a core id"));
        // The summary names the shards.
        let c = with("slowpath = [2, 3]").unwrap();
        assert!(
            c.summary().contains("slowpath 2 shards on cores 2, 3"),
            "{}",
            c.summary()
        );
    }

    /// The default configuration with `routes` appended as its `[routes]` section.
    fn with_routes(routes: &str) -> Result<Config, Vec<ConfigError>> {
        parse(&format!("{DEFAULT_CONFIG}\n[routes]\n{routes}"))
    }

    #[test]
    fn routes_parse_with_on_link_prefixes_defaults_and_static_routes() {
        assert_eq!(
            Config::default().routes,
            None,
            "no [routes]: all on the link"
        );
        let c = with_routes(
            "on-link = [\"10.0.0.1/24\", \"2001:db8::1/64\"]\ngateway-v4 = \"10.0.0.254\"\n\
             gateway-v6 = \"2001:db8::fe\"\n\
             [[routes.static]]\nprefix = \"10.45.0.0/16\"\nvia = \"10.0.0.253\"\n\
             [[routes.static]]\nprefix = \"2001:db8:45::/48\"\nvia = \"2001:db8::fd\"\n",
        )
        .unwrap();
        assert!(c.summary().contains(
            "routes 10.0.0.1/24 on-link, 2001:db8::1/64 on-link, default via 10.0.0.254, \
             default via 2001:db8::fe, 10.45.0.0/16 via 10.0.0.253, 2001:db8:45::/48 via \
             2001:db8::fd;"
        ));
        assert!(Config::default()
            .summary()
            .contains("routes all on the link;"));
        let r = c.routes.unwrap();
        assert_eq!(r.on_link.len(), 2);
        assert_eq!(r.on_link[0].to_string(), "10.0.0.1/24");
        assert_eq!(r.gateway_v4, Some(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(r.gateway_v6, Some("2001:db8::fe".parse().unwrap()));
        assert_eq!(r.statics.len(), 2);
        assert_eq!(r.statics[0].prefix.to_string(), "10.45.0.0/16");
        assert_eq!(r.statics[1].via, "2001:db8::fd".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn routes_that_cannot_work_are_clear_errors() {
        let on_link = "on-link = [\"10.0.0.1/24\", \"2001:db8::1/64\"]\n";
        let route = |prefix: &str, via: &str| {
            format!("{on_link}[[routes.static]]\nprefix = \"{prefix}\"\nvia = \"{via}\"\n")
        };
        let cases: &[(String, &str)] = &[
            (
                "gateway-v4 = \"10.0.0.254\"\n".into(),
                "routes.gateway-v4: 10.0.0.254 is not on a link prefix (routes.on-link)",
            ),
            (
                format!("{on_link}gateway-v4 = \"10.0.1.254\"\n"),
                "routes.gateway-v4: 10.0.1.254 is not on a link prefix",
            ),
            (
                format!("{on_link}gateway-v4 = \"10.0.0.1\"\n"),
                "routes.gateway-v4: 10.0.0.1 is one of our own [addresses]",
            ),
            (
                format!("{on_link}gateway-v6 = \"10.0.0.254\"\n"),
                "routes.gateway-v6: 10.0.0.254 is not an IPv6 address",
            ),
            (
                "on-link = [\"10.0.0.2/24\"]\n".into(),
                "routes.on-link[0]: 10.0.0.2 is not one of [addresses]",
            ),
            (
                "on-link = [\"10.0.0.1\"]\n".into(),
                "routes.on-link[0]: \"10.0.0.1\" is not an address with a prefix length",
            ),
            (
                "on-link = [\"10.0.0.1/24\", \"10.0.0.1/16\"]\n".into(),
                "routes.on-link[1]: 10.0.0.1 has its prefix listed twice",
            ),
            (
                route("10.45.0.1/16", "10.0.0.253"),
                "routes.static[0].prefix: 10.45.0.1/16 has host bits set (the prefix is 10.45.0.0/16)",
            ),
            (
                route("10.0.0.0/24", "10.0.0.253"),
                "routes.static[0].prefix: 10.0.0.0/24 is an on-link prefix",
            ),
            (
                route("10.45.0.0/16", "10.9.0.253"),
                "routes.static[0].via: 10.9.0.253 is not on a link prefix",
            ),
            (
                route("10.45.0.0/16", "2001:db8::fd"),
                "routes.static[0].via: 2001:db8::fd is not of the family of 10.45.0.0/16",
            ),
            (
                format!(
                    "{}[[routes.static]]\nprefix = \"10.45.0.0/16\"\nvia = \"10.0.0.252\"\n",
                    route("10.45.0.0/16", "10.0.0.253")
                ),
                "routes.static[1].prefix: 10.45.0.0/16 is routed twice",
            ),
            (
                format!(
                    "gateway-v4 = \"10.0.0.254\"\n{}",
                    route("0.0.0.0/0", "10.0.0.253")
                ),
                "routes.static[0].prefix: 0.0.0.0/0 duplicates the default route (routes.gateway-v4)",
            ),
        ];
        for (text, want) in cases {
            let errors = with_routes(text).unwrap_err();
            assert!(
                errors.iter().any(|e| e.message.starts_with(want)),
                "{text}: {errors:?}"
            );
        }
    }

    #[test]
    fn line_column_counts_characters() {
        let src = "a\nbé = 1\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 2), (2, 1));
        assert_eq!(line_column(src, 6), (2, 4)); // after "bé " (é is two bytes)
        assert_eq!(line_column(src, 1000), (3, 1));
    }

    #[test]
    fn optional_sections_take_defaults() {
        let src = r#"
[[sip-ports]]
address = "10.0.0.1"
port = 5060
ims-aka-profile = "p"
[[ims-aka-profile]]
name = "p"
protected-client-port = 5062
protected-server-port = 5064
[port]
backend = "memory"
[cores]
workers = [2, 3]
[addresses]
ipv4 = ["10.0.0.1"]
"#;
        let c = parse(src).unwrap();
        assert_eq!(c.port.queues, 2);
        assert_eq!(c.registration, DEFAULT_REGISTRATION);
        assert_eq!(c.sa_table.capacity, 1 << 20);
        assert_eq!(c.stack.tcp_rx_buffer, 4096);
        assert_eq!(c.stack.tcp_tx_buffer, 2048);
        assert_eq!(c.stack.socket_reserve, 1024);
        assert_eq!(c.subscribers, None);
        assert_eq!(c.cores.slowpath, Vec::<usize>::new());
        assert_eq!(
            c.sip_ports[0].transports,
            vec![Transport::Udp, Transport::Tcp]
        );
        assert!(c.ims_aka_profiles[0].sec_agree_required);
        assert_eq!(c.sip_limits, DEFAULT_SIP_LIMITS);
        assert_eq!(c.limits, DEFAULT_LIMITS);
    }

    /// A TLS sip-port at 10.0.0.1:5061 appended to the defaults, with `tls` as its `[tls]`.
    fn with_tls(transports: &str, tls: &str) -> String {
        format!(
            "{DEFAULT_CONFIG}\n[[sip-ports]]\naddress = \"10.0.0.1\"\nport = 5061\n\
             transport-protocol = {transports}\nims-aka-profile = \"default\"\n{tls}"
        )
    }

    fn messages(src: &str) -> Vec<String> {
        parse(src)
            .unwrap_err()
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }

    #[test]
    fn tls_sip_port_and_section() {
        let src = with_tls(
            r#"["tls"]"#,
            "[tls]\ncertificate = \"pcscf.pem\"\nkey = \"pcscf.key\"\nclient-auth = \"required\"\n\
             client-ca = \"ca.pem\"\n",
        );
        let c = parse(&src).unwrap();
        let p = &c.sip_ports[2];
        assert!(p.tls && p.port == 5061);
        assert_eq!(p.transports, vec![Transport::Tcp]);
        assert!(c.sip_ports[..2].iter().all(|p| !p.tls));
        let t = c.tls.unwrap();
        assert_eq!(t.client_auth, ClientAuthPolicy::Required);
        assert_eq!(t.client_ca, Some(PathBuf::from("ca.pem")));
        // Defaults: no client certificates.
        let src = with_tls(r#"["tls"]"#, "[tls]\ncertificate = \"c\"\nkey = \"k\"\n");
        assert_eq!(
            parse(&src).unwrap().tls.unwrap().client_auth,
            ClientAuthPolicy::None
        );
        assert_eq!(Config::default().tls, None);
    }

    #[test]
    fn tls_refusals() {
        let section = "[tls]\ncertificate = \"c\"\nkey = \"k\"\n";
        assert_eq!(
            messages(&with_tls(r#"["tcp", "tls"]"#, section)),
            [
                "sip-ports[2].transport-protocol: \"tls\" must be alone on its port; list TLS as \
              a sip-ports entry of its own (usually port 5061)"
            ]
        );
        assert_eq!(
            messages(&with_tls(r#"["tls"]"#, "")),
            ["sip-ports[2]: transport \"tls\" needs a [tls] section (certificate, key)"]
        );
        assert_eq!(
            messages(&format!("{DEFAULT_CONFIG}\n{section}")),
            ["tls: no sip-ports entry uses transport-protocol = [\"tls\"]"]
        );
        assert_eq!(
            messages(&with_tls(
                r#"["tls"]"#,
                &format!("{section}client-auth = \"optional\"\n")
            )),
            [
                "tls: client-auth asks for client certificates; client-ca must name the CA file \
              they chain to"
            ]
        );
        assert_eq!(
            messages(&with_tls(r#"["tls"]"#, &format!("{section}client-auth = \"maybe\"\n"))),
            ["tls.client-auth: unknown value \"maybe\" (expected one of none, optional, required)"]
        );
        assert_eq!(
            messages(&with_tls(
                r#"["tls"]"#,
                &format!("{section}client-ca = \"ca.pem\"\n")
            )),
            ["tls.client-ca: only used with client-auth = \"optional\" or \"required\""]
        );
    }

    #[test]
    fn worker_idle_policy_is_read() {
        assert_eq!(
            parse(DEFAULT_CONFIG).unwrap().cores.idle,
            WorkerIdle::BusyPoll
        );
        let adaptive = DEFAULT_CONFIG.replace(
            "[cores]\n",
            "[cores]\nidle = \"adaptive\"\nidle-sleep-us = 500\n",
        );
        assert_eq!(
            parse(&adaptive).unwrap().cores.idle,
            WorkerIdle::Adaptive {
                max_sleep: Duration::from_micros(500)
            }
        );
        let bad = DEFAULT_CONFIG.replace("[cores]\n", "[cores]\nidle = \"nap\"\n");
        assert!(parse(&bad).unwrap_err()[0]
            .message
            .starts_with("cores.idle: unknown value \"nap\""));
    }

    #[test]
    fn keepalive_failures_are_read_and_bounded() {
        let src = DEFAULT_CONFIG.replace(
            "[registration]\n",
            "[registration]\nkeepalive-interval = 30\nkeepalive-failures = 3\n",
        );
        assert_eq!(parse(&src).unwrap().registration.keepalive_failures, 3);
        assert_eq!(
            parse(DEFAULT_CONFIG)
                .unwrap()
                .registration
                .keepalive_failures,
            0
        );
        let bad = DEFAULT_CONFIG.replace(
            "[registration]\n",
            "[registration]\nkeepalive-failures = 101\n",
        );
        assert!(parse(&bad).unwrap_err()[0]
            .message
            .starts_with("registration.keepalive-failures: 101"));
    }

    #[test]
    fn limits_are_read_and_checked() {
        let src = format!(
            "{DEFAULT_CONFIG}\n[limits]\nregister-rate-per-source = 3\nmax-pending-per-impi = 2\n\
             sqn-journal-max-bytes = 65536\n"
        );
        let l = parse(&src).unwrap().limits;
        assert_eq!((l.register_rate_per_source, l.max_pending_per_impi), (3, 2));
        assert_eq!(l.sqn_journal_max_bytes, 65536);
        assert_eq!(l.register_rate_total, DEFAULT_LIMITS.register_rate_total);
        let bad =
            format!("{DEFAULT_CONFIG}\n[limits]\nmax-pending-per-impi = 0\nretry-after = -1\n");
        let errors = parse(&bad).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "limits.max-pending-per-impi: 0 is not a positive count (1..=64)",
                "limits.retry-after: -1 is not a positive count (1..=3600)"
            ]
        );
    }

    #[test]
    fn ims_core_is_read_and_checked() {
        let src = format!(
            "{DEFAULT_CONFIG}\n[ims-core]\nnext-hops = [\"sip:192.0.2.20;transport=tcp\", \"sip:[2001:db8::20]:5070\"]\n\
             local = \"192.0.2.10:5060\"\ntrusted = [\"192.0.2.0/28\", \"198.51.100.7\"]\n\
             visited-network-id = \"visited.example\"\nemergency-next-hops = [\"sip:192.0.2.30\"]\n\
             emergency-numbers = [\"112\", \"911\"]\nanonymous-emergency = true\n\
             hop-timeout-ms = 2500\nhop-holddown-s = 60\n"
        );
        let up = parse(&src).unwrap().ims_core.unwrap();
        assert_eq!(up.hop_timeout, Duration::from_millis(2500));
        assert_eq!(up.hop_holddown, Duration::from_secs(60));
        assert_eq!(up.next_hops.len(), 2);
        assert_eq!(up.next_hops[0].addr, "192.0.2.20:5060".parse().unwrap());
        assert_eq!(up.next_hops[1].addr, "[2001:db8::20]:5070".parse().unwrap());
        assert_eq!(up.local, "192.0.2.10:5060".parse().unwrap());
        assert!(up.trusts("198.51.100.7".parse().unwrap()));
        assert!(up.trusts("192.0.2.14".parse().unwrap()));
        assert!(!up.trusts("192.0.2.16".parse().unwrap()));
        assert_eq!(up.visited_network_id, "visited.example");
        assert_eq!(up.emergency_numbers, ["112", "911"]);
        assert!(up.anonymous_emergency);
        assert!(parse(DEFAULT_CONFIG).unwrap().ims_core.is_none());
        let bad = format!(
            "{DEFAULT_CONFIG}\n[ims-core]\nnext-hops = [\"sip:bad_name.example\"]\nlocal = \"nowhere\"\n\
             trusted = [\"10.0.0.0/33\"]\nemergency-numbers = [\"11a\"]\nhop-timeout-ms = 50\nhop-holddown-s = 0\n"
        );
        let errors = parse(&bad).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 6, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("ims-core.hop-timeout-ms: 50 is not")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("ims-core.hop-holddown-s: 0 is not")),
            "{messages:?}"
        );
        assert!(
            messages[0].contains("not a valid host name"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("is not an address and port"),
            "{messages:?}"
        );
        assert!(
            messages[2].contains("is not an address or prefix"),
            "{messages:?}"
        );
        assert!(messages[3].contains("is not a number"), "{messages:?}");
        let ours = format!(
            "{DEFAULT_CONFIG}\n[ims-core]\nnext-hops = [\"sip:192.0.2.20\"]\nlocal = \"10.0.0.1:5060\"\n"
        );
        let errors = parse(&ours).unwrap_err();
        assert!(
            errors[0].message.contains("belongs to the fast path"),
            "{errors:?}"
        );
    }

    #[test]
    fn sip_limits_are_read_and_checked() {
        let src =
            format!("{DEFAULT_CONFIG}\n[sip-limits]\nmax-half-open = 64\nmessage-deadline = 5\n");
        let c = parse(&src).unwrap();
        assert_eq!(c.sip_limits.max_half_open, 64);
        assert_eq!(c.sip_limits.message_deadline, Duration::from_secs(5));
        assert_eq!(
            c.sip_limits.max_connections,
            DEFAULT_SIP_LIMITS.max_connections
        );
        let bad =
            format!("{DEFAULT_CONFIG}\n[sip-limits]\nmax-connections = 0\nidle-deadline = 0\n");
        let errs = parse(&bad).unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|e| e.contains("sip-limits.max-connections: 0 is not a count")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("sip-limits.idle-deadline: 0 is not seconds")),
            "{text:?}"
        );
    }
}
