//! Fuzz target: sec-agree header parsing (Security-Client/-Server/-Verify, RFC 3329 2.2):
//! never panics; what parses renders and re-parses to the same list, every mechanism is
//! equivalent to itself and to its re-parse (the Security-Verify comparison), and an offer
//! `choose` picks satisfies the profile and TS 33.203 7.1 (SPIs > 255, ports != 0), with a
//! Security-Server that survives its own render/parse as an equivalent mechanism.
#![no_main]

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::secagree::{
    choose, parse_security_header, render_security_header, ImsAkaProfile,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(mechs) = parse_security_header(text) else {
        return;
    };
    let rendered = render_security_header(&mechs);
    let again = parse_security_header(&rendered).expect("rendered header re-parses");
    assert_eq!(again, mechs, "render -> parse changed {rendered:?}");
    for (a, b) in mechs.iter().zip(&again) {
        assert!(a.equivalent(a) && a.equivalent(b));
        let _ = (a.param_u32("spi-c"), a.param_u16("port-s"), a.param("q"));
    }
    let everything = ImsAkaProfile {
        encr_alg_list: vec![
            EncrAlg::AesGcm,
            EncrAlg::AesCbc,
            EncrAlg::DesEde3Cbc,
            EncrAlg::Null,
        ],
        auth_alg_list: vec![AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96, AuthAlg::AesGmac],
        ..ImsAkaProfile::default()
    };
    for profile in [ImsAkaProfile::default(), everything] {
        let Some(c) = choose(&profile, &mechs) else {
            continue;
        };
        assert!(profile.encr_alg_list.contains(&c.encr));
        assert!(profile.auth_alg_list.contains(&c.auth));
        assert!(c.spi_uc > 255 && c.spi_us > 255 && c.port_uc != 0 && c.port_us != 0);
        let server = c.security_server(0x1000, 0x1001, 5100, 6100);
        let verify = parse_security_header(&render_security_header(&[server.clone()]))
            .expect("our Security-Server parses");
        assert_eq!(verify.len(), 1);
        assert!(verify[0].equivalent(&server));
    }
});
