//! End to end calls through the in-process P-CSCF: two registered UEs, the first calls the
//! second. The INVITE must reach the callee over a TCP connection the P-CSCF opened from
//! port_pc to the callee's port_us through ESP (TS 33.203 7.1); 180/200/ACK/BYE complete.
//! Then the callee closes that connection and a second call must reopen it from port_pc —
//! never from 5060 in clear. The same with UDP registrations and a 1500-byte IPv6 INVITE that
//! RFC 3261 18.1.1 forces onto TCP.

mod common;

use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Transport;
use common::scenarios::*;
use common::*;

#[test]
fn calls_over_tcp_ipv4() {
    scenario(
        Bed::new,
        false,
        Transport::Tcp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesCbc),
        0,
    );
}

#[test]
fn calls_over_tcp_ipv6() {
    scenario(
        Bed::new,
        true,
        Transport::Tcp,
        (AuthAlg::HmacMd5_96, EncrAlg::DesEde3Cbc),
        0,
    );
}

#[test]
fn calls_over_udp_ipv4() {
    scenario(
        Bed::new,
        false,
        Transport::Udp,
        (AuthAlg::HmacSha1_96, EncrAlg::AesGcm),
        0,
    );
}

#[test]
fn calls_over_udp_ipv6_with_a_1500_byte_invite_forced_onto_tcp() {
    large_invite_over_udp(Bed::new);
}
