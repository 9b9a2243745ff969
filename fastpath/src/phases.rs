//! What each kind of work costs the worker, in time-stamp-counter ticks (cargo feature
//! `phase-tsc`; without it every call here is empty and [`stamp`] returns 0). Beside the
//! worker (`worker::phases` is this module) so that the per-UE stack can time the parts of
//! its poll too. The worker stamps
//! the start of a phase ([`stamp`]) and notes its kind at the end ([`note`]); each note keeps
//! the ticks of one instance, and [`table`] gives per kind the count, the median and the 90th
//! percentile. Medians of many instances stay meaningful on a loaded machine, where the
//! thread's CPU time of a whole run does not (a preemption inside one instance moves its tail,
//! not its median). Used by the mem bench (`cargo bench -p akagate-bench --bench mem
//! --features phase-tsc`, docs/BENCHMARKS.md *Worker per registration, round 7*).
//!
//! The ticks are wall-clock cycles of the constant-rate counter, not CPU time; instances are
//! kept per thread (one worker per thread).

/// The kinds of work timed, each one instance per frame, packet, poll, command or turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// An ARP or ND frame through the link layer (answers queued).
    FrameArp,
    /// A clear IP frame: link layer, owner, and its whole delivery (the `Clear*` below are
    /// inside it).
    FrameClear,
    /// An ESP frame's classification: link layer, owner, SPI lookup, SA prefetch (its
    /// decapsulation and delivery are `EspDecap` and `Esp*`).
    FrameEsp,
    /// Any other frame (dropped, handed off, fragments).
    FrameOther,
    /// One ESP packet's share of its group's burst decapsulation.
    EspDecap,
    /// A clear TCP SYN into its stack (the UE's state made, the listener armed).
    ClearSyn,
    /// A clear segment carrying data (or a UDP datagram) into its stack.
    ClearData,
    /// A clear pure ACK into its stack.
    ClearAck,
    /// A clear FIN or RST into its stack.
    ClearFin,
    /// A decapsulated SYN: selectors, its stack (the protected listener armed).
    EspSyn,
    /// A decapsulated segment carrying data (or a datagram).
    EspData,
    /// A decapsulated pure ACK.
    EspAck,
    /// A decapsulated FIN or RST.
    EspFin,
    /// One UE's poll: deadlines, smoltcp egress, SIP framing, events, rescheduling.
    Poll,
    /// One outbound ESP packet's share of the turn's encapsulation and framing.
    Encap,
    /// One frame's share of the turn's transmission to the port.
    TxFlush,
    /// A `Send` command (the message into the UE's connection).
    CmdSend,
    /// An `InstallSaSet` or `RestoreSaSet` command.
    CmdInstall,
    /// Any other command.
    CmdOther,
    /// A whole loop turn that did work (commands, handoff, burst, polls, transmission).
    Turn,
    /// Inside a UE poll: the SIP port's connection deadlines (`expire_conns`).
    PollDeadlines,
    /// Inside a UE poll: the connections serviced (SIP framing, events, keep-alives).
    PollService,
    /// Inside a UE poll: smoltcp's egress when it sent at least one packet (the packets'
    /// writing and their way to encapsulation or the port included).
    PollEgressSent,
    /// Inside a UE poll: smoltcp's egress when it sent nothing.
    PollEgressIdle,
    /// Inside a UE poll: closed connections reaped, idle sockets freed, the set compacted.
    PollCleanup,
    /// Inside a UE poll, after the stack: drained SA sets, the SIP-port recount, the next
    /// deadline into the timer wheel, the events forwarded.
    PollAfter,
    /// Per received burst: the prefetch passes (SPI table slots, the UEs' state).
    BurstPrefetch,
    /// Per received burst: the whole receive path (port, prefetch, classification,
    /// decapsulation, delivery, buffers freed).
    BurstRx,
    /// Per busy turn: the polls of the due and woken UEs, the timer wheel's expiry included.
    TurnPolls,
    /// Per busy turn: everything after the polls (encapsulation, buffer release, link-layer
    /// upkeep, transmission, counters).
    TurnTail,
}

impl Phase {
    /// Every kind, in [`Phase`] order.
    pub const ALL: [Phase; 30] = [
        Phase::FrameArp,
        Phase::FrameClear,
        Phase::FrameEsp,
        Phase::FrameOther,
        Phase::EspDecap,
        Phase::ClearSyn,
        Phase::ClearData,
        Phase::ClearAck,
        Phase::ClearFin,
        Phase::EspSyn,
        Phase::EspData,
        Phase::EspAck,
        Phase::EspFin,
        Phase::Poll,
        Phase::Encap,
        Phase::TxFlush,
        Phase::CmdSend,
        Phase::CmdInstall,
        Phase::CmdOther,
        Phase::Turn,
        Phase::PollDeadlines,
        Phase::PollService,
        Phase::PollEgressSent,
        Phase::PollEgressIdle,
        Phase::PollCleanup,
        Phase::PollAfter,
        Phase::BurstPrefetch,
        Phase::BurstRx,
        Phase::TurnPolls,
        Phase::TurnTail,
    ];

    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Phase::FrameArp => "frame: ARP/ND",
            Phase::FrameClear => "frame: clear IP (with its delivery)",
            Phase::FrameEsp => "frame: ESP classification",
            Phase::FrameOther => "frame: other",
            Phase::EspDecap => "ESP decapsulation, per packet",
            Phase::ClearSyn => "clear SYN into its stack",
            Phase::ClearData => "clear data segment into its stack",
            Phase::ClearAck => "clear pure ACK into its stack",
            Phase::ClearFin => "clear FIN/RST into its stack",
            Phase::EspSyn => "protected SYN into its stack",
            Phase::EspData => "protected data segment into its stack",
            Phase::EspAck => "protected pure ACK into its stack",
            Phase::EspFin => "protected FIN/RST into its stack",
            Phase::Poll => "UE poll",
            Phase::Encap => "ESP encapsulation + framing, per packet",
            Phase::TxFlush => "transmission to the port, per frame",
            Phase::CmdSend => "command: Send",
            Phase::CmdInstall => "command: InstallSaSet",
            Phase::CmdOther => "command: other",
            Phase::Turn => "whole busy loop turn",
            Phase::PollDeadlines => "  poll: SIP-port deadlines",
            Phase::PollService => "  poll: connections serviced",
            Phase::PollEgressSent => "  poll: egress, sent",
            Phase::PollEgressIdle => "  poll: egress, nothing sent",
            Phase::PollCleanup => "  poll: reap and compact",
            Phase::PollAfter => "  poll: after the stack",
            Phase::BurstPrefetch => "  burst: prefetch passes",
            Phase::BurstRx => "  burst: whole receive path",
            Phase::TurnPolls => "  turn: polls",
            Phase::TurnTail => "  turn: after the polls",
        }
    }
}

/// What a delivered inner segment is, for its [`Phase`]: SYN, FIN or RST, data, pure ACK.
pub fn segment_phase(pkt: &[u8], ip: &crate::wire::IpRepr, protected: bool) -> Phase {
    let kind = match ip.next_header {
        6 => {
            let off = ip.payload_offset;
            let flags = pkt.get(off + 13).copied().unwrap_or(0);
            let doff = pkt.get(off + 12).map_or(20, |b| usize::from(b >> 4) * 4);
            let data = ip.len.saturating_sub(off + doff);
            if flags & 0x02 != 0 {
                0
            } else if flags & 0x05 != 0 {
                3
            } else if data > 0 {
                1
            } else {
                2
            }
        }
        _ => 1,
    };
    match (protected, kind) {
        (false, 0) => Phase::ClearSyn,
        (false, 1) => Phase::ClearData,
        (false, 2) => Phase::ClearAck,
        (false, _) => Phase::ClearFin,
        (true, 0) => Phase::EspSyn,
        (true, 1) => Phase::EspData,
        (true, 2) => Phase::EspAck,
        (true, _) => Phase::EspFin,
    }
}

/// One row of [`table`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseRow {
    /// The kind.
    pub phase: Phase,
    /// Instances noted.
    pub count: u64,
    /// Median ticks per instance.
    pub median: u64,
    /// 90th-percentile ticks per instance.
    pub p90: u64,
    /// Mean ticks per instance (a preempted instance counts whole: under load, an upper
    /// figure).
    pub mean: u64,
}

#[cfg(feature = "phase-tsc")]
mod on {
    use super::{Phase, PhaseRow};
    use core::cell::RefCell;

    /// Instances kept per kind at most (the first ones: enough for stable medians).
    const KEEP: usize = 1 << 20;

    thread_local! {
        static TICKS: RefCell<[Vec<u32>; Phase::ALL.len()]> =
            const { RefCell::new([const { Vec::new() }; Phase::ALL.len()]) };
    }

    /// The counter now.
    #[inline(always)]
    pub fn stamp() -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: RDTSC reads the time-stamp counter; it has no memory effects and every
            // x86-64 CPU has it.
            unsafe { core::arch::x86_64::_rdtsc() }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            0
        }
    }

    /// Notes one instance of `phase` that started at `t0`, `n` times at an n-th of its ticks
    /// each (a group's share per packet).
    pub fn note_n(phase: Phase, t0: u64, n: usize) {
        if n == 0 {
            return;
        }
        let each = stamp().saturating_sub(t0) / n as u64;
        TICKS.with(|t| {
            if let Ok(mut t) = t.try_borrow_mut() {
                if let Some(v) = t.get_mut(phase as usize) {
                    let room = KEEP.saturating_sub(v.len()).min(n);
                    v.extend(core::iter::repeat_n(
                        u32::try_from(each).unwrap_or(u32::MAX),
                        room,
                    ));
                }
            }
        });
    }

    /// Forgets every instance noted on this thread.
    pub fn reset() {
        TICKS.with(|t| {
            if let Ok(mut t) = t.try_borrow_mut() {
                t.iter_mut().for_each(Vec::clear);
            }
        });
    }

    /// Count, median and 90th percentile per kind noted on this thread.
    pub fn table() -> Vec<PhaseRow> {
        TICKS.with(|t| {
            let Ok(mut t) = t.try_borrow_mut() else {
                return Vec::new();
            };
            Phase::ALL
                .iter()
                .zip(t.iter_mut())
                .filter(|(_, v)| !v.is_empty())
                .map(|(&phase, v)| {
                    v.sort_unstable();
                    let at = |q: usize| u64::from(v.get(v.len() * q / 100).copied().unwrap_or(0));
                    let sum: u64 = v.iter().map(|&x| u64::from(x)).sum();
                    PhaseRow {
                        phase,
                        count: v.len() as u64,
                        median: at(50),
                        p90: at(90),
                        mean: sum / v.len() as u64,
                    }
                })
                .collect()
        })
    }
}

#[cfg(feature = "phase-tsc")]
pub use on::{reset, stamp, table};

/// Notes one instance of `phase` that started at `t0` ([`stamp`]).
#[inline(always)]
pub fn note(phase: Phase, t0: u64) {
    note_n(phase, t0, 1);
}

/// Notes `n` instances of `phase` sharing the ticks since `t0` equally.
#[inline(always)]
pub fn note_n(phase: Phase, t0: u64, n: usize) {
    #[cfg(feature = "phase-tsc")]
    on::note_n(phase, t0, n);
    #[cfg(not(feature = "phase-tsc"))]
    let _ = (phase, t0, n);
}

/// The counter now (0 without the `phase-tsc` feature).
#[cfg(not(feature = "phase-tsc"))]
#[inline(always)]
pub fn stamp() -> u64 {
    0
}

/// Forgets every instance noted on this thread (nothing without the feature).
#[cfg(not(feature = "phase-tsc"))]
pub fn reset() {}

/// Count, median and 90th percentile per kind (empty without the feature).
#[cfg(not(feature = "phase-tsc"))]
pub fn table() -> Vec<PhaseRow> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Direction, IpRepr};

    fn tcp(flags: u8, data: usize) -> Vec<u8> {
        let len = 40 + data;
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[10, 0, 0, 1]);
        let ck = !crate::wire::checksum::ones_complement_sum(&p[..20]);
        p[10..12].copy_from_slice(&ck.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p
    }

    #[test]
    fn every_kind_is_listed_once_at_its_own_index() {
        // The table keeps each kind's ticks at index `phase as usize` and names rows from
        // `ALL`: a kind left out or out of order would be printed under another's name.
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i, "{}", p.name());
        }
        let mut names: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Phase::ALL.len(), "names are distinct");
    }

    #[test]
    fn segments_are_told_apart_by_flags_and_payload() {
        let cases = [
            (0x02, 0, Phase::ClearSyn, Phase::EspSyn),
            (0x12, 0, Phase::ClearSyn, Phase::EspSyn),
            (0x10, 0, Phase::ClearAck, Phase::EspAck),
            (0x18, 300, Phase::ClearData, Phase::EspData),
            (0x11, 0, Phase::ClearFin, Phase::EspFin),
            (0x04, 0, Phase::ClearFin, Phase::EspFin),
        ];
        for (flags, data, clear, esp) in cases {
            let p = tcp(flags, data);
            let ip = IpRepr::from_bytes(&p, Direction::Inbound).expect("valid header");
            assert_eq!(segment_phase(&p, &ip, false), clear, "flags {flags:#x}");
            assert_eq!(segment_phase(&p, &ip, true), esp, "flags {flags:#x}");
        }
    }

    #[cfg(feature = "phase-tsc")]
    #[test]
    fn the_table_gives_count_median_and_tail() {
        reset();
        for _ in 0..9 {
            note(Phase::Poll, stamp());
        }
        note_n(Phase::Encap, stamp().saturating_sub(4000), 4);
        let t = table();
        let poll = t
            .iter()
            .find(|r| r.phase == Phase::Poll)
            .expect("polls noted");
        assert_eq!(poll.count, 9);
        let encap = t
            .iter()
            .find(|r| r.phase == Phase::Encap)
            .expect("encap noted");
        assert_eq!(encap.count, 4);
        assert!(
            encap.median >= 1000,
            "each a quarter of at least 4000 ticks"
        );
        assert!(t.iter().all(|r| r.phase != Phase::Turn));
        reset();
        assert!(table().is_empty());
    }
}
