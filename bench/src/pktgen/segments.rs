//! Pre-built traffic of one UE: a SIP byte stream cut into TCP segments that continue the
//! UE's established port_uc -> port_ps connection (template headers from the UE's own stack,
//! consecutive sequence numbers), each ESP-protected with the UE's outbound spi_ps SA.

use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket};

/// Why a template packet cannot be continued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Not an IPv4/IPv6 packet carrying a TCP segment we can parse.
    #[error("template is not an IP/TCP packet")]
    NotTcp,
    /// Segment payload does not fit the template's headers into `size`.
    #[error("packet size {0} leaves no room for TCP payload")]
    TooSmall(usize),
}

/// The headers of the UE's next segment on its protected connection, to be repeated with
/// new payloads and sequence numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpTemplate {
    /// IP header (IPv4 with options as sent, or the fixed IPv6 header).
    ip_header: Vec<u8>,
    /// TCP header including options.
    tcp_header: Vec<u8>,
    /// Source and destination address, for the pseudo-header checksum.
    src: IpAddress,
    dst: IpAddress,
    /// Sequence number of the template's first payload byte.
    pub seq: u32,
    /// Acknowledgment number it carries (what the UE has received).
    pub ack: u32,
    /// Source and destination ports.
    pub ports: (u16, u16),
    /// Payload bytes of the template segment itself.
    pub payload_len: usize,
}

impl TcpTemplate {
    /// Takes the headers of `pkt`, a TCP segment the UE's stack produced.
    pub fn from_packet(pkt: &[u8]) -> Result<Self, SegmentError> {
        let (ip_header, src, dst, l4) = match pkt.first().map(|b| b >> 4) {
            Some(4) => {
                let p = Ipv4Packet::new_checked(pkt).map_err(|_| SegmentError::NotTcp)?;
                if p.next_header() != smoltcp::wire::IpProtocol::Tcp {
                    return Err(SegmentError::NotTcp);
                }
                let hl = usize::from(p.header_len());
                (
                    pkt.get(..hl).ok_or(SegmentError::NotTcp)?.to_vec(),
                    IpAddress::Ipv4(p.src_addr()),
                    IpAddress::Ipv4(p.dst_addr()),
                    p.payload(),
                )
            }
            Some(6) => {
                let p = Ipv6Packet::new_checked(pkt).map_err(|_| SegmentError::NotTcp)?;
                if p.next_header() != smoltcp::wire::IpProtocol::Tcp {
                    return Err(SegmentError::NotTcp);
                }
                (
                    pkt.get(..40).ok_or(SegmentError::NotTcp)?.to_vec(),
                    IpAddress::Ipv6(p.src_addr()),
                    IpAddress::Ipv6(p.dst_addr()),
                    p.payload(),
                )
            }
            _ => return Err(SegmentError::NotTcp),
        };
        let t = TcpPacket::new_checked(l4).map_err(|_| SegmentError::NotTcp)?;
        let thl = usize::from(t.header_len());
        Ok(TcpTemplate {
            ip_header,
            tcp_header: l4.get(..thl).ok_or(SegmentError::NotTcp)?.to_vec(),
            src,
            dst,
            seq: t.seq_number().0 as u32,
            ack: t.ack_number().0 as u32,
            ports: (t.src_port(), t.dst_port()),
            payload_len: t.payload().len(),
        })
    }

    /// IP + TCP header bytes of every segment.
    pub fn header_len(&self) -> usize {
        self.ip_header.len() + self.tcp_header.len()
    }

    /// TCP payload bytes per segment for inner IP packets of `size` bytes.
    pub fn payload_for(&self, size: usize) -> Result<usize, SegmentError> {
        match size.checked_sub(self.header_len()) {
            Some(n) if n > 0 => Ok(n),
            _ => Err(SegmentError::TooSmall(size)),
        }
    }

    /// The inner packet carrying `payload` at sequence number `seq`, IPv4 identification
    /// `ip_id`, PSH set, checksums filled.
    pub fn segment(&self, seq: u32, payload: &[u8], ip_id: u16) -> Vec<u8> {
        let tcp_len = self.tcp_header.len() + payload.len();
        let mut p = Vec::with_capacity(self.ip_header.len() + tcp_len);
        p.extend_from_slice(&self.ip_header);
        p.extend_from_slice(&self.tcp_header);
        p.extend_from_slice(payload);
        let ihl = self.ip_header.len();
        let total = p.len();
        {
            let mut t = TcpPacket::new_unchecked(&mut p[ihl..]);
            t.set_seq_number(smoltcp::wire::TcpSeqNumber(seq as i32));
            t.set_psh(true);
            t.fill_checksum(&self.src, &self.dst);
        }
        match (self.src, self.dst) {
            (IpAddress::Ipv4(_), IpAddress::Ipv4(_)) => {
                let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
                ip.set_total_len(total as u16);
                ip.set_ident(ip_id);
                ip.fill_checksum();
            }
            _ => {
                let mut ip = Ipv6Packet::new_unchecked(&mut p[..]);
                ip.set_payload_len(tcp_len as u16);
            }
        }
        p
    }
}

/// A SIP message of exactly `size` bytes (at least the header section): a `200 OK` to a
/// `MESSAGE` with a body of `x` padding. It matches no client transaction at the P-CSCF, so
/// the slowpath parses, validates and counts it (`stray_responses`) without answering: the
/// fast path sees a steady one-way stream (RFC 3261 16.7 / 18.1.2, stray responses).
pub fn sip_message(impu: &str, ue: usize, n: u64, via_host: &str, size: usize) -> Vec<u8> {
    let head = |body: usize| {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP {via_host};branch=z9hG4bKpktgen{ue:x}x{n:x}\r\n\
             From: <{impu}>;tag=pg{ue:x}\r\nTo: <{impu}>;tag=pgt{n:x}\r\n\
             Call-ID: pktgen-{ue:x}-{n:x}@akagate\r\nCSeq: {} MESSAGE\r\n\
             Content-Type: text/plain\r\nContent-Length: {body:>6}\r\n\r\n",
            n + 1
        )
    };
    let fixed = head(0).len();
    let body = size.saturating_sub(fixed);
    let mut m = head(body).into_bytes();
    m.resize(m.len() + body, b'x');
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, TcpControl, TcpRepr, TcpSeqNumber};

    fn template_v4() -> Vec<u8> {
        let src = Ipv4Address::new(10, 1, 0, 2);
        let dst = Ipv4Address::new(10, 0, 0, 1);
        let repr = TcpRepr {
            src_port: 31800,
            dst_port: 6100,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(1000),
            ack_number: Some(TcpSeqNumber(5000)),
            window_len: 4096,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: b"x",
        };
        let ip = smoltcp::wire::Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: smoltcp::wire::IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        let mut b = vec![0u8; 20 + repr.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.emit(&mut p, &smoltcp::phy::ChecksumCapabilities::default());
        let mut t = TcpPacket::new_unchecked(p.payload_mut());
        repr.emit(
            &mut t,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &smoltcp::phy::ChecksumCapabilities::default(),
        );
        b
    }

    #[test]
    fn segments_continue_the_template_with_valid_checksums() {
        let t = TcpTemplate::from_packet(&template_v4()).unwrap();
        assert_eq!((t.seq, t.ack, t.ports), (1000, 5000, (31800, 6100)));
        assert_eq!(t.payload_for(64).unwrap(), 24);
        assert_eq!(t.payload_for(40), Err(SegmentError::TooSmall(40)));
        let seg = t.segment(1024, &[b'a'; 24], 7);
        assert_eq!(seg.len(), 64);
        // An independent parse (smoltcp's Repr with checksum verification) accepts it.
        let ip = Ipv4Packet::new_checked(&seg[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.total_len(), ip.ident()), (64, 7));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let repr = TcpRepr::parse(
            &tcp,
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr()),
            &smoltcp::phy::ChecksumCapabilities::default(),
        )
        .unwrap();
        assert_eq!(repr.seq_number, TcpSeqNumber(1024));
        assert_eq!(repr.ack_number, Some(TcpSeqNumber(5000)));
        assert_eq!(repr.payload, &[b'a'; 24]);
        assert!(TcpTemplate::from_packet(&seg[..30]).is_err());
    }

    #[test]
    fn sip_messages_have_the_exact_size_and_parse() {
        for size in [300, 1368, 2048] {
            let m = sip_message("sip:1@ims.example", 3, 9, "10.1.0.2:31800", size);
            assert_eq!(m.len(), size);
            let msg = akagate_slowpath::sip::Message::parse(&m).unwrap();
            msg.validate().unwrap();
            assert_eq!(msg.status_code(), Some(200));
            let declared: usize = msg
                .header_by_name("Content-Length")
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert_eq!(msg.body().len(), declared);
            assert!(msg.body().iter().all(|&b| b == b'x'));
        }
    }
}
