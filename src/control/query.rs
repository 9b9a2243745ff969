//! Questions the control socket asks the slowpath thread, which alone owns the registrar:
//! a bounded request channel the slowpath loop services between events, answered with owned
//! copies (SA sets without keys, registrations, and keys only for an allowed export).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::{SaSet, Transport, WorkerCommand};
use akagate_slowpath::registrar::{RegistrationView, SaSetState};
use akagate_slowpath::Core;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Queries waiting for the slowpath at most; more are refused as busy.
const QUERY_QUEUE: usize = 16;

/// What the control socket asks the slowpath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every SA set, without keys.
    SaSets,
    /// Every registration.
    Registrations,
    /// The keys of every SA set (only sent when the configuration allows the export).
    Keys,
    /// End the registration of this IMPU (or IMPI): the one query that changes state.
    Deregister(String),
}

/// The slowpath's answer to a [`Query`].
#[derive(Debug)]
pub enum Answer {
    /// For [`Query::SaSets`].
    SaSets(Vec<SaSetInfo>),
    /// For [`Query::Registrations`].
    Registrations(Vec<RegistrationInfo>),
    /// For [`Query::Keys`].
    Keys(Vec<SaKeyRecord>),
    /// For [`Query::Deregister`]: the IMPI whose registration ended, or `None` if nothing
    /// of that identity was registered.
    Deregistered(Option<String>),
}

/// One SA set as `akactl sas` shows it: identities, SPIs, ports, algorithms; never keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaSetInfo {
    /// The registration's private identity.
    pub impi: String,
    /// Pending (challenged), active or old.
    pub state: SaSetState,
    /// The UE's address.
    pub ue: IpAddr,
    /// Our address.
    pub local: IpAddr,
    /// Integrity algorithm (`alg`).
    pub auth: AuthAlg,
    /// Encryption algorithm (`ealg`).
    pub encr: EncrAlg,
    /// Inbound SPI at port_pc.
    pub spi_pc: u32,
    /// Inbound SPI at port_ps.
    pub spi_ps: u32,
    /// Outbound SPI to port_uc.
    pub spi_uc: u32,
    /// Outbound SPI to port_us.
    pub spi_us: u32,
    /// Our protected client port.
    pub port_pc: u16,
    /// Our protected server port.
    pub port_ps: u16,
    /// The UE's protected client port.
    pub port_uc: u16,
    /// The UE's protected server port.
    pub port_us: u16,
    /// Time until the set lapses.
    pub expires_in: Duration,
}

/// One registration as `akactl registrations` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationInfo {
    /// The private identity.
    pub impi: String,
    /// Its public identities (IMPUs).
    pub impus: Vec<String>,
    /// The registered Contact (none while only challenged).
    pub contact: Option<String>,
    /// The UE's address (of its newest SA set).
    pub ue: Option<IpAddr>,
    /// The transport it registered over.
    pub proto: Option<Transport>,
    /// Time left of the binding, once registered.
    pub expires_in: Option<Duration>,
    /// `(state, spi_pc, spi_ps, spi_uc, spi_us)` of each SA set it holds.
    pub sets: Vec<(SaSetState, [u32; 4])>,
}

/// The keys of one ESP SA (one direction of one SA set) for a Wireshark export. Zeroized on
/// drop; `Debug` leaves the keys out.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SaKeyRecord {
    /// Source address of the SA's packets.
    #[zeroize(skip)]
    pub src: IpAddr,
    /// Destination address of the SA's packets.
    #[zeroize(skip)]
    pub dst: IpAddr,
    /// The SPI in the packets.
    pub spi: u32,
    /// Integrity algorithm.
    #[zeroize(skip)]
    pub auth: AuthAlg,
    /// Encryption algorithm.
    #[zeroize(skip)]
    pub encr: EncrAlg,
    /// Integrity key as the SA uses it (TS 33.203 Annex I; empty for aes-gcm).
    pub integ_key: Vec<u8>,
    /// Encryption key as the SA uses it (empty for null).
    pub encr_key: Vec<u8>,
    /// RFC 4106 / RFC 4543 salt (zero for the CBC and null suites).
    pub salt: [u8; 4],
}

impl core::fmt::Debug for SaKeyRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SaKeyRecord")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("spi", &self.spi)
            .finish_non_exhaustive()
    }
}

/// A query with the channel its answer goes back on.
#[derive(Debug)]
pub struct Request {
    query: Query,
    reply: Sender<Answer>,
}

/// Why a query got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Too many queries are waiting for the slowpath.
    #[error("the slowpath is busy with other queries; try again")]
    Busy,
    /// The slowpath thread is gone (shutting down).
    #[error("the daemon is stopping")]
    Stopped,
    /// The slowpath did not answer in time.
    #[error("the slowpath did not answer within {0:?}")]
    Timeout(Duration),
}

/// The control socket's end: sends queries to every slowpath shard and waits for the
/// answers, merged into one.
#[derive(Debug, Clone)]
pub struct QueryPort {
    txs: Vec<Sender<Request>>,
}

/// One slowpath shard's end: answers queued queries from its core's state.
#[derive(Debug)]
pub struct Queries {
    rx: Receiver<Request>,
}

/// The query port and one query end per slowpath shard (at least one).
pub fn channel(shards: usize) -> (QueryPort, Vec<Queries>) {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards.max(1))
        .map(|_| bounded(QUERY_QUEUE))
        .map(|(tx, rx)| (tx, Queries { rx }))
        .unzip();
    (QueryPort { txs }, rxs)
}

impl QueryPort {
    /// Asks every shard and waits up to `timeout` (in all) for their answers, merged: the
    /// SA sets, registrations and keys of all shards (each shard owns disjoint IMPIs), and
    /// the de-registration by the shard that held the identity.
    pub fn ask(&self, query: Query, timeout: Duration) -> Result<Answer, QueryError> {
        let end = std::time::Instant::now() + timeout;
        let mut waiting = Vec::with_capacity(self.txs.len());
        for tx in &self.txs {
            let (reply, answer) = bounded(1);
            match tx.try_send(Request {
                query: query.clone(),
                reply,
            }) {
                Ok(()) => waiting.push(answer),
                Err(TrySendError::Full(_)) => return Err(QueryError::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(QueryError::Stopped),
            }
        }
        let mut merged: Option<Answer> = None;
        for answer in waiting {
            let a = answer.recv_deadline(end).map_err(|e| {
                if e.is_timeout() {
                    QueryError::Timeout(timeout)
                } else {
                    QueryError::Stopped
                }
            })?;
            merged = Some(match merged {
                None => a,
                Some(m) => merge(m, a),
            });
        }
        merged.ok_or(QueryError::Stopped)
    }
}

/// Two shards' answers to the same query as one.
fn merge(a: Answer, b: Answer) -> Answer {
    match (a, b) {
        (Answer::SaSets(mut x), Answer::SaSets(y)) => {
            x.extend(y);
            Answer::SaSets(x)
        }
        (Answer::Registrations(mut x), Answer::Registrations(y)) => {
            x.extend(y);
            Answer::Registrations(x)
        }
        (Answer::Keys(mut x), Answer::Keys(y)) => {
            x.extend(y);
            Answer::Keys(x)
        }
        (Answer::Deregistered(x), Answer::Deregistered(y)) => Answer::Deregistered(x.or(y)),
        (a, _) => a,
    }
}

impl Queries {
    /// Answers every query waiting now (called by the slowpath loop; never blocks) and
    /// returns the worker commands a de-registration made, for the loop to send.
    pub fn serve(&self, core: &mut Core, now: Instant) -> Vec<WorkerCommand> {
        let mut commands = Vec::new();
        while let Ok(req) = self.rx.try_recv() {
            let answer = match req.query {
                Query::Deregister(identity) => {
                    let done = core.deregister_identity(&identity, now);
                    Answer::Deregistered(done.map(|(impi, cmds)| {
                        commands.extend(cmds);
                        impi
                    }))
                }
                q => answer(q, core, now),
            };
            // The asker may have given up; its answer is then dropped (keys zeroized).
            let _ = req.reply.try_send(answer);
        }
        commands
    }
}

/// Builds the answer to `query` from the registrar's state.
pub fn answer(query: Query, core: &Core, now: Instant) -> Answer {
    let regs = core.registrations_view(now);
    match query {
        Query::SaSets => Answer::SaSets(
            regs.iter()
                .flat_map(|r| {
                    r.sets
                        .iter()
                        .map(|s| sa_set_info(r.impi, s.state, s.set, s.expires_in))
                })
                .collect(),
        ),
        Query::Registrations => Answer::Registrations(regs.iter().map(registration_info).collect()),
        Query::Deregister(_) => Answer::Deregistered(None),
        Query::Keys => Answer::Keys(
            regs.iter()
                // A flow-bound set (no sec-agree) has no SAs, so no keys to export.
                .flat_map(|r| r.sets.iter().filter(|s| !s.flow_bound))
                .flat_map(|s| key_records(s.set))
                .collect(),
        ),
    }
}

fn sa_set_info(impi: &str, state: SaSetState, set: &SaSet, expires_in: Duration) -> SaSetInfo {
    SaSetInfo {
        impi: impi.to_string(),
        state,
        ue: set.ue,
        local: set.local,
        auth: set.suite.auth,
        encr: set.suite.encr,
        spi_pc: set.spi_pc,
        spi_ps: set.spi_ps,
        spi_uc: set.spi_uc,
        spi_us: set.spi_us,
        port_pc: set.port_pc,
        port_ps: set.port_ps,
        port_uc: set.port_uc,
        port_us: set.port_us,
        expires_in,
    }
}

fn registration_info(r: &RegistrationView<'_>) -> RegistrationInfo {
    RegistrationInfo {
        impi: r.impi.to_string(),
        impus: r.impus.to_vec(),
        contact: r.contact.map(str::to_string),
        ue: r.ue,
        proto: r.proto,
        expires_in: r.expires_in,
        sets: r
            .sets
            .iter()
            .map(|s| {
                (
                    s.state,
                    [s.set.spi_pc, s.set.spi_ps, s.set.spi_uc, s.set.spi_us],
                )
            })
            .collect(),
    }
}

/// The four SAs of a set as (src, dst, spi) with the set's keys (TS 33.203 7.1: the same
/// algorithms and keys in all four; inbound spi_ps/spi_pc from the UE, outbound spi_uc/spi_us
/// to it).
fn key_records(set: &SaSet) -> [SaKeyRecord; 4] {
    let record = |src: IpAddr, dst: IpAddr, spi: u32| SaKeyRecord {
        src,
        dst,
        spi,
        auth: set.suite.auth,
        encr: set.suite.encr,
        integ_key: set.suite.keys.integ_key.clone(),
        encr_key: set.suite.keys.encr_key.clone(),
        salt: set.suite.keys.salt,
    };
    [
        record(set.ue, set.local, set.spi_ps),
        record(set.ue, set.local, set.spi_pc),
        record(set.local, set.ue, set.spi_uc),
        record(set.local, set.ue, set.spi_us),
    ]
}
