//! End to end over the in-memory pair: a simulated UE registers exactly as in TS 33.203
//! 6.1/7.1: unprotected REGISTER to 5060, 401 with Security-Server, protected connection
//! port_uc -> port_ps, REGISTER with Security-Verify, 200 — over IPv4 and IPv6, TCP and UDP,
//! for every algorithm pair; and an SQN resynchronisation with AUTS. The wire is checked
//! with smoltcp's packet views, independently of the UE and the gateway.

mod common;

use akagate_bench::ue::{TxKind, UeEvent};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use common::checks::assert_zero;
use common::scenarios::*;
use common::*;

#[test]
fn register_tcp_ipv4_every_pair() {
    for p in pairs() {
        register_and_check(Bed::new, false, Transport::Tcp, p);
    }
}

#[test]
fn register_tcp_ipv6_every_pair() {
    for p in pairs() {
        register_and_check(Bed::new, true, Transport::Tcp, p);
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
            register_and_check(Bed::new, v6, Transport::Udp, p);
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
        Transport::Tcp,
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
    assert_eq!(bed.registered(), 1);
    // The USIM counted the stale challenge (what a reused SQN would look like).
    assert_eq!(bed.ue(u).counters().sqn_stale, 1);
}

#[test]
fn deregistration_removes_the_binding() {
    deregistration(Bed::new);
}

/// Issue 10: de-registration through the daemon with two slowpath shards (subscriber 2's
/// shard answers, the registration gauge summed over the shards drops to 0).
#[test]
fn daemon_two_shards_deregistration_removes_the_binding() {
    deregistration(Bed::daemon_two_shards);
}

fn deregistration(mk: fn() -> Bed) {
    let mut bed = mk();
    let u = bed.add_ue(
        2,
        true,
        Transport::Tcp,
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
    assert_eq!(bed.registered(), 0);
    // TS 33.203 7.4/7.5: the UE ACKs the 200 through the SAs, then drops them and its
    // protected connections without a segment; the P-CSCF's drain ends on that ACK and its
    // connection goes silently. Well past the drain limit and smoltcp's retransmission
    // timeouts, nothing was sent through a missing SA on either side.
    bed.pump(5_000);
    assert_zero(
        |name| bed.counter(name),
        &[
            "drop_esp_unknown_spi",
            "drop_egress_no_sa",
            "drop_esp_invalid",
            "drop_clear_to_protected",
            "sa_drain_timeouts",
        ],
    );
    assert_eq!(bed.counter("sa_sets_drained"), 1);
    assert_eq!(bed.counter("sa_conns_discarded"), 1);
    assert_eq!(
        bed.counter("ues_freed"),
        1,
        "the P-CSCF freed the UE's stack"
    );
    let c = bed.ue(u).counters();
    assert_eq!((c.drop_esp, c.drop_no_sa, c.drop_sip), (0, 0, 0), "{c:?}");
    assert!(bed.ue(u).sa_set().is_none());
}
