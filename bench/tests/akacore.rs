//! akacore: the S-CSCF sans-IO (registration: challenge with CK/IK, digest against XRES,
//! AUTS; calls between registered UEs, responses by branch, in-dialog routing,
//! de-registration), then the binary over real UDP and TCP sockets (framing of several
//! messages per segment and of a message split across segments, counters on SIGTERM). The
//! UE side is the bench's USIM on the same subscriber records.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use akagate_bench::core::{CoreConfig, Dest, Out, Peer, Scscf};
use akagate_bench::ue::usim::{usim_for, usim_with_seq};
use akagate_fastpath::ipc::Transport;
use akagate_slowpath::aka::{
    digest_response, encode_auts, AkaFailure, AkaNonce, DigestInput, DigestParams, QopAuth, Res,
    Usim, AUTS_PASSWORD,
};
use akagate_slowpath::hss::{generate_subscribers, render_toml, Hss, Plmn, SubscriberRecord};
use akagate_slowpath::sip::{HeaderKind, Message};

const CORE: &str = "127.0.0.3:5070";
const PCSCF: &str = "127.0.0.2:5060";

fn records() -> Vec<SubscriberRecord> {
    generate_subscribers(3, 7, Plmn::default())
}

fn core() -> Scscf {
    let cfg = CoreConfig {
        local: CORE.parse().unwrap(),
        transport: Transport::Tcp,
        max_expires: 600,
        dereg_notify_delay: Duration::ZERO,
    };
    Scscf::new(cfg, Hss::from_records(&records()).unwrap())
}

fn pcscf() -> Peer {
    Peer {
        addr: "127.0.0.2:40000".parse().unwrap(),
        transport: Transport::Tcp,
        conn: Some(1),
    }
}

fn impu(rec: &SubscriberRecord) -> &str {
    rec.impu.iter().find(|u| u.starts_with("sip:")).unwrap()
}

fn contact(n: usize) -> String {
    format!("sip:ue{n}@10.1.0.{n}:6100")
}

/// A REGISTER as akagate relays it (TS 24.229 5.2.2): our Via over the UE's, Path, an
/// Authorization with `integrity-protected`.
fn register(n: usize, rec: &SubscriberRecord, cseq: u32, expires: u32, auth: &str) -> Vec<u8> {
    let realm = rec.impi.split('@').nth(1).unwrap();
    format!(
        "REGISTER sip:{realm} SIP/2.0\r\n\
Via: SIP/2.0/TCP {PCSCF};branch=z9hG4bKp{n}x{cseq};rport\r\n\
Via: SIP/2.0/TCP 10.1.0.{n}:5100;branch=z9hG4bKue{n}x{cseq}\r\n\
Max-Forwards: 69\r\n\
From: <{u}>;tag=f{n}\r\n\
To: <{u}>\r\n\
Call-ID: reg{n}\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: <{c}>;expires={expires}\r\n\
Path: <sip:rtok{n}@{PCSCF};lr>\r\n\
Require: path\r\n\
Supported: path\r\n\
Authorization: Digest {auth}\r\n\
Content-Length: 0\r\n\r\n",
        u = impu(rec),
        c = contact(n)
    )
    .into_bytes()
}

fn initial_auth(rec: &SubscriberRecord) -> String {
    let realm = rec.impi.split('@').nth(1).unwrap();
    format!(
        "username=\"{}\", realm=\"{realm}\", uri=\"sip:{realm}\", nonce=\"\", response=\"\", \
         integrity-protected=\"no\"",
        rec.impi
    )
}

/// The answer to `challenge` (WWW-Authenticate) with `password`, and its AUTS if any.
fn answer(rec: &SubscriberRecord, www: &str, password: &[u8], auts: Option<&str>) -> String {
    let p = DigestParams::parse(www).unwrap();
    let (realm, nonce) = (p.get("realm").unwrap(), p.get("nonce").unwrap());
    let uri = format!("sip:{realm}");
    let input = DigestInput {
        username: &rec.impi,
        realm,
        method: "REGISTER",
        uri: &uri,
        nonce,
        qop: Some(QopAuth {
            nc: "00000001",
            cnonce: "c0ffee",
        }),
    };
    let resp = digest_response(&input, password);
    let auts = auts.map(|a| format!(", auts=\"{a}\"")).unwrap_or_default();
    format!(
        "username=\"{}\", realm=\"{realm}\", uri=\"{uri}\", nonce=\"{nonce}\", response=\"{}\", \
         algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\", integrity-protected=\"yes\"{auts}",
        rec.impi,
        resp.as_str()
    )
}

fn one(out: Vec<Out>) -> (Dest, Vec<u8>) {
    assert_eq!(out.len(), 1, "{out:?}");
    let o = out.into_iter().next().unwrap();
    (o.dest, o.bytes)
}

fn status(bytes: &[u8]) -> u16 {
    Message::parse(bytes).unwrap().status_code().unwrap()
}

fn header(bytes: &[u8], name: &str) -> Option<String> {
    Message::parse(bytes)
        .unwrap()
        .header_by_name(name)
        .map(str::to_string)
}

/// Runs the USIM on a 401: the RES, or the AUTS of a synchronisation failure.
fn run_usim(usim: &mut Usim, www: &str) -> Result<Res, String> {
    let p = DigestParams::parse(www).unwrap();
    let n = AkaNonce::decode(p.get("nonce").unwrap()).unwrap();
    match usim.authenticate(&n.rand, &n.autn) {
        Ok(s) => Ok(s.res),
        Err(AkaFailure::SyncFailure { auts, .. }) => Err(encode_auts(&auts)),
        Err(e) => panic!("{e}"),
    }
}

/// Registers UE `n` (record `n`); returns the 200 OK.
fn register_ue(c: &mut Scscf, n: usize, now: Instant) -> Vec<u8> {
    register_from(c, n, 1, now)
}

/// [`register_ue`] with CSeqs `cseq` and `cseq + 1`.
fn register_from(c: &mut Scscf, n: usize, cseq: u32, now: Instant) -> Vec<u8> {
    let rec = &records()[n];
    let (_, r401) = one(c.handle(
        &register(n, rec, cseq, 600, &initial_auth(rec)),
        pcscf(),
        now,
    ));
    let www = header(&r401, "WWW-Authenticate").unwrap();
    let res = run_usim(&mut usim_for(rec).unwrap(), &www).unwrap();
    let auth = answer(rec, &www, res.as_bytes(), None);
    let (_, ok) = one(c.handle(&register(n, rec, cseq + 1, 600, &auth), pcscf(), now));
    ok
}

#[test]
fn challenge_carries_ck_ik_and_the_answer_is_checked_against_xres() {
    let mut c = core();
    let now = Instant::now();
    let rec = &records()[0];
    let (dest, r401) = one(c.handle(&register(0, rec, 1, 600, &initial_auth(rec)), pcscf(), now));
    assert_eq!(dest, Dest::Reply(pcscf()));
    assert_eq!(status(&r401), 401);
    let www = header(&r401, "WWW-Authenticate").unwrap();
    let p = DigestParams::parse(&www).unwrap();
    assert_eq!(p.get("algorithm"), Some("AKAv1-MD5"));
    assert_eq!(p.get("qop"), Some("auth"));
    // The keys the USIM derives are the ones the P-CSCF gets (TS 33.203 7.1).
    let n = AkaNonce::decode(p.get("nonce").unwrap()).unwrap();
    let ok = usim_for(rec)
        .unwrap()
        .authenticate(&n.rand, &n.autn)
        .unwrap();
    assert_eq!(p.get("ck").unwrap(), hex::encode(ok.ck.as_bytes()));
    assert_eq!(p.get("ik").unwrap(), hex::encode(ok.ik.as_bytes()));
    // Both Vias stay in the response (RFC 3261 8.2.6.2).
    assert_eq!(Message::parse(&r401).unwrap().vias().count(), 2);

    // A wrong RES: 403, and the challenge is spent.
    let bad = answer(rec, &www, b"not the res", None);
    let (_, r403) = one(c.handle(&register(0, rec, 2, 600, &bad), pcscf(), now));
    assert_eq!(status(&r403), 403);
    assert_eq!(c.counters.auth_failures, 1);
    let good = answer(rec, &www, ok.res.as_bytes(), None);
    let (_, again) = one(c.handle(&register(0, rec, 3, 600, &good), pcscf(), now));
    assert_eq!(status(&again), 401, "a spent challenge is never accepted");
    assert_eq!(c.registered(), 0);
}

#[test]
fn registration_answers_with_service_route_associated_uris_and_path() {
    let mut c = core();
    let ok = register_ue(&mut c, 1, Instant::now());
    assert_eq!(status(&ok), 200);
    let rec = &records()[1];
    assert_eq!(
        header(&ok, "Service-Route").unwrap(),
        format!("<sip:orig@{CORE};lr;transport=tcp>")
    );
    let assoc = header(&ok, "P-Associated-URI").unwrap();
    for u in &rec.impu {
        assert!(assoc.contains(&format!("<{u}>")), "{assoc}");
    }
    assert_eq!(
        header(&ok, "Contact").unwrap(),
        format!("<{}>;expires=600", contact(1))
    );
    assert_eq!(
        header(&ok, "Path").unwrap(),
        format!("<sip:rtok1@{PCSCF};lr>")
    );
    assert_eq!(c.registered(), 1);
    assert_eq!((c.counters.registrations, c.counters.challenges), (1, 1));
}

#[test]
fn auts_resynchronises_and_the_next_challenge_is_accepted() {
    let mut c = core();
    let now = Instant::now();
    let rec = &records()[0];
    // The USIM has seen SEQ far beyond the HSS's start.
    let mut usim = usim_with_seq(rec, 1 << 20).unwrap();
    let (_, r401) = one(c.handle(&register(0, rec, 1, 600, &initial_auth(rec)), pcscf(), now));
    let www = header(&r401, "WWW-Authenticate").unwrap();
    let auts = run_usim(&mut usim, &www).unwrap_err();
    let with_auts = answer(rec, &www, AUTS_PASSWORD, Some(&auts));
    let (_, second) = one(c.handle(&register(0, rec, 2, 600, &with_auts), pcscf(), now));
    assert_eq!(status(&second), 401);
    assert_eq!(c.counters.resyncs, 1);
    let www2 = header(&second, "WWW-Authenticate").unwrap();
    assert_ne!(www, www2);
    let res = run_usim(&mut usim, &www2).expect("the SQN after the resync is fresh");
    let auth = answer(rec, &www2, res.as_bytes(), None);
    let (_, ok) = one(c.handle(&register(0, rec, 3, 600, &auth), pcscf(), now));
    assert_eq!(status(&ok), 200);

    // A forged AUTS is refused.
    let (_, r401) = one(c.handle(&register(0, rec, 4, 600, &initial_auth(rec)), pcscf(), now));
    let www = header(&r401, "WWW-Authenticate").unwrap();
    let forged = answer(rec, &www, AUTS_PASSWORD, Some("AAAAAAAAAAAAAAAAAAA="));
    let (_, r403) = one(c.handle(&register(0, rec, 5, 600, &forged), pcscf(), now));
    assert_eq!(status(&r403), 403);
}

#[test]
fn protected_deregistration_removes_the_binding() {
    let mut c = core();
    let now = Instant::now();
    register_ue(&mut c, 2, now);
    let rec = &records()[2];
    let auth = initial_auth(rec).replace("\"no\"", "\"yes\"");
    let (_, ok) = one(c.handle(&register(2, rec, 3, 0, &auth), pcscf(), now));
    assert_eq!(status(&ok), 200);
    assert_eq!(header(&ok, "Expires").as_deref(), Some("0"));
    assert_eq!(
        header(&ok, "Contact").unwrap(),
        format!("<{}>;expires=0", contact(2))
    );
    assert_eq!((c.registered(), c.counters.deregistrations), (0, 1));
    // Not integrity-protected: challenged, not de-registered.
    register_from(&mut c, 2, 4, now);
    register_from(&mut c, 2, 8, now);
    assert_eq!(
        (c.counters.registrations, c.counters.reregistrations),
        (2, 1)
    );
    let (_, r401) = one(c.handle(&register(2, rec, 6, 0, &initial_auth(rec)), pcscf(), now));
    assert_eq!(status(&r401), 401);
    assert_eq!(c.registered(), 1);
}

fn invite(target: &str, route: &str, to_tag: &str) -> Vec<u8> {
    let b: String = format!("{target}{to_tag}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!(
        "INVITE {target} SIP/2.0\r\n\
Via: SIP/2.0/TCP {PCSCF};branch=z9hG4bK{b};rport\r\n\
Via: SIP/2.0/TCP 10.1.0.0:5100;branch=z9hG4bKueinv\r\n\
Route: {route}\r\n\
Record-Route: <sip:{PCSCF};lr>\r\n\
Max-Forwards: 68\r\n\
From: <sip:caller@x>;tag=a\r\n\
To: <{target}>{to_tag}\r\n\
Call-ID: call1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:ue0@10.1.0.0:6100>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn call_goes_to_the_callee_contact_along_its_path_and_responses_come_back() {
    let mut c = core();
    let now = Instant::now();
    register_ue(&mut c, 0, now);
    register_ue(&mut c, 1, now);
    let callee = impu(&records()[1]).to_string();
    let orig = format!("<sip:orig@{CORE};lr;transport=tcp>");
    let out = c.handle(&invite(&callee, &orig, ""), pcscf(), now);
    assert_eq!(out.len(), 2, "100 Trying and the INVITE");
    assert_eq!(out[0].dest, Dest::Reply(pcscf()));
    assert_eq!(status(&out[0].bytes), 100);
    assert_eq!(
        out[1].dest,
        Dest::To(PCSCF.parse().unwrap(), Transport::Tcp)
    );
    let fwd = Message::parse(&out[1].bytes).unwrap();
    assert_eq!(fwd.request_uri(), Some(contact(1).as_str()));
    assert_eq!(
        fwd.header(HeaderKind::Route),
        Some(format!("<sip:rtok1@{PCSCF};lr>").as_str())
    );
    let rr: Vec<&str> = fwd
        .list_values(HeaderKind::RecordRoute)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        rr,
        [
            format!("<sip:{CORE};lr;transport=tcp>"),
            format!("<sip:{PCSCF};lr>")
        ]
    );
    assert_eq!(fwd.max_forwards().unwrap(), Some(67));
    let top = fwd.top_via().unwrap();
    assert_eq!(top.sent_by, CORE);
    assert_eq!(fwd.vias().count(), 3);
    assert_eq!(c.counters.calls, 1);

    // The callee's 200 (through its P-CSCF) goes back to the caller's without our Via.
    let text = String::from_utf8(out[1].bytes.clone()).unwrap();
    let vias: String = text
        .lines()
        .filter(|l| l.starts_with("Via:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP {PCSCF};branch=z9hG4bKterm\r\n{vias}\
From: <sip:caller@x>;tag=a\r\nTo: <{callee}>;tag=b\r\nCall-ID: call1\r\nCSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    );
    let ok = ok.replacen(
        &format!("Via: SIP/2.0/TCP {PCSCF};branch=z9hG4bKterm\r\n"),
        "",
        1,
    );
    let callee_side = Peer {
        conn: Some(2),
        ..pcscf()
    };
    let (dest, relayed) = one(c.handle(ok.as_bytes(), callee_side, now));
    assert_eq!(dest, Dest::Reply(pcscf()));
    let m = Message::parse(&relayed).unwrap();
    assert_eq!(m.vias().count(), 2);
    assert!(m
        .top_via()
        .unwrap()
        .branch()
        .unwrap()
        .starts_with("z9hG4bKsip"));
    assert_eq!(c.counters.calls_answered, 1);
    // A response nobody asked for is dropped.
    assert!(
        c.handle(ok.as_bytes(), callee_side, now).len() == 1,
        "2xx retransmission relayed"
    );
    assert_eq!(c.counters.calls_answered, 1, "and counted once");

    // BYE in the dialog: Route is only us, the Request-URI the callee's contact.
    let bye = String::from_utf8(invite(
        &contact(1),
        &format!("<sip:{CORE};lr;transport=tcp>"),
        ";tag=b",
    ))
    .unwrap()
    .replace("INVITE", "BYE");
    let (dest, fwd) = one(c.handle(bye.as_bytes(), pcscf(), now));
    assert_eq!(dest, Dest::To(PCSCF.parse().unwrap(), Transport::Tcp));
    let m = Message::parse(&fwd).unwrap();
    assert_eq!(m.request_uri(), Some(contact(1).as_str()));
    assert_eq!(
        m.header(HeaderKind::Route),
        Some(format!("<sip:rtok1@{PCSCF};lr>").as_str())
    );
    assert_eq!(c.counters.routed_by_contact, 1);
}

#[test]
fn calls_to_nobody_are_refused() {
    let mut c = core();
    let now = Instant::now();
    let orig = format!("<sip:orig@{CORE};lr>");
    let known = impu(&records()[2]).to_string();
    let (_, r) = one(c.handle(&invite(&known, &orig, ""), pcscf(), now));
    assert_eq!(status(&r), 480);
    let (_, r) = one(c.handle(&invite("sip:nobody@x", &orig, ""), pcscf(), now));
    assert_eq!(status(&r), 404);
    let bye = String::from_utf8(invite("sip:gone@10.9.9.9", &orig, ";tag=z"))
        .unwrap()
        .replace("INVITE", "BYE");
    let (_, r) = one(c.handle(bye.as_bytes(), pcscf(), now));
    assert_eq!(status(&r), 481);
    assert_eq!(c.counters.unroutable, 3);
}

#[test]
fn retransmitted_requests_get_the_last_response_and_garbage_is_counted() {
    let mut c = core();
    let now = Instant::now();
    let rec = &records()[0];
    let reg = register(0, rec, 1, 600, &initial_auth(rec));
    let (_, first) = one(c.handle(&reg, pcscf(), now));
    let (_, again) = one(c.handle(&reg, pcscf(), now));
    assert_eq!(first, again);
    assert_eq!((c.counters.retransmissions, c.counters.challenges), (1, 1));
    assert!(c.handle(b"\x00\x01garbage", pcscf(), now).is_empty());
    assert_eq!(c.counters.malformed, 1);
}

/// Reads SIP messages from `s` until `n` complete ones arrived (framed by Content-Length).
fn read_messages(s: &mut TcpStream, n: usize) -> Vec<Vec<u8>> {
    use akagate_proto::sipscan::{FrameLimits, StreamFramer, StreamItem};
    let mut framer = StreamFramer::new(FrameLimits::default());
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        match framer.next_item().unwrap() {
            Some(StreamItem::Message(m)) => out.push(m),
            Some(_) => {}
            None => {
                let k = s.read(&mut chunk).unwrap();
                assert!(k > 0, "akacore closed the connection");
                framer.push(&chunk[..k]);
            }
        }
    }
    out
}

#[test]
fn akacore_over_udp_and_tcp_frames_and_counts() {
    let dir = std::env::temp_dir().join(format!("akacore-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let subs = dir.join("subscribers.toml");
    std::fs::write(&subs, render_toml(&records())).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_akacore"))
        .args(["--subscribers", subs.to_str().unwrap(), "--listen", &listen])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("3 subscribers, listening on"), "{first}");

    // Two REGISTERs in one segment: two 401s.
    let mut tcp = TcpStream::connect(&listen).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (r0, r1) = (&records()[0], &records()[1]);
    let mut both = register(0, r0, 1, 600, &initial_auth(r0));
    both.extend(register(1, r1, 1, 600, &initial_auth(r1)));
    tcp.write_all(&both).unwrap();
    let got = read_messages(&mut tcp, 2);
    assert!(got.iter().all(|m| status(m) == 401));
    let www = header(&got[0], "WWW-Authenticate").unwrap();
    assert!(www.contains(&r0.impi.split('@').nth(1).unwrap().to_string()));
    // The answer split across two segments: 200.
    let res = run_usim(&mut usim_for(r0).unwrap(), &www).unwrap();
    let answer = register(0, r0, 2, 600, &answer(r0, &www, res.as_bytes(), None));
    let (a, b) = answer.split_at(answer.len() / 2);
    tcp.write_all(a).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    tcp.write_all(b).unwrap();
    let ok = read_messages(&mut tcp, 1);
    assert_eq!(status(&ok[0]), 200);

    // UDP: the answer goes back to the source address.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    udp.send_to(
        &register(2, &records()[2], 1, 600, &initial_auth(&records()[2])),
        &listen,
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(status(&buf[..n]), 401);

    // SIGTERM: the counters, exit 0.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let last = rest.lines().last().unwrap_or_default();
    for want in [
        "registrations=1 ",
        "challenges=3 ",
        "auth_failures=0 ",
        "connections=1",
    ] {
        assert!(last.contains(want), "{want} not in {last}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requests_over_udp_are_retransmitted_until_answered() {
    let cfg = CoreConfig {
        local: CORE.parse().unwrap(),
        transport: Transport::Udp,
        max_expires: 600,
        dereg_notify_delay: Duration::ZERO,
    };
    let mut c = Scscf::new(cfg, Hss::from_records(&records()).unwrap());
    let now = Instant::now();
    register_ue(&mut c, 1, now);
    let callee = impu(&records()[1]).to_string();
    let out = c.handle(
        &invite(&callee, &format!("<sip:orig@{CORE};lr>"), ""),
        pcscf(),
        now,
    );
    let fwd = &out[1];
    assert_eq!(fwd.dest, Dest::To(PCSCF.parse().unwrap(), Transport::Udp));
    // Timer A: T1, then 2 T1 (RFC 3261 17.1.1.2).
    assert!(c.poll(now + Duration::from_millis(400)).is_empty());
    let again = c.poll(now + Duration::from_millis(500));
    assert_eq!(again, vec![fwd.clone()]);
    assert!(c.poll(now + Duration::from_millis(1400)).is_empty());
    assert_eq!(c.poll(now + Duration::from_millis(1500)).len(), 1);
    // The callee side's 100 ends them.
    let text = String::from_utf8(fwd.bytes.clone()).unwrap();
    let top_via = text.lines().find(|l| l.starts_with("Via:")).unwrap();
    let trying = format!(
        "SIP/2.0 100 Trying\r\n{top_via}\r\nFrom: <sip:caller@x>;tag=a\r\nTo: <{callee}>\r\n\
Call-ID: call1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(c.handle(trying.as_bytes(), pcscf(), now).is_empty());
    assert!(c.poll(now + Duration::from_secs(10)).is_empty());
    assert_eq!(c.counters.requests_resent, 2);
}

fn subscribe(impu: &str, expires: u32, to_tag: &str, cseq: u32) -> Vec<u8> {
    format!(
        "SUBSCRIBE {impu} SIP/2.0\r\n\
Via: SIP/2.0/TCP {PCSCF};branch=z9hG4bKsub{cseq};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:{PCSCF}>;tag=pc1\r\n\
To: <{impu}>{to_tag}\r\n\
Call-ID: sub1@{PCSCF}\r\n\
CSeq: {cseq} SUBSCRIBE\r\n\
Event: reg\r\n\
Expires: {expires}\r\n\
Accept: application/reginfo+xml\r\n\
Contact: <sip:{PCSCF}>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn reg_event_subscription_gets_full_state_and_ends_with_the_registration() {
    let mut c = core();
    let now = Instant::now();
    let rec = &records()[1];
    let target = impu(rec).to_string();
    // Nobody registered: 404 (TS 24.229 5.4.2.1.1 needs a registered identity).
    let (_, r) = one(c.handle(&subscribe(&target, 600000, "", 1), pcscf(), now));
    assert_eq!(status(&r), 404);
    register_ue(&mut c, 1, now);
    let out = c.handle(&subscribe(&target, 600000, "", 2), pcscf(), now);
    assert_eq!(out.len(), 2, "200 and NOTIFY");
    assert_eq!(status(&out[0].bytes), 200);
    assert_eq!(header(&out[0].bytes, "Expires").as_deref(), Some("600"));
    let tag = Message::parse(&out[0].bytes)
        .unwrap()
        .to_header()
        .unwrap()
        .tag()
        .unwrap()
        .to_string();
    assert_eq!(
        out[1].dest,
        Dest::To(PCSCF.parse().unwrap(), Transport::Tcp)
    );
    let n = Message::parse(&out[1].bytes).unwrap();
    assert_eq!(n.method(), Some("NOTIFY"));
    assert_eq!(n.call_id().unwrap(), format!("sub1@{PCSCF}"));
    assert_eq!(n.from_header().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(n.to_header().unwrap().tag(), Some("pc1"));
    assert_eq!(
        n.header_by_name("Subscription-State"),
        Some("active;expires=600")
    );
    // akagate's own reginfo reader sees our contact active.
    let regs = akagate_slowpath::upstream::parse_reginfo(n.body()).unwrap();
    assert_eq!(regs[0].aor, target);
    assert_eq!(regs[0].contacts[0].uri, contact(1));
    assert!(regs[0].contacts[0].active);
    // Its 200 ends there (nothing relayed).
    let ok =
        format!(
        "SIP/2.0 200 OK\r\n{}\r\nFrom: x;tag={tag}\r\nTo: y;tag=pc1\r\nCall-ID: sub1@{PCSCF}\r\n\
CSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(&out[1].bytes).lines().find(|l| l.starts_with("Via:")).unwrap()
    );
    assert!(c.handle(ok.as_bytes(), pcscf(), now).is_empty());
    assert_eq!(c.counters.stray_responses, 0);
    // De-registration: 200 and a terminated NOTIFY in the same dialog.
    let auth = initial_auth(rec).replace("\"no\"", "\"yes\"");
    let out = c.handle(&register(1, rec, 9, 0, &auth), pcscf(), now);
    assert_eq!(out.len(), 2);
    assert_eq!(status(&out[0].bytes), 200);
    let n = Message::parse(&out[1].bytes).unwrap();
    assert_eq!(n.method(), Some("NOTIFY"));
    assert_eq!(n.cseq().unwrap().seq, 2);
    assert!(n
        .header_by_name("Subscription-State")
        .unwrap()
        .starts_with("terminated"));
    let regs = akagate_slowpath::upstream::parse_reginfo(n.body()).unwrap();
    assert!(!regs[0].contacts[0].active);
    assert_eq!((c.counters.reg_subscriptions, c.counters.notifies), (1, 2));

    // With a delay the terminated NOTIFY comes from poll() once it is due.
    let mut c = core();
    c.set_dereg_notify_delay(Duration::from_millis(300));
    register_ue(&mut c, 1, now);
    assert_eq!(
        c.handle(&subscribe(&target, 600, "", 2), pcscf(), now)
            .len(),
        2
    );
    let out = c.handle(&register(1, rec, 9, 0, &auth), pcscf(), now);
    assert_eq!(out.len(), 1, "only the 200");
    assert!(c.poll(now + Duration::from_millis(299)).is_empty());
    let later = c.poll(now + Duration::from_millis(300));
    assert_eq!(later.len(), 1);
    assert!(String::from_utf8_lossy(&later[0].bytes).starts_with("NOTIFY "));
}
