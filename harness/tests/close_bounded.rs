//! `Consumer::close` is bounded (as Java's `KafkaConsumer.close()` is, 30 s by default): a
//! final commit or LeaveGroup the coordinator never answers is given up at the limit, even
//! when each request's own timeout is longer. Seen before the bound: a member closing while
//! its group rebalanced waited for its final commit forever, and a CI run with it.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::time::{Duration, Instant};

use cohort::{ClientConfig, Consumer, ConsumerEvent, Error, Producer};
use cohort_harness::member::MemberOptions;
use cohort_harness::net::NetFaults;
use cohort_protocol::ApiKey;
use cohort_testbroker::{TestBroker, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_up_on_an_unanswered_commit_or_leave() {
    let broker = TestBroker::shared().expect("broker");
    let topic = unique_name("close");
    let group = unique_name("g");
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    p.create_topic(&topic, 3, 1).await.expect("topic");
    let faults = NetFaults::new();
    let opts = MemberOptions::new(
        "m",
        broker.bootstrap(),
        &group,
        std::slice::from_ref(&topic),
    );
    let mut cfg = opts.group_config(&faults).expect("config");
    // Far longer than the close limit: only the close's own bound can end the wait.
    cfg.client.request_timeout = Duration::from_secs(600);
    let mut consumer = Consumer::new(cfg).await.expect("consumer");
    let mut events = consumer.events().expect("events");
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = events.recv().await {
            if matches!(ev, ConsumerEvent::Assigned { .. }) {
                return;
            }
        }
        panic!("events ended before an assignment");
    })
    .await
    .expect("assigned within 60 s");

    // The coordinator never sees the final commit or the LeaveGroup.
    faults.set_held(vec![ApiKey::OffsetCommit as i16, ApiKey::LeaveGroup as i16]);
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        consumer.close_within(Duration::from_secs(3)),
    )
    .await
    .expect("close returns");
    assert!(
        matches!(
            r,
            Err(Error::Timeout {
                api: ApiKey::LeaveGroup | ApiKey::OffsetCommit,
                ..
            })
        ),
        "expected a close timeout, got {r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "close took {:?}",
        started.elapsed()
    );
}
