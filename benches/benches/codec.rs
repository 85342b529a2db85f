//! Codec benchmarks: record batches and group/fetch messages, cohort-protocol side by side with
//! the crates.io `kafka-protocol` crate on the same bytes in the same run.
//!
//! `cargo bench -p cohort-benches --bench codec`
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cohort_benches::BatchWorkload;
use cohort_protocol::Message;
use cohort_protocol::messages as ours;
use cohort_protocol::records::{DecodeOptions, DecodedBatch, RecordBatch};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol_upstream::messages as theirs;
use kafka_protocol_upstream::protocol::{Decodable, Encodable};
use kafka_protocol_upstream::records::{
    Compression as TheirCompression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

fn record_batches(c: &mut Criterion) {
    let opts = DecodeOptions::default();
    for w in BatchWorkload::ALL {
        let bytes = w.bytes();
        let mut g = c.benchmark_group(format!("record_batch_decode/{}", w.name()));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        // Decode with CRC check, then read every record's offset, key and value in place.
        g.bench_function("cohort", |b| {
            b.iter(|| {
                let batch = DecodedBatch::decode(&mut black_box(bytes.clone()), &opts).unwrap();
                let mut sum = 0usize;
                for r in batch.records() {
                    sum += r.offset() as usize
                        + r.key().map_or(0, <[u8]>::len)
                        + r.value().map_or(0, <[u8]>::len);
                    sum += r.headers().count();
                }
                black_box(sum)
            })
        });
        // Decode into owned records (keys and values as `Bytes`), like kafka-protocol does.
        g.bench_function("cohort-owned", |b| {
            b.iter(|| RecordBatch::decode(&mut black_box(bytes.clone()), &opts).unwrap())
        });
        g.bench_function("kafka-protocol", |b| {
            b.iter(|| RecordBatchDecoder::decode(&mut black_box(bytes.clone())).unwrap())
        });
        g.finish();

        let batch = w.batch();
        let their_records = RecordBatchDecoder::decode(&mut bytes.clone())
            .unwrap()
            .records;
        let their_opts = RecordEncodeOptions {
            version: 2,
            compression: TheirCompression::None,
        };
        let mut g = c.benchmark_group(format!("record_batch_encode/{}", w.name()));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("cohort", |b| {
            let mut buf = BytesMut::with_capacity(bytes.len() * 2);
            b.iter(|| {
                buf.clear();
                black_box(&batch).encode(&mut buf).unwrap();
            })
        });
        g.bench_function("kafka-protocol", |b| {
            let mut buf = BytesMut::with_capacity(bytes.len() * 2);
            b.iter(|| {
                buf.clear();
                RecordBatchEncoder::encode(&mut buf, black_box(&their_records), &their_opts)
                    .unwrap();
            })
        });
        g.finish();
    }
}

/// Encodes `msg` (ours) at `version`, then benchmarks encode+decode of the same message with
/// both crates.
fn message<O: Message, T: Decodable + Encodable>(c: &mut Criterion, msg: O, version: i16) {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version).unwrap();
    let bytes = buf.freeze();
    let their = T::decode(&mut bytes.clone(), version).unwrap();
    // Both sides encode a message decoded from the same bytes, so that byte fields (record
    // batches) are slices of the same buffer on both: the copies then have the same source
    // alignment, which otherwise decides a memcpy-bound message like FetchResponse.
    let msg = O::decode(&mut bytes.clone(), version).unwrap();
    let mut g = c.benchmark_group(format!("message/{}", O::NAME));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function(BenchmarkId::new("cohort", format!("v{version}")), |b| {
        let mut out = BytesMut::with_capacity(bytes.len() * 2);
        b.iter(|| {
            out.clear();
            black_box(&msg).encode(&mut out, version).unwrap();
            black_box(O::decode(&mut bytes.clone(), version).unwrap());
        })
    });
    g.bench_function(
        BenchmarkId::new("kafka-protocol", format!("v{version}")),
        |b| {
            let mut out = BytesMut::with_capacity(bytes.len() * 2);
            b.iter(|| {
                out.clear();
                black_box(&their).encode(&mut out, version).unwrap();
                black_box(T::decode(&mut bytes.clone(), version).unwrap());
            })
        },
    );
    g.finish();
}

fn subscription(i: usize) -> Bytes {
    cohort_protocol::consumer_protocol::encode_subscription(
        &ours::ConsumerProtocolSubscription {
            topics: (0..5).map(|t| format!("topic-{t}").into()).collect(),
            owned_partitions: (0..5)
                .map(
                    |t| cohort_protocol::consumer_protocol::OwnedTopicPartitions {
                        topic: format!("topic-{t}").into(),
                        partitions: vec![i as i32, i as i32 + 10],
                    },
                )
                .collect(),
            generation_id: 7,
            ..Default::default()
        },
        2,
    )
    .unwrap()
}

fn group_and_fetch_messages(c: &mut Criterion) {
    let members = 20;
    let join_req = ours::JoinGroupRequest {
        group_id: "orders-processor".into(),
        session_timeout_ms: 45_000,
        rebalance_timeout_ms: 300_000,
        member_id: "cohort-1-6a1f6b3e-4a52-4b8e-9d0e-6f0f7e2f3a11".into(),
        protocol_type: "consumer".into(),
        protocols: ["cooperative-sticky", "range"]
            .iter()
            .map(|n| ours::join_group_request::JoinGroupRequestProtocol {
                name: (*n).into(),
                metadata: subscription(1),
                ..Default::default()
            })
            .collect(),
        reason: Some("rebalance".into()),
        ..Default::default()
    };
    message::<_, theirs::JoinGroupRequest>(c, join_req, 9);

    let join_resp = ours::JoinGroupResponse {
        generation_id: 12,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("cooperative-sticky".into()),
        leader: "cohort-0-00000000-0000-0000-0000-000000000000".into(),
        member_id: "cohort-0-00000000-0000-0000-0000-000000000000".into(),
        members: (0..members)
            .map(|i| ours::join_group_response::JoinGroupResponseMember {
                member_id: format!("cohort-{i}-00000000-0000-0000-0000-000000000000").into(),
                metadata: subscription(i),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    message::<_, theirs::JoinGroupResponse>(c, join_resp, 9);

    let assignment = |i: usize| {
        cohort_protocol::consumer_protocol::encode_assignment(
            &ours::ConsumerProtocolAssignment {
                assigned_partitions: (0..5)
                    .map(
                        |t| cohort_protocol::consumer_protocol::AssignedTopicPartitions {
                            topic: format!("topic-{t}").into(),
                            partitions: vec![i as i32, i as i32 + 20, i as i32 + 40],
                        },
                    )
                    .collect(),
                ..Default::default()
            },
            1,
        )
        .unwrap()
    };
    let sync_req = ours::SyncGroupRequest {
        group_id: "orders-processor".into(),
        generation_id: 12,
        member_id: "cohort-0-00000000-0000-0000-0000-000000000000".into(),
        protocol_type: Some("consumer".into()),
        protocol_name: Some("cooperative-sticky".into()),
        assignments: (0..members)
            .map(|i| ours::sync_group_request::SyncGroupRequestAssignment {
                member_id: format!("cohort-{i}-00000000-0000-0000-0000-000000000000").into(),
                assignment: assignment(i),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    message::<_, theirs::SyncGroupRequest>(c, sync_req, 5);
    let sync_resp = ours::SyncGroupResponse {
        protocol_type: Some("consumer".into()),
        protocol_name: Some("cooperative-sticky".into()),
        assignment: assignment(3),
        ..Default::default()
    };
    message::<_, theirs::SyncGroupResponse>(c, sync_resp, 5);

    let commit_req = ours::OffsetCommitRequest {
        group_id: "orders-processor".into(),
        generation_id_or_member_epoch: 12,
        member_id: "cohort-0-00000000-0000-0000-0000-000000000000".into(),
        topics: (0..5)
            .map(|t| ours::offset_commit_request::OffsetCommitRequestTopic {
                name: format!("topic-{t}").into(),
                partitions: (0..20)
                    .map(
                        |p| ours::offset_commit_request::OffsetCommitRequestPartition {
                            partition_index: p,
                            committed_offset: 1_000_000 + i64::from(p),
                            committed_leader_epoch: 3,
                            ..Default::default()
                        },
                    )
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    message::<_, theirs::OffsetCommitRequest>(c, commit_req, 9);
    let commit_resp = ours::OffsetCommitResponse {
        topics: (0..5)
            .map(
                |t| ours::offset_commit_response::OffsetCommitResponseTopic {
                    name: format!("topic-{t}").into(),
                    partitions: (0..20)
                        .map(
                            |p| ours::offset_commit_response::OffsetCommitResponsePartition {
                                partition_index: p,
                                ..Default::default()
                            },
                        )
                        .collect(),
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    };
    message::<_, theirs::OffsetCommitResponse>(c, commit_resp, 9);

    let records = BatchWorkload::Values100.bytes();
    let fetch_resp = ours::FetchResponse {
        responses: (0..5)
            .map(|t| ours::fetch_response::FetchableTopicResponse {
                topic_id: cohort_protocol::Uuid([t as u8 + 1; 16]),
                partitions: (0..4)
                    .map(|p| ours::fetch_response::PartitionData {
                        partition_index: p,
                        high_watermark: 1000,
                        last_stable_offset: 1000,
                        log_start_offset: 0,
                        records: Some(records.clone()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    message::<_, theirs::FetchResponse>(c, fetch_resp, 16);
}

criterion_group!(benches, record_batches, group_and_fetch_messages);
criterion_main!(benches);
