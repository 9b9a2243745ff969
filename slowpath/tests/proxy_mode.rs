mod reg_common;

use akagate_proto::ipc::{Flow, Transport, WorkerCommand};
use akagate_slowpath::upstream::{NextHop, Upstream};
use reg_common::*;

const LOCAL: &str = "10.9.0.1:5060";
const HOP0: &str = "10.9.0.10:5060";
const CK1: &str = "b40ba9a3c58b2a05bbf0d987b21bf8cb";
const IK1: &str = "f769bcd751044604127672711c6d3441";
const NONCE1: &str = "I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=";

fn bed() -> Testbed {
    Testbed::with_config(|c| {
        c.upstream = Some(Upstream {
            next_hops: vec![NextHop { addr: HOP0.parse().unwrap(), transport: Some(Transport::Udp) }],
            local: LOCAL.parse().unwrap(),
            trusted: vec!["10.9.1.0/24".parse().unwrap()],
            visited_network_id: "visited.example.net".into(),
        })
    })
}

fn core_answer(req: &str, status: &str, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {status}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!("From: {}\r\nTo: {};tag=scscf\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "From").unwrap(), header(req, "To").unwrap(), header(req, "Call-ID").unwrap(), header(req, "CSeq").unwrap()));
    s
}

#[test]
fn explore() {
    let mut t = bed();
    let ue = Ue::new(&mut t, 0, 7000);
    let reg = ue.initial_register().replace(">;expires=600\r\n", ">;expires=600000\r\n");
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    for c in &out { if let WorkerCommand::Send{flow, bytes, ..} = c { eprintln!("SEND {flow:?}\n{}", String::from_utf8_lossy(bytes)); } else { eprintln!("{c:?}"); } }
    let (f, fwd): (Flow, String) = sent(&out[0]);
    let a = core_answer(&fwd, "401 Unauthorized", &format!("WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{NONCE1}\", algorithm=AKAv1-MD5, ck=\"{CK1}\", ik=\"{IK1}\", qop=\"auth\"\r\n"));
    eprintln!("CORE401\n{a}");
    let out = t.sip(f, None, &a);
    for c in &out { if let WorkerCommand::Send{flow, bytes, ..} = c { eprintln!("SEND {flow:?}\n{}", String::from_utf8_lossy(bytes)); } else { eprintln!("{c:?}"); } }
    let set = installed(&out[0]);
    let ue = ue.with_server(&set);
    let res: [u8; 8] = hx16("a54211d5e3ba50bf0000000000000000")[..8].try_into().unwrap();
    let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &ue.protected_register(&set, NONCE1, &res, None));
    for c in &out { if let WorkerCommand::Send{flow, bytes, ..} = c { eprintln!("SEND {flow:?}\n{}", String::from_utf8_lossy(bytes)); } else { eprintln!("{c:?}"); } }
    let (f, fwd) = sent(&out[0]);
    let a = core_answer(&fwd, "200 OK", "Contact: <sip:001010000000001@10.0.1.1:7001;transport=tcp>;expires=3600\r\nService-Route: <sip:orig@scscf.example:6060;lr>\r\nP-Associated-URI: <sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>, <tel:+15550001>\r\n");
    let out = t.sip(f, None, &a);
    for c in &out { if let WorkerCommand::Send{flow, bytes, ..} = c { eprintln!("SEND {flow:?}\n{}", String::from_utf8_lossy(bytes)); } else { eprintln!("{c:?}"); } }
    eprintln!("{:#?}", t.core.registrations_view(t.now));
}
