//! `akactl subscribers`: a file it cannot write is a runtime error (exit status 1, one line
//! naming the file); bad options are usage errors (exit status 2).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_akactl");

fn akactl(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run akactl")
}

#[test]
fn a_failed_write_exits_1_with_a_clear_message() {
    let out = akactl(&[
        "subscribers",
        "--count",
        "2",
        "--out",
        "/nonexistent/dir/s.toml",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("akactl subscribers: cannot write /nonexistent/dir/s.toml: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn writes_the_file_and_says_so() {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("akactl-subs.toml");
    let out = akactl(&[
        "subscribers",
        "--count",
        "3",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("wrote 3 subscribers to {}\n", path.display())
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("[[subscriber]]").count(), 3, "{text}");
}

#[test]
fn bad_options_exit_2() {
    for (args, needle) in [
        (
            &["subscribers", "--count", "0", "--out", "x"][..],
            "--count <N>",
        ),
        (
            &["subscribers", "--count", "1", "--mcc", "12", "--out", "x"],
            "--mcc: expected [3] digits",
        ),
        (&["subscribers", "--count", "1"], "--out <FILE>"),
        (
            &["subscribers", "--count", "--out", "x"],
            "a value is required for '--count <N>'",
        ),
        (
            &["subscribers", "--count", "1", "--count", "2", "--out", "x"],
            "cannot be used multiple times",
        ),
    ] {
        let out = akactl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}
