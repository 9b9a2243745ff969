//! DPDK smoke test: EAL with `--no-huge --no-pci`, the `net_af_packet` PMD on one end of a
//! veth pair, our AF_PACKET backend on the other (kernel) end; frames cross both ways
//! unchanged. Its own test binary because the EAL starts once per process. Needs root.
#![cfg(feature = "dpdk")]

use std::time::{Duration, Instant};

use akagate_sys::afpacket::{AfPacketConfig, AfPacketPort};
use akagate_sys::dpdk::open_af_packet_vdev;
use akagate_sys::testnet::{unavailable_reason, VethPair};
use akagate_sys::{PacketBuf, Port, PortQueue};

fn frame(dst: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0xdd, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[23] = 50;
    f[26..30].copy_from_slice(&[10, 0, (seq >> 8) as u8, seq as u8]);
    f[len - 8..len - 4].copy_from_slice(b"AKGD");
    f[len - 4..].copy_from_slice(&seq.to_be_bytes());
    f
}

fn ours(f: &[u8]) -> bool {
    f.len() >= 8 && &f[f.len() - 8..f.len() - 4] == b"AKGD"
}

fn exchange<S: PortQueue, R: PortQueue>(
    tx: &mut S,
    rx: &mut R,
    frames: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending: Vec<PacketBuf> = Vec::new();
    let mut got = Vec::new();
    let mut burst = Vec::new();
    let mut next = 0;
    while got.len() < frames.len() && Instant::now() < deadline {
        while pending.len() < 32 && next < frames.len() {
            let mut b = tx.alloc().expect("buffer");
            b.fill(&frames[next]).unwrap();
            pending.push(b);
            next += 1;
        }
        tx.tx_burst(&mut pending);
        rx.rx_burst(&mut burst, 64);
        for b in burst.drain(..) {
            if ours(b.data()) {
                got.push(b.data().to_vec());
            }
            rx.free(b);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    got
}

#[test]
fn net_af_packet_exchanges_frames_with_the_kernel_end() {
    if let Some(why) = unavailable_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let net = VethPair::new().expect("veth pair");
    let mut kernel = {
        let ifname = net.a.clone();
        VethPair::run_in(&net.ns_a, move || {
            AfPacketPort::open(&AfPacketConfig::new(&ifname))
        })
        .unwrap()
        .unwrap()
    };
    // The PMD opens its socket during EAL init, in the calling thread's namespace.
    let iface = net.b.clone();
    let mut dpdk = VethPair::run_in(&net.ns_b, move || {
        open_af_packet_vdev("akagate-test", &iface, 128)
    })
    .unwrap()
    .expect("DPDK port on net_af_packet");
    assert_eq!(dpdk.num_queues(), 1);
    let mac_dpdk = dpdk.link().mac;
    let mac_kernel = kernel.link().mac;
    let mut dq = dpdk.take_queues().pop().unwrap();
    let mut kq = kernel.take_queues().pop().unwrap();

    let to_dpdk: Vec<Vec<u8>> = (0..200)
        .map(|i| frame(mac_dpdk, i, 60 + (i as usize * 53) % 1454))
        .collect();
    let got = exchange(&mut kq, &mut dq, &to_dpdk);
    assert_eq!(got, to_dpdk, "kernel -> DPDK");

    let to_kernel: Vec<Vec<u8>> = (0..200)
        .map(|i| frame(mac_kernel, i, 1514 - (i as usize * 37) % 1454))
        .collect();
    let got = exchange(&mut dq, &mut kq, &to_kernel);
    assert_eq!(got, to_kernel, "DPDK -> kernel");

    let s = dq.counters().snapshot();
    assert_eq!(s.tx_packets, 200);
    assert!(s.rx_packets >= 200);
    assert_eq!(s.tx_errors, 0);
}
