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
use std::net::IpAddr;

mod support;

use akagate_fastpath::esp::{InboundSa, OutboundSa};
use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::stack::ports::transport_ports;
use akagate_fastpath::stack::{StackConfig, UeStack};
use akagate_fastpath::worker::Worker;
use akagate_sys::mempair::MemQueue;
use akagate_sys::{PacketBuf, PortQueue};
use crossbeam_channel::{Receiver, Sender};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpOperation, EthernetAddress, EthernetProtocol, Ipv4Cidr};
use support::{
    arp, eth_frame, sa_set, send_frame, suite, worker_config, worker_on_pair, PairSizes, PCSCF_MAC,
    PCSCF_V4, PORT_PS, PORT_UC, SPI_UC, UE_MAC, UE_V4,
};

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

/// The worker under test and a UE (a client-role stack with the mirror SAs) on the other end
/// of an in-memory port pair.
struct Bed {
    worker: Worker<MemQueue>,
    q: MemQueue,
    ue: UeStack,
    ue_events: Vec<WorkerEvent>,
    /// The UE's SA port_uc -> port_ps (spi_ps) and the P-CSCF's port_ps -> port_uc (spi_uc).
    out_ps: OutboundSa,
    in_uc: InboundSa,
    events: Receiver<WorkerEvent>,
    _cmds: Sender<WorkerCommand>,
    now: Instant,
    /// SIP messages the worker delivered.
    sip: usize,
}

impl Bed {
    fn new() -> (Bed, u32) {
        let w = worker_on_pair(
            worker_config(0, PCSCF_MAC, vec![Ipv4Cidr::new(PCSCF_V4, 24)], vec![]),
            &PairSizes {
                events: 1024,
                ..PairSizes::default()
            },
        );
        let (mut worker, now) = (w.worker, w.now);
        let spi_pc = w.table.allocate().unwrap();
        let spi_ps = w.table.allocate().unwrap();
        let set = sa_set(UE_V4.into(), PCSCF_V4.into(), suite(), spi_pc, spi_ps);
        worker.command(WorkerCommand::InstallSaSet(Box::new(set)), now);
        // The UE's send ring holds a whole number of OPTIONS, so it never splits one over two
        // segments at its wrap (a split message costs the framer a second allocation).
        let ue_cfg = StackConfig {
            tcp_tx_buf: OPTIONS.len() * 64,
            ..StackConfig::default()
        };
        let ue = UeStack::new(ue_cfg, UE_V4.into(), PCSCF_V4.into(), now).unwrap();
        let s = suite();
        let mut bed = Bed {
            worker,
            q: w.ue,
            ue,
            ue_events: Vec::new(),
            out_ps: OutboundSa::new(spi_ps, &s).unwrap(),
            in_uc: InboundSa::new(SPI_UC, &s).unwrap(),
            events: w.events,
            _cmds: w.cmds,
            now,
            sip: 0,
        };
        bed.arp();
        (bed, spi_ps)
    }

    fn send_frame(&mut self, ethertype: EthernetProtocol, payload: &[u8]) {
        send_frame(
            &mut self.q,
            &eth_frame(UE_MAC, PCSCF_MAC, ethertype, payload),
        );
    }

    /// ARP request for us, so the worker learns the UE's MAC (RFC 826).
    fn arp(&mut self) {
        let request = arp(
            ArpOperation::Request,
            (UE_MAC, UE_V4),
            (EthernetAddress([0; 6]), PCSCF_V4),
        );
        self.send_frame(EthernetProtocol::Arp, &request);
        self.round();
    }

    /// The UE side: takes the worker's frames (ESP through spi_uc into its stack), polls its
    /// stack and sends its packets, port_uc -> port_ps through spi_ps.
    fn ue_step(&mut self) {
        let mut rx: Vec<PacketBuf> = Vec::new();
        self.q.rx_burst(&mut rx, 64);
        for mut b in rx {
            // IPv4 with protocol ESP (50) from the worker; ARP replies and the rest ignored.
            let is_esp =
                b.data().get(12..14) == Some(&[0x08, 0x00]) && b.data().get(23) == Some(&50);
            if is_esp {
                b.trim_front(14).unwrap();
                let (raw, r) = b.raw_mut();
                let inner = self
                    .in_uc
                    .decapsulate(raw, r)
                    .expect("valid ESP from the worker");
                let (raw, _) = b.raw();
                self.ue.push_inbound(raw[inner].to_vec(), None).unwrap();
            }
            self.q.free(b);
        }
        self.ue.poll(self.now, &mut self.ue_events);
        while let Some(pkt) = self.ue.pop_outbound() {
            let p = transport_ports(&pkt).unwrap();
            assert_eq!(
                (p.src, p.dst),
                (PORT_UC, PORT_PS),
                "UE sends only on its flow"
            );
            let mut b = self.q.alloc().unwrap();
            b.fill(&pkt).unwrap();
            let (raw, r) = b.raw_mut();
            let nr = self.out_ps.encapsulate(raw, r).unwrap();
            b.set_range(nr).unwrap();
            let ip = b.data().to_vec();
            self.q.free(b);
            self.send_frame(EthernetProtocol::Ipv4, &ip);
        }
    }

    /// One step of both sides; returns the worker's allocations in it.
    fn round(&mut self) -> usize {
        self.ue_step();
        let now = self.now;
        let worker = &mut self.worker;
        let (_, n) = counted(|| worker.run_once(now));
        for ev in self.events.try_iter() {
            if matches!(ev, WorkerEvent::Sip(_)) {
                self.sip += 1;
            }
        }
        self.now += Duration::from_millis(5);
        n
    }

    fn count(&self, name: &str) -> u64 {
        self.worker.counters().get(name).unwrap()
    }
}

/// The UE's end of the protected connection port_uc -> port_ps.
fn ue_flow() -> Flow {
    Flow {
        ue: IpAddr::V4(PCSCF_V4),
        ue_port: PORT_PS,
        local: UE_V4.into(),
        local_port: PORT_UC,
        proto: Transport::Tcp,
    }
}

/// Opens the protected connection with one OPTIONS and lets it settle.
fn established() -> Bed {
    let (mut t, _spi_ps) = Bed::new();
    t.ue.send(ue_flow(), OPTIONS, true).unwrap();
    for _ in 0..20 {
        t.round();
    }
    assert_eq!(t.sip, 1, "OPTIONS over the protected connection");
    assert!(t.ue.is_established(&ue_flow()));
    t
}

#[test]
fn keepalives_over_esp_allocate_nothing_in_the_worker() {
    let mut t = established();
    // RFC 5626 4.4.1: CRLFCRLF ping, answered with a CRLF pong through spi_uc.
    let ping = |t: &mut Bed| {
        t.ue.send(ue_flow(), b"\r\n\r\n", false).unwrap();
        let mut n = 0;
        for _ in 0..3 {
            n += t.round();
        }
        n
    };
    // Warm-up: 1200 rounds of 5 ms turn the worker's timer wheel (256 slots of 1 ms) several
    // times, so every slot has reached its working capacity once.
    for _ in 0..400 {
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
        t.ue.send(ue_flow(), OPTIONS, false).unwrap();
        let mut n = 0;
        for _ in 0..3 {
            n += t.round();
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
