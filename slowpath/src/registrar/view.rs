//! Read-only views of the registrar for operators (`akactl sas`, `akactl registrations`):
//! each registration's binding and the SA sets it holds, borrowed from the core.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use akagate_proto::ipc::{SaSet, Transport};

use super::{Registrar, SaSetExt};

/// Which of a registration's SA sets a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaSetState {
    /// Installed with the 401, waiting for the protected REGISTER (TS 33.203 7.1).
    Pending,
    /// The set the 200 OK went through: the registration's current set.
    Active,
    /// The previous active set, kept until the new one carries traffic or it expires.
    Old,
}

impl SaSetState {
    /// Lower-case name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            SaSetState::Pending => "pending",
            SaSetState::Active => "active",
            SaSetState::Old => "old",
        }
    }
}

/// One SA set of a registration.
#[derive(Debug)]
pub struct SaSetView<'a> {
    /// Pending, active or old.
    pub state: SaSetState,
    /// The set (SPIs, ports, suite). Its suite holds keys: never log or print it.
    pub set: &'a SaSet,
    /// Time left until the set lapses (challenge timeout, binding expiry or old-set expiry).
    pub expires_in: Duration,
    /// A flow-bound set of a registration without sec-agree: no SAs exist, no keys.
    pub flow_bound: bool,
}

/// One registration (one IMPI) as the registrar holds it.
#[derive(Debug)]
pub struct RegistrationView<'a> {
    /// The private identity.
    pub impi: &'a str,
    /// Its public identities.
    pub impus: &'a [String],
    /// The registered Contact, once the protected REGISTER was answered 200.
    pub contact: Option<&'a str>,
    /// The transport the UE registered over.
    pub proto: Option<Transport>,
    /// Time left of the binding, once registered.
    pub expires_in: Option<Duration>,
    /// The UE's address: the active set's once registered (an unauthenticated REGISTER
    /// naming this IMPI from elsewhere never changes it), else the newest challenge's.
    pub ue: Option<IpAddr>,
    /// Its SA sets: pending (oldest first), active, old (those present, in that order).
    pub sets: Vec<SaSetView<'a>>,
}

impl Registrar {
    /// Every registration with its SA sets, ordered by IMPI; times are relative to `now`.
    pub fn view(&self, now: Instant) -> Vec<RegistrationView<'_>> {
        let left = |t: Instant| t.saturating_duration_since(now);
        let mut out: Vec<RegistrationView<'_>> = self
            .registrations()
            .map(|(impi, impus, state)| {
                let mut sets = Vec::with_capacity(3);
                for p in state.pending() {
                    sets.push(SaSetView {
                        state: SaSetState::Pending,
                        set: &p.set,
                        expires_in: left(p.deadline),
                        flow_bound: p.set.is_unprotected(),
                    });
                }
                if let Some(a) = state.active() {
                    sets.push(SaSetView {
                        state: SaSetState::Active,
                        set: &a.set,
                        expires_in: left(a.expires_at),
                        flow_bound: a.set.is_unprotected(),
                    });
                }
                if let Some(o) = state.old() {
                    sets.push(SaSetView {
                        state: SaSetState::Old,
                        set: &o.set,
                        expires_in: left(o.until),
                        flow_bound: o.set.is_unprotected(),
                    });
                }
                RegistrationView {
                    impi,
                    impus,
                    contact: state.active().map(|a| a.contact.as_str()),
                    proto: state.active().map(|a| a.proto),
                    expires_in: state.active().map(|a| left(a.expires_at)),
                    ue: state
                        .active()
                        .map(|a| a.set.ue)
                        .or(state.pending().last().map(|p| p.set.ue)),
                    sets,
                }
            })
            .collect();
        out.sort_by(|a, b| a.impi.cmp(b.impi));
        out
    }
}
