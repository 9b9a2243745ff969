//! Load-test statistics: outcomes, failures by cause, latency histograms per transaction type
//! (hdrhistogram, microseconds), and the JSON report `akabench` writes.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::ue::{TxKind, UeEvent};

/// Latency percentiles of one transaction type, microseconds.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// The final report (also written as JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Free-form run parameters (backend, transport, algorithms, counts).
    pub params: BTreeMap<String, String>,
    /// Successful registrations.
    pub registered: u64,
    /// Failed registrations.
    pub registration_failures: u64,
    /// Completed calls (BYE answered 200).
    pub calls_completed: u64,
    /// Failed calls.
    pub call_failures: u64,
    /// Successful de-registrations.
    pub deregistered: u64,
    /// Failures by cause label.
    pub failures_by_cause: BTreeMap<String, u64>,
    /// Wall-clock seconds of the registration phase.
    pub registration_seconds: f64,
    /// Registrations per second over the registration phase.
    pub registrations_per_second: f64,
    /// Wall-clock seconds of the call phase.
    pub call_seconds: f64,
    /// Completed calls per second over the call phase.
    pub calls_per_second: f64,
    /// Latency percentiles per transaction type, microseconds.
    pub latency_us: BTreeMap<String, Percentiles>,
    /// The P-CSCF's non-zero drop counters and transmit-queue counters, and its slowpath
    /// threads' CPU time in microseconds (`slowpath_cpu_us`, per shard `_shard<k>`), when it
    /// ran in-process; over the registration phase alone `slowpath_cpu_us_registration`
    /// (per shard `_shard<k>`), `worker_cpu_us_registration` and
    /// `worker_busy_us_registration` (the workers' thread CPU and busy-iteration clock).
    pub pcscf_counters: BTreeMap<String, u64>,
    /// Challenges the UEs' USIMs refused as not fresh (a reused SQN; 0 unless the network
    /// lost SQN state).
    pub stale_challenges: u64,
}

/// Accumulates UE events.
#[derive(Debug)]
pub struct Stats {
    /// Successful registrations.
    pub registered: u64,
    /// Failed registrations.
    pub registration_failures: u64,
    /// Completed calls.
    pub calls_completed: u64,
    /// Failed calls.
    pub call_failures: u64,
    /// Successful de-registrations.
    pub deregistered: u64,
    /// Failures by cause.
    pub failures: BTreeMap<String, u64>,
    hist: BTreeMap<TxKind, Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Stats {
            registered: 0,
            registration_failures: 0,
            calls_completed: 0,
            call_failures: 0,
            deregistered: 0,
            failures: BTreeMap::new(),
            hist: BTreeMap::new(),
        }
    }

    /// Records one event.
    pub fn record(&mut self, ev: &UeEvent) {
        match ev {
            UeEvent::Registered => self.registered += 1,
            UeEvent::Deregistered => self.deregistered += 1,
            UeEvent::RegistrationFailed(f) => {
                self.registration_failures += 1;
                *self.failures.entry(f.cause()).or_default() += 1;
            }
            UeEvent::CallEnded(_) => self.calls_completed += 1,
            UeEvent::CallFailed(_, f) => {
                self.call_failures += 1;
                *self.failures.entry(f.cause()).or_default() += 1;
            }
            UeEvent::Transaction { kind, latency, .. } => {
                // 1 us .. 1 h at 3 significant digits (always valid bounds); out-of-range
                // samples saturate.
                if !self.hist.contains_key(kind) {
                    if let Ok(h) = Histogram::new_with_bounds(1, 3_600_000_000, 3) {
                        self.hist.insert(*kind, h);
                    }
                }
                let Some(h) = self.hist.get_mut(kind) else {
                    return;
                };
                h.saturating_record(latency.total_micros().max(1));
            }
            _ => {}
        }
    }

    /// Records a failure not tied to a UE event (e.g. the run's deadline).
    pub fn fail(&mut self, cause: &str) {
        *self.failures.entry(cause.to_string()).or_default() += 1;
    }

    /// Percentiles of one transaction type.
    pub fn percentiles(&self, kind: TxKind) -> Option<Percentiles> {
        let h = self.hist.get(&kind)?;
        Some(Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }

    /// The report for phases of `reg_s` and `call_s` seconds.
    pub fn report(&self, params: BTreeMap<String, String>, reg_s: f64, call_s: f64) -> Report {
        let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        Report {
            params,
            registered: self.registered,
            registration_failures: self.registration_failures,
            calls_completed: self.calls_completed,
            call_failures: self.call_failures,
            deregistered: self.deregistered,
            failures_by_cause: self.failures.clone(),
            registration_seconds: reg_s,
            registrations_per_second: rate(self.registered, reg_s),
            call_seconds: call_s,
            calls_per_second: rate(self.calls_completed, call_s),
            latency_us: self
                .hist
                .keys()
                .filter_map(|k| Some((k.name().to_string(), self.percentiles(*k)?)))
                .collect(),
            pcscf_counters: BTreeMap::new(),
            stale_challenges: 0,
        }
    }
}

impl Report {
    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "registrations: {} ok, {} failed in {:.3} s ({:.0}/s)\ncalls: {} ok, {} failed in {:.3} s ({:.0}/s)\nde-registrations: {} ok\n",
            self.registered,
            self.registration_failures,
            self.registration_seconds,
            self.registrations_per_second,
            self.calls_completed,
            self.call_failures,
            self.call_seconds,
            self.calls_per_second,
            self.deregistered,
        );
        if !self.failures_by_cause.is_empty() {
            s.push_str("failures by cause:\n");
            for (c, n) in &self.failures_by_cause {
                s.push_str(&format!("  {c}: {n}\n"));
            }
        }
        if self.stale_challenges > 0 {
            s.push_str(&format!(
                "stale challenges (SQN not fresh, refused by the USIM): {}\n",
                self.stale_challenges
            ));
        }
        if !self.pcscf_counters.is_empty() {
            s.push_str("P-CSCF counters:\n");
            for (c, n) in &self.pcscf_counters {
                s.push_str(&format!("  {c}: {n}\n"));
            }
        }
        s.push_str("latency (us)          count      p50      p90      p99    p99.9      max\n");
        for (k, p) in &self.latency_us {
            s.push_str(&format!(
                "  {k:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                p.count, p.p50, p.p90, p.p99, p.p999, p.max
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ue::Failure;
    use smoltcp::time::Duration;

    #[test]
    fn percentiles_and_causes() {
        let mut st = Stats::new();
        for ms in 1..=100u64 {
            st.record(&UeEvent::Transaction {
                kind: TxKind::Registration,
                code: 200,
                latency: Duration::from_millis(ms),
            });
        }
        st.record(&UeEvent::RegistrationFailed(Failure::Timeout(
            TxKind::RegisterChallenge,
        )));
        st.record(&UeEvent::RegistrationFailed(Failure::AkaMac));
        st.record(&UeEvent::Registered);
        let p = st.percentiles(TxKind::Registration).unwrap();
        assert_eq!(p.count, 100);
        // hdrhistogram at 3 significant digits: within 0.1%.
        assert!((49_950..=50_050).contains(&p.p50), "{p:?}");
        assert!((98_900..=99_100).contains(&p.p99), "{p:?}");
        assert!((99_900..=100_100).contains(&p.max), "{p:?}");
        let r = st.report(BTreeMap::new(), 2.0, 0.0);
        assert_eq!(r.registration_failures, 2);
        assert_eq!(r.failures_by_cause.get("timeout_register_401"), Some(&1));
        assert_eq!(r.failures_by_cause.get("aka_mac"), Some(&1));
        assert_eq!(r.registrations_per_second, 0.5);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["latency_us"]["registration"]["count"], 100);
    }
}
