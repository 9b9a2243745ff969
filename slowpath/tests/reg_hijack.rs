//! Issue 14, challenge hijack: anyone can send an unauthenticated REGISTER naming any IMPI.
//! It must not cancel the challenge the UE itself is answering, nor touch a registered UE's
//! binding (its address, its SAs), nor let the nonce it learns cancel the UE's challenge;
//! and however often it is repeated from one address, that address holds one challenge per
//! IMPI and spends no further SQN.

mod reg_common;

use akagate_proto::ipc::WorkerCommand;
use reg_common::*;

/// The victim's IMPI, sent from another address with the attacker's own Security-Client.
fn attacker(victim: &Ue, n: u8) -> Ue {
    victim
        .with_ip(&format!("10.66.0.{n}"), "10.0.0.1")
        .with_ports(7700 + 10 * u16::from(n))
}

/// `ue`'s unprotected REGISTER as a new transaction `n`.
fn register_n(ue: &Ue, n: u32) -> String {
    ue.initial_register()
        .replace("branch=z9hG4bKreg1", &format!("branch=z9hG4bKreg1n{n}"))
}

/// The 401's nonce among `out`.
fn nonce_in(out: &[WorkerCommand]) -> String {
    let i = sends_starting(out, "SIP/2.0 401 ")[0];
    param(
        &header(&sent(&out[i]).1, "WWW-Authenticate").unwrap(),
        "nonce",
    )
    .unwrap()
}

/// Pending sets of every registration, as the operator sees them.
fn pending_sets(t: &Testbed) -> usize {
    t.core
        .registrations_view(t.now)
        .iter()
        .flat_map(|r| &r.sets)
        .filter(|s| s.state.name() == "pending")
        .count()
}

#[test]
fn a_stranger_registering_the_victims_impi_between_its_401_and_its_answer_changes_nothing() {
    let mut t = Testbed::new();
    let victim = Ue::new(&mut t, 0, 7000);
    let (set, nonce) = victim.initial(&mut t);
    let victim = victim.with_server(&set);

    // The attacker names the victim's IMPI from elsewhere: it is challenged, but nothing of
    // the victim's is removed.
    let bad = attacker(&victim, 1);
    let out = t.sip(bad.unprotected_flow(), None, &register_n(&bad, 1));
    assert!(sends_starting(&out, "SIP/2.0 401 ").len() == 1, "{out:?}");
    assert!(
        !out.iter().any(
            |c| matches!(c, WorkerCommand::RemoveSaSet { spi_pc, .. } if *spi_pc == set.spi_pc)
        ),
        "the victim's pending set stays: {out:?}"
    );
    // It learns the victim's nonce (the vector is reused) and "answers" it outside the SAs,
    // which from the victim's own address would be a MAC failure report ending the challenge.
    let leaked = nonce_in(&out);
    assert_eq!(leaked, nonce, "one vector for the IMPI: no second SQN");
    let out = t.sip(
        bad.unprotected_flow(),
        None,
        &bad.auts_register(&leaked, ""),
    );
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 403 "), "{out:?}");
    // Only the attacker's own challenge ends.
    assert!(
        out.iter()
            .all(|c| !matches!(c, WorkerCommand::RemoveSaSet { ue, .. } if *ue != bad.ip)),
        "{out:?}"
    );
    // A second stranger is challenged too.
    let other = attacker(&victim, 2);
    let out = t.sip(other.unprotected_flow(), None, &register_n(&other, 2));
    assert_eq!(sends_starting(&out, "SIP/2.0 401 ").len(), 1, "{out:?}");
    assert_eq!(pending_sets(&t), 2);

    // The victim's protected REGISTER still succeeds.
    let out = victim.answer_challenge(&mut t, &set, &nonce);
    let (_, ok) = sent(&out[0]);
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    // The second stranger's challenge ended with the registration: its set is removed.
    assert!(
        out.iter()
            .any(|c| matches!(c, WorkerCommand::RemoveSaSet { ue, .. } if *ue == other.ip)),
        "{out:?}"
    );
    assert_eq!(pending_sets(&t), 0);
}

#[test]
fn a_registered_victims_binding_and_address_are_never_touched_by_a_stranger() {
    let mut t = Testbed::new();
    let victim = Ue::new(&mut t, 0, 7000);
    let (set, _) = victim.register(&mut t);
    let victim = victim.with_server(&set);
    for n in 1..=3 {
        let bad = attacker(&victim, n);
        let out = t.sip(
            bad.unprotected_flow(),
            None,
            &register_n(&bad, u32::from(n)),
        );
        assert_eq!(sends_starting(&out, "SIP/2.0 401 ").len(), 1, "{out:?}");
        assert!(
            !out.iter()
                .any(|c| matches!(c, WorkerCommand::RemoveSaSet { ue, .. } if *ue == victim.ip)),
            "{out:?}"
        );
    }
    let view = t.core.registrations_view(t.now);
    let reg = view.iter().find(|r| r.impi == victim.impi()).unwrap();
    assert_eq!(
        reg.ue,
        Some(victim.ip),
        "the address shown stays the victim's"
    );
    assert!(reg.contact.is_some_and(|c| c.contains("10.0.1.1")));
    drop(view);
    // Its requests through its SAs still work (an OPTIONS to the P-CSCF is answered).
    let out = t.sip(
        victim.protected_flow(&set),
        Some(set.spi_ps),
        &victim.options(&set),
    );
    assert!(!out.is_empty());
    assert!(!sent(&out[0]).1.starts_with("SIP/2.0 403"), "{out:?}");
}

#[test]
fn a_flood_from_one_address_holds_one_challenge_and_spends_one_sqn() {
    let mut t = Testbed::new();
    let victim = Ue::new(&mut t, 0, 7000);
    let bad = attacker(&victim, 1);
    let mut nonces = std::collections::BTreeSet::new();
    for n in 0..50 {
        // One a second: the per-address rate limit is another test's matter.
        t.now += std::time::Duration::from_secs(1);
        let out = t.sip(bad.unprotected_flow(), None, &register_n(&bad, n));
        nonces.insert(nonce_in(&out));
    }
    assert_eq!(pending_sets(&t), 1, "one challenge per IMPI and address");
    assert_eq!(nonces.len(), 1, "one vector: one SQN spent");
    // 49 replaced sets: their SPIs are back.
    assert_eq!(t.released().len(), 2 * 49);

    // The victim registers meanwhile (the USIM accepts the vector the attacker got, which
    // it never saw); the attacker's challenge ends with it.
    let (set, nonce) = victim.initial(&mut t);
    assert!(nonces.contains(&nonce));
    let out = victim.answer_challenge(&mut t, &set, &nonce);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"), "{out:?}");
    assert!(matches!(out[1], WorkerCommand::RemoveSaSet { ue, .. } if ue == bad.ip));
    assert_eq!(pending_sets(&t), 0);
}
