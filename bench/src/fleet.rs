//! Many simulated UEs behind one port queue: frames are handed to the UE they are addressed
//! to (by MAC, or by ARP/ND target for broadcast and multicast), and only UEs with input or a
//! due deadline are polled. A step costs what it does, not the number of UEs: UEs with input
//! or a command wait in a ready list, the others in a heap of poll deadlines, so 100,000 idle
//! UEs cost no more per step than 10,000 (docs/BENCHMARKS.md).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use akagate_sys::{PacketBuf, PortQueue};
use smoltcp::time::Instant;

use crate::ue::Ue;

/// Frames received per rx burst.
const BURST: usize = 64;
/// When a UE has nothing scheduled, it is looked at again after this long (it is polled at
/// once on input or a command anyway).
const IDLE_POLL: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(3600);
/// Heap entries superseded by a newer deadline stay until they come due; the heap is rebuilt
/// from the live deadlines when it holds this many times more entries than UEs.
const HEAP_SLACK: usize = 2;

/// Counters of the fleet's own I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetCounters {
    /// Frames no UE claimed.
    pub unclaimed: u64,
    /// Times transmission paused because no buffer was free (the frames waited).
    pub tx_no_buffer: u64,
    /// Frames larger than a buffer.
    pub tx_too_big: u64,
    /// Frames handed to the port.
    pub tx_frames: u64,
}

/// UEs sharing one port queue.
pub struct Fleet<Q: PortQueue> {
    q: Q,
    ues: Vec<Ue>,
    by_mac: HashMap<[u8; 6], usize>,
    by_ip: HashMap<IpAddr, usize>,
    /// Each UE's poll deadline; `None` exactly while it waits in `ready`.
    next_poll: Vec<Option<Instant>>,
    /// UEs to poll at the next step (input or a command since their last poll), each once.
    ready: Vec<usize>,
    /// Deadlines as (time, UE); an entry counts only while it equals the UE's `next_poll`.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// UEs being polled this step (swapped with `ready`).
    polling: Vec<usize>,
    rx: Vec<PacketBuf>,
    tx: Vec<PacketBuf>,
    frames: Vec<Vec<u8>>,
    counters: FleetCounters,
    capture: Option<Vec<Captured>>,
}

/// A frame seen on the fleet's port, for tests that inspect the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// True if a UE sent it, false if it arrived for the UEs.
    pub from_ue: bool,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

impl<Q: PortQueue> core::fmt::Debug for Fleet<Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fleet")
            .field("ues", &self.ues.len())
            .finish_non_exhaustive()
    }
}

/// The address an ARP request or IPv6 Neighbor Solicitation asks for.
fn solicited_target(frame: &[u8]) -> Option<IpAddr> {
    match frame.get(12..14)? {
        [0x08, 0x06] => {
            let t: [u8; 4] = frame.get(38..42)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(t)))
        }
        // IPv6, ICMPv6 type 135 (NS): target after the 8-byte ICMPv6 header.
        [0x86, 0xdd] if frame.get(20) == Some(&58) && frame.get(54) == Some(&135) => {
            let t: [u8; 16] = frame.get(62..78)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(t)))
        }
        _ => None,
    }
}

impl<Q: PortQueue> Fleet<Q> {
    /// An empty fleet on `q`.
    pub fn new(q: Q) -> Self {
        Fleet {
            q,
            ues: Vec::new(),
            by_mac: HashMap::new(),
            by_ip: HashMap::new(),
            next_poll: Vec::new(),
            ready: Vec::new(),
            timers: BinaryHeap::new(),
            polling: Vec::new(),
            rx: Vec::with_capacity(BURST),
            tx: Vec::new(),
            frames: Vec::new(),
            counters: FleetCounters::default(),
            capture: None,
        }
    }

    /// Adds a UE; returns its index.
    pub fn add(&mut self, ue: Ue) -> usize {
        let i = self.ues.len();
        self.by_mac.insert(ue.mac().0, i);
        self.by_ip.insert(ue.ip(), i);
        self.ues.push(ue);
        self.next_poll.push(None);
        self.ready.push(i);
        i
    }

    /// Puts UE `i` on the ready list (once) for the next step.
    fn make_ready(&mut self, i: usize) {
        if let Some(p) = self.next_poll.get_mut(i) {
            if p.take().is_some() {
                self.ready.push(i);
            }
        }
    }

    /// Number of UEs.
    pub fn len(&self) -> usize {
        self.ues.len()
    }

    /// True if there are no UEs.
    pub fn is_empty(&self) -> bool {
        self.ues.is_empty()
    }

    /// UE `i`.
    pub fn ue(&self, i: usize) -> Option<&Ue> {
        self.ues.get(i)
    }

    /// UE `i` for commands (register, call, ...); it is polled at the next step.
    pub fn ue_mut(&mut self, i: usize) -> Option<&mut Ue> {
        self.make_ready(i);
        let ue = self.ues.get_mut(i)?;
        Some(ue)
    }

    /// All UEs.
    pub fn ues(&self) -> &[Ue] {
        &self.ues
    }

    /// Takes the UEs out, in order (e.g. to move them to another port, as phones stay
    /// registered while the P-CSCF restarts).
    pub fn into_ues(self) -> Vec<Ue> {
        self.ues
    }

    /// Starts recording every frame sent and received (unbounded: for tests only).
    pub fn enable_capture(&mut self) {
        self.capture.get_or_insert_with(Vec::new);
    }

    /// The frames recorded since [`Fleet::enable_capture`], in order.
    pub fn captured(&self) -> &[Captured] {
        self.capture.as_deref().unwrap_or(&[])
    }

    /// The fleet's I/O counters.
    pub fn counters(&self) -> FleetCounters {
        self.counters
    }

    fn deliver(&mut self, i: usize, frame: &[u8], now: Instant) {
        if let Some(ue) = self.ues.get_mut(i) {
            ue.handle_frame(frame, now);
            self.make_ready(i);
        }
    }

    /// Rebuilds the deadline heap from the UEs' deadlines, dropping superseded entries.
    fn rebuild_timers(&mut self) {
        let live =
            (self.next_poll.iter().enumerate()).filter_map(|(i, p)| p.map(|at| Reverse((at, i))));
        self.timers = live.collect();
    }

    /// Number of UEs that will be polled at the next step for input or a command (not
    /// counting deadlines that come due by then).
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// One round: receive and dispatch frames, poll UEs that are due, transmit their frames.
    /// `on_poll(i, ue)` runs after each polled UE (to collect its events). Returns the work done.
    pub fn step(&mut self, now: Instant, mut on_poll: impl FnMut(usize, &mut Ue)) -> usize {
        let mut work = 0;
        loop {
            let mut rx = std::mem::take(&mut self.rx);
            let n = self.q.rx_burst(&mut rx, BURST);
            for b in rx.drain(..) {
                let frame = b.data();
                if let Some(c) = self.capture.as_mut() {
                    c.push(Captured {
                        from_ue: false,
                        frame: frame.to_vec(),
                    });
                }
                let dst: Option<[u8; 6]> = frame.get(..6).and_then(|d| d.try_into().ok());
                let unicast = dst.is_some_and(|d| d[0] & 1 == 0);
                let target = if unicast {
                    dst.and_then(|d| self.by_mac.get(&d).copied())
                } else {
                    solicited_target(frame).and_then(|ip| self.by_ip.get(&ip).copied())
                };
                match target {
                    Some(i) => {
                        let f = frame.to_vec();
                        self.deliver(i, &f, now);
                    }
                    None => self.counters.unclaimed += 1,
                }
                self.q.free(b);
            }
            self.rx = rx;
            work += n;
            if n < BURST {
                break;
            }
        }
        // Deadlines that came: the UEs join the ready list (stale entries are skipped).
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.next_poll[i] == Some(at) {
                self.make_ready(i);
            }
        }
        // The ready list is taken whole; `ready` gets the (empty) spare vector back.
        let mut polling = std::mem::take(&mut self.polling);
        std::mem::swap(&mut polling, &mut self.ready);
        for &i in &polling {
            let ue = &mut self.ues[i];
            ue.poll(now);
            ue.drain_frames(&mut self.frames);
            on_poll(i, ue);
            let at = ue.poll_at(now).unwrap_or(now + IDLE_POLL);
            self.next_poll[i] = Some(at);
            self.timers.push(Reverse((at, i)));
            work += 1;
        }
        polling.clear();
        self.polling = polling;
        if self.timers.len() > HEAP_SLACK * self.ues.len() + 1024 {
            self.rebuild_timers();
        }
        if let Some(c) = self.capture.as_mut() {
            c.extend(self.frames.iter().map(|f| Captured {
                from_ue: true,
                frame: f.clone(),
            }));
        }
        // Frames wait here while the pool is empty (the peer holds the buffers) rather than
        // being dropped: a loss would cost the UE a TCP retransmission timeout.
        let mut sent = 0;
        for f in &self.frames {
            let Some(mut b) = self.q.alloc() else {
                self.counters.tx_no_buffer += 1;
                break;
            };
            sent += 1;
            if b.fill(f).is_err() {
                self.counters.tx_too_big += 1;
                self.q.free(b);
                continue;
            }
            self.tx.push(b);
        }
        self.frames.drain(..sent);
        if !self.tx.is_empty() {
            let n = self.q.tx_burst(&mut self.tx);
            self.counters.tx_frames += n as u64;
            work += n;
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pktgen::establish::make_ue;
    use akagate_fastpath::esp::{AuthAlg, EncrAlg};
    use akagate_slowpath::hss::{generate_subscribers, Plmn};
    use akagate_sys::mempair::{mem_pair, MemPairConfig};
    use akagate_sys::Port;

    fn t(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Steps at `now` and returns the UEs polled, in order.
    fn polled<Q: PortQueue>(f: &mut Fleet<Q>, now: Instant) -> Vec<usize> {
        let mut v = Vec::new();
        f.step(now, |i, _| v.push(i));
        v
    }

    #[test]
    fn only_ready_and_due_ues_are_polled() {
        let (_a, mut b) = mem_pair(&MemPairConfig::default()).unwrap();
        let mut f = Fleet::new(b.take_queues().pop().unwrap());
        let pcscf = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        for (i, rec) in generate_subscribers(50, 7, Plmn::default())
            .iter()
            .enumerate()
        {
            let ue = make_ue(i, rec, pcscf, false, AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
            f.add(ue.unwrap());
        }
        // New UEs are polled once, then nothing is due.
        assert_eq!(polled(&mut f, t(0)), (0..50).collect::<Vec<_>>());
        assert!(polled(&mut f, t(1)).is_empty());
        // A command makes one UE ready, once however often it is touched.
        f.ue_mut(7);
        f.ue_mut(7);
        assert_eq!(f.ready_len(), 1);
        assert_eq!(polled(&mut f, t(2)), vec![7]);
        // UE 9 starts registering: its SYN waits for an answer that never comes, so it is
        // polled again when smoltcp's retransmission timer is due, not before.
        f.ue_mut(9).unwrap().register(t(3)).unwrap();
        let mut due = None;
        f.step(t(3), |i, ue| due = Some((i, ue.poll_at(t(3)))));
        let Some((9, Some(due))) = due else {
            panic!("UE 9 alone polled, with a retransmission deadline: {due:?}");
        };
        assert!(due > t(3));
        // What it sent is counted (the memory backend rings the daemon's frame bell on it).
        assert!(f.counters().tx_frames >= 1, "{:?}", f.counters());
        assert!(polled(&mut f, due - smoltcp::time::Duration::from_millis(1)).is_empty());
        assert_eq!(polled(&mut f, due), vec![9]);
        // Superseded deadlines do not pile up: the heap is bounded by the UEs.
        for ms in 0..200 {
            f.ue_mut(ms % 50);
            polled(
                &mut f,
                due + smoltcp::time::Duration::from_millis(ms as u64),
            );
        }
        assert!(f.timers.len() <= HEAP_SLACK * f.len() + 1024);
    }
}
