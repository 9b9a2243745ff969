//! `akagate`: the P-CSCF security edge daemon.

fn main() {
    eprintln!("akagate: the daemon is not wired yet (see issue 5)");
    std::process::exit(2);
}
