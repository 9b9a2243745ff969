//! `akacore`: an S-CSCF + HSS of our own behind akagate in proxy mode (`[ims-core]`), for
//! load tests: `akabench` registers and calls thousands of UEs through akagate to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use akagate_bench::cli::{load_subscribers, EXIT_FAILURE};
use akagate_bench::core::{net, CoreConfig, Scscf};
use akagate_fastpath::ipc::Transport;
use akagate_slowpath::hss::Hss;
use clap::{value_parser, Parser, ValueEnum};

const AFTER_HELP: &str = "\
Counters (registrations, calls, failures) are printed as one `akacore: name=value ...` line on
SIGINT / SIGTERM, and every --stats-interval seconds with the rates since the last line.
Exit status: 0 after a signal, 1 when the subscriber file or the address is unusable.";

/// S-CSCF + HSS for akagate's proxy mode: IMS-AKA challenges with CK/IK for the P-CSCF,
/// registrations with Path and Service-Route, calls routed between registered UEs.
#[derive(Debug, Parser)]
#[command(name = "akacore", version, after_help = AFTER_HELP)]
struct Cli {
    /// HSS subscriber file (TOML, or CSV if it ends in .csv), the same as akagate's
    #[arg(long, value_name = "FILE")]
    subscribers: PathBuf,
    /// Address and port to serve SIP on (UDP and TCP); akagate's [ims-core] next-hops
    #[arg(long, value_name = "IP:PORT")]
    listen: SocketAddr,
    /// Transport named in our Service-Route and Record-Route, and used towards a P-CSCF
    /// whose Path names none
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
    /// Largest registration lifetime granted, seconds
    #[arg(long, value_name = "S", default_value_t = 600, value_parser = value_parser!(u32).range(1..))]
    max_expires: u32,
    /// Delay of the terminated reg-event NOTIFY after the 200 OK to a de-registration
    /// (0: right after it, as an S-CSCF usually does; see the akagate race in
    /// docs/BENCHMARKS.md)
    #[arg(long, value_name = "MS", default_value_t = 0)]
    dereg_notify_delay_ms: u64,
    /// Print the counters every S seconds
    #[arg(long, value_name = "S", value_parser = value_parser!(u64).range(1..))]
    stats_interval: Option<u64>,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    /// SIP over TCP
    Tcp,
    /// SIP over UDP
    Udp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let records = match load_subscribers(&cli.subscribers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("akacore: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let hss = match Hss::from_records(&records) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("akacore: {}: {e}", cli.subscribers.display());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let (udp, tcp) = match net::bind(cli.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("akacore: {}: {e}", cli.listen);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("akacore: signal handler: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    let cfg = CoreConfig {
        local: cli.listen,
        transport: match cli.transport {
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Udp => Transport::Udp,
        },
        max_expires: cli.max_expires,
        dereg_notify_delay: Duration::from_millis(cli.dereg_notify_delay_ms),
    };
    println!(
        "akacore: {} subscribers, listening on {} (UDP and TCP)",
        hss.len(),
        cli.listen
    );
    let core = Scscf::new(cfg, hss);
    let interval = cli.stats_interval.map(Duration::from_secs);
    let mut last = (0u64, 0u64, Duration::ZERO);
    let tick = |core: &Scscf, t: Duration| {
        let c = &core.counters;
        let dt = (t - last.2).as_secs_f64().max(1e-9);
        println!(
            "akacore: t={:.0}s registered={} reg/s={:.0} calls/s={:.0} {}",
            t.as_secs_f64(),
            core.registered(),
            (c.registrations - last.0) as f64 / dt,
            (c.calls - last.1) as f64 / dt,
            c.line()
        );
        last = (c.registrations, c.calls, t);
    };
    match net::run(core, udp, tcp, stop, interval, tick) {
        Ok(summary) => {
            println!("akacore: {}", summary.line());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("akacore: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
