//! A smoltcp `Device` over two bounded in-memory queues of IP packets: the worker pushes
//! decrypted inner packets in and pulls the stack's output to encrypt.

use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
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
        self.0.push_back(buf);
        r
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
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps.max_burst_size = Some(self.max_queue);
        caps
    }
}
