//! `InstallSaSet` for a new UE that the SA table refuses: the UE's stack, created for the set,
//! does not stay behind (it was neither scheduled nor freed); the table entries name their
//! UE by a tag that a reused slot does not repeat.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

mod support;

use akagate_fastpath::ipc::{SaSet, WorkerCommand};
use akagate_fastpath::sad::SpiAllocator;
use akagate_fastpath::worker::{InboundTable, UeTag, Worker};
use akagate_sys::mempair::{mem_pair, MemPairConfig};
use akagate_sys::Port;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use support::{suite, worker_config};

const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn set(ue: IpAddr, spi_pc: u32, spi_ps: u32) -> Box<SaSet> {
    Box::new(SaSet {
        ue,
        local: LOCAL.into(),
        suite: suite(),
        spi_pc,
        spi_ps,
        spi_uc: 0x1001,
        spi_us: 0x1002,
        port_pc: 5064,
        port_ps: 5066,
        port_uc: 6000,
        port_us: 6001,
    })
}

#[test]
fn a_new_ue_whose_set_the_table_refuses_is_freed() {
    let (mut a, _b) = mem_pair(&MemPairConfig::default()).unwrap();
    let queue = a.take_queues().pop().unwrap();
    let table = Arc::new(InboundTable::with_capacity(64).unwrap());
    let (ev_tx, _ev_rx) = crossbeam_channel::bounded(16);
    let (_cmd_tx, cmd_rx) = crossbeam_channel::bounded(16);
    let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
    let cfg = worker_config(0, mac, vec![Ipv4Cidr::new(LOCAL, 24)], vec![]);
    let mut now = Instant::from_millis(1_000);
    let mut w = Worker::new(cfg, queue, table.clone(), ev_tx, cmd_rx, now);
    let (spi_pc, spi_ps) = (table.allocate().unwrap(), table.allocate().unwrap());
    let first: IpAddr = Ipv4Addr::new(10, 0, 0, 7).into();
    w.command(WorkerCommand::InstallSaSet(set(first, spi_pc, spi_ps)), now);
    assert!(w.has_ue(&first));

    // The same SPIs again, for another UE: the table refuses spi_ps (and, with a fresh
    // spi_ps, spi_pc), so the UE created for the set must not stay behind.
    let second: IpAddr = Ipv4Addr::new(10, 0, 0, 8).into();
    let fresh_ps = table.allocate().unwrap();
    for (pc, ps) in [(spi_pc, spi_ps), (spi_pc, fresh_ps)] {
        w.command(WorkerCommand::InstallSaSet(set(second, pc, ps)), now);
        for _ in 0..3 {
            now += Duration::from_millis(5);
            w.run_once(now);
        }
        assert!(!w.has_ue(&second), "UE left behind by a failed install");
        assert_eq!(w.ue_count(), 1);
    }
    assert_eq!(w.counters().get("drop_sa_install"), Some(2));
    assert_eq!(w.counters().get("ues_freed"), Some(2));
    // The spi_ps installed before spi_pc was refused was taken out again.
    assert!(table.remove(fresh_ps).is_err(), "rolled back");
    assert!(w.has_ue(&first));
}

/// An installed set's table entries name the UE's record (the owner an ESP packet reaches it
/// by, without the UE map); once that UE is gone, the next UE in its slot gets another tag,
/// so an entry kept from the first never reaches the second.
#[test]
fn the_entries_name_their_ue_and_a_reused_slot_gets_a_new_tag() {
    let (mut a, _b) = mem_pair(&MemPairConfig::default()).unwrap();
    let queue = a.take_queues().pop().unwrap();
    let table = Arc::new(InboundTable::with_capacity(64).unwrap());
    let (ev_tx, _ev_rx) = crossbeam_channel::bounded(64);
    let (_cmd_tx, cmd_rx) = crossbeam_channel::bounded(16);
    let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
    let cfg = worker_config(0, mac, vec![Ipv4Cidr::new(LOCAL, 24)], vec![]);
    let mut now = Instant::from_millis(1_000);
    let mut w = Worker::new(cfg, queue, table.clone(), ev_tx, cmd_rx, now);
    let first: IpAddr = Ipv4Addr::new(10, 0, 0, 7).into();
    let (pc1, ps1) = (table.allocate().unwrap(), table.allocate().unwrap());
    w.command(WorkerCommand::InstallSaSet(set(first, pc1, ps1)), now);
    let owner = table.lookup(ps1).unwrap().owner;
    assert_ne!(owner, UeTag::NONE);
    assert_eq!(table.lookup(pc1).unwrap().owner, owner, "one UE, one tag");

    // The set removed and drained (nothing queued): the UE is freed at its poll.
    w.command(
        WorkerCommand::RemoveSaSet {
            ue: first,
            spi_pc: pc1,
            spi_ps: ps1,
        },
        now,
    );
    for _ in 0..3 {
        now += Duration::from_millis(5);
        w.run_once(now);
    }
    assert!(!w.has_ue(&first));

    let second: IpAddr = Ipv4Addr::new(10, 0, 0, 8).into();
    let (pc2, ps2) = (table.allocate().unwrap(), table.allocate().unwrap());
    w.command(WorkerCommand::InstallSaSet(set(second, pc2, ps2)), now);
    let next = table.lookup(ps2).unwrap().owner;
    assert_eq!(
        next.to_parts().0,
        owner.to_parts().0,
        "the freed slot is reused"
    );
    assert_ne!(next, owner, "a stale tag must not name the slot's next UE");
}
