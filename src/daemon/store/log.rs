//! The registration store's file: an append-only log of length-prefixed, checksummed records
//! (a put of a key's record or a tombstone deleting it), the newest record of a key winning
//! when the file is read. A group commit appends its batch with one `writev` and makes it
//! durable with one `fdatasync`; a crash can only tear the unsynced tail, which reading skips.
//! Compaction writes the live records into a new file (temp, fsync, rename, fsync of the
//! directory). Only framing and files here: what a record means is the store's.
//!
//! ```text
//! file   := MAGIC record*
//! record := len:u32le crc:u32le body[len]          crc = CRC-32 (IEEE) of body
//! body   := kind:u8 ('P' put | 'D' delete) key_len:u16le key[key_len] value
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The first bytes of a log file (its format version in the last two).
pub(super) const MAGIC: &[u8; 16] = b"akagate-reglog1\n";
/// A record's length and checksum.
const HEADER: usize = 8;
/// The largest body read back (a record is ~1 KiB; a length beyond this is corruption).
const MAX_BODY: usize = 1 << 20;
/// A key's largest length (its length field is 16 bits).
pub(super) const MAX_KEY: usize = u16::MAX as usize;
/// Kind byte of a put.
const PUT: u8 = b'P';
/// Kind byte of a tombstone.
const DELETE: u8 = b'D';

/// One record found in a file: where its parts are in the bytes read.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    /// The whole record, header included (copied verbatim by compaction).
    pub frame: Range<usize>,
    /// The key.
    pub key: Range<usize>,
    /// The value (empty for a tombstone).
    pub value: Range<usize>,
    /// A put (else a tombstone).
    pub put: bool,
}

/// What reading a file found besides its records.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Damage {
    /// Bytes after the last good record that were no record: a torn tail (a crash during an
    /// append whose batch was never acknowledged), dropped.
    pub torn_bytes: usize,
    /// Stretches of bad records between good ones (media corruption), skipped.
    pub corrupt_regions: usize,
    /// Bytes in those stretches.
    pub corrupt_bytes: usize,
}

/// The body at `at` if a well-formed record starts there: (body range, key range, put).
fn frame_at(bytes: &[u8], at: usize) -> Option<Frame> {
    let head = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    if !(3..=MAX_BODY).contains(&len) {
        return None;
    }
    let start = at + HEADER;
    let body = bytes.get(start..start + len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let put = match body[0] {
        PUT => true,
        DELETE => false,
        _ => return None,
    };
    let key_len = usize::from(u16::from_le_bytes([body[1], body[2]]));
    if 3 + key_len > len || (!put && 3 + key_len != len) {
        return None;
    }
    std::str::from_utf8(&body[3..3 + key_len]).ok()?;
    Some(Frame {
        frame: at..start + len,
        key: start + 3..start + 3 + key_len,
        value: start + 3 + key_len..start + len,
        put,
    })
}

/// The records of a log file's content (after [`MAGIC`]), newest per key, tombstones and
/// the records they cover dropped, in file order of the survivors. A bad record is skipped
/// by searching forward for the next good one (length, checksum and body all valid); bad
/// bytes up to the end are a torn tail, bad bytes before a good record a corrupt region.
pub(super) fn live_records(bytes: &[u8], from: usize) -> (Vec<Frame>, Damage) {
    let mut newest: HashMap<&[u8], Frame> = HashMap::new();
    let mut order: Vec<Range<usize>> = Vec::new();
    let damage = each_frame(bytes, from, |frame| {
        let key = &bytes[frame.key.clone()];
        if newest.insert(key, frame.clone()).is_none() {
            order.push(frame.key);
        }
    });
    let live = order
        .into_iter()
        .filter_map(|k| newest.remove(&bytes[k]))
        .filter(|f| f.put)
        .collect();
    (live, damage)
}

/// Every well-formed record of a log file's content (after [`MAGIC`]) in file order, older
/// versions of a key and tombstones included, bad stretches skipped as [`live_records`]
/// skips them; returns the damage. For readers that need no "newest per key" (the SQN
/// records: a later one never holds a smaller SQN), so no map of the keys is built.
pub(super) fn each_frame(bytes: &[u8], from: usize, mut f: impl FnMut(Frame)) -> Damage {
    let mut damage = Damage::default();
    let mut at = from;
    while at < bytes.len() {
        let Some(frame) = frame_at(bytes, at) else {
            let bad = at;
            at += 1;
            while at < bytes.len() && frame_at(bytes, at).is_none() {
                at += 1;
            }
            if at >= bytes.len() {
                damage.torn_bytes = bytes.len() - bad;
            } else {
                damage.corrupt_regions += 1;
                damage.corrupt_bytes += at - bad;
            }
            continue;
        };
        at = frame.frame.end;
        f(frame);
    }
    damage
}

/// A batch of records to append: their headers and the store's own bytes in one plain
/// buffer, the registrations' JSON borrowed (so no copy of the keys is made for the write).
#[derive(Default)]
pub(super) struct Batch<'a> {
    /// Headers, keys, wrappers: nothing secret.
    plain: Vec<u8>,
    /// The batch in order: ranges of `plain` and borrowed values.
    pieces: Vec<Piece<'a>>,
    /// Where the current record's header is in `plain`, and its checksum so far.
    open: Option<(usize, crc32fast::Hasher)>,
    /// Bytes in the batch.
    len: usize,
    /// A checksum of nothing, copied for each record (`Hasher::new` detects the CPU's
    /// features each time: ~0.12k instructions a record).
    fresh: crc32fast::Hasher,
}

/// A batch's buffers kept for the next batch ([`Batch::recycled`], [`Batch::into_spare`]),
/// so a group commit allocates none (large ones, whose `malloc` and `free` at the heap's top
/// cost ~2k instructions each under load). Holds only store-owned bytes (headers, keys,
/// SQN lines), nothing secret.
#[derive(Default)]
pub(super) struct Spare {
    plain: Vec<u8>,
    pieces: Vec<Piece<'static>>,
}

enum Piece<'a> {
    Plain(Range<usize>),
    Borrowed(&'a [u8]),
}

impl<'a> Batch<'a> {
    /// An empty batch with room for `records` records of about `bytes` store-owned bytes
    /// each (headers, keys, SQN lines), so a group commit's batch grows no buffer.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Batch {
            plain: Vec::with_capacity(records.saturating_mul(bytes)),
            pieces: Vec::with_capacity(records.saturating_mul(2)),
            ..Batch::default()
        }
    }

    /// [`Batch::with_capacity`] in the buffers of an earlier batch (emptied, grown if need
    /// be).
    pub fn recycled(spare: Spare, records: usize, bytes: usize) -> Self {
        let Spare { mut plain, pieces } = spare;
        plain.clear();
        plain.reserve(records.saturating_mul(bytes));
        // Emptied, the list of `'static` pieces becomes one of `'a` pieces in place (the
        // same layout: the standard library reuses the allocation).
        let mut pieces: Vec<Piece<'a>> = pieces.into_iter().filter(|_| false).collect();
        pieces.reserve(records.saturating_mul(2));
        Batch {
            plain,
            pieces,
            ..Batch::default()
        }
    }

    /// The batch's buffers for the next one (emptied).
    pub fn into_spare(self) -> Spare {
        let Batch {
            mut plain, pieces, ..
        } = self;
        plain.clear();
        // The element type only changes lifetime: nothing is kept.
        #[allow(clippy::unnecessary_filter_map)]
        let pieces: Vec<Piece<'static>> = pieces
            .into_iter()
            .filter_map(|_| None::<Piece<'static>>)
            .collect();
        Spare { plain, pieces }
    }

    /// Starts a record of `kind` for `key` whose value starts with the `head` parts (longer
    /// keys than [`MAX_KEY`] are the caller's to refuse): all of it in `plain`, checksummed
    /// in one update. Returns the head's length.
    fn begin(&mut self, kind: u8, key: &str, head: &[&[u8]]) -> usize {
        debug_assert!(self.open.is_none() && key.len() <= MAX_KEY);
        let at = self.plain.len();
        self.plain.extend_from_slice(&[0; HEADER]);
        let body = self.plain.len();
        self.plain.push(kind);
        self.plain
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.plain.extend_from_slice(key.as_bytes());
        let value = self.plain.len();
        for part in head {
            self.plain.extend_from_slice(part);
        }
        let mut crc = self.fresh.clone();
        crc.update(&self.plain[body..]);
        self.open = Some((at, crc));
        self.extend_plain(at);
        self.plain.len() - value
    }

    /// Adds `plain[from..]` to the pieces (joined to the previous plain piece if adjacent).
    fn extend_plain(&mut self, from: usize) {
        let end = self.plain.len();
        if let Some(Piece::Plain(r)) = self.pieces.last_mut() {
            if r.end == from {
                r.end = end;
                return;
            }
        }
        self.pieces.push(Piece::Plain(from..end));
    }

    /// Adds store-owned bytes to the open record.
    fn plain(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let from = self.plain.len();
        self.plain.extend_from_slice(bytes);
        if let Some((_, crc)) = self.open.as_mut() {
            crc.update(bytes);
        }
        self.extend_plain(from);
    }

    /// Adds borrowed bytes (a registration's JSON) to the open record.
    fn borrowed(&mut self, bytes: &'a [u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some((_, crc)) = self.open.as_mut() {
            crc.update(bytes);
        }
        self.pieces.push(Piece::Borrowed(bytes));
    }

    /// Closes the open record: its length and checksum into its header.
    fn end(&mut self, body_len: usize) {
        if let Some((at, crc)) = self.open.take() {
            self.plain[at..at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
            self.plain[at + 4..at + 8].copy_from_slice(&crc.finalize().to_le_bytes());
            self.len += HEADER + body_len;
        }
    }

    /// A put of `key`: the value is the `head` parts, then `value` (borrowed), then `tail`.
    pub fn put(&mut self, key: &str, head: &[&[u8]], value: &'a [u8], tail: &[u8]) {
        let head_len = self.begin(PUT, key, head);
        let len = 3 + key.len() + head_len + value.len() + tail.len();
        self.borrowed(value);
        self.plain(tail);
        self.end(len);
    }

    /// A record copied as it is (compaction: a frame read from the old file).
    pub fn verbatim(&mut self, frame: &'a [u8]) {
        self.pieces.push(Piece::Borrowed(frame));
        self.len += frame.len();
    }

    /// A tombstone for `key`.
    pub fn delete(&mut self, key: &str) {
        self.begin(DELETE, key, &[]);
        self.end(3 + key.len());
    }

    /// Bytes in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the batch to `file` with as few `writev` calls as the system allows (one for
    /// up to `IOV_MAX` pieces; a short write continues where it stopped).
    pub fn write_to(&self, file: &mut File) -> io::Result<()> {
        self.write_to_with(file, &mut Vec::new())
    }

    /// [`Batch::write_to`] with the system call's list of buffers built in `iov`'s
    /// allocation (emptied again after): a store keeps one, so a group commit allocates
    /// none for it.
    pub fn write_to_with(
        &self,
        file: &mut File,
        iov: &mut Vec<IoSlice<'static>>,
    ) -> io::Result<()> {
        // Emptied, the list of `'static` slices becomes one of the batch's in place (the
        // same layout: the standard library reuses the allocation), and back after.
        let mut slices: Vec<IoSlice<'_>> =
            std::mem::take(iov).into_iter().filter(|_| false).collect();
        // Bytes written so far: a short write goes on from there.
        let mut done = 0usize;
        let written = loop {
            slices.clear();
            let mut skip = done;
            for p in &self.pieces {
                let bytes: &[u8] = match p {
                    Piece::Plain(r) => self.plain.get(r.clone()).unwrap_or_default(),
                    Piece::Borrowed(b) => b,
                };
                match bytes.get(skip..) {
                    Some(rest) if !rest.is_empty() => {
                        slices.push(IoSlice::new(rest));
                        skip = 0;
                    }
                    _ => skip -= skip.min(bytes.len()),
                }
            }
            if slices.is_empty() {
                break Ok(());
            }
            match file.write_vectored(&slices) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        slices.clear();
        // The element type only changes lifetime: nothing is kept.
        #[allow(clippy::unnecessary_filter_map)]
        let emptied = slices
            .into_iter()
            .filter_map(|_| None::<IoSlice<'static>>)
            .collect();
        *iov = emptied;
        written
    }
}

/// `path` with `suffix` appended to its name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Options creating a file only its owner reads (it holds SA keys).
fn private() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Reads all of `path` into a buffer zeroized on drop, allocated once from the file's size
/// (it holds SA keys; a growing `Vec` would leave copies behind). `Ok(None)`: no file.
pub(super) fn read_all(path: &Path) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = f.metadata()?.len() as usize;
    let mut bytes = Zeroizing::new(vec![0u8; size]);
    let mut got = 0;
    while got < size {
        match f.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(got);
    Ok(Some(bytes))
}

/// Why [`replace`] failed.
pub(super) struct ReplaceError {
    /// What failed.
    pub error: io::Error,
    /// Set when the new file was renamed over `path` but the directory's fsync failed: the
    /// file (open for appending) and its size. It is `path`'s file now, but a crash may still
    /// bring the old one back until the directory is synced.
    pub renamed: Option<(File, u64)>,
}

impl From<io::Error> for ReplaceError {
    fn from(error: io::Error) -> Self {
        ReplaceError {
            error,
            renamed: None,
        }
    }
}

/// Replaces `path` by a new log holding `batch`, atomically: a temp file (mode 0600) with
/// the magic and the records, fsynced, renamed over `path`, the directory fsynced. Returns
/// the new file open for appending (the handle follows the file through the rename) and its
/// size. Until the rename, `path` is untouched.
pub(super) fn replace(path: &Path, batch: &Batch<'_>) -> Result<(File, u64), ReplaceError> {
    let tmp = with_suffix(path, ".tmp");
    let (f, size) = write_temp(&tmp, batch)?;
    install(&tmp, path, f, size)
}

/// Writes a new log holding `batch` at `tmp` (a stale file there removed first; mode 0600),
/// durable when this returns: the file, open for appending, and its size.
pub(super) fn write_temp(tmp: &Path, batch: &Batch<'_>) -> io::Result<(File, u64)> {
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = private().append(true).create_new(true).open(tmp)?;
    let written = f
        .write_all(MAGIC)
        .and_then(|()| batch.write_to(&mut f))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    Ok((f, (MAGIC.len() + batch.len()) as u64))
}

/// Renames the durable log `tmp` (its handle `f`, `size` bytes) over `path` and fsyncs the
/// directory; `tmp` is removed if the rename fails.
pub(super) fn install(
    tmp: &Path,
    path: &Path,
    f: File,
    size: u64,
) -> Result<(File, u64), ReplaceError> {
    if let Err(e) = fs::rename(tmp, path) {
        let _ = fs::remove_file(tmp);
        return Err(e.into());
    }
    match sync_dir(path) {
        Ok(()) => Ok((f, size)),
        Err(error) => Err(ReplaceError {
            error,
            renamed: Some((f, size)),
        }),
    }
}

/// Fsyncs the directory holding `path`, so a file created or renamed there stays.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(batch: &Batch<'_>) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for p in &batch.pieces {
            match p {
                Piece::Plain(r) => out.extend_from_slice(&batch.plain[r.clone()]),
                Piece::Borrowed(b) => out.extend_from_slice(b),
            }
        }
        out
    }

    fn keys(bytes: &[u8], live: &[Frame]) -> Vec<(String, Vec<u8>)> {
        live.iter()
            .map(|f| {
                let k = String::from_utf8(bytes[f.key.clone()].to_vec()).unwrap();
                (k, bytes[f.value.clone()].to_vec())
            })
            .collect()
    }

    /// The newest record of a key wins, a tombstone removes the key, a put after a
    /// tombstone brings it back; a record's parts are where the batch put them.
    #[test]
    fn the_newest_record_per_key_wins() {
        let mut b = Batch::default();
        b.put("a", &[b"{1:"], b"x", b"}");
        b.put("b", &[], b"bb", b"");
        b.delete("a");
        b.put("c", &[], b"c1", b"");
        b.put("c", &[], b"c2", b"");
        b.delete("b");
        b.put("b", &[], b"b2", b"");
        let bytes = file_of(&b);
        assert_eq!(bytes.len(), MAGIC.len() + b.len());
        let (live, damage) = live_records(&bytes, MAGIC.len());
        assert_eq!(damage, Damage::default());
        assert_eq!(
            keys(&bytes, &live),
            vec![("b".into(), b"b2".to_vec()), ("c".into(), b"c2".to_vec())]
        );
        let mut one = Batch::default();
        one.put("a", &[b"{1:"], b"x", b"}");
        assert_eq!(
            keys(&file_of(&one), &live_records(&file_of(&one), 16).0)[0].1,
            b"{1:x}"
        );
    }

    /// A record's bytes are the format's, built here by hand (length, CRC-32 of the body,
    /// kind, key length, key, value), whatever parts its value came in: several head parts,
    /// empty values and tails, tombstones.
    #[test]
    fn records_are_the_formats_bytes() {
        let record = |kind: u8, key: &str, value: &[u8]| {
            let mut body = vec![kind];
            body.extend_from_slice(&(key.len() as u16).to_le_bytes());
            body.extend_from_slice(key.as_bytes());
            body.extend_from_slice(value);
            let mut r = (body.len() as u32).to_le_bytes().to_vec();
            r.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            r.extend_from_slice(&body);
            r
        };
        let mut b = Batch::default();
        b.put(
            "k1",
            &[b"{\"seq_epoch\":", b"12", b",\"r\":"],
            b"{..}",
            b"}",
        );
        b.put("\0sqn a@b", &[b"000000000020 a@b"], b"", b"");
        b.put("k2", &[], b"", b"");
        b.delete("k1");
        b.put("k3", &[b""], b"v", b"");
        let mut want = MAGIC.to_vec();
        want.extend(record(PUT, "k1", b"{\"seq_epoch\":12,\"r\":{..}}"));
        want.extend(record(PUT, "\0sqn a@b", b"000000000020 a@b"));
        want.extend(record(PUT, "k2", b""));
        want.extend(record(DELETE, "k1", b""));
        want.extend(record(PUT, "k3", b"v"));
        assert_eq!(file_of(&b), want);
        assert_eq!(b.len() + MAGIC.len(), want.len());
        assert!(b.pieces.iter().all(|p| match p {
            Piece::Plain(r) => !r.is_empty(),
            Piece::Borrowed(v) => !v.is_empty(),
        }));
    }

    /// A torn tail (a partial record, or zeros where a crash left the file longer than its
    /// data) is dropped and reported as torn; every complete record before it is kept.
    #[test]
    fn a_torn_tail_is_dropped() {
        let mut b = Batch::default();
        b.put("a", &[], b"1", b"");
        b.put("b", &[], b"2", b"");
        let full = file_of(&b);
        for cut in 1..9 + 4 {
            let bytes = &full[..full.len() - cut];
            let (live, damage) = live_records(bytes, MAGIC.len());
            assert_eq!(
                keys(bytes, &live),
                vec![("a".into(), b"1".to_vec())],
                "{cut}"
            );
            assert_eq!(damage.torn_bytes, full.len() - cut - (MAGIC.len() + 12 + 1));
            assert_eq!(damage.corrupt_regions, 0);
        }
        let mut zeros = full.clone();
        zeros.extend_from_slice(&[0; 4096]);
        let (live, damage) = live_records(&zeros, MAGIC.len());
        assert_eq!((live.len(), damage.torn_bytes), (2, 4096));
    }

    /// A damaged record between good ones is skipped and counted; the records after it
    /// are found again and kept.
    #[test]
    fn a_corrupt_record_is_skipped_and_the_next_ones_kept() {
        let mut b = Batch::default();
        b.put("a", &[], b"first", b"");
        b.put("b", &[], b"second", b"");
        b.put("c", &[], b"third", b"");
        let mut bytes = file_of(&b);
        let second = MAGIC.len() + HEADER + 3 + 1 + 5;
        bytes[second + HEADER + 5] ^= 0x40;
        let (live, damage) = live_records(&bytes, MAGIC.len());
        assert_eq!(
            keys(&bytes, &live),
            vec![
                ("a".into(), b"first".to_vec()),
                ("c".into(), b"third".to_vec())
            ]
        );
        assert_eq!((damage.corrupt_regions, damage.torn_bytes), (1, 0));
        assert_eq!(damage.corrupt_bytes, HEADER + 3 + 1 + 6);
        // A length beyond anything sane, and garbage, never panic.
        for junk in [vec![0xff; 64], vec![7; 3], (0..=255).collect::<Vec<u8>>()] {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&junk);
            let (live, _) = live_records(&bytes, MAGIC.len());
            assert!(live.is_empty());
        }
    }

    /// A batch written through `writev` is the same bytes, however many pieces (more than
    /// `IOV_MAX` included), and a new file is private.
    #[test]
    fn a_batch_is_written_whole_and_new_files_are_private() {
        let d = std::env::temp_dir().join(format!("akagate-reglog-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let values: Vec<Vec<u8>> = (0..1500).map(|i| vec![b'v'; i % 37]).collect();
        let names: Vec<String> = (0..1500).map(|i| format!("k{i}")).collect();
        let mut b = Batch::default();
        for (k, v) in names.iter().zip(&values) {
            b.put(k, &[b"<"], v, b">");
        }
        let p = d.join("r.registrations");
        let (_, size) = replace(&p, &b).map_err(|e| e.error).unwrap();
        let bytes = fs::read(&p).unwrap();
        assert_eq!((bytes.len() as u64, &bytes[..]), (size, &file_of(&b)[..]));
        let (live, damage) = live_records(&bytes, MAGIC.len());
        assert_eq!((live.len(), damage), (1500, Damage::default()));
        let mut f = private().append(true).open(&p).unwrap();
        let mut more = Batch::default();
        more.delete("k0");
        more.write_to(&mut f).unwrap();
        let bytes = fs::read(&p).unwrap();
        assert_eq!(live_records(&bytes, MAGIC.len()).0.len(), 1499);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = fs::remove_dir_all(&d);
    }
}
