//! The record batch decoder, with and without CRC checks; a decoded batch re-encodes to a batch
//! that decodes to the same records.
#![no_main]

use bytes::{Bytes, BytesMut};
use cohort_protocol::records::{BatchIter, DecodeOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    for verify_crc in [true, false] {
        let opts = DecodeOptions { max_decompressed_size: 4 << 20, verify_crc };
        for batch in BatchIter::new(input.clone(), opts) {
            let Ok(decoded) = batch else { break };
            // Reading every record in place never panics, and the owned copy re-encodes to a
            // batch that decodes to the same records.
            for r in decoded.records() {
                let _ = (r.key(), r.value(), r.headers().count());
            }
            let batch = decoded.to_batch();
            let mut out = BytesMut::new();
            if batch.encode(&mut out).is_ok() {
                let again = BatchIter::new(out.freeze(), opts).next().expect("one batch").expect("decodes");
                assert_eq!(again.to_batch().records, batch.records);
            }
        }
    }
});
