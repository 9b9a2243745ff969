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

    /// Starts loading the record of the UE at `ip` (every line of its cell) without reading
    /// it, and returns its slot for [`Ues::at`] once the lines are there: the burst's prefetch
    /// pass asks for many UEs' records before it reads any.
    pub(super) fn prefetch(&self, ip: &IpAddr) -> Option<u32> {
        let slot = *self.by_ip.get(ip)?;
        let c: *const Cell = self.cell(slot)?;
        let base = c.cast::<u8>();
        for off in (0..core::mem::size_of::<Cell>()).step_by(64) {
            crate::sad::prefetch(base.wrapping_add(off));
        }
        Some(slot)
    }

    /// The record in `slot`, if taken, to read.
    pub(super) fn at(&self, slot: u32) -> Option<&Ue> {
        self.cell(slot)?.ue.as_ref()
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
    use super::*;
    use crate::stack::{StackConfig, UeStack};
    use smoltcp::time::Instant;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    fn make(ues: &mut Ues, i: u32) -> UeRef {
        let stack = UeStack::new(
            StackConfig::default(),
            ip(0xff_ffff),
            ip(i),
            Instant::from_millis(0),
        )
        .expect("a stack");
        ues.insert(ip(i), |at| Ue {
            at,
            stack,
            sa_sets: Default::default(),
            sip_use: SipPortUse {
                unregistered: i as usize,
                ..SipPortUse::default()
            },
            timer_at: None,
            woken: false,
        })
        .at
    }

    /// A slot freed by a UE that left is the next one taken, and what named the UE that
    /// left (a wheel entry, a woken list's) no longer reaches anything, not the UE that took
    /// the slot after it; records never move as segments are added.
    #[test]
    fn a_ref_of_a_ue_that_left_reaches_no_other_ue() {
        let mut ues = Ues::default();
        let refs: Vec<UeRef> = (1..=150).map(|i| make(&mut ues, i)).collect();
        assert_eq!(ues.len(), 150);
        assert_eq!(ues.values().count(), 150);
        let first: *const Ue = ues.get(&ip(1)).expect("held");
        for (i, r) in (1..=150).zip(&refs) {
            let u = ues.by_ref(*r).expect("held");
            assert_eq!(u.stack.peer(), ip(i));
            assert_eq!(u.at, *r);
            assert_eq!(ues.slot_of(&ip(i)), Some(r.slot));
        }
        // Three segments later the first record is where it was.
        assert!(core::ptr::eq(first, ues.get(&ip(1)).expect("held")));

        let gone = refs[69];
        let used = ues.remove(&ip(70)).expect("held");
        assert_eq!(used.unregistered, 70);
        assert!(ues.by_ref(gone).is_none() && ues.get_ref(gone).is_none());
        assert!(ues.get(&ip(70)).is_none() && !ues.contains_key(&ip(70)));
        assert!(ues.remove(&ip(70)).is_none());

        let new = make(&mut ues, 500);
        assert_eq!(new.slot, gone.slot, "the freed slot is taken first");
        assert_ne!(new, gone);
        assert!(
            ues.by_ref(gone).is_none(),
            "a stale ref reached the slot's new UE"
        );
        assert_eq!(ues.by_ref(new).expect("held").stack.peer(), ip(500));
        assert_eq!(ues.at(new.slot).expect("held").stack.peer(), ip(500));
        assert_eq!(ues.prefetch(&ip(500)), Some(new.slot));
        assert_eq!(ues.prefetch(&ip(70)), None);
        assert_eq!(ues.len(), 150);
    }

    #[test]
    fn a_cell_is_whole_lines() {
        let c = core::mem::size_of::<super::Cell>();
        assert_eq!(c % 64, 0);
        assert!(c <= core::mem::size_of::<super::Ue>() + 64, "Cell {c} B");
    }
}
