//! The UE's registration (TS 24.229 5.1.1, TS 33.203 6.1/7): unprotected REGISTER to the
//! P-CSCF's SIP port, 401 with the AKA nonce and Security-Server, AUTN check (AUTS on SQN
//! failure), SAs, protected REGISTER from port_uc to port_ps with Security-Verify, 200.
//! Re-registration (TS 24.229 5.1.1.4, TS 33.203 7.4) runs the same exchange over the SAs in
//! use with a new Security-Client; its 200 OK over the new SAs retires the old ones.
//! De-registration's 200 OK retires every set.

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::{Flow, Transport};
use akagate_slowpath::aka::{
    aka_response, derive_suite, digest_response, encode_auts, AkaFailure, AkaNonce,
    DigestChallenge, DigestCredentials, DigestInput, QopAuth, Res, SqnReject, ALGORITHM_AKAV1_MD5,
    AUTS_PASSWORD,
};
use akagate_slowpath::secagree::parse_security_header;
use akagate_slowpath::sip::Message;
use smoltcp::time::Instant;

use super::esp::{SaParams, UeSaSet};
use super::sip::{self, ClientSecParams, RequestParts};
use super::{token, Failure, TxKind, Ue, UeError, UeEvent};

/// The digest state after a challenge: what the next Authorization needs.
pub(crate) struct AuthState {
    realm: String,
    nonce: String,
    nc: u32,
    /// RES of the challenge; `None` after a synchronisation failure.
    res: Option<Res>,
}

/// Where the registration stands.
pub(crate) enum RegState {
    /// Nothing sent yet, or de-registered.
    Idle,
    /// A REGISTER is out; `protected` tells over which flow.
    Sent {
        /// Sent through the SAs (port_uc -> port_ps).
        protected: bool,
        /// This transaction's start.
        sent_at: Instant,
        /// The registration's start (first REGISTER).
        started: Instant,
        /// Synchronisation failures answered so far.
        resyncs: u8,
    },
    /// 200 OK received.
    Registered,
    /// De-REGISTER out.
    Deregistering {
        /// Sent at.
        sent_at: Instant,
    },
    /// Gave up.
    Failed,
}

/// Registration bookkeeping beyond the state: dialog identifiers and the agreed security.
pub(crate) struct RegData {
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
    pub security_server: Option<String>,
    pub auth: Option<AuthState>,
    pub service_routes: Vec<String>,
    /// The registration flow over the SAs (UE view).
    pub protected_flow: Option<Flow>,
    /// What the outstanding REGISTER offers in Security-Client (ports and SPIs).
    pub offered: ClientSecParams,
    /// A re-registration is running: its 401 builds `Ue::next_sas`, its 200 promotes them.
    pub renewing: bool,
    /// During a re-registration, after its 401: the new Security-Server and protected flow.
    pub next: Option<(String, Flow)>,
    /// When to re-register by ourselves ([`super::UeConfig::auto_reregister`]).
    pub rereg_at: Option<Instant>,
}

impl Ue {
    fn reg_data(&mut self) -> &mut RegData {
        let offered = self.cfg.sec;
        self.reg_data.get_or_insert_with(|| RegData {
            call_id: format!("{}@akabench", token(8)),
            from_tag: token(4),
            cseq: 0,
            security_server: None,
            auth: None,
            service_routes: Vec::new(),
            protected_flow: None,
            offered,
            renewing: false,
            next: None,
            rereg_at: None,
        })
    }

    /// True while a re-registration runs.
    fn renewing(&self) -> bool {
        self.reg_data.as_ref().is_some_and(|r| r.renewing)
    }

    /// Where an unsolicited REGISTER of the running registration goes, with its
    /// Security-Verify: over the SAs in use during a re-registration, else unprotected.
    fn request_flow(&mut self) -> (Flow, Option<String>) {
        let r = self.reg_data();
        match (r.renewing, r.protected_flow) {
            (true, Some(f)) => (f, r.security_server.clone()),
            _ => (self.unprotected_flow(), None),
        }
    }

    /// True after the 200 OK to the protected REGISTER (until de-registration).
    pub fn is_registered(&self) -> bool {
        matches!(self.reg, RegState::Registered)
    }

    /// The unprotected flow of the initial REGISTER (UE view).
    pub(crate) fn unprotected_flow(&self) -> Flow {
        self.flow(
            self.cfg.unprotected_port,
            self.cfg.pcscf_sip_port,
            self.cfg.transport,
        )
    }

    /// Starts an initial registration: unprotected REGISTER with Security-Client.
    pub fn register(&mut self, now: Instant) -> Result<(), UeError> {
        if matches!(
            self.reg,
            RegState::Sent { .. } | RegState::Deregistering { .. }
        ) {
            return Err(UeError::Busy);
        }
        self.retire_all();
        self.sas = None;
        self.next_sas = None;
        self.reg_data = None;
        self.reg_data();
        // TS 33.203 7.1: we accept the P-CSCF's requests at port_us (TCP and UDP) and take
        // responses at port_uc (UDP; TCP ones arrive on our own connection).
        self.stack.listen(self.cfg.sec.port_us, true, true);
        self.stack.listen(self.cfg.sec.port_uc, false, true);
        // TS 24.229 5.1.1.2.1: the initial REGISTER carries an Authorization with the IMPI and
        // empty nonce/response, so the network knows the private identity.
        let creds = DigestCredentials {
            username: self.id.impi.clone(),
            realm: self.id.domain.clone(),
            nonce: String::new(),
            uri: self.id.registrar_uri(),
            response: String::new(),
            algorithm: None,
            qop: None,
            nc: None,
            cnonce: None,
            opaque: None,
            auts: None,
            integrity_protected: None,
        };
        let authz = creds
            .render()
            .map_err(|_| UeError::Config("identity not renderable"))?;
        self.send_register(self.unprotected_flow(), None, &authz, self.cfg.expires)?;
        self.reg = RegState::Sent {
            protected: false,
            sent_at: now,
            started: now,
            resyncs: 0,
        };
        Ok(())
    }

    /// Re-registers before expiry (TS 24.229 5.1.1.4.1, TS 33.203 7.4): a REGISTER over the
    /// SAs in use (port_uc -> port_ps, Security-Verify as before) offering a new
    /// Security-Client with fresh SPIs and ports ([`ClientSecParams::renewed`]). The 401 sets
    /// up the new SAs, the protected REGISTER goes over a new connection from the new port_uc,
    /// and its 200 OK makes the new set current and retires the old one
    /// ([`UeEvent::Reregistered`]). On failure the old set stays in use.
    pub fn reregister(&mut self, now: Instant) -> Result<(), UeError> {
        if !self.is_registered() {
            return Err(UeError::NotRegistered);
        }
        let mut rng = rand::thread_rng();
        let new = self.cfg.sec.renewed(|| rand::RngCore::next_u32(&mut rng));
        let r = self.reg_data();
        let flow = r.protected_flow.ok_or(UeError::NotRegistered)?;
        let verify = r.security_server.clone();
        r.offered = new;
        r.renewing = true;
        r.next = None;
        r.rereg_at = None;
        let sent = self
            .next_authorization("REGISTER", None)
            .and_then(|a| self.send_register(flow, verify, &a, self.cfg.expires));
        if let Err(e) = sent {
            let sec = self.cfg.sec;
            let r = self.reg_data();
            r.offered = sec;
            r.renewing = false;
            return Err(e);
        }
        self.reg = RegState::Sent {
            protected: true,
            sent_at: now,
            started: now,
            resyncs: 0,
        };
        Ok(())
    }

    /// Sends a REGISTER on `flow` (unprotected to the SIP port, or through the SAs), offering
    /// the Security-Client of [`RegData::offered`] and its port_us as Contact.
    fn send_register(
        &mut self,
        flow: Flow,
        verify: Option<String>,
        authz: &str,
        expires: u32,
    ) -> Result<(), UeError> {
        let via_port = flow.local_port;
        let r = self.reg_data();
        r.cseq += 1;
        let (call_id, from_tag, cseq, sec) =
            (r.call_id.clone(), r.from_tag.clone(), r.cseq, r.offered);
        let branch = format!("z9hG4bK{}", token(8));
        let parts = RequestParts {
            proto: flow.proto,
            via_port,
            branch: &branch,
            call_id: &call_id,
            cseq,
            from_tag: &from_tag,
        };
        let msg = sip::register(
            &self.id,
            &parts,
            &sec,
            &self.cfg.offers,
            expires,
            verify.as_deref(),
            authz,
        );
        self.send(flow, &msg, true)
    }

    /// De-registers (REGISTER with Expires: 0 through the SAs, TS 24.229 5.1.1.6).
    pub fn deregister(&mut self, now: Instant) -> Result<(), UeError> {
        if !self.is_registered() {
            return Err(UeError::NotRegistered);
        }
        let r = self.reg_data();
        let flow = r.protected_flow.ok_or(UeError::NotRegistered)?;
        let verify = r.security_server.clone();
        let authz = self.next_authorization("REGISTER", None)?;
        self.send_register(flow, verify, &authz, 0)?;
        self.reg = RegState::Deregistering { sent_at: now };
        Ok(())
    }

    /// The Authorization for the next request under the current challenge (nc incremented),
    /// with RES as password, or an AUTS answer when `auts` is given.
    fn next_authorization(&mut self, method: &str, auts: Option<&str>) -> Result<String, UeError> {
        let uri = self.id.registrar_uri();
        let impi = self.id.impi.clone();
        let auth = self
            .reg_data()
            .auth
            .as_mut()
            .ok_or(UeError::NotRegistered)?;
        auth.nc += 1;
        let nc = format!("{:08x}", auth.nc);
        let cnonce = token(8);
        let input = DigestInput {
            username: &impi,
            realm: &auth.realm,
            method,
            uri: &uri,
            nonce: &auth.nonce,
            qop: Some(QopAuth {
                nc: &nc,
                cnonce: &cnonce,
            }),
        };
        // RFC 3310 3.4: with AUTS the password is empty.
        let response = match auts {
            Some(_) => digest_response(&input, AUTS_PASSWORD),
            None => aka_response(&input, auth.res.as_ref().ok_or(UeError::NotRegistered)?),
        };
        let creds = DigestCredentials {
            username: impi.clone(),
            realm: auth.realm.clone(),
            nonce: auth.nonce.clone(),
            uri,
            response: response.as_str().to_string(),
            algorithm: Some(ALGORITHM_AKAV1_MD5.into()),
            qop: Some("auth".into()),
            nc: Some(nc),
            cnonce: Some(cnonce),
            opaque: None,
            auts: auts.map(str::to_string),
            integrity_protected: None,
        };
        creds
            .render()
            .map_err(|_| UeError::Config("credentials not renderable"))
    }

    pub(crate) fn fail_registration(&mut self, f: Failure) {
        if !matches!(self.reg, RegState::Sent { .. }) {
            return;
        }
        if self.renewing() && self.sas.is_some() {
            // A failed re-registration leaves the registration and its SAs as they were;
            // the new set (if the 401 came) is dropped with the P-CSCF's pending one.
            if let Some(n) = self.next_sas.take() {
                self.delete_set(&n);
            }
            let sec = self.cfg.sec;
            let r = self.reg_data();
            r.renewing = false;
            r.next = None;
            r.offered = sec;
            self.reg = RegState::Registered;
        } else {
            self.reg = RegState::Failed;
        }
        self.events.push_back(UeEvent::RegistrationFailed(f));
    }

    pub(crate) fn reg_deadline(&self) -> Option<Instant> {
        match self.reg {
            RegState::Sent { sent_at, .. } | RegState::Deregistering { sent_at } => {
                Some(sent_at + self.cfg.transaction_timeout)
            }
            RegState::Registered => self.reg_data.as_ref().and_then(|r| r.rereg_at),
            _ => None,
        }
    }

    pub(crate) fn reg_timers(&mut self, now: Instant) {
        if matches!(self.reg, RegState::Registered) && self.reg_deadline().is_some_and(|d| d <= now)
        {
            if let Err(e) = self.reregister(now) {
                self.reg_data().rereg_at = None;
                self.events
                    .push_back(UeEvent::RegistrationFailed(Failure::Transport(match e {
                        UeError::Stack(_) => "re-REGISTER not sent",
                        _ => "re-registration not started",
                    })));
            }
            return;
        }
        if self.reg_deadline().is_some_and(|d| d <= now) {
            match self.reg {
                RegState::Sent { protected, .. } => {
                    let kind = if protected {
                        TxKind::RegisterProtected
                    } else {
                        TxKind::RegisterChallenge
                    };
                    self.fail_registration(Failure::Timeout(kind));
                }
                RegState::Deregistering { .. } => {
                    self.reg = RegState::Failed;
                    self.events
                        .push_back(UeEvent::RegistrationFailed(Failure::Timeout(
                            TxKind::Deregister,
                        )));
                }
                _ => {}
            }
        }
    }

    pub(crate) fn on_register_response(&mut self, msg: &Message<'_>, flow: Flow, now: Instant) {
        let Some(code) = msg.status_code() else {
            return;
        };
        if code < 200 {
            return;
        }
        match self.reg {
            RegState::Sent {
                protected,
                sent_at,
                started,
                resyncs,
            } => {
                // The re-REGISTER over the old SAs is the challenge leg of a re-registration.
                let challenge_leg = !protected
                    || self
                        .reg_data
                        .as_ref()
                        .is_some_and(|r| r.renewing && r.next.is_none());
                let kind = if challenge_leg {
                    TxKind::RegisterChallenge
                } else {
                    TxKind::RegisterProtected
                };
                self.events.push_back(UeEvent::Transaction {
                    kind,
                    code,
                    latency: now - sent_at,
                });
                match (code, protected) {
                    (401, _) => self.on_challenge(msg, now, started, resyncs),
                    (200..=299, true) if self.renewing() => {
                        self.on_reregistered(msg, now);
                        self.events.push_back(UeEvent::Transaction {
                            kind: TxKind::Reregistration,
                            code,
                            latency: now - started,
                        });
                    }
                    (200..=299, true) => {
                        self.on_registered(msg, flow);
                        self.schedule_reregistration(msg, now);
                        self.events.push_back(UeEvent::Transaction {
                            kind: TxKind::Registration,
                            code,
                            latency: now - started,
                        });
                    }
                    (200..=299, false) => {
                        self.fail_registration(Failure::Protocol("200 OK without AKA"))
                    }
                    (c, _) => self.fail_registration(Failure::Rejected(kind, c)),
                }
            }
            RegState::Deregistering { sent_at } => {
                self.events.push_back(UeEvent::Transaction {
                    kind: TxKind::Deregister,
                    code,
                    latency: now - sent_at,
                });
                if (200..300).contains(&code) {
                    // TS 33.203 7.4/7.5: the SAs go with the registration, and the protected
                    // connections with them, without a FIN through SAs the P-CSCF is removing
                    // (after SA_TEARDOWN_GRACE, so the 200 OK is acknowledged first).
                    self.reg = RegState::Idle;
                    if let Some(r) = self.reg_data.as_mut() {
                        r.rereg_at = None;
                    }
                    for set in [self.sas.take(), self.next_sas.take()]
                        .into_iter()
                        .flatten()
                    {
                        self.retire(set, now);
                    }
                    self.events.push_back(UeEvent::Deregistered);
                } else {
                    self.reg = RegState::Failed;
                    self.events
                        .push_back(UeEvent::RegistrationFailed(Failure::Rejected(
                            TxKind::Deregister,
                            code,
                        )));
                }
            }
            _ => self.counters.drop_sip += 1,
        }
    }

    /// Arms the automatic re-registration at half the lifetime the 200 OK granted
    /// (TS 24.229 5.1.1.4.1 lets the UE choose when; half is the usual choice).
    fn schedule_reregistration(&mut self, msg: &Message<'_>, now: Instant) {
        if !self.cfg.auto_reregister {
            return;
        }
        let granted = msg
            .header_by_name("Expires")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(u64::from(self.cfg.expires));
        self.reg_data().rereg_at =
            (granted > 0).then(|| now + smoltcp::time::Duration::from_millis(granted * 500));
    }

    /// The 200 OK of a re-registration (over the new SAs): the new set becomes current, the
    /// old one is retired with its connections (TS 33.203 7.4).
    fn on_reregistered(&mut self, msg: &Message<'_>, now: Instant) {
        let next = self.reg_data().next.take();
        let (Some(new), Some((ss, flow))) = (self.next_sas.take(), next) else {
            // 200 to the re-REGISTER itself: refreshed without new SAs; keep the old ones.
            let sec = self.cfg.sec;
            let r = self.reg_data();
            r.renewing = false;
            r.offered = sec;
            self.reg = RegState::Registered;
            self.schedule_reregistration(msg, now);
            self.events.push_back(UeEvent::Reregistered);
            return;
        };
        if let Some(old) = self.sas.replace(new) {
            self.retire(old, now);
        }
        let r = self.reg_data();
        r.renewing = false;
        r.security_server = Some(ss);
        r.protected_flow = Some(flow);
        let offered = r.offered;
        self.cfg.sec = offered;
        self.reg = RegState::Registered;
        self.schedule_reregistration(msg, now);
        self.events.push_back(UeEvent::Reregistered);
    }

    fn on_registered(&mut self, msg: &Message<'_>, _flow: Flow) {
        self.reg = RegState::Registered;
        let routes: Vec<String> = msg
            .header_values_by_name("Service-Route")
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        self.reg_data().service_routes = routes;
        // The unprotected connection has served its purpose (TS 33.203 7.4: from now on
        // everything goes through the SAs).
        if self.cfg.transport == Transport::Tcp {
            let f = self.unprotected_flow();
            let _ = self.stack.close(f);
        }
        self.events.push_back(UeEvent::Registered);
    }

    /// A 401: check AUTN, answer with RES over new SAs, or with AUTS (TS 33.203 6.1).
    fn on_challenge(&mut self, msg: &Message<'_>, now: Instant, started: Instant, resyncs: u8) {
        let Some(www) = msg
            .header_by_name("WWW-Authenticate")
            .and_then(|v| DigestChallenge::parse(v).ok())
        else {
            return self.fail_registration(Failure::Protocol("401 without a Digest challenge"));
        };
        if !www
            .algorithm
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(ALGORITHM_AKAV1_MD5))
        {
            return self.fail_registration(Failure::Protocol("challenge is not AKAv1-MD5"));
        }
        let Ok(nonce) = AkaNonce::decode(&www.nonce) else {
            return self.fail_registration(Failure::Protocol("AKA nonce does not decode"));
        };
        let Some(ss_raw) = msg.header_by_name("Security-Server").map(str::to_string) else {
            return self.fail_registration(Failure::Protocol("401 without Security-Server"));
        };
        let Some(params) = self.chosen_params(&ss_raw) else {
            return self.fail_registration(Failure::Protocol(
                "Security-Server unusable or not among our offers",
            ));
        };
        let (params, auth_alg, encr_alg) = params;
        match self.usim.authenticate(&nonce.rand, &nonce.autn) {
            Ok(ok) => {
                let Ok(suite) = derive_suite(auth_alg, encr_alg, &ok.ck, &ok.ik) else {
                    return self.fail_registration(Failure::Protocol("no key rule for the pair"));
                };
                let Ok(set) = UeSaSet::new(params, &suite) else {
                    return self.fail_registration(Failure::Protocol("SA refused (SPI)"));
                };
                let pflow = self.flow(params.port_uc, params.port_ps, self.cfg.transport);
                if self.renewing() {
                    // TS 33.203 7.4: the new set stands beside the old one until its 200 OK.
                    if let Some(n) = self.next_sas.replace(set) {
                        self.delete_set(&n);
                    }
                    self.stack.listen(params.port_us, true, true);
                    self.stack.listen(params.port_uc, false, true);
                    self.reg_data().next = Some((ss_raw.clone(), pflow));
                } else {
                    self.sas = Some(set);
                    let r = self.reg_data();
                    r.security_server = Some(ss_raw.clone());
                    r.protected_flow = Some(pflow);
                }
                let r = self.reg_data();
                r.auth = Some(AuthState {
                    realm: www.realm.clone(),
                    nonce: www.nonce.clone(),
                    nc: 0,
                    res: Some(ok.res),
                });
                let sent = self
                    .next_authorization("REGISTER", None)
                    .and_then(|a| self.send_register(pflow, Some(ss_raw), &a, self.cfg.expires));
                if sent.is_err() {
                    return self.fail_registration(Failure::Transport("protected REGISTER"));
                }
                self.reg = RegState::Sent {
                    protected: true,
                    sent_at: now,
                    started,
                    resyncs,
                };
            }
            Err(AkaFailure::SyncFailure { auts, reason }) => {
                if reason != SqnReject::TooFarAhead {
                    self.counters.sqn_stale += 1;
                }
                if resyncs >= self.cfg.max_resyncs {
                    return self.fail_registration(Failure::AkaSync);
                }
                // RFC 3310 3.4: AUTS in a new unprotected REGISTER under the same nonce.
                self.reg_data().auth = Some(AuthState {
                    realm: www.realm.clone(),
                    nonce: www.nonce.clone(),
                    nc: 0,
                    res: None,
                });
                let auts = encode_auts(&auts);
                let (flow, verify) = self.request_flow();
                let sent = self
                    .next_authorization("REGISTER", Some(&auts))
                    .and_then(|a| self.send_register(flow, verify, &a, self.cfg.expires));
                if sent.is_err() {
                    return self.fail_registration(Failure::Transport("AUTS REGISTER"));
                }
                self.reg = RegState::Sent {
                    protected: false,
                    sent_at: now,
                    started,
                    resyncs: resyncs + 1,
                };
            }
            Err(AkaFailure::MacFailure) => {
                // RFC 3310 3.3 / TS 24.229 5.1.1.5.3: report with an empty response, then stop.
                let creds = DigestCredentials {
                    username: self.id.impi.clone(),
                    realm: www.realm.clone(),
                    nonce: www.nonce.clone(),
                    uri: self.id.registrar_uri(),
                    response: String::new(),
                    algorithm: Some(ALGORITHM_AKAV1_MD5.into()),
                    qop: None,
                    nc: None,
                    cnonce: None,
                    opaque: None,
                    auts: None,
                    integrity_protected: None,
                };
                if let Ok(a) = creds.render() {
                    let (flow, verify) = self.request_flow();
                    let _ = self.send_register(flow, verify, &a, self.cfg.expires);
                }
                self.fail_registration(Failure::AkaMac);
            }
        }
    }

    /// The set's parameters from the Security-Server (exactly one ipsec-3gpp mechanism that
    /// matches one of our offers, TS 33.203 7.2).
    fn chosen_params(&self, ss: &str) -> Option<(SaParams, AuthAlg, EncrAlg)> {
        let mechs = parse_security_header(ss).ok()?;
        let m = mechs.iter().find(|m| m.name == "ipsec-3gpp")?;
        let auth = AuthAlg::from_token(m.param("alg")?)?;
        let encr = match m.param("ealg") {
            Some(e) => EncrAlg::from_token(e)?,
            None => EncrAlg::Null,
        };
        if !self.cfg.offers.contains(&(auth, encr)) {
            return None;
        }
        let sec = self.reg_data.as_ref().map_or(self.cfg.sec, |r| r.offered);
        Some((
            SaParams {
                spi_uc: sec.spi_uc,
                spi_us: sec.spi_us,
                spi_pc: m.param_u32("spi-c")?,
                spi_ps: m.param_u32("spi-s")?,
                port_uc: sec.port_uc,
                port_us: sec.port_us,
                port_pc: m.param_u16("port-c")?,
                port_ps: m.param_u16("port-s")?,
            },
            auth,
            encr,
        ))
    }
}
