//! Worker rx harness shared by `nopanic_worker.rs` and the `l2_frame` fuzz target: a worker
//! on an in-memory port with one installed SA set takes arbitrary Ethernet frames, IP
//! packets, clear and ESP-protected UDP/TCP (checksums fixed so they reach the stacks) and a
//! scripted TCP handshake followed by arbitrary stream bytes, so input reaches L2, ARP/ND/ICMP,
//! reassembly, ESP, the selector checks, the per-UE smoltcp stacks and the SIP framer. The
//! bed (addresses, SA set, worker on a pair) is the scenario tests' `support` module, which
//! the including crate declares next to this one.

use std::collections::HashMap;
use std::net::IpAddr;

use akagate_fastpath::esp::{EspError, InboundSa, OutboundSa};
use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::reasm::ReasmConfig;
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::stack::StackConfig;
use akagate_fastpath::worker::{InboundTable, Worker};
use akagate_sys::mempair::{MemPairConfig, MemQueue};
use akagate_sys::{BufLayout, PacketBuf, PortQueue};
use crossbeam_channel::{Receiver, Sender};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    ArpOperation, EthernetAddress, EthernetProtocol, Ipv4Cidr, Ipv6Cidr, TcpPacket,
};
use std::sync::Arc;

use crate::esp::{ip_header, suite_at, SUITE_COUNT};
use crate::input::{put_chunk, Input};
use crate::support::{
    arp, encapsulate, eth_frame, sa_set, ue_sas, worker_config, worker_on_pair, PairSizes,
    PCSCF_MAC, PCSCF_V4, PCSCF_V6, PORT_PC, PORT_PS, PORT_UC, SIP_PORT, UE_MAC, UE_V4, UE_V6,
};

/// How far one input got.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to the worker.
    pub frames: u64,
    /// SIP messages the worker passed up.
    pub sip_events: usize,
    /// TCP handshakes the harness completed.
    pub handshakes: usize,
}

/// The harness's view of one TCP connection it opened.
struct Conn {
    src: u16,
    dst: u16,
    esp: bool,
    snd_nxt: u32,
    rcv_nxt: Option<u32>,
}

struct Bed {
    worker: Worker<MemQueue>,
    ue: MemQueue,
    events: Receiver<WorkerEvent>,
    v6: bool,
    /// UE-side outbound SAs by (UE port, P-CSCF port) and inbound SAs by SPI.
    out: HashMap<(u16, u16), OutboundSa>,
    inbound: HashMap<u32, InboundSa>,
    /// Sets the UE takes, oldest first, whose SAs it has not built yet (keying them costs
    /// more than most inputs; [`Bed::ue_sas`] builds them when ESP is first used).
    unkeyed: Vec<(u32, u32)>,
    now: Instant,
    stats: Stats,
    conn: Option<Conn>,
    /// The slowpath's side of the command queue (session inputs only; else dropped).
    cmds: Option<Sender<WorkerCommand>>,
    table: Arc<InboundTable>,
    suite_ix: usize,
    /// The (spi_pc, spi_ps) of the sets installed, newest last.
    sets: Vec<(u32, u32)>,
    /// A second set was installed (its SAs reuse the UE's SPIs).
    reinstalled: bool,
}

/// RFC 1071 checksum over the pseudo header and a UDP/TCP segment whose checksum is zero.
fn l4_checksum(ip_hdr: &[u8], proto: u8, seg: &[u8]) -> u16 {
    let addrs = if ip_hdr[0] >> 4 == 4 {
        &ip_hdr[12..20]
    } else {
        &ip_hdr[8..40]
    };
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(addrs);
    add(&[0, proto]);
    add(&(seg.len() as u32).to_be_bytes());
    add(seg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Bed {
    fn new(suite_ix: usize, v6: bool, session: bool) -> Bed {
        // The scenario tests' worker, with every table and buffer small so that inputs reach
        // their limits.
        let mut wcfg = worker_config(
            0,
            PCSCF_MAC,
            vec![Ipv4Cidr::new(PCSCF_V4, 24)],
            vec![Ipv6Cidr::new(PCSCF_V6, 64)],
        );
        wcfg.l2.max_neighbors = 8;
        wcfg.stack = StackConfig {
            tcp_rx_buf: 4096,
            tcp_tx_buf: 4096,
            max_sip_header: 2048,
            max_sip_body: 2048,
            max_pending: 8192,
            ..StackConfig::default()
        };
        wcfg.reasm = ReasmConfig {
            max_bytes: 16 * 1024,
            max_datagrams: 4,
            timeout: Duration::from_secs(2),
        };
        wcfg.commands_per_loop = 4;
        wcfg.max_ues = 4;
        wcfg.timer_slots = 64;
        let sizes = PairSizes {
            pair: MemPairConfig {
                ring_size: 64,
                pool_size: 192,
                layout: BufLayout::STANDARD,
                ..MemPairConfig::default()
            },
            table: 64,
            events: 64,
            commands: 4,
        };
        // Unless the input is a session, the command sender is dropped once the SA set is
        // queued, as the slowpath never speaks again.
        let w = worker_on_pair(wcfg, &sizes);
        let suite = suite_at(suite_ix);
        let spi_pc = w.table.allocate().expect("spi");
        let spi_ps = w.table.allocate().expect("spi");
        let (ue_ip, local): (IpAddr, IpAddr) = if v6 {
            (UE_V6.into(), PCSCF_V6.into())
        } else {
            (UE_V4.into(), PCSCF_V4.into())
        };
        let set = sa_set(ue_ip, local, suite.clone(), spi_pc, spi_ps);
        w.cmds
            .send(WorkerCommand::InstallSaSet(Box::new(set)))
            .expect("command queue");
        let cmds = session.then_some(w.cmds);
        let mut bed = Bed {
            worker: w.worker,
            ue: w.ue,
            events: w.events,
            v6,
            out: HashMap::new(),
            inbound: HashMap::new(),
            unkeyed: vec![(spi_pc, spi_ps)],
            now: w.now,
            stats: Stats::default(),
            conn: None,
            cmds,
            table: w.table,
            suite_ix,
            sets: vec![(spi_pc, spi_ps)],
            reinstalled: false,
        };
        bed.step();
        // RFC 826: an ARP request for us teaches the worker the UE's MAC.
        let request = arp(
            ArpOperation::Request,
            (UE_MAC, UE_V4),
            (EthernetAddress([0; 6]), PCSCF_V4),
        );
        bed.send_eth(0x0806, &request);
        bed
    }

    fn send_frame(&mut self, frame: &[u8]) {
        let Some(mut b) = self.ue.alloc() else {
            return;
        };
        if b.fill(frame).is_err() {
            self.ue.free(b);
            return;
        }
        let mut v = vec![b];
        self.ue.tx_burst(&mut v);
        for b in v {
            self.ue.free(b);
        }
        self.step();
    }

    fn send_eth(&mut self, ethertype: u16, payload: &[u8]) {
        let ethertype = EthernetProtocol::from(ethertype);
        self.send_frame(&eth_frame(UE_MAC, PCSCF_MAC, ethertype, payload));
    }

    fn send_ip(&mut self, pkt: &[u8]) {
        let et = if pkt.first().is_some_and(|b| b >> 4 == 6) {
            0x86dd
        } else {
            0x0800
        };
        self.send_eth(et, pkt);
    }

    /// Sends a UDP/TCP segment from the UE, in clear or through the UE's outbound SA.
    fn send_l4(&mut self, inp: &mut Input, proto: u8, mut seg: Vec<u8>, esp: bool) {
        if proto == 17 && seg.len() >= 8 {
            let n = seg.len() as u16;
            seg[4..6].copy_from_slice(&n.to_be_bytes());
        }
        let (hdr, _) = ip_header(inp, self.v6, proto, seg.len());
        let at = if proto == 17 { 6 } else { 16 };
        if seg.len() >= at + 2 {
            seg[at..at + 2].fill(0);
            let c = l4_checksum(&hdr, proto, &seg);
            seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        let inner = [hdr, seg].concat();
        if !esp {
            return self.send_ip(&inner);
        }
        let key = match self.conn.as_ref().filter(|c| c.esp) {
            Some(c) if proto == 6 => (c.src, c.dst),
            _ => (PORT_UC, PORT_PS),
        };
        self.ue_sas();
        let Some(sa) = self.out.get_mut(&key) else {
            return;
        };
        if let Ok(pkt) = encapsulate(sa, &inner) {
            self.send_ip(&pkt);
        }
    }

    /// A clear segment from source address `host` of the UE's subnet instead of the UE.
    fn send_spoofed(&mut self, inp: &mut Input, host: u8, proto: u8, mut seg: Vec<u8>) {
        if proto == 17 {
            let n = seg.len() as u16;
            seg[4..6].copy_from_slice(&n.to_be_bytes());
        }
        let (mut hdr, _) = ip_header(inp, self.v6, proto, seg.len());
        if self.v6 {
            hdr[23] = host;
        } else {
            hdr[15] = host;
            let mut p = smoltcp::wire::Ipv4Packet::new_unchecked(&mut hdr[..]);
            p.fill_checksum();
        }
        let at = if proto == 17 { 6 } else { 16 };
        if seg.len() >= at + 2 {
            seg[at..at + 2].fill(0);
            let c = l4_checksum(&hdr, proto, &seg);
            seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        self.send_ip(&[hdr, seg].concat());
    }

    /// Runs the worker once and takes what it sent to the UE; learns the SYN-ACK of `conn`.
    fn step(&mut self) {
        self.worker.run_once(self.now);
        assert_eq!(
            self.worker.sip_port_use(),
            self.worker.sip_port_use_recounted(),
            "the SIP port's kept sums drifted"
        );
        self.now += Duration::from_millis(1);
        let mut rx: Vec<PacketBuf> = Vec::new();
        self.ue.rx_burst(&mut rx, 64);
        for b in rx {
            let frame = b.data().to_vec();
            self.ue.free(b);
            self.take_frame(&frame);
        }
        for ev in self.events.try_iter() {
            if matches!(ev, WorkerEvent::Sip(_)) {
                self.stats.sip_events += 1;
            }
        }
    }

    fn take_frame(&mut self, frame: &[u8]) {
        let Some(ip) = frame.get(14..) else {
            return;
        };
        let (proto, off) = match ip.first().map(|b| b >> 4) {
            Some(4) => (ip[9], usize::from(ip[0] & 15) * 4),
            Some(6) if ip.len() >= 40 => (ip[6], 40),
            _ => return,
        };
        let mut clear = ip.to_vec();
        let (proto, off) = if proto == 50 {
            let Some(spi) = ip.get(off..off + 4) else {
                return;
            };
            let spi = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]);
            self.ue_sas();
            let Some(sa) = self.inbound.get_mut(&spi) else {
                panic!("worker used unknown outbound SPI {spi:#x}");
            };
            let n = clear.len();
            let r = match sa.decapsulate(&mut clear, 0..n) {
                Ok(r) => r,
                // A session's re-installed set reuses the UE's SPIs (the harness keeps
                // SPI_UC/SPI_US) with a fresh sequence counter, so the UE's window may have
                // seen its numbers from the older set: a harness artefact, not a worker fault.
                Err(EspError::Replayed | EspError::TooOld) if self.reinstalled => return,
                Err(e) => panic!("worker's ESP does not decapsulate: {e:?}"),
            };
            clear = clear[r].to_vec();
            match clear[0] >> 4 {
                4 => (clear[9], usize::from(clear[0] & 15) * 4),
                _ => (clear[6], 40),
            }
        } else {
            (proto, off)
        };
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if proto != 6 {
            return;
        }
        let Ok(tcp) = TcpPacket::new_checked(&clear[off..]) else {
            return;
        };
        if tcp.dst_port() == conn.src && tcp.syn() && tcp.ack() && conn.rcv_nxt.is_none() {
            conn.rcv_nxt = Some(tcp.seq_number().0.wrapping_add(1) as u32);
        }
    }

    /// The UE takes the SAs of the sets installed so far (each replaces those of the same
    /// ports and SPIs), in the order they were installed.
    fn ue_sas(&mut self) {
        if self.unkeyed.is_empty() {
            return;
        }
        let suite = suite_at(self.suite_ix);
        for (spi_pc, spi_ps) in std::mem::take(&mut self.unkeyed) {
            let (out, inbound) = ue_sas(&suite, spi_pc, spi_ps);
            self.out.extend(out);
            self.inbound.extend(inbound);
        }
    }

    /// The UE's and our address.
    fn addrs(&self) -> (IpAddr, IpAddr) {
        if self.v6 {
            (UE_V6.into(), PCSCF_V6.into())
        } else {
            (UE_V4.into(), PCSCF_V4.into())
        }
    }

    /// Queues a slowpath command and runs the worker (session inputs only).
    fn command(&mut self, c: WorkerCommand) {
        let Some(tx) = &self.cmds else {
            return;
        };
        if tx.try_send(c).is_ok() {
            self.step();
        }
    }

    /// Installs a new SA set with fresh SPIs (a re-registration keeping the ports); the UE
    /// side takes its SAs, which replace those of the same ports.
    fn reinstall(&mut self) {
        let (Ok(spi_pc), Ok(spi_ps)) = (self.table.allocate(), self.table.allocate()) else {
            return;
        };
        let (ue, local) = self.addrs();
        let set = sa_set(ue, local, suite_at(self.suite_ix), spi_pc, spi_ps);
        self.unkeyed.push((spi_pc, spi_ps));
        self.sets.push((spi_pc, spi_ps));
        self.reinstalled = true;
        self.command(WorkerCommand::InstallSaSet(Box::new(set)));
    }

    /// A TCP segment of the harness connection (flags: RFC 9293 header bits).
    fn segment(&self, flags: u8, payload: &[u8]) -> Option<Vec<u8>> {
        let c = self.conn.as_ref()?;
        let mut s = Vec::with_capacity(20 + payload.len());
        s.extend_from_slice(&c.src.to_be_bytes());
        s.extend_from_slice(&c.dst.to_be_bytes());
        s.extend_from_slice(&c.snd_nxt.to_be_bytes());
        s.extend_from_slice(&c.rcv_nxt.unwrap_or(0).to_be_bytes());
        s.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        s.extend_from_slice(payload);
        Some(s)
    }
}

/// Runs one harness input: frames from the UE only.
pub fn run(data: &[u8]) -> Stats {
    run_with(data, false)
}

/// Runs one harness input as a session: frames from the UE and from spoofed sources
/// interleaved with the slowpath's commands (sends, closes, SA sets installed and removed).
pub fn run_session(data: &[u8]) -> Stats {
    run_with(data, true)
}

/// A flow between the UE and us the harness may name in a command.
fn command_flow(inp: &mut Input, ue: IpAddr, local: IpAddr) -> Flow {
    let (ue_port, local_port) = [
        (PORT_UC, PORT_PS),
        (crate::support::PORT_US, PORT_PC),
        (40000 + u16::from(inp.u8()), SIP_PORT),
        (inp.u16(), inp.u16()),
    ][usize::from(inp.u8() % 4)];
    Flow {
        ue,
        ue_port,
        local,
        local_port,
        proto: if inp.u8() & 1 == 1 {
            Transport::Udp
        } else {
            Transport::Tcp
        },
    }
}

fn run_with(data: &[u8], session: bool) -> Stats {
    let mut inp = Input::new(data);
    let first = inp.u8();
    let mut bed = Bed::new(
        usize::from(first >> 1) % SUITE_COUNT,
        first & 1 == 1,
        session,
    );
    let ops = if session { 11 } else { 7 };
    let mut records = 0;
    while !inp.is_empty() && records < 48 {
        records += 1;
        match inp.u8() % ops {
            0 => {
                let f = inp.chunk(1600);
                bed.send_frame(f);
            }
            1 => {
                let p = inp.chunk(1600);
                bed.send_ip(p);
            }
            // Clear UDP/TCP to the SIP port or (to be refused) a protected port.
            2 => {
                let tcp = inp.u8() & 1 == 1;
                let dst = [SIP_PORT, PORT_PS, PORT_PC, 9][usize::from(inp.u8() % 4)];
                let mut seg = inp.chunk(1400).to_vec();
                seg.resize(seg.len().max(if tcp { 20 } else { 8 }), 0);
                seg[0..2].copy_from_slice(&PORT_UC.to_be_bytes());
                seg[2..4].copy_from_slice(&dst.to_be_bytes());
                bed.send_l4(&mut inp, if tcp { 6 } else { 17 }, seg, false);
            }
            // UDP/TCP through ESP with the selector ports, or arbitrary ones.
            3 => {
                let tcp = inp.u8() & 1 == 1;
                let keep = inp.u8() & 1 == 1;
                let mut seg = inp.chunk(1400).to_vec();
                seg.resize(seg.len().max(if tcp { 20 } else { 8 }), 0);
                if !keep {
                    seg[0..2].copy_from_slice(&PORT_UC.to_be_bytes());
                    seg[2..4].copy_from_slice(&PORT_PS.to_be_bytes());
                }
                bed.send_l4(&mut inp, if tcp { 6 } else { 17 }, seg, true);
            }
            // Open a TCP connection (clear to 5060 or port_uc -> port_ps over ESP).
            4 => {
                let esp = inp.u8() & 1 == 1;
                let (src, dst) = if esp {
                    (PORT_UC, PORT_PS)
                } else {
                    (40000 + u16::from(inp.u8()), SIP_PORT)
                };
                bed.conn = Some(Conn {
                    src,
                    dst,
                    esp,
                    snd_nxt: 1000,
                    rcv_nxt: None,
                });
                let syn = bed.segment(0x02, &[]).unwrap_or_default();
                bed.send_l4(&mut inp, 6, syn, esp);
                if bed.conn.as_ref().is_some_and(|c| c.rcv_nxt.is_some()) {
                    if let Some(c) = bed.conn.as_mut() {
                        c.snd_nxt += 1;
                    }
                    let ack = bed.segment(0x10, &[]).unwrap_or_default();
                    bed.send_l4(&mut inp, 6, ack, esp);
                    bed.stats.handshakes += 1;
                } else {
                    bed.conn = None;
                }
            }
            // Stream bytes on the open connection.
            5 => {
                let payload = inp.chunk(1200).to_vec();
                if let Some(seg) = bed.segment(0x18, &payload) {
                    let esp = bed.conn.as_ref().is_some_and(|c| c.esp);
                    bed.send_l4(&mut inp, 6, seg, esp);
                    if let Some(c) = bed.conn.as_mut() {
                        c.snd_nxt = c.snd_nxt.wrapping_add(payload.len() as u32);
                    }
                }
            }
            6 => {
                bed.now += Duration::from_millis(u64::from(inp.u16()));
                bed.step();
            }
            // The slowpath sends or closes on a flow (ours, the UE's, or arbitrary).
            7 => {
                let (ue, local) = bed.addrs();
                let flow = command_flow(&mut inp, ue, local);
                let c = match inp.u8() % 3 {
                    0 => WorkerCommand::Close(flow),
                    n => WorkerCommand::Send {
                        flow,
                        bytes: inp.chunk(3000).to_vec(),
                        connect_if_absent: n == 2,
                    },
                };
                bed.command(c);
            }
            // A set installed (re-registration) or removed (the newest, the oldest, or
            // SPIs nobody installed).
            8 => match inp.u8() % 4 {
                0 => bed.reinstall(),
                n => {
                    let (spi_pc, spi_ps) = match n {
                        1 => bed.sets.pop().unwrap_or_default(),
                        2 if !bed.sets.is_empty() => bed.sets.remove(0),
                        _ => (inp.u32(), inp.u32()),
                    };
                    let ue = bed.addrs().0;
                    bed.command(WorkerCommand::RemoveSaSet { ue, spi_pc, spi_ps });
                }
            },
            // Clear TCP/UDP to the SIP port from another (spoofed) source address.
            9 => {
                let tcp = inp.u8() & 1 == 1;
                let host = inp.u8();
                let mut seg = inp.chunk(1400).to_vec();
                seg.resize(seg.len().max(if tcp { 20 } else { 8 }), 0);
                seg[2..4].copy_from_slice(&SIP_PORT.to_be_bytes());
                if tcp {
                    seg[13] = 0x02; // SYN
                }
                bed.send_spoofed(&mut inp, host, if tcp { 6 } else { 17 }, seg);
            }
            _ => {
                // Time passes in large steps: idle and message deadlines, TCP timeouts.
                bed.now += Duration::from_secs(u64::from(inp.u8()));
                bed.step();
            }
        }
    }
    bed.stats.frames = bed.ue.counters().snapshot().tx_packets;
    let rx = bed.worker.counters().get("rx_frames").unwrap_or(0);
    assert_eq!(rx, bed.stats.frames, "every frame sent reached the worker");
    if std::env::var_os("HARNESS_DEBUG").is_some() {
        eprintln!(
            "{:?}",
            bed.worker
                .counters()
                .snapshot()
                .iter()
                .filter(|c| c.1 > 0)
                .collect::<Vec<_>>()
        );
    }
    bed.stats
}

/// Seed inputs: for each family, a clear UDP REGISTER to 5060 and a TCP connection over ESP
/// carrying a SIP message.
pub fn seeds() -> Vec<Vec<u8>> {
    let msg = b"OPTIONS sip:pcscf SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.7:31800;branch=z9hG4bK1\r\nContent-Length: 2\r\n\r\nhi";
    let mut out = Vec::new();
    for first in [0u8, 1, 2 * 6, 2 * 7 + 1] {
        let mut v = vec![first];
        let mut udp = vec![0u8; 8];
        udp.extend_from_slice(msg);
        // Clear UDP to 5060; the IP header control byte.
        v.extend_from_slice(&[2, 0, 0]);
        put_chunk(&mut v, &udp);
        v.push(0);
        // Handshake over ESP (SYN and ACK header bytes), then the message.
        v.extend_from_slice(&[4, 1, 0, 0]);
        v.push(5);
        put_chunk(&mut v, msg);
        v.push(0);
        // Let the stack run for 20 ms.
        v.extend_from_slice(&[6, 0, 20]);
        out.push(v);
    }
    out
}
