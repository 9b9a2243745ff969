//! A worker on one end of an in-memory port pair, and the SA set of the test bed as the
//! P-CSCF installs it and the simulated UE mirrors it (TS 33.203 7.1).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use akagate_fastpath::esp::{AuthAlg, EncrAlg, InboundSa, OutboundSa, SaKeys, Suite};
use akagate_fastpath::ipc::{SaSet, WorkerCommand, WorkerEvent};
use akagate_fastpath::l2::L2Config;
use akagate_fastpath::reasm::ReasmConfig;
use akagate_fastpath::stack::StackConfig;
use akagate_fastpath::worker::{InboundTable, Worker, WorkerConfig};
use akagate_sys::mempair::{mem_pair, MemPairConfig, MemQueue};
use akagate_sys::Port;
use crossbeam_channel::{bounded, Receiver, Sender};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr, Ipv6Cidr};

use super::{PORT_PC, PORT_PS, PORT_UC, PORT_US, SPI_UC, SPI_US};

/// Worker `id` of a scenario test: the P-CSCF at `mac` with `ipv4`/`ipv6`, no gateways,
/// default stack and reassembly, SIP on 5060, bursts of 32, 16 UEs, a 1 ms timer tick.
pub fn worker_config(
    id: usize,
    mac: EthernetAddress,
    ipv4: Vec<Ipv4Cidr>,
    ipv6: Vec<Ipv6Cidr>,
) -> WorkerConfig {
    WorkerConfig {
        id,
        l2: L2Config {
            mac,
            ipv4,
            ipv6,
            gateway_v4: None,
            gateway_v6: None,
            routes: Vec::new(),
            max_neighbors: 64,
            neighbor_ttl: Duration::from_secs(300),
            solicit_retry: Duration::from_secs(1),
        },
        stack: StackConfig::default(),
        reasm: ReasmConfig::default(),
        sip_port: super::SIP_PORT,
        tls: None,
        burst: 32,
        commands_per_loop: 16,
        max_ues: 16,
        link_mtu: 1500,
        timer_tick: Duration::from_millis(1),
        timer_slots: 256,
        sip_limits: Default::default(),
    }
}

/// hmac-sha-1-96 with aes-cbc and fixed test keys (IK 0..20, CK 100..116), as the P-CSCF and
/// the simulated UE both install it.
pub fn suite() -> Suite {
    Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: (0..20).collect(),
            encr_key: (100..116).collect(),
            salt: [0; 4],
        },
    }
}

/// The SA set between `ue` and `local` with the P-CSCF's inbound SPIs `spi_pc`/`spi_ps`, the
/// UE's [`SPI_UC`]/[`SPI_US`] and the bed's four protected ports.
pub fn sa_set(ue: IpAddr, local: IpAddr, suite: Suite, spi_pc: u32, spi_ps: u32) -> SaSet {
    SaSet {
        ue,
        local,
        suite,
        spi_pc,
        spi_ps,
        spi_uc: SPI_UC,
        spi_us: SPI_US,
        port_pc: PORT_PC,
        port_ps: PORT_PS,
        port_uc: PORT_UC,
        port_us: PORT_US,
    }
}

/// The UE's mirror of [`sa_set`]: its outbound SAs by (UE port, P-CSCF port) — port_uc ->
/// port_ps through `spi_ps`, port_us -> port_pc through `spi_pc` — and its inbound SAs by
/// SPI ([`SPI_UC`], [`SPI_US`]).
pub fn ue_sas(
    suite: &Suite,
    spi_pc: u32,
    spi_ps: u32,
) -> (HashMap<(u16, u16), OutboundSa>, HashMap<u32, InboundSa>) {
    let out = |spi| OutboundSa::new(spi, suite).expect("suite");
    let inb = |spi| InboundSa::new(spi, suite).expect("suite");
    (
        HashMap::from([
            ((PORT_UC, PORT_PS), out(spi_ps)),
            ((PORT_US, PORT_PC), out(spi_pc)),
        ]),
        HashMap::from([(SPI_UC, inb(SPI_UC)), (SPI_US, inb(SPI_US))]),
    )
}

/// Sizes of [`worker_on_pair`]'s port pair, SA table and channels.
pub struct PairSizes {
    /// The in-memory pair (rings, pools, buffer layout).
    pub pair: MemPairConfig,
    /// SPIs the inbound SA table holds.
    pub table: usize,
    /// Capacity of the worker's event channel.
    pub events: usize,
    /// Capacity of the worker's command channel.
    pub commands: usize,
}

impl Default for PairSizes {
    /// The default pair, 1024 SPIs, 256 events and 64 commands.
    fn default() -> Self {
        PairSizes {
            pair: MemPairConfig::default(),
            table: 1024,
            events: 256,
            commands: 64,
        }
    }
}

/// One worker on the first queue of an in-memory pair, with the UE's end of the link.
pub struct WorkerOnPair {
    /// The worker under test.
    pub worker: Worker<MemQueue>,
    /// The UE's end of the link (the pair's other port, one queue).
    pub ue: MemQueue,
    /// The inbound SA table the worker reads.
    pub table: Arc<InboundTable>,
    /// What the worker passes up to the slowpath.
    pub events: Receiver<WorkerEvent>,
    /// The slowpath's command channel to the worker.
    pub cmds: Sender<WorkerCommand>,
    /// The clock the worker was created at (10 s).
    pub now: Instant,
}

/// A worker with `cfg` on an in-memory pair of `sizes`, created at 10 s.
pub fn worker_on_pair(cfg: WorkerConfig, sizes: &PairSizes) -> WorkerOnPair {
    let (mut a, mut b) = mem_pair(&sizes.pair).expect("mem pair");
    let wq = a.take_queues().pop().expect("queue");
    let ue = b.take_queues().pop().expect("queue");
    let table = Arc::new(InboundTable::with_capacity(sizes.table).expect("table"));
    let (ev_tx, events) = bounded(sizes.events);
    let (cmds, cmd_rx) = bounded(sizes.commands);
    let now = Instant::from_millis(10_000);
    let worker = Worker::new(cfg, wq, table.clone(), ev_tx, cmd_rx, now);
    WorkerOnPair {
        worker,
        ue,
        table,
        events,
        cmds,
        now,
    }
}
