//! Dialog requests between registered UEs through the P-CSCF: re-INVITE, UPDATE, PRACK
//! (100rel headers untouched) and MESSAGE follow the Record-Route'd dialog both ways, each
//! on the right protected flow; page-mode MESSAGE is routed like INVITE (RFC 3428); unknown
//! dialogs get 481; and a party's de-registration or expiry releases its dialogs with a BYE
//! to both parties before its SAs go (TS 24.229 5.2.8.1.2).

mod reg_common;

use std::time::Duration;

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand};
use reg_common::*;

const RR: &str = "<sip:10.0.0.1:6100;lr>";

/// An established call between a (caller) and b (callee).
struct Call {
    t: Testbed,
    a: Ue,
    sa: SaSet,
    b: Ue,
    sb: SaSet,
    call_id: String,
    a_from: String,
    b_to: String,
    a_target: String,
    b_target: String,
}

impl Call {
    fn to_a(&self) -> Flow {
        client_flow(&self.a, &self.sa, Transport::Tcp)
    }
    fn to_b(&self) -> Flow {
        client_flow(&self.b, &self.sb, Transport::Tcp)
    }
    /// a's own flow: port_uc -> our port_ps.
    fn a_side(&self) -> Flow {
        self.a.protected_flow(&self.sa)
    }
    /// b's own flow: port_uc -> our port_ps.
    fn b_side(&self) -> Flow {
        self.b.protected_flow(&self.sb)
    }
}

fn target(ue: &Ue) -> String {
    format!("sip:{}@{}:{};transport=tcp", ue.imsi, ue.host(), ue.port_us)
}

/// A UE's response to `req`: Via and Record-Route copied (RFC 3261 12.1.1), To tagged,
/// Contact = the UE's target, `extra` header lines added.
fn answer_rr(req: &str, code: u16, reason: &str, ue: &Ue, extra: &str) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in headers(req, "Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for r in headers(req, "Record-Route") {
        s.push_str(&format!("Record-Route: {r}\r\n"));
    }
    s.push_str(&format!("From: {}\r\n", header(req, "From").unwrap()));
    let to = header(req, "To").unwrap();
    if to.contains(";tag=") {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!("To: {to};tag=callee1\r\n"));
    }
    s.push_str(&format!(
        "Call-ID: {}\r\nCSeq: {}\r\nContact: <{}>\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "Call-ID").unwrap(),
        header(req, "CSeq").unwrap(),
        target(ue)
    ));
    s
}

/// A request inside the dialog from `from` (Route = our Record-Route, RFC 3261 12.2.1.1).
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    method: &str,
    from: &Ue,
    ruri: &str,
    from_hdr: &str,
    to_hdr: &str,
    call_id: &str,
    cseq: u32,
    branch: &str,
    extra: &str,
    body: &str,
) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{uc};branch={branch}\r\nRoute: {RR}\r\nMax-Forwards: 70\r\nFrom: {from_hdr}\r\nTo: {to_hdr}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <{contact}>\r\nSecurity-Verify: {sv}\r\n{extra}{ct}Content-Length: {len}\r\n\r\n{body}",
        host = from.host(),
        uc = from.port_uc,
        contact = target(from),
        sv = from.security_server,
        len = body.len(),
    )
}

/// INVITE a -> b answered `code` by b (no ACK yet); returns the call and the forwarded INVITE.
fn call_until(code: u16, reason: &str, extra: &str) -> (Call, String, String) {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &invite_text(&a, &b.impu(), "z9hG4bKdlg", 70, &sdp(&a)),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let (_, fwd) = sent(&out[1]);
    assert_eq!(header(&fwd, "Record-Route").as_deref(), Some(RR));
    let call = Call {
        call_id: "call-z9hG4bKdlg".into(),
        a_from: format!("<{}>;tag=caller1", a.impu()),
        b_to: format!("<{}>;tag=callee1", b.impu()),
        a_target: target(&a),
        b_target: target(&b),
        t,
        a,
        sa,
        b,
        sb,
    };
    let mut call = call;
    let (to_b, sb_pc) = (call.to_b(), call.sb.spi_pc);
    let resp = answer_rr(&fwd, code, reason, &call.b, extra);
    let out = call.t.sip(to_b, Some(sb_pc), &resp);
    let relayed = out
        .iter()
        .map(sent)
        .find(|(f, _)| *f == call.a_side())
        .expect("relayed to the caller")
        .1;
    (call, fwd, relayed)
}

/// An established call (200 relayed, ACK forwarded).
fn established() -> Call {
    let (mut c, _fwd, ok) = call_until(200, "OK", "");
    assert_eq!(header(&ok, "Record-Route").as_deref(), Some(RR));
    let ack = in_dialog(
        "ACK",
        &c.a,
        &c.b_target,
        &c.a_from,
        &c.b_to,
        &c.call_id,
        1,
        "z9hG4bKack1",
        "",
        "",
    );
    let (from_a, spi) = (c.a_side(), c.sa.spi_ps);
    let out = c.t.sip(from_a, Some(spi), &ack);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(sent(&out[0]).0, c.to_b());
    assert_eq!(c.t.core.dialogs(), 1);
    c
}

/// Sends `req` from `flow` (through `spi`) and returns what went to `to` (and asserts the
/// rest is at most a 100 Trying back on `flow`).
fn forward(c: &mut Call, flow: Flow, spi: u32, req: &str, to: Flow) -> String {
    let out = c.t.sip(flow, Some(spi), req);
    let mut fwd = None;
    for cmd in &out {
        let (f, m) = sent(cmd);
        if f == to {
            assert!(fwd.is_none(), "{out:?}");
            fwd = Some(m);
        } else {
            assert_eq!(f, flow, "{out:?}");
            assert!(m.starts_with("SIP/2.0 100 Trying\r\n"), "{m}");
        }
    }
    fwd.expect("forwarded")
}

/// Checks what every in-dialog request looks like after the P-CSCF.
fn assert_in_dialog(fwd: &str, method: &str, ruri: &str, sender: &Ue) {
    assert!(
        fwd.starts_with(&format!("{method} {ruri} SIP/2.0\r\n")),
        "{fwd}"
    );
    let vias = headers(fwd, "Via");
    assert!(
        vias[0].starts_with("SIP/2.0/TCP 10.0.0.1:6100;branch=z9hG4bK"),
        "{vias:?}"
    );
    assert!(vias[1].starts_with(&format!(
        "SIP/2.0/TCP {}:{};",
        sender.host(),
        sender.port_uc
    )));
    // Our Route entry consumed, nothing added: no Record-Route or P-Asserted-Identity in
    // the middle of a dialog, sec-agree headers gone.
    for h in [
        "Route",
        "Record-Route",
        "P-Asserted-Identity",
        "Security-Verify",
    ] {
        assert_eq!(header(fwd, h), None, "{h}");
    }
    assert_eq!(header(fwd, "Max-Forwards").as_deref(), Some("69"));
}

#[test]
fn reinvite_update_message_follow_the_dialog_both_ways() {
    let mut c = established();
    let (to_a, to_b, from_a, from_b) = (c.to_a(), c.to_b(), c.a_side(), c.b_side());
    let (a, b) = (c.a.clone(), c.b.clone());
    let (spi_a_ps, spi_a_pc, spi_b_ps, spi_b_pc) =
        (c.sa.spi_ps, c.sa.spi_pc, c.sb.spi_ps, c.sb.spi_pc);

    // Caller re-INVITE -> callee over port_pc; the callee's 491 goes back and does not end
    // the dialog (RFC 3261 14.1); our client transaction ACKs it.
    let re = in_dialog(
        "INVITE",
        &a,
        &c.b_target,
        &c.a_from,
        &c.b_to,
        &c.call_id,
        2,
        "z9hG4bKre1",
        "",
        &sdp(&a),
    );
    let fwd = forward(&mut c, from_a, spi_a_ps, &re, to_b);
    assert_in_dialog(&fwd, "INVITE", &c.b_target, &a);
    assert!(fwd.ends_with(&sdp(&a)));
    let out = c.t.sip(
        to_b,
        Some(spi_b_pc),
        &answer_rr(&fwd, 491, "Request Pending", &b, ""),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(sent(&out[0]).0, to_b);
    assert!(sent(&out[0])
        .1
        .starts_with(&format!("ACK {} SIP/2.0", c.b_target)));
    let (f, r) = sent(&out[1]);
    assert_eq!(f, from_a);
    assert!(r.starts_with("SIP/2.0 491 Request Pending\r\n"));
    assert_eq!(c.t.core.dialogs(), 1);

    // Callee re-INVITE -> caller: arrives on b's port_uc -> port_ps, leaves port_pc -> a's
    // port_us; the 200 comes back over a's spi_pc and reaches b on its own flow.
    let re = in_dialog(
        "INVITE",
        &b,
        &c.a_target,
        &c.b_to,
        &c.a_from,
        &c.call_id,
        1,
        "z9hG4bKre2",
        "",
        &sdp(&b),
    );
    let fwd = forward(&mut c, from_b, spi_b_ps, &re, to_a);
    assert_in_dialog(&fwd, "INVITE", &c.a_target, &b);
    let out =
        c.t.sip(to_a, Some(spi_a_pc), &answer_rr(&fwd, 200, "OK", &a, ""));
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, from_b);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(
        headers(&r, "Via"),
        vec![format!(
            "SIP/2.0/TCP {}:{};branch=z9hG4bKre2",
            b.host(),
            b.port_uc
        )]
    );
    // ... and b's ACK for it goes to a.
    let ack = in_dialog(
        "ACK",
        &b,
        &c.a_target,
        &c.b_to,
        &c.a_from,
        &c.call_id,
        1,
        "z9hG4bKack2",
        "",
        "",
    );
    let out = c.t.sip(from_b, Some(spi_b_ps), &ack);
    assert_eq!(out.len(), 1);
    assert_eq!(sent(&out[0]).0, to_a);
    assert!(sent(&out[0])
        .1
        .starts_with(&format!("ACK {} SIP/2.0", c.a_target)));

    // UPDATE caller -> callee and its 200 back.
    let up = in_dialog(
        "UPDATE",
        &a,
        &c.b_target,
        &c.a_from,
        &c.b_to,
        &c.call_id,
        3,
        "z9hG4bKup1",
        "",
        &sdp(&a),
    );
    let fwd = forward(&mut c, from_a, spi_a_ps, &up, to_b);
    assert_in_dialog(&fwd, "UPDATE", &c.b_target, &a);
    let out =
        c.t.sip(to_b, Some(spi_b_pc), &answer_rr(&fwd, 200, "OK", &b, ""));
    assert_eq!(sent(&out[0]).0, from_a);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK\r\n"));

    // In-dialog MESSAGE callee -> caller and its 200 back.
    let msg = in_dialog(
        "MESSAGE",
        &b,
        &c.a_target,
        &c.b_to,
        &c.a_from,
        &c.call_id,
        2,
        "z9hG4bKmsg1",
        "",
        "",
    );
    let fwd = forward(&mut c, from_b, spi_b_ps, &msg, to_a);
    assert_in_dialog(&fwd, "MESSAGE", &c.a_target, &b);
    let out =
        c.t.sip(to_a, Some(spi_a_pc), &answer_rr(&fwd, 200, "OK", &a, ""));
    assert_eq!(sent(&out[0]).0, from_b);

    // BYE from the caller ends the dialog record.
    let bye = in_dialog(
        "BYE",
        &a,
        &c.b_target,
        &c.a_from,
        &c.b_to,
        &c.call_id,
        4,
        "z9hG4bKbye1",
        "",
        "",
    );
    let fwd = forward(&mut c, from_a, spi_a_ps, &bye, to_b);
    assert_in_dialog(&fwd, "BYE", &c.b_target, &a);
    assert_eq!(c.t.core.dialogs(), 0);
}

#[test]
fn prack_and_reliable_provisional_pass_100rel_untouched() {
    let (mut c, fwd, r183) = call_until(183, "Session Progress", "Require: 100rel\r\nRSeq: 1\r\n");
    let _ = fwd;
    // RFC 3262 headers of the reliable 183 reach the caller as the callee wrote them.
    assert!(r183.starts_with("SIP/2.0 183 Session Progress\r\n"));
    assert_eq!(header(&r183, "Require").as_deref(), Some("100rel"));
    assert_eq!(header(&r183, "RSeq").as_deref(), Some("1"));
    assert_eq!(header(&r183, "Record-Route").as_deref(), Some(RR));
    // PRACK in the early dialog, with sec-agree next to 100rel: only sec-agree is removed.
    let (a, b) = (c.a.clone(), c.b.clone());
    let prack = in_dialog(
        "PRACK",
        &a,
        &c.b_target,
        &c.a_from,
        &c.b_to,
        &c.call_id,
        2,
        "z9hG4bKpr1",
        "RAck: 1 1 INVITE\r\nRequire: sec-agree, 100rel\r\nProxy-Require: sec-agree\r\n",
        "",
    );
    let (from_a, to_b, spi) = (c.a_side(), c.to_b(), c.sa.spi_ps);
    let fwd = forward(&mut c, from_a, spi, &prack, to_b);
    assert_in_dialog(&fwd, "PRACK", &c.b_target, &a);
    assert_eq!(header(&fwd, "RAck").as_deref(), Some("1 1 INVITE"));
    assert_eq!(headers(&fwd, "Require"), vec!["100rel".to_string()]);
    assert_eq!(header(&fwd, "Proxy-Require"), None);
    let out =
        c.t.sip(to_b, Some(c.sb.spi_pc), &answer_rr(&fwd, 200, "OK", &b, ""));
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, from_a);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(header(&r, "CSeq").as_deref(), Some("2 PRACK"));
}

fn page(from: &Ue, to: &str, branch: &str) -> String {
    format!(
        "MESSAGE {to} SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{uc};branch={branch}\r\nMax-Forwards: 70\r\nRoute: <sip:orig@pcscf.ims.mnc001.mcc001.3gppnetwork.org;lr>\r\nFrom: <{impu}>;tag=pm1\r\nTo: <{to}>\r\nCall-ID: page-{branch}\r\nCSeq: 1 MESSAGE\r\nSecurity-Verify: {sv}\r\nRequire: sec-agree\r\nProxy-Require: sec-agree\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        host = from.host(),
        uc = from.port_uc,
        impu = from.impu(),
        sv = from.security_server,
    )
}

#[test]
fn page_mode_message_is_routed_like_invite() {
    let (mut t, a, sa, b, sb) = registered_pair_over(Transport::Tcp, false);
    let out = t.sip(
        a.protected_flow(&sa),
        Some(sa.spi_ps),
        &page(&a, &b.impu(), "z9hG4bKpm1"),
    );
    // RFC 3428: no 100 Trying for a non-INVITE over TCP, just the forwarded MESSAGE.
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, fwd) = sent(&out[0]);
    assert_eq!(f, client_flow(&b, &sb, Transport::Tcp));
    assert!(sent_connect(&out[0]));
    assert!(
        fwd.starts_with(&format!("MESSAGE {} SIP/2.0\r\n", target(&b))),
        "{fwd}"
    );
    assert!(header(&fwd, "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP 10.0.0.1:6100;branch=z9hG4bK"));
    assert_eq!(
        header(&fwd, "P-Asserted-Identity"),
        Some(format!("<{}>", a.impu()))
    );
    // MESSAGE creates no dialog (RFC 3428 4): no Record-Route, no dialog record.
    for h in [
        "Record-Route",
        "Route",
        "Security-Verify",
        "Require",
        "Proxy-Require",
    ] {
        assert_eq!(header(&fwd, h), None, "{h}");
    }
    assert!(fwd.ends_with("\r\n\r\nhello"));
    assert_eq!(t.core.dialogs(), 0);
    let out = t.sip(
        client_flow(&b, &sb, Transport::Tcp),
        Some(sb.spi_pc),
        &answer(&fwd, 200, "OK"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(sent(&out[0]).0, a.protected_flow(&sa));

    // Unknown IMPU: 404; provisioned but not registered: 480.
    for (to, branch, code) in [
        (
            "sip:nobody@ims.mnc001.mcc001.3gppnetwork.org",
            "z9hG4bKpm2",
            "404",
        ),
        ("tel:+15550003", "z9hG4bKpm3", "480"),
    ] {
        let out = t.sip(
            a.protected_flow(&sa),
            Some(sa.spi_ps),
            &page(&a, to, branch),
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let (f, r) = sent(&out[0]);
        assert_eq!(f, a.protected_flow(&sa));
        assert!(r.starts_with(&format!("SIP/2.0 {code} ")), "{r}");
    }
}

#[test]
fn unknown_dialog_gets_481_and_so_does_a_cancel_after_the_2xx() {
    let mut c = established();
    let (a, from_a, spi) = (c.a.clone(), c.a_side(), c.sa.spi_ps);
    let stray = in_dialog(
        "UPDATE",
        &a,
        &c.b_target,
        &c.a_from,
        &c.b_to,
        "no-such-call",
        2,
        "z9hG4bKu9",
        "",
        "",
    );
    let out = c.t.sip(from_a, Some(spi), &stray);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 481 "));
    // The INVITE server transaction ended with the 2xx (RFC 3261 17.2.1), so a late CANCEL
    // matches nothing: 481 (RFC 3261 9.2), nothing goes to the callee.
    let cancel = format!(
        "CANCEL {} SIP/2.0\r\nVia: SIP/2.0/TCP {}:{};branch=z9hG4bKdlg\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: <{}>\r\nCall-ID: {}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        c.b.impu(), a.host(), a.port_uc, c.a_from, c.b.impu(), c.call_id
    );
    let out = c.t.sip(from_a, Some(spi), &cancel);
    assert_eq!(out.len(), 1, "{out:?}");
    let (f, r) = sent(&out[0]);
    assert_eq!(f, from_a);
    assert!(r.starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"));
    assert_eq!(c.t.core.dialogs(), 1);
}

/// Checks a BYE of ours (TS 24.229 5.2.8.1.2).
fn assert_bye(bye: &str, ruri: &str, from: &str, to: &str, call_id: &str, cseq: u32) {
    assert!(bye.starts_with(&format!("BYE {ruri} SIP/2.0\r\n")), "{bye}");
    assert_eq!(headers(bye, "Via").len(), 1);
    assert!(header(bye, "Via")
        .unwrap()
        .starts_with("SIP/2.0/TCP 10.0.0.1:6100;branch=z9hG4bK"));
    assert_eq!(header(bye, "From").as_deref(), Some(from));
    assert_eq!(header(bye, "To").as_deref(), Some(to));
    assert_eq!(header(bye, "Call-ID").as_deref(), Some(call_id));
    assert_eq!(header(bye, "CSeq"), Some(format!("{cseq} BYE")));
    // The dialog's route set beyond us is empty (we are the only proxy on it).
    assert_eq!(header(bye, "Route"), None);
    assert!(header(bye, "Reason").unwrap().starts_with("SIP;cause=480;"));
}

#[test]
fn deregistration_releases_the_dialog_with_bye_to_both_before_the_sas_go() {
    let mut c = established();
    let (a, from_a, spi) = (c.a.clone(), c.a_side(), c.sa.spi_ps);
    // The caller used CSeq 3 meanwhile.
    let up = in_dialog(
        "UPDATE",
        &a,
        &c.b_target,
        &c.a_from,
        &c.b_to,
        &c.call_id,
        3,
        "z9hG4bKup7",
        "",
        "",
    );
    let to_b = c.to_b();
    let fwd = forward(&mut c, from_a, spi, &up, to_b);
    let out = c.t.sip(
        to_b,
        Some(c.sb.spi_pc),
        &answer_rr(&fwd, 200, "OK", &c.b.clone(), ""),
    );
    assert_eq!(out.len(), 1);

    let out = c.t.sip(from_a, Some(spi), &a.dereg(&c.sa));
    let (f, ok) = sent(&out[0]);
    assert_eq!(f, from_a);
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    let byes = sends_starting(&out, "BYE ");
    assert_eq!(byes.len(), 2, "{out:?}");
    let removed = first_remove(&out).expect("RemoveSaSet");
    assert!(
        byes.iter().all(|&i| i < removed),
        "BYEs before RemoveSaSet: {out:?}"
    );
    assert!(matches!(
        out[removed],
        WorkerCommand::RemoveSaSet { spi_ps, .. } if spi_ps == c.sa.spi_ps
    ));
    let by_flow = |flow: Flow| {
        byes.iter()
            .map(|&i| sent(&out[i]))
            .find(|(f, _)| *f == flow)
            .expect("BYE on flow")
            .1
    };
    // To the staying callee, as if from the caller: CSeq after the caller's 3.
    let bye_b = by_flow(c.to_b());
    assert_bye(&bye_b, &c.b_target, &c.a_from, &c.b_to, &c.call_id, 4);
    // To the departing caller, as if from the callee (who never sent a request: CSeq 1).
    let bye_a = by_flow(c.to_a());
    assert_bye(&bye_a, &c.a_target, &c.b_to, &c.a_from, &c.call_id, 1);
    assert_eq!(c.t.core.dialogs(), 0);
    assert_eq!(c.t.core.stats().dialogs_released, 1);

    // b's 200 to our BYE stays here; a BYE that is never answered is counted after timer F.
    let out =
        c.t.sip(c.to_b(), Some(c.sb.spi_pc), &answer(&bye_b, 200, "OK"));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(c.t.core.stats().bye_failures, 0);
    // The departing side's BYE has no transaction: nothing retransmits or times out.
    let later = c.t.core.handle_timeout(c.t.now + Duration::from_secs(40));
    assert!(later.is_empty(), "{later:?}");
    assert_eq!(c.t.core.transactions(), 0);
}

#[test]
fn expiry_of_the_callee_releases_the_dialog() {
    let mut c = established();
    // a refreshes at +300 s (no new Security-Client), so only b expires at +600 s.
    c.t.now += Duration::from_secs(300);
    let refresh: String =
        c.a.refresh(&c.sa, &c.a.security_server)
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with("Security-Client:"))
            .collect();
    let (from_a, spi) = (c.a_side(), c.sa.spi_ps);
    let out = c.t.sip(from_a, Some(spi), &refresh);
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"));

    let out = c.t.core.handle_timeout(c.t.now + Duration::from_secs(300));
    let byes = sends_starting(&out, "BYE ");
    assert_eq!(byes.len(), 2, "{out:?}");
    let removed = first_remove(&out).expect("RemoveSaSet");
    assert!(matches!(
        out[removed],
        WorkerCommand::RemoveSaSet { spi_ps, .. } if spi_ps == c.sb.spi_ps
    ));
    assert!(byes.iter().all(|&i| i < removed));
    let bye_a = byes
        .iter()
        .map(|&i| sent(&out[i]))
        .find(|(f, _)| *f == c.to_a())
        .expect("BYE to the caller")
        .1;
    assert_bye(&bye_a, &c.a_target, &c.b_to, &c.a_from, &c.call_id, 1);
    assert!(header(&bye_a, "Reason").unwrap().contains("expired"));
    // The caller's BYE is a transaction: its 200 ends it.
    let out =
        c.t.sip(c.to_a(), Some(c.sa.spi_pc), &answer(&bye_a, 200, "OK"));
    assert!(out.is_empty());
    assert_eq!(c.t.core.dialogs(), 0);
}

#[test]
fn a_callee_leaving_while_ringing_gets_the_call_cancelled_and_the_caller_480() {
    let (mut c, fwd, r180) = call_until(180, "Ringing", "");
    assert!(r180.starts_with("SIP/2.0 180 Ringing"));
    let b = c.b.clone();
    let (from_b, spi) = (c.b_side(), c.sb.spi_ps);
    let out = c.t.sip(from_b, Some(spi), &b.dereg(&c.sb));
    assert!(sent(&out[0]).1.starts_with("SIP/2.0 200 OK"));
    let removed = first_remove(&out).expect("RemoveSaSet");
    let cancels = sends_starting(&out, "CANCEL ");
    assert_eq!(cancels.len(), 1, "{out:?}");
    let (f, cancel) = sent(&out[cancels[0]]);
    assert_eq!(f, c.to_b());
    assert!(cancel.starts_with(&fwd.lines().next().unwrap().replace("INVITE ", "CANCEL ")));
    let r480 = sends_starting(&out, "SIP/2.0 480 ");
    assert_eq!(r480.len(), 1, "{out:?}");
    assert_eq!(sent(&out[r480[0]]).0, c.a_side());
    assert!(cancels[0] < removed && r480[0] < removed);
    assert!(sends_starting(&out, "BYE ").is_empty());
    assert_eq!(c.t.core.dialogs(), 0);
    // Nothing towards b lingers: no retransmission or timeout later.
    let mut later = Vec::new();
    while let Some(at) = c.t.core.poll_timeout() {
        if at > c.t.now + Duration::from_secs(100) {
            break;
        }
        later.extend(c.t.core.handle_timeout(at));
    }
    assert!(later.is_empty(), "{later:?}");
}
