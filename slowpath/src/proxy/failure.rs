//! Failed client transactions: a connection the worker could not open (`ConnectFailed`)
//! fails every request waiting on it at once instead of after timer B / F, a request lost to
//! a reset (`SendLost`) is resent once on a fresh connection and then failed, and the outcome
//! of requests the P-CSCF originated (keep-alive, NOTIFY, BYE) is counted.

use std::time::Instant;

use akagate_proto::ipc::{Flow, Transport, WorkerCommand};

use super::transport::with_via_transport;
use super::Own;
use super::Proxy;
use crate::context::{Cx, TimerKey};
use crate::sip::transaction::{TransportErrorOutcome, TxId};
use crate::sip::{response_to, Message};

impl Proxy {
    /// The worker could not open `flow` (our port_pc to a UE's port_us): the requests queued
    /// on it are lost. RFC 3261 16.9 treats this as a 503 from that branch; 16.7 step 6 says
    /// a proxy should not pass a 503 upstream (it would claim *we* are unavailable), and the
    /// callee is registered but cannot be reached, so the caller gets
    /// `480 Temporarily Unavailable` (RFC 3261 21.4.18). Our own NOTIFY / OPTIONS / BYE on
    /// the flow count as failed.
    pub(crate) fn on_connect_failed(
        &mut self,
        cx: &mut Cx<'_>,
        flow: Flow,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let mut failed = Self::waiting_on(cx, flow);
        failed.retain(|&client| !self.retry_over_udp(cx, client, now, out));
        self.fail_clients(cx, failed, now, out);
    }

    /// RFC 3261 18.1.1: a request that went over TCP to a UE registered over UDP only for its
    /// size, whose connection could not be opened, MAY be retried over UDP. It is when it fits
    /// the path MTU (see [`super::transport::udp_path_max`]): client transaction `client` is
    /// replaced by a UDP one with the same branch (timer A / E retransmit it, timer C keeps its
    /// deadline). Returns whether it took care of `client`; larger requests fail as before.
    fn retry_over_udp(
        &mut self,
        cx: &mut Cx<'_>,
        client: TxId,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) -> bool {
        let Some(link) = self.forwarded.get(&client) else {
            return false;
        };
        let Some(max) = link.udp_fallback else {
            return false;
        };
        let Some(bytes) = with_via_transport(&link.request, "UDP").filter(|b| b.len() <= max)
        else {
            return false;
        };
        let mut link = link.clone();
        let flow = Flow {
            proto: Transport::Udp,
            ..link.flow
        };
        cx.shared.txl.abandon(client);
        self.forget_tx(cx, client);
        let Some(udp) = cx.shared.send_request(bytes.clone(), flow, now, out) else {
            // Not startable (not expected for a request that was sent once): answer for it.
            cx.shared.stats.connect_failures += 1;
            if let Some(server) = link.server {
                self.fail_server(cx, server, 480, "Temporarily Unavailable", now, out);
            }
            return true;
        };
        cx.shared.stats.udp_fallbacks += 1;
        cx.shared.arm(TimerKey::TimerC(udp), None, link.timer_c);
        if let Some(server) = link.server {
            self.forwarded_by_server.insert(server, udp);
        }
        link.request = bytes;
        link.flow = flow;
        link.udp_fallback = None;
        self.forwarded.insert(udp, link);
        true
    }

    /// A connection to a UE ended with requests written to it unacknowledged (`SendLost`: the
    /// UE reset it, e.g. after closing its socket as the request arrived). A transport error
    /// for each of their client transactions (RFC 3261 8.1.3.1, 18): a request nothing has
    /// answered yet is sent once more, which opens a fresh connection from port_pc; lost a
    /// second time it fails at once as in [`Proxy::on_connect_failed`], never by timer B / F.
    pub(crate) fn on_send_lost(
        &mut self,
        cx: &mut Cx<'_>,
        flow: Flow,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let mut failed = Vec::new();
        for client in Self::waiting_on(cx, flow) {
            match cx.shared.txl.transport_error(client) {
                TransportErrorOutcome::Resent => cx.shared.stats.requests_resent += 1,
                TransportErrorOutcome::Failed => failed.push(client),
                TransportErrorOutcome::Ignored => {}
            }
        }
        cx.shared.flush(out);
        self.fail_clients(cx, failed, now, out);
    }

    /// The client transactions whose requests go on `flow` through a connection the worker
    /// opens (our port_pc to a UE's port_us), oldest first.
    fn waiting_on(cx: &Cx<'_>, flow: Flow) -> Vec<TxId> {
        let mut waiting: Vec<TxId> = cx
            .shared
            .txs
            .iter()
            .filter(|(_, info)| info.flow == flow && info.connect_if_absent)
            .map(|(id, _)| *id)
            .collect();
        waiting.sort();
        waiting
    }

    /// Fails client transactions `clients` whose requests could not be delivered: each is
    /// forgotten, the request it forwarded answered 480 (see [`Proxy::on_connect_failed`]).
    fn fail_clients(
        &mut self,
        cx: &mut Cx<'_>,
        clients: Vec<TxId>,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        for client in clients {
            let link = self.forwarded.get(&client).cloned();
            cx.shared.txl.abandon(client);
            self.forget_tx(cx, client);
            cx.shared.stats.connect_failures += 1;
            let Some(link) = link else {
                continue; // a CANCEL of ours: the INVITE it cancels fails with it
            };
            if let Some(own) = &link.own {
                self.own_failed(cx, own, now);
            }
            let Some(server) = link.server else {
                continue;
            };
            if link.invite && link.initial {
                if let Some(cid) = Message::parse(&link.request)
                    .ok()
                    .and_then(|m| m.call_id().ok().map(str::to_string))
                {
                    self.drop_dialog(cx, &cid);
                }
            }
            self.fail_server(cx, server, 480, "Temporarily Unavailable", now, out);
        }
    }

    /// Registration `key` ends: the transactions on its protected flows can no longer be
    /// completed, since its inbound SAs go now (TS 33.203 7.4 / 7.5). Client transactions
    /// towards it (port_pc -> its port_us) and its server transactions (its port_uc ->
    /// port_ps, already answered) are dropped without retransmissions or timeouts, and a
    /// request we forwarded to it is answered 480 to its sender (it would otherwise wait for
    /// timer B / F).
    pub(crate) fn abandon_towards(
        &mut self,
        cx: &mut Cx<'_>,
        key: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let sets = cx.registrar.protected_ports(key);
        if sets.is_empty() {
            return;
        }
        let mut towards: Vec<TxId> = cx
            .shared
            .txs
            .iter()
            .filter(|(_, i)| sets.contains(&(i.flow.ue, i.flow.local_port)))
            .map(|(id, _)| *id)
            .collect();
        towards.sort();
        for client in towards {
            let server = self.forwarded.get(&client).and_then(|f| f.server);
            cx.shared.txl.abandon(client);
            self.forget_tx(cx, client);
            if let Some(server) = server {
                self.fail_server(cx, server, 480, "Temporarily Unavailable", now, out);
            }
        }
    }

    /// Answers server transaction `server` with `code reason`, built from the request it
    /// received (RFC 3261 8.2.6); nothing if it already has a final response.
    pub(crate) fn fail_server(
        &mut self,
        cx: &mut Cx<'_>,
        server: TxId,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<WorkerCommand>,
    ) {
        let Some(request) = cx.shared.txs.get(&server).and_then(|i| i.request.clone()) else {
            return;
        };
        let Ok(msg) = Message::parse(&request) else {
            return;
        };
        let tag = cx.shared.token(8);
        if let Ok(b) = response_to(&msg, code, reason, Some(&tag)) {
            cx.shared.send_response(server, b.build(), now, out);
        }
    }

    /// A final response to a request of our own.
    pub(crate) fn own_final(&mut self, cx: &mut Cx<'_>, own: &Own, code: u16, now: Instant) {
        match own {
            // RFC 3261 11.2: any answer but "timeout" / "unavailable" means reachable.
            Own::KeepAlive { key } => {
                let alive = !matches!(code, 408 | 503);
                self.keepalive_outcome(cx, key, alive, now);
            }
            Own::Notify { key, call_id } => {
                if !(200..300).contains(&code) {
                    cx.shared.stats.notify_failures += 1;
                    // RFC 6665 4.2.2: 481 says the subscriber no longer has the dialog.
                    if code == 481 {
                        self.drop_subscription(key, call_id);
                    }
                }
            }
            Own::Bye => {
                if !(200..300).contains(&code) {
                    cx.shared.stats.bye_failures += 1;
                }
            }
        }
    }

    /// A request of our own got no answer (timer F) or could not be sent.
    pub(crate) fn own_failed(&mut self, cx: &mut Cx<'_>, own: &Own, now: Instant) {
        match own {
            Own::KeepAlive { key } => self.keepalive_outcome(cx, key, false, now),
            Own::Notify { key, call_id } => {
                cx.shared.stats.notify_failures += 1;
                // RFC 6665 4.2.2: a NOTIFY that times out ends the subscription.
                self.drop_subscription(key, call_id);
            }
            Own::Bye => cx.shared.stats.bye_failures += 1,
        }
    }
}
