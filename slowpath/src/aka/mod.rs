//! IMS-AKA: Milenage (TS 35.206), AUTN/AUTS/SQN (TS 33.102), AKAv1-MD5 (RFC 3310), ESP keys (TS 33.203 Annex I).

pub mod autn;
pub mod digest;
pub mod digest_params;
pub mod keys;
pub mod material;
mod md5_short;
pub mod milenage;
pub mod sqn;
pub mod usim;

pub use autn::{AuthVector, Autn, Auts, AutsError, AMF_RESYNC};
pub(crate) use digest::Ha2Cache;
pub use digest::{
    aka_response, decode_auts, digest_response, encode_auts, verify_response, AkaNonce,
    AkaNonceError, DigestInput, DigestResponse, NonceText, QopAuth, ALGORITHM_AKAV1_MD5,
    AUTS_PASSWORD,
};
pub use digest_params::{
    ChallengeRef, DigestChallenge, DigestCredentials, DigestParams, DigestParseError,
};
pub use keys::{derive_suite, KeyError};
pub use material::{Ck, Ik, Res, ResLengthError};
pub use milenage::{opc_from_op, Milenage, F2345};
pub use sqn::{Sqn, SqnArray, SqnError, SqnGenerator, SqnPolicy, SqnReject};
pub use usim::{AkaFailure, AkaSuccess, Usim};
