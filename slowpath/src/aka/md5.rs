//! MD5 (RFC 1321) in one call, for the digest's strings (RFC 2617 3.2.2, joined by
//! [`super::digest`]): the whole blocks compressed where they lie, the last one or two
//! padded on the stack, with none of a streaming hasher's buffering. MD5 has no
//! data-dependent branches or table look-ups.

/// Per-round shift amounts (RFC 1321 3.4).
const S: [[u32; 4]; 4] = [
    [7, 12, 17, 22],
    [5, 9, 14, 20],
    [4, 11, 16, 23],
    [6, 10, 15, 21],
];

/// `floor(abs(sin(i + 1)) * 2^32)` for step `i` (RFC 1321 3.4), as the RFC lists them.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// The initial state A, B, C, D (RFC 1321 3.3).
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Compresses one 64-byte block into `state` (RFC 1321 3.4).
#[inline]
fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut x = [0u32; 16];
    for (w, c) in x.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    // One step: `a = b + ((a + f(b, c, d) + x[g] + K[i]) <<< s)`, the registers renamed
    // by the caller's order rather than moved. Unrolled, so `i`, `g` and `s` are constants.
    macro_rules! step {
        ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $i:expr, $g:expr, $s:expr) => {
            $a = $b.wrapping_add(
                $a.wrapping_add($f($b, $c, $d))
                    .wrapping_add(x[$g])
                    .wrapping_add(K[$i])
                    .rotate_left($s),
            );
        };
    }
    let ff = |b: u32, c: u32, d: u32| (b & c) | (!b & d);
    let gg = |b: u32, c: u32, d: u32| (d & b) | (!d & c);
    let hh = |b: u32, c: u32, d: u32| b ^ c ^ d;
    let ii = |b: u32, c: u32, d: u32| c ^ (b | !d);
    macro_rules! round {
        ($f:expr, $r:expr, $g:expr) => {
            let mut i = 16 * $r;
            while i < 16 * $r + 16 {
                step!($f, a, b, c, d, i, $g(i), S[$r][0]);
                step!($f, d, a, b, c, i + 1, $g(i + 1), S[$r][1]);
                step!($f, c, d, a, b, i + 2, $g(i + 2), S[$r][2]);
                step!($f, b, c, d, a, i + 3, $g(i + 3), S[$r][3]);
                i += 4;
            }
        };
    }
    round!(ff, 0, |i: usize| i);
    round!(gg, 1, |i: usize| (5 * i + 1) % 16);
    round!(hh, 2, |i: usize| (3 * i + 5) % 16);
    round!(ii, 3, |i: usize| (7 * i) % 16);
    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// The MD5 of `bytes` (RFC 1321), by blocks; the last one or two padded on the stack.
pub(crate) fn md5(bytes: &[u8]) -> [u8; 16] {
    let mut state = INIT;
    let mut blocks = bytes.chunks_exact(64);
    for b in &mut blocks {
        // `chunks_exact(64)` hands out 64-byte slices.
        if let Ok(b) = <&[u8; 64]>::try_from(b) {
            compress(&mut state, b);
        }
    }
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    // The length in bits, little-endian, in the last eight bytes of the last block.
    let end = if rest.len() < 56 { 64 } else { 128 };
    let bits = (bytes.len() as u64).wrapping_mul(8);
    tail[end - 8..end].copy_from_slice(&bits.to_le_bytes());
    for b in tail[..end].chunks_exact(64) {
        if let Ok(b) = <&[u8; 64]>::try_from(b) {
            compress(&mut state, b);
        }
    }
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::md5::{Digest, Md5};

    /// RFC 1321 A.5's test suite.
    #[test]
    fn rfc1321_test_suite() {
        let cases: [(&str, &str); 7] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex::encode(md5(input.as_bytes())), want, "{input:?}");
        }
    }

    /// Every length from 0 to 300 (each padding case: 55, 56, 63, 64 ... bytes) of varied
    /// bytes: the digest the `md-5` crate computes.
    #[test]
    fn every_length_is_the_md5_crates() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..=300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let want: [u8; 16] = Md5::digest(&bytes).into();
            assert_eq!(md5(&bytes), want, "length {len}");
        }
    }
}
