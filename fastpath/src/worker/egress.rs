//! Outbound path: a stack's IP packet gets ESP with the outbound SA chosen by (UE, local
//! port, remote port), or leaves in clear only from the unprotected SIP port; then Ethernet.
//!
//! smoltcp writes each packet straight into a buffer of the port's pool ([`StackSink`]), after
//! the pool's headroom (room for the ESP header, IV and Ethernet header), and ESP and Ethernet
//! are added in place: no copy between the stack and the wire.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;

use akagate_sys::{PacketBuf, PortQueue};
use smoltcp::time::Instant;

use super::counters::inc;
use super::{SaSetState, WorkerCounters};
use crate::esp::OutboundSa;
use crate::l2::{L2Drop, ETH_HDR_LEN, L2};
use crate::stack::ports::transport_ports;
use crate::stack::PacketSink;

/// The parts of a worker the egress path writes to.
pub(super) struct Out<'a, Q: PortQueue> {
    pub l2: &'a mut L2,
    pub queue: &'a mut Q,
    pub tx: &'a mut Vec<PacketBuf>,
    pub ctrl: &'a mut Vec<Vec<u8>>,
    pub counters: &'a WorkerCounters,
    pub sip_port: u16,
    pub link_mtu: usize,
}

/// Destination address of an IP packet.
fn dst_addr(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 => {
            let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        6 => {
            let d: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        _ => None,
    }
}

/// Sends one packet of a UE's stack, already in `b`: picks the SA, or refuses clear text from
/// protected ports.
fn emit<Q: PortQueue>(out: &mut Out<'_, Q>, sets: &mut [SaSetState], b: PacketBuf, now: Instant) {
    let pkt = b.data();
    let (Some(ports), Some(dst)) = (transport_ports(pkt), dst_addr(pkt)) else {
        return out.drop(b, &out.counters.drop_egress_not_sip);
    };
    // The newest set that protects this port pair wins (TS 33.203 7.4: after a
    // re-registration the new set is used once it has carried traffic).
    let sa = sets.iter_mut().find_map(|s| s.outbound_for(&ports));
    if sa.is_none() && ports.src != out.sip_port {
        return out.drop(b, &out.counters.drop_egress_no_sa);
    }
    out.frame_buf(dst, b, sa, now);
}

/// The [`PacketSink`] a UE's stack writes into: each packet goes into a buffer of the port's
/// pool and on through [`emit`]. One is made per input or poll of a stack.
pub(super) struct StackSink<'a, 'o, Q: PortQueue> {
    out: Out<'o, Q>,
    sets: &'a mut [SaSetState],
    now: Instant,
    /// A buffer taken by `can_send` for the next packet.
    spare: Option<PacketBuf>,
    /// Where smoltcp writes a packet there is no buffer for (it must write it somewhere).
    scratch: &'a mut Vec<u8>,
    /// Frames queued for transmission beyond which the stack is held back.
    tx_limit: usize,
}

impl<'a, 'o, Q: PortQueue> StackSink<'a, 'o, Q> {
    /// A sink for the stack of the UE whose SA sets are `sets`.
    pub(super) fn new(
        out: Out<'o, Q>,
        sets: &'a mut [SaSetState],
        now: Instant,
        scratch: &'a mut Vec<u8>,
        tx_limit: usize,
    ) -> Self {
        StackSink {
            out,
            sets,
            now,
            spare: None,
            scratch,
            tx_limit,
        }
    }
}

impl<Q: PortQueue> PacketSink for StackSink<'_, '_, Q> {
    fn send<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, fill: F) -> R {
        let Some(mut b) = self.spare.take().or_else(|| self.out.queue.alloc()) else {
            inc(&self.out.counters.drop_no_buffer);
            return discard(self.scratch, len, fill);
        };
        // A fresh buffer's data starts after the pool's headroom, which leaves room for the
        // ESP header, IV and Ethernet header in front.
        let (raw, r) = b.raw_mut();
        let area = r.start..r.start + len;
        let Some(dst) = raw.get_mut(area.clone()) else {
            self.out.drop(b, &self.out.counters.drop_egress_too_big);
            return discard(self.scratch, len, fill);
        };
        let result = fill(dst);
        match b.set_range(area) {
            Ok(()) => emit(&mut self.out, self.sets, b, self.now),
            Err(_) => self.out.drop(b, &self.out.counters.drop_egress_too_big),
        }
        result
    }

    fn can_send(&mut self) -> bool {
        if self.out.tx.len() >= self.tx_limit {
            return false;
        }
        if self.spare.is_none() {
            self.spare = self.out.queue.alloc();
        }
        self.spare.is_some()
    }
}

impl<Q: PortQueue> Drop for StackSink<'_, '_, Q> {
    fn drop(&mut self) {
        if let Some(b) = self.spare.take() {
            self.out.queue.free(b);
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

impl<Q: PortQueue> Out<'_, Q> {
    fn drop(&mut self, b: PacketBuf, c: &AtomicU64) {
        self.queue.free(b);
        inc(c);
    }

    /// Encapsulates (if `sa`) and frames a copy of `pkt` for `dst`, queueing it for
    /// transmission (packets the worker builds itself).
    pub(super) fn frame(
        &mut self,
        dst: IpAddr,
        pkt: &[u8],
        sa: Option<&mut OutboundSa>,
        now: Instant,
    ) {
        let Some(mut b) = self.queue.alloc() else {
            return inc(&self.counters.drop_no_buffer);
        };
        if b.fill(pkt).is_err() {
            return self.drop(b, &self.counters.drop_egress_too_big);
        }
        self.frame_buf(dst, b, sa, now);
    }

    /// Encapsulates (if `sa`) and frames the IP packet in `b` for `dst` in place, queueing it
    /// for transmission.
    fn frame_buf(
        &mut self,
        dst: IpAddr,
        mut b: PacketBuf,
        sa: Option<&mut OutboundSa>,
        now: Instant,
    ) {
        let hdr = match self.l2.header_for(dst, now, self.ctrl) {
            Ok(h) => h,
            Err(L2Drop::NoNeighbor) => return self.drop(b, &self.counters.drop_egress_no_neighbor),
            Err(_) => return self.drop(b, &self.counters.drop_egress_no_route),
        };
        if let Some(sa) = sa {
            let (raw, r) = b.raw_mut();
            let encapsulated = sa.encapsulate(raw, r).map(|nr| b.set_range(nr));
            match encapsulated {
                Ok(Ok(())) => inc(&self.counters.esp_out),
                _ => return self.drop(b, &self.counters.drop_egress_esp),
            }
        }
        if b.len() > self.link_mtu {
            return self.drop(b, &self.counters.drop_egress_too_big);
        }
        match b.prepend(ETH_HDR_LEN) {
            Ok(h) => h.copy_from_slice(&hdr),
            Err(_) => return self.drop(b, &self.counters.drop_egress_too_big),
        }
        self.tx.push(b);
    }
}
