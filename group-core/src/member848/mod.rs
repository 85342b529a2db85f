//! The group member of the consumer group protocol (KIP-848), as an explicit state machine
//! without I/O, in the shape of the classic [`Member`](crate::member::Member): inputs are
//! responses and time (`handle_*`, `now` passed in), outputs are requests, events and the next
//! deadline (`poll_*`), and it reports the same [`GroupEvent`]s, so the driver, the consumer and
//! the generation API run on either.
//!
//! ```text
//!   Joining --(epoch > 0)--> Stable <--(assignment acknowledged)--+
//!     ^   ^                    |                                 |
//!     |   |                    +--(target takes partitions)--> Revoking
//!     |   |                    |
//!     |   +--(app let go)-- Fenced <--(FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, session lost)
//!     |                        |
//!     +--(app polls)-- Stale <-+-- Leaving --(close)--> Left          Failed (fatal error)
//! ```
//!
//! The broker computes the assignment; there is no leader and no barrier. The member joins with
//! epoch 0, heartbeats at the interval the broker returns, and reconciles each target assignment
//! it is sent: partitions taken away are revoked first (the application stops fetching them,
//! commits what it processed, and acknowledges), then the target becomes the assignment and the
//! next heartbeat, sent at once, reports it. The broker withholds a partition from its new owner
//! until the previous owner reported it released, so no partition has two owners.
//!
//! Invariants (those of the classic member hold too):
//! - The member id is the client's (KIP-1082), kept across rejoins; a response that names one
//!   (ConsumerGroupHeartbeat v0) is adopted.
//! - A heartbeat carries every field when joining and after an error or a coordinator change, and
//!   only what changed otherwise; the owned partitions go out whenever they changed.
//! - One heartbeat in flight at a time; an answer that arrives after the member started leaving
//!   does not touch its epoch (librdkafka #4672).
//! - Offsets are committed with the member epoch, only for owned partitions, and not while the
//!   member is joining, fenced or leaving; STALE_MEMBER_EPOCH is retried with the latest epoch.
//! - Fenced partitions are lost, never committed, and heartbeats stop until the application
//!   let them go (KAFKA-16251).
//!
//! # Layout
//! - this file: the [`Member848`] with its inputs (`handle_*`), outputs (`poll_*`) and `step`,
//!   leaving and failing;
//! - `state.rs`: the phases, each with its own data, and the heartbeat fields last sent;
//! - `heartbeat.rs`: full and partial heartbeats, their answers and errors;
//! - `reconcile.rs`: taking up a target assignment (revoke first), fencing;
//! - `commit.rs`: commits with the member epoch;
//! - `errors.rs`: the heartbeat and commit error tables.
//!
//! # References
//! KIP-848 (the protocol), KIP-1082 (client-generated member id); the Java client's
//! `ConsumerMembershipManager`, `AbstractMembershipManager`, `ConsumerHeartbeatRequestManager`.

mod commit;
mod errors;
mod heartbeat;
mod reconcile;
mod state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use cohort_protocol::messages::ConsumerGroupHeartbeatRequest;
use cohort_protocol::{ApiKey, Uuid};

use self::state::{AfterLeave, SentFields, State};
use crate::backoff::{Backoff, Jitter};
use crate::error::Error;
use crate::member::commit::{Commits, PendingCommit};
use crate::member::{
    Assignment, CommitId, CommitOffset, GroupEvent, MemberConfig, MemberStats, Outbound,
    OutboundRequest, Phase, RequestId, Response, RevokeToken,
};

/// The epoch a dynamic member leaves with (KIP-848).
const LEAVE_EPOCH: i32 = -1;
/// The epoch a static member leaves with: it will come back within the session timeout and
/// keep its assignment (KIP-848).
const STATIC_LEAVE_EPOCH: i32 = -2;

/// What a KIP-848 member subscribes to: topic names, or a regular expression the broker
/// resolves (RE2/J syntax, matched against whole topic names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription848 {
    /// These topics.
    Topics(Vec<String>),
    /// Topics whose whole name matches this expression (`SubscribedTopicRegex`).
    Regex(String),
}

/// A request in flight, with the epoch it was sent with.
#[derive(Debug, Clone)]
struct Sent {
    api: ApiKey,
    at: Instant,
    epoch: i32,
    commit: Option<PendingCommit>,
}

/// The KIP-848 group member state machine.
pub struct Member848 {
    cfg: MemberConfig,
    subscription: Subscription848,
    state: State,
    member_id: String,
    epoch: i32,
    owned: Assignment,
    /// The latest target assignment the broker sent and the member has not taken up yet.
    target: Option<BTreeMap<Uuid, BTreeSet<i32>>>,
    /// Topic names by id, as far as metadata told them.
    names: BTreeMap<Uuid, String>,
    coordinator: Option<i32>,
    coordinator_retry_at: Option<Instant>,
    coordinator_backoff: Backoff,
    heartbeat_interval: Duration,
    heartbeat_due: Option<Instant>,
    heartbeat_backoff: Backoff,
    /// The owned partitions changed: report them without waiting for the interval (Java
    /// `ACKNOWLEDGING`).
    acknowledge: bool,
    /// When the last successful heartbeat was sent: the coordinator restarted the session no
    /// earlier than that.
    last_ok: Instant,
    /// When the member was created: a deadline already past, for closing delivery.
    created: Instant,
    sent: SentFields,
    want_join: bool,
    last_poll: Instant,
    commits: Commits,
    next_request: RequestId,
    inflight: BTreeMap<RequestId, Sent>,
    outbox: VecDeque<Outbound>,
    events: VecDeque<GroupEvent>,
    next_token: RevokeToken,
    rebalance_started: Option<Instant>,
    /// The `rebalance` span of the rebalance in progress.
    rebalance_trace: Option<crate::member::trace::RebalanceTrace>,
    stats: MemberStats,
}

impl std::fmt::Debug for Member848 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member848")
            .field("phase", &self.phase())
            .field("member_id", &self.member_id)
            .field("epoch", &self.epoch)
            .field("owned", &self.owned)
            .finish_non_exhaustive()
    }
}

impl Member848 {
    /// A member with the client-generated `member_id` (KIP-1082: one per process, kept across
    /// rejoins) that joins as soon as it knows the coordinator. `cfg.session_timeout` is the
    /// member's estimate of the broker's `group.consumer.session.timeout.ms` (the broker decides
    /// it): without a heartbeat answer for that long, the member gives its partitions up as lost.
    pub fn new(
        cfg: MemberConfig,
        member_id: String,
        subscription: Subscription848,
        now: Instant,
    ) -> Self {
        let subscription = match subscription {
            Subscription848::Topics(mut ts) => {
                ts.sort();
                ts.dedup();
                Subscription848::Topics(ts)
            }
            other => other,
        };
        let mut jitter = Jitter::seeded(cfg.jitter_seed);
        let backoff = |jitter: &mut Jitter| {
            Backoff::new(
                cfg.retry_backoff,
                cfg.retry_backoff_max,
                Jitter::seeded(jitter.next_u64()),
            )
        };
        let coordinator_backoff = backoff(&mut jitter);
        let heartbeat_backoff = backoff(&mut jitter);
        let trace =
            crate::member::trace::RebalanceTrace::start(&cfg.group_id, "consumer", "joining", now);
        let mut m = Self {
            heartbeat_interval: cfg.heartbeat_interval,
            cfg,
            subscription,
            state: State::Joining,
            member_id,
            epoch: 0,
            owned: Assignment::new(),
            target: None,
            names: BTreeMap::new(),
            coordinator: None,
            coordinator_retry_at: None,
            coordinator_backoff,
            heartbeat_due: Some(now),
            heartbeat_backoff,
            acknowledge: false,
            last_ok: now,
            created: now,
            sent: SentFields::default(),
            want_join: true,
            last_poll: now,
            commits: Commits::new(jitter),
            next_request: 1,
            inflight: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_token: 1,
            rebalance_started: Some(now),
            rebalance_trace: Some(trace),
            stats: MemberStats::default(),
        };
        m.step(now);
        m
    }

    // -------------------------------------------------------------------------------------
    // getters

    /// The lifecycle phase.
    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// The member epoch (0 while joining), the KIP-848 counterpart of the generation.
    pub fn generation(&self) -> i32 {
        self.epoch
    }

    /// The member id (the client's, KIP-1082).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Until when the member may hand records of its partitions to the application: within
    /// the session of its last successful heartbeat, less one heartbeat interval of margin
    /// (see [`Member::deliverable_until`](crate::member::Member::deliverable_until)). Out of
    /// the group (joining with epoch 0, fenced, leaving or left) the member owns nothing and
    /// delivery stays closed: the application side may still hold records of partitions it
    /// lost until it hears of the loss.
    pub fn deliverable_until(&self) -> Option<Instant> {
        if !self.state.in_group() {
            return Some(self.created);
        }
        let margin = self.heartbeat_interval.min(self.cfg.session_timeout / 3);
        Some(self.last_ok + self.cfg.session_timeout - margin)
    }

    /// The bound on time between the application's polls (`max.poll.interval.ms`).
    pub fn max_poll_interval(&self) -> Duration {
        self.cfg.max_poll_interval
    }

    /// Partitions the member owns.
    pub fn assignment(&self) -> &Assignment {
        &self.owned
    }

    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<i32> {
        self.coordinator
    }

    /// Rebalance counters.
    pub fn stats(&self) -> MemberStats {
        self.stats
    }

    /// Subscribed topics (empty for a regular expression: the broker resolves it).
    pub fn topics(&self) -> &[String] {
        match &self.subscription {
            Subscription848::Topics(ts) => ts,
            Subscription848::Regex(_) => &[],
        }
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

    /// When [`Member848::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut due = vec![
            self.coordinator_retry_at,
            self.commits.next_due(),
            self.heartbeat_due,
        ];
        if let State::Revoking { deadline, .. } = &self.state {
            due.push(Some(*deadline));
        }
        if self.state.in_group() {
            due.push(Some(self.last_ok + self.cfg.session_timeout));
            due.push(Some(self.last_poll + self.cfg.max_poll_interval));
        }
        due.into_iter().flatten().min()
    }

    // -------------------------------------------------------------------------------------
    // inputs

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.step(now);
    }

    /// The application polled: resets the `max.poll.interval` clock and, after a poll timeout,
    /// joins again.
    pub fn handle_poll(&mut self, now: Instant) {
        self.last_poll = now;
        if matches!(self.state, State::Stale) {
            self.want_join = true;
            self.rejoin(now);
        }
        self.step(now);
    }

    /// The subscription changed (a topic list; with a regular expression the broker follows
    /// the topics itself).
    pub fn set_topics(&mut self, now: Instant, mut topics: Vec<String>) {
        topics.sort();
        topics.dedup();
        if let Subscription848::Topics(ts) = &mut self.subscription
            && *ts != topics
        {
            *ts = topics;
            // The next heartbeat carries the new list (it differs from the one sent).
            self.heartbeat_due = Some(now);
        }
        self.step(now);
    }

    /// The application finished giving up revoked (or lost) partitions.
    pub fn handle_revoked(&mut self, now: Instant, token: RevokeToken) {
        match &self.state {
            State::Revoking { token: t, .. } if *t == token => self.finish_revoking(now),
            State::Fenced { token: t } if *t == token => self.rejoin(now),
            _ => {}
        }
        self.step(now);
    }

    /// Asks for a rejoin. The broker decides assignments in this protocol, so there is nothing
    /// to redo: the next heartbeat is a full one, reporting everything again.
    pub fn request_rejoin(&mut self, reason: &str) {
        tracing::debug!(group = %self.cfg.group_id, reason, "full heartbeat requested");
        self.sent.reset();
    }

    /// Leaves the group: a heartbeat with epoch -1, or -2 for a static member (KIP-848: it
    /// keeps its assignment if it comes back within the session timeout). A dynamic member
    /// configured not to leave on close just stops. [`GroupEvent::Left`] follows.
    pub fn leave(&mut self, now: Instant) {
        self.want_join = false;
        if self.state.is_leaving_or_over() {
            return;
        }
        let in_group = self.epoch > 0 && self.coordinator.is_some();
        let sends_leave = self.cfg.group_instance_id.is_some() || self.cfg.leave_on_close;
        if in_group && sends_leave {
            self.send_leave(now, AfterLeave::Left);
        } else {
            self.finish(AfterLeave::Left);
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
        match result {
            Err(e) => self.on_request_failed(now, sent, e),
            Ok(Response::Coordinator(node)) => {
                self.coordinator = Some(node);
                self.coordinator_backoff.reset();
                // A new coordinator hears everything (Java resets the heartbeat state).
                self.sent.reset();
            }
            Ok(Response::TopicNames(names)) => {
                self.names.extend(names);
                self.reconcile(now);
            }
            Ok(Response::ConsumerGroupHeartbeat(r)) => self.on_heartbeat(now, &sent, r),
            Ok(Response::OffsetCommit(r)) => self.on_commit(now, &sent, r),
            Ok(other) => {
                tracing::debug!(group = %self.cfg.group_id, ?other, "unexpected response");
            }
        }
        self.step(now);
    }

    // -------------------------------------------------------------------------------------
    // the machine

    /// The one place where the machine moves forward: sends what is due.
    fn step(&mut self, now: Instant) {
        if matches!(self.state, State::Left | State::Failed) {
            return;
        }
        self.check_poll_interval(now);
        self.check_session(now);
        if let State::Revoking { deadline, .. } = &self.state
            && now >= *deadline
        {
            self.events.push_back(GroupEvent::Error(Error::CommitFailed(
                "the application did not acknowledge revoked partitions within the rebalance timeout".into(),
            )));
            self.finish_revoking(now);
        }
        self.look_up_coordinator(now);
        self.heartbeat_if_due(now);
        while self.coordinator.is_some()
            && let Some(c) = self.commits.pop_due(now)
        {
            self.try_commit(now, c);
        }
    }

    fn look_up_coordinator(&mut self, now: Instant) {
        let needed = self.want_join
            || self.state.in_group()
            || matches!(self.state, State::Leaving { .. })
            || !self.commits.is_empty();
        if needed
            && self.coordinator.is_none()
            && !self.busy(ApiKey::FindCoordinator)
            && self.coordinator_retry_at.is_none_or(|t| now >= t)
        {
            self.coordinator_retry_at = None;
            self.send(
                now,
                OutboundRequest::FindCoordinator,
                self.cfg.request_timeout,
                None,
            );
        }
    }

    /// Stalled application (KIP-62 holds in KIP-848 too): leave, give everything up, and join
    /// again when it polls.
    fn check_poll_interval(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_poll);
        if !self.state.in_group() || elapsed <= self.cfg.max_poll_interval {
            return;
        }
        self.events.push_back(GroupEvent::Error(Error::PollTimeout {
            elapsed_ms: elapsed.as_millis() as u64,
            limit_ms: self.cfg.max_poll_interval.as_millis() as u64,
        }));
        self.want_join = false;
        self.lose_all();
        if self.coordinator.is_some() {
            self.send_leave(now, AfterLeave::Stale);
        } else {
            self.finish(AfterLeave::Stale);
        }
    }

    /// No heartbeat answered for a whole session: the coordinator may have fenced the member
    /// and given its partitions away. They are lost (nothing is committed for them) and the
    /// member joins again, as the classic member does.
    fn check_session(&mut self, now: Instant) {
        if self.state.in_group()
            && now.saturating_duration_since(self.last_ok) > self.cfg.session_timeout
        {
            tracing::warn!(group = %self.cfg.group_id, "no heartbeat response within the session timeout: partitions lost");
            self.coordinator = None;
            self.fence(now, "session timed out without a heartbeat response");
        }
    }

    fn on_request_failed(&mut self, now: Instant, sent: Sent, err: Error) {
        // Refused credentials stay refused (see the classic member).
        if matches!(err, Error::Authentication { .. }) {
            self.fail(err);
            return;
        }
        tracing::debug!(group = %self.cfg.group_id, api = ?sent.api, error = %err, "request failed");
        match sent.api {
            ApiKey::FindCoordinator => {
                self.coordinator_retry_at = Some(now + self.coordinator_backoff.next_delay());
                if self.coordinator_backoff.attempts().is_multiple_of(10) {
                    self.events.push_back(GroupEvent::Error(err));
                }
            }
            ApiKey::ConsumerGroupHeartbeat => {
                if let State::Leaving { then } = self.state {
                    self.finish(then);
                    return;
                }
                // Transport failure or timeout: the coordinator may have moved; everything is
                // sent again to the one found next.
                self.coordinator = None;
                self.sent.reset();
                self.heartbeat_due = Some(now + self.heartbeat_backoff.next_delay());
            }
            ApiKey::Metadata => {
                // Topic names not resolved: the next heartbeat answer tries again.
            }
            ApiKey::OffsetCommit => {
                self.coordinator = None;
                if let Some(c) = sent.commit {
                    self.requeue_commit(now, c, err);
                }
            }
            _ => {}
        }
    }

    fn send_leave(&mut self, now: Instant, then: AfterLeave) {
        let epoch = if self.cfg.group_instance_id.is_some() && then == AfterLeave::Left {
            STATIC_LEAVE_EPOCH
        } else {
            LEAVE_EPOCH
        };
        let req = ConsumerGroupHeartbeatRequest {
            group_id: self.cfg.group_id.clone().into(),
            member_id: self.member_id.clone().into(),
            member_epoch: epoch,
            instance_id: self.cfg.group_instance_id.clone().map(Into::into),
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        self.state = State::Leaving { then };
        self.epoch = epoch;
        // The coordinator hands the partitions on as soon as it reads this: from here the
        // member owns nothing (the consumer gave them up, committing, before it left).
        self.owned.clear();
        self.send_heartbeat(now, req);
    }

    fn finish(&mut self, then: AfterLeave) {
        self.epoch = 0;
        self.sent.reset();
        match then {
            AfterLeave::Left => {
                self.state = State::Left;
                for c in self.commits.drain() {
                    self.commit_result(
                        c.id,
                        Err(Error::CommitFailed("the member left the group".into())),
                    );
                }
                self.events.push_back(GroupEvent::Left);
            }
            AfterLeave::Stale => self.state = State::Stale,
        }
    }

    fn fail(&mut self, err: Error) {
        tracing::error!(group = %self.cfg.group_id, error = %err, "member failed");
        self.lose_all();
        self.state = State::Failed;
        self.want_join = false;
        for c in self.commits.drain() {
            self.commit_result(c.id, Err(err.clone()));
        }
        self.events.push_back(GroupEvent::Fatal(err));
    }

    // -------------------------------------------------------------------------------------
    // helpers

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
        let id = self.next_request;
        self.next_request += 1;
        let epoch = match &request {
            OutboundRequest::ConsumerGroupHeartbeat(r) => r.member_epoch,
            _ => self.epoch,
        };
        self.inflight.insert(
            id,
            Sent {
                api: request.api(),
                at: now,
                epoch,
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

    fn token(&mut self) -> RevokeToken {
        let t = self.next_token;
        self.next_token += 1;
        t
    }
}

impl Member848 {
    /// Never: the broker computes the assignment (KIP-848 has no leader).
    pub fn is_leader(&self) -> bool {
        false
    }

    /// Nothing: the broker watches partition counts itself.
    pub fn watched_topics(&self) -> Vec<String> {
        Vec::new()
    }

    /// Nothing to do: the broker notices partition changes and sends a new target.
    pub fn handle_partition_counts(&mut self, now: Instant, _counts: &BTreeMap<String, u32>) {
        self.step(now);
    }
}

crate::member::group_member!(Member848);
