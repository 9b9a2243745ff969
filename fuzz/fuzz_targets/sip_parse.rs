//! Fuzz target: the SIP parser, every typed accessor, validation, the stream framer and the
//! workers' shard scan (`akagate_proto::shard::scan`: every SIP message a worker or the core
//! link hands on with slowpath shards) must never panic on any input (seed corpus:
//! slowpath/tests/fixtures/sip/). The parse (the head's line ends from one vector scan) must
//! give what the general parse (`memmem`, `memchr2` a line) gives: the same message or the
//! same error. Each Via element, and the input itself read as one, must parse by the one walk
//! (`Via::parse`) as it does piece by piece (`Via::parse_general`); the top Via as the first
//! element of the Via list. The 16-byte class runs (`akagate_proto::simd`: token, host name,
//! URI user part) must end where their byte loops end, from every start; so must the
//! Request-URI's control/SP/DEL check (`swar::has_ctl_space_or_del`). An option-tag list
//! read in one walk (`lex::is_token_list`) must be what the list split and a token check of
//! each element say, on every header value and on the input; a lookup by kind through the
//! parse's index (`header_values`, `single`) what a filter over every line gives. To read
//! after From (lent From's URI where the text is the same) must be To read first, and From
//! read after To must be From read first.
#![no_main]

use akagate_slowpath::sip::transaction::{ClientKey, ServerKey};
use akagate_slowpath::sip::{lex, next_frame, FrameLimits, HeaderKind, Message, Via};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = next_frame(data, &FrameLimits::default());
    let _ = akagate_proto::shard::scan(data);
    for from in 0..data.len().min(48) + 1 {
        use akagate_proto::simd;
        assert_eq!(
            simd::token_end(data, from),
            simd::token_end_portable(data, from)
        );
        assert_eq!(
            simd::host_name_run(data, from),
            simd::host_name_run_portable(data, from)
        );
        let rest = data.get(from..).unwrap_or_default();
        assert_eq!(simd::user_stop(rest), simd::user_stop_portable(rest));
    }
    assert_eq!(
        akagate_proto::swar::has_ctl_space_or_del(data),
        akagate_proto::swar::has_ctl_space_or_del_portable(data)
    );
    let token_list_is_the_split = |v: &str| {
        assert_eq!(
            lex::is_token_list(v),
            lex::ListIter::new(v).all(|e| e.is_ok_and(lex::is_token))
        );
    };
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(Via::parse(s), Via::parse_general(s));
        token_list_is_the_split(s);
    }
    let parsed = Message::parse(data);
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", Message::parse_general(data))
    );
    let Ok(m) = parsed else {
        return;
    };
    let _ = m.validate();
    // `validate` reads From, then To (which takes From's URI where the text is the same):
    // read in the other order from a second parse, each unlent read is the other's reference.
    let m2 = Message::parse(data).expect("parsed above");
    let to_unlent = m2.to_header();
    assert_eq!(m2.from_header(), m.from_header());
    assert_eq!(m.to_header(), to_unlent);
    for h in m.headers() {
        token_list_is_the_split(h.value);
        let plain: Vec<&str> = m
            .headers()
            .iter()
            .filter(|o| o.kind == h.kind)
            .map(|o| o.value)
            .collect();
        assert_eq!(m.header_values(h.kind).collect::<Vec<_>>(), plain);
        assert_eq!(m.single(h.kind).is_err(), plain.len() > 1);
        assert_eq!(
            m.single(h.kind).ok().flatten(),
            plain.first().copied().filter(|_| plain.len() == 1)
        );
    }
    for e in m.list_values(HeaderKind::Via).flatten() {
        assert_eq!(Via::parse(e), Via::parse_general(e));
    }
    assert_eq!(
        m.top_via(),
        m.vias()
            .next()
            .unwrap_or(Err(akagate_slowpath::sip::ParseError::MissingHeader("Via")))
    );
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport());
    }
    for a in [m.from_header(), m.to_header()].into_iter().flatten() {
        let _ = (a.tag(), a.display_name_unquoted(), a.uri.user_decoded());
    }
    for c in m.contacts().flatten() {
        let _ = (c.expires(), c.sip_instance(), c.feature_tags().count());
    }
    for a in m.name_addrs(HeaderKind::Route).flatten() {
        let _ = a.uri.params.iter().count();
    }
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.expires());
    let _ = (ServerKey::for_request(&m), ClientKey::for_message(&m));
});
