//! Issue 11: the worker's inbound slab indexed by SPI. An inbound SA sits in the direct cell
//! of its SPI's table slot, so a packet's SA is found (and prefetched) from the SPI alone;
//! the cell's SPI is compared whole, so a stale generation or a forged SPI finds nothing; a
//! slot whose old SA still drains sends the new SA elsewhere, exactly; a worker that owns a
//! sparse share of the slots does not commit the whole range.

use akagate_fastpath::ipc::{OutboundSeq, SaSet};
use akagate_fastpath::sad::SpiLayout;
use akagate_fastpath::worker::{SaSetState, SaSlab, WorkerSas};
use rand::{Rng, SeedableRng};

mod support;

type Sa = [u64; 128];

fn direct_slab(slots: usize) -> SaSlab<Sa> {
    let mut s = SaSlab::default();
    s.set_direct(slots);
    assert!(s.direct_slots() as usize >= slots);
    s
}

#[test]
fn an_sa_sits_in_its_spis_slot_and_other_spis_find_nothing() {
    let layout = SpiLayout::for_capacity(4096).unwrap();
    let mut s = direct_slab(4096);
    let spi = layout.compose(77, 3);
    assert_eq!(s.insert_at(77, spi, [5; 128]), 77);
    assert_eq!(s.get_mut(77, spi).map(|sa| sa[0]), Some(5));
    // The same slot in another generation (a stale or a reissued SPI): nothing.
    for g in [1, 2, 4, layout.max_generation()] {
        assert!(s.get_mut(77, layout.compose(77, g)).is_none());
        assert!(!s.holds(77, layout.compose(77, g)));
    }
    // Random SPIs at their own direct slots: only the stored SPI is found, nothing panics.
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    for _ in 0..100_000 {
        let r: u32 = rng.gen();
        let slot = layout.slot(r) as u32;
        s.prefetch_cell(slot);
        assert_eq!(s.holds(slot, r), r == spi);
        assert_eq!(s.get_mut(slot, r).is_some(), r == spi);
    }
    // Removed: its SPI finds nothing either, and the slot takes the next SA in place.
    s.remove(77);
    assert!(s.get_mut(77, spi).is_none() && s.is_empty());
    let next = layout.compose(77, 4);
    assert_eq!(s.insert_at(77, next, [6; 128]), 77);
    assert!(s.get_mut(77, spi).is_none());
    assert_eq!(s.get_mut(77, next).map(|sa| sa[0]), Some(6));
}

#[test]
fn a_slot_whose_old_sa_still_drains_sends_the_new_one_above_the_direct_region() {
    let layout = SpiLayout::for_capacity(4096).unwrap();
    let mut s = direct_slab(4096);
    let old = layout.compose(9, 1);
    let new = layout.compose(9, 2);
    assert_eq!(s.insert_at(9, old, [1; 128]), 9);
    // The slot was reissued while the old SA drains: the new SA goes elsewhere, both found
    // by their own SPIs only.
    let moved = s.insert_at(9, new, [2; 128]);
    assert!(moved >= s.direct_slots(), "{moved}");
    assert_eq!(s.get_mut(9, old).map(|sa| sa[0]), Some(1));
    assert_eq!(s.get_mut(moved, new).map(|sa| sa[0]), Some(2));
    assert!(s.get_mut(9, new).is_none() && s.get_mut(moved, old).is_none());
    assert_eq!(s.len(), 2);
    // The drain ends; the moved SA stays where it is, and its overflow slot is reused.
    s.remove(9);
    assert_eq!(s.get_mut(moved, new).map(|sa| sa[0]), Some(2));
    s.remove(moved);
    assert!(s.is_empty());
    assert_eq!(s.insert(99, [3; 128]), moved);
}

#[test]
fn sparse_direct_slots_commit_a_bounded_number_of_segments() {
    let per = SaSlab::<Sa>::SEGMENT_SLOTS;
    let mut s = direct_slab(64 * per);
    // One SA in each of 64 segments' worth of slots (a worker owning 1 in `per` slots): the
    // slab opens a few direct segments, then sends the rest above the direct region.
    let mut placed = Vec::new();
    for k in 0..64u32 {
        let want = k * per as u32;
        let slot = s.insert_at(want, 1000 + k, [u64::from(k); 128]);
        placed.push(slot);
    }
    for (k, &slot) in placed.iter().enumerate() {
        assert_eq!(
            s.get_mut(slot, 1000 + k as u32).map(|sa| sa[0]),
            Some(k as u64)
        );
    }
    let direct = placed.iter().filter(|&&p| p < s.direct_slots()).count();
    assert!((1..=3).contains(&direct), "{direct} direct");
    // At most the direct segments the bound allows, and one for the overflow.
    assert!(s.segment_bytes() <= (direct + 1) * akagate_fastpath::sad::HUGE_PAGE);
    // A dense worker (every slot of the first segments) keeps all its SAs direct.
    let mut d = direct_slab(4 * per);
    for want in 0..(3 * per) as u32 {
        assert_eq!(d.insert_at(want, 5000 + want, [0; 128]), want);
    }
}

/// The bed's SA set (`support::sa_set`) with the P-CSCF's inbound SPIs `spi_pc`/`spi_ps`.
fn sa_set(spi_pc: u32, spi_ps: u32) -> SaSet {
    support::sa_set(
        "10.0.0.7".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        support::suite(),
        spi_pc,
        spi_ps,
    )
}

/// The worker's install puts the set's inbound SAs at their SPIs' slots, so the burst's
/// first prefetch (from the SPI) is their line; a set whose slots are still held by a
/// draining set goes elsewhere, and each table entry names where its SA really is.
#[test]
fn an_installed_set_s_inbound_sas_sit_at_their_spis_slots() {
    let layout = SpiLayout::for_capacity(1 << 16).unwrap();
    let mut sas = WorkerSas::default();
    sas.index_inbound_by_spi(layout, 1 << 16);
    let seq = OutboundSeq::of_epoch(0).unwrap();
    let (pc, ps) = (layout.compose(300, 1), layout.compose(301, 1));
    let (old, e_ps, e_pc) = SaSetState::build(&sa_set(pc, ps), seq, 0, &mut sas).unwrap();
    assert_eq!((e_pc.slot, e_ps.slot), (300, 301));
    assert_eq!(sas.direct_slot(pc), Some(300));
    assert!(sas.inbound.holds(300, pc) && sas.inbound.holds(301, ps));
    // The same slots reissued (next generation) while the old set drains.
    let (pc2, ps2) = (layout.compose(300, 2), layout.compose(301, 2));
    let (new, f_ps, f_pc) = SaSetState::build(&sa_set(pc2, ps2), seq, 0, &mut sas).unwrap();
    assert!(f_pc.slot >= sas.inbound.direct_slots() && f_ps.slot >= sas.inbound.direct_slots());
    assert!(sas.inbound.holds(f_pc.slot, pc2) && sas.inbound.holds(f_ps.slot, ps2));
    assert!(!sas.inbound.holds(300, pc2) && !sas.inbound.holds(301, ps2));
    old.release(&mut sas);
    assert!(!sas.inbound.holds(300, pc) && sas.inbound.holds(f_pc.slot, pc2));
    new.release(&mut sas);
    assert!(sas.inbound.is_empty());
}
