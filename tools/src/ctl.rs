//! `akactl stats|sas|registrations|keys`: asks the daemon over its control socket (one JSON
//! line each way) and prints human tables, the raw JSON (`--json`), or for `keys` a Wireshark
//! `esp_sa` file.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use zeroize::Zeroizing;

use crate::tables;
use crate::wireshark::{esp_sa_file, KeyRecord};

/// Exit status when the daemon cannot be reached or refuses the request.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage error (as for the other subcommands).
const EXIT_USAGE: u8 = 2;
/// How long to wait for the daemon's answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable naming the socket when `--socket` is absent.
pub const SOCKET_ENV: &str = "AKAGATE_SOCKET";

/// Options of the control subcommands.
#[derive(Debug, Default, PartialEq, Eq)]
struct CtlArgs {
    socket: Option<PathBuf>,
    json: bool,
    wireshark: Option<PathBuf>,
}

fn parse_args(cmd: &str, args: &[String]) -> Result<CtlArgs, String> {
    let mut out = CtlArgs::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name}: missing value"))
        };
        let given_twice = || Err(format!("{name}: given more than once"));
        match name {
            "--socket" if out.socket.is_some() => return given_twice(),
            "--socket" => out.socket = Some(value(name)?.into()),
            "--wireshark" if cmd == "keys" && out.wireshark.is_some() => return given_twice(),
            "--wireshark" if cmd == "keys" => out.wireshark = Some(value(name)?.into()),
            "--json" if inline.is_some() => return Err("--json takes no value".into()),
            "--json" if out.json => return given_twice(),
            "--json" => out.json = true,
            _ if name.starts_with("--") => return Err(format!("{name}: unknown option")),
            _ => return Err(format!("unexpected argument '{arg}'")),
        }
    }
    if cmd == "keys" && out.wireshark.is_none() && !out.json {
        return Err("--wireshark FILE (or --json) is required".into());
    }
    Ok(out)
}

/// Where the socket is: `--socket`, else `$AKAGATE_SOCKET`, else the first of the daemon's
/// default paths that exists.
fn socket_path(arg: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = arg {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(d).join("akagate.sock"));
    }
    candidates.push(PathBuf::from("/run/akagate/akagate.sock"));
    candidates.push(
        std::env::temp_dir()
            .join("akagate-demo")
            .join("akagate.sock"),
    );
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => Ok(p.clone()),
        None => Err(format!(
            "no control socket found (tried {}); is akagate running? Use --socket PATH",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Sends `{"cmd":cmd}` and returns the answer's `cmd` member. The raw answer line is kept in
/// a zeroizing buffer (a `keys` answer holds keys).
fn ask(path: &Path, cmd: &str) -> Result<Value, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to {}: {e}; is akagate running?",
            path.display()
        )
    })?;
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream
        .write_all(format!("{{\"cmd\":\"{cmd}\"}}\n").as_bytes())
        .map_err(io)?;
    let mut line = Zeroizing::new(Vec::new());
    BufReader::new(&stream)
        .read_until(b'\n', &mut line)
        .map_err(io)?;
    if line.is_empty() {
        return Err(format!(
            "{}: the daemon closed the connection",
            path.display()
        ));
    }
    let v: Value = serde_json::from_slice(&line)
        .map_err(|e| format!("{}: unreadable answer: {e}", path.display()))?;
    if v.get("ok") != Some(&Value::Bool(true)) {
        let msg = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("refused without a reason");
        return Err(format!("the daemon refused '{cmd}': {msg}"));
    }
    v.get(cmd)
        .cloned()
        .ok_or_else(|| format!("answer without \"{cmd}\""))
}

/// Runs `akactl <cmd> ...` for `stats`, `sas`, `registrations` and `keys`.
pub fn main(cmd: &str, args: &[String]) -> ExitCode {
    let opts = match parse_args(cmd, args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("akactl {cmd}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(cmd, opts) {
        Ok(out) => {
            print!("{}", out.as_str());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("akactl {cmd}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cmd: &str, opts: CtlArgs) -> Result<Zeroizing<String>, String> {
    let path = socket_path(opts.socket)?;
    let body = ask(&path, cmd)?;
    if cmd == "keys" {
        return keys(&body, opts.json, opts.wireshark.as_deref());
    }
    if opts.json {
        return Ok(Zeroizing::new(format!("{body}\n")));
    }
    Ok(Zeroizing::new(match cmd {
        "stats" => tables::stats(&body)?,
        "sas" => tables::sas(&body)?,
        _ => tables::registrations(&body)?,
    }))
}

fn keys(body: &Value, json: bool, file: Option<&Path>) -> Result<Zeroizing<String>, String> {
    let records = body
        .as_array()
        .ok_or("\"keys\" is not an array")?
        .iter()
        .map(KeyRecord::from_json)
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Zeroizing::new(String::new());
    if json {
        out.push_str(&body.to_string());
        out.push('\n');
    }
    if let Some(file) = file {
        let (text, n) = esp_sa_file(&records);
        let text = Zeroizing::new(text);
        write_private(file, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        for line in text.lines().filter(|l| l.starts_with("# skipped")) {
            eprintln!("akactl keys: {}", line.trim_start_matches("# "));
        }
        if !json {
            out.push_str(&format!(
                "wrote {n} SA(s) to {} (Wireshark esp_sa; contains keys)\n",
                file.display()
            ));
        }
    }
    Ok(out)
}

/// Writes `bytes` to a file only its owner can read (it holds keys).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_and_misuse_is_named() {
        assert_eq!(
            parse_args("stats", &args(&["--socket", "/s", "--json"])),
            Ok(CtlArgs {
                socket: Some("/s".into()),
                json: true,
                wireshark: None
            })
        );
        assert_eq!(
            parse_args("keys", &args(&["--socket=/s", "--wireshark=/f"])),
            Ok(CtlArgs {
                socket: Some("/s".into()),
                json: false,
                wireshark: Some("/f".into())
            })
        );
        assert_eq!(
            parse_args("keys", &args(&["--socket", "/s"])),
            Err("--wireshark FILE (or --json) is required".into())
        );
        assert_eq!(
            parse_args("sas", &args(&["--wireshark", "/f"])),
            Err("--wireshark: unknown option".into())
        );
        assert_eq!(
            parse_args("sas", &args(&["--socket"])),
            Err("--socket: missing value".into())
        );
        assert_eq!(
            parse_args("sas", &args(&["--socket", "/a", "--socket", "/b"])),
            Err("--socket: given more than once".into())
        );
        assert_eq!(
            parse_args("sas", &args(&["extra"])),
            Err("unexpected argument 'extra'".into())
        );
    }
}
