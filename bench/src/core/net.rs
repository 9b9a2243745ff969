//! `akacore`'s sockets: UDP and TCP on one address with std threads. One thread receives
//! UDP, one accepts TCP connections, one reader per connection frames SIP with the fast
//! path's scanner (`akagate_proto::stream::read_sip_stream`, so many messages per read and messages split
//! across reads both work); every message goes to the single core thread, which runs
//! [`Scscf`] and writes the answers itself (TCP connections we open to a P-CSCF get a
//! reader too).

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akagate_fastpath::ipc::Transport;
use akagate_proto::stream::{read_sip_stream, StreamEnd};
use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};

use super::{Counters, Dest, Out, Peer, Scscf};

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How often the core's retransmission timers are looked at.
const TIMER_TICK: Duration = Duration::from_millis(20);
/// How long opening a TCP connection to a P-CSCF may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Receive buffer asked for the UDP socket (bursts of thousands of REGISTERs).
const UDP_RCVBUF: usize = 8 << 20;

/// What the receiving threads hand the core thread.
enum Event {
    Msg { bytes: Vec<u8>, peer: Peer },
}

/// Write halves of the open TCP connections, by connection id.
type Conns = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// Counters of the socket layer.
#[derive(Debug, Default)]
struct NetCounters {
    send_failures: AtomicU64,
    framing_errors: AtomicU64,
    connections: AtomicU64,
}

/// What every thread shares.
#[derive(Clone)]
struct Shared {
    events: Sender<Event>,
    conns: Conns,
    next_conn: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    counters: Arc<NetCounters>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Registers a connection and starts its reader; returns its id.
    fn adopt(&self, stream: TcpStream, peer: SocketAddr) -> std::io::Result<u64> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, stream.try_clone()?);
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let s = self.clone();
        std::thread::Builder::new()
            .name("akacore-rd".into())
            .spawn(move || reader(&s, stream, peer, id))?;
        Ok(id)
    }
}

/// What a run ends with.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The core's counters.
    pub counters: Counters,
    /// Sends that failed (connection lost or not opened, UDP error).
    pub send_failures: u64,
    /// TCP connections closed for bad framing.
    pub framing_errors: u64,
    /// TCP connections accepted or opened.
    pub connections: u64,
}

impl RunSummary {
    /// `name=value` pairs on one line.
    pub fn line(&self) -> String {
        format!(
            "{} send_failures={} framing_errors={} connections={}",
            self.counters.line(),
            self.send_failures,
            self.framing_errors,
            self.connections
        )
    }
}

/// Binds UDP and TCP on `listen`.
pub fn bind(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let domain = socket2::Domain::for_address(listen);
    let udp = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = udp.set_recv_buffer_size(UDP_RCVBUF);
    udp.bind(&listen.into())?;
    let tcp = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    tcp.set_reuse_address(true)?;
    tcp.bind(&listen.into())?;
    tcp.listen(1024)?;
    Ok((udp.into(), tcp.into()))
}

/// Runs `core` on the bound sockets until `stop` is set; `tick` is called every
/// `interval` (and never without one) with the counters so far.
pub fn run(
    mut core: Scscf,
    udp: UdpSocket,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    interval: Option<Duration>,
    mut tick: impl FnMut(&Scscf, Duration),
) -> std::io::Result<RunSummary> {
    let (tx, rx) = unbounded();
    let shared = Shared {
        events: tx,
        conns: Arc::new(Mutex::new(HashMap::new())),
        next_conn: Arc::new(AtomicU64::new(1)),
        stop,
        counters: Arc::new(NetCounters::default()),
    };
    udp.set_read_timeout(Some(POLL))?;
    listener.set_nonblocking(true)?;
    let mut threads = Vec::new();
    let (s, u) = (shared.clone(), udp.try_clone()?);
    threads.push(
        std::thread::Builder::new()
            .name("akacore-udp".into())
            .spawn(move || udp_receiver(&s, &u))?,
    );
    let s = shared.clone();
    threads.push(
        std::thread::Builder::new()
            .name("akacore-acc".into())
            .spawn(move || acceptor(&s, &listener))?,
    );
    // Connections we opened, by the address they go to.
    let mut opened: HashMap<SocketAddr, u64> = HashMap::new();
    let start = Instant::now();
    let mut next_tick = interval.map(|i| start + i);
    let mut last_poll = start;
    while !shared.stopped() {
        let wait = next_tick.map_or(POLL, |t| {
            t.saturating_duration_since(Instant::now()).min(POLL)
        });
        match rx.recv_timeout(wait) {
            Ok(Event::Msg { bytes, peer }) => {
                let outs = core.handle(&bytes, peer, Instant::now());
                for o in outs {
                    send(&shared, &udp, &mut opened, o);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now.duration_since(last_poll) >= TIMER_TICK {
            last_poll = now;
            for o in core.poll(now) {
                send(&shared, &udp, &mut opened, o);
            }
        }
        if let (Some(t), Some(i)) = (next_tick, interval) {
            if Instant::now() >= t {
                tick(&core, start.elapsed());
                next_tick = Some(t + i);
            }
        }
    }
    shared.stop.store(true, Ordering::Release);
    for c in
        std::mem::take(&mut *shared.conns.lock().unwrap_or_else(|p| p.into_inner())).into_values()
    {
        let _ = c.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
    let n = &shared.counters;
    Ok(RunSummary {
        counters: core.counters.clone(),
        send_failures: n.send_failures.load(Ordering::Relaxed),
        framing_errors: n.framing_errors.load(Ordering::Relaxed),
        connections: n.connections.load(Ordering::Relaxed),
    })
}

/// Sends one message (see [`Dest`]); failures are counted, never fatal.
fn send(s: &Shared, udp: &UdpSocket, opened: &mut HashMap<SocketAddr, u64>, o: Out) {
    let failed = || {
        s.counters.send_failures.fetch_add(1, Ordering::Relaxed);
    };
    let (addr, conn) = match o.dest {
        Dest::Reply(p) if p.transport == Transport::Udp => {
            if udp.send_to(&o.bytes, p.addr).is_err() {
                failed();
            }
            return;
        }
        Dest::To(addr, Transport::Udp) => {
            if udp.send_to(&o.bytes, addr).is_err() {
                failed();
            }
            return;
        }
        // RFC 3261 18.2.2: a response over TCP goes on the request's connection.
        Dest::Reply(p) => (p.addr, p.conn),
        Dest::To(addr, _) => (addr, opened.get(&addr).copied()),
    };
    let stream = conn.and_then(|id| {
        let conns = s.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns
            .get(&id)
            .and_then(|c| c.try_clone().ok())
            .map(|c| (id, c))
    });
    let (id, mut stream) = match stream {
        Some(x) => x,
        None => match connect(s, addr) {
            Ok(x) => {
                opened.insert(addr, x.0);
                x
            }
            Err(_) => return failed(),
        },
    };
    if stream.write_all(&o.bytes).is_err() {
        failed();
        let _ = stream.shutdown(Shutdown::Both);
        s.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        opened.retain(|_, v| *v != id);
    }
}

/// Opens a TCP connection to `addr` (a P-CSCF's core side).
fn connect(s: &Shared, addr: SocketAddr) -> std::io::Result<(u64, TcpStream)> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    let write = stream.try_clone()?;
    let id = s.adopt(stream, addr)?;
    Ok((id, write))
}

fn udp_receiver(s: &Shared, udp: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    while !s.stopped() {
        match udp.recv_from(&mut buf) {
            Ok((n, addr)) => {
                let d = buf.get(..n).unwrap_or_default();
                // RFC 5626 4.4.2 keep-alives carry no message.
                if d.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ' | 0)) {
                    continue;
                }
                let peer = Peer {
                    addr,
                    transport: Transport::Udp,
                    conn: None,
                };
                let _ = s.events.send(Event::Msg {
                    bytes: d.to_vec(),
                    peer,
                });
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn acceptor(s: &Shared, listener: &TcpListener) {
    while !s.stopped() {
        match listener.accept() {
            Ok((stream, peer)) => {
                let _ = stream
                    .set_nonblocking(false)
                    .and_then(|()| s.adopt(stream, peer));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 10),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Frames SIP from one connection (RFC 3261 18.3: Content-Length delimits messages) until it
/// closes, fails or the run stops.
fn reader(s: &Shared, mut stream: TcpStream, addr: SocketAddr, id: u64) {
    let peer = Peer {
        addr,
        transport: Transport::Tcp,
        conn: Some(id),
    };
    let end = read_sip_stream(
        &mut stream,
        || s.stopped(),
        |bytes| {
            let _ = s.events.send(Event::Msg { bytes, peer });
        },
    );
    if let StreamEnd::BadFraming(_) = end {
        s.counters.framing_errors.fetch_add(1, Ordering::Relaxed);
    }
    let _ = stream.shutdown(Shutdown::Both);
    s.conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}
