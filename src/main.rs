//! `akagate`: the P-CSCF security edge daemon. Loads and checks its configuration, runs the
//! daemon until SIGINT/SIGTERM, then shuts it down cleanly (queues drained, SQNs persisted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use akagate::config::{self, Backend, Config, LoadError, WorkerIdle};
use akagate::logger::{self, LogFormat};
use akagate::{Daemon, DaemonHandle, IdlePolicy, StartOptions};
use clap::Parser;

/// The process's allocator: mimalloc (feature `mimalloc`, the default), jemalloc (feature
/// `jemalloc`, without `mimalloc`), or glibc's malloc with neither (docs/ARCHITECTURE.md,
/// *The allocator*; docs/BENCHMARKS.md, round 28 `halloc28`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// The process's allocator: jemalloc (feature `jemalloc` without `mimalloc`).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const AFTER_HELP: &str = "\
Exit status: 0 ok (also after SIGINT/SIGTERM), 1 the daemon failed to start or stopped
uncleanly, 2 invalid command line or invalid configuration.
Logging (stderr): RUST_LOG, else AKAGATE_LOG, filters records per module
(e.g. RUST_LOG=info,akagate_fastpath=debug); the default is info.
Configuration keys: docs/CONFIG.md.";

/// P-CSCF security edge for IMS: IMS-AKA, ESP transport-mode SAs, userspace TCP/IP fast path.
#[derive(Debug, Parser)]
#[command(name = "akagate", version, after_help = AFTER_HELP)]
struct Cli {
    /// Run with the configuration in FILE (embedded demo defaults without it)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE; print "ok" and a summary, or each error as FILE:LINE:COL: message
    /// (exit status 2)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "print_default_config"])]
    check_config: Option<PathBuf>,
    /// Print the embedded default configuration (an in-memory demo)
    #[arg(long, conflicts_with = "config")]
    print_default_config: bool,
    /// Format of the log records on stderr: text lines, or JSON lines for log shippers
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Exit status for an invalid configuration (the same as clap's for a usage error).
const EXIT_CONFIG: u8 = 2;
/// Exit status for a daemon that could not start or did not stop cleanly.
const EXIT_RUN: u8 = 1;

/// Loads `file`, printing its errors as `FILE:LINE:COL: message` on failure.
fn load(file: &Path) -> Option<Config> {
    let name = file.display();
    match Config::load(file) {
        Ok(config) => Some(config),
        Err(LoadError::Invalid(errors)) => {
            for e in errors {
                eprintln!("{name}:{e}");
            }
            None
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit 2 with clap's message; --help and --version exit 0.
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    if let Some(file) = &cli.check_config {
        return match load(file) {
            Some(config) => {
                println!("ok\n{}", config.summary());
                ExitCode::SUCCESS
            }
            None => ExitCode::from(EXIT_CONFIG),
        };
    }
    let config = match &cli.config {
        Some(file) => match load(file) {
            Some(config) => config,
            None => return ExitCode::from(EXIT_CONFIG),
        },
        None => Config::default(),
    };
    if let Err(e) = logger::init(cli.log_format) {
        eprintln!("akagate: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    run(&config)
}

/// Runs the daemon until SIGINT or SIGTERM (a second signal exits at once).
fn run(config: &Config) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal sets the flag; with the flag already set the next one terminates.
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = registered {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_RUN);
        }
    }
    let memory = config.port.backend == Backend::Memory;
    let mut opts = StartOptions::production();
    if let WorkerIdle::Adaptive { max_sleep } = config.cores.idle {
        opts.idle = IdlePolicy::Backoff { max_sleep };
    }
    if memory {
        // The in-memory demo shares the host with whatever drives it: do not hog cores.
        opts.idle = IdlePolicy::Backoff {
            max_sleep: Duration::from_micros(200),
        };
    }
    let handle: DaemonHandle = match Daemon::start(config, opts) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::from(EXIT_RUN);
        }
    };
    if memory {
        tracing::warn!(
            "running on the in-memory backend with no UE attached: nothing can reach it, so \
             this run only shows that start-up and shutdown work (Ctrl-C to stop). Simulated \
             UEs attach through the library (Daemon::start_with_port)."
        );
    }
    tracing::info!("running; SIGINT or SIGTERM stops it");
    while !stop.load(Ordering::Relaxed) {
        if !handle.is_running() {
            tracing::error!("a daemon thread ended unexpectedly; shutting down");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = stop.load(Ordering::Relaxed);
    match handle.shutdown() {
        Ok(report) => {
            match &report.sqn_state {
                Some(p) => tracing::info!("stopped; SQN state saved in {}", p.display()),
                None => tracing::info!("stopped"),
            }
            if signalled {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUN)
            }
        }
        Err(e) => {
            tracing::error!("unclean shutdown: {e}");
            ExitCode::from(EXIT_RUN)
        }
    }
}
