//! Group benchmarks against the real broker, cohort and librdkafka (rust-rdkafka 0.39, bundled
//! librdkafka 2.12.1) side by side in one run, same broker, same timeouts:
//!
//! - `throughput`: one member consumes a prefilled topic (200,000 records of 100 bytes over 4
//!   partitions) from the earliest offset; timed from the first record to the last (the join is
//!   not counted), reported as records/s and bytes/s.
//! - `rebalance`: two members consume; a third joins; timed from the join until the group is
//!   rebalanced (every member has its new assignment) and the newcomer consumes. Eager (range)
//!   and cooperative (cooperative-sticky).
//!
//! `cargo bench -p cohort-benches --bench group` (about ten minutes) runs on the default broker,
//! Apache Kafka 4.4.0 (`COHORT_BROKER_KIND=tansu` for Tansu). Results are recorded in
//! `docs/BENCHMARKS.md`. Tansu holds every JoinGroup for half the session timeout (a 6 s
//! session here, so 3 s per round), which dominates rebalance times there for both clients;
//! cohort's `cooperative_rejoin_delay` case is run on Tansu only, where it helps.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

mod common;
mod members;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort::{ClientConfig, Producer, ProducerRecord};
use cohort_testbroker::{TestBroker, unique_name};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use members::{CohortRunner, RdRunner, SETTLED_IDLE, cohort_config, rd_config, settled, trickle};

const PARTITIONS: i32 = 4;
const RECORDS: usize = 200_000;
const VALUE: usize = 100;

struct Env {
    rt: tokio::runtime::Runtime,
    broker: TestBroker,
    topic: String,
}

fn env() -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = TestBroker::start().expect("broker");
    eprintln!("group benchmarks on {}", broker.info());
    let topic = unique_name("bench");
    rt.block_on(async {
        let p = Producer::new(ClientConfig::new(broker.bootstrap()));
        p.create_topic(&topic, PARTITIONS, 1).await.expect("topic");
        let value = vec![b'x'; VALUE];
        let per = RECORDS / PARTITIONS as usize;
        for part in 0..PARTITIONS {
            for chunk in 0..per / 1000 {
                let recs: Vec<ProducerRecord> = (0..1000)
                    .map(|_| ProducerRecord::value(value.clone()))
                    .collect();
                p.send(&topic, part, &recs)
                    .await
                    .unwrap_or_else(|e| panic!("produce chunk {chunk}: {e}"));
            }
        }
    });
    Env { rt, broker, topic }
}

async fn cohort_drain(e: &Env) -> Duration {
    let cfg = cohort_config(e.broker.bootstrap(), &unique_name("g"), &e.topic, "range");
    common::cohort_drain(cfg, RECORDS).await
}

fn rd_drain(e: &Env) -> Duration {
    let cfg = rd_config(e.broker.bootstrap(), &unique_name("g"), "range");
    common::rd_drain(&cfg, &e.topic, RECORDS)
}

fn throughput(c: &mut Criterion) {
    let e = env();
    let mut g = c.benchmark_group("group/throughput-200k-x-100B");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(RECORDS as u64));
    g.bench_function("cohort", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| e.rt.block_on(cohort_drain(&e))).sum())
    });
    g.bench_function("librdkafka", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rd_drain(&e)).sum())
    });
    g.finish();
    let mut g = c.benchmark_group("group/throughput-200k-x-100B-bytes");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Bytes((RECORDS * VALUE) as u64));
    g.bench_function("cohort", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| e.rt.block_on(cohort_drain(&e))).sum())
    });
    g.bench_function("librdkafka", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rd_drain(&e)).sum())
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Rebalance latency.

fn wait(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Waits until two members own every partition between them (see [`members::settled`]), then
/// lets the group sit idle for the same time for both clients before the third member starts.
fn settle(a: &AtomicU64, b: &AtomicU64) {
    assert!(
        wait(Duration::from_secs(60), || settled(a, b, PARTITIONS)),
        "two members did not settle"
    );
    std::thread::sleep(SETTLED_IDLE);
}

fn rebalance(c: &mut Criterion) {
    let e = env();
    let admin = Producer::new(ClientConfig::new(e.broker.bootstrap()));
    let mut g = c.benchmark_group("group/rebalance-join-of-a-third-member");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(120));
    // cohort runs cooperative-sticky twice: with the default (the second round's JoinGroup at
    // once, as the Java client does) and with the 1.2 s pause the harness uses against Tansu,
    // whose follower SyncGroups are answered up to a second late (docs/DESIGN.md).
    let cohort_cases = [
        ("range", "range", Duration::ZERO),
        ("cooperative-sticky", "cooperative-sticky", Duration::ZERO),
        (
            "cooperative-sticky",
            "cooperative-sticky+rejoin-delay-1.2s",
            Duration::from_millis(1200),
        ),
    ];
    let tansu = e.broker.is_tansu();
    for (balancer, label, delay) in cohort_cases {
        if !delay.is_zero() && !tansu {
            continue;
        }
        // cohort: two members, then a third joins; done when every member's assignment is of
        // the new generation and the newcomer consumed a record.
        g.bench_function(BenchmarkId::new("cohort", label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let group = unique_name("g");
                    let member = || {
                        let mut cfg =
                            cohort_config(e.broker.bootstrap(), &group, &e.topic, balancer);
                        cfg.cooperative_rejoin_delay = delay;
                        CohortRunner::start(cfg, None)
                    };
                    let (a, bm) = e.rt.block_on(async { (member().await, member().await) });
                    settle(&a.owned, &bm.owned);
                    let before = a.generation.load(Ordering::SeqCst);
                    let start = Instant::now();
                    let third = e.rt.block_on(member());
                    let ok = wait(Duration::from_secs(60), || {
                        let g3 = third.generation.load(Ordering::SeqCst);
                        if g3 == 0 || third.consumed.load(Ordering::Relaxed) == 0 {
                            e.rt.block_on(trickle(&admin, &e.topic, PARTITIONS));
                            return false;
                        }
                        // As for librdkafka: in an eager rebalance every old member must
                        // have its new assignment; in a cooperative one the newcomer consuming
                        // means the second round is done.
                        balancer != "range"
                            || [&a, &bm]
                                .iter()
                                .all(|m| m.generation.load(Ordering::SeqCst) > before)
                    });
                    assert!(ok, "cohort rebalance did not complete");
                    total += start.elapsed();
                    e.rt.block_on(async {
                        for m in [a, bm, third] {
                            m.stop().await;
                        }
                    });
                }
                total
            })
        });
    }
    for balancer in ["range", "cooperative-sticky"] {
        g.bench_function(BenchmarkId::new("librdkafka", balancer), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let group = unique_name("g");
                    let member = || {
                        RdRunner::start(
                            rd_config(e.broker.bootstrap(), &group, balancer),
                            &e.topic,
                            None,
                        )
                    };
                    let (a, bm) = (member(), member());
                    settle(&a.owned, &bm.owned);
                    let (ba, bb) = (
                        a.assignments.load(Ordering::SeqCst),
                        bm.assignments.load(Ordering::SeqCst),
                    );
                    let start = Instant::now();
                    let third = member();
                    // librdkafka reports an assignment to both old members in an eager
                    // rebalance; in a cooperative one, only members that gain partitions do.
                    // Done when the newcomer consumed a record and every old member that was
                    // told of a change has its new assignment.
                    let ok = wait(Duration::from_secs(60), || {
                        if third.assignments.load(Ordering::SeqCst) == 0
                            || third.consumed.load(Ordering::Relaxed) == 0
                        {
                            e.rt.block_on(trickle(&admin, &e.topic, PARTITIONS));
                            return false;
                        }
                        balancer != "range"
                            || (a.assignments.load(Ordering::SeqCst) > ba
                                && bm.assignments.load(Ordering::SeqCst) > bb)
                    });
                    assert!(ok, "librdkafka rebalance did not complete");
                    total += start.elapsed();
                    for m in [a, bm, third] {
                        m.stop();
                    }
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, throughput, rebalance);
criterion_main!(benches);
