//! One registration's state machine (TS 33.203 7.1-7.4): `Challenged` (a pending SA set
//! installed with the 401), `Registered` (the active set, maybe the previous one kept as
//! *old*), `Refreshing` (registered and challenged again: a pending set besides the active
//! one). A registration with no set left is gone (removed from the registrar).

use std::time::Instant;

use akagate_proto::ipc::{Flow, SaSet, Transport};

use super::SaSetExt;
use crate::aka::Res;
use crate::secagree::SecMechanism;

/// A challenge sent and its SA set installed, waiting for the protected REGISTER.
pub(crate) struct Pending {
    /// The SA set installed with the 401.
    pub set: SaSet,
    /// The Security-Server we sent (what Security-Verify must echo); `None` for a
    /// flow-bound challenge (no sec-agree, no Security-Verify expected).
    pub security_server: Option<SecMechanism>,
    /// The nonce of the challenge (base64(RAND || AUTN)).
    pub nonce: String,
    /// RAND, for resynchronisation.
    pub rand: [u8; 16],
    /// XRES (the digest password).
    pub xres: Res,
    /// When the challenge lapses.
    pub deadline: Instant,
    /// The flow a flow-bound challenge was sent on (the only flow its answer and, once
    /// registered, the UE's requests are accepted from); `None` with sec-agree.
    pub bound_flow: Option<Flow>,
}

/// A completed registration's SA set and binding.
pub(crate) struct Active {
    /// The SA set the 200 OK went through.
    pub set: SaSet,
    /// The Security-Server agreed for this set (`None`: flow-bound, no sec-agree).
    pub security_server: Option<SecMechanism>,
    /// The registered Contact URI.
    pub contact: String,
    /// The transport the UE registered over: P-CSCF-originated requests use it too
    /// (UDP unless the message exceeds 1300 bytes, RFC 3261 18.1.1).
    pub proto: Transport,
    /// When the binding (and set) expire.
    pub expires_at: Instant,
}

/// The previous active set, kept until the new one carries traffic or it expires.
pub(crate) struct OldSet {
    /// The set.
    pub set: SaSet,
    /// When it lapses (the previous binding's expiry).
    pub until: Instant,
}

/// Where a registration stands. The challenge is boxed: most registrations are
/// `Registered`, and need not carry room for one.
pub(crate) enum RegState {
    /// Challenged, never registered: a pending set waits for the protected REGISTER.
    Challenged {
        /// The outstanding challenge.
        pending: Box<Pending>,
    },
    /// Registered over `active`; `old` is the previous set, until retired.
    Registered {
        /// The current binding.
        active: Active,
        /// The previous binding's set.
        old: Option<OldSet>,
    },
    /// Registered and challenged again (TS 33.203 7.4): a new pending set besides the
    /// active one.
    Refreshing {
        /// The current binding.
        active: Active,
        /// The outstanding challenge.
        pending: Box<Pending>,
        /// The previous binding's set.
        old: Option<OldSet>,
    },
}

/// What [`RegState::complete`] did.
pub(crate) enum Completed {
    /// Nothing was pending: the state is unchanged.
    NothingPending,
    /// The pending set is bound; the old set this supersedes, if one was still kept.
    Bound(Option<OldSet>),
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

impl RegState {
    /// The outstanding challenge, if any.
    pub fn pending(&self) -> Option<&Pending> {
        match self {
            RegState::Challenged { pending } | RegState::Refreshing { pending, .. } => {
                Some(pending)
            }
            RegState::Registered { .. } => None,
        }
    }

    /// The current binding, if registered.
    pub fn active(&self) -> Option<&Active> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { active, .. } | RegState::Refreshing { active, .. } => {
                Some(active)
            }
        }
    }

    /// The current binding, mutably.
    pub fn active_mut(&mut self) -> Option<&mut Active> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { active, .. } | RegState::Refreshing { active, .. } => {
                Some(active)
            }
        }
    }

    /// The previous set, if kept.
    pub fn old(&self) -> Option<&OldSet> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { old, .. } | RegState::Refreshing { old, .. } => old.as_ref(),
        }
    }

    /// Takes the previous set out (it is being retired).
    pub fn take_old(&mut self) -> Option<OldSet> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { old, .. } | RegState::Refreshing { old, .. } => old.take(),
        }
    }

    /// Which of the sets has inbound SPI `spi`.
    pub fn kind_of(&self, spi: u32) -> Option<SetKind> {
        if self.pending().is_some_and(|p| p.set.has_spi(spi)) {
            Some(SetKind::Pending)
        } else if self.active().is_some_and(|a| a.set.has_spi(spi)) {
            Some(SetKind::Active)
        } else if self.old().is_some_and(|o| o.set.has_spi(spi)) {
            Some(SetKind::Old)
        } else {
            None
        }
    }

    /// The earliest deadline: challenge, binding or old set.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.pending().map(|p| p.deadline),
            self.active().map(|a| a.expires_at),
            self.old().map(|o| o.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A new challenge: the state with `pending` as its challenge, and the challenge it
    /// replaces (never two pending sets).
    pub fn challenge(self, pending: Box<Pending>) -> (RegState, Option<Box<Pending>>) {
        match self {
            RegState::Challenged { pending: previous } => {
                (RegState::Challenged { pending }, Some(previous))
            }
            RegState::Registered { active, old } => (
                RegState::Refreshing {
                    active,
                    pending,
                    old,
                },
                None,
            ),
            RegState::Refreshing {
                active,
                pending: previous,
                old,
            } => (
                RegState::Refreshing {
                    active,
                    pending,
                    old,
                },
                Some(previous),
            ),
        }
    }

    /// The challenge ends without success (wrong answer, lapsed): the state without it
    /// (`None`: nothing left, the registration is gone) and the challenge.
    pub fn drop_pending(self) -> (Option<RegState>, Option<Box<Pending>>) {
        match self {
            RegState::Challenged { pending } => (None, Some(pending)),
            s @ RegState::Registered { .. } => (Some(s), None),
            RegState::Refreshing {
                active,
                pending,
                old,
            } => (Some(RegState::Registered { active, old }), Some(pending)),
        }
    }

    /// The protected REGISTER succeeded: the pending set becomes the active one (`bind`
    /// makes the binding from the challenge), the previous active set becomes old. Returns
    /// the new state and what happened.
    pub fn complete(self, bind: impl FnOnce(Pending) -> Active) -> (RegState, Completed) {
        match self {
            RegState::Challenged { pending } => (
                RegState::Registered {
                    active: bind(*pending),
                    old: None,
                },
                Completed::Bound(None),
            ),
            RegState::Refreshing {
                active: previous,
                pending,
                old: superseded,
            } => {
                // The previous set lives until the new one carries traffic or it expires.
                let old = OldSet {
                    set: previous.set,
                    until: previous.expires_at,
                };
                (
                    RegState::Registered {
                        active: bind(*pending),
                        old: Some(old),
                    },
                    Completed::Bound(superseded),
                )
            }
            s @ RegState::Registered { .. } => (s, Completed::NothingPending),
        }
    }

    /// Every set, in the order they are removed when the registration ends: active, old,
    /// pending.
    pub fn into_sets(self) -> Vec<SaSet> {
        match self {
            RegState::Challenged { pending } => vec![pending.set],
            RegState::Registered { active, old } => std::iter::once(active.set)
                .chain(old.map(|o| o.set))
                .collect(),
            RegState::Refreshing {
                active,
                pending,
                old,
            } => std::iter::once(active.set)
                .chain(old.map(|o| o.set))
                .chain(std::iter::once(pending.set))
                .collect(),
        }
    }
}
