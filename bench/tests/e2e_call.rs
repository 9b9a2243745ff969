//! End to end calls through the in-process P-CSCF: two registered UEs, the first calls the
//! second. The INVITE must reach the callee over a TCP connection the P-CSCF opened from
//! port_pc to the callee's port_us through ESP (TS 33.203 7.1); 180/200/ACK/BYE complete.
//! Then the callee closes that connection and a second call must reopen it from port_pc —
//! never from 5060 in clear. The same with UDP registrations and a 1500-byte IPv6 INVITE that
//! RFC 3261 18.1.1 forces onto TCP.

mod common;

use akagate_bench::ue::UeEvent;
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Proto;
use common::*;

/// Places one call from `a` to `b` and checks both sides' events and the callee's flows.
/// `invite_proto` / `proto`: the transport the P-CSCF must use towards the callee for the
/// INVITE and for ACK/BYE.
fn one_call(bed: &mut Bed, a: usize, b: usize, round: u64, invite_proto: Proto, proto: Proto) {
    let target = bed.ue(b).config().impu.clone();
    let now = bed.now;
    let (ea, eb) = (bed.events[a].len(), bed.events[b].len());
    let call_id = bed.ue_mut(a).call(&target, now).unwrap();
    let done = bed.until(
        a,
        3_000,
        |e| matches!(e, UeEvent::CallEnded(c) | UeEvent::CallFailed(c, _) if *c == call_id),
    );
    bed.pump(20);
    assert!(done, "call {round} did not end: {:?}", &bed.events[a][ea..]);
    let caller: Vec<_> = bed.events[a][ea..]
        .iter()
        .filter(|e| !matches!(e, UeEvent::Transaction { .. }))
        .cloned()
        .collect();
    assert_eq!(
        caller,
        vec![
            UeEvent::CallRinging(call_id.clone()),
            UeEvent::CallAnswered(call_id.clone()),
            UeEvent::CallEnded(call_id.clone()),
        ]
    );
    let callee: Vec<_> = bed.events[b][eb..].to_vec();
    assert_eq!(
        callee,
        vec![
            UeEvent::IncomingCall(call_id.clone()),
            UeEvent::IncomingCallEstablished(call_id.clone()),
            UeEvent::IncomingCallEnded(call_id.clone()),
        ]
    );
    // INVITE, ACK and BYE reached the callee from the P-CSCF's port_pc through the callee's
    // spi_us, on the registered transport (TCP for a request over 1300 bytes).
    let cfg = bed.ue(b).config().clone();
    let reqs: Vec<_> = bed
        .ue(b)
        .requests_received()
        .filter(|r| ["INVITE", "ACK", "BYE"].contains(&r.method.as_str()))
        .cloned()
        .collect();
    let last3 = &reqs[reqs.len() - 3..];
    for (r, m) in last3.iter().zip(["INVITE", "ACK", "BYE"]) {
        assert_eq!(r.method, m);
        assert_eq!(r.flow.ue_port, PORT_PC, "{m} not from port_pc");
        assert_eq!(r.flow.local_port, cfg.sec.port_us);
        let want = if m == "INVITE" { invite_proto } else { proto };
        assert_eq!(r.flow.proto, want, "{m}");
        assert_eq!(r.via_spi, Some(cfg.sec.spi_us));
    }
}

/// Wire checks: the P-CSCF never opened a clear connection, never sent a clear SYN, and
/// every packet between it and the UEs' protected ports was ESP.
fn check_wire(bed: &Bed) {
    for p in packets(bed) {
        if p.syn_only && !p.from_ue {
            panic!("the P-CSCF opened a clear TCP connection: {:?}", p.ports);
        }
        if let Some((s, d)) = p.ports {
            for port in [s, d] {
                assert!(
                    ![PORT_PC, PORT_PS].contains(&port),
                    "clear packet on protected port {port}"
                );
            }
        }
    }
    assert_eq!(bed.counter("drop_esp_invalid"), 0);
    assert_eq!(bed.counter("drop_clear_to_protected"), 0);
    assert_eq!(bed.counter("drop_egress_no_sa"), 0);
}

fn scenario(v6: bool, proto: Proto, pair: (AuthAlg, EncrAlg), invite_size: usize) -> Bed {
    let mut bed = Bed::new();
    bed.fleet.enable_capture();
    let a = bed.add_ue(0, v6, proto, pair, 0);
    let b = bed.add_ue(1, v6, proto, pair, 0);
    bed.ue_mut(a).config_mut().invite_size = invite_size;
    bed.register(a);
    bed.register(b);
    assert_eq!(bed.gw.core().registered(), 2);

    let invite_proto = if proto == Proto::Tcp || invite_size > 1300 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    one_call(&mut bed, a, b, 1, invite_proto, proto);
    let tcp_conns = u64::from(invite_proto == Proto::Tcp);
    assert_eq!(bed.ue(b).accepted_connections(), tcp_conns);

    // The callee closes the P-CSCF's connection; the next call must reopen it from port_pc.
    bed.ue_mut(b).close_server_connections();
    bed.pump(200);
    one_call(&mut bed, a, b, 2, invite_proto, proto);
    assert_eq!(bed.ue(b).accepted_connections(), 2 * tcp_conns);
    check_wire(&bed);
    for u in [a, b] {
        let c = bed.ue(u).counters();
        assert_eq!(
            (c.drop_esp, c.drop_clear_to_protected, c.drop_sip),
            (0, 0, 0)
        );
    }
    bed
}

#[test]
fn calls_over_tcp_ipv4() {
    scenario(
        false,
        Proto::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        0,
    );
}

#[test]
fn calls_over_tcp_ipv6() {
    scenario(
        true,
        Proto::Tcp,
        (AuthAlg::HmacMd5_96, EncrAlg::DesEde3Cbc),
        0,
    );
}

#[test]
fn calls_over_udp_ipv4() {
    scenario(
        false,
        Proto::Udp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesGcm),
        0,
    );
}

#[test]
fn calls_over_udp_ipv6_with_a_1500_byte_invite_forced_onto_tcp() {
    // Null encryption so the wire shows which transport carried each request.
    let bed = scenario(
        true,
        Proto::Udp,
        (AuthAlg::HmacSha1_96, EncrAlg::Null),
        1500,
    );
    let a = bed.ue(0).config().clone();
    let mut invites = 0;
    let mut small_udp = 0;
    for p in packets(&bed).iter().filter(|p| p.from_ue && p.src == a.ip) {
        let Some((nh, inner)) = esp_null_inner(p) else {
            continue;
        };
        let text = String::from_utf8_lossy(inner);
        if text.contains("INVITE sip:") && text.contains("CSeq: 1 INVITE") {
            // RFC 3261 18.1.1: larger than 1300 bytes -> TCP between the same ports.
            assert_eq!(nh, 6, "1500-byte INVITE not on TCP");
            // Its size from its own framing: header section + Content-Length.
            let start = text.find("INVITE sip:").unwrap();
            let head_end = text[start..].find("\r\n\r\n").unwrap() + 4;
            let cl: usize = header_value(&text[start..], "Content-Length")
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(head_end + cl, 1500);
            invites += 1;
        }
        if text.contains("ACK sip:") || text.contains("BYE sip:") {
            assert_eq!(nh, 17, "small requests stay on UDP");
            small_udp += 1;
        }
    }
    assert!(invites >= 2, "{invites}");
    assert!(small_udp >= 4, "{small_udp}");

    // The P-CSCF's leg to the callee: the forwarded INVITE (still over 1300 bytes) on TCP
    // from port_pc, ACK and BYE on UDP from port_pc, all under the callee's spi_us.
    let b = bed.ue(1).config().clone();
    let (mut fwd_invites, mut fwd_small) = (0, 0);
    for p in packets(&bed).iter().filter(|p| !p.from_ue && p.dst == b.ip) {
        let Some((nh, inner)) = esp_null_inner(p) else {
            continue;
        };
        let text = String::from_utf8_lossy(inner);
        let is_invite = text.contains("INVITE sip:") && text.contains("CSeq: 1 INVITE");
        let is_small = text.contains("ACK sip:") || text.contains("BYE sip:");
        if is_invite || is_small {
            assert_eq!(p.spi, Some(b.sec.spi_us));
            assert_eq!(nh, if is_invite { 6 } else { 17 }, "{text}");
            // The inner source port is the P-CSCF's port_pc (TCP and UDP both start with it).
            assert_eq!(u16::from_be_bytes([inner[0], inner[1]]), PORT_PC);
            if is_invite {
                fwd_invites += 1;
            } else {
                fwd_small += 1;
            }
        }
    }
    assert!(
        fwd_invites >= 2 && fwd_small >= 4,
        "{fwd_invites} {fwd_small}"
    );
}
