//! Reassembly checked against fragments made by Scapy and against hand-built edge cases.

use super::*;

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!(
        "../../tests/fixtures/reasm/scapy_fragments.json"
    ))
    .unwrap()
}

fn case(name: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let f = fixture();
    let orig = hex::decode(f[name]["original"].as_str().unwrap()).unwrap();
    let frags = f[name]["fragments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
        .collect();
    (orig, frags)
}

fn t(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn feed(r: &mut Reassembler, frags: &[Vec<u8>]) -> Vec<Reasm> {
    frags.iter().map(|f| r.push(f, t(0)).unwrap()).collect()
}

/// An IPv4 fragment with the header of `orig`, the given id, offset (bytes), MF flag and data.
fn v4_frag(id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let (orig, _) = case("ipv4");
    let mut p = orig[..20].to_vec();
    p.extend_from_slice(data);
    let len = p.len() as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.set_ident(id);
    ip.set_total_len(len);
    ip.set_more_frags(more);
    ip.set_frag_offset(offset as u16);
    ip.fill_checksum();
    p
}

#[test]
fn ipv4_scapy_fragments_in_any_order() {
    let (orig, frags) = case("ipv4");
    assert_eq!(frags.len(), 4);
    for order in [vec![0, 1, 2, 3], vec![3, 2, 1, 0], vec![2, 0, 3, 1]] {
        let mut r = Reassembler::new(ReasmConfig::default());
        let picked: Vec<Vec<u8>> = order.iter().map(|&i| frags[i].clone()).collect();
        let out = feed(&mut r, &picked);
        assert!(out[..3].iter().all(|o| *o == Reasm::Incomplete));
        assert_eq!(out[3], Reasm::Complete(orig.clone()));
        assert_eq!((r.bytes_held(), r.datagrams_held()), (0, 0));
        assert_eq!(r.counters().completed, 1);
    }
}

#[test]
fn ipv6_scapy_fragments_in_any_order() {
    let (orig, frags) = case("ipv6");
    assert_eq!(frags.len(), 3);
    for order in [vec![0, 1, 2], vec![2, 1, 0], vec![1, 2, 0]] {
        let mut r = Reassembler::new(ReasmConfig::default());
        let picked: Vec<Vec<u8>> = order.iter().map(|&i| frags[i].clone()).collect();
        let out = feed(&mut r, &picked);
        assert_eq!(out[2], Reasm::Complete(orig.clone()));
        assert_eq!(r.bytes_held(), 0);
    }
}

#[test]
fn unfragmented_packets_pass() {
    let (orig4, _) = case("ipv4");
    let (orig6, _) = case("ipv6");
    let mut r = Reassembler::new(ReasmConfig::default());
    assert_eq!(r.push(&orig4, t(0)), Ok(Reasm::NotFragment));
    assert_eq!(r.push(&orig6, t(0)), Ok(Reasm::NotFragment));
    assert_eq!(r.push(&orig4[..10], t(0)), Err(ReasmDrop::Malformed));
    assert_eq!(r.push(&[], t(0)), Err(ReasmDrop::Malformed));
    let mut bad = orig4.clone();
    bad[10] ^= 1; // header checksum
    assert_eq!(r.push(&bad, t(0)), Err(ReasmDrop::Malformed));
}

#[test]
fn ipv6_atomic_fragment_is_unwrapped() {
    // RFC 6946: offset 0, M = 0.
    let (orig, frags) = case("ipv6");
    let mut atomic = frags[0][..48].to_vec();
    atomic.extend_from_slice(&orig[40..]);
    let plen = (atomic.len() - 40) as u16;
    atomic[4..6].copy_from_slice(&plen.to_be_bytes());
    atomic[42..44].copy_from_slice(&[0, 0]);
    let mut r = Reassembler::new(ReasmConfig::default());
    assert_eq!(r.push(&atomic, t(0)), Ok(Reasm::Complete(orig)));
}

#[test]
fn overlap_discards_the_datagram() {
    let data = [7u8; 32];
    let mut r = Reassembler::new(ReasmConfig::default());
    assert_eq!(
        r.push(&v4_frag(9, 0, true, &data[..16]), t(0)),
        Ok(Reasm::Incomplete)
    );
    assert_eq!(
        r.push(&v4_frag(9, 8, true, &data[..16]), t(0)),
        Err(ReasmDrop::Overlap)
    );
    assert_eq!(
        (r.datagrams_held(), r.bytes_held(), r.counters().overlaps),
        (0, 0, 1)
    );
    // The remaining fragment alone does not complete anything.
    assert_eq!(
        r.push(&v4_frag(9, 16, false, &data[..16]), t(0)),
        Ok(Reasm::Incomplete)
    );
}

#[test]
fn exact_duplicate_is_ignored() {
    let (orig, frags) = case("ipv4");
    let mut r = Reassembler::new(ReasmConfig::default());
    assert_eq!(r.push(&frags[1], t(0)), Ok(Reasm::Incomplete));
    assert_eq!(r.push(&frags[1], t(0)), Err(ReasmDrop::Duplicate));
    for f in [&frags[0], &frags[2]] {
        assert_eq!(r.push(f, t(0)), Ok(Reasm::Incomplete));
    }
    assert_eq!(r.push(&frags[3], t(0)), Ok(Reasm::Complete(orig)));
}

#[test]
fn fragment_beyond_the_end_is_dropped() {
    let data = [1u8; 16];
    let mut r = Reassembler::new(ReasmConfig::default());
    assert_eq!(
        r.push(&v4_frag(5, 16, false, &data), t(0)),
        Ok(Reasm::Incomplete)
    );
    assert_eq!(
        r.push(&v4_frag(5, 32, true, &data), t(0)),
        Err(ReasmDrop::TooBig)
    );
    assert_eq!(r.bytes_held(), 0);
    // Offset 65528 + 16 bytes exceeds the IPv4 maximum.
    assert_eq!(
        r.push(&v4_frag(6, 65528, false, &data), t(0)),
        Err(ReasmDrop::TooBig)
    );
    // A non-last fragment that is not a multiple of 8 bytes.
    assert_eq!(
        r.push(&v4_frag(7, 0, true, &data[..12]), t(0)),
        Err(ReasmDrop::Malformed)
    );
}

#[test]
fn timeout_drops_incomplete_datagrams() {
    let (_, frags) = case("ipv4");
    let cfg = ReasmConfig {
        timeout: Duration::from_secs(30),
        ..ReasmConfig::default()
    };
    let mut r = Reassembler::new(cfg);
    assert_eq!(r.push(&frags[0], t(0)), Ok(Reasm::Incomplete));
    r.expire(t(29_999));
    assert_eq!(r.datagrams_held(), 1);
    r.expire(t(30_000));
    assert_eq!(
        (r.datagrams_held(), r.bytes_held(), r.counters().timeouts),
        (0, 0, 1)
    );
    // The late rest does not complete the expired datagram.
    for f in &frags[1..] {
        assert_eq!(r.push(f, t(30_001)), Ok(Reasm::Incomplete));
    }
}

#[test]
fn memory_and_count_bounds_evict_oldest() {
    let cfg = ReasmConfig {
        max_bytes: 1000,
        max_datagrams: 4,
        timeout: Duration::from_secs(30),
    };
    let mut r = Reassembler::new(cfg);
    let data = [3u8; 400];
    for id in 0..10u16 {
        assert_eq!(
            r.push(&v4_frag(id, 0, true, &data), t(i64::from(id))),
            Ok(Reasm::Incomplete)
        );
        assert!(r.bytes_held() <= 1000);
        assert!(r.datagrams_held() <= 4);
    }
    assert_eq!(r.counters().evicted, 8);
    // The newest datagrams survived: completing id 9 works, id 0 is gone.
    let mut tail = v4_frag(9, 400, false, &data);
    assert!(matches!(r.push(&tail, t(20)), Ok(Reasm::Complete(p)) if p.len() == 820));
    tail = v4_frag(0, 400, false, &data);
    assert_eq!(r.push(&tail, t(20)), Ok(Reasm::Incomplete));
    let big = [0u8; 1008];
    assert_eq!(
        r.push(&v4_frag(77, 0, true, &big), t(21)),
        Err(ReasmDrop::NoMemory)
    );
}
