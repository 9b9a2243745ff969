//! `akactl`: operator tool for akagate. Subcommands: `milenage` (AKA calculator),
//! `subscribers`, and `stats`, `sas`, `registrations`, `keys` over the daemon's control socket.

mod args;
mod ctl;
mod milenage_cmd;
mod subscribers;
mod tables;
mod wireshark;

use std::process::ExitCode;

const USAGE: &str = "usage: akactl <command> [options]

commands:
  milenage --k HEX (--op HEX | --opc HEX) --rand HEX --sqn HEX --amf HEX
      Milenage (TS 35.206) outputs and AUTN as one JSON object (lowercase hex).
  stats [--socket PATH] [--json]
      The daemon's counters: per worker, per drop reason, slowpath, SIP core, SA table.
  sas [--socket PATH] [--json]
      Installed SA sets: UE, SPIs, ports, algorithms (never keys).
  registrations [--socket PATH] [--json]
      Registrations: IMPI, IMPUs, contact, UE address, expiry, SA set SPIs.
  keys [--socket PATH] (--wireshark FILE | --json)
      ESP keys as a Wireshark esp_sa file (needs [control] allow-key-export = true).
  help
      This text.

The control commands find the socket with --socket, else $AKAGATE_SOCKET, else the daemon's
default paths; they exit with status 1 when the daemon cannot be reached or refuses.";

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
        "stats" | "sas" | "registrations" | "keys" => return ctl::main(cmd, rest),
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
