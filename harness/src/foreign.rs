//! A librdkafka member (through rust-rdkafka), recording the same journal as cohort members, so
//! scenarios and interop tests can mix the reference C client into our groups.
//!
//! librdkafka runs its own threads; the member polls it on a thread of its own. It processes a
//! record and notes its offset; every auto-commit interval, before giving partitions up and
//! before leaving, it commits what it processed synchronously, on the polling thread, and
//! journals each commit when it returns (an at-least-once setup whose commits cover only
//! processed records).
//!
//! Not librdkafka's auto-commit: its commit results reach the application through the
//! commit callback on a later poll, so a journal written from the callback records commits
//! late, after the revoke of their partitions, after the new owner's commit of them, or out
//! of their order (a soak run of 6,600 s showed all three: 32 commits "without owning" and 8
//! "going backwards" that the broker never saw in that order).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::error::HarnessError;
use crate::journal::{Event, Offsets, Partitions, RunFolder};
use crate::member::{MemberOptions, Sink, StopHow};

/// The librdkafka version linked in.
pub fn librdkafka_version() -> String {
    rdkafka::util::get_rdkafka_version().1
}

struct Ctx {
    sink: Sink,
    /// Whole assignment as last reported (librdkafka's incremental events are folded in).
    owned: std::sync::Mutex<Partitions>,
    /// Processed records not yet journaled; flushed before any rebalance event so the
    /// journal never shows a record after the revoke of its partition.
    runs: std::sync::Mutex<RunFolder>,
    /// Offsets to commit: the next offset after the last processed record, per owned
    /// partition, and what was last committed of each.
    offsets: std::sync::Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    next: BTreeMap<(String, i32), i64>,
    committed: BTreeMap<(String, i32), i64>,
}

impl Ctx {
    fn flush(&self) {
        let closed = self.runs.lock().unwrap_or_else(|e| e.into_inner()).flush();
        for e in closed {
            (self.sink)(e);
        }
    }

    /// Commits, synchronously, what was processed of the partitions `only` names (all when
    /// `None`) and not committed yet, and journals the commit once the coordinator accepted
    /// it: the journal's order is the commits' order.
    fn commit_processed(&self, consumer: &BaseConsumer<Self>, only: Option<&Partitions>) {
        let due: Vec<((String, i32), i64)> = {
            let p = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
            p.next
                .iter()
                .filter(|((t, part), _)| {
                    only.is_none_or(|o| o.get(t).is_some_and(|ps| ps.contains(part)))
                })
                .filter(|(k, v)| p.committed.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, part), v) in &due {
            if let Err(e) = tpl.add_partition_offset(t, *part, Offset::Offset(*v)) {
                (self.sink)(Event::Error {
                    message: format!("commit: {e}"),
                });
                return;
            }
        }
        // Records processed so far come first in the journal: a crash right after the commit
        // cannot leave committed records missing from it.
        self.flush();
        let requested = crate::journal::now_us();
        match consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => {
                let mut o = Offsets::new();
                let mut p = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
                for ((t, part), v) in due {
                    o.entry(t.clone()).or_default().insert(part, v);
                    p.committed.insert((t, part), v);
                }
                drop(p);
                (self.sink)(Event::Committed {
                    generation: -1,
                    offsets: o,
                    requested,
                });
            }
            // The group moved to a new generation while the commit was on its way: the
            // coordinator refused it and nothing was committed, so the partitions' next owner
            // resumes from the last commit, and the checker explains the records read twice by
            // the hand-over. A member's own error it is not: Java's commitSync reports the same
            // case as CommitFailedException or RebalanceInProgressException, for the
            // application to carry on.
            Err(rdkafka::error::KafkaError::ConsumerCommit(code)) if generation_moved_on(code) => {}
            Err(e) => (self.sink)(Event::Error {
                message: format!("commit: {e}"),
            }),
        }
    }

    /// Forgets the progress of partitions given up.
    fn forget(&self, partitions: &Partitions) {
        let mut p = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let gone =
            |(t, part): &(String, i32)| partitions.get(t).is_some_and(|ps| ps.contains(part));
        p.next.retain(|k, _| !gone(k));
        p.committed.retain(|k, _| !gone(k));
    }
}

/// Commit errors that mean the commit lost a race with a rebalance (the generation or the
/// member's epoch moved on, or the member's assignment is gone), not that the member failed.
fn generation_moved_on(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::IllegalGeneration
            | C::RebalanceInProgress
            | C::UnknownMemberId
            | C::AssignmentLost
            | C::StaleMemberEpoch
    )
}

impl ClientContext for Ctx {
    // librdkafka's own log lines would drown the run's output; errors reach the journal
    // through rebalance and commit callbacks and poll results.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, _log_message: &str) {}
}

fn to_partitions(tpl: &TopicPartitionList) -> Partitions {
    let mut out = Partitions::new();
    for e in tpl.elements() {
        out.entry(e.topic().to_owned())
            .or_default()
            .push(e.partition());
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    out
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.flush();
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions = to_partitions(tpl);
                // Commit what was processed before giving the partitions up (librdkafka does
                // not on its own in a rebalance callback); a lost partition is not committed.
                if !consumer.assignment_lost() {
                    self.commit_processed(consumer, Some(&partitions));
                }
                self.forget(&partitions);
                {
                    let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
                    for (t, ps) in &partitions {
                        if let Some(cur) = owned.get_mut(t) {
                            cur.retain(|p| !ps.contains(p));
                        }
                    }
                    owned.retain(|_, ps| !ps.is_empty());
                }
                (self.sink)(if consumer.assignment_lost() {
                    Event::Lost { partitions }
                } else {
                    Event::Revoked {
                        generation: -1,
                        partitions,
                    }
                });
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => (self.sink)(Event::Error {
                message: format!("rebalance: {e}"),
            }),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            let partitions = consumer
                .assignment()
                .map(|a| to_partitions(&a))
                .unwrap_or_default();
            *self.owned.lock().unwrap_or_else(|e| e.into_inner()) = partitions.clone();
            (self.sink)(Event::Assigned {
                generation: -1,
                member_id: String::new(),
                leader: None,
                protocol: Some(
                    match consumer.rebalance_protocol() {
                        RebalanceProtocol::Cooperative => "cooperative",
                        RebalanceProtocol::Eager => "eager",
                        RebalanceProtocol::None => "none",
                    }
                    .to_owned(),
                ),
                partitions,
            });
        }
    }
}

/// A librdkafka member on a thread.
pub struct RdMember {
    /// Name.
    pub name: String,
    stop: Arc<AtomicU64>,
    processing_us: Arc<AtomicU64>,
    paused: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RdMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdMember")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

const RUNNING: u64 = 0;
const CLOSE: u64 = 1;

/// librdkafka's name for a balancer.
fn strategy(name: &str) -> Result<&'static str, HarnessError> {
    Ok(match name {
        "range" => "range",
        "roundrobin" => "roundrobin",
        "cooperative-sticky" => "cooperative-sticky",
        other => {
            return Err(HarnessError::invalid(format!(
                "librdkafka has no {other:?} assignor"
            )));
        }
    })
}

/// librdkafka settings matching a cohort member's.
pub fn rd_config(opts: &MemberOptions) -> Result<RdConfig, HarnessError> {
    let strategies = opts
        .balancers
        .iter()
        .map(|b| strategy(b))
        .collect::<Result<Vec<_>, _>>()?;
    let mut c = RdConfig::new();
    c.set("bootstrap.servers", &opts.bootstrap)
        .set("group.id", &opts.group)
        .set("client.id", format!("rdkafka-{}", opts.name));
    // librdkafka is built here without OpenSSL: SSL, SCRAM and OAUTHBEARER are refused at
    // configuration time with librdkafka's own message; PLAIN works.
    for (k, v) in opts.security.librdkafka_properties() {
        c.set(k, v);
    }
    c.set(
        "isolation.level",
        match opts.isolation_level {
            cohort::IsolationLevel::ReadCommitted => "read_committed",
            cohort::IsolationLevel::ReadUncommitted => "read_uncommitted",
        },
    );
    if opts.group_protocol == cohort::GroupProtocol::Consumer {
        // KIP-848 (librdkafka 2.12+): the broker owns session, heartbeat and assignment, and
        // librdkafka refuses those settings with this protocol, as Java does.
        c.set("group.protocol", "consumer");
        if let Some(a) = &opts.group_remote_assignor {
            c.set("group.remote.assignor", a);
        }
    } else {
        c.set("partition.assignment.strategy", strategies.join(","))
            .set(
                "session.timeout.ms",
                opts.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                opts.heartbeat_interval.as_millis().to_string(),
            );
    }
    c.set(
        "max.poll.interval.ms",
        opts.max_poll_interval.as_millis().to_string(),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("auto.offset.reset", "earliest")
    .set("broker.address.family", "v4");
    if let Some(id) = &opts.instance_id {
        c.set("group.instance.id", id);
    }
    Ok(c)
}

impl RdMember {
    /// Starts a librdkafka member with the same settings a cohort member would get.
    pub fn start(opts: MemberOptions, sink: Sink) -> Result<Self, HarnessError> {
        let cfg = rd_config(&opts)?;
        let ctx = Ctx {
            sink: sink.clone(),
            owned: Default::default(),
            runs: Default::default(),
            offsets: Default::default(),
        };
        let consumer: BaseConsumer<Ctx> = cfg
            .create_with_context(ctx)
            .map_err(HarnessError::librdkafka("creating the consumer"))?;
        let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(HarnessError::librdkafka("subscribe"))?;
        sink(Event::Started {
            client: format!("librdkafka {}", librdkafka_version()),
            balancers: opts.strategies(),
            instance_id: opts.instance_id.clone(),
        });
        let stop = Arc::new(AtomicU64::new(RUNNING));
        let processing_us = Arc::new(AtomicU64::new(opts.processing.as_micros() as u64));
        let paused = Arc::new(AtomicBool::new(false));
        let (s2, p2, pa2) = (stop.clone(), processing_us.clone(), paused.clone());
        let commit_every = opts.auto_commit_interval;
        let thread = std::thread::Builder::new()
            .name(format!("rdkafka-{}", opts.name))
            .spawn(move || poll_loop(consumer, sink, s2, p2, pa2, commit_every))
            .map_err(HarnessError::io("starting the polling thread"))?;
        Ok(Self {
            name: opts.name,
            stop,
            processing_us,
            paused,
            thread: Some(thread),
        })
    }

    /// Changes the time each record takes.
    pub fn set_processing(&self, d: Duration) {
        self.processing_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Stops processing (polling continues, so librdkafka keeps its membership).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Closes the member (it commits what it processed and leaves the group). A crash
    /// cannot be simulated inside this process: librdkafka's threads would keep heartbeating.
    /// Run a librdkafka member as a process (`cohort member --client librdkafka`) for that.
    /// Returns within about `CLOSE_LIMIT` (45 s) even when librdkafka's close does not finish;
    /// the journal then has an error saying so.
    pub fn stop(mut self, how: StopHow) {
        debug_assert_eq!(how, StopHow::Close);
        self.stop.store(CLOSE, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Whether the thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for RdMember {
    fn drop(&mut self) {
        self.stop.store(CLOSE, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_loop(
    consumer: BaseConsumer<Ctx>,
    sink: Sink,
    stop: Arc<AtomicU64>,
    processing_us: Arc<AtomicU64>,
    paused: Arc<AtomicBool>,
    commit_every: Duration,
) {
    let mut last_flush = std::time::Instant::now();
    let mut last_commit = std::time::Instant::now();
    while stop.load(Ordering::Relaxed) == RUNNING {
        if paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let delivered = crate::journal::now_us();
                let d = Duration::from_micros(processing_us.load(Ordering::Relaxed));
                if !d.is_zero() {
                    std::thread::sleep(d);
                }
                // The record may have been revoked while it was processed: its offset is not
                // noted then (as librdkafka refuses to store one of a partition it does not own).
                let owned = consumer
                    .context()
                    .owned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(m.topic())
                    .is_some_and(|ps| ps.contains(&m.partition()));
                if owned {
                    consumer
                        .context()
                        .offsets
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .next
                        .insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                    let closed = consumer
                        .context()
                        .runs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .add(m.topic(), m.partition(), m.offset(), -1, delivered);
                    if let Some(e) = closed {
                        sink(e);
                    }
                }
            }
            Some(Err(e)) => sink(Event::Error {
                message: e.to_string(),
            }),
            None => {}
        }
        if last_flush.elapsed() > Duration::from_millis(200) {
            consumer.context().flush();
            last_flush = std::time::Instant::now();
        }
        if last_commit.elapsed() >= commit_every {
            consumer.context().commit_processed(&consumer, None);
            last_commit = std::time::Instant::now();
        }
    }
    consumer.context().flush();
    if close(&consumer, CLOSE_LIMIT) {
        drop(consumer);
    } else {
        // rust-rdkafka's drop would poll until the close finishes, without a bound, and the
        // thread joining this one (a test, a scenario's stop) would hang with it. Leaking the
        // handle keeps librdkafka's threads alive in this process, but the run goes on and the
        // journal says what happened.
        sink(Event::Error {
            message: format!(
                "close: librdkafka did not finish closing within {} s",
                CLOSE_LIMIT.as_secs()
            ),
        });
        std::mem::forget(consumer);
    }
    sink(Event::Left);
}

/// How long a librdkafka member may take to commit, give up its partitions and leave.
const CLOSE_LIMIT: Duration = Duration::from_secs(45);

/// Commits what is stored, gives the assignment up and leaves the group, polling so the
/// rebalance callbacks run; false when that did not finish within `limit`.
///
/// The order is the one that avoids librdkafka's hang when an incremental assignment arrives
/// while the consumer closes (confluentinc/librdkafka#4527): unsubscribe, poll until nothing
/// is assigned, then close through the queue and poll until closed.
fn close(consumer: &BaseConsumer<Ctx>, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    consumer.context().commit_processed(consumer, None);
    consumer.unsubscribe();
    let assigned = || {
        consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false)
    };
    while assigned() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        // Records still buffered are not processed: their offsets are not stored.
        let _ = consumer.poll(Duration::from_millis(100));
    }
    if consumer.close_queue().is_err() {
        return true;
    }
    while !consumer.closed() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        let _ = consumer.poll(Duration::from_millis(100));
    }
    true
}
