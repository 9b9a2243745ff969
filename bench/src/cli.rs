//! The small `--name value` / `--flag` command-line parser shared by `akabench` and `akapktgen`.

use std::collections::{HashMap, HashSet};

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `--help` or `-h`: print the usage and exit successfully.
    Help,
    /// Options (`--name value`, keyed by `name`) and flags (keyed by `--flag`).
    Args {
        /// Option values by name without the leading dashes.
        opts: HashMap<String, String>,
        /// Flags given, with their dashes.
        flags: HashSet<String>,
    },
}

/// Parses `args`: `flags` take no value, every other `--name` takes the next argument and must
/// be in `known`. The error is the usage message's first line.
pub fn parse(args: &[String], flags: &[&str], known: &[&str]) -> Result<Parsed, String> {
    let mut opts = HashMap::new();
    let mut given = HashSet::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            f if flags.contains(&f) => {
                given.insert(a.clone());
            }
            s if s.starts_with("--") => match it.next() {
                Some(v) => {
                    opts.insert(s.trim_start_matches("--").to_string(), v.clone());
                }
                None => return Err(format!("{s} needs a value")),
            },
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if let Some(k) = opts.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown option --{k}"));
    }
    Ok(Parsed::Args { opts, flags: given })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_flags_help_and_errors() {
        let p = parse(&args("--ues 3 --ipv6"), &["--ipv6"], &["ues"]).unwrap();
        let Parsed::Args { opts, flags } = p else {
            panic!("not args")
        };
        assert_eq!(opts.get("ues").map(String::as_str), Some("3"));
        assert!(flags.contains("--ipv6"));
        assert_eq!(parse(&args("--ues 1 -h"), &[], &["ues"]), Ok(Parsed::Help));
        assert_eq!(
            parse(&args("--ues"), &[], &["ues"]),
            Err("--ues needs a value".into())
        );
        assert_eq!(
            parse(&args("x"), &[], &[]),
            Err("unexpected argument x".into())
        );
        assert_eq!(
            parse(&args("--nope 1"), &[], &["ues"]),
            Err("unknown option --nope".into())
        );
    }
}
