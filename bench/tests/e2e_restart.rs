//! Issue 14: registrations and their SA sets survive a restart of the real daemon (memory
//! backend). Two UEs register (UDP and TCP), the daemon stops and starts again on the same
//! state files, and the UDP UE, without registering again, calls the TCP UE through the SAs
//! both already have: the restored sets carry the INVITE in and out (the TCP UE's own
//! connection to port_ps is gone with the old daemon's stacks; the simulator does not open a
//! new one by itself, which the independent UE in `tests/interop` does).

mod common;

use akagate_bench::daemon::{start_memory_daemon, MemoryDaemon};
use akagate_bench::fleet::Fleet;
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use common::scenarios::*;
use common::*;

#[test]
fn registered_ues_keep_calling_through_their_sas_after_a_restart() {
    let mut bed = Bed::daemon();
    let dir = match &bed.pcscf {
        Pcscf::Daemon { handle, .. } => handle.sqn_state().unwrap().parent().unwrap().to_owned(),
        Pcscf::Inline(_) => unreachable!(),
    };
    let pair = (AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    let a = bed.add_ue(0, false, Transport::Udp, pair, 0);
    let b = bed.add_ue(1, false, Transport::Tcp, pair, 0);
    bed.register(a);
    bed.register(b);
    assert_eq!(bed.registered(), 2);
    let spis = |bed: &Bed, i: usize| bed.ue(i).config().sec.spi_us;
    let before = (spis(&bed, a), spis(&bed, b));

    // Restart on the same subscriber, SQN and registration files; the UEs keep their state.
    let clock = match std::mem::replace(&mut bed.pcscf, Pcscf::Inline(Box::new(gateway()))) {
        Pcscf::Daemon { handle, clock } => {
            handle.shutdown().unwrap();
            clock
        }
        Pcscf::Inline(_) => unreachable!(),
    };
    let MemoryDaemon { handle, queue } =
        start_memory_daemon(&dir, &dir.join("subscribers.toml"), 1, 1024).unwrap();
    let s = handle.stats();
    assert_eq!(s.slowpath.registrations_restored, 2);
    assert_eq!(s.slowpath.registrations_not_restored, 0);
    assert_eq!(
        s.workers
            .iter()
            .map(|w| w.get("drop_sa_install").unwrap())
            .sum::<u64>(),
        0
    );
    let old = std::mem::replace(&mut bed.fleet, Fleet::new(queue));
    for ue in old.into_ues() {
        bed.fleet.add(ue);
    }
    bed.pcscf = Pcscf::Daemon {
        handle: Box::new(handle),
        clock,
    };
    assert_eq!(bed.registered(), 2, "registered without a new REGISTER");

    // UDP UE -> TCP UE: the INVITE arrives through a's restored spi_ps and reaches b on a new
    // connection from port_pc under b's restored spi_us.
    one_call(&mut bed, a, b, 1, None, Transport::Tcp);
    // Again, on the connection the restarted daemon opened.
    one_call(&mut bed, a, b, 2, None, Transport::Tcp);
    assert_eq!((spis(&bed, a), spis(&bed, b)), before, "no new SAs");
    assert!(
        !bed.events[a]
            .iter()
            .chain(&bed.events[b])
            .any(|e| matches!(e, akagate_bench::ue::UeEvent::Reregistered)),
        "nobody registered again"
    );
}

/// A placeholder P-CSCF while the daemon restarts (never stepped).
fn gateway() -> akagate_bench::gateway::InProcessGateway<akagate_sys::mempair::MemQueue> {
    match Bed::new().pcscf {
        Pcscf::Inline(gw) => *gw,
        Pcscf::Daemon { .. } => unreachable!(),
    }
}
