//! The control-socket harness (root `tests/control_*.rs` and `tools/tests/`): a daemon over
//! the in-memory pair with a control socket in a temp dir, and the simulated UE's IMS-AKA
//! registration over UDP, its protected REGISTER through ESP (TS 33.203 7.1-7.2).

use std::path::{Path, PathBuf};
use std::time::Instant;

use akagate::config::Config;
use akagate::DaemonHandle;
use akagate_fastpath::esp::{
    AuthAlg, EncrAlg, InboundSa, OutboundSa, Suite, MAX_HEADROOM, MAX_TAILROOM,
};
use akagate_slowpath::aka::{aka_response, derive_suite, DigestInput, Milenage, QopAuth};
use base64::Engine;
use smoltcp::wire::{EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, UdpPacket};

use super::{
    header, hx, ipv4_from_pcscf, memory_config, param, start_memory, subscriber, udp_v4,
    write_subscribers, Ue, IMPI, IMPU, PCSCF_V4, SET1_K, SET1_OPC, UE_V4, WAIT,
};

/// The UE's unprotected port.
pub const UE_PORT: u16 = 5060;
/// The UE's protected client port (port_uc).
pub const PORT_UC: u16 = 5070;
/// The UE's protected server port (port_us).
pub const PORT_US: u16 = 5071;
/// The UE's inbound SPI at port_uc (spi_uc).
pub const SPI_UC: u32 = 0x0001_1111;
/// The UE's inbound SPI at port_us (spi_us).
pub const SPI_US: u32 = 0x0002_2222;
/// Our protected client port (port_pc) in [`config_in`].
pub const PORT_PC: u16 = 5062;
/// Our protected server port (port_ps) in [`config_in`].
pub const PORT_PS: u16 = 5064;

/// Writes a memory-backend config (socket `ctl.sock` in `dir`) and alice's subscriber entry;
/// `extra_control` is `""` or `"allow-key-export = true"` for the `[control]` table.
pub fn config_in(dir: &Path, extra_control: &str) -> Config {
    write_subscribers(dir, &[subscriber(IMPI, &[IMPU, "tel:+15550100"])]);
    // The callers' `[control]` lines, as a knob of the template.
    let allow_key_export = match extra_control.trim() {
        "" => false,
        "allow-key-export = true" => true,
        other => panic!("config_in: unsupported [control] line {other:?}"),
    };
    akagate::config::ConfigTemplate {
        port_pc: PORT_PC,
        port_ps: PORT_PS,
        encr_algs: vec![
            EncrAlg::AesCbc,
            EncrAlg::AesGcm,
            EncrAlg::DesEde3Cbc,
            EncrAlg::Null,
        ],
        control_socket: Some("ctl.sock".into()),
        allow_key_export,
        ..memory_config()
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
    let (handle, ue) = start_memory(&config_in(dir, extra_control));
    Harness {
        handle,
        ue,
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

impl Ue {
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
        let pkt = udp_v4(UE_PORT, 5060, initial.as_bytes());
        self.send(EthernetProtocol::Ipv4, &pkt);
        let resp = self.expect(|f| udp_payload(&ipv4_from_pcscf(f, IpProtocol::Udp)?, UE_PORT));
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
        let clear = udp_v4(PORT_UC, PORT_PS, protected.as_bytes());
        let mut buf = vec![0u8; MAX_HEADROOM + clear.len() + MAX_TAILROOM];
        buf[MAX_HEADROOM..MAX_HEADROOM + clear.len()].copy_from_slice(&clear);
        let mut out_sa = OutboundSa::new(spi_ps, &suite).unwrap();
        let r = out_sa
            .encapsulate(&mut buf, MAX_HEADROOM..MAX_HEADROOM + clear.len())
            .unwrap();
        self.send(EthernetProtocol::Ipv4, &buf[r]);

        // The 200 OK: port_ps -> port_uc through spi_uc.
        let ok = self.expect(|f| {
            let mut esp = ipv4_from_pcscf(f, IpProtocol::IpSecEsp)?;
            let len = esp.len();
            let mut sa = InboundSa::new(SPI_UC, &suite).ok()?;
            let r = sa.decapsulate(&mut esp, 0..len).ok()?;
            udp_payload(&esp[r], PORT_UC)
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
