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

use akagate_proto::ipc::{Flow, SaSet, Transport};

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
    /// The flow its active set is bound to, if it registered without sec-agree (TS 24.229
    /// 5.2.2; TLS included): requests and answers on that flow count as coming through the
    /// set's `spi_ps`.
    pub flow: Option<Flow>,
}

/// One stripe of the key map.
type KeyStripe = RwLock<HashMap<String, Arc<Located>>>;
/// One shard's traffic notes: (registration key, SPI).
type Notes = Mutex<Vec<(String, u32)>>;

/// One stripe of the watch map: registration key -> watching shards.
type WatchStripe = Mutex<HashMap<String, Vec<usize>>>;

/// A registration another shard owns ended while this shard held dialogs with it.
#[derive(Clone, Debug)]
pub(crate) struct Ended {
    /// The registration.
    pub key: String,
    /// Why it ended.
    pub why: crate::registrar::RegEnd,
    /// Its binding as it was published just before it ended (to send the departing UE its
    /// BYE over the set it still has), if it had one.
    pub last: Option<Arc<Located>>,
}

/// Registration key -> [`Located`], and inbound SPI -> registration key, for every shard.
pub struct LocationDirectory {
    keys: Box<[KeyStripe]>,
    spis: Box<[RwLock<HashMap<u32, String>>]>,
    /// Flow of a published flow-bound set -> its spi_ps.
    flows: Box<[RwLock<HashMap<Flow, u32>>]>,
    /// Registered Contact (lower case) -> registration key: proxy mode's requests from the
    /// core name a UE by its contact when they carry no Path of ours (TS 24.229 5.2.7).
    contacts: Box<[RwLock<HashMap<String, String>>]>,
    /// Per shard: (key, SPI) of traffic another shard saw over a registration's new active
    /// set while its old set still lived, for the owner to retire the old set (TS 33.203
    /// 7.4). Rare: once per re-registration at most.
    notes: Box<[Notes]>,
    /// Registration key -> the shards holding dialogs with it as callee (a call across
    /// shards belongs to the caller's shard), told when it ends.
    watchers: Box<[WatchStripe]>,
    /// Per shard: registrations of other shards that ended while it watched them.
    ended: Box<[Mutex<Vec<Ended>>]>,
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
            flows: (0..STRIPES).map(|_| RwLock::default()).collect(),
            contacts: (0..STRIPES).map(|_| RwLock::default()).collect(),
            notes: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            watchers: (0..STRIPES).map(|_| Mutex::default()).collect(),
            ended: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
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

    /// `shard` holds a dialog with registration `key` (another shard's): when `key` ends,
    /// `shard` hears of it ([`LocationDirectory::take_ended`]) to release the dialog (TS
    /// 24.229 5.2.8.1.2). A watch lasts until `key` ends or `shard` holds no dialog with it
    /// ([`LocationDirectory::unwatch`]).
    pub(crate) fn watch(&self, key: &str, shard: usize) {
        let mut m = self.watchers[stripe_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let shards = m.entry(key.to_string()).or_default();
        if !shards.contains(&shard) {
            shards.push(shard);
        }
    }

    /// `shard` holds no dialog with registration `key` any more.
    pub(crate) fn unwatch(&self, key: &str, shard: usize) {
        let mut m = self.watchers[stripe_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(shards) = m.get_mut(key) {
            shards.retain(|&s| s != shard);
            if shards.is_empty() {
                m.remove(key);
            }
        }
    }

    /// Registration `key` ends (`why`; called by its owner before it withdraws the binding):
    /// every shard watching it is told.
    pub(crate) fn announce_end(&self, key: &str, why: crate::registrar::RegEnd) {
        let watching = self.watchers[stripe_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let Some(shards) = watching else {
            return;
        };
        let last = self.get(key);
        for shard in shards {
            if let Some(q) = self.ended.get(shard) {
                q.lock().unwrap_or_else(|e| e.into_inner()).push(Ended {
                    key: key.to_string(),
                    why,
                    last: last.clone(),
                });
            }
        }
    }

    /// The registrations `shard` watched that ended since the last call.
    pub(crate) fn take_ended(&self, shard: usize) -> Vec<Ended> {
        match self.ended.get(shard) {
            Some(q) => std::mem::take(&mut *q.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
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
                if let Some(flow) = b.flow {
                    self.flows[stripe_of(&flow)]
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(flow, b.set.spi_ps);
                }
                for &spi in &b.spis {
                    self.spis[stripe_of(&spi)]
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(spi, key.to_string());
                }
                let contact = b.contact.to_ascii_lowercase();
                self.contacts[stripe_of(contact.as_str())]
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(contact, key.to_string());
                let new_spis = b.spis.clone();
                map.insert(key.to_string(), Arc::new(b))
                    .map(|o| (o, new_spis))
            }
            None => map.remove(key).map(|o| (o, Vec::new())),
        };
        drop(map);
        if let Some((old, _)) = &old {
            self.withdraw_flow(old, key);
            self.withdraw_contact(old, key);
        }
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

    /// Removes the flow entry of `old` (a binding of `key` replaced or withdrawn) unless the
    /// binding now published for `key` kept that flow.
    fn withdraw_flow(&self, old: &Located, key: &str) {
        let Some(flow) = old.flow else {
            return;
        };
        let kept = self.get(key).is_some_and(|now| now.flow == Some(flow));
        if !kept {
            let mut m = self.flows[stripe_of(&flow)]
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if m.get(&flow) == Some(&old.set.spi_ps) {
                m.remove(&flow);
            }
        }
    }

    /// Removes the contact entry of `old` (a binding of `key` replaced or withdrawn) unless
    /// the binding now published for `key` kept that contact.
    fn withdraw_contact(&self, old: &Located, key: &str) {
        let kept = self
            .get(key)
            .is_some_and(|now| now.contact.eq_ignore_ascii_case(&old.contact));
        if !kept {
            let contact = old.contact.to_ascii_lowercase();
            let mut m = self.contacts[stripe_of(contact.as_str())]
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if m.get(&contact).is_some_and(|k| k == key) {
                m.remove(&contact);
            }
        }
    }

    /// The shard that owns the registration with Contact `uri` (compared without case).
    pub fn shard_of_contact(&self, uri: &str) -> Option<usize> {
        let contact = uri.trim().to_ascii_lowercase();
        let key = self.contacts[stripe_of(contact.as_str())]
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&contact)
            .cloned()?;
        self.get(&key).map(|l| l.shard)
    }

    /// The spi_ps of the flow-bound set published for `flow`, whichever shard owns it.
    pub fn spi_of_flow(&self, flow: &Flow) -> Option<u32> {
        let map = self.flows[stripe_of(flow)]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.get(flow).copied()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::sa::unprotected_suite;

    fn flow(port: u16) -> Flow {
        Flow {
            ue: "10.0.0.2".parse().unwrap(),
            ue_port: port,
            local: "10.0.0.1".parse().unwrap(),
            local_port: 5060,
            proto: Transport::Tcp,
        }
    }

    /// A flow-bound binding over `flow` with spi_ps `spi`.
    fn bound(flow: Flow, spi: u32) -> Located {
        Located {
            impus: vec!["sip:a@x".into()],
            set: SaSet {
                ue: flow.ue,
                local: flow.local,
                suite: unprotected_suite(),
                spi_pc: spi - 1,
                spi_ps: spi,
                spi_uc: 0,
                spi_us: 0,
                port_pc: 5060,
                port_ps: 5060,
                port_uc: flow.ue_port,
                port_us: flow.ue_port,
            },
            proto: Transport::Tcp,
            contact: "sip:a@10.0.0.2".into(),
            spis: vec![spi - 1, spi],
            shard: 1,
            flow: Some(flow),
        }
    }

    /// Issue 10: a flow-bound registration's flow is found by every shard while it is
    /// published, follows a new binding on another flow, and goes when withdrawn.
    #[test]
    fn a_published_flow_leads_to_its_set_until_withdrawn() {
        let d = LocationDirectory::new(2);
        d.publish("a@x", Some(bound(flow(40000), 11)));
        assert_eq!(d.spi_of_flow(&flow(40000)), Some(11));
        assert_eq!(d.key_of_spi(11).as_deref(), Some("a@x"));
        // Registered again on a new connection: the old flow leads nowhere.
        d.publish("a@x", Some(bound(flow(40002), 21)));
        assert_eq!(d.spi_of_flow(&flow(40000)), None);
        assert_eq!(d.spi_of_flow(&flow(40002)), Some(21));
        // Refreshed on the same flow with a new set.
        d.publish("a@x", Some(bound(flow(40002), 31)));
        assert_eq!(d.spi_of_flow(&flow(40002)), Some(31));
        d.publish("a@x", None);
        assert_eq!(d.spi_of_flow(&flow(40002)), None);
        assert!(d.is_empty());
    }

    /// Issue 10, proxy mode: a request from the core naming a UE by its contact finds the
    /// shard that registered it, whatever the case, until the contact changes or goes.
    #[test]
    fn a_published_contact_leads_to_its_shard_until_withdrawn() {
        let d = LocationDirectory::new(2);
        d.publish("a@x", Some(bound(flow(40000), 11)));
        assert_eq!(d.shard_of_contact("SIP:A@10.0.0.2"), Some(1));
        assert_eq!(d.shard_of_contact("sip:b@10.0.0.2"), None);
        let mut moved = bound(flow(40000), 21);
        moved.contact = "sip:a@10.0.0.2:5070".into();
        d.publish("a@x", Some(moved));
        assert_eq!(d.shard_of_contact("sip:a@10.0.0.2"), None);
        assert_eq!(d.shard_of_contact("sip:a@10.0.0.2:5070"), Some(1));
        d.publish("a@x", None);
        assert_eq!(d.shard_of_contact("sip:a@10.0.0.2:5070"), None);
    }

    /// A shard that no longer holds a dialog with another shard's registration is not told
    /// of its end; one that still does is.
    #[test]
    fn only_watching_shards_hear_of_an_end() {
        let d = LocationDirectory::new(3);
        d.watch("a@x", 0);
        d.watch("a@x", 2);
        d.unwatch("a@x", 0);
        d.announce_end("a@x", crate::registrar::RegEnd::Deregistered);
        assert!(d.take_ended(0).is_empty());
        assert_eq!(d.take_ended(2).len(), 1);
        d.watch("b@x", 1);
        d.unwatch("b@x", 1);
        assert!(d.watchers.iter().all(|s| s.lock().unwrap().is_empty()));
    }
}
