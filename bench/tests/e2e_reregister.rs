//! Re-registration before expiry (TS 24.229 5.1.1.4, TS 33.203 7.4) and the clean end of a
//! registration (TS 33.203 7.5), end to end through the in-process gateway (virtual clock)
//! and the real daemon: two UEs register, each re-registers twice over its SAs with a new
//! Security-Client (new SPIs, new ports), then a call must reach the callee from the
//! P-CSCF's port_pc on the callee's *new* port_us through its *new* spi_us; the P-CSCF holds
//! only the current set of each UE (the old SPIs are gone), and after de-registration nothing
//! is left and nothing was dropped for want of an SA on either side.

mod common;

use akagate_bench::ue::{TxKind, UeEvent};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use common::scenarios::*;
use common::*;

/// Pumps until `ms` milliseconds passed on the bed's clock (virtual or real).
fn pump_for(bed: &mut Bed, ms: i64) {
    let until = bed.now + smoltcp::time::Duration::from_millis(ms as u64);
    while bed.now < until {
        bed.pump(1);
    }
}

/// The P-CSCF's inbound SPIs (spi_pc, spi_ps) of the set UE `i` uses now.
fn pcscf_spis(bed: &Bed, i: usize) -> (u32, u32) {
    let p = bed.ue(i).sa_set().expect("an SA set").params();
    (p.spi_pc, p.spi_ps)
}

/// Inbound SPIs the P-CSCF holds: every set of every registration as its registrar sees it
/// (inline), or the SA table's occupancy (daemon; two SAs per set).
fn pcscf_inbound_spis(bed: &mut Bed) -> Option<Vec<u32>> {
    match &bed.pcscf {
        Pcscf::Inline(gw) => {
            let now = std::time::Instant::now();
            let mut v: Vec<u32> = gw
                .core()
                .registrations_view(now)
                .iter()
                .flat_map(|r| r.sets.iter().flat_map(|s| [s.set.spi_pc, s.set.spi_ps]))
                .collect();
            v.sort_unstable();
            Some(v)
        }
        Pcscf::Daemon { .. } => None,
    }
}

/// SAs installed in the daemon's table (after its stats gauge had time to settle).
fn daemon_installed(bed: &mut Bed) -> Option<(usize, usize)> {
    let _ = bed.registered();
    match &bed.pcscf {
        Pcscf::Daemon { handle, .. } => {
            let s = handle.stats();
            Some((s.sa_installed, s.sa_allocated))
        }
        Pcscf::Inline(_) => None,
    }
}

/// Re-registers UE `i` and checks the exchange: a 401 to the re-REGISTER over the old set,
/// a 200 over the new one, fresh SPIs and ports on both sides.
fn reregister(bed: &mut Bed, i: usize) {
    let before = bed.ue(i).config().sec;
    let old_pcscf = pcscf_spis(bed, i);
    let n = bed.events[i].len();
    let now = bed.now;
    bed.ue_mut(i).reregister(now).unwrap();
    let outcome = |e: &UeEvent| matches!(e, UeEvent::Reregistered | UeEvent::RegistrationFailed(_));
    let mut rounds = 0;
    while !bed.events[i][n..].iter().any(outcome) && rounds < 5_000 {
        bed.pump(1);
        rounds += 1;
    }
    let done = bed.events[i][n..].iter().any(outcome);
    let evs = bed.events[i][n..].to_vec();
    assert!(done, "UE {i}: no re-registration outcome: {evs:?}");
    assert!(evs.contains(&UeEvent::Reregistered), "UE {i}: {evs:?}");
    let codes: Vec<(TxKind, u16)> = evs
        .iter()
        .filter_map(|e| match e {
            UeEvent::Transaction { kind, code, .. } => Some((*kind, *code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (TxKind::RegisterChallenge, 401),
            (TxKind::RegisterProtected, 200),
            (TxKind::Reregistration, 200),
        ],
        "UE {i}"
    );
    let after = bed.ue(i).config().sec;
    // TS 33.203 7.4: new SPIs and new protected ports on the UE's side ...
    for spi in [after.spi_uc, after.spi_us] {
        assert!(![before.spi_uc, before.spi_us].contains(&spi), "UE {i}");
    }
    for port in [after.port_uc, after.port_us] {
        assert!(![before.port_uc, before.port_us].contains(&port), "UE {i}");
    }
    // ... and new inbound SPIs chosen by the P-CSCF (its ports stay 5100/6100).
    let p = *bed.ue(i).sa_set().unwrap().params();
    assert_eq!((p.spi_uc, p.spi_us), (after.spi_uc, after.spi_us));
    assert_eq!((p.port_pc, p.port_ps), (PORT_PC, PORT_PS));
    let new_pcscf = (p.spi_pc, p.spi_ps);
    assert!(new_pcscf.0 != old_pcscf.0 && new_pcscf.1 != old_pcscf.1);
}

/// Drop counters that must stay 0 on the P-CSCF in a run where every UE behaves.
fn assert_no_sa_drops(bed: &Bed, what: &str) {
    for name in [
        "drop_esp_unknown_spi",
        "drop_egress_no_sa",
        "drop_esp_invalid",
        "drop_esp_selector",
        "drop_clear_to_protected",
    ] {
        assert_eq!(bed.counter(name), 0, "{what}: P-CSCF {name}");
    }
    for i in 0..bed.fleet.len() {
        let c = bed.ue(i).counters();
        assert_eq!(
            (
                c.drop_esp,
                c.drop_no_sa,
                c.drop_clear_to_protected,
                c.drop_sip
            ),
            (0, 0, 0, 0),
            "{what}: UE {i} {c:?}"
        );
    }
}

fn reregister_twice_then_call(
    mk: fn() -> Bed,
    v6: bool,
    proto: Transport,
    pair: (AuthAlg, EncrAlg),
) {
    let what = format!("v6={v6} {proto:?} {}/{}", pair.0.token(), pair.1.token());
    let mut bed = mk();
    bed.fleet.enable_capture();
    let a = bed.add_ue(0, v6, proto, pair, 0);
    let b = bed.add_ue(1, v6, proto, pair, 0);
    bed.register(a);
    bed.register(b);
    // A first call opens the P-CSCF's connection to the callee's first port_us.
    let invite_proto = (proto == Transport::Tcp).then_some(Transport::Tcp);
    one_call(&mut bed, a, b, 1, invite_proto, proto);
    let first = [pcscf_spis(&bed, a), pcscf_spis(&bed, b)];
    let first_sec = bed.ue(b).config().sec;

    for _ in 0..2 {
        reregister(&mut bed, a);
        reregister(&mut bed, b);
    }
    assert_eq!(bed.registered(), 2, "{what}");

    // The call reaches the callee on its new port_us through its new spi_us (one_call checks
    // both against the callee's current parameters), from port_pc.
    let accepted = bed.ue(b).accepted_connections();
    one_call(&mut bed, a, b, 2, invite_proto, proto);
    let sec = bed.ue(b).config().sec;
    assert_ne!(sec.port_us, first_sec.port_us);
    let last_invite = bed
        .ue(b)
        .requests_received()
        .filter(|r| r.method == "INVITE")
        .last()
        .unwrap()
        .clone();
    assert_eq!(last_invite.flow.local_port, sec.port_us, "{what}");
    assert_eq!(last_invite.flow.ue_port, PORT_PC, "{what}");
    assert_eq!(last_invite.via_spi, Some(sec.spi_us), "{what}");
    if proto == Transport::Tcp {
        // A new connection to the new port_us: the old one went with its set.
        assert_eq!(bed.ue(b).accepted_connections(), accepted + 1, "{what}");
    }
    // On the wire, everything the P-CSCF sent the callee after its last re-registration went
    // under its current spi_us or spi_uc.
    bed.pump(200);

    // The P-CSCF holds the current set of each UE and nothing else: the call's traffic over
    // the new sets retired the old ones (TS 33.203 7.4).
    let current = [pcscf_spis(&bed, a), pcscf_spis(&bed, b)];
    if let Some(spis) = pcscf_inbound_spis(&mut bed) {
        let mut want: Vec<u32> = current.iter().flat_map(|(pc, ps)| [*pc, *ps]).collect();
        want.sort_unstable();
        assert_eq!(spis, want, "{what}");
        for (pc, ps) in first {
            assert!(!spis.contains(&pc) && !spis.contains(&ps), "{what}");
        }
    }
    if let Some((installed, allocated)) = daemon_installed(&mut bed) {
        assert_eq!(
            (installed, allocated),
            (4, 4),
            "{what}: 2 inbound SAs per UE"
        );
    }
    check_wire(&bed);
    assert_no_sa_drops(&bed, &what);

    // De-registration: the 200 OKs leave through the removed sets, the UEs ACK them and then
    // drop their SAs and connections without a segment; the P-CSCF's drains end on those
    // ACKs, its connections go silently, and nothing is left.
    for u in [a, b] {
        let now = bed.now;
        bed.ue_mut(u).deregister(now).unwrap();
        assert!(
            bed.until(u, 3_000, |e| *e == UeEvent::Deregistered),
            "{what}: {:?}",
            bed.events[u]
        );
    }
    // Past the UEs' teardown grace, the P-CSCF's drain limit and smoltcp's first
    // retransmission timeouts: nothing may be dropped for want of an SA meanwhile.
    pump_for(&mut bed, 4_000);
    assert_eq!(bed.registered(), 0, "{what}");
    assert_no_sa_drops(&bed, &what);
    assert_eq!(
        bed.counter("sa_drain_timeouts"),
        0,
        "{what}: drains end on the ACK"
    );
    if let Some(spis) = pcscf_inbound_spis(&mut bed) {
        assert!(spis.is_empty(), "{what}: {spis:?}");
    }
    if let Some((installed, allocated)) = daemon_installed(&mut bed) {
        assert_eq!((installed, allocated), (0, 0), "{what}");
    }
    for u in [a, b] {
        assert!(bed.ue(u).sa_set().is_none());
    }
}

#[test]
fn reregister_twice_then_call_tcp_ipv4() {
    reregister_twice_then_call(
        Bed::new,
        false,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
    );
}

#[test]
fn reregister_twice_then_call_tcp_ipv6_gcm() {
    reregister_twice_then_call(
        Bed::new,
        true,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesGcm),
    );
}

#[test]
fn reregister_twice_then_call_udp_ipv4() {
    reregister_twice_then_call(
        Bed::new,
        false,
        Transport::Udp,
        (AuthAlg::HmacMd5_96, EncrAlg::DesEde3Cbc),
    );
}

#[test]
fn daemon_reregister_twice_then_call_tcp_ipv4() {
    reregister_twice_then_call(
        Bed::daemon,
        false,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
    );
}

#[test]
fn daemon_reregister_twice_then_call_udp_ipv6() {
    reregister_twice_then_call(
        Bed::daemon,
        true,
        Transport::Udp,
        (AuthAlg::HmacSha1_96, EncrAlg::Null),
    );
}

/// Issue 10: re-registrations with two slowpath shards (the UEs on different shards), then
/// calls across them over the new sets.
#[test]
fn daemon_two_shards_reregister_twice_then_call_tcp_ipv4() {
    reregister_twice_then_call(
        Bed::daemon_two_shards,
        false,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
    );
}

/// The UE re-registers by itself at half the lifetime the 200 OK granted.
#[test]
fn automatic_reregistration_at_half_the_granted_expires() {
    let mut bed = Bed::new();
    let a = bed.add_ue(
        0,
        false,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        0,
    );
    {
        let cfg = bed.ue_mut(a).config_mut();
        cfg.auto_reregister = true;
        cfg.expires = 4;
    }
    bed.register(a);
    let before = bed.ue(a).config().sec;
    // 2 s after the 200 OK (Expires: 4): not yet at 1.9 s, done shortly after 2 s.
    bed.pump(1_900);
    assert!(!bed.events[a].contains(&UeEvent::Reregistered));
    assert!(bed.until(a, 1_000, |e| *e == UeEvent::Reregistered));
    assert_ne!(bed.ue(a).config().sec, before);
    assert_eq!(bed.registered(), 1);
    assert_no_sa_drops(&bed, "auto");
}
