//! Helpers for the broker-backed group tests: a broker, topics, producers, and consumers that
//! record everything they see.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort::member::Assignment;
use cohort::{
    ClientConfig, Consumer, ConsumerEvent, GroupConfig, OffsetReset, Producer, ProducerRecord,
};
use cohort_balancers::Balancer;
pub use cohort_testbroker::{TestBroker, unique_name};

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Short timeouts, so that crashes are noticed quickly (the test brokers allow session timeouts
/// down to 1 s) and Tansu, which holds JoinGroup for half the session timeout, stays quick.
pub fn group_config(
    bootstrap: &str,
    group: &str,
    topics: &[&str],
    balancer: Box<dyn Balancer>,
) -> GroupConfig {
    let mut cfg = GroupConfig::new(bootstrap, group, topics);
    cfg.balancers = vec![balancer];
    cfg.session_timeout = Duration::from_secs(6);
    cfg.heartbeat_interval = Duration::from_millis(500);
    cfg.rebalance_timeout = Duration::from_secs(10);
    cfg.auto_commit_interval = Some(Duration::from_millis(500));
    cfg.offset_reset = OffsetReset::Earliest;
    cfg.partition_watch_interval = Duration::from_secs(1);
    cfg
}

pub async fn topic(broker: &TestBroker, name: &str, partitions: i32) -> Producer {
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    p.create_topic(name, partitions, 1)
        .await
        .expect("create topic");
    p
}

/// Writes `n` records to every partition; values are `"{partition}-{seq}"`.
pub async fn produce(
    p: &Producer,
    topic: &str,
    partitions: i32,
    n: usize,
    tag: &str,
) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for part in 0..partitions {
        let recs: Vec<ProducerRecord> = (0..n)
            .map(|i| {
                let v = format!("{tag}-{part}-{i}");
                all.insert(v.clone());
                ProducerRecord::value(v)
            })
            .collect();
        p.send(topic, part, &recs).await.expect("produce");
    }
    all
}

/// What a member saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// (partition, offset, value, time since start).
    pub records: Vec<(String, i32, i64, String, Duration)>,
    /// Events in order, with time since start.
    pub events: Vec<(Duration, ConsumerEvent)>,
}

impl Seen {
    pub fn assignment(&self) -> Assignment {
        let mut current = Assignment::new();
        for (_, e) in &self.events {
            match e {
                ConsumerEvent::Assigned { assignment, .. } => current = assignment.clone(),
                ConsumerEvent::Revoked { partitions, .. } | ConsumerEvent::Lost { partitions } => {
                    for (t, ps) in partitions {
                        if let Some(cur) = current.get_mut(t) {
                            for p in ps {
                                cur.remove(p);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        current.retain(|_, ps| !ps.is_empty());
        current
    }

    pub fn values(&self) -> BTreeSet<String> {
        self.records.iter().map(|r| r.3.clone()).collect()
    }
}

/// A consumer running in a task, recording what it sees; every record is acknowledged.
pub struct Running {
    pub seen: Arc<Mutex<Seen>>,
    stop: tokio::sync::oneshot::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Close,
    Crash,
}

impl Running {
    pub async fn start(cfg: GroupConfig) -> Running {
        init_logs();
        let start = tokio::time::Instant::now();
        let mut c = Consumer::new(cfg).await.expect("consumer");
        let mut events = c.events().expect("events");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel();
        let s2 = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    how = &mut stop_rx => {
                        while let Ok(e) = events.try_recv() {
                            s2.lock().unwrap().events.push((start.elapsed(), e));
                        }
                        match how.unwrap_or(Stop::Close) {
                            Stop::Close => c.close().await.expect("close"),
                            Stop::Crash => c.abort(),
                        }
                        return;
                    }
                    Some(e) = events.recv() => s2.lock().unwrap().events.push((start.elapsed(), e)),
                    r = c.recv() => match r {
                        Some(Ok(r)) => {
                            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
                            s2.lock().unwrap().records.push((r.topic.to_string(), r.partition, r.offset, v, start.elapsed()));
                            c.ack(&r);
                        }
                        Some(Err(e)) => panic!("consumer failed: {e}"),
                        None => return,
                    },
                }
            }
        });
        Running { seen, stop, task }
    }

    pub fn assignment(&self) -> Assignment {
        self.seen.lock().unwrap().assignment()
    }

    pub fn count(&self) -> usize {
        self.assignment().values().map(BTreeSet::len).sum()
    }

    pub fn snapshot(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    pub async fn stop(self, how: Stop) -> Seen {
        let _ = self.stop.send(how);
        let _ = self.task.await;
        Arc::try_unwrap(self.seen)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|a| a.lock().unwrap().clone())
    }
}

/// Waits until `pred` holds, polling every 100 ms; panics with `what` after `limit`.
pub async fn wait_for(limit: Duration, what: &str, mut pred: impl FnMut() -> bool) -> Duration {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if pred() {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Every partition owned by exactly one of `members`.
pub fn exclusive_cover(members: &[&Running], topic: &str, partitions: i32) -> bool {
    let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
    for m in members {
        if let Some(ps) = m.assignment().get(topic) {
            for p in ps {
                *owners.entry(*p).or_default() += 1;
            }
        }
    }
    (0..partitions).all(|p| owners.get(&p) == Some(&1))
}

/// The values of every record `members` have received so far.
pub fn values_of(members: &[&Running]) -> BTreeSet<String> {
    members.iter().flat_map(|m| m.snapshot().values()).collect()
}
