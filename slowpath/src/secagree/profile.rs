//! The P-CSCF's IMS-AKA profile: protected ports and the allowed ESP algorithms, in preference order.

use akagate_proto::suite::{AuthAlg, EncrAlg};

/// sec-agree configuration of the P-CSCF (mirrors the daemon's `ims-aka-profile`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImsAkaProfile {
    /// Our protected client port (`port_pc`, `port-c` in Security-Server).
    pub protected_client_port: u16,
    /// Our protected server port (`port_ps`, `port-s` in Security-Server).
    pub protected_server_port: u16,
    /// Allowed `ealg` values, most preferred first (`null` must be listed to allow it).
    pub encr_alg_list: Vec<EncrAlg>,
    /// Allowed `alg` values, most preferred first.
    pub auth_alg_list: Vec<AuthAlg>,
    /// Whether an initial REGISTER without sec-agree is refused (TS 24.229 5.2.2.1: 421/494).
    pub sec_agree_required: bool,
}

impl Default for ImsAkaProfile {
    /// `encr-alg-list aes-cbc des-ede3-cbc null`, `auth-alg-list hmac-sha-1-96`, ports 5100/6100.
    fn default() -> Self {
        Self {
            protected_client_port: 5100,
            protected_server_port: 6100,
            encr_alg_list: vec![EncrAlg::AesCbc, EncrAlg::DesEde3Cbc, EncrAlg::Null],
            auth_alg_list: vec![AuthAlg::HmacSha1_96],
            sec_agree_required: true,
        }
    }
}
