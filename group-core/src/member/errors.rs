//! Every error code of the group APIs, mapped to exactly one transition, in one place.
//!
//! The reference is the Java client: the response handlers of `AbstractCoordinator`
//! (`JoinGroupResponseHandler`, `SyncGroupResponseHandler`, `HeartbeatResponseHandler`) and
//! `ConsumerCoordinator.OffsetCommitResponseHandler`. Differences from other clients are
//! deliberate:
//! ILLEGAL_GENERATION keeps the member id ("since the member ID might still be valid", Java
//! `resetStateAndGeneration`), REBALANCE_IN_PROGRESS on a heartbeat while already rebalancing is
//! ignored and heartbeats continue, and a failed commit during a rebalance never resets the
//! generation (librdkafka #4908).

use cohort_protocol::ErrorCode;

/// The APIs whose errors a member acts on. LeaveGroup is not one: leaving is best effort, and
/// the member is gone from its own side whatever the answer (Java logs it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupApi {
    JoinGroup,
    SyncGroup,
    Heartbeat,
    OffsetCommit,
}

/// What the member does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Take the member id from the response and join again at once (KIP-394).
    AdoptMemberIdAndRejoin,
    /// Forget the member id and generation, join again at once (the coordinator does not know
    /// this member).
    ResetMemberAndRejoin,
    /// Forget the generation, keep the member id, join again (the generation moved on).
    ResetGenerationAndRejoin,
    /// The group is rebalancing: join again (eager members revoke first), generation kept.
    Rejoin,
    /// Heartbeat REBALANCE_IN_PROGRESS: rejoin when stable, ignore when already rebalancing.
    RejoinUnlessRebalancing,
    /// The coordinator moved or is unavailable: look it up again and retry.
    Rediscover,
    /// Transient: retry the same request after a backoff.
    RetryWithBackoff,
    /// The commit failed and must not be retried (the member will rejoin or the data is bad);
    /// the generation is left alone.
    FailCommit,
    /// Another instance with our `group.instance.id` took over (KIP-345).
    Fenced,
    /// Retrying cannot help.
    Fatal,
}

/// The transition for `code` answering `api`.
pub(crate) fn transition(api: GroupApi, code: ErrorCode) -> Transition {
    use ErrorCode as E;
    use GroupApi as A;
    use Transition as T;
    match (api, code) {
        // KIP-394: JoinGroup v4+ hands out the member id with this error.
        (A::JoinGroup, E::MemberIdRequired) => T::AdoptMemberIdAndRejoin,
        (A::JoinGroup, E::UnknownMemberId) => T::ResetMemberAndRejoin,
        (A::JoinGroup, E::IllegalGeneration) => T::ResetGenerationAndRejoin,
        // Java retries a JoinGroup answered with REBALANCE_IN_PROGRESS ("could indicate a
        // replication timeout on the broker").
        (A::JoinGroup, E::RebalanceInProgress) => T::RetryWithBackoff,
        (A::JoinGroup, E::CoordinatorLoadInProgress) => T::RetryWithBackoff,

        (A::SyncGroup, E::RebalanceInProgress) => T::Rejoin,
        (A::SyncGroup, E::UnknownMemberId) => T::ResetMemberAndRejoin,
        (A::SyncGroup, E::IllegalGeneration) => T::ResetGenerationAndRejoin,

        (A::Heartbeat, E::RebalanceInProgress) => T::RejoinUnlessRebalancing,
        (A::Heartbeat, E::UnknownMemberId) => T::ResetMemberAndRejoin,
        (A::Heartbeat, E::IllegalGeneration) => T::ResetGenerationAndRejoin,

        // Commits: Java raises RebalanceInProgressException and requests a rejoin, keeping the
        // generation; UNKNOWN_MEMBER_ID and ILLEGAL_GENERATION fail the commit, and reset the
        // member only when the generation is still the current one (decided by the caller,
        // which knows whether the response is stale).
        (A::OffsetCommit, E::RebalanceInProgress) => T::Rejoin,
        (A::OffsetCommit, E::UnknownMemberId) => T::ResetMemberAndRejoin,
        (A::OffsetCommit, E::IllegalGeneration) => T::ResetGenerationAndRejoin,
        (
            A::OffsetCommit,
            E::CoordinatorLoadInProgress | E::RequestTimedOut | E::UnknownTopicOrPartition,
        ) => T::RetryWithBackoff,
        (
            A::OffsetCommit,
            E::OffsetMetadataTooLarge | E::InvalidCommitOffsetSize | E::TopicAuthorizationFailed,
        ) => T::FailCommit,

        (_, E::NotCoordinator | E::CoordinatorNotAvailable) => T::Rediscover,
        (_, E::FencedInstanceId) => T::Fenced,
        (
            _,
            E::InconsistentGroupProtocol
            | E::InvalidSessionTimeout
            | E::InvalidGroupId
            | E::GroupAuthorizationFailed
            | E::GroupMaxSizeReached
            | E::UnsupportedVersion
            | E::UnreleasedInstanceId
            | E::InvalidRequest,
        ) => T::Fatal,
        // Anything else: retry what Kafka classes retriable, give up on the rest (Java raises
        // "Unexpected error" as a KafkaException there).
        (_, other) if other.is_retriable() => T::RetryWithBackoff,
        _ => T::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_error_has_javas_transition() {
        use ErrorCode as E;
        use GroupApi as A;
        use Transition as T;
        let rows = [
            (A::JoinGroup, E::MemberIdRequired, T::AdoptMemberIdAndRejoin),
            (A::JoinGroup, E::UnknownMemberId, T::ResetMemberAndRejoin),
            (A::JoinGroup, E::RebalanceInProgress, T::RetryWithBackoff),
            (A::JoinGroup, E::NotCoordinator, T::Rediscover),
            (A::JoinGroup, E::CoordinatorNotAvailable, T::Rediscover),
            (
                A::JoinGroup,
                E::CoordinatorLoadInProgress,
                T::RetryWithBackoff,
            ),
            (A::JoinGroup, E::FencedInstanceId, T::Fenced),
            (A::JoinGroup, E::InconsistentGroupProtocol, T::Fatal),
            (A::JoinGroup, E::InvalidSessionTimeout, T::Fatal),
            (A::JoinGroup, E::GroupAuthorizationFailed, T::Fatal),
            (A::JoinGroup, E::GroupMaxSizeReached, T::Fatal),
            (A::SyncGroup, E::RebalanceInProgress, T::Rejoin),
            (A::SyncGroup, E::UnknownMemberId, T::ResetMemberAndRejoin),
            (
                A::SyncGroup,
                E::IllegalGeneration,
                T::ResetGenerationAndRejoin,
            ),
            (A::SyncGroup, E::NotCoordinator, T::Rediscover),
            (A::SyncGroup, E::FencedInstanceId, T::Fenced),
            (
                A::Heartbeat,
                E::RebalanceInProgress,
                T::RejoinUnlessRebalancing,
            ),
            (A::Heartbeat, E::UnknownMemberId, T::ResetMemberAndRejoin),
            (
                A::Heartbeat,
                E::IllegalGeneration,
                T::ResetGenerationAndRejoin,
            ),
            (A::Heartbeat, E::NotCoordinator, T::Rediscover),
            (A::Heartbeat, E::FencedInstanceId, T::Fenced),
            (A::Heartbeat, E::GroupAuthorizationFailed, T::Fatal),
            (A::OffsetCommit, E::RebalanceInProgress, T::Rejoin),
            (A::OffsetCommit, E::UnknownMemberId, T::ResetMemberAndRejoin),
            (
                A::OffsetCommit,
                E::IllegalGeneration,
                T::ResetGenerationAndRejoin,
            ),
            (A::OffsetCommit, E::NotCoordinator, T::Rediscover),
            (A::OffsetCommit, E::RequestTimedOut, T::RetryWithBackoff),
            (A::OffsetCommit, E::OffsetMetadataTooLarge, T::FailCommit),
            (A::OffsetCommit, E::FencedInstanceId, T::Fenced),
        ];
        for (api, code, want) in rows {
            assert_eq!(transition(api, code), want, "{api:?} {code:?}");
        }
        // Unknown codes: fatal unless retriable.
        assert_eq!(transition(A::Heartbeat, E::Unknown(9999)), T::Fatal);
        assert_eq!(
            transition(A::SyncGroup, E::NetworkException),
            T::RetryWithBackoff
        );
    }
}
