//! The control socket's wire format: one JSON object per line each way. A request is
//! `{"cmd":"stats"}`; an answer is `{"ok":true,"<cmd>":...}` or `{"ok":false,"error":"..."}`.

use serde_json::{json, Map, Value};

use super::query::{RegistrationInfo, SaKeyRecord, SaSetInfo};
use crate::stats::{CounterDesc, Section, Stats};

/// Longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 4096;

/// A parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `stats`: every counter.
    Stats,
    /// `sas`: the SA sets, without keys.
    Sas,
    /// `registrations`: the registrations.
    Registrations,
    /// `keys`: the ESP keys, if the configuration allows their export.
    Keys,
    /// `deregister` with `"impu"`: ends that registration (network-initiated).
    Deregister,
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a JSON object.
    #[error("request is not a JSON object: {0}")]
    Json(String),
    /// No string `cmd` member.
    #[error("request has no \"cmd\" string")]
    NoCmd,
    /// An unknown command.
    #[error("unknown command \"{0}\" (known: stats, sas, registrations, keys, deregister)")]
    Unknown(String),
}

impl Command {
    /// The name on the wire, also the answer's member name.
    pub fn name(self) -> &'static str {
        match self {
            Command::Stats => "stats",
            Command::Sas => "sas",
            Command::Registrations => "registrations",
            Command::Keys => "keys",
            Command::Deregister => "deregister",
        }
    }

    /// The string member `name` of a request line (a command's argument), if any.
    pub fn argument(line: &[u8], name: &str) -> Option<String> {
        let v: Value = serde_json::from_slice(line).ok()?;
        v.get(name)?.as_str().map(str::to_string)
    }

    /// Parses one request line.
    pub fn parse(line: &[u8]) -> Result<Command, RequestError> {
        let v: Value =
            serde_json::from_slice(line).map_err(|e| RequestError::Json(e.to_string()))?;
        let cmd = v
            .as_object()
            .ok_or_else(|| RequestError::Json("expected an object".into()))?
            .get("cmd")
            .and_then(Value::as_str)
            .ok_or(RequestError::NoCmd)?;
        [
            Command::Stats,
            Command::Sas,
            Command::Registrations,
            Command::Keys,
            Command::Deregister,
        ]
        .into_iter()
        .find(|c| c.name() == cmd)
        .ok_or_else(|| RequestError::Unknown(cmd.chars().take(64).collect()))
    }
}

/// `{"ok":false,"error":msg}`.
pub fn error(msg: &str) -> Value {
    json!({ "ok": false, "error": msg })
}

/// `{"ok":true,name:body}`.
pub fn ok(cmd: Command, body: Value) -> Value {
    let mut m = Map::new();
    m.insert("ok".into(), Value::Bool(true));
    m.insert(cmd.name().into(), body);
    Value::Object(m)
}

/// `(descriptor, value)` pairs as one JSON object, `name: value`.
fn object(values: Vec<(&'static CounterDesc, u64)>) -> Value {
    Value::Object(
        values
            .into_iter()
            .map(|(d, v)| (d.name.to_string(), Value::from(v)))
            .collect(),
    )
}

/// The [`Stats`] snapshot: uptime, per worker its [`Section::Port`] (`queue`) and
/// [`Section::Worker`] (`counters`) values, drop totals by reason, then the daemon-wide
/// sections (`slowpath`, `sip`, `sa_table`); every name from the counter descriptors.
pub fn stats(s: &Stats) -> Value {
    let mut answer = Map::new();
    answer.insert("uptime_s".into(), Value::from(s.uptime.as_secs_f64()));
    let workers: Vec<Value> = s
        .workers
        .iter()
        .map(|w| {
            let mut m = Map::new();
            m.insert("id".into(), Value::from(w.id));
            m.insert("core".into(), w.core.map_or(Value::Null, Value::from));
            for section in Section::ALL.into_iter().filter(|s| s.per_worker()) {
                m.insert(section.json().into(), object(w.section(section)));
            }
            Value::Object(m)
        })
        .collect();
    answer.insert("workers".into(), Value::Array(workers));
    let drops: Map<String, Value> = s
        .drops()
        .into_iter()
        .map(|(n, v)| (n.to_string(), Value::from(v)))
        .collect();
    answer.insert("drops".into(), Value::Object(drops));
    for section in Section::ALL.into_iter().filter(|s| !s.per_worker()) {
        answer.insert(section.json().into(), object(s.section(section)));
    }
    if !s.shards.is_empty() {
        // Slowpath shards: each one's `slowpath` and `sip` sections (the above are sums).
        let shards = (s.shards.iter())
            .map(|sh| {
                let mut m = Map::new();
                m.insert("id".into(), Value::from(sh.id));
                for section in [Section::Slowpath, Section::Sip] {
                    m.insert(section.json().into(), object(sh.section(section)));
                }
                Value::Object(m)
            })
            .collect();
        answer.insert("shards".into(), Value::Array(shards));
    }
    Value::Object(answer)
}

/// The SA sets (no keys).
pub fn sas(sets: &[SaSetInfo]) -> Value {
    Value::Array(
        sets.iter()
            .map(|s| {
                json!({
                    "impi": s.impi,
                    "state": s.state.name(),
                    "ue": s.ue.to_string(),
                    "local": s.local.to_string(),
                    "alg": s.auth.token(),
                    "ealg": s.encr.token(),
                    "spi_pc": s.spi_pc,
                    "spi_ps": s.spi_ps,
                    "spi_uc": s.spi_uc,
                    "spi_us": s.spi_us,
                    "port_pc": s.port_pc,
                    "port_ps": s.port_ps,
                    "port_uc": s.port_uc,
                    "port_us": s.port_us,
                    "expires_in_s": s.expires_in.as_secs(),
                })
            })
            .collect(),
    )
}

/// The registrations.
pub fn registrations(regs: &[RegistrationInfo]) -> Value {
    Value::Array(
        regs.iter()
            .map(|r| {
                let sets: Vec<Value> = r
                    .sets
                    .iter()
                    .map(|(state, [pc, ps, uc, us])| {
                        json!({
                            "state": state.name(),
                            "spi_pc": pc,
                            "spi_ps": ps,
                            "spi_uc": uc,
                            "spi_us": us,
                        })
                    })
                    .collect();
                json!({
                    "impi": r.impi,
                    "impus": r.impus,
                    "contact": r.contact,
                    "ue": r.ue.map(|a| a.to_string()),
                    "transport": r.proto.map(|p| p.token()),
                    "registered": r.contact.is_some(),
                    "expires_in_s": r.expires_in.map(|d| d.as_secs()),
                    "sa_sets": sets,
                })
            })
            .collect(),
    )
}

/// The keys, one object per SA (lower-case hex). The caller zeroizes the serialized text.
pub fn keys(records: &[SaKeyRecord]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|k| {
                json!({
                    "src": k.src.to_string(),
                    "dst": k.dst.to_string(),
                    "spi": k.spi,
                    "alg": k.auth.token(),
                    "ealg": k.encr.token(),
                    "integ_key": hex::encode(&k.integ_key),
                    "encr_key": hex::encode(&k.encr_key),
                    "salt": hex::encode(k.salt),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_typed_errors() {
        assert_eq!(Command::parse(br#"{"cmd":"stats"}"#), Ok(Command::Stats));
        assert_eq!(
            Command::parse(br#" {"cmd": "keys", "x": 1} "#),
            Ok(Command::Keys)
        );
        assert_eq!(Command::parse(br#"{"cmd":1}"#), Err(RequestError::NoCmd));
        assert_eq!(
            Command::parse(br#"{"cmd":"reboot"}"#),
            Err(RequestError::Unknown("reboot".into()))
        );
        assert!(matches!(
            Command::parse(b"stats"),
            Err(RequestError::Json(_))
        ));
        assert!(matches!(
            Command::parse(br#"["stats"]"#),
            Err(RequestError::Json(_))
        ));
        assert!(matches!(
            Command::parse(&[0xff, 0xfe]),
            Err(RequestError::Json(_))
        ));
    }

    #[test]
    fn stats_carry_every_slowpath_and_sip_counter() {
        use akagate_slowpath::CoreStats;
        let s = Stats {
            uptime: std::time::Duration::from_secs(1),
            workers: Vec::new(),
            slowpath: crate::stats::SlowpathStats {
                challenges_withheld: 3,
                sqn_commits: 5,
                sip_transport_refused: 7,
                registrations: 2,
                ..Default::default()
            },
            core: CoreStats {
                retransmissions_absorbed: 11,
                keepalives_sent: 13,
                dialogs_released: 17,
                ..CoreStats::default()
            },
            sa_installed: 0,
            sa_allocated: 0,
            sa_capacity: 8,
            shards: Vec::new(),
        };
        let v = stats(&s);
        assert_eq!(v["slowpath"]["challenges_withheld"], 3);
        assert_eq!(v["slowpath"]["sqn_commits"], 5);
        assert_eq!(v["slowpath"]["sip_transport_refused"], 7);
        assert_eq!(v["slowpath"]["commands_dropped"], 0);
        assert_eq!(v["slowpath"]["registrations"], 2);
        assert_eq!(v["sip"]["retransmissions_absorbed"], 11);
        assert_eq!(v["sip"]["keepalives_sent"], 13);
        assert_eq!(v["sip"]["dialogs_released"], 17);
        // Every described counter, and nothing else.
        assert_eq!(v["sip"].as_object().unwrap().len(), CoreStats::TABLE.len());
        assert_eq!(
            v["slowpath"].as_object().unwrap().len(),
            crate::stats::SlowpathStats::TABLE.len()
        );
    }

    /// Issue 10: with slowpath shards, each shard's own counters beside the sums.
    #[test]
    fn stats_carry_each_shards_counters() {
        use crate::stats::{ShardStats, SlowpathStats};
        use akagate_slowpath::CoreStats;
        let shard = |id: usize, events: u64, released: u64| ShardStats {
            id,
            slowpath: SlowpathStats {
                events,
                ..Default::default()
            },
            core: CoreStats {
                dialogs_released: released,
                ..CoreStats::default()
            },
        };
        let s = Stats {
            uptime: std::time::Duration::from_secs(1),
            workers: Vec::new(),
            slowpath: SlowpathStats {
                events: 30,
                ..Default::default()
            },
            core: CoreStats::default(),
            sa_installed: 0,
            sa_allocated: 0,
            sa_capacity: 8,
            shards: vec![shard(0, 10, 1), shard(1, 20, 2)],
        };
        let v = stats(&s);
        assert_eq!(v["slowpath"]["events"], 30);
        assert_eq!(v["shards"][1]["id"], 1);
        assert_eq!(v["shards"][0]["slowpath"]["events"], 10);
        assert_eq!(v["shards"][1]["slowpath"]["events"], 20);
        assert_eq!(v["shards"][1]["sip"]["dialogs_released"], 2);
        assert_eq!(
            v["shards"][0]["sip"].as_object().unwrap().len(),
            CoreStats::TABLE.len()
        );
        // One shard: no per-shard part.
        let one = Stats {
            shards: Vec::new(),
            ..s
        };
        assert!(stats(&one).get("shards").is_none());
    }

    #[test]
    fn workers_carry_every_descriptor_by_name_and_drops_are_summed() {
        use crate::stats::tests::worker;
        use crate::stats::WorkerCounterValues;
        let s = Stats {
            uptime: std::time::Duration::from_millis(1500),
            workers: vec![
                worker(0, &[("drop_no_ue", 2)]),
                worker(1, &[("drop_no_ue", 1)]),
            ],
            slowpath: Default::default(),
            core: Default::default(),
            sa_installed: 1,
            sa_allocated: 2,
            sa_capacity: 8,
            shards: Vec::new(),
        };
        let v = stats(&s);
        assert_eq!(v["uptime_s"], 1.5);
        let w = &v["workers"][1];
        assert_eq!((w["id"].as_u64(), w["core"].is_null()), (Some(1), true));
        let counters = w["counters"].as_object().unwrap();
        let names: Vec<&str> = WorkerCounterValues::TABLE.descs().map(|d| d.name).collect();
        let mut want = names.clone();
        want.sort_unstable();
        assert_eq!(
            counters.keys().map(String::as_str).collect::<Vec<_>>(),
            want
        );
        assert_eq!(w["counters"]["esp_in"], 2);
        assert_eq!(w["counters"]["drop_no_ue"], 1);
        assert_eq!(w["queue"]["rx_packets"], 10);
        assert_eq!(w["queue"].as_object().unwrap().len(), 9);
        assert_eq!(v["drops"], serde_json::json!({"drop_no_ue": 3}));
        assert_eq!(
            v["sa_table"],
            serde_json::json!({"installed": 1, "allocated": 2, "capacity": 8})
        );
    }

    #[test]
    fn answers_carry_ok_and_the_command_name() {
        assert_eq!(
            ok(Command::Sas, Value::Array(vec![])).to_string(),
            r#"{"ok":true,"sas":[]}"#
        );
        assert_eq!(error("no").to_string(), r#"{"error":"no","ok":false}"#);
    }
}
