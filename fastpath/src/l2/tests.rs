//! Link-layer behaviour checked byte for byte against frames built by Scapy.

use super::*;
use crate::wire::ip::{Direction, IpRepr};
use smoltcp::wire::{IpCidr, Ipv4Address, Ipv6Address};

const OUR: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
const PEER: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

fn fx(name: &str) -> Vec<u8> {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/l2/scapy_frames.json")).unwrap();
    hex::decode(v[name].as_str().unwrap()).unwrap()
}

fn l2() -> L2 {
    L2::new(L2Config {
        mac: OUR,
        ipv4: vec![Ipv4Cidr::new(Ipv4Address::new(192, 0, 2, 1), 24)],
        ipv6: vec![Ipv6Cidr::new(
            Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            64,
        )],
        gateway_v4: Some(Ipv4Addr::new(192, 0, 2, 254)),
        gateway_v6: Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe)),
        routes: Vec::new(),
        max_neighbors: 16,
        neighbor_ttl: Duration::from_secs(60),
        solicit_retry: Duration::from_secs(1),
    })
}

fn t(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

#[test]
fn arp_request_for_us_gets_scapy_identical_reply_and_teaches_the_sender() {
    let mut l = l2();
    let mut out = Vec::new();
    assert_eq!(
        l.input(&fx("arp_request"), t(0), &mut out),
        Ok(Input::Handled)
    );
    assert_eq!(out, vec![fx("arp_reply")]);
    assert_eq!(
        l.neighbors()
            .lookup(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254)), t(1)),
        Some(PEER)
    );
    assert_eq!(l.counters().arp_replies, 1);
}

#[test]
fn arp_for_someone_else_is_not_answered() {
    let mut l = l2();
    let mut out = Vec::new();
    assert_eq!(
        l.input(&fx("arp_request_other"), t(0), &mut out),
        Err(L2Drop::NotForUs)
    );
    assert!(out.is_empty());
    // An unknown sender is not added by a packet that is not for us (RFC 826).
    assert!(l.neighbors().is_empty());
}

#[test]
fn neighbor_solicitation_gets_scapy_identical_advertisement() {
    let mut l = l2();
    let mut out = Vec::new();
    assert_eq!(l.input(&fx("ns"), t(0), &mut out), Ok(Input::Handled));
    assert_eq!(out, vec![fx("na")]);
    let gw6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe));
    assert_eq!(l.neighbors().lookup(&gw6, t(1)), Some(PEER));
}

#[test]
fn neighbor_solicitation_with_wrong_hop_limit_is_dropped() {
    let mut l = l2();
    let mut out = Vec::new();
    assert_eq!(
        l.input(&fx("ns_hlim64"), t(0), &mut out),
        Err(L2Drop::Malformed)
    );
    assert!(out.is_empty());
}

#[test]
fn advertisement_is_learned() {
    // Our own NA, seen from the other side, teaches that side our MAC.
    let mut other = L2::new(L2Config {
        mac: PEER,
        ipv4: vec![],
        ipv6: vec![Ipv6Cidr::new(
            Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe),
            64,
        )],
        ..l2().config().clone()
    });
    let mut out = Vec::new();
    assert_eq!(other.input(&fx("na"), t(0), &mut out), Ok(Input::Handled));
    let ours = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    assert_eq!(other.neighbors().lookup(&ours, t(1)), Some(OUR));
}

#[test]
fn egress_solicits_unresolved_next_hop_once_per_retry() {
    let mut l = l2();
    let mut out = Vec::new();
    let ue = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 7)); // off-link: via the gateway
    assert_eq!(l.header_for(ue, t(0), &mut out), Err(L2Drop::NoNeighbor));
    assert_eq!(out, vec![fx("our_arp_request")]);
    assert_eq!(l.header_for(ue, t(500), &mut out), Err(L2Drop::NoNeighbor));
    assert_eq!(out.len(), 1);
    let ue6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x45, 0, 0, 0, 0, 7));
    assert_eq!(l.header_for(ue6, t(0), &mut out), Err(L2Drop::NoNeighbor));
    assert_eq!(out[1], fx("our_ns"));
    // Resolution by the gateway's ARP request, then frames go to the gateway's MAC.
    l.input(&fx("arp_request"), t(600), &mut out).unwrap();
    let h = l.header_for(ue, t(700), &mut out).unwrap();
    assert_eq!(&h[..6], PEER.as_bytes());
    assert_eq!(&h[6..12], OUR.as_bytes());
    assert_eq!(&h[12..], &[0x08, 0x00]);
    // Expired after the TTL.
    assert_eq!(
        l.header_for(ue, t(600 + 60_000), &mut out),
        Err(L2Drop::NoNeighbor)
    );
}

#[test]
fn ip_frames_are_trimmed_and_filtered() {
    let mut l = l2();
    let mut out = Vec::new();
    let ip = fx("echo4_request");
    let mut frame = vec![0u8; 14];
    frame[..6].copy_from_slice(OUR.as_bytes());
    frame[6..12].copy_from_slice(PEER.as_bytes());
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&[0u8; 6]); // Ethernet padding
    assert_eq!(
        l.input(&frame, t(0), &mut out),
        Ok(Input::Ip {
            offset: 14,
            ip: IpRepr::from_bytes(&ip, Direction::Inbound).unwrap()
        })
    );
    // A corrupted IPv4 header checksum.
    let mut bad = frame.clone();
    bad[14 + 10] ^= 1;
    assert_eq!(l.input(&bad, t(0), &mut out), Err(L2Drop::IpHeader));
    // Another MAC.
    let mut other = frame.clone();
    other[5] = 0x0b;
    assert_eq!(l.input(&other, t(0), &mut out), Err(L2Drop::NotForUs));
    // Claimed IP length beyond the frame.
    let mut cut = frame.clone();
    cut.truncate(14 + 30);
    assert_eq!(l.input(&cut, t(0), &mut out), Err(L2Drop::Malformed));
    assert_eq!(
        l.input(&frame[..10], t(0), &mut out),
        Err(L2Drop::Malformed)
    );
    let mut vlan = frame.clone();
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(l.input(&vlan, t(0), &mut out), Err(L2Drop::Ethertype));
}

#[test]
fn echo_replies_match_scapy() {
    assert_eq!(
        icmp::echo_reply(&fx("echo4_request")),
        Some(fx("echo4_reply"))
    );
    assert_eq!(
        icmp::echo_reply(&fx("echo6_request")),
        Some(fx("echo6_reply"))
    );
    // A reply is not answered; a corrupted checksum is not answered.
    assert_eq!(icmp::echo_reply(&fx("echo4_reply")), None);
    let mut bad = fx("echo6_request");
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(icmp::echo_reply(&bad), None);
}

mod pending_queue {
    use super::*;
    use crate::l2::pending::{Hold, PendingQueue, Released, PER_NEIGHBOR};

    fn ue(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    /// Runs `service` at `now` with the neighbours in `known` resolved (to their own number);
    /// returns what came out, in order: (item, Some(answer)) sent, (item, None) failed.
    fn service(
        q: &mut PendingQueue<u32>,
        now: Instant,
        known: &[IpAddr],
    ) -> Vec<(u32, Option<IpAddr>)> {
        let mut out = Vec::new();
        q.service(
            now,
            |hop| known.contains(&hop).then_some(hop),
            |item, r| {
                out.push((
                    item,
                    match r {
                        Released::Resolved(h) => Some(*h),
                        Released::Failed => None,
                    },
                ))
            },
        );
        out
    }

    #[test]
    fn a_neighbour_holds_three_packets_and_the_oldest_makes_room() {
        let mut q = PendingQueue::new(8, Duration::from_secs(3));
        for i in 0..PER_NEIGHBOR as u32 {
            assert_eq!(q.hold(ue(7), i, t(0)), Hold::Queued);
        }
        // Linux's unres_qlen: the fourth pushes out the first.
        assert_eq!(q.hold(ue(7), 3, t(1)), Hold::Evicted(0));
        assert_eq!(q.hold(ue(8), 10, t(1)), Hold::Queued);
        assert_eq!(q.len(), 4);
        assert_eq!(
            service(&mut q, t(2), &[ue(7)]),
            vec![(1, Some(ue(7))), (2, Some(ue(7))), (3, Some(ue(7)))]
        );
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_total_bound_refuses_new_packets() {
        let mut q = PendingQueue::new(4, Duration::from_secs(3));
        for n in 0..4u8 {
            assert_eq!(q.hold(ue(n), u32::from(n), t(0)), Hold::Queued);
        }
        assert_eq!(q.hold(ue(9), 9, t(0)), Hold::Full(9));
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn resolution_releases_in_arrival_order_and_keeps_the_others() {
        let mut q = PendingQueue::new(8, Duration::from_secs(3));
        q.hold(ue(1), 1, t(0));
        q.hold(ue(2), 2, t(0));
        q.hold(ue(1), 3, t(1));
        q.hold(ue(2), 4, t(1));
        q.hold(ue(1), 5, t(2));
        assert!(
            service(&mut q, t(10), &[]).is_empty(),
            "nothing resolved yet"
        );
        assert_eq!(
            service(&mut q, t(20), &[ue(1)]),
            vec![(1, Some(ue(1))), (3, Some(ue(1))), (5, Some(ue(1)))]
        );
        assert_eq!(
            service(&mut q, t(30), &[ue(1), ue(2)]),
            vec![(2, Some(ue(2))), (4, Some(ue(2)))]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn unresolved_packets_fail_at_their_deadline() {
        let mut q = PendingQueue::new(8, Duration::from_secs(3));
        q.hold(ue(1), 1, t(0));
        q.hold(ue(1), 2, t(1000));
        assert!(service(&mut q, t(2999), &[]).is_empty());
        assert_eq!(service(&mut q, t(3000), &[]), vec![(1, None)]);
        assert_eq!(service(&mut q, t(4000), &[]), vec![(2, None)]);
        assert!(q.is_empty());
    }
}

#[test]
fn header_to_a_resolved_hop_and_solicit_rate_limited() {
    let mut l = l2();
    let mut out = Vec::new();
    let gw = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254));
    assert_eq!(l.header_to(gw, t(0)), None);
    l.solicit(gw, t(0), &mut out);
    l.solicit(gw, t(999), &mut out);
    assert_eq!(out.len(), 1, "one solicitation per retry interval");
    l.solicit(gw, t(1000), &mut out);
    assert_eq!(out.len(), 2);
    l.input(&fx("arp_request"), t(1100), &mut out).unwrap();
    let h = l.header_to(gw, t(1200)).unwrap();
    assert_eq!(&h[..6], PEER.as_bytes());
    assert_eq!(&h[12..], &[0x08, 0x00]);
}

/// 192.0.2.1/24 and 2001:db8::1/64 on the link, the UE pool 10.45.0.0/16 behind the router
/// 192.0.2.253, 10.45.7.0/24 behind 192.0.2.252, the default 192.0.2.254; no IPv6 gateway.
fn routed() -> L2 {
    L2::new(L2Config {
        gateway_v6: None,
        routes: vec![
            Route {
                prefix: IpCidr::new(Ipv4Address::new(10, 45, 0, 0).into(), 16),
                via: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 253)),
            },
            Route {
                prefix: IpCidr::new(Ipv4Address::new(10, 45, 7, 0).into(), 24),
                via: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 252)),
            },
        ],
        ..l2().config().clone()
    })
}

/// The target protocol address of an ARP request frame.
fn arp_target(f: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(f[38], f[39], f[40], f[41])
}

#[test]
fn longest_prefix_picks_the_router_and_only_routers_are_resolved() {
    let mut l = routed();
    let mut out = Vec::new();
    let ue = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 7));
    let ue7 = IpAddr::V4(Ipv4Addr::new(10, 45, 7, 7));
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    assert_eq!(l.next_hop(ue), Some(v4(192, 0, 2, 253)));
    assert_eq!(l.next_hop(ue7), Some(v4(192, 0, 2, 252)));
    assert_eq!(l.next_hop(v4(198, 51, 100, 1)), Some(v4(192, 0, 2, 254)));
    assert_eq!(l.next_hop(v4(192, 0, 2, 9)), Some(v4(192, 0, 2, 9)));
    // No IPv6 default: only the link.
    let off6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
    assert_eq!(l.next_hop(off6), None);
    assert_eq!(l.header_for(off6, t(0), &mut out), Err(L2Drop::NoRoute));
    // A UE behind the router: the router is solicited, never the UE.
    assert_eq!(l.header_for(ue, t(0), &mut out), Err(L2Drop::NoNeighbor));
    assert_eq!(out.len(), 1);
    assert_eq!(arp_target(&out[0]), Ipv4Addr::new(192, 0, 2, 253));
    // An ARP request from an off-link address (a UE claiming to be on the link) teaches
    // nothing: nothing would ever be sent to it directly.
    let mut bogus = fx("arp_request");
    bogus[28..32].copy_from_slice(&[10, 45, 0, 7]);
    l.input(&bogus, t(1), &mut out).unwrap();
    assert!(!l.neighbors().knows(&ue));
    // The router answers; the UE's packets go to the router's MAC.
    let mut reply = fx("arp_request");
    reply[28..32].copy_from_slice(&[192, 0, 2, 253]);
    l.input(&reply, t(2), &mut out).unwrap();
    let h = l.header_for(ue, t(3), &mut out).unwrap();
    assert_eq!(&h[..6], PEER.as_bytes());
    // The other router of the more specific route is still unknown.
    assert_eq!(l.header_for(ue7, t(3), &mut out), Err(L2Drop::NoNeighbor));
    assert_eq!(
        arp_target(out.last().unwrap()),
        Ipv4Addr::new(192, 0, 2, 252)
    );
}

#[test]
fn a_gateway_in_a_full_cache_is_still_learned() {
    let mut l = L2::new(L2Config {
        max_neighbors: 1,
        ..l2().config().clone()
    });
    let mut out = Vec::new();
    let mut host = fx("arp_request");
    host[28..32].copy_from_slice(&[192, 0, 2, 9]);
    l.input(&host, t(0), &mut out).unwrap();
    l.input(&fx("arp_request"), t(1), &mut out).unwrap();
    let gw = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254));
    assert_eq!(l.neighbors().lookup(&gw, t(2)), Some(PEER));
}

#[test]
fn gateways_are_refreshed_by_unicast_probes_and_failures_counted() {
    // One gateway (192.0.2.254), 60 s entries, 1 s between solicitations.
    let mut l = L2::new(L2Config {
        gateway_v6: None,
        ..l2().config().clone()
    });
    let gw = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254));
    let mut out = Vec::new();
    assert_eq!(l.gateway_counters().unresolved, 1);
    // At start the gateway is solicited by broadcast, without any packet waiting for it.
    l.maintain(t(0), &mut out);
    assert_eq!(out, vec![fx("our_arp_request")]);
    out.clear();
    l.maintain(t(500), &mut out);
    assert!(out.is_empty(), "one solicitation per interval");
    // It answers (its own request to us teaches it): resolved until 60.1 s.
    l.input(&fx("arp_request"), t(100), &mut out).unwrap();
    out.clear();
    l.maintain(t(600), &mut out);
    assert_eq!(l.gateway_counters().unresolved, 0);
    for ms in [1_000, 30_000, 56_099] {
        l.maintain(t(ms), &mut out);
    }
    assert!(out.is_empty(), "nothing before the probe window");
    // Four intervals before expiry: a unicast ARP request to the MAC we know.
    l.maintain(t(56_100), &mut out);
    let mut unicast = fx("our_arp_request");
    unicast[..6].copy_from_slice(PEER.as_bytes());
    assert_eq!(out, vec![unicast.clone()]);
    assert_eq!(l.gateway_counters().probes, 1);
    // Answered: the entry lives on, the next window is a TTL later, no failure.
    l.input(&fx("arp_request"), t(56_600), &mut out).unwrap();
    out.clear();
    for ms in [57_100, 60_100, 100_000, 112_599] {
        l.maintain(t(ms), &mut out);
    }
    assert!(out.is_empty());
    assert_eq!(l.gateway_counters().probe_failures, 0);
    assert_eq!(l.header_to(gw, t(112_599)).map(|h| h[0]), Some(PEER.0[0]));
    // Now it is silent: three probes a second apart, each unanswered one counted.
    for (ms, probes, failures) in [
        (112_600, 2, 0),
        (113_600, 3, 1),
        (114_600, 4, 2),
        (115_600, 4, 3),
    ] {
        l.maintain(t(ms), &mut out);
        let c = l.gateway_counters();
        assert_eq!(
            (c.probes, c.probe_failures),
            (probes, failures),
            "at {ms} ms"
        );
    }
    assert_eq!(out, vec![unicast.clone(), unicast.clone(), unicast]);
    out.clear();
    assert_eq!(l.gateway_counters().unreachable, 0);
    // The entry runs out: unreachable, and solicited by broadcast from then on.
    l.maintain(t(116_600), &mut out);
    let c = l.gateway_counters();
    assert_eq!((c.unreachable, c.unresolved), (1, 1));
    assert_eq!(out, vec![fx("our_arp_request")]);
    assert_eq!(l.header_to(gw, t(116_600)), None);
    // Back: resolved again at once.
    l.input(&fx("arp_request"), t(117_000), &mut out).unwrap();
    l.maintain(t(117_001), &mut out);
    assert_eq!(l.gateway_counters().unresolved, 0);
}

#[test]
fn ipv6_gateway_probe_is_a_unicast_ns_to_the_gateway_itself() {
    let mut l = L2::new(L2Config {
        gateway_v4: None,
        ..l2().config().clone()
    });
    let mut out = Vec::new();
    l.maintain(t(0), &mut out);
    assert_eq!(out, vec![fx("our_ns")]);
    out.clear();
    l.input(&fx("ns"), t(10), &mut out).unwrap(); // the gateway's NS teaches it
    out.clear();
    l.maintain(t(56_010), &mut out);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    let gw6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
    assert_eq!(&f[..6], PEER.as_bytes(), "to the MAC we know");
    assert_eq!(&f[14 + 24..14 + 40], &gw6.octets(), "to the address itself");
    assert_eq!(f[14 + 40], 135, "a Neighbor Solicitation");
    assert_eq!(&f[14 + 48..14 + 64], &gw6.octets(), "for the gateway");
    assert_eq!(l.gateway_counters().probes, 1);
}

/// The header RFC 894 puts in front of an IPv4 packet from us to `mac`, built byte by byte.
fn ipv4_header_to(mac: [u8; 6]) -> [u8; ETH_HDR_LEN] {
    let mut h = [0u8; ETH_HDR_LEN];
    h[..6].copy_from_slice(&mac);
    h[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
    h[12..].copy_from_slice(&[0x08, 0x00]);
    h
}

/// An ARP request to us from `ip` at `mac` (the Scapy request with its sender changed).
fn arp_from(ip: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    let mut f = fx("arp_request");
    f[6..12].copy_from_slice(&mac);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    f
}

#[test]
fn the_neighbour_generation_moves_only_when_a_copy_could_be_wrong() {
    let mut n = neighbor::NeighborCache::new(2, Duration::from_secs(60), Duration::from_secs(1));
    let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let c = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
    let g0 = n.generation();
    // A new entry, and a refresh to the same address and a later expiry: copies stay right.
    n.learn(a, PEER, t(0));
    n.learn(a, PEER, t(10));
    n.learn(b, PEER, t(10));
    assert_eq!(n.generation(), g0);
    // A new address for a known neighbour.
    n.learn(a, OUR, t(20));
    let g1 = n.generation();
    assert_ne!(g1, g0);
    // Forgotten (and forgetting what is not there changes nothing).
    n.forget(&a);
    let g2 = n.generation();
    assert_ne!(g2, g1);
    n.forget(&a);
    assert_eq!(n.generation(), g2);
    // A full cache dropping its expired entries to make room.
    n.learn(a, PEER, t(30));
    n.learn(c, PEER, t(61_000));
    assert_ne!(n.generation(), g2);
    assert_eq!(n.lookup(&c, t(61_001)), Some(PEER));
    assert_eq!(n.lookup(&b, t(61_001)), None);
}

#[test]
fn a_ues_copy_of_its_next_hop_follows_the_neighbour_cache() {
    let mut l = l2();
    let mut out = Vec::new();
    let mut hop = hop::HopCache::default();
    let ue = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    let mac1 = [0x52, 0x54, 0, 0, 0, 9];
    let mac2 = [0x52, 0x54, 0, 0, 0, 0x99];
    // Unresolved: nothing, nothing copied, nothing solicited here.
    assert_eq!(l.header_cached(ue, t(0), &mut hop), None);
    assert_eq!(hop, hop::HopCache::default());
    assert!(out.is_empty());
    // Resolved: the header, copied; read from the copy while it is right.
    l.input(&arp_from([192, 0, 2, 9], mac1), t(0), &mut out)
        .unwrap();
    assert_eq!(
        l.header_cached(ue, t(1), &mut hop),
        Some(ipv4_header_to(mac1))
    );
    assert_eq!(
        hop.get(ue, t(2), l.neighbor_cache()),
        Some(ipv4_header_to(mac1))
    );
    // Not for another destination.
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    assert_eq!(hop.get(other, t(2), l.neighbor_cache()), None);
    // The UE's address moves to another MAC: the copy is stale, the new header is read.
    l.input(&arp_from([192, 0, 2, 9], mac2), t(3), &mut out)
        .unwrap();
    assert_eq!(hop.get(ue, t(4), l.neighbor_cache()), None);
    assert_eq!(
        l.header_cached(ue, t(4), &mut hop),
        Some(ipv4_header_to(mac2))
    );
    // A refresh (same MAC) keeps the copy; past the entry's first expiry it is read again
    // and holds until the refreshed one.
    l.input(&arp_from([192, 0, 2, 9], mac2), t(30_000), &mut out)
        .unwrap();
    assert_eq!(
        hop.get(ue, t(30_001), l.neighbor_cache()),
        Some(ipv4_header_to(mac2))
    );
    assert_eq!(hop.get(ue, t(60_003), l.neighbor_cache()), None);
    assert_eq!(
        l.header_cached(ue, t(60_003), &mut hop),
        Some(ipv4_header_to(mac2))
    );
    // Expired (no answer since): nothing, as `header_for` says.
    assert_eq!(l.header_cached(ue, t(90_000), &mut hop), None);
    assert_eq!(
        l.header_for(ue, t(90_000), &mut out),
        Err(L2Drop::NoNeighbor)
    );
    // Forgotten (another worker owns it): nothing.
    l.input(&arp_from([192, 0, 2, 9], mac1), t(90_001), &mut out)
        .unwrap();
    assert_eq!(
        l.header_cached(ue, t(90_002), &mut hop),
        Some(ipv4_header_to(mac1))
    );
    l.neighbors().forget(&ue);
    assert_eq!(l.header_cached(ue, t(90_003), &mut hop), None);
}

#[test]
fn a_routed_ues_copy_is_its_routers_header_and_follows_the_router() {
    let mut l = routed();
    let mut out = Vec::new();
    let mut hop = hop::HopCache::default();
    let ue = IpAddr::V4(Ipv4Addr::new(10, 45, 0, 7));
    let off6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
    assert_eq!(l.header_cached(off6, t(0), &mut hop), None);
    assert_eq!(l.header_cached(ue, t(0), &mut hop), None);
    let r1 = [0x52, 0x54, 0, 0, 0, 0xfd];
    l.input(&arp_from([192, 0, 2, 253], r1), t(1), &mut out)
        .unwrap();
    assert_eq!(
        l.header_cached(ue, t(2), &mut hop),
        Some(ipv4_header_to(r1))
    );
    // The router's MAC changes (a failover): the UE's frames follow it.
    let r2 = [0x52, 0x54, 0, 0, 1, 0xfd];
    l.input(&arp_from([192, 0, 2, 253], r2), t(3), &mut out)
        .unwrap();
    assert_eq!(hop.get(ue, t(4), l.neighbor_cache()), None);
    assert_eq!(
        l.header_cached(ue, t(4), &mut hop),
        Some(ipv4_header_to(r2))
    );
    // The router stops answering: once its entry expires, nothing (the gateway watch
    // solicits it; the worker holds the UE's packets meanwhile).
    assert_eq!(l.header_cached(ue, t(60_004), &mut hop), None);
    assert_eq!(
        l.header_to(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 253)), t(60_004)),
        None
    );
}

#[test]
fn the_storage_of_an_answer_sent_serves_the_next_answer() {
    let mut l = l2();
    let mut out = Vec::new();
    l.input(&fx("arp_request"), t(0), &mut out).unwrap();
    let f = out.pop().unwrap();
    assert_eq!(f, fx("arp_reply"));
    let at = f.as_ptr();
    l.recycle(f);
    l.input(&fx("arp_request"), t(1), &mut out).unwrap();
    // Byte for byte the same answer, in the same storage.
    assert_eq!(out, vec![fx("arp_reply")]);
    assert_eq!(out[0].as_ptr(), at);
    // An ND answer from a spare that held a shorter ARP frame is whole too.
    let f = out.pop().unwrap();
    l.recycle(f);
    l.input(&fx("ns"), t(2), &mut out).unwrap();
    assert_eq!(out, vec![fx("na")]);
    // A large buffer given back is not kept for an answer: the next one is not in it.
    out.clear();
    l.recycle(Vec::with_capacity(2048));
    l.input(&fx("arp_request"), t(3), &mut out).unwrap();
    assert_eq!(out, vec![fx("arp_reply")]);
    assert!(out[0].capacity() <= 128, "{}", out[0].capacity());
}
