//! The subscriber file: one record per subscriber, as TOML `[[subscriber]]` tables or CSV rows.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::HssError;

/// One subscriber as written in the file; keys are hex. Zeroized on drop; `Debug` hides keys.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubscriberRecord {
    /// Private identity (`username` in Authorization), e.g. `001010000000001@ims.mnc001.mcc001.3gppnetwork.org`.
    pub impi: String,
    /// Public identities (`sip:` / `tel:` URIs), the first one is the default IMPU.
    pub impu: Vec<String>,
    /// K, 32 hex digits.
    pub k: String,
    /// OPc, 32 hex digits (exactly one of `opc` and `op`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opc: Option<String>,
    /// OP, 32 hex digits (exactly one of `opc` and `op`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// AMF, 4 hex digits (default `8000`, the "separation bit" set as TS 33.102 Annex H asks).
    #[serde(default = "default_amf")]
    pub amf: String,
    /// Last SQN used, 12 hex digits (default 0).
    #[serde(default = "default_sqn")]
    pub sqn: String,
}

fn default_amf() -> String {
    "8000".into()
}

fn default_sqn() -> String {
    "000000000000".into()
}

impl core::fmt::Debug for SubscriberRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SubscriberRecord")
            .field("impi", &self.impi)
            .field("impu", &self.impu)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    subscriber: Vec<SubscriberRecord>,
}

/// Parses a TOML subscriber file (`[[subscriber]]` tables). A file in the plain form
/// `akactl subscribers` writes is read line by line without `toml`'s document (issue 10:
/// a million subscribers); any other is parsed by `toml` ([`parse_toml_document`]), whose
/// result and errors it then is.
pub fn parse_toml(text: &str) -> Result<Vec<SubscriberRecord>, HssError> {
    match super::plain::subscribers(text) {
        Some(records) => Ok(records),
        None => parse_toml_document(text),
    }
}

/// Parses a TOML subscriber file with the `toml` crate only (the reference
/// [`parse_toml`]'s line reader agrees with; tests and the fuzz target compare them).
pub fn parse_toml_document(text: &str) -> Result<Vec<SubscriberRecord>, HssError> {
    let f: TomlFile = toml::from_str(text).map_err(|e| HssError::Parse {
        line: 0,
        reason: e.message().to_string(),
    })?;
    Ok(f.subscriber)
}

/// Parses a CSV subscriber file: a header row naming the columns (`impi`, `impu`, `k`, `opc`
/// or `op`, optional `amf`, `sqn`), then one row per subscriber; IMPUs separated by `|`.
/// Lines starting with `#` and blank lines are skipped; fields are not quoted.
pub fn parse_csv(text: &str) -> Result<Vec<SubscriberRecord>, HssError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let idx = |name: &str| cols.iter().position(|c| c == name);
    let bad = |line: usize, reason: &str| HssError::Parse {
        line: line + 1,
        reason: reason.into(),
    };
    let (Some(i_impi), Some(i_impu), Some(i_k)) = (idx("impi"), idx("impu"), idx("k")) else {
        return Err(bad(0, "CSV header needs impi, impu and k"));
    };
    let (i_opc, i_op, i_amf, i_sqn) = (idx("opc"), idx("op"), idx("amf"), idx("sqn"));
    let mut out = Vec::new();
    for (n, line) in lines {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != cols.len() {
            return Err(bad(n, "wrong number of fields"));
        }
        let get = |i: Option<usize>| {
            i.and_then(|i| f.get(i))
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
        };
        out.push(SubscriberRecord {
            impi: get(Some(i_impi)).ok_or_else(|| bad(n, "empty impi"))?,
            impu: get(Some(i_impu))
                .map(|s| s.split('|').map(|u| u.trim().to_string()).collect())
                .unwrap_or_default(),
            k: get(Some(i_k)).ok_or_else(|| bad(n, "empty k"))?,
            opc: get(i_opc),
            op: get(i_op),
            amf: get(i_amf).unwrap_or_else(default_amf),
            sqn: get(i_sqn).unwrap_or_else(default_sqn),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_csv_agree() {
        let t = parse_toml(
            r#"
[[subscriber]]
impi = "001010000000001@ims.mnc001.mcc001.3gppnetwork.org"
impu = ["sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org", "tel:+15550001"]
k = "465b5ce8b199b49faa5f0a2ee238a6bc"
opc = "cd63cb71954a9f4e48a5994e37a02baf"
amf = "8000"
sqn = "000000000020"
"#,
        )
        .unwrap();
        let c = parse_csv(
            "# test\nimpi,impu,k,opc,amf,sqn\n001010000000001@ims.mnc001.mcc001.3gppnetwork.org,sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org|tel:+15550001,465b5ce8b199b49faa5f0a2ee238a6bc,cd63cb71954a9f4e48a5994e37a02baf,8000,000000000020\n",
        )
        .unwrap();
        assert_eq!(t, c);
        assert_eq!(t[0].impu.len(), 2);
        assert!(!format!("{:?}", t[0]).contains("465b5ce8"));
    }

    #[test]
    fn bad_files() {
        assert!(parse_toml("[[subscriber]]\nimpi = 3\n").is_err());
        assert!(parse_toml("[[subscriber]]\nimpi=\"a\"\nimpu=[]\nk=\"00\"\nki=\"x\"\n").is_err());
        assert!(parse_csv("impi,k\na,b\n").is_err());
        assert!(matches!(
            parse_csv("impi,impu,k\na,b\n"),
            Err(HssError::Parse { line: 2, .. })
        ));
    }
}
