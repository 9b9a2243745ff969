//! Basic calls (RFC 3261 13-15, TS 24.229 5.1.2A/5.1.3): as caller INVITE -> 180 -> 200 ->
//! ACK -> hold -> BYE -> 200 through port_uc -> port_ps; as callee, requests arrive on the
//! P-CSCF's connection from port_pc to our port_us and are answered on it.

use akagate_fastpath::ipc::Flow;
use akagate_slowpath::sip::Message;
use smoltcp::time::Instant;

use super::sip::{self, host, tag_of, uri_in, DialogHeaders, RequestParts};
use super::{token, Failure, TxKind, Ue, UeError, UeEvent};

/// Our side of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Caller,
    Callee,
}

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallState {
    /// INVITE sent / received, no 180 yet.
    Inviting,
    /// 180 sent or received.
    Ringing,
    /// Callee: 200 sent, waiting for the ACK.
    Answered,
    /// ACK sent or received.
    Established,
    /// BYE sent.
    Terminating,
}

/// One call (dialog) of the UE.
#[derive(Debug)]
pub(crate) struct Call {
    role: Role,
    state: CallState,
    d: DialogHeaders,
    /// Our last CSeq in this dialog.
    cseq: u32,
    /// Where our requests or responses go.
    flow: Flow,
    /// Start of the outstanding client transaction (INVITE or BYE).
    tx_start: Instant,
    /// Client transaction deadline.
    deadline: Option<Instant>,
    /// Caller: when to send BYE.
    hold_until: Option<Instant>,
    /// Callee: when to send 200.
    answer_at: Option<Instant>,
    /// Callee: the INVITE to answer.
    invite: Vec<u8>,
    /// Callee: our To tag.
    to_tag: String,
}

impl Call {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.deadline, self.hold_until, self.answer_at]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Ue {
    fn security_verify(&self) -> Option<String> {
        self.reg_data.as_ref()?.security_server.clone()
    }

    /// Calls `target` (an IMPU); returns the Call-ID. The call then runs by itself:
    /// ACK on 200, BYE after [`super::UeConfig::hold`] (or on [`Ue::hangup`]).
    pub fn call(&mut self, target: &str, now: Instant) -> Result<String, UeError> {
        if !self.is_registered() {
            return Err(UeError::NotRegistered);
        }
        let (flow, routes) = {
            let r = self.reg_data.as_ref().ok_or(UeError::NotRegistered)?;
            let flow = r.protected_flow.ok_or(UeError::NotRegistered)?;
            // TS 24.229 5.1.2A.1.4: Route = the P-CSCF at its protected server port, then
            // the Service-Route learned at registration.
            let mut routes = vec![format!(
                "<sip:{}:{};lr>",
                host(self.cfg.pcscf),
                flow.ue_port
            )];
            routes.extend(r.service_routes.iter().cloned());
            (flow, routes)
        };
        let call_id = format!("{}@{}", token(10), host(self.cfg.ip));
        let d = DialogHeaders {
            request_uri: target.to_string(),
            routes,
            from: format!("<{}>;tag={}", self.id.impu, token(4)),
            to: format!("<{target}>"),
        };
        let branch = format!("z9hG4bK{}", token(8));
        let verify = self.security_verify();
        let build = |ue: &Ue, body_len: usize| {
            let body = sip::sdp(ue.cfg.ip, 1, body_len);
            let parts = RequestParts {
                proto: flow.proto,
                via_port: flow.local_port,
                branch: &branch,
                call_id: &call_id,
                cseq: 1,
                from_tag: "",
            };
            sip::dialog_request(
                "INVITE",
                &ue.id,
                &parts,
                &d,
                ue.cfg.sec.port_us,
                verify.as_deref(),
                Some(&body),
            )
        };
        let mut msg = build(self, 0);
        if self.cfg.invite_size > msg.len() {
            // Grow the SDP to hit the requested size; Content-Length may gain a digit.
            let natural_body = sip::sdp(self.cfg.ip, 1, 0).len();
            let mut body = natural_body + self.cfg.invite_size - msg.len();
            for _ in 0..3 {
                msg = build(self, body);
                if msg.len() == self.cfg.invite_size {
                    break;
                }
                body = (body + self.cfg.invite_size).saturating_sub(msg.len());
            }
        }
        self.send(flow, &msg, true)?;
        self.calls.insert(
            call_id.clone(),
            Call {
                role: Role::Caller,
                state: CallState::Inviting,
                d,
                cseq: 1,
                flow,
                tx_start: now,
                deadline: Some(now + self.cfg.transaction_timeout),
                hold_until: None,
                answer_at: None,
                invite: Vec::new(),
                to_tag: String::new(),
            },
        );
        Ok(call_id)
    }

    /// Ends an established call we placed or answered by sending BYE.
    pub fn hangup(&mut self, call_id: &str, now: Instant) -> Result<(), UeError> {
        let established = self
            .calls
            .get(call_id)
            .is_some_and(|c| c.state == CallState::Established);
        if !established {
            return Err(UeError::NotRegistered);
        }
        self.send_bye(call_id, now);
        Ok(())
    }

    /// Number of calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    fn in_dialog(&mut self, call_id: &str, method: &str, cseq: u32) -> Option<(Flow, Vec<u8>)> {
        let verify = self.security_verify();
        let pflow = self.reg_data.as_ref()?.protected_flow?;
        let c = self.calls.get(call_id)?;
        let branch = format!("z9hG4bK{}", token(8));
        let parts = RequestParts {
            proto: pflow.proto,
            via_port: pflow.local_port,
            branch: &branch,
            call_id,
            cseq,
            from_tag: "",
        };
        let msg = sip::dialog_request(
            method,
            &self.id,
            &parts,
            &c.d,
            self.cfg.sec.port_us,
            verify.as_deref(),
            None,
        );
        Some((pflow, msg))
    }

    fn send_bye(&mut self, call_id: &str, now: Instant) {
        let Some(cseq) = self.calls.get_mut(call_id).map(|c| {
            c.cseq += 1;
            c.cseq
        }) else {
            return;
        };
        let Some((flow, msg)) = self.in_dialog(call_id, "BYE", cseq) else {
            return;
        };
        let sent = self.send(flow, &msg, true);
        if let Some(c) = self.calls.get_mut(call_id) {
            c.state = CallState::Terminating;
            c.hold_until = None;
            c.tx_start = now;
            c.deadline = Some(now + self.cfg.transaction_timeout);
        }
        if sent.is_err() {
            self.end_call(call_id, Some(Failure::Transport("BYE not sent")));
        }
    }

    fn end_call(&mut self, call_id: &str, failure: Option<Failure>) {
        let Some(c) = self.calls.remove(call_id) else {
            return;
        };
        let id = call_id.to_string();
        self.events.push_back(match (failure, c.role) {
            (Some(f), _) => UeEvent::CallFailed(id, f),
            (None, Role::Caller) => UeEvent::CallEnded(id),
            (None, Role::Callee) => UeEvent::IncomingCallEnded(id),
        });
    }

    pub(crate) fn call_timers(&mut self, now: Instant) {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            let Some(c) = self.calls.get(&id) else {
                continue;
            };
            if c.deadline.is_some_and(|d| d <= now) {
                let kind = if c.state == CallState::Terminating {
                    TxKind::Bye
                } else {
                    TxKind::InviteAnswer
                };
                self.end_call(&id, Some(Failure::Timeout(kind)));
            } else if c.hold_until.is_some_and(|d| d <= now) {
                self.send_bye(&id, now);
            } else if c.answer_at.is_some_and(|d| d <= now) {
                self.answer(&id);
            }
        }
    }

    /// Callee: the 200 OK with our SDP.
    fn answer(&mut self, call_id: &str) {
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        c.answer_at = None;
        c.state = CallState::Answered;
        let (flow, invite, tag) = (c.flow, c.invite.clone(), c.to_tag.clone());
        let Ok(req) = Message::parse(&invite) else {
            return;
        };
        let contact = self.id.contact_uri(self.cfg.sec.port_us);
        let body = sip::sdp(self.cfg.ip, 2, 0);
        if let Some(ok) = sip::response(&req, 200, "OK", &tag, Some(&contact), Some(&body)) {
            if self.send(flow, &ok, false).is_err() {
                self.end_call(call_id, Some(Failure::Transport("200 OK not sent")));
            }
        }
    }

    pub(crate) fn on_call_response(&mut self, msg: &Message<'_>, method: &str, now: Instant) {
        let (Some(code), Ok(call_id)) = (msg.status_code(), msg.call_id()) else {
            self.counters.drop_sip += 1;
            return;
        };
        let call_id = call_id.to_string();
        let Some(c) = self.calls.get_mut(&call_id) else {
            return;
        };
        let latency = now - c.tx_start;
        match (method, code) {
            ("INVITE", 101..=199) if c.state == CallState::Inviting => {
                c.state = CallState::Ringing;
                self.events.push_back(UeEvent::Transaction {
                    kind: TxKind::InviteRinging,
                    code,
                    latency,
                });
                self.events.push_back(UeEvent::CallRinging(call_id));
            }
            ("INVITE", 100..=199) => {}
            ("INVITE", 200..=299) => {
                if !matches!(c.state, CallState::Inviting | CallState::Ringing) {
                    return;
                }
                // RFC 3261 12.1.2: remote target from Contact, route set = Record-Route reversed.
                if let Some(to) = msg.header_by_name("To") {
                    c.d.to = to.to_string();
                }
                if let Some(contact) = msg.header_by_name("Contact") {
                    c.d.request_uri = uri_in(contact).to_string();
                }
                let mut rr: Vec<String> = msg
                    .header_values_by_name("Record-Route")
                    .flat_map(|v| v.split(','))
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                rr.reverse();
                c.d.routes = rr;
                c.state = CallState::Established;
                c.deadline = None;
                c.hold_until = self.cfg.hold.map(|h| now + h);
                let cseq = c.cseq;
                let has_tag = tag_of(&c.d.to).is_some();
                self.events.push_back(UeEvent::Transaction {
                    kind: TxKind::InviteAnswer,
                    code,
                    latency,
                });
                if !has_tag {
                    return self.end_call(&call_id, Some(Failure::Protocol("200 without To tag")));
                }
                if let Some((flow, ack)) = self.in_dialog(&call_id, "ACK", cseq) {
                    if self.send(flow, &ack, true).is_err() {
                        return self.end_call(&call_id, Some(Failure::Transport("ACK not sent")));
                    }
                }
                self.events.push_back(UeEvent::CallAnswered(call_id));
            }
            ("INVITE", _) => {
                self.events.push_back(UeEvent::Transaction {
                    kind: TxKind::InviteAnswer,
                    code,
                    latency,
                });
                self.end_call(
                    &call_id,
                    Some(Failure::Rejected(TxKind::InviteAnswer, code)),
                );
            }
            ("BYE", 100..=199) => {}
            ("BYE", _) => {
                if c.state != CallState::Terminating {
                    return;
                }
                self.events.push_back(UeEvent::Transaction {
                    kind: TxKind::Bye,
                    code,
                    latency,
                });
                let f =
                    (!(200..300).contains(&code)).then_some(Failure::Rejected(TxKind::Bye, code));
                self.end_call(&call_id, f);
            }
            _ => {}
        }
    }

    pub(crate) fn on_request(&mut self, msg: &Message<'_>, flow: Flow, now: Instant) {
        let method = msg.method().unwrap_or_default();
        let call_id = msg.call_id().unwrap_or_default().to_string();
        let tag = token(4);
        match method {
            "ACK" => {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    if c.role == Role::Callee && c.state == CallState::Answered {
                        c.state = CallState::Established;
                        self.events
                            .push_back(UeEvent::IncomingCallEstablished(call_id));
                    }
                }
            }
            "INVITE" if !self.calls.contains_key(&call_id) => {
                let contact = self.id.contact_uri(self.cfg.sec.port_us);
                let Some(ringing) = sip::response(msg, 180, "Ringing", &tag, Some(&contact), None)
                else {
                    self.counters.drop_sip += 1;
                    return;
                };
                if self.send(flow, &ringing, false).is_err() {
                    return;
                }
                let d = DialogHeaders {
                    request_uri: msg
                        .header_by_name("Contact")
                        .map(|c| uri_in(c).to_string())
                        .unwrap_or_default(),
                    routes: msg
                        .header_values_by_name("Record-Route")
                        .flat_map(|v| v.split(','))
                        .map(|s| s.trim().to_string())
                        .collect(),
                    from: format!("{};tag={tag}", msg.header_by_name("To").unwrap_or_default()),
                    to: msg.header_by_name("From").unwrap_or_default().to_string(),
                };
                self.calls.insert(
                    call_id.clone(),
                    Call {
                        role: Role::Callee,
                        state: CallState::Ringing,
                        d,
                        cseq: 0,
                        flow,
                        tx_start: now,
                        deadline: None,
                        hold_until: None,
                        answer_at: Some(now + self.cfg.answer_delay),
                        invite: msg.raw().to_vec(),
                        to_tag: tag,
                    },
                );
                self.events
                    .push_back(UeEvent::IncomingCall(call_id.clone()));
                if self.cfg.answer_delay == smoltcp::time::Duration::ZERO {
                    self.answer(&call_id);
                }
            }
            "INVITE" => {}
            "BYE" => {
                if let Some(ok) = sip::response(msg, 200, "OK", &tag, None, None) {
                    let _ = self.send(flow, &ok, false);
                }
                self.end_call(&call_id, None);
            }
            _ => {
                if let Some(ok) = sip::response(msg, 200, "OK", &tag, None, None) {
                    let _ = self.send(flow, &ok, false);
                }
            }
        }
    }
}
