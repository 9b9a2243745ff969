//! `min-expires`: a REGISTER asking for a shorter lifetime gets `423 Interval Too Brief` with
//! `Min-Expires` (RFC 3261 10.3 step 7, 20.23) before any challenge or SA set is made; one at
//! or above the minimum is challenged as usual.

mod reg_common;

use reg_common::*;

#[test]
fn too_brief_register_gets_423_with_min_expires_and_no_sa_set() {
    // The test UE asks for `;expires=600` in its Contact.
    let mut t = Testbed::with_config(|c| c.min_expires = 900);
    let ue = Ue::new(&mut t, 1, 5080);
    let out = t.sip(ue.unprotected_flow(), None, &ue.initial_register());
    assert_eq!(out.len(), 1, "only the 423, no SA set: {out:?}");
    let (flow, r) = sent(&out[0]);
    assert_eq!(flow, ue.unprotected_flow());
    assert!(r.starts_with("SIP/2.0 423 Interval Too Brief\r\n"), "{r}");
    assert_eq!(header(&r, "Min-Expires").as_deref(), Some("900"));
    assert!(header(&r, "WWW-Authenticate").is_none());
    assert!(header(&r, "Security-Server").is_none());
}

#[test]
fn register_at_the_minimum_is_challenged() {
    let mut t = Testbed::with_config(|c| c.min_expires = 600);
    let ue = Ue::new(&mut t, 1, 5080);
    let out = t.sip(ue.unprotected_flow(), None, &ue.initial_register());
    assert_eq!(out.len(), 2, "SA set + 401: {out:?}");
    installed(&out[0]);
    let (_, r) = sent(&out[1]);
    assert!(r.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{r}");
}

#[test]
fn deregistration_is_never_too_brief() {
    // Expires: 0 from an unregistered UE is not refused as too brief (it is handled by the
    // registrar's normal rules, not with a 423).
    let mut t = Testbed::with_config(|c| c.min_expires = 900);
    let ue = Ue::new(&mut t, 1, 5080);
    let text = ue.initial_register().replace(";expires=600", ";expires=0");
    let out = t.sip(ue.unprotected_flow(), None, &text);
    assert!(
        out.iter()
            .filter_map(|c| match c {
                akagate_proto::ipc::WorkerCommand::Send { bytes, .. } => Some(bytes),
                _ => None,
            })
            .all(|b| !b.starts_with(b"SIP/2.0 423")),
        "{out:?}"
    );
}
