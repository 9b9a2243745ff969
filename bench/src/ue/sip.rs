//! The SIP messages a UE sends (TS 24.229 5.1): REGISTER with sec-agree (RFC 3329) and
//! AKAv1-MD5 credentials (RFC 3310), INVITE/ACK/BYE of a basic call, and responses.

use std::net::IpAddr;

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use akagate_slowpath::sip::{response_to, Message, MessageBuilder};

/// A host as it appears in a SIP URI or Via (IPv6 in brackets, RFC 3261 25.1).
pub fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The transport token of a Via.
pub fn via_transport(p: Transport) -> &'static str {
    match p {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    }
}

/// One `ipsec-3gpp` offer of Security-Client (TS 33.203 7.2, TS 24.229 7.2A.7).
pub fn security_client(offers: &[(AuthAlg, EncrAlg)], p: &ClientSecParams) -> String {
    offers
        .iter()
        .map(|(a, e)| {
            format!(
                "ipsec-3gpp;alg={};ealg={};prot=esp;mod=trans;spi-c={};spi-s={};port-c={};port-s={}",
                a.token(),
                e.token(),
                p.spi_uc,
                p.spi_us,
                p.port_uc,
                p.port_us
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the UE chooses for sec-agree (TS 33.203 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSecParams {
    /// `spi-c`.
    pub spi_uc: u32,
    /// `spi-s`.
    pub spi_us: u32,
    /// `port-c`.
    pub port_uc: u16,
    /// `port-s`.
    pub port_us: u16,
}

impl ClientSecParams {
    /// Fresh parameters for a re-registration (TS 33.203 7.4: new SPIs and new protected
    /// ports, so the new SAs and the new TCP connection from port_uc never meet the old
    /// ones): random `spi-c`/`spi-s` distinct from ours, each port one up (skipping the other
    /// ports in play, wrapping above 65535 to 1024).
    pub fn renewed(&self, mut random: impl FnMut() -> u32) -> Self {
        let old_spis = [self.spi_uc, self.spi_us];
        let spi_uc = loop {
            // SPIs 256.. (RFC 4303 2.1 reserves 1..=255); spi_us = spi_uc + 1.
            let s = 0x1000 + random() % 0x7fff_0000;
            if !old_spis.contains(&s) && !old_spis.contains(&(s + 1)) {
                break s;
            }
        };
        let next = |p: u16, avoid: &[u16]| {
            let mut q = p;
            loop {
                q = q.checked_add(1).unwrap_or(1024);
                if !avoid.contains(&q) {
                    return q;
                }
            }
        };
        let port_uc = next(self.port_uc, &[self.port_uc, self.port_us]);
        let port_us = next(self.port_us, &[self.port_uc, self.port_us, port_uc]);
        ClientSecParams {
            spi_uc,
            spi_us: spi_uc + 1,
            port_uc,
            port_us,
        }
    }
}

/// Identity and addressing of the UE, shared by every message it builds.
#[derive(Clone, Debug)]
pub struct UaIdentity {
    /// Private identity.
    pub impi: String,
    /// Default public identity (`sip:` URI).
    pub impu: String,
    /// Home domain (realm and registrar host).
    pub domain: String,
    /// The UE's address.
    pub ip: IpAddr,
    /// The P-CSCF's address.
    pub pcscf: IpAddr,
}

impl UaIdentity {
    /// The user part of the IMPU, for the Contact.
    pub fn user(&self) -> &str {
        let u = self.impu.strip_prefix("sip:").unwrap_or(&self.impu);
        u.split('@').next().unwrap_or(u)
    }

    /// Our Contact URI: the protected server port (TS 24.229 5.1.1.2.2).
    pub fn contact_uri(&self, port_us: u16) -> String {
        format!("sip:{}@{}:{}", self.user(), host(self.ip), port_us)
    }

    /// The registrar URI (Request-URI and digest-uri of REGISTER).
    pub fn registrar_uri(&self) -> String {
        format!("sip:{}", self.domain)
    }
}

/// Per-request header values.
#[derive(Clone, Debug)]
pub struct RequestParts<'a> {
    /// Transport of the Via.
    pub proto: Transport,
    /// Our port in the Via sent-by.
    pub via_port: u16,
    /// Via branch (with the `z9hG4bK` cookie).
    pub branch: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// From tag.
    pub from_tag: &'a str,
}

/// A REGISTER (TS 24.229 5.1.1.2): Security-Client always, Security-Verify once the
/// Security-Server is known, sec-agree required, `authorization` as given.
pub fn register(
    id: &UaIdentity,
    parts: &RequestParts<'_>,
    sec: &ClientSecParams,
    offers: &[(AuthAlg, EncrAlg)],
    expires: u32,
    security_verify: Option<&str>,
    authorization: &str,
) -> Vec<u8> {
    let mut b = MessageBuilder::request("REGISTER", &id.registrar_uri());
    b.push_header(
        "Via",
        &format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            via_transport(parts.proto),
            host(id.ip),
            parts.via_port,
            parts.branch
        ),
    );
    b.push_header("Max-Forwards", "70");
    b.push_header("From", &format!("<{}>;tag={}", id.impu, parts.from_tag));
    b.push_header("To", &format!("<{}>", id.impu));
    b.push_header("Call-ID", parts.call_id);
    b.push_header("CSeq", &format!("{} REGISTER", parts.cseq));
    b.push_header(
        "Contact",
        &format!(
            "<{}>;expires={};+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel\"",
            id.contact_uri(sec.port_us),
            expires
        ),
    );
    b.push_header("Expires", &expires.to_string());
    b.push_header("Authorization", authorization);
    b.push_header("Security-Client", &security_client(offers, sec));
    if let Some(v) = security_verify {
        b.push_header("Security-Verify", v);
    }
    b.push_header("Require", "sec-agree");
    b.push_header("Proxy-Require", "sec-agree");
    b.push_header("Supported", "path, sec-agree");
    b.push_header("User-Agent", "akabench");
    b.build()
}

/// An SDP offer/answer of about `len` bytes (padded with `a=` lines), for sizing INVITEs.
pub fn sdp(ip: IpAddr, session: u64, pad_to: usize) -> Vec<u8> {
    let (net, addr) = match ip {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    let mut s = format!(
        "v=0\r\no=- {session} {session} IN {net} {addr}\r\ns=-\r\nc=IN {net} {addr}\r\nt=0 0\r\n\
         m=audio 49170 RTP/AVP 96 8\r\na=rtpmap:96 AMR-WB/16000\r\na=rtpmap:8 PCMA/8000\r\n"
    );
    while s.len() < pad_to {
        let room = pad_to - s.len();
        // "a=x:" + filler + CRLF; at least 7 bytes per line.
        let n = room.saturating_sub(6).clamp(1, 70);
        s.push_str("a=x:");
        s.extend(std::iter::repeat_n('y', n));
        s.push_str("\r\n");
        if s.len() > pad_to {
            break;
        }
    }
    s.into_bytes()
}

/// Headers common to the requests of a dialog.
#[derive(Clone, Debug)]
pub struct DialogHeaders {
    /// Request-URI (callee IMPU for the INVITE, remote target afterwards).
    pub request_uri: String,
    /// Route set, in order.
    pub routes: Vec<String>,
    /// From value (with tag).
    pub from: String,
    /// To value (with tag once known).
    pub to: String,
}

/// An INVITE, ACK or BYE within a dialog (RFC 3261 12.2.1.1; TS 24.229 5.1.2A).
pub fn dialog_request(
    method: &str,
    id: &UaIdentity,
    parts: &RequestParts<'_>,
    d: &DialogHeaders,
    contact_port: u16,
    security_verify: Option<&str>,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut b = MessageBuilder::request(method, &d.request_uri);
    b.push_header(
        "Via",
        &format!(
            "SIP/2.0/{} {}:{};branch={};rport",
            via_transport(parts.proto),
            host(id.ip),
            parts.via_port,
            parts.branch
        ),
    );
    b.push_header("Max-Forwards", "70");
    for r in &d.routes {
        b.push_header("Route", r);
    }
    b.push_header("From", &d.from);
    b.push_header("To", &d.to);
    b.push_header("Call-ID", parts.call_id);
    b.push_header("CSeq", &format!("{} {method}", parts.cseq));
    if method == "INVITE" {
        b.push_header("Contact", &format!("<{}>", id.contact_uri(contact_port)));
        b.push_header("P-Preferred-Identity", &format!("<{}>", id.impu));
    }
    if let Some(v) = security_verify {
        b.push_header("Security-Verify", v);
        b.push_header("Require", "sec-agree");
        b.push_header("Proxy-Require", "sec-agree");
    }
    match body {
        Some(body) => b.body("application/sdp", body).build(),
        None => b.build(),
    }
}

/// A response to `req` with our To tag, Record-Route copied (RFC 3261 12.1.1), and for
/// 18x/2xx to an INVITE our Contact and an optional SDP body.
pub fn response(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: &str,
    contact: Option<&str>,
    body: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let mut b = response_to(req, code, reason, Some(to_tag)).ok()?;
    for rr in req.header_values_by_name("Record-Route") {
        b.push_header("Record-Route", rr);
    }
    if let Some(c) = contact {
        b.push_header("Contact", &format!("<{c}>"));
    }
    Some(match body {
        Some(body) => b.body("application/sdp", body).build(),
        None => b.build(),
    })
}

/// The URI inside a name-addr (`<...>`), or the value itself.
pub fn uri_in(v: &str) -> &str {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(v: &str) -> Option<&str> {
    let params = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => v,
    };
    params.split(';').find_map(|p| {
        let (n, val) = p.split_once('=')?;
        n.trim().eq_ignore_ascii_case("tag").then(|| val.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn id() -> UaIdentity {
        UaIdentity {
            impi: "001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
            impu: "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
            domain: "ims.mnc001.mcc001.3gppnetwork.org".into(),
            ip: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7)),
            pcscf: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        }
    }

    #[test]
    fn register_parses_and_carries_sec_agree() {
        let sec = ClientSecParams {
            spi_uc: 1111,
            spi_us: 2222,
            port_uc: 31800,
            port_us: 31900,
        };
        let parts = RequestParts {
            proto: Transport::Tcp,
            via_port: 40000,
            branch: "z9hG4bKabc",
            call_id: "c1",
            cseq: 1,
            from_tag: "f1",
        };
        let offers = [
            (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
            (AuthAlg::HmacMd5_96, EncrAlg::Null),
        ];
        let m = register(&id(), &parts, &sec, &offers, 600, None, "Digest x=\"y\"");
        let msg = Message::parse(&m).unwrap();
        assert_eq!(msg.method(), Some("REGISTER"));
        assert_eq!(
            msg.header_by_name("Security-Client"),
            Some("ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;prot=esp;mod=trans;spi-c=1111;spi-s=2222;port-c=31800;port-s=31900, ipsec-3gpp;alg=hmac-md5-96;ealg=null;prot=esp;mod=trans;spi-c=1111;spi-s=2222;port-c=31800;port-s=31900")
        );
        assert!(msg
            .header_by_name("Contact")
            .unwrap()
            .starts_with("<sip:001010000000001@[fd00::7]:31900>;expires=600"));
        assert_eq!(msg.header_by_name("Require"), Some("sec-agree"));
        assert_eq!(msg.header_by_name("Proxy-Require"), Some("sec-agree"));
    }

    #[test]
    fn renewed_parameters_share_nothing_with_the_old_ones() {
        let old = ClientSecParams {
            spi_uc: 0x2000,
            spi_us: 0x2001,
            port_uc: 31899,
            port_us: 31900,
        };
        // The first random SPI collides with the old pair and is skipped.
        let mut draws = [0x1000u32, 0x0fff, 0x5000].into_iter();
        let new = old.renewed(|| draws.next().unwrap_or(7));
        assert_eq!((new.spi_uc, new.spi_us), (0x6000, 0x6001));
        // 31899 + 1 is the old port_us: skipped.
        assert_eq!((new.port_uc, new.port_us), (31901, 31902));
        let top = ClientSecParams {
            port_uc: 65535,
            port_us: 1024,
            ..old
        };
        let n = top.renewed(|| 0x100);
        assert_eq!((n.port_uc, n.port_us), (1025, 1026));
    }

    #[test]
    fn sdp_is_padded_to_size() {
        for n in [200, 777, 1300] {
            let s = sdp(id().ip, 1, n);
            assert!(s.len() >= n && s.len() < n + 80, "{n} -> {}", s.len());
        }
    }

    #[test]
    fn tags_and_uris() {
        assert_eq!(tag_of("<sip:a@b;x=y>;tag=abc;z"), Some("abc"));
        assert_eq!(tag_of("<sip:a@b;tag=no>"), None);
        assert_eq!(uri_in("\"A\" <sip:a@b:5>;lr"), "sip:a@b:5");
        assert_eq!(uri_in("sip:a@b;lr"), "sip:a@b");
    }
}
