//! The worker loop: rx burst -> link layer -> outer reassembly -> ESP decap -> per-UE stack
//! -> SIP events to the slowpath; slowpath commands and stack output -> ESP encap -> tx burst.
//!
//! One worker owns a port queue and every UE steered to it (see docs/ARCHITECTURE.md), so all
//! per-UE state here is single-threaded.

mod commands;
pub mod counters;
mod egress;
mod handoff;
mod ingress;
pub use crate::phases;
pub mod sa;
mod ues;

use std::net::IpAddr;
use std::sync::Arc;

use akagate_sys::{PacketBuf, PortQueue};
use crossbeam_channel::Receiver;
use smoltcp::time::{Duration, Instant};

use crate::ipc::{WorkerCommand, WorkerEvent};
use crate::l2::L2Config;
use crate::reasm::{ReasmConfig, Reassembler};
use crate::stack::tls::TlsListener;
use crate::stack::{ConnDeadlines, StackConfig, UeStack};
use crate::timer::TimerWheel;
use counters::{add, inc};
pub use counters::{WorkerCounterValues, WorkerCounters};
use egress::Link;
use handoff::Peers;
pub use handoff::{EventDropped, EventSink, Handoff};
pub use sa::{InboundEntry, InboundTable, SaSetState, SaSlab, UeEgress, WorkerSas};
pub use ues::UeTag;
use ues::Ues;

/// How long a removed SA set keeps its SAs for the bytes queued before the removal
/// (`WorkerCommand::RemoveSaSet`) when they are not all acknowledged: normally the UE's ACK
/// (through the set's inbound SA, kept for the drain) ends the drain within a round trip; a UE
/// that dropped its SAs first never ACKs, and this bounds the retransmissions of the last
/// message (the 200 OK to a de-REGISTER) that still leave encrypted. Two seconds cover
/// smoltcp's initial retransmission timeout of one second.
pub const SA_DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Everything a worker is configured with.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Index of this worker (the owner recorded in inbound SA entries).
    pub id: usize,
    /// Link layer: MAC, addresses, gateways, neighbour cache.
    pub l2: L2Config,
    /// Per-UE stack sizes.
    pub stack: StackConfig,
    /// Outer reassembly bounds.
    pub reasm: ReasmConfig,
    /// The unprotected SIP port (5060).
    pub sip_port: u16,
    /// The unprotected SIP-over-TLS port (5061) and its server configuration, if any
    /// (RFC 3261 26.2): clear TCP to it is accepted like to `sip_port`, through a TLS session.
    pub tls: Option<TlsListener>,
    /// Frames per rx burst.
    pub burst: usize,
    /// Commands executed per loop iteration at most.
    pub commands_per_loop: usize,
    /// UE stacks this worker holds at most.
    pub max_ues: usize,
    /// IP MTU of the link (outer packets).
    pub link_mtu: usize,
    /// Timer wheel tick.
    pub timer_tick: Duration,
    /// Timer wheel slots.
    pub timer_slots: usize,
    /// Limits of the unprotected SIP port, which anyone may reach.
    pub sip_limits: SipPortLimits,
}

/// Limits of the unprotected SIP port (5060) per worker: anyone on the access network may
/// connect there, so connections, half-open handshakes, slow messages, idle unregistered
/// connections and the stacks of unregistered sources are bounded, and every refusal is
/// counted (`drop_sip_*`, `sip_conns_*`). Registered UEs talk over their SAs' ports, which
/// these limits never touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipPortLimits {
    /// TCP connections to the SIP port from one source address.
    pub max_conns_per_source: usize,
    /// TCP connections to the SIP port in all (per worker).
    pub max_conns: usize,
    /// Connections to the SIP port still in the handshake (SYN-RECEIVED), per worker.
    pub max_half_open: usize,
    /// Stacks of sources without an SA set (unregistered), per worker.
    pub max_unregistered: usize,
    /// The handshake, and a SIP message once begun, must complete within this time.
    pub message_deadline: Duration,
    /// A connection of an unregistered source that carried no message for this long is
    /// closed.
    pub idle_deadline: Duration,
}

impl Default for SipPortLimits {
    fn default() -> Self {
        SipPortLimits {
            max_conns_per_source: 4,
            max_conns: 4096,
            max_half_open: 1024,
            max_unregistered: 16384,
            message_deadline: Duration::from_secs(10),
            idle_deadline: Duration::from_secs(64),
        }
    }
}

/// Use of the unprotected SIP port: one UE's share as last counted, or the worker's sum of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SipPortUse {
    /// No SA set (not registered).
    unregistered: usize,
    /// TCP connections to the SIP port.
    conns: usize,
    /// Of those, still in the handshake.
    half_open: usize,
}

impl SipPortUse {
    fn of(ue: &Ue, sip_port: u16) -> SipPortUse {
        let (conns, half_open) = ue.stack.conns_on(sip_port);
        SipPortUse {
            unregistered: usize::from(ue.sa_sets.is_empty()),
            conns,
            half_open,
        }
    }

    fn add(&mut self, o: SipPortUse) {
        self.unregistered += o.unregistered;
        self.conns += o.conns;
        self.half_open += o.half_open;
    }

    fn sub(&mut self, o: SipPortUse) {
        self.unregistered = self.unregistered.saturating_sub(o.unregistered);
        self.conns = self.conns.saturating_sub(o.conns);
        self.half_open = self.half_open.saturating_sub(o.half_open);
    }

    /// Counts `ue`'s use again into this (the worker's) total.
    fn recount(&mut self, ue: &mut Ue, sip_port: u16) {
        let u = SipPortUse::of(ue, sip_port);
        self.set(ue, u);
    }

    /// Makes `u` `ue`'s counted use in this (the worker's) total.
    fn set(&mut self, ue: &mut Ue, u: SipPortUse) {
        self.sub(ue.sip_use);
        ue.sip_use = u;
        self.add(u);
    }
}

/// Per-UE state: its stack, its installed SA sets (newest first) and its next hop.
#[derive(Debug)]
struct Ue {
    stack: UeStack,
    sa_sets: UeEgress,
    /// Its share of the worker's [`Worker::sip_use`], as last counted.
    sip_use: SipPortUse,
    /// Its live deadline in the worker's timer wheel (`None`: not scheduled); wheel entries
    /// of other deadlines are stale ([`crate::timer`]).
    timer_at: Option<Instant>,
    /// On the worker's list of UEs to poll this loop turn ([`Worker::woken`]).
    woken: bool,
    /// Its slot in [`Worker::ues`]: the key of its wheel entries and of `woken`, and the
    /// owner its inbound SAs' table entries carry.
    tag: UeTag,
}

impl Ue {
    /// Starts loading the UE's state that its next packet, command or poll reads: this
    /// record, then (once its lines are there: [`Ue::prefetch_heap`]) what it points to.
    fn prefetch(&self) {
        let base = (self as *const Ue).cast::<u8>();
        for off in (0..core::mem::size_of::<Ue>()).step_by(64) {
            crate::sad::prefetch(base.wrapping_add(off));
        }
    }

    /// The second step of [`Ue::prefetch`]: the stack's sockets and connections, the SA sets,
    /// and `rx_bytes` of the newest connection's receive buffer ([`UeStack::prefetch`]).
    fn prefetch_heap(&self, rx_bytes: usize) {
        self.stack.prefetch(rx_bytes);
        // Inline unless the UE has two sets (a re-registration): then on the heap.
        crate::sad::prefetch(self.sa_sets.as_ptr());
    }
}

/// Puts `ue` on `woken`, the UEs to poll in this loop turn, unless it is there: a packet or
/// a command gave it work. Its deadline in the timer wheel stays as it is.
fn wake_ue(woken: &mut Vec<UeTag>, ue: &mut Ue) {
    if !ue.woken {
        ue.woken = true;
        woken.push(ue.tag);
    }
}

/// Makes `at` the live deadline of `ue` in `timers`, unless it already is (a poll that
/// leaves the stack's deadline where it was adds no wheel entry).
fn arm(timers: &mut TimerWheel<UeTag>, ue: &mut Ue, at: Instant) {
    if ue.timer_at != Some(at) {
        ue.timer_at = Some(at);
        timers.schedule(ue.tag, at);
    }
}

/// When `ue` next needs a poll after one (or after an input that needed none): its stack's
/// deadline, its SIP-port connections' deadlines, and `drain_next`, its draining sets'.
fn next_deadline(
    ue: &mut Ue,
    cfg: &WorkerConfig,
    now: Instant,
    drain_next: Option<Instant>,
) -> Option<Instant> {
    let deadlines = sip_deadlines(&cfg.sip_limits, ue);
    [
        ue.stack.poll_at_after_input(now),
        drain_next,
        ue.stack.conn_deadline(cfg.sip_port, deadlines),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Right after an input into `ue`'s stack that asked for a poll (its `seg`), does that
/// poll's whole work in place when it would only reap the connection the input closed
/// ([`UeStack::reap_closed`]: the UE's last ACK, LAST-ACK to CLOSED), reporting the close
/// into `events`; returns whether it did. The caller knows `ue` has no poll pending (not
/// woken, nothing draining), so its other connections are as its last poll left them; a
/// UE without an SA set is left to its poll, which may free it.
fn reap_in_input(
    ue: &mut Ue,
    seg: crate::wire::transport::Segment,
    now: Instant,
    events: &mut Vec<WorkerEvent>,
) -> bool {
    seg.ports.proto == crate::ipc::Transport::Tcp
        && !ue.sa_sets.is_empty()
        && ue
            .stack
            .reap_closed(now, seg.ports.src, seg.ports.dst, events)
}

/// Right after an input into `ue`'s stack that asked for a poll (its `seg`), does that
/// poll's whole work in place when it would only frame what the segment brought
/// ([`UeStack::frame_in_input`]: the REGISTER on its connection, whose ACK waits for the
/// answer), its SIP messages into `events`; returns whether it did. Else (its part may be
/// done) the poll does the rest. Same precondition as [`reap_in_input`]: no poll pending.
/// No SA set is needed: a stack with a connection is never freed by its poll.
fn frame_in_input(
    ue: &mut Ue,
    cfg: &WorkerConfig,
    seg: crate::wire::transport::Segment,
    now: Instant,
    events: &mut Vec<WorkerEvent>,
) -> bool {
    // The protocol first: a UDP datagram needs no SIP-port deadlines.
    if seg.ports.proto != crate::ipc::Transport::Tcp {
        return false;
    }
    let expiry = (cfg.sip_port, sip_deadlines(&cfg.sip_limits, ue));
    ue.stack
        .frame_in_input(now, seg.ports.src, seg.ports.dst, expiry, events)
}

/// After a poll: `ue`'s use of the SIP port counted again into `total` and the UE's next
/// deadline ([`next_deadline`]), from one walk over its connections
/// ([`UeStack::port_use`]).
fn recount_and_deadline(
    total: &mut SipPortUse,
    ue: &mut Ue,
    cfg: &WorkerConfig,
    now: Instant,
    drain_next: Option<Instant>,
) -> Option<Instant> {
    let p = ue
        .stack
        .port_use(cfg.sip_port, sip_deadlines(&cfg.sip_limits, ue));
    let u = SipPortUse {
        unregistered: usize::from(ue.sa_sets.is_empty()),
        conns: p.conns,
        half_open: p.half_open,
    };
    total.set(ue, u);
    [ue.stack.poll_at(now), drain_next, p.deadline]
        .into_iter()
        .flatten()
        .min()
}

/// Makes `at` the live deadline of `ue`: armed in `timers`, or, with none, no deadline (an
/// earlier one still in the wheel goes stale).
fn rearm(timers: &mut TimerWheel<UeTag>, ue: &mut Ue, at: Option<Instant>) {
    match at {
        Some(at) => arm(timers, ue, at),
        None => ue.timer_at = None,
    }
}

/// Whether one of `ue`'s SA sets is draining (removed, its last bytes on their way): a poll
/// then checks whether its drain is over ([`Worker::finish_drains`]).
fn draining(ue: &Ue) -> bool {
    ue.sa_sets.iter().any(|s| s.drain_until.is_some())
}

/// One fast-path worker over a port queue `Q`.
pub struct Worker<Q: PortQueue> {
    cfg: WorkerConfig,
    /// The port queue, the link layer and everything that transmits.
    link: Link<Q>,
    reasm: Reassembler,
    table: Arc<InboundTable>,
    /// By address and by tag; boxed: a slot costs a pointer and its generation, not a whole
    /// `Ue` (about 1 KB: its stack, smoltcp's `Interface` in it).
    ues: Ues<Ue>,
    timers: TimerWheel<UeTag>,
    events: EventSink,
    commands: Receiver<WorkerCommand>,
    counters: Arc<WorkerCounters>,
    rx: Vec<PacketBuf>,
    /// What the first pass decided for each frame of the burst (kept for its capacity).
    verdicts: Vec<ingress::Verdict>,
    due: Vec<(UeTag, Instant)>,
    /// UEs to poll in this loop turn, each once ([`Ue::woken`]): those a packet or command
    /// gave work, kept off the timer wheel (its entry and a wheel slot's cache line per
    /// packet).
    woken: Vec<UeTag>,
    /// [`Worker::woken`] while its UEs are polled (kept for its capacity).
    polling: Vec<UeTag>,
    stack_events: Vec<WorkerEvent>,
    /// The other workers of the port (none: this worker owns every UE).
    peers: Option<Peers>,
    /// The unprotected SIP port's use summed over the UEs (see [`SipPortLimits`]).
    sip_use: SipPortUse,
}

impl<Q: PortQueue> core::fmt::Debug for Worker<Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.cfg.id)
            .field("ues", &self.ues.len())
            .finish_non_exhaustive()
    }
}

impl<Q: PortQueue> Worker<Q> {
    /// A worker on `queue`, reading inbound SAs from `table`, sending events on `events` (a
    /// channel, or the slowpath shards' [`EventSink`]) and taking commands from `commands`.
    pub fn new(
        cfg: WorkerConfig,
        queue: Q,
        table: Arc<InboundTable>,
        events: impl Into<EventSink>,
        commands: Receiver<WorkerCommand>,
        now: Instant,
    ) -> Self {
        let counters = Arc::<WorkerCounters>::default();
        let mut link = Link::new(&cfg, queue, counters.clone());
        // The SA slabs' segments are first touched by a helper thread, not in an install.
        link.sas.keep_spare_segments();
        // Inbound SAs in the cells of their SPIs' table slots, found from the SPI.
        link.sas
            .index_inbound_by_spi(table.layout(), table.capacity());
        Worker {
            link,
            reasm: Reassembler::new(cfg.reasm),
            timers: TimerWheel::new(cfg.timer_tick, cfg.timer_slots, now),
            rx: Vec::with_capacity(cfg.burst),
            verdicts: Vec::with_capacity(cfg.burst),
            cfg,
            table,
            ues: Ues::new(),
            events: events.into(),
            commands,
            counters,
            due: Vec::new(),
            woken: Vec::new(),
            polling: Vec::new(),
            stack_events: Vec::new(),
            peers: None,
            sip_use: SipPortUse::default(),
        }
    }

    /// Makes this worker one of several on a port: a UE belongs to worker
    /// `steering.queue_for_ue(ue)` (the port's own steering); frames of UEs owned by another
    /// worker are handed to it through `handoff`, and neighbours learned here are told to
    /// their owner (gateways to every worker).
    pub fn with_peers(
        mut self,
        steering: akagate_sys::steer::Steering,
        handoff: Arc<Handoff>,
    ) -> Self {
        self.peers = Some(Peers { steering, handoff });
        self
    }

    /// The worker's counters (shareable with stats readers).
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// Makes `n` TCP sockets with the stack configuration's buffers, first touched now, the
    /// spares of the calling thread (which must be the one that runs this worker: its stacks
    /// take their sockets from their thread's spares), so the listeners and connections of
    /// the next `n` UEs cost no allocation or page fault inside a registration
    /// ([`crate::stack::reserve_spare_sockets`]). For a worker sized for a known number of
    /// UEs, called once before its loop; a connection holds that memory anyway once its UE is
    /// registered. Returns the sockets made.
    pub fn reserve_sockets(&mut self, n: usize) -> usize {
        let s = &self.cfg.stack;
        crate::stack::reserve_spare_sockets(n, s.tcp_rx_buf, s.tcp_tx_buf)
    }

    /// True once the SA slabs' spare segments, made by helper threads from the start, are
    /// ready (a benchmark waits for it so that this constant reserve counts as fixed memory).
    pub fn sa_spares_ready(&self) -> bool {
        self.link.sas.spares_ready()
    }

    /// Number of UE stacks held.
    pub fn ue_count(&self) -> usize {
        self.ues.len()
    }

    /// When a stack's deadline may next come due, looking no further than `until` (`None`:
    /// none by then); an early answer (a stale entry), never a late one. For an idle
    /// worker's sleep ([`TimerWheel::next_due`]); valid after a [`Worker::run_once`] that
    /// did no work (no stack is woken then).
    pub fn next_due(&self, until: Instant) -> Option<Instant> {
        self.timers.next_due(until)
    }

    /// TCP connections to the unprotected SIP port and how many of them are half-open, and
    /// the stacks of sources without an SA set, as the limits count them.
    pub fn sip_port_use(&self) -> (usize, usize, usize) {
        let u = self.sip_use;
        (u.conns, u.half_open, u.unregistered)
    }

    /// [`Worker::sip_port_use`] counted afresh over every UE (the kept sums must equal it
    /// after every loop turn; the fuzz harness checks that).
    pub fn sip_port_use_recounted(&self) -> (usize, usize, usize) {
        let mut u = SipPortUse::default();
        for ue in self.ues.values() {
            u.add(SipPortUse::of(ue, self.cfg.sip_port));
        }
        (u.conns, u.half_open, u.unregistered)
    }

    /// True if a stack exists for `ue`.
    pub fn has_ue(&self, ue: &IpAddr) -> bool {
        self.ues.contains_key(ue)
    }

    /// One loop iteration: commands, one rx burst, due stacks, tx. Returns the amount of work
    /// done (frames + commands + stacks polled); 0 means idle.
    pub fn run_once(&mut self, now: Instant) -> usize {
        let t0 = phases::stamp();
        let mut work = self.run_commands(now);
        work += self.handed_in(now);
        work += self.rx_burst(now);
        let t1 = phases::stamp();
        let polled = self.poll_due(now);
        if polled > 0 {
            phases::note(phases::Phase::TurnPolls, t1);
        }
        work += polled;
        let t2 = phases::stamp();
        self.link.flush_encap(now);
        self.link.release_pending(now);
        self.link.l2.maintain(now, &mut self.link.ctrl);
        self.link.flush_ctrl();
        self.link.tx_flush();
        self.publish_counters();
        if work > 0 {
            phases::note(phases::Phase::Turn, t0);
            phases::note(phases::Phase::TurnTail, t2);
        }
        work
    }

    /// Polls every stack whose deadline has come, forwarding events and output.
    fn poll_due(&mut self, now: Instant) -> usize {
        let ues = &self.ues;
        self.timers.expire(now, &mut self.due, |tag, at| {
            ues.at(*tag).is_some_and(|u| u.timer_at == Some(at))
        });
        let mut n = 0;
        // Most turns find no deadline due and no UE woken: nothing taken, drained or swapped.
        if !self.due.is_empty() {
            let mut due = std::mem::take(&mut self.due);
            for (tag, at) in due.drain(..) {
                n += usize::from(self.poll_ue(tag, Some(at), now));
            }
            self.due = due;
        }
        if self.woken.is_empty() {
            return n;
        }
        // Then the UEs woken by this turn's packets and commands (a UE polled above already
        // is skipped: its flag is clear).
        let mut polling = std::mem::take(&mut self.polling);
        std::mem::swap(&mut polling, &mut self.woken);
        for tag in polling.drain(..) {
            n += usize::from(self.poll_ue(tag, None, now));
        }
        self.polling = polling;
        n
    }

    /// Runs one UE's stack, sends its output, reschedules it or frees it: for a wheel entry
    /// (`at`) if it is the UE's live deadline, for an entry of [`Worker::woken`] (`None`) if
    /// the UE was not polled since it was woken. Returns whether it ran (false: a stale
    /// entry, or the UE is gone).
    fn poll_ue(&mut self, tag: UeTag, at: Option<Instant>, now: Instant) -> bool {
        let Some(ue) = self.ues.at_mut(tag) else {
            return false;
        };
        match at {
            Some(at) if ue.timer_at == Some(at) => ue.timer_at = None,
            None if ue.woken => {}
            _ => return false,
        }
        ue.woken = false;
        let t0 = phases::stamp();
        inc(&self.counters.stack_polls);
        let deadlines = sip_deadlines(&self.cfg.sip_limits, ue);
        let ex = ue.stack.expire_conns(self.cfg.sip_port, now, deadlines);
        add(&self.counters.sip_conns_handshake_timeout, ex.handshake);
        add(&self.counters.sip_conns_message_timeout, ex.message);
        add(&self.counters.sip_conns_idle_timeout, ex.idle);
        phases::note(phases::Phase::PollDeadlines, t0);
        let mut sink = self.link.sink(&mut ue.sa_sets, now);
        ue.stack.poll_with(now, &mut self.stack_events, &mut sink);
        drop(sink);
        let t1 = phases::stamp();
        count_stack(&self.counters, &mut ue.stack);
        let drain_next = Self::finish_drains(
            ue,
            &self.counters,
            &mut self.link.sas,
            now,
            &mut self.stack_events,
        );
        if ue.sa_sets.is_empty() && ue.stack.is_idle() {
            // Its entries left in the wheel find no UE: stale.
            if let Some(ue) = self.ues.remove_at(tag) {
                self.sip_use.sub(ue.sip_use);
            }
            inc(&self.counters.ues_freed);
        } else {
            let at = recount_and_deadline(&mut self.sip_use, ue, &self.cfg, now, drain_next);
            rearm(&mut self.timers, ue, at);
        }
        self.forward_events();
        phases::note(phases::Phase::PollAfter, t1);
        phases::note(phases::Phase::Poll, t0);
        true
    }

    /// Drops the draining SA sets of `ue` whose bytes have all left (nothing queued on their
    /// flows after this poll) or whose drain time is up; returns the earliest deadline of
    /// those that remain. Called after a poll, so everything queued before the removal went
    /// through egress at least once.
    ///
    /// A dropped set takes its flows with it: TCP connections between its port pairs that no
    /// remaining set protects are discarded without a segment (there is no SA left to send a
    /// FIN, RST or retransmission through, TS 33.203 7.4/7.5), so nothing of theirs tries to
    /// leave afterwards and the stack can be freed; ports no remaining set protects are
    /// unlistened, dropping their UDP sockets and queued datagrams.
    fn finish_drains(
        ue: &mut Ue,
        counters: &WorkerCounters,
        sas: &mut WorkerSas,
        now: Instant,
        events: &mut Vec<WorkerEvent>,
    ) -> Option<Instant> {
        let Ue { stack, sa_sets, .. } = ue;
        let mut next: Option<Instant> = None;
        let mut dropped: Vec<[(u16, u16); 2]> = Vec::new();
        let mut i = 0;
        while let Some(s) = sa_sets.get(i) {
            let Some(until) = s.drain_until else {
                i += 1;
                continue;
            };
            let queued =
                stack.queued_bytes(s.port_ps, s.port_uc) + stack.queued_bytes(s.port_pc, s.port_us);
            if queued == 0 || now >= until {
                inc(if queued == 0 {
                    &counters.sa_sets_drained
                } else {
                    &counters.sa_drain_timeouts
                });
                dropped.push([(s.port_ps, s.port_uc), (s.port_pc, s.port_us)]);
                // The set is gone: its SAs leave this worker's slabs now.
                sa_sets.remove(i).release(sas);
                continue;
            }
            next = Some(next.map_or(until, |n| n.min(until)));
            i += 1;
        }
        for (local, peer) in dropped.into_iter().flatten() {
            if !sa_sets.iter().any(|s| s.protects_pair(local, peer)) {
                let n = stack.discard_flows(local, peer, events);
                add(&counters.sa_conns_discarded, n as u64);
            }
            if !sa_sets.iter().any(|s| s.is_protected_port(local)) {
                stack.unlisten(local);
            }
        }
        next
    }

    /// Sends collected stack events to the slowpath. Called every loop turn and after every
    /// poll, most of which report nothing: the check is inlined, the sending is not.
    #[inline]
    fn forward_events(&mut self) {
        if !self.stack_events.is_empty() {
            self.send_events();
        }
    }

    /// [`Worker::forward_events`] once there is something to send.
    fn send_events(&mut self) {
        for ev in self.stack_events.drain(..) {
            if matches!(ev, WorkerEvent::Sip(_)) {
                inc(&self.counters.sip_in);
            }
            if self.events.try_send(ev).is_err() {
                inc(&self.counters.drop_event_queue_full);
            }
        }
    }

    /// Copies reassembly and link-layer counters into the shared counters.
    fn publish_counters(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let r = self.reasm.counters();
        self.counters.drop_reasm_timeout.store(r.timeouts, Relaxed);
        self.counters.drop_reasm_evicted.store(r.evicted, Relaxed);
        self.counters.reasm_completed.store(r.completed, Relaxed);
        let l = self.link.l2.counters();
        self.counters.arp_replies.store(l.arp_replies, Relaxed);
        self.counters.nd_replies.store(l.nd_replies, Relaxed);
        self.counters.solicitations.store(l.solicitations, Relaxed);
        let g = self.link.l2.gateway_counters();
        self.counters.gateway_probes.store(g.probes, Relaxed);
        self.counters
            .gateway_probe_failures
            .store(g.probe_failures, Relaxed);
        self.counters
            .gateway_unreachable
            .store(g.unreachable, Relaxed);
        self.counters
            .gateways_unresolved
            .store(g.unresolved, Relaxed);
    }
}

/// The deadlines of `ue`'s connections to the unprotected SIP port: the idle one only while
/// it has no SA set (a registered UE's connection there is its own business).
fn sip_deadlines(l: &SipPortLimits, ue: &Ue) -> ConnDeadlines {
    ConnDeadlines {
        message: l.message_deadline,
        idle: ue.sa_sets.is_empty().then_some(l.idle_deadline),
    }
}

/// Adds a stack's drop counters to the worker's.
fn count_stack(counters: &WorkerCounters, stack: &mut UeStack) {
    let sc = stack.take_counters();
    add(&counters.drop_framing, sc.framing_errors);
    add(&counters.drop_tls, sc.tls_errors);
    add(&counters.conns_replaced, sc.conns_replaced);
    add(&counters.drop_conn_limit, sc.conn_limit);
    add(&counters.drop_udp_queue_full, sc.udp_queue_full);
    add(&counters.drop_checksum, sc.bad_checksum);
}

/// The record of `ue` (made for `local` if `create` allows), or `None`; over the worker's
/// parts, so the caller may borrow the others. With `tag` (an ESP packet's SA entry names its
/// UE, or the caller's own look-up found it) the record is found without the map; a tag that
/// names no UE at `ue` is not trusted and the map is asked.
#[allow(clippy::too_many_arguments)]
fn ue_entry_in<'u>(
    ues: &'u mut Ues<Ue>,
    cfg: &WorkerConfig,
    counters: &WorkerCounters,
    ue: IpAddr,
    local: IpAddr,
    tag: Option<UeTag>,
    create: bool,
    now: Instant,
) -> Option<&'u mut Ue> {
    let found = match tag {
        Some(t) if ues.at_of(t, ue).is_some() => Some(t),
        _ => ues.find(&ue),
    };
    let u = match found {
        Some(t) => ues.at_mut(t)?,
        None if !create => {
            inc(&counters.drop_no_ue);
            return None;
        }
        None if ues.len() >= cfg.max_ues => {
            inc(&counters.drop_ue_limit);
            return None;
        }
        None => {
            let mut stack = UeStack::new(cfg.stack.clone(), local, ue, now)?;
            // One worker per thread: the thread's spare sockets are this worker's.
            stack.recycle_sockets();
            stack.listen(cfg.sip_port, true, true);
            if let Some(l) = &cfg.tls {
                stack.listen_tls(l.clone());
            }
            inc(&counters.ues);
            ues.insert_with(ue, |tag| {
                Box::new(Ue {
                    stack,
                    sa_sets: UeEgress::default(),
                    sip_use: SipPortUse::default(),
                    timer_at: None,
                    woken: false,
                    tag,
                })
            })
            .1
        }
    };
    if u.stack.local() != local {
        inc(&counters.drop_local_address);
        return None;
    }
    Some(u)
}

#[cfg(test)]
mod tests {
    /// The UE record holds its first SA set and its next hop inline: it must stay within the
    /// lines its prefetch asks for (`Ue::prefetch` walks the whole record) and the memory
    /// per UE (docs/ARCHITECTURE.md, *Memory per registered UE*).
    #[test]
    fn the_ue_record_stays_small() {
        let ue = core::mem::size_of::<super::Ue>();
        let stack = core::mem::size_of::<crate::stack::UeStack>();
        let sets = core::mem::size_of::<super::UeEgress>();
        eprintln!("Ue {ue} B, UeStack {stack} B, UeEgress {sets} B");
        assert!(sets <= 128, "UeEgress {sets} B");
        assert!(ue <= stack + sets + 64, "Ue {ue} B");
        // 17 lines (1 032 B in round 16: `UeStack` 864, `UeEgress`, then `SaSets`, 120).
        assert!(ue <= 17 * 64, "Ue {ue} B");
    }
}
