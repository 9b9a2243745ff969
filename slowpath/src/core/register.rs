//! The REGISTER procedure (TS 24.229 5.2.2, 5.4.1; TS 33.203 6-7): initial challenge (401 +
//! Security-Server + SA install), protected REGISTER (Security-Verify, AKAv1-MD5), AUTS
//! resync, re-registration (authenticated with a new SA set, or a plain refresh over the
//! existing one), de-registration, expiry. The [`Registrar`](crate::registrar::Registrar)
//! holds the state; this is the SIP around it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use akagate_proto::ipc::{SaSet, Transport, WorkerCommand};

use crate::aka::digest_params::CredentialsRef;
use crate::aka::{
    decode_auts, AkaNonce, AuthVector, Autn, ChallengeRef, Ck, DigestParseError, Ik, Res,
    ALGORITHM_AKAV1_MD5,
};
use crate::context::{CoreStats, RateVerdict};
use crate::core::emergency::is_emergency_registration;
use crate::core::saset::{new_sa_set, NoSet};
use crate::core::{Core, Req, TimerKey};
use crate::hss::PersistTicket;
use crate::registrar::{
    choose_security_client, contact_uri, contact_uri_str, impi_of, mechanism_views, realm_of,
    requested_expires, verify_matches, AuthVectorSource, Displaced, Expiry, Identities,
    IssuedVector, Pending, SetKind,
};
use crate::secagree::{
    render_security_header, tls_security_server, ChosenMechanism, Mechanism, SecMechanism,
    IPSEC_3GPP, TLS_MECHANISM,
};
use crate::sip::builder::{response_tagged, HeaderLines, StaticName};
use crate::sip::HeaderKind;

/// The `WWW-Authenticate` value of an IMS-AKA challenge for `impi` (RFC 3310 3.1), checked
/// ([`ChallengeRef::check`]): render it, or write its pieces into the 401.
pub(crate) fn aka_challenge<'a>(
    impi: &'a str,
    nonce: &'a str,
) -> Result<ChallengeRef<'a>, DigestParseError> {
    let challenge = ChallengeRef {
        realm: realm_of(impi),
        nonce,
        algorithm: Some(ALGORITHM_AKAV1_MD5),
        qop: Some("auth"),
        opaque: None,
        stale: false,
    };
    challenge.check()?;
    Ok(challenge)
}

/// The sec-agree option tag (RFC 3329 2.2).
const SEC_AGREE: &str = "sec-agree";

// The headers the 401 and the 200 add, their names checked here once.
const WWW_AUTHENTICATE: StaticName<16> = StaticName::new(b"WWW-Authenticate");
const SECURITY_SERVER: StaticName<15> = StaticName::new(b"Security-Server");
const CONTACT: StaticName<7> = StaticName::new(b"Contact");
const EXPIRES: StaticName<7> = StaticName::new(b"Expires");
const PATH: StaticName<4> = StaticName::new(b"Path");
const SERVICE_ROUTE: StaticName<13> = StaticName::new(b"Service-Route");
const P_ASSOCIATED_URI: StaticName<16> = StaticName::new(b"P-Associated-URI");

/// The 200's `Path` and `Service-Route` for a P-CSCF named `host` ([`Core`] keeps them):
/// the UE's terminating requests come back through us (`term`), its originating ones leave
/// through us (`orig`).
pub(crate) fn registered_routes(host: &str) -> HeaderLines {
    HeaderLines::new(|b| {
        b.push_named_parts(&PATH, &["<sip:term@", host, ";lr>"]);
        b.push_named_parts(&SERVICE_ROUTE, &["<sip:orig@", host, ";lr>"]);
    })
}

/// Whether the protected REGISTER `msg` with credentials `c` answers challenge `p`: its
/// Security-Verify echoes the Security-Server sent (RFC 3329 2.3.1, TS 33.203 7.2), its
/// algorithm is AKAv1-MD5 where named, and its digest response is the one XRES gives
/// (RFC 3310 3.2); `ha2` keeps the REGISTER's H(A2) for its digest-uri.
fn answer_verifies(
    msg: &crate::sip::Message<'_>,
    p: &Pending,
    c: &CredentialsRef<'_>,
    ha2: &mut crate::aka::Ha2Cache,
) -> bool {
    p.security_server
        .as_ref()
        .is_none_or(|s| verify_matches(msg, s))
        && c.algorithm
            .as_deref()
            .is_none_or(|a| a.eq_ignore_ascii_case(ALGORITHM_AKAV1_MD5))
        && c.verify_with_ha2("REGISTER", p.vector.xres.as_bytes(), &ha2.register(&c.uri))
}

impl Core {
    /// Our supported mechanisms, for 421/494 answers (RFC 3329 2.3.1).
    fn supported_mechanisms(&self) -> String {
        let p = &self.shared.cfg.profile;
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
        out: &mut Vec<WorkerCommand>,
    ) {
        let extra = [
            ("Require", SEC_AGREE.to_string()),
            ("Security-Server", self.supported_mechanisms()),
        ];
        self.shared.respond(req, code, reason, &extra, now, out);
    }

    /// An unprotected REGISTER without Security-Client where sec-agree is required: answers
    /// it (RFC 3329 2.3.1, TS 24.229 5.2.2.1: no sec-agree at all -> 421; sec-agree but no
    /// Security-Client -> 494; both carry Require: sec-agree and Security-Server) and returns
    /// true. With `sec-agree-required = false` such a UE is challenged and registered without
    /// SAs, bound to the flow it registers on (see `challenge`).
    pub(crate) fn missing_sec_agree(
        &mut self,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> bool {
        let msg = req.msg;
        if msg.header(HeaderKind::SecurityClient).is_some()
            || !self.shared.cfg.profile.sec_agree_required
        {
            return false;
        }
        let tagged = [
            HeaderKind::Require,
            HeaderKind::ProxyRequire,
            HeaderKind::Supported,
        ]
        .into_iter()
        .any(|h| msg.has_option_tag(h, SEC_AGREE));
        if tagged {
            self.require_sec_agree(req, 494, "Security Agreement Required", now, out);
        } else {
            self.require_sec_agree(req, 421, "Extension Required", now, out);
        }
        true
    }

    /// The offer of the request's Security-Client the profile prefers: `Some(None)` without
    /// a Security-Client (flow-bound), `None` once the request was answered (400 for a
    /// malformed header, 494 when nothing fits).
    pub(crate) fn choose_offer(
        &mut self,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> Option<Option<ChosenMechanism>> {
        if req.msg.header(HeaderKind::SecurityClient).is_none() || self.agrees_tls(req) {
            return Some(None);
        }
        let Ok(chosen) = choose_security_client(req.msg, &self.shared.cfg.profile) else {
            self.shared
                .respond(req, 400, "Bad Security-Client", &[], now, out);
            return None;
        };
        match chosen {
            Some(c) => Some(Some(c)),
            None => {
                self.require_sec_agree(req, 494, "Security Agreement Required", now, out);
                None
            }
        }
    }

    /// Whether the REGISTER came over the TLS port offering mechanism `tls` (RFC 3329 2.2;
    /// TS 33.203 for TLS-based access): the connection's TLS is then the agreed protection,
    /// no SAs are made, and the registration is flow-bound to that connection like one
    /// without sec-agree, but the 401 carries `Security-Server: tls;q=0.1` and the REGISTERs
    /// after it must echo it in `Security-Verify` (RFC 3329 2.3.1).
    pub(crate) fn agrees_tls(&self, req: &Req<'_, '_>) -> bool {
        self.shared.cfg.tls_port == Some(req.flow.local_port)
            && req.flow.proto == Transport::Tcp
            && mechanism_views(req.msg, HeaderKind::SecurityClient).is_ok_and(|m| {
                m.iter()
                    .any(|m| m.name().eq_ignore_ascii_case(TLS_MECHANISM))
            })
    }

    /// Removes sets the registrar let go of, in order.
    fn remove_sets(&mut self, sets: impl IntoIterator<Item = SaSet>, out: &mut Vec<WorkerCommand>) {
        for set in sets {
            self.shared.remove_set(&set, out);
        }
    }

    /// Puts registration `key`'s next deadline into the timer set (or takes it out).
    pub(crate) fn rearm(&mut self, key: &str) {
        crate::core::rearm(&mut self.shared, &mut self.registrar, key);
    }

    /// `503 Service Unavailable` with `Retry-After` (RFC 3261 21.5.4, 20.33): unauthenticated
    /// work shed under the limits; the UE tries again later.
    pub(crate) fn shed(&mut self, req: &Req<'_, '_>, now: Instant, out: &mut Vec<WorkerCommand>) {
        let extra = [("Retry-After", self.shared.cfg.retry_after.to_string())];
        self.shared
            .respond(req, 503, "Service Unavailable", &extra, now, out);
    }

    /// Counts an unauthenticated REGISTER (outside every SA) against the per-address and
    /// total rates; over either it is answered 503 and false is returned. Registered UEs'
    /// requests come through their SAs and never pass here.
    pub(crate) fn admit_unauthenticated(
        &mut self,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> bool {
        let cfg = &self.shared.cfg;
        let (per_source, total) = (cfg.register_rate_per_source, cfg.register_rate_total);
        let count: fn(&mut CoreStats) =
            match self
                .shared
                .admission
                .admit(req.flow.ue, now, per_source, total)
            {
                RateVerdict::Admit => return true,
                RateVerdict::SourceOver => |s| s.register_rate_limited_source += 1,
                RateVerdict::TotalOver => |s| s.register_rate_limited_all += 1,
            };
        self.shed_counted(count, req, now, out)
    }

    /// Counts a shed request (`count`), answers it 503 ([`Core::shed`]) and returns false.
    fn shed_counted(
        &mut self,
        count: fn(&mut CoreStats),
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> bool {
        count(&mut self.shared.stats);
        self.shed(req, now, out);
        false
    }

    /// Whether one more challenge may go to the request's source: always if `exempt` (one
    /// for this IMPI is outstanding there already and is replaced, or the request came
    /// through the registered SAs); else the source's and the total count of outstanding
    /// challenges, real and decoy alike, must be below their bounds. Over a bound the
    /// REGISTER is answered 503 and false is returned.
    pub(crate) fn room_for_challenge(
        &mut self,
        req: &Req<'_, '_>,
        exempt: bool,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> bool {
        if exempt {
            return true;
        }
        let source = req.flow.ue;
        self.shared.decoys.prune(now);
        let (registrar, decoys) = (&self.registrar, &self.shared.decoys);
        let from = registrar.pending_from(source) + decoys.from(source);
        let total = registrar.pending_total() + decoys.len();
        let cfg = &self.shared.cfg;
        let count: fn(&mut CoreStats) = if from >= cfg.max_pending_per_source {
            |s| s.challenges_shed_source += 1
        } else if total >= cfg.max_pending_total {
            |s| s.challenges_shed_all += 1
        } else {
            return true;
        };
        self.shed_counted(count, req, now, out)
    }

    /// A REGISTER's digest credentials (if any) and IMPI (Authorization `username`, else from
    /// To); `None` once the REGISTER was answered 400 for lacking them.
    pub(crate) fn register_identity<'a>(
        &mut self,
        req: &Req<'_, 'a>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> Option<(Option<CredentialsRef<'a>>, std::borrow::Cow<'a, str>)> {
        let creds = match req
            .msg
            .header(HeaderKind::Authorization)
            .map(CredentialsRef::parse)
        {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => {
                self.shared
                    .respond(req, 400, "Bad Authorization", &[], now, out);
                return None;
            }
        };
        let Some(impi) = impi_of(req.msg, creds.as_ref()) else {
            self.shared.respond(req, 400, "Missing To", &[], now, out);
            return None;
        };
        Some((creds, impi))
    }

    /// A REGISTER in its server transaction.
    pub(crate) fn on_register(
        &mut self,
        req: &Req<'_, '_>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        if req.via_spi.is_none() && !self.admit_unauthenticated(req, now, out) {
            return;
        }
        let msg = req.msg;
        let Some((creds, impi)) = self.register_identity(req, now, out) else {
            return;
        };
        // RFC 3261 10.3 step 7 (and 20.23): a lifetime shorter than we accept, other than a
        // de-registration, is refused before any challenge or SA set is spent on it.
        // The lifetime asked, read once (the Contact's `expires` is a walk over its
        // parameters) and handed to everything below that grants or checks it.
        let asked = requested_expires(msg);
        let min = self.shared.cfg.min_expires;
        if let Some(asked) = asked.filter(|&e| e != 0 && e < min) {
            tracing::debug!("REGISTER for {impi} asks {asked} s, below min-expires {min}");
            let extra = [("Min-Expires", min.to_string())];
            return self
                .shared
                .respond(req, 423, "Interval Too Brief", &extra, now, out);
        }
        let Some(ids) = self.hss.identities(&impi) else {
            // TS 24.229 5.2.10 / TS 23.167: an emergency registration of a subscriber we do
            // not know, where the operator allows it: registered without authentication,
            // bound to its flow, for emergency requests only.
            if self.shared.cfg.emergency_without_auth
                && req.via_spi.is_none()
                && is_emergency_registration(msg)
            {
                return self.register_emergency_unauthenticated(req, &impi, asked, now, out);
            }
            // The answers a real IMPI would get, and nothing spent (see `decoy`).
            if req.via_spi.is_some() {
                return self.shared.respond(req, 403, "Forbidden", &[], now, out);
            }
            if self.missing_sec_agree(req, now, out) {
                return;
            }
            return self.register_unknown(req, &impi, creds.as_ref(), now, out);
        };
        // The registrar's key: the IMPI lower-cased, borrowed when it already is.
        let key = if crate::hss::has_ascii_uppercase(&ids.impi) {
            std::borrow::Cow::Owned(ids.impi.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(&*ids.impi)
        };
        self.register_for(req, &key, &ids, creds.as_ref(), asked, now, out);
        self.rearm(&key);
    }

    /// A REGISTER of a provisioned subscriber (`key`, `ids`) with its credentials, if any,
    /// and the lifetime it asks (`asked`, [`requested_expires`]).
    #[allow(clippy::too_many_arguments)]
    fn register_for(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        ids: &Identities,
        creds: Option<&CredentialsRef<'_>>,
        asked: Option<u32>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        // Which SA set did it come through? Decided by the SA, never by the port. A pending
        // set's challenge is what the set's kind is read from (a set is pending exactly when
        // a challenge has it), kept for the answer below rather than looked up again.
        let (kind, through) = match req.via_spi {
            None => (None, None),
            Some(spi) => match self.registrar.key_of_spi(spi) {
                Some(k) if k == key => match self.registrar.pending_of_spi(key, spi) {
                    Some(p) => (Some(SetKind::Pending), Some(p)),
                    None => (self.registrar.kind_of(key, spi), None),
                },
                // Through another UE's SA, or an SA we no longer know: refuse.
                _ => return self.shared.respond(req, 403, "Forbidden", &[], now, out),
            },
        };

        // Which challenge does it answer? Through a pending set, that set's; outside every
        // SA, one sent to this address (the nonce is no secret: a stranger may know it).
        // An answer through the challenge's own set without AUTS is verified while its
        // challenge is at hand (see `complete`), not looked up again.
        let ha2 = &mut self.register_ha2;
        let answered = creds.and_then(|c| {
            let p = match kind {
                Some(SetKind::Pending) => through,
                _ => self.registrar.pending_answered(key, &c.nonce, req.flow.ue),
            };
            p.filter(|p| p.nonce == *c.nonce).map(|p| {
                let verified = (kind == Some(SetKind::Pending) && c.auts.is_none())
                    .then(|| answer_verifies(msg, p, c, ha2));
                (p.set.spi_ps, verified)
            })
        });
        let has_security_client = msg.header(HeaderKind::SecurityClient).is_some();

        if kind.is_none() && self.missing_sec_agree(req, now, out) {
            return;
        }

        if let (Some((spi, verified)), Some(creds)) = (answered, creds) {
            if let Some(auts) = &creds.auts {
                return self.resync(req, key, ids, spi, auts, now, out);
            }
            if kind != Some(SetKind::Pending) {
                // TS 33.203 6.1: the answer must come over the new SAs; an empty response
                // outside them is the UE reporting a MAC failure (RFC 3310 3.3).
                return self.fail_pending(req, key, spi, now, out);
            }
            return self.complete(req, key, spi, verified == Some(true), asked, now, out);
        }

        match kind {
            Some(SetKind::Active) | Some(SetKind::Old) => {
                let sent = match kind {
                    Some(SetKind::Active) => self.registrar.active_security_server(key),
                    _ => None,
                };
                // The old set has no Security-Server kept; refreshes must use the active set.
                let Some(sent) = sent else {
                    return self.shared.respond(req, 403, "Forbidden", &[], now, out);
                };
                // A flow-bound registration agreed no mechanism (or `tls`, verified as any).
                let tls_bound = sent.is_some_and(|s| s.name == TLS_MECHANISM);
                if sent.is_some_and(|s| !verify_matches(msg, s)) {
                    return self.shared.respond(
                        req,
                        403,
                        "Security-Verify mismatch",
                        &[],
                        now,
                        out,
                    );
                }
                if let Some(spi) = req.via_spi {
                    self.cx().note_traffic(key, spi, out);
                }
                if asked == Some(0) {
                    return self.deregister(req, key, now, out);
                }
                // A TLS-bound registration has no keys to renew: its Security-Client is the
                // `tls` it agreed on again.
                if has_security_client && !tls_bound {
                    // TS 24.229 5.4.1.2.2 1): the registrar may authenticate any REGISTER;
                    // we do whenever the UE offers a Security-Client, so the refresh also
                    // renews the keys and SAs (TS 33.203 7.4).
                    self.challenge(req, key, ids, false, now, out);
                } else {
                    // Without Security-Client there is nothing to build new SAs from
                    // (TS 33.203 7.1 needs the UE's SPIs and ports), so this REGISTER over the
                    // registered set is not re-authenticated (TS 24.229 5.4.1.2.2 1) leaves
                    // that to the registrar): the binding is refreshed and the SAs stay
                    // (TS 24.228 flow 6.x: the SAs are only replaced after a new 401).
                    self.refresh(req, key, asked, now, out);
                }
            }
            Some(SetKind::Pending) => match req.via_spi {
                Some(spi) => self.fail_pending(req, key, spi, now, out),
                None => self.shared.respond(req, 403, "Forbidden", &[], now, out),
            },
            None => self.challenge(req, key, ids, false, now, out),
        }
    }

    /// Sends a challenge with a new SA set. An earlier challenge of this IMPI to the same
    /// address is removed after the 401 left; challenges to other addresses stay (up to
    /// `max_pending_per_impi`, the oldest going first), so a stranger naming the IMPI cannot
    /// cancel the UE's own challenge.
    ///
    /// The vector: an unauthenticated REGISTER reuses the newest unanswered challenge's
    /// vector of the IMPI while it is fresh (within the challenge timeout of its making).
    /// RAND and AUTN are public and only the USIM holding K can answer, so a second 401 with
    /// the same vector gives nothing away, and floods of REGISTERs naming an IMPI spend no
    /// SQN. A fresh vector is drawn after an AUTS (`fresh`), for a re-registration through
    /// the registered SAs (the UE has shown it can answer), and when none is reusable.
    ///
    /// Without a Security-Client (only reached when the profile's `sec-agree-required` is
    /// false) the set is *flow-bound*: no SAs are installed, the 401 carries no
    /// Security-Server, and the set stands for the flow the REGISTER came on (for TCP the
    /// connection's 4-tuple, for UDP the UE's address and port): the answer and every later
    /// request of the UE are accepted from that flow only, and requests to the UE go there.
    fn challenge(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        ids: &Identities,
        fresh: bool,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(chosen) = self.choose_offer(req, now, out) else {
            return;
        };
        // Whether `key` may have a registration: through an SA it has (the SA led to it);
        // outside every SA, looked up once here. Where it has none (a first REGISTER), its
        // challenges, newest challenge and kept IMPI need not be looked up one by one: each
        // look-up would miss. Nothing below adds or removes a registration before the last
        // of them.
        let known = req.via_spi.is_some() || self.registrar.impi(key).is_some();
        // Through the registered SAs the UE has shown it can answer: never shed (its
        // challenge still counts towards the totals).
        let exempt =
            req.via_spi.is_some() || (known && self.registrar.has_pending_for(key, req.flow.ue));
        if !self.room_for_challenge(req, exempt, now, out) {
            return;
        }
        let Some((vector, issued, ticket)) = self.vector_for(req, key, ids, known, fresh, now, out)
        else {
            return;
        };
        let (set, server) = match new_sa_set(
            &mut self.shared,
            req.flow,
            chosen.as_ref(),
            &vector.ck,
            &vector.ik,
        ) {
            Ok(s) => s,
            // No SPI left: shed like other unauthenticated work (503 + Retry-After).
            Err(NoSet { code: 503, .. }) => return self.shed(req, now, out),
            Err(NoSet { code, reason }) => {
                return self.shared.respond(req, code, reason, &[], now, out)
            }
        };
        let security_server = server.or_else(|| self.agrees_tls(req).then(tls_security_server));
        let nonce = AkaNonce {
            rand: vector.rand,
            autn: vector.autn,
            server_data: Vec::new(),
        }
        .text();
        let impi = known
            .then(|| self.registrar.impi(key))
            .flatten()
            .unwrap_or(&ids.impi);
        // Read once (an inline nonce's text is checked on each read).
        let Ok(www) = aka_challenge(impi, nonce.as_str()) else {
            self.shared.release_spis(&set);
            return self
                .shared
                .respond(req, 500, "Server Internal Error", &[], now, out);
        };
        if chosen.is_some() {
            // TS 33.203 7.1: the SAs exist before the UE can use them, i.e. before the 401
            // leaves.
            out.push(WorkerCommand::InstallSaSet(Box::new(set.clone())));
        }
        // With SQN state, the 401 waits until the vector's SQN is durable (TS 33.102 6.3.2);
        // a reused vector's may be already.
        let durable_after = ticket.filter(|&t| !self.shared.held.is_durable(t));
        if let Some(t) = durable_after {
            self.shared.held.wait_for(req.tx, t);
        }
        // The challenge and the Security-Server written straight into the 401.
        self.shared
            .respond_with(req, 401, "Unauthorized", now, out, |b| {
                b.push_named_with(&WWW_AUTHENTICATE, |w| {
                    www.render_pieces(|p| {
                        w.str(p);
                    })
                });
                if let Some(server) = &security_server {
                    b.push_named_with(&SECURITY_SERVER, |w| {
                        server.render_pieces(|p| {
                            w.str(p);
                        })
                    });
                }
            });
        let pending = Pending {
            set,
            security_server,
            nonce,
            vector,
            issued,
            ticket,
            deadline: now + self.shared.cfg.challenge_timeout,
            bound_flow: chosen.is_none().then_some(req.flow),
        };
        let max = self.shared.cfg.max_pending_per_impi;
        let Displaced { replaced, evicted } =
            self.registrar.challenged_with(key, ids, pending, max);
        self.shared.stats.challenges_evicted += evicted.len() as u64;
        let mut after = Vec::new();
        self.remove_sets(replaced.into_iter().chain(evicted), &mut after);
        self.after_challenge(durable_after, after, out);
    }

    /// The vector for a challenge of `key`, when it was made and the SQN record its 401
    /// waits for: the newest unanswered one of an unauthenticated REGISTER while fresh (see
    /// `challenge`) and not withheld by a failed write, else a new one from the source
    /// (`None`: answered 500). `known`: false when `key` has no registration (nothing to
    /// look up).
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn vector_for(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        ids: &Identities,
        known: bool,
        fresh: bool,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> Option<(Arc<AuthVector>, Instant, Option<PersistTicket>)> {
        let timeout = self.shared.cfg.challenge_timeout;
        let reusable = (known && !fresh && req.via_spi.is_none())
            .then(|| self.registrar.newest_pending(key))
            .flatten()
            .filter(|p| now < p.issued + timeout)
            .filter(|p| !p.ticket.is_some_and(|t| self.shared.held.is_withheld(t)));
        if let Some(p) = reusable {
            self.shared.stats.vectors_reused += 1;
            return Some((p.vector.clone(), p.issued, p.ticket));
        }
        let impi = known
            .then(|| self.registrar.impi(key))
            .flatten()
            .unwrap_or(&ids.impi);
        // With SQN state, the vector's SQN is queued for persistence and the 401 waits for
        // it (TS 33.102 6.3.2).
        let source: &mut dyn AuthVectorSource = &mut self.hss;
        match source.vector(impi, &mut *self.shared.rng) {
            Ok(IssuedVector { av, durable_after }) => Some((Arc::new(av), now, durable_after)),
            Err(e) => {
                tracing::warn!("no authentication vector for {impi}: {e}");
                self.shared
                    .respond(req, 500, "Server Internal Error", &[], now, out);
                None
            }
        }
    }

    /// AUTS: re-synchronise the HSS and challenge again with a fresh vector (RFC 3310 3.4,
    /// TS 33.102 6.3.5). `spi`: a set of the challenge it answers.
    #[allow(clippy::too_many_arguments)]
    fn resync(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        ids: &Identities,
        spi: u32,
        auts: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let (Some(impi), Some(p)) = (
            self.registrar.impi(key),
            self.registrar.pending_of_spi(key, spi),
        ) else {
            return;
        };
        let (impi, rand) = (impi.to_string(), p.vector.rand);
        let source: &mut dyn AuthVectorSource = &mut self.hss;
        let ok = decode_auts(auts)
            .ok()
            .is_some_and(|a| source.resync(&impi, &rand, a.as_bytes()).is_ok());
        if !ok {
            return self.fail_pending(req, key, spi, now, out);
        }
        self.challenge(req, key, ids, true, now, out);
    }

    /// 403 and removal of the attempt's SAs (after the 403 left); `spi`: a set of the failed
    /// challenge.
    fn fail_pending(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        spi: u32,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        self.shared.respond(req, 403, "Forbidden", &[], now, out);
        let failed = self.registrar.fail_pending(key, spi);
        self.remove_sets(failed, out);
    }

    /// The lifetime granted for a REGISTER asking `asked` ([`requested_expires`]; RFC 3261
    /// 10.3 step 7, capped by configuration).
    fn granted_expires(&self, asked: Option<u32>) -> u32 {
        asked
            .unwrap_or(self.shared.cfg.default_expires)
            .min(self.shared.cfg.max_expires)
    }

    /// An emergency registration without authentication (`emergency-without-auth`): a
    /// flow-bound registration (no SAs, the UE's requests accepted from this flow only) that
    /// may only open emergency sessions (`Core::emergency_only`), answered 200 at once.
    /// `asked`: the lifetime the REGISTER asks ([`requested_expires`]).
    fn register_emergency_unauthenticated(
        &mut self,
        req: &Req<'_, '_>,
        impi: &str,
        asked: Option<u32>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let key = impi.to_ascii_lowercase();
        let no_key = (Ck::new([0; 16]), Ik::new([0; 16]));
        let (set, _) = match new_sa_set(&mut self.shared, req.flow, None, &no_key.0, &no_key.1) {
            Ok(s) => s,
            Err(NoSet { code, reason }) => {
                return self.shared.respond(req, code, reason, &[], now, out)
            }
        };
        let mut unguessable = [0u8; 16];
        self.shared.rng.fill_bytes(&mut unguessable);
        let Ok(xres) = Res::new(&unguessable) else {
            return;
        };
        let vector = AuthVector {
            rand: [0; 16],
            xres,
            ck: no_key.0,
            ik: no_key.1,
            autn: Autn::from_bytes([0; 16]),
        };
        let spi = set.spi_ps;
        let pending = Pending {
            set,
            security_server: None,
            nonce: Default::default(),
            vector: Arc::new(vector),
            issued: now,
            ticket: None,
            deadline: now + self.shared.cfg.challenge_timeout,
            bound_flow: Some(req.flow),
        };
        let impus: Vec<String> = req
            .msg
            .to_header()
            .ok()
            .map(|t| t.uri.raw.to_string())
            .into_iter()
            .collect();
        let max = self.shared.cfg.max_pending_per_impi;
        let displaced = self.registrar.challenged(&key, impi, &impus, pending, max);
        for old in displaced.replaced.iter().chain(&displaced.evicted) {
            self.shared.remove_set(old, out);
        }
        let expires = self.granted_expires(asked);
        let contact = contact_uri(req.msg).unwrap_or_default();
        let expires_at = now + Duration::from_secs(u64::from(expires));
        let superseded = self
            .registrar
            .complete(&key, spi, contact.clone(), req.flow.proto, expires_at)
            .unwrap_or_default();
        self.emergency_only.insert(key.clone());
        self.shared.stats.emergency_registrations_unauthenticated += 1;
        self.registered_ok(req, &key, &contact, expires, now, out);
        self.remove_sets(superseded, out);
        self.rearm(&key);
    }

    /// The 200 OK to a successful (re-)registration (TS 24.229 5.4.1.2.2 step 2).
    fn registered_ok(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        contact: &str,
        expires: u32,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let impus = self.registrar.impus(key).unwrap_or_default();
        // `respond_with` written out here: the tag is drawn from the shared state while the
        // headers borrow the core's rendered routes.
        let tag = self.shared.tag();
        match response_tagged(req.msg, 200, "OK", tag.as_bytes()) {
            Ok(mut b) => {
                b.push_named_with(&CONTACT, |v| {
                    v.str("<").str(contact).str(">;expires=").decimal(expires);
                });
                b.push_named_with(&EXPIRES, |v| {
                    v.decimal(expires);
                });
                b.push_lines(&self.registered_routes);
                b.push_named_with(&P_ASSOCIATED_URI, |v| {
                    for (i, u) in impus.iter().enumerate() {
                        v.str(if i == 0 { "<" } else { ", <" }).str(u).str(">");
                    }
                });
                self.shared.send_response(req.tx, b.build(), now, out);
            }
            Err(e) => tracing::debug!("cannot answer 200: {e}"),
        }
        self.on_registered(key, now, out);
    }

    /// The protected REGISTER over the pending set with inbound SPI `spi`: where it
    /// answered the challenge (`verified`: Security-Verify and the digest checked by
    /// [`answer_verifies`]), bind and answer 200 (TS 24.229 5.2.2.1, 5.4.1.2); else 403.
    /// `asked`: the lifetime the REGISTER asks ([`requested_expires`]).
    #[allow(clippy::too_many_arguments)]
    fn complete(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        spi: u32,
        verified: bool,
        asked: Option<u32>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let msg = req.msg;
        if !verified {
            return self.fail_pending(req, key, spi, now, out);
        }
        let expires = self.granted_expires(asked);
        let contact = contact_uri_str(msg).unwrap_or_default();
        let expires_at = now + Duration::from_secs(u64::from(expires));
        let Some(superseded) =
            self.registrar
                .complete(key, spi, contact.to_string(), req.flow.proto, expires_at)
        else {
            return;
        };
        if expires == 0 {
            self.deregister(req, key, now, out);
        } else {
            self.registered_ok(req, key, contact, expires, now, out);
        }
        self.remove_sets(superseded, out);
    }

    /// A re-REGISTER over the registered set without a new Security-Client: new lifetime
    /// (and contact), same SAs. `asked`: the lifetime it asks ([`requested_expires`]).
    fn refresh(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        asked: Option<u32>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let expires = self.granted_expires(asked);
        let expires_at = now + Duration::from_secs(u64::from(expires));
        let Some(contact) = self
            .registrar
            .refresh(key, contact_uri(req.msg), expires_at)
        else {
            return self.shared.respond(req, 403, "Forbidden", &[], now, out);
        };
        self.registered_ok(req, key, &contact, expires, now, out);
    }

    /// `Expires: 0`: 200 OK through the SAs, then every set of the UE removed.
    fn deregister(
        &mut self,
        req: &Req<'_, '_>,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let mut extra = Vec::new();
        if let Some(c) = contact_uri(req.msg) {
            extra.push(("Contact", format!("<{c}>;expires=0")));
        }
        extra.push(("Expires", "0".to_string()));
        self.shared.respond(req, 200, "OK", &extra, now, out);
        self.on_registration_ending(key, crate::proxy::RegEnd::Deregistered, now, out);
        self.drop_registration(key, out);
    }

    /// Removes all sets of a registration (after whatever is already in `out`).
    pub(crate) fn drop_registration(&mut self, key: &str, out: &mut Vec<WorkerCommand>) {
        let sets = self.registrar.remove(key);
        self.remove_sets(sets, out);
        self.rearm(key);
        for party in self.proxy.forget_dialogs_of(key) {
            self.registrar.unwatch_remote(&party);
        }
        self.relay.forget(key);
        self.reg_subs.forget(key);
        self.emergency_only.remove(key);
    }

    /// Runs the timers due at `now`: expired challenges, old sets and registrations, the end
    /// of 2xx relaying for accepted INVITEs, and Timer C of forwarded INVITEs.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<WorkerCommand>) {
        for (_, key) in self.shared.due_timers(now) {
            let key = match key {
                TimerKey::Accepted(branch) => {
                    self.proxy.end_accepted(&branch);
                    continue;
                }
                TimerKey::KeepAlive(key) => {
                    let (proxy, mut cx) = self.proxy_cx();
                    proxy.on_keepalive_timer(&mut cx, &key, now, out);
                    continue;
                }
                TimerKey::TimerC(client) => {
                    let (proxy, mut cx) = self.proxy_cx();
                    proxy.on_timer_c(&mut cx, client, now, out);
                    continue;
                }
                TimerKey::HopTimeout(id) => {
                    self.on_hop_timeout(id, now, out);
                    continue;
                }
                TimerKey::RegSubRefresh(call_id) => {
                    self.refresh_reg_sub(&call_id, now, out);
                    continue;
                }
                TimerKey::Registration(key) => key,
            };
            match self.registrar.expire(&key, now) {
                None => continue,
                Some(Expiry::Ended) => {
                    self.on_registration_ending(&key, crate::proxy::RegEnd::Expired, now, out);
                    self.drop_registration(&key, out);
                }
                Some(Expiry::Lapsed(sets)) => {
                    self.remove_sets(sets, out);
                    self.rearm(&key);
                }
            }
        }
    }
}
