//! `akapktgen`: registers N simulated UEs through akagate, pre-builds ESP-protected
//! SIP-over-TCP segments continuing their protected connections, blasts them at the gateway
//! and reports fast-path packets/s and Gbps per worker core (optionally also as a pcap).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use akagate_bench::cli::{
    init_logging, load_subscribers, usage_error, write_report, GatewayArgs, SuiteArgs,
    EXIT_FAILURE, EXIT_NOT_BUILT,
};
use akagate_bench::load::DpdkPortSpec;
use akagate_bench::pktgen::{run, PktgenConfig, Target};
use clap::{Parser, ValueEnum};

const AFTER_HELP: &str = "\
Exit status: 0 if every frame was sent (and, in-process, decapsulated with no drops),
1 otherwise (also when the subscriber file cannot be read or the report cannot be written),
2 usage error or a backend that is not in this build. RUST_LOG=info (or finer filters)
shows the gateway's log on stderr.";

/// Registers N simulated UEs through akagate, pre-builds ESP-protected SIP-over-TCP segments
/// continuing their protected connections, blasts them at the gateway and reports fast-path
/// packets/s and Gbps per worker core.
#[derive(Debug, Parser)]
#[command(name = "akapktgen", version, after_help = AFTER_HELP)]
struct Cli {
    /// Number of simulated UEs [default: 64]
    #[arg(long, value_name = "N")]
    ues: Option<usize>,
    /// Inner IP packet size (IP + TCP + SIP bytes, what ESP protects) [default: 64]
    #[arg(long, value_name = "BYTES")]
    size: Option<usize>,
    /// Segments per UE (rounded up to whole SIP messages) [default: 2000]
    #[arg(long, value_name = "P")]
    packets_per_ue: Option<usize>,
    /// Size of each SIP message in the TCP stream (>= 200) [default: 1024]
    #[arg(long, value_name = "S")]
    sip_bytes: Option<usize>,
    /// Fixed offered rate in packets per second (0: as fast as the port takes frames, the
    /// default)
    #[arg(long, value_name = "PPS")]
    rate: Option<f64>,
    #[command(flatten)]
    suite: SuiteArgs,
    /// IPv6 instead of IPv4
    #[arg(long)]
    ipv6: bool,
    /// Registrations in flight at most [default: 64]
    #[arg(long, value_name = "C")]
    concurrency: Option<usize>,
    /// Worker threads of the in-process daemon (memory backend)
    #[arg(long, value_name = "W", default_value_t = 1)]
    workers: usize,
    /// HSS subscriber file (TOML, or CSV); default: generated (seed 1); an external gateway
    /// needs the file of its HSS
    #[arg(long, value_name = "FILE")]
    subscribers: Option<PathBuf>,
    /// Packet I/O towards the gateway [default: daemon, or af_packet with --iface]
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Also write the pre-built frames as a pcap (linktype Ethernet)
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// JSON report
    #[arg(long, value_name = "FILE", default_value = "akapktgen-report.json")]
    report: PathBuf,
    /// No summary on stdout (the report is still written)
    #[arg(long)]
    quiet: bool,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The akagate daemon started in-process on the memory backend
    Daemon,
    /// Blast an external akagate (--iface X --pcscf IP) over AF_PACKET; only transmitted and
    /// returned frames are measured
    #[value(name = "af_packet")]
    AfPacket,
    /// The same over a DPDK port (build with --features dpdk; --eal-args, --pcscf)
    Dpdk,
}

/// The run the options describe, or the usage error.
fn config(cli: &Cli) -> Result<PktgenConfig, String> {
    let mut cfg = PktgenConfig::new();
    let g = &cli.gateway;
    cfg.ues = cli.ues.unwrap_or(cfg.ues);
    cfg.size = cli.size.unwrap_or(cfg.size);
    cfg.packets_per_ue = cli.packets_per_ue.unwrap_or(cfg.packets_per_ue);
    cfg.sip_bytes = cli.sip_bytes.unwrap_or(cfg.sip_bytes);
    cfg.concurrency = cli.concurrency.unwrap_or(cfg.concurrency);
    cfg.rate_pps = cli.rate.filter(|r| *r > 0.0);
    cfg.alg = cli.suite.alg;
    cfg.ealg = cli.suite.ealg;
    cfg.ipv6 = cli.ipv6;
    cfg.pcap = cli.pcap.clone();
    let pcscf = |need: &str| g.pcscf.ok_or(format!("{need} needs --pcscf"));
    let backend = match cli.backend {
        Some(b) => b,
        None if g.iface.is_some() => BackendKind::AfPacket,
        None => BackendKind::Daemon,
    };
    cfg.target = match backend {
        BackendKind::Daemon if g.iface.is_none() && g.pcscf.is_none() => Target::Daemon {
            workers: cli.workers.max(1),
        },
        BackendKind::Daemon => return Err("--iface and --pcscf are for an external akagate".into()),
        BackendKind::AfPacket => Target::AfPacket {
            iface: g.iface.clone().ok_or("--backend af_packet needs --iface")?,
            pcscf: pcscf("--iface")?,
        },
        BackendKind::Dpdk => Target::Dpdk {
            port: DpdkPortSpec::new(
                g.eal_args
                    .as_deref()
                    .ok_or("--backend dpdk needs --eal-args")?,
                g.dpdk_port.as_deref(),
            )?,
            pcscf: pcscf("--backend dpdk")?,
        },
    };
    if cli.subscribers.is_none() && !matches!(cfg.target, Target::Daemon { .. }) {
        return Err("an external gateway needs --subscribers (its HSS)".into());
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.backend == Some(BackendKind::Dpdk) && akagate_sys::require_dpdk().is_err() {
        eprintln!("akapktgen: --backend dpdk: {}", akagate_sys::DPDK_HOWTO);
        return ExitCode::from(EXIT_NOT_BUILT);
    }
    let mut cfg = config(&cli).unwrap_or_else(|e| usage_error::<Cli>(e));
    init_logging("akapktgen");
    if let Some(file) = &cli.subscribers {
        match load_subscribers(file) {
            Ok(s) => cfg.subscribers = Some(s),
            Err(e) => {
                eprintln!("akapktgen: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    let report = match run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("akapktgen: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if !cli.quiet {
        // Output errors (e.g. a closed pipe) must not turn a good run into a failure.
        let _ = write!(std::io::stdout(), "{}", report.summary());
    }
    if let Err(status) = write_report("akapktgen", &cli.report, &report) {
        return status;
    }
    let ok = report.sent == report.packets
        && report
            .gateway
            .as_ref()
            .is_none_or(|g| g.esp_in == report.packets && g.drops.is_empty());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}
