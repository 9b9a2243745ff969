//! Message buffers taken two messages ahead, per thread, their lines asked for in writable
//! state meanwhile.
//!
//! A recycled buffer from [`akagate_proto::msgbuf`] was last touched by the slowpath's core
//! (it parsed the message in it), so the framer's copy into it misses on each line and,
//! over a message of 1 KiB, waits for those lines to come over, exclusive. Here each thread
//! keeps its next two buffers: the one handed out for a message was taken from `msgbuf` two
//! messages earlier, and `PREFETCHW` asked for its lines then; the copy finds them in this
//! core's cache. One message ahead (round 16) left part of the lines in flight at the copy
//! (round 17 measured two ahead faster in pairs, three and four no faster than two). Two
//! buffers per worker thread are held at a time (at most `msgbuf`'s largest kept class
//! each); a message larger than the buffer handed out gets a buffer of its own from
//! `msgbuf` and the handed-out one goes back.

use std::cell::Cell;

use akagate_proto::msgbuf;

/// Bytes of a taken buffer whose lines are asked for (its predicted use: the message it
/// was taken for; a buffer is not asked for beyond this).
const AHEAD_BYTES: usize = 4096;

thread_local! {
    /// This thread's buffer for its next message (empty at first).
    static NEXT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// This thread's buffer for the message after the next (empty at first).
    static LATER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty buffer with room for at least `len` bytes, from `msgbuf`'s size class for
/// `len` (as [`msgbuf::take`]): the buffer this thread took two calls ago if it is of that
/// class or larger, else a new one from `msgbuf`. A buffer for the call after the next is
/// taken now, of the class of `len` (the next messages are most likely of this one's size),
/// and its first `len` bytes' lines are prefetched for writing.
pub(super) fn take(len: usize) -> Vec<u8> {
    let later = msgbuf::take(len);
    prefetch_for_write(&later, len);
    let next = LATER.with(|l| l.replace(later));
    let held = NEXT.with(|n| n.replace(next));
    if held.capacity() >= msgbuf::size_class(len) {
        held
    } else {
        msgbuf::recycle(held);
        msgbuf::take(len)
    }
}

/// A copy of `bytes` in a buffer from [`take`].
pub(super) fn copy_of(bytes: &[u8]) -> Vec<u8> {
    let mut buf = take(bytes.len());
    buf.extend_from_slice(bytes);
    buf
}

/// Asks for the lines of the first `len` bytes of `buf`'s room (at most [`AHEAD_BYTES`])
/// in a writable state (`PREFETCHW`), where the CPU has the instruction.
fn prefetch_for_write(buf: &Vec<u8>, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if has_prefetchw() {
        let end = len.min(buf.capacity()).min(AHEAD_BYTES);
        let p = buf.as_ptr();
        for off in (0..end).step_by(64) {
            // SAFETY: the CPU has PREFETCHW (checked above); a prefetch is a hint that never
            // faults and changes nothing the program can observe, whatever the address (this
            // one is inside the buffer's allocation anyway).
            unsafe { prefetchw(p.wrapping_add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (buf, len);
}

/// `PREFETCHW` of the line holding `p` (inline assembly: the `prfchw` target feature is
/// not stable, and `_mm_prefetch` with `_MM_HINT_ET0` without it is a read prefetch).
///
/// # Safety
/// The CPU must have PREFETCHW ([`has_prefetchw`]); older ones may fault on it.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn prefetchw(p: *const u8) {
    // SAFETY: the caller checked the CPU has the instruction; a prefetch reads and writes
    // nothing the program can observe and never faults on its address.
    unsafe {
        core::arch::asm!(
            "prefetchw byte ptr [{p}]",
            p = in(reg) p,
            options(nostack, preserves_flags, readonly)
        )
    };
}

/// True if the CPU has PREFETCHW (CPUID 8000_0001h, ECX bit 8: `3DNowPrefetch`, the
/// `PRFCHW` feature), read once.
#[cfg(target_arch = "x86_64")]
fn has_prefetchw() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            use core::arch::x86_64::__cpuid;
            // Leaf 8000_0000h gives the highest extended leaf; 8000_0001h is asked only if
            // it exists. CPUID is always available on x86_64.
            let max = __cpuid(0x8000_0000).eax;
            let has = max >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0;
            KNOWN.store(if has { 2 } else { 1 }, Ordering::Relaxed);
            has
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address and capacity of the buffer held in `cell`, put back.
    fn held_at(cell: &'static std::thread::LocalKey<Cell<Vec<u8>>>) -> (*const u8, usize) {
        cell.with(|n| {
            let v = n.take();
            let at = (v.as_ptr(), v.capacity());
            n.set(v);
            at
        })
    }

    /// The buffer handed out is the one taken two calls ago (so the one whose lines were
    /// asked for earliest), empty and of the size class asked for; a larger message than
    /// that buffer's class gets a buffer of its own class.
    #[test]
    fn the_buffer_taken_ahead_is_handed_out_two_calls_later() {
        // Its own thread: the held buffers are per thread, and other tests frame on theirs.
        std::thread::spawn(|| {
            let mut a = take(1000);
            assert!(a.is_empty() && a.capacity() >= 1000);
            a.extend_from_slice(&[1; 1000]);
            let first = held_at(&LATER);
            let b = take(900);
            assert!(b.is_empty() && b.capacity() >= 900);
            assert_eq!(held_at(&NEXT), first, "not moved up after one call");
            let second = held_at(&LATER);
            let c = take(900);
            assert_eq!(
                (c.as_ptr(), c.capacity()),
                first,
                "not the buffer taken two calls ago"
            );
            assert!(c.is_empty());
            assert_eq!(c.capacity(), msgbuf::size_class(1000));
            // The next buffer (class of 900: 1 KiB) is too small for 3000 bytes.
            assert_eq!(held_at(&NEXT), second);
            let d = take(3000);
            assert!(d.is_empty());
            assert_eq!(d.capacity(), msgbuf::size_class(3000));
            assert_eq!(held_at(&LATER).1, msgbuf::size_class(3000));
            let e = copy_of(b"INVITE");
            assert_eq!(e, b"INVITE");
        })
        .join()
        .unwrap();
    }

    /// Prefetching reads and writes nothing the program sees, at any length and capacity.
    #[test]
    fn prefetching_changes_nothing() {
        for cap in [0, 1, 63, 64, 1000, 8192] {
            let mut v = Vec::with_capacity(cap);
            v.extend(std::iter::repeat_n(7u8, cap / 2));
            let (before, room, at) = (v.clone(), v.capacity(), v.as_ptr());
            for len in [0, 1, 64, 5000, usize::MAX] {
                prefetch_for_write(&v, len);
            }
            assert_eq!(v, before);
            assert_eq!((v.capacity(), v.as_ptr()), (room, at));
        }
    }
}
