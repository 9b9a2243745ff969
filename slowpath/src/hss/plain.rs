//! A line reader for the plain TOML the project writes itself (issue 10, carrier scale): the
//! subscriber file as `akactl subscribers` renders it and the SQN snapshot as
//! `render_snapshot` renders it, read without `toml`'s document (at a million subscribers
//! `toml` built a DOM of ~20 GB of page faults and moves: ~20 s of CPU at start).
//!
//! Each reader accepts a strict subset of TOML: one `key = value` a line, bare keys (the
//! snapshot: quoted keys too), basic strings without escapes, single-line arrays of them,
//! `#` comments and blank lines. Anything else (an escape, a literal string, a multi-line
//! array, a dotted key, a duplicate key, a missing field, an unknown one) returns `None`,
//! and the caller parses the text with `toml` instead: its result and its error messages are
//! then `toml`'s own. A reader that returns `Some` agrees with `toml` (tests, fuzz target
//! `subscriber_file`).

use super::persist::{parse_sqn_hex, SqnState};
use super::record::SubscriberRecord;

/// The lines of `text`: split after `\n`, the `\n` or `\r\n` dropped (a lone `\r`, the
/// last line's too, stays in the line, where no rule of these readers accepts it).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .map(|l| match l.strip_suffix('\n') {
            Some(l) => l.strip_suffix('\r').unwrap_or(l),
            None => l,
        })
}

/// The lines of `text` that hold a key or a header, without their leading white space:
/// blank lines and comments skipped; `None` in place of a comment with a byte TOML
/// forbids (the reader then leaves the plain subset).
fn content_lines(text: &str) -> impl Iterator<Item = Option<&str>> {
    lines(text).filter_map(|line| {
        let t = skip_ws(line);
        if t.is_empty() || t.starts_with('#') {
            (!ends_line(t)).then_some(None)
        } else {
            Some(Some(t))
        }
    })
}

/// `s` without leading TOML white space (space, tab).
fn skip_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Whether `rest` (after a value) ends the line: white space, then nothing or a comment
/// of allowed characters (TOML: tab, printable ASCII, non-ASCII; no other control byte).
fn ends_line(rest: &str) -> bool {
    match skip_ws(rest).strip_prefix('#') {
        Some(comment) => comment
            .bytes()
            .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f)),
        None => skip_ws(rest).is_empty(),
    }
}

/// A basic string at the start of `s` (`"` already expected there), without escapes:
/// its content and the rest after the closing quote. `None` for anything else, a
/// multi-line string (`"""`) or a byte TOML forbids unescaped included.
fn basic_string(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('"')?;
    if body.starts_with("\"\"") {
        return None;
    }
    let end = body.find('"')?;
    let content = &body[..end];
    let plain = |b: u8| b == b'\t' || (b >= b' ' && b != b'\\' && b != 0x7f);
    content
        .bytes()
        .all(plain)
        .then(|| (content, &body[end + 1..]))
}

/// A bare key at the start of `s` (`A-Za-z0-9_-`, at least one), then `=` between white
/// space: the key and the value's text.
fn bare_key_value(s: &str) -> Option<(&str, &str)> {
    let s = skip_ws(s);
    let n = s
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        .count();
    if n == 0 {
        return None;
    }
    let value = skip_ws(skip_ws(&s[n..]).strip_prefix('=')?);
    Some((&s[..n], value))
}

/// A whole string value (`"..."`, then the end of the line).
fn string_value(v: &str) -> Option<String> {
    let (content, rest) = basic_string(v)?;
    ends_line(rest).then(|| content.to_string())
}

/// A whole single-line array of strings (`["a", "b"]`, a trailing comma allowed).
fn string_array(v: &str) -> Option<Vec<String>> {
    let mut s = skip_ws(v.strip_prefix('[')?);
    let mut out = Vec::with_capacity(2);
    loop {
        if let Some(rest) = s.strip_prefix(']') {
            return ends_line(rest).then_some(out);
        }
        let (content, rest) = basic_string(s)?;
        out.push(content.to_string());
        let rest = skip_ws(rest);
        s = match rest.strip_prefix(',') {
            Some(after) => skip_ws(after),
            None if rest.starts_with(']') => rest,
            None => return None,
        };
    }
}

/// A subscriber table's fields while its lines are read.
#[derive(Default)]
struct Fields {
    impi: Option<String>,
    impu: Option<Vec<String>>,
    k: Option<String>,
    opc: Option<String>,
    op: Option<String>,
    amf: Option<String>,
    sqn: Option<String>,
}

impl Fields {
    /// Sets field `key` from value text `v`; `None` for an unknown key, a key given twice
    /// or a value of another shape.
    fn set(&mut self, key: &str, v: &str) -> Option<()> {
        let slot = match key {
            "impu" => {
                return match self.impu {
                    Some(_) => None,
                    None => {
                        self.impu = Some(string_array(v)?);
                        Some(())
                    }
                }
            }
            "impi" => &mut self.impi,
            "k" => &mut self.k,
            "opc" => &mut self.opc,
            "op" => &mut self.op,
            "amf" => &mut self.amf,
            "sqn" => &mut self.sqn,
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(string_value(v)?);
        Some(())
    }

    /// The record, with `serde`'s defaults (`amf`, `sqn`); `None` if a required field is
    /// missing.
    fn finish(self) -> Option<SubscriberRecord> {
        let Fields {
            impi,
            impu,
            k,
            opc,
            op,
            amf,
            sqn,
        } = self;
        Some(SubscriberRecord {
            impi: impi?,
            impu: impu?,
            k: k?,
            opc,
            op,
            amf: amf.unwrap_or_else(|| "8000".into()),
            sqn: sqn.unwrap_or_else(|| "000000000000".into()),
        })
    }
}

/// The header of a subscriber table.
const HEADER: &str = "[[subscriber]]";

/// Reads a subscriber file of `[[subscriber]]` tables in the plain subset; `None` if the
/// text leaves it (the caller then parses it with `toml`).
pub(crate) fn subscribers(text: &str) -> Option<Vec<SubscriberRecord>> {
    // A generated record is about 275 bytes: one allocation of the list, not a doubling.
    let mut out = Vec::with_capacity(text.len() / 256 + 1);
    let mut current: Option<Fields> = None;
    for t in content_lines(text) {
        let t = t?;
        if let Some(rest) = t.strip_prefix(HEADER) {
            if !ends_line(rest) {
                return None;
            }
            if let Some(done) = current.replace(Fields::default()) {
                out.push(done.finish()?);
            }
            continue;
        }
        let (key, v) = bare_key_value(t)?;
        current.as_mut()?.set(key, v)?;
    }
    if let Some(done) = current {
        out.push(done.finish()?);
    }
    Some(out)
}

/// Reads an SQN snapshot (one `key = "<12 hex digits>"` a line, bare or quoted keys, as
/// `render_snapshot` writes it); `None` if the text leaves that form, an SQN is not 12 hex
/// digits or an IMPI is given twice (the caller then parses it with `toml`).
pub(crate) fn snapshot(text: &str) -> Option<SqnState> {
    let mut pairs: Vec<(String, u64)> = Vec::with_capacity(text.len() / 64 + 1);
    for t in content_lines(text) {
        let t = t?;
        let (key, v) = if t.starts_with('"') {
            let (key, rest) = basic_string(t)?;
            (key, skip_ws(skip_ws(rest).strip_prefix('=')?))
        } else {
            bare_key_value(t)?
        };
        let (hex, rest) = basic_string(v)?;
        if !ends_line(rest) {
            return None;
        }
        pairs.push((key.to_string(), parse_sqn_hex(hex)?));
    }
    // Written sorted: checked in one pass; otherwise sorted here. A key twice is `toml`'s
    // error to report.
    if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
    }
    // Sorted and unique: the map is built in bulk.
    Some(pairs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hss::{
        generate_subscribers, parse_snapshot_document, parse_toml_document, render_snapshot,
        render_toml, Plmn,
    };

    /// The committed subscriber files and generated ones are read by the line reader, and
    /// to the records `toml` makes of them.
    #[test]
    fn the_plain_files_read_as_toml_reads_them() {
        let fixtures = [
            include_str!("../../../bench/tests/fixtures/subscribers.toml"),
            include_str!("../../../tests/interop/fixtures/subscribers.toml"),
        ];
        let generated = render_toml(&generate_subscribers(50, 7, Plmn::default()));
        for text in fixtures.iter().copied().chain([generated.as_str()]) {
            let plain = subscribers(text).expect("read without toml");
            assert!(!plain.is_empty());
            assert_eq!(plain, parse_toml_document(text).unwrap());
        }
    }

    /// Texts inside the subset read as `toml` reads them; texts outside it (valid TOML or
    /// not) are left to `toml`, so `parse_toml` gives `toml`'s records or `toml`'s error,
    /// with its line and column, for each.
    #[test]
    fn texts_outside_the_subset_are_left_to_toml() {
        let rec = "impi = \"a@x\"\nimpu = [\"sip:a@x\"]\nk = \"000102030405060708090a0b0c0d0e0f\"\nopc = \"000102030405060708090a0b0c0d0e0f\"\n";
        let inside = [
            String::new(),
            "# only a comment\n\n".into(),
            format!("[[subscriber]]\n{rec}"),
            format!("[[subscriber]] # one\r\n{}", rec.replace('\n', "\r\n")),
            format!("  [[subscriber]]\n\t{rec}sqn = \"000000000020\" # c\namf=\"0000\"\n"),
            "[[subscriber]]\nimpi=\"b\"\nimpu=[]\nk=\"x\"\n".into(),
            "[[subscriber]]\nimpi=\"\"\nimpu=[ \"a\" , \"b\", ]\nk=\"x\"\nop=\"y\"\n".into(),
            format!(
                "[[subscriber]]\n{rec}[[subscriber]]\n{}",
                rec.replace("a@x", "b@x")
            ),
        ];
        for text in &inside {
            let plain = subscribers(text).unwrap_or_else(|| panic!("inside: {text:?}"));
            assert_eq!(plain, parse_toml_document(text).unwrap(), "{text:?}");
        }
        let outside = [
            // Valid TOML the reader leaves to `toml`.
            "[[subscriber]]\nimpi = 'a'\nimpu = []\nk = \"x\"\n",
            "[[subscriber]]\nimpi = \"a\\u0041\"\nimpu = []\nk = \"x\"\n",
            "[[subscriber]]\nimpi = \"a\"\nimpu = [\n\"u\"\n]\nk = \"x\"\n",
            "[[ subscriber ]]\nimpi = \"a\"\nimpu = []\nk = \"x\"\n",
            "subscriber = [{impi = \"a\", impu = [], k = \"x\"}]\n",
            "\u{feff}[[subscriber]]\nimpi = \"a\"\nimpu = []\nk = \"x\"\n",
            // Invalid: `toml`'s errors.
            "[[subscriber]]\nimpi = 3\n",
            "[[subscriber]]\nimpi=\"a\"\nimpu=[]\nk=\"00\"\nki=\"x\"\n",
            "[[subscriber]]\nimpi=\"a\"\nimpi=\"b\"\nimpu=[]\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\"\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\nimpu=[]\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\" x\nimpu=[]\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\"\nimpu=[\"u\" \"v\"]\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\"\nimpu=[,]\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\u{7f}\"\nimpu=[]\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\"\rimpu=[]\nk=\"00\"\n",
            "[[subscriber]]\nimpi=\"a\"\nimpu=[]\nk=\"00\"\r",
            "[[subscriber]] # bad \u{1} comment\nimpi=\"a\"\nimpu=[]\nk=\"00\"\n",
            "impi = \"a\"\n[[subscriber]]\n",
            "[[subscriber]]x\n",
            "[[subscriber]]\n",
            "[other]\n",
        ];
        for text in outside {
            assert!(subscribers(text).is_none(), "outside: {text:?}");
            assert_eq!(
                crate::hss::parse_toml(text),
                parse_toml_document(text),
                "{text:?}"
            );
        }
        let err = crate::hss::parse_toml("[[subscriber]]\nimpi = 3\n").unwrap_err();
        let crate::hss::HssError::Parse { reason, .. } = err else {
            panic!("{err:?}")
        };
        assert!(reason.contains("invalid type"), "{reason}");
    }

    /// Snapshots `render_snapshot` writes (bare and quoted keys) read as `toml` reads them;
    /// escaped keys, a key twice, a bad SQN and other shapes are left to `toml` (an old file
    /// still loads, a bad one fails as before).
    #[test]
    fn snapshots_read_as_toml_reads_them() {
        let written = render_snapshot([
            ("001010000000001@ims.mnc001.mcc001.3gppnetwork.org", 0x20),
            ("b@x", 0xffff_ffff_ffff),
            ("with space", 1),
            ("", 0),
            ("bare_key-1", 7),
        ])
        .unwrap();
        let unsorted = "b = \"000000000001\"\n\"a\" = \"000000000002\" # c\n\n";
        for text in [written.as_str(), unsorted, ""] {
            let plain = snapshot(text).unwrap_or_else(|| panic!("inside: {text:?}"));
            assert_eq!(plain, parse_snapshot_document(text).unwrap(), "{text:?}");
        }
        let escaped = render_snapshot([("quo\"te", 1), ("a", 2)]).unwrap();
        for text in [
            escaped.as_str(),
            "a = \"000000000001\"\n\"a\" = \"000000000002\"\n",
            "a = \"01\"\n",
            "a = 'literal'\n",
            "a = 1\n",
            "[t]\na = \"000000000001\"\n",
            "a.b = \"000000000001\"\n",
            "not toml",
        ] {
            assert!(snapshot(text).is_none(), "outside: {text:?}");
            assert_eq!(
                crate::hss::parse_snapshot(text),
                parse_snapshot_document(text),
                "{text:?}"
            );
        }
        assert_eq!(
            crate::hss::parse_snapshot(&escaped).unwrap().get("quo\"te"),
            Some(&1)
        );
    }

    /// Start-up at carrier scale (issue 10): prints the CPU time of reading
    /// `AKAGATE_LOAD_N` (default 100,000) generated subscribers and building the store, by
    /// the line reader and by `toml`, and checks they agree. Run with `cargo test --release
    /// -p akagate-slowpath --lib load_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn load_timing() {
        let n: u64 = std::env::var("AKAGATE_LOAD_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let text = render_toml(&generate_subscribers(n, 1, Plmn::default()));
        let t = std::time::Instant::now();
        let plain = crate::hss::parse_toml(&text).unwrap();
        let parsed = t.elapsed();
        let hss = crate::hss::Hss::from_records_owned(plain.clone()).unwrap();
        let built = t.elapsed() - parsed;
        let t = std::time::Instant::now();
        let via_toml = parse_toml_document(&text).unwrap();
        let toml_parsed = t.elapsed();
        assert_eq!(plain, via_toml);
        assert_eq!(hss.len() as u64, n);
        println!(
            "{n} subscribers ({} MB): line reader {:.3} s, toml {:.3} s; store built in {:.3} s",
            text.len() >> 20,
            parsed.as_secs_f64(),
            toml_parsed.as_secs_f64(),
            built.as_secs_f64()
        );
    }
}
