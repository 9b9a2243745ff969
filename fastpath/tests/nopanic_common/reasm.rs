//! Reassembly harness shared by `nopanic_reasm.rs` and the `reassembly` fuzz target: arbitrary
//! fragment sequences under tight bounds (never panic, bounds hold, output is a well-formed
//! unfragmented packet), and real datagrams cut at arbitrary 8-byte boundaries, delivered in
//! arbitrary order with duplicates, which must come back byte for byte (RFC 791, RFC 8200 4.5).

use akagate_fastpath::reasm::{Reasm, ReasmConfig, ReasmDrop, Reassembler};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Packet, Ipv6Packet};

use crate::input::{put_chunk, Input};

/// Tight bounds so eviction and memory limits are reached by short inputs.
const CFG: ReasmConfig = ReasmConfig {
    max_bytes: 6000,
    max_datagrams: 4,
    timeout: Duration::from_millis(1000),
};

/// How many records of one input reached the interesting ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams completed from raw fragments.
    pub raw_complete: usize,
    /// Datagrams split by the harness and restored exactly.
    pub restored: usize,
}

/// A completed packet must be one unfragmented IP packet whose length fields match.
fn check_whole(p: &[u8]) {
    match p.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(p).expect("reassembled IPv4 header");
            assert_eq!(usize::from(ip.total_len()), p.len());
            assert!(ip.verify_checksum());
            assert!(!ip.more_frags() && ip.frag_offset() == 0);
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(p).expect("reassembled IPv6 header");
            assert_eq!(40 + usize::from(ip.payload_len()), p.len());
        }
        _ => panic!("reassembled packet is not IP"),
    }
}

/// An unfragmented IPv4 or IPv6 datagram with `payload` (protocol 50) and identification `id`.
fn datagram(v6: bool, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = if v6 {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        h[6] = 50;
        h[7] = 64;
        h[8..24].copy_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        h[24..40].copy_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h
    } else {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[4..6].copy_from_slice(&(id as u16).to_be_bytes());
        h[8] = 64;
        h[9] = 50;
        h[12..16].copy_from_slice(&[10, 0, 0, 7]);
        h[16..20].copy_from_slice(&[10, 0, 0, 1]);
        h
    };
    p.extend_from_slice(payload);
    if !v6 {
        let len = p.len() as u16;
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_total_len(len);
        ip.fill_checksum();
    }
    p
}

/// Fragment of `whole` (built by [`datagram`]) holding payload bytes `at..end`.
fn fragment(whole: &[u8], v6: bool, id: u32, at: usize, end: usize) -> Vec<u8> {
    let more = end < whole.len() - if v6 { 40 } else { 20 };
    if v6 {
        let mut f = whole[..40].to_vec();
        f[6] = 44;
        let plen = (8 + end - at) as u16;
        f[4..6].copy_from_slice(&plen.to_be_bytes());
        // RFC 8200 4.5: next header, reserved, offset | M, identification.
        f.extend_from_slice(&[50, 0]);
        f.extend_from_slice(&((at as u16) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&whole[40 + at..40 + end]);
        f
    } else {
        let mut f = whole[..20].to_vec();
        f.extend_from_slice(&whole[20 + at..20 + end]);
        let len = f.len() as u16;
        let mut ip = Ipv4Packet::new_unchecked(&mut f[..]);
        ip.set_total_len(len);
        ip.set_more_frags(more);
        ip.set_frag_offset((at) as u16);
        ip.fill_checksum();
        f
    }
}

/// Runs one harness input.
pub fn run(data: &[u8]) -> Stats {
    let mut inp = Input::new(data);
    let mut st = Stats::default();
    let mut r = Reassembler::new(CFG);
    let mut now = Instant::from_millis(1_000_000);
    let mut records = 0;
    while !inp.is_empty() && records < 64 {
        records += 1;
        now += Duration::from_millis(u64::from(inp.u8()) * 8);
        if inp.u8() & 1 == 0 {
            // Arbitrary packet into the long-lived reassembler.
            let pkt = inp.chunk(9000);
            if let Ok(Reasm::Complete(p)) = r.push(pkt, now) {
                check_whole(&p);
                st.raw_complete += 1;
            }
            assert!(r.bytes_held() <= CFG.max_bytes);
            assert!(r.datagrams_held() <= CFG.max_datagrams);
            continue;
        }
        // A real datagram, cut, shuffled, with a duplicate, into a fresh reassembler.
        let v6 = inp.u8() & 1 == 1;
        let id = inp.u32();
        let payload = inp.chunk(5000);
        if payload.len() < 9 {
            continue;
        }
        let whole = datagram(v6, id, payload);
        let mut cuts = vec![0];
        let mut at = 0;
        loop {
            at += 8 * (1 + usize::from(inp.u8() % 64));
            if at >= payload.len() {
                break;
            }
            cuts.push(at);
        }
        cuts.push(payload.len());
        let mut frags: Vec<Vec<u8>> = cuts
            .windows(2)
            .map(|w| fragment(&whole, v6, id, w[0], w[1]))
            .collect();
        // Fisher-Yates with input bytes.
        for i in (1..frags.len()).rev() {
            let j = usize::from(inp.u8()) % (i + 1);
            frags.swap(i, j);
        }
        let dup = usize::from(inp.u8()) % (frags.len() + 1);
        let mut fresh = Reassembler::new(ReasmConfig::default());
        let n = frags.len();
        let mut done = None;
        for (k, f) in frags.iter().enumerate() {
            let res = fresh.push(f, now);
            if k + 1 < n {
                assert_eq!(res, Ok(Reasm::Incomplete), "fragment {k} of {n}");
                if k == dup {
                    // An exact duplicate is dropped and the datagram survives.
                    assert_eq!(fresh.push(f, now), Err(ReasmDrop::Duplicate));
                }
            } else {
                done = Some(res);
            }
        }
        if n == 1 {
            // A single fragment with offset 0 and no more fragments is an atomic fragment.
            continue;
        }
        assert_eq!(done, Some(Ok(Reasm::Complete(whole))), "{n} fragments");
        assert_eq!((fresh.bytes_held(), fresh.datagrams_held()), (0, 0));
        st.restored += 1;
    }
    st
}

/// Seed inputs: an IPv4 and an IPv6 datagram in three fragments, and a raw fragment.
pub fn seeds() -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..100u8).collect();
    let mut out = Vec::new();
    for v6 in [0u8, 1] {
        let mut v = vec![0, 1, v6, 0, 0, 0x12, 0x34];
        put_chunk(&mut v, &payload);
        v.extend_from_slice(&[3, 4, 2, 1, 0, 1]);
        // A raw IPv4 first fragment.
        v.extend_from_slice(&[1, 0]);
        put_chunk(
            &mut v,
            &fragment(&datagram(false, 9, &payload), false, 9, 0, 16),
        );
        out.push(v);
    }
    out
}
