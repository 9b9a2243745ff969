//! The `akabench` load run: N UEs register (at most `concurrency` at a time), then M calls
//! are placed between them, optionally followed by a re-registration of every UE (new
//! Security-Client, new SAs, TS 33.203 7.4) and by de-registration; live progress, a report.
//!
//! The memory backend runs the in-process P-CSCF and the UEs in one thread over an in-memory
//! Ethernet pair, on real (monotonic) time; the AF_PACKET and DPDK backends drive the UEs over
//! an interface (a kernel one, or an ethdev port of DPDK's EAL) towards an external akagate.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use akagate_slowpath::hss::{Hss, SubscriberRecord};
use akagate_sys::mempair::{mem_pair, MemPairConfig};
use akagate_sys::{Port, PortQueue};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

use crate::fleet::Fleet;
use crate::gateway::{GatewayConfig, InProcessGateway};
use crate::report::{Report, Stats};
use crate::ue::usim::usim_for;
use crate::ue::{Ue, UeConfig, UeEvent};

/// Which packet I/O the UEs use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The akagate daemon started in-process (its worker and slowpath threads) on the memory
    /// backend, with the subscriber file at this path.
    Memory {
        /// The subscriber file the daemon loads.
        subscribers: std::path::PathBuf,
        /// Worker threads.
        workers: usize,
        /// Slowpath shards (`[cores] slowpath` with this many entries; 1: one slowpath).
        slowpath_shards: usize,
        /// Where the UE thread and the daemon's threads run (all unpinned by default).
        placement: crate::placement::Placement,
        /// Workers busy-poll as in production (`IdlePolicy::BusyPoll`) instead of backing
        /// off when idle: a core each, so meant with the workers pinned alone.
        busy_poll: bool,
    },
    /// The fast-path worker and slowpath core stepped inline in this thread (no threads,
    /// deterministic; see [`crate::gateway`]).
    Inline,
    /// AF_PACKET on an interface, towards an external P-CSCF at `pcscf` (and more on the
    /// same link, see [`pcscf_of`]).
    AfPacket {
        /// Interface name.
        iface: String,
        /// The P-CSCF's address.
        pcscf: IpAddr,
        /// Further P-CSCFs of the same link (scale-out: several akagate nodes, one core).
        more_pcscfs: Vec<IpAddr>,
    },
    /// A DPDK ethdev port (cargo feature `dpdk`), towards an external P-CSCF at `pcscf`.
    Dpdk {
        /// EAL arguments and the port to open.
        port: DpdkPortSpec,
        /// The P-CSCF's address.
        pcscf: IpAddr,
        /// Further P-CSCFs of the same link.
        more_pcscfs: Vec<IpAddr>,
    },
}

/// How the UEs' DPDK port is opened: the EAL arguments, verbatim, and the ethdev to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkPortSpec {
    /// EAL arguments after `argv[0]`, e.g. `--no-huge --no-pci --vdev=net_af_packet0,iface=veth1`.
    pub eal_args: Vec<String>,
    /// The ethdev's name as the EAL knows it (`net_af_packet0`, `0000:03:00.0`).
    pub device: String,
}

impl DpdkPortSpec {
    /// From a command line's `--eal-args` (split at whitespace, no shell quoting) and an
    /// optional device name; without one the device is the first one the EAL arguments create
    /// or allow, as the daemon's `port.eal-args` picks it ([`akagate::daemon::dpdk_device`]:
    /// `net_af_packet0` of `--vdev=net_af_packet0,iface=veth1`, `0000:03:00.0` of
    /// `-a 0000:03:00.0`).
    pub fn new(eal_args: &str, device: Option<&str>) -> Result<Self, String> {
        let eal_args: Vec<String> = eal_args.split_whitespace().map(str::to_owned).collect();
        let device = match device {
            Some(d) if !d.is_empty() => d.to_owned(),
            _ => akagate::daemon::dpdk_device(&eal_args).ok_or(
                "the EAL arguments name no device (--vdev=NAME,... or -a PCI); say which with \
                 --dpdk-port NAME",
            )?,
        };
        Ok(DpdkPortSpec { eal_args, device })
    }

    /// Starts the EAL with `program` as `argv[0]` and these arguments (once per process; the
    /// same arguments again are accepted) and opens [`Self::device`] with one queue,
    /// promiscuous, so every UE's MAC address is received. The port is stopped and closed
    /// when the queue is dropped; a closed virtual device cannot be opened again in the
    /// same process.
    #[cfg(feature = "dpdk")]
    pub fn open(
        &self,
        program: &str,
    ) -> Result<akagate_sys::dpdk::DpdkQueue, akagate_sys::IoError> {
        use akagate_sys::dpdk::{eal_init, DpdkConfig, DpdkPort};
        let mut args = Vec::with_capacity(self.eal_args.len() + 1);
        args.push(program.to_owned());
        args.extend(self.eal_args.iter().cloned());
        eal_init(&args)?;
        let mut port = DpdkPort::open(&DpdkConfig::new(&self.device))?;
        port.take_queues()
            .pop()
            .ok_or_else(|| akagate_sys::IoError::Config(format!("{}: no queue", self.device)))
    }
}

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Subscribers (the first `ues` are used).
    pub subscribers: Vec<SubscriberRecord>,
    /// Number of UEs.
    pub ues: usize,
    /// Number of calls.
    pub calls: usize,
    /// SIP transport.
    pub transport: Transport,
    /// Offered integrity algorithm.
    pub alg: AuthAlg,
    /// Offered encryption algorithm.
    pub ealg: EncrAlg,
    /// IPv6 instead of IPv4.
    pub ipv6: bool,
    /// Registrations / calls in flight at most.
    pub concurrency: usize,
    /// Call hold time.
    pub hold: Duration,
    /// Re-register every UE once after the calls (and by itself at half the granted
    /// Expires while the run lasts).
    pub reregister: bool,
    /// De-register every UE at the end.
    pub deregister: bool,
    /// Give up after this long.
    pub timeout: std::time::Duration,
    /// Packet I/O.
    pub backend: Backend,
    /// Print a live progress line to stderr.
    pub progress: bool,
}

/// Open-loop arrivals: registrations and calls start at fixed times (`k / rate` after the
/// phase starts) whatever the gateway's latency, and each transaction's latency counts from
/// its scheduled time, so a slow gateway shows as latency rather than as a lower offered load
/// (no coordinated omission). `None` keeps the closed loop (`concurrency` in flight).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpenLoop {
    /// Registrations started per second.
    pub reg_rate: Option<f64>,
    /// Calls started per second.
    pub call_rate: Option<f64>,
}

impl OpenLoop {
    /// The scheduled start of arrival `k` of a phase that started at `t0`.
    fn scheduled(t0: Instant, k: usize, rate: f64) -> Instant {
        t0 + Duration::from_micros((k as f64 * 1e6 / rate) as u64)
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Fewer subscribers than UEs, bad keys, etc.
    #[error("{0}")]
    Setup(String),
}

/// The address of UE `i` (IPv4 10.1.0.0/16 upwards, IPv6 fd00::1:0/112 upwards).
pub fn ue_addr(i: usize, v6: bool) -> IpAddr {
    let n = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(2);
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            1,
            (n >> 16) as u16,
            (n & 0xffff) as u16,
        ))
    } else {
        let [_, b, c, d] = n.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(10, 1 + b, c, d))
    }
}

fn ue_mac(i: usize) -> EthernetAddress {
    let n = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
    EthernetAddress([0x02, 0x01, n[0], n[1], n[2], n[3]])
}

/// Phases of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Register,
    Call,
    Reregister,
    Deregister,
    Done,
}

/// Drives the fleet (and the in-process gateway, if any) until done or timed out.
struct Driver {
    cfg: LoadConfig,
    stats: Stats,
    phase: Phase,
    next_reg: usize,
    reg_in_flight: usize,
    reg_done: usize,
    next_call: usize,
    calls_in_flight: usize,
    calls_done: usize,
    next_rereg: usize,
    rereg_in_flight: usize,
    rereg_done: usize,
    next_dereg: usize,
    dereg_in_flight: usize,
    dereg_done: usize,
    registered: Vec<bool>,
    t0: std::time::Instant,
    reg_s: f64,
    call_start: Option<std::time::Instant>,
    call_s: f64,
    last_progress: std::time::Instant,
    pcscf_counters: BTreeMap<String, u64>,
    /// Stale challenges counted by the UEs' USIMs (summed when the run ends).
    stale_challenges: u64,
    open: OpenLoop,
    reg_t0: Option<Instant>,
    call_t0: Option<Instant>,
    /// The in-process daemon's threads, if any: their CPU clocks are read when the
    /// registrations start and when the last one ends ([`Driver::reg_cpu`]).
    daemon_threads: Option<crate::cputime::DaemonThreads>,
    /// The daemon threads' clocks at the start and at the end of the registration phase.
    reg_cpu: (
        Option<crate::cputime::DaemonCpu>,
        Option<crate::cputime::DaemonCpu>,
    ),
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_micros(i64::try_from(self.t0.elapsed().as_micros()).unwrap_or(i64::MAX))
    }

    fn on_event(&mut self, i: usize, ev: &UeEvent) {
        self.stats.record(ev);
        match ev {
            UeEvent::Registered => {
                self.registered[i] = true;
                self.reg_in_flight = self.reg_in_flight.saturating_sub(1);
                self.reg_done += 1;
            }
            UeEvent::RegistrationFailed(_) if self.phase == Phase::Register => {
                self.reg_in_flight = self.reg_in_flight.saturating_sub(1);
                self.reg_done += 1;
            }
            UeEvent::Reregistered | UeEvent::RegistrationFailed(_)
                if self.phase == Phase::Reregister =>
            {
                self.rereg_in_flight = self.rereg_in_flight.saturating_sub(1);
                self.rereg_done += 1;
            }
            UeEvent::RegistrationFailed(_) | UeEvent::Deregistered
                if self.phase == Phase::Deregister =>
            {
                self.dereg_in_flight = self.dereg_in_flight.saturating_sub(1);
                self.dereg_done += 1;
            }
            UeEvent::CallEnded(_) | UeEvent::CallFailed(..) => {
                self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
                self.calls_done += 1;
            }
            _ => {}
        }
    }

    /// Starts new work within the concurrency limit and moves between phases.
    fn feed<Q: PortQueue>(&mut self, fleet: &mut Fleet<Q>, now: Instant) {
        let n = self.cfg.ues;
        match self.phase {
            Phase::Register => {
                let open = self.open.reg_rate.filter(|r| *r > 0.0);
                if self.reg_t0.is_none() {
                    self.reg_cpu.0 = self.daemon_threads.as_ref().map(|t| t.sample());
                }
                let t0 = *self.reg_t0.get_or_insert(now);
                loop {
                    let at = match open {
                        Some(rate) => OpenLoop::scheduled(t0, self.next_reg, rate),
                        None if self.reg_in_flight < self.cfg.concurrency => now,
                        None => break,
                    };
                    if self.next_reg >= n || at > now {
                        break;
                    }
                    let i = self.next_reg;
                    self.next_reg += 1;
                    if let Some(ue) = fleet.ue_mut(i) {
                        // Open loop: the UE times the transaction from its scheduled start.
                        match ue.register(at) {
                            Ok(()) => self.reg_in_flight += 1,
                            Err(e) => {
                                self.stats.fail(&format!("register: {e}"));
                                self.reg_done += 1;
                            }
                        }
                    }
                }
                if self.reg_done == n {
                    self.reg_cpu.1 = self.daemon_threads.as_ref().map(|t| t.sample());
                    self.reg_s = self.t0.elapsed().as_secs_f64();
                    self.phase = Phase::Call;
                    self.call_start = Some(std::time::Instant::now());
                }
            }
            Phase::Call => {
                // Call k: UE k % n calls UE (k + n/2) % n; with concurrency <= n/2 no UE is
                // in two calls at once.
                let half = (n / 2).max(1);
                let limit = self.cfg.concurrency.min(half);
                let open = self.open.call_rate.filter(|r| *r > 0.0);
                let t0 = *self.call_t0.get_or_insert(now);
                while self.next_call < self.cfg.calls && n >= 2 {
                    let at = match open {
                        Some(rate) => OpenLoop::scheduled(t0, self.next_call, rate),
                        None if self.calls_in_flight < limit => now,
                        None => break,
                    };
                    if at > now {
                        break;
                    }
                    let k = self.next_call;
                    self.next_call += 1;
                    let (a, b) = (k % n, (k + half) % n);
                    if !(self.registered[a] && self.registered[b]) {
                        self.stats.fail("call_party_not_registered");
                        self.calls_done += 1;
                        self.stats.call_failures += 1;
                        continue;
                    }
                    let target = fleet.ue(b).map(|u| u.config().impu.clone());
                    let placed = match (target, fleet.ue_mut(a)) {
                        (Some(t), Some(ue)) => ue.call(&t, at).is_ok(),
                        _ => false,
                    };
                    if placed {
                        self.calls_in_flight += 1;
                    } else {
                        self.stats.fail("call_not_placed");
                        self.stats.call_failures += 1;
                        self.calls_done += 1;
                    }
                }
                if self.calls_done >= self.cfg.calls || n < 2 {
                    if n < 2 && self.cfg.calls > 0 {
                        self.stats.fail("calls_need_two_ues");
                    }
                    self.call_s = self.call_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
                    self.phase = self.after_calls();
                }
            }
            Phase::Reregister => {
                while self.rereg_in_flight < self.cfg.concurrency && self.next_rereg < n {
                    let i = self.next_rereg;
                    self.next_rereg += 1;
                    let started = self.registered[i]
                        && fleet.ue_mut(i).is_some_and(|ue| ue.reregister(now).is_ok());
                    if started {
                        self.rereg_in_flight += 1;
                    } else {
                        if self.registered[i] {
                            self.stats.fail("reregister_not_started");
                        }
                        self.rereg_done += 1;
                    }
                }
                if self.rereg_done == n {
                    self.phase = if self.cfg.deregister {
                        Phase::Deregister
                    } else {
                        Phase::Done
                    };
                }
            }
            Phase::Deregister => {
                while self.dereg_in_flight < self.cfg.concurrency && self.next_dereg < n {
                    let i = self.next_dereg;
                    self.next_dereg += 1;
                    let started = self.registered[i]
                        && fleet.ue_mut(i).is_some_and(|ue| ue.deregister(now).is_ok());
                    if started {
                        self.dereg_in_flight += 1;
                    } else {
                        self.dereg_done += 1;
                    }
                }
                if self.dereg_done == n {
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
    }

    /// The phase after the calls.
    fn after_calls(&self) -> Phase {
        if self.cfg.reregister {
            Phase::Reregister
        } else if self.cfg.deregister {
            Phase::Deregister
        } else {
            Phase::Done
        }
    }

    fn progress(&mut self) {
        if !self.cfg.progress
            || (self.last_progress != self.t0 && self.last_progress.elapsed().as_millis() < 250)
        {
            return;
        }
        self.last_progress = std::time::Instant::now();
        let t = self.t0.elapsed().as_secs_f64();
        eprint!(
            "\r[{t:7.2}s] registered {}/{} (failed {})  calls {}/{} (failed {})  rereg {}  dereg {}   ",
            self.stats.registered,
            self.cfg.ues,
            self.stats.registration_failures,
            self.stats.calls_completed,
            self.cfg.calls,
            self.stats.call_failures,
            self.rereg_done,
            self.stats.deregistered,
        );
        let _ = std::io::stderr().flush();
    }
}

/// The P-CSCF of UE `i` of `ues` among `pcscfs` (not empty). Calls go from UE k to UE
/// k + ues/2 (see [`Driver`]): UE k of the first half takes P-CSCF k mod m, UE h + k of the
/// second half P-CSCF (k + 1) mod m, so with two or more P-CSCFs every call crosses from
/// one node to another, and the callers are spread over all of them.
pub fn pcscf_of(i: usize, ues: usize, pcscfs: &[IpAddr]) -> IpAddr {
    let m = pcscfs.len().max(1);
    let half = ues / 2;
    let slot = match i.checked_sub(half) {
        Some(k) if half > 0 => (k + 1) % m,
        _ => i % m,
    };
    pcscfs[slot.min(pcscfs.len() - 1)]
}

fn build_fleet<Q: PortQueue>(
    cfg: &LoadConfig,
    q: Q,
    pcscfs: &[IpAddr],
) -> Result<Fleet<Q>, LoadError> {
    let mut fleet = Fleet::new(q);
    let now = Instant::from_micros(0);
    for (i, rec) in cfg.subscribers.iter().take(cfg.ues).enumerate() {
        let usim = usim_for(rec).map_err(|e| LoadError::Setup(e.to_string()))?;
        let impu = rec
            .impu
            .iter()
            .find(|u| u.starts_with("sip:"))
            .or(rec.impu.first())
            .cloned()
            .ok_or_else(|| LoadError::Setup(format!("{}: no IMPU", rec.impi)))?;
        let pcscf = pcscf_of(i, cfg.ues, pcscfs);
        let mut uc = UeConfig::new(ue_mac(i), ue_addr(i, cfg.ipv6), pcscf, &rec.impi, &impu);
        uc.prefix_len = if cfg.ipv6 { 64 } else { 8 };
        uc.transport = cfg.transport;
        uc.offers = vec![(cfg.alg, cfg.ealg)];
        uc.hold = Some(cfg.hold);
        uc.auto_reregister = cfg.reregister;
        let ue = Ue::new(uc, usim, now).map_err(|e| LoadError::Setup(e.to_string()))?;
        fleet.add(ue);
    }
    Ok(fleet)
}

fn params(cfg: &LoadConfig) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    p.insert("ues".into(), cfg.ues.to_string());
    p.insert("calls".into(), cfg.calls.to_string());
    p.insert(
        "transport".into(),
        format!("{:?}", cfg.transport).to_lowercase(),
    );
    p.insert("alg".into(), cfg.alg.token().into());
    p.insert("ealg".into(), cfg.ealg.token().into());
    p.insert("ip".into(), if cfg.ipv6 { "ipv6" } else { "ipv4" }.into());
    p.insert("concurrency".into(), cfg.concurrency.to_string());
    p.insert("hold_ms".into(), cfg.hold.total_millis().to_string());
    p.insert("reregister".into(), cfg.reregister.to_string());
    if let Backend::Memory {
        placement,
        busy_poll,
        ..
    } = &cfg.backend
    {
        p.insert("placement".into(), placement.describe());
        let idle = if *busy_poll { "busy-poll" } else { "adaptive" };
        p.insert("worker_idle".into(), idle.into());
    }
    p.insert(
        "backend".into(),
        match &cfg.backend {
            Backend::Memory {
                workers,
                slowpath_shards,
                ..
            } => {
                format!("memory (daemon, {workers} worker(s), {slowpath_shards} slowpath shard(s))")
            }
            Backend::Inline => "inline".into(),
            Backend::AfPacket { iface, .. } => format!("af_packet:{iface}"),
            Backend::Dpdk { port, .. } => format!("dpdk:{}", port.device),
        },
    );
    p
}

/// Runs the load (closed loop) and returns the report; `Err` only if the run could not be
/// set up.
pub fn run(cfg: LoadConfig) -> Result<Report, LoadError> {
    run_open(cfg, OpenLoop::default())
}

/// Runs the load with open-loop arrivals where `open` sets a rate.
pub fn run_open(cfg: LoadConfig, open: OpenLoop) -> Result<Report, LoadError> {
    if cfg.subscribers.len() < cfg.ues {
        return Err(LoadError::Setup(format!(
            "{} UEs requested but the subscriber file has {}",
            cfg.ues,
            cfg.subscribers.len()
        )));
    }
    let mut driver = Driver {
        stats: Stats::new(),
        phase: Phase::Register,
        next_reg: 0,
        reg_in_flight: 0,
        reg_done: 0,
        next_call: 0,
        calls_in_flight: 0,
        calls_done: 0,
        next_rereg: 0,
        rereg_in_flight: 0,
        rereg_done: 0,
        next_dereg: 0,
        dereg_in_flight: 0,
        dereg_done: 0,
        registered: vec![false; cfg.ues],
        t0: std::time::Instant::now(),
        reg_s: 0.0,
        call_start: None,
        call_s: 0.0,
        last_progress: std::time::Instant::now(),
        pcscf_counters: BTreeMap::new(),
        stale_challenges: 0,
        open,
        reg_t0: None,
        call_t0: None,
        daemon_threads: None,
        reg_cpu: (None, None),
        cfg,
    };
    match driver.cfg.backend.clone() {
        Backend::Memory {
            subscribers,
            workers,
            slowpath_shards,
            placement,
            busy_poll,
        } => {
            let dir = std::env::temp_dir().join(format!("akabench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| LoadError::Setup(e.to_string()))?;
            let n = driver.cfg.ues;
            let mut opts = crate::daemon::start_options(&dir);
            if busy_poll {
                opts.idle = akagate::IdlePolicy::BusyPoll;
            }
            // Each worker makes the spare TCP sockets its UEs hold at once before it runs,
            // as the in-process gateway does (`gateway::socket_reserve`): with the default
            // `[stack] socket-reserve` (1024) the later half of 2000 UEs allocated and
            // faulted in their sockets inside their registrations (round 19).
            let reserve =
                crate::gateway::socket_reserve(n.div_ceil(workers.max(1)), driver.cfg.concurrency);
            let shards = |c: &mut akagate::config::Config| {
                if slowpath_shards > 1 {
                    c.cores.slowpath = (0..slowpath_shards).collect();
                }
                c.stack.socket_reserve = reserve;
            };
            let started = crate::daemon::start_memory_daemon_opts(
                &dir,
                &subscribers,
                workers,
                n * 8,
                shards,
                opts,
            );
            let result = started.map_err(LoadError::Setup).and_then(|d| {
                let pcscf = if driver.cfg.ipv6 {
                    IpAddr::V6(crate::daemon::DAEMON_V6)
                } else {
                    IpAddr::V4(crate::daemon::DAEMON_V4)
                };
                // Issue 10: the slowpath threads' CPU time (per shard and summed), for the
                // CPU per registration and the per-shard scaling (bench/run.sh `shards`).
                let names: Vec<String> = match slowpath_shards {
                    0 | 1 => vec!["akagate-slowpath".into()],
                    n => (0..n).map(|k| format!("akagate-sp{k}")).collect(),
                };
                driver.daemon_threads =
                    Some(crate::cputime::DaemonThreads::find(&names, "akagate-w"));
                placement.apply().map_err(LoadError::Setup)?;
                let mut fleet = build_fleet(&driver.cfg, d.queue, &[pcscf])?;
                // The pair's rx interrupt: a parked worker takes the UEs' frames at once.
                let bell = d.handle.frame_bell();
                drive_rung(&mut driver, &mut fleet, &bell);
                insert_registration_cpu(&mut driver);
                for w in d.handle.stats().workers {
                    for (name, v) in w.drops() {
                        *driver.pcscf_counters.entry(name.to_string()).or_default() += v;
                    }
                    for (name, v) in [
                        ("queue_rx_dropped", w.queue.rx_dropped),
                        ("queue_tx_ring_full", w.queue.tx_ring_full),
                        ("queue_tx_errors", w.queue.tx_errors),
                    ] {
                        if v > 0 {
                            *driver.pcscf_counters.entry(name.to_string()).or_default() += v;
                        }
                    }
                }
                // The group commits: SQN journal fsyncs and registration store transactions
                // (one each per batch that needs one) and the events they covered.
                let sp = d.handle.stats().slowpath;
                for (name, v) in [
                    ("slowpath_events", sp.events),
                    ("sqn_commits", sp.sqn_commits),
                    ("registration_store_commits", sp.registration_store_commits),
                ] {
                    driver.pcscf_counters.insert(name.into(), v);
                }
                // The threads' whole-life CPU (start-up and idle turns included).
                let mut total = 0;
                for (k, name) in names.iter().enumerate() {
                    // Linux keeps 15 bytes of a thread's name (`comm`).
                    let comm = name.get(..15).unwrap_or(name);
                    let us = crate::cputime::find_thread(comm)
                        .and_then(|t| crate::cputime::thread_cpu_ns(&t))
                        .map_or(0, |ns| ns / 1000);
                    total += us;
                    if names.len() > 1 {
                        driver
                            .pcscf_counters
                            .insert(format!("slowpath_cpu_us_shard{k}"), us);
                    }
                }
                driver
                    .pcscf_counters
                    .insert("slowpath_cpu_us".into(), total);
                if let Err(e) = d.handle.shutdown() {
                    driver.stats.fail(&format!("daemon shutdown: {e}"));
                }
                Ok(())
            });
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
        Backend::Inline => {
            let ring = (driver.cfg.ues * 8).clamp(1024, 1 << 16);
            let pair = MemPairConfig {
                ring_size: ring,
                pool_size: ring * 4,
                ..MemPairConfig::default()
            };
            let (mut a, mut b) = mem_pair(&pair).map_err(|e| LoadError::Setup(e.to_string()))?;
            let (Some(qa), Some(qb)) = (a.take_queues().pop(), b.take_queues().pop()) else {
                return Err(LoadError::Setup("memory pair without queues".into()));
            };
            let mut gcfg = GatewayConfig::new(driver.cfg.ues + 16);
            gcfg.ipv4 = Some((Ipv4Addr::new(10, 0, 0, 1), 8));
            gcfg.core.profile.auth_alg_list =
                vec![AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96, AuthAlg::AesGmac];
            gcfg.core.profile.encr_alg_list = vec![
                EncrAlg::AesCbc,
                EncrAlg::AesGcm,
                EncrAlg::DesEde3Cbc,
                EncrAlg::Null,
            ];
            let pcscf = if driver.cfg.ipv6 {
                IpAddr::V6(gcfg.ipv6.map_or(Ipv6Addr::LOCALHOST, |(a, _)| a))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
            };
            let hss = Hss::from_records(&driver.cfg.subscribers)
                .map_err(|e| LoadError::Setup(e.to_string()))?;
            let mut gw = InProcessGateway::new(gcfg, hss, qa, driver.now())
                .map_err(|e| LoadError::Setup(e.to_string()))?;
            let mut fleet = build_fleet(&driver.cfg, qb, &[pcscf])?;
            drive(&mut driver, &mut fleet, |now| gw.step(now));
        }
        Backend::AfPacket {
            iface,
            pcscf,
            more_pcscfs,
        } => {
            let all: Vec<IpAddr> = std::iter::once(pcscf).chain(more_pcscfs).collect();
            run_af_packet(&mut driver, &iface, &all)?;
        }
        Backend::Dpdk {
            port,
            pcscf,
            more_pcscfs,
        } => {
            let all: Vec<IpAddr> = std::iter::once(pcscf).chain(more_pcscfs).collect();
            run_dpdk(&mut driver, &port, &all)?;
        }
    }
    if driver.phase != Phase::Done {
        driver.stats.fail("run_timeout");
    }
    if driver.cfg.progress {
        driver.last_progress = driver.t0;
        driver.progress();
        eprintln!();
    }
    let (reg_s, call_s) = (driver.reg_s, driver.call_s);
    let mut p = params(&driver.cfg);
    for (k, r) in [
        ("reg_rate", driver.open.reg_rate),
        ("call_rate", driver.open.call_rate),
    ] {
        p.insert(
            k.into(),
            r.map_or("closed-loop".into(), |r| format!("{r}/s")),
        );
    }
    let mut report = driver.stats.report(p, reg_s, call_s);
    report.pcscf_counters = std::mem::take(&mut driver.pcscf_counters);
    report.stale_challenges = driver.stale_challenges;
    Ok(report)
}

/// The daemon threads' CPU over the registration phase alone (from the first REGISTER sent
/// to the last registration's end; start-up, idle time before and the later phases left
/// out), in microseconds: `slowpath_cpu_us_registration` (all shards;
/// `..._shard{k}` each with several), `worker_cpu_us_registration` (all workers' thread CPU,
/// idle polling included) and `worker_busy_us_registration` (their busy-iteration clock).
fn insert_registration_cpu(driver: &mut Driver) {
    let (Some(a), Some(b)) = (&driver.reg_cpu.0, &driver.reg_cpu.1) else {
        return;
    };
    let d = b.since(a);
    let c = &mut driver.pcscf_counters;
    let total: u64 = d.slowpath_ns.iter().sum();
    c.insert("slowpath_cpu_us_registration".into(), total / 1000);
    if d.slowpath_ns.len() > 1 {
        for (k, ns) in d.slowpath_ns.iter().enumerate() {
            c.insert(format!("slowpath_cpu_us_registration_shard{k}"), ns / 1000);
        }
    }
    c.insert("worker_cpu_us_registration".into(), d.worker_ns / 1000);
    c.insert("worker_busy_us_registration".into(), d.busy_ns / 1000);
    // Exact counts: the workers' own waits (park, yield) against preemption by the UEs and
    // other threads sharing their CPU, and the pages they faulted in.
    let e = d.worker_events;
    c.insert(
        "worker_voluntary_switches_registration".into(),
        e.voluntary_switches,
    );
    c.insert("worker_preemptions_registration".into(), e.preemptions);
    c.insert("worker_minor_faults_registration".into(), e.minor_faults);
    // The idle policy's own counts (issue 10): what a backing-off worker did between work.
    c.insert("worker_idle_turns_registration".into(), d.idle.turns);
    c.insert("worker_yields_registration".into(), d.idle.yields);
    c.insert("worker_parks_registration".into(), d.idle.parks);
}

#[cfg(target_os = "linux")]
fn run_af_packet(driver: &mut Driver, iface: &str, pcscfs: &[IpAddr]) -> Result<(), LoadError> {
    use akagate_sys::afpacket::{AfPacketConfig, AfPacketPort};
    let mut port = AfPacketPort::open(&AfPacketConfig::new(iface))
        .map_err(|e| LoadError::Setup(format!("{iface}: {e}")))?;
    let q = port
        .take_queues()
        .pop()
        .ok_or_else(|| LoadError::Setup(format!("{iface}: no queue")))?;
    let mut fleet = build_fleet(&driver.cfg, q, pcscfs)?;
    drive(driver, &mut fleet, |_| 0);
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn run_af_packet(_: &mut Driver, _: &str, _: &[IpAddr]) -> Result<(), LoadError> {
    Err(LoadError::Setup("AF_PACKET needs Linux".into()))
}

/// The UEs on a DPDK port: the EAL starts in this thread (a `net_af_packet` vdev opens its
/// socket in this thread's network namespace), which then drives the fleet.
#[cfg(feature = "dpdk")]
fn run_dpdk(driver: &mut Driver, port: &DpdkPortSpec, pcscfs: &[IpAddr]) -> Result<(), LoadError> {
    let q = port
        .open("akabench")
        .map_err(|e| LoadError::Setup(format!("DPDK {}: {e}", port.device)))?;
    let mut fleet = build_fleet(&driver.cfg, q, pcscfs)?;
    drive(driver, &mut fleet, |_| 0);
    Ok(())
}

#[cfg(not(feature = "dpdk"))]
fn run_dpdk(_: &mut Driver, _: &DpdkPortSpec, _: &[IpAddr]) -> Result<(), LoadError> {
    Err(LoadError::Setup(akagate_sys::DPDK_HOWTO.into()))
}

/// How long the UEs keep running after the last phase: the final 200 OKs are ACKed and the
/// UEs' SAs torn down (after `SA_TEARDOWN_GRACE`), so the P-CSCF's drains end on those ACKs
/// rather than at their time limit after the run.
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// [`drive`] on the memory pair of an in-process daemon, ringing its [`FrameBell`] after
/// each step that queued frames (the pair's rx interrupt), and only then: a bell rung with
/// nothing queued would wake a parked worker for nothing.
///
/// [`FrameBell`]: akagate::daemon::FrameBell
fn drive_rung<Q: PortQueue>(
    driver: &mut Driver,
    fleet: &mut Fleet<Q>,
    bell: &akagate::daemon::FrameBell,
) {
    let mut rung = 0;
    let mut on_step = |fleet: &Fleet<Q>| {
        let sent = fleet.counters().tx_frames;
        if sent != rung {
            rung = sent;
            bell.ring();
        }
    };
    drive_with(driver, fleet, |_| 0, &mut on_step);
}

fn drive<Q: PortQueue>(
    driver: &mut Driver,
    fleet: &mut Fleet<Q>,
    gateway: impl FnMut(Instant) -> usize,
) {
    drive_with(driver, fleet, gateway, &mut |_: &Fleet<Q>| {});
}

fn drive_with<Q: PortQueue>(
    driver: &mut Driver,
    fleet: &mut Fleet<Q>,
    mut gateway: impl FnMut(Instant) -> usize,
    after_step: &mut dyn FnMut(&Fleet<Q>),
) {
    let mut linger_until = None;
    loop {
        if driver.phase == Phase::Done {
            let until = *linger_until.get_or_insert_with(|| std::time::Instant::now() + LINGER);
            if std::time::Instant::now() >= until {
                break;
            }
        } else if driver.t0.elapsed() >= driver.cfg.timeout {
            break;
        }
        let now = driver.now();
        driver.feed(fleet, now);
        let mut work = gateway(now);
        let mut evs = Vec::new();
        work += fleet.step(now, |i, ue| {
            while let Some(e) = ue.poll_event() {
                evs.push((i, e));
            }
        });
        after_step(fleet);
        for (i, e) in &evs {
            driver.on_event(*i, e);
        }
        driver.progress();
        if work == 0 {
            std::thread::yield_now();
        }
    }
    driver.stale_challenges = fleet.ues().iter().map(|u| u.counters().sqn_stale).sum();
}

#[cfg(test)]
mod pcscf_tests {
    use super::*;

    /// Caller k and callee k + n/2 (the driver's pairing) sit on different P-CSCFs whenever
    /// there are two or more, and every P-CSCF gets callers; one P-CSCF takes everybody.
    #[test]
    fn every_call_crosses_nodes() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        for n in [2, 7, 10, 1000, 1001] {
            for pcscfs in [vec![a, b], vec![a, b, c]] {
                let mut callers = std::collections::BTreeSet::new();
                for k in 0..n / 2 {
                    let (from, to) = (pcscf_of(k, n, &pcscfs), pcscf_of(k + n / 2, n, &pcscfs));
                    assert_ne!(from, to, "n {n} call {k}");
                    callers.insert(from);
                }
                if n >= 2 * pcscfs.len() {
                    assert_eq!(callers.len(), pcscfs.len(), "n {n}");
                }
            }
        }
        assert!((0..9).all(|i| pcscf_of(i, 9, &[a]) == a));
        // UE n-1 of an odd count (no partner) still gets a node.
        assert_eq!(pcscf_of(6, 7, &[a, b]), a);
    }
}

#[cfg(test)]
mod open_loop_tests {
    use super::*;
    use akagate_slowpath::hss::{generate_subscribers, Plmn};

    /// The full lifecycle against the daemon (its own threads, memory backend): register,
    /// call, re-register every UE with a new Security-Client, de-register. Every step succeeds
    /// and the daemon drops nothing for want of an SA: no ESP under an SPI it no longer knows
    /// (the UEs' ACKs reach the draining sets, nothing comes after), nothing from a protected
    /// port without an outbound SA (the dropped sets' connections go silently).
    #[test]
    fn reregister_and_deregister_through_the_daemon_leave_no_sa_drops() {
        let dir = std::env::temp_dir().join(format!("akabench-rereg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let subscribers = generate_subscribers(12, 11, Plmn::default());
        let path = dir.join("subscribers.toml");
        std::fs::write(&path, akagate_slowpath::hss::render_toml(&subscribers)).unwrap();
        let cfg = LoadConfig {
            subscribers,
            ues: 12,
            calls: 6,
            transport: Transport::Tcp,
            alg: AuthAlg::HmacSha1_96,
            ealg: EncrAlg::AesCbc,
            ipv6: false,
            concurrency: 4,
            hold: Duration::from_millis(0),
            reregister: true,
            deregister: true,
            timeout: std::time::Duration::from_secs(60),
            backend: Backend::Memory {
                subscribers: path,
                workers: 1,
                slowpath_shards: 1,
                placement: Default::default(),
                busy_poll: false,
            },
            progress: false,
        };
        let r = run(cfg).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            (r.registered, r.calls_completed, r.deregistered),
            (12, 6, 12),
            "{}",
            r.summary()
        );
        assert_eq!(r.registration_failures, 0, "{}", r.summary());
        assert!(r.failures_by_cause.is_empty(), "{:?}", r.failures_by_cause);
        assert!(
            r.latency_us.contains_key("reregistration"),
            "{:?}",
            r.latency_us
        );
        assert_eq!(r.params.get("reregister").map(String::as_str), Some("true"));
        for name in [
            "drop_esp_unknown_spi",
            "drop_egress_no_sa",
            "drop_esp_invalid",
        ] {
            assert_eq!(r.pcscf_counters.get(name), None, "{:?}", r.pcscf_counters);
        }
    }

    #[test]
    fn arrivals_are_scheduled_at_fixed_times() {
        let t0 = Instant::from_millis(1000);
        assert_eq!(OpenLoop::scheduled(t0, 0, 200.0), t0);
        assert_eq!(
            OpenLoop::scheduled(t0, 10, 200.0),
            Instant::from_millis(1050)
        );
    }

    #[test]
    fn open_loop_registrations_follow_the_rate_not_the_gateway() {
        let cfg = LoadConfig {
            subscribers: generate_subscribers(20, 3, Plmn::default()),
            ues: 20,
            calls: 10,
            transport: Transport::Tcp,
            alg: AuthAlg::HmacSha1_96,
            ealg: EncrAlg::AesCbc,
            ipv6: false,
            // A closed loop this narrow would serialise the registrations.
            concurrency: 1,
            hold: Duration::from_millis(0),
            reregister: false,
            deregister: false,
            timeout: std::time::Duration::from_secs(60),
            backend: Backend::Inline,
            progress: false,
        };
        let open = OpenLoop {
            reg_rate: Some(100.0),
            call_rate: Some(100.0),
        };
        let r = run_open(cfg, open).unwrap();
        assert_eq!(
            (r.registered, r.calls_completed),
            (20, 10),
            "{}",
            r.summary()
        );
        // 20 arrivals 10 ms apart: the phase cannot end before the 20th is scheduled.
        assert!(r.registration_seconds >= 0.19, "{}", r.registration_seconds);
        assert!(r.call_seconds >= 0.09, "{}", r.call_seconds);
        assert_eq!(r.params.get("reg_rate").map(String::as_str), Some("100/s"));
        assert!(r.latency_us.contains_key("registration"));
    }
}

#[cfg(test)]
mod dpdk_tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_spec_needs_a_device_from_the_arguments_or_named() {
        let s = DpdkPortSpec::new(" --no-huge  --vdev=net_af_packet0,iface=v1 ", None).unwrap();
        assert_eq!(s.eal_args, args("--no-huge --vdev=net_af_packet0,iface=v1"));
        assert_eq!(s.device, "net_af_packet0");
        let s = DpdkPortSpec::new("-l 0-1 -a 0000:03:00.0,rxq=2", None).unwrap();
        assert_eq!(s.device, "0000:03:00.0");
        let s = DpdkPortSpec::new("-l 0 --vdev=net_null0", Some("0000:81:00.0")).unwrap();
        assert_eq!(s.device, "0000:81:00.0");
        let e = DpdkPortSpec::new("-l 0", None).unwrap_err();
        assert!(e.contains("--dpdk-port"), "{e}");
    }

    /// Without the `dpdk` feature the backend exists but the run fails with the hint of how
    /// to build it in, before anything is set up.
    #[cfg(not(feature = "dpdk"))]
    #[test]
    fn without_the_feature_the_dpdk_backend_says_how_to_get_it() {
        use akagate_slowpath::hss::{generate_subscribers, Plmn};
        let cfg = LoadConfig {
            subscribers: generate_subscribers(1, 1, Plmn::default()),
            ues: 1,
            calls: 0,
            transport: Transport::Tcp,
            alg: AuthAlg::HmacSha1_96,
            ealg: EncrAlg::AesCbc,
            ipv6: false,
            concurrency: 1,
            hold: Duration::from_millis(0),
            reregister: false,
            deregister: false,
            timeout: std::time::Duration::from_secs(5),
            backend: Backend::Dpdk {
                port: DpdkPortSpec::new("--vdev=net_af_packet0,iface=v1", None).unwrap(),
                pcscf: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                more_pcscfs: Vec::new(),
            },
            progress: false,
        };
        let e = run(cfg).unwrap_err().to_string();
        assert_eq!(e, akagate_sys::DPDK_HOWTO);
    }
}
