//! A hashed timer wheel of per-UE `poll_at` deadlines, so a worker polls only the stacks
//! that are due instead of scanning every UE on every loop.
//!
//! The wheel keeps no map of its own: each entry carries the deadline it was scheduled for,
//! and the owner of the keys records each key's live deadline beside the key's own state (the
//! worker: in its `Ue`, which it looks up anyway to poll it). An expired entry whose deadline
//! is no longer the recorded one is stale (the deadline moved, or the key is gone) and the
//! owner skips it; a stale entry of a later turn is dropped by the next sweep of the far
//! list below (the owner's `is_live` says so), so moving a far deadline often does not pile
//! up entries. That saves the three hash-map operations per packet a map of deadlines cost
//! (insert on schedule, get and remove on expiry; issue 10, docs/BENCHMARKS.md
//! "Registration cost").
//!
//! A deadline a whole turn or more ahead (a connection's idle or message timeout, seconds
//! away) does not go into a slot but onto one `far` list, appended where it was last
//! written (warm), and swept once a turn: entries no longer live are dropped there, those
//! due within the next turn move into their slots. The list is swept early when it has
//! doubled since the last sweep, so a far deadline moved on every packet (a connection
//! alternating between a delayed ACK and its timeout) keeps at most about twice the live
//! far entries, not a turn's worth of stale ones spread over every slot.
//!
//! A slot's storage is lent, not owned: a slot emptied when its tick comes gives its `Vec`
//! (and its capacity) to a list of spares, and a slot that gets its first entry takes one
//! from there. The slots in use at a time are those between now and the furthest deadline
//! (a few dozen of 1 ms for delayed ACKs), so their storage circulates among the few dozen
//! `Vec`s, warm in cache, instead of each of the thousands of slots growing its own on its
//! first use and keeping it for good (a worker paid that growth, and its page faults, for
//! every slot of its first turn of the wheel: docs/BENCHMARKS.md *ESP in at 1408 B,
//! round 6*).

use smoltcp::time::{Duration, Instant};

/// The length of the far list below which only the once-a-turn sweep runs.
const FAR_MIN: usize = 64;

/// Timer wheel of `(key, deadline)` entries; the owner decides which entries are live.
#[derive(Debug)]
pub struct TimerWheel<K> {
    tick_us: i64,
    slots: Vec<Vec<(K, Instant)>>,
    /// Empty `Vec`s with capacity, given up by slots that emptied, for slots taking their
    /// first entry (at most one per slot: every `Vec` here came from one).
    spare: Vec<Vec<(K, Instant)>>,
    /// Entries a whole turn or more ahead when scheduled, swept by [`TimerWheel::sweep_far`].
    far: Vec<(K, Instant)>,
    /// The tick from which `far` is due for its once-a-turn sweep.
    far_sweep: i64,
    /// The length of `far` that makes it due for a sweep before `far_sweep`.
    far_limit: usize,
    /// Entries whose deadline had already passed when scheduled.
    ready: Vec<(K, Instant)>,
    /// The last tick whose slot was processed.
    cursor: i64,
}

impl<K: Copy> TimerWheel<K> {
    /// A wheel with `slots` slots (rounded up to a power of two) of `tick` each, starting at `now`.
    pub fn new(tick: Duration, slots: usize, now: Instant) -> Self {
        let tick_us = i64::try_from(tick.total_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        let n = slots.max(2).next_power_of_two();
        let cursor = now.total_micros() / tick_us;
        TimerWheel {
            tick_us,
            slots: (0..n).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
            far: Vec::new(),
            far_sweep: cursor + n as i64,
            far_limit: FAR_MIN,
            ready: Vec::new(),
            cursor,
        }
    }

    fn tick_of(&self, at: Instant) -> i64 {
        at.total_micros().div_euclid(self.tick_us)
    }

    fn slot_of(&self, tick: i64) -> usize {
        // rem_euclid is in 0..len, so the cast and the index are in range.
        tick.rem_euclid(self.slots.len() as i64) as usize
    }

    /// Number of entries held, stale ones included (until their tick comes).
    pub fn entries(&self) -> usize {
        self.ready.len() + self.far.len() + self.slots.iter().map(Vec::len).sum::<usize>()
    }

    /// Entries the wheel has room for without allocating (slots, spares and the ready list).
    pub fn capacity(&self) -> usize {
        self.ready.capacity()
            + self.far.capacity()
            + self.slots.iter().map(Vec::capacity).sum::<usize>()
            + self.spare.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Adds an entry for `key` at `at`. The owner records `at` as the key's live deadline;
    /// entries of earlier deadlines of the key become stale.
    pub fn schedule(&mut self, key: K, at: Instant) {
        let tick = self.tick_of(at);
        if tick <= self.cursor {
            self.ready.push((key, at));
        } else if tick - self.cursor >= self.slots.len() as i64 {
            self.far.push((key, at));
        } else {
            let slot = self.slot_of(tick);
            put(&mut self.slots[slot], &mut self.spare, (key, at));
        }
    }

    /// Empties `far` of the entries not live and of those due before `end`'s tick plus one
    /// turn: due ones (tick up to `end`) go to `due`, the others into their slots. Run at
    /// least once a turn, so an entry left here (a turn or more after `end`) reaches its
    /// slot, or `due`, by the time its tick comes.
    fn sweep_far(
        &mut self,
        end: i64,
        due: &mut Vec<(K, Instant)>,
        is_live: &mut impl FnMut(&K, Instant) -> bool,
    ) {
        let (tick_us, n) = (self.tick_us, self.slots.len() as i64);
        let (slots, spare) = (&mut self.slots, &mut self.spare);
        self.far.retain(|&(key, at)| {
            let tick = at.total_micros().div_euclid(tick_us);
            if tick <= end {
                // The owner skips it if it is not live, as any due entry.
                due.push((key, at));
                false
            } else if !is_live(&key, at) {
                false
            } else if tick - end < n {
                // rem_euclid is in 0..n, so the cast and the index are in range.
                put(&mut slots[tick.rem_euclid(n) as usize], spare, (key, at));
                false
            } else {
                true
            }
        });
        self.far_sweep = end + n;
        self.far_limit = (2 * self.far.len()).max(FAR_MIN);
    }

    /// Appends to `due` every entry whose deadline falls in a tick up to `now`'s, removing
    /// them; the owner drops those that are not its keys' live deadlines. Entries of later
    /// turns in the slots visited stay while `is_live(key, deadline)`.
    pub fn expire(
        &mut self,
        now: Instant,
        due: &mut Vec<(K, Instant)>,
        mut is_live: impl FnMut(&K, Instant) -> bool,
    ) {
        due.append(&mut self.ready);
        let end = self.tick_of(now);
        if end <= self.cursor {
            return;
        }
        if end >= self.far_sweep || self.far.len() >= self.far_limit {
            self.sweep_far(end, due, &mut is_live);
        }
        // After a long pause one full turn visits every slot.
        let first = self.cursor.max(end - self.slots.len() as i64) + 1;
        for tick in first..=end {
            let slot = self.slot_of(tick);
            let mut entries = std::mem::take(&mut self.slots[slot]);
            entries.retain(|&(key, at)| {
                if self.tick_of(at) <= end {
                    due.push((key, at));
                    false
                } else {
                    // A later turn of the wheel keeps its entry, unless it is stale already.
                    is_live(&key, at)
                }
            });
            // Entries scheduled into this slot meanwhile are kept.
            entries.append(&mut self.slots[slot]);
            if entries.is_empty() && entries.capacity() > 0 {
                // The slot's storage goes to the next slot to be used.
                self.spare.push(entries);
            } else {
                self.slots[slot] = entries;
            }
        }
        self.cursor = end;
    }

    /// When the wheel may next have an entry due, looking no further than `until`: the start
    /// of the first tick after the last one processed whose slot holds an entry (of this
    /// turn or a later one, live or stale: an early answer, never a late one), the last
    /// tick processed if entries wait for the next [`TimerWheel::expire`], or `None` if no
    /// slot up to `until`'s tick holds one. For a worker deciding how long it may sleep:
    /// it visits at most as many slots as ticks lie between the cursor and `until`, and the
    /// far list, swept once a turn, is not looked at (keep `until` within a turn).
    pub fn next_due(&self, until: Instant) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(Instant::from_micros(self.cursor * self.tick_us));
        }
        let last = self
            .tick_of(until)
            .min(self.cursor + self.slots.len() as i64);
        ((self.cursor + 1)..=last)
            .find(|&tick| !self.slots[self.slot_of(tick)].is_empty())
            .map(|tick| Instant::from_micros(tick * self.tick_us))
    }
}

/// Appends `entry` to a slot's `entries`, which first borrows a spare `Vec` if it has no
/// storage of its own.
fn put<E>(entries: &mut Vec<E>, spare: &mut Vec<Vec<E>>, entry: E) {
    if entries.capacity() == 0 {
        if let Some(lent) = spare.pop() {
            *entries = lent;
        }
    }
    entries.push(entry);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng};
    use std::collections::HashMap;

    fn ms(v: i64) -> Instant {
        Instant::from_millis(v)
    }

    /// The wheel and an owner recording each key's live deadline, as the worker does.
    struct Owned {
        w: TimerWheel<u32>,
        live: HashMap<u32, Instant>,
    }

    impl Owned {
        fn schedule(&mut self, k: u32, at: Instant) {
            if self.live.insert(k, at) != Some(at) {
                self.w.schedule(k, at);
            }
        }

        fn cancel(&mut self, k: u32) {
            self.live.remove(&k);
        }

        fn expire(&mut self, now: i64) -> Vec<u32> {
            let mut due = Vec::new();
            let live = &self.live;
            self.w
                .expire(ms(now), &mut due, |k, at| live.get(k) == Some(&at));
            let mut v: Vec<u32> = due
                .into_iter()
                .filter(|(k, at)| {
                    let live = self.live.get(k) == Some(at);
                    if live {
                        self.live.remove(k);
                    }
                    live
                })
                .map(|(k, _)| k)
                .collect();
            v.sort_unstable();
            v
        }
    }

    fn wheel() -> Owned {
        Owned {
            w: TimerWheel::new(Duration::from_millis(1), 64, ms(0)),
            live: HashMap::new(),
        }
    }

    #[test]
    fn only_due_keys_fire() {
        let mut w = wheel();
        w.schedule(1, ms(5));
        w.schedule(2, ms(10));
        w.schedule(3, ms(500)); // several turns ahead
        assert_eq!(w.expire(4), Vec::<u32>::new());
        assert_eq!(w.expire(5), vec![1]);
        assert_eq!(w.expire(9), Vec::<u32>::new());
        assert_eq!(w.expire(70), vec![2]);
        assert_eq!(w.expire(499), Vec::<u32>::new());
        assert_eq!(w.w.entries(), 1);
        assert_eq!(w.expire(500), vec![3]);
        assert_eq!(w.w.entries(), 0);
    }

    /// `next_due` names the first tick whose slot holds an entry, looks no further than
    /// asked, and says "now" for entries waiting in `ready`.
    #[test]
    fn next_due_is_the_first_occupied_tick_up_to_the_limit() {
        let mut w = wheel();
        assert_eq!(w.w.next_due(ms(1000)), None);
        w.schedule(1, ms(7) + Duration::from_micros(300));
        w.schedule(2, ms(20));
        w.schedule(3, ms(500)); // far: not looked at
        assert_eq!(w.w.next_due(ms(1000)), Some(ms(7)));
        assert_eq!(w.w.next_due(ms(6)), None);
        assert_eq!(w.expire(7), vec![1]);
        assert_eq!(w.w.next_due(ms(1000)), Some(ms(20)));
        assert_eq!(w.w.next_due(ms(19)), None);
        // A deadline already passed when scheduled waits in `ready`: due at once.
        w.schedule(4, ms(3));
        assert_eq!(w.w.next_due(ms(8)), Some(ms(7)));
        assert_eq!(w.expire(8), vec![4]);
        assert_eq!(w.w.next_due(ms(30)), Some(ms(20)));
    }

    #[test]
    fn reschedule_moves_and_cancel_removes() {
        let mut w = wheel();
        w.schedule(1, ms(5));
        w.schedule(1, ms(20));
        w.schedule(2, ms(6));
        w.cancel(2);
        assert_eq!(w.expire(10), Vec::<u32>::new());
        assert_eq!(w.expire(20), vec![1]);
        // Moving a deadline earlier works too.
        w.schedule(1, ms(100));
        w.schedule(1, ms(30));
        assert_eq!(w.expire(30), vec![1]);
        assert_eq!(w.expire(200), Vec::<u32>::new());
        // Stale entries leave the wheel when their tick comes.
        assert_eq!(w.w.entries(), 0);
    }

    #[test]
    fn past_deadline_fires_on_next_expire_and_long_pause_catches_up() {
        let mut w = wheel();
        assert_eq!(w.expire(50), Vec::<u32>::new());
        w.schedule(7, ms(10));
        assert_eq!(w.expire(50), vec![7]);
        for k in 0..200 {
            w.schedule(k, ms(60 + i64::from(k) * 7));
        }
        // One call long after all deadlines fires each key exactly once.
        let fired = w.expire(10_000);
        assert_eq!(fired, (0..200).collect::<Vec<_>>());
        assert_eq!(w.w.entries(), 0);
    }

    #[test]
    fn a_moved_far_deadline_leaves_no_entry_behind() {
        // A deadline several turns ahead, moved on every packet: its old entries go at the
        // first visit of their slot, not at their own (far) tick.
        let mut w = wheel();
        for t in 0..100 {
            w.schedule(9, ms(1_000 + t));
            assert_eq!(w.expire(t), Vec::<u32>::new());
        }
        // One turn (64 ticks) after the last move, only the live entry is left.
        assert_eq!(w.expire(99 + 64), Vec::<u32>::new());
        assert_eq!(w.w.entries(), 1);
        assert_eq!(w.expire(1_099), vec![9]);
    }

    #[test]
    fn same_slot_later_turn_is_kept() {
        let mut w = wheel();
        // 3 and 3 + 64 ticks share a slot of the 64-slot wheel.
        w.schedule(1, ms(3));
        w.schedule(2, ms(67));
        assert_eq!(w.expire(3), vec![1]);
        assert_eq!(w.expire(66), Vec::<u32>::new());
        assert_eq!(w.expire(67), vec![2]);
    }

    #[test]
    fn slots_lend_their_storage_so_a_turn_grows_only_the_slots_in_use() {
        // Deadlines 40 ticks ahead, 100 per tick, for two turns of a 4096-slot wheel: only
        // the ~41 slots holding entries at a time need storage. (Each slot growing its own
        // held 100+ entries' room in every slot it had used: about 4096 * 128 here.)
        let mut w: TimerWheel<u32> = TimerWheel::new(Duration::from_millis(1), 4096, ms(0));
        let mut due = Vec::new();
        let mut fired = 0;
        for t in 0..8192 {
            for k in 0..100 {
                w.schedule(k, ms(t + 40));
            }
            w.expire(ms(t), &mut due, |_, _| true);
            fired += due.len();
            due.clear();
        }
        assert_eq!(fired, 100 * (8192 - 40));
        assert_eq!(w.entries(), 100 * 40);
        assert!(
            w.capacity() <= 48 * 128,
            "the wheel holds room for {} entries",
            w.capacity()
        );
        // Spares are reused, not piled up: at most one per slot ever used.
        assert!(w.spare.len() <= 48, "{} spare vectors", w.spare.len());
    }

    #[test]
    fn far_deadlines_moved_on_every_tick_stay_few() {
        // Eight keys alternating between a deadline 10 ticks ahead and one 500 ticks (about
        // eight turns) ahead, as a connection between a delayed ACK and its timeout: the
        // stale far entries are dropped by the far list's sweeps, not kept a turn each.
        // Every key is moved on every tick; in slots, the stale far entries of a turn
        // would be 4 * 64 (half the keys are in their far phase).
        let mut w = wheel();
        for t in 0..5_000i64 {
            for k in 0..8u32 {
                if ((t + i64::from(k)) / 8) % 2 == 0 {
                    w.schedule(k, ms(t + 10));
                } else {
                    w.schedule(k, ms(t + 500));
                }
            }
            w.expire(t);
            assert!(w.w.entries() <= 160, "{} entries at {t}", w.w.entries());
        }
    }

    #[test]
    fn fires_each_live_deadline_once_when_due_as_a_map_would() {
        // Random deadlines up to six turns ahead (some already past), moved and cancelled,
        // and random steps of the clock (up to three turns at once), against the live map:
        // each expire fires exactly the keys whose live deadline has come.
        let mut x = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        let mut w = wheel();
        let mut now = 0i64;
        for _ in 0..20_000 {
            for _ in 0..(x.gen::<u64>() % 4) {
                let k = (x.gen::<u64>() % 40) as u32;
                match x.gen::<u64>() % 8 {
                    0 => w.cancel(k),
                    1 => w.schedule(k, ms(now - (x.gen::<u64>() % 5) as i64)),
                    2 | 3 => w.schedule(k, ms(now + (x.gen::<u64>() % (6 * 64)) as i64)),
                    _ => w.schedule(k, ms(now + (x.gen::<u64>() % 40) as i64)),
                }
            }
            now += match x.gen::<u64>() % 50 {
                0 => (x.gen::<u64>() % (3 * 64)) as i64,
                _ => (x.gen::<u64>() % 3) as i64,
            };
            let mut want: Vec<u32> = w
                .live
                .iter()
                .filter(|(_, &at)| at <= ms(now))
                .map(|(&k, _)| k)
                .collect();
            want.sort_unstable();
            assert_eq!(w.expire(now), want, "at {now}");
        }
        assert!(w.w.entries() <= 40 * 8, "{} entries", w.w.entries());
    }

    #[test]
    fn expired_entries_carry_their_deadline() {
        let mut w: TimerWheel<u32> = TimerWheel::new(Duration::from_millis(1), 64, ms(0));
        w.schedule(1, ms(5));
        w.schedule(1, ms(7));
        let mut due = Vec::new();
        w.expire(ms(10), &mut due, |_, _| true);
        due.sort_unstable_by_key(|e| e.1);
        assert_eq!(due, vec![(1, ms(5)), (1, ms(7))]);
    }
}
