//! MD5 (RFC 1321) of the short strings RFC 2617's digest hashes: the message joined from its
//! parts on the stack, padded in place (RFC 1321 3.1-3.2) and compressed block by block, then
//! written as lower-case hex. The `md-5` crate's streaming wrapper (block buffering, a second
//! pass for the padding) cost a quarter again of the compression for these few blocks; it stays
//! the path of a message longer than [`JOINED_MAX`] and the tests' reference.

/// The longest joined message hashed on the stack; a longer one goes through the `md-5` crate.
pub(crate) const JOINED_MAX: usize = 512;

/// The stack buffer: [`JOINED_MAX`] bytes, the `0x80` byte and the 64-bit length, in whole
/// blocks.
const BUF_LEN: usize = (JOINED_MAX + 8) / 64 * 64 + 64;

/// T[i] = floor(2^32 * |sin(i + 1)|) (RFC 1321 3.4).
const T: [u32; 64] = [
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

/// Applies one 64-byte block to `state` (RFC 1321 3.4).
fn compress(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut x = [0u32; 16];
    for (w, b) in x.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    // a = b + ((a + F(b, c, d) + X[k] + T[i]) <<< s), F written with one operation fewer
    // where an identity allows: F = d ^ (b & (c ^ d)), G = c ^ (d & (b ^ c)).
    macro_rules! step {
        ($a:ident, $b:ident, $fun:expr, $k:expr, $s:expr, $i:expr) => {
            $a = $b.wrapping_add(
                $a.wrapping_add($fun)
                    .wrapping_add(x[$k])
                    .wrapping_add(T[$i])
                    .rotate_left($s),
            )
        };
    }
    macro_rules! f {
        ($a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $s:expr, $i:expr) => {
            step!($a, $b, $d ^ ($b & ($c ^ $d)), $k, $s, $i)
        };
    }
    macro_rules! g {
        ($a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $s:expr, $i:expr) => {
            step!($a, $b, $c ^ ($d & ($b ^ $c)), $k, $s, $i)
        };
    }
    macro_rules! h {
        ($a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $s:expr, $i:expr) => {
            step!($a, $b, $b ^ $c ^ $d, $k, $s, $i)
        };
    }
    macro_rules! i {
        ($a:ident, $b:ident, $c:ident, $d:ident, $k:expr, $s:expr, $i:expr) => {
            step!($a, $b, $c ^ ($b | !$d), $k, $s, $i)
        };
    }
    // Round 1 (RFC 1321 3.4).
    f!(a, b, c, d, 0, 7, 0);
    f!(d, a, b, c, 1, 12, 1);
    f!(c, d, a, b, 2, 17, 2);
    f!(b, c, d, a, 3, 22, 3);
    f!(a, b, c, d, 4, 7, 4);
    f!(d, a, b, c, 5, 12, 5);
    f!(c, d, a, b, 6, 17, 6);
    f!(b, c, d, a, 7, 22, 7);
    f!(a, b, c, d, 8, 7, 8);
    f!(d, a, b, c, 9, 12, 9);
    f!(c, d, a, b, 10, 17, 10);
    f!(b, c, d, a, 11, 22, 11);
    f!(a, b, c, d, 12, 7, 12);
    f!(d, a, b, c, 13, 12, 13);
    f!(c, d, a, b, 14, 17, 14);
    f!(b, c, d, a, 15, 22, 15);
    // Round 2 (RFC 1321 3.4).
    g!(a, b, c, d, 1, 5, 16);
    g!(d, a, b, c, 6, 9, 17);
    g!(c, d, a, b, 11, 14, 18);
    g!(b, c, d, a, 0, 20, 19);
    g!(a, b, c, d, 5, 5, 20);
    g!(d, a, b, c, 10, 9, 21);
    g!(c, d, a, b, 15, 14, 22);
    g!(b, c, d, a, 4, 20, 23);
    g!(a, b, c, d, 9, 5, 24);
    g!(d, a, b, c, 14, 9, 25);
    g!(c, d, a, b, 3, 14, 26);
    g!(b, c, d, a, 8, 20, 27);
    g!(a, b, c, d, 13, 5, 28);
    g!(d, a, b, c, 2, 9, 29);
    g!(c, d, a, b, 7, 14, 30);
    g!(b, c, d, a, 12, 20, 31);
    // Round 3 (RFC 1321 3.4).
    h!(a, b, c, d, 5, 4, 32);
    h!(d, a, b, c, 8, 11, 33);
    h!(c, d, a, b, 11, 16, 34);
    h!(b, c, d, a, 14, 23, 35);
    h!(a, b, c, d, 1, 4, 36);
    h!(d, a, b, c, 4, 11, 37);
    h!(c, d, a, b, 7, 16, 38);
    h!(b, c, d, a, 10, 23, 39);
    h!(a, b, c, d, 13, 4, 40);
    h!(d, a, b, c, 0, 11, 41);
    h!(c, d, a, b, 3, 16, 42);
    h!(b, c, d, a, 6, 23, 43);
    h!(a, b, c, d, 9, 4, 44);
    h!(d, a, b, c, 12, 11, 45);
    h!(c, d, a, b, 15, 16, 46);
    h!(b, c, d, a, 2, 23, 47);
    // Round 4 (RFC 1321 3.4).
    i!(a, b, c, d, 0, 6, 48);
    i!(d, a, b, c, 7, 10, 49);
    i!(c, d, a, b, 14, 15, 50);
    i!(b, c, d, a, 5, 21, 51);
    i!(a, b, c, d, 12, 6, 52);
    i!(d, a, b, c, 3, 10, 53);
    i!(c, d, a, b, 10, 15, 54);
    i!(b, c, d, a, 1, 21, 55);
    i!(a, b, c, d, 8, 6, 56);
    i!(d, a, b, c, 15, 10, 57);
    i!(c, d, a, b, 6, 15, 58);
    i!(b, c, d, a, 13, 21, 59);
    i!(a, b, c, d, 4, 6, 60);
    i!(d, a, b, c, 11, 10, 61);
    i!(c, d, a, b, 2, 15, 62);
    i!(b, c, d, a, 9, 21, 63);
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// MD5 of `parts` joined by `:`, or `None` when the joined message is longer than
/// [`JOINED_MAX`].
pub(crate) fn md5_joined(parts: &[&[u8]]) -> Option<[u8; 16]> {
    let mut buf = [0u8; BUF_LEN];
    let mut len = 0;
    for (i, p) in parts.iter().enumerate() {
        let sep = usize::from(i > 0);
        let end = len + sep + p.len();
        if end > JOINED_MAX {
            return None;
        }
        let dst = buf.get_mut(len..end)?;
        if let Some((colon, rest)) = dst.split_first_mut().filter(|_| sep == 1) {
            *colon = b':';
            rest.copy_from_slice(p);
        } else {
            dst.copy_from_slice(p);
        }
        len = end;
    }
    // RFC 1321 3.1-3.2: a 1 bit, zeros to 56 bytes mod 64, the length in bits (LE).
    *buf.get_mut(len)? = 0x80;
    let blocks = (len + 8) / 64 + 1;
    let end = blocks * 64;
    buf.get_mut(end - 8..end)?
        .copy_from_slice(&(len as u64).wrapping_mul(8).to_le_bytes());
    let mut state = INIT;
    for block in buf[..end].chunks_exact(64) {
        compress(&mut state, block.try_into().ok()?);
    }
    let mut out = [0u8; 16];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_le_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    /// RFC 1321 A.5's test suite.
    #[test]
    fn rfc1321_test_suite() {
        for (msg, hex) in [
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
        ] {
            assert_eq!(
                md5_joined(&[msg.as_bytes()]).map(hex::encode).as_deref(),
                Some(hex),
                "{msg:?}"
            );
        }
    }

    /// Every length up to [`JOINED_MAX`], split into parts at varying places (every padding
    /// boundary: 55, 56, 63, 64 bytes mod 64), against the `md-5` crate; past it, `None`.
    #[test]
    fn joined_parts_hash_as_the_crate_hashes_their_join() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..JOINED_MAX + 2)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in 0..=JOINED_MAX {
            let whole = &data[..len];
            let cut = len / 3;
            for parts in [
                vec![whole],
                vec![&whole[..cut], &whole[cut..]],
                vec![
                    &whole[..0],
                    &whole[..cut],
                    &whole[..len.saturating_sub(cut + 2)],
                ],
            ] {
                let joined = parts.join(&b":"[..]);
                let want: [u8; 16] = Md5::digest(&joined).into();
                let got = md5_joined(&parts);
                if joined.len() <= JOINED_MAX {
                    assert_eq!(got, Some(want), "len {}", joined.len());
                } else {
                    assert_eq!(got, None, "len {}", joined.len());
                }
            }
        }
        assert_eq!(md5_joined(&[&data[..JOINED_MAX + 1]]), None);
    }
}
