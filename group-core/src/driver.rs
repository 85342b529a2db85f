//! The thin tokio driver around [`Member`]: sends what the machine asks for, feeds back
//! responses and time, watches metadata, and forwards events.
//!
//! Every request runs in its own task, so a JoinGroup held by the coordinator never blocks a
//! commit answer or a timer, and heartbeats never wait for application code: the application
//! talks to the driver through channels and never runs inside it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cohort_balancers::TopicInfo;
use cohort_protocol::ApiKey;
use cohort_protocol::messages::LeaveGroupRequest;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;

use crate::conn::{Cluster, Target};
use crate::deadline::DeliveryDeadline;
use crate::error::Error;
use crate::member::{
    CommitId, CommitOffset, GroupEvent, GroupMember, MemberStats, Outbound, OutboundRequest, Phase,
    RequestId, Response, RevokeToken,
};

/// Commands from the application side.
#[derive(Debug)]
pub(crate) enum Command {
    Commit {
        offsets: Vec<CommitOffset>,
        reply: oneshot::Sender<Result<Vec<CommitOffset>, Error>>,
    },
    Revoked(RevokeToken),
    Poll,
    Leave {
        reply: oneshot::Sender<()>,
    },
    Rejoin(String),
    Stats(oneshot::Sender<DriverStats>),
}

/// What the driver reports about itself.
#[derive(Debug, Clone, Default)]
pub struct DriverStats {
    /// Member phase.
    pub phase: Option<Phase>,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Whether the member leads the group.
    pub leader: bool,
    /// Rebalance counters.
    pub member: MemberStats,
}

/// How the driver discovers the subscription's topics.
pub(crate) enum TopicSource {
    Fixed,
    Pattern(regex::Regex),
}

/// Handle to a running driver.
#[derive(Clone)]
pub(crate) struct DriverHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Set by the application side on every poll, taken by the driver (see [`Self::polled`]).
    polled: Arc<AtomicBool>,
    /// Until when records may be delivered: kept by the driver from
    /// [`Member::deliverable_until`], read against the clock by the application side.
    deliverable: Arc<DeliveryDeadline>,
}

impl DriverHandle {
    /// The application polled: progress for `max_poll_interval` (KIP-62). A flag rather than a
    /// clock read and a message per call (both showed in profiles of the consumer at millions
    /// of records a second): the first call after the driver last took the flag also sends a
    /// `Poll` command, so a member that left for a poll timeout rejoins at once; later calls
    /// only set the flag, which the driver takes every [`poll_take_period`] and counts as a
    /// poll at that moment.
    pub(crate) fn polled(&self) {
        if !self.polled.load(Ordering::Relaxed) {
            self.polled.store(true, Ordering::Relaxed);
            let _ = self.commands.send(Command::Poll);
        }
    }

    /// Whether the member can still be sure it owns its partitions (it heard from the
    /// coordinator recently enough); records are held back otherwise. Exact to a kernel tick,
    /// well inside the heartbeat interval of margin that [`Member::deliverable_until`] keeps.
    pub(crate) fn may_deliver(&self) -> bool {
        self.deliverable.open()
    }

    pub(crate) async fn commit(
        &self,
        offsets: Vec<CommitOffset>,
    ) -> Result<Vec<CommitOffset>, Error> {
        self.start_commit(offsets)?
            .await
            .map_err(|_| Error::Closed)?
    }

    /// Hands a commit to the member now (commits go out in the order they are started) and
    /// returns where its result will arrive.
    pub(crate) fn start_commit(
        &self,
        offsets: Vec<CommitOffset>,
    ) -> Result<oneshot::Receiver<Result<Vec<CommitOffset>, Error>>, Error> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Commit { offsets, reply })
            .map_err(|_| Error::Closed)?;
        Ok(rx)
    }

    pub(crate) fn revoked(&self, token: RevokeToken) {
        let _ = self.commands.send(Command::Revoked(token));
    }

    pub(crate) fn poll(&self) {
        let _ = self.commands.send(Command::Poll);
    }

    pub(crate) fn rejoin(&self, reason: &str) {
        let _ = self.commands.send(Command::Rejoin(reason.to_owned()));
    }

    pub(crate) async fn leave(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Leave { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops the driver at once: no LeaveGroup, no more heartbeats (a crash, for tests and
    /// chaos runs).
    pub(crate) fn abort(&self) {
        if let Some(t) = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }

    pub(crate) async fn stats(&self) -> Option<DriverStats> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Stats(reply)).ok()?;
        rx.await.ok()
    }
}

/// How often the driver takes the application's poll flag: often enough that a member polling
/// steadily never looks stalled (a quarter of `max_poll_interval` at most), rarely enough to
/// cost nothing (five times a second by default).
fn poll_take_period(max_poll_interval: Duration) -> Duration {
    (max_poll_interval / 4).min(Duration::from_millis(200))
}

fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

async fn execute(cluster: Cluster, group: String, out: Outbound) -> Result<Response, Error> {
    let target = || {
        out.coordinator
            .map(Target::Coordinator)
            .ok_or_else(|| Error::transport("coordinator", "coordinator unknown"))
    };
    let result = match out.request {
        OutboundRequest::FindCoordinator => cluster
            .find_coordinator(&group)
            .await
            .map(Response::Coordinator),
        OutboundRequest::Metadata(topics) => {
            let meta = cluster.refresh_metadata(Some(&topics)).await?;
            let c = cluster.clone();
            Ok(Response::Metadata(topic_infos(&meta, move |id| {
                c.broker_rack(id)
            })))
        }
        OutboundRequest::JoinGroup(r) => cluster
            .send(target()?, &r, out.deadline)
            .await
            .map(Response::JoinGroup),
        OutboundRequest::SyncGroup(r) => cluster
            .send(target()?, &r, out.deadline)
            .await
            .map(Response::SyncGroup),
        OutboundRequest::Heartbeat(r) => {
            crate::telemetry::heartbeat(&cluster.config().client_id, &group);
            cluster
                .send(target()?, &r, out.deadline)
                .await
                .map(Response::Heartbeat)
        }
        OutboundRequest::LeaveGroup(mut r) => {
            // LeaveGroup v3+ (KIP-345) names the leaving members in a list; v0-v2 carry one
            // member id. The member fills both; send the one the broker's version has.
            let t = target()?;
            let batch = cluster.supports(t, ApiKey::LeaveGroup, 3).await?;
            let cap = shape_leave(&mut r, batch);
            cluster
                .send_capped(t, &r, out.deadline, cap)
                .await
                .map(|(_, r)| Response::LeaveGroup(r))
        }
        OutboundRequest::OffsetCommit(r) => cluster
            .send(target()?, &r, out.deadline)
            .await
            .map(Response::OffsetCommit),
        OutboundRequest::ConsumerGroupHeartbeat(r) => {
            crate::telemetry::heartbeat(&cluster.config().client_id, &group);
            cluster
                .send(target()?, &r, out.deadline)
                .await
                .map(Response::ConsumerGroupHeartbeat)
        }
        OutboundRequest::TopicNames(_) => {
            let meta = cluster.refresh_metadata(None).await?;
            Ok(Response::TopicNames(
                meta.into_iter()
                    .filter(|(_, m)| !m.topic_id.is_zero())
                    .map(|(name, m)| (m.topic_id, name))
                    .collect(),
            ))
        }
    };
    if let (Err(e), Some(c)) = (&result, out.coordinator)
        && matches!(
            e,
            Error::Transport { .. } | Error::Timeout { .. } | Error::Protocol { .. }
        )
    {
        cluster.disconnect(Target::Coordinator(c));
    }
    result
}

/// Keeps the LeaveGroup layout of the version the broker will get: the member list (v3+,
/// `batch`) or the single member id (v0-v2, then capped at v2).
fn shape_leave(r: &mut LeaveGroupRequest, batch: bool) -> Option<i16> {
    if batch {
        r.member_id = Default::default();
        None
    } else {
        r.members.clear();
        Some(2)
    }
}

/// Runs the member until it leaves or fails.
pub(crate) fn spawn(
    mut member: Box<dyn GroupMember>,
    cluster: Cluster,
    group: String,
    topic_source: TopicSource,
    watch_interval: Duration,
    events: mpsc::UnboundedSender<GroupEvent>,
) -> DriverHandle {
    let (commands_tx, mut commands) = mpsc::unbounded_channel::<Command>();
    let task = Arc::new(std::sync::Mutex::new(None));
    let polled = Arc::new(AtomicBool::new(false));
    let deliverable = Arc::new(DeliveryDeadline::new());
    let handle = DriverHandle {
        commands: commands_tx,
        task: Arc::clone(&task),
        polled: Arc::clone(&polled),
        deliverable: Arc::clone(&deliverable),
    };
    let take_every = poll_take_period(member.max_poll_interval());
    let join = tokio::spawn(async move {
        let (results_tx, mut results) =
            mpsc::unbounded_channel::<(RequestId, Result<Response, Error>)>();
        let mut losses = crate::deadline::Losses::default();
        let mut commits: BTreeMap<CommitId, oneshot::Sender<Result<Vec<CommitOffset>, Error>>> =
            BTreeMap::new();
        let mut leave_replies: Vec<oneshot::Sender<()>> = Vec::new();
        let mut watch = tokio::time::interval(watch_interval);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch_inflight = false;
        let mut polls_taken = now();
        let (watch_tx, mut watch_rx) =
            mpsc::unbounded_channel::<Result<BTreeMap<String, crate::conn::TopicMeta>, Error>>();
        // OffsetCommits go out one after the other, in the order the member made them: each
        // other request runs on a task of its own, and two commits racing to the coordinator
        // could be applied in the wrong order, the older one last (Java's asynchronous commits
        // keep their order; its network client sends a connection's requests in turn).
        let (commit_lane, mut commit_queue) = mpsc::unbounded_channel::<Outbound>();
        {
            let (tx, c, g) = (results_tx.clone(), cluster.clone(), group.clone());
            tokio::spawn(async move {
                while let Some(out) = commit_queue.recv().await {
                    let id = out.id;
                    let r = execute(c.clone(), g.clone(), out).await;
                    if tx.send((id, r)).is_err() {
                        return;
                    }
                }
            });
        }
        loop {
            while let Some(out) = member.poll_request() {
                let id = out.id;
                if matches!(out.request, OutboundRequest::OffsetCommit(_)) {
                    let _ = commit_lane.send(out);
                    continue;
                }
                let tx = results_tx.clone();
                let c = cluster.clone();
                let g = group.clone();
                let api = out.request.api();
                tracing::trace!(%group, member = member.member_id(), ?api, "request");
                tokio::spawn(async move {
                    let r = execute(c, g, out).await;
                    let _ = tx.send((id, r));
                });
            }
            while let Some(ev) = member.poll_event() {
                match ev {
                    GroupEvent::Committed { id, result } => {
                        if let Some(reply) = commits.remove(&id) {
                            let _ = reply.send(result);
                        }
                    }
                    GroupEvent::Left => {
                        for r in leave_replies.drain(..) {
                            let _ = r.send(());
                        }
                        let _ = events.send(GroupEvent::Left);
                    }
                    other => {
                        if let GroupEvent::Lost { token, .. } = &other {
                            losses.lost(*token);
                        }
                        if matches!(other, GroupEvent::Assigned { .. }) {
                            crate::telemetry::rebalanced(
                                &cluster.config().client_id,
                                &group,
                                member.stats().last_rebalance,
                            );
                        }
                        let _ = events.send(other);
                    }
                }
            }
            if matches!(member.phase(), Phase::Left | Phase::Failed) {
                for (_, reply) in std::mem::take(&mut commits) {
                    let _ = reply.send(Err(Error::Closed));
                }
                for r in leave_replies.drain(..) {
                    let _ = r.send(());
                }
                break;
            }
            let t = now();
            if t.saturating_duration_since(polls_taken) >= take_every {
                // Calls since the last take count as a poll now: late by at most
                // `take_every`, which is a quarter of `max_poll_interval` at most.
                polls_taken = t;
                if polled.swap(false, Ordering::Relaxed) {
                    member.handle_poll(t);
                    continue;
                }
            }
            deliverable.set(t, losses.limit(t, member.deliverable_until()));
            // No wake at `until`: the consumer reads the deadline against the clock.
            let wake = [member.poll_timeout(), Some(polls_taken + take_every)];
            let deadline = wake.into_iter().flatten().min().map(TokioInstant::from_std);
            tokio::select! {
                Some((id, r)) = results.recv() => member.handle_response(now(), id, r),
                cmd = commands.recv() => match cmd {
                    None => member.leave(now()),
                    Some(Command::Commit { offsets, reply }) => {
                        let id = member.commit(now(), offsets);
                        commits.insert(id, reply);
                        // A commit refused at once already produced its event.
                        while let Some(ev) = member.poll_event() {
                            match ev {
                                GroupEvent::Committed { id, result } => {
                                    if let Some(reply) = commits.remove(&id) {
                                        let _ = reply.send(result);
                                    }
                                }
                                other => {
                                    if let GroupEvent::Lost { token, .. } = &other {
                                        losses.lost(*token);
                                    }
                                    let _ = events.send(other);
                                }
                            }
                        }
                    }
                    Some(Command::Revoked(token)) => {
                        losses.acknowledged(token);
                        member.handle_revoked(now(), token);
                    }
                    Some(Command::Poll) => member.handle_poll(now()),
                    Some(Command::Leave { reply }) => {
                        leave_replies.push(reply);
                        member.leave(now());
                    }
                    Some(Command::Rejoin(reason)) => {
                        member.request_rejoin(&reason);
                        member.handle_timeout(now());
                    }
                    Some(Command::Stats(reply)) => {
                        let _ = reply.send(DriverStats {
                            phase: Some(member.phase()),
                            generation: member.generation(),
                            member_id: member.member_id().to_owned(),
                            leader: member.is_leader(),
                            member: member.stats(),
                        });
                    }
                },
                () = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => member.handle_timeout(now()),
                _ = watch.tick() => {
                    // The leader watches partition counts of every subscribed topic; a pattern
                    // subscription is matched against the cluster's topics again.
                    let watched = member.watched_topics();
                    let pattern = matches!(topic_source, TopicSource::Pattern(_));
                    if !watch_inflight && (!watched.is_empty() || pattern) {
                        watch_inflight = true;
                        let c = cluster.clone();
                        let tx = watch_tx.clone();
                        tokio::spawn(async move {
                            let r = if pattern { c.refresh_metadata(None).await } else { c.refresh_metadata(Some(&watched)).await };
                            let _ = tx.send(r);
                        });
                    }
                }
                Some(meta) = watch_rx.recv() => {
                    watch_inflight = false;
                    if let Ok(meta) = meta {
                        let counts: BTreeMap<String, u32> = meta
                            .iter()
                            .filter(|(_, m)| m.error_code == 0)
                            .map(|(t, m)| (t.clone(), m.partitions.len() as u32))
                            .collect();
                        if let TopicSource::Pattern(re) = &topic_source {
                            let topics: Vec<String> = counts
                                .keys()
                                .filter(|t| re.find(t).is_some_and(|m| m.start() == 0 && m.end() == t.len()))
                                .cloned()
                                .collect();
                            member.set_topics(now(), topics);
                        }
                        member.handle_partition_counts(now(), &counts);
                    }
                }
            }
        }
        tracing::debug!(%group, "driver stopped");
    });
    *task
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(join);
    handle
}

/// Builds the `TopicInfo` list a leader passes to its balancer from the cluster's metadata:
/// partition counts and the racks of each partition's replicas.
fn topic_infos(
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

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use cohort_protocol::Encode;
    use cohort_protocol::messages::leave_group_request::MemberIdentity;

    use super::*;

    /// The member fills both layouts; after shaping, every version encodes (a regression: v3+
    /// rejected the v0-v2 member id, so clean leaves never reached the broker).
    #[test]
    fn leave_group_encodes_at_every_version_after_shaping() {
        let full = LeaveGroupRequest {
            group_id: "g".to_owned().into(),
            member_id: "m".to_owned().into(),
            members: vec![MemberIdentity {
                member_id: "m".to_owned().into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        for version in 0..=5 {
            let mut r = full.clone();
            let cap = shape_leave(&mut r, version >= 3);
            assert!(cap.is_none_or(|c| version <= c));
            let mut buf = BytesMut::new();
            r.encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert!(full.encode(&mut BytesMut::new(), version).is_err());
        }
    }
}
