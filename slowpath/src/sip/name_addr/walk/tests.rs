//! The walk against the two-step parse it stands in for (the list split, then
//! [`NameAddr::parse`] / [`Contact::parse`] of the first element): on every header value of
//! the fixture messages, on generated name-addrs and on mutated real ones.

use super::super::{Contact, NameAddr};
use crate::sip::lex::ListIter;
use crate::sip::message::Message;
use crate::sip::test_fixtures::fixture_messages as fixtures;
use crate::sip::HeaderKind;
use rand::{Rng, SeedableRng};

/// Compares the walk with the two-step parse on `v`; true if the walk decided.
fn agrees(v: &str) -> bool {
    let Some((addr, rest)) = NameAddr::parse_list_head(v) else {
        return false;
    };
    let mut it = ListIter::new(v);
    let first = it.next().expect("a list has a first element");
    let first = first.unwrap_or_else(|e| panic!("{v:?}: the split failed ({e:?})"));
    assert_eq!(NameAddr::parse(first), Ok(addr), "{v:?}");
    assert_eq!(Contact::parse(first), Ok(Contact::Addr(addr)), "{v:?}");
    // What follows is what the split goes on with, element by element.
    let after: Vec<_> = rest.into_iter().flat_map(ListIter::new).collect();
    assert_eq!(after, it.collect::<Vec<_>>(), "{v:?}");
    true
}

/// Every header value of every fixture message that parses, and every message's own From,
/// To and Contact read through the cache against the two-step reads.
#[test]
fn the_walk_is_the_two_step_parse_on_the_fixtures() {
    let mut decided = 0;
    for raw in fixtures() {
        let Ok(m) = Message::parse(&raw) else {
            continue;
        };
        for h in m.headers() {
            decided += usize::from(agrees(h.value));
        }
        // The cached reads and the Contact list after the first, against the old reads.
        for kind in [HeaderKind::From, HeaderKind::To] {
            let two_step = two_step_single(&m, kind);
            let got = match kind {
                HeaderKind::From => m.from_header(),
                _ => m.to_header(),
            };
            assert_eq!(got, two_step, "{kind:?}");
        }
        assert_eq!(m.first_contact(), m.contacts().next());
        assert_eq!(
            m.contact_values_after_first().collect::<Vec<_>>(),
            m.list_values(HeaderKind::Contact)
                .skip(1)
                .collect::<Vec<_>>()
        );
    }
    assert!(decided >= 10, "{decided}");
}

/// The From/To read before the walk (the reference for the cached read).
fn two_step_single<'a>(
    m: &Message<'a>,
    kind: HeaderKind,
) -> Result<NameAddr<'a>, crate::sip::ParseError> {
    crate::sip::typed::single_name_addr_two_step(m.required(kind)?, kind.label())
}

const PIECES: &[&str] = &[
    "\"",
    "\\",
    "<",
    ">",
    ",",
    ";",
    "=",
    " ",
    "\t",
    "\r\n ",
    "sip:",
    "sips:",
    "tel:",
    "x:",
    "u@h",
    "@",
    "[::1]",
    "[2409:8800::1]",
    ":5060",
    ":",
    "tag",
    "expires",
    "+sip.instance",
    "*",
    "?",
    "%41",
    "%4",
    "a",
    "Bob",
    "é",
    "1.2.3.4",
    "ims.example.com",
    ".",
    "-",
    "lr",
    "\"q, r\"",
    "<sip:u@h>",
    ";tag=1",
    ";a",
    "=\"v\"",
    "\0",
];

const DISPLAY: &[&str] = &["", "Bob ", "\"d, x\" ", "\"a\\\"b\"", "a b\t", " ", "*"];
const URIS: &[&str] = &[
    "sip:u@h",
    "sip:u@[::1]:5060",
    "tel:+1;p=x",
    "sips:h;lr",
    "sip:u@h?x=y",
    "x:y",
    "sip:%41@h",
    "sip:u@h:99999",
    "sip:u:pw@10.0.0.1:5064;transport=tcp",
    "",
];
const PARAMS: &[&str] = &[
    ";tag=1",
    " ; a = b",
    ";lr",
    ";q=\"x,y\"",
    ";a=",
    ";;",
    ";x=<y>",
    " ,",
    ", <sip:b>",
    ";e=\"open",
    "\r\n ;f",
    ";+g.3gpp.icsi-ref=\"urn%3Aurn-7\"",
    ";v=a>b",
    " x",
];

fn pick(rng: &mut rand::rngs::StdRng, from: &[&'static str]) -> &'static str {
    from[rng.gen_range(0..from.len())]
}

/// Generated elements and lists built of the pieces either parser cares about.
#[test]
fn the_walk_is_the_two_step_parse_on_generated_values() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    let mut decided = 0;
    for _ in 0..300_000 {
        // An address built of parts either parser cares about, then a few pieces anywhere.
        let mut v = String::new();
        v.push_str(pick(&mut rng, DISPLAY));
        v.push('<');
        v.push_str(pick(&mut rng, URIS));
        v.push('>');
        for _ in 0..rng.gen_range(0..4) {
            v.push_str(pick(&mut rng, PARAMS));
        }
        for _ in 0..rng.gen_range(0..3) {
            let piece = pick(&mut rng, PIECES);
            let mut at = rng.gen_range(0..=v.len());
            while !v.is_char_boundary(at) {
                at -= 1;
            }
            v.insert_str(at, piece);
        }
        decided += usize::from(agrees(&v));
    }
    assert!(decided > 10_000, "{decided}");
}

/// Real From, To and Contact values with bytes inserted, removed or replaced.
#[test]
fn the_walk_is_the_two_step_parse_on_mutated_real_values() {
    let seeds = [
        "<sip:460027953821652@[2409:8800:8a03:3f8f:ab28:5799:cd69:d1e8]:8904>;+sip.instance=\"<urn:gsma:imei:86717902-002037-0>\";+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\";+g.3gpp.smsip;video",
        "<sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>;tag=ab12cd",
        "<sip:001010000000001@10.0.0.1:5064>;expires=600000;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"",
        "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8",
        "caller<sip:caller@example.com>;tag=323, <sip:b@c>",
    ];
    let alphabet = b" \t\r\n\"\\<>,;=:@[]?%*a0.\x80";
    let mut rng = rand::rngs::StdRng::seed_from_u64(2022);
    let mut decided = 0;
    for _ in 0..200_000 {
        let mut v = seeds[rng.gen_range(0..seeds.len())].as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..=v.len());
            let c = alphabet[rng.gen_range(0..alphabet.len())];
            match rng.gen_range(0..3) {
                0 => v.insert(at, c),
                1 if at < v.len() => {
                    v.remove(at);
                }
                _ if at < v.len() => v[at] = c,
                _ => {}
            }
        }
        if let Ok(v) = std::str::from_utf8(&v) {
            decided += usize::from(agrees(v));
        }
    }
    assert!(decided > 10_000, "{decided}");
}

/// A message with `from` and `to` as its From and To values (the rest a minimal REGISTER).
fn with_from_to(from: &str, to: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: {from}\r\n\
         To: {to}\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// To read after From (which may lend it its URI when the text is the same) and From after
/// To: each is the two-step parse of its own value, on pairs of generated values with the
/// same URI, different ones, and URIs one or both parsers refuse.
#[test]
fn a_uri_lent_by_the_other_header_is_the_uri_parsed_again() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(27);
    let mut lent = 0;
    for _ in 0..100_000 {
        let uri = pick(&mut rng, URIS);
        let other = if rng.gen_bool(0.7) {
            uri
        } else {
            pick(&mut rng, URIS)
        };
        let mut values = [uri, other].map(|u| {
            let mut v = String::new();
            v.push_str(pick(&mut rng, DISPLAY));
            if rng.gen_bool(0.9) {
                v.push('<');
                v.push_str(u);
                v.push('>');
            } else {
                v.push_str(u);
            }
            for _ in 0..rng.gen_range(0..3) {
                v.push_str(pick(&mut rng, PARAMS));
            }
            v
        });
        if rng.gen_bool(0.2) {
            let piece = pick(&mut rng, PIECES);
            let v = &mut values[rng.gen_range(0..2)];
            let mut at = rng.gen_range(0..=v.len());
            while !v.is_char_boundary(at) {
                at -= 1;
            }
            v.insert_str(at, piece);
        }
        let raw = with_from_to(&values[0], &values[1]);
        let Ok(m) = Message::parse(&raw) else {
            continue;
        };
        let (from_first, to_second) = (m.from_header(), m.to_header());
        assert_eq!(
            from_first,
            two_step_single(&m, HeaderKind::From),
            "{values:?}"
        );
        assert_eq!(to_second, two_step_single(&m, HeaderKind::To), "{values:?}");
        lent += usize::from(
            matches!((&from_first, &to_second), (Ok(f), Ok(t)) if f.uri.raw == t.uri.raw),
        );
        let m = Message::parse(&raw).expect("parsed above");
        let (to_first, from_second) = (m.to_header(), m.from_header());
        assert_eq!(to_first, to_second, "{values:?}");
        assert_eq!(from_second, from_first, "{values:?}");
    }
    assert!(lent > 10_000, "{lent}");
}
