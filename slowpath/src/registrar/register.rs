//! REGISTER handling: initial challenge (401 + Security-Server + SA install), protected
//! REGISTER (Security-Verify, AKAv1-MD5), AUTS resync, re-registration (authenticated with a
//! new SA set, or a plain refresh over the existing one), de-registration, expiry.

use std::time::{Duration, Instant};

use akagate_proto::ipc::{SaSet, WorkerCommand};

use super::{Active, Pending, Registration, SaSetExt, SetKind};
use crate::aka::{
    decode_auts, derive_suite, AkaNonce, DigestChallenge, DigestCredentials, ALGORITHM_AKAV1_MD5,
};
use crate::core::{Action, Core, Req, TimerKey};
use crate::secagree::{
    choose, parse_security_header, render_security_header, SecMechanism, IPSEC_3GPP,
};
use crate::sip::{HeaderKind, Message, Scheme};

/// The sec-agree option tag (RFC 3329 2.2).
const SEC_AGREE: &str = "sec-agree";

/// The IMPI of a REGISTER: Authorization `username`, else derived from the To URI
/// (TS 24.229 5.1.1.2: a UE without ISIM derives it the same way).
fn impi_of(msg: &Message<'_>, creds: Option<&DigestCredentials>) -> Option<String> {
    if let Some(c) = creds {
        if !c.username.is_empty() {
            return Some(c.username.clone());
        }
    }
    let to = msg.to_header().ok()?;
    if !matches!(to.uri.scheme, Scheme::Sip | Scheme::Sips) {
        return None;
    }
    let host = to.uri.host?;
    Some(match to.uri.user {
        Some(u) => format!("{u}@{host}"),
        None => host.to_string(),
    })
}

/// The realm: the domain part of the IMPI (TS 33.203 6.1.1, TS 23.003 13.3).
fn realm_of(impi: &str) -> &str {
    impi.rsplit_once('@').map_or(impi, |(_, d)| d)
}

/// Requested lifetime: the Contact `expires` parameter, else the Expires header (RFC 3261 10.2.1.1).
fn requested_expires(msg: &Message<'_>) -> Option<u32> {
    let from_contact = msg
        .contacts()
        .next()
        .and_then(Result::ok)
        .and_then(|c| c.expires());
    from_contact.or_else(|| msg.expires().ok().flatten())
}

/// The first Contact URI of a REGISTER (`None` for none or `*`).
fn contact_uri(msg: &Message<'_>) -> Option<String> {
    let c = msg.contacts().next()?.ok()?;
    Some(c.addr()?.uri.raw.to_string())
}

/// All mechanisms of every line of a Security-* header (RFC 3329 2.2).
fn mechanisms(msg: &Message<'_>, kind: HeaderKind) -> Result<Vec<SecMechanism>, ()> {
    let mut v = Vec::new();
    for line in msg.header_values(kind) {
        v.extend(parse_security_header(line).map_err(|_| ())?);
    }
    Ok(v)
}

/// Whether Security-Verify echoes `sent` (RFC 3329 2.3.1, TS 33.203 7.2): exactly one
/// mechanism, equal parameter for parameter.
fn verify_matches(msg: &Message<'_>, sent: &SecMechanism) -> bool {
    match mechanisms(msg, HeaderKind::SecurityVerify) {
        Ok(got) => got.len() == 1 && got.iter().all(|m| m.equivalent(sent)),
        Err(()) => false,
    }
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

    /// 421 / 494 with `Require: sec-agree` and our Security-Server (RFC 3329 2.3.1).
    fn require_sec_agree(
        &mut self,
        req: &Req<'_, '_>,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let extra = [
            ("Require", SEC_AGREE.to_string()),
            ("Security-Server", self.supported_mechanisms()),
        ];
        self.respond(req, code, reason, &extra, now, out);
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

    /// Puts registration `key`'s next deadline into the timer set (or takes it out).
    pub(crate) fn rearm(&mut self, key: &str) {
        let Some(reg) = self.regs.get_mut(key) else {
            return;
        };
        let (previous, next) = (reg.armed, reg.next_deadline());
        reg.armed = next;
        self.arm(TimerKey::Registration(key.to_string()), previous, next);
    }

    /// Forgets registration `key` and its timer.
    fn forget(&mut self, key: &str) -> Option<Registration> {
        let reg = self.regs.remove(key)?;
        self.arm(TimerKey::Registration(key.to_string()), reg.armed, None);
        Some(reg)
    }

    /// A REGISTER in its server transaction.
    pub(crate) fn on_register(&mut self, req: &Req<'_, '_>, now: Instant, out: &mut Vec<Action>) {
        let msg = req.msg;
        let creds = match msg
            .header(HeaderKind::Authorization)
            .map(DigestCredentials::parse)
        {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return self.respond(req, 400, "Bad Authorization", &[], now, out),
        };
        let Some(impi) = impi_of(msg, creds.as_ref()) else {
            return self.respond(req, 400, "Missing To", &[], now, out);
        };
        let Some(sub) = self.hss.subscriber(&impi) else {
            return self.respond(req, 403, "Forbidden", &[], now, out);
        };
        // RFC 3261 10.3 step 7 (and 20.23): a lifetime shorter than we accept, other than a
        // de-registration, is refused before any challenge or SA set is spent on it.
        let min = self.cfg.min_expires;
        if let Some(asked) = requested_expires(msg).filter(|&e| e != 0 && e < min) {
            log::debug!("REGISTER for {impi} asks {asked} s, below min-expires {min}");
            let extra = [("Min-Expires", min.to_string())];
            return self.respond(req, 423, "Interval Too Brief", &extra, now, out);
        }
        let (impi, impus) = (sub.impi().to_string(), sub.impu().to_vec());
        let key = impi.to_ascii_lowercase();
        self.register_for(req, &key, impi, impus, creds.as_ref(), now, out);
        self.rearm(&key);
    }

    #[allow(clippy::too_many_arguments)]
    fn register_for(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        impi: String,
        impus: Vec<String>,
        creds: Option<&DigestCredentials>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let msg = req.msg;
        // Which SA set did it come through? Decided by the SA, never by the port.
        let kind = match req.via_spi {
            None => None,
            Some(spi) => match self.by_spi.get(&spi) {
                Some(k) if k == key => self.regs.get(key).and_then(|r| r.kind_of(spi)),
                // Through another UE's SA, or an SA we no longer know: refuse.
                _ => return self.respond(req, 403, "Forbidden", &[], now, out),
            },
        };
        let has_security_client = msg.header(HeaderKind::SecurityClient).is_some();

        if kind.is_none() && !has_security_client {
            // RFC 3329 2.3.1, TS 24.229 5.2.2.1: no sec-agree at all -> 421; sec-agree but
            // no Security-Client -> 494; both carry Require: sec-agree and Security-Server.
            let tagged = [
                HeaderKind::Require,
                HeaderKind::ProxyRequire,
                HeaderKind::Supported,
            ]
            .into_iter()
            .any(|h| msg.has_option_tag(h, SEC_AGREE));
            return if tagged {
                self.require_sec_agree(req, 494, "Security Agreement Required", now, out)
            } else {
                self.require_sec_agree(req, 421, "Extension Required", now, out)
            };
        }

        let reg = self
            .regs
            .entry(key.to_string())
            .or_insert_with(|| Registration {
                impi,
                impus,
                pending: None,
                active: None,
                old: None,
                armed: None,
            });
        let answers_pending = match (creds, &reg.pending) {
            (Some(c), Some(p)) => c.nonce == p.nonce,
            _ => false,
        };

        if let (true, Some(creds)) = (answers_pending, creds) {
            if let Some(auts) = &creds.auts {
                return self.resync(req, key, auts, now, out);
            }
            if kind != Some(SetKind::Pending) {
                // TS 33.203 6.1: the answer must come over the new SAs; an empty response
                // outside them is the UE reporting a MAC failure (RFC 3310 3.3).
                return self.fail_pending(req, key, now, out);
            }
            return self.complete(req, key, creds, now, out);
        }

        match kind {
            Some(SetKind::Active) | Some(SetKind::Old) => {
                let sent = match kind {
                    Some(SetKind::Active) => self
                        .regs
                        .get(key)
                        .and_then(|r| r.active.as_ref())
                        .map(|a| a.security_server.clone()),
                    _ => None,
                };
                // The old set has no Security-Server kept; refreshes must use the active set.
                let Some(sent) = sent else {
                    return self.respond(req, 403, "Forbidden", &[], now, out);
                };
                if !verify_matches(msg, &sent) {
                    return self.respond(req, 403, "Security-Verify mismatch", &[], now, out);
                }
                if let Some(spi) = req.via_spi {
                    self.note_traffic(key, spi, out);
                }
                if requested_expires(msg) == Some(0) {
                    return self.deregister(req, key, now, out);
                }
                if has_security_client {
                    // TS 24.229 5.4.1.2.2 1): the registrar may authenticate any REGISTER;
                    // we do whenever the UE offers a Security-Client, so the refresh also
                    // renews the keys and SAs (TS 33.203 7.4).
                    self.challenge(req, key, now, out);
                } else {
                    // Without Security-Client there is nothing to build new SAs from
                    // (TS 33.203 7.1 needs the UE's SPIs and ports), so this REGISTER over the
                    // registered set is not re-authenticated (TS 24.229 5.4.1.2.2 1) leaves
                    // that to the registrar): the binding is refreshed and the SAs stay
                    // (TS 24.228 flow 6.x: the SAs are only replaced after a new 401).
                    self.refresh(req, key, now, out);
                }
            }
            Some(SetKind::Pending) => self.fail_pending(req, key, now, out),
            None => self.challenge(req, key, now, out),
        }
    }

    /// Sends a fresh challenge with a new SA set; any earlier pending set is removed after
    /// the 401 left, so exactly one pending set remains (the latest challenge's).
    fn challenge(&mut self, req: &Req<'_, '_>, key: &str, now: Instant, out: &mut Vec<Action>) {
        let offers = match mechanisms(req.msg, HeaderKind::SecurityClient) {
            Ok(v) => v,
            Err(()) => return self.respond(req, 400, "Bad Security-Client", &[], now, out),
        };
        let Some(chosen) = choose(&self.cfg.profile, &offers) else {
            return self.require_sec_agree(req, 494, "Security Agreement Required", now, out);
        };
        let Some(impi) = self.regs.get(key).map(|r| r.impi.clone()) else {
            return self.respond(req, 500, "Server Internal Error", &[], now, out);
        };
        let mut rand = [0u8; 16];
        self.rng.fill_bytes(&mut rand);
        // The SQN is durable before the vector exists (TS 33.102 6.3.2).
        let av = match self.hss.challenge(&impi, rand) {
            Ok(av) => av,
            Err(e) => {
                log::warn!("HSS challenge for {impi}: {e}");
                return self.respond(req, 500, "Server Internal Error", &[], now, out);
            }
        };
        let Ok(suite) = derive_suite(chosen.auth, chosen.encr, &av.ck, &av.ik) else {
            return self.respond(req, 500, "Server Internal Error", &[], now, out);
        };
        let spi_pc = self.spis.allocate();
        let spi_ps = self.spis.allocate();
        let (spi_pc, spi_ps) = match (spi_pc, spi_ps) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                for s in [a, b].into_iter().flatten() {
                    let _ = self.spis.release(s);
                }
                return self.respond(req, 503, "Service Unavailable", &[], now, out);
            }
        };
        let (port_pc, port_ps) = (
            self.cfg.profile.protected_client_port,
            self.cfg.profile.protected_server_port,
        );
        let set = SaSet {
            ue: req.flow.ue,
            local: req.flow.local,
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
            return self.respond(req, 500, "Server Internal Error", &[], now, out);
        };
        // TS 33.203 7.1: the SAs exist before the UE can use them, i.e. before the 401 leaves.
        out.push(WorkerCommand::InstallSaSet(Box::new(set.clone())));
        let extra = [
            ("WWW-Authenticate", www),
            ("Security-Server", security_server.render()),
        ];
        self.respond(req, 401, "Unauthorized", &extra, now, out);
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
        req: &Req<'_, '_>,
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
            return self.fail_pending(req, key, now, out);
        }
        self.challenge(req, key, now, out);
    }

    /// 403 and removal of the attempt's SAs (after the 403 left).
    fn fail_pending(&mut self, req: &Req<'_, '_>, key: &str, now: Instant, out: &mut Vec<Action>) {
        self.respond(req, 403, "Forbidden", &[], now, out);
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
            self.forget(key);
        }
    }

    /// The lifetime granted for `msg` (RFC 3261 10.3 step 7, capped by configuration).
    fn granted_expires(&self, msg: &Message<'_>) -> u32 {
        requested_expires(msg)
            .unwrap_or(self.cfg.default_expires)
            .min(self.cfg.max_expires)
    }

    /// The 200 OK to a successful (re-)registration (TS 24.229 5.4.1.2.2 step 2).
    fn registered_ok(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        contact: &str,
        expires: u32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let impus = self
            .regs
            .get(key)
            .map(|r| r.impus.clone())
            .unwrap_or_default();
        let host = &self.cfg.pcscf_host;
        let extra = [
            ("Contact", format!("<{contact}>;expires={expires}")),
            ("Expires", expires.to_string()),
            ("Path", format!("<sip:term@{host};lr>")),
            ("Service-Route", format!("<sip:orig@{host};lr>")),
            (
                "P-Associated-URI",
                impus
                    .iter()
                    .map(|u| format!("<{u}>"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ];
        self.respond(req, 200, "OK", &extra, now, out);
        self.on_registered(key, now, out);
    }

    /// The protected REGISTER over the pending set: check Security-Verify and the digest,
    /// then bind and answer 200 (TS 24.229 5.2.2.1, 5.4.1.2).
    fn complete(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        creds: &DigestCredentials,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let msg = req.msg;
        let Some(p) = self.regs.get(key).and_then(|r| r.pending.as_ref()) else {
            return;
        };
        let ok = verify_matches(msg, &p.security_server)
            && creds
                .algorithm
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case(ALGORITHM_AKAV1_MD5))
            && creds.verify("REGISTER", p.xres.as_bytes());
        if !ok {
            return self.fail_pending(req, key, now, out);
        }
        let expires = self.granted_expires(msg);
        let contact = contact_uri(msg).unwrap_or_default();
        let Some(reg) = self.regs.get_mut(key) else {
            return;
        };
        let Some(p) = reg.pending.take() else { return };
        let previous = reg.active.take();
        reg.active = Some(Active {
            set: p.set,
            security_server: p.security_server,
            contact: contact.clone(),
            proto: req.flow.proto,
            expires_at: now + Duration::from_secs(u64::from(expires)),
            used: false,
        });
        let mut superseded = None;
        if let Some(prev) = previous {
            // The previous set lives until the new one carries traffic or it expires.
            superseded = reg.old.replace((prev.set, prev.expires_at));
        }
        if expires == 0 {
            return self.deregister(req, key, now, out);
        }
        self.registered_ok(req, key, &contact, expires, now, out);
        if let Some((set, _)) = superseded {
            self.remove_set(&set, out);
        }
    }

    /// A re-REGISTER over the registered set without a new Security-Client: new lifetime
    /// (and contact), same SAs.
    fn refresh(&mut self, req: &Req<'_, '_>, key: &str, now: Instant, out: &mut Vec<Action>) {
        let expires = self.granted_expires(req.msg);
        let Some(active) = self.regs.get_mut(key).and_then(|r| r.active.as_mut()) else {
            return self.respond(req, 403, "Forbidden", &[], now, out);
        };
        if let Some(c) = contact_uri(req.msg) {
            active.contact = c;
        }
        active.expires_at = now + Duration::from_secs(u64::from(expires));
        let contact = active.contact.clone();
        self.registered_ok(req, key, &contact, expires, now, out);
    }

    /// `Expires: 0`: 200 OK through the SAs, then every set of the UE removed.
    fn deregister(&mut self, req: &Req<'_, '_>, key: &str, now: Instant, out: &mut Vec<Action>) {
        let mut extra = Vec::new();
        if let Some(c) = contact_uri(req.msg) {
            extra.push(("Contact", format!("<{c}>;expires=0")));
        }
        extra.push(("Expires", "0".to_string()));
        self.respond(req, 200, "OK", &extra, now, out);
        self.on_registration_ending(key, crate::proxy::RegEnd::Deregistered, now, out);
        self.drop_registration(key, out);
    }

    /// Removes all sets of a registration (after whatever is already in `out`).
    pub(crate) fn drop_registration(&mut self, key: &str, out: &mut Vec<Action>) {
        if let Some(reg) = self.forget(key) {
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
        self.rearm(key);
    }

    /// Runs the timers due at `now`: expired challenges, old sets and registrations, the end
    /// of 2xx relaying for accepted INVITEs, and Timer C of forwarded INVITEs.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (_, key) in self.due_timers(now) {
            let key = match key {
                TimerKey::Accepted(branch) => {
                    self.accepted.remove(&branch);
                    continue;
                }
                TimerKey::KeepAlive(key) => {
                    self.on_keepalive_timer(&key, now, out);
                    continue;
                }
                TimerKey::TimerC(client) => {
                    self.on_timer_c(client, now, out);
                    continue;
                }
                TimerKey::Registration(key) => key,
            };
            let Some(reg) = self.regs.get_mut(&key) else {
                continue;
            };
            reg.armed = None;
            if reg.active.as_ref().is_some_and(|a| a.expires_at <= now) {
                self.on_registration_ending(&key, crate::proxy::RegEnd::Expired, now, out);
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
            self.rearm(&key);
        }
    }
}
