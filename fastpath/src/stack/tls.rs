//! SIP over TLS on the unprotected side (RFC 3261 26.2, RFC 3329 2.2 mechanism `tls`, TS 33.203
//! for TLS-based access): one rustls server session per TCP connection accepted on the TLS
//! port, driven sans-IO. TLS records come in from the connection's socket and go out through
//! its send queue; the SIP framer sees only plaintext. A session is allocated only for
//! connections on the TLS port, boxed, and freed with the connection.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConnection};

pub use rustls::ServerConfig;

/// Plaintext read out of the session per call of its reader: one SIP header section's worth.
const READ_CHUNK: usize = 2048;

/// Record overhead allowed per started 16 KiB of plaintext when bounding a send queue: header
/// (5), explicit nonce (8, TLS 1.2 GCM), content type (1, TLS 1.3) and tag (16), rounded up.
const RECORD_OVERHEAD: usize = 32;
/// Largest TLS plaintext fragment (RFC 8446 5.1).
const MAX_FRAGMENT: usize = 16 * 1024;

/// The TLS port of a stack and the server configuration its sessions start from.
#[derive(Clone, Debug)]
pub struct TlsListener {
    /// The TCP port that speaks TLS (usually 5061).
    pub port: u16,
    /// Certificate, key, versions and client-auth policy shared by every session.
    pub config: Arc<ServerConfig>,
}

/// Why a TLS session ended the connection.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The peer broke the protocol (bad record, failed handshake, bad certificate).
    #[error("TLS: {0}")]
    Protocol(#[from] rustls::Error),
    /// Buffering failed (records larger than rustls accepts before processing).
    #[error("TLS I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One server-side TLS session over a TCP connection.
pub struct TlsSession {
    conn: ServerConnection,
}

impl core::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session waiting for the client's hello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(TlsSession {
            conn: ServerConnection::new(config)?,
        })
    }

    /// True until the handshake is complete.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Takes TLS records received from the peer and hands the plaintext they carry to
    /// `plain`, in order. Handshake answers and alerts wait for [`TlsSession::take_output`].
    pub fn receive(
        &mut self,
        mut records: &[u8],
        plain: &mut impl FnMut(&[u8]),
    ) -> Result<(), TlsError> {
        let mut buf = [0u8; READ_CHUNK];
        while !records.is_empty() {
            if self.conn.read_tls(&mut records)? == 0 {
                break;
            }
            self.conn.process_new_packets()?;
            loop {
                match self.conn.reader().read(&mut buf) {
                    // close_notify: nothing more comes; the TCP FIN follows.
                    Ok(0) => break,
                    Ok(n) => plain(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Encrypts `plain` for the peer and appends the records to `out`. Before the handshake
    /// ends the plaintext waits in the session and follows it.
    pub fn send(&mut self, plain: &[u8], out: &mut VecDeque<u8>) -> Result<(), TlsError> {
        self.conn.writer().write_all(plain)?;
        self.take_output(out)
    }

    /// Ends the session with close_notify (RFC 8446 6.1) before the TCP close.
    pub fn close(&mut self, out: &mut VecDeque<u8>) -> Result<(), TlsError> {
        self.conn.send_close_notify();
        self.take_output(out)
    }

    /// Appends every record the session has to send (handshake, data, alerts) to `out`.
    pub fn take_output(&mut self, out: &mut VecDeque<u8>) -> Result<(), TlsError> {
        while self.conn.wants_write() {
            if self.conn.write_tls(out)? == 0 {
                break;
            }
        }
        Ok(())
    }
}

/// An upper bound on the record bytes `plain` bytes of plaintext become.
pub fn sealed_len(plain: usize) -> usize {
    plain + (plain / MAX_FRAGMENT + 1) * RECORD_OVERHEAD
}

/// Whether and how TLS clients authenticate with a certificate (`[tls] client-auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate asked for.
    None,
    /// A certificate is asked for and, if sent, must chain to one of these CAs (PEM).
    Optional(Vec<u8>),
    /// A certificate chaining to one of these CAs (PEM) is required.
    Required(Vec<u8>),
}

/// Why a TLS server configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate file holds no PEM certificate, or a malformed one.
    #[error("no usable PEM certificate in the certificate chain")]
    NoCertificate,
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("no usable PEM private key: {0}")]
    Key(String),
    /// The client CA file holds no usable PEM certificate.
    #[error("no usable PEM CA certificate in client-ca")]
    NoClientCa,
    /// rustls refused the set: e.g. the key does not match the certificate.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client-ca: {0}")]
    Verifier(String),
}

/// A server configuration (TLS 1.2 and 1.3, ring) from a PEM certificate chain (end entity
/// first), its PEM private key and the client-auth policy. Refuses a key that does not match
/// the certificate.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_auth: &ClientAuth,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsConfigError::NoCertificate)?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsConfigError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(ca) | ClientAuth::Required(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                let c = c.map_err(|_| TlsConfigError::NoClientCa)?;
                roots.add(c)?;
            }
            if roots.is_empty() {
                return Err(TlsConfigError::NoClientCa);
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if matches!(client_auth, ClientAuth::Optional(_)) {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v
                .build()
                .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}
