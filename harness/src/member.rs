//! A group member built on the cohort consumer, recording everything it does: run in-process by
//! the harness (one task per member, its connections through a [`ChaosDialer`]) and as the
//! `cohort member` process (same loop, events as JSON lines on stdout).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cohort::member::CommitOffset;
use cohort::unstable::{Cluster, Target};
use cohort::{
    ClientConfig, Consumer, ConsumerEvent, ConsumerRecord, GroupConfig, GroupProtocol, OffsetReset,
};
use cohort_balancers::{Balancer, WeightedSticky};
use cohort_protocol::messages::{OffsetCommitRequest, offset_commit_request};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::HarnessError;
use crate::journal::{Event, Journal, RunFolder, offsets_of, partitions_of};
use crate::net::{ChaosDialer, NetFaults};

/// Where a member's events go.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// A sink that appends to `journal` under `source`.
pub fn journal_sink(journal: &Journal, source: &str) -> Sink {
    let (j, s) = (journal.clone(), source.to_owned());
    Arc::new(move |e| j.record(&s, e))
}

/// A deliberate bug, so tests can show the checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bug {
    /// After a revoke, commits the revoked partitions' offsets again once the next generation
    /// runs (with its member id and generation, which Kafka accepts: the classic protocol
    /// does not check ownership), rewinding what the new owner committed.
    CommitAfterRevoke,
}

/// How a member is set up.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// Name in the journal and reports.
    pub name: String,
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Group id.
    pub group: String,
    /// Topics.
    pub topics: Vec<String>,
    /// Balancer protocol names, in priority order.
    pub balancers: Vec<String>,
    /// Weight for the weighted sticky balancer.
    pub weight: u32,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Processing bound (`max.poll.interval.ms`).
    pub max_poll_interval: Duration,
    /// Auto-commit interval.
    pub auto_commit_interval: Duration,
    /// Time to process one record.
    pub processing: Duration,
    /// A deliberate bug.
    pub bug: Option<Bug>,
    /// See `GroupConfig::cooperative_rejoin_delay`.
    pub cooperative_rejoin_delay: Duration,
    /// See `GroupConfig::jitter_seed`.
    pub jitter_seed: Option<u64>,
    /// `group.protocol`: classic, or the consumer protocol of KIP-848 (the broker then owns
    /// the session timeout, the heartbeat interval and the assignment: those settings are not
    /// applied).
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor` (consumer protocol).
    pub group_remote_assignor: Option<String>,
    /// `security.protocol` and its SASL and TLS settings (`Debug` hides the password).
    pub security: crate::security::Security,
    /// Acknowledge a record only once its `processed` line is written. A process member sets
    /// it: its lines go out through a pipe in runs, the consumer auto-commits acknowledged
    /// records on a timer of its own, and a SIGKILL between the two would leave a committed
    /// record without a line (the checker would call it lost). The cost is up to one flush
    /// period of records processed again after a hand-over. An in-process member's journal
    /// cannot lose a line, so it acknowledges at once.
    pub journal_before_ack: bool,
    /// `isolation.level`.
    pub isolation_level: cohort::IsolationLevel,
}

impl MemberOptions {
    /// Defaults for a harness member: short timeouts so rebalances are quick on Tansu (which
    /// holds JoinGroup for half the session timeout).
    pub fn new(name: &str, bootstrap: &str, group: &str, topics: &[String]) -> Self {
        Self {
            name: name.to_owned(),
            bootstrap: bootstrap.to_owned(),
            group: group.to_owned(),
            topics: topics.to_vec(),
            balancers: vec!["cooperative-sticky".into()],
            weight: 1,
            instance_id: None,
            session_timeout: Duration::from_secs(6),
            heartbeat_interval: Duration::from_millis(500),
            rebalance_timeout: Duration::from_secs(15),
            max_poll_interval: Duration::from_secs(30),
            auto_commit_interval: Duration::from_millis(500),
            processing: Duration::ZERO,
            bug: None,
            cooperative_rejoin_delay: Duration::ZERO,
            jitter_seed: None,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            security: crate::security::Security::default(),
            journal_before_ack: false,
            isolation_level: cohort::IsolationLevel::ReadUncommitted,
        }
    }

    /// What the member names its assignment strategy in its `started` line: the balancers,
    /// or the consumer protocol and the broker-side assignor it asks for.
    pub fn strategies(&self) -> Vec<String> {
        match self.group_protocol {
            GroupProtocol::Consumer => vec![format!(
                "consumer-protocol:{}",
                self.group_remote_assignor.as_deref().unwrap_or("default")
            )],
            _ => self.balancers.clone(),
        }
    }

    /// The balancers, built from their protocol names.
    pub fn build_balancers(&self) -> Result<Vec<Box<dyn Balancer>>, HarnessError> {
        if self.balancers.is_empty() {
            return Err(HarnessError::invalid(
                "a member needs at least one balancer",
            ));
        }
        self.balancers
            .iter()
            .map(|n| balancer(n, self.weight))
            .collect()
    }

    /// The group core configuration, connections through `faults`.
    pub fn group_config(&self, faults: &NetFaults) -> Result<GroupConfig, HarnessError> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let mut cfg = GroupConfig::new(&self.bootstrap, &self.group, &topics);
        cfg.client.client_id = format!("cohort-{}", self.name);
        cfg.client.dialer = Arc::new(ChaosDialer::new(faults.clone()));
        // TLS and SASL over the chaos dialer: its faults hit the encrypted stream, as a
        // network's would.
        cfg.client = self
            .security
            .apply(std::mem::replace(&mut cfg.client, ClientConfig::new("")))?;
        cfg.group_instance_id = self.instance_id.clone();
        if self.group_protocol == GroupProtocol::Consumer {
            cfg.group_protocol = GroupProtocol::Consumer;
            cfg.group_remote_assignor = self.group_remote_assignor.clone();
        } else {
            cfg.balancers = self.build_balancers()?;
            cfg.session_timeout = self.session_timeout;
            cfg.heartbeat_interval = self.heartbeat_interval;
        }
        cfg.rebalance_timeout = self.rebalance_timeout;
        cfg.max_poll_interval = self.max_poll_interval;
        cfg.auto_commit_interval = Some(self.auto_commit_interval);
        cfg.offset_reset = OffsetReset::Earliest;
        cfg.isolation_level = self.isolation_level;
        cfg.partition_watch_interval = Duration::from_secs(1);
        cfg.cooperative_rejoin_delay = self.cooperative_rejoin_delay;
        cfg.jitter_seed = self.jitter_seed;
        cfg.validate()
            .map_err(HarnessError::client("the member's settings"))?;
        Ok(cfg)
    }
}

/// How a member stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopHow {
    /// Commit, LeaveGroup (dynamic members), exit.
    Close,
    /// No commit, no LeaveGroup, no more heartbeats: a crash.
    Crash,
}

/// Controls a running member from outside its task.
#[derive(Debug, Clone)]
pub struct Controls {
    /// Network faults of this member.
    pub faults: NetFaults,
    processing_us: Arc<AtomicU64>,
    frozen: Arc<AtomicBool>,
}

impl Controls {
    fn new(processing: Duration) -> Self {
        Self {
            faults: NetFaults::new(),
            processing_us: Arc::new(AtomicU64::new(processing.as_micros() as u64)),
            frozen: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Changes the time each record takes.
    pub fn set_processing(&self, d: Duration) {
        self.processing_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Freezes the member: nothing of it reaches the broker and it processes nothing, as a
    /// process stopped with SIGSTOP (for in-process members, where no signal can stop one task).
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
        self.faults.set_blackhole(true);
    }

    /// Ends a freeze.
    pub fn thaw(&self) {
        self.faults.set_blackhole(false);
        self.frozen.store(false, Ordering::Relaxed);
    }

    fn processing(&self) -> Duration {
        Duration::from_micros(self.processing_us.load(Ordering::Relaxed))
    }

    fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }
}

/// A cohort member running as a task.
pub struct CohortMember {
    /// Name.
    pub name: String,
    controls: Controls,
    stop: Option<oneshot::Sender<StopHow>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for CohortMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CohortMember")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CohortMember {
    /// Starts the member; its events go to `sink`.
    pub async fn start(opts: MemberOptions, sink: Sink) -> Result<Self, HarnessError> {
        let controls = Controls::new(opts.processing);
        let cfg = opts.group_config(&controls.faults)?;
        sink(Event::Started {
            client: "cohort".into(),
            balancers: opts.strategies(),
            instance_id: opts.instance_id.clone(),
        });
        let consumer = Consumer::new(cfg)
            .await
            .map_err(HarnessError::client("starting the consumer"))?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run(consumer, opts.clone(), controls.clone(), sink, rx));
        Ok(Self {
            name: opts.name,
            controls,
            stop: Some(tx),
            task,
        })
    }

    /// Fault controls.
    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    /// Whether the member still runs.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the member and waits for it.
    pub async fn stop(mut self, how: StopHow) {
        self.controls.thaw();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(how);
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the member ends by itself (a fatal error).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// The member loop: records in, acknowledgements and journal entries out. Group events are
/// journaled by a task of their own as they happen (a loss is recorded when the consumer
/// declares it, even while a record is being processed); processed records are journaled in
/// runs, flushed before every event.
pub async fn run(
    mut consumer: Consumer,
    opts: MemberOptions,
    controls: Controls,
    sink: Sink,
    mut stop: oneshot::Receiver<StopHow>,
) {
    let mut events = consumer.events().expect("events are taken once");
    let runs = Arc::new(std::sync::Mutex::new(RunFolder::default()));
    let generation = Arc::new(std::sync::atomic::AtomicI32::new(-1));
    let fatal = Arc::new(tokio::sync::Notify::new());
    let flush = {
        let (runs, sink) = (Arc::clone(&runs), sink.clone());
        move || {
            let closed = runs.lock().unwrap_or_else(|e| e.into_inner()).flush();
            for e in closed {
                sink(e);
            }
        }
    };
    let bug = opts
        .bug
        .map(|b| Arc::new(std::sync::Mutex::new(BugState::new(b, &opts))));
    let event_task = {
        let (flush, sink, generation, fatal) = (
            flush.clone(),
            sink.clone(),
            Arc::clone(&generation),
            Arc::clone(&fatal),
        );
        let bug = bug.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                // Records processed before the event come first in the journal.
                flush();
                if let ConsumerEvent::Assigned { generation: g, .. } = &ev {
                    generation.store(*g, Ordering::Relaxed);
                }
                let is_fatal = matches!(&ev, ConsumerEvent::Error(e) if e.is_fatal());
                if let Some(b) = &bug {
                    b.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .observe(&ev, &sink);
                }
                if let Some(e) = translate(ev, generation.load(Ordering::Relaxed)) {
                    sink(e);
                }
                if is_fatal {
                    fatal.notify_one();
                }
            }
        })
    };
    // Records processed but not yet acknowledged (`journal_before_ack`): the last one of each
    // partition, acknowledged with everything before it once the lines are written.
    let mut unacked: BTreeMap<(Arc<str>, i32), ConsumerRecord> = BTreeMap::new();
    let flush_and_ack = |consumer: &Consumer, unacked: &mut BTreeMap<_, ConsumerRecord>| {
        flush();
        for r in std::mem::take(unacked).into_values() {
            // The member processes each partition's records in order, so every record
            // delivered up to this one is done.
            consumer.ack_through(&r);
        }
    };
    let mut flush_at = tokio::time::Instant::now() + Duration::from_millis(200);
    loop {
        if controls.is_frozen() {
            tokio::select! {
                how = &mut stop => {
                    flush_and_ack(&consumer, &mut unacked);
                    finish(consumer, how.unwrap_or(StopHow::Close), &flush, &sink, event_task).await;
                    return;
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => continue,
            }
        }
        tokio::select! {
            biased;
            how = &mut stop => {
                flush_and_ack(&consumer, &mut unacked);
                finish(consumer, how.unwrap_or(StopHow::Close), &flush, &sink, event_task).await;
                return;
            }
            () = fatal.notified() => {
                flush();
                sink(Event::Crashed);
                consumer.abort();
                event_task.abort();
                return;
            }
            () = tokio::time::sleep_until(flush_at) => {
                flush_and_ack(&consumer, &mut unacked);
                flush_at = tokio::time::Instant::now() + Duration::from_millis(200);
            }
            r = consumer.recv() => match r {
                Some(Ok(rec)) => {
                    let delivered = crate::journal::now_us();
                    let d = controls.processing();
                    if !d.is_zero() {
                        tokio::time::sleep(d).await;
                    }
                    if let Some(b) = &bug {
                        b.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .processed(&rec.topic, rec.partition, rec.offset);
                    }
                    let closed = runs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .add(&rec.topic, rec.partition, rec.offset, rec.generation, delivered);
                    if let Some(e) = closed {
                        sink(e);
                    }
                    if opts.journal_before_ack {
                        unacked.insert((Arc::clone(&rec.topic), rec.partition), rec);
                    } else {
                        consumer.ack(&rec);
                    }
                }
                Some(Err(e)) => {
                    flush();
                    sink(Event::Error { message: e.to_string() });
                    sink(Event::Crashed);
                    consumer.abort();
                    event_task.abort();
                    return;
                }
                None => {
                    flush();
                    sink(Event::Left);
                    event_task.abort();
                    return;
                }
            },
        }
    }
}

async fn finish(
    consumer: Consumer,
    how: StopHow,
    flush: &(impl Fn() + Send + Sync),
    sink: &Sink,
    event_task: tokio::task::JoinHandle<()>,
) {
    flush();
    match how {
        StopHow::Close => {
            // The close commits and revokes; its events reach the journal through the event
            // task, which ends when the consumer is gone.
            if let Err(e) = consumer.close().await {
                sink(Event::Error {
                    message: format!("close: {e}"),
                });
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), event_task).await;
            flush();
            sink(Event::Left);
        }
        StopHow::Crash => {
            consumer.abort();
            event_task.abort();
            sink(Event::Crashed);
        }
    }
}

/// The journal's view of a consumer event.
pub fn translate(ev: ConsumerEvent, generation: i32) -> Option<Event> {
    Some(match ev {
        ConsumerEvent::Rebalancing { reason } => Event::Rebalancing { reason },
        ConsumerEvent::Assigned {
            generation,
            member_id,
            leader,
            protocol,
            assignment,
            ..
        } => Event::Assigned {
            generation,
            member_id,
            leader: Some(leader),
            protocol: Some(protocol),
            partitions: partitions_of(&assignment),
        },
        ConsumerEvent::Revoked {
            generation,
            partitions,
        } => Event::Revoked {
            generation,
            partitions: partitions_of(&partitions),
        },
        ConsumerEvent::Lost { partitions } => Event::Lost {
            partitions: partitions_of(&partitions),
        },
        ConsumerEvent::Committed {
            offsets,
            requested_at,
        } => {
            if offsets.is_empty() {
                return None;
            }
            let ago = requested_at.elapsed().as_micros() as u64;
            Event::Committed {
                generation,
                offsets: offsets_of(&offsets),
                requested: crate::journal::now_us().saturating_sub(ago),
            }
        }
        ConsumerEvent::Error(e) => Event::Error {
            message: e.to_string(),
        },
        ConsumerEvent::Truncated {
            partition,
            position,
            diverged_at,
        } => Event::Error {
            message: format!(
                "log of {partition} truncated below position {position} (diverged at {diverged_at:?})"
            ),
        },
    })
}

/// The state of a deliberate bug.
struct BugState {
    bug: Bug,
    cluster: Cluster,
    group: String,
    /// Next offset per partition, from what was processed.
    done: BTreeMap<(String, i32), i64>,
    /// The member's current generation and id, for the stale commit.
    current: Arc<std::sync::Mutex<(i32, String)>>,
}

/// How long after a revoke the buggy member commits the revoked partitions again: late enough
/// that their new owner (assigned in the next round of a cooperative rebalance) has committed
/// progress of its own, which the stale commit then rewinds.
const BUG_DELAY: Duration = Duration::from_secs(7);

impl BugState {
    fn new(bug: Bug, opts: &MemberOptions) -> Self {
        Self {
            bug,
            // The member's own settings passed the same check when it started, so this only
            // falls back to a plain client if a certificate file vanished meanwhile.
            cluster: Cluster::new(
                opts.security
                    .client_config(&opts.bootstrap)
                    .unwrap_or_else(|_| ClientConfig::new(&opts.bootstrap)),
            ),
            group: opts.group.clone(),
            done: BTreeMap::new(),
            current: Arc::new(std::sync::Mutex::new((-1, String::new()))),
        }
    }

    fn processed(&mut self, topic: &str, partition: i32, offset: i64) {
        self.done.insert((topic.to_owned(), partition), offset + 1);
    }

    fn observe(&mut self, ev: &ConsumerEvent, sink: &Sink) {
        match (self.bug, ev) {
            (
                Bug::CommitAfterRevoke,
                ConsumerEvent::Assigned {
                    generation,
                    member_id,
                    ..
                },
            ) => {
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
                    (*generation, member_id.clone());
            }
            (Bug::CommitAfterRevoke, ConsumerEvent::Revoked { partitions, .. }) => {
                let mut stale = Vec::new();
                for (t, ps) in partitions {
                    for p in ps {
                        if let Some(&o) = self.done.get(&(t.clone(), *p)) {
                            stale.push(CommitOffset::new(t.clone(), *p, o));
                        }
                    }
                }
                if stale.is_empty() {
                    return;
                }
                let (cluster, group, sink, current) = (
                    self.cluster.clone(),
                    self.group.clone(),
                    sink.clone(),
                    Arc::clone(&self.current),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(BUG_DELAY).await;
                    // With the member's current generation and id, which the coordinator
                    // accepts: the classic protocol does not check partition ownership.
                    let (generation, member_id) =
                        current.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let requested = crate::journal::now_us();
                    let ok = raw_commit(&cluster, &group, generation, &member_id, &stale).await;
                    // The buggy member reports its commit like any other.
                    if ok {
                        sink(Event::Committed {
                            generation,
                            offsets: offsets_of(&stale),
                            requested,
                        });
                    } else {
                        sink(Event::Error {
                            message: "stale commit rejected".into(),
                        });
                    }
                });
            }
            _ => {}
        }
    }
}

async fn raw_commit(
    cluster: &Cluster,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &[CommitOffset],
) -> bool {
    let Ok(coordinator) = cluster.find_coordinator(group).await else {
        return false;
    };
    let mut topics: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
        BTreeMap::new();
    for o in offsets {
        topics.entry(&o.topic).or_default().push(
            offset_commit_request::OffsetCommitRequestPartition {
                partition_index: o.partition,
                committed_offset: o.offset,
                committed_leader_epoch: -1,
                ..Default::default()
            },
        );
    }
    let req = OffsetCommitRequest {
        group_id: group.to_owned().into(),
        generation_id_or_member_epoch: generation,
        member_id: member_id.to_owned().into(),
        retention_time_ms: -1,
        topics: topics
            .into_iter()
            .map(
                |(t, partitions)| offset_commit_request::OffsetCommitRequestTopic {
                    name: t.to_owned().into(),
                    partitions,
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    };
    match cluster
        .send(
            Target::Coordinator(coordinator),
            &req,
            Duration::from_secs(5),
        )
        .await
    {
        Ok(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| p.error_code == 0),
        Err(_) => false,
    }
}

/// A balancer by its protocol name (`weight` is for `cohort-weighted-sticky`).
pub fn balancer(name: &str, weight: u32) -> Result<Box<dyn Balancer>, HarnessError> {
    if name == cohort_balancers::WEIGHTED_PROTOCOL_NAME {
        return Ok(Box::new(WeightedSticky::new(weight)));
    }
    cohort_balancers::by_name(name).ok_or_else(|| {
        HarnessError::invalid(format!(
            "unknown balancer {name:?} (known: {})",
            cohort_balancers::PROTOCOL_NAMES.join(", ")
        ))
    })
}
