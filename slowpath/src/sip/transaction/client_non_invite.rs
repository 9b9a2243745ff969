//! Non-INVITE client transaction (RFC 3261 17.1.2, Figure 6): timers E, F and K.

use std::time::Instant;

use super::{due, earliest, Outbox, Retransmit, TimerConfig, Transaction, TxEvent};
use crate::sip::message::Message;

/// States of Figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, nothing received.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing retransmissions until Timer K.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    reliable: bool,
    cfg: TimerConfig,
    request: Vec<u8>,
    timer_e: Option<Retransmit>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
    out: Outbox,
}

impl ClientNonInvite {
    /// Starts the transaction: the request is queued for transmission at once.
    pub fn new(request: Vec<u8>, reliable: bool, cfg: TimerConfig, now: Instant) -> Self {
        let mut out = Outbox::default();
        out.transmits.push_back(request.clone());
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            reliable,
            cfg,
            request,
            timer_e: (!reliable).then_some(Retransmit::after(now, cfg.t1)),
            timer_f: Some(now + cfg.t1x64()),
            timer_k: None,
            out,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// Queues the request again after a transport error, if nothing has answered it yet
    /// (state Trying); returns whether it did. Timer F keeps running from the first send.
    pub fn resend(&mut self) -> bool {
        if self.state != ClientNonInviteState::Trying {
            return false;
        }
        self.out.transmits.push_back(self.request.clone());
        true
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
        self.out.events.push_back(TxEvent::Terminated);
    }

    /// Processes a response matched to this transaction (RFC 3261 17.1.3).
    pub fn handle_response(&mut self, response: &Message<'_>, now: Instant) {
        use ClientNonInviteState::*;
        let Some(code) = response.status_code() else {
            return;
        };
        match (self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.out.report_response(response);
            }
            (Trying | Proceeding, _) => {
                self.out.report_response(response);
                self.timer_e = None;
                self.timer_f = None;
                if self.reliable {
                    self.terminate();
                } else {
                    self.state = Completed;
                    self.timer_k = Some(now + self.cfg.t4);
                }
            }
            _ => {}
        }
    }
}

impl Transaction for ClientNonInvite {
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(e) = self.timer_e.filter(|e| e.at <= now) {
            self.out.transmits.push_back(self.request.clone());
            // Trying: double up to T2; Proceeding: always T2 (17.1.2.2).
            let interval = match self.state {
                ClientNonInviteState::Trying => (e.interval * 2).min(self.cfg.t2),
                _ => self.cfg.t2,
            };
            self.timer_e = Some(Retransmit::after(now, interval));
        }
        if due(self.timer_f, now) {
            self.out.events.push_back(TxEvent::Timeout);
            self.terminate();
        }
        if due(self.timer_k, now) {
            self.terminate();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e.map(|e| e.at), self.timer_f, self.timer_k])
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }
}
