//! [`Message::parse`] (the head's line ends from one vector scan) against
//! [`Message::parse_general`] (`memmem`, then `memchr2` a line), the path it stands in for:
//! the same message or the same error on the fixture messages, on mutated ones and on
//! random heads dense in CR, LF, NUL, colons and folds.

use super::Message;
use crate::sip::test_fixtures::fixture_messages as fixtures;
use akagate_proto::simd::HEAD_SCAN_MAX;
use rand::{Rng, SeedableRng};

/// The two parses of `raw` agree (their `Debug` forms: start line, every header's name,
/// value and kind, body, Content-Length; or the error). True if `raw` parsed.
fn agrees(raw: &[u8]) -> bool {
    let scanned = Message::parse(raw);
    let general = Message::parse_general(raw);
    assert_eq!(
        format!("{scanned:?}"),
        format!("{general:?}"),
        "{:?}",
        String::from_utf8_lossy(raw)
    );
    scanned.is_ok()
}

#[test]
fn the_scanned_parse_is_the_general_one_on_the_fixtures_and_their_mutations() {
    let fixtures = fixtures();
    assert!(fixtures.len() > 20);
    let mut parsed = 0;
    for raw in &fixtures {
        parsed += usize::from(agrees(raw));
        // Every cut of the message (a head without its end, a body short of its length).
        for cut in 0..raw.len() {
            agrees(&raw[..cut]);
        }
    }
    assert!(parsed > 10, "{parsed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    const BYTES: &[u8] = b"\r\n\r\n\0 \t:\\\"aZ,;\x80\xc3\xa9\xff";
    let mut mutated_ok = 0;
    for _ in 0..60_000 {
        let mut raw = fixtures[rng.gen_range(0..fixtures.len())].clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..raw.len());
            let b = BYTES[rng.gen_range(0..BYTES.len())];
            match rng.gen_range(0..3) {
                0 => raw[at] = b,
                1 => raw.insert(at, b),
                _ => {
                    raw.remove(at);
                }
            }
            if raw.is_empty() {
                break;
            }
        }
        mutated_ok += usize::from(agrees(&raw));
    }
    assert!(mutated_ok > 10_000, "{mutated_ok}");
}

#[test]
fn the_scanned_parse_is_the_general_one_on_random_heads() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ca7);
    const PIECES: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b"\r",
        b"\n",
        b"\0",
        b"\\\0",
        b" ",
        b"\t",
        b":",
        b"Via",
        b"l",
        b"Content-Length",
        b"0",
        b"12",
        b"x",
        b"\xc3\xa9",
        b"\xff",
        b"\r\n ",
        b"\r\n\t",
    ];
    let mut ok = 0;
    for _ in 0..100_000 {
        let mut raw = b"INVITE sip:a@b SIP/2.0\r\n".to_vec();
        if rng.gen_bool(0.2) {
            raw = b"SIP/2.0 200 OK\r\n".to_vec();
        }
        for _ in 0..rng.gen_range(0..40) {
            raw.extend_from_slice(PIECES[rng.gen_range(0..PIECES.len())]);
        }
        if rng.gen_bool(0.5) {
            raw.extend_from_slice(b"\r\nCall-ID: x\r\n\r\n");
        }
        ok += usize::from(agrees(&raw));
    }
    assert!(ok > 1_000, "{ok}");
}

/// Heads around the scan's bound take either path and answer the same.
#[test]
fn heads_at_the_scans_bound_parse_as_before() {
    for len in [
        HEAD_SCAN_MAX - 200,
        HEAD_SCAN_MAX - 5,
        HEAD_SCAN_MAX - 4,
        HEAD_SCAN_MAX - 3,
        HEAD_SCAN_MAX + 10,
    ] {
        let mut raw = b"MESSAGE sip:a@b SIP/2.0\r\nX-Pad: ".to_vec();
        raw.resize(len, b'p');
        raw.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nhi");
        assert!(agrees(&raw));
    }
}
