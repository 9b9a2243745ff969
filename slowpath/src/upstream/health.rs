//! Which core next hops are answering: a hop that timed out or could not be reached is
//! avoided for a hold-down time (`[ims-core] hop-holddown-s`), so new requests go to the
//! next hop in priority order instead of waiting on a dead one (RFC 3263 4.3 leaves the
//! memory of failures to the implementation; as Kamailio's dispatcher and OpenSIPS's
//! load-balancer do). A down hop is still tried when every hop is down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::NextHop;

/// Next hops seen failing, by address, with the instant each may be tried first again.
#[derive(Debug, Default)]
pub struct HopHealth {
    down_until: HashMap<SocketAddr, Instant>,
}

impl HopHealth {
    /// Records that `addr` failed at `now`: it is avoided for `hold`.
    pub fn mark_down(&mut self, addr: SocketAddr, now: Instant, hold: Duration) {
        self.down_until.insert(addr, now + hold);
    }

    /// Records an answer from `addr`: it is usable again at once.
    pub fn mark_up(&mut self, addr: SocketAddr) {
        self.down_until.remove(&addr);
    }

    /// Whether `addr` is being avoided at `now`.
    pub fn is_down(&self, addr: SocketAddr, now: Instant) -> bool {
        self.down_until.get(&addr).is_some_and(|&until| until > now)
    }

    /// The indices of `hops` in the order to try them at `now`: the usable ones in priority
    /// order, then the down ones, the soonest to recover first.
    pub fn order(&mut self, hops: &[NextHop], now: Instant) -> Vec<usize> {
        self.down_until.retain(|_, until| *until > now);
        let mut order: Vec<usize> = (0..hops.len()).collect();
        order.sort_by_key(|&i| (self.down_until.get(&hops[i].addr).copied(), i));
        order
    }

    /// The hop new requests take at `now` (the first of [`HopHealth::order`]), 0 without hops.
    pub fn preferred(&self, hops: &[NextHop], now: Instant) -> usize {
        (0..hops.len())
            .find(|&i| !self.is_down(hops[i].addr, now))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops() -> Vec<NextHop> {
        ["10.0.0.1:5060", "10.0.0.2:5060", "10.0.0.3:5060"]
            .iter()
            .map(|a| NextHop {
                addr: a.parse().unwrap(),
                transport: None,
            })
            .collect()
    }

    #[test]
    fn down_hops_go_last_until_their_hold_down_ends() {
        let (h, t0) = (hops(), Instant::now());
        let mut health = HopHealth::default();
        assert_eq!(health.order(&h, t0), [0, 1, 2]);
        assert_eq!(health.preferred(&h, t0), 0);
        health.mark_down(h[0].addr, t0, Duration::from_secs(30));
        health.mark_down(
            h[1].addr,
            t0 + Duration::from_secs(1),
            Duration::from_secs(30),
        );
        assert_eq!(health.order(&h, t0 + Duration::from_secs(2)), [2, 0, 1]);
        assert_eq!(health.preferred(&h, t0 + Duration::from_secs(2)), 2);
        // Every hop down: still one to try, the soonest back first.
        health.mark_down(
            h[2].addr,
            t0 + Duration::from_secs(2),
            Duration::from_secs(30),
        );
        assert_eq!(health.order(&h, t0 + Duration::from_secs(3)), [0, 1, 2]);
        assert_eq!(health.preferred(&h, t0 + Duration::from_secs(3)), 0);
        // Hold-down over for hop 0; an answer from hop 1 clears it.
        let later = t0 + Duration::from_secs(30);
        health.mark_up(h[1].addr);
        assert_eq!(health.order(&h, later), [0, 1, 2]);
        assert!(!health.is_down(h[0].addr, later));
        assert!(health.is_down(h[2].addr, later));
    }
}
