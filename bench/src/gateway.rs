//! An in-process P-CSCF for tests and the memory backend of `akabench`: one fast-path
//! [`Worker`] and the slowpath [`Core`] stepped in a single thread over a port queue.
//!
//! It wires the real components exactly as the daemon does (worker events into the core,
//! core actions into the worker, core timeouts), but without threads, so scenarios are
//! deterministic. It stands in until the daemon's `Daemon::start_with_port` is available.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use akagate_fastpath::ipc::{WorkerCommand, WorkerEvent};
use akagate_fastpath::l2::L2Config;
use akagate_fastpath::reasm::ReasmConfig;
use akagate_fastpath::sad::SadError;
use akagate_fastpath::stack::StackConfig;
use akagate_fastpath::worker::{InboundTable, SipPortLimits, Worker, WorkerConfig, WorkerCounters};
use akagate_slowpath::hss::Hss;
use akagate_slowpath::{Core, CoreConfig};
use akagate_sys::PortQueue;
use crossbeam_channel::{bounded, Receiver, Sender};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr, Ipv6Cidr};

/// What the in-process P-CSCF is configured with.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Our Ethernet address.
    pub mac: EthernetAddress,
    /// Our IPv4 address and on-link prefix.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// Our IPv6 address and on-link prefix.
    pub ipv6: Option<(Ipv6Addr, u8)>,
    /// Slowpath configuration (sec-agree profile, ports, lifetimes).
    pub core: CoreConfig,
    /// UE stacks the worker holds at most.
    pub max_ues: usize,
    /// Per-UE stack sizes.
    pub stack: StackConfig,
    /// Capacity of the worker -> slowpath event queue.
    pub event_queue: usize,
}

impl GatewayConfig {
    /// 10.0.0.1/16 and fd00::1/64 on MAC 02:00:00:00:00:0a, default core profile.
    pub fn new(max_ues: usize) -> Self {
        GatewayConfig {
            mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]),
            ipv4: Some((Ipv4Addr::new(10, 0, 0, 1), 16)),
            ipv6: Some((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), 64)),
            core: CoreConfig::default(),
            max_ues,
            stack: StackConfig::default(),
            event_queue: 64 * 1024,
        }
    }
}

/// The P-CSCF: a worker over a port queue and the slowpath core, stepped together.
pub struct InProcessGateway<Q: PortQueue> {
    worker: Worker<Q>,
    core: Core,
    events: Receiver<WorkerEvent>,
    /// Kept so the worker's command channel stays open; commands are executed directly.
    _commands: Sender<WorkerCommand>,
    /// SA-set removals held until the worker has run once more, so the messages queued
    /// before them (e.g. the 200 OK to a de-REGISTER) leave through the set first
    /// (`WorkerCommand::RemoveSaSet`: "once its last message was sent").
    deferred: Vec<WorkerCommand>,
    /// The commands one step's slowpath work produced, executed into the worker in order.
    /// Kept across steps (and `deferred`'s drained through `ready`) so that no step frees a
    /// vector inside the worker's CPU window: a real worker takes its commands one by one
    /// from its channel and frees no batch of them.
    actions: Vec<WorkerCommand>,
    /// `deferred`'s commands due this step, drained into the worker.
    ready: Vec<WorkerCommand>,
    base: std::time::Instant,
    /// CPU time per side, when [`InProcessGateway::account_cpu`] turned it on.
    cpu: Option<StepCpu>,
}

/// CPU time of the calling thread spent in the worker (its loop iteration and the commands
/// run into it) and in the slowpath core (events, timeouts), over the steps that did work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepCpu {
    /// Worker: `run_once` and the commands executed into it.
    pub worker: std::time::Duration,
    /// Slowpath core: `handle`, `handle_timeout`, persistence acknowledgements.
    pub core: std::time::Duration,
    /// Steps that did work (idle steps are not counted: a real worker parks).
    pub busy_steps: u64,
    /// Allocation calls in the worker's part of those steps (0 unless the binary's global
    /// allocator is [`crate::alloccount::Counting`]).
    pub worker_allocations: u64,
    /// Allocation calls in the core's part of those steps.
    pub core_allocations: u64,
    /// Commands the core gave the worker in those steps.
    pub commands: u64,
}

impl<Q: PortQueue> core::fmt::Debug for InProcessGateway<Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InProcessGateway")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<Q: PortQueue> InProcessGateway<Q> {
    /// A P-CSCF on `queue` serving the subscribers of `hss`.
    pub fn new(cfg: GatewayConfig, hss: Hss, queue: Q, now: Instant) -> Result<Self, SadError> {
        // Each registration holds up to three sets (pending, active, old) of two inbound SPIs.
        let table = Arc::new(InboundTable::with_capacity(
            (cfg.max_ues * 6 + 1024).next_power_of_two(),
        )?);
        let (ev_tx, ev_rx) = bounded(cfg.event_queue);
        let (cmd_tx, cmd_rx) = bounded(1);
        let wcfg = WorkerConfig {
            id: 0,
            l2: L2Config {
                mac: cfg.mac,
                ipv4: cfg
                    .ipv4
                    .iter()
                    .map(|(a, p)| Ipv4Cidr::new(*a, *p))
                    .collect(),
                ipv6: cfg
                    .ipv6
                    .iter()
                    .map(|(a, p)| Ipv6Cidr::new(*a, *p))
                    .collect(),
                gateway_v4: None,
                gateway_v6: None,
                routes: Vec::new(),
                max_neighbors: cfg.max_ues + 64,
                neighbor_ttl: Duration::from_secs(3600),
                solicit_retry: Duration::from_millis(500),
            },
            stack: cfg.stack.clone(),
            reasm: ReasmConfig::default(),
            sip_port: 5060,
            tls: None,
            burst: 64,
            commands_per_loop: 64,
            max_ues: cfg.max_ues,
            link_mtu: 1500,
            timer_tick: Duration::from_millis(1),
            timer_slots: 4096,
            // The bench opens its UEs' registrations at once: the SIP port's limits
            // follow the UE count instead of the daemon's defaults.
            sip_limits: SipPortLimits {
                max_conns_per_source: 8,
                max_conns: cfg.max_ues.max(1),
                max_half_open: cfg.max_ues.max(1),
                max_unregistered: cfg.max_ues.max(1),
                ..SipPortLimits::default()
            },
        };
        let worker = Worker::new(wcfg, queue, table.clone(), ev_tx, cmd_rx, now);
        // As the daemon does: a CSPRNG seeded from the OS (one `getrandom` system call per
        // challenge and per tag with `OsRng` would be a cost the daemon does not have).
        let rng = Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_entropy());
        let core = Core::new(cfg.core, hss, table, rng);
        Ok(InProcessGateway {
            worker,
            core,
            events: ev_rx,
            _commands: cmd_tx,
            deferred: Vec::new(),
            actions: Vec::new(),
            ready: Vec::new(),
            base: std::time::Instant::now(),
            cpu: None,
        })
    }

    fn std_time(&self, now: Instant) -> std::time::Instant {
        self.base + std::time::Duration::from_micros(now.total_micros().max(0).unsigned_abs())
    }

    /// One round: the worker's loop iteration, then every event through the core, due core
    /// timeouts and the actions into the worker. Returns the work done (0: idle).
    pub fn step(&mut self, now: Instant) -> usize {
        let clock = self.cpu.is_some().then(crate::cputime::current_thread_cpu);
        let a0 = crate::alloccount::gateway_allocations();
        let mut work = self.worker.run_once(now);
        std::mem::swap(&mut self.deferred, &mut self.ready);
        for c in self.ready.drain(..) {
            self.worker.command(c, now);
        }
        let after_worker = clock.map(|_| crate::cputime::current_thread_cpu());
        let a1 = crate::alloccount::gateway_allocations();
        let t = self.std_time(now);
        let mut actions = std::mem::take(&mut self.actions);
        while let Ok(ev) = self.events.try_recv() {
            work += 1;
            actions.extend(self.core.handle(ev, t));
        }
        if self.core.poll_timeout().is_some_and(|d| d <= t) {
            actions.extend(self.core.handle_timeout(t));
        }
        // The gateway keeps no SQN state on disk: an HSS without one queues no records and
        // holds no challenge; any record is acknowledged as it comes.
        let last = std::iter::from_fn(|| self.core.poll_persist()).last();
        if let Some(r) = last {
            actions.extend(self.core.on_durable(r.ticket()));
        }
        let after_core = clock.map(|_| crate::cputime::current_thread_cpu());
        let a2 = crate::alloccount::gateway_allocations();
        let commands = actions.len() as u64;
        for a in actions.drain(..) {
            match a {
                WorkerCommand::RemoveSaSet { .. } => self.deferred.push(a),
                a => self.worker.command(a, now),
            }
        }
        self.actions = actions;
        if let (Some(cpu), Some(t0), Some(t1), Some(t2)) =
            (&mut self.cpu, clock, after_worker, after_core)
        {
            if work > 0 {
                let t3 = crate::cputime::current_thread_cpu();
                let a3 = crate::alloccount::gateway_allocations();
                cpu.worker += t1.saturating_sub(t0) + t3.saturating_sub(t2);
                cpu.core += t2.saturating_sub(t1);
                cpu.busy_steps += 1;
                cpu.worker_allocations += (a1 - a0) + (a3 - a2);
                cpu.core_allocations += a2 - a1;
                cpu.commands += commands;
            }
        }
        work
    }

    /// Starts (or stops) counting the CPU time of each side ([`StepCpu`]); costs four
    /// thread-clock reads per step.
    pub fn account_cpu(&mut self, on: bool) {
        self.cpu = on.then(StepCpu::default);
    }

    /// The CPU time counted since [`InProcessGateway::account_cpu`] (zero when off).
    pub fn cpu(&self) -> StepCpu {
        self.cpu.unwrap_or_default()
    }

    /// The slowpath core (registrations, HSS).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// True once the worker's spare SA segments (made off its core from the start) are ready.
    pub fn sa_spares_ready(&self) -> bool {
        self.worker.sa_spares_ready()
    }

    /// Makes `n` spare TCP sockets for the worker's stacks on the calling thread (the one
    /// that steps this gateway), first touched now ([`Worker::reserve_sockets`]). Returns the
    /// sockets made.
    pub fn reserve_sockets(&mut self, n: usize) -> usize {
        self.worker.reserve_sockets(n)
    }

    /// The worker's counters (drops by reason, ESP in/out, ...).
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        self.worker.counters()
    }
}

/// Spare TCP sockets a worker makes at start for `n` UEs
/// ([`InProcessGateway::reserve_sockets`]; the mem bench's and akabench's memory backend's
/// sizing): the most its UEs hold at once, and 16 more. A registered UE holds one connection; a
/// registration in flight holds two from its protected SYN until the UE closes the
/// unprotected one at its end, so with `in_flight` registrations open the peak is `n +
/// in_flight` (a reserve of `n` alone left the last registrations' listeners to a `calloc`
/// of fresh heap: docs/BENCHMARKS.md, *Worker per registration, round 9*). At most 2^17
/// (600 MB), or `AKG_MEM_RESERVE` (0: none, the sockets allocated as the UEs come).
pub(crate) fn socket_reserve(n: usize, in_flight: usize) -> usize {
    std::env::var("AKG_MEM_RESERVE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((n + in_flight.min(n) + 16).min(1 << 17))
}
