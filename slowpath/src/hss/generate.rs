//! Test subscribers: N deterministic (seeded) records with random K/OPc, IMSI-based IMPI/IMPU.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::record::SubscriberRecord;

/// The home network of generated subscribers (TS 23.003 13.2: `ims.mncMNC.mccMCC.3gppnetwork.org`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plmn {
    /// Mobile country code, 3 digits.
    pub mcc: u16,
    /// Mobile network code, 2 or 3 digits.
    pub mnc: u16,
    /// Whether the MNC has 3 digits (in the IMSI).
    pub mnc3: bool,
}

impl Default for Plmn {
    /// 001/01, the test PLMN.
    fn default() -> Self {
        Plmn {
            mcc: 1,
            mnc: 1,
            mnc3: false,
        }
    }
}

impl Plmn {
    /// The IMS home domain; the MNC is always written with 3 digits (TS 23.003 13.2).
    pub fn ims_domain(&self) -> String {
        format!("ims.mnc{:03}.mcc{:03}.3gppnetwork.org", self.mnc, self.mcc)
    }

    /// The 15-digit IMSI of subscriber number `msin`.
    pub fn imsi(&self, msin: u64) -> String {
        if self.mnc3 {
            format!("{:03}{:03}{:09}", self.mcc, self.mnc, msin % 1_000_000_000)
        } else {
            format!(
                "{:03}{:02}{:010}",
                self.mcc,
                self.mnc,
                msin % 10_000_000_000
            )
        }
    }
}

/// Generates `count` subscribers numbered from MSIN 1, with K and OPc drawn from a ChaCha
/// generator seeded with `seed` (the same seed gives the same file), AMF 8000 and SQN 0.
/// IMPUs are `sip:<imsi>@<domain>` and `tel:+1555<7-digit number>`.
pub fn generate_subscribers(count: u64, seed: u64, plmn: Plmn) -> Vec<SubscriberRecord> {
    let mut rng = StdRng::seed_from_u64(seed);
    let domain = plmn.ims_domain();
    (1..=count)
        .map(|n| {
            let imsi = plmn.imsi(n);
            let mut k = [0u8; 16];
            let mut opc = [0u8; 16];
            rng.fill_bytes(&mut k);
            rng.fill_bytes(&mut opc);
            let r = SubscriberRecord {
                impi: format!("{imsi}@{domain}"),
                impu: vec![
                    format!("sip:{imsi}@{domain}"),
                    format!("tel:+1555{:07}", n % 10_000_000),
                ],
                k: hex::encode(k),
                opc: Some(hex::encode(opc)),
                op: None,
                amf: "8000".into(),
                sqn: "000000000000".into(),
            };
            zeroize::Zeroize::zeroize(&mut k);
            zeroize::Zeroize::zeroize(&mut opc);
            r
        })
        .collect()
}

/// Renders records as a TOML subscriber file (`[[subscriber]]` tables).
pub fn render_toml(records: &[SubscriberRecord]) -> String {
    let mut s = String::with_capacity(records.len() * 300);
    s.push_str("# akagate HSS subscribers (K and OPc are secret)\n");
    for r in records {
        s.push_str("\n[[subscriber]]\n");
        s.push_str(&format!("impi = {}\n", toml_str(&r.impi)));
        let impu: Vec<String> = r.impu.iter().map(|u| toml_str(u)).collect();
        s.push_str(&format!("impu = [{}]\n", impu.join(", ")));
        s.push_str(&format!("k = {}\n", toml_str(&r.k)));
        if let Some(opc) = &r.opc {
            s.push_str(&format!("opc = {}\n", toml_str(opc)));
        }
        if let Some(op) = &r.op {
            s.push_str(&format!("op = {}\n", toml_str(op)));
        }
        s.push_str(&format!("amf = {}\n", toml_str(&r.amf)));
        s.push_str(&format!("sqn = {}\n", toml_str(&r.sqn)));
    }
    s
}

/// A TOML basic string (escapes `"`, `\` and control characters).
fn toml_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => s.push_str(&format!("\\u{:04X}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hss::{parse_toml, Hss};

    #[test]
    fn deterministic_and_loadable() {
        let a = generate_subscribers(50, 7, Plmn::default());
        let b = generate_subscribers(50, 7, Plmn::default());
        let c = generate_subscribers(50, 8, Plmn::default());
        assert_eq!(a, b);
        assert_ne!(a[0].k, c[0].k);
        assert_eq!(
            a[0].impi,
            "001010000000001@ims.mnc001.mcc001.3gppnetwork.org"
        );
        assert_eq!(a[49].impu[1], "tel:+15550000050");
        let text = render_toml(&a);
        assert_eq!(parse_toml(&text).unwrap(), a);
        assert_eq!(Hss::from_records(&a).unwrap().len(), 50);
        let p = Plmn {
            mcc: 460,
            mnc: 2,
            mnc3: false,
        };
        assert_eq!(p.imsi(7953821652), "460027953821652");
        assert_eq!(p.ims_domain(), "ims.mnc002.mcc460.3gppnetwork.org");
    }
}
