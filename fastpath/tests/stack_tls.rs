//! SIP over TLS on the P-CSCF's TLS port (RFC 3261 26.2): the P-CSCF's per-UE stack against a
//! UE that is a plain smoltcp TCP socket with a rustls *client* session on top (sharing
//! nothing with the stack's TLS code but the crate), through the handshake and SIP messages
//! both ways; client-auth policies; and the refusals (plain SIP on the TLS port, a client
//! without the required certificate, a key that does not match the certificate).

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::sync::Arc;

use akagate_fastpath::ipc::{Flow, Transport, WorkerEvent};
use akagate_fastpath::stack::device::QueueDevice;
use akagate_fastpath::stack::tls::{server_config, ClientAuth, TlsConfigError, TlsListener};
use akagate_fastpath::stack::{StackConfig, UeStack};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet, TcpPacket};

const P4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const U4: Ipv4Addr = Ipv4Addr::new(10, 45, 0, 7);
const TLS_PORT: u16 = 5061;
const UE_PORT: u16 = 40_123;

const CA: &[u8] = include_bytes!("fixtures/tls/ca.pem");
const SERVER_CHAIN: &[u8] = include_bytes!("fixtures/tls/server-chain.pem");
const SERVER_KEY: &[u8] = include_bytes!("fixtures/tls/server.key");
const CLIENT_CERT: &[u8] = include_bytes!("fixtures/tls/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("fixtures/tls/client.key");
const OTHER_KEY: &[u8] = include_bytes!("fixtures/tls/other.key");

const REGISTER: &[u8] = include_bytes!("fixtures/stack/register_boghe_openims.sip");
const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 10.45.0.7:40123;branch=z9hG4bK1\r\nCall-ID: tls-1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

/// The UE: a smoltcp TCP socket (no akagate code) and a rustls client session.
struct Ue {
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    tcp: SocketHandle,
    tls: ClientConnection,
    /// Plaintext the UE received.
    plain: Vec<u8>,
    /// rustls refused the server (or its alert).
    error: Option<rustls::Error>,
    /// Records the socket did not take yet.
    out: Vec<u8>,
}

/// The P-CSCF's stack, the UE, the wire and a clock.
struct Link {
    pcscf: UeStack,
    ue: Ue,
    now: Instant,
    events: Vec<WorkerEvent>,
    /// TCP payloads the UE sent.
    wire_u: Vec<u8>,
}

fn client_config(with_cert: bool) -> Arc<ClientConfig> {
    client_config_for(with_cert, rustls::DEFAULT_VERSIONS)
}

fn client_config_for(
    with_cert: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA).unwrap())
        .unwrap();
    let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(if with_cert {
        let chain = vec![CertificateDer::from_pem_slice(CLIENT_CERT).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(CLIENT_KEY).unwrap();
        b.with_client_auth_cert(chain, key).unwrap()
    } else {
        b.with_no_client_auth()
    })
}

impl Link {
    fn new(auth: ClientAuth, client_cert: bool) -> Link {
        let now = Instant::from_millis(1_000);
        let config = server_config(SERVER_CHAIN, SERVER_KEY, &auth).unwrap();
        let mut pcscf =
            UeStack::new(StackConfig::default(), P4.into(), U4.into(), now).expect("stack");
        pcscf.listen(5060, true, true);
        pcscf.listen_tls(TlsListener {
            port: TLS_PORT,
            config,
        });
        let mut dev = QueueDevice::new(1400, 64);
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut dev, now);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(U4), 32)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(P4).unwrap();
        let mut sockets = SocketSet::new(Vec::new());
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
            tcp::SocketBuffer::new(vec![0; 16 * 1024]),
        );
        s.connect(iface.context(), (IpAddress::Ipv4(P4), TLS_PORT), UE_PORT)
            .unwrap();
        let tcp = sockets.add(s);
        let name = ServerName::try_from("pcscf.test").unwrap();
        let tls = ClientConnection::new(client_config(client_cert), name).unwrap();
        Link {
            pcscf,
            ue: Ue {
                iface,
                dev,
                sockets,
                tcp,
                tls,
                plain: Vec::new(),
                error: None,
                out: Vec::new(),
            },
            now,
            events: Vec::new(),
            wire_u: Vec::new(),
        }
    }

    /// Runs both ends for `rounds` steps of 5 ms: the UE's TLS session reads and writes its
    /// socket, packets move both ways.
    fn pump(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let ue = &mut self.ue;
            let s = ue.sockets.get_mut::<tcp::Socket>(ue.tcp);
            while s.can_recv() {
                let tls = &mut ue.tls;
                let _ = s.recv(|d| {
                    let n = tls.read_tls(&mut &d[..]).unwrap_or(0);
                    (n, n)
                });
                if let Err(e) = tls.process_new_packets() {
                    ue.error.get_or_insert(e);
                    break;
                }
            }
            let mut buf = [0u8; 4096];
            while let Ok(n) = ue.tls.reader().read(&mut buf) {
                if n == 0 {
                    break;
                }
                ue.plain.extend_from_slice(&buf[..n]);
            }
            // The session's records wait in it until the connection is up, then in `out`
            // until the socket takes them.
            while s.may_send() && ue.tls.wants_write() {
                ue.tls.write_tls(&mut ue.out).unwrap();
            }
            let n = s.send_slice(&ue.out).unwrap_or(0);
            ue.out.drain(..n);
            ue.iface.poll(self.now, &mut ue.dev, &mut ue.sockets);
            while let Some(pk) = ue.dev.pop_tx() {
                self.wire_u.extend(tcp_payload(&pk));
                self.pcscf.push_inbound(pk, None).unwrap();
            }
            self.pcscf.poll(self.now, &mut self.events);
            while let Some(pk) = self.pcscf.pop_outbound() {
                self.ue.dev.push_rx(pk).unwrap();
            }
            self.now += Duration::from_millis(5);
        }
    }

    fn send_plain(&mut self, bytes: &[u8]) {
        self.ue.tls.writer().write_all(bytes).unwrap();
    }

    fn sips(&self) -> Vec<(Flow, Vec<u8>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                WorkerEvent::Sip(s) => Some((s.flow, s.bytes.clone())),
                _ => None,
            })
            .collect()
    }

    fn ue_state(&self) -> tcp::State {
        self.ue.sockets.get::<tcp::Socket>(self.ue.tcp).state()
    }
}

fn tcp_payload(pk: &[u8]) -> Vec<u8> {
    let Ok(ip) = Ipv4Packet::new_checked(pk) else {
        return Vec::new();
    };
    if ip.next_header() != IpProtocol::Tcp {
        return Vec::new();
    }
    TcpPacket::new_checked(ip.payload())
        .map(|t| t.payload().to_vec())
        .unwrap_or_default()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn tls_flow() -> Flow {
    Flow {
        ue: U4.into(),
        ue_port: UE_PORT,
        local: P4.into(),
        local_port: TLS_PORT,
        proto: Transport::Tcp,
    }
}

#[test]
fn register_and_answer_over_tls() {
    let mut l = Link::new(ClientAuth::None, false);
    l.send_plain(REGISTER);
    l.pump(40);
    assert!(!l.ue.tls.is_handshaking(), "handshake did not complete");
    // The slowpath sees a TCP flow on the TLS port carrying the plaintext message.
    assert_eq!(l.sips(), vec![(tls_flow(), REGISTER.to_vec())]);
    // Nothing of it crossed the wire in clear.
    assert!(!contains(&l.wire_u, b"REGISTER sip:"));
    // The answer goes back through the same session.
    l.pcscf.send(tls_flow(), OK, false).unwrap();
    l.pump(20);
    assert_eq!(l.ue.plain, OK);
    assert!(l.ue.error.is_none());
    // Two messages in one write, split across records, still frame one by one.
    l.send_plain(&[REGISTER, REGISTER].concat());
    l.pump(20);
    assert_eq!(l.sips().len(), 3);
    // A CRLFCRLF keep-alive gets its CRLF pong inside the session (RFC 5626 4.4.1).
    l.send_plain(b"\r\n\r\n");
    l.pump(20);
    assert_eq!(&l.ue.plain[OK.len()..], b"\r\n");
    assert_eq!(l.pcscf.counters().tls_errors, 0);
}

/// A message larger than a TLS record (16 KiB) and than the socket buffers, both ways: it
/// crosses as several records and is framed whole.
#[test]
fn messages_larger_than_a_record() {
    let body = vec![b'v'; 20_000];
    let mut big = format!(
        "MESSAGE sip:bob@ims.example SIP/2.0\r\nVia: SIP/2.0/TLS 10.45.0.7:40123;branch=z9hG4bK2\r\nCall-ID: tls-2\r\nCSeq: 1 MESSAGE\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    big.extend(&body);
    let mut l = Link::new(ClientAuth::None, false);
    l.send_plain(&big);
    l.pump(200);
    assert_eq!(l.sips(), vec![(tls_flow(), big.clone())]);
    l.pcscf.send(tls_flow(), &big, false).unwrap();
    l.pump(200);
    assert_eq!(l.ue.plain, big);
}

/// Handsets that stop at TLS 1.2 (RFC 5246) are served too.
#[test]
fn tls_1_2_client() {
    let mut l = Link::new(ClientAuth::None, false);
    l.ue.tls = ClientConnection::new(
        client_config_for(false, &[&rustls::version::TLS12]),
        ServerName::try_from("pcscf.test").unwrap(),
    )
    .unwrap();
    l.send_plain(REGISTER);
    l.pump(40);
    assert_eq!(
        l.ue.tls.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(l.sips(), vec![(tls_flow(), REGISTER.to_vec())]);
    l.pcscf.send(tls_flow(), OK, false).unwrap();
    l.pump(20);
    assert_eq!(l.ue.plain, OK);
}

#[test]
fn close_sends_close_notify_before_fin() {
    let mut l = Link::new(ClientAuth::None, false);
    l.send_plain(REGISTER);
    l.pump(40);
    l.pcscf.close(tls_flow()).unwrap();
    l.pump(20);
    // rustls reports the peer's close_notify as a clean end of the plaintext stream.
    let mut buf = [0u8; 16];
    assert_eq!(l.ue.tls.reader().read(&mut buf).unwrap(), 0);
    assert!(l.ue.error.is_none());
    assert!(matches!(
        l.ue_state(),
        tcp::State::CloseWait | tcp::State::Closed | tcp::State::TimeWait
    ));
}

#[test]
fn required_client_certificate() {
    // With the certificate: accepted.
    let mut l = Link::new(ClientAuth::Required(CA.to_vec()), true);
    l.send_plain(REGISTER);
    l.pump(40);
    assert_eq!(l.sips().len(), 1);
    // Without: the handshake fails, the connection is reset, nothing reaches the slowpath.
    let mut l = Link::new(ClientAuth::Required(CA.to_vec()), false);
    l.send_plain(REGISTER);
    l.pump(40);
    assert!(l.sips().is_empty());
    assert_eq!(l.pcscf.counters().tls_errors, 1);
    assert_eq!(l.pcscf.tcp_connections(), 0);
    assert_eq!(l.ue_state(), tcp::State::Closed);
}

#[test]
fn optional_client_certificate() {
    for with_cert in [false, true] {
        let mut l = Link::new(ClientAuth::Optional(CA.to_vec()), with_cert);
        l.send_plain(REGISTER);
        l.pump(40);
        assert_eq!(l.sips().len(), 1, "client cert {with_cert}");
    }
}

#[test]
fn plain_sip_on_the_tls_port_is_refused() {
    let mut l = Link::new(ClientAuth::None, false);
    // The UE writes SIP in clear to the TLS port instead of a ClientHello.
    l.pump(5);
    let s = l.ue.sockets.get_mut::<tcp::Socket>(l.ue.tcp);
    s.send_slice(REGISTER).unwrap();
    l.ue.tls = ClientConnection::new(
        client_config(false),
        ServerName::try_from("pcscf.test").unwrap(),
    )
    .unwrap();
    // Keep the client session quiet: drop its ClientHello.
    let mut sink = Vec::new();
    l.ue.tls.write_tls(&mut sink).unwrap();
    l.pump(40);
    assert!(l.sips().is_empty());
    assert_eq!(l.pcscf.counters().tls_errors, 1);
    assert_eq!(l.pcscf.tcp_connections(), 0);
}

#[test]
fn no_connection_is_opened_from_the_tls_port() {
    let mut l = Link::new(ClientAuth::None, false);
    let other = Flow {
        ue_port: 5060,
        ..tls_flow()
    };
    assert_eq!(
        l.pcscf.send(other, OK, true),
        Err(akagate_fastpath::stack::StackError::NoConnection)
    );
    assert_eq!(l.pcscf.tcp_connections(), 0);
}

#[test]
fn server_config_refusals() {
    let e = server_config(SERVER_CHAIN, OTHER_KEY, &ClientAuth::None).unwrap_err();
    assert!(
        matches!(
            e,
            TlsConfigError::Rustls(rustls::Error::InconsistentKeys(
                rustls::InconsistentKeys::KeyMismatch
            ))
        ),
        "{e}"
    );
    let e = server_config(b"", SERVER_KEY, &ClientAuth::None).unwrap_err();
    assert!(matches!(e, TlsConfigError::NoCertificate), "{e}");
    let e = server_config(SERVER_CHAIN, b"junk", &ClientAuth::None).unwrap_err();
    assert!(matches!(e, TlsConfigError::Key(_)), "{e}");
    let e = server_config(SERVER_CHAIN, SERVER_KEY, &ClientAuth::Required(Vec::new())).unwrap_err();
    assert!(matches!(e, TlsConfigError::NoClientCa), "{e}");
    assert!(server_config(SERVER_CHAIN, SERVER_KEY, &ClientAuth::Optional(CA.to_vec())).is_ok());
}
