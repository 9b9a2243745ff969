//! sec-agree (RFC 3329, TS 33.203 7.2, TS 24.229 7.2A.7): `Security-Client`/`-Server`/`-Verify`
//! headers, the P-CSCF's IMS-AKA profile, and the choice of one `ipsec-3gpp` mechanism.

mod choose;
mod mechanism;
mod profile;
mod spans;

pub use choose::{
    choose, tls_security_server, Chooser, ChosenMechanism, IPSEC_3GPP, TLS_MECHANISM,
};
pub use mechanism::{
    each_security_view, equivalent, parse_security_header, render_security_header,
    security_header_views, Mechanism, MechanismView, SecAgreeError, SecMechanism,
};
pub use profile::ImsAkaProfile;
