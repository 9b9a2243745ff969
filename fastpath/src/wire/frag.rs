//! Fragmentation of an outbound IP packet larger than the link MTU: IPv4 fragments with the
//! More-Fragments flag and fragment offset (RFC 791 2.3, 3.2), IPv6 fragments with a Fragment
//! extension header after the unfragmentable part (RFC 8200 4.5).
//!
//! The egress path uses it on a whole ESP packet (transport-mode ESP takes whole datagrams
//! only, RFC 4303 3.1.1, so a datagram above the MTU is encapsulated first and its ESP packet
//! fragmented) and on an unprotected datagram above the MTU. [`Fragmenter`] writes one
//! fragment at a time into the caller's buffer, so each lands straight in a port buffer.

use super::ip::{field, ipv4_checksum, IpPacket, IpVersion, IPV6_DSTOPTS, IPV6_FRAGMENT};
use super::ip::{IPV6_HOPOPTS, IPV6_ROUTING};

/// Why a packet cannot be fragmented; the caller drops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragError {
    /// Not a well-formed IP packet (see [`IpPacket::new_checked`]) or its extension headers
    /// run past it.
    #[error("malformed IP packet")]
    Malformed,
    /// An IPv4 packet with Don't Fragment set (RFC 791 3.2: it is dropped instead).
    #[error("don't fragment set")]
    DontFragment,
    /// Already a fragment, or an IPv4 header with options (our egress builds none; RFC 791
    /// would have each option's copy flag decide which fragments carry it).
    #[error("already a fragment or an IPv4 header with options")]
    Unsupported,
    /// The MTU leaves no room for 8 bytes of data after the headers.
    #[error("MTU too small to fragment")]
    MtuTooSmall,
}

/// Writes the fragments of one IP packet, in order of their offsets.
#[derive(Debug)]
pub struct Fragmenter<'a> {
    pkt: &'a [u8],
    version: IpVersion,
    /// Bytes repeated in every fragment: the IPv4 header, or the IPv6 header with the
    /// extension headers processed en route.
    unfrag: usize,
    /// Offset of the next-header byte that names the first fragmentable header (IPv6).
    nh_at: usize,
    /// Data bytes per fragment except the last (a multiple of 8).
    step: usize,
    /// Offset of the next fragment's data within the fragmentable part.
    next: usize,
    ident: u32,
}

impl<'a> Fragmenter<'a> {
    /// Fragments of `pkt` (trimmed to its length field) of at most `mtu` bytes each, tagged
    /// with `ident` (IPv4 uses its low 16 bits). A packet that already fits is one "fragment":
    /// itself, unchanged ([`Fragmenter::count`] 1), so callers need not test first.
    pub fn new(pkt: &'a [u8], mtu: usize, ident: u32) -> Result<Self, FragError> {
        let ip = IpPacket::new_checked(pkt).map_err(|_| FragError::Malformed)?;
        let version = ip.version();
        let pkt = pkt.get(..ip.packet_len()).ok_or(FragError::Malformed)?;
        let (unfrag, nh_at, frag_hdr) = match version {
            IpVersion::V4 => {
                let ihl = usize::from(pkt[field::VER_IHL] & 0x0f) * 4;
                let flg_off = u16::from_be_bytes([pkt[6], pkt[7]]);
                if ihl != field::v4::HEADER_LEN || flg_off & 0x3fff != 0 {
                    return Err(FragError::Unsupported);
                }
                if pkt.len() > mtu && flg_off & 0x4000 != 0 {
                    return Err(FragError::DontFragment);
                }
                (ihl, field::v4::PROTOCOL, 0)
            }
            IpVersion::V6 => {
                let (unfrag, nh_at) = v6_unfragmentable(pkt)?;
                (unfrag, nh_at, field::frag::LEN)
            }
        };
        let step = mtu.saturating_sub(unfrag + frag_hdr) & !7;
        if pkt.len() > mtu && step == 0 {
            return Err(FragError::MtuTooSmall);
        }
        let step = if pkt.len() <= mtu { pkt.len() } else { step };
        Ok(Fragmenter {
            pkt,
            version,
            unfrag,
            nh_at,
            step,
            next: 0,
            ident,
        })
    }

    /// True when the packet fits the MTU as it is (the one fragment is the packet).
    fn whole(&self) -> bool {
        self.step == self.pkt.len()
    }

    /// Bytes of the fragmentable part (everything after `unfrag`).
    fn data_len(&self) -> usize {
        self.pkt.len() - self.unfrag
    }

    /// How many fragments the packet makes.
    pub fn count(&self) -> usize {
        if self.whole() {
            1
        } else {
            self.data_len().div_ceil(self.step)
        }
    }

    /// Length of the next fragment, `None` once all are written.
    pub fn next_len(&self) -> Option<usize> {
        if self.whole() {
            return (self.next == 0).then_some(self.pkt.len());
        }
        let left = self.data_len().checked_sub(self.next).filter(|&l| l > 0)?;
        let hdr = match self.version {
            IpVersion::V4 => self.unfrag,
            IpVersion::V6 => self.unfrag + field::frag::LEN,
        };
        Some(hdr + left.min(self.step))
    }

    /// Writes the next fragment at the start of `out` and returns its length; `None` once all
    /// are written or if `out` is shorter than [`Fragmenter::next_len`] (nothing is consumed
    /// then).
    pub fn write_next(&mut self, out: &mut [u8]) -> Option<usize> {
        let len = self.next_len()?;
        let out = out.get_mut(..len)?;
        if self.whole() {
            out.copy_from_slice(self.pkt);
            self.next = self.pkt.len();
            return Some(len);
        }
        let (u, off) = (self.unfrag, self.next);
        let data = len
            - u
            - match self.version {
                IpVersion::V4 => 0,
                IpVersion::V6 => field::frag::LEN,
            };
        let more = off + data < self.data_len();
        let chunk = &self.pkt[u + off..u + off + data];
        out[..u].copy_from_slice(&self.pkt[..u]);
        match self.version {
            IpVersion::V4 => {
                // RFC 791 3.1: total length, identification, MF and the offset in 8-byte units.
                out[field::v4::TOTAL_LEN].copy_from_slice(&(len as u16).to_be_bytes());
                out[field::v4::IDENT].copy_from_slice(&(self.ident as u16).to_be_bytes());
                let flg_off = (off / 8) as u16 | if more { 0x2000 } else { 0 };
                out[field::v4::FLG_OFF].copy_from_slice(&flg_off.to_be_bytes());
                out[10..12].copy_from_slice(&[0, 0]);
                let sum = ipv4_checksum(&out[..u]);
                out[10..12].copy_from_slice(&sum.to_be_bytes());
                out[u..].copy_from_slice(chunk);
            }
            IpVersion::V6 => {
                // RFC 8200 4.5: the unfragmentable part, its last next header now 44, then
                // the Fragment header naming what the fragmentable part starts with.
                let payload = (len - field::v6::HEADER_LEN) as u16;
                out[field::v6::PAYLOAD_LEN].copy_from_slice(&payload.to_be_bytes());
                out[self.nh_at] = IPV6_FRAGMENT;
                let fh = &mut out[u..u + field::frag::LEN];
                fh[field::frag::NEXT_HEADER] = self.pkt[self.nh_at];
                fh[1] = 0;
                let off_m = off as u16 | u16::from(more);
                fh[field::frag::OFF_M].copy_from_slice(&off_m.to_be_bytes());
                fh[field::frag::IDENT].copy_from_slice(&self.ident.to_be_bytes());
                out[u + field::frag::LEN..].copy_from_slice(chunk);
            }
        }
        self.next += data;
        Some(len)
    }
}

/// The IPv6 unfragmentable part of `pkt` (RFC 8200 4.5: the header and the extension headers
/// up to and including the Routing header, else the Hop-by-Hop header): its length and the
/// offset of the next-header byte that follows it.
fn v6_unfragmentable(pkt: &[u8]) -> Result<(usize, usize), FragError> {
    let mut nh_at = field::v6::NEXT_HEADER;
    let mut off = field::v6::HEADER_LEN;
    let mut unfrag = (off, nh_at);
    loop {
        match pkt[nh_at] {
            IPV6_FRAGMENT => return Err(FragError::Unsupported),
            nh @ (IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS) => {
                let len = *pkt
                    .get(off + field::ext::LENGTH)
                    .ok_or(FragError::Malformed)?;
                let end = off + (usize::from(len) + 1) * 8;
                if end > pkt.len() {
                    return Err(FragError::Malformed);
                }
                nh_at = off + field::ext::NEXT_HEADER;
                off = end;
                if nh != IPV6_DSTOPTS {
                    unfrag = (off, nh_at);
                }
            }
            _ => return Ok(unfrag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reasm::{Reasm, ReasmConfig, Reassembler};
    use smoltcp::time::Instant;

    fn v4(len: usize, df: bool) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[6] = if df { 0x40 } else { 0 };
        p[8] = 64;
        p[9] = 50;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 45, 0, 7]);
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let sum = ipv4_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p
    }

    fn v6(len: usize, ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = if ext.is_empty() { 50 } else { ext[0] };
        p[7] = 64;
        p[8] = 0x20;
        p[24] = 0x20;
        p[39] = 7;
        p.extend_from_slice(ext.get(1..).unwrap_or_default());
        let body = len - p.len();
        p.extend((0..body).map(|i| i as u8));
        p
    }

    fn all(f: &mut Fragmenter<'_>) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while let Some(n) = f.next_len() {
            let mut b = vec![0u8; n + 3];
            assert_eq!(f.write_next(&mut b), Some(n));
            b.truncate(n);
            out.push(b);
        }
        out
    }

    fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
        let mut r = Reassembler::new(ReasmConfig::default());
        let mut done = None;
        // Backwards, to prove the offsets rather than the order.
        for f in frags.iter().rev() {
            if let Reasm::Complete(p) = r.push(f, Instant::from_millis(0)).unwrap() {
                done = Some(p);
            }
        }
        done.expect("complete")
    }

    #[test]
    fn ipv4_fragments_reassemble_to_the_packet() {
        let pkt = v4(3028, false);
        let mut f = Fragmenter::new(&pkt, 1500, 0x1_2345).unwrap();
        assert_eq!(f.count(), 3);
        let frags = all(&mut f);
        assert_eq!(
            frags.iter().map(Vec::len).collect::<Vec<_>>(),
            [1500, 1500, 68]
        );
        for (i, fr) in frags.iter().enumerate() {
            let ip = IpPacket::new_checked(&fr[..]).unwrap();
            assert!(ip.verify_checksum());
            // Identification is the low 16 bits; MF on all but the last; offsets 8-aligned.
            assert_eq!(&fr[4..6], &[0x23, 0x45]);
            let flg_off = u16::from_be_bytes([fr[6], fr[7]]);
            assert_eq!(flg_off & 0x2000 != 0, i < 2);
            assert_eq!(usize::from(flg_off & 0x1fff) * 8, i * 1480);
        }
        let re = reassemble(&frags);
        // The datagram keeps the identification of its fragments.
        assert!(re[..4] == pkt[..4] && re[8..10] == pkt[8..10] && re[12..] == pkt[12..]);
    }

    #[test]
    fn ipv6_fragments_carry_a_fragment_header_after_the_unfragmentable_part() {
        // Hop-by-hop (8 bytes, unfragmentable), then destination options (fragmentable).
        let ext = [0u8, 60, 0, 1, 0, 0, 0, 0, 0, 50, 0, 1, 0, 0, 0, 0, 0];
        let pkt = v6(4000, &ext);
        let mut f = Fragmenter::new(&pkt, 1280, 0xdead_beef).unwrap();
        let frags = all(&mut f);
        assert_eq!(frags.len(), f.count());
        for (i, fr) in frags.iter().enumerate() {
            assert!(fr.len() <= 1280);
            assert_eq!((fr[6], fr[40]), (0, 44), "fixed header -> HBH -> Fragment");
            let fh = &fr[48..56];
            assert_eq!(fh[0], 60, "the fragmentable part starts with dest options");
            assert_eq!(&fh[4..8], &0xdead_beef_u32.to_be_bytes());
            assert_eq!(fh[3] & 1 == 1, i + 1 < frags.len());
            assert_eq!(
                usize::from(u16::from_be_bytes([fh[2], fh[3]]) & !7),
                i * 1224
            );
        }
        assert!(reassemble(&frags) == pkt);
    }

    #[test]
    fn a_packet_within_the_mtu_is_its_own_single_fragment() {
        let pkt = v4(1500, true);
        let mut f = Fragmenter::new(&pkt, 1500, 1).unwrap();
        assert_eq!(f.count(), 1);
        assert_eq!(all(&mut f), vec![pkt]);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Fragmenter::new(&v4(1501, true), 1500, 1).unwrap_err(),
            FragError::DontFragment
        );
        let mut frag = v4(3000, false);
        frag[6] = 0x20;
        assert_eq!(
            Fragmenter::new(&frag, 1500, 1).unwrap_err(),
            FragError::Unsupported
        );
        assert_eq!(
            Fragmenter::new(&v6(3000, &[44, 50, 0, 0, 0, 0, 0, 0, 0]), 1280, 1).unwrap_err(),
            FragError::Unsupported
        );
        assert_eq!(
            Fragmenter::new(&v6(3000, &[]), 47, 1).unwrap_err(),
            FragError::MtuTooSmall
        );
        assert_eq!(
            Fragmenter::new(&v4(3000, false)[..100], 1500, 1).unwrap_err(),
            FragError::Malformed
        );
        // An extension header running past the packet.
        let mut bad = v6(100, &[]);
        bad[6] = 0;
        bad[41] = 200;
        assert_eq!(
            Fragmenter::new(&bad, 80, 1).unwrap_err(),
            FragError::Malformed
        );
        let pkt = v4(3000, false);
        let mut f = Fragmenter::new(&pkt, 1500, 1).unwrap();
        assert_eq!(f.write_next(&mut [0u8; 100]), None, "short buffer");
        assert_eq!(f.next_len(), Some(1500), "nothing consumed");
    }
}
