//! Recycled buffers for complete SIP messages, the bytes of [`SipIn`](crate::ipc::SipIn).
//!
//! A worker frames a message into a `Vec<u8>` and moves it to the slowpath thread inside the
//! event; the slowpath drops the event when it is done with it. Freed there, a message buffer
//! of 1 KiB or more is too large for glibc's per-thread cache and goes back to the arena of
//! the worker that allocated it, under that arena's lock, and the worker's next message is a
//! full `malloc`. Instead, the slowpath [`recycle`]s the buffer into one process-wide bounded
//! lock-free queue and the workers [`take`] their next message buffers from it; when the
//! queue is empty a buffer is allocated as before, when it is full (or the buffer is tiny or
//! huge) the buffer is freed as before.
//!
//! Ownership stays plain: a buffer is a `Vec<u8>` owned by exactly one side at a time, moved
//! into the queue and out of it. One queue for the process, not one per worker, because the
//! slowpath does not know which worker framed an event and need not: any worker can use any
//! buffer. A recycled buffer keeps stale bytes only beyond its length (it is cleared), which
//! safe code cannot read.

use std::sync::OnceLock;

use crossbeam_queue::ArrayQueue;

/// Buffers the queue holds at most: a worker's whole event queue's worth of messages in
/// flight (the daemon's default `event_queue`, 8192), so a backlog the slowpath drains comes
/// back here instead of being freed into the worker's malloc arena — where glibc trims the
/// freed top of the heap and the next backlog page-faults it in again. Bounded: an idle
/// process keeps at most the memory one full event queue of messages takes anyway (about
/// 8–16 MiB of 1–2 KiB messages, `CAPACITY * MAX_KEPT` at the very most).
pub const CAPACITY: usize = 8192;

/// Buffers with more capacity than this are freed, not kept (a rare large message must not
/// pin its memory).
pub const MAX_KEPT: usize = 8 * 1024;

/// Buffers with less capacity than this are freed, not kept (glibc's thread cache serves
/// them well, and they would be too small for most messages).
pub const MIN_KEPT: usize = 256;

/// The process's queue of free message buffers.
fn queue() -> &'static ArrayQueue<Vec<u8>> {
    static QUEUE: OnceLock<ArrayQueue<Vec<u8>>> = OnceLock::new();
    QUEUE.get_or_init(|| ArrayQueue::new(CAPACITY))
}

/// An empty buffer with room for at least `len` bytes: a recycled one when there is one
/// large enough, else a new allocation. Capacities are rounded up to a power of two (at
/// most [`MAX_KEPT`]), so the buffers of messages of about one size are interchangeable and
/// a message growing by a few bytes still fits.
#[inline]
pub fn take(len: usize) -> Vec<u8> {
    let room = size_class(len);
    match queue().pop() {
        Some(mut buf) if buf.capacity() >= room => {
            buf.clear();
            buf
        }
        // Too small a recycled buffer is freed (growing it would copy its old bytes).
        _ => Vec::with_capacity(room),
    }
}

/// The capacity [`take`] gives a buffer for `len` bytes.
#[inline]
pub fn size_class(len: usize) -> usize {
    let room = len.max(MIN_KEPT);
    if room > MAX_KEPT {
        room
    } else {
        room.next_power_of_two()
    }
}

/// A copy of `bytes` in a buffer from [`take`]. Inlined into the framer: a `Vec` returned
/// through memory right after the copy is read back with wider loads than its stores, a
/// load that waits for the copy's stores to drain.
#[inline]
pub fn copy_of(bytes: &[u8]) -> Vec<u8> {
    let mut buf = take(bytes.len());
    buf.extend_from_slice(bytes);
    buf
}

/// Gives a message buffer back for the workers to reuse once its reader is done with it; it
/// is freed instead when the queue is full or its capacity is outside
/// [`MIN_KEPT`]..=[`MAX_KEPT`].
pub fn recycle(buf: Vec<u8>) {
    if (MIN_KEPT..=MAX_KEPT).contains(&buf.capacity()) {
        // A full queue hands the buffer back, and it is freed here.
        let _ = queue().push(buf);
    }
}

/// Buffers waiting in the queue (for tests and statistics; racy by nature).
pub fn pooled() -> usize {
    queue().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue is process-wide and the tests of this crate run in parallel: these tests
    /// take a lock so their counts are their own.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn drain() {
        while queue().pop().is_some() {}
    }

    #[test]
    fn a_recycled_buffer_is_taken_again_empty_and_with_room() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        drain();
        let mut a = copy_of(&[7u8; 1100]);
        assert_eq!(a.len(), 1100);
        a.extend_from_slice(b"x");
        let ptr = a.as_ptr();
        recycle(a);
        assert_eq!(pooled(), 1);
        let b = take(1000);
        // 1100 bytes made a buffer of the 2 KiB class, which fits 1000 as well.
        assert_eq!(b.as_ptr(), ptr, "the recycled buffer was not reused");
        assert!(b.is_empty());
        assert!(b.capacity() >= 1000);
        assert_eq!(b.capacity(), 2048, "not rounded to its size class");
        // Too small a recycled buffer is replaced by one of the class asked for.
        recycle(b);
        let c = take(4000);
        assert_eq!(c.capacity(), 4096);
        assert!(c.is_empty());
        assert_eq!(pooled(), 0);
        // Beyond the largest class, exactly what is asked.
        assert_eq!(take(MAX_KEPT + 1).capacity(), MAX_KEPT + 1);
        // Empty queue: a fresh buffer.
        let d = take(300);
        assert!(d.capacity() >= 300);
    }

    #[test]
    fn tiny_huge_and_surplus_buffers_are_freed_not_kept() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        drain();
        recycle(Vec::with_capacity(MIN_KEPT - 1));
        recycle(Vec::with_capacity(MAX_KEPT + 1));
        assert_eq!(pooled(), 0);
        for _ in 0..CAPACITY + 10 {
            recycle(Vec::with_capacity(MIN_KEPT));
        }
        assert_eq!(pooled(), CAPACITY);
        drain();
    }

    #[test]
    fn buffers_cross_threads() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        drain();
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut n = 0;
            for m in rx {
                assert_eq!(m, vec![(n % 251) as u8; 1024]);
                n += 1;
                recycle(m);
            }
            n
        });
        for i in 0..5000u32 {
            tx.send(copy_of(&[(i % 251) as u8; 1024])).unwrap();
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), 5000);
        assert!(pooled() <= CAPACITY);
        drain();
    }
}
