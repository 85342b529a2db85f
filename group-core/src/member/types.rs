//! The member's public vocabulary: its settings, the requests it asks the driver to send, the
//! responses fed back to it, and the events it reports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cohort_balancers::TopicInfo;
use cohort_protocol::ApiKey;
use cohort_protocol::Uuid;
use cohort_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse,
};

use crate::TopicPartition;
use crate::error::Error;

/// Partitions by topic.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// Settings of the state machine. Made with [`MemberConfig::new`], then adjusted field by field
/// (new fields can come without breaking callers).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemberConfig {
    /// `group.id`.
    pub group_id: String,
    /// `group.instance.id` (KIP-345).
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Rebalance timeout sent in JoinGroup.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`.
    pub max_poll_interval: Duration,
    /// Deadline of ordinary requests.
    pub request_timeout: Duration,
    /// First retry delay.
    pub retry_backoff: Duration,
    /// Largest retry delay.
    pub retry_backoff_max: Duration,
    /// `client.rack`.
    pub rack: Option<String>,
    /// Send LeaveGroup on close (dynamic members).
    pub leave_on_close: bool,
    /// Pause before the follow-up JoinGroup of a cooperative rebalance (zero: at once, as
    /// KIP-429 and the Java client do). See [`crate::GroupConfig::cooperative_rejoin_delay`].
    pub cooperative_rejoin_delay: Duration,
    /// Seed of the retry jitter (KIP-580), so that the member's retry schedule is decided by
    /// its inputs alone. Members of one group need different seeds, or those that failed
    /// together retry together.
    pub jitter_seed: u64,
    /// `group.remote.assignor`: the broker-side assignor a KIP-848 member asks for (`uniform`,
    /// `range`); `None` for the broker's default.
    pub group_remote_assignor: Option<String>,
}

impl MemberConfig {
    /// The Java client's defaults for a member of `group_id`, with jitter seed 0.
    pub fn new(group_id: &str) -> Self {
        Self {
            group_id: group_id.to_owned(),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            rack: None,
            leave_on_close: true,
            cooperative_rejoin_delay: Duration::ZERO,
            jitter_seed: 0,
            group_remote_assignor: None,
        }
    }
}

/// Identifies an outbound request.
pub type RequestId = u64;

/// Identifies a commit.
pub type CommitId = u64;

/// Identifies a revocation (or loss) the application must acknowledge.
pub type RevokeToken = u64;

/// A request the driver must send to the coordinator (or, for lookups, to any broker).
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Pass back with the response.
    pub id: RequestId,
    /// The request.
    pub request: OutboundRequest,
    /// How long the driver waits for the response.
    pub deadline: Duration,
    /// The coordinator to send group requests to.
    pub coordinator: Option<i32>,
}

/// The requests of the machine.
#[derive(Debug, Clone)]
pub enum OutboundRequest {
    /// Look up the group coordinator.
    FindCoordinator,
    /// Metadata (with replica racks) for these topics, for the leader's assignment.
    Metadata(Vec<String>),
    /// JoinGroup.
    JoinGroup(JoinGroupRequest),
    /// SyncGroup.
    SyncGroup(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupRequest),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitRequest),
    /// ConsumerGroupHeartbeat (KIP-848).
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    /// The names of these topic ids (Metadata), for a KIP-848 assignment.
    TopicNames(Vec<Uuid>),
}

impl OutboundRequest {
    /// The Kafka API of the request (the one mapping the driver, the simulator and the fuzz
    /// target share).
    pub fn api(&self) -> ApiKey {
        match self {
            OutboundRequest::FindCoordinator => ApiKey::FindCoordinator,
            OutboundRequest::Metadata(_) => ApiKey::Metadata,
            OutboundRequest::JoinGroup(_) => ApiKey::JoinGroup,
            OutboundRequest::SyncGroup(_) => ApiKey::SyncGroup,
            OutboundRequest::Heartbeat(_) => ApiKey::Heartbeat,
            OutboundRequest::LeaveGroup(_) => ApiKey::LeaveGroup,
            OutboundRequest::OffsetCommit(_) => ApiKey::OffsetCommit,
            OutboundRequest::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
            OutboundRequest::TopicNames(_) => ApiKey::Metadata,
        }
    }
}

/// A response (or the result of a lookup) for the machine.
#[derive(Debug, Clone)]
pub enum Response {
    /// The coordinator's broker id.
    Coordinator(i32),
    /// Topics with partition counts and replica racks.
    Metadata(Vec<TopicInfo>),
    /// JoinGroup.
    JoinGroup(JoinGroupResponse),
    /// SyncGroup.
    SyncGroup(SyncGroupResponse),
    /// Heartbeat.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupResponse),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitResponse),
    /// ConsumerGroupHeartbeat (KIP-848).
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    /// Topic names by id, for every id the cluster knows (ids it does not know are absent).
    TopicNames(BTreeMap<Uuid, String>),
}

/// One offset to commit, or one committed offset as the coordinator holds it (Java's
/// `OffsetAndMetadata` with its partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset of the next record to consume.
    pub offset: i64,
    /// The leader epoch of the last record consumed before `offset` (KIP-320): a member that
    /// starts from this offset once the partition's leader epoch has moved past it asks the
    /// leader whether its log still holds that epoch up to here, and so detects a log
    /// truncated by an unclean leader election.
    /// `None` when unknown; the consumer fills it in for the partitions it fetched.
    pub leader_epoch: Option<i32>,
    /// Free text stored with the offset (Java's `OffsetAndMetadata.metadata()`); empty for
    /// none. The coordinator bounds its size (`offset.metadata.max.bytes`, 4 KiB by default)
    /// and refuses a larger one with OFFSET_METADATA_TOO_LARGE.
    pub metadata: String,
}

impl CommitOffset {
    /// The partition the offset is for.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// `offset` (the next record to consume) for `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: None,
            metadata: String::new(),
        }
    }

    /// The same offset with `metadata` stored beside it.
    #[must_use]
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// The same offset with the leader epoch of the record before it (KIP-320).
    #[must_use]
    pub fn with_leader_epoch(mut self, epoch: i32) -> Self {
        self.leader_epoch = Some(epoch);
        self
    }
}

/// What happened in the group.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupEvent {
    /// A rebalance started.
    Rebalancing {
        /// Why.
        reason: String,
    },
    /// A new generation: the member's whole assignment, and what is new in it.
    Assigned {
        /// Generation id.
        generation: i32,
        /// Member id.
        member_id: String,
        /// Whether this member leads the group.
        leader: bool,
        /// The chosen protocol (balancer).
        protocol: String,
        /// Everything the member owns now.
        assignment: Assignment,
        /// Partitions it did not own before.
        added: Assignment,
    },
    /// Partitions are taken away while the generation is still valid: stop consuming them, commit
    /// what is done, then acknowledge with
    /// [`Member::handle_revoked`](super::Member::handle_revoked).
    Revoked {
        /// Generation they were owned in.
        generation: i32,
        /// The partitions.
        partitions: Assignment,
        /// Pass to [`Member::handle_revoked`](super::Member::handle_revoked).
        token: RevokeToken,
    },
    /// Partitions are gone because the member is no longer part of the generation (session
    /// expired, fenced generation): stop consuming them; commits would fail. Acknowledge with
    /// [`Member::handle_revoked`](super::Member::handle_revoked).
    Lost {
        /// The partitions.
        partitions: Assignment,
        /// Pass to [`Member::handle_revoked`](super::Member::handle_revoked).
        token: RevokeToken,
    },
    /// A commit finished.
    Committed {
        /// The commit.
        id: CommitId,
        /// What was committed, or why not.
        result: Result<Vec<CommitOffset>, Error>,
    },
    /// A problem the application should know about; the member keeps going.
    Error(Error),
    /// The member cannot continue.
    Fatal(Error),
    /// The member left the group (close finished).
    Left,
}

/// Where the member is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not in the group.
    Unjoined,
    /// Waiting for the application to give up partitions before (re)joining.
    Revoking,
    /// JoinGroup in flight.
    Joining,
    /// The leader fetches metadata and computes the plan.
    Assigning,
    /// SyncGroup in flight.
    Syncing,
    /// Member of a generation with an assignment.
    Stable,
    /// LeaveGroup in flight.
    Leaving,
    /// Left the group.
    Left,
    /// Stopped by a fatal error.
    Failed,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStats {
    /// Rebalances this member took part in.
    pub rebalances: u64,
    /// Duration of the last rebalance (join start to assignment).
    pub last_rebalance: Duration,
    /// Total time spent rebalancing.
    pub rebalancing_total: Duration,
}
