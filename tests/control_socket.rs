//! The control socket of a running daemon (memory backend): each command asked over the Unix
//! socket after a real IMS-AKA registration (UDP, protected REGISTER through ESP), checked
//! against what the UE negotiated; key export refused unless configured; bad requests answered
//! with typed errors; the socket removed at shutdown.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use serde_json::Value;
use support::*;

#[test]
fn stats_sas_and_registrations_describe_a_registered_ue() {
    let dir = temp_dir("control-socket-query");
    let mut h = start(&dir, "");
    let mode = std::fs::metadata(&h.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket readable by its owner only");
    h.ue.learn_arp();
    let reg = h.ue.register(AuthAlg::HmacSha1_96, EncrAlg::AesCbc);
    h.handle
        .wait_for(WAIT, |s| s.slowpath.registrations == 1)
        .expect("registered");

    let stats = ask(&h.socket, r#"{"cmd":"stats"}"#);
    assert_eq!(stats["ok"], true, "{stats}");
    let s = &stats["stats"];
    let snapshot = h.handle.stats();
    assert_eq!(s["workers"].as_array().unwrap().len(), 1);
    assert_eq!(s["slowpath"]["registrations"], 1);
    assert_eq!(s["slowpath"]["subscribers"], 1);
    assert_eq!(s["slowpath"]["sa_sets_installed"], 1);
    assert_eq!(s["sa_table"]["capacity"], 1024);
    assert_eq!(s["sa_table"]["installed"], snapshot.sa_installed);
    // Every worker counter of the snapshot is there by name.
    for (d, _) in snapshot.workers[0].counters.iter() {
        assert!(
            s["workers"][0]["counters"].get(d.name).is_some(),
            "{}",
            d.name
        );
    }
    assert!(s["workers"][0]["counters"]["esp_in"].as_u64().unwrap() >= 1);
    assert!(s["workers"][0]["counters"]["esp_out"].as_u64().unwrap() >= 1);
    assert!(s["workers"][0]["queue"]["rx_packets"].as_u64().unwrap() >= 3);

    let sas = ask(&h.socket, r#"{"cmd":"sas"}"#);
    let sets = sas["sas"].as_array().expect("sas array");
    assert_eq!(sets.len(), 1, "{sas}");
    let set = &sets[0];
    assert_eq!(set["impi"], IMPI);
    assert_eq!(set["state"], "active");
    assert_eq!(set["ue"], UE_V4.to_string());
    assert_eq!(set["local"], PCSCF_V4.to_string());
    assert_eq!(set["alg"], "hmac-sha-1-96");
    assert_eq!(set["ealg"], "aes-cbc");
    assert_eq!(set["spi_pc"], reg.spi_pc);
    assert_eq!(set["spi_ps"], reg.spi_ps);
    assert_eq!(set["spi_uc"], SPI_UC);
    assert_eq!(set["spi_us"], SPI_US);
    assert_eq!(
        (
            &set["port_pc"],
            &set["port_ps"],
            &set["port_uc"],
            &set["port_us"]
        ),
        (
            &Value::from(PORT_PC),
            &Value::from(PORT_PS),
            &Value::from(PORT_UC),
            &Value::from(PORT_US)
        )
    );
    let exp = set["expires_in_s"].as_u64().unwrap();
    assert!((3500..=3600).contains(&exp), "{exp}");
    // No key material in the SA listing.
    let text = sas.to_string();
    assert!(!text.contains("key"), "{text}");
    assert!(
        !text.contains(&hex::encode(&reg.suite.keys.encr_key)),
        "{text}"
    );

    let regs = ask(&h.socket, r#"{"cmd":"registrations"}"#);
    let list = regs["registrations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{regs}");
    let r = &list[0];
    assert_eq!(r["impi"], IMPI);
    assert_eq!(r["impus"], serde_json::json!([IMPU, "tel:+15550100"]));
    assert_eq!(r["registered"], true);
    assert_eq!(r["ue"], UE_V4.to_string());
    assert_eq!(r["transport"], "udp");
    let contact = header(&reg.ok, "Contact").unwrap_or_default().to_string();
    assert!(
        contact.contains(r["contact"].as_str().unwrap()),
        "{contact} vs {r}"
    );
    assert_eq!(r["sa_sets"][0]["state"], "active");
    assert_eq!(r["sa_sets"][0]["spi_ps"], reg.spi_ps);

    // Key export is off by default: refused, and no keys in the answer.
    let keys = ask(&h.socket, r#"{"cmd":"keys"}"#);
    assert_eq!(keys["ok"], false);
    assert!(
        keys["error"].as_str().unwrap().contains("allow-key-export"),
        "{keys}"
    );

    let socket = h.socket.clone();
    h.handle.shutdown().unwrap();
    assert!(!socket.exists(), "socket removed at shutdown");
}

#[test]
fn keys_are_exported_when_allowed_and_match_the_negotiated_suite() {
    let dir = temp_dir("control-socket-keys");
    let mut h = start(&dir, "allow-key-export = true");
    h.ue.learn_arp();
    let reg = h.ue.register(AuthAlg::HmacMd5_96, EncrAlg::DesEde3Cbc);
    let keys = ask(&h.socket, r#"{"cmd":"keys"}"#);
    assert_eq!(keys["ok"], true, "{keys}");
    let list = keys["keys"].as_array().unwrap();
    assert_eq!(list.len(), 4, "four SAs per set: {keys}");
    let ue = UE_V4.to_string();
    let us = PCSCF_V4.to_string();
    let mut seen: Vec<(String, String, u64)> = list
        .iter()
        .map(|k| {
            assert_eq!(k["alg"], "hmac-md5-96");
            assert_eq!(k["ealg"], "des-ede3-cbc");
            // TS 33.203 Annex I: hmac-md5-96 uses IK; des-ede3-cbc CK1||CK2||CK1.
            assert_eq!(k["integ_key"], hex::encode(&reg.suite.keys.integ_key));
            assert_eq!(k["encr_key"], hex::encode(&reg.suite.keys.encr_key));
            assert_eq!(k["encr_key"].as_str().unwrap().len(), 48);
            (
                k["src"].as_str().unwrap().to_string(),
                k["dst"].as_str().unwrap().to_string(),
                k["spi"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort_by_key(|s| s.2);
    let mut want = vec![
        (ue.clone(), us.clone(), u64::from(reg.spi_ps)),
        (ue.clone(), us.clone(), u64::from(reg.spi_pc)),
        (us.clone(), ue.clone(), u64::from(SPI_UC)),
        (us, ue, u64::from(SPI_US)),
    ];
    want.sort_by_key(|s| s.2);
    assert_eq!(seen, want);
    h.handle.shutdown().unwrap();
}

#[test]
fn bad_requests_get_typed_errors_and_the_connection_serves_several_lines() {
    let dir = temp_dir("control-socket-errors");
    let h = start(&dir, "");
    let mut s = UnixStream::connect(&h.socket).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(
        b"not json\n{\"cmd\":\"reboot\"}\n{\"nocmd\":1}\n\n{\"cmd\":\"sas\"}\n{\"cmd\":\"registrations\"}\n",
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut next = || {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let a = next();
    assert_eq!(a["ok"], false);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .starts_with("request is not a JSON object"),
        "{a}"
    );
    let b = next();
    assert_eq!(
        b["error"],
        "unknown command \"reboot\" (known: stats, sas, registrations, keys, deregister)"
    );
    assert_eq!(next()["error"], "request has no \"cmd\" string");
    // The blank line is skipped; the next answers are the two queries, in order.
    assert_eq!(next(), serde_json::json!({"ok": true, "sas": []}));
    assert_eq!(next(), serde_json::json!({"ok": true, "registrations": []}));

    // An over-long line is refused and the connection closed.
    let mut s2 = UnixStream::connect(&h.socket).unwrap();
    s2.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s2.write_all(&vec![b'x'; 5000]);
    let mut line = String::new();
    BufReader::new(&s2).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"], "request longer than 4096 bytes");
    drop(h);
}

#[test]
fn a_configured_socket_in_use_is_a_start_error_and_a_stale_one_is_replaced() {
    let dir = temp_dir("control-socket-in-use");
    let h = start(&dir, "");
    let config = config_in(&dir, "");
    let err = akagate::Daemon::start(&config, akagate::StartOptions::unpinned()).unwrap_err();
    assert!(
        err.to_string().contains("another akagate is listening"),
        "{err}"
    );
    drop(h);
    // A stale socket file (nobody listening) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(dir.join("ctl.sock")).unwrap();
    drop(stale);
    assert!(dir.join("ctl.sock").exists());
    let h = start(&dir, "");
    assert_eq!(ask(&h.socket, r#"{"cmd":"sas"}"#)["ok"], true);
    // Something that is not a socket is never removed.
    drop(h);
    std::fs::write(dir.join("ctl.sock"), "precious").unwrap();
    let err = akagate::Daemon::start(&config, akagate::StartOptions::unpinned()).unwrap_err();
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("ctl.sock")).unwrap(),
        "precious"
    );
}
