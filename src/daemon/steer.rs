//! Which worker owns a UE under AF_PACKET fanout and the in-memory pair (`Steering::UeKey`);
//! the daemon itself asks the port (`Port::steering`), which also covers DPDK's RSS.

use std::net::IpAddr;

use akagate_sys::steer::{ue_key_of, Steering};

/// The word of `ue` the port steers on: the IPv4 address, or the low 32 bits of the IPv6
/// address (the same word `akagate_sys::steer::ue_key` reads from a frame).
pub fn ue_key(ue: IpAddr) -> u32 {
    ue_key_of(ue)
}

/// Index of the worker that owns `ue` among `workers` workers of an AF_PACKET or in-memory
/// port.
pub fn worker_for(ue: IpAddr, workers: usize) -> usize {
    Steering::UeKey { queues: workers }.queue_for_ue(ue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_sys::steer::{queue_for_frame, UeSide};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A minimal Ethernet + IP header with `src` as source address.
    fn frame_from(src: IpAddr) -> Vec<u8> {
        match src {
            IpAddr::V4(a) => {
                let mut f = vec![0u8; 14 + 20];
                f[12..14].copy_from_slice(&[0x08, 0x00]);
                f[14] = 0x45;
                f[26..30].copy_from_slice(&a.octets());
                f
            }
            IpAddr::V6(a) => {
                let mut f = vec![0u8; 14 + 40];
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                f[14] = 0x60;
                f[22..38].copy_from_slice(&a.octets());
                f
            }
        }
    }

    #[test]
    fn agrees_with_the_ports_frame_steering() {
        for workers in [1usize, 2, 3, 4, 8] {
            for i in 0..300u32 {
                let v4 = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i.wrapping_mul(40_503)));
                let v6 = IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    i as u16,
                    (i >> 3) as u16,
                    i.wrapping_mul(7) as u16,
                ));
                for ue in [v4, v6] {
                    let want = queue_for_frame(&frame_from(ue), UeSide::Source, workers);
                    assert_eq!(worker_for(ue, workers), want, "{ue} over {workers}");
                }
            }
        }
    }
}
