//! The 401s and the 200 OK the core sends for the recorded REGISTERs (Boghe, China Mobile
//! VoLTE) and the test UE's full registration, byte for byte against the bytes recorded in
//! `tests/fixtures/reg/wire/` (written by the core at main `62ea353`). The test bed's
//! random source is fixed, so nonces, tags and SPIs repeat. `AKG_BLESS_WIRE=1` writes the
//! files again from the current core.

mod reg_common;

use reg_common::*;

fn check(name: &str, got: &str) {
    let path = format!(
        "{}/tests/fixtures/reg/wire/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("AKG_BLESS_WIRE").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(got, want, "{name}");
}

#[test]
fn recorded_registers_get_the_recorded_401s() {
    let mut t = Testbed::new();
    let flow = t.ue_flow("192.168.200.100".parse().unwrap(), 63373, 5060);
    let out = t.sip(flow, None, FIXTURE_01);
    assert_eq!(out.len(), 2, "{out:?}");
    check("401_boghe", &sent(&out[1]).1);

    let mut t = Testbed::new();
    let flow = t.ue_flow(cmcc_ip(), 8904, 5060);
    let out = t.sip(flow, None, FIXTURE_02);
    assert_eq!(out.len(), 2, "{out:?}");
    check("401_cmcc", &sent(&out[1]).1);
}

#[test]
fn a_full_registration_sends_the_recorded_401_and_200() {
    let mut t = Testbed::new();
    let ue = Ue {
        rport: true,
        ..Ue::new(&mut t, 0, 7000)
    };
    let out = t.sip(ue.unprotected_flow(), None, &ue.initial_register());
    assert_eq!(out.len(), 2, "{out:?}");
    let set = installed(&out[0]);
    let r401 = sent(&out[1]).1;
    check("401_bench_ue", &r401);
    let nonce = param(&header(&r401, "WWW-Authenticate").unwrap(), "nonce").unwrap();
    let out = ue.answer_challenge(&mut t, &set, &nonce);
    assert_eq!(out.len(), 1, "{out:?}");
    check("200_bench_ue", &sent(&out[0]).1);
}
