//! Non-INVITE server transaction (RFC 3261 17.2.2, Figure 8): request retransmissions are
//! answered with the last response; Timer J keeps the final response for 64*T1 on UDP.

use std::time::Instant;

use super::{
    due, earliest, status_of, Outbox, TimerConfig, Transaction, TransactionError, TxEvent,
};
use crate::sip::message::Message;

/// States of Figure 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Request received, nothing sent.
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// The final response was sent; answering retransmissions until Timer J.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliable: bool,
    cfg: TimerConfig,
    last_response: Option<Vec<u8>>,
    timer_j: Option<Instant>,
    out: Outbox,
}

impl ServerNonInvite {
    /// Creates the transaction for a received non-INVITE request.
    pub fn new(reliable: bool, cfg: TimerConfig) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            reliable,
            cfg,
            last_response: None,
            timer_j: None,
            out: Outbox::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    fn terminate(&mut self) {
        self.state = ServerNonInviteState::Terminated;
        self.timer_j = None;
        self.out.events.push_back(TxEvent::Terminated);
    }

    /// Processes a retransmission of the request (17.2.2).
    pub fn handle_request(&mut self, _request: &Message<'_>, _now: Instant) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            self.out.resend(self.last_response.as_deref());
        }
    }

    /// Sends a response from the transaction user.
    pub fn send_response(
        &mut self,
        response: Vec<u8>,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let code = status_of(&response)?;
        if !matches!(
            self.state,
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
        ) {
            return Err(TransactionError::InvalidState);
        }
        // RFC 3261 17.2.2: over a reliable transport a final response ends the transaction
        // at once, so no copy is kept for retransmissions to requests that cannot come.
        if code >= 200 && self.reliable {
            self.out.transmits.push_back(response);
        } else {
            self.out.transmits.push_back(response.clone());
            self.last_response = Some(response);
        }
        if code < 200 {
            self.state = ServerNonInviteState::Proceeding;
        } else if self.reliable {
            self.terminate();
        } else {
            self.state = ServerNonInviteState::Completed;
            self.timer_j = Some(now + self.cfg.t1x64());
        }
        Ok(())
    }
}

impl Transaction for ServerNonInvite {
    fn handle_timeout(&mut self, now: Instant) {
        if due(self.timer_j, now) {
            self.terminate();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_j])
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}
