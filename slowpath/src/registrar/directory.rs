//! The location directory of slowpath shards (docs/ARCHITECTURE.md, "Slowpath shards"): each
//! shard publishes the active binding of every registration it owns (IMPUs, SA set, transport,
//! contact) and the inbound SPIs of its live sets, and any shard reads them to reach a UE
//! another shard registered — the callee of a call, or a callee answering one. Read-mostly:
//! a write per registration change, reads per cross-shard request.
//!
//! Striped `RwLock`d hash maps rather than one lock: a key (or SPI) takes the read lock of
//! its stripe only, for a clone of an `Arc`, and each shard writes only its own keys, so
//! shards do not wait for each other on the SIP path. (A lock-free map from a crate such as
//! `papaya` or `dashmap` would do as well; none is in this build's dependency set, and with
//! 64 stripes and no I/O under a lock the difference is not measurable at these rates.)

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use akagate_proto::ipc::{SaSet, Transport};

/// Stripes per map.
const STRIPES: usize = 64;

/// Where a registration another shard owns is reached.
#[derive(Clone, Debug)]
pub struct Located {
    /// Its public identities; the first is the default one.
    pub impus: Vec<String>,
    /// Its active SA set.
    pub set: SaSet,
    /// The transport it registered over.
    pub proto: Transport,
    /// Its registered Contact URI.
    pub contact: String,
    /// The inbound SPIs of its live sets: the active set's two first, then the old set's.
    pub spis: Vec<u32>,
    /// The shard that owns it.
    pub shard: usize,
}

/// One stripe of the key map.
type KeyStripe = RwLock<HashMap<String, Arc<Located>>>;
/// One shard's traffic notes: (registration key, SPI).
type Notes = Mutex<Vec<(String, u32)>>;

/// Registration key -> [`Located`], and inbound SPI -> registration key, for every shard.
pub struct LocationDirectory {
    keys: Box<[KeyStripe]>,
    spis: Box<[RwLock<HashMap<u32, String>>]>,
    /// Per shard: (key, SPI) of traffic another shard saw over a registration's new active
    /// set while its old set still lived, for the owner to retire the old set (TS 33.203
    /// 7.4). Rare: once per re-registration at most.
    notes: Box<[Notes]>,
}

impl core::fmt::Debug for LocationDirectory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocationDirectory").finish_non_exhaustive()
    }
}

impl LocationDirectory {
    /// An empty directory for `shards` shards.
    pub fn new(shards: usize) -> Self {
        LocationDirectory {
            keys: (0..STRIPES).map(|_| RwLock::default()).collect(),
            spis: (0..STRIPES).map(|_| RwLock::default()).collect(),
            notes: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// Traffic over inbound SPI `spi` of registration `key`, which another shard owns: if
    /// that is the first use of its new active set while the old one lives, its owner is
    /// told ([`LocationDirectory::take_notes`]).
    pub fn note_traffic(&self, key: &str, spi: u32) {
        let Some(l) = self.get(key) else {
            return;
        };
        if l.spis.len() > 2 && l.spis[..2].contains(&spi) {
            if let Some(n) = self.notes.get(l.shard) {
                n.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((key.to_string(), spi));
            }
        }
    }

    /// The traffic notes for `shard`'s registrations.
    pub fn take_notes(&self, shard: usize) -> Vec<(String, u32)> {
        match self.notes.get(shard) {
            Some(n) => std::mem::take(&mut *n.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        }
    }
}

fn stripe_of<T: Hash + ?Sized>(v: &T) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

impl LocationDirectory {
    /// Publishes (or with `None` withdraws) the binding of registration `key`; only the
    /// shard that owns `key` calls this.
    pub fn publish(&self, key: &str, binding: Option<Located>) {
        let keys = &self.keys[stripe_of(key)];
        // A poisoned stripe only means a panic elsewhere while it was held; the map is whole.
        let mut map = keys.write().unwrap_or_else(|e| e.into_inner());
        let old = match binding {
            Some(b) => {
                for &spi in &b.spis {
                    self.spis[stripe_of(&spi)]
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(spi, key.to_string());
                }
                let new_spis = b.spis.clone();
                map.insert(key.to_string(), Arc::new(b))
                    .map(|o| (o, new_spis))
            }
            None => map.remove(key).map(|o| (o, Vec::new())),
        };
        drop(map);
        if let Some((old, keep)) = old {
            for spi in old.spis.iter().filter(|s| !keep.contains(s)) {
                let mut m = self.spis[stripe_of(spi)]
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                if m.get(spi).is_some_and(|k| k == key) {
                    m.remove(spi);
                }
            }
        }
    }

    /// The binding of registration `key`, whichever shard owns it.
    pub fn get(&self, key: &str) -> Option<Arc<Located>> {
        let map = self.keys[stripe_of(key)]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    /// The registration whose live set has inbound SPI `spi`.
    pub fn key_of_spi(&self, spi: u32) -> Option<String> {
        let map = self.spis[stripe_of(&spi)]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.get(&spi).cloned()
    }

    /// Number of published registrations (all shards).
    pub fn len(&self) -> usize {
        (self.keys.iter())
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether nothing is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
