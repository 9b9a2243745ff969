//! Group commit of the HSS's SQN journal through the core: in deferred mode challenges only
//! append, one `Core::commit` makes all of them durable, and a crash before a commit never
//! lets the restarted HSS reuse an SQN that was committed (TS 33.102 6.3.2, Annex C), as the
//! USIM's freshness check (TS 33.102 C.2) confirms.

mod reg_common;

use std::path::{Path, PathBuf};

use akagate_proto::ipc::WorkerCommand;
use akagate_slowpath::aka::{AkaFailure, Usim};
use akagate_slowpath::hss::{Hss, SubscriberRecord};
use akagate_slowpath::{Core, CoreConfig};
use rand::SeedableRng;
use reg_common::*;

fn state_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("akagate-group-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Subscribers 001010000000001..=3 (TS 35.208 4.3.1 Test Set 1 keys), SQN state at `state`.
fn journaled_hss(state: &Path) -> Hss {
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
}

/// A test bed whose core runs over `hss` in group-commit mode.
fn testbed(hss: Hss) -> Testbed {
    let mut t = Testbed::new();
    let mut core = Core::new(
        CoreConfig::default(),
        hss,
        t.spis.clone(),
        Box::new(rand::rngs::StdRng::seed_from_u64(7)),
    );
    core.defer_sqn_commit();
    t.core = core;
    t
}

/// Sends `ue`'s initial REGISTER (as transaction `attempt`) and returns the 401's nonce.
fn challenge(t: &mut Testbed, ue: &Ue, attempt: u32) -> String {
    let text = ue
        .initial_register()
        .replace(
            "branch=z9hG4bKreg1",
            &format!("branch=z9hG4bKreg1x{attempt}"),
        )
        .replace("CSeq: 1 REGISTER", &format!("CSeq: {attempt} REGISTER"));
    let out = t.sip(ue.unprotected_flow(), None, &text);
    let msg = out
        .iter()
        .find_map(|c| match c {
            WorkerCommand::Send { bytes, .. } if bytes.starts_with(b"SIP/2.0 401 ") => {
                Some(String::from_utf8(bytes.clone()).unwrap())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no 401 in {out:?}"));
    param(&header(&msg, "WWW-Authenticate").unwrap(), "nonce").unwrap()
}

fn journal_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("sqn.state.journal"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn challenges_share_one_fsync_per_commit() {
    let dir = state_dir("share");
    let mut t = testbed(journaled_hss(&dir.join("sqn.state")));
    let ues: Vec<Ue> = (0..3)
        .map(|n| Ue::new(&mut t, n, 6100 + 10 * n as u16))
        .collect();
    let mut usims: Vec<Usim> = (0..3).map(|_| set1_usim()).collect();
    let mut expected = Vec::new();
    for (ue, usim) in ues.iter().zip(&mut usims) {
        let nonce = challenge(&mut t, ue, 1);
        assert_eq!(t.core.hss().sync_count(), 0, "a challenge fsynced");
        assert!(t.core.hss().has_uncommitted());
        // The SQN the UE recovers from AUTN is the one journaled for its IMPI.
        let sqn = ue_authenticate(usim, &nonce).unwrap().sqn.value();
        expected.push(format!("{sqn:012x} {}", ue.impi()));
    }
    assert_eq!(journal_lines(&dir), expected);
    t.core.commit().unwrap();
    assert_eq!(t.core.hss().sync_count(), 1);
    assert!(!t.core.hss().has_uncommitted());
    // A turn without challenges costs no fsync.
    t.core.commit().unwrap();
    assert_eq!(t.core.hss().sync_count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crash_before_commit_never_reuses_a_committed_sqn() {
    let dir = state_dir("crash");
    let state = dir.join("sqn.state");
    let journal = dir.join("sqn.state.journal");
    let mut t = testbed(journaled_hss(&state));
    let ues: Vec<Ue> = (0..3)
        .map(|n| Ue::new(&mut t, n, 6200 + 10 * n as u16))
        .collect();
    let mut usims: Vec<Usim> = (0..3).map(|_| set1_usim()).collect();

    // Committed and "sent": UE 0 twice, UE 1 once; each USIM accepts its challenges.
    let mut sent = Vec::new();
    for (i, attempt) in [(0, 1), (0, 2), (1, 1)] {
        let nonce = challenge(&mut t, &ues[i], attempt);
        ue_authenticate(&mut usims[i], &nonce).unwrap();
        sent.push((i, nonce));
    }
    t.core.commit().unwrap();
    let committed_len = std::fs::metadata(&journal).unwrap().len();

    // Not committed, so never sent: UE 0 and UE 2 challenged again, then the crash.
    challenge(&mut t, &ues[0], 3);
    challenge(&mut t, &ues[2], 1);
    assert!(t.core.hss().has_uncommitted());
    drop(t);
    // The power cut loses what was not fsynced and tears the first lost line.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    f.set_len(committed_len).unwrap();
    drop(f);
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    std::io::Write::write_all(&mut torn, b"0000000000").unwrap();
    drop(torn);

    let mut t = testbed(journaled_hss(&state));
    // Every UE that saw a challenge accepts the next one as fresh: no committed SQN reused.
    for (i, attempt) in [(0, 4), (1, 2), (2, 2)] {
        let nonce = challenge(&mut t, &ues[i], attempt);
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
    let _ = std::fs::remove_dir_all(&dir);
}
