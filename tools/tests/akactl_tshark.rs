//! An independent check of our ESP and of the Wireshark key export: a UE registers with the
//! daemon (protected REGISTER through ESP built by our outbound SA, 200 OK encrypted by the
//! daemon), the frames go into a pcap, `akactl keys --wireshark` writes the esp_sa file from
//! the daemon's socket, and tshark (a third implementation) must decrypt both SIP messages.
//! Skipped, with the reason printed, when tshark is not installed.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_akactl");

fn tshark_available() -> bool {
    match Command::new("tshark").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("SKIPPED: tshark is not installed (apt-get install tshark)");
            false
        }
    }
}

/// Runs tshark over `pcap` with the esp_sa lines of `esp_sa` as `-o uat:esp_sa:` records,
/// returning one line per decoded SIP message: `method|status|esp.spi`.
fn tshark_sip(pcap: &Path, esp_sa: &str) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-o", "esp.enable_encryption_decode:TRUE"])
        .args(["-o", "esp.enable_authentication_check:TRUE"]);
    for line in esp_sa.lines().filter(|l| !l.starts_with('#')) {
        cmd.arg("-o").arg(format!("uat:esp_sa:{line}"));
    }
    cmd.args(["-Y", "sip", "-T", "fields", "-E", "separator=|"])
        .args(["-e", "sip.Method", "-e", "sip.Status-Code", "-e", "esp.spi"])
        .args(["-e", "esp.icv_good"]);
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn check_suite(name: &str, auth: AuthAlg, encr: EncrAlg) {
    if !tshark_available() {
        return;
    }
    let dir = temp_dir(&format!("control-tshark-{name}"));
    let mut h = start(&dir, "allow-key-export = true");
    h.ue.learn_arp();
    let reg = h.ue.register(auth, encr);
    let pcap = dir.join("capture.pcap");
    write_pcap(&pcap, &h.ue.frames);
    let esp_sa = dir.join("esp_sa");
    let out = Command::new(BIN)
        .args(["keys", "--socket"])
        .arg(&h.socket)
        .arg("--wireshark")
        .arg(&esp_sa)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "wrote 4 SA(s) to {} (Wireshark esp_sa; contains keys)\n",
            esp_sa.display()
        )
    );
    let text = std::fs::read_to_string(&esp_sa).unwrap();

    // Before decryption only the clear REGISTER and 401 are SIP; with the keys tshark also
    // finds the protected REGISTER (our ESP) and the 200 OK (the daemon's ESP).
    let without = tshark_sip(&pcap, "");
    assert_eq!(without.len(), 2, "{without:?}");
    let with = tshark_sip(&pcap, &text);
    // The last field is tshark's own ICV check (HMAC with the exported integrity key, or the
    // GCM tag) of the protected REGISTER (spi_ps) and the 200 OK (spi_uc).
    let want = vec![
        "REGISTER|||".to_string(),
        "|401||".to_string(),
        format!("REGISTER||{}|1", reg.spi_ps),
        format!("|200|{SPI_UC}|1"),
    ];
    let got: Vec<String> = with
        .iter()
        .map(|l| {
            // esp.spi prints as hex (0x...), normalise to decimal.
            let mut f: Vec<String> = l.split('|').map(str::to_string).collect();
            if let Some(spi) = f.get_mut(2).filter(|s| s.starts_with("0x")) {
                *spi = u32::from_str_radix(&spi[2..], 16).unwrap().to_string();
            }
            if let Some(icv) = f.get_mut(3) {
                *icv = icv.replace("True", "1").replace("False", "0");
            }
            f.join("|")
        })
        .collect();
    assert_eq!(got, want, "tshark with {text}");
    h.handle.shutdown().unwrap();
}

#[test]
fn tshark_decrypts_aes_cbc_hmac_sha1_96() {
    check_suite("aes-cbc-sha1", AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
}

#[test]
fn tshark_decrypts_null_hmac_md5_96() {
    check_suite("null-md5", AuthAlg::HmacMd5_96, EncrAlg::Null);
}

#[test]
fn tshark_decrypts_des_ede3_cbc_hmac_md5_96() {
    check_suite("3des-md5", AuthAlg::HmacMd5_96, EncrAlg::DesEde3Cbc);
}

#[test]
fn tshark_decrypts_aes_gcm() {
    check_suite("aes-gcm", AuthAlg::HmacSha1_96, EncrAlg::AesGcm);
}
