//! SIP (RFC 3261): zero-copy parser, builder and transactions.
