//! The reg event (RFC 3680) through the registration's life: the first NOTIFY (version 0),
//! a NOTIFY with the next version when the registration is refreshed, a last NOTIFY with the
//! contact terminated (`unregistered` / `expired`) and `Subscription-State: terminated`
//! before the SAs are removed, and refresh / unsubscribe / unknown tag within the
//! subscription (RFC 6665).

mod reg_common;

use std::time::Duration;

use akagate_proto::ipc::{SaSet, Transport, WorkerCommand};
use reg_common::*;

/// What a reginfo body says, read loosely (attribute values by name).
#[derive(Debug, PartialEq, Eq)]
struct RegInfo {
    version: String,
    state: String,
    registration_states: Vec<String>,
    contact_states: Vec<String>,
    contact_events: Vec<String>,
    contact_expires: Vec<Option<String>>,
}

/// The value of `name="..."` in an XML start tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let rest = &tag[i..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The start tags `<name ...>` of an XML text.
fn tags<'x>(xml: &'x str, name: &str) -> Vec<&'x str> {
    let open = format!("<{name} ");
    xml.match_indices(&open)
        .filter_map(|(i, _)| {
            let rest = &xml[i..];
            Some(&rest[..rest.find('>')?])
        })
        .collect()
}

fn reginfo(notify: &str) -> RegInfo {
    let xml = body(notify);
    assert!(xml.starts_with("<?xml"), "{xml}");
    let root = tags(xml, "reginfo")[0];
    assert_eq!(
        attr(root, "xmlns").as_deref(),
        Some("urn:ietf:params:xml:ns:reginfo")
    );
    let regs = tags(xml, "registration");
    let contacts = tags(xml, "contact");
    RegInfo {
        version: attr(root, "version").unwrap(),
        state: attr(root, "state").unwrap(),
        registration_states: regs.iter().map(|t| attr(t, "state").unwrap()).collect(),
        contact_states: contacts.iter().map(|t| attr(t, "state").unwrap()).collect(),
        contact_events: contacts.iter().map(|t| attr(t, "event").unwrap()).collect(),
        contact_expires: contacts.iter().map(|t| attr(t, "expires")).collect(),
    }
}

fn subscribe(ue: &Ue, to_tag: Option<&str>, cseq: u32, expires: u32, branch: &str) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SUBSCRIBE {impu} SIP/2.0\r\nVia: SIP/2.0/TCP {ip}:{uc};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <{impu}>;tag=s1\r\nTo: <{impu}>{to_tag}\r\nCall-ID: sub-1\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{imsi}@{ip}:{us};transport=tcp>\r\nEvent: reg\r\nAccept: application/reginfo+xml\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n",
        impu = ue.impu(), ip = ue.ip, uc = ue.port_uc, us = ue.port_us, imsi = ue.imsi
    )
}

/// a subscribes; returns our tag and the first NOTIFY (answered 200).
fn subscribed(t: &mut Testbed, a: &Ue, sa: &SaSet) -> (String, String) {
    let out = t.sip(
        a.protected_flow(sa),
        Some(sa.spi_ps),
        &subscribe(a, None, 1, 600_000, "z9hG4bKsub1"),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let ok = sent(&out[0]).1;
    let tag = semi_param(&header(&ok, "To").unwrap(), "tag").unwrap();
    let (f, n) = sent(&out[1]);
    assert_eq!(f, client_flow(a, sa, Transport::Tcp));
    assert_eq!(header(&n, "CSeq").as_deref(), Some("1 NOTIFY"));
    assert_eq!(
        header(&n, "From"),
        Some(format!("<{}>;tag={tag}", a.impu()))
    );
    let info = reginfo(&n);
    assert_eq!((info.version.as_str(), info.state.as_str()), ("0", "full"));
    assert_eq!(info.contact_events, ["registered", "registered"]);
    assert_eq!(
        info.contact_expires,
        [Some("600".to_string()), Some("600".to_string())]
    );
    let out = t.sip(f, Some(sa.spi_pc), &answer(&n, 200, "OK"));
    assert!(out.is_empty(), "{out:?}");
    (tag, n)
}

fn refresh_without_security_client(ue: &Ue, set: &SaSet) -> String {
    ue.refresh(set, &ue.security_server)
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Security-Client:"))
        .collect()
}

#[test]
fn refresh_then_deregistration_notify_with_versions_and_order() {
    let (mut t, a, sa, _b, _sb) = registered_pair_over(Transport::Tcp, false);
    let (tag, first) = subscribed(&mut t, &a, &sa);
    let to_a = client_flow(&a, &sa, Transport::Tcp);

    // Refresh at +100 s: 200 OK first, then NOTIFY version 1, contact refreshed.
    t.now += Duration::from_secs(100);
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &refresh_without_security_client(&a, &sa),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK\r\n"));
    let (f, n) = sent(&out[1]);
    assert_eq!(f, to_a);
    assert!(sent_connect(&out[1]));
    assert!(n.starts_with(&format!(
        "NOTIFY sip:{}@{}:{};transport=tcp SIP/2.0\r\n",
        a.imsi, a.ip, a.port_us
    )));
    assert!(header(&n, "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP 10.0.0.1:6100;branch=z9hG4bK"));
    assert_ne!(header(&n, "Via"), header(&first, "Via"));
    // Same dialog: Call-ID, tags; the next CSeq.
    assert_eq!(header(&n, "Call-ID").as_deref(), Some("sub-1"));
    assert_eq!(
        header(&n, "From"),
        Some(format!("<{}>;tag={tag}", a.impu()))
    );
    assert_eq!(header(&n, "To"), Some(format!("<{}>;tag=s1", a.impu())));
    assert_eq!(header(&n, "CSeq").as_deref(), Some("2 NOTIFY"));
    assert_eq!(
        header(&n, "Subscription-State").as_deref(),
        Some("active;expires=500")
    );
    let info = reginfo(&n);
    assert_eq!(info.version, "1");
    assert_eq!(info.registration_states, ["active", "active"]);
    assert_eq!(info.contact_states, ["active", "active"]);
    assert_eq!(info.contact_events, ["refreshed", "refreshed"]);
    assert_eq!(info.contact_expires[0].as_deref(), Some("600"));
    let out = t.sip(to_a, Some(sa.spi_pc), &answer(&n, 200, "OK"));
    assert!(out.is_empty());

    // De-registration: 200 OK, then the last NOTIFY, then RemoveSaSet.
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &a.dereg(&sa));
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK\r\n"));
    let notifies = sends_starting(&out, "NOTIFY ");
    assert_eq!(notifies.len(), 1, "{out:?}");
    let removed = first_remove(&out).expect("RemoveSaSet");
    assert!(notifies[0] < removed, "NOTIFY before RemoveSaSet: {out:?}");
    let (f, n) = sent(&out[notifies[0]]);
    assert_eq!(f, to_a);
    assert_eq!(header(&n, "CSeq").as_deref(), Some("3 NOTIFY"));
    assert_eq!(
        header(&n, "Subscription-State").as_deref(),
        Some("terminated;reason=noresource")
    );
    let info = reginfo(&n);
    assert_eq!(info.version, "2");
    assert_eq!(info.state, "full");
    assert_eq!(info.registration_states, ["terminated", "terminated"]);
    assert_eq!(info.contact_states, ["terminated", "terminated"]);
    assert_eq!(info.contact_events, ["unregistered", "unregistered"]);
    assert_eq!(info.contact_expires, [None, None]);
    assert_eq!(t.core.reg_subscriptions(), 0);
    // Sent without a transaction (the answer cannot come back): nothing retransmits.
    assert!(t
        .core
        .handle_timeout(t.now + Duration::from_secs(40))
        .iter()
        .all(|c| !matches!(c, WorkerCommand::Send { .. })));
    assert_eq!(t.core.stats().notify_failures, 0);
}

#[test]
fn expiry_notifies_expired_before_the_sas_go() {
    let (mut t, a, sa, _b, _sb) = registered_pair_over(Transport::Udp, false);
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &subscribe(&a, None, 1, 600_000, "z9hG4bKsub1").replace("/TCP", "/UDP"),
    );
    let (f, n) = sent(&out[1]);
    assert_eq!(f, client_flow(&a, &sa, Transport::Udp));
    assert!(t.sip(f, Some(sa.spi_pc), &answer(&n, 200, "OK")).is_empty());

    let out = t.core.handle_timeout(t.now + Duration::from_secs(600));
    let notifies = sends_starting(&out, "NOTIFY ");
    let removed = first_remove(&out).expect("RemoveSaSet");
    let mine: Vec<_> = notifies
        .iter()
        .filter(|&&i| sent(&out[i]).0 == f)
        .copied()
        .collect();
    assert_eq!(mine.len(), 1, "{out:?}");
    assert!(mine[0] < removed);
    let n = sent(&out[mine[0]]).1;
    assert!(header(&n, "Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 10.0.0.1:6100;"));
    assert_eq!(
        header(&n, "Subscription-State").as_deref(),
        Some("terminated;reason=noresource")
    );
    let info = reginfo(&n);
    assert_eq!(info.version, "1");
    assert_eq!(info.contact_events, ["expired", "expired"]);
    assert_eq!(info.registration_states, ["terminated", "terminated"]);
}

#[test]
fn resubscribe_unsubscribe_and_unknown_tag() {
    let (mut t, a, sa, _b, _sb) = registered_pair_over(Transport::Tcp, false);
    let (tag, _) = subscribed(&mut t, &a, &sa);
    let to_a = client_flow(&a, &sa, Transport::Tcp);

    // A refresh within the dialog: 200 with our tag kept, NOTIFY version 1.
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &subscribe(&a, Some(&tag), 2, 3600, "z9hG4bKsub2"),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let ok = sent(&out[0]).1;
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(header(&ok, "To"), Some(format!("<{}>;tag={tag}", a.impu())));
    assert_eq!(header(&ok, "Expires").as_deref(), Some("600"));
    let n = sent(&out[1]).1;
    assert_eq!(reginfo(&n).version, "1");
    assert_eq!(header(&n, "CSeq").as_deref(), Some("2 NOTIFY"));
    assert!(t
        .sip(to_a, Some(sa.spi_pc), &answer(&n, 200, "OK"))
        .is_empty());

    // An unknown tag: 481, no NOTIFY.
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &subscribe(&a, Some("other"), 3, 3600, "z9hG4bKsub3"),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 481 "));

    // Unsubscribe: 200, a final NOTIFY, and no subscription left.
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &subscribe(&a, Some(&tag), 4, 0, "z9hG4bKsub4"),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(header(&sent(&out[0]).1, "Expires").as_deref(), Some("0"));
    let n = sent(&out[1]).1;
    assert!(header(&n, "Subscription-State")
        .unwrap()
        .starts_with("terminated"));
    assert_eq!(reginfo(&n).version, "2");
    assert_eq!(t.core.reg_subscriptions(), 0);
    // A NOTIFY answered 481 would also have ended it; a refresh now finds nothing.
    assert!(t
        .sip(to_a, Some(sa.spi_pc), &answer(&n, 200, "OK"))
        .is_empty());
    let out = t.sip(a.protected_flow(&sa), Some(sa.spi_ps), &a.dereg(&sa));
    assert!(sends_starting(&out, "NOTIFY ").is_empty(), "{out:?}");
}

#[test]
fn a_notify_answered_481_ends_the_subscription() {
    let (mut t, a, sa, _b, _sb) = registered_pair_over(Transport::Tcp, false);
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &subscribe(&a, None, 1, 600_000, "z9hG4bKsub1"),
    );
    let (f, n) = sent(&out[1]);
    assert_eq!(t.core.reg_subscriptions(), 1);
    let out = t.sip(
        f,
        Some(sa.spi_pc),
        &answer(&n, 481, "Subscription Does Not Exist"),
    );
    assert!(out.is_empty());
    assert_eq!(t.core.stats().notify_failures, 1);
    assert_eq!(t.core.reg_subscriptions(), 0);
}
