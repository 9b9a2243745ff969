//! What every part of the core uses: the configuration, the RFC 3261 17 transaction layer
//! and the transport state of each transaction, the timer set, the random source for tags
//! and branches, the SA table's SPI allocator, the counters and the commands held for SQN
//! durability. The REGISTER procedure and the proxy reach it through [`Cx`](super::Cx).

use akagate_proto::hash::{keyed_map, KeyedMap};
use std::sync::Arc;
use std::time::Instant;

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand};
use akagate_proto::spi::SpiAllocator;
use rand::RngCore;

use super::durability::Held;
use super::timers::TimerSet;
use super::{peer_of, Admission, CoreConfig, CoreStats, DecoyLedger, Req, TimerKey, TxInfo};
use crate::registrar::SaSetExt;
use crate::sip::builder::response_tagged;
use crate::sip::transaction::{TransactionLayer, TxId};
use crate::sip::MessageBuilder;
use crate::upstream::HopHealth;

/// The core's shared machinery (see the module documentation).
pub(crate) struct Shared {
    pub cfg: CoreConfig,
    pub spis: Arc<dyn SpiAllocator>,
    pub rng: Box<dyn RngCore + Send>,
    /// Every server and client transaction (RFC 3261 17).
    pub txl: TransactionLayer,
    /// Transport state of each live transaction.
    pub txs: KeyedMap<TxId, TxInfo>,
    /// Registration, keep-alive, Timer C and 2xx-relay deadlines, earliest first.
    pub timers: TimerSet,
    /// Makes every branch we create unique even with a poor random source.
    pub branch_seq: u64,
    pub stats: CoreStats,
    /// Challenges (and what followed them) waiting for their SQN to be durable.
    pub held: Held,
    /// The rate of unauthenticated REGISTERs in the current second.
    pub admission: Admission,
    /// Outstanding decoy challenges of unknown IMPIs (counted like real ones).
    pub decoys: DecoyLedger,
    /// Proxy mode: the core next hops seen failing, avoided for a while.
    pub hops: HopHealth,
}

impl Shared {
    /// The shared machinery of a new core.
    pub fn new(cfg: CoreConfig, spis: Arc<dyn SpiAllocator>, rng: Box<dyn RngCore + Send>) -> Self {
        let txl = TransactionLayer::new(cfg.timers);
        Shared {
            cfg,
            spis,
            rng,
            txl,
            txs: keyed_map(),
            timers: TimerSet::default(),
            branch_seq: 0,
            stats: CoreStats::default(),
            held: Held::default(),
            admission: Admission::default(),
            decoys: DecoyLedger::default(),
            hops: HopHealth::default(),
        }
    }

    /// Moves everything the transaction layer wants to send into `out`, in order; a 401
    /// whose SQN is not durable yet (or its retransmission) is held instead.
    pub(crate) fn flush(&mut self, out: &mut Vec<WorkerCommand>) {
        while let Some((id, t)) = self.txl.poll_transmit_with_id() {
            let Some(info) = self.txs.get(&id) else {
                tracing::warn!("transmit for unknown transaction {id:?} dropped");
                continue;
            };
            let send = WorkerCommand::Send {
                flow: info.flow,
                bytes: t.bytes,
                connect_if_absent: info.connect_if_absent,
            };
            match self.held.ticket_of(id) {
                Some(ticket) => self.held.hold(ticket, send, true),
                None => out.push(send),
            }
        }
    }

    /// Sends `response` through server transaction `tx`.
    pub(crate) fn send_response(
        &mut self,
        tx: TxId,
        response: Vec<u8>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        if let Err(e) = self.txl.send_response(tx, response, now) {
            tracing::debug!("response on {tx:?} not sent: {e}");
        }
        self.flush(out);
    }

    /// Answers `req` with `code reason` plus `extra` headers (RFC 3261 8.2.6).
    pub(crate) fn respond(
        &mut self,
        req: &Req<'_, '_>,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        self.respond_with(req, code, reason, now, out, |b| {
            for (n, v) in extra {
                b.push_header(n, v);
            }
        });
    }

    /// [`Shared::respond`] with the extra headers written by `headers` straight into the
    /// response (no intermediate strings).
    pub(crate) fn respond_with(
        &mut self,
        req: &Req<'_, '_>,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
        headers: impl FnOnce(&mut MessageBuilder),
    ) {
        let tag = self.tag();
        let mut b = match response_tagged(req.msg, code, reason, tag.as_bytes()) {
            Ok(b) => b,
            Err(e) => return tracing::debug!("cannot answer {code}: {e}"),
        };
        headers(&mut b);
        self.send_response(req.tx, b.build(), now, out);
    }

    /// Starts a client transaction for `request` on `flow` and sends it.
    pub(crate) fn send_request(
        &mut self,
        request: Vec<u8>,
        flow: Flow,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> Option<TxId> {
        let id = match self.txl.send_request(request, peer_of(flow), now) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!("request to {} not sent: {e}", flow.ue);
                return None;
            }
        };
        self.txs.insert(
            id,
            TxInfo {
                flow,
                connect_if_absent: flow.proto == Transport::Tcp,
                request: None,
            },
        );
        self.flush(out);
        Some(id)
    }

    /// Sends bytes outside any transaction (ACK for a 2xx, relayed 2xx retransmissions).
    pub(crate) fn send_direct(
        out: &mut Vec<WorkerCommand>,
        flow: Flow,
        bytes: Vec<u8>,
        connect: bool,
    ) {
        out.push(WorkerCommand::Send {
            flow,
            bytes,
            connect_if_absent: connect && flow.proto == Transport::Tcp,
        });
    }

    /// Arms `key`'s timer at `at`, replacing `previous`.
    pub(crate) fn arm(&mut self, key: TimerKey, previous: Option<Instant>, at: Option<Instant>) {
        self.timers.arm(key, previous, at);
    }

    /// Takes every timer due at `now`, earliest first.
    pub(crate) fn due_timers(&mut self, now: Instant) -> Vec<(Instant, TimerKey)> {
        let mut due = Vec::new();
        while let Some(t) = self.timers.pop_due(now) {
            due.push(t);
        }
        due
    }

    /// A random lower-case hex token of `n` bytes (tags, branches).
    pub(crate) fn token(&mut self, n: usize) -> String {
        // Tags and branches take 8 bytes: drawn into the stack (one `fill_bytes`, as before:
        // the same random stream) and written as hex at once.
        let mut stack = [0u8; 16];
        let mut heap = Vec::new();
        let b = match stack.get_mut(..n) {
            Some(b) => b,
            None => {
                heap.resize(n, 0);
                &mut heap[..]
            }
        };
        self.rng.fill_bytes(b);
        lower_hex(b)
    }

    /// A random To tag: what [`Shared::token`]`(8)` draws and writes, kept on the stack (one
    /// allocation less per response).
    pub(crate) fn tag(&mut self) -> Tag {
        let mut raw = [0u8; 8];
        self.rng.fill_bytes(&mut raw);
        let mut hex = [0u8; 16];
        for (pair, &x) in hex.chunks_exact_mut(2).zip(&raw) {
            pair[0] = HEX_DIGITS[usize::from(x >> 4)];
            pair[1] = HEX_DIGITS[usize::from(x & 15)];
        }
        Tag(hex)
    }

    /// A new RFC 3261 branch (magic cookie, random part, per-core sequence number).
    pub(crate) fn branch(&mut self) -> String {
        self.branch_seq += 1;
        let token = self.token(8);
        match self.cfg.shard {
            // The shard that owns the transaction reads its answers back (proto::shard).
            Some(shard) => format!(
                "{}{token}{:x}",
                akagate_proto::shard::branch_prefix(shard),
                self.branch_seq
            ),
            None => format!("z9hG4bK{token}{:x}", self.branch_seq),
        }
    }

    /// With shards, the URI parameter naming this shard (`;agshard=<hh>`) that goes into
    /// every URI of ours a peer sends requests to — Record-Route, Path, a SUBSCRIBE's Contact
    /// — so those requests reach the shard that owns their dialog or registration (RFC 3261
    /// 16.6 step 4, RFC 3327 5.3, docs/ARCHITECTURE.md "Slowpath shards"); empty otherwise.
    pub(crate) fn shard_param(&self) -> String {
        self.cfg
            .shard
            .map_or(String::new(), akagate_proto::shard::rr_param)
    }

    /// Removes a set the registrar let go of: the worker command (after anything already
    /// queued; none for a flow-bound set, which was never installed) and its inbound SPIs.
    pub(crate) fn remove_set(&mut self, set: &SaSet, out: &mut Vec<WorkerCommand>) {
        if !set.is_unprotected() {
            out.push(set.remove_cmd());
        }
        self.release_spis(set);
    }

    /// Frees a set's inbound SPIs.
    pub(crate) fn release_spis(&mut self, set: &SaSet) {
        for spi in [set.spi_pc, set.spi_ps] {
            if let Err(e) = self.spis.release(spi) {
                tracing::warn!("releasing SPI {spi}: {e}");
            }
        }
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lower-case hex, written at once (what `hex::encode` gives, without its
/// character-by-character collect).
fn lower_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for &x in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(x >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(x & 15)]));
    }
    out
}

/// A To tag of 16 lower-case hex digits ([`Shared::tag`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tag([u8; 16]);

impl Tag {
    /// The tag as text.
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        // Only hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The tag's bytes (hex digits; no UTF-8 check).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_hex_is_hex_encode() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::lower_hex(&all), hex::encode(&all));
        assert_eq!(super::lower_hex(&[]), "");
    }

    #[test]
    fn tag_is_the_token_of_the_same_draw() {
        use super::Shared;
        use rand::SeedableRng;
        struct NoSpis;
        impl akagate_proto::spi::SpiAllocator for NoSpis {
            fn allocate(&self) -> Result<u32, akagate_proto::spi::SadError> {
                Err(akagate_proto::spi::SadError::Exhausted { capacity: 0 })
            }
            fn release(&self, _: u32) -> Result<(), akagate_proto::spi::SadError> {
                Ok(())
            }
        }
        let new = || {
            Shared::new(
                crate::CoreConfig::default(),
                std::sync::Arc::new(NoSpis),
                Box::new(rand::rngs::StdRng::seed_from_u64(7)),
            )
        };
        let (mut a, mut b) = (new(), new());
        for _ in 0..4 {
            let t = a.tag();
            assert_eq!(t.as_str(), b.token(8));
            assert_eq!(t.as_str().len(), 16);
        }
    }
}
