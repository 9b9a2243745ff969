//! The whole daemon over the in-memory port pair: a simulated UE on the far end speaks
//! Ethernet frames built with `smoltcp::wire` — ARP, ICMP echo, IPv6 neighbour discovery and an
//! unprotected REGISTER over UDP (a real Boghe client message) — and the daemon answers through
//! its worker and slowpath threads. Shutdown is checked to drain and to persist the HSS's SQN.

mod support;

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use akagate::config::Config;
use akagate::daemon::{memory_pair, StartError};
use akagate::{Daemon, DaemonHandle, StartOptions};
use akagate_fastpath::esp::EncrAlg;
use akagate_slowpath::aka::Milenage;
use akagate_sys::mempair::MemQueue;
use akagate_sys::Port;
use base64::Engine;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet,
    Icmpv6Repr, IpAddress, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
    RawHardwareAddress, UdpPacket,
};
use support::{
    header, hx, ipv4_payload_from_pcscf, memory_config, param, start_memory, subscriber, temp_dir,
    write_subscribers, Ue, IMPI, IMPU, PCSCF_MAC, PCSCF_V4, PCSCF_V6, SET1_K, SET1_OPC, UE_MAC,
    UE_V4, UE_V6, WAIT,
};

const REGISTER: &str =
    include_str!("fixtures/daemon/01_register_initial_security_client_boghe_openims.sip");

/// The Boghe client's port in the REGISTER fixture.
const UE_SIP_PORT: u16 = 63373;

/// TS 35.208 4.3.1 Test Set 1 (K and OPc in `support`).
const SET1_RAND: &str = "23553cbe9637a89d218ae64dae47bf35";
const SET1_SQN: &str = "ff9bb4d0b607";
const SET1_AMF: &str = "b9b9";
const SET1_F1: &str = "4a9ffac354dfafb3";
const SET1_F5: &str = "aa689c648370";

/// Writes a small memory-backend config and a subscriber file (alice with TS 35.208 set 1
/// keys, as in the fixture's Authorization username, and bob) into `dir`; loads it like
/// `--config`.
fn config_in(dir: &Path, workers: &[usize]) -> Config {
    write_subscribers(
        dir,
        &[
            subscriber(IMPI, &[IMPU, "tel:+15550100"]),
            format!(
                "[[subscriber]]\nimpi = \"bob@open-ims.test\"\nimpu = [\"sip:bob@open-ims.test\"]\n\
                 k = \"{SET1_K}\"\nopc = \"{SET1_OPC}\"\n"
            ),
        ],
    );
    akagate::config::ConfigTemplate {
        ipv6: vec![PCSCF_V6],
        encr_algs: vec![EncrAlg::AesCbc, EncrAlg::Null],
        workers: workers.to_vec(),
        ..memory_config()
    }
    .write(&dir.join("akagate.toml"))
    .unwrap()
}

/// Sends a UDP datagram from the fixture's SIP port to 5060.
fn udp_to_5060(ue: &mut Ue, payload: &[u8]) {
    ue.udp(UE_SIP_PORT, 5060, payload);
}

/// The ICMPv6 message of a frame from the P-CSCF, as `(src, dst, hop limit, icmp bytes)`.
fn icmpv6_from_pcscf(f: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u8, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    assert_eq!(eth.src_addr(), PCSCF_MAC);
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let repr = Ipv6Repr::parse(&ip).ok()?;
    (repr.next_header == IpProtocol::Icmpv6).then(|| {
        (
            repr.src_addr,
            repr.dst_addr,
            repr.hop_limit,
            ip.payload().to_vec(),
        )
    })
}

/// A daemon over a fresh memory pair with the test config, unpinned.
fn start(dir: &Path) -> (DaemonHandle, Ue, Config) {
    let config = config_in(dir, &[0]);
    let (handle, ue) = start_memory(&config);
    (handle, ue, config)
}

/// ARP for the P-CSCF; its reply names it and answers us.
fn learn_arp(ue: &mut Ue) {
    assert_eq!(
        ue.learn_arp(),
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: PCSCF_MAC,
            source_protocol_addr: PCSCF_V4,
            target_hardware_addr: UE_MAC,
            target_protocol_addr: UE_V4,
        }
    );
}

#[test]
fn arp_and_icmp_echo_v4_and_v6_through_the_daemon() {
    let dir = temp_dir("daemon-echo");
    let (handle, mut ue, _) = start(&dir);
    learn_arp(&mut ue);

    let data = b"akagate echo payload 0123456789";
    let req = Icmpv4Repr::EchoRequest {
        ident: 0x4242,
        seq_no: 7,
        data,
    };
    let mut icmp = vec![0u8; req.buffer_len()];
    req.emit(
        &mut Icmpv4Packet::new_unchecked(&mut icmp[..]),
        &ChecksumCapabilities::default(),
    );
    ue.ipv4(IpProtocol::Icmp, &icmp);
    let reply = ue.expect(|f| ipv4_payload_from_pcscf(f, IpProtocol::Icmp));
    let pkt = Icmpv4Packet::new_checked(&reply[..]).unwrap();
    assert_eq!(
        Icmpv4Repr::parse(&pkt, &ChecksumCapabilities::default()).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 0x4242,
            seq_no: 7,
            data,
        }
    );

    // IPv6: Neighbor Solicitation for our address (RFC 4861 7.2.3), then an echo.
    let snm = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x0001);
    ue.icmpv6(
        snm,
        255,
        &Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: PCSCF_V6,
            lladdr: Some(RawHardwareAddress::from(UE_MAC)),
        }),
    );
    let na = ue.expect(|f| {
        let (src, dst, hop, icmp) = icmpv6_from_pcscf(f)?;
        let pkt = Icmpv6Packet::new_checked(&icmp[..]).ok()?;
        match Icmpv6Repr::parse(&src, &dst, &pkt, &ChecksumCapabilities::default()).ok()? {
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags,
                target_addr,
                lladdr,
            }) => Some((src, dst, hop, flags, target_addr, lladdr)),
            _ => None,
        }
    });
    assert_eq!((na.0, na.1, na.2), (PCSCF_V6, UE_V6, 255));
    assert!(na.3.contains(NdiscNeighborFlags::SOLICITED), "{:?}", na.3);
    assert_eq!(na.4, PCSCF_V6);
    assert_eq!(na.5, Some(RawHardwareAddress::from(PCSCF_MAC)));

    ue.icmpv6(
        PCSCF_V6,
        64,
        &Icmpv6Repr::EchoRequest {
            ident: 9,
            seq_no: 1,
            data,
        },
    );
    let (src, dst, echo) = ue.expect(|f| {
        let (src, dst, _, icmp) = icmpv6_from_pcscf(f)?;
        (icmp.first() == Some(&129)).then_some((src, dst, icmp))
    });
    assert_eq!((src, dst), (PCSCF_V6, UE_V6));
    let pkt = Icmpv6Packet::new_checked(&echo[..]).unwrap();
    assert_eq!(
        Icmpv6Repr::parse(&src, &dst, &pkt, &ChecksumCapabilities::default()).unwrap(),
        Icmpv6Repr::EchoReply {
            ident: 9,
            seq_no: 1,
            data,
        }
    );

    let stats = handle
        .wait_for(WAIT, |s| s.worker_total("echo_replies") == 2)
        .expect("two echo replies counted");
    assert_eq!(stats.worker_total("rx_frames"), 4);
    assert_eq!(stats.slowpath.events, 0);
    let report = handle.shutdown().unwrap();
    assert!(report.stats.workers[0].queue.tx_packets >= 4);
}

/// Sends the fixture REGISTER in clear over UDP and returns the response text.
fn register(ue: &mut Ue) -> String {
    udp_to_5060(ue, REGISTER.as_bytes());
    let udp = ue.expect(|f| ipv4_payload_from_pcscf(f, IpProtocol::Udp));
    let pkt = UdpPacket::new_checked(&udp[..]).unwrap();
    assert!(pkt.verify_checksum(&IpAddress::Ipv4(PCSCF_V4), &IpAddress::Ipv4(UE_V4)));
    assert_eq!((pkt.src_port(), pkt.dst_port()), (5060, UE_SIP_PORT));
    String::from_utf8(pkt.payload().to_vec()).unwrap()
}

/// Checks the 401 and returns the SQN its AUTN carries (TS 33.102 6.3.2:
/// AUTN = SQN xor AK || AMF || MAC-A, with AK = f5(RAND) and MAC-A = f1(SQN, RAND, AMF)).
fn check_401(resp: &str, milenage: &Milenage) -> u64 {
    assert!(resp.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{resp}");
    for h in ["Call-ID", "CSeq", "From"] {
        assert_eq!(header(resp, h), header(REGISTER, h), "{h}");
    }
    assert!(header(resp, "Via")
        .unwrap()
        .contains("branch=z9hG4bK-332948456"));
    assert!(
        param(header(resp, "To").unwrap(), "tag").is_some(),
        "{resp}"
    );

    // RFC 3329 2.2 / TS 33.203 7.1: the one mechanism we chose from the offer.
    let ss = header(resp, "Security-Server").expect("Security-Server");
    assert!(ss.starts_with("ipsec-3gpp"), "{ss}");
    assert_eq!(param(ss, "alg"), Some("hmac-sha-1-96"));
    assert_eq!(param(ss, "ealg"), Some("null"));
    assert_eq!(param(ss, "port-c"), Some("5062"));
    assert_eq!(param(ss, "port-s"), Some("5064"));
    let spi_c: u32 = param(ss, "spi-c").unwrap().parse().unwrap();
    let spi_s: u32 = param(ss, "spi-s").unwrap().parse().unwrap();
    assert_ne!(spi_c, spi_s);
    assert!(spi_c > 255 && spi_s > 255, "RFC 4303 2.1 reserves 0..=255");

    // RFC 3310 3.1: nonce = base64(RAND || AUTN).
    let www = header(resp, "WWW-Authenticate").expect("WWW-Authenticate");
    let www = www.strip_prefix("Digest ").expect("Digest scheme");
    assert_eq!(param(www, "algorithm"), Some("AKAv1-MD5"));
    assert_eq!(param(www, "realm"), Some("open-ims.test"));
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(param(www, "nonce").unwrap())
        .unwrap();
    assert_eq!(nonce.len(), 32);
    let rand: [u8; 16] = nonce[..16].try_into().unwrap();
    let ak = milenage.f5(&rand);
    let mut sqn = [0u8; 6];
    for (i, s) in sqn.iter_mut().enumerate() {
        *s = nonce[16 + i] ^ ak[i];
    }
    let amf: [u8; 2] = nonce[22..24].try_into().unwrap();
    assert_eq!(amf, [0x80, 0x00], "the subscriber's AMF");
    assert_eq!(milenage.f1(&rand, &sqn, &amf), nonce[24..32], "MAC-A");
    let mut v = [0u8; 8];
    v[2..].copy_from_slice(&sqn);
    u64::from_be_bytes(v)
}

/// The subscriber keys, with the Milenage functions checked against TS 35.208 Test Set 1.
fn set1_milenage() -> Milenage {
    let m = Milenage::new(&hx(SET1_K), &hx(SET1_OPC));
    let rand = hx(SET1_RAND);
    assert_eq!(m.f5(&rand), hx::<6>(SET1_F5));
    assert_eq!(m.f1(&rand, &hx(SET1_SQN), &hx(SET1_AMF)), hx::<8>(SET1_F1));
    m
}

/// The persisted SQN of `impi` in the snapshot file (TOML map IMPI -> 12 hex digits).
fn persisted_sqn(state: &Path, impi: &str) -> u64 {
    let text = std::fs::read_to_string(state).unwrap();
    let map: toml::Table = toml::from_str(&text).unwrap();
    let hex = map
        .get(impi)
        .and_then(|v| v.as_str())
        .expect("IMPI in state");
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn unprotected_register_gets_401_and_the_sqn_survives_a_restart() {
    let milenage = set1_milenage();
    let dir = temp_dir("daemon-register");
    let (handle, mut ue, config) = start(&dir);
    let state = handle.sqn_state().unwrap().to_path_buf();
    assert_eq!(state, dir.join("subscribers.toml.sqn-state"));
    learn_arp(&mut ue);

    let resp = register(&mut ue);
    let sqn1 = check_401(&resp, &milenage);
    // The challenge installed spi_pc and spi_ps before the 401 went out (TS 33.203 7.1).
    let stats = handle
        .wait_for(WAIT, |s| s.sa_installed == 2)
        .expect("two inbound SAs installed");
    assert_eq!(stats.slowpath.sa_sets_installed, 1);
    assert_eq!(stats.slowpath.sip_messages, 1);
    assert_eq!(stats.slowpath.subscribers, 2);
    assert_eq!(
        stats.slowpath.registrations, 0,
        "challenged, not registered"
    );
    assert_eq!(stats.worker_total("sip_in"), 1);
    let report = handle.shutdown().unwrap();
    assert_eq!(report.sqn_state.as_deref(), Some(state.as_path()));
    // The state holds the bound reserved at start ("SQN blocks"): at least the SQN sent,
    // within a block of it.
    let bound = persisted_sqn(&state, "alice@open-ims.test");
    assert!(
        bound >= sqn1 && (bound >> 5) - (sqn1 >> 5) < 1024,
        "{bound:#x} {sqn1:#x}"
    );
    assert_eq!(
        std::fs::read_to_string(PathBuf::from(format!("{}.journal", state.display()))).unwrap(),
        "",
        "the journal was compacted into the snapshot"
    );

    // A restart continues above the persisted SQN: no SQN is handed out twice (TS 33.102 6.3).
    let (handle, mut ue) = start_memory(&config);
    learn_arp(&mut ue);
    let sqn2 = check_401(&register(&mut ue), &milenage);
    assert!(sqn2 > sqn1, "{sqn2:x} after {sqn1:x}");
    handle.shutdown().unwrap();
    // The restart resumed above the first run's bound and reserved a block above that.
    assert!(sqn2 >> 5 > bound >> 5, "{sqn2:x} after the bound {bound:x}");
    let bound2 = persisted_sqn(&state, "alice@open-ims.test");
    assert!(bound2 >= sqn2 && (bound2 >> 5) - (sqn2 >> 5) < 1024);
}

#[test]
fn shutdown_sends_the_answer_to_an_event_already_handed_to_the_slowpath() {
    let dir = temp_dir("daemon-drain");
    let (handle, mut ue, _) = start(&dir);
    learn_arp(&mut ue);
    udp_to_5060(&mut ue, REGISTER.as_bytes());
    // Stop as soon as the worker has passed the REGISTER up: the slowpath may not have seen
    // it yet, but it must still be answered before shutdown returns.
    handle
        .wait_for(WAIT, |s| s.worker_total("sip_in") == 1)
        .unwrap();
    let report = handle.shutdown().unwrap();
    assert_eq!(report.stats.slowpath.sip_messages, 1);
    assert_eq!(report.stats.slowpath.commands_dropped, 0);
    let answers: Vec<String> = ue
        .received()
        .iter()
        .filter_map(|f| ipv4_payload_from_pcscf(f, IpProtocol::Udp))
        .map(|u| String::from_utf8_lossy(&u[8..]).into_owned())
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].starts_with("SIP/2.0 401 "), "{}", answers[0]);
}

#[test]
fn several_workers_each_get_their_queue_and_ues_are_steered() {
    let dir = temp_dir("daemon-workers");
    let config = config_in(&dir, &[0, 1, 2]);
    let (port, mut peer) = memory_pair(&config).unwrap();
    let handle = Daemon::start_with_port(&config, port, StartOptions::unpinned()).unwrap();
    let mut ue = Ue::on(&mut peer);
    // Queue 0 gets ARP (no IP address to steer by); the UE's IP traffic goes to the worker
    // its address maps to.
    learn_arp(&mut ue);
    let owner = akagate::daemon::worker_for(IpAddr::V4(UE_V4), 3);
    let stats = handle.stats();
    assert_eq!(stats.workers.len(), 3);
    assert_eq!(stats.workers[0].get("rx_frames"), Some(1));
    udp_to_5060(&mut ue, REGISTER.as_bytes());
    let stats = handle
        .wait_for(WAIT, |s| s.workers[owner].get("sip_in") == Some(1))
        .expect("the owning worker received the REGISTER");
    for (i, w) in stats.workers.iter().enumerate() {
        if i != owner {
            assert_eq!(w.get("sip_in"), Some(0), "worker {i}");
        }
    }
    handle.shutdown().unwrap();
}

/// ARP lands on queue 0, so worker 0 learns the UE's address; the UE's owner is another
/// worker, which answers the REGISTER with the 401 through the neighbour worker 0 shared,
/// without soliciting it again (this UE does not answer ARP requests).
#[test]
fn the_owner_answers_through_the_neighbour_worker_0_learned() {
    let dir = temp_dir("daemon-neighbours");
    let config = config_in(&dir, &[0, 1, 2]);
    let (port, mut peer) = memory_pair(&config).unwrap();
    let owner = port.queue_for_ue(IpAddr::V4(UE_V4));
    assert_ne!(owner, 0, "the test needs a UE not owned by worker 0");
    let handle = Daemon::start_with_port(&config, port, StartOptions::unpinned()).unwrap();
    let mut ue = Ue::on(&mut peer);
    learn_arp(&mut ue);
    let resp = register(&mut ue);
    check_401(&resp, &set1_milenage());
    let stats = handle.stats();
    assert_eq!(stats.workers[0].get("neighbors_shared"), Some(1));
    assert_eq!(stats.workers[owner].get("neighbors_from_peers"), Some(1));
    assert_eq!(stats.workers[owner].get("solicitations"), Some(0));
    assert_eq!(stats.workers[owner].get("sip_in"), Some(1));
    handle.shutdown().unwrap();
}

/// A port whose steering names worker 2 for every UE while its frames land by the UE key
/// (like a NIC whose RSS the software cannot hash): the daemon must route by the port's
/// steering, and the workers hand the UE's frames to worker 2.
struct SteeredPort {
    inner: akagate_sys::mempair::MemPort,
    steering: akagate_sys::steer::Steering,
}

impl Port for SteeredPort {
    type Queue = MemQueue;
    fn link(&self) -> &akagate_sys::LinkInfo {
        self.inner.link()
    }
    fn num_queues(&self) -> usize {
        self.inner.num_queues()
    }
    fn take_queues(&mut self) -> Vec<MemQueue> {
        self.inner.take_queues()
    }
    fn counters(&self) -> Vec<std::sync::Arc<akagate_sys::QueueCounters>> {
        self.inner.counters()
    }
    fn steering(&self) -> akagate_sys::steer::Steering {
        self.steering.clone()
    }
}

#[test]
fn commands_and_strays_follow_the_ports_steering() {
    use akagate_sys::steer::{RssInput, RssSteering, Steering};
    let dir = temp_dir("daemon-steering");
    let config = config_in(&dir, &[0, 1, 2]);
    let (port, mut peer) = memory_pair(&config).unwrap();
    let landing = port.queue_for_ue(IpAddr::V4(UE_V4));
    assert_ne!(landing, 2, "the test needs the UE's frames off worker 2");
    let port = SteeredPort {
        inner: port,
        steering: Steering::Rss(RssSteering {
            key: [0x6d, 0x5a].repeat(20),
            reta: vec![2],
            input: RssInput::L3Src,
        }),
    };
    let handle = Daemon::start_with_port(&config, port, StartOptions::unpinned()).unwrap();
    let mut ue = Ue::on(&mut peer);
    learn_arp(&mut ue);
    check_401(&register(&mut ue), &set1_milenage());
    let stats = handle.stats();
    assert_eq!(stats.workers[landing].get("handoff_out"), Some(1));
    assert_eq!(stats.workers[2].get("handoff_in"), Some(1));
    assert_eq!(stats.workers[2].get("sip_in"), Some(1));
    // The SA set and the 401 went to worker 2, which sent the 401.
    assert_eq!(stats.workers[2].get("commands"), Some(2));
    assert_eq!(stats.workers[2].get("drop_sa_install"), Some(0));
    handle.shutdown().unwrap();
}

#[test]
fn start_errors_are_clear() {
    let dir = temp_dir("daemon-errors");
    let mut config = config_in(&dir, &[0]);

    // A port whose queue count does not match the workers.
    let (port, _peer) = memory_pair(&config_in(&dir, &[0, 1])).unwrap();
    let e = Daemon::start_with_port(&config, port, StartOptions::unpinned()).unwrap_err();
    assert!(matches!(e, StartError::Port(_)), "{e}");
    assert!(e.to_string().contains("2 queue(s) for 1 worker(s)"), "{e}");

    // A core that does not exist, when pinning.
    config.cores.workers = vec![1023];
    let e = Daemon::start(&config, StartOptions::production()).unwrap_err();
    assert!(matches!(e, StartError::Cores(_)), "{e}");
    assert!(e.to_string().contains("core 1023 does not exist"), "{e}");

    // A missing subscriber file.
    config.cores.workers = vec![0];
    config.subscribers = Some(dir.join("nobody.toml"));
    let e = Daemon::start(&config, StartOptions::unpinned()).unwrap_err();
    assert!(matches!(e, StartError::Subscribers { .. }), "{e}");
    assert!(e.to_string().contains("nobody.toml"), "{e}");
}
