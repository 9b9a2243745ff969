//! SIP (RFC 3261): zero-copy parser, typed header views, builder, stream framer and
//! sans-IO transactions.

pub mod builder;
pub mod edit;
pub mod error;
pub mod framer;
pub mod header_name;
pub mod lex;
pub mod message;
pub mod name_addr;
pub mod params;
#[cfg(test)]
mod test_fixtures;
pub mod transaction;
pub mod typed;
pub mod uri;
pub mod validate;
pub mod via;

pub use builder::{response_to, MessageBuilder};
pub use edit::MessageEdit;
pub use error::ParseError;
pub use framer::{next_frame, Frame, FrameLimits};
pub use header_name::HeaderKind;
pub use message::{Header, Message, StartLine, ViaNote};
pub use name_addr::{Contact, NameAddr};
pub use params::{Param, Params};
pub use typed::CSeq;
pub use uri::{Host, Scheme, Uri};
pub use via::Via;
