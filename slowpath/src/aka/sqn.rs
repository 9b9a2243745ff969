//! Sequence numbers per TS 33.102 Annex C: SQN = SEQ || IND, the UE's freshness check over an
//! array of highest SEQ per IND (C.2), and the network's generation of fresh SQNs (C.1.1, C.3).

/// Number of bits in SQN (TS 33.102 6.3.2).
pub const SQN_BITS: u32 = 48;
/// Largest SQN value.
pub const SQN_MAX: u64 = (1 << SQN_BITS) - 1;
/// Default IND length in bits (TS 33.102 C.3.2 profile: IND of 5 bits, an array of 32).
pub const DEFAULT_IND_BITS: u8 = 5;
/// Default wrap-around limit Δ (TS 33.102 C.2.1 / C.3 profile value 2^28; from memory of the
/// profile, to be re-checked against the TS).
pub const DEFAULT_DELTA: u64 = 1 << 28;
/// Largest IND length accepted (keeps the UE array at most 1024 entries).
pub const MAX_IND_BITS: u8 = 10;

/// A 48-bit sequence number (TS 33.102 6.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sqn(u64);

impl Sqn {
    /// An SQN from its integer value; `None` above 2^48 - 1.
    pub fn new(value: u64) -> Option<Self> {
        (value <= SQN_MAX).then_some(Sqn(value))
    }

    /// An SQN from its 6 big-endian bytes.
    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&bytes);
        Sqn(u64::from_be_bytes(b))
    }

    /// The 6 big-endian bytes.
    pub fn to_bytes(self) -> [u8; 6] {
        let b = self.0.to_be_bytes();
        let mut o = [0u8; 6];
        o.copy_from_slice(&b[2..]);
        o
    }

    /// The integer value.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// Errors of SQN policy and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SqnError {
    /// IND length outside 0..=MAX_IND_BITS.
    #[error("IND length {0} bits is outside 0..={MAX_IND_BITS}")]
    InvalidIndBits(u8),
    /// SEQ would exceed its width: the subscriber's counter is exhausted (TS 33.102 C.2.1).
    #[error("SEQ counter exhausted")]
    SeqExhausted,
    /// A stored SEQ array has the wrong number of entries or a SEQ out of range.
    #[error("SEQ array does not match the IND length")]
    BadArray,
}

/// Why the UE refused an SQN (TS 33.102 C.2); each leads to a synchronisation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SqnReject {
    /// SEQ is not greater than SEQ_MS(IND): a replay or an old vector (C.2.2).
    #[error("SQN not fresh: SEQ <= SEQ_MS(IND)")]
    NotFresh,
    /// SEQ - SEQ_MS > Δ: the network jumped too far ahead (wrap-around protection, C.2.1).
    #[error("SQN too far ahead: SEQ - SEQ_MS > delta")]
    TooFarAhead,
    /// SEQ_MS - SEQ >= L: the SQN is older than the age limit (C.2.2, optional).
    #[error("SQN too old: SEQ_MS - SEQ >= L")]
    TooOld,
}

/// SQN scheme and the optional limits of TS 33.102 Annex C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqnPolicy {
    ind_bits: u8,
    delta: Option<u64>,
    l: Option<u64>,
}

impl Default for SqnPolicy {
    /// IND of 5 bits, Δ = 2^28, no age limit L.
    fn default() -> Self {
        SqnPolicy {
            ind_bits: DEFAULT_IND_BITS,
            delta: Some(DEFAULT_DELTA),
            l: None,
        }
    }
}

impl SqnPolicy {
    /// A policy with `ind_bits` of IND and no limits.
    pub fn new(ind_bits: u8) -> Result<Self, SqnError> {
        if ind_bits > MAX_IND_BITS {
            return Err(SqnError::InvalidIndBits(ind_bits));
        }
        Ok(SqnPolicy {
            ind_bits,
            delta: None,
            l: None,
        })
    }

    /// Sets (or clears) the wrap-around limit Δ.
    pub fn with_delta(mut self, delta: Option<u64>) -> Self {
        self.delta = delta;
        self
    }

    /// Sets (or clears) the age limit L.
    pub fn with_l(mut self, l: Option<u64>) -> Self {
        self.l = l;
        self
    }

    /// IND length in bits.
    pub fn ind_bits(&self) -> u8 {
        self.ind_bits
    }

    /// Δ, if enforced.
    pub fn delta(&self) -> Option<u64> {
        self.delta
    }

    /// L, if enforced.
    pub fn l(&self) -> Option<u64> {
        self.l
    }

    /// Number of IND values (array entries on the UE side).
    pub fn ind_count(&self) -> usize {
        1usize << self.ind_bits
    }

    /// Largest SEQ value.
    pub fn seq_max(&self) -> u64 {
        SQN_MAX >> self.ind_bits
    }

    /// Splits SQN into (SEQ, IND).
    pub fn split(&self, sqn: Sqn) -> (u64, usize) {
        let ind_mask = (1u64 << self.ind_bits) - 1;
        // IND < 2^ind_bits <= 1024 always fits a usize.
        (sqn.0 >> self.ind_bits, (sqn.0 & ind_mask) as usize)
    }

    /// Joins SEQ and IND into SQN; `None` if either is out of range.
    pub fn join(&self, seq: u64, ind: usize) -> Option<Sqn> {
        if seq > self.seq_max() || ind >= self.ind_count() {
            return None;
        }
        Sqn::new((seq << self.ind_bits) | ind as u64)
    }
}

/// The UE's (USIM's) SQN state: the highest accepted SEQ for each IND (TS 33.102 C.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqnArray {
    policy: SqnPolicy,
    seq_ms: Vec<u64>,
}

impl SqnArray {
    /// A fresh array: every SEQ_MS(i) = 0.
    pub fn new(policy: SqnPolicy) -> Self {
        SqnArray {
            policy,
            seq_ms: vec![0; policy.ind_count()],
        }
    }

    /// Restores a stored array (one SEQ per IND).
    pub fn restore(policy: SqnPolicy, seq_ms: &[u64]) -> Result<Self, SqnError> {
        if seq_ms.len() != policy.ind_count() || seq_ms.iter().any(|&s| s > policy.seq_max()) {
            return Err(SqnError::BadArray);
        }
        Ok(SqnArray {
            policy,
            seq_ms: seq_ms.to_vec(),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &SqnPolicy {
        &self.policy
    }

    /// SEQ_MS(i) for every IND i.
    pub fn entries(&self) -> &[u64] {
        &self.seq_ms
    }

    /// SQN_MS, the value reported in AUTS: the highest SEQ in the array joined with its IND
    /// (TS 33.102 C.2.2: SEQ_MS is the highest previously accepted SEQ).
    pub fn sqn_ms(&self) -> Sqn {
        let (ind, seq) =
            self.seq_ms.iter().enumerate().fold(
                (0, 0),
                |best, (i, &s)| if s > best.1 { (i, s) } else { best },
            );
        self.policy.join(seq, ind).unwrap_or(Sqn(0))
    }

    fn highest_seq(&self) -> u64 {
        self.seq_ms.iter().copied().max().unwrap_or(0)
    }

    /// Checks an SQN for freshness without accepting it.
    pub fn check(&self, sqn: Sqn) -> Result<(), SqnReject> {
        let (seq, ind) = self.policy.split(sqn);
        let seq_ms_ind = self.seq_ms.get(ind).copied().unwrap_or(u64::MAX);
        // TS 33.102 C.2.2: accept only if SEQ > SEQ_MS(IND).
        if seq <= seq_ms_ind {
            return Err(SqnReject::NotFresh);
        }
        let highest = self.highest_seq();
        // TS 33.102 C.2.1: refuse a jump of more than Δ beyond the highest SEQ accepted so far.
        if let Some(delta) = self.policy.delta {
            if seq > highest && seq - highest > delta {
                return Err(SqnReject::TooFarAhead);
            }
        }
        // TS 33.102 C.2.2 (optional): refuse an SEQ more than L behind the highest one.
        if let Some(l) = self.policy.l {
            if highest > seq && highest - seq >= l {
                return Err(SqnReject::TooOld);
            }
        }
        Ok(())
    }

    /// Checks an SQN and, if fresh, records it: SEQ_MS(IND) := SEQ.
    pub fn accept(&mut self, sqn: Sqn) -> Result<(), SqnReject> {
        self.check(sqn)?;
        let (seq, ind) = self.policy.split(sqn);
        if let Some(slot) = self.seq_ms.get_mut(ind) {
            *slot = seq;
        }
        Ok(())
    }
}

/// The network's (HSS/AuC's) SQN generator for one subscriber: SEQ_HE incremented per challenge,
/// IND cycling through its range (TS 33.102 C.1.1, C.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqnGenerator {
    policy: SqnPolicy,
    seq_he: u64,
    next_ind: usize,
}

impl SqnGenerator {
    /// A generator whose last used SEQ is `seq_he` (0 for a new subscriber).
    pub fn new(policy: SqnPolicy, seq_he: u64) -> Result<Self, SqnError> {
        if seq_he > policy.seq_max() {
            return Err(SqnError::SeqExhausted);
        }
        Ok(SqnGenerator {
            policy,
            seq_he,
            next_ind: 0,
        })
    }

    /// The last SEQ handed out (SEQ_HE).
    pub fn seq_he(&self) -> u64 {
        self.seq_he
    }

    /// A fresh SQN for the next challenge: SEQ_HE + 1 with the next IND.
    pub fn next_sqn(&mut self) -> Result<Sqn, SqnError> {
        let seq = self.seq_he.checked_add(1).ok_or(SqnError::SeqExhausted)?;
        let sqn = self
            .policy
            .join(seq, self.next_ind)
            .ok_or(SqnError::SeqExhausted)?;
        self.seq_he = seq;
        self.next_ind = (self.next_ind + 1) % self.policy.ind_count();
        Ok(sqn)
    }

    /// Re-synchronises to the UE's SQN_MS recovered from a verified AUTS (TS 33.102 6.3.5):
    /// SEQ_HE is kept if the next SEQ would be accepted by the UE, otherwise set to SEQ_MS.
    pub fn resync(&mut self, sqn_ms: Sqn) {
        let (seq_ms, _) = self.policy.split(sqn_ms);
        let next = self.seq_he.saturating_add(1);
        let acceptable =
            next > seq_ms && self.policy.delta.is_none_or(|delta| next - seq_ms <= delta);
        if !acceptable {
            self.seq_he = seq_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqn_bytes_round_trip() {
        let s = Sqn::from_bytes([0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]);
        assert_eq!(s.value(), 0xff9bb4d0b607);
        assert_eq!(s.to_bytes(), [0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]);
        assert!(Sqn::new(SQN_MAX + 1).is_none());
    }

    #[test]
    fn split_join_ind5() {
        let p = SqnPolicy::default();
        // 0x...07 = 0b00111: IND = 7, SEQ = value >> 5.
        let s = Sqn::new(0x0000_0000_0047).unwrap();
        assert_eq!(p.split(s), (2, 7));
        assert_eq!(p.join(2, 7), Some(s));
        assert_eq!(p.join(0, 32), None);
        assert_eq!(p.join(p.seq_max() + 1, 0), None);
    }

    #[test]
    fn array_accepts_out_of_order_across_ind() {
        let p = SqnPolicy::new(5).unwrap();
        let mut a = SqnArray::new(p);
        // Vectors SEQ 1..3 on IND 0..2, used out of order: all fresh (C.2.2's purpose).
        let v: Vec<Sqn> = (0..3).map(|i| p.join(i + 1, i as usize).unwrap()).collect();
        a.accept(v[2]).unwrap();
        a.accept(v[0]).unwrap();
        a.accept(v[1]).unwrap();
        // Replays are refused.
        assert_eq!(a.accept(v[1]), Err(SqnReject::NotFresh));
        assert_eq!(a.sqn_ms(), v[2]);
    }

    #[test]
    fn delta_and_l_limits() {
        let p = SqnPolicy::new(5)
            .unwrap()
            .with_delta(Some(100))
            .with_l(Some(10));
        let mut a = SqnArray::new(p);
        a.accept(p.join(100, 0).unwrap()).unwrap();
        assert_eq!(
            a.check(p.join(201, 1).unwrap()),
            Err(SqnReject::TooFarAhead)
        );
        assert_eq!(a.check(p.join(200, 1).unwrap()), Ok(()));
        assert_eq!(a.check(p.join(90, 1).unwrap()), Err(SqnReject::TooOld));
        assert_eq!(a.check(p.join(91, 1).unwrap()), Ok(()));
        // Without limits the same SQNs pass.
        let free = SqnArray::restore(SqnPolicy::new(5).unwrap(), a.entries()).unwrap();
        assert_eq!(free.check(p.join(201, 1).unwrap()), Ok(()));
        assert_eq!(free.check(p.join(90, 1).unwrap()), Ok(()));
    }

    #[test]
    fn generator_increments_seq_and_cycles_ind() {
        let p = SqnPolicy::new(2).unwrap();
        let mut g = SqnGenerator::new(p, 10).unwrap();
        let got: Vec<(u64, usize)> = (0..5).map(|_| p.split(g.next_sqn().unwrap())).collect();
        assert_eq!(got, vec![(11, 0), (12, 1), (13, 2), (14, 3), (15, 0)]);
        let mut g = SqnGenerator::new(p, p.seq_max()).unwrap();
        assert_eq!(g.next_sqn(), Err(SqnError::SeqExhausted));
    }

    #[test]
    fn generator_resync() {
        let p = SqnPolicy::new(5).unwrap().with_delta(Some(1000));
        let mut g = SqnGenerator::new(p, 5).unwrap();
        g.resync(p.join(50, 3).unwrap());
        assert_eq!(g.seq_he(), 50);
        assert_eq!(p.split(g.next_sqn().unwrap()).0, 51);
        // HE already ahead within Δ: kept.
        g.resync(p.join(20, 0).unwrap());
        assert_eq!(g.seq_he(), 51);
        // HE ahead by more than Δ: reset to SEQ_MS.
        let mut g = SqnGenerator::new(p, 5000).unwrap();
        g.resync(p.join(20, 0).unwrap());
        assert_eq!(g.seq_he(), 20);
    }

    #[test]
    fn bad_policy_and_array() {
        assert_eq!(SqnPolicy::new(11), Err(SqnError::InvalidIndBits(11)));
        let p = SqnPolicy::new(1).unwrap();
        assert_eq!(SqnArray::restore(p, &[1]), Err(SqnError::BadArray));
    }
}
