//! The built `akagate` binary: plain runs and `--check-config` on a configuration text.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The built `akagate` binary (cargo names it only to the root package's tests; `tools/`
/// includes this module too but never runs it, so `env!` would not compile there).
#[allow(clippy::option_env_unwrap)]
pub fn akagate_bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_akagate").expect("a test of the akagate package")
}

/// Runs the built `akagate` with `args`.
pub fn akagate(args: &[&str]) -> Output {
    Command::new(akagate_bin()).args(args).output().unwrap()
}

/// `--check-config` runs on variants of one base configuration text.
pub struct CheckConfig {
    /// The directory (under the target's temp dir) the variants are written to.
    pub dir: &'static str,
    /// The base text the variants are made from.
    pub base: &'static str,
}

impl CheckConfig {
    /// Writes `text` to `<dir>/<name>.toml` and runs `--check-config` on it: (exit code,
    /// stdout, stderr lines with the `FILE:` prefix removed).
    pub fn check(&self, name: &str, text: &str) -> (i32, String, Vec<String>) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(self.dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = akagate(&["--check-config", path.to_str().unwrap()]);
        let prefix = format!("{}:", path.display());
        let lines = String::from_utf8(out.stderr)
            .unwrap()
            .lines()
            .map(|l| {
                l.strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{name}: error line without the file prefix: {l}"))
                    .to_string()
            })
            .collect();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            lines,
        )
    }

    /// Like [`check`](Self::check) for a text that must be valid: exit status 0 and no
    /// error line; returns stdout.
    pub fn check_valid(&self, name: &str, text: &str) -> String {
        let (code, stdout, errors) = self.check(name, text);
        assert_eq!((code, errors.len()), (0, 0), "{errors:?}");
        stdout
    }

    /// The base text with line `n` (1-based, not blank) replaced by `with`.
    pub fn base_with(&self, n: usize, with: &str) -> String {
        let mut lines: Vec<&str> = self.base.lines().collect();
        assert!(!lines[n - 1].is_empty(), "line {n} is blank");
        lines[n - 1] = with;
        lines.join("\n") + "\n"
    }
}

/// The stdout of a run that must have exited with status 0 (its stderr in the message).
pub fn stdout_of_success(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts that `text` contains every one of `parts`.
pub fn assert_contains_all(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "missing {part:?} in {text}");
    }
}
