//! The IMPI index of the HSS: a flat open-addressed table of (hash tag, subscriber index),
//! the key itself read from the subscriber (docs/ARCHITECTURE.md, "The embedded HSS").
//!
//! A look-up is one slot line and the subscriber's IMPI, where a map of `String` keys read
//! the map's control bytes, its bucket and the key's own heap string: at 20,000 and more
//! subscribers every one of those lines is a cache miss, twice a registration (issue 10).
//! The hash and the compare fold ASCII case eight bytes a step, so a key is found whatever its
//! case without a lower-cased copy; both are keyed from the OS's randomness like
//! `akagate_proto::hash` (the keys are provisioned, never chosen by the network, but a lookup
//! key is).

use std::hash::BuildHasher;

use akagate_proto::swar;

/// An empty slot.
const EMPTY: u64 = 0;
/// The fewest slots of a table.
const MIN_SLOTS: usize = 16;

/// Subscriber indexes by their IMPI, ASCII case folded. Keys are not stored: every look-up is
/// given the subscribers' keys (`key_of`).
#[derive(Debug)]
pub(super) struct ImpiIndex {
    /// `(tag << 32) | (index + 1)` per slot, [`EMPTY`] if free; a power of two long, at most
    /// half full.
    slots: Box<[u64]>,
    /// Entries in use.
    len: usize,
    /// The hash's two keys.
    seed: [u64; 2],
}

impl Default for ImpiIndex {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl ImpiIndex {
    /// An empty index with room for `n` keys before it grows.
    pub(super) fn with_capacity(n: usize) -> Self {
        let os = std::collections::hash_map::RandomState::new();
        ImpiIndex {
            slots: vec![EMPTY; slots_for(n)].into_boxed_slice(),
            len: 0,
            seed: [os.hash_one(0x1d5_u64) | 1, os.hash_one(0x5eed_u64)],
        }
    }

    /// The index of `key`'s subscriber (ASCII case ignored), given every indexed
    /// subscriber's key by `key_of`.
    #[inline]
    pub(super) fn find<'a>(&self, key: &str, key_of: impl Fn(usize) -> &'a str) -> Option<usize> {
        let h = self.hash(key.as_bytes());
        let mask = self.slots.len() - 1;
        let tag = h >> 32;
        let mut at = h as usize & mask;
        loop {
            let s = *self.slots.get(at)?;
            if s == EMPTY {
                return None;
            }
            let i = (s as u32 - 1) as usize;
            if s >> 32 == tag && eq_folded(key_of(i).as_bytes(), key.as_bytes()) {
                return Some(i);
            }
            at = (at + 1) & mask;
        }
    }

    /// Indexes `key` as subscriber `index`, unless a key equal to it (ASCII case ignored) is
    /// indexed already: then its index is the error. `key_of` gives every indexed key (not
    /// `key`'s own: `index` need not be a subscriber yet). `None`: `index` does not fit.
    pub(super) fn insert<'a>(
        &mut self,
        key: &str,
        index: usize,
        key_of: impl Fn(usize) -> &'a str,
    ) -> Option<Result<(), usize>> {
        let id = u32::try_from(index).ok().filter(|&i| i < u32::MAX)? + 1;
        if let Some(i) = self.find(key, &key_of) {
            return Some(Err(i));
        }
        if 2 * (self.len + 1) > self.slots.len() {
            let grown = vec![EMPTY; 2 * self.slots.len()].into_boxed_slice();
            let old = std::mem::replace(&mut self.slots, grown);
            for &s in old.iter().filter(|&&s| s != EMPTY) {
                let h = self.hash(key_of((s as u32 - 1) as usize).as_bytes());
                self.place(h, s as u32);
            }
        }
        let h = self.hash(key.as_bytes());
        self.place(h, id);
        self.len += 1;
        Some(Ok(()))
    }

    /// Puts `id` (index + 1) of hash `h` in the first free slot from its home.
    fn place(&mut self, h: u64, id: u32) {
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        while self.slots.get(at).is_some_and(|&s| s != EMPTY) {
            at = (at + 1) & mask;
        }
        if let Some(s) = self.slots.get_mut(at) {
            *s = (h >> 32) << 32 | u64::from(id);
        }
    }

    /// The keyed hash of `key` with ASCII case folded: every byte with its `0x20` bit set,
    /// eight bytes a step (what `to_ascii_lowercase` does to a letter, and the same for a
    /// key and its lower-cased form; the compare tells apart what this folds together).
    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        const CASE: u64 = 0x2020_2020_2020_2020;
        let [k0, k1] = self.seed;
        let n = key.len();
        let mut h = fold(k1 ^ n as u64, k0);
        let mut words = key.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
            h = fold(h ^ (w | CASE), k0);
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            // The last eight bytes (overlapping the words: the length is in the hash
            // already), or the whole of a shorter key.
            let w = match swar::word_at(key, n.wrapping_sub(8)) {
                Some(w) => w,
                None => tail.iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b)),
            };
            h = fold(h ^ (w | CASE), k0);
        }
        fold(h, k1 | 1)
    }

    /// The longest run of slots a look-up of an indexed key walks (for tests).
    #[cfg(test)]
    fn longest_probe(&self, key_of: impl Fn(usize) -> u64) -> usize {
        let mask = self.slots.len() - 1;
        (self.slots.iter().enumerate())
            .filter(|(_, &s)| s != EMPTY)
            .map(|(at, &s)| {
                let home = key_of((s as u32 - 1) as usize) as usize & mask;
                ((at + self.slots.len() - home) & mask) + 1
            })
            .max()
            .unwrap_or(0)
    }
}

/// The slots of a table holding `n` keys at most half full.
fn slots_for(n: usize) -> usize {
    n.saturating_mul(2).max(MIN_SLOTS).next_power_of_two()
}

/// The folded 128-bit product of `a` and `b` (the mix of foldhash and wyhash).
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    p as u64 ^ (p >> 64) as u64
}

/// Whether `a` and `b` are equal with ASCII case ignored (`eq_ignore_ascii_case`): the
/// bytes compared as they are first (a key is almost always given in its provisioned case),
/// then eight at a time lower-cased.
#[inline]
pub(super) fn eq_folded(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.eq_ignore_ascii_case(b);
    }
    let same = |at: usize| {
        let (x, y) = (swar::word_at(a, at), swar::word_at(b, at));
        x.map(swar::lower_ascii_word) == y.map(swar::lower_ascii_word)
    };
    (0..n / 8).all(|i| same(8 * i)) && same(n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("00101{i:010}@ims.mnc001.mcc001.3gppnetwork.org"))
            .collect()
    }

    fn index_of(keys: &[String]) -> ImpiIndex {
        let mut ix = ImpiIndex::default();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.insert(k, i, |j| &keys[j]), Some(Ok(())), "{k}");
        }
        ix
    }

    /// Every key is found at its index in any case, through every growth; keys not indexed
    /// (one byte changed, cut, lengthened) are not; a key indexed twice is refused with the
    /// first one's index.
    #[test]
    fn keys_are_found_in_any_case_and_only_they() {
        let keys = keys(5_000);
        let ix = index_of(&keys);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.find(k, |j| &keys[j]), Some(i));
            assert_eq!(ix.find(&k.to_ascii_uppercase(), |j| &keys[j]), Some(i));
            let mut flipped = k.clone().into_bytes();
            flipped[i % k.len()] ^= 0x40; // digit to letter, letter to punctuation: never a key
            let flipped = String::from_utf8(flipped).unwrap();
            assert_eq!(ix.find(&flipped, |j| &keys[j]), None, "{flipped}");
            assert_eq!(ix.find(&k[..k.len() - 1], |j| &keys[j]), None);
            assert_eq!(ix.find(&format!("{k}x"), |j| &keys[j]), None);
        }
        let mut ix = ix;
        let again = keys[77].to_ascii_uppercase();
        assert_eq!(ix.insert(&again, 9_999, |j| &keys[j]), Some(Err(77)));
        assert_eq!(ix.insert("x", u32::MAX as usize, |j| &keys[j]), None);
        // Short keys: the byte path.
        let short: Vec<String> = ["", "a", "Ab", "sip:x", "1234567"].map(String::from).into();
        let ix = index_of(&short);
        for (i, k) in short.iter().enumerate() {
            assert_eq!(ix.find(&k.to_ascii_uppercase(), |j| &short[j]), Some(i));
        }
        assert_eq!(ix.find("b", |j| &short[j]), None);
    }

    /// The folded compare and hash agree with `eq_ignore_ascii_case` at every length and
    /// position, bytes ≥ 0x80 and the letters' neighbours included.
    #[test]
    fn folded_compare_and_hash_are_eq_ignore_ascii_case() {
        let ix = ImpiIndex::default();
        for n in 0..40 {
            let base: Vec<u8> = (0..n).map(|i| b"sip:0@ims-x.org\xc3\xa9"[i % 17]).collect();
            for i in 0..n {
                for c in [
                    b'A', b'Z', b'@', b'[', b'a', b'z', b'`', b'{', 0xc1, 0xe1, 0xff,
                ] {
                    let mut b = base.clone();
                    b[i] = c;
                    let want = b.eq_ignore_ascii_case(&base);
                    assert_eq!(eq_folded(&b, &base), want, "{b:?}");
                    if want {
                        assert_eq!(ix.hash(&b), ix.hash(&base));
                    }
                }
            }
        }
    }

    /// 100,000 IMPIs of one PLMN, numbered in order (the provisioned form): no look-up walks
    /// more than a few slots.
    #[test]
    fn numbered_impis_spread_over_the_table() {
        let keys = keys(100_000);
        let ix = index_of(&keys);
        let longest = ix.longest_probe(|j| ix.hash(keys[j].as_bytes()));
        assert!(longest <= 40, "a look-up walks {longest} slots");
    }
}
