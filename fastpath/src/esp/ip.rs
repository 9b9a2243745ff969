//! Where ESP sits in an IPv4/IPv6 packet in transport mode and how the IP header is fixed
//! after ESP is inserted or removed (RFC 4303 3.1.1).

use super::error::EspError;

/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IPv6 Hop-by-Hop Options header.
const IPV6_HOPOPTS: u8 = 0;
/// IPv6 Routing header.
const IPV6_ROUTING: u8 = 43;
/// IPv6 Fragment header.
const IPV6_FRAGMENT: u8 = 44;
/// IPv6 Destination Options header.
const IPV6_DSTOPTS: u8 = 60;

/// IP version of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Offsets of one IP packet that ESP needs, all relative to the start of the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpLayout {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// Length of the IP header plus the extension headers that precede ESP: where ESP starts.
    pub esp_offset: usize,
    /// Offset of the protocol / next-header byte that names what follows `esp_offset`.
    pub next_header_at: usize,
    /// Value of that byte.
    pub next_header: u8,
    /// Length of the IP packet according to its own length field (shorter than the buffer
    /// range when a link layer padded it).
    pub len: usize,
}

/// Finds the ESP header of an inbound packet: it follows the IPv4 header, or the IPv6 header
/// and any hop-by-hop, routing and destination-options headers (RFC 4303 3.1.1). A fragment
/// header is refused: fragments are reassembled before ESP is removed (RFC 4303 3.4.1).
pub fn layout(pkt: &[u8]) -> Result<IpLayout, EspError> {
    layout_dir(pkt, false)
}

/// Finds where ESP goes in an outbound packet. IPv6: after hop-by-hop, routing and the
/// destination options that precede a routing header; destination options that follow a
/// routing header are for the final destination and go inside ESP (RFC 4303 3.1.1 allows
/// either; this is the placement of Linux and scapy). Fragments are refused: ESP is applied
/// before fragmentation (RFC 4303 3.3.4).
pub fn layout_outbound(pkt: &[u8]) -> Result<IpLayout, EspError> {
    layout_dir(pkt, true)
}

fn layout_dir(pkt: &[u8], outbound: bool) -> Result<IpLayout, EspError> {
    let first = *pkt.first().ok_or(EspError::Truncated)?;
    match first >> 4 {
        4 => layout_v4(pkt),
        6 => layout_v6(pkt, outbound),
        _ => Err(EspError::BadIpHeader),
    }
}

fn be16(pkt: &[u8], at: usize) -> Result<u16, EspError> {
    match pkt.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(EspError::Truncated),
    }
}

fn layout_v4(pkt: &[u8]) -> Result<IpLayout, EspError> {
    if pkt.len() < 20 {
        return Err(EspError::Truncated);
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(be16(pkt, 2)?);
    if ihl < 20 || total < ihl {
        return Err(EspError::BadIpHeader);
    }
    if total > pkt.len() {
        return Err(EspError::Truncated);
    }
    // More-fragments flag or a non-zero fragment offset.
    if be16(pkt, 6)? & 0x3fff != 0 {
        return Err(EspError::Fragment);
    }
    Ok(IpLayout {
        version: IpVersion::V4,
        esp_offset: ihl,
        next_header_at: 9,
        next_header: pkt[9],
        len: total,
    })
}

fn layout_v6(pkt: &[u8], outbound: bool) -> Result<IpLayout, EspError> {
    if pkt.len() < 40 {
        return Err(EspError::Truncated);
    }
    let payload_len = usize::from(be16(pkt, 4)?);
    if payload_len == 0 {
        // A jumbogram (RFC 2675) or a packet with nothing after the base header.
        return Err(EspError::UnsupportedExtHeader(pkt[6]));
    }
    let len = 40 + payload_len;
    if len > pkt.len() {
        return Err(EspError::Truncated);
    }
    let mut nh_at = 6;
    let mut off = 40;
    let mut seen_routing = false;
    loop {
        let nh = pkt[nh_at];
        let final_dstopts = outbound && nh == IPV6_DSTOPTS && seen_routing;
        match nh {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS if !final_dstopts => {
                seen_routing |= nh == IPV6_ROUTING;
                if nh == IPV6_HOPOPTS && nh_at != 6 {
                    // Hop-by-hop is only allowed right after the base header (RFC 8200 4.1).
                    return Err(EspError::BadIpHeader);
                }
                let hdr = pkt.get(off..off + 2).ok_or(EspError::Truncated)?;
                let ext_len = (usize::from(hdr[1]) + 1) * 8;
                if off + ext_len > len {
                    return Err(EspError::Truncated);
                }
                nh_at = off;
                off += ext_len;
            }
            IPV6_FRAGMENT => return Err(EspError::Fragment),
            _ => {
                return Ok(IpLayout {
                    version: IpVersion::V6,
                    esp_offset: off,
                    next_header_at: nh_at,
                    next_header: nh,
                    len,
                })
            }
        }
    }
}

/// Writes the protocol/next-header byte and the length fields of an IP packet of `len` bytes
/// whose layout is `lay` (IPv4: protocol, total length, header checksum; IPv6: payload length
/// and the next-header byte of the last header before ESP).
pub fn fix_header(pkt: &mut [u8], lay: &IpLayout, next_header: u8, len: usize) {
    pkt[lay.next_header_at] = next_header;
    match lay.version {
        IpVersion::V4 => {
            // Callers check len <= 65535 before they get here.
            pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            pkt[10] = 0;
            pkt[11] = 0;
            let sum = ipv4_checksum(&pkt[..lay.esp_offset]);
            pkt[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        IpVersion::V6 => {
            pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        }
    }
}

/// Largest packet the IP length fields of `version` can express.
pub fn max_len(version: IpVersion) -> usize {
    match version {
        IpVersion::V4 => 65535,
        IpVersion::V6 => 40 + 65535,
    }
}

/// RFC 1071 ones'-complement checksum of an IPv4 header (the checksum field zeroed).
pub fn ipv4_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = hdr.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_rfc3602_case5_headers() {
        // RFC 3602 section 4 case #5: original and post-encryption IPv4 headers.
        let orig = hex::decode("4500005408f200004001f9fec0a87b03c0a87b64").unwrap();
        let mut z = orig.clone();
        z[10] = 0;
        z[11] = 0;
        assert_eq!(ipv4_checksum(&z), 0xf9fe);
        assert_eq!(ipv4_checksum(&orig), 0);
    }

    #[test]
    fn v6_walks_hbh_and_dstopts() {
        let mut p = vec![0u8; 40 + 8 + 8 + 8];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&24u16.to_be_bytes());
        p[6] = IPV6_HOPOPTS;
        p[40] = IPV6_DSTOPTS;
        p[48] = 17;
        let l = layout(&p).unwrap();
        assert_eq!(
            (l.esp_offset, l.next_header_at, l.next_header),
            (56, 48, 17)
        );
        p[48] = IPV6_FRAGMENT;
        assert_eq!(layout(&p), Err(EspError::Fragment));
        p[48] = IPV6_HOPOPTS;
        assert_eq!(layout(&p), Err(EspError::BadIpHeader));
    }

    #[test]
    fn v6_final_dstopts_stay_inside_esp_outbound() {
        // IPv6 | routing | dest-opts | UDP
        let mut p = vec![0u8; 40 + 8 + 8 + 8];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&24u16.to_be_bytes());
        p[6] = IPV6_ROUTING;
        p[40] = IPV6_DSTOPTS;
        p[48] = 17;
        let out = layout_outbound(&p).unwrap();
        assert_eq!(
            (out.esp_offset, out.next_header_at, out.next_header),
            (48, 40, IPV6_DSTOPTS)
        );
        let inb = layout(&p).unwrap();
        assert_eq!(
            (inb.esp_offset, inb.next_header_at, inb.next_header),
            (56, 48, 17)
        );
    }

    #[test]
    fn v4_fragment_and_lengths() {
        let mut p = hex::decode("4500005408f200004001f9fec0a87b03c0a87b64").unwrap();
        p.resize(0x54 + 10, 0);
        let l = layout(&p).unwrap();
        assert_eq!((l.esp_offset, l.len, l.next_header), (20, 0x54, 1));
        p[6] = 0x20; // MF
        assert_eq!(layout(&p), Err(EspError::Fragment));
        p[6] = 0x40; // DF is fine
        assert!(layout(&p).is_ok());
        p[0] = 0x44;
        assert_eq!(layout(&p), Err(EspError::BadIpHeader));
        assert_eq!(layout(&p[..19]), Err(EspError::Truncated));
    }
}
