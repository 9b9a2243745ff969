//! The log's append handle. Where the file system takes it, the log is written with
//! `O_DIRECT | O_DSYNC` in whole 4 KiB blocks at the log's end, into a zeroed extent
//! written ahead of it: a commit is one `pwrite` that reaches the disk without the page
//! cache, changes neither the file's size nor its extents (so there is no metadata for the
//! file system's journal), and is durable when it returns. Elsewhere (a file system that
//! refuses `O_DIRECT`, or a test's handle) it appends through `O_APPEND | O_DSYNC`: one
//! `writev` a commit, durable when it returns.
//!
//! A direct write starts at the block holding the log's end, so it writes the durable
//! bytes of that partial block again, byte for byte, from a copy kept here (page-cache
//! writeback rewrites that block on every append too); after the batch it pads with zeros.
//! The zeros after the last record are no record: reading stops there as at a torn tail
//! (`log::each_frame`), and a torn write inside them tears only the unacknowledged batch.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Direct writes start and end on multiples of this, from a buffer aligned to it.
const BLOCK: usize = 4096;
/// Zeroed bytes written ahead of the log's end when a commit reaches the end of the file,
/// so about one commit in fifty (~19 KiB a batch at 64 registrations in flight) extends it.
const PREALLOCATE: usize = 1 << 20;

/// The log's append handle (see the module).
pub(crate) struct Appender {
    /// The file.
    file: File,
    /// Written with `O_DIRECT` in whole blocks (else appended through `O_APPEND`).
    direct: bool,
    /// The end of the log's data: where the next record goes.
    end: u64,
    /// The file's size (zeros between `end` and it); direct only.
    size: u64,
    /// Direct only: staging for a write, a block-aligned window of it used; the window's
    /// first `end % BLOCK` bytes are the log's partial last block. Holds records (keys).
    staging: Zeroizing<Vec<u8>>,
}

impl Appender {
    /// Opens the log at `path` whose data ends at `end` (a durable file: the rest of it, if
    /// any, is not the log's) for appending: direct if the file system takes it.
    pub fn open(path: &Path, end: u64) -> io::Result<Appender> {
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path);
        let Ok(file) = direct else {
            return Ok(Appender::buffered(appending(path)?, end));
        };
        let size = file.metadata()?.len();
        if size < end {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut a = Appender {
            file,
            direct: true,
            end,
            size,
            staging: Zeroizing::new(Vec::new()),
        };
        let head = a.head();
        a.reserve(head);
        if head > 0 {
            // Read through a buffered handle: no alignment needed, and coherent with direct
            // writes (they invalidate the cached pages they cover).
            let w = window(&mut a.staging, head);
            File::open(path)?.read_exact_at(w, end - head as u64)?;
        }
        Ok(a)
    }

    /// An appending handle over `file` (`O_APPEND`; durable writes only if it was opened
    /// `O_DSYNC`): tests, and file systems without `O_DIRECT`.
    pub fn buffered(file: File, end: u64) -> Appender {
        Appender {
            file,
            direct: false,
            end,
            size: end,
            staging: Zeroizing::new(Vec::new()),
        }
    }

    /// Whether writes go around the page cache in whole blocks.
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file.
    #[cfg(test)]
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Appends `parts` (`len` bytes in all), durable when this returns. On failure nothing
    /// counts: the caller cuts the log back ([`Appender::cut_back`]) before the next append.
    pub fn append(&mut self, parts: &[&[u8]], len: usize) -> io::Result<()> {
        if !self.direct {
            writev_all(&mut self.file, parts)?;
            self.end += len as u64;
            return Ok(());
        }
        match self.append_direct(parts, len) {
            // A file system that took the flag but not the write (its blocks are larger,
            // say): appended through the page cache from now on, this batch included.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!("registration store: direct write refused ({e}); buffered");
                self.file.set_len(self.end)?;
                // The same file opened again (the magic link follows a rename).
                let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
                let again = appending(Path::new(&format!("/proc/self/fd/{fd}")))?;
                *self = Appender::buffered(again, self.end);
                self.append(parts, len)
            }
            done => done,
        }
    }

    /// [`Appender::append`] in whole blocks from the partial last block on.
    fn append_direct(&mut self, parts: &[&[u8]], len: usize) -> io::Result<()> {
        let head = self.head();
        let start = self.end - head as u64;
        let data = head + len;
        let mut total = data.next_multiple_of(BLOCK);
        if start + total as u64 > self.size {
            // Extend the zeroed extent in the same write.
            total += PREALLOCATE;
        }
        self.reserve(total);
        let w = window(&mut self.staging, total);
        let mut at = head;
        for p in parts {
            w[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        w[data..].fill(0);
        self.file.write_all_at(w, start)?;
        self.size = self.size.max(start + total as u64);
        self.end += len as u64;
        // Keep the new partial last block at the window's start.
        let keep = data % BLOCK;
        w.copy_within(data - keep..data, 0);
        w[keep..data].fill(0);
        Ok(())
    }

    /// Cuts the file back to `end` (after a failed append: what it left is not trusted, and
    /// a torn record must not sit before good ones). The zeroed extent goes too; the next
    /// direct append writes it again.
    pub fn cut_back(&mut self, end: u64) -> io::Result<()> {
        self.file.set_len(end)?;
        self.end = end;
        self.size = end;
        Ok(())
    }

    /// Bytes of the log's partial last block.
    fn head(&self) -> usize {
        (self.end % BLOCK as u64) as usize
    }

    /// Makes the staging buffer's aligned window at least `len` bytes, keeping the partial
    /// last block at its start.
    fn reserve(&mut self, len: usize) {
        let len = len.max(BLOCK);
        if self.staging.len() >= len + BLOCK {
            return;
        }
        let mut grown = Zeroizing::new(vec![0u8; len.next_multiple_of(BLOCK) + BLOCK]);
        let head = self.head();
        if head > 0 && !self.staging.is_empty() {
            window(&mut grown, head).copy_from_slice(&window(&mut self.staging, head)[..head]);
        }
        self.staging = grown;
    }
}

/// The first `len` bytes of `buf` after its first block-aligned address (`buf` holds at
/// least `len + BLOCK` bytes).
fn window(buf: &mut [u8], len: usize) -> &mut [u8] {
    let skip = buf.as_ptr().align_offset(BLOCK);
    &mut buf[skip..skip + len]
}

/// `path` opened for appending with `O_DSYNC`.
fn appending(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_DSYNC)
        .open(path)
}

/// Writes `parts` with as few `writev` calls as the system allows (one for up to
/// `IOV_MAX` parts; a short write continues where it stopped).
pub(super) fn writev_all(file: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    // The first part not written whole, and how much of it was.
    let (mut first, mut done) = (0, 0);
    while first < parts.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[first][done..])
            .chain(parts[first + 1..].iter().copied())
            .map(IoSlice::new)
            .collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n + done,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while first < parts.len() && n >= parts[first].len() {
            n -= parts[first].len();
            first += 1;
        }
        done = n;
    }
    Ok(())
}
