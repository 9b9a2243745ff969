//! The transaction layer: a keyed map of the four transaction kinds that routes incoming
//! messages (RFC 3261 17.1.3, 17.2.3), collects what they transmit and emit, and keeps one
//! deadline heap so `poll_timeout` is O(1).

use akagate_proto::hash::KeyedMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::key::{ClientKey, ServerKey};
use super::{
    ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, TimerConfig, Transaction,
    TransactionError, TxEvent,
};
use crate::sip::error::ParseError;
use crate::sip::message::Message;

pub use akagate_proto::Transport;

/// Where a transaction's messages go: the remote address, our local port (5060, port_ps or
/// port_pc) and the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Remote address and port.
    pub remote: SocketAddr,
    /// Local port the message arrived on / must leave from.
    pub local_port: u16,
    /// Transport.
    pub transport: Transport,
}

/// Identifier of a transaction inside a [`TransactionLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// Bytes to send to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub peer: Peer,
    /// The serialized message.
    pub bytes: Vec<u8>,
}

/// What [`TransactionLayer::handle_message`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A new request: a server transaction was created; the TU must answer it.
    NewRequest(TxId),
    /// A retransmission or an ACK for a non-2xx, absorbed by an existing server transaction.
    Absorbed(TxId),
    /// A response matched a client transaction; its events carry it to the TU.
    Response(TxId),
    /// No transaction matched: an ACK for a 2xx or a stray response, for the core to
    /// handle statelessly (RFC 3261 16.7 step 3, 17.1.1.2).
    Stray,
}

/// What [`TransactionLayer::transport_error`] did with a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorOutcome {
    /// The request was queued again, once, for a fresh connection.
    Resent,
    /// The request was lost again (or could not be resent): the transaction is gone and the
    /// TU must treat it as failed (RFC 3261 8.1.3.1: as a 503 from the next hop).
    Failed,
    /// Nothing to do: not a client transaction, or one that has been answered already (the
    /// request got through; its responses may arrive on another connection).
    Ignored,
}

/// The four machines of RFC 3261 17: INVITE/non-INVITE client and server transactions.
#[derive(Debug)]
enum Tx {
    Ict(ClientInvite),
    Nict(ClientNonInvite),
    Ist(ServerInvite),
    Nist(ServerNonInvite),
}

impl Tx {
    fn core(&mut self) -> &mut dyn Transaction {
        match self {
            Tx::Ict(t) => t,
            Tx::Nict(t) => t,
            Tx::Ist(t) => t,
            Tx::Nist(t) => t,
        }
    }
}

#[derive(Debug)]
enum Key {
    /// A copy of the key in `servers` (an RFC 3261 key is inline: copying it allocates
    /// nothing).
    Server(ServerKey),
    Client(ClientKey),
}

#[derive(Debug)]
struct Entry {
    tx: Tx,
    peer: Peer,
    key: Key,
    /// The deadline this entry has in the heap; other heap entries for it are stale.
    armed: Option<Instant>,
    /// Its request was already resent after a transport error.
    resent: bool,
}

/// All live transactions of one slowpath.
#[derive(Debug, Default)]
pub struct TransactionLayer {
    cfg: TimerConfig,
    next_id: u64,
    servers: KeyedMap<ServerKey, TxId>,
    clients: KeyedMap<ClientKey, TxId>,
    entries: KeyedMap<TxId, Entry>,
    deadlines: BinaryHeap<Reverse<(Instant, TxId)>>,
    transmits: VecDeque<(TxId, Transmit)>,
    events: VecDeque<(TxId, TxEvent)>,
}

impl TransactionLayer {
    /// An empty layer with the given timer values.
    pub fn new(cfg: TimerConfig) -> Self {
        TransactionLayer {
            cfg,
            ..Default::default()
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn alloc(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    /// Routes a received message to its transaction, creating a server transaction for a new
    /// request. Run [`Message::validate`] first: a request that fails it is answered
    /// statelessly and a response that fails it is dropped.
    pub fn handle_message(
        &mut self,
        msg: &Message<'_>,
        peer: Peer,
        now: Instant,
    ) -> Result<Incoming, ParseError> {
        if msg.is_request() {
            let key = ServerKey::for_request(msg)?;
            if let Some(&id) = self.servers.get(&key) {
                if let Some(entry) = self.entries.get_mut(&id) {
                    match &mut entry.tx {
                        Tx::Ist(t) => t.handle_request(msg, now),
                        Tx::Nist(t) => t.handle_request(msg, now),
                        _ => {}
                    }
                }
                self.drain(id);
                return Ok(Incoming::Absorbed(id));
            }
            let tx = match msg.method() {
                // An ACK without an INVITE transaction belongs to a 2xx: core handles it.
                Some("ACK") => return Ok(Incoming::Stray),
                Some("INVITE") => Tx::Ist(ServerInvite::new(
                    msg,
                    peer.transport.is_reliable(),
                    self.cfg,
                    now,
                )),
                _ => Tx::Nist(ServerNonInvite::new(peer.transport.is_reliable(), self.cfg)),
            };
            let id = self.alloc();
            self.servers.insert(key.clone(), id);
            self.entries.insert(
                id,
                Entry {
                    tx,
                    peer,
                    key: Key::Server(key),
                    armed: None,
                    resent: false,
                },
            );
            self.drain(id);
            return Ok(Incoming::NewRequest(id));
        }
        let key = ClientKey::for_message(msg)?;
        let Some(&id) = self.clients.get(&key) else {
            return Ok(Incoming::Stray);
        };
        if let Some(entry) = self.entries.get_mut(&id) {
            match &mut entry.tx {
                Tx::Ict(t) => t.handle_response(msg, now),
                Tx::Nict(t) => t.handle_response(msg, now),
                _ => {}
            }
        }
        self.drain(id);
        Ok(Incoming::Response(id))
    }

    /// Starts a client transaction for `request` (its top Via branch must be unique) towards
    /// `peer`. ACK is not a transaction (17.1.1.3): send it directly.
    pub fn send_request(
        &mut self,
        request: Vec<u8>,
        peer: Peer,
        now: Instant,
    ) -> Result<TxId, TransactionError> {
        let (key, is_invite) = {
            let msg = Message::parse(&request)?;
            match msg.method() {
                Some("ACK") | None => return Err(TransactionError::WrongMessage),
                Some(m) => (ClientKey::for_message(&msg)?, m == "INVITE"),
            }
        };
        if self.clients.contains_key(&key) {
            return Err(TransactionError::InvalidState);
        }
        let reliable = peer.transport.is_reliable();
        let tx = if is_invite {
            Tx::Ict(ClientInvite::new(request, reliable, self.cfg, now))
        } else {
            Tx::Nict(ClientNonInvite::new(request, reliable, self.cfg, now))
        };
        let id = self.alloc();
        self.clients.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                tx,
                peer,
                key: Key::Client(key),
                armed: None,
                resent: false,
            },
        );
        self.drain(id);
        Ok(id)
    }

    /// Sends a response through server transaction `id`.
    pub fn send_response(
        &mut self,
        id: TxId,
        response: Vec<u8>,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let entry = self
            .entries
            .get_mut(&id)
            .ok_or(TransactionError::NotFound)?;
        match &mut entry.tx {
            Tx::Ist(t) => t.send_response(response, now)?,
            Tx::Nist(t) => t.send_response(response, now)?,
            _ => return Err(TransactionError::WrongMessage),
        }
        self.drain(id);
        Ok(())
    }

    /// The INVITE server transaction a received CANCEL refers to (RFC 3261 9.2).
    pub fn invite_for_cancel(&self, cancel: &Message<'_>) -> Option<TxId> {
        let key = ServerKey::invite_for_cancel(cancel).ok()?;
        self.servers.get(&key).copied()
    }

    /// Forgets transaction `id` at once, without a `Terminated` event (a proxy giving up on
    /// a branch after Timer C, RFC 3261 16.8). Returns false if it was not live.
    pub fn abandon(&mut self, id: TxId) -> bool {
        let Some(entry) = self.entries.remove(&id) else {
            return false;
        };
        match entry.key {
            Key::Server(k) => self.servers.remove(&k),
            Key::Client(k) => self.clients.remove(&k),
        };
        self.prune_stale();
        true
    }

    /// A transport error on client transaction `id` (RFC 3261 8.1.3.1, 18): the connection
    /// its request was written to ended before the request was acknowledged. The first time,
    /// a request nothing has answered yet is queued again, to go out on a fresh connection;
    /// the second time the transaction is removed (without a `Terminated` event) and the TU
    /// fails it at once instead of waiting for timer B / F.
    pub fn transport_error(&mut self, id: TxId) -> TransportErrorOutcome {
        let Some(entry) = self.entries.get_mut(&id) else {
            return TransportErrorOutcome::Ignored;
        };
        let waiting = match &entry.tx {
            Tx::Ict(t) => t.state() == super::ClientInviteState::Calling,
            Tx::Nict(t) => t.state() == super::ClientNonInviteState::Trying,
            Tx::Ist(_) | Tx::Nist(_) => false,
        };
        if !waiting {
            return TransportErrorOutcome::Ignored;
        }
        if entry.resent {
            self.abandon(id);
            return TransportErrorOutcome::Failed;
        }
        entry.resent = true;
        match &mut entry.tx {
            Tx::Ict(t) => t.resend(),
            Tx::Nict(t) => t.resend(),
            Tx::Ist(_) | Tx::Nist(_) => false,
        };
        self.drain(id);
        TransportErrorOutcome::Resent
    }

    /// The peer of transaction `id`.
    pub fn peer(&self, id: TxId) -> Option<Peer> {
        self.entries.get(&id).map(|e| e.peer)
    }

    /// Runs the timers of every transaction due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(entry) = self.entries.get_mut(&id) {
                if entry.armed != Some(at) {
                    continue; // stale: the transaction was re-armed since
                }
                entry.armed = None;
                entry.tx.core().handle_timeout(now);
                self.drain(id);
            }
        }
    }

    /// The earliest deadline of any live transaction.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front().map(|(_, t)| t)
    }

    /// The next message to send with the transaction it belongs to (so the caller can map
    /// it to richer transport state than a [`Peer`]).
    pub fn poll_transmit_with_id(&mut self) -> Option<(TxId, Transmit)> {
        self.transmits.pop_front()
    }

    /// The next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<(TxId, TxEvent)> {
        self.events.pop_front()
    }

    /// Moves a transaction's output into the layer queues, re-arms its deadline and forgets it
    /// once terminated.
    fn drain(&mut self, id: TxId) {
        self.drain_one(id);
        self.prune_stale();
    }

    /// Drops stale heap entries at the top so `poll_timeout` is exact.
    fn prune_stale(&mut self) {
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if self.entries.get(&id).and_then(|e| e.armed) == Some(at) {
                break;
            }
            self.deadlines.pop();
        }
    }

    fn drain_one(&mut self, id: TxId) {
        // One hash of `id`: the entry is read, and removed once terminated, through it.
        let std::collections::hash_map::Entry::Occupied(mut slot) = self.entries.entry(id) else {
            return;
        };
        let entry = slot.get_mut();
        let peer = entry.peer;
        let core = entry.tx.core();
        while let Some(bytes) = core.poll_transmit() {
            self.transmits.push_back((id, Transmit { peer, bytes }));
        }
        while let Some(ev) = core.poll_event() {
            self.events.push_back((id, ev));
        }
        if core.is_terminated() {
            match slot.remove().key {
                Key::Server(k) => self.servers.remove(&k),
                Key::Client(k) => self.clients.remove(&k),
            };
            return;
        }
        let next = core.poll_timeout();
        if next != entry.armed {
            entry.armed = next;
            if let Some(at) = next {
                self.deadlines.push(Reverse((at, id)));
            }
        }
    }
}
