//! Commands held until the SQN they depend on is durable (TS 33.102 6.3.2: a restart never
//! reuses an SQN that left in a challenge). A 401 carries an SQN in its AUTN, so its `Send`
//! (and whatever the same challenge queued after it) waits here for
//! [`Core::on_durable`](crate::Core::on_durable); so does every retransmission of it by its
//! server transaction. The SA install goes out at once: it carries no SQN, and the worker
//! must have it before the 401 anyway (TS 33.203 7.1).

use akagate_proto::hash::KeyedMap;
use akagate_proto::ipc::WorkerCommand;
use std::collections::VecDeque;

use crate::hss::PersistTicket;
use crate::sip::transaction::TxId;

/// One command waiting for durability.
#[derive(Debug)]
struct HeldCommand {
    /// Every record up to this ticket must be durable before it leaves.
    ticket: PersistTicket,
    action: WorkerCommand,
    /// It carries the challenge (the 401 itself), as opposed to what followed it.
    challenge: bool,
}

/// What a failed write leaves to send: the commands that carry no SQN, and how many
/// challenges were dropped instead (the UE retries, or retransmits its REGISTER and gets the
/// 401 once a later write succeeded).
#[derive(Debug, Default)]
pub struct Withheld {
    /// The held commands that carry no challenge, in order.
    pub actions: Vec<WorkerCommand>,
    /// The 401s dropped.
    pub challenges: usize,
}

/// The commands held for durability and the transactions whose sends must wait.
#[derive(Debug, Default)]
pub(crate) struct Held {
    queue: VecDeque<HeldCommand>,
    /// Server transactions whose every send waits for a ticket (their response is a 401).
    awaiting: KeyedMap<TxId, PersistTicket>,
    /// Every record up to this ticket was reported durable.
    durable: Option<PersistTicket>,
    /// The records up to this ticket could not be made durable (their 401s were dropped).
    failed: Option<PersistTicket>,
}

impl Held {
    /// Holds `action` until `ticket` is durable; `challenge`: it carries the SQN.
    pub fn hold(&mut self, ticket: PersistTicket, action: WorkerCommand, challenge: bool) {
        self.queue.push_back(HeldCommand {
            ticket,
            action,
            challenge,
        });
    }

    /// Every send of transaction `tx` waits for `ticket` from now on.
    pub fn wait_for(&mut self, tx: TxId, ticket: PersistTicket) {
        self.awaiting.insert(tx, ticket);
    }

    /// The ticket transaction `tx`'s sends wait for, if they wait.
    pub fn ticket_of(&self, tx: TxId) -> Option<PersistTicket> {
        self.awaiting.get(&tx).copied()
    }

    /// Whether every record up to `ticket` was reported durable (a challenge reusing its
    /// vector may then leave at once).
    pub fn is_durable(&self, ticket: PersistTicket) -> bool {
        self.durable.is_some_and(|d| d >= ticket)
    }

    /// Whether the record of `ticket` could not be made durable and still is not: its
    /// vector must not be sent again (a new challenge asks for a fresh one, which fails
    /// until the state is durable again).
    pub fn is_withheld(&self, ticket: PersistTicket) -> bool {
        self.failed.is_some_and(|f| f >= ticket) && !self.is_durable(ticket)
    }

    /// Everything up to `ticket` is durable: the commands waiting for it, in order.
    pub fn release(&mut self, ticket: PersistTicket) -> Vec<WorkerCommand> {
        self.durable = self.durable.max(Some(ticket));
        self.awaiting.retain(|_, t| *t > ticket);
        self.take(ticket).into_iter().map(|h| h.action).collect()
    }

    /// Nothing up to `ticket` could be made durable: the challenges waiting for it are
    /// dropped, the rest is returned. Their transactions keep waiting, so a retransmitted
    /// 401 leaves only after a later write succeeded.
    pub fn withhold(&mut self, ticket: PersistTicket) -> Withheld {
        self.failed = self.failed.max(Some(ticket));
        let mut w = Withheld::default();
        for h in self.take(ticket) {
            if h.challenge {
                w.challenges += 1;
            } else {
                w.actions.push(h.action);
            }
        }
        w
    }

    /// Number of commands held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Removes the commands waiting for tickets up to `ticket`, in order.
    fn take(&mut self, ticket: PersistTicket) -> VecDeque<HeldCommand> {
        let (due, rest) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|h| h.ticket <= ticket);
        self.queue = rest;
        due
    }
}
