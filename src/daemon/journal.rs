//! The HSS's SQN state on disk: a snapshot file rewritten atomically (temp + fsync + rename)
//! and an append-only journal of the core's [`PersistRecord`]s, fsynced once per batch (group
//! commit), so a restart never reuses an SQN that left in a challenge (TS 33.102 6.3). The
//! journal is checkpointed while running (a new snapshot, then an empty journal) once it
//! outgrows its bound, so it stays small whatever the traffic. The text forms come from
//! `akagate_slowpath::hss`; only this module touches the files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use akagate_slowpath::hss::{
    apply_journal, parse_snapshot, render_snapshot, HssError, PersistRecord, SqnState,
};

/// The SQN state of all subscribers on disk: `<path>` (snapshot, TOML map IMPI -> last SQN in
/// hex) and `<path>.journal` (one [`PersistRecord::journal_line`] per SQN, appended by
/// [`SqnJournal::append`] and made durable by [`SqnJournal::sync`]).
///
/// After a failed write or fsync the journal is *poisoned*: on Linux a failed fsync may drop
/// the dirty pages and a later fsync report success without them, and a torn line would merge
/// with the next one. So nothing more is appended until [`SqnJournal::checkpoint`] has written
/// a fresh snapshot from the caller's state and started an empty journal.
#[derive(Debug)]
pub struct SqnJournal {
    path: PathBuf,
    journal_path: PathBuf,
    journal: File,
    /// Lines appended since the last successful fsync.
    dirty: bool,
    /// A write or fsync failed; only a checkpoint makes the journal usable again.
    poisoned: bool,
    /// Successful fsyncs of the journal (group commits), for statistics and tests.
    syncs: u64,
    /// Bytes appended since the journal was last emptied.
    bytes: u64,
    /// The journal is checkpointed once it holds this many bytes (or the snapshot's size).
    max_bytes: u64,
    /// Size of the last snapshot written.
    snapshot_bytes: u64,
    /// Checkpoints while running (the journal folded into a new snapshot).
    checkpoints: u64,
}

fn io(path: &Path, e: std::io::Error) -> HssError {
    HssError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `bytes` to `path` atomically: write a temp file, fsync it, rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<u64, HssError> {
    let tmp = with_suffix(path, ".tmp");
    let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    sync_dir(path)?;
    Ok(bytes.len() as u64)
}

/// Fsyncs the directory holding `path`, so a file created or renamed there stays.
fn sync_dir(path: &Path) -> Result<(), HssError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

impl SqnJournal {
    /// Opens (or creates) the state at `path`, returns it with the recovered last SQN per IMPI,
    /// and compacts the journal into the snapshot. Lines after the last fsync may be lost or
    /// torn by a crash; a torn one is ignored: no challenge carrying them was sent, because
    /// sending waits for the fsync (group commit).
    pub fn open(path: &Path) -> Result<(Self, SqnState), HssError> {
        let journal_path = with_suffix(path, ".journal");
        let mut state = match fs::read_to_string(path) {
            Ok(text) => parse_snapshot(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SqnState::new(),
            Err(e) => return Err(io(path, e)),
        };
        match fs::read_to_string(&journal_path) {
            Ok(text) => apply_journal(&mut state, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&journal_path, e)),
        }
        let snapshot_bytes = write_snapshot(path, state.iter().map(|(k, v)| (k.as_str(), *v)))?;
        // Only after the snapshot holds everything is the journal emptied.
        let journal = empty_journal(&journal_path)?;
        Ok((
            SqnJournal {
                path: path.to_path_buf(),
                journal_path,
                journal,
                dirty: false,
                poisoned: false,
                syncs: 0,
                bytes: 0,
                max_bytes: crate::config::DEFAULT_LIMITS.sqn_journal_max_bytes,
                snapshot_bytes,
                checkpoints: 0,
            },
            state,
        ))
    }

    /// The snapshot file (the journal is `<path>.journal`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checkpoints once the journal holds `max_bytes` (or the last snapshot's size, if
    /// larger) after a commit.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Appends `record` without waiting for the disk: it is durable only after the next
    /// successful [`sync`](Self::sync).
    pub fn append(&mut self, record: &PersistRecord) -> Result<(), HssError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let line = record.journal_line();
        // Dirty before the write: a partial write leaves bytes that only a sync or a
        // checkpoint may vouch for.
        self.dirty = true;
        self.bytes += line.len() as u64;
        self.journal.write_all(line.as_bytes()).map_err(|e| {
            self.poisoned = true;
            io(&self.journal_path, e)
        })
    }

    /// Group commit: appends `records` and makes them durable with one fsync (none if there
    /// is nothing to sync). If a write or the fsync fails, or failed before, the journal is
    /// not trusted and the whole state is rewritten from `state` instead (a checkpoint: it
    /// must cover every SQN handed out, these records included). Only if that fails too is
    /// the error returned; the records are then not durable. A journal that reached its
    /// bound is checkpointed after the records are durable; if that checkpoint fails the
    /// records stay durable in the journal, and the next commit rewrites the state.
    pub fn commit<'a, I>(
        &mut self,
        records: &[PersistRecord],
        state: impl FnOnce() -> I,
    ) -> Result<(), HssError>
    where
        I: IntoIterator<Item = (&'a str, u64)>,
    {
        if !self.poisoned {
            let written = records
                .iter()
                .try_for_each(|r| self.append(r))
                .and_then(|()| self.sync());
            match written {
                Ok(()) if self.bytes >= self.max_bytes.max(self.snapshot_bytes) => {
                    if let Err(e) = self.checkpoint(state()) {
                        tracing::error!("SQN checkpoint failed ({e}); rewriting the SQN state");
                    }
                    return Ok(());
                }
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::error!("SQN journal write failed ({e}); rewriting the SQN state")
                }
            }
        }
        self.checkpoint(state())
    }

    /// Makes every appended record durable (one fsync, none if nothing was appended since
    /// the last one). A failure poisons the journal (see [`SqnJournal`]).
    pub fn sync(&mut self) -> Result<(), HssError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        if !self.dirty {
            return Ok(());
        }
        match self.journal.sync_data() {
            Ok(()) => {
                self.dirty = false;
                self.syncs += 1;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(io(&self.journal_path, e))
            }
        }
    }

    /// Replaces the whole state on disk by `state` (IMPI -> last SQN; it must cover every SQN
    /// ever appended): a new snapshot, atomically, then an empty journal. This is how a
    /// poisoned journal recovers; the old journal's content is no longer needed.
    pub fn checkpoint<'a>(
        &mut self,
        state: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<(), HssError> {
        self.poisoned = true;
        self.snapshot_bytes = write_snapshot(&self.path, state)?;
        self.journal = empty_journal(&self.journal_path)?;
        self.poisoned = false;
        self.dirty = false;
        self.bytes = 0;
        self.syncs += 1;
        self.checkpoints += 1;
        Ok(())
    }

    /// Checkpoints so far (while running; the compaction at open is not one).
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// Bytes in the journal now.
    pub fn journal_bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether a write or fsync failed and no checkpoint has recovered since.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Successful fsyncs and checkpoints so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Swaps the journal's file handle (tests: a handle whose writes fail, e.g. /dev/full).
    #[cfg(test)]
    pub(super) fn replace_file_for_test(&mut self, file: File) {
        self.journal = file;
    }

    fn poisoned_error(&self) -> HssError {
        HssError::Io {
            path: self.journal_path.display().to_string(),
            reason: "journal unusable after an earlier write or fsync failure".into(),
        }
    }
}

/// Writes the snapshot `path` (TOML map IMPI -> SQN in 12 hex digits) atomically; returns
/// its size.
fn write_snapshot<'a>(
    path: &Path,
    state: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<u64, HssError> {
    write_atomically(path, render_snapshot(state)?.as_bytes())
}

/// Truncates (or creates) the journal durably and reopens it for appending.
fn empty_journal(journal_path: &Path) -> Result<File, HssError> {
    let journal = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(journal_path)
        .map_err(|e| io(journal_path, e))?;
    journal.sync_all().map_err(|e| io(journal_path, e))?;
    // A new journal's directory entry must be durable too, or fdatasync of its lines
    // would protect a file that a power cut can make disappear.
    sync_dir(journal_path)?;
    OpenOptions::new()
        .append(true)
        .open(journal_path)
        .map_err(|e| io(journal_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_slowpath::hss::{generate_subscribers, Hss, Plmn, SubscriberRecord};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("akagate-sqn-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn subscribers() -> Vec<SubscriberRecord> {
        generate_subscribers(2, 1, Plmn::default())
    }

    /// An HSS over two generated subscribers continuing from `state`.
    fn hss(state: SqnState) -> Hss {
        Hss::from_records(&subscribers())
            .unwrap()
            .with_sqn_state(state)
            .unwrap()
    }

    /// `n` challenges of subscriber `who` (0 or 1), returned as the records they queued.
    fn challenges(hss: &mut Hss, who: usize, n: usize) -> Vec<PersistRecord> {
        let impi = subscribers()[who].impi.clone();
        for _ in 0..n {
            hss.challenge(&impi, [7; 16]).unwrap();
        }
        std::iter::from_fn(|| hss.poll_persist()).collect()
    }

    #[test]
    fn journal_survives_reopen_and_torn_line() {
        let d = tmpdir("reopen");
        let p = d.join("sqn.toml");
        let (a, b) = (subscribers()[0].impi.clone(), subscribers()[1].impi.clone());
        {
            let (mut j, s) = SqnJournal::open(&p).unwrap();
            assert!(s.is_empty());
            let mut hss = hss(s);
            let mut records = challenges(&mut hss, 0, 2);
            records.extend(challenges(&mut hss, 1, 1));
            j.commit(&records, || hss.sqn_state()).unwrap();
            assert_eq!(j.syncs(), 1, "one fsync for the batch");
        }
        // A crash mid-append leaves a partial line.
        OpenOptions::new()
            .append(true)
            .open(d.join("sqn.toml.journal"))
            .unwrap()
            .write_all(b"0000000")
            .unwrap();
        let (mut j, s) = SqnJournal::open(&p).unwrap();
        assert_eq!(s.get(&a), Some(&((2 << 5) | 1)));
        assert_eq!(s.get(&b), Some(&0x20));
        assert_eq!(fs::read_to_string(d.join("sqn.toml.journal")).unwrap(), "");
        let mut hss = hss(s);
        let records = challenges(&mut hss, 0, 1);
        j.commit(&records, || hss.sqn_state()).unwrap();
        drop(j);
        let (_, s) = SqnJournal::open(&p).unwrap();
        // SEQ 3; IND starts again at 0 after a restart (TS 33.102 C.3.2).
        assert_eq!(s.get(&a), Some(&(3 << 5)));
        let _ = fs::remove_dir_all(&d);
    }

    /// Issue 14: the journal is checkpointed while running once it outgrows its bound (or
    /// the snapshot), so it stays bounded whatever the challenge rate; a crash at any point,
    /// including between the snapshot's rename and the journal's truncation, recovers every
    /// SQN handed out.
    #[test]
    fn a_journal_over_its_bound_is_checkpointed_and_every_sqn_survives() {
        let d = tmpdir("bound");
        let p = d.join("sqn.toml");
        let (a, b) = (subscribers()[0].impi.clone(), subscribers()[1].impi.clone());
        let (j, s) = SqnJournal::open(&p).unwrap();
        let mut j = j.with_max_bytes(200);
        let mut hss = hss(s);
        let mut largest = 0;
        for round in 0..40 {
            let records = challenges(&mut hss, round % 2, 1);
            largest = largest.max(records[0].sqn());
            j.commit(&records, || hss.sqn_state()).unwrap();
            let on_disk = fs::metadata(d.join("sqn.toml.journal")).unwrap().len();
            assert_eq!(on_disk, j.journal_bytes());
            assert!(on_disk < 200 + 64, "round {round}: {on_disk} bytes");
        }
        assert!(j.checkpoints() >= 5, "{}", j.checkpoints());
        // A crash right after a checkpoint's rename: the old journal is still there.
        let old_journal = fs::read_to_string(d.join("sqn.toml.journal")).unwrap();
        j.checkpoint(hss.sqn_state()).unwrap();
        fs::write(d.join("sqn.toml.journal"), old_journal).unwrap();
        drop(j);
        let (_, recovered) = SqnJournal::open(&p).unwrap();
        let expected = hss.sqn_state().collect::<Vec<_>>();
        for impi in [&a, &b] {
            let want = expected
                .iter()
                .find(|(k, _)| *k == impi.as_str())
                .unwrap()
                .1;
            assert_eq!(recovered.get(impi.as_str()), Some(&want), "{impi}");
        }
        assert!(recovered.values().any(|&v| v == largest));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_commit_without_records_costs_no_fsync() {
        let d = tmpdir("idle");
        let (mut j, s) = SqnJournal::open(&d.join("sqn.toml")).unwrap();
        let hss = hss(s);
        j.commit(&[], || hss.sqn_state()).unwrap();
        assert_eq!(j.syncs(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn failed_journal_write_recovers_by_checkpoint() {
        let d = tmpdir("poisoned");
        let state = d.join("sqn.state");
        let impi = subscribers()[0].impi.clone();
        // An IMPI that is no longer provisioned keeps its state through checkpoints.
        fs::write(&state, "\"ghost@x\" = \"000000000400\"\n").unwrap();
        let (mut j, s) = SqnJournal::open(&state).unwrap();
        let mut hss = hss(s);
        let records = challenges(&mut hss, 0, 1);
        j.commit(&records, || hss.sqn_state()).unwrap();
        j.replace_file_for_test(OpenOptions::new().write(true).open("/dev/full").unwrap());
        // ENOSPC on the append, and the rewrite cannot happen while the directory is gone:
        // the commit fails and the journal stays poisoned.
        let records = challenges(&mut hss, 0, 1);
        fs::remove_dir_all(&d).unwrap();
        assert!(matches!(
            j.commit(&records, || hss.sqn_state()),
            Err(HssError::Io { .. })
        ));
        assert!(j.is_poisoned());
        assert!(j.commit(&[], || hss.sqn_state()).is_err());
        // Once the directory is back, the next commit rewrites the state from memory.
        fs::create_dir_all(&d).unwrap();
        j.commit(&[], || hss.sqn_state()).unwrap();
        assert!(!j.is_poisoned());
        let snapshot = fs::read_to_string(&state).unwrap();
        assert!(
            snapshot.contains(&format!("\"{impi}\" = \"{:012x}\"", (2 << 5) | 1)),
            "{snapshot}"
        );
        assert!(
            snapshot.contains("\"ghost@x\" = \"000000000400\""),
            "{snapshot}"
        );
        // Appends go to the fresh journal again.
        let records = challenges(&mut hss, 0, 1);
        j.commit(&records, || hss.sqn_state()).unwrap();
        drop(j);
        let (_, recovered) = SqnJournal::open(&state).unwrap();
        assert_eq!(recovered.get(&impi), Some(&((3 << 5) | 2)));
        assert_eq!(recovered.get("ghost@x"), Some(&0x400));
        let _ = fs::remove_dir_all(&d);
    }
}
