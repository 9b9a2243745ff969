//! The SIP fixture messages for unit tests that compare two parses over them: the real
//! VoLTE captures and RFC 4475's torture messages of `tests/fixtures/sip`, in name order.

/// Every `.sip` file of `tests/fixtures/sip/{real,rfc4475}`, its raw bytes, sorted by path.
pub(crate) fn fixture_messages() -> Vec<Vec<u8>> {
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sip");
    let mut out = Vec::new();
    for dir in ["real", "rfc4475"] {
        let mut paths: Vec<_> = std::fs::read_dir(format!("{base}/{dir}"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sip"))
            .collect();
        paths.sort();
        out.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    out
}
