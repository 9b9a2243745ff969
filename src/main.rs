//! `akagate`: the P-CSCF security edge daemon. Loads and checks its configuration, runs the
//! daemon until SIGINT/SIGTERM, then shuts it down cleanly (queues drained, SQNs persisted).

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use akagate::config::{self, Backend, Config, LoadError};
use akagate::{Daemon, DaemonHandle, IdlePolicy, StartOptions};

const USAGE: &str = "\
usage: akagate [--config FILE]
       akagate --check-config FILE
       akagate --print-default-config
       akagate --help | --version

  --config FILE          run with the configuration in FILE (embedded demo defaults without it)
  --check-config FILE    validate FILE; print \"ok\" and a summary, or each error as
                         FILE:LINE:COL: message (exit status 2)
  --print-default-config print the embedded default configuration (an in-memory demo)

Exit status: 0 ok (also after SIGINT/SIGTERM), 1 the daemon failed to start or stopped
uncleanly, 2 invalid configuration, 64 usage error. Log level: AKAGATE_LOG=error..trace.
Configuration keys: docs/CONFIG.md.";

/// What the command line asks for.
enum Command {
    Run(Option<String>),
    Check(String),
    PrintDefault,
    Help,
    Version,
}

/// Exit status for a command-line usage error (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit status for an invalid configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit status for a daemon that could not start or did not stop cleanly.
const EXIT_RUN: u8 = 1;

fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
        [] => Ok(Command::Run(None)),
        [flag] if flag == "--help" || flag == "-h" => Ok(Command::Help),
        [flag] if flag == "--version" || flag == "-V" => Ok(Command::Version),
        [flag] if flag == "--print-default-config" => Ok(Command::PrintDefault),
        [flag, file] if flag == "--config" => Ok(Command::Run(Some(file.clone()))),
        [flag, file] if flag == "--check-config" => Ok(Command::Check(file.clone())),
        [flag] if flag == "--config" || flag == "--check-config" => {
            Err(format!("{flag} needs a FILE"))
        }
        [first, ..] => Err(format!("unexpected argument \"{first}\"")),
    }
}

/// Loads `file`, printing its errors as `FILE:LINE:COL: message` on failure.
fn load(file: &str) -> Option<Config> {
    match Config::load(Path::new(file)) {
        Ok(config) => Some(config),
        Err(LoadError::Invalid(errors)) => {
            for e in errors {
                eprintln!("{file}:{e}");
            }
            None
        }
        Err(e) => {
            eprintln!("{file}: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("akagate: {msg}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("akagate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::PrintDefault => {
            print!("{}", config::DEFAULT_CONFIG);
            ExitCode::SUCCESS
        }
        Command::Check(file) => match load(&file) {
            Some(config) => {
                println!("ok\n{}", config.summary());
                ExitCode::SUCCESS
            }
            None => ExitCode::from(EXIT_CONFIG),
        },
        Command::Run(file) => {
            let config = match file {
                Some(file) => match load(&file) {
                    Some(config) => config,
                    None => return ExitCode::from(EXIT_CONFIG),
                },
                None => Config::default(),
            };
            run(&config)
        }
    }
}

/// Runs the daemon until SIGINT or SIGTERM (a second signal exits at once).
fn run(config: &Config) -> ExitCode {
    akagate::logger::init();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal sets the flag; with the flag already set the next one terminates.
        let registered = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()));
        if let Err(e) = registered {
            eprintln!("akagate: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_RUN);
        }
    }
    let memory = config.port.backend == Backend::Memory;
    let mut opts = StartOptions::production();
    if memory {
        // The in-memory demo shares the host with whatever drives it: do not hog cores.
        opts.idle = IdlePolicy::Backoff {
            max_sleep: Duration::from_micros(200),
        };
    }
    let handle: DaemonHandle = match Daemon::start(config, opts) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("akagate: cannot start: {e}");
            return ExitCode::from(EXIT_RUN);
        }
    };
    if memory {
        eprintln!(
            "akagate: running on the in-memory backend with no UE attached: nothing can reach \
             it, so this run only shows that start-up and shutdown work (Ctrl-C to stop). \
             Simulated UEs attach through the library (Daemon::start_with_port)."
        );
    }
    eprintln!("akagate: running; SIGINT or SIGTERM stops it");
    while !stop.load(Ordering::Relaxed) {
        if !handle.is_running() {
            log::error!("a daemon thread ended unexpectedly; shutting down");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = stop.load(Ordering::Relaxed);
    match handle.shutdown() {
        Ok(report) => {
            match &report.sqn_state {
                Some(p) => eprintln!("akagate: stopped; SQN state saved in {}", p.display()),
                None => eprintln!("akagate: stopped"),
            }
            if signalled {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUN)
            }
        }
        Err(e) => {
            eprintln!("akagate: unclean shutdown: {e}");
            ExitCode::from(EXIT_RUN)
        }
    }
}
