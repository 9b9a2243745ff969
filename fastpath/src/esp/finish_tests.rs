//! The burst's one-case inbound finish for aes-gcm-16 (`InboundSa::finish_gcm_into`)
//! against the generic `InboundSa::finish_into` on twin SAs: random lengths, IPv4 and IPv6,
//! random window positions, and every way a prechecked packet can still fail (forged tag,
//! forged body, bad padding, a pad length past the body, a dummy packet, a replay and a
//! too-old packet caught only at the finish). The same result, the same bytes in the buffer,
//! the same counters and window. Any other SA (CBC, ESN) is refused with nothing done.

use core::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

use super::error::EspError;
use super::sa::{InboundSa, OutboundSa};
use super::{AuthAlg, EncrAlg, SaKeys, Suite, REPLAY_WINDOW};

const ROOM: usize = 128;

/// An aes-cbc + hmac-sha-1-96 suite keyed from `k`: the SA the GCM-only paths must refuse.
pub(super) fn cbc_suite(k: u8) -> Suite {
    Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: vec![k; 20],
            encr_key: vec![k ^ 0x5a; 16],
            salt: [0; 4],
        },
    }
}

pub(super) fn gcm_suite(k: u8) -> Suite {
    Suite {
        auth: AuthAlg::Null,
        encr: EncrAlg::AesGcm,
        keys: SaKeys {
            integ_key: Vec::new(),
            encr_key: (0..16).map(|i| i ^ k).collect(),
            salt: [k, 0xca, 0xfe, 0x01],
        },
    }
}

/// An IPv4 or IPv6 UDP packet of `len` upper-layer bytes (at least 8 for IPv6) with room
/// on both sides.
pub(super) fn ip_packet(r: &mut StdRng, len: usize, v6: bool) -> (Vec<u8>, Range<usize>) {
    let hdr = if v6 { 40 } else { 20 };
    let total = hdr + len;
    let mut buf = vec![0u8; ROOM + total + ROOM];
    let ip = &mut buf[ROOM..ROOM + total];
    if v6 {
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = 64;
        ip[8..40].iter_mut().for_each(|b| *b = r.gen::<u64>() as u8);
    } else {
        ip[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let sum = super::ip::ipv4_checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    ip[hdr..].iter_mut().for_each(|b| *b = r.gen::<u64>() as u8);
    (buf, ROOM..ROOM + total)
}

/// How a case's packet is made or what happens between its precheck and its finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Twist {
    None,
    ForgedTag,
    ForgedBody,
    BadPadding,
    PadPastBody,
    /// Padding 1, 2, 3, ... from the IV's first byte through the body: monotonic, but longer
    /// than the body.
    PadIntoIv,
    /// Next header 59 (RFC 4303 2.6), half of them with bad padding too.
    Dummy,
    /// The same packet decapsulated (a copy) between precheck and finish.
    Replayed,
    /// A packet a window's width ahead decapsulated between precheck and finish.
    TooOld,
}

const TWISTS: [Twist; 9] = [
    Twist::None,
    Twist::ForgedTag,
    Twist::ForgedBody,
    Twist::BadPadding,
    Twist::PadPastBody,
    Twist::PadIntoIv,
    Twist::Dummy,
    Twist::Replayed,
    Twist::TooOld,
];

/// Frames `buf[pkt]` on `out`, applies the trailer twists and seals: the ESP packet's range.
fn seal(
    out: &mut OutboundSa,
    buf: &mut [u8],
    pkt: Range<usize>,
    twist: Twist,
    r: &mut StdRng,
) -> Range<usize> {
    const RAMP_IV: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
    let iv = (twist == Twist::PadIntoIv).then_some(&RAMP_IV[..]);
    let f = out.frame(buf, pkt, iv, None).unwrap();
    let esp = &mut buf[f.esp()];
    let body_end = esp.len() - 16;
    let pad_len = usize::from(esp[body_end - 2]);
    match twist {
        Twist::BadPadding if pad_len > 0 => {
            esp[body_end - 2 - 1 - r.gen_range(0..pad_len)] ^= 1 + r.gen_range(0..255) as u8;
        }
        // No padding to spoil: claim some that is not there.
        Twist::BadPadding => esp[body_end - 2] = 3,
        Twist::PadPastBody => {
            esp[body_end - 2] = (body_end - 2 - 16 + 1 + r.gen_range(0..8)).min(255) as u8
        }
        Twist::PadIntoIv => {
            for (i, b) in esp[16..body_end - 2].iter_mut().enumerate() {
                *b = (i + 9) as u8;
            }
            esp[body_end - 2] = (body_end - 2 - 8).min(255) as u8;
        }
        Twist::Dummy => {
            esp[body_end - 1] = 59;
            // Half of them with bad padding too: the padding is checked first.
            if r.gen_range(0..2) == 0 {
                esp[body_end - 2] = pad_len as u8 + 1 + r.gen_range(0..3) as u8;
            }
        }
        _ => {}
    }
    out.transform().seal(&mut buf[f.esp()], None);
    let esp = &mut buf[f.esp()];
    let n = esp.len();
    match twist {
        Twist::ForgedTag => esp[n - 1 - r.gen_range(0..16)] ^= 1 << r.gen_range(0..8),
        Twist::ForgedBody => esp[8 + r.gen_range(0..n - 24)] ^= 1 << r.gen_range(0..8),
        _ => {}
    }
    f.range()
}

fn assert_same_windows(a: &InboundSa, b: &InboundSa, ctx: &str) {
    let top = a.window().top();
    assert_eq!(top, b.window().top(), "{ctx}: window top");
    for s in top.saturating_sub(REPLAY_WINDOW + 2)..=top + 2 {
        assert_eq!(a.window().check(s), b.window().check(s), "{ctx}: seq {s}");
    }
}

/// Random packets and twists through both finishes; every error of the finish occurs.
#[test]
fn gcm_finish_matches_the_generic_finish() {
    if !super::gcm_ni::available() {
        eprintln!("SKIPPED: needs AES-NI and PCLMULQDQ");
        return;
    }
    let mut r = StdRng::seed_from_u64(0x4106_f1e1_0022_0001);
    let mut seen = std::collections::BTreeSet::new();
    for case in 0..3000 {
        let k = r.gen_range(0..4) as u8;
        let spi = 0x2000 + u32::from(k);
        let mut out = OutboundSa::new(spi, &gcm_suite(k)).unwrap();
        let (mut a, mut b) = (
            InboundSa::new(spi, &gcm_suite(k)).unwrap(),
            InboundSa::new(spi, &gcm_suite(k)).unwrap(),
        );
        let top = r.gen_range(0..5000) as u64;
        a.set_window_top_for_test(top);
        b.set_window_top_for_test(top);
        // Mostly ahead of the top, some inside the window, a few behind it.
        let seq = match r.gen_range(0..4) {
            0 => (top + 1).saturating_sub(r.gen_range(0..REPLAY_WINDOW as usize + 40) as u64),
            _ => top + 1 + r.gen_range(0..100) as u64,
        }
        .max(1);
        out.set_last_seq_for_test(seq - 1);
        let len = match r.gen_range(0..4) {
            0 => 1300 + r.gen_range(0..200),
            _ => r.gen_range(0..200),
        };
        let v6 = len >= 8 && r.gen_range(0..3) == 0;
        let twist = TWISTS[r.gen_range(0..TWISTS.len())];
        let (mut buf, pkt) = ip_packet(&mut r, len, v6);
        let pkt = seal(&mut out, &mut buf, pkt, twist, &mut r);
        let ctx = format!("case {case}: {twist:?}, len {len}, v6 {v6}, seq {seq}, top {top}");
        let c = match a.precheck(&buf, pkt.clone(), None) {
            Ok(c) => c,
            Err(e) => {
                assert_eq!(b.precheck(&buf, pkt, None).err(), Some(e), "{ctx}");
                seen.insert(format!("precheck {e:?}"));
                continue;
            }
        };
        match twist {
            Twist::Replayed => {
                for sa in [&mut a, &mut b] {
                    let mut copy = buf.clone();
                    sa.decapsulate(&mut copy, pkt.clone()).unwrap();
                }
            }
            Twist::TooOld => {
                let ahead = seq + REPLAY_WINDOW + r.gen_range(0..50) as u64;
                out.set_last_seq_for_test(ahead - 1);
                let (mut other, p) = ip_packet(&mut r, 20, false);
                let p = seal(&mut out, &mut other, p, Twist::None, &mut r);
                for sa in [&mut a, &mut b] {
                    let mut copy = other.clone();
                    sa.decapsulate(&mut copy, p.clone()).unwrap();
                }
            }
            _ => {}
        }
        let (mut buf_a, mut buf_b) = (buf.clone(), buf);
        let (mut res_a, mut res_b) = (Err(EspError::Truncated), Err(EspError::Truncated));
        a.finish_into(&mut buf_a, &c, None, &mut res_a);
        assert!(b.finish_gcm_into(&mut buf_b, &c, &mut res_b), "{ctx}");
        assert_eq!(res_a, res_b, "{ctx}");
        assert!(buf_a == buf_b, "{ctx}: buffers differ");
        assert_eq!(a.counters(), b.counters(), "{ctx}");
        assert_same_windows(&a, &b, &ctx);
        seen.insert(format!("{:?}", res_a.map(|_| ())));
    }
    for want in [
        "Ok(())",
        "Err(AuthFailed)",
        "Err(BadPadding)",
        "Err(Dummy)",
        "Err(Replayed)",
        "Err(TooOld)",
    ] {
        assert!(seen.contains(want), "never finished with {want}: {seen:?}");
    }
}

/// Any SA but a non-ESN aes-gcm-16 one on AES-NI: refused, nothing touched.
#[test]
fn gcm_finish_refuses_other_sas() {
    let cbc = cbc_suite(7);
    let mut r = StdRng::seed_from_u64(0x4106_0022_e5e5);
    for (suite, esn) in [(cbc, false), (gcm_suite(1), true)] {
        let mut out = OutboundSa::new(0x3000, &suite).unwrap();
        let mut inb = InboundSa::new(0x3000, &suite).unwrap();
        if esn {
            out = out.with_esn().unwrap();
            inb = inb.with_esn().unwrap();
        }
        let (mut buf, pkt) = ip_packet(&mut r, 100, false);
        let pkt = out.encapsulate(&mut buf, pkt).unwrap();
        let c = inb.precheck(&buf, pkt, None).unwrap();
        let before = buf.clone();
        let mut res = Err(EspError::Truncated);
        assert!(!inb.finish_gcm_into(&mut buf, &c, &mut res));
        assert_eq!(res, Err(EspError::Truncated));
        assert!(buf == before);
        assert_eq!(inb.counters(), Default::default());
        assert_eq!(inb.window().top(), 0);
    }
}

/// The non-ESN AES-GCM ESP packets of draft-mcgrew-gcm-test-01 (the RFC 4106 vectors,
/// `tests/fixtures/esp/rfc_vectors.json`) decapsulated by `finish_gcm_into` (128-bit keys;
/// the others are refused and go the generic way) and, all in one burst, by
/// `decapsulate_burst`: each restores the packet the draft's plaintext carries.
#[test]
fn gcm_finish_opens_the_rfc_4106_vectors() {
    use super::burst::{decapsulate_burst, DecapItem};
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/esp/rfc_vectors.json")).unwrap();
    let h = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
    let ipv4 = |proto: u8, payload: &[u8]| {
        let mut p = hex::decode("450000000001000040000000c0a87b03c0a87b64").unwrap();
        p[9] = proto;
        p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        let sum = super::ip::ipv4_checksum(&p);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(payload);
        p
    };
    let in_buffer = |pkt: &[u8]| {
        let mut buf = vec![0xeeu8; ROOM + pkt.len() + ROOM];
        buf[ROOM..ROOM + pkt.len()].copy_from_slice(pkt);
        (buf, ROOM..ROOM + pkt.len())
    };
    // (SA, the ESP packet, the packet it restores)
    let mut cases = Vec::new();
    for c in v["aes_gcm_esp"]["cases"].as_array().unwrap() {
        if c["esn"].as_bool() != Some(false) {
            continue;
        }
        let aad = h(&c["aad"]);
        let spi = u32::from_be_bytes(aad[0..4].try_into().unwrap());
        if spi <= 255 {
            continue;
        }
        let salt: [u8; 4] = h(&c["salt"]).try_into().unwrap();
        let suite = Suite {
            auth: AuthAlg::Null,
            encr: EncrAlg::AesGcm,
            keys: SaKeys {
                integ_key: Vec::new(),
                encr_key: h(&c["key"]),
                salt,
            },
        };
        let body = h(&c["plaintext"]);
        let (nh, pad) = (body[body.len() - 1], usize::from(body[body.len() - 2]));
        let original = ipv4(nh, &body[..body.len() - 2 - pad]);
        let mut esp = aad.clone();
        esp.extend(h(&c["iv"]));
        esp.extend(h(&c["ciphertext"]));
        esp.extend(h(&c["icv"]));
        let ni = c["key_bits"].as_u64() == Some(128);
        cases.push((spi, suite, ipv4(50, &esp), original, ni));
    }
    assert_eq!(cases.len(), 4, "non-ESN AES-GCM vectors with a usable SPI");
    let mut fast = 0;
    for (spi, suite, esp, original, ni) in &cases {
        let mut sa = InboundSa::new(*spi, suite).unwrap();
        let (mut buf, pkt) = in_buffer(esp);
        let c = sa.precheck(&buf, pkt, None).unwrap();
        let mut res = Err(EspError::Truncated);
        let done = sa.finish_gcm_into(&mut buf, &c, &mut res);
        assert_eq!(done, *ni && super::gcm_ni::available(), "SPI {spi:#x}");
        if done {
            assert_eq!(buf[res.unwrap()], original[..], "SPI {spi:#x}");
            fast += 1;
        }
    }
    assert!(fast == 2 || !super::gcm_ni::available());
    let mut sas: Vec<InboundSa> = cases
        .iter()
        .map(|(spi, suite, ..)| InboundSa::new(*spi, suite).unwrap())
        .collect();
    let mut bufs: Vec<_> = cases.iter().map(|(_, _, esp, ..)| in_buffer(esp)).collect();
    let mut items: Vec<DecapItem<'_>> = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, (buf, pkt))| DecapItem::new(i, buf, pkt.clone()))
        .collect();
    decapsulate_burst(&mut sas, &mut items).unwrap();
    for (it, (spi, _, _, original, _)) in items.iter().zip(&cases) {
        let r = it.result.clone().unwrap();
        assert_eq!(it.buf[r], original[..], "burst, SPI {spi:#x}");
    }
}
