//! Test harness shared by the control-socket tests (root `tests/control_*.rs` and
//! `tools/tests/`): a daemon over the in-memory pair with a control socket in a temp dir, and a
//! simulated UE that registers over UDP with IMS-AKA, sending its protected REGISTER through
//! ESP (TS 33.203 7.1-7.2). Every frame either way is kept, for pcap captures.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use akagate::config::{Config, ConfigTemplate};
use akagate::daemon::{MEMORY_DAEMON_MAC, MEMORY_PEER_MAC};
use akagate::{Daemon, DaemonHandle, StartOptions};
use akagate_fastpath::esp::{
    AuthAlg, EncrAlg, InboundSa, OutboundSa, Suite, MAX_HEADROOM, MAX_TAILROOM,
};
use akagate_slowpath::aka::{aka_response, derive_suite, DigestInput, Milenage, QopAuth};
use akagate_sys::mempair::MemQueue;
use akagate_sys::{PacketBuf, Port, PortQueue};
use base64::Engine;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

pub const PCSCF_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 1);
pub const UE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 100);
pub const UE_MAC: EthernetAddress = EthernetAddress(MEMORY_PEER_MAC);
pub const PCSCF_MAC: EthernetAddress = EthernetAddress(MEMORY_DAEMON_MAC);
/// The UE's unprotected port and its protected client / server ports (port_uc, port_us).
pub const UE_PORT: u16 = 5060;
pub const PORT_UC: u16 = 5070;
pub const PORT_US: u16 = 5071;
/// The UE's SPIs (spi_uc, spi_us).
pub const SPI_UC: u32 = 0x0001_1111;
pub const SPI_US: u32 = 0x0002_2222;
/// Our protected ports from the config below.
pub const PORT_PC: u16 = 5062;
pub const PORT_PS: u16 = 5064;
pub const IMPI: &str = "alice@open-ims.test";
pub const IMPU: &str = "sip:alice@open-ims.test";

/// TS 35.208 4.3.1 Test Set 1.
const SET1_K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const SET1_OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";

pub const WAIT: Duration = Duration::from_secs(10);

fn hx<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// A fresh directory under `base`.
pub fn temp_dir(base: &str, name: &str) -> PathBuf {
    let d = PathBuf::from(base).join(format!("control-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a memory-backend config (socket `ctl.sock` in `dir`) and alice's subscriber entry;
/// `extra_control` is `""` or `"allow-key-export = true"` for the `[control]` table.
pub fn config_in(dir: &Path, extra_control: &str) -> Config {
    std::fs::write(
        dir.join("subscribers.toml"),
        format!(
            "[[subscriber]]\nimpi = \"{IMPI}\"\nimpu = [\"{IMPU}\", \"tel:+15550100\"]\n\
             k = \"{SET1_K}\"\nopc = \"{SET1_OPC}\"\namf = \"8000\"\nsqn = \"000000000000\"\n"
        ),
    )
    .unwrap();
    // The callers' `[control]` lines, as a knob of the template.
    let allow_key_export = match extra_control.trim() {
        "" => false,
        "allow-key-export = true" => true,
        other => panic!("config_in: unsupported [control] line {other:?}"),
    };
    ConfigTemplate {
        ipv4: vec![PCSCF_V4],
        ipv6: vec![],
        port_pc: PORT_PC,
        port_ps: PORT_PS,
        encr_algs: vec![
            EncrAlg::AesCbc,
            EncrAlg::AesGcm,
            EncrAlg::DesEde3Cbc,
            EncrAlg::Null,
        ],
        workers: vec![0],
        slowpath: None,
        subscribers: Some("subscribers.toml".into()),
        sa_capacity: 1024,
        control_socket: Some("ctl.sock".into()),
        allow_key_export,
        ..ConfigTemplate::default()
    }
    .write(&dir.join("akagate.toml"))
    .unwrap()
}

/// A started daemon, its UE, and the socket path.
pub struct Harness {
    pub handle: DaemonHandle,
    pub ue: Ue,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

/// Starts the daemon over a memory pair with the config of [`config_in`].
pub fn start(dir: &Path, extra_control: &str) -> Harness {
    let config = config_in(dir, extra_control);
    let mut handle = Daemon::start(&config, StartOptions::unpinned()).unwrap();
    let mut peer = handle.take_memory_peer().unwrap();
    let q = peer.take_queues().pop().unwrap();
    Harness {
        handle,
        ue: Ue {
            q,
            frames: Vec::new(),
        },
        socket: dir.join("ctl.sock"),
        dir: dir.to_path_buf(),
    }
}

/// What a completed registration leaves the UE with.
pub struct Registered {
    /// The SA set's suite (keys derived from CK/IK, TS 33.203 Annex I).
    pub suite: Suite,
    /// The P-CSCF's inbound SPIs from Security-Server.
    pub spi_pc: u32,
    pub spi_ps: u32,
    /// The 200 OK, decrypted.
    pub ok: String,
}

/// The simulated UE: the far end of the pair; `frames` holds every frame in either direction.
pub struct Ue {
    q: MemQueue,
    pub frames: Vec<(Instant, Vec<u8>)>,
}

impl Ue {
    fn send(&mut self, ethertype: EthernetProtocol, payload: &[u8]) {
        let mut f = vec![0u8; 14 + payload.len()];
        let mut frame = EthernetFrame::new_unchecked(&mut f[..]);
        EthernetRepr {
            src_addr: UE_MAC,
            dst_addr: if ethertype == EthernetProtocol::Arp {
                EthernetAddress::BROADCAST
            } else {
                PCSCF_MAC
            },
            ethertype,
        }
        .emit(&mut frame);
        frame.payload_mut().copy_from_slice(payload);
        let mut b = self.q.alloc().expect("buffer");
        b.fill(&f).unwrap();
        self.frames.push((Instant::now(), f));
        let mut burst = vec![b];
        assert_eq!(self.q.tx_burst(&mut burst), 1);
    }

    /// The first frame for which `pick` returns something, within [`WAIT`].
    fn expect<T>(&mut self, pick: impl Fn(&[u8]) -> Option<T>) -> T {
        let end = Instant::now() + WAIT;
        loop {
            let mut rx: Vec<PacketBuf> = Vec::new();
            self.q.rx_burst(&mut rx, 64);
            let mut found = None;
            for b in rx {
                let f = b.data().to_vec();
                self.q.free(b);
                if found.is_none() {
                    found = pick(&f);
                }
                self.frames.push((Instant::now(), f));
            }
            if let Some(t) = found {
                return t;
            }
            assert!(Instant::now() < end, "no matching frame");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// ARP for the P-CSCF so it learns our MAC.
    pub fn learn_arp(&mut self) {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: UE_MAC,
            source_protocol_addr: UE_V4,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: PCSCF_V4,
        };
        let mut p = vec![0u8; arp.buffer_len()];
        arp.emit(&mut ArpPacket::new_unchecked(&mut p[..]));
        self.send(EthernetProtocol::Arp, &p);
        self.expect(|f| {
            let eth = EthernetFrame::new_checked(f).ok()?;
            (eth.ethertype() == EthernetProtocol::Arp).then_some(())
        });
    }

    /// An IPv4 packet UE -> P-CSCF carrying a UDP datagram.
    fn udp_packet(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0u8; 8 + payload.len()];
        UdpRepr { src_port, dst_port }.emit(
            &mut UdpPacket::new_unchecked(&mut u[..]),
            &IpAddress::Ipv4(UE_V4),
            &IpAddress::Ipv4(PCSCF_V4),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &ChecksumCapabilities::default(),
        );
        let ip = Ipv4Repr {
            src_addr: UE_V4,
            dst_addr: PCSCF_V4,
            next_header: IpProtocol::Udp,
            payload_len: u.len(),
            hop_limit: 64,
        };
        let mut p = vec![0u8; ip.buffer_len() + u.len()];
        let mut pkt = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.emit(&mut pkt, &ChecksumCapabilities::default());
        pkt.payload_mut().copy_from_slice(&u);
        p
    }

    /// The UDP payload of an IPv4 packet from the P-CSCF (checksum verified).
    fn udp_payload(ip_pkt: &[u8], dst_port: u16) -> Option<String> {
        let ip = Ipv4Packet::new_checked(ip_pkt).ok()?;
        if ip.next_header() != IpProtocol::Udp {
            return None;
        }
        let udp = UdpPacket::new_checked(ip.payload()).ok()?;
        assert!(udp.verify_checksum(&IpAddress::Ipv4(PCSCF_V4), &IpAddress::Ipv4(UE_V4)));
        (udp.dst_port() == dst_port).then(|| String::from_utf8_lossy(udp.payload()).into_owned())
    }

    /// The IPv4 packet of a frame from the P-CSCF with protocol `proto`.
    fn ipv4_from_pcscf(f: &[u8], proto: IpProtocol) -> Option<Vec<u8>> {
        let eth = EthernetFrame::new_checked(f).ok()?;
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        (ip.next_header() == proto).then(|| eth.payload()[..usize::from(ip.total_len())].to_vec())
    }

    /// Registers alice offering only `auth`/`encr`: the unprotected REGISTER, its 401, then
    /// the protected REGISTER over ESP and its 200 OK (decrypted and checked).
    pub fn register(&mut self, auth: AuthAlg, encr: EncrAlg) -> Registered {
        let sec_client = format!(
            "ipsec-3gpp;alg={};ealg={};prot=esp;mod=trans;spi-c={SPI_UC};spi-s={SPI_US};\
             port-c={PORT_UC};port-s={PORT_US}",
            auth.token(),
            encr.token()
        );
        let register = |cseq: u32, via_port: u16, authz: &str, verify: Option<&str>| {
            let mut m = format!(
                "REGISTER sip:open-ims.test SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {UE_V4}:{via_port};branch=z9hG4bK-ctl{cseq};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <{IMPU}>;tag=ctl1\r\n\
                 To: <{IMPU}>\r\n\
                 Call-ID: ctl-call-1\r\n\
                 CSeq: {cseq} REGISTER\r\n\
                 Contact: <sip:alice@{UE_V4}:{PORT_US}>;expires=3600\r\n\
                 Expires: 3600\r\n\
                 Authorization: {authz}\r\n\
                 Security-Client: {sec_client}\r\n"
            );
            if let Some(v) = verify {
                m.push_str(&format!("Security-Verify: {v}\r\n"));
            }
            m.push_str(
                "Require: sec-agree\r\nProxy-Require: sec-agree\r\nSupported: path\r\n\
                 Content-Length: 0\r\n\r\n",
            );
            m
        };
        let initial = register(
            1,
            UE_PORT,
            &format!(
                "Digest username=\"{IMPI}\",realm=\"open-ims.test\",nonce=\"\",\
                 uri=\"sip:open-ims.test\",response=\"\""
            ),
            None,
        );
        let pkt = Self::udp_packet(UE_PORT, 5060, initial.as_bytes());
        self.send(EthernetProtocol::Ipv4, &pkt);
        let resp = self
            .expect(|f| Self::udp_payload(&Self::ipv4_from_pcscf(f, IpProtocol::Udp)?, UE_PORT));
        assert!(resp.starts_with("SIP/2.0 401 "), "{resp}");
        let ss = header(&resp, "Security-Server").expect("Security-Server");
        assert_eq!(param(ss, "alg"), Some(auth.token()));
        assert_eq!(param(ss, "ealg"), Some(encr.token()));
        let spi_pc: u32 = param(ss, "spi-c").unwrap().parse().unwrap();
        let spi_ps: u32 = param(ss, "spi-s").unwrap().parse().unwrap();
        let www = header(&resp, "WWW-Authenticate").unwrap();
        let nonce_b64 = param(www, "nonce").unwrap().to_string();
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(&nonce_b64)
            .unwrap();
        let rand: [u8; 16] = nonce[..16].try_into().unwrap();
        let m = Milenage::new(&hx(SET1_K), &hx(SET1_OPC));
        let out = m.f2345(&rand);
        let suite = derive_suite(auth, encr, &out.ck, &out.ik).unwrap();

        // The protected REGISTER: port_uc -> port_ps through spi_ps (TS 33.203 7.2).
        let uri = "sip:open-ims.test";
        let input = DigestInput {
            username: IMPI,
            realm: "open-ims.test",
            method: "REGISTER",
            uri,
            nonce: &nonce_b64,
            qop: Some(QopAuth {
                nc: "00000001",
                cnonce: "0a4f113b",
            }),
        };
        let response = aka_response(&input, &out.res);
        let authz = format!(
            "Digest username=\"{IMPI}\",realm=\"open-ims.test\",nonce=\"{nonce_b64}\",\
             uri=\"{uri}\",response=\"{}\",algorithm=AKAv1-MD5,qop=auth,nc=00000001,\
             cnonce=\"0a4f113b\"",
            response.as_str()
        );
        let protected = register(2, PORT_UC, &authz, Some(ss));
        let clear = Self::udp_packet(PORT_UC, PORT_PS, protected.as_bytes());
        let mut buf = vec![0u8; MAX_HEADROOM + clear.len() + MAX_TAILROOM];
        buf[MAX_HEADROOM..MAX_HEADROOM + clear.len()].copy_from_slice(&clear);
        let mut out_sa = OutboundSa::new(spi_ps, &suite).unwrap();
        let r = out_sa
            .encapsulate(&mut buf, MAX_HEADROOM..MAX_HEADROOM + clear.len())
            .unwrap();
        self.send(EthernetProtocol::Ipv4, &buf[r]);

        // The 200 OK: port_ps -> port_uc through spi_uc.
        let ok = self.expect(|f| {
            let mut esp = Self::ipv4_from_pcscf(f, IpProtocol::IpSecEsp)?;
            let len = esp.len();
            let mut sa = InboundSa::new(SPI_UC, &suite).ok()?;
            let r = sa.decapsulate(&mut esp, 0..len).ok()?;
            Self::udp_payload(&esp[r], PORT_UC)
        });
        assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
        Registered {
            suite,
            spi_pc,
            spi_ps,
            ok,
        }
    }
}

/// The value of header `name` in a SIP message.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A `name=value` parameter of a header value (quotes removed).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value
        .split([';', ','])
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// Sends one request line to the control socket and returns the parsed answer.
pub fn ask(socket: &Path, request: &str) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Writes `frames` as a pcap file (libpcap format: 24-byte global header, then a 16-byte
/// record header per frame; LINKTYPE_ETHERNET).
pub fn write_pcap(path: &Path, frames: &[(Instant, Vec<u8>)]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microsecond timestamps
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    let t0 = frames.first().map_or_else(Instant::now, |f| f.0);
    for (t, f) in frames {
        let d = t.saturating_duration_since(t0);
        let len = u32::try_from(f.len()).unwrap();
        out.extend_from_slice(&(1_700_000_000 + d.as_secs() as u32).to_le_bytes());
        out.extend_from_slice(&d.subsec_micros().to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}
