//! The group core against a real broker (Apache Kafka by default, see `cohort-testbroker`):
//! members join and split partitions, leave cleanly, crash, restart at the committed offset;
//! cooperative-sticky moves only what must move; added partitions are consumed; every record is
//! consumed at least once through all of it.
#![allow(
    clippy::disallowed_methods,
    reason = "a test against a real broker reads the clock"
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use cohort::{Consumer, ConsumerEvent, ProducerRecord};
use cohort_balancers::{CooperativeSticky, Range};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_split_partitions_and_a_clean_leave_hands_over_quickly() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("split"), unique_name("g"));
    let p = common::topic(broker, &topic, 6).await;
    let produced = produce(&p, &topic, 6, 20, "a").await;
    let cfg = || group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    let a = Running::start(cfg()).await;
    let b = Running::start(cfg()).await;
    let c = Running::start(cfg()).await;
    wait_for(
        Duration::from_secs(30),
        "3 members with 2 partitions each",
        || [&a, &b, &c].iter().all(|m| m.count() == 2) && exclusive_cover(&[&a, &b, &c], &topic, 6),
    )
    .await;
    wait_for(Duration::from_secs(20), "all records consumed", || {
        values_of(&[&a, &b, &c]) == produced
    })
    .await;

    // c leaves cleanly: a and b take its partitions within one rebalance (a round trip of
    // JoinGroup/SyncGroup; Tansu holds JoinGroup for half the session timeout, docs/DESIGN.md).
    let _ = c.stop(Stop::Close).await;
    let took = wait_for(
        Duration::from_secs(15),
        "2 members cover all 6 partitions",
        || a.count() == 3 && b.count() == 3 && exclusive_cover(&[&a, &b], &topic, 6),
    )
    .await;
    // One heartbeat interval to hear of the rebalance, one JoinGroup hold (3 s on Tansu),
    // SyncGroup and the first fetch: 6 s leaves room for a slow machine, while a leave that
    // never reached the broker costs the session timeout plus the hold (9 s or more).
    eprintln!("clean-leave handover took {took:?}");
    assert!(took < Duration::from_secs(6), "handover took {took:?}");
    let more = produce(&p, &topic, 6, 5, "b").await;
    wait_for(
        Duration::from_secs(20),
        "new records consumed by the two",
        || more.is_subset(&values_of(&[&a, &b])),
    )
    .await;
    a.stop(Stop::Close).await;
    b.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_member_is_replaced_after_the_session_timeout() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("crash"), unique_name("g"));
    let p = common::topic(broker, &topic, 4).await;
    let cfg = || group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    let a = Running::start(cfg()).await;
    let b = Running::start(cfg()).await;
    wait_for(
        Duration::from_secs(30),
        "2 members with 2 partitions each",
        || a.count() == 2 && b.count() == 2 && exclusive_cover(&[&a, &b], &topic, 4),
    )
    .await;
    // b dies without leaving: no LeaveGroup, no more heartbeats.
    let killed_at = tokio::time::Instant::now();
    let _ = b.stop(Stop::Crash).await;
    // Before the session timeout (6 s) the coordinator still counts b in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.count(), 2, "a took over before b's session expired");
    wait_for(Duration::from_secs(30), "a owns all 4 partitions", || {
        a.count() == 4
    })
    .await;
    let took = killed_at.elapsed();
    assert!(
        took >= Duration::from_secs(5),
        "recovered in {took:?}, before the session timeout"
    );
    let produced = produce(&p, &topic, 4, 5, "after").await;
    wait_for(Duration::from_secs(20), "a consumes everything", || {
        produced.is_subset(&a.snapshot().values())
    })
    .await;
    a.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_member_resumes_exactly_at_the_committed_offset() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("resume"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    produce(&p, &topic, 1, 30, "r").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.auto_commit_interval = None;
    cfg.commit_on_revoke = false;
    let mut c = Consumer::new(cfg).await.expect("consumer");
    for expected in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("record")
            .unwrap()
            .unwrap();
        assert_eq!(r.offset, expected);
        c.ack(&r);
    }
    let committed = c.commit().await.expect("commit");
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].offset, 20, "the first record not acknowledged");
    c.close().await.expect("close");

    let cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("record")
        .unwrap()
        .unwrap();
    assert_eq!(r.offset, 20, "resumed at the committed offset");
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_larger_than_the_buffer_is_consumed_to_its_end() {
    // One batch of 50 records and a buffer of 10: each fetch from inside the batch gets the
    // whole batch back. The records before the fetch offset must not use up the buffer's room,
    // or the partition stops at offset 10 for ever (as it did with batches of more than
    // max_buffered_records records, which a producer batching small records writes).
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("bigbatch"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    produce(&p, &topic, 1, 50, "big").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.max_buffered_records = 10;
    let mut c = Consumer::new(cfg).await.expect("consumer");
    for expected in 0..50 {
        let r = tokio::time::timeout(Duration::from_secs(10), c.recv())
            .await
            .unwrap_or_else(|_| panic!("stuck before offset {expected}"))
            .unwrap()
            .unwrap();
        assert_eq!(r.offset, expected);
        c.ack(&r);
    }
    c.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seek_moves_the_position_forward_and_back_and_commits_follow_it() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("seek"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    produce(&p, &topic, 1, 20, "seek").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.auto_commit_interval = None;
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let tp = cohort::TopicPartition::new(&topic, 0);
    let next = async |c: &mut Consumer| {
        let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("a record")
            .unwrap()
            .unwrap();
        c.ack(&r);
        r.offset
    };
    assert_eq!(next(&mut c).await, 0);
    assert!(
        c.seek(&cohort::TopicPartition::new(&topic, 7), 3).is_err(),
        "not assigned"
    );
    c.seek(&tp, 10).expect("seek forward");
    assert_eq!(c.position(&tp), Some(10));
    assert_eq!(next(&mut c).await, 10);
    assert_eq!(next(&mut c).await, 11);
    c.seek(&tp, 5).expect("seek back");
    assert_eq!(next(&mut c).await, 5);
    // Done through 5: the commit names 6, the position after the seek, not 12.
    let done = c.commit().await.expect("commit");
    assert_eq!(done.iter().map(|o| o.offset).collect::<Vec<_>>(), [6]);
    let committed = c
        .committed(std::slice::from_ref(&tp))
        .await
        .expect("committed");
    let c6 = committed[&tp].clone().expect("committed 6");
    assert_eq!(c6.offset, 6);
    // KIP-320: the commit carries the leader epoch of record 5 (this one-node cluster's first
    // leader epoch, 0), which a later owner validates its start with.
    assert_eq!(c6.leader_epoch, Some(0), "{c6:?}");
    assert_eq!(c6.metadata, "");
    // An explicit commit of an owned partition, with metadata, and one of a partition not owned.
    let explicit = c
        .commit_offsets(&[cohort::CommitOffset::new(&topic, 0, 3).with_metadata("batch 3")])
        .await
        .expect("commit_offsets");
    assert_eq!(explicit.iter().map(|o| o.offset).collect::<Vec<_>>(), [3]);
    let committed = c
        .committed(std::slice::from_ref(&tp))
        .await
        .expect("committed");
    let c3 = committed[&tp].clone().expect("committed 3");
    assert_eq!((c3.offset, c3.metadata.as_str()), (3, "batch 3"));
    // Offset 3 lies before where the seek back to 5 restarted fetching: its record's epoch is
    // unknown here, so none is claimed (as Java's `commitSync(offsets)` without one).
    assert_eq!(c3.leader_epoch, None, "{c3:?}");
    // An asynchronous commit: started at once, answered through its future, in order with the
    // commits started before it.
    assert_eq!(next(&mut c).await, 6);
    let first = c
        .commit_offsets_async(&[cohort::CommitOffset::new(&topic, 0, 6)])
        .expect("owned");
    let second = c.commit_async();
    let first = first.await.expect("first");
    assert_eq!(
        first
            .iter()
            .map(|o| (o.offset, o.leader_epoch))
            .collect::<Vec<_>>(),
        [(6, Some(0))],
        "the epoch of record 5, fetched after the seek, filled in"
    );
    let done = second.await.expect("second");
    assert_eq!(done.iter().map(|o| o.offset).collect::<Vec<_>>(), [7]);
    let committed = c
        .committed(std::slice::from_ref(&tp))
        .await
        .expect("committed");
    assert_eq!(committed[&tp].as_ref().map(|c| c.offset), Some(7));
    // Nothing new is done: an asynchronous commit answers with nothing, without a request.
    assert!(c.commit_async().await.expect("nothing").is_empty());
    assert!(
        c.commit_offsets_async(&[cohort::CommitOffset::new(&topic, 9, 1)])
            .is_err(),
        "not owned"
    );
    assert!(matches!(
        c.subscription(),
        cohort::Subscription::Topics(t) if t == std::slice::from_ref(&topic)
    ));
    let err = c
        .commit_offsets(&[cohort::CommitOffset::new(&topic, 9, 1)])
        .await
        .expect_err("not owned");
    assert!(err.to_string().contains("not owned"), "{err}");
    c.seek_to_end(std::slice::from_ref(&tp))
        .await
        .expect("seek to end");
    assert_eq!(c.position(&tp), Some(20));
    c.seek_to_beginning(std::slice::from_ref(&tp))
        .await
        .expect("seek to beginning");
    assert_eq!(next(&mut c).await, 0);
    c.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_stops_fetching_exactly_those_partitions_and_resume_restarts_it() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("pause"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.fetch_max_wait = Duration::from_millis(100);
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let tp = |part: i32| cohort::TopicPartition::new(&topic, part);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while c.assignment().values().map(BTreeSet::len).sum::<usize>() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never assigned");
        let _ = tokio::time::timeout(Duration::from_millis(100), c.recv()).await;
    }
    c.pause(&tp(0));
    produce(&p, &topic, 2, 10, "pause").await;
    // Partition 1 delivers everything; partition 0 neither delivers nor fetches.
    let mut from = [0usize; 2];
    let quiet = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < quiet {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), c.recv()).await {
            let r = r.unwrap();
            from[r.partition as usize] += 1;
            c.ack(&r);
        }
    }
    assert_eq!(from, [0, 10], "only the running partition delivers");
    let m = c.metrics().await;
    assert_eq!(
        m.buffered.get(&tp(0)).copied().unwrap_or(0),
        0,
        "a paused partition is not fetched: {m:?}"
    );
    c.resume(&tp(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while from[0] < 10 {
        assert!(tokio::time::Instant::now() < deadline, "resume: {from:?}");
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), c.recv()).await {
            let r = r.unwrap();
            from[r.partition as usize] += 1;
            c.ack(&r);
        }
    }
    assert_eq!(from, [10, 10]);
    c.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_starting_offset_hook_decides_where_a_new_partition_starts() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("start"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    produce(&p, &topic, 2, 10, "start").await;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&asked);
    let hook: cohort::consumer::StartingOffsetHook =
        std::sync::Arc::new(move |tp: &cohort::TopicPartition, committed: Option<i64>| {
            log.lock().unwrap().push((tp.partition, committed));
            if tp.partition == 0 {
                cohort::consumer::StartOffset::Offset(7)
            } else {
                cohort::consumer::StartOffset::Committed
            }
        });
    let cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    let mut c = Consumer::with_options(
        cfg,
        cohort::consumer::ConsumerOptions::default().starting_offset(hook),
    )
    .await
    .expect("consumer");
    let mut first = [None::<i64>; 2];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while first.iter().any(Option::is_none) {
        assert!(tokio::time::Instant::now() < deadline, "{first:?}");
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), c.recv()).await {
            let r = r.unwrap();
            first[r.partition as usize].get_or_insert(r.offset);
            c.ack(&r);
        }
    }
    // Partition 0 where the hook said; partition 1 by the reset policy (earliest here).
    assert_eq!(first, [Some(7), Some(0)]);
    let mut asked = asked.lock().unwrap().clone();
    asked.sort_unstable();
    assert_eq!(
        asked,
        [(0, None), (1, None)],
        "asked once per partition, nothing committed"
    );
    c.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_lag_is_what_was_produced_and_not_yet_delivered() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("lag"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    produce(&p, &topic, 1, 30, "lag").await;
    let mut c = Consumer::new(group_config(
        broker.bootstrap(),
        &group,
        &[&topic],
        Box::new(Range),
    ))
    .await
    .expect("consumer");
    let tp = cohort::TopicPartition::new(&topic, 0);
    for expected in 0..10 {
        let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("record")
            .unwrap()
            .unwrap();
        assert_eq!(r.offset, expected);
        c.ack(&r);
    }
    assert_eq!(c.metrics().await.records_lag.get(&tp), Some(&20));
    produce(&p, &topic, 1, 5, "more").await;
    // Updated from the next Fetch response's high watermark.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.metrics().await.records_lag.get(&tp) != Some(&25) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            c.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pattern_subscription_picks_up_new_topics_and_drops_deleted_ones() {
    let broker = TestBroker::shared().expect("broker");
    let prefix = unique_name("re");
    let (first, second) = (format!("{prefix}-a"), format!("{prefix}-b"));
    let p = common::topic(broker, &first, 2).await;
    let mut cfg = group_config(broker.bootstrap(), &unique_name("g"), &[], Box::new(Range));
    cfg.subscription =
        cohort::Subscription::Pattern(regex::Regex::new(&format!("{prefix}-.*")).unwrap());
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let topics = |c: &Consumer| c.assignment().into_keys().collect::<Vec<_>>();
    let wait = async |c: &mut Consumer, want: &[&String], what: &str| {
        let want: Vec<String> = want.iter().map(|t| (*t).clone()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        while topics(c) != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {:?}",
                topics(c)
            );
            if let Ok(Some(Ok(r))) =
                tokio::time::timeout(Duration::from_millis(100), c.recv()).await
            {
                c.ack(&r);
            }
        }
    };
    wait(&mut c, &[&first], "the first topic").await;
    p.create_topic(&second, 1, 1).await.expect("second topic");
    wait(&mut c, &[&first, &second], "a new matching topic").await;
    p.send(&second, 0, &[ProducerRecord::value("late")])
        .await
        .expect("produce");
    // Its record is delivered, from the start (offset_reset earliest).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new topic's record"
        );
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), c.recv()).await {
            let r = r.unwrap();
            c.ack(&r);
            if *r.topic == *second {
                assert_eq!(r.value.as_deref(), Some(&b"late"[..]));
                break;
            }
        }
    }
    p.delete_topics(&[&first]).await.expect("delete the first");
    wait(&mut c, &[&second], "a deleted topic dropped").await;
    c.abort();
}

/// Commits inside revocation, as a manual-commit Java application does in
/// `onPartitionsRevoked`, and counts the calls.
struct CommitOnRevoke(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl cohort::consumer::RebalanceListener for CommitOnRevoke {
    async fn on_partitions_revoked(
        &self,
        consumer: &cohort::consumer::ListenerContext,
        _revoked: &cohort::Assignment,
    ) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        consumer.commit().await.expect("commit inside revocation");
    }
}

/// Tells the test that a revocation has begun: the consumer calls the listener, then waits for
/// the records it delivered to be done before it commits.
struct RevocationBegins(tokio::sync::mpsc::UnboundedSender<()>);

#[async_trait::async_trait]
impl cohort::consumer::RebalanceListener for RevocationBegins {
    async fn on_partitions_revoked(
        &self,
        _consumer: &cohort::consumer::ListenerContext,
        _revoked: &cohort::Assignment,
    ) {
        let _ = self.0.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_commits_the_records_done_while_it_waits_and_ends_when_they_are() {
    // Eager range, commits only on revocation, half a minute of grace (half the rebalance
    // timeout) for delivered records. `a` takes every record and acknowledges none until its
    // revocation has begun, then all of them at once. The revocation must commit them (the new
    // owners start after them) and end when they are done, not when the grace runs out.
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("drain"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    produce(&p, &topic, 2, 20, "held").await;
    let config = || {
        let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
        cfg.auto_commit_interval = None;
        cfg.commit_on_revoke = true;
        cfg.rebalance_timeout = Duration::from_secs(60);
        cfg
    };
    let (tx, mut begun) = tokio::sync::mpsc::unbounded_channel();
    let mut a = Consumer::with_options(
        config(),
        cohort::consumer::ConsumerOptions::default()
            .listener(std::sync::Arc::new(RevocationBegins(tx))),
    )
    .await
    .expect("a");
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while held.len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a received {}",
            held.len()
        );
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(100), a.recv()).await {
            held.push(r.expect("a record"));
        }
    }
    let mut b = Consumer::new(config()).await.expect("b");
    tokio::time::timeout(Duration::from_secs(30), begun.recv())
        .await
        .expect("a's revocation began");
    let began = tokio::time::Instant::now();
    // Long enough for the revocation to be waiting for the records when they are done.
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.ack_many(&held);
    let owned = |c: &Consumer| c.assignment().values().map(BTreeSet::len).sum::<usize>();
    while !(owned(&a) == 1 && owned(&b) == 1) {
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "no new generation within 15 s of the records being done: the revocation waited \
             for its 30 s grace, not for them"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    produce(&p, &topic, 2, 10, "after").await;
    let mut after = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while after < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{after} of 20 new records"
        );
        for c in [&mut a, &mut b] {
            if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(20), c.recv()).await {
                let r = r.expect("a record");
                assert!(
                    r.offset >= 20,
                    "partition {} offset {} again: the revocation did not commit what was done",
                    r.partition,
                    r.offset
                );
                after += 1;
                c.ack(&r);
            }
        }
    }
    a.abort();
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listener_commits_inside_revocation_and_the_new_owner_starts_exactly_there() {
    // No auto-commit and no commit of the consumer's own on revocation: only the listener
    // commits. A cooperative hand-over then moves two partitions to a new member, which must
    // start where the first stopped: not one record is processed twice.
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("listener"), unique_name("g"));
    let p = common::topic(broker, &topic, 4).await;
    produce(&p, &topic, 4, 50, "first").await;
    let member = async || {
        let mut cfg = group_config(
            broker.bootstrap(),
            &group,
            &[&topic],
            Box::new(CooperativeSticky),
        );
        cfg.auto_commit_interval = None;
        cfg.commit_on_revoke = false;
        let listener = std::sync::Arc::new(CommitOnRevoke(std::sync::atomic::AtomicUsize::new(0)));
        let c = Consumer::with_options(
            cfg,
            cohort::consumer::ConsumerOptions::default().listener(listener.clone()),
        )
        .await
        .expect("consumer");
        (c, listener)
    };
    let mut seen: Vec<std::collections::BTreeMap<(i32, i64), usize>> = vec![Default::default(); 2];
    let poll = async |c: &mut Consumer,
                      seen: &mut std::collections::BTreeMap<(i32, i64), usize>| {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(20), c.recv()).await {
            let r = r.unwrap();
            *seen.entry((r.partition, r.offset)).or_default() += 1;
            c.ack(&r);
        }
    };
    let (mut a, a_listener) = member().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen[0].len() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a consumed {}",
            seen[0].len()
        );
        poll(&mut a, &mut seen[0]).await;
    }
    let (mut b, _) = member().await;
    let owned = |c: &Consumer| c.assignment().values().map(BTreeSet::len).sum::<usize>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(owned(&a) == 2 && owned(&b) == 2) {
        assert!(tokio::time::Instant::now() < deadline, "no hand-over");
        poll(&mut a, &mut seen[0]).await;
        poll(&mut b, &mut seen[1]).await;
    }
    assert!(
        a_listener.0.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the listener heard the revocation"
    );
    produce(&p, &topic, 4, 50, "second").await;
    let total = |seen: &[std::collections::BTreeMap<(i32, i64), usize>]| {
        seen[0]
            .keys()
            .chain(seen[1].keys())
            .collect::<BTreeSet<_>>()
            .len()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while total(&seen) < 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumed {}",
            total(&seen)
        );
        poll(&mut a, &mut seen[0]).await;
        poll(&mut b, &mut seen[1]).await;
    }
    let twice: Vec<_> = seen[0]
        .iter()
        .chain(&seen[1])
        .filter(|(k, n)| **n > 1 || (seen[0].contains_key(k) && seen[1].contains_key(k)))
        .map(|(k, _)| *k)
        .collect();
    assert!(twice.is_empty(), "processed twice: {twice:?}");
    assert!(!seen[1].is_empty(), "the new owner consumed");
    a.abort();
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_buffer_does_not_hide_new_records_of_caught_up_partitions() {
    // Partition 0's buffer fills (the application reads nothing), partition 1 is at its log
    // end. The fetcher then skips caught-up partitions to save round trips, but must still
    // poll them once per fetch_max_wait: a record written to partition 1 is fetched while
    // partition 0 stays held back.
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("held"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    let recs: Vec<ProducerRecord> = (0..50)
        .map(|i| ProducerRecord::value(format!("{i}")))
        .collect();
    p.send(&topic, 0, &recs).await.expect("produce");
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.max_buffered_records = 10;
    cfg.fetch_max_wait = Duration::from_millis(200);
    let c = Consumer::new(cfg).await.expect("consumer");
    let tp = |part: i32| cohort::TopicPartition::new(&topic, part);
    let buffered = |m: &cohort::consumer::ConsumerMetrics, part: i32| {
        m.buffered.get(&tp(part)).copied().unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = c.metrics().await;
        if buffered(&m, 0) >= 10 && m.lag.contains_key(&tp(1)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partition 0 never filled: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.send(&topic, 1, &[ProducerRecord::value("late")])
        .await
        .expect("produce");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = c.metrics().await;
        if buffered(&m, 1) == 1 {
            assert!(
                buffered(&m, 0) >= 10,
                "partition 0 drained without a reader: {m:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "partition 1's new record was not fetched while partition 0 was held back: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recv_many_gives_runs_in_offset_order_and_ack_many_commits_what_was_done() {
    // 1,200 records on each of 3 partitions: more than one run (500) per partition, so the
    // consumer moves between partitions inside calls and across them.
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("many"), unique_name("g"));
    let p = common::topic(broker, &topic, 3).await;
    produce(&p, &topic, 3, 1200, "m").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.auto_commit_interval = None;
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let mut batch = Vec::new();
    assert_eq!(c.recv_many(&mut batch, 0).await.unwrap().unwrap(), 0);
    let mut all: Vec<cohort::ConsumerRecord> = Vec::new();
    let mut next = [0i64; 3];
    while all.len() < 3600 {
        let n = tokio::time::timeout(Duration::from_secs(30), c.recv_many(&mut batch, 700))
            .await
            .unwrap_or_else(|_| panic!("stuck after {} records", all.len()))
            .expect("open")
            .expect("records");
        assert!(
            (1..=700).contains(&n) && n == batch.len(),
            "{n} of {}",
            batch.len()
        );
        let mut runs = 1;
        for (i, r) in batch.iter().enumerate() {
            let part = r.partition as usize;
            assert_eq!(
                r.offset, next[part],
                "partition {part} in order, nothing skipped"
            );
            next[part] += 1;
            if i > 0 && batch[i - 1].partition != r.partition {
                runs += 1;
            }
        }
        // A run of one partition is at most 500 records long.
        assert!(n <= 500 * runs, "{n} records in {runs} runs");
        all.append(&mut batch);
    }
    assert_eq!(next, [1200; 3]);
    // Everything done except offset 100 of partition 1: acknowledged in one call, in the
    // order received, with the one record left out.
    let (held, done): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| r.partition == 1 && r.offset == 100);
    c.ack_many(&done);
    let mut committed: Vec<(i32, i64)> = c
        .commit()
        .await
        .unwrap()
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    committed.sort_unstable();
    assert_eq!(committed, [(0, 1200), (1, 100), (2, 1200)]);
    c.ack_many(&held);
    let committed = c.commit().await.unwrap();
    assert!(committed.iter().all(|o| o.offset == 1200), "{committed:?}");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_order_acknowledgements_commit_below_the_first_gap() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("ooo"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    produce(&p, &topic, 1, 10, "o").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.auto_commit_interval = None;
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let mut recs = Vec::new();
    for _ in 0..10 {
        recs.push(
            tokio::time::timeout(Duration::from_secs(30), c.recv())
                .await
                .expect("record")
                .unwrap()
                .unwrap(),
        );
    }
    // Everything but offset 4 is done, acknowledged out of order.
    for r in recs.iter().rev().filter(|r| r.offset != 4) {
        c.ack(r);
    }
    assert_eq!(c.commit().await.unwrap()[0].offset, 4);
    c.ack(&recs[4]);
    assert_eq!(c.commit().await.unwrap()[0].offset, 10);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_moves_only_what_must_and_the_rest_keeps_flowing() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("coop"), unique_name("g"));
    let p = common::topic(broker, &topic, 6).await;
    let cfg = || {
        group_config(
            broker.bootstrap(),
            &group,
            &[&topic],
            Box::new(CooperativeSticky),
        )
    };
    let a = Running::start(cfg()).await;
    wait_for(Duration::from_secs(20), "a owns all 6", || a.count() == 6).await;
    // Keep producing to every partition through the rebalance.
    let producing = {
        let p = p.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                for part in 0..6 {
                    let _ = p
                        .send(
                            &topic,
                            part,
                            &[cohort::ProducerRecord::value(format!("live-{part}-{i}"))],
                        )
                        .await;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = Running::start(cfg()).await;
    wait_for(Duration::from_secs(30), "3 and 3", || {
        a.count() == 3 && b.count() == 3 && exclusive_cover(&[&a, &b], &topic, 6)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    producing.abort();
    let sa = a.snapshot();
    // a revoked exactly the three partitions b got, never all six.
    let revoked: Vec<BTreeSet<i32>> = sa
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            ConsumerEvent::Revoked { partitions, .. } => {
                Some(partitions.get(&topic).cloned().unwrap_or_default())
            }
            _ => None,
        })
        .collect();
    assert_eq!(revoked.len(), 1, "one revocation: {revoked:?}");
    assert_eq!(revoked[0].len(), 3);
    assert!(
        !sa.events
            .iter()
            .any(|(_, e)| matches!(e, ConsumerEvent::Lost { .. }))
    );
    let kept: BTreeSet<i32> = a.assignment()[&topic].clone();
    assert!(kept.is_disjoint(&revoked[0]));
    // The partitions a kept were consumed while the rebalance was in progress: between b's
    // start and b's first assignment a received records of kept partitions.
    let sb = b.snapshot();
    let b_assigned_at = sb
        .events
        .iter()
        .find_map(|(t, e)| {
            matches!(e, ConsumerEvent::Assigned { added, .. } if !added.is_empty()).then_some(*t)
        })
        .expect("b assigned");
    let rebalance_started = sa
        .events
        .iter()
        .filter_map(|(t, e)| matches!(e, ConsumerEvent::Rebalancing { .. }).then_some(*t))
        .next_back()
        .expect("a saw the rebalance");
    let during: usize = sa
        .records
        .iter()
        .filter(|r| {
            kept.contains(&r.1)
                && r.4 > rebalance_started
                && r.4 < rebalance_started + (b_assigned_at.min(Duration::from_secs(60)))
        })
        .count();
    assert!(
        during > 0,
        "no records of kept partitions flowed during the rebalance"
    );
    // No partition was consumed by both at once: every record of a moved partition that b got
    // has a higher offset than anything a consumed of it after the revoke.
    for part in &revoked[0] {
        let a_max = sa
            .records
            .iter()
            .filter(|r| r.1 == *part)
            .map(|r| r.2)
            .max()
            .unwrap_or(-1);
        let b_min = sb
            .records
            .iter()
            .filter(|r| r.1 == *part)
            .map(|r| r.2)
            .min()
            .unwrap_or(i64::MAX);
        assert!(
            b_min <= a_max + 1,
            "b skipped records of partition {part}: a stopped at {a_max}, b started at {b_min}"
        );
    }
    a.stop(Stop::Close).await;
    b.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_added_to_a_topic_get_consumed() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("grow"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    let cfg = || group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    let a = Running::start(cfg()).await;
    let b = Running::start(cfg()).await;
    wait_for(Duration::from_secs(30), "1 and 1", || {
        a.count() == 1 && b.count() == 1
    })
    .await;
    // Apache Kafka grows the topic with CreatePartitions. Tansu does not implement that API
    // (`cohort conformance --broker tansu`, create-partitions), so there the topic is recreated with more partitions: the client path is the
    // same (the leader sees the count change in metadata, rejoins, the new partitions are
    // assigned and consumed).
    let grew = p.create_partitions(&topic, 4).await;
    if grew.is_err() {
        assert!(
            broker.is_tansu(),
            "CreatePartitions failed on a broker that should support it: {grew:?}"
        );
        p.delete_topics(&[&topic]).await.expect("delete");
        tokio::time::sleep(Duration::from_millis(500)).await;
        p.create_topic(&topic, 4, 1)
            .await
            .expect("recreate with 4 partitions");
    }
    wait_for(Duration::from_secs(40), "2 and 2 over 4 partitions", || {
        a.count() == 2 && b.count() == 2 && exclusive_cover(&[&a, &b], &topic, 4)
    })
    .await;
    let produced = produce(&p, &topic, 4, 5, "new").await;
    wait_for(
        Duration::from_secs(30),
        "records of the new partitions consumed",
        || produced.is_subset(&values_of(&[&a, &b])),
    )
    .await;
    a.stop(Stop::Close).await;
    b.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_is_consumed_at_least_once_through_joins_leaves_and_crashes() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("churn"), unique_name("g"));
    let p = common::topic(broker, &topic, 6).await;
    let produced = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let producing = {
        let (p, topic, produced) = (p.clone(), topic.clone(), std::sync::Arc::clone(&produced));
        tokio::spawn(async move {
            for i in 0..400 {
                let part = i % 6;
                let v = format!("c-{i}");
                if p.send(&topic, part, &[cohort::ProducerRecord::value(v.clone())])
                    .await
                    .is_ok()
                {
                    produced.lock().unwrap().insert(v);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let cfg = || {
        group_config(
            broker.bootstrap(),
            &group,
            &[&topic],
            Box::new(CooperativeSticky),
        )
    };
    let a = Running::start(cfg()).await;
    let b = Running::start(cfg()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b_seen = b.stop(Stop::Crash).await;
    let c = Running::start(cfg()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c_seen = c.stop(Stop::Close).await;
    let d = Running::start(cfg()).await;
    producing.await.unwrap();
    let expected = produced.lock().unwrap().clone();
    assert_eq!(expected.len(), 400);
    wait_for(
        Duration::from_secs(60),
        "every produced record consumed",
        || {
            let mut all = b_seen.values();
            all.extend(c_seen.values());
            all.extend(values_of(&[&a, &d]));
            expected.is_subset(&all)
        },
    )
    .await;
    a.stop(Stop::Close).await;
    d.stop(Stop::Close).await;
}

/// `recv` counts as progress for `max_poll_interval` (KIP-62) through a flag the driver takes
/// a few times a second: a consumer that keeps calling `recv`, with records waiting or not,
/// keeps its partitions; one that stops is reported stalled and gives them up; calling `recv`
/// again rejoins the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recv_is_progress_for_max_poll_interval_and_a_stalled_consumer_rejoins_when_it_polls() {
    use std::time::Instant;
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("stall"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    produce(&p, &topic, 2, 5, "s").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.max_poll_interval = Duration::from_secs(1);
    let mut c = Consumer::new(cfg).await.expect("consumer");
    let mut events = c.events().unwrap();

    // Poll steadily: all 10 records, then three more intervals without records.
    let mut got = 0;
    let mut quiet_until = None;
    let give_up = Instant::now() + Duration::from_secs(30);
    while quiet_until.is_none_or(|t| Instant::now() < t) {
        assert!(Instant::now() < give_up, "only {got} of 10 records in 30 s");
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(50), c.recv()).await {
            r.expect("record");
            got += 1;
            if got == 10 {
                quiet_until = Some(Instant::now() + Duration::from_secs(3));
            }
        }
    }
    let mut assigned = 0;
    while let Ok(ev) = events.try_recv() {
        match ev {
            ConsumerEvent::Assigned { .. } => assigned += 1,
            ConsumerEvent::Error(e) => panic!("a steadily polling consumer reported {e}"),
            ConsumerEvent::Lost { .. } | ConsumerEvent::Revoked { .. } => {
                panic!("a steadily polling consumer gave partitions up: {ev:?}")
            }
            _ => {}
        }
    }
    assert_eq!(assigned, 1, "one assignment while polling");

    // Stop polling: the stall is reported once the interval (plus the driver's take period)
    // has passed, and the partitions are lost.
    let stalled = tokio::time::timeout(Duration::from_secs(5), async {
        let mut timed_out = false;
        loop {
            match events.recv().await {
                Some(ConsumerEvent::Error(cohort::Error::PollTimeout { .. })) => timed_out = true,
                Some(ConsumerEvent::Lost { .. }) if timed_out => return,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await;
    assert!(stalled.is_ok(), "no poll timeout and loss reported");
    assert!(c.assignment().is_empty(), "a stalled consumer owns nothing");

    // Polling again rejoins and gets the partitions back.
    let back = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(50), c.recv()).await;
            if let Ok(ConsumerEvent::Assigned { assignment, .. }) = events.try_recv()
                && assignment.get(&topic).is_some_and(|ps| ps.len() == 2)
            {
                return;
            }
        }
    })
    .await;
    assert!(back.is_ok(), "polling again did not rejoin");
    c.close().await.unwrap();
}

/// The generation API (kafka-go's `ConsumerGroup`): a generation commits for itself; when a
/// second member joins, its tasks are told to stop, its commits are refused, and the next
/// generations start where it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generation_commits_for_itself_and_ends_when_a_member_joins() {
    use cohort::{CommitOffset, Error, Group};
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("generations"), unique_name("g"));
    let p = common::topic(broker, &topic, 2).await;
    produce(&p, &topic, 2, 10, "g").await;
    let cfg = || group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));

    let mut g1 = Group::new(cfg()).await.expect("group");
    let first = tokio::time::timeout(Duration::from_secs(30), g1.next())
        .await
        .expect("a first generation")
        .expect("generation");
    let starts: Vec<(i32, i64)> = first.assignments()[&topic]
        .iter()
        .map(|s| (s.partition, s.offset))
        .collect();
    assert_eq!(starts, [(0, 0), (1, 0)], "alone, from the earliest offsets");
    let committed = first
        .commit(&[
            CommitOffset::new(&topic, 0, 4),
            CommitOffset::new(&topic, 1, 6),
        ])
        .await
        .expect("commit in the generation");
    assert_eq!(committed.len(), 2);
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    first.start(move |ctx| async move {
        ctx.done().await;
        let _ = stopped_tx.send(());
    });

    let mut g2 = Group::new(cfg()).await.expect("second member");
    let joined = tokio::spawn(async move {
        let g = tokio::time::timeout(Duration::from_secs(60), g2.next()).await;
        (g, g2)
    });
    tokio::time::timeout(Duration::from_secs(60), stopped_rx)
        .await
        .expect("the first generation's task is told to stop")
        .unwrap();
    assert!(first.is_done());
    let refused = first.commit(&[CommitOffset::new(&topic, 0, 9)]).await;
    assert!(
        matches!(refused, Err(Error::CommitFailed(_))),
        "{refused:?}"
    );

    let second = tokio::time::timeout(Duration::from_secs(60), g1.next())
        .await
        .expect("a second generation")
        .expect("generation");
    let (other, g2) = joined.await.unwrap();
    let other = other.expect("the joiner's generation").expect("generation");
    assert!(second.id() > first.id());
    assert_eq!(second.id(), other.id());
    let mut starts: Vec<(i32, i64)> = [&second, &other]
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
        [(0, 4), (1, 6)],
        "one partition each, from the first generation's commits (not its refused one)"
    );
    g1.close().await;
    g2.close().await;
}
