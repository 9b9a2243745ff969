//! AKA secrets handed out by Milenage: RES (4..=16 bytes), CK and IK. They zeroize on drop and
//! their `Debug` output never shows a byte of key material.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Shortest RES a USIM may return (TS 33.102 6.3.7: RES is 32..128 bits).
pub const RES_MIN_LEN: usize = 4;
/// Longest RES a USIM may return.
pub const RES_MAX_LEN: usize = 16;

/// The RES/XRES length was outside 4..=16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RES length {0} is outside {RES_MIN_LEN}..={RES_MAX_LEN} bytes")]
pub struct ResLengthError(pub usize);

/// RES (UE) or XRES (network): the AKA response, used as the RFC 3310 digest password.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Res {
    bytes: [u8; RES_MAX_LEN],
    len: u8,
}

impl Res {
    /// Wraps a RES of 4..=16 bytes.
    pub fn new(res: &[u8]) -> Result<Self, ResLengthError> {
        if !(RES_MIN_LEN..=RES_MAX_LEN).contains(&res.len()) {
            return Err(ResLengthError(res.len()));
        }
        let mut bytes = [0u8; RES_MAX_LEN];
        bytes[..res.len()].copy_from_slice(res);
        Ok(Res {
            bytes,
            // Fits: checked against RES_MAX_LEN = 16 above.
            len: res.len() as u8,
        })
    }

    /// The RES bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Constant-time comparison of two RES values (lengths are not secret).
    pub fn ct_eq(&self, other: &Res) -> bool {
        self.len == other.len && bool::from(self.as_bytes().ct_eq(other.as_bytes()))
    }
}

impl From<[u8; 8]> for Res {
    /// The 64-bit RES that Milenage's f2 produces.
    fn from(res: [u8; 8]) -> Self {
        let mut bytes = [0u8; RES_MAX_LEN];
        bytes[..8].copy_from_slice(&res);
        Res { bytes, len: 8 }
    }
}

impl core::fmt::Debug for Res {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Res(len={})", self.len)
    }
}

macro_rules! key128 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 16]);

        impl $name {
            /// Wraps 16 key bytes.
            pub fn new(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            /// The key bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

key128!(
    /// CK, the 128-bit cipher key (Milenage f3); CK_IM in TS 33.203.
    Ck
);
key128!(
    /// IK, the 128-bit integrity key (Milenage f4); IK_IM in TS 33.203.
    Ik
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn res_length_bounds() {
        assert_eq!(Res::new(&[0; 3]).unwrap_err(), ResLengthError(3));
        assert_eq!(Res::new(&[0; 17]).unwrap_err(), ResLengthError(17));
        assert_eq!(Res::new(&[7; 4]).unwrap().as_bytes(), &[7; 4]);
        assert_eq!(Res::new(&[7; 16]).unwrap().as_bytes(), &[7; 16]);
    }

    #[test]
    fn res_ct_eq_checks_length_and_bytes() {
        let a = Res::new(&[1, 2, 3, 4]).unwrap();
        assert!(a.ct_eq(&Res::new(&[1, 2, 3, 4]).unwrap()));
        assert!(!a.ct_eq(&Res::new(&[1, 2, 3, 5]).unwrap()));
        // Same prefix, different length: the zero padding must not make them equal.
        assert!(!a.ct_eq(&Res::new(&[1, 2, 3, 4, 0]).unwrap()));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let ck = Ck::new([0xab; 16]);
        let res = Res::new(&[0xcd; 8]).unwrap();
        let text = format!("{ck:?} {:?} {res:?}", Ik::new([0xef; 16]));
        assert!(!text.contains("ab") && !text.contains("cd") && !text.contains("ef"));
        assert!(!text.contains("171") && !text.contains("205"));
    }
}
