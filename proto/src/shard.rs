//! Which slowpath shard handles a worker event (docs/ARCHITECTURE.md, "Slowpath shards").
//!
//! Each shard owns the subscribers whose IMPI hashes to it ([`shard_of_name`]) and the
//! transactions and dialogs its own UEs start. A worker picks the shard of each event from a
//! few header lines, with the SIP scanner both halves share ([`crate::sipscan`]):
//! a response by the shard tag in our top Via branch ([`branch_prefix`]), a request by the tag
//! in our Record-Route (or Path) URI at the top Route ([`RR_PARAM`]) or in its Request-URI (our
//! Contact), an initial request through an SA
//! by the shard that allocated its SPI, an unprotected REGISTER by its IMPI, anything else by
//! its source address. A connection event goes to every shard (each ignores flows it does not
//! know).

use std::net::IpAddr;

use crate::ipc::WorkerEvent;
use crate::sipscan::{find_crlf, split_header_line, HeaderLines};

/// Most shards a daemon runs (the tags carry two hex digits).
pub const MAX_SHARDS: usize = 64;

/// Every branch we create starts with the magic cookie (RFC 3261 8.1.1.7); a sharded core
/// follows it with `s`, two hex digits of its shard and `-`.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// The URI parameter of our Record-Route entry naming the shard that owns the dialog
/// (`<sip:pcscf:port;lr;agshard=01>`); RFC 3261 16.6 step 4 lets a proxy put what it needs in
/// its own Record-Route URI, and RFC 3261 12.2.1.1 has the UE copy it into its Route.
pub const RR_PARAM: &str = "agshard";

/// Where an event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shard {
    /// One shard.
    One(usize),
    /// Every shard (connection events: the flow's owner is not known to the worker).
    All,
}

/// Picks the shard of each worker event; implemented by the daemon (it knows which shard
/// allocated an SPI and the IMPU -> IMPI map), called by every worker for every event.
pub trait EventRouter: Send + Sync {
    /// The shard `event` belongs to.
    fn route(&self, event: &WorkerEvent) -> Shard;
}

/// The shard of a name (an IMPI, or an address's text): FNV-1a of its ASCII-lower-cased
/// bytes, modulo `shards`. Stable across runs and builds, so a restart with the same number
/// of shards gives every subscriber the same shard.
pub fn shard_of_name(name: &[u8], shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// The shard of a source address without another rule (stable hash of its bytes).
pub fn shard_of_addr(ip: IpAddr, shards: usize) -> usize {
    match ip {
        IpAddr::V4(a) => shard_of_name(&a.octets(), shards),
        IpAddr::V6(a) => shard_of_name(&a.octets(), shards),
    }
}

/// The start of every branch shard `shard` creates: `z9hG4bKs<hh>-`.
pub fn branch_prefix(shard: usize) -> String {
    format!("{BRANCH_COOKIE}s{shard:02x}-")
}

/// The shard tagged in a branch made by [`branch_prefix`].
pub fn shard_of_branch(branch: &[u8]) -> Option<usize> {
    let rest = branch.strip_prefix(BRANCH_COOKIE.as_bytes())?;
    match rest {
        [b's', h, l, b'-', ..] => hex2(*h, *l),
        _ => None,
    }
}

/// The Record-Route URI parameter of shard `shard` (`;agshard=<hh>`).
pub fn rr_param(shard: usize) -> String {
    format!(";{RR_PARAM}={shard:02x}")
}

fn hex2(h: u8, l: u8) -> Option<usize> {
    let d = |c: u8| (c as char).to_digit(16).map(|d| d as usize);
    Some(d(h)? * 16 + d(l)?)
}

/// What the router reads from a SIP message: only the first line and a handful of headers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SipFacts<'a> {
    /// A response (status line), not a request.
    pub response: bool,
    /// The request's method.
    pub method: &'a [u8],
    /// The shard tagged in the top Via's branch.
    pub via_shard: Option<usize>,
    /// The shard tagged in the first Route entry.
    pub route_shard: Option<usize>,
    /// The shard tagged in the Request-URI: a request to a URI of ours that names its shard
    /// (the Contact of a SUBSCRIBE we sent, for the NOTIFYs of its dialog, RFC 6665 4.1.2.3).
    pub ruri_shard: Option<usize>,
    /// The request's Request-URI.
    pub request_uri: Option<&'a [u8]>,
    /// `username` of the (first) Authorization header: the IMPI (TS 33.203 6.1.1).
    pub username: Option<&'a [u8]>,
    /// The To header's URI (`sip:user@host`), without display name and parameters.
    pub to_uri: Option<&'a [u8]>,
    /// The From header's URI: a UE's request names its public identity there (TS 24.229
    /// 5.1.2A.1), which leads to its IMPI on a flow without SAs (no sec-agree, TLS).
    pub from_uri: Option<&'a [u8]>,
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [c, rest @ ..] = b {
        if c.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., c] = b {
        if c.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// The first element of a comma-separated header value (no quoted commas in the values this
/// looks at: Via and Route entries).
fn first_element(v: &[u8]) -> &[u8] {
    trim(v.split(|&c| c == b',').next().unwrap_or_default())
}

/// The value of parameter `name` (case-insensitive) in `v` (`;name=value`).
fn param<'a>(v: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    v.split(|&c| c == b';').skip(1).find_map(|p| {
        let mut kv = p.splitn(2, |&c| c == b'=');
        let k = trim(kv.next()?);
        k.eq_ignore_ascii_case(name)
            .then(|| trim(kv.next().unwrap_or_default()))
    })
}

/// The URI inside `<...>`, or the value up to its first `;` (RFC 3261 20.10).
fn uri_of(v: &[u8]) -> &[u8] {
    let v = trim(v);
    if let Some(open) = v.iter().position(|&c| c == b'<') {
        let rest = &v[open + 1..];
        let close = rest.iter().position(|&c| c == b'>').unwrap_or(rest.len());
        return &rest[..close];
    }
    v.split(|&c| c == b';').next().unwrap_or_default()
}

/// The shard a URI's [`RR_PARAM`] names (two hex digits).
fn shard_param(uri: &[u8]) -> Option<usize> {
    param(uri, RR_PARAM.as_bytes()).and_then(|v| match v {
        [h, l] => hex2(*h, *l),
        _ => None,
    })
}

/// `username="..."` of a Digest credentials value.
fn digest_username(v: &[u8]) -> Option<&[u8]> {
    let v = trim(v);
    let v = v
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case(b"digest"))
        .map_or(v, |_| &v[6..]);
    v.split(|&c| c == b',').find_map(|p| {
        let mut kv = p.splitn(2, |&c| c == b'=');
        let k = trim(kv.next()?);
        if !k.eq_ignore_ascii_case(b"username") {
            return None;
        }
        let val = trim(kv.next()?);
        Some(
            val.strip_prefix(b"\"")
                .and_then(|s| s.strip_suffix(b"\""))
                .unwrap_or(val),
        )
    })
}

/// Reads the [`SipFacts`] of a message's header section (anything malformed simply yields
/// fewer facts: the core refuses the message later).
pub fn scan(bytes: &[u8]) -> SipFacts<'_> {
    let mut f = SipFacts::default();
    let Some(eol) = find_crlf(bytes, 0) else {
        return f;
    };
    let start = &bytes[..eol];
    f.response = start.starts_with(b"SIP/");
    if !f.response {
        let mut parts = start.split(|&c| c == b' ');
        f.method = parts.next().unwrap_or_default();
        f.request_uri = parts.next().filter(|u| !u.is_empty());
        f.ruri_shard = f.request_uri.and_then(shard_param);
    }
    let end = crate::sipscan::find_head_end(bytes).unwrap_or(bytes.len());
    let section = bytes.get(eol + 2..end).unwrap_or_default();
    let (mut via_seen, mut route_seen) = (false, false);
    for line in HeaderLines::new(section) {
        let Ok((name, value)) = split_header_line(line) else {
            continue;
        };
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if !via_seen && (is(b"via") || is(b"v")) {
            via_seen = true;
            f.via_shard = param(first_element(value), b"branch").and_then(shard_of_branch);
        } else if !route_seen && is(b"route") {
            route_seen = true;
            f.route_shard = shard_param(uri_of(first_element(value)));
        } else if f.username.is_none() && is(b"authorization") {
            f.username = digest_username(value);
        } else if f.to_uri.is_none() && (is(b"to") || is(b"t")) {
            f.to_uri = Some(uri_of(value));
        } else if f.from_uri.is_none() && (is(b"from") || is(b"f")) {
            f.from_uri = Some(uri_of(value));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_and_route_tags_round_trip() {
        for shard in [0, 1, 9, 63] {
            let b = format!("{}abc1", branch_prefix(shard));
            assert_eq!(shard_of_branch(b.as_bytes()), Some(shard));
        }
        assert_eq!(shard_of_branch(b"z9hG4bK-332948456"), None);
        assert_eq!(shard_of_branch(b"z9hG4bKsx1-"), None);
        assert_eq!(shard_of_branch(b"z9hG4bKs01"), None);
    }

    #[test]
    fn shard_of_name_ignores_case_and_spreads() {
        assert_eq!(
            shard_of_name(b"Alice@Open-IMS.test", 7),
            shard_of_name(b"alice@open-ims.test", 7)
        );
        assert_eq!(shard_of_name(b"x", 1), 0);
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[shard_of_name(format!("ue{i}@ims.test").as_bytes(), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }

    #[test]
    fn scan_reads_the_routing_facts() {
        let resp = b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/TCP 10.0.0.1:5064;branch=z9hG4bKs03-ab1, SIP/2.0/TCP ue;branch=z9hG4bKx\r\nVia: SIP/2.0/TCP ue2;branch=z9hG4bKs05-x\r\nTo: <sip:bob@ims.test>;tag=1\r\n\r\n";
        let f = scan(resp);
        assert!(f.response);
        assert_eq!(f.via_shard, Some(3));
        assert_eq!(f.to_uri, Some(&b"sip:bob@ims.test"[..]));

        let bye = b"BYE sip:alice@10.0.0.9:5066 SIP/2.0\r\nRoute: <sip:10.0.0.1:5064;lr;agshard=02>, <sip:scscf>\r\nVia: SIP/2.0/TCP ue;branch=z9hG4bKx\r\n\r\n";
        let f = scan(bye);
        assert!(!f.response);
        assert_eq!(f.method, b"BYE");
        assert_eq!(f.route_shard, Some(2));
        assert_eq!(f.via_shard, None);

        let reg = b"REGISTER sip:ims.test SIP/2.0\r\nf: <sip:alice@ims.test>;tag=9\r\nTo: \"A\" <sip:alice@ims.test>\r\nAuthorization: Digest username=\"alice@ims.test\", realm=\"ims.test\", nonce=\"\"\r\n\r\n";
        let f = scan(reg);
        assert_eq!(f.method, b"REGISTER");
        assert_eq!(f.username, Some(&b"alice@ims.test"[..]));
        assert_eq!(f.to_uri, Some(&b"sip:alice@ims.test"[..]));
        assert_eq!(f.from_uri, Some(&b"sip:alice@ims.test"[..]));
        assert_eq!(f.ruri_shard, None);
        assert_eq!(scan(b"garbage"), SipFacts::default());

        let notify = b"NOTIFY sip:10.0.0.1:5070;agshard=01 SIP/2.0\r\nVia: SIP/2.0/TCP scscf;branch=z9hG4bKn\r\n\r\n";
        let f = scan(notify);
        assert_eq!(f.ruri_shard, Some(1));
        assert_eq!(f.request_uri, Some(&b"sip:10.0.0.1:5070;agshard=01"[..]));
        assert_eq!(f.route_shard, None);
    }
}
