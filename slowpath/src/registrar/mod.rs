//! The registrar: IMS-AKA registration state over sec-agree (TS 24.229 5.2.2, TS 33.203 6-7).
//! [`Registrar`] owns every registration (one per IMPI), each a small state machine
//! ([`state`]: challenged, registered, refreshing) with a few pending (one per source
//! address), one active and at most one old SA set, the index from inbound SPI to
//! registration, and the count of outstanding challenges per source address. It decides nothing about
//! SIP: the core's REGISTER procedure (`core/register.rs`) asks it and tells it what
//! happened; sets it lets go of are handed back to be removed. Authentication vectors come
//! from an [`AuthVectorSource`].

mod directory;
mod persist;
mod record;
mod request;
mod sa;
mod source;
mod state;
mod view;

pub use directory::{Located, LocationDirectory};
pub use persist::{
    unix_ms, ChangeRef, ChangeSet, EncodedRegistration, PersistedRegistration, PersistedSet,
    RegistrationChange, RestoreError,
};
pub use record::{
    decode as decode_record, encode_owned as encode_record, SecretBuf, VERSION as RECORD_VERSION,
};
pub(crate) use request::{
    choose_security_client, contact_uri, contact_uri_str, impi_of, mechanism_views, realm_of,
    requested_expires, verify_matches,
};
pub(crate) use sa::{unprotected_suite, SaSetExt};
pub use source::{AuthVectorSource, Identities, IssuedVector, VectorError};
pub(crate) use state::{Active, Pending, SetKind};
pub use view::{RegistrationView, SaSetState, SaSetView};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use akagate_proto::hash::{KeyedMap, KeyedSet};
use akagate_proto::ipc::{Flow, SaSet, Transport};

use crate::secagree::SecMechanism;
use state::{Completed, RegState};

/// One registration (one IMPI). Its identities are shared with the HSS's subscriber record
/// ([`Identities`]), not copied per registration.
struct Registration {
    /// The private identity.
    impi: Arc<str>,
    /// Its public identities (from the HSS).
    impus: Arc<[String]>,
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

/// Why a registration ends (the reg-event contact `event`, RFC 3680 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegEnd {
    /// The UE de-registered (`Expires: 0`): `event="unregistered"`.
    Deregistered,
    /// The binding's lifetime ran out: `event="expired"`.
    Expired,
    /// The network removed it (a flow-bound registration's connection closed, or the
    /// S-CSCF deactivated the contact): `event="deactivated"`.
    Deactivated,
}

/// Every registration, keyed by lower-cased IMPI, and the inbound SPIs of their sets.
///
/// The maps are keyed by what UEs choose (an IMPI, an address), so they hash with the keyed
/// foldhash of `akagate_proto::hash` (HashDoS, see there). A registration's key is one
/// `Arc<str>` shared by its entry in `regs` and its SPIs' entries in `by_spi` (and with the
/// HSS's IMPI when that is already lower-case): a challenge allocates no key strings.
#[derive(Default)]
pub(crate) struct Registrar {
    /// Boxed: a registration is about 460 bytes, and the map's probes and rehashes then
    /// touch and move 24-byte slots, not whole registrations.
    regs: KeyedMap<Arc<str>, Box<Registration>>,
    /// Inbound SPI (spi_pc or spi_ps of any live set) -> IMPI key.
    by_spi: KeyedMap<u32, Arc<str>>,
    /// Flow of a flow-bound set -> its spi_ps (which `by_spi` leads to the registration).
    by_flow: KeyedMap<Flow, u32>,
    /// The reverse of `by_flow`: spi_ps of a flow-bound set -> its flow.
    flow_of_spi: KeyedMap<u32, Flow>,
    /// Armed deadlines of registrations gone since [`Registrar::take_disarmed`].
    disarmed: Vec<(String, Option<Instant>)>,
    /// Outstanding challenges by the address they were sent to (no entry for none).
    by_source: KeyedMap<IpAddr, usize>,
    /// Outstanding challenges in total.
    pending_total: usize,
    /// Registrations with an active set: kept on every change ([`Registrar::registered`]
    /// is a gauge read every few hundred milliseconds, not a walk of every registration).
    active: usize,
    /// Registrations whose binding changed since [`Registrar::take_changes`] (the
    /// registration store must hear of them); kept only once [`Registrar::track_changes`]
    /// was called, so a registrar without a store does not collect them forever.
    changed: KeyedSet<String>,
    /// Whether `changed` is kept.
    tracking: bool,
    /// With slowpath shards: where this shard publishes its bindings and finds the other
    /// shards' ([`Registrar::publish`], [`Registrar::located`]).
    directory: Option<std::sync::Arc<LocationDirectory>>,
    /// This registrar's shard in the directory.
    shard: usize,
    /// Registrations whose binding changed since the last [`Registrar::publish`].
    unpublished: KeyedSet<String>,
    /// Another shard's registration that just ended, as last published, while this shard
    /// releases its dialogs with it ([`Registrar::located`] answers for it meanwhile).
    departing: Option<(String, std::sync::Arc<Located>)>,
}

/// A registration's state, taken out to move it to the next one (put back after): the
/// entry stays where it is in the map (removing and inserting it again would leave a
/// tombstone per transition, and the map rehashes in place when they pile up).
fn take_state(reg: &mut Registration) -> RegState {
    std::mem::replace(
        &mut reg.state,
        RegState::Challenged {
            pending: Vec::new(),
        },
    )
}

/// What [`Registrar::challenged`] let go of to make room for a new challenge (sets to
/// remove after the 401).
#[derive(Default)]
pub(crate) struct Displaced {
    /// The earlier challenge of the same IMPI to the same address (its UE asked again).
    pub replaced: Vec<SaSet>,
    /// The oldest challenges of the IMPI to other addresses, beyond the per-IMPI bound.
    pub evicted: Vec<SaSet>,
}

impl Registrar {
    /// An empty registrar with room for `registrations` registrations and their SPIs, so that
    /// filling up to it never rehashes a map (a rehash moves every entry and touches fresh
    /// pages, in the middle of a REGISTER). The core sizes it to the HSS's subscribers: in
    /// embedded mode there is at most one registration per IMPI the HSS knows.
    pub fn with_capacity(registrations: usize) -> Self {
        let mut r = Registrar::default();
        r.regs.reserve(registrations);
        // Each registration's one live set has two inbound SPIs (a challenge's set becomes
        // the active one); a re-registration's old or pending set is transient.
        r.by_spi.reserve(registrations.saturating_mul(2));
        r
    }

    /// Number of registrations (challenged ones too).
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// Number of registrations with an active (200 OK'd) SA set.
    pub fn registered(&self) -> usize {
        self.active
    }

    /// [`Registrar::registered`] counted by a walk of every registration (what the count
    /// kept on change must equal).
    #[cfg(test)]
    fn registered_by_walk(&self) -> usize {
        self.regs
            .values()
            .filter(|r| r.state.active().is_some())
            .count()
    }

    /// The IMPI key of the registration that owns inbound SPI `spi`.
    pub fn key_of_spi(&self, spi: u32) -> Option<&str> {
        self.by_spi.get(&spi).map(|k| &**k)
    }

    /// The registration and kind of set inbound SPI `spi` belongs to.
    pub fn set_of_spi(&self, spi: u32) -> Option<(&str, SetKind)> {
        let key = self.by_spi.get(&spi)?;
        let kind = self.regs.get(key)?.state.kind_of(spi)?;
        Some((&**key, kind))
    }

    /// The kind of `key`'s set that inbound SPI `spi` belongs to.
    pub fn kind_of(&self, key: &str, spi: u32) -> Option<SetKind> {
        self.regs.get(key)?.state.kind_of(spi)
    }

    /// The private identity of registration `key`.
    pub fn impi(&self, key: &str) -> Option<&str> {
        self.regs.get(key).map(|r| &*r.impi)
    }

    /// The public identities of registration `key`.
    pub fn impus(&self, key: &str) -> Option<&[String]> {
        self.regs.get(key).map(|r| &r.impus[..])
    }

    /// The registration with public identity `impu` (compared without case and without URI
    /// parameters) or private identity `impu`: a linear search, for operators' commands.
    pub fn key_of_identity(&self, identity: &str) -> Option<&str> {
        let bare = |u: &str| {
            u.split([';', '?'])
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        };
        let wanted = bare(identity);
        self.regs
            .iter()
            .find(|(k, r)| ***k == *wanted || r.impus.iter().any(|u| bare(u) == wanted))
            .map(|(k, _)| &**k)
    }

    /// Replaces the public identities of `key` (proxy mode: the P-Associated-URIs of the 200).
    pub fn set_impus(&mut self, key: &str, impus: Vec<String>) {
        if let Some(reg) = self.regs.get_mut(key) {
            reg.impus = impus.into();
            self.changed(key);
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

    /// The challenge of registration `key` whose set has inbound SPI `spi`.
    pub fn pending_of_spi(&self, key: &str, spi: u32) -> Option<&Pending> {
        self.regs.get(key)?.state.pending_of_spi(spi)
    }

    /// The challenge of `key` with `nonce` that was sent to `source`: an answer outside the
    /// SAs (AUTS, a MAC failure) counts only from the address the challenge went to, since
    /// the nonce itself is no secret.
    pub fn pending_answered(&self, key: &str, nonce: &str, source: IpAddr) -> Option<&Pending> {
        let r = self.regs.get(key)?;
        r.state
            .pending()
            .iter()
            .rev()
            .find(|p| p.nonce == nonce && p.source() == source)
    }

    /// The newest outstanding challenge of `key`.
    pub fn newest_pending(&self, key: &str) -> Option<&Pending> {
        self.regs.get(key)?.state.pending().last()
    }

    /// Whether `key` has an outstanding challenge sent to `source`.
    pub fn has_pending_for(&self, key: &str, source: IpAddr) -> bool {
        self.regs
            .get(key)
            .is_some_and(|r| r.state.pending().iter().any(|p| p.source() == source))
    }

    /// Outstanding challenges sent to `source`.
    pub fn pending_from(&self, source: IpAddr) -> usize {
        self.by_source.get(&source).copied().unwrap_or(0)
    }

    /// Outstanding challenges in total.
    pub fn pending_total(&self) -> usize {
        self.pending_total
    }

    /// The Security-Server agreed for `key`'s active set: `None` if not registered,
    /// `Some(None)` if registered without sec-agree (flow-bound).
    pub fn active_security_server(&self, key: &str) -> Option<Option<&SecMechanism>> {
        Some(self.regs.get(key)?.state.active()?.security_server.as_ref())
    }

    /// The inbound SPI standing for flow `flow` if a flow-bound set (a registration without
    /// sec-agree) was made on it: requests on that flow count as coming through that set.
    /// With shards, a flow another shard's registration is bound to is found in the
    /// directory (a callee answering a call its caller's shard owns).
    pub fn spi_of_flow(&self, flow: &Flow) -> Option<u32> {
        self.by_flow
            .get(flow)
            .copied()
            .or_else(|| self.directory.as_ref()?.spi_of_flow(flow))
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
    /// [`Registrar::challenged_with`] for identities not shared with a source.
    pub fn challenged(
        &mut self,
        key: &str,
        impi: &str,
        impus: &[String],
        pending: Pending,
        max_pending: usize,
    ) -> Displaced {
        let ids = Identities {
            impi: impi.into(),
            impus: impus.into(),
        };
        self.challenged_with(key, &ids, pending, max_pending)
    }

    /// A new challenge for `key` (`ids` from the vector source, kept shared when it is new):
    /// its set's SPIs now lead to `key`. An earlier challenge of `key` to the same address
    /// is replaced; challenges to other addresses stay (a stranger naming this IMPI must not
    /// cancel the UE's own challenge), but beyond `max_pending` the oldest go. Returns the
    /// sets let go of (to remove after the 401).
    pub fn challenged_with(
        &mut self,
        key: &str,
        ids: &Identities,
        pending: Pending,
        max_pending: usize,
    ) -> Displaced {
        // One look-up tells whether the registration exists (a new one is inserted below
        // without looking again).
        let (shared_key, exists) = match self.regs.get_key_value(key) {
            Some((k, _)) => (k.clone(), true),
            None if *ids.impi == *key => (ids.impi.clone(), false),
            None => (Arc::from(key), false),
        };
        for spi in [pending.set.spi_pc, pending.set.spi_ps] {
            self.by_spi.insert(spi, shared_key.clone());
        }
        if let Some(flow) = pending.bound_flow {
            self.by_flow.insert(flow, pending.set.spi_ps);
            self.flow_of_spi.insert(pending.set.spi_ps, flow);
        }
        self.count(pending.source(), true);
        let mut displaced = Displaced::default();
        let source = pending.source();
        let Some(reg) = exists.then(|| self.regs.get_mut(key)).flatten() else {
            // Written straight into its box (built on the stack first, it was one more copy).
            self.regs.insert(
                shared_key,
                Box::new(Registration {
                    impi: ids.impi.clone(),
                    impus: ids.impus.clone(),
                    state: RegState::Challenged {
                        pending: vec![pending],
                    },
                    armed: None,
                }),
            );
            return displaced;
        };
        let (state, replaced) = take_state(reg).drop_pending(|p| p.source() == source);
        let others = state.as_ref().map_or(0, |s| s.pending().len());
        // Room for the new one: the oldest challenges to other addresses go first.
        let mut excess = (others + 1).saturating_sub(max_pending.max(1));
        let (state, evicted) = match state {
            Some(s) => s.drop_pending(|_| {
                let go = excess > 0;
                excess = excess.saturating_sub(1);
                go
            }),
            None => (None, Vec::new()),
        };
        reg.state = match state {
            Some(s) => s.challenge(pending),
            None => RegState::Challenged {
                pending: vec![pending],
            },
        };
        displaced.replaced = replaced.into_iter().map(|p| self.forget(p)).collect();
        displaced.evicted = evicted.into_iter().map(|p| self.forget(p)).collect();
        displaced
    }

    /// The challenge of `key` whose set has inbound SPI `spi` failed (wrong answer, bad
    /// AUTS): returns its set (to remove after the answer). A registration left with no set
    /// is gone.
    pub fn fail_pending(&mut self, key: &str, spi: u32) -> Option<SaSet> {
        let reg = self.regs.get_mut(key)?;
        let (state, failed) = take_state(reg).drop_pending(|p| p.set.has_spi(spi));
        if let Some(state) = state {
            reg.state = state;
        } else {
            let armed = reg.armed;
            self.regs.remove(key);
            self.disarmed.push((key.to_string(), armed));
        }
        failed.into_iter().map(|p| self.forget(p)).next()
    }

    /// The protected REGISTER of `key` through the pending set with inbound SPI `spi`
    /// succeeded: that set becomes the active one, bound to `contact` over `proto` until
    /// `expires_at`; the previous active set becomes old, the other challenges end. Returns
    /// the sets this supersedes (to remove after the 200), or `None` if no such challenge
    /// was pending.
    pub fn complete(
        &mut self,
        key: &str,
        spi: u32,
        contact: String,
        proto: Transport,
        expires_at: Instant,
    ) -> Option<Vec<SaSet>> {
        let reg = self.regs.get_mut(key)?;
        let was_active = reg.state.active().is_some();
        let mut answered = None;
        let bind = |p: Pending| {
            answered = Some(p.source());
            Active {
                set: p.set,
                security_server: p.security_server,
                contact,
                proto,
                expires_at,
            }
        };
        let done = reg.state.complete(spi, bind);
        // Completing binds an active set; it never takes one away.
        if !was_active && reg.state.active().is_some() {
            self.active += 1;
        }
        if answered.is_some() {
            self.changed(key);
        }
        if let Some(source) = answered {
            self.count(source, false);
        }
        match done {
            Completed::NothingPending => None,
            Completed::Bound(superseded, others) => {
                let mut sets: Vec<SaSet> = superseded.into_iter().map(|s| self.detach(s)).collect();
                sets.extend(others.into_iter().map(|p| self.forget(p)));
                Some(sets)
            }
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
        let contact = active.contact.clone();
        self.changed(key);
        Some(contact)
    }

    /// Traffic from `key` over inbound SPI `spi`: the first message over a new active set
    /// retires the old one, which is returned (to remove).
    pub fn note_traffic(&mut self, key: &str, spi: u32) -> Option<SaSet> {
        let reg = self.regs.get_mut(key)?;
        if reg.state.kind_of(spi) != Some(SetKind::Active) {
            return None;
        }
        let old = reg.state.take_old()?;
        // Its SPIs leave the directory.
        if self.directory.is_some() {
            self.unpublished.insert(key.to_string());
        }
        Some(self.detach(old.set))
    }

    /// Forgets registration `key`; returns its sets (active, old, pending) to remove.
    pub fn remove(&mut self, key: &str) -> Vec<SaSet> {
        let Some(reg) = self.regs.remove(key) else {
            return Vec::new();
        };
        if reg.state.active().is_some() {
            self.active = self.active.saturating_sub(1);
            self.changed(key);
        }
        self.disarmed.push((key.to_string(), reg.armed));
        for p in reg.state.pending() {
            self.count(p.source(), false);
        }
        reg.state
            .into_sets()
            .into_iter()
            .map(|s| self.detach(s))
            .collect()
    }

    /// Shares the bindings through `directory` from now on (several slowpath shards).
    pub fn attach_directory(&mut self, directory: std::sync::Arc<LocationDirectory>, shard: usize) {
        self.directory = Some(directory);
        self.shard = shard;
    }

    /// Traffic over `spi` of `key`, a registration another shard owns (its owner retires
    /// the old set if this is the first use of the new one).
    pub fn note_remote_traffic(&self, key: &str, spi: u32) {
        if let Some(d) = &self.directory {
            d.note_traffic(key, spi);
        }
    }

    /// What other shards saw of this shard's registrations' new sets.
    pub fn take_remote_notes(&self) -> Vec<(String, u32)> {
        self.directory
            .as_ref()
            .map_or_else(Vec::new, |d| d.take_notes(self.shard))
    }

    /// Publishes the bindings changed since the last call to the directory (their active set
    /// and the SPIs of their live sets; a registration without an active set is withdrawn).
    /// Nothing without a directory.
    pub fn publish(&mut self) {
        let Some(dir) = self.directory.clone() else {
            return;
        };
        for key in std::mem::take(&mut self.unpublished) {
            let located = self.regs.get(key.as_str()).and_then(|r| {
                let a = r.state.active()?;
                let mut spis = vec![a.set.spi_pc, a.set.spi_ps];
                if let Some(o) = r.state.old() {
                    spis.extend([o.set.spi_pc, o.set.spi_ps]);
                }
                Some(Located {
                    flow: self.flow_of_spi.get(&a.set.spi_ps).copied(),
                    impus: r.impus.to_vec(),
                    set: a.set.clone(),
                    proto: a.proto,
                    contact: a.contact.clone(),
                    spis,
                    shard: self.shard,
                })
            });
            dir.publish(&key, located);
        }
    }

    /// Registration `key` as another shard published it (`None` for our own keys: the
    /// registrar itself is authoritative for them).
    pub fn located(&self, key: &str) -> Option<std::sync::Arc<Located>> {
        if self.regs.contains_key(key) {
            return None;
        }
        match &self.departing {
            Some((k, l)) if k == key => Some(l.clone()),
            _ => self.directory.as_ref()?.get(key),
        }
    }

    /// This shard now holds a dialog with registration `key`: if another shard owns it, that
    /// shard tells this one when it ends ([`Registrar::take_ended`]).
    pub fn watch_remote(&self, key: &str) {
        if let Some(d) = &self.directory {
            if !self.regs.contains_key(key) {
                d.watch(key, self.shard);
            }
        }
    }

    /// This shard holds no dialog with registration `key` any more: if another shard owns
    /// it, its end need not be told here.
    pub fn unwatch_remote(&self, key: &str) {
        if let Some(d) = &self.directory {
            if !self.regs.contains_key(key) {
                d.unwatch(key, self.shard);
            }
        }
    }

    /// Our registration `key` ends (`why`): the shards holding dialogs with it are told.
    pub(crate) fn announce_end(&self, key: &str, why: crate::registrar::RegEnd) {
        if let Some(d) = &self.directory {
            d.announce_end(key, why);
        }
    }

    /// Other shards' registrations that ended while this shard held dialogs with them.
    pub(crate) fn take_ended(&self) -> Vec<directory::Ended> {
        self.directory
            .as_ref()
            .map_or_else(Vec::new, |d| d.take_ended(self.shard))
    }

    /// While this shard releases its dialogs with `ended` (another shard's registration
    /// that just ended), [`Registrar::located`] answers with its last binding; `None` ends
    /// that.
    pub(crate) fn set_departing(&mut self, ended: Option<(String, std::sync::Arc<Located>)>) {
        self.departing = ended;
    }

    /// The registration another shard owns whose live set has inbound SPI `spi`.
    pub fn remote_key_of_spi(&self, spi: u32) -> Option<String> {
        if self.by_spi.contains_key(&spi) {
            return None;
        }
        self.directory.as_ref()?.key_of_spi(spi)
    }

    /// Registration `key`'s deadline came (`now`): its binding ended, or lapsed challenges
    /// or an old set are returned to be removed. `None`: no such registration.
    pub fn expire(&mut self, key: &str, now: Instant) -> Option<Expiry> {
        let reg = self.regs.get_mut(key)?;
        reg.armed = None;
        if reg.state.active().is_some_and(|a| a.expires_at <= now) {
            return Some(Expiry::Ended);
        }
        let old = match reg.state.old() {
            Some(o) if o.until <= now => reg.state.take_old(),
            _ => None,
        };
        let mut lapsed = Vec::new();
        if reg.state.pending().iter().any(|p| p.deadline <= now) {
            let (state, gone) = take_state(reg).drop_pending(|p| p.deadline <= now);
            match state {
                Some(state) => reg.state = state,
                None => {
                    self.regs.remove(key);
                }
            }
            lapsed = gone.into_iter().map(|p| self.forget(p)).collect();
        }
        lapsed.extend(old.map(|o| self.detach(o.set)));
        Some(Expiry::Lapsed(lapsed))
    }

    /// Registration `key`'s deadline as armed and as it should be now: `(key, previous,
    /// next)` with the registration's shared key, noting `next` as armed. `None` if `key` is
    /// gone.
    pub fn rearm(&mut self, key: &str) -> Option<(Arc<str>, Option<Instant>, Option<Instant>)> {
        let reg = self.regs.get_mut(key)?;
        // The key shared with the entry is the IMPI's own `Arc` when that is lower-case
        // already (see `challenged_with`): equal text is then the same key, found without
        // hashing the IMPI a second time. A key made from another spelling is looked up.
        let shared = if *reg.impi == *key {
            Some(reg.impi.clone())
        } else {
            None
        };
        let next = reg.state.next_deadline();
        let previous = std::mem::replace(&mut reg.armed, next);
        let shared = match shared {
            Some(k) => k,
            None => self.regs.get_key_value(key)?.0.clone(),
        };
        Some((shared, previous, next))
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
            .map(|r| (&*r.impi, &r.impus[..], &r.state))
    }

    /// A challenge leaves the registrar: it no longer counts for its source, and its set's
    /// SPIs lead nowhere.
    fn forget(&mut self, p: Pending) -> SaSet {
        self.count(p.source(), false);
        self.detach(p.set)
    }

    /// One more (`up`) or one fewer outstanding challenge sent to `source`.
    fn count(&mut self, source: IpAddr, up: bool) {
        if up {
            *self.by_source.entry(source).or_default() += 1;
            self.pending_total += 1;
            return;
        }
        self.pending_total = self.pending_total.saturating_sub(1);
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.by_source.entry(source) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// A set leaves the registrar: its SPIs no longer lead anywhere.
    fn detach(&mut self, set: SaSet) -> SaSet {
        for spi in [set.spi_pc, set.spi_ps] {
            self.by_spi.remove(&spi);
        }
        if set.is_unprotected() {
            if let Some(flow) = self.flow_of_spi.remove(&set.spi_ps) {
                self.by_flow.remove(&flow);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use akagate_proto::suite::{AuthAlg, EncrAlg};

    use super::*;
    use crate::aka::{derive_suite, AuthVector, Autn, Ck, Ik, Res};

    const KEY: &str = "alice@x";
    const MAX: usize = 4;

    /// A set to `ue` whose inbound SPIs are `spi` and `spi + 1`.
    fn set_to(spi: u32, ue: &str) -> SaSet {
        let suite = derive_suite(
            AuthAlg::HmacSha1_96,
            EncrAlg::Null,
            &Ck::new([1; 16]),
            &Ik::new([2; 16]),
        )
        .unwrap();
        SaSet {
            ue: ue.parse().unwrap(),
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

    /// A challenge to `ue` over SPIs `spi`, `spi + 1`.
    fn pending_to(spi: u32, ue: &str, deadline: Instant) -> Pending {
        Pending {
            set: set_to(spi, ue),
            security_server: Some(SecMechanism::new("ipsec-3gpp")),
            bound_flow: None,
            nonce: format!("nonce-{spi}").into(),
            vector: Arc::new(AuthVector {
                rand: [0; 16],
                xres: Res::new(&[9; 8]).unwrap(),
                ck: Ck::new([1; 16]),
                ik: Ik::new([2; 16]),
                autn: Autn::from_bytes([3; 16]),
            }),
            issued: deadline,
            ticket: None,
            deadline,
        }
    }

    /// A challenge to the UE's usual address 10.0.0.2.
    fn pending(spi: u32, deadline: Instant) -> Pending {
        pending_to(spi, "10.0.0.2", deadline)
    }

    fn spis(sets: &[SaSet]) -> Vec<u32> {
        sets.iter().map(|s| s.spi_pc).collect()
    }

    /// Challenged, then registered over 1000 with the binding expiring at `t + 600 s`.
    fn registered(r: &mut Registrar, t: Instant) {
        let d = r.challenged(KEY, KEY, &[], pending(1000, t), MAX);
        assert!(d.replaced.is_empty() && d.evicted.is_empty());
        let superseded = r.complete(KEY, 1001, "sip:a@ue".into(), Transport::Tcp, t + secs(600));
        assert_eq!(superseded.map(|s| s.len()), Some(0));
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_new_challenge_to_the_same_address_replaces_the_pending_one() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        let d = r.challenged(KEY, KEY, &["sip:a".into()], pending(1000, t), MAX);
        assert!(d.replaced.is_empty());
        assert_eq!(r.set_of_spi(1001), Some((KEY, SetKind::Pending)));
        assert!(r.binding(KEY).is_none());
        let d = r.challenged(KEY, KEY, &[], pending(2000, t), MAX);
        assert_eq!(spis(&d.replaced), [1000]);
        assert_eq!(
            r.key_of_spi(1000),
            None,
            "a replaced set's SPIs lead nowhere"
        );
        assert_eq!(r.newest_pending(KEY).unwrap().nonce, "nonce-2000");
        assert_eq!((r.pending_total(), r.pending_from(set(0).ue)), (1, 1));
        assert_eq!(
            r.impus(KEY),
            Some(&["sip:a".to_string()][..]),
            "identities kept"
        );
        assert_eq!(r.registered(), 0);
    }

    fn set(spi: u32) -> SaSet {
        set_to(spi, "10.0.0.2")
    }

    /// Issue 10: a registration's key is one allocation, shared by its map entry and its
    /// SPIs (and the source's IMPI itself when that is lower-case already); the identities
    /// are the source's, not copies; a completed challenge keeps the same entry.
    #[test]
    fn a_registration_shares_one_key_and_the_sources_identities() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        let ids = Identities {
            impi: Arc::from(KEY),
            impus: Arc::from(vec!["sip:a".to_string()]),
        };
        r.challenged_with(KEY, &ids, pending(1000, t), MAX);
        let (key, reg) = r.regs.get_key_value(KEY).unwrap();
        assert!(Arc::ptr_eq(key, &ids.impi), "the source's IMPI is the key");
        assert!(Arc::ptr_eq(&reg.impi, &ids.impi) && Arc::ptr_eq(&reg.impus, &ids.impus));
        for spi in [1000, 1001] {
            assert!(
                Arc::ptr_eq(&r.by_spi[&spi], key),
                "SPI {spi} shares the key"
            );
        }
        // Another challenge and its completion keep the entry and its key.
        let key = key.clone();
        r.challenged_with(KEY, &ids, pending_to(2000, "10.9.0.1", t), MAX);
        assert!(Arc::ptr_eq(&r.by_spi[&2001], &key));
        r.complete(KEY, 2001, "sip:a@ue".into(), Transport::Tcp, t + secs(60));
        assert!(Arc::ptr_eq(r.regs.get_key_value(KEY).unwrap().0, &key));
        // A mixed-case IMPI gets its own lower-cased key.
        let mixed = Identities {
            impi: Arc::from("Bob@X"),
            impus: Arc::from(Vec::new()),
        };
        r.challenged_with("bob@x", &mixed, pending_to(3000, "10.9.0.2", t), MAX);
        assert_eq!(r.key_of_spi(3000), Some("bob@x"));
        assert_eq!(r.impi("bob@x"), Some("Bob@X"));
    }

    #[test]
    fn challenges_to_other_addresses_stay_up_to_the_bound_oldest_going_first() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        r.challenged(KEY, KEY, &[], pending(1000, t), MAX);
        for (i, ue) in ["10.9.0.1", "10.9.0.2", "10.9.0.3"].iter().enumerate() {
            let d = r.challenged(KEY, KEY, &[], pending_to(2000 + 10 * i as u32, ue, t), MAX);
            assert!(d.replaced.is_empty() && d.evicted.is_empty());
        }
        assert_eq!(r.pending_total(), 4);
        assert_eq!(r.set_of_spi(1001), Some((KEY, SetKind::Pending)), "kept");
        let d = r.challenged(KEY, KEY, &[], pending_to(3000, "10.9.0.4", t), MAX);
        assert_eq!(spis(&d.evicted), [1000], "the oldest goes");
        assert_eq!((r.pending_total(), r.pending_from(set(0).ue)), (4, 0));
        // An answer outside the SAs counts only from the address its challenge went to.
        let ue = "10.9.0.1".parse().unwrap();
        assert!(r.pending_answered(KEY, "nonce-2000", ue).is_some());
        assert!(r.pending_answered(KEY, "nonce-2010", ue).is_none());
        // Completing one ends the others.
        let sets = r
            .complete(KEY, 2011, "sip:a@ue".into(), Transport::Tcp, t + secs(60))
            .unwrap();
        assert_eq!(spis(&sets), [2000, 2020, 3000]);
        assert_eq!((r.pending_total(), r.registered()), (0, 1));
        assert!(r.by_source.is_empty());
    }

    #[test]
    fn a_challenge_to_a_registered_impi_leaves_its_binding_alone() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        r.challenged(KEY, KEY, &[], pending_to(2000, "10.6.6.6", t), MAX);
        let b = r.binding(KEY).unwrap();
        assert_eq!((b.set.spi_pc, b.set.ue), (1000, set(0).ue));
        assert_eq!(r.view(t)[0].ue, Some(set(0).ue), "the address shown");
        // It lapses; the binding stays.
        assert!(matches!(r.expire(KEY, t), Some(Expiry::Lapsed(s)) if spis(&s) == [2000]));
        assert_eq!(r.registered(), 1);
        assert_eq!(r.pending_total(), 0);
    }

    #[test]
    fn reregistration_keeps_the_old_set_until_the_new_one_carries_traffic() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        assert_eq!(r.registered(), 1);
        assert_eq!(r.set_of_spi(1000), Some((KEY, SetKind::Active)));
        // Refreshing: a pending set besides the active one.
        r.challenged(KEY, KEY, &[], pending(2000, t), MAX);
        assert!(r.binding(KEY).is_some() && r.newest_pending(KEY).is_some());
        assert_eq!(r.protected_ports(KEY).len(), 2, "the active set only");
        let superseded = r.complete(KEY, 2000, "sip:a@ue2".into(), Transport::Udp, t + secs(900));
        assert_eq!(superseded.map(|s| s.len()), Some(0));
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
            r.challenged(KEY, KEY, &[], pending(spi, t), MAX);
            let superseded = r.complete(KEY, spi, "sip:a@ue".into(), Transport::Tcp, t + secs(600));
            if spi == 3000 {
                assert_eq!(spis(&superseded.unwrap()), [1000]);
            }
        }
        assert_eq!(r.set_of_spi(2000), Some((KEY, SetKind::Old)));
        // Completing with nothing pending changes nothing.
        assert!(r
            .complete(KEY, 3000, "x".into(), Transport::Tcp, t)
            .is_none());
        assert_eq!(r.set_of_spi(3000), Some((KEY, SetKind::Active)));
    }

    #[test]
    fn a_failed_challenge_ends_a_new_registration_but_not_a_bound_one() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        r.challenged(KEY, KEY, &[], pending(1000, t), MAX);
        r.rearm(KEY);
        assert_eq!(r.fail_pending(KEY, 1001).map(|s| s.spi_pc), Some(1000));
        assert_eq!(r.len(), 0, "nothing left: gone");
        assert_eq!(r.take_disarmed(), [(KEY.to_string(), Some(t))]);

        registered(&mut r, t);
        r.challenged(KEY, KEY, &[], pending(2000, t), MAX);
        assert_eq!(r.fail_pending(KEY, 2000).map(|s| s.spi_pc), Some(2000));
        assert_eq!(r.registered(), 1);
        assert!(r.newest_pending(KEY).is_none());
        assert!(r.take_disarmed().is_empty());
        assert_eq!(r.pending_total(), 0);
    }

    #[test]
    fn deadlines_lapse_challenges_and_old_sets_and_end_bindings() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        assert_eq!(
            r.rearm(KEY),
            Some((Arc::from(KEY), None, Some(t + secs(600))))
        );
        r.challenged(KEY, KEY, &[], pending(2000, t + secs(10)), MAX);
        assert_eq!(
            r.rearm(KEY),
            Some((Arc::from(KEY), Some(t + secs(600)), Some(t + secs(10))))
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

    /// A change as the owned registration it encodes (panics if it is no put).
    fn decoded(c: Option<RegistrationChange>) -> PersistedRegistration {
        match c {
            Some(RegistrationChange::Encoded(e)) => {
                let p = record::decode(&e.record).unwrap();
                assert_eq!((e.key.as_str(), e.spi_ps), (p.key.as_str(), p.set.spi_ps));
                p
            }
            other => panic!("{other:?}"),
        }
    }

    /// [`pending`] with an hmac-sha-1-96 + aes-cbc suite derived from fixed CK/IK (records
    /// with keys to encode).
    fn pending_with_keys(spi_pc: u32, t: Instant) -> Pending {
        let mut p = pending(spi_pc, t);
        p.set.suite = derive_suite(
            AuthAlg::HmacSha1_96,
            EncrAlg::AesCbc,
            &Ck::new([1; 16]),
            &Ik::new([2; 16]),
        )
        .unwrap();
        p
    }

    /// Issue 14: the store's record is written straight from the registrar's state and
    /// reads back as the owned [`PersistedRegistration`] (what a restart restores), for a
    /// registration with every field set: several identities, a Security-Server with
    /// parameters, an encryption key, a Contact that JSON would escape. Nothing for a
    /// binding that is not registered over SAs.
    #[test]
    fn the_encoded_record_decodes_as_the_owned_form() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        let wall = std::time::UNIX_EPOCH + secs(1_000_000);
        r.track_changes();
        let mut p = pending_with_keys(1000, t);
        p.security_server = Some(
            SecMechanism::new("ipsec-3gpp")
                .with("alg", "hmac-sha-1-96")
                .with("ealg", "aes-cbc")
                .with_u32("spi-c", 1000)
                .with_u32("port-s", 6100),
        );
        let impus = ["sip:a@x".to_string(), "tel:+15550100".to_string()];
        r.challenged(KEY, "A@x", &impus, p, MAX);
        let contact = "<sip:a@ue;q=\"1\"\\x>".to_string();
        r.complete(KEY, 1001, contact.clone(), Transport::Udp, t + secs(600));
        let owned = r.persisted(KEY, t, wall).unwrap();
        assert!(!owned.set.encr_key.is_empty() && owned.security_server.is_some());
        assert_eq!(
            (owned.impus.len(), owned.contact.as_str()),
            (2, contact.as_str())
        );
        let (spi_ps, rec) = r.encoded(KEY, t, wall).unwrap();
        assert_eq!(spi_ps, 1001);
        assert_eq!(rec[0], record::VERSION);
        assert_eq!(record::decode(&rec).unwrap(), owned);
        let mut changes = r.take_changes(t, wall);
        assert_eq!(changes.len(), 1);
        assert_eq!(decoded(changes.pop()), owned);
        // Not registered over SAs: neither form.
        r.remove(KEY);
        assert!(r.persisted(KEY, t, wall).is_none() && r.encoded(KEY, t, wall).is_none());
    }

    /// The record over random bindings decodes as the owned form, and the owned form's
    /// JSON (the records earlier versions wrote, still read) as the same: random
    /// identities, contacts and Security-Server parameters over an alphabet with JSON's
    /// escapes, empty values, IPv4 and IPv6 addresses, every suite. Every cut of the
    /// record is refused.
    #[test]
    fn random_bindings_encode_as_the_owned_form() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        const ALPHABET: &[char] = &[
            'a', 'Z', '0', '9', '-', '.', ';', '=', '<', '>', ':', '@', '"', '\\', '\n', '\r',
            '\t', '\u{1}', '\u{1f}', ' ', 'é', '€',
        ];
        let text = |rng: &mut rand::rngs::StdRng, max: usize| -> String {
            let n = rng.gen_range(0..=max);
            (0..n)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
                .collect()
        };
        let suites = [
            (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
            (AuthAlg::HmacMd5_96, EncrAlg::Null),
            (AuthAlg::Null, EncrAlg::AesGcm),
            (AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc),
        ];
        let wall = std::time::UNIX_EPOCH + secs(1_000_000);
        for round in 0..2000 {
            let (mut r, t) = (Registrar::default(), Instant::now());
            let ue = if round % 3 == 0 {
                "2001:db8::7"
            } else {
                "10.1.2.3"
            };
            let mut p = pending_to(1000, ue, t);
            let (auth, encr) = suites[round % suites.len()];
            p.set.suite =
                derive_suite(auth, encr, &Ck::new([round as u8; 16]), &Ik::new([7; 16])).unwrap();
            p.security_server = match round % 4 {
                0 => None,
                _ => {
                    let mut m = SecMechanism::new(&text(&mut rng, 12));
                    for _ in 0..rng.gen_range(0..10) {
                        let (n, v) = (text(&mut rng, 8), text(&mut rng, 8));
                        m = if rng.gen_bool(0.5) {
                            m.with_str(&n, &v)
                        } else {
                            m.with_u32(&n, rng.gen())
                        };
                    }
                    Some(m)
                }
            };
            let impus: Vec<String> = (0..rng.gen_range(0..4))
                .map(|_| text(&mut rng, 30))
                .collect();
            let key = text(&mut rng, 20);
            r.challenged(&key, &text(&mut rng, 20), &impus, p, MAX);
            let contact = text(&mut rng, 40);
            r.complete(&key, 1001, contact, Transport::Tcp, t + secs(600));
            let owned = r.persisted(&key, t, wall).unwrap();
            let (_, rec) = r.encoded(&key, t, wall).unwrap();
            assert!(record::decode(&rec).unwrap() == owned, "round {round}");
            assert!(
                *record::encode_owned(&owned).unwrap() == *rec,
                "round {round}"
            );
            let json = serde_json::to_vec(&owned).unwrap();
            let old: PersistedRegistration = serde_json::from_slice(&json).unwrap();
            assert!(old == owned, "round {round}");
            if round % 50 == 0 {
                for cut in 0..rec.len() {
                    assert!(record::decode(&rec[..cut]).is_none(), "round {round} {cut}");
                }
            }
        }
    }

    /// Key hygiene: a record longer than 2 KiB (many IMPUs, a long Contact) is written into
    /// a buffer allocated once from the record's size, never reallocated mid-write (which
    /// would leave a copy of the keys in freed memory), a Contact full of JSON's escapes
    /// too; both decode as the owned form.
    #[test]
    fn a_long_record_is_never_reallocated_while_written() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        let wall = std::time::UNIX_EPOCH + secs(1_000_000);
        let p = pending_with_keys(1000, t);
        let impus: Vec<String> = (0..60)
            .map(|i| format!("sip:+1555010{i:04}@ims.mnc001.mcc001.3gppnetwork.org"))
            .collect();
        r.challenged(KEY, KEY, &impus, p, MAX);
        for contact in [
            format!("<sip:a@ue;+sip.instance=\"{}\">", "x".repeat(3000)),
            "<sip:a@ue;p=\"\\\">".repeat(300),
        ] {
            r.complete(KEY, 1001, contact, Transport::Udp, t + secs(600));
            let reg = &r.regs[KEY];
            let active = reg.state.active().unwrap();
            let ms = unix_ms(wall + secs(600));
            let buf = record::encode(KEY, reg, active, ms);
            assert!(buf.len() > 2048, "{}", buf.len());
            assert_eq!(buf.grows(), 0);
            assert!(buf.capacity() - buf.len() < 64, "sized up front");
            let owned = r.persisted(KEY, t, wall).unwrap();
            assert!(record::decode(&buf).unwrap() == owned);
        }
    }

    /// The turn's shared-buffer records (`take_changes_into`, the wall clock's distance from
    /// the epoch taken once a turn) carry the expiry `take_changes` writes, to the
    /// millisecond: `(wall + left)` floored, not `wall` and `left` floored apart (here 0.6 ms
    /// of each make 1.2 ms: one millisecond more than the parts floored).
    #[test]
    fn a_turns_records_expire_at_the_millisecond_of_wall_plus_left() {
        let t = Instant::now();
        let wall = std::time::UNIX_EPOCH + secs(1_000_000) + Duration::from_nanos(600_000);
        let now = t + Duration::from_nanos(400_000);
        let mut one = Registrar::default();
        one.track_changes();
        registered(&mut one, t);
        let mut set = ChangeSet::default();
        one.take_changes_into(now, wall, &mut set);
        let mut into = set.iter().map(|c| match c {
            ChangeRef::Put { record, .. } => record::decode(record).unwrap(),
            ChangeRef::Delete(k) => panic!("{k} deleted"),
        });
        let from_into = into.next().unwrap();
        assert!(into.next().is_none());
        // 1,000,000.0006 s + 599.9996 s = 1,000,600.0002 s.
        assert_eq!(from_into.expires_unix_ms, 1_000_600_000);
        let mut other = Registrar::default();
        other.track_changes();
        registered(&mut other, t);
        let owned = decoded(other.take_changes(now, wall).pop());
        assert_eq!(owned.expires_unix_ms, from_into.expires_unix_ms);
    }

    /// Issue 14: only registered bindings over SAs reach the store, every change to one is
    /// reported once, and a stored binding comes back after a restart as it was (set, keys,
    /// Security-Server, contact, remaining lifetime), unless it expired meanwhile.
    #[test]
    fn registered_bindings_are_persisted_and_restored_until_they_expire() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        let wall = std::time::UNIX_EPOCH + secs(1_000_000);
        // Without a store nothing is kept.
        registered(&mut r, t);
        assert!(!r.has_changes());
        r.remove(KEY);
        r.track_changes();
        r.challenged(KEY, KEY, &[], pending(500, t), MAX);
        assert!(!r.has_changes(), "a challenge is not kept");
        r.fail_pending(KEY, 500);
        registered(&mut r, t);
        let mut changes = r.take_changes(t, wall);
        assert!(r.take_changes(t, wall).is_empty(), "reported once");
        assert_eq!(changes.len(), 1);
        let rec = decoded(changes.pop());
        assert_eq!(rec.expires_unix_ms, 1_000_600_000);
        assert_eq!((rec.set.spi_pc, rec.set.spi_ps), (1000, 1001));
        assert!(!format!("{rec:?}").contains(&hex::encode([2u8; 16])));
        // Refreshed: reported again with the new lifetime.
        r.refresh(KEY, None, t + secs(900));
        let refreshed = decoded(r.take_changes(t, wall).pop());
        assert_eq!(refreshed.expires_unix_ms, 1_000_900_000);

        // A restart 100 s later on another monotonic clock.
        let (t2, wall2) = (t + secs(5), wall + secs(100));
        let mut back = Registrar::default();
        back.track_changes();
        back.restore(&refreshed, t2, wall2).unwrap();
        let b = back.binding(KEY).unwrap();
        assert_eq!(b.expires_at, t2 + secs(800));
        assert_eq!((b.contact, b.proto), ("sip:a@ue", Transport::Tcp));
        let (was, is) = (r.binding(KEY).unwrap().set, b.set);
        assert_eq!(
            (is.spi_pc, is.spi_ps, is.spi_uc, is.spi_us, is.ue, is.local),
            (was.spi_pc, was.spi_ps, was.spi_uc, was.spi_us, was.ue, was.local)
        );
        assert_eq!(
            (is.port_pc, is.port_ps, is.port_uc, is.port_us),
            (was.port_pc, was.port_ps, was.port_uc, was.port_us)
        );
        assert_eq!(is.suite.keys.integ_key, was.suite.keys.integ_key);
        assert_eq!(
            (is.suite.auth, is.suite.encr),
            (was.suite.auth, was.suite.encr)
        );
        assert_eq!(
            back.active_security_server(KEY),
            Some(Some(&SecMechanism::new("ipsec-3gpp")))
        );
        assert_eq!(back.set_of_spi(1001), Some((KEY, SetKind::Active)));
        assert!(!back.has_changes(), "the store has it already");
        assert_eq!(
            back.restore(&refreshed, t2, wall2),
            Err(RestoreError::Duplicate)
        );
        assert_eq!((back.registered(), back.registered_by_walk()), (1, 1));
        // Expired while the daemon was down.
        assert_eq!(
            Registrar::default().restore(&refreshed, t2, wall + secs(900)),
            Err(RestoreError::Expired)
        );
        let mut broken = refreshed.clone();
        broken.set.auth = "rot13".into();
        assert!(matches!(
            Registrar::default().restore(&broken, t2, wall2),
            Err(RestoreError::Malformed(_))
        ));
        // De-registered: deleted.
        back.remove(KEY);
        assert!(matches!(
            back.take_changes(t2, wall2).as_slice(),
            [RegistrationChange::Delete(k)] if k == KEY
        ));
    }

    #[test]
    fn removal_returns_active_old_then_pending() {
        let (mut r, t) = (Registrar::default(), Instant::now());
        registered(&mut r, t);
        r.challenged(KEY, KEY, &[], pending(2000, t), MAX);
        r.complete(KEY, 2000, "sip:a@ue".into(), Transport::Tcp, t + secs(600));
        r.challenged(KEY, KEY, &[], pending(3000, t), MAX);
        assert_eq!(spis(&r.remove(KEY)), [2000, 1000, 3000]);
        assert!([1000, 2000, 3000, 3001]
            .iter()
            .all(|&s| r.key_of_spi(s).is_none()));
        assert!(r.view(t).is_empty());
        assert_eq!(r.pending_total(), 0);
    }

    /// The count of registered bindings kept on change equals a walk of every registration
    /// after each of 5,000 random challenges (from two addresses), answers, failures,
    /// expiries, first uses of new sets and removals of five IMPIs.
    #[test]
    fn the_registered_count_is_the_walks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        let t = Instant::now();
        let mut r = Registrar::default();
        let keys = ["a@x", "b@x", "c@x", "d@x", "e@x"];
        let mut spi = 1000;
        for step in 0..5_000u64 {
            let key = keys[rng.gen_range(0..keys.len())];
            let now = t + secs(step);
            let sets: Vec<u32> = (r.regs.get(key))
                .map(|g| g.state.pending().iter().map(|p| p.set.spi_pc).collect())
                .unwrap_or_default();
            match rng.gen_range(0..7) {
                0 | 1 => {
                    spi += 2;
                    let ue = ["10.0.0.2", "10.0.0.3"][rng.gen_range(0..2)];
                    let deadline = now + secs(rng.gen_range(1..40));
                    r.challenged(key, key, &[], pending_to(spi, ue, deadline), MAX);
                }
                2 | 3 => {
                    if let Some(&s) = sets.first() {
                        let until = now + secs(rng.gen_range(1..60));
                        r.complete(key, s + 1, "sip:a@ue".into(), Transport::Tcp, until);
                    }
                }
                4 => {
                    if let Some(&s) = sets.last() {
                        r.fail_pending(key, s);
                    }
                }
                5 => {
                    if let Some(Expiry::Ended) = r.expire(key, now) {
                        r.remove(key);
                    }
                }
                _ => {
                    if rng.gen_range(0..4) == 0 {
                        r.remove(key);
                    } else if let Some(b) = r.binding(key) {
                        let active = b.set.spi_ps;
                        r.note_traffic(key, active);
                    }
                }
            }
            assert_eq!(r.registered(), r.registered_by_walk(), "step {step}");
        }
    }
}
