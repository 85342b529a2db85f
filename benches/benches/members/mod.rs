//! Group members for the rebalance measurements, shared by `benches/group.rs` and
//! `examples/rebalance_trace.rs` so that both run the same clients with the same settings: a
//! cohort consumer in a task and a librdkafka consumer polling on its own thread, each counting
//! what it owns and consumes, and optionally printing a timeline of its rebalance events.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort::member::Assignment;
use cohort::{Consumer, ConsumerEvent, GroupConfig, OffsetReset, Producer, ProducerRecord};
use rdkafka::config::{ClientConfig as RdConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};

/// Session timeout of every member (Tansu holds each JoinGroup for half of it).
pub(crate) const SESSION: Duration = Duration::from_secs(6);
/// Heartbeat interval of every member.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a settled two-member group sits idle before the third member starts.
pub(crate) const SETTLED_IDLE: Duration = Duration::from_secs(2);

/// cohort's settings: the same timeouts, offset reset and auto-commit as [`rd_config`].
pub(crate) fn cohort_config(
    bootstrap: &str,
    group: &str,
    topic: &str,
    balancer: &str,
) -> GroupConfig {
    let mut cfg = GroupConfig::new(bootstrap, group, &[topic]);
    cfg.balancers = vec![cohort_balancers::by_name(balancer).expect("balancer")];
    cfg.session_timeout = SESSION;
    cfg.heartbeat_interval = HEARTBEAT;
    cfg.rebalance_timeout = Duration::from_secs(15);
    cfg.offset_reset = OffsetReset::Earliest;
    cfg.auto_commit_interval = Some(Duration::from_secs(1));
    cfg
}

/// librdkafka's settings, matching [`cohort_config`].
pub(crate) fn rd_config(bootstrap: &str, group: &str, balancer: &str) -> RdConfig {
    let mut c = RdConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("partition.assignment.strategy", balancer)
        .set("session.timeout.ms", SESSION.as_millis().to_string())
        .set("heartbeat.interval.ms", HEARTBEAT.as_millis().to_string())
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("broker.address.family", "v4");
    c
}

/// Where a member prints its timeline: its name and the instant times are measured from (the
/// caller moves it to the start of the interesting part).
#[derive(Clone)]
pub(crate) struct Trace {
    pub(crate) name: &'static str,
    pub(crate) t0: Arc<Mutex<Instant>>,
}

impl Trace {
    fn say(&self, what: std::fmt::Arguments<'_>) {
        let at = self.t0.lock().unwrap().elapsed().as_secs_f64();
        println!("{at:7.3} {} {what}", self.name);
    }
}

fn count(a: &Assignment) -> u64 {
    a.values().map(|ps| ps.len() as u64).sum()
}

/// A cohort member consuming (and acknowledging) in a task.
pub(crate) struct CohortRunner {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    /// Generation of the last assignment, plus one (zero: none yet).
    pub(crate) generation: Arc<AtomicU64>,
    /// Partitions owned under the last assignment.
    pub(crate) owned: Arc<AtomicU64>,
    /// Records received.
    pub(crate) consumed: Arc<AtomicU64>,
}

impl CohortRunner {
    pub(crate) async fn start(cfg: GroupConfig, trace: Option<Trace>) -> Self {
        let mut c = Consumer::new(cfg).await.expect("consumer");
        let mut events = c.events().expect("events");
        let (stop, mut rx) = tokio::sync::oneshot::channel();
        let generation = Arc::new(AtomicU64::new(0));
        let owned = Arc::new(AtomicU64::new(0));
        let consumed = Arc::new(AtomicU64::new(0));
        let (g2, o2, c2) = (generation.clone(), owned.clone(), consumed.clone());
        let task = tokio::spawn(async move {
            // Set by an assignment that adds partitions, until the next record.
            let mut awaiting_record = false;
            loop {
                tokio::select! {
                    _ = &mut rx => { let _ = c.close().await; return; }
                    Some(ev) = events.recv() => {
                        match &ev {
                            ConsumerEvent::Assigned { generation, assignment, added, .. } => {
                                o2.store(count(assignment), Ordering::SeqCst);
                                g2.store(*generation as u64 + 1, Ordering::SeqCst);
                                awaiting_record = count(added) > 0;
                            }
                            ConsumerEvent::Lost { .. } => o2.store(0, Ordering::SeqCst),
                            _ => {}
                        }
                        if let Some(t) = &trace {
                            trace_event(t, &ev);
                        }
                    },
                    r = c.recv() => match r {
                        Some(Ok(r)) => {
                            c.ack(&r);
                            c2.fetch_add(1, Ordering::Relaxed);
                            if std::mem::take(&mut awaiting_record)
                                && let Some(t) = &trace
                            {
                                t.say(format_args!("first record after the assignment"));
                            }
                        }
                        _ => return,
                    },
                }
            }
        });
        Self {
            stop,
            task,
            generation,
            owned,
            consumed,
        }
    }

    /// Closes the consumer (commits, leaves the group) and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn trace_event(t: &Trace, ev: &ConsumerEvent) {
    match ev {
        ConsumerEvent::Rebalancing { reason } => t.say(format_args!("rebalancing: {reason}")),
        ConsumerEvent::Assigned {
            generation,
            member_id,
            leader,
            assignment,
            added,
            ..
        } => t.say(format_args!(
            "assigned gen {generation}{}: {:?}, {} new (member {member_id})",
            if *leader { " (leader)" } else { "" },
            assignment.values().flatten().collect::<Vec<_>>(),
            count(added)
        )),
        ConsumerEvent::Revoked {
            generation,
            partitions,
        } => t.say(format_args!(
            "revoked {} of gen {generation}",
            count(partitions)
        )),
        ConsumerEvent::Lost { partitions } => t.say(format_args!("lost {}", count(partitions))),
        _ => {}
    }
}

struct RdCtx {
    assignments: Arc<AtomicU64>,
    owned: Arc<AtomicU64>,
    trace: Option<Trace>,
}

impl rdkafka::ClientContext for RdCtx {
    fn log(&self, _: RDKafkaLogLevel, fac: &str, msg: &str) {
        if let Some(t) = &self.trace {
            t.say(format_args!("{fac}: {msg}"));
        }
    }
}

impl ConsumerContext for RdCtx {
    fn post_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let owned = c.assignment().map(|l| l.count()).unwrap_or(0);
        self.owned.store(owned as u64, Ordering::SeqCst);
        if let Rebalance::Assign(_) = r {
            self.assignments.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(t) = &self.trace {
            let what = match r {
                Rebalance::Assign(l) => format!("assign {}", l.count()),
                Rebalance::Revoke(l) => format!("revoke {}", l.count()),
                Rebalance::Error(e) => format!("error {e}"),
            };
            t.say(format_args!("rebalance callback: {what}, {owned} owned"));
        }
    }
}

/// A librdkafka member polling on its own thread (`BaseConsumer::poll`, 20 ms at a time). With
/// a trace, its rebalance callbacks and whatever librdkafka logs (its `debug` setting) are printed.
pub(crate) struct RdRunner {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    /// Assignment callbacks so far.
    pub(crate) assignments: Arc<AtomicU64>,
    /// Partitions owned after the last rebalance callback.
    pub(crate) owned: Arc<AtomicU64>,
    /// Records received.
    pub(crate) consumed: Arc<AtomicU64>,
}

impl RdRunner {
    pub(crate) fn start(cfg: RdConfig, topic: &str, trace: Option<Trace>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let assignments = Arc::new(AtomicU64::new(0));
        let owned = Arc::new(AtomicU64::new(0));
        let consumed = Arc::new(AtomicU64::new(0));
        let ctx = RdCtx {
            assignments: assignments.clone(),
            owned: owned.clone(),
            trace,
        };
        let (s2, c2, topic) = (stop.clone(), consumed.clone(), topic.to_owned());
        let thread = std::thread::spawn(move || {
            let c: BaseConsumer<RdCtx> = cfg.create_with_context(ctx).expect("librdkafka");
            c.subscribe(&[&topic]).expect("subscribe");
            while !s2.load(Ordering::SeqCst) {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(20)) {
                    c2.fetch_add(1, Ordering::Relaxed);
                }
            }
            c.unsubscribe();
        });
        Self {
            stop,
            thread,
            assignments,
            owned,
            consumed,
        }
    }

    /// Unsubscribes (librdkafka leaves the group) and joins the thread.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Whether two members own every one of `partitions` between them, each some: the group has
/// finished forming (for cooperative-sticky including its second round; its first already
/// gives both members an assignment, one of them empty).
pub(crate) fn settled(a: &AtomicU64, b: &AtomicU64, partitions: i32) -> bool {
    let (a, b) = (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst));
    a > 0 && b > 0 && a + b == partitions as u64
}

/// One record to each of `partitions`, so that every member has something to consume after a
/// rebalance.
pub(crate) async fn trickle(p: &Producer, topic: &str, partitions: i32) {
    for part in 0..partitions {
        let _ = p.send(topic, part, &[ProducerRecord::value("t")]).await;
    }
}
