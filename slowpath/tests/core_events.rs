//! No-panic property of the slowpath core over event sequences on stable: the `core_events`
//! fuzz harness (`core_events_common`) on its seeds and on seeded mutations of them.

mod core_events_common;
mod reg_common;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

#[test]
fn seeds_reach_calls_and_registrations() {
    let mut registered = 0;
    for s in core_events_common::seeds() {
        let o = core_events_common::run(&s);
        assert!(o.events > 0, "{o:?}");
        registered += o.registered;
    }
    // The re-registration and initial-registration seeds complete registrations.
    assert!(registered >= 4, "{registered}");
}

/// The fuzz target starts from registrations restored into a fresh core; a core that
/// registered the UEs itself does the same with every seed and its mutations. Over UDP the
/// registering core still holds the set-up's REGISTER transactions for Timer J (64*T1,
/// RFC 3261 17.2.2), which absorb a resent initial REGISTER as a retransmission; the
/// sequences there start 40 s later, when those are gone.
#[test]
fn restored_registrations_stand_for_registering() {
    let mut x: u64 = 0x7265_7374_6f72_6531;
    for s in core_events_common::seeds() {
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut d = s.clone();
            let at = 1 + (x as usize) % (d.len() - 1);
            d[at] = (x >> 32) as u8;
            for mut d in [s.clone(), d] {
                if d[0] & 1 == 1 {
                    d.splice(1..1, [7, 1, 40]);
                }
                assert_eq!(
                    core_events_common::run(&d),
                    core_events_common::run_registering(&d),
                    "{d:?}"
                );
            }
        }
    }
}

#[test]
fn mutated_sequences_never_panic() {
    let seeds = core_events_common::seeds();
    // Deterministic: a seeded generator, so a failure reproduces.
    let mut rng = StdRng::seed_from_u64(0x636f_7265_5f65_7631);
    let mut next = || rng.gen::<u64>();
    for i in 0..400 {
        let mut d = seeds[i % seeds.len()].clone();
        for _ in 0..1 + next() % 6 {
            let r = next();
            match r % 3 {
                0 if !d.is_empty() => {
                    let at = (r >> 8) as usize % d.len();
                    d[at] = (r >> 32) as u8;
                }
                1 => d.push((r >> 16) as u8),
                _ => {
                    let at = (r >> 8) as usize % (d.len() + 1);
                    d.insert(at, (r >> 40) as u8);
                }
            }
        }
        core_events_common::run(&d);
    }
}

#[test]
fn a_nul_byte_in_a_header_value_is_answered_400() {
    use akagate_proto::ipc::WorkerCommand;
    let mut t = reg_common::Testbed::new();
    let ue = reg_common::Ue::new(&mut t, 0, 7000);
    let text = ue
        .initial_register()
        .replace("Max-Forwards: 70", "Max-Forwards: 70\r\nSubject: a\0b");
    let out = t.sip(ue.unprotected_flow(), None, &text);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(!matches!(out[0], WorkerCommand::InstallSaSet(_)));
    let (_, answer) = reg_common::sent(&out[0]);
    assert!(
        answer.starts_with("SIP/2.0 400 Bad Request: NUL byte in a header\r\n"),
        "{answer}"
    );
}

/// Inputs the `core_events` fuzz target found (base64 of the artifact), kept as regressions.
const FOUND: &[&str] = &[
    // A REGISTER whose IMPI the input altered got a decoy challenge (issue 14: unknown IMPIs
    // are challenged like real ones); the harness's USIM refused its AUTN and the harness
    // panicked. It now leaves such challenges unanswered.
    "BAAAAGNjAJypqakBqf+pqampqampqampqampqampqampqampqampqampqUMM",
];

#[test]
fn inputs_the_fuzzer_found_run_clean() {
    for b64 in FOUND {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        core_events_common::run(&data);
    }
}
