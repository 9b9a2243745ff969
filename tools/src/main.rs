//! `akactl`: operator tool for akagate. Subcommands: `milenage` (AKA calculator),
//! `subscribers`, and `stats`, `sas`, `registrations`, `keys` over the daemon's control socket.

mod args;
mod ctl;
mod milenage_cmd;
mod subscribers;
mod tables;
mod wireshark;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

const AFTER_HELP: &str = "\
The control commands find the socket with --socket, else $AKAGATE_SOCKET, else the daemon's
default paths.

Exit status: 0 ok, 1 the command failed (the daemon cannot be reached or refuses, a file
cannot be written), 2 usage error.";

/// Operator tool for akagate: Milenage calculator, test subscribers, and the daemon's
/// counters, SAs, registrations and ESP keys over its control socket.
#[derive(Parser)]
#[command(name = "akactl", version, after_help = AFTER_HELP, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// akactl's subcommands (no `Debug`: `milenage` holds keys).
#[derive(Subcommand)]
enum Command {
    /// Milenage (TS 35.206) outputs and AUTN as one JSON object (lowercase hex)
    Milenage(milenage_cmd::MilenageArgs),
    /// Write N test subscribers (random K/OPc, deterministic for a seed) as an HSS TOML file
    Subscribers(subscribers::SubscribersArgs),
    /// The daemon's counters: per worker, per drop reason, slowpath, SIP core, SA table
    Stats(ctl::CtlArgs),
    /// Installed SA sets: UE, SPIs, ports, algorithms (never keys)
    Sas(ctl::CtlArgs),
    /// Registrations: IMPI, IMPUs, contact, UE address, expiry, SA set SPIs
    Registrations(ctl::CtlArgs),
    /// ESP keys as a Wireshark esp_sa file (needs [control] allow-key-export = true)
    Keys(ctl::KeysArgs),
    /// End a UE's registration now (network-initiated: NOTIFY and BYEs through its SAs)
    Deregister(ctl::DeregisterArgs),
}

/// Exit status of a subcommand that failed at run time (a usage error is clap's 2).
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Milenage(a) => match milenage_cmd::run(&a) {
            Ok(json) => print_line(&json),
            Err(e) => usage_error("milenage", &e),
        },
        Command::Subscribers(a) => match subscribers::run(&a) {
            Ok(summary) => print_line(&summary),
            Err(e) => {
                eprintln!("akactl subscribers: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Command::Stats(a) => ctl::main("stats", &a),
        Command::Sas(a) => ctl::main("sas", &a),
        Command::Registrations(a) => ctl::main("registrations", &a),
        Command::Keys(a) => ctl::main_keys(&a),
        Command::Deregister(a) => ctl::main_deregister(&a),
    }
}

fn print_line(text: &str) -> ExitCode {
    println!("{text}");
    ExitCode::SUCCESS
}

/// Reports a usage error found after parsing the way clap reports its own (exit status 2).
fn usage_error(subcommand: &str, msg: &str) -> ExitCode {
    let mut cli = Cli::command();
    cli.build();
    let err = match cli.find_subcommand_mut(subcommand) {
        Some(sub) => sub.error(clap::error::ErrorKind::ArgumentConflict, msg),
        None => cli.error(clap::error::ErrorKind::ArgumentConflict, msg),
    };
    err.exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Command, ErrorKind> {
        Cli::try_parse_from(std::iter::once("akactl").chain(args.iter().copied()))
            .map(|c| c.command)
            .map_err(|e| e.kind())
    }

    #[test]
    fn control_options_in_both_forms_and_misuse() {
        assert!(matches!(
            parse(&["stats", "--socket", "/s", "--json"]),
            Ok(Command::Stats(a)) if a.json && a.socket.as_deref() == Some("/s".as_ref())
        ));
        assert!(matches!(
            parse(&["keys", "--socket=/s", "--wireshark=/f"]),
            Ok(Command::Keys(_))
        ));
        for (args, kind) in [
            (
                &["keys", "--socket", "/s"][..],
                ErrorKind::MissingRequiredArgument,
            ),
            (&["sas", "--wireshark", "/f"], ErrorKind::UnknownArgument),
            (&["sas", "--socket"], ErrorKind::InvalidValue),
            (&["sas", "--json", "--json"], ErrorKind::ArgumentConflict),
            (&["sas", "--json=yes"], ErrorKind::TooManyValues),
        ] {
            assert_eq!(parse(args).err(), Some(kind), "{args:?}");
        }
    }
}
