//! RFC 3263 resolution of proxy mode's next hops given as names (`[ims-core] next-hops =
//! ["sip:icscf.ims.example"]`), with `hickory-resolver`: the core only ever sees addresses.
//!
//! - a name with a port: its A/AAAA records, that port (4.2);
//! - a name with a transport but no port: SRV `_sip._udp|_tcp.NAME` ordered by priority and
//!   weight (RFC 2782), each target's A/AAAA; none: A/AAAA on 5060 (4.2);
//! - a bare name: its NAPTR records for `SIP+D2T` / `SIP+D2U` (flag `s`) by order and
//!   preference, each replacement's SRV as above (4.1); no NAPTR: SRV for TCP then UDP; none:
//!   A/AAAA on 5060 with the transport chosen by size (4.2).
//!
//! The daemon resolves at start (a name that resolves to nothing leaves the literal hops,
//! logged) and again every [`REFRESH`] in a thread of its own, handing the result to the
//! slowpath, which never waits on DNS.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use akagate_fastpath::ipc::Transport;
use akagate_slowpath::upstream::{HopTarget, NextHop, Upstream};
use crossbeam_channel::Sender;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::Resolver;

/// How often names are resolved again.
pub(super) const REFRESH: Duration = Duration::from_secs(60);

/// Resolved next hops: (next hops, E-CSCFs), both in priority order.
pub(super) type Resolved = (Vec<NextHop>, Vec<NextHop>);

/// A blocking RFC 3263 resolver (its own single-threaded Tokio runtime).
pub(super) struct HopResolver {
    rt: tokio::runtime::Runtime,
    resolver: Resolver<TokioRuntimeProvider>,
}

/// One SRV answer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Srv {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// One NAPTR answer that leads to SIP over UDP or TCP.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Naptr {
    order: u16,
    preference: u16,
    transport: Transport,
    replacement: String,
}

impl HopResolver {
    /// A resolver asking `servers` (port 53), or the host's resolv.conf when empty.
    pub fn new(servers: &[IpAddr]) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let err = |e: hickory_resolver::net::NetError| std::io::Error::other(e.to_string());
        let resolver = if servers.is_empty() {
            let _guard = rt.enter();
            Resolver::builder_tokio()
                .map_err(err)?
                .build()
                .map_err(err)?
        } else {
            let ns = servers
                .iter()
                .map(|ip| NameServerConfig::udp_and_tcp(*ip))
                .collect();
            let config = ResolverConfig::from_parts(None, Vec::new(), ns);
            let _guard = rt.enter();
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
                .build()
                .map_err(err)?
        };
        Ok(HopResolver { rt, resolver })
    }

    /// Every target in order, names resolved (RFC 3263); addresses stay as they are.
    pub fn resolve_all(&self, targets: &[HopTarget]) -> Vec<NextHop> {
        targets
            .iter()
            .flat_map(|t| match t {
                HopTarget::Address(h) => vec![h.clone()],
                HopTarget::Name {
                    name,
                    port,
                    transport,
                } => {
                    let hops = self.resolve(name, *port, *transport);
                    if hops.is_empty() {
                        tracing::warn!("next hop {name}: no DNS records (RFC 3263)");
                    }
                    hops
                }
            })
            .collect()
    }

    fn resolve(&self, name: &str, port: Option<u16>, transport: Option<Transport>) -> Vec<NextHop> {
        if let Some(p) = port {
            return self.addresses(name, p, transport);
        }
        if let Some(t) = transport {
            return self.via_srv(name, t);
        }
        let naptrs = self.naptr(name);
        let mut hops: Vec<NextHop> = naptrs
            .iter()
            .flat_map(|n| self.srv_hops(&n.replacement, n.transport))
            .collect();
        if hops.is_empty() {
            for t in [Transport::Tcp, Transport::Udp] {
                hops.extend(self.srv_hops(&srv_name(name, t), t));
            }
        }
        if hops.is_empty() {
            hops = self.addresses(name, 5060, None);
        }
        hops
    }

    /// SRV of `_sip._<t>.name`, else A/AAAA on 5060.
    fn via_srv(&self, name: &str, t: Transport) -> Vec<NextHop> {
        let hops = self.srv_hops(&srv_name(name, t), t);
        if hops.is_empty() {
            return self.addresses(name, 5060, Some(t));
        }
        hops
    }

    /// The hops of an SRV name, in RFC 2782 order.
    fn srv_hops(&self, srv: &str, t: Transport) -> Vec<NextHop> {
        order_srv(self.srv(srv))
            .iter()
            .flat_map(|s| self.addresses(&s.target, s.port, Some(t)))
            .collect()
    }

    fn lookup(&self, name: &str, rtype: RecordType) -> Vec<RData> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.rt.block_on(self.resolver.lookup(fqdn.as_str(), rtype)) {
            Ok(l) => l.answers().iter().map(|r| r.data.clone()).collect(),
            Err(e) => {
                tracing::debug!("DNS {rtype} {name}: {e}");
                Vec::new()
            }
        }
    }

    fn naptr(&self, name: &str) -> Vec<Naptr> {
        let mut v: Vec<Naptr> = self
            .lookup(name, RecordType::NAPTR)
            .into_iter()
            .filter_map(|d| match d {
                RData::NAPTR(n) => {
                    let services = String::from_utf8_lossy(&n.services).to_ascii_uppercase();
                    let flags = String::from_utf8_lossy(&n.flags).to_ascii_lowercase();
                    let transport = match services.as_str() {
                        "SIP+D2T" => Transport::Tcp,
                        "SIP+D2U" => Transport::Udp,
                        _ => return None,
                    };
                    (flags == "s").then(|| Naptr {
                        order: n.order,
                        preference: n.preference,
                        transport,
                        replacement: n.replacement.to_ascii().trim_end_matches('.').to_string(),
                    })
                }
                _ => None,
            })
            .collect();
        v.sort_by_key(|n| (n.order, n.preference));
        v
    }

    fn srv(&self, name: &str) -> Vec<Srv> {
        self.lookup(name, RecordType::SRV)
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii().trim_end_matches('.').to_string(),
                }),
                _ => None,
            })
            .collect()
    }

    fn addresses(&self, name: &str, port: u16, transport: Option<Transport>) -> Vec<NextHop> {
        let mut out = Vec::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            for d in self.lookup(name, rtype) {
                let ip: IpAddr = match d {
                    RData::A(a) => a.0.into(),
                    RData::AAAA(a) => a.0.into(),
                    _ => continue,
                };
                out.push(NextHop {
                    addr: SocketAddr::new(ip, port),
                    transport,
                });
            }
        }
        out
    }
}

/// `_sip._tcp.NAME` / `_sip._udp.NAME`.
fn srv_name(name: &str, t: Transport) -> String {
    format!("_sip._{}.{name}", t.token())
}

/// RFC 2782 order: lowest priority first; within one, higher weight first (a deterministic
/// stand-in for the weighted random pick, so failover order is stable).
fn order_srv(mut v: Vec<Srv>) -> Vec<Srv> {
    v.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
    v
}

/// Resolves `up`'s names now: (next hops, E-CSCFs).
pub(super) fn resolve_now(up: &Upstream) -> std::io::Result<Resolved> {
    let r = HopResolver::new(&up.dns_servers)?;
    Ok((
        r.resolve_all(&up.targets),
        r.resolve_all(&up.emergency_targets),
    ))
}

/// Re-resolves `up`'s names every [`REFRESH`] and sends each result to every slowpath shard;
/// ends with `stop`.
pub(super) fn spawn_refresh(
    up: Upstream,
    txs: Vec<Sender<Resolved>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("akagate-dns".into())
        .spawn(move || {
            let Ok(r) = HopResolver::new(&up.dns_servers) else {
                return;
            };
            let mut waited = Duration::ZERO;
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
                if waited < REFRESH {
                    continue;
                }
                waited = Duration::ZERO;
                let hops = (
                    r.resolve_all(&up.targets),
                    r.resolve_all(&up.emergency_targets),
                );
                if hops.0.is_empty() {
                    continue;
                }
                for tx in &txs {
                    if tx.try_send(hops.clone()).is_err() {
                        tracing::debug!("next hops resolved but a slowpath shard is busy");
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn srv_order_is_priority_then_weight() {
        let v = order_srv(vec![srv(20, 0, "c"), srv(10, 10, "b"), srv(10, 60, "a")]);
        let names: Vec<&str> = v.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            srv_name("ims.example", Transport::Tcp),
            "_sip._tcp.ims.example"
        );
    }
}
