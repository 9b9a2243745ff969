//! Test bed shared by the end-to-end tests: the in-process P-CSCF (real worker + real core)
//! on one end of an in-memory Ethernet pair, simulated UEs on the other, a virtual clock.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use akagate_bench::daemon::{start_memory_daemon_with, MemoryDaemon};
use akagate_bench::fleet::Fleet;
use akagate_bench::gateway::{GatewayConfig, InProcessGateway};
use akagate_bench::ue::usim::{usim_for, usim_with_seq};
use akagate_bench::ue::{Ue, UeConfig, UeEvent};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use akagate_slowpath::hss::{parse_toml, Hss, SubscriberRecord};
use akagate_sys::mempair::{mem_pair, MemPairConfig, MemQueue};
use akagate_sys::Port;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

pub const SUBSCRIBERS: &str = include_str!("../fixtures/subscribers.toml");
pub const PCSCF_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const PCSCF_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const PORT_PC: u16 = 5100;
pub const PORT_PS: u16 = 6100;

pub fn records() -> Vec<SubscriberRecord> {
    parse_toml(SUBSCRIBERS).unwrap()
}

/// Every algorithm pair the P-CSCF is configured to accept in these tests.
pub fn all_auth() -> Vec<AuthAlg> {
    vec![AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96, AuthAlg::AesGmac]
}

pub fn all_encr() -> Vec<EncrAlg> {
    vec![
        EncrAlg::AesCbc,
        EncrAlg::DesEde3Cbc,
        EncrAlg::AesGcm,
        EncrAlg::Null,
    ]
}

pub mod checks;
pub mod netns;
pub mod scenarios;

/// The address of the UE for fixture subscriber `sub`: 10.0.1.(7 + sub) or fd00::(7 + sub).
pub fn ue_addr(sub: usize, v6: bool) -> IpAddr {
    let host = 7 + sub as u8;
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(host)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, host))
    }
}

/// The UE for fixture subscriber `sub` at `ip` (MAC 02:00:00:00:01:(7 + sub)) registering
/// with `pcscf` over `proto`, offering only `offer`, with port_uc 31800 + 10 sub and port_us
/// 31900 + 10 sub, holding its calls 50 ms.
pub fn ue_config(
    sub: usize,
    ip: IpAddr,
    pcscf: IpAddr,
    proto: Transport,
    offer: (AuthAlg, EncrAlg),
) -> UeConfig {
    let rec = &records()[sub];
    let mac = EthernetAddress([0x02, 0, 0, 0, 1, 7 + sub as u8]);
    let mut cfg = UeConfig::new(mac, ip, pcscf, &rec.impi, &rec.impu[0]);
    cfg.transport = proto;
    cfg.offers = vec![offer];
    cfg.sec.port_uc = 31800 + sub as u16 * 10;
    cfg.sec.port_us = 31900 + sub as u16 * 10;
    cfg.hold = Some(Duration::from_millis(50));
    cfg
}

/// The P-CSCF under test.
pub enum Pcscf {
    /// Worker + core stepped in this thread on a virtual clock.
    Inline(Box<InProcessGateway<MemQueue>>),
    /// The daemon's own threads (`Daemon::start`, memory backend), on real time.
    Daemon {
        handle: Box<akagate::DaemonHandle>,
        clock: std::time::Instant,
    },
}

pub struct Bed {
    pub pcscf: Pcscf,
    pub fleet: Fleet<MemQueue>,
    pub now: Instant,
    /// Events of every UE, by index.
    pub events: Vec<Vec<UeEvent>>,
}

impl Bed {
    pub fn new() -> Bed {
        let (mut a, mut b) = mem_pair(&MemPairConfig::default()).unwrap();
        let now = Instant::from_millis(1_000);
        let mut cfg = GatewayConfig::new(64);
        cfg.core.profile.auth_alg_list = all_auth();
        cfg.core.profile.encr_alg_list = all_encr();
        let hss = Hss::from_records(&records()).unwrap();
        let gw = InProcessGateway::new(cfg, hss, a.take_queues().pop().unwrap(), now).unwrap();
        let fleet = Fleet::new(b.take_queues().pop().unwrap());
        Bed {
            pcscf: Pcscf::Inline(Box::new(gw)),
            fleet,
            now,
            events: Vec::new(),
        }
    }

    /// The real daemon (memory backend, one worker) with the fixture subscribers.
    pub fn daemon() -> Bed {
        Bed::daemon_with_shards(1)
    }

    /// [`Bed::daemon`] with two slowpath shards (`[cores] slowpath = [0, 1]`, unpinned).
    #[allow(dead_code)]
    pub fn daemon_two_shards() -> Bed {
        Bed::daemon_with_shards(2)
    }

    /// [`Bed::daemon`] with `shards` slowpath shards.
    pub fn daemon_with_shards(shards: usize) -> Bed {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bench-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let subs = dir.join("subscribers.toml");
        std::fs::write(&subs, SUBSCRIBERS).unwrap();
        let MemoryDaemon { handle, queue } = start_memory_daemon_with(&dir, &subs, 1, 1024, |c| {
            c.cores.slowpath = (0..shards).collect();
        })
        .unwrap();
        Bed {
            pcscf: Pcscf::Daemon {
                handle: Box::new(handle),
                clock: std::time::Instant::now(),
            },
            fleet: Fleet::new(queue),
            now: Instant::from_millis(0),
            events: Vec::new(),
        }
    }

    /// Registrations with an active SA set, as the P-CSCF counts them. The daemon refreshes
    /// its gauge every 100 ms, later when its thread is starved (a loaded box), so it is read
    /// every 150 ms until two readings agree (for at most 3 s).
    pub fn registered(&mut self) -> u64 {
        let Pcscf::Daemon { clock, .. } = &self.pcscf else {
            return self.registered_now();
        };
        let clock = *clock;
        let give_up = clock.elapsed() + std::time::Duration::from_secs(3);
        let mut last = None;
        loop {
            let until = clock.elapsed() + std::time::Duration::from_millis(150);
            while clock.elapsed() < until {
                self.pump(1);
            }
            let now = self.registered_now();
            if last == Some(now) || clock.elapsed() >= give_up {
                return now;
            }
            last = Some(now);
        }
    }

    /// The P-CSCF's registration count as it reads at this moment.
    fn registered_now(&self) -> u64 {
        match &self.pcscf {
            Pcscf::Inline(gw) => gw.core().registered() as u64,
            Pcscf::Daemon { handle, .. } => handle.stats().slowpath.registrations,
        }
    }

    /// Adds UE number `n` (0-based subscriber index) on IPv4 or IPv6 with one offer.
    pub fn add_ue(
        &mut self,
        sub: usize,
        v6: bool,
        proto: Transport,
        offer: (AuthAlg, EncrAlg),
        seq_ms: u64,
    ) -> usize {
        let rec = &records()[sub];
        let ip = ue_addr(sub, v6);
        let pcscf = if v6 {
            IpAddr::V6(PCSCF_V6)
        } else {
            IpAddr::V4(PCSCF_V4)
        };
        let cfg = ue_config(sub, ip, pcscf, proto, offer);
        let usim = if seq_ms == 0 {
            usim_for(rec).unwrap()
        } else {
            usim_with_seq(rec, seq_ms).unwrap()
        };
        let ue = Ue::new(cfg, usim, self.now).unwrap();
        self.events.push(Vec::new());
        self.fleet.add(ue)
    }

    pub fn ue(&self, i: usize) -> &Ue {
        self.fleet.ue(i).unwrap()
    }

    pub fn ue_mut(&mut self, i: usize) -> &mut Ue {
        self.fleet.ue_mut(i).unwrap()
    }

    /// Advances the virtual clock by 1 ms per round.
    pub fn pump(&mut self, rounds: usize) {
        for _ in 0..rounds {
            match &mut self.pcscf {
                Pcscf::Inline(gw) => {
                    gw.step(self.now);
                }
                Pcscf::Daemon { clock, .. } => {
                    std::thread::sleep(std::time::Duration::from_micros(300));
                    self.now = Instant::from_micros(clock.elapsed().as_micros() as i64);
                }
            }
            let events = &mut self.events;
            self.fleet.step(self.now, |i, ue| {
                while let Some(e) = ue.poll_event() {
                    events[i].push(e);
                }
            });
            if matches!(self.pcscf, Pcscf::Inline(_)) {
                self.now += Duration::from_millis(1);
            }
        }
    }

    /// Pumps until `pred` holds on UE `i`'s events, at most `max_ms` virtual milliseconds.
    pub fn until(&mut self, i: usize, max_ms: usize, pred: impl Fn(&UeEvent) -> bool) -> bool {
        for _ in 0..max_ms {
            if self.events[i].iter().any(&pred) {
                return true;
            }
            self.pump(1);
        }
        self.events[i].iter().any(&pred)
    }

    /// Registers UE `i` and asserts success.
    pub fn register(&mut self, i: usize) {
        let now = self.now;
        self.ue_mut(i).register(now).unwrap();
        let ok = self.until(i, 5_000, |e| {
            matches!(e, UeEvent::Registered | UeEvent::RegistrationFailed(_))
        });
        assert!(
            ok,
            "no registration outcome for UE {i}: {:?}",
            self.events[i]
        );
        assert!(
            self.events[i].contains(&UeEvent::Registered),
            "UE {i} did not register: {:?}",
            self.events[i]
        );
    }

    /// A worker counter (summed over workers for the daemon).
    pub fn counter(&self, name: &str) -> u64 {
        match &self.pcscf {
            Pcscf::Inline(gw) => gw.counters().get(name).unwrap(),
            Pcscf::Daemon { handle, .. } => handle
                .stats()
                .workers
                .iter()
                .map(|w| w.get(name).unwrap())
                .sum(),
        }
    }
}

/// One frame decoded with smoltcp's wire types (independently of the code under test).
#[derive(Clone, Debug)]
pub struct Pkt {
    pub from_ue: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol / next header.
    pub proto: u8,
    /// Clear TCP/UDP ports.
    pub ports: Option<(u16, u16)>,
    /// TCP SYN without ACK.
    pub syn_only: bool,
    /// ESP SPI.
    pub spi: Option<u32>,
    /// IP payload (ESP packet, TCP segment or UDP datagram).
    pub payload: Vec<u8>,
    /// TCP/UDP payload for clear packets.
    pub data: Vec<u8>,
}

pub fn decode(c: &akagate_bench::fleet::Captured) -> Option<Pkt> {
    use smoltcp::wire::{
        EthernetFrame, EthernetProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
    };
    let eth = EthernetFrame::new_checked(&c.frame[..]).ok()?;
    let (src, dst, proto, payload): (IpAddr, IpAddr, u8, Vec<u8>) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.next_header().into(),
                ip.payload().to_vec(),
            )
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                ip.next_header().into(),
                ip.payload().to_vec(),
            )
        }
        _ => return None,
    };
    let mut p = Pkt {
        from_ue: c.from_ue,
        src,
        dst,
        proto,
        ports: None,
        syn_only: false,
        spi: None,
        payload: payload.clone(),
        data: Vec::new(),
    };
    match proto {
        6 => {
            let t = TcpPacket::new_checked(&payload[..]).ok()?;
            p.ports = Some((t.src_port(), t.dst_port()));
            p.syn_only = t.syn() && !t.ack();
            p.data = t.payload().to_vec();
        }
        17 => {
            let u = UdpPacket::new_checked(&payload[..]).ok()?;
            p.ports = Some((u.src_port(), u.dst_port()));
            p.data = u.payload().to_vec();
        }
        50 => {
            p.spi = Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?));
        }
        _ => {}
    }
    Some(p)
}

pub fn packets(bed: &Bed) -> Vec<Pkt> {
    bed.fleet.captured().iter().filter_map(decode).collect()
}

/// For ESP with null encryption and a 12-byte ICV (hmac-sha-1-96 / hmac-md5-96): the inner
/// next header (RFC 4303 2.6: the trailer byte just before the ICV) and the inner payload.
pub fn esp_null_inner(p: &Pkt) -> Option<(u8, &[u8])> {
    let n = p.payload.len();
    let nh = *p.payload.get(n.checked_sub(13)?)?;
    let pad = usize::from(*p.payload.get(n - 14)?);
    let inner = p.payload.get(8..(n - 14).checked_sub(pad)?)?;
    Some((nh, inner))
}

/// A header value of the first SIP message in `text` that has it.
pub fn header_value(text: &str, name: &str) -> Option<String> {
    text.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

/// The value of `param` in a `;`-separated list.
pub fn param(v: &str, param: &str) -> Option<String> {
    v.split(';').find_map(|kv| {
        let (k, val) = kv.split_once('=')?;
        (k.trim() == param).then(|| val.trim().to_string())
    })
}
