//! Generations, in the spirit of kafka-go's `ConsumerGroup`: [`Group::next`] waits for the next
//! generation; a [`Generation`] carries its id, member id and assignments with starting offsets,
//! runs tasks bound to it, and commits offsets for itself.
//!
//! ```no_run
//! # async fn run() -> Result<(), cohort::Error> {
//! use cohort::{CommitOffset, Group, GroupConfig};
//!
//! let config = GroupConfig::new("127.0.0.1:9092", "reporting", &["events"]);
//! let mut group = Group::new(config).await?;
//! loop {
//!     let generation = group.next().await?;
//!     for (topic, partitions) in generation.assignments() {
//!         for p in partitions {
//!             let (topic, partition, start) = (topic.clone(), p.partition, p.offset);
//!             let g = generation.clone();
//!             generation.start(move |ctx| async move {
//!                 let mut offset = start;
//!                 // ... read from (topic, partition) at `offset`, process, then:
//!                 offset += 1;
//!                 let _ = g.commit(&[CommitOffset::new(&topic, partition, offset)]).await;
//!                 ctx.done().await; // the generation ended: return promptly
//!             });
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! When the generation ends (a rebalance, or the member's generation is lost), every task's
//! [`GenerationContext::done`] resolves; the group waits for the tasks (up to the rebalance
//! timeout, then reports them as stalled) before it rejoins. kafka-go documents the same
//! contract: task functions "MUST support cancellation".
//!
//! Every rebalance ends the generation, including cooperative ones; applications that want
//! unaffected partitions to keep flowing through a cooperative rebalance use
//! [`crate::Consumer`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::TopicPartition;
use crate::config::GroupConfig;
use crate::conn::Cluster;
use crate::driver::DriverHandle;
use crate::error::Error;
use crate::member::{Assignment, CommitOffset, GroupEvent};
use crate::start::{GroupConfigRest, resolve_starts, start_member};

/// A partition of a generation's assignment and where to start reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStart {
    /// Partition.
    pub partition: i32,
    /// The committed offset, or the reset policy's offset when nothing is committed.
    pub offset: i64,
}

/// Given to tasks started with [`Generation::start`].
#[derive(Debug, Clone)]
pub struct GenerationContext {
    ended: watch::Receiver<bool>,
    /// The generation's id.
    pub generation: i32,
}

impl GenerationContext {
    /// Resolves when the generation ends.
    pub async fn done(&self) {
        let mut rx = self.ended.clone();
        let _ = rx.wait_for(|e| *e).await;
    }

    /// Whether the generation has ended.
    pub fn is_done(&self) -> bool {
        *self.ended.borrow()
    }
}

struct GenInner {
    id: i32,
    member_id: String,
    assignments: BTreeMap<String, Vec<PartitionStart>>,
    ended_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    driver: DriverHandle,
}

/// One generation of the group.
#[derive(Clone)]
pub struct Generation {
    inner: Arc<GenInner>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("id", &self.inner.id)
            .field("member_id", &self.inner.member_id)
            .field("assignments", &self.inner.assignments)
            .finish()
    }
}

impl Generation {
    /// Generation id.
    pub fn id(&self) -> i32 {
        self.inner.id
    }

    /// This member's id.
    pub fn member_id(&self) -> &str {
        &self.inner.member_id
    }

    /// Assigned partitions by topic, with starting offsets.
    pub fn assignments(&self) -> &BTreeMap<String, Vec<PartitionStart>> {
        &self.inner.assignments
    }

    /// Whether the generation has ended.
    pub fn is_done(&self) -> bool {
        *self.inner.ended_tx.borrow()
    }

    /// Runs `f` bound to this generation: its context's [`GenerationContext::done`] resolves
    /// when the generation ends, and the group waits for it before rejoining.
    pub fn start<F, Fut>(&self, f: F)
    where
        F: FnOnce(GenerationContext) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let ctx = GenerationContext {
            ended: self.inner.ended_tx.subscribe(),
            generation: self.inner.id,
        };
        let handle = tokio::spawn(f(ctx));
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }

    /// Commits offsets (the next offset to read, per partition) for this generation, as
    /// [`crate::Consumer::commit`] does, and returns what was committed. Fails with
    /// [`Error::CommitFailed`] once the generation has ended or for partitions it does not own.
    pub async fn commit(&self, offsets: &[CommitOffset]) -> Result<Vec<CommitOffset>, Error> {
        if self.is_done() {
            return Err(Error::CommitFailed(format!(
                "generation {} has ended",
                self.inner.id
            )));
        }
        self.inner.driver.commit(offsets.to_vec()).await
    }

    /// Ends the generation: tells the tasks and waits for them, up to `deadline`. Returns the
    /// number of tasks that did not stop in time.
    async fn end(&self, deadline: Duration) -> usize {
        // `send_replace`, not `send`: the latter changes nothing when no task holds a
        // receiver, and the generation would never read as done.
        self.inner.ended_tx.send_replace(true);
        let tasks: Vec<tokio::task::JoinHandle<()>> = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let start = tokio::time::Instant::now();
        let mut stalled = 0;
        for t in tasks {
            let left = deadline.saturating_sub(start.elapsed());
            if tokio::time::timeout(left, t).await.is_err() {
                stalled += 1;
            }
        }
        stalled
    }
}

/// A consumer group driven generation by generation.
pub struct Group {
    generations: mpsc::UnboundedReceiver<Result<Generation, Error>>,
    driver: DriverHandle,
    task: tokio::task::JoinHandle<()>,
    #[cfg_attr(
        not(feature = "unstable-internals"),
        allow(dead_code, reason = "read by `cluster()`, an unstable internal")
    )]
    cluster: Cluster,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

impl Group {
    /// Validates the configuration and joins.
    pub async fn new(config: GroupConfig) -> Result<Group, Error> {
        let (cluster, driver, events, rest) = start_member(config).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(cluster.clone(), driver.clone(), events, rest, tx));
        Ok(Group {
            generations: rx,
            driver,
            task,
            cluster,
        })
    }

    /// Waits for the next generation.
    pub async fn next(&mut self) -> Result<Generation, Error> {
        self.generations.recv().await.unwrap_or(Err(Error::Closed))
    }

    /// The cluster handle, for raw requests (no semver promise: `unstable-internals`).
    #[cfg(feature = "unstable-internals")]
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Leaves the group and stops.
    pub async fn close(self) {
        self.driver.leave().await;
        self.task.abort();
    }
}

async fn run(
    cluster: Cluster,
    driver: DriverHandle,
    mut events: mpsc::UnboundedReceiver<GroupEvent>,
    rest: GroupConfigRest,
    out: mpsc::UnboundedSender<Result<Generation, Error>>,
) {
    let mut current: Option<Generation> = None;
    // Generation tasks, not a poll loop, do the work here; the member counts as polling while
    // the group runs, and the bound on processing is how long tasks take to stop when a
    // generation ends.
    let mut alive = tokio::time::interval(rest.heartbeat_interval);
    loop {
        tokio::select! {
            _ = alive.tick() => driver.poll(),
            ev = events.recv() => {
                let Some(ev) = ev else { return };
                match ev {
                    // With the consumer protocol (KIP-848) a generation is a member epoch with
                    // partitions: an empty assignment (all revoked, none given yet) starts none.
                    GroupEvent::Assigned { assignment, .. }
                        if rest.group_protocol == crate::GroupProtocol::Consumer
                            && assignment.values().all(|ps| ps.is_empty()) =>
                    {
                        if let Some(g) = current.take() {
                            end_generation(&g, &rest).await;
                        }
                    }
                    GroupEvent::Assigned { generation, member_id, assignment, .. } => {
                        if let Some(g) = current.take() {
                            end_generation(&g, &rest).await;
                        }
                        let g = build(&cluster, &driver, &rest, generation, member_id, &assignment).await;
                        match g {
                            Ok(g) => {
                                current = Some(g.clone());
                                let _ = out.send(Ok(g));
                            }
                            Err(e) => {
                                let _ = out.send(Err(e));
                            }
                        }
                    }
                    GroupEvent::Revoked { token, .. } | GroupEvent::Lost { token, .. } => {
                        if let Some(g) = current.take() {
                            end_generation(&g, &rest).await;
                        }
                        driver.revoked(token);
                    }
                    GroupEvent::Fatal(e) => {
                        if let Some(g) = current.take() {
                            end_generation(&g, &rest).await;
                        }
                        let _ = out.send(Err(e));
                        return;
                    }
                    GroupEvent::Left => {
                        if let Some(g) = current.take() {
                            end_generation(&g, &rest).await;
                        }
                        return;
                    }
                    GroupEvent::Error(e) => tracing::warn!(error = %e, "group"),
                    GroupEvent::Rebalancing { .. } | GroupEvent::Committed { .. } => {}
                }
            }
        }
    }
}

async fn end_generation(g: &Generation, rest: &GroupConfigRest) {
    let stalled = g.end(rest.rebalance_timeout).await;
    if stalled > 0 {
        tracing::error!(
            generation = g.id(),
            stalled,
            "generation tasks did not stop within the rebalance timeout; the group moves on without them"
        );
    }
}

async fn build(
    cluster: &Cluster,
    driver: &DriverHandle,
    rest: &GroupConfigRest,
    generation: i32,
    member_id: String,
    assignment: &Assignment,
) -> Result<Generation, Error> {
    let tps = TopicPartition::all_of(assignment);
    let starts = resolve_starts(
        cluster,
        &rest.group_id,
        rest.fencing(driver),
        &tps,
        rest.offset_reset,
        None,
        rest.rebalance_timeout,
        rest.isolation_level,
    )
    .await?;
    let mut assignments: BTreeMap<String, Vec<PartitionStart>> = BTreeMap::new();
    for (
        TopicPartition {
            topic,
            partition: p,
        },
        (offset, _),
    ) in starts
    {
        assignments.entry(topic).or_default().push(PartitionStart {
            partition: p,
            offset,
        });
    }
    let (ended_tx, _) = watch::channel(false);
    Ok(Generation {
        inner: Arc::new(GenInner {
            id: generation,
            member_id,
            assignments,
            ended_tx,
            tasks: Mutex::new(Vec::new()),
            driver: driver.clone(),
        }),
    })
}
