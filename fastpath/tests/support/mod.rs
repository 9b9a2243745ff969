//! Helpers shared by the worker scenario tests (`worker_esp_e2e`, `worker_handoff`,
//! `worker_install`): the worker configuration, the SA suite both sides use and UDP/IPv4
//! packets built with `smoltcp::wire`.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use akagate_fastpath::esp::{AuthAlg, EncrAlg, SaKeys, Suite};
use akagate_fastpath::l2::L2Config;
use akagate_fastpath::reasm::ReasmConfig;
use akagate_fastpath::stack::StackConfig;
use akagate_fastpath::worker::WorkerConfig;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Duration;
use smoltcp::wire::{
    EthernetAddress, IpProtocol, Ipv4Cidr, Ipv4Packet, Ipv4Repr, Ipv6Cidr, UdpPacket, UdpRepr,
};

/// Worker `id` of a scenario test: the P-CSCF at `mac` with `ipv4`/`ipv6`, no gateways,
/// default stack and reassembly, SIP on 5060, bursts of 32, 16 UEs, a 1 ms timer tick.
pub fn worker_config(
    id: usize,
    mac: EthernetAddress,
    ipv4: Vec<Ipv4Cidr>,
    ipv6: Vec<Ipv6Cidr>,
) -> WorkerConfig {
    WorkerConfig {
        id,
        l2: L2Config {
            mac,
            ipv4,
            ipv6,
            gateway_v4: None,
            gateway_v6: None,
            max_neighbors: 64,
            neighbor_ttl: Duration::from_secs(300),
            solicit_retry: Duration::from_secs(1),
        },
        stack: StackConfig::default(),
        reasm: ReasmConfig::default(),
        sip_port: 5060,
        burst: 32,
        commands_per_loop: 16,
        max_ues: 16,
        link_mtu: 1500,
        timer_tick: Duration::from_millis(1),
        timer_slots: 256,
    }
}

/// hmac-sha-1-96 with aes-cbc and fixed test keys (IK 0..20, CK 100..116), as the P-CSCF and
/// the simulated UE both install it.
pub fn suite() -> Suite {
    Suite {
        auth: AuthAlg::HmacSha1_96,
        encr: EncrAlg::AesCbc,
        keys: SaKeys {
            integ_key: (0..20).collect(),
            encr_key: (100..116).collect(),
            salt: [0; 4],
        },
    }
}

/// An IPv4 packet (TTL 64, checksums filled) carrying `payload` in UDP from `src:sport` to
/// `dst:dport`.
pub fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let mut p = vec![0u8; 20 + udp.header_len() + payload.len()];
    let caps = ChecksumCapabilities::default();
    let mut pk = Ipv4Packet::new_unchecked(&mut p[..]);
    ip.emit(&mut pk, &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(pk.payload_mut()),
        &src.into(),
        &dst.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    p
}
