//! Text from bytes already known to be ASCII, without `str::from_utf8`'s validation.

/// `b` as a `str` if every byte is ASCII (`None` otherwise): the ASCII test is a word at a
/// time (`<[u8]>::is_ascii`), where `str::from_utf8` walks its decoder state machine over
/// short inputs. For text the caller wrote itself (digits and dots of an address).
#[inline]
pub fn ascii_str(b: &[u8]) -> Option<&str> {
    if !b.is_ascii() {
        return None;
    }
    // SAFETY: every byte is below 0x80 (checked just above), and a sequence of ASCII bytes
    // is valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(b) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `from_utf8` says wherever the input is ASCII, and `None` wherever it is not.
    #[test]
    fn ascii_text_is_what_from_utf8_reads() {
        for len in 0..=20usize {
            for at in 0..len {
                for v in 0..=255u8 {
                    let mut b = vec![b'7'; len];
                    b[at] = v;
                    let want = if v < 0x80 {
                        std::str::from_utf8(&b).ok()
                    } else {
                        None
                    };
                    assert_eq!(ascii_str(&b), want, "{b:?}");
                }
            }
        }
        assert_eq!(ascii_str(b""), Some(""));
        assert_eq!(ascii_str("é".as_bytes()), None);
    }
}
