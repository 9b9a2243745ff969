//! The one transport enum: how a SIP flow travels (RFC 3261 18).

/// Transport protocol of a SIP flow, a transaction's peer or a configured SIP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// SIP over UDP (RFC 3261 18.1.1: only for messages that fit the path MTU).
    Udp,
    /// SIP over TCP (the normal case for IMS).
    Tcp,
}

impl Transport {
    /// Every transport, in configuration order.
    pub const ALL: [Transport; 2] = [Transport::Udp, Transport::Tcp];

    /// True for TCP (RFC 3261 17: no retransmissions, zero-length wait timers).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The lower-case token of configuration files and URI `transport=` parameters.
    pub fn token(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// The upper-case token of a `Via` sent-protocol (`SIP/2.0/UDP`, RFC 3261 20.42).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// Parses a transport token, case-insensitively (`udp`, `TCP`, ...).
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.token().eq_ignore_ascii_case(token))
    }
}

impl core::fmt::Display for Transport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.via_token())
    }
}

#[cfg(test)]
mod tests {
    use super::Transport;

    #[test]
    fn tokens_round_trip() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_token(t.token()), Some(t));
            assert_eq!(Transport::from_token(t.via_token()), Some(t));
        }
        assert_eq!(Transport::from_token("sctp"), None);
        assert!(Transport::Tcp.is_reliable());
        assert!(!Transport::Udp.is_reliable());
    }
}
