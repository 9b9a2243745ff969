//! The same end-to-end scenarios against the real daemon (`Daemon::start`, memory backend,
//! its own worker and slowpath threads) instead of the inline gateway: registration over TCP
//! and UDP, IPv4 and IPv6, calls with the port_pc reconnect, the 1500-byte IPv6 INVITE.

mod common;

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use common::scenarios::*;
use common::*;

#[test]
fn daemon_register_every_pair_tcp_ipv4_and_ipv6() {
    for v6 in [false, true] {
        for p in pairs() {
            register_and_check(Bed::daemon, v6, Transport::Tcp, p);
        }
    }
}

#[test]
fn daemon_register_udp() {
    for v6 in [false, true] {
        register_and_check(
            Bed::daemon,
            v6,
            Transport::Udp,
            (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        );
    }
}

#[test]
fn daemon_calls_over_tcp_ipv4_and_ipv6() {
    scenario(
        Bed::daemon,
        false,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        0,
    );
    scenario(
        Bed::daemon,
        true,
        Transport::Tcp,
        (AuthAlg::HmacMd5_96, EncrAlg::AesGcm),
        0,
    );
}

#[test]
fn daemon_calls_over_udp_ipv4() {
    scenario(
        Bed::daemon,
        false,
        Transport::Udp,
        (AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc),
        0,
    );
}

#[test]
fn daemon_calls_over_udp_ipv6_with_a_1500_byte_invite_forced_onto_tcp() {
    large_invite_over_udp(Bed::daemon);
}

/// Issue 10: two slowpath shards. Subscribers 0 and 1 of the fixture hash to different
/// shards, so the call is placed by the caller's shard towards a UE the other shard
/// registered (through the location directory), and the callee's answers come back to the
/// caller's shard by the tag in our Via branch; then the other way round.
#[test]
fn daemon_two_shards_calls_across_shards_both_ways() {
    let mut bed = scenario(
        Bed::daemon_two_shards,
        false,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        0,
    );
    // The other way: UE 1's shard owns this call.
    let used = one_call(&mut bed, 1, 0, 3, Some(Transport::Tcp), Transport::Tcp);
    assert_eq!(used, Transport::Tcp);
    // Both shards served SIP (the sums are the daemon's counters).
    assert_eq!(bed.registered(), 2);
}

/// Two shards over UDP and IPv6: the callee's answers come back by our Via branch alone.
#[test]
fn daemon_two_shards_calls_over_udp_ipv6() {
    scenario(
        Bed::daemon_two_shards,
        true,
        Transport::Udp,
        (AuthAlg::HmacSha1_96, EncrAlg::Null),
        0,
    );
}
