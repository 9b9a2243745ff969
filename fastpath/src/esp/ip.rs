//! Where ESP sits in an IPv4/IPv6 packet in transport mode and how the IP header is fixed
//! after ESP is inserted or removed (RFC 4303 3.1.1).

use super::error::EspError;
pub(super) use crate::wire::ip::Direction;
pub use crate::wire::ip::{ipv4_checksum, IpVersion};
use crate::wire::ip::{IpError, IpRepr};

/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;

/// Where ESP sits in an IP packet: the parsed header ([`IpRepr`]); `payload_offset` is where
/// ESP starts (inbound) or goes (outbound).
pub type IpLayout = IpRepr;

impl From<IpError> for EspError {
    fn from(e: IpError) -> Self {
        match e {
            IpError::Truncated => EspError::Truncated,
            IpError::Header => EspError::BadIpHeader,
            IpError::Jumbogram(nh) => EspError::UnsupportedExtHeader(nh),
        }
    }
}

/// Finds the ESP header of an inbound packet: it follows the IPv4 header, or the IPv6 header
/// and any hop-by-hop, routing and destination-options headers (RFC 4303 3.1.1). A fragment
/// is refused: fragments are reassembled before ESP is removed (RFC 4303 3.4.1).
pub fn layout(pkt: &[u8]) -> Result<IpLayout, EspError> {
    unfragmented(IpRepr::from_bytes(pkt, Direction::Inbound)?)
}

/// Finds where ESP goes in an outbound packet. IPv6: after hop-by-hop, routing and the
/// destination options that precede a routing header; destination options that follow a
/// routing header are for the final destination and go inside ESP (RFC 4303 3.1.1 allows
/// either; this is the placement of Linux and scapy). Fragments are refused: ESP is applied
/// before fragmentation (RFC 4303 3.3.4).
pub fn layout_outbound(pkt: &[u8]) -> Result<IpLayout, EspError> {
    unfragmented(IpRepr::from_bytes(pkt, Direction::Outbound)?)
}

/// `ip` unless it describes a fragment.
pub(super) fn unfragmented(ip: IpRepr) -> Result<IpRepr, EspError> {
    match ip.fragment {
        Some(_) => Err(EspError::Fragment),
        None => Ok(ip),
    }
}

/// What fixing an IP header after ESP is inserted or removed needs of its [`IpLayout`]: the
/// version, the header length and where the next-header byte is. Twelve bytes, where the
/// layout (addresses and all) is several times that: a burst keeps one per packet between
/// its passes, and copies of a small value do not stall on store forwarding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct HeaderFix {
    /// Length of the IP header and the extension headers before ESP.
    hdr_len: u32,
    /// Offset of the protocol / next-header byte naming ESP (IPv6; IPv4: 9).
    next_header_at: u32,
    /// IPv6 (else IPv4).
    v6: bool,
}

impl HeaderFix {
    /// The fix of a plain 20-byte IPv4 header, for the phase diagnostics (`esp::phases`).
    #[cfg(test)]
    pub(super) fn v4_for_test() -> Self {
        Self {
            hdr_len: 20,
            next_header_at: 9,
            v6: false,
        }
    }

    /// The fix for a packet of layout `lay` (whose offsets fit in a packet: `lay.fits`).
    pub(super) fn of(lay: &IpLayout) -> Self {
        Self {
            hdr_len: lay.payload_offset as u32,
            next_header_at: lay.next_header_at as u32,
            v6: lay.version == IpVersion::V6,
        }
    }

    /// Length of the IP header and the extension headers before ESP.
    pub(super) fn hdr_len(self) -> usize {
        self.hdr_len as usize
    }
}

/// What ESP needs of a packet's IP header: the [`HeaderFix`], the packet's length (from its
/// length field) and the protocol / next header naming what follows the headers. 24 bytes,
/// made straight from the header bytes for the usual headers ([`headers`]), where the whole
/// [`IpLayout`] (both addresses, the fragment fields) is a hundred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Headers {
    /// Version, header length and where the next-header byte is.
    pub(super) fix: HeaderFix,
    /// The packet's length from its IP length field.
    pub(super) len: usize,
    /// The protocol / next-header value naming what follows the headers.
    pub(super) next_header: u8,
}

impl Headers {
    /// What ESP needs of a parsed (unfragmented, fitting) header.
    pub(super) fn of(lay: &IpLayout) -> Self {
        Self {
            fix: HeaderFix::of(lay),
            len: lay.len,
            next_header: lay.next_header,
        }
    }

    /// Largest packet the header's length fields can express.
    pub(super) fn max_len(&self) -> usize {
        if self.fix.v6 {
            IpVersion::V6.max_packet_len()
        } else {
            IpVersion::V4.max_packet_len()
        }
    }

    /// True for an IPv4 header.
    pub(super) fn v4(&self) -> bool {
        !self.fix.v6
    }
}

/// [`layout`] (`dir` inbound) or [`layout_outbound`] of `pkt`, reduced to [`Headers`], with
/// the same results and errors. An IPv4 header (no options or any) and an IPv6 header not
/// followed by an extension header are read straight from their bytes; anything else (IPv6
/// extension headers, a zero payload length, short or bad headers) goes through the full
/// parse.
#[inline(always)]
pub(super) fn headers(pkt: &[u8], dir: Direction) -> Result<Headers, EspError> {
    use crate::wire::ip::{IPV6_DSTOPTS, IPV6_FRAGMENT, IPV6_HOPOPTS, IPV6_ROUTING};
    if let Some(h) = pkt.first_chunk::<20>() {
        if h[0] >> 4 == 4 {
            // `IpPacket::check_len`, then `IpRepr::parse`, then `unfragmented`, in order.
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if len < 20 {
                return Err(EspError::BadIpHeader);
            }
            if len > pkt.len() {
                return Err(EspError::Truncated);
            }
            if ihl < 20 || ihl > len {
                return Err(EspError::BadIpHeader);
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return Err(EspError::Fragment);
            }
            return Ok(Headers {
                fix: HeaderFix {
                    hdr_len: ihl as u32,
                    next_header_at: 9,
                    v6: false,
                },
                len,
                next_header: h[9],
            });
        }
    }
    if let Some(h) = pkt.first_chunk::<40>() {
        let len = 40 + usize::from(u16::from_be_bytes([h[4], h[5]]));
        let nh = h[6];
        let ext = matches!(
            nh,
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_FRAGMENT
        );
        if h[0] >> 4 == 6 && len > 40 && len <= pkt.len() && !ext {
            return Ok(Headers {
                fix: HeaderFix {
                    hdr_len: 40,
                    next_header_at: 6,
                    v6: true,
                },
                len,
                next_header: nh,
            });
        }
    }
    let lay = unfragmented(IpRepr::from_bytes(pkt, dir)?)?;
    Ok(Headers::of(&lay))
}

/// True if the IPv4 header `hdr` (20 to 60 bytes) carries a valid header checksum (RFC 1071:
/// its one's-complement sum is 0xffff); [`ipv4_checksum`] of it is 0. The 20-byte header
/// is summed as five 32-bit words, no loop.
#[inline(always)]
pub(super) fn ipv4_header_ok(hdr: &[u8]) -> bool {
    let Some(h) = hdr.first_chunk::<20>().filter(|_| hdr.len() == 20) else {
        return ipv4_checksum(hdr) == 0;
    };
    let word = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let sum = word(0) + word(4) + word(8) + word(12) + word(16);
    // Folding keeps the sum's value mod 0xffff and keeps it non-zero unless every byte is
    // zero (whose `ipv4_checksum` is !0 = 0xffff, refused here too).
    fold16(sum) == 0xffff
}

/// Writes the protocol/next-header byte and the length fields of an IP packet of `len` bytes
/// whose headers `fix` describes (IPv4: protocol, total length, header checksum; IPv6:
/// payload length and the next-header byte of the last header before ESP). `pkt` holds at
/// least those headers.
pub(super) fn fix_header(pkt: &mut [u8], fix: HeaderFix, next_header: u8, len: usize) {
    if fix.v6 {
        pkt[fix.next_header_at as usize] = next_header;
        pkt[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        // Callers check len <= 65535 before they get here. The checksum is summed from
        // the header as it is, with the new fields put in the sum's words in registers,
        // before anything is written: reading back the bytes just stored would stall on
        // store forwarding (a wide load over narrow stores).
        let len = len as u16;
        let sum = match pkt.first_chunk::<20>() {
            Some(h) if fix.hdr_len == 20 => ipv4_checksum20(h, len, next_header),
            _ => ipv4_checksum_with(&pkt[..fix.hdr_len()], len, next_header),
        };
        pkt[2..4].copy_from_slice(&len.to_be_bytes());
        pkt[9] = next_header;
        pkt[10..12].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Moves the IP header (and extension headers before ESP) at the start of `pkt` forward by
/// `by` bytes and fixes it as [`fix_header`] does for a packet of `len` bytes from there on
/// (`pkt[by..by + len]`): the inbound header restore of `InboundSa::finish`. `pkt` holds
/// `by + len` bytes and `len` is at least the header's length. See [`move_header`].
#[inline(always)]
pub(super) fn restore_header(
    pkt: &mut [u8],
    by: usize,
    fix: HeaderFix,
    next_header: u8,
    len: usize,
) {
    move_header(pkt, 0, by, fix, next_header, len);
}

/// Moves the IP header (and extension headers before ESP) at `pkt[from..]` to `pkt[to..]`
/// and fixes it as [`fix_header`] does for a packet of `len` bytes from there on
/// (`pkt[to..to + len]`): the outbound move into the headroom of `OutboundSa::frame` and the
/// inbound restore of `InboundSa::finish`. The usual headers (IPv4 of 20 bytes, IPv6 of 40
/// with no extension header) are read once into registers, fixed there and written once at
/// their new place: one pass, no call, no store read back. Other headers take the copy,
/// then [`fix_header`]. `pkt` holds the header at `from` and `to + len` bytes, and `len` is
/// at least the header's length; a `pkt` too short for that panics (a caller's bug, never
/// the network's: both callers checked the lengths).
#[inline(always)]
pub(super) fn move_header(
    pkt: &mut [u8],
    from: usize,
    to: usize,
    fix: HeaderFix,
    next_header: u8,
    len: usize,
) {
    match (fix.v6, fix.hdr_len) {
        (false, 20) => {
            let mut h = *pkt[from..]
                .first_chunk::<20>()
                .expect("the header lies in the packet");
            let len = len as u16;
            let sum = ipv4_checksum20(&h, len, next_header);
            h[2..4].copy_from_slice(&len.to_be_bytes());
            h[9] = next_header;
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            *pkt[to..]
                .first_chunk_mut::<20>()
                .expect("the packet holds its header") = h;
        }
        (true, 40) if fix.next_header_at == 6 => {
            let mut h = *pkt[from..]
                .first_chunk::<40>()
                .expect("the header lies in the packet");
            h[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            h[6] = next_header;
            *pkt[to..]
                .first_chunk_mut::<40>()
                .expect("the packet holds its header") = h;
        }
        _ => {
            let hdr_len = fix.hdr_len();
            pkt.copy_within(from..from + hdr_len, to);
            fix_header(&mut pkt[to..to + len], fix, next_header, len);
        }
    }
}

/// [`ipv4_checksum_with`] of a 20-byte header: its five 32-bit words summed in registers
/// (RFC 1071: a one's-complement sum may be taken over wider words and folded), no loop.
#[inline(always)]
fn ipv4_checksum20(h: &[u8; 20], len: u16, proto: u8) -> u16 {
    let word = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    // Word 0 keeps version, IHL and TOS (the length replaced), word 2 the TTL (protocol and
    // checksum replaced).
    let sum = (word(0) & 0xffff_0000)
        + u64::from(len)
        + word(4)
        + (word(8) & 0xff00_0000)
        + (u64::from(proto) << 16)
        + word(12)
        + word(16);
    !fold16(sum)
}

/// A one's-complement sum taken over 32-bit words (`sum`: below 2^48, the sum of at most
/// 65536 of them) folded to 16 bits with its end-around carries (RFC 1071 1(B): the sum
/// may be taken over wider words and folded): 64 to 32 bits once, then 32 to 16 three times
/// (the second and third fold each leave at most one carry). No loop, no branch.
#[inline(always)]
fn fold16(sum: u64) -> u16 {
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The IPv4 header checksum of `hdr` (a whole header: 20 to 60 bytes, a multiple of 4) with
/// total length `len`, protocol `proto` and a zero checksum field in place of its own:
/// RFC 1071's one's-complement sum over 32-bit words, folded to 16 bits.
fn ipv4_checksum_with(hdr: &[u8], len: u16, proto: u8) -> u16 {
    let word = |w: &[u8]| u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    let mut sum = u64::from(len) + (u64::from(proto) << 16);
    let mut words = hdr.chunks_exact(4);
    // Word 0 keeps version, IHL and TOS (the length is replaced), word 2 the TTL (protocol
    // and checksum replaced); no loop for the fixed 20 bytes.
    if let (Some(w0), Some(w1), Some(w2)) = (words.next(), words.next(), words.next()) {
        sum += (word(w0) & 0xffff_0000) + word(w1) + (word(w2) & 0xff00_0000);
    }
    for w in words {
        sum += word(w);
    }
    !fold16(sum)
}

/// Largest packet the IP length fields of `version` can express.
pub fn max_len(version: IpVersion) -> usize {
    version.max_packet_len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::{IPV6_DSTOPTS, IPV6_FRAGMENT, IPV6_HOPOPTS, IPV6_ROUTING};
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng};

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

    /// A reproducible stream of random words from `seed` (random test headers).
    fn random_words(seed: u64) -> impl FnMut() -> u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        move || rng.gen()
    }

    /// The checksum summed with the new fields in registers equals the one of the header
    /// with the fields written, over random headers of every length (20..=60) and the
    /// extreme lengths and protocols; the 20-byte path (`ipv4_checksum20`) equals it.
    #[test]
    fn checksum_with_new_fields_matches_written_header() {
        let mut rnd = random_words(0x2545_f491_4f6c_dd1du64);
        for n in 0..3000 {
            let hl = 20 + 4 * (n % 11);
            let mut hdr: Vec<u8> = (0..hl).map(|_| rnd() as u8).collect();
            hdr[0] = 0x40 | (hl / 4) as u8;
            let len = match n % 3 {
                0 => 0xffff,
                1 => hl as u16,
                _ => rnd() as u16,
            };
            let proto = [50u8, 0, 255, rnd() as u8][n % 4];
            let got = ipv4_checksum_with(&hdr, len, proto);
            if let Ok(h) = <&[u8; 20]>::try_from(&hdr[..]) {
                assert_eq!(ipv4_checksum20(h, len, proto), got, "header {hdr:02x?}");
            }
            hdr[2..4].copy_from_slice(&len.to_be_bytes());
            hdr[9] = proto;
            hdr[10] = 0;
            hdr[11] = 0;
            assert_eq!(got, ipv4_checksum(&hdr), "header {hdr:02x?}");
            hdr[10..12].copy_from_slice(&got.to_be_bytes());
            assert_eq!(ipv4_checksum(&hdr), 0);
        }
    }

    /// `restore_header` against the plain way (copy the header, then `fix_header`) and an
    /// independent truth (the written IPv4 header sums to zero, RFC 1071), over random
    /// IPv4 headers of every length, IPv6 with and without extension headers, several shifts.
    #[test]
    fn restore_header_matches_copy_then_fix() {
        let mut rnd = random_words(0x9e37_79b9_7f4a_7c15u64);
        for n in 0..4000 {
            let v6 = n % 2 == 1;
            let (hdr_len, nh_at) = if v6 {
                let ext = 8 * (n / 2 % 3);
                (40 + ext, if ext == 0 { 6 } else { 40 + ext - 8 })
            } else {
                (20 + 4 * (n / 2 % 11), 9)
            };
            let fix = HeaderFix {
                hdr_len: hdr_len as u32,
                next_header_at: nh_at as u32,
                v6,
            };
            let by = [8usize, 16, 24, 36][n % 4];
            let len = hdr_len + (rnd() % 1500) as usize;
            let orig: Vec<u8> = (0..by + len).map(|_| rnd() as u8).collect();
            let nh = rnd() as u8;
            let mut got = orig.clone();
            restore_header(&mut got, by, fix, nh, len);
            let mut want = orig.clone();
            want.copy_within(..hdr_len, by);
            fix_header(&mut want[by..], fix, nh, len);
            assert_eq!(got, want, "v6 {v6} header {hdr_len} by {by}");
            if !v6 {
                assert_eq!(ipv4_checksum(&got[by..by + hdr_len]), 0);
                assert_eq!(
                    usize::from(u16::from_be_bytes([got[by + 2], got[by + 3]])),
                    len
                );
                assert_eq!(got[by + 9], nh);
            } else {
                assert_eq!(got[by + nh_at], nh);
                assert_eq!(
                    usize::from(u16::from_be_bytes([got[by + 4], got[by + 5]])),
                    len - 40
                );
            }
        }
    }

    /// `headers` against the full parse (`layout`, `layout_outbound` reduced by
    /// `Headers::of`), results and errors, over random IPv4 and IPv6 packets: every header
    /// length, fragment flags and offsets, length fields shorter, equal and longer than the
    /// buffer, short buffers, other versions, IPv6 extension headers and zero payload
    /// lengths (the cases the fast path leaves to the full parse).
    #[test]
    fn headers_match_the_full_parse() {
        use crate::wire::ip::{IPV6_DSTOPTS, IPV6_FRAGMENT, IPV6_HOPOPTS, IPV6_ROUTING};
        let mut rnd = random_words(0x0123_4567_89ab_cdefu64);
        let mut fast = 0;
        for n in 0..20000 {
            let buf_len = [0usize, 1, 19, 20, 39, 40, 41, 60, 64, 100, 1500][n % 11];
            let mut p: Vec<u8> = (0..buf_len).map(|_| rnd() as u8).collect();
            if let Some(b0) = p.first_mut() {
                let version = [4u8, 6, 4, 6, 5, 0][n / 11 % 6];
                *b0 = version << 4 | (*b0 & 0x0f);
            }
            let r = rnd();
            if p.len() >= 8 && !r.is_multiple_of(4) {
                // Mostly lengths that fit, and mostly no fragment.
                let v6 = p[0] >> 4 == 6;
                let len = (r >> 8) as usize % (p.len() + 2);
                let field = if v6 { len.saturating_sub(40) } else { len };
                let at = if v6 { 4 } else { 2 };
                p[at..at + 2].copy_from_slice(&(field as u16).to_be_bytes());
                if !v6 && !r.is_multiple_of(3) {
                    p[6] &= 0x40 | (r >> 40) as u8 & 0x80;
                    p[7] = 0;
                }
                if v6 && p.len() >= 48 {
                    p[6] = [
                        IPPROTO_ESP,
                        17,
                        IPV6_HOPOPTS,
                        IPV6_ROUTING,
                        IPV6_DSTOPTS,
                        IPV6_FRAGMENT,
                    ][(r >> 16) as usize % 6];
                    p[41] = 0;
                }
            }
            for dir in [Direction::Inbound, Direction::Outbound] {
                let full = match dir {
                    Direction::Inbound => layout(&p),
                    Direction::Outbound => layout_outbound(&p),
                };
                let want = full.map(|l| Headers::of(&l));
                let got = headers(&p, dir);
                assert_eq!(got, want, "{dir:?} {p:02x?}");
                fast += usize::from(got.is_ok());
            }
        }
        assert!(fast > 2000, "only {fast} packets parsed");
    }

    /// `ipv4_header_ok` against `ipv4_checksum` (RFC 1071) over random headers of every
    /// length, each with its checksum right, off by one bit, and zero, and all-zero headers.
    /// `fold16` is the end-around-carry fold to 16 bits (the loop of RFC 1071 4.1, "fold
    /// 32-bit sum to 16 bits", run until no carry is left) for every sum up to 2^48: the
    /// edges, sums of 32-bit words as the checksums take them, and random values.
    #[test]
    fn fold16_matches_the_folding_loop() {
        let reference = |mut s: u64| {
            while s >> 16 != 0 {
                s = (s & 0xffff) + (s >> 16);
            }
            s as u16
        };
        let mut rnd = random_words(0x0f01_d16f_01d1_6f01u64);
        let mut sums = vec![
            0u64,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            (1 << 48) - 1,
        ];
        sums.extend((0..32).map(|k| (1u64 << k) - 1));
        sums.extend((1..=16u64).map(|n| n * 0xffff_ffff));
        for _ in 0..100_000 {
            let r = rnd();
            sums.push(r >> 16);
            sums.push((0..(r % 16)).map(|_| rnd() >> 32).sum());
        }
        for s in sums {
            assert_eq!(fold16(s), reference(s), "{s:#x}");
        }
    }

    #[test]
    fn header_ok_matches_the_checksum() {
        let mut rnd = random_words(0x5151_7a7a_0f0f_3c3cu64);
        for n in 0..30000usize {
            let hl = 20 + 4 * (n % 11);
            let mut h: Vec<u8> = (0..hl).map(|_| rnd() as u8).collect();
            if n.is_multiple_of(97) {
                h.fill(0);
            }
            if n.is_multiple_of(3) {
                h[10] = 0;
                h[11] = 0;
                let sum = ipv4_checksum(&h);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                assert!(ipv4_header_ok(&h) || h.iter().all(|&b| b == 0));
            }
            if n.is_multiple_of(5) {
                let bit = rnd() as usize % (8 * hl);
                h[bit / 8] ^= 1 << (bit % 8);
            }
            assert_eq!(ipv4_header_ok(&h), ipv4_checksum(&h) == 0, "{h:02x?}");
        }
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
            (l.payload_offset, l.next_header_at, l.next_header),
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
            (out.payload_offset, out.next_header_at, out.next_header),
            (48, 40, IPV6_DSTOPTS)
        );
        let inb = layout(&p).unwrap();
        assert_eq!(
            (inb.payload_offset, inb.next_header_at, inb.next_header),
            (56, 48, 17)
        );
    }

    #[test]
    fn v4_fragment_and_lengths() {
        let mut p = hex::decode("4500005408f200004001f9fec0a87b03c0a87b64").unwrap();
        p.resize(0x54 + 10, 0);
        let l = layout(&p).unwrap();
        assert_eq!((l.payload_offset, l.len, l.next_header), (20, 0x54, 1));
        p[6] = 0x20; // MF
        assert_eq!(layout(&p), Err(EspError::Fragment));
        p[6] = 0x40; // DF is fine
        assert!(layout(&p).is_ok());
        p[0] = 0x44;
        assert_eq!(layout(&p), Err(EspError::BadIpHeader));
        assert_eq!(layout(&p[..19]), Err(EspError::Truncated));
    }
}
