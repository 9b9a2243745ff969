//! Burst ESP processing over several SAs, with the results of the single-packet calls.
//!
//! Outbound: each packet is framed in order (sequence number, IV, padding, trailer: exactly
//! what [`OutboundSa::encapsulate`] writes); then the hmac-sha-1-96 + aes-cbc packets are
//! sealed together by the multi-buffer kernels (CBC chains of many packets in lock-step, SHA-1
//! on 16 AVX-512 lanes or four messages interleaved on SHA-NI), short aes-gcm-16 packets two
//! at a time by the multi-packet GCM kernel, every other packet by the single-packet
//! transform.
//! Inbound: the checks that need no crypto run first for the whole burst, the hmac-sha-1-96
//! ICVs are computed multi-buffer, then each packet is finished in order (replay check again,
//! ICV compare, window update, CBC decryption 8 blocks in flight), so a duplicate inside a
//! burst is refused exactly as by [`InboundSa::decapsulate`].

use core::borrow::BorrowMut;
use core::ops::Range;

use thiserror::Error;

#[cfg(target_arch = "x86_64")]
pub use super::cbc_mb::CbcKernel;
use super::error::EspError;
use super::ip::IpLayout;
use super::sa::{Checked, Framed, InboundSa, OutboundSa};
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

/// The SAs the items of a burst name by index: a slice of SAs (or of anything that lends
/// one), or a caller's own store, such as a worker's slab of SAs where a free slot holds
/// none. An item naming an empty slot is left untouched (its `result` stays an error).
pub trait SaSlots<T> {
    /// One past the largest index that may hold an SA.
    fn slot_count(&self) -> usize;
    /// The SA at `i`, if any.
    fn slot(&self, i: usize) -> Option<&T>;
    /// The SA at `i` for writing, if any.
    fn slot_mut(&mut self, i: usize) -> Option<&mut T>;
}

impl<T, S: BorrowMut<T>> SaSlots<T> for [S] {
    fn slot_count(&self) -> usize {
        self.len()
    }
    fn slot(&self, i: usize) -> Option<&T> {
        self.get(i).map(|s| s.borrow())
    }
    fn slot_mut(&mut self, i: usize) -> Option<&mut T> {
        self.get_mut(i).map(|s| s.borrow_mut())
    }
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
    /// The packet as framed (written in place by `OutboundSa::frame_into`), meaningful
    /// while `waiting`.
    framed: Framed,
    /// Framed and waiting for a kernel pass to seal it.
    waiting: bool,
    /// The IP header as the caller parsed it (outbound), if it did.
    ip: Option<IpLayout>,
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
            framed: Framed::default(),
            waiting: false,
            ip: None,
        }
    }

    /// The same item for a packet whose header the caller parsed already (as for
    /// [`OutboundSa::encapsulate_parsed`]).
    pub fn with_parsed(mut self, ip: IpLayout) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Test hook: encapsulate with this IV, as [`OutboundSa::encapsulate_with_iv`]. A
    /// repeated IV breaks GCM: never use this with live keys.
    #[doc(hidden)]
    pub fn with_iv_for_test(mut self, iv: &'a [u8]) -> Self {
        self.iv = Some(iv);
        self
    }

    /// True if the packet waits to be sealed by a kernel pass (`framed`); it waits no more.
    /// The framing is then read in place, field by field: a copy of the whole `Framed` right
    /// after `frame_into` stored it would load wider than those stores and wait for them.
    fn take_waiting(&mut self) -> bool {
        core::mem::take(&mut self.waiting)
    }
}

/// Encapsulates every item of the burst in place with its SA; each item's `result` tells
/// the outcome. Sequence numbers and IVs are taken in item order, so several items may use
/// the same SA. Runs the fastest multi-buffer kernel this CPU has.
pub fn encapsulate_burst<S: BorrowMut<OutboundSa>>(
    sas: &mut [S],
    items: &mut [EncapItem<'_>],
) -> Result<(), BurstError> {
    encapsulate_burst_in(sas, items)
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

/// [`encapsulate_burst`] over any store of SAs (see [`SaSlots`]), with the CPU's fastest
/// kernel.
pub fn encapsulate_burst_in<S: SaSlots<OutboundSa> + ?Sized>(
    sas: &mut S,
    items: &mut [EncapItem<'_>],
) -> Result<(), BurstError> {
    #[cfg(target_arch = "x86_64")]
    let kernel = CbcKernel::detect();
    #[cfg(not(target_arch = "x86_64"))]
    let kernel = None;
    encapsulate_burst_inner(sas, items, kernel)
}

fn encapsulate_burst_inner<S: SaSlots<OutboundSa> + ?Sized>(
    sas: &mut S,
    items: &mut [EncapItem<'_>],
    kernel: Option<Kernel>,
) -> Result<(), BurstError> {
    let count = sas.slot_count();
    if let Some((item, it)) = items.iter().enumerate().find(|(_, it)| it.sa >= count) {
        return Err(BurstError::NoSuchSa {
            item,
            sa: it.sa,
            count,
        });
    }
    for group in items.chunks_mut(GROUP) {
        let mut ivs = GroupIvs::default();
        let len = group.len();
        let mut pending = 0usize;
        let mut pending_bytes = 0usize;
        // A framed short aes-gcm-16 item waiting for a second one to be sealed with.
        let mut held_gcm: Option<usize> = None;
        for i in 0..group.len() {
            prefetch_ahead(group, i, |it| (&*it.buf, it.pkt.start));
            let it = &mut group[i];
            let Some(sa) = sas.slot_mut(it.sa) else {
                continue;
            };
            let mut gcm_pair = None;
            // A multi-buffer SA's packet is aes-cbc: its 16-byte IV from the group's draw.
            let iv = match it.iv {
                None if kernel.is_some() && multi_buffer(sa) => Some(ivs.take(len - i).as_slice()),
                iv => iv,
            };
            // Framed in place in the item (`frame_into`: no copy of a fresh result).
            match sa.frame_into(it.buf, it.pkt.clone(), iv, it.ip.as_ref(), &mut it.framed) {
                Ok(()) => {
                    let f = &it.framed;
                    sa.count(Ok(f.payload_len()));
                    it.result = Ok(f.range());
                    let esp = f.esp();
                    if kernel.is_some() && multi_buffer(sa) {
                        pending_bytes += esp.len();
                        it.waiting = true;
                        pending += 1;
                    } else if kernel.is_some() && gcm_short(sa, esp.len()) {
                        it.waiting = true;
                        match held_gcm.take() {
                            Some(h) => gcm_pair = Some(h),
                            None => held_gcm = Some(i),
                        }
                    } else if !seal_gcm(sa, it.buf, &it.framed) {
                        if let Some(body) = it.buf.get_mut(esp) {
                            sa.transform().seal(body, it.framed.seq_hi());
                        }
                    }
                }
                Err(e) => {
                    sa.count(Err(e));
                    it.result = Err(e);
                }
            }
            // Sealed here, between the framings, rather than after the loop: the pair's
            // arithmetic runs while the next packets' first lines arrive.
            #[cfg(target_arch = "x86_64")]
            if let Some(h) = gcm_pair {
                seal_gcm_items(sas, group, h, Some(i));
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = gcm_pair;
        }
        // GCM first: `seal_multi` takes every framed item it finds.
        #[cfg(target_arch = "x86_64")]
        if let Some(h) = held_gcm {
            seal_gcm_items(sas, group, h, None);
        }
        #[cfg(target_arch = "x86_64")]
        if let (Some(k), true) = (kernel, pending > 0) {
            if multi_pays(pending, pending_bytes, Direction::Out) {
                seal_multi(sas, group, k);
            } else {
                seal_each(sas, group);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (pending, pending_bytes, held_gcm);
    }
    Ok(())
}

/// The unpredictable CBC IVs (RFC 3602 2.1) of a group's multi-buffer packets, drawn from
/// the thread's source in one call at the first packet that needs one, as many as the
/// group has packets left: one thread-local access a group, not one a packet. IVs drawn and
/// not used (other packets of the group took another path, or failed to frame) are never
/// sent, and are wiped on drop.
#[derive(Default)]
struct GroupIvs {
    ivs: [[u8; 16]; GROUP],
    next: usize,
    drawn: usize,
}

impl GroupIvs {
    /// The next IV; `left` is how many packets of the group are left, this one included
    /// (each takes at most one IV, so one draw serves the group).
    #[inline]
    fn take(&mut self, left: usize) -> &[u8; 16] {
        if self.next >= self.drawn {
            let n = left.clamp(1, GROUP);
            super::iv::fill_unpredictable16(&mut self.ivs[..n]);
            (self.next, self.drawn) = (0, n);
        }
        let iv = &self.ivs[self.next];
        self.next += 1;
        iv
    }
}

impl Drop for GroupIvs {
    fn drop(&mut self) {
        for iv in self.ivs.get_mut(self.next..self.drawn).unwrap_or_default() {
            zeroize::Zeroize::zeroize(iv);
        }
    }
}

/// Packets ahead of the one being framed or checked whose first line is asked for: the
/// first touch of a packet's header is a cache miss when its bytes were written long before
/// (criterion's batched setup; a NIC's DMA), and a few packets' worth of framing hides it.
const PREFETCH_PACKETS: usize = 4;

/// Asks the cache for the first line of the packet [`PREFETCH_PACKETS`] items after `i`
/// (`at`: its buffer and where the packet starts in it).
fn prefetch_ahead<T>(group: &[T], i: usize, at: impl Fn(&T) -> (&[u8], usize)) {
    if let Some(ahead) = group.get(i + PREFETCH_PACKETS) {
        let (buf, start) = at(ahead);
        crate::sad::prefetch(buf.as_ptr().wrapping_add(start));
    }
}

/// Which way a burst goes, for [`multi_pays`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

/// True if the multi-buffer hmac-sha-1-96 + aes-cbc kernels pay for `n` packets of `bytes`
/// ESP bytes in all, going `dir`, on this CPU (see [`multi_pays_with`]).
fn multi_pays(n: usize, bytes: usize, dir: Direction) -> bool {
    #[cfg(target_arch = "x86_64")]
    let from = super::sha1_x16::available()
        .then(|| super::sha1_x16::Crossing::get().burst)
        .flatten();
    #[cfg(not(target_arch = "x86_64"))]
    let from = None;
    multi_pays_with(from, n, bytes, dir)
}

/// [`multi_pays`] given the CPU's fewest packets for the kernels whatever their length
/// (`from`, [`Crossing::burst`](super::sha1_x16::Crossing)), if known; else the rule
/// measured on AMD Zen 4. Below these sizes the kernels' set-up (sixteen lanes' key table
/// for CBC, the lane scheduler, the 16-lane HMAC's transposes) costs more than the
/// single-packet path (stitched AES-NI + SHA-NI). On Zen 4 a lone 60-byte packet cost 5x
/// outbound and 3.6x inbound through them, a lone 1400-byte one 2.8x and 1.4x, where a burst
/// of 32 costs 0.31-0.54x (docs/BENCHMARKS.md *The SA install and small bursts, round 10
/// (lead)*); on Intel, whose SHA-NI is slower, the kernels pay from six packets of any
/// length (*Burst crypto, round 11*), and from one or two packets fewer if they are long:
/// the 8-lane HMAC (`sha1_x8`) takes four or five long lanes, and five inbound packets of
/// 800 bytes or more, four of 1200 or more, or five outbound of 1200 or more, cost less
/// through the kernels than on the single path (*Small-burst and single-packet HMAC, round
/// 12*; *CBC + HMAC-SHA-1, round 13*). A worker sends a few packets per poll at light
/// load, and the registration path's bursts are of one to three.
fn multi_pays_with(from: Option<usize>, n: usize, bytes: usize, dir: Direction) -> bool {
    if let Some(from) = from {
        let mean_at_least = |mean: usize| bytes >= mean * n;
        return n >= from
            || (n + 1 == from && mean_at_least(if dir == Direction::In { 800 } else { 1200 }))
            || (n + 2 == from && dir == Direction::In && mean_at_least(1200));
    }
    let at_least = |count: usize, mean: usize| n >= count && bytes >= mean * n;
    match dir {
        Direction::Out => n >= 9 || at_least(6, 300) || at_least(4, 700),
        Direction::In => n >= 9 || at_least(4, 300) || at_least(3, 700) || at_least(2, 1200),
    }
}

/// Seals each framed item of `group` through the single-packet transform.
#[cfg(target_arch = "x86_64")]
fn seal_each<S: SaSlots<OutboundSa> + ?Sized>(sas: &S, group: &mut [EncapItem<'_>]) {
    for it in group.iter_mut() {
        if !it.take_waiting() {
            continue;
        }
        let f = &it.framed;
        if let (Some(sa), Some(esp)) = (sas.slot(it.sa), it.buf.get_mut(f.esp())) {
            sa.transform().seal(esp, f.seq_hi());
        }
    }
}

/// Seals the framed item `f` of `buf` straight through the aes-gcm-16 kernel
/// ([`OutboundSa::seal_gcm`]); false (nothing done) where that does not apply.
#[inline(always)]
fn seal_gcm(sa: &OutboundSa, buf: &mut [u8], f: &Framed) -> bool {
    #[cfg(target_arch = "x86_64")]
    return sa.seal_gcm(buf, f);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (sa, buf, f);
        false
    }
}

/// True if the SA's packets go through the multi-buffer kernels.
fn multi_buffer(sa: &OutboundSa) -> bool {
    multi_buffer_transform(sa.transform())
}

/// True if packets under `t` (hmac-sha-1-96 + aes-cbc with AES-NI and SHA-NI) go through the
/// multi-buffer kernels, either way.
fn multi_buffer_transform(t: &super::transform::Transform) -> bool {
    #[cfg(target_arch = "x86_64")]
    return t.aes_sha1_ni().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    return {
        let _ = t;
        false
    };
}

/// True if the SA is aes-gcm-16 on the 512- or 256-bit path and its ESP packet of `esp_len`
/// bytes (header, IV, body, ICV) is short enough for that path's multi-packet GCM kernel.
fn gcm_short(sa: &OutboundSa, esp_len: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return sa
        .transform()
        .gcm_ni()
        .is_some_and(|(_, g)| g.seals_short(esp_len.saturating_sub(32)));
    #[cfg(not(target_arch = "x86_64"))]
    return {
        let _ = (sa, esp_len);
        false
    };
}

/// Seals the framed short aes-gcm-16 item `a` of `group`, with item `b` (after it) in the
/// same multi-packet kernel call if given: one packet's AES, multiplies and reduction are a
/// serial chain, two chains side by side hide each other's latency.
#[cfg(target_arch = "x86_64")]
fn seal_gcm_items<S: SaSlots<OutboundSa> + ?Sized>(
    sas: &S,
    group: &mut [EncapItem<'_>],
    a: usize,
    b: Option<usize>,
) {
    use super::gcm_ni::{seal_esp_many, EspSeal};
    fn job<'a, S: SaSlots<OutboundSa> + ?Sized>(
        sas: &'a S,
        it: &'a mut EncapItem<'_>,
    ) -> Option<EspSeal<'a>> {
        let (salt, g) = sas.slot(it.sa)?.transform().gcm_ni()?;
        if !it.take_waiting() {
            return None;
        }
        let f = &it.framed;
        Some(EspSeal {
            g,
            salt,
            seq_hi: f.seq_hi(),
            esp: it.buf.get_mut(f.esp())?,
        })
    }
    let (first, second) = match b {
        Some(b) if a < b && b < group.len() => {
            let (x, y) = group.split_at_mut(b);
            (x.get_mut(a), y.first_mut())
        }
        _ => (group.get_mut(a), None),
    };
    let ja = first.and_then(|it| job(sas, it));
    let jb = second.and_then(|it| job(sas, it));
    match (ja, jb) {
        (Some(x), Some(y)) => seal_esp_many([x, y]),
        (Some(x), None) | (None, Some(x)) => seal_esp_many([x]),
        (None, None) => {}
    }
}

/// Seals the framed items of `group`: CBC of all bodies in lock-step, then the HMACs.
#[cfg(target_arch = "x86_64")]
fn seal_multi<S: SaSlots<OutboundSa> + ?Sized>(sas: &S, group: &mut [EncapItem<'_>], k: CbcKernel) {
    use super::cbc_mb::{self, CbcStream};
    use super::integ::HMAC96_ICV_LEN;
    use super::sha1_mb::HmacJob;
    use super::sha1_x16;
    const FRONT: usize = ESP_HDR_LEN + 16;

    let streams = group.iter_mut().filter_map(|it| {
        let f = it.waiting.then_some(&it.framed)?;
        let (keys, _) = sas.slot(it.sa)?.transform().aes_sha1_ni()?;
        let esp = it.buf.get_mut(f.esp())?;
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
        if !it.take_waiting() {
            return None;
        }
        let f = &it.framed;
        let (_, key) = sas.slot(it.sa)?.transform().aes_sha1_ni()?;
        let esp = it.buf.get_mut(f.esp())?;
        let body_end = esp.len().checked_sub(HMAC96_ICV_LEN)?;
        let (msg, icv) = esp.split_at_mut(body_end);
        Some(HmacJob {
            key,
            msg,
            seq_hi: f.seq_hi(),
            icv,
        })
    });
    sha1_x16::hmac_sha1_96(jobs);
}

/// Where an inbound burst item is.
#[derive(Debug)]
enum Stage {
    /// Not looked at yet, or done.
    Idle,
    /// Passed the checks that need no crypto.
    Checked(Checked),
    /// ESN SA: decapsulated whole at its turn (the inferred sequence number depends on the
    /// window as earlier packets of the burst leave it).
    Deferred,
}

/// One ESP packet of an inbound burst: its SA, its buffer and the ESP packet's range in it.
#[derive(Debug)]
pub struct DecapItem<'a> {
    /// Index of the packet's SA in the `sas` slice given to [`decapsulate_burst`].
    pub sa: usize,
    /// The packet buffer.
    pub buf: &'a mut [u8],
    /// The IP packet (carrying ESP) in `buf`.
    pub pkt: Range<usize>,
    /// Set by [`decapsulate_burst`]: the restored IP packet's range in `buf`, or why it was
    /// dropped (counted in the SA's counters, as by `decapsulate`).
    pub result: Result<Range<usize>, EspError>,
    stage: Stage,
    icv: Option<[u8; 12]>,
    /// The IP header as the caller parsed (and checked) it, if it did.
    ip: Option<IpLayout>,
}

impl<'a> DecapItem<'a> {
    /// An ESP packet `buf[pkt]` for the SA at index `sa` (found by the caller from its SPI).
    pub fn new(sa: usize, buf: &'a mut [u8], pkt: Range<usize>) -> Self {
        Self {
            sa,
            buf,
            pkt,
            result: Err(EspError::Truncated),
            stage: Stage::Idle,
            icv: None,
            ip: None,
        }
    }

    /// The same item for a packet whose header the caller parsed already (as for
    /// [`InboundSa::decapsulate_parsed`]: IPv4 checksum verified, no fragment).
    pub fn with_parsed(mut self, ip: IpLayout) -> Self {
        self.ip = Some(ip);
        self
    }

    /// After the burst: the restored packet's range and its header as parsed (same
    /// addresses, the ESP trailer's next header, the new length), for an item made
    /// [`with_parsed`](Self::with_parsed) that was decapsulated. Inlined: returned through
    /// memory, its header is copied with wider loads than the stores that wrote it, and that
    /// load waits for the store buffer to drain (the decryption's and the last packet's
    /// copies into its socket) instead of being forwarded.
    #[inline]
    pub fn parsed_result(&self) -> Option<(Range<usize>, IpLayout)> {
        let r = self.result.clone().ok()?;
        let ip = self.ip?;
        let next_header = *self.buf.get(r.start + ip.next_header_at)?;
        Some((r.clone(), ip.with_payload(next_header, r.len())))
    }
}

/// Decapsulates every item of the burst in place with its SA; each item's `result` tells
/// the outcome, exactly as [`InboundSa::decapsulate`] on each item in turn would.
pub fn decapsulate_burst<S: BorrowMut<InboundSa>>(
    sas: &mut [S],
    items: &mut [DecapItem<'_>],
) -> Result<(), BurstError> {
    decapsulate_burst_with(sas, items, true)
}

/// [`decapsulate_burst`] with the multi-buffer HMAC switched off (`multi == false`: every
/// packet through the single-packet path), for tests and benchmarks.
#[doc(hidden)]
pub fn decapsulate_burst_with<S: BorrowMut<InboundSa>>(
    sas: &mut [S],
    items: &mut [DecapItem<'_>],
    multi: bool,
) -> Result<(), BurstError> {
    decapsulate_burst_inner(sas, items, multi)
}

/// [`decapsulate_burst`] over any store of SAs (see [`SaSlots`]).
pub fn decapsulate_burst_in<S: SaSlots<InboundSa> + ?Sized>(
    sas: &mut S,
    items: &mut [DecapItem<'_>],
) -> Result<(), BurstError> {
    decapsulate_burst_inner(sas, items, true)
}

fn decapsulate_burst_inner<S: SaSlots<InboundSa> + ?Sized>(
    sas: &mut S,
    items: &mut [DecapItem<'_>],
    multi: bool,
) -> Result<(), BurstError> {
    let count = sas.slot_count();
    if let Some((item, it)) = items.iter().enumerate().find(|(_, it)| it.sa >= count) {
        return Err(BurstError::NoSuchSa {
            item,
            sa: it.sa,
            count,
        });
    }
    for group in items.chunks_mut(GROUP) {
        let mut checked = 0usize;
        let mut checked_bytes = 0usize;
        for i in 0..group.len() {
            prefetch_ahead(group, i, |it| (&*it.buf, it.pkt.start));
            let it = &mut group[i];
            let Some(sa) = sas.slot_mut(it.sa) else {
                continue;
            };
            if sa.esn() {
                it.stage = Stage::Deferred;
                continue;
            }
            // Non-ESN: the window only moves forward, so a packet refused now would be
            // refused at its turn too.
            // Checked in place in the item (`precheck_into`: no copy of a fresh result).
            it.stage = Stage::Checked(Checked::default());
            let Stage::Checked(c) = &mut it.stage else {
                continue;
            };
            if let Err(e) = sa.precheck_into(it.buf, it.pkt.clone(), it.ip.as_ref(), c) {
                it.stage = Stage::Idle;
                sa.count(Err(e));
                it.result = Err(e);
            } else if multi_buffer_transform(sa.transform()) {
                // Only the packets the kernels would take count towards `multi_pays`, as
                // outbound (an aes-gcm-16 packet is finished by the single path either way).
                checked += 1;
                checked_bytes += it.pkt.len();
            }
        }
        #[cfg(target_arch = "x86_64")]
        if multi && multi_pays(checked, checked_bytes, Direction::In) {
            icvs_multi(sas, group);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (multi, checked, checked_bytes);
        for it in group.iter_mut() {
            let Some(sa) = sas.slot_mut(it.sa) else {
                continue;
            };
            match &it.stage {
                Stage::Idle => continue,
                // The result written into the item (`finish_into`), not returned and copied.
                Stage::Checked(c) => {
                    #[cfg(target_arch = "x86_64")]
                    let done = match it.icv.as_ref() {
                        Some(icv) => sa.finish_cbc_into(it.buf, c, icv, &mut it.result),
                        None => sa.finish_gcm_into(it.buf, c, &mut it.result),
                    };
                    #[cfg(not(target_arch = "x86_64"))]
                    let done = false;
                    if !done {
                        sa.finish_into(it.buf, c, it.icv.as_ref(), &mut it.result);
                    }
                }
                Stage::Deferred => match sa.precheck(it.buf, it.pkt.clone(), it.ip.as_ref()) {
                    Ok(c) => sa.finish_into(it.buf, &c, None, &mut it.result),
                    Err(e) => {
                        sa.count(Err(e));
                        it.result = Err(e);
                    }
                },
            }
            it.stage = Stage::Idle;
            if let Some(icv) = it.icv.as_mut() {
                zeroize::Zeroize::zeroize(icv);
            }
            it.icv = None;
        }
    }
    Ok(())
}

/// Computes the expected ICVs of the checked hmac-sha-1-96 + aes-cbc items of `group`
/// multi-buffer; the single path checks the others (and lengths it refuses).
#[cfg(target_arch = "x86_64")]
fn icvs_multi<S: SaSlots<InboundSa> + ?Sized>(sas: &S, group: &mut [DecapItem<'_>]) {
    use super::integ::HMAC96_ICV_LEN;
    use super::sha1_mb::HmacJob;
    use super::sha1_x16;
    const FRONT: usize = ESP_HDR_LEN + 16;

    let jobs = group.iter_mut().filter_map(|it| {
        let Stage::Checked(c) = &it.stage else {
            return None;
        };
        let sa: &InboundSa = sas.slot(it.sa)?;
        let (_, key) = sa.transform().aes_sha1_ni()?;
        let esp = it.buf.get(c.esp())?;
        let msg = esp.get(..esp.len().checked_sub(HMAC96_ICV_LEN)?)?;
        // RFC 4303 2.4: whole cipher blocks, else the single path refuses it (BadLength).
        if msg.len() < FRONT || !(msg.len() - FRONT).is_multiple_of(16) {
            return None;
        }
        let icv = it.icv.insert([0; HMAC96_ICV_LEN]);
        Some(HmacJob {
            key,
            msg,
            seq_hi: sa.seq_hi(c.seq),
            icv,
        })
    });
    sha1_x16::hmac_sha1_96_cold(jobs);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lone packet or a handful of short ones takes the single path; a full burst, or a
    /// few long packets, the multi-buffer kernels; more packets or longer ones never turn
    /// the kernels off again. Both rules: Zen 4's (by count and bytes) and Intel's (by count,
    /// and one or two packets fewer if they are long).
    #[test]
    fn small_bursts_take_the_single_path() {
        for from in [None, Some(6)] {
            for dir in [Direction::In, Direction::Out] {
                let pays = |n: usize, bytes: usize| multi_pays_with(from, n, bytes, dir);
                for len in [60, 200, 800, 1400, 9000] {
                    assert!(!pays(1, len), "one packet of {len}");
                    assert!(!pays(3, 3 * 200), "three of 200");
                    assert!(pays(9, 9 * len), "nine of {len}");
                    assert!(pays(32, 32 * len), "32 of {len}");
                    // Four long ones: the kernels on Zen 4 either way, on Intel inbound only.
                    assert_eq!(
                        pays(4, 4 * 1400),
                        from.is_none() || dir == Direction::In,
                        "four of 1400"
                    );
                    assert_eq!(pays(5, 5 * 800), from.is_none() || dir == Direction::In);
                    if from.is_some() {
                        // Intel: below six, only long packets; never three or fewer.
                        assert!(!pays(5, 5 * 400), "five of 400");
                        assert!(!pays(4, 4 * 1100), "four of 1100");
                        assert!(!pays(3, 3 * 9000), "three of 9000");
                        assert!(pays(5, 5 * 1200), "five of 1200");
                    }
                    assert_eq!(pays(6, 6 * 60), from.is_some(), "six of 60");
                    for n in 1..40 {
                        if pays(n, n * len) {
                            assert!(pays(n + 1, (n + 1) * len));
                            assert!(pays(n, n * (len + 100)));
                        }
                    }
                }
            }
        }
    }

    /// This CPU's rule is one of the two above.
    #[test]
    fn the_cpus_rule_is_used() {
        for (n, len) in [(1, 60), (4, 1400), (5, 200), (6, 60), (8, 1400), (9, 60)] {
            for dir in [Direction::In, Direction::Out] {
                let got = multi_pays(n, n * len, dir);
                let zen = multi_pays_with(None, n, n * len, dir);
                let intel = multi_pays_with(Some(6), n, n * len, dir);
                #[cfg(target_arch = "x86_64")]
                let want = if super::super::sha1_x16::available()
                    && super::super::sha1_x16::Crossing::get().burst.is_some()
                {
                    intel
                } else {
                    zen
                };
                #[cfg(not(target_arch = "x86_64"))]
                let want = zen;
                assert_eq!(got, want, "{n} x {len}");
            }
        }
    }
}
