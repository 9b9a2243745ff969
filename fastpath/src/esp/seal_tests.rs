//! The burst's one-case outbound seal for aes-gcm-16 (`OutboundSa::seal_gcm`) against the
//! generic `Transform::seal` on twin SAs (the same IV mask): random lengths, IPv4 and IPv6,
//! with and without ESN, sequence numbers across the 32-bit boundary. The same bytes in the
//! buffer, the ESP header and counter IV as RFC 4106 8.1 says, and every packet opens. Any
//! other SA (CBC) is refused with nothing done.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

use super::finish_tests::{cbc_suite, gcm_suite, ip_packet};
use super::sa::{InboundSa, OutboundSa};

/// Twin outbound SAs of key `k` whose IV masks are drawn from the same seed.
fn twins(spi: u32, k: u8, esn: bool, seed: u64) -> [OutboundSa; 2] {
    [0, 1].map(|_| {
        let sa = OutboundSa::seeded_from(spi, &gcm_suite(k), StdRng::seed_from_u64(seed)).unwrap();
        if esn {
            sa.with_esn().unwrap()
        } else {
            sa
        }
    })
}

/// Random packets framed on both twins, sealed by `seal_gcm` on one and `Transform::seal`
/// on the other: the same buffers; header, IV and ICV where RFC 4106 puts them.
#[test]
fn gcm_seal_matches_the_generic_seal() {
    if !super::gcm_ni::available() {
        eprintln!("SKIPPED: needs AES-NI and PCLMULQDQ");
        return;
    }
    let mut r = StdRng::seed_from_u64(0x4106_5ea1_0023_0001);
    for case in 0..2000 {
        let k = r.gen_range(0..4) as u8;
        let spi = 0x3000 + u32::from(k);
        let esn = r.gen_range(0..3) == 0;
        let [mut a, mut b] = twins(spi, k, esn, r.gen::<u64>());
        // Some just below and across the 32-bit boundary (ESN), the rest small.
        let last = match r.gen_range(0..4) {
            0 if esn => u64::from(u32::MAX) - 2 + r.gen_range(0..5) as u64,
            _ => r.gen_range(0..100_000) as u64,
        };
        a.set_last_seq_for_test(last);
        b.set_last_seq_for_test(last);
        let len = match r.gen_range(0..3) {
            0 => 1300 + r.gen_range(0..200),
            _ => r.gen_range(0..200),
        };
        let v6 = len >= 8 && r.gen_range(0..3) == 0;
        let (template, pkt) = ip_packet(&mut r, len, v6);
        let ctx = format!("case {case}: len {len}, v6 {v6}, esn {esn}, last {last}");
        let (mut ba, mut bb) = (template.clone(), template);
        let fa = a.frame(&mut ba, pkt.clone(), None, None).unwrap();
        let fb = b.frame(&mut bb, pkt, None, None).unwrap();
        assert_eq!(fa, fb, "{ctx}");
        assert_eq!(ba, bb, "{ctx}: framed");
        // The framing's single store: SPI, low sequence number, the masked counter IV.
        let seq = last + 1;
        let esp = &ba[fa.esp()];
        assert_eq!(esp[..4], spi.to_be_bytes(), "{ctx}: SPI");
        assert_eq!(esp[4..8], (seq as u32).to_be_bytes(), "{ctx}: seq");
        let mask = u64::from_be_bytes(esp[8..16].try_into().unwrap()) ^ seq;
        a.transform().seal(&mut ba[fa.esp()], fa.seq_hi());
        assert!(b.seal_gcm(&mut bb, &fb), "{ctx}: refused");
        assert_eq!(ba, bb, "{ctx}: sealed");
        // The mask is the SA's own: the next packet's IV is its sequence number under it.
        let (mut next, p2) = ip_packet(&mut r, 16, false);
        let f2 = b.frame(&mut next, p2, None, None).unwrap();
        let iv2 = u64::from_be_bytes(next[f2.esp()][8..16].try_into().unwrap());
        assert_eq!(iv2 ^ mask, seq + 1, "{ctx}: counter IV");
        // And it opens.
        let mut inb = InboundSa::new(spi, &gcm_suite(k)).unwrap();
        if esn {
            inb = inb.with_esn().unwrap();
            inb.set_window_top_for_test(last);
        }
        assert!(inb.decapsulate(&mut bb, fb.range()).is_ok(), "{ctx}: opens");
    }
}

/// A CBC SA is not sealed by `seal_gcm`: false, the buffer untouched.
#[test]
fn gcm_seal_refuses_other_sas() {
    let mut sa = OutboundSa::new(0x3100, &cbc_suite(5)).unwrap();
    let mut r = StdRng::seed_from_u64(7);
    let (mut buf, pkt) = ip_packet(&mut r, 100, false);
    let f = sa.frame(&mut buf, pkt, None, None).unwrap();
    let before = buf.clone();
    assert!(!sa.seal_gcm(&mut buf, &f));
    assert_eq!(buf, before);
}
