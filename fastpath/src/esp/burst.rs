//! Burst ESP encapsulation over several outbound SAs. Each packet is framed in order (sequence
//! number, IV, padding, trailer: exactly what [`OutboundSa::encapsulate`] writes); then the
//! hmac-sha-1-96 + aes-cbc packets are sealed together by the multi-buffer kernels (CBC
//! chains of many packets in lock-step, two SHA-1 messages interleaved), and every other
//! suite by the single-packet transform. The output is byte-identical to calling
//! `encapsulate` on each packet in turn.

use core::borrow::BorrowMut;
use core::ops::Range;

use thiserror::Error;

#[cfg(target_arch = "x86_64")]
pub use super::cbc_mb::CbcKernel;
use super::error::EspError;
use super::sa::{Framed, OutboundSa};
#[cfg(target_arch = "x86_64")]
use super::transform::ESP_HDR_LEN;

/// Packets sealed per multi-buffer pass: a burst of 32 stays in L1/L2 between the AES pass
/// and the HMAC pass over the same bytes.
const GROUP: usize = 32;

/// A caller error in a burst: nothing was processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum BurstError {
    /// An item names an SA index outside the `sas` slice.
    #[error("burst item {item} names SA {sa}, but only {count} SAs were given")]
    NoSuchSa {
        /// Position of the item in the burst.
        item: usize,
        /// The SA index it named.
        sa: usize,
        /// Number of SAs given.
        count: usize,
    },
}

/// One packet of a burst: which SA encapsulates it, its buffer and the IP packet's range in
/// it (with headroom and tailroom, as for [`OutboundSa::encapsulate`]).
#[derive(Debug)]
pub struct EncapItem<'a> {
    /// Index of the packet's SA in the `sas` slice given to [`encapsulate_burst`].
    pub sa: usize,
    /// The packet buffer.
    pub buf: &'a mut [u8],
    /// The IP packet in `buf`.
    pub pkt: Range<usize>,
    /// Set by [`encapsulate_burst`]: the ESP packet's range in `buf`, or why it was dropped
    /// (counted in the SA's counters, as by `encapsulate`).
    pub result: Result<Range<usize>, EspError>,
    iv: Option<&'a [u8]>,
    framed: Option<Framed>,
}

impl<'a> EncapItem<'a> {
    /// A packet `buf[pkt]` for the SA at index `sa`.
    pub fn new(sa: usize, buf: &'a mut [u8], pkt: Range<usize>) -> Self {
        Self {
            sa,
            buf,
            pkt,
            result: Err(EspError::Truncated),
            iv: None,
            framed: None,
        }
    }

    /// Test hook: encapsulate with this IV, as [`OutboundSa::encapsulate_with_iv`]. A
    /// repeated IV breaks GCM: never use this with live keys.
    #[doc(hidden)]
    pub fn with_iv_for_test(mut self, iv: &'a [u8]) -> Self {
        self.iv = Some(iv);
        self
    }
}

/// Encapsulates every item of the burst in place with its SA; each item's `result` tells
/// the outcome. Sequence numbers and IVs are taken in item order, so several items may use
/// the same SA. Runs the fastest multi-buffer kernel this CPU has.
pub fn encapsulate_burst<S: BorrowMut<OutboundSa>>(
    sas: &mut [S],
    items: &mut [EncapItem<'_>],
) -> Result<(), BurstError> {
    #[cfg(target_arch = "x86_64")]
    let kernel = CbcKernel::detect();
    #[cfg(not(target_arch = "x86_64"))]
    let kernel = None;
    encapsulate_burst_inner(sas, items, kernel)
}

/// [`encapsulate_burst`] with a chosen CBC kernel (`None`: every packet through the
/// single-packet path), for tests and benchmarks comparing the kernels. A kernel the CPU
/// lacks falls back to the AES-NI one.
#[cfg(target_arch = "x86_64")]
#[doc(hidden)]
pub fn encapsulate_burst_with<S: BorrowMut<OutboundSa>>(
    sas: &mut [S],
    items: &mut [EncapItem<'_>],
    kernel: Option<CbcKernel>,
) -> Result<(), BurstError> {
    encapsulate_burst_inner(sas, items, kernel)
}

#[cfg(target_arch = "x86_64")]
type Kernel = CbcKernel;
#[cfg(not(target_arch = "x86_64"))]
type Kernel = core::convert::Infallible;

fn encapsulate_burst_inner<S: BorrowMut<OutboundSa>>(
    sas: &mut [S],
    items: &mut [EncapItem<'_>],
    kernel: Option<Kernel>,
) -> Result<(), BurstError> {
    let count = sas.len();
    if let Some((item, it)) = items.iter().enumerate().find(|(_, it)| it.sa >= count) {
        return Err(BurstError::NoSuchSa {
            item,
            sa: it.sa,
            count,
        });
    }
    for group in items.chunks_mut(GROUP) {
        let mut pending = 0usize;
        for it in group.iter_mut() {
            let Some(sa) = sas.get_mut(it.sa) else {
                continue;
            };
            let sa: &mut OutboundSa = sa.borrow_mut();
            match sa.frame(it.buf, it.pkt.clone(), it.iv) {
                Ok(f) => {
                    sa.count(Ok(f.payload_len));
                    it.result = Ok(f.range.clone());
                    if kernel.is_some() && multi_buffer(sa) {
                        it.framed = Some(f);
                        pending += 1;
                    } else if let Some(esp) = it.buf.get_mut(f.esp.clone()) {
                        sa.transform().seal(esp, f.seq_hi);
                    }
                }
                Err(e) => {
                    sa.count(Err(e));
                    it.result = Err(e);
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if let (Some(k), true) = (kernel, pending > 0) {
            seal_multi(sas, group, k);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = pending;
    }
    Ok(())
}

/// True if the SA's packets go through the multi-buffer kernels.
fn multi_buffer(sa: &OutboundSa) -> bool {
    #[cfg(target_arch = "x86_64")]
    return sa.transform().aes_sha1_ni().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    return {
        let _ = sa;
        false
    };
}

/// Seals the framed items of `group`: CBC of all bodies in lock-step, then the HMACs.
#[cfg(target_arch = "x86_64")]
fn seal_multi<S: BorrowMut<OutboundSa>>(sas: &[S], group: &mut [EncapItem<'_>], k: CbcKernel) {
    use super::cbc_mb::{self, CbcStream};
    use super::integ::HMAC96_ICV_LEN;
    use super::sha1_mb::{self, HmacJob};
    const FRONT: usize = ESP_HDR_LEN + 16;

    let streams = group.iter_mut().filter_map(|it| {
        let f = it.framed.as_ref()?;
        let (keys, _) = sas.get(it.sa)?.borrow().transform().aes_sha1_ni()?;
        let esp = it.buf.get_mut(f.esp.clone())?;
        let body_end = esp.len().checked_sub(HMAC96_ICV_LEN)?;
        let (hdr_iv, rest) = esp.get_mut(..body_end)?.split_at_mut_checked(FRONT)?;
        let iv: [u8; 16] = hdr_iv.get(ESP_HDR_LEN..)?.try_into().ok()?;
        Some(CbcStream {
            keys,
            iv,
            data: rest,
        })
    });
    cbc_mb::encrypt(streams, k);
    let jobs = group.iter_mut().filter_map(|it| {
        let f = it.framed.take()?;
        let (_, key) = sas.get(it.sa)?.borrow().transform().aes_sha1_ni()?;
        let esp = it.buf.get_mut(f.esp)?;
        let body_end = esp.len().checked_sub(HMAC96_ICV_LEN)?;
        let (msg, icv) = esp.split_at_mut(body_end);
        Some(HmacJob {
            key,
            msg,
            seq_hi: f.seq_hi,
            icv,
        })
    });
    sha1_mb::hmac_sha1_96(jobs);
}
