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
use cohort_protocol::{ApiKey, ErrorCode};

use super::errors::{GroupApi, Transition, transition};
use super::state::State;
use super::types::{CommitId, CommitOffset, GroupEvent, OutboundRequest};
use super::{Member, Sent};
use crate::backoff::{Backoff, Jitter};
use crate::error::Error;

/// A failed commit is retried this many times, about one request timeout's worth of backoff;
/// past that the caller hears about it and commits again later.
pub(crate) const COMMIT_ATTEMPTS: u32 = 5;

/// A commit the member has taken on and not answered yet: waiting for a coordinator or a retry
/// time, or in flight.
#[derive(Debug, Clone)]
pub(crate) struct PendingCommit {
    pub(crate) id: CommitId,
    pub(crate) offsets: Vec<CommitOffset>,
    /// Failed attempts so far (the retry backoff grows with them).
    pub(crate) attempts: u32,
}

/// Commits waiting for a coordinator or a retry time (both members keep one).
#[derive(Debug)]
pub(crate) struct Commits {
    /// Each with the instant it may go out again.
    queued: VecDeque<(Instant, PendingCommit)>,
    next_id: CommitId,
    /// Seeds the jitter of each commit's retry backoff.
    jitter: Jitter,
}

impl Commits {
    pub(crate) fn new(jitter: Jitter) -> Self {
        Self {
            queued: VecDeque::new(),
            next_id: 1,
            jitter,
        }
    }

    /// A new commit taken on, with its id.
    pub(crate) fn start(&mut self, offsets: Vec<CommitOffset>) -> PendingCommit {
        let id = self.next_id;
        self.next_id += 1;
        PendingCommit {
            id,
            offsets,
            attempts: 0,
        }
    }

    /// When the first queued commit may go out.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.queued.front().map(|(not_before, _)| *not_before)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Waits for a coordinator: goes out as soon as there is one.
    pub(crate) fn wait(&mut self, now: Instant, c: PendingCommit) {
        self.queued.push_back((now, c));
    }

    /// The first queued commit, when its time has come.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<PendingCommit> {
        if self.queued.front().is_some_and(|(t, _)| now >= *t) {
            self.queued.pop_front().map(|(_, c)| c)
        } else {
            None
        }
    }

    /// Every queued commit, for answering them when the member stops.
    pub(crate) fn drain(&mut self) -> Vec<PendingCommit> {
        std::mem::take(&mut self.queued)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// Queues `c` for another attempt after a growing, jittered backoff; gives it back when it
    /// has had its attempts.
    pub(crate) fn retry(
        &mut self,
        now: Instant,
        c: PendingCommit,
        cfg: &super::MemberConfig,
    ) -> Result<(), PendingCommit> {
        if c.attempts >= COMMIT_ATTEMPTS {
            return Err(c);
        }
        let mut b = Backoff::new(
            cfg.retry_backoff,
            cfg.retry_backoff_max,
            Jitter::seeded(self.jitter.next_u64()),
        );
        for _ in 0..c.attempts {
            b.next_delay();
        }
        let not_before = now + b.next_delay();
        self.queued.push_back((
            not_before,
            PendingCommit {
                attempts: c.attempts + 1,
                ..c
            },
        ));
        Ok(())
    }
}

/// Splits offsets into those of partitions the member owns and the rest: a commit after losing
/// ownership can rewind the new owner (the coordinator checks the generation or epoch, not who
/// owns what).
pub(crate) fn owned_only(
    offsets: Vec<CommitOffset>,
    owned: &super::Assignment,
) -> (Vec<CommitOffset>, Vec<CommitOffset>) {
    offsets.into_iter().partition(|o| {
        owned
            .get(&o.topic)
            .is_some_and(|ps| ps.contains(&o.partition))
    })
}

/// The OffsetCommit request for `offsets`, as member `member_id` of generation (classic) or
/// member epoch (KIP-848) `generation_or_epoch`.
pub(crate) fn commit_request(
    cfg: &super::MemberConfig,
    generation_or_epoch: i32,
    member_id: &str,
    offsets: &[CommitOffset],
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<String, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
        BTreeMap::new();
    for o in offsets {
        topics.entry(o.topic.clone()).or_default().push(
            offset_commit_request::OffsetCommitRequestPartition {
                partition_index: o.partition,
                committed_offset: o.offset,
                committed_leader_epoch: o.leader_epoch.unwrap_or(-1),
                committed_metadata: Some(o.metadata.clone().into()),
                ..Default::default()
            },
        );
    }
    OffsetCommitRequest {
        group_id: cfg.group_id.clone().into(),
        generation_id_or_member_epoch: generation_or_epoch,
        member_id: member_id.to_owned().into(),
        group_instance_id: cfg.group_instance_id.clone().map(Into::into),
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

/// The error that decides an OffsetCommit answer: the first partition error, if any.
pub(crate) fn commit_error(r: &OffsetCommitResponse) -> Option<ErrorCode> {
    r.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .find_map(|p| ErrorCode::check(p.error_code).err())
}

impl Member {
    /// Commits offsets for owned partitions of the current generation. The result arrives as
    /// [`GroupEvent::Committed`].
    pub fn commit(&mut self, now: Instant, offsets: Vec<CommitOffset>) -> CommitId {
        let c = self.commits.start(offsets);
        let id = c.id;
        self.try_commit(now, c);
        self.step(now);
        id
    }

    /// Sends the queued commits whose time has come, now that a coordinator is known.
    pub(super) fn send_due_commits(&mut self, now: Instant) {
        while self.coordinator.node.is_some()
            && let Some(c) = self.commits.pop_due(now)
        {
            self.try_commit(now, c);
        }
    }

    pub(super) fn commit_result(&mut self, id: CommitId, result: Result<Vec<CommitOffset>, Error>) {
        self.events.push_back(GroupEvent::Committed { id, result });
    }

    /// Every commit waiting for a coordinator or a retry gets `err`: the member will not send
    /// it (it failed, or left the group).
    pub(super) fn answer_queued_commits(&mut self, err: &Error) {
        for c in self.commits.drain() {
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
        let (mine, not_mine) = owned_only(c.offsets, &self.membership.owned);
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
            self.commits.wait(now, c);
            return;
        }
        let request = commit_request(
            &self.cfg,
            self.membership.generation_id(),
            &self.membership.member_id,
            &c.offsets,
        );
        self.send(
            now,
            OutboundRequest::OffsetCommit(request),
            self.cfg.request_timeout,
            Some(c),
        );
    }

    pub(super) fn requeue_commit(&mut self, now: Instant, c: PendingCommit, err: Error) {
        // A member that is leaving or gone does not retry: its generation is over (Java fails
        // commits once the consumer is closing).
        if self.state.is_leaving_or_over() {
            self.commit_result(c.id, Err(err));
        } else if let Err(c) = self.commits.retry(now, c, &self.cfg) {
            self.commit_result(c.id, Err(err));
        }
    }

    pub(super) fn on_commit(&mut self, now: Instant, sent: &Sent, r: OffsetCommitResponse) {
        let Some(c) = sent.commit.clone() else {
            return;
        };
        let Some(code) = commit_error(&r) else {
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
