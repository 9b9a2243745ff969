//! SIP transactions (RFC 3261 17) as sans-IO state machines: feed messages and `now`, then
//! poll for bytes to send, events for the transaction user and the next timer deadline.

mod client_invite;
mod client_non_invite;
mod key;
mod layer;
mod server_invite;
mod server_non_invite;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::error::ParseError;
use super::message::Message;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use key::{ClientKey, Rfc3261Key, ServerKey};
pub use layer::{
    Incoming, Peer, TransactionLayer, Transmit, Transport, TransportErrorOutcome, TxId,
};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};

/// Timer base values (RFC 3261 17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, 5 s.
    pub t4: Duration,
    /// Timer D for unreliable transports, at least 32 s.
    pub timer_d: Duration,
    /// Delay after which a server INVITE transaction sends 100 Trying itself (17.2.1: 200 ms).
    pub trying_delay: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            trying_delay: Duration::from_millis(200),
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H and J.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a transaction reports to its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Client transactions: a response for the transaction user (1xx, 2xx, first final).
    Response(Vec<u8>),
    /// Timer B, F or H fired: no (final) response or no ACK in time (RFC 3261 17.1.1.2 -> 408).
    Timeout,
    /// The transaction reached Terminated and may be forgotten.
    Terminated,
}

/// Misuse of a transaction by its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TransactionError {
    /// The message handed in does not parse.
    #[error("message does not parse: {0}")]
    Parse(#[from] ParseError),
    /// A response was sent in a state that does not allow it (e.g. after the final one).
    #[error("not allowed in the transaction's current state")]
    InvalidState,
    /// A request or response of the wrong kind for this transaction.
    #[error("wrong message for this transaction")]
    WrongMessage,
    /// No transaction with that id.
    #[error("no such transaction")]
    NotFound,
}

/// Common surface of the four transaction kinds.
pub trait Transaction {
    /// Processes every timer that is due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The earliest pending timer deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next message to hand to the transport.
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    /// The next event for the transaction user.
    fn poll_event(&mut self) -> Option<TxEvent>;
    /// True once in the Terminated state.
    fn is_terminated(&self) -> bool;
}

/// Queues shared by all transaction kinds.
#[derive(Debug, Default, Clone)]
struct Outbox {
    transmits: Queue<Vec<u8>>,
    events: Queue<TxEvent>,
}

/// A FIFO that holds its first item inline: a transaction queues one item at a time
/// between two drains (its response, its `Terminated`), so the common path allocates no
/// queue (a `VecDeque` allocated on its first push, twice per transaction).
#[derive(Debug, Clone)]
struct Queue<T> {
    /// The oldest item, if it is held inline (always older than everything in `rest`).
    first: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            first: None,
            rest: VecDeque::new(),
        }
    }
}

impl<T> Queue<T> {
    fn push_back(&mut self, item: T) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    fn pop_front(&mut self) -> Option<T> {
        self.first.take().or_else(|| self.rest.pop_front())
    }
}

impl Outbox {
    /// Queues a copy of a kept message (last response, ACK), if there is one, for a
    /// retransmission.
    fn resend(&mut self, kept: Option<&[u8]>) {
        if let Some(bytes) = kept {
            self.transmits.push_back(bytes.to_vec());
        }
    }

    /// Hands a received response to the transaction user.
    fn report_response(&mut self, response: &Message<'_>) {
        self.events
            .push_back(TxEvent::Response(response.raw().to_vec()));
    }
}

#[cfg(test)]
mod queue_tests {
    use super::Queue;

    #[test]
    fn queue_keeps_fifo_order_across_inline_and_spilled_items() {
        let mut q = Queue::default();
        let mut model = std::collections::VecDeque::new();
        // Interleaved pushes and pops, including pops that empty the inline slot while
        // spilled items wait.
        for (i, pops) in [0, 0, 1, 0, 2, 0, 0, 3, 1, 0, 4].into_iter().enumerate() {
            q.push_back(i);
            model.push_back(i);
            for _ in 0..pops {
                assert_eq!(q.pop_front(), model.pop_front());
            }
        }
        while let Some(m) = model.pop_front() {
            assert_eq!(q.pop_front(), Some(m));
        }
        assert_eq!(q.pop_front(), None);
    }
}

/// The status code of a response the transaction user hands in for sending.
/// Only its status line is read: the transaction user built or parsed the message already.
fn status_of(response: &[u8]) -> Result<u16, TransactionError> {
    // The TU's responses come from the builder: `SIP/2.0 NNN ` (100–699) read in place, the
    // reason phrase taken as built; anything else takes the start line's full parse.
    if let Some([b'S', b'I', b'P', b'/', b'2', b'.', b'0', b' ', a, b, c, b' ']) =
        response.first_chunk::<12>()
    {
        if (b'1'..=b'6').contains(a) && b.is_ascii_digit() && c.is_ascii_digit() {
            return Ok([a, b, c]
                .iter()
                .fold(0u16, |n, &&d| n * 10 + u16::from(d - b'0')));
        }
    }
    super::message::status_line_code(response)?.ok_or(TransactionError::WrongMessage)
}

/// A retransmission timer: deadline and the interval used to arm it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retransmit {
    at: Instant,
    interval: Duration,
}

impl Retransmit {
    /// Armed to fire `interval` after `now` (each caller picks the interval its clause
    /// prescribes: doubling, capped at T2 or not).
    fn after(now: Instant, interval: Duration) -> Self {
        Retransmit {
            at: now + interval,
            interval,
        }
    }
}

fn due(t: Option<Instant>, now: Instant) -> bool {
    t.is_some_and(|t| t <= now)
}

fn earliest(timers: &[Option<Instant>]) -> Option<Instant> {
    timers.iter().flatten().min().copied()
}

#[cfg(test)]
mod status_tests {
    use super::status_of;
    use crate::sip::message::status_line_code;

    #[test]
    fn status_read_in_place_is_the_start_lines_code() {
        for line in [
            "SIP/2.0 100 Trying\r\n",
            "SIP/2.0 200 OK\r\n",
            "SIP/2.0 401 Unauthorized\r\n",
            "SIP/2.0 699 Whatever\r\n",
            "SIP/2.0 180 \r\n",
        ] {
            let want = status_line_code(line.as_bytes()).unwrap();
            assert_eq!(status_of(line.as_bytes()).ok(), want, "{line:?}");
        }
        // Outside the fast path's shape: the full parse decides (and refuses these).
        for line in [
            "SIP/2.0 099 Low\r\n",
            "SIP/2.0 700 High\r\n",
            "SIP/2.0 20x OK\r\n",
            "SIP/3.0 200 OK\r\n",
            "REGISTER sip:a SIP/2.0\r\n",
            "SIP/2.0 200",
        ] {
            assert!(status_of(line.as_bytes()).is_err(), "{line:?}");
        }
    }
}
