//! Issue 14, limits on unauthenticated work: REGISTERs from outside every SA per source
//! address and in total per second, outstanding challenges per source address, in total and
//! per IMPI. Over a limit the newest request is answered `503 Service Unavailable` with
//! `Retry-After` (RFC 3261 21.5.4, 20.33) and counted; unknown IMPIs (decoys) meet the same
//! limits as real ones; registered UEs' requests through their SAs are never limited.

mod reg_common;

use std::time::Duration;

use akagate_proto::ipc::WorkerCommand;
use akagate_slowpath::CoreConfig;
use reg_common::*;

/// The status line and Retry-After of the answer among `out`.
fn answer(out: &[WorkerCommand]) -> (String, Option<String>) {
    let (_, msg) = out
        .iter()
        .find(|c| matches!(c, WorkerCommand::Send { .. }))
        .map(sent)
        .expect("an answer");
    let status = msg.lines().next().unwrap_or_default().to_string();
    (status, header(&msg, "Retry-After"))
}

/// `ue` (subscriber `n`, or an unknown IMPI for `n >= 5`) at address 10.77.0.`a`.
fn ue_at(t: &mut Testbed, n: u8, a: u8) -> Ue {
    let ue = Ue::new(t, n, 7000 + 10 * u16::from(n)).with_ip(&format!("10.77.0.{a}"), "10.0.0.1");
    if n >= 5 {
        return Ue {
            imsi: format!("0010199999999{n:02}"),
            ..ue
        };
    }
    ue
}

/// An unprotected REGISTER of subscriber `n` from 10.77.0.`a` (see [`ue_at`]) as a new
/// transaction `tx`.
fn reg(t: &mut Testbed, n: u8, a: u8, tx: u32) -> (String, Option<String>) {
    let ue = ue_at(t, n, a);
    register(t, &ue, tx)
}

/// An unprotected REGISTER of `ue` as a new transaction `n`.
fn register(t: &mut Testbed, ue: &Ue, n: u32) -> (String, Option<String>) {
    let text = ue
        .initial_register()
        .replace("branch=z9hG4bKreg1", &format!("branch=z9hG4bKlim{n}"));
    answer(&t.sip(ue.unprotected_flow(), None, &text))
}

fn is_401(a: &(String, Option<String>)) -> bool {
    a.0.starts_with("SIP/2.0 401 ")
}

fn is_503(a: &(String, Option<String>)) -> bool {
    a.0 == "SIP/2.0 503 Service Unavailable" && a.1.as_deref() == Some("5")
}

#[test]
fn the_per_address_rate_sheds_the_newest_and_spares_registered_ues() {
    let mut t = Testbed::with_config(|c: &mut CoreConfig| c.register_rate_per_source = 3);
    let ue = ue_at(&mut t, 0, 1);
    // The UE registers (two REGISTERs: the protected one comes through the SA).
    let (set, ok) = ue.register(&mut t);
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let ue = ue.with_server(&set);
    // Two more unprotected ones from its address pass, the next is shed.
    assert!(is_401(&reg(&mut t, 1, 1, 1)));
    assert!(is_401(&reg(&mut t, 5, 1, 2)));
    let shed = reg(&mut t, 2, 1, 3);
    assert!(is_503(&shed), "{shed:?}");
    assert_eq!(t.core.stats().register_rate_limited_source, 1);
    // Another address is not affected.
    assert!(is_401(&reg(&mut t, 2, 2, 4)));
    // The registered UE's requests through its SAs are never limited.
    for n in 0..5 {
        let text = ue
            .refresh(&set, &ue.security_server)
            .replace("branch=z9hG4bKreg3", &format!("branch=z9hG4bKref{n}"));
        let out = t.sip(ue.protected_flow(&set), Some(set.spi_ps), &text);
        assert!(is_401(&answer(&out)), "{out:?}");
    }
    // A new second, a new share.
    t.now += Duration::from_secs(1);
    assert!(is_401(&reg(&mut t, 2, 1, 5)));
}

#[test]
fn the_total_rate_sheds_every_address_alike() {
    let mut t = Testbed::with_config(|c: &mut CoreConfig| c.register_rate_total = 2);
    assert!(is_401(&reg(&mut t, 0, 1, 1)));
    assert!(is_401(&reg(&mut t, 1, 2, 2)));
    assert!(is_503(&reg(&mut t, 2, 3, 3)));
    assert!(is_503(&reg(&mut t, 6, 4, 4)));
    assert_eq!(t.core.stats().register_rate_limited_all, 2);
}

#[test]
fn outstanding_challenges_per_address_count_real_and_unknown_impis_alike() {
    // An unknown IMPI's challenge counts as a real one's: a stranger probing with two
    // IMPIs from one address meets the same 503 whichever exist.
    for (first, second, third) in [(0, 1, 2), (5, 6, 7), (5, 1, 7), (0, 6, 2)] {
        let mut t = Testbed::with_config(|c: &mut CoreConfig| c.max_pending_per_source = 2);
        assert!(is_401(&reg(&mut t, first, 1, 1)));
        assert!(is_401(&reg(&mut t, second, 1, 2)));
        // The same IMPI again replaces its own challenge: no new one is needed.
        assert!(is_401(&reg(&mut t, second, 1, 3)));
        let shed = reg(&mut t, third, 1, 4);
        assert!(is_503(&shed), "{first} {second} {third}: {shed:?}");
        assert_eq!(t.core.stats().challenges_shed_source, 1);
        // Another address still gets its challenge.
        assert!(is_401(&reg(&mut t, third, 2, 5)));
        // Challenges lapse after the challenge timeout: room again.
        t.now += CoreConfig::default().challenge_timeout;
        let _ = t.core.handle_timeout(t.now);
        assert!(is_401(&reg(&mut t, third, 1, 6)));
    }
}

#[test]
fn outstanding_challenges_in_total_are_bounded() {
    let mut t = Testbed::with_config(|c: &mut CoreConfig| c.max_pending_total = 2);
    let ue = ue_at(&mut t, 2, 9);
    let (set, _) = ue.register(&mut t);
    let ue = ue.with_server(&set);
    assert!(is_401(&reg(&mut t, 0, 1, 1)));
    assert!(is_401(&reg(&mut t, 5, 2, 2)));
    assert!(is_503(&reg(&mut t, 1, 3, 3)));
    assert!(is_503(&reg(&mut t, 6, 4, 4)));
    assert_eq!(t.core.stats().challenges_shed_all, 2);
    // A registered UE re-registering through its SAs is never shed.
    let out = t.sip(
        ue.protected_flow(&set),
        Some(set.spi_ps),
        &ue.refresh(&set, &ue.security_server),
    );
    assert!(is_401(&answer(&out)), "{out:?}");
}

#[test]
fn beyond_the_per_impi_bound_the_oldest_challenge_goes() {
    let mut t = Testbed::with_config(|c: &mut CoreConfig| c.max_pending_per_impi = 2);
    let victim = ue_at(&mut t, 0, 1);
    let (set, nonce) = victim.initial(&mut t);
    for a in [2, 3] {
        assert!(is_401(&reg(&mut t, 0, a, u32::from(a))));
    }
    assert_eq!(t.core.stats().challenges_evicted, 1);
    // The victim's challenge was the oldest: its answer through the removed set is refused.
    let out = victim.answer_challenge(&mut t, &set, &nonce);
    assert!(answer(&out).0.starts_with("SIP/2.0 403 "), "{out:?}");
}

#[test]
fn an_unknown_impi_gets_one_nonce_per_window_as_a_real_one_does() {
    use rand::SeedableRng;
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(14));
    let mut t = Testbed::with_rng(|_| {}, rng);
    let nonces = |t: &mut Testbed, n: u8| -> Vec<String> {
        (1..=3)
            .map(|a| {
                let ue = ue_at(t, n, a);
                let text = ue.initial_register();
                let out = t.sip(ue.unprotected_flow(), None, &text);
                let i = sends_starting(&out, "SIP/2.0 401 ")[0];
                param(
                    &header(&sent(&out[i]).1, "WWW-Authenticate").unwrap(),
                    "nonce",
                )
                .unwrap()
            })
            .collect()
    };
    for n in [0, 5] {
        let v = nonces(&mut t, n);
        assert!(v.iter().all(|x| *x == v[0]), "IMPI {n}: {v:?}");
        // Past the window, a new one.
        t.now += CoreConfig::default().challenge_timeout;
        let w = nonces(&mut t, n);
        assert_ne!(w[0], v[0], "IMPI {n}");
    }
}
