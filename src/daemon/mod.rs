//! The daemon: one pinned worker thread per port queue and one slowpath thread per shard,
//! joined by bounded crossbeam queues (see docs/ARCHITECTURE.md, "Process shape"), with orderly shutdown.

mod corelink;
mod journal;
mod ports;
mod resolve;
mod setup;
mod shards;
mod slowpath;
mod stats;
mod steer;
mod store;
mod wake;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use akagate_fastpath::ipc::{WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::{SadError, SpiAllocator};
use akagate_fastpath::worker::{EventSink, Handoff, InboundTable};
use akagate_slowpath::hss::HssError;
use akagate_slowpath::registrar::LocationDirectory;
use akagate_slowpath::{Core, CoreConfig};
use akagate_sys::affinity::CorePlan;
use akagate_sys::mempair::MemPort;
use akagate_sys::{IoError, LinkInfo, Port};
use crossbeam_channel::bounded;
use rand::SeedableRng;

use crate::config::{Backend, Config};
pub use crate::stats::Stats;
use crate::stats::StatsFn;
pub use ports::{dpdk_device, memory_pair, MEMORY_DAEMON_MAC, MEMORY_PEER_MAC};
pub use setup::default_sqn_state;
pub use steer::{ue_key, worker_for};
pub use wake::FrameBell;
pub use worker::{busy_iteration_ns, idle_counts, IdleCounts};

/// Frames (and neighbours) each worker's handoff inbox holds; strays beyond it are dropped
/// and counted (`drop_handoff_full`).
const HANDOFF_RING: usize = 1024;

/// Whether threads are pinned to the configured cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Workers on `cores.workers`, the slowpath on `cores.slowpath` (if set); a core that does
    /// not exist is a start error.
    Configured,
    /// No pinning (tests, and hosts shared with other work).
    Unpinned,
}

/// What an idle worker does between polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin: lowest latency, one core fully used per worker (the DPDK model).
    BusyPoll,
    /// Spin briefly, then yield, then park `max_sleep` per idle iteration (a worker told of
    /// its frames and commands, with no peers: until its next timer, at most 10 ms or
    /// `max_sleep` if longer).
    Backoff {
        /// Park per idle iteration once backing off.
        max_sleep: Duration,
    },
}

/// How [`Daemon::start`] runs the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartOptions {
    /// Core pinning.
    pub pinning: Pinning,
    /// Idle behaviour of the workers.
    pub idle: IdlePolicy,
    /// Period of the one-line stats log (`tracing::info!`), or none.
    pub stats_interval: Option<Duration>,
    /// SQN state file; `None` means [`default_sqn_state`] of the subscriber file.
    pub sqn_state: Option<PathBuf>,
    /// Capacity of the worker -> slowpath event queue (shared by all workers; one per
    /// slowpath shard).
    pub event_queue: usize,
    /// Capacity of each slowpath -> worker command queue.
    pub command_queue: usize,
}

impl StartOptions {
    /// Production: pinned, busy-polling workers, stats every 10 s.
    pub fn production() -> Self {
        StartOptions {
            pinning: Pinning::Configured,
            idle: IdlePolicy::BusyPoll,
            stats_interval: Some(Duration::from_secs(10)),
            sqn_state: None,
            event_queue: 8192,
            command_queue: 4096,
        }
    }

    /// Tests and shared hosts: unpinned workers that sleep when idle, no periodic log.
    pub fn unpinned() -> Self {
        StartOptions {
            pinning: Pinning::Unpinned,
            idle: IdlePolicy::Backoff {
                max_sleep: Duration::from_micros(200),
            },
            stats_interval: None,
            ..StartOptions::production()
        }
    }
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions::production()
    }
}

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The port could not be opened, or does not match the configuration.
    #[error("port: {0}")]
    Port(#[source] IoError),
    /// A configured core does not exist or cannot be used.
    #[error("cores: {0}")]
    Cores(#[source] IoError),
    /// The subscriber file could not be loaded.
    #[error("subscribers {}: {source}", path.display())]
    Subscribers {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HssError,
    },
    /// The SQN state could not be opened.
    #[error("SQN state {}: {source}", path.display())]
    SqnState {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HssError,
    },
    /// The TLS certificate, key or client CA could not be read or do not fit together.
    #[error("tls: {0}")]
    Tls(String),
    /// The SA table could not be created.
    #[error("SA table: {0}")]
    SaTable(#[source] SadError),
    /// The configuration asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The control socket could not be opened.
    #[error("control socket {0}")]
    Control(#[source] crate::control::ControlError),
    /// The core side of proxy mode (`[ims-core] local`) could not be bound.
    #[error("ims-core.local {addr}: {reason}")]
    CoreLink {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The Prometheus endpoint could not be opened.
    #[error("{0}")]
    Metrics(#[source] crate::metrics::MetricsError),
    /// A thread could not be spawned, or died while starting.
    #[error("thread {name}: {reason}")]
    Thread {
        /// Thread name.
        name: String,
        /// What happened.
        reason: String,
    },
}

/// Why the shutdown was not clean.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// A thread panicked (the others were still stopped and joined).
    #[error("thread {0} panicked")]
    Panicked(String),
    /// The SQN state could not be written; the journal still holds every SQN handed out.
    #[error("SQN state {}: {source}", path.display())]
    SqnState {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HssError,
    },
}

/// What a clean shutdown leaves behind.
#[derive(Debug)]
pub struct ShutdownReport {
    /// The counters after every thread stopped.
    pub stats: Stats,
    /// The SQN state file that was made durable, if the HSS has one.
    pub sqn_state: Option<PathBuf>,
}

/// Starts the daemon.
#[derive(Debug)]
pub struct Daemon;

impl Daemon {
    /// Opens the configured port backend and starts on it. With the memory backend the far
    /// end of the pair is kept in the handle ([`DaemonHandle::take_memory_peer`]).
    pub fn start(config: &Config, opts: StartOptions) -> Result<DaemonHandle, StartError> {
        match &config.port.backend {
            Backend::Memory => {
                let (port, peer) = memory_pair(config).map_err(StartError::Port)?;
                let mut handle = Daemon::start_with_port(config, port, opts)?;
                handle.memory_peer = Some(peer);
                Ok(handle)
            }
            #[cfg(target_os = "linux")]
            Backend::AfPacket { interface } => {
                check_cores(config, &opts)?;
                let port = ports::af_packet(config, interface).map_err(StartError::Port)?;
                Daemon::start_with_port(config, port, opts)
            }
            #[cfg(not(target_os = "linux"))]
            Backend::AfPacket { .. } => Err(StartError::Unsupported(
                "the af_packet backend needs Linux".into(),
            )),
            #[cfg(feature = "dpdk")]
            Backend::Dpdk { eal_args } => {
                check_cores(config, &opts)?;
                let port = ports::dpdk(config, eal_args).map_err(StartError::Port)?;
                Daemon::start_with_port(config, port, opts)
            }
            #[cfg(not(feature = "dpdk"))]
            Backend::Dpdk { .. } => {
                Err(StartError::Unsupported(akagate_sys::DPDK_HOWTO.to_string()))
            }
        }
    }

    /// Starts on a port the caller opened (e.g. one end of an in-memory pair from
    /// [`memory_pair`], keeping the other end for simulated UEs). The port must have one queue
    /// per configured worker; [`Port::steering`] names the worker of each UE.
    pub fn start_with_port<P: Port>(
        config: &Config,
        mut port: P,
        opts: StartOptions,
    ) -> Result<DaemonHandle, StartError>
    where
        P::Queue: 'static,
    {
        check_cores(config, &opts)?;
        let nworkers = config.cores.workers.len();
        if port.num_queues() != nworkers {
            return Err(StartError::Port(IoError::Config(format!(
                "port {} has {} queue(s) for {nworkers} worker(s)",
                port.link().name,
                port.num_queues()
            ))));
        }
        let sip_port = setup::sip_port(config)?;
        let tls = setup::tls_listener(config)?;
        let mut core_config = setup::core_config(config)?;
        // Proxy mode's next hops given as names: resolved now (RFC 3263), then refreshed by
        // a thread of their own; the core only ever sees addresses.
        let mut named_hops = None;
        if let Some(up) = core_config.upstream.as_mut().filter(|u| u.has_names()) {
            let (hops, emergency) = resolve::resolve_now(up).map_err(|e| StartError::CoreLink {
                addr: up.local,
                reason: format!("DNS resolver: {e}"),
            })?;
            if hops.is_empty() {
                return Err(StartError::Unsupported(
                    "ims-core.next-hops: no next hop resolved (RFC 3263 NAPTR/SRV/A/AAAA)".into(),
                ));
            }
            tracing::info!("next hops resolved: {hops:?}; E-CSCFs {emergency:?}");
            up.next_hops = hops;
            up.emergency_next_hops = emergency;
            named_hops = Some(up.clone());
        }
        let nshards = config.cores.slowpath.len().max(1);
        if nshards > akagate_proto::shard::MAX_SHARDS {
            return Err(StartError::Unsupported(format!(
                "cores.slowpath: at most {} shards",
                akagate_proto::shard::MAX_SHARDS
            )));
        }
        let (hsss, journals) = setup::load_hss(config, opts.sqn_state.as_deref(), nshards)?;
        let sqn_state = journals.first().map(|j| j.path().to_path_buf());
        let table = Arc::new(
            InboundTable::with_capacity(config.sa_table.capacity).map_err(StartError::SaTable)?,
        );
        let link = port.link().clone();
        let queue_counters = port.counters();
        // The port's own steering names the worker of a UE, for the slowpath's commands and
        // the workers' handoff of strays (one UE, one worker).
        let steering = port.steering();
        let queues = port.take_queues();
        drop(port);
        if queues.len() != nworkers {
            return Err(StartError::Port(IoError::Config(format!(
                "port {} handed out {} queue(s) for {nworkers} worker(s)",
                link.name,
                queues.len()
            ))));
        }

        let (event_txs, event_rxs): (Vec<_>, Vec<_>) = (0..nshards)
            .map(|_| bounded::<WorkerEvent>(opts.event_queue.max(1)))
            .unzip();
        let workers_stop = Arc::new(AtomicBool::new(false));
        let slowpath_stop = Arc::new(AtomicBool::new(false));
        let pinned = opts.pinning == Pinning::Configured;
        let mut handle = DaemonHandle {
            link: link.clone(),
            workers: Vec::with_capacity(nworkers),
            slowpath: Vec::with_capacity(nshards),
            workers_stop: workers_stop.clone(),
            slowpath_stop: slowpath_stop.clone(),
            memory_peer: None,
            frame_bell: wake::FrameBell::default(),
            stats: stats::StatsSource {
                started: Instant::now(),
                workers: Vec::with_capacity(nworkers),
                slowpath: Arc::default(),
                shards: (1..nshards).map(|_| Arc::default()).collect(),
                table: table.clone(),
            },
            sqn_state: None,
            done: false,
            stopped: None,
            control: None,
            metrics: None,
        };

        // Registrations kept across a restart (issue 14): their SPIs reserved, the core's
        // registrar restored and the sets handed to their workers, all before any worker
        // takes a frame. Proxy mode keeps none (its Service-Route state is not stored).
        let shard_counters = handle.stats.shard_counters();
        for (c, hss) in shard_counters.iter().zip(&hsss) {
            c.subscribers.store(hss.len() as u64, Ordering::Relaxed);
        }
        // With shards, each core's SPIs are recorded with its shard (the workers' router
        // reads them) and every branch and Record-Route it makes carries its tag.
        let spi_shards = match nshards {
            1 => None,
            _ => Some(Arc::new(
                shards::SpiShards::new(config.sa_table.capacity).map_err(StartError::SaTable)?,
            )),
        };
        // Each shard publishes its bindings here and finds the others' UEs (a call across
        // shards is owned by the caller's shard; proxy mode: the core's requests find theirs).
        let directory = (nshards > 1).then(|| Arc::new(LocationDirectory::new(nshards)));
        let router = spi_shards
            .as_ref()
            .zip(directory.as_ref())
            .map(|(spis, directory)| {
                Arc::new(shards::Router {
                    shards: nshards,
                    spis: spis.clone(),
                    impis: hsss
                        .first()
                        .and_then(|h| h.impu_directory())
                        .unwrap_or_default(),
                    core_side: config.ims_core.as_ref().map(|up| up.local.ip()),
                    directory: directory.clone(),
                })
            });
        let mut cores: Vec<Core> = Vec::with_capacity(nshards);
        for (k, hss) in hsss.into_iter().enumerate() {
            let table: Arc<dyn SpiAllocator> = table.clone();
            let spis: Arc<dyn SpiAllocator> = match &spi_shards {
                None => table,
                Some(map) => Arc::new(shards::ShardSpis {
                    table,
                    shard: k,
                    map: map.clone(),
                }),
            };
            let cfg = CoreConfig {
                shard: (nshards > 1).then_some(k),
                ..core_config.clone()
            };
            let mut core = Core::new(cfg, hss, spis, Box::new(rand::rngs::StdRng::from_entropy()));
            if let Some(d) = &directory {
                core.attach_directory(d.clone(), k);
            }
            cores.push(core);
        }
        let restore_started = Instant::now();
        // Registrations survive a restart (issue 14), each shard's in its own store, records
        // moved to their shard's store when the number of shards changed. Proxy mode keeps
        // none, and removes what an embedded run left.
        let stores = match (&sqn_state, &config.ims_core) {
            (Some(base), None) => store::open_shards(base, nshards, |impi| {
                akagate_proto::shard::shard_of_name(impi.as_bytes(), nshards)
            }),
            (Some(base), Some(_)) => {
                store::remove_all(base);
                Vec::new()
            }
            (None, _) => Vec::new(),
        };
        let keeping = !stores.is_empty();
        let mut stores = stores.into_iter();
        let mut journals = journals.into_iter();
        let mut registrations = Vec::with_capacity(nshards);
        let mut restore_cmds = vec![Vec::new(); nworkers];
        let (mut restored_total, mut not_restored) = (0, 0);
        for (k, core) in cores.iter_mut().enumerate() {
            let (mut store, restored) = stores.next().unwrap_or_default();
            let owns = |spi: u32| {
                if let Some(map) = &spi_shards {
                    map.set(spi, k);
                }
            };
            let plan = store::restore(
                core,
                &table,
                &steering,
                nworkers,
                restored,
                store.as_mut(),
                &owns,
            );
            for (all, mine) in restore_cmds.iter_mut().zip(plan.commands) {
                all.extend(mine);
            }
            restored_total += plan.restored;
            not_restored += plan.not_restored;
            registrations.push(store);
        }
        let mut restore_cmds = restore_cmds.into_iter();
        let c = &handle.stats.slowpath;
        c.registrations_restored
            .store(restored_total as u64, Ordering::Relaxed);
        c.registrations_not_restored
            .store(not_restored as u64, Ordering::Relaxed);

        let handoff = Arc::new(Handoff::new(nworkers, HANDOFF_RING));
        let mut command_txs = Vec::with_capacity(nworkers);
        let mut wakers = Vec::with_capacity(nworkers);
        for (id, queue) in queues.into_iter().enumerate() {
            let (cmd_tx, cmd_rx) = bounded::<WorkerCommand>(opts.command_queue.max(1));
            command_txs.push(cmd_tx);
            let wake = Arc::new(wake::WorkerWake::default());
            wakers.push(wake.clone());
            let core = if pinned {
                config.cores.workers.get(id).copied()
            } else {
                None
            };
            let thread = worker::WorkerThread {
                cfg: setup::worker_config(config, id, &link, sip_port, tls.clone()),
                queue,
                peers: (nworkers > 1).then(|| (steering.clone(), handoff.clone())),
                table: table.clone(),
                events: event_sink(&event_txs, router.as_ref()),
                commands: cmd_rx,
                core,
                idle: opts.idle,
                stop: workers_stop.clone(),
                wake,
                restore: restore_cmds.next().unwrap_or_default(),
                socket_reserve: config.stack.socket_reserve,
            };
            let (ready_tx, ready_rx) = bounded(1);
            let name = format!("akagate-w{id}");
            let join = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || thread.run(ready_tx))
                .map_err(|e| StartError::Thread {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            handle.workers.push((name.clone(), join));
            let counters = match ready_rx.recv() {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(StartError::Cores(e)),
                Err(_) => {
                    return Err(StartError::Thread {
                        name,
                        reason: "exited while starting".into(),
                    })
                }
            };
            handle.stats.workers.push(stats::WorkerSource {
                id,
                core,
                counters,
                queue: queue_counters.get(id).cloned().unwrap_or_default(),
            });
        }
        handle.frame_bell = wake::FrameBell::new(wakers.clone());
        // The core side of proxy mode delivers into the same queues, through the same router.
        let core_link = match &config.ims_core {
            Some(up) => Some(
                corelink::CoreLink::start(up.local, event_sink(&event_txs, router.as_ref()))
                    .map_err(|e| StartError::CoreLink {
                        addr: up.local,
                        reason: e.to_string(),
                    })?,
            ),
            None => None,
        };
        // Only the workers (and the core link) hold event senders: when all of them are gone
        // the slowpath sees it.
        drop(event_txs);

        if keeping {
            tracing::info!(
                "restored {restored_total} registration(s) in {} ms ({not_restored} not \
                 restored), ready",
                restore_started.elapsed().as_millis(),
            );
        }
        let (query_port, queries) = crate::control::channel(nshards);
        // Every shard sends to the core side; shard 0 owns the link's threads.
        let core_tx = core_link.as_ref().map(corelink::CoreLink::sender);
        let mut core_link = core_link;
        // Next hops given as names: one refresh thread, its results to every shard.
        let mut hop_updates: Vec<Option<slowpath::HopUpdates>> =
            (0..nshards).map(|_| None).collect();
        if let Some(up) = named_hops {
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..nshards).map(|_| bounded(1)).unzip();
            let stop = Arc::new(AtomicBool::new(false));
            let thread =
                resolve::spawn_refresh(up, txs, stop.clone()).map_err(|e| StartError::Thread {
                    name: "akagate-dns".into(),
                    reason: e.to_string(),
                })?;
            let mut refresh = Some(slowpath::DnsRefresh { stop, thread });
            for (slot, rx) in hop_updates.iter_mut().zip(rxs) {
                *slot = Some(slowpath::HopUpdates {
                    rx,
                    refresh: refresh.take(),
                });
            }
        }
        let mut hop_updates = hop_updates.into_iter();
        let mut registrations = registrations.into_iter();
        let access = setup::sip_access(config, sip_port);
        for (k, ((core, events), queries)) in
            cores.into_iter().zip(event_rxs).zip(queries).enumerate()
        {
            let counters = shard_counters.get(k).cloned().unwrap_or_default();
            let slowpath = slowpath::Slowpath {
                control: queries,
                core,
                events,
                commands: command_txs.clone(),
                wakers: wakers.clone(),
                counters,
                stop: slowpath_stop.clone(),
                journal: journals.next(),
                registrations: registrations.next().flatten(),
                unstored: Default::default(),
                batch: Vec::new(),
                records: Vec::new(),
                // One periodic log line for the whole daemon.
                stats_interval: opts.stats_interval.filter(|_| k == 0),
                stats: handle.stats.clone(),
                steering: steering.clone(),
                access: access.clone(),
                core_link: core_tx.clone(),
                core_link_threads: core_link.take(),
                hop_updates: hop_updates.next().flatten(),
            };
            let slowpath_core = match pinned {
                true => config.cores.slowpath.get(k).copied(),
                false => None,
            };
            let name = match nshards {
                1 => "akagate-slowpath".to_string(),
                _ => format!("akagate-sp{k}"),
            };
            let (ready_tx, ready_rx) = bounded::<Result<(), IoError>>(1);
            let join = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    if let Some(c) = slowpath_core {
                        if let Err(e) = akagate_sys::affinity::pin_current_thread(c) {
                            let _ = ready_tx.send(Err(e));
                            return None;
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    Some(slowpath.run())
                })
                .map_err(|e| StartError::Thread {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            handle.slowpath.push((name.clone(), join));
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StartError::Cores(e)),
                Err(_) => {
                    return Err(StartError::Thread {
                        name,
                        reason: "exited while starting".into(),
                    })
                }
            }
        }
        handle.sqn_state = sqn_state;
        let stats = handle.stats.clone();
        let stats: StatsFn = Arc::new(move || stats.snapshot());
        handle.control = crate::control::ControlServer::start(config, stats.clone(), query_port)
            .map_err(StartError::Control)?;
        if let Some(addr) = config.metrics.listen {
            handle.metrics = Some(
                crate::metrics::MetricsServer::start(addr, stats).map_err(StartError::Metrics)?,
            );
        }
        tracing::info!(
            "akagate running on {} (mtu {}) with {nworkers} worker(s){} and {nshards} slowpath \
             shard(s); SIP on port {sip_port}; {} subscriber(s); SA table of {} SPIs",
            link.name,
            link.mtu,
            if pinned { " pinned" } else { ", unpinned" },
            handle.stats().slowpath.subscribers,
            table.capacity(),
        );
        Ok(handle)
    }
}

/// Checks the configured cores before anything is opened (a clear error naming the usable
/// cores when one does not exist).
/// Where a worker's (or the core link's) events go: the one slowpath, or through the router
/// to each event's shard.
fn event_sink(
    queues: &[crossbeam_channel::Sender<WorkerEvent>],
    router: Option<&Arc<shards::Router>>,
) -> EventSink {
    match router {
        None => EventSink::from(queues[0].clone()),
        Some(r) => EventSink::Shards {
            queues: queues.to_vec(),
            router: r.clone(),
        },
    }
}

fn check_cores(config: &Config, opts: &StartOptions) -> Result<(), StartError> {
    if opts.pinning == Pinning::Unpinned {
        return Ok(());
    }
    // One plan per slowpath shard: each shard's core must exist and not be a worker's.
    let shards = config.cores.slowpath.iter().map(|&c| Some(c));
    for slowpath in std::iter::once(None).chain(shards) {
        CorePlan {
            workers: config.cores.workers.clone(),
            slowpath,
        }
        .validate()
        .map_err(StartError::Cores)?;
    }
    Ok(())
}

/// The running daemon. Dropping it shuts it down like [`DaemonHandle::shutdown`], ignoring
/// errors.
pub struct DaemonHandle {
    link: LinkInfo,
    workers: Vec<(String, JoinHandle<()>)>,
    /// One thread per slowpath shard.
    slowpath: Vec<(String, JoinHandle<Option<slowpath::SlowpathExit>>)>,
    workers_stop: Arc<AtomicBool>,
    slowpath_stop: Arc<AtomicBool>,
    memory_peer: Option<MemPort>,
    /// Wakes the workers when frames were queued on the memory pair's far end.
    frame_bell: wake::FrameBell,
    stats: stats::StatsSource,
    sqn_state: Option<PathBuf>,
    /// Set once [`Self::stop`] ran; `stopped` holds its result until `shutdown` takes it.
    done: bool,
    stopped: Option<Result<ShutdownReport, ShutdownError>>,
    /// The `akactl` control socket, if it could be opened.
    control: Option<crate::control::ControlServer>,
    /// The Prometheus endpoint, if configured.
    metrics: Option<crate::metrics::MetricsServer>,
}

impl core::fmt::Debug for DaemonHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DaemonHandle")
            .field("link", &self.link.name)
            .field("workers", &self.workers.len())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl DaemonHandle {
    /// A snapshot of every counter.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }

    /// The port's name, Ethernet address and MTU.
    pub fn link(&self) -> &LinkInfo {
        &self.link
    }

    /// The address the Prometheus endpoint listens on (`[metrics] listen`, with the port the
    /// system chose if it was 0), `None` when it is off.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|m| m.local_addr())
    }

    /// The SQN state file in use, if the HSS has one.
    pub fn sqn_state(&self) -> Option<&std::path::Path> {
        self.sqn_state.as_deref()
    }

    /// With the memory backend started by [`Daemon::start`]: the far end of the pair, once.
    pub fn take_memory_peer(&mut self) -> Option<MemPort> {
        self.memory_peer.take()
    }

    /// What the holder of the memory pair's far end rings after queueing frames, so a
    /// parked worker takes them at once ([`wake::FrameBell`]).
    pub fn frame_bell(&self) -> wake::FrameBell {
        self.frame_bell.clone()
    }

    /// True while every thread runs (false after a thread died or after shutdown).
    pub fn is_running(&self) -> bool {
        !self.slowpath.is_empty()
            && self.slowpath.iter().all(|(_, j)| !j.is_finished())
            && self.workers.iter().all(|(_, j)| !j.is_finished())
    }

    /// Polls [`Self::stats`] every millisecond until `pred` holds (returning that snapshot)
    /// or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Stats) -> bool) -> Option<Stats> {
        let end = Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the daemon: the slowpath stops taking new events, handles those already queued
    /// and persists the SQN state; then the workers execute the commands it sent, flush their
    /// transmit queues and are joined.
    pub fn shutdown(mut self) -> Result<ShutdownReport, ShutdownError> {
        self.stop();
        self.stopped
            .take()
            .unwrap_or(Err(ShutdownError::Panicked("already stopped".into())))
    }

    fn stop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        drop(self.control.take());
        drop(self.metrics.take());
        let mut result = Ok(());
        self.slowpath_stop.store(true, Ordering::Release);
        let mut exits = Vec::new();
        for (name, join) in self.slowpath.drain(..) {
            match join.join() {
                Ok(exit) => exits.extend(exit),
                Err(_) => {
                    if result.is_ok() {
                        result = Err(ShutdownError::Panicked(name));
                    }
                }
            }
        }
        self.workers_stop.store(true, Ordering::Release);
        // A worker parked until its next timer sees the flag now, not then.
        self.frame_bell.wake_all();
        for (name, join) in self.workers.drain(..) {
            if join.join().is_err() && result.is_ok() {
                result = Err(ShutdownError::Panicked(name));
            }
        }
        // Shard 0's file is the state's name (the other shards' files sit beside it).
        let mut sqn_state = None;
        for (k, exit) in exits.into_iter().enumerate() {
            if k == 0 {
                sqn_state = exit.sqn_state;
            }
            if let Some((path, source)) = exit.persist_error {
                if result.is_ok() {
                    result = Err(ShutdownError::SqnState { path, source });
                }
            }
        }
        let stats = self.stats.snapshot();
        tracing::info!("akagate stopped: {stats}");
        self.stopped = Some(result.map(|()| ShutdownReport { stats, sqn_state }));
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
