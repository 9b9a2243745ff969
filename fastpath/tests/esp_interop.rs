//! Interop with an independent ESP implementation (scapy's `SecurityAssociation`, and
//! python-cryptography for AES-GMAC) in both directions, every suite, IPv4 and IPv6 with
//! extension headers. Skipped, with a message, when `/usr/bin/python3` cannot import scapy.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use akagate_fastpath::esp::ip::{ipv4_checksum, layout};
use akagate_fastpath::esp::{AuthAlg, EncrAlg, InboundSa, OutboundSa, SaKeys, Suite};
use serde_json::{json, Value};

const PYTHON: &str = "/usr/bin/python3";
const ROOM: usize = 128;

fn scapy_available() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import scapy, cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs all requests through the python peer; one reply per request, in order.
fn run_peer(requests: Vec<Value>) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/esp/scapy_peer.py"
    );
    let mut child = Command::new(PYTHON)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python peer");
    let mut stdin = child.stdin.take().unwrap();
    let n = requests.len();
    // Write from a thread so a full stdout pipe cannot deadlock us.
    let writer = std::thread::spawn(move || {
        for r in requests {
            writeln!(stdin, "{r}").unwrap();
        }
    });
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let replies: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(replies.len(), n);
    replies
}

#[derive(Clone, Copy, Debug)]
struct SuiteDef {
    alg: AuthAlg,
    ealg: EncrAlg,
}

fn suites() -> Vec<SuiteDef> {
    let mut v = Vec::new();
    for alg in [AuthAlg::HmacSha1_96, AuthAlg::HmacMd5_96] {
        for ealg in [EncrAlg::AesCbc, EncrAlg::DesEde3Cbc, EncrAlg::Null] {
            v.push(SuiteDef { alg, ealg });
        }
    }
    v.push(SuiteDef {
        alg: AuthAlg::HmacSha1_96,
        ealg: EncrAlg::AesGcm,
    });
    v.push(SuiteDef {
        alg: AuthAlg::AesGmac,
        ealg: EncrAlg::Null,
    });
    v
}

fn keys(d: SuiteDef) -> SaKeys {
    let integ_key: Vec<u8> = match d.alg {
        _ if d.ealg == EncrAlg::AesGcm => vec![],
        AuthAlg::HmacSha1_96 => (0..20).map(|i| 0x10 + i).collect(),
        AuthAlg::HmacMd5_96 | AuthAlg::AesGmac => (0..16).map(|i| 0x30 + i).collect(),
        AuthAlg::Null => vec![],
    };
    let encr_key: Vec<u8> = match d.ealg {
        EncrAlg::Null => vec![],
        EncrAlg::AesCbc | EncrAlg::AesGcm => (0..16).map(|i| 0x50 + 3 * i).collect(),
        EncrAlg::DesEde3Cbc => (0..24).map(|i| 0x71 + 5 * i).collect(),
    };
    let salt = if matches!(d.ealg, EncrAlg::AesGcm) || d.alg == AuthAlg::AesGmac {
        [0xde, 0xca, 0xf8, 0x88]
    } else {
        [0; 4]
    };
    SaKeys {
        integ_key,
        encr_key,
        salt,
    }
}

fn iv_len(d: SuiteDef) -> usize {
    match d.ealg {
        EncrAlg::AesCbc => 16,
        EncrAlg::DesEde3Cbc | EncrAlg::AesGcm => 8,
        EncrAlg::Null if d.alg == AuthAlg::AesGmac => 8,
        EncrAlg::Null => 0,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn udp(len: usize) -> Vec<u8> {
    let mut p = vec![0x13, 0xc4, 0x13, 0xc4];
    p.extend(((8 + len) as u16).to_be_bytes());
    p.extend([0, 0]);
    p.extend(pattern(len, 7));
    p
}

fn tcp(len: usize) -> Vec<u8> {
    let mut p = hex::decode("c35013c400000001000000005018200000000000").unwrap();
    p.extend(pattern(len, 11));
    p
}

fn ipv4(proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    let mut p = hex::decode("4500000012340000400000000a0000010a000002").unwrap();
    p[0] = 0x40 | (ihl / 4) as u8;
    p[9] = proto;
    p.extend_from_slice(options);
    p[2..4].copy_from_slice(&((ihl + payload.len()) as u16).to_be_bytes());
    let sum = ipv4_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// IPv6 with the extension headers `exts` (hop-by-hop 0, routing 43, dest-opts 60), each 8
/// bytes, then `proto` and `payload`.
fn ipv6(exts: &[u8], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = hex::decode("6000000000000040").unwrap();
    p.extend(hex::decode("20010db8000000000000000000000001").unwrap());
    p.extend(hex::decode("20010db8000000000000000000000002").unwrap());
    let chain: Vec<u8> = exts.iter().copied().chain([proto]).collect();
    p[6] = chain[0];
    for (i, &t) in exts.iter().enumerate() {
        let nh = chain[i + 1];
        match t {
            // Routing type 0 with no segments left: a no-op routing header.
            43 => p.extend([nh, 0, 0, 0, 0, 0, 0, 0]),
            // A PadN option filling the header.
            _ => p.extend([nh, 0, 1, 4, 0, 0, 0, 0]),
        }
    }
    let plen = (p.len() - 40 + payload.len()) as u16;
    p[4..6].copy_from_slice(&plen.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn packets() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for len in [0, 1, 2, 3, 5, 13, 14, 15, 16, 17, 100, 1400] {
        v.push((format!("v4 udp {len}"), ipv4(17, &[], &udp(len))));
    }
    v.push(("v4 options tcp".into(), ipv4(6, &[1, 1, 1, 0], &tcp(33))));
    for len in [0, 7, 1000] {
        v.push((format!("v6 udp {len}"), ipv6(&[], 17, &udp(len))));
    }
    v.push(("v6 hbh udp".into(), ipv6(&[0], 17, &udp(21))));
    v.push(("v6 dstopts tcp".into(), ipv6(&[60], 6, &tcp(40))));
    v.push((
        "v6 hbh routing dstopts udp".into(),
        ipv6(&[0, 43, 60], 17, &udp(9)),
    ));
    v
}

fn request(op: &str, d: SuiteDef, k: &SaKeys, spi: u32, seq: u32, pkt: &[u8]) -> Value {
    json!({
        "op": op,
        "alg": d.alg.token(),
        "ealg": d.ealg.token(),
        "ik": hex::encode(&k.integ_key),
        "ck": hex::encode(&k.encr_key),
        "salt": hex::encode(k.salt),
        "spi": spi,
        "seq": seq,
        "pkt": hex::encode(pkt),
    })
}

fn encap(sa: &mut OutboundSa, pkt: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ROOM + pkt.len() + ROOM];
    buf[ROOM..ROOM + pkt.len()].copy_from_slice(pkt);
    let r = sa
        .encapsulate(&mut buf, ROOM..ROOM + pkt.len())
        .expect("encapsulate");
    buf[r].to_vec()
}

fn decap(sa: &mut InboundSa, pkt: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ROOM + pkt.len() + ROOM];
    buf[ROOM..ROOM + pkt.len()].copy_from_slice(pkt);
    let r = sa
        .decapsulate(&mut buf, ROOM..ROOM + pkt.len())
        .expect("decapsulate");
    buf[r].to_vec()
}

fn hex_of(v: &Value, what: &str) -> Vec<u8> {
    match (v.get("pkt"), v.get("error")) {
        (Some(p), _) => hex::decode(p.as_str().unwrap()).unwrap(),
        (_, e) => panic!("python peer failed on {what}: {e:?}"),
    }
}

#[test]
fn interop_with_scapy_all_suites_ipv4_ipv6() {
    if !scapy_available() {
        eprintln!("SKIPPED: {PYTHON} cannot import scapy and cryptography");
        return;
    }
    let spi = 0x0a0b_0c0d;
    let pkts = packets();
    let mut reqs = Vec::new();
    let mut cases = Vec::new();
    for d in suites() {
        let k = keys(d);
        let s = Suite {
            auth: d.alg,
            encr: d.ealg,
            keys: k.clone(),
        };
        let mut out = OutboundSa::new(spi, &s).unwrap();
        for (i, (name, p)) in pkts.iter().enumerate() {
            let seq = i as u32 + 1;
            let ours = encap(&mut out, p);
            let esp = layout(&ours).unwrap().payload_offset;
            let iv = ours[esp + 8..esp + 8 + iv_len(d)].to_vec();
            // 1) scapy decrypts ours; 2) scapy encrypts with our IV: must equal ours byte for
            // byte; 3) scapy encrypts with its own IV: we decapsulate.
            reqs.push(request("decrypt", d, &k, spi, seq, &ours));
            let mut r = request("encrypt", d, &k, spi, seq, p);
            r["iv"] = json!(hex::encode(&iv));
            reqs.push(r);
            reqs.push(request("encrypt", d, &k, spi, seq, p));
            cases.push((d, name.clone(), p.clone(), ours));
        }
    }
    let replies = run_peer(reqs);
    let mut inbound = std::collections::HashMap::new();
    for ((d, name, orig, ours), r) in cases.iter().zip(replies.chunks(3)) {
        let what = format!("{}/{} {name}", d.alg.token(), d.ealg.token());
        assert_eq!(
            hex_of(&r[0], &what),
            *orig,
            "{what}: scapy decryption of ours"
        );
        assert_eq!(
            hex_of(&r[1], &what),
            *ours,
            "{what}: scapy encryption with our IV"
        );
        let inb = inbound
            .entry(format!("{:?}{:?}", d.alg, d.ealg))
            .or_insert_with(|| {
                InboundSa::new(
                    spi,
                    &Suite {
                        auth: d.alg,
                        encr: d.ealg,
                        keys: keys(*d),
                    },
                )
                .unwrap()
            });
        assert_eq!(
            decap(inb, &hex_of(&r[2], &what)),
            *orig,
            "{what}: our decapsulation"
        );
    }
    assert_eq!(cases.len(), 8 * pkts.len());
}
