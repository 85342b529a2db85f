//! Golden bytes: response frames captured from real brokers (Apache Kafka 4.4.0 in
//! `tests/golden/apache-kafka/`, Tansu in `tests/golden/tansu/`) by `examples/capture_golden.rs`.
//! Each must decode to the values the capture set up, and re-encode to the same bytes.

use bytes::{Bytes, BytesMut};
use cohort_protocol::consumer_protocol::{decode_assignment, decode_subscription};
use cohort_protocol::frame::decode_response;
use cohort_protocol::messages::*;
use cohort_protocol::records::{DecodeOptions, decode_batches};
use cohort_protocol::{ApiKey, Encode, ErrorCode, Message, Request};

fn golden(name: &str) -> Bytes {
    // `name` is `<broker kind>/<capture>`.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.trim().chars())
        .collect();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Bytes::from(bytes)
}

/// Decodes a frame and re-encodes it. With `exact`, the bytes must match the capture; without,
/// re-encoding must decode to the same value (for captures that carry default-valued tagged
/// fields, which Kafka's encoders omit).
fn decode_and_reencode<R: Request>(name: &str, version: i16, exact: bool) -> R::Response {
    let frame = golden(name);
    let (header, body) =
        decode_response::<R>(frame.clone(), version).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut again = BytesMut::new();
    header
        .encode(&mut again, R::API_KEY.response_header_version(version))
        .unwrap();
    body.encode(&mut again, version).unwrap();
    if exact {
        assert_eq!(&again[..], &frame[..], "{name}: re-encoding differs");
    } else {
        let (h2, b2) = decode_response::<R>(again.freeze(), version).unwrap();
        assert_eq!(
            (h2, &b2),
            (header, &body),
            "{name}: {} does not round-trip",
            <R::Response as Message>::NAME
        );
    }
    body
}

#[test]
fn tansu_api_versions_v3() {
    let r = decode_and_reencode::<ApiVersionsRequest>("tansu/api_versions-v3", 3, false);
    // Tansu's v3 response carries tagged fields at their default values, which
    // Kafka's encoder (and ours) omits: the capture is longer than its re-encoding.
    let mut ours = BytesMut::new();
    r.encode(&mut ours, 3).unwrap();
    assert!(ours.len() + 4 < golden("tansu/api_versions-v3").len());
    assert_eq!(ErrorCode::check(r.error_code), Ok(()));
    // Tansu lists 36 APIs, JoinGroup v0-9, Fetch v0-17; no CreatePartitions.
    assert_eq!(r.api_keys.len(), 36);
    let join = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::JoinGroup.as_i16())
        .unwrap();
    assert_eq!((join.min_version, join.max_version), (0, 9));
    let fetch = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Fetch.as_i16())
        .unwrap();
    assert_eq!((fetch.min_version, fetch.max_version), (0, 17));
    assert!(
        !r.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::CreatePartitions.as_i16())
    );
}

#[test]
fn tansu_metadata_v12() {
    let r = decode_and_reencode::<MetadataRequest>("tansu/metadata-v12", 12, true);
    assert_eq!(r.topics.len(), 1);
    let t = &r.topics[0];
    assert_eq!(t.name.as_deref(), Some("golden-topic"));
    assert_eq!(t.partitions.len(), 3);
    assert!(
        t.partitions
            .iter()
            .all(|p| p.leader_id == r.brokers[0].node_id)
    );
    assert_eq!(r.brokers[0].host, "127.0.0.1");
}

#[test]
fn tansu_fetch_v12_with_records() {
    let r = decode_and_reencode::<FetchRequest>("tansu/fetch-v12", 12, true);
    let p = &r.responses[0].partitions[0];
    assert_eq!(r.responses[0].topic, "golden-topic");
    assert_eq!(p.high_watermark, 5);
    let batches = decode_batches(p.records.clone().unwrap(), &DecodeOptions::default()).unwrap();
    let values: Vec<String> = batches
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(
        values,
        (0..5)
            .map(|i| format!("golden-value-{i}"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn tansu_join_group_v6_member_id_required() {
    let r =
        decode_and_reencode::<JoinGroupRequest>("tansu/join_group-v6-member_id_required", 6, true);
    assert_eq!(
        ErrorCode::from_code(r.error_code),
        Some(ErrorCode::MemberIdRequired)
    );
    assert!(!r.member_id.is_empty());
}

#[test]
fn tansu_join_group_v6_leader() {
    let r = decode_and_reencode::<JoinGroupRequest>("tansu/join_group-v6", 6, true);
    assert_eq!(ErrorCode::check(r.error_code), Ok(()));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.members.len(), 1);
    let (version, sub) = decode_subscription(r.members[0].metadata.clone()).unwrap();
    assert_eq!(version, 1);
    assert_eq!(sub.topics.to_vec(), vec!["golden-topic"]);
    // Tansu's generations start at 0 (Apache Kafka's at 1).
    assert_eq!(r.generation_id, 0);
}

#[test]
fn tansu_sync_group_v4() {
    let r = decode_and_reencode::<SyncGroupRequest>("tansu/sync_group-v4", 4, true);
    assert_eq!(ErrorCode::check(r.error_code), Ok(()));
    let (_, a) = decode_assignment(r.assignment).unwrap();
    assert_eq!(a.assigned_partitions.len(), 1);
    assert_eq!(a.assigned_partitions[0].topic, "golden-topic");
    assert_eq!(a.assigned_partitions[0].partitions, vec![0, 1, 2]);
}

#[test]
fn tansu_offset_fetch_v8() {
    // Tansu does not keep a commit's metadata string.
    offset_fetch_v8("tansu/offset_fetch-v8", None);
}

/// OffsetFetch v8 (groups batched, KIP-709): partition 0 committed at 3 with metadata, partition
/// 1 never committed (-1).
fn offset_fetch_v8(name: &str, metadata: Option<&str>) {
    let r = decode_and_reencode::<OffsetFetchRequest>(name, 8, true);
    assert_eq!(r.groups.len(), 1);
    let g = &r.groups[0];
    assert_eq!(g.group_id, "golden-group");
    assert_eq!(ErrorCode::check(g.error_code), Ok(()));
    let t = &g.topics[0];
    assert_eq!(t.name, "golden-topic");
    let by_partition: Vec<(i32, i64)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(by_partition, vec![(0, 3), (1, -1)]);
    assert_eq!(t.partitions[0].metadata.as_deref(), metadata);
}

mod apache_kafka {
    //! Captured from Apache Kafka 4.4.0 (KRaft, one node).

    use super::*;
    use cohort_protocol::records::Compression;

    #[test]
    fn api_versions_v3() {
        let r = decode_and_reencode::<ApiVersionsRequest>("apache-kafka/api_versions-v3", 3, true);
        assert_eq!(ErrorCode::check(r.error_code), Ok(()));
        let range = |api: ApiKey| {
            r.api_keys
                .iter()
                .find(|k| k.api_key == api.as_i16())
                .map(|k| (k.min_version, k.max_version))
        };
        // Kafka 4 removed the oldest versions (KIP-896) and serves KIP-848 and CreatePartitions.
        assert_eq!(range(ApiKey::JoinGroup), Some((0, 9)));
        assert_eq!(range(ApiKey::Fetch), Some((4, 18)));
        assert_eq!(range(ApiKey::OffsetCommit), Some((2, 10)));
        assert!(range(ApiKey::ConsumerGroupHeartbeat).is_some());
        assert!(range(ApiKey::CreatePartitions).is_some());
        // The codecs come from the same release: they know the newest version the broker serves
        // of every API they implement. (The broker still lists Produce v0-2, which Kafka 4's
        // definitions no longer describe, for old clients; KIP-896.)
        for (api, (min, max)) in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::ListOffsets,
            ApiKey::Metadata,
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
            ApiKey::ConsumerGroupHeartbeat,
        ]
        .into_iter()
        .filter_map(|a| range(a).map(|r| (a, r)))
        {
            let ours = api.versions();
            assert!(
                max == ours.max && min <= ours.max,
                "{api:?}: broker {min}-{max}, codecs {}-{}",
                ours.min,
                ours.max
            );
        }
    }

    #[test]
    fn metadata_v12() {
        let r = decode_and_reencode::<MetadataRequest>("apache-kafka/metadata-v12", 12, true);
        assert_eq!(r.topics.len(), 1);
        let t = &r.topics[0];
        assert_eq!(t.name.as_deref(), Some("golden-topic"));
        assert_ne!(
            t.topic_id,
            Default::default(),
            "Kafka names every topic by id"
        );
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.brokers[0].node_id, 1);
        assert!(t.partitions.iter().all(|p| p.leader_id == 1));
        assert!(r.cluster_id.is_some());
    }

    fn values(r: &FetchResponse) -> Vec<String> {
        let p = &r.responses[0].partitions[0];
        let batches =
            decode_batches(p.records.clone().unwrap(), &DecodeOptions::default()).unwrap();
        batches
            .iter()
            .flat_map(|b| &b.records)
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn fetch_v12_with_records() {
        let r = decode_and_reencode::<FetchRequest>("apache-kafka/fetch-v12", 12, true);
        let p = &r.responses[0].partitions[0];
        assert_eq!(r.responses[0].topic, "golden-topic");
        assert_eq!((p.high_watermark, p.last_stable_offset), (5, 5));
        assert_eq!(
            values(&r),
            (0..5)
                .map(|i| format!("golden-value-{i}"))
                .collect::<Vec<_>>()
        );
    }

    /// The broker hands back each batch as the producer compressed it (topic
    /// `compression.type=producer`, Kafka's default); every codec decodes.
    #[test]
    fn fetch_v12_with_each_compression() {
        for c in Compression::ALL {
            let name = format!("apache-kafka/fetch-v12-{}", c.name());
            let r = decode_and_reencode::<FetchRequest>(&name, 12, true);
            assert_eq!(r.responses[0].topic, "golden-compressed", "{c:?}");
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.high_watermark, 5, "{c:?}");
            let batches =
                decode_batches(p.records.clone().unwrap(), &DecodeOptions::default()).unwrap();
            assert_eq!(batches.len(), 1, "{c:?}");
            assert_eq!(batches[0].header.compression, c, "{c:?}");
            assert_eq!(
                values(&r),
                (0..5)
                    .map(|i| format!("{}-value-{i}-{}", c.name(), "x".repeat(40)))
                    .collect::<Vec<_>>(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn join_group_v6_member_id_required() {
        let r = decode_and_reencode::<JoinGroupRequest>(
            "apache-kafka/join_group-v6-member_id_required",
            6,
            true,
        );
        assert_eq!(
            ErrorCode::from_code(r.error_code),
            Some(ErrorCode::MemberIdRequired)
        );
        // Kafka names the member after the client id, then a UUID.
        assert!(r.member_id.starts_with("cohort-test-"), "{}", r.member_id);
        assert_eq!(r.generation_id, -1);
    }

    #[test]
    fn join_group_v6_leader() {
        let r = decode_and_reencode::<JoinGroupRequest>("apache-kafka/join_group-v6", 6, true);
        assert_eq!(ErrorCode::check(r.error_code), Ok(()));
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.members.len(), 1);
        let (version, sub) = decode_subscription(r.members[0].metadata.clone()).unwrap();
        assert_eq!(version, 1);
        assert_eq!(sub.topics.to_vec(), vec!["golden-topic"]);
        assert_eq!(r.generation_id, 1, "Apache Kafka's generations start at 1");
    }

    #[test]
    fn sync_group_v4() {
        let r = decode_and_reencode::<SyncGroupRequest>("apache-kafka/sync_group-v4", 4, true);
        assert_eq!(ErrorCode::check(r.error_code), Ok(()));
        let (_, a) = decode_assignment(r.assignment).unwrap();
        assert_eq!(a.assigned_partitions[0].topic, "golden-topic");
        assert_eq!(a.assigned_partitions[0].partitions, vec![0, 1, 2]);
    }

    #[test]
    fn offset_fetch_v8() {
        super::offset_fetch_v8("apache-kafka/offset_fetch-v8", Some("golden"));
    }
}
