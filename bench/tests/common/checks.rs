//! Assertions shared by the end-to-end scenarios (inline gateway, daemon, AF_PACKET): the
//! registration's offer and challenge (TS 33.203 7.1, RFC 3329 2.3.1), a call's events on
//! both sides, the callee's dialog requests, and drop counters that must stay at zero.

use akagate_bench::ue::{ReceivedRequest, Ue, UeEvent};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};

use super::{header_value, param};

/// The security mechanism `mechanism` (RFC 3329 2.2) names exactly `pair`.
fn check_pair(mechanism: &str, pair: (AuthAlg, EncrAlg), what: &str) {
    let (alg, ealg) = (param(mechanism, "alg"), param(mechanism, "ealg"));
    assert_eq!(alg.as_deref(), Some(pair.0.token()), "{what}");
    assert_eq!(ealg.as_deref(), Some(pair.1.token()), "{what}");
}

/// The unprotected REGISTER `text` offers exactly `pair` and requires sec-agree.
pub fn check_offer(text: &str, pair: (AuthAlg, EncrAlg), what: &str) {
    assert!(text.starts_with("REGISTER sip:"), "{what}: {text}");
    check_pair(&header_value(text, "Security-Client").unwrap(), pair, what);
    assert_eq!(header_value(text, "Require").as_deref(), Some("sec-agree"));
}

/// The clear answer `text` is a 401 choosing `pair`, with the P-CSCF's protected ports
/// (`port_pc`, `port_ps`) and an AKA challenge; returns its Security-Server and spi_ps.
pub fn check_challenge(
    text: &str,
    pair: (AuthAlg, EncrAlg),
    (port_pc, port_ps): (u16, u16),
    what: &str,
) -> (String, u32) {
    assert!(
        text.starts_with("SIP/2.0 401 Unauthorized\r\n"),
        "{what}: {text}"
    );
    let ss = header_value(text, "Security-Server").unwrap();
    check_pair(&ss, pair, what);
    assert_eq!(param(&ss, "port-s"), Some(port_ps.to_string()), "{what}");
    assert_eq!(param(&ss, "port-c"), Some(port_pc.to_string()), "{what}");
    let spi_ps: u32 = param(&ss, "spi-s").unwrap().parse().unwrap();
    let www = header_value(text, "WWW-Authenticate").unwrap();
    assert!(www.contains("algorithm=AKAv1-MD5"), "{what}: {www}");
    (ss, spi_ps)
}

/// The events of call `call_id` since it was placed: the caller's (transactions left out)
/// ring, answer and end; the callee's arrive, establish and end.
pub fn check_call_events(caller: &[UeEvent], callee: &[UeEvent], call_id: &str) {
    let caller: Vec<_> = caller
        .iter()
        .filter(|e| !matches!(e, UeEvent::Transaction { .. }))
        .cloned()
        .collect();
    let id = call_id.to_string();
    assert_eq!(
        caller,
        vec![
            UeEvent::CallRinging(id.clone()),
            UeEvent::CallAnswered(id.clone()),
            UeEvent::CallEnded(id.clone()),
        ]
    );
    assert_eq!(
        callee.to_vec(),
        vec![
            UeEvent::IncomingCall(id.clone()),
            UeEvent::IncomingCallEstablished(id.clone()),
            UeEvent::IncomingCallEnded(id),
        ]
    );
}

/// The last INVITE, ACK and BYE `ue` received, in that order.
pub fn last_dialog_requests(ue: &Ue) -> Vec<ReceivedRequest> {
    let reqs: Vec<_> = ue
        .requests_received()
        .filter(|r| ["INVITE", "ACK", "BYE"].contains(&r.method.as_str()))
        .cloned()
        .collect();
    let last3 = reqs[reqs.len().saturating_sub(3)..].to_vec();
    assert_eq!(last3.len(), 3, "{reqs:?}");
    for (r, m) in last3.iter().zip(["INVITE", "ACK", "BYE"]) {
        assert_eq!(r.method, m);
    }
    last3
}

/// `ue` dropped no ESP, no clear packet to a protected port and no SIP message.
pub fn assert_ue_clean(ue: &Ue) {
    let c = ue.counters();
    assert_eq!(
        (c.drop_esp, c.drop_clear_to_protected, c.drop_sip),
        (0, 0, 0)
    );
}

/// Every counter of `names` reads zero.
pub fn assert_zero(counter: impl Fn(&str) -> u64, names: &[&str]) {
    for name in names {
        assert_eq!(counter(name), 0, "{name}");
    }
}
