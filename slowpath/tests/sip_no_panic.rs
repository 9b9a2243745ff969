//! No-panic property for network input: random mutations of every SIP fixture go through the
//! parser, every typed accessor, validation, the transaction key functions and the stream
//! framer. A deterministic seed keeps failures reproducible; `fuzz/` runs the same targets
//! under libFuzzer.

use akagate_slowpath::sip::transaction::{ClientKey, ServerKey};
use akagate_slowpath::sip::{next_frame, FrameLimits, HeaderKind, Message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// The unit tests' fixture loader, shared rather than written again.
#[path = "../src/sip/test_fixtures.rs"]
mod test_fixtures;

/// The fixture messages (real captures and RFC 4475's), at least 40 of them.
fn fixtures() -> Vec<Vec<u8>> {
    let out = test_fixtures::fixture_messages();
    assert!(out.len() > 40);
    out
}

/// Bytes that are interesting to SIP lexers.
const SPECIAL: &[u8] = b"\r\n \t:;,=<>\"\\@%[]?/0129";

fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = rng.gen();
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = SPECIAL[rng.gen_range(0..SPECIAL.len())];
            }
            2 => {
                let i = rng.gen_range(0..=len);
                v.insert(i, SPECIAL[rng.gen_range(0..SPECIAL.len())]);
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 16));
                v.drain(i..j);
            }
            4 => v.truncate(rng.gen_range(0..=len)),
            5 if !other.is_empty() => {
                // splice a slice of another message in
                let a = rng.gen_range(0..other.len());
                let b = rng.gen_range(a..=other.len().min(a + 64));
                let i = rng.gen_range(0..=len);
                v.splice(i..i, other[a..b].iter().copied());
            }
            _ if len > 0 => {
                let i = rng.gen_range(0..len);
                let digits = b"99999999999999999999";
                v.splice(i..i, digits.iter().copied());
            }
            _ => {}
        }
    }
    v
}

/// Touches every accessor so a panic anywhere would surface.
fn exercise(bytes: &[u8]) {
    let _ = next_frame(bytes, &FrameLimits::default());
    let small = FrameLimits {
        max_head: 64,
        max_body: 8,
    };
    let _ = next_frame(bytes, &small);
    let Ok(m) = Message::parse(bytes) else {
        return;
    };
    let _ = m.validate();
    let _ = m.parsed_request_uri();
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport(), v.port_or_default());
    }
    for a in [m.from_header(), m.to_header()].into_iter().flatten() {
        let _ = (a.tag(), a.display_name_unquoted(), a.uri.user_decoded());
    }
    for c in m.contacts().flatten() {
        let _ = (
            c.expires(),
            c.q(),
            c.sip_instance(),
            c.feature_tags().count(),
        );
    }
    for kind in [HeaderKind::Route, HeaderKind::RecordRoute, HeaderKind::Path] {
        for a in m.name_addrs(kind).flatten() {
            let _ = a.uri.params.iter().count();
        }
    }
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.expires());
    let _ = m.require().count() + m.proxy_require().count() + m.supported().count();
    let _ = (ServerKey::for_request(&m), ClientKey::for_message(&m));
    if m.is_request() {
        let _ = akagate_slowpath::sip::response_to(&m, 400, "x", Some("t")).map(|b| b.build());
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let inputs = fixtures();
    let mut rng = StdRng::seed_from_u64(0x5149_5020);
    for round in 0..40_000 {
        let a = &inputs[round % inputs.len()];
        let b = &inputs[rng.gen_range(0..inputs.len())];
        let m = mutate(&mut rng, a, b);
        exercise(&m);
    }
}

#[test]
fn every_prefix_of_every_fixture_is_handled() {
    for f in fixtures() {
        for cut in 0..=f.len().min(2048) {
            exercise(&f[..cut]);
        }
    }
}
