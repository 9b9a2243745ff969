//! Runs the built `akactl` binary: `milenage` against TS 35.208 Test Set 1, and every usage
//! error path (exit status 2, one stderr line naming the argument).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_akactl");

// TS 35.208 4.3.1, Test Set 1.
const K: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
const OP: &str = "cdc202d5123e20f62b6d676ac72cb318";
const OPC: &str = "cd63cb71954a9f4e48a5994e37a02baf";
const RAND: &str = "23553cbe9637a89d218ae64dae47bf35";
const SQN: &str = "ff9bb4d0b607";
const AMF: &str = "b9b9";

fn akactl(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run akactl")
}

fn base(op_flag: &str, op: &str) -> Vec<String> {
    [
        "milenage", "--k", K, op_flag, op, "--rand", RAND, "--sqn", SQN, "--amf", AMF,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn check_set_1(out: &Output) {
    assert!(out.status.success(), "{:?}", out);
    assert!(out.stderr.is_empty());
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "exactly one line: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = v.as_object().unwrap();
    let expected = [
        ("opc", OPC),
        ("mac_a", "4a9ffac354dfafb3"),
        ("mac_s", "01cfaf9ec4e871e9"),
        ("res", "a54211d5e3ba50bf"),
        ("ck", "b40ba9a3c58b2a05bbf0d987b21bf8cb"),
        ("ik", "f769bcd751044604127672711c6d3441"),
        ("ak", "aa689c648370"),
        ("ak_star", "451e8beca43b"),
        // SQN xor AK || AMF || MAC-A = (ff9bb4d0b607 ^ aa689c648370) || b9b9 || 4a9f...
        ("autn", "55f328b43577b9b94a9ffac354dfafb3"),
    ];
    assert_eq!(obj.len(), expected.len(), "{text}");
    for (k, want) in expected {
        assert_eq!(obj[k].as_str(), Some(want), "field {k}");
    }
}

#[test]
fn test_set_1_with_op_and_with_opc() {
    let args = base("--op", OP);
    check_set_1(&akactl(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let args = base("--opc", OPC);
    check_set_1(&akactl(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    // Upper-case input and --name=value form give the same result.
    let upper = K.to_uppercase();
    let k_eq = format!("--k={upper}");
    let out = akactl(&[
        "milenage", &k_eq, "--opc", OPC, "--rand", RAND, "--sqn", SQN, "--amf", AMF,
    ]);
    check_set_1(&out);
}

/// Runs with `args`, expects exit status 2, nothing on stdout and clap's error on stderr
/// (`error: ...` containing `needle`, then the usage).
fn expect_usage_error(args: &[&str], needle: &str) {
    let out = akactl(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

fn replaced(flag: &str, value: &str) -> Vec<String> {
    let mut a = base("--op", OP);
    let i = a.iter().position(|x| x == flag).unwrap();
    a[i + 1] = value.to_owned();
    a
}

#[test]
fn bad_hex_and_wrong_lengths_name_the_argument() {
    for (flag, bad_len, not_hex) in [
        ("--k", &K[..30], "zz5b5ce8b199b49faa5f0a2ee238a6bc"),
        ("--op", &OP[2..], "cdc202d5123e20f62b6d676ac72cb31g"),
        ("--rand", "23", "23553cbe9637a89d218ae64dae47bf3 "),
        ("--sqn", "ff9bb4d0b6070", "ff9bb4d0b60x"),
        ("--amf", "b9", "b9b-"),
    ] {
        let a = replaced(flag, bad_len);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        expect_usage_error(&a, &format!("{flag}: expected"));
        let a = replaced(flag, not_hex);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        expect_usage_error(&a, &format!("{flag}: not hexadecimal"));
    }
    expect_usage_error(
        &[
            "milenage", "--k", K, "--opc", "00", "--rand", RAND, "--sqn", SQN, "--amf", AMF,
        ],
        "--opc: expected 32 hex digits",
    );
}

#[test]
fn op_opc_missing_or_both() {
    expect_usage_error(
        &[
            "milenage", "--k", K, "--rand", RAND, "--sqn", SQN, "--amf", AMF,
        ],
        "the following required arguments were not provided:\n  <--op <HEX>|--opc <HEX>>",
    );
    expect_usage_error(
        &[
            "milenage", "--k", K, "--op", OP, "--opc", OPC, "--rand", RAND, "--sqn", SQN, "--amf",
            AMF,
        ],
        "the argument '--op <HEX>' cannot be used with '--opc <HEX>'",
    );
}

#[test]
fn missing_unknown_and_repeated_arguments() {
    for flag in ["--k", "--rand", "--sqn", "--amf"] {
        let mut a = base("--op", OP);
        let i = a.iter().position(|x| x == flag).unwrap();
        a.drain(i..i + 2);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        expect_usage_error(
            &a,
            &format!("the following required arguments were not provided:\n  {flag} <HEX>"),
        );
    }
    expect_usage_error(
        &["milenage", "--k"],
        "a value is required for '--k <HEX>' but none was supplied",
    );
    // A value that looks like an option is not taken as the value.
    expect_usage_error(
        &["milenage", "--k", "--op", OP],
        "a value is required for '--k <HEX>' but none was supplied",
    );
    expect_usage_error(&["milenage", "--kk", K], "unexpected argument '--kk' found");
    expect_usage_error(
        &["milenage", "--k", K, "--k", K],
        "the argument '--k <HEX>' cannot be used multiple times",
    );
    expect_usage_error(&["milenage", "stray"], "unexpected argument 'stray' found");
    expect_usage_error(&["frobnicate"], "unrecognized subcommand 'frobnicate'");
    // Without a command: the help on stderr, exit status 2.
    let out = akactl(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("Usage: akactl <COMMAND>"));
    for help in [
        &["help"][..],
        &["--help"],
        &["help", "milenage"],
        &["milenage", "--help"],
    ] {
        let out = akactl(help);
        assert_eq!(out.status.code(), Some(0), "{help:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("milenage"), "{help:?}: {text}");
    }
    let out = akactl(&["milenage", "--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("--k <HEX>") && text.contains("--opc <HEX>"),
        "{text}"
    );
}
