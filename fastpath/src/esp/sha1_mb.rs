//! HMAC-SHA-1-96 (RFC 2104, RFC 2404) of several packets with SHA-NI, two messages
//! interleaved: SHA1RNDS4 is a serial chain of long-latency instructions, so a second,
//! independent message fills the gaps (SHA-NI instructions reach only xmm0-15, which two
//! message states fill). A lane whose packet is done takes the next one.
//!
//! SHA-1 per FIPS 180-4 6.1.2; padding per 5.1.1. The single-message compression is
//! `stitch::compress`.

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::stitch::{self, Sha1NiKey};

/// One HMAC-SHA-1-96 of a burst.
pub(super) struct HmacJob<'a> {
    /// HMAC pad states of the packet's SA.
    pub(super) key: &'a Sha1NiKey,
    /// The authenticated bytes in the packet: ESP header, IV and ciphertext.
    pub(super) msg: &'a [u8],
    /// The ESN high half (RFC 4303 2.2.1), authenticated after `msg` but not sent.
    pub(super) seq_hi: Option<u32>,
    /// Where the 12-byte ICV goes.
    pub(super) icv: &'a mut [u8],
}

/// Where a lane is in its HMAC: inner blocks read from the packet, the padded inner tail,
/// the outer block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Body,
    Tail,
    Outer,
}

/// One message being hashed: its chaining state and where its blocks come from (separate,
/// so a block can be read while the state is written).
struct Lane<'a> {
    job: HmacJob<'a>,
    state: [u32; 5],
    src: Blocks<'a>,
}

/// The block sequence of one HMAC.
struct Blocks<'a> {
    /// Whole 64-byte blocks of the message still to hash.
    body: &'a [u8],
    phase: Phase,
    /// Next 64-byte block of `tail` (Tail, Outer).
    at: usize,
    /// `msg` bytes after the last whole block, the ESN suffix and the FIPS 180-4 padding;
    /// in the Outer phase, the outer block.
    tail: [u8; 128],
    tail_len: usize,
}

impl<'a> Lane<'a> {
    fn start(j: HmacJob<'a>) -> Self {
        let full = j.msg.len() / 64 * 64;
        let mut tail = [0u8; 128];
        let (body, rem) = j.msg.split_at(full);
        tail[..rem.len()].copy_from_slice(rem);
        let mut n = rem.len();
        if let Some(hi) = j.seq_hi {
            tail[n..n + 4].copy_from_slice(&hi.to_be_bytes());
            n += 4;
        }
        // FIPS 180-4 5.1.1; the ipad block already hashed counts towards the length.
        let bits = ((64 + full + n) as u64) * 8;
        tail[n] = 0x80;
        let tail_len = if n + 9 <= 64 { 64 } else { 128 };
        tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
        Lane {
            state: j.key.ipad,
            src: Blocks {
                body,
                phase: if full > 0 { Phase::Body } else { Phase::Tail },
                at: 0,
                tail,
                tail_len,
            },
            job: j,
        }
    }
}

impl Blocks<'_> {
    /// The next block to compress (always present until `advance` reports the end).
    fn block(&self) -> Option<&[u8; 64]> {
        match self.phase {
            Phase::Body => self.body.first_chunk::<64>(),
            Phase::Tail | Phase::Outer => self.tail.get(self.at..)?.first_chunk::<64>(),
        }
    }

    /// Moves past the block just compressed into `state`; returns true when the HMAC is
    /// complete (`state` is then the outer digest).
    fn advance(&mut self, state: &mut [u32; 5], key: &Sha1NiKey) -> bool {
        match self.phase {
            Phase::Body => {
                self.body = self.body.get(64..).unwrap_or_default();
                if self.body.is_empty() {
                    self.phase = Phase::Tail;
                }
                false
            }
            Phase::Tail => {
                self.at += 64;
                if self.at < self.tail_len {
                    return false;
                }
                // RFC 2104: outer hash over the 20-byte inner digest.
                self.tail = [0u8; 128];
                for (i, w) in state.iter().enumerate() {
                    self.tail[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
                }
                self.tail[20] = 0x80;
                self.tail[56..64].copy_from_slice(&((64u64 + 20) * 8).to_be_bytes());
                *state = key.opad;
                self.phase = Phase::Outer;
                self.at = 0;
                false
            }
            Phase::Outer => true,
        }
    }
}

/// Computes every job's ICV. The caller guarantees SHA-NI (a [`Sha1NiKey`] exists only
/// after its feature check).
pub(super) fn hmac_sha1_96<'a>(jobs: impl IntoIterator<Item = HmacJob<'a>>) {
    let mut lanes: [Option<Lane<'a>>; 2] = [None, None];
    let mut next = jobs.into_iter();
    loop {
        for lane in lanes.iter_mut().filter(|l| l.is_none()) {
            if let Some(j) = next.next() {
                *lane = Some(Lane::start(j));
            }
        }
        // A lane without a block cannot happen (`advance` ends it first); it is retired.
        let mut stuck = [false; 2];
        match &mut lanes {
            [Some(a), Some(b)] => match (a.src.block(), b.src.block()) {
                (Some(ba), Some(bb)) => {
                    // SAFETY: SHA-NI and SSE4.1 are present (see above).
                    unsafe { compress2(&mut a.state, ba, &mut b.state, bb) }
                }
                (x, y) => stuck = [x.is_none(), y.is_none()],
            },
            [Some(a), None] | [None, Some(a)] => match a.src.block() {
                // SAFETY: as above.
                Some(blk) => unsafe { stitch::compress(&mut a.state, blk, None) },
                None => stuck = [true, true],
            },
            [None, None] => break,
        }
        for (slot, stuck) in lanes.iter_mut().zip(stuck) {
            let Some(l) = slot else { continue };
            if stuck {
                l.state.zeroize();
                *slot = None;
            } else if l.src.advance(&mut l.state, l.job.key) {
                for (d, w) in l.job.icv.chunks_exact_mut(4).zip(l.state.iter().take(3)) {
                    d.copy_from_slice(&w.to_be_bytes());
                }
                l.state.zeroize();
                l.src.tail.zeroize();
                *slot = None;
            }
        }
    }
}

/// Two independent SHA-1 compressions, their rounds interleaved.
///
/// # Safety
/// The CPU must support SHA, SSSE3 and SSE4.1.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[allow(unused_assignments)] // the last quad-rounds' ring writes are dead
unsafe fn compress2(s0: &mut [u32; 5], b0: &[u8; 64], s1: &mut [u32; 5], b1: &[u8; 64]) {
    // Message words are big-endian; SHA1RNDS4 wants W[t] in the high dword.
    let bswap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
    // SAFETY: each state holds five u32; the first four are an unaligned 16-byte load.
    let a0 = _mm_shuffle_epi32::<0x1b>(unsafe { _mm_loadu_si128(s0.as_ptr().cast()) });
    // SAFETY: as above.
    let a1 = _mm_shuffle_epi32::<0x1b>(unsafe { _mm_loadu_si128(s1.as_ptr().cast()) });
    let e0_save = _mm_set_epi32(s0[4] as i32, 0, 0, 0);
    let e1_save = _mm_set_epi32(s1[4] as i32, 0, 0, 0);
    let (mut abcd0, mut abcd1) = (a0, a1);
    let (mut ep0, mut ep1) = (e0_save, e1_save);
    let mut ring0 = [_mm_setzero_si128(); 4];
    let mut ring1 = [_mm_setzero_si128(); 4];

    macro_rules! quad1 {
        ($r:literal, $f:literal, $blk:ident, $ring:ident, $abcd:ident, $ep:ident) => {{
            let m = if $r < 4 {
                // SAFETY: the block is 64 bytes; 16-byte unaligned load at offset 16 * r.
                let w = unsafe { _mm_loadu_si128($blk.as_ptr().add(16 * $r).cast()) };
                _mm_shuffle_epi8(w, bswap)
            } else {
                // FIPS 180-4 6.1.2 step 1, four words at a time.
                let t = _mm_sha1msg1_epu32($ring[$r % 4], $ring[($r + 1) % 4]);
                _mm_sha1msg2_epu32(_mm_xor_si128(t, $ring[($r + 2) % 4]), $ring[($r + 3) % 4])
            };
            $ring[$r % 4] = m;
            let e = if $r == 0 {
                _mm_add_epi32($ep, m)
            } else {
                _mm_sha1nexte_epu32($ep, m)
            };
            $ep = $abcd;
            $abcd = _mm_sha1rnds4_epu32::<$f>($abcd, e);
        }};
    }
    macro_rules! quad {
        ($r:literal, $f:literal) => {{
            quad1!($r, $f, b0, ring0, abcd0, ep0);
            quad1!($r, $f, b1, ring1, abcd1, ep1);
        }};
    }
    quad!(0, 0);
    quad!(1, 0);
    quad!(2, 0);
    quad!(3, 0);
    quad!(4, 0);
    quad!(5, 1);
    quad!(6, 1);
    quad!(7, 1);
    quad!(8, 1);
    quad!(9, 1);
    quad!(10, 2);
    quad!(11, 2);
    quad!(12, 2);
    quad!(13, 2);
    quad!(14, 2);
    quad!(15, 3);
    quad!(16, 3);
    quad!(17, 3);
    quad!(18, 3);
    quad!(19, 3);

    let e0 = _mm_sha1nexte_epu32(ep0, e0_save);
    let e1 = _mm_sha1nexte_epu32(ep1, e1_save);
    abcd0 = _mm_add_epi32(abcd0, a0);
    abcd1 = _mm_add_epi32(abcd1, a1);
    // SAFETY: as for the loads above.
    unsafe {
        _mm_storeu_si128(s0.as_mut_ptr().cast(), _mm_shuffle_epi32::<0x1b>(abcd0));
        _mm_storeu_si128(s1.as_mut_ptr().cast(), _mm_shuffle_epi32::<0x1b>(abcd1));
    }
    s0[4] = _mm_extract_epi32::<3>(e0) as u32;
    s1[4] = _mm_extract_epi32::<3>(e1) as u32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    /// Against the `hmac` + `sha1` crates for every message length 0..300 (each tail
    /// shape: one or two padding blocks), with and without the ESN suffix, several keys.
    #[test]
    fn matches_hmac_crate() {
        if !stitch::available() {
            eprintln!("SKIPPED: no SHA-NI");
            return;
        }
        let ikeys: Vec<Vec<u8>> = (0..3u8)
            .map(|k| (0..20).map(|i| i * 7 + k).collect())
            .collect();
        let keys: Vec<Sha1NiKey> = ikeys.iter().map(|k| Sha1NiKey::new(k).unwrap()).collect();
        let data: Vec<u8> = (0..300u32).map(|i| (i * 31 + 5) as u8).collect();
        let mut icvs = vec![[0u8; 12]; 300];
        let jobs: Vec<HmacJob<'_>> = icvs
            .iter_mut()
            .enumerate()
            .map(|(n, icv)| HmacJob {
                key: &keys[n % 3],
                msg: &data[..n],
                seq_hi: (n % 2 == 1).then_some(0x0102_0304 + n as u32),
                icv,
            })
            .collect();
        hmac_sha1_96(jobs);
        for (n, icv) in icvs.iter().enumerate() {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(&ikeys[n % 3]).unwrap();
            m.update(&data[..n]);
            if n % 2 == 1 {
                m.update(&(0x0102_0304 + n as u32).to_be_bytes());
            }
            assert_eq!(icv[..], m.finalize().into_bytes()[..12], "length {n}");
        }
    }
}
