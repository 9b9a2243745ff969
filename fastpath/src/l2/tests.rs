//! Link-layer behaviour checked byte for byte against frames built by Scapy.

use super::*;
use crate::wire::ip::{Direction, IpRepr};
use smoltcp::wire::{Ipv4Address, Ipv6Address};

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
