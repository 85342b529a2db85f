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

cohort_protocol::for_each_message!(round_trips);

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
