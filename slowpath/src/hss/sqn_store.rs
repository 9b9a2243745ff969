//! Durable SQN state: a snapshot file rewritten atomically (temp + fsync + rename) and an
//! append-only journal fsynced per challenge, so a restart never reuses an SQN (TS 33.102 6.3).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::HssError;

/// The SQN state of all subscribers on disk: `<path>` (snapshot, TOML map IMPI -> last SQN in
/// hex) and `<path>.journal` (lines `<sqn hex> <impi>`, appended and fsynced per challenge).
#[derive(Debug)]
pub struct SqnJournal {
    journal_path: PathBuf,
    journal: File,
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
    /// and compacts the journal into the snapshot. A torn last journal line (a crash during the
    /// append) is ignored: its challenge was never sent, because sending waits for the fsync.
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
        let snap: BTreeMap<&String, String> = state
            .iter()
            .map(|(k, v)| (k, format!("{v:012x}")))
            .collect();
        let text = toml::to_string(&snap).map_err(|e| HssError::Parse {
            line: 0,
            reason: e.to_string(),
        })?;
        write_atomically(path, text.as_bytes())?;
        // Only after the snapshot holds everything is the journal emptied.
        let journal = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&journal_path)
            .map_err(|e| io(&journal_path, e))?;
        journal.sync_all().map_err(|e| io(&journal_path, e))?;
        let journal = OpenOptions::new()
            .append(true)
            .open(&journal_path)
            .map_err(|e| io(&journal_path, e))?;
        Ok((
            SqnJournal {
                journal_path,
                journal,
            },
            state,
        ))
    }

    /// Records that `sqn` was handed out for `impi`; returns once it is on stable storage.
    pub fn record(&mut self, impi: &str, sqn: u64) -> Result<(), HssError> {
        let line = format!("{sqn:012x} {impi}\n");
        self.journal
            .write_all(line.as_bytes())
            .and_then(|_| self.journal.sync_data())
            .map_err(|e| io(&self.journal_path, e))
    }
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
