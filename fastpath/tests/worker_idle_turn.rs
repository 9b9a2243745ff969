//! A loop turn with nothing queued returns at once (round 25: the command channel's indices
//! read before a receive, the turn's tail skipping what has nothing to do), yet loses
//! nothing: what a command executed directly reported leaves at the next turn, and a command
//! queued on the channel is executed by the next turn.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

mod support;

use akagate_fastpath::ipc::{Flow, Transport, WorkerCommand, WorkerEvent};
use akagate_fastpath::worker::{InboundTable, Worker};
use akagate_sys::mempair::{mem_pair, MemPairConfig};
use akagate_sys::Port;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, Ipv4Cidr};
use support::worker_config;

const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// A send over TCP to a UE the worker does not know, without opening a connection: the
/// worker reports `ConnectFailed` for the flow and wakes no stack.
fn send_to_nobody() -> (Flow, WorkerCommand) {
    let flow = Flow {
        ue: IpAddr::from(Ipv4Addr::new(10, 0, 0, 9)),
        ue_port: 5060,
        local: LOCAL.into(),
        local_port: 5060,
        proto: Transport::Tcp,
    };
    let cmd = WorkerCommand::Send {
        flow,
        bytes: b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        connect_if_absent: false,
    };
    (flow, cmd)
}

#[test]
fn an_idle_turn_does_nothing_and_loses_no_event_or_command() {
    let (mut a, _b) = mem_pair(&MemPairConfig::default()).unwrap();
    let queue = a.take_queues().pop().unwrap();
    let table = Arc::new(InboundTable::with_capacity(64).unwrap());
    let (ev_tx, ev_rx) = crossbeam_channel::bounded(16);
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(16);
    let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
    let cfg = worker_config(0, mac, vec![Ipv4Cidr::new(LOCAL, 24)], vec![]);
    let mut now = Instant::from_millis(1_000);
    let mut w = Worker::new(cfg, queue, table, ev_tx, cmd_rx, now);
    for _ in 0..100 {
        now += Duration::from_micros(7);
        assert_eq!(w.run_once(now), 0, "an idle turn reports work");
    }
    assert!(ev_rx.try_recv().is_err());

    // Executed directly (the daemon's restore, the in-process gateway): its event is sent by
    // the next turn although the channel holds no command.
    let (flow, cmd) = send_to_nobody();
    w.command(cmd, now);
    assert!(
        ev_rx.try_recv().is_err(),
        "sent by the turn, not the command"
    );
    now += Duration::from_micros(7);
    assert_eq!(w.run_once(now), 0);
    assert!(matches!(ev_rx.try_recv(), Ok(WorkerEvent::ConnectFailed(f)) if f == flow));

    // Queued on the channel after idle turns: the next turn executes it and sends its event.
    let (flow, cmd) = send_to_nobody();
    cmd_tx.send(cmd).unwrap();
    now += Duration::from_micros(7);
    assert_eq!(w.run_once(now), 1, "the queued command");
    assert!(matches!(ev_rx.try_recv(), Ok(WorkerEvent::ConnectFailed(f)) if f == flow));
    assert_eq!(w.counters().get("commands"), Some(1));
    assert_eq!(w.run_once(now + Duration::from_micros(7)), 0);
    assert!(ev_rx.try_recv().is_err());
}
