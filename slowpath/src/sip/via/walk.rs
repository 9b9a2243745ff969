//! The usual Via value in one walk (`SIP/2.0/<transport> <host>[:<port>]*(;name[=value])`,
//! no LWS but the one space, token values), instead of three token reads with their `/`
//! checks, a search for the sent-by's end, [`Host::parse_with_port`]'s split and class walk,
//! then [`ParamIter`]'s trims and splits with a name compare per parameter.
//!
//! The walk decides only where it gives exactly what the piecewise parse
//! ([`Via::parse_general`]) gives: anything else (LWS around `/` or `;`, an IPv6 reference,
//! a quoted or non-token value, a parameter the general path would refuse, …) returns `None`
//! and the caller takes the general path, which then gives its own result or error, so every
//! `400` reason stays the general parser's (a differential test and the `sip_parse` fuzz
//! target compare the two).
//!
//! [`Host::parse_with_port`]: super::super::uri::Host::parse_with_port
//! [`ParamIter`]: super::super::params::ParamIter

use super::super::lex::{is_token_char, parse_decimal};
use super::super::params::Params;
use super::super::uri::{ipv4_dotted, Host};
use super::{parse_ip, KnownParams, Via};
use akagate_proto::simd;

/// The start every SIP 2.0 Via has, compared as one eight-byte word.
const PREFIX: &[u8; 8] = b"SIP/2.0/";

/// The end of the run of token bytes of `b` from `i`.
#[inline]
fn token_end(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_token_char) {
        i += 1;
    }
    i
}

/// True if `i` is the end of `b` or a `;`: where a sent-by or a parameter may stop.
#[inline]
fn at_param_stop(b: &[u8], i: usize) -> bool {
    matches!(b.get(i), None | Some(b';'))
}

/// `s` as [`Via::parse_general`] reads it, or `None` where the walk does not decide.
pub(super) fn walk(s: &str) -> Option<Via<'_>> {
    let b = s.as_bytes();
    if b.get(..PREFIX.len())? != PREFIX {
        return None;
    }
    let mut i = token_end(b, PREFIX.len());
    let transport = &s[PREFIX.len()..i];
    if transport.is_empty() || b.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    // sent-by: host bytes (a name's or a dotted IPv4 address's), then `:port`.
    let host_start = i;
    // Sixteen bytes a compare (the classes of `uri::HOST_CLASS`'s `NAME` and `DOTTED`).
    let run = simd::host_name_run(b, i);
    i = run.end;
    // Every cut is at an ASCII byte or the end: a character boundary.
    let host_text = &s[host_start..i];
    let host = if host_text.is_empty() {
        return None;
    } else if run.dotted {
        Host::Ipv4(ipv4_dotted(host_text.as_bytes())?)
    } else if host_text.starts_with(['.', '-']) {
        return None;
    } else {
        Host::Name(host_text)
    };
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let from = i + 1;
        i = from;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        port = Some(parse_decimal(&s[from..i], 65535)? as u16);
    }
    if !at_param_stop(b, i) {
        return None;
    }
    let sent_by = &s[host_start..i];
    let params = &s[i..];
    let sent_by_end = i;
    let mut known = KnownParams::default();
    while i < b.len() {
        // `b[i]` is a `;` here.
        let name_start = i + 1;
        i = token_end(b, name_start);
        let name = &s[name_start..i];
        if name.is_empty() {
            return None;
        }
        let value = if b.get(i) == Some(&b'=') {
            let from = i + 1;
            // A value (the `branch`'s is 23 bytes or more) sixteen bytes a compare.
            i = simd::token_end(b, from);
            if i == from {
                return None;
            }
            Some(&s[from..i])
        } else {
            None
        };
        if !at_param_stop(b, i) {
            return None;
        }
        note_param(&mut known, name, value)?;
        known.cuts.param(name, i - sent_by_end);
    }
    Some(Via {
        protocol: &s[..3],
        version: &s[4..7],
        transport,
        host,
        port,
        sent_by,
        params: Params::new(params),
        known,
    })
}

/// `check_params` for one parameter of token bytes: notes the first `branch`, `received` and
/// `rport`; `None` where the general check would refuse it (the general path then says so).
#[inline]
fn note_param<'a>(
    known: &mut KnownParams<'a>,
    name: &'a str,
    value: Option<&'a str>,
) -> Option<()> {
    let number_up_to = |max| match value {
        Some(v) => parse_decimal(v, max).map(|_| ()),
        None => Some(()),
    };
    let is = |known: &str| name.len() == known.len() && name.eq_ignore_ascii_case(known);
    if is("branch") {
        // A token value (the walk read nothing else); a bare `branch` is refused.
        value?;
        known.branch.get_or_insert(value);
    } else if is("rport") {
        number_up_to(65535)?;
        known.rport.get_or_insert(value);
    } else if is("received") {
        parse_ip(value?)?;
        known.received.get_or_insert(value);
    } else if is("ttl") {
        number_up_to(255)?;
    }
    Some(())
}
