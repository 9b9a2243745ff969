//! Malformed input through the core: requests answered with the parse error's status and
//! reason (RFC 3261 8.2.1-8.2.2: 400, 416, 505), byte for byte; responses and unanswerable
//! requests dropped and counted.

mod reg_common;

use reg_common::*;

const TAG: &str = "23553cbe9637a89d"; // the first 8 bytes of set 1's RAND, hex

fn head(method_line: &str, cseq: &str) -> String {
    format!(
        "{method_line}\r\nVia: SIP/2.0/UDP 10.0.0.9:5555;branch=z9hG4bKbad\r\nMax-Forwards: 70\r\nFrom: <sip:x@example.com>;tag=f1\r\nTo: <sip:y@example.com>\r\nCall-ID: bad-1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn expected(status: &str, cseq: &str) -> String {
    format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 10.0.0.9:5555;branch=z9hG4bKbad\r\nFrom: <sip:x@example.com>;tag=f1\r\nTo: <sip:y@example.com>;tag={TAG}\r\nCall-ID: bad-1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn malformed_requests_get_their_status_and_reason() {
    let mut t = Testbed::new();
    let flow = t.ue_flow("10.0.0.9".parse().unwrap(), 5555, 5060);
    for (line, cseq, status) in [
        // RFC 4475 3.1.2.17: CSeq method differs from the request method.
        (
            "OPTIONS sip:y@example.com SIP/2.0",
            "1 INVITE",
            "400 Bad Request: CSeq method does not match the request method",
        ),
        // RFC 3261 8.2.2.1.
        (
            "OPTIONS http://example.com/y SIP/2.0",
            "1 OPTIONS",
            "416 Unsupported URI Scheme: unsupported URI scheme",
        ),
        // RFC 3261 8.2.2 (answered from the raw header lines: the parser stops at the version).
        (
            "OPTIONS sip:y@example.com SIP/7.0",
            "1 OPTIONS",
            "505 Version Not Supported: unsupported SIP version",
        ),
    ] {
        let out = t.sip(flow, None, &head(line, cseq));
        assert_eq!(out.len(), 1, "{line}: {out:?}");
        let (f, r) = sent(&out[0]);
        assert_eq!(f, flow);
        assert_eq!(r, expected(status, cseq));
    }
    // A bad Max-Forwards on a REGISTER (RFC 3261 20.22).
    let bad_mf = head("REGISTER sip:example.com SIP/2.0", "1 REGISTER")
        .replace("Max-Forwards: 70", "Max-Forwards: lots");
    let out = t.sip(flow, None, &bad_mf);
    assert_eq!(
        sent(&out[0]).1,
        expected(
            "400 Bad Request: malformed Max-Forwards header",
            "1 REGISTER"
        )
    );
    assert_eq!(t.core.stats().malformed_requests, 4);
    assert_eq!(t.core.transactions(), 0);
}

#[test]
fn unanswerable_requests_and_malformed_responses_are_dropped_and_counted() {
    let mut t = Testbed::new();
    let flow = t.ue_flow("10.0.0.9".parse().unwrap(), 5555, 5060);
    // No Call-ID: nothing to build a response from (RFC 3261 8.2.6.2).
    let no_call_id =
        head("OPTIONS sip:y@example.com SIP/2.0", "1 OPTIONS").replace("Call-ID: bad-1\r\n", "");
    assert!(t.sip(flow, None, &no_call_id).is_empty());
    // An ACK is never answered (RFC 3261 17).
    let ack = head("ACK sip:y@example.com SIP/2.0", "1 INVITE");
    assert!(t.sip(flow, None, &ack).is_empty());
    // A response without CSeq.
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:6100;branch=z9hG4bKx\r\nFrom: <sip:x@example.com>;tag=1\r\nTo: <sip:y@example.com>;tag=2\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n";
    assert!(t.sip(flow, Some(4097), resp).is_empty());
    let s = t.core.stats();
    assert_eq!(
        (
            s.malformed_requests,
            s.malformed_requests_unanswered,
            s.malformed_responses
        ),
        (2, 2, 1)
    );
}
