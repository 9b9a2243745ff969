//! What bounds the unauthenticated work of the REGISTER procedure (issue 14): the rate of
//! REGISTERs from outside every SA, per source address and in total, in one-second windows
//! ([`Admission`]), and the outstanding decoy challenges of unknown IMPIs ([`DecoyLedger`]),
//! counted like real ones so the limits answer a stranger alike for real and unknown IMPIs.
//! Registered UEs' requests through their SAs never pass here.

use akagate_proto::hash::KeyedMap;
use std::collections::hash_map::{Entry, RandomState};
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The length of a rate window.
const WINDOW: Duration = Duration::from_secs(1);

/// What [`Admission::admit`] decided for one unauthenticated REGISTER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    /// Taken.
    Admit,
    /// Its source address sent its share of this second already.
    SourceOver,
    /// Every source together sent the share of this second already.
    TotalOver,
}

/// Unauthenticated REGISTERs counted in the current one-second window. The per-address
/// table holds only addresses admitted in this window, so it never exceeds the total rate.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Start of the current window.
    window: Option<Instant>,
    /// Admitted in this window.
    total: u32,
    /// Admitted in this window, by source address.
    by_source: KeyedMap<IpAddr, u32>,
}

impl Admission {
    /// Counts one REGISTER from `source` at `now` against `per_source` and `total` per
    /// second. The newest work is what is shed: a refused request counts for nothing.
    pub fn admit(
        &mut self,
        source: IpAddr,
        now: Instant,
        per_source: u32,
        total: u32,
    ) -> RateVerdict {
        if self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= WINDOW)
        {
            self.window = Some(now);
            self.total = 0;
            self.by_source.clear();
        }
        if self.total >= total {
            return RateVerdict::TotalOver;
        }
        let n = self.by_source.entry(source).or_default();
        if *n >= per_source {
            return RateVerdict::SourceOver;
        }
        *n += 1;
        self.total += 1;
        RateVerdict::Admit
    }
}

/// The decoy challenges of unknown IMPIs still "outstanding": nothing is installed for them,
/// but they count against the per-source and total bounds as real challenges do, and an
/// unknown IMPI gets the same nonce again within the reuse window as a real one does (its
/// vector is reused). Entries lapse after the challenge timeout, like real challenges.
#[derive(Debug)]
pub(crate) struct DecoyLedger {
    /// Per-start keys of the IMPI hash (strangers cannot aim collisions).
    hasher: RandomState,
    /// Outstanding (source, IMPI) pairs and their deadline.
    live: KeyedMap<(IpAddr, u64), Instant>,
    /// Every note in the order made (deadlines rise: one timeout, time never goes back);
    /// an entry whose pair was noted again later or forgotten is skipped when it comes up.
    queue: VecDeque<(Instant, IpAddr, u64)>,
    /// Outstanding pairs per source address.
    by_source: KeyedMap<IpAddr, usize>,
    /// RAND of each unknown IMPI's current decoy vector and until when it is reused.
    vectors: KeyedMap<u64, ([u8; 16], Instant)>,
    /// `vectors` is swept of lapsed entries when it grows to this size (amortised O(1)).
    sweep_at: usize,
}

/// The smallest size at which `vectors` is swept.
const SWEEP_MIN: usize = 1024;

impl Default for DecoyLedger {
    fn default() -> Self {
        DecoyLedger {
            hasher: RandomState::new(),
            live: akagate_proto::hash::keyed_map(),
            queue: VecDeque::new(),
            by_source: akagate_proto::hash::keyed_map(),
            vectors: akagate_proto::hash::keyed_map(),
            sweep_at: SWEEP_MIN,
        }
    }
}

impl DecoyLedger {
    /// The ledger's name for `impi` (lower-cased, keyed hash).
    pub fn id(&self, impi: &str) -> u64 {
        self.hasher.hash_one(impi.to_ascii_lowercase())
    }

    /// Drops what lapsed by `now`.
    pub fn prune(&mut self, now: Instant) {
        while let Some(&(deadline, source, id)) = self.queue.front() {
            if deadline > now {
                break;
            }
            self.queue.pop_front();
            if self.live.get(&(source, id)) == Some(&deadline) {
                self.forget(source, id);
            }
            if self
                .vectors
                .get(&id)
                .is_some_and(|(_, until)| *until <= now)
            {
                self.vectors.remove(&id);
            }
        }
    }

    /// Whether a decoy challenge for `id` to `source` is outstanding.
    pub fn holds(&self, source: IpAddr, id: u64) -> bool {
        self.live.contains_key(&(source, id))
    }

    /// Outstanding decoy challenges sent to `source`.
    pub fn from(&self, source: IpAddr) -> usize {
        self.by_source.get(&source).copied().unwrap_or(0)
    }

    /// Outstanding decoy challenges in total.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// A decoy challenge for `id` went to `source`, outstanding until `deadline`. One that
    /// is outstanding already keeps its first deadline, so the queue holds each pair once
    /// and never more entries than the bounds on outstanding challenges allow.
    pub fn note(&mut self, source: IpAddr, id: u64, deadline: Instant) {
        if let Entry::Vacant(e) = self.live.entry((source, id)) {
            e.insert(deadline);
            *self.by_source.entry(source).or_default() += 1;
            self.queue.push_back((deadline, source, id));
        }
    }

    /// The decoy challenge for `id` to `source` ended (its answer was refused).
    pub fn forget(&mut self, source: IpAddr, id: u64) {
        if self.live.remove(&(source, id)).is_none() {
            return;
        }
        if let Entry::Occupied(mut e) = self.by_source.entry(source) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// The RAND of `id`'s decoy vector: the current one while it is reusable (until
    /// `reuse_until` of its making), else `fresh` from now on.
    pub fn rand(&mut self, id: u64, fresh: [u8; 16], now: Instant, reuse: Duration) -> [u8; 16] {
        if let Some((rand, until)) = self.vectors.get(&id) {
            if *until > now {
                return *rand;
            }
        }
        if self.vectors.len() >= self.sweep_at {
            self.vectors.retain(|_, (_, until)| *until > now);
            self.sweep_at = (2 * self.vectors.len()).max(SWEEP_MIN);
        }
        self.vectors.insert(id, (fresh, now + reuse));
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_window_admits_its_share_per_source_and_in_total() {
        let (mut a, t) = (Admission::default(), Instant::now());
        assert_eq!(a.admit(ip(1), t, 2, 3), RateVerdict::Admit);
        assert_eq!(a.admit(ip(1), t, 2, 3), RateVerdict::Admit);
        assert_eq!(a.admit(ip(1), t, 2, 3), RateVerdict::SourceOver);
        assert_eq!(a.admit(ip(2), t, 2, 3), RateVerdict::Admit);
        assert_eq!(a.admit(ip(3), t, 2, 3), RateVerdict::TotalOver);
        // A new second, a new share.
        let t = t + WINDOW;
        assert_eq!(a.admit(ip(1), t, 2, 3), RateVerdict::Admit);
        assert_eq!(a.by_source.len(), 1, "last window's addresses are gone");
    }

    #[test]
    fn decoys_lapse_and_are_counted_once_per_source_and_impi() {
        let (mut l, t) = (DecoyLedger::default(), Instant::now());
        let (x, y) = (l.id("X@ims"), l.id("y@ims"));
        assert_eq!(x, l.id("x@IMS"), "IMPIs compare without case");
        l.note(ip(1), x, t + WINDOW);
        l.note(ip(1), x, t + 2 * WINDOW);
        l.note(ip(1), y, t + 2 * WINDOW);
        assert_eq!((l.from(ip(1)), l.len(), l.queue.len()), (2, 2, 2));
        // x keeps its first deadline.
        l.prune(t + WINDOW);
        assert!(!l.holds(ip(1), x));
        l.forget(ip(1), y);
        assert_eq!((l.from(ip(1)), l.len()), (0, 0));
        l.prune(t + 2 * WINDOW);
        assert!(l.queue.is_empty() && l.by_source.is_empty());
    }

    #[test]
    fn a_decoy_rand_is_reused_within_its_window() {
        let (mut l, t) = (DecoyLedger::default(), Instant::now());
        let x = l.id("x@ims");
        assert_eq!(l.rand(x, [1; 16], t, WINDOW), [1; 16]);
        assert_eq!(l.rand(x, [2; 16], t, WINDOW), [1; 16]);
        assert_eq!(l.rand(x, [3; 16], t + WINDOW, WINDOW), [3; 16]);
    }
}
