//! Counters described once: [`counters!`](crate::counters!) declares a set of shared atomic
//! counters and its snapshot from one list of `/// help` + `name: Kind` entries, and
//! [`counter_table!`](crate::counter_table!) describes an existing struct of `u64` fields the
//! same way. Each yields a [`CounterTable`] (name, help text and kind of every field, with its
//! accessor) that the stats answer, the Prometheus exposition and the docs iterate.

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n`: only the owning thread writes, so a load and a store suffice (no locked
/// read-modify-write on the hot path).
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds one (single writer, see [`add`]).
#[inline]
pub fn inc(c: &AtomicU64) {
    add(c, 1);
}

/// Whether a value only grows or goes up and down (the Prometheus metric types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    /// Monotonic since start.
    Counter,
    /// A level read now (e.g. registrations held).
    Gauge,
}

impl CounterKind {
    /// The Prometheus `# TYPE` word.
    pub const fn as_str(self) -> &'static str {
        match self {
            CounterKind::Counter => "counter",
            CounterKind::Gauge => "gauge",
        }
    }
}

/// What one counter is: its name (snake_case, as in the JSON `stats` answer), its one-line
/// meaning and its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterDesc {
    /// Name, as in the JSON answer.
    pub name: &'static str,
    /// One-line meaning (the field's doc comment).
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: CounterKind,
}

impl CounterDesc {
    /// A descriptor whose help is `doc` without the leading space a `///` comment leaves.
    pub const fn new(name: &'static str, doc: &'static str, kind: CounterKind) -> CounterDesc {
        let help = match doc.as_bytes() {
            [b' ', rest @ ..] => match std::str::from_utf8(rest) {
                Ok(s) => s,
                Err(_) => doc,
            },
            _ => doc,
        };
        CounterDesc { name, help, kind }
    }
}

/// One `u64` field of `T` with its descriptor.
#[derive(Debug)]
pub struct CounterField<T> {
    /// What the field counts.
    pub desc: CounterDesc,
    /// Reads the field.
    pub get: fn(&T) -> u64,
    /// Writes the field (to rebuild a `T` from values published elsewhere).
    pub set: fn(&mut T, u64),
}

/// Every counter of a struct `T`, in declaration order.
#[derive(Debug)]
pub struct CounterTable<T: 'static> {
    fields: &'static [CounterField<T>],
}

impl<T> Clone for CounterTable<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for CounterTable<T> {}

impl<T> CounterTable<T> {
    /// A table over `fields` (built by the macros, which check that every field is listed).
    pub const fn new(fields: &'static [CounterField<T>]) -> CounterTable<T> {
        CounterTable { fields }
    }

    /// The fields, in declaration order.
    pub const fn fields(&self) -> &'static [CounterField<T>] {
        self.fields
    }

    /// Number of counters.
    pub const fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the table is empty.
    pub const fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Adds every counter of `from` to `into` (the sum over slowpath shards; a gauge's sum is
    /// the level of the whole daemon, e.g. registrations).
    pub fn add_into(&self, into: &mut T, from: &T) {
        for f in self.fields {
            (f.set)(into, (f.get)(into).wrapping_add((f.get)(from)));
        }
    }

    /// The descriptors, in declaration order.
    pub fn descs(&self) -> impl Iterator<Item = &'static CounterDesc> {
        self.fields.iter().map(|f| &f.desc)
    }

    /// Every `(descriptor, value)` of `v`, in declaration order.
    pub fn values<'a>(&self, v: &'a T) -> impl Iterator<Item = (&'static CounterDesc, u64)> + 'a {
        self.fields.iter().map(move |f| (&f.desc, (f.get)(v)))
    }

    /// The value of the counter called `name` in `v`.
    pub fn get(&self, v: &T, name: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|f| f.desc.name == name)
            .map(|f| (f.get)(v))
    }
}

/// A [`CounterTable`] describing an existing struct whose fields are all `u64`:
/// `counter_table!(QueueStats { /// Frames received.\n rx_packets: Counter, ... })`.
/// Every field must be listed (the struct is destructured without `..`, so a new field does
/// not compile until it is described).
#[macro_export]
macro_rules! counter_table {
    ($ty:ident { $( $(#[doc = $doc:literal])+ $field:ident : $kind:ident ),* $(,)? }) => {{
        // A field added to the struct but not listed here is a compile error.
        const _: fn(&$ty) = |s: &$ty| {
            let $ty { $($field: _),* } = s;
        };
        $crate::counters::CounterTable::<$ty>::new(&[$(
            $crate::counters::CounterField {
                desc: $crate::counters::CounterDesc::new(
                    stringify!($field),
                    concat!($($doc),+),
                    $crate::counters::CounterKind::$kind,
                ),
                get: |s: &$ty| s.$field,
                set: |s: &mut $ty, v: u64| s.$field = v,
            },
        )*])
    }};
}

/// Declares a set of counters once: `counters! { /// doc\n pub struct Atomics => pub struct
/// Values; /// help\n name: Counter, ... }` generates `Atomics` (one `AtomicU64` per entry,
/// written by one thread, read by any), its snapshot `Values` (one `u64` per entry) with
/// `Values::TABLE` (a [`CounterTable`]), `Atomics::snapshot` and `get` by name on both.
/// Extra non-counter fields of `Atomics` go in braces after its name.
#[macro_export]
macro_rules! counters {
    (
        $(#[doc = $adoc:literal])+
        $avis:vis struct $atomics:ident $({ $( $(#[doc = $xdoc:literal])+ $xvis:vis $xfield:ident : $xty:ty ),* $(,)? })?
            => $(#[doc = $vdoc:literal])+ $vvis:vis struct $values:ident;
        $( $(#[doc = $doc:literal])+ $field:ident : $kind:ident ),* $(,)?
    ) => {
        $(#[doc = $adoc])+
        #[derive(Debug, Default)]
        $avis struct $atomics {
            $( $(#[doc = $doc])+ pub $field: ::std::sync::atomic::AtomicU64, )*
            $($( $(#[doc = $xdoc])+ $xvis $xfield: $xty, )*)?
        }

        $crate::counter_values! {
            $(#[doc = $vdoc])+
            $vvis struct $values;
            $( $(#[doc = $doc])+ $field: $kind ),*
        }

        impl $atomics {
            /// Reads every counter now.
            pub fn snapshot(&self) -> $values {
                $values {
                    $( $field: self.$field.load(::std::sync::atomic::Ordering::Relaxed), )*
                }
            }

            /// The value of the counter called `name` now.
            pub fn get(&self, name: &str) -> Option<u64> {
                match name {
                    $( stringify!($field) =>
                        Some(self.$field.load(::std::sync::atomic::Ordering::Relaxed)), )*
                    _ => None,
                }
            }
        }

    };
}

/// Declares a plain struct of `u64` counters once: `counter_values! { /// doc\n pub struct
/// Values; /// help\n name: Counter, ... }` generates `Values` (one `u64` field per entry,
/// documented by its help text) with `Values::TABLE` (a [`CounterTable`]), `iter` and `get`.
/// For counters kept by one thread in plain integers (e.g. a sans-IO core's statistics).
#[macro_export]
macro_rules! counter_values {
    (
        $(#[doc = $vdoc:literal])+
        $vvis:vis struct $values:ident;
        $( $(#[doc = $doc:literal])+ $field:ident : $kind:ident ),* $(,)?
    ) => {
        $(#[doc = $vdoc])+
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vvis struct $values {
            $( $(#[doc = $doc])+ pub $field: u64, )*
        }

        impl $values {
            /// Name, help text and kind of every counter, in declaration order.
            pub const TABLE: $crate::counters::CounterTable<$values> =
                $crate::counter_table!($values { $( $(#[doc = $doc])+ $field: $kind ),* });

            /// Every `(descriptor, value)`, in declaration order.
            pub fn iter(
                &self,
            ) -> impl Iterator<Item = (&'static $crate::counters::CounterDesc, u64)> + '_ {
                Self::TABLE.values(self)
            }

            /// The value of the counter called `name`.
            pub fn get(&self, name: &str) -> Option<u64> {
                Self::TABLE.get(self, name)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::counters! {
        /// Test atomics.
        pub struct Atomics {
            /// Not a counter.
            pub label: String,
        } => /// Test values.
        pub struct Values;
        /// Things seen.
        seen: Counter,
        /// Things held now,
        /// over two lines.
        held: Gauge,
    }

    #[derive(Default)]
    struct Plain {
        a: u64,
        b: u64,
    }

    const PLAIN: CounterTable<Plain> = crate::counter_table!(Plain {
        /// First.
        a: Counter,
        /// Second.
        b: Gauge,
    });

    #[test]
    fn one_list_gives_atomics_snapshot_and_descriptors() {
        let a = Atomics {
            label: "x".into(),
            ..Atomics::default()
        };
        add(&a.seen, 3);
        inc(&a.held);
        let v = a.snapshot();
        assert_eq!((v.seen, v.held, a.label.as_str()), (3, 1, "x"));
        assert_eq!(a.get("seen"), Some(3));
        assert_eq!(a.get("nope"), None);
        assert_eq!(v.get("held"), Some(1));
        let all: Vec<(&str, &str, CounterKind, u64)> =
            v.iter().map(|(d, n)| (d.name, d.help, d.kind, n)).collect();
        assert_eq!(
            all,
            [
                ("seen", "Things seen.", CounterKind::Counter, 3),
                (
                    "held",
                    "Things held now, over two lines.",
                    CounterKind::Gauge,
                    1
                ),
            ]
        );
    }

    #[test]
    fn tables_of_plain_structs_read_and_write_fields() {
        let mut p = Plain { a: 7, b: 9 };
        assert_eq!(PLAIN.len(), 2);
        let names: Vec<&str> = PLAIN.descs().map(|d| d.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(PLAIN.get(&p, "b"), Some(9));
        (PLAIN.fields()[0].set)(&mut p, 11);
        assert_eq!(p.a, 11);
        assert_eq!(PLAIN.fields()[1].desc.help, "Second.");
        assert_eq!(
            CounterDesc::new("x", "no space", CounterKind::Gauge).help,
            "no space"
        );
    }
}
