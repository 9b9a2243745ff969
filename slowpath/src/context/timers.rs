//! The core's timer set: a set of `(deadline, key)` pairs taken earliest first (ties by key),
//! as a binary heap with lazy deletion in front of a hash set of the live pairs.
//!
//! Arming pushes onto the heap (one comparison when the new deadline is the latest, the
//! usual case) and inserts into the live set; cancelling only takes the pair out of the live
//! set, leaving its heap entry stale until it reaches the top, where it is dropped. So arm,
//! re-arm and cancel cost a hash each instead of two B-tree walks, and nothing allocates
//! but the heap's and the set's amortised growth. The heap is rebuilt from the live set
//! when stale entries outnumber live ones (plus a slack), so a churn of re-armed
//! registrations cannot grow it without bound.
//!
//! The semantics are those of a `BTreeSet<(Instant, TimerKey)>`: arming a pair already live
//! changes nothing, cancelling one not live changes nothing, and [`TimerSet::pop_due`]
//! yields the live pairs in `(deadline, key)` order, each once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use akagate_proto::hash::{keyed_set, KeyedSet};

use super::TimerKey;

/// Stale heap entries tolerated beyond the live ones before the heap is rebuilt.
const SLACK: usize = 1024;

/// Deadlines of the core, earliest first (see the module documentation).
pub(crate) struct TimerSet {
    /// Every live pair, and stale ones (not in `live`) not yet dropped; its top is live.
    heap: BinaryHeap<Reverse<(Instant, TimerKey)>>,
    /// The live pairs.
    live: KeyedSet<(Instant, TimerKey)>,
}

impl Default for TimerSet {
    fn default() -> Self {
        TimerSet {
            heap: BinaryHeap::new(),
            live: keyed_set(),
        }
    }
}

impl TimerSet {
    /// Moves `key` from `previous` to `at`: the pair `(previous, key)` is taken out (if
    /// live) and `(at, key)` put in (if `at` is set).
    pub(crate) fn arm(&mut self, key: TimerKey, previous: Option<Instant>, at: Option<Instant>) {
        if previous == at {
            return;
        }
        let mut key = key;
        if let Some(p) = previous {
            // The probe's key is taken back for the insert (no copy of it).
            let probe = (p, key);
            let was_top = self.heap.peek().is_some_and(|Reverse(top)| *top == probe);
            self.live.remove(&probe);
            key = probe.1;
            if was_top {
                self.prune();
            }
        }
        if let Some(a) = at {
            let entry = (a, key);
            // A pair already live changes nothing (its heap entry is there).
            if self.live.insert(entry.clone()) {
                self.heap.push(Reverse(entry));
            }
        }
        if self.heap.len() > 2 * self.live.len() + SLACK {
            self.rebuild();
        }
    }

    /// The earliest live deadline.
    pub(crate) fn first(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest live pair if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        if self.first()? > now {
            return None;
        }
        let Reverse(entry) = self.heap.pop()?;
        self.live.remove(&entry);
        self.prune();
        Some(entry)
    }

    /// Number of live pairs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Drops stale entries from the top, so the top is live (or the heap empty).
    fn prune(&mut self) {
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.live.contains(top) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Rebuilds the heap from the live pairs alone.
    fn rebuild(&mut self) {
        let entries: Vec<_> = self.live.iter().cloned().map(Reverse).collect();
        self.heap = BinaryHeap::from(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::TxId;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn key(i: u64) -> TimerKey {
        match i % 6 {
            0 => TimerKey::Registration(format!("impi{i}@ims").into()),
            1 => TimerKey::Accepted(format!("z9hG4bK{i}").into()),
            2 => TimerKey::TimerC(TxId(i)),
            3 => TimerKey::KeepAlive(format!("impi{i}@ims").into()),
            4 => TimerKey::RegSubRefresh(format!("call{i}").into()),
            _ => TimerKey::HopTimeout(TxId(i)),
        }
    }

    /// Random arms, re-arms, cancels (accurate and not), duplicate arms and pops against the
    /// `BTreeSet` the set replaces: the same pairs come out, in the same order.
    #[test]
    fn matches_an_ordered_set_under_random_churn() {
        let base = Instant::now();
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut set = TimerSet::default();
            let mut model: BTreeSet<(Instant, TimerKey)> = BTreeSet::new();
            // What each key was last armed at (the caller's `previous`).
            let mut armed: Vec<Option<Instant>> = vec![None; 64];
            let mut now = base;
            for step in 0..4000 {
                let i = rng.gen_range(0..64u64);
                // Few distinct deadlines, so equal deadlines (ties by key) are common.
                let at = base + Duration::from_millis(rng.gen_range(0..200u64) * 10);
                let slot = &mut armed[i as usize];
                match rng.gen_range(0..10) {
                    0..=3 => {
                        set.arm(key(i), *slot, Some(at));
                        if let Some(p) = *slot {
                            model.remove(&(p, key(i)));
                        }
                        model.insert((at, key(i)));
                        *slot = Some(at);
                    }
                    4 | 5 => {
                        set.arm(key(i), *slot, None);
                        if let Some(p) = *slot {
                            model.remove(&(p, key(i)));
                        }
                        *slot = None;
                    }
                    6 => {
                        // A duplicate arm without the previous deadline (two live pairs of
                        // one key), or of a pair already live.
                        let at = if rng.gen_bool(0.5) {
                            slot.unwrap_or(at)
                        } else {
                            at
                        };
                        set.arm(key(i), None, Some(at));
                        model.insert((at, key(i)));
                    }
                    7 => {
                        // A cancel of a deadline that may not be live.
                        set.arm(key(i), Some(at), None);
                        model.remove(&(at, key(i)));
                    }
                    _ => {
                        now += Duration::from_millis(rng.gen_range(0..40));
                        loop {
                            let want = match model.first() {
                                Some(f) if f.0 <= now => model.pop_first(),
                                _ => None,
                            };
                            let got = set.pop_due(now);
                            assert_eq!(got, want, "seed {seed} step {step}");
                            let Some((popped, k)) = got else { break };
                            for (j, s) in armed.iter_mut().enumerate() {
                                if key(j as u64) == k && *s == Some(popped) {
                                    *s = None;
                                }
                            }
                        }
                    }
                }
                assert_eq!(set.first(), model.first().map(|(a, _)| *a), "seed {seed}");
                assert_eq!(set.len(), model.len(), "seed {seed}");
            }
        }
    }

    /// A registration re-armed over and over (each leaving a stale entry behind) keeps the
    /// heap within twice the live pairs plus the slack.
    #[test]
    fn churn_does_not_grow_the_heap() {
        let base = Instant::now();
        let mut set = TimerSet::default();
        // An early deadline stays on top, so the stale entries pile up behind it.
        set.arm(key(1), None, Some(base));
        let mut previous = None;
        for n in 0..100_000u64 {
            let at = Some(base + Duration::from_secs(1 + n));
            set.arm(key(0), previous, at);
            previous = at;
        }
        assert_eq!(set.len(), 2);
        assert!(set.heap.len() <= 4 + SLACK, "{}", set.heap.len());
        let end = base + Duration::from_secs(2_000_000);
        assert_eq!(set.pop_due(end), Some((base, key(1))));
        assert_eq!(
            set.pop_due(end),
            Some((base + Duration::from_secs(100_000), key(0)))
        );
        assert_eq!(set.first(), None);
    }
}
