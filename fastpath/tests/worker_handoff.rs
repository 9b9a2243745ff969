//! Two workers on one in-memory port: frames that land on the queue of a worker that does not
//! own their UE are handed to the owner through the handoff rings, and a neighbour learned by
//! one worker (ARP has no IP address to steer by, so replies land on queue 0) is told to the
//! worker that owns it, a gateway to all.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

mod support;

use akagate_fastpath::esp::OutboundSa;
use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::worker::{Handoff, InboundTable, Worker};
use akagate_sys::mempair::{mem_pair, MemEndConfig, MemPairConfig, MemQueue};
use akagate_sys::steer::{RssInput, RssSteering, Steering};
use akagate_sys::{PacketBuf, Port, PortQueue, UeSide};
use crossbeam_channel::{bounded, Receiver, Sender};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Cidr,
    Ipv4Packet, UdpPacket,
};
use support::{
    arp, encapsulate, eth_frame, sa_set, send_frame, suite, udp_v4, worker_config, PCSCF_MAC,
    PCSCF_V4, PORT_PS, PORT_UC, UE_MAC,
};

struct Bed {
    workers: Vec<Worker<MemQueue>>,
    cmds: Vec<Sender<WorkerCommand>>,
    events: Receiver<WorkerEvent>,
    table: Arc<InboundTable>,
    /// The UE side of the link (one queue).
    ue: MemQueue,
    now: Instant,
}

/// `n` workers on the daemon end of an in-memory pair that steers by the UE's source address
/// (`Steering::UeKey`); the workers believe `owner_steering`.
fn bed(n: usize, owner_steering: Steering) -> Bed {
    bed_with(n, owner_steering, None)
}

/// [`bed`] with the default gateway `gateway` on the link.
fn bed_with(n: usize, owner_steering: Steering, gateway: Option<Ipv4Addr>) -> Bed {
    let (mut a, mut b) = mem_pair(&MemPairConfig {
        a: MemEndConfig {
            name: "pcscf".into(),
            mac: PCSCF_MAC.0,
            queues: n,
            ue_side: UeSide::Source,
        },
        b: MemEndConfig {
            name: "ue".into(),
            mac: UE_MAC.0,
            queues: 1,
            ue_side: UeSide::Destination,
        },
        ..MemPairConfig::default()
    })
    .unwrap();
    let table = Arc::new(InboundTable::with_capacity(1024).unwrap());
    let handoff = Arc::new(Handoff::new(n, 64));
    let (ev_tx, events) = bounded(256);
    let now = Instant::from_millis(10_000);
    let mut workers = Vec::new();
    let mut cmds = Vec::new();
    for (id, q) in a.take_queues().into_iter().enumerate() {
        let (cmd_tx, cmd_rx) = bounded(64);
        let mut cfg = worker_config(id, PCSCF_MAC, vec![Ipv4Cidr::new(PCSCF_V4, 24)], vec![]);
        cfg.l2.gateway_v4 = gateway;
        let w = Worker::new(cfg, q, table.clone(), ev_tx.clone(), cmd_rx, now)
            .with_peers(owner_steering.clone(), handoff.clone());
        workers.push(w);
        cmds.push(cmd_tx);
    }
    Bed {
        workers,
        cmds,
        events,
        table,
        ue: b.take_queues().pop().unwrap(),
        now,
    }
}

impl Bed {
    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            for w in &mut self.workers {
                w.run_once(self.now);
            }
            self.now += Duration::from_millis(1);
        }
    }

    fn count(&self, w: usize, name: &str) -> u64 {
        self.workers[w].counters().get(name).unwrap()
    }

    fn send(&mut self, ethertype: EthernetProtocol, dst: EthernetAddress, payload: &[u8]) {
        send_frame(&mut self.ue, &eth_frame(UE_MAC, dst, ethertype, payload));
    }

    fn arp(&mut self, operation: ArpOperation, ue: Ipv4Addr) {
        let target_mac = if operation == ArpOperation::Reply {
            PCSCF_MAC
        } else {
            EthernetAddress([0; 6])
        };
        let p = arp(operation, (UE_MAC, ue), (target_mac, PCSCF_V4));
        let dst = if operation == ArpOperation::Reply {
            PCSCF_MAC
        } else {
            EthernetAddress::BROADCAST
        };
        self.send(EthernetProtocol::Arp, dst, &p);
    }

    /// Frames the UE received.
    fn received(&mut self) -> Vec<Vec<u8>> {
        let mut rx: Vec<PacketBuf> = Vec::new();
        self.ue.rx_burst(&mut rx, 256);
        let out = rx.iter().map(|b| b.data().to_vec()).collect();
        for b in rx {
            self.ue.free(b);
        }
        out
    }

    fn sip_events(&self) -> Vec<(Flow, Option<u32>, Vec<u8>)> {
        self.events
            .try_iter()
            .filter_map(|e| match e {
                WorkerEvent::Sip(s) => Some((s.flow, s.via_spi, s.bytes)),
                _ => None,
            })
            .collect()
    }
}

/// A UE address that `steering` gives to worker `want`.
fn ue_owned_by(steering: &Steering, want: usize) -> Ipv4Addr {
    (2..250u8)
        .map(|i| Ipv4Addr::new(10, 0, 0, i))
        .find(|&a| steering.queue_for_ue(IpAddr::V4(a)) == want)
        .expect("an address for the worker")
}

fn udp_payloads_to(frames: &[Vec<u8>], ue: Ipv4Addr) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            if eth.ethertype() != EthernetProtocol::Ipv4 || eth.dst_addr() != UE_MAC {
                return None;
            }
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.dst_addr() != ue || ip.next_header() != IpProtocol::Udp {
                return None;
            }
            Some(
                UdpPacket::new_checked(ip.payload())
                    .ok()?
                    .payload()
                    .to_vec(),
            )
        })
        .collect()
}

/// Worker 1 owns the UE, holds its first message and solicits its address; the ARP reply
/// lands on queue 0 (no IP address to steer by). Worker 0 learns it and tells worker 1, which
/// sends the held message; its next one reaches the UE without another solicitation.
#[test]
fn an_arp_reply_on_queue_0_teaches_the_owner() {
    let steering = Steering::UeKey { queues: 2 };
    let mut t = bed(2, steering.clone());
    let ue = ue_owned_by(&steering, 1);
    let flow = Flow {
        ue: ue.into(),
        ue_port: 5060,
        local: PCSCF_V4.into(),
        local_port: 5060,
        proto: Transport::Udp,
    };
    let send = |t: &Bed, body: &[u8]| {
        t.cmds[1]
            .send(WorkerCommand::Send {
                flow,
                bytes: body.to_vec(),
                connect_if_absent: false,
            })
            .unwrap();
    };
    send(&t, b"SIP/2.0 401 Unauthorized\r\n\r\n");
    t.run(2);
    // Held for want of a neighbour; worker 1 asked.
    assert_eq!(t.count(1, "neighbor_queued"), 1);
    assert_eq!(t.count(1, "solicitations"), 1);
    let asked = t.received();
    assert!(
        asked.iter().any(|f| f[12..14] == [0x08, 0x06]),
        "ARP request"
    );

    t.arp(ArpOperation::Reply, ue);
    t.run(2);
    assert_eq!(t.count(0, "rx_frames"), 1, "the reply reached worker 0");
    assert_eq!(t.count(1, "rx_frames"), 0);
    assert_eq!(t.count(0, "neighbors_shared"), 1);
    assert_eq!(t.count(1, "neighbors_from_peers"), 1);
    assert_eq!(
        udp_payloads_to(&t.received(), ue),
        vec![b"SIP/2.0 401 Unauthorized\r\n\r\n".to_vec()],
        "the held message left once worker 1 learned the neighbour"
    );

    send(&t, b"SIP/2.0 401 Unauthorized\r\n\r\nagain");
    t.run(2);
    assert_eq!(
        udp_payloads_to(&t.received(), ue),
        vec![b"SIP/2.0 401 Unauthorized\r\n\r\nagain".to_vec()]
    );
    assert_eq!(t.count(1, "solicitations"), 1, "no second solicitation");
    assert_eq!(t.count(1, "drop_egress_no_neighbor"), 0);
}

/// The port steers by `queue_for_key` of the source address, but the workers own UEs by an
/// RSS table that gives every UE to worker 1 (a NIC whose hash the port cannot reproduce):
/// every frame of a UE steered to queue 0 is a stray. The clear REGISTER and the protected
/// message both reach the slowpath through worker 1, which holds the UE and its SAs.
#[test]
fn strays_are_handed_to_the_owner_clear_and_esp() {
    let owner = Steering::Rss(RssSteering {
        key: [0x6d, 0x5a].repeat(20),
        reta: vec![1],
        input: RssInput::L3Src,
    });
    let mut t = bed(2, owner);
    // Lands on queue 0 by the port's steering, owned by worker 1.
    let ue = ue_owned_by(&Steering::UeKey { queues: 2 }, 0);

    t.arp(ArpOperation::Request, ue);
    t.send(
        EthernetProtocol::Ipv4,
        PCSCF_MAC,
        &udp_v4(
            ue,
            PCSCF_V4,
            5060,
            5060,
            b"REGISTER sip:ims.example SIP/2.0\r\n\r\n",
        ),
    );
    t.run(3);
    let got = t.sip_events();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0.ue, got[0].1), (IpAddr::V4(ue), None));
    assert_eq!(t.count(0, "handoff_out"), 1);
    assert_eq!(t.count(1, "handoff_in"), 1);
    assert_eq!(t.count(1, "sip_in"), 1);
    assert_eq!(t.count(0, "sip_in"), 0);
    assert_eq!(t.count(1, "ues"), 1);
    assert_eq!(t.count(0, "ues"), 0);
    // The 401 from worker 1 reaches the UE: the neighbour came from worker 0's ARP.
    t.cmds[1]
        .send(WorkerCommand::Send {
            flow: got[0].0,
            bytes: b"SIP/2.0 401 Unauthorized\r\n\r\n".to_vec(),
            connect_if_absent: false,
        })
        .unwrap();
    t.run(2);
    assert_eq!(udp_payloads_to(&t.received(), ue).len(), 1);

    // SAs installed by the owner; ESP arriving on queue 0 is decrypted by worker 1.
    let spi_pc = t.table.allocate().unwrap();
    let spi_ps = t.table.allocate().unwrap();
    t.cmds[1]
        .send(WorkerCommand::InstallSaSet(Box::new(sa_set(
            ue.into(),
            PCSCF_V4.into(),
            suite(),
            spi_pc,
            spi_ps,
        ))))
        .unwrap();
    t.run(1);
    assert!(t.workers[1].has_ue(&IpAddr::V4(ue)));
    let mut sa = OutboundSa::new(spi_ps, &suite()).unwrap();
    let body = b"MESSAGE sip:ims.example SIP/2.0\r\n\r\n";
    let ip = udp_v4(ue, PCSCF_V4, PORT_UC, PORT_PS, body);
    let esp = encapsulate(&mut sa, &ip).unwrap();
    t.send(EthernetProtocol::Ipv4, PCSCF_MAC, &esp);
    t.run(3);
    let got = t.sip_events();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, Some(spi_ps));
    assert_eq!(got[0].2, body.to_vec());
    assert_eq!(t.count(1, "esp_in"), 1);
    assert_eq!(t.count(0, "drop_esp_stray"), 0);
    assert_eq!(t.count(0, "handoff_out"), 2);
    assert_eq!(t.count(0, "drop_handoff_full"), 0);
}

/// Three workers: a UE's ARP lands on queue 0, whose worker answers it and tells the UE's
/// owner alone (the others never send to that UE); the gateway's answer to the workers' own
/// solicitations is told to every worker, which then count no unresolved gateway.
#[test]
fn a_ue_entry_goes_to_its_owner_alone_and_a_gateway_to_every_worker() {
    let steering = Steering::UeKey { queues: 3 };
    let gw = Ipv4Addr::new(10, 0, 0, 254);
    let mut t = bed_with(3, steering.clone(), Some(gw));
    t.run(1);
    for w in 0..3 {
        assert_eq!(
            t.count(w, "solicitations"),
            1,
            "worker {w} asked for the gateway"
        );
        assert_eq!(t.count(w, "gateways_unresolved"), 1);
    }
    t.received();

    let ue = ue_owned_by(&steering, 2);
    t.arp(ArpOperation::Request, ue);
    t.run(2);
    assert_eq!(t.count(0, "arp_replies"), 1);
    assert_eq!(t.count(0, "neighbors_shared"), 1);
    assert_eq!(t.count(2, "neighbors_from_peers"), 1, "the owner learns it");
    assert_eq!(t.count(1, "neighbors_from_peers"), 0, "not worker 1");

    t.arp(ArpOperation::Reply, gw);
    t.run(2);
    assert_eq!(t.count(0, "neighbors_shared"), 2);
    for w in 1..3 {
        assert_eq!(t.count(w, "neighbors_from_peers"), u64::from(w == 2) + 1);
    }
    for w in 0..3 {
        assert_eq!(t.count(w, "gateways_unresolved"), 0, "worker {w}");
        assert_eq!(
            t.count(w, "solicitations"),
            1,
            "worker {w}: no second request"
        );
    }
}
