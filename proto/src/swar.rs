//! Eight bytes a step in a general-purpose register ("SIMD within a register"): finding a
//! byte near the start of a long slice, and lower-casing a packed ASCII word.
//!
//! SIP's header values are read in short pieces — a parameter's value up to the next `;`,
//! a name up to its `=` — inside a line that may go on for hundreds of bytes. A byte loop
//! costs a few instructions per byte, and `memchr` a call whose set-up outweighs the search
//! when the byte sought is a dozen bytes away; a word-at-a-time step covers eight bytes in
//! about as many instructions, with no call. Written here rather than taken from a crate:
//! `memchr` (already used for long searches) has no entry point for "probably near".

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// How far [`find_byte_near`] steps a word at a time before handing the rest to `memchr`.
const NEAR: usize = 32;

/// `0x80` in each byte of `x` that is zero, `0` in the others (exact: no borrow runs from
/// one byte into the next, as it does in the shorter `(x - LO) & !x & HI`).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & !HI) + !HI) | x | !HI)
}

/// The eight bytes of `hay` from `at` as a little-endian word (the first byte lowest), if
/// there are eight.
#[inline]
pub fn word_at(hay: &[u8], at: usize) -> Option<u64> {
    let bytes = hay.get(at..at.checked_add(8)?)?;
    bytes.try_into().ok().map(u64::from_le_bytes)
}

/// The index in `word` (0–7, lowest byte first) of the first byte equal to `a` or `b`.
#[inline]
pub fn first_of_two_in_word(word: u64, a: u8, b: u8) -> Option<usize> {
    let hits = zero_bytes(word ^ (LO * u64::from(a))) | zero_bytes(word ^ (LO * u64::from(b)));
    (hits != 0).then(|| hits.trailing_zeros() as usize / 8)
}

/// The index of the first `needle` in `hay`: a word at a time over the first 32 bytes
/// (where a parameter's end usually is), then `memchr` for the rest.
#[inline]
pub fn find_byte_near(needle: u8, hay: &[u8]) -> Option<usize> {
    let pattern = LO * u64::from(needle);
    let mut at = 0;
    while at < NEAR {
        let Some(word) = word_at(hay, at) else {
            // Fewer than eight bytes left: one at a time.
            let tail = hay.get(at..)?;
            return tail.iter().position(|&c| c == needle).map(|i| at + i);
        };
        let hits = zero_bytes(word ^ pattern);
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    memchr::memchr(needle, hay.get(at..)?).map(|i| at + i)
}

/// How far [`find_of_two_near`] and [`find_of_three_near`] step a word at a time before
/// handing the rest to `memchr2` / `memchr3` (a header value or list element is rarely
/// longer; past this the vector search's set-up pays for itself).
const NEAR_SET: usize = 64;

/// The first byte of `hay` from `at` that `hits` flags (`0x80` in each flagged byte of a
/// word, exact per byte): a word at a time while `at < limit`; the last fewer than eight
/// bytes as the slice's last word shifted down (bytes already looked at dropped, none
/// read twice into the answer). `None` with `at` where the word steps stopped, for the
/// caller's long search, if `limit` was reached first.
#[inline(always)]
fn scan_words(hay: &[u8], limit: usize, hits: impl Fn(u64) -> u64) -> Result<Option<usize>, usize> {
    let mut at = 0;
    while at < limit {
        let Some(word) = word_at(hay, at) else {
            let left = hay.len() - at;
            if left == 0 {
                return Ok(None);
            }
            if hay.len() >= 8 {
                // `hay`'s last word holds the `left` bytes from `at` in its top bytes.
                let last = word_at(hay, hay.len() - 8).unwrap_or(0);
                let flagged = hits(last) >> (8 * (8 - left));
                return Ok((flagged != 0).then(|| at + flagged.trailing_zeros() as usize / 8));
            }
            return Ok(hay[at..]
                .iter()
                .position(|&c| hits(u64::from(c)) & 0x80 != 0)
                .map(|i| at + i));
        };
        let flagged = hits(word);
        if flagged != 0 {
            return Ok(Some(at + flagged.trailing_zeros() as usize / 8));
        }
        at += 8;
    }
    Err(at)
}

/// The index of the first `a` or `b` in `hay`: a word at a time over the first 64 bytes
/// (a quoted parameter value up to its closing quote), `memchr2` beyond.
#[inline]
pub fn find_of_two_near(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    match scan_words(hay, NEAR_SET, |w| zero_bytes(w ^ pa) | zero_bytes(w ^ pb)) {
        Ok(found) => found,
        Err(at) => memchr::memchr2(a, b, hay.get(at..)?).map(|i| at + i),
    }
}

/// The index of the first `a`, `b` or `c` in `hay`: a word at a time over the first 64
/// bytes (a list element of a header value, the `<` that starts it), `memchr3` beyond.
#[inline]
pub fn find_of_three_near(a: u8, b: u8, c: u8, hay: &[u8]) -> Option<usize> {
    let (pa, pb, pc) = (LO * u64::from(a), LO * u64::from(b), LO * u64::from(c));
    let hits = |w: u64| zero_bytes(w ^ pa) | zero_bytes(w ^ pb) | zero_bytes(w ^ pc);
    match scan_words(hay, NEAR_SET, hits) {
        Ok(found) => found,
        Err(at) => memchr::memchr3(a, b, c, hay.get(at..)?).map(|i| at + i),
    }
}

/// `word` (eight packed bytes) with its ASCII upper-case letters lower-cased and every other
/// byte unchanged, as `u8::to_ascii_lowercase` does to each byte.
#[inline]
pub fn lower_ascii_word(word: u64) -> u64 {
    let low7 = word & !HI;
    // High bit of each byte: its low seven bits are ≥ 'A', then > 'Z' (no carries: ≤ 0xfe).
    let from_a = low7 + LO * u64::from(0x80 - b'A');
    let past_z = low7 + LO * u64::from(0x80 - b'Z' - 1);
    // Upper case: at least 'A', not past 'Z', and not a byte ≥ 0x80 to start with.
    let upper = (from_a ^ past_z) & !word & HI;
    word | (upper >> 2)
}

/// How many of `word`'s bytes, from the first (lowest), are ASCII letters or `-` (0–8): the
/// characters of every common SIP header name, counted eight at a time. Exact: every other
/// byte (digits, other token characters, bytes ≥ 0x80) ends the run.
#[inline]
pub fn leading_letters_or_dash(word: u64) -> usize {
    // `| 0x20` lower-cases letters and maps no other byte onto a lower-case letter.
    let low7 = (word | (LO * 0x20)) & !HI;
    let from_a = low7 + LO * u64::from(0x80 - b'a');
    let past_z = low7 + LO * u64::from(0x80 - b'z' - 1);
    let letter = (from_a ^ past_z) & !word & HI;
    let dash = zero_bytes(word ^ (LO * u64::from(b'-')));
    (!(letter | dash) & HI).trailing_zeros() as usize / 8
}

/// True if a byte of `b` is a control or SP (at most 0x20) or DEL (0x7f): what a
/// Request-URI may not hold (RFC 3261 25.1). Bytes of 0x80 and above pass. Eight bytes a
/// step, the last word overlapping the one before; a slice shorter than eight a byte at a
/// time (exact, as [`has_ctl_space_or_del_portable`], which a test holds it to).
#[inline]
pub fn has_ctl_space_or_del(b: &[u8]) -> bool {
    let flagged = |word: u64| {
        let low7 = word & !HI;
        // High bit: the low seven bits are at least 0x21 (no carry out of a byte: ≤ 0xde).
        let from_21 = low7 + LO * u64::from(0x80 - 0x21u8);
        // High bit: the low seven bits are 0x7f.
        let del = low7 + LO;
        (!from_21 | del) & !word & HI
    };
    let n = b.len();
    if n < 8 {
        return has_ctl_space_or_del_portable(b);
    }
    let mut at = 0;
    while at + 8 < n {
        if word_at(b, at).is_some_and(|w| flagged(w) != 0) {
            return true;
        }
        at += 8;
    }
    word_at(b, n - 8).is_some_and(|w| flagged(w) != 0)
}

/// [`has_ctl_space_or_del`] a byte at a time: the reference.
pub fn has_ctl_space_or_del_portable(b: &[u8]) -> bool {
    b.iter().any(|&c| c <= 0x20 || c == 0x7f)
}

/// The first `len` (≤ 8) bytes of `hay` from `at`, packed little-endian as a word with the
/// rest zero, if `hay` has eight bytes from `at` (a caller short of that packs by hand).
#[inline]
pub fn packed_prefix(hay: &[u8], at: usize, len: usize) -> Option<u64> {
    let word = word_at(hay, at)?;
    Some(match len {
        0 => 0,
        1..=7 => word & ((1u64 << (8 * len)) - 1),
        _ => word,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng};

    /// A seeded stream of words for the random cases (failures reproduce).
    fn random_words(seed: u64) -> impl FnMut() -> u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        move || rng.gen()
    }

    #[test]
    fn has_ctl_space_or_del_is_the_byte_loop() {
        // Every byte value at every position of slices of every length up to 40.
        for len in 1..=40 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = c;
                    assert_eq!(
                        has_ctl_space_or_del(&v),
                        has_ctl_space_or_del_portable(&v),
                        "{len} {at} {c:#x}"
                    );
                }
            }
        }
        assert!(!has_ctl_space_or_del(b""));
        let mut next = random_words(0x0c71_5bac_e0de_1000);
        let mut flagged = 0;
        for _ in 0..100_000 {
            let len = (next() % 48) as usize;
            // Mostly printable bytes, so slices both with and without a hit come up.
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 40 == 0 {
                        (r >> 8) as u8
                    } else {
                        0x21 + (r >> 8) as u8 % 0x5e
                    }
                })
                .collect();
            let got = has_ctl_space_or_del(&v);
            flagged += usize::from(got);
            assert_eq!(got, has_ctl_space_or_del_portable(&v), "{v:x?}");
        }
        assert!(flagged > 2_000 && flagged < 90_000, "{flagged}");
    }

    #[test]
    fn leading_letters_or_dash_counts_what_a_byte_loop_counts() {
        let mut next = random_words(0x9e37_79b9_7f4a_7c15);
        // Letters at both ends of both cases, their neighbours, '-' and its neighbours,
        // digits, and bytes that alias a letter under a dropped high bit or a flipped case bit.
        let alphabet = [
            b'a',
            b'z',
            b'A',
            b'Z',
            b'm',
            b'`',
            b'{',
            b'@',
            b'[',
            b'-',
            b',',
            b'.',
            b'0',
            b'9',
            b':',
            b' ',
            0x00,
            0x80 | b'a',
            0x80 | b'A',
            0x80 | b'-',
            0xff,
            0x7f,
        ];
        let all: Vec<u8> = (0..=255).collect();
        for _ in 0..20_000 {
            let bytes: [u8; 8] = std::array::from_fn(|_| {
                if next() % 4 == 0 {
                    all[(next() % 256) as usize]
                } else {
                    alphabet[(next() % alphabet.len() as u64) as usize]
                }
            });
            let expected = bytes
                .iter()
                .take_while(|c| c.is_ascii_alphabetic() || **c == b'-')
                .count();
            assert_eq!(
                leading_letters_or_dash(u64::from_le_bytes(bytes)),
                expected,
                "{bytes:?}"
            );
        }
        assert_eq!(leading_letters_or_dash(u64::from_le_bytes(*b"Via: SIP")), 3);
        assert_eq!(leading_letters_or_dash(u64::from_le_bytes(*b"Call-ID:")), 7);
        assert_eq!(leading_letters_or_dash(u64::from_le_bytes(*b"Security")), 8);
    }

    #[test]
    fn find_byte_near_finds_what_position_finds_at_every_length_and_place() {
        let mut next = random_words(0x2545_f491_4f6c_dd1d);
        // Bytes around the needle's value and the high half, so near misses and borrows
        // across bytes (0x00, 0x80, 0xff, needle ± 1) all occur.
        let alphabet = [b';', b':', b'<', 0x00, 0x80, 0xff, 0x7f, b'a', 0x3b | 0x80];
        for len in 0..100 {
            for _ in 0..200 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
                for needle in [b';', 0x00, 0x80, 0xff] {
                    assert_eq!(
                        find_byte_near(needle, &hay),
                        hay.iter().position(|&c| c == needle),
                        "{needle:#x} in {hay:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn find_of_two_and_three_near_find_what_position_finds() {
        let mut next = random_words(0x5851_f42d_4c95_7f2d);
        let alphabet = [
            b'\r', b'\n', b'"', b'<', b',', 0x00, 0x80, 0xff, 0x8d, 0x0c, b'a',
        ];
        for len in 0..150 {
            for _ in 0..100 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        // Mostly filler, so the first hit lands at every distance.
                        if next().is_multiple_of(8) {
                            alphabet[(next() % alphabet.len() as u64) as usize]
                        } else {
                            b'a'
                        }
                    })
                    .collect();
                for (a, b) in [(b'\r', b'\n'), (b'"', b'\\'), (0x00, 0xff)] {
                    assert_eq!(
                        find_of_two_near(a, b, &hay),
                        hay.iter().position(|&x| x == a || x == b),
                        "{a:#x} {b:#x} in {hay:?}"
                    );
                }
                for (a, b, c) in [(b'"', b'<', b','), (0x00, 0x80, 0xff)] {
                    assert_eq!(
                        find_of_three_near(a, b, c, &hay),
                        hay.iter().position(|&x| x == a || x == b || x == c),
                        "{a:#x} {b:#x} {c:#x} in {hay:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn first_of_two_in_word_is_the_first_of_either() {
        let mut next = random_words(0x9e37_79b9_7f4a_7c15);
        let alphabet = [b'=', b';', b'<', b'>', 0x00, 0x80, 0xbd, 0xbb, b'a'];
        for _ in 0..100_000 {
            let bytes: [u8; 8] =
                core::array::from_fn(|_| alphabet[(next() % alphabet.len() as u64) as usize]);
            let word = u64::from_le_bytes(bytes);
            assert_eq!(
                first_of_two_in_word(word, b'=', b';'),
                bytes.iter().position(|&c| c == b'=' || c == b';'),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn lower_ascii_word_lowers_each_byte_as_to_ascii_lowercase_does() {
        // Every byte value in every position, with random neighbours.
        let mut next = random_words(0x0123_4567_89ab_cdef);
        for value in 0..=255u8 {
            for place in 0..8 {
                let mut bytes = next().to_le_bytes();
                bytes[place] = value;
                let lowered = lower_ascii_word(u64::from_le_bytes(bytes)).to_le_bytes();
                assert_eq!(lowered, bytes.map(|c| c.to_ascii_lowercase()), "{bytes:?}");
            }
        }
    }

    #[test]
    fn packed_prefix_keeps_only_the_first_len_bytes() {
        let hay = b"port-c=5086;";
        assert_eq!(
            packed_prefix(hay, 0, 6),
            Some(u64::from_le_bytes(*b"port-c\0\0"))
        );
        assert_eq!(packed_prefix(hay, 0, 0), Some(0));
        assert_eq!(
            packed_prefix(hay, 4, 8),
            Some(u64::from_le_bytes(*b"-c=5086;"))
        );
        assert_eq!(packed_prefix(hay, 5, 3), None);
    }
}
