//! The commit pipeline: which commits may go out, their retries, and what their answers mean.
//!
//! A commit goes out only with a valid generation, only for partitions the member owns, and
//! never while a JoinGroup or SyncGroup is in flight: a commit racing a rebalance can rewind the
//! new owner's offsets (franz-go v1.13.2; Java's `ConsumerCoordinator` refuses to commit while a
//! rebalance is in progress, `generationIfStable`). Every commit taken on is answered exactly
//! once with [`GroupEvent::Committed`](super::GroupEvent::Committed).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use cohort_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, offset_commit_request};
use cohort_protocol::{ApiKey, ErrorCode, StrBytes};

use super::errors::{GroupApi, Transition, transition};
use super::state::State;
use super::types::{CommitId, CommitOffset, GroupEvent, OutboundRequest};
use super::{Member, Sent};
use crate::backoff::{Backoff, Jitter};
use crate::error::Error;

/// A failed commit is retried this many times, about one request timeout's worth of backoff;
/// past that the caller hears about it and commits again later.
const COMMIT_ATTEMPTS: u32 = 5;

/// A commit the member has taken on and not answered yet: waiting for a coordinator or a retry
/// time, or in flight.
#[derive(Debug, Clone)]
pub(super) struct PendingCommit {
    pub(super) id: CommitId,
    pub(super) offsets: Vec<CommitOffset>,
    /// Failed attempts so far (the retry backoff grows with them).
    pub(super) attempts: u32,
}

/// Commits waiting for a coordinator or a retry time.
#[derive(Debug)]
pub(super) struct Commits {
    /// Each with the instant it may go out again.
    queued: VecDeque<(Instant, PendingCommit)>,
    next_id: CommitId,
    /// Seeds the jitter of each commit's retry backoff.
    jitter: Jitter,
}

impl Commits {
    pub(super) fn new(jitter: Jitter) -> Self {
        Self {
            queued: VecDeque::new(),
            next_id: 1,
            jitter,
        }
    }

    /// When the first queued commit may go out.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.queued.front().map(|(not_before, _)| *not_before)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

impl Member {
    /// Commits offsets for owned partitions of the current generation. The result arrives as
    /// [`GroupEvent::Committed`].
    pub fn commit(&mut self, now: Instant, offsets: Vec<CommitOffset>) -> CommitId {
        let id = self.commits.next_id;
        self.commits.next_id += 1;
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

    /// Sends the queued commits whose time has come, now that a coordinator is known.
    pub(super) fn send_due_commits(&mut self, now: Instant) {
        while let Some((not_before, _)) = self.commits.queued.front() {
            if self.coordinator.node.is_none() || now < *not_before {
                break;
            }
            let Some((_, c)) = self.commits.queued.pop_front() else {
                break;
            };
            self.try_commit(now, c);
        }
    }

    pub(super) fn commit_result(&mut self, id: CommitId, result: Result<Vec<CommitOffset>, Error>) {
        self.events.push_back(GroupEvent::Committed { id, result });
    }

    /// Every commit waiting for a coordinator or a retry gets `err`: the member will not send
    /// it (it failed, or left the group).
    pub(super) fn answer_queued_commits(&mut self, err: &Error) {
        for (_, c) in std::mem::take(&mut self.commits.queued) {
            self.commit_result(c.id, Err(err.clone()));
        }
    }

    fn try_commit(&mut self, now: Instant, c: PendingCommit) {
        if self.state.is_leaving_or_over() {
            self.commit_result(
                c.id,
                Err(Error::CommitFailed(
                    "the member is leaving or has left the group".into(),
                )),
            );
            return;
        }
        if !self.membership.joined()
            || self.state.is_rebalancing()
            || matches!(self.state, State::Unjoined { .. })
        {
            let why = if self.membership.joined() {
                "the group is rebalancing"
            } else {
                "the member is not in a generation"
            };
            self.commit_result(c.id, Err(Error::CommitFailed(why.into())));
            return;
        }
        // Only partitions this member still owns: a commit after losing ownership can rewind
        // the new owner (the coordinator checks the generation, not who owns what).
        let owned = &self.membership.owned;
        let (mine, not_mine): (Vec<CommitOffset>, Vec<CommitOffset>) =
            c.offsets.into_iter().partition(|o| {
                owned
                    .get(&o.topic)
                    .is_some_and(|ps| ps.contains(&o.partition))
            });
        if !not_mine.is_empty() {
            tracing::debug!(group = %self.cfg.group_id, dropped = not_mine.len(), "commit for partitions not owned dropped");
        }
        if mine.is_empty() {
            let result = if not_mine.is_empty() {
                Ok(Vec::new())
            } else {
                Err(Error::CommitFailed(
                    "none of the partitions is owned by this member".into(),
                ))
            };
            self.commit_result(c.id, result);
            return;
        }
        let c = PendingCommit { offsets: mine, ..c };
        if self.coordinator.node.is_none() {
            self.commits.queued.push_back((now, c));
            return;
        }
        let request = self.commit_request(&c.offsets);
        self.send(
            now,
            OutboundRequest::OffsetCommit(request),
            self.cfg.request_timeout,
            Some(c),
        );
    }

    fn commit_request(&self, offsets: &[CommitOffset]) -> OffsetCommitRequest {
        let mut topics: BTreeMap<String, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for o in offsets {
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
        OffsetCommitRequest {
            group_id: self.cfg.group_id.clone().into(),
            generation_id_or_member_epoch: self.membership.generation_id(),
            member_id: self.membership.member_id.clone().into(),
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
        }
    }

    pub(super) fn requeue_commit(&mut self, now: Instant, c: PendingCommit, err: Error) {
        // A member that is leaving or gone does not retry: its generation is over (Java fails
        // commits once the consumer is closing).
        if c.attempts >= COMMIT_ATTEMPTS || self.state.is_leaving_or_over() {
            self.commit_result(c.id, Err(err));
            return;
        }
        let mut b = Backoff::new(
            self.cfg.retry_backoff,
            self.cfg.retry_backoff_max,
            Jitter::seeded(self.commits.jitter.next_u64()),
        );
        for _ in 0..c.attempts {
            b.next_delay();
        }
        let not_before = now + b.next_delay();
        self.commits.queued.push_back((
            not_before,
            PendingCommit {
                attempts: c.attempts + 1,
                ..c
            },
        ));
    }

    pub(super) fn on_commit(&mut self, now: Instant, sent: &Sent, r: OffsetCommitResponse) {
        let Some(c) = sent.commit.clone() else {
            return;
        };
        // The worst partition error decides.
        let worst = r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find_map(|p| ErrorCode::check(p.error_code).err());
        let Some(code) = worst else {
            self.commit_result(c.id, Ok(c.offsets));
            return;
        };
        let stale = self.stale(sent);
        let err = Error::Broker {
            api: ApiKey::OffsetCommit,
            code,
            context: format!("group {}", self.cfg.group_id),
        };
        match transition(GroupApi::OffsetCommit, code) {
            Transition::Rediscover => {
                self.mark_coordinator_unknown(&code.to_string());
                self.requeue_commit(now, c, err);
            }
            Transition::RetryWithBackoff => self.requeue_commit(now, c, err),
            t @ (Transition::ResetMemberAndRejoin | Transition::ResetGenerationAndRejoin) => {
                self.commit_result(
                    c.id,
                    Err(Error::CommitFailed(format!(
                        "{code}: the member is no longer in this generation"
                    ))),
                );
                // Only a failure in the current, stable generation means the membership is
                // gone; during a rebalance (one is pending, or partitions are being revoked) it
                // only means the commit was late, and the JoinGroup that follows will tell
                // whether the member is still known (librdkafka #4908).
                let stable_and_settled = matches!(
                    self.state,
                    State::Stable {
                        pending_revoke: None,
                        ..
                    }
                ) && self.rejoin_reason.is_none();
                if !stale && stable_and_settled {
                    self.apply_transition(now, GroupApi::OffsetCommit, code, t, sent, None);
                }
            }
            Transition::Rejoin => {
                self.commit_result(
                    c.id,
                    Err(Error::CommitFailed(format!(
                        "{code}: commit again after the rebalance"
                    ))),
                );
                if !stale {
                    self.request_rejoin("a commit found the group rebalancing");
                }
            }
            t @ Transition::Fenced => {
                self.commit_result(c.id, Err(Error::CommitFailed(code.to_string())));
                if !stale {
                    self.apply_transition(now, GroupApi::OffsetCommit, code, t, sent, None);
                }
            }
            Transition::FailCommit
            | Transition::Fatal
            | Transition::RejoinUnlessRebalancing
            | Transition::AdoptMemberIdAndRejoin => self.commit_result(c.id, Err(err)),
        }
    }
}
