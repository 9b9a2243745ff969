//! Where authentication vectors come from. The registrar asks an [`AuthVectorSource`] for a
//! subscriber's identities, a fresh vector (RAND, AUTN, XRES, CK, IK) and a resynchronisation
//! from AUTS, without knowing who computes them: today the embedded [`Hss`]; in proxy mode a
//! source fed by the S-CSCF's 401 (TS 33.203 6.1: the S-CSCF's vector, CK/IK taken out of the
//! challenge by the P-CSCF).

use rand::RngCore;

use crate::aka::AuthVector;
use crate::hss::{Hss, HssError, PersistTicket};

/// A subscriber's identities as the source knows them (defined with the HSS, below the
/// registrar, which only reads them).
pub use crate::hss::Identities;

/// A fresh vector and what must be durable before its challenge may leave.
pub struct IssuedVector {
    /// RAND, AUTN, XRES, CK, IK.
    pub av: AuthVector,
    /// The record of its SQN (embedded HSS with SQN state): the 401 waits until the
    /// core's owner reports it durable. `None`: it may leave at once.
    pub durable_after: Option<PersistTicket>,
}

/// Why a source gave no vector (the REGISTER is answered 500) or refused an AUTS.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The embedded HSS refused (unknown IMPI, SQN exhausted or not durable, AUTS MAC).
    #[error(transparent)]
    Hss(#[from] HssError),
}

/// A source of authentication vectors for the registrar.
pub trait AuthVectorSource {
    /// The identities of private identity `impi`; `None` if the subscriber is unknown.
    fn identities(&self, impi: &str) -> Option<Identities>;

    /// A fresh vector for `impi`; `rng` draws RAND when the source makes it.
    fn vector(&mut self, impi: &str, rng: &mut dyn RngCore) -> Result<IssuedVector, VectorError>;

    /// Re-synchronises `impi` from the AUTS the UE returned for `rand` (TS 33.102 6.3.5).
    fn resync(&mut self, impi: &str, rand: &[u8; 16], auts: &[u8; 14]) -> Result<(), VectorError>;
}

impl AuthVectorSource for Hss {
    fn identities(&self, impi: &str) -> Option<Identities> {
        Some(self.subscriber(impi)?.identities())
    }

    fn vector(&mut self, impi: &str, rng: &mut dyn RngCore) -> Result<IssuedVector, VectorError> {
        let mut rand = [0u8; 16];
        rng.fill_bytes(&mut rand);
        let av = self.challenge(impi, rand)?;
        // With SQN state, the record of the subscriber's SQN bound (queued by this
        // challenge if it passed the bound, else earlier); without, none.
        let durable_after = self.challenge_ticket();
        Ok(IssuedVector { av, durable_after })
    }

    fn resync(&mut self, impi: &str, rand: &[u8; 16], auts: &[u8; 14]) -> Result<(), VectorError> {
        Ok(Hss::resync(self, impi, rand, auts)?)
    }
}
