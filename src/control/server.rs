//! The control socket's threads: one accepts on the Unix socket, one per connection reads
//! request lines and writes answers (stats from the shared counters, the rest from the
//! slowpath through [`QueryPort`]).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::protocol::{self, Command, MAX_REQUEST};
use super::query::{Answer, Query, QueryPort};
use crate::stats::StatsFn;

/// Connections served at once; more are answered with an error and closed.
const MAX_CONNECTIONS: usize = 8;
/// How long the accept loop and idle connections sleep between looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// A connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a query may wait for the slowpath (which looks at queries at least every 100 ms).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write to a slow client may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection shares.
#[derive(Clone)]
pub(super) struct Shared {
    pub stats: StatsFn,
    pub queries: QueryPort,
    pub allow_key_export: bool,
    pub stop: Arc<AtomicBool>,
    pub connections: Arc<AtomicUsize>,
}

/// The accept loop (thread `akagate-control`).
pub(super) fn accept_loop(listener: UnixListener, shared: Shared) {
    while !shared.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = spawn_connection(stream, &shared) {
                    tracing::warn!("control: cannot serve a connection: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("control: accept failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn spawn_connection(mut stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    if shared.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        let _ = write_line(
            &mut stream,
            &protocol::error("too many control connections"),
        );
        return Ok(());
    }
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("akagate-ctl-conn".into())
        .spawn({
            let shared = shared.clone();
            move || {
                serve_connection(stream, &shared);
                shared.connections.fetch_sub(1, Ordering::AcqRel);
            }
        });
    if let Err(e) = spawned {
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        return Err(e);
    }
    Ok(())
}

/// Reads request lines until EOF, an idle timeout, an oversized line or shutdown.
fn serve_connection(stream: UnixStream, shared: &Shared) {
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut last_activity = Instant::now();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            let _ = write_line(&mut writer, &protocol::error("the daemon is stopping"));
            return;
        }
        // Reads at most what is left of the line limit; a partial line survives a timeout.
        let room = (MAX_REQUEST + 1).saturating_sub(line.len()) as u64;
        match (&mut reader).take(room).read_until(b'\n', &mut line) {
            Ok(0) if line.is_empty() => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if last_activity.elapsed() > IDLE_TIMEOUT {
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        last_activity = Instant::now();
        if line.len() > MAX_REQUEST {
            let _ = write_line(
                &mut writer,
                &protocol::error(&format!("request longer than {MAX_REQUEST} bytes")),
            );
            return;
        }
        // Without a newline (and under the limit) the read stopped at EOF: answer the last
        // line, then close.
        let at_eof = line.last() != Some(&b'\n');
        let text = line.trim_ascii();
        if !text.is_empty() {
            let answer = respond(text, shared);
            if writer
                .write_all(&answer)
                .and_then(|()| writer.flush())
                .is_err()
            {
                return;
            }
        }
        line.clear();
        if at_eof {
            return;
        }
    }
}

/// The answer line to one request (with its newline). Zeroized after use: a `keys` answer
/// carries key material.
fn respond(request: &[u8], shared: &Shared) -> Zeroizing<Vec<u8>> {
    let value = match Command::parse(request) {
        Err(e) => protocol::error(&e.to_string()),
        Ok(Command::Stats) => protocol::ok(Command::Stats, protocol::stats(&(shared.stats)())),
        Ok(Command::Keys) if !shared.allow_key_export => protocol::error(
            "key export is disabled: set allow-key-export = true under [control] in the \
             configuration",
        ),
        Ok(Command::Deregister) if Command::argument(request, "impu").is_none() => {
            protocol::error("deregister needs \"impu\": the identity to de-register")
        }
        Ok(cmd) => {
            let query = match cmd {
                Command::Sas => Query::SaSets,
                Command::Registrations => Query::Registrations,
                Command::Deregister => {
                    Query::Deregister(Command::argument(request, "impu").unwrap_or_default())
                }
                _ => Query::Keys,
            };
            match shared.queries.ask(query, QUERY_TIMEOUT) {
                Err(e) => protocol::error(&e.to_string()),
                Ok(Answer::SaSets(s)) => protocol::ok(cmd, protocol::sas(&s)),
                Ok(Answer::Registrations(r)) => protocol::ok(cmd, protocol::registrations(&r)),
                Ok(Answer::Deregistered(Some(impi))) => {
                    tracing::info!("control: registration of {impi} ended by the operator");
                    protocol::ok(cmd, serde_json::json!({ "impi": impi }))
                }
                Ok(Answer::Deregistered(None)) => protocol::error("no such registration"),
                Ok(Answer::Keys(k)) => {
                    // Audit trail without the keys themselves.
                    tracing::warn!("control: ESP keys of {} SA(s) exported", k.len());
                    let body = protocol::keys(&k);
                    return serialize_secret(&protocol::ok(cmd, body));
                }
            }
        }
    };
    serialize_secret(&value)
}

/// Serializes into a buffer sized up front, so no reallocation leaves key bytes behind.
fn serialize_secret(value: &serde_json::Value) -> Zeroizing<Vec<u8>> {
    let len = serde_json::to_vec(value).map_or(0, |v| Zeroizing::new(v).len());
    let mut out = Zeroizing::new(Vec::with_capacity(len + 1));
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.clear();
        out.extend_from_slice(br#"{"ok":false,"error":"cannot encode the answer"}"#);
    }
    out.push(b'\n');
    out
}

fn write_line(w: &mut impl Write, value: &serde_json::Value) -> std::io::Result<()> {
    let mut s = value.to_string();
    s.push('\n');
    w.write_all(s.as_bytes())?;
    w.flush()
}
