//! The core's timer set: a set of `(deadline, key)` pairs taken earliest first (ties by key),
//! as a few sorted runs ("lanes") and a binary heap, with lazy deletion, in front of a hash
//! set of the live pairs.
//!
//! Most deadlines are a fixed delay after the moment they are armed (a challenge's, a
//! binding's expiry, a keep-alive's), so each kind arrives in order: arming appends such a
//! pair to the lane whose last pair is the latest not after it (a lane is sorted), and only
//! a pair that fits no lane goes onto the heap. Cancelling only takes the pair out of the
//! live set, leaving its entry stale until it reaches its lane's front (or the heap's top),
//! where it is dropped: from a lane's front in one step, where the heap's top costs a
//! sift-down through every level (a registration's challenge deadline, taken out when the
//! REGISTER that answers it completes, is often the earliest of all). So arm, re-arm and
//! cancel cost a hash each instead of two B-tree walks, and nothing allocates but the
//! lanes', the heap's and the set's amortised growth. Each entry carries its key's keyed
//! hash, computed once an [`TimerSet::arm`]: the live set's look-ups (the old pair's removal,
//! the new one's insert, the fronts' liveness checks) fold that one word instead of hashing
//! the key's text again. Everything is rebuilt from the live
//! set when stale entries outnumber live ones (plus a slack), so a churn of re-armed
//! registrations cannot grow it without bound.
//!
//! The semantics are those of a `BTreeSet<(Instant, TimerKey)>`: arming a pair already live
//! changes nothing, cancelling one not live changes nothing, and [`TimerSet::pop_due`]
//! yields the live pairs in `(deadline, key)` order, each once.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

use akagate_proto::hash::KeyedState;

use super::TimerKey;

/// Stale entries tolerated beyond the live ones before everything is rebuilt.
const SLACK: usize = 1024;

/// Sorted runs kept besides the heap: one each for the few kinds of fixed-delay deadline.
const LANES: usize = 4;

/// A deadline and its key, with the key's keyed hash (the live set's hash of the pair).
/// Ordered and compared by `(deadline, key)` alone.
#[derive(Clone)]
struct Pair {
    at: Instant,
    key: TimerKey,
    hash: u64,
}

impl PartialEq for Pair {
    fn eq(&self, other: &Self) -> bool {
        // Equal keys hash equal: a differing hash settles it without reading the key.
        self.hash == other.hash && self.at == other.at && self.key == other.key
    }
}

impl Eq for Pair {}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at
            .cmp(&other.at)
            .then_with(|| self.key.cmp(&other.key))
    }
}

impl Hash for Pair {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The key's keyed hash alone: a key's few live deadlines share a bucket chain.
        state.write_u64(self.hash);
    }
}

/// Passes the one word a [`Pair`] writes through: it is already a keyed hash.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Pair`; fold anything else in, should it appear.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Where the earliest entry is.
#[derive(Clone, Copy)]
enum Place {
    Lane(usize),
    Heap,
}

/// Deadlines of the core, earliest first (see the module documentation).
#[derive(Default)]
pub(crate) struct TimerSet {
    /// Runs sorted by `(deadline, key)`: appended at the back, taken from the front. Each
    /// front is live.
    lanes: [VecDeque<Pair>; LANES],
    /// The pairs that fit no lane, and stale ones not yet dropped; its top is live.
    heap: BinaryHeap<Reverse<Pair>>,
    /// The live pairs.
    live: HashSet<Pair, BuildHasherDefault<PreHashed>>,
    /// The keyed hasher of the keys (a random seed per set).
    keys: KeyedState,
}

impl TimerSet {
    /// Moves `key` from `previous` to `at`: the pair `(previous, key)` is taken out (if
    /// live) and `(at, key)` put in (if `at` is set).
    pub(crate) fn arm(&mut self, key: TimerKey, previous: Option<Instant>, at: Option<Instant>) {
        if previous == at {
            return;
        }
        // The key hashed once; the probe's key is taken back for the insert (no copy of it).
        let hash = self.keys.hash_one(&key);
        let mut key = key;
        if let Some(p) = previous {
            let probe = Pair { at: p, key, hash };
            if self.live.remove(&probe) {
                self.prune_fronts_equal_to(&probe);
            }
            key = probe.key;
        }
        if let Some(a) = at {
            let entry = Pair { at: a, key, hash };
            // A pair already live changes nothing (its entry is there).
            if self.live.insert(entry.clone()) {
                self.place(entry);
            }
        }
        if self.entries() > 2 * self.live.len() + SLACK {
            self.rebuild();
        }
    }

    /// The earliest live deadline.
    pub(crate) fn first(&self) -> Option<Instant> {
        self.earliest().map(|(_, pair)| pair.at)
    }

    /// Takes the earliest live pair if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        let (place, pair) = self.earliest()?;
        if pair.at > now {
            return None;
        }
        let entry = match place {
            Place::Lane(i) => self.lanes[i].pop_front()?,
            Place::Heap => self.heap.pop()?.0,
        };
        self.live.remove(&entry);
        // The run's next entry may be stale, and so may another copy of the pair at a front.
        self.prune(place);
        self.prune_fronts_equal_to(&entry);
        Some((entry.at, entry.key))
    }

    /// Number of live pairs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Entries held, live and stale.
    fn entries(&self) -> usize {
        self.heap.len() + self.lanes.iter().map(VecDeque::len).sum::<usize>()
    }

    /// The earliest front (each front is live) and where it is.
    fn earliest(&self) -> Option<(Place, &Pair)> {
        let mut best = self.heap.peek().map(|Reverse(top)| (Place::Heap, top));
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(front) = lane.front() {
                if best.is_none_or(|(_, b)| front < b) {
                    best = Some((Place::Lane(i), front));
                }
            }
        }
        best
    }

    /// Appends `entry` to the lane whose last pair is the latest not after it (an empty
    /// lane if none), or pushes it onto the heap.
    fn place(&mut self, entry: Pair) {
        let mut fit: Option<(usize, &Pair)> = None;
        let mut empty = None;
        for (i, lane) in self.lanes.iter().enumerate() {
            match lane.back() {
                Some(back) if *back <= entry => {
                    if fit.is_none_or(|(_, f)| back > f) {
                        fit = Some((i, back));
                    }
                }
                Some(_) => {}
                None => {
                    empty.get_or_insert(i);
                }
            }
        }
        match fit.map(|(i, _)| i).or(empty) {
            Some(i) => self.lanes[i].push_back(entry),
            None => self.heap.push(Reverse(entry)),
        }
    }

    /// After `pair` left the live set: drops stale entries from every front that was it,
    /// so each front is live again (or its run empty).
    fn prune_fronts_equal_to(&mut self, pair: &Pair) {
        for i in 0..LANES {
            if self.lanes[i].front() == Some(pair) {
                self.prune(Place::Lane(i));
            }
        }
        if self.heap.peek().is_some_and(|Reverse(top)| top == pair) {
            self.prune(Place::Heap);
        }
    }

    /// Drops stale entries from the front of the run at `place`, so its front is live.
    fn prune(&mut self, place: Place) {
        match place {
            Place::Lane(i) => {
                while let Some(front) = self.lanes[i].front() {
                    if self.live.contains(front) {
                        break;
                    }
                    self.lanes[i].pop_front();
                }
            }
            Place::Heap => {
                while let Some(Reverse(top)) = self.heap.peek() {
                    if self.live.contains(top) {
                        break;
                    }
                    self.heap.pop();
                }
            }
        }
    }

    /// Rebuilds from the live pairs alone: one sorted lane.
    fn rebuild(&mut self) {
        let mut entries: Vec<_> = self.live.iter().cloned().collect();
        entries.sort_unstable();
        self.heap.clear();
        for lane in &mut self.lanes {
            *lane = VecDeque::new();
        }
        self.lanes[0] = VecDeque::from(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::TxId;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;
    use std::time::Duration;

    /// Pops every deadline due at `now` from the set and from the model, asserting both
    /// give the same pairs in the same order, and clears the popped keys' `armed` slots.
    fn pop_due_against_model(
        set: &mut TimerSet,
        model: &mut BTreeSet<(Instant, TimerKey)>,
        armed: &mut [Option<Instant>],
        now: Instant,
        (seed, step): (u64, usize),
    ) {
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
                        pop_due_against_model(&mut set, &mut model, &mut armed, now, (seed, step));
                    }
                }
                assert_eq!(set.first(), model.first().map(|(a, _)| *a), "seed {seed}");
                assert_eq!(set.len(), model.len(), "seed {seed}");
            }
        }
    }

    /// Registrations' lives as the core arms them, against the `BTreeSet`: a challenge
    /// deadline a fixed delay after now, replaced by a binding's expiry (another fixed delay)
    /// when it completes or dropped when it fails, keep-alives, and now moving on: the
    /// pairs come out in order, and stale entries stay within the bound.
    #[test]
    fn matches_an_ordered_set_with_fixed_delays() {
        let base = Instant::now();
        let delays = [30u64, 600, 300, 45, 7];
        for seed in 0..10u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut set = TimerSet::default();
            let mut model: BTreeSet<(Instant, TimerKey)> = BTreeSet::new();
            let mut armed: Vec<Option<Instant>> = vec![None; 256];
            let mut now = base;
            for step in 0..20_000 {
                let i = rng.gen_range(0..256u64);
                let slot = &mut armed[i as usize];
                match rng.gen_range(0..8) {
                    0..=4 => {
                        let d = delays[rng.gen_range(0..delays.len())];
                        let at = now + Duration::from_millis(d * 1000);
                        set.arm(key(i), *slot, Some(at));
                        if let Some(p) = *slot {
                            model.remove(&(p, key(i)));
                        }
                        model.insert((at, key(i)));
                        *slot = Some(at);
                    }
                    5 => {
                        set.arm(key(i), *slot, None);
                        if let Some(p) = *slot {
                            model.remove(&(p, key(i)));
                        }
                        *slot = None;
                    }
                    _ => {
                        now += Duration::from_millis(rng.gen_range(0..2000));
                        pop_due_against_model(&mut set, &mut model, &mut armed, now, (seed, step));
                    }
                }
                assert_eq!(set.first(), model.first().map(|(a, _)| *a), "seed {seed}");
                assert_eq!(set.len(), model.len(), "seed {seed}");
                assert!(set.entries() <= 2 * set.len() + SLACK + 1);
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
        assert!(set.entries() <= 4 + SLACK, "{}", set.entries());
        let end = base + Duration::from_secs(2_000_000);
        assert_eq!(set.pop_due(end), Some((base, key(1))));
        assert_eq!(
            set.pop_due(end),
            Some((base + Duration::from_secs(100_000), key(0)))
        );
        assert_eq!(set.first(), None);
    }
}
