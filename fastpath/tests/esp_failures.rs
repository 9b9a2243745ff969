//! Every inbound failure of RFC 4303 3.4 is a typed error with its own counter, and hostile
//! input (truncations, garbage) never panics; outbound sequence numbers never cycle.

use akagate_fastpath::esp::ip::ipv4_checksum;
use akagate_fastpath::esp::{
    cbc, AuthAlg, EncrAlg, EspError, InboundSa, OutboundSa, SaKeys, Suite, REPLAY_WINDOW,
};
use hmac::{Hmac, Mac};

const ROOM: usize = 128;
const SPI: u32 = 0x1234_5678;
const CK: [u8; 16] = [0x42; 16];
const IK: [u8; 20] = [0x24; 20];

fn suite(auth: AuthAlg, encr: EncrAlg) -> Suite {
    let (integ_key, encr_key) = match (auth, encr) {
        (_, EncrAlg::AesGcm) => (vec![], CK.to_vec()),
        (AuthAlg::AesGmac, _) => (CK.to_vec(), vec![]),
        (AuthAlg::HmacMd5_96, e) => (IK[..16].to_vec(), ek(e)),
        (AuthAlg::HmacSha1_96, e) => (IK.to_vec(), ek(e)),
        (AuthAlg::Null, e) => (vec![], ek(e)),
    };
    Suite {
        auth,
        encr,
        keys: SaKeys {
            integ_key,
            encr_key,
            salt: [9, 8, 7, 6],
        },
    }
}

fn ek(e: EncrAlg) -> Vec<u8> {
    match e {
        EncrAlg::DesEde3Cbc => (1..=24).collect(),
        EncrAlg::Null => vec![],
        _ => CK.to_vec(),
    }
}

fn all_suites() -> Vec<Suite> {
    vec![
        suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        suite(AuthAlg::HmacMd5_96, EncrAlg::AesCbc),
        suite(AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc),
        suite(AuthAlg::HmacSha1_96, EncrAlg::Null),
        suite(AuthAlg::HmacMd5_96, EncrAlg::Null),
        suite(AuthAlg::HmacSha1_96, EncrAlg::AesGcm),
        suite(AuthAlg::AesGmac, EncrAlg::Null),
    ]
}

fn udp4(len: usize) -> Vec<u8> {
    let mut p = hex::decode("4500000000000000401100000a0000010a000002").unwrap();
    p[2..4].copy_from_slice(&((28 + len) as u16).to_be_bytes());
    let sum = ipv4_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend([0x13, 0xc4, 0x13, 0xc4]);
    p.extend(((8 + len) as u16).to_be_bytes());
    p.extend([0, 0]);
    p.extend((0..len).map(|i| i as u8));
    p
}

fn encap(sa: &mut OutboundSa, pkt: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ROOM + pkt.len() + ROOM];
    buf[ROOM..ROOM + pkt.len()].copy_from_slice(pkt);
    let r = sa.encapsulate(&mut buf, ROOM..ROOM + pkt.len()).unwrap();
    buf[r].to_vec()
}

fn decap(sa: &mut InboundSa, pkt: &[u8]) -> Result<Vec<u8>, EspError> {
    let mut buf = vec![0u8; ROOM + pkt.len() + ROOM];
    buf[ROOM..ROOM + pkt.len()].copy_from_slice(pkt);
    let r = sa.decapsulate(&mut buf, ROOM..ROOM + pkt.len())?;
    Ok(buf[r].to_vec())
}

fn pair(s: &Suite) -> (OutboundSa, InboundSa) {
    (
        OutboundSa::new(SPI, s).unwrap(),
        InboundSa::new(SPI, s).unwrap(),
    )
}

#[test]
fn replayed_and_left_of_window() {
    for s in all_suites() {
        let (mut out, mut inb) = pair(&s);
        let first = encap(&mut out, &udp4(10));
        let second = encap(&mut out, &udp4(11));
        assert_eq!(decap(&mut inb, &second), Ok(udp4(11)));
        assert_eq!(decap(&mut inb, &second), Err(EspError::Replayed));
        // Out of order inside the window is fine, once.
        assert_eq!(decap(&mut inb, &first), Ok(udp4(10)));
        assert_eq!(decap(&mut inb, &first), Err(EspError::Replayed));
        let third = encap(&mut out, &udp4(12));
        out.set_last_seq_for_test(3 + REPLAY_WINDOW);
        let far = encap(&mut out, &udp4(13));
        assert_eq!(decap(&mut inb, &far), Ok(udp4(13)));
        // Seq 3 is now exactly REPLAY_WINDOW below the top: left of the window.
        assert_eq!(decap(&mut inb, &third), Err(EspError::TooOld));
        let c = inb.counters();
        assert_eq!(
            (c.packets, c.replay, c.too_old, c.dropped()),
            (3, 2, 1, 3),
            "{s:?}"
        );
    }
}

#[test]
fn flipped_bits_fail_authentication_and_do_not_move_the_window() {
    for s in all_suites() {
        let (mut out, mut inb) = pair(&s);
        let good = encap(&mut out, &udp4(40));
        // Every bit of the ESP part: SPI, seq, IV, ciphertext, trailer, ICV.
        for byte in 20..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[byte] ^= 1 << bit;
                let e = decap(&mut inb, &bad).unwrap_err();
                let expect = if byte < 24 {
                    EspError::SpiMismatch
                } else {
                    EspError::AuthFailed
                };
                // A flipped seq bit can also be a zero seq (TooOld); everything else is auth.
                assert!(
                    e == expect || (byte < 28 && e == EspError::TooOld),
                    "{s:?} byte {byte} bit {bit}: {e:?}"
                );
            }
        }
        assert_eq!(inb.window().top(), 0, "forgeries must not move the window");
        assert_eq!(decap(&mut inb, &good), Ok(udp4(40)));
        assert!(inb.counters().auth_failed > 0);
    }
}

fn hmac_sha1_96(data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(&IK).unwrap();
    m.update(data);
    m.finalize().into_bytes()[..12].to_vec()
}

/// Rewrites the plaintext of an authenticated hmac-sha-1-96 packet (null or AES-CBC) and
/// re-signs it with the `hmac` crate, so only the padding check can catch the change.
fn tamper_trailer(pkt: &[u8], cbc_mode: bool, f: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut p = pkt.to_vec();
    let icv_at = p.len() - 12;
    let iv_len = if cbc_mode { 16 } else { 0 };
    let body = 28 + iv_len;
    if cbc_mode {
        let iv: [u8; 16] = p[28..44].try_into().unwrap();
        cbc::aes128_decrypt(&CK, &iv, &mut p[body..icv_at]);
        f(&mut p[body..icv_at]);
        cbc::aes128_encrypt(&CK, &iv, &mut p[body..icv_at]);
    } else {
        f(&mut p[body..icv_at]);
    }
    let icv = hmac_sha1_96(&p[20..icv_at]);
    p[icv_at..].copy_from_slice(&icv);
    p
}

#[test]
fn bad_padding_and_dummy_packets() {
    for (encr, cbc_mode) in [(EncrAlg::Null, false), (EncrAlg::AesCbc, true)] {
        let s = suite(AuthAlg::HmacSha1_96, encr);
        let (mut out, mut inb) = pair(&s);
        // 13-byte UDP payload: 41-byte IP payload, AES pads 5, null pads 1.
        let good = encap(&mut out, &udp4(13));
        let untouched = tamper_trailer(&good, cbc_mode, |_| {});
        assert_eq!(
            decap(&mut inb, &untouched),
            Ok(udp4(13)),
            "re-signing is faithful"
        );

        let pkt = encap(&mut out, &udp4(13));
        let bad = tamper_trailer(&pkt, cbc_mode, |b| {
            let n = b.len();
            b[n - 3] ^= 0x40; // last padding byte
        });
        assert_eq!(decap(&mut inb, &bad), Err(EspError::BadPadding), "{encr:?}");

        let pkt = encap(&mut out, &udp4(13));
        let bad = tamper_trailer(&pkt, cbc_mode, |b| {
            let n = b.len();
            b[n - 2] = 200; // pad length beyond the body
        });
        assert_eq!(decap(&mut inb, &bad), Err(EspError::BadPadding), "{encr:?}");

        let pkt = encap(&mut out, &udp4(13));
        let dummy = tamper_trailer(&pkt, cbc_mode, |b| {
            let n = b.len();
            b[n - 1] = 59;
        });
        assert_eq!(decap(&mut inb, &dummy), Err(EspError::Dummy), "{encr:?}");
        let c = inb.counters();
        assert_eq!((c.bad_padding, c.dummy, c.packets), (2, 1, 1));
    }
}

#[test]
fn truncations_of_every_length_never_panic() {
    for s in all_suites() {
        let (mut out, mut inb) = pair(&s);
        let good = encap(&mut out, &udp4(50));
        for len in 0..good.len() {
            // As cut (the IP length field now lies) ...
            assert!(decap(&mut inb, &good[..len]).is_err(), "{s:?} len {len}");
            // ... and with the IP length field made consistent, to reach the ESP checks.
            let mut cut = good[..len].to_vec();
            if len >= 20 {
                cut[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                cut[10..12].fill(0);
                let sum = ipv4_checksum(&cut[..20]);
                cut[10..12].copy_from_slice(&sum.to_be_bytes());
            }
            assert!(decap(&mut inb, &cut).is_err(), "{s:?} fixed len {len}");
        }
        assert_eq!(decap(&mut inb, &good), Ok(udp4(50)));
        assert!(inb.counters().truncated > 0);
    }
}

#[test]
fn garbage_never_panics() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sas: Vec<InboundSa> = all_suites()
        .iter()
        .map(|s| InboundSa::new(SPI, s).unwrap())
        .collect();
    for _ in 0..20_000 {
        let len = (next() % 120) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len > 40 {
            // Make it look like IPv4/IPv6 ESP for the SA often enough to go deep.
            let v6 = next() % 2 == 0;
            p[0] = if v6 { 0x60 } else { 0x45 };
            if v6 {
                p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
                p[6] = [50, 0, 60, 43, 44][(next() % 5) as usize];
            } else {
                p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                p[6] = 0;
                p[7] = 0;
                p[9] = 50;
                p[20..24].copy_from_slice(&SPI.to_be_bytes());
                p[10..12].fill(0);
                let sum = ipv4_checksum(&p[..20]);
                p[10..12].copy_from_slice(&sum.to_be_bytes());
            }
        }
        let _ = akagate_fastpath::esp::peek_spi(&p);
        for sa in sas.iter_mut() {
            assert!(decap(sa, &p).is_err());
        }
    }
}

#[test]
fn sequence_number_exhaustion() {
    for s in all_suites() {
        let (mut out, mut inb) = pair(&s);
        out.set_last_seq_for_test(u64::from(u32::MAX - 1));
        let last = encap(&mut out, &udp4(5));
        assert_eq!(&last[24..28], &u32::MAX.to_be_bytes());
        assert_eq!(decap(&mut inb, &last), Ok(udp4(5)));
        for _ in 0..3 {
            let p = udp4(5);
            let mut buf = vec![0u8; ROOM + p.len() + ROOM];
            buf[ROOM..ROOM + p.len()].copy_from_slice(&p);
            let r = out.encapsulate(&mut buf, ROOM..ROOM + p.len());
            assert_eq!(r, Err(EspError::SeqExhausted));
            // The packet is left untouched.
            assert_eq!(&buf[ROOM..ROOM + p.len()], &p[..]);
        }
        assert_eq!(out.counters().seq_exhausted, 3);
        assert_eq!(out.last_seq(), u64::from(u32::MAX));
    }
}

/// Issue 14: an SA restored after a restart sends only the sequence numbers of its restart
/// epoch: its first packet is the epoch's first number (beyond everything earlier runs could
/// send) and it never passes the epoch's last, so two runs never share a number with a key
/// (RFC 4303 3.3.3).
#[test]
fn a_restored_sa_sends_only_its_epochs_sequence_numbers() {
    use akagate_proto::ipc::OutboundSeq;
    for s in all_suites() {
        let (out, mut inb) = pair(&s);
        let epoch = OutboundSeq::of_epoch(3).unwrap();
        let mut out = out.resume(epoch);
        let first = encap(&mut out, &udp4(5));
        assert_eq!(&first[24..28], &(3u32 << 26 | 1).to_be_bytes());
        assert_eq!(decap(&mut inb, &first), Ok(udp4(5)));
        out.set_last_seq_for_test(epoch.limit - 1);
        let last = encap(&mut out, &udp4(5));
        assert_eq!(&last[24..28], &((4u32 << 26) - 1).to_be_bytes());
        let p = udp4(5);
        let mut buf = vec![0u8; ROOM + p.len() + ROOM];
        buf[ROOM..ROOM + p.len()].copy_from_slice(&p);
        let r = out.encapsulate(&mut buf, ROOM..ROOM + p.len());
        assert_eq!(
            r,
            Err(EspError::SeqExhausted),
            "the next epoch's numbers stay unused"
        );
        // A first run's SA is confined to epoch 0.
        let (out, _) = pair(&s);
        let mut out = out.resume(OutboundSeq::of_epoch(0).unwrap());
        out.set_last_seq_for_test((1 << 26) - 1);
        let r = out.encapsulate(&mut buf, ROOM..ROOM + p.len());
        assert_eq!(r, Err(EspError::SeqExhausted));
    }
}

#[test]
fn headroom_tailroom_spi_and_protocol_errors() {
    let s = suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    let (mut out, mut inb) = pair(&s);
    let p = udp4(16);
    let mut buf = vec![0u8; 16 + p.len() + 64];
    buf[16..16 + p.len()].copy_from_slice(&p);
    assert_eq!(out.headroom(), 24);
    assert_eq!(
        out.encapsulate(&mut buf, 16..16 + p.len()),
        Err(EspError::NoHeadroom)
    );
    let mut buf = vec![0u8; 64 + p.len() + 19]; // needs 6 pad + 2 + 12 ICV
    buf[64..64 + p.len()].copy_from_slice(&p);
    assert_eq!(
        out.encapsulate(&mut buf, 64..64 + p.len()),
        Err(EspError::NoTailroom)
    );
    assert_eq!(out.counters().no_room, 2);
    assert_eq!(
        out.last_seq(),
        0,
        "failed packets consume no sequence number"
    );

    let esp = encap(&mut out, &p);
    let mut other = InboundSa::new(SPI + 1, &s).unwrap();
    assert_eq!(decap(&mut other, &esp), Err(EspError::SpiMismatch));
    assert_eq!(decap(&mut inb, &p), Err(EspError::NotEsp));
    assert_eq!(akagate_fastpath::esp::peek_spi(&esp), Ok(SPI));
    assert_eq!(akagate_fastpath::esp::peek_spi(&p), Err(EspError::NotEsp));
    let mut frag = esp.clone();
    frag[6] = 0x20;
    assert_eq!(decap(&mut inb, &frag), Err(EspError::Fragment));
    let mut corrupt = esp.clone();
    corrupt[15] ^= 1; // source address, not covered by the ICV
    assert_eq!(decap(&mut inb, &corrupt), Err(EspError::BadIpHeader));
    assert_eq!(decap(&mut inb, &esp), Ok(p));
}

#[test]
fn bad_suites_and_keys_are_refused_and_debug_hides_keys() {
    let mut s = suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    assert!(OutboundSa::new(255, &s).is_err());
    s.keys.integ_key.pop();
    assert!(InboundSa::new(SPI, &s).is_err());
    let gmac_with_cbc = suite(AuthAlg::AesGmac, EncrAlg::AesCbc);
    assert!(OutboundSa::new(SPI, &gmac_with_cbc).is_err());

    let s = suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    let (out, inb) = pair(&s);
    let text = format!("{out:?} {inb:?} {s:?}");
    for key in [hex::encode(CK), hex::encode(IK), format!("{:?}", &CK[..4])] {
        assert!(!text.contains(&key), "{text}");
    }
    assert!(!text.contains("66, 66"), "{text}");
}

/// Inside hmac-sha-1-96 + aes-cbc bursts of every size class (single path, the four or five
/// long packets Intel sends to the kernels, six and more, full groups of 16 and 32), at
/// lengths that end the CBC decryption on each tail shape: a packet whose ICV is forged and
/// one re-signed with bad padding are dropped and counted under their reasons, the others
/// restored byte for byte.
#[test]
fn bad_padding_and_forged_icvs_inside_bursts() {
    use akagate_fastpath::esp::{decapsulate_burst, DecapItem};
    let s = suite(AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    for n in [3usize, 4, 5, 6, 8, 16, 32] {
        for len in [13usize, 61, 200, 777, 1380, 1392] {
            let (mut out, mut inb) = pair(&s);
            let mut pkts: Vec<Vec<u8>> = (0..n).map(|_| encap(&mut out, &udp4(len))).collect();
            pkts[1] = tamper_trailer(&pkts[1], true, |b| {
                let k = b.len();
                b[k - 3] ^= 0x40; // last padding byte
            });
            let at = pkts[2].len() - 20;
            pkts[2][at] ^= 0x10; // ciphertext: the ICV no longer matches
            let mut bufs: Vec<Vec<u8>> = pkts
                .iter()
                .map(|p| {
                    let mut b = vec![0u8; ROOM + p.len() + ROOM];
                    b[ROOM..ROOM + p.len()].copy_from_slice(p);
                    b
                })
                .collect();
            let mut items: Vec<DecapItem<'_>> = bufs
                .iter_mut()
                .zip(&pkts)
                .map(|(b, p)| DecapItem::new(0, b, ROOM..ROOM + p.len()))
                .collect();
            decapsulate_burst(core::slice::from_mut(&mut inb), &mut items).unwrap();
            let results: Vec<_> = items.iter().map(|i| i.result.clone()).collect();
            drop(items);
            for (i, r) in results.iter().enumerate() {
                match i {
                    1 => assert_eq!(r, &Err(EspError::BadPadding), "n {n} len {len}"),
                    2 => assert_eq!(r, &Err(EspError::AuthFailed), "n {n} len {len}"),
                    _ => {
                        let range = r.clone().unwrap();
                        assert_eq!(bufs[i][range], udp4(len)[..], "n {n} len {len} packet {i}");
                    }
                }
            }
            let c = inb.counters();
            assert_eq!(
                (c.bad_padding, c.auth_failed, c.packets),
                (1, 1, n as u64 - 2),
                "n {n} len {len}"
            );
        }
    }
}
