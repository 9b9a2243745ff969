//! The registration relay's message edits (TS 24.229 5.2.2), pure functions over parsed
//! messages: the REGISTER as it goes to the core, the keys taken out of the S-CSCF's 401
//! (TS 33.203 7.1, RFC 3310: `ck` and `ik` never reach the UE), and what a 200 OK to a
//! REGISTER tells the P-CSCF.

use zeroize::Zeroizing;

use crate::aka::{Ck, DigestParams, Ik};
use crate::registrar::realm_of;
use crate::sip::{HeaderKind, Message, MessageEdit, NameAddr, Scheme, Uri};

/// The sec-agree option tag (RFC 3329 2.2): hop-by-hop between UE and P-CSCF.
const SEC_AGREE: &str = "sec-agree";
/// The Path extension's option tag (RFC 3327 5).
const PATH: &str = "path";

/// The `integrity-protected` value the P-CSCF vouches for (TS 24.229 5.2.2.1, 7.2A.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// Arrived outside any SA (the initial REGISTER).
    No,
    /// Arrived through the UE's SA (the protected REGISTER and every later one).
    Yes,
}

impl Integrity {
    fn token(self) -> &'static str {
        match self {
            Integrity::No => "no",
            Integrity::Yes => "yes",
        }
    }
}

/// What the relay adds to a REGISTER besides the UE's own headers.
#[derive(Clone, Debug)]
pub struct RegisterHop<'s> {
    /// The IMPI the REGISTER is for (Authorization `username`, else derived from To).
    pub impi: &'s str,
    /// Through an SA or not.
    pub integrity: Integrity,
    /// Our Path entry (a SIP URI that leads back to this registration).
    pub path: &'s str,
    /// The charging identifier (RFC 7315 4.6 `icid-value`).
    pub icid: &'s str,
    /// Where the icid was made (our core-facing address).
    pub icid_generated_at: &'s str,
    /// `P-Visited-Network-ID` (empty: none).
    pub visited_network_id: &'s str,
    /// Max-Forwards after our hop.
    pub max_forwards: u8,
}

/// The option tags of `kind` without `drop`, plus `add` when given and missing.
fn option_tags(msg: &Message<'_>, kind: HeaderKind, drop: &str, add: Option<&str>) -> Vec<String> {
    let mut tags: Vec<String> = msg
        .option_tags(kind)
        .filter_map(Result::ok)
        .filter(|t| !t.eq_ignore_ascii_case(drop))
        .map(str::to_string)
        .collect();
    if let Some(a) = add {
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(a)) {
            tags.push(a.to_string());
        }
    }
    tags
}

/// The UE's `Authorization` with `integrity-protected` set, or a new one carrying just the
/// IMPI (TS 24.229 5.1.1.2.1 has the UE send one; 5.2.2.1 has the P-CSCF mark it).
/// `None` if the UE's header does not parse.
fn authorization(msg: &Message<'_>, hop: &RegisterHop<'_>) -> Option<String> {
    let mut params = match msg.header(HeaderKind::Authorization) {
        Some(v) => DigestParams::parse(v).ok()?,
        None => {
            let realm = realm_of(hop.impi);
            let mut p = DigestParams::new();
            p.push("username", hop.impi, true).ok()?;
            p.push("realm", realm, true).ok()?;
            p.push("uri", &format!("sip:{realm}"), true).ok()?;
            p.push("nonce", "", true).ok()?;
            p.push("response", "", true).ok()?;
            p
        }
    };
    params.remove("integrity-protected");
    params
        .push("integrity-protected", hop.integrity.token(), true)
        .ok()?;
    Some(params.render())
}

/// The REGISTER as it leaves towards the core, without our Via (TS 24.229 5.2.2.1-5.2.2.2):
/// `Security-Client` / `Security-Verify` and the `sec-agree` tags removed (RFC 3329 is
/// hop-by-hop), our `Path` first with `path` in `Supported` and `Require` (RFC 3327),
/// `P-Visited-Network-ID`, a fresh `P-Charging-Vector`, `Authorization` marked
/// `integrity-protected`, any `Route` and `P-Asserted-Identity` from the UE dropped (only
/// the P-CSCF may assert identities towards the core), Max-Forwards lowered. `None` if the
/// UE's Authorization does not parse.
pub fn forward_register(msg: &Message<'_>, hop: &RegisterHop<'_>) -> Option<Vec<u8>> {
    let auth = authorization(msg, hop)?;
    let mut e = MessageEdit::new(msg);
    e.remove("Security-Client");
    e.remove("Security-Verify");
    e.remove("Route");
    e.remove("P-Asserted-Identity");
    e.remove("P-Preferred-Identity");
    e.remove("P-Visited-Network-ID");
    e.remove("P-Charging-Vector");
    e.set_list(
        "Require",
        &option_tags(msg, HeaderKind::Require, SEC_AGREE, Some(PATH)),
    );
    e.set_list(
        "Proxy-Require",
        &option_tags(msg, HeaderKind::ProxyRequire, SEC_AGREE, None),
    );
    e.set_list(
        "Supported",
        &option_tags(msg, HeaderKind::Supported, SEC_AGREE, Some(PATH)),
    );
    // Only the P-CSCF's Path goes on (a UE has no business adding one).
    e.remove("Path");
    e.push("Path", format!("<{}>", hop.path));
    e.replace("Authorization", auth);
    if !hop.visited_network_id.is_empty() {
        e.push(
            "P-Visited-Network-ID",
            format!("\"{}\"", hop.visited_network_id.replace(['"', '\\'], "")),
        );
    }
    e.push(
        "P-Charging-Vector",
        format!(
            "icid-value={};icid-generated-at={}",
            hop.icid, hop.icid_generated_at
        ),
    );
    e.replace("Max-Forwards", hop.max_forwards.to_string());
    Some(e.to_bytes())
}

/// Why CK and IK could not be taken from the S-CSCF's 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyExtractError {
    /// No `WWW-Authenticate` with a Digest challenge.
    #[error("no Digest WWW-Authenticate")]
    NoChallenge,
    /// The challenge carries no `ck` or no `ik`.
    #[error("the challenge carries no ck/ik")]
    Missing,
    /// `ck` or `ik` is not 32 hexadecimal digits.
    #[error("ck/ik is not 128 bits of hex")]
    Malformed,
}

/// 16 bytes from 32 hex digits (quoted or not).
fn key_bytes(hex_digits: &str) -> Result<Zeroizing<[u8; 16]>, KeyExtractError> {
    let mut out = Zeroizing::new([0u8; 16]);
    hex::decode_to_slice(hex_digits.trim(), &mut out[..])
        .map_err(|_| KeyExtractError::Malformed)?;
    Ok(out)
}

/// Takes `ck` and `ik` out of a 401's `WWW-Authenticate` (TS 24.229 5.2.2.1: the P-CSCF
/// removes them before the 401 goes to the UE): returns the header value without them and
/// the keys. Only the first Digest challenge is looked at.
pub fn take_keys(www_authenticate: &str) -> Result<(String, Ck, Ik), KeyExtractError> {
    let mut params =
        DigestParams::parse(www_authenticate).map_err(|_| KeyExtractError::NoChallenge)?;
    let ck = params.remove("ck").map(Zeroizing::new);
    let ik = params.remove("ik").map(Zeroizing::new);
    let (Some(ck), Some(ik)) = (ck, ik) else {
        return Err(KeyExtractError::Missing);
    };
    let ck = Ck::new(*key_bytes(&ck)?);
    let ik = Ik::new(*key_bytes(&ik)?);
    Ok((params.render(), ck, ik))
}

/// What a 200 OK to a REGISTER tells the P-CSCF (TS 24.229 5.2.2.1 step on 200 OK).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrationFacts {
    /// The `Service-Route` entries, in order (the Route set of the UE's requests).
    pub service_route: Vec<String>,
    /// The `P-Associated-URI`s, the default (first) one first.
    pub associated_uris: Vec<String>,
    /// The lifetime granted to the UE's contact (0: de-registered).
    pub expires: u32,
}

/// RFC 3261 19.1.4 URI equivalence for SIP URIs: scheme, user (case-sensitive), host
/// (case-insensitive) and port as written; `user`, `ttl`, `method`, `maddr` and `transport`
/// must agree when either has them, any other parameter only when both have it; order never
/// matters. Other schemes compare as text without case.
pub fn same_uri(a: &str, b: &str) -> bool {
    let (Ok(x), Ok(y)) = (Uri::parse(a.trim()), Uri::parse(b.trim())) else {
        return a.trim().eq_ignore_ascii_case(b.trim());
    };
    if !matches!(x.scheme, Scheme::Sip | Scheme::Sips) || x.scheme != y.scheme {
        return a.trim().eq_ignore_ascii_case(b.trim());
    }
    let host = |u: &Uri<'_>| u.host.map(|h| h.to_string().to_ascii_lowercase());
    if x.user != y.user || host(&x) != host(&y) || x.port != y.port {
        return false;
    }
    const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];
    let value = |u: &Uri<'_>, n: &str| u.params.get(n).map(|v| v.map(str::to_ascii_lowercase));
    let names = x
        .params
        .iter()
        .chain(y.params.iter())
        .map_while(Result::ok)
        .map(|p| p.name.to_ascii_lowercase());
    for n in names {
        let (vx, vy) = (value(&x, &n), value(&y, &n));
        let both = vx.is_some() && vy.is_some();
        if (both || MUST_MATCH.contains(&n.as_str())) && vx != vy {
            return false;
        }
    }
    true
}

/// Reads a 200 OK to a REGISTER for `contact`: the lifetime granted to that contact (its
/// `expires` parameter in the 200's Contact list, else the Expires header; a contact the
/// 200 no longer lists is gone: 0), Service-Route and P-Associated-URI.
pub fn registration_facts(ok: &Message<'_>, contact: Option<&str>) -> RegistrationFacts {
    let expires_header = ok.expires().ok().flatten();
    let mut listed = false;
    let mut expires = None;
    for c in ok.contacts().filter_map(Result::ok) {
        let Some(addr) = c.addr() else { continue };
        let matches = contact.is_none_or(|u| same_uri(addr.uri.raw, u));
        if matches && expires.is_none() {
            listed = true;
            expires = c.expires().or(expires_header);
        }
    }
    let expires = match (listed, expires) {
        (_, Some(e)) => e,
        (false, None) if contact.is_some() && ok.contacts().next().is_some() => 0,
        _ => expires_header.unwrap_or(0),
    };
    let uris = |kind| {
        ok.list_values(kind)
            .filter_map(Result::ok)
            .filter_map(|v| NameAddr::parse(v).ok().map(|a| a.uri.raw.to_string()))
            .collect::<Vec<_>>()
    };
    RegistrationFacts {
        service_route: ok
            .list_values(HeaderKind::ServiceRoute)
            .filter_map(Result::ok)
            .map(str::to_string)
            .collect(),
        associated_uris: uris(HeaderKind::PAssociatedUri),
        expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org SIP/2.0\r\n\
Via: SIP/2.0/TCP [2001:db8::5]:5060;branch=z9hG4bKue1;rport=5060;received=2001:db8::5\r\n\
Max-Forwards: 70\r\n\
From: <sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>;tag=a\r\n\
To: <sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>\r\n\
Call-ID: c1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:001010000000001@[2001:db8::5]:5060>;expires=600000\r\n\
Authorization: Digest username=\"001010000000001@ims.mnc001.mcc001.3gppnetwork.org\",realm=\"ims.mnc001.mcc001.3gppnetwork.org\",uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\",nonce=\"\",response=\"\"\r\n\
Require: sec-agree\r\n\
Proxy-Require: sec-agree\r\n\
Supported: sec-agree, gruu\r\n\
Security-Client: ipsec-3gpp;alg=hmac-sha-1-96;ealg=null;spi-c=1;spi-s=2;port-c=5100;port-s=5101\r\n\
P-Asserted-Identity: <sip:forged@example.com>\r\n\
Route: <sip:pcscf.example.com;lr>\r\n\
Content-Length: 0\r\n\r\n";

    fn hop(integrity: Integrity) -> RegisterHop<'static> {
        RegisterHop {
            impi: "001010000000001@ims.mnc001.mcc001.3gppnetwork.org",
            integrity,
            path: "sip:r-abc@10.0.0.1:5060;lr",
            icid: "1234abcd",
            icid_generated_at: "10.0.0.1",
            visited_network_id: "ims.mnc001.mcc001.3gppnetwork.org",
            max_forwards: 69,
        }
    }

    #[test]
    fn initial_register_is_marked_and_stripped() {
        let msg = Message::parse(REGISTER.as_bytes()).unwrap();
        let out = forward_register(&msg, &hop(Integrity::No)).unwrap();
        let fwd = Message::parse(&out).unwrap();
        assert!(fwd.header(HeaderKind::SecurityClient).is_none());
        assert!(fwd.header(HeaderKind::Route).is_none());
        assert!(fwd.header(HeaderKind::PAssertedIdentity).is_none());
        assert_eq!(fwd.header(HeaderKind::Require), Some("path"));
        assert!(fwd.header(HeaderKind::ProxyRequire).is_none());
        assert_eq!(fwd.header(HeaderKind::Supported), Some("gruu, path"));
        assert_eq!(
            fwd.header(HeaderKind::Path),
            Some("<sip:r-abc@10.0.0.1:5060;lr>")
        );
        assert_eq!(fwd.header(HeaderKind::MaxForwards), Some("69"));
        assert_eq!(
            fwd.header(HeaderKind::PChargingVector),
            Some("icid-value=1234abcd;icid-generated-at=10.0.0.1")
        );
        assert_eq!(
            fwd.header(HeaderKind::PVisitedNetworkId),
            Some("\"ims.mnc001.mcc001.3gppnetwork.org\"")
        );
        let auth = DigestParams::parse(fwd.header(HeaderKind::Authorization).unwrap()).unwrap();
        assert_eq!(auth.get("integrity-protected"), Some("no"));
        assert_eq!(auth.get("nonce"), Some(""));
        // The Via and everything else the UE sent stays.
        assert!(fwd.header(HeaderKind::Via).unwrap().contains("z9hG4bKue1"));
        assert!(fwd.header(HeaderKind::Contact).is_some());
    }

    #[test]
    fn missing_authorization_is_added_and_protected_is_yes() {
        let without = REGISTER.replace(
            "Authorization: Digest username=\"001010000000001@ims.mnc001.mcc001.3gppnetwork.org\",realm=\"ims.mnc001.mcc001.3gppnetwork.org\",uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\",nonce=\"\",response=\"\"\r\n",
            "",
        );
        let msg = Message::parse(without.as_bytes()).unwrap();
        let out = forward_register(&msg, &hop(Integrity::Yes)).unwrap();
        let fwd = Message::parse(&out).unwrap();
        let auth = DigestParams::parse(fwd.header(HeaderKind::Authorization).unwrap()).unwrap();
        assert_eq!(
            auth.get("username"),
            Some("001010000000001@ims.mnc001.mcc001.3gppnetwork.org")
        );
        assert_eq!(auth.get("realm"), Some("ims.mnc001.mcc001.3gppnetwork.org"));
        assert_eq!(auth.get("integrity-protected"), Some("yes"));
    }

    #[test]
    fn keys_come_out_of_the_challenge() {
        let www = "Digest realm=\"ims.example\", nonce=\"abc=\", algorithm=AKAv1-MD5, \
                   ck=\"00112233445566778899aabbccddeeff\", ik=\"ffeeddccbbaa99887766554433221100\", qop=\"auth\"";
        let (rest, ck, ik) = take_keys(www).unwrap();
        assert_eq!(ck.as_bytes()[0], 0x00);
        assert_eq!(ck.as_bytes()[15], 0xff);
        assert_eq!(ik.as_bytes()[0], 0xff);
        assert!(!rest.contains("ck=") && !rest.contains("ik="));
        assert_eq!(
            rest,
            "Digest realm=\"ims.example\", nonce=\"abc=\", algorithm=AKAv1-MD5, qop=\"auth\""
        );
    }

    #[test]
    fn challenges_without_usable_keys_are_refused() {
        assert_eq!(
            take_keys("Digest realm=\"x\", nonce=\"n\"").err(),
            Some(KeyExtractError::Missing)
        );
        assert_eq!(
            take_keys("Digest realm=\"x\", nonce=\"n\", ck=\"00\", ik=\"11\"").err(),
            Some(KeyExtractError::Malformed)
        );
        assert_eq!(
            take_keys("Digest realm=\"x\", ck=\"zz112233445566778899aabbccddeeff\", ik=\"00112233445566778899aabbccddeeff\"").err(),
            Some(KeyExtractError::Malformed)
        );
        assert_eq!(
            take_keys("Basic abc").err(),
            Some(KeyExtractError::NoChallenge)
        );
    }

    #[test]
    fn facts_of_a_200() {
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n\
Contact: <sip:other@[2001:db8::9]>;expires=100, <sip:001010000000001@[2001:db8::5]:5060>;expires=3600\r\n\
Service-Route: <sip:orig@scscf.ims.example:6060;lr>\r\n\
P-Associated-URI: <sip:001010000000001@ims.example>, <tel:+15550001>\r\n\
Content-Length: 0\r\n\r\n";
        let msg = Message::parse(ok.as_bytes()).unwrap();
        let f = registration_facts(&msg, Some("sip:001010000000001@[2001:db8::5]:5060"));
        assert_eq!(f.expires, 3600);
        assert_eq!(
            f.service_route,
            vec!["<sip:orig@scscf.ims.example:6060;lr>"]
        );
        assert_eq!(
            f.associated_uris,
            vec!["sip:001010000000001@ims.example", "tel:+15550001"]
        );
        // A contact the 200 does not list is no longer registered.
        assert_eq!(registration_facts(&msg, Some("sip:gone@x")).expires, 0);
    }

    #[test]
    fn uri_equivalence_follows_rfc_3261_19_1_4() {
        assert!(same_uri(
            "sip:a@Host.Example:5060;transport=tcp;ob",
            "sip:a@host.example:5060;ob;TRANSPORT=TCP"
        ));
        assert!(same_uri("sip:a@h;x=1", "sip:a@h"));
        assert!(!same_uri("sip:a@h;transport=tcp", "sip:a@h"));
        assert!(!same_uri("sip:a@h:5060", "sip:a@h"));
        assert!(!same_uri("sip:A@h", "sip:a@h"));
        assert!(!same_uri("sip:a@h;x=1", "sip:a@h;x=2"));
        assert!(same_uri("tel:+1555", "TEL:+1555"));
    }
}
