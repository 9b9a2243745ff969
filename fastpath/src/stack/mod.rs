//! One small smoltcp TCP/IP stack per UE (Medium::Ip): listeners on the SIP ports, TCP
//! connections with SIP framing, UDP datagrams, and the slowpath's send/connect/close.
//!
//! The stack is sans-IO: inner IP packets and `now` go in, IP packets and [`WorkerEvent`]s
//! come out. The worker owns ESP, Ethernet and the choice of which ports to listen on. It drives
//! the stack without copies ([`UeStack::input`] borrows the decrypted packet, [`UeStack::poll_with`]
//! writes output into the worker's port buffers); [`UeStack::push_inbound`] / [`UeStack::poll`] /
//! [`UeStack::pop_outbound`] queue owned packets instead (tests, the UE simulator).

pub mod device;
pub mod framing;
pub mod ports;
pub mod tls;

use std::collections::VecDeque;
use std::net::IpAddr;

use smallvec::SmallVec;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint};

use crate::ipc::{Flow, SipIn, Transport, WorkerEvent};
use crate::wire::{Direction, IpRepr};
use device::QueueDevice;
pub use device::{PacketSink, SinkDevice};
use framing::{Frame, SipFramer};
use ports::{segment, transport_ports, Segment};

/// Sizes and limits of one per-UE stack; all memory of a stack is bounded by these.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// TCP receive buffer per connection, bytes.
    pub tcp_rx_buf: usize,
    /// TCP send buffer per connection, bytes.
    pub tcp_tx_buf: usize,
    /// UDP receive buffer per bound port, bytes.
    pub udp_rx_buf: usize,
    /// UDP send buffer per bound port, bytes.
    pub udp_tx_buf: usize,
    /// UDP datagrams held per direction and port.
    pub udp_packets: usize,
    /// TCP connections (accepted + opened) per UE; listeners are not re-armed beyond it.
    pub max_tcp_conns: usize,
    /// Largest SIP header section accepted on TCP.
    pub max_sip_header: usize,
    /// Largest SIP body accepted on TCP.
    pub max_sip_body: usize,
    /// Bytes queued per connection beyond the TCP send buffer (while connecting or blocked).
    pub max_pending: usize,
    /// IP MTU of the inner packets (path MTU minus the ESP overhead).
    pub ip_mtu: usize,
    /// Packets held in each direction of the in-memory device.
    pub max_queue: usize,
    /// TCP connect / retransmission timeout; the connection is aborted after it.
    pub tcp_timeout: Duration,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            // Receive: 4 KiB, three segments (MSS 1360 at the 1400-byte inner MTU). The framer
            // copies every byte out at the poll that follows the segment, so the window
            // reopens at once; but smoltcp (as RFC 1122 4.2.3.3's receiver rule) sends a
            // window update at once when a read frees half the buffer, so with 2 KiB every
            // REGISTER over 1 KiB cost an ACK of its own (ESP-encapsulated, with a poll) where
            // with 4 KiB it rides on the answer. Send: a segment and a half; the send path
            // feeds larger messages from `pending` as the peer acknowledges. Neither bounds the
            // message size. smoltcp sockets cannot grow their buffers, and every open
            // connection holds both, so they are what a registered UE's connection costs
            // (issue 10: 16 KiB per UE).
            tcp_rx_buf: 4 * 1024,
            tcp_tx_buf: 2 * 1024,
            udp_rx_buf: 8 * 1024,
            udp_tx_buf: 8 * 1024,
            udp_packets: 8,
            max_tcp_conns: 8,
            max_sip_header: 8 * 1024,
            max_sip_body: 64 * 1024,
            max_pending: 64 * 1024,
            ip_mtu: 1400,
            max_queue: 64,
            tcp_timeout: Duration::from_secs(32),
        }
    }
}

impl StackConfig {
    /// Largest SIP request that may go over UDP: 1300 bytes, or the path MTU minus 200 if
    /// smaller (RFC 3261 18.1.1); larger requests go over TCP.
    pub fn udp_max_request(&self) -> usize {
        1300.min(self.ip_mtu.saturating_sub(200))
    }
}

/// Why the stack refused a command or a packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    /// The inbound packet queue is full.
    #[error("stack input queue full")]
    QueueFull,
    /// No TCP connection for the flow and the command did not ask to open one.
    #[error("no connection for the flow")]
    NoConnection,
    /// The per-UE connection limit is reached.
    #[error("connection limit reached")]
    ConnLimit,
    /// More bytes queued on the connection than `max_pending`.
    #[error("send queue of the connection is full")]
    SendQueueFull,
    /// No UDP socket is bound to the flow's local port.
    #[error("no UDP socket on the local port")]
    NoUdpSocket,
    /// The UDP send buffer is full or the datagram is larger than it.
    #[error("UDP send buffer full")]
    UdpBufferFull,
    /// The flow's addresses are not this stack's.
    #[error("flow does not belong to this stack")]
    WrongFlow,
    /// smoltcp refused to open the connection (e.g. port 0).
    #[error("connect refused by the stack")]
    ConnectRefused,
    /// A UDP datagram whose IP packet, with room for ESP, would exceed what an IP length
    /// field can express (65535 bytes). Datagrams above the inner MTU but within that leave
    /// whole and are fragmented on egress (see [`UeStack::send`]).
    #[error("UDP datagram larger than an IP packet can be")]
    UdpTooLarge,
}

/// Drop and event counters of one stack; the worker sums them per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackCounters {
    /// Streams closed because SIP framing failed.
    pub framing_errors: u64,
    /// Keep-alive pings answered.
    pub pings_answered: u64,
    /// SIP messages delivered.
    pub messages_in: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// SYNs refused (answered by RST) because the connection limit was reached.
    pub conn_limit: u64,
    /// Connections dropped because the UE opened their four-tuple again through an SA.
    pub conns_replaced: u64,
    /// UDP datagrams refused because the port's receive queue was full (`udp_packets`
    /// datagrams or `udp_rx_buf` bytes waiting for the next poll).
    pub udp_queue_full: u64,
    /// TLS connections aborted: failed handshake, bad record or alert (RFC 8446 6).
    pub tls_errors: u64,
    /// Packets dropped for a wrong checksum: a TCP segment's or UDP datagram's (RFC 9293 3.1,
    /// RFC 768), or an IPv4 header's the stack checks itself (RFC 791 3.1; `UeStack::input`,
    /// `UeStack::push_inbound`).
    pub bad_checksum: u64,
}

/// The deadlines of connections on one port (the unprotected SIP port), see
/// [`UeStack::expire_conns`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnDeadlines {
    /// The handshake must complete, and a SIP message once begun must be complete, within
    /// this time.
    pub message: Duration,
    /// A connection carrying no complete message for this long is closed (`None`: never).
    pub idle: Option<Duration>,
}

/// One port's connections as [`UeStack::port_use`] counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortUse {
    /// TCP connections accepted on the port (not yet closed).
    pub conns: usize,
    /// Of those, still in the handshake (SYN-RECEIVED).
    pub half_open: usize,
    /// The earliest deadline of [`UeStack::expire_conns`] among them.
    pub deadline: Option<Instant>,
}

/// Connections [`UeStack::expire_conns`] aborted, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Still in the handshake (SYN-RECEIVED) at the message deadline.
    pub handshake: u64,
    /// A SIP message begun and not completed within the message deadline.
    pub message: u64,
    /// No complete message within the idle deadline.
    pub idle: u64,
}

/// One TCP connection and its SIP framing state.
#[derive(Debug)]
struct TcpConn {
    flow: Flow,
    /// Address of its socket's receive buffer, a hint for [`UeStack::prefetch`] (never
    /// dereferenced).
    rx_addr: usize,
    framer: SipFramer,
    /// Bytes the slowpath asked to send that did not yet fit the socket; fed to it as the
    /// window opens, so a message may be larger than the send buffer.
    pending: VecDeque<u8>,
    /// Opened by us (port_pc -> port_us) rather than accepted.
    outgoing: bool,
    /// Reached ESTABLISHED at least once.
    established: bool,
    /// Close once `pending` is flushed.
    close_requested: bool,
    /// When the connection was accepted or opened.
    opened: Instant,
    /// When its last complete SIP message (or keep-alive) arrived, else `opened`.
    last_message: Instant,
    /// Since when the framer holds the beginning of a message.
    partial_since: Option<Instant>,
    /// The TLS session of a connection on the TLS port: `framer` then takes its plaintext
    /// and `pending` its records.
    tls: Option<Box<tls::TlsSession>>,
}

/// Socket slots a stack's socket set starts with: a UE's usual peak is two sockets (the
/// connection to the SIP port and the protected one, or the listener that becomes it). The
/// set grows beyond that when needed and is freed whenever no socket is left.
const SOCKET_SLOTS: usize = 2;

/// Spare TCP sockets a thread keeps for its recycling stacks ([`UeStack::recycle_sockets`]):
/// 64 sockets with their buffers, about 290 KiB per worker at the default 2 + 2 KiB.
const SPARE_SOCKETS: usize = 64;

thread_local! {
    /// Removed TCP sockets (closed, their buffers kept) of this thread's recycling stacks,
    /// waiting for the next listener or connection of any of them, each with the address of
    /// its receive buffer (a prefetch hint, [`UeStack::prefetch`]).
    static SPARE: core::cell::RefCell<Vec<(tcp::Socket<'static>, usize)>> =
        const { core::cell::RefCell::new(Vec::new()) };
    /// How many spare sockets this thread keeps: [`SPARE_SOCKETS`], or more once
    /// [`reserve_spare_sockets`] made a reserve.
    static SPARE_CAP: core::cell::Cell<usize> = const { core::cell::Cell::new(SPARE_SOCKETS) };
}

/// Spare TCP sockets this thread keeps for its recycling stacks ([`UeStack::recycle_sockets`]).
pub fn spare_sockets() -> usize {
    SPARE.with(|p| p.try_borrow().map_or(0, |p| p.len()))
}

/// Writes one byte of every page of `buf` (its first and last byte and every 4 KiB between),
/// so the kernel backs it now rather than at the first segment: a zeroed allocation from
/// fresh heap is only mapped to the shared zero page until written.
fn first_touch(buf: &mut [u8]) {
    let last = buf.len().saturating_sub(1);
    for i in (0..buf.len()).step_by(4096).chain(core::iter::once(last)) {
        if let Some(b) = buf.get_mut(i) {
            // SAFETY: `b` is a valid, aligned, exclusive reference to a byte of `buf`; the
            // volatile write (of the zero it holds) only keeps the compiler from dropping it.
            unsafe { core::ptr::write_volatile(b, 0) };
        }
    }
}

/// Fills this thread's spare TCP sockets up to `n`, each with zeroed receive and send buffers
/// of `rx` and `tx` bytes whose pages are written now, and keeps up to `n` spares from now on
/// (at least [`SPARE_SOCKETS`]). Returns the sockets made. A worker sized for `n` UEs calls
/// it on its own thread before its loop (`Worker::reserve_sockets`), so the listeners and
/// connections of its first `n` UEs come from memory allocated and first touched at start
/// instead of a `calloc` of fresh heap and its page faults inside a registration
/// (docs/ARCHITECTURE.md, *Memory per registered UE*). Each costs what a connection holds
/// anyway: its buffers and a socket (about 4.6 KB at 2 + 2 KiB).
pub fn reserve_spare_sockets(n: usize, rx: usize, tx: usize) -> usize {
    SPARE_CAP.with(|c| c.set(c.get().max(n)));
    SPARE.with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return 0;
        };
        let made = n.saturating_sub(p.len());
        p.reserve(made);
        for _ in 0..made {
            let (mut r, mut t) = (vec![0u8; rx], vec![0u8; tx]);
            first_touch(&mut r);
            first_touch(&mut t);
            p.push(tcp_socket_with(r, t));
        }
        made
    })
}

/// A TCP socket over the buffers `rx` and `tx`, and the address of its receive buffer (the
/// vector's heap buffer, which the socket keeps where it is: smoltcp's ring never grows).
fn tcp_socket_with(rx: Vec<u8>, tx: Vec<u8>) -> (tcp::Socket<'static>, usize) {
    let rx_addr = rx.as_ptr().addr();
    let s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    (s, rx_addr)
}

/// A spare socket of this thread with buffers of exactly `rx` and `tx` bytes, if one is kept,
/// and the address of its receive buffer.
fn take_spare(rx: usize, tx: usize) -> Option<(tcp::Socket<'static>, usize)> {
    SPARE.with(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let i = p
            .iter()
            .rposition(|(s, _)| s.recv_capacity() == rx && s.send_capacity() == tx)?;
        let s = p.swap_remove(i);
        // A reserve drawn down gives back the list's room (a socket's size per entry) as it
        // goes, so what its UEs took is not held twice.
        if p.capacity() > 4 * SPARE_SOCKETS && p.len() < p.capacity() / 4 {
            let keep = (2 * p.len()).max(SPARE_SOCKETS);
            p.shrink_to(keep);
        }
        Some(s)
    })
}

/// The settings every TCP socket of a stack gets: the `timeout` of an unanswered segment,
/// and no Nagle (SIP messages are written whole; Nagle would only delay the last segment).
fn set_up_tcp_socket(s: &mut tcp::Socket<'static>, timeout: Duration) {
    s.set_timeout(Some(timeout));
    s.set_nagle_enabled(false);
}

/// A listener on `ep` from this thread's spare sockets with buffers of exactly `rx` and `tx`
/// bytes, added to `sockets` (which must have room: `UeStack::room_for_socket`): set up and
/// listening where it lies among the spares, then moved once, into the set. Its handle and
/// the address of its receive buffer; `None` (nothing changed) without such a spare.
fn arm_spare(
    sockets: &mut SocketSet<'static>,
    rx: usize,
    tx: usize,
    timeout: Duration,
    ep: IpListenEndpoint,
) -> Option<(SocketHandle, usize)> {
    SPARE.with(|p| {
        let mut p = p.try_borrow_mut().ok()?;
        let i = p
            .iter()
            .rposition(|(s, _)| s.recv_capacity() == rx && s.send_capacity() == tx)?;
        let (s, rx_addr) = &mut p[i];
        let rx_addr = *rx_addr;
        set_up_tcp_socket(s, timeout);
        s.listen(ep).ok()?;
        let handle = if i + 1 == p.len() {
            sockets.add(p.pop()?.0)
        } else {
            sockets.add(p.swap_remove(i).0)
        };
        // A reserve drawn down gives back the list's room, as [`take_spare`] does.
        if p.capacity() > 4 * SPARE_SOCKETS && p.len() < p.capacity() / 4 {
            let keep = (2 * p.len()).max(SPARE_SOCKETS);
            p.shrink_to(keep);
        }
        Some((handle, rx_addr))
    })
}

/// Keeps `s`, a TCP socket just taken out of its set whose receive buffer is at `rx_addr`,
/// as a spare of this thread (closed at once: it is in no set, so it sends nothing), unless
/// the thread keeps [`SPARE_SOCKETS`].
fn keep_spare(s: smoltcp::socket::Socket<'static>, rx_addr: usize) {
    let smoltcp::socket::Socket::Tcp(mut s) = s else {
        return;
    };
    s.abort();
    SPARE.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            if p.len() < SPARE_CAP.with(core::cell::Cell::get) {
                p.push((s, rx_addr));
            }
        }
    });
}

/// Takes a socket out of `sockets`, keeping it as a spare of the thread if it is a TCP socket
/// of a recycling stack (`recycle`: [`UeStack::recycle_sockets`]) whose receive buffer is at
/// `rx_addr`.
fn remove_from(
    sockets: &mut SocketSet<'static>,
    handle: SocketHandle,
    recycle: bool,
    rx_addr: usize,
) {
    let s = sockets.remove(handle);
    if recycle {
        keep_spare(s, rx_addr);
    }
}

/// Spare capacity an empty per-connection queue keeps (a keep-alive's worth); larger ones are
/// freed once empty, so an idle connection holds only its socket buffers.
const IDLE_KEEP: usize = 256;

impl TcpConn {
    /// Queues `bytes` for the peer, as TLS records on a TLS connection.
    fn queue(&mut self, bytes: &[u8]) -> Result<(), tls::TlsError> {
        match self.tls.as_mut() {
            Some(t) => t.send(bytes, &mut self.pending),
            None => {
                crate::copies::note(crate::copies::CopySite::StackSend, bytes.len());
                self.pending.extend(bytes);
                Ok(())
            }
        }
    }

    /// What the slowpath is told when this connection goes with its socket `s`.
    fn end_event(&self, s: &tcp::Socket<'_>) -> WorkerEvent {
        if !self.established && self.outgoing {
            WorkerEvent::ConnectFailed(self.flow)
        } else if self.pending.len() + s.send_queue() > 0 {
            // A reset (or the retransmission timeout) took bytes the UE never acknowledged:
            // a transport error for their transactions (RFC 3261 18).
            WorkerEvent::SendLost(self.flow)
        } else {
            WorkerEvent::TcpClosed(self.flow)
        }
    }

    /// Moves as much of `pending` into the socket as its send buffer takes.
    fn flush(&mut self, s: &mut tcp::Socket<'_>) {
        while !self.pending.is_empty() && s.may_send() {
            let (front, _) = self.pending.as_slices();
            match s.send_slice(front) {
                Ok(n) if n > 0 => {
                    crate::copies::note(crate::copies::CopySite::PendingToSocket, n);
                    self.pending.drain(..n);
                }
                _ => break,
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > IDLE_KEEP {
            self.pending = VecDeque::new();
        }
    }
}

/// A socket set of `slots` slots, and the address of its slots ([`UeStack::prefetch`]'s
/// hint): the vector's buffer stays where it is, since the set is never given more sockets
/// than slots (`UeStack::add_socket` resizes first).
fn new_socket_set(slots: usize) -> (SocketSet<'static>, usize) {
    let v: Vec<smoltcp::iface::SocketStorage<'static>> = Vec::with_capacity(slots);
    let base = v.as_ptr().addr();
    (SocketSet::new(v), base)
}

/// Bytes of a socket's send buffer [`prefetch_send_room`] asks for at most (24 lines).
const SEND_PREFETCH_MAX: usize = 1536;

/// Starts loading the first `len` bytes (at most [`SEND_PREFETCH_MAX`]) of where the next
/// bytes written into `s` will go, after a message was framed on it: the slowpath's answer
/// (a 401 or 200 to a REGISTER, written by the worker's Send) lands exactly there, in a buffer
/// nothing touched since the socket was made or last used, so its stores would each miss. smoltcp
/// exposes the spot only through `send`, whose closure gets the free room from the write
/// position (offset 0 while nothing is queued); it is given back untouched (0 bytes taken:
/// no state changes, and an empty ring's read position is reset to 0 as any write would).
/// Returns the address and the bytes asked for (`None`: the socket may not send).
fn prefetch_send_room(s: &mut tcp::Socket<'_>, len: usize) -> Option<(usize, usize)> {
    s.send(|room| {
        let n = len.min(room.len()).min(SEND_PREFETCH_MAX);
        let base = room.as_ptr();
        for off in (0..n).step_by(64) {
            crate::sad::prefetch(base.wrapping_add(off));
        }
        (0, (base.addr(), n))
    })
    .ok()
}

/// A flow as the stack keys it: protocol, peer port, local port.
type FlowKey = (Transport, u16, u16);

/// The SPI the last inbound packet of `key` came through.
fn spi_of(last_spi: &[(FlowKey, Option<u32>)], key: FlowKey) -> Option<u32> {
    last_spi
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, s)| *s)
}

/// Whether the IP packet `packet` (parsed header `ip`) is a pure TCP ACK: ACK set, none of
/// SYN, FIN and RST (RFC 9293 3.1), and no payload.
fn is_pure_ack(packet: &[u8], ip: &IpRepr) -> bool {
    const FIN_SYN_RST: u8 = 0x07;
    const ACK: u8 = 0x10;
    if ip.next_header != crate::wire::transport::IPPROTO_TCP {
        return false;
    }
    let off = ip.payload_offset;
    let (Some(&doff), Some(&flags)) = (packet.get(off + 12), packet.get(off + 13)) else {
        return false;
    };
    flags & (FIN_SYN_RST | ACK) == ACK && ip.len == off + usize::from(doff >> 4) * 4
}

/// The payload length of the UDP datagram in the IP packet `packet` (0 if it is cut short):
/// the UDP length field less its header (RFC 768).
fn udp_payload_len(packet: &[u8]) -> usize {
    let off = match packet.first().map(|b| b >> 4) {
        Some(4) => usize::from(packet[0] & 0x0f) * 4,
        Some(6) => 40,
        _ => return 0,
    };
    packet.get(off + 4..off + 6).map_or(0, |l| {
        usize::from(u16::from_be_bytes([l[0], l[1]])).saturating_sub(8)
    })
}

/// Room an IP packet keeps for the ESP header, IV, padding, trailer and ICV it may get on
/// egress (RFC 4303 2: 8 + at most 16 + 15 + 2 + 16 bytes, rounded up).
const ESP_ROOM: usize = 64;

/// A UDP datagram above the inner MTU, waiting to leave whole (built by the stack, not by
/// smoltcp, whose UDP socket would drop it; the worker fragments it after ESP).
#[derive(Debug)]
struct Oversize {
    flow: Flow,
    payload: Vec<u8>,
}

impl Oversize {
    /// Length of its IP packet.
    fn packet_len(&self) -> usize {
        ip_header_len(self.flow.local) + UDP_HEADER_LEN + self.payload.len()
    }

    /// Writes the IP packet into `buf` (exactly [`Oversize::packet_len`] bytes): IP header
    /// without Don't Fragment (it is to be fragmented, RFC 791 3.2), UDP header, checksum
    /// (RFC 768; mandatory over IPv6, RFC 8200 8.1), payload.
    fn emit(&self, buf: &mut [u8]) {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};
        use smoltcp::wire::{UdpPacket, UdpRepr};
        let caps = ChecksumCapabilities::default();
        let udp_len = UDP_HEADER_LEN + self.payload.len();
        let hdr = ip_header_len(self.flow.local);
        let (src, dst): (IpAddress, IpAddress) = (self.flow.local.into(), self.flow.ue.into());
        match (self.flow.local, self.flow.ue) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = Ipv4Packet::new_unchecked(&mut *buf);
                Ipv4Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: IpProtocol::Udp,
                    payload_len: udp_len,
                    hop_limit: 64,
                }
                .emit(&mut p, &caps);
                p.set_dont_frag(false);
                p.fill_checksum();
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Udp,
                payload_len: udp_len,
                hop_limit: 64,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut *buf)),
            // A stack's flows are of its own family (`send` checks the addresses).
            _ => return,
        }
        UdpRepr {
            src_port: self.flow.local_port,
            dst_port: self.flow.ue_port,
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut buf[hdr..]),
            &src,
            &dst,
            self.payload.len(),
            |p| p.copy_from_slice(&self.payload),
            &caps,
        );
    }
}

/// Bytes of a UDP header (RFC 768).
const UDP_HEADER_LEN: usize = 8;

/// Bytes of a fixed IP header of `addr`'s family.
fn ip_header_len(addr: IpAddr) -> usize {
    if addr.is_ipv4() {
        20
    } else {
        40
    }
}

/// One of our ports and what it takes ([`UeStack::listen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listening {
    port: u16,
    tcp: bool,
    udp: bool,
}

/// A listening TCP socket or a bound UDP socket on one of our ports.
#[derive(Clone, Copy, Debug)]
struct Bound {
    port: u16,
    handle: SocketHandle,
    /// Address of a TCP socket's receive buffer (0 for UDP), kept for its connection.
    rx_addr: usize,
}

/// What one connection's service reads and writes besides the connection and its socket:
/// the stack's SPIs, counters and refused pairs, and the time.
struct ServiceCx<'a> {
    last_spi: &'a [(FlowKey, Option<u32>)],
    counters: &'a mut StackCounters,
    tcp_refused: &'a mut Vec<(u16, u16)>,
    now: Instant,
}

/// Marks `conn` established once its socket is (it reached ESTABLISHED at least once), and
/// forgets that opening its pair failed before.
fn note_established(conn: &mut TcpConn, s: &tcp::Socket<'_>, tcp_refused: &mut Vec<(u16, u16)>) {
    if s.state() == tcp::State::Established && !conn.established {
        conn.established = true;
        let key = (conn.flow.local_port, conn.flow.ue_port);
        tcp_refused.retain(|k| *k != key);
    }
}

/// A poll's work on one connection (its socket `s`): frames what it received into `events`
/// (SIP messages; keep-alive pings answered), feeds its queued bytes to the socket, closes
/// it when asked or when the UE closed its side, aborts it after a framing or TLS error.
/// Returns false for a connection back in LISTEN (an RST in SYN-RECEIVED: the attempt is
/// over, the caller removes it) and true otherwise.
fn service_conn(
    conn: &mut TcpConn,
    s: &mut tcp::Socket<'static>,
    cx: ServiceCx<'_>,
    events: &mut Vec<WorkerEvent>,
) -> bool {
    if s.is_listening() {
        return false;
    }
    let now = cx.now;
    note_established(conn, s, cx.tcp_refused);
    let mut fail = false;
    let mut tls_fail = false;
    let mut pings = 0;
    let mut framed = false;
    // The longest message framed here: about what its answer will write.
    let mut longest = 0;
    let f = conn.flow;
    let via_spi = spi_of(cx.last_spi, (Transport::Tcp, f.ue_port, f.local_port));
    let messages_in = &mut cx.counters.messages_in;
    while s.can_recv() && !fail && !tls_fail {
        // Straight from the socket's ring into the framer (twice when it wraps), or
        // through the TLS session, which hands the framer the plaintext; complete
        // messages are cut out where they lie (`SipFramer::feed`).
        let (framer, session) = (&mut conn.framer, &mut conn.tls);
        let mut on_frame = |frame| match frame {
            Frame::Message(bytes) => {
                *messages_in += 1;
                framed = true;
                longest = longest.max(bytes.len());
                events.push(WorkerEvent::Sip(SipIn {
                    flow: f,
                    via_spi,
                    bytes,
                }));
            }
            // RFC 5626 4.4.1: a CRLFCRLF ping is answered with a CRLF pong (below).
            Frame::Ping => pings += 1,
            Frame::Pong => {}
        };
        let queued = s.recv_queue();
        let n = s.recv(|data| {
            let more = queued.saturating_sub(data.len());
            match session {
                Some(t) => {
                    tls_fail |= t
                        .receive(data, &mut |p| {
                            // Nothing is framed after an unframeable byte.
                            if !fail {
                                fail = framer.feed(p, 0, &mut on_frame).is_err();
                            }
                        })
                        .is_err()
                }
                None => fail |= framer.feed(data, more, &mut on_frame).is_err(),
            }
            (data.len(), data.len())
        });
        if !matches!(n, Ok(n) if n > 0) {
            break;
        }
    }
    if framed || pings > 0 {
        conn.last_message = now;
        conn.partial_since = None;
    }
    for _ in 0..pings {
        cx.counters.pings_answered += 1;
        tls_fail |= conn.queue(b"\r\n").is_err();
    }
    if conn.framer.pending() > 0 {
        conn.partial_since.get_or_insert(now);
    }
    conn.framer.release_idle();
    if let Some(t) = conn.tls.as_mut() {
        // Handshake messages and alerts.
        tls_fail |= t.take_output(&mut conn.pending).is_err();
    }
    if tls_fail {
        // RFC 8446 6: after a fatal error the connection is not used again.
        cx.counters.tls_errors += 1;
        conn.pending = VecDeque::new();
        s.abort();
        return true;
    }
    if fail {
        // RFC 3261 18.3: an unframeable stream cannot be resynchronised. The RST goes
        // out with this poll's egress; `reap` then reports the close.
        cx.counters.framing_errors += 1;
        conn.pending = VecDeque::new();
        s.abort();
        return true;
    }
    conn.flush(s);
    if conn.close_requested && conn.pending.is_empty() {
        s.close();
    }
    // The UE closed its side: finish ours (SIP has nothing to say after FIN).
    if s.state() == tcp::State::CloseWait && conn.pending.is_empty() {
        s.close();
    }
    if longest > 0 && conn.pending.is_empty() && conn.tls.is_none() {
        let _ = prefetch_send_room(s, longest);
    }
    true
}

/// The per-UE TCP/IP stack.
pub struct UeStack {
    local: IpAddr,
    peer: IpAddr,
    cfg: StackConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    dev: QueueDevice,
    /// Our ports and what they take: TCP connections (a listener is armed when a SYN for
    /// the port arrives) and/or UDP datagrams (a socket is bound while datagrams are in
    /// flight). One vector for both: a UE's ports take both. Inline for a registered UE's
    /// three (the SIP port, port_ps, port_pc): as small as an empty `Vec`, no allocation.
    ports: SmallVec<[Listening; 4]>,
    /// Listeners armed for a SYN: one at a time in a registration, inline (a `Vec` kept the
    /// room of four, 96 bytes on the heap, for the UE's life once one was armed).
    tcp_listeners: SmallVec<[Bound; 1]>,
    udp_sockets: Vec<Bound>,
    /// A few at most (`max_tcp_conns`): a vector is smaller than a map and as fast to
    /// search; it grows one at a time, from two (a registration's two, `push_conn`).
    conns: Vec<(SocketHandle, TcpConn)>,
    /// SPI (or none) of the last inbound packet per (proto, peer port, local port); inline
    /// for a registration's flows (the unprotected and protected connections).
    last_spi: SmallVec<[(FlowKey, Option<u32>); 4]>,
    /// Events of connections dropped outside a poll (see `drop_stale`), reported at the next.
    deferred: Vec<WorkerEvent>,
    /// (our port, peer port) of connections we could not open, until one opens: a large UDP
    /// request to them is sent over UDP when it fits the MTU (RFC 3261 18.1.1's retry).
    tcp_refused: Vec<(u16, u16)>,
    /// Datagrams put into each UDP socket since it was last drained (smoltcp holds at most
    /// `udp_packets`), by local port.
    udp_queued: Vec<(u16, usize)>,
    /// UDP datagrams above the inner MTU waiting for the next poll (at most `max_pending`
    /// bytes of payload).
    oversize: Vec<Oversize>,
    /// The time of the last input or poll (a connection opened by a send is stamped with it).
    now: Instant,
    /// The port speaking TLS, if any (see [`UeStack::listen_tls`]).
    tls: Option<tls::TlsListener>,
    /// Slots the socket set holds (it never shrinks by itself; see `compact_socket_set`).
    socket_slots: u8,
    /// Whether this stack takes its TCP sockets from, and gives them back to, its thread's
    /// spare sockets ([`UeStack::recycle_sockets`]).
    recycle: bool,
    /// The most sockets live at once since the last `compact_socket_set` (at the end of each
    /// poll): the set shrinks only once fewer are live than that, i.e. after a socket went.
    live_peak: u8,
    /// Address of the socket set's slots (its vector's buffer, which never grows: see
    /// `add_socket`), kept only as a hint for [`UeStack::prefetch`]; never dereferenced.
    socket_base: usize,
    /// Address of the receive buffer of the newest connection as of the last poll (0: none),
    /// where its next data segment is written: a hint for [`UeStack::prefetch`], kept in the
    /// stack itself since the connections' table is loaded only with it (never dereferenced).
    rx_hint: usize,
    /// smoltcp's next deadline as the last input's [`UeStack::quiet_after`] found it, while
    /// `quiet_known`: [`UeStack::poll_at_after_input`] takes it instead of asking again.
    quiet_poll_at: Option<Instant>,
    /// Whether `quiet_poll_at` is the deadline of the last input (cleared by every input).
    quiet_known: bool,
    /// Whether the last input was a pure ACK that moved its connection to CLOSED (the UE's
    /// ACK of our FIN in LAST-ACK): [`UeStack::reap_closed`] may then reap it at once.
    acked_closed: bool,
    /// Whether the last input was a TCP segment other than a SYN or a pure ACK (one that may
    /// have brought data): [`UeStack::frame_in_input`] may then frame it at once.
    data_in: bool,
    counters: StackCounters,
}

impl core::fmt::Debug for UeStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UeStack")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl UeStack {
    /// A stack owning `local` that talks to `peer` (the UE; or the P-CSCF when used as a UE
    /// in tests). Returns `None` if the two addresses are of different families.
    pub fn new(cfg: StackConfig, local: IpAddr, peer: IpAddr, now: Instant) -> Option<Self> {
        let mut dev = QueueDevice::new(cfg.ip_mtu, cfg.max_queue);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = rand::random();
        let mut iface = Interface::new(config, &mut dev, now);
        let ok = match (local, peer) {
            // One address and one route: the interface has room for exactly that (the
            // `iface-max-*-count-1` features of smoltcp, fastpath/Cargo.toml).
            (IpAddr::V4(l), IpAddr::V4(p)) => {
                let mut added = false;
                iface.update_ip_addrs(|a| {
                    added = a.push(IpCidr::new(IpAddress::Ipv4(l), 32)).is_ok();
                });
                // Medium::Ip has no next hop: any route makes the peer reachable.
                added && iface.routes_mut().add_default_ipv4_route(p).is_ok()
            }
            (IpAddr::V6(l), IpAddr::V6(p)) => {
                let mut added = false;
                iface.update_ip_addrs(|a| {
                    added = a.push(IpCidr::new(IpAddress::Ipv6(l), 128)).is_ok();
                });
                added && iface.routes_mut().add_default_ipv6_route(p).is_ok()
            }
            _ => false,
        };
        if !ok {
            return None;
        }
        Some(UeStack {
            local,
            peer,
            cfg,
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            ports: SmallVec::new(),
            tcp_listeners: SmallVec::new(),
            udp_sockets: Vec::new(),
            conns: Vec::new(),
            last_spi: SmallVec::new(),
            deferred: Vec::new(),
            tcp_refused: Vec::new(),
            udp_queued: Vec::new(),
            oversize: Vec::new(),
            now,
            tls: None,
            socket_slots: 0,
            recycle: false,
            live_peak: 0,
            socket_base: 0,
            rx_hint: 0,
            quiet_poll_at: None,
            quiet_known: false,
            acked_closed: false,
            data_in: false,
            counters: StackCounters::default(),
        })
    }

    /// Our address.
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// The peer's (UE's) address.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The stack's counters.
    pub fn counters(&self) -> StackCounters {
        self.counters
    }

    /// Returns the counters and resets them, for a worker that sums them.
    pub fn take_counters(&mut self) -> StackCounters {
        std::mem::take(&mut self.counters)
    }

    /// Sockets currently allocated (connections, armed listeners, busy UDP sockets); 0 for
    /// an idle stack, whatever ports it listens on.
    pub fn socket_count(&self) -> usize {
        self.sockets.iter().count()
    }

    /// Open TCP connections (accepted or opened, not yet closed).
    pub fn tcp_connections(&self) -> usize {
        self.conns.len()
    }

    /// True when no TCP connection is open and nothing is queued, UDP datagrams included
    /// (smoltcp sends one per socket and poll): the stack may be freed if the UE has no
    /// registration either.
    pub fn is_idle(&self) -> bool {
        self.conns.is_empty()
            && self.deferred.is_empty()
            && self.dev.rx_len() == 0
            && self.dev.tx_len() == 0
            && self.oversize.is_empty()
            && self
                .udp_sockets
                .iter()
                .all(|b| self.sockets.get::<udp::Socket>(b.handle).send_queue() == 0)
    }

    /// Accepts TCP connections and/or UDP datagrams on `port`. Idempotent.
    ///
    /// No socket memory is spent until traffic comes: a listener is armed just before a SYN
    /// for the port is processed (so every SYN finds one, smoltcp turning the listener into
    /// the connection), and a UDP socket lives only while it has datagrams queued.
    pub fn listen(&mut self, port: u16, tcp: bool, udp: bool) {
        if !tcp && !udp {
            return;
        }
        match self.ports.iter_mut().find(|l| l.port == port) {
            Some(l) => {
                l.tcp |= tcp;
                l.udp |= udp;
            }
            None => self.ports.push(Listening { port, tcp, udp }),
        }
    }

    /// Whether `port` accepts TCP connections.
    fn listens_tcp(&self, port: u16) -> bool {
        self.ports.iter().any(|l| l.port == port && l.tcp)
    }

    /// Whether `port` receives UDP datagrams.
    fn listens_udp(&self, port: u16) -> bool {
        self.ports.iter().any(|l| l.port == port && l.udp)
    }

    /// Accepts TLS over TCP on `listener.port` (RFC 3261 26.2): each connection accepted
    /// there gets its own TLS session. One TLS port per stack; it replaces the previous one.
    pub fn listen_tls(&mut self, listener: tls::TlsListener) {
        self.listen(listener.port, true, false);
        self.tls = Some(listener);
    }

    /// The UDP socket bound to `port`, bound now if `port` receives UDP.
    fn udp_socket(&mut self, port: u16) -> Option<SocketHandle> {
        if let Some(b) = self.udp_sockets.iter().find(|b| b.port == port) {
            return Some(b.handle);
        }
        if !self.listens_udp(port) {
            return None;
        }
        let rx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; self.cfg.udp_packets],
            vec![0u8; self.cfg.udp_rx_buf],
        );
        let tx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; self.cfg.udp_packets],
            vec![0u8; self.cfg.udp_tx_buf],
        );
        let mut s = udp::Socket::new(rx, tx);
        s.bind(IpListenEndpoint {
            addr: Some(self.local.into()),
            port,
        })
        .ok()?;
        let handle = self.add_socket(s);
        self.udp_sockets.push(Bound {
            port,
            handle,
            rx_addr: 0,
        });
        Some(handle)
    }

    /// Prepares sockets for an inbound packet with the transport facts `seg`: a listener for
    /// a SYN to a TCP port, a bound socket for a datagram to a UDP port.
    fn prepare_for(&mut self, seg: Option<Segment>, via_spi: Option<u32>) {
        let Some(Segment { ports: p, syn }) = seg else {
            return;
        };
        match p.proto {
            Transport::Tcp if syn && self.listens_tcp(p.dst) => {
                if via_spi.is_some() {
                    self.replace_lost_connection(p.src, p.dst);
                }
                if self.tcp_listeners.iter().any(|b| b.port == p.dst) {
                    return;
                }
                if self.conns.len() >= self.cfg.max_tcp_conns {
                    // smoltcp answers the SYN with RST.
                    self.counters.conn_limit += 1;
                    return;
                }
                self.arm_listener(p.dst);
            }
            Transport::Udp => {
                let _ = self.udp_socket(p.dst);
            }
            Transport::Tcp => {}
        }
    }

    /// A SYN through an SA (so from the UE itself, TS 33.203 7.1) for the four-tuple of a
    /// connection past its handshake means the UE lost that connection: it rebooted, or
    /// registered again with the same ports (TS 33.203 7.4: the new SA set wins once used).
    /// The old connection is dropped without a segment and reported closed at the next poll,
    /// so the SYN opens the new one at once. (On the unprotected port, where anyone could
    /// send the SYN, smoltcp's answer to a SYN on an open connection stands, RFC 5961 4.)
    fn replace_lost_connection(&mut self, ue_port: u16, local_port: u16) {
        let flow = self.flow(Transport::Tcp, ue_port, local_port);
        let sockets = &self.sockets;
        let lost = self.conns.iter().any(|&(h, ref c)| {
            c.flow == flow && sockets.get::<tcp::Socket>(h).state() != tcp::State::SynReceived
        });
        if lost {
            self.counters.conns_replaced += 1;
            self.drop_stale(&flow);
        }
    }

    /// Stops listening on `port` (TCP and UDP); established connections stay.
    pub fn unlisten(&mut self, port: u16) {
        self.ports.retain(|l| l.port != port);
        let (sockets, recycle) = (&mut self.sockets, self.recycle);
        self.tcp_listeners.retain(|b| {
            if b.port == port {
                remove_from(sockets, b.handle, recycle, b.rx_addr);
            }
            b.port != port
        });
        self.udp_sockets.retain(|b| {
            if b.port == port {
                sockets.remove(b.handle);
            }
            b.port != port
        });
    }

    /// Makes this stack take its TCP sockets from its thread's spare ones and give the
    /// sockets it removes back to them (the worker's stacks do: one worker per thread). A
    /// registration opens two connections and closes the unprotected one; its socket and
    /// buffers then serve the next listener instead of being freed and another 2 + 2 KiB
    /// allocated and zeroed. A recycled socket is reset by smoltcp when it listens or
    /// connects (its state, sequence space, timers, buffers emptied); its buffers' old bytes
    /// are never read (smoltcp reads only what was received or queued since).
    pub fn recycle_sockets(&mut self) {
        self.recycle = true;
    }

    /// Takes a socket (its receive buffer at `rx_addr`) out of the set, keeping it as a
    /// spare of the thread when this stack recycles.
    fn remove_socket(&mut self, handle: SocketHandle, rx_addr: usize) {
        remove_from(&mut self.sockets, handle, self.recycle, rx_addr);
    }

    /// A TCP socket for a listener or a connection, and the address of its receive buffer.
    fn new_tcp_socket(&self) -> (tcp::Socket<'static>, usize) {
        let spare = self
            .recycle
            .then(|| take_spare(self.cfg.tcp_rx_buf, self.cfg.tcp_tx_buf))
            .flatten();
        let (mut s, rx_addr) = spare.unwrap_or_else(|| {
            tcp_socket_with(
                vec![0u8; self.cfg.tcp_rx_buf],
                vec![0u8; self.cfg.tcp_tx_buf],
            )
        });
        set_up_tcp_socket(&mut s, self.cfg.tcp_timeout);
        (s, rx_addr)
    }

    /// Arms a listener on `port` for the SYN about to be processed. A recycling stack's
    /// listener is a spare socket set up and listening where it lies in the thread's spares,
    /// then moved once into the socket set ([`arm_spare`]); taken out, returned and handed on
    /// it was moved seven times (480 bytes each, docs/BENCHMARKS.md, *round 28*).
    fn arm_listener(&mut self, port: u16) {
        // smoltcp refuses to listen on port 0 (and a socket from the spares or a new one is
        // closed, so that is the only refusal).
        if port == 0 {
            return;
        }
        let ep = IpListenEndpoint {
            addr: Some(self.local.into()),
            port,
        };
        self.room_for_socket();
        let (rx, tx, timeout) = (
            self.cfg.tcp_rx_buf,
            self.cfg.tcp_tx_buf,
            self.cfg.tcp_timeout,
        );
        let armed = if self.recycle {
            arm_spare(&mut self.sockets, rx, tx, timeout, ep)
        } else {
            None
        };
        let armed = armed.or_else(|| {
            let (mut s, rx_addr) = tcp_socket_with(vec![0u8; rx], vec![0u8; tx]);
            set_up_tcp_socket(&mut s, timeout);
            s.listen(ep).ok()?;
            Some((self.sockets.add(s), rx_addr))
        });
        if let Some((handle, rx_addr)) = armed {
            self.tcp_listeners.push(Bound {
                port,
                handle,
                rx_addr,
            });
        }
    }

    /// Hands an inbound (decrypted) IP packet to the stack. `via_spi` is the inbound SA it
    /// came through, reported with the SIP messages of that flow.
    pub fn push_inbound(
        &mut self,
        packet: Vec<u8>,
        via_spi: Option<u32>,
    ) -> Result<(), StackError> {
        if !crate::wire::checksum::ipv4_header_checksum_ok(&packet)
            || !crate::wire::checksum::transport_checksum_ok(&packet)
        {
            self.counters.bad_checksum += 1;
            return Ok(());
        }
        let ports = transport_ports(&packet);
        self.dev
            .push_rx(packet)
            .map_err(|_| StackError::QueueFull)?;
        self.note_spi(ports, via_spi);
        Ok(())
    }

    /// Remembers the SA the flow's last packet came through.
    fn note_spi(&mut self, ports: Option<ports::Ports>, via_spi: Option<u32>) {
        if let Some(p) = ports {
            let key = (p.proto, p.src, p.dst);
            // Bounded: one entry per flow; flows are bounded by sockets and ports.
            if let Some(e) = self.last_spi.iter_mut().find(|(k, _)| *k == key) {
                e.1 = via_spi;
                return;
            }
            if self.last_spi.len() > 4 * (self.cfg.max_tcp_conns + 8) {
                self.last_spi.clear();
            }
            self.last_spi.push((key, via_spi));
        }
    }

    /// Runs one inbound (decrypted) IP packet through the stack now, reading it in place
    /// from the caller's buffer (no copy, no queue). `via_spi` is the inbound SA it came
    /// through, reported with the SIP messages of that flow. A direct answer of smoltcp (an
    /// RST, a duplicate ACK) goes to `sink`; received data waits in its socket for the next
    /// [`UeStack::poll_with`], which frames it and sends what is due.
    ///
    /// Packets queued with [`UeStack::push_inbound`] are not looked at: a stack is driven
    /// either this way or through its queues.
    ///
    /// Returns whether the stack needs that poll: false only for a pure ACK (TCP, no payload,
    /// no SYN, FIN or RST) that left its connection with nothing for a poll to do
    /// ([`UeStack::quiet_after`]); the
    /// caller then only moves the stack's deadline ([`UeStack::poll_at`]).
    pub fn input<S: PacketSink>(
        &mut self,
        packet: &[u8],
        via_spi: Option<u32>,
        now: Instant,
        sink: &mut S,
    ) -> bool {
        // smoltcp's interfaces do not verify the IPv4 header checksum (see
        // `device::stack_capabilities`); the worker's packets come through `input_segment`,
        // verified or made by it, anyone else's are verified here.
        if !crate::wire::checksum::ipv4_header_checksum_ok(packet) {
            self.counters.bad_checksum += 1;
            return true;
        }
        match IpRepr::from_bytes(packet, Direction::Inbound) {
            Ok(ip) => {
                let seg = Segment::parse(packet, &ip);
                self.input_inner(packet, Some(&ip), seg, via_spi, now, sink)
            }
            Err(_) => self.input_inner(packet, None, None, via_spi, now, sink),
        }
    }

    /// [`UeStack::input`] of a packet whose header the caller has parsed already (`ip`, the
    /// [`IpRepr`] of `packet` itself) and whose transport facts it has read from it (`seg`):
    /// the worker's one parse, so the header is not read again before smoltcp's own. An IPv4
    /// header's checksum is the caller's to have verified (the worker's link layer does) or
    /// made (ESP decapsulation, reassembly): neither this nor smoltcp looks at it again.
    /// Returns whether the stack needs a poll, as [`UeStack::input`].
    pub fn input_segment<S: PacketSink>(
        &mut self,
        packet: &[u8],
        ip: &IpRepr,
        seg: Segment,
        via_spi: Option<u32>,
        now: Instant,
        sink: &mut S,
    ) -> bool {
        self.input_inner(packet, Some(ip), Some(seg), via_spi, now, sink)
    }

    fn input_inner<S: PacketSink>(
        &mut self,
        packet: &[u8],
        ip: Option<&IpRepr>,
        seg: Option<Segment>,
        via_spi: Option<u32>,
        now: Instant,
        sink: &mut S,
    ) -> bool {
        self.now = now;
        self.quiet_known = false;
        self.acked_closed = false;
        self.data_in = false;
        // smoltcp's interfaces do not verify TCP and UDP checksums on receive (see
        // `device::stack_capabilities`): every segment and datagram is verified here (an
        // unparsable packet is smoltcp's to refuse).
        let checksum_ok =
            ip.is_none_or(|ip| crate::wire::checksum::transport_checksum_ok_parsed(packet, ip));
        if !checksum_ok {
            self.counters.bad_checksum += 1;
            return true;
        }
        self.note_spi(seg.map(|s| s.ports), via_spi);
        if !self.admit_datagram(packet, seg) {
            self.counters.udp_queue_full += 1;
            return true;
        }
        self.prepare_for(seg, via_spi);
        let mut dev = SinkDevice::new(Some(packet), sink, self.cfg.ip_mtu);
        self.iface
            .poll_ingress_single(now, &mut dev, &mut self.sockets);
        self.accept();
        let pure_ack = ip.is_some_and(|ip| is_pure_ack(packet, ip));
        let quiet = match seg {
            Some(Segment { ports: p, .. }) if pure_ack => {
                let quiet = self.quiet_after(now, p.src, p.dst);
                self.acked_closed = !quiet && self.conn_closed(p.src, p.dst);
                quiet
            }
            Some(Segment { ports: p, syn }) => {
                self.data_in = p.proto == Transport::Tcp && !syn;
                false
            }
            None => false,
        };
        !quiet
    }

    /// Whether the connection of the UE's `ue_port` to our `local_port` is CLOSED.
    fn conn_closed(&self, ue_port: u16, local_port: u16) -> bool {
        self.conns
            .iter()
            .find(|(_, c)| c.flow.ue_port == ue_port && c.flow.local_port == local_port)
            .is_some_and(|&(h, _)| self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed)
    }

    /// No deferred event, datagram above the MTU, queued input or UDP socket: the parts of
    /// a poll's work that are the whole stack's, not a connection's.
    fn nothing_stackwide(&self) -> bool {
        self.deferred.is_empty()
            && self.oversize.is_empty()
            && self.dev.rx_len() == 0
            && self.udp_sockets.is_empty()
    }

    /// Right after an input that needed a poll, does that poll's whole work when it would
    /// only reap the connection the input was for (the UE's `ue_port` to our `local_port`):
    /// the input was a pure ACK that moved it to CLOSED (the UE's ACK of our FIN in
    /// LAST-ACK), it has nothing queued, sent or unacknowledged and no TLS session, the
    /// stack has nothing stack-wide to do ([`UeStack::quiet_after`]'s conditions) and
    /// smoltcp no egress due now. Then the connection is removed as the poll's reap would
    /// remove it, its end reported into `events` (`TcpClosed`), the socket set compacted;
    /// returns true and the caller only moves the stack's deadline
    /// ([`UeStack::poll_at`]). Otherwise changes nothing and returns false.
    ///
    /// The caller must know that every other connection is as the last poll (or a quiet
    /// input) left it, i.e. that no input or command since asked for a poll: a poll now
    /// would then find nothing else to report, frame or send (docs/ARCHITECTURE.md, *One
    /// UE, one worker*).
    pub fn reap_closed(
        &mut self,
        now: Instant,
        ue_port: u16,
        local_port: u16,
        events: &mut Vec<WorkerEvent>,
    ) -> bool {
        if !std::mem::take(&mut self.acked_closed) || !self.nothing_stackwide() {
            return false;
        }
        let Some(&(handle, ref conn)) = self
            .conns
            .iter()
            .find(|(_, c)| c.flow.ue_port == ue_port && c.flow.local_port == local_port)
        else {
            return false;
        };
        let s = self.sockets.get::<tcp::Socket>(handle);
        let idle = s.state() == tcp::State::Closed
            && s.send_queue() == 0
            && conn.pending.is_empty()
            && conn.tls.is_none();
        if !idle {
            return false;
        }
        let at = self.iface.poll_at(now, &self.sockets);
        if at.is_some_and(|t| t <= now) {
            return false;
        }
        let ev = conn.end_event(s);
        self.remove_conn(handle, Some(ev), events);
        self.compact_socket_set();
        self.rx_hint = self.conns.last().map_or(0, |(_, c)| c.rx_addr);
        // The deadline the caller moves next is the one just read: the socket reaped was
        // CLOSED with no remote (smoltcp's LAST-ACK to CLOSED clears it), which wants no poll,
        // and the others are as they were ([`UeStack::poll_at_after_input`] takes it).
        self.quiet_poll_at = at;
        self.quiet_known = self.now == now;
        true
    }

    /// Right after an input that needed a poll, does that poll's whole work when it would
    /// only frame what the input brought (the UE's `ue_port` to our `local_port`): the input
    /// was a TCP segment other than a SYN or a pure ACK, its connection is ESTABLISHED with
    /// no TLS session, nothing pending and no close requested, the stack has nothing
    /// stack-wide to do ([`UeStack::quiet_after`]'s conditions), and no deadline of
    /// [`UeStack::expire_conns`] on `expiry`'s port is due (the poll would expire first).
    /// Then that connection is serviced as the poll's service would (its SIP messages into
    /// `events`, a ping's pong queued, its `established` mark set); when afterwards it is
    /// still ESTABLISHED with nothing pending and smoltcp wants no egress now (the ACK waits
    /// for the answer, or its delay), returns true and the caller only moves the stack's
    /// deadline ([`UeStack::poll_at`]). Otherwise returns false and the caller polls: the
    /// poll's service then finds this connection's part done (servicing it again changes
    /// nothing) and does the rest, egress included.
    ///
    /// The caller must know that every other connection is as the last poll (or a quiet
    /// input) left it, as for [`UeStack::reap_closed`].
    pub fn frame_in_input(
        &mut self,
        now: Instant,
        ue_port: u16,
        local_port: u16,
        expiry: (u16, ConnDeadlines),
        events: &mut Vec<WorkerEvent>,
    ) -> bool {
        if !std::mem::take(&mut self.data_in) || !self.nothing_stackwide() {
            return false;
        }
        if self
            .conn_deadline(expiry.0, expiry.1)
            .is_some_and(|t| t <= now)
        {
            return false;
        }
        let Some((handle, conn)) = self
            .conns
            .iter_mut()
            .find(|(_, c)| c.flow.ue_port == ue_port && c.flow.local_port == local_port)
        else {
            return false;
        };
        let handle = *handle;
        let s = self.sockets.get_mut::<tcp::Socket>(handle);
        if s.state() != tcp::State::Established
            || conn.tls.is_some()
            || conn.close_requested
            || !conn.pending.is_empty()
        {
            return false;
        }
        let cx = ServiceCx {
            last_spi: &self.last_spi,
            counters: &mut self.counters,
            tcp_refused: &mut self.tcp_refused,
            now,
        };
        // Not listening (it is ESTABLISHED): never removed here.
        service_conn(conn, s, cx, events);
        let still = s.state() == tcp::State::Established && conn.pending.is_empty();
        if !still {
            return false;
        }
        let at = self.iface.poll_at(now, &self.sockets);
        let quiet = at.is_none_or(|t| t > now);
        self.quiet_poll_at = at;
        self.quiet_known = quiet && self.now == now;
        quiet
    }

    /// [`UeStack::poll_at`] right after an input that needed no poll: the deadline its
    /// [`UeStack::quiet_after`] just read from smoltcp, not asked again; asked as
    /// [`UeStack::poll_at`] otherwise.
    pub fn poll_at_after_input(&mut self, now: Instant) -> Option<Instant> {
        if std::mem::take(&mut self.quiet_known) && self.now == now {
            return self.quiet_poll_at;
        }
        self.poll_at(now)
    }

    /// True when a poll now would do nothing after a pure ACK from the UE's `ue_port` to our
    /// `local_port`: no event, datagram or connection change to report, nothing to frame,
    /// queue, send or close, and smoltcp wants no egress before a later deadline.
    ///
    /// A pure ACK changes only the connection it is for, so only that connection must be
    /// quiet: ESTABLISHED (the handshake's last ACK included: the mark the poll's service
    /// would set first, `established`, is set here), nothing in flight or waiting (`pending`, the socket's send queue), nothing received, no TLS
    /// session, no close requested. The other connections and the listeners are as the last
    /// poll (or a quiet input) left them: whatever they still need waits for their own
    /// packets or for a deadline the caller sets from [`UeStack::poll_at`], which a poll now
    /// would not bring forward. So a second connection in its handshake, a listener armed for
    /// the protected port or the unprotected connection in LAST-ACK no longer cost the poll
    /// (docs/BENCHMARKS.md, *Worker per registration, round 12*). No deferred event,
    /// datagram above the MTU, queued input or UDP socket may be there (they are the whole
    /// stack's), and an ACK that matches no connection leaves the stack quiet only if every
    /// connection is. What the poll would do after such an ACK is the deadline's move, which
    /// the caller does.
    pub fn quiet_after(&mut self, now: Instant, ue_port: u16, local_port: u16) -> bool {
        self.quiet_known = false;
        if !self.nothing_stackwide() {
            return false;
        }
        let hit = self
            .conns
            .iter_mut()
            .find(|(_, c)| c.flow.ue_port == ue_port && c.flow.local_port == local_port);
        if let Some((h, c)) = hit {
            // The handshake's last ACK: what the poll's service would do first, done here.
            note_established(
                c,
                self.sockets.get::<tcp::Socket>(*h),
                &mut self.tcp_refused,
            );
        }
        let sockets = &self.sockets;
        let quiet = |&(h, ref c): &(SocketHandle, TcpConn)| {
            let s = sockets.get::<tcp::Socket>(h);
            c.established
                && c.tls.is_none()
                && !c.close_requested
                && c.pending.is_empty()
                && s.state() == tcp::State::Established
                && s.send_queue() == 0
                && !s.can_recv()
        };
        let hit = self
            .conns
            .iter()
            .find(|(_, c)| c.flow.ue_port == ue_port && c.flow.local_port == local_port);
        let conns_quiet = match hit {
            Some(conn) => quiet(conn),
            None => self.tcp_listeners.is_empty() && self.conns.iter().all(quiet),
        };
        if !conns_quiet {
            return false;
        }
        let at = self.iface.poll_at(now, &self.sockets);
        let quiet = at.is_none_or(|t| t > now);
        self.quiet_poll_at = at;
        self.quiet_known = quiet && self.now == now;
        quiet
    }

    /// False when `packet` is a UDP datagram its port's socket has no room for: smoltcp would
    /// drop it without a trace (it holds `udp_packets` datagrams and `udp_rx_buf` bytes until
    /// the next poll takes them); refused here, it is counted. Counts the ones let through.
    fn admit_datagram(&mut self, packet: &[u8], seg: Option<Segment>) -> bool {
        let Some(Segment { ports: p, .. }) = seg else {
            return true;
        };
        if p.proto != Transport::Udp || !self.listens_udp(p.dst) {
            return true;
        }
        let queued_bytes = self
            .udp_sockets
            .iter()
            .find(|b| b.port == p.dst)
            .map_or(0, |b| {
                self.sockets.get::<udp::Socket>(b.handle).recv_queue()
            });
        let n = match self.udp_queued.iter_mut().find(|(port, _)| *port == p.dst) {
            Some((_, n)) => n,
            None => {
                self.udp_queued.push((p.dst, 0));
                &mut self.udp_queued.last_mut().expect("pushed").1
            }
        };
        let payload = udp_payload_len(packet);
        if *n >= self.cfg.udp_packets || queued_bytes + payload > self.cfg.udp_rx_buf {
            return false;
        }
        *n += 1;
        true
    }

    /// Ends the connections on our `port` past their deadlines (the unprotected SIP port is
    /// open to anyone, so a client that never completes its handshake or its message, or
    /// never sends one, must not hold a connection). A handshake is dropped without a segment
    /// (its source may be spoofed: a RST would be reflected at a stranger); an established
    /// connection is aborted, its RST leaving with the next poll. Both are reported closed at
    /// the next poll. Returns how many, by reason.
    pub fn expire_conns(&mut self, port: u16, now: Instant, d: ConnDeadlines) -> Expired {
        let mut ex = Expired::default();
        let mut handshakes = Vec::new();
        for (h, c) in &self.conns {
            if c.flow.local_port != port || c.outgoing {
                continue;
            }
            let s = self.sockets.get_mut::<tcp::Socket>(*h);
            let reason = if s.state() == tcp::State::SynReceived {
                if now >= c.opened + d.message {
                    handshakes.push((*h, Some(WorkerEvent::TcpClosed(c.flow))));
                }
                None
            } else if c.partial_since.is_some_and(|t| now >= t + d.message) {
                Some(&mut ex.message)
            } else if d.idle.is_some_and(|i| now >= c.last_message + i)
                && matches!(s.state(), tcp::State::Established | tcp::State::CloseWait)
            {
                Some(&mut ex.idle)
            } else {
                None
            };
            if let Some(n) = reason {
                *n += 1;
                s.abort();
            }
        }
        ex.handshake = handshakes.len() as u64;
        if !handshakes.is_empty() {
            let mut events = std::mem::take(&mut self.deferred);
            self.remove_conns(handshakes, &mut events);
            self.deferred = events;
        }
        ex
    }

    /// The earliest deadline of [`UeStack::expire_conns`] for `port`, if any connection there
    /// has one.
    pub fn conn_deadline(&self, port: u16, d: ConnDeadlines) -> Option<Instant> {
        self.port_use(port, d).deadline
    }

    /// TCP connections accepted on our `port` (not yet closed) and how many of them are
    /// still in the handshake (SYN-RECEIVED).
    pub fn conns_on(&self, port: u16) -> (usize, usize) {
        // The counts alone: the worker's limits recount them after most packets to the SIP
        // port, and [`UeStack::port_use`]'s deadlines would only be dropped.
        let (mut conns, mut half_open) = (0, 0);
        for (h, c) in &self.conns {
            if c.flow.local_port == port && !c.outgoing {
                conns += 1;
                half_open += usize::from(
                    self.sockets.get::<tcp::Socket>(*h).state() == tcp::State::SynReceived,
                );
            }
        }
        (conns, half_open)
    }

    /// [`UeStack::conns_on`] and [`UeStack::conn_deadline`] in one walk over the
    /// connections (a poll wants both).
    pub fn port_use(&self, port: u16, d: ConnDeadlines) -> PortUse {
        let mut u = PortUse::default();
        for (h, c) in &self.conns {
            if c.flow.local_port != port || c.outgoing {
                continue;
            }
            u.conns += 1;
            let at = match self.sockets.get::<tcp::Socket>(*h).state() {
                tcp::State::SynReceived => {
                    u.half_open += 1;
                    Some(c.opened + d.message)
                }
                tcp::State::Established | tcp::State::CloseWait => {
                    let idle = d.idle.map(|i| c.last_message + i);
                    let msg = c.partial_since.map(|t| t + d.message);
                    match (idle, msg) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
                _ => None,
            };
            u.deadline = match (u.deadline, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        u
    }

    /// True if a TCP connection of the peer's `peer_port` to our `local_port` exists (a SYN
    /// for it is a retransmission, not a new connection).
    pub fn has_conn(&self, peer_port: u16, local_port: u16) -> bool {
        self.conns
            .iter()
            .any(|(_, c)| c.flow.ue_port == peer_port && c.flow.local_port == local_port)
    }

    /// Takes the next IP packet the stack wants to send.
    pub fn pop_outbound(&mut self) -> Option<Vec<u8>> {
        self.dev.pop_tx()
    }

    /// When the stack next needs [`UeStack::poll`]; `Some(now)` if input is queued.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        if self.dev.rx_len() > 0 || !self.deferred.is_empty() || !self.oversize.is_empty() {
            return Some(now);
        }
        self.iface.poll_at(now, &self.sockets)
    }

    /// Runs the stack: consumes queued input, accepts connections (re-arming listeners),
    /// frames received SIP, answers keep-alives, flushes queued sends and queues output for
    /// [`UeStack::pop_outbound`].
    pub fn poll(&mut self, now: Instant, events: &mut Vec<WorkerEvent>) {
        self.now = now;
        // Lent out for the poll (the placeholder allocates nothing).
        let mut dev = std::mem::take(&mut self.dev);
        // One packet at a time so each SYN finds a listener and each datagram a socket.
        loop {
            if let Some(front) = dev.peek_rx() {
                // The queue device (UE simulator, tests) keeps no SPI per packet.
                self.prepare_for(segment(front), None);
            }
            let r = self
                .iface
                .poll_ingress_single(now, &mut dev, &mut self.sockets);
            self.accept();
            if r == PollIngressSingleResult::None {
                break;
            }
        }
        self.finish_poll(now, events, &mut dev);
        self.dev = dev;
    }

    /// [`UeStack::poll`] for a stack fed with [`UeStack::input`]: frames received SIP,
    /// answers keep-alives, flushes queued sends and writes output straight into `sink`.
    pub fn poll_with<S: PacketSink>(
        &mut self,
        now: Instant,
        events: &mut Vec<WorkerEvent>,
        sink: &mut S,
    ) {
        use crate::phases::{self, Phase};
        let mut dev = SinkDevice::new(None, sink, self.cfg.ip_mtu);
        // The three parts of `finish_poll`, each timed (feature `phase-tsc`; no-ops without).
        let t0 = phases::stamp();
        self.service_all(now, events);
        phases::note(Phase::PollService, t0);
        let t0 = phases::stamp();
        self.egress(now, &mut dev);
        let sent = dev.transmitted() > 0;
        phases::note(
            if sent {
                Phase::PollEgressSent
            } else {
                Phase::PollEgressIdle
            },
            t0,
        );
        let t0 = phases::stamp();
        self.clean_up(events);
        phases::note(Phase::PollCleanup, t0);
    }

    /// The part of a poll after ingress: service the connections, egress, clean up.
    fn finish_poll<D: Device>(&mut self, now: Instant, events: &mut Vec<WorkerEvent>, dev: &mut D) {
        self.service_all(now, events);
        self.egress(now, dev);
        self.clean_up(events);
    }

    /// A poll's first part: deferred events, then every connection serviced.
    fn service_all(&mut self, now: Instant, events: &mut Vec<WorkerEvent>) {
        self.now = now;
        self.quiet_known = false;
        self.acked_closed = false;
        self.data_in = false;
        events.append(&mut self.deferred);
        self.service(now, events);
        self.udp_queued.clear();
    }

    /// A poll's second part: smoltcp's egress, then the datagrams above the inner MTU.
    fn egress<D: Device>(&mut self, now: Instant, dev: &mut D) {
        self.iface.poll_egress(now, dev, &mut self.sockets);
        self.emit_oversize(now, dev);
    }

    /// A poll's last part, after egress so the last ACK of a TIME-WAIT socket has left:
    /// finished connections reaped, idle sockets freed, the socket set compacted.
    fn clean_up(&mut self, events: &mut Vec<WorkerEvent>) {
        self.reap(events);
        self.release_idle_sockets();
        self.compact_socket_set();
        self.rx_hint = self.conns.last().map_or(0, |(_, c)| c.rx_addr);
    }

    /// Hands the UDP datagrams above the inner MTU to `dev`, whole, as long as it takes
    /// packets; the rest wait for the next poll.
    fn emit_oversize<D: Device>(&mut self, now: Instant, dev: &mut D) {
        use smoltcp::phy::TxToken;
        let mut sent = 0;
        for d in &self.oversize {
            let Some(tx) = dev.transmit(now) else {
                break;
            };
            tx.consume(d.packet_len(), |buf| d.emit(buf));
            sent += 1;
        }
        self.oversize.drain(..sent);
        if self.oversize.is_empty() {
            self.oversize = Vec::new();
        }
    }

    /// Sockets this stack holds: connections, armed listeners, bound UDP sockets.
    fn live_sockets(&self) -> usize {
        self.conns.len() + self.tcp_listeners.len() + self.udp_sockets.len()
    }

    /// Adds a socket, giving an empty stack a socket set of [`SOCKET_SLOTS`] first, and a
    /// full one exactly one more slot.
    fn add_socket<T: smoltcp::socket::AnySocket<'static>>(&mut self, s: T) -> SocketHandle {
        self.room_for_socket();
        self.sockets.add(s)
    }

    /// Makes room in the socket set for one more socket, added right after (as
    /// [`UeStack::add_socket`] adds it).
    fn room_for_socket(&mut self) {
        let live = self.live_sockets();
        if live == 0 {
            // No handle is outstanding, so the set may be replaced.
            (self.sockets, self.socket_base) = new_socket_set(SOCKET_SLOTS);
            self.socket_slots = SOCKET_SLOTS as u8;
        } else if live >= usize::from(self.socket_slots) {
            // Left to itself the set's vector would grow to four slots.
            self.resize_socket_set(live + 1);
        }
        self.live_peak = self
            .live_peak
            .max(u8::try_from(live + 1).unwrap_or(u8::MAX));
    }

    /// Gives the socket set exactly as many slots as live sockets once some went (a slot is
    /// 480 bytes, a TCP socket's size: a registered UE keeps one connection, after two during
    /// its registration), and frees it once none is left (an idle stack holds none). A set
    /// with a slot that was never filled keeps it until a socket goes: a registration's first
    /// set is made for two (the unprotected connection, then the protected listener), and
    /// shrinking it to one after the first poll only to grow it back at the protected SYN made
    /// two more sets per registration (docs/BENCHMARKS.md, *Worker per registration, round 6*).
    fn compact_socket_set(&mut self) {
        let live = self.live_sockets();
        let went = live < usize::from(self.live_peak);
        if live < usize::from(self.socket_slots) && (live == 0 || went) {
            self.resize_socket_set(live);
        }
        self.live_peak = u8::try_from(live).unwrap_or(u8::MAX);
    }

    /// Moves the live sockets into a new set of `slots` slots, renaming their handles.
    fn resize_socket_set(&mut self, slots: usize) {
        let (mut new, base) = new_socket_set(slots);
        let mut moved = |old: &mut SocketSet<'static>, h: &mut SocketHandle| {
            *h = match old.remove(*h) {
                smoltcp::socket::Socket::Tcp(s) => new.add(s),
                // smoltcp is built with TCP and UDP sockets only (Cargo.toml features).
                smoltcp::socket::Socket::Udp(s) => new.add(s),
            };
        };
        for (h, _) in &mut self.conns {
            moved(&mut self.sockets, h);
        }
        for b in self.tcp_listeners.iter_mut().chain(&mut self.udp_sockets) {
            moved(&mut self.sockets, &mut b.handle);
        }
        self.sockets = new;
        self.socket_base = base;
        self.socket_slots = u8::try_from(slots).unwrap_or(u8::MAX);
    }

    /// Starts loading what the next input or poll of this stack reads first, beyond the
    /// stack itself: its socket slots, its connections and the SPIs of its flows, and the
    /// first `rx_bytes` (at most the receive buffer's size) of the newest connection's
    /// receive buffer, where a data segment of about that size is written when it is the
    /// connection's first (a hint: nothing is read). The worker calls it for the UEs of a
    /// received burst before it processes the burst, so that these first touches, misses at a
    /// few hundred UEs in flight, overlap instead of following one another
    /// (docs/ARCHITECTURE.md).
    pub fn prefetch(&self, rx_bytes: usize) {
        if self.rx_hint != 0 {
            for off in (0..rx_bytes.min(self.cfg.tcp_rx_buf)).step_by(64) {
                crate::sad::prefetch(std::ptr::without_provenance::<u8>(
                    self.rx_hint.wrapping_add(off),
                ));
            }
        }
        let slot = core::mem::size_of::<smoltcp::iface::SocketStorage<'static>>();
        let slots = usize::from(self.socket_slots) * slot;
        if self.socket_base != 0 {
            for off in (0..slots).step_by(64) {
                crate::sad::prefetch(std::ptr::without_provenance::<u8>(
                    self.socket_base.wrapping_add(off),
                ));
            }
        }
        let conns = self.conns.len() * core::mem::size_of::<(SocketHandle, TcpConn)>();
        let base = self.conns.as_ptr().cast::<u8>();
        for off in (0..conns).step_by(64) {
            crate::sad::prefetch(base.wrapping_add(off));
        }
        // (Inline but for many flows or ports: then their heap buffers.)
        if self.last_spi.spilled() {
            crate::sad::prefetch(self.last_spi.as_ptr());
        }
        if self.ports.spilled() {
            crate::sad::prefetch(self.ports.as_ptr());
        }
    }

    /// Frees listeners nobody connected to and UDP sockets with nothing queued.
    fn release_idle_sockets(&mut self) {
        let (sockets, recycle) = (&mut self.sockets, self.recycle);
        self.tcp_listeners.retain(|b| {
            let keep = !sockets.get::<tcp::Socket>(b.handle).is_listening();
            if !keep {
                remove_from(sockets, b.handle, recycle, b.rx_addr);
            }
            keep
        });
        self.udp_sockets.retain(|b| {
            let s = sockets.get::<udp::Socket>(b.handle);
            let keep = s.send_queue() > 0 || s.recv_queue() > 0;
            if !keep {
                sockets.remove(b.handle);
            }
            keep
        });
    }

    /// Removes connections that reached CLOSED or TIME-WAIT and reports them, in table
    /// order (in place: a connection's end is no allocation).
    fn reap(&mut self, events: &mut Vec<WorkerEvent>) {
        let mut i = 0;
        while let Some(&(handle, ref conn)) = self.conns.get(i) {
            let s = self.sockets.get::<tcp::Socket>(handle);
            if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
                let ev = conn.end_event(s);
                self.remove_conn(handle, Some(ev), events);
            } else {
                i += 1;
            }
        }
    }

    /// [`UeStack::remove_conn`] for each of `gone`, in order.
    fn remove_conns(
        &mut self,
        gone: Vec<(SocketHandle, Option<WorkerEvent>)>,
        events: &mut Vec<WorkerEvent>,
    ) {
        for (handle, ev) in gone {
            self.remove_conn(handle, ev, events);
        }
    }

    /// Removes the connection of `handle` and its socket, remembers a failed connect
    /// (`tcp_refused`) and reports `ev`.
    fn remove_conn(
        &mut self,
        handle: SocketHandle,
        ev: Option<WorkerEvent>,
        events: &mut Vec<WorkerEvent>,
    ) {
        let rx_addr = match self.conns.iter().position(|(h, _)| *h == handle) {
            Some(i) => self.conns.remove(i).1.rx_addr,
            None => 0,
        };
        self.remove_socket(handle, rx_addr);
        if let Some(WorkerEvent::ConnectFailed(f)) = ev {
            let key = (f.local_port, f.ue_port);
            if !self.tcp_refused.contains(&key) {
                if self.tcp_refused.len() >= self.cfg.max_tcp_conns {
                    self.tcp_refused.remove(0);
                }
                self.tcp_refused.push(key);
            }
        }
        events.extend(ev);
    }

    /// Moves listeners that left LISTEN into the connection table.
    fn accept(&mut self) {
        let mut i = 0;
        while i < self.tcp_listeners.len() {
            let Bound {
                port,
                handle,
                rx_addr,
            } = self.tcp_listeners[i];
            let s = self.sockets.get::<tcp::Socket>(handle);
            if s.is_listening() {
                i += 1;
                continue;
            }
            self.tcp_listeners.swap_remove(i);
            if let Some(remote) = s.remote_endpoint() {
                let flow = self.flow(Transport::Tcp, remote.port, port);
                let mut conn = self.new_conn(flow, false, rx_addr);
                // Only connections on the TLS port carry a session (it is the heavy part).
                if let Some(l) = self.tls.as_ref().filter(|l| l.port == port) {
                    match tls::TlsSession::new(l.config.clone()) {
                        Ok(t) => conn.tls = Some(Box::new(t)),
                        Err(_) => {
                            self.counters.tls_errors += 1;
                            self.sockets.get_mut::<tcp::Socket>(handle).abort();
                        }
                    }
                }
                self.push_conn(handle, conn);
                self.counters.accepted += 1;
            } else {
                self.remove_socket(handle, rx_addr);
            }
        }
    }

    /// Adds a connection. The first one gets room for two: a registration opens its
    /// protected connection while the unprotected one is still there, and a removal keeps
    /// the room, so a registered UE holds two slots either way; made at once, the second
    /// connection moves no first one (one allocation per registration fewer).
    fn push_conn(&mut self, handle: SocketHandle, conn: TcpConn) {
        self.conns
            .reserve_exact(if self.conns.capacity() == 0 { 2 } else { 1 });
        self.conns.push((handle, conn));
    }

    fn new_conn(&self, flow: Flow, outgoing: bool, rx_addr: usize) -> TcpConn {
        TcpConn {
            flow,
            rx_addr,
            framer: SipFramer::new(self.cfg.max_sip_header, self.cfg.max_sip_body),
            pending: VecDeque::new(),
            outgoing,
            established: false,
            close_requested: false,
            opened: self.now,
            last_message: self.now,
            partial_since: None,
            tls: None,
        }
    }

    fn flow(&self, proto: Transport, peer_port: u16, local_port: u16) -> Flow {
        Flow {
            ue: self.peer,
            ue_port: peer_port,
            local: self.local,
            local_port,
            proto,
        }
    }

    fn service(&mut self, now: Instant, events: &mut Vec<WorkerEvent>) {
        let mut gone = Vec::new();
        for (handle, conn) in self.conns.iter_mut() {
            let s = self.sockets.get_mut::<tcp::Socket>(*handle);
            let cx = ServiceCx {
                last_spi: &self.last_spi,
                counters: &mut self.counters,
                tcp_refused: &mut self.tcp_refused,
                now,
            };
            if !service_conn(conn, s, cx, events) {
                // RST in SYN-RECEIVED sends smoltcp back to LISTEN: the attempt is over.
                gone.push((*handle, None));
            }
        }
        self.remove_conns(gone, events);
        for b in &self.udp_sockets {
            let s = self.sockets.get_mut::<udp::Socket>(b.handle);
            while let Ok((data, meta)) = s.recv() {
                let flow = Flow {
                    ue: self.peer,
                    ue_port: meta.endpoint.port,
                    local: self.local,
                    local_port: b.port,
                    proto: Transport::Udp,
                };
                if IpAddr::from(meta.endpoint.addr) != self.peer {
                    continue;
                }
                let via_spi = spi_of(&self.last_spi, (Transport::Udp, flow.ue_port, b.port));
                self.counters.messages_in += 1;
                events.push(WorkerEvent::Sip(SipIn {
                    flow,
                    via_spi,
                    bytes: {
                        crate::copies::note(crate::copies::CopySite::UdpMessage, data.len());
                        data.to_vec()
                    },
                }));
            }
        }
    }

    /// Sends a SIP message on `flow` (see [`crate::ipc::WorkerCommand::Send`]). A UDP request
    /// larger than [`StackConfig::udp_max_request`] goes over TCP between the same ports
    /// (RFC 3261 18.1.1), opening the connection if needed, unless opening one between those
    /// ports failed last time and the datagram fits `ip_mtu`: then it is the retry over UDP
    /// RFC 3261 18.1.1 allows.
    ///
    /// A UDP datagram whose IP packet exceeds `ip_mtu` (a response, which has no TCP to go
    /// over, RFC 3261 18.2.2) leaves the stack whole, built here rather than by
    /// smoltcp: through SAs transport-mode ESP takes whole datagrams only (RFC 4303 3.1.1), so
    /// the worker encapsulates it and then fragments the ESP packet to the link MTU; an
    /// unprotected one is fragmented the same way.
    pub fn send(
        &mut self,
        flow: Flow,
        bytes: &[u8],
        connect_if_absent: bool,
    ) -> Result<(), StackError> {
        if flow.ue != self.peer || flow.local != self.local {
            return Err(StackError::WrongFlow);
        }
        match flow.proto {
            // RFC 3261 18.1.1: the client MAY retry over UDP a request whose TCP connection
            // failed; only unfragmented (transport-mode ESP takes whole datagrams only).
            Transport::Udp
                if self.tcp_refused.contains(&(flow.local_port, flow.ue_port))
                    && bytes.len() + UDP_HEADER_LEN + ip_header_len(flow.local)
                        <= self.cfg.ip_mtu =>
            {
                self.send_udp(flow, bytes)
            }
            Transport::Udp
                if bytes.len() > self.cfg.udp_max_request() && !bytes.starts_with(b"SIP/2.0 ") =>
            {
                let tcp_flow = Flow {
                    proto: Transport::Tcp,
                    ..flow
                };
                self.send_tcp(tcp_flow, bytes, true)
            }
            Transport::Udp => self.send_udp(flow, bytes),
            Transport::Tcp => self.send_tcp(flow, bytes, connect_if_absent),
        }
    }

    fn send_udp(&mut self, flow: Flow, bytes: &[u8]) -> Result<(), StackError> {
        let packet_len = ip_header_len(flow.local) + UDP_HEADER_LEN + bytes.len();
        if packet_len > self.cfg.ip_mtu {
            return self.send_oversize(flow, bytes, packet_len);
        }
        let handle = self
            .udp_socket(flow.local_port)
            .ok_or(StackError::NoUdpSocket)?;
        let s = self.sockets.get_mut::<udp::Socket>(handle);
        let meta = udp::UdpMetadata {
            endpoint: IpEndpoint::new(flow.ue.into(), flow.ue_port),
            local_address: Some(flow.local.into()),
            meta: Default::default(),
        };
        s.send_slice(bytes, meta)
            .map_err(|_| StackError::UdpBufferFull)?;
        crate::copies::note(crate::copies::CopySite::StackSend, bytes.len());
        Ok(())
    }

    /// Queues a UDP datagram whose IP packet (`packet_len` bytes) exceeds `ip_mtu`, to leave
    /// whole at the next poll ([`UeStack::emit_oversize`]).
    fn send_oversize(
        &mut self,
        flow: Flow,
        bytes: &[u8],
        packet_len: usize,
    ) -> Result<(), StackError> {
        if !self.listens_udp(flow.local_port) {
            return Err(StackError::NoUdpSocket);
        }
        // The IPv4 total length or IPv6 payload length must still hold it after ESP.
        let fixed = if flow.local.is_ipv4() { 0 } else { 40 };
        if packet_len - fixed + ESP_ROOM > usize::from(u16::MAX) {
            return Err(StackError::UdpTooLarge);
        }
        let queued: usize = self.oversize.iter().map(|d| d.payload.len()).sum();
        if queued + bytes.len() > self.cfg.max_pending {
            return Err(StackError::UdpBufferFull);
        }
        crate::copies::note(crate::copies::CopySite::StackSend, bytes.len());
        self.oversize.push(Oversize {
            flow,
            payload: bytes.to_vec(),
        });
        Ok(())
    }

    /// The connection of `flow` that may carry new messages: opening or established, not
    /// closing. Once the UE has sent its FIN (CLOSE-WAIT, LAST-ACK, CLOSING) or either side
    /// closed, bytes written to it would wait in `pending` for a window that never opens, or
    /// reach a UE socket that answers them with RST.
    fn find_conn(&self, flow: &Flow) -> Option<SocketHandle> {
        self.conns
            .iter()
            .find(|&&(h, ref c)| {
                c.flow == *flow
                    && !c.close_requested
                    && matches!(
                        self.sockets.get::<tcp::Socket>(h).state(),
                        tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Established
                    )
            })
            .map(|(h, _)| *h)
    }

    /// Drops the connections of `flow` that can no longer carry messages (see
    /// [`UeStack::find_conn`]) so a new one can take its four-tuple; each is reported as
    /// closed (or its unacknowledged bytes as lost). No segment is sent for them: the UE has
    /// closed its side, and a RST would only race the new connection's SYN.
    /// The events go out with the next poll.
    fn drop_stale(&mut self, flow: &Flow) {
        let sockets = &self.sockets;
        let gone: Vec<(SocketHandle, Option<WorkerEvent>)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.flow == *flow)
            .map(|&(h, ref c)| (h, Some(c.end_event(sockets.get::<tcp::Socket>(h)))))
            .collect();
        let mut events = std::mem::take(&mut self.deferred);
        self.remove_conns(gone, &mut events);
        self.deferred = events;
    }

    fn send_tcp(
        &mut self,
        flow: Flow,
        bytes: &[u8],
        connect_if_absent: bool,
    ) -> Result<(), StackError> {
        let tls_port = self.tls.as_ref().is_some_and(|l| l.port == flow.local_port);
        let handle = match self.find_conn(&flow) {
            Some(h) => h,
            // We open no TLS connections: a TLS client reaches us over its own (RFC 3261 26.2).
            None if !connect_if_absent || tls_port => return Err(StackError::NoConnection),
            None => {
                // The UE closed the old connection: a new one from the same port (RFC 3261
                // 18.1.1 opens a new connection when none is usable), never data after its FIN.
                self.drop_stale(&flow);
                self.connect(flow)?
            }
        };
        let Some((_, conn)) = self.conns.iter_mut().find(|(h, _)| *h == handle) else {
            return Err(StackError::NoConnection);
        };
        let s = self.sockets.get_mut::<tcp::Socket>(handle);
        if conn.tls.is_some() {
            // Records go through `pending`; the bound counts their overhead.
            if conn.pending.len() + tls::sealed_len(bytes.len()) > self.cfg.max_pending {
                return Err(StackError::SendQueueFull);
            }
            if conn.queue(bytes).is_err() {
                self.counters.tls_errors += 1;
                conn.pending = VecDeque::new();
                s.abort();
                return Err(StackError::NoConnection);
            }
            conn.flush(s);
            return Ok(());
        }
        // Straight into the socket while nothing waits before it; what does not fit waits in
        // `pending` (at most `max_pending` bytes) and follows as the window opens.
        let room = if conn.pending.is_empty() && s.may_send() {
            s.send_capacity() - s.send_queue()
        } else {
            0
        };
        if conn.pending.len() + bytes.len().saturating_sub(room) > self.cfg.max_pending {
            return Err(StackError::SendQueueFull);
        }
        let sent = if room > 0 {
            s.send_slice(bytes).unwrap_or(0)
        } else {
            0
        };
        let rest = bytes.get(sent..).unwrap_or_default();
        for n in [sent, rest.len()] {
            if n > 0 {
                crate::copies::note(crate::copies::CopySite::StackSend, n);
            }
        }
        conn.pending.extend(rest);
        conn.flush(s);
        Ok(())
    }

    fn connect(&mut self, flow: Flow) -> Result<SocketHandle, StackError> {
        if self.conns.len() >= self.cfg.max_tcp_conns {
            return Err(StackError::ConnLimit);
        }
        let (mut s, rx_addr) = self.new_tcp_socket();
        let remote = IpEndpoint::new(flow.ue.into(), flow.ue_port);
        let local = IpListenEndpoint {
            addr: Some(flow.local.into()),
            port: flow.local_port,
        };
        s.connect(self.iface.context(), remote, local)
            .map_err(|_| StackError::ConnectRefused)?;
        let handle = self.add_socket(s);
        let conn = self.new_conn(flow, true, rx_addr);
        self.push_conn(handle, conn);
        Ok(handle)
    }

    /// Closes the TCP connection of `flow` gracefully once its queued bytes are sent.
    pub fn close(&mut self, flow: Flow) -> Result<(), StackError> {
        let handle = self.find_conn(&flow).ok_or(StackError::NoConnection)?;
        if let Some((_, c)) = self.conns.iter_mut().find(|(h, _)| *h == handle) {
            c.close_requested = true;
            if let Some(t) = c.tls.as_mut() {
                // RFC 8446 6.1: close_notify before the FIN.
                let _ = t.close(&mut c.pending);
            }
            if c.pending.is_empty() {
                self.sockets.get_mut::<tcp::Socket>(handle).close();
            }
        }
        Ok(())
    }

    /// Discards every TCP connection between our `local_port` and the peer's `peer_port`
    /// without sending anything (no FIN, RST or retransmission: the SA that protected the
    /// flow is gone, TS 33.203 7.4/7.5), with their queued bytes and any of their packets not
    /// yet taken from the stack. Reports each as closed (or, if ours never connected, as
    /// failed) and returns how many there were.
    pub fn discard_flows(
        &mut self,
        local_port: u16,
        peer_port: u16,
        events: &mut Vec<WorkerEvent>,
    ) -> usize {
        let gone: Vec<(SocketHandle, Option<WorkerEvent>)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.flow.local_port == local_port && c.flow.ue_port == peer_port)
            .map(|&(h, ref c)| {
                let ev = if c.established || !c.outgoing {
                    WorkerEvent::TcpClosed(c.flow)
                } else {
                    WorkerEvent::ConnectFailed(c.flow)
                };
                (h, Some(ev))
            })
            .collect();
        let n = gone.len();
        for (h, _) in &gone {
            // abort() alone would send RST at the next egress; the socket is removed before.
            self.sockets.get_mut::<tcp::Socket>(*h).abort();
        }
        self.remove_conns(gone, events);
        self.dev.retain_tx(|pkt| {
            transport_ports(pkt).is_none_or(|p| {
                p.proto != Transport::Tcp || p.src != local_port || p.dst != peer_port
            })
        });
        n
    }

    /// Bytes still to leave, or to be acknowledged, on the flows from our `local_port` to the
    /// peer's `peer_port`: queued TCP bytes not yet in the socket, the TCP send buffers, and
    /// the UDP socket of `local_port`. 0 once everything written so far is gone (the worker's
    /// drain of a removed SA set waits for this).
    pub fn queued_bytes(&self, local_port: u16, peer_port: u16) -> usize {
        let tcp: usize = self
            .conns
            .iter()
            .filter(|(_, c)| c.flow.local_port == local_port && c.flow.ue_port == peer_port)
            .map(|(h, c)| c.pending.len() + self.sockets.get::<tcp::Socket>(*h).send_queue())
            .sum();
        let udp: usize = self
            .udp_sockets
            .iter()
            .filter(|b| b.port == local_port)
            .map(|b| self.sockets.get::<udp::Socket>(b.handle).send_queue())
            .sum();
        let oversize: usize = self
            .oversize
            .iter()
            .filter(|d| d.flow.local_port == local_port && d.flow.ue_port == peer_port)
            .map(|d| d.payload.len())
            .sum();
        tcp + udp + oversize
    }

    /// True if an ESTABLISHED TCP connection exists for `flow`.
    pub fn is_established(&self, flow: &Flow) -> bool {
        self.find_conn(flow)
            .is_some_and(|h| self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Established)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every live socket lies in the slots `socket_base` names (the prefetch hint follows the
    /// set through its replacements and resizes).
    fn sockets_within_base(st: &UeStack) -> bool {
        let slot = core::mem::size_of::<smoltcp::iface::SocketStorage<'static>>();
        let end = st.socket_base + usize::from(st.socket_slots) * slot;
        st.sockets.iter().all(|(_, s)| {
            let a = (s as *const smoltcp::socket::Socket<'_>).addr();
            a >= st.socket_base && a < end
        })
    }

    #[test]
    fn the_prefetch_hint_follows_the_socket_set() {
        let local = IpAddr::from([10, 0, 0, 1]);
        let peer = IpAddr::from([10, 0, 1, 2]);
        let mut st = UeStack::new(StackConfig::default(), local, peer, Instant::ZERO).unwrap();
        for port in [5060, 5062, 5064, 5066] {
            st.listen(port, true, false);
            st.arm_listener(port);
            assert_eq!(st.socket_count(), st.tcp_listeners.len());
            assert!(sockets_within_base(&st), "after arming {port}");
        }
        assert!(st.socket_slots >= 4);
        st.unlisten(5060);
        st.unlisten(5062);
        st.compact_socket_set();
        assert_eq!(st.socket_slots, 2);
        assert!(sockets_within_base(&st), "after the set shrank");
        st.prefetch(0);
    }

    /// A UE's `Interface` holds one address and one route and no neighbour table beyond one
    /// entry (smoltcp's `iface-*-count-1` features): 224 bytes on x86-64, 592 with smoltcp's
    /// defaults, in every registered UE's record. Both families still get their stack.
    #[test]
    fn the_interface_is_sized_for_one_address_and_one_route() {
        assert!(
            core::mem::size_of::<Interface>() <= 256,
            "Interface is {} bytes",
            core::mem::size_of::<Interface>()
        );
        let v4 = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 1, 2]));
        let v6 = (
            IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1]),
            IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 1, 2]),
        );
        for (local, peer) in [v4, v6] {
            let mut st = UeStack::new(StackConfig::default(), local, peer, Instant::ZERO).unwrap();
            assert!(st.iface.has_ip_addr(local));
            let mut routes = 0;
            st.iface.routes_mut().update(|r| routes = r.len());
            assert_eq!(routes, 1);
        }
        assert!(UeStack::new(StackConfig::default(), v4.0, v6.1, Instant::ZERO).is_none());
    }

    /// A registration's two sockets (the unprotected connection, then the protected
    /// listener) share the stack's first set: it is not shrunk after the first poll and grown
    /// back for the second socket, only shrunk once a socket went.
    #[test]
    fn the_first_set_keeps_its_spare_slot_until_a_socket_goes() {
        let local = IpAddr::from([10, 0, 0, 1]);
        let peer = IpAddr::from([10, 0, 1, 2]);
        let mut st = UeStack::new(StackConfig::default(), local, peer, Instant::ZERO).unwrap();
        st.listen(5060, true, false);
        st.listen(5062, true, false);
        st.arm_listener(5060);
        let base = st.socket_base;
        // The end of a poll with one socket live.
        st.compact_socket_set();
        assert_eq!(st.socket_slots, 2);
        st.arm_listener(5062);
        assert_eq!(
            st.socket_base, base,
            "the second socket took the spare slot"
        );
        st.compact_socket_set();
        assert_eq!(st.socket_slots, 2);
        st.unlisten(5060);
        st.compact_socket_set();
        assert_eq!(st.socket_slots, 1, "shrunk once a socket went");
        assert!(sockets_within_base(&st));
        st.unlisten(5062);
        st.compact_socket_set();
        assert_eq!(st.socket_slots, 0, "freed once none is left");
    }

    /// Sends every packet of `from` (by its own poll) into `to` (queued, polled there).
    fn carry(from: &mut UeStack, to: &mut UeStack, now: Instant, ev: &mut Vec<WorkerEvent>) {
        from.poll(now, ev);
        while let Some(p) = from.pop_outbound() {
            to.push_inbound(p, None).unwrap();
        }
    }

    /// Collects what a stack sends through [`UeStack::input`].
    struct Collect(Vec<Vec<u8>>);

    impl PacketSink for Collect {
        fn send<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, fill: F) -> R {
            let mut b = vec![0u8; len];
            let r = fill(&mut b);
            self.0.push(b);
            r
        }
        fn can_send(&mut self) -> bool {
            true
        }
    }

    /// The receive-buffer hint of [`UeStack::prefetch`] is where the newest connection's first
    /// data segment lands, for a socket taken from the thread's spares (whose address the
    /// spare list carries) and for one made afresh: checked against the bytes smoltcp wrote.
    #[test]
    fn the_rx_hint_is_where_the_first_segment_lands() {
        let (p, u) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 1, 2]));
        let cfg = StackConfig::default();
        for spare in [true, false] {
            if spare {
                reserve_spare_sockets(1, cfg.tcp_rx_buf, cfg.tcp_tx_buf);
            }
            let mut pc = UeStack::new(cfg.clone(), p, u, Instant::ZERO).unwrap();
            pc.recycle_sockets();
            pc.listen(5060, true, false);
            let mut ue = UeStack::new(cfg.clone(), u, p, Instant::ZERO).unwrap();
            let (mut ev, mut sink) = (Vec::new(), Collect(Vec::new()));
            let flow = Flow {
                ue: p,
                ue_port: 5060,
                local: u,
                local_port: 40000,
                proto: Transport::Tcp,
            };
            let msg = b"OPTIONS sip:p SIP/2.0\r\nContent-Length: 0\r\n\r\n";
            // The handshake: SYN, SYN-ACK, then the UE's ACK and its first segment.
            ue.send(flow, msg, true).unwrap();
            carry(&mut ue, &mut pc, Instant::ZERO, &mut ev);
            carry(&mut pc, &mut ue, Instant::ZERO, &mut ev);
            assert_eq!(pc.conns.len(), 1, "accepted");
            let hint = pc.rx_hint;
            assert_ne!(hint, 0, "set by the poll after the SYN");
            assert_eq!(hint, pc.conns[0].1.rx_addr);
            ue.poll(Instant::ZERO, &mut ev);
            let mut data = 0;
            while let Some(pk) = ue.pop_outbound() {
                pc.input(&pk, None, Instant::ZERO, &mut sink);
                data += 1;
            }
            assert!(data >= 1);
            // Received, not yet framed: the first byte smoltcp wrote is at the hint.
            let h = pc.conns[0].0;
            let s = pc.sockets.get_mut::<tcp::Socket>(h);
            let at = s.peek(msg.len()).unwrap();
            assert_eq!(at, &msg[..], "spare {spare}");
            assert_eq!(at.as_ptr().addr(), hint, "spare {spare}");
            pc.prefetch(msg.len());
        }
    }

    /// The send-buffer hint (`prefetch_send_room`) is where the next bytes written into the
    /// socket go, takes nothing from it and changes nothing the peer sees: checked by where
    /// the room starts after the answer is written (right behind it, the ring being written
    /// contiguously from the write position), with and without bytes queued before, and by
    /// the answer reaching the UE whole.
    #[test]
    fn the_send_hint_is_where_the_answer_goes_and_takes_nothing() {
        let (p, u) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 1, 2]));
        let cfg = StackConfig::default();
        let mut pc = UeStack::new(cfg.clone(), p, u, Instant::ZERO).unwrap();
        pc.listen(5060, true, false);
        let mut ue = UeStack::new(cfg, u, p, Instant::ZERO).unwrap();
        let mut ev = Vec::new();
        let flow = Flow {
            ue: p,
            ue_port: 5060,
            local: u,
            local_port: 40000,
            proto: Transport::Tcp,
        };
        let msg = b"OPTIONS sip:p SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        ue.send(flow, msg, true).unwrap();
        for _ in 0..3 {
            carry(&mut ue, &mut pc, Instant::ZERO, &mut ev);
            carry(&mut pc, &mut ue, Instant::ZERO, &mut ev);
        }
        assert!(
            ev.iter()
                .any(|e| matches!(e, WorkerEvent::Sip(m) if m.bytes == msg)),
            "the request was framed"
        );
        let h = pc.conns[0].0;
        let s = pc.sockets.get_mut::<tcp::Socket>(h);
        assert_eq!(s.send_queue(), 0);
        let (at, n) = prefetch_send_room(s, 100).expect("established");
        assert_eq!(n, 100);
        assert_eq!(s.send_queue(), 0, "the hint takes no room");
        let (again, _) = prefetch_send_room(s, 5000).unwrap();
        assert_eq!(again, at, "asking twice points at the same spot");
        assert_eq!(
            prefetch_send_room(s, 5000).unwrap().1,
            SEND_PREFETCH_MAX,
            "bounded"
        );
        let answer = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(s.send_slice(&answer[..10]).unwrap(), 10);
        let (after_part, _) = prefetch_send_room(s, 1).unwrap();
        assert_eq!(after_part, at + 10, "the first ten bytes went to the hint");
        assert_eq!(s.send_slice(&answer[10..]).unwrap(), answer.len() - 10);
        let (after, _) = prefetch_send_room(s, 1).unwrap();
        assert_eq!(after, at + answer.len(), "the rest followed them");
        assert_eq!(s.send_queue(), answer.len());
        let mut got = Vec::new();
        for _ in 0..3 {
            carry(&mut pc, &mut ue, Instant::ZERO, &mut ev);
            // The UE's events: what its poll framed.
            carry(&mut ue, &mut pc, Instant::ZERO, &mut got);
        }
        assert!(
            got.iter()
                .any(|e| matches!(e, WorkerEvent::Sip(m) if m.bytes == answer)),
            "the answer reached the UE whole: {got:?}"
        );
        let s = pc.sockets.get_mut::<tcp::Socket>(h);
        s.close();
        assert_eq!(
            prefetch_send_room(s, 100),
            None,
            "nothing once the socket may not send"
        );
    }

    /// The P-CSCF's stack listening on 5060, two UE stacks at one address, and the flow of
    /// the UE's connection from port 40000 as each side names it.
    struct PcAndUes {
        pc: UeStack,
        ue: UeStack,
        ue2: UeStack,
        to_pc: Flow,
        to_ue: Flow,
    }

    fn pc_and_ues() -> PcAndUes {
        pc_and_ues_with(StackConfig::default())
    }

    /// The UE's packets at `t` into `pc` by `input`, each then offered to `reap_closed` if
    /// `reap` and its input needs a poll; then, if `poll`, `pc`'s poll; `pc`'s output back into
    /// the UE. Per input: whether it needs a poll, and whether `reap_closed` took it.
    fn exchange(
        pc: &mut UeStack,
        ue: &mut UeStack,
        t: i64,
        poll: bool,
        reap: bool,
        ev: &mut Vec<WorkerEvent>,
        sink: &mut Collect,
    ) -> Vec<(bool, bool)> {
        let now = Instant::from_millis(t);
        ue.poll(now, &mut Vec::new());
        let mut said = Vec::new();
        while let Some(pk) = ue.pop_outbound() {
            let needs = pc.input(&pk, None, now, sink);
            said.push((needs, reap && needs && pc.reap_closed(now, 40000, 5060, ev)));
        }
        if poll {
            pc.poll_with(now, ev, sink);
        }
        for pk in sink.0.drain(..) {
            ue.push_inbound(pk, None).unwrap();
        }
        said
    }

    /// A poll of `pc` at `now` has nothing to do: it sends nothing, reports nothing, and
    /// leaves the deadline (none, or later than `now`) where it was.
    fn poll_does_nothing(
        pc: &mut UeStack,
        now: Instant,
        ev: &mut Vec<WorkerEvent>,
        sink: &mut Collect,
    ) {
        let due = pc.poll_at(now);
        assert!(due.is_none_or(|t| t > now));
        pc.poll_with(now, ev, sink);
        assert!(
            sink.0.is_empty() && ev.is_empty(),
            "the poll had nothing to do"
        );
        assert_eq!(pc.poll_at(now), due, "nor did it move the deadline");
    }

    /// Opens a second connection from `ue2` (port 40001, carrying `request`) and hands its SYN
    /// to `pc` at `now`: a connection that stays in its handshake (its SYN-ACK is never
    /// delivered back), beside the one a test is about.
    fn second_syn(
        ue2: &mut UeStack,
        pc: &mut UeStack,
        to_pc: Flow,
        request: &[u8],
        now: Instant,
        sink: &mut Collect,
    ) {
        let second = Flow {
            local_port: 40001,
            ..to_pc
        };
        ue2.send(second, request, true).unwrap();
        ue2.poll(now, &mut Vec::new());
        let syn = ue2.pop_outbound().unwrap();
        assert!(pc.input(&syn, None, now, sink), "the second SYN");
    }

    /// [`pc_and_ues`] with stacks of `cfg`.
    fn pc_and_ues_with(cfg: StackConfig) -> PcAndUes {
        let (p, u) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 1, 2]));
        let mut pc = UeStack::new(cfg.clone(), p, u, Instant::ZERO).unwrap();
        pc.listen(5060, true, false);
        PcAndUes {
            pc,
            ue: UeStack::new(cfg.clone(), u, p, Instant::ZERO).unwrap(),
            ue2: UeStack::new(cfg, u, p, Instant::ZERO).unwrap(),
            to_pc: Flow {
                ue: p,
                ue_port: 5060,
                local: u,
                local_port: 40000,
                proto: Transport::Tcp,
            },
            to_ue: Flow {
                ue: u,
                ue_port: 40000,
                local: p,
                local_port: 5060,
                proto: Transport::Tcp,
            },
        }
    }

    /// Only a pure ACK that leaves nothing to do needs no poll, and a poll after it would
    /// indeed do nothing (no packet, no event, the same deadline): the UE's ACK of a
    /// response. The SYN, the handshake's ACK with the request, the FIN and the ACK of ours
    /// all need their poll.
    #[test]
    fn a_pure_ack_that_leaves_nothing_to_do_needs_no_poll() {
        let PcAndUes {
            mut pc,
            mut ue,
            mut ue2,
            to_pc,
            to_ue,
        } = pc_and_ues();
        let (mut ev, mut sink) = (Vec::new(), Collect(Vec::new()));
        let at = |ms| Instant::from_millis(ms);
        // What each input said (whether it needs the poll), after which `pc` polls.
        let step = |pc: &mut UeStack, ue: &mut UeStack, t, ev: &mut _, sink: &mut _| {
            let said = exchange(pc, ue, t, true, false, ev, sink);
            said.into_iter()
                .map(|(needs, _)| needs)
                .collect::<Vec<bool>>()
        };
        let request = b"OPTIONS sip:p SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        ue.send(to_pc, request, true).unwrap();
        assert_eq!(step(&mut pc, &mut ue, 0, &mut ev, &mut sink), [true], "SYN");
        let mut needs = step(&mut pc, &mut ue, 1, &mut ev, &mut sink);
        needs.extend(step(&mut pc, &mut ue, 30, &mut ev, &mut sink));
        assert!(
            !needs.is_empty() && needs.iter().all(|&n| n),
            "handshake, request"
        );
        assert!(ev.iter().any(|e| matches!(e, WorkerEvent::Sip(_))));
        ev.clear();
        pc.send(to_ue, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false)
            .unwrap();
        pc.poll_with(at(31), &mut ev, &mut sink);
        assert_eq!(sink.0.len(), 1, "the response");
        for pk in sink.0.drain(..) {
            ue.push_inbound(pk, None).unwrap();
        }
        // A second connection that stays in its handshake (its SYN-ACK never arrives) and a
        // listener armed for another port: neither is quiet, and neither is what the ACK
        // below is for (round 12: they used to cost it a poll).
        pc.listen(6100, true, false);
        let mut ue_ev = Vec::new();
        second_syn(&mut ue2, &mut pc, to_pc, request, at(31), &mut sink);
        pc.poll_with(at(31), &mut ev, &mut sink);
        assert_eq!(sink.0.len(), 1, "its SYN-ACK, never delivered");
        sink.0.clear();
        assert_eq!(pc.tcp_connections(), 2);
        assert!(ev.is_empty());
        // The UE's delayed ACK of the response: a pure ACK, nothing left to do.
        ue.poll(at(31), &mut ue_ev);
        ue.poll(at(80), &mut ue_ev);
        let acks: Vec<Vec<u8>> = std::iter::from_fn(|| ue.pop_outbound()).collect();
        assert_eq!(acks.len(), 1);
        assert!(
            !pc.input(&acks[0], None, at(80), &mut sink),
            "the ACK of the response"
        );
        poll_does_nothing(&mut pc, at(80), &mut ev, &mut sink);
        assert_eq!(pc.tcp_connections(), 2);
        // The UE closes: its FIN, and the ACK of ours, each need their poll (the second one
        // reaps the connection).
        ue.close(to_pc).unwrap();
        let mut needs = step(&mut pc, &mut ue, 100, &mut ev, &mut sink);
        needs.extend(step(&mut pc, &mut ue, 101, &mut ev, &mut sink));
        assert!(
            needs.len() >= 2 && needs.iter().all(|&n| n),
            "FIN, ACK of ours"
        );
        assert_eq!(
            pc.tcp_connections(),
            1,
            "the second one, still in its handshake"
        );
    }

    /// The UE's ACK of our FIN (LAST-ACK to CLOSED) still asks for a poll, but
    /// `reap_closed` does that poll's whole work in place: the connection goes, its end is
    /// reported as the poll would report it (`TcpClosed` of its flow, nothing else), and a
    /// poll then has nothing left to do (no packet, no event, the same deadline), while a
    /// second connection in its handshake stays. Only that ACK qualifies: not the UE's FIN
    /// before it, and not after a poll already ran.
    #[test]
    fn the_ue_s_last_ack_is_reaped_without_a_poll() {
        let PcAndUes {
            mut pc,
            mut ue,
            mut ue2,
            to_pc,
            to_ue,
        } = pc_and_ues();
        let (mut ev, mut sink) = (Vec::new(), Collect(Vec::new()));
        let at = |ms| Instant::from_millis(ms);
        // What each input said (needs a poll) and whether `reap_closed` took it.
        let step = |pc: &mut UeStack, ue: &mut UeStack, t, poll, ev: &mut _, sink: &mut _| {
            exchange(pc, ue, t, poll, true, ev, sink)
        };
        let request = b"OPTIONS sip:p SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        ue.send(to_pc, request, true).unwrap();
        for t in [0, 1, 30] {
            let said = step(&mut pc, &mut ue, t, true, &mut ev, &mut sink);
            assert!(said.iter().all(|&(_, reaped)| !reaped), "at {t} ms");
        }
        assert!(ev.iter().any(|e| matches!(e, WorkerEvent::Sip(_))));
        ev.clear();
        pc.send(to_ue, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false)
            .unwrap();
        pc.poll_with(at(31), &mut ev, &mut sink);
        for pk in sink.0.drain(..) {
            ue.push_inbound(pk, None).unwrap();
        }
        // A second connection that stays in its handshake.
        second_syn(&mut ue2, &mut pc, to_pc, request, at(31), &mut sink);
        assert!(!pc.reap_closed(at(31), 40001, 5060, &mut ev), "a SYN");
        pc.poll_with(at(31), &mut ev, &mut sink);
        sink.0.clear();
        assert_eq!(pc.tcp_connections(), 2);
        assert!(ev.is_empty());
        // The UE's FIN (with or after its ACK of the response): polled, our FIN leaves.
        ue.close(to_pc).unwrap();
        let said = step(&mut pc, &mut ue, 100, true, &mut ev, &mut sink);
        assert!(!said.is_empty() && said.iter().all(|&(_, reaped)| !reaped));
        assert!(ev.is_empty(), "nothing reported yet: {ev:?}");
        assert_eq!(pc.tcp_connections(), 2, "in LAST-ACK");
        // The UE's ACK of our FIN: reaped in place, no poll.
        let said = step(&mut pc, &mut ue, 101, false, &mut ev, &mut sink);
        assert_eq!(said, [(true, true)], "the ACK of our FIN");
        assert!(
            matches!(ev.as_slice(), [WorkerEvent::TcpClosed(f)] if *f == to_ue),
            "{ev:?}"
        );
        assert_eq!(pc.tcp_connections(), 1, "the second one stays");
        // The deadline the worker then moves is the one the reap read (not asked again): the
        // stack's own, the second connection's handshake timer.
        let due = pc.poll_at_after_input(at(101));
        assert!(due.is_some_and(|t| t > at(101)));
        assert_eq!(due, pc.poll_at(at(101)));
        assert!(!pc.reap_closed(at(101), 40000, 5060, &mut ev), "only once");
        ev.clear();
        poll_does_nothing(&mut pc, at(101), &mut ev, &mut sink);
        assert_eq!(pc.tcp_connections(), 1);
    }

    /// The pure ACK of the IPv4 TCP segment `pk`: its header (ports, sequence and
    /// acknowledgement numbers, window) without its payload, checksums made afresh.
    fn ack_of(pk: &[u8]) -> Vec<u8> {
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};
        let caps = ChecksumCapabilities::default();
        let ip = Ipv4Packet::new_checked(pk).unwrap();
        let ipr = Ipv4Repr::parse(&ip, &caps).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let (src, dst) = (ipr.src_addr.into(), ipr.dst_addr.into());
        let mut r = TcpRepr::parse(&tcp, &src, &dst, &caps).unwrap();
        assert!(!r.payload.is_empty() && r.ack_number.is_some());
        r.payload = &[];
        let ipr = Ipv4Repr {
            payload_len: r.buffer_len(),
            ..ipr
        };
        let mut out = vec![0u8; ipr.buffer_len() + r.buffer_len()];
        ipr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), &caps);
        let (_, t) = out.split_at_mut(ipr.buffer_len());
        r.emit(&mut TcpPacket::new_unchecked(t), &src, &dst, &caps);
        out
    }

    /// The UE's request on a connection whose ACK can wait: `frame_in_input` does its poll
    /// in place (the request reported, exactly, into the events), and a poll afterwards has
    /// nothing left to do (no packet, no event, the same deadline). The handshake's last ACK
    /// sent apart (as a kernel does) is quiet. Not in place: a SYN; the same input twice; a
    /// request of more than half the receive buffer (its window update is due now: framed
    /// here, the update left to the poll); a ping (its pong); a request whose SIP-port
    /// deadline is due (the poll expires the connection first). A second connection held in
    /// its handshake stays as it is throughout.
    #[test]
    fn a_request_whose_ack_can_wait_is_framed_without_a_poll() {
        /// The UE sends `bytes` on its connection and polls: its one segment out.
        fn segment_of(ue: &mut UeStack, to_pc: Flow, bytes: &[u8], now: Instant) -> Vec<u8> {
            ue.send(to_pc, bytes, false).unwrap();
            ue.poll(now, &mut Vec::new());
            ue.pop_outbound().unwrap()
        }
        /// What the P-CSCF sent, handed to the UE.
        fn deliver(sink: &mut Collect, ue: &mut UeStack) {
            for pk in sink.0.drain(..) {
                ue.push_inbound(pk, None).unwrap();
            }
        }
        // A 2 KiB receive buffer, so that one full segment fills more than half of it (below).
        let PcAndUes {
            mut pc,
            mut ue,
            mut ue2,
            to_pc,
            to_ue,
        } = pc_and_ues_with(StackConfig {
            tcp_rx_buf: 2048,
            ..StackConfig::default()
        });
        let (mut ev, mut ue_ev, mut sink) = (Vec::new(), Vec::new(), Collect(Vec::new()));
        let at = |ms| Instant::from_millis(ms);
        let d = ConnDeadlines {
            message: Duration::from_secs(10),
            idle: Some(Duration::from_secs(64)),
        };
        let request = b"OPTIONS sip:p SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        // The second connection: its SYN is not framed in place, its SYN-ACK never arrives.
        second_syn(&mut ue2, &mut pc, to_pc, request, at(0), &mut sink);
        assert!(
            !pc.frame_in_input(at(0), 40001, 5060, (5060, d), &mut ev),
            "a SYN"
        );
        pc.poll_with(at(0), &mut ev, &mut sink);
        sink.0.clear();
        // The UE's SYN, polled: our SYN-ACK back.
        ue.send(to_pc, request, true).unwrap();
        ue.poll(at(0), &mut ue_ev);
        let syn = ue.pop_outbound().unwrap();
        assert!(pc.input(&syn, None, at(0), &mut sink));
        assert!(
            !pc.frame_in_input(at(0), 40000, 5060, (5060, d), &mut ev),
            "a SYN"
        );
        pc.poll_with(at(0), &mut ev, &mut sink);
        assert_eq!(sink.0.len(), 1, "the SYN-ACK");
        deliver(&mut sink, &mut ue);
        assert!(ev.is_empty());
        // The UE's ACK with its request, and that ACK alone first.
        ue.poll(at(1), &mut ue_ev);
        let data = ue.pop_outbound().unwrap();
        assert!(ue.pop_outbound().is_none());
        assert!(
            !pc.input(&ack_of(&data), None, at(1), &mut sink),
            "the handshake's last ACK is quiet"
        );
        assert!(pc.input(&data, None, at(1), &mut sink), "the request");
        assert!(pc.frame_in_input(at(1), 40000, 5060, (5060, d), &mut ev));
        assert!(
            matches!(ev.as_slice(), [WorkerEvent::Sip(m)] if m.flow == to_ue && m.bytes == request),
            "{ev:?}"
        );
        assert!(sink.0.is_empty(), "nothing sent");
        assert!(
            !pc.frame_in_input(at(1), 40000, 5060, (5060, d), &mut ev),
            "once"
        );
        ev.clear();
        let due = pc.poll_at_after_input(at(1));
        assert!(due.is_some_and(|t| t > at(1)), "the delayed ACK");
        assert_eq!(pc.poll_at(at(1)), due);
        poll_does_nothing(&mut pc, at(1), &mut ev, &mut sink);
        assert_eq!(pc.tcp_connections(), 2);
        // More than half the receive buffer: framed, but the window update is due now.
        let body = vec![b'x'; pc.cfg.tcp_rx_buf / 2 + 100];
        let mut big = format!(
            "MESSAGE sip:p SIP/2.0\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        big.extend_from_slice(&body);
        let data = segment_of(&mut ue, to_pc, &big, at(2));
        assert!(ue.pop_outbound().is_none(), "one segment");
        assert!(pc.input(&data, None, at(2), &mut sink));
        assert!(!pc.frame_in_input(at(2), 40000, 5060, (5060, d), &mut ev));
        assert!(
            matches!(ev.as_slice(), [WorkerEvent::Sip(m)] if m.bytes == big),
            "framed in place all the same"
        );
        ev.clear();
        pc.poll_with(at(2), &mut ev, &mut sink);
        assert_eq!(sink.0.len(), 1, "the window update");
        assert!(ev.is_empty(), "nothing framed twice");
        deliver(&mut sink, &mut ue);
        // A ping: its pong needs the poll.
        let data = segment_of(&mut ue, to_pc, b"\r\n\r\n", at(3));
        assert!(pc.input(&data, None, at(3), &mut sink));
        assert!(!pc.frame_in_input(at(3), 40000, 5060, (5060, d), &mut ev));
        assert!(ev.is_empty());
        pc.poll_with(at(3), &mut ev, &mut sink);
        assert_eq!(sink.0.len(), 1, "the pong");
        deliver(&mut sink, &mut ue);
        // A message begun at 4 ms (framed in place: nothing to report yet) and ended after
        // its deadline: left to the poll, which expires the connection first.
        let data = segment_of(&mut ue, to_pc, b"OPTIONS sip:p SIP/2.0\r\n", at(4));
        assert!(pc.input(&data, None, at(4), &mut sink));
        assert!(pc.frame_in_input(at(4), 40000, 5060, (5060, d), &mut ev));
        assert!(ev.is_empty() && sink.0.is_empty());
        pc.poll_with(at(30), &mut ev, &mut sink);
        deliver(&mut sink, &mut ue);
        let data = segment_of(&mut ue, to_pc, b"Content-Length: 0\r\n\r\n", at(10_005));
        assert!(pc.input(&data, None, at(10_005), &mut sink));
        assert!(!pc.frame_in_input(at(10_005), 40000, 5060, (5060, d), &mut ev));
        assert!(ev.is_empty(), "not framed: {ev:?}");
        // What the poll expires first: this message, and the other handshake by now.
        let ex = pc.expire_conns(5060, at(10_005), d);
        assert_eq!((ex.message, ex.handshake), (1, 1));
    }

    /// A port listens for what it was asked to, each transport on its own, in one entry,
    /// until it is unlistened; another port is untouched.
    /// `conns_on` counts the connections to the port and those of them in the handshake, as
    /// the handshakes stand: one established (its SYN-ACK answered) and one whose SYN-ACK never
    /// reaches its UE; the deadline walk (`port_use`) counts the same, and another port none.
    #[test]
    fn conns_on_counts_the_port_s_connections_and_handshakes() {
        let PcAndUes {
            mut pc,
            mut ue,
            mut ue2,
            to_pc,
            ..
        } = pc_and_ues();
        let (mut ev, mut sink) = (Vec::new(), Collect(Vec::new()));
        assert_eq!(pc.conns_on(5060), (0, 0));
        ue.send(
            to_pc,
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n",
            true,
        )
        .unwrap();
        exchange(&mut pc, &mut ue, 0, true, false, &mut ev, &mut sink);
        assert_eq!(pc.conns_on(5060), (1, 1), "the SYN-ACK is not yet answered");
        exchange(&mut pc, &mut ue, 1, true, false, &mut ev, &mut sink);
        assert_eq!(pc.conns_on(5060), (1, 0), "established");
        second_syn(
            &mut ue2,
            &mut pc,
            to_pc,
            b"x",
            Instant::from_millis(2),
            &mut sink,
        );
        assert_eq!(pc.conns_on(5060), (2, 1), "a second one in its handshake");
        let d = ConnDeadlines {
            message: Duration::from_secs(10),
            idle: Some(Duration::from_secs(64)),
        };
        let u = pc.port_use(5060, d);
        assert_eq!((u.conns, u.half_open), (2, 1));
        assert_eq!(pc.conns_on(5061), (0, 0));
    }

    #[test]
    fn ports_listen_per_transport_in_one_entry() {
        let local = IpAddr::from([10, 0, 0, 1]);
        let peer = IpAddr::from([10, 0, 1, 2]);
        let mut st = UeStack::new(StackConfig::default(), local, peer, Instant::ZERO).unwrap();
        st.listen(5060, true, false);
        assert!(st.listens_tcp(5060) && !st.listens_udp(5060));
        st.listen(5060, false, true);
        st.listen(5060, true, true);
        st.listen(5062, false, true);
        st.listen(5064, false, false);
        assert!(st.listens_tcp(5060) && st.listens_udp(5060));
        assert!(!st.listens_tcp(5062) && st.listens_udp(5062));
        assert!(!st.listens_tcp(5064) && !st.listens_udp(5064));
        assert_eq!(st.ports.len(), 2, "one entry per port");
        st.unlisten(5060);
        assert!(!st.listens_tcp(5060) && !st.listens_udp(5060));
        assert!(st.listens_udp(5062));
    }
}
