//! One registration's state machine (TS 33.203 7.1-7.4): `Challenged` (pending SA sets
//! installed with their 401s), `Registered` (the active set, maybe the previous one kept as
//! *old*), `Refreshing` (registered and challenged again: pending sets besides the active
//! one). A registration with no set left is gone (removed from the registrar).
//!
//! A registration holds up to a few *pending* challenges at once, one per source address
//! (issue 14): anyone can send an unauthenticated REGISTER naming any IMPI, so a challenge
//! sent to another address must not take the place of the UE's own.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use akagate_proto::hash::KeyedMap;
use akagate_proto::ipc::{Flow, SaSet, Transport};
use akagate_proto::suite::SaKeys;
use zeroize::Zeroize;

use super::SaSetExt;
use crate::aka::{AuthVector, NonceText};
use crate::hss::PersistTicket;
use crate::secagree::SecMechanism;

/// A challenge sent and its SA set installed, waiting for the protected REGISTER.
pub(crate) struct Pending {
    /// The SA set installed with the 401.
    pub set: SaSet,
    /// The Security-Server we sent (what Security-Verify must echo); `None` for a
    /// flow-bound challenge (no sec-agree, no Security-Verify expected).
    pub security_server: Option<SecMechanism>,
    /// The nonce of the challenge (base64(RAND || AUTN)).
    pub nonce: NonceText,
    /// The vector (RAND for resynchronisation, XRES the digest password, CK/IK the SA
    /// keys), shared with the other challenges that reuse it.
    pub vector: Arc<AuthVector>,
    /// When the vector was made: it is reused for other sources only within the challenge
    /// timeout of that instant.
    pub issued: Instant,
    /// The SQN record the vector's 401 waits for (`None`: nothing to wait for).
    pub ticket: Option<PersistTicket>,
    /// When the challenge lapses.
    pub deadline: Instant,
    /// The flow a flow-bound challenge was sent on (the only flow its answer and, once
    /// registered, the UE's requests are accepted from); `None` with sec-agree.
    pub bound_flow: Option<Flow>,
}

/// A completed registration's SA set and binding.
pub(crate) struct Active {
    /// The SA set the 200 OK went through.
    pub set: SaSet,
    /// The Security-Server agreed for this set (`None`: flow-bound, no sec-agree).
    pub security_server: Option<SecMechanism>,
    /// The registered Contact URI.
    pub contact: String,
    /// The transport the UE registered over: P-CSCF-originated requests use it too
    /// (UDP unless the message exceeds 1300 bytes, RFC 3261 18.1.1).
    pub proto: Transport,
    /// When the binding (and set) expire.
    pub expires_at: Instant,
}

/// The previous active set, kept until the new one carries traffic or it expires.
pub(crate) struct OldSet {
    /// The set.
    pub set: SaSet,
    /// When it lapses (the previous binding's expiry).
    pub until: Instant,
}

impl Pending {
    /// The address the challenge was sent to (its source: a challenge per address).
    pub fn source(&self) -> IpAddr {
        self.set.ue
    }
}

/// Where a registration stands. Challenges are kept in a vector (oldest first, never empty
/// in `Challenged` and `Refreshing`): most registrations are `Registered`, and need no room
/// for one.
pub(crate) enum RegState {
    /// Challenged, never registered: pending sets wait for the protected REGISTER.
    Challenged {
        /// The outstanding challenges, oldest first.
        pending: Vec<Pending>,
    },
    /// Registered over `active`; `old` is the previous set, until retired.
    Registered {
        /// The current binding.
        active: Active,
        /// The previous binding's set.
        old: Option<OldSet>,
    },
    /// Registered and challenged again (TS 33.203 7.4): new pending sets besides the active
    /// one.
    Refreshing {
        /// The current binding.
        active: Active,
        /// The outstanding challenges, oldest first.
        pending: Vec<Pending>,
        /// The previous binding's set.
        old: Option<OldSet>,
    },
}

/// What [`RegState::complete`] did.
pub(crate) enum Completed {
    /// No such challenge was pending: the state is unchanged.
    NothingPending,
    /// The pending set is bound; the sets this supersedes: the old set, if one was still
    /// kept, then the other challenges (their sources did not answer first).
    Bound(Vec<SaSet>, Vec<Pending>),
}

/// Which SA set of a registration a message came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetKind {
    /// The set of the outstanding challenge.
    Pending,
    /// The registered set.
    Active,
    /// The previous registered set.
    Old,
}

impl RegState {
    /// The outstanding challenges, oldest first.
    pub fn pending(&self) -> &[Pending] {
        match self {
            RegState::Challenged { pending } | RegState::Refreshing { pending, .. } => pending,
            RegState::Registered { .. } => &[],
        }
    }

    /// The outstanding challenges, mutably.
    fn pending_mut(&mut self) -> Option<&mut Vec<Pending>> {
        match self {
            RegState::Challenged { pending } | RegState::Refreshing { pending, .. } => {
                Some(pending)
            }
            RegState::Registered { .. } => None,
        }
    }

    /// The challenge whose set has inbound SPI `spi`.
    pub fn pending_of_spi(&self, spi: u32) -> Option<&Pending> {
        self.pending().iter().find(|p| p.set.has_spi(spi))
    }

    /// The current binding, if registered.
    pub fn active(&self) -> Option<&Active> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { active, .. } | RegState::Refreshing { active, .. } => {
                Some(active)
            }
        }
    }

    /// The current binding, mutably.
    pub fn active_mut(&mut self) -> Option<&mut Active> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { active, .. } | RegState::Refreshing { active, .. } => {
                Some(active)
            }
        }
    }

    /// The previous set, if kept.
    pub fn old(&self) -> Option<&OldSet> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { old, .. } | RegState::Refreshing { old, .. } => old.as_ref(),
        }
    }

    /// Takes the previous set out (it is being retired).
    pub fn take_old(&mut self) -> Option<OldSet> {
        match self {
            RegState::Challenged { .. } => None,
            RegState::Registered { old, .. } | RegState::Refreshing { old, .. } => old.take(),
        }
    }

    /// Which of the sets has inbound SPI `spi`.
    pub fn kind_of(&self, spi: u32) -> Option<SetKind> {
        if self.pending_of_spi(spi).is_some() {
            Some(SetKind::Pending)
        } else if self.active().is_some_and(|a| a.set.has_spi(spi)) {
            Some(SetKind::Active)
        } else if self.old().is_some_and(|o| o.set.has_spi(spi)) {
            Some(SetKind::Old)
        } else {
            None
        }
    }

    /// The earliest deadline: a challenge, the binding or the old set.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending()
            .iter()
            .map(|p| p.deadline)
            .chain(self.active().map(|a| a.expires_at))
            .chain(self.old().map(|o| o.until))
            .min()
    }

    /// A new challenge besides the outstanding ones (the registrar has made room for it).
    pub fn challenge(self, new: Pending) -> RegState {
        match self {
            RegState::Challenged { mut pending } => {
                pending.push(new);
                RegState::Challenged { pending }
            }
            RegState::Registered { active, old } => RegState::Refreshing {
                active,
                pending: vec![new],
                old,
            },
            RegState::Refreshing {
                active,
                mut pending,
                old,
            } => {
                pending.push(new);
                RegState::Refreshing {
                    active,
                    pending,
                    old,
                }
            }
        }
    }

    /// Takes out the challenges `drop` selects (a wrong answer, lapsed, room for a new one):
    /// the state without them (`None`: nothing left, the registration is gone) and the
    /// challenges, oldest first.
    pub fn drop_pending(
        mut self,
        mut drop: impl FnMut(&Pending) -> bool,
    ) -> (Option<RegState>, Vec<Pending>) {
        let Some(pending) = self.pending_mut() else {
            return (Some(self), Vec::new());
        };
        let (gone, kept): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(pending).into_iter().partition(|p| drop(p));
        let state = match self {
            RegState::Challenged { .. } if kept.is_empty() => None,
            RegState::Challenged { .. } => Some(RegState::Challenged { pending: kept }),
            RegState::Refreshing { active, old, .. } if kept.is_empty() => {
                Some(RegState::Registered { active, old })
            }
            RegState::Refreshing { active, old, .. } => Some(RegState::Refreshing {
                active,
                pending: kept,
                old,
            }),
            s @ RegState::Registered { .. } => Some(s),
        };
        (state, gone)
    }

    /// The protected REGISTER through the set with inbound SPI `spi` succeeded: that pending
    /// set becomes the active one (`bind` makes the binding from the challenge), the previous
    /// active set becomes old, and the other challenges end. The state changes in place (a
    /// registration's state is several hundred bytes: taken out and written back it was two
    /// more copies); returns what happened.
    pub fn complete(&mut self, spi: u32, bind: impl FnOnce(Pending) -> Active) -> Completed {
        let Some(i) = self.pending().iter().position(|p| p.set.has_spi(spi)) else {
            return Completed::NothingPending;
        };
        match self {
            RegState::Challenged { pending } => {
                let mut others = std::mem::take(pending);
                let answered = others.remove(i);
                *self = RegState::Registered {
                    active: bind(answered),
                    old: None,
                };
                Completed::Bound(Vec::new(), others)
            }
            RegState::Refreshing {
                active,
                pending,
                old,
            } => {
                let mut others = std::mem::take(pending);
                let answered = others.remove(i);
                let superseded = old.take().map(|o| o.set);
                // The previous set lives until the new one carries traffic or it expires.
                let previous = std::mem::replace(active, bind(answered));
                *old = Some(OldSet {
                    until: previous.expires_at,
                    set: previous.set,
                });
                let state = std::mem::replace(
                    self,
                    RegState::Challenged {
                        pending: Vec::new(),
                    },
                );
                // `Refreshing` with no challenge left is `Registered`.
                if let RegState::Refreshing { active, old, .. } = state {
                    *self = RegState::Registered { active, old };
                }
                Completed::Bound(superseded.into_iter().collect(), others)
            }
            RegState::Registered { .. } => Completed::NothingPending,
        }
    }

    /// Every set, in the order they are removed when the registration ends: active, old,
    /// pending (oldest first).
    pub fn into_sets(self) -> Vec<SaSet> {
        let (active, old, pending) = match self {
            RegState::Challenged { pending } => (None, None, pending),
            RegState::Registered { active, old } => (Some(active), old, Vec::new()),
            RegState::Refreshing {
                active,
                pending,
                old,
            } => (Some(active), old, pending),
        };
        active
            .map(|a| a.set)
            .into_iter()
            .chain(old.map(|o| o.set))
            .chain(pending.into_iter().map(|p| p.set))
            .collect()
    }
}

impl RegState {
    /// At the process's exit ([`super::Registrar::forget_at_exit`]): the keys of the active
    /// and the old set are zeroized in place ([`wipe_keys`]) and the pending challenges
    /// dropped (their sets and vectors zeroize themselves as they drop); what is left holds
    /// no key. The fields are named one by one so that a new field of these types is looked
    /// at here.
    fn wipe_at_exit(&mut self) {
        let (active, old) = match self {
            RegState::Challenged { pending } => {
                drop(std::mem::take(pending));
                (None, None)
            }
            RegState::Registered { active, old } => (Some(active), old.as_mut()),
            RegState::Refreshing {
                active,
                pending,
                old,
            } => {
                drop(std::mem::take(pending));
                (Some(active), old.as_mut())
            }
        };
        if let Some(Active {
            set,
            security_server: _,
            contact: _,
            proto: _,
            expires_at: _,
        }) = active
        {
            wipe_keys(&mut set.suite.keys);
        }
        if let Some(OldSet { set, until: _ }) = old {
            wipe_keys(&mut set.suite.keys);
        }
    }
}

/// Zeroizes an SA's keys in place: every byte of their allocations, the lengths kept (so
/// the wipe can be read back), and the salt.
fn wipe_keys(keys: &mut SaKeys) {
    let SaKeys {
        integ_key,
        encr_key,
        salt,
    } = keys;
    for k in [integ_key, encr_key] {
        k.as_mut_slice().zeroize();
        k.spare_capacity_mut().zeroize();
    }
    salt.zeroize();
}

impl super::Registrar {
    /// Zeroizes the SA keys of every registration and drops their pending challenges
    /// ([`RegState::wipe_at_exit`]): the first half of [`super::Registrar::forget_at_exit`].
    fn wipe_keys_at_exit(&mut self) {
        for reg in self.regs.values_mut() {
            let super::Registration {
                impi: _,
                impus: _,
                state,
                armed: _,
            } = &mut **reg;
            state.wipe_at_exit();
        }
    }

    /// Ends the registrar at the process's exit (the daemon's shutdown): every registration's
    /// SA keys are zeroized and the registrations, with the SPI index that names them, are
    /// left to the exit instead of freed a block at a time (about ten frees a registration,
    /// ~2k instructions, docs/BENCHMARKS.md round 28). The rest of the registrar drops as
    /// usual. The memory left is never returned: only for a registrar whose process is
    /// ending.
    pub(crate) fn forget_at_exit(&mut self) {
        self.wipe_keys_at_exit();
        std::mem::forget(take_keyed(&mut self.regs));
        std::mem::forget(take_keyed(&mut self.by_spi));
    }
}

/// Takes `map` out, an empty map under the same hasher left in its place (no fresh seed
/// drawn: the thread's first one is a `getrandom`).
fn take_keyed<K, V>(map: &mut KeyedMap<K, V>) -> KeyedMap<K, V> {
    let empty = KeyedMap::with_hasher(map.hasher().clone());
    std::mem::replace(map, empty)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use akagate_proto::suite::{AuthAlg, EncrAlg};

    use super::*;
    use crate::aka::{derive_suite, Autn, Ck, Ik, Res};
    use crate::registrar::Registrar;

    /// A challenge over SPIs `spi`, `spi + 1` with an hmac-sha-1-96 + aes-cbc suite whose
    /// keys come from `seed` (never zero).
    fn pending(spi: u32, seed: u8, t: Instant) -> Pending {
        let suite = derive_suite(
            AuthAlg::HmacSha1_96,
            EncrAlg::AesCbc,
            &Ck::new([seed; 16]),
            &Ik::new([seed ^ 0x5a; 16]),
        )
        .unwrap();
        Pending {
            set: SaSet {
                ue: "10.0.0.2".parse().unwrap(),
                local: "10.0.0.1".parse().unwrap(),
                suite,
                spi_pc: spi,
                spi_ps: spi + 1,
                spi_uc: 7,
                spi_us: 8,
                port_pc: 5100,
                port_ps: 6100,
                port_uc: 5080,
                port_us: 5090,
            },
            security_server: Some(SecMechanism::new("ipsec-3gpp")),
            bound_flow: None,
            nonce: format!("nonce-{spi}").into(),
            vector: Arc::new(AuthVector {
                rand: [0; 16],
                xres: Res::new(&[9; 8]).unwrap(),
                ck: Ck::new([seed; 16]),
                ik: Ik::new([seed ^ 0x5a; 16]),
                autn: Autn::from_bytes([3; 16]),
            }),
            issued: t,
            ticket: None,
            deadline: t + Duration::from_secs(30),
        }
    }

    /// A set's integrity and encryption keys, copied.
    fn keys_of(set: &SaSet) -> [Vec<u8>; 2] {
        let k = &set.suite.keys;
        [k.integ_key.clone(), k.encr_key.clone()]
    }

    /// Round 28: the daemon's exit leaves the registrations' memory to the process, but not
    /// their keys: every byte of an active or an old set's integrity and encryption key
    /// reads 0 after the exit's wipe (non-zero before, the lengths kept), for registrations
    /// registered once, registered twice (an old set kept) and refreshing (a challenge
    /// besides the active set, dropped); then the registrar holds no registration.
    #[test]
    fn the_keys_of_every_registration_are_zeroized_at_exit() {
        let t = Instant::now();
        let mut r = Registrar::default();
        let mut spi = 1000;
        let mut next = |r: &mut Registrar, key: &str, seed: u8| {
            spi += 10;
            r.challenged(key, key, &[], pending(spi, seed, t), 4);
            spi
        };
        let expiry = t + Duration::from_secs(600);
        for i in 0..30u8 {
            let key = format!("ue{i}@x");
            let s = next(&mut r, &key, i + 1);
            r.complete(&key, s + 1, "sip:a@ue".into(), Transport::Udp, expiry);
            if i % 3 > 0 {
                // Registered again: the first set becomes the old one.
                let s = next(&mut r, &key, i + 101);
                r.complete(&key, s + 1, "sip:a@ue".into(), Transport::Udp, expiry);
            }
            if i % 3 == 2 {
                // Refreshing: challenged again while registered.
                next(&mut r, &key, i + 201);
            }
        }
        // Every active and old set's keys, in the map's order.
        let sets = |r: &Registrar| -> Vec<[Vec<u8>; 2]> {
            r.regs
                .values()
                .flat_map(|reg| {
                    let s = &reg.state;
                    let active = s.active().map(|a| keys_of(&a.set));
                    active.into_iter().chain(s.old().map(|o| keys_of(&o.set)))
                })
                .collect()
        };
        let before = sets(&r);
        let olds = r.regs.values().filter(|g| g.state.old().is_some()).count();
        let refreshing = r.regs.values().filter(|g| !g.state.pending().is_empty());
        assert_eq!((before.len(), olds, refreshing.count()), (50, 20, 10));
        for k in before.iter().flatten() {
            assert!(k.len() >= 16 && k.iter().any(|&b| b != 0));
        }
        r.wipe_keys_at_exit();
        let after = sets(&r);
        assert_eq!(after.len(), before.len());
        for (a, b) in after.iter().flatten().zip(before.iter().flatten()) {
            assert_eq!(a.len(), b.len());
            assert!(
                a.iter().all(|&x| x == 0),
                "{} key bytes not zeroized",
                a.len()
            );
        }
        assert!(r.regs.values().all(|g| g.state.pending().is_empty()));
        r.forget_at_exit();
        assert_eq!(r.len(), 0);
    }
}
