//! The worker's UEs: records in numbered slots, found by address through a map (a clear
//! packet, a command) or by their tag ([`UeTag`]: the slot and its generation) without it.
//!
//! The tag rides where the worker comes back to a UE it already found: the inbound SA's
//! table entry (set at install, so an ESP packet reaches its UE from the entry its SA look-up
//! read, without the map's two dependent lines), the timer wheel and the list of UEs to poll.
//! A slot's generation moves when its UE is removed, so a tag that outlived its UE (an SA
//! entry of a draining set, a stale wheel entry) finds nothing, never the slot's next UE.

use std::net::IpAddr;

use akagate_proto::hash::{keyed_map, KeyedMap};

/// Where a worker keeps one UE's record: its slot and the slot's generation when the UE took
/// it. Opaque outside the worker; [`UeTag::NONE`] names no UE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UeTag {
    slot: u32,
    gen: u32,
}

impl UeTag {
    /// The tag of no UE (generations start at 1, so it matches no slot).
    pub const NONE: UeTag = UeTag { slot: 0, gen: 0 };

    /// The tag as one word (the SA table stores it in two halves of its entry's words).
    pub fn to_parts(self) -> (u32, u32) {
        (self.slot, self.gen)
    }

    /// The tag of [`UeTag::to_parts`].
    pub fn from_parts(slot: u32, gen: u32) -> UeTag {
        UeTag { slot, gen }
    }
}

impl Default for UeTag {
    fn default() -> Self {
        UeTag::NONE
    }
}

/// One slot: its generation and, while taken, the UE's address and record.
#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    live: Option<(IpAddr, Box<T>)>,
}

/// The worker's UE records, by address and by tag.
#[derive(Debug)]
pub(super) struct Ues<T> {
    index: KeyedMap<IpAddr, UeTag>,
    slots: Vec<Slot<T>>,
    /// Slots given back, the last freed reused first (its lines are the warmest).
    free: Vec<u32>,
}

impl<T> Ues<T> {
    /// No UEs.
    pub(super) fn new() -> Self {
        Ues {
            index: keyed_map(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The number of UEs.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// True if `ip` has a record.
    pub(super) fn contains_key(&self, ip: &IpAddr) -> bool {
        self.index.contains_key(ip)
    }

    /// The tag of `ip`'s record (one map look-up).
    pub(super) fn find(&self, ip: &IpAddr) -> Option<UeTag> {
        self.index.get(ip).copied()
    }

    /// The record of `ip`.
    pub(super) fn get(&self, ip: &IpAddr) -> Option<&T> {
        self.at(self.find(ip)?)
    }

    /// The record of `ip`, to change.
    pub(super) fn get_mut(&mut self, ip: &IpAddr) -> Option<&mut T> {
        self.at_mut(self.find(ip)?)
    }

    /// The record `tag` names, if its UE is still there.
    pub(super) fn at(&self, tag: UeTag) -> Option<&T> {
        let s = self.slots.get(tag.slot as usize)?;
        match &s.live {
            Some((_, ue)) if s.gen == tag.gen => Some(ue),
            _ => None,
        }
    }

    /// The record `tag` names, to change, if its UE is still there.
    pub(super) fn at_mut(&mut self, tag: UeTag) -> Option<&mut T> {
        let s = self.slots.get_mut(tag.slot as usize)?;
        match &mut s.live {
            Some((_, ue)) if s.gen == tag.gen => Some(ue),
            _ => None,
        }
    }

    /// The record `tag` names if its UE is still there and at `ip` (a tag read from a
    /// packet's SA entry: the entry's address was checked against the packet).
    pub(super) fn at_of(&mut self, tag: UeTag, ip: IpAddr) -> Option<&mut T> {
        let s = self.slots.get_mut(tag.slot as usize)?;
        match &mut s.live {
            Some((a, ue)) if s.gen == tag.gen && *a == ip => Some(ue),
            _ => None,
        }
    }

    /// Adds the record `make(tag)` for `ip`, which has none; returns it with its tag.
    pub(super) fn insert_with(
        &mut self,
        ip: IpAddr,
        make: impl FnOnce(UeTag) -> Box<T>,
    ) -> (UeTag, &mut T) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot { gen: 1, live: None });
                // A worker holds far fewer than 2^32 UEs (its SA table's bound).
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        let tag = UeTag { slot, gen: s.gen };
        self.index.insert(ip, tag);
        let (_, ue) = s.live.insert((ip, make(tag)));
        (tag, ue)
    }

    /// Removes the record of `ip` (the worker removes by tag).
    #[cfg(test)]
    pub(super) fn remove(&mut self, ip: &IpAddr) -> Option<Box<T>> {
        let tag = self.find(ip)?;
        self.remove_at(tag)
    }

    /// Removes the record `tag` names, if its UE is still there. The slot's generation moves:
    /// every tag of this UE is stale from now on.
    pub(super) fn remove_at(&mut self, tag: UeTag) -> Option<Box<T>> {
        let s = self.slots.get_mut(tag.slot as usize)?;
        if s.gen != tag.gen {
            return None;
        }
        let (ip, ue) = s.live.take()?;
        // Never 0: `UeTag::NONE`'s generation.
        s.gen = s.gen.checked_add(1).unwrap_or(1);
        self.index.remove(&ip);
        self.free.push(tag.slot);
        Some(ue)
    }

    /// Every record.
    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots
            .iter()
            .filter_map(|s| s.live.as_ref().map(|(_, ue)| &**ue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn a_record_is_found_by_address_and_by_tag() {
        let mut u: Ues<u32> = Ues::new();
        let (a, _) = u.insert_with(ip(1), |_| Box::new(1));
        let (b, _) = u.insert_with(ip(2), |_| Box::new(2));
        assert_ne!(a, b);
        assert_eq!(u.len(), 2);
        assert_eq!(u.find(&ip(1)), Some(a));
        assert_eq!(u.get(&ip(2)), Some(&2));
        assert_eq!(u.at(a), Some(&1));
        assert_eq!(u.at_of(b, ip(2)).copied(), Some(2));
        // The right slot, the wrong address: nothing.
        assert_eq!(u.at_of(b, ip(1)), None);
        assert_eq!(u.at(UeTag::NONE), None);
        assert_eq!(u.values().sum::<u32>(), 3);
    }

    /// A tag kept past its UE's removal (an SA entry, a wheel entry) finds nothing, even
    /// when its slot holds another UE, or the same address again.
    #[test]
    fn a_stale_tag_never_reaches_the_slots_next_ue() {
        let mut u: Ues<u32> = Ues::new();
        let (old, _) = u.insert_with(ip(1), |_| Box::new(1));
        assert_eq!(u.remove(&ip(1)).as_deref(), Some(&1));
        assert_eq!(u.at(old), None);
        assert!(!u.contains_key(&ip(1)));
        let (new, _) = u.insert_with(ip(7), |_| Box::new(7));
        assert_eq!(new.to_parts().0, old.to_parts().0, "the slot is reused");
        assert_eq!(u.at(old), None);
        assert_eq!(u.at_mut(old), None);
        assert_eq!(u.at_of(old, ip(7)), None);
        assert!(u.remove_at(old).is_none());
        assert_eq!(u.at(new), Some(&7));
        // The same address back in the same slot: a new generation still.
        u.remove_at(new);
        let (again, _) = u.insert_with(ip(1), |_| Box::new(9));
        assert_eq!(u.at_of(old, ip(1)), None);
        assert_eq!(u.at_of(again, ip(1)).copied(), Some(9));
        let (s, g) = again.to_parts();
        assert_eq!(UeTag::from_parts(s, g), again);
    }

    #[test]
    fn the_tag_is_given_to_the_record_it_makes() {
        let mut u: Ues<UeTag> = Ues::new();
        let (t, rec) = u.insert_with(ip(3), Box::new);
        assert_eq!(*rec, t);
    }
}
