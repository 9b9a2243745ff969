//! Fuzz target: the HSS subscriber file (`hss::parse_toml`, `hss::parse_csv`) and building
//! the store from its records. Never panics; whatever parses renders back to TOML
//! (`render_toml`) and re-parses to the same records; a store that builds answers a challenge.
#![no_main]

use akagate_slowpath::hss::{parse_csv, parse_toml, render_toml, Hss};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
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
