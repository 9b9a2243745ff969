//! Transport facts of proxied messages: the `received` / `rport` a server notes in the top
//! Via (RFC 3261 18.2.1, RFC 3581 4) and the UDP-or-TCP choice for requests the P-CSCF sends
//! to a UE (RFC 3261 18.1.1).

use std::net::IpAddr;

use akagate_proto::ipc::{Flow, SaSet, Transport};

use crate::registrar::SaSetExt;
use crate::sip::{Host, Message, MessageEdit, NameAddr, Uri, Via, ViaNote};

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

/// The `received` (when the sent-by host is not the source address, or `rport` asks for
/// it) and `rport` value a request from `flow` needs noted in its top Via (RFC 3261 18.2.1,
/// RFC 3581 4); `None` when the top Via carries them already or does not parse. The note
/// travels beside the request ([`Message::set_via_note`]), written only where a Via is.
pub(crate) fn received_note(msg: &Message<'_>, flow: Flow) -> Option<ViaNote> {
    let via = msg.top_via().ok()?;
    let host_is_source = match via.host {
        Host::Ipv4(a) => IpAddr::V4(a) == flow.ue,
        Host::Ipv6(a) => IpAddr::V6(a) == flow.ue,
        Host::Name(_) => false,
    };
    let rport = via.has_rport();
    let received_ok = host_is_source && !rport || via.received() == Some(flow.ue);
    let rport_ok = !rport || via.rport() == Some(flow.ue_port);
    if received_ok && rport_ok {
        return None;
    }
    Some(ViaNote {
        received: flow.ue,
        rport: rport.then_some(flow.ue_port),
    })
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

    /// The Via lines of `bytes` (a message).
    fn vias(bytes: &[u8]) -> Vec<String> {
        let m = Message::parse(bytes).unwrap();
        m.header_values_by_name("Via").map(str::to_string).collect()
    }

    #[test]
    fn rport_and_received_filled_in() {
        // RFC 3581 4: rport gets the source port, received the source address.
        let mut m = Message::parse(REQ.as_bytes()).unwrap();
        let note = received_note(&m, flow("192.0.2.7", 40000));
        assert!(note.is_some());
        m.set_via_note(note);
        let noted = [
            "SIP/2.0/UDP h.example:5062;branch=z9hG4bK1;received=192.0.2.7;rport=40000, SIP/2.0/UDP x;branch=z9hG4bK0",
        ];
        // Written into our responses, the request edited for forwarding and the copy kept.
        let response = crate::sip::response_to(&m, 401, "Unauthorized", Some("t")).unwrap();
        assert_eq!(vias(&response.build()), noted);
        let mut e = MessageEdit::new(&m);
        e.push_front("Via", "SIP/2.0/UDP p:5060;branch=z9hG4bKp");
        let forwarded = e.to_bytes();
        assert_eq!(vias(&forwarded)[1..], noted);
        assert_eq!(vias(&forwarded)[0], "SIP/2.0/UDP p:5060;branch=z9hG4bKp");
        let kept = m.noted_bytes();
        assert_eq!(vias(&kept), noted);
        // The request's own bytes are unchanged.
        assert_eq!(m.raw(), REQ.as_bytes());
        // Already noted: nothing to note again.
        let again = Message::parse(&kept).unwrap();
        assert!(received_note(&again, flow("192.0.2.7", 40000)).is_none());
        // Another source port: noted again.
        assert!(received_note(&again, flow("192.0.2.7", 40001)).is_some());
    }

    #[test]
    fn matching_host_without_rport_is_left_alone() {
        let r = REQ.replace(
            "h.example:5062;branch=z9hG4bK1;rport",
            "192.0.2.7:5062;branch=z9hG4bK1",
        );
        let m = Message::parse(r.as_bytes()).unwrap();
        assert!(received_note(&m, flow("192.0.2.7", 40000)).is_none());
        let response = crate::sip::response_to(&m, 200, "OK", None).unwrap();
        assert_eq!(
            vias(&response.build()),
            ["SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1, SIP/2.0/UDP x;branch=z9hG4bK0"]
        );
        // RFC 3261 18.2.1: a different sent-by host gets `received`.
        let note = received_note(&m, flow("2001:db8::9", 40000));
        assert_eq!(
            note,
            Some(ViaNote {
                received: "2001:db8::9".parse().unwrap(),
                rport: None
            })
        );
        let m = m.with_via_note(note);
        let response = crate::sip::response_to(&m, 200, "OK", None).unwrap();
        assert_eq!(
            vias(&response.build()),
            ["SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1;received=2001:db8::9, SIP/2.0/UDP x;branch=z9hG4bK0"]
        );
    }
}
