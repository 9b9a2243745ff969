//! Command-line pieces shared by `akabench` and `akapktgen` (clap derive): the ESP suite, the
//! link to an external gateway, the subscriber file, the JSON report and the exit statuses.
//! Both tools report usage errors the way clap does (exit status 2).

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_slowpath::hss::{parse_csv, parse_toml, SubscriberRecord};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::CommandFactory;

/// Exit status of a run that failed (or, for the tools, did not fully succeed).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status when the asked-for backend is not in this build (as for a usage error).
pub const EXIT_NOT_BUILT: u8 = 2;

/// The ESP suite the simulated UEs offer.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Integrity algorithm offered by the UEs
    #[arg(long, value_name = "ALG", default_value = "hmac-sha-1-96", value_parser = auth_alg())]
    pub alg: AuthAlg,
    /// Encryption algorithm offered by the UEs
    #[arg(long, value_name = "EALG", default_value = "aes-cbc", value_parser = encr_alg())]
    pub ealg: EncrAlg,
}

/// Where an external akagate is: an AF_PACKET interface or a DPDK port, and its address.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GatewayArgs {
    /// Interface of the UEs' link (AF_PACKET; in this network namespace)
    #[arg(long, value_name = "X")]
    pub iface: Option<String>,
    /// The external akagate's address on that link
    #[arg(long, value_name = "IP")]
    pub pcscf: Option<IpAddr>,
    /// EAL arguments for the DPDK backend, verbatim and split at spaces, e.g.
    /// "--no-huge --no-pci --vdev=net_af_packet0,iface=veth1"
    #[arg(long, value_name = "EAL ARGS", allow_hyphen_values = true)]
    pub eal_args: Option<String>,
    /// DPDK port name (default: the first --vdev / -a device of the EAL arguments)
    #[arg(long, value_name = "NAME")]
    pub dpdk_port: Option<String>,
}

/// Parses an integrity algorithm token (the help lists the tokens).
fn auth_alg() -> impl TypedValueParser<Value = AuthAlg> {
    let all = [AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96, AuthAlg::AesGmac];
    PossibleValuesParser::new(all.map(AuthAlg::token))
        .try_map(|s| AuthAlg::from_token(&s).ok_or("unknown algorithm"))
}

/// Parses an encryption algorithm token (the help lists the tokens).
fn encr_alg() -> impl TypedValueParser<Value = EncrAlg> {
    let all = [
        EncrAlg::AesCbc,
        EncrAlg::DesEde3Cbc,
        EncrAlg::AesGcm,
        EncrAlg::Null,
    ];
    PossibleValuesParser::new(all.map(EncrAlg::token))
        .try_map(|s| EncrAlg::from_token(&s).ok_or("unknown algorithm"))
}

/// Parses a rate per second: a positive, finite number.
pub fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err("a positive rate per second".to_owned()),
    }
}

/// Reports a usage error found after clap's parse (a combination of options) the way clap
/// reports its own: `error: MSG`, the usage, exit status 2.
pub fn usage_error<C: CommandFactory>(msg: impl std::fmt::Display) -> ! {
    C::command().error(ErrorKind::ArgumentConflict, msg).exit()
}

/// Reads an HSS subscriber file: CSV if its name ends in `.csv`, else TOML.
pub fn load_subscribers(file: &Path) -> Result<Vec<SubscriberRecord>, String> {
    let name = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
    let csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let records = if csv {
        parse_csv(&text)
    } else {
        parse_toml(&text)
    };
    records.map_err(|e| format!("{name}: {e}"))
}

/// Writes `report` as pretty JSON to `out` and says so on stdout; on failure prints
/// `TOOL: error` and returns the exit status to end with.
pub fn write_report<T: serde::Serialize>(
    tool: &str,
    out: &Path,
    report: &T,
) -> Result<(), ExitCode> {
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!("{tool}: {e}");
        ExitCode::from(EXIT_FAILURE)
    };
    let json = serde_json::to_string_pretty(report).map_err(|e| failed(&format!("report: {e}")))?;
    std::fs::write(out, json + "\n").map_err(|e| failed(&format!("{}: {e}", out.display())))?;
    // Output errors (e.g. a closed pipe) must not turn a good run into a failure.
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "report: {}", out.display());
    Ok(())
}

/// Installs akagate's log subscriber on stderr when `RUST_LOG` is set, so the in-process
/// gateway's records can be seen; without it the tools print only their own output.
pub fn init_logging(tool: &str) {
    if std::env::var_os(akagate::logger::RUST_LOG).is_some() {
        if let Err(e) = akagate::logger::init(akagate::logger::LogFormat::Text) {
            eprintln!("{tool}: logging: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The shared options alone.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        suite: SuiteArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
        #[arg(long, value_parser = positive_rate)]
        rate: Option<f64>,
        #[arg(long)]
        ipv6: bool,
        #[arg(long)]
        ues: Option<u64>,
    }

    fn parse(s: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(s.split_whitespace()))
    }

    #[test]
    fn suite_defaults_tokens_and_eal_args_with_dashes() {
        let c = parse("").unwrap();
        assert_eq!(
            (c.suite.alg, c.suite.ealg),
            (AuthAlg::HmacSha1_96, EncrAlg::AesCbc)
        );
        let c = parse("--alg aes-gmac --ealg null --pcscf 10.0.0.1").unwrap();
        assert_eq!(
            (c.suite.alg, c.suite.ealg),
            (AuthAlg::AesGmac, EncrAlg::Null)
        );
        assert_eq!(c.gateway.pcscf, Some("10.0.0.1".parse().unwrap()));
        let c = Cli::try_parse_from(["t", "--eal-args", "--no-huge --vdev=x", "--ipv6"]).unwrap();
        assert_eq!(c.gateway.eal_args.as_deref(), Some("--no-huge --vdev=x"));
        assert!(c.ipv6);
    }

    #[test]
    fn misuse_is_a_clap_error() {
        let kind = |s: &str| parse(s).unwrap_err().kind();
        assert_eq!(kind("--alg md5"), ErrorKind::InvalidValue);
        assert_eq!(kind("--pcscf nowhere"), ErrorKind::ValueValidation);
        assert_eq!(kind("--rate 0"), ErrorKind::ValueValidation);
        // A value that looks like an option is not taken as the number.
        assert_eq!(kind("--ues --ipv6"), ErrorKind::InvalidValue);
        assert_eq!(kind("--ues 1 --ues 2"), ErrorKind::ArgumentConflict);
        assert_eq!(kind("--ipv6 --ipv6"), ErrorKind::ArgumentConflict);
        assert_eq!(kind("--nope"), ErrorKind::UnknownArgument);
        assert_eq!(kind("stray"), ErrorKind::UnknownArgument);
    }
}
