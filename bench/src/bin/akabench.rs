//! `akabench`: registers N simulated UEs against akagate, places M calls between them and
//! reports successes, failures by cause, rates and latency percentiles (also as JSON).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use akagate_bench::cli::{
    init_logging, load_subscribers, positive_rate, usage_error, write_report, GatewayArgs,
    SuiteArgs, EXIT_FAILURE, EXIT_NOT_BUILT,
};
use akagate_bench::load::{run_open, Backend, DpdkPortSpec, LoadConfig, OpenLoop};
use akagate_fastpath::ipc::Transport;
use clap::{value_parser, Parser, ValueEnum};
use smoltcp::time::Duration;

/// The process's allocator, the daemon's choice (mimalloc by default; the crate's features,
/// `akagate_bench::alloccount::Chosen`).
#[global_allocator]
static GLOBAL: akagate_bench::alloccount::Chosen = akagate_bench::alloccount::CHOSEN;

const AFTER_HELP: &str = "\
Exit status: 0 if every registration and call succeeded, 1 otherwise (also when the
subscriber file cannot be read or the report cannot be written), 2 usage error or a backend
that is not in this build. RUST_LOG=info (or finer filters) shows the gateway's log on stderr.";

/// Registers N simulated UEs against akagate (IMS-AKA, ESP SAs, SIP over TCP or UDP), places M
/// calls between them and reports successes, failures by cause, rates and latency percentiles.
#[derive(Debug, Parser)]
#[command(name = "akabench", version, after_help = AFTER_HELP)]
struct Cli {
    /// HSS subscriber file (TOML, or CSV if it ends in .csv); the first N are used
    #[arg(long, value_name = "FILE")]
    subscribers: PathBuf,
    /// Number of simulated UEs
    #[arg(long, value_name = "N", value_parser = value_parser!(u64).range(1..))]
    ues: u64,
    /// Calls placed between the registered UEs
    #[arg(long, value_name = "M", default_value_t = 0)]
    calls: u64,
    /// SIP transport of the UEs
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
    #[command(flatten)]
    suite: SuiteArgs,
    /// IPv6 instead of IPv4
    #[arg(long)]
    ipv6: bool,
    /// Registrations / calls in flight at most (closed loop)
    #[arg(long, value_name = "C", default_value_t = 64, value_parser = value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Call hold time in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    hold_ms: u64,
    /// After the calls every UE re-registers over its SAs with a new Security-Client (new SPIs
    /// and ports, TS 33.203 7.4) and moves to the new SAs; UEs also re-register by themselves
    /// at half the granted Expires
    #[arg(long)]
    reregister: bool,
    /// De-register every UE at the end
    #[arg(long)]
    deregister: bool,
    /// Give up after S seconds (default 300 plus 1 per 100 UEs: registering and de-registering
    /// 100k UEs on a 2-core box outlasts 300 s)
    #[arg(long, value_name = "S")]
    timeout_s: Option<u64>,
    /// Packet I/O towards the gateway
    #[arg(long, value_enum, default_value_t = BackendKind::Memory)]
    backend: BackendKind,
    /// Worker threads of the in-process daemon (memory backend)
    #[arg(long, value_name = "W", default_value_t = 1, value_parser = value_parser!(u64).range(1..))]
    workers: u64,
    /// Slowpath shards of the in-process daemon (memory backend; issue 10)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = value_parser!(u64).range(1..=64))]
    slowpath_shards: u64,
    /// Memory backend: run the simulated UEs (this thread) on CPU N only
    #[arg(long, value_name = "N")]
    pin_ues: Option<usize>,
    /// Memory backend: run the daemon's worker threads on CPU N only
    #[arg(long, value_name = "N")]
    pin_workers: Option<usize>,
    /// Memory backend: run the daemon's slowpath thread(s) on CPU N only
    #[arg(long, value_name = "N")]
    pin_slowpath: Option<usize>,
    /// Memory backend: the workers busy-poll as in production instead of backing off when
    /// idle (a CPU each: pin them alone with --pin-workers)
    #[arg(long)]
    busy_poll: bool,
    #[command(flatten)]
    gateway: GatewayArgs,
    /// A further akagate node on the same link (repeat for more): the UEs are spread over
    /// --pcscf and these so that every call goes from one node to another (scale-out)
    #[arg(long, value_name = "IP")]
    more_pcscf: Vec<IpAddr>,
    /// Open loop: start R registrations per second at fixed times (latency counted from each
    /// scheduled start; --concurrency no longer limits them)
    #[arg(long, value_name = "R", value_parser = positive_rate)]
    reg_rate: Option<f64>,
    /// Open loop: start C calls per second at fixed times
    #[arg(long, value_name = "C", value_parser = positive_rate)]
    call_rate: Option<f64>,
    /// JSON report
    #[arg(long, value_name = "FILE", default_value = "akabench-report.json")]
    report: PathBuf,
    /// No live progress line on stderr
    #[arg(long)]
    quiet: bool,
}

/// `--transport` (clap's view of the contract's [`Transport`]).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    /// SIP over TCP
    Tcp,
    /// SIP over UDP
    Udp,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The akagate daemon started in-process (W worker threads and the slowpath thread) over
    /// an in-memory Ethernet pair
    Memory,
    /// akagate's worker and slowpath stepped in this one thread (deterministic)
    Inline,
    /// UEs on interface --iface (run under `ip netns exec`) towards an akagate daemon at
    /// --pcscf on that link; the UEs' own addresses must not be configured there
    #[value(name = "af_packet")]
    AfPacket,
    /// UEs on a DPDK port (build with --features dpdk) towards an akagate daemon at --pcscf;
    /// the EAL gets --eal-args
    Dpdk,
}

/// The backend the options name, or the usage error.
fn backend(cli: &Cli) -> Result<Backend, String> {
    let g = &cli.gateway;
    Ok(match cli.backend {
        BackendKind::Memory => Backend::Memory {
            subscribers: cli.subscribers.clone(),
            workers: usize::try_from(cli.workers).unwrap_or(1),
            slowpath_shards: usize::try_from(cli.slowpath_shards).unwrap_or(1),
            placement: akagate_bench::placement::Placement {
                ues: cli.pin_ues,
                workers: cli.pin_workers,
                slowpath: cli.pin_slowpath,
            },
            busy_poll: cli.busy_poll,
        },
        BackendKind::Inline => Backend::Inline,
        BackendKind::AfPacket => match (&g.iface, g.pcscf) {
            (Some(iface), Some(pcscf)) => Backend::AfPacket {
                iface: iface.clone(),
                pcscf,
                more_pcscfs: cli.more_pcscf.clone(),
            },
            _ => return Err("--backend af_packet needs --iface and --pcscf".into()),
        },
        BackendKind::Dpdk => match (&g.eal_args, g.pcscf) {
            (Some(eal), Some(pcscf)) => Backend::Dpdk {
                port: DpdkPortSpec::new(eal, g.dpdk_port.as_deref())?,
                pcscf,
                more_pcscfs: cli.more_pcscf.clone(),
            },
            _ => return Err("--backend dpdk needs --eal-args and --pcscf".into()),
        },
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.backend == BackendKind::Dpdk && akagate_sys::require_dpdk().is_err() {
        eprintln!("akabench: --backend dpdk: {}", akagate_sys::DPDK_HOWTO);
        return ExitCode::from(EXIT_NOT_BUILT);
    }
    let backend = backend(&cli).unwrap_or_else(|e| usage_error::<Cli>(e));
    init_logging("akabench");
    let subscribers = match load_subscribers(&cli.subscribers) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("akabench: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let cfg = LoadConfig {
        subscribers,
        ues: usize::try_from(cli.ues).unwrap_or(usize::MAX),
        calls: usize::try_from(cli.calls).unwrap_or(usize::MAX),
        transport: match cli.transport {
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Udp => Transport::Udp,
        },
        alg: cli.suite.alg,
        ealg: cli.suite.ealg,
        ipv6: cli.ipv6,
        concurrency: usize::try_from(cli.concurrency).unwrap_or(usize::MAX),
        hold: Duration::from_millis(cli.hold_ms),
        reregister: cli.reregister,
        deregister: cli.deregister,
        timeout: std::time::Duration::from_secs(
            cli.timeout_s
                .unwrap_or_else(|| 300u64.saturating_add(cli.ues / 100)),
        ),
        backend,
        progress: !cli.quiet,
    };
    let open = OpenLoop {
        reg_rate: cli.reg_rate,
        call_rate: cli.call_rate,
    };
    let report = match run_open(cfg, open) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("akabench: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Output errors (e.g. a closed pipe) must not turn a good run into a failure.
    let _ = write!(std::io::stdout(), "{}", report.summary());
    if let Err(status) = write_report("akabench", &cli.report, &report) {
        return status;
    }
    let all_ok = report.registration_failures == 0
        && report.call_failures == 0
        && report.failures_by_cause.is_empty()
        && report.registered == cli.ues
        && report.calls_completed == cli.calls;
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
