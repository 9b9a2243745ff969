//! The subscriber store: lookup by IMPI/IMPU, AKA vector generation with SQN advanced and
//! journaled first (durable at once, or at the next group commit), and re-synchronisation
//! from AUTS (TS 33.102 6.3.3, 6.3.5).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use thiserror::Error;
use zeroize::Zeroize;

use super::record::{parse_csv, parse_toml, SubscriberRecord};
use super::sqn_store::{parse_sqn_hex, SqnJournal};
use crate::aka::autn::{AuthVector, Auts};
use crate::aka::milenage::Milenage;
use crate::aka::sqn::{Sqn, SqnGenerator, SqnPolicy};

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
}

/// One provisioned subscriber. `Debug` shows identities only.
pub struct Subscriber {
    impi: String,
    impu: Vec<String>,
    milenage: Milenage,
    amf: [u8; 2],
    sqn: SqnGenerator,
    /// The largest SQN ever journaled or recovered for this subscriber: a restart resumes
    /// above it, so every checkpoint writes it (a resync may move SEQ_HE below it).
    sqn_floor: u64,
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
fn key(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

/// When the SQN journal is fsynced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommitMode {
    /// Every [`Hss::challenge`] is durable when it returns (standalone use: tests, tools).
    #[default]
    PerChallenge,
    /// Challenges only append; [`Hss::commit`] makes them durable with one fsync (group
    /// commit). Whoever selects this must commit before any vector leaves the process.
    Deferred,
}

/// The embedded HSS.
#[derive(Debug)]
pub struct Hss {
    subs: Vec<Subscriber>,
    by_impi: HashMap<String, usize>,
    by_impu: HashMap<String, usize>,
    policy: SqnPolicy,
    journal: Option<SqnJournal>,
    commit_mode: CommitMode,
    /// SQN state of IMPIs not provisioned (any more), kept so a checkpoint does not lose it.
    foreign: BTreeMap<String, u64>,
}

impl Hss {
    /// Builds the store from file records (no SQN persistence until [`Hss::with_sqn_state`]).
    pub fn from_records(records: &[SubscriberRecord]) -> Result<Self, HssError> {
        let policy = SqnPolicy::default();
        let mut hss = Hss {
            subs: Vec::with_capacity(records.len()),
            by_impi: HashMap::new(),
            by_impu: HashMap::new(),
            policy,
            journal: None,
            commit_mode: CommitMode::PerChallenge,
            foreign: BTreeMap::new(),
        };
        for r in records {
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
            if hss.by_impi.insert(key(impi), i).is_some() {
                return Err(HssError::Duplicate(impi.into()));
            }
            for u in &r.impu {
                if hss.by_impu.insert(key(u), i).is_some() {
                    return Err(HssError::Duplicate(u.clone()));
                }
            }
            hss.subs.push(Subscriber {
                impi: impi.into(),
                impu: r.impu.clone(),
                milenage,
                amf,
                sqn: gen,
                sqn_floor: sqn,
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
        Self::from_records(&records)
    }

    /// Attaches durable SQN state at `path` (see [`SqnJournal`]): each subscriber continues
    /// from the larger of the file's SQN and the recorded one, and every later challenge is
    /// journaled before it is returned (and durable then, unless [`CommitMode::Deferred`]).
    pub fn with_sqn_state(mut self, path: &Path) -> Result<Self, HssError> {
        let (journal, state) = SqnJournal::open(path)?;
        for (impi, sqn) in state {
            let Some(s) = self
                .by_impi
                .get(&key(&impi))
                .and_then(|&i| self.subs.get_mut(i))
            else {
                self.foreign.insert(impi, sqn);
                continue;
            };
            s.sqn_floor = s.sqn_floor.max(sqn);
            let (seq, _) = self.policy.split(Sqn::from_bytes(sqn_bytes(sqn)));
            if seq > s.sqn.seq_he() {
                s.sqn = SqnGenerator::new(self.policy, seq).map_err(|_| HssError::SqnExhausted)?;
            }
        }
        self.journal = Some(journal);
        Ok(self)
    }

    /// Selects when the SQN journal is fsynced (default [`CommitMode::PerChallenge`]).
    pub fn set_commit_mode(&mut self, mode: CommitMode) {
        self.commit_mode = mode;
    }

    /// When the SQN journal is fsynced.
    pub fn commit_mode(&self) -> CommitMode {
        self.commit_mode
    }

    /// Makes every SQN handed out so far durable: one fsync of the journal if anything was
    /// appended since the last commit, nothing otherwise (and nothing without SQN state).
    ///
    /// If the fsync fails, the journal is not trusted any more (a failed fsync may have
    /// dropped its pages) and the whole state is rewritten from memory instead: a new
    /// snapshot (atomic rename, fsynced) and an empty journal. Only if that fails too is the
    /// error returned; the SQNs of this group are then not durable and their vectors must
    /// not be sent. Every later challenge and commit retries the rewrite first.
    pub fn commit(&mut self) -> Result<(), HssError> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(());
        };
        if !journal.is_poisoned() {
            match journal.sync() {
                Ok(()) => return Ok(()),
                Err(e) => log::error!("SQN journal fsync failed ({e}); rewriting the SQN state"),
            }
        }
        let state = self
            .subs
            .iter()
            .map(|s| (s.impi.as_str(), s.sqn_floor))
            .chain(self.foreign.iter().map(|(k, v)| (k.as_str(), *v)));
        journal.checkpoint(state)
    }

    /// Whether SQNs were handed out that are not durable yet (a commit is due).
    pub fn has_uncommitted(&self) -> bool {
        self.journal
            .as_ref()
            .is_some_and(|j| j.is_dirty() || j.is_poisoned())
    }

    /// How many times the SQN journal was made durable (fsyncs and checkpoints since open).
    pub fn sync_count(&self) -> u64 {
        self.journal.as_ref().map_or(0, SqnJournal::syncs)
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
        self.by_impi.get(&key(impi)).and_then(|&i| self.subs.get(i))
    }

    /// The subscriber owning this IMPU.
    pub fn by_impu(&self, impu: &str) -> Option<&Subscriber> {
        self.by_impu.get(&key(impu)).and_then(|&i| self.subs.get(i))
    }

    fn index(&self, impi: &str) -> Result<usize, HssError> {
        self.by_impi
            .get(&key(impi))
            .copied()
            .ok_or(HssError::UnknownImpi)
    }

    /// A fresh authentication vector for `impi` with the given RAND; the next SQN is
    /// journaled first (TS 33.102 6.3.2). In [`CommitMode::PerChallenge`] it is durable when
    /// this returns, so the vector may be sent at once; in [`CommitMode::Deferred`] only
    /// after the next successful [`Hss::commit`].
    pub fn challenge(&mut self, impi: &str, rand: [u8; 16]) -> Result<AuthVector, HssError> {
        let i = self.index(impi)?;
        if self.journal.as_ref().is_some_and(SqnJournal::is_poisoned) {
            self.commit()?;
        }
        let s = self.subs.get_mut(i).ok_or(HssError::UnknownImpi)?;
        let mut gen = s.sqn.clone();
        let sqn = gen.next_sqn().map_err(|_| HssError::SqnExhausted)?;
        if let Some(j) = self.journal.as_mut() {
            j.append(&s.impi, sqn.value())?;
        }
        s.sqn = gen;
        s.sqn_floor = s.sqn_floor.max(sqn.value());
        let av = AuthVector::generate(&s.milenage, rand, sqn, s.amf);
        if self.commit_mode == CommitMode::PerChallenge {
            self.commit()?;
        }
        Ok(av)
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

fn sqn_bytes(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn restart_never_reuses_an_sqn() {
        let d = std::env::temp_dir().join(format!("akagate-hss-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let state = d.join("sqn.state");
        let impi = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org";
        let first = {
            let mut hss = Hss::from_records(&[rec(false, "000000000020")])
                .unwrap()
                .with_sqn_state(&state)
                .unwrap();
            hss.challenge(impi, RAND).unwrap();
            hss.challenge(impi, RAND).unwrap().autn
        };
        let mut hss = Hss::from_records(&[rec(false, "000000000020")])
            .unwrap()
            .with_sqn_state(&state)
            .unwrap();
        let next = hss.challenge(impi, RAND).unwrap().autn;
        assert_ne!(first, next);
        assert_eq!(hss.subscriber(impi).unwrap().seq_he(), 4);
        let _ = std::fs::remove_dir_all(&d);
    }

    fn state_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("akagate-hss-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const IMPI: &str = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org";

    #[test]
    fn deferred_mode_syncs_once_per_commit() {
        let d = state_dir("deferred");
        let state = d.join("sqn.state");
        let mut hss = Hss::from_records(&[rec(false, "000000000000")])
            .unwrap()
            .with_sqn_state(&state)
            .unwrap();
        // Standalone use stays durable per challenge.
        assert_eq!(hss.commit_mode(), CommitMode::PerChallenge);
        for n in 1..=3 {
            hss.challenge(IMPI, RAND).unwrap();
            assert_eq!(hss.sync_count(), n);
            assert!(!hss.has_uncommitted());
        }
        hss.set_commit_mode(CommitMode::Deferred);
        for _ in 0..100 {
            hss.challenge(IMPI, RAND).unwrap();
        }
        assert_eq!(hss.sync_count(), 3);
        assert!(hss.has_uncommitted());
        let journal = std::fs::read_to_string(d.join("sqn.state.journal")).unwrap();
        assert_eq!(journal.lines().count(), 103);
        // SEQ 103 with IND (103 - 1) % 32 = 6 (TS 33.102 C.3.2, 5 IND bits).
        assert_eq!(
            journal.lines().last(),
            Some(format!("{:012x} {IMPI}", (103 << 5) | 6).as_str())
        );
        hss.commit().unwrap();
        assert_eq!(hss.sync_count(), 4);
        assert!(!hss.has_uncommitted());
        hss.commit().unwrap();
        assert_eq!(hss.sync_count(), 4, "nothing to commit: no fsync");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn failed_journal_write_recovers_by_checkpoint() {
        let d = state_dir("poisoned");
        let state = d.join("sqn.state");
        // An IMPI that is no longer provisioned keeps its state through checkpoints.
        std::fs::write(&state, "\"ghost@x\" = \"000000000400\"\n").unwrap();
        let mut hss = Hss::from_records(&[rec(false, "000000000000")])
            .unwrap()
            .with_sqn_state(&state)
            .unwrap();
        hss.set_commit_mode(CommitMode::Deferred);
        hss.challenge(IMPI, RAND).unwrap();
        hss.commit().unwrap();
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        if let Some(j) = hss.journal.as_mut() {
            j.replace_file_for_test(full);
        }
        // ENOSPC on the append: no vector, SEQ_HE unchanged, the journal is poisoned.
        assert!(matches!(
            hss.challenge(IMPI, RAND),
            Err(HssError::Io { .. })
        ));
        assert_eq!(hss.subscriber(IMPI).unwrap().seq_he(), 1);
        assert!(hss.has_uncommitted());
        // The rewrite cannot happen either while the directory is gone.
        std::fs::remove_dir_all(&d).unwrap();
        assert!(matches!(
            hss.challenge(IMPI, RAND),
            Err(HssError::Io { .. })
        ));
        assert!(hss.commit().is_err());
        std::fs::create_dir_all(&d).unwrap();
        hss.commit().unwrap();
        assert!(!hss.has_uncommitted());
        let snapshot = std::fs::read_to_string(&state).unwrap();
        assert!(
            snapshot.contains(&format!("\"{IMPI}\" = \"000000000020\"")),
            "{snapshot}"
        );
        assert!(
            snapshot.contains("\"ghost@x\" = \"000000000400\""),
            "{snapshot}"
        );
        // Appends go to the fresh journal again.
        hss.challenge(IMPI, RAND).unwrap();
        hss.commit().unwrap();
        drop(hss);
        let (_, recovered) = SqnJournal::open(&state).unwrap();
        assert_eq!(recovered.get(IMPI), Some(&((2 << 5) | 1)));
        assert_eq!(recovered.get("ghost@x"), Some(&0x400));
        let _ = std::fs::remove_dir_all(&d);
    }
}
