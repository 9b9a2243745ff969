//! One worker thread: pins itself, builds the fast-path [`Worker`] over its port queue, polls it
//! until told to stop, then drains its command queue so the slowpath's last answers go out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::ipc::WorkerCommand;
use akagate_fastpath::worker::{
    EventSink, Handoff, InboundTable, Worker, WorkerConfig, WorkerCounters,
};
use akagate_sys::steer::Steering;
use akagate_sys::{IoError, PortQueue};
use crossbeam_channel::{Receiver, Sender};

use super::wake::WorkerWake;
use super::IdlePolicy;

/// After `stop`, how long the worker may keep running to empty its command queue.
const DRAIN_LIMIT: Duration = Duration::from_millis(250);
/// After `stop`, the worker exits once it has been idle (no commands, no frames, no due
/// stacks) this long: a few timer ticks, so stacks scheduled by the last commands are polled.
const DRAIN_IDLE: Duration = Duration::from_millis(5);
/// Address space the worker grows its heap by before it runs ([`reserve_heap`]).
const HEAP_RESERVE: usize = 48 << 20;
/// Heap the worker faults in before it runs and keeps ([`prefault_heap`]): the first UEs'
/// allocations (about 2.6 KiB a registration beyond the reserved sockets) then touch pages
/// already resident.
const HEAP_PREFAULT: usize = 32 << 20;
/// Whether the process runs on glibc's malloc (the crate built without the `mimalloc` and
/// `jemalloc` features, which select the binaries' global allocator): only then do
/// [`reserve_heap`] and [`prefault_heap`] run, they work around glibc's per-thread arenas.
/// mimalloc maps its arenas writable (no `mprotect` per page) on transparent huge pages, so
/// a first touch is one fault per 2 MiB (docs/ARCHITECTURE.md, *The allocator*).
pub(crate) const GLIBC_ARENAS: bool = !cfg!(any(feature = "mimalloc", feature = "jemalloc"));
/// Allocation size of [`reserve_heap`]: below glibc's mmap threshold (128 KiB at least), so
/// the blocks come from the thread's arena.
const HEAP_RESERVE_BLOCK: usize = 64 << 10;

/// Idle iterations a backing-off worker whose frames are not announced by a [`FrameBell`]
/// (a NIC port) spins before it yields, up to [`YIELD_ITERATIONS`], and then parks.
///
/// [`FrameBell`]: super::FrameBell
const SPIN_ITERATIONS: u32 = 64;
/// Idle iterations a backing-off worker whose frames ring the bell spins before it parks.
/// It hears of every frame and command, so the spin only spares a park's cost (a futex wait
/// and two switches, several µs on this VM) when work comes back soon: 16 turns are about
/// that long. Round 30 (`hwake30`): against 64 turns, 2.5 idle turns a registration instead
/// of 10 at the same parks (0.22), worker + slowpath CPU −4 µs a registration in
/// alternated pairs (docs/BENCHMARKS.md).
const SPIN_RUNG: u32 = 16;
/// Idle iterations (spin included) after which a backing-off worker whose frames nobody
/// announces stops yielding and parks. A worker whose frames ring the bell skips the yields:
/// each costs a system call and, on a shared CPU, two context switches (round 19: ~17
/// yields per registration in akabench, the largest part of its thread CPU above its work).
const YIELD_ITERATIONS: u32 = 256;
/// The longest park of a backing-off worker that parks until its next timer
/// ([`Backoff::after`]): its link's own timers (gateway probes, packets waiting for a
/// neighbour: seconds) are the ones it does not look up, so they run at most this late.
/// A configured `max_sleep` above it is kept.
const PARK_LIMIT: Duration = Duration::from_millis(10);

/// Wall-clock nanoseconds all workers of the process spent in loop iterations that did
/// work (frames, commands or due stacks), iterations longer than [`PREEMPTED`] left out;
/// for benchmarks ([`busy_iteration_ns`]).
static BUSY_NS: AtomicU64 = AtomicU64::new(0);
/// Busy iterations left out of [`BUSY_NS`] as preempted.
static BUSY_SKIPPED: AtomicU64 = AtomicU64::new(0);
/// Idle loop turns, `sched_yield`s and parks of all workers of the process ([`idle_counts`]).
static IDLE_TURNS: AtomicU64 = AtomicU64::new(0);
static IDLE_YIELDS: AtomicU64 = AtomicU64::new(0);
static IDLE_PARKS: AtomicU64 = AtomicU64::new(0);

/// What the workers' idle policy did, summed over the process's workers ([`idle_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdleCounts {
    /// Loop turns that found no work (frames, commands or due stacks).
    pub turns: u64,
    /// `sched_yield` calls.
    pub yields: u64,
    /// Parks (`thread::park_timeout`), each ended by a wake-up or its timeout.
    pub parks: u64,
}

/// The idle policy's counts of the process's workers since start: idle turns, yields and
/// parks, for benchmarks (per registration in akabench's report). An idle streak's counts
/// are added when it ends (the next turn that does work, or stop).
pub fn idle_counts() -> IdleCounts {
    IdleCounts {
        turns: IDLE_TURNS.load(Ordering::Relaxed),
        yields: IDLE_YIELDS.load(Ordering::Relaxed),
        parks: IDLE_PARKS.load(Ordering::Relaxed),
    }
}
/// A busy iteration longer than this was preempted (a burst takes tens of microseconds):
/// its wall time is mostly another thread's.
const PREEMPTED: Duration = Duration::from_millis(1);

/// The busy-iteration clock of the process's workers: (nanoseconds in iterations that did
/// work, iterations left out as preempted). Like VPP's clocks per packet, which count only
/// the calls that carried vectors: it leaves out the idle turns that a worker's thread CPU
/// time includes, and it is wall time (one clock read per busy iteration, the loop reads one
/// anyway), so it is meant for a worker that has a core to itself.
pub fn busy_iteration_ns() -> (u64, u64) {
    (
        BUSY_NS.load(Ordering::Relaxed),
        BUSY_SKIPPED.load(Ordering::Relaxed),
    )
}

/// What a worker thread is started with.
pub(super) struct WorkerThread<Q> {
    pub cfg: WorkerConfig,
    pub queue: Q,
    /// With several workers: the port's steering and the handoff rings between the workers.
    pub peers: Option<(Steering, Arc<Handoff>)>,
    pub table: Arc<InboundTable>,
    pub events: EventSink,
    pub commands: Receiver<WorkerCommand>,
    pub core: Option<usize>,
    pub idle: IdlePolicy,
    pub stop: Arc<AtomicBool>,
    /// How the slowpath wakes this worker when it queues a command.
    pub wake: Arc<WorkerWake>,
    /// Restored SA sets (`RestoreSaSet`) installed before the worker reports ready.
    pub restore: Vec<WorkerCommand>,
    /// Spare TCP sockets made and first touched before the worker reports ready
    /// (`[stack] socket-reserve`, `Worker::reserve_sockets`).
    pub socket_reserve: usize,
}

/// Waits between idle iterations according to the [`IdlePolicy`].
struct Backoff {
    policy: IdlePolicy,
    /// Idle iterations since the last one that did work.
    idle: u32,
    wake: Arc<WorkerWake>,
    /// Whether the worker has peers: frames handed over by another worker ring no bell,
    /// so its parks stay `max_sleep` long.
    peers: bool,
    /// Yields and parks not yet added to the process's counts ([`idle_counts`]).
    yields: u64,
    parks: u64,
}

impl Backoff {
    fn new(policy: IdlePolicy, wake: Arc<WorkerWake>, peers: bool) -> Self {
        Backoff {
            policy,
            idle: 0,
            wake,
            peers,
            yields: 0,
            parks: 0,
        }
    }

    /// `pending()` tells whether commands are queued (or stop is asked): a backing-off worker
    /// never parks then, and a command queued while it is parked wakes it ([`WorkerWake`]).
    /// `until_due(limit)` is how long until the worker's next timer, at most `limit`.
    ///
    /// A worker whose frames ring the bell and that has no peers hears of every frame and
    /// every command, so it parks until its next timer (at most [`PARK_LIMIT`], or
    /// `max_sleep` if longer) instead of `max_sleep`: with 200 µs, about half its parks
    /// ended by their timeout on a turn with nothing to do (docs/BENCHMARKS.md, *The
    /// worker's parks, round 20*). Any other parks `max_sleep`, as frames it is not told of
    /// wait for its next poll.
    fn after(
        &mut self,
        work: usize,
        pending: impl Fn() -> bool,
        until_due: impl FnOnce(Duration) -> Duration,
    ) {
        if work > 0 {
            if self.idle > 0 {
                self.publish();
            }
            return;
        }
        self.idle = self.idle.saturating_add(1);
        match self.policy {
            IdlePolicy::BusyPoll => std::hint::spin_loop(),
            IdlePolicy::Backoff { max_sleep } => {
                let rung = self.wake.frames_rung();
                if self.idle < if rung { SPIN_RUNG } else { SPIN_ITERATIONS } {
                    std::hint::spin_loop();
                } else if self.idle < YIELD_ITERATIONS && !rung {
                    std::thread::yield_now();
                    self.yields += 1;
                } else {
                    let park = self.park_length(max_sleep, until_due);
                    // A timer due now: poll again rather than park for nothing.
                    if !park.is_zero() && self.wake.sleep(park, pending) {
                        self.parks += 1;
                    }
                }
            }
        }
    }

    /// How long the next park may last ([`Backoff::after`]).
    fn park_length(
        &self,
        max_sleep: Duration,
        until_due: impl FnOnce(Duration) -> Duration,
    ) -> Duration {
        if self.wake.frames_rung() && !self.peers {
            until_due(max_sleep.max(PARK_LIMIT))
        } else {
            max_sleep
        }
    }

    /// Adds the idle streak that just ended to the process's counts ([`idle_counts`]).
    fn publish(&mut self) {
        IDLE_TURNS.fetch_add(u64::from(self.idle), Ordering::Relaxed);
        IDLE_YIELDS.fetch_add(self.yields, Ordering::Relaxed);
        IDLE_PARKS.fetch_add(self.parks, Ordering::Relaxed);
        (self.idle, self.yields, self.parks) = (0, 0, 0);
    }
}

impl<Q: PortQueue + 'static> WorkerThread<Q> {
    /// The thread body. `ready` gets the worker's counters once it runs, or the pinning error.
    pub fn run(self, ready: Sender<Result<Arc<WorkerCounters>, IoError>>) {
        let WorkerThread {
            cfg,
            queue,
            peers,
            table,
            events,
            commands,
            core,
            idle,
            stop,
            wake,
            restore,
            socket_reserve,
        } = self;
        let id = cfg.id;
        if let Some(core) = core {
            if let Err(e) = akagate_sys::affinity::pin_current_thread(core) {
                let _ = ready.send(Err(e));
                return;
            }
        }
        if GLIBC_ARENAS {
            reserve_heap(HEAP_RESERVE);
        }
        // Kept until the thread ends: freeing it would let glibc trim the prefaulted pages.
        let _plug = GLIBC_ARENAS.then(|| prefault_heap(HEAP_PREFAULT));
        let start = Instant::now();
        let now = || {
            smoltcp::time::Instant::from_micros(
                i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX),
            )
        };
        // A second handle on the command queue, only to see whether it is empty when draining.
        let pending = commands.clone();
        let mut worker = Worker::new(cfg, queue, table, events, commands, now());
        let has_peers = peers.is_some();
        if let Some((steering, handoff)) = peers {
            worker = worker.with_peers(steering, handoff);
        }
        // On this thread, whose stacks take them: the next UEs' connections cost no
        // allocation or page fault inside their registrations.
        worker.reserve_sockets(socket_reserve);
        // Before any frame: a restored UE's first packet finds its SAs (issue 14).
        for cmd in restore {
            worker.command(cmd, now());
        }
        if ready.send(Ok(worker.counters().clone())).is_err() {
            return;
        }
        drop(ready);
        tracing::debug!("worker {id} running (core {core:?})");
        wake.register_current();
        let mut backoff = Backoff::new(idle, wake, has_peers);
        let mut busy = Duration::ZERO;
        let mut skipped = 0u64;
        while !stop.load(Ordering::Acquire) {
            let t0 = Instant::now();
            let work = worker.run_once(smoltcp::time::Instant::from_micros(
                i64::try_from(t0.duration_since(start).as_micros()).unwrap_or(i64::MAX),
            ));
            if work > 0 {
                match t0.elapsed() {
                    d if d < PREEMPTED => busy += d,
                    _ => skipped += 1,
                }
            } else if !busy.is_zero() || skipped > 0 {
                // Published when the worker goes idle, not per iteration.
                publish_busy(&mut busy, &mut skipped);
            }
            // Stop is seen before a park: the handle rings the workers after setting it.
            let asked = || !pending.is_empty() || stop.load(Ordering::Acquire);
            backoff.after(work, asked, |limit| {
                let now = now();
                let limit_us = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
                let until = now + smoltcp::time::Duration::from_micros(limit_us);
                worker.next_due(until).map_or(limit, |at| {
                    let us = (at.total_micros() - now.total_micros()).max(0);
                    Duration::from_micros(us.unsigned_abs())
                })
            });
        }
        publish_busy(&mut busy, &mut skipped);
        backoff.publish();
        // Drain: the slowpath has stopped and dropped its command senders; execute what it
        // sent and let the stacks transmit it.
        let limit = Instant::now() + DRAIN_LIMIT;
        let mut idle_since = Instant::now();
        loop {
            let work = worker.run_once(now());
            let t = Instant::now();
            if work > 0 || !pending.is_empty() {
                idle_since = t;
            } else if t.duration_since(idle_since) >= DRAIN_IDLE {
                break;
            }
            if t >= limit {
                tracing::warn!(
                    "worker {id}: stopped with {} command(s) unexecuted",
                    pending.len()
                );
                break;
            }
            std::thread::yield_now();
        }
        tracing::debug!("worker {id} stopped with {} UE stack(s)", worker.ue_count());
    }
}

/// Grows the calling thread's heap by `bytes` of address space and gives the memory back at
/// once. glibc grows a thread's arena (every thread but main) one `mprotect` per page as
/// the heap's top runs out, and remembers how far it is writable when it trims; so after
/// this, the per-UE allocations of the first registrations (about 6 KiB a UE) fill the
/// heap without a system call each page (issue 10: 3,100 `mprotect`s on the worker for 2,000
/// registrations, a tenth of its CPU; docs/BENCHMARKS.md, *The daemon's worker thread,
/// round 18*). The blocks are never written, so only their headers' pages are touched, and
/// freeing them returns those (`MADV_DONTNEED`); an arena holds at most 64 MiB per heap,
/// so beyond it glibc starts another heap, grown the same way. With another allocator this
/// is one allocation and free per block.
pub(crate) fn reserve_heap(bytes: usize) {
    let blocks: Vec<Vec<u8>> = (0..bytes / HEAP_RESERVE_BLOCK)
        .map(|_| Vec::with_capacity(HEAP_RESERVE_BLOCK))
        .collect();
    // Kept opaque so the allocations are not optimised away, and freed last-first so each
    // block merges with the heap's top at once.
    let mut blocks = std::hint::black_box(blocks);
    while blocks.pop().is_some() {}
}

/// Faults in `bytes` of the calling thread's heap and keeps them there for its next
/// allocations: blocks of [`HEAP_RESERVE_BLOCK`] are allocated, one byte a page written, and
/// freed while one more block allocated after them stays (the plug, returned: drop it last).
/// The freed blocks coalesce into one free chunk below the plug, and glibc gives pages
/// back only from the top of a heap, so they stay resident and the thread's next
/// allocations are carved from them without a page fault. A first touch costs this VM
/// 2-5 µs (a guest and a host fault; 0.65 a registration after the socket reserve, round
/// 19); here it is paid at start, as for the spare sockets. With another allocator this is
/// a plain first touch.
fn prefault_heap(bytes: usize) -> Vec<u8> {
    const PAGE: usize = 4096;
    let mut blocks: Vec<Vec<u8>> = (0..bytes / HEAP_RESERVE_BLOCK)
        .map(|_| Vec::with_capacity(HEAP_RESERVE_BLOCK))
        .collect();
    for b in &mut blocks {
        for page in b.spare_capacity_mut().iter_mut().step_by(PAGE) {
            *page = std::mem::MaybeUninit::new(0);
        }
    }
    // Opaque: the writes and the allocations are not optimised away.
    let blocks = std::hint::black_box(blocks);
    let plug = std::hint::black_box(Vec::with_capacity(HEAP_RESERVE_BLOCK));
    drop(blocks);
    plug
}

/// Adds a worker's busy-iteration clock to the process's and zeroes it.
fn publish_busy(busy: &mut Duration, skipped: &mut u64) {
    let ns = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
    BUSY_NS.fetch_add(ns, Ordering::Relaxed);
    BUSY_SKIPPED.fetch_add(*skipped, Ordering::Relaxed);
    *busy = Duration::ZERO;
    *skipped = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::daemon::ports::{memory_pair, MEMORY_DAEMON_MAC, MEMORY_PEER_MAC};
    use crate::daemon::setup::worker_config;
    use crate::daemon::FrameBell;
    use akagate_fastpath::ipc::{Flow, Transport, WorkerEvent};
    use akagate_sys::mempair::MemQueue;
    use akagate_sys::{PacketBuf, Port};
    use crossbeam_channel::bounded;
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr, IpProtocol, Ipv4Packet, UdpPacket,
    };
    use std::net::Ipv4Addr;

    const UE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
    const PCSCF: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn arp_request() -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(MEMORY_PEER_MAC),
            source_protocol_addr: UE,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: PCSCF,
        };
        let mut f = vec![0u8; 14 + arp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        EthernetRepr {
            src_addr: EthernetAddress(MEMORY_PEER_MAC),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        }
        .emit(&mut eth);
        arp.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        f
    }

    /// A worker thread over a memory pair (one queue), for the thread tests, with what they
    /// hold on to.
    struct TestWorker {
        thread: WorkerThread<MemQueue>,
        /// The UE end of the pair.
        ue: MemQueue,
        commands: Sender<WorkerCommand>,
        wake: Arc<WorkerWake>,
        /// Kept so the worker's events have somewhere to go.
        _events: Receiver<WorkerEvent>,
    }

    fn test_worker(idle: IdlePolicy, stop: Arc<AtomicBool>) -> TestWorker {
        let config = Config::default();
        let (mut daemon_end, mut ue_end) = memory_pair(&config).unwrap();
        let link = daemon_end.link().clone();
        let queue = daemon_end.take_queues().pop().unwrap();
        let ue = ue_end.take_queues().pop().unwrap();
        let (events, events_rx) = bounded(16);
        let (commands_tx, commands) = bounded(16);
        let wake = Arc::new(WorkerWake::default());
        let thread = WorkerThread {
            cfg: worker_config(&config, 0, &link, 5060, None),
            queue,
            peers: None,
            table: Arc::new(InboundTable::with_capacity(64).unwrap()),
            events: events.into(),
            commands,
            core: None,
            idle,
            stop,
            wake: wake.clone(),
            restore: Vec::new(),
            socket_reserve: 4,
        };
        TestWorker {
            thread,
            ue,
            commands: commands_tx,
            wake,
            _events: events_rx,
        }
    }

    /// A started worker (`Backoff` with a `max_sleep` of 10 s, so a park ended by its
    /// timeout would fail the tests' 5 s bounds), with a frame bell over its wake, for the
    /// parked-worker tests.
    struct ParkedWorker {
        ue: MemQueue,
        commands: Sender<WorkerCommand>,
        wake: Arc<WorkerWake>,
        bell: FrameBell,
        join: std::thread::JoinHandle<()>,
        _events: Receiver<WorkerEvent>,
    }

    fn start_parked_worker(stop: Arc<AtomicBool>) -> ParkedWorker {
        let idle = IdlePolicy::Backoff {
            max_sleep: Duration::from_secs(10),
        };
        let TestWorker {
            thread,
            ue,
            commands,
            wake,
            _events,
        } = test_worker(idle, stop);
        let bell = FrameBell::new(vec![wake.clone()]);
        let (ready, ready_rx) = bounded(1);
        let join = std::thread::spawn(move || thread.run(ready));
        ready_rx.recv().unwrap().unwrap();
        ParkedWorker {
            ue,
            commands,
            wake,
            bell,
            join,
            _events,
        }
    }

    /// Waits until the worker behind `wake` is parked.
    fn await_parked(wake: &WorkerWake) {
        while !wake.is_sleeping() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The UDP flow between the UE's and the P-CSCF's SIP ports, for a `Send` command.
    fn ue_sip_udp_flow() -> Flow {
        Flow {
            ue: UE.into(),
            ue_port: 5060,
            local: PCSCF.into(),
            local_port: 5060,
            proto: Transport::Udp,
        }
    }

    /// A TCP SYN from the UE to the P-CSCF's SIP port.
    fn tcp_syn() -> Vec<u8> {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{IpAddress, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 5060,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1000),
            ack_number: None,
            window_len: 65535,
            window_scale: None,
            max_seg_size: Some(1400),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: UE,
            dst_addr: PCSCF,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut f = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        EthernetRepr {
            src_addr: EthernetAddress(MEMORY_PEER_MAC),
            dst_addr: EthernetAddress(MEMORY_DAEMON_MAC),
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut eth);
        let caps = ChecksumCapabilities::default();
        let mut ip_pkt = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut ip_pkt, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(ip_pkt.payload_mut()),
            &IpAddress::Ipv4(UE),
            &IpAddress::Ipv4(PCSCF),
            &caps,
        );
        f
    }

    /// Sends `frame` from the UE end and rings the bell.
    fn send_rung(ue: &mut MemQueue, bell: &FrameBell, frame: &[u8]) {
        let mut b = ue.alloc().unwrap();
        b.fill(frame).unwrap();
        assert_eq!(ue.tx_burst(&mut vec![b]), 1);
        bell.ring();
    }

    /// Waits up to `bound` for a frame at the UE end that `want` accepts (others are
    /// dropped); panics with `what` otherwise.
    fn await_frame(ue: &mut MemQueue, bound: Duration, what: &str, want: impl Fn(&[u8]) -> bool) {
        let t = Instant::now();
        loop {
            let mut rx: Vec<PacketBuf> = Vec::new();
            ue.rx_burst(&mut rx, 16);
            if rx.iter().any(|b| want(b.data())) {
                return;
            }
            assert!(t.elapsed() < bound, "{what}: nothing within {bound:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether `f` is a TCP SYN-ACK from the P-CSCF.
    fn is_syn_ack(f: &[u8]) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(f) else {
            return false;
        };
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return false;
        };
        let Ok(tcp) = smoltcp::wire::TcpPacket::new_checked(ip.payload()) else {
            return false;
        };
        ip.next_header() == IpProtocol::Tcp && tcp.syn() && tcp.ack()
    }

    /// A worker whose frames ring parks until its next timer, not for its whole `max_sleep`
    /// (10 s here): the stack's SYN-ACK is retransmitted (its RTO, under a second) while
    /// nobody rings or queues anything. A command queued then (the slowpath's `wake`) is
    /// carried out within a bound, and stop ends the worker at once (the handle's
    /// `wake_all`). With parks of `max_sleep` the retransmission waited 10 s.
    #[test]
    fn a_worker_parked_until_its_timer_retransmits_and_answers_commands() {
        let stop = Arc::new(AtomicBool::new(false));
        let ParkedWorker {
            ue: mut ue_q,
            commands,
            wake,
            bell,
            join: worker,
            _events,
        } = start_parked_worker(stop.clone());
        let bound = Duration::from_secs(5);
        send_rung(&mut ue_q, &bell, &arp_request());
        await_frame(&mut ue_q, bound, "ARP reply", |f| {
            EthernetFrame::new_checked(f).is_ok_and(|e| e.ethertype() == EthernetProtocol::Arp)
        });
        send_rung(&mut ue_q, &bell, &tcp_syn());
        await_frame(&mut ue_q, bound, "SYN-ACK", is_syn_ack);
        // Parked now, with the retransmission due on its wheel.
        await_parked(&wake);
        await_frame(&mut ue_q, bound, "retransmitted SYN-ACK", is_syn_ack);
        await_parked(&wake);
        let flow = ue_sip_udp_flow();
        commands
            .send(WorkerCommand::Send {
                flow,
                bytes: b"SIP/2.0 401 Unauthorized\r\n\r\n".to_vec(),
                connect_if_absent: false,
            })
            .unwrap();
        wake.wake();
        await_frame(&mut ue_q, bound, "the command's datagram", |f| {
            EthernetFrame::new_checked(f).ok().and_then(|e| {
                Ipv4Packet::new_checked(e.payload())
                    .ok()
                    .map(|ip| ip.next_header())
            }) == Some(IpProtocol::Udp)
        });
        await_parked(&wake);
        let t = Instant::now();
        stop.store(true, Ordering::Release);
        FrameBell::new(vec![wake]).wake_all();
        worker.join().unwrap();
        assert!(t.elapsed() < bound, "stop took {:?}", t.elapsed());
    }

    /// The writable part of the mapping of `/proc/self/maps` that holds `addr`, in bytes.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn writable_mapping_around(addr: usize) -> Option<usize> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|l| {
            let (range, rest) = l.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            );
            (a <= addr && addr < b && rest.starts_with("rw")).then_some(b - a)
        })
    }

    /// Runs the test `name` of this module again, alone, in a child process (this test
    /// binary, with `child_env` set so the test knows it is the child) and asserts it passed:
    /// for heap tests, as the harness's own arenas are shared by many threads and already
    /// grown.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn run_alone_in_a_child(name: &str, child_env: &str) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("daemon::worker::tests::{name}"),
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(child_env, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    /// After `reserve_heap`, a thread's glibc arena is writable far beyond what it holds, so
    /// its next allocations grow into it without an `mprotect` per page; a fresh thread's
    /// arena is writable for about 132 KiB only. Run in a child process (this test binary
    /// again, this test alone): in the harness's process the arenas are shared by many
    /// threads and already grown.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn reserve_heap_leaves_the_threads_arena_writable() {
        const CHILD: &str = "AKAGATE_RESERVE_HEAP_CHILD";
        let probe = |reserve: bool| {
            std::thread::spawn(move || {
                if reserve {
                    reserve_heap(HEAP_RESERVE);
                }
                let b = std::hint::black_box(Box::new([0u8; 64]));
                writable_mapping_around(&*b as *const _ as usize)
            })
            .join()
            .unwrap()
        };
        if std::env::var_os(CHILD).is_some() {
            let reserved = probe(true).expect("a mapping holds the allocation");
            assert!(reserved >= HEAP_RESERVE, "{reserved} bytes writable");
            return;
        }
        run_alone_in_a_child("reserve_heap_leaves_the_threads_arena_writable", CHILD);
    }

    /// Once the frame bell has rung, an idle backing-off worker parks as soon as its spin
    /// of [`SPIN_RUNG`] turns ends; a worker whose frames nobody announces (a NIC port)
    /// still spins [`SPIN_ITERATIONS`] and yields first.
    #[test]
    fn a_worker_whose_frames_ring_parks_without_yielding() {
        let policy = IdlePolicy::Backoff {
            max_sleep: Duration::from_micros(50),
        };
        let turns = SPIN_ITERATIONS + 10;
        let quiet = Arc::new(WorkerWake::default());
        let mut b = Backoff::new(policy, quiet, false);
        for _ in 0..turns {
            b.after(0, || false, |limit| limit);
        }
        assert_eq!((b.yields, b.parks), (11, 0));
        let rung = Arc::new(WorkerWake::default());
        FrameBell::new(vec![rung.clone()]).ring();
        let mut b = Backoff::new(policy, rung, false);
        // It spins a shorter window (SPIN_RUNG turns, the first park on the last of them).
        for _ in 1..SPIN_RUNG {
            b.after(0, || false, |_| Duration::from_micros(50));
        }
        assert_eq!((b.yields, b.parks), (0, 0));
        b.after(0, || false, |_| Duration::from_micros(50));
        assert_eq!((b.yields, b.parks), (0, 1));
        for _ in SPIN_RUNG..turns {
            // A timer due in 50 µs each time.
            b.after(0, || false, |_| Duration::from_micros(50));
        }
        let parks = u64::from(turns - SPIN_RUNG + 1);
        assert_eq!((b.yields, b.parks), (0, parks));
        // Queued commands keep it from parking at all.
        for _ in 0..5 {
            b.after(0, || true, |limit| limit);
        }
        assert_eq!(b.parks, parks);
        // A timer due now: no park either.
        b.after(0, || false, |_| Duration::ZERO);
        assert_eq!(b.parks, parks);
        // Work ends the streak and publishes it.
        b.after(1, || false, |limit| limit);
        assert_eq!((b.idle, b.yields, b.parks), (0, 0, 0));
    }

    /// A worker whose frames ring and that has no peers parks until its next timer, up to
    /// `PARK_LIMIT` (or a longer `max_sleep`); one that is not told of its frames (no bell
    /// yet, or frames handed over by peers) parks `max_sleep`.
    #[test]
    fn a_rung_worker_without_peers_parks_until_its_next_timer() {
        let short = Duration::from_micros(200);
        let rung = Arc::new(WorkerWake::default());
        FrameBell::new(vec![rung.clone()]).ring();
        let timer_in = |d: Duration| move |limit: Duration| d.min(limit);
        let b = Backoff::new(IdlePolicy::BusyPoll, rung.clone(), false);
        let ms = Duration::from_millis;
        assert_eq!(b.park_length(short, timer_in(ms(3))), ms(3));
        assert_eq!(b.park_length(short, timer_in(ms(60))), PARK_LIMIT);
        assert_eq!(b.park_length(ms(50), timer_in(ms(60))), ms(50));
        assert_eq!(b.park_length(ms(50), timer_in(ms(3))), ms(3));
        let with_peers = Backoff::new(IdlePolicy::BusyPoll, rung, true);
        assert_eq!(with_peers.park_length(short, timer_in(ms(3))), short);
        let quiet = Backoff::new(IdlePolicy::BusyPoll, Arc::default(), false);
        assert_eq!(quiet.park_length(short, timer_in(ms(3))), short);
    }

    /// A worker parked for up to 10 s answers a frame rung on the bell at once, twice (the
    /// second time it parks straight after its spin), and leaves when stopped and rung.
    #[test]
    fn a_parked_worker_answers_a_rung_frame_within_a_bound() {
        let stop = Arc::new(AtomicBool::new(false));
        let ParkedWorker {
            ue: mut ue_q,
            commands: _commands,
            wake,
            bell,
            join: worker,
            _events,
        } = start_parked_worker(stop.clone());
        for round in 0..2 {
            await_parked(&wake);
            let t = Instant::now();
            let mut b = ue_q.alloc().unwrap();
            b.fill(&arp_request()).unwrap();
            assert_eq!(ue_q.tx_burst(&mut vec![b]), 1);
            bell.ring();
            let mut rx: Vec<PacketBuf> = Vec::new();
            while rx.is_empty() {
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "round {round}: no answer, the park was not ended"
                );
                ue_q.rx_burst(&mut rx, 16);
                std::thread::yield_now();
            }
            let eth = EthernetFrame::new_checked(rx[0].data()).unwrap();
            assert_eq!(eth.ethertype(), EthernetProtocol::Arp, "round {round}");
        }
        // Stop is not a command: ring until the worker sees it (a ring just before it parks
        // would otherwise leave it its 10 s).
        stop.store(true, Ordering::Release);
        let t = Instant::now();
        while !worker.is_finished() {
            bell.ring();
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            std::thread::sleep(Duration::from_millis(1));
        }
        worker.join().unwrap();
    }

    /// This thread's minor page faults (`/proc/thread-self/stat` field 10).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn thread_minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        rest.split_whitespace().nth(7).unwrap().parse().unwrap()
    }

    /// After `prefault_heap`, a thread's next 4 MiB of small allocations, written whole,
    /// fault in almost no page; without it they fault about one a page. Run in a child
    /// process, as the reserve test (the harness's arenas are shared and already grown).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn prefault_heap_keeps_the_pages_for_the_next_allocations() {
        const CHILD: &str = "AKAGATE_PREFAULT_HEAP_CHILD";
        let probe = |prefault: bool| {
            std::thread::spawn(move || {
                reserve_heap(HEAP_RESERVE);
                let plug = prefault.then(|| prefault_heap(8 << 20));
                let before = thread_minor_faults();
                let boxes: Vec<Box<[u8; 2000]>> =
                    (0..2048).map(|i| Box::new([i as u8; 2000])).collect();
                let faults = thread_minor_faults() - before;
                drop(std::hint::black_box(boxes));
                drop(plug);
                faults
            })
            .join()
            .unwrap()
        };
        if std::env::var_os(CHILD).is_some() {
            let (cold, warm) = (probe(false), probe(true));
            println!("faults: cold {cold}, prefaulted {warm}");
            assert!(cold >= 500, "cold {cold}");
            assert!(warm <= 50, "prefaulted {warm}");
            return;
        }
        run_alone_in_a_child(
            "prefault_heap_keeps_the_pages_for_the_next_allocations",
            CHILD,
        );
    }

    /// A worker told to stop before it ever ran still executes the commands queued for it
    /// and transmits their output: that is what lets shutdown deliver the slowpath's last
    /// answers.
    #[test]
    fn a_stopped_worker_executes_queued_commands_before_exiting() {
        let TestWorker {
            thread,
            ue: mut ue_q,
            commands: commands_tx,
            wake: _,
            _events,
        } = test_worker(IdlePolicy::BusyPoll, Arc::new(AtomicBool::new(true)));
        // The UE's ARP request waits in the ring, so its address is known when the answer
        // leaves (the worker reads commands, then frames, then polls stacks).
        let mut b = ue_q.alloc().unwrap();
        b.fill(&arp_request()).unwrap();
        assert_eq!(ue_q.tx_burst(&mut vec![b]), 1);

        let flow = ue_sip_udp_flow();
        commands_tx
            .send(WorkerCommand::Send {
                flow,
                bytes: b"SIP/2.0 401 Unauthorized\r\n\r\n".to_vec(),
                connect_if_absent: false,
            })
            .unwrap();
        drop(commands_tx);
        let (ready, ready_rx) = bounded(1);
        thread.run(ready);
        let counters = ready_rx.recv().unwrap().unwrap();
        assert_eq!(counters.get("commands"), Some(1));

        let mut rx: Vec<PacketBuf> = Vec::new();
        ue_q.rx_burst(&mut rx, 16);
        let udp: Vec<Vec<u8>> = rx
            .iter()
            .filter_map(|b| {
                let eth = EthernetFrame::new_checked(b.data()).ok()?;
                assert_eq!(eth.src_addr(), EthernetAddress(MEMORY_DAEMON_MAC));
                let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
                (ip.next_header() == IpProtocol::Udp).then(|| ip.payload().to_vec())
            })
            .collect();
        assert_eq!(udp.len(), 1, "{rx:?}");
        let u = UdpPacket::new_checked(&udp[0][..]).unwrap();
        assert_eq!(u.payload(), b"SIP/2.0 401 Unauthorized\r\n\r\n");
    }
}
