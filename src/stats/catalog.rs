//! Where each counter appears: the sections of the `stats` answer, the Prometheus name of each
//! counter, the few values that are not in a counter struct (uptime, SA table, UE stacks), and
//! the counter table of docs/OPERATIONS.md generated from all of it.

use akagate_fastpath::worker::WorkerCounterValues;
use akagate_proto::counters::{CounterDesc, CounterKind, CounterTable};
use akagate_sys::QueueStats;

use super::slowpath::{SlowpathStats, CORE};

/// Prefix of every Prometheus metric name.
pub const PREFIX: &str = "akagate";

/// Prefix of the worker counters that count drops, one per reason.
pub const DROP_PREFIX: &str = "drop_";

/// Every counter of a port queue ([`QueueStats`]).
pub const QUEUE: CounterTable<QueueStats> = QueueStats::TABLE;

/// The SA table's occupancy, in the order of [`Stats::sa_table`](super::Stats::sa_table).
pub const SA_TABLE: [CounterDesc; 3] = [
    CounterDesc::new(
        "installed",
        "Inbound SAs installed in the SA table.",
        CounterKind::Gauge,
    ),
    CounterDesc::new(
        "allocated",
        "Inbound SPIs allocated (installed or waiting for their SA).",
        CounterKind::Gauge,
    ),
    CounterDesc::new(
        "capacity",
        "Inbound SPIs the SA table holds.",
        CounterKind::Gauge,
    ),
];

/// Seconds since start (`uptime_s` in the answer, `akagate_uptime_seconds`).
pub const UPTIME: CounterDesc = CounterDesc::new(
    "uptime_seconds",
    "Seconds since the daemon started.",
    CounterKind::Gauge,
);

/// UE stacks a worker holds now: `ues` minus `ues_freed` (Prometheus only).
pub const UE_STACKS: CounterDesc = CounterDesc::new(
    "ue_stacks",
    "UE stacks a worker holds now.",
    CounterKind::Gauge,
);

/// The family of every `drop_*` worker counter, labelled by reason (Prometheus only).
pub const DROPS: CounterDesc = CounterDesc::new(
    "drops",
    "Packets or messages a worker dropped, by reason (each drop counts under one reason).",
    CounterKind::Counter,
);

/// A group of counters, one object of the `stats` answer and one name prefix on Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// A worker's port queue (`workers[].queue`, `akagate_port_*`).
    Port,
    /// A worker's own counters (`workers[].counters`, `akagate_worker_*`).
    Worker,
    /// The slowpath thread (`slowpath`, `akagate_slowpath_*`; gauges `akagate_*`).
    Slowpath,
    /// The SIP core (`sip`, `akagate_sip_*`).
    Sip,
    /// The SA table (`sa_table`, `akagate_sa_table_*`).
    SaTable,
}

/// The Prometheus series of one counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// Family name (`# HELP` / `# TYPE`).
    pub family: String,
    /// The `reason` label of a drop counter.
    pub reason: Option<&'static str>,
}

impl Section {
    /// Every section, in the order of the answer and the exposition.
    pub const ALL: [Section; 5] = [
        Section::Port,
        Section::Worker,
        Section::Slowpath,
        Section::Sip,
        Section::SaTable,
    ];

    /// The member of the `stats` answer (inside each worker object for per-worker sections).
    pub const fn json(self) -> &'static str {
        match self {
            Section::Port => "queue",
            Section::Worker => "counters",
            Section::Slowpath => "slowpath",
            Section::Sip => "sip",
            Section::SaTable => "sa_table",
        }
    }

    /// Whether each worker has its own values (labelled `worker` on Prometheus).
    pub const fn per_worker(self) -> bool {
        matches!(self, Section::Port | Section::Worker)
    }

    /// The descriptors of the section, in order.
    pub fn descs(self) -> Vec<&'static CounterDesc> {
        match self {
            Section::Port => QUEUE.descs().collect(),
            Section::Worker => WorkerCounterValues::TABLE.descs().collect(),
            Section::Slowpath => SlowpathStats::TABLE.descs().collect(),
            Section::Sip => CORE.descs().collect(),
            Section::SaTable => SA_TABLE.iter().collect(),
        }
    }

    /// The Prometheus series of counter `d` of this section: `akagate_<prefix>_<name>_total`
    /// for a counter, `akagate_<prefix>_<name>` for a gauge (the slowpath's gauges without
    /// the prefix), and the worker's `drop_<reason>` counters as one family
    /// `akagate_worker_drops_total` labelled by reason.
    pub fn series(self, d: &'static CounterDesc) -> Series {
        let prefix = match self {
            Section::Port => "port_",
            Section::Worker => "worker_",
            Section::Slowpath if d.kind == CounterKind::Gauge => "",
            Section::Slowpath => "slowpath_",
            Section::Sip => "sip_",
            Section::SaTable => "sa_table_",
        };
        let reason = match self {
            Section::Worker => d.name.strip_prefix(DROP_PREFIX),
            _ => None,
        };
        let name = if reason.is_some() { DROPS.name } else { d.name };
        Series {
            family: family_name(prefix, name, d.kind),
            reason,
        }
    }
}

/// `akagate_<prefix><name>`, with `_total` for a counter.
pub fn family_name(prefix: &str, name: &str, kind: CounterKind) -> String {
    let total = match kind {
        CounterKind::Counter => "_total",
        CounterKind::Gauge => "",
    };
    format!("{PREFIX}_{prefix}{name}{total}")
}

/// Marks the start of the generated table in docs/OPERATIONS.md.
pub const DOC_BEGIN: &str = "<!-- counters:begin (generated from the counter descriptors: \
                             AKAGATE_UPDATE_DOCS=1 cargo test -p akagate counter_table) -->";
/// Marks its end.
pub const DOC_END: &str = "<!-- counters:end -->";

/// The Markdown table of every value the daemon reports: its member of the `stats` answer,
/// its Prometheus series, its type and its meaning, in the exposition's order.
pub fn markdown() -> String {
    let mut out = String::from("| `stats` member | Prometheus series | type | meaning |\n");
    out.push_str("|---|---|---|---|\n");
    let mut row = |json: &str, series: &str, d: &CounterDesc| {
        out.push_str(&format!(
            "| {json} | `{series}` | {} | {} |\n",
            d.kind.as_str(),
            d.help.replace('|', "\\|")
        ));
    };
    row(
        "`uptime_s`",
        &family_name("", UPTIME.name, UPTIME.kind),
        &UPTIME,
    );
    for section in Section::ALL {
        let parent = if section.per_worker() {
            "workers[]."
        } else {
            ""
        };
        let labels = if section.per_worker() { "worker" } else { "" };
        for d in section.descs() {
            let s = section.series(d);
            let labels = match s.reason {
                Some(r) => format!("{{{labels},reason=\"{r}\"}}"),
                None if labels.is_empty() => String::new(),
                None => format!("{{{labels}}}"),
            };
            let json = format!("`{parent}{}.{}`", section.json(), d.name);
            row(&json, &format!("{}{labels}", s.family), d);
        }
        if section == Section::Worker {
            let series = section.series(&UE_STACKS).family + "{worker}";
            row("(`ues` − `ues_freed`)", &series, &UE_STACKS);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_published_form() {
        for (section, name, family, reason) in [
            (
                Section::Port,
                "rx_packets",
                "akagate_port_rx_packets_total",
                None,
            ),
            (
                Section::Worker,
                "esp_in",
                "akagate_worker_esp_in_total",
                None,
            ),
            (
                Section::Worker,
                "drop_esp_invalid",
                "akagate_worker_drops_total",
                Some("esp_invalid"),
            ),
            (
                Section::Slowpath,
                "events",
                "akagate_slowpath_events_total",
                None,
            ),
            (
                Section::Slowpath,
                "registrations",
                "akagate_registrations",
                None,
            ),
            (
                Section::Sip,
                "stray_responses",
                "akagate_sip_stray_responses_total",
                None,
            ),
            (
                Section::SaTable,
                "capacity",
                "akagate_sa_table_capacity",
                None,
            ),
        ] {
            let d = section.descs().into_iter().find(|d| d.name == name);
            let d = d.unwrap_or_else(|| panic!("{section:?} has no {name}"));
            let want = Series {
                family: family.into(),
                reason,
            };
            assert_eq!(section.series(d), want, "{section:?} {name}");
        }
    }

    /// docs/OPERATIONS.md's counter table is [`markdown`]; `AKAGATE_UPDATE_DOCS=1` rewrites it.
    #[test]
    fn counter_table_in_the_operations_doc_is_generated() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let begin = doc.find(DOC_BEGIN).expect("begin marker") + DOC_BEGIN.len();
        let end = doc.find(DOC_END).expect("end marker");
        assert!(begin <= end, "markers out of order");
        let want = format!("\n{}", markdown());
        if doc.get(begin..end) == Some(want.as_str()) {
            return;
        }
        if std::env::var_os("AKAGATE_UPDATE_DOCS").is_some() {
            let updated = format!("{}{want}{}", &doc[..begin], &doc[end..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        panic!(
            "docs/OPERATIONS.md's counter table is stale: run \
             `AKAGATE_UPDATE_DOCS=1 cargo test -p akagate counter_table`"
        );
    }
}
