//! A quoted string's plain run (RFC 3261 25.1 qdtext): where it stops, sixteen bytes a
//! compare.

/// True for the bytes that end a quoted string's plain run: the closing `"`, a `\` (a
/// quoted-pair), a control byte other than HTAB, or DEL.
#[inline]
pub fn is_quoted_stop(c: u8) -> bool {
    c == b'"' || c == b'\\' || (c < 0x20 && c != b'\t') || c == 0x7f
}

/// The index of the first byte of `b` that [`is_quoted_stop`] flags, a byte at a time: the
/// reference of [`find_quoted_stop`].
pub fn find_quoted_stop_portable(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| is_quoted_stop(c))
}

/// The index of the first byte of `b` that [`is_quoted_stop`] flags: where a quoted value
/// with no escape and no control byte ends (at its `"`), or where it needs a closer look.
/// One pass of SSE2 compares, where a search for `"` or `\` then a check of the bytes before
/// it for controls read the value twice.
#[inline]
pub fn find_quoted_stop(b: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        find_quoted_stop_sse2(b)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        find_quoted_stop_portable(b)
    }
}

/// The stop bits of the 16 bytes of `b` from `at` (bit `i`: byte `at + i`), `None` if `b`
/// has fewer.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops16(b: &[u8], at: usize) -> Option<u32> {
    use std::arch::x86_64::{
        __m128i, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let bytes = b.get(at..at.checked_add(16)?)?;
    // SAFETY: `bytes` is 16 bytes long (the `get` above), the length of the unaligned load;
    // the rest are SSE2 register operations, and SSE2 is part of x86-64's baseline.
    let all = unsafe {
        let v = _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
        // Unsigned `v <= 0x1f`: the minimum with 0x1f is `v` itself.
        let low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        let tab = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\t' as i8));
        let control = _mm_andnot_si128(tab, low);
        _mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(quote, backslash),
            _mm_or_si128(del, control),
        ))
    };
    Some(all as u32)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn find_quoted_stop_sse2(b: &[u8]) -> Option<usize> {
    if b.len() < 16 {
        // Padded with a byte that is no stop, for one compare.
        let mut block = [b'a'; 16];
        block[..b.len()].copy_from_slice(b);
        let m = stops16(&block, 0)?;
        return (m != 0).then(|| m.trailing_zeros() as usize);
    }
    let mut at = 0;
    while let Some(m) = stops16(b, at) {
        if m != 0 {
            return Some(at + m.trailing_zeros() as usize);
        }
        at += 16;
    }
    if at >= b.len() {
        return None;
    }
    // The last 16 bytes, the ones already looked at shifted out.
    let last = b.len() - 16;
    let m = stops16(b, last)? >> (at - last);
    (m != 0).then(|| at + m.trailing_zeros() as usize)
}
