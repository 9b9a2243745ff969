//! A suite keyed once ([`KeyedSuite`]) gives SAs that are keyed exactly as SAs keyed on their
//! own: the four SAs of a set share IK_ESP and CK_ESP (TS 33.203 7.1), so the worker keys a
//! set once and copies the schedule. Checked both ways against independently keyed SAs, for
//! every suite, with each SA keeping its own sequence numbers and replay window.

use akagate_fastpath::esp::{
    AuthAlg, EncrAlg, EspError, InboundSa, KeyedSuite, OutboundSa, SaKeys, Suite,
};

const SUITES: [(AuthAlg, EncrAlg, usize, usize); 6] = [
    (AuthAlg::HmacSha1_96, EncrAlg::AesCbc, 20, 16),
    (AuthAlg::HmacMd5_96, EncrAlg::AesCbc, 16, 16),
    (AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc, 20, 24),
    (AuthAlg::HmacSha1_96, EncrAlg::Null, 20, 0),
    (AuthAlg::Null, EncrAlg::AesGcm, 0, 16),
    (AuthAlg::AesGmac, EncrAlg::Null, 16, 0),
];

fn suite(auth: AuthAlg, encr: EncrAlg, ik: usize, ek: usize, seed: u8) -> Suite {
    Suite {
        auth,
        encr,
        keys: SaKeys {
            integ_key: (0..ik as u8).map(|b| b.wrapping_mul(7) ^ seed).collect(),
            encr_key: (0..ek as u8).map(|b| b.wrapping_mul(13) ^ seed).collect(),
            salt: [seed, 2, 3, 4],
        },
    }
}

/// An IPv4/UDP packet of `total` bytes at `buf[128..]`, its payload a pattern of `tag`.
fn packet(buf: &mut [u8], total: usize, tag: u8) -> core::ops::Range<usize> {
    buf[128..148].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    buf[130..132].copy_from_slice(&(total as u16).to_be_bytes());
    for (i, b) in buf[148..128 + total].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(tag);
    }
    128..128 + total
}

/// Seals a packet with `out`, opens it with `inb`; the plaintext must come back whole.
/// Returns the ESP sequence number the packet carried.
fn round_trip(out: &mut OutboundSa, inb: &mut InboundSa, tag: u8) -> Result<u32, EspError> {
    let mut buf = vec![0u8; 128 + 1500 + 128];
    let total = 20 + 300;
    let range = packet(&mut buf, total, tag);
    let want = buf[range.clone()].to_vec();
    let sealed = out.encapsulate(&mut buf, range).expect("encapsulate");
    // RFC 4303 2: SPI, then the sequence number, after the 20-byte IPv4 header.
    let at = sealed.start + 20 + 4;
    let seq = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
    let opened = inb.decapsulate(&mut buf, sealed)?;
    // The IP header is rewritten (protocol, length, checksum); the payload comes back whole.
    assert_eq!(opened.len(), want.len());
    assert_eq!(&buf[opened][20..], &want[20..], "plaintext");
    Ok(seq)
}

#[test]
fn sas_of_one_keyed_suite_interoperate_with_sas_keyed_alone() {
    for (auth, encr, ik, ek) in SUITES {
        let s = suite(auth, encr, ik, ek, 0x5a);
        let keyed = KeyedSuite::new(&s).unwrap();
        let rng = || <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9);
        // Keyed once -> keyed alone, and back, twice each (sequence numbers 1 and 2).
        let mut out_keyed = OutboundSa::keyed(0x5000, &keyed, rng()).unwrap();
        let mut in_alone = InboundSa::new(0x5000, &s).unwrap();
        let mut out_alone = OutboundSa::new(0x5001, &s).unwrap();
        let mut in_keyed = InboundSa::keyed(0x5001, &keyed).unwrap();
        for tag in 0..2 {
            let seq = round_trip(&mut out_keyed, &mut in_alone, tag).unwrap();
            assert_eq!(seq, u32::from(tag) + 1);
            round_trip(&mut out_alone, &mut in_keyed, tag).unwrap();
        }
        // A second pair from the same keyed suite starts its own sequence and window: its
        // first packet carries 1 and is not a replay of the first pair's 1.
        let mut out2 = OutboundSa::keyed(0x5002, &keyed, rng()).unwrap();
        let mut in2 = InboundSa::keyed(0x5002, &keyed).unwrap();
        let seq = round_trip(&mut out2, &mut in2, 7).unwrap();
        assert_eq!(seq, 1, "{auth:?}/{encr:?}: its own sequence numbers");
        // Other keys: refused, so the check above can fail.
        let other = suite(auth, encr, ik, ek, 0xa5);
        let mut in_other = InboundSa::new(0x5000, &other).unwrap();
        let mut out3 = OutboundSa::keyed(0x5000, &keyed, rng()).unwrap();
        let refused = round_trip(&mut out3, &mut in_other, 3);
        assert!(refused.is_err(), "{auth:?}/{encr:?}: another key opened it");
        // The set's last SA takes the keyed suite itself: keyed the same.
        let mut out_owned = OutboundSa::keyed_owned(0x5003, keyed, rng()).unwrap();
        let mut in_owned = InboundSa::new(0x5003, &s).unwrap();
        let seq = round_trip(&mut out_owned, &mut in_owned, 5).unwrap();
        assert_eq!(seq, 1, "{auth:?}/{encr:?}: the owned suite's SA");
    }
}

#[test]
fn a_keyed_suite_refuses_what_an_sa_would_and_prints_no_key() {
    let mut s = suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc, 20, 16, 1);
    let printed = format!("{:?}", KeyedSuite::new(&s).unwrap());
    assert!(printed.starts_with("KeyedSuite"), "{printed}");
    assert!(
        !printed.contains("integ") && !printed.contains("encr"),
        "{printed}"
    );
    s.keys.encr_key.pop();
    assert!(KeyedSuite::new(&s).is_err());
    assert!(InboundSa::new(0x5000, &s).is_err());
    let ok = KeyedSuite::new(&suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc, 20, 16, 1)).unwrap();
    assert!(
        InboundSa::keyed(7, &ok).is_err(),
        "reserved SPI (RFC 4303 2.1)"
    );
}
