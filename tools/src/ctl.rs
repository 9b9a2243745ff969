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
/// How long to wait for the daemon's answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable naming the socket when `--socket` is absent.
pub const SOCKET_ENV: &str = "AKAGATE_SOCKET";

/// Options of `stats`, `sas` and `registrations`.
#[derive(Debug, Default, PartialEq, Eq, clap::Args)]
pub struct CtlArgs {
    /// The daemon's control socket (default: $AKAGATE_SOCKET, else the daemon's default paths)
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// Print the daemon's JSON answer instead of tables
    #[arg(long)]
    pub(crate) json: bool,
}

/// Options of `keys`.
#[derive(Debug, Default, PartialEq, Eq, clap::Args)]
pub struct KeysArgs {
    /// The daemon's control socket (default: $AKAGATE_SOCKET, else the daemon's default paths)
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Write the keys to FILE as a Wireshark esp_sa file (mode 0600)
    #[arg(long, value_name = "FILE", required_unless_present = "json")]
    wireshark: Option<PathBuf>,
    /// Print the daemon's JSON answer (with the keys)
    #[arg(long)]
    json: bool,
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
    ask_request(path, cmd, &serde_json::json!({ "cmd": cmd }))
}

/// Sends `request` (whose command is `cmd`) and returns the answer's `cmd` member.
fn ask_request(path: &Path, cmd: &str, request: &Value) -> Result<Value, String> {
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
        .write_all(format!("{request}\n").as_bytes())
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

/// Runs `akactl stats|sas|registrations` (`cmd`) and prints the answer.
pub fn main(cmd: &str, args: &CtlArgs) -> ExitCode {
    finish(cmd, query(cmd, args))
}

/// Options of `deregister`.
#[derive(Debug, Default, PartialEq, Eq, clap::Args)]
pub struct DeregisterArgs {
    /// The daemon's control socket (default: $AKAGATE_SOCKET, else the daemon's default paths)
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// The public identity (or IMPI) whose registration ends
    #[arg(value_name = "IMPU")]
    pub(crate) impu: String,
}

/// Runs `akactl deregister IMPU`: the daemon ends that registration (its reg-event
/// subscribers are notified and its dialogs released through its SAs, then the SAs go).
pub fn main_deregister(args: &DeregisterArgs) -> ExitCode {
    let request = serde_json::json!({ "cmd": "deregister", "impu": args.impu });
    let result = socket_path(args.socket.clone())
        .and_then(|path| ask_request(&path, "deregister", &request))
        .map(|body| {
            let impi = body.get("impi").and_then(Value::as_str).unwrap_or("?");
            Zeroizing::new(format!("de-registered {impi}\n"))
        });
    finish("deregister", result)
}

/// Runs `akactl keys` and prints or writes the keys.
pub fn main_keys(args: &KeysArgs) -> ExitCode {
    let result = socket_path(args.socket.clone())
        .and_then(|path| ask(&path, "keys"))
        .and_then(|body| keys(&body, args.json, args.wireshark.as_deref()));
    finish("keys", result)
}

/// Prints `result`'s text, or its error as `akactl CMD: error` with exit status 1.
fn finish(cmd: &str, result: Result<Zeroizing<String>, String>) -> ExitCode {
    match result {
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

fn query(cmd: &str, opts: &CtlArgs) -> Result<Zeroizing<String>, String> {
    let path = socket_path(opts.socket.clone())?;
    let body = ask(&path, cmd)?;
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
