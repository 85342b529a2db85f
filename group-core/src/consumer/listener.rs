//! A rebalance listener with the Java client's semantics (`ConsumerRebalanceListener`): the
//! consumer calls it at the points of a rebalance where Java's `poll` would, and waits for it.
//! The [`ConsumerEvent`](super::ConsumerEvent) channel stays for those who only observe.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Inner, Status, group};
use crate::TopicPartition;
use crate::error::Error;
use crate::member::{Assignment, CommitOffset};

/// Called around rebalances, each call awaited before the consumer goes on.
///
/// - [`on_partitions_revoked`](Self::on_partitions_revoked) runs before revoked partitions are
///   given up: no new records of them are delivered from then on, records already delivered
///   can still be finished and acknowledged, and [`ListenerContext::commit`] commits them while
///   the partitions are still owned. Bounded by half the rebalance timeout (the other half is
///   left for the rejoin); past it the consumer reports an [`Error::Timeout`] and goes on.
///   After it returns, the consumer's own revocation commit (auto-commit or `commit_on_revoke`)
///   runs as before.
/// - [`on_partitions_assigned`](Self::on_partitions_assigned) runs when partitions are added,
///   before their starting offsets are looked up: a [`ListenerContext::seek`] there decides
///   where a partition starts.
/// - [`on_partitions_lost`](Self::on_partitions_lost) runs when partitions were lost (the
///   session expired, the member was fenced): another member may own them already, so no
///   commit is possible. Bounded like revocation.
///
/// On `close`, revoked (or lost, when the final commit failed) runs within what is left of the
/// close's bound.
#[async_trait]
pub trait RebalanceListener: Send + Sync + 'static {
    /// Partitions about to be given up.
    async fn on_partitions_revoked(&self, _consumer: &ListenerContext, _revoked: &Assignment) {}

    /// Partitions just added to the assignment.
    async fn on_partitions_assigned(&self, _consumer: &ListenerContext, _added: &Assignment) {}

    /// Partitions already lost.
    async fn on_partitions_lost(&self, _consumer: &ListenerContext, _lost: &Assignment) {}
}

/// What a [`RebalanceListener`] can do with the consumer while it runs.
#[derive(Clone)]
pub struct ListenerContext {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for ListenerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerContext")
            .field("group", &self.inner.group_id)
            .finish_non_exhaustive()
    }
}

impl ListenerContext {
    /// Commits what is done of every owned partition (including those being revoked).
    pub async fn commit(&self) -> Result<Vec<CommitOffset>, Error> {
        group::commit_done(&self.inner, None).await
    }

    /// See [`Consumer::seek`](super::Consumer::seek).
    pub fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<(), Error> {
        seek(&self.inner, tp, offset)
    }

    /// See [`Consumer::position`](super::Consumer::position).
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        position(&self.inner, tp)
    }

    /// Records delivered and not yet acknowledged, per owned partition.
    pub fn outstanding(&self) -> BTreeMap<TopicPartition, usize> {
        let st = self.inner.lock();
        st.partitions
            .iter()
            .map(|(tp, p)| (tp.clone(), p.tracker.outstanding()))
            .collect()
    }
}

pub(super) fn seek(inner: &Inner, tp: &TopicPartition, offset: i64) -> Result<(), Error> {
    if offset < 0 {
        return Err(Error::Config(vec![format!(
            "seek {tp} to {offset}: offsets are not negative"
        )]));
    }
    {
        let mut st = inner.lock();
        let p = st.partitions.get_mut(tp).ok_or_else(|| {
            Error::Config(vec![format!("seek: {tp} is not assigned to this consumer")])
        })?;
        p.tracker.seek(offset);
        // The epoch of the record before `offset` is unknown (Java's `seek(tp, offset)` has
        // none either): the position is not validated until records are fetched from it.
        p.epochs.reset(offset, None);
        // A seek decides the position, so the committed offset or reset policy no longer
        // does (a lookup still in flight finds the partition started and leaves it).
        p.status = Status::Fetching;
    }
    inner.fetchable.notify_waiters();
    Ok(())
}

pub(super) fn position(inner: &Inner, tp: &TopicPartition) -> Option<i64> {
    let st = inner.lock();
    let p = st.partitions.get(tp)?;
    matches!(p.status, Status::Fetching).then(|| p.tracker.position())
}
