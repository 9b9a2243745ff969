//! Real IMS messages (Boghe, China Mobile VoLTE, Open IMS Core): parsing, the typed views a
//! P-CSCF uses, building responses from them, and stream framing at every split point.

use std::net::Ipv6Addr;

use akagate_slowpath::sip::builder::ack_for_non2xx;
use akagate_slowpath::sip::{
    next_frame, response_to, Frame, FrameLimits, HeaderKind, Host, Message, MessageBuilder,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/sip/real/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const REGISTER_BOGHE: &str = "01_register_initial_security_client_boghe_openims";
const REGISTER_CMCC: &str = "02_register_initial_security_client_chinamobile_volte_ipv6_compact";
const OK_OPENIMS: &str = "05_200ok_register_path_service_route_pau_openims";
const SUBSCRIBE: &str = "06_subscribe_reg_event_boghe_agilent";

#[test]
fn boghe_register() {
    let raw = fixture(REGISTER_BOGHE);
    let m = Message::parse(&raw).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some("REGISTER"));
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.port, Some(63373));
    assert_eq!(via.branch(), Some("z9hG4bK-332948456"));
    assert!(via.has_rport() && via.rport().is_none());
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.expires(), Some(600000));
    let tags: Vec<_> = c.feature_tags().map(|p| p.name).collect();
    assert_eq!(
        tags,
        vec![
            "+g.oma.sip-im",
            "+g.3gpp.smsip",
            "+g.oma.sip-im.large-message",
            "+g.3gpp.icsi-ref",
            "+g.3gpp.cs-voice"
        ]
    );
    assert_eq!(
        c.addr().unwrap().params.value("language"),
        Some("\"en,fr\"")
    );
    assert!(m.has_option_tag(HeaderKind::Require, "sec-agree"));
    assert!(m.has_option_tag(HeaderKind::ProxyRequire, "sec-agree"));
    assert!(m.has_option_tag(HeaderKind::Supported, "path"));
    assert!(m
        .header(HeaderKind::SecurityClient)
        .unwrap()
        .contains("spi-c=51018934"));
    assert!(m
        .header(HeaderKind::Authorization)
        .unwrap()
        .starts_with("Digest "));
    assert_eq!(m.cseq().unwrap().seq, 1835);
}

#[test]
fn china_mobile_compact_ipv6_register() {
    let raw = fixture(REGISTER_CMCC);
    let m = Message::parse(&raw).unwrap();
    m.validate().unwrap();
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, "TCP");
    let v6: Ipv6Addr = "2409:8800:8a03:3f8f:ab28:5799:cd69:d1e8".parse().unwrap();
    assert_eq!(via.host, Host::Ipv6(v6));
    assert_eq!(via.port, Some(8904));
    assert_eq!(
        m.call_id().unwrap(),
        "1769466687_2327919096@2409:8800:8a03:3f8f:ab28:5799:cd69:d1e8"
    );
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(
        c.sip_instance().unwrap(),
        "<urn:gsma:imei:86717902-002037-0>"
    );
    assert_eq!(c.addr().unwrap().uri.host, Some(Host::Ipv6(v6)));
    assert_eq!(m.content_length(), Some(0));
    assert_eq!(m.expires(), Ok(Some(600000)));
    let supported: Vec<_> = m.supported().map(|t| t.unwrap()).collect();
    assert_eq!(supported, vec!["path", "sec-agree"]);
    assert_eq!(m.list_values(HeaderKind::SecurityClient).count(), 6);
    assert_eq!(m.from_header().unwrap().tag(), Some("1769466696"));
}

#[test]
fn openims_200_ok_register() {
    let raw = fixture(OK_OPENIMS);
    let m = Message::parse(&raw).unwrap();
    m.validate().unwrap();
    assert_eq!(m.status_code(), Some(200));
    assert_eq!(m.reason(), Some("OK - SAR succesful and registrar saved"));
    let via = m.top_via().unwrap();
    assert_eq!(via.received(), Some("10.19.3.201".parse().unwrap()));
    assert_eq!(via.rport(), Some(46268));
    let expires: Vec<_> = m.contacts().map(|c| c.unwrap().expires()).collect();
    assert_eq!(expires, vec![Some(1593), Some(1700)]);
    let path = m.paths().next().unwrap().unwrap();
    assert_eq!(path.uri.user, Some("term"));
    assert_eq!(path.uri.port, Some(4060));
    assert!(path.uri.params.contains("lr"));
    let sr = m.service_routes().next().unwrap().unwrap();
    assert_eq!(sr.uri.host, Some(Host::Name("scscf.open-ims.test")));
    let pau = m
        .name_addrs(HeaderKind::PAssociatedUri)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(pau.uri.user, Some("1111111111"));
    assert_eq!(
        m.to_header().unwrap().tag(),
        Some("80332102165c3c2994562ca45e4f4401-b009")
    );
}

#[test]
fn boghe_subscribe_over_tcp_with_sigcomp_params() {
    let raw = fixture(SUBSCRIBE);
    let m = Message::parse(&raw).unwrap();
    m.validate().unwrap();
    let via = m.top_via().unwrap();
    assert_eq!(via.params.value("comp"), Some("sigcomp"));
    assert_eq!(
        via.params.value("sigcomp-id"),
        Some("\"urn:uuid:41147e2b-d2b9-47c1-a698-c732f6f036f4\"")
    );
    assert_eq!(m.header(HeaderKind::Event), Some("reg"));
    assert_eq!(m.list_values(HeaderKind::AllowEvents).count(), 5);
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.addr().unwrap().uri.params.value("transport"), Some("tcp"));
}

#[test]
fn response_to_register_is_byte_exact() {
    let raw = fixture(REGISTER_BOGHE);
    let req = Message::parse(&raw).unwrap();
    let resp = response_to(&req, 401, "Unauthorized", Some("abc"))
        .unwrap()
        .header(
            "WWW-Authenticate",
            "Digest realm=\"open-ims.test\", nonce=\"x\"",
        )
        .build();
    let expected = "SIP/2.0 401 Unauthorized\r\n\
        Via: SIP/2.0/UDP 192.168.200.100:63373;branch=z9hG4bK-332948456;rport\r\n\
        From: <sip:alice@open-ims.test>;tag=332925023\r\n\
        To: <sip:alice@open-ims.test>;tag=abc\r\n\
        Call-ID: c1739c45-b8ca-ec86-6371-c62cdfbebdeb\r\n\
        CSeq: 1835 REGISTER\r\n\
        WWW-Authenticate: Digest realm=\"open-ims.test\", nonce=\"x\"\r\n\
        Content-Length: 0\r\n\r\n";
    assert_eq!(String::from_utf8(resp.clone()).unwrap(), expected);
    let parsed = Message::parse(&resp).unwrap();
    parsed.validate().unwrap();
    // 100 Trying never gets a To tag (RFC 3261 8.2.6.2).
    let trying = response_to(&req, 100, "Trying", Some("abc"))
        .unwrap()
        .build();
    let t = Message::parse(&trying).unwrap();
    assert_eq!(t.to_header().unwrap().tag(), None);
}

#[test]
fn response_copies_every_via_in_order() {
    let raw = fixture(REGISTER_CMCC);
    let mut two_vias = Vec::new();
    let text = std::str::from_utf8(&raw).unwrap();
    let (first, rest) = text.split_once("\r\n").unwrap();
    two_vias.extend_from_slice(first.as_bytes());
    two_vias.extend_from_slice(b"\r\nVia: SIP/2.0/TCP pcscf.example.net;branch=z9hG4bKp1\r\n");
    two_vias.extend_from_slice(rest.as_bytes());
    let req = Message::parse(&two_vias).unwrap();
    let resp = response_to(&req, 200, "OK", Some("t1")).unwrap().build();
    let m = Message::parse(&resp).unwrap();
    let vias: Vec<_> = m.vias().map(|v| v.unwrap().sent_by).collect();
    assert_eq!(
        vias,
        vec![
            "pcscf.example.net",
            "[2409:8800:8a03:3f8f:ab28:5799:cd69:d1e8]:8904"
        ]
    );
    assert_eq!(m.to_header().unwrap().tag(), Some("t1"));
}

#[test]
fn ack_for_non_2xx_follows_17_1_1_3() {
    let invite = MessageBuilder::request("INVITE", "sip:bob@example.com")
        .header("Via", "SIP/2.0/UDP pc.example.net;branch=z9hG4bKinv1")
        .header("Via", "SIP/2.0/UDP ue.example.net;branch=z9hG4bKue")
        .header("Route", "<sip:scscf.example.net;lr>")
        .header("Max-Forwards", "69")
        .header("From", "<sip:alice@example.com>;tag=a1")
        .header("To", "<sip:bob@example.com>")
        .header("Call-ID", "c1@example.net")
        .header("CSeq", "7 INVITE")
        .build();
    let inv = Message::parse(&invite).unwrap();
    let resp = response_to(&inv, 486, "Busy Here", Some("b9"))
        .unwrap()
        .build();
    let ack = ack_for_non2xx(&inv, &Message::parse(&resp).unwrap()).unwrap();
    let expected = "ACK sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc.example.net;branch=z9hG4bKinv1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:alice@example.com>;tag=a1\r\n\
        To: <sip:bob@example.com>;tag=b9\r\n\
        Call-ID: c1@example.net\r\n\
        CSeq: 7 ACK\r\n\
        Route: <sip:scscf.example.net;lr>\r\n\
        Content-Length: 0\r\n\r\n";
    assert_eq!(String::from_utf8(ack).unwrap(), expected);
}

#[test]
fn framer_splits_a_stream_at_every_chunk_boundary() {
    let msgs: Vec<Vec<u8>> = [REGISTER_BOGHE, REGISTER_CMCC, OK_OPENIMS, SUBSCRIBE]
        .iter()
        .map(|n| fixture(n))
        .collect();
    let mut stream = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        stream.extend_from_slice(m);
        if i == 1 {
            stream.extend_from_slice(b"\r\n\r\n"); // a keep-alive ping between messages
        }
    }
    let lim = FrameLimits::default();
    for chunk in [1usize, 7, 64, 1000, stream.len()] {
        let mut buf: Vec<u8> = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut pings = 0;
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match next_frame(&buf, &lim).unwrap() {
                    Frame::Message(n) => {
                        got.push(buf[..n].to_vec());
                        buf.drain(..n);
                    }
                    Frame::Ping(n) => {
                        pings += 1;
                        buf.drain(..n);
                    }
                    Frame::Pong(n) => {
                        buf.drain(..n);
                    }
                    Frame::NeedMore => break,
                }
            }
        }
        assert!(buf.is_empty(), "chunk {chunk}");
        assert_eq!(got, msgs, "chunk {chunk}");
        assert_eq!(pings, 1, "chunk {chunk}");
    }
}
