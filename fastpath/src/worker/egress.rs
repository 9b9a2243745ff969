//! Outbound path: a stack's IP packet gets ESP with the outbound SA chosen by (UE, local
//! port, remote port), or leaves in clear only from the unprotected SIP port; then Ethernet.
//!
//! smoltcp writes each packet straight into a buffer of the port's pool ([`StackSink`]), after
//! the pool's headroom (room for the ESP header, IV and Ethernet header), and ESP and Ethernet
//! are added in place: no copy between the stack and the wire. Packets for SAs are collected
//! over a loop turn and encapsulated together ([`Link::flush_encap`]: `encapsulate_burst_in`,
//! multi-buffer AES-CBC and HMAC-SHA-1 across SAs), sequence numbers taken in emission order.
//!
//! A packet above the link MTU (a UDP datagram the stack built whole, e.g. a 3 KB SIP
//! response) is written into the worker's one big buffer instead, encapsulated there whole
//! (transport-mode ESP takes whole datagrams only, RFC 4303 3.1.1), and its ESP packet — or
//! the datagram itself from the unprotected port — is fragmented into pool buffers
//! ([`Fragmenter`]: IPv4 RFC 791, IPv6 RFC 8200 4.5, identification from a per-worker
//! counter).

use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use akagate_sys::{PacketBuf, PortQueue};
use smoltcp::time::Instant;

use super::counters::{add, inc};
use super::sa::WorkerSas;
use super::{SaSetState, UeEgress, WorkerConfig, WorkerCounters};
use crate::esp::{encapsulate_burst_in, EncapItem};
use crate::l2::hop::HopCache;
use crate::l2::pending::{Hold, PendingQueue, Released};
use crate::l2::{ETH_HDR_LEN, L2};
use crate::stack::PacketSink;
use crate::wire::ip::{Direction, IpRepr};
use crate::wire::{Fragmenter, Segment};

/// ESP packets sealed together by [`Link::flush_encap`].
const ENCAP_GROUP: usize = 32;

/// Room in front of a packet in the big buffer (ESP header and IV; Ethernet goes on the
/// fragments, which are copied into pool buffers).
const BIG_HEADROOM: usize = 64;
/// Room behind it (ESP padding, trailer and ICV).
const BIG_TAILROOM: usize = 64;
/// The big buffer: the largest IP packet (an IPv6 one of 65535 payload bytes) and its ESP.
const BIG_BUF_LEN: usize = BIG_HEADROOM + 40 + 65535 + BIG_TAILROOM;

/// A stack's packet waiting for the burst encapsulation: its buffer, its SA (outbound slot
/// and SPI), its parsed header and where it goes, and its UE's next hop as resolved when it
/// left the stack (checked again when it is framed).
struct PendingEncap {
    b: PacketBuf,
    slot: u32,
    spi: u32,
    ip: IpRepr,
    hop: HopCache,
}

/// The worker's side of its port queue and the one owner of everything that transmits: the
/// queue, the link layer (neighbours, ARP/ND), the frames waiting for the ring and the
/// ARP/ND frames built this turn. Ingress reads frames from `queue` and classifies them with
/// `l2`; every packet leaves through [`Link::sink`] (a stack's output), [`Link::send_clear`]
/// (a packet the worker built) or [`Link::flush_ctrl`].
pub(super) struct Link<Q: PortQueue> {
    /// The port queue (rx and tx).
    pub queue: Q,
    /// Link layer: Ethernet, ARP, ND, neighbour cache.
    pub l2: L2,
    /// The worker's own SAs (inbound and outbound slabs); only this worker touches them.
    pub sas: WorkerSas,
    /// Frames queued for the next `tx_burst`.
    tx: Vec<PacketBuf>,
    /// Packets for SAs collected this loop turn, encapsulated together by `flush_encap`.
    encap: Vec<PendingEncap>,
    /// Frames built here (ARP/ND answers and solicitations).
    pub ctrl: Vec<Vec<u8>>,
    /// Packets (IP, encapsulated) waiting for their next hop's Ethernet address.
    pending: PendingQueue<PacketBuf>,
    /// Where a stack's packet goes when the pool has no buffer for it.
    scratch: Vec<u8>,
    /// Where a packet above the link MTU is written, encapsulated and fragmented from
    /// ([`BIG_BUF_LEN`] bytes once first needed; used and released within one `send`, so
    /// one per worker suffices).
    big: Vec<u8>,
    /// Identification of the next fragmented packet (RFC 791 3.2; RFC 8200 4.5: 32 bits, not
    /// reused while fragments may live; IPv4 takes the low 16 bits).
    frag_ident: u32,
    counters: Arc<WorkerCounters>,
    sip_port: u16,
    /// The TLS port, which also sends in clear (TLS protects it, not an SA).
    tls_port: Option<u16>,
    link_mtu: usize,
    /// Frames queued for transmission beyond which stacks are held back (four bursts).
    tx_limit: usize,
}

impl<Q: PortQueue> Link<Q> {
    /// The link of a worker configured with `cfg` on `queue`, counting into `counters`.
    pub(super) fn new(cfg: &WorkerConfig, queue: Q, counters: Arc<WorkerCounters>) -> Self {
        Link {
            queue,
            l2: L2::new(cfg.l2.clone()),
            sas: WorkerSas::default(),
            tx: Vec::with_capacity(cfg.burst * 2),
            encap: Vec::with_capacity(cfg.burst * 4),
            ctrl: Vec::new(),
            // RFC 4861 7.2.2 / 10: MAX_MULTICAST_SOLICIT (3) solicitations, RETRANS_TIMER
            // apart, before resolution fails; as many packets wait as may wait for the ring.
            pending: PendingQueue::new(
                cfg.burst * 4,
                cfg.l2.solicit_retry * crate::l2::pending::PER_NEIGHBOR as u32,
            ),
            scratch: Vec::new(),
            big: Vec::new(),
            // RFC 7739 5.1: not predictable from one worker's start to the next.
            frag_ident: rand::random(),
            counters,
            sip_port: cfg.sip_port,
            tls_port: cfg.tls.as_ref().map(|l| l.port),
            link_mtu: cfg.link_mtu,
            tx_limit: cfg.burst * 4,
        }
    }

    /// The sink a UE's stack writes into for one input or poll; `sets` are the UE's SA sets
    /// and its next hop.
    pub(super) fn sink<'a>(&'a mut self, sets: &'a mut UeEgress, now: Instant) -> StackSink<'a, Q> {
        StackSink {
            link: self,
            sets,
            now,
            spare: None,
        }
    }

    /// Encapsulates the packets collected for SAs this turn in groups through
    /// `encapsulate_burst_in` (each SA's sequence numbers in the order its packets were
    /// emitted, RFC 4303 3.3.3) and frames them; then frees the outbound SAs of sets that
    /// went meanwhile. A packet whose encapsulation failed is dropped, never sent in clear.
    #[inline]
    pub(super) fn flush_encap(&mut self, now: Instant) {
        // Checked here, inlined in the loop turn: most turns seal nothing, and the call alone
        // (its frame of a group's ranges) costs more than the check.
        if !self.encap.is_empty() {
            self.seal_pending(now);
        }
        self.sas.free_retired();
    }

    /// The part of [`Link::flush_encap`] that encapsulates and frames what was collected.
    fn seal_pending(&mut self, now: Instant) {
        // Most turns collected nothing (every idle turn, and a turn of clear packets only).
        if self.encap.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.encap);
        let (t0, packets) = (super::phases::stamp(), pending.len());
        while !pending.is_empty() {
            let n = pending.len().min(ENCAP_GROUP);
            let sealed = self.encap_group(pending.get_mut(..n).unwrap_or_default());
            for (p, ok) in pending.drain(..n).zip(sealed) {
                if ok {
                    inc(&self.counters.esp_out);
                    let hdr = p.hop.get(p.ip.dst, now, self.l2.neighbor_cache());
                    self.frame_with(p.ip.dst, p.b, now, hdr);
                } else {
                    self.drop(p.b, |c| &c.drop_egress_esp);
                }
            }
        }
        self.encap = pending;
        super::phases::note_n(super::phases::Phase::Encap, t0, packets);
    }

    /// Encapsulates one group (at most [`ENCAP_GROUP`]) of [`Link::flush_encap`] in place;
    /// true for each packet that is now ESP.
    fn encap_group(&mut self, group: &mut [PendingEncap]) -> [bool; ENCAP_GROUP] {
        let mut ranges: [Option<Range<usize>>; ENCAP_GROUP] = core::array::from_fn(|_| None);
        {
            // On the stack: the items borrow this group's buffers only.
            let mut items: [EncapItem<'_>; ENCAP_GROUP] =
                core::array::from_fn(|_| EncapItem::new(0, &mut [], 0..0));
            let mut at = [0usize; ENCAP_GROUP];
            let mut n = 0;
            for (i, p) in group.iter_mut().enumerate() {
                // The slab checks the SPI: a slot is never reused before the flush, but a
                // packet must never meet another SA.
                if !self.sas.outbound.holds(p.slot, p.spi) {
                    continue;
                }
                let (Some(item), Some(a)) = (items.get_mut(n), at.get_mut(n)) else {
                    break;
                };
                let (raw, r) = p.b.raw_mut();
                *item = EncapItem::new(p.slot as usize, raw, r).with_parsed(p.ip);
                *a = i;
                n += 1;
            }
            let items = items.get_mut(..n).unwrap_or_default();
            if encapsulate_burst_in(&mut self.sas.outbound, items).is_ok() {
                for (it, &i) in items.iter().zip(&at) {
                    if let Some(r) = ranges.get_mut(i) {
                        *r = it.result.clone().ok();
                    }
                }
            }
        }
        let mut sealed = [false; ENCAP_GROUP];
        for ((p, r), ok) in group.iter_mut().zip(ranges).zip(sealed.iter_mut()) {
            *ok = r.is_some_and(|r| p.b.set_range(r).is_ok());
        }
        sealed
    }

    /// Copies ARP/ND frames built this iteration into port buffers; their storage goes back
    /// to the link layer for its next answers.
    pub(super) fn flush_ctrl(&mut self) {
        if self.ctrl.is_empty() {
            return;
        }
        for f in self.ctrl.drain(..) {
            match self.queue.alloc() {
                None => inc(&self.counters.drop_no_buffer),
                Some(mut b) => {
                    if b.fill(&f).is_ok() {
                        crate::copies::note(crate::copies::CopySite::BuiltFrame, f.len());
                        self.tx.push(b);
                    } else {
                        self.queue.free(b);
                        inc(&self.counters.drop_egress_too_big);
                    }
                }
            }
            self.l2.recycle(f);
        }
    }

    /// Transmits queued frames; what the ring does not take is dropped and counted once more
    /// than four bursts wait.
    pub(super) fn tx_flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let t0 = super::phases::stamp();
        let sent = self.queue.tx_burst(&mut self.tx);
        super::phases::note_n(super::phases::Phase::TxFlush, t0, sent);
        add(&self.counters.tx_frames, sent as u64);
        if self.tx.len() > self.tx_limit {
            for b in self.tx.drain(..) {
                self.queue.free(b);
                inc(&self.counters.drop_tx_full);
            }
        }
    }

    /// Frames a copy of the IP packet `pkt` (built by the worker itself, e.g. an echo reply)
    /// for `dst` and queues it, in clear.
    pub(super) fn send_clear(&mut self, dst: IpAddr, pkt: &[u8], now: Instant) {
        let Some(mut b) = self.queue.alloc() else {
            return inc(&self.counters.drop_no_buffer);
        };
        if b.fill(pkt).is_err() {
            return self.drop(b, |c| &c.drop_egress_too_big);
        }
        crate::copies::note(crate::copies::CopySite::BuiltFrame, pkt.len());
        self.frame_buf(dst, b, now);
    }

    /// Frees `b`, counting it as the drop `reason` picks.
    fn drop(&mut self, b: PacketBuf, reason: fn(&WorkerCounters) -> &AtomicU64) {
        self.queue.free(b);
        inc(reason(&self.counters));
    }

    /// Frames the IP packet (or ESP packet) in `b` for `dst` in place, queueing it for
    /// transmission, or, while its next hop is unresolved, holding it until the neighbour
    /// answers (RFC 4861 7.2.2).
    fn frame_buf(&mut self, dst: IpAddr, b: PacketBuf, now: Instant) {
        let Some(hop) = self.l2.next_hop(dst) else {
            return self.drop(b, |c| &c.drop_egress_no_route);
        };
        if b.len() > self.link_mtu {
            self.send_fragments(dst, b.data(), now);
            return self.queue.free(b);
        }
        let Some(hdr) = self.l2.header_to(hop, now) else {
            return self.hold(hop, b, now);
        };
        if !self.pending.is_empty() {
            // What waited for this neighbour leaves first, in order.
            self.release_pending(now);
        }
        push_framed(&mut self.tx, &mut self.queue, &self.counters, b, &hdr);
    }

    /// [`Link::frame_buf`] with the Ethernet header `hdr` of the UE's next hop when its copy
    /// was right (no route or neighbour to look up); a packet above the link MTU, or without
    /// `hdr`, takes [`Link::frame_buf`]'s way.
    fn frame_with(
        &mut self,
        dst: IpAddr,
        b: PacketBuf,
        now: Instant,
        hdr: Option<[u8; ETH_HDR_LEN]>,
    ) {
        match hdr {
            Some(hdr) if b.len() <= self.link_mtu => {
                if !self.pending.is_empty() {
                    // What waited for this neighbour leaves first, in order.
                    self.release_pending(now);
                }
                push_framed(&mut self.tx, &mut self.queue, &self.counters, b, &hdr);
            }
            _ => self.frame_buf(dst, b, now),
        }
    }

    /// Sends the IP packet `pkt`, larger than the link MTU, as fragments of it, each in a
    /// pool buffer of its own; a packet with Don't Fragment set (smoltcp's TCP segments) is
    /// dropped instead (RFC 791 3.2). When the pool runs dry the rest of the packet is
    /// dropped (the fragments sent are useless without it, but cost nothing more).
    fn send_fragments(&mut self, dst: IpAddr, pkt: &[u8], now: Instant) {
        self.frag_ident = self.frag_ident.wrapping_add(1);
        let mut frags = match Fragmenter::new(pkt, self.link_mtu, self.frag_ident) {
            Ok(f) => f,
            Err(_) => return inc(&self.counters.drop_egress_too_big),
        };
        while frags.next_len().is_some() {
            let Some(mut b) = self.queue.alloc() else {
                return inc(&self.counters.drop_no_buffer);
            };
            if !b.fill_with(|area| frags.write_next(area)) {
                return self.drop(b, |c| &c.drop_egress_too_big);
            }
            inc(&self.counters.tx_fragments);
            crate::copies::note(crate::copies::CopySite::Fragment, b.len());
            self.frame_buf(dst, b, now);
        }
    }

    /// Sends a packet of `len` bytes, above the link MTU, that `fill` writes: in the big
    /// buffer, through [`Link::emit_big`].
    fn send_big<R, F: FnOnce(&mut [u8]) -> R>(
        &mut self,
        sets: &[SaSetState],
        len: usize,
        fill: F,
        now: Instant,
    ) -> R {
        let mut big = std::mem::take(&mut self.big);
        let pkt = BIG_HEADROOM..BIG_HEADROOM + len;
        if pkt.end + BIG_TAILROOM > BIG_BUF_LEN {
            // Larger than any IP packet: the stack never builds one; smoltcp would not either.
            inc(&self.counters.drop_big_buffer);
            self.big = big;
            return discard(&mut self.scratch, len, fill);
        }
        big.resize(BIG_BUF_LEN, 0);
        let result = fill(&mut big[pkt.clone()]);
        self.emit_big(sets, &mut big, pkt, now);
        self.big = big;
        result
    }

    /// [`Link::emit`] of a packet in `buf[pkt]` above the link MTU: ESP over the whole
    /// datagram in place (after the packets collected this turn, so each SA's sequence
    /// numbers stay in emission order, RFC 4303 3.3.3), then fragments of the result.
    fn emit_big(&mut self, sets: &[SaSetState], buf: &mut [u8], pkt: Range<usize>, now: Instant) {
        let packet = &buf[pkt.clone()];
        let parsed = IpRepr::from_bytes(packet, Direction::Outbound)
            .ok()
            .and_then(|ip| Some((ip, Segment::parse(packet, &ip)?)));
        let Some((ip, seg)) = parsed else {
            return inc(&self.counters.drop_egress_not_sip);
        };
        let sa = SaSetState::pick_outbound(sets, &seg.ports);
        let clear_port = seg.ports.src == self.sip_port || Some(seg.ports.src) == self.tls_port;
        let out = match sa {
            Some((slot, spi)) => {
                self.seal_pending(now);
                let Some(sa) = self.sas.outbound.get_mut(slot, spi) else {
                    return inc(&self.counters.drop_egress_no_sa);
                };
                match sa.encapsulate_parsed(buf, pkt, &ip) {
                    Ok(r) => {
                        inc(&self.counters.esp_out);
                        r
                    }
                    Err(_) => return inc(&self.counters.drop_egress_esp),
                }
            }
            None if clear_port => pkt,
            None => return inc(&self.counters.drop_egress_no_sa),
        };
        self.send_fragments(ip.dst, &buf[out], now);
    }

    /// Holds the framed-to-be packet `b` for the unresolved next hop `hop` and solicits it
    /// (rate-limited).
    fn hold(&mut self, hop: IpAddr, b: PacketBuf, now: Instant) {
        self.l2.solicit(hop, now, &mut self.ctrl);
        match self.pending.hold(hop, b, now) {
            Hold::Queued => inc(&self.counters.neighbor_queued),
            Hold::Evicted(old) => {
                inc(&self.counters.neighbor_queued);
                self.drop(old, |c| &c.drop_neighbor_queue_full);
            }
            Hold::Full(b) => self.drop(b, |c| &c.drop_neighbor_queue_full),
        }
    }

    /// Sends, in the order they were held, the packets whose next hop has resolved, drops
    /// those whose neighbour did not answer three solicitations, and solicits again (at most
    /// once per `solicit_retry`) for the others. Nothing to do when nothing waits.
    pub(super) fn release_pending(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let Link {
            pending,
            l2,
            ctrl,
            tx,
            queue,
            counters,
            ..
        } = self;
        pending.service(
            now,
            |hop| l2.header_to(hop, now),
            |b, released| match released {
                Released::Resolved(hdr) => {
                    inc(&counters.neighbor_released);
                    push_framed(tx, queue, counters, b, hdr);
                }
                Released::Failed => {
                    queue.free(b);
                    inc(&counters.drop_egress_no_neighbor);
                }
            },
        );
        // RFC 4861 7.3.3: retransmit the solicitation every RetransTimer until the packets
        // give up (solicit is rate-limited per neighbour).
        for hop in pending.hops() {
            l2.solicit(hop, now, ctrl);
        }
    }

    /// Sends one packet of a UE's stack, already in `b`: parses its header once, picks the
    /// SA by its ports, or refuses clear text from protected ports; its Ethernet header comes
    /// from the UE's copy of its next hop (`sets.hop`, refreshed here when stale).
    fn emit(&mut self, sets: &mut UeEgress, b: PacketBuf, now: Instant) {
        let pkt = b.data();
        let parsed = IpRepr::from_bytes(pkt, Direction::Outbound)
            .ok()
            .and_then(|ip| Some((ip, Segment::parse(pkt, &ip)?)));
        self.emit_parsed(sets, b, parsed, now);
    }

    /// [`Link::emit`] of a packet whose header and transport facts the caller has: what
    /// `IpRepr::from_bytes` (outbound) and `Segment::parse` make of `b`'s packet, `None` if
    /// they refuse it ([`crate::wire::checksum::fill_checksums_described`] reads them while
    /// filling the checksums).
    fn emit_parsed(
        &mut self,
        sets: &mut UeEgress,
        b: PacketBuf,
        parsed: Option<(IpRepr, Segment)>,
        now: Instant,
    ) {
        let Some((ip, seg)) = parsed else {
            return self.drop(b, |c| &c.drop_egress_not_sip);
        };
        // TS 33.203 7.4: after a re-registration the new set is used once it has carried
        // traffic; until then the old set of the same ports answers.
        let sa = SaSetState::pick_outbound(sets, &seg.ports);
        let clear_port = seg.ports.src == self.sip_port || Some(seg.ports.src) == self.tls_port;
        match sa {
            // Encapsulated with the other packets of this loop turn (`flush_encap`).
            // Its SA starts loading now: by the flush, at the end of the turn, it is there.
            Some((slot, spi)) => {
                self.sas.outbound.prefetch_cell(slot);
                // Resolved now, in the UE's lines; checked again (cheaply) at the flush.
                let _ = self.l2.header_cached(ip.dst, now, &mut sets.hop);
                let hop = sets.hop;
                self.encap.push(PendingEncap {
                    b,
                    slot,
                    spi,
                    ip,
                    hop,
                });
            }
            None if clear_port => {
                let hdr = self.l2.header_cached(ip.dst, now, &mut sets.hop);
                self.frame_with(ip.dst, b, now, hdr)
            }
            None => self.drop(b, |c| &c.drop_egress_no_sa),
        }
    }
}

/// The [`PacketSink`] a UE's stack writes into: each packet goes into a buffer of the port's
/// pool and on through [`Link::emit`]. One is made per input or poll of a stack
/// ([`Link::sink`]).
pub(super) struct StackSink<'a, Q: PortQueue> {
    link: &'a mut Link<Q>,
    sets: &'a mut UeEgress,
    now: Instant,
    /// A buffer taken by `can_send` for the next packet.
    spare: Option<PacketBuf>,
}

impl<Q: PortQueue> StackSink<'_, Q> {
    /// Lets `fill` write a packet of `len` bytes into a buffer of the pool and sends it on:
    /// `finish` (after `fill`, on the packet) says what [`Link::emit_parsed`] routes it by,
    /// `None` to have [`Link::emit`] parse it. Above the link MTU, the big buffer
    /// ([`Link::send_big`]) after `fill` and `finish`.
    fn send_with<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
        finish: impl FnOnce(&mut [u8]) -> Option<Option<(IpRepr, Segment)>>,
    ) -> R {
        let link = &mut *self.link;
        if len > link.link_mtu {
            let fill = |buf: &mut [u8]| {
                let r = fill(buf);
                let _ = finish(buf);
                r
            };
            return link.send_big(self.sets, len, fill, self.now);
        }
        let Some(mut b) = self.spare.take().or_else(|| link.queue.alloc()) else {
            inc(&link.counters.drop_no_buffer);
            return discard(&mut link.scratch, len, fill);
        };
        // A fresh buffer's data starts after the pool's headroom, which leaves room for the
        // ESP header, IV and Ethernet header in front.
        let (raw, r) = b.raw_mut();
        let area = r.start..r.start + len;
        let Some(dst) = raw.get_mut(area.clone()) else {
            link.drop(b, |c| &c.drop_egress_too_big);
            return discard(&mut link.scratch, len, fill);
        };
        let result = fill(dst);
        let parsed = finish(dst);
        match (b.set_range(area), parsed) {
            (Ok(()), Some(parsed)) => link.emit_parsed(self.sets, b, parsed, self.now),
            (Ok(()), None) => link.emit(self.sets, b, self.now),
            (Err(_), _) => link.drop(b, |c| &c.drop_egress_too_big),
        }
        result
    }
}

impl<Q: PortQueue> PacketSink for StackSink<'_, Q> {
    fn send<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, fill: F) -> R {
        self.send_with(len, fill, |_| None)
    }

    /// The checksums filled and the header read in one pass
    /// ([`crate::wire::checksum::fill_checksums_described`]): [`Link::emit`] does not parse
    /// the packet again.
    fn send_checksummed<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, fill: F) -> R {
        self.send_with(len, fill, |buf| {
            Some(crate::wire::checksum::fill_checksums_described(buf))
        })
    }

    fn can_send(&mut self) -> bool {
        if self.link.tx.len() + self.link.encap.len() >= self.link.tx_limit {
            return false;
        }
        if self.spare.is_none() {
            self.spare = self.link.queue.alloc();
        }
        self.spare.is_some()
    }
}

impl<Q: PortQueue> Drop for StackSink<'_, Q> {
    fn drop(&mut self) {
        if let Some(b) = self.spare.take() {
            self.link.queue.free(b);
        }
    }
}

/// Puts the Ethernet header `hdr` in front of the IP packet in `b` and queues it on `tx`.
fn push_framed<Q: PortQueue>(
    tx: &mut Vec<PacketBuf>,
    queue: &mut Q,
    counters: &WorkerCounters,
    mut b: PacketBuf,
    hdr: &[u8; ETH_HDR_LEN],
) {
    match b.prepend(ETH_HDR_LEN) {
        Ok(h) => {
            h.copy_from_slice(hdr);
            tx.push(b);
        }
        Err(_) => {
            queue.free(b);
            inc(&counters.drop_egress_too_big);
        }
    }
}

/// Lets `fill` write a packet that will not be sent into `scratch` (grown once, then reused).
fn discard<R>(scratch: &mut Vec<u8>, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    fill(&mut scratch[..len])
}
