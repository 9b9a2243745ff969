//! The Prometheus endpoint of a running daemon (memory backend, `[metrics] listen` on a port
//! the system picks): scraped with a raw TCP client, the answer is checked line by line
//! against the text exposition format 0.0.4 (metric and label name charsets, `# HELP` and
//! `# TYPE` once per family and before its samples, counters named `_total`), counters are
//! seen to move after real traffic (ARP, a Boghe client's REGISTER answered with a 401 and an
//! SA set, a malformed request), and HTTP misuse gets 404 / 405 / 400 / 431.
//! `transport-protocol` is checked end to end too: a UDP REGISTER to a TCP-only port is
//! counted and never challenged.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use akagate::config::Transport;
use akagate::DaemonHandle;
use smoltcp::wire::{EthernetFrame, IpProtocol, Ipv4Packet, UdpPacket};
use support::{
    memory_config, start_memory, subscriber, temp_dir, write_subscribers, Ue, IMPI, IMPU, WAIT,
};

/// A real client's initial REGISTER (see tests/fixtures/daemon/README.md).
const REGISTER: &str =
    include_str!("fixtures/daemon/01_register_initial_security_client_boghe_openims.sip");
/// The UE's SIP port in the fixture.
const UE_SIP_PORT: u16 = 63373;

/// Starts a daemon with alice (TS 35.208 4.3.1 Test Set 1 keys) and the metrics endpoint on
/// 127.0.0.1:0, SIP over `transports`; returns it with the UE.
fn start(dir: &Path, transports: &[Transport]) -> (DaemonHandle, Ue) {
    write_subscribers(dir, &[subscriber(IMPI, &[IMPU])]);
    let config = akagate::config::ConfigTemplate {
        transports: transports.to_vec(),
        control_socket: Some("ctl.sock".into()),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..memory_config()
    }
    .write(&dir.join("akagate.toml"))
    .unwrap();
    start_memory(&config)
}

/// A UDP datagram from the UE's SIP port to 5060.
fn udp_to_5060(ue: &mut Ue, payload: &[u8]) {
    ue.udp(UE_SIP_PORT, 5060, payload);
}

/// Every frame the daemon sent within `d`, as the UDP payloads to the UE's SIP port.
fn sip_answers(ue: &mut Ue, d: Duration) -> Vec<String> {
    let end = Instant::now() + d;
    let mut out = Vec::new();
    while Instant::now() < end {
        for f in ue.received() {
            let Ok(eth) = EthernetFrame::new_checked(&f[..]) else {
                continue;
            };
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                continue;
            };
            if ip.next_header() != IpProtocol::Udp {
                continue;
            }
            if let Ok(udp) = UdpPacket::new_checked(ip.payload()) {
                if udp.dst_port() == UE_SIP_PORT {
                    out.push(String::from_utf8_lossy(udp.payload()).into_owned());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The scrape and the format check.

/// One HTTP exchange over a fresh connection: (status code, headers, body).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    if !request.starts_with(b"HEAD ") {
        assert_eq!(length, body.len(), "Content-Length matches the body");
    }
    assert!(head.contains("\r\nConnection: close"), "{head}");
    (status, head.to_string(), body.to_string())
}

fn scrape(addr: SocketAddr) -> String {
    let (status, head, body) = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    check_exposition(&body)
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Checks the text format line by line and returns `text`; panics naming the line at fault.
fn check_exposition(text: &str) -> String {
    assert!(text.ends_with('\n'), "the last line ends with a line feed");
    let mut helped: HashSet<String> = HashSet::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    let mut samples = 0;
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", i + 1);
        assert!(!line.is_empty(), "{at}: empty line");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(&at);
            assert!(is_metric_name(name), "{at}: metric name");
            assert!(!help.trim().is_empty(), "{at}: empty help");
            assert!(
                !finished.contains(name),
                "{at}: family {name} written twice"
            );
            assert!(helped.insert(name.to_string()), "{at}: second HELP");
            if let Some(c) = current.replace(name.to_string()) {
                if c != name {
                    finished.insert(c);
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&at);
            assert_eq!(
                current.as_deref(),
                Some(name),
                "{at}: TYPE right after its HELP"
            );
            assert!(matches!(kind, "counter" | "gauge"), "{at}: type");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{at}: counters end in _total");
            }
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "{at}: second TYPE"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "{at}: unknown comment");
        // A sample: name, optional {labels}, one space, value.
        let (series_id, value) = line.rsplit_once(' ').expect(&at);
        let (name, labels) = match series_id.split_once('{') {
            Some((n, l)) => (n, Some(l.strip_suffix('}').expect(&at))),
            None => (series_id, None),
        };
        assert!(is_metric_name(name), "{at}: metric name");
        assert_eq!(
            current.as_deref(),
            Some(name),
            "{at}: sample outside its family (HELP/TYPE first, families contiguous)"
        );
        assert!(typed.contains_key(name), "{at}: sample before TYPE");
        if let Some(labels) = labels {
            let mut names = HashSet::new();
            for pair in labels.split(',') {
                let (k, v) = pair.split_once('=').expect(&at);
                assert!(is_label_name(k), "{at}: label name {k}");
                assert!(names.insert(k), "{at}: label {k} twice");
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .expect(&at);
                assert!(!v.contains(['"', '\n']), "{at}: unescaped label value");
            }
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{at}: value"));
        assert!(v.is_finite() && v >= 0.0, "{at}: value");
        assert!(
            series.insert(series_id.to_string()),
            "{at}: duplicate series"
        );
        samples += 1;
    }
    assert_eq!(helped.len(), typed.len(), "every family has HELP and TYPE");
    assert!(samples > 100, "only {samples} samples");
    text.to_string()
}

/// The value of one series (`name` or `name{labels}`), which must be present.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

fn wait_for(handle: &DaemonHandle, what: &str, pred: impl Fn(&akagate::Stats) -> bool) {
    handle
        .wait_for(WAIT, pred)
        .unwrap_or_else(|| panic!("timed out waiting for {what}"));
}

#[test]
fn scrapes_are_well_formed_and_counters_move_with_traffic() {
    let dir = temp_dir("metrics-scrape");
    let (handle, mut ue) = start(&dir, &[Transport::Udp, Transport::Tcp]);
    let addr = handle.metrics_addr().expect("metrics endpoint");
    assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0);

    let before = scrape(addr);
    assert_eq!(
        value(&before, "akagate_worker_arp_replies_total{worker=\"0\"}"),
        0.0
    );
    assert_eq!(value(&before, "akagate_sa_table_allocated"), 0.0);
    assert_eq!(value(&before, "akagate_sa_table_capacity"), 1024.0);
    assert_eq!(value(&before, "akagate_subscribers"), 1.0);
    assert_eq!(value(&before, "akagate_registrations"), 0.0);
    assert_eq!(
        value(
            &before,
            "akagate_worker_drops_total{worker=\"0\",reason=\"esp_invalid\"}"
        ),
        0.0
    );

    ue.arp_request();
    wait_for(&handle, "the ARP reply", |s| {
        s.worker_total("arp_replies") == 1
    });
    udp_to_5060(&mut ue, REGISTER.as_bytes());
    wait_for(&handle, "the challenge", |s| {
        s.slowpath.sa_sets_installed == 1
    });
    // No Via, From, To, Call-ID or CSeq: malformed (RFC 3261 8.1.1), too broken to answer.
    udp_to_5060(
        &mut ue,
        b"OPTIONS sip:x@open-ims.test SIP/2.0\r\nContent-Length: 0\r\n\r\n",
    );
    wait_for(&handle, "the malformed request", |s| {
        s.core.malformed_requests == 1
    });
    let answers = sip_answers(&mut ue, Duration::from_millis(200));
    assert!(
        answers.iter().any(|a| a.starts_with("SIP/2.0 401 ")),
        "{answers:?}"
    );

    let after = scrape(addr);
    assert_eq!(
        value(&after, "akagate_worker_arp_replies_total{worker=\"0\"}"),
        1.0
    );
    for series in [
        "akagate_port_rx_packets_total{worker=\"0\"}",
        "akagate_port_tx_packets_total{worker=\"0\"}",
        "akagate_worker_rx_frames_total{worker=\"0\"}",
        "akagate_worker_sip_in_total{worker=\"0\"}",
        "akagate_slowpath_sip_messages_total",
        "akagate_slowpath_events_total",
    ] {
        assert!(
            value(&after, series) > value(&before, series),
            "{series} did not increase"
        );
    }
    assert_eq!(
        value(&after, "akagate_slowpath_sa_sets_installed_total"),
        1.0
    );
    assert_eq!(value(&after, "akagate_sip_malformed_requests_total"), 1.0);
    assert_eq!(
        value(&after, "akagate_sip_malformed_requests_unanswered_total"),
        1.0
    );
    // The challenge's SQN lay under the bound the start reserved and made durable (SQN
    // blocks, docs/ARCHITECTURE.md): the 401 left without a commit; none withheld.
    assert_eq!(value(&after, "akagate_slowpath_sqn_commits_total"), 0.0);
    assert_eq!(
        value(&after, "akagate_slowpath_challenges_withheld_total"),
        0.0
    );
    // The pending set holds spi_pc and spi_ps (TS 33.203 7.1).
    assert_eq!(value(&after, "akagate_sa_table_allocated"), 2.0);
    assert_eq!(value(&after, "akagate_sa_table_installed"), 2.0);
    assert_eq!(value(&after, "akagate_worker_ue_stacks{worker=\"0\"}"), 1.0);
    assert!(value(&after, "akagate_uptime_seconds") >= value(&before, "akagate_uptime_seconds"));

    // The same numbers reach the control socket's stats answer.
    let stats = handle.stats();
    assert_eq!(stats.core.malformed_requests, 1);
    assert_eq!(stats.slowpath.sip_transport_refused, 0);
    handle.shutdown().unwrap();
    // The endpoint is gone with the daemon.
    assert!(TcpStream::connect(addr).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The format check itself refuses each kind of malformed exposition (so the scrape tests
/// above can fail).
#[test]
fn the_format_check_refuses_malformed_text() {
    // A valid base of 101 samples, then one defect each.
    let mut good = String::from("# HELP a_total A.\n# TYPE a_total counter\n");
    for i in 0..101 {
        good.push_str(&format!("a_total{{worker=\"{i}\"}} 1\n"));
    }
    check_exposition(&good);
    let bad = [
        // TYPE before HELP.
        good.replacen(
            "# HELP a_total A.\n# TYPE a_total counter\n",
            "# TYPE a_total counter\n# HELP a_total A.\n",
            1,
        ),
        // A counter without _total.
        good.replace("a_total", "a_count"),
        // A metric name with a forbidden character.
        good.replace("a_total", "a-b_total"),
        // A sample of a family that was never declared.
        good.clone() + "b_total 1\n",
        // A family declared twice, not contiguous.
        good.clone() + "# HELP c A.\n# TYPE c gauge\nc 1\n# HELP a_total A.\n",
        // A label name with a forbidden character.
        good.replacen("{worker=", "{wor-ker=", 1),
        // A duplicate series.
        good.clone() + "a_total{worker=\"0\"} 2\n",
        // A negative or unparsable value.
        good.replacen(" 1\n", " -1\n", 1),
        good.replacen(" 1\n", " one\n", 1),
        // No final line feed.
        good.trim_end().to_string(),
    ];
    for (i, text) in bad.iter().enumerate() {
        let refused = std::panic::catch_unwind(|| check_exposition(text)).is_err();
        assert!(refused, "defect {i} accepted:\n{text}");
    }
}

#[test]
fn only_get_and_head_of_metrics_are_served() {
    let dir = temp_dir("metrics-http");
    let (handle, _ue) = start(&dir, &[Transport::Udp, Transport::Tcp]);
    let addr = handle.metrics_addr().unwrap();

    let (status, head, body) = http(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD has no body");
    assert!(!head.contains("Content-Length: 0\r\n"), "{head}");

    let (status, _, _) = http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, b"GET /metrics/x HTTP/1.0\r\n\r\n");
    assert_eq!(status, 404);
    let (status, head, _) = http(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.contains("\r\nAllow: GET, HEAD"), "{head}");
    let (status, _, _) = http(addr, b"hello\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _, _) = http(addr, b"GET /metrics HTTP/3\r\n\r\n");
    assert_eq!(status, 505);
    // A head over 8 KiB is refused without waiting for its end.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    big.resize(9000, b'a');
    let (status, _, _) = http(addr, &big);
    assert_eq!(status, 431);
    // A query string is ignored; the scrape still parses.
    let (status, _, body) = http(addr, b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    check_exposition(&body);
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn udp_to_a_tcp_only_sip_port_is_refused_and_counted() {
    let dir = temp_dir("metrics-tcp-only");
    let (handle, mut ue) = start(&dir, &[Transport::Tcp]);
    let addr = handle.metrics_addr().unwrap();
    ue.arp_request();
    udp_to_5060(&mut ue, REGISTER.as_bytes());
    wait_for(&handle, "the refusal", |s| {
        s.slowpath.sip_transport_refused == 1
    });
    // Nothing answers the REGISTER and no SA set is made.
    let answers = sip_answers(&mut ue, Duration::from_millis(300));
    assert!(answers.is_empty(), "{answers:?}");
    let text = scrape(addr);
    assert_eq!(
        value(&text, "akagate_slowpath_sip_transport_refused_total"),
        1.0
    );
    assert_eq!(
        value(&text, "akagate_slowpath_sa_sets_installed_total"),
        0.0
    );
    assert_eq!(value(&text, "akagate_sa_table_allocated"), 0.0);
    assert_eq!(value(&text, "akagate_sip_malformed_requests_total"), 0.0);
    handle.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
