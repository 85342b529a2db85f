//! The group member as an explicit state machine without I/O.
//!
//! Inputs are responses and time (`handle_*`, always with `now` passed in); outputs are requests,
//! events and the next deadline (`poll_*`). A thin tokio driver (`driver.rs`) moves bytes;
//! tests drive the machine with a scripted coordinator and virtual time.
//!
//! ```text
//!            join wanted, coordinator known                 JoinGroup ok (follower)
//! Unjoined ------------------------------------> Joining ----------------------------> Syncing
//!    ^   ^                                          |  JoinGroup ok (leader)              |
//!    |   | app acknowledged revoke/lost             +--> AwaitingMetadata --(plan)--------+
//!    |   |                                                                                | SyncGroup ok
//!    |  Revoking <----- rejoin needed, eager (revoke all) or generation lost ------ Stable <-+
//!    |                                                                              |  ^  rejoin needed,
//!    |                   close: LeaveGroup (dynamic) / nothing (static)             |  |  cooperative:
//!    +------------------------------------------------------------- Leaving <------+  |  straight to Joining
//!                                                                     |               |  (revoked subset first)
//!                                                                     v
//!                                                                    Left        Failed (fatal error)
//! ```
//!
//! Invariants:
//! - A request remembers the generation and member id it was sent with; a response for an older
//!   generation is stale and never resets state (Java `generationUnchanged()`).
//! - Offsets are committed only with a valid generation, only for owned partitions, never while a
//!   JoinGroup or SyncGroup is in flight, and no JoinGroup is sent while a commit is in flight
//!   (a commit racing a rebalance can rewind the new owner's offsets; franz-go fixed it in
//!   v1.13.2; Java's `ConsumerCoordinator` refuses to commit while a rebalance is in progress).
//! - Eager members give up every partition (Revoked) before they rejoin; cooperative members keep
//!   theirs and give up only what the new plan takes away, then rejoin at once (KIP-429).
//! - Partitions are *lost* (not revoked) when the member's generation or id is gone; lost
//!   partitions are never committed.
//! - JoinGroup metadata carries the generation of the owned partitions, that of the last
//!   completed SyncGroup (KIP-792), so a failed SyncGroup leaves the next JoinGroup's metadata
//!   as it was.
//! - Heartbeats keep going while the application processes and while a rebalance is pending;
//!   they stop only while JoinGroup/SyncGroup are in flight.
//!
//! # References
//! - Java `AbstractCoordinator`, `ConsumerCoordinator`; KIP-62 (background heartbeats), KIP-345
//!   (static membership), KIP-394 (member id required), KIP-429 (cooperative), KIP-792.

mod errors;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort_balancers::{Balancer, GroupMember, MemberState as BalancerMemberState, TopicInfo};
use cohort_protocol::StrBytes;
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolSubscription, OwnedTopicPartitions, PROTOCOL_TYPE, decode_assignment,
    decode_subscription, encode_assignment, encode_subscription,
};
use cohort_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest,
    SyncGroupResponse, join_group_request, leave_group_request, offset_commit_request,
    sync_group_request,
};
use cohort_protocol::{ApiKey, ErrorCode};

pub(crate) use self::errors::{GroupApi, Transition, transition};
use crate::backoff::{Backoff, Jitter};
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
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset of the next record to consume.
    pub offset: i64,
}

impl CommitOffset {
    /// `offset` (the next record to consume) for `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: i32, offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
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
    /// what is done, then acknowledge with [`Member::handle_revoked`].
    Revoked {
        /// Generation they were owned in.
        generation: i32,
        /// The partitions.
        partitions: Assignment,
        /// Pass to [`Member::handle_revoked`].
        token: RevokeToken,
    },
    /// Partitions are gone because the member is no longer part of the generation (session
    /// expired, fenced generation): stop consuming them; commits would fail. Acknowledge with
    /// [`Member::handle_revoked`].
    Lost {
        /// The partitions.
        partitions: Assignment,
        /// Pass to [`Member::handle_revoked`].
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

#[derive(Debug, Clone)]
enum State {
    Unjoined,
    Revoking {
        token: RevokeToken,
        deadline: Instant,
    },
    Joining,
    Assigning {
        join: JoinGroupResponse,
        metadata_sent: bool,
    },
    Syncing,
    Stable,
    Leaving {
        then: AfterLeave,
    },
    Left,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterLeave {
    /// Close: done.
    Left,
    /// Poll timeout: rejoin when the application polls again.
    Unjoined,
}

#[derive(Debug, Clone)]
struct Sent {
    api: ApiKey,
    /// When the member queued the request: before the coordinator can have received it, so
    /// a session counted from here ends no later than the coordinator's count of it.
    at: Instant,
    generation: i32,
    member_id: String,
    commit: Option<PendingCommit>,
}

/// A commit the member has taken on and not answered yet: waiting for a coordinator or a retry
/// time, or in flight.
#[derive(Debug, Clone)]
struct PendingCommit {
    id: CommitId,
    offsets: Vec<CommitOffset>,
    /// Failed attempts so far (the retry backoff grows with them).
    attempts: u32,
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

/// The group member state machine.
pub struct Member {
    cfg: MemberConfig,
    balancers: Vec<Box<dyn Balancer>>,
    cooperative: bool,
    topics: Vec<String>,
    state: State,
    member_id: String,
    generation: i32,
    /// The generation the owned partitions were assigned in: that of the last SyncGroup this
    /// member completed, -1 before the first and after partitions were lost. JoinGroup metadata
    /// carries this one (KIP-792: the field says whether `owned_partitions` are out of date),
    /// not the generation being joined, which differs after a SyncGroup that failed.
    owned_generation: i32,
    protocol: Option<String>,
    leader: bool,
    owned: Assignment,
    coordinator: Option<i32>,
    next_id: u64,
    inflight: BTreeMap<RequestId, Sent>,
    outbox: VecDeque<Outbound>,
    events: VecDeque<GroupEvent>,
    /// Commits waiting for a coordinator or a retry time.
    queued_commits: VecDeque<(Instant, PendingCommit)>,
    next_commit_id: CommitId,
    next_token: RevokeToken,
    /// A cooperative revocation the application has not acknowledged yet: its token, deadline
    /// and the partitions (still owned until then).
    pending_revoke: Option<(RevokeToken, Instant, Assignment)>,
    rejoin_reason: Option<String>,
    /// The follow-up JoinGroup of a cooperative rebalance waits until then.
    rejoin_not_before: Option<Instant>,
    /// Seeds the jitter of backoffs made later (commit retries).
    jitter: Jitter,
    join_backoff: Backoff,
    retry_at: Option<Instant>,
    coordinator_backoff: Backoff,
    heartbeat_due: Option<Instant>,
    last_heartbeat_ok: Instant,
    last_poll: Instant,
    /// Partition counts the leader assigned with, to notice changes.
    assigned_counts: BTreeMap<String, u32>,
    rebalance_started: Option<Instant>,
    stats: MemberStats,
    want_join: bool,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("phase", &self.phase())
            .field("member_id", &self.member_id)
            .field("generation", &self.generation)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(bs) => ps.difference(bs).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(t.clone(), rest);
        }
    }
    out
}

impl Member {
    /// A member that will join as soon as it is polled.
    pub fn new(
        cfg: MemberConfig,
        balancers: Vec<Box<dyn Balancer>>,
        mut topics: Vec<String>,
        now: Instant,
    ) -> Self {
        topics.sort();
        topics.dedup();
        let cooperative = cohort_balancers::runs_cooperative(&balancers);
        let mut jitter = Jitter::seeded(cfg.jitter_seed);
        let join_backoff = Backoff::new(
            cfg.retry_backoff,
            cfg.retry_backoff_max,
            Jitter::seeded(jitter.next_u64()),
        );
        let coordinator_backoff = Backoff::new(
            cfg.retry_backoff,
            cfg.retry_backoff_max,
            Jitter::seeded(jitter.next_u64()),
        );
        let mut m = Self {
            cfg,
            balancers,
            cooperative,
            topics,
            state: State::Unjoined,
            member_id: String::new(),
            generation: -1,
            owned_generation: -1,
            protocol: None,
            leader: false,
            owned: Assignment::new(),
            coordinator: None,
            next_id: 1,
            inflight: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            queued_commits: VecDeque::new(),
            next_commit_id: 1,
            next_token: 1,
            pending_revoke: None,
            rejoin_reason: Some("initial join".into()),
            rejoin_not_before: None,
            jitter,
            join_backoff,
            retry_at: None,
            coordinator_backoff,
            heartbeat_due: None,
            last_heartbeat_ok: now,
            last_poll: now,
            assigned_counts: BTreeMap::new(),
            rebalance_started: None,
            stats: MemberStats::default(),
            want_join: true,
        };
        m.step(now);
        m
    }

    // -------------------------------------------------------------------------------------
    // getters

    /// The lifecycle phase.
    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Unjoined => Phase::Unjoined,
            State::Revoking { .. } => Phase::Revoking,
            State::Joining => Phase::Joining,
            State::Assigning { .. } => Phase::Assigning,
            State::Syncing => Phase::Syncing,
            State::Stable => Phase::Stable,
            State::Leaving { .. } => Phase::Leaving,
            State::Left => Phase::Left,
            State::Failed => Phase::Failed,
        }
    }

    /// Current generation, -1 when none.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Member id assigned by the coordinator (empty before the first join).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Until when the member may hand records of its partitions to the application: while it
    /// is stable it must have heard from the coordinator within the session timeout, counted
    /// from when its last successful heartbeat was sent (the coordinator restarted the
    /// session after that), less one heartbeat interval of margin (for the SyncGroup answer,
    /// which is counted from its arrival, and for coarse clocks). Past that instant the coordinator
    /// may already have expired the member and given its partitions to someone else, so a
    /// record delivered then could be processed twice at once. `None`: no limit (not stable:
    /// a pending JoinGroup or SyncGroup is the member's liveness, as in the Java client).
    pub fn deliverable_until(&self) -> Option<Instant> {
        if !(self.joined() && matches!(self.state, State::Stable | State::Revoking { .. })) {
            return None;
        }
        let margin = self
            .cfg
            .heartbeat_interval
            .min(self.cfg.session_timeout / 3);
        Some(self.last_heartbeat_ok + self.cfg.session_timeout - margin)
    }

    /// The bound on time between the application's polls (`max.poll.interval.ms`, KIP-62).
    pub fn max_poll_interval(&self) -> Duration {
        self.cfg.max_poll_interval
    }

    /// Partitions the member owns.
    pub fn assignment(&self) -> &Assignment {
        &self.owned
    }

    /// Whether the member leads the current generation.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// Whether the member runs the cooperative protocol.
    pub fn is_cooperative(&self) -> bool {
        self.cooperative
    }

    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<i32> {
        self.coordinator
    }

    /// Rebalance counters.
    pub fn stats(&self) -> MemberStats {
        self.stats
    }

    /// Topics whose partition counts the driver should report with
    /// [`Member::handle_partition_counts`]: the leader watches every topic the group
    /// subscribes to and rejoins when a count changes (Java `rejoinNeededOrPending`; sarama
    /// #1462).
    pub fn watched_topics(&self) -> Vec<String> {
        if self.leader && matches!(self.state, State::Stable) {
            self.assigned_counts.keys().cloned().collect()
        } else {
            Vec::new()
        }
    }

    /// Subscribed topics.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    // -------------------------------------------------------------------------------------
    // outputs

    /// The next request to send.
    pub fn poll_request(&mut self) -> Option<Outbound> {
        self.outbox.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }

    /// When [`Member::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        at(self.retry_at);
        at(self.heartbeat_due);
        at(self.rejoin_not_before);
        if let State::Revoking { deadline, .. } = self.state {
            at(Some(deadline));
        }
        at(self.pending_revoke.as_ref().map(|(_, d, _)| *d));
        if self.joined() {
            at(Some(self.last_poll + self.cfg.max_poll_interval));
            if matches!(self.state, State::Stable | State::Revoking { .. }) {
                at(Some(self.last_heartbeat_ok + self.cfg.session_timeout));
            }
        }
        at(self
            .queued_commits
            .front()
            .map(|(not_before, _)| *not_before));
        t
    }

    // -------------------------------------------------------------------------------------
    // inputs

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.step(now);
    }

    /// The application made progress (polled for records); resets the `max.poll.interval`
    /// clock and, after a poll timeout, rejoins.
    pub fn handle_poll(&mut self, now: Instant) {
        self.last_poll = now;
        if matches!(self.state, State::Unjoined) && !self.want_join {
            self.want_join = true;
            self.rejoin_reason
                .get_or_insert_with(|| "application resumed polling".into());
        }
        self.step(now);
    }

    /// The subscription changed (a pattern matched new topics).
    pub fn set_topics(&mut self, now: Instant, mut topics: Vec<String>) {
        topics.sort();
        topics.dedup();
        if topics != self.topics {
            self.topics = topics;
            self.request_rejoin("subscription changed");
        }
        self.step(now);
    }

    /// Current partition counts of [`Member::watched_topics`].
    pub fn handle_partition_counts(&mut self, now: Instant, counts: &BTreeMap<String, u32>) {
        if !(self.leader && matches!(self.state, State::Stable)) {
            return;
        }
        for (t, &n) in counts {
            if let Some(&was) = self.assigned_counts.get(t)
                && was != n
            {
                self.request_rejoin(&format!("partitions of {t} changed from {was} to {n}"));
                break;
            }
        }
        self.step(now);
    }

    /// The application finished giving up revoked (or lost) partitions.
    pub fn handle_revoked(&mut self, now: Instant, token: RevokeToken) {
        if let State::Revoking { token: t, .. } = self.state
            && t == token
        {
            self.finish_revoking();
        }
        if self
            .pending_revoke
            .as_ref()
            .is_some_and(|(t, _, _)| *t == token)
        {
            self.finish_cooperative_revoke(now);
        }
        self.step(now);
    }

    /// Requests a rejoin (for instance because the application changed something).
    pub fn request_rejoin(&mut self, reason: &str) {
        if self.rejoin_reason.is_none() {
            self.rejoin_reason = Some(reason.to_owned());
        }
    }

    /// Commits offsets for owned partitions of the current generation. The result arrives as
    /// [`GroupEvent::Committed`].
    pub fn commit(&mut self, now: Instant, offsets: Vec<CommitOffset>) -> CommitId {
        let id = self.next_commit_id;
        self.next_commit_id += 1;
        self.try_commit(
            now,
            PendingCommit {
                id,
                offsets,
                attempts: 0,
            },
        );
        self.step(now);
        id
    }

    /// Leaves the group: LeaveGroup for dynamic members (unless disabled), nothing for static
    /// ones (KIP-345: a static member keeps its partitions until its session expires, so a
    /// restart within the session timeout does not rebalance). [`GroupEvent::Left`] follows.
    pub fn leave(&mut self, now: Instant) {
        self.want_join = false;
        match self.state {
            State::Left | State::Failed | State::Leaving { .. } => {}
            _ => {
                let dynamic = self.cfg.group_instance_id.is_none();
                if dynamic
                    && self.cfg.leave_on_close
                    && !self.member_id.is_empty()
                    && self.coordinator.is_some()
                {
                    self.send_leave(now, AfterLeave::Left, "the consumer is closing");
                } else {
                    self.state = State::Left;
                    self.answer_queued_commits(&Error::CommitFailed(
                        "the member left the group".into(),
                    ));
                    self.events.push_back(GroupEvent::Left);
                }
            }
        }
        self.step(now);
    }

    /// A response (or a failure to get one) for request `id`.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Response, Error>,
    ) {
        let Some(sent) = self.inflight.remove(&id) else {
            return;
        };
        tracing::trace!(group = %self.cfg.group_id, member = %self.member_id, api = ?sent.api, ok = result.is_ok(), "response");
        match result {
            Err(e) => self.on_request_failed(now, sent, e),
            Ok(Response::Coordinator(node)) => {
                self.coordinator = Some(node);
                self.coordinator_backoff.reset();
                tracing::debug!(group = %self.cfg.group_id, coordinator = node, "coordinator found");
            }
            Ok(Response::Metadata(topics)) => self.on_metadata(now, topics),
            Ok(Response::JoinGroup(r)) => self.on_join(now, &sent, r),
            Ok(Response::SyncGroup(r)) => self.on_sync(now, &sent, r),
            Ok(Response::Heartbeat(r)) => self.on_heartbeat(now, &sent, r),
            Ok(Response::LeaveGroup(r)) => self.on_leave(&r),
            Ok(Response::OffsetCommit(r)) => self.on_commit(now, sent, r),
        }
        self.step(now);
    }

    // -------------------------------------------------------------------------------------
    // internals

    fn joined(&self) -> bool {
        self.generation >= 0 && !self.member_id.is_empty()
    }

    fn busy(&self, api: ApiKey) -> bool {
        self.inflight.values().any(|s| s.api == api)
    }

    fn send(
        &mut self,
        now: Instant,
        request: OutboundRequest,
        deadline: Duration,
        commit: Option<PendingCommit>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        self.inflight.insert(
            id,
            Sent {
                api: request.api(),
                at: now,
                generation: self.generation,
                member_id: self.member_id.clone(),
                commit,
            },
        );
        self.outbox.push_back(Outbound {
            id,
            request,
            deadline,
            coordinator: self.coordinator,
        });
    }

    fn fail(&mut self, err: Error) {
        tracing::error!(group = %self.cfg.group_id, error = %err, "member failed");
        self.state = State::Failed;
        self.want_join = false;
        self.heartbeat_due = None;
        let lost = std::mem::take(&mut self.owned);
        if !lost.is_empty() {
            let token = self.token();
            self.events.push_back(GroupEvent::Lost {
                partitions: lost,
                token,
            });
        }
        self.answer_queued_commits(&err);
        self.events.push_back(GroupEvent::Fatal(err));
    }

    /// Every commit waiting for a coordinator or a retry gets `err`: the member will not send
    /// it (it failed, or left the group).
    fn answer_queued_commits(&mut self, err: &Error) {
        for (_, c) in std::mem::take(&mut self.queued_commits) {
            self.commit_result(c.id, Err(err.clone()));
        }
    }

    fn token(&mut self) -> RevokeToken {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn reset_generation(&mut self) {
        self.generation = -1;
        // Every caller gives the owned partitions up too (lost, or the member left the group).
        self.owned_generation = -1;
        self.leader = false;
    }

    fn reset_member_id(&mut self) {
        self.member_id.clear();
        self.reset_generation();
    }

    /// The member is no longer part of its generation: everything it owned is lost and it
    /// joins again (with a new member id when `reset_member`).
    fn drop_out(&mut self, reset_member: bool, reason: &str) {
        if reset_member {
            self.reset_member_id();
        } else {
            self.reset_generation();
        }
        self.lose_all();
        if matches!(self.state, State::Leaving { .. }) {
            // Already leaving: an error for a request sent before the LeaveGroup (a heartbeat
            // the coordinator answered after removing the member) only confirms that it let go.
            // The LeaveGroup's answer, or its failure, still ends the leave; moving to Unjoined
            // here would make that answer look stray, and `close` would wait forever.
            return;
        }
        self.state = State::Unjoined;
        self.pending_revoke = None;
        self.rejoin_reason = Some(reason.to_owned());
        self.retry_at = None;
    }

    fn mark_coordinator_unknown(&mut self, why: &str) {
        if let Some(c) = self.coordinator.take() {
            tracing::info!(group = %self.cfg.group_id, coordinator = c, reason = why, "coordinator unknown");
        }
    }

    /// The one place where the machine moves forward: sends what is due.
    fn step(&mut self, now: Instant) {
        if matches!(self.state, State::Failed | State::Left) {
            return;
        }
        // Stalled application (KIP-62): leave the group and say so.
        if self.joined()
            && !matches!(self.state, State::Leaving { .. })
            && now.saturating_duration_since(self.last_poll) > self.cfg.max_poll_interval
        {
            let elapsed = now.saturating_duration_since(self.last_poll);
            self.events.push_back(GroupEvent::Error(Error::PollTimeout {
                elapsed_ms: elapsed.as_millis() as u64,
                limit_ms: self.cfg.max_poll_interval.as_millis() as u64,
            }));
            self.want_join = false;
            if self.cfg.group_instance_id.is_none() && self.coordinator.is_some() {
                self.send_leave(
                    now,
                    AfterLeave::Unjoined,
                    "consumer poll timeout has expired",
                );
            } else {
                // Static members do not leave (KIP-345); they stop heartbeating and the
                // coordinator expires them after the session timeout.
                self.reset_member_id();
                self.state = State::Unjoined;
            }
            self.lose_all();
        }

        // Session: no successful heartbeat for a whole session means the coordinator has
        // expired the member, and its partitions may already be someone else's. Give them up
        // as lost (nothing is committed for them) and rejoin, as librdkafka does
        // (`rd_kafka_cgrp_session_timeout_check`). The Java client only looks the coordinator
        // up again and keeps consuming, so a partitioned member processes records that the
        // new owner processes too.
        if matches!(self.state, State::Stable | State::Revoking { .. })
            && self.joined()
            && now.saturating_duration_since(self.last_heartbeat_ok) > self.cfg.session_timeout
        {
            tracing::warn!(group = %self.cfg.group_id, "no heartbeat response within the session timeout: partitions lost");
            self.mark_coordinator_unknown("no heartbeat response within the session timeout");
            self.last_heartbeat_ok = now;
            // The member id is kept, as Java keeps it (`AbstractCoordinator` only marks the
            // coordinator unknown). A coordinator that was merely out of reach (restarted, or
            // failed over to another broker, which reloads the group from __consumer_offsets
            // with fresh session timers) still knows the member: the rejoin with its id
            // completes the rebalance at once, where a new id would leave the old one in the
            // group until its session expired, a whole session timeout later (seen on Apache
            // Kafka: 10 s more after a broker restart). A coordinator that did expire it answers
            // UNKNOWN_MEMBER_ID, and the member joins with a new id one round trip later.
            self.drop_out(false, "session timed out without a heartbeat response");
        }

        // Coordinator lookup.
        let needs_coordinator = self.want_join
            || matches!(
                self.state,
                State::Stable | State::Revoking { .. } | State::Leaving { .. }
            )
            || !self.queued_commits.is_empty();
        if needs_coordinator
            && self.coordinator.is_none()
            && !self.busy(ApiKey::FindCoordinator)
            && self.retry_at.is_none_or(|t| now >= t)
        {
            self.retry_at = None;
            self.send(
                now,
                OutboundRequest::FindCoordinator,
                self.cfg.request_timeout,
                None,
            );
        }

        // Revocation deadlines: the application gets the rebalance timeout to give partitions
        // up (Java `joinPrepareTimer`); after that the member moves on without it.
        if let State::Revoking { deadline, .. } = self.state
            && now >= deadline
        {
            self.events.push_back(GroupEvent::Error(Error::CommitFailed(
                "the application did not acknowledge revoked partitions within the rebalance timeout".into(),
            )));
            self.finish_revoking();
        }
        if self
            .pending_revoke
            .as_ref()
            .is_some_and(|(_, d, _)| now >= *d)
        {
            self.finish_cooperative_revoke(now);
        }

        // Rejoin requests while stable.
        if matches!(self.state, State::Stable)
            && self.pending_revoke.is_none()
            && self.rejoin_not_before.is_none_or(|t| now >= t)
        {
            if let Some(reason) = self.rejoin_reason.clone() {
                self.rejoin_not_before = None;
                self.begin_rejoin(now, &reason);
            }
        } else if matches!(self.state, State::Unjoined)
            && self.want_join
            && self.rejoin_reason.is_none()
        {
            self.rejoin_reason = Some("joining".into());
        }

        // JoinGroup.
        if matches!(self.state, State::Unjoined)
            && self.want_join
            && self.coordinator.is_some()
            && self.retry_at.is_none_or(|t| now >= t)
            && !self.busy(ApiKey::OffsetCommit)
            && !self.busy(ApiKey::JoinGroup)
        {
            self.retry_at = None;
            self.send_join(now);
        }

        // Leader: metadata for the assignment.
        if let State::Assigning {
            join,
            metadata_sent: false,
        } = &self.state
        {
            let topics = self.group_topics(join);
            self.state = State::Assigning {
                join: join.clone(),
                metadata_sent: true,
            };
            self.send(
                now,
                OutboundRequest::Metadata(topics),
                self.cfg.request_timeout,
                None,
            );
        }

        // Heartbeats.
        let heartbeating =
            matches!(self.state, State::Stable | State::Revoking { .. }) && self.joined();
        if heartbeating {
            if self.heartbeat_due.is_none() {
                self.heartbeat_due = Some(now + self.cfg.heartbeat_interval);
            }
            if self.heartbeat_due.is_some_and(|t| now >= t)
                && self.coordinator.is_some()
                && !self.busy(ApiKey::Heartbeat)
            {
                self.heartbeat_due = Some(now + self.cfg.heartbeat_interval);
                let req = HeartbeatRequest {
                    group_id: self.cfg.group_id.clone().into(),
                    generation_id: self.generation,
                    member_id: self.member_id.clone().into(),
                    group_instance_id: self.cfg.group_instance_id.clone().map(Into::into),
                    ..Default::default()
                };
                self.send(
                    now,
                    OutboundRequest::Heartbeat(req),
                    self.cfg.request_timeout,
                    None,
                );
            }
        } else {
            self.heartbeat_due = None;
        }

        // Commits waiting for a coordinator or their retry time.
        while let Some((not_before, _)) = self.queued_commits.front() {
            if self.coordinator.is_none() || now < *not_before {
                break;
            }
            let Some((_, c)) = self.queued_commits.pop_front() else {
                break;
            };
            self.try_commit(now, c);
        }
    }

    fn group_topics(&self, join: &JoinGroupResponse) -> Vec<String> {
        let mut topics: BTreeSet<String> = self.topics.iter().cloned().collect();
        for m in &join.members {
            if let Ok((_, sub)) = decode_subscription(m.metadata.clone()) {
                topics.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        topics.into_iter().collect()
    }

    /// Starts a rejoin from a stable state.
    fn begin_rejoin(&mut self, now: Instant, reason: &str) {
        tracing::info!(group = %self.cfg.group_id, reason, "rebalancing");
        self.events.push_back(GroupEvent::Rebalancing {
            reason: reason.to_owned(),
        });
        self.rebalance_started.get_or_insert(now);
        if !self.joined() {
            // The generation is gone: whatever we owned is lost, not revoked.
            self.lose_all();
            self.state = State::Unjoined;
            return;
        }
        if self.cooperative || self.owned.is_empty() {
            // KIP-429: keep everything and rejoin; the new plan says what to give up.
            self.state = State::Unjoined;
        } else {
            // Eager: give everything up first; commits are still possible in this generation.
            let token = self.token();
            let partitions = self.owned.clone();
            self.events.push_back(GroupEvent::Revoked {
                generation: self.generation,
                partitions,
                token,
            });
            self.state = State::Revoking {
                token,
                deadline: now + self.cfg.rebalance_timeout,
            };
        }
    }

    /// Everything owned is lost: the application must stop, nothing may be committed.
    fn lose_all(&mut self) {
        if self.owned.is_empty() {
            return;
        }
        let partitions = std::mem::take(&mut self.owned);
        let token = self.token();
        self.events
            .push_back(GroupEvent::Lost { partitions, token });
        self.pending_revoke = None;
    }

    /// The application gave up the partitions a cooperative plan took away (or ran out of
    /// time): they are no longer owned, and the member rejoins at once so the next round can
    /// hand them to their new owners (KIP-429).
    fn finish_cooperative_revoke(&mut self, now: Instant) {
        if let Some((_, _, revoked)) = self.pending_revoke.take() {
            self.owned = minus(&self.owned, &revoked);
            if !self.cfg.cooperative_rejoin_delay.is_zero() {
                self.rejoin_not_before = Some(now + self.cfg.cooperative_rejoin_delay);
            }
            self.request_rejoin("revoked partitions must be reassigned");
        }
    }

    fn finish_revoking(&mut self) {
        self.owned.clear();
        self.state = State::Unjoined;
    }

    fn subscription(&self, balancer: &dyn Balancer) -> ConsumerProtocolSubscription {
        subscription(
            balancer,
            &self.topics,
            self.cooperative.then_some(&self.owned),
            self.owned_generation,
            self.cfg.rack.as_deref(),
        )
    }

    fn send_join(&mut self, now: Instant) {
        let reason = self
            .rejoin_reason
            .take()
            .unwrap_or_else(|| "joining".into());
        self.rebalance_started.get_or_insert(now);
        let mut protocols = Vec::with_capacity(self.balancers.len());
        for b in &self.balancers {
            let sub = self.subscription(b.as_ref());
            match encode_subscription(&sub, 3) {
                Ok(metadata) => protocols.push(join_group_request::JoinGroupRequestProtocol {
                    name: b.protocol_name().into(),
                    metadata,
                    ..Default::default()
                }),
                Err(e) => {
                    self.fail(Error::Encode(e));
                    return;
                }
            }
        }
        let req = JoinGroupRequest {
            group_id: self.cfg.group_id.clone().into(),
            session_timeout_ms: crate::config::millis_i32(self.cfg.session_timeout),
            rebalance_timeout_ms: crate::config::millis_i32(self.cfg.rebalance_timeout),
            member_id: self.member_id.clone().into(),
            group_instance_id: self.cfg.group_instance_id.clone().map(Into::into),
            protocol_type: PROTOCOL_TYPE.into(),
            protocols,
            reason: Some(reason.into()),
            ..Default::default()
        };
        self.state = State::Joining;
        // Java: the JoinGroup deadline is the rebalance timeout plus 5 s, so the broker's hold
        // never outlasts the client's wait (kafka-go #510: shorter causes rebalance loops).
        let deadline = self.cfg.rebalance_timeout + Duration::from_secs(5);
        self.send(
            now,
            OutboundRequest::JoinGroup(req),
            deadline.max(self.cfg.request_timeout),
            None,
        );
    }

    fn send_leave(&mut self, now: Instant, then: AfterLeave, reason: &str) {
        let req = LeaveGroupRequest {
            group_id: self.cfg.group_id.clone().into(),
            member_id: self.member_id.clone().into(),
            members: vec![leave_group_request::MemberIdentity {
                member_id: self.member_id.clone().into(),
                group_instance_id: self.cfg.group_instance_id.clone().map(Into::into),
                reason: Some(reason.to_owned().into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        self.state = State::Leaving { then };
        self.heartbeat_due = None;
        self.send(
            now,
            OutboundRequest::LeaveGroup(req),
            self.cfg.request_timeout,
            None,
        );
    }

    fn on_request_failed(&mut self, now: Instant, sent: Sent, err: Error) {
        tracing::debug!(group = %self.cfg.group_id, api = ?sent.api, error = %err, "request failed");
        match sent.api {
            ApiKey::FindCoordinator => {
                self.retry_at = Some(now + self.coordinator_backoff.next_delay());
                if self.coordinator_backoff.attempts().is_multiple_of(10) {
                    self.events.push_back(GroupEvent::Error(err));
                }
            }
            ApiKey::Metadata => {
                // Leader could not fetch metadata: back to joining after a backoff.
                if matches!(self.state, State::Assigning { .. }) {
                    self.state = State::Unjoined;
                    self.retry_at = Some(now + self.join_backoff.next_delay());
                    self.rejoin_reason = Some(format!("leader metadata failed: {err}"));
                }
            }
            ApiKey::JoinGroup | ApiKey::SyncGroup => {
                // Transport failure or timeout: the coordinator may have moved.
                self.mark_coordinator_unknown(&err.to_string());
                if matches!(
                    self.state,
                    State::Joining | State::Syncing | State::Assigning { .. }
                ) {
                    self.state = State::Unjoined;
                    self.rejoin_reason = Some(format!("{:?} failed: {err}", sent.api));
                    self.retry_at = Some(now + self.join_backoff.next_delay());
                }
            }
            ApiKey::Heartbeat => {
                self.mark_coordinator_unknown(&err.to_string());
            }
            ApiKey::LeaveGroup => self.finish_leave(),
            ApiKey::OffsetCommit => {
                self.mark_coordinator_unknown(&err.to_string());
                if let Some(c) = sent.commit {
                    self.requeue_commit(now, c, err);
                }
            }
            _ => {}
        }
    }

    fn on_metadata(&mut self, now: Instant, topics: Vec<TopicInfo>) {
        // The answer may come after the member moved on (it is leaving, it dropped out of the
        // generation): then it is not the leader's any more, and the state stays as it is.
        let join = match std::mem::replace(&mut self.state, State::Syncing) {
            State::Assigning { join, .. } => join,
            other => {
                self.state = other;
                return;
            }
        };
        let protocol = join
            .protocol_name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some(balancer) = self
            .balancers
            .iter()
            .find(|b| b.protocol_name() == protocol)
        else {
            self.fail(Error::Fatal {
                code: ErrorCode::InconsistentGroupProtocol,
                context: format!(
                    "the coordinator chose protocol {protocol:?}, which this member does not run"
                ),
            });
            return;
        };
        let members: Vec<(StrBytes, Option<StrBytes>, Bytes)> = join
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata.clone(),
                )
            })
            .collect();
        let led = match lead(balancer.as_ref(), &members, &topics) {
            Ok(l) => l,
            Err(e) => {
                self.fail(e);
                return;
            }
        };
        for w in &led.warnings {
            tracing::warn!(group = %self.cfg.group_id, "{w}");
        }
        self.assigned_counts = topics
            .iter()
            .map(|t| (t.name.to_string(), t.partitions))
            .collect();
        let assignments = led
            .assignments
            .into_iter()
            .map(
                |(member_id, assignment)| sync_group_request::SyncGroupRequestAssignment {
                    member_id,
                    assignment,
                    ..Default::default()
                },
            )
            .collect();
        self.send_sync(now, assignments, &protocol);
    }

    fn send_sync(
        &mut self,
        now: Instant,
        assignments: Vec<sync_group_request::SyncGroupRequestAssignment>,
        protocol: &str,
    ) {
        let req = SyncGroupRequest {
            group_id: self.cfg.group_id.clone().into(),
            generation_id: self.generation,
            member_id: self.member_id.clone().into(),
            group_instance_id: self.cfg.group_instance_id.clone().map(Into::into),
            protocol_type: Some(PROTOCOL_TYPE.into()),
            protocol_name: Some(protocol.to_owned().into()),
            assignments,
            ..Default::default()
        };
        self.state = State::Syncing;
        // The issue's rule and Java's: SyncGroup may wait for the leader up to the session
        // timeout (plus the usual request allowance).
        let deadline = self.cfg.session_timeout.max(self.cfg.request_timeout);
        self.send(now, OutboundRequest::SyncGroup(req), deadline, None);
    }

    fn stale(&self, sent: &Sent) -> bool {
        sent.generation != self.generation || sent.member_id != self.member_id
    }

    /// Applies the transition for an error of a group request.
    fn apply(
        &mut self,
        now: Instant,
        api: GroupApi,
        code: ErrorCode,
        sent: &Sent,
        response_member_id: Option<&str>,
    ) {
        let t = transition(api, code);
        let stale = self.stale(sent);
        tracing::info!(group = %self.cfg.group_id, ?api, ?code, ?t, stale, "group error");
        match t {
            Transition::AdoptMemberIdAndRejoin => {
                if let Some(id) = response_member_id.filter(|id| !id.is_empty()) {
                    self.member_id = id.to_owned();
                }
                self.state = State::Unjoined;
                self.rejoin_reason =
                    Some("rejoining with the member id the coordinator assigned (KIP-394)".into());
                self.retry_at = None;
            }
            Transition::ResetMemberAndRejoin | Transition::ResetGenerationAndRejoin => {
                if stale && !matches!(api, GroupApi::JoinGroup) {
                    // Java: an error for an older generation is ignored.
                    return;
                }
                self.drop_out(t == Transition::ResetMemberAndRejoin, &format!("{code}"));
            }
            Transition::Rejoin => match self.state {
                State::Syncing | State::Joining | State::Assigning { .. } => {
                    self.state = State::Unjoined;
                    self.rejoin_reason = Some(format!("{api:?}: {code}"));
                }
                _ => self.request_rejoin(&format!("{api:?}: {code}")),
            },
            Transition::RejoinUnlessRebalancing => {
                if matches!(self.state, State::Stable) && !stale {
                    self.request_rejoin("the group is rebalancing");
                }
            }
            Transition::Rediscover => {
                self.mark_coordinator_unknown(&format!("{code}"));
                if matches!(
                    self.state,
                    State::Joining | State::Syncing | State::Assigning { .. }
                ) {
                    self.state = State::Unjoined;
                    self.rejoin_reason = Some(format!("coordinator moved ({code})"));
                }
            }
            Transition::RetryWithBackoff => {
                if matches!(
                    self.state,
                    State::Joining | State::Syncing | State::Assigning { .. }
                ) {
                    self.state = State::Unjoined;
                    self.rejoin_reason = Some(format!("retrying after {code}"));
                    self.retry_at = Some(now + self.join_backoff.next_delay());
                }
            }
            Transition::FailCommit => {}
            Transition::Fenced => {
                if stale && matches!(api, GroupApi::OffsetCommit) {
                    return;
                }
                self.fail(Error::Fenced {
                    instance_id: self.cfg.group_instance_id.clone().unwrap_or_default(),
                });
            }
            Transition::Fatal => self.fail(Error::Fatal {
                code,
                context: format!("{api:?} for group {}", self.cfg.group_id),
            }),
        }
    }

    fn on_join(&mut self, now: Instant, sent: &Sent, r: JoinGroupResponse) {
        if !matches!(self.state, State::Joining) {
            return;
        }
        if let Err(code) = ErrorCode::check(r.error_code) {
            self.apply(now, GroupApi::JoinGroup, code, sent, Some(&r.member_id));
            return;
        }
        if r.generation_id < 0 || r.member_id.is_empty() {
            // A successful join always names a generation and the member (JoinGroupResponse in
            // Kafka's GroupCoordinator); without them, commits would go out as generation -1,
            // which the broker treats as coming from outside any group. Rejoin after a backoff.
            self.events.push_back(GroupEvent::Error(Error::Protocol {
                broker: "coordinator".into(),
                error: cohort_protocol::DecodeError::Invalid {
                    what: "JoinGroup response",
                    detail: format!(
                        "success with generation {} and member id {:?}",
                        r.generation_id,
                        r.member_id.as_str()
                    ),
                },
            }));
            self.state = State::Unjoined;
            self.rejoin_reason = Some("invalid JoinGroup response".into());
            self.retry_at = Some(now + self.join_backoff.next_delay());
            return;
        }
        self.join_backoff.reset();
        self.member_id = r.member_id.to_string();
        self.generation = r.generation_id;
        self.protocol = r.protocol_name.as_ref().map(ToString::to_string);
        self.leader = r.leader == r.member_id;
        tracing::info!(
            group = %self.cfg.group_id,
            generation = r.generation_id,
            member = %r.member_id,
            leader = self.leader,
            protocol = ?self.protocol,
            "joined"
        );
        if self.leader && !r.skip_assignment {
            self.state = State::Assigning {
                join: r,
                metadata_sent: false,
            };
        } else {
            let protocol = self.protocol.clone().unwrap_or_default();
            self.send_sync(now, Vec::new(), &protocol);
        }
    }

    fn on_sync(&mut self, now: Instant, sent: &Sent, r: SyncGroupResponse) {
        if !matches!(self.state, State::Syncing) {
            return;
        }
        if let Err(code) = ErrorCode::check(r.error_code) {
            self.apply(now, GroupApi::SyncGroup, code, sent, None);
            return;
        }
        if self.stale(sent) {
            return;
        }
        let assignment = match decode_assignment(r.assignment.clone()) {
            Ok((_, a)) => a,
            Err(e) => {
                self.events.push_back(GroupEvent::Error(Error::Protocol {
                    broker: "coordinator".into(),
                    error: e,
                }));
                self.state = State::Unjoined;
                self.rejoin_reason = Some("unreadable assignment".into());
                self.retry_at = Some(now + self.join_backoff.next_delay());
                return;
            }
        };
        let protocol = self.protocol.clone().unwrap_or_default();
        if let Some(b) = self
            .balancers
            .iter_mut()
            .find(|b| b.protocol_name() == protocol)
        {
            b.on_assignment(&assignment, self.generation);
        }
        self.owned_generation = self.generation;
        let mut new = Assignment::new();
        for tp in &assignment.assigned_partitions {
            new.entry(tp.topic.to_string())
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        let added = minus(&new, &self.owned);
        let revoked = minus(&self.owned, &new);
        self.state = State::Stable;
        self.last_heartbeat_ok = now;
        self.last_poll = now;
        self.heartbeat_due = Some(now + self.cfg.heartbeat_interval);
        self.stats.rebalances += 1;
        if let Some(start) = self.rebalance_started.take() {
            let d = now.saturating_duration_since(start);
            self.stats.last_rebalance = d;
            self.stats.rebalancing_total += d;
        }
        if !revoked.is_empty() {
            // Cooperative: what the plan takes away is revoked now; the member keeps
            // consuming the rest and rejoins once the application acknowledges.
            let token = self.token();
            self.events.push_back(GroupEvent::Revoked {
                generation: self.generation,
                partitions: revoked.clone(),
                token,
            });
            self.pending_revoke = Some((token, now + self.cfg.rebalance_timeout, revoked));
            // Until acknowledged, revoked partitions stay owned (their final commit is still
            // allowed in this generation).
            let mut still = new.clone();
            for (t, ps) in minus(&self.owned, &new) {
                still.entry(t).or_default().extend(ps);
            }
            self.owned = still;
        } else {
            self.owned = new.clone();
        }
        tracing::info!(
            group = %self.cfg.group_id,
            generation = self.generation,
            partitions = count(&new),
            added = count(&added),
            "assigned"
        );
        self.events.push_back(GroupEvent::Assigned {
            generation: self.generation,
            member_id: self.member_id.clone(),
            leader: self.leader,
            protocol,
            assignment: new,
            added,
        });
    }

    fn on_heartbeat(&mut self, now: Instant, sent: &Sent, r: HeartbeatResponse) {
        match ErrorCode::check(r.error_code) {
            Ok(()) => {
                if !self.stale(sent) {
                    // From when the heartbeat was sent, not when its answer came: the
                    // coordinator restarted the session between the two, so a session counted
                    // from here ends first, however slow the answer (`deliverable_until`).
                    self.last_heartbeat_ok = self.last_heartbeat_ok.max(sent.at);
                }
            }
            Err(code) => self.apply(now, GroupApi::Heartbeat, code, sent, None),
        }
    }

    fn on_leave(&mut self, r: &LeaveGroupResponse) {
        // v3+ answers per member as well; either error means the coordinator did not take the
        // leave, but the member is gone from our side regardless (Java `LeaveGroupResponse`).
        let codes = std::iter::once(r.error_code).chain(r.members.iter().map(|m| m.error_code));
        for code in codes.filter_map(|c| ErrorCode::check(c).err()) {
            tracing::info!(group = %self.cfg.group_id, ?code, "LeaveGroup answered with an error; left anyway");
        }
        self.finish_leave();
    }

    fn finish_leave(&mut self) {
        let State::Leaving { then } = self.state else {
            return;
        };
        self.reset_member_id();
        match then {
            AfterLeave::Left => {
                self.state = State::Left;
                // A sans-IO user waits for an answer to every commit (the driver also answers
                // what is outstanding when the member is gone).
                self.answer_queued_commits(&Error::CommitFailed(
                    "the member left the group".into(),
                ));
                self.events.push_back(GroupEvent::Left);
            }
            AfterLeave::Unjoined => self.state = State::Unjoined,
        }
    }

    fn commit_result(&mut self, id: CommitId, result: Result<Vec<CommitOffset>, Error>) {
        self.events.push_back(GroupEvent::Committed { id, result });
    }

    fn try_commit(&mut self, now: Instant, c: PendingCommit) {
        let PendingCommit {
            id,
            offsets,
            attempts,
        } = c;
        if matches!(
            self.state,
            State::Leaving { .. } | State::Left | State::Failed
        ) {
            self.commit_result(
                id,
                Err(Error::CommitFailed(
                    "the member is leaving or has left the group".into(),
                )),
            );
            return;
        }
        if !self.joined()
            || matches!(
                self.state,
                State::Joining | State::Syncing | State::Assigning { .. } | State::Unjoined
            )
        {
            self.commit_result(
                id,
                Err(Error::CommitFailed(if self.joined() {
                    "the group is rebalancing".into()
                } else {
                    "the member is not in a generation".into()
                })),
            );
            return;
        }
        // Only partitions this member still owns: a commit after losing ownership can rewind
        // the new owner (the coordinator checks the generation, not who owns what).
        let (mine, not_mine): (Vec<CommitOffset>, Vec<CommitOffset>) =
            offsets.into_iter().partition(|o| {
                self.owned
                    .get(&o.topic)
                    .is_some_and(|ps| ps.contains(&o.partition))
            });
        if !not_mine.is_empty() {
            tracing::debug!(group = %self.cfg.group_id, dropped = not_mine.len(), "commit for partitions not owned dropped");
        }
        if mine.is_empty() {
            self.commit_result(
                id,
                if not_mine.is_empty() {
                    Ok(Vec::new())
                } else {
                    Err(Error::CommitFailed(
                        "none of the partitions is owned by this member".into(),
                    ))
                },
            );
            return;
        }
        if self.coordinator.is_none() {
            self.queued_commits.push_back((
                now,
                PendingCommit {
                    id,
                    offsets: mine,
                    attempts,
                },
            ));
            return;
        }
        let mut topics: BTreeMap<String, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for o in &mine {
            topics.entry(o.topic.clone()).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: o.partition,
                    committed_offset: o.offset,
                    committed_leader_epoch: -1,
                    committed_metadata: Some(StrBytes::new()),
                    ..Default::default()
                },
            );
        }
        let req = OffsetCommitRequest {
            group_id: self.cfg.group_id.clone().into(),
            generation_id_or_member_epoch: self.generation,
            member_id: self.member_id.clone().into(),
            group_instance_id: self.cfg.group_instance_id.clone().map(Into::into),
            retention_time_ms: -1,
            topics: topics
                .into_iter()
                .map(
                    |(name, partitions)| offset_commit_request::OffsetCommitRequestTopic {
                        name: name.into(),
                        partitions,
                        ..Default::default()
                    },
                )
                .collect(),
            ..Default::default()
        };
        self.send(
            now,
            OutboundRequest::OffsetCommit(req),
            self.cfg.request_timeout,
            Some(PendingCommit {
                id,
                offsets: mine,
                attempts,
            }),
        );
    }

    fn requeue_commit(&mut self, now: Instant, c: PendingCommit, err: Error) {
        // Retried within about one request timeout's worth of attempts; past that the caller
        // hears about it and commits again later. A member that is leaving or gone does not
        // retry: its generation is over (Java fails commits once the consumer is closing).
        if c.attempts >= 5
            || matches!(
                self.state,
                State::Leaving { .. } | State::Left | State::Failed
            )
        {
            self.commit_result(c.id, Err(err));
            return;
        }
        let mut b = Backoff::new(
            self.cfg.retry_backoff,
            self.cfg.retry_backoff_max,
            Jitter::seeded(self.jitter.next_u64()),
        );
        for _ in 0..c.attempts {
            b.next_delay();
        }
        let not_before = now + b.next_delay();
        self.queued_commits.push_back((
            not_before,
            PendingCommit {
                attempts: c.attempts + 1,
                ..c
            },
        ));
    }

    fn on_commit(&mut self, now: Instant, sent: Sent, r: OffsetCommitResponse) {
        let Some(PendingCommit {
            id,
            offsets,
            attempts,
        }) = sent.commit.clone()
        else {
            return;
        };
        // The worst partition error decides.
        let mut worst: Option<ErrorCode> = None;
        for t in &r.topics {
            for p in &t.partitions {
                if let Err(code) = ErrorCode::check(p.error_code) {
                    worst.get_or_insert(code);
                }
            }
        }
        let Some(code) = worst else {
            self.commit_result(id, Ok(offsets));
            return;
        };
        let stale = self.stale(&sent);
        let t = transition(GroupApi::OffsetCommit, code);
        let err = Error::Broker {
            api: ApiKey::OffsetCommit,
            code,
            context: format!("group {}", self.cfg.group_id),
        };
        match t {
            Transition::Rediscover => {
                self.mark_coordinator_unknown(&code.to_string());
                self.requeue_commit(
                    now,
                    PendingCommit {
                        id,
                        offsets,
                        attempts,
                    },
                    err,
                );
            }
            Transition::RetryWithBackoff => self.requeue_commit(
                now,
                PendingCommit {
                    id,
                    offsets,
                    attempts,
                },
                err,
            ),
            Transition::ResetMemberAndRejoin | Transition::ResetGenerationAndRejoin => {
                self.commit_result(
                    id,
                    Err(Error::CommitFailed(format!(
                        "{code}: the member is no longer in this generation"
                    ))),
                );
                // Only a failure in the current, stable generation means the membership is
                // gone; during a rebalance (one is pending, or partitions are being revoked) it
                // only means the commit was late, and the JoinGroup that follows will tell
                // whether the member is still known (librdkafka #4908).
                let rebalancing = self.rejoin_reason.is_some() || self.pending_revoke.is_some();
                if !stale && matches!(self.state, State::Stable) && !rebalancing {
                    self.apply(now, GroupApi::OffsetCommit, code, &sent, None);
                }
            }
            Transition::Rejoin => {
                self.commit_result(
                    id,
                    Err(Error::CommitFailed(format!(
                        "{code}: commit again after the rebalance"
                    ))),
                );
                if !stale {
                    self.request_rejoin("a commit found the group rebalancing");
                }
            }
            Transition::Fenced => {
                self.commit_result(id, Err(Error::CommitFailed(code.to_string())));
                if !stale {
                    self.apply(now, GroupApi::OffsetCommit, code, &sent, None);
                }
            }
            Transition::FailCommit
            | Transition::Fatal
            | Transition::RejoinUnlessRebalancing
            | Transition::AdoptMemberIdAndRejoin => {
                self.commit_result(id, Err(err));
            }
        }
    }
}

/// Builds the `TopicInfo` list a leader passes to its balancer: partition counts and the racks
/// of each partition's replicas.
pub fn topic_infos(
    topics: &BTreeMap<String, crate::conn::TopicMeta>,
    rack_of: impl Fn(i32) -> Option<String>,
) -> Vec<TopicInfo> {
    topics
        .iter()
        .filter(|(_, m)| m.error_code == 0)
        .map(|(name, m)| {
            let racks: Vec<Vec<String>> = m
                .partitions
                .iter()
                .map(|p| p.replicas.iter().filter_map(|&r| rack_of(r)).collect())
                .collect();
            let mut info = TopicInfo::new(name.clone(), m.partitions.len() as u32);
            if racks.iter().any(|r| !r.is_empty()) {
                info = info.with_racks(&racks);
            }
            info
        })
        .collect()
}

/// The subscription a member sends in JoinGroup for one balancer: its topics, the balancer's
/// userdata, and (for members running the cooperative protocol, `owned` is `Some`) the
/// partitions it owns (KIP-429), its generation (KIP-792) and its rack (KIP-881).
pub fn subscription(
    balancer: &dyn Balancer,
    topics: &[String],
    owned: Option<&Assignment>,
    generation: i32,
    rack: Option<&str>,
) -> ConsumerProtocolSubscription {
    let owned: Vec<OwnedTopicPartitions> = owned
        .map(|o| {
            o.iter()
                .map(|(t, ps)| OwnedTopicPartitions {
                    topic: t.clone().into(),
                    partitions: ps.iter().copied().collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let topics: Vec<StrBytes> = topics.iter().map(|t| StrBytes::from(t.clone())).collect();
    let user_data = balancer.user_data(&BalancerMemberState {
        topics: &topics,
        owned: &owned,
        generation,
        rack,
    });
    ConsumerProtocolSubscription {
        topics,
        user_data,
        owned_partitions: owned,
        generation_id: generation,
        rack_id: rack.map(|r| r.to_owned().into()),
    }
}

/// What the leader sends in SyncGroup, with the plan it came from.
#[derive(Debug)]
pub struct Led {
    /// The plan, members in input order.
    pub plan: cohort_balancers::Plan,
    /// Encoded assignment per member id.
    pub assignments: Vec<(StrBytes, Bytes)>,
    /// What was ignored: unreadable subscriptions, unknown topics, invalid claims.
    pub warnings: Vec<String>,
}

/// The leader's step: decodes every member's JoinGroup metadata (an unreadable one subscribes
/// to nothing, with a warning), runs the balancer and encodes each member's assignment. The
/// `cohort assign` command runs this same function.
pub fn lead(
    balancer: &dyn Balancer,
    members: &[(StrBytes, Option<StrBytes>, Bytes)],
    topics: &[TopicInfo],
) -> Result<Led, Error> {
    let mut warnings = Vec::new();
    let members: Vec<GroupMember> = members
        .iter()
        .map(|(member_id, group_instance_id, metadata)| {
            let subscription = match decode_subscription(metadata.clone()) {
                Ok((_, s)) => s,
                Err(e) => {
                    warnings.push(format!(
                        "member {member_id}: unreadable subscription ({e}); assigned nothing"
                    ));
                    ConsumerProtocolSubscription::default()
                }
            };
            GroupMember {
                member_id: member_id.clone(),
                group_instance_id: group_instance_id.clone(),
                subscription,
            }
        })
        .collect();
    let plan = balancer
        .assign(&members, topics)
        .map_err(|e| Error::Fatal {
            code: ErrorCode::InconsistentGroupProtocol,
            context: format!("assignment failed: {e}"),
        })?;
    warnings.extend(plan.warnings.iter().cloned());
    let mut assignments = Vec::with_capacity(plan.members.len());
    for (i, m) in plan.members.iter().enumerate() {
        let bytes = encode_assignment(&plan.to_assignment(i), 3).map_err(Error::Encode)?;
        assignments.push((m.member_id.clone(), bytes));
    }
    Ok(Led {
        plan,
        assignments,
        warnings,
    })
}
