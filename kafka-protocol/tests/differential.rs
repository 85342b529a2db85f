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

cohort_protocol::for_each_message!(differentials);
