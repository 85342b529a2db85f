//! The consumer group protocol (KIP-848, `GroupProtocol::Consumer`) on Apache Kafka: members
//! join with epoch 0, the broker assigns, members reconcile (revoke first, then assign) and
//! commit with their member epoch; a leave hands the partitions over, a restarted member resumes
//! at the committed offsets.
#![allow(
    clippy::disallowed_methods,
    reason = "a test against a real broker reads the clock"
)]

mod common;

use std::time::Duration;

use cohort::{GroupConfig, GroupProtocol, OffsetReset};
use common::{
    Running, Stop, TestBroker, exclusive_cover, produce, unique_name, values_of, wait_for,
};

/// A consumer-protocol member: the broker decides session, heartbeat and assignment, so only
/// client-side settings are changed.
fn config(bootstrap: &str, group: &str, topic: &str) -> GroupConfig {
    let mut cfg = GroupConfig::new(bootstrap, group, &[topic]);
    cfg.group_protocol = GroupProtocol::Consumer;
    cfg.offset_reset = OffsetReset::Earliest;
    cfg.auto_commit_interval = Some(Duration::from_millis(500));
    cfg.rebalance_timeout = Duration::from_secs(10);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_split_partitions_and_hand_them_over_on_leave() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("kip848"), unique_name("g"));
    let p = common::topic(broker, &topic, 6).await;
    let produced = produce(&p, &topic, 6, 20, "a").await;
    let a = Running::start(config(broker.bootstrap(), &group, &topic)).await;
    let b = Running::start(config(broker.bootstrap(), &group, &topic)).await;
    wait_for(
        Duration::from_secs(30),
        "2 members with 3 partitions each",
        || a.count() == 3 && b.count() == 3 && exclusive_cover(&[&a, &b], &topic, 6),
    )
    .await;
    wait_for(Duration::from_secs(20), "all records consumed", || {
        values_of(&[&a, &b]) == produced
    })
    .await;
    // Every assignment is named by the member epoch, which never goes back (a revocation
    // completes within an epoch; the broker bumps it when it assigns more).
    for m in [&a, &b] {
        let epochs: Vec<i32> = m
            .seen
            .lock()
            .unwrap()
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                cohort::ConsumerEvent::Assigned { generation, .. } => Some(*generation),
                _ => None,
            })
            .collect();
        assert!(
            !epochs.is_empty() && epochs.iter().all(|e| *e > 0),
            "{epochs:?}"
        );
        assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    }

    // b leaves (epoch -1): a gets all six partitions, and new records reach it.
    b.stop(Stop::Close).await;
    wait_for(Duration::from_secs(20), "a owns all 6 partitions", || {
        a.count() == 6
    })
    .await;
    let more = produce(&p, &topic, 6, 5, "b").await;
    wait_for(Duration::from_secs(20), "new records consumed by a", || {
        more.is_subset(&values_of(&[&a]))
    })
    .await;
    a.stop(Stop::Close).await;

    // A new member of the group resumes at the committed offsets: it sees only what came
    // after, never a record the others processed and committed.
    let c = Running::start(config(broker.bootstrap(), &group, &topic)).await;
    wait_for(Duration::from_secs(30), "c owns all 6 partitions", || {
        c.count() == 6
    })
    .await;
    let last = produce(&p, &topic, 6, 3, "c").await;
    wait_for(
        Duration::from_secs(20),
        "c consumed the new records",
        || last.is_subset(&values_of(&[&c])),
    )
    .await;
    let seen = values_of(&[&c]);
    assert!(
        seen.is_disjoint(&produced) && seen.is_disjoint(&more),
        "c re-read committed records: {:?}",
        seen.intersection(&produced).take(5).collect::<Vec<_>>()
    );
    c.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_the_broker_owns_are_refused_with_the_consumer_protocol() {
    let mut cfg = config("127.0.0.1:9", "g", "t");
    cfg.session_timeout = Duration::from_secs(10);
    cfg.balancers = vec![Box::new(cohort::balancers::Range)];
    let err = cohort::Consumer::new(cfg).await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("session_timeout"), "{text}");
    assert!(text.contains("balancers"), "{text}");
    let mut cfg = GroupConfig::new("127.0.0.1:9", "g", &["t"]);
    cfg.group_remote_assignor = Some("uniform".into());
    let err = cohort::Consumer::new(cfg).await.expect_err("refused");
    assert!(err.to_string().contains("group_remote_assignor"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_regular_expression_is_resolved_by_the_broker_and_follows_new_topics() {
    let broker = TestBroker::shared().expect("broker");
    let prefix = unique_name("kip848re");
    let first = format!("{prefix}-a");
    let p = common::topic(broker, &first, 2).await;
    let mut cfg = config(broker.bootstrap(), &unique_name("g"), &first);
    // RE2/J syntax, matched against whole topic names by the broker.
    cfg.subscription =
        cohort::Subscription::Pattern(regex::Regex::new(&format!("{prefix}-.*")).unwrap());
    let a = Running::start(cfg).await;
    let one = produce(&p, &first, 2, 5, "one").await;
    wait_for(
        Duration::from_secs(30),
        "records of the first topic",
        || one.is_subset(&values_of(&[&a])),
    )
    .await;
    // A topic created later that matches: the broker adds it to the member's assignment.
    let second = format!("{prefix}-b");
    p.create_topic(&second, 3, 1).await.expect("create topic");
    let two = produce(&p, &second, 3, 5, "two").await;
    wait_for(Duration::from_secs(40), "records of the new topic", || {
        two.is_subset(&values_of(&[&a]))
    })
    .await;
    assert_eq!(a.count(), 5, "both topics' partitions owned");
    a.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generations_are_member_epochs_with_partitions() {
    use cohort::{CommitOffset, Group};
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("kip848gen"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    produce(&p, &topic, 2, 10, "g").await;
    let mut g1 = Group::new(config(broker.bootstrap(), &group, &topic))
        .await
        .expect("group");
    let first = tokio::time::timeout(Duration::from_secs(30), g1.next())
        .await
        .expect("a first generation")
        .expect("generation");
    assert!(first.id() > 0, "a member epoch");
    assert_eq!(first.assignments()[&topic].len(), 2);
    first
        .commit(&[CommitOffset::new(&topic, 0, 4)])
        .await
        .expect("commit with the member epoch");
    // A second member: the first generation ends (a partition is revoked), the next one has
    // one partition, at a member epoch no lower.
    let mut g2 = Group::new(config(broker.bootstrap(), &group, &topic))
        .await
        .expect("second member");
    let other = tokio::spawn(async move {
        let g = tokio::time::timeout(Duration::from_secs(60), g2.next()).await;
        (g, g2)
    });
    let second = tokio::time::timeout(Duration::from_secs(60), g1.next())
        .await
        .expect("a second generation")
        .expect("generation");
    assert!(first.is_done());
    assert!(second.id() >= first.id());
    assert_eq!(second.assignments()[&topic].len(), 1);
    let (joined, g2) = other.await.unwrap();
    let joined = joined
        .expect("the joiner's generation")
        .expect("generation");
    let mut starts: Vec<(i32, i64)> = [&second, &joined]
        .iter()
        .flat_map(|g| {
            g.assignments()[&topic]
                .iter()
                .map(|s| (s.partition, s.offset))
        })
        .collect();
    starts.sort();
    assert_eq!(
        starts,
        [(0, 4), (1, 0)],
        "each partition once, from the commits"
    );
    g1.close().await;
    g2.close().await;
}
