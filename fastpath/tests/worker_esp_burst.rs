//! The worker decapsulates a received burst together (`decapsulate_burst_in` over its own
//! slab of SAs): replays and forgeries inside one burst are refused exactly as packet by
//! packet (RFC 4303 3.4.3), packets of two SAs interleaved keep their own windows, and every
//! suite goes through the same path (AES-GCM per RFC 4106 included).

use std::net::IpAddr;

mod support;

use akagate_fastpath::esp::{AuthAlg, EncrAlg, OutboundSa, SaKeys, Suite};
use akagate_fastpath::ipc::{WorkerCommand, WorkerEvent};
use akagate_fastpath::sad::SpiAllocator;
use smoltcp::wire::{EthernetProtocol, Ipv4Cidr};
use support::{
    encapsulate, eth_frame, sa_set, send_frame, udp_v4, worker_config, worker_on_pair, PairSizes,
    WorkerOnPair, PCSCF_MAC, PCSCF_V4, PORT_PC, PORT_PS, PORT_UC, PORT_US, UE_MAC, UE_V4,
};

/// The suites of TS 33.203 Annex I (and RFC 4106 AES-GCM) with fixed test keys.
fn suites() -> Vec<Suite> {
    let keys = |integ: usize, encr: usize| SaKeys {
        integ_key: (0..integ as u8).collect(),
        encr_key: (100..100 + encr as u8).collect(),
        salt: [1, 2, 3, 4],
    };
    vec![
        Suite {
            auth: AuthAlg::HmacSha1_96,
            encr: EncrAlg::AesCbc,
            keys: keys(20, 16),
        },
        Suite {
            auth: AuthAlg::HmacMd5_96,
            encr: EncrAlg::DesEde3Cbc,
            keys: keys(16, 24),
        },
        Suite {
            auth: AuthAlg::HmacSha1_96,
            encr: EncrAlg::Null,
            keys: keys(20, 0),
        },
        Suite {
            auth: AuthAlg::HmacSha1_96,
            encr: EncrAlg::AesGcm,
            keys: keys(0, 16),
        },
        Suite {
            auth: AuthAlg::AesGmac,
            encr: EncrAlg::Null,
            keys: SaKeys {
                integ_key: (0..16).collect(),
                encr_key: Vec::new(),
                salt: [1, 2, 3, 4],
            },
        },
    ]
}

/// A worker with one installed SA set of `suite`; returns it with the UE's outbound SAs
/// port_uc -> port_ps (spi_ps) and port_us -> port_pc (spi_pc).
fn bed(suite: &Suite) -> (WorkerOnPair, OutboundSa, OutboundSa) {
    let mut cfg = worker_config(0, PCSCF_MAC, vec![Ipv4Cidr::new(PCSCF_V4, 24)], Vec::new());
    // Every datagram of a burst waits in the UE's UDP socket until the poll after it.
    cfg.stack.udp_packets = 64;
    cfg.stack.udp_rx_buf = 64 * 1024;
    let mut t = worker_on_pair(cfg, &PairSizes::default());
    let spi_pc = t.table.allocate().unwrap();
    let spi_ps = t.table.allocate().unwrap();
    let set = sa_set(
        IpAddr::V4(UE_V4),
        IpAddr::V4(PCSCF_V4),
        suite.clone(),
        spi_pc,
        spi_ps,
    );
    t.worker
        .command(WorkerCommand::InstallSaSet(Box::new(set)), t.now);
    assert_eq!(t.worker.counters().get("drop_sa_install"), Some(0));
    let ps = OutboundSa::new(spi_ps, suite).unwrap();
    let pc = OutboundSa::new(spi_pc, suite).unwrap();
    (t, ps, pc)
}

/// The Ethernet frame of an ESP packet `sa` makes of a SIP datagram `body` from the UE's
/// `sport` to our `dport`.
fn esp_frame(sa: &mut OutboundSa, sport: u16, dport: u16, body: &[u8]) -> Vec<u8> {
    let ip = udp_v4(UE_V4, PCSCF_V4, sport, dport, body);
    let esp = encapsulate(sa, &ip).unwrap();
    eth_frame(UE_MAC, PCSCF_MAC, EthernetProtocol::Ipv4, &esp)
}

/// The SIP messages the worker passed up, with the SPI each came through.
fn sips(t: &WorkerOnPair) -> Vec<(Option<u32>, Vec<u8>)> {
    t.events
        .try_iter()
        .filter_map(|e| match e {
            WorkerEvent::Sip(s) => Some((s.via_spi, s.bytes)),
            _ => None,
        })
        .collect()
}

fn count(t: &WorkerOnPair, name: &str) -> u64 {
    t.worker.counters().get(name).unwrap()
}

#[test]
fn replays_and_forgeries_inside_one_burst_are_refused_per_sa_for_every_suite() {
    for suite in suites() {
        let (mut t, mut ps, mut pc) = bed(&suite);
        let (spi_ps, spi_pc) = (ps.spi(), pc.spi());
        let m = |i: usize| format!("MESSAGE sip:{i} SIP/2.0\r\n\r\n").into_bytes();
        // Sequence numbers 1, 2, 3 on spi_ps and 1, 2 on spi_pc, interleaved.
        let a1 = esp_frame(&mut ps, PORT_UC, PORT_PS, &m(1));
        let b1 = esp_frame(&mut pc, PORT_US, PORT_PC, &m(11));
        let a2 = esp_frame(&mut ps, PORT_UC, PORT_PS, &m(2));
        let mut forged = esp_frame(&mut ps, PORT_UC, PORT_PS, &m(3));
        let a3_len = forged.len();
        forged[a3_len - 1] ^= 1; // last ICV byte: refused, and seq 3 stays unused
        let a3 = esp_frame(&mut ps, PORT_UC, PORT_PS, &m(4)); // seq 4
        let b2 = esp_frame(&mut pc, PORT_US, PORT_PC, &m(12));
        // One burst: replays of a1 right after it and at the end, b1 replayed after b2,
        // and a packet of spi_ps with the selectors of spi_pc (TS 33.203 7.1).
        let wrong_ports = esp_frame(&mut ps, PORT_US, PORT_PC, &m(5));
        let burst = [
            &a1,
            &a1,
            &b1,
            &a2,
            &forged,
            &a3,
            &b2,
            &b1,
            &wrong_ports,
            &a1,
        ];
        for f in burst {
            send_frame(&mut t.ue, f);
        }
        t.worker.run_once(t.now);
        assert_eq!(count(&t, "rx_frames"), burst.len() as u64);
        let got = sips(&t);
        // In order per SA (the two SAs reach two sockets, read one after the other).
        let of = |spi| -> Vec<Vec<u8>> {
            got.iter()
                .filter(|(s, _)| *s == Some(spi))
                .map(|(_, b)| b.clone())
                .collect()
        };
        let what = format!("{:?}/{:?}", suite.auth, suite.encr);
        assert_eq!(of(spi_ps), vec![m(1), m(2), m(4)], "{what}");
        assert_eq!(of(spi_pc), vec![m(11), m(12)], "{what}");
        assert_eq!(got.len(), 5, "{what}");
        // Three replays and one forgery refused by ESP; the packet on the wrong ports opened
        // (its SA is right) and refused by the selectors.
        assert_eq!(count(&t, "drop_esp_invalid"), 4, "{:?}", suite.encr);
        assert_eq!(count(&t, "drop_esp_selector"), 1);
        assert_eq!(count(&t, "esp_in"), 6);

        // The windows moved as packet by packet: seq 3 of spi_ps (never authenticated) is
        // still accepted in the next burst, seq 2 of spi_pc is not.
        ps.set_last_seq_for_test(2);
        let late = esp_frame(&mut ps, PORT_UC, PORT_PS, &m(6)); // seq 3
        pc.set_last_seq_for_test(1);
        let replay = esp_frame(&mut pc, PORT_US, PORT_PC, &m(13)); // seq 2 again
        send_frame(&mut t.ue, &late);
        send_frame(&mut t.ue, &replay);
        t.worker.run_once(t.now);
        assert_eq!(sips(&t), vec![(Some(spi_ps), m(6))]);
        assert_eq!(count(&t, "drop_esp_invalid"), 5);
    }
}

#[test]
fn bursts_longer_than_a_group_keep_order_and_windows() {
    let suite = suites().remove(0);
    let (mut t, mut ps, _) = bed(&suite);
    let m = |i: usize| format!("MESSAGE sip:{i} SIP/2.0\r\n\r\n").into_bytes();
    // 30 packets, then the first ten again (replays), across the 32-packet group boundary.
    let frames: Vec<Vec<u8>> = (0..30)
        .map(|i| esp_frame(&mut ps, PORT_UC, PORT_PS, &m(i)))
        .collect();
    for f in frames.iter().chain(&frames[..10]) {
        send_frame(&mut t.ue, f);
    }
    // The bed's bursts are 32 frames: two loop turns.
    t.worker.run_once(t.now);
    t.worker.run_once(t.now);
    let got: Vec<Vec<u8>> = sips(&t).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, (0..30).map(m).collect::<Vec<_>>());
    assert_eq!(count(&t, "drop_esp_invalid"), 10);
    assert_eq!(count(&t, "esp_in"), 30);
}

#[test]
fn answers_are_encapsulated_in_emission_order_per_sa_for_every_suite() {
    use akagate_fastpath::esp::{peek_spi, InboundSa};
    use akagate_fastpath::ipc::{Flow, Transport};
    use akagate_sys::PortQueue;
    use smoltcp::wire::{ArpOperation, EthernetAddress};
    use support::{arp, SPI_UC, SPI_US};

    for suite in suites() {
        let (mut t, _, _) = bed(&suite);
        // The worker learns the UE's MAC (RFC 826), so nothing waits for a neighbour.
        let request = arp(
            ArpOperation::Request,
            (UE_MAC, UE_V4),
            (EthernetAddress([0; 6]), PCSCF_V4),
        );
        send_frame(
            &mut t.ue,
            &eth_frame(UE_MAC, PCSCF_MAC, EthernetProtocol::Arp, &request),
        );
        t.worker.run_once(t.now);
        let mut rx = Vec::new();
        t.ue.rx_burst(&mut rx, 64);
        rx.drain(..).for_each(|b| t.ue.free(b));

        // Twenty UDP answers over the two outbound SAs, interleaved, in one loop turn.
        let flow = |ue_port, local_port| Flow {
            ue: IpAddr::V4(UE_V4),
            ue_port,
            local: IpAddr::V4(PCSCF_V4),
            local_port,
            proto: Transport::Udp,
        };
        let m = |i: usize| format!("SIP/2.0 200 OK\r\nX-N: {i}\r\n\r\n").into_bytes();
        for i in 0..20 {
            let f = if i % 2 == 0 {
                flow(PORT_UC, PORT_PS)
            } else {
                flow(PORT_US, PORT_PC)
            };
            t.cmds
                .send(WorkerCommand::Send {
                    flow: f,
                    bytes: m(i),
                    connect_if_absent: false,
                })
                .unwrap();
        }
        // Each poll of the UE's stack sends a datagram per socket; a few turns send all.
        for _ in 0..20 {
            t.worker.run_once(t.now);
            t.now += smoltcp::time::Duration::from_millis(1);
        }
        t.ue.rx_burst(&mut rx, 64);
        let what = format!("{:?}/{:?}", suite.auth, suite.encr);
        assert_eq!(rx.len(), 20, "{what}");
        assert_eq!(count(&t, "esp_out"), 20, "{what}");
        // The UE opens them all: per SA, sequence numbers 1.. in the order sent.
        let mut uc = InboundSa::new(SPI_UC, &suite).unwrap();
        let mut us = InboundSa::new(SPI_US, &suite).unwrap();
        let mut seen = Vec::new();
        for mut b in rx.drain(..) {
            let frame = b.data_mut();
            let ip = &mut frame[14..];
            let spi = peek_spi(ip).unwrap();
            let seq = u32::from_be_bytes(ip[24..28].try_into().unwrap());
            let sa = if spi == SPI_UC { &mut uc } else { &mut us };
            let len = ip.len();
            let r = sa.decapsulate(ip, 0..len).unwrap();
            let body = ip[r.start + 28..r.end].to_vec();
            seen.push((spi, seq, body));
            t.ue.free(b);
        }
        for (spi, first) in [(SPI_UC, 0), (SPI_US, 1)] {
            let got: Vec<(u32, Vec<u8>)> = seen
                .iter()
                .filter(|(s, _, _)| *s == spi)
                .map(|(_, q, b)| (*q, b.clone()))
                .collect();
            let want: Vec<(u32, Vec<u8>)> =
                (0..10).map(|k| (k as u32 + 1, m(first + 2 * k))).collect();
            assert_eq!(got, want, "{what}");
        }
    }
}
