//! A hashed timer wheel of per-UE `poll_at` deadlines, so a worker polls only the stacks
//! that are due instead of scanning every UE on every loop.

use akagate_proto::hash::{keyed_map, KeyedMap};
use std::hash::Hash;

use smoltcp::time::{Duration, Instant};

/// Timer wheel keyed by `K` (a UE key); each key has at most one live deadline.
#[derive(Debug)]
pub struct TimerWheel<K> {
    tick_us: i64,
    slots: Vec<Vec<K>>,
    /// The live deadline of each scheduled key; slot entries not matching it are stale.
    deadlines: KeyedMap<K, Instant>,
    /// Keys whose deadline had already passed when scheduled.
    ready: Vec<K>,
    /// The last tick whose slot was processed.
    cursor: i64,
}

impl<K: Copy + Eq + Hash> TimerWheel<K> {
    /// A wheel with `slots` slots (rounded up to a power of two) of `tick` each, starting at `now`.
    pub fn new(tick: Duration, slots: usize, now: Instant) -> Self {
        let tick_us = i64::try_from(tick.total_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        let n = slots.max(2).next_power_of_two();
        TimerWheel {
            tick_us,
            slots: (0..n).map(|_| Vec::new()).collect(),
            deadlines: keyed_map(),
            ready: Vec::new(),
            cursor: now.total_micros() / tick_us,
        }
    }

    fn tick_of(&self, at: Instant) -> i64 {
        at.total_micros().div_euclid(self.tick_us)
    }

    fn slot_of(&self, tick: i64) -> usize {
        // rem_euclid is in 0..len, so the cast and the index are in range.
        tick.rem_euclid(self.slots.len() as i64) as usize
    }

    /// Number of keys with a live deadline.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// True if nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    /// The live deadline of `key`.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.deadlines.get(key).copied()
    }

    /// Sets (or moves) the deadline of `key` to `at`.
    pub fn schedule(&mut self, key: K, at: Instant) {
        if self.deadlines.insert(key, at) == Some(at) {
            return;
        }
        let tick = self.tick_of(at);
        if tick <= self.cursor {
            self.ready.push(key);
        } else {
            let slot = self.slot_of(tick);
            self.slots[slot].push(key);
        }
    }

    /// Removes the deadline of `key`.
    pub fn cancel(&mut self, key: &K) {
        self.deadlines.remove(key);
    }

    /// Appends to `due` every key whose deadline falls in a tick up to `now`'s, removing them.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<K>) {
        // Drained in place: the vector keeps its capacity (no allocation per schedule).
        let mut ready = std::mem::take(&mut self.ready);
        for key in ready.drain(..) {
            if self.deadlines.remove(&key).is_some() {
                due.push(key);
            }
        }
        self.ready = ready;
        let end = self.tick_of(now);
        if end <= self.cursor {
            return;
        }
        // After a long pause one full turn visits every slot.
        let first = self.cursor.max(end - self.slots.len() as i64) + 1;
        for tick in first..=end {
            let slot = self.slot_of(tick);
            let mut entries = std::mem::take(&mut self.slots[slot]);
            entries.retain(|key| {
                let Some(&at) = self.deadlines.get(key) else {
                    return false;
                };
                let at_tick = self.tick_of(at);
                if at_tick <= end {
                    self.deadlines.remove(key);
                    due.push(*key);
                    false
                } else {
                    // A later turn of the wheel keeps its entry; a moved deadline's old entry goes.
                    self.slot_of(at_tick) == slot
                }
            });
            // Entries scheduled into this slot meanwhile are kept.
            entries.append(&mut self.slots[slot]);
            self.slots[slot] = entries;
        }
        self.cursor = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: i64) -> Instant {
        Instant::from_millis(v)
    }

    fn wheel() -> TimerWheel<u32> {
        TimerWheel::new(Duration::from_millis(1), 64, ms(0))
    }

    fn expire(w: &mut TimerWheel<u32>, now: i64) -> Vec<u32> {
        let mut v = Vec::new();
        w.expire(ms(now), &mut v);
        v.sort_unstable();
        v
    }

    #[test]
    fn only_due_keys_fire() {
        let mut w = wheel();
        w.schedule(1, ms(5));
        w.schedule(2, ms(10));
        w.schedule(3, ms(500)); // several turns ahead
        assert_eq!(expire(&mut w, 4), Vec::<u32>::new());
        assert_eq!(expire(&mut w, 5), vec![1]);
        assert_eq!(expire(&mut w, 9), Vec::<u32>::new());
        assert_eq!(expire(&mut w, 70), vec![2]);
        assert_eq!(expire(&mut w, 499), Vec::<u32>::new());
        assert_eq!(w.len(), 1);
        assert_eq!(expire(&mut w, 500), vec![3]);
        assert!(w.is_empty());
    }

    #[test]
    fn reschedule_moves_and_cancel_removes() {
        let mut w = wheel();
        w.schedule(1, ms(5));
        w.schedule(1, ms(20));
        w.schedule(2, ms(6));
        w.cancel(&2);
        assert_eq!(expire(&mut w, 10), Vec::<u32>::new());
        assert_eq!(expire(&mut w, 20), vec![1]);
        // Moving a deadline earlier works too.
        w.schedule(1, ms(100));
        w.schedule(1, ms(30));
        assert_eq!(expire(&mut w, 30), vec![1]);
        assert_eq!(expire(&mut w, 200), Vec::<u32>::new());
    }

    #[test]
    fn past_deadline_fires_on_next_expire_and_long_pause_catches_up() {
        let mut w = wheel();
        assert_eq!(expire(&mut w, 50), Vec::<u32>::new());
        w.schedule(7, ms(10));
        assert_eq!(expire(&mut w, 50), vec![7]);
        for k in 0..200 {
            w.schedule(k, ms(60 + i64::from(k) * 7));
        }
        // One call long after all deadlines fires each key exactly once.
        let fired = expire(&mut w, 10_000);
        assert_eq!(fired, (0..200).collect::<Vec<_>>());
        assert!(w.is_empty());
    }

    #[test]
    fn same_slot_later_turn_is_kept() {
        let mut w = wheel();
        // 3 and 3 + 64 ticks share a slot of the 64-slot wheel.
        w.schedule(1, ms(3));
        w.schedule(2, ms(67));
        assert_eq!(expire(&mut w, 3), vec![1]);
        assert_eq!(expire(&mut w, 66), Vec::<u32>::new());
        assert_eq!(expire(&mut w, 67), vec![2]);
    }
}
