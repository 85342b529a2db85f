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
//!    |   | app acknowledged revoke/lost             +--> Assigning --(metadata, plan)-----+
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
//!
//! # Layout
//! - this file: the [`Member`] with its inputs (`handle_*`), outputs (`poll_*`) and `step`, the
//!   one place where the machine sends what is due;
//! - `state.rs`: the phases, each with its own data, and what outlives them;
//! - `rebalance.rs`: joining, syncing, heartbeats, revocation and leaving;
//! - `errors.rs`: every error code of the group APIs mapped to one transition;
//! - `commit.rs`: the commit pipeline;
//! - `leader.rs`: subscriptions and the leader's plan;
//! - `types.rs`: the public vocabulary (settings, requests, responses, events).

pub(crate) mod commit;
mod errors;
mod leader;
mod rebalance;
mod state;
pub(crate) mod trace;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use cohort_balancers::Balancer;
use cohort_protocol::ApiKey;
use cohort_protocol::messages::HeartbeatRequest;

#[cfg_attr(
    not(feature = "unstable-internals"),
    allow(unreachable_pub, reason = "reachable through `unstable` only")
)]
pub use self::leader::{Decoded, Led, decode_members, lead, lead_decoded, subscription};
use self::state::{AfterLeave, Coordinator, Membership, State};
pub use self::types::{
    Assignment, CommitId, CommitOffset, GroupEvent, MemberConfig, MemberStats, Outbound,
    OutboundRequest, Phase, RequestId, Response, RevokeToken,
};
use crate::backoff::{Backoff, Jitter};
use crate::error::Error;

/// A request in flight, with what the member was when it sent it.
#[derive(Debug, Clone)]
struct Sent {
    api: ApiKey,
    /// When the member queued the request: before the coordinator can have received it, so
    /// a session counted from here ends no later than the coordinator's count of it.
    at: Instant,
    generation: i32,
    member_id: String,
    commit: Option<commit::PendingCommit>,
    /// A leader's metadata prefetch (`leader::Prefetch`): its answer, or an older prefetch's,
    /// is never taken for the plan's own request.
    prefetch: bool,
}

/// The group member state machine.
pub struct Member {
    cfg: MemberConfig,
    balancers: Vec<Box<dyn Balancer>>,
    cooperative: bool,
    topics: Vec<String>,
    state: State,
    membership: Membership,
    coordinator: Coordinator,
    /// Whether the member wants to be in the group: false once it leaves, or after a poll
    /// timeout until the application polls again.
    want_join: bool,
    /// Why the member must (re)join, while it has not yet.
    rejoin_reason: Option<String>,
    join_backoff: Backoff,
    /// When the application last polled (`max.poll.interval.ms`, KIP-62).
    last_poll: Instant,
    /// When the member was created: a deadline already past, for closing delivery.
    created: Instant,
    /// Partition counts of the last plan this member made as leader, to notice changes.
    assigned_counts: BTreeMap<String, u32>,
    /// The group's metadata, asked for beside the JoinGroup of a member that led the last
    /// generation (`leader.rs`, `Prefetch`).
    prefetch: leader::Prefetch,
    commits: commit::Commits,
    next_request: RequestId,
    inflight: BTreeMap<RequestId, Sent>,
    outbox: VecDeque<Outbound>,
    events: VecDeque<GroupEvent>,
    next_token: RevokeToken,
    rebalance_started: Option<Instant>,
    /// The `rebalance` span of the rebalance in progress.
    rebalance_trace: Option<trace::RebalanceTrace>,
    stats: MemberStats,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("phase", &self.phase())
            .field("member_id", &self.membership.member_id)
            .field("generation", &self.generation())
            .field("owned", &self.membership.owned)
            .finish_non_exhaustive()
    }
}

pub(crate) fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// What `a` has that `b` has not.
pub(crate) fn minus(a: &Assignment, b: &Assignment) -> Assignment {
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
        let coordinator = Coordinator {
            node: None,
            retry_at: None,
            backoff: Backoff::new(
                cfg.retry_backoff,
                cfg.retry_backoff_max,
                Jitter::seeded(jitter.next_u64()),
            ),
        };
        let mut m = Self {
            cfg,
            balancers,
            cooperative,
            topics,
            state: State::unjoined(),
            membership: Membership::new(),
            coordinator,
            want_join: true,
            rejoin_reason: Some("initial join".into()),
            join_backoff,
            last_poll: now,
            created: now,
            assigned_counts: BTreeMap::new(),
            prefetch: leader::Prefetch::default(),
            commits: commit::Commits::new(jitter),
            next_request: 1,
            inflight: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_token: 1,
            rebalance_started: None,
            rebalance_trace: None,
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

    /// Current generation, -1 when none.
    pub fn generation(&self) -> i32 {
        self.membership.generation_id()
    }

    /// Member id assigned by the coordinator (empty before the first join).
    pub fn member_id(&self) -> &str {
        &self.membership.member_id
    }

    /// Until when the member may hand records of its partitions to the application: while it
    /// is stable it must have heard from the coordinator within the session timeout, counted
    /// from when its last successful heartbeat was sent (the coordinator restarted the
    /// session after that), less one heartbeat interval of margin (for the SyncGroup answer,
    /// which is counted from its arrival, and for coarse clocks). Past that instant the coordinator
    /// may already have expired the member and given its partitions to someone else, so a
    /// record delivered then could be processed twice at once. `None`: no limit (not stable:
    /// a pending JoinGroup or SyncGroup is the member's liveness, as in the Java client).
    /// Without a generation (its partitions lost, or it left) the member owns nothing, and
    /// delivery stays closed: the application side may still hold records of what was lost
    /// until it hears of the loss, and none of them may go out meanwhile (a member thawed
    /// after a freeze handed one out in that gap).
    pub fn deliverable_until(&self) -> Option<Instant> {
        if !self.membership.joined() {
            return Some(self.created);
        }
        let session = self.state.session()?;
        let margin = self
            .cfg
            .heartbeat_interval
            .min(self.cfg.session_timeout / 3);
        Some(session.last_ok + self.cfg.session_timeout - margin)
    }

    /// The bound on time between the application's polls (`max.poll.interval.ms`, KIP-62).
    pub fn max_poll_interval(&self) -> Duration {
        self.cfg.max_poll_interval
    }

    /// Partitions the member owns.
    pub fn assignment(&self) -> &Assignment {
        &self.membership.owned
    }

    /// Whether the member leads the current generation.
    pub fn is_leader(&self) -> bool {
        self.membership.is_leader()
    }

    /// Whether the member runs the cooperative protocol.
    pub fn is_cooperative(&self) -> bool {
        self.cooperative
    }

    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<i32> {
        self.coordinator.node
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
        if self.leads_stable_generation() {
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
        let mut due: Vec<Option<Instant>> =
            vec![self.coordinator.retry_at, self.commits.next_due()];
        match &self.state {
            State::Unjoined { retry_at } => due.push(*retry_at),
            State::Revoking { deadline, .. } => due.push(Some(*deadline)),
            State::Stable {
                pending_revoke,
                rejoin_not_before,
                ..
            } => {
                due.push(pending_revoke.as_ref().map(|p| p.deadline));
                due.push(*rejoin_not_before);
            }
            _ => {}
        }
        if let Some(session) = self.state.session() {
            due.push(Some(session.heartbeat_due));
            if self.membership.joined() {
                due.push(Some(session.last_ok + self.cfg.session_timeout));
            }
        }
        if self.membership.joined() {
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

    /// The application made progress (polled for records); resets the `max.poll.interval`
    /// clock and, after a poll timeout, rejoins.
    pub fn handle_poll(&mut self, now: Instant) {
        self.last_poll = now;
        if matches!(self.state, State::Unjoined { .. }) && !self.want_join {
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
        if !self.leads_stable_generation() {
            return;
        }
        let changed = counts.iter().find_map(|(t, &n)| {
            let was = *self.assigned_counts.get(t)?;
            (was != n).then(|| format!("partitions of {t} changed from {was} to {n}"))
        });
        if let Some(reason) = changed {
            self.request_rejoin(&reason);
        }
        self.step(now);
    }

    /// The application finished giving up revoked (or lost) partitions.
    pub fn handle_revoked(&mut self, now: Instant, token: RevokeToken) {
        match &self.state {
            State::Revoking { token: t, .. } if *t == token => self.finish_revoking(),
            State::Stable {
                pending_revoke: Some(p),
                ..
            } if p.token == token => self.finish_cooperative_revoke(now),
            _ => {}
        }
        self.step(now);
    }

    /// Requests a rejoin (for instance because the application changed something).
    pub fn request_rejoin(&mut self, reason: &str) {
        if self.rejoin_reason.is_none() {
            self.rejoin_reason = Some(reason.to_owned());
        }
    }

    /// Leaves the group: LeaveGroup for dynamic members (unless disabled), nothing for static
    /// ones (KIP-345: a static member keeps its partitions until its session expires, so a
    /// restart within the session timeout does not rebalance). [`GroupEvent::Left`] follows.
    pub fn leave(&mut self, now: Instant) {
        self.want_join = false;
        if !self.state.is_leaving_or_over() {
            let dynamic = self.cfg.group_instance_id.is_none();
            if dynamic
                && self.cfg.leave_on_close
                && !self.membership.member_id.is_empty()
                && self.coordinator.node.is_some()
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
        tracing::trace!(group = %self.cfg.group_id, member = %self.membership.member_id, api = ?sent.api, ok = result.is_ok(), "response");
        if sent.prefetch {
            if self.prefetch.asked_by(id) {
                self.on_prefetch(now, result);
            }
            self.step(now);
            return;
        }
        match result {
            Err(e) => self.on_request_failed(now, sent, e),
            Ok(Response::Coordinator(node)) => {
                self.coordinator.node = Some(node);
                self.coordinator.backoff.reset();
                tracing::debug!(group = %self.cfg.group_id, coordinator = node, "coordinator found");
            }
            Ok(Response::Metadata(topics)) => self.on_metadata(now, topics),
            Ok(Response::JoinGroup(r)) => self.on_join(now, &sent, r),
            Ok(Response::SyncGroup(r)) => self.on_sync(now, &sent, r),
            Ok(Response::Heartbeat(r)) => self.on_heartbeat(now, &sent, r),
            Ok(Response::LeaveGroup(r)) => self.on_leave(&r),
            Ok(Response::OffsetCommit(r)) => self.on_commit(now, &sent, r),
            // KIP-848 answers: a classic member never asks for them.
            Ok(Response::ConsumerGroupHeartbeat(_) | Response::TopicNames(_)) => {}
        }
        self.step(now);
    }

    // -------------------------------------------------------------------------------------
    // the machine

    /// The one place where the machine moves forward: sends what is due.
    fn step(&mut self, now: Instant) {
        if self.state.is_over() {
            return;
        }
        self.check_poll_interval(now);
        self.check_session(now);
        self.look_up_coordinator(now);
        self.check_revocation_deadlines(now);

        // Rejoin requests while stable.
        if let State::Stable {
            pending_revoke: None,
            rejoin_not_before,
            ..
        } = &self.state
            && rejoin_not_before.is_none_or(|t| now >= t)
        {
            if let Some(reason) = self.rejoin_reason.clone() {
                self.begin_rejoin(now, &reason);
            }
        } else if matches!(self.state, State::Unjoined { .. })
            && self.want_join
            && self.rejoin_reason.is_none()
        {
            self.rejoin_reason = Some("joining".into());
        }

        // JoinGroup.
        if let State::Unjoined { retry_at } = self.state
            && self.want_join
            && self.coordinator.node.is_some()
            && retry_at.is_none_or(|t| now >= t)
            && !self.busy(ApiKey::OffsetCommit)
            && !self.busy(ApiKey::JoinGroup)
        {
            self.send_join(now);
        }

        self.heartbeat_if_due(now);
        self.send_due_commits(now);
    }

    /// Stalled application (KIP-62): leave the group and say so.
    fn check_poll_interval(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_poll);
        if !self.membership.joined()
            || matches!(self.state, State::Leaving { .. })
            || elapsed <= self.cfg.max_poll_interval
        {
            return;
        }
        self.events.push_back(GroupEvent::Error(Error::PollTimeout {
            elapsed_ms: elapsed.as_millis() as u64,
            limit_ms: self.cfg.max_poll_interval.as_millis() as u64,
        }));
        self.want_join = false;
        if self.cfg.group_instance_id.is_none() && self.coordinator.node.is_some() {
            self.send_leave(
                now,
                AfterLeave::Unjoined,
                "consumer poll timeout has expired",
            );
        } else {
            // Static members do not leave (KIP-345); they stop heartbeating and the
            // coordinator expires them after the session timeout.
            self.membership.reset_member_id();
            self.state = State::unjoined();
        }
        self.lose_all();
    }

    /// Session: no successful heartbeat for a whole session means the coordinator has expired
    /// the member, and its partitions may already be someone else's. Give them up as lost
    /// (nothing is committed for them) and rejoin, as librdkafka does
    /// (`rd_kafka_cgrp_session_timeout_check`). The Java client only looks the coordinator up
    /// again and keeps consuming, so a partitioned member processes records that the new owner
    /// processes too.
    fn check_session(&mut self, now: Instant) {
        let Some(session) = self.state.session() else {
            return;
        };
        if !self.membership.joined()
            || now.saturating_duration_since(session.last_ok) <= self.cfg.session_timeout
        {
            return;
        }
        tracing::warn!(group = %self.cfg.group_id, "no heartbeat response within the session timeout: partitions lost");
        self.mark_coordinator_unknown("no heartbeat response within the session timeout");
        // The member id is kept, as Java keeps it (`AbstractCoordinator` only marks the
        // coordinator unknown). A coordinator that was merely out of reach (restarted, or
        // failed over to another broker, which reloads the group from __consumer_offsets with
        // fresh session timers) still knows the member: the rejoin with its id completes the
        // rebalance at once, where a new id would leave the old one in the group until its
        // session expired, a whole session timeout later (seen on Apache Kafka: 10 s more after
        // a broker restart). A coordinator that did expire it answers UNKNOWN_MEMBER_ID, and
        // the member joins with a new id one round trip later.
        self.drop_out(false, "session timed out without a heartbeat response");
    }

    fn look_up_coordinator(&mut self, now: Instant) {
        let needs_coordinator = self.want_join
            || self.state.session().is_some()
            || matches!(self.state, State::Leaving { .. })
            || !self.commits.is_empty();
        if needs_coordinator
            && self.coordinator.node.is_none()
            && !self.busy(ApiKey::FindCoordinator)
            && self.coordinator.retry_at.is_none_or(|t| now >= t)
        {
            self.coordinator.retry_at = None;
            self.send(
                now,
                OutboundRequest::FindCoordinator,
                self.cfg.request_timeout,
                None,
            );
        }
    }

    /// The application gets the rebalance timeout to give partitions up (Java
    /// `joinPrepareTimer`); after that the member moves on without it.
    fn check_revocation_deadlines(&mut self, now: Instant) {
        match &self.state {
            State::Revoking { deadline, .. } if now >= *deadline => {
                self.events.push_back(GroupEvent::Error(Error::CommitFailed(
                    "the application did not acknowledge revoked partitions within the rebalance timeout".into(),
                )));
                self.finish_revoking();
            }
            State::Stable {
                pending_revoke: Some(p),
                ..
            } if now >= p.deadline => self.finish_cooperative_revoke(now),
            _ => {}
        }
    }

    /// Heartbeats keep going while the application processes and while partitions are being
    /// revoked; they stop while JoinGroup/SyncGroup are in flight.
    fn heartbeat_if_due(&mut self, now: Instant) {
        let interval = self.cfg.heartbeat_interval;
        let coordinator_known = self.coordinator.node.is_some();
        let busy = self.busy(ApiKey::Heartbeat);
        let joined = self.membership.joined();
        let Some(session) = self.state.session_mut() else {
            return;
        };
        if !joined || now < session.heartbeat_due || !coordinator_known || busy {
            return;
        }
        session.sent(now, interval);
        let req = HeartbeatRequest {
            group_id: self.cfg.group_id.clone().into(),
            generation_id: self.membership.generation_id(),
            member_id: self.membership.member_id.clone().into(),
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

    // -------------------------------------------------------------------------------------
    // helpers

    fn leads_stable_generation(&self) -> bool {
        self.membership.is_leader() && matches!(self.state, State::Stable { .. })
    }

    fn busy(&self, api: ApiKey) -> bool {
        self.inflight.values().any(|s| s.api == api)
    }

    /// A response to `sent` is for an older generation or member id: it never resets state
    /// (Java `generationUnchanged()`).
    fn stale(&self, sent: &Sent) -> bool {
        sent.generation != self.membership.generation_id()
            || sent.member_id != self.membership.member_id
    }

    fn send(
        &mut self,
        now: Instant,
        request: OutboundRequest,
        deadline: Duration,
        commit: Option<commit::PendingCommit>,
    ) {
        let id = self.next_request;
        self.next_request += 1;
        self.inflight.insert(
            id,
            Sent {
                api: request.api(),
                at: now,
                generation: self.membership.generation_id(),
                member_id: self.membership.member_id.clone(),
                commit,
                prefetch: false,
            },
        );
        self.outbox.push_back(Outbound {
            id,
            request,
            deadline,
            coordinator: self.coordinator.node,
        });
    }

    fn token(&mut self) -> RevokeToken {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn mark_coordinator_unknown(&mut self, why: &str) {
        if let Some(c) = self.coordinator.node.take() {
            tracing::info!(group = %self.cfg.group_id, coordinator = c, reason = why, "coordinator unknown");
        }
    }
}

/// What the driver needs of a group member: the classic [`Member`] and the KIP-848
/// [`Member848`](crate::member848::Member848) have this one shape (sans-IO, `handle_*` inputs
/// with `now`, `poll_*` outputs), so the driver, the consumer and the generation API run on
/// either. Each method is the inherent one of the same name.
pub trait GroupMember: Send + std::fmt::Debug {
    /// The lifecycle phase.
    fn phase(&self) -> Phase;
    /// The generation (classic) or member epoch (KIP-848).
    fn generation(&self) -> i32;
    /// The member id.
    fn member_id(&self) -> &str;
    /// Until when records of owned partitions may be handed out.
    fn deliverable_until(&self) -> Option<Instant>;
    /// `max.poll.interval.ms`.
    fn max_poll_interval(&self) -> Duration;
    /// Owned partitions.
    fn assignment(&self) -> &Assignment;
    /// Whether the member leads its generation (never, with KIP-848).
    fn is_leader(&self) -> bool;
    /// Rebalance counters.
    fn stats(&self) -> MemberStats;
    /// Topics whose partition counts the driver reports with `handle_partition_counts`.
    fn watched_topics(&self) -> Vec<String>;
    /// The next request to send.
    fn poll_request(&mut self) -> Option<Outbound>;
    /// The next event for the application.
    fn poll_event(&mut self) -> Option<GroupEvent>;
    /// When `handle_timeout` must be called next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The application polled.
    fn handle_poll(&mut self, now: Instant);
    /// The subscription's topics changed.
    fn set_topics(&mut self, now: Instant, topics: Vec<String>);
    /// Partition counts of the watched topics.
    fn handle_partition_counts(&mut self, now: Instant, counts: &BTreeMap<String, u32>);
    /// The application let revoked or lost partitions go.
    fn handle_revoked(&mut self, now: Instant, token: RevokeToken);
    /// The application asks for a rejoin.
    fn request_rejoin(&mut self, reason: &str);
    /// Commits offsets of owned partitions.
    fn commit(&mut self, now: Instant, offsets: Vec<CommitOffset>) -> CommitId;
    /// Leaves the group.
    fn leave(&mut self, now: Instant);
    /// A response for request `id`.
    fn handle_response(&mut self, now: Instant, id: RequestId, result: Result<Response, Error>);
}

/// Implements [`GroupMember`] by the type's inherent methods.
macro_rules! group_member {
    ($ty:ty) => {
        impl $crate::member::GroupMember for $ty {
            fn phase(&self) -> Phase {
                <$ty>::phase(self)
            }
            fn generation(&self) -> i32 {
                <$ty>::generation(self)
            }
            fn member_id(&self) -> &str {
                <$ty>::member_id(self)
            }
            fn deliverable_until(&self) -> Option<Instant> {
                <$ty>::deliverable_until(self)
            }
            fn max_poll_interval(&self) -> Duration {
                <$ty>::max_poll_interval(self)
            }
            fn assignment(&self) -> &Assignment {
                <$ty>::assignment(self)
            }
            fn is_leader(&self) -> bool {
                <$ty>::is_leader(self)
            }
            fn stats(&self) -> MemberStats {
                <$ty>::stats(self)
            }
            fn watched_topics(&self) -> Vec<String> {
                <$ty>::watched_topics(self)
            }
            fn poll_request(&mut self) -> Option<Outbound> {
                <$ty>::poll_request(self)
            }
            fn poll_event(&mut self) -> Option<GroupEvent> {
                <$ty>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$ty>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$ty>::handle_timeout(self, now)
            }
            fn handle_poll(&mut self, now: Instant) {
                <$ty>::handle_poll(self, now)
            }
            fn set_topics(&mut self, now: Instant, topics: Vec<String>) {
                <$ty>::set_topics(self, now, topics)
            }
            fn handle_partition_counts(&mut self, now: Instant, counts: &BTreeMap<String, u32>) {
                <$ty>::handle_partition_counts(self, now, counts)
            }
            fn handle_revoked(&mut self, now: Instant, token: RevokeToken) {
                <$ty>::handle_revoked(self, now, token)
            }
            fn request_rejoin(&mut self, reason: &str) {
                <$ty>::request_rejoin(self, reason)
            }
            fn commit(&mut self, now: Instant, offsets: Vec<CommitOffset>) -> CommitId {
                <$ty>::commit(self, now, offsets)
            }
            fn leave(&mut self, now: Instant) {
                <$ty>::leave(self, now)
            }
            fn handle_response(
                &mut self,
                now: Instant,
                id: RequestId,
                result: Result<Response, Error>,
            ) {
                <$ty>::handle_response(self, now, id, result)
            }
        }
    };
}
pub(crate) use group_member;

group_member!(Member);
