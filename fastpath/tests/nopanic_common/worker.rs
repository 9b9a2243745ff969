//! Worker rx harness shared by `nopanic_worker.rs` and the `l2_frame` fuzz target: a worker
//! on an in-memory port with one installed SA set takes arbitrary Ethernet frames, IP
//! packets, clear and ESP-protected UDP/TCP (checksums fixed so they reach the stacks) and a
//! scripted TCP handshake followed by arbitrary stream bytes, so input reaches L2, ARP/ND/ICMP,
//! reassembly, ESP, the selector checks, the per-UE smoltcp stacks and the SIP framer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use akagate_fastpath::esp::{InboundSa, OutboundSa};
use akagate_fastpath::ipc::{SaSet, WorkerCommand, WorkerEvent};
use akagate_fastpath::l2::L2Config;
use akagate_fastpath::reasm::ReasmConfig;
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::stack::StackConfig;
use akagate_fastpath::worker::{InboundTable, Worker, WorkerConfig};
use akagate_sys::mempair::{mem_pair, MemPairConfig, MemQueue};
use akagate_sys::{BufLayout, PacketBuf, Port, PortQueue};
use crossbeam_channel::{bounded, Receiver};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr, Ipv6Cidr, TcpPacket};

use crate::esp::{ip_header, suites};
use crate::input::{put_chunk, Input};

const PCSCF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const UE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const PCSCF4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const UE4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
const PCSCF6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const UE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
const SIP_PORT: u16 = 5060;
const PORT_PC: u16 = 5066;
const PORT_PS: u16 = 5064;
const PORT_UC: u16 = 31800;
const PORT_US: u16 = 31900;
const SPI_UC: u32 = 0x0100_0001;
const SPI_US: u32 = 0x0100_0002;

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
    now: Instant,
    stats: Stats,
    conn: Option<Conn>,
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
    fn new(suite_ix: usize, v6: bool) -> Bed {
        let cfg = MemPairConfig {
            ring_size: 64,
            pool_size: 192,
            layout: BufLayout::STANDARD,
            ..MemPairConfig::default()
        };
        let (mut a, mut b) = mem_pair(&cfg).expect("mem pair");
        let wq = a.take_queues().pop().expect("queue");
        let ue = b.take_queues().pop().expect("queue");
        let table = Arc::new(InboundTable::with_capacity(64).expect("table"));
        let (ev_tx, events) = bounded(64);
        let (cmd_tx, cmd_rx) = bounded(4);
        let now = Instant::from_millis(10_000);
        let wcfg = WorkerConfig {
            id: 0,
            l2: L2Config {
                mac: EthernetAddress(PCSCF_MAC),
                ipv4: vec![Ipv4Cidr::new(PCSCF4, 24)],
                ipv6: vec![Ipv6Cidr::new(PCSCF6, 64)],
                gateway_v4: None,
                gateway_v6: None,
                max_neighbors: 8,
                neighbor_ttl: Duration::from_secs(300),
                solicit_retry: Duration::from_secs(1),
            },
            stack: StackConfig {
                tcp_rx_buf: 4096,
                tcp_tx_buf: 4096,
                max_sip_header: 2048,
                max_sip_body: 2048,
                max_pending: 8192,
                ..StackConfig::default()
            },
            reasm: ReasmConfig {
                max_bytes: 16 * 1024,
                max_datagrams: 4,
                timeout: Duration::from_secs(2),
            },
            sip_port: SIP_PORT,
            burst: 32,
            commands_per_loop: 4,
            max_ues: 4,
            link_mtu: 1500,
            timer_tick: Duration::from_millis(1),
            timer_slots: 64,
        };
        let worker = Worker::new(wcfg, wq, table.clone(), ev_tx, cmd_rx, now);
        let suite = suites().swap_remove(suite_ix);
        let spi_pc = table.allocate().expect("spi");
        let spi_ps = table.allocate().expect("spi");
        let (ue_ip, local): (IpAddr, IpAddr) = if v6 {
            (UE6.into(), PCSCF6.into())
        } else {
            (UE4.into(), PCSCF4.into())
        };
        let set = SaSet {
            ue: ue_ip,
            local,
            suite: suite.clone(),
            spi_pc,
            spi_ps,
            spi_uc: SPI_UC,
            spi_us: SPI_US,
            port_pc: PORT_PC,
            port_ps: PORT_PS,
            port_uc: PORT_UC,
            port_us: PORT_US,
        };
        cmd_tx
            .send(WorkerCommand::InstallSaSet(Box::new(set)))
            .expect("command queue");
        let sa = |spi| OutboundSa::new(spi, &suite).expect("suite");
        let out = HashMap::from([
            ((PORT_UC, PORT_PS), sa(spi_ps)),
            ((PORT_US, PORT_PC), sa(spi_pc)),
        ]);
        let isa = |spi| InboundSa::new(spi, &suite).expect("suite");
        let inbound = HashMap::from([(SPI_UC, isa(SPI_UC)), (SPI_US, isa(SPI_US))]);
        let mut bed = Bed {
            worker,
            ue,
            events,
            v6,
            out,
            inbound,
            now,
            stats: Stats::default(),
            conn: None,
        };
        bed.step();
        // RFC 826: an ARP request for us teaches the worker the UE's MAC.
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&UE_MAC);
        arp.extend_from_slice(&UE4.octets());
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&PCSCF4.octets());
        bed.send_eth(0x0806, &arp);
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
        let mut f = PCSCF_MAC.to_vec();
        f.extend_from_slice(&UE_MAC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        self.send_frame(&f);
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
        let Some(sa) = self.out.get_mut(&key) else {
            return;
        };
        let room = 64;
        let mut buf = vec![0u8; room + inner.len() + room];
        buf[room..room + inner.len()].copy_from_slice(&inner);
        if let Ok(r) = sa.encapsulate(&mut buf, room..room + inner.len()) {
            let pkt = buf[r].to_vec();
            self.send_ip(&pkt);
        }
    }

    /// Runs the worker once and takes what it sent to the UE; learns the SYN-ACK of `conn`.
    fn step(&mut self) {
        self.worker.run_once(self.now);
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
            let Some(sa) = self.inbound.get_mut(&spi) else {
                panic!("worker used unknown outbound SPI {spi:#x}");
            };
            let n = clear.len();
            let r = sa
                .decapsulate(&mut clear, 0..n)
                .expect("worker's ESP decapsulates");
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

/// Runs one harness input.
pub fn run(data: &[u8]) -> Stats {
    let mut inp = Input::new(data);
    let first = inp.u8();
    let mut bed = Bed::new(usize::from(first >> 1) % suites().len(), first & 1 == 1);
    let mut records = 0;
    while !inp.is_empty() && records < 48 {
        records += 1;
        match inp.u8() % 7 {
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
            _ => {
                bed.now += Duration::from_millis(u64::from(inp.u16()));
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
