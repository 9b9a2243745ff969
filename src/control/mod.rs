//! The read-only control socket `akactl` talks to: a Unix stream socket carrying one JSON
//! request and one JSON answer per line (`stats`, `sas`, `registrations`, `keys`); see
//! docs/OPERATIONS.md.

pub mod protocol;
pub mod query;
mod server;

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Backend, Config};
use crate::stats::StatsFn;
pub use query::{channel, Queries, QueryPort};

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another daemon answers on the socket.
    #[error("{}: another akagate is listening on it", .0.display())]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{}: exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// Creating, binding or configuring the socket failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The control socket path when `[control] socket` is not set: a temp dir for the in-memory
/// demo, else `$XDG_RUNTIME_DIR/akagate.sock`, else `/run/akagate/akagate.sock`.
pub fn default_socket(config: &Config) -> PathBuf {
    if config.port.backend == Backend::Memory {
        return std::env::temp_dir()
            .join("akagate-demo")
            .join("akagate.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("akagate.sock"),
        _ => PathBuf::from("/run/akagate/akagate.sock"),
    }
}

/// The running control socket: an accept thread and its connections. Dropping it stops the
/// threads and removes the socket file (if it is still ours).
pub struct ControlServer {
    path: PathBuf,
    /// Device and inode of the socket we bound, so shutdown never removes another's socket.
    ident: (u64, u64),
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Opens the configured (or default) socket and serves it. A configured path that cannot
    /// be bound is an error; the default path is best effort (a warning, and `Ok(None)`).
    pub fn start(
        config: &Config,
        stats: StatsFn,
        queries: QueryPort,
    ) -> Result<Option<ControlServer>, ControlError> {
        let (path, explicit) = match &config.control.socket {
            Some(p) => (p.clone(), true),
            None => (default_socket(config), false),
        };
        let listener = match bind(&path) {
            Ok(l) => l,
            Err(e) if !explicit => {
                tracing::warn!(
                    "control socket not available ({e}); akactl cannot reach this daemon"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let io = |source| ControlError::Io {
            path: path.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = server::Shared {
            stats,
            queries,
            allow_key_export: config.control.allow_key_export,
            stop: stop.clone(),
            connections: Arc::new(AtomicUsize::new(0)),
        };
        let mut server = ControlServer {
            path: path.clone(),
            ident: (meta.dev(), meta.ino()),
            stop,
            thread: None,
        };
        let thread = std::thread::Builder::new()
            .name("akagate-control".into())
            .spawn(move || server::accept_loop(listener, shared))
            .map_err(io)?;
        server.thread = Some(thread);
        tracing::info!(
            "control socket on {}{}",
            path.display(),
            if config.control.allow_key_export {
                " (ESP key export enabled)"
            } else {
                ""
            }
        );
        Ok(Some(server))
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, ends the connections (each answers "stopping" at its next look) and
    /// removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("control: the accept thread panicked");
            }
            if let Ok(m) = std::fs::symlink_metadata(&self.path) {
                if (m.dev(), m.ino()) == self.ident {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `path` (creating its directory with mode 0700 if missing), replacing a stale socket
/// file but never a live one or a non-socket; the socket gets mode 0600.
fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return Err(ControlError::NotASocket(path.into())),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(ControlError::InUse(path.into())),
            // Nobody listens: a crashed daemon's socket file.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io)?;
            }
            Err(e) => return Err(io(e)),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    Ok(listener)
}
