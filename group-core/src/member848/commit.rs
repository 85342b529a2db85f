//! Commits of a KIP-848 member: with its member epoch, only for owned partitions, not while
//! joining, fenced or leaving; STALE_MEMBER_EPOCH retried with the latest epoch.

use std::time::Instant;

use cohort_protocol::ApiKey;
use cohort_protocol::messages::OffsetCommitResponse;

use super::errors::{CommitAction, commit_action};
use super::state::State;
use super::{Member848, Sent};
use crate::error::Error;
use crate::member::commit::{PendingCommit, commit_error, commit_request, owned_only};
use crate::member::{CommitId, CommitOffset, GroupEvent, OutboundRequest};

impl Member848 {
    pub(super) fn commit_result(&mut self, id: CommitId, result: Result<Vec<CommitOffset>, Error>) {
        self.events.push_back(GroupEvent::Committed { id, result });
    }

    pub(super) fn try_commit(&mut self, now: Instant, c: PendingCommit) {
        // Commits go out with an epoch, for partitions still owned: in the group, and during a
        // revocation before the partitions are released (their last commit).
        let why_not = match self.state {
            State::Stable | State::Revoking { .. } if self.epoch > 0 => None,
            State::Leaving { .. } | State::Left | State::Failed => {
                Some("the member is leaving or has left the group")
            }
            State::Fenced { .. } => Some("the member was fenced; its partitions are lost"),
            _ => Some("the member is not in the group"),
        };
        if let Some(why) = why_not {
            self.commit_result(c.id, Err(Error::CommitFailed(why.into())));
            return;
        }
        let (mine, not_mine) = owned_only(c.offsets, &self.owned);
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
        if self.coordinator.is_none() {
            self.commits.wait(now, c);
            return;
        }
        let req = commit_request(&self.cfg, self.epoch, &self.member_id, &c.offsets);
        self.send(
            now,
            OutboundRequest::OffsetCommit(req),
            self.cfg.request_timeout,
            Some(c),
        );
    }

    pub(super) fn requeue_commit(&mut self, now: Instant, c: PendingCommit, err: Error) {
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
        let err = Error::Broker {
            api: ApiKey::OffsetCommit,
            code,
            context: format!("group {} at epoch {}", self.cfg.group_id, sent.epoch),
        };
        match commit_action(code) {
            CommitAction::Rediscover => {
                self.coordinator = None;
                self.requeue_commit(now, c, err);
            }
            // A retry goes out with the epoch the member has then (STALE_MEMBER_EPOCH).
            CommitAction::Retry => self.requeue_commit(now, c, err),
            CommitAction::Fail => self.commit_result(c.id, Err(err)),
        }
    }

    /// Commits offsets for owned partitions with the member epoch. The result arrives as
    /// [`GroupEvent::Committed`].
    pub fn commit(&mut self, now: Instant, offsets: Vec<CommitOffset>) -> CommitId {
        let c = self.commits.start(offsets);
        let id = c.id;
        self.try_commit(now, c);
        self.step(now);
        id
    }
}
