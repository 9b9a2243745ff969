//! The simulated USIM of a UE, built from a subscriber file record (the same K/OPc the HSS
//! holds), with an optional SQN head start to provoke a synchronisation failure.

use akagate_slowpath::aka::{Milenage, SqnArray, SqnPolicy, Usim};
use akagate_slowpath::hss::SubscriberRecord;
use zeroize::Zeroize;

/// Why a record could not become a USIM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsimError {
    /// K, OPc or OP is not 32 hex digits, or neither/both of OPc and OP are given.
    #[error("subscriber {0}: bad {1}")]
    BadField(String, &'static str),
}

fn key(impi: &str, name: &'static str, hex_str: &str) -> Result<[u8; 16], UsimError> {
    let mut v = hex::decode(hex_str.trim()).map_err(|_| UsimError::BadField(impi.into(), name))?;
    let r = <[u8; 16]>::try_from(v.as_slice()).map_err(|_| UsimError::BadField(impi.into(), name));
    v.zeroize();
    r
}

/// A USIM for `rec` with a fresh SQN array (every SEQ_MS = 0), so the first challenge of an
/// HSS that starts at the record's SQN is accepted.
pub fn usim_for(rec: &SubscriberRecord) -> Result<Usim, UsimError> {
    usim_with_seq(rec, 0)
}

/// A USIM for `rec` whose SQN array already holds `seq_ms` for every IND: challenges with a
/// lower SEQ are refused with AUTS (TS 33.102 6.3.3, Annex C).
pub fn usim_with_seq(rec: &SubscriberRecord, seq_ms: u64) -> Result<Usim, UsimError> {
    let mut k = key(&rec.impi, "k", &rec.k)?;
    let m = match (&rec.opc, &rec.op) {
        (Some(opc), None) => {
            let mut opc = key(&rec.impi, "opc", opc)?;
            let m = Milenage::new(&k, &opc);
            opc.zeroize();
            m
        }
        (None, Some(op)) => {
            let mut op = key(&rec.impi, "op", op)?;
            let m = Milenage::from_op(&k, &op);
            op.zeroize();
            m
        }
        _ => {
            k.zeroize();
            return Err(UsimError::BadField(rec.impi.clone(), "opc"));
        }
    };
    k.zeroize();
    let policy = SqnPolicy::default();
    let sqn = if seq_ms == 0 {
        SqnArray::new(policy)
    } else {
        SqnArray::restore(policy, &vec![seq_ms; policy.ind_count()])
            .map_err(|_| UsimError::BadField(rec.impi.clone(), "sqn"))?
    };
    Ok(Usim::new(m, sqn))
}
