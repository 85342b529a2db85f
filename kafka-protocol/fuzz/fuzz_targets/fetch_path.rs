//! The fetch path as the consumer runs it: a Fetch response frame is decoded, and each
//! partition's records go through the batch iterator with a decode budget (decompressed bytes
//! and records shared by the response), every record read in place. Nothing panics, and the
//! budget holds: no more records or decompressed bytes than it allows, resume offsets that only
//! move forward.
#![no_main]

use bytes::{Bytes, BytesMut};
use cohort_protocol::frame::{decode_response, encode_response};
use cohort_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use cohort_protocol::messages::{FetchRequest, FetchResponse};
use cohort_protocol::records::{BatchIter, Compression, DecodeBudget, DecodeOptions};
use cohort_protocol::ApiKey;
use libfuzzer_sys::fuzz_target;

const BYTES: usize = 8 << 20;
const ROOM: usize = 10_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let version = 4 + i16::from(mode >> 1) % 9; // v4..v12, the consumer's range
    let frame = if mode & 1 == 0 {
        // The input is a whole response frame (after the size prefix).
        Bytes::copy_from_slice(rest)
    } else {
        // The input is one partition's records, in a well-formed response.
        let resp = FetchResponse {
            responses: vec![FetchableTopicResponse {
                topic: "t".into(),
                partitions: vec![PartitionData {
                    partition_index: 0,
                    high_watermark: 100,
                    records: Some(Bytes::copy_from_slice(rest)),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut out = BytesMut::new();
        if encode_response(&mut out, ApiKey::Fetch, version, 7, &resp).is_err() {
            return;
        }
        out.split_off(4).freeze()
    };
    let Ok((_, resp)) = decode_response::<FetchRequest>(frame, version) else { return };
    let mut budget = DecodeBudget::new(BYTES, usize::MAX);
    for t in &resp.responses {
        for p in &t.partitions {
            let Some(records) = p.records.clone() else { continue };
            let start = budget;
            let mut it = BatchIter::with_budget(
                records,
                DecodeOptions::default(),
                DecodeBudget { records: ROOM, ..budget },
            );
            let (mut taken, mut decompressed) = (0usize, 0usize);
            let mut last_resume = i64::MIN;
            while let Some(batch) = it.next() {
                let Ok(b) = batch else { break };
                for r in b.records() {
                    let _ = (r.offset(), r.timestamp(), r.key(), r.value(), r.headers().count());
                }
                taken += b.len();
                if b.header.compression != Compression::None {
                    decompressed += b.data().len();
                }
                let resume = it.resume_offset().expect("a batch was handed out");
                assert!(resume >= last_resume || resume == i64::MAX, "resume went back");
                last_resume = resume;
            }
            assert!(taken <= ROOM, "{taken} records past the room of {ROOM}");
            assert!(decompressed <= start.bytes, "{decompressed} bytes past the budget");
            assert_eq!(it.budget().bytes, start.bytes - decompressed);
            budget.bytes = it.budget().bytes;
        }
    }
});
