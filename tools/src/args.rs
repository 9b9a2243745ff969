//! A small `--name VALUE` / `--name=VALUE` option parser for akactl subcommands, with errors
//! that name the offending argument.

use std::collections::BTreeMap;

/// A command-line usage error; its text names the argument at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parsed options of one subcommand: each allowed `--name` at most once.
#[derive(Debug, Default)]
pub struct Options {
    values: BTreeMap<String, String>,
}

impl Options {
    /// Parses `args`, accepting only the option names in `allowed` (without the dashes).
    pub fn parse(args: &[String], allowed: &[&str]) -> Result<Self, UsageError> {
        let mut values = BTreeMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(UsageError(format!("unexpected argument '{arg}'")));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            if !allowed.contains(&name) {
                return Err(UsageError(format!("--{name}: unknown option")));
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| UsageError(format!("--{name}: missing value")))?,
            };
            if values.insert(name.to_owned(), value).is_some() {
                return Err(UsageError(format!("--{name}: given more than once")));
            }
        }
        Ok(Options { values })
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `--name`, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&str, UsageError> {
        self.get(name)
            .ok_or_else(|| UsageError(format!("--{name}: missing (required)")))
    }
}

/// Decodes exactly `N` bytes of hex from `--name`'s value.
pub fn hex_arg<const N: usize>(name: &str, value: &str) -> Result<[u8; N], UsageError> {
    if value.len() != 2 * N {
        return Err(UsageError(format!(
            "--{name}: expected {} hex digits ({N} bytes), got {} characters",
            2 * N,
            value.chars().count()
        )));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out)
        .map_err(|_| UsageError(format!("--{name}: not hexadecimal")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_both_forms_and_names_errors() {
        let o = Options::parse(&s(&["--a", "1", "--b=2"]), &["a", "b"]).unwrap();
        assert_eq!((o.get("a"), o.get("b")), (Some("1"), Some("2")));
        let e = |v: &[&str]| Options::parse(&s(v), &["a"]).unwrap_err().0;
        assert_eq!(e(&["--c", "1"]), "--c: unknown option");
        assert_eq!(e(&["--a"]), "--a: missing value");
        assert_eq!(e(&["--a", "1", "--a=2"]), "--a: given more than once");
        assert_eq!(e(&["x"]), "unexpected argument 'x'");
    }

    #[test]
    fn hex_lengths() {
        assert_eq!(hex_arg::<2>("amf", "B9b9").unwrap(), [0xb9, 0xb9]);
        assert_eq!(
            hex_arg::<2>("amf", "b9b").unwrap_err().0,
            "--amf: expected 4 hex digits (2 bytes), got 3 characters"
        );
        assert_eq!(
            hex_arg::<2>("amf", "zzzz").unwrap_err().0,
            "--amf: not hexadecimal"
        );
        // Multi-byte characters count as characters, not hex digits, and never panic.
        assert_eq!(
            hex_arg::<2>("amf", "é9").unwrap_err().0,
            "--amf: expected 4 hex digits (2 bytes), got 2 characters"
        );
        assert_eq!(
            hex_arg::<2>("amf", "éé").unwrap_err().0,
            "--amf: not hexadecimal"
        );
    }
}
