//! `akagate`: the P-CSCF security edge daemon. For now it loads and checks its configuration;
//! the daemon wiring (threads, ports, slowpath) lands with issue 5.

mod config;

use std::path::Path;
use std::process::ExitCode;

use config::{Config, LoadError};

const USAGE: &str = "\
usage: akagate [--config FILE]
       akagate --check-config FILE
       akagate --print-default-config
       akagate --help | --version

  --config FILE          run with the configuration in FILE (embedded demo defaults without it)
  --check-config FILE    validate FILE; print \"ok\" and a summary, or each error as
                         FILE:LINE:COL: message (exit status 2)
  --print-default-config print the embedded default configuration (an in-memory demo)

Exit status: 0 ok, 2 invalid configuration or daemon not available, 64 usage error.
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
/// Exit status for an invalid configuration or a daemon that cannot run.
const EXIT_CONFIG: u8 = 2;

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
            eprintln!(
                "akagate: configuration ok ({} SIP port(s), backend {}), but the daemon is not \
                 wired yet: it lands with issue 5",
                config.sip_ports.len(),
                config.port.backend.token()
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
