//! From the validated [`Config`] to the parts the daemon runs: the worker configuration, the
//! slowpath core's configuration and the HSS with its durable SQN state.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use akagate_fastpath::ipc::{Flow, Transport};
use akagate_fastpath::l2::{L2Config, Route};
use akagate_fastpath::reasm::ReasmConfig;
use akagate_fastpath::stack::tls::{self, ClientAuth, TlsListener};
use akagate_fastpath::stack::StackConfig;
use akagate_fastpath::worker::WorkerConfig;
use akagate_slowpath::hss::Hss;
use akagate_slowpath::secagree::ImsAkaProfile;
use akagate_slowpath::sip::transaction::TimerConfig;
use akagate_slowpath::CoreConfig;
use akagate_sys::LinkInfo;
use ipnet::IpNet;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};

use super::journal::SqnJournal;
use super::StartError;
use crate::config::{ClientAuthPolicy, Config};

/// Frames per receive burst (DPDK ipsec-secgw and VPP use 32-64).
const BURST: usize = 32;
/// Slowpath commands a worker executes per loop iteration at most, so a burst of commands
/// cannot starve packet processing.
const COMMANDS_PER_LOOP: usize = 64;
/// Timer wheel of the per-UE stacks: 1 ms ticks, 4096 slots (4 s per turn).
const TIMER_TICK_MS: u64 = 1;
const TIMER_SLOTS: usize = 4096;
/// Bytes kept free below the link MTU for ESP: header 8 + IV 16 + padding and trailer 17 +
/// ICV 16 = 57 in transport mode; 100 leaves room for options.
const ESP_MTU_RESERVE: usize = 100;
/// Neighbour cache entries beyond one per UE: routers and other hosts of the access link.
const NEIGHBOR_SLACK: usize = 64;
/// Smallest inner MTU handed to the stacks (IPv6's minimum link MTU, RFC 8200 5).
const MIN_INNER_MTU: usize = 1280;

/// The worker's limits of the unprotected SIP port from `[sip-limits]`.
fn sip_limits(l: &crate::config::SipLimits) -> akagate_fastpath::worker::SipPortLimits {
    akagate_fastpath::worker::SipPortLimits {
        max_conns_per_source: l.max_connections_per_source,
        max_conns: l.max_connections,
        max_half_open: l.max_half_open,
        max_unregistered: l.max_unregistered,
        message_deadline: Duration::from_secs(l.message_deadline.as_secs()),
        idle_deadline: Duration::from_secs(l.idle_deadline.as_secs()),
    }
}

/// The unprotected SIP port the workers listen on. The worker serves one such port for all
/// addresses, so every `[[sip-ports]]` entry without TLS must use the same number.
pub(super) fn sip_port(config: &Config) -> Result<u16, StartError> {
    one_port(config, false)?
        .ok_or_else(|| StartError::Unsupported("no [[sip-ports]] entry without TLS".into()))
}

/// The one port number of the `[[sip-ports]]` entries with (`tls`) or without TLS, if any.
fn one_port(config: &Config, tls: bool) -> Result<Option<u16>, StartError> {
    let mut ports = config.sip_ports.iter().filter(|p| p.tls == tls);
    let Some(first) = ports.next().map(|p| p.port) else {
        return Ok(None);
    };
    match ports.find(|p| p.port != first) {
        None => Ok(Some(first)),
        Some(p) => Err(StartError::Unsupported(format!(
            "{}sip-ports use ports {first} and {}; the fast path serves one such port on all \
             addresses",
            if tls { "TLS " } else { "" },
            p.port
        ))),
    }
}

/// The TLS sip-port and its rustls server configuration, built from the `[tls]` files: a
/// missing or unreadable file, a file without PEM, or a key that does not match the
/// certificate is a start error.
pub(super) fn tls_listener(config: &Config) -> Result<Option<TlsListener>, StartError> {
    let (Some(port), Some(t)) = (one_port(config, true)?, config.tls.as_ref()) else {
        return Ok(None);
    };
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| StartError::Tls(format!("{what} {}: {e}", p.display())))
    };
    let chain = read(&t.certificate, "certificate")?;
    let key = read(&t.key, "key")?;
    let ca = t
        .client_ca
        .as_deref()
        .map(|p| read(p, "client-ca"))
        .transpose()?;
    let auth = match (t.client_auth, ca) {
        (ClientAuthPolicy::Optional, Some(ca)) => ClientAuth::Optional(ca),
        (ClientAuthPolicy::Required, Some(ca)) => ClientAuth::Required(ca),
        _ => ClientAuth::None,
    };
    let config = tls::server_config(&chain, &key, &auth).map_err(|e| {
        StartError::Tls(format!(
            "certificate {}, key {}: {e}",
            t.certificate.display(),
            t.key.display()
        ))
    })?;
    Ok(Some(TlsListener { port, config }))
}

/// The IMS-AKA profile the core applies. The core holds one profile, so all `[[sip-ports]]`
/// entries must name the same one.
fn profile(config: &Config) -> Result<ImsAkaProfile, StartError> {
    let index = config.sip_ports.first().map_or(0, |p| p.ims_aka_profile);
    if let Some(p) = config.sip_ports.iter().find(|p| p.ims_aka_profile != index) {
        return Err(StartError::Unsupported(format!(
            "sip-port {}:{} uses another ims-aka-profile than the first sip-port; one profile \
             for all ports is supported",
            p.address, p.port
        )));
    }
    let p = config
        .ims_aka_profiles
        .get(index)
        .ok_or_else(|| StartError::Unsupported("no [[ims-aka-profile]]".into()))?;
    Ok(ImsAkaProfile {
        protected_client_port: p.port_pc,
        protected_server_port: p.port_ps,
        encr_alg_list: p.encr_algs.clone(),
        auth_alg_list: p.auth_algs.clone(),
        sec_agree_required: p.sec_agree_required,
    })
}

/// Our address as it appears in `Path` / `Service-Route`: the first IPv4 address, else the
/// first IPv6 address in brackets (RFC 3261 25.1 `IPv6reference`).
fn pcscf_host(config: &Config) -> String {
    match (config.addresses.ipv4.first(), config.addresses.ipv6.first()) {
        (Some(a), _) => a.to_string(),
        (None, Some(a)) => format!("[{a}]"),
        (None, None) => "localhost".into(),
    }
}

/// The slowpath core's configuration: profile, expiries, challenge timeout, keep-alives and
/// the SIP timers (RFC 3261 17; the 100 Trying delay stays at 17.2.1's 200 ms).
pub(super) fn core_config(config: &Config) -> Result<CoreConfig, StartError> {
    let r = &config.registration;
    let t = &config.sip_timers;
    let l = &config.limits;
    // Every field listed (no `..`): a new core knob does not compile until it is mapped.
    Ok(CoreConfig {
        profile: profile(config)?,
        pcscf_host: pcscf_host(config),
        default_expires: r.default_expires,
        min_expires: r.min_expires,
        max_expires: r.max_expires,
        challenge_timeout: r.challenge_timeout,
        timers: TimerConfig {
            t1: t.t1,
            t2: t.t2,
            t4: t.t4,
            timer_d: t.timer_d,
            ..TimerConfig::default()
        },
        timer_c: t.timer_c,
        keepalive_interval: r.keepalive_interval,
        keepalive_failures: r.keepalive_failures,
        emergency_without_auth: r.emergency_without_auth,
        upstream: config.ims_core.clone(),
        max_pending_per_impi: l.max_pending_per_impi,
        max_pending_per_source: l.max_pending_per_source,
        max_pending_total: l.max_pending_total,
        register_rate_per_source: l.register_rate_per_source,
        register_rate_total: l.register_rate_total,
        retry_after: l.retry_after,
        tls_port: one_port(config, true)?,
        shard: None,
    })
}

/// The transports each address accepts on the unprotected SIP port (`[[sip-ports]]
/// transport-protocol`); an address without an entry accepts none.
pub(super) fn sip_access(config: &Config, sip_port: u16) -> SipAccess {
    let mut by_address: Vec<(IpAddr, Vec<Transport>)> = Vec::new();
    let tls_port = config.sip_ports.iter().find(|p| p.tls).map(|p| p.port);
    let tls = tls_port.map(|port| {
        let addrs = config.sip_ports.iter().filter(|p| p.tls).map(|p| p.address);
        (port, addrs.collect())
    });
    for p in config.sip_ports.iter().filter(|p| !p.tls) {
        let protos = p.transports.iter().copied();
        match by_address.iter_mut().find(|(a, _)| *a == p.address) {
            Some((_, v)) => v.extend(protos),
            None => by_address.push((p.address, protos.collect())),
        }
    }
    SipAccess {
        sip_port,
        by_address,
        tls,
    }
}

/// Which transports reach the unprotected SIP port of each of our addresses. The workers
/// serve the SIP port on every address and transport; the slowpath thread drops what this
/// refuses before the core sees it (TCP connections are then closed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SipAccess {
    sip_port: u16,
    by_address: Vec<(IpAddr, Vec<Transport>)>,
    /// The TLS port and the addresses it is configured on (TCP only).
    tls: Option<(u16, Vec<IpAddr>)>,
}

impl SipAccess {
    /// Whether a message on `flow` may go to the core: anything not on the unprotected SIP
    /// port (the SAs' ports follow the registration), and on it only a configured transport.
    pub fn allows(&self, flow: &Flow) -> bool {
        if let Some((port, addrs)) = self.tls.as_ref().filter(|(p, _)| *p == flow.local_port) {
            // The workers serve the TLS port on every address.
            return *port == flow.local_port
                && flow.proto == Transport::Tcp
                && addrs.contains(&flow.local);
        }
        if flow.local_port != self.sip_port {
            return true;
        }
        self.by_address
            .iter()
            .find(|(a, _)| *a == flow.local)
            .is_some_and(|(_, protos)| protos.contains(&flow.proto))
    }
}

/// The SQN state file used when none is given: `<subscriber file>.sqn-state`.
pub fn default_sqn_state(subscribers: &Path) -> PathBuf {
    let mut s = subscribers.as_os_str().to_owned();
    s.push(".sqn-state");
    PathBuf::from(s)
}

/// Loads the subscriber file (none: an empty HSS) and opens the SQN state, which is
/// `sqn_state` or [`default_sqn_state`]: the journal is replayed into the snapshot and the HSS
/// continues from it (TS 33.102 6.3.2). With `shards` slowpath shards, the state of every
/// shard file of any earlier run is folded in first and the HSS is split by the shard of each
/// IMPI (`journal::open_shards`, `Hss::into_shards`). Returns one HSS per shard and, with a
/// subscriber file, the journal each shard's thread writes its SQN records to.
pub(super) fn load_hss(
    config: &Config,
    sqn_state: Option<&Path>,
    shards: usize,
) -> Result<(Vec<Hss>, Vec<SqnJournal>), StartError> {
    let shard_of = |impi: &str| akagate_proto::shard::shard_of_name(impi.as_bytes(), shards);
    let split = |hss: Hss| match shards {
        0 | 1 => vec![hss],
        n => hss.into_shards(n, shard_of),
    };
    let Some(file) = config.subscribers.as_deref() else {
        let hss = Hss::from_records(&[]).map_err(|source| StartError::Subscribers {
            path: PathBuf::new(),
            source,
        })?;
        return Ok((split(hss), Vec::new()));
    };
    let started = std::time::Instant::now();
    let hss = Hss::load(file).map_err(|source| StartError::Subscribers {
        path: file.to_path_buf(),
        source,
    })?;
    let loaded = started.elapsed();
    let path = sqn_state.map_or_else(|| default_sqn_state(file), Path::to_path_buf);
    let state_error = |source| StartError::SqnState {
        path: path.clone(),
        source,
    };
    // Each subscriber's SQN bound raised by a block, durable in the start's snapshot.
    let (journals, hss) =
        super::journal::open_shards_for(&path, shards, shard_of, |s| hss.with_sqn_state(s))
            .map_err(state_error)?;
    // Start-up phases at carrier scale (issue 10: a million subscribers).
    tracing::info!(
        "{} subscriber(s) loaded in {:.3} s; SQN state {} read, blocks reserved and written in {:.3} s",
        hss.len(),
        loaded.as_secs_f64(),
        path.display(),
        (started.elapsed() - loaded).as_secs_f64()
    );
    let journals = (journals.into_iter())
        .map(|j| j.with_max_bytes(config.limits.sqn_journal_max_bytes))
        .collect();
    Ok((split(hss), journals))
}

/// The link layer of a worker: our MAC, our addresses with their on-link prefixes, the
/// default gateways and the static routes of `[routes]`, and a neighbour cache of
/// `max_neighbors`. Without `[routes]` our addresses get prefix length 0: every destination
/// is on the link and resolved by ARP/ND directly (a P-CSCF on its access link). With it, an
/// address not in `on-link` is a host route (/32, /128): nothing is resolved through it.
fn l2_config(config: &Config, link: &LinkInfo, max_neighbors: usize) -> L2Config {
    let a = &config.addresses;
    let r = config.routes.as_ref();
    let len = |ip: IpAddr, host: u8| match r {
        None => 0,
        Some(r) => (r.on_link.iter())
            .find(|n| n.addr() == ip)
            .map_or(host, IpNet::prefix_len),
    };
    L2Config {
        mac: EthernetAddress(link.mac),
        ipv4: (a.ipv4.iter())
            .map(|&a| Ipv4Cidr::new(a, len(a.into(), 32)))
            .collect(),
        ipv6: (a.ipv6.iter())
            .map(|&a| Ipv6Cidr::new(a, len(a.into(), 128)))
            .collect(),
        gateway_v4: r.and_then(|r| r.gateway_v4),
        gateway_v6: r.and_then(|r| r.gateway_v6),
        routes: (r.iter().flat_map(|r| &r.statics))
            .map(|s| Route {
                prefix: IpCidr::new(s.prefix.addr().into(), s.prefix.prefix_len()),
                via: s.via,
            })
            .collect(),
        max_neighbors,
        neighbor_ttl: Duration::from_secs(300),
        solicit_retry: Duration::from_secs(1),
    }
}

/// The configuration of worker `id` on a link.
pub(super) fn worker_config(
    config: &Config,
    id: usize,
    link: &LinkInfo,
    sip_port: u16,
    tls: Option<TlsListener>,
) -> WorkerConfig {
    let ip_mtu = link.mtu.saturating_sub(ESP_MTU_RESERVE).max(MIN_INNER_MTU);
    // Two inbound SPIs per registered UE; unregistered UEs count too, so the bound is the
    // table's share, not a tight fit.
    let max_ues = (config.sa_table.capacity / 2).max(1);
    let stack = StackConfig {
        tcp_rx_buf: config.stack.tcp_rx_buffer,
        tcp_tx_buf: config.stack.tcp_tx_buffer,
        ip_mtu,
        ..StackConfig::default()
    };
    WorkerConfig {
        id,
        // A worker keeps the entries of the UEs it owns (others are told to their owner) and
        // the gateways, so its cache holds its UE bound plus room for routers and other hosts
        // on the link. The cache grows with use.
        l2: l2_config(config, link, max_ues.saturating_add(NEIGHBOR_SLACK)),
        stack,
        reasm: ReasmConfig::default(),
        sip_port,
        tls,
        burst: BURST,
        commands_per_loop: COMMANDS_PER_LOOP,
        max_ues,
        link_mtu: link.mtu,
        timer_tick: Duration::from_millis(TIMER_TICK_MS),
        timer_slots: TIMER_SLOTS,
        sip_limits: sip_limits(&config.sip_limits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_fastpath::esp::{AuthAlg, EncrAlg};

    /// The defaults plus a TLS sip-port on 10.0.0.1:5061 using the fast path's test
    /// certificate, `key` and `client_auth`.
    fn with_tls(key: &str, client_auth: ClientAuthPolicy) -> Config {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fastpath/tests/fixtures/tls");
        let mut c = Config::default();
        let mut p = c.sip_ports[0].clone();
        (p.port, p.tls, p.transports) = (5061, true, vec![Transport::Tcp]);
        c.sip_ports.push(p);
        c.tls = Some(crate::config::TlsConfig {
            certificate: dir.join("server-chain.pem"),
            key: dir.join(key),
            client_auth,
            client_ca: (client_auth != ClientAuthPolicy::None).then(|| dir.join("ca.pem")),
        });
        c
    }

    #[test]
    fn tls_port_beside_the_sip_port() {
        let c = with_tls("server.key", ClientAuthPolicy::Required);
        assert_eq!(sip_port(&c).unwrap(), 5060);
        let l = tls_listener(&c).unwrap().unwrap();
        assert_eq!(l.port, 5061);
        assert_eq!(
            tls_listener(&Config::default()).unwrap().map(|l| l.port),
            None
        );
        // TLS only to 10.0.0.1:5061 over TCP; 5060 as before.
        let access = sip_access(&c, 5060);
        let flow = |local: &str, local_port, proto| Flow {
            ue: "10.45.0.7".parse().unwrap(),
            ue_port: 40000,
            local: local.parse().unwrap(),
            local_port,
            proto,
        };
        assert!(access.allows(&flow("10.0.0.1", 5061, Transport::Tcp)));
        assert!(!access.allows(&flow("10.0.0.1", 5061, Transport::Udp)));
        assert!(!access.allows(&flow("2001:db8::1", 5061, Transport::Tcp)));
        assert!(access.allows(&flow("2001:db8::1", 5060, Transport::Udp)));
    }

    #[test]
    fn tls_files_that_do_not_fit_are_start_errors() {
        let e = tls_listener(&with_tls("other.key", ClientAuthPolicy::None)).unwrap_err();
        assert!(e.to_string().contains("KeyMismatch"), "{e}");
        let e = tls_listener(&with_tls("missing.key", ClientAuthPolicy::None)).unwrap_err();
        assert!(e.to_string().starts_with("tls: key "), "{e}");
        assert!(e.to_string().contains("missing.key"), "{e}");
        let mut c = with_tls("server.key", ClientAuthPolicy::Optional);
        c.tls.as_mut().unwrap().client_ca = Some("/nonexistent/ca.pem".into());
        let e = tls_listener(&c).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("tls: client-ca /nonexistent/ca.pem"),
            "{e}"
        );
    }

    fn link() -> LinkInfo {
        LinkInfo {
            name: "t".into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
        }
    }

    #[test]
    fn default_config_maps_to_worker_and_core() {
        let c = Config::default();
        let port = sip_port(&c).unwrap();
        assert_eq!(port, 5060);
        let w = worker_config(&c, 3, &link(), port, None);
        assert_eq!(w.id, 3);
        assert_eq!(w.sip_port, 5060);
        assert_eq!(w.stack.ip_mtu, 1400);
        assert_eq!(w.stack.tcp_rx_buf, 4096);
        assert_eq!(w.stack.tcp_tx_buf, 2048);
        assert_eq!(w.l2.mac, EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(w.l2.ipv4.len(), 1);
        assert_eq!(w.l2.ipv6.len(), 1);
        // Neighbour state scales with the UEs the SA table allows, not a constant.
        assert_eq!(w.max_ues, c.sa_table.capacity / 2);
        assert_eq!(w.l2.max_neighbors, w.max_ues + NEIGHBOR_SLACK);
        let mut small = c.clone();
        small.sa_table.capacity = 20_000;
        let w = worker_config(&small, 0, &link(), port, None);
        assert_eq!(w.l2.max_neighbors, 10_000 + NEIGHBOR_SLACK);
        let core = core_config(&c).unwrap();
        assert_eq!(core.profile.protected_client_port, 5062);
        assert_eq!(core.profile.protected_server_port, 5064);
        assert_eq!(
            core.profile.encr_alg_list,
            vec![EncrAlg::AesCbc, EncrAlg::DesEde3Cbc, EncrAlg::Null]
        );
        assert_eq!(
            core.profile.auth_alg_list,
            vec![AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96]
        );
        assert_eq!(core.pcscf_host, "10.0.0.1");
        assert_eq!(core.default_expires, 3600);
        assert_eq!(core.max_expires, 7200);
    }

    #[test]
    fn routes_reach_the_link_layer() {
        let w = worker_config(&Config::default(), 0, &link(), 5060, None);
        // No [routes]: everything on the link, no gateway.
        assert_eq!(w.l2.ipv4[0].prefix_len(), 0);
        assert_eq!(w.l2.gateway_v4, None);
        let text = format!(
            "{}\n[routes]\non-link = [\"10.0.0.1/24\"]\ngateway-v4 = \"10.0.0.254\"\n\
             [[routes.static]]\nprefix = \"10.45.0.0/16\"\nvia = \"10.0.0.253\"\n",
            crate::config::DEFAULT_CONFIG
        );
        let c = crate::config::parse(&text).unwrap();
        let w = worker_config(&c, 0, &link(), 5060, None);
        assert_eq!(w.l2.ipv4, vec![Ipv4Cidr::new([10, 0, 0, 1].into(), 24)]);
        // An address without an on-link prefix is a host route.
        assert_eq!(w.l2.ipv6[0].prefix_len(), 128);
        assert_eq!(w.l2.gateway_v4, Some([10, 0, 0, 254].into()));
        let l2 = akagate_fastpath::l2::L2::new(w.l2);
        let hop = |s: &str| l2.next_hop(s.parse().unwrap()).map(|h| h.to_string());
        assert_eq!(hop("10.45.3.4").as_deref(), Some("10.0.0.253"));
        assert_eq!(hop("10.0.0.77").as_deref(), Some("10.0.0.77"));
        assert_eq!(hop("192.0.2.1").as_deref(), Some("10.0.0.254"));
        assert_eq!(hop("2001:db8::2"), None, "no IPv6 route");
    }

    #[test]
    fn timers_and_keepalives_reach_the_core() {
        let dflt = core_config(&Config::default()).unwrap();
        // The documented defaults are the core's own (RFC 3261 Table 4, 16.6).
        let core = CoreConfig::default();
        assert_eq!(
            (dflt.timers.t1, dflt.timers.t2, dflt.timers.t4),
            (core.timers.t1, core.timers.t2, core.timers.t4)
        );
        assert_eq!(dflt.timers.timer_d, core.timers.timer_d);
        assert_eq!(dflt.timer_c, core.timer_c);
        assert_eq!(dflt.challenge_timeout, core.challenge_timeout);
        assert_eq!(dflt.keepalive_interval, None);

        let text = format!(
            "{}\n[sip-timers]\nt1-ms = 250\nt2-ms = 2000\nt4-ms = 2500\ntimer-d-s = 40\n\
             timer-c-s = 200\n",
            crate::config::DEFAULT_CONFIG.replace(
                "default-expires = 3600",
                "default-expires = 3600\nchallenge-timeout = 30\nkeepalive-interval = 60"
            )
        );
        let c = crate::config::parse(&text).unwrap();
        let core = core_config(&c).unwrap();
        let ms = std::time::Duration::from_millis;
        assert_eq!(
            (core.timers.t1, core.timers.t2, core.timers.t4),
            (ms(250), ms(2000), ms(2500))
        );
        assert_eq!(core.timers.timer_d, ms(40_000));
        assert_eq!(core.timers.trying_delay, ms(200));
        assert_eq!(core.timer_c, ms(200_000));
        assert_eq!(core.challenge_timeout, ms(30_000));
        assert_eq!(core.keepalive_interval, Some(ms(60_000)));
    }

    #[test]
    fn mixed_sip_port_numbers_are_refused() {
        let mut c = Config::default();
        c.sip_ports[1].port = 5070;
        let e = sip_port(&c).unwrap_err().to_string();
        assert!(e.contains("5060 and 5070"), "{e}");
    }

    #[test]
    fn small_links_keep_the_ipv6_minimum_mtu() {
        let mut l = link();
        l.mtu = 1300;
        let w = worker_config(&Config::default(), 0, &l, 5060, None);
        assert_eq!(w.stack.ip_mtu, MIN_INNER_MTU);
    }

    #[test]
    fn sqn_state_sits_next_to_the_subscriber_file() {
        assert_eq!(
            default_sqn_state(Path::new("/etc/akagate/subs.toml")),
            PathBuf::from("/etc/akagate/subs.toml.sqn-state")
        );
    }
}
