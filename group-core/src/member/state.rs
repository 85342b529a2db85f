//! The member's lifecycle states, each with the data that only means something in it.
//!
//! A field that belongs to one phase lives in that phase's variant (quinn's `State`, franz-go
//! kfake's `groupState`), so an impossible combination (a heartbeat timer while joining, a
//! revocation pending while syncing) cannot be written. What outlives a phase (the member id,
//! the generation, the owned partitions, the coordinator) lives in [`Membership`] and
//! [`Coordinator`].

use std::time::{Duration, Instant};

use cohort_protocol::messages::JoinGroupResponse;

use super::leader::Decoded;
use super::types::{Assignment, Phase, RevokeToken};
use crate::backoff::Backoff;

/// Where the member is, with what only that phase needs.
#[derive(Debug, Clone)]
pub(super) enum State {
    /// Not in a generation (or rejoining one). The next JoinGroup waits until `retry_at` when a
    /// join attempt failed.
    Unjoined { retry_at: Option<Instant> },
    /// Eager rebalance: the application gives up everything it owns before the member rejoins.
    /// It has until `deadline` (the rebalance timeout, Java `joinPrepareTimer`); the session is
    /// kept alive meanwhile.
    Revoking {
        token: RevokeToken,
        deadline: Instant,
        session: Session,
    },
    /// JoinGroup in flight.
    Joining,
    /// The leader has its JoinGroup answer and waits for the metadata to compute the plan.
    Assigning {
        join: Box<JoinGroupResponse>,
        /// Every member's subscription, decoded once: for the topics to ask metadata for and
        /// for the plan.
        decoded: Decoded,
    },
    /// SyncGroup in flight.
    Syncing,
    /// Member of a generation with an assignment.
    Stable {
        session: Session,
        /// A cooperative revocation the application has not acknowledged yet; its partitions
        /// are still owned (their final commit is allowed in this generation) until then.
        pending_revoke: Option<PendingRevoke>,
        /// The follow-up JoinGroup of a cooperative rebalance waits until then
        /// ([`crate::GroupConfig::cooperative_rejoin_delay`]).
        rejoin_not_before: Option<Instant>,
    },
    /// LeaveGroup in flight; `then` says where the member goes when it is answered.
    Leaving { then: AfterLeave },
    /// Left the group (close finished).
    Left,
    /// Stopped by a fatal error.
    Failed,
}

impl State {
    pub(super) fn phase(&self) -> Phase {
        match self {
            State::Unjoined { .. } => Phase::Unjoined,
            State::Revoking { .. } => Phase::Revoking,
            State::Joining => Phase::Joining,
            State::Assigning { .. } => Phase::Assigning,
            State::Syncing => Phase::Syncing,
            State::Stable { .. } => Phase::Stable,
            State::Leaving { .. } => Phase::Leaving,
            State::Left => Phase::Left,
            State::Failed => Phase::Failed,
        }
    }

    /// A member with no join attempt to wait for.
    pub(super) fn unjoined() -> Self {
        State::Unjoined { retry_at: None }
    }

    /// The heartbeat session, in the phases that keep one (a member with an assignment).
    pub(super) fn session(&self) -> Option<&Session> {
        match self {
            State::Stable { session, .. } | State::Revoking { session, .. } => Some(session),
            _ => None,
        }
    }

    pub(super) fn session_mut(&mut self) -> Option<&mut Session> {
        match self {
            State::Stable { session, .. } | State::Revoking { session, .. } => Some(session),
            _ => None,
        }
    }

    /// JoinGroup or SyncGroup is in flight, or the leader is computing the plan between them.
    pub(super) fn is_rebalancing(&self) -> bool {
        matches!(
            self,
            State::Joining | State::Assigning { .. } | State::Syncing
        )
    }

    pub(super) fn is_over(&self) -> bool {
        matches!(self, State::Left | State::Failed)
    }

    pub(super) fn is_leaving_or_over(&self) -> bool {
        matches!(self, State::Leaving { .. } | State::Left | State::Failed)
    }
}

/// The liveness of a member with an assignment: when to heartbeat next, and when the
/// coordinator last confirmed the session.
#[derive(Debug, Clone, Copy)]
pub(super) struct Session {
    pub(super) heartbeat_due: Instant,
    /// Set after a cooperative SyncGroup: `heartbeat_due` is an early, extra heartbeat, and the
    /// regular one stays due at this instant (see [`Session::starting`]).
    pub(super) then_due: Option<Instant>,
    /// When the last successful heartbeat was *sent* (or the assignment arrived): the
    /// coordinator restarted the session no earlier than that.
    pub(super) last_ok: Instant,
}

impl Session {
    /// The session of an assignment that arrived at `now`. A cooperative round that moves
    /// partitions is followed by another (KIP-429): the members that gave some up rejoin as
    /// soon as they have, and every other member hears of it only from a heartbeat, which
    /// would come a whole interval after this assignment (the second half of a cooperative
    /// join, 500 ms of the benchmark's 975 ms, 3 s with Java's default interval). So after a
    /// cooperative SyncGroup one extra heartbeat goes out at a quarter of the interval; the
    /// regular one stays where it was, so a revocation slower than that costs nothing.
    pub(super) fn starting(now: Instant, heartbeat_interval: Duration, cooperative: bool) -> Self {
        let regular = now + heartbeat_interval;
        Self {
            heartbeat_due: if cooperative {
                now + heartbeat_interval / 4
            } else {
                regular
            },
            then_due: cooperative.then_some(regular),
            last_ok: now,
        }
    }

    /// A heartbeat goes out at `now`: when the next is due.
    pub(super) fn sent(&mut self, now: Instant, heartbeat_interval: Duration) {
        self.heartbeat_due = match self.then_due.take() {
            Some(regular) if regular > now => regular,
            _ => now + heartbeat_interval,
        };
    }
}

/// A cooperative revocation waiting for the application (KIP-429).
#[derive(Debug, Clone)]
pub(super) struct PendingRevoke {
    pub(super) token: RevokeToken,
    pub(super) deadline: Instant,
    pub(super) partitions: Assignment,
}

/// Where a LeaveGroup takes the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterLeave {
    /// Close: done.
    Left,
    /// Poll timeout: rejoin when the application polls again.
    Unjoined,
}

/// Who the member is in the group. Outlives the phases: a cooperative member keeps its
/// generation and partitions while it rejoins.
#[derive(Debug, Clone)]
pub(super) struct Membership {
    /// Assigned by the coordinator (empty before the first join, and after it was forgotten).
    pub(super) member_id: String,
    /// The generation joined, if any.
    pub(super) generation: Option<JoinedGeneration>,
    /// The generation the owned partitions were assigned in: that of the last SyncGroup this
    /// member completed, -1 before the first and after partitions were lost. JoinGroup metadata
    /// carries this one (KIP-792: the field says whether `owned_partitions` are out of date),
    /// not the generation being joined, which differs after a SyncGroup that failed.
    pub(super) owned_generation: i32,
    /// Partitions the member owns.
    pub(super) owned: Assignment,
}

/// A generation the member joined: JoinGroup answered it.
#[derive(Debug, Clone)]
pub(super) struct JoinedGeneration {
    pub(super) id: i32,
    pub(super) leader: bool,
    /// The protocol (balancer) the coordinator chose.
    pub(super) protocol: String,
}

impl Membership {
    pub(super) fn new() -> Self {
        Self {
            member_id: String::new(),
            generation: None,
            owned_generation: -1,
            owned: Assignment::new(),
        }
    }

    /// The generation id, -1 when none (as the wire says it).
    pub(super) fn generation_id(&self) -> i32 {
        self.generation.as_ref().map_or(-1, |g| g.id)
    }

    pub(super) fn is_leader(&self) -> bool {
        self.generation.as_ref().is_some_and(|g| g.leader)
    }

    pub(super) fn joined(&self) -> bool {
        self.generation.is_some() && !self.member_id.is_empty()
    }

    /// Forgets the generation; every caller gives the owned partitions up too (lost, or the
    /// member left the group).
    pub(super) fn reset_generation(&mut self) {
        self.generation = None;
        self.owned_generation = -1;
    }

    pub(super) fn reset_member_id(&mut self) {
        self.member_id.clear();
        self.reset_generation();
    }
}

/// The group coordinator, as far as the member knows it.
#[derive(Debug)]
pub(super) struct Coordinator {
    pub(super) node: Option<i32>,
    /// The next lookup waits until then after one failed.
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Backoff,
}
