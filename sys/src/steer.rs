//! Steering by UE address: every frame of one UE (by its IP address, ESP and TCP alike) goes
//! to the same queue. The same function runs in Rust (in-memory pair, handoff of strays) and
//! as a classic-BPF program for `PACKET_FANOUT_CBPF`, so both backends agree; DPDK NICs hash
//! with Toeplitz RSS, which [`Steering::Rss`] computes in software.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which address of a frame is the UE's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UeSide {
    /// The UE is the sender (gateway's access-side interface receiving from UEs).
    #[default]
    Source,
    /// The UE is the receiver.
    Destination,
}

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETH_HLEN: usize = 14;

/// Offset, from the start of the IP header, of the 32-bit word that identifies the UE:
/// the IPv4 address, or the low 32 bits of the IPv6 address.
pub fn key_offset(ethertype: u16, side: UeSide) -> Option<usize> {
    match (ethertype, side) {
        (ETHERTYPE_IPV4, UeSide::Source) => Some(12),
        (ETHERTYPE_IPV4, UeSide::Destination) => Some(16),
        (ETHERTYPE_IPV6, UeSide::Source) => Some(8 + 12),
        (ETHERTYPE_IPV6, UeSide::Destination) => Some(24 + 12),
        _ => None,
    }
}

/// Multiplier of the integer mix (a well-known 32-bit avalanche constant).
pub const MIX_MUL: u32 = 0x045d_9f3b;

/// Mix a UE key so that consecutive addresses spread over queues.
#[inline]
pub fn mix(key: u32) -> u32 {
    let h = (key ^ (key >> 16)).wrapping_mul(MIX_MUL);
    h ^ (h >> 16)
}

/// Queue for a UE key (big-endian word of the address) among `queues` queues.
#[inline]
pub fn queue_for_key(key: u32, queues: usize) -> usize {
    if queues <= 1 {
        return 0;
    }
    (mix(key) % queues as u32) as usize
}

/// The UE key of an untagged Ethernet frame, or `None` for non-IP or short frames.
pub fn ue_key(frame: &[u8], side: UeSide) -> Option<u32> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let off = ETH_HLEN + key_offset(et, side)?;
    let w = frame.get(off..off + 4)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// Queue of an untagged Ethernet frame; non-IP frames (ARP, VLAN-tagged) go to queue 0.
pub fn queue_for_frame(frame: &[u8], side: UeSide, queues: usize) -> usize {
    ue_key(frame, side).map_or(0, |k| queue_for_key(k, queues))
}

/// The UE key of an address: the IPv4 address, or the low 32 bits of the IPv6 address (the
/// word [`ue_key`] reads from a frame).
pub fn ue_key_of(ue: IpAddr) -> u32 {
    match ue {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
        }
    }
}

/// The Toeplitz hash of `input` under `key` (Microsoft RSS; DPDK `rte_softrss`): for every
/// set bit of the input, XOR in the 32-bit window of the key that starts at that bit.
/// A key shorter than `input.len() + 4` bytes is read as if padded with zero bits.
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    let byte = |i: usize| u32::from(key.get(i).copied().unwrap_or(0));
    // The window holds key bits [i, i + 32) for the current input bit i.
    let mut window = (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
    let mut hash = 0u32;
    for (n, &b) in input.iter().enumerate() {
        let next = byte(n + 4);
        for bit in 0..8 {
            if b & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | ((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// What the NIC's RSS hash reads from an IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RssInput {
    /// The source address only (`RTE_ETH_RSS_L3_SRC_ONLY`): the UE's address on ingress.
    L3Src,
    /// Source then destination address (`RTE_ETH_RSS_IP`): the UE's address and the one of
    /// ours it talks to; steering is exact only for a UE that uses this local address.
    L3SrcDst {
        /// Our IPv4 address UEs are assumed to talk to.
        local_v4: Option<Ipv4Addr>,
        /// Our IPv6 address UEs are assumed to talk to.
        local_v6: Option<Ipv6Addr>,
    },
}

/// Toeplitz RSS as a NIC applies it: hash, then the redirection table (RETA) picks the queue
/// from the hash's low bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssSteering {
    /// The hash key the NIC uses (40 bytes on most NICs).
    pub key: Vec<u8>,
    /// The redirection table: entry `hash % reta.len()` is the queue.
    pub reta: Vec<u16>,
    /// The hashed fields.
    pub input: RssInput,
}

impl RssSteering {
    /// The RSS hash of an ingress packet from `ue`.
    pub fn hash(&self, ue: IpAddr) -> u32 {
        let mut buf = [0u8; 32];
        let n = match (ue, &self.input) {
            (IpAddr::V4(a), RssInput::L3Src) => {
                buf[..4].copy_from_slice(&a.octets());
                4
            }
            (IpAddr::V6(a), RssInput::L3Src) => {
                buf[..16].copy_from_slice(&a.octets());
                16
            }
            (IpAddr::V4(a), RssInput::L3SrcDst { local_v4, .. }) => {
                buf[..4].copy_from_slice(&a.octets());
                buf[4..8].copy_from_slice(&local_v4.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
                8
            }
            (IpAddr::V6(a), RssInput::L3SrcDst { local_v6, .. }) => {
                buf[..16].copy_from_slice(&a.octets());
                buf[16..].copy_from_slice(&local_v6.unwrap_or(Ipv6Addr::UNSPECIFIED).octets());
                32
            }
        };
        toeplitz_hash(&self.key, &buf[..n])
    }

    /// The queue the NIC puts ingress packets from `ue` on.
    pub fn queue_for_ue(&self, ue: IpAddr) -> usize {
        if self.reta.is_empty() {
            return 0;
        }
        let i = self.hash(ue) as usize % self.reta.len();
        self.reta.get(i).map_or(0, |&q| usize::from(q))
    }
}

/// How a port spreads ingress frames over its queues, as a function of the UE's address, so
/// the daemon routes a UE's commands, and workers hand stray frames, to the queue (worker)
/// that receives the UE's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steering {
    /// [`queue_for_key`] of the UE key: the AF_PACKET fanout program and the in-memory pair.
    UeKey {
        /// Number of queues.
        queues: usize,
    },
    /// Toeplitz RSS with the NIC's key and redirection table (DPDK).
    Rss(RssSteering),
}

impl Steering {
    /// The queue that receives the frames of `ue`.
    pub fn queue_for_ue(&self, ue: IpAddr) -> usize {
        match self {
            Steering::UeKey { queues } => queue_for_key(ue_key_of(ue), *queues),
            Steering::Rss(r) => r.queue_for_ue(ue),
        }
    }
}

/// Classic BPF (as the kernel's `struct sock_filter`).
#[cfg(target_os = "linux")]
pub mod cbpf {
    use super::{key_offset, UeSide, ETHERTYPE_IPV4, ETHERTYPE_IPV6, MIX_MUL};

    // Opcodes from linux/bpf_common.h and linux/filter.h.
    const LD_H_ABS: u16 = 0x28;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JA: u16 = 0x05;
    const TAX: u16 = 0x07;
    const RSH_K: u16 = 0x74;
    const XOR_X: u16 = 0xac;
    const MUL_K: u16 = 0x24;
    const MOD_K: u16 = 0x94;
    const RET_A: u16 = 0x16;
    const RET_K: u16 = 0x06;
    /// `SKF_AD_OFF + SKF_AD_PROTOCOL`: loads `skb->protocol` (the EtherType).
    const AD_PROTOCOL: u32 = (-0x1000i32) as u32;
    /// `SKF_NET_OFF`: loads relative to the network header, wherever `skb->data` points.
    const NET_OFF: i32 = -0x10_0000;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    /// The fanout program: returns `mix(ue_key) % queues` for IPv4/IPv6, 0 otherwise.
    /// A load beyond the packet makes a classic-BPF program return 0 (queue 0).
    pub fn fanout_program(side: UeSide, queues: usize) -> Vec<libc::sock_filter> {
        let n = queues.max(1) as u32;
        let v4 = key_offset(ETHERTYPE_IPV4, side).unwrap_or(0) as i32;
        let v6 = key_offset(ETHERTYPE_IPV6, side).unwrap_or(0) as i32;
        vec![
            /* 0 */ ins(LD_H_ABS, 0, 0, AD_PROTOCOL),
            /* 1 */ ins(JEQ_K, 1, 0, ETHERTYPE_IPV4 as u32),
            /* 2 */ ins(JEQ_K, 2, 12, ETHERTYPE_IPV6 as u32),
            /* 3 */ ins(LD_W_ABS, 0, 0, (NET_OFF + v4) as u32),
            /* 4 */ ins(JA, 0, 0, 1),
            /* 5 */ ins(LD_W_ABS, 0, 0, (NET_OFF + v6) as u32),
            /* 6 */ ins(TAX, 0, 0, 0),
            /* 7 */ ins(RSH_K, 0, 0, 16),
            /* 8 */ ins(XOR_X, 0, 0, 0),
            /* 9 */ ins(MUL_K, 0, 0, MIX_MUL),
            /* 10 */ ins(TAX, 0, 0, 0),
            /* 11 */ ins(RSH_K, 0, 0, 16),
            /* 12 */ ins(XOR_X, 0, 0, 0),
            /* 13 */ ins(MOD_K, 0, 0, n),
            /* 14 */ ins(RET_A, 0, 0, 0),
            /* 15 */ ins(RET_K, 0, 0, 0),
        ]
    }

    /// A program that accepts nothing (used while a fanout group is being assembled).
    pub fn drop_all() -> Vec<libc::sock_filter> {
        vec![ins(RET_K, 0, 0, 0)]
    }

    /// Run `prog` over an Ethernet frame the way the kernel does for a received skb
    /// (network header at 14), for tests of the program against [`super::queue_for_frame`].
    pub fn interpret(prog: &[libc::sock_filter], frame: &[u8]) -> u32 {
        let ethertype = match frame.get(12..14) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as u32,
            None => return 0,
        };
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        while let Some(i) = prog.get(pc) {
            pc += 1;
            match i.code {
                LD_H_ABS if i.k == AD_PROTOCOL => a = ethertype,
                LD_W_ABS => {
                    let off = (i.k as i32 - NET_OFF) as usize + 14;
                    match frame.get(off..off + 4) {
                        Some(w) => a = u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                        None => return 0,
                    }
                }
                JEQ_K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                JA => pc += i.k as usize,
                TAX => x = a,
                RSH_K => a >>= i.k,
                XOR_X => a ^= x,
                MUL_K => a = a.wrapping_mul(i.k),
                MOD_K => a %= i.k,
                RET_A => return a,
                RET_K => return i.k,
                _ => return 0,
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f
    }

    #[test]
    fn v4_source_and_destination_keys() {
        let f = v4([10, 0, 0, 1], [192, 168, 1, 2], 50);
        assert_eq!(ue_key(&f, UeSide::Source), Some(0x0a00_0001));
        assert_eq!(ue_key(&f, UeSide::Destination), Some(0xc0a8_0102));
    }

    #[test]
    fn v6_uses_low_32_bits() {
        let mut f = vec![0u8; 14 + 40];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14 + 8 + 12..14 + 8 + 16].copy_from_slice(&[1, 2, 3, 4]);
        f[14 + 24 + 12..14 + 24 + 16].copy_from_slice(&[5, 6, 7, 8]);
        assert_eq!(ue_key(&f, UeSide::Source), Some(0x0102_0304));
        assert_eq!(ue_key(&f, UeSide::Destination), Some(0x0506_0708));
    }

    #[test]
    fn non_ip_and_short_frames_go_to_queue_0() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(queue_for_frame(&arp, UeSide::Source, 4), 0);
        let f = v4([10, 0, 0, 1], [1, 1, 1, 1], 6);
        assert_eq!(ue_key(&f[..29], UeSide::Source), None);
        assert_eq!(queue_for_frame(&[], UeSide::Source, 4), 0);
    }

    #[test]
    fn addresses_spread_over_queues() {
        let mut hits = [0usize; 4];
        for i in 0..256u32 {
            hits[queue_for_key(0x0a00_0000 | i, 4)] += 1;
        }
        assert!(hits.iter().all(|&h| h > 32), "{hits:?}");
    }

    /// The key of Microsoft's "Verifying the RSS Hash Calculation" (also DPDK's default).
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    /// Hash input in RSS order: source address, destination address, then (for the TCP
    /// vectors) source port and destination port.
    fn rss_input(src: IpAddr, dst: IpAddr, ports: Option<(u16, u16)>) -> Vec<u8> {
        let mut v = Vec::new();
        for a in [src, dst] {
            match a {
                IpAddr::V4(a) => v.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => v.extend_from_slice(&a.octets()),
            }
        }
        if let Some((sp, dp)) = ports {
            v.extend_from_slice(&sp.to_be_bytes());
            v.extend_from_slice(&dp.to_be_bytes());
        }
        v
    }

    /// Microsoft RSS verification suite: (destination, source, IP-only hash, IP+TCP hash).
    #[test]
    fn toeplitz_matches_the_microsoft_rss_verification_vectors() {
        let v4: [(&str, &str, u32, u32); 5] = [
            (
                "161.142.100.80:1766",
                "66.9.149.187:2794",
                0x323e_8fc2,
                0x51cc_c178,
            ),
            (
                "65.69.140.83:4739",
                "199.92.111.2:14230",
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                "12.22.207.184:38024",
                "24.19.198.95:12898",
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
            (
                "209.142.163.6:2217",
                "38.27.205.30:48228",
                0x8298_9176,
                0xafc7_327f,
            ),
            (
                "202.188.127.2:1303",
                "153.39.163.191:44251",
                0x5d18_09c5,
                0x10e8_28a2,
            ),
        ];
        let v6: [(&str, &str, u32, u32); 3] = [
            (
                "[3ffe:2501:200:3::1]:1766",
                "[3ffe:2501:200:1fff::7]:2794",
                0x2cc1_8cd5,
                0x4020_7d3d,
            ),
            (
                "[ff02::1]:4739",
                "[3ffe:501:8::260:97ff:fe40:efab]:14230",
                0x0f0c_461c,
                0xdde5_1bbf,
            ),
            (
                "[fe80::200:f8ff:fe21:67cf]:38024",
                "[3ffe:1900:4545:3:200:f8ff:fe21:67cf]:44251",
                0x4b61_e985,
                0x02d1_feef,
            ),
        ];
        for (dst, src, ip_only, with_tcp) in v4.iter().chain(v6.iter()) {
            let dst: std::net::SocketAddr = dst.parse().unwrap();
            let src: std::net::SocketAddr = src.parse().unwrap();
            let ip = rss_input(src.ip(), dst.ip(), None);
            assert_eq!(toeplitz_hash(&MS_KEY, &ip), *ip_only, "{src} -> {dst}");
            let tcp = rss_input(src.ip(), dst.ip(), Some((src.port(), dst.port())));
            assert_eq!(
                toeplitz_hash(&MS_KEY, &tcp),
                *with_tcp,
                "{src} -> {dst} TCP"
            );
        }
    }

    #[test]
    fn rss_steering_hashes_what_the_nic_hashes_and_indexes_the_reta() {
        let ue: IpAddr = "66.9.149.187".parse().unwrap();
        let local: Ipv4Addr = "161.142.100.80".parse().unwrap();
        let reta: Vec<u16> = (0..128).map(|i| (i % 3) as u16).collect();
        let both = RssSteering {
            key: MS_KEY.to_vec(),
            reta: reta.clone(),
            input: RssInput::L3SrcDst {
                local_v4: Some(local),
                local_v6: None,
            },
        };
        // The Microsoft IPv4-only vector above, through the RETA: 0x323e8fc2 % 128 = 66.
        assert_eq!(both.hash(ue), 0x323e_8fc2);
        assert_eq!(both.queue_for_ue(ue), usize::from(reta[0x42]));
        let src_only = RssSteering {
            input: RssInput::L3Src,
            ..both.clone()
        };
        assert_eq!(
            src_only.hash(ue),
            toeplitz_hash(&MS_KEY, &[66, 9, 149, 187])
        );
        let v6: IpAddr = "3ffe:2501:200:1fff::7".parse().unwrap();
        let both6 = RssSteering {
            input: RssInput::L3SrcDst {
                local_v4: None,
                local_v6: Some("3ffe:2501:200:3::1".parse().unwrap()),
            },
            ..both.clone()
        };
        assert_eq!(both6.hash(v6), 0x2cc1_8cd5);
        // An empty RETA (no RSS) puts everything on queue 0.
        let none = RssSteering {
            reta: Vec::new(),
            ..both
        };
        assert_eq!(none.queue_for_ue(ue), 0);
    }

    #[test]
    fn a_symmetric_key_hashes_both_directions_alike() {
        let key: Vec<u8> = [0x6d, 0x5a].repeat(20);
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let b: IpAddr = "192.168.200.1".parse().unwrap();
        assert_eq!(
            toeplitz_hash(&key, &rss_input(a, b, None)),
            toeplitz_hash(&key, &rss_input(b, a, None))
        );
    }

    #[test]
    fn ue_key_steering_matches_frame_steering() {
        let s = Steering::UeKey { queues: 4 };
        for i in 0..64u8 {
            let f = v4([10, 0, 1, i], [10, 0, 0, 1], 50);
            let ue = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i));
            assert_eq!(s.queue_for_ue(ue), queue_for_frame(&f, UeSide::Source, 4));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn bpf_program_agrees_with_rust() {
        for queues in [1usize, 2, 3, 4, 7] {
            for side in [UeSide::Source, UeSide::Destination] {
                let prog = cbpf::fanout_program(side, queues);
                for i in 0..500u32 {
                    let a = (0x0a00_0000u32 | i.wrapping_mul(2_654_435_761)).to_be_bytes();
                    let f = v4(a, [172, 16, (i >> 8) as u8, i as u8], 50);
                    let want = queue_for_frame(&f, side, queues) as u32;
                    assert_eq!(cbpf::interpret(&prog, &f), want);
                }
                let mut arp = vec![0u8; 60];
                arp[12..14].copy_from_slice(&[0x08, 0x06]);
                assert_eq!(cbpf::interpret(&prog, &arp), 0);
            }
        }
    }
}
