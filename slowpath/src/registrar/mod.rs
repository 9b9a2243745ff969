//! The registrar: IMS-AKA registration over sec-agree (TS 24.229 5.2.2, TS 33.203 6-7), with
//! one pending, one active and at most one old SA set per UE, expiry and de-registration.

mod register;
mod sa;
mod view;

pub(crate) use sa::SaSetExt;
pub use view::{RegistrationView, SaSetState, SaSetView};

use std::time::Instant;

use akagate_proto::ipc::{Proto, SaSet};

use crate::aka::Res;
use crate::secagree::SecMechanism;

/// A challenge sent and its SA set installed, waiting for the protected REGISTER.
pub(crate) struct Pending {
    /// The SA set installed with the 401.
    pub set: SaSet,
    /// The Security-Server we sent (what Security-Verify must echo).
    pub security_server: SecMechanism,
    /// The nonce of the challenge (base64(RAND || AUTN)).
    pub nonce: String,
    /// RAND, for resynchronisation.
    pub rand: [u8; 16],
    /// XRES (the digest password).
    pub xres: Res,
    /// When the challenge lapses.
    pub deadline: Instant,
}

/// A completed registration's SA set and binding.
pub(crate) struct Active {
    /// The SA set the 200 OK went through.
    pub set: SaSet,
    /// The Security-Server agreed for this set.
    pub security_server: SecMechanism,
    /// The registered Contact URI.
    pub contact: String,
    /// The transport the UE registered over: P-CSCF-originated requests use it too
    /// (UDP unless the message exceeds 1300 bytes, RFC 3261 18.1.1).
    pub proto: Proto,
    /// When the binding (and set) expire.
    pub expires_at: Instant,
    /// Whether the UE has sent anything over this set after its 200 OK.
    pub used: bool,
}

/// Registration state of one IMPI: `pending` (challenged), `active` (registered), `old` (the
/// previous active set, kept until the new one carries traffic or it expires).
pub(crate) struct Registration {
    /// The private identity.
    pub impi: String,
    /// Its public identities (from the HSS).
    pub impus: Vec<String>,
    /// Outstanding challenge.
    pub pending: Option<Pending>,
    /// Current binding.
    pub active: Option<Active>,
    /// Previous binding's SA set and its expiry.
    pub old: Option<(SaSet, Instant)>,
    /// The deadline this registration has in the core's timer set.
    pub armed: Option<Instant>,
}

impl Registration {
    /// The earliest deadline of this registration.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.pending.as_ref().map(|p| p.deadline),
            self.active.as_ref().map(|a| a.expires_at),
            self.old.as_ref().map(|o| o.1),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Which of this registration's sets has inbound SPI `spi`.
    pub fn kind_of(&self, spi: u32) -> Option<SetKind> {
        if self.pending.as_ref().is_some_and(|p| p.set.has_spi(spi)) {
            Some(SetKind::Pending)
        } else if self.active.as_ref().is_some_and(|a| a.set.has_spi(spi)) {
            Some(SetKind::Active)
        } else if self.old.as_ref().is_some_and(|o| o.0.has_spi(spi)) {
            Some(SetKind::Old)
        } else {
            None
        }
    }
}

/// Which SA set of a registration a message came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetKind {
    /// The set of the outstanding challenge.
    Pending,
    /// The registered set.
    Active,
    /// The previous registered set.
    Old,
}
