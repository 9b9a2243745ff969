//! ESP inbound harness shared by `nopanic_esp.rs` and the `esp_inbound` fuzz target: raw bytes,
//! authentic packets forged around arbitrary plaintext (checked against an independent model
//! of RFC 4303 3.4), and encapsulate -> tamper -> decapsulate round trips, for every suite.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::KeyInit;
use akagate_fastpath::esp::ip::layout_outbound;
use akagate_fastpath::esp::{
    peek_spi, AuthAlg, EncrAlg, EspError, InboundSa, OutboundSa, SaKeys, Suite,
};
use cbc::cipher::{block_padding::NoPadding, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use smoltcp::wire::{Ipv4Packet, Ipv6Packet};

use crate::input::{put_chunk, Input};

/// Our inbound SPI in every harness SA.
pub const SPI: u32 = 0x0000_1234;
const CK: [u8; 16] = *b"fuzz-ck-16-bytes";
const IK: [u8; 20] = *b"fuzz-ik-twenty-bytes";
const SALT: [u8; 4] = [0xca, 0xfe, 0xba, 0xbe];
/// Largest ESP body the harness builds, so lengths never approach 65535.
const MAX_BODY: usize = 4096;

/// The algorithm pairs of the seven suites of TS 33.203 Annex H plus the RFC 4106/4543 ones.
const KINDS: [(AuthAlg, EncrAlg); 9] = {
    use AuthAlg::{AesGmac, HmacMd5_96, HmacSha1_96};
    use EncrAlg::{AesCbc, AesGcm, DesEde3Cbc};
    [
        (HmacSha1_96, AesCbc),
        (HmacMd5_96, AesCbc),
        (HmacSha1_96, DesEde3Cbc),
        (HmacMd5_96, DesEde3Cbc),
        (HmacSha1_96, EncrAlg::Null),
        (HmacMd5_96, EncrAlg::Null),
        (HmacSha1_96, AesGcm),
        (AuthAlg::Null, AesGcm),
        (AesGmac, EncrAlg::Null),
    ]
};

/// How many suites [`suites`] returns.
pub const SUITE_COUNT: usize = KINDS.len();

/// The seven suites of TS 33.203 Annex H plus the RFC 4106/4543 ones, with fixed keys.
pub fn suites() -> Vec<Suite> {
    (0..SUITE_COUNT).map(suite_at).collect()
}

/// Suite `i` of [`suites`] (built alone: harness set-up runs per input).
pub fn suite_at(i: usize) -> Suite {
    let (auth, encr) = KINDS[i];
    suite(auth, encr)
}

fn suite(auth: AuthAlg, encr: EncrAlg) -> Suite {
    let integ_key = match (auth, encr) {
        (_, EncrAlg::AesGcm) => vec![],
        (AuthAlg::AesGmac, _) => CK.to_vec(),
        (AuthAlg::HmacMd5_96, _) => IK[..16].to_vec(),
        (AuthAlg::HmacSha1_96, _) => IK.to_vec(),
        (AuthAlg::Null, _) => vec![],
    };
    let encr_key = match encr {
        EncrAlg::Null => vec![],
        EncrAlg::DesEde3Cbc => (1..=24).collect(),
        EncrAlg::AesCbc | EncrAlg::AesGcm => CK.to_vec(),
    };
    Suite {
        auth,
        encr,
        keys: SaKeys {
            integ_key,
            encr_key,
            salt: SALT,
        },
    }
}

/// IV length, cipher block (1: none) and ICV length of a suite (RFC 3602, 2451, 4106, 4543).
fn geometry(s: &Suite) -> (usize, usize, usize) {
    match (s.encr, s.auth) {
        (EncrAlg::AesCbc, _) => (16, 16, 12),
        (EncrAlg::DesEde3Cbc, _) => (8, 8, 12),
        (EncrAlg::AesGcm, _) | (_, AuthAlg::AesGmac) => (8, 1, 16),
        (EncrAlg::Null, _) => (0, 1, 12),
    }
}

/// An IPv4 (with 0-2 option words) or IPv6 (with 0-2 hop-by-hop / destination-options
/// headers) header for `payload_len` bytes of `proto`; returns it and the offset of the
/// protocol / last next-header byte.
pub fn ip_header(inp: &mut Input, v6: bool, proto: u8, payload_len: usize) -> (Vec<u8>, usize) {
    // One control byte: IPv4 option words and DF, or the number of IPv6 extension headers.
    let ctl = inp.u8();
    if !v6 {
        let words = usize::from(ctl % 3);
        let hl = 20 + 4 * words;
        let mut h = vec![0u8; hl];
        h[0] = 0x40 | (hl / 4) as u8;
        h[6] = if ctl & 4 == 4 { 0x40 } else { 0 }; // DF
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&[10, 0, 0, 7]);
        h[16..20].copy_from_slice(&[10, 0, 0, 1]);
        h[20..].fill(1); // NOP options
        let total = u16::try_from(hl + payload_len).unwrap_or(u16::MAX);
        let mut p = Ipv4Packet::new_unchecked(&mut h[..]);
        p.set_total_len(total);
        p.fill_checksum();
        return (h, 9);
    }
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[7] = 64;
    h[8..24].copy_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    h[24..40].copy_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let mut nh_at = 6;
    for i in 0..ctl % 3 {
        // Hop-by-hop only right after the base header (RFC 8200 4.1).
        let kind = if i == 0 && inp.u8() & 1 == 1 { 0 } else { 60 };
        let units = usize::from(inp.u8() % 2);
        let at = h.len();
        h[nh_at] = kind;
        let mut ext = vec![0u8; 8 * (units + 1)];
        ext[1] = units as u8;
        ext[2] = 1; // PadN covering the rest
        ext[3] = (ext.len() - 4) as u8;
        h.extend_from_slice(&ext);
        nh_at = at;
    }
    h[nh_at] = proto;
    let plen = u16::try_from(h.len() - 40 + payload_len).unwrap_or(u16::MAX);
    h[4..6].copy_from_slice(&plen.to_be_bytes());
    (h, nh_at)
}

/// What RFC 4303 3.4 says decapsulating an authentic packet `hdr | ESP(seq, plain)` by a
/// fresh SA yields: the header with next header and lengths fixed, and the payload.
fn model(hdr: &[u8], nh_at: usize, plain: &[u8], seq: u32) -> Result<Vec<u8>, EspError> {
    let n = plain.len();
    if n < 2 {
        return Err(EspError::Truncated);
    }
    if seq == 0 {
        return Err(EspError::TooOld);
    }
    let pad = usize::from(plain[n - 2]);
    let next = plain[n - 1];
    let Some(end) = (n - 2).checked_sub(pad) else {
        return Err(EspError::BadPadding);
    };
    if (1..=pad).any(|i| usize::from(plain[end + i - 1]) != i) {
        return Err(EspError::BadPadding);
    }
    if next == 59 {
        return Err(EspError::Dummy);
    }
    let mut out = hdr.to_vec();
    out[nh_at] = next;
    out.extend_from_slice(&plain[..end]);
    let len = out.len();
    if out[0] >> 4 == 4 {
        let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
        p.set_total_len(len as u16);
        p.fill_checksum();
    } else {
        out[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    }
    Ok(out)
}

fn hmac96(s: &Suite, parts: &[&[u8]]) -> Vec<u8> {
    let mut tag = match s.auth {
        AuthAlg::HmacSha1_96 => {
            let mut m =
                <Hmac<sha1::Sha1> as Mac>::new_from_slice(&s.keys.integ_key).expect("any key");
            parts.iter().for_each(|p| m.update(p));
            m.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut m =
                <Hmac<md5::Md5> as Mac>::new_from_slice(&s.keys.integ_key).expect("any key");
            parts.iter().for_each(|p| m.update(p));
            m.finalize().into_bytes().to_vec()
        }
    };
    tag.truncate(12);
    tag
}

/// ESP (`SPI | seq | IV | body | ICV`) around `plain`, encrypted and authenticated with the
/// suite's keys by the RustCrypto primitives directly (not by the code under test).
fn forge_esp(s: &Suite, seq: u32, iv: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut hdr = SPI.to_be_bytes().to_vec();
    hdr.extend_from_slice(&seq.to_be_bytes());
    hdr.extend_from_slice(iv);
    let mut body = plain.to_vec();
    let icv = match (s.encr, s.auth) {
        (EncrAlg::AesGcm, _) | (_, AuthAlg::AesGmac) => {
            let key = if s.encr == EncrAlg::AesGcm {
                &s.keys.encr_key
            } else {
                &s.keys.integ_key
            };
            let aead = aes_gcm::Aes128Gcm::new_from_slice(key).expect("16-byte key");
            let mut nonce = SALT.to_vec();
            nonce.extend_from_slice(iv);
            let nonce = aes_gcm::Nonce::from_slice(&nonce);
            let tag = if s.encr == EncrAlg::AesGcm {
                // RFC 4106 5: AAD is SPI and sequence number.
                aead.encrypt_in_place_detached(nonce, &hdr[..8], &mut body)
            } else {
                // RFC 4543 3.3: everything is AAD, nothing is encrypted.
                let aad = [&hdr[..], &body[..]].concat();
                aead.encrypt_in_place_detached(nonce, &aad, &mut [])
            };
            tag.expect("in-range lengths").to_vec()
        }
        (EncrAlg::AesCbc, _) => {
            let n = body.len();
            cbc::Encryptor::<aes::Aes128>::new_from_slices(&s.keys.encr_key, iv)
                .expect("key and IV lengths")
                .encrypt_padded_mut::<NoPadding>(&mut body, n)
                .expect("whole blocks");
            hmac96(s, &[&hdr, &body])
        }
        (EncrAlg::DesEde3Cbc, _) => {
            let n = body.len();
            cbc::Encryptor::<des::TdesEde3>::new_from_slices(&s.keys.encr_key, iv)
                .expect("key and IV lengths")
                .encrypt_padded_mut::<NoPadding>(&mut body, n)
                .expect("whole blocks");
            hmac96(s, &[&hdr, &body])
        }
        (EncrAlg::Null, _) => hmac96(s, &[&hdr, &body]),
    };
    [hdr, body, icv].concat()
}

/// Decapsulates `pkt` placed at `lead` in a buffer with `trail` bytes after it, checking the
/// counters and the shape of a restored packet.
fn decap(sa: &mut InboundSa, pkt: &[u8], lead: usize, trail: usize) -> Result<Vec<u8>, EspError> {
    let mut buf = vec![0xa5; lead + pkt.len() + trail];
    buf[lead..lead + pkt.len()].copy_from_slice(pkt);
    let (ok0, drop0) = (sa.counters().packets, sa.counters().dropped());
    let r = sa.decapsulate(&mut buf, lead..lead + pkt.len());
    let (ok1, drop1) = (sa.counters().packets, sa.counters().dropped());
    // Every packet is counted once, as delivered or under one drop reason.
    assert_eq!(
        (ok1 - ok0, drop1 - drop0),
        if r.is_ok() { (1, 0) } else { (0, 1) }
    );
    let r = r?;
    assert!(
        r.start >= lead && r.end <= lead + pkt.len(),
        "{r:?} outside the packet"
    );
    let out = &buf[r];
    match out.first().map(|b| b >> 4) {
        Some(4) => {
            let p = Ipv4Packet::new_checked(out).expect("restored IPv4 header");
            assert_eq!(usize::from(p.total_len()), out.len());
            assert!(p.verify_checksum());
        }
        Some(6) => {
            let p = Ipv6Packet::new_checked(out).expect("restored IPv6 header");
            assert_eq!(40 + usize::from(p.payload_len()), out.len());
        }
        _ => panic!("restored packet is not IP"),
    }
    Ok(out.to_vec())
}

/// How many records of one input reached the interesting ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Forged authentic packets the SA accepted (and the model agreed with).
    pub forged_ok: usize,
    /// Untampered round trips that restored the inner packet.
    pub round_trips: usize,
}

/// Runs one harness input: a suite, then records of raw, forged and round-trip packets.
pub fn run(data: &[u8]) -> Stats {
    let mut stats = Stats::default();
    let mut inp = Input::new(data);
    let all = suites();
    let s = &all[usize::from(inp.u8()) % all.len()];
    let (iv_len, block, _) = geometry(s);
    let mut sa = InboundSa::new(SPI, s).expect("valid fixed suite");
    let mut out_sa = OutboundSa::new(SPI, s).expect("valid fixed suite");
    let mut rt_sa = InboundSa::new(SPI, s).expect("valid fixed suite");
    let mut records = 0;
    while !inp.is_empty() && records < 64 {
        records += 1;
        let (lead, trail) = (usize::from(inp.u8() % 64), usize::from(inp.u8() % 64));
        match inp.u8() % 4 {
            // Arbitrary bytes through the long-lived SA; peek_spi must agree with it.
            0 => {
                let pkt = inp.chunk(MAX_BODY);
                let peek = peek_spi(pkt);
                if let Ok(out) = decap(&mut sa, pkt, lead, trail) {
                    assert_eq!(peek, Ok(SPI));
                    assert!(out.len() <= pkt.len());
                }
            }
            // Authentic packet around arbitrary plaintext, compared with the model.
            1 => {
                let v6 = inp.u8() & 1 == 1;
                let seq = if inp.u8() & 7 == 0 { 0 } else { inp.u32() | 1 };
                let iv = inp.bytes(iv_len).to_vec();
                let mut plain = inp.chunk(MAX_BODY).to_vec();
                plain.truncate(plain.len() / block * block);
                if iv.len() < iv_len {
                    break;
                }
                let esp = forge_esp(s, seq, &iv, &plain);
                let (hdr, nh_at) = ip_header(&mut inp, v6, 50, esp.len());
                let pad = usize::from(inp.u8() % 16);
                let link_pad = inp.bytes(pad);
                let pkt = [&hdr[..], &esp[..], link_pad].concat();
                let mut fresh = InboundSa::new(SPI, s).expect("valid fixed suite");
                let got = decap(&mut fresh, &pkt, lead, trail);
                assert_eq!(
                    got,
                    model(&hdr, nh_at, &plain, seq),
                    "suite {:?}/{:?}",
                    s.auth,
                    s.encr
                );
                // The same packet again is a replay once it was accepted (RFC 4303 3.4.3).
                stats.forged_ok += usize::from(got.is_ok());
                if got.is_ok() || matches!(got, Err(EspError::BadPadding | EspError::Dummy)) {
                    assert_eq!(decap(&mut fresh, &pkt, 0, 0), Err(EspError::Replayed));
                }
            }
            // Unaligned CBC ciphertext with a valid ICV is refused before decryption.
            2 if block > 1 => {
                let v6 = inp.u8() & 1 == 1;
                let iv = inp.bytes(iv_len).to_vec();
                let body = inp.chunk(MAX_BODY).to_vec();
                if iv.len() < iv_len || body.len() < 2 || body.len().is_multiple_of(block) {
                    continue;
                }
                let mut esp = SPI.to_be_bytes().to_vec();
                esp.extend_from_slice(&7u32.to_be_bytes());
                esp.extend_from_slice(&iv);
                esp.extend_from_slice(&body);
                let icv = hmac96(s, &[&esp]);
                esp.extend_from_slice(&icv);
                let (hdr, _) = ip_header(&mut inp, v6, 50, esp.len());
                let pkt = [hdr, esp].concat();
                let mut fresh = InboundSa::new(SPI, s).expect("valid fixed suite");
                assert_eq!(
                    decap(&mut fresh, &pkt, lead, trail),
                    Err(EspError::BadLength)
                );
            }
            // Encapsulate an inner packet, maybe tamper with one ESP byte, decapsulate.
            _ => {
                let v6 = inp.u8() & 1 == 1;
                let proto = [17, 6, 1, 58, 59, 0xfd][usize::from(inp.u8() % 6)];
                let payload = inp.chunk(MAX_BODY).to_vec();
                let (hdr, _) = ip_header(&mut inp, v6, proto, payload.len());
                let inner = [hdr, payload].concat();
                let room = 64;
                let mut buf = vec![0u8; room + inner.len() + room];
                buf[room..room + inner.len()].copy_from_slice(&inner);
                let Ok(r) = out_sa.encapsulate(&mut buf, room..room + inner.len()) else {
                    continue;
                };
                let mut esp = buf[r].to_vec();
                let Ok(esp_at) = layout_outbound(&inner).map(|l| l.payload_offset) else {
                    panic!("encapsulated a packet without an ESP position");
                };
                let tamper = inp.u8();
                if tamper & 1 == 1 {
                    let i = esp_at + usize::from(inp.u16()) % (esp.len() - esp_at);
                    esp[i] ^= 1 << (tamper >> 5);
                    assert!(
                        decap(&mut rt_sa, &esp, lead, trail).is_err(),
                        "tampered byte {i} accepted"
                    );
                } else {
                    let got = decap(&mut rt_sa, &esp, lead, trail);
                    if proto == 59 {
                        assert_eq!(got, Err(EspError::Dummy));
                    } else {
                        assert_eq!(got.as_deref(), Ok(&inner[..]), "round trip");
                        stats.round_trips += 1;
                    }
                }
            }
        }
    }
    stats
}

/// Seed inputs: a forged, a round-trip and a raw record per suite.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (n, s) in suites().iter().enumerate() {
        let (iv_len, _, _) = geometry(s);
        let mut v = vec![n as u8];
        // Forged IPv4 packet: lead, trail, kind 1, v4, seq 2, IV, plaintext with RFC 4303
        // padding 1..=14 and next header 17, no options, no DF, no link padding.
        v.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 2]);
        v.extend(std::iter::repeat_n(7u8, iv_len));
        let mut plain = b"SIP/2.0 payload!".to_vec();
        plain.extend(1..=14u8);
        plain.extend_from_slice(&[14, 17]);
        put_chunk(&mut v, &plain);
        v.extend_from_slice(&[0, 0]);
        // Round trip of an IPv6 UDP packet behind a hop-by-hop header, untampered.
        v.extend_from_slice(&[3, 5, 3, 1, 0]);
        put_chunk(&mut v, b"\x13\xc4\x13\xc4\x00\x0c\x00\x00ping");
        v.extend_from_slice(&[1, 1, 0, 0]);
        // Raw IPv4 ESP header without body.
        v.extend_from_slice(&[0, 0, 0]);
        put_chunk(
            &mut v,
            &[
                0x45, 0, 0, 28, 0, 0, 0, 0, 64, 50, 0, 0, 10, 0, 0, 7, 10, 0, 0, 1, 0, 0, 0x12,
                0x34, 0, 0, 0, 1,
            ],
        );
        out.push(v);
    }
    out
}
