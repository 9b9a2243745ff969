//! Commands from the slowpath: send (opening port_pc -> port_us when asked), close, and
//! installing or removing a UE's SA set.

use akagate_sys::PortQueue;
use smoltcp::time::Instant;

use super::counters::inc;
use super::{SaSetState, UeTag, Worker};
use crate::ipc::{OutboundSeq, SaSet, Transport, WorkerCommand, WorkerEvent};
use crate::stack::StackError;

/// Commands taken from the channel at once: their UE look-ups and prefetches run ahead
/// of them ([`Worker::run_commands`]).
const COMMAND_BATCH: usize = 8;

/// The UE a command is for.
fn command_ue(cmd: &WorkerCommand) -> std::net::IpAddr {
    match cmd {
        WorkerCommand::Send { flow, .. } | WorkerCommand::Close(flow) => flow.ue,
        WorkerCommand::InstallSaSet(set) | WorkerCommand::RestoreSaSet { set, .. } => set.ue,
        WorkerCommand::RemoveSaSet { ue, .. } => *ue,
    }
}

/// Where a response goes when the UE has closed the TCP connection its request came on
/// (port_uc -> port_ps of a live set): a new connection from our port_pc to the UE's port_us,
/// under the same set's spi_us / spi_pc. RFC 3261 18.2.2 opens it to the sent-by port of the
/// request's Via, which a UE sets to its protected server port (TS 24.229 5.1.1.2, 5.1.2A.1),
/// the port it accepts connections on; port_uc is the client port it connects from and need
/// not listen (TS 33.203 7.1). `None` for anything else (requests, other flows).
fn response_flow_after_close(
    sets: &[SaSetState],
    flow: crate::ipc::Flow,
    bytes: &[u8],
) -> Option<crate::ipc::Flow> {
    if flow.proto != Transport::Tcp || !bytes.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let set = sets
        .iter()
        .filter(|s| s.is_live())
        .find(|s| s.port_ps == flow.local_port && s.port_uc == flow.ue_port)?;
    Some(crate::ipc::Flow {
        ue_port: set.port_us,
        local_port: set.port_pc,
        ..flow
    })
}

impl<Q: PortQueue> Worker<Q> {
    /// Executes up to `commands_per_loop` queued commands; returns how many.
    ///
    /// Commands are taken in batches of up to [`COMMAND_BATCH`]: the batch's UE look-ups
    /// (the map's lines, cold at thousands of UEs) and the found records' prefetches go first,
    /// back to back so their misses overlap, then the commands run in order with the tags
    /// found (each checked against its slot's generation and address before use: a command
    /// earlier in the batch may have removed or created the UE).
    pub(super) fn run_commands(&mut self, now: Instant) -> usize {
        // Most turns find no command: the channel's two indices read inline, not a receive.
        // What commands executed directly (`Worker::command`) reported still goes now.
        if self.commands.is_empty() {
            self.forward_events();
            return 0;
        }
        let mut n = 0;
        while n < self.cfg.commands_per_loop {
            let mut batch: [Option<WorkerCommand>; COMMAND_BATCH] = [const { None }; COMMAND_BATCH];
            let mut tags = [None; COMMAND_BATCH];
            let mut k = 0;
            while k < COMMAND_BATCH && n + k < self.cfg.commands_per_loop {
                let Ok(cmd) = self.commands.try_recv() else {
                    break;
                };
                let tag = self.ues.find(&command_ue(&cmd));
                if let Some(u) = tag.and_then(|t| self.ues.at(t)) {
                    u.prefetch();
                }
                (batch[k], tags[k]) = (Some(cmd), tag);
                k += 1;
            }
            if k == 0 {
                break;
            }
            n += k;
            for (cmd, tag) in batch.iter_mut().zip(tags).take(k) {
                if let Some(cmd) = cmd.take() {
                    inc(&self.counters.commands);
                    self.command_at(cmd, tag, now);
                }
            }
            if k < COMMAND_BATCH {
                break;
            }
        }
        self.forward_events();
        n
    }

    /// Executes one command (also usable directly by tests and the daemon).
    pub fn command(&mut self, cmd: WorkerCommand, now: Instant) {
        self.command_at(cmd, None, now);
    }

    /// [`Worker::command`] with `hint`, the tag its UE had when the command was taken (a look-up
    /// done ahead; `None`: none found or none done). The hint is used only if its slot still
    /// holds a UE at the command's address.
    fn command_at(&mut self, cmd: WorkerCommand, hint: Option<UeTag>, now: Instant) {
        use super::phases::{self, Phase};
        let t0 = phases::stamp();
        let phase = match &cmd {
            WorkerCommand::Send { .. } => Phase::CmdSend,
            WorkerCommand::InstallSaSet(_) | WorkerCommand::RestoreSaSet { .. } => {
                Phase::CmdInstall
            }
            WorkerCommand::Close(_) | WorkerCommand::RemoveSaSet { .. } => Phase::CmdOther,
        };
        // An install registers the UE, a send that made the UE adds one unregistered, a close
        // or removal may change its connections: the SIP port's limits count them at once,
        // on the record the command found. A send to a UE that was there changes no count
        // (it opens only outgoing connections, which the limits do not count).
        if let Some(ue) = self
            .execute(cmd, hint, now)
            .and_then(|tag| self.ues.at_mut(tag))
        {
            self.sip_use.recount(ue, self.cfg.sip_port);
        }
        phases::note(phase, t0);
    }

    /// Carries out `cmd` (`hint`: see [`Worker::command_at`]); returns the UE whose use of the
    /// SIP port may have changed (`None`: none).
    fn execute(&mut self, cmd: WorkerCommand, hint: Option<UeTag>, now: Instant) -> Option<UeTag> {
        match cmd {
            WorkerCommand::Send {
                flow,
                bytes,
                connect_if_absent,
            } => {
                let create = connect_if_absent || flow.proto == Transport::Udp;
                let before = self.ues.len();
                let Some(ue) = super::ue_entry_in(
                    &mut self.ues,
                    &self.cfg,
                    &self.counters,
                    flow.ue,
                    flow.local,
                    hint,
                    create,
                    now,
                ) else {
                    self.stack_events.push(WorkerEvent::ConnectFailed(flow));
                    return None;
                };
                let mut sent = ue.stack.send(flow, &bytes, connect_if_absent);
                if sent == Err(StackError::NoConnection) {
                    if let Some(to_us) = response_flow_after_close(&ue.sa_sets, flow, &bytes) {
                        sent = ue.stack.send(to_us, &bytes, true);
                    }
                }
                match sent {
                    Ok(()) => {}
                    Err(e) => {
                        inc(&self.counters.drop_send_failed);
                        if e == StackError::UdpTooLarge {
                            inc(&self.counters.drop_udp_too_large);
                        }
                        if matches!(
                            e,
                            StackError::NoConnection
                                | StackError::ConnLimit
                                | StackError::ConnectRefused
                        ) {
                            self.stack_events.push(WorkerEvent::ConnectFailed(flow));
                        }
                    }
                }
                super::wake_ue(&mut self.woken, ue);
                let tag = ue.tag;
                // Only a UE this made has a use to count (its one unregistered).
                (before != self.ues.len()).then_some(tag)
            }
            WorkerCommand::Close(flow) => {
                let ue = self.ues.hinted_mut(hint, flow.ue)?;
                let _ = ue.stack.close(flow);
                super::wake_ue(&mut self.woken, ue);
                Some(ue.tag)
            }
            // A registration's set sends in epoch 0; a restored one in its restart epoch,
            // whose numbers no earlier run sent (RFC 4303 3.3.3; `OutboundSeq`).
            WorkerCommand::InstallSaSet(set) => {
                self.install(&set, OutboundSeq::of_epoch(0), hint, now)
            }
            WorkerCommand::RestoreSaSet { set, seq_epoch } => {
                self.install(&set, OutboundSeq::of_epoch(seq_epoch), hint, now)
            }
            WorkerCommand::RemoveSaSet { ue, spi_pc, spi_ps } => {
                self.remove_set(ue, spi_pc, spi_ps, hint, now)
            }
        }
    }

    /// `InstallSaSet`: builds the set's SAs, creates the UE's stack if needed and puts the
    /// inbound SAs into the table. A UE this created is freed again if the table refuses an
    /// SPI (nothing else holds it then).
    /// `seq` bounds the outbound sequence numbers (`None`: the set may not send, refused).
    /// Returns the UE that holds the set (`None`: refused, and no UE was left).
    fn install(
        &mut self,
        set: &SaSet,
        seq: Option<OutboundSeq>,
        hint: Option<UeTag>,
        now: Instant,
    ) -> Option<UeTag> {
        if !self.link.l2.is_local(set.local) {
            inc(&self.counters.drop_sa_install);
            return None;
        }
        let Some(seq) = seq else {
            inc(&self.counters.drop_sa_install);
            return None;
        };
        let table = self.table.clone();
        // One look-up (none with a good hint): the tag takes `ue_entry_in` past the map.
        let existed = match hint {
            Some(t) if self.ues.at_of(t, set.ue).is_some() => Some(t),
            _ => self.ues.find(&set.ue),
        };
        let Some(owner) = super::ue_entry_in(
            &mut self.ues,
            &self.cfg,
            &self.counters,
            set.ue,
            set.local,
            existed,
            true,
            now,
        )
        .map(|u| u.tag) else {
            inc(&self.counters.drop_sa_install);
            return existed;
        };
        let existed = existed.is_some();
        let Ok((state, ps, pc)) = SaSetState::build(set, seq, self.cfg.id, &mut self.link.sas)
        else {
            inc(&self.counters.drop_sa_install);
            return self.forget_new_ue(owner, existed);
        };
        // The entries name the UE's record: its ESP packets reach it without the UE map.
        let (ps, pc) = (ps.owned_by(owner), pc.owned_by(owner));
        let installed = match table.install(set.spi_ps, ps) {
            Ok(()) if table.install(set.spi_pc, pc).is_ok() => true,
            Ok(()) => {
                let _ = table.remove(set.spi_ps);
                false
            }
            Err(_) => false,
        };
        if !installed {
            inc(&self.counters.drop_sa_install);
            state.release(&mut self.link.sas);
            return self.forget_new_ue(owner, existed);
        }
        let Some(ue) = self.ues.at_mut(owner) else {
            // Created or found above; nothing between could remove it.
            state.release(&mut self.link.sas);
            return None;
        };
        // TS 33.203 7.1: TCP and UDP at port_ps; at port_pc only UDP is received unsolicited,
        // TCP there belongs to connections we open.
        ue.stack.listen(set.port_ps, true, true);
        ue.stack.listen(set.port_pc, false, true);
        // A UE's first set is inline in its record; a re-registration's second moves them
        // to the heap.
        ue.sa_sets.insert(0, state);
        super::wake_ue(&mut self.woken, ue);
        Some(owner)
    }

    /// Frees the stack of `ue` again after a failed install created it (`existed`: it was
    /// there before, and stays); returns the UE left (`ue` if it existed).
    fn forget_new_ue(&mut self, ue: UeTag, existed: bool) -> Option<UeTag> {
        if existed {
            return Some(ue);
        }
        if let Some(u) = self.ues.remove_at(ue) {
            self.sip_use.sub(u.sip_use);
        }
        inc(&self.counters.ues_freed);
        None
    }

    /// `RemoveSaSet` (TS 33.203 7.4 / 7.5): the SPIs leave the table at once (the slowpath has
    /// released them already; removed here too for callers that did not), the set drains. It
    /// stays behind the live sets, so its outbound SAs only carry what no live set protects:
    /// the bytes queued before this command (the 200 OK to a de-REGISTER leaves through the
    /// SAs it de-registers) and their retransmissions; its inbound SAs, reached through the set
    /// rather than the table, take the UE's ACKs of them. It goes after the poll at which
    /// nothing is queued on its flows, or at [`super::SA_DRAIN_LIMIT`], taking its flows with
    /// it (see `Worker::finish_drains`).
    /// Returns the UE, if it has one.
    fn remove_set(
        &mut self,
        ue_ip: std::net::IpAddr,
        spi_pc: u32,
        spi_ps: u32,
        hint: Option<UeTag>,
        now: Instant,
    ) -> Option<UeTag> {
        let ue = self.ues.hinted_mut(hint, ue_ip)?;
        let Some(i) = ue
            .sa_sets
            .iter()
            .position(|s| s.spi_pc == spi_pc && s.spi_ps == spi_ps && s.is_live())
        else {
            return Some(ue.tag);
        };
        let mut set = ue.sa_sets.remove(i);
        let _ = self.table.remove(spi_ps);
        let _ = self.table.remove(spi_pc);
        // The listeners stay until the drain ends: unlistening would drop the UDP socket with
        // the datagrams queued before this command. Nothing new arrives on them meanwhile
        // (clear packets to protected ports are refused and the inbound SAs are gone).
        set.drain_until = Some(now + super::SA_DRAIN_LIMIT);
        // After the live sets, before older draining ones: egress takes the first match.
        let at = ue.sa_sets.iter().take_while(|s| s.is_live()).count();
        ue.sa_sets.insert(at, set);
        super::wake_ue(&mut self.woken, ue);
        Some(ue.tag)
    }
}
