//! Group behaviours that only a faithful broker shows, on Apache Kafka: static membership
//! (KIP-345: a restart without a rebalance, fencing of a duplicate instance), the coordinator's
//! protocol vote, `OffsetReset::Latest`, the offset-out-of-range hook after DeleteRecords, the
//! coordinator handing a stalled member's partitions to the others (KIP-62), records and
//! commits that survive a broker restart, and a commit of the current leader epoch fetched from
//! without an OffsetForLeaderEpoch check. Tansu departs from Kafka in each (docs/DESIGN.md,
//! "The broker"), so with `COHORT_BROKER_KIND=tansu` these tests say "not run" and return.
#![allow(
    clippy::disallowed_methods,
    reason = "a test against a real broker reads the clock"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort::{
    ClientConfig, Consumer, ConsumerEvent, ConsumerOptions, GroupConfig, OffsetReset, Producer,
    StartOffset,
};
use cohort_balancers::{CooperativeSticky, Range};
use common::*;

/// The shared broker, or `None` (with the reason printed) when it is Tansu.
fn kafka(test: &str) -> Option<&'static TestBroker> {
    let b = TestBroker::shared().expect("broker");
    if b.is_tansu() {
        eprintln!("{test}: not run on Tansu, which departs from Apache Kafka here");
        return None;
    }
    Some(b)
}

/// Waits for the next `Assigned` event of a consumer's event stream.
async fn next_assigned(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<ConsumerEvent>,
    limit: Duration,
) -> ConsumerEvent {
    tokio::time::timeout(limit, async {
        loop {
            match events.recv().await {
                Some(e @ ConsumerEvent::Assigned { .. }) => return e,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("an assignment")
}

/// Drives a consumer's `recv` (so it counts as polling) until `stop` is set, acknowledging
/// everything.
fn keep_polling(
    mut c: Consumer,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Consumer> {
    tokio::spawn(async move {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(Some(Ok(r))) = tokio::time::timeout(Duration::from_millis(50), c.recv()).await
            {
                c.ack(&r);
            }
        }
        c
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_member_restarts_within_its_session_without_a_rebalance() {
    let Some(broker) = kafka("static restart") else {
        return;
    };
    let (topic, group) = (unique_name("static"), unique_name("g"));
    let _p = common::topic(broker, &topic, 4).await;
    let cfg = |instance: &str| {
        let mut c = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
        c.group_instance_id = Some(instance.to_owned());
        c.session_timeout = Duration::from_secs(10);
        c
    };
    let a = Running::start(cfg("static-a")).await;
    wait_for(Duration::from_secs(30), "a owns everything", || {
        a.count() == 4
    })
    .await;
    let b = Running::start(cfg("static-b")).await;
    wait_for(Duration::from_secs(30), "2 and 2", || {
        a.count() == 2 && b.count() == 2 && exclusive_cover(&[&a, &b], &topic, 4)
    })
    .await;
    let b_had = b.assignment();
    let a_events = a.snapshot().events.len();

    // b's process goes away (a static member sends no LeaveGroup, KIP-345) and comes back with
    // the same group.instance.id well within its session: the coordinator hands it its
    // partitions in the current generation, and a notices nothing.
    let _ = b.stop(Stop::Close).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = Running::start(cfg("static-b")).await;
    wait_for(Duration::from_secs(10), "b has its partitions back", || {
        b.count() == 2
    })
    .await;
    assert_eq!(
        b.assignment(),
        b_had,
        "the same partitions as before the restart"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let since: Vec<_> = a.snapshot().events[a_events..].to_vec();
    assert!(
        !since.iter().any(|(_, e)| matches!(
            e,
            ConsumerEvent::Assigned { .. }
                | ConsumerEvent::Revoked { .. }
                | ConsumerEvent::Lost { .. }
                | ConsumerEvent::Rebalancing { .. }
        )),
        "a took part in a rebalance: {since:?}"
    );
    a.stop(Stop::Close).await;
    b.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_member_with_the_same_instance_id_fences_the_first() {
    let Some(broker) = kafka("static fencing") else {
        return;
    };
    let (topic, group) = (unique_name("fence"), unique_name("g"));
    let _p = common::topic(broker, &topic, 2).await;
    let cfg = || {
        let mut c = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
        c.group_instance_id = Some("the-instance".into());
        c
    };
    let mut first = Consumer::new(cfg()).await.expect("consumer");
    let mut first_events = first.events().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    next_assigned(&mut first_events, Duration::from_secs(30)).await;

    let mut second = Consumer::new(cfg()).await.expect("consumer");
    let mut second_events = second.events().unwrap();
    let second = keep_polling(second, Arc::clone(&stop));
    match next_assigned(&mut second_events, Duration::from_secs(30)).await {
        ConsumerEvent::Assigned { assignment, .. } => {
            assert_eq!(assignment.get(&topic).map(BTreeSet::len), Some(2));
        }
        _ => unreachable!(),
    }
    // The first one's next heartbeat is answered FENCED_INSTANCE_ID: fatal (KIP-345), its
    // partitions lost, and `recv` ends with the error.
    let fenced = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            tokio::select! {
                e = first_events.recv() => match e {
                    Some(ConsumerEvent::Error(cohort::Error::Fenced { instance_id })) => return instance_id,
                    Some(_) => {}
                    None => panic!("events ended without the fencing"),
                },
                r = first.recv() => if let Some(Err(cohort::Error::Fenced { instance_id })) = r {
                    return instance_id;
                },
            }
        }
    })
    .await
    .expect("the first member was fenced");
    assert_eq!(fenced, "the-instance");
    assert!(
        first.assignment().is_empty(),
        "a fenced member owns nothing"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    second.await.unwrap().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_coordinator_picks_a_protocol_every_member_supports() {
    let Some(broker) = kafka("protocol vote") else {
        return;
    };
    let (topic, group) = (unique_name("vote"), unique_name("g"));
    let _p = common::topic(broker, &topic, 4).await;
    let mut both = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    both.balancers = vec![Box::new(CooperativeSticky), Box::new(Range)];
    let range_only = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    let protocols = |r: &Running| -> Vec<String> {
        r.snapshot()
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                ConsumerEvent::Assigned { protocol, .. } => Some(protocol.clone()),
                _ => None,
            })
            .collect()
    };
    let a = Running::start(both).await;
    wait_for(Duration::from_secs(30), "a alone", || a.count() == 4).await;
    // Alone, a gets its first choice.
    assert_eq!(
        protocols(&a).last().map(String::as_str),
        Some("cooperative-sticky")
    );
    // b supports only range: the next generation runs range, for both.
    let b = Running::start(range_only).await;
    wait_for(Duration::from_secs(30), "2 and 2", || {
        a.count() == 2 && b.count() == 2 && exclusive_cover(&[&a, &b], &topic, 4)
    })
    .await;
    assert_eq!(protocols(&a).last().map(String::as_str), Some("range"));
    assert_eq!(protocols(&b).last().map(String::as_str), Some("range"));
    // b leaves: a alone again, and the vote goes back to its first choice.
    let _ = b.stop(Stop::Close).await;
    wait_for(Duration::from_secs(30), "a alone again", || a.count() == 4).await;
    assert_eq!(
        protocols(&a).last().map(String::as_str),
        Some("cooperative-sticky")
    );
    a.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offset_reset_latest_starts_at_the_log_end() {
    let Some(broker) = kafka("offset reset latest") else {
        return;
    };
    let (topic, group) = (unique_name("latest"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    let old = produce(&p, &topic, 1, 10, "old").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.offset_reset = OffsetReset::Latest;
    let a = Running::start(cfg).await;
    wait_for(Duration::from_secs(30), "assigned", || a.count() == 1).await;
    // The start is looked up (ListOffsets LATEST) once the partition is assigned; give it a
    // moment before producing, so the new records come after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new = produce(&p, &topic, 1, 5, "new").await;
    wait_for(Duration::from_secs(20), "the new records", || {
        new.is_subset(&a.snapshot().values())
    })
    .await;
    let seen = a.stop(Stop::Close).await;
    assert!(
        seen.values().is_disjoint(&old),
        "records from before the assignment were delivered"
    );
    let offsets: Vec<i64> = seen.records.iter().map(|r| r.2).collect();
    assert_eq!(offsets, (10..15).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_committed_offset_below_the_log_start_goes_to_the_out_of_range_hook() {
    let Some(broker) = kafka("out-of-range hook") else {
        return;
    };
    let (topic, group) = (unique_name("oor"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    produce(&p, &topic, 1, 20, "r").await;

    // Commit offset 5.
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.auto_commit_interval = None;
    cfg.commit_on_revoke = false;
    let mut c = Consumer::new(cfg).await.expect("consumer");
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("record")
            .unwrap()
            .unwrap();
        c.ack(&r);
    }
    let committed = c.commit().await.expect("commit");
    assert_eq!(committed[0].offset, 5);
    c.close().await.unwrap();

    // The log start moves past it.
    let low = p
        .delete_records(&topic, 0, 15)
        .await
        .expect("DeleteRecords");
    assert_eq!(low, 15);

    // The next member resumes at 5, is told OFFSET_OUT_OF_RANGE, and asks the hook.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let hook_calls = Arc::clone(&calls);
    let options = ConsumerOptions::default().out_of_range(Arc::new(
        move |tp: &cohort::TopicPartition, offset: i64| {
            hook_calls
                .lock()
                .unwrap()
                .push((tp.topic.clone(), tp.partition, offset));
            StartOffset::Earliest
        },
    ));
    let cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    let mut c = Consumer::with_options(cfg, options)
        .await
        .expect("consumer");
    let r = tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("record")
        .unwrap()
        .unwrap();
    assert_eq!(r.offset, 15, "restarted at the new log start");
    assert_eq!(calls.lock().unwrap().clone(), vec![(topic.clone(), 0, 5)]);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_coordinator_gives_a_stalled_members_partitions_to_the_others() {
    let Some(broker) = kafka("max.poll.interval") else {
        return;
    };
    let (topic, group) = (unique_name("stalled"), unique_name("g"));
    let p = common::topic(broker, &topic, 4).await;
    let a = Running::start(group_config(
        broker.bootstrap(),
        &group,
        &[&topic],
        Box::new(Range),
    ))
    .await;
    wait_for(Duration::from_secs(30), "a owns everything", || {
        a.count() == 4
    })
    .await;
    // b joins, then its application stops calling recv.
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.max_poll_interval = Duration::from_secs(2);
    let mut b = Consumer::new(cfg).await.expect("consumer");
    let mut b_events = b.events().unwrap();
    let polling = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(50), b.recv()).await;
            if let Ok(ConsumerEvent::Assigned { assignment, .. }) = b_events.try_recv()
                && !assignment.is_empty()
            {
                return;
            }
        }
    })
    .await;
    assert!(polling.is_ok(), "b was never assigned");
    wait_for(Duration::from_secs(10), "a gave half away", || {
        a.count() == 2
    })
    .await;
    // KIP-62: past max.poll.interval b leaves the group; the coordinator rebalances and a owns
    // every partition again, and consumes what arrives on them.
    let took = wait_for(Duration::from_secs(15), "a owns everything again", || {
        a.count() == 4
    })
    .await;
    eprintln!("a stalled member's partitions came back to a after {took:?}");
    let more = produce(&p, &topic, 4, 3, "after").await;
    wait_for(Duration::from_secs(20), "a consumes them", || {
        more.is_subset(&a.snapshot().values())
    })
    .await;
    b.close().await.ok();
    a.stop(Stop::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_and_committed_offsets_survive_a_broker_restart() {
    // A broker of its own: this one is killed.
    if kafka("broker restart").is_none() {
        return;
    }
    let broker = TestBroker::start().expect("broker");
    assert!(!broker.is_volatile());
    let (topic, group) = (unique_name("durable"), unique_name("g"));
    let p = common::topic(&broker, &topic, 2).await;
    let before = produce(&p, &topic, 2, 10, "before").await;
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.auto_commit_interval = None;
    let a = Running::start(cfg).await;
    wait_for(Duration::from_secs(30), "all consumed", || {
        before.is_subset(&a.snapshot().values())
    })
    .await;
    a.stop(Stop::Close).await; // commits on close

    // SIGKILL, then a start on the same log dirs.
    let b2 = std::sync::Arc::new(broker);
    let restarter = std::sync::Arc::clone(&b2);
    tokio::task::spawn_blocking(move || restarter.restart())
        .await
        .unwrap()
        .expect("restart");

    let admin = Producer::new(ClientConfig::new(b2.bootstrap()));
    for part in 0..2 {
        let got = admin
            .read(&topic, part, 0, Duration::from_secs(2))
            .await
            .expect("read after restart");
        assert_eq!(got.len(), 10, "partition {part} after the restart");
    }
    let after = produce(&admin, &topic, 2, 5, "after").await;
    let cfg: GroupConfig = group_config(b2.bootstrap(), &group, &[&topic], Box::new(Range));
    let c = Running::start(cfg).await;
    wait_for(Duration::from_secs(60), "the new records", || {
        after.is_subset(&c.snapshot().values())
    })
    .await;
    let seen = c.stop(Stop::Close).await;
    assert!(
        seen.values().is_disjoint(&before),
        "the group resumed below its committed offsets"
    );
}

/// Counts the requests a consumer sends, by API, on its way to the broker.
#[derive(Default)]
struct CountingDialer {
    sent: Arc<Mutex<std::collections::BTreeMap<i16, usize>>>,
}

#[async_trait::async_trait]
impl cohort::Dialer for CountingDialer {
    async fn dial(&self, addr: &str) -> std::io::Result<cohort::BoxedStream> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let broker = cohort::TcpDialer::default().dial(addr).await?;
        let (client_side, ours) = tokio::io::duplex(1 << 20);
        let (mut from_client, mut to_client) = tokio::io::split(ours);
        let (mut from_broker, mut to_broker) = tokio::io::split(broker);
        let sent = Arc::clone(&self.sent);
        tokio::spawn(async move {
            loop {
                let Ok(size) = from_client.read_i32().await else {
                    return;
                };
                let mut frame = vec![0u8; size.max(0) as usize];
                if from_client.read_exact(&mut frame).await.is_err() || frame.len() < 2 {
                    return;
                }
                let api = i16::from_be_bytes([frame[0], frame[1]]);
                *sent.lock().unwrap().entry(api).or_default() += 1;
                if to_broker.write_i32(size).await.is_err()
                    || to_broker.write_all(&frame).await.is_err()
                {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_broker, &mut to_client).await;
        });
        Ok(Box::new(client_side))
    }
}

/// A member that starts from an offset committed in the partition's current leader epoch
/// fetches at once: the leader cannot have truncated its own log in its epoch, so the
/// OffsetForLeaderEpoch check Java's consumer sends first could only say "valid" (a position
/// from an earlier epoch is still checked: `tests/truncation.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_of_the_current_leader_epoch_is_fetched_from_without_a_check() {
    use cohort::protocol::ApiKey;
    let Some(broker) = kafka("no check in the current epoch") else {
        return;
    };
    let (topic, group) = (unique_name("epoch"), unique_name("g"));
    let p = common::topic(broker, &topic, 1).await;
    let first = produce(&p, &topic, 1, 5, "first").await;
    let a = Running::start(group_config(
        broker.bootstrap(),
        &group,
        &[&topic],
        Box::new(Range),
    ))
    .await;
    wait_for(Duration::from_secs(30), "a consumes", || {
        a.snapshot().values() == first
    })
    .await;
    // Closing commits what a processed, with the leader epoch of its last record.
    a.stop(Stop::Close).await;
    let second = produce(&p, &topic, 1, 3, "second").await;
    let counting = CountingDialer::default();
    let sent = Arc::clone(&counting.sent);
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.client.dialer = Arc::new(counting);
    let b = Running::start(cfg).await;
    wait_for(Duration::from_secs(30), "b consumes what a left", || {
        b.snapshot().values() == second
    })
    .await;
    b.stop(Stop::Close).await;
    let sent = sent.lock().unwrap().clone();
    let count = |api: ApiKey| sent.get(&api.as_i16()).copied().unwrap_or(0);
    assert!(
        count(ApiKey::OffsetFetch) >= 1 && count(ApiKey::Fetch) >= 1,
        "the dialer saw the consumer's requests: {sent:?}"
    );
    assert_eq!(count(ApiKey::OffsetForLeaderEpoch), 0, "{sent:?}");
}
