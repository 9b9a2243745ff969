//! The subscriber store: lookup by IMPI/IMPU, AKA vector generation with the SQN advanced and
//! queued for persistence ([`PersistRecord`]), and re-synchronisation from AUTS
//! (TS 33.102 6.3.3, 6.3.5). No file is written here; see [`super::persist`].

use akagate_proto::hash::{keyed_map, keyed_map_with_capacity, KeyedMap};
use akagate_proto::swar;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use thiserror::Error;
use zeroize::Zeroize;

use super::index::ImpiIndex;
use super::persist::{parse_sqn_hex, PersistRecord, PersistTicket, SqnState};
use super::record::{parse_csv, parse_toml, SubscriberRecord};
use crate::aka::autn::{AuthVector, Auts};
use crate::aka::milenage::Milenage;
use crate::aka::sqn::{Sqn, SqnGenerator, SqnPolicy};

/// SEQ steps reserved by one durable SQN record ([`Hss::challenge`]) or by the start
/// ([`Hss::reserve_sqn_blocks`]): challenges up to the reserved bound need no write. 1,024
/// is far below the USIM's Δ (2^28, TS 33.102 C.2.1), so a restart's jump of at most one
/// block is always accepted, and a 43-bit SEQ (IND of 5 bits) survives 2^33 restarts;
/// with one registration a UE every hour, one record per 1,024 challenges (about six weeks).
pub const SQN_BLOCK: u64 = 1024;

/// A subscriber's identities as the source knows them, shared with it (a registration keeps
/// them without a copy per REGISTER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identities {
    /// The private identity, as provisioned.
    pub impi: Arc<str>,
    /// The public identities; the first is the default one.
    pub impus: Arc<[String]>,
}

/// HSS errors. None of them carries key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HssError {
    /// The subscriber or state file does not parse.
    #[error("parse error at line {line}: {reason}")]
    Parse {
        /// 1-based line, 0 when unknown.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A key or parameter field of a subscriber is malformed (the value is never shown).
    #[error("subscriber {impi}: bad {field}")]
    BadField {
        /// The subscriber.
        impi: String,
        /// The field name (`k`, `opc`, `op`, `amf`, `sqn`, `impi`).
        field: &'static str,
    },
    /// Two records with the same IMPI, or an IMPU shared by two IMPIs.
    #[error("duplicate identity {0}")]
    Duplicate(String),
    /// No such IMPI.
    #[error("unknown IMPI")]
    UnknownImpi,
    /// The subscriber's SEQ counter is exhausted.
    #[error("SQN exhausted")]
    SqnExhausted,
    /// AUTS failed its MAC-S check (TS 33.102 6.3.5).
    #[error("AUTS MAC-S check failed")]
    AutsMacFailure,
    /// The SQN state could not be made durable and has not recovered: no vector may be
    /// handed out (TS 33.102 6.3.2).
    #[error("SQN state not durable")]
    NotDurable,
}

/// One provisioned subscriber. `Debug` shows identities only.
pub struct Subscriber {
    /// Shared with the registrations of this subscriber ([`Identities`]): no copy per
    /// REGISTER.
    impi: Arc<str>,
    impu: Arc<[String]>,
    milenage: Milenage,
    amf: [u8; 2],
    sqn: SqnGenerator,
    /// The subscriber's SQN bound: the largest SQN ever recovered, provisioned, reserved at
    /// start or queued for a write. With SQN state, every SQN handed out is at most it, and
    /// a restart resumes above it, so every checkpoint writes it (a resync may move SEQ_HE
    /// below it). Challenges up to its SEQ queue no record.
    sqn_floor: u64,
    /// The record that raised [`Subscriber::sqn_floor`] last (`None`: durable since the
    /// start): a challenge under the bound waits for it.
    floor_ticket: Option<PersistTicket>,
}

impl core::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Subscriber")
            .field("impi", &self.impi)
            .field("impu", &self.impu)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// The private identity.
    pub fn impi(&self) -> &str {
        &self.impi
    }

    /// The public identities; the first is the default one.
    pub fn impu(&self) -> &[String] {
        &self.impu
    }

    /// Both identities, shared (a registration keeps them without copying).
    pub fn identities(&self) -> Identities {
        Identities {
            impi: self.impi.clone(),
            impus: self.impu.clone(),
        }
    }

    /// The last SEQ handed out (SEQ_HE, TS 33.102 C.1.1).
    pub fn seq_he(&self) -> u64 {
        self.sqn.seq_he()
    }
}

fn hex_array<const N: usize>(
    impi: &str,
    field: &'static str,
    s: &str,
) -> Result<[u8; N], HssError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| HssError::BadField {
        impi: impi.to_string(),
        field,
    })?;
    Ok(out)
}

/// The normalised lookup key of an IMPI or IMPU.
/// The map key of identity `id`: trimmed and lower-cased, borrowed when it is already so
/// (an identity is looked up twice per REGISTER; most arrive lower-case).
fn key(id: &str) -> std::borrow::Cow<'_, str> {
    let id = trimmed(id);
    if has_ascii_uppercase(id) {
        std::borrow::Cow::Owned(id.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(id)
    }
}

/// `id.trim()`, without its walk over both ends when they are plainly not white space (an
/// ASCII byte above the space: no character `trim` removes starts with one).
#[inline]
fn trimmed(id: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x80);
    if plain(id.as_bytes().first()) && plain(id.as_bytes().last()) {
        id
    } else {
        id.trim()
    }
}

/// Whether `s` holds an ASCII upper-case letter, eight bytes a step (an IMPI of about 50
/// bytes is looked at a few times a REGISTER, almost always lower-case already).
pub(crate) fn has_ascii_uppercase(s: &str) -> bool {
    let b = s.as_bytes();
    let n = b.len();
    if n < 8 {
        return b.iter().any(u8::is_ascii_uppercase);
    }
    let upper = |at: usize| {
        let w = swar::word_at(b, at).unwrap_or(0);
        swar::lower_ascii_word(w) != w
    };
    // The whole words, then the last eight bytes (overlapping when `n` is not a multiple
    // of eight).
    (0..n / 8).any(|i| upper(8 * i)) || upper(n - 8)
}

/// The embedded HSS.
#[derive(Debug)]
pub struct Hss {
    subs: Vec<Subscriber>,
    /// Each subscriber's index by its IMPI, the key read from the subscriber.
    by_impi: ImpiIndex,
    /// The subscriber found last by [`Hss::subscriber`]: a challenge of the same IMPI (its
    /// identity, handed back) is the same subscriber without a look-up. A hint, checked.
    recent: AtomicUsize,
    by_impu: KeyedMap<String, usize>,
    policy: SqnPolicy,
    /// SQN records not yet taken by the owner of the disk (`None`: SQNs are not persisted).
    persist: Option<Outbox>,
    /// SQN state of IMPIs not provisioned (any more), kept so a checkpoint does not lose it.
    foreign: BTreeMap<String, u64>,
    /// SEQ steps a crossing challenge reserves ([`SQN_BLOCK`]).
    sqn_block: u64,
    /// The record the last challenge's vector waits for ([`Hss::challenge_ticket`]).
    challenge_ticket: Option<PersistTicket>,
    /// With slowpath shards: every IMPU (lookup key) -> its IMPI, of all shards, shared
    /// read-only, so a shard finds the owner of a request's target ([`Hss::impi_of_impu`]).
    all_impus: Option<std::sync::Arc<HashMap<String, String>>>,
}

/// The SQN records of an HSS whose state is persisted.
#[derive(Debug, Default)]
struct Outbox {
    /// Records not yet taken by [`Hss::poll_persist`], oldest first.
    queue: VecDeque<PersistRecord>,
    /// The ticket of the last record queued.
    last: PersistTicket,
    /// Persistence failed and has not recovered: challenges are refused.
    failed: bool,
}

impl Default for PersistTicket {
    fn default() -> Self {
        PersistTicket::ZERO
    }
}

impl Hss {
    /// Builds the store from file records (no SQN persistence until [`Hss::with_sqn_state`]).
    pub fn from_records(records: &[SubscriberRecord]) -> Result<Self, HssError> {
        Self::build(
            records.len(),
            records.iter().map(std::borrow::Cow::Borrowed),
        )
    }

    /// [`Hss::from_records`], the records moved in: their identities become the store's
    /// without a copy, and each record is dropped (its keys zeroized) as soon as it is read
    /// (issue 10: a million subscribers at start).
    pub fn from_records_owned(records: Vec<SubscriberRecord>) -> Result<Self, HssError> {
        Self::build(
            records.len(),
            records.into_iter().map(std::borrow::Cow::Owned),
        )
    }

    /// The store of `n` records, borrowed or owned.
    fn build<'a>(
        n: usize,
        records: impl Iterator<Item = std::borrow::Cow<'a, SubscriberRecord>>,
    ) -> Result<Self, HssError> {
        let policy = SqnPolicy::default();
        let mut hss = Hss {
            subs: Vec::with_capacity(n),
            by_impi: ImpiIndex::with_capacity(n),
            recent: AtomicUsize::new(0),
            // Two IMPUs a subscriber is the usual provisioning: one allocation at start.
            by_impu: keyed_map_with_capacity(2 * n),
            policy,
            persist: None,
            foreign: BTreeMap::new(),
            sqn_block: SQN_BLOCK,
            challenge_ticket: None,
            all_impus: None,
        };
        for mut r in records {
            let impi = r.impi.trim();
            if impi.is_empty()
                || impi
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(HssError::BadField {
                    impi: impi.into(),
                    field: "impi",
                });
            }
            let mut k: [u8; 16] = hex_array(impi, "k", &r.k)?;
            let milenage = match (&r.opc, &r.op) {
                (Some(opc), None) => {
                    let mut opc: [u8; 16] = hex_array(impi, "opc", opc)?;
                    let m = Milenage::new(&k, &opc);
                    opc.zeroize();
                    m
                }
                (None, Some(op)) => {
                    let mut op: [u8; 16] = hex_array(impi, "op", op)?;
                    let m = Milenage::from_op(&k, &op);
                    op.zeroize();
                    m
                }
                _ => {
                    k.zeroize();
                    return Err(HssError::BadField {
                        impi: impi.into(),
                        field: "opc",
                    });
                }
            };
            k.zeroize();
            let amf = hex_array(impi, "amf", &r.amf)?;
            let sqn = parse_sqn_hex(r.sqn.trim()).ok_or_else(|| HssError::BadField {
                impi: impi.into(),
                field: "sqn",
            })?;
            let (seq, _) = policy.split(Sqn::from_bytes(sqn_bytes(sqn)));
            let gen = SqnGenerator::new(policy, seq).map_err(|_| HssError::SqnExhausted)?;
            let i = hss.subs.len();
            let subs = &hss.subs;
            match hss
                .by_impi
                .insert(impi, i, |j| subs.get(j).map_or("", |s| &s.impi))
            {
                Some(Ok(())) => {}
                Some(Err(_)) => return Err(HssError::Duplicate(impi.into())),
                None => {
                    return Err(HssError::Parse {
                        line: 0,
                        reason: "too many subscribers".into(),
                    })
                }
            }
            for u in &r.impu {
                if hss.by_impu.insert(key(u).into_owned(), i).is_some() {
                    return Err(HssError::Duplicate(u.clone()));
                }
            }
            let impi: Arc<str> = impi.into();
            let impu: Arc<[String]> = match &mut r {
                // Moved: the strings are the record's own.
                std::borrow::Cow::Owned(r) => std::mem::take(&mut r.impu).into(),
                std::borrow::Cow::Borrowed(r) => r.impu.as_slice().into(),
            };
            hss.subs.push(Subscriber {
                impi,
                impu,
                milenage,
                amf,
                sqn: gen,
                sqn_floor: sqn,
                floor_ticket: None,
            });
        }
        Ok(hss)
    }

    /// Loads a subscriber file: CSV if the name ends in `.csv`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Self, HssError> {
        let text = std::fs::read_to_string(path).map_err(|e| HssError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let records = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            parse_csv(&text)?
        } else {
            parse_toml(&text)?
        };
        drop(text);
        Self::from_records_owned(records)
    }

    /// Persists SQNs from here on, continuing from `state` (IMPI -> last SQN, as recovered
    /// from disk): each subscriber continues above the larger of the file's SQN and the
    /// recovered one (its bound), and a challenge that passes the subscriber's bound raises
    /// it by a block and queues a [`PersistRecord`] of the new bound ([`Hss::poll_persist`]).
    /// Nothing is reserved yet: the first challenge of each subscriber queues a record
    /// unless [`Hss::reserve_sqn_blocks`] follows. IMPIs of `state` that are not
    /// provisioned are kept for [`Hss::sqn_state`].
    pub fn with_sqn_state(mut self, state: SqnState) -> Result<Self, HssError> {
        for (impi, sqn) in state {
            let Some(s) = self.find(&impi).and_then(|i| self.subs.get_mut(i)) else {
                self.foreign.insert(impi, sqn);
                continue;
            };
            s.sqn_floor = s.sqn_floor.max(sqn);
            let (seq, _) = self.policy.split(Sqn::from_bytes(sqn_bytes(sqn)));
            if seq > s.sqn.seq_he() {
                s.sqn = SqnGenerator::new(self.policy, seq).map_err(|_| HssError::SqnExhausted)?;
            }
        }
        self.persist = Some(Outbox::default());
        Ok(self)
    }

    /// Reserves a block of SEQ above every subscriber's bound (after
    /// [`Hss::with_sqn_state`], at start): SEQ_HE resumes at the bound recovered, and the
    /// bound becomes SEQ_HE + the block, so the first [`SQN_BLOCK`] challenges of each
    /// subscriber queue no record. The caller must make [`Hss::sqn_state`] durable before
    /// the first challenge leaves (the daemon writes it as the snapshot of its start,
    /// `journal::open_shards_for`). A restart thus costs each subscriber at most one block.
    pub fn reserve_sqn_blocks(&mut self) {
        let policy = self.policy;
        for s in &mut self.subs {
            let floor_seq = seq_of(policy, s.sqn_floor);
            // Resume above the bound (a provisioned SQN or a recovered bound alike).
            if floor_seq > s.sqn.seq_he() {
                if let Ok(g) = SqnGenerator::new(policy, floor_seq) {
                    s.sqn = g;
                }
            }
            let bound = s.sqn.seq_he().saturating_add(self.sqn_block);
            s.sqn_floor = s.sqn_floor.max(block_end(policy, bound));
            s.floor_ticket = None;
        }
    }

    /// Sets the SEQ steps a challenge that passes its subscriber's bound reserves (at least
    /// 1: a record per challenge, as before blocks; tests).
    pub fn with_sqn_block(mut self, steps: u64) -> Self {
        self.sqn_block = steps.max(1);
        self
    }

    /// The ticket of the record the last [`Hss::challenge`]'s vector must wait for (the
    /// record that raised its subscriber's bound, durable or not), `None` if it may leave at
    /// once: no SQN state, or a bound durable since the start.
    pub fn challenge_ticket(&self) -> Option<PersistTicket> {
        self.challenge_ticket
    }

    /// Whether SQNs are persisted ([`Hss::with_sqn_state`]).
    pub fn persists_sqns(&self) -> bool {
        self.persist.is_some()
    }

    /// The oldest SQN record not yet taken, in the order the SQNs were handed out.
    pub fn poll_persist(&mut self) -> Option<PersistRecord> {
        self.persist.as_mut()?.queue.pop_front()
    }

    /// The ticket of the last record queued (`None` before the first, or without persistence).
    pub fn last_ticket(&self) -> Option<PersistTicket> {
        self.persist
            .as_ref()
            .map(|p| p.last)
            .filter(|&t| t != PersistTicket::ZERO)
    }

    /// Every record up to the latest one is durable (or the whole state was rewritten):
    /// challenges are handed out again if a failure had stopped them.
    pub fn on_durable(&mut self) {
        if let Some(p) = self.persist.as_mut() {
            p.failed = false;
        }
    }

    /// The records could not be made durable: until [`Hss::on_durable`], every challenge
    /// fails with [`HssError::NotDurable`].
    pub fn on_persist_failed(&mut self) {
        if let Some(p) = self.persist.as_mut() {
            p.failed = true;
        }
    }

    /// The whole SQN state (IMPI -> largest SQN ever handed out or recovered, provisioned or
    /// not), to rewrite the state on disk from memory (a checkpoint).
    pub fn sqn_state(&self) -> impl Iterator<Item = (&str, u64)> {
        self.subs
            .iter()
            .map(|s| (&*s.impi, s.sqn_floor))
            .chain(self.foreign.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are no subscribers.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// The subscriber with this IMPI.
    pub fn subscriber(&self, impi: &str) -> Option<&Subscriber> {
        let i = self.find(impi)?;
        self.recent.store(i, Ordering::Relaxed);
        self.subs.get(i)
    }

    /// The index of the subscriber with this IMPI (trimmed, ASCII case ignored).
    #[inline]
    fn find(&self, impi: &str) -> Option<usize> {
        let subs = &self.subs;
        (self.by_impi).find(trimmed(impi), |j| subs.get(j).map_or("", |s| &s.impi))
    }

    /// Splits the subscribers into `shards` HSSs (docs/ARCHITECTURE.md, "Slowpath shards"):
    /// shard `i` keeps the subscribers, with their SQN generators, and the unprovisioned SQN
    /// state whose IMPI `shard_of` maps to `i`, so no two shards ever hand out an SQN of the
    /// same subscriber. Every shard resolves any IMPU to its IMPI ([`Hss::impi_of_impu`])
    /// through one shared read-only map. Persistence stays on where it was on.
    pub fn into_shards(self, shards: usize, shard_of: impl Fn(&str) -> usize) -> Vec<Hss> {
        let shards = shards.max(1);
        let all_impus: HashMap<String, String> = (self.subs.iter())
            .flat_map(|s| {
                s.impu
                    .iter()
                    .map(|u| (key(u).into_owned(), s.impi.to_string()))
            })
            .collect();
        let all_impus = std::sync::Arc::new(all_impus);
        let persists = self.persist.is_some();
        let mut out: Vec<Hss> = (0..shards)
            .map(|_| Hss {
                subs: Vec::new(),
                by_impi: ImpiIndex::default(),
                recent: AtomicUsize::new(0),
                by_impu: keyed_map(),
                policy: self.policy,
                persist: persists.then(Outbox::default),
                foreign: BTreeMap::new(),
                sqn_block: self.sqn_block,
                challenge_ticket: None,
                all_impus: Some(all_impus.clone()),
            })
            .collect();
        for sub in self.subs {
            let Some(hss) = out.get_mut(shard_of(&sub.impi).min(shards - 1)) else {
                continue;
            };
            let i = hss.subs.len();
            let subs = &hss.subs;
            // Unique and fewer than before: accepted by the whole store's index.
            let _ = (hss.by_impi).insert(&sub.impi, i, |j| subs.get(j).map_or("", |s| &s.impi));
            for u in sub.impu.iter() {
                hss.by_impu.insert(key(u).into_owned(), i);
            }
            hss.subs.push(sub);
        }
        for (impi, sqn) in self.foreign {
            if let Some(hss) = out.get_mut(shard_of(&impi).min(shards - 1)) {
                hss.foreign.insert(impi, sqn);
            }
        }
        out
    }

    /// The IMPU (lower-cased) -> IMPI map of every shard, after [`Hss::into_shards`].
    pub fn impu_directory(&self) -> Option<std::sync::Arc<HashMap<String, String>>> {
        self.all_impus.clone()
    }

    /// The IMPI owning `impu`, whichever shard serves it.
    pub fn impi_of_impu(&self, impu: &str) -> Option<&str> {
        if let Some(s) = self.by_impu(impu) {
            return Some(s.impi());
        }
        self.all_impus
            .as_ref()?
            .get(&*key(impu))
            .map(String::as_str)
    }

    /// At the process's exit (the daemon's shutdown, [`crate::Core::release_at_exit`]): the
    /// IMPU index's keys (public identities, no secret; one allocation each) are left to the
    /// exit instead of freed one by one. The subscribers drop as usual (their keys zeroize
    /// themselves). The HSS answers no IMPU after this.
    pub(crate) fn forget_impu_index_at_exit(&mut self) {
        // An empty map under the same hasher: no fresh seed drawn (`getrandom`).
        let empty = KeyedMap::with_hasher(self.by_impu.hasher().clone());
        std::mem::forget(std::mem::replace(&mut self.by_impu, empty));
    }

    /// The subscriber owning this IMPU.
    pub fn by_impu(&self, impu: &str) -> Option<&Subscriber> {
        self.by_impu
            .get(&*key(impu))
            .and_then(|&i| self.subs.get(i))
    }

    /// The index of `impi`'s subscriber: the one [`Hss::subscriber`] found last when `impi`
    /// is its own IMPI (the same bytes in memory, as [`Identities`] hand them out), else
    /// looked up.
    fn index(&self, impi: &str) -> Result<usize, HssError> {
        let recent = self.recent.load(Ordering::Relaxed);
        if self
            .subs
            .get(recent)
            .is_some_and(|s| std::ptr::eq(&*s.impi, impi))
        {
            return Ok(recent);
        }
        self.find(impi).ok_or(HssError::UnknownImpi)
    }

    /// A fresh authentication vector for `impi` with the given RAND (TS 33.102 6.3.2). With
    /// persistence, the SQN's record is queued ([`Hss::poll_persist`]) and the vector must
    /// not leave the process before the record is durable; its ticket is the
    /// [`Hss::last_ticket`] then.
    pub fn challenge(&mut self, impi: &str, rand: [u8; 16]) -> Result<AuthVector, HssError> {
        let i = self.index(impi)?;
        if self.persist.as_ref().is_some_and(|p| p.failed) {
            return Err(HssError::NotDurable);
        }
        let s = self.subs.get_mut(i).ok_or(HssError::UnknownImpi)?;
        let sqn = s.sqn.next_sqn().map_err(|_| HssError::SqnExhausted)?;
        self.challenge_ticket = None;
        if let Some(p) = self.persist.as_mut() {
            let (seq, _) = self.policy.split(sqn);
            let floor_seq = seq_of(self.policy, s.sqn_floor);
            if seq > floor_seq {
                // Past the bound: a block from this SEQ on, written before this challenge
                // leaves (and the others under the new bound with it).
                let bound = block_end(self.policy, seq.saturating_add(self.sqn_block - 1));
                s.sqn_floor = s.sqn_floor.max(bound);
                p.last = p.last.next();
                p.queue
                    .push_back(PersistRecord::new(p.last, s.impi.clone(), s.sqn_floor));
                s.floor_ticket = Some(p.last);
            }
            self.challenge_ticket = s.floor_ticket;
        } else {
            s.sqn_floor = s.sqn_floor.max(sqn.value());
        }
        Ok(AuthVector::generate(&s.milenage, rand, sqn, s.amf))
    }

    /// Re-synchronises `impi` from the AUTS the UE returned for `rand` (TS 33.102 6.3.5);
    /// the next challenge uses an SQN the UE accepts.
    pub fn resync(&mut self, impi: &str, rand: &[u8; 16], auts: &[u8; 14]) -> Result<(), HssError> {
        let i = self.index(impi)?;
        let s = self.subs.get_mut(i).ok_or(HssError::UnknownImpi)?;
        let sqn_ms = Auts::from_bytes(*auts)
            .resync(&s.milenage, rand)
            .map_err(|_| HssError::AutsMacFailure)?;
        s.sqn.resync(sqn_ms);
        Ok(())
    }
}

/// The largest SQN of SEQ `seq` (its last IND), `seq` capped at the policy's largest SEQ:
/// the value a bound is written as, at least every SQN of a SEQ up to `seq`.
fn block_end(policy: SqnPolicy, seq: u64) -> u64 {
    let seq = seq.min(policy.seq_max());
    policy
        .join(seq, policy.ind_count() - 1)
        .map_or(crate::aka::sqn::SQN_MAX, Sqn::value)
}

/// The SEQ of SQN value `v` (its low 48 bits).
fn seq_of(policy: SqnPolicy, v: u64) -> u64 {
    policy.split(Sqn::from_bytes(sqn_bytes(v))).0
}

fn sqn_bytes(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time upper-case test answers what a byte loop answers, at every
    /// length and position.
    #[test]
    fn upper_case_is_found_wherever_it_is() {
        for n in 0..40 {
            let base: Vec<u8> = (0..n).map(|i| b"sip:0@ims-x.org\xc3\xa9"[i % 17]).collect();
            for i in 0..n {
                for c in [b'A', b'Z', b'@', b'[', b'a', 0xc1, 0xda, 0xff] {
                    let mut b = base.clone();
                    b[i] = c;
                    let s = String::from_utf8_lossy(&b);
                    let want = s.bytes().any(|b| b.is_ascii_uppercase());
                    assert_eq!(has_ascii_uppercase(&s), want, "{s:?}");
                }
            }
        }
    }

    /// TS 35.208 4.3.1 Test Set 1.
    const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
    const OP: &str = "cdc202d5123e20f62b6d676ac72cb318";
    const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
    const RAND: [u8; 16] = [
        0x23, 0x55, 0x3c, 0xbe, 0x96, 0x37, 0xa8, 0x9d, 0x21, 0x8a, 0xe6, 0x4d, 0xae, 0x47, 0xbf,
        0x35,
    ];

    fn rec(op: bool, sqn: &str) -> SubscriberRecord {
        SubscriberRecord {
            impi: "001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
            impu: vec![
                "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
                "tel:+15550001".into(),
            ],
            k: K.into(),
            opc: (!op).then(|| OPC.into()),
            op: op.then(|| OP.into()),
            amf: "b9b9".into(),
            sqn: sqn.into(),
        }
    }

    #[test]
    fn vector_matches_ts35208_set1_with_op_or_opc() {
        for op in [false, true] {
            // IND cycles 0, 1, ... from a restart, so the 8th challenge after SEQ_HE =
            // 0x7fcdda685a8 carries SEQ 0x7fcdda685b0, IND 7: set 1's SQN ff9bb4d0b607.
            let mut hss = Hss::from_records(&[rec(op, "ff9bb4d0b500")]).unwrap();
            let impi = "001010000000001@IMS.mnc001.mcc001.3gppnetwork.org";
            for _ in 0..7 {
                hss.challenge(impi, RAND).unwrap();
            }
            let v = hss.challenge(impi, RAND).unwrap();
            assert_eq!(hex::encode(v.xres.as_bytes()), "a54211d5e3ba50bf");
            assert_eq!(
                hex::encode(v.ck.as_bytes()),
                "b40ba9a3c58b2a05bbf0d987b21bf8cb"
            );
            assert_eq!(
                hex::encode(v.ik.as_bytes()),
                "f769bcd751044604127672711c6d3441"
            );
            // AUTN = SQN^AK || AMF || MAC-A = (ff9bb4d0b607 ^ aa689c648370) || b9b9 || 4a9ffac354dfafb3.
            assert_eq!(
                hex::encode(v.autn.as_bytes()),
                "55f328b43577b9b94a9ffac354dfafb3"
            );
        }
    }

    #[test]
    fn sqn_advances_and_resync_from_auts() {
        let mut hss = Hss::from_records(&[rec(false, "000000000020")]).unwrap();
        let impi = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org";
        let a = hss.challenge(impi, RAND).unwrap();
        let b = hss.challenge(impi, RAND).unwrap();
        assert_ne!(a.autn, b.autn);
        assert_eq!(hss.subscriber(impi).unwrap().seq_he(), 3);
        // The UE is at SQN_MS = ff9bb4d0b607 (set 1): AUTS from TS 35.208 set 1 f1*/f5*.
        let auts: [u8; 14] = hex::decode("ba853f3c123ccf44e93596e355c6")
            .unwrap()
            .try_into()
            .unwrap();
        hss.resync(impi, &RAND, &auts).unwrap();
        assert_eq!(hss.subscriber(impi).unwrap().seq_he(), 0xff9bb4d0b607 >> 5);
        let mut bad = auts;
        bad[13] ^= 1;
        assert_eq!(hss.resync(impi, &RAND, &bad), Err(HssError::AutsMacFailure));
        assert_eq!(
            hss.challenge("nobody@x", RAND).unwrap_err(),
            HssError::UnknownImpi
        );
        assert_eq!(hss.by_impu("TEL:+15550001").unwrap().impi(), impi);
    }

    #[test]
    fn bad_records() {
        let mut r = rec(false, "000000000000");
        r.op = Some(OP.into());
        assert_eq!(
            Hss::from_records(&[r]).unwrap_err(),
            HssError::BadField {
                impi: rec(false, "").impi.clone(),
                field: "opc"
            }
        );
        let mut r = rec(false, "000000000000");
        r.k = "zz".into();
        let e = Hss::from_records(&[r]).unwrap_err();
        assert!(matches!(e, HssError::BadField { field: "k", .. }));
        assert!(!e.to_string().contains("zz"));
        assert!(matches!(
            Hss::from_records(&[rec(false, "000000000000"), rec(false, "000000000000")]),
            Err(HssError::Duplicate(_))
        ));
    }

    const IMPI: &str = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org";

    /// Takes every queued record, as the daemon does before writing them.
    fn drain(hss: &mut Hss) -> Vec<PersistRecord> {
        std::iter::from_fn(|| hss.poll_persist()).collect()
    }

    #[test]
    fn without_sqn_state_nothing_is_queued() {
        let mut hss = Hss::from_records(&[rec(false, "000000000020")]).unwrap();
        hss.challenge(IMPI, RAND).unwrap();
        assert!(!hss.persists_sqns());
        assert_eq!(hss.poll_persist(), None);
        assert_eq!(hss.last_ticket(), None);
    }

    #[test]
    fn records_come_out_in_order_with_rising_tickets() {
        // A block of one SEQ: every challenge passes the bound (a record each, as before
        // SQN blocks).
        let mut hss = Hss::from_records(&[rec(false, "000000000000")])
            .unwrap()
            .with_sqn_state(SqnState::new())
            .unwrap()
            .with_sqn_block(1);
        assert_eq!(hss.last_ticket(), None);
        for _ in 0..3 {
            hss.challenge(IMPI, RAND).unwrap();
        }
        let records = drain(&mut hss);
        let got: Vec<(u64, &str, u64)> = records
            .iter()
            .map(|r| (r.ticket().get(), r.impi(), r.sqn()))
            .collect();
        // SEQ 1, 2, 3 (TS 33.102 C.3.2, 5 IND bits), each bound written with the last IND.
        assert_eq!(
            got,
            [
                (1, IMPI, (1 << 5) | 31),
                (2, IMPI, (2 << 5) | 31),
                (3, IMPI, (3 << 5) | 31)
            ]
        );
        assert_eq!(hss.last_ticket(), records.last().map(PersistRecord::ticket));
        assert_eq!(hss.poll_persist(), None);
    }

    #[test]
    fn restart_never_reuses_an_sqn() {
        let mut first = Hss::from_records(&[rec(false, "000000000020")])
            .unwrap()
            .with_sqn_state(SqnState::new())
            .unwrap();
        first.challenge(IMPI, RAND).unwrap();
        let sent = first.challenge(IMPI, RAND).unwrap().autn;
        // What the daemon wrote: the journal lines of every record.
        let journal: String = drain(&mut first)
            .iter()
            .map(PersistRecord::journal_line)
            .collect();
        let mut state = SqnState::new();
        crate::hss::apply_journal(&mut state, &journal);
        let mut hss = Hss::from_records(&[rec(false, "000000000020")])
            .unwrap()
            .with_sqn_state(state)
            .unwrap();
        let next = hss.challenge(IMPI, RAND).unwrap().autn;
        assert_ne!(sent, next);
        // The record held the bound, SEQ 2 (the file's SQN is SEQ 1) + a block - 1: the
        // restart resumes above it.
        assert_eq!(hss.subscriber(IMPI).unwrap().seq_he(), SQN_BLOCK + 2);
    }

    #[test]
    fn failed_persistence_refuses_challenges_until_durable() {
        // An IMPI that is no longer provisioned keeps its state through checkpoints.
        let recovered = SqnState::from([("ghost@x".to_string(), 0x400)]);
        let mut hss = Hss::from_records(&[rec(false, "000000000000")])
            .unwrap()
            .with_sqn_state(recovered)
            .unwrap();
        hss.challenge(IMPI, RAND).unwrap();
        hss.on_persist_failed();
        assert_eq!(hss.challenge(IMPI, RAND).err(), Some(HssError::NotDurable));
        assert_eq!(hss.subscriber(IMPI).unwrap().seq_he(), 1);
        assert_eq!(
            drain(&mut hss).len(),
            1,
            "the refused challenge queued nothing"
        );
        // What a checkpoint writes covers every SQN handed out, and the ghost.
        let state: Vec<(&str, u64)> = hss.sqn_state().collect();
        assert_eq!(state, [(IMPI, (SQN_BLOCK << 5) | 31), ("ghost@x", 0x400)]);
        hss.on_durable();
        hss.challenge(IMPI, RAND).unwrap();
        assert_eq!(hss.subscriber(IMPI).unwrap().seq_he(), 2);
    }

    /// SQN blocks: after the start's reservation, SQNs up to the bound queue no record and
    /// wait for nothing; the challenge that passes the bound queues one record of the new
    /// bound (a block from its SEQ on) and waits for it, and so does every challenge under
    /// the new bound until its record is durable. Every SQN handed out is at most the state
    /// a checkpoint writes.
    #[test]
    fn sqns_under_the_bound_need_no_record_and_the_crossing_one_waits() {
        let mut hss = Hss::from_records(&[rec(false, "000000000020")])
            .unwrap()
            .with_sqn_state(SqnState::new())
            .unwrap()
            .with_sqn_block(4);
        hss.reserve_sqn_blocks();
        // The file's SQN 0x20 is SEQ 1: SEQ 2..=5 reserved, written as SEQ 5's last IND.
        let bound = |h: &Hss| h.sqn_state().next().map(|(_, v)| v).unwrap();
        assert_eq!(bound(&hss), (5 << 5) | 31);
        let mut sent = Vec::new();
        for _ in 0..4 {
            let v = hss.challenge(IMPI, RAND).unwrap();
            assert_eq!(hss.challenge_ticket(), None, "under the bound: no wait");
            sent.push(v.autn);
        }
        assert!(drain(&mut hss).is_empty(), "under the bound: no record");
        assert_eq!(hss.subscriber(IMPI).unwrap().seq_he(), 5);
        // SEQ 6 passes the bound: SEQ 6..=9 reserved by one record, which it waits for.
        hss.challenge(IMPI, RAND).unwrap();
        let t = hss
            .challenge_ticket()
            .expect("the crossing challenge waits");
        hss.challenge(IMPI, RAND).unwrap();
        assert_eq!(
            hss.challenge_ticket(),
            Some(t),
            "under a bound not yet durable"
        );
        let records = drain(&mut hss);
        let got: Vec<(u64, u64)> = records
            .iter()
            .map(|r| (r.ticket().get(), r.sqn()))
            .collect();
        assert_eq!(got, [(t.get(), (9 << 5) | 31)]);
        assert_eq!(bound(&hss), (9 << 5) | 31);
        for _ in 0..2 {
            hss.challenge(IMPI, RAND).unwrap();
            assert_eq!(hss.challenge_ticket(), Some(t));
        }
        assert!(drain(&mut hss).is_empty());
        // SEQ 10: the next block.
        hss.challenge(IMPI, RAND).unwrap();
        assert!(hss.challenge_ticket() > Some(t));
        assert_eq!(drain(&mut hss)[0].sqn(), (13 << 5) | 31);
        // Without the start's reservation the first challenge passes the bound.
        let mut cold = Hss::from_records(&[rec(false, "000000000020")])
            .unwrap()
            .with_sqn_state(SqnState::new())
            .unwrap();
        cold.challenge(IMPI, RAND).unwrap();
        assert!(cold.challenge_ticket().is_some());
        let block_end = ((1 + SQN_BLOCK) << 5) | 31;
        assert_eq!(drain(&mut cold)[0].sqn(), block_end);
        // Without SQN state nothing waits, whatever the bound.
        let mut plain = Hss::from_records(&[rec(false, "000000000020")]).unwrap();
        plain.challenge(IMPI, RAND).unwrap();
        assert_eq!(plain.challenge_ticket(), None);
    }

    /// A resync that moves SEQ_HE above the bound (the UE is ahead) makes the next
    /// challenge pass it: a new block from there, written before the challenge leaves.
    #[test]
    fn a_resync_ahead_of_the_bound_reserves_a_new_block() {
        let mut hss = Hss::from_records(&[rec(false, "000000000020")])
            .unwrap()
            .with_sqn_state(SqnState::new())
            .unwrap();
        hss.reserve_sqn_blocks();
        // The UE is at SQN_MS = ff9bb4d0b607 (TS 35.208 set 1's AUTS).
        let auts: [u8; 14] = hex::decode("ba853f3c123ccf44e93596e355c6")
            .unwrap()
            .try_into()
            .unwrap();
        hss.resync(IMPI, &RAND, &auts).unwrap();
        hss.challenge(IMPI, RAND).unwrap();
        assert!(hss.challenge_ticket().is_some());
        let seq_ms = 0xff9bb4d0b607u64 >> 5;
        assert_eq!(
            drain(&mut hss)[0].sqn(),
            ((seq_ms + SQN_BLOCK) << 5) | 31,
            "a block from SEQ_MS + 1 on"
        );
    }

    /// The subscriber found last is a hint for its own IMPI only: a challenge of another
    /// subscriber right after it, or of the same IMPI given as another string, is looked up;
    /// each challenge advances its own subscriber's SEQ.
    #[test]
    fn the_last_found_subscriber_is_only_a_hint() {
        let mut b = rec(false, "000000000000");
        b.impi = "b@x".into();
        b.impu = vec!["sip:b@x".into()];
        let mut hss = Hss::from_records(&[rec(false, "000000000000"), b]).unwrap();
        let a = hss.subscriber(IMPI).unwrap().identities();
        let seq = |h: &Hss, impi: &str| h.subscriber(impi).unwrap().seq_he();
        let (a0, b0) = (seq(&hss, IMPI), seq(&hss, "b@x"));
        let _ = hss.subscriber(IMPI);
        hss.challenge("B@X", RAND).unwrap();
        assert_eq!((seq(&hss, IMPI), seq(&hss, "b@x")), (a0, b0 + 1));
        let _ = hss.subscriber(IMPI);
        hss.challenge(&a.impi, RAND).unwrap();
        assert_eq!((seq(&hss, IMPI), seq(&hss, "b@x")), (a0 + 1, b0 + 1));
        let _ = hss.subscriber("b@x");
        hss.challenge(IMPI, RAND).unwrap();
        assert_eq!((seq(&hss, IMPI), seq(&hss, "b@x")), (a0 + 2, b0 + 1));
    }
}
