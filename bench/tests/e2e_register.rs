//! End to end over the in-memory pair: a simulated UE registers exactly as in TS 33.203
//! 6.1/7.1: unprotected REGISTER to 5060, 401 with Security-Server, protected connection
//! port_uc -> port_ps, REGISTER with Security-Verify, 200 — over IPv4 and IPv6, TCP and UDP,
//! for every algorithm pair; and an SQN resynchronisation with AUTS. The wire is checked
//! with smoltcp's packet views, independently of the UE and the gateway.

mod common;

use akagate_bench::ue::{TxKind, UeEvent};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Proto;
use common::*;

fn pairs() -> Vec<(AuthAlg, EncrAlg)> {
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
fn register_and_check(v6: bool, proto: Proto, pair: (AuthAlg, EncrAlg)) {
    let what = format!("v6={v6} {proto:?} {}/{}", pair.0.token(), pair.1.token());
    let mut bed = Bed::new();
    bed.fleet.enable_capture();
    let u = bed.add_ue(0, v6, proto, pair, 0);
    bed.register(u);
    assert_eq!(bed.gw.core().registered(), 1, "{what}");
    let cfg = bed.ue(u).config().clone();
    let pk = packets(&bed);

    // 1. The initial REGISTER goes in clear to 5060 and offers exactly our pair.
    let first = pk
        .iter()
        .find(|p| p.from_ue && !p.data.is_empty())
        .expect("a first SIP packet");
    assert_eq!(
        first.proto,
        if proto == Proto::Tcp { 6 } else { 17 },
        "{what}"
    );
    assert_eq!(first.ports.unwrap().1, 5060, "{what}");
    let text = String::from_utf8_lossy(&first.data).to_string();
    assert!(text.starts_with("REGISTER sip:"), "{what}");
    let sc = header_value(&text, "Security-Client").unwrap();
    assert_eq!(param(&sc, "alg").as_deref(), Some(pair.0.token()), "{what}");
    assert_eq!(
        param(&sc, "ealg").as_deref(),
        Some(pair.1.token()),
        "{what}"
    );
    assert_eq!(header_value(&text, "Require").as_deref(), Some("sec-agree"));
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
    assert!(
        clear_down.starts_with("SIP/2.0 401 Unauthorized\r\n"),
        "{what}: {clear_down}"
    );
    let ss = header_value(&clear_down, "Security-Server").unwrap();
    assert_eq!(param(&ss, "alg").as_deref(), Some(pair.0.token()), "{what}");
    assert_eq!(
        param(&ss, "ealg").as_deref(),
        Some(pair.1.token()),
        "{what}"
    );
    assert_eq!(param(&ss, "port-s").as_deref(), Some("6100"));
    assert_eq!(param(&ss, "port-c").as_deref(), Some("5100"));
    let spi_ps: u32 = param(&ss, "spi-s").unwrap().parse().unwrap();
    let www = header_value(&clear_down, "WWW-Authenticate").unwrap();
    assert!(www.contains("algorithm=AKAv1-MD5"), "{what}: {www}");

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
    let (min_up, min_down) = if proto == Proto::Tcp { (2, 2) } else { (1, 1) };
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

#[test]
fn register_tcp_ipv4_every_pair() {
    for p in pairs() {
        register_and_check(false, Proto::Tcp, p);
    }
}

#[test]
fn register_tcp_ipv6_every_pair() {
    for p in pairs() {
        register_and_check(true, Proto::Tcp, p);
    }
}

#[test]
fn register_udp_ipv4_and_ipv6() {
    for v6 in [false, true] {
        for p in [
            (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
            (AuthAlg::HmacSha1_96, EncrAlg::Null),
            (AuthAlg::HmacMd5_96, EncrAlg::DesEde3Cbc),
        ] {
            register_and_check(v6, Proto::Udp, p);
        }
    }
}

#[test]
fn sqn_failure_is_resynchronised_with_auts() {
    let mut bed = Bed::new();
    // The USIM has seen SEQ 1000 already; the HSS starts far below, so the first AUTN fails
    // the freshness check (TS 33.102 C.2.2) and the UE answers with AUTS.
    let u = bed.add_ue(
        1,
        false,
        Proto::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        1000,
    );
    bed.register(u);
    let challenges: Vec<_> = bed.events[u]
        .iter()
        .filter(|e| {
            matches!(
                e,
                UeEvent::Transaction {
                    kind: TxKind::RegisterChallenge,
                    code: 401,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(challenges.len(), 2, "{:?}", bed.events[u]);
    assert_eq!(bed.gw.core().registered(), 1);
}

#[test]
fn deregistration_removes_the_binding() {
    let mut bed = Bed::new();
    let u = bed.add_ue(
        2,
        true,
        Proto::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        0,
    );
    bed.register(u);
    let now = bed.now;
    bed.ue_mut(u).deregister(now).unwrap();
    let done = bed.until(u, 2_000, |e| *e == UeEvent::Deregistered);
    assert!(
        done,
        "{:?} no_sa={}",
        bed.events[u],
        bed.counter("drop_egress_no_sa")
    );
    assert_eq!(bed.gw.core().registered(), 0);
}
