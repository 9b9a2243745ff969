//! An IPv4 (RFC 791) or IPv6 (RFC 8200) packet of either family: [`IpPacket`], a checked
//! view of the fixed header, and [`IpRepr`], the parsed meaning the fast path passes along
//! (addresses, length, where ESP or the upper-layer header starts, fragment fields).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv6 Hop-by-Hop Options header.
pub const IPV6_HOPOPTS: u8 = 0;
/// IPv6 Routing header.
pub const IPV6_ROUTING: u8 = 43;
/// IPv6 Fragment header.
pub const IPV6_FRAGMENT: u8 = 44;
/// IPv6 Destination Options header.
pub const IPV6_DSTOPTS: u8 = 60;

/// Byte offsets of the headers read here.
pub(super) mod field {
    /// A byte range of a header.
    pub type Field = core::ops::Range<usize>;

    /// Version (high nibble) and, for IPv4, header length in 32-bit words (low nibble).
    pub const VER_IHL: usize = 0;

    /// IPv4 header fields (RFC 791 3.1).
    pub mod v4 {
        use super::Field;
        /// Total length.
        pub const TOTAL_LEN: Field = 2..4;
        /// Identification.
        pub const IDENT: Field = 4..6;
        /// Flags (3 bits) and fragment offset in 8-byte units (13 bits).
        pub const FLG_OFF: Field = 6..8;
        /// Protocol.
        pub const PROTOCOL: usize = 9;
        /// Source address.
        pub const SRC: Field = 12..16;
        /// Destination address.
        pub const DST: Field = 16..20;
        /// Header without options.
        pub const HEADER_LEN: usize = 20;
    }

    /// IPv6 fixed header fields (RFC 8200 3).
    pub mod v6 {
        use super::Field;
        /// Payload length (everything after the fixed header).
        pub const PAYLOAD_LEN: Field = 4..6;
        /// Next header.
        pub const NEXT_HEADER: usize = 6;
        /// Source address.
        pub const SRC: Field = 8..24;
        /// Destination address.
        pub const DST: Field = 24..40;
        /// The fixed header.
        pub const HEADER_LEN: usize = 40;
    }

    /// Hop-by-hop, routing and destination options headers (RFC 8200 4.3-4.6).
    pub mod ext {
        /// Next header.
        pub const NEXT_HEADER: usize = 0;
        /// Length in 8-byte units, not counting the first 8 bytes.
        pub const LENGTH: usize = 1;
    }

    /// IPv6 Fragment header (RFC 8200 4.5).
    pub mod frag {
        use super::Field;
        /// Next header of the fragmentable part.
        pub const NEXT_HEADER: usize = 0;
        /// Fragment offset (13 bits, in 8-byte units), reserved bits, M flag.
        pub const OFF_M: Field = 2..4;
        /// Identification.
        pub const IDENT: Field = 4..8;
        /// The whole header.
        pub const LEN: usize = 8;
    }
}

/// IP version of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpVersion {
    /// Largest packet the length fields of this version can express (no jumbograms).
    pub fn max_packet_len(self) -> usize {
        match self {
            IpVersion::V4 => 65535,
            IpVersion::V6 => field::v6::HEADER_LEN + 65535,
        }
    }
}

/// Why an IP header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    /// Shorter than its fixed header, its length field or an extension header says.
    #[error("truncated IP packet")]
    Truncated,
    /// Version not 4 or 6, IPv4 header length out of range, IPv4 total length shorter than
    /// the header, or an IPv6 hop-by-hop header that does not follow the fixed header.
    #[error("malformed IP header")]
    Header,
    /// IPv6 payload length 0 (a jumbogram, RFC 2675, or nothing after the fixed header);
    /// carries the fixed header's next header.
    #[error("IPv6 jumbogram or empty payload")]
    Jumbogram(u8),
}

/// Where the extension-header walk stops (RFC 4303 3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A received packet: ESP (or the upper layer) follows the hop-by-hop, routing and
    /// destination-options headers.
    Inbound,
    /// A packet ESP will be inserted into: destination options that follow a routing header
    /// are for the final destination and stay inside ESP (the placement of Linux and scapy).
    Outbound,
}

/// A checked view of an IPv4 or IPv6 packet's fixed header.
///
/// `new_checked` makes sure the version is 4 or 6, the fixed header is present and the
/// packet's length field lies within the buffer (bytes beyond it, e.g. Ethernet padding, are
/// not part of the packet), so no accessor can panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8], f: field::Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Self::check_len`]
    /// succeeded.
    pub const fn new_unchecked(buffer: T) -> Self {
        IpPacket { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, IpError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the version, the fixed header and the length field against the buffer.
    pub fn check_len(&self) -> Result<(), IpError> {
        let b = self.buffer.as_ref();
        let (min, len) = match b.first().map(|v| v >> 4) {
            None => return Err(IpError::Truncated),
            Some(4) if b.len() >= field::v4::HEADER_LEN => (
                field::v4::HEADER_LEN,
                usize::from(be16(b, field::v4::TOTAL_LEN)),
            ),
            Some(6) if b.len() >= field::v6::HEADER_LEN => (
                field::v6::HEADER_LEN,
                field::v6::HEADER_LEN + usize::from(be16(b, field::v6::PAYLOAD_LEN)),
            ),
            Some(4 | 6) => return Err(IpError::Truncated),
            Some(_) => return Err(IpError::Header),
        };
        if len < min {
            return Err(IpError::Header);
        }
        if len > b.len() {
            return Err(IpError::Truncated);
        }
        Ok(())
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IPv4 or IPv6.
    pub fn version(&self) -> IpVersion {
        if self.buffer.as_ref()[field::VER_IHL] >> 4 == 4 {
            IpVersion::V4
        } else {
            IpVersion::V6
        }
    }

    /// Length of the packet from its length field (the buffer may hold more).
    pub fn packet_len(&self) -> usize {
        let b = self.buffer.as_ref();
        match self.version() {
            IpVersion::V4 => usize::from(be16(b, field::v4::TOTAL_LEN)),
            IpVersion::V6 => field::v6::HEADER_LEN + usize::from(be16(b, field::v6::PAYLOAD_LEN)),
        }
    }

    /// The packet without what follows it in the buffer.
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.packet_len()]
    }

    /// Protocol (IPv4) or next header of the fixed header (IPv6).
    pub fn next_header(&self) -> u8 {
        let b = self.buffer.as_ref();
        match self.version() {
            IpVersion::V4 => b[field::v4::PROTOCOL],
            IpVersion::V6 => b[field::v6::NEXT_HEADER],
        }
    }

    /// Source address.
    pub fn src_addr(&self) -> IpAddr {
        self.addr(field::v4::SRC, field::v6::SRC)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> IpAddr {
        self.addr(field::v4::DST, field::v6::DST)
    }

    fn addr(&self, v4: field::Field, v6: field::Field) -> IpAddr {
        let b = self.buffer.as_ref();
        match self.version() {
            IpVersion::V4 => {
                let a: [u8; 4] = b[v4].try_into().unwrap_or_default();
                Ipv4Addr::from(a).into()
            }
            IpVersion::V6 => {
                let a: [u8; 16] = b[v6].try_into().unwrap_or_default();
                Ipv6Addr::from(a).into()
            }
        }
    }

    /// True unless this is an IPv4 packet whose header checksum is wrong (or whose header
    /// length exceeds the packet). IPv6 has no header checksum.
    pub fn verify_checksum(&self) -> bool {
        if self.version() == IpVersion::V6 {
            return true;
        }
        let hl = usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4;
        self.packet()
            .get(..hl)
            .is_some_and(|h| ipv4_checksum(h) == 0)
    }
}

/// An IPv4 fragment or an IPv6 packet with a Fragment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in the datagram, in bytes.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    /// Identification (16 bits for IPv4).
    pub ident: u32,
    /// IPv4: the protocol; IPv6: the next header of the fragmentable part.
    pub next_header: u8,
}

/// What the fast path needs to know of an IP packet, parsed once.
///
/// Offsets are relative to the start of the IP header. For an IPv6 packet `payload_offset`
/// is where the extension-header walk stopped: at ESP or the upper-layer header, or at a
/// Fragment header (then `fragment` is set and `next_header` is 44).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRepr {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Length of the packet from its length field.
    pub len: usize,
    /// Length of the IP header and the extension headers walked: where the payload (ESP, the
    /// upper-layer header or a Fragment header) starts.
    pub payload_offset: usize,
    /// Offset of the protocol / next-header byte naming what is at `payload_offset`.
    pub next_header_at: usize,
    /// Value of that byte.
    pub next_header: u8,
    /// The fragment fields, if the packet is a fragment (IPv4 MF or offset, IPv6 Fragment
    /// header).
    pub fragment: Option<Fragment>,
}

impl IpRepr {
    /// Parses a checked packet: IPv4 header length, the IPv6 extension headers up to ESP,
    /// the upper-layer header or a Fragment header (where they stop depends on `dir`), and
    /// the fragment fields. The IPv4 header checksum is not verified here
    /// ([`IpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &IpPacket<T>, dir: Direction) -> Result<Self, IpError> {
        let pkt = packet.packet();
        let (src, dst, len) = (packet.src_addr(), packet.dst_addr(), pkt.len());
        match packet.version() {
            IpVersion::V4 => {
                let ihl = usize::from(pkt[field::VER_IHL] & 0x0f) * 4;
                if ihl < field::v4::HEADER_LEN || ihl > len {
                    return Err(IpError::Header);
                }
                let flg_off = be16(pkt, field::v4::FLG_OFF);
                let proto = pkt[field::v4::PROTOCOL];
                // More-fragments flag or a non-zero fragment offset.
                let fragment = (flg_off & 0x3fff != 0).then(|| Fragment {
                    offset: usize::from(flg_off & 0x1fff) * 8,
                    more: flg_off & 0x2000 != 0,
                    ident: u32::from(be16(pkt, field::v4::IDENT)),
                    next_header: proto,
                });
                Ok(IpRepr {
                    version: IpVersion::V4,
                    src,
                    dst,
                    len,
                    payload_offset: ihl,
                    next_header_at: field::v4::PROTOCOL,
                    next_header: proto,
                    fragment,
                })
            }
            IpVersion::V6 => {
                if len == field::v6::HEADER_LEN {
                    return Err(IpError::Jumbogram(pkt[field::v6::NEXT_HEADER]));
                }
                let (payload_offset, next_header_at, fragment) = walk_v6(pkt, dir)?;
                Ok(IpRepr {
                    version: IpVersion::V6,
                    src,
                    dst,
                    len,
                    payload_offset,
                    next_header_at,
                    next_header: pkt[next_header_at],
                    fragment,
                })
            }
        }
    }

    /// Checks a packet and parses it: [`IpPacket::new_checked`] then [`IpRepr::parse`].
    pub fn from_bytes(pkt: &[u8], dir: Direction) -> Result<Self, IpError> {
        Self::parse(&IpPacket::new_checked(pkt)?, dir)
    }

    /// The same packet after its payload changed: `next_header` at `next_header_at` and a
    /// new length (what ESP decapsulation leaves behind; addresses and headers stay).
    pub fn with_payload(self, next_header: u8, len: usize) -> Self {
        IpRepr {
            next_header,
            len,
            ..self
        }
    }

    /// True if this description can belong to a packet of `buf_len` bytes: the offsets lie
    /// inside the header it describes and the packet inside the buffer. A parsed packet
    /// always fits; this guards users that take a `Repr` from their caller.
    pub fn fits(&self, buf_len: usize) -> bool {
        let base = match self.version {
            IpVersion::V4 => field::v4::HEADER_LEN,
            IpVersion::V6 => field::v6::HEADER_LEN,
        };
        base <= self.payload_offset
            && self.next_header_at < self.payload_offset
            && self.payload_offset <= self.len
            && self.len <= buf_len
    }
}

/// Walks the IPv6 extension headers of `pkt` (trimmed to its length): returns where the walk
/// stopped, the offset of the next-header byte naming that header, and the fragment fields if
/// it stopped at a Fragment header.
fn walk_v6(pkt: &[u8], dir: Direction) -> Result<(usize, usize, Option<Fragment>), IpError> {
    let mut nh_at = field::v6::NEXT_HEADER;
    let mut off = field::v6::HEADER_LEN;
    let mut seen_routing = false;
    loop {
        let nh = pkt[nh_at];
        let final_dstopts = dir == Direction::Outbound && nh == IPV6_DSTOPTS && seen_routing;
        match nh {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS if !final_dstopts => {
                seen_routing |= nh == IPV6_ROUTING;
                if nh == IPV6_HOPOPTS && nh_at != field::v6::NEXT_HEADER {
                    // Hop-by-hop is only allowed right after the fixed header (RFC 8200 4.1).
                    return Err(IpError::Header);
                }
                let len = *pkt
                    .get(off + field::ext::LENGTH)
                    .ok_or(IpError::Truncated)?;
                let ext_len = (usize::from(len) + 1) * 8;
                if off + ext_len > pkt.len() {
                    return Err(IpError::Truncated);
                }
                nh_at = off + field::ext::NEXT_HEADER;
                off += ext_len;
            }
            IPV6_FRAGMENT => {
                let fh = pkt
                    .get(off..off + field::frag::LEN)
                    .ok_or(IpError::Truncated)?;
                let off_m = be16(fh, field::frag::OFF_M);
                let ident = u32::from_be_bytes(fh[field::frag::IDENT].try_into().unwrap_or([0; 4]));
                let fragment = Fragment {
                    offset: usize::from(off_m & !7),
                    more: off_m & 1 == 1,
                    ident,
                    next_header: fh[field::frag::NEXT_HEADER],
                };
                return Ok((off, nh_at, Some(fragment)));
            }
            _ => return Ok((off, nh_at, None)),
        }
    }
}

/// RFC 1071 ones'-complement checksum of an IPv4 header (0 over a header with a correct
/// checksum; the value to store when computed with the checksum field zeroed).
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

    /// RFC 3602 section 4 case #5's IPv4 header (ICMP, 0x54 bytes), padded to its length.
    fn v4() -> Vec<u8> {
        let mut p = hex::decode("4500005408f200004001f9fec0a87b03c0a87b64").unwrap();
        p.resize(0x54 + 10, 0);
        p
    }

    #[test]
    fn v4_fields_fragment_and_checksum() {
        let mut p = v4();
        let pkt = IpPacket::new_checked(&p[..]).unwrap();
        assert_eq!(pkt.packet().len(), 0x54);
        assert!(pkt.verify_checksum());
        let r = IpRepr::parse(&pkt, Direction::Inbound).unwrap();
        assert_eq!(r.src, "192.168.123.3".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst, "192.168.123.100".parse::<IpAddr>().unwrap());
        assert_eq!(
            (r.len, r.payload_offset, r.next_header_at, r.next_header),
            (0x54, 20, 9, 1)
        );
        assert!(r.fits(p.len()) && !r.fits(0x53));
        assert_eq!(r.fragment, None);
        p[6] = 0x20; // MF, offset 1 (8 bytes)
        p[7] = 0x01;
        let pkt = IpPacket::new_checked(&p[..]).unwrap();
        assert!(!pkt.verify_checksum());
        let f = IpRepr::parse(&pkt, Direction::Inbound).unwrap().fragment;
        assert_eq!(
            f,
            Some(Fragment {
                offset: 8,
                more: true,
                ident: 0x08f2,
                next_header: 1
            })
        );
        p[0] = 0x44;
        let pkt = IpPacket::new_checked(&p[..]).unwrap();
        assert_eq!(
            IpRepr::parse(&pkt, Direction::Inbound),
            Err(IpError::Header)
        );
    }

    #[test]
    fn check_len_refuses_short_and_inconsistent_packets() {
        let p = v4();
        assert_eq!(IpPacket::new_checked(&p[..19]), Err(IpError::Truncated));
        assert_eq!(IpPacket::new_checked(&p[..0x53]), Err(IpError::Truncated));
        assert_eq!(IpPacket::new_checked(&[][..]), Err(IpError::Truncated));
        let mut q = p.clone();
        q[0] = 0x75;
        assert_eq!(IpPacket::new_checked(&q[..]), Err(IpError::Header));
        q[0] = 0x45;
        q[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(IpPacket::new_checked(&q[..]), Err(IpError::Header));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        assert_eq!(IpPacket::new_checked(&v6[..39]), Err(IpError::Truncated));
        v6[6] = 17;
        let pkt = IpPacket::new_checked(&v6[..]).unwrap();
        assert_eq!(
            IpRepr::parse(&pkt, Direction::Inbound),
            Err(IpError::Jumbogram(17))
        );
    }

    /// IPv6 | `exts` (8 bytes each, chained) | 8 bytes of payload with next header `last`.
    fn v6(exts: &[u8], last: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40 + 8 * exts.len() + 8];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((8 * exts.len() + 8) as u16).to_be_bytes());
        let mut at = 6;
        for (i, &e) in exts.iter().enumerate() {
            p[at] = e;
            at = 40 + 8 * i;
        }
        p[at] = last;
        p
    }

    fn walk(p: &[u8], dir: Direction) -> Result<(usize, usize, u8), IpError> {
        let r = IpRepr::from_bytes(p, dir)?;
        Ok((r.payload_offset, r.next_header_at, r.next_header))
    }

    #[test]
    fn v6_walks_hbh_routing_and_dstopts() {
        let p = v6(&[IPV6_HOPOPTS, IPV6_DSTOPTS], 17);
        assert_eq!(walk(&p, Direction::Inbound), Ok((56, 48, 17)));
        let p = v6(&[IPV6_DSTOPTS, IPV6_HOPOPTS], 17);
        assert_eq!(walk(&p, Direction::Inbound), Err(IpError::Header));
        // Destination options after a routing header stay inside ESP on the way out.
        let p = v6(&[IPV6_ROUTING, IPV6_DSTOPTS], 17);
        assert_eq!(walk(&p, Direction::Outbound), Ok((48, 40, IPV6_DSTOPTS)));
        assert_eq!(walk(&p, Direction::Inbound), Ok((56, 48, 17)));
        // An extension header longer than the packet.
        let mut p = v6(&[IPV6_DSTOPTS], 17);
        p[41] = 2;
        assert_eq!(walk(&p, Direction::Inbound), Err(IpError::Truncated));
    }

    #[test]
    fn v6_fragment_header_fields() {
        let mut p = v6(&[IPV6_HOPOPTS, IPV6_FRAGMENT], 50);
        p[48 + 2..48 + 4].copy_from_slice(&(0x0100u16 | 1).to_be_bytes());
        p[48 + 4..48 + 8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let r = IpRepr::from_bytes(&p, Direction::Inbound).unwrap();
        assert_eq!(
            (r.payload_offset, r.next_header_at, r.next_header),
            (48, 40, IPV6_FRAGMENT)
        );
        assert_eq!(
            r.fragment,
            Some(Fragment {
                offset: 0x100,
                more: true,
                ident: 0xdead_beef,
                next_header: 50
            })
        );
        let pkt = IpPacket::new_checked(&p[..]).unwrap();
        assert!(pkt.verify_checksum(), "IPv6 has no header checksum");
        assert_eq!(pkt.version(), IpVersion::V6);
    }
}
