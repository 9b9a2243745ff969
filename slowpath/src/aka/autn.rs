//! AUTN and AUTS (TS 33.102 6.3.2, 6.3.3) and the network's side of AKA: authentication
//! vectors and resynchronisation from RAND + AUTS (6.3.5).

use subtle::ConstantTimeEq;

use super::material::{Ck, Ik, Res};
use super::milenage::Milenage;
use super::sqn::Sqn;

/// The dummy AMF* used in MAC-S (TS 33.102 6.3.3: "AMF* = 0x0000" in resynchronisation).
pub const AMF_RESYNC: [u8; 2] = [0, 0];

/// AUTN = SQN xor AK || AMF || MAC-A (TS 33.102 6.3.2), 16 bytes. Not secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autn([u8; 16]);

impl Autn {
    /// Builds AUTN from its parts.
    pub fn new(sqn: Sqn, ak: &[u8; 6], amf: [u8; 2], mac_a: [u8; 8]) -> Self {
        let sqn = sqn.to_bytes();
        let mut a = [0u8; 16];
        for (i, (s, k)) in sqn.iter().zip(ak).enumerate() {
            a[i] = s ^ k;
        }
        a[6..8].copy_from_slice(&amf);
        a[8..16].copy_from_slice(&mac_a);
        Autn(a)
    }

    /// Wraps 16 received bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Autn(bytes)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// SQN xor AK (first 6 bytes).
    pub fn sqn_xor_ak(&self) -> [u8; 6] {
        core::array::from_fn(|i| self.0[i])
    }

    /// AMF (bytes 6..8).
    pub fn amf(&self) -> [u8; 2] {
        [self.0[6], self.0[7]]
    }

    /// MAC-A (last 8 bytes).
    pub fn mac_a(&self) -> [u8; 8] {
        core::array::from_fn(|i| self.0[8 + i])
    }
}

/// One authentication vector, as the HSS/AuC hands it to the S-CSCF (TS 33.102 6.3.2):
/// RAND, XRES, CK, IK, AUTN.
#[derive(Debug, Clone)]
pub struct AuthVector {
    /// RAND, the challenge.
    pub rand: [u8; 16],
    /// XRES, the expected response.
    pub xres: Res,
    /// CK.
    pub ck: Ck,
    /// IK.
    pub ik: Ik,
    /// AUTN.
    pub autn: Autn,
}

impl AuthVector {
    /// Generates the vector for a given RAND, SQN and AMF (TS 33.102 6.3.2, Figure 7).
    pub fn generate(m: &Milenage, rand: [u8; 16], sqn: Sqn, amf: [u8; 2]) -> Self {
        let mac_a = m.f1(&rand, &sqn.to_bytes(), &amf);
        let out = m.f2345(&rand);
        AuthVector {
            rand,
            autn: Autn::new(sqn, &out.ak, amf, mac_a),
            xres: out.res.clone(),
            ck: out.ck.clone(),
            ik: out.ik.clone(),
        }
    }
}

/// AUTS = SQN_MS xor AK* || MAC-S (TS 33.102 6.3.3), 14 bytes, sent by the UE on a
/// synchronisation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auts([u8; 14]);

/// The network could not use an AUTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AutsError {
    /// MAC-S did not verify: the AUTS is forged or belongs to another RAND/subscriber.
    #[error("AUTS MAC-S verification failed")]
    MacSFailure,
}

impl Auts {
    /// The UE's AUTS for RAND and its SQN_MS (TS 33.102 6.3.3): AK* = f5*(RAND),
    /// MAC-S = f1*(SQN_MS, RAND, AMF* = 0x0000).
    pub fn generate(m: &Milenage, rand: &[u8; 16], sqn_ms: Sqn) -> Self {
        let ak_star = m.f5_star(rand);
        let sqn = sqn_ms.to_bytes();
        let mac_s = m.f1_star(rand, &sqn, &AMF_RESYNC);
        let mut a = [0u8; 14];
        for i in 0..6 {
            a[i] = sqn[i] ^ ak_star[i];
        }
        a[6..14].copy_from_slice(&mac_s);
        Auts(a)
    }

    /// Wraps 14 received bytes.
    pub fn from_bytes(bytes: [u8; 14]) -> Self {
        Auts(bytes)
    }

    /// The 14 bytes.
    pub fn as_bytes(&self) -> &[u8; 14] {
        &self.0
    }

    /// The network side (TS 33.102 6.3.5): recovers SQN_MS with f5*, recomputes MAC-S with
    /// AMF* = 0x0000 and compares in constant time. Returns SQN_MS on success.
    pub fn resync(&self, m: &Milenage, rand: &[u8; 16]) -> Result<Sqn, AutsError> {
        let ak_star = m.f5_star(rand);
        let sqn: [u8; 6] = core::array::from_fn(|i| self.0[i] ^ ak_star[i]);
        let xmac_s = m.f1_star(rand, &sqn, &AMF_RESYNC);
        if bool::from(xmac_s.ct_eq(&self.0[6..14])) {
            Ok(Sqn::from_bytes(sqn))
        } else {
            Err(AutsError::MacSFailure)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autn_fields() {
        let a = Autn::new(
            Sqn::from_bytes([1, 2, 3, 4, 5, 6]),
            &[0xff; 6],
            [0x80, 0x00],
            [9; 8],
        );
        assert_eq!(a.sqn_xor_ak(), [0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9]);
        assert_eq!(a.amf(), [0x80, 0x00]);
        assert_eq!(a.mac_a(), [9; 8]);
    }
}
