//! Where a burst's time goes (test only): the phases of `burst`'s hmac-sha-1-96 + aes-cbc
//! path run one after the other on the same buffers, each timed with the time-stamp counter,
//! medians over many rounds (robust to the other jobs of a shared box). Kernel work (CBC,
//! SHA-1) against everything around it (framing, checks, lane bookkeeping, header fix);
//! the same for aes-gcm-16 (`gcm_phase_split`).
//!
//! `cargo test --release -p akagate-fastpath --lib esp::phases -- --ignored --nocapture`

#![allow(unsafe_code)]

use core::arch::x86_64::_rdtsc;

use super::burst::{decapsulate_burst, encapsulate_burst, DecapItem, EncapItem};
use super::cbc_mb::{self, CbcKernel, CbcStream};
use super::integ::HMAC96_ICV_LEN;
use super::sa::{InboundSa, OutboundSa};
use super::sha1_mb::HmacJob;
use super::transform::ESP_HDR_LEN;
use super::{sha1_x16, AuthAlg, EncrAlg, SaKeys, Suite};

const BURST: usize = 32;
const SAS: usize = 4;
const ROOM: usize = 128;
const ROUNDS: usize = 3000;

fn suite(i: u8) -> Suite {
    Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: vec![0x11 ^ i; 20],
            encr_key: vec![0x22 ^ i; 16],
            salt: [i, 1, 2, 3],
        },
    }
}

/// An IPv4/UDP packet of `size` payload bytes in a buffer with room, as `bench/benches/esp.rs`.
fn packet(size: usize) -> (Vec<u8>, core::ops::Range<usize>) {
    let total = 20 + size;
    let mut buf = vec![0u8; ROOM + total + ROOM];
    let ip = &mut buf[ROOM..ROOM + total];
    ip[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    let sum = super::ip::ipv4_checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    for (i, b) in ip[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    (buf, ROOM..ROOM + total)
}

fn tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 CPU.
    unsafe { _rdtsc() }
}

fn median(v: &mut [u64]) -> f64 {
    v.sort_unstable();
    v[v.len() / 2] as f64 / BURST as f64
}

/// Mean ticks per packet of the fastest nine rounds in ten (criterion and the baselines
/// report means of CPU time, this file medians of the TSC; the slowest tenth drops the rounds
/// in which the thread was descheduled, which CPU time does not count).
fn mean90(v: &[u64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    let n = v.len() * 9 / 10;
    v[..n].iter().sum::<u64>() as f64 / n as f64 / BURST as f64
}

/// Frames every buffer of a burst as `encapsulate_burst`'s first pass does, buffer `i`
/// with SA `i % SAS`.
fn frame_all(
    bufs: &mut [Vec<u8>],
    sas: &mut [OutboundSa],
    range: &core::ops::Range<usize>,
) -> Vec<super::sa::Framed> {
    bufs.iter_mut()
        .enumerate()
        .map(|(i, b)| {
            let f = sas[i % SAS].frame(b, range.clone(), None, None).unwrap();
            sas[i % SAS].count(Ok(f.payload_len()));
            f
        })
        .collect()
}

/// Outbound and inbound bursts of 32 over 4 SAs at 64 and 1408 bytes, buffers restored before
/// each round (warm): cycles per packet of each phase, and of the whole burst call.
/// The expected hmac-sha-1-96 ICVs of the prechecked inbound packets `bufs` (packet `i` on
/// `sas[i % SAS]`) into `icvs`, through the 16-lane kernel from cold pad states, as the
/// burst's first pass computes them.
fn expected_icvs<B: AsRef<[u8]>>(
    bufs: &[B],
    checked: &[super::sa::Checked],
    sas: &[InboundSa],
    icvs: &mut [[u8; HMAC96_ICV_LEN]; BURST],
) {
    let jobs = bufs
        .iter()
        .zip(checked)
        .zip(icvs.iter_mut())
        .enumerate()
        .map(|(i, ((b, c), icv))| {
            let (_, key) = sas[i % SAS].transform().aes_sha1_ni().unwrap();
            let esp = &b.as_ref()[c.esp()];
            HmacJob {
                key,
                msg: &esp[..esp.len() - HMAC96_ICV_LEN],
                seq_hi: None,
                icv,
            }
        });
    sha1_x16::hmac_sha1_96_cold(jobs);
}

/// The CBC decryption alone of each prechecked inbound packet's body (packet `i` on
/// `sas[i % SAS]`), on an L1 copy (the packets are left as they are), timed per packet:
/// the summed ticks.
fn cbc_on_copies<B: AsRef<[u8]>>(
    bufs: &[B],
    checked: &[super::sa::Checked],
    sas: &[InboundSa],
) -> u64 {
    let mut dec = 0;
    for (i, (b, c)) in bufs.iter().zip(checked).enumerate() {
        let esp = &b.as_ref()[c.esp()];
        let mut body = [0u8; 1536];
        let n = esp.len() - HMAC96_ICV_LEN - ESP_HDR_LEN - 16;
        body[..n].copy_from_slice(&esp[ESP_HDR_LEN + 16..][..n]);
        let iv = &esp[ESP_HDR_LEN..ESP_HDR_LEN + 16];
        let (k, _) = sas[i % SAS].transform().aes_sha1_ni().unwrap();
        let d0 = tsc();
        k.cbc_decrypt(iv, &mut body[..n]);
        dec += tsc() - d0;
    }
    dec
}

#[test]
#[ignore]
fn phase_timing() {
    if !sha1_x16::available() || CbcKernel::detect() != Some(CbcKernel::Vaes16) {
        eprintln!("SKIPPED: needs AVX-512, VAES and SHA-NI");
        return;
    }
    for size in [64usize, 1408] {
        let (template, range) = packet(size);
        let mut sas: Vec<OutboundSa> = (0..SAS as u8)
            .map(|i| OutboundSa::new(0x100 + u32::from(i), &suite(i)).unwrap())
            .collect();
        let mut bufs = vec![template.clone(); BURST];
        let mut t = [(); 9].map(|_| Vec::with_capacity(ROUNDS));
        let mut sealed: Vec<(Vec<u8>, core::ops::Range<usize>)> = Vec::new();
        for round in 0..ROUNDS {
            for b in bufs.iter_mut() {
                b.copy_from_slice(&template);
            }
            // Framing, as `encapsulate_burst`'s first pass.
            let t0 = tsc();
            let framed = frame_all(&mut bufs, &mut sas, &range);
            let t1 = tsc();
            let streams = bufs.iter_mut().zip(&framed).enumerate().map(|(i, (b, f))| {
                let (keys, _) = sas[i % SAS].transform().aes_sha1_ni().unwrap();
                let esp = &mut b[f.esp()];
                let body_end = esp.len() - HMAC96_ICV_LEN;
                let (hdr_iv, rest) = esp[..body_end].split_at_mut(ESP_HDR_LEN + 16);
                CbcStream {
                    keys,
                    iv: hdr_iv[ESP_HDR_LEN..].try_into().unwrap(),
                    data: rest,
                }
            });
            cbc_mb::encrypt(streams, CbcKernel::Vaes16);
            let t2 = tsc();
            let jobs = bufs.iter_mut().zip(&framed).enumerate().map(|(i, (b, f))| {
                let (_, key) = sas[i % SAS].transform().aes_sha1_ni().unwrap();
                let esp = &mut b[f.esp()];
                let (msg, icv) = esp.split_at_mut(esp.len() - HMAC96_ICV_LEN);
                HmacJob {
                    key,
                    msg,
                    seq_hi: None,
                    icv,
                }
            });
            sha1_x16::hmac_sha1_96(jobs);
            let t3 = tsc();
            if round == 0 {
                sealed = bufs
                    .iter()
                    .zip(&framed)
                    .map(|(b, f)| (b.clone(), f.range()))
                    .collect();
            }
            for b in bufs.iter_mut() {
                b.copy_from_slice(&template);
            }
            let mut items: Vec<EncapItem<'_>> = bufs
                .iter_mut()
                .enumerate()
                .map(|(i, b)| EncapItem::new(i % SAS, b, range.clone()))
                .collect();
            let t4 = tsc();
            encapsulate_burst(&mut sas, &mut items).unwrap();
            let t5 = tsc();
            t[0].push(t1 - t0);
            t[1].push(t2 - t1);
            t[2].push(t3 - t2);
            t[3].push(t5 - t4);
        }
        // Inbound on the packets sealed in round 0 (sequence numbers 1..=8 per SA).
        let fresh = || -> Vec<InboundSa> {
            (0..SAS as u8)
                .map(|i| InboundSa::new(0x100 + u32::from(i), &suite(i)).unwrap())
                .collect()
        };
        let mut ibufs: Vec<Vec<u8>> = sealed.iter().map(|(b, _)| b.clone()).collect();
        for _ in 0..ROUNDS {
            for (b, (s, _)) in ibufs.iter_mut().zip(&sealed) {
                b.copy_from_slice(s);
            }
            let mut inb = fresh();
            let t0 = tsc();
            let checked: Vec<_> = ibufs
                .iter()
                .zip(&sealed)
                .enumerate()
                .map(|(i, (b, (_, r)))| inb[i % SAS].precheck(b, r.clone(), None).unwrap())
                .collect();
            let t1 = tsc();
            let mut icvs = [[0u8; HMAC96_ICV_LEN]; BURST];
            expected_icvs(&ibufs, &checked, &inb, &mut icvs);
            let t2 = tsc();
            // CBC decryption alone, on copies of the bodies (timed), then `finish` on the
            // packets (which decrypts them again: its own time less `dec` is the rest).
            let dec = cbc_on_copies(&ibufs, &checked, &inb);
            let t3 = tsc();
            for (i, ((b, c), icv)) in ibufs.iter_mut().zip(&checked).zip(&icvs).enumerate() {
                inb[i % SAS].finish(b, c, Some(icv)).unwrap();
            }
            let t4 = tsc();
            for (b, (s, _)) in ibufs.iter_mut().zip(&sealed) {
                b.copy_from_slice(s);
            }
            inb = fresh();
            let mut items: Vec<DecapItem<'_>> = ibufs
                .iter_mut()
                .zip(&sealed)
                .enumerate()
                .map(|(i, (b, (_, r)))| DecapItem::new(i % SAS, b, r.clone()))
                .collect();
            let t5 = tsc();
            decapsulate_burst(&mut inb, &mut items).unwrap();
            let t6 = tsc();
            assert!(items.iter().all(|i| i.result.is_ok()));
            t[4].push(t1 - t0);
            t[5].push(t2 - t1);
            t[6].push(dec);
            t[7].push(t4 - t3);
            t[8].push(t6 - t5);
        }
        let [fr, cbc, mac, tot, pre, imac, dec, fin, tin] = &mut t;
        let (tot_mean, tin_mean) = (mean90(tot), mean90(tin));
        let (fr, cbc, mac, tot) = (median(fr), median(cbc), median(mac), median(tot));
        eprintln!(
            "{size:>5} B out, cycles/packet: frame {fr:6.1}  cbc {cbc:6.1}  hmac {mac:6.1}  \
             (sum {:6.1})  encapsulate_burst {tot:6.1} (mean90 {tot_mean:6.1})",
            fr + cbc + mac
        );
        let (pre, imac, dec, fin) = (median(pre), median(imac), median(dec), median(fin));
        eprintln!(
            "{size:>5} B in,  cycles/packet: precheck {pre:6.1}  hmac {imac:6.1}  finish {fin:6.1} \
             (of it cbc {dec:6.1})  (sum {:6.1})  decapsulate_burst {:6.1} (mean90 {tin_mean:6.1})",
            pre + imac + fin,
            median(tin)
        );
    }
}

/// Where a burst's time goes at 64 and 1408 bytes: time stamp counter medians (over
/// 20000 rounds of 32 packets over 4 aes-gcm-16 SAs, buffers restored untimed before
/// each round, so warm) of each phase of the burst path — outbound framing (header moved,
/// SPI, sequence number, IV, padding, trailer, header fixed: `frame`) and sealing
/// (`Transform::seal`: nonce, AAD and the kernel, tag written), inbound checks
/// (`precheck`: header parse, checksum, window) and `finish` (window again, the kernel
/// with its tag compare, window update, padding check, header moved and fixed) — against
/// the bare kernel on the same packets and the whole burst calls. Ticks per packet.
/// `cargo test --release -p akagate-fastpath --lib esp::phases::gcm_phase_split -- --ignored --nocapture`
#[test]
#[ignore]
fn gcm_phase_split() {
    if !super::gcm_ni::available() {
        eprintln!("SKIPPED: needs AES-NI and PCLMULQDQ");
        return;
    }
    const N: usize = BURST;
    const ROUNDS: usize = 20000;
    let suite = gcm_suite;
    for size in [64usize, 1408] {
        let (template, pkt) = packet(size);
        let spi = |i: usize| 0x1000 + i as u32;
        let mut out: Vec<OutboundSa> = (0..4)
            .map(|i| OutboundSa::new(spi(i), &suite(i as u8)).unwrap())
            .collect();
        let mut inb: Vec<InboundSa> = (0..4)
            .map(|i| InboundSa::new(spi(i), &suite(i as u8)).unwrap())
            .collect();
        let mut bufs = vec![template.clone(); N];
        let mut ph: [Vec<u64>; 9] = Default::default();
        for _ in 0..ROUNDS {
            // Phased outbound.
            for b in bufs.iter_mut() {
                b.copy_from_slice(&template);
            }
            let t0 = tsc();
            let framed: Vec<_> = bufs
                .iter_mut()
                .enumerate()
                .map(|(i, b)| out[i % 4].frame(b, pkt.clone(), None, None).unwrap())
                .collect();
            let t1 = tsc();
            for (i, (b, f)) in bufs.iter_mut().zip(&framed).enumerate() {
                out[i % 4].transform().seal(&mut b[f.esp()], f.seq_hi());
            }
            let t2 = tsc();
            ph[0].push(t1 - t0);
            ph[1].push(t2 - t1);
            // The bare kernel on copies of the framed packets (re-sealing ciphertext:
            // the same work).
            let mut scratch = bufs.clone();
            let t3 = tsc();
            for (i, (b, f)) in scratch.iter_mut().zip(&framed).enumerate() {
                let (salt, g) = out[i % 4].transform().gcm_ni().unwrap();
                let esp = &mut b[f.esp()];
                let (hdr_iv, rest) = esp.split_at_mut(16);
                let n = rest.len() - 16;
                let hi: &[u8; 16] = (&*hdr_iv).try_into().unwrap();
                core::hint::black_box(g.seal_esp(salt, hi, None, &mut rest[..n]));
            }
            let t4 = tsc();
            ph[2].push(t4 - t3);
            let sealed = bufs.clone();
            // Phased inbound.
            let t5 = tsc();
            let checked: Vec<_> = bufs
                .iter()
                .zip(&framed)
                .enumerate()
                .map(|(i, (b, f))| inb[i % 4].precheck(b, f.range(), None).unwrap())
                .collect();
            let t6 = tsc();
            for (i, (b, c)) in bufs.iter_mut().zip(&checked).enumerate() {
                inb[i % 4].finish(b, c, None).unwrap();
            }
            let t7 = tsc();
            ph[3].push(t6 - t5);
            ph[4].push(t7 - t6);
            let mut scratch = sealed.clone();
            let t8 = tsc();
            for (i, (b, f)) in scratch.iter_mut().zip(&framed).enumerate() {
                let (salt, g) = inb[i % 4].transform().gcm_ni().unwrap();
                let esp = &mut b[f.esp()];
                let (hdr_iv, rest) = esp.split_at_mut(16);
                let (body, tag) = rest.split_at_mut(rest.len() - 16);
                let hi: &[u8; 16] = (&*hdr_iv).try_into().unwrap();
                assert!(g.open_esp(salt, hi, None, body, tag));
            }
            let t9 = tsc();
            ph[5].push(t9 - t8);
            // The same, each body's trailer read back at once (pad length, next header, the
            // padding check), as `finish` does after the kernel.
            let mut scratch = sealed.clone();
            let t8 = tsc();
            for (i, (b, f)) in scratch.iter_mut().zip(&framed).enumerate() {
                let (salt, g) = inb[i % 4].transform().gcm_ni().unwrap();
                let esp = &mut b[f.esp()];
                let (hdr_iv, rest) = esp.split_at_mut(16);
                let (body, tag) = rest.split_at_mut(rest.len() - 16);
                let hi: &[u8; 16] = (&*hdr_iv).try_into().unwrap();
                assert!(g.open_esp(salt, hi, None, body, tag));
                let pad = usize::from(body[body.len() - 2]);
                core::hint::black_box(body[body.len() - 1]);
                assert!(super::sa::padding_ok_for_test(body, pad));
            }
            let t9 = tsc();
            ph[8].push(t9 - t8);
            // The whole burst calls, next sequence numbers.
            for b in bufs.iter_mut() {
                b.copy_from_slice(&template);
            }
            let mut items: Vec<EncapItem<'_>> = bufs
                .iter_mut()
                .enumerate()
                .map(|(i, b)| EncapItem::new(i % 4, b, pkt.clone()))
                .collect();
            let t10 = tsc();
            encapsulate_burst(&mut out, &mut items).unwrap();
            let t11 = tsc();
            let ranges: Vec<_> = items.iter().map(|i| i.result.clone().unwrap()).collect();
            drop(items);
            let mut items: Vec<DecapItem<'_>> = bufs
                .iter_mut()
                .zip(ranges)
                .enumerate()
                .map(|(i, (b, r))| DecapItem::new(i % 4, b, r))
                .collect();
            let t12 = tsc();
            decapsulate_burst(&mut inb, &mut items).unwrap();
            let t13 = tsc();
            assert!(items.iter().all(|i| i.result.is_ok()));
            ph[6].push(t11 - t10);
            ph[7].push(t13 - t12);
        }
        let m: Vec<f64> = ph.iter_mut().map(|v| median(v)).collect();
        eprintln!(
            "{size:>5} B, TSC ticks per packet (medians): out: frame {:.0} + seal {:.0} \
             (bare kernel {:.0}), whole burst {:.0}; in: precheck {:.0} + finish {:.0} \
             (bare kernel {:.0}, with the trailer read {:.0}), whole burst {:.0}",
            m[0], m[1], m[2], m[6], m[3], m[4], m[5], m[8], m[7]
        );
    }
}

/// The aes-gcm-16 suite of the burst timings' SA `i` (AES-GCM-128, its own key and salt).
fn gcm_suite(i: u8) -> Suite {
    Suite {
        auth: AuthAlg::Null,
        encr: EncrAlg::AesGcm,
        keys: SaKeys {
            integ_key: Vec::new(),
            encr_key: vec![0x22 ^ i; 16],
            salt: [i, 1, 2, 3],
        },
    }
}

/// The GCM burst calls on buffers of two temperatures, to tell the criterion rows'
/// (`esp_burst{,_decrypt}/gcm`) harness from the calls: per packet, `hot` is one burst
/// copied (outbound) or sealed (inbound) just before the timed call, its items made
/// untimed (as `gcm_phase_split`'s whole bursts); `l2` is eight bursts set up ahead (about
/// 400 KiB, criterion's `WARM_BURSTS`), each burst's items made untimed; `bench` the same
/// with the items' `Vec` made and the results walked inside the timed region, as the
/// criterion routine does. Medians of TSC ticks a packet.
/// `cargo test --release -p akagate-fastpath --lib esp::phases::gcm_burst_harness -- --ignored --nocapture`
#[test]
#[ignore]
fn gcm_burst_harness() {
    if !super::gcm_ni::available() {
        eprintln!("SKIPPED: needs AES-NI and PCLMULQDQ");
        return;
    }
    burst_harness(gcm_suite);
}

/// [`gcm_burst_harness`] on hmac-sha-1-96 + aes-cbc SAs (the criterion rows
/// `esp_burst{,_decrypt}/mb`): the multi-buffer kernels this CPU has.
/// `cargo test --release -p akagate-fastpath --lib esp::phases::cbc_burst_harness -- --ignored --nocapture`
#[test]
#[ignore]
fn cbc_burst_harness() {
    if CbcKernel::detect().is_none() || !super::stitch::available() {
        eprintln!("SKIPPED: needs AES-NI and SHA-NI");
        return;
    }
    burst_harness(suite);
}

/// The burst harness of [`gcm_burst_harness`] over SAs of `suite`.
fn burst_harness(suite: fn(u8) -> Suite) {
    const SETS: usize = 8;
    const ROUNDS: usize = 3000;
    for size in [64usize, 1408] {
        let (template, pkt) = packet(size);
        let spi = |i: usize| 0x1000 + i as u32;
        let mut out: Vec<OutboundSa> = (0..SAS)
            .map(|i| OutboundSa::new(spi(i), &suite(i as u8)).unwrap())
            .collect();
        let mut inb: Vec<InboundSa> = (0..SAS)
            .map(|i| InboundSa::new(spi(i), &suite(i as u8)).unwrap())
            .collect();
        // [out hot, out l2, out bench, in hot, in l2, in bench]
        let mut ph: [Vec<u64>; 6] = Default::default();
        for round in 0..ROUNDS {
            for mode in 0..3 {
                let sets = if mode == 0 { 1 } else { SETS };
                let mut bufs: Vec<Vec<Vec<u8>>> = vec![vec![template.clone(); BURST]; sets];
                let t0;
                let mut ranges = Vec::new();
                if mode == 2 {
                    t0 = tsc();
                    for b in bufs.iter_mut() {
                        let mut items = encap_items(b, &pkt);
                        encapsulate_burst(&mut out, &mut items).unwrap();
                        assert!(items.iter().all(|i| i.result.is_ok()));
                    }
                } else {
                    let mut all: Vec<_> = bufs.iter_mut().map(|b| encap_items(b, &pkt)).collect();
                    t0 = tsc();
                    for items in all.iter_mut() {
                        encapsulate_burst(&mut out, items).unwrap();
                    }
                    let t1 = tsc();
                    ph[mode].push(t1 - t0);
                    for items in &all {
                        ranges.push(items.iter().map(|i| i.result.clone().unwrap()).collect());
                    }
                }
                if mode == 2 {
                    ph[2].push(tsc() - t0);
                    // Sealed again with the items kept, for the inbound run.
                    bufs = vec![vec![template.clone(); BURST]; sets];
                    for b in bufs.iter_mut() {
                        let mut items = encap_items(b, &pkt);
                        encapsulate_burst(&mut out, &mut items).unwrap();
                        ranges.push(items.iter().map(|i| i.result.clone().unwrap()).collect());
                    }
                }
                let ranges: Vec<Vec<core::ops::Range<usize>>> = ranges;
                if mode == 2 {
                    let t0 = tsc();
                    for (b, r) in bufs.iter_mut().zip(&ranges) {
                        let mut items = decap_items(b, r);
                        decapsulate_burst(&mut inb, &mut items).unwrap();
                        assert!(items.iter().all(|i| i.result.is_ok()));
                    }
                    ph[5].push(tsc() - t0);
                } else {
                    let mut all: Vec<_> = bufs
                        .iter_mut()
                        .zip(&ranges)
                        .map(|(b, r)| decap_items(b, r))
                        .collect();
                    let t0 = tsc();
                    for items in all.iter_mut() {
                        decapsulate_burst(&mut inb, items).unwrap();
                    }
                    ph[3 + mode].push(tsc() - t0);
                    assert!(
                        all.iter().flatten().all(|i| i.result.is_ok()),
                        "round {round}"
                    );
                }
            }
        }
        let m: Vec<f64> = ph
            .iter_mut()
            .enumerate()
            .map(|(i, v)| median(v) / if i % 3 == 0 { 1.0 } else { SETS as f64 })
            .collect();
        eprintln!(
            "{size:>5} B, TSC ticks per packet (medians), harness: out hot {:.0}, l2 {:.0}, \
             bench {:.0}; in hot {:.0}, l2 {:.0}, bench {:.0}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
    }
}

/// A burst's outbound items over `b`'s buffers (`pkt` in each), SAs round robin.
fn encap_items<'a>(b: &'a mut [Vec<u8>], pkt: &core::ops::Range<usize>) -> Vec<EncapItem<'a>> {
    b.iter_mut()
        .enumerate()
        .map(|(i, b)| EncapItem::new(i % SAS, b, pkt.clone()))
        .collect()
}

/// A burst's inbound items over `b`'s buffers, the ESP packets at `r`, SAs round robin.
fn decap_items<'a>(b: &'a mut [Vec<u8>], r: &[core::ops::Range<usize>]) -> Vec<DecapItem<'a>> {
    b.iter_mut()
        .zip(r)
        .enumerate()
        .map(|(i, (b, r))| DecapItem::new(i % SAS, b, r.clone()))
        .collect()
}

/// The aes-gcm-16 SA the kernel timings seal and open with (one fixed key); `None`, with a
/// SKIPPED line, where the CPU lacks AES-NI and PCLMULQDQ.
fn gcm_kernel_sa() -> Option<OutboundSa> {
    if !super::gcm_ni::available() {
        eprintln!("SKIPPED: needs AES-NI and PCLMULQDQ");
        return None;
    }
    let sa = OutboundSa::new(
        0x1000,
        &Suite {
            auth: AuthAlg::Null,
            encr: EncrAlg::AesGcm,
            keys: SaKeys {
                integ_key: Vec::new(),
                encr_key: vec![0x22; 16],
                salt: [9, 1, 2, 3],
            },
        },
    );
    Some(sa.unwrap())
}

/// A burst's headers, plain bodies of `len` bytes, and those bodies sealed with their tags,
/// for the kernel timings.
#[allow(clippy::type_complexity)]
fn gcm_kernel_bodies(
    g: &super::gcm_ni::Aes128GcmNi,
    salt: &[u8; 4],
    len: usize,
) -> (Vec<[u8; 16]>, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<[u8; 16]>) {
    let hdr: Vec<[u8; 16]> = (0..BURST as u8).map(|i| [i; 16]).collect();
    let plain: Vec<Vec<u8>> = (0..BURST)
        .map(|i| (0..len).map(|j| (i + j) as u8).collect())
        .collect();
    let mut sealed = plain.clone();
    let tags = sealed
        .iter_mut()
        .zip(&hdr)
        .map(|(b, h)| g.seal_esp(salt, h, None, b))
        .collect();
    (hdr, plain, sealed, tags)
}

/// The bare aes-gcm-16 kernel at one body length: `seal_esp` and `open_esp` on 32 bodies of
/// 1412 bytes (a 1408-byte payload's body) and of 96, 1280 and 4096 bytes, one key, warm
/// (the bodies restored untimed between rounds): TSC ticks per packet over 20000 rounds, the
/// median and the fastest round (what a round costs when nothing else holds the core's
/// ports), per 16-byte block, and the 16-block batch's cost from the difference of the
/// 4096- and 1280-byte bodies' fastest rounds.
/// `cargo test --release -p akagate-fastpath --lib esp::phases::gcm_kernel_ticks -- --ignored --nocapture`
#[test]
#[ignore]
fn gcm_kernel_ticks() {
    let Some(sa) = gcm_kernel_sa() else { return };
    let (salt, g) = sa.transform().gcm_ni().unwrap();
    let mut fastest = Vec::new();
    for len in [96usize, 1412, 1280, 4096] {
        let (hdr, plain, sealed, tags) = gcm_kernel_bodies(g, salt, len);
        let mut bufs = plain.clone();
        let (mut s, mut o) = (Vec::new(), Vec::new());
        for _ in 0..20000 {
            for (b, p) in bufs.iter_mut().zip(&plain) {
                b.copy_from_slice(p);
            }
            let t0 = tsc();
            for (b, h) in bufs.iter_mut().zip(&hdr) {
                core::hint::black_box(g.seal_esp(salt, h, None, b));
            }
            let t1 = tsc();
            for (b, p) in bufs.iter_mut().zip(&sealed) {
                b.copy_from_slice(p);
            }
            let t2 = tsc();
            for ((b, h), t) in bufs.iter_mut().zip(&hdr).zip(&tags) {
                core::hint::black_box(g.open_esp(salt, h, None, b, t));
            }
            let t3 = tsc();
            s.push(t1 - t0);
            o.push(t3 - t2);
        }
        let (sm, om) = (median(&mut s), median(&mut o));
        // Sorted by `median`.
        let (s0, o0) = (s[0] as f64 / BURST as f64, o[0] as f64 / BURST as f64);
        let blocks = len.div_ceil(16) as f64;
        eprintln!(
            "{len:>5} B body, TSC ticks per packet (medians): seal {sm:.0} ({:.2} a block), \
             open {om:.0} ({:.2} a block); fastest rounds: seal {s0:.1}, open {o0:.1}",
            sm / blocks,
            om / blocks
        );
        fastest.push((len, s0, o0));
    }
    let (a, b) = (fastest[2], fastest[3]);
    let batches = ((b.0 - a.0) / 256) as f64;
    eprintln!(
        "a 16-block batch ({} - {} B, fastest rounds): seal {:.1}, open {:.1} ticks",
        b.0,
        a.0,
        (b.1 - a.1) / batches,
        (b.2 - a.2) / batches
    );
}

/// Evicts every line of `b` from the caches (CLFLUSH), then waits for the flushes.
fn flush(b: &[u8]) {
    use core::arch::x86_64::{_mm_clflush, _mm_mfence};
    let Some(last) = b.len().checked_sub(1) else {
        return;
    };
    for off in (0..b.len()).step_by(64).chain([last]) {
        // SAFETY: `off` < `b.len()`, so the address is a byte of `b` (mapped: CLFLUSH does
        // not fault); it only evicts the line. SSE2 is x86_64's baseline.
        unsafe { _mm_clflush(b.as_ptr().wrapping_add(off)) };
    }
    // SAFETY: as above.
    unsafe { _mm_mfence() };
}

/// The bare GCM kernel on packets whose bytes are in no cache (each buffer flushed before
/// the timed pass, as a packet a NIC wrote or a bench set up long before): 32 packets of a
/// 1412-byte body (a 1408-byte payload), sealed then opened, medians of TSC ticks per
/// packet over 5000 rounds.
/// `cargo test --release -p akagate-fastpath --lib esp::phases::gcm_kernel_ticks_cold --
/// --ignored --nocapture`
#[test]
#[ignore]
fn gcm_kernel_ticks_cold() {
    let Some(sa) = gcm_kernel_sa() else { return };
    let (salt, g) = sa.transform().gcm_ni().unwrap();
    let len = 1412;
    let (hdr, plain, sealed, tags) = gcm_kernel_bodies(g, salt, len);
    let mut bufs = plain.clone();
    let (mut s, mut o) = (Vec::new(), Vec::new());
    for _ in 0..5000 {
        for (b, p) in bufs.iter_mut().zip(&plain) {
            b.copy_from_slice(p);
            flush(b);
        }
        let t0 = tsc();
        for (b, h) in bufs.iter_mut().zip(&hdr) {
            core::hint::black_box(g.seal_esp(salt, h, None, b));
        }
        let t1 = tsc();
        for (b, p) in bufs.iter_mut().zip(&sealed) {
            b.copy_from_slice(p);
            flush(b);
        }
        let t2 = tsc();
        for ((b, h), t) in bufs.iter_mut().zip(&hdr).zip(&tags) {
            assert!(g.open_esp(salt, h, None, b, t));
        }
        let t3 = tsc();
        s.push(t1 - t0);
        o.push(t3 - t2);
    }
    let (s, o) = (median(&mut s), median(&mut o));
    eprintln!("{len:>5} B body, cold, TSC ticks per packet (medians): seal {s:.0}, open {o:.0}");
}

/// Where the CBC encryption's extra ticks inside the burst come from (diagnostic): the
/// 16-lane kernel on 32 bodies of a 1408-byte payload, alternated per round in one process,
/// TSC ticks per packet (median, minimum) in five settings: `contig` as
/// `cbc_mb::tests::kernel_timing` (one buffer, bodies 1424 bytes apart, encrypted again in
/// place, warm); `phase` as `phase_timing` (32 buffers restored from the template, framed,
/// then encrypted); `copied` (restored, not framed: the bodies' ranges from round 0);
/// `again` (the phase's bodies encrypted a second time at once: warm, same layout);
/// `spaced` (`contig` with the bodies 2048 bytes apart, as mbufs). Then the core's clock
/// and VAESENC's issue rate (`clock_and_vaes`), and the kernel's bound at that rate.
/// `cargo test --release -p akagate-fastpath --lib esp::phases::cbc_gap -- --ignored --nocapture`
#[test]
#[ignore]
fn cbc_gap() {
    if CbcKernel::detect() != Some(CbcKernel::Vaes16) {
        eprintln!("SKIPPED: needs AVX-512 and VAES");
        return;
    }
    const R: usize = 4000;
    let (template, range) = packet(1408);
    let mut sas: Vec<OutboundSa> = (0..SAS as u8)
        .map(|i| OutboundSa::new(0x100 + u32::from(i), &suite(i)).unwrap())
        .collect();
    let keys: Vec<super::aesni::Aes128Ni> = (0..SAS)
        .map(|i| sas[i].transform().aes_sha1_ni().unwrap().0.clone())
        .collect();
    let mut bufs = vec![template.clone(); BURST];
    let mut contig = vec![0x5au8; BURST * 1424];
    let mut spaced = vec![0x5au8; BURST * 2048];
    let mut t: [Vec<u64>; 5] = Default::default();
    let mut body_at: Vec<core::ops::Range<usize>> = Vec::new();
    let run = |bodies: &mut dyn Iterator<Item = (usize, &mut [u8])>| {
        let streams = bodies.map(|(i, d)| CbcStream {
            keys: &keys[i % SAS],
            iv: [i as u8; 16],
            data: d,
        });
        let t0 = tsc();
        cbc_mb::encrypt(streams, CbcKernel::Vaes16);
        tsc() - t0
    };
    for round in 0..R {
        // contig
        t[0].push(run(&mut contig.chunks_mut(1424).enumerate()));
        // phase
        for b in bufs.iter_mut() {
            b.copy_from_slice(&template);
        }
        let framed = frame_all(&mut bufs, &mut sas, &range);
        if round == 0 {
            body_at = framed
                .iter()
                .map(|f| {
                    let e = f.esp();
                    e.start + ESP_HDR_LEN + 16..e.end - HMAC96_ICV_LEN
                })
                .collect();
        }
        t[1].push(run(&mut bufs
            .iter_mut()
            .zip(&body_at)
            .map(|(b, r)| &mut b[r.clone()])
            .enumerate()));
        // again
        t[3].push(run(&mut bufs
            .iter_mut()
            .zip(&body_at)
            .map(|(b, r)| &mut b[r.clone()])
            .enumerate()));
        // copied
        for b in bufs.iter_mut() {
            b.copy_from_slice(&template);
        }
        t[2].push(run(&mut bufs
            .iter_mut()
            .zip(&body_at)
            .map(|(b, r)| &mut b[r.clone()])
            .enumerate()));
        // spaced
        t[4].push(run(&mut spaced
            .chunks_mut(2048)
            .map(|c| &mut c[..1424])
            .enumerate()));
    }
    // The core's clock in TSC ticks (a chain of dependent one-cycle additions), and the
    // VAESENC zmm issue rate (eight independent chains, so latency does not bind).
    let (cyc, aes) = clock_and_vaes();
    eprintln!(
        "core cycles per TSC tick {cyc:.3}; VAESENC zmm per core cycle {aes:.3}; the 16-lane \
         kernel's bound for a 1424-byte body (89 blocks x 10 rounds / 4 a VAESENC) at that \
         rate: {:.1} ticks",
        89.0 * 10.0 / 4.0 / aes / cyc
    );
    for (name, v) in ["contig", "phase", "copied", "again", "spaced"]
        .iter()
        .zip(t.iter_mut())
    {
        let m = median(v);
        eprintln!(
            "{name:>12}: median {m:6.1}  min {:6.1} ticks a packet",
            v[0] as f64 / BURST as f64
        );
    }
}

/// Core cycles per TSC tick and VAESENC (zmm) per core cycle, minimum over runs: the first
/// from a chain of 4 x 2^20 dependent register additions (one cycle each; not of an
/// immediate, which newer cores may fold at rename), the second from 2^18 x 8
/// VAESENC on eight independent registers.
fn clock_and_vaes() -> (f64, f64) {
    const N: u64 = 1 << 20;
    let mut best_add = u64::MAX;
    let mut best_aes = u64::MAX;
    for _ in 0..20 {
        let t0 = tsc();
        // SAFETY: register-only arithmetic and a counted loop; no memory is touched.
        unsafe {
            core::arch::asm!(
                "2:",
                "add {x}, {one}",
                "add {x}, {one}",
                "add {x}, {one}",
                "add {x}, {one}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) N => _,
                x = inout(reg) 0u64 => _,
                one = in(reg) 1u64,
                options(nomem, nostack),
            );
        }
        best_add = best_add.min(tsc() - t0);
        let t1 = tsc();
        // SAFETY: as above; VAES and AVX-512F were checked by the caller (`Vaes16`).
        unsafe {
            core::arch::asm!(
                "vpxord zmm0, zmm0, zmm0",
                "vpxord zmm1, zmm1, zmm1",
                "vpxord zmm2, zmm2, zmm2",
                "vpxord zmm3, zmm3, zmm3",
                "vpxord zmm4, zmm4, zmm4",
                "vpxord zmm5, zmm5, zmm5",
                "vpxord zmm6, zmm6, zmm6",
                "vpxord zmm7, zmm7, zmm7",
                "vpxord zmm8, zmm8, zmm8",
                "2:",
                "vaesenc zmm0, zmm0, zmm8",
                "vaesenc zmm1, zmm1, zmm8",
                "vaesenc zmm2, zmm2, zmm8",
                "vaesenc zmm3, zmm3, zmm8",
                "vaesenc zmm4, zmm4, zmm8",
                "vaesenc zmm5, zmm5, zmm8",
                "vaesenc zmm6, zmm6, zmm8",
                "vaesenc zmm7, zmm7, zmm8",
                "dec {n}",
                "jnz 2b",
                "vzeroupper",
                n = inout(reg) N / 4 => _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _,
                options(nomem, nostack),
            );
        }
        best_aes = best_aes.min(tsc() - t1);
    }
    let cyc = (4 * N) as f64 / best_add as f64;
    let aes = (2 * N) as f64 / (best_aes as f64 * cyc);
    (cyc, aes)
}

/// Whether the core overlaps one long aes-gcm-16 packet's serial end with the next one's
/// start (diagnostic): 32 bodies of 1412 bytes sealed, then opened, with each packet's
/// header either independent of the packet before (`free`) or made to depend on its tag
/// (`chained`: the tag's first byte, ANDed with an opaque zero, XORed into the header's
/// index, so the bytes are the same but the next kernel cannot start before the tag is
/// known; through a register, not a store the kernel's load would wait on). Alternated
/// per round; TSC ticks per packet, medians and fastest rounds. Chained minus free is the
/// latency the core now hides across packets; chained close to free means none is hidden
/// (docs/BENCHMARKS.md, *Burst crypto on Zen 4, round 19*).
/// `cargo test --release -p akagate-fastpath --lib esp::phases::gcm_chain_overlap -- --ignored --nocapture`
#[test]
#[ignore]
fn gcm_chain_overlap() {
    let Some(sa) = gcm_kernel_sa() else { return };
    let (salt, g) = sa.transform().gcm_ni().unwrap();
    let len = 1412;
    let (hdr, plain, sealed, tags) = gcm_kernel_bodies(g, salt, len);
    let zero = core::hint::black_box(0u8);
    let mut bufs = plain.clone();
    let mut t = [(); 4].map(|_| Vec::new());
    for round in 0..20000 {
        for chained in [round % 2 == 0, round % 2 == 1] {
            for (b, p) in bufs.iter_mut().zip(&plain) {
                b.copy_from_slice(p);
            }
            let fixed = core::hint::black_box(0x5au8);
            let t0 = tsc();
            let mut prev = fixed;
            // Two loops, not a select inside one: a conditional move would make both
            // settings wait on the tag.
            if chained {
                for (i, b) in bufs.iter_mut().enumerate() {
                    let h = &hdr[i ^ usize::from(prev & zero)];
                    prev = g.seal_esp(salt, h, None, b)[0];
                }
            } else {
                for (i, b) in bufs.iter_mut().enumerate() {
                    let h = &hdr[i ^ usize::from(fixed & zero)];
                    prev ^= g.seal_esp(salt, h, None, b)[0];
                }
            }
            core::hint::black_box(prev);
            let t1 = tsc();
            for (b, p) in bufs.iter_mut().zip(&sealed) {
                b.copy_from_slice(p);
            }
            let t2 = tsc();
            let mut ok = fixed;
            if chained {
                for (i, (b, tg)) in bufs.iter_mut().zip(&tags).enumerate() {
                    let h = &hdr[i ^ usize::from(ok & zero)];
                    ok = u8::from(g.open_esp(salt, h, None, b, tg));
                }
            } else {
                for (i, (b, tg)) in bufs.iter_mut().zip(&tags).enumerate() {
                    let h = &hdr[i ^ usize::from(fixed & zero)];
                    ok ^= u8::from(g.open_esp(salt, h, None, b, tg));
                }
            }
            core::hint::black_box(ok);
            let t3 = tsc();
            let c = usize::from(chained);
            t[c].push(t1 - t0);
            t[2 + c].push(t3 - t2);
        }
    }
    let names = ["seal free", "seal chained", "open free", "open chained"];
    for (n, v) in names.iter().zip(t.iter_mut()) {
        let m = median(v);
        eprintln!(
            "{n:>13}: median {m:.1}, fastest {:.1} ticks a packet",
            v[0] as f64 / BURST as f64
        );
    }
}

/// What `finish` costs at 1408 B beside its CBC decryption, on the burst's own buffers as
/// `decapsulate_burst` leaves them (32 packets over 4 SAs, restored, prechecked and their ICVs
/// computed on 16 lanes before each round, untimed). Rounds in turn: the 32 packets'
/// `finish`; only their in-place CBC decryption (`cbc in place`); that and the trailer's
/// reads (`cbc + trailer`); `finish`'s steps written out here (`by hand`: window check, ICV
/// compare, window update, decryption, padding check, header restored); the decryption of an
/// L1 copy of each body (`cbc, L1 copy`, timed per packet). TSC ticks per packet, medians.
/// `FS_SKIP=icv,win,pad,hdr` leaves steps out of `by hand`; `FS_OPEN=1` runs its ICV compare,
/// window update and decryption through `Transform::open_with`; `FS_STRIDE=N` puts the buffers
/// N bytes apart in one allocation (else each is its own `Vec`, as in criterion's bench).
/// `cargo test --release -p akagate-fastpath --lib esp::phases::finish_split -- --ignored --nocapture`
#[test]
#[ignore]
fn finish_split() {
    if !sha1_x16::available() || CbcKernel::detect() != Some(CbcKernel::Vaes16) {
        eprintln!("SKIPPED: needs AVX-512, VAES and SHA-NI");
        return;
    }
    const R: usize = 6000;
    let (template, range) = packet(1408);
    let mut sas: Vec<OutboundSa> = (0..SAS as u8)
        .map(|i| OutboundSa::new(0x100 + u32::from(i), &suite(i)).unwrap())
        .collect();
    let mut sealed = vec![template.clone(); BURST];
    let mut ranges = Vec::new();
    for (i, b) in sealed.iter_mut().enumerate() {
        ranges.push(sas[i % SAS].encapsulate(b, range.clone()).unwrap());
    }
    let fresh = || -> Vec<InboundSa> {
        (0..SAS as u8)
            .map(|i| InboundSa::new(0x100 + u32::from(i), &suite(i)).unwrap())
            .collect()
    };
    let stride = std::env::var("FS_STRIDE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let len = template.len();
    let mut own = sealed.clone();
    let mut pool = vec![0u8; stride.unwrap_or(0).max(len) * BURST + 64];
    let mut bufs: Vec<&mut [u8]> = match stride {
        Some(n) => pool
            .chunks_mut(n.max(len))
            .take(BURST)
            .map(|c| &mut c[..len])
            .collect(),
        None => own.iter_mut().map(|b| &mut b[..]).collect(),
    };
    let mut t: [Vec<u64>; 5] = Default::default();
    // Read once here: a string search per packet costs more than the steps it switches.
    let skip = std::env::var("FS_SKIP").unwrap_or_default();
    let via_open = std::env::var_os("FS_OPEN").is_some();
    let [icv_on, win_on, pad_on, hdr_on] = ["icv", "win", "pad", "hdr"].map(|s| !skip.contains(s));
    let mut wins = [(); SAS].map(|_| super::replay::ReplayWindow::new());
    for round in 0..R {
        if round % 5 == 3 {
            wins = [(); SAS].map(|_| super::replay::ReplayWindow::new());
        }
        for (b, s) in bufs.iter_mut().zip(&sealed) {
            b.copy_from_slice(s);
        }
        let mut inb = fresh();
        let checked: Vec<_> = bufs
            .iter()
            .zip(&ranges)
            .enumerate()
            .map(|(i, (b, r))| inb[i % SAS].precheck(b, r.clone(), None).unwrap())
            .collect();
        let mut icvs = [[0u8; HMAC96_ICV_LEN]; BURST];
        expected_icvs(&bufs, &checked, &inb, &mut icvs);
        let kind = round % 5;
        if kind == 4 {
            t[kind].push(cbc_on_copies(&bufs, &checked, &inb));
            continue;
        }
        let t0 = tsc();
        for i in 0..BURST {
            let (b, c, icv) = (&mut bufs[i], &checked[i], &icvs[i]);
            let sa = &mut inb[i % SAS];
            if kind == 3 {
                let w = &mut wins[i % SAS];
                if via_open {
                    // The ICV compare, window update and decryption through `open_with`.
                    w.check(c.seq).unwrap();
                    let esp = &mut b[c.esp()];
                    sa.transform()
                        .open_with(esp, None, Some(icv), || w.update(c.seq))
                        .unwrap();
                    let body = &esp[ESP_HDR_LEN + 16..esp.len() - HMAC96_ICV_LEN];
                    let (pad, nh) = (usize::from(body[body.len() - 2]), body[body.len() - 1]);
                    assert!(super::sa::padding_ok_for_test(body, pad));
                    let len = 20 + body.len() - 2 - pad;
                    let pkt = &mut b[c.esp().start - 20..];
                    let fix = super::ip::HeaderFix::v4_for_test();
                    super::ip::restore_header(pkt, 24, fix, nh, len);
                    continue;
                }
                if win_on {
                    w.check(c.seq).unwrap();
                }
                let esp = &mut b[c.esp()];
                let n = esp.len() - HMAC96_ICV_LEN;
                let (authed, got) = esp.split_at_mut(n);
                if icv_on {
                    assert!(super::integ::tags_equal(icv, got));
                }
                if win_on {
                    w.update(c.seq);
                }
                let (hdr_iv, body) = authed.split_at_mut(ESP_HDR_LEN + 16);
                let (k, _) = sa.transform().aes_sha1_ni().unwrap();
                k.cbc_decrypt(&hdr_iv[ESP_HDR_LEN..], body);
                let pad = usize::from(body[body.len() - 2]);
                let nh = body[body.len() - 1];
                if pad_on {
                    assert!(super::sa::padding_ok_for_test(body, pad));
                }
                if hdr_on {
                    let len = 20 + body.len() - 2 - pad;
                    let pkt = &mut b[c.esp().start - 20..];
                    super::ip::restore_header(
                        pkt,
                        24,
                        super::ip::HeaderFix::v4_for_test(),
                        nh,
                        len,
                    );
                }
                continue;
            }
            if kind == 0 {
                core::hint::black_box(sa.finish(b, c, Some(icv)).unwrap());
                continue;
            }
            let (k, _) = sa.transform().aes_sha1_ni().unwrap();
            let esp = &mut b[c.esp()];
            let n = esp.len() - HMAC96_ICV_LEN;
            let (hdr_iv, body) = esp[..n].split_at_mut(ESP_HDR_LEN + 16);
            k.cbc_decrypt(&hdr_iv[ESP_HDR_LEN..], body);
            if kind == 2 {
                let pad = usize::from(body[body.len() - 2]);
                core::hint::black_box(body[body.len() - 1]);
                core::hint::black_box(super::sa::padding_ok_for_test(body, pad));
            }
        }
        t[kind].push(tsc() - t0);
    }
    for (name, v) in [
        "finish",
        "cbc in place",
        "cbc + trailer",
        "by hand",
        "cbc, L1 copy",
    ]
    .iter()
    .zip(t.iter_mut())
    {
        eprintln!("{name:>14}: median {:6.1} ticks a packet", median(v));
    }
}
