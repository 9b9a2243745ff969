use super::*;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

/// Bytes around the classes' edges, and bytes of each class.
const EDGES: &[u8] = b"\0\t\x1f !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~\x7f\x80\xa0\xff";

/// The three runs of `b` from `from`, each by its vector form and its byte loop.
fn check(b: &[u8], from: usize) {
    assert_eq!(
        token_end(b, from),
        token_end_portable(b, from),
        "token {b:?} {from}"
    );
    assert_eq!(
        host_name_run(b, from),
        host_name_run_portable(b, from),
        "host {b:?} {from}"
    );
    if from == 0 {
        assert_eq!(user_stop(b), user_stop_portable(b), "user {b:?}");
    }
}

/// The byte tests are the tables the slowpath used (written out again here).
#[test]
fn the_byte_tests_are_the_grammar_classes() {
    for c in 0..=255u8 {
        let token_marks = b"-.!%*_+`'~";
        assert_eq!(
            is_token_byte(c),
            c.is_ascii_alphanumeric() || token_marks.contains(&c)
        );
        assert_eq!(is_token_byte(c), crate::sipscan::is_token_char(c));
        assert_eq!(
            is_host_name_byte(c),
            c.is_ascii_alphanumeric() || b"-._".contains(&c)
        );
        assert_eq!(is_dotted_byte(c), c.is_ascii_digit() || c == b'.');
        let plain = (0x21..=0x7e).contains(&c) && !b"<>\"%".contains(&c);
        assert_eq!(is_user_stop(c), c == b'@' || !plain);
    }
}

/// Every byte value at every position of slices of 0 to 40 bytes, among fills of each
/// class, from every start.
#[test]
fn every_byte_at_every_place_reads_as_the_byte_loops() {
    for len in 0..=40usize {
        for fill in [b'a', b'7', b'.', b':', b'@', b' ', 0x80] {
            let mut b = vec![fill; len];
            for from in 0..=len + 1 {
                check(&b, from);
            }
            for at in 0..len {
                for v in 0..=255u8 {
                    b[at] = v;
                    for from in [0, at.saturating_sub(1), at, at + 1, len] {
                        check(&b, from);
                    }
                }
                b[at] = fill;
            }
        }
    }
}

/// Random slices over the edge bytes, mostly of one class with a few others.
#[test]
fn random_runs_read_as_the_byte_loops() {
    let mut rng = StdRng::seed_from_u64(0x7061_7273_6532_3500);
    for _ in 0..200_000 {
        let len = rng.gen_range(0..70);
        let common = EDGES[rng.gen_range(0..EDGES.len())];
        let b: Vec<u8> = (0..len)
            .map(|_| {
                if rng.gen_ratio(7, 8) {
                    common
                } else {
                    EDGES[rng.gen_range(0..EDGES.len())]
                }
            })
            .collect();
        let from = rng.gen_range(0..=len + 1);
        check(&b, from);
        check(&b, 0);
    }
}
