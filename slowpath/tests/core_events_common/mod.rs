//! Event-sequence harness of the slowpath core, shared by `core_events.rs` (seeded mutations
//! on stable) and the `core_events` fuzz target: two UEs registered over TCP or UDP, IPv4 or
//! IPv6 (the registration test bed, `reg_common`), then a sequence of worker events chosen by
//! the input — template requests (INVITE, OPTIONS, refresh, de-REGISTER, an initial REGISTER)
//! sent as they are or with bytes replaced, arbitrary bytes on any flow and SA, answers to the
//! last request the core sent, the correct answer to the last challenge, TCP closes, failed
//! connects, lost sends and time passing (timers). The core must never panic and must keep its
//! contract: every SA set it installs has SPIs above 255 (RFC 4303 2.1) and every `Send`
//! carries bytes.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand, WorkerEvent};
use akagate_slowpath::aka::AkaNonce;
use akagate_slowpath::registrar::{PersistedRegistration, RegistrationChange};

use crate::reg_common::{
    answer, client_flow, header, invite_text, param, registered_pair_on, sdp, set1_usim, Testbed,
    Ue,
};

/// Reads decisions off the front of the input; zeros past the end.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn chunk(&mut self, max: usize) -> &'a [u8] {
        let n = (usize::from(self.u16()) % (max + 1)).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// What one input did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Events handed to the core.
    pub events: usize,
    /// Commands the core returned.
    pub commands: usize,
    /// 200 OKs to REGISTERs the core sent (registrations completed during the sequence).
    pub registered: usize,
}

struct Bed {
    t: Testbed,
    ues: [(Ue, SaSet); 2],
    proto: Transport,
    /// The last request the core sent, with its flow.
    last_request: Option<(Flow, String)>,
    /// The last challenge: the set installed for it, its flow and nonce.
    last_challenge: Option<(SaSet, Flow, String)>,
    last_install: Option<SaSet>,
    out: Outcome,
}

impl Bed {
    fn take(&mut self, cmds: Vec<WorkerCommand>) {
        self.out.commands += cmds.len();
        for c in cmds {
            match c {
                WorkerCommand::InstallSaSet(set) => {
                    assert!(
                        set.spi_pc > 255 && set.spi_ps > 255,
                        "SPI in 0..=255: {set:?}"
                    );
                    self.last_install = Some(*set);
                }
                WorkerCommand::Send { flow, bytes, .. } => {
                    assert!(!bytes.is_empty(), "empty Send on {flow:?}");
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if text.starts_with("SIP/2.0 401") {
                        let nonce =
                            header(&text, "WWW-Authenticate").and_then(|v| param(&v, "nonce"));
                        if let (Some(set), Some(nonce)) = (self.last_install.clone(), nonce) {
                            self.last_challenge = Some((set, flow, nonce));
                        }
                    } else if text.starts_with("SIP/2.0 200") && text.contains("REGISTER") {
                        self.out.registered += 1;
                    } else if !text.starts_with("SIP/2.0 ") {
                        self.last_request = Some((flow, text));
                    }
                }
                WorkerCommand::Close(_)
                | WorkerCommand::RemoveSaSet { .. }
                | WorkerCommand::RestoreSaSet { .. } => {}
            }
        }
    }

    fn event(&mut self, ev: WorkerEvent) {
        self.out.events += 1;
        let cmds = self.t.core.handle(ev, self.t.now);
        self.take(cmds);
    }

    fn sip(&mut self, flow: Flow, via_spi: Option<u32>, bytes: Vec<u8>) {
        self.event(WorkerEvent::Sip(akagate_proto::ipc::SipIn {
            flow,
            via_spi,
            bytes,
        }));
    }

    /// The inbound SA a message from `flow` comes through: the set of its UE whose port
    /// pair it uses, else none (unprotected).
    fn spi_for(&self, flow: &Flow) -> Option<u32> {
        self.ues.iter().find_map(|(ue, set)| {
            (ue.ip == flow.ue).then_some(())?;
            if flow.local_port == set.port_ps {
                Some(set.spi_ps)
            } else if flow.local_port == set.port_pc {
                Some(set.spi_pc)
            } else {
                None
            }
        })
    }

    /// A template message of UE `i` with its flow and SA.
    fn template(&self, i: usize, which: u8) -> (Flow, Option<u32>, String) {
        let (ue, set) = &self.ues[i];
        let (peer, _) = &self.ues[1 - i];
        let prot = ue.protected_flow(set);
        let spi = Some(set.spi_ps);
        match which % 5 {
            0 => (
                prot,
                spi,
                invite_text(ue, &peer.impu(), "z9hG4bKfz1", 70, &sdp(ue)),
            ),
            1 => (prot, spi, ue.options(set)),
            2 => (prot, spi, ue.dereg(set)),
            3 => (prot, spi, ue.refresh(set, &ue.security_server)),
            _ => (ue.unprotected_flow(), None, ue.initial_register()),
        }
    }

    /// Answers the last challenge as the UE it went to would (RFC 3310, the set-1 USIM).
    fn answer_challenge(&mut self) {
        let Some((set, flow, nonce)) = self.last_challenge.take() else {
            return;
        };
        let Some((ue, _)) = self.ues.iter().find(|(u, _)| u.ip == flow.ue) else {
            return;
        };
        let me = ue.with_server(&set);
        // A challenge the set-1 USIM refuses (a decoy for an IMPI the fuzzer altered, a stale
        // SQN) is not answered: a real phone would not either.
        let Ok(n) = AkaNonce::decode(&nonce) else {
            return;
        };
        let Ok(ok) = set1_usim().authenticate(&n.rand, &n.autn) else {
            return;
        };
        let Ok(res) = <[u8; 8]>::try_from(ok.res.as_bytes()) else {
            return;
        };
        let text = me.protected_register(&set, &nonce, &res, None);
        let mut prot = me.protected_flow(&set);
        prot.proto = self.proto;
        self.sip(prot, Some(set.spi_ps), text.into_bytes());
    }
}

/// A flow of the bed the input names: a UE's protected or unprotected flow, our client flow
/// to it, or arbitrary ports.
fn any_flow(bed: &Bed, inp: &mut Input) -> Flow {
    let (ue, set) = &bed.ues[usize::from(inp.u8() & 1)];
    match inp.u8() % 4 {
        0 => ue.protected_flow(set),
        1 => ue.unprotected_flow(),
        2 => client_flow(ue, set, bed.proto),
        _ => Flow {
            ue_port: inp.u16(),
            local_port: inp.u16(),
            ..ue.protected_flow(set)
        },
    }
}

/// Two UEs registered through the whole AKA exchange, with their registrations as the core
/// hands them to its registration store (issue 14). Registering costs four full REGISTER
/// exchanges; an input starts instead from a fresh core that restores these records, as the
/// daemon does at start, which is the same registered state at a fraction of the cost.
struct Registered {
    proto: Transport,
    ues: [(Ue, SaSet); 2],
    records: Vec<PersistedRegistration>,
    /// The wall-clock instant the records are dated against: restoring against the same
    /// instant gives every input the same remaining expiry (600 s), whenever it runs.
    wall: SystemTime,
    /// SPIs the two registrations took from the allocator.
    spis: u32,
}

impl Registered {
    fn capture(proto: Transport, v6: bool) -> Self {
        let mut t = Testbed::new();
        t.core.track_registration_changes();
        let (mut t, a, sa, b, sb) = registered_pair_on(t, proto, v6);
        let wall = SystemTime::now();
        // Both were reported as changes, and are what the store would hold.
        let changes = t.core.take_registration_changes(t.now, wall);
        let mut keys: Vec<&str> = changes
            .iter()
            .map(|c| match c {
                RegistrationChange::Encoded(e) => e.key.as_str(),
                other => panic!("{other:?} is not a registered binding's record"),
            })
            .collect();
        keys.sort_unstable();
        let records = t.core.registration_records(t.now, wall);
        assert_eq!(
            keys,
            records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>()
        );
        assert_eq!(records.len(), 2, "{records:?}");
        Registered {
            proto,
            ues: [(a, sa), (b, sb)],
            records,
            wall,
            spis: t.spis.allocated(),
        }
    }

    /// A fresh core holding both registrations; its allocator continues after their SPIs.
    fn restore(&self) -> Testbed {
        let mut t = Testbed::new();
        t.spis.skip(self.spis);
        for r in t
            .core
            .restore_registrations(&self.records, t.now, self.wall)
        {
            r.expect("a captured registration restores");
        }
        t
    }
}

/// The transport (bit 0: UDP) and family (bit 1: IPv6) an input's first byte names.
fn variant(first: u8) -> (Transport, bool) {
    let proto = if first & 1 == 1 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    (proto, first & 2 == 2)
}

/// The registered pair of each variant, captured once per process (every input restores
/// from the same records, so an input alone reproduces its run).
fn registered(first: u8) -> &'static Registered {
    static ALL: OnceLock<Vec<Registered>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        (0..4u8)
            .map(|i| {
                let (proto, v6) = variant(i);
                Registered::capture(proto, v6)
            })
            .collect()
    });
    &all[usize::from(first & 3)]
}

/// Runs one input on a core restored with the two registrations (the fuzz target).
pub fn run(data: &[u8]) -> Outcome {
    let r = registered(data.first().copied().unwrap_or(0));
    run_on(data, r.restore(), r)
}

/// Runs one input on a core that registered the two UEs through AKA itself (what [`run`]
/// stands for; the tests compare the two).
pub fn run_registering(data: &[u8]) -> Outcome {
    let r = registered(data.first().copied().unwrap_or(0));
    let (t, ..) = registered_pair_on(Testbed::new(), r.proto, r.ues[0].0.ip.is_ipv6());
    run_on(data, t, r)
}

fn run_on(data: &[u8], t: Testbed, r: &Registered) -> Outcome {
    let mut inp = Input(data);
    inp.u8();
    let mut bed = Bed {
        t,
        ues: r.ues.clone(),
        proto: r.proto,
        last_request: None,
        last_challenge: None,
        last_install: None,
        out: Outcome::default(),
    };
    let mut steps = 0;
    while !inp.0.is_empty() && steps < 64 {
        steps += 1;
        match inp.u8() % 8 {
            0 => {
                let (flow, spi, text) = bed.template(usize::from(inp.u8() & 1), inp.u8());
                bed.sip(flow, spi, text.into_bytes());
            }
            1 => {
                // A template with up to 8 bytes replaced.
                let (flow, spi, text) = bed.template(usize::from(inp.u8() & 1), inp.u8());
                let mut bytes = text.into_bytes();
                for _ in 0..inp.u8() % 8 {
                    let at = usize::from(inp.u16()) % bytes.len();
                    bytes[at] = inp.u8();
                }
                bed.sip(flow, spi, bytes);
            }
            2 => {
                let flow = any_flow(&bed, &mut inp);
                let spi = match inp.u8() % 3 {
                    0 => None,
                    1 => bed.spi_for(&flow),
                    _ => Some(u32::from(inp.u16()) + 4096),
                };
                let bytes = inp.chunk(4096).to_vec();
                bed.sip(flow, spi, bytes);
            }
            3 => {
                // The UE answers the last request the core sent it.
                let Some((flow, req)) = bed.last_request.clone() else {
                    continue;
                };
                let ok = ["Via", "From", "To", "Call-ID", "CSeq"]
                    .iter()
                    .all(|h| header(&req, h).is_some());
                if !ok {
                    continue;
                }
                let code = [100, 180, 183, 200, 401, 486, 487, 503][usize::from(inp.u8() % 8)];
                let text = answer(&req, code, "Fuzz");
                let spi = bed.spi_for(&flow);
                bed.sip(flow, spi, text.into_bytes());
            }
            4 => bed.answer_challenge(),
            5 => {
                let flow = match bed.last_request.clone() {
                    Some((f, _)) if inp.u8() & 1 == 1 => f,
                    _ => any_flow(&bed, &mut inp),
                };
                let ev = match inp.u8() % 3 {
                    0 => WorkerEvent::TcpClosed(flow),
                    1 => WorkerEvent::ConnectFailed(flow),
                    _ => WorkerEvent::SendLost(flow),
                };
                bed.event(ev);
            }
            _ => {
                let d = match inp.u8() % 3 {
                    0 => Duration::from_millis(u64::from(inp.u16())),
                    1 => Duration::from_secs(u64::from(inp.u8())),
                    _ => Duration::from_secs(600),
                };
                bed.t.now += d;
                let now = bed.t.now;
                let cmds = bed.t.core.handle_timeout(now);
                bed.take(cmds);
            }
        }
    }
    bed.out
}

/// Seed inputs: a call set up and answered, a re-registration answered, a de-registration,
/// a re-registration of the second UE from scratch, each over TCP and UDP.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for first in [0u8, 1, 2, 3] {
        out.push(vec![first, 0, 0, 0, 3, 3, 3, 3, 3, 7, 1, 5]);
        out.push(vec![first, 0, 0, 3, 4, 7, 0, 0, 10, 0, 0, 1]);
        out.push(vec![first, 0, 1, 4, 4, 0, 0, 2]);
        out.push(vec![first, 2, 0, 0, 7, 2, 5, 1, 1, 0]);
    }
    out
}
