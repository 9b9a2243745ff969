//! Reassembly of outer IPv4 (RFC 791) and IPv6 (RFC 8200 4.5) fragments, done before ESP is
//! removed, with bounded memory, a timeout, and overlapping fragments rejected (RFC 5722).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::Ipv4Packet;

use crate::wire::ip::{Direction, IpPacket, IpRepr, IpVersion};

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

    /// Offers an IPv4 or IPv6 packet (starting at the IP header, trimmed to its length); its
    /// header is parsed and, for IPv4, its checksum verified.
    pub fn push(&mut self, packet: &[u8], now: Instant) -> Result<Reasm, ReasmDrop> {
        let pkt = IpPacket::new_checked(packet).map_err(|_| ReasmDrop::Malformed)?;
        if !pkt.verify_checksum() {
            return Err(ReasmDrop::Malformed);
        }
        let ip = IpRepr::parse(&pkt, Direction::Inbound).map_err(|_| ReasmDrop::Malformed)?;
        self.push_parsed(packet, &ip, now)
    }

    /// [`push`](Self::push) of a packet whose header the caller parsed (and whose IPv4
    /// checksum it verified) already: `ip` describes `packet`.
    pub fn push_parsed(
        &mut self,
        packet: &[u8],
        ip: &IpRepr,
        now: Instant,
    ) -> Result<Reasm, ReasmDrop> {
        self.expire(now);
        let Some(frag) = fragment(packet, ip)? else {
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
        crate::copies::note(crate::copies::CopySite::Reassembly, frag.data.len());
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
        crate::copies::note(crate::copies::CopySite::Reassembly, dg.bytes);
        let mut payload = Vec::with_capacity(dg.bytes);
        for (_, d) in dg.frags {
            payload.extend_from_slice(&d);
        }
        self.counters.completed += 1;
        Ok(Reasm::Complete(build(
            frag.key, &header, nh_at, dg.v6_next, &payload,
        )?))
    }

    /// Drops incomplete datagrams older than the timeout. With nothing held (every loop turn
    /// without fragments) only the check of the empty order queue, inline.
    #[inline]
    pub fn expire(&mut self, now: Instant) {
        if !self.order.is_empty() {
            self.expire_held(now);
        }
    }

    /// [`Reassembler::expire`] with datagrams (or their stale keys) held.
    fn expire_held(&mut self, now: Instant) {
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

/// The fragment `packet` is according to its parsed header `ip`; `None` if it is none.
fn fragment<'a>(packet: &'a [u8], ip: &IpRepr) -> Result<Option<Fragment<'a>>, ReasmDrop> {
    let Some(f) = ip.fragment else {
        return Ok(None);
    };
    if !ip.fits(packet.len()) {
        return Err(ReasmDrop::Malformed);
    }
    let hl = ip.payload_offset;
    let (key, data, v6_next) = match (ip.version, ip.src, ip.dst) {
        (IpVersion::V4, IpAddr::V4(src), IpAddr::V4(dst)) => {
            let key = Key::V4 {
                src,
                dst,
                proto: f.next_header,
                id: f.ident as u16,
            };
            let data = &packet[hl..ip.len];
            // All fragments but the last carry a multiple of 8 bytes (RFC 791).
            if data.is_empty() || f.more && !data.len().is_multiple_of(8) {
                return Err(ReasmDrop::Malformed);
            }
            (key, data, 0)
        }
        (IpVersion::V6, IpAddr::V6(src), IpAddr::V6(dst)) => {
            let key = Key::V6 {
                src,
                dst,
                id: f.ident,
            };
            // After the 8-byte Fragment header at `payload_offset`.
            let data = packet.get(hl + 8..ip.len).ok_or(ReasmDrop::Malformed)?;
            // RFC 8200 4.5: non-last fragments are a multiple of 8 bytes long.
            if f.more && (data.is_empty() || !data.len().is_multiple_of(8)) {
                return Err(ReasmDrop::Malformed);
            }
            (key, data, f.next_header)
        }
        _ => return Err(ReasmDrop::Malformed),
    };
    Ok(Some(Fragment {
        key,
        offset: f.offset,
        more: f.more,
        data,
        header: &packet[..hl],
        nh_at: ip.next_header_at,
        v6_next,
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
    crate::copies::note(
        crate::copies::CopySite::Reassembly,
        header.len() + payload.len(),
    );
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
