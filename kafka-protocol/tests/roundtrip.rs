//! Property tests: every generated message round-trips at every version of its schema.
//!
//! For each message and version, a random value valid at that version (see
//! `cohort_protocol::testing`) is encoded; the encoded length must equal `encoded_size`, decoding
//! must consume every byte and give back the same value.

use bytes::Bytes;
use cohort_protocol::messages::*;
use cohort_protocol::testing::{Random, Rng};
use cohort_protocol::{Decode, Encode, Message};
use proptest::prelude::*;

fn round_trip<M: Message + Random>(seed: u64) -> Result<(), TestCaseError> {
    for version in M::VERSIONS.iter() {
        let mut rng = Rng::new(seed.wrapping_add(version as u64));
        let value = M::random(&mut rng, version);
        let mut buf = Vec::new();
        value
            .encode(&mut buf, version)
            .map_err(|e| TestCaseError::fail(format!("{} v{version}: encode: {e}", M::NAME)))?;
        let size = value
            .encoded_size(version)
            .map_err(|e| TestCaseError::fail(format!("{} v{version}: size: {e}", M::NAME)))?;
        prop_assert_eq!(buf.len(), size, "{} v{}: encoded_size", M::NAME, version);
        let mut bytes = Bytes::from(buf);
        let decoded = M::decode(&mut bytes, version)
            .map_err(|e| TestCaseError::fail(format!("{} v{version}: decode: {e}", M::NAME)))?;
        prop_assert!(
            bytes.is_empty(),
            "{} v{}: {} bytes left",
            M::NAME,
            version,
            bytes.len()
        );
        prop_assert_eq!(&decoded, &value, "{} v{}", M::NAME, version);
    }
    Ok(())
}

macro_rules! round_trips {
    ($($test:ident: $ty:ty,)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $test(seed in any::<u64>()) {
                    round_trip::<$ty>(seed)?;
                }
            )*
        }
    };
}

round_trips! {
    api_versions_request: ApiVersionsRequest,
    api_versions_response: ApiVersionsResponse,
    metadata_request: MetadataRequest,
    metadata_response: MetadataResponse,
    find_coordinator_request: FindCoordinatorRequest,
    find_coordinator_response: FindCoordinatorResponse,
    join_group_request: JoinGroupRequest,
    join_group_response: JoinGroupResponse,
    sync_group_request: SyncGroupRequest,
    sync_group_response: SyncGroupResponse,
    heartbeat_request: HeartbeatRequest,
    heartbeat_response: HeartbeatResponse,
    leave_group_request: LeaveGroupRequest,
    leave_group_response: LeaveGroupResponse,
    offset_commit_request: OffsetCommitRequest,
    offset_commit_response: OffsetCommitResponse,
    offset_fetch_request: OffsetFetchRequest,
    offset_fetch_response: OffsetFetchResponse,
    list_offsets_request: ListOffsetsRequest,
    list_offsets_response: ListOffsetsResponse,
    fetch_request: FetchRequest,
    fetch_response: FetchResponse,
    produce_request: ProduceRequest,
    produce_response: ProduceResponse,
    create_topics_request: CreateTopicsRequest,
    create_topics_response: CreateTopicsResponse,
    delete_topics_request: DeleteTopicsRequest,
    delete_topics_response: DeleteTopicsResponse,
    create_partitions_request: CreatePartitionsRequest,
    create_partitions_response: CreatePartitionsResponse,
    describe_groups_request: DescribeGroupsRequest,
    describe_groups_response: DescribeGroupsResponse,
    list_groups_request: ListGroupsRequest,
    list_groups_response: ListGroupsResponse,
    sasl_handshake_request: SaslHandshakeRequest,
    sasl_handshake_response: SaslHandshakeResponse,
    sasl_authenticate_request: SaslAuthenticateRequest,
    sasl_authenticate_response: SaslAuthenticateResponse,
    consumer_group_heartbeat_request: ConsumerGroupHeartbeatRequest,
    consumer_group_heartbeat_response: ConsumerGroupHeartbeatResponse,
    delete_records_request: DeleteRecordsRequest,
    delete_records_response: DeleteRecordsResponse,
    request_header: RequestHeader,
    response_header: ResponseHeader,
    consumer_protocol_subscription: ConsumerProtocolSubscription,
    consumer_protocol_assignment: ConsumerProtocolAssignment,
}

/// A field that does not exist in the chosen version must not be silently dropped unless the
/// schema marks it ignorable: Kafka's Java encoder raises `UnsupportedVersionException` there.
#[test]
fn non_ignorable_field_outside_its_versions_is_an_error() {
    let req = JoinGroupRequest {
        group_instance_id: Some("static-1".into()),
        ..Default::default()
    };
    let err = req.encode(&mut Vec::new(), 4).unwrap_err();
    assert_eq!(
        err,
        cohort_protocol::EncodeError::FieldNotInVersion {
            field: "GroupInstanceId",
            version: 4
        }
    );
    assert!(req.encoded_size(4).is_err());
    // Ignorable fields (RebalanceTimeoutMs at v0) are dropped silently, as in Kafka.
    let req = JoinGroupRequest {
        rebalance_timeout_ms: 30_000,
        ..Default::default()
    };
    req.encode(&mut Vec::new(), 0).unwrap();
}

#[test]
fn unsupported_versions_are_typed_errors() {
    let err = HeartbeatRequest::default()
        .encode(&mut Vec::new(), 99)
        .unwrap_err();
    assert!(matches!(
        err,
        cohort_protocol::EncodeError::UnsupportedVersion { version: 99, .. }
    ));
    let err = HeartbeatResponse::decode(&mut Bytes::new(), -1).unwrap_err();
    assert!(matches!(
        err,
        cohort_protocol::DecodeError::UnsupportedVersion { version: -1, .. }
    ));
}

/// Unknown tagged fields survive a decode/encode cycle byte for byte (KIP-482).
#[test]
fn unknown_tagged_fields_are_preserved() {
    let mut msg = HeartbeatRequest {
        group_id: "g".into(),
        generation_id: 3,
        member_id: "m".into(),
        ..Default::default()
    };
    msg.unknown_tagged_fields
        .push(cohort_protocol::RawTaggedField {
            tag: 42,
            data: Bytes::from_static(b"\x01\x02\x03"),
        });
    let mut buf = Vec::new();
    msg.encode(&mut buf, 4).unwrap();
    let decoded = HeartbeatRequest::decode(&mut Bytes::from(buf.clone()), 4).unwrap();
    assert_eq!(decoded.unknown_tagged_fields, msg.unknown_tagged_fields);
    let mut again = Vec::new();
    decoded.encode(&mut again, 4).unwrap();
    assert_eq!(again, buf);
}
