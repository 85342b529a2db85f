//! Differential tests against the crates.io `kafka-protocol` crate (tychedelia/kafka-protocol-rs,
//! generated from Kafka 4.1's schemas), for every message and every version both support.
//!
//! For a random value `m` valid at version `v`: our encoding of `m` must decode with their codec
//! and re-encode with it to the same bytes, and our decoder must read their bytes back as `m`.
//! That checks both directions without converting between the two crates' types.

use bytes::Bytes;
use cohort_protocol::Message;
use cohort_protocol::messages as ours;
use cohort_protocol::testing::{Random, Rng};
use kafka_protocol_upstream::messages as theirs;
use kafka_protocol_upstream::protocol::{Decodable, Encodable, Message as TheirMessage};
use proptest::prelude::*;

fn differential<O, T>(seed: u64) -> Result<usize, TestCaseError>
where
    O: Message + Random,
    T: Decodable + Encodable + TheirMessage,
{
    let both = O::VERSIONS.intersect(&cohort_protocol::VersionRange::new(
        T::VERSIONS.min,
        T::VERSIONS.max,
    ));
    let mut checked = 0;
    for version in both.iter() {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(version as u64));
        let value = O::random(&mut rng, version);
        let mut ours_bytes = Vec::new();
        value
            .encode(&mut ours_bytes, version)
            .map_err(|e| TestCaseError::fail(format!("{} v{version}: {e}", O::NAME)))?;

        let mut input = Bytes::from(ours_bytes.clone());
        let theirs_value = T::decode(&mut input, version).map_err(|e| {
            TestCaseError::fail(format!(
                "{} v{version}: upstream cannot decode our bytes: {e:#}",
                O::NAME
            ))
        })?;
        prop_assert!(
            input.is_empty(),
            "{} v{}: upstream left {} bytes",
            O::NAME,
            version,
            input.len()
        );
        let mut theirs_bytes = bytes::BytesMut::new();
        theirs_value
            .encode(&mut theirs_bytes, version)
            .map_err(|e| {
                TestCaseError::fail(format!(
                    "{} v{version}: upstream cannot re-encode: {e:#}",
                    O::NAME
                ))
            })?;
        prop_assert_eq!(
            &ours_bytes[..],
            &theirs_bytes[..],
            "{} v{}: encodings differ",
            O::NAME,
            version
        );
        let back = O::decode(&mut theirs_bytes.freeze(), version)
            .map_err(|e| TestCaseError::fail(format!("{} v{version}: {e}", O::NAME)))?;
        prop_assert_eq!(&back, &value, "{} v{}", O::NAME, version);
        checked += 1;
    }
    Ok(checked)
}

macro_rules! differentials {
    ($($test:ident: $ty:ident,)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            $(
                #[test]
                fn $test(seed in any::<u64>()) {
                    let n = differential::<ours::$ty, theirs::$ty>(seed)?;
                    prop_assert!(n > 0, "no common version");
                }
            )*
        }
    };
}

differentials! {
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
