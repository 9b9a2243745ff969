//! Inbound path of a burst: link layer, reassembly, then ESP through the SA table or the
//! unprotected SIP port, into the UE's stack.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::atomic::AtomicU64;

use akagate_sys::{PacketBuf, PortQueue};
use smoltcp::time::Instant;

use super::counters::{add, inc};
use super::handoff::Handed;
use super::{InboundEntry, SaSetState, UeTag, Worker};
use crate::esp::ip::IPPROTO_ESP;
use crate::esp::{decapsulate_burst_in, spi_of, DecapItem};
use crate::ipc::Transport;
use crate::l2::{icmp, Input, L2Drop};
use crate::reasm::{Reasm, ReasmDrop};
use crate::wire::ip::{Direction, IpRepr};
use crate::wire::transport::{IPPROTO_TCP, IPPROTO_UDP};
use crate::wire::Segment;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// ESP packets decapsulated together (the multi-buffer HMAC keeps four in flight; 32 stay
/// in L1/L2 between the passes over their bytes).
const ESP_GROUP: usize = 32;

/// Frames of a burst whose UEs' state is prefetched ([`Worker::prefetch_ues`]); the rest of
/// a larger burst goes without.
const PREFETCH_UES: usize = 64;

/// What the first pass over a received burst decided for a frame.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Handled or dropped: the buffer goes back to the pool.
    Done,
    /// An IP packet of a UE another worker owns: the worker, the offset of the IP header in
    /// the frame and the parsed header.
    HandOff {
        /// The owning worker.
        owner: usize,
        /// Offset of the IP header in the frame.
        offset: usize,
        /// The parsed header.
        ip: IpRepr,
    },
    /// A whole ESP packet whose SA this worker holds, for the burst decapsulation.
    Esp(EspIn),
}

/// An ESP packet found its SA: where it is in its buffer, its header, SPI and table entry.
#[derive(Debug)]
pub(super) struct EspIn {
    /// The IP packet in the frame's buffer.
    r: Range<usize>,
    /// Its parsed (outer) header.
    ip: IpRepr,
    /// Its SPI.
    spi: u32,
    /// Its SA's entry (selectors, slot).
    entry: InboundEntry,
}

/// The low half of the sequence number of the ESP packet `pkt` (header `ip`), 0 if it is too
/// short: only for choosing which replay-window word to prefetch.
fn seq_lo(pkt: &[u8], ip: &IpRepr) -> u32 {
    pkt.get(ip.payload_offset + 4..ip.payload_offset + 8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The SPI of an Ethernet frame carrying an unfragmented-looking IPv4 or IPv6 ESP packet
/// (RFC 4303 2.1: the first four bytes after the IP header), read without any check beyond
/// the lengths: only a hint for [`SaTable::prefetch`](crate::sad::SaTable::prefetch) ahead
/// of the real parse (IPv6 extension headers and VLAN tags get no hint).
fn peek_frame_spi(frame: &[u8]) -> Option<u32> {
    let spi_at = match u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) {
        0x0800 if *frame.get(14 + 9)? == IPPROTO_ESP => 14 + usize::from(frame.get(14)? & 0xf) * 4,
        0x86dd if *frame.get(14 + 6)? == IPPROTO_ESP => 14 + 40,
        _ => return None,
    };
    let b = frame.get(spi_at..spi_at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The source address of an Ethernet frame carrying IPv4 or IPv6, read without any check
/// beyond the lengths: only a hint for prefetching its UE's state (VLAN tags get none).
fn peek_frame_src(frame: &[u8]) -> Option<IpAddr> {
    match u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) {
        0x0800 => {
            let a: [u8; 4] = frame.get(14 + 12..14 + 16)?.try_into().ok()?;
            Some(Ipv4Addr::from(a).into())
        }
        0x86dd => {
            let a: [u8; 16] = frame.get(14 + 8..14 + 24)?.try_into().ok()?;
            Some(Ipv6Addr::from(a).into())
        }
        _ => None,
    }
}

/// Bytes of a receive buffer a frame of `len` bytes may fill, roughly: 0 for a frame no
/// larger than a payload-free segment can be (a SYN or a pure ACK, with ESP or without),
/// else the frame less the smallest headers (Ethernet, IPv4, TCP without options), so that
/// its payload is covered, by a line too many through ESP. Only a hint for
/// [`super::Ue::prefetch_heap`].
fn payload_hint(len: usize) -> usize {
    if len <= PAYLOAD_FREE_FRAME {
        0
    } else {
        len - SMALLEST_HEADERS
    }
}

/// The largest frame [`payload_hint`] takes for payload-free: Ethernet (14), IPv6 (40), TCP
/// with options (60), ESP's header, a 16-byte IV, padding, trailer and a 16-byte ICV (46).
const PAYLOAD_FREE_FRAME: usize = 160;

/// Ethernet (14), IPv4 (20) and TCP (20) headers without options.
const SMALLEST_HEADERS: usize = 54;

/// The address an ARP or ND frame may teach (RFC 826 sender, RFC 4861 NS source / NA target).
fn neighbor_taught(frame: &[u8]) -> Option<IpAddr> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let p = frame.get(14..)?;
    match et {
        // Ethernet/IPv4 ARP: hlen 6, plen 4, sender protocol address at 14..18.
        0x0806 if p.get(4..6)? == [6, 4] => {
            let a: [u8; 4] = p.get(14..18)?.try_into().ok()?;
            Some(Ipv4Addr::from(a).into())
        }
        0x86dd if p.get(6) == Some(&IPPROTO_ICMPV6) => {
            let field = match p.get(40)? {
                135 => 8..24,  // NS: the IPv6 source address
                136 => 48..64, // NA: the target address
                _ => return None,
            };
            let a: [u8; 16] = p.get(field)?.try_into().ok()?;
            let a = Ipv6Addr::from(a);
            (!a.is_unspecified()).then_some(a.into())
        }
        _ => None,
    }
}

/// The [`super::phases::Phase`] of a received frame after its classification `v`: by
/// ethertype (ARP; IP handled at once; ESP left for the burst), else other.
fn frame_phase(frame: &[u8], v: &Verdict) -> super::phases::Phase {
    use super::phases::Phase;
    let ethertype = frame
        .get(12..14)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    match (v, ethertype) {
        (Verdict::Esp(_), _) => Phase::FrameEsp,
        (Verdict::Done, 0x0806) => Phase::FrameArp,
        (Verdict::Done, 0x0800 | 0x86dd) => Phase::FrameClear,
        _ => Phase::FrameOther,
    }
}

impl<Q: PortQueue> Worker<Q> {
    /// Receives and processes one burst; returns the number of frames.
    pub(super) fn rx_burst(&mut self, now: Instant) -> usize {
        let t0 = super::phases::stamp();
        let n = self.link.queue.rx_burst(&mut self.rx, self.cfg.burst);
        // Once per burst (every packet of it has the same `now`); reassembly itself only sees
        // fragments.
        self.reasm.expire(now);
        if n == 0 {
            return 0;
        }
        let mut rx = std::mem::take(&mut self.rx);
        super::counters::add(&self.counters.rx_frames, n as u64);
        let tp = super::phases::stamp();
        // Phase zero: the table slots of the burst's ESP SPIs start loading, so the lookups of
        // phase one find them in the cache (at millions of SAs each is a miss to memory; this
        // way the burst's misses overlap instead of following one another), and with each the
        // first line of the SA in the direct cell of its SPI (`WorkerSas::direct_slot`), where
        // the install put it unless that cell was taken: the SA's line no longer waits for
        // the table's to say where it is. The table still decides which SA a packet gets.
        for b in rx.iter() {
            if let Some(spi) = peek_frame_spi(b.data()) {
                self.table.prefetch(spi);
                if let Some(slot) = self.link.sas.direct_slot(spi) {
                    self.link.sas.inbound.prefetch_head(slot, 0);
                }
            }
        }
        self.prefetch_ues(&rx);
        super::phases::note(super::phases::Phase::BurstPrefetch, tp);
        let mut verdicts = std::mem::take(&mut self.verdicts);
        // Phase one: link layer, owner, clear packets; each whole ESP packet gets its table
        // entry, and its SA in the slab starts loading for phase two.
        for b in rx.iter_mut() {
            let t0 = super::phases::stamp();
            let (raw, range) = b.raw_mut();
            let v = self.frame(raw, range, now);
            super::phases::note(frame_phase(b.data(), &v), t0);
            verdicts.push(v);
        }
        // Phase two: the ESP packets of the burst decapsulated together, into the stacks.
        self.esp_burst(&mut rx, &verdicts, now);
        for (b, v) in rx.drain(..).zip(verdicts.drain(..)) {
            match v {
                Verdict::HandOff { owner, offset, ip } => self.hand_off(
                    owner,
                    Handed {
                        from: self.cfg.id,
                        buf: b,
                        offset,
                        ip,
                    },
                ),
                Verdict::Done | Verdict::Esp(_) => self.link.queue.free(b),
            }
        }
        self.verdicts = verdicts;
        self.rx = rx;
        super::phases::note(super::phases::Phase::BurstRx, t0);
        n
    }

    /// Starts loading the state of the UEs that sent the frames of `rx` (their records, then
    /// their sockets, connections and SA sets), before the burst is processed: at a few
    /// hundred UEs in flight each first touch of a UE's state is a miss to memory, and issued
    /// together for the whole burst they overlap (docs/ARCHITECTURE.md, *Worker pipeline*).
    /// An ESP frame's UE is found from its SA's table entry (whose line phase zero asked
    /// for), not the UE map: the owner the entry names, without the map's lines.
    fn prefetch_ues(&self, rx: &[PacketBuf]) {
        let mut seen: [Option<(&super::Ue, usize)>; PREFETCH_UES] = [None; PREFETCH_UES];
        for (b, s) in rx.iter().zip(seen.iter_mut()) {
            let data = b.data();
            let owned = peek_frame_spi(data)
                .and_then(|spi| self.table.lookup(spi))
                .and_then(|e| self.ues.at(e.owner));
            let u = match owned {
                Some(u) => u,
                None => match peek_frame_src(data).and_then(|src| self.ues.get(&src)) {
                    Some(u) => u,
                    None => continue,
                },
            };
            u.prefetch();
            *s = Some((u, payload_hint(data.len())));
        }
        // The records' lines were asked for a loop ago: the pointers in them are read now.
        for (u, rx_bytes) in seen.iter().flatten() {
            u.prefetch_heap(*rx_bytes);
        }
    }

    /// Decapsulates the ESP packets of a received burst (`verdicts[i]` of `rx[i]`) in groups
    /// through [`decapsulate_burst_in`] with this worker's inbound SAs (multi-buffer
    /// HMAC-SHA-1 across SAs; each SA's replay window and counters exactly as packet by
    /// packet in arrival order, RFC 4303 3.4.3), then runs each into its UE's stack.
    fn esp_burst(&mut self, rx: &mut [PacketBuf], verdicts: &[Verdict], now: Instant) {
        if !verdicts.iter().any(|v| matches!(v, Verdict::Esp(_))) {
            return;
        }
        // On the stack: the items borrow the receive buffers of this burst only.
        let mut items: [DecapItem<'_>; ESP_GROUP] =
            core::array::from_fn(|_| DecapItem::new(0, &mut [], 0..0));
        let mut metas: [Option<&EspIn>; ESP_GROUP] = [None; ESP_GROUP];
        let mut n = 0;
        for (b, v) in rx.iter_mut().zip(verdicts) {
            let Verdict::Esp(e) = v else {
                continue;
            };
            let (raw, _) = b.raw_mut();
            // The second prefetch pass: the SA's transform lines (its first lines were asked
            // for in `esp_target`, and the SPI check below waits for them).
            let seq_lo = raw.get(e.r.clone()).map_or(0, |p| seq_lo(p, &e.ip));
            self.link
                .sas
                .inbound
                .prefetch(e.entry.slot, seq_lo, e.entry.transform_lines);
            if !self.esp_held(e.spi, &e.entry) {
                continue;
            }
            let (Some(item), Some(meta)) = (items.get_mut(n), metas.get_mut(n)) else {
                continue;
            };
            *item = DecapItem::new(e.entry.slot as usize, raw, e.r.clone()).with_parsed(e.ip);
            *meta = Some(e);
            n += 1;
            if n == ESP_GROUP {
                self.esp_group(&mut items, &metas, now);
                n = 0;
            }
        }
        // (None left when the burst's last group was full: no call for nothing.)
        if n > 0 {
            if let (Some(items), Some(metas)) = (items.get_mut(..n), metas.get(..n)) {
                self.esp_group(items, metas, now);
            }
        }
    }

    /// One group of [`Worker::esp_burst`].
    fn esp_group(&mut self, items: &mut [DecapItem<'_>], metas: &[Option<&EspIn>], now: Instant) {
        let t0 = super::phases::stamp();
        if decapsulate_burst_in(&mut self.link.sas.inbound, items).is_err() {
            // A slot outside the slab: cannot happen (checked when the SA was found).
            return add(&self.counters.drop_esp_invalid, items.len() as u64);
        }
        super::phases::note_n(super::phases::Phase::EspDecap, t0, items.len());
        for (it, m) in items.iter().zip(metas) {
            let Some(m) = m else {
                continue;
            };
            match it.parsed_result() {
                Some((inner, inner_ip)) => self.esp_deliver(m, it.buf, inner, &inner_ip, now),
                None => inc(&self.counters.drop_esp_invalid),
            }
        }
    }

    /// Passes a frame of a UE owned by worker `owner` to it, with its parsed IP header.
    fn hand_off(&mut self, owner: usize, h: Handed) {
        let Some(p) = &self.peers else {
            return self.link.queue.free(h.buf);
        };
        match p.handoff.send_frame(owner, h) {
            Ok(()) => inc(&self.counters.handoff_out),
            Err(h) => {
                self.link.queue.free(h.buf);
                inc(&self.counters.drop_handoff_full);
            }
        }
    }

    /// Takes what the other workers sent: buffers coming back, neighbours they learned, and
    /// up to one burst of frames of UEs this worker owns. Returns the work done.
    pub(super) fn handed_in(&mut self, now: Instant) -> usize {
        let Some(p) = &self.peers else {
            return 0;
        };
        let handoff = p.handoff.clone();
        let me = self.cfg.id;
        let mut work = 0;
        while let Some(b) = handoff.returned(me) {
            self.link.queue.free(b);
        }
        while let Some((ip, mac)) = handoff.recv_neighbor(me) {
            self.link.l2.learn(ip, mac, now);
            inc(&self.counters.neighbors_from_peers);
            work += 1;
        }
        let mut frames = 0;
        while frames < self.cfg.burst {
            let Some(mut h) = handoff.recv_frame(me) else {
                break;
            };
            if frames == 0 {
                self.reasm.expire(now);
            }
            frames += 1;
            inc(&self.counters.handoff_in);
            let (raw, range) = h.buf.raw_mut();
            // The sender's link layer classified and parsed it (same configuration); never
            // handed on again: the steering named this worker.
            let start = range.start + h.offset;
            let r = start..start + h.ip.len;
            if r.end <= range.end {
                self.ip_input(raw, r, &h.ip, now);
            }
            if let Err(b) = handoff.give_back(h.from, h.buf) {
                self.link.queue.free(b);
            }
        }
        work + frames
    }

    /// One received frame: handled here ([`Verdict::Done`]), for another worker, or an ESP
    /// packet whose SA was found, left for the burst decapsulation.
    fn frame(&mut self, raw: &mut [u8], range: Range<usize>, now: Instant) -> Verdict {
        let Some(frame) = raw.get(range.clone()) else {
            return Verdict::Done;
        };
        let input = self.link.l2.input(frame, now, &mut self.link.ctrl);
        if !matches!(input, Ok(Input::Ip { .. })) && self.peers.is_some() {
            self.share_learned(frame, now);
        }
        // The one parse of the IP header: everything below works on `ip`.
        let (offset, ip) = match input {
            Ok(Input::Handled) => return Verdict::Done,
            Ok(Input::Ip { offset, ip }) => (offset, ip),
            Err(e) => {
                inc(match e {
                    L2Drop::NotForUs => &self.counters.drop_l2_not_for_us,
                    L2Drop::Ethertype => &self.counters.drop_l2_ethertype,
                    L2Drop::IpHeader => &self.counters.drop_ip_malformed,
                    _ => &self.counters.drop_l2_malformed,
                });
                return Verdict::Done;
            }
        };
        if let Some(owner) = self.owner_elsewhere(ip.src) {
            return Verdict::HandOff { owner, offset, ip };
        }
        let start = range.start + offset;
        let r = start..start + ip.len;
        if ip.fragment.is_none() && ip.next_header == IPPROTO_ESP {
            return match raw.get(r.clone()).and_then(|p| self.esp_target(p, &ip)) {
                Some((spi, entry)) => Verdict::Esp(EspIn { r, ip, spi, entry }),
                None => Verdict::Done,
            };
        }
        self.ip_input(raw, r, &ip, now);
        Verdict::Done
    }

    /// An IP packet for this worker at `buf[r]` with its parsed header `ip`: fragments go
    /// through reassembly, whole packets on.
    fn ip_input(&mut self, raw: &mut [u8], r: Range<usize>, ip: &IpRepr, now: Instant) {
        if ip.fragment.is_none() {
            return self.ip_packet(raw, r, ip, now);
        }
        // TS 33.203 / RFC 4303 3.4.1: fragments are joined before ESP is removed.
        match self.reasm.push_parsed(&raw[r], ip, now) {
            Ok(Reasm::NotFragment | Reasm::Incomplete) => {}
            Ok(Reasm::Complete(mut whole)) => {
                // A new packet: its header (the first fragment's, with the headers of the
                // fragmentable part after it) is parsed once more.
                match IpRepr::from_bytes(&whole, Direction::Inbound) {
                    Ok(ip) => {
                        let r = 0..whole.len();
                        self.ip_packet(&mut whole, r, &ip, now);
                    }
                    Err(_) => inc(&self.counters.drop_ip_malformed),
                }
            }
            Err(e) => inc(match e {
                ReasmDrop::Malformed => &self.counters.drop_reasm_malformed,
                ReasmDrop::Overlap => &self.counters.drop_reasm_overlap,
                ReasmDrop::Duplicate => &self.counters.drop_reasm_duplicate,
                ReasmDrop::TooBig => &self.counters.drop_reasm_too_big,
                ReasmDrop::NoMemory => &self.counters.drop_reasm_no_memory,
            }),
        }
    }

    /// The worker owning the sender `src` (the UE) of an IP packet, if that is not this
    /// worker. Fragments carry the addresses too, so a datagram is reassembled by its owner.
    fn owner_elsewhere(&self, src: IpAddr) -> Option<usize> {
        let p = self.peers.as_ref()?;
        let owner = p.steering.queue_for_ue(src);
        (owner != self.cfg.id && owner < p.handoff.workers()).then_some(owner)
    }

    /// After an ARP or ND frame: tells the neighbour it may have taught (the ARP sender, an
    /// NS's source, an NA's target), if the cache now holds it, to the worker that needs it.
    /// ARP has no IP address to steer by and lands on queue 0, while the worker that asked may
    /// be another. A worker only ever sends to the UEs it owns and to gateways, so a UE's
    /// entry goes to its owner alone (and is not kept here unless this is the owner), a
    /// gateway's to every worker: each cache holds its own UEs, not the whole port's.
    fn share_learned(&mut self, frame: &[u8], now: Instant) {
        let Some(p) = &self.peers else {
            return;
        };
        let Some(ip) = neighbor_taught(frame) else {
            return;
        };
        let Some(mac) = self.link.l2.neighbors().lookup(&ip, now) else {
            return;
        };
        let me = self.cfg.id;
        let full = if self.link.l2.routes().is_gateway(ip) {
            p.handoff.share_neighbor(me, ip, mac)
        } else {
            let owner = p.steering.queue_for_ue(ip);
            if owner == me || owner >= p.handoff.workers() {
                return;
            }
            let full = p.handoff.tell_neighbor(owner, ip, mac);
            self.link.l2.neighbors().forget(&ip);
            full
        };
        inc(&self.counters.neighbors_shared);
        super::counters::add(&self.counters.drop_neighbor_share_full, full);
    }

    /// One whole outer IP packet at `buf[r]`, addressed to us, with its parsed header `ip`.
    fn ip_packet(&mut self, buf: &mut [u8], r: Range<usize>, ip: &IpRepr, now: Instant) {
        if ip.fragment.is_some() {
            // A fragment inside a reassembled datagram.
            return inc(&self.counters.drop_ip_malformed);
        }
        match ip.next_header {
            IPPROTO_ESP => self.esp_packet(buf, r, ip, now),
            IPPROTO_TCP | IPPROTO_UDP => self.clear_packet(&buf[r], ip, now),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => match icmp::echo_reply(&buf[r]) {
                Some(reply) => {
                    inc(&self.counters.echo_replies);
                    self.link.send_clear(ip.src, &reply, now);
                }
                None => inc(&self.counters.drop_ip_protocol),
            },
            _ => inc(&self.counters.drop_ip_protocol),
        }
    }

    /// An ESP packet: SA by SPI (or a draining set of the UE), address and owner checks,
    /// decapsulation in place with the parsed header, the selectors of TS 33.203 7.1 on the
    /// inner ports, then the UE's stack.
    fn esp_packet(&mut self, buf: &mut [u8], r: Range<usize>, ip: &IpRepr, now: Instant) {
        let Some((spi, entry)) = buf.get(r.clone()).and_then(|p| self.esp_target(p, ip)) else {
            return;
        };
        if !self.esp_held(spi, &entry) {
            return;
        }
        let inner = match self.link.sas.inbound.get_mut(entry.slot, spi) {
            Some(sa) => sa.decapsulate_parsed(buf, r, ip),
            None => return inc(&self.counters.drop_esp_invalid),
        };
        let Ok((inner, inner_ip)) = inner else {
            return inc(&self.counters.drop_esp_invalid);
        };
        let e = EspIn {
            r: inner.clone(),
            ip: *ip,
            spi,
            entry,
        };
        self.esp_deliver(&e, buf, inner, &inner_ip, now);
    }

    /// The SA of the ESP packet `pkt` (parsed header `ip`): by SPI in the table, or among
    /// the draining sets of its UE; with the address and owner checks. `None` (counted) if
    /// the packet is to be dropped.
    fn esp_target(&self, pkt: &[u8], ip: &IpRepr) -> Option<(u32, InboundEntry)> {
        let Ok(spi) = spi_of(pkt, ip) else {
            inc(&self.counters.drop_ip_malformed);
            return None;
        };
        let (src, dst) = (ip.src, ip.dst);
        let Some(entry) = self
            .table
            .lookup(spi)
            .or_else(|| self.draining_inbound(src, spi))
        else {
            inc(&self.counters.drop_esp_unknown_spi);
            return None;
        };
        if entry.ue != src || entry.local != dst {
            inc(&self.counters.drop_esp_address);
            return None;
        }
        if entry.worker != self.cfg.id {
            inc(&self.counters.drop_esp_stray);
            return None;
        }
        // The SA's first lines start loading now (its transform's in `esp_burst`); the slot's
        // SPI is checked then ([`Worker::esp_held`]), when they are there.
        self.link
            .sas
            .inbound
            .prefetch_head(entry.slot, seq_lo(pkt, ip));
        Some((spi, entry))
    }

    /// True if this worker's slab holds the SA of `spi` at the entry's slot; counts
    /// `drop_esp_stray` if not (an entry of another worker's slot, or one that outlived its SA).
    fn esp_held(&self, spi: u32, entry: &InboundEntry) -> bool {
        let held = self.link.sas.inbound.holds(entry.slot, spi);
        if !held {
            inc(&self.counters.drop_esp_stray);
        }
        held
    }

    /// A decapsulated packet `buf[inner]` (header `inner_ip`) of the ESP packet `e`: the
    /// selectors of TS 33.203 7.1 on its ports, then the UE's stack.
    fn esp_deliver(
        &mut self,
        e: &EspIn,
        buf: &[u8],
        inner: Range<usize>,
        inner_ip: &IpRepr,
        now: Instant,
    ) {
        let Some(pkt) = buf.get(inner) else {
            return inc(&self.counters.drop_esp_invalid);
        };
        inc(&self.counters.esp_in);
        // TS 33.203 7.1: the SA for spi_ps carries only port_uc -> port_ps, the one for
        // spi_pc only port_us -> port_pc. The inner header is the outer one moved (same
        // addresses), so only the ports are read.
        let entry = &e.entry;
        let seg = match Segment::parse(pkt, inner_ip) {
            Some(s) if s.ports.src == entry.ue_port && s.ports.dst == entry.local_port => s,
            _ => return inc(&self.counters.drop_esp_selector),
        };
        self.deliver(inner_ip, pkt, seg, Target::Esp(e.spi, entry.owner), now);
    }

    /// The inbound SA `spi` of a set of UE `src` that the slowpath removed (it released the
    /// SPI, taking it out of the table, when it decided the removal): the set still takes the
    /// UE's packets on its flows while `RemoveSaSet` is on its way and until its drain ends, so
    /// the ACK of the last answer (the 200 OK to a de-REGISTER) ends the drain instead of
    /// being counted as an unknown SPI (TS 33.203 7.4: the SAs go after that answer). SIP
    /// over it is refused by the slowpath, which no longer knows the SPI.
    fn draining_inbound(&self, src: IpAddr, spi: u32) -> Option<InboundEntry> {
        let ue = self.ues.get(&src)?;
        let local = ue.stack.local();
        ue.sa_sets
            .iter()
            .find_map(|s| s.entry(spi, src, local, self.cfg.id))
            .map(|e| e.owned_by(ue.tag))
    }

    /// A clear TCP/UDP packet: only the unprotected SIP port takes it.
    fn clear_packet(&mut self, pkt: &[u8], ip: &IpRepr, now: Instant) {
        let Some(seg) = Segment::parse(pkt, ip) else {
            inc(&self.counters.drop_ip_malformed);
            return;
        };
        let p = seg.ports;
        let tls_port = self.cfg.tls.as_ref().is_some_and(|l| l.port == p.dst);
        if p.dst != self.cfg.sip_port && !tls_port {
            let protected = self
                .ues
                .get(&ip.src)
                .is_some_and(|u| u.sa_sets.iter().any(|s| s.is_protected_port(p.dst)));
            inc(if protected {
                &self.counters.drop_clear_to_protected
            } else {
                &self.counters.drop_closed_port
            });
            return;
        }
        // The refusal's look-up names the UE, so delivery asks the map no second time.
        let tag = match self.sip_port_refusal(ip.src, seg) {
            Ok(tag) => tag,
            Err(refused) => return inc(refused),
        };
        self.deliver(ip, pkt, seg, Target::Clear(tag), now);
    }

    /// The counter of the limit (`SipPortLimits`) that refuses a clear packet to the SIP
    /// port, if one does: a new source beyond the unregistered stacks, a SYN for a new
    /// connection beyond the connections of its source, of the port, or of handshakes. Dropped
    /// without an answer (no RST), so a flood costs no transmission and reflects nothing.
    /// Else the source's UE as the look-up found it (`None`: none yet), for the delivery.
    fn sip_port_refusal(&self, src: IpAddr, seg: Segment) -> Result<Option<UeTag>, &AtomicU64> {
        let l = &self.cfg.sip_limits;
        let c = &self.counters;
        let Some(tag) = self.ues.find(&src) else {
            if self.sip_use.unregistered >= l.max_unregistered {
                return Err(&c.drop_sip_unregistered_limit);
            }
            return self.sip_conn_refusal(0, seg).map_or(Ok(None), Err);
        };
        let Some(ue) = self.ues.at(tag) else {
            return Ok(None);
        };
        if !seg.syn || ue.stack.has_conn(seg.ports.src, seg.ports.dst) {
            return Ok(Some(tag));
        }
        self.sip_conn_refusal(ue.sip_use.conns, seg)
            .map_or(Ok(Some(tag)), Err)
    }

    /// [`Worker::sip_port_refusal`] for a SYN from a source holding `conns` connections.
    fn sip_conn_refusal(&self, conns: usize, seg: Segment) -> Option<&AtomicU64> {
        let l = &self.cfg.sip_limits;
        let c = &self.counters;
        if !seg.syn || seg.ports.proto != Transport::Tcp {
            return None;
        }
        if conns >= l.max_conns_per_source {
            Some(&c.drop_sip_conn_per_source)
        } else if self.sip_use.conns >= l.max_conns {
            Some(&c.drop_sip_conn_limit)
        } else if self.sip_use.half_open >= l.max_half_open {
            Some(&c.drop_sip_half_open)
        } else {
            None
        }
    }

    /// Runs an inner packet (its parsed header `ip`, whose source is the UE and destination
    /// ours, and its transport facts `seg`) through the UE's stack (creating it for
    /// unprotected SIP) in place and marks the stack due. `to`: how it came and the UE it
    /// names (found without the map, or by the caller's look-up).
    fn deliver(&mut self, ip: &IpRepr, pkt: &[u8], seg: Segment, to: Target, now: Instant) {
        let t0 = super::phases::stamp();
        let (ue, local) = (ip.src, ip.dst);
        let (spi, tag, create) = match to {
            Target::Esp(spi, owner) => (Some(spi), Some(owner), false),
            Target::Clear(tag) => (None, tag, true),
        };
        let Some(u) = super::ue_entry_in(
            &mut self.ues,
            &self.cfg,
            &self.counters,
            ue,
            local,
            tag,
            create,
            now,
        ) else {
            return;
        };
        if let Some(spi) = spi {
            SaSetState::note_inbound(&mut u.sa_sets, spi);
        }
        let mut sink = self.link.sink(&mut u.sa_sets, now);
        // Straight from the rx buffer into the stack: the data waits in its socket, framed
        // and answered by the poll scheduled here (once per UE and burst).
        let needs_poll = u.stack.input_segment(pkt, ip, seg, spi, now, &mut sink);
        drop(sink);
        // The UE's last ACK that closed its connection is reaped here, and a data segment
        // whose ACK can wait is framed here, not by a poll.
        let quiet = !u.woken
            && !super::draining(u)
            && (!needs_poll
                || super::reap_in_input(u, seg, now, &mut self.stack_events)
                || super::frame_in_input(u, &self.cfg, seg, now, &mut self.stack_events));
        if quiet {
            // A pure ACK that left the stack with nothing to do (the UE's ACK of a response,
            // or of our FIN): no poll, only the deadline a poll would have set.
            let at = super::next_deadline(u, &self.cfg, now, None);
            super::rearm(&mut self.timers, u, at);
        } else {
            super::wake_ue(&mut self.woken, u);
        }
        // A SYN becomes a connection at once: the limits see it before the next packet. Only
        // a packet to the SIP port (or one that made the stack) changes the use counted: a
        // protected packet to another port leaves it as it was (the poll recounts anyway).
        if spi.is_none() || seg.ports.dst == self.cfg.sip_port {
            self.sip_use.recount(u, self.cfg.sip_port);
        }
        if !self.stack_events.is_empty() {
            self.forward_events();
        }
        super::phases::note(super::phases::segment_phase(pkt, ip, spi.is_some()), t0);
    }
}

/// How a packet reaches [`Worker::deliver`], with the UE it names.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Through the inbound SA `spi`, whose table entry names its owner (never makes a stack).
    Esp(u32, UeTag),
    /// In clear to the unprotected SIP port (may make the stack), with the source's UE as
    /// the SIP port's limits found it (`None`: no stack yet).
    Clear(Option<UeTag>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN or a pure ACK, clear or through ESP, asks for no receive buffer; a data
    /// segment asks for at least its payload (TCP payload of a clear IPv4 frame with the
    /// smallest headers, and through ESP with a 16-byte IV and ICV).
    #[test]
    fn the_payload_hint_covers_the_payload_and_skips_empty_segments() {
        let clear_syn = 14 + 20 + 40;
        // IPv4, AES-CBC's 16-byte IV, the SYN's 40 bytes padded to 48, a 12-byte ICV.
        let esp_syn = 14 + 20 + 8 + 16 + 48 + 12;
        assert_eq!(payload_hint(clear_syn), 0);
        assert_eq!(payload_hint(14 + 20 + 20), 0);
        assert_eq!(payload_hint(esp_syn), 0);
        for payload in [200, 700, 1300] {
            let clear = 14 + 20 + 20 + payload;
            assert!(payload_hint(clear) >= payload);
            let esp = 14 + 20 + 8 + 16 + 20 + 32 + payload + 2 + 16;
            assert!(payload_hint(esp) >= payload);
            assert!(payload_hint(esp) < payload + 128, "at most two lines over");
        }
    }
}
