//! The sans-IO slowpath core: worker events and time in, worker commands out. It owns the
//! registrar (sec-agree, IMS-AKA, SA sets), the embedded HSS and the proxy's routing state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_fastpath::ipc::{Flow, SipIn, WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::SpiAllocator;
use rand::RngCore;

use crate::hss::Hss;
use crate::proxy::message::SipMsg;
use crate::proxy::{Dialog, Transaction};
use crate::registrar::Registration;
use crate::secagree::ImsAkaProfile;

/// What the core asks the workers to do; executed in order.
pub type Action = WorkerCommand;

/// Configuration of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// sec-agree profile (ports, algorithms, whether sec-agree is required).
    pub profile: ImsAkaProfile,
    /// Our host name or address as it appears in `Path` and `Service-Route`.
    pub pcscf_host: String,
    /// Registration lifetime granted when the UE asks for none (seconds).
    pub default_expires: u32,
    /// Largest registration lifetime granted (seconds).
    pub max_expires: u32,
    /// How long a challenge and its SA set wait for the protected REGISTER
    /// (TS 24.229 reg-await-auth).
    pub challenge_timeout: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            profile: ImsAkaProfile::default(),
            pcscf_host: "pcscf.ims.mnc001.mcc001.3gppnetwork.org".into(),
            default_expires: 3600,
            max_expires: 600_000,
            challenge_timeout: Duration::from_secs(240),
        }
    }
}

/// The slowpath state machine (`handle`, `handle_timeout`, `poll_timeout`), no I/O except the
/// HSS's SQN journal.
pub struct Core {
    pub(crate) cfg: CoreConfig,
    pub(crate) hss: Hss,
    pub(crate) spis: Arc<dyn SpiAllocator>,
    pub(crate) rng: Box<dyn RngCore + Send>,
    /// Registrations by lower-cased IMPI.
    pub(crate) regs: HashMap<String, Registration>,
    /// Inbound SPI (spi_pc or spi_ps of any live set) -> IMPI key.
    pub(crate) by_spi: HashMap<u32, String>,
    /// Our Via branch -> where the response goes.
    pub(crate) transactions: HashMap<String, Transaction>,
    /// Call-ID -> the two registered parties.
    pub(crate) dialogs: HashMap<String, Dialog>,
}

impl core::fmt::Debug for Core {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Core")
            .field("registrations", &self.regs.len())
            .field("dialogs", &self.dialogs.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core over an HSS, the SA table's SPI allocator and a random source (RAND, tags, branches).
    pub fn new(
        cfg: CoreConfig,
        hss: Hss,
        spis: Arc<dyn SpiAllocator>,
        rng: Box<dyn RngCore + Send>,
    ) -> Self {
        Core {
            cfg,
            hss,
            spis,
            rng,
            regs: HashMap::new(),
            by_spi: HashMap::new(),
            transactions: HashMap::new(),
            dialogs: HashMap::new(),
        }
    }

    /// The HSS (e.g. for `akactl` queries).
    pub fn hss(&self) -> &Hss {
        &self.hss
    }

    /// Number of registrations with an active (200 OK'd) SA set.
    pub fn registered(&self) -> usize {
        self.regs.values().filter(|r| r.active.is_some()).count()
    }

    /// Handles one event from a worker.
    pub fn handle(&mut self, event: WorkerEvent, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            WorkerEvent::Sip(sip) => self.on_sip(&sip, now, &mut out),
            // Connections come and go; registrations are bound to SAs, not to connections.
            WorkerEvent::TcpClosed(_) | WorkerEvent::ConnectFailed(_) => {}
        }
        out
    }

    fn on_sip(&mut self, sip: &SipIn, now: Instant, out: &mut Vec<Action>) {
        let Ok(msg) = SipMsg::parse(&sip.bytes) else {
            log::debug!("dropping unparsable SIP message from {}", sip.flow.ue);
            return;
        };
        if msg.is_request() {
            if msg.method() == Some("REGISTER") {
                self.on_register(&msg, sip, now, out);
            } else {
                self.on_request(msg, sip, now, out);
            }
        } else {
            self.on_response(msg, sip, now, out);
        }
    }

    /// Handles expired registrations and challenges.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        out
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.regs
            .values()
            .filter_map(Registration::next_deadline)
            .min()
    }

    /// Sends `msg` on `flow`.
    pub(crate) fn send(out: &mut Vec<Action>, flow: Flow, msg: &SipMsg, connect_if_absent: bool) {
        out.push(WorkerCommand::Send {
            flow,
            bytes: msg.to_bytes(),
            connect_if_absent,
        });
    }

    /// A random lower-case hex token of `n` bytes (tags, branches).
    pub(crate) fn token(&mut self, n: usize) -> String {
        let mut b = vec![0u8; n];
        self.rng.fill_bytes(&mut b);
        hex::encode(b)
    }
}
