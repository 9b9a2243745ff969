//! A worker's UE records in a slab of its own: the records live in fixed segments and never
//! move; a map finds a UE's slot from its address, and the worker's timer wheel and its list
//! of woken UEs hold the slot itself ([`UeRef`]), so a poll reaches its UE without hashing.
//!
//! A slot freed by a UE that left is the next one taken (its lines are the warmest), and
//! its generation moves on, so a [`UeRef`] kept by a wheel entry or a woken list of the UE
//! that left never reaches the UE that takes the slot after it.

use std::net::IpAddr;

use akagate_proto::hash::{keyed_map, KeyedMap};

use super::{SipPortUse, Ue};

/// Records per segment (about 68 KiB of 1 088-byte cells).
const SEGMENT: usize = 64;

/// A UE's slot in its worker's [`Ues`] and the slot's generation when the UE took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct UeRef {
    slot: u32,
    gen: u32,
}

/// One slot: its record, if taken, and its generation (moved on at every removal). Cells
/// start cache lines, so a record's prefetch asks for as few lines as the record covers.
#[derive(Debug)]
#[repr(align(64))]
struct Cell {
    ue: Option<Ue>,
    gen: u32,
}

/// The UEs of one worker: their records by slot, and their slots by address.
#[derive(Debug)]
pub(super) struct Ues {
    by_ip: KeyedMap<IpAddr, u32>,
    segments: Vec<Box<[Cell]>>,
    /// Freed slots, the most recently freed last (taken first).
    free: Vec<u32>,
}

impl Default for Ues {
    fn default() -> Self {
        Ues {
            by_ip: keyed_map(),
            segments: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl Ues {
    /// UEs held.
    pub(super) fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// True if a record exists for `ip`.
    pub(super) fn contains_key(&self, ip: &IpAddr) -> bool {
        self.by_ip.contains_key(ip)
    }

    fn cell(&self, slot: u32) -> Option<&Cell> {
        let s = slot as usize;
        self.segments.get(s / SEGMENT)?.get(s % SEGMENT)
    }

    fn cell_mut(&mut self, slot: u32) -> Option<&mut Cell> {
        let s = slot as usize;
        self.segments.get_mut(s / SEGMENT)?.get_mut(s % SEGMENT)
    }

    /// The record of the UE at `ip`.
    pub(super) fn get(&self, ip: &IpAddr) -> Option<&Ue> {
        let slot = *self.by_ip.get(ip)?;
        self.cell(slot)?.ue.as_ref()
    }

    /// The record of the UE at `ip`, to change.
    pub(super) fn get_mut(&mut self, ip: &IpAddr) -> Option<&mut Ue> {
        let slot = *self.by_ip.get(ip)?;
        self.cell_mut(slot)?.ue.as_mut()
    }

    /// The slot of the UE at `ip` (for [`Ues::at_slot`]).
    pub(super) fn slot_of(&self, ip: &IpAddr) -> Option<u32> {
        self.by_ip.get(ip).copied()
    }

    /// The record in `slot`, if taken.
    pub(super) fn at_slot(&mut self, slot: u32) -> Option<&mut Ue> {
        self.cell_mut(slot)?.ue.as_mut()
    }

    /// The record `r` names, unless its UE has left (its slot freed, maybe taken again).
    pub(super) fn by_ref(&mut self, r: UeRef) -> Option<&mut Ue> {
        let c = self.cell_mut(r.slot)?;
        if c.gen != r.gen {
            return None;
        }
        c.ue.as_mut()
    }

    /// The record `r` names, to read, unless its UE has left.
    pub(super) fn get_ref(&self, r: UeRef) -> Option<&Ue> {
        let c = self.cell(r.slot)?;
        if c.gen != r.gen {
            return None;
        }
        c.ue.as_ref()
    }

    /// Every record held.
    pub(super) fn values(&self) -> impl Iterator<Item = &Ue> {
        self.segments
            .iter()
            .flat_map(|s| s.iter())
            .filter_map(|c| c.ue.as_ref())
    }

    /// Stores the record `make` builds for `ip` (which must not be held) with the slot it
    /// gets, and returns it. A freed slot is taken first; a new segment is made when none is
    /// left.
    pub(super) fn insert(&mut self, ip: IpAddr, make: impl FnOnce(UeRef) -> Ue) -> &mut Ue {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let first = self.segments.len() * SEGMENT;
                self.segments.push(
                    (0..SEGMENT)
                        .map(|_| Cell { ue: None, gen: 0 })
                        .collect::<Box<[Cell]>>(),
                );
                // Taken from the lowest: the slots of a new segment go out in order.
                self.free
                    .extend((first as u32 + 1..(first + SEGMENT) as u32).rev());
                first as u32
            }
        };
        self.by_ip.insert(ip, slot);
        let s = slot as usize;
        // The slot is one of the segments' (from `free` or just made).
        let cell = &mut self.segments[s / SEGMENT][s % SEGMENT];
        let r = UeRef {
            slot,
            gen: cell.gen,
        };
        cell.ue.insert(make(r))
    }

    /// Frees the record of `ip`; returns its counted use of the SIP port.
    pub(super) fn remove(&mut self, ip: &IpAddr) -> Option<SipPortUse> {
        let slot = self.by_ip.remove(ip)?;
        let c = self.cell_mut(slot)?;
        let used = c.ue.as_ref().map(|u| u.sip_use);
        // Dropped in place; refs of the UE that left now find another generation.
        c.ue = None;
        c.gen = c.gen.wrapping_add(1);
        self.free.push(slot);
        used
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cell_is_whole_lines() {
        let c = core::mem::size_of::<super::Cell>();
        assert_eq!(c % 64, 0);
        assert!(c <= core::mem::size_of::<super::Ue>() + 64, "Cell {c} B");
    }
}
