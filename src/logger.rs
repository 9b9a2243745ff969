//! Logging for the `akagate` binary: `tracing-subscriber` on stderr with `RUST_LOG`-style
//! per-module filters (`RUST_LOG`, else `AKAGATE_LOG`, else `info`), as text or as JSON lines
//! for log shippers. Every akagate crate logs through `tracing`; records of the `log` crate
//! (smoltcp's) are bridged into the same subscriber, so the filters apply to them too.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_log::AsLog;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The filter variable every `tracing` user knows; it wins over [`AKAGATE_LOG`].
pub const RUST_LOG: &str = "RUST_LOG";
/// akagate's own filter variable (a level such as `debug`, or `RUST_LOG` directives).
pub const AKAGATE_LOG: &str = "AKAGATE_LOG";

/// How log records are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per record: time, level, target, message and fields.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields.message`, ...).
    Json,
}

/// A filter variable that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{var}: invalid filter {value:?}: {source}")]
pub struct FilterError {
    /// The variable's name.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What the filter parser said.
    #[source]
    pub source: tracing_subscriber::filter::ParseError,
}

/// Why logging could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// `RUST_LOG` or `AKAGATE_LOG` does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Another subscriber or `log` logger was installed first.
    #[error("a logger is already installed")]
    AlreadySet,
}

/// The filter from `rust_log` (if set and not blank), else `akagate_log`, else `info`. Both
/// take `RUST_LOG` directives (`info,akagate_fastpath=debug`); a bare level is one of them.
pub fn filter_from(
    rust_log: Option<&str>,
    akagate_log: Option<&str>,
) -> Result<EnvFilter, FilterError> {
    let given = [(RUST_LOG, rust_log), (AKAGATE_LOG, akagate_log)]
        .into_iter()
        .find_map(|(var, v)| v.map(str::trim).filter(|v| !v.is_empty()).map(|v| (var, v)));
    let Some((var, value)) = given else {
        return Ok(EnvFilter::new("info"));
    };
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(value)
        .map_err(|source| FilterError {
            var,
            value: value.to_owned(),
            source,
        })
}

/// The filter named by the process environment (see [`filter_from`]).
pub fn filter_from_env() -> Result<EnvFilter, FilterError> {
    let rust_log = std::env::var(RUST_LOG).ok();
    let akagate_log = std::env::var(AKAGATE_LOG).ok();
    filter_from(rust_log.as_deref(), akagate_log.as_deref())
}

/// A subscriber writing records that pass `filter` to `writer` in `format` (tests give an
/// in-memory writer; [`init`] gives stderr).
pub fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().finish()),
    }
}

/// Installs the stderr subscriber for `format` with the environment's filter, and the bridge
/// that turns `log` records into `tracing` events. The `log` crate's maximum level follows the
/// filter, so smoltcp's disabled `log` calls in the fast path still cost one comparison.
pub fn init(format: LogFormat) -> Result<(), InitError> {
    let filter = filter_from_env()?;
    let max = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let ansi = std::io::stderr().is_terminal();
    tracing::subscriber::set_global_default(subscriber(filter, format, std::io::stderr, ansi))
        .map_err(|_| InitError::AlreadySet)?;
    tracing_log::LogTracer::builder()
        .with_max_level(max.as_log())
        .init()
        .map_err(|_| InitError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer keeping everything in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Logs one record per level under two targets with `filter`; returns the output.
    fn emit(filter: &str, format: LogFormat) -> String {
        let out = Captured::default();
        let filter = filter_from(Some(filter), None).unwrap();
        tracing::subscriber::with_default(subscriber(filter, format, out.clone(), false), || {
            tracing::debug!(target: "akagate_fastpath::esp", "esp debug");
            tracing::info!(target: "akagate_fastpath::esp", "esp info");
            tracing::debug!(target: "akagate_slowpath::sip", "sip debug");
            tracing::warn!(target: "akagate_slowpath::sip", "sip warn");
        });
        out.text()
    }

    #[test]
    fn per_module_directives_select_targets_and_levels() {
        let text = emit("warn,akagate_fastpath=debug", LogFormat::Text);
        assert!(
            text.contains("esp debug") && text.contains("esp info"),
            "{text}"
        );
        assert!(!text.contains("sip debug"), "{text}");
        assert!(text.contains("sip warn"), "{text}");
        assert!(
            text.contains("WARN akagate_slowpath::sip: sip warn"),
            "{text}"
        );
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let text = emit("info", LogFormat::Json);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["target"], "akagate_fastpath::esp");
        assert_eq!(lines[0]["fields"]["message"], "esp info");
        assert_eq!(lines[1]["level"], "WARN");
    }

    #[test]
    fn rust_log_wins_then_akagate_log_then_info() {
        let hint = |r: Option<&str>, a: Option<&str>| filter_from(r, a).unwrap().max_level_hint();
        assert_eq!(hint(Some("trace"), Some("error")), Some(LevelFilter::TRACE));
        assert_eq!(hint(Some("  "), Some("error")), Some(LevelFilter::ERROR));
        assert_eq!(hint(None, Some("DEBUG")), Some(LevelFilter::DEBUG));
        assert_eq!(hint(None, None), Some(LevelFilter::INFO));
        let e = filter_from(None, Some("info,x=loud")).unwrap_err();
        assert_eq!(e.var, AKAGATE_LOG);
        assert!(
            e.to_string().starts_with("AKAGATE_LOG: invalid filter"),
            "{e}"
        );
    }
}
