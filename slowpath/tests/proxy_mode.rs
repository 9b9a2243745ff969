//! Proxy mode (issue 9, TS 24.229 5.2.2) driven sans-IO from both sides: the test plays the
//! UE on the access side and the S-CSCF on the core side (flows whose local address is our
//! core-facing address), builds every message itself and checks what the core puts on the
//! wire towards each: the REGISTER as relayed (Path, P-Charging-Vector, integrity-protected),
//! the S-CSCF's CK/IK turned into the SA set and taken out of the 401, the protected
//! REGISTER, the 200 that activates the set, hostile core input, failover and
//! de-registration.

mod reg_common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand, WorkerEvent};
use akagate_proto::suite::{AuthAlg, EncrAlg};
use akagate_slowpath::aka::{Milenage, SqnArray, SqnPolicy, Usim};
use akagate_slowpath::registrar::SaSetState;
use akagate_slowpath::upstream::{self, NextHop, Upstream};
use base64::Engine;
use reg_common::*;

/// Our core-facing address: Via sent-by, Path host, icid-generated-at.
const LOCAL: &str = "10.9.0.1:5060";
/// The next hops towards the I-CSCF / S-CSCF, in priority order.
const HOP0: &str = "10.9.0.10:5060";
const HOP1: &str = "10.9.0.11:5060";
/// Trusted as the core besides the next hops.
const TRUSTED: &str = "10.9.1.0/24";
const VISITED: &str = "visited.mnc001.mcc001.3gppnetwork.org";

/// The S-CSCF's vector: TS 35.208 4.3.1 test set 1 (RAND, SQN ff9bb4d0b607, AMF b9b9,
/// AK aa689c648370, MAC-A 4a9ffac354dfafb3, RES, CK, IK); the nonce is
/// base64(RAND || SQN^AK || AMF || MAC-A) (RFC 3310 3.2), checked in `the_vector_is_test_set_1`.
const NONCE1: &str = "I1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=";
const RES1: &str = "a54211d5e3ba50bf";
const CK1: &str = "b40ba9a3c58b2a05bbf0d987b21bf8cb";
const IK1: &str = "f769bcd751044604127672711c6d3441";
/// The S-CSCF's second challenge (after AUTS): material of the test's own, which the relay
/// only carries (the nonce) or turns into keys (CK/IK).
const NONCE2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const CK2: &str = "000102030405060708090a0b0c0d0e0f";
const IK2: &str = "101112131415161718191a1b1c1d1e1f";
/// An AUTS (14 bytes, base64) as the UE sends it; the HSS checks it, the relay carries it.
const AUTS: &str = "AQIDBAUGBwgJCgsMDQ4=";
/// What the S-CSCF grants the UE's contact.
const GRANTED: u64 = 3600;
const SERVICE_ROUTE: &str = "<sip:orig@scscf.ims.mnc001.mcc001.3gppnetwork.org:6060;lr>";
/// RFC 3261 17.1.2.2 timer F (64 * T1, T1 = 500 ms).
const TIMER_F: Duration = Duration::from_secs(32);
const HOP_TIMEOUT: Duration = upstream::DEFAULT_HOP_TIMEOUT;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn core_ip() -> IpAddr {
    addr(LOCAL).ip()
}

/// A core in proxy mode towards `hops` (address, `;transport=`).
fn proxy_bed(hops: &[(&str, Option<Transport>)]) -> Testbed {
    proxy_bed_with(hops, |_| {})
}

/// [`proxy_bed`] with the rest of the configuration adjusted by `tweak`.
fn proxy_bed_with(
    hops: &[(&str, Option<Transport>)],
    tweak: impl FnOnce(&mut akagate_slowpath::CoreConfig),
) -> Testbed {
    let next_hops = hops
        .iter()
        .map(|&(a, transport)| NextHop {
            addr: addr(a),
            transport,
        })
        .collect();
    Testbed::with_config(|c| {
        c.upstream = Some(Upstream {
            next_hops,
            local: addr(LOCAL),
            trusted: vec![TRUSTED.parse().unwrap()],
            visited_network_id: VISITED.into(),
            emergency_next_hops: Vec::new(),
            targets: Vec::new(),
            emergency_targets: Vec::new(),
            dns_servers: Vec::new(),
            emergency_numbers: Vec::new(),
            anonymous_emergency: false,
            hop_timeout: upstream::DEFAULT_HOP_TIMEOUT,
            hop_holddown: upstream::DEFAULT_HOP_HOLDDOWN,
        });
        tweak(c);
    })
}

/// The core-side flow between us and `peer` over `proto`.
fn core_flow(peer: &str, proto: Transport) -> Flow {
    let peer = addr(peer);
    let local = addr(LOCAL);
    Flow {
        ue: peer.ip(),
        ue_port: peer.port(),
        local: local.ip(),
        local_port: local.port(),
        proto,
    }
}

/// The Sends in `out` on the core side (`true`) or the access side (`false`).
fn sends(out: &[WorkerCommand], core_side: bool) -> Vec<(Flow, String)> {
    out.iter()
        .filter(|c| matches!(c, WorkerCommand::Send { flow, .. } if (flow.local == core_ip()) == core_side))
        .map(sent)
        .collect()
}

/// The S-CSCF's answer to the request `req` it received (RFC 3261 8.2.6.2): every Via (ours
/// on top), From, To with the S-CSCF's tag, Call-ID, CSeq, then `extra` header lines.
fn scscf_answer(req: &str, status: &str, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {status}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    s.push_str(&format!(
        "From: {}\r\nTo: {};tag=scscf1\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "From").unwrap(),
        header(req, "To").unwrap(),
        header(req, "Call-ID").unwrap(),
        header(req, "CSeq").unwrap(),
    ));
    s
}

/// The S-CSCF's AKA challenge without the keys (what the UE must see).
fn www_value(nonce: &str) -> String {
    format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=AKAv1-MD5, qop=\"auth\"")
}

/// The S-CSCF's `WWW-Authenticate` line with `ck` / `ik` (TS 24.229 7.2A.1, TS 33.203 7.1),
/// placed between the other parameters.
fn www_with_keys(nonce: &str, ck: &str, ik: &str) -> String {
    format!(
        "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=AKAv1-MD5, ck=\"{ck}\", ik=\"{ik}\", qop=\"auth\"\r\n"
    )
}

/// `text` without its first Via line (what a proxy relays back, RFC 3261 16.7 step 3).
fn without_top_via(text: &str) -> String {
    let top = headers(text, "Via").remove(0);
    text.replacen(&format!("Via: {top}\r\n"), "", 1)
}

/// `text` with the header line `line` added before Content-Length.
fn with_line(text: &str, line: &str) -> String {
    text.replacen("Content-Length:", &format!("{line}\r\nContent-Length:"), 1)
}

/// The branch of our Via on top of a relayed request, after checking that Via's form.
fn our_via_branch(fwd: &str, proto: Transport) -> String {
    let top = headers(fwd, "Via").remove(0);
    let branch = semi_param(&top, "branch").unwrap();
    assert!(branch.starts_with("z9hG4bK") && branch.len() > 10, "{top}");
    assert_eq!(
        top,
        format!(
            "SIP/2.0/{} {LOCAL};branch={branch};rport",
            proto.via_token()
        )
    );
    branch
}

/// The user part of our Path entry (`<sip:TOKEN@LOCAL;lr>`).
fn path_token(fwd: &str) -> String {
    assert_eq!(headers(fwd, "Path").len(), 1, "{fwd}");
    let path = header(fwd, "Path").unwrap();
    let token = path
        .strip_prefix("<sip:")
        .and_then(|p| p.strip_suffix(&format!("@{LOCAL};lr>")))
        .unwrap_or_else(|| panic!("Path {path}"))
        .to_string();
    assert!(token.len() > 1, "{path}");
    token
}

/// Checks what every relayed REGISTER carries towards the core (TS 24.229 5.2.2.1: Path,
/// Require/Supported path, P-Visited-Network-ID, P-Charging-Vector; RFC 3329 2.2: nothing of
/// sec-agree) and that the UE's own identity headers went through unchanged.
fn assert_relayed(ue_req: &str, fwd: &str) {
    assert!(
        fwd.starts_with(&format!("REGISTER sip:{REALM} SIP/2.0\r\n")),
        "{fwd}"
    );
    for h in ["From", "To", "Call-ID", "CSeq", "Contact", "Expires"] {
        assert_eq!(header(fwd, h), header(ue_req, h), "{h}");
    }
    assert_eq!(header(fwd, "Max-Forwards").as_deref(), Some("69"));
    assert_eq!(header(fwd, "Require").as_deref(), Some("path"));
    assert_eq!(header(fwd, "Supported").as_deref(), Some("path"));
    assert_eq!(
        header(fwd, "P-Visited-Network-ID"),
        Some(format!("\"{VISITED}\""))
    );
    let pcv = header(fwd, "P-Charging-Vector").unwrap();
    let icid = pcv
        .strip_prefix("icid-value=")
        .and_then(|v| v.strip_suffix(";icid-generated-at=10.9.0.1"))
        .unwrap_or_else(|| panic!("P-Charging-Vector {pcv}"));
    assert!(
        !icid.is_empty() && icid.chars().all(|c| c.is_ascii_hexdigit()),
        "{pcv}"
    );
    for h in ["Proxy-Require", "Security-Client", "Security-Verify"] {
        assert_eq!(header(fwd, h), None, "{h} must not reach the core");
    }
    assert!(
        !fwd.to_ascii_lowercase().contains("sec-agree"),
        "sec-agree is hop-by-hop: {fwd}"
    );
    let vias = headers(fwd, "Via");
    assert_eq!(vias.len(), 2, "{fwd}");
    assert_eq!(Some(&vias[1]), headers(ue_req, "Via").first());
}

/// The UE's initial REGISTER (TCP, Security-Client, empty Authorization) asking for a
/// lifetime of 600000 s.
fn initial_register(ue: &Ue) -> String {
    ue.initial_register()
        .replace(">;expires=600\r\n", ">;expires=600000\r\n")
}

fn res1() -> [u8; 8] {
    hex::decode(RES1).unwrap().try_into().unwrap()
}

/// The Security-Server we announce for SPIs `spi_c`/`spi_s` (the UE offers aes-cbc with
/// hmac-sha-1-96, the profile's first choice; our ports are the profile's 5100 / 6100).
fn security_server(spi_c: u32, spi_s: u32) -> String {
    format!("ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c={spi_c};spi-s={spi_s};port-c=5100;port-s=6100;q=0.1")
}

/// The UE's initial REGISTER relayed to the first next hop: (hop flow, relayed text).
fn relay_initial(t: &mut Testbed, ue: &Ue) -> (Flow, String) {
    let out = t.sip(ue.unprotected_flow(), None, &initial_register(ue));
    assert_eq!(out.len(), 1, "{out:?}");
    sent(&out[0])
}

/// Initial REGISTER, relayed, answered 401 with CK1/IK1: (the UE knowing our
/// Security-Server, the pending set, the hop flow).
fn challenged(t: &mut Testbed, ue: &Ue) -> (Ue, SaSet, Flow) {
    let (hop, fwd) = relay_initial(t, ue);
    let out = t.sip(
        hop,
        None,
        &scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let set = installed(&out[0]);
    (ue.with_server(&set), set, hop)
}

/// The S-CSCF's 200 to `fwd` granting `expires` to `ue`'s contact.
fn scscf_ok(ue: &Ue, fwd: &str, expires: u64) -> String {
    scscf_answer(
        fwd,
        "200 OK",
        &format!(
            "Contact: <sip:{}@{}:{};transport=tcp>;expires={expires}\r\nService-Route: {SERVICE_ROUTE}\r\nP-Associated-URI: <{}>, <tel:+15550001>\r\n",
            ue.imsi,
            ue.host(),
            ue.port_us,
            ue.impu()
        ),
    )
}

/// A UE registered through the core: (UE with its Security-Server, active set, hop flow).
fn registered(t: &mut Testbed, ue: &Ue) -> (Ue, SaSet, Flow) {
    let (ue, set, hop, _) = registered_with_sub(t, ue);
    (ue, set, hop)
}

/// As [`registered`], with the reg-event SUBSCRIBE the P-CSCF sent (and the core accepted).
fn registered_with_sub(t: &mut Testbed, ue: &Ue) -> (Ue, SaSet, Flow, String) {
    let (ue, set, _) = challenged(t, ue);
    let (hop, fwd) = answer_relayed(t, &ue, &set, NONCE1);
    let out = t.sip(hop, None, &scscf_ok(&ue, &fwd, GRANTED));
    assert_eq!(out.len(), 2, "{out:?}");
    answer_to(&out[0], ue.protected_flow(&set), "200 OK");
    assert_reg_subscribe(&out[1], &ue, hop);
    // The S-CSCF accepts the subscription: nothing more goes out.
    let sub = sent(&out[1]).1;
    let ok = scscf_answer(&sub, "200 OK", "Expires: 600000\r\n");
    assert!(t.sip(hop, None, &ok).is_empty());
    assert_eq!(t.core.registered(), 1);
    (ue, set, hop, sub)
}

/// The S-CSCF's reg-event NOTIFY in the subscription `sub` (RFC 3680) saying `ue`'s contact
/// is `state` with `attrs` (`event="..."`, `expires="..."`).
fn reg_notify(sub: &str, ue: &Ue, state: &str, attrs: &str, sub_state: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?>\n<reginfo xmlns=\"urn:ietf:params:xml:ns:reginfo\" version=\"1\" state=\"full\">\n<registration aor=\"{impu}\" id=\"r1\" state=\"{reg}\">\n<contact id=\"c1\" state=\"{state}\" {attrs}><uri>sip:{imsi}@{host}:{port};transport=tcp</uri></contact>\n</registration>\n</reginfo>\n",
        impu = ue.impu(),
        reg = if state == "active" { "active" } else { "terminated" },
        imsi = ue.imsi,
        host = ue.host(),
        port = ue.port_us,
    );
    format!(
        "NOTIFY {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {HOP0};branch=z9hG4bKnotify{n}\r\nMax-Forwards: 69\r\nFrom: {to};tag=scscf1\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: {n} NOTIFY\r\nEvent: reg\r\nSubscription-State: {sub_state}\r\nContent-Type: application/reginfo+xml\r\nContent-Length: {len}\r\n\r\n{body}",
        contact = header(sub, "Contact").unwrap().trim_matches(['<', '>']),
        to = header(sub, "To").unwrap(),
        from = header(sub, "From").unwrap(),
        cid = header(sub, "Call-ID").unwrap(),
        n = state.len() + attrs.len(),
        len = body.len(),
    )
}

#[test]
fn network_deregistration_by_reg_event_removes_the_registration_and_its_sas() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, hop, sub) = registered_with_sub(&mut t, &ue);
    // First the full state: still active, nothing changes.
    let notify = reg_notify(
        &sub,
        &ue,
        "active",
        "event=\"registered\" expires=\"3600\"",
        "active;expires=600000",
    );
    let out = t.sip(hop, None, &notify);
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], hop, "200 OK");
    assert_eq!(t.core.registered(), 1);
    // TS 24.229 5.2.5.1: the network deactivates the contact: registration and SAs go.
    let notify = reg_notify(
        &sub,
        &ue,
        "terminated",
        "event=\"deactivated\"",
        "terminated;reason=noresource",
    );
    let out = t.sip(hop, None, &notify);
    answer_to(&out[0], hop, "200 OK");
    assert!(out.iter().any(|c| is_remove_of(c, &set)), "{out:?}");
    assert_eq!(t.core.registered(), 0);
    assert!(t.core.registrations_view(t.now).is_empty());
    assert_eq!(t.core.stats().core_deregistrations, 1);
    // The subscription is over: another NOTIFY in it (a new transaction) finds nobody.
    let again = reg_notify(
        &sub,
        &ue,
        "terminated",
        "event=\"expired\"",
        "terminated;reason=noresource",
    );
    let out = t.sip(hop, None, &again);
    answer_to(&out[0], hop, "481 Call/Transaction Does Not Exist");
}

#[test]
fn shortened_registration_by_reg_event_expires_early() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, hop, sub) = registered_with_sub(&mut t, &ue);
    let notify = reg_notify(
        &sub,
        &ue,
        "active",
        "event=\"shortened\" expires=\"60\"",
        "active;expires=600000",
    );
    let out = t.sip(hop, None, &notify);
    answer_to(&out[0], hop, "200 OK");
    assert_eq!(
        t.core.registrations_view(t.now)[0].expires_in,
        Some(Duration::from_secs(60))
    );
    assert!(advance(&mut t, Duration::from_secs(59)).is_empty());
    let out = advance(&mut t, Duration::from_secs(2));
    assert!(out.iter().any(|c| is_remove_of(c, &set)), "{out:?}");
    assert_eq!(t.core.registered(), 0);
}

#[test]
fn reg_event_notify_with_a_bad_body_gets_400_and_changes_nothing() {
    let (mut t, ue) = bed_and_ue();
    let (ue, _set, hop, sub) = registered_with_sub(&mut t, &ue);
    let notify = reg_notify(&sub, &ue, "terminated", "event=\"deactivated\"", "active")
        .replace("<reginfo", "<!DOCTYPE x [<!ENTITY a \"b\">]><reginfo");
    let notify = {
        let (head, body) = notify.split_once("\r\n\r\n").unwrap();
        let head = head
            .lines()
            .map(|l| {
                if l.starts_with("Content-Length") {
                    format!("Content-Length: {}", body.len())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        format!("{head}\r\n\r\n{body}")
    };
    let out = t.sip(hop, None, &notify);
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], hop, "400 Bad reginfo");
    assert_eq!(t.core.registered(), 1);
}

/// The P-CSCF's reg-event SUBSCRIBE after a UE's first 200 (TS 24.229 5.2.3): to the UE's
/// default public identity, from and asserting the P-CSCF, towards the first next hop.
fn assert_reg_subscribe(cmd: &WorkerCommand, ue: &Ue, hop: Flow) {
    let (f, sub) = sent(cmd);
    assert_eq!(f, hop);
    assert!(
        sub.starts_with(&format!("SUBSCRIBE {} SIP/2.0\r\n", ue.impu())),
        "{sub}"
    );
    assert_eq!(header(&sub, "Event").as_deref(), Some("reg"));
    assert_eq!(header(&sub, "Expires").as_deref(), Some("600000"));
    assert_eq!(header(&sub, "To"), Some(format!("<{}>", ue.impu())));
    let ours = format!("<sip:{}:{}>", hop.local, hop.local_port);
    assert_eq!(header(&sub, "P-Asserted-Identity"), Some(ours.clone()));
    assert_eq!(header(&sub, "Contact"), Some(ours));
}

/// A proxy-mode core with one UDP next hop, and UE 1 (TCP, protected ports 7000 / 7001).
fn bed_and_ue() -> (Testbed, Ue) {
    let mut t = proxy_bed(&[(HOP0, Some(Transport::Udp))]);
    let ue = Ue::new(&mut t, 0, 7000);
    (t, ue)
}

/// `text` from `ue` through `set`: its port_uc to our port_ps, by the SA at `spi_ps`.
fn through(t: &mut Testbed, ue: &Ue, set: &SaSet, text: &str) -> Vec<WorkerCommand> {
    t.sip(ue.protected_flow(set), Some(set.spi_ps), text)
}

/// The response `c` sends to `flow`, after checking it starts with `status_line`.
fn answer_to(c: &WorkerCommand, flow: Flow, status_line: &str) -> String {
    let (f, r) = sent(c);
    assert_eq!(f, flow, "{r}");
    assert!(r.starts_with(&format!("SIP/2.0 {status_line}\r\n")), "{r}");
    r
}

/// The UE's REGISTER answering `nonce` through `set`, relayed: (hop flow, relayed text).
fn answer_relayed(t: &mut Testbed, ue: &Ue, set: &SaSet, nonce: &str) -> (Flow, String) {
    let out = through(
        t,
        ue,
        set,
        &ue.protected_register(set, nonce, &res1(), None),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    sent(&out[0])
}

/// Runs the core's timers over `by`, in steps of T1 / 2, collecting what they send.
fn advance(t: &mut Testbed, by: Duration) -> Vec<WorkerCommand> {
    let end = t.now + by;
    let mut out = Vec::new();
    while t.now < end {
        t.now = (t.now + Duration::from_millis(250)).min(end);
        out.extend(t.core.handle_timeout(t.now));
    }
    out
}

fn is_remove_of(c: &WorkerCommand, set: &SaSet) -> bool {
    matches!(c, WorkerCommand::RemoveSaSet { ue, spi_pc, spi_ps }
        if *ue == set.ue && *spi_pc == set.spi_pc && *spi_ps == set.spi_ps)
}

#[test]
fn the_vector_is_test_set_1() {
    // TS 35.208 4.3.1 test set 1: AUTN = (SQN xor AK) || AMF || MAC-A.
    let sqn = hex::decode("ff9bb4d0b607").unwrap();
    let ak = hex::decode("aa689c648370").unwrap();
    let mut material = hex::decode(SET1_RAND).unwrap();
    material.extend(sqn.iter().zip(&ak).map(|(s, a)| s ^ a));
    material.extend(hex::decode("b9b9").unwrap());
    material.extend(hex::decode("4a9ffac354dfafb3").unwrap());
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&material),
        NONCE1
    );
    // A set-1 USIM (no SQN window: the test set's SQN is far ahead of a fresh one) accepts
    // it and derives the RES, CK and IK the S-CSCF's 401 carries.
    let mut usim = Usim::new(
        Milenage::new(&hx16(SET1_K), &hx16(SET1_OPC)),
        SqnArray::new(SqnPolicy::new(5).unwrap()),
    );
    let ok = ue_authenticate(&mut usim, NONCE1).expect("USIM accepts AUTN");
    assert_eq!(hex::encode(ok.res.as_bytes()), RES1);
    assert_eq!(hex::encode(ok.ck.as_bytes()), CK1);
    assert_eq!(hex::encode(ok.ik.as_bytes()), IK1);
}

#[test]
fn register_is_relayed_challenged_with_core_keys_and_activated_by_the_200() {
    let mut t = proxy_bed(&[(HOP0, Some(Transport::Udp)), (HOP1, None)]);
    let ue = Ue::new(&mut t, 0, 7000);
    let reg = initial_register(&ue);

    // 1. The unprotected REGISTER goes to next hop 0, marked and stripped.
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (hop, fwd) = sent(&out[0]);
    assert_eq!(hop, core_flow(HOP0, Transport::Udp));
    assert_relayed(&reg, &fwd);
    let branch1 = our_via_branch(&fwd, Transport::Udp);
    let token = path_token(&fwd);
    assert_eq!(
        header(&fwd, "Authorization"),
        Some(format!(
            "Digest username=\"{impi}\", realm=\"{REALM}\", nonce=\"\", uri=\"sip:{REALM}\", response=\"\", integrity-protected=\"no\"",
            impi = ue.impi()
        ))
    );
    assert_eq!(t.core.registrations_view(t.now).len(), 0);

    // 2. The S-CSCF's 401 with CK/IK: the SA set from those keys, the 401 to the UE
    // without them and without our Via, with our Security-Server.
    let c401 = scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1));
    let out = t.sip(hop, None, &c401);
    assert_eq!(out.len(), 2, "{out:?}");
    let set = installed(&out[0]);
    assert_eq!((set.ue, set.local), (ue.ip, ue.local));
    assert_eq!(
        (set.spi_pc, set.spi_ps, set.port_pc, set.port_ps),
        (4096, 4097, 5100, 6100)
    );
    assert_eq!(
        (set.spi_uc, set.spi_us, set.port_uc, set.port_us),
        (ue.spi_uc, ue.spi_us, 7000, 7001)
    );
    // TS 33.203 Annex I: hmac-sha-1-96 keys with IK || 32 zero bits, aes-cbc with CK.
    assert_eq!(
        (set.suite.auth, set.suite.encr),
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc)
    );
    assert_eq!(
        hex::encode(&set.suite.keys.integ_key),
        format!("{IK1}00000000")
    );
    assert_eq!(hex::encode(&set.suite.keys.encr_key), CK1);
    let (f, r401) = sent(&out[1]);
    assert_eq!(f, ue.unprotected_flow());
    let server = security_server(4096, 4097);
    assert_eq!(
        r401,
        format!(
            "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/TCP 10.0.1.1:5080;branch=z9hG4bKreg1\r\nFrom: <{impu}>;tag=ue1\r\nTo: <{impu}>;tag=scscf1\r\nCall-ID: reg-{imsi}\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: {www}\r\nSecurity-Server: {server}\r\nContent-Length: 0\r\n\r\n",
            impu = ue.impu(),
            imsi = ue.imsi,
            www = www_value(NONCE1),
        )
    );
    let view = t.core.registrations_view(t.now);
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].sets.len(), 1);
    assert_eq!(view[0].sets[0].state, SaSetState::Pending);
    assert_eq!(view[0].sets[0].set.spi_ps, 4097);
    assert_eq!(t.core.registered(), 0);

    // 3. The protected REGISTER through the new SA: Security-Verify checked and removed,
    // integrity-protected="yes", same Path token, a new branch.
    let ue = ue.with_server(&set);
    assert_eq!(ue.security_server, server);
    let preg = ue.protected_register(&set, NONCE1, &res1(), None);
    assert_eq!(header(&preg, "Security-Verify"), Some(server.clone()));
    let out = through(&mut t, &ue, &set, &preg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (hop2, fwd2) = sent(&out[0]);
    assert_eq!(hop2, hop);
    assert_relayed(&preg, &fwd2);
    assert_ne!(our_via_branch(&fwd2, Transport::Udp), branch1);
    assert_eq!(path_token(&fwd2), token);
    assert_eq!(
        header(&fwd2, "Authorization"),
        Some(format!(
            "{}, integrity-protected=\"yes\"",
            header(&preg, "Authorization").unwrap()
        ))
    );

    // 4. The S-CSCF's 200 (it grants 3600 s of the 600000 asked): relayed without our Via
    // through the SA; the set is active with the core's lifetime and identities.
    let c200 = scscf_ok(&ue, &fwd2, GRANTED);
    let out = t.sip(hop, None, &c200);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_reg_subscribe(&out[1], &ue, hop);
    let (f, r200) = sent(&out[0]);
    assert_eq!(f, ue.protected_flow(&set));
    assert_eq!(r200, without_top_via(&c200));
    assert_eq!(
        headers(&r200, "Via"),
        vec![format!(
            "SIP/2.0/TCP 10.0.1.1:{};branch=z9hG4bKreg2",
            ue.port_uc
        )]
    );
    assert_eq!(t.core.registered(), 1);
    let view = t.core.registrations_view(t.now);
    assert_eq!(view.len(), 1);
    let r = &view[0];
    assert_eq!(r.impi, ue.impi());
    assert_eq!(r.impus, [ue.impu(), "tel:+15550001".to_string()]);
    assert_eq!(
        r.contact,
        Some(format!("sip:{}@10.0.1.1:7001;transport=tcp", ue.imsi).as_str())
    );
    assert_eq!(r.proto, Some(Transport::Tcp));
    assert_eq!(r.expires_in, Some(Duration::from_secs(GRANTED)));
    assert_eq!(r.sets.len(), 1);
    assert_eq!(r.sets[0].state, SaSetState::Active);
    assert_eq!(
        (r.sets[0].set.spi_pc, r.sets[0].set.spi_ps),
        (set.spi_pc, set.spi_ps)
    );
    assert!(t.released().is_empty());
}

#[test]
fn challenge_without_usable_keys_gets_500_and_installs_nothing() {
    let cases = [
        // No ck / ik at all.
        format!("WWW-Authenticate: {}\r\n", www_value(NONCE1)),
        // ik missing.
        format!(
            "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{NONCE1}\", algorithm=AKAv1-MD5, ck=\"{CK1}\", qop=\"auth\"\r\n"
        ),
        // ck too short (30 hex digits).
        www_with_keys(NONCE1, &CK1[..30], IK1),
        // ck not hex.
        www_with_keys(NONCE1, &format!("zz{}", &CK1[2..]), IK1),
    ];
    for www in cases {
        let mut t = proxy_bed(&[(HOP0, Some(Transport::Udp))]);
        let ue = Ue::new(&mut t, 0, 7000);
        let (hop, fwd) = relay_initial(&mut t, &ue);
        let out = t.sip(hop, None, &scscf_answer(&fwd, "401 Unauthorized", &www));
        assert_eq!(out.len(), 1, "{www}: {out:?}");
        let (f, r) = sent(&out[0]);
        assert_eq!(f, ue.unprotected_flow());
        assert!(
            r.starts_with("SIP/2.0 500 Server Internal Error\r\n"),
            "{r}"
        );
        assert_eq!(
            headers(&r, "Via"),
            vec!["SIP/2.0/TCP 10.0.1.1:5080;branch=z9hG4bKreg1".to_string()]
        );
        assert_eq!(header(&r, "Security-Server"), None);
        assert_eq!(header(&r, "WWW-Authenticate"), None);
        assert_eq!(t.core.stats().core_challenges_without_keys, 1, "{www}");
        assert!(t.core.registrations_view(t.now).is_empty(), "{www}");
        // No SPI was allocated, so none to release.
        assert!(t.released().is_empty());
    }
}

#[test]
fn security_verify_mismatch_gets_403_removes_the_pending_set_and_forwards_nothing() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, _) = challenged(&mut t, &ue);
    // Bidding down: the UE echoes ealg=null instead of the aes-cbc we chose.
    let sv = ue.security_server.replace("ealg=aes-cbc", "ealg=null");
    let preg = ue.protected_register(&set, NONCE1, &res1(), Some(&sv));
    let out = through(&mut t, &ue, &set, &preg);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(sends(&out, true).is_empty());
    answer_to(
        &out[0],
        ue.protected_flow(&set),
        "403 Security-Verify mismatch",
    );
    assert!(is_remove_of(&out[1], &set), "{out:?}");
    assert_eq!(t.released(), vec![set.spi_pc, set.spi_ps]);
    assert!(t.core.registrations_view(t.now).is_empty());
    assert_eq!(t.core.registered(), 0);
}

#[test]
fn core_side_sip_from_untrusted_addresses_is_dropped() {
    let (mut t, ue) = bed_and_ue();
    let (hop, fwd) = relay_initial(&mut t, &ue);
    let c401 = scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1));
    // The right answer from the wrong place: nothing happens.
    let stranger = core_flow("10.8.0.5:5060", Transport::Udp);
    assert!(t.sip(stranger, None, &c401).is_empty());
    assert_eq!(t.core.stats().core_untrusted_dropped, 1);
    assert!(t.core.registrations_view(t.now).is_empty());
    assert!(t.released().is_empty());
    // A request from there neither.
    let options = format!(
        "OPTIONS sip:{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP 10.8.0.5:5060;branch=z9hG4bKprobe\r\nMax-Forwards: 70\r\nFrom: <sip:probe@10.8.0.5>;tag=p\r\nTo: <sip:{LOCAL}>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(t.sip(stranger, None, &options).is_empty());
    assert_eq!(t.core.stats().core_untrusted_dropped, 2);
    // The same OPTIONS from a trusted core address is answered (its health check).
    let trusted = core_flow("10.9.1.7:5060", Transport::Udp);
    let out = t.sip(trusted, None, &options.replace("10.8.0.5", "10.9.1.7"));
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], trusted, "200 OK");
    assert_eq!(t.core.stats().core_untrusted_dropped, 2);
    // And the 401 from the next hop itself still completes the challenge.
    let out = t.sip(hop, None, &c401);
    assert_eq!(out.len(), 2, "{out:?}");
    installed(&out[0]);
    assert!(sent(&out[1]).1.starts_with("SIP/2.0 401 Unauthorized\r\n"));
}

#[test]
fn unanswered_next_hop_fails_over_then_the_ue_gets_408() {
    // Next hops without ;transport: UDP for a request this size (RFC 3261 18.1.1).
    let mut t = proxy_bed(&[(HOP0, None), (HOP1, None)]);
    let ue = Ue::new(&mut t, 0, 7000);
    let (hop0, fwd0) = relay_initial(&mut t, &ue);
    assert_eq!(hop0, core_flow(HOP0, Transport::Udp));
    let branch0 = our_via_branch(&fwd0, Transport::Udp);

    // Until hop-timeout, hop 0 gets retransmissions of the same request (timer E); then,
    // long before timer F, the REGISTER goes to hop 1 with a new branch (RFC 3263 4.3).
    let out = advance(&mut t, HOP_TIMEOUT - Duration::from_millis(250));
    assert!(!out.is_empty());
    for c in &out {
        assert_eq!(sent(c), (hop0, fwd0.clone()));
    }
    assert_eq!(t.core.stats().core_failovers, 0);
    let out = advance(&mut t, Duration::from_millis(500));
    let to_hop1: Vec<_> = sends(&out, true)
        .into_iter()
        .filter(|(f, _)| f.ue != hop0.ue)
        .collect();
    assert_eq!(to_hop1.len(), 1, "{out:?}");
    let (hop1, fwd1) = &to_hop1[0];
    assert_eq!(*hop1, core_flow(HOP1, Transport::Udp));
    assert_ne!(our_via_branch(fwd1, Transport::Udp), branch0);
    // The same request otherwise (Path, icid, Authorization ...).
    assert_eq!(without_top_via(fwd1), without_top_via(&fwd0));
    assert!(sends(&out, false).is_empty(), "{out:?}");
    assert_eq!(t.core.stats().core_failovers, 1);
    assert_eq!(t.core.stats().core_hop_timeouts, 1);
    assert_eq!(t.core.stats().core_timeouts, 0);

    // Hop 1 is the last: silent too, it runs to timer F and the UE gets 408 (RFC 3261
    // 16.7 step 6 / 16.8). Hop 0 hears nothing more (its transaction was abandoned), hop 1
    // gets retransmissions.
    let out = advance(&mut t, TIMER_F);
    for (f, text) in sends(&out, true) {
        assert_eq!((f, text), (*hop1, fwd1.clone()));
    }
    let to_ue = sends(&out, false);
    assert_eq!(to_ue.len(), 1, "{out:?}");
    assert_eq!(to_ue[0].0, ue.unprotected_flow());
    assert!(
        to_ue[0].1.starts_with("SIP/2.0 408 Request Timeout\r\n"),
        "{}",
        to_ue[0].1
    );
    assert_eq!(
        headers(&to_ue[0].1, "Via"),
        vec!["SIP/2.0/TCP 10.0.1.1:5080;branch=z9hG4bKreg1".to_string()]
    );
    assert_eq!(t.core.stats().core_failovers, 1);
    assert_eq!(t.core.stats().core_timeouts, 1);
    assert_eq!(t.core.stats().core_hop_timeouts, 1);
    assert_eq!(t.core.stats().transaction_timeouts, 1);
    assert!(t.core.registrations_view(t.now).is_empty());
}

/// A hop that gave no answer is avoided for `hop-holddown-s`: the next UE's REGISTER goes
/// straight to the next hop, and back to the first once the hold-down is over. A hop that
/// answers at all (100 Trying) is not given up on: its transaction runs its course.
#[test]
fn silent_hop_is_held_down_and_a_trying_hop_is_kept() {
    let mut t = proxy_bed(&[(HOP0, None), (HOP1, None)]);
    let ue1 = Ue::new(&mut t, 0, 7000);
    let (hop0, _) = relay_initial(&mut t, &ue1);
    let out = advance(&mut t, HOP_TIMEOUT + Duration::from_millis(250));
    let (hop1, fwd1) = sends(&out, true)
        .into_iter()
        .find(|(f, _)| f.ue != hop0.ue)
        .expect("failed over to hop 1");
    // Hop 1 answers 100 Trying: no failover from it however long the final answer takes.
    let trying = scscf_answer(&fwd1, "100 Trying", "");
    assert!(t.sip(hop1, None, &trying).is_empty());
    let ue2 = Ue::new(&mut t, 1, 7002);
    // Hop 0 is held down: UE 2's REGISTER goes to hop 1 at once.
    let (first, fwd2) = relay_initial(&mut t, &ue2);
    assert_eq!(first, hop1);
    assert!(t
        .sip(hop1, None, &scscf_answer(&fwd2, "100 Trying", ""))
        .is_empty());
    // Hop 1 gives UE 1 its challenge after 10 s (past hop-timeout, inside timer F).
    let out = advance(&mut t, Duration::from_secs(10));
    let hops_used: Vec<Flow> = sends(&out, true).into_iter().map(|(f, _)| f).collect();
    assert!(hops_used.iter().all(|f| *f == hop1), "{hops_used:?}");
    let out = t.sip(
        hop1,
        None,
        &scscf_answer(&fwd1, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(t.core.stats().core_hop_timeouts, 1);
    assert_eq!(t.core.stats().core_failovers, 1);
    // Past the hold-down, a new REGISTER tries hop 0 first again.
    advance(&mut t, Duration::from_secs(30));
    let ue3 = Ue::new(&mut t, 2, 7004);
    assert_eq!(relay_initial(&mut t, &ue3).0, hop0);
}

#[test]
fn connection_failure_to_a_tcp_next_hop_fails_over_at_once() {
    let mut t = proxy_bed(&[(HOP0, Some(Transport::Tcp)), (HOP1, Some(Transport::Tcp))]);
    let ue = Ue::new(&mut t, 0, 7000);
    let out = t.sip(ue.unprotected_flow(), None, &initial_register(&ue));
    assert_eq!(out.len(), 1, "{out:?}");
    // The worker opens the TCP connection to the next hop.
    assert!(sent_connect(&out[0]));
    let (hop0, fwd0) = sent(&out[0]);
    assert_eq!(hop0, core_flow(HOP0, Transport::Tcp));
    our_via_branch(&fwd0, Transport::Tcp);

    let out = t.core.handle(WorkerEvent::ConnectFailed(hop0), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent_connect(&out[0]));
    let (hop1, fwd1) = sent(&out[0]);
    assert_eq!(hop1, core_flow(HOP1, Transport::Tcp));
    our_via_branch(&fwd1, Transport::Tcp);
    assert_eq!(without_top_via(&fwd1), without_top_via(&fwd0));
    assert_eq!(t.core.stats().core_failovers, 1);
    assert_eq!(t.core.stats().transaction_timeouts, 0);

    // The last hop failing too: the UE hears at once, not after timer F.
    let out = t.core.handle(WorkerEvent::ConnectFailed(hop1), t.now);
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], ue.unprotected_flow(), "408 Request Timeout");
    assert_eq!(t.core.stats().core_timeouts, 1);
    // A failure of a flow nothing waits on changes nothing.
    assert!(t
        .core
        .handle(WorkerEvent::ConnectFailed(hop0), t.now)
        .is_empty());
}

#[test]
fn large_register_goes_to_the_core_over_tcp() {
    // RFC 3261 18.1.1: a request within 200 bytes of the path MTU goes over TCP.
    let mut t = proxy_bed(&[(HOP0, None)]);
    let ue = Ue::new(&mut t, 0, 7000);
    let reg = with_line(
        &initial_register(&ue),
        &format!("User-Agent: {}", "x".repeat(1300)),
    );
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (hop, fwd) = sent(&out[0]);
    assert_eq!(hop, core_flow(HOP0, Transport::Tcp));
    our_via_branch(&fwd, Transport::Tcp);
}

#[test]
fn protected_register_unanswered_gets_408_and_drops_the_pending_set() {
    let mut t = proxy_bed(&[(HOP0, Some(Transport::Tcp))]);
    let ue = Ue::new(&mut t, 0, 7000);
    let (ue, set, _) = challenged(&mut t, &ue);
    let out = through(
        &mut t,
        &ue,
        &set,
        &ue.protected_register(&set, NONCE1, &res1(), None),
    );
    assert_eq!(sends(&out, true).len(), 1, "{out:?}");
    let out = advance(&mut t, TIMER_F + Duration::from_millis(250));
    assert_eq!(out.len(), 2, "{out:?}");
    answer_to(&out[0], ue.protected_flow(&set), "408 Request Timeout");
    assert!(is_remove_of(&out[1], &set), "{out:?}");
    assert_eq!(t.released(), vec![set.spi_pc, set.spi_ps]);
    assert!(t.core.registrations_view(t.now).is_empty());
    assert_eq!(t.core.stats().core_timeouts, 1);
}

#[test]
fn deregistration_is_relayed_answered_through_the_sas_then_removes_them() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, hop, sub) = registered_with_sub(&mut t, &ue);
    let dereg = ue.dereg(&set);
    assert_eq!(header(&dereg, "Expires").as_deref(), Some("0"));
    let out = through(&mut t, &ue, &set, &dereg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, fwd) = sent(&out[0]);
    assert_eq!(f, hop);
    assert_relayed(&dereg, &fwd);
    our_via_branch(&fwd, Transport::Udp);
    // No Authorization from the UE: ours names the IMPI and vouches for the SA.
    assert_eq!(
        header(&fwd, "Authorization"),
        Some(format!(
            "Digest username=\"{}\", realm=\"{REALM}\", uri=\"sip:{REALM}\", nonce=\"\", response=\"\", integrity-protected=\"yes\"",
            ue.impi()
        ))
    );
    // Nothing changes before the core answers.
    assert_eq!(t.core.registered(), 1);

    let c200 = scscf_ok(&ue, &fwd, 0);
    let out = t.sip(hop, None, &c200);
    assert_eq!(out.len(), 2, "{out:?}");
    // The 200 leaves through the SAs first, then they go.
    let (f, r) = sent(&out[0]);
    assert_eq!(f, ue.protected_flow(&set));
    assert_eq!(r, without_top_via(&c200));
    assert!(is_remove_of(&out[1], &set), "{out:?}");
    assert_eq!(t.core.registered(), 0);
    assert!(t.core.registrations_view(t.now).is_empty());
    assert_eq!(t.released(), vec![set.spi_pc, set.spi_ps]);

    // The S-CSCF's terminating NOTIFY that follows is accepted (200), not refused as a
    // request for nobody; nothing else happens.
    let last = reg_notify(
        &sub,
        &ue,
        "terminated",
        "event=\"unregistered\"",
        "terminated;reason=noresource",
    );
    let out = t.sip(hop, None, &last);
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], hop, "200 OK");
    assert_eq!(t.core.stats().core_requests_unroutable, 0);
}

#[test]
fn core_403_to_the_protected_register_is_relayed_and_drops_the_pending_set() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, _) = challenged(&mut t, &ue);
    let (hop, fwd) = answer_relayed(&mut t, &ue, &set, NONCE1);
    let c403 = scscf_answer(&fwd, "403 Forbidden", "");
    let out = t.sip(hop, None, &c403);
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, ue.protected_flow(&set));
    assert_eq!(r, without_top_via(&c403));
    assert!(is_remove_of(&out[1], &set), "{out:?}");
    assert_eq!(t.released(), vec![set.spi_pc, set.spi_ps]);
    assert!(t.core.registrations_view(t.now).is_empty());
    assert_eq!(t.core.registered(), 0);
}

#[test]
fn auts_through_the_pending_set_gets_a_new_challenge_and_one_pending_set() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set1, _) = challenged(&mut t, &ue);
    // The USIM rejected SQN: it answers through the pending SAs with AUTS (TS 33.203 6.3).
    let resync = with_line(
        &ue.auts_register(NONCE1, AUTS)
            .replace(":5080;branch=", &format!(":{};branch=", ue.port_uc)),
        &format!("Security-Verify: {}", ue.security_server),
    );
    let out = through(&mut t, &ue, &set1, &resync);
    assert_eq!(out.len(), 1, "{out:?}");
    let (hop, fwd) = sent(&out[0]);
    assert_relayed(&resync, &fwd);
    assert_eq!(
        header(&fwd, "Authorization"),
        Some(format!(
            "{}, integrity-protected=\"yes\"",
            header(&resync, "Authorization").unwrap()
        ))
    );
    assert_eq!(
        param(&header(&fwd, "Authorization").unwrap(), "auts").as_deref(),
        Some(AUTS)
    );

    // The S-CSCF challenges again with a fresh vector: a new set from the new keys, the 401
    // with its Security-Server, then the first pending set goes.
    let c401 = scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE2, CK2, IK2));
    let out = t.sip(hop, None, &c401);
    assert_eq!(out.len(), 3, "{out:?}");
    let set2 = installed(&out[0]);
    assert_eq!((set2.spi_pc, set2.spi_ps), (4098, 4099));
    assert_eq!(
        hex::encode(&set2.suite.keys.integ_key),
        format!("{IK2}00000000")
    );
    assert_eq!(hex::encode(&set2.suite.keys.encr_key), CK2);
    let (f, r401) = sent(&out[1]);
    assert_eq!(f, ue.protected_flow(&set1));
    assert_eq!(header(&r401, "WWW-Authenticate"), Some(www_value(NONCE2)));
    assert_eq!(
        header(&r401, "Security-Server"),
        Some(security_server(4098, 4099))
    );
    assert!(is_remove_of(&out[2], &set1), "{out:?}");
    assert_eq!(t.released(), vec![set1.spi_pc, set1.spi_ps]);
    let view = t.core.registrations_view(t.now);
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].sets.len(), 1);
    assert_eq!(view[0].sets[0].state, SaSetState::Pending);
    assert_eq!(view[0].sets[0].set.spi_ps, set2.spi_ps);

    // The answer through the new set registers the UE.
    let ue = ue.with_server(&set2);
    let (hop, fwd) = answer_relayed(&mut t, &ue, &set2, NONCE2);
    let out = t.sip(hop, None, &scscf_ok(&ue, &fwd, GRANTED));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(sent(&out[0]).0, ue.protected_flow(&set2));
    assert_reg_subscribe(&out[1], &ue, hop);
    assert_eq!(t.core.registered(), 1);
    let view = t.core.registrations_view(t.now);
    assert_eq!(view[0].sets.len(), 1);
    assert_eq!(view[0].sets[0].state, SaSetState::Active);
    assert_eq!(view[0].sets[0].set.spi_ps, set2.spi_ps);
}

#[test]
fn register_through_another_ues_sa_is_refused_and_not_relayed() {
    let (mut t, a) = bed_and_ue();
    let (a, set_a, _) = registered(&mut t, &a);
    // UE B's identity through A's SA (TS 24.229 5.2.6.1: a UE never speaks for another).
    let b = Ue::new(&mut t, 1, 7000).with_server(&set_a);
    let out = through(&mut t, &a, &set_a, &b.dereg(&set_a));
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sends(&out, true).is_empty());
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "));
    assert_eq!(t.core.registered(), 1);
}

#[test]
fn core_401_retransmissions_are_absorbed_and_no_challenge_leaks_keys() {
    let (mut t, ue) = bed_and_ue();
    let (hop, fwd) = relay_initial(&mut t, &ue);
    // Two challenges, both with keys: only the first is used, neither's keys reach the UE.
    let c401 = scscf_answer(
        &fwd,
        "401 Unauthorized",
        &format!(
            "{}{}",
            www_with_keys(NONCE1, CK1, IK1),
            www_with_keys(NONCE2, CK2, IK2)
        ),
    );
    let out = t.sip(hop, None, &c401);
    assert_eq!(out.len(), 2, "{out:?}");
    let set = installed(&out[0]);
    assert_eq!(hex::encode(&set.suite.keys.encr_key), CK1);
    let (_, r401) = sent(&out[1]);
    assert_eq!(header(&r401, "WWW-Authenticate"), Some(www_value(NONCE1)));
    for key in [CK1, IK1, CK2, IK2] {
        assert!(!r401.contains(key), "{r401}");
    }
    assert!(!r401.contains("ck=") && !r401.contains("ik="), "{r401}");
    // The S-CSCF resends its 401 (it saw our REGISTER twice over UDP): the completed client
    // transaction absorbs it (RFC 3261 17.1.2.2), nothing is installed twice.
    assert!(t.sip(hop, None, &c401).is_empty());
    assert_eq!(t.core.registrations_view(t.now)[0].sets.len(), 1);
    assert!(t.released().is_empty());
}

#[test]
fn ue_retransmissions_over_udp_are_absorbed_not_relayed_twice() {
    let mut t = proxy_bed(&[(HOP0, Some(Transport::Udp))]);
    let ue = Ue::new(&mut t, 0, 7000).with_proto(Transport::Udp);
    let reg = initial_register(&ue);
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (hop, fwd) = sent(&out[0]);
    // The UE's retransmission while the core thinks: absorbed (RFC 3261 17.2.2).
    assert!(t.sip(ue.unprotected_flow(), None, &reg).is_empty());
    assert_eq!(t.core.stats().retransmissions_absorbed, 1);
    // The core's 100 Trying stays here (RFC 3261 16.7 step 5).
    assert!(t
        .sip(hop, None, &scscf_answer(&fwd, "100 Trying", ""))
        .is_empty());
    let out = t.sip(
        hop,
        None,
        &scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let (f, r401) = sent(&out[1]);
    assert_eq!(f, ue.unprotected_flow());
    assert_eq!(
        headers(&r401, "Via"),
        vec!["SIP/2.0/UDP 10.0.1.1:5080;branch=z9hG4bKreg1".to_string()]
    );
    // A late retransmission gets the same 401 again, not a new relay or a new set.
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(sent(&out[0]), (f, r401));
    assert_eq!(t.core.stats().retransmissions_absorbed, 2);
}

#[test]
fn stray_and_malformed_core_responses_are_counted_and_dropped() {
    let (mut t, ue) = bed_and_ue();
    let (hop, fwd) = relay_initial(&mut t, &ue);
    let branch = our_via_branch(&fwd, Transport::Udp);
    let stray = scscf_answer(&fwd.replace(&branch, "z9hG4bKnotours"), "200 OK", "");
    assert!(t.sip(hop, None, &stray).is_empty());
    assert_eq!(t.core.stats().stray_responses, 1);
    assert!(t
        .sip(hop, None, "SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n")
        .is_empty());
    assert_eq!(t.core.stats().malformed_responses, 1);
    // The relay still waits for its answer.
    let out = t.sip(
        hop,
        None,
        &scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
}

#[test]
fn ue_headers_meant_for_the_core_are_replaced_not_trusted() {
    let (mut t, ue) = bed_and_ue();
    // An unprotected REGISTER claiming integrity protection, an asserted identity, a route,
    // charging and visited-network values of its own.
    let reg = initial_register(&ue).replace(
        "response=\"\"",
        "response=\"\", integrity-protected=\"yes\"",
    );
    let reg = with_line(
        &reg,
        "P-Asserted-Identity: <sip:boss@ims.mnc001.mcc001.3gppnetwork.org>\r\nP-Preferred-Identity: <sip:boss@ims.mnc001.mcc001.3gppnetwork.org>\r\nRoute: <sip:evil.example;lr>\r\nP-Charging-Vector: icid-value=forged\r\nP-Visited-Network-ID: \"forged.example\"\r\nPath: <sip:evil.example;lr>",
    );
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (_, fwd) = sent(&out[0]);
    assert_relayed(&reg, &fwd);
    let auth = header(&fwd, "Authorization").unwrap();
    assert!(auth.ends_with(", integrity-protected=\"no\""), "{auth}");
    assert_eq!(auth.matches("integrity-protected").count(), 1, "{auth}");
    for h in ["P-Asserted-Identity", "P-Preferred-Identity", "Route"] {
        assert_eq!(header(&fwd, h), None, "{h}");
    }
    assert_eq!(headers(&fwd, "P-Charging-Vector").len(), 1);
    assert_eq!(headers(&fwd, "P-Visited-Network-ID").len(), 1);
    assert!(!fwd.contains("forged"), "{fwd}");
    // Our Path is the topmost: the core's terminating requests reach us first.
    let paths = headers(&fwd, "Path");
    assert!(
        paths[0].starts_with("<sip:r") && paths[0].ends_with(&format!("@{LOCAL};lr>")),
        "{paths:?}"
    );
}

#[test]
fn max_forwards_zero_gets_483_and_nothing_reaches_the_core() {
    let (mut t, ue) = bed_and_ue();
    let reg = initial_register(&ue).replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = t.sip(ue.unprotected_flow(), None, &reg);
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], ue.unprotected_flow(), "483 Too Many Hops");
}

#[test]
fn no_next_hop_gets_503() {
    let mut t = proxy_bed(&[]);
    let ue = Ue::new(&mut t, 0, 7000);
    let out = t.sip(ue.unprotected_flow(), None, &initial_register(&ue));
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], ue.unprotected_flow(), "503 Service Unavailable");
    assert!(t.core.registrations_view(t.now).is_empty());
}

#[test]
fn unanswered_challenge_lapses_with_its_set() {
    let (mut t, ue) = bed_and_ue();
    let (_, set, _) = challenged(&mut t, &ue);
    // TS 24.229 reg-await-auth: the default challenge timeout is 240 s.
    assert!(advance(&mut t, Duration::from_secs(239)).is_empty());
    let out = advance(&mut t, Duration::from_secs(2));
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(is_remove_of(&out[0], &set), "{out:?}");
    assert!(t.core.registrations_view(t.now).is_empty());
    assert_eq!(t.released(), vec![set.spi_pc, set.spi_ps]);
}

#[test]
fn registration_ends_at_the_lifetime_the_core_granted() {
    let (mut t, ue) = bed_and_ue();
    let (_, set, _) = registered(&mut t, &ue);
    // The UE asked for 600000 s; the core granted 3600 s, and that is what counts.
    assert!(advance(&mut t, Duration::from_secs(GRANTED - 1)).is_empty());
    assert_eq!(t.core.registered(), 1);
    let out = advance(&mut t, Duration::from_secs(2));
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(is_remove_of(&out[0], &set), "{out:?}");
    assert_eq!(t.core.registered(), 0);
    assert_eq!(t.released(), vec![set.spi_pc, set.spi_ps]);
}

#[test]
fn reregistration_gets_new_sas_and_keeps_the_old_set() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set1, hop) = registered(&mut t, &ue);
    // A re-registration through the active set with new ports and SPIs (TS 33.203 7.4).
    let ue2 = ue.with_ports(7010);
    let rereg = ue2.refresh(&set1, &ue.security_server);
    let out = through(&mut t, &ue, &set1, &rereg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (_, fwd) = sent(&out[0]);
    assert_relayed(&rereg, &fwd);
    // The UE's own integrity-protected=yes is not what the core sees: ours is.
    let auth = header(&fwd, "Authorization").unwrap();
    assert!(auth.ends_with(", integrity-protected=\"yes\""), "{auth}");
    assert_eq!(auth.matches("integrity-protected").count(), 1, "{auth}");

    // The S-CSCF re-authenticates: a new pending set towards the new ports, the active
    // one untouched, the 401 through the active SAs.
    let out = t.sip(
        hop,
        None,
        &scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE2, CK2, IK2)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let set2 = installed(&out[0]);
    assert_eq!(
        (set2.spi_pc, set2.spi_ps, set2.port_uc, set2.port_us),
        (4098, 4099, 7010, 7011)
    );
    assert_eq!(hex::encode(&set2.suite.keys.encr_key), CK2);
    let (f, r401) = sent(&out[1]);
    assert_eq!(f, ue.protected_flow(&set1));
    assert_eq!(
        header(&r401, "Security-Server"),
        Some(security_server(4098, 4099))
    );
    assert_eq!(t.core.registered(), 1);

    let ue2 = ue2.with_server(&set2);
    let (_, fwd) = answer_relayed(&mut t, &ue2, &set2, NONCE2);
    let out = t.sip(hop, None, &scscf_ok(&ue2, &fwd, GRANTED));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(sent(&out[0]).0, ue2.protected_flow(&set2));
    // The new set is active, the old one kept until the new carries traffic.
    let view = t.core.registrations_view(t.now);
    let states: Vec<_> = view[0]
        .sets
        .iter()
        .map(|s| (s.state, s.set.spi_ps))
        .collect();
    assert_eq!(
        states,
        vec![
            (SaSetState::Active, set2.spi_ps),
            (SaSetState::Old, set1.spi_ps)
        ]
    );
    assert_eq!(
        view[0].contact,
        Some(format!("sip:{}@10.0.1.1:7011;transport=tcp", ue.imsi).as_str())
    );
    assert!(t.released().is_empty());
}

#[test]
fn refresh_with_a_wrong_security_verify_is_refused_and_keeps_the_registration() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, _) = registered(&mut t, &ue);
    let sv = ue.security_server.replace("ealg=aes-cbc", "ealg=null");
    let out = through(&mut t, &ue, &set, &ue.refresh(&set, &sv));
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0])
        .1
        .starts_with("SIP/2.0 403 Security-Verify mismatch\r\n"));
    assert_eq!(t.core.registered(), 1);
    assert!(t.released().is_empty());
}

#[test]
fn ipv6_ue_registers_through_an_ipv4_core_side() {
    let mut t = proxy_bed(&[(HOP0, Some(Transport::Udp))]);
    let ue = Ue::new(&mut t, 0, 7000).with_ip("2001:db8:1::1", "2001:db8::1");
    let (ue, set, hop) = challenged(&mut t, &ue);
    assert_eq!((set.ue, set.local), (ue.ip, ue.local));
    let (f, fwd) = answer_relayed(&mut t, &ue, &set, NONCE1);
    assert_eq!(f, hop);
    our_via_branch(&fwd, Transport::Udp);
    assert_eq!(
        headers(&fwd, "Via")[1],
        "SIP/2.0/TCP [2001:db8:1::1]:7000;branch=z9hG4bKreg2"
    );
    let out = t.sip(hop, None, &scscf_ok(&ue, &fwd, GRANTED));
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(sent(&out[0]).0, ue.protected_flow(&set));
    assert_reg_subscribe(&out[1], &ue, hop);
    assert_eq!(t.core.registered(), 1);
}

#[test]
fn contact_listed_in_an_equivalent_form_still_registers() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, _) = challenged(&mut t, &ue);
    let preg = ue
        .protected_register(&set, NONCE1, &res1(), None)
        .replace(";transport=tcp>", ";transport=tcp;ob>");
    let out = through(&mut t, &ue, &set, &preg);
    let (hop, fwd) = sent(&out[0]);
    // RFC 3261 19.1.4: URI parameters compare in any order.
    let c200 = scscf_answer(
        &fwd,
        "200 OK",
        &format!(
            "Contact: <sip:{}@10.0.1.1:7001;ob;transport=tcp>;expires={GRANTED}\r\nService-Route: {SERVICE_ROUTE}\r\n",
            ue.imsi
        ),
    );
    let out = t.sip(hop, None, &c200);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(sent(&out[0]).0, ue.protected_flow(&set));
    assert_eq!(t.core.registered(), 1);
    let view = t.core.registrations_view(t.now);
    assert_eq!(view[0].expires_in, Some(Duration::from_secs(GRANTED)));
    assert!(t.released().is_empty());
}

#[test]
fn refused_registration_leaves_no_path_token_behind() {
    let (mut t, ue) = bed_and_ue();
    let (hop, fwd) = relay_initial(&mut t, &ue);
    let token = path_token(&fwd);
    let out = t.sip(hop, None, &scscf_answer(&fwd, "403 Forbidden", ""));
    answer_to(&out[0], ue.unprotected_flow(), "403 Forbidden");
    assert!(t.core.registrations_view(t.now).is_empty());
    // A request from the core along that Path finds nobody here (TS 24.229 5.2.7).
    let message = format!(
        "MESSAGE {impu} SIP/2.0\r\nVia: SIP/2.0/UDP {HOP0};branch=z9hG4bKmt1\r\nRoute: <sip:{token}@{LOCAL};lr>\r\nMax-Forwards: 68\r\nFrom: <sip:other@{REALM}>;tag=mt\r\nTo: <{impu}>\r\nCall-ID: mt1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        impu = ue.impu()
    );
    let out = t.sip(hop, None, &message);
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], hop, "404 Not Found");
    assert_eq!(t.core.stats().core_requests_unroutable, 1);
}

/// The E-CSCF of the emergency tests.
const ECSCF: &str = "10.9.0.30:5060";

/// A proxy-mode core with an E-CSCF (and anonymous emergency sessions if `anonymous`).
fn emergency_bed(anonymous: bool) -> Testbed {
    Testbed::with_config(|c| {
        c.upstream = Some(Upstream {
            next_hops: vec![NextHop {
                addr: addr(HOP0),
                transport: Some(Transport::Udp),
            }],
            local: addr(LOCAL),
            trusted: vec![TRUSTED.parse().unwrap()],
            visited_network_id: VISITED.into(),
            emergency_next_hops: vec![NextHop {
                addr: addr(ECSCF),
                transport: Some(Transport::Tcp),
            }],
            emergency_numbers: vec!["112".into()],
            targets: Vec::new(),
            emergency_targets: Vec::new(),
            dns_servers: Vec::new(),
            anonymous_emergency: anonymous,
            hop_timeout: upstream::DEFAULT_HOP_TIMEOUT,
            hop_holddown: upstream::DEFAULT_HOP_HOLDDOWN,
        })
    })
}

/// An initial INVITE to `ruri` from `ue` over `transport` (`via_port` in its Via).
fn emergency_invite(ue: &Ue, ruri: &str, via_port: u16) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{via_port};branch=z9hG4bKsos1\r\nMax-Forwards: 70\r\nRoute: <sip:pcscf.example;lr>\r\nFrom: <{impu}>;tag=sos\r\nTo: <{ruri}>\r\nCall-ID: sos-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:{imsi}@{host}:{via_port};sos>\r\nP-Preferred-Identity: <{impu}>\r\nP-Asserted-Identity: <sip:forged@example.com>\r\nContent-Length: 0\r\n\r\n",
        host = ue.host(),
        impu = ue.impu(),
        imsi = ue.imsi,
    )
}

#[test]
fn emergency_call_of_a_registered_ue_goes_to_the_e_cscf_with_its_identity() {
    let mut t = emergency_bed(false);
    let ue = Ue::new(&mut t, 0, 7000);
    let (ue, set, _) = registered(&mut t, &ue);
    let out = through(
        &mut t,
        &ue,
        &set,
        &emergency_invite(&ue, "urn:service:sos", ue.port_uc),
    );
    let core = sends(&out, true);
    assert_eq!(core.len(), 1, "{out:?}");
    let (f, fwd) = &core[0];
    assert_eq!(*f, core_flow(ECSCF, Transport::Tcp));
    assert!(
        fwd.starts_with("INVITE urn:service:sos SIP/2.0\r\n"),
        "{fwd}"
    );
    // Straight to the E-CSCF (no Service-Route), the identity we assert, not the UE's.
    assert_eq!(header(fwd, "Route"), None);
    assert_eq!(
        header(fwd, "P-Asserted-Identity"),
        Some(format!("<{}>", ue.impu()))
    );
    assert_eq!(header(fwd, "P-Preferred-Identity"), None);
    assert_eq!(t.core.stats().emergency_sessions, 1);
    // A configured emergency number is one too.
    let out = through(
        &mut t,
        &ue,
        &set,
        &emergency_invite(&ue, "tel:112", ue.port_uc)
            .replace("sos-call-1", "sos-call-2")
            .replace("bKsos1", "bKsos2"),
    );
    assert_eq!(sends(&out, true)[0].0, core_flow(ECSCF, Transport::Tcp));
}

#[test]
fn unregistered_emergency_call_is_anonymous_where_allowed_else_380() {
    // Allowed: forwarded from the unprotected port without any identity asserted.
    let mut t = emergency_bed(true);
    let ue = Ue::new(&mut t, 0, 7000);
    let invite = emergency_invite(&ue, "urn:service:sos.ambulance", 5060);
    let out = t.sip(ue.unprotected_flow(), None, &invite);
    let core = sends(&out, true);
    assert_eq!(core.len(), 1, "{out:?}");
    let fwd = &core[0].1;
    assert_eq!(header(fwd, "P-Asserted-Identity"), None);
    assert_eq!(header(fwd, "P-Preferred-Identity"), None);
    assert_eq!(t.core.stats().emergency_sessions, 1);
    // Not allowed: 380 asking for an emergency registration (TS 24.229 5.2.10.3, 7.6).
    let mut t = emergency_bed(false);
    let ue = Ue::new(&mut t, 0, 7000);
    let out = t.sip(ue.unprotected_flow(), None, &invite);
    assert!(sends(&out, true).is_empty(), "{out:?}");
    let r = answer_to(
        out.last().unwrap(),
        ue.unprotected_flow(),
        "380 Alternative Service",
    );
    assert_eq!(
        header(&r, "Content-Type").as_deref(),
        Some("application/3gpp-ims+xml")
    );
    assert!(
        r.contains("<type>emergency</type>")
            && r.contains("<action>emergency-registration</action>")
    );
    assert_eq!(t.core.stats().emergency_refused, 1);
}

#[test]
fn emergency_call_without_an_e_cscf_gets_380_not_404() {
    let mut t = Testbed::new();
    let ue = Ue::new(&mut t, 0, 7000);
    let out = t.sip(
        ue.unprotected_flow(),
        None,
        &emergency_invite(&ue, "urn:service:sos", 5060),
    );
    let r = answer_to(
        out.last().unwrap(),
        ue.unprotected_flow(),
        "380 Alternative Service",
    );
    assert!(r.contains("<type>emergency</type>") && !r.contains("<action>"));
}

#[test]
fn terminated_notify_overtaking_the_deregistration_200_leaves_the_200_its_sas() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, hop, sub) = registered_with_sub(&mut t, &ue);
    let dereg = ue.dereg(&set);
    let out = through(&mut t, &ue, &set, &dereg);
    let fwd = sent(&out[0]).1;
    // The S-CSCF's terminated NOTIFY arrives before its 200 (another connection).
    let notify = reg_notify(
        &sub,
        &ue,
        "terminated",
        "event=\"unregistered\"",
        "terminated;reason=noresource",
    );
    let out = t.sip(hop, None, &notify);
    assert_eq!(out.len(), 1, "only the 200 to the NOTIFY: {out:?}");
    answer_to(&out[0], hop, "200 OK");
    assert_eq!(t.core.registered(), 1);
    assert_eq!(t.core.stats().core_deregistrations, 0);
    // The 200 still leaves through the SAs, then they go.
    let out = t.sip(hop, None, &scscf_ok(&ue, &fwd, 0));
    assert_eq!(sent(&out[0]).0, ue.protected_flow(&set));
    assert!(is_remove_of(&out[1], &set), "{out:?}");
    assert_eq!(t.core.registered(), 0);
}

#[test]
fn in_dialog_request_keeps_the_route_entries_below_ours() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, hop) = registered(&mut t, &ue);
    // A dialog between two UEs of this P-CSCF through the core: the caller's route set is
    // our access side, our core side, the S-CSCF, then the callee's side of us again.
    let access = format!("<sip:{}:{};lr>", set.local, set.port_ps);
    let core = format!("<sip:{LOCAL};lr>");
    let scscf = "<sip:orig@10.9.0.10:6060;lr>".to_string();
    let callee_access = format!("<sip:{}:{};lr>", set.local, set.port_ps);
    let bye = format!(
        "BYE sip:callee@10.0.1.99:7001 SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{port};branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\nRoute: {access}, {core}, {scscf}, {core}, {callee_access}\r\nFrom: <{impu}>;tag=a\r\nTo: <sip:callee@ims.example>;tag=b\r\nCall-ID: dlg-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        host = ue.host(),
        port = ue.port_uc,
        impu = ue.impu(),
    );
    let out = through(&mut t, &ue, &set, &bye);
    let core_side = sends(&out, true);
    assert_eq!(core_side.len(), 1, "{out:?}");
    let fwd = &core_side[0].1;
    assert_eq!(
        headers(fwd, "Route").join(", "),
        format!("{scscf}, {core}, {callee_access}")
    );
    let _ = hop;
}

/// Proxy mode on the TLS port (RFC 3329 2.2): a REGISTER offering `tls` on a TLS connection
/// is relayed; the core's 401 reaches the UE with `Security-Server: tls;q=0.1` and no SAs are
/// installed (the set is bound to the connection); the answer must echo it in
/// `Security-Verify` (403 otherwise, not relayed), and is relayed when it does.
#[test]
fn tls_mechanism_is_agreed_in_proxy_mode() {
    let mut t = proxy_bed_with(&[(HOP0, Some(Transport::Udp))], |c| c.tls_port = Some(5061));
    let ue = Ue::new(&mut t, 0, 7000);
    let flow = Flow {
        local_port: 5061,
        proto: Transport::Tcp,
        ..ue.unprotected_flow()
    };
    let sc = ue.security_client();
    let reg = initial_register(&ue).replace(&sc, &format!("{sc}, tls"));
    let out = t.sip(flow, None, &reg);
    assert_eq!(out.len(), 1, "{out:?}");
    let (hop, fwd) = sent(&out[0]);
    let c401 = scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1));
    let out = t.sip(hop, None, &c401);
    assert_eq!(out.len(), 1, "the 401 only, no InstallSaSet: {out:?}");
    let (to, r401) = sent(&out[0]);
    assert_eq!(to, flow);
    assert_eq!(
        header(&r401, "Security-Server").as_deref(),
        Some("tls;q=0.1")
    );
    // The answer on the same connection: Security-Verify must be what we sent.
    let answer = |verify: &str, branch: &str| {
        reg.replace("branch=z9hG4bKreg1", branch)
            .replace("CSeq: 1 ", "CSeq: 2 ")
            .replace(
                "Content-Length: 0",
                &format!("Security-Verify: {verify}\r\nContent-Length: 0"),
            )
    };
    let out = t.sip(flow, None, &answer("tls;q=0.5", "branch=z9hG4bKreg2"));
    assert_eq!(out.len(), 1, "{out:?}");
    answer_to(&out[0], flow, "403 Security-Verify mismatch");
    // That attempt's set is gone; a new challenge, then the right echo is relayed.
    let out = t.sip(
        flow,
        None,
        &reg.replace("branch=z9hG4bKreg1", "branch=z9hG4bKreg3"),
    );
    let (hop, fwd) = sent(&out[0]);
    let out = t.sip(
        hop,
        None,
        &scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1)),
    );
    assert_eq!(
        header(&sent(&out[0]).1, "Security-Server").as_deref(),
        Some("tls;q=0.1")
    );
    let out = t.sip(flow, None, &answer("tls;q=0.1", "branch=z9hG4bKreg4"));
    assert_eq!(out.len(), 1, "{out:?}");
    let (to, fwd) = sent(&out[0]);
    assert_eq!(to, hop, "relayed to the core: {fwd}");
    assert!(fwd.starts_with("REGISTER "), "{fwd}");
    assert_eq!(header(&fwd, "Security-Verify"), None);
}

/// The SUBSCRIBEs among `out` on the core side.
fn subscribes(out: &[WorkerCommand]) -> Vec<(Flow, String)> {
    sends(out, true)
        .into_iter()
        .filter(|(_, s)| s.starts_with("SUBSCRIBE "))
        .collect()
}

/// TS 24.229 5.2.3: the P-CSCF refreshes its reg-event subscription before it runs out — at
/// half of a lifetime of 1200 s or less (600 s before the end of a longer one) — inside the
/// dialog the 2xx created (RFC 3261 12.2.1.1: the remote target as Request-URI, the
/// Record-Route reversed as Route, both tags, the next CSeq), again after each 2xx; a refresh
/// the notifier no longer knows (481) starts a new subscription.
#[test]
fn reg_event_subscription_is_refreshed_in_its_dialog_before_it_expires() {
    let (mut t, ue) = bed_and_ue();
    let (ue, set, _) = challenged(&mut t, &ue);
    let (hop, fwd) = answer_relayed(&mut t, &ue, &set, NONCE1);
    let out = t.sip(hop, None, &scscf_ok(&ue, &fwd, GRANTED));
    assert_eq!(out.len(), 2, "{out:?}");
    let sub = sent(&out[1]).1;
    let target = "sip:scscf1@10.9.0.20:6060;transport=udp";
    let ok = scscf_answer(
        &sub,
        "200 OK",
        &format!(
            "Expires: 1000\r\nContact: <{target}>\r\nRecord-Route: <sip:10.9.0.21:5060;lr>\r\nRecord-Route: <sip:icscf@{HOP0};lr>\r\n"
        ),
    );
    assert!(t.sip(hop, None, &ok).is_empty());

    let mut previous = sub.clone();
    for cseq in [2, 3] {
        assert!(subscribes(&advance(&mut t, Duration::from_secs(499))).is_empty());
        let refreshes = subscribes(&advance(&mut t, Duration::from_millis(1500)));
        // One refresh (and its UDP retransmission, RFC 3261 17.1.2.2).
        assert!(!refreshes.is_empty());
        assert!(
            refreshes.iter().all(|r| *r == refreshes[0]),
            "{refreshes:?}"
        );
        let (flow, refresh) = &refreshes[0];
        // The first Route entry is the next hop (HOP0, a UDP hop).
        assert_eq!(*flow, hop);
        assert!(
            refresh.starts_with(&format!("SUBSCRIBE {target} SIP/2.0\r\n")),
            "{refresh}"
        );
        assert_eq!(
            headers(refresh, "Route"),
            vec![
                format!("<sip:icscf@{HOP0};lr>"),
                "<sip:10.9.0.21:5060;lr>".to_string()
            ]
        );
        for h in ["Call-ID", "From", "Event", "Expires"] {
            assert_eq!(header(refresh, h), header(&sub, h), "{h}");
        }
        assert_eq!(
            header(refresh, "To"),
            Some(format!("<{}>;tag=scscf1", ue.impu()))
        );
        assert_eq!(header(refresh, "CSeq"), Some(format!("{cseq} SUBSCRIBE")));
        assert_ne!(header(refresh, "Via"), header(&previous, "Via"));
        previous = refresh.clone();
        if cseq == 2 {
            let ok = scscf_answer(refresh, "200 OK", "Expires: 1000\r\n");
            assert!(t.sip(hop, None, &ok).is_empty());
        }
    }
    assert_eq!(t.core.stats().core_reg_subscribe_refreshes, 2);

    // The S-CSCF lost the dialog: a new initial subscription, out of any dialog.
    let gone = scscf_answer(&previous, "481 Subscription Does Not Exist", "");
    let again = subscribes(&t.sip(hop, None, &gone));
    assert_eq!(again.len(), 1, "{again:?}");
    let (f, fresh) = &again[0];
    assert_eq!(*f, hop);
    assert!(
        fresh.starts_with(&format!("SUBSCRIBE {} SIP/2.0\r\n", ue.impu())),
        "{fresh}"
    );
    assert_eq!(header(fresh, "CSeq").as_deref(), Some("1 SUBSCRIBE"));
    assert_eq!(header(fresh, "To"), Some(format!("<{}>", ue.impu())));
    assert!(headers(fresh, "Route").is_empty());
    assert_eq!(t.core.stats().core_reg_subscribe_failures, 1);
}

/// RFC 3261 18.2.1 / RFC 3581 4 in proxy mode: the UE's Via below ours in the relayed
/// REGISTER carries `received` and `rport`, and so does the S-CSCF's 401 relayed back to
/// the UE (it copies the Vias it got).
#[test]
fn rport_register_is_relayed_with_received_and_rport_below_our_via() {
    let (mut t, mut ue) = bed_and_ue();
    ue.rport = true;
    let (hop, fwd) = relay_initial(&mut t, &ue);
    let flow = ue.unprotected_flow();
    let noted = format!(
        "SIP/2.0/TCP 10.0.1.1:{p};branch=z9hG4bKreg1;received=10.0.1.1;rport={p}",
        p = flow.ue_port
    );
    let vias = headers(&fwd, "Via");
    assert_eq!(vias.len(), 2, "{fwd}");
    our_via_branch(&fwd, Transport::Udp);
    assert_eq!(vias[1], noted);
    let out = t.sip(
        hop,
        None,
        &scscf_answer(&fwd, "401 Unauthorized", &www_with_keys(NONCE1, CK1, IK1)),
    );
    let r401 = answer_to(&out[1], flow, "401 Unauthorized");
    assert_eq!(headers(&r401, "Via"), [noted]);
}
