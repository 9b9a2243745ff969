//! Outbound path: a stack's IP packet gets ESP with the outbound SA chosen by (UE, local
//! port, remote port), or leaves in clear only from the unprotected SIP port; then Ethernet.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;

use akagate_sys::{PacketBuf, PortQueue};
use smoltcp::time::Instant;

use super::counters::inc;
use super::{SaSetState, WorkerCounters};
use crate::esp::OutboundSa;
use crate::l2::{L2Drop, ETH_HDR_LEN, L2};
use crate::stack::ports::transport_ports;

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

/// Sends one packet from a UE's stack: picks the SA, or refuses clear text from protected ports.
pub(super) fn emit<Q: PortQueue>(
    out: &mut Out<'_, Q>,
    sets: &mut [SaSetState],
    pkt: &[u8],
    now: Instant,
) {
    let (Some(ports), Some(dst)) = (transport_ports(pkt), dst_addr(pkt)) else {
        inc(&out.counters.drop_egress_not_sip);
        return;
    };
    // The newest set that protects this port pair wins (TS 33.203 7.4: after a
    // re-registration the new set is used once it has carried traffic).
    let sa = sets.iter_mut().find_map(|s| s.outbound_for(&ports));
    if sa.is_none() && ports.src != out.sip_port {
        inc(&out.counters.drop_egress_no_sa);
        return;
    }
    out.frame(dst, pkt, sa, now);
}

impl<Q: PortQueue> Out<'_, Q> {
    fn drop(&mut self, b: PacketBuf, c: &AtomicU64) {
        self.queue.free(b);
        inc(c);
    }

    /// Encapsulates (if `sa`) and frames `pkt` for `dst`, queueing it for transmission.
    pub(super) fn frame(
        &mut self,
        dst: IpAddr,
        pkt: &[u8],
        sa: Option<&mut OutboundSa>,
        now: Instant,
    ) {
        let hdr = match self.l2.header_for(dst, now, self.ctrl) {
            Ok(h) => h,
            Err(L2Drop::NoNeighbor) => return inc(&self.counters.drop_egress_no_neighbor),
            Err(_) => return inc(&self.counters.drop_egress_no_route),
        };
        let Some(mut b) = self.queue.alloc() else {
            return inc(&self.counters.drop_no_buffer);
        };
        if b.fill(pkt).is_err() {
            return self.drop(b, &self.counters.drop_egress_too_big);
        }
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
