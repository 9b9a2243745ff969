//! INVITE client transaction (RFC 3261 17.1.1, Figure 5): timers A, B and D, and the ACK the
//! transaction itself sends for a 300-699 response.

use std::time::Instant;

use super::{due, earliest, Outbox, Retransmit, TimerConfig, Transaction, TxEvent};
use crate::sip::builder::ack_for_non2xx;
use crate::sip::message::Message;

/// States of Figure 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, nothing received.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 300-699 arrived and was ACKed; absorbing retransmissions until Timer D.
    Completed,
    /// Done.
    Terminated,
}

/// An INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: ClientInviteState,
    reliable: bool,
    cfg: TimerConfig,
    request: Vec<u8>,
    ack: Option<Vec<u8>>,
    timer_a: Option<Retransmit>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    out: Outbox,
}

impl ClientInvite {
    /// Starts the transaction: the INVITE is queued for transmission at once.
    pub fn new(request: Vec<u8>, reliable: bool, cfg: TimerConfig, now: Instant) -> Self {
        let mut out = Outbox::default();
        out.transmits.push_back(request.clone());
        ClientInvite {
            state: ClientInviteState::Calling,
            reliable,
            cfg,
            timer_a: (!reliable).then_some(Retransmit::after(now, cfg.t1)),
            timer_b: Some(now + cfg.t1x64()),
            timer_d: None,
            request,
            ack: None,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// Queues the INVITE again after a transport error, if nothing has answered it yet
    /// (state Calling); returns whether it did. Timer B keeps running from the first send.
    pub fn resend(&mut self) -> bool {
        if self.state != ClientInviteState::Calling {
            return false;
        }
        self.out.transmits.push_back(self.request.clone());
        true
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.out.events.push_back(TxEvent::Terminated);
    }

    /// Processes a response matched to this transaction (RFC 3261 17.1.3).
    pub fn handle_response(&mut self, response: &Message<'_>, now: Instant) {
        use ClientInviteState::*;
        let Some(code) = response.status_code() else {
            return;
        };
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.timer_a = None;
                self.timer_b = None;
                self.out.report_response(response);
            }
            (Calling | Proceeding, 200..=299) => {
                // The TU (core) handles 2xx retransmissions and the ACK (17.1.1.2).
                self.out.report_response(response);
                self.terminate();
            }
            (Calling | Proceeding, _) => {
                self.out.report_response(response);
                self.ack = Message::parse(&self.request)
                    .and_then(|invite| ack_for_non2xx(&invite, response))
                    .ok();
                self.out.resend(self.ack.as_deref());
                self.timer_a = None;
                self.timer_b = None;
                if self.reliable {
                    self.terminate();
                } else {
                    self.state = Completed;
                    self.timer_d = Some(now + self.cfg.timer_d);
                }
            }
            (Completed, 300..) => {
                self.out.resend(self.ack.as_deref());
            }
            _ => {}
        }
    }
}

impl Transaction for ClientInvite {
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(a) = self.timer_a.filter(|a| a.at <= now) {
            // Timer A doubles without the T2 cap (17.1.1.2).
            self.out.transmits.push_back(self.request.clone());
            self.timer_a = Some(Retransmit::after(now, a.interval * 2));
        }
        if due(self.timer_b, now) {
            self.out.events.push_back(TxEvent::Timeout);
            self.terminate();
        }
        if due(self.timer_d, now) {
            self.terminate();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a.map(|a| a.at), self.timer_b, self.timer_d])
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }
}
