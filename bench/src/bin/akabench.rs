//! `akabench`: registers N simulated UEs against akagate, places M calls between them and
//! reports successes, failures by cause, rates and latency percentiles (also as JSON).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use akagate_bench::load::{run_open, Backend, DpdkPortSpec, LoadConfig, OpenLoop};
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Proto;
use akagate_slowpath::hss::{parse_csv, parse_toml};
use smoltcp::time::Duration;

const USAGE: &str = "\
usage: akabench --subscribers FILE --ues N [--calls M] [--transport tcp|udp]
                [--alg hmac-sha-1-96|hmac-md5-96|aes-gmac] [--ealg aes-cbc|des-ede3-cbc|aes-gcm|null]
                [--ipv6] [--concurrency C] [--hold-ms MS] [--reregister] [--deregister]
                [--timeout-s S]
                [--backend memory|inline|af_packet --iface X --pcscf IP] [--workers W]
                [--backend dpdk --eal-args \"EAL ARGS\" [--dpdk-port NAME] --pcscf IP]
                [--reg-rate R] [--call-rate C] [--report FILE] [--quiet]

  --subscribers FILE  HSS subscriber file (TOML, or CSV if it ends in .csv); the first N are used
  --backend memory    (default) the akagate daemon started in-process (W worker threads and
                      the slowpath thread) over an in-memory Ethernet pair
  --backend inline    akagate's worker and slowpath stepped in this one thread (deterministic)
  --backend af_packet UEs on interface X (of this network namespace: run under `ip netns exec`)
                      towards an akagate daemon at --pcscf IP on that link; the UEs' own
                      addresses must not be configured there (scripts/demo.sh sets this up)
  --backend dpdk      UEs on a DPDK port (build with --features dpdk) towards an akagate
                      daemon at --pcscf IP; the EAL gets --eal-args verbatim (split at spaces),
                      e.g. \"--no-huge --no-pci --vdev=net_af_packet0,iface=veth1\"; the port
                      is --dpdk-port NAME, or the first --vdev / -a device of the EAL args
  --reregister        after the calls every UE re-registers over its SAs with a new
                      Security-Client (new SPIs and ports, TS 33.203 7.4) and moves to the
                      new SAs; UEs also re-register by themselves at half the granted Expires
  --reg-rate R        open loop: start R registrations per second at fixed times (latency
                      counted from each scheduled start; --concurrency no longer limits them)
  --call-rate C       open loop: start C calls per second at fixed times
  --report FILE       JSON report (default akabench-report.json)

Exit status: 0 if every registration and call succeeded, 1 otherwise, 2 if the backend is
not in this build, 64 usage error.";

fn usage(msg: &str) -> ExitCode {
    eprintln!("akabench: {msg}\n{USAGE}");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let known = [
        "subscribers",
        "ues",
        "calls",
        "transport",
        "alg",
        "ealg",
        "concurrency",
        "hold-ms",
        "timeout-s",
        "backend",
        "iface",
        "pcscf",
        "report",
        "workers",
        "reg-rate",
        "call-rate",
        "eal-args",
        "dpdk-port",
    ];
    let (opts, flags) = match akagate_bench::cli::parse(
        &args,
        &["--ipv6", "--reregister", "--deregister", "--quiet"],
        &known,
    ) {
        Ok(akagate_bench::cli::Parsed::Help) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(akagate_bench::cli::Parsed::Args { opts, flags }) => (opts, flags),
        Err(e) => return usage(&e),
    };
    let num = |k: &str, d: u64| -> Result<u64, String> {
        opts.get(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| format!("--{k}: not a number"))
        })
    };
    let (ues, calls, conc, hold, timeout, workers) = match (
        num("ues", 0),
        num("calls", 0),
        num("concurrency", 64),
        num("hold-ms", 0),
        num("timeout-s", 300),
        num("workers", 1),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e), Ok(f)) => (a, b, c, d, e, f),
        (a, b, c, d, e, f) => {
            let err = [a, b, c, d, e, f].into_iter().find_map(Result::err);
            return usage(&err.unwrap_or_default());
        }
    };
    if ues == 0 || conc == 0 || workers == 0 {
        return usage("--ues, --concurrency and --workers must be at least 1");
    }
    let Some(file) = opts.get("subscribers") else {
        return usage("--subscribers FILE is required");
    };
    let transport = match opts.get("transport").map(String::as_str) {
        None | Some("tcp") => Proto::Tcp,
        Some("udp") => Proto::Udp,
        Some(t) => return usage(&format!("--transport {t}: tcp or udp")),
    };
    let Some(alg) = AuthAlg::from_token(opts.get("alg").map_or("hmac-sha-1-96", String::as_str))
    else {
        return usage("--alg: unknown algorithm");
    };
    let Some(ealg) = EncrAlg::from_token(opts.get("ealg").map_or("aes-cbc", String::as_str)) else {
        return usage("--ealg: unknown algorithm");
    };
    let backend = match opts.get("backend").map(String::as_str) {
        None | Some("memory") => Backend::Memory {
            subscribers: file.into(),
            workers: usize::try_from(workers).unwrap_or(1),
        },
        Some("inline") => Backend::Inline,
        Some("af_packet") => {
            let (Some(iface), Some(pcscf)) = (opts.get("iface"), opts.get("pcscf")) else {
                return usage("--backend af_packet needs --iface and --pcscf");
            };
            let Ok(pcscf) = pcscf.parse() else {
                return usage("--pcscf: not an IP address");
            };
            Backend::AfPacket {
                iface: iface.clone(),
                pcscf,
            }
        }
        Some("dpdk") => {
            if akagate_sys::require_dpdk().is_err() {
                eprintln!("akabench: --backend dpdk: {}", akagate_sys::DPDK_HOWTO);
                return ExitCode::from(2);
            }
            let (Some(eal), Some(pcscf)) = (opts.get("eal-args"), opts.get("pcscf")) else {
                return usage("--backend dpdk needs --eal-args and --pcscf");
            };
            let Ok(pcscf) = pcscf.parse() else {
                return usage("--pcscf: not an IP address");
            };
            match DpdkPortSpec::new(eal, opts.get("dpdk-port").map(String::as_str)) {
                Ok(port) => Backend::Dpdk { port, pcscf },
                Err(e) => return usage(&e),
            }
        }
        Some(b) => return usage(&format!("--backend {b}: memory, inline, af_packet or dpdk")),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return usage(&format!("{file}: {e}")),
    };
    let records = if Path::new(file)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        parse_csv(&text)
    } else {
        parse_toml(&text)
    };
    let subscribers = match records {
        Ok(r) => r,
        Err(e) => return usage(&format!("{file}: {e}")),
    };
    let cfg = LoadConfig {
        subscribers,
        ues: usize::try_from(ues).unwrap_or(usize::MAX),
        calls: usize::try_from(calls).unwrap_or(usize::MAX),
        transport,
        alg,
        ealg,
        ipv6: flags.contains("--ipv6"),
        concurrency: usize::try_from(conc).unwrap_or(usize::MAX),
        hold: Duration::from_millis(hold),
        reregister: flags.contains("--reregister"),
        deregister: flags.contains("--deregister"),
        timeout: std::time::Duration::from_secs(timeout),
        backend,
        progress: !flags.contains("--quiet"),
    };
    let rate = |k: &str| -> Result<Option<f64>, String> {
        opts.get(k).map_or(Ok(None), |v| match v.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Some(r)),
            _ => Err(format!("--{k}: a positive rate per second")),
        })
    };
    let open = match (rate("reg-rate"), rate("call-rate")) {
        (Ok(reg_rate), Ok(call_rate)) => OpenLoop {
            reg_rate,
            call_rate,
        },
        (Err(e), _) | (_, Err(e)) => return usage(&e),
    };
    let report = match run_open(cfg, open) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("akabench: {e}");
            return ExitCode::from(1);
        }
    };
    // Output errors (e.g. a closed pipe) must not turn a good run into a failure.
    let _ = write!(std::io::stdout(), "{}", report.summary());
    let out = opts
        .get("report")
        .cloned()
        .unwrap_or_else(|| "akabench-report.json".into());
    match serde_json::to_string_pretty(&report) {
        Ok(j) => {
            if let Err(e) = std::fs::write(&out, j + "\n") {
                eprintln!("akabench: {out}: {e}");
                return ExitCode::from(1);
            }
            let _ = writeln!(std::io::stdout(), "report: {out}");
        }
        Err(e) => {
            eprintln!("akabench: report: {e}");
            return ExitCode::from(1);
        }
    }
    let all_ok = report.registration_failures == 0
        && report.call_failures == 0
        && report.failures_by_cause.is_empty()
        && report.registered == ues
        && report.calls_completed == calls;
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
