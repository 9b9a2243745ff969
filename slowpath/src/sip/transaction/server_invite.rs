//! INVITE server transaction (RFC 3261 17.2.1, Figure 7): automatic 100 Trying after 200 ms,
//! timers G, H and I, absorption of INVITE retransmissions and of the ACK for a non-2xx.

use std::time::Instant;

use super::{
    due, earliest, status_of, Outbox, Retransmit, TimerConfig, Transaction, TransactionError,
    TxEvent,
};
use crate::sip::builder::response_to;
use crate::sip::message::Message;

/// States of Figure 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// The INVITE was received; provisional responses may be sent.
    Proceeding,
    /// A 300-699 was sent; retransmitting it until the ACK (Timer G) or Timer H.
    Completed,
    /// The ACK arrived; absorbing further ACKs until Timer I.
    Confirmed,
    /// Done (also right after a 2xx, RFC 3261 17.2.1).
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliable: bool,
    cfg: TimerConfig,
    request: Vec<u8>,
    last_response: Option<Vec<u8>>,
    timer_trying: Option<Instant>,
    timer_g: Option<Retransmit>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    out: Outbox,
}

impl ServerInvite {
    /// Creates the transaction for a received INVITE.
    pub fn new(request: &Message<'_>, reliable: bool, cfg: TimerConfig, now: Instant) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            reliable,
            cfg,
            request: request.noted_bytes(),
            last_response: None,
            timer_trying: Some(now + cfg.trying_delay),
            timer_g: None,
            timer_h: None,
            timer_i: None,
            out: Outbox::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.timer_trying = None;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.out.events.push_back(TxEvent::Terminated);
    }

    /// Processes a retransmitted INVITE or an ACK matched to this transaction (17.2.3).
    pub fn handle_request(&mut self, request: &Message<'_>, now: Instant) {
        use ServerInviteState::*;
        let is_ack = request.method() == Some("ACK");
        match (self.state, is_ack) {
            (Proceeding | Completed, false) => self.out.resend(self.last_response.as_deref()),
            (Completed, true) => {
                self.timer_g = None;
                self.timer_h = None;
                if self.reliable {
                    self.terminate();
                } else {
                    self.state = Confirmed;
                    self.timer_i = Some(now + self.cfg.t4);
                }
            }
            _ => {}
        }
    }

    /// Sends a response from the transaction user.
    pub fn send_response(
        &mut self,
        response: Vec<u8>,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let code = status_of(&response)?;
        if self.state != ServerInviteState::Proceeding {
            return Err(TransactionError::InvalidState);
        }
        self.timer_trying = None;
        self.out.transmits.push_back(response.clone());
        match code {
            100..=199 => self.last_response = Some(response),
            200..=299 => self.terminate(),
            _ => {
                self.last_response = Some(response);
                self.state = ServerInviteState::Completed;
                self.timer_h = Some(now + self.cfg.t1x64());
                self.timer_g = (!self.reliable).then_some(Retransmit::after(now, self.cfg.t1));
            }
        }
        Ok(())
    }
}

impl Transaction for ServerInvite {
    fn handle_timeout(&mut self, now: Instant) {
        if due(self.timer_trying, now) {
            self.timer_trying = None;
            if let Ok(trying) =
                Message::parse(&self.request).and_then(|req| response_to(&req, 100, "Trying", None))
            {
                let trying = trying.build();
                self.out.transmits.push_back(trying.clone());
                self.last_response = Some(trying);
            }
        }
        if let Some(g) = self.timer_g.filter(|g| g.at <= now) {
            self.out.resend(self.last_response.as_deref());
            self.timer_g = Some(Retransmit::after(now, (g.interval * 2).min(self.cfg.t2)));
        }
        if due(self.timer_h, now) {
            self.out.events.push_back(TxEvent::Timeout);
            self.terminate();
        }
        if due(self.timer_i, now) {
            self.terminate();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[
            self.timer_trying,
            self.timer_g.map(|g| g.at),
            self.timer_h,
            self.timer_i,
        ])
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }
}
