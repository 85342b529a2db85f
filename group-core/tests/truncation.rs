//! Truncation detection (KIP-320) on Apache Kafka: an unclean leader election gives a partition
//! to a replica that lacks the last records the consumers read, and the new leader then writes
//! other records at the same offsets. A consumer that simply fetched on from its position would
//! skip those new records without a word; Cohort asks the new leader where its position's
//! leader epoch ends (OffsetForLeaderEpoch), finds the divergence and resumes there, both for
//! a consumer that lives through the election and for one that starts from an offset committed
//! before it (the commit carries the leader epoch).
#![allow(
    clippy::disallowed_methods,
    reason = "integration tests read the clock and do I/O"
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cohort::protocol::messages::{
    CreateTopicsRequest, ElectLeadersRequest, create_topics_request, elect_leaders_request,
};
use cohort::unstable::{Cluster, Target};
use cohort::{ClientConfig, Consumer, ConsumerEvent, Producer, ProducerRecord, TopicPartition};
use cohort_balancers::Range;
use cohort_testbroker::{Backend, BrokerKind, BrokerOptions, TestBroker};
use common::{group_config, unique_name};

/// Records of the topic's only partition as `offset -> value`, until `want` says enough.
async fn consume_until(
    c: &mut Consumer,
    what: &str,
    mut want: impl FnMut(&BTreeMap<i64, String>) -> bool,
) -> BTreeMap<i64, String> {
    let mut got = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !want(&got) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let r = tokio::time::timeout(left, c.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: only {got:?}"))
            .expect("open")
            .expect("no fatal error");
        c.ack(&r);
        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        got.insert(r.offset, v);
    }
    got
}

fn values(tag: &str, n: usize) -> Vec<ProducerRecord> {
    (0..n)
        .map(|i| ProducerRecord::value(format!("{tag}-{i}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_truncated_by_an_unclean_election_is_detected_and_consumed_from_the_divergence() {
    common::init_logs();
    // Node 1 is the only controller, so nodes 2 and 3 (the partition's replicas) can both be
    // down at once without losing the metadata quorum.
    let mut o = BrokerOptions::default()
        .kind(BrokerKind::ApacheKafka)
        .backend(Backend::Process)
        .nodes(3);
    o.controllers = Some(1);
    let broker = TestBroker::start_with(o).expect("three nodes, one controller");
    let topic = unique_name("trunc");
    let tp = TopicPartition::new(&topic, 0);
    let cluster = Cluster::new(ClientConfig::new(broker.bootstrap()));
    let timeout = Duration::from_secs(30);
    let created = cluster
        .send(
            Target::Any,
            &CreateTopicsRequest {
                topics: vec![create_topics_request::CreatableTopic {
                    name: topic.clone().into(),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: vec![create_topics_request::CreatableReplicaAssignment {
                        partition_index: 0,
                        broker_ids: vec![2, 3],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                timeout_ms: 30_000,
                ..Default::default()
            },
            timeout,
        )
        .await
        .expect("CreateTopics");
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    let leader = async || {
        cluster
            .refresh_metadata(Some(std::slice::from_ref(&topic)))
            .await
            .ok()
            .and_then(|m| m.get(&topic).and_then(|t| t.partitions.first().cloned()))
            .map(|p| (p.leader, p.leader_epoch))
    };
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    assert_eq!(p.send(&topic, 0, &values("a", 10)).await.expect("a"), 0);
    let (first_leader, first_epoch) = leader().await.expect("a leader");
    assert_eq!(first_leader, 2, "the preferred replica leads");

    // A consumer that lives through the election; a long session, so that it stays a member
    // while the cluster is without a leader for the partition.
    let config = |group: &str| {
        let mut cfg = group_config(broker.bootstrap(), group, &[&topic], Box::new(Range));
        cfg.session_timeout = Duration::from_secs(45);
        cfg.rebalance_timeout = Duration::from_secs(30);
        cfg.auto_commit_interval = None;
        cfg
    };
    let mut live = Consumer::new(config(&unique_name("live")))
        .await
        .expect("consumer");
    let mut events = live.events().expect("events");
    consume_until(&mut live, "a", |g| g.len() == 10).await;

    // Node 3 leaves the in-sync replicas (a controlled shutdown); records 10..19 are written to
    // node 2 alone and read by both groups; the second commits them and goes.
    broker.stop_node(3).expect("stop node 3");
    assert_eq!(p.send(&topic, 0, &values("b", 10)).await.expect("b"), 10);
    consume_until(&mut live, "b", |g| g.len() == 10).await;
    live.commit().await.expect("commit");
    let (early_group, strict_group, hooked_group) = (
        unique_name("early"),
        unique_name("strict"),
        unique_name("hooked"),
    );
    for group in [&early_group, &strict_group, &hooked_group] {
        let mut early = Consumer::new(config(group)).await.expect("early");
        consume_until(&mut early, "a and b", |g| g.len() == 20).await;
        let done = early.commit().await.expect("commit");
        assert_eq!(
            done.iter()
                .map(|c| (c.offset, c.leader_epoch))
                .collect::<Vec<_>>(),
            [(20, Some(first_epoch))],
            "the commit names the leader epoch of record 19"
        );
        early.close().await.expect("close");
    }

    // Node 2 crashes with the only copy of 10..19; node 3 comes back and is made leader
    // uncleanly (ElectLeaders, election type 1), then takes records of its own at 10..24.
    broker.kill_node(2).expect("kill node 2");
    broker.start_node(3).expect("start node 3");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if leader().await.is_some_and(|(l, _)| l == 3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 3 never became leader: {:?}",
            leader().await
        );
        // The controller elects only once node 2 is fenced (its session of 9 s has passed).
        let r = cluster
            .send(
                Target::Any,
                &ElectLeadersRequest {
                    election_type: 1,
                    topic_partitions: Some(vec![elect_leaders_request::TopicPartitions {
                        topic: topic.clone().into(),
                        partitions: vec![0],
                        ..Default::default()
                    }]),
                    timeout_ms: 10_000,
                    ..Default::default()
                },
                timeout,
            )
            .await;
        tracing::info!(?r, "unclean election");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A new producer: the first one would try the dead node 2 first (a refused connection is
    // returned to the caller, see `Producer::send`).
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    assert_eq!(p.send(&topic, 0, &values("c", 15)).await.expect("c"), 10);
    let want_c =
        |g: &BTreeMap<i64, String>| (0..15).all(|i| g.get(&(10 + i)) == Some(&format!("c-{i}")));

    // The live consumer was at 20: it finds that its epoch ends at 10 on the new leader and
    // reads every new record from there (fetching on from 20 would have skipped c-0..c-9).
    let after = consume_until(&mut live, "c (live)", want_c).await;
    assert!(after.keys().all(|&o| o >= 10), "{after:?}");
    let mut truncated = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let ConsumerEvent::Truncated {
            partition,
            position,
            diverged_at,
        } = e
        {
            truncated.push((partition, position, diverged_at));
        }
    }
    assert_eq!(truncated, [(tp.clone(), 20, Some(10))]);
    let committed = live.commit().await.expect("commit after the truncation");
    assert_eq!(
        committed.iter().map(|c| c.offset).collect::<Vec<_>>(),
        [25],
        "commits follow the new log"
    );
    live.close().await.expect("close");

    // A group that committed 20 in epoch `first_epoch` before the election starts there, and
    // the committed epoch tells it that the log diverged at 10.
    let mut late = Consumer::new(config(&early_group)).await.expect("late");
    let after = consume_until(&mut late, "c (late)", want_c).await;
    assert!(after.keys().all(|&o| o >= 10), "{after:?}");
    late.close().await.expect("close");

    // Without a reset policy (and no out-of-range hook) the consumer does not choose for the
    // application: the partition stops with LogTruncated, naming the divergence (Java's
    // `LogTruncationException`).
    let mut cfg = config(&strict_group);
    cfg.offset_reset = cohort::OffsetReset::None;
    let mut strict = Consumer::new(cfg).await.expect("strict");
    let mut events = strict.events().expect("events");
    let error = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await.expect("events") {
                ConsumerEvent::Error(e @ cohort::Error::LogTruncated { .. }) => return e,
                _ => continue,
            }
        }
    })
    .await
    .expect("a LogTruncated error");
    assert!(
        matches!(
            &error,
            cohort::Error::LogTruncated { topic: t, partition: 0, offset: 10 } if *t == topic
        ),
        "{error}"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(2), strict.recv())
            .await
            .is_err(),
        "nothing is delivered from a stopped partition"
    );
    strict.close().await.expect("close");

    // With an out-of-range hook, the hook decides, given the divergence point.
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&calls);
    let options = cohort::ConsumerOptions::default().out_of_range(std::sync::Arc::new(
        move |tp: &TopicPartition, offset: i64| {
            seen.lock().unwrap().push((tp.clone(), offset));
            cohort::StartOffset::Offset(offset + 5)
        },
    ));
    let mut hooked = Consumer::with_options(config(&hooked_group), options)
        .await
        .expect("hooked");
    let after = consume_until(&mut hooked, "c (hooked)", |g| g.len() == 10).await;
    assert_eq!(
        after.into_iter().collect::<Vec<_>>(),
        (5..15)
            .map(|i| (10 + i, format!("c-{i}")))
            .collect::<Vec<_>>(),
        "resumed where the hook said"
    );
    assert_eq!(calls.lock().unwrap().clone(), [(tp, 10)]);
    hooked.close().await.expect("close");
}
