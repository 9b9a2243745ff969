//! Value parsers for akactl's options that clap does not have: fixed-length hex (keys, RAND,
//! SQN, AMF) and decimal digit strings (MCC, MNC). Their errors name the option and never
//! repeat the value (it may be a key).

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;

/// Parses exactly `N` bytes of hex (either case).
#[derive(Debug, Clone, Copy)]
pub struct Hex<const N: usize>;

/// Parses a string of one of the `lengths` of decimal digits.
#[derive(Debug, Clone, Copy)]
pub struct Digits(pub &'static [usize]);

/// The option's name as clap shows it (`--k`), or `value` when clap gives none.
fn option_name(arg: Option<&clap::Arg>) -> String {
    arg.and_then(clap::Arg::get_long)
        .map_or_else(|| "value".to_owned(), |long| format!("--{long}"))
}

/// A value error for `arg` whose message is `problem` (the value itself is not shown).
fn invalid(cmd: &clap::Command, arg: Option<&clap::Arg>, problem: &str) -> clap::Error {
    cmd.clone().error(
        ErrorKind::ValueValidation,
        format!("{}: {problem}", option_name(arg)),
    )
}

/// Decodes exactly `N` bytes from `value`, or says what is wrong with it.
pub fn decode_hex<const N: usize>(value: &str) -> Result<[u8; N], String> {
    if value.len() != 2 * N {
        return Err(format!(
            "expected {} hex digits ({N} bytes), got {} characters",
            2 * N,
            value.chars().count()
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out).map_err(|_| "not hexadecimal".to_owned())?;
    Ok(out)
}

impl<const N: usize> TypedValueParser for Hex<N> {
    type Value = [u8; N];

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let text = value
            .to_str()
            .ok_or_else(|| invalid(cmd, arg, "not UTF-8"))?;
        decode_hex(text).map_err(|problem| invalid(cmd, arg, &problem))
    }
}

impl TypedValueParser for Digits {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        match value.to_str() {
            Some(s) if self.0.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(s.to_owned())
            }
            _ => Err(invalid(cmd, arg, &format!("expected {:?} digits", self.0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lengths() {
        assert_eq!(decode_hex::<2>("B9b9").unwrap(), [0xb9, 0xb9]);
        assert_eq!(
            decode_hex::<2>("b9b").unwrap_err(),
            "expected 4 hex digits (2 bytes), got 3 characters"
        );
        assert_eq!(decode_hex::<2>("zzzz").unwrap_err(), "not hexadecimal");
        // Multi-byte characters count as characters, not hex digits, and never panic.
        assert_eq!(
            decode_hex::<2>("é9").unwrap_err(),
            "expected 4 hex digits (2 bytes), got 2 characters"
        );
        assert_eq!(decode_hex::<2>("éé").unwrap_err(), "not hexadecimal");
    }

    #[test]
    fn errors_name_the_option_and_hide_the_value() {
        let arg = clap::Arg::new("k").long("k");
        let cmd = clap::Command::new("t").arg(arg.clone());
        let err = Hex::<2>
            .parse_ref(&cmd, Some(&arg), "c0ffee".as_ref())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        let text = err.to_string();
        assert!(
            text.starts_with("error: --k: expected 4 hex digits"),
            "{text}"
        );
        assert!(!text.contains("c0ffee"), "{text}");
        let err = Digits(&[2, 3])
            .parse_ref(&cmd, Some(&arg), "1a".as_ref())
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("error: --k: expected [2, 3] digits"));
        assert_eq!(
            Digits(&[3]).parse_ref(&cmd, None, "001".as_ref()).unwrap(),
            "001"
        );
    }
}
