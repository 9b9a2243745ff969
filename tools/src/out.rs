//! Writing an answer to stdout: a reader that went away (`akactl sas --json | head`) ends the
//! command quietly instead of panicking as `print!` does on EPIPE.

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

/// Writes `text` to stdout. A closed pipe exits quietly with success (the reader took what
/// it wanted); any other write error is reported as `akactl CMD: ...` with status 1.
pub fn write_stdout(cmd: &str, text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("akactl {cmd}: cannot write the answer: {e}");
            ExitCode::from(1)
        }
    }
}
