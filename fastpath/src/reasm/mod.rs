//! Reassembly of outer IPv4 (RFC 791) and IPv6 (RFC 8200 4.5) fragments, done before ESP is
//! removed, with bounded memory, a timeout, and overlapping fragments rejected (RFC 5722).

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Packet, Ipv6Packet};

/// IPv6 next-header values walked before the fragment header (RFC 8200 4.1).
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_DEST_OPTS: u8 = 60;
/// Largest IPv4 total length / IPv6 payload length.
const MAX_IP_LEN: usize = 65535;

/// Limits of a reassembler.
#[derive(Clone, Copy, Debug)]
pub struct ReasmConfig {
    /// Fragment payload bytes held across all incomplete datagrams.
    pub max_bytes: usize,
    /// Incomplete datagrams held at once.
    pub max_datagrams: usize,
    /// Time from the first fragment after which an incomplete datagram is dropped
    /// (RFC 8200 4.5: 60 s; Linux uses 30 s).
    pub timeout: Duration,
}

impl Default for ReasmConfig {
    fn default() -> Self {
        ReasmConfig {
            max_bytes: 4 << 20,
            max_datagrams: 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Result of offering a packet to the reassembler.
#[derive(Debug, PartialEq, Eq)]
pub enum Reasm {
    /// Not a fragment: use the packet as it is.
    NotFragment,
    /// A fragment was stored; the datagram is not complete yet.
    Incomplete,
    /// The last missing fragment arrived: the reassembled packet, without fragmentation.
    Complete(Vec<u8>),
}

/// Why a fragment was dropped; each is a drop counter reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReasmDrop {
    /// Truncated or inconsistent IP header or fragment header.
    #[error("malformed IP packet or fragment")]
    Malformed,
    /// The fragment overlaps another one of the same datagram; the datagram is discarded.
    #[error("overlapping fragment")]
    Overlap,
    /// An exact duplicate of a fragment already held.
    #[error("duplicate fragment")]
    Duplicate,
    /// The datagram would exceed the maximum IP length or conflicts with its known end.
    #[error("fragment beyond datagram end")]
    TooBig,
    /// The fragment alone exceeds the memory bound.
    #[error("fragment exceeds reassembly memory")]
    NoMemory,
}

/// Counters of a reassembler, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasmCounters {
    /// Datagrams completed.
    pub completed: u64,
    /// Incomplete datagrams dropped after the timeout.
    pub timeouts: u64,
    /// Incomplete datagrams evicted to stay within memory or count bounds.
    pub evicted: u64,
    /// Datagrams discarded because of overlapping fragments.
    pub overlaps: u64,
}

/// Identifies the fragments of one datagram (RFC 791 / RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        id: u16,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        id: u32,
    },
}

/// One incomplete datagram.
#[derive(Debug)]
struct Datagram {
    first_seen: Instant,
    /// Headers of the first fragment (IPv4 header, or IPv6 unfragmentable part) and, for
    /// IPv6, the offset of the next-header byte to patch.
    header: Option<(Vec<u8>, usize)>,
    /// IPv6: next header carried in the fragment header.
    v6_next: u8,
    /// Fragments as (offset, data), sorted by offset, non-overlapping.
    frags: Vec<(usize, Vec<u8>)>,
    /// Payload length, known once the last fragment arrived.
    total: Option<usize>,
    bytes: usize,
}

/// A parsed fragment.
struct Fragment<'a> {
    key: Key,
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// Headers to keep if this is the first fragment, and the next-header byte offset.
    header: &'a [u8],
    nh_at: usize,
    v6_next: u8,
}

/// Reassembles outer IP fragments; one per worker.
#[derive(Debug)]
pub struct Reassembler {
    cfg: ReasmConfig,
    table: HashMap<Key, Datagram>,
    /// Keys in order of first arrival, for timeouts and eviction (may hold stale keys).
    order: VecDeque<(Instant, Key)>,
    bytes: usize,
    counters: ReasmCounters,
}

impl Reassembler {
    /// An empty reassembler with the given bounds.
    pub fn new(cfg: ReasmConfig) -> Self {
        Reassembler {
            cfg,
            table: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            counters: ReasmCounters::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> ReasmCounters {
        self.counters
    }

    /// Fragment payload bytes currently held.
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    /// Incomplete datagrams currently held.
    pub fn datagrams_held(&self) -> usize {
        self.table.len()
    }

    /// Offers an IPv4 or IPv6 packet (starting at the IP header, trimmed to its length).
    pub fn push(&mut self, packet: &[u8], now: Instant) -> Result<Reasm, ReasmDrop> {
        self.expire(now);
        let frag = match packet.first().map(|b| b >> 4) {
            Some(4) => parse_v4(packet)?,
            Some(6) => parse_v6(packet)?,
            _ => return Err(ReasmDrop::Malformed),
        };
        let Some(frag) = frag else {
            return Ok(Reasm::NotFragment);
        };
        if frag.offset == 0 && !frag.more {
            // RFC 6946 atomic fragment: no state.
            return Ok(Reasm::Complete(build(
                frag.key,
                frag.header,
                frag.nh_at,
                frag.v6_next,
                frag.data,
            )?));
        }
        let end = frag.offset + frag.data.len();
        if end + frag.header.len()
            > MAX_IP_LEN
                + if matches!(frag.key, Key::V6 { .. }) {
                    40
                } else {
                    0
                }
        {
            return Err(ReasmDrop::TooBig);
        }
        if frag.data.len() > self.cfg.max_bytes {
            return Err(ReasmDrop::NoMemory);
        }
        // Make room: evict the oldest incomplete datagrams.
        while self.bytes + frag.data.len() > self.cfg.max_bytes
            || (!self.table.contains_key(&frag.key) && self.table.len() >= self.cfg.max_datagrams)
        {
            let Some((t, key)) = self.order.pop_front() else {
                break;
            };
            if self.table.get(&key).is_some_and(|d| d.first_seen == t) && self.remove(&key) {
                self.counters.evicted += 1;
            }
        }
        let dg = self.table.entry(frag.key).or_insert_with(|| Datagram {
            first_seen: now,
            header: None,
            v6_next: 0,
            frags: Vec::new(),
            total: None,
            bytes: 0,
        });
        if dg.frags.is_empty() {
            self.order.push_back((now, frag.key));
        }
        // The end of the datagram is fixed by the last fragment; nothing may lie beyond it.
        let beyond = match dg.total {
            Some(t) => end > t || (!frag.more && end != t),
            None => !frag.more && dg.frags.last().is_some_and(|(o, d)| o + d.len() > end),
        };
        if beyond {
            self.remove(&frag.key);
            return Err(ReasmDrop::TooBig);
        }
        let pos = dg.frags.partition_point(|(o, _)| *o < frag.offset);
        if let Some((o, d)) = dg.frags.get(pos) {
            if *o == frag.offset && d.as_slice() == frag.data {
                return Err(ReasmDrop::Duplicate);
            }
        }
        let overlaps_prev = pos > 0
            && dg
                .frags
                .get(pos - 1)
                .is_some_and(|(o, d)| o + d.len() > frag.offset);
        let overlaps_next = dg.frags.get(pos).is_some_and(|(o, _)| *o < end);
        if overlaps_prev || overlaps_next {
            // RFC 5722: the whole datagram is discarded.
            self.remove(&frag.key);
            self.counters.overlaps += 1;
            return Err(ReasmDrop::Overlap);
        }
        if !frag.more {
            dg.total = Some(end);
        }
        if frag.offset == 0 {
            dg.header = Some((frag.header.to_vec(), frag.nh_at));
            dg.v6_next = frag.v6_next;
        }
        dg.frags.insert(pos, (frag.offset, frag.data.to_vec()));
        dg.bytes += frag.data.len();
        self.bytes += frag.data.len();

        let complete = dg.total.is_some_and(|t| {
            let mut next = 0;
            for (o, d) in &dg.frags {
                if *o != next {
                    return false;
                }
                next = o + d.len();
            }
            next == t
        }) && dg.header.is_some();
        if !complete {
            return Ok(Reasm::Incomplete);
        }
        let Some(dg) = self.table.remove(&frag.key) else {
            return Ok(Reasm::Incomplete);
        };
        self.bytes -= dg.bytes;
        let Some((header, nh_at)) = dg.header else {
            return Err(ReasmDrop::Malformed);
        };
        let mut payload = Vec::with_capacity(dg.bytes);
        for (_, d) in dg.frags {
            payload.extend_from_slice(&d);
        }
        self.counters.completed += 1;
        Ok(Reasm::Complete(build(
            frag.key, &header, nh_at, dg.v6_next, &payload,
        )?))
    }

    /// Drops incomplete datagrams older than the timeout.
    pub fn expire(&mut self, now: Instant) {
        // Completed datagrams leave stale keys behind; keep the queue proportional to the table.
        if self.order.len() > 2 * self.cfg.max_datagrams + 64 {
            let table = &self.table;
            self.order
                .retain(|(t, k)| table.get(k).is_some_and(|d| d.first_seen == *t));
        }
        while let Some(&(t, key)) = self.order.front() {
            if now < t + self.cfg.timeout {
                break;
            }
            self.order.pop_front();
            if self.table.get(&key).is_some_and(|d| d.first_seen == t) && self.remove(&key) {
                self.counters.timeouts += 1;
            }
        }
    }

    fn remove(&mut self, key: &Key) -> bool {
        match self.table.remove(key) {
            Some(d) => {
                self.bytes -= d.bytes;
                true
            }
            None => false,
        }
    }
}

/// Parses an IPv4 packet; `None` if it is not a fragment.
fn parse_v4(packet: &[u8]) -> Result<Option<Fragment<'_>>, ReasmDrop> {
    let p = Ipv4Packet::new_checked(packet).map_err(|_| ReasmDrop::Malformed)?;
    if !p.verify_checksum() {
        return Err(ReasmDrop::Malformed);
    }
    if !p.more_frags() && p.frag_offset() == 0 {
        return Ok(None);
    }
    let hl = usize::from(p.header_len());
    let data = packet
        .get(hl..usize::from(p.total_len()))
        .ok_or(ReasmDrop::Malformed)?;
    // All fragments but the last carry a multiple of 8 bytes (RFC 791).
    if data.is_empty() || p.more_frags() && !data.len().is_multiple_of(8) {
        return Err(ReasmDrop::Malformed);
    }
    Ok(Some(Fragment {
        key: Key::V4 {
            src: p.src_addr(),
            dst: p.dst_addr(),
            proto: u8::from(p.next_header()),
            id: p.ident(),
        },
        offset: usize::from(p.frag_offset()),
        more: p.more_frags(),
        data,
        header: packet.get(..hl).ok_or(ReasmDrop::Malformed)?,
        nh_at: 9,
        v6_next: 0,
    }))
}

/// Parses an IPv6 packet, walking extension headers to a fragment header; `None` if it
/// has none.
fn parse_v6(packet: &[u8]) -> Result<Option<Fragment<'_>>, ReasmDrop> {
    let p = Ipv6Packet::new_checked(packet).map_err(|_| ReasmDrop::Malformed)?;
    let end = 40 + usize::from(p.payload_len());
    let packet = packet.get(..end).ok_or(ReasmDrop::Malformed)?;
    let mut nh = u8::from(p.next_header());
    let mut nh_at = 6;
    let mut at = 40;
    loop {
        match nh {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                let len = usize::from(*packet.get(at + 1).ok_or(ReasmDrop::Malformed)?) * 8 + 8;
                nh = *packet.get(at).ok_or(ReasmDrop::Malformed)?;
                nh_at = at;
                at += len;
            }
            NH_FRAGMENT => break,
            _ => return Ok(None),
        }
    }
    let fh = packet.get(at..at + 8).ok_or(ReasmDrop::Malformed)?;
    let off_m = u16::from_be_bytes([fh[2], fh[3]]);
    let more = off_m & 1 == 1;
    let offset = usize::from(off_m & !7);
    let id = u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]);
    let data = &packet[at + 8..];
    // RFC 8200 4.5: non-last fragments are a multiple of 8 bytes long.
    if more && (data.is_empty() || !data.len().is_multiple_of(8)) {
        return Err(ReasmDrop::Malformed);
    }
    Ok(Some(Fragment {
        key: Key::V6 {
            src: p.src_addr(),
            dst: p.dst_addr(),
            id,
        },
        offset,
        more,
        data,
        header: &packet[..at],
        nh_at,
        v6_next: fh[0],
    }))
}

/// Rebuilds an unfragmented packet from the first fragment's headers and the payload.
fn build(
    key: Key,
    header: &[u8],
    nh_at: usize,
    v6_next: u8,
    payload: &[u8],
) -> Result<Vec<u8>, ReasmDrop> {
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    match key {
        Key::V4 { .. } => {
            let total = u16::try_from(out.len()).map_err(|_| ReasmDrop::TooBig)?;
            let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
            p.set_total_len(total);
            p.set_more_frags(false);
            p.set_frag_offset(0);
            p.fill_checksum();
        }
        Key::V6 { .. } => {
            let plen = u16::try_from(out.len() - 40).map_err(|_| ReasmDrop::TooBig)?;
            out[4..6].copy_from_slice(&plen.to_be_bytes());
            *out.get_mut(nh_at).ok_or(ReasmDrop::Malformed)? = v6_next;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
