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
    apply_journal, parse_snapshot, render_snapshot, Hss, HssError, PersistRecord, SqnState,
};

/// The SQN state of all subscribers on disk: `<path>` (snapshot, TOML map IMPI -> last SQN in
/// hex) and `<path>.journal` (one [`PersistRecord::journal_line`] per SQN, appended by
/// [`SqnJournal::append_all`] and made durable by [`SqnJournal::sync`]).
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
    /// The daemon opens through [`open_shards`] (which also folds the registration stores'
    /// SQN records); this single-file form is for tests.
    #[cfg(test)]
    pub fn open(path: &Path) -> Result<(Self, SqnState), HssError> {
        Self::open_with(path, SqnState::new(), |_| Ok(SqnState::new()))
    }

    /// [`SqnJournal::open`], with `extra` folded in (the larger SQN per IMPI wins) before the
    /// snapshot is written: the state of other shards' files (see [`open_shards`]); then
    /// the state `raise` makes of the whole, folded in too (the SQN bounds reserved at
    /// start, [`open_shards_for`]: durable in this snapshot before any challenge).
    pub(super) fn open_with(
        path: &Path,
        extra: SqnState,
        raise: impl FnOnce(&SqnState) -> Result<SqnState, HssError>,
    ) -> Result<(Self, SqnState), HssError> {
        let journal_path = with_suffix(path, ".journal");
        let mut state = read_state(path)?;
        fold(&mut state, extra);
        let raised = raise(&state)?;
        // Folded, not replacing: the snapshot never holds less than the files held.
        fold(&mut state, raised);
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

    /// Appends `records`' lines, in order, with one write (a batch costs one system call,
    /// not one per SQN); durable only after the next successful [`sync`](Self::sync).
    pub fn append_all(&mut self, records: &[PersistRecord]) -> Result<(), HssError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut lines = String::with_capacity(records.len() * 64);
        records.iter().for_each(|r| r.push_journal_line(&mut lines));
        // Dirty before the write: a partial write leaves bytes that only a sync or a
        // checkpoint may vouch for.
        self.dirty = true;
        self.bytes += lines.len() as u64;
        self.journal.write_all(lines.as_bytes()).map_err(|e| {
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
            let written = self.append_all(records).and_then(|()| self.sync());
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

/// The snapshot and journal at `path` read into one state (nothing there: empty).
fn read_state(path: &Path) -> Result<SqnState, HssError> {
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
    Ok(state)
}

/// Folds `extra` into `state`, keeping the larger SQN of each IMPI. The smaller map is
/// folded into the larger (at shutdown `state` is the snapshot written at start and `extra`
/// the store's records of the whole run: moved, not inserted one by one).
fn fold(state: &mut SqnState, mut extra: SqnState) {
    if extra.len() > state.len() {
        std::mem::swap(state, &mut extra);
    }
    for (impi, sqn) in extra {
        let e = state.entry(impi).or_insert(0);
        *e = (*e).max(sqn);
    }
}

/// The SQN state file of slowpath shard `shard`: `base` for shard 0 (so one shard keeps the
/// file it always had), `<base>.shard<k>` for the others; each has its own `.journal`.
pub fn shard_path(base: &Path, shard: usize) -> PathBuf {
    match shard {
        0 => base.to_path_buf(),
        k => with_suffix(base, &format!(".shard{k}")),
    }
}

/// The shard numbers (>= 1) of the shard files next to `base`, whatever number of shards
/// wrote them.
pub(super) fn shard_files(base: &Path) -> Result<Vec<usize>, HssError> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = base.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.shard");
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir, e)),
    };
    let mut found: Vec<usize> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name();
            let rest = n.to_str()?.strip_prefix(&prefix)?;
            let digits = rest.strip_suffix(".journal").unwrap_or(rest);
            digits.parse::<usize>().ok().filter(|&k| k > 0)
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Opens the SQN state of `shards` slowpath shards over `base` (TS 33.102 6.3.2: a restart
/// never reuses an SQN, whatever the number of shards before). Before any shard runs, the
/// state of *every* shard file found — written by any earlier number of shards — is folded
/// into `base` (one durable snapshot holding everything), the shard files are removed, and
/// shard `k >= 1` gets a fresh file holding the IMPIs `shard_of` gives it. A crash at any
/// step leaves every SQN on disk: the files are removed only after `base` holds their state,
/// and `base` loses other shards' IMPIs only when shard 0 checkpoints, after their files
/// were written. Returns each shard's journal and the whole folded state.
#[cfg(test)]
pub fn open_shards(
    base: &Path,
    shards: usize,
    shard_of: impl Fn(&str) -> usize,
) -> Result<(Vec<SqnJournal>, SqnState), HssError> {
    open_shards_raising(base, shards, shard_of, |_| Ok(SqnState::new()))
}

/// [`open_shards`] for an HSS (the daemon's start): `open` builds it from the folded state
/// ([`Hss::with_sqn_state`]), each subscriber then reserves a block of SEQ above its bound
/// ([`Hss::reserve_sqn_blocks`]), and the snapshots this start writes anyway hold the
/// raised bounds, durable before the HSS is returned, so the first [`SQN_BLOCK`] challenges
/// of each subscriber need no write (docs/ARCHITECTURE.md, "SQN blocks"). A crash before
/// the snapshot leaves the old state (the next start reserves above it); after it, the
/// next start resumes above the raised bounds.
///
/// [`SQN_BLOCK`]: akagate_slowpath::hss::SQN_BLOCK
pub fn open_shards_for(
    base: &Path,
    shards: usize,
    shard_of: impl Fn(&str) -> usize,
    open: impl FnOnce(SqnState) -> Result<Hss, HssError>,
) -> Result<(Vec<SqnJournal>, Hss), HssError> {
    let mut opened = None;
    let (journals, _) = open_shards_raising(base, shards, shard_of, |state| {
        let mut hss = open(state.clone())?;
        hss.reserve_sqn_blocks();
        let raised = (hss.sqn_state()).map(|(impi, sqn)| (impi.to_owned(), sqn));
        let raised = raised.collect();
        opened = Some(hss);
        Ok(raised)
    })?;
    let hss = opened.ok_or_else(|| HssError::Parse {
        line: 0,
        reason: "SQN state: no HSS opened".into(),
    })?;
    Ok((journals, hss))
}

/// [`open_shards`], the state `raise` makes of the folded one folded in before the
/// snapshots are written.
fn open_shards_raising(
    base: &Path,
    shards: usize,
    shard_of: impl Fn(&str) -> usize,
    raise: impl FnOnce(&SqnState) -> Result<SqnState, HssError>,
) -> Result<(Vec<SqnJournal>, SqnState), HssError> {
    let stale = shard_files(base)?;
    // SQNs a group commit made durable in the registration store's log instead of the
    // journal (one fdatasync a batch): folded into the snapshot here, before the store is
    // opened and drops them.
    let mut others = super::store::sqn_state_in_stores(base);
    for &k in &stale {
        fold(&mut others, read_state(&shard_path(base, k))?);
    }
    let (first, state) = SqnJournal::open_with(base, others, raise)?;
    for &k in &stale {
        let path = shard_path(base, k);
        for p in [with_suffix(&path, ".journal"), path] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&p, e)),
            }
        }
    }
    if !stale.is_empty() {
        sync_dir(base)?;
    }
    let mut journals = vec![first];
    for k in 1..shards.max(1) {
        let subset: SqnState = (state.iter())
            .filter(|(impi, _)| shard_of(impi) == k)
            .map(|(i, s)| (i.clone(), *s))
            .collect();
        let path = shard_path(base, k);
        let (journal, _) = SqnJournal::open_with(&path, subset, |_| Ok(SqnState::new()))?;
        journals.push(journal);
    }
    Ok((journals, state))
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
    use std::time::SystemTime;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("akagate-sqn-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn subscribers() -> Vec<SubscriberRecord> {
        generate_subscribers(2, 1, Plmn::default())
    }

    /// An HSS over two generated subscribers continuing from `state`, with SQN blocks of one
    /// SEQ (a record per challenge, as before SQN blocks: these tests follow the records
    /// wherever they are written; `open_with_blocks` tests the blocks).
    fn hss(state: SqnState) -> Hss {
        Hss::from_records(&subscribers())
            .unwrap()
            .with_sqn_state(state)
            .unwrap()
            .with_sqn_block(1)
    }

    /// The daemon's start over the two subscribers (`setup::load_hss`): the state folded,
    /// blocks of `block` SEQ reserved and durable in the snapshots, the HSS split into
    /// `shards`.
    fn open_with_blocks(p: &Path, shards: usize, block: u64) -> (Vec<SqnJournal>, Vec<Hss>) {
        let shard_of =
            move |impi: &str| akagate_proto::shard::shard_of_name(impi.as_bytes(), shards);
        let (journals, hss) = open_shards_for(p, shards, shard_of, |state| {
            Ok(Hss::from_records(&subscribers())?
                .with_sqn_state(state)?
                .with_sqn_block(block))
        })
        .unwrap();
        let hss = match shards {
            1 => vec![hss],
            n => hss.into_shards(n, shard_of),
        };
        (journals, hss)
    }

    /// A USIM per subscriber (TS 33.102 Annex C's array, Δ = 2^28), keyed from the file.
    fn usims() -> Vec<akagate_slowpath::aka::Usim> {
        use akagate_slowpath::aka::{Milenage, SqnArray, SqnPolicy, Usim};
        subscribers()
            .iter()
            .map(|r| {
                let k: [u8; 16] = hex::decode(&r.k).unwrap().try_into().unwrap();
                let opc: [u8; 16] = hex::decode(r.opc.as_ref().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                Usim::new(Milenage::new(&k, &opc), SqnArray::new(SqnPolicy::default()))
            })
            .collect()
    }

    /// One challenge of subscriber `who` on the shard owning it, checked by its USIM (the
    /// AUTN's MAC-A, SEQ above SEQ_MS, a jump below Δ); the daemon's group commit of what
    /// it queued, before the 401 would leave. Returns the SEQ the USIM accepted.
    fn challenge_checked(
        journals: &mut [SqnJournal],
        shards: &mut [Hss],
        usim: &mut akagate_slowpath::aka::Usim,
        who: usize,
    ) -> u64 {
        let impi = subscribers()[who].impi.clone();
        let k = akagate_proto::shard::shard_of_name(impi.as_bytes(), shards.len());
        let rand = [who as u8 + 1; 16];
        let v = shards[k].challenge(&impi, rand).unwrap();
        let records: Vec<PersistRecord> = std::iter::from_fn(|| shards[k].poll_persist()).collect();
        let hss = &shards[k];
        journals[k].commit(&records, || hss.sqn_state()).unwrap();
        let ok = usim.authenticate(&rand, &v.autn).expect("the USIM accepts");
        ok.sqn.value() >> 5
    }

    /// SQN blocks and a crash: challenges under the bound reserved at start (no record),
    /// past it (a record each block) and under the new bound again, then a crash (no
    /// shutdown's checkpoint). After the restart, with one shard and with two, every SQN
    /// of every subscriber is above every SQN it had before, and its USIM accepts it: the
    /// jump is at most two blocks, far below Δ.
    #[test]
    fn a_crash_under_the_bound_never_reuses_an_sqn() {
        for shards in [1, 2] {
            let d = tmpdir(&format!("blocks-{shards}"));
            let p = d.join("sqn.toml");
            let mut usims = usims();
            let mut before = [0u64; 2];
            {
                let (mut journals, mut hss) = open_with_blocks(&p, shards, 4);
                // SEQ 1..=4 reserved at start; 5 passes (8), 9 passes (12); 10 under it.
                for (who, n) in [(0, 10), (1, 6)] {
                    for _ in 0..n {
                        let seq = challenge_checked(&mut journals, &mut hss, &mut usims[who], who);
                        assert!(seq > before[who], "{shards} shard(s), {who}: SEQ rises");
                        before[who] = seq;
                    }
                }
                assert_eq!(before, [10, 6]);
            }
            let (mut journals, mut hss) = open_with_blocks(&p, shards, 4);
            for who in 0..2 {
                for _ in 0..3 {
                    let seq = challenge_checked(&mut journals, &mut hss, &mut usims[who], who);
                    assert!(seq > before[who], "{shards} shard(s), {who}: SQN reused");
                    assert!(
                        seq - before[who] <= 8,
                        "at most the block left and one more"
                    );
                    before[who] = seq;
                }
            }
            let _ = fs::remove_dir_all(&d);
        }
    }

    /// A crash between the start's snapshot of the raised bounds and the first challenge:
    /// the next start resumes above those bounds (nothing under them can have left, but
    /// anything could have) and raises them again, durable before its first challenge;
    /// the USIM accepts its first SQN, a jump of two blocks (the reserved and the raised).
    #[test]
    fn a_crash_before_the_first_challenge_keeps_the_raised_bounds() {
        let d = tmpdir("blocks-start");
        let p = d.join("sqn.toml");
        let subs = subscribers();
        let block = akagate_slowpath::hss::SQN_BLOCK;
        let bound_of = |state: &SqnState, who: usize| state[&subs[who].impi] >> 5;
        drop(open_with_blocks(&p, 1, block));
        let first = read_state(&p).unwrap();
        // The file's SQN 0, a block above it, durable in the snapshot.
        assert_eq!(first[&subs[0].impi], (block << 5) | 31);
        let (mut journals, mut hss) = open_with_blocks(&p, 1, block);
        let second = read_state(&p).unwrap();
        let mut usims = usims();
        for (who, usim) in usims.iter_mut().enumerate().take(2) {
            assert_eq!(bound_of(&second, who), bound_of(&first, who) + block);
            let seq = challenge_checked(&mut journals, &mut hss, usim, who);
            assert_eq!(
                seq,
                bound_of(&first, who) + 1,
                "{who}: resumes above the bound"
            );
        }
        // Nothing was written by those challenges: under the raised bounds.
        assert_eq!(read_state(&p).unwrap(), second);
        assert_eq!(journals[0].journal_bytes(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    /// `n` challenges of subscriber `who` (0 or 1), returned as the records they queued.
    fn challenges(hss: &mut Hss, who: usize, n: usize) -> Vec<PersistRecord> {
        let impi = subscribers()[who].impi.clone();
        for _ in 0..n {
            hss.challenge(&impi, [7; 16]).unwrap();
        }
        std::iter::from_fn(|| hss.poll_persist()).collect()
    }

    /// Issue 10: SQNs a group commit made durable only in the registration stores' logs
    /// (one fdatasync for both, the journal never written) survive a crash: the next open
    /// folds every store's SQN records — shard 0's and another shard's — into the durable
    /// snapshot before the stores are opened; the stores' open then drops them (not counted
    /// as corrupt, nothing restored from them), and the SQNs stay in the snapshot.
    #[test]
    fn sqns_committed_in_the_registration_stores_survive_a_crash() {
        use crate::daemon::store::{self, RegistrationStore};
        let d = tmpdir("in-store");
        let p = d.join("sqn.toml");
        let subs = subscribers();
        let mut h = hss(SqnState::new());
        let (r0, r1) = (challenges(&mut h, 0, 3), challenges(&mut h, 1, 2));
        for (k, records) in [(0, &r0), (1, &r1)] {
            let (mut s, _) =
                RegistrationStore::open(&store::shard_store_path(&p, k), SystemTime::now())
                    .unwrap();
            s.commit(&[], records).unwrap();
        }
        // The crash: no journal line, no snapshot holds them.
        assert_eq!(read_state(&p).unwrap(), SqnState::new());
        let want = |state: &SqnState| {
            assert_eq!(state.get(&subs[0].impi), Some(&r0[2].sqn()));
            assert_eq!(state.get(&subs[1].impi), Some(&r1[1].sqn()));
        };
        let (_, state) = open_shards(&p, 1, |_| 0).unwrap();
        want(&state);
        want(&read_state(&p).unwrap());
        // The stores' open (after the SQN state's) drops the SQN records.
        let opened = store::open_shards(&p, 1, |_| 0);
        let (_, restored) = &opened[0];
        assert_eq!((restored.records.len(), restored.corrupt), (0, 0));
        drop(opened);
        assert!(store::sqn_state_in_stores(&p).is_empty());
        let (_, state) = open_shards(&p, 1, |_| 0).unwrap();
        want(&state);
        let _ = fs::remove_dir_all(&d);
    }

    /// Issue 10: the number of slowpath shards changes between runs (2 -> 1 -> 3) and no
    /// SQN is ever handed out twice: every shard file of the previous run, journal lines
    /// not compacted (a crash) included, is folded in before the new shards start, and the
    /// stale shard files are gone afterwards.
    #[test]
    fn changing_the_number_of_shards_never_reuses_an_sqn() {
        let d = tmpdir("shards");
        let p = d.join("sqn.toml");
        let subs = subscribers();
        let shard_of =
            |n: usize| move |impi: &str| akagate_proto::shard::shard_of_name(impi.as_bytes(), n);
        // Two shards; each subscriber is challenged on the shard that owns it, and the run
        // ends in a crash (journals not compacted).
        let mut handed_out = std::collections::BTreeMap::new();
        {
            let (mut journals, state) = open_shards(&p, 2, shard_of(2)).unwrap();
            assert_eq!(journals.len(), 2);
            let mut shards = hss(state).into_shards(2, shard_of(2));
            for (who, n) in [(0, 3), (1, 5)] {
                let k = shard_of(2)(&subs[who].impi);
                let records = challenges(&mut shards[k], who, n);
                let last = records.last().unwrap().sqn();
                handed_out.insert(subs[who].impi.clone(), last);
                journals[k]
                    .commit(&records, || shards[k].sqn_state())
                    .unwrap();
            }
        }
        assert!(
            shard_files(&p).unwrap() == vec![1],
            "the second shard has its own file"
        );
        // One shard: it continues above everything the two shards handed out.
        let state = {
            let (journals, state) = open_shards(&p, 1, shard_of(1)).unwrap();
            assert_eq!(journals.len(), 1);
            state
        };
        assert!(
            shard_files(&p).unwrap().is_empty(),
            "stale shard files removed"
        );
        for (impi, sqn) in &handed_out {
            assert_eq!(state.get(impi), Some(sqn), "{impi}");
        }
        let mut one = hss(state);
        for who in 0..2 {
            let next = challenges(&mut one, who, 1)[0].sqn();
            assert!(next > handed_out[&subs[who].impi], "{who}: SQN reused");
            handed_out.insert(subs[who].impi.clone(), next);
        }
        // That run crashed too (its records only in the journal of `base`).
        let (mut j, _) = SqnJournal::open(&p).unwrap();
        let records: Vec<PersistRecord> = (0..2).flat_map(|w| challenges(&mut one, w, 1)).collect();
        for r in &records {
            handed_out.insert(r.impi().to_string(), r.sqn());
        }
        j.commit(&records, || one.sqn_state()).unwrap();
        drop(j);
        // Three shards: each shard's file holds its IMPIs, and every HSS continues above.
        let (_journals, state) = open_shards(&p, 3, shard_of(3)).unwrap();
        let shards = hss(state).into_shards(3, shard_of(3));
        for (who, sub) in subs.iter().enumerate() {
            let k = shard_of(3)(&sub.impi);
            let seq = shards[k].subscriber(&sub.impi).unwrap().seq_he();
            assert!(seq >= handed_out[&sub.impi] >> 5, "{who}");
            if k > 0 {
                let text = fs::read_to_string(shard_path(&p, k)).unwrap();
                assert!(text.contains(&sub.impi), "{text}");
            }
        }
        let _ = fs::remove_dir_all(&d);
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
            // The batch, written as one buffer: each record's line, in order, byte for byte.
            let want: String = records
                .iter()
                .map(|r| format!("{:012x} {}\n", r.sqn(), r.impi()))
                .collect();
            let on_disk = fs::read_to_string(d.join("sqn.toml.journal")).unwrap();
            assert_eq!(on_disk, want);
            assert_eq!(j.journal_bytes(), want.len() as u64);
        }
        // A crash mid-append leaves a partial line.
        OpenOptions::new()
            .append(true)
            .open(d.join("sqn.toml.journal"))
            .unwrap()
            .write_all(b"0000000")
            .unwrap();
        let (mut j, s) = SqnJournal::open(&p).unwrap();
        assert_eq!(s.get(&a), Some(&((2 << 5) | 31)));
        assert_eq!(s.get(&b), Some(&((1 << 5) | 31)));
        assert_eq!(fs::read_to_string(d.join("sqn.toml.journal")).unwrap(), "");
        let mut hss = hss(s);
        let records = challenges(&mut hss, 0, 1);
        j.commit(&records, || hss.sqn_state()).unwrap();
        drop(j);
        let (_, s) = SqnJournal::open(&p).unwrap();
        // SEQ 3, its bound written with the last IND (a block of one).
        assert_eq!(s.get(&a), Some(&((3 << 5) | 31)));
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
            snapshot.contains(&format!("\"{impi}\" = \"{:012x}\"", (2 << 5) | 31)),
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
        assert_eq!(recovered.get(&impi), Some(&((3 << 5) | 31)));
        assert_eq!(recovered.get("ghost@x"), Some(&0x400));
        let _ = fs::remove_dir_all(&d);
    }
}
