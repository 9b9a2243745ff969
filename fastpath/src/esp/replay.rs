//! Inbound anti-replay window (RFC 4303 3.4.3) as an RFC 6479 ring of u64 bitmap words,
//! the newest word held apart beside the top (the "head word").
//!
//! The head word is the bitmap of the 64 sequence numbers around `top` (`top / 64`); it sits
//! right after `top`, so in an [`InboundSa`](super::InboundSa) both share the SA's first
//! cache line and a packet at or just above the top (the common in-order one) reads and
//! writes that line only, where the plain ring put its word in one of five lines. The ring
//! holds the 31 older words; its slot of the top's word is unused until the top moves into
//! a newer word, when the head word is stored there (one store per 64 in-order packets).
//!
//! Sequence numbers are held as `u64` so extended sequence numbers (RFC 4303 A2) only need
//! the high-bit inference in front of [`ReplayWindow::check`]; the bitmap does not change.

use super::error::EspError;

/// Number of 64-bit words in the bitmap ring (a power of two, RFC 6479 section 2).
const WORDS: usize = 32;
/// Bits in the ring.
const BITS: u64 = (WORDS as u64) * 64;
/// Packets the window accepts below the highest sequence number seen, the highest included.
/// One word of the ring is the slack RFC 6479 needs to advance without clearing live bits.
pub const REPLAY_WINDOW: u64 = BITS - 64;

/// Sliding anti-replay window: `top` is the highest authenticated sequence number so far.
/// `repr(C)`: `top` and the head word first, so they share a cache line with what precedes
/// the window in an [`InboundSa`](super::InboundSa).
#[derive(Clone)]
#[repr(C)]
pub struct ReplayWindow {
    top: u64,
    /// The bitmap of the word of `top` (sequence numbers `top / 64 * 64 ..` + 64); the ring's
    /// slot of that word is stale while this holds it.
    head: u64,
    ring: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// An empty window: nothing received yet.
    pub const fn new() -> Self {
        Self {
            top: 0,
            head: 0,
            ring: [0; WORDS],
        }
    }

    /// Highest sequence number accepted so far (0 if none).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Checks `seq` without changing the window (before ICV verification, RFC 4303 3.4.3).
    pub fn check(&self, seq: u64) -> Result<(), EspError> {
        // Sequence number 0 is never sent (RFC 4303 3.3.3: the first packet has 1).
        if seq == 0 {
            return Err(EspError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        // Written as a difference: `seq + REPLAY_WINDOW` could overflow near 2^64 with ESN.
        if self.top - seq >= REPLAY_WINDOW {
            return Err(EspError::TooOld);
        }
        if self.word_of(seq) & Self::bit(seq) != 0 {
            Err(EspError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received; call only after [`check`](Self::check) passed and the ICV
    /// was verified, so forged packets cannot move the window (RFC 4303 3.4.3).
    pub fn update(&mut self, seq: u64) {
        if seq > self.top {
            let old_word = self.top / 64;
            let new_word = seq / 64;
            if new_word != old_word {
                // The head word joins the ring; RFC 6479: the words the window slides over
                // are cleared, at most the whole ring (the new top's own slot stays stale:
                // the new head word, empty, stands for it).
                self.ring[Self::slot(old_word)] = self.head;
                let steps = (new_word - old_word - 1).min(WORDS as u64);
                for i in 1..=steps {
                    self.ring[Self::slot(old_word + i)] = 0;
                }
                self.head = 0;
            }
            self.top = seq;
        }
        let bit = Self::bit(seq);
        if seq / 64 == self.top / 64 {
            self.head |= bit;
        } else {
            self.ring[Self::slot(seq / 64)] |= bit;
        }
    }

    /// The bitmap word that holds `seq` (at most `REPLAY_WINDOW - 1` below the top): the
    /// head word for the top's own word, else its ring slot.
    #[inline(always)]
    fn word_of(&self, seq: u64) -> u64 {
        if seq / 64 == self.top / 64 {
            self.head
        } else {
            self.ring[Self::slot(seq / 64)]
        }
    }

    /// The ring slot of bitmap word `word` (`seq / 64`).
    #[inline(always)]
    fn slot(word: u64) -> usize {
        (word % WORDS as u64) as usize
    }

    /// The bit of `seq` in its word.
    #[inline(always)]
    fn bit(seq: u64) -> u64 {
        1u64 << (seq % 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, seq: u64) -> Result<(), EspError> {
        w.check(seq)?;
        w.update(seq);
        Ok(())
    }

    #[test]
    fn window_is_at_least_1024() {
        const { assert!(REPLAY_WINDOW >= 1024) };
    }

    #[test]
    fn in_order_duplicates_and_zero() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 0), Err(EspError::TooOld));
        for s in 1..=5000 {
            assert_eq!(accept(&mut w, s), Ok(()), "seq {s}");
        }
        assert_eq!(accept(&mut w, 5000), Err(EspError::Replayed));
        assert_eq!(accept(&mut w, 4000), Err(EspError::Replayed));
        assert_eq!(
            accept(&mut w, 5000 - REPLAY_WINDOW + 1),
            Err(EspError::Replayed)
        );
        assert_eq!(accept(&mut w, 5000 - REPLAY_WINDOW), Err(EspError::TooOld));
    }

    #[test]
    fn out_of_order_inside_window_and_big_jump() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 10), Ok(()));
        assert_eq!(accept(&mut w, 3), Ok(()));
        assert_eq!(accept(&mut w, 3), Err(EspError::Replayed));
        // A jump far beyond the ring clears everything: old-but-in-window numbers are new.
        let top = 10 + 10 * BITS;
        assert_eq!(accept(&mut w, top), Ok(()));
        assert_eq!(accept(&mut w, top - 1), Ok(()));
        assert_eq!(accept(&mut w, top - REPLAY_WINDOW + 1), Ok(()));
        assert_eq!(accept(&mut w, top - REPLAY_WINDOW), Err(EspError::TooOld));
        assert_eq!(accept(&mut w, top - 1), Err(EspError::Replayed));
    }

    #[test]
    fn top_of_the_64_bit_space() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, u64::MAX), Ok(()));
        assert_eq!(accept(&mut w, u64::MAX), Err(EspError::Replayed));
        assert_eq!(accept(&mut w, u64::MAX - 5), Ok(()));
        assert_eq!(
            accept(&mut w, u64::MAX - REPLAY_WINDOW),
            Err(EspError::TooOld)
        );
    }

    #[test]
    fn check_does_not_modify() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.check(7), Ok(()));
        w.update(7);
        assert_eq!(w.check(7), Err(EspError::Replayed));
        assert_eq!(w.top(), 7);
    }

    /// The head word's edges: the top crossing into the next word (the head joins the ring),
    /// a packet in the oldest word the window still covers, jumps of exactly the ring's
    /// width (the old word's slot is the new top's), one word more, and a packet in the
    /// top's word below the top (read from the head word, not the ring).
    #[test]
    fn the_head_word_at_word_edges() {
        let mut w = ReplayWindow::new();
        for s in [62, 63, 64, 65] {
            assert_eq!(accept(&mut w, s), Ok(()), "seq {s}");
        }
        assert_eq!((w.top(), w.head), (65, 0b11));
        assert_eq!(w.ring[0], 3 << 62, "the old head word is in the ring");
        for s in [62, 63, 64, 65] {
            assert_eq!(accept(&mut w, s), Err(EspError::Replayed), "seq {s}");
        }
        assert_eq!(accept(&mut w, 61), Ok(()), "an older word, from the ring");
        // In the top's word but below the top: from the head word.
        assert_eq!(accept(&mut w, 127), Ok(()));
        assert_eq!(accept(&mut w, 100), Ok(()));
        assert_eq!(accept(&mut w, 100), Err(EspError::Replayed));
        // Top at word 32 (seq 2048): word 1 (64..128) is exactly the oldest word in the window.
        assert_eq!(accept(&mut w, 2048), Ok(()));
        assert_eq!(
            w.check(2048 - REPLAY_WINDOW + 1),
            Err(EspError::Replayed),
            "65, the oldest in the window, kept from the ring"
        );
        assert_eq!(w.check(2048 - REPLAY_WINDOW), Err(EspError::TooOld));
        assert_eq!(accept(&mut w, 127), Err(EspError::Replayed), "word 1 kept");
        assert_eq!(accept(&mut w, 126), Ok(()));
        assert_eq!(accept(&mut w, 63), Err(EspError::TooOld));
        // A jump of exactly 32 words: the old word's slot is the new top's; nothing of the
        // old word may be read as the new one's.
        assert_eq!(accept(&mut w, 2048 + 32 * 64), Ok(()));
        assert_eq!(w.head, 1, "the new head word holds the new top only");
        assert_eq!(accept(&mut w, 2048 + 32 * 64 + 1), Ok(()));
        assert_eq!(accept(&mut w, 2048 + 31 * 64), Ok(()), "a cleared word");
        // 33 words: the whole ring cleared.
        let top = 2048 + 65 * 64 + 5;
        assert_eq!(accept(&mut w, top), Ok(()));
        for s in top - REPLAY_WINDOW + 1..top {
            assert_eq!(w.check(s), Ok(()), "seq {s}");
        }
    }

    /// Compares against a naive set-based model over a pseudo-random walk.
    #[test]
    fn matches_naive_model() {
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 0u64;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let jitter = (x % 2600) as i64 - 2400;
            let seq = (top as i64 + jitter).max(0) as u64;
            let expect = if seq == 0 || (seq <= top && seq + REPLAY_WINDOW <= top) {
                Err(EspError::TooOld)
            } else if seen.contains(&seq) {
                Err(EspError::Replayed)
            } else {
                Ok(())
            };
            assert_eq!(accept(&mut w, seq), expect, "seq {seq} top {top}");
            if expect.is_ok() {
                seen.insert(seq);
                top = top.max(seq);
            }
        }
    }
}
