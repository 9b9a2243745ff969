//! The Prometheus endpoint (`[metrics] listen`): a small HTTP/1.1 server on a std
//! `TcpListener` answering `GET /metrics` with every counter of the daemon's
//! [`Stats`](crate::stats::Stats) (see docs/OPERATIONS.md); requests are bounded in size and
//! time, one per connection.

pub mod exposition;
pub mod http;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stats::StatsFn;
pub use exposition::render;

/// Scrapes served at once; more get 503 and are closed.
const MAX_CONNECTIONS: usize = 4;
/// How long the accept loop sleeps between looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// The whole request head must arrive within this (a slow client cannot hold a slot longer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write to a slow client may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the endpoint did not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {addr}: {source}")]
pub struct MetricsError {
    /// The configured address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The running endpoint: an accept thread (`akagate-metrics`) and short-lived connection
/// threads. Dropping it stops accepting and joins the accept thread.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port) and serves snapshots read through `stats`.
    pub fn start(addr: SocketAddr, stats: StatsFn) -> Result<MetricsServer, MetricsError> {
        let err = |source| MetricsError { addr, source };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let bound = listener.local_addr().map_err(err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            stats,
            stop: stop.clone(),
            connections: Arc::new(AtomicUsize::new(0)),
        };
        let thread = std::thread::Builder::new()
            .name("akagate-metrics".into())
            .spawn(move || accept_loop(&listener, &shared))
            .map_err(err)?;
        tracing::info!("metrics on http://{bound}/metrics");
        Ok(MetricsServer {
            addr: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the port chosen when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("metrics: the accept thread panicked");
            }
        }
    }
}

/// What the connections share.
#[derive(Clone)]
struct Shared {
    stats: StatsFn,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

fn accept_loop(listener: &TcpListener, shared: &Shared) {
    while !shared.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => spawn_connection(stream, shared),
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn spawn_connection(mut stream: TcpStream, shared: &Shared) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    if shared.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        let _ = stream.write_all(&http::status_response(503, "Service Unavailable", &[]));
        return;
    }
    let conn = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("akagate-metrics-conn".into())
        .spawn(move || {
            serve(stream, &conn);
            conn.connections.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!("metrics: cannot serve a connection: {e}");
    }
}

/// Reads one request head (at most [`http::MAX_HEAD`] bytes within [`REQUEST_TIMEOUT`]),
/// answers it and closes the connection.
fn serve(mut stream: TcpStream, shared: &Shared) {
    let answer = match read_head(&mut stream) {
        Ok(Some(head)) => answer(&head, shared),
        Ok(None) => return,
        Err(e) => {
            let (code, reason) = e.status();
            http::status_response(code, reason, &[])
        }
    };
    let _ = stream.write_all(&answer).and_then(|()| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Why reading a request head failed in a way worth answering.
enum ReadError {
    Http(http::HttpError),
    Timeout,
}

impl ReadError {
    fn status(&self) -> (u16, &'static str) {
        match self {
            ReadError::Http(e) => e.status(),
            ReadError::Timeout => (408, "Request Timeout"),
        }
    }
}

/// The request head, `None` if the client went away first.
fn read_head(stream: &mut TcpStream) -> Result<Option<Vec<u8>>, ReadError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(n) = http::head_end(&buf).map_err(ReadError::Http)? {
            buf.truncate(n);
            return Ok(Some(buf));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        if stream.set_read_timeout(Some(left)).is_err() {
            return Ok(None);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ReadError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(None),
        }
    }
}

/// The response to a complete request head.
fn answer(head: &[u8], shared: &Shared) -> Vec<u8> {
    let req = match http::parse_request(head) {
        Ok(r) => r,
        Err(e) => {
            let (code, reason) = e.status();
            return http::status_response(code, reason, &[]);
        }
    };
    match http::route(&req) {
        http::Route::Metrics { with_body } => {
            let body = render(&(shared.stats)());
            http::response(
                200,
                "OK",
                http::CONTENT_TYPE,
                &[],
                body.as_bytes(),
                !with_body,
            )
        }
        http::Route::MethodNotAllowed => {
            http::status_response(405, "Method Not Allowed", &[("Allow", "GET, HEAD")])
        }
        http::Route::Status(code, reason) => http::status_response(code, reason, &[]),
    }
}
