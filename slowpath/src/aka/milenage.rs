//! Milenage, the 3GPP example AKA algorithm set (TS 35.206 clause 4.1): OPc and the functions
//! f1, f1*, f2, f3, f4, f5 and f5* on AES-128.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use zeroize::Zeroize;

use super::material::{Ck, Ik, Res};

/// Outputs of f2..f5 for one RAND: RES, CK, IK and AK (zeroized on drop).
#[derive(Debug, Clone)]
pub struct F2345 {
    /// RES (f2), 64 bits in Milenage.
    pub res: Res,
    /// CK (f3).
    pub ck: Ck,
    /// IK (f4).
    pub ik: Ik,
    /// AK (f5), the 48-bit anonymity key that conceals SQN in AUTN.
    pub ak: [u8; 6],
}

/// Milenage for one subscriber: the AES key schedule of K and OPc. Zeroized on drop (the `aes`
/// crate's `zeroize` feature clears the round keys); `Debug` shows no key.
#[derive(Clone)]
pub struct Milenage {
    cipher: Aes128,
    opc: [u8; 16],
}

impl Drop for F2345 {
    fn drop(&mut self) {
        // RES, CK and IK zeroize themselves.
        self.ak.zeroize();
    }
}

impl core::fmt::Debug for Milenage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Milenage(..)")
    }
}

impl Drop for Milenage {
    fn drop(&mut self) {
        self.opc.zeroize();
    }
}

// TS 35.206 4.1: rotation amounts r1..r5 (in bits) and constants c1..c5 (only the last byte is
// non-zero: c2 = ..01, c3 = ..02, c4 = ..04, c5 = ..08).
const R1: usize = 64;
const R2: usize = 0;
const R3: usize = 32;
const R4: usize = 64;
const R5: usize = 96;
const C1: u8 = 0x00;
const C2: u8 = 0x01;
const C3: u8 = 0x02;
const C4: u8 = 0x04;
const C5: u8 = 0x08;

fn encrypt(cipher: &Aes128, block: &mut [u8; 16]) {
    cipher.encrypt_block(GenericArray::from_mut_slice(block));
}

fn xor16(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    core::array::from_fn(|i| a[i] ^ b[i])
}

/// rot(x, r): cyclic left rotation of the 128-bit x by r bits (r is a multiple of 8 here).
fn rot(x: &[u8; 16], r_bits: usize) -> [u8; 16] {
    let r = r_bits / 8;
    core::array::from_fn(|i| x[(i + r) % 16])
}

/// OPc = OP xor E_K(OP) (TS 35.206 4.1).
pub fn opc_from_op(k: &[u8; 16], op: &[u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(GenericArray::from_slice(k));
    let mut e = *op;
    encrypt(&cipher, &mut e);
    let opc = xor16(&e, op);
    e.zeroize();
    opc
}

impl Milenage {
    /// Milenage keyed with K and OPc (the form a USIM/HSS normally stores).
    pub fn new(k: &[u8; 16], opc: &[u8; 16]) -> Self {
        Milenage {
            cipher: Aes128::new(GenericArray::from_slice(k)),
            opc: *opc,
        }
    }

    /// Milenage keyed with K and the operator variant OP; OPc is derived first.
    pub fn from_op(k: &[u8; 16], op: &[u8; 16]) -> Self {
        let mut opc = opc_from_op(k, op);
        let m = Milenage::new(k, &opc);
        opc.zeroize();
        m
    }

    /// OPc (for provisioning tools such as `akactl milenage`).
    pub fn opc(&self) -> [u8; 16] {
        self.opc
    }

    /// TEMP = E_K(RAND xor OPc).
    fn temp(&self, rand: &[u8; 16]) -> [u8; 16] {
        let mut temp = xor16(rand, &self.opc);
        encrypt(&self.cipher, &mut temp);
        temp
    }

    /// OUTn = E_K(rot(x xor OPc, r) xor c) xor OPc, for x = TEMP (n = 2..5) or
    /// x = TEMP-whitened IN1 (n = 1, handled by the caller).
    fn out(&self, x: &[u8; 16], r_bits: usize, c: u8) -> [u8; 16] {
        let mut block = rot(&xor16(x, &self.opc), r_bits);
        block[15] ^= c;
        encrypt(&self.cipher, &mut block);
        let out = xor16(&block, &self.opc);
        block.zeroize();
        out
    }

    /// OUT1 = E_K(TEMP xor rot(IN1 xor OPc, r1) xor c1) xor OPc, IN1 = SQN||AMF||SQN||AMF.
    fn out1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 16] {
        let mut in1 = [0u8; 16];
        in1[0..6].copy_from_slice(sqn);
        in1[6..8].copy_from_slice(amf);
        in1[8..14].copy_from_slice(sqn);
        in1[14..16].copy_from_slice(amf);
        let mut temp = self.temp(rand);
        let mut block = xor16(&temp, &rot(&xor16(&in1, &self.opc), R1));
        block[15] ^= C1;
        encrypt(&self.cipher, &mut block);
        let out = xor16(&block, &self.opc);
        temp.zeroize();
        block.zeroize();
        out
    }

    /// f1: the network authentication code MAC-A (first 64 bits of OUT1).
    pub fn f1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        let mut out1 = self.out1(rand, sqn, amf);
        let mac_a = first8(&out1);
        out1.zeroize();
        mac_a
    }

    /// f1*: the resynchronisation code MAC-S (last 64 bits of OUT1).
    pub fn f1_star(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        let mut out1 = self.out1(rand, sqn, amf);
        let mut mac_s = [0u8; 8];
        mac_s.copy_from_slice(&out1[8..16]);
        out1.zeroize();
        mac_s
    }

    /// f2, f3, f4 and f5 for one RAND: RES = OUT2[64..127], AK = OUT2[0..47], CK = OUT3,
    /// IK = OUT4.
    pub fn f2345(&self, rand: &[u8; 16]) -> F2345 {
        let mut temp = self.temp(rand);
        let mut out2 = self.out(&temp, R2, C2);
        let mut out3 = self.out(&temp, R3, C3);
        let mut out4 = self.out(&temp, R4, C4);
        let mut ak = [0u8; 6];
        ak.copy_from_slice(&out2[0..6]);
        let mut res = [0u8; 8];
        res.copy_from_slice(&out2[8..16]);
        let result = F2345 {
            res: Res::from(res),
            ck: Ck::new(out3),
            ik: Ik::new(out4),
            ak,
        };
        temp.zeroize();
        res.zeroize();
        out2.zeroize();
        out3.zeroize();
        out4.zeroize();
        result
    }

    /// f5*: the anonymity key AK used to conceal SQN_MS in AUTS (first 48 bits of OUT5).
    pub fn f5_star(&self, rand: &[u8; 16]) -> [u8; 6] {
        let mut temp = self.temp(rand);
        let mut out5 = self.out(&temp, R5, C5);
        let mut ak = [0u8; 6];
        ak.copy_from_slice(&out5[0..6]);
        temp.zeroize();
        out5.zeroize();
        ak
    }

    /// f5 alone (AK), cheaper than `f2345` when only SQN must be unmasked.
    pub fn f5(&self, rand: &[u8; 16]) -> [u8; 6] {
        let mut temp = self.temp(rand);
        let mut out2 = self.out(&temp, R2, C2);
        let mut ak = [0u8; 6];
        ak.copy_from_slice(&out2[0..6]);
        temp.zeroize();
        out2.zeroize();
        ak
    }
}

fn first8(x: &[u8; 16]) -> [u8; 8] {
    let mut o = [0u8; 8];
    o.copy_from_slice(&x[0..8]);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    // TS 35.208 4.3.1, Test Set 1 (the full set of six lives in tests/aka_milenage.rs).
    #[test]
    fn test_set_1() {
        let k = h::<16>("465b5ce8b199b49faa5f0a2ee238a6bc");
        let op = h::<16>("cdc202d5123e20f62b6d676ac72cb318");
        let rand = h::<16>("23553cbe9637a89d218ae64dae47bf35");
        let sqn = h::<6>("ff9bb4d0b607");
        let amf = h::<2>("b9b9");
        let m = Milenage::from_op(&k, &op);
        assert_eq!(hex::encode(m.opc()), "cd63cb71954a9f4e48a5994e37a02baf");
        assert_eq!(hex::encode(m.f1(&rand, &sqn, &amf)), "4a9ffac354dfafb3");
        assert_eq!(
            hex::encode(m.f1_star(&rand, &sqn, &amf)),
            "01cfaf9ec4e871e9"
        );
        let o = m.f2345(&rand);
        assert_eq!(hex::encode(o.res.as_bytes()), "a54211d5e3ba50bf");
        assert_eq!(
            hex::encode(o.ck.as_bytes()),
            "b40ba9a3c58b2a05bbf0d987b21bf8cb"
        );
        assert_eq!(
            hex::encode(o.ik.as_bytes()),
            "f769bcd751044604127672711c6d3441"
        );
        assert_eq!(hex::encode(o.ak), "aa689c648370");
        assert_eq!(hex::encode(m.f5(&rand)), "aa689c648370");
        assert_eq!(hex::encode(m.f5_star(&rand)), "451e8beca43b");
    }

    #[test]
    fn rot_is_left_rotation() {
        let x: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(rot(&x, 0), x);
        assert_eq!(rot(&x, 32)[0], 4);
        assert_eq!(rot(&x, 96)[15], 11);
    }

    #[test]
    fn debug_hides_keys() {
        let m = Milenage::new(&[0x11; 16], &[0x22; 16]);
        assert_eq!(format!("{m:?}"), "Milenage(..)");
    }
}
