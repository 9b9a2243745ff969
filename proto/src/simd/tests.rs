use super::*;
use crate::sipscan::find_head_end;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

/// A seeded generator, so a failure reproduces.
type Rng = StdRng;

/// Mostly CR, LF, NUL and a few ASCII bytes, so CRLFCRLF and its near misses are common.
fn head_byte(rng: &mut Rng) -> u8 {
    const BYTES: &[u8] = b"\r\n\r\n\r\n\0 \tAz:;\\\x80\xff";
    BYTES[rng.gen_range(0..BYTES.len())]
}

/// Every byte value at every position of a block, among fill bytes that are and are not
/// the bytes looked for.
#[test]
fn every_form_of_the_masks_is_the_byte_loops() {
    for fill in [0u8, b'\r', b'\n', b'a', 0x80, 0xff] {
        for pos in 0..64 {
            for b in 0..=255u8 {
                let mut block = [fill; 64];
                block[pos] = b;
                let want = masks_portable(&block);
                #[cfg(target_arch = "x86_64")]
                {
                    assert_eq!(masks_sse2(&block), want, "fill {fill} pos {pos} byte {b}");
                    if std::is_x86_feature_detected!("avx2") {
                        // SAFETY: AVX2 checked just above.
                        let got = unsafe { masks_avx2(&block) };
                        assert_eq!(got, want, "fill {fill} pos {pos} byte {b}");
                    }
                }
            }
        }
    }
    let mut rng = Rng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut block = [0u8; 64];
        block.iter_mut().for_each(|b| *b = head_byte(&mut rng));
        let want = masks_portable(&block);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(masks_sse2(&block), want);
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 checked just above.
                assert_eq!(unsafe { masks_avx2(&block) }, want);
            }
        }
    }
}

/// What the scan must give for `raw`, by the searches it stands in for.
fn reference(raw: &[u8]) -> Option<(usize, bool, Vec<usize>)> {
    let end = find_head_end(raw)?;
    if end + CRLFCRLF_LEN > HEAD_SCAN_MAX {
        return None;
    }
    let ends = (0..end)
        .filter(|&i| matches!(raw[i], b'\r' | b'\n'))
        .collect();
    Some((end, raw[..end].contains(&0), ends))
}

fn check(raw: &[u8]) {
    let want = reference(raw);
    let mut forms: Vec<(&str, HeadLines, Option<usize>)> = Vec::new();
    let mut h = HeadLines::new();
    let got = h.scan(raw);
    forms.push(("dispatch", h, got));
    let mut h = HeadLines::new();
    let got = h.scan_blocks(raw, masks_portable);
    forms.push(("portable", h, got));
    #[cfg(target_arch = "x86_64")]
    {
        let mut h = HeadLines::new();
        let got = h.scan_blocks(raw, masks_sse2);
        forms.push(("sse2", h, got));
    }
    for (form, h, got) in forms {
        match &want {
            // A head that ends past the scanned bytes, or has no end, is left to the general
            // path.
            None => assert_eq!(got, None, "{form} {raw:?}"),
            Some((end, nul, ends)) => {
                assert_eq!(got, Some(*end), "{form} {raw:?}");
                assert_eq!(h.head_end(), *end, "{form}");
                assert_eq!(h.has_nul(), *nul, "{form} {raw:?}");
                let mut walked = Vec::new();
                let mut from = 0;
                while let Some(at) = h.line_end_from(from) {
                    walked.push(at);
                    from = at + 1;
                }
                assert_eq!(&walked, ends, "{form} {raw:?}");
                for from in 0..raw.len().min(*end + 8) {
                    let want = ends.iter().copied().find(|&e| e >= from);
                    assert_eq!(h.line_end_from(from), want, "{form} from {from}");
                    let crlf = (from..*end).find(|&i| raw[i..].starts_with(b"\r\n"));
                    assert_eq!(h.crlf_from(raw, from), crlf, "{form} crlf from {from}");
                }
            }
        }
    }
}

#[test]
fn the_scan_is_find_head_end_and_the_line_ends_before_it() {
    let mut rng = Rng::seed_from_u64(0x0123_4567_89ab_cdef);
    for _ in 0..30_000 {
        let len = rng.gen_range(0..300);
        let raw: Vec<u8> = (0..len).map(|_| head_byte(&mut rng)).collect();
        check(&raw);
    }
    // Blank lines at and around every block boundary, NULs on either side of them.
    for len in [60usize, 63, 64, 65, 127, 128, 129, 200] {
        for at in 0..len - 3 {
            for nul in [None, Some(0), Some(at.saturating_sub(1)), Some(at + 4)] {
                let mut raw = vec![b'x'; len];
                raw[at..at + 4].copy_from_slice(b"\r\n\r\n");
                if let Some(n) = nul.filter(|&n| n < len) {
                    raw[n] = 0;
                }
                check(&raw);
            }
        }
    }
}

#[test]
fn a_head_longer_than_the_scan_is_left_to_the_general_path() {
    for end in [
        HEAD_SCAN_MAX - 70,
        HEAD_SCAN_MAX - 5,
        HEAD_SCAN_MAX - 4,
        HEAD_SCAN_MAX - 3,
    ] {
        let mut raw = vec![b'a'; HEAD_SCAN_MAX + 100];
        raw[end..end + 4].copy_from_slice(b"\r\n\r\n");
        let mut h = HeadLines::new();
        let got = h.scan(&raw);
        if end + CRLFCRLF_LEN <= HEAD_SCAN_MAX {
            assert_eq!(got, Some(end));
        } else {
            assert_eq!(got, None);
        }
        check(&raw);
    }
    let mut h = HeadLines::new();
    assert_eq!(h.scan(&vec![b'a'; 3 * HEAD_SCAN_MAX]), None);
    assert_eq!(h.scan(b""), None);
    assert_eq!(h.scan(b"\r\n\r"), None);
}

#[test]
fn real_heads_scan_as_find_head_end_does() {
    let msg =
        b"REGISTER sip:ims.example SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1\r\n \
        folded\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\nbody\r\n\r\n";
    for cut in 0..=msg.len() {
        check(&msg[..cut]);
    }
}

/// Every byte value at every position of every length up to 40, among fill bytes that are
/// and are not stops: the vector search finds what the byte loop finds.
#[test]
fn the_quoted_stop_is_the_byte_loops() {
    for len in 0..40 {
        for fill in [b'a', b'\t', 0x80, 0xff, b'~', b' '] {
            let mut b = vec![fill; len];
            assert_eq!(find_quoted_stop(&b), find_quoted_stop_portable(&b));
            for pos in 0..len {
                for c in 0..=255u8 {
                    b[pos] = c;
                    assert_eq!(
                        find_quoted_stop(&b),
                        find_quoted_stop_portable(&b),
                        "len {len} fill {fill} pos {pos} byte {c}"
                    );
                    // A second stop later never moves the first.
                    if pos + 1 < len {
                        b[len - 1] = b'"';
                        assert_eq!(find_quoted_stop(&b), find_quoted_stop_portable(&b));
                        b[len - 1] = fill;
                    }
                }
                b[pos] = fill;
            }
        }
    }
    let mut rng = Rng::seed_from_u64(77);
    for _ in 0..50_000 {
        let len = rng.gen_range(0..200);
        let b: Vec<u8> = (0..len)
            .map(|_| {
                if rng.gen_range(0..40) == 0 {
                    head_byte(&mut rng)
                } else {
                    b'a' + rng.gen_range(0..26) as u8
                }
            })
            .collect();
        assert_eq!(find_quoted_stop(&b), find_quoted_stop_portable(&b), "{b:?}");
    }
}
