//! The SAs of a UE as the worker holds them: inbound SAs in the shared SPI-indexed table
//! (with their selectors), outbound SAs per SA set inside the UE's state (TS 33.203 7.1).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::esp::{InboundSa, OutboundSa, SaError};
use crate::ipc::{OutboundSeq, SaSet};
use crate::stack::ports::Ports;

/// The value type of the inbound SA table: the SA and what it may carry.
///
/// The mutex is never contended: only the worker owning the UE decapsulates its packets (one
/// UE, one worker); it makes the replay window's single writer explicit without `unsafe`.
/// The SA is shared with the worker's [`SaSetState`], so a removed set's inbound SAs keep
/// their replay windows while it drains, after the slowpath released their SPIs.
#[derive(Debug)]
pub struct InboundEntry {
    /// The UE the SA belongs to (outer and inner source address).
    pub ue: IpAddr,
    /// Our address the SA is bound to.
    pub local: IpAddr,
    /// The UE port packets of this SA come from (port_uc for spi_ps, port_us for spi_pc).
    pub ue_port: u16,
    /// Our port they go to (port_ps for spi_ps, port_pc for spi_pc).
    pub local_port: u16,
    /// Index of the worker that owns the UE.
    pub worker: usize,
    /// The SA itself (also held by the set's [`SaSetState`] for the drain).
    pub sa: Arc<Mutex<InboundSa>>,
}

/// The table type shared by the slowpath (SPI allocation) and the workers.
pub type InboundTable = crate::sad::SaTable<InboundEntry>;

/// One installed SA set of a UE, kept by the worker: ports, SPIs and the two outbound SAs.
#[derive(Debug)]
pub struct SaSetState {
    /// Inbound SPI at port_pc.
    pub spi_pc: u32,
    /// Inbound SPI at port_ps.
    pub spi_ps: u32,
    /// Our protected client port.
    pub port_pc: u16,
    /// Our protected server port.
    pub port_ps: u16,
    /// The UE's protected client port.
    pub port_uc: u16,
    /// The UE's protected server port.
    pub port_us: u16,
    /// Outbound SA port_ps -> port_uc (spi_uc).
    pub out_uc: OutboundSa,
    /// Outbound SA port_pc -> port_us (spi_us).
    pub out_us: OutboundSa,
    /// Inbound SA port_uc -> port_ps (spi_ps), the one the table entry holds.
    pub in_ps: Arc<Mutex<InboundSa>>,
    /// Inbound SA port_us -> port_pc (spi_pc), the one the table entry holds.
    pub in_pc: Arc<Mutex<InboundSa>>,
    /// Set once the set was removed: its SPIs are out of the table, its inbound SAs only take
    /// what belongs to the flows it still drains (TCP ACKs of the last answer) and its outbound
    /// SAs only carry what was queued before the removal, until nothing is left or this
    /// deadline passes.
    pub drain_until: Option<smoltcp::time::Instant>,
    /// Set when one of its inbound SAs first opened a packet of the UE. Until then the UE may
    /// not have the set's keys (a re-registration's 401 is still on its way), so egress keeps
    /// using an older set of the same ports that has carried traffic (TS 33.203 7.4).
    pub used: bool,
}

impl SaSetState {
    /// Builds the four SAs of `set`: the outbound ones and, shared with the two table entries
    /// returned for `worker`, the inbound ones.
    pub fn build(
        set: &SaSet,
        seq: OutboundSeq,
        worker: usize,
    ) -> Result<(Self, InboundEntry, InboundEntry), SaError> {
        let in_ps = Arc::new(Mutex::new(InboundSa::new(set.spi_ps, &set.suite)?));
        let in_pc = Arc::new(Mutex::new(InboundSa::new(set.spi_pc, &set.suite)?));
        let entry = |sa: &Arc<Mutex<InboundSa>>, ue_port, local_port| InboundEntry {
            ue: set.ue,
            local: set.local,
            ue_port,
            local_port,
            worker,
            sa: Arc::clone(sa),
        };
        let ps = entry(&in_ps, set.port_uc, set.port_ps);
        let pc = entry(&in_pc, set.port_us, set.port_pc);
        let state = SaSetState {
            spi_pc: set.spi_pc,
            spi_ps: set.spi_ps,
            port_pc: set.port_pc,
            port_ps: set.port_ps,
            port_uc: set.port_uc,
            port_us: set.port_us,
            out_uc: OutboundSa::new(set.spi_uc, &set.suite)?.resume(seq),
            out_us: OutboundSa::new(set.spi_us, &set.suite)?.resume(seq),
            in_ps,
            in_pc,
            drain_until: None,
            used: false,
        };
        Ok((state, ps, pc))
    }

    /// The table entry this set had for inbound `spi`, rebuilt for a draining set whose SPIs
    /// the slowpath already released: same SA (same replay window), same selectors.
    pub fn inbound_entry(
        &self,
        spi: u32,
        ue: IpAddr,
        local: IpAddr,
        worker: usize,
    ) -> Option<InboundEntry> {
        let (sa, ue_port, local_port) = if spi == self.spi_ps {
            (&self.in_ps, self.port_uc, self.port_ps)
        } else if spi == self.spi_pc {
            (&self.in_pc, self.port_us, self.port_pc)
        } else {
            return None;
        };
        Some(InboundEntry {
            ue,
            local,
            ue_port,
            local_port,
            worker,
            sa: Arc::clone(sa),
        })
    }

    /// True if this set protects the flow between our `local_port` and the UE's `ue_port`
    /// (port_ps <-> port_uc or port_pc <-> port_us).
    pub fn protects_pair(&self, local_port: u16, ue_port: u16) -> bool {
        (local_port == self.port_ps && ue_port == self.port_uc)
            || (local_port == self.port_pc && ue_port == self.port_us)
    }

    /// The outbound SA for a packet with these ports, if this set protects it.
    pub fn outbound_for(&mut self, p: &Ports) -> Option<&mut OutboundSa> {
        if p.src == self.port_ps && p.dst == self.port_uc {
            Some(&mut self.out_uc)
        } else if p.src == self.port_pc && p.dst == self.port_us {
            Some(&mut self.out_us)
        } else {
            None
        }
    }

    /// The outbound SA for a packet with these ports among a UE's `sets` (newest first): the
    /// newest set that protects the ports and has carried traffic, else the newest that
    /// protects them. A re-registration that keeps the UE's ports (many phones change only
    /// their SPIs) thus answers over the old set until the UE uses the new one.
    pub fn pick_outbound<'a>(sets: &'a mut [SaSetState], p: &Ports) -> Option<&'a mut OutboundSa> {
        let protects = |s: &SaSetState| s.protects_pair(p.src, p.dst);
        let at = sets
            .iter()
            .position(|s| s.used && protects(s))
            .or_else(|| sets.iter().position(protects))?;
        sets.get_mut(at)?.outbound_for(p)
    }

    /// Marks the set that owns inbound `spi` as used (see [`SaSetState::used`]).
    pub fn note_inbound(sets: &mut [SaSetState], spi: u32) {
        if let Some(s) = sets
            .iter_mut()
            .find(|s| !s.used && (s.spi_ps == spi || s.spi_pc == spi))
        {
            s.used = true;
        }
    }

    /// True while the set is installed and not draining.
    pub fn is_live(&self) -> bool {
        self.drain_until.is_none()
    }

    /// True if `port` is one of our protected ports of this set.
    pub fn is_protected_port(&self, port: u16) -> bool {
        port == self.port_ps || port == self.port_pc
    }
}
