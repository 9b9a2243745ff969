//! Fuzzes the Digest parameter parser (WWW-Authenticate / Authorization values): it must never
//! panic, and whatever it accepts must render and re-parse to the same list. The credentials
//! read borrowing (`DigestCredentials::parse`: the known names found by their folded first
//! word) must be those of the owned list (`DigestCredentials::from_params`) when it parses.
#![no_main]

use akagate_slowpath::aka::{AkaNonce, DigestChallenge, DigestCredentials, DigestParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = DigestParams::parse(text) {
        if let Ok(owned) = DigestCredentials::from_params(&params) {
            assert_eq!(DigestCredentials::parse(text), Ok(owned));
        }
        let rendered = params.render();
        let again = DigestParams::parse(&rendered).expect("rendered list re-parses");
        assert_eq!(again, params);
        if let Ok(c) = DigestCredentials::from_params(&params) {
            let _ = c.verify("REGISTER", b"");
            let _ = AkaNonce::decode(&c.nonce);
        }
        if let Ok(c) = DigestChallenge::from_params(&params) {
            let _ = c.render();
        }
    }
    let _ = AkaNonce::decode(text);
    let _ = akagate_slowpath::aka::decode_auts(text);
});
