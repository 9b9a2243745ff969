//! Outbound IVs, per suite family.
//!
//! - **CBC** (AES-CBC, 3DES-CBC): RFC 3602 2.1 asks for IVs an attacker cannot predict. They
//!   come from a CSPRNG per thread (`rand`'s `StdRng`, ChaCha12, seeded from the OS at the
//!   thread's first CBC packet). A worker is one pinned thread, so this is a generator per
//!   worker core shared by all of its SAs, instead of one per SA (a 320-byte state seeded
//!   at every install, and a 256-byte block made at the SA's first packet). Not `rand`'s
//!   `ThreadRng`: that one lives behind an `Rc` allocated at first use and reseeds with a
//!   system call every 64 KiB, and the per-packet path neither allocates nor makes system
//!   calls. With AES-NI, 16-byte IVs (AES-CBC) are AES-128 in counter mode under a secret
//!   key drawn from that ChaCha12 generator (the block cipher as a PRF over a counter, the
//!   generator of NIST SP 800-90A's CTR_DRBG without its derivation function), sixteen
//!   blocks at a time; the key and the counter's start are drawn again every
//!   [`CTR_REFILLS_PER_KEY`] refills. ChaCha12 cost about 20 ns an IV on this path (its
//!   256-byte block per 16 IVs); sixteen AES blocks are a few dozen cycles.
//! - **GCM / GMAC** (RFC 4106 / 4543): the IV need only be unique per key, but TS 33.203
//!   Annex I gives all four SAs of a set the same key and the same salt. An IV equal to the
//!   sequence number would repeat between the set's two outbound SAs (both count from 1) —
//!   the same nonce under the same key, which breaks GCM (keystream and GHASH key). So each
//!   outbound SA draws a random 64-bit mask at its creation and sends `seq XOR mask`: unique
//!   within the SA (XOR with a constant is a bijection, and the sequence number never
//!   repeats), and two SAs under one key collide only if their masks differ by exactly
//!   `seq_a XOR seq_b` for two numbers in use — about `n_a * n_b / 2^64` (the rule Linux's
//!   `seqiv` follows with its per-transform random salt).

use core::cell::RefCell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    /// The thread's CBC IV generator, made at its first use.
    static UNPREDICTABLE: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Fills a CBC IV slot from the thread's CSPRNG. Panics only if the OS has no entropy to
/// seed it with (as `rand`'s own thread generator does), once per thread.
#[inline]
pub(super) fn fill_unpredictable(slot: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let Ok(slot) = <&mut [u8; 16]>::try_from(&mut *slot) {
        if ctr::fill16(slot) {
            return;
        }
    }
    fill_from_thread_rng(slot);
}

/// Fills each 16-byte CBC IV slot of `slots` as [`fill_unpredictable`] does, with one
/// access to the thread's source for all of them (a burst's packets draw their IVs at once).
pub(super) fn fill_unpredictable16(slots: &mut [[u8; 16]]) {
    #[cfg(target_arch = "x86_64")]
    if ctr::fill16_many(slots) {
        return;
    }
    with_thread_rng(|rng| {
        for slot in slots.iter_mut() {
            fill_from(rng, slot);
        }
    });
}

/// Runs `f` on the thread's ChaCha12 generator, seeding it from the OS at first use.
#[inline]
fn with_thread_rng<R>(f: impl FnOnce(&mut StdRng) -> R) -> R {
    UNPREDICTABLE.with(|cell| f(cell.borrow_mut().get_or_insert_with(StdRng::from_entropy)))
}

/// Fills `slot` from the thread's ChaCha12 generator.
fn fill_from_thread_rng(slot: &mut [u8]) {
    with_thread_rng(|rng| fill_from(rng, slot));
}

/// Fills `slot` with the next bytes of `rng`'s stream, the same bytes `fill_bytes` would
/// give, drawn as 64-bit words: `next_u64` reads two words of the generator's block in
/// place, where `fill_bytes` goes through a copy loop of run-time length (a CBC IV is 16
/// or 8 bytes: two words or one).
#[inline]
fn fill_from(rng: &mut StdRng, slot: &mut [u8]) {
    let mut words = slot.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    let rest = words.into_remainder();
    if !rest.is_empty() {
        rng.fill_bytes(rest);
    }
}

/// AES-CTR refills (of [`ctr::BLOCKS`] IVs each) under one key before the key and counter
/// are drawn again from the thread's ChaCha12 generator: 2^16 refills, about a million IVs,
/// far below where AES-128 as a PRF over a counter can be told from random (about 2^64
/// blocks).
#[cfg(target_arch = "x86_64")]
const CTR_REFILLS_PER_KEY: u32 = 1 << 16;

#[cfg(target_arch = "x86_64")]
mod ctr;

/// The 8-byte GCM/GMAC IV of sequence number `seq` on an SA drawn with `mask`.
#[inline]
pub(super) fn counter_iv(seq: u64, mask: u64) -> [u8; 8] {
    (seq ^ mask).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn counter_ivs_are_unique_within_an_sa_and_differ_between_masks() {
        let (a, b) = (0x0123_4567_89ab_cdef_u64, 0xfedc_ba98_7654_3210_u64);
        let ivs_a: HashSet<[u8; 8]> = (1..=4096).map(|s| counter_iv(s, a)).collect();
        assert_eq!(ivs_a.len(), 4096, "one IV per sequence number");
        assert!((1..=4096).all(|s| !ivs_a.contains(&counter_iv(s, b))));
        // Without a mask the IV is the sequence number, big-endian (RFC 4106 8.1's counter).
        assert_eq!(counter_iv(0x0102, 0), [0, 0, 0, 0, 0, 0, 1, 2]);
    }

    /// The IV bytes are the generator's stream as `fill_bytes` gives it (no byte skipped,
    /// zeroed or repeated), at every slot length, one draw after another.
    #[test]
    fn words_drawn_match_the_generators_byte_stream() {
        let mut a = StdRng::seed_from_u64(0x5eed);
        let mut b = StdRng::seed_from_u64(0x5eed);
        for round in 0..8 {
            for len in [16usize, 8, 0, 1, 7, 9, 15, 17, 24, 33, 40] {
                let mut got = vec![0u8; len];
                let mut want = vec![0u8; len];
                fill_from(&mut a, &mut got);
                b.fill_bytes(&mut want);
                assert_eq!(got, want, "round {round} length {len}");
            }
        }
    }

    #[test]
    fn unpredictable_ivs_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let mut iv = [0u8; 16];
            fill_unpredictable(&mut iv);
            assert!(seen.insert(iv));
        }
    }
}
