//! Counts the copies of packet bytes on the fast path, per place, so a test can assert how
//! many a packet costs (`fastpath/tests/worker_copies.rs`, like the no-allocation test).
//!
//! Every place that copies packet bytes from one buffer into another calls [`note`]: our
//! own copies where they happen, and smoltcp's where a packet crosses into or out of it (its
//! socket buffers are the one copy a stack of sockets cannot avoid). Building a header is
//! not a copy. With neither `cfg(test)` nor the `copy-count` feature, [`note`] is empty and
//! compiles away; with them it adds to counters of the calling thread (a worker is one
//! thread), read and reset by [`take`].

/// A place where packet bytes are copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CopySite {
    /// Decapsulation moves the IP header forward over the ESP header and IV (RFC 4303 3.4:
    /// the payload stays where it was decrypted, in the receive buffer).
    EspHeaderIn,
    /// Encapsulation moves the IP header back into the headroom to make room for the ESP
    /// header and IV (the payload stays where smoltcp wrote it, in the transmit buffer).
    EspHeaderOut,
    /// smoltcp takes an inbound segment's or datagram's payload into its socket's receive
    /// buffer (counted where the stack lends it the packet, if the packet carries payload).
    StackRx,
    /// Received stream bytes kept in the SIP framer's buffer because they hold no complete
    /// message yet (the start of a message that continues in a later segment).
    FramerBuffer,
    /// A complete SIP message cut out into its own `Vec` (the event for the slowpath).
    Message,
    /// A datagram's payload out of its UDP socket into its own `Vec` (the event).
    UdpMessage,
    /// A message to send into its TCP socket's send buffer, or the stack's queue before it
    /// (`pending`, or the oversize-datagram queue).
    StackSend,
    /// Queued bytes (`pending`) into the TCP socket's send buffer.
    PendingToSocket,
    /// smoltcp writes an outbound packet with payload (from its socket's send buffer) into a
    /// transmit buffer (counted at the device, if the packet carries payload).
    StackTx,
    /// A packet above the link MTU written into pool buffers as fragments (RFC 791, RFC 8200
    /// 4.5), or a datagram the stack builds itself written into the big buffer.
    Fragment,
    /// Fragments joined into one datagram (RFC 791 3.2, RFC 8200 4.5).
    Reassembly,
    /// A frame the worker built (ARP, ND, ICMP echo reply) into a pool buffer.
    BuiltFrame,
}

impl CopySite {
    /// Every site, in [`CopyTally`] order.
    pub const ALL: [CopySite; 12] = [
        CopySite::EspHeaderIn,
        CopySite::EspHeaderOut,
        CopySite::StackRx,
        CopySite::FramerBuffer,
        CopySite::Message,
        CopySite::UdpMessage,
        CopySite::StackSend,
        CopySite::PendingToSocket,
        CopySite::StackTx,
        CopySite::Fragment,
        CopySite::Reassembly,
        CopySite::BuiltFrame,
    ];
}

/// Copies and bytes per [`CopySite`] counted on one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyTally {
    counts: [(u64, u64); CopySite::ALL.len()],
}

impl CopyTally {
    /// Copies made at `site`.
    pub fn copies(&self, site: CopySite) -> u64 {
        self.counts[site as usize].0
    }

    /// Bytes copied at `site`.
    pub fn bytes(&self, site: CopySite) -> u64 {
        self.counts[site as usize].1
    }

    /// Copies at all sites.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.0).sum()
    }

    /// The sites with at least one copy, with their copies and bytes.
    pub fn nonzero(&self) -> Vec<(CopySite, u64, u64)> {
        CopySite::ALL
            .iter()
            .map(|&s| (s, self.copies(s), self.bytes(s)))
            .filter(|c| c.1 > 0)
            .collect()
    }
}

impl core::ops::AddAssign for CopyTally {
    fn add_assign(&mut self, o: CopyTally) {
        for (a, b) in self.counts.iter_mut().zip(o.counts) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

#[cfg(any(test, feature = "copy-count"))]
thread_local! {
    /// Copies and bytes per site, side by side: one add each per copy.
    static TALLY: [core::cell::Cell<u64>; 2 * CopySite::ALL.len()] =
        const { [const { core::cell::Cell::new(0) }; 2 * CopySite::ALL.len()] };
}

/// Counts one copy of `bytes` packet bytes at `site` (nothing without the `copy-count`
/// feature or `cfg(test)`).
#[inline(always)]
pub fn note(site: CopySite, bytes: usize) {
    #[cfg(any(test, feature = "copy-count"))]
    {
        let _ = TALLY.try_with(|t| {
            let (c, b) = (&t[2 * site as usize], &t[2 * site as usize + 1]);
            c.set(c.get() + 1);
            b.set(b.get() + bytes as u64);
        });
    }
    #[cfg(not(any(test, feature = "copy-count")))]
    let _ = (site, bytes);
}

/// The copies counted on this thread since the last call, and resets them.
#[cfg(any(test, feature = "copy-count"))]
pub fn take() -> CopyTally {
    TALLY.with(|t| {
        let mut tally = CopyTally::default();
        for (i, c) in tally.counts.iter_mut().enumerate() {
            *c = (t[2 * i].take(), t[2 * i + 1].take());
        }
        tally
    })
}

/// Bytes after the TCP or UDP header of the IP packet `pkt` (no extension headers, as a
/// stack's packets have none), 0 for anything else: what smoltcp copies into or out of a
/// socket for it.
#[cfg(any(test, feature = "copy-count"))]
pub fn transport_payload(pkt: &[u8]) -> usize {
    let (hdr, proto, len) = match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => (
            usize::from(pkt[0] & 0x0f) * 4,
            pkt[9],
            usize::from(u16::from_be_bytes([pkt[2], pkt[3]])),
        ),
        Some(6) if pkt.len() >= 40 => (
            40,
            pkt[6],
            40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
        ),
        _ => return 0,
    };
    let len = len.min(pkt.len());
    let t = match proto {
        6 => pkt
            .get(hdr + 12)
            .map_or(usize::MAX, |o| usize::from(o >> 4) * 4),
        17 => 8,
        _ => return 0,
    };
    len.saturating_sub(hdr.saturating_add(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_site_and_resets() {
        let _ = take();
        note(CopySite::Message, 100);
        note(CopySite::Message, 20);
        note(CopySite::StackTx, 7);
        let t = take();
        assert_eq!(
            (t.copies(CopySite::Message), t.bytes(CopySite::Message)),
            (2, 120)
        );
        assert_eq!(t.total(), 3);
        assert_eq!(t.nonzero().len(), 2);
        assert_eq!(take().total(), 0);
    }

    #[test]
    fn payload_after_the_transport_header() {
        // IPv4, 20-byte header, TCP with data offset 8 (32 bytes), 10 bytes of data.
        let mut p = vec![0u8; 62];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&62u16.to_be_bytes());
        p[9] = 6;
        p[20 + 12] = 8 << 4;
        assert_eq!(transport_payload(&p), 10);
        p[9] = 17;
        assert_eq!(transport_payload(&p), 34);
        p[9] = 1;
        assert_eq!(transport_payload(&p), 0);
    }
}
