//! The Via header (RFC 3261 20.42, 18.2.1; RFC 3581 rport): sent-protocol, sent-by and the
//! branch / received / rport parameters transactions and response routing depend on.

use std::net::IpAddr;

use super::error::ParseError;
use super::lex::{is_lws, is_token_char, parse_decimal, trim_lws, trim_lws_start};
use super::params::Params;
use super::uri::Host;

mod walk;
#[cfg(test)]
mod walk_tests;

/// The RFC 3261 branch magic cookie (17.2.3).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// protocol-name, `SIP`.
    pub protocol: &'a str,
    /// protocol-version, `2.0`.
    pub version: &'a str,
    /// transport (`UDP`, `TCP`, `TLS`, `SCTP` or an extension token).
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// sent-by as written (`host[:port]`).
    pub sent_by: &'a str,
    /// via-params.
    pub params: Params<'a>,
    /// The first `branch`, `received` and `rport` of `params`, noted by the one walk that
    /// checks them (the accessors below are asked several times per message).
    known: KnownParams<'a>,
}

/// The first parameter of each name a Via's accessors read, as [`Params::get`] finds it:
/// `None` when absent, `Some(None)` when present without a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct KnownParams<'a> {
    branch: Option<Option<&'a str>>,
    received: Option<Option<&'a str>>,
    rport: Option<Option<&'a str>>,
    /// Where the `received` and `rport` parameters lie (a server's note replaces them).
    cuts: NotedCuts,
}

/// The `received` / `rport` parameters of a Via (any case, every one of them) as offsets into
/// its `params.raw()`: for each, the end of the parameter before it (0 for the first) and its
/// own end (of its value, or of its name for a flag); and the end of the last parameter.
/// What the response builder leaves out of the top Via's text to write the note's instead,
/// without walking the parameters again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NotedCuts {
    /// The first [`NotedCuts::MAX`] cuts, `(end before, own end)`.
    pub(crate) cuts: [(u32, u32); NotedCuts::MAX],
    /// How many `received` / `rport` parameters there are (may exceed [`NotedCuts::MAX`]).
    pub(crate) count: u32,
    /// The end of the last parameter (0 without one).
    pub(crate) last_end: u32,
}

impl NotedCuts {
    /// The most cuts kept; a Via with more is rebuilt from its parts instead.
    pub(crate) const MAX: usize = 3;

    /// Notes the parameter ending at `end` (an offset into the parameters' text) whose name
    /// is `name`.
    #[inline]
    fn param(&mut self, name: &str, end: usize) {
        // Offsets past u32 (a 4 GiB value) are not met: `count` saturates them away.
        let end = u32::try_from(end).unwrap_or(u32::MAX);
        if is_noted_name(name) {
            if let Some(slot) = self.cuts.get_mut(self.count as usize) {
                *slot = (self.last_end, end);
            }
            self.count = self.count.saturating_add(1);
        }
        self.last_end = end;
    }
}

/// True for a parameter a server's note replaces: `received` or `rport`, in any case.
#[inline]
pub(crate) fn is_noted_name(name: &str) -> bool {
    match name.len() {
        8 => name.eq_ignore_ascii_case("received"),
        5 => name.eq_ignore_ascii_case("rport"),
        _ => false,
    }
}

fn take_token(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(|&b| is_token_char(b)).count();
    s.split_at(n)
}

fn slash(s: &str) -> Result<&str, ParseError> {
    trim_lws_start(s)
        .strip_prefix('/')
        .map(trim_lws_start)
        .ok_or(ParseError::BadHeader("Via"))
}

/// Checks each via-param's syntax (RFC 3261 25.1, RFC 3581) and notes the first `branch`,
/// `received` and `rport`.
fn check_params<'a>(params: &Params<'a>) -> Result<KnownParams<'a>, ParseError> {
    let mut known = KnownParams::default();
    let base = params.raw().as_ptr() as usize;
    for p in params.iter() {
        let p = p?;
        let last = p.value.unwrap_or(p.name);
        known
            .cuts
            .param(p.name, last.as_ptr() as usize + last.len() - base);
        // Names compared in place: no lower-cased copy per parameter.
        let is = |name: &str| p.name.eq_ignore_ascii_case(name);
        let number_up_to = |max| !matches!(p.value, Some(v) if parse_decimal(v, max).is_none());
        let ok = if is("branch") {
            known.branch.get_or_insert(p.value);
            p.value.is_some_and(|v| v.bytes().all(is_token_char))
        } else if is("received") {
            known.received.get_or_insert(p.value);
            p.value.and_then(parse_ip).is_some()
        } else if is("rport") {
            known.rport.get_or_insert(p.value);
            number_up_to(65535)
        } else if is("ttl") {
            number_up_to(255)
        } else {
            true
        };
        if !ok {
            return Err(ParseError::BadParam);
        }
    }
    Ok(known)
}

impl<'a> Via<'a> {
    /// Parses one (comma-split) Via value; LWS is allowed around `/` (RFC 4475 3.1.1.1).
    /// The usual value is read in one walk; anything the walk does not decide takes
    /// [`Via::parse_general`], so both give the same Via or the same error.
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        match walk::walk(s) {
            Some(via) => Ok(via),
            None => Via::parse_general(s),
        }
    }

    /// `s` read by [`Via::parse`]'s one walk alone: `None` where the walk does not decide
    /// (the value may still parse, or not, piece by piece). A value the walk reads holds no
    /// `,`, `"`, `<` and no LWS at either end, so a header value it reads is a one-element
    /// list.
    pub(crate) fn parse_walked(s: &'a str) -> Option<Via<'a>> {
        walk::walk(s)
    }

    /// [`Via::parse`] piece by piece (three token reads, the sent-by's split, a parameter
    /// iterator): the path of any value the one walk does not decide, and its reference in
    /// the differential tests.
    pub fn parse_general(s: &'a str) -> Result<Via<'a>, ParseError> {
        let bad = ParseError::BadHeader("Via");
        let s = trim_lws(s);
        let (protocol, rest) = take_token(s);
        let (version, rest) = take_token(slash(rest)?);
        let (transport, rest) = take_token(slash(rest)?);
        if protocol.is_empty() || version.is_empty() || transport.is_empty() {
            return Err(bad);
        }
        if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
            return Err(bad);
        }
        let rest = trim_lws_start(rest);
        let end = rest
            .bytes()
            .position(|b| b == b';' || is_lws(b))
            .unwrap_or(rest.len());
        let sent_by = &rest[..end];
        let (host, port) = Host::parse_with_port(sent_by).map_err(|_| bad)?;
        let params = Params::new(&rest[end..]);
        let known = check_params(&params).map_err(|_| bad)?;
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            port,
            sent_by,
            params,
            known,
        })
    }

    /// Where the `received` and `rport` parameters lie in `params.raw()`.
    pub(crate) fn noted_cuts(&self) -> &NotedCuts {
        &self.known.cuts
    }

    /// True if this Via, parsed from a list element of `line` (a Via header's value), is the
    /// whole of it: it starts the value and its parameters end it. The line is then that one
    /// element (a comma after it, and anything past, would end the element before the
    /// value's end), and a list split of it gives this element alone.
    pub(crate) fn spans_line(&self, line: &str) -> bool {
        let end_of = |s: &str| s.as_ptr() as usize + s.len();
        self.protocol.as_ptr() == line.as_ptr() && end_of(self.params.raw()) == end_of(line)
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.known.branch.flatten()
    }

    /// True if the branch carries the RFC 3261 magic cookie.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` address.
    pub fn received(&self) -> Option<IpAddr> {
        self.known.received.flatten().and_then(parse_ip)
    }

    /// True if `rport` is present, with or without a value (RFC 3581 4).
    pub fn has_rport(&self) -> bool {
        self.known.rport.is_some()
    }

    /// The `rport` value filled in by a server.
    pub fn rport(&self) -> Option<u16> {
        self.known
            .rport
            .flatten()
            .and_then(|v| parse_decimal(v, 65535))
            .map(|v| v as u16)
    }

    /// The sent-by port or the transport default (RFC 3261 18.2.2: 5060, 5061 for TLS).
    pub fn port_or_default(&self) -> u16 {
        self.port
            .unwrap_or(if self.transport.eq_ignore_ascii_case("TLS") {
                5061
            } else {
                5060
            })
    }
}

/// A `received` value: an IPv4 or IPv6 address, the latter bracketed or not.
pub(crate) fn parse_ip(v: &str) -> Option<IpAddr> {
    let v = v
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(v);
    // The usual IPv4 `received` in one walk (the same address or none as `std`'s parse).
    if let Some(a) = super::uri::ipv4_dotted(v.as_bytes()) {
        return Some(IpAddr::V4(a));
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tortuous_via() {
        let v = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!((v.protocol, v.version, v.transport), ("SIP", "2.0", "UDP"));
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261_branch());
        let v = Via::parse("SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239")
            .unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK30239"));
    }

    #[test]
    fn rport_received_ipv6() {
        let v =
            Via::parse("SIP/2.0/TCP [2409:8800::1]:8904;branch=z9hG4bK1;rport;received=10.0.0.1")
                .unwrap();
        assert_eq!(v.port, Some(8904));
        assert!(v.has_rport());
        assert_eq!(v.rport(), None);
        assert_eq!(v.received(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(v.sent_by, "[2409:8800::1]:8904");
    }

    #[test]
    fn the_accessors_read_the_first_parameter_of_each_name_as_params_get_does() {
        let v = Via::parse(
            "SIP/2.0/UDP 192.0.2.1;Branch=z9hG4bKa;RPORT;branch=z9hG4bKb;rport=5;\
             RECEIVED=10.0.0.1;received=10.0.0.2;x=1",
        )
        .unwrap();
        for name in ["branch", "received", "rport", "x"] {
            let walked = v.params.get(name);
            let noted = match name {
                "branch" => v.known.branch,
                "received" => v.known.received,
                "rport" => v.known.rport,
                _ => walked,
            };
            assert_eq!(noted, walked, "{name}");
        }
        assert_eq!(v.branch(), Some("z9hG4bKa"));
        assert!(v.has_rport());
        assert_eq!(v.rport(), None);
        assert_eq!(v.received(), Some("10.0.0.1".parse().unwrap()));
        let bare = Via::parse("SIP/2.0/TCP h.example;ttl=3").unwrap();
        assert_eq!(
            (bare.branch(), bare.has_rport(), bare.received()),
            (None, false, None)
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0 192.0.2.15",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host;received=nothost",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;BRANCH=a@b",
            "SIP/2.0/UDP host;received",
            "SIP/2.0/UDP host;Received=1.2.3",
            "SIP/2.0/UDP host;rport=65536",
            "SIP/2.0/UDP host;RPort=x",
            "SIP/2.0/UDP host;ttl=256",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
        // Flags and in-range values (names in any case) pass.
        for good in [
            "SIP/2.0/UDP host;rport;ttl",
            "SIP/2.0/UDP host;RPORT=65535;TTL=255;Branch=z9hG4bK1",
            "SIP/2.0/UDP host;maddr;x=y",
        ] {
            assert!(Via::parse(good).is_ok(), "{good}");
        }
    }
}
