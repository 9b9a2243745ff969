//! pktgen against the in-process daemon over the memory pair: every blasted packet is
//! decapsulated and delivered by the gateway, and the pcap is readable by other tools.

use std::collections::{BTreeMap, BTreeSet};

use super::pcap::{parse, LINKTYPE_ETHERNET};
use super::*;

/// One daemon at a time: the worker-CPU figure reads threads by name from `/proc/self`.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn short_run(size: usize, ipv6: bool, pcap: Option<PathBuf>) -> PktgenReport {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = PktgenConfig::new();
    cfg.ues = 6;
    cfg.size = size;
    cfg.packets_per_ue = 40;
    cfg.sip_bytes = 700;
    cfg.ipv6 = ipv6;
    cfg.pcap = pcap;
    cfg.rate_pps = Some(50_000.0);
    run(&cfg).expect("pktgen run")
}

fn assert_all_delivered(r: &PktgenReport) {
    let g = r.gateway.as_ref().expect("daemon figures");
    assert_eq!(r.ues, 6);
    assert_eq!(r.sent, r.packets, "every frame left");
    assert_eq!(
        g.esp_in,
        r.packets,
        "every frame decapsulated: {}",
        r.summary()
    );
    assert_eq!(
        g.sip_in,
        r.sip_messages,
        "every SIP message framed: {}",
        r.summary()
    );
    assert!(g.drops.is_empty(), "no drops: {:?}", g.drops);
    assert!(
        r.returned_frames > 0,
        "the gateway ACKs the segments: {}",
        r.summary()
    );
    assert!(g.worker_busy_seconds > 0.0);
}

#[test]
fn minimal_packets_are_all_decrypted_and_delivered() {
    let dir = std::env::temp_dir().join(format!("pktgen-test-{}", crate::ue::token(4)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("blast.pcap");
    let r = short_run(64, false, Some(path.clone()));
    assert_all_delivered(&r);
    // 24-byte TCP payloads: 40 segments per UE carry 960 bytes, rounded up to two whole
    // 700-byte messages = 1400 bytes = 59 segments.
    assert_eq!(r.sip_messages, 12);
    assert_eq!(r.packets, 6 * 59);

    let bytes = std::fs::read(&path).unwrap();
    let (lt, recs) = parse(&bytes).unwrap();
    assert_eq!(lt, LINKTYPE_ETHERNET);
    assert_eq!(recs.len() as u64, r.packets);
    // Each frame: Ethernet, IPv4 (no options), ESP; per SPI the sequence numbers run on
    // without gaps (RFC 4303 3.3.3) from where the registration left them.
    let mut seqs: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for rec in &recs {
        let f = rec.data;
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14 + 9], 50, "IP protocol ESP");
        let spi = u32::from_be_bytes(f[34..38].try_into().unwrap());
        let seq = u32::from_be_bytes(f[38..42].try_into().unwrap());
        seqs.entry(spi).or_default().push(seq);
    }
    assert_eq!(seqs.len(), 6);
    for s in seqs.values() {
        assert!(s.windows(2).all(|w| w[1] == w[0] + 1), "{s:?}");
    }
    // An independent reader: tshark's ESP dissector sees N distinct SPIs.
    if let Ok(out) = std::process::Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args(["-T", "fields", "-e", "esp.spi"])
        .output()
    {
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spis: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(spis.len(), 6, "{spis:?}");
        let frames = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
        assert_eq!(frames, r.packets);
    } else {
        eprintln!("tshark not installed: pcap checked with our own reader only");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn full_size_ipv6_packets_are_all_decrypted_and_delivered() {
    let r = short_run(1408, true, None);
    assert_all_delivered(&r);
    // 1408 - 40 (IPv6) - 20 (TCP) = 1348-byte payloads: 40 segments = 53920 bytes,
    // 78 messages of 700 bytes = 54600 bytes = 41 segments.
    assert_eq!(r.sip_messages, 6 * 78);
    assert_eq!(r.packets, 6 * 41);
}

/// Without the `dpdk` feature the DPDK target exists but says how to build it in.
#[cfg(not(feature = "dpdk"))]
#[test]
fn dpdk_target_without_the_feature_says_how_to_get_it() {
    let mut cfg = PktgenConfig::new();
    cfg.ues = 1;
    cfg.target = Target::Dpdk {
        port: DpdkPortSpec::new("--no-huge --vdev=net_af_packet0,iface=v1", None).unwrap(),
        pcscf: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    };
    let e = run(&cfg).unwrap_err().to_string();
    assert_eq!(e, format!("setup: {}", akagate_sys::DPDK_HOWTO));
}
