//! Building a registration's SA set for a challenge (TS 33.203 7.1): our two inbound SPIs
//! from the SA table, the suite from CK/IK, our ports and the UE's, and the Security-Server
//! that announces it. Used by the embedded registrar's challenges and by the proxy-mode
//! relay of the S-CSCF's 401.

use akagate_proto::ipc::{Flow, SaSet};

use crate::aka::{derive_suite, Ck, Ik};
use crate::context::Shared;
use crate::registrar::unprotected_suite;
use crate::secagree::{ChosenMechanism, SecMechanism};

/// Why no set could be made: the status the REGISTER gets.
pub(crate) struct NoSet {
    /// SIP status code (500 or 503).
    pub code: u16,
    /// Reason phrase.
    pub reason: &'static str,
}

/// A new SA set for `chosen` (`None`: flow-bound, no sec-agree) on the UE's `flow`, with
/// its Security-Server. SPIs are allocated here; the caller releases them if the set is
/// not used.
pub(crate) fn new_sa_set(
    shared: &mut Shared,
    flow: Flow,
    chosen: Option<&ChosenMechanism>,
    ck: &Ck,
    ik: &Ik,
) -> Result<(SaSet, Option<SecMechanism>), NoSet> {
    let suite = match chosen {
        Some(c) => derive_suite(c.auth, c.encr, ck, ik),
        None => Ok(unprotected_suite()),
    };
    let Ok(suite) = suite else {
        return Err(NoSet {
            code: 500,
            reason: "Server Internal Error",
        });
    };
    let (spi_pc, spi_ps) = match (shared.spis.allocate(), shared.spis.allocate()) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            for s in [a, b].into_iter().flatten() {
                let _ = shared.spis.release(s);
            }
            return Err(NoSet {
                code: 503,
                reason: "Service Unavailable",
            });
        }
    };
    let (port_pc, port_ps) = match chosen {
        Some(_) => (
            shared.cfg.profile.protected_client_port,
            shared.cfg.profile.protected_server_port,
        ),
        // Flow-bound: our side of the flow is both "ports"; the UE's port is both of its.
        None => (flow.local_port, flow.local_port),
    };
    let (spi_uc, spi_us, port_uc, port_us) = match chosen {
        Some(c) => (c.spi_uc, c.spi_us, c.port_uc, c.port_us),
        None => (0, 0, flow.ue_port, flow.ue_port),
    };
    let set = SaSet {
        ue: flow.ue,
        local: flow.local,
        suite,
        spi_pc,
        spi_ps,
        spi_uc,
        spi_us,
        port_pc,
        port_ps,
        port_uc,
        port_us,
    };
    let server = chosen.map(|c| c.security_server(spi_pc, spi_ps, port_pc, port_ps));
    Ok((set, server))
}
