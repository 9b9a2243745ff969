//! Typed ESP failures and the per-SA drop counters they feed (one counter per reason).

use thiserror::Error;

/// Why an ESP SA could not be built from a negotiated [`Suite`](super::Suite).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SaError {
    /// The algorithm pair is not a valid combination (e.g. `aes-gmac` with an encryption algorithm).
    #[error("unsupported algorithm combination")]
    UnsupportedSuite,
    /// A key has the wrong length for its algorithm (the length is not a secret; the key is not shown).
    #[error("{which} key has invalid length {len}")]
    BadKeyLength {
        /// `"integrity"` or `"encryption"`.
        which: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// SPIs 0..=255 are reserved (RFC 4303 2.1).
    #[error("reserved SPI {0}")]
    ReservedSpi(u32),
    /// The OS random source failed while seeding the IV generator.
    #[error("OS random source failed")]
    Entropy,
}

/// Why one packet was dropped by ESP processing. Each variant has its own counter in
/// [`EspCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum EspError {
    /// The packet is shorter than its headers, ESP header, IV, trailer or ICV need.
    #[error("truncated packet")]
    Truncated,
    /// The IP header is malformed (version, header length, total/payload length).
    #[error("malformed IP header")]
    BadIpHeader,
    /// The packet is an IP fragment; fragments must be reassembled before ESP (RFC 4303 3.4.1).
    #[error("IP fragment")]
    Fragment,
    /// An IPv6 extension header that may not precede ESP in transport mode, or a jumbogram.
    #[error("unsupported IPv6 extension header {0}")]
    UnsupportedExtHeader(u8),
    /// The (last) next-header/protocol field is not ESP (50).
    #[error("not an ESP packet")]
    NotEsp,
    /// The packet's SPI is not the SPI of the SA it was handed to.
    #[error("SPI does not match the SA")]
    SpiMismatch,
    /// Not enough headroom in the buffer for the ESP header and IV.
    #[error("not enough headroom")]
    NoHeadroom,
    /// Not enough tailroom in the buffer for padding, trailer and ICV.
    #[error("not enough tailroom")]
    NoTailroom,
    /// The encapsulated packet would exceed the IP length fields.
    #[error("packet too large")]
    TooLarge,
    /// Sequence number already received (RFC 4303 3.4.3).
    #[error("replayed sequence number")]
    Replayed,
    /// Sequence number left of the anti-replay window, or zero (RFC 4303 3.4.3).
    #[error("sequence number outside the replay window")]
    TooOld,
    /// ICV verification failed (RFC 4303 3.4.4).
    #[error("integrity check failed")]
    AuthFailed,
    /// The ciphertext length is not a multiple of the cipher's block size (RFC 4303 2.4).
    #[error("ciphertext not block aligned")]
    BadLength,
    /// Padding bytes are not 1, 2, 3, ... or pad length exceeds the payload (RFC 4303 2.4).
    #[error("bad padding")]
    BadPadding,
    /// Next header 59 (dummy packet, RFC 4303 2.6) — dropped silently but counted.
    #[error("dummy packet (next header 59)")]
    Dummy,
    /// The outbound 32-bit sequence number space is used up; the SA must be replaced
    /// (RFC 4303 3.3.3: the counter must never cycle).
    #[error("sequence number space exhausted")]
    SeqExhausted,
}

/// Per-SA packet and drop counters; a single worker owns an SA, so these are plain integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EspCounters {
    /// Packets processed successfully.
    pub packets: u64,
    /// Upper-layer bytes processed successfully (payload without ESP overhead).
    pub bytes: u64,
    /// [`EspError::Truncated`].
    pub truncated: u64,
    /// [`EspError::BadIpHeader`].
    pub bad_ip_header: u64,
    /// [`EspError::Fragment`].
    pub fragment: u64,
    /// [`EspError::UnsupportedExtHeader`].
    pub unsupported_ext_header: u64,
    /// [`EspError::NotEsp`].
    pub not_esp: u64,
    /// [`EspError::SpiMismatch`].
    pub spi_mismatch: u64,
    /// [`EspError::NoHeadroom`] and [`EspError::NoTailroom`].
    pub no_room: u64,
    /// [`EspError::TooLarge`].
    pub too_large: u64,
    /// [`EspError::Replayed`].
    pub replay: u64,
    /// [`EspError::TooOld`].
    pub too_old: u64,
    /// [`EspError::AuthFailed`].
    pub auth_failed: u64,
    /// [`EspError::BadLength`].
    pub bad_length: u64,
    /// [`EspError::BadPadding`].
    pub bad_padding: u64,
    /// [`EspError::Dummy`].
    pub dummy: u64,
    /// [`EspError::SeqExhausted`].
    pub seq_exhausted: u64,
}

impl EspCounters {
    /// Counts one dropped packet under its reason.
    pub fn count(&mut self, err: EspError) {
        let c = match err {
            EspError::Truncated => &mut self.truncated,
            EspError::BadIpHeader => &mut self.bad_ip_header,
            EspError::Fragment => &mut self.fragment,
            EspError::UnsupportedExtHeader(_) => &mut self.unsupported_ext_header,
            EspError::NotEsp => &mut self.not_esp,
            EspError::SpiMismatch => &mut self.spi_mismatch,
            EspError::NoHeadroom | EspError::NoTailroom => &mut self.no_room,
            EspError::TooLarge => &mut self.too_large,
            EspError::Replayed => &mut self.replay,
            EspError::TooOld => &mut self.too_old,
            EspError::AuthFailed => &mut self.auth_failed,
            EspError::BadLength => &mut self.bad_length,
            EspError::BadPadding => &mut self.bad_padding,
            EspError::Dummy => &mut self.dummy,
            EspError::SeqExhausted => &mut self.seq_exhausted,
        };
        *c += 1;
    }

    /// Total number of dropped packets, all reasons.
    pub fn dropped(&self) -> u64 {
        self.truncated
            + self.bad_ip_header
            + self.fragment
            + self.unsupported_ext_header
            + self.not_esp
            + self.spi_mismatch
            + self.no_room
            + self.too_large
            + self.replay
            + self.too_old
            + self.auth_failed
            + self.bad_length
            + self.bad_padding
            + self.dummy
            + self.seq_exhausted
    }
}
