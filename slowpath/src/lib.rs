//! The akagate slowpath: SIP, sec-agree, IMS-AKA, registrar and proxy, written sans-IO.
#![forbid(unsafe_code)]

pub mod aka;
pub mod hss;
pub mod secagree;
pub mod sip;
