//! The parse side of a registration alone, for callgrind: `Message::parse` and `validate` of
//! a protected REGISTER written as akabench's UE writes it (IPv4, TCP, two Security-Client
//! offers, Authorization with RES, Security-Verify), N times (argument, default 1000).
//!
//! ```text
//! cargo build --release -p akagate-slowpath --example parse_probe
//! valgrind --tool=callgrind --toggle-collect='*Message*parse*' --toggle-collect='*validate*' \
//!     target/release/examples/parse_probe 1000      # divide by 1000: one message
//! ```
use akagate_slowpath::sip::Message;
use std::hint::black_box;

const R1: &str = "REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org SIP/2.0\r\n\
Via: SIP/2.0/TCP 10.0.3.233:5060;branch=z9hG4bKa8c1d2e3;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:001010000000233@ims.mnc001.mcc001.3gppnetwork.org>;tag=f7a2b3c4\r\n\
To: <sip:001010000000233@ims.mnc001.mcc001.3gppnetwork.org>\r\n\
Call-ID: a1b2c3d4@akabench\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:001010000000233@10.0.3.233:31801>;expires=600000;+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"\r\n\
Expires: 600000\r\n\
Authorization: Digest username=\"001010000000233@ims.mnc001.mcc001.3gppnetwork.org\",realm=\"ims.mnc001.mcc001.3gppnetwork.org\",nonce=\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\",response=\"0123456789abcdef0123456789abcdef\",algorithm=AKAv1-MD5,qop=auth,nc=00000001,cnonce=\"abcdefgh\"\r\n\
Security-Client: ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=4096;spi-s=4097;port-c=31800;port-s=31801, ipsec-3gpp;alg=hmac-sha-1-96;ealg=null;prot=esp;mod=trans;spi-c=4096;spi-s=4097;port-c=31800;port-s=31801\r\n\
Security-Verify: ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=8192;spi-s=8193;port-c=5064;port-s=5066;q=0.1\r\n\
Require: sec-agree\r\n\
Proxy-Require: sec-agree\r\n\
Supported: path, sec-agree\r\n\
User-Agent: akabench\r\n\
Content-Length: 0\r\n\r\n";

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let raw = R1.as_bytes();
    let mut ok = 0;
    for _ in 0..n {
        let m = Message::parse(black_box(raw)).unwrap();
        ok += usize::from(m.validate().is_ok());
        black_box(&m);
    }
    assert_eq!(ok, n);
    println!("{ok}");
}
