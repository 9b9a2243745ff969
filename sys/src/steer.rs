//! Steering by UE address: every frame of one UE (by its IP address, ESP and TCP alike) goes
//! to the same queue. The same function runs in Rust (in-memory pair, handoff of strays) and
//! as a classic-BPF program for `PACKET_FANOUT_CBPF`, so both backends agree.

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
