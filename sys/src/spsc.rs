//! A bounded single-producer single-consumer ring that moves whole bursts: the producer stages
//! items and makes them visible with one release store ([`Producer::publish`]), the consumer
//! takes everything visible up to a limit with one acquire load and one release store
//! ([`Consumer::pop_burst`]). Each side caches the other side's index and reads the shared one
//! only when its cached copy says the ring is full (producer) or empty (consumer), so a burst
//! costs at most two cross-core cache-line transfers, not two per item as a multi-producer
//! queue's per-slot sequence numbers do. The in-memory port ([`crate::mempair`]) is a mesh of
//! these, one per (transmitting queue, receiving queue) pair.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps a hot index on its own cache line (two, against adjacent-line prefetch).
#[repr(align(128))]
struct Padded(AtomicUsize);

/// The storage both ends share.
struct Shared<T> {
    /// Next index the consumer reads; written by the consumer only.
    head: Padded,
    /// Next index the producer writes, as published; written by the producer only.
    tail: Padded,
    /// Slot `i % slots.len()` holds item `i` for `head <= i < tail`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// `slots.len() - 1` (the length is a power of two).
    mask: usize,
    /// Items the ring holds at most (may be below `slots.len()`).
    capacity: usize,
}

// SAFETY: the ring hands each `T` from one thread to another exactly once (moved in by the
// producer, moved out by the consumer), so it is `Send` and `Sync` when `T: Send`; a slot is
// accessed by one side at a time, ordered by the release/acquire pairs on `head` and `tail`.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above; shared references only reach slots through the index protocol.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        for i in head..tail {
            // SAFETY: both ends are gone (this is the last `Arc`), and the items in
            // `head..tail` were written by the producer and not yet taken by the consumer.
            unsafe { (*self.slots[i & self.mask].get()).assume_init_drop() };
        }
    }
}

/// The writing end of a ring made by [`ring`].
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Next index to write (staged items are `published..tail`).
    tail: usize,
    /// The tail last made visible to the consumer.
    published: usize,
    /// The consumer's head as last read.
    head_cache: usize,
}

/// The reading end of a ring made by [`ring`].
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Next index to read.
    head: usize,
    /// The producer's tail as last read.
    tail_cache: usize,
}

/// A ring holding up to `capacity` items (at least 1), as its two ends.
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(1);
    let slots = capacity.next_power_of_two();
    let shared = Arc::new(Shared {
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        slots: (0..slots)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect(),
        mask: slots - 1,
        capacity,
    });
    (
        Producer {
            shared: shared.clone(),
            tail: 0,
            published: 0,
            head_cache: 0,
        },
        Consumer {
            shared,
            head: 0,
            tail_cache: 0,
        },
    )
}

impl<T> Producer<T> {
    /// Write `item` into the ring without making it visible yet (see [`Producer::publish`]);
    /// gives it back if the ring is full.
    pub fn stage(&mut self, item: T) -> Result<(), T> {
        if self.tail - self.head_cache >= self.shared.capacity {
            // Acquire: the consumer's moves out of the slots below its head happen before
            // we overwrite them.
            self.head_cache = self.shared.head.0.load(Ordering::Acquire);
            if self.tail - self.head_cache >= self.shared.capacity {
                return Err(item);
            }
        }
        let slot = &self.shared.slots[self.tail & self.shared.mask];
        // SAFETY: the consumer reads only indices below the published tail (at most `tail`),
        // and the check above shows `tail < head + capacity <= head + slots`, so slot
        // `tail & mask` holds no unread item: it is free and only this producer writes it.
        unsafe { (*slot.get()).write(item) };
        self.tail += 1;
        Ok(())
    }

    /// Make every staged item visible to the consumer (one release store).
    pub fn publish(&mut self) {
        if self.published != self.tail {
            self.shared.tail.0.store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
    }

    /// Items the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Staged items become the consumer's (or are dropped with the ring).
        self.publish();
    }
}

impl<T> Consumer<T> {
    /// Move up to `max` items, oldest first, onto the end of `out`; returns how many.
    pub fn pop_burst(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        if self.tail_cache - self.head < max {
            // Acquire: the producer's writes of the slots below its tail happen before our
            // reads of them.
            self.tail_cache = self.shared.tail.0.load(Ordering::Acquire);
        }
        let n = (self.tail_cache - self.head).min(max);
        if n == 0 {
            return 0;
        }
        out.reserve(n);
        for i in self.head..self.head + n {
            let slot = &self.shared.slots[i & self.shared.mask];
            // SAFETY: `i` is below the producer's published tail (acquired above) and at or
            // past our head, so the slot holds an initialised item that only we may take;
            // advancing `head` past it below means it is never read again.
            out.push(unsafe { (*slot.get()).assume_init_read() });
        }
        self.head += n;
        // Release: our reads of these slots happen before the producer reuses them.
        self.shared.head.0.store(self.head, Ordering::Release);
        n
    }

    /// Whether the ring looked empty at the last look (may be stale; cheap).
    pub fn is_empty_cached(&self) -> bool {
        self.tail_cache == self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_items_are_invisible_until_published() {
        let (mut p, mut c) = ring::<u32>(4);
        p.stage(1).unwrap();
        p.stage(2).unwrap();
        let mut out = Vec::new();
        assert_eq!(c.pop_burst(&mut out, 8), 0);
        p.publish();
        assert_eq!(c.pop_burst(&mut out, 8), 2);
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn full_at_exact_capacity_and_wraps() {
        // 3 is not a power of two: the ring still holds exactly 3.
        let (mut p, mut c) = ring::<u32>(3);
        let mut out = Vec::new();
        for round in 0..10u32 {
            for k in 0..3 {
                p.stage(round * 3 + k).unwrap();
            }
            assert_eq!(p.stage(99), Err(99));
            p.publish();
            assert_eq!(c.pop_burst(&mut out, 2), 2);
            p.stage(1000 + round).unwrap();
            p.stage(2000 + round).unwrap();
            assert_eq!(p.stage(98), Err(98));
            p.publish();
            assert_eq!(c.pop_burst(&mut out, 8), 3);
            let tail = &out[out.len() - 5..];
            let r3 = round * 3;
            assert_eq!(tail, [r3, r3 + 1, r3 + 2, 1000 + round, 2000 + round]);
        }
        assert_eq!(p.capacity(), 3);
    }

    #[test]
    fn unread_items_are_dropped_with_the_ring() {
        let item = Arc::new(());
        let (mut p, c) = ring::<Arc<()>>(8);
        for _ in 0..5 {
            p.stage(item.clone()).unwrap();
        }
        p.publish();
        p.stage(item.clone()).unwrap(); // staged only: published by the drop
        drop(p);
        assert_eq!(Arc::strong_count(&item), 7);
        drop(c);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    /// Two threads, bursts of varying size both ways, a small ring so it is often full and
    /// often empty: every item arrives exactly once and in order.
    #[test]
    fn two_threads_lose_nothing_and_keep_order() {
        const N: u64 = 2_000_000;
        let (mut p, mut c) = ring::<Box<u64>>(64);
        let producer = std::thread::spawn(move || {
            let mut next = 0u64;
            let mut burst = 1usize;
            while next < N {
                let mut staged = 0;
                while staged < burst && next < N {
                    match p.stage(Box::new(next)) {
                        Ok(()) => {
                            next += 1;
                            staged += 1;
                        }
                        Err(_) => break,
                    }
                }
                p.publish();
                if staged == 0 {
                    std::thread::yield_now();
                }
                burst = burst % 37 + 1;
            }
        });
        let mut out = Vec::with_capacity(64);
        let mut expect = 0u64;
        let mut max = 1usize;
        while expect < N {
            if c.pop_burst(&mut out, max) == 0 {
                std::thread::yield_now();
            }
            for v in out.drain(..) {
                assert_eq!(*v, expect, "lost, duplicated or reordered");
                expect += 1;
            }
            max = max % 41 + 1;
        }
        producer.join().unwrap();
        assert_eq!(c.pop_burst(&mut out, 64), 0, "nothing beyond what was sent");
    }
}
