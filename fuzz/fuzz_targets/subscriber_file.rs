//! Fuzz target: the HSS subscriber file (`hss::parse_toml`, `hss::parse_csv`) and building
//! the store from its records. Never panics; `parse_toml` (a line reader for the plain form,
//! `toml` for the rest) agrees with `toml` alone (`parse_toml_document`), records and errors;
//! whatever parses renders back to TOML (`render_toml`) and re-parses to the same records; a
//! store that builds answers a challenge. The SQN snapshot's reader agrees with `toml` too.
#![no_main]

use akagate_slowpath::hss::{
    parse_csv, parse_snapshot, parse_snapshot_document, parse_toml, parse_toml_document,
    render_toml, Hss,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    assert!(
        parse_toml(text) == parse_toml_document(text),
        "the line reader and toml disagree"
    );
    assert!(
        parse_snapshot(text) == parse_snapshot_document(text),
        "the snapshot reader and toml disagree"
    );
    for parsed in [parse_toml(text), parse_csv(text)] {
        let Ok(records) = parsed else {
            continue;
        };
        let again = parse_toml(&render_toml(&records)).expect("rendered TOML re-parses");
        assert!(
            again == records,
            "render_toml -> parse_toml changed the records"
        );
        if let Ok(mut hss) = Hss::from_records(&records) {
            assert_eq!(hss.len(), records.len());
            if let Some(r) = records.first() {
                let impi = r.impi.trim().to_string();
                assert!(hss.subscriber(&impi).is_some());
                let _ = hss.challenge(&impi, [7; 16]);
            }
        }
    }
});
