//! Scenarios shared by the inline-gateway and the daemon end-to-end tests.

use akagate_bench::ue::UeEvent;
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;

use super::checks::{
    assert_ue_clean, check_call_events, check_challenge, check_offer, last_dialog_requests,
};
use super::*;

pub fn pairs() -> Vec<(AuthAlg, EncrAlg)> {
    vec![
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        (AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc),
        (AuthAlg::HmacSha1_96, EncrAlg::Null),
        (AuthAlg::HmacMd5_96, EncrAlg::AesCbc),
        (AuthAlg::HmacMd5_96, EncrAlg::DesEde3Cbc),
        (AuthAlg::HmacMd5_96, EncrAlg::Null),
        (AuthAlg::HmacSha1_96, EncrAlg::AesGcm),
        (AuthAlg::AesGmac, EncrAlg::Null),
    ]
}

/// Registers one UE and checks the exchange on the wire.
pub fn register_and_check(mk: fn() -> Bed, v6: bool, proto: Transport, pair: (AuthAlg, EncrAlg)) {
    let what = format!("v6={v6} {proto:?} {}/{}", pair.0.token(), pair.1.token());
    let mut bed = mk();
    bed.fleet.enable_capture();
    let u = bed.add_ue(0, v6, proto, pair, 0);
    bed.register(u);
    assert_eq!(bed.registered(), 1, "{what}");
    let cfg = bed.ue(u).config().clone();
    let pk = packets(&bed);

    // 1. The initial REGISTER goes in clear to 5060 and offers exactly our pair.
    let first = pk
        .iter()
        .find(|p| p.from_ue && !p.data.is_empty())
        .expect("a first SIP packet");
    assert_eq!(
        first.proto,
        if proto == Transport::Tcp { 6 } else { 17 },
        "{what}"
    );
    assert_eq!(first.ports.unwrap().1, 5060, "{what}");
    let text = String::from_utf8_lossy(&first.data).to_string();
    check_offer(&text, pair, &what);
    assert_eq!(
        header_value(&text, "Proxy-Require").as_deref(),
        Some("sec-agree")
    );

    // 2. The 401 comes back in clear from 5060 with the P-CSCF's choice.
    let clear_down: String = pk
        .iter()
        .filter(|p| !p.from_ue && p.ports.is_some_and(|(s, _)| s == 5060))
        .map(|p| String::from_utf8_lossy(&p.data).to_string())
        .collect();
    let (ss, spi_ps) = check_challenge(&clear_down, pair, (PORT_PC, PORT_PS), &what);

    // 3. Nothing in clear ever reaches or leaves a protected port; after the 401 every UE
    //    packet to the P-CSCF is ESP under spi_ps, every one back under spi_uc.
    for p in &pk {
        if let Some((s, d)) = p.ports {
            for port in [s, d] {
                assert!(
                    ![6100, 5100, cfg.sec.port_uc, cfg.sec.port_us].contains(&port),
                    "{what}: clear packet on protected port {port}"
                );
            }
        }
        if let Some(spi) = p.spi {
            let want = if p.from_ue { spi_ps } else { cfg.sec.spi_uc };
            assert_eq!(spi, want, "{what}: ESP with the wrong SPI");
        }
    }
    let esp_up = pk.iter().filter(|p| p.from_ue && p.spi.is_some()).count();
    let esp_down = pk.iter().filter(|p| !p.from_ue && p.spi.is_some()).count();
    let (min_up, min_down) = if proto == Transport::Tcp {
        (2, 2)
    } else {
        (1, 1)
    };
    assert!(
        esp_up >= min_up && esp_down >= min_down,
        "{what}: {esp_up}/{esp_down}"
    );
    // With null encryption the protected REGISTER is readable: it echoes Security-Server.
    if pair.1 == EncrAlg::Null && pair.0 != AuthAlg::AesGmac {
        let reg2 = pk
            .iter()
            .filter(|p| p.from_ue && p.spi.is_some())
            .filter_map(|p| esp_null_inner(p))
            .map(|(_, inner)| String::from_utf8_lossy(inner).to_string())
            .find(|t| t.contains("REGISTER sip:"))
            .expect("protected REGISTER visible under null encryption");
        let sv = header_value(&reg2[reg2.find("REGISTER").unwrap()..], "Security-Verify");
        assert_eq!(sv.as_deref(), Some(ss.as_str()), "{what}");
        assert!(reg2.contains("response=\""), "{what}");
    }
    assert_eq!(bed.ue(u).counters().drop_clear_to_protected, 0);
    assert_eq!(bed.ue(u).counters().drop_esp, 0, "{what}");
    assert_eq!(bed.counter("drop_esp_invalid"), 0, "{what}");
    assert_eq!(bed.counter("drop_clear_to_protected"), 0, "{what}");
}

/// Places one call from `a` to `b` and checks both sides' events and the callee's flows.
/// `invite_proto` / `proto`: the transport the P-CSCF must use towards the callee for the
/// INVITE (`None`: either, a UDP INVITE near the 1200-byte limit of RFC 3261 18.1.1 may go
/// either way) and for ACK/BYE. Returns the INVITE's transport.
pub fn one_call(
    bed: &mut Bed,
    a: usize,
    b: usize,
    round: u64,
    invite_proto: Option<Transport>,
    proto: Transport,
) -> Transport {
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
    check_call_events(&bed.events[a][ea..], &bed.events[b][eb..], &call_id);
    // INVITE, ACK and BYE reached the callee from the P-CSCF's port_pc through the callee's
    // spi_us, on the registered transport (TCP for a request over 1300 bytes).
    let cfg = bed.ue(b).config().clone();
    let last3 = last_dialog_requests(bed.ue(b));
    for (r, m) in last3.iter().zip(["INVITE", "ACK", "BYE"]) {
        assert_eq!(r.flow.ue_port, PORT_PC, "{m} not from port_pc");
        assert_eq!(r.flow.local_port, cfg.sec.port_us);
        // Near the limit a request may legitimately switch to TCP (RFC 3261 18.1.1), so with
        // no INVITE expectation any transport is accepted; the ports and SPI are not negotiable.
        let want = match invite_proto {
            None => r.flow.proto,
            Some(p) if m == "INVITE" => p,
            Some(_) => proto,
        };
        assert_eq!(r.flow.proto, want, "{m}");
        assert_eq!(r.via_spi, Some(cfg.sec.spi_us));
    }
    last3[0].flow.proto
}

/// Wire checks: the P-CSCF never opened a clear connection, never sent a clear SYN, and
/// every packet between it and the UEs' protected ports was ESP.
pub fn check_wire(bed: &Bed) {
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

pub fn scenario(
    mk: fn() -> Bed,
    v6: bool,
    proto: Transport,
    pair: (AuthAlg, EncrAlg),
    invite_size: usize,
) -> Bed {
    let mut bed = mk();
    bed.fleet.enable_capture();
    let a = bed.add_ue(0, v6, proto, pair, 0);
    let b = bed.add_ue(1, v6, proto, pair, 0);
    bed.ue_mut(a).config_mut().invite_size = invite_size;
    bed.register(a);
    bed.register(b);
    assert_eq!(bed.registered(), 2);

    let invite_proto = (proto == Transport::Tcp || invite_size > 1300).then_some(Transport::Tcp);
    let used = one_call(&mut bed, a, b, 1, invite_proto, proto);
    let tcp_conns = u64::from(used == Transport::Tcp);
    assert_eq!(bed.ue(b).accepted_connections(), tcp_conns);

    // The callee closes the P-CSCF's connection; the next call must reopen it from port_pc.
    bed.ue_mut(b).close_server_connections();
    bed.pump(200);
    let again = one_call(&mut bed, a, b, 2, invite_proto, proto);
    assert_eq!(again, used);
    assert_eq!(bed.ue(b).accepted_connections(), 2 * tcp_conns);
    check_wire(&bed);
    for u in [a, b] {
        assert_ue_clean(bed.ue(u));
    }
    bed
}

/// The 1500-byte IPv6 INVITE over UDP registrations: TCP for the INVITE on both legs.
pub fn large_invite_over_udp(mk: fn() -> Bed) {
    // Null encryption so the wire shows which transport carried each request.
    let bed = scenario(
        mk,
        true,
        Transport::Udp,
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
