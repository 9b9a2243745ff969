//! Proxy mode: akagate as the P-CSCF in front of an IMS core's I-CSCF / S-CSCF
//! (TS 24.229 5.2). This module holds what the core side is (next hops, our core-facing
//! address, the addresses trusted as the core) and the pure message edits of the
//! registration relay (`edit`); the relay itself is `core::relay`, the sockets are the
//! daemon's (`src/daemon/corelink.rs`).

mod edit;
mod emergency;
mod health;
mod reginfo;

pub use edit::{
    forward_register, registration_facts, same_uri, take_keys, Integrity, KeyExtractError,
    RegisterHop, RegistrationFacts,
};

pub use emergency::{alternative_service_body, is_emergency, EmergencyAction};
pub use health::HopHealth;
pub use reginfo::{
    parse_reginfo, verdict_for, ContactState, ContactVerdict, ReginfoError, RegistrationState,
};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use akagate_proto::ipc::{Flow, Transport};
use ipnet::IpNet;

use crate::sip::{Host, NameAddr, Scheme, Uri};

/// The largest request sent over UDP towards the core (RFC 3261 18.1.1: 200 bytes under a
/// 1500-byte path MTU); anything larger goes over TCP.
pub const CORE_UDP_MAX: usize = 1300;

/// One next hop towards the I-CSCF / S-CSCF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Its address.
    pub addr: SocketAddr,
    /// The transport its URI names (`;transport=`), or `None`: UDP, TCP for large requests.
    pub transport: Option<Transport>,
}

/// Why a next-hop URI was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NextHopError {
    /// Not a `sip:` URI.
    #[error("not a sip: URI")]
    NotSip,
    /// A host name where an address is needed.
    #[error("a host name is not an address")]
    HostName,
    /// Not a valid host name.
    #[error("not a valid host name")]
    BadName,
    /// `transport=` names something other than udp or tcp.
    #[error("transport must be udp or tcp")]
    Transport,
}

/// A configured next hop: an address, or a name resolved as RFC 3263 says (NAPTR, SRV,
/// A/AAAA; the daemon resolves it, the core only ever sees addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HopTarget {
    /// `sip:ADDRESS[:PORT]`.
    Address(NextHop),
    /// `sip:NAME[:PORT][;transport=..]`.
    Name {
        /// The domain name (lower case, no trailing dot).
        name: String,
        /// The port the URI names (no SRV lookup then, RFC 3263 4.2).
        port: Option<u16>,
        /// The transport the URI names (no NAPTR lookup then, RFC 3263 4.1).
        transport: Option<Transport>,
    },
}

impl HopTarget {
    /// Parses `sip:HOST[:PORT][;transport=udp|tcp]`.
    pub fn parse(uri: &str) -> Result<HopTarget, NextHopError> {
        match NextHop::parse(uri) {
            Ok(hop) => Ok(HopTarget::Address(hop)),
            Err(NextHopError::HostName) => {
                let u = Uri::parse(uri.trim()).map_err(|_| NextHopError::NotSip)?;
                let Some(Host::Name(name)) = u.host else {
                    return Err(NextHopError::NotSip);
                };
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let label_ok = |l: &str| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                };
                if name.len() > 253 || !name.split('.').all(label_ok) {
                    return Err(NextHopError::BadName);
                }
                let transport = match u.params.value("transport") {
                    None => None,
                    Some(t) => Some(Transport::from_token(t).ok_or(NextHopError::Transport)?),
                };
                Ok(HopTarget::Name {
                    name,
                    port: u.port,
                    transport,
                })
            }
            Err(e) => Err(e),
        }
    }
}

impl NextHop {
    /// Parses `sip:ADDRESS[:PORT][;transport=udp|tcp]` (port 5060 when absent, RFC 3263 4.2).
    pub fn parse(uri: &str) -> Result<NextHop, NextHopError> {
        let u = Uri::parse(uri.trim()).map_err(|_| NextHopError::NotSip)?;
        if u.scheme != Scheme::Sip || u.user.is_some() {
            return Err(NextHopError::NotSip);
        }
        let ip: IpAddr = match u.host {
            Some(Host::Ipv4(a)) => a.into(),
            Some(Host::Ipv6(a)) => a.into(),
            Some(Host::Name(_)) => return Err(NextHopError::HostName),
            None => return Err(NextHopError::NotSip),
        };
        let transport = match u.params.value("transport") {
            None => None,
            Some(t) => Some(Transport::from_token(t).ok_or(NextHopError::Transport)?),
        };
        Ok(NextHop {
            addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
            transport,
        })
    }
}

/// The core side of proxy mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Next hops as configured (addresses and names), in priority order.
    pub targets: Vec<HopTarget>,
    /// Next hops in priority order, names resolved; the next one is tried when one fails
    /// (RFC 3263 4.3).
    pub next_hops: Vec<NextHop>,
    /// Our core-facing address and SIP port (UDP and TCP).
    pub local: SocketAddr,
    /// Sources accepted as the core; SIP from anywhere else on the core side is dropped.
    pub trusted: Vec<IpNet>,
    /// `P-Visited-Network-ID` added to REGISTERs (TS 24.229 5.2.2.1); empty: none.
    pub visited_network_id: String,
    /// The E-CSCF(s) as configured (addresses and names).
    pub emergency_targets: Vec<HopTarget>,
    /// The E-CSCF(s) emergency requests go to (TS 24.229 5.2.10), in priority order, names
    /// resolved; empty: emergency requests are answered 380.
    pub emergency_next_hops: Vec<NextHop>,
    /// DNS servers for the names among the targets (empty: the host's resolv.conf).
    pub dns_servers: Vec<IpAddr>,
    /// Emergency numbers besides `urn:service:sos` (local dial strings such as 112, 911).
    pub emergency_numbers: Vec<String>,
    /// Emergency sessions from UEs that are not registered (unprotected, no identity
    /// asserted) are routed to the E-CSCF (TS 24.229 5.2.10.4); otherwise they get 380
    /// asking for an emergency registration.
    pub anonymous_emergency: bool,
    /// How long a next hop may stay silent on a relayed REGISTER before the next hop gets
    /// it (every hop but the last; the last runs the transaction's own Timer F).
    pub hop_timeout: Duration,
    /// How long a next hop that timed out or could not be reached is avoided.
    pub hop_holddown: Duration,
}

/// Default of [`Upstream::hop_timeout`]: room for three UDP retransmissions (T1 = 500 ms),
/// well inside the UE's own Timer F (32 s) even with several hops.
pub const DEFAULT_HOP_TIMEOUT: Duration = Duration::from_secs(4);

/// Default of [`Upstream::hop_holddown`].
pub const DEFAULT_HOP_HOLDDOWN: Duration = Duration::from_secs(30);

impl Upstream {
    /// The addresses among `targets`, in order (what is usable before any name resolves).
    pub fn literal_hops(targets: &[HopTarget]) -> Vec<NextHop> {
        targets
            .iter()
            .filter_map(|t| match t {
                HopTarget::Address(h) => Some(h.clone()),
                HopTarget::Name { .. } => None,
            })
            .collect()
    }

    /// Whether any target is a name to resolve.
    pub fn has_names(&self) -> bool {
        self.targets
            .iter()
            .chain(&self.emergency_targets)
            .any(|t| matches!(t, HopTarget::Name { .. }))
    }

    /// Whether `flow` is on the core side (our core-facing address), not a UE's.
    pub fn is_core_flow(&self, flow: &Flow) -> bool {
        flow.local == self.local.ip()
    }

    /// Whether `ip` may speak for the core.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
            || self.next_hops.iter().any(|h| h.addr.ip() == ip)
    }

    /// The flow a request of `len` bytes takes to next hop `index`.
    pub fn flow_to(&self, index: usize, len: usize) -> Option<Flow> {
        Some(self.flow_with(self.next_hops.get(index)?, len))
    }

    /// Where a request of `len` bytes whose next Route entry (or, without one, Request-URI)
    /// is `next` goes (RFC 3261 16.6 steps 6-7): that URI's address when it is an IP
    /// literal (port 5060 and the transport by size unless the URI names them), else the
    /// first next hop, which resolves names for us.
    pub fn flow_for(&self, next: Option<&str>, len: usize) -> Option<Flow> {
        self.flow_for_via(next, len, 0)
    }

    /// As [`Upstream::flow_for`], with next hop `preferred` instead of the first when the
    /// URI is not an address (the first usable one, see [`HopHealth::preferred`]).
    pub fn flow_for_via(&self, next: Option<&str>, len: usize, preferred: usize) -> Option<Flow> {
        // A Route value is a name-addr; a bare Request-URI keeps its own parameters
        // (`;transport=tcp` would be a header parameter of an addr-spec).
        let uri = next.and_then(|v| match v.contains('<') {
            true => NameAddr::parse(v).ok().map(|a| a.uri),
            false => Uri::parse(v.trim()).ok(),
        });
        let literal = uri.and_then(|u| {
            let ip: IpAddr = match u.host? {
                Host::Ipv4(a) => a.into(),
                Host::Ipv6(a) => a.into(),
                Host::Name(_) => return None,
            };
            let transport = u.params.value("transport").and_then(Transport::from_token);
            Some((SocketAddr::new(ip, u.port.unwrap_or(5060)), transport))
        });
        let Some((addr, transport)) = literal else {
            return self
                .flow_to(preferred, len)
                .or_else(|| self.flow_to(0, len));
        };
        Some(self.flow_with(&NextHop { addr, transport }, len))
    }

    /// The flow to `hop` for a request of `len` bytes: the hop's transport, else UDP and TCP
    /// over [`CORE_UDP_MAX`] (RFC 3261 18.1.1).
    fn flow_with(&self, hop: &NextHop, len: usize) -> Flow {
        let proto = match hop.transport {
            Some(t) => t,
            None if len > CORE_UDP_MAX => Transport::Tcp,
            None => Transport::Udp,
        };
        Flow {
            ue: hop.addr.ip(),
            ue_port: hop.addr.port(),
            local: self.local.ip(),
            local_port: self.local.port(),
            proto,
        }
    }

    /// Whether a Route / Record-Route value names our core side (RFC 3261 16.4).
    pub fn is_ours(&self, value: &str) -> bool {
        let uri = match NameAddr::parse(value) {
            Ok(a) => a.uri,
            Err(_) => match Uri::parse(value.trim()) {
                Ok(u) => u,
                Err(_) => return false,
            },
        };
        let ip: Option<IpAddr> = match uri.host {
            Some(Host::Ipv4(a)) => Some(a.into()),
            Some(Host::Ipv6(a)) => Some(a.into()),
            _ => None,
        };
        ip == Some(self.local.ip()) && uri.port.unwrap_or(5060) == self.local.port()
    }

    /// The user part of a Route value naming our core side (our Path token).
    pub fn path_token<'v>(&self, value: &'v str) -> Option<&'v str> {
        if !self.is_ours(value) {
            return None;
        }
        let start = value.find("sip:")? + 4;
        let rest = value.get(start..)?;
        let at = rest.find('@')?;
        rest.get(..at)
    }

    /// The flow a request of `len` bytes takes to the first E-CSCF.
    pub fn emergency_flow(&self, len: usize) -> Option<Flow> {
        Some(self.flow_with(self.emergency_next_hops.first()?, len))
    }

    /// Our core-side host:port as it appears in Via and Path.
    pub fn sent_by(&self) -> String {
        match self.local {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> Upstream {
        Upstream {
            next_hops: vec![NextHop {
                addr: "10.0.0.2:5060".parse().unwrap(),
                transport: None,
            }],
            local: "10.0.0.1:5060".parse().unwrap(),
            trusted: vec!["10.1.0.0/16".parse().unwrap()],
            visited_network_id: String::new(),
            emergency_next_hops: Vec::new(),
            targets: Vec::new(),
            emergency_targets: Vec::new(),
            dns_servers: Vec::new(),
            emergency_numbers: Vec::new(),
            hop_timeout: DEFAULT_HOP_TIMEOUT,
            hop_holddown: DEFAULT_HOP_HOLDDOWN,
            anonymous_emergency: false,
        }
    }

    #[test]
    fn large_requests_go_over_tcp() {
        let u = upstream();
        assert_eq!(u.flow_to(0, 1300).unwrap().proto, Transport::Udp);
        assert_eq!(u.flow_to(0, 1301).unwrap().proto, Transport::Tcp);
        assert!(u.flow_to(1, 10).is_none());
    }

    #[test]
    fn routes_by_literal_or_next_hop() {
        let u = upstream();
        let f = u
            .flow_for(Some("<sip:orig@10.0.0.9:6060;lr;transport=tcp>"), 10)
            .unwrap();
        assert_eq!(
            (f.ue, f.ue_port, f.proto),
            ("10.0.0.9".parse().unwrap(), 6060, Transport::Tcp)
        );
        let f = u
            .flow_for(Some("sip:callee@10.0.0.9:5080;transport=TCP"), 10)
            .unwrap();
        assert_eq!((f.ue_port, f.proto), (5080, Transport::Tcp));
        let f = u.flow_for(Some("<sip:scscf.ims.example;lr>"), 10).unwrap();
        assert_eq!((f.ue, f.ue_port), ("10.0.0.2".parse().unwrap(), 5060));
        assert!(u.is_ours("<sip:r12@10.0.0.1:5060;lr>"));
        assert!(u.is_ours("<sip:10.0.0.1;lr>"));
        assert!(!u.is_ours("<sip:10.0.0.1:5070;lr>"));
        assert_eq!(u.path_token("<sip:r12@10.0.0.1:5060;lr>"), Some("r12"));
        assert_eq!(u.path_token("<sip:r12@10.0.0.2;lr>"), None);
    }

    #[test]
    fn next_hop_uris() {
        let h = NextHop::parse("sip:10.0.0.2;transport=tcp").unwrap();
        assert_eq!(h.addr, "10.0.0.2:5060".parse().unwrap());
        assert_eq!(h.transport, Some(Transport::Tcp));
        let h = NextHop::parse("sip:[2001:db8::1]:6060").unwrap();
        assert_eq!(h.addr, "[2001:db8::1]:6060".parse().unwrap());
        assert_eq!(h.transport, None);
        assert_eq!(
            NextHop::parse("sip:icscf.ims.example"),
            Err(NextHopError::HostName)
        );
        assert_eq!(
            HopTarget::parse("sip:ICSCF.ims.example.;transport=tcp"),
            Ok(HopTarget::Name {
                name: "icscf.ims.example".into(),
                port: None,
                transport: Some(Transport::Tcp)
            })
        );
        assert_eq!(
            HopTarget::parse("sip:10.0.0.2:5070"),
            Ok(HopTarget::Address(NextHop {
                addr: "10.0.0.2:5070".parse().unwrap(),
                transport: None
            }))
        );
        assert_eq!(
            HopTarget::parse("sip:bad_name.example"),
            Err(NextHopError::BadName)
        );
        assert_eq!(NextHop::parse("tel:+1555"), Err(NextHopError::NotSip));
        assert_eq!(
            NextHop::parse("sip:10.0.0.2;transport=sctp"),
            Err(NextHopError::Transport)
        );
    }

    #[test]
    fn next_hops_and_prefixes_are_trusted() {
        let u = upstream();
        assert!(u.trusts("10.0.0.2".parse().unwrap()));
        assert!(u.trusts("10.1.200.3".parse().unwrap()));
        assert!(!u.trusts("10.2.0.1".parse().unwrap()));
        assert_eq!(u.sent_by(), "10.0.0.1:5060");
    }
}
