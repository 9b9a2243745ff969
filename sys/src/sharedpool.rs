//! A buffer pool shared by several queues (the in-memory pair's two ends), each taking and
//! returning buffers through a small cache of its own, like DPDK's per-lcore mempool cache:
//! the shared free list is locked once per batch of buffers, not once per buffer, and the
//! common case (a queue freeing the buffers it received, then allocating for what it sends)
//! touches no shared cache line at all.

use std::sync::{Arc, Mutex, PoisonError};

use crate::buf::{BufLayout, PacketBuf};

/// The shared free list: at most `size` buffers.
#[derive(Debug)]
struct Shared {
    free: Mutex<Vec<PacketBuf>>,
    size: usize,
}

/// One queue's end of a shared pool (see the module documentation).
#[derive(Debug)]
pub struct PoolCache {
    shared: Arc<Shared>,
    local: Vec<PacketBuf>,
    /// Buffers the cache holds at most; above it, `batch` go back to the shared list.
    max: usize,
    /// Buffers moved per visit to the shared list.
    batch: usize,
}

/// A pool of buffers shared by several queues; each takes its [`PoolCache`].
#[derive(Debug)]
pub struct SharedPool {
    shared: Arc<Shared>,
    /// Buffers a cache holds at most.
    cache_max: usize,
}

impl SharedPool {
    /// A pool of `size` buffers of `layout` for `queues` queues. Each cache keeps at most a
    /// quarter of its even share of the pool (and 64), so buffers idle in the caches never
    /// starve a queue of most of the pool.
    pub fn new(layout: BufLayout, size: usize, queues: usize) -> Self {
        SharedPool {
            shared: Arc::new(Shared {
                free: Mutex::new((0..size).map(|_| PacketBuf::new(layout)).collect()),
                size,
            }),
            cache_max: (size / (4 * queues.max(1))).clamp(1, 64),
        }
    }

    /// A new queue's cache of this pool (empty: it fills on its first allocation).
    pub fn cache(&self) -> PoolCache {
        PoolCache {
            shared: self.shared.clone(),
            local: Vec::with_capacity(self.cache_max + 1),
            max: self.cache_max,
            batch: self.cache_max.div_ceil(2),
        }
    }
}

impl PoolCache {
    /// An empty buffer (reset), or `None` if the whole pool is in use.
    pub fn get(&mut self) -> Option<PacketBuf> {
        if self.local.is_empty() {
            let mut free = self
                .shared
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let take = free.len().min(self.batch);
            let from = free.len() - take;
            self.local.extend(free.drain(from..));
        }
        let mut b = self.local.pop()?;
        b.reset();
        Some(b)
    }

    /// Returns a buffer to the pool.
    pub fn put(&mut self, buf: PacketBuf) {
        self.local.push(buf);
        if self.local.len() > self.max {
            let from = self.local.len() - self.batch;
            self.give_back(from);
        }
    }

    /// Moves `local[from..]` to the shared list (dropping what would exceed the pool's size:
    /// buffers that never were the pool's).
    fn give_back(&mut self, from: usize) {
        let mut free = self
            .shared
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let room = self.shared.size.saturating_sub(free.len());
        let moved = self.local.drain(from..);
        free.extend(moved.take(room));
    }

    /// Buffers in the shared list now (not counting any cache).
    pub fn shared_available(&self) -> usize {
        self.shared
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for PoolCache {
    fn drop(&mut self) {
        self.give_back(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_share_the_pool_and_return_it_whole() {
        let pool = SharedPool::new(BufLayout::STANDARD, 40, 2);
        let (mut a, mut b) = (pool.cache(), pool.cache());
        // a takes everything, one buffer at a time, in batches from the shared list.
        let taken: Vec<PacketBuf> = std::iter::from_fn(|| a.get()).collect();
        assert_eq!(taken.len(), 40);
        assert!(b.get().is_none());
        // b frees them all: they reach the shared list in batches, a cache keeps a few.
        for t in taken {
            b.put(t);
        }
        assert!(a.shared_available() >= 40 - b.max);
        assert!(a.get().is_some());
        drop(b);
        assert_eq!(a.shared_available() + a.local.len() + 1, 40);
    }

    #[test]
    fn foreign_buffers_beyond_the_size_are_dropped() {
        let pool = SharedPool::new(BufLayout::STANDARD, 4, 1);
        let mut a = pool.cache();
        for _ in 0..10 {
            a.put(PacketBuf::new(BufLayout::STANDARD));
        }
        let n = a.shared_available() + a.local.len();
        assert!(n <= 4 + a.max, "{n}");
        drop(a);
    }

    #[test]
    fn a_reused_buffer_comes_back_empty() {
        let mut a = SharedPool::new(BufLayout::STANDARD, 2, 1).cache();
        let mut b = a.get().unwrap();
        b.fill(b"frame").unwrap();
        a.put(b);
        assert!(a.get().unwrap().is_empty());
    }
}
