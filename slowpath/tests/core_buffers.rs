//! The slowpath gives each message buffer back to the workers' pool
//! (`akagate_proto::msgbuf`) once it has handled the event, so a steady stream of messages
//! reuses a few buffers instead of a `malloc` on the worker and a cross-thread `free` here.
//! Alone in its binary: the pool is process-wide.

mod reg_common;

use akagate_proto::msgbuf;
use reg_common::*;

#[test]
fn a_handled_message_buffer_goes_back_to_the_pool() {
    let mut t = Testbed::new();
    let flow = t.ue_flow(cmcc_ip(), 8904, 5060);
    let mut bytes = msgbuf::take(FIXTURE_02.len());
    bytes.extend_from_slice(FIXTURE_02.as_bytes());
    let ptr = bytes.as_ptr();
    assert_eq!(msgbuf::pooled(), 0);
    let out = t.raw(flow, None, bytes);
    assert_eq!(out.len(), 2, "REGISTER not answered: {out:?}");
    assert_eq!(msgbuf::pooled(), 1, "the message buffer was not recycled");
    let again = msgbuf::take(FIXTURE_02.len());
    assert_eq!(again.as_ptr(), ptr, "a different buffer came back");
    assert!(again.is_empty());
}
