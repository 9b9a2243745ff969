//! Packet buffers with headroom and tailroom so ESP can grow a packet in place, and the
//! per-queue pool they are taken from and returned to (no allocation per packet).

use std::ops::Range;

use crate::error::BufError;

/// Largest untagged Ethernet frame without FCS at the standard 1500-byte MTU.
pub const ETH_FRAME_STANDARD: usize = 1514;
/// Largest untagged Ethernet frame without FCS at a 9000-byte jumbo MTU.
pub const ETH_FRAME_JUMBO: usize = 9014;

/// Geometry of every buffer of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufLayout {
    /// Bytes reserved in front of a received frame (room for ESP/IP headers).
    pub headroom: usize,
    /// Largest frame the port receives or sends.
    pub max_frame: usize,
    /// Bytes reserved behind the largest frame (room for ESP trailer and ICV).
    pub tailroom: usize,
}

impl BufLayout {
    /// 128 bytes headroom, a 1514-byte frame, 128 bytes tailroom.
    pub const STANDARD: BufLayout = BufLayout {
        headroom: 128,
        max_frame: ETH_FRAME_STANDARD,
        tailroom: 128,
    };
    /// 128 bytes headroom, a 9014-byte jumbo frame, 128 bytes tailroom.
    pub const JUMBO: BufLayout = BufLayout {
        headroom: 128,
        max_frame: ETH_FRAME_JUMBO,
        tailroom: 128,
    };

    /// Total bytes of one buffer.
    pub fn capacity(&self) -> usize {
        self.headroom + self.max_frame + self.tailroom
    }
}

impl Default for BufLayout {
    fn default() -> Self {
        BufLayout::STANDARD
    }
}

/// One packet: an owned byte buffer and the range of it that holds the frame.
pub struct PacketBuf {
    buf: Box<[u8]>,
    range: Range<usize>,
    default_headroom: usize,
    max_frame: usize,
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Packet contents may carry keys in clear (e.g. SIP before ESP); print geometry only.
        f.debug_struct("PacketBuf")
            .field("range", &self.range)
            .field("capacity", &self.buf.len())
            .finish()
    }
}

impl PacketBuf {
    /// A fresh, empty buffer with `layout`; the data range starts after the headroom.
    pub fn new(layout: BufLayout) -> Self {
        PacketBuf {
            buf: vec![0u8; layout.capacity()].into_boxed_slice(),
            range: layout.headroom..layout.headroom,
            default_headroom: layout.headroom,
            max_frame: layout.max_frame,
        }
    }

    /// Bytes free in front of the data.
    pub fn headroom(&self) -> usize {
        self.range.start
    }

    /// Bytes free behind the data.
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.range.end
    }

    /// Length of the frame.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Total size of the underlying buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The frame bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }

    /// The frame bytes, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.range.clone()]
    }

    /// The whole buffer and the range of it that holds the frame, for in-place transforms
    /// that grow into headroom/tailroom; commit the new extent with [`PacketBuf::set_range`].
    pub fn raw_mut(&mut self) -> (&mut [u8], Range<usize>) {
        (&mut self.buf, self.range.clone())
    }

    /// The whole buffer and the frame range, read-only.
    pub fn raw(&self) -> (&[u8], Range<usize>) {
        (&self.buf, self.range.clone())
    }

    /// Set which part of the buffer holds the frame.
    pub fn set_range(&mut self, r: Range<usize>) -> Result<(), BufError> {
        if r.start > r.end || r.end > self.buf.len() {
            return Err(BufError::OutOfBounds {
                start: r.start,
                end: r.end,
                capacity: self.buf.len(),
            });
        }
        self.range = r;
        Ok(())
    }

    /// Empty the buffer and restore the pool's default headroom.
    pub fn reset(&mut self) {
        self.range = self.default_headroom..self.default_headroom;
    }

    /// Replace the frame with a copy of `frame`, placed after the default headroom.
    pub fn fill(&mut self, frame: &[u8]) -> Result<(), BufError> {
        let start = self.default_headroom;
        let end = start + frame.len();
        let capacity = self.buf.len();
        let dst = self.buf.get_mut(start..end).ok_or(BufError::OutOfBounds {
            start,
            end,
            capacity,
        })?;
        dst.copy_from_slice(frame);
        self.range = start..end;
        Ok(())
    }

    /// Let `f` write a frame of at most the layout's `max_frame` bytes after the default
    /// headroom and return its length (`None`: nothing written, the buffer stays empty).
    pub fn fill_with(&mut self, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        let start = self.default_headroom;
        let end = (start + self.max_frame).min(self.buf.len());
        let Some(area) = self.buf.get_mut(start..end) else {
            return false;
        };
        let cap = area.len();
        match f(area) {
            Some(n) if n <= cap => {
                self.range = start..start + n;
                true
            }
            _ => {
                self.range = start..start;
                false
            }
        }
    }

    /// Grow the frame by `n` bytes at the front and return the new bytes.
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.range.start {
            return Err(BufError::NoHeadroom {
                need: n,
                have: self.range.start,
            });
        }
        self.range.start -= n;
        let s = self.range.start;
        Ok(&mut self.buf[s..s + n])
    }

    /// Grow the frame by `n` bytes at the end and return the new bytes.
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        let have = self.tailroom();
        if n > have {
            return Err(BufError::NoTailroom { need: n, have });
        }
        let e = self.range.end;
        self.range.end += n;
        Ok(&mut self.buf[e..e + n])
    }

    /// Remove `n` bytes from the front of the frame (e.g. a stripped header).
    pub fn trim_front(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.range.len() {
            return Err(BufError::OutOfBounds {
                start: self.range.start + n,
                end: self.range.end,
                capacity: self.buf.len(),
            });
        }
        self.range.start += n;
        Ok(())
    }

    /// Shorten the frame to `len` bytes (no-op if it is already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.range.len() {
            self.range.end = self.range.start + len;
        }
    }
}

/// A per-queue free list of equally sized [`PacketBuf`]s, filled once at start-up.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<PacketBuf>,
    layout: BufLayout,
    size: usize,
}

impl BufPool {
    /// A pool of `count` buffers of `layout`, all allocated now.
    pub fn new(layout: BufLayout, count: usize) -> Self {
        let free = (0..count).map(|_| PacketBuf::new(layout)).collect();
        BufPool {
            free,
            layout,
            size: count,
        }
    }

    /// Take an empty buffer, or `None` if all are in use.
    pub fn get(&mut self) -> Option<PacketBuf> {
        let mut b = self.free.pop()?;
        b.reset();
        Some(b)
    }

    /// Return a buffer. Buffers of a different size, or beyond the pool's size, are dropped.
    pub fn put(&mut self, buf: PacketBuf) {
        if buf.capacity() == self.layout.capacity() && self.free.len() < self.size {
            self.free.push(buf);
        }
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Number of buffers the pool was created with.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Geometry of the pool's buffers.
    pub fn layout(&self) -> BufLayout {
        self.layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_layout_has_room_for_esp() {
        let b = PacketBuf::new(BufLayout::STANDARD);
        assert_eq!(b.capacity(), 128 + 1514 + 128);
        assert_eq!(b.headroom(), 128);
        assert_eq!(b.tailroom(), 1514 + 128);
    }

    #[test]
    fn grow_and_shrink_in_place() {
        let mut b = PacketBuf::new(BufLayout::STANDARD);
        b.fill(&[1, 2, 3, 4]).unwrap();
        b.prepend(2).unwrap().copy_from_slice(&[9, 9]);
        b.append(1).unwrap()[0] = 7;
        assert_eq!(b.data(), &[9, 9, 1, 2, 3, 4, 7]);
        b.trim_front(3).unwrap();
        b.truncate(2);
        assert_eq!(b.data(), &[2, 3]);
        let (raw, r) = b.raw_mut();
        assert_eq!(&raw[r.clone()], &[2, 3]);
        assert_eq!(r, 129..131);
    }

    #[test]
    fn bounds_are_errors_not_panics() {
        let mut b = PacketBuf::new(BufLayout::STANDARD);
        assert!(matches!(
            b.prepend(129),
            Err(BufError::NoHeadroom {
                need: 129,
                have: 128
            })
        ));
        assert!(b.append(1514 + 129).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 10..5;
        assert!(b.set_range(reversed).is_err());
        assert!(b.set_range(0..1771).is_err());
        assert!(b.set_range(0..1770).is_ok());
        assert!(b.fill(&[0u8; 1643]).is_err());
        assert!(b.trim_front(1771).is_err());
        assert!(!b.fill_with(|a| Some(a.len() + 1)));
        assert!(b.is_empty());
        assert!(b.fill_with(|a| {
            assert_eq!(a.len(), 1514);
            a[..3].copy_from_slice(b"abc");
            Some(3)
        }));
        assert_eq!(b.data(), b"abc");
    }

    #[test]
    fn pool_recycles_without_growth() {
        let mut p = BufPool::new(BufLayout::STANDARD, 2);
        let mut a = p.get().unwrap();
        a.fill(b"x").unwrap();
        let b = p.get().unwrap();
        assert!(p.get().is_none());
        p.put(a);
        p.put(b);
        p.put(PacketBuf::new(BufLayout::STANDARD));
        assert_eq!(p.available(), 2);
        let a = p.get().unwrap();
        assert!(a.is_empty());
        assert_eq!(a.headroom(), 128);
        p.put(PacketBuf::new(BufLayout::JUMBO));
        assert_eq!(p.available(), 1);
    }
}
