//! The built `akagate` binary: plain runs and `--check-config` on a configuration text.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The built `akagate` binary (cargo names it only to the root package's tests; `tools/`
/// includes this module too but never runs it).
pub fn akagate_bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_akagate").expect("a test of the akagate package")
}

/// Runs the built `akagate` with `args`.
pub fn akagate(args: &[&str]) -> Output {
    Command::new(akagate_bin()).args(args).output().unwrap()
}

/// Writes `text` to `<dir>/<name>.toml` under the target's temp dir and runs `--check-config`
/// on it: (exit code, stdout, stderr lines with the `FILE:` prefix removed).
pub fn check_config(dir: &str, name: &str, text: &str) -> (i32, String, Vec<String>) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
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

/// `text` with line `n` (1-based, not blank) replaced by `with`.
pub fn replace_line(text: &str, n: usize, with: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(!lines[n - 1].is_empty(), "line {n} is blank");
    lines[n - 1] = with;
    lines.join("\n") + "\n"
}
