//! Where a UE's state was last found, by a cheap hash of its address: the addresses of its
//! entry in the worker's UE map and of its record, kept only to be prefetched (never read
//! through), so that a burst's look-ups of its UEs start loading together instead of each
//! waiting for the map's bucket in turn (docs/ARCHITECTURE.md, *Worker pipeline*).
//!
//! A hint may be stale (the map moved its entries when it grew, the UE left, another address
//! shares the slot): then the lines it names are loaded for nothing. Nothing else depends
//! on it, so an address chosen to collide costs a UE no more than its prefetch.

use std::net::IpAddr;

/// The fewest slots a worker's hints have (16 KiB).
const MIN_SLOTS: usize = 1024;

/// One slot: the map entry's and the record's addresses when the UE was last found (0:
/// none).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Hint {
    entry: usize,
    record: usize,
}

/// The worker's hints, a direct-mapped table of at least twice as many slots as UEs.
#[derive(Debug)]
pub(super) struct UeHints {
    slots: Vec<Hint>,
    /// 64 less the slot count's bits: a hash's top bits pick the slot.
    shift: u32,
}

impl Default for UeHints {
    fn default() -> Self {
        UeHints::with_slots(MIN_SLOTS)
    }
}

impl UeHints {
    fn with_slots(n: usize) -> Self {
        let n = n.next_power_of_two().max(MIN_SLOTS);
        UeHints {
            slots: vec![Hint::default(); n],
            shift: 64 - n.trailing_zeros(),
        }
    }

    /// The slot of `ip`: its address folded to 64 bits, multiplied by an odd constant (the
    /// golden ratio's), the top bits.
    pub(super) fn index(&self, ip: &IpAddr) -> usize {
        let x = match ip {
            IpAddr::V4(a) => u64::from(u32::from(*a)),
            IpAddr::V6(a) => {
                let v = u128::from(*a);
                (v as u64) ^ ((v >> 64) as u64).rotate_left(29)
            }
        };
        (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// Starts loading slot `i`'s line ([`UeHints::index`]).
    pub(super) fn prefetch_slot(&self, i: usize) {
        if let Some(h) = self.slots.get(i) {
            crate::sad::prefetch(h);
        }
    }

    /// Starts loading what slot `i` names: the map entry's line and the first `record_bytes`
    /// of the record. Returns the two addresses, as [`UeHints::note_at`] takes them ((0, 0):
    /// the slot is empty).
    pub(super) fn prefetch_named(&self, i: usize, record_bytes: usize) -> (usize, usize) {
        let Some(h) = self.slots.get(i) else {
            return (0, 0);
        };
        if h.record == 0 {
            return (0, 0);
        }
        crate::sad::prefetch(h.entry as *const u8);
        for off in (0..record_bytes).step_by(64) {
            crate::sad::prefetch(h.record.wrapping_add(off) as *const u8);
        }
        (h.entry, h.record)
    }

    /// Notes in slot `i` ([`UeHints::index`] of its address) where a UE's map entry and
    /// record are now: `(entry, record)`, their addresses.
    pub(super) fn note_at(&mut self, i: usize, (entry, record): (usize, usize)) {
        if let Some(h) = self.slots.get_mut(i) {
            *h = Hint { entry, record };
        }
    }

    /// Makes room for `ues` UEs: at least twice as many slots (the hints are dropped when
    /// the table grows; the next look-up of each UE notes it again).
    pub(super) fn fit(&mut self, ues: usize) {
        if ues.saturating_mul(2) > self.slots.len() {
            *self = UeHints::with_slots(ues.saturating_mul(2));
        }
    }

    /// Bytes of heap the hints hold.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<Hint>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_noted_ue_is_named_by_its_slot_and_growing_forgets_it() {
        let mut h = UeHints::default();
        let ip: IpAddr = Ipv4Addr::new(10, 0, 0, 7).into();
        let i = h.index(&ip);
        assert!(i < MIN_SLOTS);
        assert_eq!(h.prefetch_named(i, 128), (0, 0));
        h.note_at(i, (0x1000, 0x2000));
        assert_eq!(h.prefetch_named(i, 128), (0x1000, 0x2000));
        // Not enough room for 600 UEs in 1024 slots: grown, the hints forgotten.
        h.fit(512);
        assert_eq!(h.prefetch_named(i, 128), (0x1000, 0x2000));
        h.fit(600);
        assert_eq!(h.heap_bytes(), 2048 * core::mem::size_of::<Hint>());
        let i = h.index(&ip);
        assert_eq!(h.prefetch_named(i, 128), (0, 0));
        // Out of range: nothing, no panic.
        assert_eq!(h.prefetch_named(usize::MAX, 128), (0, 0));
        h.prefetch_slot(usize::MAX);
        h.note_at(usize::MAX, (1, 2));
    }

    #[test]
    fn consecutive_addresses_spread_over_the_slots() {
        let h = UeHints::with_slots(4096);
        let mut used = std::collections::HashSet::new();
        for n in 0..2048u32 {
            used.insert(h.index(&IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))));
            let v6 = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n));
            used.insert(h.index(&IpAddr::V6(v6)));
        }
        // 4096 addresses into 4096 slots: a fair hash fills about 63% of them.
        assert!(used.len() > 2400, "{}", used.len());
    }
}
