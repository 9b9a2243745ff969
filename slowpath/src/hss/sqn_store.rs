//! Durable SQN state: a snapshot file rewritten atomically (temp + fsync + rename) and an
//! append-only journal, fsynced per challenge or once per group of challenges (group commit),
//! so a restart never reuses an SQN that left in a challenge (TS 33.102 6.3).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::HssError;

/// The SQN state of all subscribers on disk: `<path>` (snapshot, TOML map IMPI -> last SQN in
/// hex) and `<path>.journal` (lines `<sqn hex> <impi>`, appended by [`SqnJournal::append`] and
/// made durable by [`SqnJournal::sync`]).
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
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), HssError> {
    let tmp = with_suffix(path, ".tmp");
    let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    sync_dir(path)
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
    pub fn open(path: &Path) -> Result<(Self, BTreeMap<String, u64>), HssError> {
        let journal_path = with_suffix(path, ".journal");
        let mut state = BTreeMap::new();
        match fs::read_to_string(path) {
            Ok(text) => {
                let snap: BTreeMap<String, String> =
                    toml::from_str(&text).map_err(|e| HssError::Parse {
                        line: 0,
                        reason: format!("SQN state: {}", e.message()),
                    })?;
                for (impi, hex) in snap {
                    let sqn = parse_sqn_hex(&hex).ok_or(HssError::Parse {
                        line: 0,
                        reason: format!("SQN state: bad SQN for {impi}"),
                    })?;
                    state.insert(impi, sqn);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path, e)),
        }
        match fs::read_to_string(&journal_path) {
            Ok(text) => {
                for line in text.lines() {
                    let Some((hex, impi)) = line.split_once(' ') else {
                        continue;
                    };
                    if let Some(sqn) = parse_sqn_hex(hex) {
                        let e = state.entry(impi.to_string()).or_insert(0);
                        *e = (*e).max(sqn);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&journal_path, e)),
        }
        write_snapshot(path, state.iter().map(|(k, v)| (k.as_str(), *v)))?;
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
            },
            state,
        ))
    }

    /// Records that `sqn` was handed out for `impi`; returns once it is on stable storage
    /// (an [`append`](Self::append) and a [`sync`](Self::sync)).
    pub fn record(&mut self, impi: &str, sqn: u64) -> Result<(), HssError> {
        self.append(impi, sqn)?;
        self.sync()
    }

    /// Appends the record that `sqn` was handed out for `impi`, without waiting for the disk:
    /// the SQN is durable only after the next successful [`sync`](Self::sync).
    pub fn append(&mut self, impi: &str, sqn: u64) -> Result<(), HssError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        let line = format!("{sqn:012x} {impi}\n");
        // Dirty before the write: a partial write leaves bytes that only a sync or a
        // checkpoint may vouch for.
        self.dirty = true;
        self.journal.write_all(line.as_bytes()).map_err(|e| {
            self.poisoned = true;
            io(&self.journal_path, e)
        })
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
        write_snapshot(&self.path, state)?;
        self.journal = empty_journal(&self.journal_path)?;
        self.poisoned = false;
        self.dirty = false;
        self.syncs += 1;
        Ok(())
    }

    /// Whether records were appended since the last successful sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
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
    pub(crate) fn replace_file_for_test(&mut self, file: File) {
        self.journal = file;
    }

    fn poisoned_error(&self) -> HssError {
        HssError::Io {
            path: self.journal_path.display().to_string(),
            reason: "journal unusable after an earlier write or fsync failure".into(),
        }
    }
}

/// Writes the snapshot `path` (TOML map IMPI -> SQN in 12 hex digits) atomically.
fn write_snapshot<'a>(
    path: &Path,
    state: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), HssError> {
    let snap: BTreeMap<&str, String> = state
        .into_iter()
        .map(|(k, v)| (k, format!("{v:012x}")))
        .collect();
    let text = toml::to_string(&snap).map_err(|e| HssError::Parse {
        line: 0,
        reason: e.to_string(),
    })?;
    write_atomically(path, text.as_bytes())
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

/// Parses 12 hex digits (a 48-bit SQN).
pub(crate) fn parse_sqn_hex(hex: &str) -> Option<u64> {
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("akagate-sqn-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn journal_survives_reopen_and_torn_line() {
        let d = tmpdir("reopen");
        let p = d.join("sqn.toml");
        {
            let (mut j, s) = SqnJournal::open(&p).unwrap();
            assert!(s.is_empty());
            j.record("a@x", 0x20).unwrap();
            j.record("a@x", 0x40).unwrap();
            j.record("b@x", 0x60).unwrap();
        }
        // A crash mid-append leaves a partial line.
        OpenOptions::new()
            .append(true)
            .open(d.join("sqn.toml.journal"))
            .unwrap()
            .write_all(b"0000000")
            .unwrap();
        let (mut j, s) = SqnJournal::open(&p).unwrap();
        assert_eq!(s.get("a@x"), Some(&0x40));
        assert_eq!(s.get("b@x"), Some(&0x60));
        assert_eq!(fs::read_to_string(d.join("sqn.toml.journal")).unwrap(), "");
        j.record("a@x", 0x80).unwrap();
        drop(j);
        let (_, s) = SqnJournal::open(&p).unwrap();
        assert_eq!(s.get("a@x"), Some(&0x80));
        let _ = fs::remove_dir_all(&d);
    }
}
