//! The SAs of a UE as the worker holds them: inbound SAs in the shared SPI-indexed table
//! (with their selectors), outbound SAs per SA set inside the UE's state (TS 33.203 7.1).

use std::net::IpAddr;
use std::sync::Mutex;

use crate::esp::{InboundSa, OutboundSa, SaError};
use crate::ipc::SaSet;
use crate::stack::ports::Ports;

/// The value type of the inbound SA table: the SA and what it may carry.
///
/// The mutex is never contended: only the worker owning the UE decapsulates its packets (one
/// UE, one worker); it makes the replay window's single writer explicit without `unsafe`.
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
    /// The SA itself.
    pub sa: Mutex<InboundSa>,
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
    /// Set once the set was removed: its inbound SAs are gone and its outbound SAs only carry
    /// what was queued before the removal, until nothing is left or this deadline passes.
    pub drain_until: Option<smoltcp::time::Instant>,
}

impl SaSetState {
    /// Builds the outbound SAs of `set` and the two inbound table entries for `worker`.
    pub fn build(
        set: &SaSet,
        worker: usize,
    ) -> Result<(Self, InboundEntry, InboundEntry), SaError> {
        let state = SaSetState {
            spi_pc: set.spi_pc,
            spi_ps: set.spi_ps,
            port_pc: set.port_pc,
            port_ps: set.port_ps,
            port_uc: set.port_uc,
            port_us: set.port_us,
            out_uc: OutboundSa::new(set.spi_uc, &set.suite)?,
            out_us: OutboundSa::new(set.spi_us, &set.suite)?,
            drain_until: None,
        };
        let entry = |spi, ue_port, local_port| -> Result<InboundEntry, SaError> {
            Ok(InboundEntry {
                ue: set.ue,
                local: set.local,
                ue_port,
                local_port,
                worker,
                sa: Mutex::new(InboundSa::new(spi, &set.suite)?),
            })
        };
        let ps = entry(set.spi_ps, set.port_uc, set.port_ps)?;
        let pc = entry(set.spi_pc, set.port_us, set.port_pc)?;
        Ok((state, ps, pc))
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

    /// True while the set is installed and not draining.
    pub fn is_live(&self) -> bool {
        self.drain_until.is_none()
    }

    /// True if `port` is one of our protected ports of this set.
    pub fn is_protected_port(&self, port: u16) -> bool {
        port == self.port_ps || port == self.port_pc
    }
}
