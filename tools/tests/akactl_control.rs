//! The built `akactl` against a running daemon's control socket (tables and `--json` after a
//! real registration) and without one (a clear error naming the socket, exit status 1).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_akactl");

fn akactl(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AKAGATE_SOCKET")
        .output()
        .expect("run akactl")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    assert!(o.stderr.is_empty(), "{o:?}");
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn tables_and_json_from_a_running_daemon() {
    let dir = temp_dir("control-akactl-tables");
    let mut h = start(&dir, "");
    h.ue.learn_arp();
    let reg = h.ue.register(AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    h.handle
        .wait_for(WAIT, |s| s.slowpath.registrations == 1)
        .unwrap();
    let sock = h.socket.to_str().unwrap().to_string();

    let sas = stdout(&akactl(&["sas", "--socket", &sock]));
    let lines: Vec<&str> = sas.lines().collect();
    assert_eq!(lines.len(), 2, "{sas}");
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        head,
        [
            "impi", "state", "ue", "local", "alg", "ealg", "spi_pc", "spi_ps", "spi_uc", "spi_us",
            "port_pc", "port_ps", "port_uc", "port_us", "expires"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    let (spi_pc, spi_ps) = (reg.spi_pc.to_string(), reg.spi_ps.to_string());
    let (uc, us) = (SPI_UC.to_string(), SPI_US.to_string());
    assert_eq!(
        row[..14],
        [
            IMPI,
            "active",
            "192.168.200.100",
            "192.168.200.1",
            "hmac-sha-1-96",
            "aes-cbc",
            spi_pc.as_str(),
            spi_ps.as_str(),
            uc.as_str(),
            us.as_str(),
            "5062",
            "5064",
            "5070",
            "5071"
        ]
    );
    // Columns line up: every row cell starts where its header starts.
    for (i, h) in head.iter().enumerate() {
        let col = lines[0].find(&format!(" {h}")).map_or(0, |p| p + 1);
        if i > 0 {
            assert_eq!(
                &lines[1][col - 2..col],
                "  ",
                "column {h} aligned in\n{sas}"
            );
        }
    }

    let regs = stdout(&akactl(&["registrations", "--socket", &sock]));
    let row = regs.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&format!(
            "{IMPI}  {IMPU},tel:+15550100  registered  192.168.200.100  udp"
        )),
        "{regs}"
    );
    assert!(
        row.ends_with(&format!("active:{spi_pc}/{spi_ps}")),
        "{regs}"
    );

    let stats = stdout(&akactl(&["stats", "--socket", &sock]));
    assert!(stats.starts_with("uptime "), "{stats}");
    assert!(
        stats.contains("; 1 worker(s); SA table 2 installed, 2 SPIs allocated of 1024\n"),
        "{stats}"
    );
    let regs_row = stats.lines().find(|l| l.starts_with("registrations "));
    assert_eq!(
        regs_row.map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["registrations", "1"]),
        "{stats}"
    );
    let esp_in = stats
        .lines()
        .find(|l| l.starts_with("esp_in "))
        .expect("esp_in row");
    let cells: Vec<&str> = esp_in.split_whitespace().collect();
    assert_eq!(cells.len(), 3, "name, w0, total: {esp_in}");
    assert_eq!(cells[1], cells[2]);

    let json = stdout(&akactl(&["sas", "--socket", &sock, "--json"]));
    assert_eq!(json.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["spi_ps"], reg.spi_ps);

    // keys without the export enabled: the daemon's refusal, exit status 1, no file.
    let file = dir.join("esp_sa");
    let o = akactl(&[
        "keys",
        "--socket",
        &sock,
        "--wireshark",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("akactl keys: the daemon refused 'keys': key export is disabled"),
        "{err}"
    );
    assert!(!file.exists());
    h.handle.shutdown().unwrap();
}

#[test]
fn without_a_daemon_each_command_fails_clearly_with_status_1() {
    let dir = temp_dir("control-akactl-nodaemon");
    let sock = dir.join("absent.sock");
    let sock = sock.to_str().unwrap();
    for cmd in ["stats", "sas", "registrations"] {
        let o = akactl(&[cmd, "--socket", sock]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(o.stdout.is_empty());
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(
            err.starts_with(&format!("akactl {cmd}: cannot connect to {sock}: ")),
            "{err}"
        );
        assert!(err.trim_end().ends_with("is akagate running?"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let o = akactl(&["keys", "--socket", sock, "--wireshark", "/dev/null"]);
    assert_eq!(o.status.code(), Some(1));
    // Usage errors are status 2, as for the other subcommands.
    let o = akactl(&["keys", "--socket", sock]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with(
            "error: the following required arguments were not provided:\n  --wireshark <FILE>\n"
        ),
        "{o:?}"
    );
    let o = akactl(&["stats", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("error: unexpected argument '--bogus'"),
        "{o:?}"
    );
    // Only keys has --wireshark; an empty --socket is no path.
    for args in [
        &["sas", "--wireshark", "/f"][..],
        &["sas", "--socket="],
        &["sas", "--socket", "/a", "--socket", "/b"],
    ] {
        assert_eq!(akactl(args).status.code(), Some(2), "{args:?}");
    }
    // $AKAGATE_SOCKET is used when --socket is absent.
    let o = Command::new(BIN)
        .arg("sas")
        .env("AKAGATE_SOCKET", sock)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(sock));
}

#[test]
fn deregister_ends_a_registration_and_removes_its_sas() {
    let dir = temp_dir("control-akactl-deregister");
    let mut h = start(&dir, "");
    h.ue.learn_arp();
    h.ue.register(AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    h.handle
        .wait_for(WAIT, |s| s.slowpath.registrations == 1)
        .unwrap();
    let sock = h.socket.to_str().unwrap().to_string();
    // Nobody by that name: exit status 1 and the daemon's reason.
    let o = akactl(&["deregister", "--socket", &sock, "sip:nobody@example.com"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such registration"));
    // By its IMPI: gone, and its SA set removed from the workers' table.
    let out = stdout(&akactl(&["deregister", "--socket", &sock, IMPU]));
    assert_eq!(out.trim(), format!("de-registered {IMPI}"));
    h.handle
        .wait_for(WAIT, |s| {
            s.slowpath.registrations == 0 && s.sa_installed == 0
        })
        .unwrap();
    assert_eq!(
        stdout(&akactl(&["sas", "--socket", &sock])).lines().count(),
        1
    );
}
