//! The core side of proxy mode (`[ims-core]`): SIP to and from the I-CSCF / S-CSCF over the
//! host's own UDP and TCP sockets on the core-facing address — the usual SBC split into an
//! access realm (the fast path's port, ESP, per-UE stacks) and a core realm (a handful of
//! trusted peers, plain SIP). Why kernel sockets and not a second fast-path port: the core
//! side carries no ESP and few, long-lived connections, so the kernel's TCP is the proven
//! choice and costs nothing on the per-packet path; see docs/ARCHITECTURE.md.
//!
//! Threads: one receives UDP, one accepts TCP connections, one reader per TCP connection
//! frames SIP with the same scanner as the fast path, one writer sends (opening a TCP
//! connection from our address when none is open to a peer). Received messages join the
//! workers' event queue as `WorkerEvent::Sip` on a flow whose local address is ours, so the
//! core handles them like any other — with slowpath shards, through the workers' router to
//! the shard each belongs to; every shard hands `Send`/`Close` for such flows here through
//! its own [`CoreLinkTx`] with a non-blocking `try_send`. Nothing here ever blocks the
//! slowpath.

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use akagate_fastpath::ipc::{Flow, SipIn, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::worker::EventSink;
use akagate_proto::stream::{read_sip_stream, StreamEnd};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How long opening a TCP connection to a next hop may take before its requests fail over.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write to a core peer may block the writer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages waiting for the writer.
const OUT_QUEUE: usize = 8192;
/// Open TCP connections on the core side (peers are a few CSCFs; anything beyond is refused).
const MAX_CONNECTIONS: usize = 256;

/// Counters of the core link, published as the slowpath's `core_link_*` counters
/// (`akactl stats`, metrics).
#[derive(Debug, Default)]
pub(crate) struct CoreLinkCounters {
    /// SIP messages received from the core side.
    pub received: AtomicU64,
    /// SIP messages sent to the core side.
    pub sent: AtomicU64,
    /// Messages dropped: event queue full, writer queue full, send errors, framing errors.
    pub dropped: AtomicU64,
    /// TCP connections opened to or accepted from core peers.
    pub connections: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the writer does.
enum Outgoing {
    Send { flow: Flow, bytes: Vec<u8> },
    Close(Flow),
}

/// Open TCP connections by peer address (write halves).
type Connections = Arc<Mutex<HashMap<SocketAddr, TcpStream>>>;

/// The running core link (its threads; one slowpath shard stops it).
pub(crate) struct CoreLink {
    tx: CoreLinkTx,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Counters, shared with the stats.
    pub counters: Arc<CoreLinkCounters>,
}

/// What a slowpath shard sends the core side through (each shard has a clone).
#[derive(Clone)]
pub(crate) struct CoreLinkTx {
    local: SocketAddr,
    out: Sender<Outgoing>,
    counters: Arc<CoreLinkCounters>,
}

/// What every thread of the link shares.
#[derive(Clone)]
struct Shared {
    local: SocketAddr,
    events: EventSink,
    conns: Connections,
    stop: Arc<AtomicBool>,
    counters: Arc<CoreLinkCounters>,
}

impl Shared {
    fn flow(&self, peer: SocketAddr, proto: Transport) -> Flow {
        Flow {
            ue: peer.ip(),
            ue_port: peer.port(),
            local: self.local.ip(),
            local_port: self.local.port(),
            proto,
        }
    }

    /// Hands an event to the slowpath; a full queue drops it (counted), never blocks.
    fn deliver(&self, ev: WorkerEvent) {
        if self.events.try_send(ev).is_err() {
            inc(&self.counters.dropped);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

impl CoreLink {
    /// Binds UDP and TCP on `local` and starts the threads; messages received go to `events`
    /// (the slowpath, or each to its shard).
    pub fn start(local: SocketAddr, events: EventSink) -> std::io::Result<CoreLink> {
        let udp = UdpSocket::bind(local)?;
        // A burst of core messages (thousands of registrations at once) must not overflow
        // the default receive buffer: 4 MiB, as much as the host allows.
        let _ = socket2::SockRef::from(&udp).set_recv_buffer_size(4 << 20);
        udp.set_read_timeout(Some(POLL))?;
        let listener = TcpListener::bind(local)?;
        listener.set_nonblocking(true)?;
        let (out, out_rx) = bounded(OUT_QUEUE);
        let shared = Shared {
            local,
            events,
            conns: Arc::new(Mutex::new(HashMap::new())),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(CoreLinkCounters::default()),
        };
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.to_string()).spawn(f)
        };
        let (s, u) = (shared.clone(), udp.try_clone()?);
        threads.push(spawn(
            "akagate-core-udp",
            Box::new(move || udp_receiver(&s, &u)),
        )?);
        let s = shared.clone();
        threads.push(spawn(
            "akagate-core-acc",
            Box::new(move || acceptor(&s, &listener)),
        )?);
        let s = shared.clone();
        threads.push(spawn(
            "akagate-core-tx",
            Box::new(move || writer(&s, &udp, &out_rx)),
        )?);
        tracing::info!("core link on {local} (UDP and TCP)");
        Ok(CoreLink {
            tx: CoreLinkTx {
                local,
                out,
                counters: shared.counters.clone(),
            },
            threads,
            stop: shared.stop,
            counters: shared.counters,
        })
    }

    /// A sending half for one slowpath shard.
    pub fn sender(&self) -> CoreLinkTx {
        self.tx.clone()
    }

    /// Stops the threads and waits for them (connections are shut down); the writer goes
    /// once the stop is seen, whatever senders the other shards still hold.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        drop(self.tx);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl CoreLinkTx {
    /// Whether `flow` is on the core side.
    pub fn owns(&self, flow: &Flow) -> bool {
        flow.local == self.local.ip()
    }

    /// Queues a `Send` or `Close` for the core side; false if the writer's queue is full
    /// (counted as dropped) or the command is not one the link carries.
    pub fn submit(&self, cmd: WorkerCommand) -> bool {
        let out = match cmd {
            WorkerCommand::Send { flow, bytes, .. } => Outgoing::Send { flow, bytes },
            WorkerCommand::Close(flow) => Outgoing::Close(flow),
            _ => return false,
        };
        let ok = self.out.try_send(out).is_ok();
        if !ok {
            inc(&self.counters.dropped);
        }
        ok
    }
}

fn udp_receiver(s: &Shared, udp: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    while !s.stopped() {
        match udp.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let datagram = buf.get(..n).unwrap_or_default();
                // RFC 5626 4.4.2 keep-alives and empty datagrams carry no message.
                if datagram
                    .iter()
                    .all(|b| matches!(b, b'\r' | b'\n' | b' ' | 0))
                {
                    continue;
                }
                inc(&s.counters.received);
                s.deliver(WorkerEvent::Sip(SipIn {
                    flow: s.flow(peer, Transport::Udp),
                    via_spi: None,
                    bytes: datagram.to_vec(),
                }));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                tracing::debug!("core link UDP receive: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn acceptor(s: &Shared, listener: &TcpListener) {
    while !s.stopped() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = adopt(s, stream, peer) {
                    tracing::debug!("core link: connection from {peer} refused: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 5),
            Err(e) => {
                tracing::debug!("core link accept: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Registers a connection (accepted or opened) and starts its reader.
fn adopt(s: &Shared, stream: TcpStream, peer: SocketAddr) -> std::io::Result<TcpStream> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let write_half = stream.try_clone()?;
    {
        let mut conns = s.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() >= MAX_CONNECTIONS && !conns.contains_key(&peer) {
            let _ = stream.shutdown(Shutdown::Both);
            return Err(std::io::Error::other("too many core connections"));
        }
        if let Some(old) = conns.insert(peer, write_half.try_clone()?) {
            let _ = old.shutdown(Shutdown::Both);
        }
    }
    inc(&s.counters.connections);
    let s2 = s.clone();
    std::thread::Builder::new()
        .name("akagate-core-rd".into())
        .spawn(move || reader(&s2, stream, peer))?;
    Ok(write_half)
}

/// Frames SIP from one TCP connection until it closes, fails or the link stops.
fn reader(s: &Shared, mut stream: TcpStream, peer: SocketAddr) {
    let flow = s.flow(peer, Transport::Tcp);
    let end = read_sip_stream(
        &mut stream,
        || s.stopped(),
        |bytes| {
            inc(&s.counters.received);
            s.deliver(WorkerEvent::Sip(SipIn {
                flow,
                via_spi: None,
                bytes,
            }));
        },
    );
    if let StreamEnd::BadFraming(e) = end {
        inc(&s.counters.dropped);
        tracing::debug!("core link: bad framing from {peer} ({e}); closing");
    }
    let _ = stream.shutdown(Shutdown::Both);
    let mut conns = s.conns.lock().unwrap_or_else(|p| p.into_inner());
    // Only this connection's entry: a newer one to the same peer may have replaced it.
    let same = conns
        .get(&peer)
        .and_then(|c| c.local_addr().ok())
        .is_some_and(|a| stream.local_addr().is_ok_and(|b| a == b));
    if same {
        conns.remove(&peer);
    }
    drop(conns);
    if !s.stopped() {
        s.deliver(WorkerEvent::TcpClosed(flow));
    }
}

fn writer(s: &Shared, udp: &UdpSocket, out: &Receiver<Outgoing>) {
    loop {
        let job = match out.recv_timeout(POLL) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) if !s.stopped() => continue,
            Err(_) => break,
        };
        match job {
            Outgoing::Send { flow, bytes } => send(s, udp, flow, &bytes),
            Outgoing::Close(flow) => {
                let peer = SocketAddr::new(flow.ue, flow.ue_port);
                let conn = s
                    .conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&peer);
                if let Some(c) = conn {
                    let _ = c.shutdown(Shutdown::Both);
                }
            }
        }
    }
    let conns = std::mem::take(&mut *s.conns.lock().unwrap_or_else(|p| p.into_inner()));
    for c in conns.into_values() {
        let _ = c.shutdown(Shutdown::Both);
    }
}

/// Sends one message: UDP as a datagram, TCP on the open connection to the peer or a new one
/// from our address. A connection that cannot be opened is `ConnectFailed`, a write that
/// fails `SendLost`, so the core fails the transactions over at once.
fn send(s: &Shared, udp: &UdpSocket, flow: Flow, bytes: &[u8]) {
    let peer = SocketAddr::new(flow.ue, flow.ue_port);
    if flow.proto == Transport::Udp {
        tracing::trace!("core link: {} bytes to {peer} over UDP", bytes.len());
        match udp.send_to(bytes, peer) {
            Ok(_) => inc(&s.counters.sent),
            Err(e) => {
                inc(&s.counters.dropped);
                tracing::debug!("core link: UDP to {peer}: {e}");
            }
        }
        return;
    }
    let open = s
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&peer)
        .and_then(|c| c.try_clone().ok());
    let mut conn = match open {
        Some(c) => c,
        None => match connect(s, peer) {
            Ok(c) => c,
            Err(e) => {
                inc(&s.counters.dropped);
                tracing::warn!("core link: cannot connect to {peer}: {e}");
                return s.deliver(WorkerEvent::ConnectFailed(flow));
            }
        },
    };
    match conn.write_all(bytes) {
        Ok(()) => {
            tracing::trace!("core link: {} bytes to {peer} over TCP", bytes.len());
            inc(&s.counters.sent);
        }
        Err(e) => {
            inc(&s.counters.dropped);
            tracing::warn!("core link: write to {peer} failed: {e}");
            let _ = conn.shutdown(Shutdown::Both);
            s.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&peer);
            s.deliver(WorkerEvent::SendLost(flow));
        }
    }
}

/// Opens a TCP connection to `peer` from our core-facing address.
fn connect(s: &Shared, peer: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(peer);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.bind(&SocketAddr::new(s.local.ip(), 0).into())?;
    sock.connect_timeout(&peer.into(), CONNECT_TIMEOUT)?;
    let stream: TcpStream = sock.into();
    adopt(s, stream, peer)
}
