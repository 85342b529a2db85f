//! The phases of a KIP-848 member, each with the data only it needs, and the heartbeat fields
//! last sent (for partial heartbeats).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use cohort_protocol::Uuid;

use crate::member::{Assignment, Phase, RevokeToken};

/// Where a KIP-848 member is (Java `MemberState`).
#[derive(Debug, Clone)]
pub(super) enum State {
    /// Joining with epoch 0: full heartbeats until the coordinator answers with an epoch.
    Joining,
    /// In the group with a member epoch; every target assignment reconciled.
    Stable,
    /// A target assignment takes partitions away: the application gives them up (commits what
    /// it processed) until `deadline`, the rebalance timeout; then the member takes `target`
    /// and acknowledges it.
    Revoking {
        token: RevokeToken,
        deadline: Instant,
        revoked: Assignment,
        target: Assignment,
    },
    /// Fenced (FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, or no heartbeat answer for a session):
    /// every partition is lost; heartbeats stop until the application let go (KAFKA-16251),
    /// then the member joins again with epoch 0 and the same member id.
    Fenced { token: RevokeToken },
    /// The leave heartbeat (epoch -1, or -2 for a static member) is in flight.
    Leaving { then: AfterLeave },
    /// Out of the group after a poll timeout, until the application polls again.
    Stale,
    /// Left the group (close finished).
    Left,
    /// Stopped by a fatal error.
    Failed,
}

impl State {
    pub(super) fn phase(&self) -> Phase {
        match self {
            State::Joining => Phase::Joining,
            State::Stable => Phase::Stable,
            State::Revoking { .. } | State::Fenced { .. } => Phase::Revoking,
            State::Leaving { .. } => Phase::Leaving,
            State::Stale => Phase::Unjoined,
            State::Left => Phase::Left,
            State::Failed => Phase::Failed,
        }
    }

    /// In the group with an epoch: heartbeats go out on the interval.
    pub(super) fn in_group(&self) -> bool {
        matches!(self, State::Stable | State::Revoking { .. })
    }

    pub(super) fn is_leaving_or_over(&self) -> bool {
        matches!(self, State::Leaving { .. } | State::Left | State::Failed)
    }
}

/// Where a leave takes the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterLeave {
    /// Close: done.
    Left,
    /// Poll timeout: out of the group until the application polls again.
    Stale,
}

/// What the last heartbeat carried, so the next one sends only what changed (Java
/// `ConsumerHeartbeatRequestManager.HeartbeatState.SentFields`). `None` everywhere: the next
/// heartbeat is a full one (joining, after an error, a new coordinator).
#[derive(Debug, Clone, Default)]
pub(super) struct SentFields {
    pub(super) rebalance_timeout_ms: Option<i32>,
    pub(super) topics: Option<Vec<String>>,
    pub(super) regex: Option<String>,
    pub(super) assignor: Option<String>,
    /// The owned partitions last reported, by topic id.
    pub(super) owned: Option<BTreeMap<Uuid, BTreeSet<i32>>>,
}

impl SentFields {
    pub(super) fn reset(&mut self) {
        *self = SentFields::default();
    }
}
