//! smoltcp `Device`s of a per-UE stack: [`QueueDevice`], two bounded in-memory queues of owned
//! IP packets (tests, the UE simulator), and [`SinkDevice`], which lends smoltcp the worker's
//! packet buffer for one inbound packet and lets it write its output straight into buffers of
//! a [`PacketSink`] (the worker's port pool), so the fast path copies no packet into a `Vec`.

use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// In-memory IP packet device (Medium::Ip) with bounded queues.
#[derive(Debug)]
pub struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    max_queue: usize,
    mtu: usize,
}

impl QueueDevice {
    /// A device with an IP MTU of `mtu` holding at most `max_queue` packets per direction.
    pub fn new(mtu: usize, max_queue: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            max_queue,
            mtu,
        }
    }

    /// Queues an inbound IP packet; returns it back if the queue is full.
    pub fn push_rx(&mut self, packet: Vec<u8>) -> Result<(), Vec<u8>> {
        if self.rx.len() >= self.max_queue {
            return Err(packet);
        }
        self.rx.push_back(packet);
        Ok(())
    }

    /// The next inbound packet the stack will consume.
    pub fn peek_rx(&self) -> Option<&[u8]> {
        self.rx.front().map(Vec::as_slice)
    }

    /// Takes the oldest outbound IP packet.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// Inbound packets not yet consumed by the stack.
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    /// Outbound packets not yet taken.
    pub fn tx_len(&self) -> usize {
        self.tx.len()
    }

    /// Drops the outbound packets not yet taken for which `keep` is false.
    pub fn retain_tx(&mut self, keep: impl FnMut(&Vec<u8>) -> bool) {
        self.tx.retain(keep);
    }
}

/// What every per-UE interface is built with: IP medium, and smoltcp's IPv4 header, TCP and
/// UDP checksums neither verified on receive nor filled on transmit — the stack verifies every
/// inbound segment and datagram itself first (`crate::wire::checksum`, eight bytes per
/// addition), so none with a bad checksum reaches a socket (RFC 9293 3.1, RFC 768); an
/// inbound IPv4 header was verified by the link layer or made by ESP decapsulation or
/// reassembly before the worker hands it over (`UeStack::input_segment`), and is verified
/// by the stack on its other ways in (`UeStack::input`, `UeStack::push_inbound`). The
/// devices' transmit tokens fill all three of every packet smoltcp writes
/// ([`crate::wire::checksum::fill_checksums`]; smoltcp adds two bytes at a time).
pub fn stack_capabilities() -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ip;
    caps.checksum.ipv4 = Checksum::None;
    caps.checksum.tcp = Checksum::None;
    caps.checksum.udp = Checksum::None;
    caps
}

/// Receive token holding one inbound packet.
pub struct QueueRxToken(Vec<u8>);

/// Transmit token appending to the outbound queue.
pub struct QueueTxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for QueueRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for QueueTxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        // smoltcp leaves its checksums to the device ([`stack_capabilities`]).
        crate::wire::checksum::fill_checksums(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl Default for QueueDevice {
    /// An empty device with no room (a placeholder while the real one is lent out).
    fn default() -> Self {
        QueueDevice::new(0, 0)
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = QueueRxToken;
    type TxToken<'a> = QueueTxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        // smoltcp may answer an inbound packet directly (RST, ICMP); that answer is bounded by
        // the one packet it consumed, so the tx bound is not checked here.
        Some((QueueRxToken(packet), QueueTxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if self.tx.len() >= self.max_queue {
            return None;
        }
        Some(QueueTxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = stack_capabilities();
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = Some(self.max_queue);
        caps
    }
}

/// Where a stack's outbound IP packets go when it is driven through a [`SinkDevice`]: smoltcp
/// writes each packet once, into a buffer the sink provides, and the sink sends it on.
pub trait PacketSink {
    /// Lets `fill` write one IP packet of `len` bytes into a buffer of the sink, then sends
    /// it. A sink without a buffer to spare still calls `fill` (smoltcp needs its result),
    /// on scratch space, and drops the packet.
    fn send<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, fill: F) -> R;

    /// [`PacketSink::send`] of a packet smoltcp writes with its checksums left to the device
    /// ([`stack_capabilities`]): `fill` writes it, then its checksums are filled
    /// ([`crate::wire::checksum::fill_checksums`]). A sink that reads the packet's headers to
    /// route it overrides this to have them from the fill
    /// ([`crate::wire::checksum::fill_checksums_described`]) instead of parsing them again.
    fn send_checksummed<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, fill: F) -> R {
        self.send(len, |buf| {
            let r = fill(buf);
            crate::wire::checksum::fill_checksums(buf);
            r
        })
    }

    /// Whether the sink can take another packet now; smoltcp keeps what it would send for a
    /// later poll otherwise.
    fn can_send(&mut self) -> bool;
}

/// A device over at most one borrowed inbound packet and a [`PacketSink`] for output.
#[derive(Debug)]
pub struct SinkDevice<'a, S> {
    rx: Option<&'a [u8]>,
    sink: &'a mut S,
    mtu: usize,
    /// Transmit tokens handed out (smoltcp asks for one only to send a packet at once).
    transmitted: usize,
}

impl<'a, S: PacketSink> SinkDevice<'a, S> {
    /// A device that hands `rx` (if any) to the stack once and sends through `sink`.
    pub fn new(rx: Option<&'a [u8]>, sink: &'a mut S, mtu: usize) -> Self {
        SinkDevice {
            rx,
            sink,
            mtu,
            transmitted: 0,
        }
    }

    /// Packets sent through [`phy::Device::transmit`] so far (answers to the inbound packet
    /// through `receive`'s token not counted).
    pub fn transmitted(&self) -> usize {
        self.transmitted
    }
}

/// Receive token lending one inbound packet in place.
pub struct SliceRxToken<'a>(&'a [u8]);

/// Transmit token writing into the sink's next buffer.
pub struct SinkTxToken<'a, S>(&'a mut S);

impl phy::RxToken for SliceRxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        // smoltcp reads the packet where it lies; its payload goes into a socket's buffer.
        #[cfg(any(test, feature = "copy-count"))]
        note_payload(crate::copies::CopySite::StackRx, self.0);
        f(self.0)
    }
}

impl<S: PacketSink> phy::TxToken for SinkTxToken<'_, S> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp leaves its checksums to the device ([`stack_capabilities`]): the sink fills
        // them after `f`.
        self.0.send_checksummed(len, |buf| {
            let r = f(buf);
            // smoltcp wrote the packet into the sink's buffer: its payload from a socket's.
            #[cfg(any(test, feature = "copy-count"))]
            note_payload(crate::copies::CopySite::StackTx, buf);
            r
        })
    }
}

/// Counts a copy at `site` of the payload of `pkt`, if it carries any.
#[cfg(any(test, feature = "copy-count"))]
fn note_payload(site: crate::copies::CopySite, pkt: &[u8]) {
    let n = crate::copies::transport_payload(pkt);
    if n > 0 {
        crate::copies::note(site, n);
    }
}

impl<S: PacketSink> phy::Device for SinkDevice<'_, S> {
    type RxToken<'b>
        = SliceRxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = SinkTxToken<'b, S>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.rx.take()?;
        // A direct answer (RST, ICMP) to the one packet goes to the sink like any output.
        Some((SliceRxToken(packet), SinkTxToken(&mut *self.sink)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if !self.sink.can_send() {
            return None;
        }
        self.transmitted += 1;
        Some(SinkTxToken(&mut *self.sink))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = stack_capabilities();
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{Device, RxToken, TxToken};

    /// Collects packets; refuses after `room` of them.
    struct Collect {
        out: Vec<Vec<u8>>,
        room: usize,
    }

    impl PacketSink for Collect {
        fn send<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, fill: F) -> R {
            let mut b = vec![0u8; len];
            let r = fill(&mut b);
            self.out.push(b);
            r
        }
        fn can_send(&mut self) -> bool {
            self.out.len() < self.room
        }
    }

    #[test]
    fn sink_device_lends_one_packet_and_sends_to_the_sink() {
        let pkt = [1u8, 2, 3];
        let mut sink = Collect {
            out: vec![],
            room: 1,
        };
        let mut dev = SinkDevice::new(Some(&pkt), &mut sink, 1400);
        let (rx, tx) = dev.receive(Instant::from_millis(0)).unwrap();
        assert_eq!(
            rx.consume(|b| b.as_ptr()),
            pkt.as_ptr(),
            "not borrowed in place"
        );
        tx.consume(2, |b| b.copy_from_slice(&[9, 9]));
        assert_eq!(
            dev.transmitted(),
            0,
            "the answer to the inbound packet is not counted"
        );
        assert!(dev.receive(Instant::from_millis(0)).is_none());
        assert!(dev.transmit(Instant::from_millis(0)).is_none(), "sink full");
        assert_eq!(dev.transmitted(), 0, "no token, nothing counted");
        assert_eq!(dev.capabilities().max_transmission_unit, 1400);
        assert_eq!(sink.out, vec![vec![9, 9]]);
    }

    #[test]
    fn sink_device_counts_the_packets_it_lets_through() {
        let mut sink = Collect {
            out: vec![],
            room: 2,
        };
        let mut dev = SinkDevice::new(None, &mut sink, 1400);
        for n in 1..=2 {
            let tx = dev.transmit(Instant::from_millis(0)).expect("room left");
            tx.consume(1, |b| b[0] = n as u8);
            assert_eq!(dev.transmitted(), n);
        }
        assert!(dev.transmit(Instant::from_millis(0)).is_none(), "sink full");
        assert_eq!(dev.transmitted(), 2, "a refused transmit is not counted");
        assert_eq!(sink.out, vec![vec![1], vec![2]]);
    }
}
