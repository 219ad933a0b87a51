//! Every datagram a peer can send, decoded as each role decodes it: the
//! decoder must return Ok or Err, never panic, abort or allocate what a
//! hostile length prefix claims. A crash found here belongs, as bytes, in
//! protocol/src/tests.rs as a regression test.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = protocol::decode::<protocol::RuntimeToShim>(data);
    let _ = protocol::decode::<protocol::ShimToRuntime>(data);
    let _ = protocol::decode::<protocol::ShimToInit>(data);
    let _ = protocol::decode::<protocol::InitToShim>(data);
});
