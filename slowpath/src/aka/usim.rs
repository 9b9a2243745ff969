//! The UE side of AKA (TS 33.102 6.3.3): verify AUTN (MAC-A first, then SQN freshness) and
//! answer with RES/CK/IK, or with a typed failure carrying the AUTS to send.

use subtle::ConstantTimeEq;

use super::autn::{Autn, Auts};
use super::material::{Ck, Ik, Res};
use super::milenage::Milenage;
use super::sqn::{Sqn, SqnArray, SqnReject};

/// A successful authentication: RES for the digest, CK/IK for the ESP keys.
#[derive(Debug, Clone)]
pub struct AkaSuccess {
    /// RES.
    pub res: Res,
    /// CK.
    pub ck: Ck,
    /// IK.
    pub ik: Ik,
    /// The SQN that was accepted.
    pub sqn: Sqn,
}

/// Why the UE refused a challenge (TS 33.102 6.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AkaFailure {
    /// XMAC != MAC-A: the network is not authentic. The UE reports this without AUTS.
    #[error("AUTN MAC-A verification failed")]
    MacFailure,
    /// MAC-A verified but SQN was not acceptable: the UE answers with AUTS.
    #[error("synchronisation failure ({reason})")]
    SyncFailure {
        /// The AUTS to send (RFC 3310 `auts=` parameter).
        auts: Auts,
        /// Which freshness rule rejected the SQN.
        reason: SqnReject,
    },
}

/// A USIM: the subscriber's Milenage keys and its SQN array.
#[derive(Debug, Clone)]
pub struct Usim {
    milenage: Milenage,
    sqn: SqnArray,
}

impl Usim {
    /// A USIM with the given keys and SQN state.
    pub fn new(milenage: Milenage, sqn: SqnArray) -> Self {
        Usim { milenage, sqn }
    }

    /// The SQN state (for persistence and tests).
    pub fn sqn_array(&self) -> &SqnArray {
        &self.sqn
    }

    /// Runs AKA on a received RAND/AUTN (TS 33.102 6.3.3): AK = f5(RAND), SQN = AUTN xor AK,
    /// XMAC = f1(SQN, RAND, AMF); MAC failure if XMAC != MAC-A; then the SQN freshness check
    /// (Annex C), giving AUTS on failure; otherwise SQN is recorded and RES/CK/IK returned.
    pub fn authenticate(&mut self, rand: &[u8; 16], autn: &Autn) -> Result<AkaSuccess, AkaFailure> {
        let out = self.milenage.f2345(rand);
        let masked = autn.sqn_xor_ak();
        let sqn_bytes: [u8; 6] = core::array::from_fn(|i| masked[i] ^ out.ak[i]);
        let xmac = self.milenage.f1(rand, &sqn_bytes, &autn.amf());
        if !bool::from(xmac.ct_eq(&autn.mac_a())) {
            return Err(AkaFailure::MacFailure);
        }
        let sqn = Sqn::from_bytes(sqn_bytes);
        if let Err(reason) = self.sqn.accept(sqn) {
            let auts = Auts::generate(&self.milenage, rand, self.sqn.sqn_ms());
            return Err(AkaFailure::SyncFailure { auts, reason });
        }
        Ok(AkaSuccess {
            res: out.res.clone(),
            ck: out.ck.clone(),
            ik: out.ik.clone(),
            sqn,
        })
    }
}
