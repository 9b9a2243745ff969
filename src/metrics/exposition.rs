//! A [`Stats`] snapshot in the Prometheus text exposition format 0.0.4: one family per
//! counter or gauge, `# HELP` and `# TYPE` before its samples, `worker` and `reason` labels.

use std::fmt::Write as _;

use crate::daemon::{core_counters, queue_counters, Sample, Stats};

/// Prefix of every metric name.
const PREFIX: &str = "akagate";

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// The text being written.
struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts family `name` (HELP, then TYPE). Each name must be written once.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        // Writing into a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
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
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
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

/// The meaning of the worker counters that are not drops (`WorkerCounters`); a counter
/// missing here is still exported, with a generic help text.
const WORKER_HELP: &[(&str, &str)] = &[
    ("rx_frames", "Frames received."),
    ("tx_frames", "Frames handed to the port for transmission."),
    ("esp_in", "ESP packets decapsulated."),
    ("esp_out", "ESP packets encapsulated."),
    ("sip_in", "SIP messages passed to the slowpath."),
    ("stack_polls", "Per-UE stack polls."),
    ("commands", "Slowpath commands executed."),
    ("ues", "UE stacks created."),
    ("ues_freed", "UE stacks freed."),
    ("echo_replies", "ICMP and ICMPv6 echo replies sent."),
    ("arp_replies", "ARP replies sent."),
    ("nd_replies", "IPv6 Neighbor Advertisements sent."),
    (
        "solicitations",
        "ARP requests and Neighbor Solicitations sent.",
    ),
    ("reasm_completed", "Datagrams reassembled from fragments."),
    (
        "sa_sets_drained",
        "Removed SA sets dropped once everything queued before the removal left.",
    ),
    (
        "sa_drain_timeouts",
        "Removed SA sets dropped at the drain limit with bytes unacknowledged.",
    ),
    (
        "sa_conns_discarded",
        "TCP connections discarded without a segment when their SA set was dropped.",
    ),
    (
        "handoff_out",
        "Frames handed to the worker that owns their UE.",
    ),
    (
        "handoff_in",
        "Frames received from another worker for a UE owned here.",
    ),
    (
        "neighbors_shared",
        "Neighbours learned here and told to the other workers.",
    ),
    (
        "neighbors_from_peers",
        "Neighbours learned from another worker.",
    ),
];

/// Prefix of the worker's per-reason drop counters.
const DROP: &str = "drop_";

/// Renders every counter of `s`: per worker (label `worker`) the port queue, the worker
/// counters and the drops by `reason`; the slowpath's counters and gauges; the core's SIP
/// counters; the SA table's occupancy; uptime.
pub fn render(s: &Stats) -> String {
    let mut e = Exposition {
        out: String::with_capacity(16 * 1024),
    };
    let ids: Vec<String> = s.workers.iter().map(|w| w.id.to_string()).collect();

    e.single(
        &format!("{PREFIX}_uptime_seconds"),
        Kind::Gauge,
        "Seconds since the daemon started.",
        s.uptime.as_secs_f64(),
    );

    // Port queues: one family per counter, one sample per worker (queue i is worker i's).
    if let Some(first) = s.workers.first() {
        for (i, q) in queue_counters(&first.queue).iter().enumerate() {
            let name = format!("{PREFIX}_port_{}_total", q.name);
            e.family(&name, Kind::Counter, q.help);
            for (w, id) in s.workers.iter().zip(&ids) {
                let v = queue_counters(&w.queue).get(i).map_or(0, |c| c.value);
                e.sample(&name, &[("worker", id)], v);
            }
        }
    }

    // Worker counters other than drops, in the workers' order of names.
    let names: Vec<&'static str> = s.workers.first().map_or_else(Vec::new, |w| {
        w.counters
            .iter()
            .map(|&(n, _)| n)
            .filter(|n| !n.starts_with(DROP))
            .collect()
    });
    for n in &names {
        let name = format!("{PREFIX}_worker_{n}_total");
        let generic = format!("Worker counter {n}.");
        let help = WORKER_HELP
            .iter()
            .find_map(|&(k, h)| (k == *n).then_some(h))
            .unwrap_or(&generic);
        e.family(&name, Kind::Counter, help);
        for (w, id) in s.workers.iter().zip(&ids) {
            e.sample(&name, &[("worker", id)], w.get(n).unwrap_or(0));
        }
    }
    let name = format!("{PREFIX}_worker_ue_stacks");
    e.family(&name, Kind::Gauge, "UE stacks a worker holds now.");
    for (w, id) in s.workers.iter().zip(&ids) {
        let live = w
            .get("ues")
            .unwrap_or(0)
            .saturating_sub(w.get("ues_freed").unwrap_or(0));
        e.sample(&name, &[("worker", id)], live);
    }

    // Drops: one family, every reason of every worker (zeros too, so a series exists
    // before its first drop).
    let name = format!("{PREFIX}_worker_drops_total");
    e.family(
        &name,
        Kind::Counter,
        "Packets or messages a worker dropped, by reason (each drop counts under one reason).",
    );
    for (w, id) in s.workers.iter().zip(&ids) {
        for &(n, v) in &w.counters {
            if let Some(reason) = n.strip_prefix(DROP) {
                e.sample(&name, &[("worker", id), ("reason", reason)], v);
            }
        }
    }

    let slowpath_counters = s.slowpath.counters();
    write_counters(&mut e, "slowpath", &slowpath_counters);
    for g in s.slowpath.gauges() {
        e.single(
            &format!("{PREFIX}_{}", g.name),
            Kind::Gauge,
            g.help,
            g.value,
        );
    }
    write_counters(&mut e, "sip", &core_counters(&s.core));

    for (n, help, v) in [
        (
            "installed",
            "Inbound SAs installed in the SA table.",
            s.sa_installed,
        ),
        (
            "allocated",
            "Inbound SPIs allocated (installed or waiting for their SA).",
            s.sa_allocated,
        ),
        (
            "capacity",
            "Inbound SPIs the SA table holds.",
            s.sa_capacity,
        ),
    ] {
        e.single(&format!("{PREFIX}_sa_table_{n}"), Kind::Gauge, help, v);
    }
    e.out
}

/// One unlabelled counter family per sample, named `akagate_<section>_<name>_total`.
fn write_counters(e: &mut Exposition, section: &str, samples: &[Sample]) {
    for c in samples {
        e.single(
            &format!("{PREFIX}_{section}_{}_total", c.name),
            Kind::Counter,
            c.help,
            c.value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::{SlowpathStats, WorkerStats};
    use akagate_fastpath::worker::WorkerCounters;
    use akagate_slowpath::CoreStats;
    use akagate_sys::QueueStats;
    use std::time::Duration;

    fn stats() -> Stats {
        let worker = |id: usize, esp_in: u64, drop: u64| {
            let mut counters = WorkerCounters::default().snapshot();
            for (n, v) in &mut counters {
                match *n {
                    "esp_in" => *v = esp_in,
                    "drop_esp_invalid" => *v = drop,
                    "ues" => *v = 5,
                    "ues_freed" => *v = 2,
                    _ => {}
                }
            }
            WorkerStats {
                id,
                core: Some(id + 1),
                queue: QueueStats {
                    rx_packets: 10 + id as u64,
                    ..QueueStats::default()
                },
                counters,
            }
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
        }
    }

    #[test]
    fn every_worker_counter_has_its_own_help() {
        for (n, _) in WorkerCounters::default().snapshot() {
            if !n.starts_with(DROP) {
                assert!(
                    WORKER_HELP.iter().any(|&(k, _)| k == n),
                    "no help text for worker counter {n}"
                );
            }
        }
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
            "# HELP akagate_sip_retransmissions_absorbed_total Request retransmissions absorbed \
             by a server transaction.",
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

    #[test]
    fn help_and_label_values_are_escaped() {
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        assert_eq!(escape_label("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
    }
}
