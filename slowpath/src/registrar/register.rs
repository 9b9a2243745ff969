//! REGISTER handling: initial challenge (401 + Security-Server + SA install), protected
//! REGISTER (Security-Verify, AKAv1-MD5), AUTS resync, re-registration, de-registration, expiry.

use std::time::Instant;

use akagate_fastpath::ipc::{SaSet, SipIn, WorkerCommand};

use super::{Active, Pending, Registration, SaSetExt, SetKind};
use crate::aka::{
    decode_auts, derive_suite, AkaNonce, DigestChallenge, DigestCredentials, ALGORITHM_AKAV1_MD5,
};
use crate::core::{Action, Core};
use crate::proxy::message::{uri_of, SipMsg};
use crate::secagree::{
    choose, parse_security_header, render_security_header, SecMechanism, IPSEC_3GPP,
};

/// The sec-agree option tag (RFC 3329 2.2).
const SEC_AGREE: &str = "sec-agree";

/// The IMPI of a REGISTER: Authorization `username`, else derived from the To URI
/// (TS 24.229 5.1.1.2: a UE without ISIM derives it the same way).
fn impi_of(msg: &SipMsg, creds: Option<&DigestCredentials>) -> Option<String> {
    if let Some(c) = creds {
        if !c.username.is_empty() {
            return Some(c.username.clone());
        }
    }
    let to = uri_of(msg.header("To")?);
    let user_host = to
        .strip_prefix("sip:")
        .or_else(|| to.strip_prefix("sips:"))?;
    Some(user_host.split([';', '?']).next()?.to_string())
}

/// The realm: the domain part of the IMPI (TS 33.203 6.1.1, TS 23.003 13.3).
fn realm_of(impi: &str) -> &str {
    impi.rsplit_once('@').map_or(impi, |(_, d)| d)
}

/// Requested lifetime: the Contact `expires` parameter, else the Expires header (RFC 3261 10.2.1.1).
fn requested_expires(msg: &SipMsg) -> Option<u32> {
    let contact = msg.header("Contact")?;
    let from_param = contact
        .rsplit_once('>')
        .map_or(contact, |(_, p)| p)
        .split(';')
        .find_map(|p| {
            let (n, v) = p.split_once('=')?;
            n.trim()
                .eq_ignore_ascii_case("expires")
                .then(|| v.trim().parse().ok())?
        });
    from_param.or_else(|| msg.header("Expires").and_then(|e| e.trim().parse().ok()))
}

/// Whether Security-Verify echoes `sent` (RFC 3329 2.3.1, TS 33.203 7.2): exactly one
/// mechanism, equal parameter for parameter.
fn verify_matches(msg: &SipMsg, sent: &SecMechanism) -> bool {
    let mut got = Vec::new();
    for v in msg.list("Security-Verify") {
        match parse_security_header(&v) {
            Ok(m) => got.extend(m),
            Err(_) => return false,
        }
    }
    got.len() == 1 && got.iter().all(|m| m.equivalent(sent))
}

impl Core {
    /// Our supported mechanisms, for 421/494 answers (RFC 3329 2.3.1).
    fn supported_mechanisms(&self) -> String {
        let p = &self.cfg.profile;
        let mut v = Vec::new();
        for e in &p.encr_alg_list {
            for a in &p.auth_alg_list {
                v.push(
                    SecMechanism::new(IPSEC_3GPP)
                        .with("alg", a.token())
                        .with("ealg", e.token())
                        .with("prot", "esp")
                        .with("mod", "trans")
                        .with("q", "0.1"),
                );
            }
        }
        render_security_header(&v)
    }

    fn reply(&mut self, out: &mut Vec<Action>, sip: &SipIn, msg: &SipMsg, code: u16, reason: &str) {
        let tag = self.token(8);
        Core::send(out, sip.flow, &msg.response(code, reason, &tag), false);
    }

    /// Frees a set's inbound SPIs and forgets them.
    fn release_set(&mut self, set: &SaSet) {
        for spi in [set.spi_pc, set.spi_ps] {
            self.by_spi.remove(&spi);
            if let Err(e) = self.spis.release(spi) {
                log::warn!("releasing SPI {spi}: {e}");
            }
        }
    }

    /// Removes a set: the worker command (after anything already queued) and the SPIs.
    pub(crate) fn remove_set(&mut self, set: &SaSet, out: &mut Vec<Action>) {
        out.push(set.remove_cmd());
        self.release_set(set);
    }

    pub(crate) fn on_register(
        &mut self,
        msg: &SipMsg,
        sip: &SipIn,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let creds = match msg.header("Authorization").map(DigestCredentials::parse) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return self.reply(out, sip, msg, 400, "Bad Authorization"),
        };
        let Some(impi) = impi_of(msg, creds.as_ref()) else {
            return self.reply(out, sip, msg, 400, "Missing To");
        };
        let Some(sub) = self.hss.subscriber(&impi) else {
            return self.reply(out, sip, msg, 403, "Forbidden");
        };
        let (impi, impus) = (sub.impi().to_string(), sub.impu().to_vec());
        let key = impi.to_ascii_lowercase();

        // Which SA set did it come through? Decided by the SA, never by the port.
        let kind = match sip.via_spi {
            None => None,
            Some(spi) => match self.by_spi.get(&spi) {
                Some(k) if *k == key => self.regs.get(&key).and_then(|r| r.kind_of(spi)),
                // Through another UE's SA, or an SA we no longer know: refuse.
                _ => return self.reply(out, sip, msg, 403, "Forbidden"),
            },
        };

        if kind.is_none() && msg.header("Security-Client").is_none() {
            // RFC 3329 2.3.1, TS 24.229 5.2.2.1: no sec-agree at all -> 421; sec-agree but
            // no Security-Client -> 494; both carry Require: sec-agree and Security-Server.
            let tagged = ["Require", "Proxy-Require", "Supported"]
                .iter()
                .any(|h| msg.has_tag(h, SEC_AGREE));
            let (code, reason) = if tagged {
                (494, "Security Agreement Required")
            } else {
                (421, "Extension Required")
            };
            let tag = self.token(8);
            let mut r = msg.response(code, reason, &tag);
            r.push("Require", SEC_AGREE);
            r.push("Security-Server", self.supported_mechanisms());
            return Core::send(out, sip.flow, &r, false);
        }

        let reg = self
            .regs
            .entry(key.clone())
            .or_insert_with(|| Registration {
                impi: impi.clone(),
                impus,
                pending: None,
                active: None,
                old: None,
            });
        let answers_pending = match (&creds, &reg.pending) {
            (Some(c), Some(p)) => c.nonce == p.nonce,
            _ => false,
        };

        if let (true, Some(creds)) = (answers_pending, creds.as_ref()) {
            if let Some(auts) = &creds.auts {
                return self.resync(msg, sip, &key, auts, now, out);
            }
            if kind != Some(SetKind::Pending) {
                // TS 33.203 6.1: the answer must come over the new SAs; an empty response
                // outside them is the UE reporting a MAC failure (RFC 3310 3.3).
                return self.fail_pending(msg, sip, &key, out);
            }
            return self.complete(msg, sip, &key, creds, now, out);
        }

        match kind {
            Some(SetKind::Active) | Some(SetKind::Old) => {
                let sent = match kind {
                    Some(SetKind::Active) => self
                        .regs
                        .get(&key)
                        .and_then(|r| r.active.as_ref())
                        .map(|a| a.security_server.clone()),
                    _ => None,
                };
                // The old set has no Security-Server kept; refreshes must use the active set.
                let Some(sent) = sent else {
                    return self.reply(out, sip, msg, 403, "Forbidden");
                };
                if !verify_matches(msg, &sent) {
                    return self.reply(out, sip, msg, 403, "Security-Verify mismatch");
                }
                if requested_expires(msg) == Some(0) {
                    return self.deregister(msg, sip, &key, out);
                }
                self.challenge(msg, sip, &key, now, out);
            }
            Some(SetKind::Pending) => self.fail_pending(msg, sip, &key, out),
            None => self.challenge(msg, sip, &key, now, out),
        }
    }

    /// Sends a fresh challenge with a new SA set; any earlier pending set is removed after
    /// the 401 left, so exactly one pending set remains (the latest challenge's).
    fn challenge(
        &mut self,
        msg: &SipMsg,
        sip: &SipIn,
        key: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let offers: Vec<SecMechanism> = match msg
            .list("Security-Client")
            .iter()
            .map(|v| parse_security_header(v))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(v) => v.into_iter().flatten().collect(),
            Err(_) => return self.reply(out, sip, msg, 400, "Bad Security-Client"),
        };
        let Some(chosen) = choose(&self.cfg.profile, &offers) else {
            let tag = self.token(8);
            let mut r = msg.response(494, "Security Agreement Required", &tag);
            r.push("Require", SEC_AGREE);
            r.push("Security-Server", self.supported_mechanisms());
            return Core::send(out, sip.flow, &r, false);
        };
        let Some(impi) = self.regs.get(key).map(|r| r.impi.clone()) else {
            return;
        };
        let mut rand = [0u8; 16];
        self.rng.fill_bytes(&mut rand);
        // The SQN is durable before the vector exists (TS 33.102 6.3.2).
        let av = match self.hss.challenge(&impi, rand) {
            Ok(av) => av,
            Err(e) => {
                log::warn!("HSS challenge for {impi}: {e}");
                return self.reply(out, sip, msg, 500, "Server Internal Error");
            }
        };
        let Ok(suite) = derive_suite(chosen.auth, chosen.encr, &av.ck, &av.ik) else {
            return self.reply(out, sip, msg, 500, "Server Internal Error");
        };
        let spi_pc = self.spis.allocate();
        let spi_ps = self.spis.allocate();
        let (spi_pc, spi_ps) = match (spi_pc, spi_ps) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                for s in [a, b].into_iter().flatten() {
                    let _ = self.spis.release(s);
                }
                return self.reply(out, sip, msg, 503, "Service Unavailable");
            }
        };
        let (port_pc, port_ps) = (
            self.cfg.profile.protected_client_port,
            self.cfg.profile.protected_server_port,
        );
        let set = SaSet {
            ue: sip.flow.ue,
            local: sip.flow.local,
            suite,
            spi_pc,
            spi_ps,
            spi_uc: chosen.spi_uc,
            spi_us: chosen.spi_us,
            port_pc,
            port_ps,
            port_uc: chosen.port_uc,
            port_us: chosen.port_us,
        };
        let security_server = chosen.security_server(spi_pc, spi_ps, port_pc, port_ps);
        let nonce = AkaNonce {
            rand,
            autn: av.autn,
            server_data: Vec::new(),
        }
        .encode();
        let www = DigestChallenge {
            realm: realm_of(&impi).to_string(),
            nonce: nonce.clone(),
            algorithm: Some(ALGORITHM_AKAV1_MD5.into()),
            qop: Some("auth".into()),
            opaque: None,
            stale: false,
        }
        .render();
        let Ok(www) = www else {
            self.release_set(&set);
            return self.reply(out, sip, msg, 500, "Server Internal Error");
        };
        // TS 33.203 7.1: the SAs exist before the UE can use them, i.e. before the 401 leaves.
        out.push(WorkerCommand::InstallSaSet(Box::new(set.clone())));
        let tag = self.token(8);
        let mut r = msg.response(401, "Unauthorized", &tag);
        r.push("WWW-Authenticate", www);
        r.push("Security-Server", security_server.render());
        Core::send(out, sip.flow, &r, false);
        self.by_spi.insert(spi_pc, key.to_string());
        self.by_spi.insert(spi_ps, key.to_string());
        let pending = Pending {
            set,
            security_server,
            nonce,
            rand,
            xres: av.xres.clone(),
            deadline: now + self.cfg.challenge_timeout,
        };
        let old = self
            .regs
            .get_mut(key)
            .and_then(|r| r.pending.replace(pending));
        if let Some(old) = old {
            self.remove_set(&old.set, out);
        }
    }

    /// AUTS: re-synchronise the HSS and challenge again (RFC 3310 3.4, TS 33.102 6.3.5).
    fn resync(
        &mut self,
        msg: &SipMsg,
        sip: &SipIn,
        key: &str,
        auts: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some((impi, rand)) = self
            .regs
            .get(key)
            .and_then(|r| Some((r.impi.clone(), r.pending.as_ref()?.rand)))
        else {
            return;
        };
        let ok = decode_auts(auts)
            .ok()
            .is_some_and(|a| self.hss.resync(&impi, &rand, a.as_bytes()).is_ok());
        if !ok {
            return self.fail_pending(msg, sip, key, out);
        }
        self.challenge(msg, sip, key, now, out);
    }

    /// 403 and removal of the attempt's SAs (after the 403 left).
    fn fail_pending(&mut self, msg: &SipMsg, sip: &SipIn, key: &str, out: &mut Vec<Action>) {
        self.reply(out, sip, msg, 403, "Forbidden");
        if let Some(p) = self.regs.get_mut(key).and_then(|r| r.pending.take()) {
            self.remove_set(&p.set, out);
        }
        self.drop_if_empty(key);
    }

    fn drop_if_empty(&mut self, key: &str) {
        if self
            .regs
            .get(key)
            .is_some_and(|r| r.pending.is_none() && r.active.is_none() && r.old.is_none())
        {
            self.regs.remove(key);
        }
    }

    /// The protected REGISTER over the pending set: check Security-Verify and the digest,
    /// then bind and answer 200 (TS 24.229 5.2.2.1, 5.4.1.2).
    fn complete(
        &mut self,
        msg: &SipMsg,
        sip: &SipIn,
        key: &str,
        creds: &DigestCredentials,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(reg) = self.regs.get(key) else {
            return;
        };
        let Some(p) = reg.pending.as_ref() else {
            return;
        };
        let ok = verify_matches(msg, &p.security_server)
            && creds
                .algorithm
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case(ALGORITHM_AKAV1_MD5))
            && creds.verify("REGISTER", p.xres.as_bytes());
        if !ok {
            return self.fail_pending(msg, sip, key, out);
        }
        let expires = requested_expires(msg)
            .unwrap_or(self.cfg.default_expires)
            .min(self.cfg.max_expires);
        let contact = msg
            .header("Contact")
            .map(|c| uri_of(c).to_string())
            .unwrap_or_default();
        let Some(reg) = self.regs.get_mut(key) else {
            return;
        };
        let Some(p) = reg.pending.take() else { return };
        let previous = reg.active.take();
        let impus = reg.impus.clone();
        reg.active = Some(Active {
            set: p.set,
            security_server: p.security_server,
            contact: contact.clone(),
            expires_at: now + std::time::Duration::from_secs(u64::from(expires)),
            used: false,
        });
        let mut superseded = None;
        if let Some(prev) = previous {
            // The previous set lives until the new one carries traffic or it expires.
            superseded = reg.old.replace((prev.set, prev.expires_at));
        }
        if expires == 0 {
            return self.deregister(msg, sip, key, out);
        }
        let tag = self.token(8);
        let mut r = msg.response(200, "OK", &tag);
        r.push("Contact", format!("<{contact}>;expires={expires}"));
        r.push("Expires", expires.to_string());
        r.push("Path", format!("<sip:term@{};lr>", self.cfg.pcscf_host));
        r.push(
            "Service-Route",
            format!("<sip:orig@{};lr>", self.cfg.pcscf_host),
        );
        r.push(
            "P-Associated-URI",
            impus
                .iter()
                .map(|u| format!("<{u}>"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        Core::send(out, sip.flow, &r, false);
        if let Some((set, _)) = superseded {
            self.remove_set(&set, out);
        }
    }

    /// `Expires: 0`: 200 OK through the SAs, then every set of the UE removed.
    fn deregister(&mut self, msg: &SipMsg, sip: &SipIn, key: &str, out: &mut Vec<Action>) {
        let tag = self.token(8);
        let mut r = msg.response(200, "OK", &tag);
        if let Some(c) = msg.header("Contact") {
            r.push("Contact", format!("<{}>;expires=0", uri_of(c)));
        }
        r.push("Expires", "0");
        Core::send(out, sip.flow, &r, false);
        self.drop_registration(key, out);
    }

    /// Removes all sets of a registration (after whatever is already in `out`).
    pub(crate) fn drop_registration(&mut self, key: &str, out: &mut Vec<Action>) {
        if let Some(reg) = self.regs.remove(key) {
            let sets = [
                reg.active.map(|a| a.set),
                reg.old.map(|o| o.0),
                reg.pending.map(|p| p.set),
            ];
            for set in sets.into_iter().flatten() {
                self.remove_set(&set, out);
            }
        }
        self.dialogs
            .retain(|_, d| d.caller != key && d.callee != key);
    }

    /// Notes traffic over `spi`: the first message over a new active set retires the old one.
    pub(crate) fn note_traffic(&mut self, key: &str, spi: u32, out: &mut Vec<Action>) {
        let Some(reg) = self.regs.get_mut(key) else {
            return;
        };
        if reg.kind_of(spi) != Some(SetKind::Active) {
            return;
        }
        if let Some(a) = reg.active.as_mut() {
            a.used = true;
        }
        if let Some((set, _)) = reg.old.take() {
            self.remove_set(&set, out);
        }
    }

    /// Expires challenges, old sets and registrations whose time has come.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due: Vec<String> = self
            .regs
            .iter()
            .filter(|(_, r)| r.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(reg) = self.regs.get_mut(&key) else {
                continue;
            };
            if reg.active.as_ref().is_some_and(|a| a.expires_at <= now) {
                self.drop_registration(&key, out);
                continue;
            }
            let pending = reg.pending.take_if(|p| p.deadline <= now);
            let old = reg.old.take_if(|o| o.1 <= now);
            for set in [pending.map(|p| p.set), old.map(|o| o.0)]
                .into_iter()
                .flatten()
            {
                self.remove_set(&set, out);
            }
            self.drop_if_empty(&key);
        }
    }
}
