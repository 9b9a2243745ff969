//! The registration store (issue 14): every registered binding with its SA set, kept in an
//! append-only record log next to the SQN state (`log.rs`) so registered phones keep
//! working across a restart. Written in the slowpath's group commit (one `writev` and one
//! `fdatasync` per batch, before the batch's 200 OKs leave), compacted when the log's dead
//! share grows, read once at start. Each stored set carries its restart epoch: a set
//! restored for the `n`th time sends ESP sequence numbers of epoch `n` only (`OutboundSeq`),
//! and `n` is durable before the set is installed, so no run reuses a sequence number of an
//! earlier one (RFC 4303 3.3.3). The file holds CK/IK-derived keys: mode 0600, buffers
//! zeroized, and a store that cannot be read is set aside, never fatal. A store written by
//! an earlier version (`redb`) is read once and rewritten as a log (`migrate.rs`).

mod log;
mod migrate;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use akagate_fastpath::ipc::{OutboundSeq, WorkerCommand};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::worker::InboundTable;
use akagate_proto::hash::{keyed_map, KeyedMap};
use akagate_slowpath::hss::{apply_journal, PersistRecord, SqnState};
use akagate_slowpath::registrar::{
    decode_record, unix_ms, ChangeRef, ChangeSet, PersistedRegistration, RegistrationChange,
    SecretBuf,
};
use akagate_slowpath::Core;
use akagate_sys::steer::Steering;
use serde::{Deserialize, Serialize};

use log::{Batch, MAGIC};

/// One record: the registration and the restart epoch its set sends in.
#[derive(Serialize, Deserialize)]
struct Stored {
    /// How many times the set was restored (0: made in the run that stored it).
    seq_epoch: u32,
    /// The registration.
    registration: PersistedRegistration,
}

/// [`Stored`] over a borrowed registration: the same JSON, written without copying the
/// registration (what `Put` changes write; [`Stored`] is what is read back).
#[derive(Serialize)]
struct StoredRef<'a> {
    /// As [`Stored::seq_epoch`].
    seq_epoch: u32,
    /// As [`Stored::registration`].
    registration: &'a PersistedRegistration,
}

/// The first byte of a stored value in the binary form: `STORED_BINARY seq_epoch:u32le
/// record`, the record the registrar's (`registrar/record.rs`, its own version byte first).
/// A value whose first byte is `{` is the JSON of [`Stored`] (earlier versions; the owned
/// form's rare writes: moved shards, the rewrite at open, tests).
const STORED_BINARY: u8 = 2;

/// Room for one usual encoded record (a registration with its Security-Server and hex keys
/// is under 1 KiB); a longer one moves the buffer to a larger allocation, the old one
/// zeroized ([`SecretBuf`]), so no copy of the keys is left behind.
const RECORD_CAPACITY: usize = 2048;

/// Store-owned bytes of a usual record in a batch (header, kind, key of an IMPI, the
/// value's tag and epoch or an SQN line), to size a commit's batch up front.
const PLAIN_PER_RECORD: usize = 128;

/// A log is compacted once this many bytes were appended since its last compaction (or as
/// many as it then held, if more), so compaction costs at most about one byte written per
/// byte appended, amortised.
pub const DEFAULT_COMPACT_BYTES: u64 = 4 << 20;

/// The suffix of a running compaction's file beside the log.
const COMPACT_SUFFIX: &str = ".compact";

/// Key prefix of an SQN record (a put whose value is the SQN journal's line `<sqn> <impi>`,
/// keyed by this prefix and the IMPI, so the newest per IMPI is the live one). A registration
/// key is an IMPI from SIP text, which never holds a NUL byte, so the two never meet. These
/// records make a challenge's SQN durable in the group commit's one `fdatasync`; the SQN
/// journal folds them in at start ([`sqn_state_in_stores`]) before this store is opened, and
/// the store's open drops them (docs/ARCHITECTURE.md, *SQN group commit*).
pub const SQN_KEY_PREFIX: &str = "\0sqn ";

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("registration store {path}: {reason}")]
pub struct StoreError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// What [`RegistrationStore::open`] found.
#[derive(Debug, Default)]
pub struct Restored {
    /// The registrations to restore, each with the restart epoch its set now sends in
    /// (already durable).
    pub records: Vec<(PersistedRegistration, u32)>,
    /// Dropped: their binding expired while the daemon was down.
    pub expired: usize,
    /// Dropped: unreadable records (or stretches of them), or the whole file when it could
    /// not be read as a store.
    pub corrupt: usize,
    /// Dropped: restored as often as the sequence-number space allows (`OutboundSeq::EPOCHS`).
    pub exhausted: usize,
}

/// The registration store of a running daemon.
pub struct RegistrationStore {
    file: File,
    path: PathBuf,
    /// Per IMPI key, the (spi_ps, epoch) of a set restored in this run: a later write of the
    /// same set keeps its epoch, a new set starts at 0. Keyed foldhash, as the registrar's
    /// maps of IMPIs (`akagate_proto::hash`; SipHash was ~0.36k instructions a registration).
    epochs: KeyedMap<String, (u32, u32)>,
    /// Size of the file up to its last durable record.
    committed: u64,
    /// Size of the file when it was last written whole (open or compaction).
    compacted: u64,
    /// Appended bytes that make a compaction (at least; see [`DEFAULT_COMPACT_BYTES`]).
    compact_bytes: u64,
    /// A write or fsync failed: the file is cut back to `committed` before the next append
    /// (Linux may drop the failed pages, and a torn record must not sit before good ones).
    poisoned: bool,
    /// A compaction renamed its file into place but the directory's fsync failed: no commit
    /// is durable until it succeeds.
    dir_unsynced: bool,
    /// Successful commits.
    commits: u64,
    /// Successful commits that carried SQN records ([`RegistrationStore::commit`]).
    sqn_commits: u64,
    /// Compactions while running.
    compactions: u64,
    /// A compaction running on its own thread, installed by a later commit.
    compacting: Option<Compaction>,
    /// The last group commit's batch buffers, for the next ([`log::Spare`]).
    spare: log::Spare,
    /// The `writev` list's allocation, kept from append to append
    /// ([`Batch::write_to_with`]).
    iov: Vec<std::io::IoSlice<'static>>,
}

/// A compaction on its own thread: the live records of the log's first `upto` bytes written
/// to a durable temp file, so the SIP thread never reads or rewrites the whole log. The
/// commits appended meanwhile are copied after them when the SIP thread installs the file.
struct Compaction {
    /// The log's durable size when the compaction started.
    upto: u64,
    /// The compacted file (open for appending) and its size.
    thread: std::thread::JoinHandle<std::io::Result<(File, u64)>>,
}

impl Drop for RegistrationStore {
    fn drop(&mut self) {
        // A compaction still running is waited for, and its file (it holds keys) removed.
        if let Some(c) = self.compacting.take() {
            let _ = c.thread.join();
            let _ = fs::remove_file(log::with_suffix(&self.path, COMPACT_SUFFIX));
        }
    }
}

impl core::fmt::Debug for RegistrationStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegistrationStore")
            .field("path", &self.path)
            .field("commits", &self.commits)
            .field("compactions", &self.compactions)
            .finish_non_exhaustive()
    }
}

/// The store file that goes with the SQN state `sqn_state`: `<subscribers>.registrations`
/// beside `<subscribers>.sqn-state`, or `<sqn_state>.registrations` for another name.
pub fn registrations_path(sqn_state: &Path) -> PathBuf {
    let s = sqn_state.as_os_str().to_string_lossy();
    let base = s.strip_suffix(".sqn-state").unwrap_or(&s);
    PathBuf::from(format!("{base}.registrations"))
}

fn err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Where an unreadable store is kept: `<path>.corrupt-<unix time>`.
fn aside_path(path: &Path, wall: SystemTime) -> PathBuf {
    log::with_suffix(path, &format!(".corrupt-{}", unix_ms(wall) / 1000))
}

/// The records found in a store file, before they are judged.
enum Found {
    /// No file, or an empty one.
    Nothing,
    /// A log's content, and its live records in it.
    Log(zeroize::Zeroizing<Vec<u8>>, Vec<log::Frame>),
    /// An earlier version's database's records.
    Redb(Vec<(String, SecretBuf)>),
}

/// Reads the store at `path`. A file that is no store, or cannot be read, is renamed aside
/// and counted in `restored.corrupt`; a log with corrupt records is copied aside (hard
/// link) before it is replaced.
fn read_store(path: &Path, wall: SystemTime, restored: &mut Restored) -> Result<Found, StoreError> {
    let unreadable = |why: String, restored: &mut Restored| -> Result<Found, StoreError> {
        let aside = aside_path(path, wall);
        tracing::error!(
            "registration store {} unreadable ({why}); moved to {} and starting empty",
            path.display(),
            aside.display()
        );
        fs::rename(path, &aside).map_err(|e| err(path, e))?;
        restored.corrupt += 1;
        Ok(Found::Nothing)
    };
    let bytes = match log::read_all(path) {
        Ok(None) => return Ok(Found::Nothing),
        Ok(Some(b)) if b.is_empty() => return Ok(Found::Nothing),
        Ok(Some(b)) => b,
        Err(e) => return unreadable(e.to_string(), restored),
    };
    if migrate::is_redb(&bytes) {
        drop(bytes);
        return match migrate::read_redb(path) {
            Ok((records, unreadable)) => {
                tracing::info!(
                    "registration store {}: {} record(s) of an earlier version's database, \
                     rewritten as a log",
                    path.display(),
                    records.len()
                );
                restored.corrupt += unreadable;
                Ok(Found::Redb(records))
            }
            Err(e) => unreadable(e, restored),
        };
    }
    if !bytes.starts_with(MAGIC) {
        return unreadable("not a registration log".into(), restored);
    }
    let (live, damage) = log::live_records(&bytes, MAGIC.len());
    if damage.torn_bytes > 0 {
        tracing::info!(
            "registration store {}: torn tail of {} byte(s) dropped (a batch never acknowledged)",
            path.display(),
            damage.torn_bytes
        );
    }
    if damage.corrupt_regions > 0 {
        let aside = aside_path(path, wall);
        tracing::error!(
            "registration store {}: {} corrupt stretch(es), {} byte(s), skipped; the file as \
             found is kept as {}",
            path.display(),
            damage.corrupt_regions,
            damage.corrupt_bytes,
            aside.display()
        );
        if let Err(e) = fs::hard_link(path, &aside) {
            tracing::error!("{}: {e}", aside.display());
        }
        restored.corrupt += damage.corrupt_regions;
    }
    Ok(Found::Log(bytes, live))
}

impl RegistrationStore {
    /// Opens (or creates) the store at `path` at wall-clock time `wall` and returns the
    /// registrations to restore. Expired, unreadable and epoch-exhausted records are dropped;
    /// every kept record's epoch is advanced and the file rewritten with the kept records
    /// only (a compaction; torn tail and tombstones gone), durable before this returns. A
    /// file that cannot be read as a store is renamed to `<path>.corrupt-<unix time>` and a
    /// new, empty store started (`corrupt` = 1). Fails only when no store can be written.
    pub fn open(path: &Path, wall: SystemTime) -> Result<(Self, Restored), StoreError> {
        Self::open_with(path, wall, DEFAULT_COMPACT_BYTES)
    }

    /// [`RegistrationStore::open`], compacting after `compact_bytes` appended (tests).
    fn open_with(
        path: &Path,
        wall: SystemTime,
        compact_bytes: u64,
    ) -> Result<(Self, Restored), StoreError> {
        let mut restored = Restored::default();
        let now_ms = unix_ms(wall);
        let mut keep: Vec<Stored> = Vec::new();
        match read_store(path, wall, &mut restored)? {
            Found::Nothing => {}
            Found::Log(bytes, live) => {
                for f in live {
                    let key = std::str::from_utf8(&bytes[f.key]).unwrap_or_default();
                    // SQN records were folded into the SQN state by its open, which runs
                    // first; the rewrite below drops them.
                    if !key.starts_with(SQN_KEY_PREFIX) {
                        judge(key, &bytes[f.value], now_ms, &mut restored, &mut keep);
                    }
                }
            }
            Found::Redb(records) => {
                for (key, value) in &records {
                    judge(key, value, now_ms, &mut restored, &mut keep);
                }
            }
        }
        let encoded = keep
            .iter()
            .map(encode)
            .collect::<Result<Vec<SecretBuf>, _>>()
            .map_err(|e| err(path, e))?;
        let mut batch = Batch::default();
        for (s, json) in keep.iter().zip(&encoded) {
            batch.put(&s.registration.key, &[], json, b"");
        }
        // A compaction the last run left unfinished (it holds keys; the log has its records).
        let _ = fs::remove_file(log::with_suffix(path, COMPACT_SUFFIX));
        // Durable before any set is installed under the new epochs.
        let (file, size) = log::replace(path, &batch).map_err(|e| err(path, e.error))?;
        drop(batch);
        drop(encoded);
        let mut store = RegistrationStore {
            file,
            path: path.to_path_buf(),
            epochs: keyed_map(),
            committed: size,
            compacted: size,
            compact_bytes,
            poisoned: false,
            dir_unsynced: false,
            commits: 1,
            sqn_commits: 0,
            compactions: 0,
            compacting: None,
            spare: log::Spare::default(),
            iov: Vec::new(),
        };
        for s in keep {
            let key = s.registration.key.clone();
            store
                .epochs
                .insert(key, (s.registration.set.spi_ps, s.seq_epoch));
            restored.records.push((s.registration, s.seq_epoch));
        }
        Ok((store, restored))
    }

    /// Writes `changes` as one appended batch made durable by one `fdatasync` (nothing if
    /// empty). On failure nothing of the batch counts: the file is cut back before the next
    /// one, and the caller writes the changes again.
    pub fn apply(&mut self, changes: &[RegistrationChange]) -> Result<(), StoreError> {
        self.commit(changes, &[])
    }

    /// [`RegistrationStore::apply`] with the SQN records `sqns` in the same batch (one
    /// `writev`, one `fdatasync`): once this returns `Ok`, their SQNs are durable and their
    /// challenges may leave. Nothing is written if both are empty.
    pub fn commit(
        &mut self,
        changes: &[RegistrationChange],
        sqns: &[PersistRecord],
    ) -> Result<(), StoreError> {
        if changes.is_empty() && sqns.is_empty() {
            return Ok(());
        }
        self.recover()?;
        // `Put`s (tests, moved shards) are encoded first: the batch borrows their JSON.
        let mut owned: Vec<SecretBuf> = Vec::new();
        for c in changes {
            if let RegistrationChange::Put(r) = c {
                let record = StoredRef {
                    seq_epoch: self.epoch_of(&r.key, r.set.spi_ps),
                    registration: r,
                };
                let mut out = SecretBuf::with_capacity(RECORD_CAPACITY);
                serde_json::to_writer(&mut out, &record).map_err(|e| err(&self.path, e))?;
                owned.push(out);
            }
        }
        let mut owned = owned.iter();
        let mut batch = Batch::with_capacity(changes.len() + sqns.len(), PLAIN_PER_RECORD);
        for c in changes {
            match c {
                RegistrationChange::Put(r) => {
                    if let Some(json) = owned.next() {
                        put_checked(&mut batch, &r.key, &[], json, b"");
                    }
                }
                RegistrationChange::Encoded(r) => {
                    self.put_encoded(&mut batch, &r.key, r.spi_ps, &r.record);
                }
                RegistrationChange::Delete(key) => self.delete(&mut batch, key),
            }
        }
        self.append_with_sqns(batch, sqns)
    }

    /// [`RegistrationStore::commit`] of the changes in `set` (the registrar's records
    /// written into one shared buffer, [`ChangeSet`]) with the SQN records `sqns`: one
    /// `writev`, one `fdatasync`. The caller clears `set` once this returns `Ok`.
    pub fn commit_set(
        &mut self,
        set: &ChangeSet,
        sqns: &[PersistRecord],
    ) -> Result<(), StoreError> {
        if set.is_empty() && sqns.is_empty() {
            return Ok(());
        }
        self.recover()?;
        let spare = std::mem::take(&mut self.spare);
        let mut batch = Batch::recycled(spare, set.len() + sqns.len(), PLAIN_PER_RECORD);
        for c in set.iter() {
            match c {
                ChangeRef::Put {
                    key,
                    spi_ps,
                    record,
                } => self.put_encoded(&mut batch, key, spi_ps, record),
                ChangeRef::Delete(key) => self.delete(&mut batch, key),
            }
        }
        self.append_with_sqns(batch, sqns)
    }

    /// Adds the put of registration `key`'s binary record (its epoch advanced) to `batch`.
    fn put_encoded<'a>(&mut self, batch: &mut Batch<'a>, key: &str, spi_ps: u32, record: &'a [u8]) {
        let epoch = self.epoch_of(key, spi_ps).to_le_bytes();
        let head: [&[u8]; 2] = [&[STORED_BINARY], &epoch];
        put_checked(batch, key, &head, record, b"");
    }

    /// Adds the tombstone of `key` to `batch` and forgets its epoch.
    fn delete(&mut self, batch: &mut Batch<'_>, key: &str) {
        self.epochs.remove(key);
        if key.len() <= log::MAX_KEY {
            batch.delete(key);
        }
    }

    /// Adds the SQN records `sqns` to `batch` and appends it (one `writev`, one
    /// `fdatasync`).
    fn append_with_sqns(
        &mut self,
        mut batch: Batch<'_>,
        sqns: &[PersistRecord],
    ) -> Result<(), StoreError> {
        let (mut key, mut line) = (String::new(), Vec::new());
        for r in sqns {
            key.clear();
            key.push_str(SQN_KEY_PREFIX);
            key.push_str(r.impi());
            line.clear();
            r.push_journal_bytes(&mut line);
            put_checked(&mut batch, &key, &[&line], b"", b"");
        }
        let appended = self.append(&batch);
        self.spare = batch.into_spare();
        appended?;
        if !sqns.is_empty() {
            self.sqn_commits += 1;
        }
        self.compact_in_background();
        Ok(())
    }

    /// Successful commits that made SQN records durable (the SQN group commits made here
    /// instead of in the journal).
    pub fn sqn_commits(&self) -> u64 {
        self.sqn_commits
    }

    /// Swaps the log's file handle (tests: a handle whose writes fail, e.g. /dev/full).
    #[cfg(test)]
    pub(super) fn replace_file_for_test(&mut self, file: File) {
        self.file = file;
    }

    /// Appends `batch` and makes it durable (one `writev`, one `fdatasync`).
    fn append(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let written = batch
            .write_to_with(&mut self.file, &mut self.iov)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.poisoned = true;
            return Err(err(&self.path, e));
        }
        self.committed += batch.len() as u64;
        self.commits += 1;
        Ok(())
    }

    /// Before an append after a failure: cuts the file back to its last durable record (what
    /// a failed write left is not trusted), and finishes a compaction's directory fsync.
    fn recover(&mut self) -> Result<(), StoreError> {
        if self.dir_unsynced {
            log::sync_dir(&self.path).map_err(|e| err(&self.path, e))?;
            self.dir_unsynced = false;
        }
        if self.poisoned {
            self.file
                .set_len(self.committed)
                .map_err(|e| err(&self.path, e))?;
            self.poisoned = false;
        }
        Ok(())
    }

    /// Installs a finished compaction, and starts one once the log grew by enough since the
    /// last: the whole log is read and rewritten on a thread of its own, never on the SIP
    /// thread (at 100k registrations that is a 50 MB file).
    fn compact_in_background(&mut self) {
        if self
            .compacting
            .as_ref()
            .is_some_and(|c| c.thread.is_finished())
        {
            if let Some(c) = self.compacting.take() {
                if let Err(e) = self.install_compaction(c) {
                    tracing::error!("{e}; the log keeps growing until a compaction succeeds");
                }
            }
        }
        if self.compacting.is_none()
            && self.committed - self.compacted >= self.compact_bytes.max(self.compacted)
        {
            let (path, upto) = (self.path.clone(), self.committed);
            let spawned = std::thread::Builder::new()
                .name("akagate-compact".into())
                .spawn(move || compact_into(&path, upto));
            match spawned {
                Ok(thread) => self.compacting = Some(Compaction { upto, thread }),
                Err(e) => tracing::error!("{}: no compaction thread: {e}", self.path.display()),
            }
        }
    }

    /// Puts a finished compaction's file in place of the log: the commits appended since it
    /// started copied after its records and made durable, then renamed over the log and the
    /// directory fsynced. The old file stays in use if anything before the rename fails.
    fn install_compaction(&mut self, c: Compaction) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tmp = log::with_suffix(&path, COMPACT_SUFFIX);
        let (mut file, size) = match c.thread.join() {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(err(&path, e)),
            Err(_) => return Err(err(&path, "the compaction thread panicked")),
        };
        let tail_len = usize::try_from(self.committed - c.upto).unwrap_or(usize::MAX);
        let mut tail = zeroize::Zeroizing::new(vec![0u8; tail_len]);
        // The log's handle only appends: the tail is read through one of its own.
        let copied = File::open(&path)
            .and_then(|log| std::os::unix::fs::FileExt::read_exact_at(&log, &mut tail, c.upto))
            .and_then(|()| file.write_all(&tail))
            .and_then(|()| file.sync_data());
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(err(&path, e));
        }
        let size = size + tail.len() as u64;
        let (file, size) = match log::install(&tmp, &path, file, size) {
            Ok(done) => done,
            Err(log::ReplaceError {
                error,
                renamed: Some(done),
            }) => {
                self.dir_unsynced = true;
                (self.file, self.committed, self.compacted) = (done.0, done.1, done.1);
                self.poisoned = false;
                return Err(err(&path, error));
            }
            Err(e) => return Err(err(&path, e.error)),
        };
        (self.file, self.committed, self.compacted) = (file, size, size);
        self.poisoned = false;
        self.compactions += 1;
        Ok(())
    }

    /// Waits for a running compaction and installs it (tests).
    #[cfg(test)]
    fn finish_compaction(&mut self) {
        if let Some(c) = self.compacting.take() {
            self.install_compaction(c).unwrap();
        }
    }

    /// The epoch `key`'s set over `spi_ps` sends in: the restored one's while it is the same
    /// set, 0 (and forgotten) once it is another.
    fn epoch_of(&mut self, key: &str, spi_ps: u32) -> u32 {
        match self.epochs.get(key) {
            Some(&(spi, epoch)) if spi == spi_ps => epoch,
            // A new set: its epochs start again (one look-up when the key has none).
            Some(_) => {
                self.epochs.remove(key);
                0
            }
            None => 0,
        }
    }

    /// Takes in `records` moved from another shard's store (the number of slowpath shards
    /// changed), each with the epoch it sends in — already durable where it came from — in
    /// one durable append; a later write of the same set keeps that epoch.
    pub fn adopt(&mut self, records: &[(PersistedRegistration, u32)]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.recover()?;
        let encoded = records
            .iter()
            .map(|(r, seq_epoch)| {
                let mut out = SecretBuf::with_capacity(RECORD_CAPACITY);
                serde_json::to_writer(
                    &mut out,
                    &StoredRef {
                        seq_epoch: *seq_epoch,
                        registration: r,
                    },
                )
                .map(|()| out)
            })
            .collect::<Result<Vec<SecretBuf>, _>>()
            .map_err(|e| err(&self.path, e))?;
        let mut batch = Batch::default();
        for ((r, _), json) in records.iter().zip(&encoded) {
            put_checked(&mut batch, &r.key, &[], json, b"");
        }
        self.append(&batch)?;
        for (r, epoch) in records {
            self.epochs.insert(r.key.clone(), (r.set.spi_ps, *epoch));
        }
        Ok(())
    }

    /// Compactions while running (the rewrite at open is not one).
    #[cfg(test)]
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// Records in the store now (the file read back).
    #[cfg(test)]
    pub fn len(&self) -> Result<u64, StoreError> {
        let bytes = log::read_all(&self.path)
            .map_err(|e| err(&self.path, e))?
            .unwrap_or_default();
        Ok(log::live_records(&bytes, MAGIC.len()).0.len() as u64)
    }
}

/// Adds a put of `key` to `batch`, unless the key is too long for a record (an IMPI of 64
/// KiB cannot come out of a SIP message the transport takes; logged, never a panic).
fn put_checked<'a>(batch: &mut Batch<'a>, key: &str, head: &[&[u8]], json: &'a [u8], tail: &[u8]) {
    if key.len() > log::MAX_KEY {
        tracing::error!(
            "registration store: a key of {} bytes not stored",
            key.len()
        );
        return;
    }
    batch.put(key, head, json, tail);
}

/// A stored value read back: the binary form ([`STORED_BINARY`], the epoch, the
/// registrar's record) or the JSON object of [`Stored`] that earlier versions wrote (and
/// the owned form's writes still do); `None` if it is neither.
fn decode_stored(value: &[u8]) -> Option<Stored> {
    match *value.first()? {
        b'{' => serde_json::from_slice(value).ok(),
        STORED_BINARY => {
            let epoch = value.get(1..5)?.try_into().ok()?;
            Some(Stored {
                seq_epoch: u32::from_le_bytes(epoch),
                registration: decode_record(value.get(5..)?)?,
            })
        }
        _ => None,
    }
}

/// Judges the stored record `value` of `key` at open: kept (its epoch advanced, into
/// `keep`) or dropped and counted (unreadable, filed under another key, expired, out of
/// epochs).
fn judge(key: &str, value: &[u8], now_ms: u64, restored: &mut Restored, keep: &mut Vec<Stored>) {
    match decode_stored(value) {
        None => restored.corrupt += 1,
        Some(s) if s.registration.key != key => restored.corrupt += 1,
        Some(s) if s.registration.expires_unix_ms <= now_ms => restored.expired += 1,
        Some(s) if OutboundSeq::of_epoch(s.seq_epoch.saturating_add(1)).is_none() => {
            restored.exhausted += 1
        }
        Some(s) => keep.push(Stored {
            seq_epoch: s.seq_epoch + 1,
            registration: s.registration,
        }),
    }
}

/// The store of slowpath shard `shard` over the SQN state `base`: [`registrations_path`]
/// for shard 0 (one shard keeps the file it always had), `<that>.shard<k>` for the others,
/// named like the SQN journal shards.
pub fn shard_store_path(base: &Path, shard: usize) -> PathBuf {
    super::journal::shard_path(&registrations_path(base), shard)
}

/// The compaction thread's work: the live records (newest per key, tombstones and what they
/// cover dropped) of `path`'s first `upto` bytes, copied as they are into a durable temp
/// file beside it.
fn compact_into(path: &Path, upto: u64) -> std::io::Result<(File, u64)> {
    let bytes = log::read_all(path)?.unwrap_or_default();
    let end = usize::try_from(upto).unwrap_or(usize::MAX).min(bytes.len());
    if !bytes.starts_with(MAGIC) {
        return Err(std::io::Error::other(
            "the log's magic is gone; not compacted",
        ));
    }
    let (live, _) = log::live_records(&bytes[..end], MAGIC.len());
    let mut batch = Batch::default();
    for f in &live {
        batch.verbatim(&bytes[f.frame.clone()]);
    }
    log::write_temp(&log::with_suffix(path, COMPACT_SUFFIX), &batch)
}

/// The SQN records (see [`SQN_KEY_PREFIX`]) of every registration store over the SQN state
/// `base`, whatever number of shards wrote them: the largest SQN per IMPI. Read before the
/// SQN state is opened, which folds them into its snapshot before any store is opened (and
/// drops them). A store that cannot be read gives none (its open then sets it aside).
pub(super) fn sqn_state_in_stores(base: &Path) -> SqnState {
    let mut state = SqnState::new();
    for k in std::iter::once(0).chain(shard_store_files(base)) {
        sqn_records_in(&shard_store_path(base, k), &mut state);
    }
    state
}

/// Folds the SQN records of the log at `path` into `state` (the larger SQN per IMPI); a file
/// that is missing or no log adds nothing.
fn sqn_records_in(path: &Path, state: &mut SqnState) {
    let Ok(Some(bytes)) = log::read_all(path) else {
        return;
    };
    if !bytes.starts_with(MAGIC) {
        return;
    }
    // Every SQN record, not only the newest per IMPI: the fold keeps the largest SQN of each
    // IMPI (as `apply_journal` and the snapshot's fold always did), so an older record
    // changes nothing and no map of the keys is needed.
    log::each_frame(&bytes, MAGIC.len(), |f| {
        if f.put && bytes[f.key].starts_with(SQN_KEY_PREFIX.as_bytes()) {
            if let Ok(line) = std::str::from_utf8(&bytes[f.value]) {
                apply_journal(state, line);
            }
        }
    });
}

/// Opens the store at `path`. A store that cannot be created is logged and its shard runs
/// without one (its registrations then do not survive a restart).
fn open_at(path: &Path) -> (Option<RegistrationStore>, Restored) {
    match RegistrationStore::open(path, SystemTime::now()) {
        Ok((store, restored)) => (Some(store), restored),
        Err(e) => {
            tracing::error!("{e}; registrations will not survive a restart");
            (None, Restored::default())
        }
    }
}

/// The shard numbers (>= 1) of the store files over `base`, whatever number of shards
/// wrote them.
fn shard_store_files(base: &Path) -> Vec<usize> {
    super::journal::shard_files(&registrations_path(base)).unwrap_or_else(|e| {
        tracing::error!("{e}");
        Vec::new()
    })
}

/// Opens the registration stores of `shards` slowpath shards over the SQN state `base`, one
/// per shard, and returns each with the registrations its shard restores. Every record
/// ends in the store of the shard `shard_of` gives its IMPI: when the number of shards
/// changed since the store was written, a record is written to its new shard's store
/// (durable) before it is deleted from its old one, so a crash between leaves it twice and
/// the next start keeps the copy in the higher epoch (every copy's epoch advances at each
/// open, and no worker sends before this returns). Stores of shards that no longer exist are
/// removed once emptied.
pub(super) fn open_shards(
    base: &Path,
    shards: usize,
    shard_of: impl Fn(&str) -> usize,
) -> Vec<(Option<RegistrationStore>, Restored)> {
    let shards = shards.max(1);
    let stale: Vec<usize> = shard_store_files(base)
        .into_iter()
        .filter(|&k| k >= shards)
        .collect();
    let mut opened: Vec<(Option<RegistrationStore>, Restored)> = (0..shards)
        .map(|k| open_at(&shard_store_path(base, k)))
        .collect();
    // Records leaving their store, by the shard they go to.
    let mut moving: Vec<Vec<(PersistedRegistration, u32)>> = vec![Vec::new(); shards];
    let mut leaving: Vec<Vec<RegistrationChange>> = (0..shards).map(|_| Vec::new()).collect();
    let home = |r: &PersistedRegistration| shard_of(&r.impi).min(shards - 1);
    for (k, (_, restored)) in opened.iter_mut().enumerate() {
        let (stay, go): (Vec<_>, Vec<_>) = std::mem::take(&mut restored.records)
            .into_iter()
            .partition(|(r, _)| home(r) == k);
        restored.records = stay;
        for (r, epoch) in go {
            leaving[k].push(RegistrationChange::Delete(r.key.clone()));
            moving[home(&r)].push((r, epoch));
        }
    }
    let mut stale_stores = Vec::new();
    for k in stale {
        let path = shard_store_path(base, k);
        let (store, restored) = open_at(&path);
        if let Some((_, first)) = opened.first_mut() {
            first.expired += restored.expired;
            first.corrupt += restored.corrupt;
            first.exhausted += restored.exhausted;
        }
        for (r, epoch) in restored.records {
            moving[home(&r)].push((r, epoch));
        }
        stale_stores.push((path, store));
    }
    for ((store, restored), incoming) in opened.iter_mut().zip(moving) {
        let adopted = merge_moved(&mut restored.records, incoming);
        if let Some(store) = store {
            if let Err(e) = store.adopt(&adopted) {
                tracing::error!("{e}");
            }
        }
    }
    for ((store, _), deletes) in opened.iter_mut().zip(leaving) {
        if let Some(store) = store {
            if let Err(e) = store.apply(&deletes) {
                tracing::error!("{e}");
            }
        }
    }
    for (path, store) in stale_stores {
        drop(store);
        remove_file(&path);
    }
    opened
}

/// Adds the records `incoming` moved from other shards to `records` (a shard's own), keeping
/// the higher epoch where a key is in both; returns the moved records that were taken, to be
/// written to the shard's store.
fn merge_moved(
    records: &mut Vec<(PersistedRegistration, u32)>,
    incoming: Vec<(PersistedRegistration, u32)>,
) -> Vec<(PersistedRegistration, u32)> {
    let mut at: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, (r, _))| (r.key.clone(), i))
        .collect();
    let mut adopted: Vec<(PersistedRegistration, u32)> = Vec::new();
    for (r, epoch) in incoming {
        match at.get(&r.key) {
            Some(&i) if records[i].1 >= epoch => {}
            Some(&i) => {
                records[i] = (r.clone(), epoch);
                adopted.push((r, epoch));
            }
            None => {
                at.insert(r.key.clone(), records.len());
                records.push((r.clone(), epoch));
                adopted.push((r, epoch));
            }
        }
    }
    adopted
}

fn remove_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!("{}: removed", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!("{}: {e}", path.display()),
    }
}

/// Removes every registration store over the SQN state `base` (proxy mode keeps no
/// registrations across a restart — its Service-Route state is not stored — and a store
/// left by an embedded run must not bring back registrations that ended while it was not
/// used).
pub(super) fn remove_all(base: &Path) {
    for k in std::iter::once(0).chain(shard_store_files(base)) {
        remove_file(&shard_store_path(base, k));
    }
}

/// What start-up restored.
pub(super) struct RestorePlan {
    /// Per worker, the `RestoreSaSet` commands of the UEs it owns.
    pub commands: Vec<Vec<WorkerCommand>>,
    /// Registrations restored.
    pub restored: usize,
    /// Stored registrations dropped (expired, corrupt, exhausted, refused).
    pub not_restored: usize,
}

/// Restores `restored` into the core before any event: reserves the sets' SPIs in the SA
/// table (so no new set gets them), registers them again in the core (deadlines armed), and
/// returns the commands installing each set in the worker that owns its UE. A record the
/// table or the core refuses (SPI or IMPI taken) is deleted from the store, its SPIs
/// released. `owns` is told each SPI of a restored set (with shards, the workers' SPI ->
/// shard map).
pub(super) fn restore(
    core: &mut Core,
    table: &InboundTable,
    steering: &Steering,
    workers: usize,
    restored: Restored,
    store: Option<&mut RegistrationStore>,
    owns: &dyn Fn(u32),
) -> RestorePlan {
    if store.is_some() {
        core.track_registration_changes();
    }
    let mut plan = RestorePlan {
        commands: vec![Vec::new(); workers],
        restored: 0,
        not_restored: restored.expired + restored.corrupt + restored.exhausted,
    };
    let spis: Vec<u32> = restored
        .records
        .iter()
        .flat_map(|(r, _)| [r.set.spi_pc, r.set.spi_ps])
        .collect();
    let refused: HashSet<u32> = table.reserve(&spis).into_iter().collect();
    let (now, wall) = (Instant::now(), SystemTime::now());
    let (usable, mut gone): (Vec<_>, Vec<_>) = restored
        .records
        .into_iter()
        .partition(|(r, _)| !refused.contains(&r.set.spi_pc) && !refused.contains(&r.set.spi_ps));
    let records: Vec<PersistedRegistration> = usable.iter().map(|(r, _)| r.clone()).collect();
    let results = core.restore_registrations(&records, now, wall);
    for ((rec, epoch), result) in usable.into_iter().zip(results) {
        let set = match (result, rec.set.to_set()) {
            (Ok(()), Ok(set)) => set,
            (result, _) => {
                tracing::warn!("registration {} not restored: {result:?}", rec.key);
                for spi in [rec.set.spi_pc, rec.set.spi_ps] {
                    let _ = table.release(spi);
                }
                gone.push((rec, epoch));
                continue;
            }
        };
        owns(set.spi_pc);
        owns(set.spi_ps);
        let owner = steering.queue_for_ue(set.ue).min(workers.saturating_sub(1));
        if let Some(cmds) = plan.commands.get_mut(owner) {
            cmds.push(WorkerCommand::RestoreSaSet {
                set: Box::new(set),
                seq_epoch: epoch,
            });
            plan.restored += 1;
        }
    }
    plan.not_restored += gone.len();
    if let Some(store) = store {
        let deletes: Vec<RegistrationChange> = gone
            .into_iter()
            .map(|(r, _)| RegistrationChange::Delete(r.key.clone()))
            .collect();
        if let Err(e) = store.apply(&deletes) {
            tracing::error!("{e}");
        }
    }
    plan
}

/// The JSON of a record, in a buffer zeroized when dropped or moved (it holds keys).
fn encode(s: &Stored) -> Result<SecretBuf, serde_json::Error> {
    let mut out = SecretBuf::with_capacity(RECORD_CAPACITY);
    serde_json::to_writer(&mut out, s)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_slowpath::registrar::PersistedSet;
    use std::time::Duration;

    /// What the record buffers' drops rely on (`wipe_on_drop` in the registrar): a
    /// `Zeroizing<Vec<u8>>` emptied before its drop still has every byte of its allocation
    /// zeroed by `zeroize` (as spare capacity), none left behind.
    #[test]
    fn an_emptied_zeroizing_buffer_is_wiped_whole() {
        use zeroize::Zeroize;
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(1000));
        buf.extend((0..700u32).map(|i| (i % 251) as u8 | 1));
        buf.clear();
        // What `Zeroizing`'s drop runs.
        buf.zeroize();
        let spare = buf.spare_capacity_mut();
        assert!(spare.len() >= 1000);
        // SAFETY: every byte of the allocation was initialised, by the writes above or by
        // the zeroize, so reading them as `u8` is defined.
        let wiped = spare.iter().all(|b| unsafe { b.assume_init() } == 0);
        assert!(wiped, "a byte of the emptied buffer survived its zeroize");
    }

    /// A [`ChangeSet`]'s wipe zeroizes every byte its records held and keeps the allocation
    /// (read back through the buffer's spare capacity after the wipe).
    #[test]
    fn a_change_sets_wipe_zeroizes_its_records() {
        let mut buf = SecretBuf::with_capacity(4000);
        let record: Vec<u8> = (0..3500u32).map(|i| (i % 251) as u8 | 1).collect();
        buf.extend_from_slice(&record);
        let (ptr, cap) = (buf.as_ptr(), buf.capacity());
        buf.wipe();
        assert!(buf.is_empty() && buf.capacity() == cap);
        // SAFETY: the allocation is still the buffer's (capacity kept, nothing written since),
        // and all its first 3,500 bytes were initialised, by the writes or by the wipe.
        let held = unsafe { std::slice::from_raw_parts(ptr, record.len()) };
        assert!(held.iter().all(|&b| b == 0), "a byte survived the wipe");
    }

    /// A [`ChangeSet`] commits as the same changes given one by one
    /// ([`RegistrationChange::Encoded`] and `Delete`): the log holds the same live records,
    /// in the set's order (a delete after a put of its key wins, a put after a delete); a
    /// cleared set writes nothing.
    #[test]
    fn a_change_set_commits_as_its_changes_one_by_one() {
        let regs: Vec<_> = (0..5)
            .map(|i: u32| reg(&format!("user{i}@x"), 900 + 2 * i, 2000))
            .collect();
        let record = |r: &PersistedRegistration| {
            akagate_slowpath::registrar::encode_record(r)
                .unwrap()
                .into_inner()
        };
        let d = tmpdir("changeset");
        let (p1, p2) = (d.join("one.registrations"), d.join("set.registrations"));
        let (mut one, _) = RegistrationStore::open(&p1, at(1000)).unwrap();
        let (mut set_store, _) = RegistrationStore::open(&p2, at(1000)).unwrap();
        let mut changes = Vec::new();
        let mut set = ChangeSet::default();
        for (i, r) in regs.iter().enumerate() {
            changes.push(RegistrationChange::Encoded(
                akagate_slowpath::registrar::EncodedRegistration {
                    key: r.key.clone(),
                    spi_ps: r.set.spi_ps,
                    record: record(r),
                },
            ));
            set.push_encoded(&r.key, r.set.spi_ps, &record(r));
            if i == 1 {
                changes.push(RegistrationChange::Delete(r.key.clone()));
                set.push_delete(&r.key);
            }
        }
        changes.push(RegistrationChange::Delete(regs[3].key.clone()));
        set.push_delete(&regs[3].key);
        let last = &regs[3];
        changes.push(RegistrationChange::Encoded(
            akagate_slowpath::registrar::EncodedRegistration {
                key: last.key.clone(),
                spi_ps: last.set.spi_ps,
                record: record(last),
            },
        ));
        set.push_encoded(&last.key, last.set.spi_ps, &record(last));
        assert_eq!(set.len(), changes.len());
        one.apply(&changes).unwrap();
        set_store.commit_set(&set, &[]).unwrap();
        let (v1, v2) = (values(&p1), values(&p2));
        assert_eq!(v1.len(), 4, "user1 deleted, user3 put again");
        assert_eq!(v1, v2);
        set.clear();
        assert!(set.is_empty());
        let len = fs::metadata(&p2).unwrap().len();
        set_store.commit_set(&set, &[]).unwrap();
        assert_eq!(
            fs::metadata(&p2).unwrap().len(),
            len,
            "an empty set writes nothing"
        );
        drop((one, set_store));
        let _ = fs::remove_dir_all(&d);
    }

    /// The live records of the log at `p`, key -> value.
    fn values(p: &Path) -> HashMap<String, Vec<u8>> {
        let bytes = fs::read(p).unwrap();
        assert!(bytes.starts_with(MAGIC));
        let (live, damage) = log::live_records(&bytes, MAGIC.len());
        assert_eq!(damage, log::Damage::default());
        live.into_iter()
            .map(|f| {
                let key = String::from_utf8(bytes[f.key].to_vec()).unwrap();
                (key, bytes[f.value].to_vec())
            })
            .collect()
    }

    /// Appends puts of raw values (whatever their content) to the log at `p`.
    fn append_raw(p: &Path, records: &[(&str, &[u8])]) {
        let mut batch = Batch::default();
        for (k, v) in records {
            batch.put(k, &[], v, b"");
        }
        let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
        batch.write_to(&mut f).unwrap();
    }

    /// The shutdown's read-back of the SQN records takes every checksummed record of an
    /// IMPI and keeps the largest SQN (the fold's rule), not only the newest record; bad bytes
    /// between records and a torn tail are skipped as the store's open skips them.
    #[test]
    fn the_sqn_records_read_back_keep_each_impis_largest_sqn() {
        let d = tmpdir("sqn-read-back");
        let p = d.join("reg.log");
        let (s, _) = RegistrationStore::open(&p, at(1000)).unwrap();
        let key = |impi: &str| format!("{SQN_KEY_PREFIX}{impi}");
        append_raw(
            &p,
            &[
                (&key("a@x"), b"000000000005 a@x\n"),
                (&key("b@x"), b"000000000003 b@x\n"),
                (&key("a@x"), b"000000000009 a@x\n"),
            ],
        );
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"\x07not a record").unwrap();
        drop(f);
        append_raw(&p, &[(&key("a@x"), b"000000000007 a@x\n")]);
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, &[0x30, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let want: SqnState = [("a@x".to_string(), 9), ("b@x".to_string(), 3)].into();
        let mut got = SqnState::new();
        sqn_records_in(&p, &mut got);
        assert_eq!(got, want);
        drop(s);
        let _ = fs::remove_dir_all(&d);
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("akagate-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A registration of `impi` over SPIs `spi`, `spi + 1`, expiring at `expires` (Unix s).
    fn reg(impi: &str, spi: u32, expires: u64) -> PersistedRegistration {
        PersistedRegistration {
            key: impi.to_string(),
            impi: impi.to_string(),
            impus: vec![format!("sip:{impi}")],
            contact: "sip:ue@10.0.0.2:5090".into(),
            transport: "udp".into(),
            expires_unix_ms: expires * 1000,
            security_server: Some((
                "ipsec-3gpp".into(),
                vec![("alg".into(), "hmac-sha-1-96".into())],
            )),
            set: PersistedSet {
                ue: "10.0.0.2".parse().unwrap(),
                local: "10.0.0.1".parse().unwrap(),
                auth: "hmac-sha-1-96".into(),
                encr: "null".into(),
                integ_key: "11".repeat(20),
                encr_key: String::new(),
                salt: "00000000".into(),
                spi_pc: spi,
                spi_ps: spi + 1,
                spi_uc: 7000,
                spi_us: 7001,
                port_pc: 5100,
                port_ps: 6100,
                port_uc: 5080,
                port_us: 5090,
            },
        }
    }

    fn at(unix_s: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(unix_s)
    }

    /// The running daemon writes a record from the borrowed registration, through one reused
    /// buffer: byte for byte the JSON of the owned [`Stored`] (what earlier versions wrote
    /// and what `load` reads), for every record of a batch, the longer after the shorter too.
    #[test]
    fn a_batch_writes_each_record_as_the_owned_form_encodes_it() {
        let d = tmpdir("borrowed");
        let p = d.join("s.registrations");
        let (mut s, _) = RegistrationStore::open(&p, at(1000)).unwrap();
        let mut long = reg("long-name-for-a-longer-record@x", 900, 2000);
        long.impus.push("tel:+15550100".into());
        let short = reg("s@x", 300, 2000);
        let batch = [long, short];
        s.apply(&batch.clone().map(|r| RegistrationChange::Put(Box::new(r))))
            .unwrap();
        let stored = values(&p);
        for r in &batch {
            let owned = serde_json::to_vec(&Stored {
                seq_epoch: 0,
                registration: r.clone(),
            })
            .unwrap();
            assert_eq!(stored[&r.key], owned, "{}", r.key);
            let back: Stored = serde_json::from_slice(&stored[&r.key]).unwrap();
            assert_eq!(back.registration, *r);
        }
        drop(s);
        let _ = fs::remove_dir_all(&d);
    }

    /// A registration the registrar hands out encoded is stored in the binary form (the
    /// tag, its epoch, the registrar's record), for epoch 0, 7 and the largest epoch, and
    /// reads back as the owned [`Stored`]; a batch of encoded records reads back as written.
    #[test]
    fn an_encoded_registration_is_stored_as_the_owned_form_encodes_it() {
        let r = reg("long-name-for-a-longer-record@x", 900, 2000);
        let encoded = |r: &PersistedRegistration| {
            RegistrationChange::Encoded(akagate_slowpath::registrar::EncodedRegistration {
                key: r.key.clone(),
                spi_ps: r.set.spi_ps,
                record: akagate_slowpath::registrar::encode_record(r)
                    .unwrap()
                    .into_inner(),
            })
        };
        let d = tmpdir("encoded");
        let p = d.join("s.registrations");
        let (mut s, _) = RegistrationStore::open(&p, at(1000)).unwrap();
        for seq_epoch in [0, 7, u32::MAX] {
            if seq_epoch > 0 {
                s.epochs.insert(r.key.clone(), (r.set.spi_ps, seq_epoch));
            }
            s.apply(&[encoded(&r)]).unwrap();
            let value = &values(&p)[&r.key];
            let record = akagate_slowpath::registrar::encode_record(&r).unwrap();
            let want: Vec<u8> = [&[STORED_BINARY][..], &seq_epoch.to_le_bytes(), &record].concat();
            assert_eq!(*value, want, "epoch {seq_epoch}");
            let back = decode_stored(value).unwrap();
            assert_eq!((back.seq_epoch, &back.registration), (seq_epoch, &r));
        }
        s.epochs.clear();
        let batch = [r, reg("s@x", 300, 2000)];
        s.apply(&batch.each_ref().map(encoded)).unwrap();
        drop(s);
        let (_, restored) = RegistrationStore::open(&p, at(1001)).unwrap();
        let mut back: Vec<_> = restored.records.iter().map(|(r, _)| r.clone()).collect();
        back.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(back, batch);
        let _ = fs::remove_dir_all(&d);
    }

    /// A log as earlier versions wrote it (JSON values, `{"seq_epoch":…,"registration":…}`,
    /// byte for byte what their tests held their writer to) opens, and binary records
    /// appended after the text ones win over them per key: text and binary records mixed in
    /// one log, each read by its first byte; a binary value cut short, another tag, or a
    /// registration filed under another key is corrupt.
    #[test]
    fn text_records_of_earlier_versions_and_binary_records_are_both_read() {
        let d = tmpdir("mixed");
        let p = d.join("s.registrations");
        let (s, _) = RegistrationStore::open(&p, at(1000)).unwrap();
        drop(s);
        let json = |r: &PersistedRegistration, seq_epoch: u32| {
            let registration = r.clone();
            serde_json::to_vec(&Stored {
                seq_epoch,
                registration,
            })
            .unwrap()
        };
        let binary = |r: &PersistedRegistration, seq_epoch: u32| -> Vec<u8> {
            let record = akagate_slowpath::registrar::encode_record(r).unwrap();
            [&[STORED_BINARY][..], &seq_epoch.to_le_bytes(), &record].concat()
        };
        let (a, b, c) = (
            reg("a@x", 300, 2000),
            reg("b@x", 400, 2000),
            reg("c@x", 500, 2000),
        );
        let mut b2 = b.clone();
        b2.contact = "<sip:moved@ue>".into();
        let (ja, jb, bb2, bc) = (json(&a, 3), json(&b, 1), binary(&b2, 2), binary(&c, 4));
        let cut = &bc[..bc.len() - 1];
        let other_key = binary(&a, 0);
        append_raw(
            &p,
            &[
                ("a@x", &ja),
                ("b@x", &jb),
                ("b@x", &bb2),
                ("c@x", &bc),
                ("d@x", cut),
                ("e@x", &[7, 0, 0, 0, 0]),
                ("f@x", &other_key),
            ],
        );
        let (_, r) = RegistrationStore::open(&p, at(1001)).unwrap();
        let mut back: Vec<_> = r.records.clone();
        back.sort_by(|x, y| x.0.key.cmp(&y.0.key));
        assert_eq!(r.corrupt, 3);
        assert_eq!(back, [(a, 4), (b2, 3), (c, 5)]);
        let _ = fs::remove_dir_all(&d);
    }

    /// Issue 14: what was stored comes back after a restart, each restart in a new ESP
    /// sequence-number epoch made durable at open; expired and deleted bindings do not; the
    /// file is private.
    #[test]
    fn registrations_survive_reopen_in_a_new_epoch_each_time() {
        let d = tmpdir("reopen");
        let p = registrations_path(&d.join("subs.toml.sqn-state"));
        assert_eq!(p, d.join("subs.toml.registrations"));
        {
            let (mut s, r) = RegistrationStore::open(&p, at(1000)).unwrap();
            assert!(r.records.is_empty());
            s.apply(&[
                RegistrationChange::Put(Box::new(reg("a@x", 300, 2000))),
                RegistrationChange::Put(Box::new(reg("b@x", 400, 1100))),
                RegistrationChange::Put(Box::new(reg("c@x", 500, 2000))),
                RegistrationChange::Delete("c@x".into()),
            ])
            .unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let bytes = fs::read(&p).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("sqn"),
            "no SQN state in here"
        );
        // b expired while down; a comes back in epoch 1, then 2.
        let (mut s, r) = RegistrationStore::open(&p, at(1200)).unwrap();
        assert_eq!((r.expired, r.corrupt, r.exhausted), (1, 0, 0));
        assert_eq!(r.records.len(), 1);
        assert_eq!(
            (r.records[0].0.clone(), r.records[0].1),
            (reg("a@x", 300, 2000), 1)
        );
        assert_eq!(s.len().unwrap(), 1);
        // A refresh of the restored set keeps its epoch; ...
        s.apply(&[RegistrationChange::Put(Box::new(reg("a@x", 300, 3000)))])
            .unwrap();
        drop(s);
        let (mut s, r) = RegistrationStore::open(&p, at(1300)).unwrap();
        assert_eq!(r.records[0].1, 2);
        assert_eq!(r.records[0].0.expires_unix_ms, 3_000_000);
        // ... a new set (registered again) starts over at epoch 0, restored in epoch 1.
        s.apply(&[RegistrationChange::Put(Box::new(reg("a@x", 900, 3000)))])
            .unwrap();
        drop(s);
        let (_, r) = RegistrationStore::open(&p, at(1300)).unwrap();
        assert_eq!((r.records[0].0.set.spi_pc, r.records[0].1), (900, 1));
        let _ = fs::remove_dir_all(&d);
    }

    /// Restart time (issue 14, `bench/run.sh restart`): `AKAGATE_RESTART_N` (100k) stored
    /// registrations opened, their epochs advanced and made durable, their SPIs reserved in
    /// an SA table and the registrations restored into a core; prints the time of each step.
    #[test]
    #[ignore = "benchmark: bench/run.sh restart"]
    fn restart_time() {
        use akagate_fastpath::worker::InboundTable;
        use akagate_slowpath::hss::Hss;
        use akagate_slowpath::CoreConfig;
        use rand::SeedableRng;
        let n: u32 = std::env::var("AKAGATE_RESTART_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let d = tmpdir("restart-time");
        let p = d.join("r.registrations");
        let wall = SystemTime::now();
        let expires = unix_ms(wall) / 1000 + 3600;
        let (mut s, _) = RegistrationStore::open(&p, wall).unwrap();
        let table = std::sync::Arc::new(InboundTable::with_capacity(2 * n as usize + 64).unwrap());
        let layout = table.layout();
        let changes: Vec<RegistrationChange> = (0..n)
            .map(|i| {
                let mut r = reg(&format!("ue{i}@x"), 0, expires);
                r.set.spi_pc = layout.compose(2 * i, 1);
                r.set.spi_ps = layout.compose(2 * i + 1, 1);
                r.set.ue = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                RegistrationChange::Put(Box::new(r))
            })
            .collect();
        let t = std::time::Instant::now();
        s.apply(&changes).unwrap();
        let write = t.elapsed();
        drop((s, changes));
        let size = fs::metadata(&p).unwrap().len();
        let t = std::time::Instant::now();
        let (_, restored) = RegistrationStore::open(&p, SystemTime::now()).unwrap();
        let open = t.elapsed();
        let hss = Hss::from_records(&[]).unwrap();
        let mut core = akagate_slowpath::Core::new(
            CoreConfig::default(),
            hss,
            table.clone(),
            Box::new(rand::rngs::StdRng::seed_from_u64(1)),
        );
        let t2 = std::time::Instant::now();
        let plan = restore(
            &mut core,
            &table,
            &Steering::UeKey { queues: 2 },
            2,
            restored,
            None,
            &|_| {},
        );
        let rest = t2.elapsed();
        assert_eq!(plan.restored, n as usize);
        assert_eq!(core.registered(), n as usize);
        println!(
            "restart_time n={n} store_bytes={size} write_ms={} open_ms={} restore_ms={} total_ms={}",
            write.as_millis(),
            open.as_millis(),
            rest.as_millis(),
            t.elapsed().as_millis()
        );
        let _ = fs::remove_dir_all(&d);
    }

    /// Issue 10: each slowpath shard keeps its own store, and when the number of shards
    /// changes between runs (2 -> 1 -> 3) every registration comes back exactly once, in the
    /// shard of its IMPI, its epoch advancing at every start; the stores of shards that no
    /// longer exist are gone. A record left in two stores (a crash while moving it) comes
    /// back once, in the higher epoch.
    #[test]
    fn registrations_follow_their_shard_when_the_number_of_shards_changes() {
        let d = tmpdir("shards");
        let base = d.join("subs.toml.sqn-state");
        let of =
            |n: usize| move |impi: &str| akagate_proto::shard::shard_of_name(impi.as_bytes(), n);
        let impis: Vec<String> = (0..12).map(|i| format!("u{i}@x")).collect();
        let put = |r: PersistedRegistration| RegistrationChange::Put(Box::new(r));
        // Two shards; each writes its own IMPIs.
        {
            let mut opened = open_shards(&base, 2, of(2));
            for (i, impi) in impis.iter().enumerate() {
                let k = of(2)(impi);
                let store = opened[k].0.as_mut().unwrap();
                store
                    .apply(&[put(reg(impi, 1000 + 2 * i as u32, 4_000_000_000))])
                    .unwrap();
            }
        }
        assert!(shard_store_path(&base, 1).exists());
        let check = |opened: &[(Option<RegistrationStore>, Restored)], n: usize, epoch: u32| {
            let mut seen = Vec::new();
            for (k, (store, restored)) in opened.iter().enumerate() {
                assert_eq!(
                    store.as_ref().unwrap().len().unwrap(),
                    restored.records.len() as u64
                );
                for (r, e) in &restored.records {
                    assert_eq!(of(n)(&r.impi), k, "{} restored in shard {k}", r.impi);
                    assert_eq!(*e, epoch, "{}", r.impi);
                    seen.push(r.impi.clone());
                }
            }
            seen.sort();
            let mut want = impis.clone();
            want.sort();
            assert_eq!(seen, want);
        };
        let opened = open_shards(&base, 1, of(1));
        check(&opened, 1, 1);
        drop(opened);
        assert!(
            !shard_store_path(&base, 1).exists(),
            "shard 1's store removed"
        );
        let opened = open_shards(&base, 3, of(3));
        check(&opened, 3, 2);
        drop(opened);
        // A crash while moving: a record of shard 2 also left in shard 0's store, in an
        // older epoch.
        let moved = impis.iter().find(|i| of(3)(i) == 2).unwrap().clone();
        {
            let (mut s, _) = RegistrationStore::open(&shard_store_path(&base, 0), at(1)).unwrap();
            s.adopt(&[(reg(&moved, 1, 4_000_000_000), 1)]).unwrap();
        }
        let opened = open_shards(&base, 3, of(3));
        let epochs: Vec<u32> = opened
            .iter()
            .flat_map(|(_, r)| r.records.iter())
            .filter(|(r, _)| r.impi == moved)
            .map(|(_, e)| *e)
            .collect();
        assert_eq!(epochs, vec![3], "one copy, the higher epoch");
        assert_eq!(
            opened[0].0.as_ref().unwrap().len().unwrap(),
            opened[0].1.records.len() as u64
        );
        drop(opened);
        remove_all(&base);
        assert!(!shard_store_path(&base, 0).exists() && !shard_store_path(&base, 2).exists());
        let _ = fs::remove_dir_all(&d);
    }

    /// A set restored as often as the 32-bit sequence space allows is not restored again
    /// (its UE registers anew): no epoch is ever reused.
    #[test]
    fn a_set_out_of_epochs_is_dropped() {
        let d = tmpdir("epochs");
        let p = d.join("r.registrations");
        let (mut s, _) = RegistrationStore::open(&p, at(10)).unwrap();
        s.apply(&[RegistrationChange::Put(Box::new(reg(
            "a@x", 300, 1_000_000,
        )))])
        .unwrap();
        drop(s);
        for epoch in 1..OutboundSeq::EPOCHS {
            let (_, r) = RegistrationStore::open(&p, at(10)).unwrap();
            assert_eq!(r.records[0].1, epoch);
        }
        let (s, r) = RegistrationStore::open(&p, at(10)).unwrap();
        assert_eq!((r.records.len(), r.exhausted), (0, 1));
        assert_eq!(s.len().unwrap(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    /// A corrupt store never stops the daemon: an unreadable file is set aside and a new one
    /// started; an unreadable record is dropped and counted.
    #[test]
    fn a_corrupt_store_is_set_aside_and_a_corrupt_record_dropped() {
        let d = tmpdir("corrupt");
        let p = d.join("r.registrations");
        fs::write(
            &p,
            b"this is neither a log nor a redb file, not even close.........",
        )
        .unwrap();
        let (mut s, r) = RegistrationStore::open(&p, at(10)).unwrap();
        assert_eq!((r.records.len(), r.corrupt), (0, 1));
        let aside: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1);
        // A record that does not decode, and one filed under another key.
        let other = serde_json::to_vec(&Stored {
            seq_epoch: 0,
            registration: reg("b@x", 400, 100),
        })
        .unwrap();
        append_raw(&p, &[("junk@x", b"{not json"), ("a@x", &other)]);
        s.apply(&[RegistrationChange::Put(Box::new(reg("c@x", 500, 100)))])
            .unwrap();
        drop(s);
        let (_, r) = RegistrationStore::open(&p, at(10)).unwrap();
        assert_eq!((r.records.len(), r.corrupt), (1, 2));
        assert_eq!(r.records[0].0.key, "c@x");
        let _ = fs::remove_dir_all(&d);
    }

    /// A crash during an append leaves a torn tail: it is dropped at open (not counted as
    /// corrupt), every acknowledged record comes back, and the file is rewritten clean.
    #[test]
    fn a_torn_tail_is_dropped_and_every_committed_record_kept() {
        let d = tmpdir("torn");
        let p = d.join("r.registrations");
        let (mut s, _) = RegistrationStore::open(&p, at(10)).unwrap();
        s.apply(&[
            RegistrationChange::Put(Box::new(reg("a@x", 300, 2000))),
            RegistrationChange::Put(Box::new(reg("b@x", 400, 2000))),
        ])
        .unwrap();
        drop(s);
        let whole = fs::read(&p).unwrap();
        // The next batch torn after a few bytes of its second record, then zeros beyond.
        let mut batch = Batch::default();
        let json = serde_json::to_vec(&Stored {
            seq_epoch: 0,
            registration: reg("c@x", 500, 2000),
        })
        .unwrap();
        batch.put("c@x", &[], &json, b"");
        batch.put("d@x", &[], &json, b"");
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        batch.write_to(&mut f).unwrap();
        drop(f);
        let len = fs::metadata(&p).unwrap().len();
        for cut in [len - 5, whole.len() as u64 + 3] {
            let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(cut).unwrap();
            f.set_len(cut + 512).unwrap();
            drop(f);
            let (_, r) = RegistrationStore::open(&p, at(10)).unwrap();
            let mut keys: Vec<_> = r.records.iter().map(|(r, _)| r.key.clone()).collect();
            keys.sort();
            let want: &[&str] = if cut > whole.len() as u64 + 100 {
                &["a@x", "b@x", "c@x"]
            } else {
                &["a@x", "b@x"]
            };
            assert_eq!(keys, want, "cut at {cut}");
            assert_eq!(r.corrupt, 0);
            assert_eq!(values(&p).len(), want.len(), "rewritten without the tail");
        }
        let _ = fs::remove_dir_all(&d);
    }

    /// A record damaged between good ones (a flipped bit) is dropped and counted; the
    /// records after it come back; the file as found is kept aside.
    #[test]
    fn a_corrupt_record_in_the_middle_is_dropped_and_the_rest_kept() {
        let d = tmpdir("bitflip");
        let p = d.join("r.registrations");
        let (mut s, _) = RegistrationStore::open(&p, at(10)).unwrap();
        for (i, k) in ["a@x", "b@x", "c@x"].into_iter().enumerate() {
            s.apply(&[RegistrationChange::Put(Box::new(reg(
                k,
                300 + 2 * i as u32,
                2000,
            )))])
            .unwrap();
        }
        drop(s);
        let mut bytes = fs::read(&p).unwrap();
        let at_b = bytes.windows(9).position(|w| w == b"\"key\":\"b@").unwrap();
        bytes[at_b + 20] ^= 0x01;
        fs::write(&p, &bytes).unwrap();
        let (s, r) = RegistrationStore::open(&p, at(10)).unwrap();
        let mut keys: Vec<_> = r.records.iter().map(|(r, _)| r.key.clone()).collect();
        keys.sort();
        assert_eq!(keys, ["a@x", "c@x"]);
        assert_eq!(r.corrupt, 1);
        assert_eq!(s.len().unwrap(), 2);
        let aside = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .unwrap();
        assert_eq!(fs::read(aside.path()).unwrap(), bytes);
        let _ = fs::remove_dir_all(&d);
    }

    /// Commits appended while a compaction runs on its thread are copied after its records
    /// when it is installed: a put and a delete made meanwhile both hold after a restart,
    /// the compacted file is private, and no compaction file is left beside the log.
    #[test]
    fn commits_made_while_a_compaction_runs_are_kept() {
        let d = tmpdir("compact-tail");
        let p = d.join("r.registrations");
        let (mut s, _) = RegistrationStore::open_with(&p, at(10), 1024).unwrap();
        let first: Vec<RegistrationChange> = (0..4)
            .map(|i| RegistrationChange::Put(Box::new(reg(&format!("u{i}@x"), 100 + 2 * i, 3000))))
            .collect();
        s.apply(&first).unwrap();
        assert!(s.compacting.is_some(), "a compaction started");
        let upto = s.compacting.as_ref().unwrap().upto;
        s.apply(&[
            RegistrationChange::Put(Box::new(reg("late@x", 500, 4000))),
            RegistrationChange::Delete("u0@x".into()),
        ])
        .unwrap();
        s.finish_compaction();
        assert!(s.compacting.is_none());
        assert!(s.compactions() >= 1);
        assert!(s.committed > upto);
        assert_eq!(fs::metadata(&p).unwrap().len(), s.committed);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(s);
        assert!(!log::with_suffix(&p, COMPACT_SUFFIX).exists());
        let (_, r) = RegistrationStore::open(&p, at(10)).unwrap();
        let mut keys: Vec<_> = r.records.iter().map(|(r, _)| r.key.clone()).collect();
        keys.sort();
        assert_eq!(keys, ["late@x", "u1@x", "u2@x", "u3@x"]);
        let _ = fs::remove_dir_all(&d);
    }

    /// The log is compacted while running once enough was appended: the file stays
    /// bounded, and what comes back is the newest record of each key (refreshes, a new set,
    /// the restored epoch of a kept set) while deleted keys stay gone.
    #[test]
    fn compaction_keeps_the_newest_record_per_key_and_drops_tombstones() {
        let d = tmpdir("compact");
        let p = d.join("r.registrations");
        {
            let (mut s, _) = RegistrationStore::open(&p, at(10)).unwrap();
            s.apply(&[RegistrationChange::Put(Box::new(reg("kept@x", 900, 5000)))])
                .unwrap();
        }
        let (mut s, r) = RegistrationStore::open_with(&p, at(10), 4096).unwrap();
        assert_eq!(r.records[0].1, 1);
        let mut bound = 0;
        for round in 0..200u64 {
            let mut changes: Vec<RegistrationChange> = (0..4)
                .map(|i| {
                    let k = format!("u{i}@x");
                    RegistrationChange::Put(Box::new(reg(&k, 1000 + 2 * i, 3000 + round)))
                })
                .collect();
            changes.push(RegistrationChange::Put(Box::new(reg("gone@x", 2000, 9000))));
            changes.push(RegistrationChange::Delete("gone@x".into()));
            if round == 150 {
                changes.push(RegistrationChange::Put(Box::new(reg("kept@x", 900, 5000))));
            }
            s.apply(&changes).unwrap();
            bound = bound.max(fs::metadata(&p).unwrap().len());
            // Every other round the compaction started by the last apply is installed by
            // the next one (with that commit copied after it), else waited for here.
            if round % 2 == 1 {
                s.finish_compaction();
            }
        }
        assert!(s.compactions() >= 10, "{}", s.compactions());
        assert!(bound < 4 * 4096 + 8192, "the log stays bounded: {bound}");
        drop(s);
        let (_, r) = RegistrationStore::open(&p, at(10)).unwrap();
        let mut back: Vec<_> = r
            .records
            .iter()
            .map(|(r, e)| (r.key.clone(), r.expires_unix_ms, *e))
            .collect();
        back.sort();
        assert_eq!(
            back,
            vec![
                ("kept@x".into(), 5_000_000, 2),
                ("u0@x".into(), 3_199_000, 1),
                ("u1@x".into(), 3_199_000, 1),
                ("u2@x".into(), 3_199_000, 1),
                ("u3@x".into(), 3_199_000, 1),
            ]
        );
        let _ = fs::remove_dir_all(&d);
    }

    /// A failed append (here: a handle that cannot write) is an error, nothing of it
    /// counts, and the next batch cuts the file back and is written after the last durable
    /// record: the log reads clean and both good batches come back.
    #[test]
    fn a_failed_append_is_cut_back_before_the_next_one() {
        let d = tmpdir("failed");
        let p = d.join("r.registrations");
        let (mut s, _) = RegistrationStore::open(&p, at(10)).unwrap();
        s.apply(&[RegistrationChange::Put(Box::new(reg("a@x", 300, 2000)))])
            .unwrap();
        let good = std::mem::replace(&mut s.file, File::open(&p).unwrap());
        let failed = [RegistrationChange::Put(Box::new(reg("b@x", 400, 2000)))];
        assert!(s.apply(&failed).is_err());
        s.file = good;
        // What a partial write could have left.
        append_raw(&p, &[("torn", b"{")]);
        fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .set_len(fs::metadata(&p).unwrap().len() - 1)
            .unwrap();
        s.apply(&failed).unwrap();
        s.apply(&[RegistrationChange::Put(Box::new(reg("c@x", 500, 2000)))])
            .unwrap();
        let mut keys: Vec<_> = values(&p).into_keys().collect();
        keys.sort();
        assert_eq!(keys, ["a@x", "b@x", "c@x"]);
        drop(s);
        let _ = fs::remove_dir_all(&d);
    }

    /// A store written by an earlier version (a `redb` database) is read once at open,
    /// every record in its next epoch, and rewritten as a log (mode 0600) that the next
    /// start reads.
    #[test]
    fn an_earlier_versions_database_is_migrated_once() {
        let d = tmpdir("migrate");
        let p = d.join("r.registrations");
        {
            let db = redb::Database::create(&p).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(migrate::TABLE).unwrap();
                for (k, e) in [("a@x", 0), ("b@x", 4)] {
                    let json = serde_json::to_vec(&Stored {
                        seq_epoch: e,
                        registration: reg(k, 300, 2000),
                    })
                    .unwrap();
                    t.insert(k, json.as_slice()).unwrap();
                }
                t.insert("junk@x", b"{".as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let (_, r) = RegistrationStore::open(&p, at(10)).unwrap();
        let mut back: Vec<_> = r.records.iter().map(|(r, e)| (r.key.clone(), *e)).collect();
        back.sort();
        assert_eq!(back, vec![("a@x".into(), 1), ("b@x".into(), 5)]);
        assert_eq!(r.corrupt, 1);
        assert!(fs::read(&p).unwrap().starts_with(MAGIC));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (_, r) = RegistrationStore::open(&p, at(10)).unwrap();
        let mut back: Vec<_> = r.records.iter().map(|(r, e)| (r.key.clone(), *e)).collect();
        back.sort();
        assert_eq!(back, vec![("a@x".into(), 2), ("b@x".into(), 6)]);
        let _ = fs::remove_dir_all(&d);
    }
}
