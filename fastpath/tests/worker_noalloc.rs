//! The worker's steady state allocates nothing per packet: ESP packets of an established,
//! protected TCP connection are decrypted into the receive buffer, read by the UE's stack in
//! place, and the stack's answers are written into buffers of the port's pool and encrypted
//! there. A counting global allocator watches `Worker::run_once` only (the simulated UE and
//! the test harness allocate freely); a complete SIP message costs exactly its own `Vec`.
//!
//! Only allocations made by the test's own thread count: the test harness allocates on its
//! other threads (output capture, the runner) at arbitrary moments.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod support;

use akagate_fastpath::ipc::Transport;
use akagate_fastpath::stack::StackConfig;
use support::protected::{ue_flow, Bed};

struct Counting;

thread_local! {
    // Const-initialised Cells need no allocation and no destructor, so they are safe to touch
    // from inside the allocator.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with` fails only while the thread is being torn down; nothing to count then.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`, returning its result and the allocations this thread made inside it.
fn counted<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCS.with(Cell::get) - before)
}

/// An OPTIONS request of about 100 bytes (RFC 3261 11), one TCP segment.
const OPTIONS: &[u8] =
    b"OPTIONS sip:pcscf.ims.example SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.7:31800;branch=z9hG4bK9\r\nContent-Length: 0\r\n\r\n";

/// One step of both sides; returns the worker's allocations in it.
fn round(t: &mut Bed) -> usize {
    t.round(|w, now| counted(|| w.run_once(now)).1)
}

/// Opens the protected connection with one OPTIONS and lets it settle.
fn established() -> Bed {
    // The UE's send ring holds a whole number of OPTIONS, so it never splits one over two
    // segments at its wrap (a split message costs the framer a second allocation).
    let ue_cfg = StackConfig {
        tcp_tx_buf: OPTIONS.len() * 64,
        ..StackConfig::default()
    };
    let mut t = Bed::new(|_| {}, ue_cfg);
    t.ue.send(ue_flow(Transport::Tcp), OPTIONS, true).unwrap();
    for _ in 0..20 {
        round(&mut t);
    }
    assert_eq!(t.sip, 1, "OPTIONS over the protected connection");
    assert!(t.ue.is_established(&ue_flow(Transport::Tcp)));
    t
}

#[test]
fn keepalives_over_esp_allocate_nothing_in_the_worker() {
    let mut t = established();
    // RFC 5626 4.4.1: CRLFCRLF ping, answered with a CRLF pong through spi_uc.
    let ping = |t: &mut Bed| {
        t.ue.send(ue_flow(Transport::Tcp), b"\r\n\r\n", false)
            .unwrap();
        let mut n = 0;
        for _ in 0..3 {
            n += round(t);
        }
        n
    };
    // Warm-up: 3600 rounds of 5 ms turn the worker's timer wheel (256 slots of 1 ms) 70
    // times, so every slot has reached its working capacity once: the UE's delayed-ACK
    // deadline is added to the wheel once per three pings (a poll that leaves the deadline
    // where it was adds none), 45 ms apart, which reaches each of the 256 slots only within
    // 256 such steps.
    for _ in 0..1200 {
        ping(&mut t);
    }
    let (esp_in, esp_out) = (t.count("esp_in"), t.count("esp_out"));
    let mut allocs = 0;
    for _ in 0..200 {
        allocs += ping(&mut t);
    }
    // Each ping came in and each pong went out (plus the ACKs either way).
    assert!(
        t.count("esp_in") - esp_in >= 200,
        "pings reached the worker"
    );
    assert!(t.count("esp_out") - esp_out >= 200, "pongs left the worker");
    assert_eq!(t.count("drop_no_buffer"), 0);
    assert_eq!(allocs, 0, "worker allocated in steady state");
}

#[test]
fn a_sip_message_costs_one_allocation_its_own_bytes() {
    let mut t = established();
    let send = |t: &mut Bed| {
        t.ue.send(ue_flow(Transport::Tcp), OPTIONS, false).unwrap();
        let mut n = 0;
        for _ in 0..3 {
            n += round(t);
        }
        n
    };
    // Warm-up, as above: the timer wheel's slots reach their working capacity.
    for _ in 0..400 {
        send(&mut t);
    }
    let sip = t.sip;
    let mut allocs = 0;
    for _ in 0..200 {
        allocs += send(&mut t);
    }
    assert_eq!(t.sip - sip, 200, "every OPTIONS delivered");
    // The framer hands its buffer over as the message: one allocation per message.
    assert_eq!(allocs, 200, "allocations for 200 one-segment messages");
}
