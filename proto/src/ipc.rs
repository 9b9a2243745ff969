//! What workers and the slowpath tell each other: SIP events up, commands and SA sets down.
//!
//! The slowpath is sans-IO; its actions are expressed in these types so the daemon can hand
//! them to the worker that owns the UE (one UE, one worker) without translation.

use std::net::IpAddr;

use crate::suite::Suite;
pub use crate::Transport;

/// One SIP flow between a UE and the P-CSCF, seen from the P-CSCF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The UE's IP address.
    pub ue: IpAddr,
    /// The UE's port.
    pub ue_port: u16,
    /// Our (P-CSCF) address.
    pub local: IpAddr,
    /// Our port (5060, port_ps or port_pc).
    pub local_port: u16,
    /// TCP or UDP.
    pub proto: Transport,
}

/// A SIP message received by a worker, with the transport facts the slowpath needs.
#[derive(Clone, Debug)]
pub struct SipIn {
    /// The flow it arrived on.
    pub flow: Flow,
    /// SPI of the inbound ESP SA it came through, or `None` if it arrived unprotected.
    pub via_spi: Option<u32>,
    /// The complete SIP message (framed by Content-Length on TCP, one datagram on UDP).
    pub bytes: Vec<u8>,
}

/// Events from a worker to the slowpath.
#[derive(Clone, Debug)]
pub enum WorkerEvent {
    /// A complete SIP message.
    Sip(SipIn),
    /// A TCP connection closed (by the UE, reset, or timeout).
    TcpClosed(Flow),
    /// A connection the slowpath asked for could not be opened; the messages queued on it are lost.
    ConnectFailed(Flow),
    /// An established connection ended (reset by the UE, or timed out) while bytes written to
    /// it were not yet acknowledged: the messages among them are lost, a transport error for
    /// their transactions (RFC 3261 8.1.3.1, 18). Reported instead of `TcpClosed`.
    SendLost(Flow),
}

/// The four SAs of one registration attempt (TS 33.203 7.1), P-CSCF view.
#[derive(Clone, Debug)]
pub struct SaSet {
    /// The UE's address.
    pub ue: IpAddr,
    /// Our address the SAs are bound to.
    pub local: IpAddr,
    /// Negotiated algorithms and keys (TS 33.203 Annex I); the same for all four SAs.
    pub suite: Suite,
    /// Inbound SPI at our protected client port (UE port_us -> port_pc).
    pub spi_pc: u32,
    /// Inbound SPI at our protected server port (UE port_uc -> port_ps).
    pub spi_ps: u32,
    /// Outbound SPI towards the UE's protected client port (port_ps -> port_uc).
    pub spi_uc: u32,
    /// Outbound SPI towards the UE's protected server port (port_pc -> port_us).
    pub spi_us: u32,
    /// Our protected client port.
    pub port_pc: u16,
    /// Our protected server port.
    pub port_ps: u16,
    /// The UE's protected client port.
    pub port_uc: u16,
    /// The UE's protected server port.
    pub port_us: u16,
}

/// Commands from the slowpath to the worker that owns a UE.
#[derive(Clone, Debug)]
pub enum WorkerCommand {
    /// Send a SIP message on a flow. For TCP with `connect_if_absent`, open the connection
    /// from `flow.local_port` to `flow.ue_port` first when it does not exist (the P-CSCF's
    /// port_pc -> UE port_us connection), queueing the bytes until it is established. A
    /// response for a protected port_uc -> port_ps connection the UE has closed goes on
    /// port_pc -> port_us instead, opened if needed (RFC 3261 18.2.2).
    Send {
        /// Where to send.
        flow: Flow,
        /// The serialized SIP message.
        bytes: Vec<u8>,
        /// Open the TCP connection if there is none.
        connect_if_absent: bool,
    },
    /// Close a TCP connection (graceful FIN).
    Close(Flow),
    /// Install an SA set: inbound SAs (spi_pc, spi_ps) become valid for this UE, outbound
    /// SAs (spi_uc, spi_us) are used for traffic from port_ps/port_pc to port_uc/port_us.
    InstallSaSet(Box<SaSet>),
    /// Install an SA set restored from the registration store after a restart: as
    /// `InstallSaSet`, but its outbound SAs send only sequence numbers of restart epoch
    /// `seq_epoch` ([`OutboundSeq::of_epoch`]), which no earlier run of the daemon used with
    /// these keys (RFC 4303 3.3.3).
    RestoreSaSet {
        /// The set.
        set: Box<SaSet>,
        /// How many times the set was restored (1 for the first restart).
        seq_epoch: u32,
    },
    /// Remove an SA set (identified by its inbound SPIs) once its last message was sent.
    RemoveSaSet {
        /// The UE.
        ue: IpAddr,
        /// Inbound SPI at port_pc of the set.
        spi_pc: u32,
        /// Inbound SPI at port_ps of the set.
        spi_ps: u32,
    },
}

/// Outbound sequence numbers one run of the daemon may send on an SA set (RFC 4303 3.3.3: a
/// sequence number is never reused with a key). The 32-bit space is cut into
/// [`OutboundSeq::EPOCHS`] blocks of [`OutboundSeq::SPAN`]: a set installed by a registration
/// sends in block 0, a set restored for the `n`th time after a restart in block `n` (the
/// registration store makes `n` durable before the set is installed), so no two runs share a
/// sequence number. A block is 2^26 (67 million) packets per SA, years of SIP signalling; a
/// set that exhausts it stops sending (`SeqExhausted`) and its UE must register again, as
/// at the end of the 32-bit space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundSeq {
    /// The last sequence number counted as sent: the first packet carries `after + 1`.
    pub after: u64,
    /// The largest sequence number the SA may send.
    pub limit: u64,
}

impl OutboundSeq {
    /// Sequence numbers per epoch.
    pub const SPAN: u64 = 1 << 26;
    /// Epochs in the 32-bit space: a set can be restored `EPOCHS - 1` times.
    pub const EPOCHS: u32 = 1 << (32 - 26);

    /// The block of epoch `epoch`, or `None` beyond the last one.
    pub fn of_epoch(epoch: u32) -> Option<Self> {
        if epoch >= Self::EPOCHS {
            return None;
        }
        let after = u64::from(epoch) * Self::SPAN;
        Some(OutboundSeq {
            after,
            // The block's last number stays unused, so the last block ends at 2^32 - 1.
            limit: after + Self::SPAN - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OutboundSeq;

    #[test]
    fn epochs_are_disjoint_and_within_32_bits() {
        let first = OutboundSeq::of_epoch(0).unwrap();
        assert_eq!((first.after, first.limit), (0, (1 << 26) - 1));
        let mut last_limit = 0;
        for e in 0..OutboundSeq::EPOCHS {
            let w = OutboundSeq::of_epoch(e).unwrap();
            assert!(w.after >= last_limit, "epoch {e} overlaps the one before");
            assert!(w.limit <= u64::from(u32::MAX));
            last_limit = w.limit;
        }
        assert_eq!(OutboundSeq::of_epoch(OutboundSeq::EPOCHS), None);
    }
}
