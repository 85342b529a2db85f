//! The codecs against a real broker (Apache Kafka by default, see `cohort-testbroker`): topics,
//! produce with every compression, fetch back, list offsets, groups. Fails, never skips, when no
//! broker starts.
#![allow(
    clippy::disallowed_methods,
    reason = "a test against a real broker reads the clock"
)]

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cohort_protocol::messages::*;
use cohort_protocol::records::{
    Compression, DecodeOptions, RecordBatchBuilder, RecordHeader, decode_batches,
};
use cohort_protocol::{ErrorCode, StrBytes};
use cohort_testbroker::{TestBroker, unique_name};
use common::Conn;

fn create_topic(conn: &mut Conn, name: &str, partitions: i32) {
    let req = CreateTopicsRequest {
        topics: vec![create_topics_request::CreatableTopic {
            name: name.to_owned().into(),
            num_partitions: partitions,
            replication_factor: 1,
            ..Default::default()
        }],
        timeout_ms: 10_000,
        ..Default::default()
    };
    let resp = conn.send(7, &req);
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(
        ErrorCode::check(resp.topics[0].error_code),
        Ok(()),
        "{resp:?}"
    );
    // Apache Kafka answers CreateTopics once the controller has the topic; the broker's metadata
    // cache learns of it (and of the partitions' leaders) a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let md = conn.send(
            1,
            &MetadataRequest {
                topics: Some(vec![metadata_request::MetadataRequestTopic {
                    name: Some(name.to_owned().into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        let ready = md.topics.first().is_some_and(|t| {
            t.error_code == 0
                && t.partitions.len() == partitions as usize
                && t.partitions.iter().all(|p| p.leader_id >= 0)
        });
        if ready {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic {name} not in metadata: {md:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn batch(compression: Compression, n: usize, tag: &str) -> (BytesMut, Vec<(Bytes, Bytes)>) {
    let mut b = RecordBatchBuilder::new(0).compression(compression);
    let mut expected = Vec::new();
    for i in 0..n {
        let k = Bytes::from(format!("{tag}-key-{i}"));
        let v = Bytes::from(format!("{tag}-value-{i}-{}", "x".repeat(i * 7)));
        expected.push((k.clone(), v.clone()));
        b = b.push(
            1_700_000_000_000 + i as i64,
            Some(k),
            Some(v),
            vec![RecordHeader {
                key: StrBytes::from(format!("h{i}")),
                value: Some(Bytes::from_static(b"hv")),
            }],
        );
    }
    let mut buf = BytesMut::new();
    b.build().encode(&mut buf).unwrap();
    (buf, expected)
}

#[test]
fn produce_every_compression_fetch_back_and_list_offsets() {
    let broker = TestBroker::shared().expect("broker");
    let mut conn = Conn::connect(broker.bootstrap());
    let topic = unique_name("codec");
    create_topic(&mut conn, &topic, 1);

    // Metadata at an old and a recent version (12 is the newest Tansu knows).
    for v in [1, 12] {
        let md = conn.send(
            v,
            &MetadataRequest {
                topics: Some(vec![metadata_request::MetadataRequestTopic {
                    name: Some(topic.clone().into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        assert_eq!(md.topics.len(), 1, "v{v}");
        assert_eq!(md.topics[0].partitions.len(), 1, "v{v}");
        assert!(!md.brokers.is_empty(), "v{v}");
        assert_eq!(
            md.brokers[0].port,
            broker
                .bootstrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<i32>()
                .unwrap(),
            "advertised port"
        );
    }

    let mut expected = Vec::new();
    let mut last_base = 0;
    for (i, c) in Compression::ALL.into_iter().enumerate() {
        let (records, exp) = batch(c, 20 + i, c.name());
        let req = ProduceRequest {
            acks: -1,
            timeout_ms: 10_000,
            topic_data: vec![produce_request::TopicProduceData {
                name: topic.clone().into(),
                partition_data: vec![produce_request::PartitionProduceData {
                    index: 0,
                    records: Some(records.freeze()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        // Alternate a classic and a flexible version; zstd needs Produce v7+ (KIP-110), and
        // Apache Kafka refuses it below that.
        let version = if i % 2 == 0 && c != Compression::Zstd {
            3
        } else {
            9
        };
        if c == Compression::Zstd && !broker.is_tansu() {
            let old = conn.send(3, &req);
            let p = &old.responses[0].partition_responses[0];
            assert_eq!(
                ErrorCode::check(p.error_code),
                Err(ErrorCode::UnsupportedCompressionType),
                "zstd at Produce v3: {p:?}"
            );
        }
        let resp = conn.send(version, &req);
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(ErrorCode::check(p.error_code), Ok(()), "{c:?}: {p:?}");
        assert_eq!(p.base_offset, expected.len() as i64, "{c:?}");
        last_base = p.base_offset;
        expected.extend(exp);
    }
    let log_end = expected.len() as i64;

    // Fetch everything back, at v4 (classic) and v12 (flexible), and compare record by record.
    for version in [4, 12] {
        let mut got: Vec<(Bytes, Bytes)> = Vec::new();
        let mut offset = 0;
        while offset < log_end {
            let resp = conn.send(
                version,
                &FetchRequest {
                    replica_id: -1,
                    max_wait_ms: 500,
                    min_bytes: 1,
                    max_bytes: 1 << 20,
                    topics: vec![fetch_request::FetchTopic {
                        topic: topic.clone().into(),
                        partitions: vec![fetch_request::FetchPartition {
                            partition: 0,
                            fetch_offset: offset,
                            partition_max_bytes: 1 << 20,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
            let p = &resp.responses[0].partitions[0];
            assert_eq!(ErrorCode::check(p.error_code), Ok(()));
            assert_eq!(p.high_watermark, log_end, "v{version} high watermark");
            let batches = decode_batches(
                p.records.clone().unwrap_or_default(),
                &DecodeOptions::default(),
            )
            .expect("records decode");
            assert!(
                !batches.is_empty(),
                "v{version}: no batches at offset {offset}"
            );
            for b in batches {
                for r in b.records {
                    if r.offset < offset {
                        continue;
                    }
                    assert_eq!(r.offset, got.len() as i64, "offsets are contiguous");
                    assert_eq!(r.headers.len(), 1);
                    got.push((r.key.unwrap(), r.value.unwrap()));
                }
                offset = b.header.next_offset();
            }
        }
        assert_eq!(got, expected, "fetch v{version}");
    }

    // ListOffsets: earliest is 0; latest is the log end on Apache Kafka and, on Tansu, the last
    // batch's base offset + 1 (a departure docs/DESIGN.md lists).
    let list = |conn: &mut Conn, ts: i64| {
        let resp = conn.send(
            7,
            &ListOffsetsRequest {
                replica_id: -1,
                topics: vec![list_offsets_request::ListOffsetsTopic {
                    name: topic.clone().into(),
                    partitions: vec![list_offsets_request::ListOffsetsPartition {
                        partition_index: 0,
                        timestamp: ts,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        let p = &resp.topics[0].partitions[0];
        assert_eq!(ErrorCode::check(p.error_code), Ok(()));
        p.offset
    };
    assert_eq!(list(&mut conn, -2), 0);
    let latest = list(&mut conn, -1);
    if broker.is_tansu() {
        assert_eq!(latest, last_base + 1, "Tansu's ListOffsets LATEST");
    } else {
        assert_eq!(latest, log_end);
    }
}

#[test]
fn groups_join_sync_commit_describe_list() {
    let broker = TestBroker::shared().expect("broker");
    let mut conn = Conn::connect(broker.bootstrap());
    let topic = unique_name("grp-topic");
    let group = unique_name("grp");
    create_topic(&mut conn, &topic, 2);

    let fc = conn.send(
        4,
        &FindCoordinatorRequest {
            key_type: 0,
            coordinator_keys: vec![group.clone().into()],
            ..Default::default()
        },
    );
    assert_eq!(fc.coordinators.len(), 1);
    assert_eq!(ErrorCode::check(fc.coordinators[0].error_code), Ok(()));

    let join_once = |conn: &mut Conn, member_id: &str| {
        conn.send(
            6,
            &JoinGroupRequest {
                group_id: group.clone().into(),
                session_timeout_ms: 6_000,
                rebalance_timeout_ms: 10_000,
                member_id: member_id.to_owned().into(),
                protocol_type: "consumer".into(),
                protocols: vec![join_group_request::JoinGroupRequestProtocol {
                    name: "range".into(),
                    metadata: cohort_protocol::consumer_protocol::encode_subscription(
                        &ConsumerProtocolSubscription {
                            topics: vec![topic.clone().into()].into(),
                            ..Default::default()
                        },
                        0,
                    )
                    .unwrap(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
    };
    // A coordinator that is still loading its partition of __consumer_offsets answers
    // NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS; a client retries (Java's
    // AbstractCoordinator does, after rediscovering the coordinator).
    let join = |conn: &mut Conn, member_id: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = join_once(conn, member_id);
            match ErrorCode::from_code(r.error_code) {
                Some(ErrorCode::NotCoordinator | ErrorCode::CoordinatorLoadInProgress)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => return r,
            }
        }
    };
    // KIP-394: the first JoinGroup (v4+) is answered with MEMBER_ID_REQUIRED and a member id.
    let first = join(&mut conn, "");
    assert_eq!(
        ErrorCode::from_code(first.error_code),
        Some(ErrorCode::MemberIdRequired)
    );
    assert!(!first.member_id.is_empty());
    let joined = join(&mut conn, &first.member_id);
    assert_eq!(ErrorCode::check(joined.error_code), Ok(()), "{joined:?}");
    assert_eq!(joined.leader, joined.member_id, "a lone member leads");
    assert_eq!(joined.members.len(), 1);

    let assignment = cohort_protocol::consumer_protocol::encode_assignment(
        &ConsumerProtocolAssignment {
            assigned_partitions: vec![
                cohort_protocol::consumer_protocol::AssignedTopicPartitions {
                    topic: topic.clone().into(),
                    partitions: vec![0, 1],
                },
            ],
            ..Default::default()
        },
        0,
    )
    .unwrap();
    let sync = conn.send(
        4,
        &SyncGroupRequest {
            group_id: group.clone().into(),
            generation_id: joined.generation_id,
            member_id: joined.member_id.clone(),
            assignments: vec![sync_group_request::SyncGroupRequestAssignment {
                member_id: joined.member_id.clone(),
                assignment: assignment.clone(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(ErrorCode::check(sync.error_code), Ok(()));
    let (_, got) =
        cohort_protocol::consumer_protocol::decode_assignment(sync.assignment.clone()).unwrap();
    assert_eq!(got.assigned_partitions[0].partitions, vec![0, 1]);

    let commit = conn.send(
        8,
        &OffsetCommitRequest {
            group_id: group.clone().into(),
            generation_id_or_member_epoch: joined.generation_id,
            member_id: joined.member_id.clone(),
            topics: vec![offset_commit_request::OffsetCommitRequestTopic {
                name: topic.clone().into(),
                partitions: vec![offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: 1,
                    committed_offset: 42,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(
        ErrorCode::check(commit.topics[0].partitions[0].error_code),
        Ok(())
    );
    let fetched = conn.send(
        8,
        &OffsetFetchRequest {
            groups: vec![offset_fetch_request::OffsetFetchRequestGroup {
                group_id: group.clone().into(),
                topics: Some(vec![offset_fetch_request::OffsetFetchRequestTopics {
                    name: topic.clone().into(),
                    partition_indexes: vec![0, 1],
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let parts = &fetched.groups[0].topics[0].partitions;
    let offsets: Vec<(i32, i64)> = parts
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(offsets, vec![(0, -1), (1, 42)]);

    let hb = conn.send(
        4,
        &HeartbeatRequest {
            group_id: group.clone().into(),
            generation_id: joined.generation_id,
            member_id: joined.member_id.clone(),
            ..Default::default()
        },
    );
    assert_eq!(ErrorCode::check(hb.error_code), Ok(()));

    let described = conn.send(
        5,
        &DescribeGroupsRequest {
            groups: vec![group.clone().into()],
            ..Default::default()
        },
    );
    assert_eq!(described.groups.len(), 1);
    let g = &described.groups[0];
    assert_eq!(ErrorCode::check(g.error_code), Ok(()));
    assert_eq!(g.group_id, group.as_str());
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].member_id, joined.member_id);

    let listed = conn.send(4, &ListGroupsRequest::default());
    assert_eq!(ErrorCode::check(listed.error_code), Ok(()));
    assert!(
        listed.groups.iter().any(|lg| lg.group_id == group.as_str()),
        "group {group} not listed: {:?}",
        listed.groups
    );

    let left = conn.send(
        4,
        &LeaveGroupRequest {
            group_id: group.clone().into(),
            members: vec![leave_group_request::MemberIdentity {
                member_id: joined.member_id.clone(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    assert_eq!(ErrorCode::check(left.error_code), Ok(()));
    let _ = Duration::ZERO;
}

#[test]
fn api_versions_every_version() {
    let broker = TestBroker::shared().expect("broker");
    let mut conn = Conn::connect(broker.bootstrap());
    for v in 0..=4 {
        let resp = conn.send(
            v,
            &ApiVersionsRequest {
                client_software_name: "cohort".into(),
                client_software_version: "0.1.0".into(),
                ..Default::default()
            },
        );
        assert_eq!(ErrorCode::check(resp.error_code), Ok(()), "v{v}");
        assert!(
            resp.api_keys
                .iter()
                .any(|k| k.api_key == 11 && k.max_version >= 5),
            "v{v}: JoinGroup"
        );
    }
}
