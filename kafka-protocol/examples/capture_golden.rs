//! Captures response frames from a real broker into `tests/golden/<kind>/` for the golden-bytes
//! tests.
//!
//! ```text
//! cargo run -p cohort-protocol --example capture_golden                 # Apache Kafka
//! COHORT_BROKER_KIND=tansu cargo run -p cohort-protocol --example capture_golden
//! ```
//!
//! Starts a fresh broker (see `cohort-testbroker`), creates `golden-topic` with 3 partitions,
//! produces 5 records, joins `golden-group` as a single `range` member, commits and fetches an
//! offset, and writes the raw response frames (response header + body) as hex. On Apache Kafka
//! it also writes one Fetch response per compression codec (`golden-compressed`, one partition
//! per codec).

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::{Bytes, BytesMut};
use cohort_protocol::consumer_protocol::{
    AssignedTopicPartitions, encode_assignment, encode_subscription,
};
use cohort_protocol::messages::*;
use cohort_protocol::records::{Compression, RecordBatchBuilder};

fn save(broker: &cohort_testbroker::TestBroker, name: &str, what: &str, frame: &Bytes) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(&broker.info().kind);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = format!(
        "# {what}, captured from {} with examples/capture_golden.rs\n",
        broker.info()
    );
    for chunk in frame.chunks(32) {
        for b in chunk {
            text.push_str(&format!("{b:02x}"));
        }
        text.push('\n');
    }
    std::fs::write(dir.join(format!("{name}.hex")), text).unwrap();
    println!("wrote {name}.hex ({} bytes)", frame.len());
}

fn main() {
    let broker = cohort_testbroker::TestBroker::start().expect("broker");
    let kafka = !broker.is_tansu();
    let mut conn = common::Conn::connect(broker.bootstrap());
    let topic = "golden-topic";
    let group = "golden-group";

    let f = conn.round_trip_raw(
        3,
        &ApiVersionsRequest {
            client_software_name: "cohort".into(),
            client_software_version: "0.1.0".into(),
            ..Default::default()
        },
    );
    save(&broker, "api_versions-v3", "ApiVersionsResponse v3", &f);

    conn.send(
        7,
        &CreateTopicsRequest {
            topics: vec![create_topics_request::CreatableTopic {
                name: topic.into(),
                num_partitions: 3,
                replication_factor: 1,
                ..Default::default()
            }],
            timeout_ms: 10_000,
            ..Default::default()
        },
    );
    // Apache Kafka's partitions take a moment to lead after CreateTopics answers.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let f = conn.round_trip_raw(
        12,
        &MetadataRequest {
            topics: Some(vec![metadata_request::MetadataRequestTopic {
                name: Some(topic.into()),
                ..Default::default()
            }]),
            ..Default::default()
        },
    );
    save(
        &broker,
        "metadata-v12",
        "MetadataResponse v12 for golden-topic",
        &f,
    );

    let mut b = RecordBatchBuilder::new(0).compression(Compression::None);
    for i in 0..5 {
        b = b.push(
            1_700_000_000_000 + i,
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(format!("golden-value-{i}"))),
            vec![],
        );
    }
    let mut records = BytesMut::new();
    b.build().encode(&mut records).unwrap();
    conn.send(
        9,
        &ProduceRequest {
            acks: -1,
            timeout_ms: 10_000,
            topic_data: vec![produce_request::TopicProduceData {
                name: topic.into(),
                partition_data: vec![produce_request::PartitionProduceData {
                    index: 0,
                    records: Some(records.freeze()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let f = conn.round_trip_raw(
        12,
        &FetchRequest {
            replica_id: -1,
            max_wait_ms: 100,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![fetch_request::FetchTopic {
                topic: topic.into(),
                partitions: vec![fetch_request::FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    save(
        &broker,
        "fetch-v12",
        "FetchResponse v12, golden-topic partition 0, 5 records",
        &f,
    );

    let join = |conn: &mut common::Conn, member: &str| {
        conn.round_trip_raw(
            6,
            &JoinGroupRequest {
                group_id: group.into(),
                session_timeout_ms: 6_000,
                rebalance_timeout_ms: 10_000,
                member_id: member.to_owned().into(),
                protocol_type: "consumer".into(),
                protocols: vec![join_group_request::JoinGroupRequestProtocol {
                    name: "range".into(),
                    metadata: encode_subscription(
                        &ConsumerProtocolSubscription {
                            topics: vec![topic.into()].into(),
                            ..Default::default()
                        },
                        1,
                    )
                    .unwrap(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    };
    let first = join(&mut conn, "");
    save(
        &broker,
        "join_group-v6-member_id_required",
        "JoinGroupResponse v6, MEMBER_ID_REQUIRED",
        &first,
    );
    let (_, first) = cohort_protocol::frame::decode_response::<JoinGroupRequest>(first, 6).unwrap();
    let joined_raw = join(&mut conn, &first.member_id);
    save(
        &broker,
        "join_group-v6",
        "JoinGroupResponse v6, leader with one member",
        &joined_raw,
    );
    let (_, joined) =
        cohort_protocol::frame::decode_response::<JoinGroupRequest>(joined_raw, 6).unwrap();
    let f = conn.round_trip_raw(
        4,
        &SyncGroupRequest {
            group_id: group.into(),
            generation_id: joined.generation_id,
            member_id: joined.member_id.clone(),
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: vec![sync_group_request::SyncGroupRequestAssignment {
                member_id: joined.member_id.clone(),
                assignment: encode_assignment(
                    &ConsumerProtocolAssignment {
                        assigned_partitions: vec![AssignedTopicPartitions {
                            topic: topic.into(),
                            partitions: vec![0, 1, 2],
                        }],
                        ..Default::default()
                    },
                    1,
                )
                .unwrap(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    save(
        &broker,
        "sync_group-v4",
        "SyncGroupResponse v4, assignment golden-topic [0,1,2]",
        &f,
    );

    // OffsetCommit, then OffsetFetch of what was committed.
    conn.send(
        8,
        &OffsetCommitRequest {
            group_id: group.into(),
            generation_id_or_member_epoch: joined.generation_id,
            member_id: joined.member_id.clone(),
            topics: vec![offset_commit_request::OffsetCommitRequestTopic {
                name: topic.into(),
                partitions: vec![offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: 3,
                    committed_leader_epoch: -1,
                    committed_metadata: Some("golden".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let f = conn.round_trip_raw(
        8,
        &OffsetFetchRequest {
            groups: vec![offset_fetch_request::OffsetFetchRequestGroup {
                group_id: group.into(),
                topics: Some(vec![offset_fetch_request::OffsetFetchRequestTopics {
                    name: topic.into(),
                    partition_indexes: vec![0, 1],
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    save(
        &broker,
        "offset_fetch-v8",
        "OffsetFetchResponse v8, golden-topic: partition 0 at 3 (metadata golden), 1 uncommitted",
        &f,
    );

    if !kafka {
        return;
    }
    // One partition per codec, 5 records each, fetched one partition at a time.
    let compressed = "golden-compressed";
    conn.send(
        7,
        &CreateTopicsRequest {
            topics: vec![create_topics_request::CreatableTopic {
                name: compressed.into(),
                num_partitions: Compression::ALL.len() as i32,
                replication_factor: 1,
                ..Default::default()
            }],
            timeout_ms: 10_000,
            ..Default::default()
        },
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    for (i, c) in Compression::ALL.into_iter().enumerate() {
        let mut b = RecordBatchBuilder::new(0).compression(c);
        for r in 0..5 {
            b = b.push(
                1_700_000_000_000 + r,
                Some(Bytes::from(format!("k{r}"))),
                Some(Bytes::from(format!(
                    "{}-value-{r}-{}",
                    c.name(),
                    "x".repeat(40)
                ))),
                vec![],
            );
        }
        let mut records = BytesMut::new();
        b.build().encode(&mut records).unwrap();
        let resp = conn.send(
            9,
            &ProduceRequest {
                acks: -1,
                timeout_ms: 10_000,
                topic_data: vec![produce_request::TopicProduceData {
                    name: compressed.into(),
                    partition_data: vec![produce_request::PartitionProduceData {
                        index: i as i32,
                        records: Some(records.freeze()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert_eq!(
            resp.responses[0].partition_responses[0].error_code, 0,
            "{c:?}: {resp:?}"
        );
        let f = conn.round_trip_raw(
            12,
            &FetchRequest {
                replica_id: -1,
                max_wait_ms: 100,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![fetch_request::FetchTopic {
                    topic: compressed.into(),
                    partitions: vec![fetch_request::FetchPartition {
                        partition: i as i32,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        save(
            &broker,
            &format!("fetch-v12-{}", c.name()),
            &format!(
                "FetchResponse v12, {compressed} partition {i}, 5 records compressed with {}",
                c.name()
            ),
            &f,
        );
    }
}
