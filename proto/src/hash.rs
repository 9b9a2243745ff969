//! The hasher of every map keyed by what the network chooses (IMPIs, branches, UE addresses):
//! foldhash, keyed from the OS's randomness, in place of std's SipHash-1-3.
//!
//! Why keyed: the keys of these maps come from UEs (an IMPI in a REGISTER, a Via branch, a
//! source address), so an unkeyed hash would let a UE choose colliding keys and make every
//! lookup linear (HashDoS). foldhash mixes a process-wide random secret and a per-map seed into
//! every fold (its "minimally DoS-resistant" design): no fixed key set collides in every map.
//! foldhash's own `RandomState` seeds itself from addresses and the clock; [`KeyedState`]
//! takes both seeds from std's `RandomState` instead, whose keys come from the OS.
//! It does not claim to resist an attacker who observes the hash outputs or times many
//! lookups to recover the seed; what bounds that here is that no map exposes its hashes or
//! iteration order on the wire, and the per-source limits (`[limits]`) cap how many entries
//! one source can insert. It costs a few nanoseconds per key where SipHash cost tens: the maps
//! of a registration (HSS, transactions, the worker's UE map and neighbour cache) hash about
//! a dozen keys per registration (issue 10, docs/BENCHMARKS.md "Registration cost").

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::fast::{FoldHasher, SeedableRandomState};
use foldhash::SharedSeed;

/// The keyed hasher builder: a process-wide secret and a fresh seed per map, both from the
/// OS's randomness.
#[derive(Clone, Debug)]
pub struct KeyedState(SeedableRandomState);

impl Default for KeyedState {
    fn default() -> Self {
        static SHARED: OnceLock<SharedSeed> = OnceLock::new();
        // std's RandomState: SipHash keys drawn from the OS once per thread, then stepped per
        // call; hashing a constant under them yields an unpredictable 64-bit seed.
        let os = std::collections::hash_map::RandomState::new();
        let shared = SHARED.get_or_init(|| SharedSeed::from_u64(os.hash_one(0x5eed_u64)));
        KeyedState(SeedableRandomState::with_seed(os.hash_one(1u64), shared))
    }
}

impl BuildHasher for KeyedState {
    type Hasher = FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// A `HashMap` with the keyed [`KeyedState`] hasher.
pub type KeyedMap<K, V> = HashMap<K, V, KeyedState>;

/// A `HashSet` with the keyed [`KeyedState`] hasher.
pub type KeyedSet<K> = HashSet<K, KeyedState>;

/// An empty [`KeyedMap`] with its own random seed.
pub fn keyed_map<K, V>() -> KeyedMap<K, V> {
    KeyedMap::with_hasher(KeyedState::default())
}

/// An empty [`KeyedMap`] with room for `n` entries.
pub fn keyed_map_with_capacity<K, V>(n: usize) -> KeyedMap<K, V> {
    KeyedMap::with_capacity_and_hasher(n, KeyedState::default())
}

/// An empty [`KeyedSet`] with its own random seed.
pub fn keyed_set<K>() -> KeyedSet<K> {
    KeyedSet::with_hasher(KeyedState::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_seeded_apart() {
        // Two maps hash the same key differently: a key set chosen against one map's seed
        // says nothing about another's.
        let (a, b) = (KeyedState::default(), KeyedState::default());
        let differ = (0..8u64).any(|k| a.hash_one(k) != b.hash_one(k));
        assert!(differ);
        let mut m = keyed_map();
        m.insert("sip:a@x", 1);
        assert_eq!(m.get("sip:a@x"), Some(&1));
    }
}
