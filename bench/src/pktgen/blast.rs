//! The pre-built traffic of all UEs (interleaved round-robin, so no UE's TCP window or
//! stack queue sees a long run) and the transmit loop that blasts it at a port queue as
//! fast as the backend takes it or at a fixed packet rate, counting the frames that return.

use std::io::Write;
use std::path::Path;

use akagate_sys::PortQueue;

use super::pcap::PcapWriter;

/// Frames handed to the queue per transmit burst.
const BURST: usize = 32;

/// Pre-built Ethernet frames, stored back to back.
#[derive(Debug, Default)]
pub struct Traffic {
    buf: Vec<u8>,
    frames: Vec<(usize, usize)>,
    /// Inner IP bytes (what ESP protects) over all frames.
    pub inner_bytes: u64,
    /// Complete SIP messages in the TCP streams.
    pub sip_messages: u64,
    /// The spi_ps of every UE, in UE order.
    pub spis: Vec<u32>,
}

impl Traffic {
    /// Appends a frame carrying `inner` bytes of inner packet.
    pub fn push(&mut self, frame: &[u8], inner: usize) {
        self.frames.push((self.buf.len(), frame.len()));
        self.buf.extend_from_slice(frame);
        self.inner_bytes += inner as u64;
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True if there are no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame `i`.
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        let &(at, len) = self.frames.get(i)?;
        self.buf.get(at..at + len)
    }

    /// Ethernet frame bytes over all frames (without preamble, FCS and gap).
    pub fn frame_bytes(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Writes the frames as a pcap (linktype Ethernet), spaced `1/rate` apart if a rate is
    /// given (1 µs apart otherwise), starting at `start_us`.
    pub fn write_pcap(
        &self,
        path: &Path,
        rate_pps: Option<f64>,
        start_us: u64,
    ) -> std::io::Result<u64> {
        let f = std::fs::File::create(path)?;
        let mut w = PcapWriter::new(std::io::BufWriter::new(f))?;
        let gap = rate_pps.filter(|r| *r > 0.0).map_or(1.0, |r| 1e6 / r);
        for i in 0..self.len() {
            if let Some(frame) = self.frame(i) {
                w.write(start_us + (i as f64 * gap) as u64, frame)?;
            }
        }
        let n = w.records();
        w.finish()?.flush()?;
        Ok(n)
    }
}

/// What the transmit loop did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlastResult {
    /// Frames the queue accepted.
    pub sent: u64,
    /// Seconds from the first to the last accepted frame.
    pub tx_seconds: f64,
    /// Frames received back (ACKs, responses) until the end of the drain.
    pub returned: u64,
    /// Bytes of those frames.
    pub returned_bytes: u64,
    /// Bursts the queue did not take whole (ring full or no buffer): back-pressure.
    pub tx_stalls: u64,
}

/// Sends every frame of `t` on `q`, as fast as the queue takes them or paced to `rate_pps`
/// (frames due at `k / rate` after the start), then keeps counting returned frames until
/// `done()` or `drain` passes without it.
pub fn blast<Q: PortQueue>(
    q: &mut Q,
    t: &Traffic,
    rate_pps: Option<f64>,
    mut done: impl FnMut() -> bool,
    drain: std::time::Duration,
) -> BlastResult {
    let mut r = BlastResult::default();
    let mut tx = Vec::with_capacity(BURST);
    let mut rx = Vec::with_capacity(64);
    let mut next = 0usize;
    let start = std::time::Instant::now();
    let mut last_tx = start;
    let rate = rate_pps.filter(|r| *r > 0.0);
    let mut receive = |q: &mut Q, r: &mut BlastResult| {
        let n = q.rx_burst(&mut rx, 64);
        for b in rx.drain(..) {
            r.returned_bytes += b.len() as u64;
            q.free(b);
        }
        r.returned += n as u64;
        n
    };
    while next < t.len() || !tx.is_empty() {
        let due = match rate {
            Some(pps) => ((start.elapsed().as_secs_f64() * pps) as usize).min(t.len()),
            None => t.len(),
        };
        while tx.len() < BURST && next < due {
            let Some(mut b) = q.alloc() else { break };
            match t.frame(next) {
                Some(f) if b.fill(f).is_ok() => tx.push(b),
                _ => q.free(b),
            }
            next += 1;
        }
        if !tx.is_empty() {
            let want = tx.len();
            let n = q.tx_burst(&mut tx);
            r.sent += n as u64;
            if n > 0 {
                last_tx = std::time::Instant::now();
            }
            if n < want {
                r.tx_stalls += 1;
            }
        }
        let got = receive(q, &mut r);
        if got == 0 && (tx.len() == BURST || next >= due) {
            std::hint::spin_loop();
        }
    }
    r.tx_seconds = last_tx.duration_since(start).as_secs_f64();
    let mut quiet = std::time::Instant::now();
    while !done() && quiet.elapsed() < drain {
        if receive(q, &mut r) > 0 {
            quiet = std::time::Instant::now();
        } else {
            std::thread::yield_now();
        }
    }
    // Whatever is still on its way back (the gateway's delayed ACKs): until 50 ms pass
    // without a frame, at most one second.
    let settle = std::time::Instant::now();
    let mut quiet = std::time::Instant::now();
    while quiet.elapsed() < std::time::Duration::from_millis(50)
        && settle.elapsed() < std::time::Duration::from_secs(1)
    {
        if receive(q, &mut r) > 0 {
            quiet = std::time::Instant::now();
        } else {
            std::thread::yield_now();
        }
    }
    r
}
