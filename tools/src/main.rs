//! `akactl`: operator tool for akagate. Subcommands: `milenage` (AKA calculator); later
//! sessions add `stats`, `sas`, ...

mod args;
mod milenage_cmd;
mod subscribers;

use std::process::ExitCode;

const USAGE: &str = "usage: akactl <command> [options]

commands:
  milenage --k HEX (--op HEX | --opc HEX) --rand HEX --sqn HEX --amf HEX
      Milenage (TS 35.206) outputs and AUTN as one JSON object (lowercase hex).
  help
      This text.";

/// Exit status for a usage error (bad arguments), as in BSD sysexits' convention for CLIs.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(EXIT_USAGE);
    };
    let result = match cmd.as_str() {
        "milenage" => milenage_cmd::run(rest).map_err(|e| format!("akactl milenage: {e}")),
        "subscribers" => subscribers::run(rest).map_err(|e| format!("akactl subscribers: {e}")),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!(
            "akactl: unknown command '{other}' (try 'akactl help')"
        )),
    };
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
