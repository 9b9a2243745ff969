//! The registrar: IMS-AKA registration state over sec-agree (TS 24.229 5.2.2, TS 33.203 6-7).
//! [`Registrar`] owns every registration (one per IMPI), each a small state machine
//! ([`state`]: challenged, registered, refreshing) with one pending, one active and at most
//! one old SA set, and the index from inbound SPI to registration. It decides nothing about
//! SIP: the core's REGISTER procedure (`core/register.rs`) asks it and tells it what
//! happened; sets it lets go of are handed back to be removed. Authentication vectors come
//! from an [`AuthVectorSource`].

mod request;
mod sa;
mod source;
mod state;
mod view;

pub(crate) use request::{
    contact_uri, impi_of, mechanisms, realm_of, requested_expires, verify_matches,
};
pub(crate) use sa::{unprotected_suite, SaSetExt};
pub use source::{AuthVectorSource, Identities, IssuedVector, VectorError};
pub(crate) use state::{Active, Pending, SetKind};
pub use view::{RegistrationView, SaSetState, SaSetView};

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use akagate_proto::ipc::{Flow, SaSet, Transport};

use crate::secagree::SecMechanism;
use state::{Completed, RegState};

/// One registration (one IMPI).
struct Registration {
    /// The private identity.
    impi: String,
    /// Its public identities (from the HSS).
    impus: Vec<String>,
    /// Where it stands.
    state: RegState,
    /// The deadline this registration has in the core's timer set.
    armed: Option<Instant>,
}

/// A registered binding, read-only (routing, keep-alives, reg-event).
pub(crate) struct Binding<'a> {
    /// The public identities; the first is the default one.
    pub impus: &'a [String],
    /// The active SA set.
    pub set: &'a SaSet,
    /// The transport the UE registered over.
    pub proto: Transport,
    /// The registered Contact URI.
    pub contact: &'a str,
    /// When the binding expires.
    pub expires_at: Instant,
}

/// What a registration's deadline did ([`Registrar::expire`]).
pub(crate) enum Expiry {
    /// The binding ran out: the registration ends (the caller sends its last messages,
    /// then [`Registrar::remove`]).
    Ended,
    /// A lapsed challenge or old set (to remove); the registration may be gone.
    Lapsed(Vec<SaSet>),
}

/// Every registration, keyed by lower-cased IMPI, and the inbound SPIs of their sets.
#[derive(Default)]
pub(crate) struct Registrar {
    regs: HashMap<String, Registration>,
    /// Inbound SPI (spi_pc or spi_ps of any live set) -> IMPI key.
    by_spi: HashMap<u32, String>,
    /// Flow of a flow-bound set -> its spi_ps (which `by_spi` leads to the registration).
    by_flow: HashMap<Flow, u32>,
    /// Armed deadlines of registrations gone since [`Registrar::take_disarmed`].
    disarmed: Vec<(String, Option<Instant>)>,
}

impl Registrar {
    /// Number of registrations (challenged ones too).
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// Number of registrations with an active (200 OK'd) SA set.
    pub fn registered(&self) -> usize {
        self.regs
            .values()
            .filter(|r| r.state.active().is_some())
            .count()
    }

    /// The IMPI key of the registration that owns inbound SPI `spi`.
    pub fn key_of_spi(&self, spi: u32) -> Option<&str> {
        self.by_spi.get(&spi).map(String::as_str)
    }

    /// The registration and kind of set inbound SPI `spi` belongs to.
    pub fn set_of_spi(&self, spi: u32) -> Option<(&str, SetKind)> {
        let key = self.by_spi.get(&spi)?;
        let kind = self.regs.get(key)?.state.kind_of(spi)?;
        Some((key, kind))
    }

    /// The kind of `key`'s set that inbound SPI `spi` belongs to.
    pub fn kind_of(&self, key: &str, spi: u32) -> Option<SetKind> {
        self.regs.get(key)?.state.kind_of(spi)
    }

    /// The private identity of registration `key`.
    pub fn impi(&self, key: &str) -> Option<&str> {
        self.regs.get(key).map(|r| r.impi.as_str())
    }

    /// The public identities of registration `key`.
    pub fn impus(&self, key: &str) -> Option<&[String]> {
        self.regs.get(key).map(|r| r.impus.as_slice())
    }

    /// Replaces the public identities of `key` (proxy mode: the P-Associated-URIs of the 200).
    pub fn set_impus(&mut self, key: &str, impus: Vec<String>) {
        if let Some(reg) = self.regs.get_mut(key) {
            reg.impus = impus;
        }
    }

    /// The active binding of `key`.
    pub fn binding(&self, key: &str) -> Option<Binding<'_>> {
        let r = self.regs.get(key)?;
        let a = r.state.active()?;
        Some(Binding {
            impus: &r.impus,
            set: &a.set,
            proto: a.proto,
            contact: &a.contact,
            expires_at: a.expires_at,
        })
    }

    /// The outstanding challenge of registration `key`.
    pub fn pending(&self, key: &str) -> Option<&Pending> {
        self.regs.get(key)?.state.pending()
    }

    /// The Security-Server agreed for `key`'s active set: `None` if not registered,
    /// `Some(None)` if registered without sec-agree (flow-bound).
    pub fn active_security_server(&self, key: &str) -> Option<Option<&SecMechanism>> {
        Some(self.regs.get(key)?.state.active()?.security_server.as_ref())
    }

    /// The inbound SPI standing for flow `flow` if a flow-bound set (a registration without
    /// sec-agree) was made on it: requests on that flow count as coming through that set.
    pub fn spi_of_flow(&self, flow: &Flow) -> Option<u32> {
        self.by_flow.get(flow).copied()
    }

    /// The (UE address, our port) pairs of `key`'s registered sets (active and old): the
    /// protected flows its transactions use.
    pub fn protected_ports(&self, key: &str) -> Vec<(IpAddr, u16)> {
        let Some(r) = self.regs.get(key) else {
            return Vec::new();
        };
        [
            r.state.active().map(|a| &a.set),
            r.state.old().map(|o| &o.set),
        ]
        .into_iter()
        .flatten()
        .flat_map(|s| [(s.ue, s.port_pc), (s.ue, s.port_ps)])
        .collect()
    }

    /// A new challenge for `key` (`impi`, `impus` from the vector source when it is new):
    /// its set's SPIs now lead to `key`. Returns the set of the challenge it replaces (to
    /// remove after the 401), so exactly one pending set remains.
    pub fn challenged(
        &mut self,
        key: &str,
        impi: &str,
        impus: &[String],
        pending: Pending,
    ) -> Option<SaSet> {
        let pending = Box::new(pending);
        for spi in [pending.set.spi_pc, pending.set.spi_ps] {
            self.by_spi.insert(spi, key.to_string());
        }
        if let Some(flow) = pending.bound_flow {
            self.by_flow.insert(flow, pending.set.spi_ps);
        }
        let replaced = match self.regs.remove(key) {
            Some(mut reg) => {
                let (state, replaced) = reg.state.challenge(pending);
                reg.state = state;
                self.regs.insert(key.to_string(), reg);
                replaced
            }
            None => {
                let reg = Registration {
                    impi: impi.to_string(),
                    impus: impus.to_vec(),
                    state: RegState::Challenged { pending },
                    armed: None,
                };
                self.regs.insert(key.to_string(), reg);
                None
            }
        };
        replaced.map(|p| self.detach(p.set))
    }

    /// The challenge of `key` failed (wrong answer, bad AUTS): returns its set (to remove
    /// after the answer). A registration left with no set is gone.
    pub fn fail_pending(&mut self, key: &str) -> Option<SaSet> {
        let reg = self.regs.remove(key)?;
        let (state, pending) = reg.state.drop_pending();
        if let Some(state) = state {
            self.regs
                .insert(key.to_string(), Registration { state, ..reg });
        } else {
            self.disarmed.push((key.to_string(), reg.armed));
        }
        pending.map(|p| self.detach(p.set))
    }

    /// The protected REGISTER of `key` succeeded: its pending set becomes the active one,
    /// bound to `contact` over `proto` until `expires_at`; the previous active set becomes
    /// old. Returns the old set this supersedes (to remove after the 200), or `None` if
    /// nothing was pending.
    pub fn complete(
        &mut self,
        key: &str,
        contact: String,
        proto: Transport,
        expires_at: Instant,
    ) -> Option<Option<SaSet>> {
        let reg = self.regs.remove(key)?;
        let bind = |p: Pending| Active {
            set: p.set,
            security_server: p.security_server,
            contact,
            proto,
            expires_at,
        };
        let (state, done) = reg.state.complete(bind);
        self.regs
            .insert(key.to_string(), Registration { state, ..reg });
        match done {
            Completed::NothingPending => None,
            Completed::Bound(superseded) => Some(superseded.map(|o| self.detach(o.set))),
        }
    }

    /// A refresh of `key`'s binding over its active set: new lifetime and, if given, a new
    /// contact. Returns the contact now bound, or `None` if `key` is not registered.
    pub fn refresh(
        &mut self,
        key: &str,
        contact: Option<String>,
        expires_at: Instant,
    ) -> Option<String> {
        let active = self.regs.get_mut(key)?.state.active_mut()?;
        if let Some(c) = contact {
            active.contact = c;
        }
        active.expires_at = expires_at;
        Some(active.contact.clone())
    }

    /// Traffic from `key` over inbound SPI `spi`: the first message over a new active set
    /// retires the old one, which is returned (to remove).
    pub fn note_traffic(&mut self, key: &str, spi: u32) -> Option<SaSet> {
        let reg = self.regs.get_mut(key)?;
        if reg.state.kind_of(spi) != Some(SetKind::Active) {
            return None;
        }
        let old = reg.state.take_old()?;
        Some(self.detach(old.set))
    }

    /// Forgets registration `key`; returns its sets (active, old, pending) to remove.
    pub fn remove(&mut self, key: &str) -> Vec<SaSet> {
        let Some(reg) = self.regs.remove(key) else {
            return Vec::new();
        };
        self.disarmed.push((key.to_string(), reg.armed));
        reg.state
            .into_sets()
            .into_iter()
            .map(|s| self.detach(s))
            .collect()
    }

    /// Registration `key`'s deadline came (`now`): its binding ended, or a lapsed challenge
    /// or old set is returned to be removed. `None`: no such registration.
    pub fn expire(&mut self, key: &str, now: Instant) -> Option<Expiry> {
        let reg = self.regs.get_mut(key)?;
        reg.armed = None;
        if reg.state.active().is_some_and(|a| a.expires_at <= now) {
            return Some(Expiry::Ended);
        }
        let mut lapsed = Vec::new();
        if reg.state.old().is_some_and(|o| o.until <= now) {
            lapsed.extend(reg.state.take_old().map(|o| o.set));
        }
        if reg.state.pending().is_some_and(|p| p.deadline <= now) {
            let reg = self.regs.remove(key)?;
            let (state, pending) = reg.state.drop_pending();
            lapsed.splice(0..0, pending.map(|p| p.set));
            if let Some(state) = state {
                self.regs
                    .insert(key.to_string(), Registration { state, ..reg });
            }
        }
        Some(Expiry::Lapsed(
            lapsed.into_iter().map(|s| self.detach(s)).collect(),
        ))
    }

    /// Registration `key`'s deadline as armed and as it should be now: `(previous, next)`,
    /// noting `next` as armed. `None` if `key` is gone.
    pub fn rearm(&mut self, key: &str) -> Option<(Option<Instant>, Option<Instant>)> {
        let reg = self.regs.get_mut(key)?;
        let next = reg.state.next_deadline();
        Some((std::mem::replace(&mut reg.armed, next), next))
    }

    /// Deadlines of registrations that went away since the last call, to take out of the
    /// timer set.
    pub fn take_disarmed(&mut self) -> Vec<(String, Option<Instant>)> {
        std::mem::take(&mut self.disarmed)
    }

    /// Every registration: IMPI, IMPUs and state (for the views).
    fn registrations(&self) -> impl Iterator<Item = (&str, &[String], &RegState)> {
        self.regs
            .values()
            .map(|r| (r.impi.as_str(), r.impus.as_slice(), &r.state))
    }

    /// A set leaves the registrar: its SPIs no longer lead anywhere.
    fn detach(&mut self, set: SaSet) -> SaSet {
        for spi in [set.spi_pc, set.spi_ps] {
            self.by_spi.remove(&spi);
        }
        if set.is_unprotected() {
            self.by_flow.retain(|_, spi| *spi != set.spi_ps);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use akagate_proto::suite::{AuthAlg, EncrAlg};

    use super::*;
    use crate::aka::{derive_suite, Ck, Ik, Res};

    const KEY: &str = "alice@x";

    /// A set whose inbound SPIs are `spi` and `spi + 1`.
    fn set(spi: u32) -> SaSet {
        let suite = derive_suite(
            AuthAlg::HmacSha1_96,
            EncrAlg::Null,
            &Ck::new([1; 16]),
            &Ik::new([2; 16]),
        )
        .unwrap();
        SaSet {
            ue: "10.0.0.2".parse().unwrap(),
            local: "10.0.0.1".parse().unwrap(),
            suite,
            spi_pc: spi,
            spi_ps: spi + 1,
            spi_uc: 7,
            spi_us: 8,
            port_pc: 5100,
            port_ps: 6100,
            port_uc: 5080,
            port_us: 5090,
        }
    }

    fn pending(spi: u32, deadline: Instant) -> Pending {
        Pending {
            set: set(spi),
            security_server: Some(SecMechanism::new("ipsec-3gpp")),
            bound_flow: None,
            nonce: format!("nonce-{spi}"),
            rand: [0; 16],
            xres: Res::new(&[9; 8]).unwrap(),
            deadline,
        }
    }

    fn spis(sets: &[SaSet]) -> Vec<u32> {
        sets.iter().map(|s| s.spi_pc).collect()
    }

    /// Challenged, then registered over 1000 with the binding expiring at `t + 600 s`.
    fn registered(r: &mut Registrar, t: Instant) {
        assert!(r.challenged(KEY, KEY, &[], pending(1000, t)).is_none());
        let superseded = r.complete(KEY, "sip:a@ue".into(), Transport::Tcp, t + secs(600));
        assert!(matches!(superseded, Some(None)));
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_new_challenge_replaces_the_pending_one() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        assert!(r
            .challenged(KEY, KEY, &["sip:a".into()], pending(1000, t))
            .is_none());
        assert_eq!(r.set_of_spi(1001), Some((KEY, SetKind::Pending)));
        assert!(r.binding(KEY).is_none());
        let replaced = r.challenged(KEY, KEY, &[], pending(2000, t)).unwrap();
        assert_eq!(replaced.spi_pc, 1000);
        assert_eq!(
            r.key_of_spi(1000),
            None,
            "a replaced set's SPIs lead nowhere"
        );
        assert_eq!(r.pending(KEY).unwrap().nonce, "nonce-2000");
        assert_eq!(
            r.impus(KEY),
            Some(&["sip:a".to_string()][..]),
            "identities kept"
        );
        assert_eq!(r.registered(), 0);
    }

    #[test]
    fn reregistration_keeps_the_old_set_until_the_new_one_carries_traffic() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        assert_eq!(r.registered(), 1);
        assert_eq!(r.set_of_spi(1000), Some((KEY, SetKind::Active)));
        // Refreshing: a pending set besides the active one.
        assert!(r.challenged(KEY, KEY, &[], pending(2000, t)).is_none());
        assert!(r.binding(KEY).is_some() && r.pending(KEY).is_some());
        assert_eq!(r.protected_ports(KEY).len(), 2, "the active set only");
        let superseded = r.complete(KEY, "sip:a@ue2".into(), Transport::Udp, t + secs(900));
        assert!(matches!(superseded, Some(None)));
        assert_eq!(r.set_of_spi(2000), Some((KEY, SetKind::Active)));
        assert_eq!(r.set_of_spi(1000), Some((KEY, SetKind::Old)));
        assert_eq!(r.binding(KEY).unwrap().contact, "sip:a@ue2");
        // Traffic over the old set retires nothing; over the new one it retires the old.
        assert!(r.note_traffic(KEY, 1001).is_none());
        assert_eq!(r.note_traffic(KEY, 2001).map(|s| s.spi_pc), Some(1000));
        assert_eq!(r.key_of_spi(1000), None);
        assert!(r.note_traffic(KEY, 2001).is_none());
    }

    #[test]
    fn a_third_registration_supersedes_a_still_living_old_set() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        for spi in [2000, 3000] {
            r.challenged(KEY, KEY, &[], pending(spi, t));
            let superseded = r.complete(KEY, "sip:a@ue".into(), Transport::Tcp, t + secs(600));
            if spi == 3000 {
                assert_eq!(superseded.flatten().map(|s| s.spi_pc), Some(1000));
            }
        }
        assert_eq!(r.set_of_spi(2000), Some((KEY, SetKind::Old)));
        // Completing with nothing pending changes nothing.
        assert!(r.complete(KEY, "x".into(), Transport::Tcp, t).is_none());
        assert_eq!(r.set_of_spi(3000), Some((KEY, SetKind::Active)));
    }

    #[test]
    fn a_failed_challenge_ends_a_new_registration_but_not_a_bound_one() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        r.challenged(KEY, KEY, &[], pending(1000, t));
        r.rearm(KEY);
        assert_eq!(r.fail_pending(KEY).map(|s| s.spi_pc), Some(1000));
        assert_eq!(r.len(), 0, "nothing left: gone");
        assert_eq!(r.take_disarmed(), [(KEY.to_string(), Some(t))]);

        registered(&mut r, t);
        r.challenged(KEY, KEY, &[], pending(2000, t));
        assert_eq!(r.fail_pending(KEY).map(|s| s.spi_pc), Some(2000));
        assert_eq!(r.registered(), 1);
        assert!(r.pending(KEY).is_none());
        assert!(r.take_disarmed().is_empty());
    }

    #[test]
    fn deadlines_lapse_challenges_and_old_sets_and_end_bindings() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        assert_eq!(r.rearm(KEY), Some((None, Some(t + secs(600)))));
        r.challenged(KEY, KEY, &[], pending(2000, t + secs(10)));
        assert_eq!(
            r.rearm(KEY),
            Some((Some(t + secs(600)), Some(t + secs(10))))
        );
        match r.expire(KEY, t + secs(10)) {
            Some(Expiry::Lapsed(sets)) => assert_eq!(spis(&sets), [2000]),
            _ => panic!("the challenge lapses"),
        }
        assert_eq!(r.registered(), 1);
        assert!(matches!(r.expire(KEY, t + secs(600)), Some(Expiry::Ended)));
        assert_eq!(spis(&r.remove(KEY)), [1000]);
        assert!(r.expire(KEY, t).is_none());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn removal_returns_active_old_then_pending() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        r.challenged(KEY, KEY, &[], pending(2000, t));
        r.complete(KEY, "sip:a@ue".into(), Transport::Tcp, t + secs(600));
        r.challenged(KEY, KEY, &[], pending(3000, t));
        assert_eq!(spis(&r.remove(KEY)), [2000, 1000, 3000]);
        assert!([1000, 2000, 3000, 3001]
            .iter()
            .all(|&s| r.key_of_spi(s).is_none()));
        assert!(r.view(t).is_empty());
    }
}
