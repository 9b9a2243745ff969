//! The core's durability contract (TS 33.102 6.3.2: a restart never reuses an SQN that left in
//! a challenge): every challenge queues an SQN record (`poll_persist`, in order), its 401 stays
//! in the core until `on_durable` covers the record, a failed write drops the 401 but lets the
//! rest go, and a restart from the written records never reuses a durable SQN, as the USIM's
//! freshness check (TS 33.102 C.2) confirms.

mod reg_common;

use akagate_proto::ipc::WorkerCommand;
use akagate_slowpath::aka::{AkaFailure, Usim};
use akagate_slowpath::hss::{apply_journal, Hss, PersistRecord, SqnState, SubscriberRecord};
use akagate_slowpath::{Core, CoreConfig};
use rand::SeedableRng;
use reg_common::*;

/// Subscribers 001010000000001..=3 (TS 35.208 4.3.1 Test Set 1 keys), continuing from
/// `state`, with SQN blocks of one SEQ: every challenge passes its bound and queues a
/// record (the contract for such a challenge; `a_challenge_under_a_reserved_bound_leaves_at_once`
/// covers the blocks).
fn persisted_hss(state: SqnState) -> Hss {
    blocked_hss(state, 1)
}

/// [`persisted_hss`] with SQN blocks of `block` SEQ.
fn blocked_hss(state: SqnState, block: u64) -> Hss {
    let records: Vec<SubscriberRecord> = (1..=3)
        .map(|n| SubscriberRecord {
            impi: format!("00101000000000{n}@{REALM}"),
            impu: vec![format!("sip:00101000000000{n}@{REALM}")],
            k: SET1_K.into(),
            opc: Some(SET1_OPC.into()),
            op: None,
            amf: "8000".into(),
            sqn: "000000000000".into(),
        })
        .collect();
    Hss::from_records(&records)
        .unwrap()
        .with_sqn_state(state)
        .unwrap()
        .with_sqn_block(block)
}

/// A test bed whose core runs over `hss`.
fn testbed(hss: Hss) -> Testbed {
    let mut t = Testbed::new();
    t.core = Core::new(
        CoreConfig::default(),
        hss,
        t.spis.clone(),
        Box::new(rand::rngs::StdRng::seed_from_u64(7)),
    );
    t
}

/// A persisting core with three UEs (port_uc from `base`) and their USIMs.
fn three_ues(base: u16) -> (Testbed, Vec<Ue>, Vec<Usim>) {
    let mut t = testbed(persisted_hss(SqnState::new()));
    let ues = (0..3u8)
        .map(|n| Ue::new(&mut t, n, base + 10 * u16::from(n)))
        .collect();
    (t, ues, (0..3).map(|_| set1_usim()).collect())
}

/// `ue`'s initial REGISTER as transaction `attempt`.
fn register_text(ue: &Ue, attempt: u32) -> String {
    ue.initial_register()
        .replace(
            "branch=z9hG4bKreg1",
            &format!("branch=z9hG4bKreg1x{attempt}"),
        )
        .replace("CSeq: 1 REGISTER", &format!("CSeq: {attempt} REGISTER"))
}

fn is_401(c: &WorkerCommand) -> bool {
    matches!(c, WorkerCommand::Send { bytes, .. } if bytes.starts_with(b"SIP/2.0 401 "))
}

/// The nonce of a 401.
fn nonce_of(c: &WorkerCommand) -> String {
    let (_, msg) = sent(c);
    param(&header(&msg, "WWW-Authenticate").unwrap(), "nonce").unwrap()
}

/// Every record queued so far, oldest first.
fn drain(t: &mut Testbed) -> Vec<PersistRecord> {
    std::iter::from_fn(|| t.core.poll_persist()).collect()
}

/// Moves past the reuse window of every vector handed out so far (the challenge timeout):
/// the next challenge spends a fresh SQN.
fn later(t: &mut Testbed) {
    t.now += CoreConfig::default().challenge_timeout;
}

/// Sends `ue`'s REGISTER `attempt` after the reuse window of earlier vectors; returns what
/// left at once (no 401) and the record of its fresh SQN.
fn challenge_held(t: &mut Testbed, ue: &Ue, attempt: u32) -> (Vec<WorkerCommand>, PersistRecord) {
    later(t);
    let out = t.sip(ue.unprotected_flow(), None, &register_text(ue, attempt));
    assert!(
        !out.iter().any(is_401),
        "a 401 left before durability: {out:?}"
    );
    let mut records = drain(t);
    assert_eq!(records.len(), 1, "one SQN per challenge");
    (out, records.remove(0))
}

/// Challenges `ue`, "writes" its record to `disk` and returns the released 401's nonce.
fn challenge_durably(t: &mut Testbed, ue: &Ue, attempt: u32, disk: &mut String) -> String {
    let (_, record) = challenge_held(t, ue, attempt);
    disk.push_str(&record.journal_line());
    let released = t.core.on_durable(record.ticket());
    // The 401, then the removal of a pending set it replaced, if any.
    match released.as_slice() {
        [c, rest @ ..]
            if is_401(c)
                && rest
                    .iter()
                    .all(|r| matches!(r, WorkerCommand::RemoveSaSet { .. })) =>
        {
            nonce_of(c)
        }
        other => panic!("expected the 401, got {other:?}"),
    }
}

#[test]
fn a_challenge_leaves_only_when_its_record_is_durable() {
    let (mut t, ues, mut usims) = three_ues(6100);
    let mut records = Vec::new();
    for ue in &ues {
        let out = t.sip(ue.unprotected_flow(), None, &register_text(ue, 1));
        // The SA set is installed at once (it carries no SQN); the 401 waits.
        assert!(
            matches!(out.as_slice(), [WorkerCommand::InstallSaSet(_)]),
            "{out:?}"
        );
        records.extend(drain(&mut t));
    }
    assert_eq!(t.core.held(), 3);
    // Records come out in the order the SQNs were handed out, one per challenge.
    let impis: Vec<&str> = records.iter().map(PersistRecord::impi).collect();
    let expected: Vec<String> = ues.iter().map(Ue::impi).collect();
    assert_eq!(impis, expected);
    assert!(records.windows(2).all(|w| w[0].ticket() < w[1].ticket()));
    assert_eq!(t.core.poll_persist(), None);

    // Durable up to the second record: the first two 401s leave, in order.
    let released = t.core.on_durable(records[1].ticket());
    assert_eq!(released.len(), 2, "{released:?}");
    assert!(released.iter().all(is_401));
    for (i, c) in released.iter().enumerate() {
        let (flow, _) = sent(c);
        assert_eq!(flow, ues[i].unprotected_flow());
        // The SQN the USIM recovers from AUTN is under the bound recorded for its IMPI,
        // of the same SEQ (a block of one).
        let sqn = ue_authenticate(&mut usims[i], &nonce_of(c))
            .unwrap()
            .sqn
            .value();
        assert!(sqn <= records[i].sqn());
        assert_eq!(sqn >> 5, records[i].sqn() >> 5);
    }
    assert_eq!(t.core.held(), 1);
    assert!(t.core.on_durable(records[1].ticket()).is_empty());
    let released = t.core.on_durable(records[2].ticket());
    assert!(matches!(released.as_slice(), [c] if is_401(c)));
    assert_eq!(t.core.held(), 0);
}

#[test]
fn a_retransmission_waits_with_its_challenge() {
    let mut t = testbed(persisted_hss(SqnState::new()));
    let ue = Ue::new(&mut t, 0, 6300).with_proto(akagate_proto::ipc::Transport::Udp);
    let (_, record) = challenge_held(&mut t, &ue, 1);
    // The UE retransmits before the record is durable: its transaction answers, but the
    // answer is the 401 and waits too.
    let again = t.sip(ue.unprotected_flow(), None, &register_text(&ue, 1));
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(t.core.stats().retransmissions_absorbed, 1);
    assert_eq!(t.core.poll_persist(), None, "no second SQN");
    let released = t.core.on_durable(record.ticket());
    assert_eq!(released.len(), 2);
    assert!(released.iter().all(is_401));
    // Durable now: a later retransmission is answered at once.
    let again = t.sip(ue.unprotected_flow(), None, &register_text(&ue, 1));
    assert!(matches!(again.as_slice(), [c] if is_401(c)), "{again:?}");
}

/// Issue 14: a repeated unauthenticated REGISTER of an IMPI whose challenge is unanswered
/// reuses that vector (RAND and AUTN are public, only the USIM can answer): no SQN is spent.
/// Its 401 still waits for the record of the vector's SQN while that is not durable, and
/// leaves at once when it is.
#[test]
fn a_repeated_register_reuses_the_unanswered_vector_and_its_durability() {
    let mut t = testbed(persisted_hss(SqnState::new()));
    let ue = Ue::new(&mut t, 0, 6500);
    let (_, record) = challenge_held(&mut t, &ue, 1);
    // From another address (a stranger naming the IMPI), before the record is durable.
    let stranger = ue.with_ip("10.66.0.1", "10.0.0.1");
    let out = t.sip(
        stranger.unprotected_flow(),
        None,
        &register_text(&stranger, 2),
    );
    assert!(
        matches!(out.as_slice(), [WorkerCommand::InstallSaSet(_)]),
        "the 401 waits for the first record: {out:?}"
    );
    assert_eq!(t.core.poll_persist(), None, "no second SQN");
    let released = t.core.on_durable(record.ticket());
    assert_eq!(released.len(), 2, "{released:?}");
    assert!(released.iter().all(is_401));
    assert_eq!(nonce_of(&released[0]), nonce_of(&released[1]), "one vector");
    // Durable now: a third REGISTER gets its 401 at once, with the same vector.
    let out = t.sip(ue.unprotected_flow(), None, &register_text(&ue, 3));
    assert!(matches!(out.as_slice(), [WorkerCommand::InstallSaSet(_), c, ..] if is_401(c)));
    assert_eq!(nonce_of(&out[1]), nonce_of(&released[0]));
    assert_eq!(t.core.poll_persist(), None);
    assert_eq!(t.core.stats().vectors_reused, 2);
    // Past the window, a fresh vector (and SQN).
    let (_, next) = challenge_held(&mut t, &ue, 4);
    assert!(next.sqn() > record.sqn());
}

#[test]
fn a_failed_write_drops_the_401_and_releases_the_rest() {
    let mut t = testbed(persisted_hss(SqnState::new()));
    let ue = Ue::new(&mut t, 0, 6400);
    let mut disk = String::new();
    challenge_durably(&mut t, &ue, 1, &mut disk);
    let first = t.spis.released.lock().unwrap().len();
    // A second challenge replaces the pending set: its removal follows the 401.
    let (out, record) = challenge_held(&mut t, &ue, 2);
    assert!(matches!(out.as_slice(), [WorkerCommand::InstallSaSet(_)]));
    let withheld = t.core.on_persist_failed(record.ticket());
    assert_eq!(withheld.challenges, 1);
    assert!(
        matches!(
            withheld.actions.as_slice(),
            [WorkerCommand::RemoveSaSet { .. }]
        ),
        "{:?}",
        withheld.actions
    );
    assert_eq!(t.core.held(), 0);
    assert_eq!(t.released().len(), first + 2, "the first set's SPIs");
    // Until something is durable again, challenges fail.
    later(&mut t);
    let out = t.sip(ue.unprotected_flow(), None, &register_text(&ue, 3));
    let (_, msg) = sent(&out[0]);
    assert!(msg.starts_with("SIP/2.0 500 "), "{msg}");
    assert_eq!(t.core.poll_persist(), None);
    // The state was rewritten (e.g. a checkpoint): challenges are made again.
    assert!(t.core.on_durable(record.ticket()).is_empty());
    challenge_durably(&mut t, &ue, 4, &mut disk);
}

#[test]
fn restart_from_the_written_records_never_reuses_a_durable_sqn() {
    let mut disk = String::new();
    let (mut t, ues, mut usims) = three_ues(6200);

    // Durable and sent: UE 0 twice, UE 1 once; each USIM accepts its challenges.
    let mut sent = Vec::new();
    for (i, attempt) in [(0, 1), (0, 2), (1, 1)] {
        let nonce = challenge_durably(&mut t, &ues[i], attempt, &mut disk);
        ue_authenticate(&mut usims[i], &nonce).unwrap();
        sent.push((i, nonce));
    }
    // Not written, so never sent: UE 0 and UE 2 challenged again, then the crash.
    challenge_held(&mut t, &ues[0], 3);
    challenge_held(&mut t, &ues[2], 1);
    drop(t);

    // The restart replays what was written.
    let mut state = SqnState::new();
    apply_journal(&mut state, &disk);
    let mut t = testbed(persisted_hss(state));
    let mut disk = String::new();
    // Every UE that saw a challenge accepts the next one as fresh: no durable SQN reused.
    for (i, attempt) in [(0, 4), (1, 2), (2, 2)] {
        let nonce = challenge_durably(&mut t, &ues[i], attempt, &mut disk);
        if let Err(e) = ue_authenticate(&mut usims[i], &nonce) {
            panic!("UE {i} rejected the challenge after the restart: {e}");
        }
    }
    // The check has teeth: a replayed challenge is refused by the USIM.
    let (i, nonce) = &sent[0];
    assert!(matches!(
        ue_authenticate(&mut usims[*i], nonce),
        Err(AkaFailure::SyncFailure { .. })
    ));
}

/// SQN blocks: under a bound reserved at start (durable, the daemon's snapshot) a challenge
/// queues no record and its 401 leaves with the SA install; the USIM accepts it. The
/// challenge that passes the bound queues one record (the new bound) and waits for it, as
/// does the next one under that bound; both leave at its `on_durable`.
#[test]
fn a_challenge_under_a_reserved_bound_leaves_at_once() {
    let mut hss = blocked_hss(SqnState::new(), 2);
    hss.reserve_sqn_blocks();
    let mut t = testbed(hss);
    let ue = Ue::new(&mut t, 0, 6300);
    let mut usim = set1_usim();
    for attempt in 1..=2 {
        later(&mut t);
        let out = t.sip(ue.unprotected_flow(), None, &register_text(&ue, attempt));
        let c = out
            .iter()
            .find(|c| is_401(c))
            .expect("the 401 leaves at once");
        assert!(ue_authenticate(&mut usim, &nonce_of(c)).is_ok());
        assert_eq!(t.core.poll_persist(), None, "no record under the bound");
    }
    assert_eq!(t.core.held(), 0);
    let (_, record) = challenge_held(&mut t, &ue, 3);
    assert_eq!(record.sqn() >> 5, 4, "SEQ 3 and 4 reserved");
    later(&mut t);
    let out = t.sip(ue.unprotected_flow(), None, &register_text(&ue, 4));
    assert!(
        !out.iter().any(is_401),
        "under a bound not yet durable: {out:?}"
    );
    assert_eq!(t.core.poll_persist(), None);
    let released = t.core.on_durable(record.ticket());
    assert_eq!(released.iter().filter(|c| is_401(c)).count(), 2);
    for c in released.iter().filter(|c| is_401(c)) {
        assert!(ue_authenticate(&mut usim, &nonce_of(c)).is_ok());
    }
}
