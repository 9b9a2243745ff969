//! A minimal classic pcap writer and reader (libpcap format: 24-byte global header, 16-byte
//! record headers, microsecond timestamps, linktype 1 = Ethernet), so pktgen traffic can be
//! replayed with tcpreplay, pktgen-dpdk or TRex on real NICs.

use std::io::{self, Write};

/// Magic number of a microsecond-resolution pcap file (written little-endian).
pub const MAGIC_US: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Snapshot length we declare: every frame is stored whole.
pub const SNAPLEN: u32 = 65_535;

/// Writes Ethernet frames as a pcap stream.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (version 2.4, GMT offset 0, linktype Ethernet).
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_US.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, records: 0 })
    }

    /// Appends one frame captured at `ts_us` microseconds since the epoch.
    pub fn write(&mut self, ts_us: u64, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
        let incl = len.min(SNAPLEN);
        let secs = u32::try_from(ts_us / 1_000_000).unwrap_or(u32::MAX);
        let usecs = (ts_us % 1_000_000) as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&usecs.to_le_bytes());
        h[8..12].copy_from_slice(&incl.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..incl as usize])?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Why a pcap file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    /// Shorter than the global header.
    #[error("truncated global header")]
    ShortHeader,
    /// Not a microsecond pcap in either byte order.
    #[error("bad magic {0:#010x}")]
    Magic(u32),
    /// A record header or body runs past the end.
    #[error("truncated record {0}")]
    ShortRecord(usize),
}

/// One record: timestamp (µs) and the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Timestamp, microseconds since the epoch.
    pub ts_us: u64,
    /// Original length on the wire.
    pub orig_len: u32,
    /// The stored bytes.
    pub data: &'a [u8],
}

/// Parses a whole pcap file: `(linktype, records)`; either byte order is accepted.
pub fn parse(buf: &[u8]) -> Result<(u32, Vec<Record<'_>>), PcapError> {
    let word = |b: &[u8], at: usize, le: bool| -> Option<u32> {
        let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        })
    };
    let magic = word(buf, 0, true).ok_or(PcapError::ShortHeader)?;
    let le = match magic {
        MAGIC_US => true,
        m if m.swap_bytes() == MAGIC_US => false,
        m => return Err(PcapError::Magic(m)),
    };
    let linktype = word(buf, 20, le).ok_or(PcapError::ShortHeader)?;
    let mut out = Vec::new();
    let mut at = 24;
    while at < buf.len() {
        let n = out.len();
        let (Some(s), Some(us), Some(incl), Some(orig)) = (
            word(buf, at, le),
            word(buf, at + 4, le),
            word(buf, at + 8, le),
            word(buf, at + 12, le),
        ) else {
            return Err(PcapError::ShortRecord(n));
        };
        let start = at + 16;
        let data = buf
            .get(start..start + incl as usize)
            .ok_or(PcapError::ShortRecord(n))?;
        out.push(Record {
            ts_us: u64::from(s) * 1_000_000 + u64::from(us),
            orig_len: orig,
            data,
        });
        at = start + incl as usize;
    }
    Ok((linktype, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_record_headers_are_byte_exact() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000_123, &[0xaa; 3]).unwrap();
        let b = w.finish().unwrap();
        // libpcap's savefile.c layout: magic, 2, 4, thiszone, sigfigs, snaplen, linktype.
        assert_eq!(
            &b[..24],
            &[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        // ts_sec 1500 = 0x5dc, ts_usec 123, incl_len 3, orig_len 3.
        assert_eq!(
            &b[24..40],
            &[0xdc, 0x05, 0, 0, 123, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(&b[40..], &[0xaa; 3]);
        let (lt, recs) = parse(&b).unwrap();
        assert_eq!(lt, LINKTYPE_ETHERNET);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].ts_us, 1_500_000_123);
    }

    #[test]
    fn truncated_files_are_errors() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(0, &[1, 2, 3, 4]).unwrap();
        let b = w.finish().unwrap();
        assert_eq!(parse(&b[..10]), Err(PcapError::ShortHeader));
        assert_eq!(parse(&b[..b.len() - 1]), Err(PcapError::ShortRecord(0)));
        assert_eq!(parse(&[0u8; 24]), Err(PcapError::Magic(0)));
    }
}
