//! The frame decoder over an arbitrary byte stream, fed in arbitrary chunks: frames come out
//! whole, errors are typed, nothing panics.
#![no_main]

use bytes::BytesMut;
use cohort_protocol::frame::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = usize::from(data[0]).max(1);
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    for piece in data[1..].chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => assert!(frame.len() <= 64 * 1024),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= 2 * (64 * 1024 + 4) + data.len());
    }
});
