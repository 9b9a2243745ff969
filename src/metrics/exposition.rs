//! A [`Stats`] snapshot in the Prometheus text exposition format 0.0.4: one family per
//! counter or gauge, `# HELP` and `# TYPE` before its samples, `worker` and `reason` labels.

use std::fmt::Write as _;

use crate::stats::catalog::{family_name, DROPS, UE_STACKS, UPTIME};
use crate::stats::{CounterDesc, CounterKind, Section, Stats};

/// The text being written.
struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts family `name` (HELP, then TYPE). Each name must be written once.
    fn family(&mut self, name: &str, kind: CounterKind, help: &str) {
        // Writing into a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the family just started.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with a single unlabelled sample.
    fn single(&mut self, name: &str, kind: CounterKind, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// `# HELP` text: backslash and line feed escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every counter of `s`, iterating the counter descriptors section by section
/// ([`Section::ALL`]): per worker (label `worker`) the port queue, the worker counters, the
/// UE stacks held and the drops by `reason`; then the slowpath's counters and gauges, the
/// SIP core's counters and the SA table's occupancy; uptime first.
pub fn render(s: &Stats) -> String {
    let mut e = Exposition {
        out: String::with_capacity(16 * 1024),
    };
    e.single(
        &family_name("", UPTIME.name, UPTIME.kind),
        UPTIME.kind,
        UPTIME.help,
        s.uptime.as_secs_f64(),
    );
    let ids: Vec<String> = s.workers.iter().map(|w| w.id.to_string()).collect();
    let shard_ids: Vec<String> = s.shards.iter().map(|sh| sh.id.to_string()).collect();
    for section in Section::ALL {
        if section.per_worker() {
            per_worker(&mut e, s, &ids, section);
        } else if !s.shards.is_empty() && matches!(section, Section::Slowpath | Section::Sip) {
            per_shard(&mut e, s, &shard_ids, section);
        } else {
            for (d, v) in s.section(section) {
                e.single(&section.series(d).family, d.kind, d.help, v);
            }
        }
    }
    e.out
}

/// With slowpath shards, one sample per shard (label `shard`) of each counter of the
/// slowpath's and the SIP core's sections: `sum()` gives the daemon's figure, and an
/// unbalanced or saturated shard shows.
fn per_shard(e: &mut Exposition, s: &Stats, ids: &[String], section: Section) {
    let values: Vec<Vec<(&'static CounterDesc, u64)>> =
        s.shards.iter().map(|sh| sh.section(section)).collect();
    for (i, &d) in section.descs().iter().enumerate() {
        let family = section.series(d).family;
        e.family(&family, d.kind, d.help);
        for (sh, id) in values.iter().zip(ids) {
            let v = sh.get(i).map_or(0, |&(_, v)| v);
            e.sample(&family, &[("shard", id)], v);
        }
    }
}

/// One family per counter of a per-worker `section`, one sample per worker; the drop
/// counters as the samples of one family labelled by reason (zeros too, so a series exists
/// before its first drop), after the UE stacks gauge.
fn per_worker(e: &mut Exposition, s: &Stats, ids: &[String], section: Section) {
    let values: Vec<Vec<(&'static CounterDesc, u64)>> =
        s.workers.iter().map(|w| w.section(section)).collect();
    let descs = section.descs();
    let mut drops = Vec::new();
    for (i, &d) in descs.iter().enumerate() {
        let series = section.series(d);
        if let Some(reason) = series.reason {
            drops.push((i, series.family, reason));
            continue;
        }
        e.family(&series.family, d.kind, d.help);
        for (w, id) in values.iter().zip(ids) {
            let v = w.get(i).map_or(0, |&(_, v)| v);
            e.sample(&series.family, &[("worker", id)], v);
        }
    }
    if section == Section::Worker {
        let name = section.series(&UE_STACKS).family;
        e.family(&name, UE_STACKS.kind, UE_STACKS.help);
        for (w, id) in s.workers.iter().zip(ids) {
            e.sample(&name, &[("worker", id)], w.ue_stacks());
        }
    }
    if let Some((_, family, _)) = drops.first() {
        e.family(family, DROPS.kind, DROPS.help);
        for (w, id) in values.iter().zip(ids) {
            for (i, family, reason) in &drops {
                let v = w.get(*i).map_or(0, |&(_, v)| v);
                e.sample(family, &[("worker", id), ("reason", reason)], v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{SlowpathStats, WorkerCounterValues, WorkerStats};
    use akagate_slowpath::CoreStats;
    use akagate_sys::QueueStats;
    use std::time::Duration;

    fn stats() -> Stats {
        let worker = |id: usize, esp_in: u64, drop: u64| WorkerStats {
            id,
            core: Some(id + 1),
            queue: QueueStats {
                rx_packets: 10 + id as u64,
                ..QueueStats::default()
            },
            counters: WorkerCounterValues {
                esp_in,
                drop_esp_invalid: drop,
                ues: 5,
                ues_freed: 2,
                ..WorkerCounterValues::default()
            },
        };
        Stats {
            uptime: Duration::from_millis(2500),
            workers: vec![worker(0, 7, 1), worker(1, 0, 3)],
            slowpath: SlowpathStats {
                challenges_withheld: 2,
                registrations: 4,
                ..SlowpathStats::default()
            },
            core: CoreStats {
                malformed_requests: 9,
                ..CoreStats::default()
            },
            sa_installed: 8,
            sa_allocated: 10,
            sa_capacity: 1024,
            shards: Vec::new(),
        }
    }

    /// Every family rendered is a row of the generated docs table and every row is rendered:
    /// the docs cannot list a metric the endpoint lacks, nor miss one.
    #[test]
    fn the_docs_table_lists_exactly_the_rendered_families() {
        let text = render(&stats());
        let mut rendered: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let doc = crate::stats::catalog::markdown();
        let mut documented: Vec<&str> = doc
            .lines()
            .skip(2)
            .filter_map(|l| l.split(" | ").nth(1))
            .filter_map(|series| series.trim_matches('`').split('{').next())
            .collect();
        rendered.sort_unstable();
        documented.sort_unstable();
        documented.dedup();
        assert_eq!(rendered, documented);
        let help_lines = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(help_lines, rendered.len(), "one HELP per family");
        assert!(
            text.lines()
                .filter_map(|l| l.strip_prefix("# HELP "))
                .all(|l| l.split_once(' ').is_some_and(|(_, h)| h.len() > 5)),
            "every family has a help text"
        );
    }

    #[test]
    fn samples_carry_worker_and_reason_labels() {
        let text = render(&stats());
        for line in [
            "akagate_uptime_seconds 2.5",
            "akagate_port_rx_packets_total{worker=\"0\"} 10",
            "akagate_port_rx_packets_total{worker=\"1\"} 11",
            "akagate_worker_esp_in_total{worker=\"0\"} 7",
            "akagate_worker_esp_in_total{worker=\"1\"} 0",
            "akagate_worker_ue_stacks{worker=\"1\"} 3",
            "akagate_worker_drops_total{worker=\"0\",reason=\"esp_invalid\"} 1",
            "akagate_worker_drops_total{worker=\"1\",reason=\"esp_invalid\"} 3",
            "akagate_worker_drops_total{worker=\"1\",reason=\"no_ue\"} 0",
            "akagate_slowpath_challenges_withheld_total 2",
            "akagate_registrations 4",
            "akagate_sip_malformed_requests_total 9",
            "akagate_sa_table_installed 8",
            "akagate_sa_table_capacity 1024",
            "# TYPE akagate_worker_drops_total counter",
            "# TYPE akagate_registrations gauge",
            "# HELP akagate_sip_retransmissions_absorbed_total Request retransmissions (and ACKs \
             for non-2xx responses) absorbed by a server transaction (RFC 3261 17.2).",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // No drop counter leaks out as a family of its own.
        assert!(!text.contains("akagate_worker_drop_"), "{text}");
        assert!(text.ends_with('\n'));
    }

    /// Issue 10: with slowpath shards the slowpath's and the SIP core's families carry one
    /// sample per shard (label `shard`) instead of the sum; the same families, so the docs
    /// table still lists exactly what is rendered.
    #[test]
    fn shards_label_the_slowpath_and_sip_samples() {
        let shard = |id: usize, regs: u64, malformed: u64| crate::stats::ShardStats {
            id,
            slowpath: SlowpathStats {
                registrations: regs,
                ..SlowpathStats::default()
            },
            core: CoreStats {
                malformed_requests: malformed,
                ..CoreStats::default()
            },
        };
        let s = Stats {
            shards: vec![shard(0, 1, 4), shard(1, 3, 5)],
            ..stats()
        };
        let text = render(&s);
        for line in [
            "akagate_registrations{shard=\"0\"} 1",
            "akagate_registrations{shard=\"1\"} 3",
            "akagate_sip_malformed_requests_total{shard=\"1\"} 5",
            "akagate_slowpath_challenges_withheld_total{shard=\"0\"} 0",
            "akagate_sa_table_installed 8",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("akagate_registrations 4"), "{text}");
        let families = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("# TYPE "))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(families(&text), families(&render(&stats())));
    }

    #[test]
    fn help_and_label_values_are_escaped() {
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        assert_eq!(escape_label("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
    }
}
