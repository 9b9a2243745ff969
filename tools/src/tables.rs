//! Human-readable tables of the daemon's `stats`, `sas` and `registrations` answers: aligned
//! columns, one row per worker counter, SA set or registration.

use serde_json::Value;

/// Aligned columns: the header row, then the rows, two spaces between columns.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON value as a table cell (`-` for null or missing).
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("\"{what}\" is not an array"))
}

fn u64_of(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `akactl stats`: a summary, the slowpath thread's counters and gauges, the SIP core's
/// counters (drops, absorbed retransmissions, timeouts, keep-alives), then every non-zero
/// worker counter (one column per worker and a total).
pub fn stats(v: &Value) -> Result<String, String> {
    let workers = array(v.get("workers").unwrap_or(&Value::Null), "workers")?;
    let mut out = format!(
        "uptime {:.1} s; {} worker(s); SA table {} installed, {} SPIs allocated of {}\n\n",
        v.get("uptime_s").and_then(Value::as_f64).unwrap_or(0.0),
        workers.len(),
        u64_of(v, &["sa_table", "installed"]),
        u64_of(v, &["sa_table", "allocated"]),
        u64_of(v, &["sa_table", "capacity"]),
    );
    for section in ["slowpath", "sip"] {
        if let Some(m) = v.get(section).and_then(Value::as_object) {
            let rows: Vec<Vec<String>> = m
                .iter()
                .map(|(k, v)| vec![k.clone(), cell(Some(v))])
                .collect();
            out.push_str(&render(&[section, "value"], &rows));
            out.push('\n');
        }
    }
    // Worker counters: the port queue's first (as `port.<name>`), then the worker's own, each
    // section in the order of the answer's keys.
    let mut names: Vec<String> = Vec::new();
    let mut per_worker: Vec<Vec<(String, u64)>> = Vec::new();
    for w in workers {
        let mut c: Vec<(String, u64)> = Vec::new();
        for section in ["queue", "counters"] {
            if let Some(m) = w.get(section).and_then(Value::as_object) {
                for (k, v) in m {
                    let name = if section == "queue" {
                        format!("port.{k}")
                    } else {
                        k.clone()
                    };
                    c.push((name, v.as_u64().unwrap_or(0)));
                }
            }
        }
        for (n, _) in &c {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        per_worker.push(c);
    }
    let mut header: Vec<String> = vec!["counter".into()];
    for w in workers {
        let core = w
            .get("core")
            .and_then(Value::as_u64)
            .map_or(String::new(), |c| format!(" (core {c})"));
        header.push(format!("w{}{core}", cell(w.get("id"))));
    }
    header.push("total".into());
    let mut rows = Vec::new();
    for name in &names {
        let vals: Vec<u64> = per_worker
            .iter()
            .map(|c| c.iter().find(|(n, _)| n == name).map_or(0, |&(_, v)| v))
            .collect();
        let total: u64 = vals.iter().sum();
        if total == 0 {
            continue;
        }
        let mut row = vec![name.clone()];
        row.extend(vals.iter().map(u64::to_string));
        row.push(total.to_string());
        rows.push(row);
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out.push_str(&render(&header, &rows));
    out.push_str("(counters that are zero on every worker are not shown; --json has all)\n");
    Ok(out)
}

/// `akactl sas`: one row per SA set.
pub fn sas(v: &Value) -> Result<String, String> {
    let sets = array(v, "sas")?;
    if sets.is_empty() {
        return Ok("no SA sets\n".into());
    }
    let cols = [
        "impi",
        "state",
        "ue",
        "local",
        "alg",
        "ealg",
        "spi_pc",
        "spi_ps",
        "spi_uc",
        "spi_us",
        "port_pc",
        "port_ps",
        "port_uc",
        "port_us",
        "expires_in_s",
    ];
    let rows: Vec<Vec<String>> = sets
        .iter()
        .map(|s| cols.iter().map(|c| cell(s.get(*c))).collect())
        .collect();
    let mut header = cols.to_vec();
    header[14] = "expires";
    Ok(render(&header, &rows))
}

/// `akactl registrations`: one row per registration with its SA sets' inbound SPIs.
pub fn registrations(v: &Value) -> Result<String, String> {
    let regs = array(v, "registrations")?;
    if regs.is_empty() {
        return Ok("no registrations\n".into());
    }
    let rows: Vec<Vec<String>> = regs
        .iter()
        .map(|r| {
            let impus = r
                .get("impus")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|i| cell(Some(i)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let sets = r
                .get("sa_sets")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            format!(
                                "{}:{}/{}",
                                cell(s.get("state")),
                                cell(s.get("spi_pc")),
                                cell(s.get("spi_ps"))
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let state = if r.get("registered") == Some(&Value::Bool(true)) {
                "registered"
            } else {
                "challenged"
            };
            vec![
                cell(r.get("impi")),
                impus,
                state.to_string(),
                cell(r.get("ue")),
                cell(r.get("transport")),
                cell(r.get("contact")),
                cell(r.get("expires_in_s")),
                sets,
            ]
        })
        .collect();
    Ok(render(
        &[
            "impi",
            "impus",
            "state",
            "ue",
            "transport",
            "contact",
            "expires",
            "sa sets (state:spi_pc/spi_ps)",
        ],
        &rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_show_nonzero_counters() {
        let v = json!({
            "uptime_s": 2.5,
            "workers": [
                {"id": 0, "core": 1, "queue": {"rx_packets": 3, "tx_errors": 0},
                 "counters": {"esp_in": 2, "drop_no_ue": 0}},
                {"id": 1, "core": null, "queue": {"rx_packets": 1, "tx_errors": 0},
                 "counters": {"esp_in": 0, "drop_no_ue": 4}}
            ],
            "slowpath": {"events": 7, "challenges_withheld": 1},
            "sip": {"retransmissions_absorbed": 12, "keepalives_sent": 0},
            "sa_table": {"installed": 2, "allocated": 2, "capacity": 1024}
        });
        let t = stats(&v).unwrap();
        assert!(
            t.starts_with(
                "uptime 2.5 s; 2 worker(s); SA table 2 installed, 2 SPIs allocated of 1024\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "slowpath             value\nchallenges_withheld  1\nevents               7\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("sip                       value\nkeepalives_sent           0\nretransmissions_absorbed  12\n"),
            "{t}"
        );
        assert!(
            t.contains("counter          w0 (core 1)  w1  total\n"),
            "{t}"
        );
        assert!(t.contains("port.rx_packets  3            1   4\n"), "{t}");
        assert!(t.contains("esp_in           2            0   2\n"), "{t}");
        assert!(t.contains("drop_no_ue       0            4   4\n"), "{t}");
        assert!(!t.contains("tx_errors"), "{t}");
    }

    #[test]
    fn empty_lists_say_so_and_wrong_shapes_are_errors() {
        assert_eq!(sas(&json!([])).unwrap(), "no SA sets\n");
        assert_eq!(registrations(&json!([])).unwrap(), "no registrations\n");
        assert!(sas(&json!({})).is_err());
        let r = registrations(
            &json!([{"impi": "a@b", "impus": ["sip:a@b"], "registered": false,
            "ue": "10.0.0.2", "transport": null, "contact": null, "expires_in_s": null,
            "sa_sets": [{"state": "pending", "spi_pc": 300, "spi_ps": 301}]}]),
        )
        .unwrap();
        assert_eq!(
            r.lines().nth(1).unwrap(),
            "a@b   sip:a@b  challenged  10.0.0.2  -          -        -        pending:300/301"
        );
    }
}
