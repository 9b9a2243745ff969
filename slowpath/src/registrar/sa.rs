//! SA-set helpers: membership of an inbound SPI, the flows of a set, and the remove command;
//! and the *flow-bound* set of a UE registered without sec-agree.

use akagate_proto::ipc::{Flow, SaSet, Transport, WorkerCommand};
use akagate_proto::suite::{AuthAlg, EncrAlg, SaKeys, Suite};

/// The suite of a flow-bound set (a registration without sec-agree, `sec-agree-required =
/// false`): no SAs exist. `alg=null` with `ealg=null` is never negotiated (sec-agree refuses
/// `alg=null` without aes-gcm), so it marks such a set unambiguously.
pub(crate) fn unprotected_suite() -> Suite {
    Suite {
        auth: AuthAlg::Null,
        encr: EncrAlg::Null,
        keys: SaKeys {
            integ_key: Vec::new(),
            encr_key: Vec::new(),
            salt: [0; 4],
        },
    }
}

/// Convenience methods on [`SaSet`].
pub(crate) trait SaSetExt {
    /// Whether `spi` is one of the set's inbound SPIs.
    fn has_spi(&self, spi: u32) -> bool;
    /// The flow of P-CSCF-originated requests: port_pc -> UE port_us (TS 33.203 7.1).
    fn client_flow(&self, proto: Transport) -> Flow;
    /// The command removing this set.
    fn remove_cmd(&self) -> WorkerCommand;
    /// Whether this is a flow-bound set (no SAs, never installed; see [`unprotected_suite`]).
    fn is_unprotected(&self) -> bool;
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

    fn is_unprotected(&self) -> bool {
        self.suite.auth == AuthAlg::Null && self.suite.encr == EncrAlg::Null
    }

    fn remove_cmd(&self) -> WorkerCommand {
        WorkerCommand::RemoveSaSet {
            ue: self.ue,
            spi_pc: self.spi_pc,
            spi_ps: self.spi_ps,
        }
    }
}
