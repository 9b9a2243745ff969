//! Inbound anti-replay window (RFC 4303 3.4.3) as an RFC 6479 ring of u64 bitmap words.
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
/// `repr(C)`: `top` first, so it shares a cache line with what precedes the window in an
/// [`InboundSa`](super::InboundSa).
#[derive(Clone)]
#[repr(C)]
pub struct ReplayWindow {
    top: u64,
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
            ring: [0; WORDS],
        }
    }

    /// Starts loading what checking and recording `seq_lo` (the low half of a sequence
    /// number) in the window at `p` reads: `top` and the ring word of `seq_lo`.
    /// Computes addresses only (never reads through `p`), so any pointer will do.
    #[inline]
    pub(super) fn prefetch_at(p: *const Self, seq_lo: u32) {
        let base = p.cast::<u8>();
        crate::sad::prefetch(base.wrapping_add(core::mem::offset_of!(Self, top)));
        let (word, _) = Self::position(u64::from(seq_lo));
        let ring = core::mem::offset_of!(Self, ring) + word * 8;
        crate::sad::prefetch(base.wrapping_add(ring));
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
        let (word, bit) = Self::position(seq);
        if self.ring[word] & bit != 0 {
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
            // RFC 6479: clear the words the window slides over, at most the whole ring.
            let steps = (new_word - old_word).min(WORDS as u64);
            for i in 1..=steps {
                self.ring[((old_word + i) % WORDS as u64) as usize] = 0;
            }
            self.top = seq;
        }
        let (word, bit) = Self::position(seq);
        self.ring[word] |= bit;
    }

    fn position(seq: u64) -> (usize, u64) {
        let idx = seq % BITS;
        ((idx / 64) as usize, 1u64 << (idx % 64))
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
