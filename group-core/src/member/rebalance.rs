//! Joining, syncing, heartbeats, revocation and leaving: the member's transitions between
//! phases, driven by responses and by the errors of `errors.rs`.
//!
//! The reference is the Java client's `AbstractCoordinator` and `ConsumerCoordinator`; KIP-429
//! for the cooperative protocol, KIP-345 for static members, KIP-394 for the member id.

use std::time::{Duration, Instant};

use cohort_balancers::Balancer;
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolSubscription, PROTOCOL_TYPE, decode_assignment, encode_subscription,
};
use cohort_protocol::messages::{
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    SyncGroupRequest, SyncGroupResponse, join_group_request, leave_group_request,
    sync_group_request,
};
use cohort_protocol::{ApiKey, ErrorCode};

use super::errors::{GroupApi, Transition, transition};
use super::leader::subscription;
use super::state::{AfterLeave, JoinedGeneration, PendingRevoke, Session, State};
use super::types::{Assignment, GroupEvent, OutboundRequest};
use super::{Member, Sent, count, minus};
use crate::error::Error;

impl Member {
    /// The member cannot continue: everything it owned is lost, nothing more is sent.
    pub(super) fn fail(&mut self, err: Error) {
        tracing::error!(group = %self.cfg.group_id, error = %err, "member failed");
        self.state = State::Failed;
        self.want_join = false;
        let lost = std::mem::take(&mut self.membership.owned);
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

    /// The member is no longer part of its generation: everything it owned is lost and it
    /// joins again (with a new member id when `reset_member`).
    pub(super) fn drop_out(&mut self, reset_member: bool, reason: &str) {
        if reset_member {
            self.membership.reset_member_id();
        } else {
            self.membership.reset_generation();
        }
        self.lose_all();
        if matches!(self.state, State::Leaving { .. }) {
            // Already leaving: an error for a request sent before the LeaveGroup (a heartbeat
            // the coordinator answered after removing the member) only confirms that it let go.
            // The LeaveGroup's answer, or its failure, still ends the leave; moving to Unjoined
            // here would make that answer look stray, and `close` would wait forever.
            return;
        }
        self.state = State::unjoined();
        self.rejoin_reason = Some(reason.to_owned());
    }

    /// Starts a rejoin from a stable state.
    pub(super) fn begin_rejoin(&mut self, now: Instant, reason: &str) {
        tracing::info!(group = %self.cfg.group_id, reason, "rebalancing");
        self.events.push_back(GroupEvent::Rebalancing {
            reason: reason.to_owned(),
        });
        self.rebalance_started.get_or_insert(now);
        self.trace_rebalance(now, reason);
        if !self.membership.joined() {
            // The generation is gone: whatever we owned is lost, not revoked.
            self.lose_all();
            self.state = State::unjoined();
            return;
        }
        let session = match &self.state {
            State::Stable { session, .. } => *session,
            _ => return,
        };
        if self.cooperative || self.membership.owned.is_empty() {
            // KIP-429: keep everything and rejoin; the new plan says what to give up.
            self.state = State::unjoined();
        } else {
            // Eager: give everything up first; commits are still possible in this generation.
            let token = self.token();
            self.events.push_back(GroupEvent::Revoked {
                generation: self.membership.generation_id(),
                partitions: self.membership.owned.clone(),
                token,
            });
            self.state = State::Revoking {
                token,
                deadline: now + self.cfg.rebalance_timeout,
                session,
            };
        }
    }

    /// Everything owned is lost: the application must stop, nothing may be committed.
    pub(super) fn lose_all(&mut self) {
        if let State::Stable { pending_revoke, .. } = &mut self.state {
            *pending_revoke = None;
        }
        if self.membership.owned.is_empty() {
            return;
        }
        let partitions = std::mem::take(&mut self.membership.owned);
        let token = self.token();
        self.events
            .push_back(GroupEvent::Lost { partitions, token });
    }

    /// The application gave up the partitions a cooperative plan took away (or ran out of
    /// time): they are no longer owned, and the member rejoins at once so the next round can
    /// hand them to their new owners (KIP-429).
    pub(super) fn finish_cooperative_revoke(&mut self, now: Instant) {
        let State::Stable {
            pending_revoke,
            rejoin_not_before,
            ..
        } = &mut self.state
        else {
            return;
        };
        let Some(revoked) = pending_revoke.take() else {
            return;
        };
        if !self.cfg.cooperative_rejoin_delay.is_zero() {
            *rejoin_not_before = Some(now + self.cfg.cooperative_rejoin_delay);
        }
        self.membership.owned = minus(&self.membership.owned, &revoked.partitions);
        self.request_rejoin("revoked partitions must be reassigned");
    }

    /// The application gave up everything (eager), or ran out of time: rejoin.
    pub(super) fn finish_revoking(&mut self) {
        self.membership.owned.clear();
        self.state = State::unjoined();
    }

    fn subscription(&self, balancer: &dyn Balancer) -> ConsumerProtocolSubscription {
        subscription(
            balancer,
            &self.topics,
            self.cooperative.then_some(&self.membership.owned),
            self.membership.owned_generation,
            self.cfg.rack.as_deref(),
        )
    }

    /// Opens the `rebalance` span unless one is open (a rebalance's first reason names it).
    fn trace_rebalance(&mut self, now: Instant, reason: &str) {
        if self.rebalance_trace.is_none() {
            self.rebalance_trace = Some(super::trace::RebalanceTrace::start(
                &self.cfg.group_id,
                "classic",
                reason,
                now,
            ));
        }
    }

    pub(super) fn send_join(&mut self, now: Instant) {
        let reason = self
            .rejoin_reason
            .take()
            .unwrap_or_else(|| "joining".into());
        self.rebalance_started.get_or_insert(now);
        self.trace_rebalance(now, &reason);
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
            member_id: self.membership.member_id.clone().into(),
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
        self.prefetch_metadata(now);
    }

    pub(super) fn send_sync(
        &mut self,
        now: Instant,
        assignments: Vec<sync_group_request::SyncGroupRequestAssignment>,
        protocol: &str,
    ) {
        let req = SyncGroupRequest {
            group_id: self.cfg.group_id.clone().into(),
            generation_id: self.membership.generation_id(),
            member_id: self.membership.member_id.clone().into(),
            group_instance_id: self.cfg.group_instance_id.clone().map(Into::into),
            protocol_type: Some(PROTOCOL_TYPE.into()),
            protocol_name: Some(protocol.to_owned().into()),
            assignments,
            ..Default::default()
        };
        self.state = State::Syncing;
        // Java: SyncGroup may wait for the leader up to the session timeout (plus the usual
        // request allowance).
        let deadline = self.cfg.session_timeout.max(self.cfg.request_timeout);
        self.send(now, OutboundRequest::SyncGroup(req), deadline, None);
    }

    pub(super) fn send_leave(&mut self, now: Instant, then: AfterLeave, reason: &str) {
        let member_id = self.membership.member_id.clone();
        let req = LeaveGroupRequest {
            group_id: self.cfg.group_id.clone().into(),
            member_id: member_id.clone().into(),
            members: vec![leave_group_request::MemberIdentity {
                member_id: member_id.into(),
                group_instance_id: self.cfg.group_instance_id.clone().map(Into::into),
                reason: Some(reason.to_owned().into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        self.state = State::Leaving { then };
        self.send(
            now,
            OutboundRequest::LeaveGroup(req),
            self.cfg.request_timeout,
            None,
        );
    }

    /// A join attempt failed: back to Unjoined, the next one after a backoff.
    fn retry_join(&mut self, now: Instant, reason: String) {
        self.state = State::Unjoined {
            retry_at: Some(now + self.join_backoff.next_delay()),
        };
        self.rejoin_reason = Some(reason);
    }

    pub(super) fn on_request_failed(&mut self, now: Instant, sent: Sent, err: Error) {
        tracing::debug!(group = %self.cfg.group_id, api = ?sent.api, error = %err, "request failed");
        // Credentials the broker refused stay refused: the member stops (Java's poll throws
        // AuthenticationException) instead of retrying them for ever.
        if matches!(err, Error::Authentication { .. }) {
            self.fail(err);
            return;
        }
        match sent.api {
            ApiKey::FindCoordinator => {
                self.coordinator.retry_at = Some(now + self.coordinator.backoff.next_delay());
                if self.coordinator.backoff.attempts().is_multiple_of(10) {
                    self.events.push_back(GroupEvent::Error(err));
                }
            }
            ApiKey::Metadata => {
                // Leader could not fetch metadata: back to joining after a backoff.
                if matches!(self.state, State::Assigning { .. }) {
                    self.retry_join(now, format!("leader metadata failed: {err}"));
                }
            }
            ApiKey::JoinGroup | ApiKey::SyncGroup => {
                // Transport failure or timeout: the coordinator may have moved.
                self.mark_coordinator_unknown(&err.to_string());
                if self.state.is_rebalancing() {
                    self.retry_join(now, format!("{:?} failed: {err}", sent.api));
                }
            }
            ApiKey::Heartbeat => self.mark_coordinator_unknown(&err.to_string()),
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
        self.apply_transition(now, api, code, t, sent, response_member_id);
    }

    pub(super) fn apply_transition(
        &mut self,
        now: Instant,
        api: GroupApi,
        code: ErrorCode,
        t: Transition,
        sent: &Sent,
        response_member_id: Option<&str>,
    ) {
        let stale = self.stale(sent);
        tracing::info!(group = %self.cfg.group_id, ?api, ?code, ?t, stale, "group error");
        match t {
            Transition::AdoptMemberIdAndRejoin => {
                if let Some(id) = response_member_id.filter(|id| !id.is_empty()) {
                    self.membership.member_id = id.to_owned();
                }
                self.state = State::unjoined();
                self.rejoin_reason =
                    Some("rejoining with the member id the coordinator assigned (KIP-394)".into());
            }
            Transition::ResetMemberAndRejoin | Transition::ResetGenerationAndRejoin => {
                if stale && !matches!(api, GroupApi::JoinGroup) {
                    // Java: an error for an older generation is ignored.
                    return;
                }
                self.drop_out(t == Transition::ResetMemberAndRejoin, &format!("{code}"));
            }
            Transition::Rejoin => {
                if self.state.is_rebalancing() {
                    self.state = State::unjoined();
                    self.rejoin_reason = Some(format!("{api:?}: {code}"));
                } else {
                    self.request_rejoin(&format!("{api:?}: {code}"));
                }
            }
            Transition::RejoinUnlessRebalancing => {
                if matches!(self.state, State::Stable { .. }) && !stale {
                    self.request_rejoin("the group is rebalancing");
                }
            }
            Transition::Rediscover => {
                self.mark_coordinator_unknown(&format!("{code}"));
                if self.state.is_rebalancing() {
                    self.state = State::unjoined();
                    self.rejoin_reason = Some(format!("coordinator moved ({code})"));
                }
            }
            Transition::RetryWithBackoff => {
                if self.state.is_rebalancing() {
                    self.retry_join(now, format!("retrying after {code}"));
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

    pub(super) fn on_join(&mut self, now: Instant, sent: &Sent, r: JoinGroupResponse) {
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
            self.retry_join(now, "invalid JoinGroup response".into());
            return;
        }
        self.join_backoff.reset();
        let leader = r.leader == r.member_id;
        let protocol = r
            .protocol_name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        self.membership.member_id = r.member_id.to_string();
        self.membership.generation = Some(JoinedGeneration {
            id: r.generation_id,
            leader,
            protocol: protocol.clone(),
        });
        tracing::info!(
            group = %self.cfg.group_id,
            generation = r.generation_id,
            member = %r.member_id,
            leader,
            protocol = ?r.protocol_name,
            "joined"
        );
        if let Some(t) = &mut self.rebalance_trace {
            t.joined(now, r.generation_id, leader);
        }
        if leader && !r.skip_assignment {
            self.start_assigning(now, r);
        } else {
            self.send_sync(now, Vec::new(), &protocol);
        }
    }

    pub(super) fn on_sync(&mut self, now: Instant, sent: &Sent, r: SyncGroupResponse) {
        if !matches!(self.state, State::Syncing) {
            return;
        }
        if let Err(code) = ErrorCode::check(r.error_code) {
            self.apply(now, GroupApi::SyncGroup, code, sent, None);
            return;
        }
        let Some(generation) = self.membership.generation.clone() else {
            return;
        };
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
                self.retry_join(now, "unreadable assignment".into());
                return;
            }
        };
        if let Some(b) = self
            .balancers
            .iter_mut()
            .find(|b| b.protocol_name() == generation.protocol)
        {
            b.on_assignment(&assignment, generation.id);
        }
        self.membership.owned_generation = generation.id;
        let mut new = Assignment::new();
        for tp in &assignment.assigned_partitions {
            new.entry(tp.topic.to_string())
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        let added = minus(&new, &self.membership.owned);
        let revoked = minus(&self.membership.owned, &new);
        self.last_poll = now;
        self.stats.rebalances += 1;
        if let Some(start) = self.rebalance_started.take() {
            let d = now.saturating_duration_since(start);
            self.stats.last_rebalance = d;
            self.stats.rebalancing_total += d;
        }
        if let Some(t) = self.rebalance_trace.take() {
            t.finish(now, count(&new), count(&added), count(&revoked));
        }
        let pending_revoke = if revoked.is_empty() {
            self.membership.owned = new.clone();
            None
        } else {
            // Cooperative: what the plan takes away is revoked now; the member keeps consuming
            // the rest and rejoins once the application acknowledges. Until then the revoked
            // partitions stay owned (their final commit is still allowed in this generation).
            let token = self.token();
            self.events.push_back(GroupEvent::Revoked {
                generation: generation.id,
                partitions: revoked.clone(),
                token,
            });
            let mut still = new.clone();
            for (t, ps) in &revoked {
                still.entry(t.clone()).or_default().extend(ps);
            }
            self.membership.owned = still;
            Some(PendingRevoke {
                token,
                deadline: now + self.cfg.rebalance_timeout,
                partitions: revoked,
            })
        };
        self.state = State::Stable {
            session: Session::starting(now, self.cfg.heartbeat_interval, self.cooperative),
            pending_revoke,
            rejoin_not_before: None,
        };
        tracing::info!(
            group = %self.cfg.group_id,
            generation = generation.id,
            partitions = count(&new),
            added = count(&added),
            "assigned"
        );
        self.events.push_back(GroupEvent::Assigned {
            generation: generation.id,
            member_id: self.membership.member_id.clone(),
            leader: generation.leader,
            protocol: generation.protocol,
            assignment: new,
            added,
        });
    }

    pub(super) fn on_heartbeat(&mut self, now: Instant, sent: &Sent, r: HeartbeatResponse) {
        match ErrorCode::check(r.error_code) {
            Ok(()) => {
                let stale = self.stale(sent);
                if let Some(session) = self.state.session_mut()
                    && !stale
                {
                    // From when the heartbeat was sent, not when its answer came: the
                    // coordinator restarted the session between the two, so a session counted
                    // from here ends first, however slow the answer (`deliverable_until`).
                    session.last_ok = session.last_ok.max(sent.at);
                }
            }
            Err(code) => self.apply(now, GroupApi::Heartbeat, code, sent, None),
        }
    }

    pub(super) fn on_leave(&mut self, r: &LeaveGroupResponse) {
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
        self.membership.reset_member_id();
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
            AfterLeave::Unjoined => self.state = State::unjoined(),
        }
    }
}
