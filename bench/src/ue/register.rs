//! The UE's registration (TS 24.229 5.1.1, TS 33.203 6.1/7): unprotected REGISTER to the
//! P-CSCF's SIP port, 401 with the AKA nonce and Security-Server, AUTN check (AUTS on SQN
//! failure), SAs, protected REGISTER from port_uc to port_ps with Security-Verify, 200.

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::{Flow, Proto};
use akagate_slowpath::aka::{
    aka_response, derive_suite, digest_response, encode_auts, AkaFailure, AkaNonce,
    DigestChallenge, DigestCredentials, DigestInput, QopAuth, Res, ALGORITHM_AKAV1_MD5,
    AUTS_PASSWORD,
};
use akagate_slowpath::secagree::parse_security_header;
use akagate_slowpath::sip::Message;
use smoltcp::time::Instant;

use super::esp::{SaParams, UeSaSet};
use super::sip::{self, RequestParts};
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
}

impl Ue {
    fn reg_data(&mut self) -> &mut RegData {
        self.reg_data.get_or_insert_with(|| RegData {
            call_id: format!("{}@akabench", token(8)),
            from_tag: token(4),
            cseq: 0,
            security_server: None,
            auth: None,
            service_routes: Vec::new(),
            protected_flow: None,
        })
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
        self.sas = None;
        self.reg_data = None;
        self.reg_data();
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
        self.send_register(false, None, &authz, self.cfg.expires)?;
        self.reg = RegState::Sent {
            protected: false,
            sent_at: now,
            started: now,
            resyncs: 0,
        };
        Ok(())
    }

    /// Sends a REGISTER unprotected (to the SIP port) or through the SAs.
    fn send_register(
        &mut self,
        protected: bool,
        verify: Option<String>,
        authz: &str,
        expires: u32,
    ) -> Result<(), UeError> {
        let (flow, via_port) = if protected {
            let f = self
                .reg_data()
                .protected_flow
                .ok_or(UeError::NotRegistered)?;
            (f, f.local_port)
        } else {
            (self.unprotected_flow(), self.cfg.unprotected_port)
        };
        let r = self.reg_data();
        r.cseq += 1;
        let (call_id, from_tag, cseq) = (r.call_id.clone(), r.from_tag.clone(), r.cseq);
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
            &self.cfg.sec,
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
        let verify = self.reg_data().security_server.clone();
        let authz = self.next_authorization("REGISTER", None)?;
        self.send_register(true, verify, &authz, 0)?;
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
        if matches!(self.reg, RegState::Sent { .. }) {
            self.reg = RegState::Failed;
            self.events.push_back(UeEvent::RegistrationFailed(f));
        }
    }

    pub(crate) fn reg_deadline(&self) -> Option<Instant> {
        match self.reg {
            RegState::Sent { sent_at, .. } | RegState::Deregistering { sent_at } => {
                Some(sent_at + self.cfg.transaction_timeout)
            }
            _ => None,
        }
    }

    pub(crate) fn reg_timers(&mut self, now: Instant) {
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
                let kind = if protected {
                    TxKind::RegisterProtected
                } else {
                    TxKind::RegisterChallenge
                };
                self.events.push_back(UeEvent::Transaction {
                    kind,
                    code,
                    latency: now - sent_at,
                });
                match (code, protected) {
                    (401, _) => self.on_challenge(msg, now, started, resyncs),
                    (200..=299, true) => {
                        self.on_registered(msg, flow);
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
                    self.reg = RegState::Idle;
                    if let Some(f) = self.reg_data.as_ref().and_then(|r| r.protected_flow) {
                        let _ = self.stack.close(f);
                    }
                    self.close_server_connections();
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
        if self.cfg.transport == Proto::Tcp {
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
                self.sas = Some(set);
                let pflow = self.flow(params.port_uc, params.port_ps, self.cfg.transport);
                let r = self.reg_data();
                r.security_server = Some(ss_raw.clone());
                r.protected_flow = Some(pflow);
                r.auth = Some(AuthState {
                    realm: www.realm.clone(),
                    nonce: www.nonce.clone(),
                    nc: 0,
                    res: Some(ok.res),
                });
                let sent = self
                    .next_authorization("REGISTER", None)
                    .and_then(|a| self.send_register(true, Some(ss_raw), &a, self.cfg.expires));
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
            Err(AkaFailure::SyncFailure { auts, .. }) => {
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
                let sent = self
                    .next_authorization("REGISTER", Some(&auts))
                    .and_then(|a| self.send_register(false, None, &a, self.cfg.expires));
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
                    let _ = self.send_register(false, None, &a, self.cfg.expires);
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
        let sec = self.cfg.sec;
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
