//! Transport facts of proxied messages: the `received` / `rport` a server notes in the top
//! Via (RFC 3261 18.2.1, RFC 3581 4) and the UDP-or-TCP choice for requests the P-CSCF sends
//! to a UE (RFC 3261 18.1.1).

use std::fmt::Write as _;
use std::net::IpAddr;

use akagate_proto::ipc::{Flow, SaSet, Transport};

use crate::registrar::SaSetExt;
use crate::sip::lex::parse_decimal;
use crate::sip::{HeaderKind, Host, Message, MessageEdit, NameAddr, Params, Uri, Via};

/// Largest request sent over UDP when the path MTU is unknown (RFC 3261 18.1.1).
pub(crate) const UDP_MAX: usize = 1300;

/// Our host in Via / Record-Route / Contact (IPv6 in brackets, RFC 3261 25.1).
pub(crate) fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// A Via element like `via` with `transport`, without the parameters named in `skip`.
fn via_element(via: &Via<'_>, transport: &str, skip: &[&str]) -> Option<String> {
    let mut element = String::with_capacity(via.sent_by.len() + via.params.raw().len() + 64);
    for part in [
        via.protocol,
        "/",
        via.version,
        "/",
        transport,
        " ",
        via.sent_by,
    ] {
        element.push_str(part);
    }
    for p in via.params.iter() {
        let p = p.ok()?;
        if skip.iter().any(|n| p.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        element.push(';');
        element.push_str(p.name);
        if let Some(v) = p.value {
            element.push('=');
            element.push_str(v);
        }
    }
    Some(element)
}

/// `msg` with `received` (when the sent-by host is not the source address, or `rport` asks
/// for it) and the `rport` value filled in its top Via, written into `out`
/// ([`Message::with_top_via`]: nothing else is parsed again, and the new top Via is the old
/// one with the new parameters, not parsed again either); `None` when the top Via needs no
/// change.
pub(crate) fn with_received<'a, 'b>(
    msg: &Message<'a>,
    flow: Flow,
    out: &'b mut Vec<u8>,
) -> Option<Message<'b>>
where
    'a: 'b,
{
    let via = msg.top_via().ok()?;
    let element = received_element(&via, flow)?;
    let noted = msg.with_top_via(&element, out)?;
    // The element is `via` up to its parameters, then the parameters: the top Via's value
    // starts with it (values are trimmed, the top Via is the first element of the first).
    let top = noted.header(HeaderKind::Via)?;
    let params = top.get(element.len() - element_params_len(&element, &via)..element.len())?;
    let _ = noted.top_via.set(Ok(Via {
        params: Params::new(params),
        ..via
    }));
    Some(noted)
}

/// Length of the parameter part of `element`, which [`received_element`] built from `via`.
fn element_params_len(element: &str, via: &Via<'_>) -> usize {
    let prefix = via.protocol.len() + via.version.len() + via.transport.len() + via.sent_by.len();
    element.len() - (prefix + 3)
}

/// The top Via element `via` with `received` and `rport` noted for a request from `flow`,
/// `None` when they are there already (RFC 3261 18.2.1, RFC 3581 4). One pass over the
/// parameters to decide, a second one to write the element only when it changes.
fn received_element(via: &Via<'_>, flow: Flow) -> Option<String> {
    let (mut received, mut rport, mut rport_value) = (None, false, None);
    for p in via.params.iter() {
        let p = p.ok()?;
        if p.name.eq_ignore_ascii_case("received") {
            received = received.or(Some(p.value));
        } else if p.name.eq_ignore_ascii_case("rport") && !rport {
            rport = true;
            rport_value = p.value;
        }
    }
    let host_is_source = match via.host {
        Host::Ipv4(a) => IpAddr::V4(a) == flow.ue,
        Host::Ipv6(a) => IpAddr::V6(a) == flow.ue,
        Host::Name(_) => false,
    };
    let received_ok = host_is_source && !rport
        || received.flatten().and_then(crate::sip::via::parse_ip) == Some(flow.ue);
    let rport_ok = !rport
        || rport_value.and_then(|v| parse_decimal(v, 65535)) == Some(u64::from(flow.ue_port));
    if received_ok && rport_ok {
        return None;
    }
    let mut element = via_element(via, via.transport, &["received", "rport"])?;
    // via-received is a bare IPv4address / IPv6address (RFC 3261 25.1, RFC 5118 4.5).
    let _ = write!(element, ";received={}", flow.ue);
    if rport {
        let _ = write!(element, ";rport={}", flow.ue_port);
    }
    Some(element)
}

/// Inner IP MTU assumed towards a UE: RFC 3261 18.1.1 takes an Ethernet path's 1500 bytes
/// when the MTU is not known, less the 100 bytes the daemon keeps for ESP (header, IV,
/// padding, trailer and ICV of the largest suite: 57 in transport mode), as the fast path's
/// stacks do (`StackConfig::ip_mtu`).
const INNER_MTU: usize = 1500 - 100;

/// Largest SIP request that still fits one UDP datagram inside one ESP packet towards the UE
/// of `set`: what may go over UDP when a TCP connection to a UE registered over UDP fails
/// (RFC 3261 18.1.1: the client MAY then retry over UDP; a larger one would be fragmented,
/// which transport-mode ESP does not allow, RFC 4303 3.3.5, so it fails instead).
pub(crate) fn udp_path_max(set: &SaSet) -> usize {
    let ip_header = if set.ue.is_ipv4() { 20 } else { 40 };
    INNER_MTU - ip_header - 8
}

/// `request` with the transport of its top Via (ours) set to `transport` ("UDP" / "TCP"),
/// for the same request sent over another transport (RFC 3261 18.1.1); `None` if it does
/// not parse.
pub(crate) fn with_via_transport(request: &[u8], transport: &str) -> Option<Vec<u8>> {
    let msg = Message::parse(request).ok()?;
    let via = msg.top_via().ok()?;
    let element = via_element(&via, transport, &[])?;
    let mut e = MessageEdit::new(&msg);
    e.replace_first_element("Via", &element)
        .then(|| e.to_bytes())
}

/// Serialises a request to the UE of `set` with `build(transport)` (the Via transport token)
/// and picks its flow: UDP from port_pc to port_us when the UE registered over UDP and the
/// request fits in [`UDP_MAX`] bytes, else TCP over the same ports (RFC 3261 18.1.1).
/// A flow-bound set (registered without sec-agree) keeps to its UDP flow: its UE's port was
/// never agreed for TCP.
pub(crate) fn choose_transport(
    set: &SaSet,
    proto: Transport,
    build: impl Fn(&str) -> Vec<u8>,
) -> (Vec<u8>, Flow) {
    if proto == Transport::Udp {
        let bytes = build("UDP");
        if bytes.len() <= UDP_MAX || set.is_unprotected() {
            return (bytes, set.client_flow(Transport::Udp));
        }
    }
    (build("TCP"), set.client_flow(Transport::Tcp))
}

/// Serialises a request the P-CSCF originates towards the UE of `set` (keep-alive, NOTIFY,
/// BYE): `build(via)` gets our Via with sent-by naming port_ps (TS 24.229 5.2.6, TS 33.203
/// 7.1: the UE answers to our protected server port) and the transport chosen as in
/// [`choose_transport`].
pub(crate) fn own_request(
    set: &SaSet,
    proto: Transport,
    branch: &str,
    build: impl Fn(&str) -> Vec<u8>,
) -> (Vec<u8>, Flow) {
    let ours = host(set.local);
    let port_ps = set.port_ps;
    choose_transport(set, proto, |t| {
        build(&format!("SIP/2.0/{t} {ours}:{port_ps};branch={branch}"))
    })
}

/// Whether a Route / Record-Route value names this P-CSCF: its host is our configured name
/// or our address `local` (RFC 3261 16.4: a proxy removes the Route entry that is itself).
pub(crate) fn is_ours(value: &str, pcscf_host: &str, local: IpAddr) -> bool {
    let uri = match NameAddr::parse(value) {
        Ok(a) => a.uri,
        Err(_) => match Uri::parse(value.trim()) {
            Ok(u) => u,
            Err(_) => return false,
        },
    };
    match uri.host {
        Some(Host::Name(n)) => n.eq_ignore_ascii_case(pcscf_host),
        Some(Host::Ipv4(a)) => IpAddr::V4(a) == local,
        Some(Host::Ipv6(a)) => IpAddr::V6(a) == local,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(ue: &str, port: u16) -> Flow {
        Flow {
            ue: ue.parse().unwrap(),
            ue_port: port,
            local: "10.0.0.1".parse().unwrap(),
            local_port: 5060,
            proto: Transport::Udp,
        }
    }

    const REQ: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h.example:5062;branch=z9hG4bK1;rport, SIP/2.0/UDP x;branch=z9hG4bK0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn our_route_entries_by_exact_host() {
        let local = "10.0.0.1".parse().unwrap();
        let name = "pcscf.example.net";
        assert!(is_ours("<sip:10.0.0.1:6100;lr>", name, local));
        assert!(is_ours("<sip:orig@PCSCF.example.net;lr>", name, local));
        // A prefix of another address or name is not us.
        assert!(!is_ours("<sip:10.0.0.10:6100;lr>", name, local));
        assert!(!is_ours("<sip:pcscf.example.net.evil;lr>", name, local));
        assert!(!is_ours("garbage", name, local));
        let v6 = "2001:db8::1".parse().unwrap();
        assert!(is_ours("<sip:[2001:db8::1]:6100;lr>", name, v6));
    }

    #[test]
    fn rport_and_received_filled_in() {
        // RFC 3581 4: rport gets the source port, received the source address.
        let m = Message::parse(REQ.as_bytes()).unwrap();
        let mut b = Vec::new();
        let m2 = with_received(&m, flow("192.0.2.7", 40000), &mut b).unwrap();
        let vias: Vec<_> = m2.header_values_by_name("Via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP h.example:5062;branch=z9hG4bK1;received=192.0.2.7;rport=40000, SIP/2.0/UDP x;branch=z9hG4bK0"
            ]
        );
        // Already noted: no rewrite.
        // The new top Via reads as the same text parsed again.
        let top = m2.header(HeaderKind::Via).unwrap();
        let first = crate::sip::lex::ListIter::new(top).next().unwrap().unwrap();
        assert_eq!(m2.top_via().unwrap(), Via::parse(first).unwrap());
        // Already noted: no rewrite.
        assert!(with_received(&m2, flow("192.0.2.7", 40000), &mut Vec::new()).is_none());
    }

    #[test]
    fn matching_host_without_rport_is_left_alone() {
        let r = REQ.replace(
            "h.example:5062;branch=z9hG4bK1;rport",
            "192.0.2.7:5062;branch=z9hG4bK1",
        );
        let m = Message::parse(r.as_bytes()).unwrap();
        assert!(with_received(&m, flow("192.0.2.7", 40000), &mut Vec::new()).is_none());
        // RFC 3261 18.2.1: a different sent-by host gets `received`.
        let mut b = Vec::new();
        let m2 = with_received(&m, flow("2001:db8::9", 40000), &mut b).unwrap();
        assert_eq!(
            m2.top_via().unwrap().received(),
            Some("2001:db8::9".parse().unwrap())
        );
        assert_eq!(m2.top_via().unwrap().rport(), None);
    }
}
