//! Shared test bed for the registration and call scenarios: a core over an in-memory HSS,
//! a counting SPI allocator, a fixed random source (TS 35.208 set 1 RAND), and a test UE
//! built from the AKA module's UE-side functions.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use akagate_proto::ipc::{Flow, SaSet, SipIn, Transport, WorkerCommand, WorkerEvent};
use akagate_proto::spi::{SadError, SpiAllocator};
use akagate_slowpath::aka::{
    aka_response, AkaFailure, AkaNonce, AkaSuccess, DigestInput, Milenage, QopAuth, Res, SqnArray,
    SqnPolicy, Usim,
};
use akagate_slowpath::hss::{Hss, SubscriberRecord};
use akagate_slowpath::{Core, CoreConfig};
use rand::RngCore;

pub const FIXTURE_01: &str =
    include_str!("../fixtures/reg/01_register_initial_security_client_boghe_openims.sip");
pub const FIXTURE_02: &str = include_str!(
    "../fixtures/reg/02_register_initial_security_client_chinamobile_volte_ipv6_compact.sip"
);

/// TS 35.208 4.3.1 Test Set 1.
pub const SET1_K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
pub const SET1_OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
pub const SET1_RAND: &str = "23553cbe9637a89d218ae64dae47bf35";
pub const REALM: &str = "ims.mnc001.mcc001.3gppnetwork.org";

pub fn hx16(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

pub fn cmcc_ip() -> IpAddr {
    "2409:8800:8a03:3f8f:ab28:5799:cd69:d1e8".parse().unwrap()
}

/// Every 16 bytes drawn are set 1's RAND (tags and branches are then RAND-derived too).
struct FixedRng;
impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        0x2355_3cbe
    }
    fn next_u64(&mut self) -> u64 {
        0x2355_3cbe_9637_a89d
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let r = hx16(SET1_RAND);
        for (i, b) in dest.iter_mut().enumerate() {
            *b = r[i % 16];
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Hands out 4096, 4097, ... and records releases.
#[derive(Default)]
pub struct CountingSpis {
    next: Mutex<u32>,
    pub released: Mutex<Vec<u32>>,
}
impl SpiAllocator for CountingSpis {
    fn allocate(&self) -> Result<u32, SadError> {
        let mut n = self.next.lock().unwrap();
        let s = 4096 + *n;
        *n += 1;
        Ok(s)
    }
    fn release(&self, spi: u32) -> Result<(), SadError> {
        self.released.lock().unwrap().push(spi);
        Ok(())
    }
}

impl CountingSpis {
    /// How many SPIs were handed out.
    pub fn allocated(&self) -> u32 {
        *self.next.lock().unwrap()
    }

    /// Continues after the first `n` SPIs (they belong to restored registrations).
    pub fn skip(&self, n: u32) {
        *self.next.lock().unwrap() = n;
    }
}

fn rec(imsi: &str, domain: &str, tel: &str) -> SubscriberRecord {
    SubscriberRecord {
        impi: format!("{imsi}@{domain}"),
        impu: vec![format!("sip:{imsi}@{domain}"), format!("tel:{tel}")],
        k: SET1_K.into(),
        opc: Some(SET1_OPC.into()),
        op: None,
        amf: "8000".into(),
        sqn: "000000000000".into(),
    }
}

pub struct Testbed {
    pub core: Core,
    pub spis: Arc<CountingSpis>,
    pub now: Instant,
    pub local: IpAddr,
}

impl Testbed {
    pub fn new() -> Self {
        Testbed::with_config(|_| {})
    }

    /// A test bed whose core configuration `tweak` adjusts (e.g. keep-alives on).
    pub fn with_config(tweak: impl FnOnce(&mut CoreConfig)) -> Self {
        Testbed::with_rng(tweak, Box::new(FixedRng))
    }

    /// [`Testbed::with_config`] with the random source `rng` instead of the fixed one.
    pub fn with_rng(tweak: impl FnOnce(&mut CoreConfig), rng: Box<dyn RngCore + Send>) -> Self {
        let hss = Hss::from_records(&[
            rec("001010000000001", REALM, "+15550001"),
            rec("001010000000002", REALM, "+15550002"),
            rec("001010000000003", REALM, "+15550003"),
            rec(
                "460027953821652",
                "ims.mnc002.mcc460.3gppnetwork.org",
                "+8613800000000",
            ),
            rec("alice", "open-ims.test", "+15559999"),
        ])
        .unwrap();
        let spis = Arc::new(CountingSpis::default());
        let mut cfg = CoreConfig {
            default_expires: 600,
            ..CoreConfig::default()
        };
        tweak(&mut cfg);
        let core = Core::new(cfg, hss, spis.clone(), rng);
        Testbed {
            core,
            spis,
            now: Instant::now(),
            local: "10.0.0.1".parse().unwrap(),
        }
    }

    pub fn ue_flow(&self, ue: IpAddr, ue_port: u16, local_port: u16) -> Flow {
        let local = if ue.is_ipv6() {
            "2001:db8::1".parse().unwrap()
        } else {
            self.local
        };
        Flow {
            ue,
            ue_port,
            local,
            local_port,
            proto: Transport::Tcp,
        }
    }

    pub fn raw(&mut self, flow: Flow, via_spi: Option<u32>, bytes: Vec<u8>) -> Vec<WorkerCommand> {
        self.core.handle(
            WorkerEvent::Sip(SipIn {
                flow,
                via_spi,
                bytes,
            }),
            self.now,
        )
    }

    pub fn sip(&mut self, flow: Flow, via_spi: Option<u32>, text: &str) -> Vec<WorkerCommand> {
        self.raw(flow, via_spi, text.as_bytes().to_vec())
    }

    pub fn released(&self) -> Vec<u32> {
        self.spis.released.lock().unwrap().clone()
    }
}

pub fn installed(c: &WorkerCommand) -> SaSet {
    match c {
        WorkerCommand::InstallSaSet(s) => (**s).clone(),
        other => panic!("expected InstallSaSet, got {other:?}"),
    }
}

pub fn sent(c: &WorkerCommand) -> (Flow, String) {
    match c {
        WorkerCommand::Send { flow, bytes, .. } => {
            (*flow, String::from_utf8(bytes.clone()).unwrap())
        }
        other => panic!("expected Send, got {other:?}"),
    }
}

pub fn sent_connect(c: &WorkerCommand) -> bool {
    matches!(
        c,
        WorkerCommand::Send {
            connect_if_absent: true,
            ..
        }
    )
}

/// The value of the first header `name` in a message text.
pub fn header(msg: &str, name: &str) -> Option<String> {
    let head = msg.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// All values of header `name`.
pub fn headers(msg: &str, name: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .collect()
}

/// The value of `;name=value` in a header value (e.g. a Via `branch` or a `tag`).
pub fn semi_param(v: &str, name: &str) -> Option<String> {
    v.split(';').skip(1).find_map(|p| {
        let (n, val) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().to_string())
    })
}

/// The body of a message text.
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Indices of the commands in `out` that are Sends whose text starts with `start`.
pub fn sends_starting(out: &[WorkerCommand], start: &str) -> Vec<usize> {
    out.iter()
        .enumerate()
        .filter(|(_, c)| {
            matches!(c, WorkerCommand::Send { bytes, .. } if bytes.starts_with(start.as_bytes()))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Index of the first RemoveSaSet in `out`.
pub fn first_remove(out: &[WorkerCommand]) -> Option<usize> {
    out.iter()
        .position(|c| matches!(c, WorkerCommand::RemoveSaSet { .. }))
}

/// A quoted parameter of a Digest header.
pub fn param(v: &str, name: &str) -> Option<String> {
    let i = v.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = v.get(i..)?;
    Some(rest.get(..rest.find('"')?)?.to_string())
}

pub fn set1_usim() -> Usim {
    Usim::new(
        Milenage::new(&hx16(SET1_K), &hx16(SET1_OPC)),
        SqnArray::new(SqnPolicy::default()),
    )
}

pub fn ue_authenticate(usim: &mut Usim, nonce: &str) -> Result<AkaSuccess, AkaFailure> {
    let n = AkaNonce::decode(nonce).unwrap();
    usim.authenticate(&n.rand, &n.autn)
}

/// RES of a set-1 USIM for `nonce`.
pub fn set1_usim_res(nonce: &str) -> [u8; 8] {
    let ok = ue_authenticate(&mut set1_usim(), nonce).unwrap();
    ok.res.as_bytes().try_into().unwrap()
}

/// A test UE (subscriber `001010000000001 + n`) on 10.0.1.x.
#[derive(Clone)]
pub struct Ue {
    pub imsi: String,
    pub ip: IpAddr,
    pub port_uc: u16,
    pub port_us: u16,
    pub spi_uc: u32,
    pub spi_us: u32,
    pub local: IpAddr,
    /// The Security-Server of the last 401 (what Security-Verify echoes).
    pub security_server: String,
    /// The transport the UE uses for SIP.
    pub proto: Transport,
    /// Its REGISTERs' Via asks for `rport` (RFC 3581), as handsets do: every captured VoLTE
    /// REGISTER in the fixtures carries it. Off by default so the tests' expected Vias stay
    /// as written; the registration bench turns it on.
    pub rport: bool,
}

impl Ue {
    pub fn new(t: &mut Testbed, n: u8, port_uc: u16) -> Self {
        Ue {
            imsi: format!("00101000000000{}", n + 1),
            ip: format!("10.0.1.{}", n + 1).parse().unwrap(),
            port_uc,
            port_us: port_uc + 1,
            spi_uc: 0x1000_0000 + u32::from(port_uc),
            spi_us: 0x2000_0000 + u32::from(port_uc),
            local: t.local,
            security_server: String::new(),
            proto: Transport::Tcp,
            rport: false,
        }
    }

    /// The same UE speaking SIP over `proto`.
    pub fn with_proto(&self, proto: Transport) -> Ue {
        Ue {
            proto,
            ..self.clone()
        }
    }

    /// The same UE at `ip`, talking to our address `local`.
    pub fn with_ip(&self, ip: &str, local: &str) -> Ue {
        Ue {
            ip: ip.parse().unwrap(),
            local: local.parse().unwrap(),
            ..self.clone()
        }
    }

    /// The Via transport token.
    pub fn transport(&self) -> &'static str {
        self.proto.via_token()
    }

    /// The address as written in a Via or URI host.
    pub fn host(&self) -> String {
        match self.ip {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        }
    }

    pub fn impi(&self) -> String {
        format!("{}@{REALM}", self.imsi)
    }

    pub fn impu(&self) -> String {
        format!("sip:{}@{REALM}", self.imsi)
    }

    pub fn with_ports(&self, port_uc: u16) -> Ue {
        Ue {
            port_uc,
            port_us: port_uc + 1,
            spi_uc: 0x1000_0000 + u32::from(port_uc),
            spi_us: 0x2000_0000 + u32::from(port_uc),
            ..self.clone()
        }
    }

    pub fn with_server(&self, set: &SaSet) -> Ue {
        Ue {
            security_server: format!(
                "ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c={};spi-s={};port-c={};port-s={};q=0.1",
                set.spi_pc, set.spi_ps, set.port_pc, set.port_ps
            ),
            ..self.clone()
        }
    }

    pub fn unprotected_flow(&self) -> Flow {
        Flow {
            ue: self.ip,
            ue_port: 5080,
            local: self.local,
            local_port: 5060,
            proto: self.proto,
        }
    }

    /// UE port_uc -> our port_ps.
    pub fn protected_flow(&self, set: &SaSet) -> Flow {
        Flow {
            ue: self.ip,
            ue_port: self.port_uc,
            local: self.local,
            local_port: set.port_ps,
            proto: self.proto,
        }
    }

    pub fn security_client(&self) -> String {
        let mut v = Vec::new();
        for alg in ["hmac-md5-96", "hmac-sha-1-96"] {
            for ealg in ["des-ede3-cbc", "aes-cbc", "null"] {
                v.push(format!(
                    "ipsec-3gpp;alg={alg};ealg={ealg};prot=esp;mod=trans;spi-c={};spi-s={};port-c={};port-s={}",
                    self.spi_uc, self.spi_us, self.port_uc, self.port_us
                ));
            }
        }
        v.join(",")
    }

    fn register_text(&self, cseq: u32, sport: u16, extra: &str) -> String {
        format!(
            "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/{tp} {ip}:{sport};branch=z9hG4bKreg{cseq}{rport}\r\nMax-Forwards: 70\r\nFrom: <{impu}>;tag=ue{cseq}\r\nTo: <{impu}>\r\nCall-ID: reg-{imsi}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{imsi}@{ip}:{pus};transport={tpl}>;expires=600\r\nSupported: path, sec-agree\r\nRequire: sec-agree\r\nProxy-Require: sec-agree\r\n{extra}Content-Length: 0\r\n\r\n",
            rport = if self.rport { ";rport" } else { "" },
            ip = self.host(),
            impu = self.impu(),
            imsi = self.imsi,
            pus = self.port_us,
            tp = self.transport(),
            tpl = self.transport().to_ascii_lowercase(),
        )
    }

    /// The unprotected initial REGISTER.
    pub fn initial_register(&self) -> String {
        self.register_text(
            1,
            5080,
            &format!(
                "Authorization: Digest username=\"{}\", realm=\"{REALM}\", nonce=\"\", uri=\"sip:{REALM}\", response=\"\"\r\nSecurity-Client: {}\r\n",
                self.impi(),
                self.security_client()
            ),
        )
    }

    fn authorization(&self, nonce: &str, response: &str, auts: Option<&str>) -> String {
        let auts = auts.map(|a| format!(", auts=\"{a}\"")).unwrap_or_default();
        format!(
            "Authorization: Digest username=\"{}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:{REALM}\", response=\"{response}\", algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"{auts}\r\n",
            self.impi()
        )
    }

    /// The protected REGISTER answering `nonce` with `res` (RFC 3310 3.2).
    pub fn protected_register(
        &self,
        set: &SaSet,
        nonce: &str,
        res: &[u8; 8],
        verify: Option<&str>,
    ) -> String {
        let _ = set;
        let input = DigestInput {
            username: &self.impi(),
            realm: REALM,
            method: "REGISTER",
            uri: &format!("sip:{REALM}"),
            nonce,
            qop: Some(QopAuth {
                nc: "00000001",
                cnonce: "0a4f113b",
            }),
        };
        let response = aka_response(&input, &Res::new(res).unwrap());
        self.register_text(
            2,
            self.port_uc,
            &format!(
                "{}Security-Client: {}\r\nSecurity-Verify: {}\r\n",
                self.authorization(nonce, response.as_str(), None),
                self.security_client(),
                verify.unwrap_or(&self.security_server)
            ),
        )
    }

    /// REGISTER with `auts` (sent unprotected on an initial registration).
    pub fn auts_register(&self, nonce: &str, auts: &str) -> String {
        self.register_text(
            2,
            5080,
            &format!(
                "{}Security-Client: {}\r\n",
                self.authorization(nonce, "", Some(auts)),
                self.security_client()
            ),
        )
    }

    /// A refresh REGISTER over an existing set, offering this UE's (new) Security-Client.
    pub fn refresh(&self, _old: &SaSet, verify: &str) -> String {
        self.register_text(
            3,
            self.port_uc,
            &format!(
                "Authorization: Digest username=\"{}\", realm=\"{REALM}\", nonce=\"\", uri=\"sip:{REALM}\", response=\"\", integrity-protected=yes\r\nSecurity-Client: {}\r\nSecurity-Verify: {verify}\r\n",
                self.impi(),
                self.security_client()
            ),
        )
    }

    pub fn dereg(&self, _set: &SaSet) -> String {
        self.register_text(
            4,
            self.port_uc,
            &format!(
                "Expires: 0\r\nSecurity-Verify: {}\r\n",
                self.security_server
            ),
        )
        .replace(";expires=600", ";expires=0")
    }

    pub fn options(&self, _set: &SaSet) -> String {
        format!(
            "OPTIONS {impu} SIP/2.0\r\nVia: SIP/2.0/{tp} {ip}:{uc};branch=z9hG4bKopt\r\nMax-Forwards: 70\r\nFrom: <{impu}>;tag=o1\r\nTo: <{impu}>\r\nCall-ID: opt-{imsi}\r\nCSeq: 1 OPTIONS\r\nSecurity-Verify: {sv}\r\nContent-Length: 0\r\n\r\n",
            impu = self.impu(),
            ip = self.host(),
            uc = self.port_uc,
            imsi = self.imsi,
            sv = self.security_server,
            tp = self.transport(),
        )
    }

    /// Initial REGISTER -> (installed set, nonce); remembers the Security-Server.
    pub fn initial(&self, t: &mut Testbed) -> (SaSet, String) {
        let out = t.sip(self.unprotected_flow(), None, &self.initial_register());
        let set = installed(&out[0]);
        let (_, r) = sent(&out[1]);
        let nonce = param(&header(&r, "WWW-Authenticate").unwrap(), "nonce").unwrap();
        (set, nonce)
    }

    /// The protected REGISTER answering `nonce` through `set` (its 401's), as a set-1 USIM
    /// computes it; returns what the core sent.
    pub fn answer_challenge(
        &self,
        t: &mut Testbed,
        set: &SaSet,
        nonce: &str,
    ) -> Vec<WorkerCommand> {
        let me = self.with_server(set);
        let res = set1_usim_res(nonce);
        t.sip(
            me.protected_flow(set),
            Some(set.spi_ps),
            &me.protected_register(set, nonce, &res, None),
        )
    }

    /// Full registration -> (active set, 200 OK text). `self` keeps its Security-Server via the return.
    pub fn register(&self, t: &mut Testbed) -> (SaSet, String) {
        let (set, nonce) = self.initial(t);
        let out = self.answer_challenge(t, &set, &nonce);
        assert_eq!(out.len(), 1, "{out:?}");
        (set, sent(&out[0]).1)
    }
}

/// An INVITE from `from` to `to_uri` over its protected client port with `body` as SDP.
pub fn invite_text(from: &Ue, to_uri: &str, branch: &str, max_forwards: u8, body: &str) -> String {
    format!(
        "INVITE {to_uri} SIP/2.0\r\nVia: SIP/2.0/{tp} {host}:{uc};branch={branch}\r\nMax-Forwards: {max_forwards}\r\nRoute: <sip:orig@pcscf.ims.mnc001.mcc001.3gppnetwork.org;lr>\r\nFrom: <{impu}>;tag=caller1\r\nTo: <{to_uri}>\r\nCall-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:{imsi}@{host}:{us};transport={tpl}>\r\nSecurity-Verify: {sv}\r\nRequire: sec-agree\r\nProxy-Require: sec-agree\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
        tp = from.transport(),
        tpl = from.transport().to_ascii_lowercase(),
        host = from.host(),
        uc = from.port_uc,
        us = from.port_us,
        impu = from.impu(),
        imsi = from.imsi,
        sv = from.security_server,
        len = body.len(),
    )
}

/// A minimal SDP offer.
pub fn sdp(ue: &Ue) -> String {
    let ip = match ue.ip {
        IpAddr::V4(a) => format!("IP4 {a}"),
        IpAddr::V6(a) => format!("IP6 {a}"),
    };
    format!("v=0\r\no=- 1 1 IN {ip}\r\ns=-\r\nc=IN {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
}

/// A response from the UE to the request `req` it received (Via copied, To tag added).
pub fn answer(req: &str, code: u16, reason: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!("From: {}\r\n", header(req, "From").unwrap()));
    let to = header(req, "To").unwrap();
    if to.contains(";tag=") {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!("To: {to};tag=callee1\r\n"));
    }
    s.push_str(&format!(
        "Call-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(req, "Call-ID").unwrap(),
        header(req, "CSeq").unwrap()
    ));
    s
}

/// Two registered UEs (subscribers 1 and 2) over `proto`, on IPv6 when `v6`.
pub fn registered_pair_over(proto: Transport, v6: bool) -> (Testbed, Ue, SaSet, Ue, SaSet) {
    registered_pair_with(proto, v6, |_| {})
}

/// [`registered_pair_over`] with a core configuration adjusted by `tweak`.
pub fn registered_pair_with(
    proto: Transport,
    v6: bool,
    tweak: impl FnOnce(&mut CoreConfig),
) -> (Testbed, Ue, SaSet, Ue, SaSet) {
    registered_pair_on(Testbed::with_config(tweak), proto, v6)
}

/// [`registered_pair_over`] on the test bed `t`.
pub fn registered_pair_on(
    mut t: Testbed,
    proto: Transport,
    v6: bool,
) -> (Testbed, Ue, SaSet, Ue, SaSet) {
    let mut a = Ue::new(&mut t, 0, 7000).with_proto(proto);
    let mut b = Ue::new(&mut t, 1, 9000).with_proto(proto);
    if v6 {
        a = a.with_ip("2001:db8:1::1", "2001:db8::1");
        b = b.with_ip("2001:db8:1::2", "2001:db8::1");
    }
    let (sa, _) = a.register(&mut t);
    let a = a.with_server(&sa);
    let (sb, _) = b.register(&mut t);
    let b = b.with_server(&sb);
    (t, a, sa, b, sb)
}

/// The flow of P-CSCF-originated requests to `ue`: our port_pc -> its port_us.
pub fn client_flow(ue: &Ue, set: &SaSet, proto: Transport) -> Flow {
    Flow {
        ue: ue.ip,
        ue_port: set.port_us,
        local: ue.local,
        local_port: set.port_pc,
        proto,
    }
}
