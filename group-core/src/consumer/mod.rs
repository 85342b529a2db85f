//! The consumer: records of the assigned partitions as a stream, acknowledgements in any order,
//! commits of what is done.
//!
//! ```no_run
//! # async fn run() -> Result<(), cohort::Error> {
//! use cohort::{Consumer, GroupConfig};
//!
//! let mut config = GroupConfig::new("127.0.0.1:9092", "orders-processor", &["orders"]);
//! config.balancers = vec![Box::new(cohort_balancers::CooperativeSticky)];
//! let mut consumer = Consumer::new(config).await?;
//! while let Some(record) = consumer.recv().await {
//!     let record = record?;
//!     // ... process ...
//!     consumer.ack(&record); // in any order; commits advance below the first record not done
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Guarantees:
//! - Records of a partition are delivered in offset order; a partition that is revoked or lost
//!   has its buffered records dropped at once, and none is delivered after the event.
//! - A commit names, per partition, the first record not yet acknowledged (or the next to fetch);
//!   it is sent only for owned partitions and only in a stable generation. Revocation commits
//!   what is done before the partition is given up (auto-commit or `commit_on_revoke`); lost
//!   partitions are never committed.
//! - Fetching pauses per partition when `max_buffered_records` are waiting (backpressure).
//! - After a leader change, each position is checked with the new leader (KIP-320): a log
//!   truncated below it by an unclean leader election is noticed and consumed again from the
//!   divergence ([`ConsumerEvent::Truncated`]), never skipped in silence.
//!
//! # Guide: what a Java or librdkafka user reaches for
//!
//! Each example compiles (they are doctests); the names in parentheses are Java's.
//!
//! **A rebalance listener** (`ConsumerRebalanceListener`): finish and commit inside revocation,
//! so the next owner starts exactly after the last processed record.
//!
//! ```no_run
//! use std::sync::Arc;
//! use cohort::consumer::{ListenerContext, RebalanceListener};
//! use cohort::{Assignment, Consumer, ConsumerOptions, GroupConfig};
//!
//! struct CommitOnRevoke;
//!
//! #[async_trait::async_trait]
//! impl RebalanceListener for CommitOnRevoke {
//!     async fn on_partitions_revoked(&self, consumer: &ListenerContext, revoked: &Assignment) {
//!         // ... finish the records of `revoked` still in flight, acknowledge them ...
//!         if let Err(e) = consumer.commit().await {
//!             eprintln!("commit before giving up {revoked:?}: {e}");
//!         }
//!     }
//! }
//!
//! # async fn run() -> Result<(), cohort::Error> {
//! let config = GroupConfig::new("localhost:9092", "billing", &["orders"]);
//! let options = ConsumerOptions::default().listener(Arc::new(CommitOnRevoke));
//! let consumer = Consumer::with_options(config, options).await?;
//! # Ok(()) }
//! ```
//!
//! **Positions** (`seek`, `seekToBeginning`, `seekToEnd`, `position`, `committed`,
//! `assignment`, `subscription`):
//!
//! ```no_run
//! # async fn run(consumer: cohort::Consumer) -> Result<(), cohort::Error> {
//! use cohort::TopicPartition;
//!
//! let tp = TopicPartition::new("orders", 0);
//! consumer.seek(&tp, 1_000)?; // an error unless `tp` is assigned to this consumer now
//! consumer.seek_to_beginning(std::slice::from_ref(&tp)).await?;
//! consumer.seek_to_end(std::slice::from_ref(&tp)).await?;
//! println!("next record of {tp}: {:?}", consumer.position(&tp));
//! let committed = consumer.committed(std::slice::from_ref(&tp)).await?;
//! println!("{:?} of {:?}", consumer.assignment(), consumer.subscription());
//! # let _ = committed; Ok(()) }
//! ```
//!
//! **Commits** (`commitSync`, `commitAsync`, `OffsetAndMetadata`): what is acknowledged, or
//! explicit offsets of owned partitions with metadata; asynchronous ones keep their order.
//!
//! ```no_run
//! # async fn run(consumer: cohort::Consumer) -> Result<(), cohort::Error> {
//! use cohort::CommitOffset;
//!
//! consumer.commit().await?; // everything acknowledged, now
//! let pending = consumer.commit_async(); // the same, answered later
//! let explicit = consumer.commit_offsets_async(&[
//!     CommitOffset::new("orders", 0, 1_042).with_metadata("checkpoint 7"),
//! ])?;
//! pending.await?;
//! explicit.await?;
//! # Ok(()) }
//! ```
//!
//! **Transactions** (`isolation.level=read_committed`): records of aborted transactions are
//! never delivered and nothing past the last stable offset is.
//!
//! ```no_run
//! # async fn run() -> Result<(), cohort::Error> {
//! use cohort::{Consumer, GroupConfig, IsolationLevel};
//!
//! let mut config = GroupConfig::new("localhost:9092", "ledger", &["payments"]);
//! config.isolation_level = IsolationLevel::ReadCommitted;
//! let consumer = Consumer::new(config).await?;
//! # Ok(()) }
//! ```
//!
//! **Where partitions start, and where they go after losing their place** (Java's
//! `auto.offset.reset` and a `seek` in `onPartitionsAssigned`; sarama-consumer's hooks): the
//! starting-offset hook sees the committed offset; the out-of-range hook is called after
//! OFFSET_OUT_OF_RANGE (records deleted, retention) and when the log was truncated below the
//! position (KIP-320, given the divergence point). Without hooks, `offset_reset` decides; with
//! [`OffsetReset::None`] a truncation stops the partition with
//! [`Error::LogTruncated`].
//!
//! ```no_run
//! # async fn run() -> Result<(), cohort::Error> {
//! use std::sync::Arc;
//! use cohort::{Consumer, ConsumerOptions, GroupConfig, StartOffset};
//!
//! let options = ConsumerOptions::default()
//!     .starting_offset(Arc::new(|_tp, committed| match committed {
//!         Some(_) => StartOffset::Committed,
//!         None => StartOffset::Latest, // a new group starts at the end
//!     }))
//!     .out_of_range(Arc::new(|tp, offset| {
//!         eprintln!("{tp}: offset {offset} is gone; starting over");
//!         StartOffset::Earliest
//!     }));
//! let config = GroupConfig::new("localhost:9092", "audit", &["events"]);
//! let consumer = Consumer::with_options(config, options).await?;
//! # Ok(()) }
//! ```
//!
//! **Flow control, patterns and racks** (`pause`/`resume`, `subscribe(Pattern)`,
//! `client.rack`):
//!
//! ```no_run
//! # async fn run() -> Result<(), cohort::Error> {
//! use cohort::{Consumer, GroupConfig, Subscription, TopicPartition};
//!
//! let mut config = GroupConfig::new("localhost:9092", "mirror", &[]);
//! config.subscription = Subscription::Pattern(regex::Regex::new(r"orders\..*").unwrap());
//! config.client.rack = Some("eu-west-1a".into()); // fetch-from-rack-aware range (KIP-881)
//! let consumer = Consumer::new(config).await?;
//! let tp = TopicPartition::new("orders.eu", 0);
//! consumer.pause(&tp); // no more fetches or deliveries of `tp` ...
//! consumer.resume(&tp); // ... until this
//! # Ok(()) }
//! ```
//!
//! **Lag and metrics** (`records-lag`, `metrics()`): [`Consumer::metrics`] gives the exact lag
//! per partition as of the last Fetch response; the same figures, with Java's names, go to
//! whatever recorder of the [`metrics`](https://docs.rs/metrics) facade the application
//! installs (see [`crate::telemetry`]; `cohort member --metrics-addr` serves them to
//! Prometheus). Each rebalance is a `rebalance` [`tracing`](https://docs.rs/tracing) span with
//! its reason, generation, moves and the time of each phase.
//!
//! ```no_run
//! # async fn run(consumer: cohort::Consumer) {
//! let m = consumer.metrics().await;
//! for (tp, lag) in &m.records_lag {
//!     println!("{tp}: {lag} records not yet delivered");
//! }
//! println!("{} rebalances, the last took {:?}", m.rebalances, m.last_rebalance);
//! # }
//! ```

mod fetcher;
mod group;
mod listener;
mod tracker;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cohort_protocol::ApiKey;
use tokio::sync::{Notify, mpsc};

use self::group::{auto_commit, commit_done, give_up, group_loop};
use self::tracker::{LeaderEpochs, Tracker};
use crate::TopicPartition;
use crate::config::{GroupConfig, OffsetReset};
use crate::conn::Cluster;
use crate::driver::{DriverHandle, DriverStats};
use crate::error::Error;
use crate::member::{Assignment, CommitOffset};

/// How long [`Consumer::close`] waits for the final commit and the LeaveGroup: Java's
/// `KafkaConsumer.DEFAULT_CLOSE_TIMEOUT_MS`.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// One record, with where it came from.
#[derive(Clone)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Generation the record was delivered in.
    pub generation: i32,
    epoch: u64,
}

impl fmt::Debug for ConsumerRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerRecord")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

use crate::start::start_member;
pub use crate::start::{StartOffset, StartingOffsetHook};
pub use listener::{ListenerContext, RebalanceListener};

/// Chooses where to go when a fetch offset is out of range, given that offset, or when the log
/// was truncated below the position (KIP-320), given the first offset that diverges (default:
/// the reset policy; after a truncation, the divergence point itself).
pub type OutOfRangeHook = Arc<dyn Fn(&TopicPartition, i64) -> StartOffset + Send + Sync>;

/// What the application can observe.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsumerEvent {
    /// A rebalance started.
    Rebalancing {
        /// Why.
        reason: String,
    },
    /// A new generation: the whole assignment and what is new in it.
    Assigned {
        /// Generation.
        generation: i32,
        /// Member id.
        member_id: String,
        /// Whether this member computed the assignment (the group leader).
        leader: bool,
        /// The protocol (balancer) the group agreed on.
        protocol: String,
        /// Everything owned now.
        assignment: Assignment,
        /// What is new.
        added: Assignment,
    },
    /// Partitions were revoked (their done records were committed first).
    Revoked {
        /// Generation they were owned in.
        generation: i32,
        /// The partitions.
        partitions: Assignment,
    },
    /// Partitions were lost: the member is no longer part of their generation.
    Lost {
        /// The partitions.
        partitions: Assignment,
    },
    /// Offsets were committed.
    Committed {
        /// What.
        offsets: Vec<CommitOffset>,
        /// When the commit was requested. The coordinator applied it between then and this
        /// event, so a commit answered late (the member frozen, the answer slow) is still placed
        /// where it happened: an observer judging ownership or ordering needs that time, not the
        /// event's.
        requested_at: std::time::Instant,
    },
    /// A partition's log was truncated below its fetch position (an unclean leader election
    /// gave the partition to a replica without the last records; KIP-320). Records at and past
    /// `diverged_at` that were delivered before no longer exist in the log; fetching resumes at
    /// `diverged_at` (with a reset policy), where the out-of-range hook says, or stops with
    /// [`Error::LogTruncated`].
    Truncated {
        /// The partition.
        partition: TopicPartition,
        /// The fetch position found past the end of its leader epoch.
        position: i64,
        /// The first offset whose record is not what this consumer fetched; `None` when the
        /// new leader knows none of the position's epoch (the reset policy then decides).
        diverged_at: Option<i64>,
    },
    /// A problem; the consumer keeps going unless it is fatal.
    Error(Error),
}

/// Lag and rebalance figures.
#[derive(Debug, Clone, Default)]
pub struct ConsumerMetrics {
    /// Per partition: high watermark minus committed offset (or fetch position when nothing
    /// is committed): the group's lag, as `kafka-consumer-groups` shows it. With
    /// `read_committed`, the last stable offset stands for the high watermark here and below.
    pub lag: BTreeMap<TopicPartition, i64>,
    /// Per partition: high watermark minus the position, the next record to deliver (Java's
    /// `records-lag`): records in the log this consumer has not handed out yet. Exact as of
    /// the last Fetch response.
    pub records_lag: BTreeMap<TopicPartition, i64>,
    /// Per partition: records fetched and waiting to be delivered (what backpressure bounds by
    /// `max_buffered_records`).
    pub buffered: BTreeMap<TopicPartition, usize>,
    /// Records delivered.
    pub delivered: u64,
    /// Rebalances completed.
    pub rebalances: u64,
    /// Duration of the last rebalance.
    pub last_rebalance: Duration,
    /// Time spent rebalancing.
    pub rebalancing_total: Duration,
    /// Current generation.
    pub generation: i32,
}

#[derive(Debug)]
pub(crate) enum Status {
    /// Waiting for its starting offset.
    Starting,
    /// Being fetched.
    Fetching,
    /// Stopped by an error (offset out of range with no policy, ...).
    Stalled,
}

pub(crate) struct PartitionState {
    pub(crate) epoch: u64,
    pub(crate) status: Status,
    pub(crate) tracker: Tracker<ConsumerRecord>,
    /// Leader epochs of what was fetched (KIP-320).
    pub(crate) epochs: LeaderEpochs,
    /// The leader epoch (from metadata) the fetch position was last checked against: a new
    /// leader means asking it whether the log still holds the position (KIP-320).
    pub(crate) validated: Option<i32>,
    /// This partition's `records-lag` (registered once per assignment, set per Fetch response).
    pub(crate) lag_gauge: metrics::Gauge,
    pub(crate) high_watermark: i64,
    pub(crate) paused: bool,
}

pub(crate) struct State {
    pub(crate) partitions: BTreeMap<TopicPartition, PartitionState>,
    pub(crate) generation: i32,
    pub(crate) next_epoch: u64,
    pub(crate) closed: bool,
    pub(crate) fatal: Option<Error>,
    /// Where round-robin delivery resumes (index in key order).
    pub(crate) cursor: usize,
    /// The partition being delivered from, and how many records in a row it gave.
    pub(crate) current: Option<(TopicPartition, usize)>,
    /// Partition by assignment epoch, so an acknowledgement finds its partition without
    /// building a key.
    /// (A B-tree: the key is a small integer, and SipHash showed in profiles of `ack`.)
    pub(crate) by_epoch: BTreeMap<u64, TopicPartition>,
    pub(crate) delivered: u64,
    pub(crate) paused: BTreeSet<TopicPartition>,
    /// When the last assignment arrived (`last-rebalance-seconds-ago`).
    pub(crate) last_assigned: Option<std::time::Instant>,
    /// Record vectors delivery emptied, for the fetchers to decode into.
    pub(crate) spare: tracker::Spare<ConsumerRecord>,
    /// Revocations waiting for delivered records to be acknowledged before they commit
    /// (`group::give_up`): while there are any, acknowledgements wake them (`Inner::acked`).
    pub(crate) draining: usize,
}

pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    /// Records (or an error) became available.
    pub(crate) readable: Notify,
    /// Buffers drained or partitions changed: fetchers may have work.
    pub(crate) fetchable: Notify,
    /// Records were acknowledged while a revocation waited for them (`State::draining`).
    pub(crate) acked: Notify,
    pub(crate) cluster: Cluster,
    pub(crate) driver: DriverHandle,
    pub(crate) group_id: String,
    pub(crate) max_buffered: usize,
    pub(crate) fetch_max_decompressed_bytes: usize,
    pub(crate) max_partition_fetch_bytes: i32,
    pub(crate) fetch_max_bytes: i32,
    pub(crate) fetch_max_wait: Duration,
    pub(crate) max_record_age: Option<Duration>,
    pub(crate) isolation_level: crate::config::IsolationLevel,
    pub(crate) offset_reset: OffsetReset,
    pub(crate) starting_offset: Option<StartingOffsetHook>,
    pub(crate) out_of_range: Option<OutOfRangeHook>,
    pub(crate) events: mpsc::UnboundedSender<ConsumerEvent>,
    pub(crate) in_order: bool,
    pub(crate) listener: Option<Arc<dyn RebalanceListener>>,
    pub(crate) subscription: crate::config::Subscription,
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

impl Inner {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn event(&self, e: ConsumerEvent) {
        let _ = self.events.send(e);
    }

    /// After an acknowledgement: wakes a revocation waiting for its records (only then, so
    /// the acknowledgement path costs nothing more the rest of the time).
    fn wake_draining(&self, st: &State) {
        if st.draining > 0 {
            self.acked.notify_waiters();
        }
    }
}

/// Options of a consumer beyond the group configuration:
/// `ConsumerOptions::default().in_order(true)`.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// Chooses where each newly assigned partition starts.
    pub starting_offset: Option<StartingOffsetHook>,
    /// Chooses where to go after OFFSET_OUT_OF_RANGE.
    pub out_of_range: Option<OutOfRangeHook>,
    /// Acknowledging a record acknowledges every earlier delivered record of its partition.
    pub in_order: bool,
    /// Called around rebalances (Java's `ConsumerRebalanceListener`).
    pub listener: Option<Arc<dyn RebalanceListener>>,
}

impl ConsumerOptions {
    /// Sets the hook choosing where each newly assigned partition starts.
    pub fn starting_offset(mut self, hook: StartingOffsetHook) -> Self {
        self.starting_offset = Some(hook);
        self
    }

    /// Sets the hook choosing where to go after OFFSET_OUT_OF_RANGE.
    pub fn out_of_range(mut self, hook: OutOfRangeHook) -> Self {
        self.out_of_range = Some(hook);
        self
    }

    /// Whether acknowledging a record acknowledges every earlier delivered record of its
    /// partition.
    pub fn in_order(mut self, in_order: bool) -> Self {
        self.in_order = in_order;
        self
    }

    /// Sets the rebalance listener.
    pub fn listener(mut self, listener: Arc<dyn RebalanceListener>) -> Self {
        self.listener = Some(listener);
        self
    }
}

impl fmt::Debug for ConsumerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerOptions")
            .field("starting_offset", &self.starting_offset.is_some())
            .field("out_of_range", &self.out_of_range.is_some())
            .field("in_order", &self.in_order)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

/// A commit started by [`Consumer::commit_async`] or [`Consumer::commit_offsets_async`]: await
/// it for what the coordinator accepted. The commit goes on if this is dropped.
#[must_use = "the commit goes on without it, but its result is only here (or in the events)"]
pub struct CommitFuture {
    rx: tokio::sync::oneshot::Receiver<Result<Vec<CommitOffset>, Error>>,
}

impl CommitFuture {
    fn spawn(
        inner: &Arc<Inner>,
        started: Result<Option<group::StartedCommit>, Error>,
    ) -> CommitFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match started {
            Ok(None) => {
                let _ = tx.send(Ok(Vec::new()));
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(Some(started)) => {
                let inner = Arc::clone(inner);
                tokio::spawn(async move {
                    let r = started.finish(&inner).await;
                    if let Err(e) = &r
                        && tx.is_closed()
                    {
                        // Nobody awaits the result: it is reported like an automatic commit's.
                        if !matches!(e, Error::CommitFailed(_)) {
                            inner.event(ConsumerEvent::Error(e.clone()));
                        }
                    }
                    let _ = tx.send(r);
                });
            }
        }
        CommitFuture { rx }
    }
}

impl fmt::Debug for CommitFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitFuture").finish_non_exhaustive()
    }
}

impl std::future::Future for CommitFuture {
    type Output = Result<Vec<CommitOffset>, Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::future::Future::poll(std::pin::Pin::new(&mut self.rx), cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// A group consumer.
pub struct Consumer {
    inner: Arc<Inner>,
    events: Option<mpsc::UnboundedReceiver<ConsumerEvent>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    auto_commit: Option<Duration>,
    commit_on_close: bool,
    /// Where `recv` takes its record.
    one: Vec<ConsumerRecord>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("group", &self.inner.group_id)
            .finish_non_exhaustive()
    }
}

fn flatten(a: &Assignment) -> Vec<TopicPartition> {
    TopicPartition::all_of(a)
}

impl Consumer {
    /// Validates the configuration, starts the member and the fetchers.
    pub async fn new(config: GroupConfig) -> Result<Consumer, Error> {
        Self::with_options(config, ConsumerOptions::default()).await
    }

    /// A consumer with hooks and modes.
    pub async fn with_options(
        config: GroupConfig,
        options: ConsumerOptions,
    ) -> Result<Consumer, Error> {
        let (cluster, driver, group_events, rest) = start_member(config).await?;
        let cluster_client_id = cluster.config().client_id.clone();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                partitions: BTreeMap::new(),
                generation: -1,
                next_epoch: 1,
                closed: false,
                fatal: None,
                cursor: 0,
                current: None,
                by_epoch: BTreeMap::new(),
                delivered: 0,
                paused: BTreeSet::new(),
                last_assigned: None,
                spare: tracker::Spare::default(),
                draining: 0,
            }),
            readable: Notify::new(),
            fetchable: Notify::new(),
            acked: Notify::new(),
            cluster,
            driver,
            group_id: rest.group_id.clone(),
            max_buffered: rest.max_buffered_records,
            fetch_max_decompressed_bytes: rest.fetch_max_decompressed_bytes,
            max_partition_fetch_bytes: rest.max_partition_fetch_bytes,
            fetch_max_bytes: rest.fetch_max_bytes,
            fetch_max_wait: rest.fetch_max_wait,
            max_record_age: rest.max_record_age,
            isolation_level: rest.isolation_level,
            offset_reset: rest.offset_reset,
            starting_offset: options.starting_offset.clone(),
            out_of_range: options.out_of_range.clone(),
            events: events_tx,
            in_order: options.in_order,
            listener: options.listener.clone(),
            subscription: rest.subscription.clone(),
            telemetry: crate::telemetry::Telemetry::new(&cluster_client_id, &rest.group_id),
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(group_loop(
            Arc::clone(&inner),
            group_events,
            rest.clone(),
        )));
        tasks.push(tokio::spawn(fetcher::run(Arc::clone(&inner))));
        if let Some(every) = rest.auto_commit_interval {
            tasks.push(tokio::spawn(auto_commit(Arc::clone(&inner), every)));
        }
        // Stall detection applies to `recv`; until the first call the member counts as polling.
        inner.driver.polled();
        Ok(Consumer {
            inner,
            events: Some(events_rx),
            tasks,
            auto_commit: rest.auto_commit_interval,
            commit_on_close: rest.auto_commit_interval.is_some() || rest.commit_on_revoke,
            one: Vec::with_capacity(1),
        })
    }

    /// Takes the event stream (assigned, revoked, lost, committed, errors). Only the first call
    /// gets it; events are buffered until taken.
    pub fn events(&mut self) -> Option<mpsc::UnboundedReceiver<ConsumerEvent>> {
        self.events.take()
    }

    /// The next record, or a fatal error, or `None` once closed.
    pub async fn recv(&mut self) -> Option<Result<ConsumerRecord, Error>> {
        // A kept one-slot vector: no allocation per record. Records are appended only as
        // `recv_many` returns, so a cancelled `recv` loses none (only the slot).
        let mut one = std::mem::take(&mut self.one);
        let r = match self.recv_many(&mut one, 1).await {
            None => None,
            Some(Err(e)) => Some(Err(e)),
            Some(Ok(_)) => one.pop().map(Ok),
        };
        self.one = one;
        r
    }

    /// Receives up to `limit` records at once, appending them to `records`: waits as
    /// [`Self::recv`] does for the first, then takes what else is ready under one lock (a
    /// run of up to 500 from one partition, then on to the next). Returns how many were
    /// appended (at least one), a fatal error, or `None` once closed. Acknowledge them with
    /// [`Self::ack`] one by one, or with [`Self::ack_many`]. For throughput: the per-record
    /// work of `recv` (a lock, a wake-up check, a partition lookup) is paid once per call.
    ///
    /// ```no_run
    /// # async fn run(mut consumer: cohort::Consumer) {
    /// let mut batch = Vec::with_capacity(1000);
    /// while let Some(Ok(_)) = consumer.recv_many(&mut batch, 1000).await {
    ///     for record in &batch {
    ///         // process record
    ///     }
    ///     consumer.ack_many(&batch);
    ///     batch.clear();
    /// }
    /// # }
    /// ```
    pub async fn recv_many(
        &mut self,
        records: &mut Vec<ConsumerRecord>,
        limit: usize,
    ) -> Option<Result<usize, Error>> {
        if limit == 0 {
            return Some(Ok(0));
        }
        loop {
            // Each call counts as progress for `max_poll_interval` (KIP-62).
            self.inner.driver.polled();
            if let Some(r) = self.try_take_many(records, limit) {
                return r;
            }
            // Nothing ready: register for a wake-up, then look again, so records that arrive
            // in between are not missed (`Notify::notify_waiters` wakes futures created
            // before it, polled or not).
            let notified = self.inner.readable.notified();
            if let Some(r) = self.try_take_many(records, limit) {
                return r;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Records, a fatal error or the end, if any is ready.
    fn try_take_many(
        &self,
        records: &mut Vec<ConsumerRecord>,
        limit: usize,
    ) -> Option<Option<Result<usize, Error>>> {
        let mut st = self.inner.lock();
        if let Some(e) = st.fatal.take() {
            st.closed = true;
            return Some(Some(Err(e)));
        }
        if st.closed {
            return Some(None);
        }
        // A member cut off from its coordinator for (almost) a session may have lost its
        // partitions already: hold records back until it hears again or gives them up (see
        // `Member::deliverable_until`).
        if !self.inner.driver.may_deliver() {
            return None;
        }
        records.reserve(limit.min(BURST));
        let (n, refill) = take_records(&mut st, self.inner.max_buffered, limit, records);
        drop(st);
        if n == 0 {
            return None;
        }
        self.inner.telemetry.records_consumed.increment(n as u64);
        if refill {
            self.inner.fetchable.notify_waiters();
        }
        Some(Some(Ok(n)))
    }

    /// Marks a record done. Records may be acknowledged in any order (or, with
    /// [`ConsumerOptions::in_order`], every earlier record of the partition too).
    /// Acknowledgements for partitions no longer owned are ignored.
    pub fn ack(&self, record: &ConsumerRecord) {
        let mut st = self.inner.lock();
        let st = &mut *st;
        if let Some(tp) = st.by_epoch.get(&record.epoch)
            && let Some(p) = st.partitions.get_mut(tp)
            && p.epoch == record.epoch
        {
            if self.inner.in_order {
                p.tracker.ack_through(record.offset);
            } else {
                p.tracker.ack(record.offset);
            }
        }
        self.inner.wake_draining(st);
    }

    /// Marks records done, as [`Self::ack`] does for each, under one lock: a run of records
    /// of one partition (as [`Self::recv_many`] gives them) looks its partition up once.
    pub fn ack_many(&self, records: &[ConsumerRecord]) {
        let mut st = self.inner.lock();
        let st = &mut *st;
        let mut rest = records;
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .position(|r| r.epoch != first.epoch)
                .unwrap_or(rest.len());
            let (these, after) = rest.split_at(run);
            rest = after;
            if let Some(tp) = st.by_epoch.get(&first.epoch)
                && let Some(p) = st.partitions.get_mut(tp)
                && p.epoch == first.epoch
            {
                for r in these {
                    if self.inner.in_order {
                        p.tracker.ack_through(r.offset);
                    } else {
                        p.tracker.ack(r.offset);
                    }
                }
            }
        }
        self.inner.wake_draining(st);
    }

    /// Marks every delivered record of the record's partition up to it done.
    pub fn ack_through(&self, record: &ConsumerRecord) {
        let mut st = self.inner.lock();
        let st = &mut *st;
        if let Some(tp) = st.by_epoch.get(&record.epoch)
            && let Some(p) = st.partitions.get_mut(tp)
            && p.epoch == record.epoch
        {
            p.tracker.ack_through(record.offset);
        }
        self.inner.wake_draining(st);
    }

    /// Commits what is done now, for every owned partition (Java's `commitSync()`), and returns
    /// what the coordinator accepted. Each offset carries the leader epoch of the record before
    /// it (KIP-320).
    pub async fn commit(&self) -> Result<Vec<CommitOffset>, Error> {
        commit_done(&self.inner, None).await
    }

    /// Starts a commit of what is done now and returns at once (Java's `commitAsync()`): the
    /// offsets are taken when this is called, commits go to the coordinator in the order they
    /// were started, and the returned [`CommitFuture`] gives the result. Dropping the future
    /// does not cancel the commit; its outcome still arrives as [`ConsumerEvent::Committed`]
    /// or [`ConsumerEvent::Error`].
    ///
    /// ```no_run
    /// # async fn run(consumer: cohort::Consumer) -> Result<(), cohort::Error> {
    /// let pending = consumer.commit_async();
    /// // ... go on receiving and processing ...
    /// match pending.await {
    ///     Ok(done) => println!("committed {} partitions", done.len()),
    ///     Err(e) => eprintln!("commit failed: {e}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn commit_async(&self) -> CommitFuture {
        CommitFuture::spawn(&self.inner, group::start_commit_done(&self.inner, None))
    }

    /// Commits these offsets (Java's `commitSync(offsets)`): each names the next record to
    /// consume of a partition this consumer owns now, with optional metadata
    /// ([`CommitOffset::with_metadata`]); an offset of a partition it does not own is refused
    /// before anything is sent, since committing it could undo its owner's progress. An offset
    /// without a leader epoch gets the one of the record before it when this consumer fetched
    /// it (KIP-320). Returns what the coordinator accepted. Later automatic commits of a
    /// partition go out only once its done offset passes this one.
    ///
    /// ```no_run
    /// # async fn run(consumer: cohort::Consumer, record: cohort::ConsumerRecord) -> Result<(), cohort::Error> {
    /// use cohort::CommitOffset;
    ///
    /// let next = CommitOffset::new(record.topic.as_ref(), record.partition, record.offset + 1)
    ///     .with_metadata("batch 42");
    /// consumer.commit_offsets(&[next]).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit_offsets(
        &self,
        offsets: &[CommitOffset],
    ) -> Result<Vec<CommitOffset>, Error> {
        self.commit_offsets_async(offsets)?.await
    }

    /// [`Consumer::commit_offsets`] without waiting (Java's `commitAsync(offsets, callback)`):
    /// refused at once for a partition not owned, else started now and answered through the
    /// returned future, in order with the other commits.
    pub fn commit_offsets_async(&self, offsets: &[CommitOffset]) -> Result<CommitFuture, Error> {
        let offsets = {
            let st = self.inner.lock();
            let foreign: Vec<String> = offsets
                .iter()
                .filter(|o| !st.partitions.contains_key(&o.topic_partition()))
                .map(|o| o.topic_partition().to_string())
                .collect();
            if !foreign.is_empty() {
                return Err(Error::Config(vec![format!(
                    "commit_offsets: not owned by this consumer: {}",
                    foreign.join(", ")
                )]));
            }
            offsets
                .iter()
                .map(|o| {
                    let mut o = o.clone();
                    if o.leader_epoch.is_none()
                        && let Some(p) = st.partitions.get(&o.topic_partition())
                    {
                        o.leader_epoch = p.epochs.before(o.offset);
                    }
                    o
                })
                .collect()
        };
        Ok(CommitFuture::spawn(
            &self.inner,
            group::start_commit(&self.inner, offsets),
        ))
    }

    /// Stops fetching and delivering a partition (buffered records stay).
    pub fn pause(&self, tp: &TopicPartition) {
        let mut st = self.inner.lock();
        st.paused.insert(tp.clone());
        if let Some(p) = st.partitions.get_mut(tp) {
            p.paused = true;
        }
    }

    /// Delivers `tp` from `offset` on (Java's `seek`): what was buffered is dropped, records
    /// delivered before are forgotten (acknowledging them does nothing), and the next commit
    /// names the new position once it is done. Commits never go backwards: after a seek back,
    /// the partition's committed offset stays until consumption passes it. An error if `tp`
    /// is not assigned to this consumer now.
    pub fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<(), Error> {
        listener::seek(&self.inner, tp, offset)
    }

    /// Seeks each partition to its first offset (Java's `seekToBeginning`).
    pub async fn seek_to_beginning(&self, tps: &[TopicPartition]) -> Result<(), Error> {
        self.seek_to(tps, crate::offsets::EARLIEST).await
    }

    /// Seeks each partition to its end (Java's `seekToEnd`): the high watermark, or with
    /// `read_committed` the last stable offset.
    pub async fn seek_to_end(&self, tps: &[TopicPartition]) -> Result<(), Error> {
        self.seek_to(tps, crate::offsets::LATEST).await
    }

    async fn seek_to(&self, tps: &[TopicPartition], timestamp: i64) -> Result<(), Error> {
        let at = crate::offsets::list_offsets_isolated(
            &self.inner.cluster,
            tps,
            timestamp,
            self.inner.isolation_level,
        )
        .await?;
        for tp in tps {
            let o = at.get(tp).copied().ok_or_else(|| Error::Broker {
                api: cohort_protocol::ApiKey::ListOffsets,
                code: cohort_protocol::ErrorCode::UnknownTopicOrPartition,
                context: tp.to_string(),
            })?;
            self.seek(tp, o)?;
        }
        Ok(())
    }

    /// The offset of the next record `tp` will deliver (Java's `position`); `None` when it is
    /// not assigned, or its starting offset is still being looked up.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        listener::position(&self.inner, tp)
    }

    /// The group's committed offsets of `tps` (Java's `committed`), read from the coordinator,
    /// with their metadata and leader epochs; `None` where nothing is committed.
    ///
    /// ```no_run
    /// # async fn run(consumer: cohort::Consumer) -> Result<(), cohort::Error> {
    /// use cohort::TopicPartition;
    ///
    /// let tp = TopicPartition::new("orders", 0);
    /// if let Some(c) = consumer.committed(&[tp.clone()]).await?[&tp].as_ref() {
    ///     println!("{tp} resumes at {} ({:?})", c.offset, c.metadata);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn committed(
        &self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<CommitOffset>>, Error> {
        crate::offsets::fetch_committed_as(
            &self.inner.cluster,
            &self.inner.group_id,
            None,
            tps,
            self.inner.cluster.config().request_timeout,
        )
        .await
    }

    /// What this consumer subscribed to (Java's `subscription()`): the topics, or the pattern
    /// (the topics it matches now are those the group assigns; see [`Consumer::assignment`]).
    pub fn subscription(&self) -> &crate::config::Subscription {
        &self.inner.subscription
    }

    /// Resumes a paused partition.
    pub fn resume(&self, tp: &TopicPartition) {
        {
            let mut st = self.inner.lock();
            st.paused.remove(tp);
            if let Some(p) = st.partitions.get_mut(tp) {
                p.paused = false;
            }
        }
        self.inner.fetchable.notify_waiters();
        self.inner.readable.notify_waiters();
    }

    /// Partitions currently owned and being consumed.
    pub fn assignment(&self) -> Assignment {
        let st = self.inner.lock();
        let mut a = Assignment::new();
        for TopicPartition {
            topic: t,
            partition: p,
        } in st.partitions.keys()
        {
            a.entry(t.clone()).or_default().insert(*p);
        }
        a
    }

    /// Current generation (-1 before the first).
    pub fn generation(&self) -> i32 {
        self.inner.lock().generation
    }

    /// Lag per partition and rebalance figures.
    pub async fn metrics(&self) -> ConsumerMetrics {
        let (lag, records_lag, buffered, delivered, generation) = {
            let st = self.inner.lock();
            let buffered = st
                .partitions
                .iter()
                .map(|(tp, p)| (tp.clone(), p.tracker.buffer.len()))
                .collect();
            let lag = st
                .partitions
                .iter()
                .filter(|(_, p)| p.high_watermark >= 0)
                .map(|(tp, p)| {
                    let base = p.tracker.committed.unwrap_or(p.tracker.fetch_offset);
                    (tp.clone(), (p.high_watermark - base).max(0))
                })
                .collect();
            let records_lag = st
                .partitions
                .iter()
                .filter(|(_, p)| p.high_watermark >= 0 && matches!(p.status, Status::Fetching))
                .map(|(tp, p)| (tp.clone(), (p.high_watermark - p.tracker.position()).max(0)))
                .collect();
            (lag, records_lag, buffered, st.delivered, st.generation)
        };
        let stats = self.inner.driver.stats().await.unwrap_or_default();
        ConsumerMetrics {
            lag,
            records_lag,
            buffered,
            delivered,
            rebalances: stats.member.rebalances,
            last_rebalance: stats.member.last_rebalance,
            rebalancing_total: stats.member.rebalancing_total,
            generation,
        }
    }

    /// Member details from the driver.
    pub async fn member_stats(&self) -> Option<DriverStats> {
        self.inner.driver.stats().await
    }

    /// Stops at once, as a crashed process would: no commit, no LeaveGroup, no more heartbeats.
    /// The coordinator notices after the session timeout. For tests and chaos runs.
    pub fn abort(mut self) {
        self.inner.driver.abort();
        self.inner.lock().closed = true;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Asks the group to rebalance.
    pub fn rejoin(&self, reason: &str) {
        self.inner.driver.rejoin(reason);
    }

    /// Closes the consumer: stops delivering, commits what is done (with auto-commit or
    /// `commit_on_revoke`), gives its partitions up ([`ConsumerEvent::Revoked`], or
    /// [`ConsumerEvent::Lost`] when that commit failed), then leaves the group (dynamic
    /// members) and returns when done, or after
    /// [`DEFAULT_CLOSE_TIMEOUT`] (30 s, as Java's `KafkaConsumer.close()`); see
    /// [`Consumer::close_within`].
    pub async fn close(self) -> Result<(), Error> {
        self.close_within(DEFAULT_CLOSE_TIMEOUT).await
    }

    /// [`Consumer::close`] within `limit`: a final commit or a LeaveGroup still unanswered
    /// then is given up, the member stops as [`Consumer::abort`] does (the coordinator lets it
    /// go after the session timeout) and the result is [`Error::Timeout`] naming the request
    /// that was waited for. Nothing processed is lost by that: what was not committed is
    /// consumed again by the next owner.
    pub async fn close_within(mut self, limit: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + limit;
        let gave_up = |api| Error::Timeout {
            api,
            broker: "the group coordinator".into(),
            elapsed_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        };
        let result = if self.commit_on_close {
            match tokio::time::timeout_at(deadline, commit_done(&self.inner, None)).await {
                Ok(r) => r.map(|_| ()),
                // The close's own limit; a commit that failed in time still leaves the group.
                Err(_) => {
                    self.abort();
                    return Err(gave_up(ApiKey::OffsetCommit));
                }
            }
        } else {
            Ok(())
        };
        self.inner.lock().closed = true;
        // The partitions are given up before the LeaveGroup goes out, so an application hears
        // of it (and stops acting on them) before the coordinator can hand them to another
        // member: Java's `AbstractCoordinator.close` calls `onLeavePrepare` (revoked, or lost
        // when the final commit failed) before `maybeLeaveGroup`.
        let owned = self.assignment();
        // The listener hears revoked when the final commit went through, lost otherwise; it
        // runs within what is left of the close's bound (at least a millisecond: a zero bound
        // would mean none).
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(1));
        give_up(&self.inner, &owned, result.is_ok(), false, left).await;
        if !owned.is_empty() {
            let generation = self.generation();
            self.inner.event(if result.is_ok() {
                ConsumerEvent::Revoked {
                    generation,
                    partitions: owned,
                }
            } else {
                ConsumerEvent::Lost { partitions: owned }
            });
        }
        let left = tokio::time::timeout_at(deadline, self.inner.driver.leave()).await;
        if left.is_err() {
            self.abort();
            return Err(gave_up(ApiKey::LeaveGroup));
        }
        self.inner.readable.notify_waiters();
        self.inner.fetchable.notify_waiters();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let _ = self.auto_commit;
        match result {
            Err(Error::CommitFailed(_)) => Ok(()),
            other => other,
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// Records delivered from one partition before the next gets its turn (Java's consumer also
/// drains a partition's fetched batch before moving on): fair across partitions, and the hot
/// path is one map lookup per record.
const BURST: usize = 500;

/// Takes the next deliverable record, round-robin over partitions in bursts. The flag says
/// whether the partition's buffer has room for another fetch now (wake the fetchers).
/// Takes up to `limit` records for delivery, appending them to `out`: up to [`BURST`] in a row
/// from one partition, then on to the next in key order (round robin), so no partition waits
/// behind a busy one. Returns how many, and whether a partition's buffer drained enough for
/// the fetchers to fetch again.
fn take_records(
    st: &mut State,
    max_buffered: usize,
    limit: usize,
    out: &mut Vec<ConsumerRecord>,
) -> (usize, bool) {
    // Delivery of up to `want` records from `p`: its emptied record vectors go back to the
    // fetchers.
    let mut deliver =
        |p: &mut PartitionState, spare: &mut tracker::Spare<ConsumerRecord>, want: usize| {
            let before = p.tracker.buffer.len();
            let n = p.tracker.deliver_many(want, out);
            if let Some(v) = p.tracker.buffer.exhausted.take() {
                spare.give(v);
            }
            let after = p.tracker.buffer.len();
            let half = max_buffered / 2;
            (n, n > 0 && (after == 0 || (before > half && after <= half)))
        };
    let (mut taken, mut refill) = (0, false);
    // Set when the partition just chosen is to deliver next: if it cannot, stop rather than
    // choose again.
    let mut chosen = false;
    while taken < limit {
        if let Some((tp, run)) = &mut st.current
            && *run < BURST
            && let Some(p) = st.partitions.get_mut(tp)
            && !p.paused
        {
            let (n, more) = deliver(p, &mut st.spare, (BURST - *run).min(limit - taken));
            if n > 0 {
                *run += n;
                st.delivered += n as u64;
                taken += n;
                refill |= more;
                chosen = false;
                continue;
            }
        }
        if chosen {
            st.current = None;
            break;
        }
        // On to the next partition with records, from the cursor round.
        let n = st.partitions.len();
        if n == 0 {
            break;
        }
        let start = st.cursor % n;
        let next = st
            .partitions
            .iter()
            .enumerate()
            .skip(start)
            .chain(st.partitions.iter().enumerate().take(start))
            .find(|(_, (_, p))| !p.paused && p.tracker.buffer.len() > 0)
            .map(|(i, (tp, _))| (i, tp.clone()));
        match next {
            Some((i, tp)) => {
                st.cursor = i + 1;
                st.current = Some((tp, 0));
                chosen = true;
            }
            None => {
                st.current = None;
                break;
            }
        }
    }
    (taken, refill)
}
