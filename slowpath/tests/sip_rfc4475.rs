//! RFC 4475 torture messages: every valid one parses with the right fields, every invalid one
//! is rejected with the status RFC 4475 asks for.

use std::borrow::Cow;

use akagate_slowpath::sip::transaction::ServerKey;
use akagate_slowpath::sip::{
    next_frame, Contact, Frame, FrameLimits, HeaderKind, Host, Message, ParseError, Scheme, Uri,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/sip/rfc4475/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn valid(name: &str) -> Vec<u8> {
    let raw = fixture(name);
    let m = Message::parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    m.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    raw
}

/// Parses and validates; returns the first error.
fn reject(name: &str) -> ParseError {
    let raw = fixture(name);
    let err = match Message::parse(&raw) {
        Err(e) => e,
        Ok(m) => m.validate().expect_err(name),
    };
    assert!(!err.reason_phrase().is_empty());
    err
}

#[test]
fn wsinv_short_tortuous_invite() {
    let raw = valid("3.1.1.1_wsinv");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.method(), Some("INVITE"));
    let ruri = m.parsed_request_uri().unwrap();
    assert_eq!(ruri.host, Some(Host::Name("chair-dnrc.example.com")));
    assert!(ruri.params.contains("unknownparam"));
    assert_eq!(m.to_header().unwrap().tag(), Some("1918181833n"));
    let from = m.from_header().unwrap();
    assert_eq!(from.display_name_unquoted().unwrap(), "J Rosenberg \\\"");
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, "INVITE"));
    assert_eq!(m.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    let summary: Vec<_> = vias
        .iter()
        .map(|v| (v.transport, v.sent_by, v.branch().unwrap()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("UDP", "192.0.2.2", "390skdjuw"),
            ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
            ("UDP", "192.168.255.111", "z9hG4bK30239"),
        ]
    );
    let contacts: Vec<_> = m.contacts().map(|c| c.unwrap()).collect();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].q(), Some("0.33"));
    let addr = contacts[0].addr().unwrap();
    assert_eq!(addr.display_name_unquoted().unwrap(), "Quoted string \"\"");
    assert_eq!(addr.params.value("newparam"), Some("newvalue"));
    assert!(addr.params.contains("secondparam"));
    let route = m.routes().next().unwrap().unwrap();
    assert!(route.uri.params.contains("lr"));
    assert_eq!(route.uri.params.value("unknownwith"), Some("value"));
    assert_eq!(m.header(HeaderKind::Subject), Some(""));
    assert_eq!(
        m.header_by_name("newfangledheader"),
        Some("newfangled value\r\n continued newfangled value")
    );
    assert_eq!(
        m.header_by_name("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    assert_eq!(m.body().len(), 150);
    assert!(m.body().starts_with(b"v=0\r\n"));
}

#[test]
fn intmeth_wide_range_of_characters() {
    let raw = valid("3.1.1.2_intmeth");
    let m = Message::parse(&raw).unwrap();
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(method));
    assert_eq!(m.cseq().unwrap().method, method);
    let ruri = m.parsed_request_uri().unwrap();
    assert_eq!(
        ruri.user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password,
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(ruri.host, Some(Host::Name("example.com")));
    let to = m.to_header().unwrap();
    assert_eq!(
        to.display_name_unquoted().unwrap(),
        "BEL:\u{7} NUL:\u{0} DEL:\u{7f}"
    );
    let from = m.from_header().unwrap();
    assert_eq!(from.display_name, Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.params
            .iter()
            .next()
            .unwrap()
            .unwrap()
            .unquoted()
            .unwrap(),
        "работающий"
    );
    assert_eq!(
        m.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(
        m.header_by_name("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
    assert_eq!(m.max_forwards().unwrap(), Some(255));
}

#[test]
fn esc01_percent_escapes() {
    let raw = valid("3.1.1.3_esc01");
    let m = Message::parse(&raw).unwrap();
    let ruri = m.parsed_request_uri().unwrap();
    assert_eq!(&*ruri.user_decoded().unwrap(), b"sips:user@example.com");
    assert_eq!(
        &*m.to_header().unwrap().uri.user_decoded().unwrap(),
        b"user"
    );
    assert_eq!(
        &*m.from_header().unwrap().uri.user_decoded().unwrap(),
        b"I have spaces"
    );
    let c = m.contacts().next().unwrap().unwrap();
    let uri = c.addr().unwrap().uri;
    assert_eq!(&*uri.user_decoded().unwrap(), b"caller");
    let names: Vec<_> = uri.params.iter().map(|p| p.unwrap().name).collect();
    assert_eq!(names, vec!["%6C%72", "n%61me"]);
    assert_eq!(m.header(HeaderKind::ContentType), Some("application/sdp"));
}

#[test]
fn escnull_escaped_nulls() {
    let raw = valid("3.1.1.4_escnull");
    let m = Message::parse(&raw).unwrap();
    let users: Vec<Vec<u8>> = m
        .contacts()
        .map(|c| {
            c.unwrap()
                .addr()
                .unwrap()
                .uri
                .user_decoded()
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(users, vec![vec![0u8], vec![0, 0]]);
    assert_eq!(
        &*m.to_header().unwrap().uri.user_decoded().unwrap(),
        b"null-\0-null"
    );
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn esc02_percent_not_an_escape() {
    let raw = valid("3.1.1.5_esc02");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.method(), Some("RE%47IST%45R"));
    assert_eq!(m.to_header().unwrap().display_name, Some("\"%Z%45\""));
    assert_eq!(m.contacts().count(), 2);
}

#[test]
fn lwsdisp_no_space_before_laquot() {
    let raw = valid("3.1.1.6_lwsdisp");
    let m = Message::parse(&raw).unwrap();
    let from = m.from_header().unwrap();
    assert_eq!(from.display_name, Some("caller"));
    assert_eq!(from.uri.user, Some("caller"));
}

#[test]
fn longreq_long_values() {
    let raw = valid("3.1.1.7_longreq");
    let m = Message::parse(&raw).unwrap();
    assert!(m.headers().len() > 32, "exercises the spilled header index");
    assert_eq!(m.vias().count(), 34);
    assert!(m.vias().all(|v| v.is_ok()));
    assert_eq!(m.top_via().unwrap().sent_by, "sip33.example.com");
    assert!(m.from_header().unwrap().tag().unwrap().len() > 200);
    assert!(m.call_id().unwrap().len() > 360);
    assert_eq!(m.to_header().unwrap().uri.port, Some(6000));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn dblreq_extra_octets_in_datagram_are_ignored() {
    let raw = valid("3.1.1.8_dblreq");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.method(), Some("REGISTER"));
    assert_eq!(m.body(), b"");
    // On a stream the same bytes are two messages separated by a stray CRLF.
    let lim = FrameLimits::default();
    let Ok(Frame::Message(n)) = next_frame(&raw, &lim) else {
        panic!("first frame")
    };
    assert_eq!(next_frame(&raw[n..], &lim), Ok(Frame::Pong(2)));
    let rest = &raw[n + 2..];
    assert_eq!(next_frame(rest, &lim), Ok(Frame::Message(rest.len())));
    let invite = Message::parse(rest).unwrap();
    assert_eq!(invite.method(), Some("INVITE"));
    invite.validate().unwrap();
}

#[test]
fn semiuri_semicolon_in_user_part() {
    let raw = valid("3.1.1.9_semiuri");
    let m = Message::parse(&raw).unwrap();
    let ruri = m.parsed_request_uri().unwrap();
    assert_eq!(ruri.user, Some("user;par=u%40example.net"));
    assert_eq!(ruri.host, Some(Host::Name("example.com")));
    assert!(ruri.params.raw().is_empty());
    assert_eq!(m.list_values(HeaderKind::Accept).count(), 6);
}

#[test]
fn transports_varied_and_unknown() {
    let raw = valid("3.1.1.10_transports");
    let m = Message::parse(&raw).unwrap();
    let t: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t, vec!["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn mpart01_binary_multipart_body() {
    let raw = valid("3.1.1.11_mpart01");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.body().len(), m.content_length().unwrap());
    assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert!(m.body().contains(&0));
    assert!(m.header(HeaderKind::Identity).is_some());
    assert_eq!(m.top_via().unwrap().port, Some(5070));
    assert!(m.top_via().unwrap().has_rport());
}

#[test]
fn unreason_utf8_reason_phrase() {
    let raw = valid("3.1.1.12_unreason");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.status_code(), Some(200));
    assert_eq!(
        m.reason(),
        Some("= 2**3 * 5**2 но сто девяносто девять - простое")
    );
    assert_eq!(m.body().len(), 154);
}

#[test]
fn noreason_empty_reason_phrase() {
    let raw = valid("3.1.1.13_noreason");
    let m = Message::parse(&raw).unwrap();
    assert_eq!((m.status_code(), m.reason()), (Some(100), Some("")));
}

#[test]
fn invalid_messages_are_rejected_with_their_reason() {
    use ParseError::*;
    let cases: &[(&str, ParseError, u16)] = &[
        ("3.1.2.1_badinv01", BadHeader("Via"), 400),
        ("3.1.2.2_clerr", BodyTooShort, 400),
        ("3.1.2.3_ncl", BadContentLength, 400),
        ("3.1.2.4_scalar02", BadHeader("CSeq"), 400),
        ("3.1.2.5_scalarlg", BadHeader("CSeq"), 400),
        ("3.1.2.6_quotbal", BadHeader("To"), 400),
        ("3.1.2.7_ltgtruri", BadUri, 400),
        ("3.1.2.8_lwsruri", BadRequestLine, 400),
        ("3.1.2.9_lwsstart", BadRequestLine, 400),
        ("3.1.2.10_trws", BadRequestLine, 400),
        ("3.1.2.11_escruri", RequestUriHeaders, 400),
        ("3.1.2.12_baddate", BadHeader("Date"), 400),
        ("3.1.2.13_regbadct", BadHeader("Contact"), 400),
        ("3.1.2.14_badaspec", BadHeader("To"), 400),
        ("3.1.2.15_baddn", MultipleHeaders("From"), 400),
        ("3.1.2.16_badvers", UnsupportedVersion, 505),
        ("3.1.2.17_mismatch01", CSeqMethodMismatch, 400),
        ("3.1.2.18_mismatch02", CSeqMethodMismatch, 400),
        ("3.1.2.19_bigcode", BadStatusCode, 400),
        ("3.3.1_insuf", MissingHeader("From"), 400),
        ("3.3.2_unkscm", UnsupportedUriScheme, 416),
        ("3.3.3_novelsc", UnsupportedUriScheme, 416),
        ("3.3.8_multi01", MultipleHeaders("CSeq"), 400),
        ("3.3.9_mcl01", MultipleContentLength, 400),
    ];
    for &(name, expected, code) in cases {
        let err = reject(name);
        assert_eq!(err, expected, "{name}");
        assert_eq!(err.status_code(), code, "{name}");
    }
    assert_eq!(
        reject("3.3.1_insuf").reason_phrase(),
        "Bad Request: missing From header"
    );
    assert_eq!(
        reject("3.3.2_unkscm").reason_phrase(),
        "Unsupported URI Scheme: unsupported URI scheme"
    );
}

#[test]
fn scalar02_field_by_field() {
    let raw = fixture("3.1.2.4_scalar02");
    let m = Message::parse(&raw).unwrap();
    assert!(m.cseq().is_err());
    assert_eq!(m.max_forwards(), Err(ParseError::BadHeader("Max-Forwards")));
    // Overlarge delta-seconds saturate (RFC 4475 3.1.2.4 allows any sane default).
    assert_eq!(m.expires(), Ok(Some(u32::MAX)));
    assert_eq!(
        m.contacts().next().unwrap().unwrap().expires(),
        Some(u32::MAX)
    );
}

#[test]
fn semantic_cases_parse() {
    // 3.2.1: a branch that is only the magic cookie is still a valid message.
    let raw = valid("3.2.1_badbranch");
    assert_eq!(
        Message::parse(&raw).unwrap().top_via().unwrap().branch(),
        Some("z9hG4bK")
    );
    // 3.3.4: unknown schemes in To, From and Contact are accepted.
    let raw = valid("3.3.4_unksm2");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.to_header().unwrap().uri.scheme, Scheme::Other("isbn"));
    assert_eq!(m.from_header().unwrap().uri.scheme, Scheme::Other("http"));
    // 3.3.11: Max-Forwards 0 parses; answering 483 is the proxy core's job.
    let raw = valid("3.3.11_zeromf");
    assert_eq!(Message::parse(&raw).unwrap().max_forwards(), Ok(Some(0)));
    // 3.3.12: without <>, ;unknownparam is a Contact parameter.
    let raw = valid("3.3.12_cparam01");
    let m = Message::parse(&raw).unwrap();
    let c = m.contacts().next().unwrap().unwrap();
    let a = c.addr().unwrap();
    assert!(a.params.contains("unknownparam"));
    assert!(a.uri.params.raw().is_empty());
    // 3.3.13: inside <>, it is a URI parameter.
    let raw = valid("3.3.13_cparam02");
    let m = Message::parse(&raw).unwrap();
    let c = m.contacts().next().unwrap().unwrap();
    let a = c.addr().unwrap();
    assert!(a.uri.params.contains("unknownparam"));
    assert!(a.params.raw().is_empty());
    // 3.3.14: an escaped header inside a bracketed Contact URI is legal.
    let raw = valid("3.3.14_regescrt");
    let m = Message::parse(&raw).unwrap();
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(
        c.addr().unwrap().uri.headers,
        Some("Route=%3Csip:sip.example.com%3E")
    );
    assert!(matches!(c, Contact::Addr(_)));
}

#[test]
fn inv2543_old_syntax_uses_2543_matching() {
    let raw = valid("3.4.1_inv2543");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.max_forwards(), Ok(None));
    assert_eq!(m.content_length(), None);
    assert!(m.body().starts_with(b"v=0"));
    assert!(matches!(
        ServerKey::for_request(&m).unwrap(),
        ServerKey::Rfc2543 { .. }
    ));
    let rr = m.record_routes().next().unwrap().unwrap();
    assert_eq!(rr.uri.params.value("maddr"), Some("ss1.example.com"));
    let to: Uri<'_> = m.to_header().unwrap().uri;
    assert_eq!(to.params.raw(), "");
    // Without <>, ;user=phone belongs to the header, not the URI (RFC 3261 20.10).
    assert_eq!(m.to_header().unwrap().params.value("user"), Some("phone"));
    let _: Option<Cow<'_, str>> = m.from_header().unwrap().display_name_unquoted();
}
