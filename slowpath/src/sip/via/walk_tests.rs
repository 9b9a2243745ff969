//! [`Via::parse`] (the one walk, handing over to the piecewise parse) against
//! [`Via::parse_general`]: the same Via (every field, the noted parameters included) or the
//! same error, on the fixtures' Via values, generated Vias and mutated ones.

use super::{walk::walk, Via};
use crate::sip::header_name::HeaderKind;
use crate::sip::lex::ListIter;
use crate::sip::message::Message;
use crate::sip::test_fixtures::fixture_messages;
use rand::{Rng, SeedableRng};

/// The two parses of `s` agree; the walk, where it decides, gives the general parse's Via.
/// True if the walk decided.
fn agrees(s: &str) -> bool {
    let general = Via::parse_general(s);
    assert_eq!(Via::parse(s), general, "{s:?}");
    match walk(s) {
        Some(v) => {
            assert_eq!(Ok(v), general, "walk of {s:?}");
            true
        }
        None => false,
    }
}

/// Every Via element of the fixture messages.
fn fixture_vias() -> Vec<String> {
    let mut out = Vec::new();
    for raw in fixture_messages() {
        let Ok(msg) = Message::parse(&raw) else {
            continue;
        };
        for value in msg.header_values(HeaderKind::Via) {
            out.extend(
                ListIter::new(value)
                    .filter_map(Result::ok)
                    .map(String::from),
            );
        }
    }
    out
}

#[test]
fn the_walk_is_the_general_parse_on_the_fixtures() {
    let vias = fixture_vias();
    assert!(vias.len() > 20, "{}", vias.len());
    let walked = vias.iter().filter(|v| agrees(v)).count();
    assert!(walked > 10, "{walked}");
}

/// Pieces a Via is made of, and the bytes that trip a parser (with [`PARAMS`]: see `piece`).
const PIECES: &[&str] = &[
    "SIP/2.0/",
    "SIP",
    "sip",
    "/",
    "2.0",
    " / ",
    "UDP",
    "TCP",
    "TLS",
    "tls",
    "SCTP",
    " ",
    "  ",
    "\t",
    "\r\n ",
    "192.0.2.1",
    "10.0.0.255",
    "1.2.3",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.4.",
    "host.example",
    ".host",
    "-h",
    "h-",
    "a_b",
    "[2001:db8::1]",
    "[::1]",
    ":",
    ":5060",
    ":65535",
    ":65536",
    ":0",
    ":00005060",
    ":x",
    ";;",
    ";received=::1",
    ";received=1.2.3.4.5",
    "=",
    ",",
    "\"",
    "<",
    "?",
    "@",
    "é",
    "\0",
    "ttl",
    "branch",
    "received",
    "rport",
];

/// The `i`th of [`PIECES`] then [`PARAMS`], the pieces inserted anywhere.
fn piece(i: usize) -> &'static str {
    PIECES
        .get(i)
        .copied()
        .unwrap_or_else(|| PARAMS[i - PIECES.len()])
}

/// Parameters, well formed or not.
const PARAMS: &[&str] = &[
    ";branch=z9hG4bK776asdhds",
    ";branch",
    ";BRANCH=z9hG4bKa",
    ";Branch=a@b",
    ";branch=",
    ";rport",
    ";rport=5060",
    ";RPORT=65536",
    ";rport=x",
    ";received=10.0.0.1",
    ";received=[::1]",
    ";Received=1.2.3",
    ";received",
    ";ttl",
    ";ttl=255",
    ";TTL=256",
    ";maddr=224.2.0.1",
    ";x",
    ";x=y",
    ";x=\"q;,\"",
    ";x=a%20b",
    ";x=~",
    ";",
    " ;x",
    ";x ",
];

#[test]
fn the_walk_is_the_general_parse_on_generated_vias() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(24);
    let mut walked = 0;
    let mut accepted = 0;
    for _ in 0..300_000 {
        let mut s = String::new();
        // Mostly the usual shape, then pieces in any order.
        if rng.gen_bool(0.8) {
            s.push_str(if rng.gen_bool(0.85) {
                "SIP/2.0/"
            } else {
                ["SIP / 2.0 /", "SIP/2.0", "sip/2.0/", "SIP/2.0 /"][rng.gen_range(0..4)]
            });
            s.push_str(["UDP", "TCP", "TLS", "tcp", "X-1", ""][rng.gen_range(0..6)]);
            s.push_str(if rng.gen_bool(0.95) { " " } else { "\t" });
            s.push_str(
                [
                    "192.0.2.1",
                    "10.1.2.3",
                    "pcscf.ims.example",
                    "h",
                    "1.2.3",
                    "[2001:db8::1]",
                ][rng.gen_range(0..6)],
            );
            if rng.gen_bool(0.5) {
                s.push_str([":5060", ":5061", ":65536", ":", ":08"][rng.gen_range(0..5)]);
            }
            for _ in 0..rng.gen_range(0..5) {
                s.push_str(PARAMS[rng.gen_range(0..PARAMS.len())]);
            }
        }
        for _ in 0..rng.gen_range(0..3) * usize::from(rng.gen_bool(0.4)) {
            let piece = piece(rng.gen_range(0..PIECES.len() + PARAMS.len()));
            let at = rng.gen_range(0..=s.len());
            if s.is_char_boundary(at) {
                s.insert_str(at, piece);
            }
        }
        walked += usize::from(agrees(&s));
        accepted += usize::from(Via::parse(&s).is_ok());
    }
    assert!(walked > 20_000, "{walked}");
    assert!(accepted > walked, "{accepted} {walked}");
}

#[test]
fn the_walk_is_the_general_parse_on_mutated_vias() {
    let vias = fixture_vias();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2424);
    const BYTES: &[u8] = b" \t\r\n;=:,./[]\"<@?0159aZ_-~\x00\x7f";
    let mut walked = 0;
    for _ in 0..200_000 {
        let mut b = vias[rng.gen_range(0..vias.len())].clone().into_bytes();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..=b.len());
            let c = BYTES[rng.gen_range(0..BYTES.len())];
            match rng.gen_range(0..3) {
                0 if at < b.len() => b[at] = c,
                1 => b.insert(at, c),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => {}
            }
        }
        if let Ok(s) = std::str::from_utf8(&b) {
            walked += usize::from(agrees(s));
        }
    }
    assert!(walked > 20_000, "{walked}");
}

#[test]
fn the_top_via_is_the_first_element_of_the_via_list() {
    // The fixtures, and each with its first Via line replaced by forms the walk reads whole
    // or not (a second element, a trailing comma, LWS, a bad value).
    let mut checked = 0;
    for raw in fixture_messages() {
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut variants = vec![text.clone()];
        if let Some(at) = text.find("\r\nVia: ").or_else(|| text.find("\r\nv: ")) {
            let from = at + text[at..].find(':').unwrap() + 2;
            for line in [
                "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1;rport",
                "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1,SIP/2.0/UDP h",
                "SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1,",
                "SIP/2.0/TCP 10.0.0.1 ;branch=z9hG4bK1",
                "SIP/2.0/TCP 10.0.0.1;branch",
                "SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1 , SIP/2.0/UDP h;branch",
                "SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1, \"",
                "",
            ] {
                let mut v = text.clone();
                v.insert_str(from, &format!("{line}, "));
                variants.push(v);
                let mut v = text.clone();
                let end = from + text[from..].find("\r\n").unwrap();
                v.replace_range(from..end, line);
                variants.push(v);
            }
        }
        for v in variants {
            let Ok(m) = Message::parse(v.as_bytes()) else {
                continue;
            };
            let listed = m
                .vias()
                .next()
                .unwrap_or(Err(crate::sip::ParseError::MissingHeader("Via")));
            assert_eq!(m.top_via(), listed, "{v:?}");
            // The elements after it check as the list split's `skip(1)` checks them.
            if let Ok(top) = m.top_via() {
                assert_eq!(
                    m.check_vias_after(&top),
                    m.check_vias_after_listed(),
                    "{v:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}
