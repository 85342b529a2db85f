//! What the consumer does as the group changes: it starts fetching newly assigned partitions
//! where they resume, gives up revoked or lost ones (committing what is done only for revoked
//! ones), and commits done offsets on request, on a timer, and on the way out.

use super::tracker::{LeaderEpochs, Tracker};
use super::{ConsumerEvent, Inner, ListenerContext, PartitionState, Status, flatten};
use crate::TopicPartition;
use crate::error::Error;
use crate::member::{Assignment, CommitOffset, GroupEvent};
use crate::start::{GroupConfigRest, resolve_starts};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Commits the committable offsets of `only` (or every owned partition).
pub(super) async fn commit_done(
    inner: &Arc<Inner>,
    only: Option<&BTreeSet<TopicPartition>>,
) -> Result<Vec<CommitOffset>, Error> {
    match start_commit_done(inner, only)? {
        Some(started) => started.finish(inner).await,
        None => Ok(Vec::new()),
    }
}

/// A commit handed to the member, waiting for the coordinator's answer.
pub(super) struct StartedCommit {
    rx: tokio::sync::oneshot::Receiver<Result<Vec<CommitOffset>, Error>>,
    requested_at: std::time::Instant,
}

impl StartedCommit {
    /// Waits for the answer, records what was committed and reports it.
    pub(super) async fn finish(self, inner: &Inner) -> Result<Vec<CommitOffset>, Error> {
        let done = self.rx.await.map_err(|_| Error::Closed)??;
        inner
            .telemetry
            .commit_latency
            .record(self.requested_at.elapsed().as_secs_f64());
        {
            let mut st = inner.lock();
            for o in &done {
                if let Some(p) = st.partitions.get_mut(&o.topic_partition()) {
                    p.tracker.committed = Some(o.offset);
                }
            }
        }
        inner.event(ConsumerEvent::Committed {
            offsets: done.clone(),
            requested_at: self.requested_at,
        });
        Ok(done)
    }
}

/// Takes what is done now (of `only`, or of every owned partition) and hands it to the member
/// as one commit; `None` when nothing moved since the last commit. Each offset carries the
/// leader epoch of the record before it (KIP-320), when the fetcher saw it.
pub(super) fn start_commit_done(
    inner: &Inner,
    only: Option<&BTreeSet<TopicPartition>>,
) -> Result<Option<StartedCommit>, Error> {
    let offsets: Vec<CommitOffset> = {
        let st = inner.lock();
        st.partitions
            .iter()
            .filter(|(tp, p)| {
                only.is_none_or(|o| o.contains(*tp))
                    && matches!(p.status, Status::Fetching)
                    && p.tracker.needs_commit()
            })
            .map(|(tp, p)| {
                let offset = p.tracker.committable();
                let mut c = CommitOffset::new(&tp.topic, tp.partition, offset);
                c.leader_epoch = p.epochs.before(offset);
                c
            })
            .collect()
    };
    start_commit(inner, offsets)
}

/// Hands `offsets` to the member as one commit; `None` when there are none.
pub(super) fn start_commit(
    inner: &Inner,
    offsets: Vec<CommitOffset>,
) -> Result<Option<StartedCommit>, Error> {
    if offsets.is_empty() {
        return Ok(None);
    }
    let requested_at = tokio::time::Instant::now().into_std();
    let rx = inner.driver.start_commit(offsets)?;
    Ok(Some(StartedCommit { rx, requested_at }))
}

pub(super) async fn auto_commit(inner: Arc<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if inner.lock().closed {
            return;
        }
        // Commits only reach the coordinator in a stable generation; during a rebalance they
        // fail locally without a request (librdkafka 1.7: no timed auto-commit mid-rebalance).
        match commit_done(&inner, None).await {
            Ok(_) | Err(Error::CommitFailed(_)) => {}
            Err(e) => inner.event(ConsumerEvent::Error(e)),
        }
    }
}

/// A revocation waiting for acknowledgements (`State::draining`), counted while it lives.
struct Draining<'a>(&'a Inner);

impl<'a> Draining<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.lock().draining += 1;
        Self(inner)
    }
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.draining = st.draining.saturating_sub(1);
    }
}

/// Gives up partitions: stops fetching, drops buffers, waits (bounded) for records already
/// delivered to be acknowledged, commits what is done if asked, then forgets them.
pub(super) async fn give_up(
    inner: &Arc<Inner>,
    partitions: &Assignment,
    commit_allowed: bool,
    commit: bool,
    grace: Duration,
) {
    let tps: BTreeSet<TopicPartition> = flatten(partitions).into_iter().collect();
    {
        let mut st = inner.lock();
        for tp in &tps {
            if let Some(p) = st.partitions.get_mut(tp) {
                p.tracker.clear_buffer();
                p.paused = true;
            }
        }
    }
    if let Some(l) = &inner.listener {
        let ctx = ListenerContext {
            inner: Arc::clone(inner),
        };
        // Revoked partitions are still owned while the listener runs (it may commit them);
        // lost ones are not (Java's onPartitionsLost), so no commit follows either.
        let call = async {
            if commit_allowed {
                l.on_partitions_revoked(&ctx, partitions).await;
            } else {
                l.on_partitions_lost(&ctx, partitions).await;
            }
        };
        if tokio::time::timeout(grace, call).await.is_err() {
            inner.event(ConsumerEvent::Error(Error::ListenerTimeout {
                callback: if commit_allowed {
                    "on_partitions_revoked"
                } else {
                    "on_partitions_lost"
                },
                limit_ms: grace.as_millis() as u64,
            }));
        }
    }
    if commit {
        // Records delivered and not yet done get until `grace` to be done, and the commit
        // goes out as soon as the last is: woken by the acknowledgement itself, not by a
        // poll, since every member of an eager group waits for the slowest one's commit
        // before the group can rejoin.
        let deadline = tokio::time::Instant::now() + grace;
        let _draining = Draining::new(inner);
        loop {
            let acked = inner.acked.notified();
            tokio::pin!(acked);
            // Registered before the count is read, so an acknowledgement in between wakes it.
            acked.as_mut().enable();
            let outstanding: usize = {
                let st = inner.lock();
                tps.iter()
                    .filter_map(|tp| st.partitions.get(tp))
                    .map(|p| p.tracker.outstanding())
                    .sum()
            };
            if outstanding == 0 || tokio::time::timeout_at(deadline, acked).await.is_err() {
                break;
            }
        }
        if let Err(e) = commit_done(inner, Some(&tps)).await {
            inner.event(ConsumerEvent::Error(e));
        }
    }
    let mut st = inner.lock();
    for tp in &tps {
        if let Some(p) = st.partitions.remove(tp) {
            st.by_epoch.remove(&p.epoch);
        }
    }
}

pub(super) async fn group_loop(
    inner: Arc<Inner>,
    mut events: mpsc::UnboundedReceiver<GroupEvent>,
    rest: GroupConfigRest,
) {
    let commit_on_revoke = rest.auto_commit_interval.is_some() || rest.commit_on_revoke;
    // The application has this long to finish records it already received before the
    // revocation commit (half the rebalance timeout leaves the other half for the rejoin).
    let grace = rest.rebalance_timeout / 2;
    while let Some(ev) = events.recv().await {
        match ev {
            GroupEvent::Rebalancing { reason } => {
                inner.event(ConsumerEvent::Rebalancing { reason })
            }
            GroupEvent::Assigned {
                generation,
                member_id,
                leader,
                protocol,
                assignment,
                added,
            } => {
                let new: Vec<TopicPartition> = flatten(&added);
                {
                    let mut st = inner.lock();
                    st.generation = generation;
                    st.last_assigned = Some(tokio::time::Instant::now().into_std());
                    for tp in &new {
                        let epoch = st.next_epoch;
                        st.next_epoch += 1;
                        if let Some(old) = st.partitions.get(tp) {
                            let old = old.epoch;
                            st.by_epoch.remove(&old);
                        }
                        st.by_epoch.insert(epoch, tp.clone());
                        let paused = st.paused.contains(tp);
                        st.partitions.insert(
                            tp.clone(),
                            PartitionState {
                                epoch,
                                status: Status::Starting,
                                tracker: Tracker::new(0),
                                epochs: LeaderEpochs::default(),
                                validated: None,
                                lag_gauge: inner.telemetry.records_lag(&tp.topic, tp.partition),
                                high_watermark: -1,
                                paused,
                            },
                        );
                    }
                }
                if let Some(l) = &inner.listener {
                    let ctx = ListenerContext {
                        inner: Arc::clone(&inner),
                    };
                    l.on_partitions_assigned(&ctx, &added).await;
                }
                inner.event(ConsumerEvent::Assigned {
                    generation,
                    member_id,
                    leader,
                    protocol,
                    assignment,
                    added,
                });
                let inner2 = Arc::clone(&inner);
                let rest2 = rest.clone();
                tokio::spawn(async move { start_partitions(inner2, new, rest2).await });
            }
            GroupEvent::Revoked {
                generation,
                partitions,
                token,
            } => {
                give_up(&inner, &partitions, true, commit_on_revoke, grace).await;
                inner.event(ConsumerEvent::Revoked {
                    generation,
                    partitions,
                });
                inner.driver.revoked(token);
            }
            GroupEvent::Lost { partitions, token } => {
                // No commit follows; `grace` bounds only the listener's on_partitions_lost.
                give_up(&inner, &partitions, false, false, grace).await;
                inner.event(ConsumerEvent::Lost { partitions });
                inner.driver.revoked(token);
            }
            GroupEvent::Error(e) => inner.event(ConsumerEvent::Error(e)),
            GroupEvent::Fatal(e) => {
                inner.event(ConsumerEvent::Error(e.clone()));
                inner.lock().fatal = Some(e);
                inner.readable.notify_waiters();
            }
            GroupEvent::Left => {
                inner.lock().closed = true;
                inner.readable.notify_waiters();
            }
            GroupEvent::Committed { .. } => {}
        }
        let owned = inner.lock().partitions.len();
        inner.telemetry.assigned_partitions.set(owned as f64);
    }
}

pub(super) async fn start_partitions(
    inner: Arc<Inner>,
    partitions: Vec<TopicPartition>,
    rest: GroupConfigRest,
) {
    let mut backoff = crate::backoff::Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(2),
        crate::backoff::Jitter::from_process(),
    );
    loop {
        // Only partitions still assigned (a quick rebalance may have taken some away).
        let wanted: Vec<TopicPartition> = {
            let st = inner.lock();
            partitions
                .iter()
                .filter(|tp| {
                    st.partitions
                        .get(*tp)
                        .is_some_and(|p| matches!(p.status, Status::Starting))
                })
                .cloned()
                .collect()
        };
        if wanted.is_empty() {
            return;
        }
        match resolve_starts(
            &inner.cluster,
            &rest.group_id,
            rest.fencing(&inner.driver),
            &wanted,
            inner.offset_reset,
            inner.starting_offset.as_ref(),
            rest.rebalance_timeout,
            inner.isolation_level,
        )
        .await
        {
            Ok(starts) => {
                let mut st = inner.lock();
                for (tp, (offset, leader_epoch)) in starts {
                    if let Some(p) = st.partitions.get_mut(&tp)
                        && matches!(p.status, Status::Starting)
                    {
                        p.tracker = Tracker::new(offset);
                        p.epochs.reset(offset, leader_epoch);
                        p.status = Status::Fetching;
                        tracing::debug!(topic = %tp.topic, partition = tp.partition, offset, "partition starts");
                    }
                }
                drop(st);
                inner.fetchable.notify_waiters();
                return;
            }
            Err(e @ Error::NoOffset { .. }) => {
                inner.event(ConsumerEvent::Error(e));
                let mut st = inner.lock();
                for tp in &wanted {
                    if let Some(p) = st.partitions.get_mut(tp) {
                        p.status = Status::Stalled;
                    }
                }
                return;
            }
            Err(e) => {
                inner.event(ConsumerEvent::Error(e));
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}
