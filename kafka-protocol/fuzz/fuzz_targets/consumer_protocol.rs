//! The embedded consumer protocol and the sticky assignors' user data.
#![no_main]

use bytes::Bytes;
use cohort_protocol::consumer_protocol::{
    StickyUserData, decode_assignment, decode_cooperative_user_data, decode_subscription,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let b = Bytes::copy_from_slice(data);
    let _ = decode_subscription(b.clone());
    let _ = decode_assignment(b.clone());
    let _ = StickyUserData::decode(Some(&b));
    let _ = decode_cooperative_user_data(Some(&b));
});
