//! The worker's routing table: which next hop an outbound packet's destination goes to.
//! On-link prefixes (our addresses with their prefix lengths) are reached directly, static
//! routes (the UE pools behind a PGW/UPF) and the default route through a gateway; the
//! longest matching prefix wins (RFC 1812 5.2.4.3, RFC 4861 5.2 for IPv6).

use std::net::IpAddr;

use smoltcp::wire::{IpAddress, IpCidr};

/// A static route: destinations in `prefix` go through the on-link router `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destinations (network address and prefix length).
    pub prefix: IpCidr,
    /// The router, an on-link host of the same family.
    pub via: IpAddr,
}

/// Where a destination is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    /// On a link prefix: the destination itself is resolved.
    OnLink,
    /// Through this router.
    Via(IpAddr),
}

/// Prefixes with their next hops, longest first, so the first match is the longest.
///
/// A P-CSCF has a handful of routes (its link prefixes, a default per family, the UE pools),
/// so a linear scan over a few cache lines beats a trie here.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    entries: Vec<(IpCidr, Hop)>,
    gateways: Vec<IpAddr>,
}

impl RouteTable {
    /// The table of the on-link prefixes `on_link` (an address with its prefix length names
    /// its network: `contains_addr` compares the prefix bits only), the static `routes` and
    /// the default gateways `defaults` (one per family at most). Where an on-link prefix and a route
    /// have the same prefix, the on-link one wins (the configuration refuses that case).
    pub fn new(
        on_link: impl IntoIterator<Item = IpCidr>,
        routes: &[Route],
        defaults: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        let mut entries: Vec<(IpCidr, Hop)> =
            on_link.into_iter().map(|c| (c, Hop::OnLink)).collect();
        entries.extend(routes.iter().map(|r| (r.prefix, Hop::Via(r.via))));
        for gw in defaults {
            let any = match gw {
                IpAddr::V4(_) => IpCidr::new(IpAddress::v4(0, 0, 0, 0), 0),
                IpAddr::V6(_) => IpCidr::new(IpAddress::v6(0, 0, 0, 0, 0, 0, 0, 0), 0),
            };
            entries.push((any, Hop::Via(gw)));
        }
        // Stable: among equal prefixes the earlier (on-link, then configured order) stays first.
        entries.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix_len()));
        let mut gateways: Vec<IpAddr> = Vec::new();
        for (_, h) in &entries {
            if let Hop::Via(g) = h {
                if !gateways.contains(g) {
                    gateways.push(*g);
                }
            }
        }
        RouteTable { entries, gateways }
    }

    /// The next hop towards `dst`: `dst` itself when it is on a link prefix, the router of
    /// the longest matching route otherwise, `None` when nothing matches.
    pub fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        let a = IpAddress::from(dst);
        self.entries
            .iter()
            .find(|(c, _)| c.contains_addr(&a))
            .map(|(_, h)| match h {
                Hop::OnLink => dst,
                Hop::Via(g) => *g,
            })
    }

    /// True if `ip` is on a link prefix (a host we may resolve directly).
    pub fn is_on_link(&self, ip: IpAddr) -> bool {
        let a = IpAddress::from(ip);
        self.entries
            .iter()
            .any(|(c, h)| *h == Hop::OnLink && c.contains_addr(&a))
    }

    /// The routers of the table (default gateways and the routers of static routes), each
    /// once.
    pub fn gateways(&self) -> &[IpAddr] {
        &self.gateways
    }

    /// True if `ip` is one of [`RouteTable::gateways`].
    pub fn is_gateway(&self, ip: IpAddr) -> bool {
        self.gateways.contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> IpCidr {
        let (a, l) = s.split_once('/').unwrap();
        IpCidr::new(
            IpAddress::from(a.parse::<IpAddr>().unwrap()),
            l.parse().unwrap(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn table() -> RouteTable {
        RouteTable::new(
            [cidr("10.0.0.1/24"), cidr("2001:db8::1/64")],
            &[
                Route {
                    prefix: cidr("10.45.0.0/16"),
                    via: ip("10.0.0.253"),
                },
                Route {
                    prefix: cidr("10.45.7.0/24"),
                    via: ip("10.0.0.252"),
                },
                Route {
                    prefix: cidr("2001:db8:45::/48"),
                    via: ip("2001:db8::fd"),
                },
            ],
            [ip("10.0.0.254"), ip("2001:db8::fe")],
        )
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        // On the link: the host itself.
        assert_eq!(t.next_hop(ip("10.0.0.9")), Some(ip("10.0.0.9")));
        assert_eq!(t.next_hop(ip("2001:db8::9")), Some(ip("2001:db8::9")));
        // The UE pool behind the PGW, and a more specific part of it behind another router.
        assert_eq!(t.next_hop(ip("10.45.0.7")), Some(ip("10.0.0.253")));
        assert_eq!(t.next_hop(ip("10.45.7.7")), Some(ip("10.0.0.252")));
        assert_eq!(t.next_hop(ip("10.45.8.7")), Some(ip("10.0.0.253")));
        assert_eq!(t.next_hop(ip("2001:db8:45:1::7")), Some(ip("2001:db8::fd")));
        // Everything else: the default gateway of its family.
        assert_eq!(t.next_hop(ip("192.0.2.1")), Some(ip("10.0.0.254")));
        assert_eq!(t.next_hop(ip("2001:db8:46::7")), Some(ip("2001:db8::fe")));
        assert!(t.is_on_link(ip("10.0.0.200")));
        assert!(!t.is_on_link(ip("10.45.0.7")));
        assert_eq!(
            t.gateways(),
            &[
                ip("2001:db8::fd"),
                ip("10.0.0.252"),
                ip("10.0.0.253"),
                ip("10.0.0.254"),
                ip("2001:db8::fe")
            ]
        );
    }

    #[test]
    fn without_a_default_unknown_destinations_have_no_route() {
        let t = RouteTable::new([cidr("10.0.0.1/24")], &[], []);
        assert_eq!(t.next_hop(ip("10.0.1.1")), None);
        assert_eq!(t.next_hop(ip("2001:db8::1")), None);
        // Prefix length 0: everything of the family is on the link (no [routes]).
        let t = RouteTable::new([cidr("10.0.0.1/0")], &[], []);
        assert_eq!(t.next_hop(ip("192.0.2.7")), Some(ip("192.0.2.7")));
        assert!(t.gateways().is_empty());
    }

    #[test]
    fn host_bits_of_an_address_prefix_are_ignored() {
        let t = RouteTable::new([cidr("2001:db8::1:2/120")], &[], []);
        assert!(t.is_on_link(ip("2001:db8::1:ff")));
        assert!(!t.is_on_link(ip("2001:db8::2:1")));
    }
}
