//! Where a mechanism's parameters are in its text: up to [`INLINE`] spans kept inline (our
//! Security-Server's nine, a UE's offer's eight: no allocation), more in a `Vec`.

/// A parameter's name `text[name_start..value_start]` and value `text[value_start..end]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ParamSpan {
    /// Where the name starts (after the `;`).
    pub name_start: u32,
    /// Where the value starts (after the `=`; `end` when there is no value).
    pub value_start: u32,
    /// Where the parameter ends.
    pub end: u32,
}

/// The most spans kept without an allocation: our Security-Server's nine parameters.
const INLINE: usize = 9;

/// A list of [`ParamSpan`]s, inline while it is short.
#[derive(Clone, Debug)]
pub(super) enum Spans {
    /// The first `len` of `items`.
    Inline {
        /// How many of `items` are in use.
        len: u8,
        /// The spans, `len` of them set.
        items: [ParamSpan; INLINE],
    },
    /// More than [`INLINE`].
    Heap(Vec<ParamSpan>),
}

impl Default for Spans {
    fn default() -> Self {
        Spans::Inline {
            len: 0,
            items: [ParamSpan::default(); INLINE],
        }
    }
}

impl Spans {
    /// An empty list with room for `n` spans (allocated only beyond [`INLINE`]).
    pub(super) fn with_capacity(n: usize) -> Self {
        if n <= INLINE {
            Self::default()
        } else {
            Spans::Heap(Vec::with_capacity(n))
        }
    }

    /// The spans, in order.
    #[inline]
    pub(super) fn as_slice(&self) -> &[ParamSpan] {
        match self {
            Spans::Inline { len, items } => items.get(..usize::from(*len)).unwrap_or(&[]),
            Spans::Heap(v) => v,
        }
    }

    /// How many spans there are.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Appends `span`, moving the list to the heap when the inline room is full.
    #[inline]
    pub(super) fn push(&mut self, span: ParamSpan) {
        if let Spans::Inline { len, items } = self {
            if let Some(slot) = items.get_mut(usize::from(*len)) {
                *slot = span;
                *len += 1;
                return;
            }
        }
        self.push_past_inline(span);
    }

    /// [`Spans::push`] past the inline room (a mechanism of more than nine parameters).
    #[cold]
    fn push_past_inline(&mut self, span: ParamSpan) {
        match self {
            Spans::Inline { items, .. } => {
                let mut v = Vec::with_capacity(2 * INLINE);
                v.extend_from_slice(items);
                v.push(span);
                *self = Spans::Heap(v);
            }
            Spans::Heap(v) => v.push(span),
        }
    }
}

impl PartialEq for Spans {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Spans {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushed one by one from any capacity, the list holds what a `Vec` holds, inline up to
    /// nine and on the heap past them, and compares by its spans only.
    #[test]
    fn spans_hold_what_a_vec_holds() {
        for cap in [0, 3, 9, 10, 30] {
            let mut spans = Spans::with_capacity(cap);
            let mut want = Vec::new();
            for i in 0..25u32 {
                let s = ParamSpan {
                    name_start: i,
                    value_start: 2 * i,
                    end: 3 * i,
                };
                spans.push(s);
                want.push(s);
                assert_eq!(spans.as_slice(), &want[..]);
                assert_eq!(spans.len(), want.len());
                let inline = matches!(spans, Spans::Inline { .. });
                assert_eq!(inline, cap <= INLINE && want.len() <= INLINE);
                assert_eq!(spans, Spans::Heap(want.clone()));
            }
        }
    }
}
