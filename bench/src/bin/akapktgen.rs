//! `akapktgen`: registers N simulated UEs through akagate, pre-builds ESP-protected
//! SIP-over-TCP segments continuing their protected connections, blasts them at the gateway
//! and reports fast-path packets/s and Gbps per worker core (optionally also as a pcap).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use akagate_bench::load::DpdkPortSpec;
use akagate_bench::pktgen::{run, PktgenConfig, Target};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::{parse_csv, parse_toml};

const USAGE: &str = "\
usage: akapktgen [--ues N] [--size BYTES] [--packets-per-ue P] [--sip-bytes S] [--rate PPS]
                 [--alg hmac-sha-1-96|hmac-md5-96|aes-gmac] [--ealg aes-cbc|des-ede3-cbc|aes-gcm|null]
                 [--ipv6] [--concurrency C] [--workers W] [--subscribers FILE]
                 [--backend daemon|af_packet|dpdk] [--iface X] [--pcscf IP]
                 [--eal-args \"EAL ARGS\"] [--dpdk-port NAME]
                 [--pcap FILE] [--report FILE] [--quiet]

  --size BYTES        inner IP packet size (IP + TCP + SIP bytes, what ESP protects); default 64
  --packets-per-ue P  segments per UE (rounded up to whole SIP messages); default 2000
  --sip-bytes S       size of each SIP message in the TCP stream (>= 200); default 1024
  --rate PPS          fixed offered rate; default: as fast as the port takes frames
  --workers W         worker threads of the in-process daemon (memory backend, default 1)
  --backend daemon    (default without --iface) the akagate daemon started in-process on
                      the memory backend
  --backend af_packet (default with --iface) --iface X --pcscf IP: blast an external akagate
                      over AF_PACKET (needs --subscribers matching its HSS; only transmit and
                      returned frames are measured)
  --backend dpdk      --eal-args \"...\" --pcscf IP: the same over a DPDK port (build with
                      --features dpdk); the EAL gets --eal-args verbatim (split at spaces), e.g.
                      \"--no-huge --no-pci --vdev=net_af_packet0,iface=veth1\"; the port is
                      --dpdk-port NAME, or the first --vdev / -a device of the EAL args
  --subscribers FILE  HSS subscriber file (TOML, or CSV); default: generated (seed 1)
  --pcap FILE         also write the pre-built frames as a pcap (linktype Ethernet)
  --report FILE       JSON report (default akapktgen-report.json)

Exit status: 0 if every frame was sent (and, in-process, decapsulated with no drops),
1 otherwise, 2 if the backend is not in this build, 64 usage error.";

fn usage(msg: &str) -> ExitCode {
    eprintln!("akapktgen: {msg}\n{USAGE}");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let known = [
        "ues",
        "size",
        "packets-per-ue",
        "sip-bytes",
        "rate",
        "alg",
        "ealg",
        "concurrency",
        "workers",
        "subscribers",
        "iface",
        "pcscf",
        "pcap",
        "report",
        "backend",
        "eal-args",
        "dpdk-port",
    ];
    let (opts, flags) = match akagate_bench::cli::parse(&args, &["--ipv6", "--quiet"], &known) {
        Ok(akagate_bench::cli::Parsed::Help) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(akagate_bench::cli::Parsed::Args { opts, flags }) => (opts, flags),
        Err(e) => return usage(&e),
    };
    if opts.get("backend").map(String::as_str) == Some("dpdk")
        && akagate_sys::require_dpdk().is_err()
    {
        eprintln!("akapktgen: --backend dpdk: {}", akagate_sys::DPDK_HOWTO);
        return ExitCode::from(2);
    }
    let mut cfg = PktgenConfig::new();
    let num = |k: &str, d: usize| -> Result<usize, String> {
        opts.get(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| format!("--{k}: not a number"))
        })
    };
    let parsed = (|| -> Result<(), String> {
        cfg.ues = num("ues", cfg.ues)?;
        cfg.size = num("size", cfg.size)?;
        cfg.packets_per_ue = num("packets-per-ue", cfg.packets_per_ue)?;
        cfg.sip_bytes = num("sip-bytes", cfg.sip_bytes)?;
        cfg.concurrency = num("concurrency", cfg.concurrency)?;
        let workers = num("workers", 1)?;
        if let Some(r) = opts.get("rate") {
            let r: f64 = r.parse().map_err(|_| "--rate: not a number".to_string())?;
            cfg.rate_pps = (r > 0.0).then_some(r);
        }
        if let Some(a) = opts.get("alg") {
            cfg.alg = AuthAlg::from_token(a).ok_or("--alg: unknown algorithm")?;
        }
        if let Some(e) = opts.get("ealg") {
            cfg.ealg = EncrAlg::from_token(e).ok_or("--ealg: unknown algorithm")?;
        }
        cfg.ipv6 = flags.contains("--ipv6");
        cfg.pcap = opts.get("pcap").map(Into::into);
        let pcscf = |need: &str| -> Result<std::net::IpAddr, String> {
            let p = opts.get("pcscf").ok_or(format!("{need} needs --pcscf"))?;
            p.parse()
                .map_err(|_| "--pcscf: not an IP address".to_string())
        };
        let backend = match opts.get("backend").map(String::as_str) {
            Some(b) => b,
            None if opts.contains_key("iface") => "af_packet",
            None => "daemon",
        };
        cfg.target = match backend {
            "daemon" if !opts.contains_key("iface") && !opts.contains_key("pcscf") => {
                Target::Daemon {
                    workers: workers.max(1),
                }
            }
            "daemon" => return Err("--iface and --pcscf are for an external akagate".into()),
            "af_packet" => Target::AfPacket {
                iface: opts
                    .get("iface")
                    .ok_or("--backend af_packet needs --iface")?
                    .clone(),
                pcscf: pcscf("--iface")?,
            },
            "dpdk" => Target::Dpdk {
                port: DpdkPortSpec::new(
                    opts.get("eal-args")
                        .ok_or("--backend dpdk needs --eal-args")?,
                    opts.get("dpdk-port").map(String::as_str),
                )?,
                pcscf: pcscf("--backend dpdk")?,
            },
            b => return Err(format!("--backend {b}: daemon, af_packet or dpdk")),
        };
        if let Some(file) = opts.get("subscribers") {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            let csv = Path::new(file)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let recs = if csv {
                parse_csv(&text)
            } else {
                parse_toml(&text)
            };
            cfg.subscribers = Some(recs.map_err(|e| format!("{file}: {e}"))?);
        } else if !matches!(cfg.target, Target::Daemon { .. }) {
            return Err("an external gateway needs --subscribers (its HSS)".into());
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        return usage(&e);
    }
    let report = match run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("akapktgen: {e}");
            return ExitCode::from(1);
        }
    };
    if !flags.contains("--quiet") {
        let _ = write!(std::io::stdout(), "{}", report.summary());
    }
    let out = opts
        .get("report")
        .cloned()
        .unwrap_or_else(|| "akapktgen-report.json".into());
    match serde_json::to_string_pretty(&report) {
        Ok(j) => {
            if let Err(e) = std::fs::write(&out, j + "\n") {
                eprintln!("akapktgen: {out}: {e}");
                return ExitCode::from(1);
            }
            let _ = writeln!(std::io::stdout(), "report: {out}");
        }
        Err(e) => {
            eprintln!("akapktgen: report: {e}");
            return ExitCode::from(1);
        }
    }
    let ok = report.sent == report.packets
        && report
            .gateway
            .as_ref()
            .is_none_or(|g| g.esp_in == report.packets && g.drops.is_empty());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
