//! Byte-class runs sixteen bytes a compare: where a SIP `token`, a host name or a URI's user
//! part stops. The slowpath walked these runs a byte at a time through a 256-entry table
//! (four or five instructions a byte); here each 16-byte block is classed by SSE2 range
//! compares (every x86-64 has SSE2, so there is no run-time detection and the form inlines
//! into its caller) and the run's end is a `trailing_zeros` of the block's stop bits.
//!
//! Each class has its byte test (`is_*`) and a byte-loop form (`*_portable`), the reference
//! the vector form is tested against, every byte value at every position of a block.
//! Non-ASCII bytes are in no class (as signed bytes they are negative and fail every range).

/// True for a `token` byte (RFC 3261 25.1): letters, digits and ``-.!%*_+`'~``.
#[inline]
pub fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True for a host-name byte: letters, digits, `-`, `.` and `_`.
#[inline]
pub fn is_host_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
}

/// True for a byte of a dotted IPv4 address: a digit or `.`.
#[inline]
pub fn is_dotted_byte(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.'
}

/// True for a byte that ends a URI's plain user part: `@`, or a byte a URI may not hold
/// unescaped outside `%` (anything but printable ASCII, `<`, `>`, `"`) or `%` itself.
#[inline]
pub fn is_user_stop(c: u8) -> bool {
    c == b'@' || !(0x21..=0x7e).contains(&c) || matches!(c, b'<' | b'>' | b'"' | b'%')
}

/// The end of the run of token bytes of `b` from `from` (`b.len()` if it runs to the end;
/// `from` itself if `from` is past it).
#[inline]
pub fn token_end(b: &[u8], from: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::first_stop(b, from, sse2::not_token).unwrap_or_else(|| b.len().max(from))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        token_end_portable(b, from)
    }
}

/// [`token_end`] a byte at a time.
pub fn token_end_portable(b: &[u8], from: usize) -> usize {
    let rest = b.get(from..).unwrap_or_default();
    from + rest
        .iter()
        .position(|&c| !is_token_byte(c))
        .unwrap_or(rest.len())
}

/// A run of host-name bytes ([`host_name_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRun {
    /// The index of the first byte from the run's start that is not a host-name byte (the
    /// slice's length if there is none).
    pub end: usize,
    /// True if every byte of the run is a digit or a `.` (an empty run's too).
    pub dotted: bool,
}

/// The run of host-name bytes of `b` from `from`, and whether it is digits and dots only.
#[inline]
pub fn host_name_run(b: &[u8], from: usize) -> HostRun {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::host_name_run(b, from)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        host_name_run_portable(b, from)
    }
}

/// [`host_name_run`] a byte at a time.
pub fn host_name_run_portable(b: &[u8], from: usize) -> HostRun {
    let rest = b.get(from..).unwrap_or_default();
    let len = rest
        .iter()
        .position(|&c| !is_host_name_byte(c))
        .unwrap_or(rest.len());
    HostRun {
        end: from + len,
        dotted: rest[..len].iter().all(|&c| is_dotted_byte(c)),
    }
}

/// Where a URI's plain user part stops ([`user_stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStop {
    /// The index of the first byte that [`is_user_stop`] flags, `None` if none does.
    pub at: Option<usize>,
    /// True if a `:` comes before it (before the end, without a stop).
    pub colon: bool,
}

/// The first byte of `b` that [`is_user_stop`] flags, and whether a `:` comes before it.
#[inline]
pub fn user_stop(b: &[u8]) -> UserStop {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::user_stop(b)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        user_stop_portable(b)
    }
}

/// [`user_stop`] a byte at a time.
pub fn user_stop_portable(b: &[u8]) -> UserStop {
    let at = b.iter().position(|&c| is_user_stop(c));
    UserStop {
        at,
        colon: b[..at.unwrap_or(b.len())].contains(&b':'),
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    //! The SSE2 forms: a block's class as a byte mask by signed range compares.
    use super::{HostRun, UserStop};
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8,
        _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// A 16-byte block of a slice: its bytes from `base`, and which of its bits are the
    /// slice's bytes at or after the walk's start (`valid`).
    pub(super) struct Block {
        /// The index of the block's first byte in the slice.
        pub base: usize,
        /// The bytes.
        pub v: __m128i,
        /// Bit `i` set: byte `base + i` is to be looked at.
        pub valid: u32,
    }

    /// The blocks of `b` from `from`: whole 16-byte blocks, then the slice's last 16 bytes
    /// with the ones already looked at masked out, or (for a slice shorter than 16 bytes)
    /// its bytes copied into a padded block.
    pub(super) struct Blocks<'a> {
        b: &'a [u8],
        at: usize,
    }

    impl<'a> Blocks<'a> {
        #[inline(always)]
        pub(super) fn new(b: &'a [u8], from: usize) -> Self {
            Blocks { b, at: from }
        }
    }

    /// The 16 bytes of `chunk` (which must be 16 long) as a vector.
    #[inline(always)]
    fn load(chunk: &[u8; 16]) -> __m128i {
        // SAFETY: the unaligned load reads the 16 bytes of a 16-byte array; SSE2 is part of
        // x86-64's baseline.
        unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) }
    }

    impl Iterator for Blocks<'_> {
        type Item = Block;

        #[inline(always)]
        fn next(&mut self) -> Option<Block> {
            let n = self.b.len();
            if self.at >= n {
                return None;
            }
            let at = self.at;
            if let Some(chunk) = self.b.get(at..at + 16) {
                self.at = at + 16;
                let chunk = <&[u8; 16]>::try_from(chunk).ok()?;
                return Some(Block {
                    base: at,
                    v: load(chunk),
                    valid: 0xffff,
                });
            }
            self.at = n;
            if n >= 16 {
                // The last 16 bytes; those before `at` were in the previous block.
                let last = n - 16;
                let chunk = <&[u8; 16]>::try_from(self.b.get(last..)?).ok()?;
                return Some(Block {
                    base: last,
                    v: load(chunk),
                    valid: 0xffff & !((1u32 << (at - last)) - 1),
                });
            }
            let mut block = [0u8; 16];
            let rest = self.b.get(at..)?;
            block.get_mut(..rest.len())?.copy_from_slice(rest);
            Some(Block {
                base: at,
                v: load(&block),
                valid: (1u32 << rest.len()) - 1,
            })
        }
    }

    /// The bytes of `v` from `lo` to `hi` (both at most 0x7f, `lo` at least 1): signed
    /// compares, which bytes of 0x80 and above (negative) fail.
    #[inline(always)]
    fn range(v: __m128i, lo: u8, hi: u8) -> __m128i {
        // SAFETY: SSE2 register operations (x86-64's baseline).
        unsafe {
            _mm_and_si128(
                _mm_cmpgt_epi8(v, _mm_set1_epi8((lo - 1) as i8)),
                _mm_cmplt_epi8(v, _mm_set1_epi8((hi + 1) as i8)),
            )
        }
    }

    /// The bytes of `v` equal to `c`.
    #[inline(always)]
    fn eq(v: __m128i, c: u8) -> __m128i {
        // SAFETY: an SSE2 register operation (x86-64's baseline).
        unsafe { _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)) }
    }

    #[inline(always)]
    fn or(a: __m128i, b: __m128i) -> __m128i {
        // SAFETY: an SSE2 register operation (x86-64's baseline).
        unsafe { _mm_or_si128(a, b) }
    }

    /// One bit a byte of `m`'s top bits.
    #[inline(always)]
    fn bits(m: __m128i) -> u32 {
        // SAFETY: an SSE2 register operation (x86-64's baseline).
        unsafe { _mm_movemask_epi8(m) as u32 }
    }

    /// Letters: `v | 0x20` from `a` to `z` (no other byte folds into that range).
    #[inline(always)]
    fn letter(v: __m128i) -> __m128i {
        range(or(v, splat(0x20)), b'a', b'z')
    }

    #[inline(always)]
    fn splat(c: u8) -> __m128i {
        // SAFETY: an SSE2 register operation (x86-64's baseline).
        unsafe { _mm_set1_epi8(c as i8) }
    }

    /// The bits of the bytes of `v` that are no token byte.
    #[inline(always)]
    pub(super) fn not_token(v: __m128i) -> u32 {
        // `*+,-.` but `,`; `_` and `` ` `` side by side.
        // SAFETY: an SSE2 register operation (x86-64's baseline).
        let marks = unsafe { _mm_andnot_si128(eq(v, b','), range(v, b'*', b'.')) };
        let token = or(
            or(
                or(letter(v), range(v, b'0', b'9')),
                or(marks, range(v, b'_', b'`')),
            ),
            or(or(eq(v, b'!'), eq(v, b'%')), or(eq(v, b'\''), eq(v, b'~'))),
        );
        !bits(token) & 0xffff
    }

    /// The index of the first byte of `b` from `from` whose bit `stops` sets.
    #[inline(always)]
    pub(super) fn first_stop(
        b: &[u8],
        from: usize,
        stops: impl Fn(__m128i) -> u32,
    ) -> Option<usize> {
        for block in Blocks::new(b, from) {
            let m = stops(block.v) & block.valid;
            if m != 0 {
                return Some(block.base + m.trailing_zeros() as usize);
            }
        }
        None
    }

    #[inline(always)]
    pub(super) fn host_name_run(b: &[u8], from: usize) -> HostRun {
        let mut not_dotted = 0u32;
        for block in Blocks::new(b, from) {
            let v = block.v;
            let digit = range(v, b'0', b'9');
            let dot = eq(v, b'.');
            let dotted = bits(or(digit, dot));
            let name = bits(or(
                or(letter(v), digit),
                or(range(v, b'-', b'.'), eq(v, b'_')),
            ));
            let stop = !name & block.valid;
            // The bytes looked at before the stop (all of them without one).
            let before = if stop == 0 {
                block.valid
            } else {
                block.valid & ((1u32 << stop.trailing_zeros()) - 1)
            };
            not_dotted |= !dotted & before;
            if stop != 0 {
                return HostRun {
                    end: block.base + stop.trailing_zeros() as usize,
                    dotted: not_dotted == 0,
                };
            }
        }
        HostRun {
            end: b.len().max(from),
            dotted: not_dotted == 0,
        }
    }

    #[inline(always)]
    pub(super) fn user_stop(b: &[u8]) -> UserStop {
        let mut colon = 0u32;
        for block in Blocks::new(b, 0) {
            let v = block.v;
            let printable = range(v, 0x21, 0x7e);
            let refused = or(
                or(eq(v, b'<'), eq(v, b'>')),
                or(or(eq(v, b'"'), eq(v, b'%')), eq(v, b'@')),
            );
            let stop = (!bits(printable) | bits(refused)) & block.valid;
            let colons = bits(eq(v, b':')) & block.valid;
            if stop != 0 {
                let before = (1u32 << stop.trailing_zeros()) - 1;
                return UserStop {
                    at: Some(block.base + stop.trailing_zeros() as usize),
                    colon: (colon | (colons & before)) != 0,
                };
            }
            colon |= colons;
        }
        UserStop {
            at: None,
            colon: colon != 0,
        }
    }
}

#[cfg(test)]
mod tests;
