//! Packet views in smoltcp's `wire` style, for what `smoltcp::wire` does not already cover.
//!
//! A `Packet<T: AsRef<[u8]>>` wraps a buffer and `new_checked` validates its lengths once, so
//! no accessor can panic afterwards; a `Repr` is the parsed meaning that the rest of the fast
//! path decides on. The worker parses an inbound frame's IP header once, in the link layer
//! ([`crate::l2::L2::input`] returns an [`IpRepr`]), and hands that result on to reassembly,
//! ESP and the per-UE stack; egress parses a stack's packet once and builds the outer header
//! from it. ESP's own header is smoltcp's [`EspPacket`] (feature `proto-ipsec-esp`).
//!
//! - [`ip`]: an IPv4 or IPv6 packet of either family: addresses, length, the IPv6 extension
//!   header walk to ESP / the upper-layer header, fragment fields.
//! - [`frag`]: fragments of an outbound packet above the link MTU (IPv4 and IPv6).
//! - [`transport`]: the TCP/UDP ports (and SYN flag) of a parsed packet, for SA selectors.

pub mod checksum;
pub mod frag;
pub mod ip;
pub mod transport;

pub use frag::{FragError, Fragmenter};
pub use ip::{Direction, Fragment, IpError, IpPacket, IpRepr, IpVersion};
pub use smoltcp::wire::IpSecEspPacket as EspPacket;
pub use transport::Segment;
