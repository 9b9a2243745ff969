//! `akactl subscribers --count N --out FILE [--seed S] [--mcc MCC --mnc MNC]`: writes N test
//! subscribers (random K/OPc, deterministic for a seed) as an HSS TOML file.

use std::path::PathBuf;

use akagate_slowpath::hss::{generate_subscribers, render_toml, Plmn};

use crate::args::Digits;

/// `akactl subscribers`: how many subscribers, where, and of which PLMN.
#[derive(Debug, clap::Args)]
pub struct SubscribersArgs {
    /// Number of subscribers (1..=10000000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: u64,
    /// HSS TOML file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Seed of the random K and OPc (the same seed writes the same file)
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Mobile country code (3 digits)
    #[arg(long, value_name = "MCC", default_value = "001", value_parser = Digits(&[3]))]
    mcc: String,
    /// Mobile network code (2 or 3 digits)
    #[arg(long, value_name = "MNC", default_value = "01", value_parser = Digits(&[2, 3]))]
    mnc: String,
}

/// Writes the file; returns the summary line, or the write error (a runtime error).
pub fn run(a: &SubscribersArgs) -> Result<String, String> {
    // Digits() admitted only 2 or 3 decimal digits, so these parse.
    let plmn = Plmn {
        mcc: a.mcc.parse().unwrap_or_default(),
        mnc: a.mnc.parse().unwrap_or_default(),
        mnc3: a.mnc.len() == 3,
    };
    let text = render_toml(&generate_subscribers(a.count, a.seed, plmn));
    let out = a.out.display();
    std::fs::write(&a.out, text).map_err(|e| format!("cannot write {out}: {e}"))?;
    Ok(format!("wrote {} subscribers to {out}", a.count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_slowpath::hss::{parse_toml, Hss};
    use clap::Parser;

    /// The subcommand's options alone, as clap parses them.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SubscribersArgs,
    }

    fn parse(v: &[&str]) -> Result<SubscribersArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("subscribers").chain(v.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn writes_a_loadable_deterministic_file() {
        let dir = std::env::temp_dir().join(format!("akactl-subs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
        for p in [&a, &b] {
            let args = parse(&[
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
            ])
            .unwrap();
            assert!(run(&args).unwrap().starts_with("wrote 5 subscribers"));
        }
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text, std::fs::read_to_string(&b).unwrap());
        let recs = parse_toml(&text).unwrap();
        assert_eq!(
            recs[0].impi,
            "460002000000001@ims.mnc002.mcc460.3gppnetwork.org"
        );
        assert_eq!(Hss::load(&a).unwrap().len(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_values_are_usage_errors_and_a_failed_write_is_not() {
        assert!(parse(&["--count", "0", "--out", "x"]).is_err());
        assert!(parse(&["--count", "1", "--mcc", "12", "--out", "x"]).is_err());
        assert!(parse(&["--count", "1", "--mnc", "1234", "--out", "x"]).is_err());
        assert!(parse(&["--count", "1"]).is_err());
        let args = parse(&["--count", "1", "--out", "/nonexistent/dir/s.toml"]).unwrap();
        let err = run(&args).unwrap_err();
        assert!(
            err.starts_with("cannot write /nonexistent/dir/s.toml: "),
            "{err}"
        );
    }
}
