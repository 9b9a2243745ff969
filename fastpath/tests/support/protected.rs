//! A worker with one UE's SA set installed, and the UE on the other end of the in-memory
//! pair: a client-role stack with the mirror SAs of the flow port_uc <-> port_ps (TS 33.203
//! 7.1), over TCP and UDP. The worker's calls are handed to the test (`Bed::round`), which
//! measures them (allocations, copies) apart from the UE's side.

use std::net::IpAddr;

use akagate_fastpath::esp::{InboundSa, OutboundSa};
use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::stack::ports::transport_ports;
use akagate_fastpath::stack::{StackConfig, UeStack};
use akagate_fastpath::worker::{Worker, WorkerConfig};
use akagate_sys::mempair::MemQueue;
use akagate_sys::{PacketBuf, PortQueue};
use crossbeam_channel::{Receiver, Sender};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpOperation, EthernetAddress, EthernetProtocol, Ipv4Cidr};

use super::{
    arp, eth_frame, sa_set, send_frame, suite, worker_config, worker_on_pair, PairSizes, PCSCF_MAC,
    PCSCF_V4, PORT_PS, PORT_UC, SPI_UC, UE_MAC, UE_V4,
};

/// The worker under test and a UE on the other end of an in-memory port pair.
pub struct Bed {
    /// The worker under test.
    pub worker: Worker<MemQueue>,
    q: MemQueue,
    /// The UE's stack (client role).
    pub ue: UeStack,
    /// What the UE's stack received.
    pub ue_events: Vec<WorkerEvent>,
    /// The UE's SA port_uc -> port_ps (spi_ps) and the P-CSCF's port_ps -> port_uc (spi_uc).
    out_ps: OutboundSa,
    in_uc: InboundSa,
    events: Receiver<WorkerEvent>,
    _cmds: Sender<WorkerCommand>,
    /// The clock of both sides (5 ms per round).
    pub now: Instant,
    /// SIP messages the worker delivered.
    pub sip: usize,
    /// Their bytes.
    pub sip_bytes: usize,
}

impl Bed {
    /// The bed with the worker's configuration changed by `tweak` and the UE's stack
    /// configured by `ue_cfg`; the UE's MAC is taught by ARP and its UDP port bound.
    pub fn new(tweak: impl FnOnce(&mut WorkerConfig), ue_cfg: StackConfig) -> Bed {
        let mut cfg = worker_config(0, PCSCF_MAC, vec![Ipv4Cidr::new(PCSCF_V4, 24)], vec![]);
        tweak(&mut cfg);
        let w = worker_on_pair(
            cfg,
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
        let mut ue = UeStack::new(ue_cfg, UE_V4.into(), PCSCF_V4.into(), now).unwrap();
        ue.listen(PORT_UC, false, true);
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
            sip_bytes: 0,
        };
        bed.arp();
        bed
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
        self.round(|w, now| w.run_once(now));
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

    /// One step of both sides: the UE's, then `worker` on the worker (its `run_once`, or a
    /// command and then `run_once`), whose result is returned; then the worker's events are
    /// counted and the clock moves on by 5 ms.
    pub fn round<T>(&mut self, worker: impl FnOnce(&mut Worker<MemQueue>, Instant) -> T) -> T {
        self.ue_step();
        let r = worker(&mut self.worker, self.now);
        for ev in self.events.try_iter() {
            if let WorkerEvent::Sip(s) = ev {
                self.sip += 1;
                self.sip_bytes += s.bytes.len();
            }
        }
        self.now += Duration::from_millis(5);
        r
    }

    /// The worker's counter `name`.
    pub fn count(&self, name: &str) -> u64 {
        self.worker.counters().get(name).unwrap()
    }
}

/// The UE's end of the protected flow port_uc -> port_ps over `proto`.
pub fn ue_flow(proto: Transport) -> Flow {
    Flow {
        ue: IpAddr::V4(PCSCF_V4),
        ue_port: PORT_PS,
        local: UE_V4.into(),
        local_port: PORT_UC,
        proto,
    }
}

/// The P-CSCF's end of the same flow, port_ps -> port_uc.
pub fn pcscf_flow(proto: Transport) -> Flow {
    Flow {
        ue: UE_V4.into(),
        ue_port: PORT_UC,
        local: PCSCF_V4.into(),
        local_port: PORT_PS,
        proto,
    }
}
