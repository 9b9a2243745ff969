//! `akactl subscribers --count N --out FILE [--seed S] [--mcc MCC --mnc MNC]`: writes N test
//! subscribers (random K/OPc, deterministic for a seed) as an HSS TOML file.

use akagate_slowpath::hss::{generate_subscribers, render_toml, Plmn};

use crate::args::{Options, UsageError};

/// Runs the subcommand; returns the summary line.
pub fn run(args: &[String]) -> Result<String, UsageError> {
    let o = Options::parse(args, &["count", "out", "seed", "mcc", "mnc"])?;
    let num = |name: &str, default: Option<u64>| -> Result<u64, UsageError> {
        match o.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| UsageError(format!("--{name}: not a number"))),
            None => default.ok_or_else(|| UsageError(format!("--{name}: missing (required)"))),
        }
    };
    let count = num("count", None)?;
    if count == 0 || count > 10_000_000 {
        return Err(UsageError("--count: must be 1..=10000000".into()));
    }
    let seed = num("seed", Some(1))?;
    let mcc = o.get("mcc").unwrap_or("001");
    let mnc = o.get("mnc").unwrap_or("01");
    let digits = |s: &str, n: &[usize], name: &str| -> Result<u16, UsageError> {
        if n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse()
                .map_err(|_| UsageError(format!("--{name}: bad value")))
        } else {
            Err(UsageError(format!("--{name}: expected {n:?} digits")))
        }
    };
    let plmn = Plmn {
        mcc: digits(mcc, &[3], "mcc")?,
        mnc: digits(mnc, &[2, 3], "mnc")?,
        mnc3: mnc.len() == 3,
    };
    let out = o.require("out")?;
    let text = render_toml(&generate_subscribers(count, seed, plmn));
    std::fs::write(out, text).map_err(|e| UsageError(format!("--out {out}: {e}")))?;
    Ok(format!("wrote {count} subscribers to {out}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_slowpath::hss::{parse_toml, Hss};

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn writes_a_loadable_deterministic_file() {
        let dir = std::env::temp_dir().join(format!("akactl-subs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
        for p in [&a, &b] {
            let msg = run(&args(&[
                "--count",
                "5",
                "--seed",
                "9",
                "--mcc",
                "460",
                "--mnc",
                "002",
                "--out",
                p.to_str().unwrap(),
            ]))
            .unwrap();
            assert!(msg.starts_with("wrote 5 subscribers"));
        }
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text, std::fs::read_to_string(&b).unwrap());
        let recs = parse_toml(&text).unwrap();
        assert_eq!(
            recs[0].impi,
            "460002000000001@ims.mnc002.mcc460.3gppnetwork.org"
        );
        assert_eq!(Hss::load(&a).unwrap().len(), 5);
        assert!(run(&args(&["--count", "0", "--out", "x"])).is_err());
        assert!(run(&args(&["--count", "1", "--mcc", "12", "--out", "x"])).is_err());
        assert!(run(&args(&["--count", "1"])).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
