//! Commands from the slowpath: send (opening port_pc -> port_us when asked), close, and
//! installing or removing a UE's SA set.

use akagate_sys::PortQueue;
use smoltcp::time::Instant;

use super::counters::inc;
use super::{SaSetState, UeTag, Worker};
use crate::ipc::{OutboundSeq, SaSet, Transport, WorkerCommand, WorkerEvent};
use crate::stack::StackError;

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
    pub(super) fn run_commands(&mut self, now: Instant) -> usize {
        // Most turns find no command: the channel's two indices read inline, not a receive.
        // What commands executed directly (`Worker::command`) reported still goes now.
        if self.commands.is_empty() {
            self.forward_events();
            return 0;
        }
        let mut n = 0;
        while n < self.cfg.commands_per_loop {
            let Ok(cmd) = self.commands.try_recv() else {
                break;
            };
            n += 1;
            inc(&self.counters.commands);
            self.command(cmd, now);
        }
        self.forward_events();
        n
    }

    /// Executes one command (also usable directly by tests and the daemon).
    pub fn command(&mut self, cmd: WorkerCommand, now: Instant) {
        use super::phases::{self, Phase};
        let t0 = phases::stamp();
        let phase = match &cmd {
            WorkerCommand::Send { .. } => Phase::CmdSend,
            WorkerCommand::InstallSaSet(_) | WorkerCommand::RestoreSaSet { .. } => {
                Phase::CmdInstall
            }
            WorkerCommand::Close(_) | WorkerCommand::RemoveSaSet { .. } => Phase::CmdOther,
        };
        // A send may open a connection, an install registers the UE: the SIP port's limits
        // count them at once, on the record the command found (one map look-up a command).
        if let Some(ue) = self.execute(cmd, now).and_then(|tag| self.ues.at_mut(tag)) {
            self.sip_use.recount(ue, self.cfg.sip_port);
        }
        phases::note(phase, t0);
    }

    /// Carries out `cmd`; returns the UE it found or made (`None`: none).
    fn execute(&mut self, cmd: WorkerCommand, now: Instant) -> Option<UeTag> {
        match cmd {
            WorkerCommand::Send {
                flow,
                bytes,
                connect_if_absent,
            } => {
                let create = connect_if_absent || flow.proto == Transport::Udp;
                let Some(ue) = super::ue_entry_in(
                    &mut self.ues,
                    &self.cfg,
                    &self.counters,
                    flow.ue,
                    flow.local,
                    None,
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
                Some(ue.tag)
            }
            WorkerCommand::Close(flow) => {
                let ue = self.ues.get_mut(&flow.ue)?;
                let _ = ue.stack.close(flow);
                super::wake_ue(&mut self.woken, ue);
                Some(ue.tag)
            }
            // A registration's set sends in epoch 0; a restored one in its restart epoch,
            // whose numbers no earlier run sent (RFC 4303 3.3.3; `OutboundSeq`).
            WorkerCommand::InstallSaSet(set) => self.install(&set, OutboundSeq::of_epoch(0), now),
            WorkerCommand::RestoreSaSet { set, seq_epoch } => {
                self.install(&set, OutboundSeq::of_epoch(seq_epoch), now)
            }
            WorkerCommand::RemoveSaSet { ue, spi_pc, spi_ps } => {
                self.remove_set(ue, spi_pc, spi_ps, now)
            }
        }
    }

    /// `InstallSaSet`: builds the set's SAs, creates the UE's stack if needed and puts the
    /// inbound SAs into the table. A UE this created is freed again if the table refuses an
    /// SPI (nothing else holds it then).
    /// `seq` bounds the outbound sequence numbers (`None`: the set may not send, refused).
    /// Returns the UE that holds the set (`None`: refused, and no UE was left).
    fn install(&mut self, set: &SaSet, seq: Option<OutboundSeq>, now: Instant) -> Option<UeTag> {
        if !self.link.l2.is_local(set.local) {
            inc(&self.counters.drop_sa_install);
            return None;
        }
        let Some(seq) = seq else {
            inc(&self.counters.drop_sa_install);
            return None;
        };
        let table = self.table.clone();
        // One look-up: the tag it finds takes `ue_entry_in` past the map.
        let existed = self.ues.find(&set.ue);
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
        now: Instant,
    ) -> Option<UeTag> {
        let ue = self.ues.get_mut(&ue_ip)?;
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
