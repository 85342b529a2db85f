//! Interop: groups that mix cohort members with librdkafka members (rust-rdkafka, librdkafka
//! 2.12) on the real broker, with `range` and with `cooperative-sticky`, led once by each
//! client. Whoever leads, every partition ends up owned by exactly one member, every record is
//! consumed, and a clean leave hands the departed member's partitions over.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cohort::{ClientConfig, Producer, ProducerRecord};
use cohort_harness::checker::{self, CheckInput};
use cohort_harness::foreign::RdMember;
use cohort_harness::journal::{Event, Journal, current_assignments, processed_counts};
use cohort_harness::member::{CohortMember, MemberOptions, StopHow, journal_sink};
use cohort_testbroker::{TestBroker, unique_name};

const PARTITIONS: i32 = 12;

enum Any {
    Ours(CohortMember),
    Theirs(RdMember),
}

impl Any {
    /// Closes the member; a close that does not finish fails the test instead of hanging it
    /// (a librdkafka member bounds its own close, see `RdMember::stop`).
    async fn stop(self) {
        let stopped = async {
            match self {
                Any::Ours(m) => m.stop(StopHow::Close).await,
                Any::Theirs(m) => tokio::task::spawn_blocking(move || m.stop(StopHow::Close))
                    .await
                    .expect("join"),
            }
        };
        tokio::time::timeout(Duration::from_secs(90), stopped)
            .await
            .expect("the member closes within 90 s");
    }
}

async fn start(ours: bool, opts: MemberOptions, journal: &Journal) -> Any {
    let sink = journal_sink(journal, &opts.name);
    if ours {
        Any::Ours(
            CohortMember::start(opts, sink)
                .await
                .expect("cohort member"),
        )
    } else {
        Any::Theirs(RdMember::start(opts, sink).expect("librdkafka member"))
    }
}

async fn produce(p: &Producer, topic: &str, n: usize) -> BTreeSet<(i32, i64)> {
    let mut out = BTreeSet::new();
    for part in 0..PARTITIONS {
        let recs: Vec<ProducerRecord> = (0..n)
            .map(|i| ProducerRecord::value(format!("{part}-{i}")))
            .collect();
        let base = p.send(topic, part, &recs).await.expect("produce");
        out.extend((0..n as i64).map(|i| (part, base + i)));
    }
    out
}

/// Waits until `pred` holds for the journal, polling; panics with the assignments on timeout.
async fn wait(journal: &Journal, limit: Duration, what: &str, pred: impl Fn(&Journal) -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if pred(journal) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}; assignments: {:?}",
        current_assignments(&journal.snapshot())
    );
}

/// Every partition owned by exactly one of `members`, each holding `each` (or `each`+1).
fn exclusive(journal: &Journal, topic: &str, members: &[&str], each: usize) -> bool {
    let cur = current_assignments(&journal.snapshot());
    let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
    for m in members {
        let ps = cur
            .get(*m)
            .and_then(|a| a.get(topic))
            .cloned()
            .unwrap_or_default();
        if ps.len() < each || ps.len() > each + 1 {
            return false;
        }
        for p in ps {
            *owners.entry(p).or_default() += 1;
        }
    }
    (0..PARTITIONS).all(|p| owners.get(&p) == Some(&1)) && cur.len() == members.len()
}

fn consumed(journal: &Journal, topic: &str, want: &BTreeSet<(i32, i64)>) -> bool {
    let got = processed_counts(&journal.snapshot());
    want.iter()
        .all(|(p, o)| got.contains_key(&(topic.to_owned(), *p, *o)))
}

/// The leader of the latest generation a cohort member saw, if it was one of ours.
fn cohort_led_last(journal: &Journal) -> Option<bool> {
    let entries = journal.snapshot();
    let last_gen = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Assigned {
                generation,
                leader: Some(_),
                ..
            } => Some(*generation),
            _ => None,
        })
        .max()?;
    Some(entries.iter().any(|e| {
        matches!(&e.event, Event::Assigned { generation, leader: Some(true), .. } if *generation == last_gen)
    }))
}

async fn mixed_group(balancer: &str, cohort_leads: bool) {
    // The members' debug log, shown when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("cohort=debug"))
        .with_test_writer()
        .try_init();
    let broker = TestBroker::shared().expect("broker");
    let topic = unique_name("mixed");
    let group = unique_name("g");
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    p.create_topic(&topic, PARTITIONS, 1).await.expect("topic");
    let mut want = produce(&p, &topic, 10).await;
    let journal = Journal::new();
    let opts = |name: &str| {
        let mut o = MemberOptions::new(
            name,
            broker.bootstrap(),
            &group,
            std::slice::from_ref(&topic),
        );
        o.balancers = vec![balancer.to_owned()];
        o
    };

    // The first member leads the first generation (Tansu keeps the leader while it stays).
    let first = start(cohort_leads, opts("first"), &journal).await;
    wait(
        &journal,
        Duration::from_secs(30),
        "the first member owns everything",
        |j| exclusive(j, &topic, &["first"], PARTITIONS as usize),
    )
    .await;
    let same = start(cohort_leads, opts("same"), &journal).await;
    let other1 = start(!cohort_leads, opts("other1"), &journal).await;
    let other2 = start(!cohort_leads, opts("other2"), &journal).await;
    let all = ["first", "same", "other1", "other2"];
    wait(
        &journal,
        Duration::from_secs(60),
        "4 members with 3 partitions each",
        |j| exclusive(j, &topic, &all, 3),
    )
    .await;
    assert_eq!(
        cohort_led_last(&journal),
        Some(cohort_leads),
        "expected {} to lead",
        if cohort_leads { "cohort" } else { "librdkafka" }
    );
    // Stays exclusive (no late revocation or duplicate assignment).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        exclusive(&journal, &topic, &all, 3),
        "assignment changed while stable"
    );

    want.extend(produce(&p, &topic, 10).await);
    wait(
        &journal,
        Duration::from_secs(30),
        "every record consumed",
        |j| consumed(j, &topic, &want),
    )
    .await;

    // Both clients did the consuming, not just one of them.
    for m in all {
        assert!(
            journal
                .snapshot()
                .iter()
                .any(|e| e.source == m && matches!(e.event, Event::Processed { .. })),
            "{m} processed nothing"
        );
    }

    // A member of the other client leaves cleanly: the rest take its partitions.
    other2.stop().await;
    let rest = ["first", "same", "other1"];
    wait(
        &journal,
        Duration::from_secs(30),
        "3 members with 4 partitions each",
        |j| exclusive(j, &topic, &rest, 4),
    )
    .await;
    want.extend(produce(&p, &topic, 5).await);
    wait(
        &journal,
        Duration::from_secs(30),
        "records after the leave consumed",
        |j| consumed(j, &topic, &want),
    )
    .await;
    let errors: Vec<_> = journal
        .snapshot()
        .into_iter()
        .filter(|e| matches!(e.event, Event::Error { .. }))
        .collect();
    assert!(errors.is_empty(), "members reported errors: {errors:?}");
    // The group dissolves one member at a time: each leave starts a rebalance the next member
    // may be caught in while it closes. A librdkafka member then commits in its revocation
    // callback after the coordinator has already let it go (UNKNOWN_MEMBER_ID, seen on a loaded
    // machine); nothing is lost by that (its records are consumed again), so only that error is
    // tolerated while closing.
    let before = journal.snapshot().len();
    for m in [first, same, other1] {
        m.stop().await;
    }
    let closing: Vec<_> = journal.snapshot()[before..]
        .iter()
        .filter(|e| match &e.event {
            Event::Error { message } => {
                !(message.starts_with("commit: ")
                    && (message.contains("UnknownMemberId")
                        || message.contains("IllegalGeneration")
                        || message.contains("RebalanceInProgress")))
            }
            _ => false,
        })
        .cloned()
        .collect();
    assert!(
        closing.is_empty(),
        "members reported errors while closing: {closing:?}"
    );

    // The scenario checker's rules on the whole journal, both clients alike: no partition
    // owned twice at once, records and commits only while owned, commits never backwards
    // (a librdkafka member journaling from its commit callback failed the last two).
    let entries = journal.snapshot();
    let first_ts = entries.first().map_or(0, |e| e.ts);
    let last_ts = entries.last().map_or(0, |e| e.ts);
    let analysis = checker::check(
        &entries,
        &CheckInput {
            topics: BTreeMap::from([(topic.clone(), PARTITIONS)]),
            start_ts: first_ts,
            timeline_end_ts: last_ts,
            end_ts: last_ts,
            max_duplicates: None,
            max_rebalance: None,
            convergence_bound: Duration::from_secs(3600),
            commit_grace: Duration::from_secs(1),
        },
    );
    for name in [
        "exclusive-ownership",
        "acts-only-while-owned",
        "commits-never-go-backwards",
    ] {
        let f = analysis
            .findings
            .iter()
            .find(|f| f.check == name)
            .unwrap_or_else(|| panic!("the checker has no {name} finding"));
        assert!(f.passed, "{name}: {} {:?}", f.summary, f.evidence);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_mixed_with_librdkafka_cohort_leads() {
    mixed_group("range", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_mixed_with_librdkafka_librdkafka_leads() {
    mixed_group("range", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_mixed_with_librdkafka_cohort_leads() {
    mixed_group("cooperative-sticky", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_mixed_with_librdkafka_librdkafka_leads() {
    mixed_group("cooperative-sticky", false).await;
}
