//! Outbound and inbound ESP security associations: transport-mode encapsulation and
//! decapsulation in place on a packet buffer (RFC 4303 3.3 and 3.4).
//!
//! A packet is `buf[range]`, an IP packet with headroom before and tailroom after it.
//! Encapsulation moves only the IP header (and IPv6 extension headers before ESP) into the
//! headroom, never the payload, and writes padding, trailer and ICV into the tailroom.

use core::ops::Range;

use rand::RngCore;

use super::error::{EspCounters, EspError, SaError};
use super::integ::HMAC96_ICV_LEN;
use super::ip::{self, IpLayout, IPPROTO_ESP};
use super::iv;
use super::replay::{ReplayWindow, REPLAY_WINDOW};
use super::suite::Suite;
use super::transform::{Geometry, Transform, ESP_HDR_LEN};

/// Largest ESP header + IV any suite puts in front of the payload.
pub const MAX_HEADROOM: usize = ESP_HDR_LEN + 16;
/// Largest padding + trailer + ICV any suite appends (AES-CBC: 15 + 2 + 12; GCM: 3 + 2 + 16).
pub const MAX_TAILROOM: usize = 29;

/// Next-header value of a dummy packet (RFC 4303 2.6).
const NH_DUMMY: u8 = 59;

/// Refuses the SPIs no SA may have (RFC 4303 2.1).
pub(crate) fn check_spi(spi: u32) -> Result<(), SaError> {
    // RFC 4303 2.1: 1..=255 reserved by IANA, 0 for local use only.
    if spi <= 255 {
        Err(SaError::ReservedSpi(spi))
    } else {
        Ok(())
    }
}

/// An outbound SA's counter-IV mask, drawn from `seeds` (see `OutboundSa::iv_mask`).
pub(crate) fn iv_mask_from(mut seeds: impl RngCore) -> Result<u64, SaError> {
    let mut mask = [0u8; 8];
    seeds
        .try_fill_bytes(&mut mask)
        .map_err(|_| SaError::Entropy)?;
    Ok(u64::from_ne_bytes(mask))
}

/// SPI of an ESP packet (the first four bytes after the IP and extension headers), for the
/// SA lookup that precedes [`InboundSa::decapsulate`]. Validates only the IP framing.
pub fn peek_spi(pkt: &[u8]) -> Result<u32, EspError> {
    spi_of(pkt, &ip::layout(pkt)?)
}

/// [`peek_spi`] of the packet `ip` was parsed from (inbound), without parsing it again.
pub fn spi_of(pkt: &[u8], ip: &IpLayout) -> Result<u32, EspError> {
    if ip.next_header != IPPROTO_ESP {
        return Err(EspError::NotEsp);
    }
    let esp = pkt
        .get(ip.payload_offset..ip.len)
        .ok_or(EspError::Truncated)?;
    let esp = crate::wire::EspPacket::new_checked(esp).map_err(|_| EspError::Truncated)?;
    Ok(esp.security_parameters_index())
}

/// What ESP needs of the packet's header ([`ip::Headers`]): from the parsed header a
/// caller passed along, checked to fit `pkt` and to be no fragment; else read from `pkt`
/// (`dir`: which headers ESP goes after). 24 bytes by value, where copying the whole
/// [`IpLayout`] per packet stalled on store forwarding.
#[inline(always)]
fn headers_of(
    pkt: &[u8],
    ip: Option<&IpLayout>,
    dir: ip::Direction,
) -> Result<ip::Headers, EspError> {
    match ip {
        Some(ip) if !ip.fits(pkt.len()) => Err(EspError::BadIpHeader),
        Some(ip) if ip.fragment.is_some() => Err(EspError::Fragment),
        Some(ip) => Ok(ip::Headers::of(ip)),
        None => ip::headers(pkt, dir),
    }
}

/// A suite keyed once: its key schedules, HMAC pad states and GHASH powers, for every SA
/// that uses its keys. TS 33.203 7.1 gives the four SAs of a set the same keys (IK_ESP and
/// CK_ESP), so a set is keyed once and each SA takes a copy ([`InboundSa::keyed`],
/// [`OutboundSa::keyed`]). Key material: never printed, zeroized on drop.
pub struct KeyedSuite(Transform);

impl KeyedSuite {
    /// Keys `suite` (fails as an SA of it would: a bad key length, an unsupported suite).
    pub fn new(suite: &Suite) -> Result<Self, SaError> {
        Ok(KeyedSuite(Transform::new(suite)?))
    }

    /// [`InboundSa::transform_lines`] of an inbound SA of this suite.
    pub fn transform_lines(&self) -> u8 {
        InboundSa::lines_of(&self.0)
    }
}

impl core::fmt::Debug for KeyedSuite {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyedSuite")
            .field("geometry", &self.0.geometry())
            .finish_non_exhaustive()
    }
}

/// An outbound SA: sequence-number counter, IV rule and keyed transform.
pub struct OutboundSa {
    spi: u32,
    /// Last sequence number sent (0: none yet); 64-bit with ESN.
    seq: u64,
    /// The largest sequence number this SA may send ([`OutboundSa::resume`]); the end of the
    /// 32-bit (or with ESN 64-bit) space otherwise.
    seq_limit: u64,
    /// Extended (64-bit) sequence numbers negotiated (RFC 4303 2.2.1).
    esn: bool,
    transform: Transform,
    geometry: Geometry,
    /// GCM/GMAC: the random mask of this SA's counter IVs (`iv::counter_iv`: the four SAs of
    /// a set share key and salt). CBC IVs come from the thread's CSPRNG instead.
    iv_mask: u64,
    counters: EspCounters,
}

impl core::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("seq", &self.seq)
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

impl OutboundSa {
    /// Builds the SA for `spi` (the peer's inbound SPI) from the negotiated suite.
    pub fn new(spi: u32, suite: &Suite) -> Result<Self, SaError> {
        Self::seeded_from(spi, suite, rand::rngs::OsRng)
    }

    /// As [`OutboundSa::new`], the SA's GCM/GMAC IV mask drawn from `seeds` (a CSPRNG, such
    /// as one per worker seeded from the OS) instead of a `getrandom` system call per SA.
    pub fn seeded_from(spi: u32, suite: &Suite, seeds: impl RngCore) -> Result<Self, SaError> {
        check_spi(spi)?;
        Self::with_transform(spi, Transform::new(suite)?, seeds)
    }

    /// As [`OutboundSa::seeded_from`] with the suite keyed already ([`KeyedSuite`]: the
    /// SAs of one set share their keys, so they are scheduled once for the four).
    #[inline(always)]
    pub fn keyed(spi: u32, keyed: &KeyedSuite, seeds: impl RngCore) -> Result<Self, SaError> {
        check_spi(spi)?;
        Self::with_transform(spi, keyed.0.clone(), seeds)
    }

    /// As [`OutboundSa::keyed`], taking the keyed suite itself (the last SA of a set: no
    /// copy, and no copy left to zeroize).
    #[inline(always)]
    pub fn keyed_owned(spi: u32, keyed: KeyedSuite, seeds: impl RngCore) -> Result<Self, SaError> {
        check_spi(spi)?;
        Self::with_transform(spi, keyed.0, seeds)
    }

    /// The SA for a checked `spi` around its keyed `transform`.
    #[inline(always)]
    fn with_transform(
        spi: u32,
        transform: Transform,
        seeds: impl RngCore,
    ) -> Result<Self, SaError> {
        Ok(Self::with_mask(spi, transform, iv_mask_from(seeds)?))
    }

    /// The SA for a checked `spi` around its keyed `transform`, its counter IVs masked with
    /// `iv_mask` ([`iv_mask_from`]).
    #[inline(always)]
    fn with_mask(spi: u32, transform: Transform, iv_mask: u64) -> Self {
        Self {
            spi,
            seq: 0,
            seq_limit: u64::MAX,
            esn: false,
            geometry: transform.geometry(),
            transform,
            iv_mask,
            counters: EspCounters::default(),
        }
    }

    /// As [`OutboundSa::keyed`] then [`OutboundSa::resume`] at `seq`, for an `spi` the
    /// caller checked ([`check_spi`]) and an IV mask it drew ([`iv_mask_from`]): infallible,
    /// so the worker builds it in the slab cell it goes to (`SaSlab::insert_with`) instead of
    /// moving a finished SA there.
    #[inline(always)]
    pub(crate) fn from_keyed(
        spi: u32,
        keyed: &KeyedSuite,
        iv_mask: u64,
        seq: akagate_proto::ipc::OutboundSeq,
    ) -> Self {
        debug_assert!(check_spi(spi).is_ok());
        let mut sa = Self::with_mask(spi, keyed.0.clone(), iv_mask);
        sa.seq = seq.after;
        sa.seq_limit = seq.limit;
        sa
    }

    /// As [`OutboundSa::from_keyed`], taking the keyed suite itself (the set's last SA).
    #[inline(always)]
    pub(crate) fn from_keyed_owned(
        spi: u32,
        keyed: KeyedSuite,
        iv_mask: u64,
        seq: akagate_proto::ipc::OutboundSeq,
    ) -> Self {
        debug_assert!(check_spi(spi).is_ok());
        let mut sa = Self::with_mask(spi, keyed.0, iv_mask);
        sa.seq = seq.after;
        sa.seq_limit = seq.limit;
        sa
    }

    /// Switches the SA to extended sequence numbers (RFC 4303 2.2.1; not negotiated by
    /// TS 33.203, offered for completeness). Not available with AES-GMAC.
    pub fn with_esn(mut self) -> Result<Self, SaError> {
        if !self.transform.supports_esn() {
            return Err(SaError::UnsupportedSuite);
        }
        self.esn = true;
        Ok(self)
    }

    /// Confines the SA to the sequence numbers after `seq.after` up to `seq.limit` (a set
    /// restored after a restart sends only numbers no earlier run sent, RFC 4303 3.3.3; see
    /// [`OutboundSeq`](akagate_proto::ipc::OutboundSeq)). Beyond the limit `encapsulate`
    /// fails with `SeqExhausted`.
    #[inline(always)]
    pub fn resume(mut self, seq: akagate_proto::ipc::OutboundSeq) -> Self {
        self.seq = self.seq.max(seq.after);
        self.seq_limit = seq.limit;
        self
    }

    /// SPI written into every packet.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Last sequence number sent (0 before the first packet).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Packet and drop counters of this SA.
    pub fn counters(&self) -> &EspCounters {
        &self.counters
    }

    /// Headroom this SA needs in front of the IP packet (ESP header + IV).
    pub fn headroom(&self) -> usize {
        ESP_HDR_LEN + self.geometry.iv_len
    }

    /// Worst-case tailroom this SA needs after the IP packet (padding + trailer + ICV).
    pub fn tailroom(&self) -> usize {
        self.geometry.align - 1 + 2 + self.geometry.icv_len
    }

    /// Test hook: sets the last sequence number sent, e.g. to exercise exhaustion. Moving it
    /// backwards would reuse sequence numbers (and, for GCM, nonces): never do that with live
    /// keys.
    #[doc(hidden)]
    pub fn set_last_seq_for_test(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Encapsulates the IP packet `buf[pkt]` in place and returns the range of the ESP packet.
    pub fn encapsulate(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
    ) -> Result<Range<usize>, EspError> {
        self.encapsulate_inner(buf, pkt, None, None)
    }

    /// [`encapsulate`](Self::encapsulate) of a packet whose header the caller has parsed
    /// already (`ip`, from [`IpRepr::parse`](crate::wire::IpRepr::parse) of `buf[pkt]` with
    /// [`Direction::Outbound`](crate::wire::Direction::Outbound)): the header is not parsed
    /// again.
    pub fn encapsulate_parsed(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        ip: &IpLayout,
    ) -> Result<Range<usize>, EspError> {
        self.encapsulate_inner(buf, pkt, None, Some(ip))
    }

    /// [`encapsulate`](Self::encapsulate) with a caller-chosen IV, for known-answer tests
    /// (RFC 3602 section 4, draft-mcgrew-gcm-test-01). A repeated IV breaks GCM: never use this
    /// with live keys.
    #[doc(hidden)]
    pub fn encapsulate_with_iv(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        iv: &[u8],
    ) -> Result<Range<usize>, EspError> {
        self.encapsulate_inner(buf, pkt, Some(iv), None)
    }

    fn encapsulate_inner(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        iv: Option<&[u8]>,
        ip: Option<&IpLayout>,
    ) -> Result<Range<usize>, EspError> {
        match self.encap(buf, pkt, iv, ip) {
            Ok((r, payload)) => {
                self.counters.packets += 1;
                self.counters.bytes += payload as u64;
                Ok(r)
            }
            Err(e) => {
                self.counters.count(e);
                Err(e)
            }
        }
    }

    fn encap(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        iv: Option<&[u8]>,
        ip: Option<&IpLayout>,
    ) -> Result<(Range<usize>, usize), EspError> {
        let f = self.frame(buf, pkt, iv, ip)?;
        self.transform.seal(&mut buf[f.esp()], f.seq_hi());
        Ok((f.range(), f.payload_len()))
    }

    /// The keyed transform, for the burst path (`burst`).
    pub(super) fn transform(&self) -> &Transform {
        &self.transform
    }

    /// Counts the outcome of one packet of a burst, as `encapsulate` does.
    pub(super) fn count(&mut self, r: Result<usize, EspError>) {
        match r {
            Ok(payload) => {
                self.counters.packets += 1;
                self.counters.bytes += payload as u64;
            }
            Err(e) => self.counters.count(e),
        }
    }

    /// Everything of an encapsulation but the cipher and the ICV: IP header moved, ESP header
    /// (SPI, next sequence number), IV, padding and trailer written, IP header fixed up. The
    /// caller then seals `buf[esp]` (header, IV, plaintext body, ICV space) with
    /// [`Transform::seal`] or a burst kernel. `ip`: the packet's header if the caller parsed
    /// it already.
    pub(super) fn frame(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        iv: Option<&[u8]>,
        ip: Option<&IpLayout>,
    ) -> Result<Framed, EspError> {
        let mut f = Framed::default();
        self.frame_inline(buf, pkt, iv, ip, &mut f)?;
        Ok(f)
    }

    /// As [`frame`](Self::frame), the result written into `out` (a burst's item) instead of
    /// returned, for the reason given at [`InboundSa::precheck_into`]; `out` is unspecified
    /// on error. Never inlined: inlined into the burst's loop, it made that loop slower.
    #[inline(never)]
    pub(super) fn frame_into(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        iv: Option<&[u8]>,
        ip: Option<&IpLayout>,
        out: &mut Framed,
    ) -> Result<(), EspError> {
        self.frame_inline(buf, pkt, iv, ip, out)
    }

    /// Seals the framed packet `f` of `buf` (as [`Transform::seal`]) straight through the
    /// aes-gcm-16 kernel on AES-NI, for the burst path: no geometry look-up, no enum
    /// dispatch, the header and IV read where they lie. False (nothing done) for any other
    /// transform, which the caller seals through [`Transform::seal`].
    #[cfg(target_arch = "x86_64")]
    pub(super) fn seal_gcm(&self, buf: &mut [u8], f: &Framed) -> bool {
        let Some((salt, aead)) = self.transform.gcm_ni() else {
            return false;
        };
        let Some((hdr_iv, rest)) = buf
            .get_mut(f.esp())
            .and_then(|esp| esp.split_first_chunk_mut::<COUNTER_FRONT>())
        else {
            return false;
        };
        let Some((body, icv)) = rest.split_last_chunk_mut::<16>() else {
            return false;
        };
        *icv = aead.seal_esp(salt, hdr_iv, f.seq_hi(), body);
        true
    }

    #[inline(always)]
    fn frame_inline(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        iv: Option<&[u8]>,
        ip: Option<&IpLayout>,
        out: &mut Framed,
    ) -> Result<(), EspError> {
        let g = self.geometry;
        let ip_pkt = buf.get(pkt.clone()).ok_or(EspError::Truncated)?;
        let lay = headers_of(ip_pkt, ip, ip::Direction::Outbound)?;
        let (fix, next_header) = (lay.fix, lay.next_header);
        let hdr_len = fix.hdr_len();
        let payload_len = lay.len - hdr_len;
        // Every alignment is a power of two (4, 8 or 16: `Transform::geometry`), so the
        // padding that rounds payload and trailer up to it is a mask, not two divisions.
        debug_assert!(g.align.is_power_of_two());
        let pad_len = (payload_len + 2).wrapping_neg() & (g.align - 1);
        let body_len = payload_len + pad_len + 2;
        let front = ESP_HDR_LEN + g.iv_len;
        let new_len = hdr_len + front + body_len + g.icv_len;
        if new_len > lay.max_len() {
            return Err(EspError::TooLarge);
        }
        let start = pkt.start.checked_sub(front).ok_or(EspError::NoHeadroom)?;
        let end = start + new_len;
        if end > buf.len() {
            return Err(EspError::NoTailroom);
        }
        if iv.is_some_and(|iv| iv.len() != g.iv_len) {
            return Err(EspError::BadLength);
        }
        // RFC 4303 3.3.3: never let the counter cycle; the SA must be rekeyed.
        let limit = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
        .min(self.seq_limit);
        let seq = match self.seq.checked_add(1) {
            Some(s) if s <= limit => s,
            _ => return Err(EspError::SeqExhausted),
        };
        self.seq = seq;

        let out_pkt = &mut buf[start..end];
        // Move the IP header (and extension headers before ESP) into the headroom, fixed on
        // the way (one read, one write for the usual headers; the checksum summed in
        // registers from the bytes read).
        ip::move_header(out_pkt, front, 0, fix, IPPROTO_ESP, new_len);
        crate::copies::note(crate::copies::CopySite::EspHeaderOut, hdr_len);
        let esp = &mut out_pkt[hdr_len..];
        match (iv, esp.first_chunk_mut::<COUNTER_FRONT>()) {
            // RFC 4106 8.1: a counter is a valid GCM IV; masked per SA, as the set's SAs share
            // their key and salt (`iv`). SPI, sequence number and IV in one 16-byte store:
            // the seal's kernel reads them back at once, and a load is forwarded from one
            // store, not from three.
            (None, Some(head)) if front == COUNTER_FRONT && self.transform.iv_from_seq() => {
                store_counter_front(
                    head,
                    self.spi,
                    seq as u32,
                    iv::counter_iv(seq, self.iv_mask),
                )
            }
            _ => {
                esp[0..4].copy_from_slice(&self.spi.to_be_bytes());
                esp[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
                let iv_slot = &mut esp[ESP_HDR_LEN..front];
                match iv {
                    Some(iv) => iv_slot.copy_from_slice(iv),
                    None => iv::fill_unpredictable(iv_slot),
                }
            }
        }
        // RFC 4303 2.4: padding bytes 1, 2, 3, ..., then pad length and next header. The
        // padding is at most 15 bytes (alignment 16 at most): one 16-byte store of the run
        // when the packet has room behind it (what spills over lands on the trailer and ICV
        // space, written below and by the seal), else byte by byte.
        const PAD_RUN: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        let trailer = front + payload_len;
        match esp.get_mut(trailer..trailer + 16) {
            Some(run) if pad_len <= 16 => run.copy_from_slice(&PAD_RUN),
            _ => {
                for (i, b) in esp[trailer..trailer + pad_len].iter_mut().enumerate() {
                    *b = (i + 1) as u8;
                }
            }
        }
        esp[trailer + pad_len] = pad_len as u8;
        esp[trailer + pad_len + 1] = next_header;
        // Every length here is below 2^17 (`max_len`): 32 bits hold them.
        *out = Framed {
            start,
            hdr_len: hdr_len as u32,
            len: new_len as u32,
            payload_len: payload_len as u32,
            seq_hi: (seq >> 32) as u32,
            esn: self.esn,
        };
        Ok(())
    }
}

/// ESP header and an 8-byte counter IV (RFC 4106 3.1): what an aes-gcm-16 or aes-gmac SA
/// writes in front of the payload.
const COUNTER_FRONT: usize = ESP_HDR_LEN + 8;

/// Writes SPI, the sequence number's low half (both big-endian) and the counter IV `iv` to
/// `head` in one 16-byte store.
#[inline(always)]
fn store_counter_front(head: &mut [u8; COUNTER_FRONT], spi: u32, seq_lo: u32, iv: [u8; 8]) {
    let lo = u64::from(spi.swap_bytes()) | u64::from(seq_lo.swap_bytes()) << 32;
    let hi = u64::from_le_bytes(iv);
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_set_epi64x, _mm_storeu_si128};
        // SAFETY: SSE2 is baseline on x86_64; `head` is 16 writable bytes and the store is
        // unaligned.
        unsafe {
            let v = _mm_set_epi64x(hi as i64, lo as i64);
            _mm_storeu_si128(head.as_mut_ptr().cast(), v);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        head[..8].copy_from_slice(&lo.to_le_bytes());
        head[8..].copy_from_slice(&hi.to_le_bytes());
    }
}

/// An inbound packet that passed [`InboundSa::precheck`]: 40 bytes (not the whole
/// [`IpLayout`]), as a burst keeps one per packet between its passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Checked {
    /// What restoring its IP header needs of its layout.
    fix: ip::HeaderFix,
    /// The low half of the sequence number carried in the packet.
    seq_lo: u32,
    /// Where its IP header starts in the buffer.
    start: usize,
    /// Where it ends (the IP length's end, the ICV's end) in the buffer.
    end: usize,
    /// The sequence number as inferred at the precheck.
    pub(super) seq: u64,
}

impl Checked {
    /// Its ESP part (`SPI | seq | IV | body | ICV`), absolute in the buffer.
    pub(super) fn esp(&self) -> Range<usize> {
        self.start + self.fix.hdr_len()..self.end
    }
}

/// A framed outbound packet waiting for its cipher and ICV (see [`OutboundSa::frame`]): 32
/// bytes, its lengths in 32 bits (a packet's are below 2^17), written in place into a
/// burst's item by [`OutboundSa::frame_into`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Framed {
    /// Where the ESP packet (its IP header) starts in the buffer.
    start: usize,
    /// Length of its IP header and the extension headers before ESP.
    hdr_len: u32,
    /// Length of the whole ESP packet.
    len: u32,
    /// Upper-layer bytes, for the counters.
    payload_len: u32,
    /// High half of the sequence number (authenticated, not sent), if `esn`.
    seq_hi: u32,
    /// The SA uses extended sequence numbers.
    esn: bool,
}

impl Framed {
    /// The whole ESP packet in the buffer (what `encapsulate` returns).
    pub(super) fn range(&self) -> Range<usize> {
        self.start..self.start + self.len as usize
    }

    /// Its ESP part: `SPI | seq | IV | body | ICV space`, absolute in the buffer.
    pub(super) fn esp(&self) -> Range<usize> {
        self.start + self.hdr_len as usize..self.start + self.len as usize
    }

    /// High half of an extended sequence number (authenticated, not sent).
    pub(super) fn seq_hi(&self) -> Option<u32> {
        self.esn.then_some(self.seq_hi)
    }

    /// Upper-layer bytes, for the counters.
    pub(super) fn payload_len(&self) -> usize {
        self.payload_len as usize
    }
}

/// An inbound SA: anti-replay window and keyed transform.
///
/// Laid out (`repr(C)`) for the fewest cache lines per packet when SAs come from memory (a
/// worker with millions of SAs): the SPI, the ESN flag, the packet and byte counters, the
/// window's top and its head word (the bitmap of the top's word, `ReplayWindow`) share one
/// line with the window's first ring words, then come the rest of the ring (read only by a
/// packet older than the top's word), the drop counters (only an error touches them) and
/// the transform, whose first [`HOT_BYTES`](super::transform::HOT_BYTES) — all that hmac-sha-1-96 +
/// aes-cbc decapsulation reads — fill four whole lines. That holds where the SA starts
/// [`InboundSa::LINE_OFFSET`] bytes into a 64-byte line, as it does in the worker's slab
/// (`SaSlab`: the slot's SPI, then the SA, cells 64-byte aligned); both sides assert it at
/// compile time. Five lines for an in-order packet, six for one behind the top's word, where
/// the compiler's layout took nine or ten.
#[repr(C)]
pub struct InboundSa {
    spi: u32,
    /// Extended (64-bit) sequence numbers negotiated (RFC 4303 2.2.1).
    esn: bool,
    /// Packets and upper-layer bytes decapsulated (the hot half of [`EspCounters`]).
    packets: u64,
    bytes: u64,
    window: ReplayWindow,
    /// Drop counters (`packets` and `bytes` stay zero here: see [`InboundSa::counters`]).
    errors: EspCounters,
    /// Puts `transform` at the start of a line (see the type's documentation).
    _align: [u8; TRANSFORM_PAD],
    transform: Transform,
}

/// Bytes between the drop counters and the transform of an [`InboundSa`], so the transform
/// starts a cache line when the SA starts [`InboundSa::LINE_OFFSET`] bytes into one.
const TRANSFORM_PAD: usize = 8;

const _: () = assert!(
    (InboundSa::LINE_OFFSET + core::mem::offset_of!(InboundSa, transform)).is_multiple_of(64),
    "an inbound SA's transform must start a cache line (adjust TRANSFORM_PAD)"
);
const _: () = assert!(
    InboundSa::LINE_OFFSET + core::mem::offset_of!(InboundSa, window) + 16 <= 64,
    "an inbound SA's window top and head word must share the first line"
);

impl core::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("window", &self.window)
            .field("geometry", &self.transform.geometry())
            .finish_non_exhaustive()
    }
}

impl InboundSa {
    /// Builds the SA for `spi` (our own inbound SPI) from the negotiated suite.
    pub fn new(spi: u32, suite: &Suite) -> Result<Self, SaError> {
        check_spi(spi)?;
        Ok(Self::with_transform(spi, Transform::new(suite)?))
    }

    /// As [`InboundSa::new`] with the suite keyed already ([`KeyedSuite`]).
    #[inline(always)]
    pub fn keyed(spi: u32, keyed: &KeyedSuite) -> Result<Self, SaError> {
        check_spi(spi)?;
        Ok(Self::with_transform(spi, keyed.0.clone()))
    }

    /// As [`InboundSa::keyed`] for an `spi` the caller checked ([`check_spi`]): infallible,
    /// so the worker builds it in the slab cell it goes to (`WorkerSas::insert_inbound_with`).
    #[inline(always)]
    pub(crate) fn from_keyed(spi: u32, keyed: &KeyedSuite) -> Self {
        debug_assert!(check_spi(spi).is_ok());
        Self::with_transform(spi, keyed.0.clone())
    }

    /// The SA for a checked `spi` around its keyed `transform`.
    #[inline(always)]
    fn with_transform(spi: u32, transform: Transform) -> Self {
        Self {
            spi,
            esn: false,
            packets: 0,
            bytes: 0,
            window: ReplayWindow::new(),
            errors: EspCounters::default(),
            _align: [0; TRANSFORM_PAD],
            transform,
        }
    }

    /// Switches the SA to extended sequence numbers (RFC 4303 2.2.1); the high half of each
    /// packet's sequence number is inferred per RFC 4303 Appendix A2.2. Not with AES-GMAC.
    pub fn with_esn(mut self) -> Result<Self, SaError> {
        if !self.transform.supports_esn() {
            return Err(SaError::UnsupportedSuite);
        }
        self.esn = true;
        Ok(self)
    }

    /// Test hook: positions the replay window as if `top` had been received.
    #[doc(hidden)]
    pub fn set_window_top_for_test(&mut self, top: u64) {
        self.window = ReplayWindow::new();
        if top > 0 {
            self.window.update(top);
        }
    }

    /// Where in a 64-byte line the SA's layout expects to start: 8 bytes in, after the slab
    /// slot's SPI (see the type's documentation).
    pub const LINE_OFFSET: usize = 8;

    /// Starts loading the parts of the SA at `p` that decapsulating an in-order packet reads
    /// (SPI and flags, the packet counters, the window's top and head word: one line; and
    /// the first `transform_lines` cache lines of the transform: see
    /// [`InboundSa::transform_lines`]), so a burst can have every SA of its packets on the
    /// way from memory before it decapsulates the first (at millions of SAs each is several
    /// cache misses). Computes addresses only (never reads through `p`, so any pointer will
    /// do); the caller has the line count from the SA's table entry. `_seq_lo` (the packet's
    /// sequence number, low half) is not used since the head word: a packet behind the top's
    /// word (rare: reordered) reads its ring word on demand, and asking for it ahead cost
    /// every packet a line.
    #[inline]
    pub fn prefetch_at(p: *const Self, _seq_lo: u32, transform_lines: u8) {
        use core::mem::offset_of;
        let base = p.cast::<u8>();
        // SPI, flag, packet counters, the window's top and head word: one line (asserted
        // above).
        crate::sad::prefetch(base.wrapping_add(offset_of!(Self, spi)));
        // The transform's lines into the L2 (read later, by the decapsulation; a burst asks
        // for four or five per SA at once, more than the L1 tracks: see
        // `crate::sad::prefetch_l2`).
        let t = offset_of!(Self, transform);
        let lines = usize::from(transform_lines).min(Self::TRANSFORM_LINES);
        for k in 0..lines {
            crate::sad::prefetch_l2(base.wrapping_add(t + 64 * k));
        }
    }

    /// Cache lines the whole transform spans (it starts a line).
    const TRANSFORM_LINES: usize = core::mem::size_of::<Transform>().div_ceil(64);

    /// How many cache lines of its transform decapsulating a packet of this SA reads, for
    /// [`InboundSa::prefetch_at`]: the first `HOT_BYTES` (four lines) for hmac-sha-1-96 +
    /// aes-cbc on AES-NI/SHA-NI and `GCM_SHORT_BYTES` (five, all a packet of up to 96 bytes
    /// of body reads) for aes-gcm-16 on AES-NI, whose layouts are fixed for that
    /// (`Transform::hot_bytes`); the whole transform for the
    /// other suites (the software ciphers' boxed state loads on demand anyway). The worker
    /// keeps the count in the SA's table entry, so a packet's prefetch knows it before the
    /// SA is read.
    pub fn transform_lines(&self) -> u8 {
        Self::lines_of(&self.transform)
    }

    /// [`InboundSa::transform_lines`] of an SA keyed with `transform`.
    fn lines_of(transform: &Transform) -> u8 {
        let lines = transform
            .hot_bytes()
            .map_or(Self::TRANSFORM_LINES, |b| b.div_ceil(64));
        u8::try_from(lines).unwrap_or(u8::MAX)
    }

    /// SPI this SA accepts.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// Packet and drop counters of this SA.
    pub fn counters(&self) -> EspCounters {
        EspCounters {
            packets: self.packets,
            bytes: self.bytes,
            ..self.errors
        }
    }

    /// The anti-replay window (read-only).
    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Decapsulates the ESP packet `buf[pkt]` in place and returns the range of the restored
    /// IP packet (its protocol / next header is the ESP trailer's next header). On error the
    /// buffer contents are unspecified and the packet must be dropped.
    pub fn decapsulate(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
    ) -> Result<Range<usize>, EspError> {
        self.decapsulate_inner(buf, pkt, None)
    }

    /// [`decapsulate`](Self::decapsulate) of a packet whose header the caller has parsed
    /// already (`ip`, from [`IpRepr::parse`](crate::wire::IpRepr::parse) of `buf[pkt]` with
    /// [`Direction::Inbound`](crate::wire::Direction::Inbound)) and whose IPv4 header
    /// checksum it verified ([`crate::l2::L2::input`] does both). Returns the restored packet
    /// with its header as parsed: the same addresses and headers, the ESP trailer's next
    /// header and the new length.
    pub fn decapsulate_parsed(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        ip: &IpLayout,
    ) -> Result<(Range<usize>, IpLayout), EspError> {
        let r = self.decapsulate_inner(buf, pkt, Some(ip))?;
        let next_header = buf[r.start + ip.next_header_at];
        Ok((r.clone(), ip.with_payload(next_header, r.len())))
    }

    fn decapsulate_inner(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        ip: Option<&IpLayout>,
    ) -> Result<Range<usize>, EspError> {
        match self.decap(buf, pkt, ip) {
            Ok((r, payload)) => {
                self.packets += 1;
                self.bytes += payload as u64;
                Ok(r)
            }
            Err(e) => {
                self.errors.count(e);
                Err(e)
            }
        }
    }

    fn decap(
        &mut self,
        buf: &mut [u8],
        pkt: Range<usize>,
        ip: Option<&IpLayout>,
    ) -> Result<(Range<usize>, usize), EspError> {
        let c = self.precheck(buf, pkt, ip)?;
        self.finish(buf, &c, None)
    }

    /// The keyed transform, for the burst path (`burst`).
    pub(super) fn transform(&self) -> &Transform {
        &self.transform
    }

    /// Counts the outcome of one packet of a burst, as `decapsulate` does.
    pub(super) fn count(&mut self, r: Result<usize, EspError>) {
        match r {
            Ok(payload) => {
                self.packets += 1;
                self.bytes += payload as u64;
            }
            Err(e) => self.errors.count(e),
        }
    }

    /// True if the SA uses extended sequence numbers.
    pub(super) fn esn(&self) -> bool {
        self.esn
    }

    /// The full sequence number of a packet whose low half is `seq_lo` (RFC 4303 A2.2).
    fn seq_of(&self, seq_lo: u32) -> u64 {
        if self.esn {
            infer_esn(self.window.top(), seq_lo)
        } else {
            u64::from(seq_lo)
        }
    }

    /// The checks of RFC 4303 3.4 that need no cryptography: IP framing, lengths, SPI, and the
    /// replay check against the window as it is now. Changes nothing. `ip`: the packet's
    /// header if the caller parsed it (and verified its IPv4 checksum) already.
    pub(super) fn precheck(
        &self,
        buf: &[u8],
        pkt: Range<usize>,
        ip: Option<&IpLayout>,
    ) -> Result<Checked, EspError> {
        self.precheck_inline(buf, pkt, ip)
    }

    /// As [`precheck`](Self::precheck), the result written into `out` (a burst's item)
    /// instead of returned. A returned `Checked` is stored piecewise into the caller's stack
    /// and copied into the item at once with wider loads, which the CPU cannot forward from
    /// the stores still in flight: each packet waited for them (burst decryption at 64 B).
    pub(super) fn precheck_into(
        &self,
        buf: &[u8],
        pkt: Range<usize>,
        ip: Option<&IpLayout>,
        out: &mut Checked,
    ) -> Result<(), EspError> {
        *out = self.precheck_inline(buf, pkt, ip)?;
        Ok(())
    }

    #[inline(always)]
    fn precheck_inline(
        &self,
        buf: &[u8],
        pkt: Range<usize>,
        ip: Option<&IpLayout>,
    ) -> Result<Checked, EspError> {
        let g = self.transform.geometry();
        let ip_pkt = buf.get(pkt.clone()).ok_or(EspError::Truncated)?;
        let lay = headers_of(ip_pkt, ip, ip::Direction::Inbound)?;
        if lay.next_header != IPPROTO_ESP {
            return Err(EspError::NotEsp);
        }
        let hdr_len = lay.fix.hdr_len();
        // The ICV does not cover the outer header, and we rewrite its checksum on the way
        // out, so a corrupted IPv4 header must be caught here rather than laundered (a caller
        // that passes the parsed header has checked it).
        if ip.is_none() && lay.v4() && !ip::ipv4_header_ok(&ip_pkt[..hdr_len]) {
            return Err(EspError::BadIpHeader);
        }
        let front = ESP_HDR_LEN + g.iv_len;
        let ip_pkt = &ip_pkt[..lay.len];
        let esp = ip_pkt.get(hdr_len..).ok_or(EspError::Truncated)?;
        if esp.len() < front + 2 + g.icv_len {
            return Err(EspError::Truncated);
        }
        // RFC 4303 3.4.2: the caller found the SA by SPI; make sure it is this one.
        if esp[0..4] != self.spi.to_be_bytes() {
            return Err(EspError::SpiMismatch);
        }
        let seq_lo = u32::from_be_bytes([esp[4], esp[5], esp[6], esp[7]]);
        let seq = self.seq_of(seq_lo);
        // RFC 4303 3.4.3: cheap replay check first, window update only after the ICV.
        self.window.check(seq)?;
        Ok(Checked {
            fix: lay.fix,
            seq_lo,
            start: pkt.start,
            end: pkt.start + lay.len,
            seq,
        })
    }

    /// ESN high half of `seq`, if this SA uses ESN.
    pub(super) fn seq_hi(&self, seq: u64) -> Option<u32> {
        self.esn.then_some((seq >> 32) as u32)
    }

    /// The rest of a decapsulation after [`precheck`](Self::precheck): the replay check again
    /// (earlier packets of a burst may have moved the window), ICV (`icv`: computed by the
    /// burst path for `c.seq`; ignored if the sequence number now infers differently), window
    /// update, decryption, padding and next-header checks, IP header restored.
    pub(super) fn finish(
        &mut self,
        buf: &mut [u8],
        c: &Checked,
        icv: Option<&[u8; 12]>,
    ) -> Result<(Range<usize>, usize), EspError> {
        self.finish_inline(buf, c, icv)
    }

    /// As [`finish`](Self::finish), the packet counted in the SA's counters and its result
    /// written into `out` (a burst's item) instead of returned, for the reason given at
    /// [`precheck_into`](Self::precheck_into).
    pub(super) fn finish_into(
        &mut self,
        buf: &mut [u8],
        c: &Checked,
        icv: Option<&[u8; 12]>,
        out: &mut Result<Range<usize>, EspError>,
    ) {
        let r = self.finish_inline(buf, c, icv);
        self.record_into(r, out);
    }

    /// A burst item's finish `r` counted in the SA's counters and written into `out`.
    #[inline(always)]
    fn record_into(
        &mut self,
        r: Result<(Range<usize>, usize), EspError>,
        out: &mut Result<Range<usize>, EspError>,
    ) {
        self.count(r.as_ref().map(|(_, payload)| *payload).map_err(|e| *e));
        *out = r.map(|(range, _)| range);
    }

    /// [`finish_into`](Self::finish_into) for the burst's usual packet: hmac-sha-1-96 +
    /// aes-cbc on AES-NI, a non-ESN SA, its ICV computed by the burst (`icv`, for `c.seq`).
    /// The same checks in the same order as `finish` and `Transform::open_with`, written
    /// for that one case. False (nothing done) for any other SA.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn finish_cbc_into(
        &mut self,
        buf: &mut [u8],
        c: &Checked,
        icv: &[u8; HMAC96_ICV_LEN],
        out: &mut Result<Range<usize>, EspError>,
    ) -> bool {
        if self.esn {
            return false;
        }
        let Some((cipher, _)) = self.transform.aes_sha1_ni() else {
            return false;
        };
        let r = Self::finish_cbc(&mut self.window, cipher, buf, c, icv);
        self.record_into(r, out);
        true
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn finish_cbc(
        window: &mut ReplayWindow,
        cipher: &super::aesni::Aes128Ni,
        buf: &mut [u8],
        c: &Checked,
        icv: &[u8; HMAC96_ICV_LEN],
    ) -> Result<(Range<usize>, usize), EspError> {
        const FRONT: usize = ESP_HDR_LEN + 16;
        let seq = u64::from(c.seq_lo);
        window.check(seq)?;
        let hdr_len = c.fix.hdr_len();
        let ip_pkt = buf.get_mut(c.start..c.end).ok_or(EspError::Truncated)?;
        let esp = ip_pkt.get_mut(hdr_len..).ok_or(EspError::Truncated)?;
        let body_end = esp
            .len()
            .checked_sub(HMAC96_ICV_LEN)
            .filter(|&e| e >= FRONT)
            .ok_or(EspError::Truncated)?;
        let (authed, got) = esp.split_at_mut(body_end);
        let (hdr_iv, body) = authed.split_at_mut(FRONT);
        if body.len() < 2 {
            return Err(EspError::Truncated);
        }
        if body.len() & 15 != 0 {
            return Err(EspError::BadLength);
        }
        if !super::integ::tags_equal(icv, got) {
            return Err(EspError::AuthFailed);
        }
        window.update(seq);
        cipher.cbc_decrypt(&hdr_iv[ESP_HDR_LEN..], body);
        let n = body.len();
        let next_header = body[n - 1];
        let pad_len = usize::from(body[n - 2]);
        let payload_len = (n - 2).checked_sub(pad_len).ok_or(EspError::BadPadding)?;
        if !padding_ok(body, pad_len) {
            return Err(EspError::BadPadding);
        }
        restored(ip_pkt, FRONT, c, next_header, payload_len)
    }

    /// [`finish_into`](Self::finish_into) for the burst's aes-gcm-16 packet (RFC 4106,
    /// AES-GCM-128 on AES-NI, a non-ESN SA, the tag checked by the kernel). The same checks
    /// in the same order as `finish` and `Transform::open_with`'s GCM arm, written for that
    /// one case. False (nothing done) for any other SA.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn finish_gcm_into(
        &mut self,
        buf: &mut [u8],
        c: &Checked,
        out: &mut Result<Range<usize>, EspError>,
    ) -> bool {
        if self.esn {
            return false;
        }
        let Some((salt, aead)) = self.transform.gcm_ni() else {
            return false;
        };
        let r = Self::finish_gcm(&mut self.window, salt, aead, buf, c);
        self.record_into(r, out);
        true
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn finish_gcm(
        window: &mut ReplayWindow,
        salt: &[u8; 4],
        aead: &super::gcm_ni::Aes128GcmNi,
        buf: &mut [u8],
        c: &Checked,
    ) -> Result<(Range<usize>, usize), EspError> {
        /// ESP header and the 8-byte IV (RFC 4106 3.1).
        const FRONT: usize = ESP_HDR_LEN + 8;
        const TAG: usize = 16;
        let seq = u64::from(c.seq_lo);
        window.check(seq)?;
        let hdr_len = c.fix.hdr_len();
        let ip_pkt = buf.get_mut(c.start..c.end).ok_or(EspError::Truncated)?;
        let esp = ip_pkt.get_mut(hdr_len..).ok_or(EspError::Truncated)?;
        let body_end = esp
            .len()
            .checked_sub(TAG)
            .filter(|&e| e >= FRONT + 2)
            .ok_or(EspError::Truncated)?;
        let (authed, tag) = esp.split_at_mut(body_end);
        {
            let (hdr_iv, body) = authed.split_at_mut(FRONT);
            let hdr_iv: &[u8; FRONT] = (&*hdr_iv).try_into().map_err(|_| EspError::Truncated)?;
            // The kernel compares the tag (constant time) and leaves an unauthenticated
            // body as it came.
            if !aead.open_esp(salt, hdr_iv, None, body, tag) {
                return Err(EspError::AuthFailed);
            }
        }
        window.update(seq);
        let next_header = authed[body_end - 1];
        let pad_len = usize::from(authed[body_end - 2]);
        let payload_end = (body_end - 2)
            .checked_sub(pad_len)
            .filter(|&e| e >= FRONT)
            .ok_or(EspError::BadPadding)?;
        if !padding_ok(authed, pad_len) {
            return Err(EspError::BadPadding);
        }
        restored(ip_pkt, FRONT, c, next_header, payload_end - FRONT)
    }

    #[inline(always)]
    fn finish_inline(
        &mut self,
        buf: &mut [u8],
        c: &Checked,
        icv: Option<&[u8; 12]>,
    ) -> Result<(Range<usize>, usize), EspError> {
        let g = self.transform.geometry();
        let front = ESP_HDR_LEN + g.iv_len;
        let hdr_len = c.fix.hdr_len();
        let seq = self.seq_of(c.seq_lo);
        self.window.check(seq)?;
        let icv = icv.filter(|_| seq == c.seq);
        let seq_hi = self.seq_hi(seq);
        let ip_pkt = buf.get_mut(c.start..c.end).ok_or(EspError::Truncated)?;
        let esp = ip_pkt.get_mut(hdr_len..).ok_or(EspError::Truncated)?;
        let window = &mut self.window;
        self.transform
            .open_with(esp, seq_hi, icv, || window.update(seq))?;

        let body_end = esp.len() - g.icv_len;
        let next_header = esp[body_end - 1];
        let pad_len = usize::from(esp[body_end - 2]);
        let payload_end = (body_end - 2)
            .checked_sub(pad_len)
            .ok_or(EspError::BadPadding)?;
        if payload_end < front {
            return Err(EspError::BadPadding);
        }
        // RFC 4303 2.4: the receiver checks the monotonic padding (1, 2, 3, ...).
        if !padding_ok(&esp[..body_end], pad_len) {
            return Err(EspError::BadPadding);
        }
        restored(ip_pkt, front, c, next_header, payload_end - front)
    }
}

/// The end of every inbound finish once the padding is checked: a dummy packet refused (RFC
/// 4303 2.6), then the IP header moved forward over ESP header and IV (`front` bytes), fixed
/// on the way (one read, one write for the usual headers) while the payload stays where it
/// is; the payload's range in the buffer and its length.
#[inline(always)]
fn restored(
    ip_pkt: &mut [u8],
    front: usize,
    c: &Checked,
    next_header: u8,
    payload_len: usize,
) -> Result<(Range<usize>, usize), EspError> {
    if next_header == NH_DUMMY {
        return Err(EspError::Dummy);
    }
    let hdr_len = c.fix.hdr_len();
    let new_len = hdr_len + payload_len;
    ip::restore_header(ip_pkt, front, c.fix, next_header, new_len);
    crate::copies::note(crate::copies::CopySite::EspHeaderIn, hdr_len);
    let start = c.start + front;
    Ok((start..start + new_len, payload_len))
}

/// True if the `pad_len` bytes before the last two of `trailed` (the body through its pad
/// length and next header bytes) are 1, 2, 3, ... (RFC 4303 2.4). Padding of at most 14
/// bytes is checked in the body's last 16 bytes, the block the CBC decryption has just
/// stored whole, so the load is forwarded from that store; a 16-byte load ending at the pad
/// length byte spans two stored blocks and waits for both to reach the cache. Longer padding
/// (never ours) goes through [`monotonic_padding`].
/// [`padding_ok`] for the phase diagnostics (`esp::phases`).
#[cfg(test)]
pub(super) fn padding_ok_for_test(trailed: &[u8], pad_len: usize) -> bool {
    padding_ok(trailed, pad_len)
}

fn padding_ok(trailed: &[u8], pad_len: usize) -> bool {
    if pad_len <= 14 {
        let last16 = trailed
            .len()
            .checked_sub(16)
            .and_then(|s| trailed.get(s..))
            .and_then(|w| <[u8; 16]>::try_from(w).ok());
        if let Some(got) = last16 {
            // Bytes 14 - pad_len .. 14 of the block should be 1..=pad_len: RAMP from
            // pad_len + 2 has them there (its byte 16 + i is i + 1), and ONES from the same
            // place is 0xff from byte 14 - pad_len on; the last two bytes (pad length, next
            // header) masked off. Two loads at one index, no 128-bit shifts.
            let at = pad_len + 2;
            let (Some(want), Some(ones)) = (RAMP.get(at..at + 16), ONES.get(at..at + 16)) else {
                return false;
            };
            let word = |b: &[u8]| u128::from_le_bytes(b.try_into().unwrap_or([0; 16]));
            // Little-endian: byte k is bits 8k..8k+8.
            let mask = word(ones) & (u128::MAX >> 16);
            return (u128::from_le_bytes(got) ^ word(want)) & mask == 0;
        }
    }
    trailed
        .len()
        .checked_sub(2)
        .is_some_and(|n| monotonic_padding(&trailed[..n], pad_len))
}

/// 16 filler bytes, then 1..=16: its 16 bytes from `pad_len` end in 1..=pad_len.
const RAMP: [u8; 32] = {
    let mut r = [0u8; 32];
    let mut i = 0;
    while i < 16 {
        r[16 + i] = i as u8 + 1;
        i += 1;
    }
    r
};

/// 16 zero bytes, then 16 of 0xff: its 16 bytes from `k` are 0xff from byte 16 - k on.
const ONES: [u8; 32] = {
    let mut r = [0u8; 32];
    let mut i = 16;
    while i < 32 {
        r[i] = 0xff;
        i += 1;
    }
    r
};

/// True if the last `pad_len` bytes of `before` (the packet up to its pad-length byte; at
/// least `pad_len` bytes) are 1, 2, 3, ... (RFC 4303 2.4). Padding of at most 16 bytes (every
/// suite's padding when the sender pads the least, as we do) is checked as one 16-byte
/// compare under a mask, not byte by byte.
fn monotonic_padding(before: &[u8], pad_len: usize) -> bool {
    if pad_len <= 16 {
        let last16 = before
            .len()
            .checked_sub(16)
            .and_then(|s| before.get(s..))
            .and_then(|w| <[u8; 16]>::try_from(w).ok());
        let want = RAMP
            .get(pad_len..pad_len + 16)
            .and_then(|w| <[u8; 16]>::try_from(w).ok());
        if let (Some(got), Some(want)) = (last16, want) {
            // Little-endian: the last `pad_len` bytes are the high ones.
            let mask = u128::MAX
                .checked_shl(8 * (16 - pad_len) as u32)
                .unwrap_or(0);
            return (u128::from_le_bytes(got) ^ u128::from_le_bytes(want)) & mask == 0;
        }
    }
    let Some(pad) = before
        .len()
        .checked_sub(pad_len)
        .and_then(|s| before.get(s..))
    else {
        return false;
    };
    pad.iter()
        .enumerate()
        .all(|(i, &b)| usize::from(b) == i + 1)
}

/// RFC 4303 Appendix A2.2: the full 64-bit sequence number of a packet carrying `seq_lo`,
/// given the highest authenticated one `top`. The ICV check is the final arbiter.
fn infer_esn(top: u64, seq_lo: u32) -> u64 {
    let th = (top >> 32) as u32;
    let tl = top as u32;
    let w = REPLAY_WINDOW as u32;
    let seq_hi = if tl >= w - 1 {
        // Case A: the window lies within one 2^32 subspace.
        if seq_lo >= tl - (w - 1) {
            th
        } else {
            th.wrapping_add(1)
        }
    } else if seq_lo >= tl.wrapping_sub(w - 1) {
        // Case B: the window spans two subspaces and seq_lo is in the lower (older) one.
        th.wrapping_sub(1)
    } else {
        th
    };
    (u64::from(seq_hi) << 32) | u64::from(seq_lo)
}

#[cfg(test)]
mod tests {
    use super::super::transform::HOT_BYTES;
    use super::*;

    /// What decapsulating one packet reads and writes of an SA placed as the worker's slab
    /// places it (`LINE_OFFSET` into a line, behind the slot's SPI) lies in five cache lines
    /// for a packet in the top's word or above (one for the SPI, flag, packet counters,
    /// window top and head word, four for the transform's hot bytes) and six for an older
    /// one (its ring word).
    #[test]
    fn an_in_order_packet_touches_five_lines_of_an_inbound_sa() {
        use core::mem::{offset_of, size_of};
        let line = |off: usize| (InboundSa::LINE_OFFSET + off) / 64;
        let head = [
            offset_of!(InboundSa, spi),
            offset_of!(InboundSa, esn),
            offset_of!(InboundSa, packets),
            offset_of!(InboundSa, bytes) + 7,
            offset_of!(InboundSa, window) + 15,
        ];
        assert!(head.iter().all(|&o| line(o) == 0), "{head:?}");
        let t = offset_of!(InboundSa, transform);
        let hot: std::collections::BTreeSet<_> = (t..t + HOT_BYTES).map(line).collect();
        assert_eq!(hot.len(), 4, "the transform's hot bytes span {hot:?}");
        assert!(!hot.contains(&0));
        let ring = offset_of!(InboundSa, window) + 16;
        for word in 0..(size_of::<ReplayWindow>() - 16) / 8 {
            let w = ring + 8 * word;
            assert_eq!(line(w), line(w + 7), "ring word {word} straddles two lines");
            let mut lines = hot.clone();
            lines.insert(0);
            lines.insert(line(w));
            assert!(lines.len() <= 6, "word {word}: {lines:?}");
        }
    }

    /// What `prefetch_at` loads ahead covers what the hot suite's decapsulation reads.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_hot_suites_keys_lie_in_the_prefetched_bytes() {
        let suite = Suite {
            auth: super::super::AuthAlg::HmacSha1_96,
            encr: super::super::EncrAlg::AesCbc,
            keys: super::super::SaKeys {
                integ_key: vec![1; 20],
                encr_key: vec![2; 16],
                salt: [0; 4],
            },
        };
        let sa = InboundSa::new(0x1000, &suite).unwrap();
        let Some((aes, mac)) = sa.transform.aes_sha1_ni() else {
            return; // no AES-NI + SHA-NI here: nothing is hot
        };
        let base = &sa.transform as *const Transform as usize;
        let end = |p: usize, len: usize| p + len - base;
        assert!(end(mac as *const _ as usize, core::mem::size_of_val(mac)) <= HOT_BYTES);
        assert!(end(aes.dec_keys_addr(), 176) <= HOT_BYTES);
    }

    /// The burst kernels take the SHA-NI pad states as proof of hmac-sha-1-96: an
    /// hmac-md5-96 SA must have none.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn only_hmac_sha1_sas_carry_stitched_pad_states() {
        use super::super::{AuthAlg, EncrAlg, SaKeys};
        let sa = |auth, integ_len| {
            let suite = Suite {
                auth,
                encr: EncrAlg::AesCbc,
                keys: SaKeys {
                    integ_key: vec![1; integ_len],
                    encr_key: vec![2; 16],
                    salt: [0; 4],
                },
            };
            InboundSa::new(0x1000, &suite).unwrap()
        };
        assert!(sa(AuthAlg::HmacMd5_96, 16)
            .transform
            .aes_sha1_ni()
            .is_none());
        let sha1 = sa(AuthAlg::HmacSha1_96, 20);
        if std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("sha")
        {
            assert!(sha1.transform.aes_sha1_ni().is_some());
        }
    }

    /// RFC 4303 2.4: the padding is the least that makes payload, pad length and next header
    /// a multiple of the suite's alignment, with the bytes 1, 2, 3, ...; for every suite's
    /// alignment and every payload length in a few blocks.
    #[test]
    fn padding_is_the_least_that_aligns_the_body() {
        use super::super::{AuthAlg, EncrAlg, SaKeys};
        let suites = [
            (AuthAlg::HmacSha1_96, EncrAlg::AesCbc, 20, 16, 16),
            (AuthAlg::HmacSha1_96, EncrAlg::DesEde3Cbc, 20, 24, 8),
            (AuthAlg::HmacSha1_96, EncrAlg::Null, 20, 0, 4),
            (AuthAlg::HmacSha1_96, EncrAlg::AesGcm, 0, 16, 4),
        ];
        for (auth, encr, ik, ek, align) in suites {
            let suite = Suite {
                auth,
                encr,
                keys: SaKeys {
                    integ_key: vec![1; ik],
                    encr_key: (1..=ek as u8).collect(),
                    salt: [0; 4],
                },
            };
            let mut sa = OutboundSa::new(0x1000, &suite).unwrap();
            assert_eq!(sa.geometry.align, align);
            for payload in 0..=3 * align + 1 {
                let total = 20 + payload;
                let mut buf = vec![0u8; 64 + total + 64];
                let ip = &mut buf[64..64 + total];
                ip[..20].copy_from_slice(&[
                    0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
                ]);
                ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                let f = sa.frame(&mut buf, 64..64 + total, None, None).unwrap();
                let want = (align - (payload + 2) % align) % align;
                let front = ESP_HDR_LEN + sa.geometry.iv_len;
                let body = f.esp().len() - front - sa.geometry.icv_len;
                assert_eq!(body, payload + want + 2, "{encr:?} payload {payload}");
                let esp = &buf[f.esp()];
                let pad = &esp[front + payload..front + payload + want];
                assert!(pad.iter().enumerate().all(|(i, &b)| b == i as u8 + 1));
                assert_eq!(usize::from(esp[front + payload + want]), want);
            }
        }
    }

    /// The masked 16-byte compare agrees with the byte loop on every padding length 0..=40,
    /// on good padding and on padding with any one byte off, short buffers included.
    #[test]
    fn padding_check_matches_the_byte_loop() {
        let slow = |before: &[u8], n: usize| {
            before.len() >= n
                && before[before.len() - n..]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| usize::from(b) == i + 1)
        };
        for pad_len in 0..=40usize {
            for lead in [0usize, 1, 5, 15, 16, 30] {
                let mut b: Vec<u8> = (0..lead).map(|i| (i * 7 + 3) as u8).collect();
                b.extend((1..=pad_len).map(|i| i as u8));
                assert!(monotonic_padding(&b, pad_len), "{pad_len} {lead}");
                for k in 0..b.len() {
                    let mut bad = b.clone();
                    bad[k] ^= 0x40;
                    assert_eq!(
                        monotonic_padding(&bad, pad_len),
                        slow(&bad, pad_len),
                        "{pad_len} {lead} {k}"
                    );
                }
                // Fewer bytes than the padding claims.
                let short = &b[b.len().min(lead + pad_len / 2)..];
                assert_eq!(monotonic_padding(short, pad_len), slow(short, pad_len));
            }
        }
    }

    /// `padding_ok` against the byte loop on the bytes before the trailer's two, for every
    /// padding length to 40, any lead, every byte flipped (trailer bytes included, which
    /// must not matter), and fewer bytes than the padding claims.
    #[test]
    fn padding_ok_matches_the_byte_loop() {
        let slow = |trailed: &[u8], n: usize| {
            trailed.len() >= n + 2
                && trailed[trailed.len() - 2 - n..trailed.len() - 2]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| usize::from(b) == i + 1)
        };
        for pad_len in 0..=40usize {
            for lead in [0usize, 1, 5, 14, 15, 16, 30] {
                let mut b: Vec<u8> = (0..lead).map(|i| (i * 7 + 3) as u8).collect();
                b.extend((1..=pad_len).map(|i| i as u8));
                b.extend([pad_len as u8, 0x11]);
                assert!(padding_ok(&b, pad_len), "{pad_len} {lead}");
                for k in 0..b.len() {
                    let mut bad = b.clone();
                    bad[k] ^= 0x40;
                    assert_eq!(
                        padding_ok(&bad, pad_len),
                        slow(&bad, pad_len),
                        "{pad_len} {lead} {k}"
                    );
                }
                for cut in 0..b.len() {
                    let short = &b[cut..];
                    assert_eq!(padding_ok(short, pad_len), slow(short, pad_len), "{cut}");
                }
            }
        }
    }

    #[test]
    fn esn_inference_rfc4303_a2() {
        let w = REPLAY_WINDOW;
        // Case A, same subspace, and the next subspace after a wrap of the low half.
        assert_eq!(infer_esn(5 << 32 | 10_000, 9_000), 5 << 32 | 9_000);
        assert_eq!(infer_esn(5 << 32 | 10_000, 20_000), 5 << 32 | 20_000);
        assert_eq!(
            infer_esn(5 << 32 | 10_000, 10_000 - w as u32),
            6 << 32 | (10_000 - w)
        );
        assert_eq!(infer_esn(5 << 32 | 0xffff_fff0, 3), 6 << 32 | 3);
        // Case B: the window straddles a subspace boundary.
        assert_eq!(infer_esn(6 << 32 | 5, 0xffff_fff0), 5 << 32 | 0xffff_fff0);
        assert_eq!(infer_esn(6 << 32 | 5, 100), 6 << 32 | 100);
        // Fresh window: low numbers are in subspace 0.
        assert_eq!(infer_esn(0, 1), 1);
    }
}
