//! AF_PACKET backend on a veth pair between two fresh network namespaces: frames cross in
//! both directions through the mapped rings, and the fanout program keeps every frame of one
//! UE address on the queue `steer::queue_for_frame` names (ESP and TCP alike). Needs root.
#![cfg(target_os = "linux")]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use akagate_sys::afpacket::{AfPacketConfig, AfPacketPort, AfPacketQueue, TxMode};
use akagate_sys::steer::{queue_for_frame, ue_key};
use akagate_sys::testnet::{unavailable_reason, VethPair};
use akagate_sys::{PacketBuf, Port, PortQueue, UeSide};

const MAGIC: &[u8; 4] = b"AKGT";

fn skip() -> bool {
    if let Some(why) = unavailable_reason() {
        eprintln!("skipping: {why}");
        return true;
    }
    false
}

/// An untagged Ethernet frame carrying IPv4 with protocol `proto`, padded to `len`, ending in
/// MAGIC and `seq`.
fn v4_frame(
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    len: usize,
    seq: u32,
) -> Vec<u8> {
    let len = len.max(14 + 20 + 8);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&[0x02, 0xaa, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    if proto == 50 {
        // ESP: SPI and sequence number right after the IP header (RFC 4303 2).
        f[34..38].copy_from_slice(&0x1000u32.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
    }
    f[len - 8..len - 4].copy_from_slice(MAGIC);
    f[len - 4..].copy_from_slice(&seq.to_be_bytes());
    f
}

fn v6_frame(dst_mac: [u8; 6], src_low: u32, proto: u8, seq: u32) -> Vec<u8> {
    let len = 14 + 40 + 32;
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&[0x02, 0xaa, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[18..20].copy_from_slice(&32u16.to_be_bytes());
    f[20] = proto;
    f[21] = 64;
    f[22..24].copy_from_slice(&[0x20, 0x01]);
    f[34..38].copy_from_slice(&src_low.to_be_bytes());
    f[38..40].copy_from_slice(&[0x20, 0x01]);
    f[53] = 1;
    f[len - 8..len - 4].copy_from_slice(MAGIC);
    f[len - 4..].copy_from_slice(&seq.to_be_bytes());
    f
}

fn arp_frame(seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[52..56].copy_from_slice(MAGIC);
    f[56..60].copy_from_slice(&seq.to_be_bytes());
    f
}

fn is_ours(f: &[u8]) -> bool {
    f.len() >= 8 && &f[f.len() - 8..f.len() - 4] == MAGIC
}

fn open(ns: &str, cfg: AfPacketConfig) -> AfPacketPort {
    VethPair::run_in(ns, move || AfPacketPort::open(&cfg))
        .expect("enter namespace")
        .expect("open AF_PACKET port")
}

fn send_all(q: &mut AfPacketQueue, frames: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending: Vec<PacketBuf> = Vec::new();
    let mut it = frames.iter();
    loop {
        while pending.len() < 32 {
            let Some(f) = it.next() else { break };
            let mut b = q.alloc().expect("pool has buffers");
            b.fill(f).unwrap();
            pending.push(b);
        }
        if pending.is_empty() {
            break;
        }
        if q.tx_burst(&mut pending) == 0 {
            assert!(Instant::now() < deadline, "transmit stalled");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Receive our frames on all queues until `want` arrived; returns (queue, frame) in order.
fn recv_all(queues: &mut [AfPacketQueue], want: usize) -> Vec<(usize, Vec<u8>)> {
    recv_until(queues, want, Duration::from_secs(10))
}

fn recv_until(queues: &mut [AfPacketQueue], want: usize, wait: Duration) -> Vec<(usize, Vec<u8>)> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut burst = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let mut any = false;
        for q in queues.iter_mut() {
            if q.rx_burst(&mut burst, 64) > 0 {
                any = true;
            }
            for b in burst.drain(..) {
                if is_ours(b.data()) {
                    got.push((q.queue_id(), b.data().to_vec()));
                }
                q.free(b);
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

#[test]
fn frames_cross_both_directions() {
    if skip() {
        return;
    }
    let net = VethPair::new().expect("veth pair");
    let mut pa = open(&net.ns_a, AfPacketConfig::new(&net.a));
    let mut cfg_b = AfPacketConfig::new(&net.b);
    cfg_b.tx_mode = TxMode::Sendmmsg;
    cfg_b.qdisc_bypass = true;
    let mut pb = open(&net.ns_b, cfg_b);
    let (mac_a, mac_b) = (pa.link().mac, pb.link().mac);
    assert_ne!(mac_a, mac_b);
    assert_eq!(pa.link().mtu, 1500);
    let mut qa = pa.take_queues();
    let mut qb = pb.take_queues();

    // A -> B through the TX ring: sizes from minimum to a full 1514-byte frame.
    let fwd: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            v4_frame(
                mac_b,
                [10, 1, 0, 1],
                [10, 2, 0, 1],
                17,
                60 + (i as usize * 97) % 1455,
                i,
            )
        })
        .collect();
    send_all(&mut qa[0], &fwd);
    let got = recv_all(&mut qb, fwd.len());
    assert_eq!(got.len(), fwd.len());
    for ((_, g), w) in got.iter().zip(&fwd) {
        assert_eq!(g, w, "frame changed or reordered in transit");
    }

    // B -> A with sendmmsg and qdisc bypass.
    let back: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            v4_frame(
                mac_a,
                [10, 2, 0, 1],
                [10, 1, 0, 1],
                6,
                1514 - (i as usize * 31) % 1400,
                i,
            )
        })
        .collect();
    send_all(&mut qb[0], &back);
    let got = recv_all(&mut qa, back.len());
    assert_eq!(got.len(), back.len());
    for ((_, g), w) in got.iter().zip(&back) {
        assert_eq!(g, w);
    }

    let sa = qa[0].counters().snapshot();
    let sb = qb[0].counters().snapshot();
    assert_eq!(sa.tx_packets, 300);
    assert_eq!(sb.tx_packets, 300);
    assert!(sb.rx_packets >= 300);
    assert!(sa.rx_packets >= 300);
    assert_eq!(sa.tx_errors + sb.tx_errors, 0);
    assert_eq!(sa.tx_bytes, fwd.iter().map(|f| f.len() as u64).sum::<u64>());
}

#[test]
fn fanout_keeps_each_ue_on_one_queue() {
    if skip() {
        return;
    }
    const QUEUES: usize = 4;
    let net = VethPair::new().expect("veth pair");
    let mut pa = open(&net.ns_a, AfPacketConfig::new(&net.a));
    let mut cfg_b = AfPacketConfig::new(&net.b);
    cfg_b.queues = QUEUES;
    let mut pb = open(&net.ns_b, cfg_b);
    assert_eq!(pb.num_queues(), QUEUES);
    let mac_b = pb.link().mac;
    let mut qa = pa.take_queues();
    let mut qb = pb.take_queues();

    let mut frames = Vec::new();
    let mut seq = 0;
    for round in 0..3 {
        for ue in 0..64u8 {
            for proto in [50u8, 6] {
                frames.push(v4_frame(
                    mac_b,
                    [10, 45, ue / 16, ue],
                    [198, 51, 100, 1],
                    proto,
                    80 + round * 200,
                    seq,
                ));
                seq += 1;
            }
        }
        for ue in 0..16u32 {
            for proto in [50u8, 6] {
                frames.push(v6_frame(mac_b, 0x0a00_0000 + ue * 7919, proto, seq));
                seq += 1;
            }
        }
        frames.push(arp_frame(seq));
        seq += 1;
    }
    send_all(&mut qa[0], &frames);
    let got = recv_all(&mut qb, frames.len());
    assert_eq!(got.len(), frames.len(), "every frame arrives on some queue");

    let mut queues_of_ue: HashMap<(u16, u32), HashSet<usize>> = HashMap::new();
    for (q, f) in &got {
        // The kernel ran our cBPF program; it must agree with the Rust steering function.
        assert_eq!(
            *q,
            queue_for_frame(f, UeSide::Source, QUEUES),
            "frame on wrong queue"
        );
        let et = u16::from_be_bytes([f[12], f[13]]);
        if let Some(k) = ue_key(f, UeSide::Source) {
            queues_of_ue.entry((et, k)).or_default().insert(*q);
        } else {
            assert_eq!(*q, 0, "non-IP frames go to queue 0");
        }
    }
    assert_eq!(queues_of_ue.len(), 64 + 16);
    assert!(
        queues_of_ue.values().all(|s| s.len() == 1),
        "one UE, one queue"
    );
    let used: HashSet<usize> = got.iter().map(|(q, _)| *q).collect();
    assert_eq!(used.len(), QUEUES, "UEs spread over all queues");
    let total: u64 = pb.counters().iter().map(|c| c.snapshot().rx_packets).sum();
    assert!(total >= frames.len() as u64);
}

#[test]
fn fanout_by_destination_side() {
    if skip() {
        return;
    }
    const QUEUES: usize = 3;
    let net = VethPair::new().expect("veth pair");
    let mut pa = open(&net.ns_a, AfPacketConfig::new(&net.a));
    let mut cfg_b = AfPacketConfig::new(&net.b);
    cfg_b.queues = QUEUES;
    cfg_b.ue_side = UeSide::Destination;
    cfg_b.promiscuous = true;
    let mut pb = open(&net.ns_b, cfg_b);
    let mut qa = pa.take_queues();
    let mut qb = pb.take_queues();
    // Unicast to a foreign MAC: only seen because the port is promiscuous (veth delivers it
    // anyway, but the membership must be accepted by the kernel).
    let frames: Vec<Vec<u8>> = (0..120u32)
        .map(|i| {
            v4_frame(
                [0x02, 0xbb, 0, 0, 0, 9],
                [203, 0, 113, 5],
                [10, 9, (i % 40) as u8, 1],
                50,
                100,
                i,
            )
        })
        .collect();
    send_all(&mut qa[0], &frames);
    let got = recv_all(&mut qb, frames.len());
    assert_eq!(got.len(), frames.len());
    for (q, f) in &got {
        assert_eq!(*q, queue_for_frame(f, UeSide::Destination, QUEUES));
    }
    assert!(got.iter().map(|(q, _)| *q).collect::<HashSet<_>>().len() > 1);
}

#[test]
fn missing_interface_is_a_typed_error() {
    if skip() {
        return;
    }
    let err = AfPacketPort::open(&AfPacketConfig::new("akg-nope0"))
        .err()
        .expect("must fail");
    assert!(
        matches!(err, akagate_sys::IoError::NoSuchInterface(_)),
        "{err}"
    );
}

#[test]
fn multiple_queues_both_directions() {
    if skip() {
        return;
    }
    // A is the "core side" (UE is the destination of what it receives), B the access side.
    let net = VethPair::new().expect("veth pair");
    let mut cfg_a = AfPacketConfig::new(&net.a);
    cfg_a.queues = 2;
    cfg_a.ue_side = UeSide::Destination;
    let mut pa = open(&net.ns_a, cfg_a);
    let mut cfg_b = AfPacketConfig::new(&net.b);
    cfg_b.queues = 4;
    cfg_b.tx_mode = TxMode::Sendmmsg;
    let mut pb = open(&net.ns_b, cfg_b);
    let (mac_a, mac_b) = (pa.link().mac, pb.link().mac);
    let mut qa = pa.take_queues();
    let mut qb = pb.take_queues();

    // Each of A's queues sends to half of the UEs.
    let ues: Vec<[u8; 4]> = (0..40u8).map(|i| [10, 77, 0, i]).collect();
    for (qi, q) in qa.iter_mut().enumerate() {
        let frames: Vec<Vec<u8>> = ues
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == qi)
            .map(|(i, ue)| v4_frame(mac_b, *ue, [192, 0, 2, 1], 50, 120, i as u32))
            .collect();
        send_all(q, &frames);
    }
    let got = recv_all(&mut qb, ues.len());
    assert_eq!(got.len(), ues.len());
    for (q, f) in &got {
        assert_eq!(*q, queue_for_frame(f, UeSide::Source, 4));
    }

    // Every B queue answers its own UEs; A steers the answers by destination.
    let mut per_queue: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
    for (q, f) in &got {
        let ue = [f[26], f[27], f[28], f[29]];
        let seq = u32::from_be_bytes([
            f[f.len() - 4],
            f[f.len() - 3],
            f[f.len() - 2],
            f[f.len() - 1],
        ]);
        per_queue[*q].push(v4_frame(mac_a, [192, 0, 2, 1], ue, 6, 200, seq));
    }
    for (q, frames) in qb.iter_mut().zip(&per_queue) {
        send_all(q, frames);
    }
    let back = recv_all(&mut qa, ues.len());
    assert_eq!(back.len(), ues.len());
    for (q, f) in &back {
        assert_eq!(*q, queue_for_frame(f, UeSide::Destination, 2));
    }
    let sent_b: u64 = qb.iter().map(|q| q.counters().snapshot().tx_packets).sum();
    assert_eq!(sent_b, ues.len() as u64);
}

#[test]
fn kernel_drops_are_counted() {
    if skip() {
        return;
    }
    let net = VethPair::new().expect("veth pair");
    let mut pa = open(&net.ns_a, AfPacketConfig::new(&net.a));
    let mut cfg_b = AfPacketConfig::new(&net.b);
    cfg_b.rx_block_size = 4096;
    cfg_b.rx_block_nr = 2;
    let mut pb = open(&net.ns_b, cfg_b);
    let mac_b = pb.link().mac;
    let mut qa = pa.take_queues();
    let mut qb = pb.take_queues();
    // Two 4 KiB blocks hold a few dozen 300-byte frames; the rest must be dropped by the
    // kernel and show up in rx_dropped once the queue reads PACKET_STATISTICS.
    let frames: Vec<Vec<u8>> = (0..500u32)
        .map(|i| v4_frame(mac_b, [10, 3, 0, 1], [10, 4, 0, 1], 17, 300, i))
        .collect();
    send_all(&mut qa[0], &frames);
    std::thread::sleep(Duration::from_millis(50));
    // Blocks retire after 1 ms; half a second is plenty for what fits in the ring.
    let got = recv_until(&mut qb, frames.len(), Duration::from_millis(500));
    qb[0].sync_kernel_stats();
    let s = qb[0].counters().snapshot();
    assert!(got.len() < frames.len());
    assert!(s.rx_dropped > 0, "{s:?}");
    assert_eq!(
        got.len() as u64 + s.rx_dropped,
        frames.len() as u64,
        "{s:?}"
    );
}
