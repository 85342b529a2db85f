//! Every error code of ConsumerGroupHeartbeat and of a KIP-848 member's OffsetCommit, mapped to
//! exactly one action, in one place.
//!
//! The reference is the Java client: `AbstractHeartbeatRequestManager.onErrorResponse`,
//! `ConsumerHeartbeatRequestManager.handleSpecificExceptionInResponse` and
//! `CommitRequestManager` (KIP-848).

use cohort_protocol::ErrorCode;

/// What a KIP-848 member does about a ConsumerGroupHeartbeat error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatAction {
    /// The coordinator moved or is unavailable: find it again; the next heartbeat is a full one
    /// and goes out as soon as it is known (no backoff).
    Rediscover,
    /// Transient: the same heartbeat again after a backoff (a full one).
    RetryWithBackoff,
    /// The member is no longer in the group: give every partition up as lost, then join again
    /// with epoch 0 and the same member id.
    Fenced,
    /// Say it and go on (TOPIC_AUTHORIZATION_FAILED: the member stays, in case the ACLs are
    /// added).
    Report,
    /// Nothing to retry: the member stops.
    Fatal,
}

/// The action for `code` answering a ConsumerGroupHeartbeat of a member in the group (the answer
/// to a leave heartbeat, error or not, only ends the leave, as Java's does).
pub(crate) fn heartbeat_action(code: ErrorCode) -> HeartbeatAction {
    use ErrorCode as E;
    use HeartbeatAction as A;
    match code {
        E::NotCoordinator | E::CoordinatorNotAvailable => A::Rediscover,
        E::CoordinatorLoadInProgress => A::RetryWithBackoff,
        // KIP-848: abandon all partitions and rejoin with epoch 0.
        E::FencedMemberEpoch | E::UnknownMemberId => A::Fenced,
        E::TopicAuthorizationFailed => A::Report,
        // UNRELEASED_INSTANCE_ID: a static member rejoined while its previous incarnation still
        // holds the instance id; FENCED_INSTANCE_ID: another member took it. Java fails the
        // member on both, as on the configuration errors and on a broker that does not serve
        // the protocol (UNSUPPORTED_VERSION: "set group.protocol=classic").
        E::GroupAuthorizationFailed
        | E::InvalidRequest
        | E::GroupMaxSizeReached
        | E::UnsupportedAssignor
        | E::UnreleasedInstanceId
        | E::FencedInstanceId
        | E::InvalidRegularExpression
        | E::UnsupportedVersion
        | E::GroupIdNotFound => A::Fatal,
        // Java: "an unknown error - there could be a bug in the code or a new error code".
        _ => A::Fatal,
    }
}

/// What a KIP-848 member does about an OffsetCommit error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitAction {
    /// The coordinator moved: find it again, then retry.
    Rediscover,
    /// Retry after a backoff; STALE_MEMBER_EPOCH goes out again with the member's latest epoch
    /// (the commit raced an epoch bump, Java `CommitRequestManager`).
    Retry,
    /// The commit fails; the heartbeat decides about the membership.
    Fail,
}

/// The action for `code` answering an OffsetCommit of a KIP-848 member.
pub(crate) fn commit_action(code: ErrorCode) -> CommitAction {
    use CommitAction as A;
    use ErrorCode as E;
    match code {
        E::NotCoordinator | E::CoordinatorNotAvailable | E::RequestTimedOut => A::Rediscover,
        E::StaleMemberEpoch | E::CoordinatorLoadInProgress => A::Retry,
        // UNKNOWN_TOPIC_OR_PARTITION is retriable in Kafka, but Java fails it here: a deleted
        // topic would keep a rebalance waiting on the commit.
        _ => A::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_heartbeat_error_has_javas_action() {
        use ErrorCode as E;
        use HeartbeatAction as A;
        let rows = [
            (E::NotCoordinator, A::Rediscover),
            (E::CoordinatorNotAvailable, A::Rediscover),
            (E::CoordinatorLoadInProgress, A::RetryWithBackoff),
            (E::FencedMemberEpoch, A::Fenced),
            (E::UnknownMemberId, A::Fenced),
            (E::TopicAuthorizationFailed, A::Report),
            (E::GroupAuthorizationFailed, A::Fatal),
            (E::InvalidRequest, A::Fatal),
            (E::GroupMaxSizeReached, A::Fatal),
            (E::UnsupportedAssignor, A::Fatal),
            (E::UnreleasedInstanceId, A::Fatal),
            (E::FencedInstanceId, A::Fatal),
            (E::InvalidRegularExpression, A::Fatal),
            (E::UnsupportedVersion, A::Fatal),
            (E::GroupIdNotFound, A::Fatal),
        ];
        for (code, want) in rows {
            assert_eq!(heartbeat_action(code), want, "{code:?}");
        }
    }

    #[test]
    fn stale_member_epoch_commits_are_retried() {
        assert_eq!(
            commit_action(ErrorCode::StaleMemberEpoch),
            CommitAction::Retry
        );
        assert_eq!(
            commit_action(ErrorCode::UnknownMemberId),
            CommitAction::Fail
        );
        assert_eq!(
            commit_action(ErrorCode::NotCoordinator),
            CommitAction::Rediscover
        );
    }
}
