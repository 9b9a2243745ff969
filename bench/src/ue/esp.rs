//! The UE's side of the four SAs of TS 33.203 7.1, the mirror image of the P-CSCF's:
//! inbound spi_uc (port_ps -> port_uc) and spi_us (port_pc -> port_us), outbound spi_ps
//! (port_uc -> port_ps) and spi_pc (port_us -> port_pc).

use akagate_fastpath::esp::{
    peek_spi, EspError, InboundSa, OutboundSa, SaError, Suite, MAX_HEADROOM, MAX_TAILROOM,
};
use akagate_fastpath::stack::ports::transport_ports;

/// Ports and SPIs of one negotiated set, UE view (names as in TS 33.203 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaParams {
    /// Our inbound SPI at port_uc (chosen by us, `spi-c` in Security-Client).
    pub spi_uc: u32,
    /// Our inbound SPI at port_us (`spi-s` in Security-Client).
    pub spi_us: u32,
    /// The P-CSCF's inbound SPI at port_pc (`spi-c` in Security-Server).
    pub spi_pc: u32,
    /// The P-CSCF's inbound SPI at port_ps (`spi-s` in Security-Server).
    pub spi_ps: u32,
    /// Our protected client port.
    pub port_uc: u16,
    /// Our protected server port.
    pub port_us: u16,
    /// The P-CSCF's protected client port.
    pub port_pc: u16,
    /// The P-CSCF's protected server port.
    pub port_ps: u16,
}

/// Why an inbound ESP packet was dropped by the UE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UeEspDrop {
    /// No SA with this SPI.
    #[error("unknown SPI")]
    UnknownSpi,
    /// ICV, padding, replay or framing failure.
    #[error("ESP check failed: {0}")]
    Invalid(EspError),
    /// The inner ports do not match the SA's selector (TS 33.203 7.1).
    #[error("inner packet outside the SA's selector")]
    Selector,
}

/// The four SAs of one registration, UE side.
pub struct UeSaSet {
    params: SaParams,
    in_uc: InboundSa,
    in_us: InboundSa,
    out_ps: OutboundSa,
    out_pc: OutboundSa,
}

impl core::fmt::Debug for UeSaSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UeSaSet")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl UeSaSet {
    /// Builds the four SAs from the negotiated parameters and the TS 33.203 Annex I suite.
    pub fn new(params: SaParams, suite: &Suite) -> Result<Self, SaError> {
        Ok(UeSaSet {
            params,
            in_uc: InboundSa::new(params.spi_uc, suite)?,
            in_us: InboundSa::new(params.spi_us, suite)?,
            out_ps: OutboundSa::new(params.spi_ps, suite)?,
            out_pc: OutboundSa::new(params.spi_pc, suite)?,
        })
    }

    /// The set's ports and SPIs.
    pub fn params(&self) -> &SaParams {
        &self.params
    }

    /// True if `port` is one of our protected ports (clear traffic to it is refused).
    pub fn is_protected_port(&self, port: u16) -> bool {
        port == self.params.port_uc || port == self.params.port_us
    }

    /// True if `spi` is one of our inbound SPIs.
    pub fn has_inbound_spi(&self, spi: u32) -> bool {
        spi == self.params.spi_uc || spi == self.params.spi_us
    }

    /// Encapsulates an inner IP packet if its ports belong to one of the outbound SAs:
    /// `Some(Ok(esp_packet))`, `Some(Err(_))` on an ESP failure, `None` if no SA covers it.
    pub fn protect(&mut self, pkt: &[u8]) -> Option<Result<Vec<u8>, EspError>> {
        let p = transport_ports(pkt)?;
        let sa = if p.src == self.params.port_uc && p.dst == self.params.port_ps {
            &mut self.out_ps
        } else if p.src == self.params.port_us && p.dst == self.params.port_pc {
            &mut self.out_pc
        } else {
            return None;
        };
        let mut buf = vec![0u8; MAX_HEADROOM + pkt.len() + MAX_TAILROOM];
        let range = MAX_HEADROOM..MAX_HEADROOM + pkt.len();
        buf[range.clone()].copy_from_slice(pkt);
        Some(sa.encapsulate(&mut buf, range).map(|r| buf[r].to_vec()))
    }

    /// Decapsulates an ESP packet addressed to this set and checks the selector; returns
    /// the inner packet and the SPI it came through.
    pub fn unprotect(&mut self, pkt: &[u8]) -> Result<(Vec<u8>, u32), UeEspDrop> {
        let spi = peek_spi(pkt).map_err(UeEspDrop::Invalid)?;
        let (sa, from, to) = if spi == self.params.spi_uc {
            (&mut self.in_uc, self.params.port_ps, self.params.port_uc)
        } else if spi == self.params.spi_us {
            (&mut self.in_us, self.params.port_pc, self.params.port_us)
        } else {
            return Err(UeEspDrop::UnknownSpi);
        };
        let mut buf = pkt.to_vec();
        let r = sa
            .decapsulate(&mut buf, 0..pkt.len())
            .map_err(UeEspDrop::Invalid)?;
        let inner = buf.get(r).ok_or(UeEspDrop::Selector)?;
        // TS 33.203 7.1: spi_uc carries only port_ps -> port_uc, spi_us only port_pc -> port_us.
        match transport_ports(inner) {
            Some(p) if p.src == from && p.dst == to => Ok((inner.to_vec(), spi)),
            _ => Err(UeEspDrop::Selector),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use akagate_fastpath::esp::{AuthAlg, EncrAlg, SaKeys};

    fn suite() -> Suite {
        Suite {
            auth: AuthAlg::HmacSha1_96,
            encr: EncrAlg::AesCbc,
            keys: SaKeys {
                integ_key: (0..20).collect(),
                encr_key: (50..66).collect(),
                salt: [0; 4],
            },
        }
    }

    /// An IPv4/UDP packet 10.0.0.7:src -> 10.0.0.1:dst with a small payload.
    fn udp(src: u16, dst: u16, from_ue: bool) -> Vec<u8> {
        let (s, d) = if from_ue {
            ([10, 0, 0, 7], [10, 0, 0, 1])
        } else {
            ([10, 0, 0, 1], [10, 0, 0, 7])
        };
        let mut p = vec![0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&s);
        p.extend_from_slice(&d);
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&[0, 12, 0, 0, b'p', b'i', b'n', b'g']);
        let c = akagate_fastpath::esp::ip::ipv4_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    const P: SaParams = SaParams {
        spi_uc: 0x1001,
        spi_us: 0x1002,
        spi_pc: 0x2001,
        spi_ps: 0x2002,
        port_uc: 31800,
        port_us: 31900,
        port_pc: 5100,
        port_ps: 6100,
    };

    /// The P-CSCF's view of the same set, built independently from the fast path's SAs.
    fn pcscf() -> (InboundSa, InboundSa, OutboundSa, OutboundSa) {
        let s = suite();
        (
            InboundSa::new(P.spi_ps, &s).unwrap(),
            InboundSa::new(P.spi_pc, &s).unwrap(),
            OutboundSa::new(P.spi_uc, &s).unwrap(),
            OutboundSa::new(P.spi_us, &s).unwrap(),
        )
    }

    fn encap(sa: &mut OutboundSa, pkt: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_HEADROOM + pkt.len() + MAX_TAILROOM];
        let r = MAX_HEADROOM..MAX_HEADROOM + pkt.len();
        buf[r.clone()].copy_from_slice(pkt);
        let r = sa.encapsulate(&mut buf, r).unwrap();
        buf[r].to_vec()
    }

    #[test]
    fn mirrors_the_pcscf_sas() {
        let mut ue = UeSaSet::new(P, &suite()).unwrap();
        let (mut in_ps, mut in_pc, mut out_uc, mut out_us) = pcscf();
        // UE port_uc -> port_ps goes out with spi_ps and the P-CSCF's spi_ps SA opens it.
        let req = udp(P.port_uc, P.port_ps, true);
        let esp = ue.protect(&req).unwrap().unwrap();
        assert_eq!(peek_spi(&esp).unwrap(), P.spi_ps);
        let mut b = esp.clone();
        let r = in_ps.decapsulate(&mut b, 0..esp.len()).unwrap();
        assert_eq!(&b[r], &req[..]);
        // port_us -> port_pc with spi_pc.
        let rsp = udp(P.port_us, P.port_pc, true);
        let esp = ue.protect(&rsp).unwrap().unwrap();
        assert_eq!(peek_spi(&esp).unwrap(), P.spi_pc);
        let mut b = esp.clone();
        assert!(in_pc.decapsulate(&mut b, 0..esp.len()).is_ok());
        // Other ports are not covered.
        assert!(ue.protect(&udp(40000, 5060, true)).is_none());
        // The P-CSCF's spi_uc and spi_us packets come in, each only within its selector.
        let down = udp(P.port_ps, P.port_uc, false);
        let (inner, spi) = ue.unprotect(&encap(&mut out_uc, &down)).unwrap();
        assert_eq!((inner, spi), (down, P.spi_uc));
        let down = udp(P.port_pc, P.port_us, false);
        assert_eq!(
            ue.unprotect(&encap(&mut out_us, &down)).unwrap().1,
            P.spi_us
        );
        let wrong = udp(P.port_pc, P.port_uc, false);
        assert_eq!(
            ue.unprotect(&encap(&mut out_uc, &wrong)),
            Err(UeEspDrop::Selector)
        );
    }

    #[test]
    fn tampered_and_replayed_packets_are_refused() {
        let mut ue = UeSaSet::new(P, &suite()).unwrap();
        let (_, _, mut out_uc, _) = pcscf();
        let esp = encap(&mut out_uc, &udp(P.port_ps, P.port_uc, false));
        let mut bad = esp.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(ue.unprotect(&bad), Err(UeEspDrop::Invalid(_))));
        assert!(ue.unprotect(&esp).is_ok());
        assert!(matches!(ue.unprotect(&esp), Err(UeEspDrop::Invalid(_))));
        let mut other = esp.clone();
        other[20..24].copy_from_slice(&0x9999u32.to_be_bytes());
        assert_eq!(ue.unprotect(&other), Err(UeEspDrop::UnknownSpi));
    }
}
