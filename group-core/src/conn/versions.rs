//! The newest version of an API that this client fills and reads correctly, where it is older
//! than the newest the codecs know. The codecs follow the Apache Kafka release the project pins
//! (`harness/kafka/pom.xml`), so a new release brings versions whose layout or answers the
//! client has not been taught yet; a request is sent at the highest version both sides support
//! and at most this one. Raising a cap is a change of behaviour, to be tested on the broker.

use cohort_protocol::ApiKey;

/// The cap for `api`, `None` when the codecs' newest version is fine.
pub(crate) fn client_max(api: ApiKey) -> Option<i16> {
    match api {
        // v13 names topics by id instead of by name (KIP-516); the producer names them.
        ApiKey::Produce => Some(12),
        // v13+ name topics by id (KIP-516); the fetchers name them.
        ApiKey::Fetch => Some(12),
        // v10 names topics by id and drops the names (KIP-848's follow-up in Kafka 4.1).
        ApiKey::OffsetCommit | ApiKey::OffsetFetch => Some(9),
        // v13 adds a top-level error code (REBOOTSTRAP_REQUIRED, KIP-1102) the client does not
        // act on yet.
        ApiKey::Metadata => Some(12),
        // v5 asks the broker to check the cluster and node ids (KIP-1242), which the client
        // does not send.
        ApiKey::ApiVersions => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cap is within what the codecs support, so it caps something real.
    #[test]
    fn caps_are_below_the_codecs_newest() {
        for api in ApiKey::ALL {
            if let Some(cap) = client_max(*api) {
                let v = api.versions();
                assert!(
                    v.min <= cap && cap <= v.max,
                    "{api:?}: cap {cap} outside {}..={}",
                    v.min,
                    v.max
                );
            }
        }
    }
}
