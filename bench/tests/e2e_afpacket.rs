//! The mission's scenario once over AF_PACKET (issue 5): the akagate daemon on one end of a
//! veth pair in namespace A (its `af_packet` backend opened there), simulated UEs on an
//! AF_PACKET port at the other end in namespace B, real threads and real time.
//!
//! A UE registers over TCP as in TS 33.203 6.1/7.1 (unprotected REGISTER to 5060, 401 with
//! Security-Server, protected connection port_uc -> port_ps under spi_ps, REGISTER with
//! Security-Verify, 200 under spi_uc), over IPv4 and IPv6; a second UE registers; the first
//! calls the second: the INVITE reaches the callee over a connection the P-CSCF opened from
//! port_pc to the callee's port_us under spi_us; 180/200/ACK/BYE complete; the callee closes
//! that connection and a second call reopens it from port_pc, never from 5060. The wire is
//! read back from the UEs' AF_PACKET capture with smoltcp's packet views (null encryption, so
//! the inner TCP is visible), every TCP/UDP checksum is verified against the pseudo-header.
//! A last test runs `akabench`'s AF_PACKET load (`load::run`) against a two-worker daemon
//! whose kernel fanout program must give every UE to the worker `worker_for` names.
//!
//! Needs root (namespaces, AF_PACKET); skipped with a printed reason otherwise.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration as StdDuration;

use akagate::DaemonHandle;
use akagate_bench::fleet::Fleet;
use akagate_bench::load::{self, Backend, LoadConfig};
use akagate_bench::netns::{scratch_dir, VethLink};
use akagate_bench::ue::usim::usim_for;
use akagate_bench::ue::{Ue, UeEvent};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use akagate_slowpath::hss::{generate_subscribers, render_toml, Plmn};
use akagate_sys::afpacket::AfPacketQueue;
use akagate_sys::testnet::VethPair;
use common::checks::{
    assert_ue_clean, assert_zero, check_call_events, check_challenge, check_offer,
    last_dialog_requests,
};
use common::netns::{assert_namespaces_removed, skip_reason, NetnsDaemon};
use common::{decode, esp_null_inner, header_value, records, ue_addr, ue_config, Pkt, SUBSCRIBERS};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, TcpPacket, UdpPacket};

/// The daemon's protected ports (TS 33.203 7.1 port_pc / port_ps) in the generated config.
const PORT_PC: u16 = akagate_bench::daemon::PORT_PC;
const PORT_PS: u16 = akagate_bench::daemon::PORT_PS;

/// Wall-clock limit for one registration or one call.
const STEP_TIMEOUT: StdDuration = StdDuration::from_secs(20);

/// Daemon in namespace A, UE fleet in namespace B. `drop` stops the daemon first; then the
/// fields go in order: the fleet's socket, then the namespaces.
struct AfBed {
    fleet: Fleet<AfPacketQueue>,
    ns: NetnsDaemon,
    clock: std::time::Instant,
    events: Vec<Vec<UeEvent>>,
}

impl Drop for AfBed {
    fn drop(&mut self) {
        self.ns.stop();
    }
}

impl AfBed {
    /// A daemon with `workers` workers and the fixture subscribers, and an empty fleet.
    fn new(workers: usize) -> AfBed {
        let link = VethLink::new().expect("namespaces and veth pair");
        if !link.offload_off {
            eprintln!("note: no ethtool, checksum offload left on (checksums are still checked)");
        }
        let dir = scratch_dir("e2e-afpacket").unwrap();
        let subs = dir.join("subscribers.toml");
        std::fs::write(&subs, SUBSCRIBERS).unwrap();
        let daemon = link.start_daemon(&dir, &subs, workers, 1024).unwrap();
        let q = link.open_ue_queue().unwrap();
        let mut fleet = Fleet::new(q);
        fleet.enable_capture();
        AfBed {
            fleet,
            ns: NetnsDaemon {
                daemon: Some(daemon),
                dir,
                link,
            },
            clock: std::time::Instant::now(),
            events: Vec::new(),
        }
    }

    fn daemon(&self) -> &DaemonHandle {
        self.ns.daemon()
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as i64)
    }

    /// UE for fixture subscriber `sub`, on IPv4 or IPv6, TCP, offering only `offer`.
    fn add_ue(&mut self, sub: usize, v6: bool, offer: (AuthAlg, EncrAlg)) -> usize {
        let ip = ue_addr(sub, v6);
        let cfg = ue_config(sub, ip, VethLink::pcscf_for(ip), Transport::Tcp, offer);
        let ue = Ue::new(cfg, usim_for(&records()[sub]).unwrap(), self.now()).unwrap();
        self.events.push(Vec::new());
        self.fleet.add(ue)
    }

    fn ue(&self, i: usize) -> &Ue {
        self.fleet.ue(i).unwrap()
    }

    /// One fleet round on real time; sleeps briefly when there was nothing to do.
    fn pump(&mut self) {
        let now = self.now();
        let events = &mut self.events;
        let work = self.fleet.step(now, |i, ue| {
            while let Some(e) = ue.poll_event() {
                events[i].push(e);
            }
        });
        if work == 0 {
            std::thread::sleep(StdDuration::from_micros(100));
        }
    }

    fn pump_for(&mut self, d: StdDuration) {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            self.pump();
        }
    }

    /// Pumps until `pred` holds on one of UE `i`'s events or [`STEP_TIMEOUT`] passes.
    fn until(&mut self, i: usize, pred: impl Fn(&UeEvent) -> bool) -> bool {
        let end = std::time::Instant::now() + STEP_TIMEOUT;
        while std::time::Instant::now() < end {
            if self.events[i].iter().any(&pred) {
                return true;
            }
            self.pump();
        }
        self.events[i].iter().any(&pred)
    }

    fn register(&mut self, i: usize) {
        let now = self.now();
        self.fleet.ue_mut(i).unwrap().register(now).unwrap();
        let done = self.until(i, |e| {
            matches!(e, UeEvent::Registered | UeEvent::RegistrationFailed(_))
        });
        assert!(
            done && self.events[i].contains(&UeEvent::Registered),
            "UE {i} did not register: {:?}; P-CSCF drops {:?}",
            self.events[i],
            self.daemon().stats().drops()
        );
    }

    fn packets(&self) -> Vec<Pkt> {
        self.fleet
            .captured()
            .iter()
            .filter_map(decode)
            .collect::<Vec<_>>()
    }

    fn counter(&self, name: &str) -> u64 {
        self.daemon().stats().worker_total(name)
    }
}

/// True if the TCP or UDP checksum of `seg` verifies for the pseudo-header (src, dst)
/// (RFC 9293 3.1, RFC 768, RFC 8200 8.1); other protocols pass.
fn checksum_ok(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> bool {
    let (s, d) = (IpAddress::from(src), IpAddress::from(dst));
    match proto {
        6 => TcpPacket::new_checked(seg).is_ok_and(|t| t.verify_checksum(&s, &d)),
        17 => UdpPacket::new_checked(seg).is_ok_and(|u| u.verify_checksum(&s, &d)),
        _ => true,
    }
}

/// The inner TCP segment of an ESP-null packet, as (SYN-without-ACK, src port, dst port,
/// payload), after checking its checksum against the outer addresses.
fn inner_tcp(p: &Pkt) -> Option<(bool, u16, u16, Vec<u8>)> {
    let (nh, inner) = esp_null_inner(p)?;
    if nh != 6 {
        return None;
    }
    assert!(
        checksum_ok(p.src, p.dst, 6, inner),
        "bad inner TCP checksum {} -> {}",
        p.src,
        p.dst
    );
    let t = TcpPacket::new_checked(inner).ok()?;
    Some((
        t.syn() && !t.ack(),
        t.src_port(),
        t.dst_port(),
        t.payload().to_vec(),
    ))
}

/// Registration on the wire for UE `u` (TS 33.203 7.1 and 7.2, RFC 3329 2.3.1).
fn check_registration_wire(bed: &AfBed, u: usize, pair: (AuthAlg, EncrAlg)) {
    let cfg = bed.ue(u).config().clone();
    let pk = bed.packets();
    let mine = |p: &&Pkt| p.src == cfg.ip || p.dst == cfg.ip;

    // 1. The unprotected REGISTER: clear TCP to 5060 offering exactly our pair.
    let first = pk
        .iter()
        .filter(mine)
        .find(|p| p.from_ue && !p.data.is_empty())
        .expect("a first SIP packet");
    assert_eq!((first.proto, first.ports.unwrap().1), (6, 5060));
    let what = format!("UE {u}");
    check_offer(&String::from_utf8_lossy(&first.data), pair, &what);

    // 2. The 401 in clear from 5060 with the P-CSCF's choice and its protected ports.
    let clear_down: String = pk
        .iter()
        .filter(|p| !p.from_ue && p.dst == cfg.ip && p.ports.is_some_and(|(s, _)| s == 5060))
        .map(|p| String::from_utf8_lossy(&p.data).to_string())
        .collect();
    let (ss, spi_ps) = check_challenge(&clear_down, pair, (PORT_PC, PORT_PS), &what);

    // 3. The protected connection: a SYN port_uc -> port_ps under spi_ps, then the second
    //    REGISTER over it with Security-Verify = Security-Server and the digest response.
    let up: Vec<_> = pk
        .iter()
        .filter(|p| p.from_ue && p.src == cfg.ip && p.spi.is_some())
        .collect();
    assert!(
        up.iter().all(|p| p.spi == Some(spi_ps)),
        "UE ESP not under spi_ps"
    );
    let up_tcp: Vec<_> = up.iter().filter_map(|p| inner_tcp(p)).collect();
    let syn = up_tcp.iter().find(|t| t.0).expect("protected SYN");
    assert_eq!((syn.1, syn.2), (cfg.sec.port_uc, PORT_PS));
    let reg2: String = up_tcp
        .iter()
        .filter(|t| (t.1, t.2) == (cfg.sec.port_uc, PORT_PS))
        .map(|t| String::from_utf8_lossy(&t.3).to_string())
        .collect();
    let start = reg2.find("REGISTER sip:").expect("protected REGISTER");
    let reg2 = &reg2[start..];
    assert_eq!(
        header_value(reg2, "Security-Verify").as_deref(),
        Some(ss.as_str())
    );
    assert!(
        header_value(reg2, "Authorization").is_some_and(|a| a.contains("response=\"")),
        "{reg2}"
    );

    // 4. The 200 back under spi_uc, port_ps -> port_uc.
    let down: String = pk
        .iter()
        .filter(|p| !p.from_ue && p.dst == cfg.ip && p.spi == Some(cfg.sec.spi_uc))
        .filter_map(inner_tcp)
        .filter(|t| (t.1, t.2) == (PORT_PS, cfg.sec.port_uc))
        .map(|t| String::from_utf8_lossy(&t.3).to_string())
        .collect();
    assert!(down.contains("SIP/2.0 200 OK\r\n"), "{down}");
}

/// One call a -> b with the caller's and callee's events and the callee's request flows.
fn one_call(bed: &mut AfBed, a: usize, b: usize) {
    let target = bed.ue(b).config().impu.clone();
    let (ea, eb) = (bed.events[a].len(), bed.events[b].len());
    let now = bed.now();
    let call_id = bed.fleet.ue_mut(a).unwrap().call(&target, now).unwrap();
    let done = bed.until(
        a,
        |e| matches!(e, UeEvent::CallEnded(c) | UeEvent::CallFailed(c, _) if *c == call_id),
    );
    bed.pump_for(StdDuration::from_millis(50));
    assert!(done, "call did not end: {:?}", &bed.events[a][ea..]);
    check_call_events(&bed.events[a][ea..], &bed.events[b][eb..], &call_id);
    let cfg = bed.ue(b).config().clone();
    let last3 = last_dialog_requests(bed.ue(b));
    for (r, m) in last3.iter().zip(["INVITE", "ACK", "BYE"]) {
        assert_eq!(r.flow.proto, Transport::Tcp, "{m}");
        assert_eq!(r.flow.ue_port, PORT_PC, "{m} not from port_pc");
        assert_eq!(r.flow.local_port, cfg.sec.port_us, "{m}");
        assert_eq!(r.via_spi, Some(cfg.sec.spi_us), "{m}");
    }
}

/// The whole scenario on one address family with an ESP-null pair (inner TCP visible).
fn scenario(v6: bool, pair: (AuthAlg, EncrAlg)) {
    if skip_reason().is_some() {
        return;
    }
    let mut bed = AfBed::new(1);
    let a = bed.add_ue(0, v6, pair);
    let b = bed.add_ue(1, v6, pair);
    bed.register(a);
    check_registration_wire(&bed, a, pair);
    bed.register(b);
    check_registration_wire(&bed, b, pair);
    let regs = bed
        .daemon()
        .wait_for(StdDuration::from_secs(2), |s| s.slowpath.registrations == 2);
    assert!(regs.is_some(), "{:?}", bed.daemon().stats().slowpath);

    one_call(&mut bed, a, b);
    assert_eq!(bed.ue(b).accepted_connections(), 1);
    // The callee closes the P-CSCF's connection; the next call must reopen it from port_pc.
    bed.fleet.ue_mut(b).unwrap().close_server_connections();
    bed.pump_for(StdDuration::from_millis(300));
    one_call(&mut bed, a, b);
    assert_eq!(bed.ue(b).accepted_connections(), 2);

    // On the wire: the P-CSCF opened exactly two connections to the callee, both
    // port_pc -> port_us under spi_us; it never sent a clear SYN, never sent in clear from
    // anything but 5060, and nothing clear touched a protected port.
    let cb = bed.ue(b).config().clone();
    let pk = bed.packets();
    let syns_to_callee: Vec<_> = pk
        .iter()
        .filter(|p| !p.from_ue && p.dst == cb.ip && p.spi.is_some())
        .filter_map(|p| Some((p.spi, inner_tcp(p)?)))
        .filter(|(_, t)| t.0)
        .collect();
    assert_eq!(syns_to_callee.len(), 2, "{syns_to_callee:?}");
    for (spi, t) in &syns_to_callee {
        assert_eq!(*spi, Some(cb.sec.spi_us));
        assert_eq!((t.1, t.2), (PORT_PC, cb.sec.port_us));
    }
    let (mut clear, mut esp) = (0, 0);
    for p in &pk {
        if let Some((s, d)) = p.ports {
            clear += 1;
            assert!(
                checksum_ok(p.src, p.dst, p.proto, &p.payload),
                "bad checksum {p:?}"
            );
            if !p.from_ue {
                assert!(!p.syn_only, "the P-CSCF opened a clear connection: {p:?}");
                assert_eq!(s, 5060, "clear packet from the P-CSCF not from 5060");
            }
            for port in [s, d] {
                assert!(![PORT_PC, PORT_PS].contains(&port), "clear on {port}");
            }
        }
        esp += usize::from(p.spi.is_some());
    }
    assert!(clear >= 10 && esp >= 20, "{clear} clear, {esp} ESP packets");
    // Neither kernel spoke on the link: every frame the UEs received is the daemon's ARP or
    // IP from one of its addresses (a kernel would use a link-local or no source address).
    let ours = [
        VethLink::pcscf_for(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        VethLink::pcscf_for(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    ];
    for c in bed.fleet.captured().iter().filter(|c| !c.from_ue) {
        let from_daemon = match c.frame.get(12..14) {
            Some([0x08, 0x06]) => c.frame.get(28..32) == Some(&[10, 0, 0, 1][..]),
            _ => decode(c).is_some_and(|p| ours.contains(&p.src)),
        };
        assert!(from_daemon, "a frame not from the daemon: {:02x?}", c.frame);
    }
    assert_zero(
        |name| bed.counter(name),
        &[
            "drop_esp_invalid",
            "drop_clear_to_protected",
            "drop_egress_no_sa",
            "drop_esp_unknown_spi",
        ],
    );
    for u in [a, b] {
        assert_ue_clean(bed.ue(u));
    }
    let namespaces = bed.ns.namespaces();
    drop(bed);
    assert_namespaces_removed(namespaces);
}

#[test]
fn afpacket_register_and_call_tcp_ipv4() {
    scenario(false, (AuthAlg::HmacSha1_96, EncrAlg::Null));
}

#[test]
fn afpacket_register_and_call_tcp_ipv6() {
    scenario(true, (AuthAlg::HmacMd5_96, EncrAlg::Null));
}

/// `akabench`'s AF_PACKET backend (`load::run` inside namespace B) against a two-worker
/// daemon: every registration and call succeeds with aes-cbc (IPv4) and aes-gcm (IPv6), and
/// the kernel's fanout program gave each UE to the worker `worker_for` names.
#[test]
fn afpacket_akabench_load_on_two_workers() {
    if skip_reason().is_some() {
        return;
    }
    const UES: usize = 24;
    let link = VethLink::new().unwrap();
    let dir = scratch_dir("e2e-afpacket-load").unwrap();
    let subscribers = generate_subscribers(UES as u64, 5, Plmn::default());
    let subs = dir.join("subscribers.toml");
    std::fs::write(&subs, render_toml(&subscribers)).unwrap();
    let daemon = link.start_daemon(&dir, &subs, 2, 4 * UES).unwrap();
    let mut expected = [0u64; 2];
    for (v6, ealg) in [(false, EncrAlg::AesCbc), (true, EncrAlg::AesGcm)] {
        let cfg = LoadConfig {
            subscribers: subscribers.clone(),
            ues: UES,
            calls: UES / 2,
            transport: Transport::Tcp,
            alg: AuthAlg::HmacSha1_96,
            ealg,
            ipv6: v6,
            concurrency: 8,
            hold: Duration::from_millis(10),
            reregister: false,
            deregister: false,
            timeout: StdDuration::from_secs(60),
            backend: Backend::AfPacket {
                iface: link.pair.b.clone(),
                pcscf: VethLink::pcscf_for(load::ue_addr(0, v6)),
                more_pcscfs: Vec::new(),
            },
            progress: false,
        };
        let report = VethPair::run_in(&link.pair.ns_b, move || load::run(cfg))
            .unwrap()
            .unwrap();
        assert_eq!(
            (report.registered, report.calls_completed),
            (UES as u64, (UES / 2) as u64),
            "v6={v6}: {}",
            report.summary()
        );
        assert!(report.failures_by_cause.is_empty(), "{report:?}");
        for i in 0..UES {
            expected[akagate::daemon::worker_for(load::ue_addr(i, v6), 2)] += 1;
        }
    }
    let stats = daemon.stats();
    let ues: Vec<u64> = stats
        .workers
        .iter()
        .map(|w| w.get("ues").unwrap())
        .collect();
    assert_eq!(ues, expected.to_vec(), "UE stacks per worker");
    assert!(expected.iter().all(|&n| n > 0), "{expected:?}");
    assert_zero(
        |name| stats.worker_total(name),
        &[
            "drop_esp_invalid",
            "drop_clear_to_protected",
            "drop_egress_no_sa",
        ],
    );
    daemon.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
