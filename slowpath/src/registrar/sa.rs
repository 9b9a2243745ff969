//! SA-set helpers: membership of an inbound SPI, the flows of a set, and the remove command.

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand};

/// Convenience methods on [`SaSet`].
pub(crate) trait SaSetExt {
    /// Whether `spi` is one of the set's inbound SPIs.
    fn has_spi(&self, spi: u32) -> bool;
    /// The flow of P-CSCF-originated requests: port_pc -> UE port_us (TS 33.203 7.1).
    fn client_flow(&self, proto: Transport) -> Flow;
    /// The command removing this set.
    fn remove_cmd(&self) -> WorkerCommand;
}

impl SaSetExt for SaSet {
    fn has_spi(&self, spi: u32) -> bool {
        self.spi_pc == spi || self.spi_ps == spi
    }

    fn client_flow(&self, proto: Transport) -> Flow {
        Flow {
            ue: self.ue,
            ue_port: self.port_us,
            local: self.local,
            local_port: self.port_pc,
            proto,
        }
    }

    fn remove_cmd(&self) -> WorkerCommand {
        WorkerCommand::RemoveSaSet {
            ue: self.ue,
            spi_pc: self.spi_pc,
            spi_ps: self.spi_ps,
        }
    }
}
