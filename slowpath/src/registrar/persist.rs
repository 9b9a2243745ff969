//! Registrations as the registration store keeps them across a restart (issue 14): what the
//! registrar hands out when a binding changes ([`RegistrationChange`]) and takes back at start
//! ([`Registrar::restore`]). Only registered bindings over SAs are kept: a challenge is
//! answered again (the SQN journal keeps it fresh), and a flow-bound registration (no
//! sec-agree) lives on a connection that a restart ends. The form holds CK/IK-derived keys:
//! they are zeroized on drop and never printed.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use akagate_proto::ipc::{SaSet, Transport};
use akagate_proto::suite::{AuthAlg, EncrAlg, SaKeys, Suite};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::state::{Active, RegState};
use super::{Registrar, Registration, SaSetExt};
use crate::secagree::SecMechanism;

/// One registered binding with its active SA set, in a form a store can serialize.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PersistedRegistration {
    /// The registrar's key: the lower-cased IMPI.
    pub key: String,
    /// The private identity as the UE sent it.
    pub impi: String,
    /// The public identities (the first is the default one).
    pub impus: Vec<String>,
    /// The registered Contact URI.
    pub contact: String,
    /// The transport the UE registered over (`udp`, `tcp`).
    pub transport: String,
    /// When the binding expires, in milliseconds since the Unix epoch (wall clock: the
    /// monotonic clock does not survive a restart).
    pub expires_unix_ms: u64,
    /// The Security-Server agreed for the set (mechanism name and parameters), which
    /// Security-Verify must keep echoing (TS 33.203 7.2, RFC 3329 2.3.1).
    pub security_server: Option<(String, Vec<(String, String)>)>,
    /// The active SA set.
    pub set: PersistedSet,
}

/// An SA set: addresses, SPIs, ports, algorithms and keys (TS 33.203 7.1).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PersistedSet {
    /// The UE's address.
    pub ue: IpAddr,
    /// Our address.
    pub local: IpAddr,
    /// `alg` token.
    pub auth: String,
    /// `ealg` token.
    pub encr: String,
    /// Integrity key, hex.
    pub integ_key: String,
    /// Encryption key, hex.
    pub encr_key: String,
    /// GCM/GMAC salt, hex.
    pub salt: String,
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
}

impl Drop for PersistedSet {
    fn drop(&mut self) {
        self.integ_key.zeroize();
        self.encr_key.zeroize();
        self.salt.zeroize();
    }
}

impl core::fmt::Debug for PersistedSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the keys.
        f.debug_struct("PersistedSet")
            .field("ue", &self.ue)
            .field("auth", &self.auth)
            .field("encr", &self.encr)
            .field("spi_pc", &self.spi_pc)
            .field("spi_ps", &self.spi_ps)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for PersistedRegistration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PersistedRegistration")
            .field("key", &self.key)
            .field("expires_unix_ms", &self.expires_unix_ms)
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

/// What changed about a registration since the store last heard of it.
#[derive(Debug)]
pub enum RegistrationChange {
    /// Registered (or refreshed, or registered again over a new set): keep this.
    Put(Box<PersistedRegistration>),
    /// The same, already encoded (what the running registrar hands out: no owned copy of
    /// the registration is built).
    Encoded(EncodedRegistration),
    /// No longer registered (de-registered, expired, removed), or registered flow-bound:
    /// forget the key.
    Delete(String),
}

/// A registration as the store's binary record of its [`PersistedRegistration`]
/// (`registrar/record.rs`, read back by [`decode_record`](super::decode_record)), written
/// straight from the registrar's state. Zeroized on drop (it holds the SA keys); never
/// printed.
pub struct EncodedRegistration {
    /// The registrar's key (as [`PersistedRegistration::key`]).
    pub key: String,
    /// The set's inbound SPI at the protected server port (as [`PersistedSet::spi_ps`]).
    pub spi_ps: u32,
    /// The record.
    pub record: Zeroizing<Vec<u8>>,
}

impl Drop for EncodedRegistration {
    fn drop(&mut self) {
        // Emptied first, so the `Zeroizing` drop that follows wipes the whole allocation as
        // spare capacity, one `memset` behind an optimisation barrier ([`wipe_on_drop`]),
        // instead of a volatile write per byte (~0.9k instructions a registration).
        wipe_on_drop(&mut self.record);
    }
}

/// Prepares `buf` for its `Zeroizing` drop to wipe it word-wise: `zeroize` clears a `Vec`'s
/// elements one volatile byte write each, but its spare capacity (here all of it, the
/// length being 0) with one `memset` and an optimisation barrier. The bytes are wiped all
/// the same, by the drop that follows.
pub(super) fn wipe_on_drop(buf: &mut Zeroizing<Vec<u8>>) {
    buf.clear();
}

impl core::fmt::Debug for EncodedRegistration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EncodedRegistration")
            .field("key", &self.key)
            .field("spi_ps", &self.spi_ps)
            .finish_non_exhaustive()
    }
}

/// The registrations' changes as the store must now hold them, of one turn or of several
/// (a failed commit keeps them and the next turn's are appended, in order): each registered
/// binding's record ([`EncodedRegistration`]'s) back to back in one zeroizing buffer that is
/// reused from turn to turn, so a record costs no allocation, free and wipe of its own; each
/// other key deleted. Written by [`Registrar::take_changes_into`]. Never printed (the buffer
/// holds SA keys); the buffer is zeroized when cleared and on drop.
#[derive(Default)]
pub struct ChangeSet {
    /// The records, back to back.
    records: super::SecretBuf,
    /// The changes in order: each key, and for a registration its set's `spi_ps` and where
    /// its record is in `records`.
    changes: Vec<(String, Option<RecordAt>)>,
}

/// A registration's record in a [`ChangeSet`]: its set's `spi_ps` and where the record is
/// in the shared buffer.
type RecordAt = (u32, core::ops::Range<usize>);

/// One change of a [`ChangeSet`], borrowed.
#[derive(Clone, Copy)]
pub enum ChangeRef<'a> {
    /// Keep this record (as [`RegistrationChange::Encoded`]).
    Put {
        /// The registrar's key.
        key: &'a str,
        /// The set's inbound SPI at the protected server port.
        spi_ps: u32,
        /// The record.
        record: &'a [u8],
    },
    /// Forget the key (as [`RegistrationChange::Delete`]).
    Delete(&'a str),
}

impl ChangeSet {
    /// The changes, in order.
    pub fn iter(&self) -> impl Iterator<Item = ChangeRef<'_>> + '_ {
        self.changes.iter().map(|(key, put)| match put {
            Some((spi_ps, at)) => ChangeRef::Put {
                key,
                spi_ps: *spi_ps,
                record: self.records.get(at.clone()).unwrap_or_default(),
            },
            None => ChangeRef::Delete(key),
        })
    }

    /// Adds a put of `record` (a registration's, as [`EncodedRegistration::record`]) for
    /// `key`, copied into the shared buffer: for tools and tests, and for records made
    /// elsewhere.
    pub fn push_encoded(&mut self, key: &str, spi_ps: u32, record: &[u8]) {
        let start = self.records.len();
        self.records.extend_from_slice(record);
        let at = start..self.records.len();
        self.changes.push((key.to_string(), Some((spi_ps, at))));
    }

    /// Adds a deletion of `key`.
    pub fn push_delete(&mut self, key: &str) {
        self.changes.push((key.to_string(), None));
    }

    /// How many changes there are.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Forgets the changes (the store holds them now): the records' bytes are zeroized, the
    /// buffer and the list kept for the next ones.
    pub fn clear(&mut self) {
        self.records.wipe();
        self.changes.clear();
    }
}

impl core::fmt::Debug for ChangeSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChangeSet")
            .field("changes", &self.changes.len())
            .finish_non_exhaustive()
    }
}

/// Why a stored registration was not restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// Its binding expired while the daemon was down.
    #[error("expired")]
    Expired,
    /// A field does not parse (algorithm, key, transport).
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The IMPI or one of its SPIs is already restored.
    #[error("duplicate")]
    Duplicate,
}

impl PersistedSet {
    fn of(set: &SaSet) -> Self {
        PersistedSet {
            ue: set.ue,
            local: set.local,
            auth: set.suite.auth.token().to_string(),
            encr: set.suite.encr.token().to_string(),
            integ_key: hex::encode(&set.suite.keys.integ_key),
            encr_key: hex::encode(&set.suite.keys.encr_key),
            salt: hex::encode(set.suite.keys.salt),
            spi_pc: set.spi_pc,
            spi_ps: set.spi_ps,
            spi_uc: set.spi_uc,
            spi_us: set.spi_us,
            port_pc: set.port_pc,
            port_ps: set.port_ps,
            port_uc: set.port_uc,
            port_us: set.port_us,
        }
    }

    /// The SA set again.
    pub fn to_set(&self) -> Result<SaSet, RestoreError> {
        let bad = RestoreError::Malformed;
        let auth = AuthAlg::from_token(&self.auth).ok_or(bad("alg"))?;
        let encr = EncrAlg::from_token(&self.encr).ok_or(bad("ealg"))?;
        let integ_key = hex::decode(&self.integ_key).map_err(|_| bad("integrity key"))?;
        let encr_key = hex::decode(&self.encr_key).map_err(|_| bad("encryption key"))?;
        let mut salt = [0u8; 4];
        hex::decode_to_slice(&self.salt, &mut salt).map_err(|_| bad("salt"))?;
        Ok(SaSet {
            ue: self.ue,
            local: self.local,
            suite: Suite {
                auth,
                encr,
                keys: SaKeys {
                    integ_key,
                    encr_key,
                    salt,
                },
            },
            spi_pc: self.spi_pc,
            spi_ps: self.spi_ps,
            spi_uc: self.spi_uc,
            spi_us: self.spi_us,
            port_pc: self.port_pc,
            port_ps: self.port_ps,
            port_uc: self.port_uc,
            port_us: self.port_us,
        })
    }
}

/// Milliseconds since the Unix epoch of `wall` (0 before it), as stored.
pub fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

impl Registrar {
    /// Notes that `key`'s binding changed (the store must hear of it), if tracking.
    pub(super) fn changed(&mut self, key: &str) {
        if self.tracking {
            self.changed.insert(key.to_string());
        }
        if self.directory.is_some() {
            self.unpublished.insert(key.to_string());
        }
    }

    /// Starts keeping the changed bindings for [`Registrar::take_changes`] (a store is
    /// attached).
    pub fn track_changes(&mut self) {
        self.tracking = true;
    }

    /// The bindings changed since the last call, as the store must now hold them: each
    /// registered binding over SAs as it is now (`now` and `wall` are the same instant on the
    /// monotonic and the wall clock, to date the expiry), anything else deleted.
    pub fn take_changes(&mut self, now: Instant, wall: SystemTime) -> Vec<RegistrationChange> {
        // Drained, not taken: the set keeps its table for the next turn's changes (a set
        // taken empty grew again, rehashing, in every turn).
        let mut keys: Vec<String> = self.changed.drain().collect();
        keys.sort_unstable();
        keys.into_iter()
            .map(|key| match self.encoded(&key, now, wall) {
                Some((spi_ps, record)) => RegistrationChange::Encoded(EncodedRegistration {
                    key,
                    spi_ps,
                    record,
                }),
                None => RegistrationChange::Delete(key),
            })
            .collect()
    }

    /// [`Registrar::take_changes`] appended to `set` (the records written into its shared
    /// buffer), in no particular order (each key is there once, and the store's order of
    /// different keys does not matter).
    pub fn take_changes_into(&mut self, now: Instant, wall: SystemTime, set: &mut ChangeSet) {
        let Registrar { changed, regs, .. } = self;
        // The wall clock's distance from the epoch once, not per record (the same
        // milliseconds as `unix_ms(wall + left)`, which a clock before the epoch still takes).
        let since_epoch = wall.duration_since(UNIX_EPOCH).ok();
        let expiry_ms = |left: Duration| match since_epoch.and_then(|d| d.checked_add(left)) {
            Some(at) => at.as_millis().min(u128::from(u64::MAX)) as u64,
            None => unix_ms(wall + left),
        };
        for key in changed.drain() {
            let active = regs
                .get(key.as_str())
                .and_then(|reg| Some((reg, reg.state.active()?)))
                .filter(|(_, active)| !active.set.is_unprotected());
            let put = active.map(|(reg, active)| {
                let left = active.expires_at.saturating_duration_since(now);
                let at = super::record::encode_into(
                    &key,
                    reg,
                    active,
                    expiry_ms(left),
                    &mut set.records,
                );
                (active.set.spi_ps, at)
            });
            set.changes.push((key, put));
        }
    }

    /// Whether bindings changed since [`Registrar::take_changes`].
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Registration `key` encoded as the store keeps it (the record of what
    /// `Registrar::persisted` makes, written from the registrar's state), with its set's
    /// `spi_ps`, if it is registered over SAs.
    pub(super) fn encoded(
        &self,
        key: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Option<(u32, Zeroizing<Vec<u8>>)> {
        let reg = self.regs.get(key)?;
        let active = reg.state.active()?;
        let set = &active.set;
        if set.is_unprotected() {
            return None;
        }
        let left = active.expires_at.saturating_duration_since(now);
        let record = super::record::encode(key, reg, active, unix_ms(wall + left)).into_inner();
        Some((set.spi_ps, record))
    }

    /// Every registration registered over SAs in its owned form (what the store's records
    /// decode to), by key: for tests and tools; the running daemon writes
    /// [`RegistrationChange::Encoded`].
    pub fn persisted_all(&self, now: Instant, wall: SystemTime) -> Vec<PersistedRegistration> {
        let mut all: Vec<_> = self
            .regs
            .keys()
            .filter_map(|k| self.persisted(k, now, wall))
            .collect();
        all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Registration `key` as the store keeps it, if it is registered over SAs.
    pub(super) fn persisted(
        &self,
        key: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Option<PersistedRegistration> {
        let reg = self.regs.get(key)?;
        let active = reg.state.active()?;
        if active.set.is_unprotected() {
            return None;
        }
        let left = active.expires_at.saturating_duration_since(now);
        Some(PersistedRegistration {
            key: key.to_string(),
            impi: reg.impi.to_string(),
            impus: reg.impus.to_vec(),
            contact: active.contact.clone(),
            transport: active.proto.token().to_string(),
            expires_unix_ms: unix_ms(wall + left),
            security_server: active.security_server.as_ref().map(|m| {
                let params = m.params().map(|(k, v)| (k.to_string(), v.to_string()));
                (m.name.to_string(), params.collect())
            }),
            set: PersistedSet::of(&active.set),
        })
    }

    /// Takes back a stored registration after a restart: registered over its set until its
    /// expiry (dated against `wall`, which is `now` on the wall clock), its SPIs leading to
    /// it. The caller has reserved the SPIs and installs the set in the fast path, and arms
    /// the registration's deadline. Not a change: the store holds it already.
    pub fn restore(
        &mut self,
        rec: &PersistedRegistration,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), RestoreError> {
        let left = rec.expires_unix_ms.saturating_sub(unix_ms(wall));
        if left == 0 {
            return Err(RestoreError::Expired);
        }
        let set = rec.set.to_set()?;
        let proto =
            Transport::from_token(&rec.transport).ok_or(RestoreError::Malformed("transport"))?;
        if rec.key.is_empty() || set.is_unprotected() {
            return Err(RestoreError::Malformed("registration"));
        }
        if self.regs.contains_key(rec.key.as_str())
            || self.by_spi.contains_key(&set.spi_pc)
            || self.by_spi.contains_key(&set.spi_ps)
            || set.spi_pc == set.spi_ps
        {
            return Err(RestoreError::Duplicate);
        }
        let security_server = rec.security_server.as_ref().map(|(name, params)| {
            params
                .iter()
                .fold(SecMechanism::new(name), |m, (k, v)| m.with(k, v))
        });
        let key: std::sync::Arc<str> = rec.key.as_str().into();
        for spi in [set.spi_pc, set.spi_ps] {
            self.by_spi.insert(spi, key.clone());
        }
        if self.directory.is_some() {
            self.unpublished.insert(rec.key.clone());
        }
        let active = Active {
            set,
            security_server,
            contact: rec.contact.clone(),
            proto,
            expires_at: now + Duration::from_millis(left),
        };
        self.regs.insert(
            key,
            Box::new(Registration {
                impi: rec.impi.as_str().into(),
                impus: rec.impus.as_slice().into(),
                state: RegState::Registered { active, old: None },
                armed: None,
            }),
        );
        self.active += 1;
        Ok(())
    }
}
