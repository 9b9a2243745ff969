//! Inbound path of a burst: link layer, reassembly, then ESP through the SA table or the
//! unprotected SIP port, into the UE's stack.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use akagate_sys::{PacketBuf, PortQueue};
use smoltcp::time::Instant;

use super::counters::inc;
use super::{InboundTable, Worker};
use crate::esp::ip::{layout, IPPROTO_ESP};
use crate::esp::peek_spi;
use crate::l2::{icmp, Input, L2Drop};
use crate::reasm::{Reasm, ReasmDrop};
use crate::sad::{self, ReadGuard};
use crate::stack::ports::transport_ports;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// Source and destination address of an IPv4/IPv6 packet (length already checked).
fn addrs(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match pkt.first()? >> 4 {
        4 => {
            let s: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some((Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into()))
        }
        6 => {
            let s: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some((Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into()))
        }
        _ => None,
    }
}

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

impl<Q: PortQueue> Worker<Q> {
    /// Receives and processes one burst; returns the number of frames.
    pub(super) fn rx_burst(&mut self, now: Instant) -> usize {
        let mut rx = std::mem::take(&mut self.rx);
        let n = self.queue.rx_burst(&mut rx, self.cfg.burst);
        if n == 0 {
            self.rx = rx;
            self.reasm.expire(now);
            return 0;
        }
        super::counters::add(&self.counters.rx_frames, n as u64);
        let table = self.table.clone();
        // One epoch pin per burst (see sad::ReadGuard).
        let guard = sad::pin();
        for mut b in rx.drain(..) {
            let (raw, range) = b.raw_mut();
            match self.frame(&table, &guard, raw, range, true, now) {
                None => self.queue.free(b),
                Some(owner) => self.hand_off(owner, b),
            }
        }
        drop(guard);
        self.rx = rx;
        n
    }

    /// Passes a frame of a UE owned by worker `owner` to it.
    fn hand_off(&mut self, owner: usize, b: PacketBuf) {
        let Some(p) = &self.peers else {
            return self.queue.free(b);
        };
        match p.handoff.send_frame(self.cfg.id, owner, b) {
            Ok(()) => inc(&self.counters.handoff_out),
            Err(b) => {
                self.queue.free(b);
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
            self.queue.free(b);
        }
        while let Some((ip, mac)) = handoff.recv_neighbor(me) {
            self.l2.neighbors().learn(ip, mac, now);
            inc(&self.counters.neighbors_from_peers);
            work += 1;
        }
        let mut frames = 0;
        let mut guard = None;
        let table = self.table.clone();
        while frames < self.cfg.burst {
            let Some((from, mut b)) = handoff.recv_frame(me) else {
                break;
            };
            frames += 1;
            inc(&self.counters.handoff_in);
            let g = guard.get_or_insert_with(sad::pin);
            let (raw, range) = b.raw_mut();
            // Never handed on again: the steering named this worker.
            let _ = self.frame(&table, g, raw, range, false, now);
            if let Err(b) = handoff.give_back(from, b) {
                self.queue.free(b);
            }
        }
        work + frames
    }

    /// One received frame. Returns the worker to hand it to when it is an IP packet of a UE
    /// that another worker owns (and `may_hand_off`); `None` when it was handled here.
    fn frame(
        &mut self,
        table: &InboundTable,
        guard: &ReadGuard,
        raw: &mut [u8],
        range: Range<usize>,
        may_hand_off: bool,
        now: Instant,
    ) -> Option<usize> {
        let frame = raw.get(range.clone())?;
        let input = self.l2.input(frame, now, &mut self.ctrl);
        if !matches!(input, Ok(Input::Ip { .. })) && self.peers.is_some() {
            self.share_learned(frame, now);
        }
        let ip = match input {
            Ok(Input::Handled) => return None,
            Ok(Input::Ip { offset, len }) => range.start + offset..range.start + offset + len,
            Err(e) => {
                inc(match e {
                    L2Drop::NotForUs => &self.counters.drop_l2_not_for_us,
                    L2Drop::Ethertype => &self.counters.drop_l2_ethertype,
                    _ => &self.counters.drop_l2_malformed,
                });
                return None;
            }
        };
        if may_hand_off {
            if let Some(owner) = self.owner_elsewhere(raw.get(ip.clone())?) {
                return Some(owner);
            }
        }
        // TS 33.203 / RFC 4303 3.4.1: fragments are joined before ESP is removed.
        match self.reasm.push(&raw[ip.clone()], now) {
            Ok(Reasm::NotFragment) => self.ip_packet(table, guard, raw, ip, now),
            Ok(Reasm::Incomplete) => {}
            Ok(Reasm::Complete(mut whole)) => {
                let r = 0..whole.len();
                self.ip_packet(table, guard, &mut whole, r, now);
            }
            Err(e) => inc(match e {
                ReasmDrop::Malformed => &self.counters.drop_reasm_malformed,
                ReasmDrop::Overlap => &self.counters.drop_reasm_overlap,
                ReasmDrop::Duplicate => &self.counters.drop_reasm_duplicate,
                ReasmDrop::TooBig => &self.counters.drop_reasm_too_big,
                ReasmDrop::NoMemory => &self.counters.drop_reasm_no_memory,
            }),
        }
        None
    }

    /// The worker owning the sender (the UE) of an IP packet, if that is not this worker.
    /// Fragments carry the addresses too, so a datagram is reassembled by its owner.
    fn owner_elsewhere(&self, pkt: &[u8]) -> Option<usize> {
        let p = self.peers.as_ref()?;
        let (src, _) = addrs(pkt)?;
        let owner = p.steering.queue_for_ue(src);
        (owner != self.cfg.id && owner < p.handoff.workers()).then_some(owner)
    }

    /// After an ARP or ND frame: tells the other workers the neighbour it may have taught
    /// (the ARP sender, an NS's source, an NA's target) if the cache now holds it. ARP has no
    /// IP address to steer by and lands on queue 0, while the worker that asked may be another.
    fn share_learned(&mut self, frame: &[u8], now: Instant) {
        let Some(p) = &self.peers else {
            return;
        };
        let handoff = p.handoff.clone();
        let Some(ip) = neighbor_taught(frame) else {
            return;
        };
        let Some(mac) = self.l2.neighbors().lookup(&ip, now) else {
            return;
        };
        inc(&self.counters.neighbors_shared);
        let full = handoff.share_neighbor(self.cfg.id, ip, mac);
        super::counters::add(&self.counters.drop_neighbor_share_full, full);
    }

    /// One whole outer IP packet at `buf[r]`, addressed to us.
    fn ip_packet(
        &mut self,
        table: &InboundTable,
        guard: &ReadGuard,
        buf: &mut [u8],
        r: Range<usize>,
        now: Instant,
    ) {
        let pkt = &buf[r.clone()];
        let (Ok(lay), Some((src, dst))) = (layout(pkt), addrs(pkt)) else {
            inc(&self.counters.drop_ip_malformed);
            return;
        };
        match lay.next_header {
            IPPROTO_ESP => self.esp_packet(table, guard, buf, r, src, dst, now),
            IPPROTO_TCP | IPPROTO_UDP => self.clear_packet(buf, r, src, dst, now),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => match icmp::echo_reply(pkt) {
                Some(reply) => {
                    inc(&self.counters.echo_replies);
                    self.send_local(&reply, now);
                }
                None => inc(&self.counters.drop_ip_protocol),
            },
            _ => inc(&self.counters.drop_ip_protocol),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn esp_packet(
        &mut self,
        table: &InboundTable,
        guard: &ReadGuard,
        buf: &mut [u8],
        r: Range<usize>,
        src: IpAddr,
        dst: IpAddr,
        now: Instant,
    ) {
        let Ok(spi) = peek_spi(&buf[r.clone()]) else {
            inc(&self.counters.drop_ip_malformed);
            return;
        };
        let draining;
        let entry = match table.lookup(spi, guard) {
            Some(e) => e,
            None => match self.draining_inbound(src, spi) {
                Some(e) => {
                    draining = e;
                    &draining
                }
                None => {
                    inc(&self.counters.drop_esp_unknown_spi);
                    return;
                }
            },
        };
        if entry.ue != src || entry.local != dst {
            inc(&self.counters.drop_esp_address);
            return;
        }
        if entry.worker != self.cfg.id {
            inc(&self.counters.drop_esp_stray);
            return;
        }
        let inner = match entry.sa.lock() {
            Ok(mut sa) => sa.decapsulate(buf, r),
            Err(_) => {
                inc(&self.counters.drop_esp_invalid);
                return;
            }
        };
        let Ok(inner) = inner else {
            inc(&self.counters.drop_esp_invalid);
            return;
        };
        inc(&self.counters.esp_in);
        let pkt = &buf[inner];
        // TS 33.203 7.1: the SA for spi_ps carries only port_uc -> port_ps, the one for
        // spi_pc only port_us -> port_pc.
        match transport_ports(pkt) {
            Some(p)
                if p.src == entry.ue_port
                    && p.dst == entry.local_port
                    && addrs(pkt) == Some((src, dst)) => {}
            _ => {
                inc(&self.counters.drop_esp_selector);
                return;
            }
        }
        self.deliver(src, dst, pkt, Some(spi), false, now);
    }

    /// The inbound SA `spi` of a set of UE `src` that the slowpath removed (it released the
    /// SPI, taking it out of the table, when it decided the removal): the set still takes the
    /// UE's packets on its flows while `RemoveSaSet` is on its way and until its drain ends, so
    /// the ACK of the last answer (the 200 OK to a de-REGISTER) ends the drain instead of
    /// being counted as an unknown SPI (TS 33.203 7.4: the SAs go after that answer). SIP
    /// over it is refused by the slowpath, which no longer knows the SPI.
    fn draining_inbound(&self, src: IpAddr, spi: u32) -> Option<super::InboundEntry> {
        let ue = self.ues.get(&src)?;
        let local = ue.stack.local();
        ue.sa_sets
            .iter()
            .find_map(|s| s.inbound_entry(spi, src, local, self.cfg.id))
    }

    fn clear_packet(
        &mut self,
        buf: &[u8],
        r: Range<usize>,
        src: IpAddr,
        dst: IpAddr,
        now: Instant,
    ) {
        let pkt = &buf[r];
        let Some(p) = transport_ports(pkt) else {
            inc(&self.counters.drop_ip_malformed);
            return;
        };
        if p.dst != self.cfg.sip_port {
            let protected = self
                .ues
                .get(&src)
                .is_some_and(|u| u.sa_sets.iter().any(|s| s.is_protected_port(p.dst)));
            inc(if protected {
                &self.counters.drop_clear_to_protected
            } else {
                &self.counters.drop_closed_port
            });
            return;
        }
        self.deliver(src, dst, pkt, None, true, now);
    }

    /// Runs an inner packet through the UE's stack (creating it for unprotected SIP) in place
    /// and marks the stack due.
    fn deliver(
        &mut self,
        ue: IpAddr,
        local: IpAddr,
        pkt: &[u8],
        spi: Option<u32>,
        create: bool,
        now: Instant,
    ) {
        let Some(u) = super::ue_entry_in(
            &mut self.ues,
            &self.cfg,
            &self.counters,
            ue,
            local,
            create,
            now,
        ) else {
            return;
        };
        let out = super::egress::Out {
            l2: &mut self.l2,
            queue: &mut self.queue,
            tx: &mut self.tx,
            ctrl: &mut self.ctrl,
            counters: &self.counters,
            sip_port: self.cfg.sip_port,
            link_mtu: self.cfg.link_mtu,
        };
        let mut sink = super::egress::StackSink::new(
            out,
            &mut u.sa_sets,
            now,
            &mut self.scratch,
            self.cfg.burst * 4,
        );
        // Straight from the rx buffer into the stack: the data waits in its socket, framed
        // and answered by the poll scheduled here (once per UE and burst).
        u.stack.input(pkt, spi, now, &mut sink);
        drop(sink);
        self.timers.schedule(ue, now);
    }

    /// Sends an IP packet built by the worker itself (echo reply) in clear.
    fn send_local(&mut self, pkt: &[u8], now: Instant) {
        let Some((_, dst)) = addrs(pkt) else {
            return;
        };
        let mut out = super::egress::Out {
            l2: &mut self.l2,
            queue: &mut self.queue,
            tx: &mut self.tx,
            ctrl: &mut self.ctrl,
            counters: &self.counters,
            sip_port: self.cfg.sip_port,
            link_mtu: self.cfg.link_mtu,
        };
        out.frame(dst, pkt, None, now);
    }
}
