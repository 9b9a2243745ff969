//! Establishing the UEs a blast impersonates: N simulated UEs register through the gateway
//! (IMS-AKA, SAs, the protected TCP connection port_uc -> port_ps), then each UE's state is
//! snapshotted: its outbound spi_ps SA (next sequence number) and the next TCP segment its
//! stack would send on that connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::SubscriberRecord;
use akagate_sys::{PacketBuf, PortQueue, QueueCounters};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

use super::segments::TcpTemplate;
use super::PktgenError;
use crate::fleet::Fleet;
use crate::ue::usim::usim_for;
use crate::ue::{Ue, UeConfig, UeEvent};

/// A port queue lent to a [`Fleet`] for the registration phase; it notes the Ethernet
/// source address of received IP frames (the gateway's MAC, for the pre-built frames).
pub struct Lent<'a, Q: PortQueue> {
    q: &'a mut Q,
    counters: Arc<QueueCounters>,
    peer_mac: Arc<Mutex<Option<[u8; 6]>>>,
}

impl<'a, Q: PortQueue> Lent<'a, Q> {
    /// Lends `q`; `peer_mac` receives the source MAC of IPv4/IPv6 frames seen.
    pub fn new(q: &'a mut Q, peer_mac: Arc<Mutex<Option<[u8; 6]>>>) -> Self {
        let counters = q.counters().clone();
        Lent {
            q,
            counters,
            peer_mac,
        }
    }
}

impl<Q: PortQueue> PortQueue for Lent<'_, Q> {
    fn queue_id(&self) -> usize {
        self.q.queue_id()
    }
    fn rx_burst(&mut self, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let start = out.len();
        let n = self.q.rx_burst(out, max);
        for b in out.iter().skip(start) {
            let f = b.data();
            if matches!(f.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd])) {
                if let (Some(src), Ok(mut m)) = (f.get(6..12), self.peer_mac.lock()) {
                    let mut a = [0u8; 6];
                    a.copy_from_slice(src);
                    *m = Some(a);
                }
            }
        }
        n
    }
    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>) -> usize {
        self.q.tx_burst(pkts)
    }
    fn alloc(&mut self) -> Option<PacketBuf> {
        self.q.alloc()
    }
    fn free(&mut self, buf: PacketBuf) {
        self.q.free(buf)
    }
    fn counters(&self) -> &Arc<QueueCounters> {
        &self.counters
    }
}

/// The address of pktgen UE `i` (IPv4 10.1.0.0/16 upwards, IPv6 fd00::1:0/112 upwards).
pub fn ue_addr(i: usize, v6: bool) -> IpAddr {
    let n = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(2);
    if v6 {
        let [a, b, c, d] = n.to_be_bytes();
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            1,
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
        ))
    } else {
        let [_, b, c, d] = n.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(10, 1 + b, c, d))
    }
}

/// The Ethernet address of pktgen UE `i`.
pub fn ue_mac(i: usize) -> EthernetAddress {
    let n = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
    EthernetAddress([0x02, 0x01, n[0], n[1], n[2], n[3]])
}

/// Builds UE `i` for subscriber `rec`, offering only (`alg`, `ealg`).
pub fn make_ue(
    i: usize,
    rec: &SubscriberRecord,
    pcscf: IpAddr,
    ipv6: bool,
    alg: AuthAlg,
    ealg: EncrAlg,
) -> Result<Ue, PktgenError> {
    let usim = usim_for(rec).map_err(|e| PktgenError::Setup(e.to_string()))?;
    let impu = rec
        .impu
        .iter()
        .find(|u| u.starts_with("sip:"))
        .or(rec.impu.first())
        .cloned()
        .ok_or_else(|| PktgenError::Setup(format!("{}: no IMPU", rec.impi)))?;
    let mut uc = UeConfig::new(ue_mac(i), ue_addr(i, ipv6), pcscf, &rec.impi, &impu);
    uc.prefix_len = if ipv6 { 64 } else { 8 };
    uc.offers = vec![(alg, ealg)];
    Ue::new(uc, usim, Instant::from_micros(0)).map_err(|e| PktgenError::Setup(e.to_string()))
}

/// Registers every UE of `fleet` (at most `concurrency` at a time) on real time, stepping
/// `gateway` (an in-thread gateway, or nothing for one on other threads) in between; then
/// keeps stepping for `settle` so delayed ACKs have left. Returns the registered UEs.
pub fn register_all<Q: PortQueue>(
    fleet: &mut Fleet<Q>,
    concurrency: usize,
    timeout: std::time::Duration,
    settle: std::time::Duration,
    clock: &dyn Fn() -> Instant,
    mut gateway: impl FnMut(Instant) -> usize,
) -> Result<Vec<usize>, PktgenError> {
    let n = fleet.len();
    let (mut next, mut in_flight, mut done) = (0usize, 0usize, 0usize);
    let mut registered = Vec::with_capacity(n);
    let mut failures: Vec<String> = Vec::new();
    let start = std::time::Instant::now();
    let mut settled_at: Option<std::time::Instant> = None;
    loop {
        let now = clock();
        while in_flight < concurrency.max(1) && next < n {
            if let Some(ue) = fleet.ue_mut(next) {
                ue.register(now)
                    .map_err(|e| PktgenError::Setup(format!("UE {next}: {e}")))?;
            }
            next += 1;
            in_flight += 1;
        }
        let mut work = gateway(now);
        work += fleet.step(now, |i, ue| {
            while let Some(ev) = ue.poll_event() {
                match ev {
                    UeEvent::Registered => {
                        registered.push(i);
                        done += 1;
                        in_flight = in_flight.saturating_sub(1);
                    }
                    UeEvent::RegistrationFailed(f) => {
                        failures.push(format!("UE {i}: {f}"));
                        done += 1;
                        in_flight = in_flight.saturating_sub(1);
                    }
                    _ => {}
                }
            }
        });
        if done == n {
            let t = *settled_at.get_or_insert_with(std::time::Instant::now);
            if t.elapsed() >= settle {
                break;
            }
        } else if start.elapsed() > timeout {
            return Err(PktgenError::Register(format!(
                "{done} of {n} registrations finished in {timeout:?}"
            )));
        }
        if work == 0 {
            std::thread::yield_now();
        }
    }
    if let Some(f) = failures.first() {
        return Err(PktgenError::Register(format!(
            "{} registration(s) failed, first: {f}",
            failures.len()
        )));
    }
    registered.sort_unstable();
    Ok(registered)
}

/// What a blast needs of one established UE.
#[derive(Debug)]
pub struct Snapshot {
    /// The P-CSCF's inbound SPI of the UE's port_uc -> port_ps traffic (spi_ps).
    pub spi_ps: u32,
    /// Headers and sequence numbers of the UE's next segment on the protected connection.
    pub tcp: TcpTemplate,
    /// Default IMPU (for the SIP messages).
    pub impu: String,
}

/// Takes the snapshot of a registered UE: queues one byte on its protected connection,
/// polls its stack once and keeps the resulting segment as the template (it is never sent;
/// the blast's first segment starts at its sequence number). The UE must not be stepped
/// afterwards: from here on the blast owns its spi_ps SA and its TCP sequence space.
pub fn snapshot(ue: &mut Ue, now: Instant) -> Result<Snapshot, PktgenError> {
    let flow = ue
        .reg_data
        .as_ref()
        .and_then(|r| r.protected_flow)
        .ok_or(PktgenError::Snapshot("UE has no protected connection"))?;
    let spi_ps = ue
        .sa_set()
        .map(|s| s.params().spi_ps)
        .ok_or(PktgenError::Snapshot("UE has no SA set"))?;
    if !ue.stack.is_established(&flow) {
        return Err(PktgenError::Snapshot(
            "protected connection not established",
        ));
    }
    ue.stack
        .send(flow, b"x", false)
        .map_err(|_| PktgenError::Snapshot("protected connection refused the probe"))?;
    let mut evs = Vec::new();
    ue.stack.poll(now, &mut evs);
    let mut tcp = None;
    while let Some(p) = ue.stack.pop_outbound() {
        if let Ok(t) = TcpTemplate::from_packet(&p) {
            if t.ports == (flow.local_port, flow.ue_port) && t.payload_len == 1 {
                tcp = Some(t);
            }
        }
    }
    Ok(Snapshot {
        spi_ps,
        tcp: tcp.ok_or(PktgenError::Snapshot(
            "UE stack sent no segment for the probe",
        ))?,
        impu: ue.config().impu.clone(),
    })
}
