//! One rebalance of the group benchmark at a time, with a timeline: two members settle, a third
//! joins, and every member's events (rebalancing, assigned, revoked, the first record after an
//! assignment) are printed with the time since the third member started. A development aid for
//! the rebalance benchmark (`benches/group.rs`, whose members and settings it shares): it shows
//! which rounds each sample went through where the criterion benchmark only gives totals.
//!
//! `rebalance_trace [ROUNDS] [BALANCER] [REJOIN_DELAY_MS] [CLIENT]` (defaults: 3,
//! cooperative-sticky, 0, cohort). With CLIENT `librdkafka` the three members are librdkafka's.
//! `RUST_LOG=cohort::member=trace,cohort::driver=trace` adds every group request and response
//! of cohort's members; with librdkafka, any `RUST_LOG` adds its `cgrp` debug log.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

#[path = "../benches/members/mod.rs"]
mod members;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort::{ClientConfig, Producer};
use cohort_testbroker::{TestBroker, unique_name};
use members::{
    CohortRunner, RdRunner, SETTLED_IDLE, Trace, cohort_config, rd_config, settled, trickle,
};

const PARTITIONS: i32 = 4;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .try_init();
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let balancer = args.next().unwrap_or_else(|| "cooperative-sticky".into());
    let delay = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(0));
    let librdkafka = args.next().as_deref() == Some("librdkafka");
    let broker = TestBroker::start().expect("broker");
    let topic = unique_name("t");
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    p.create_topic(&topic, PARTITIONS, 1).await.expect("topic");
    trickle(&p, &topic, PARTITIONS).await;
    let mut totals = Vec::new();
    for round in 0..rounds {
        let group = unique_name("g");
        let t0 = Arc::new(Mutex::new(Instant::now()));
        let trace = |name| {
            Some(Trace {
                name,
                t0: t0.clone(),
            })
        };
        println!("--- round {round}: a and b start");
        let took = if librdkafka {
            let member = |name| {
                let mut cfg = rd_config(broker.bootstrap(), &group, &balancer);
                if std::env::var_os("RUST_LOG").is_some() {
                    cfg.set("debug", "cgrp")
                        .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
                }
                RdRunner::start(cfg, &topic, trace(name))
            };
            let (a, b) = (member("a"), member("b"));
            let c = third(
                &t0,
                &p,
                &topic,
                || settled(&a.owned, &b.owned, PARTITIONS),
                || {
                    let c = member("c");
                    async move { c }
                },
                |c| c.owned.load(Ordering::SeqCst) > 0 && c.consumed.load(Ordering::Relaxed) > 0,
            )
            .await;
            let took = t0.lock().unwrap().elapsed();
            let callbacks = c.assignments.load(Ordering::SeqCst);
            println!("--- c consumed after {callbacks} assignment callback(s)");
            tokio::task::spawn_blocking(move || {
                for m in [a, b, c] {
                    m.stop();
                }
            })
            .await
            .expect("stop");
            took
        } else {
            let member = |name| {
                let mut cfg = cohort_config(broker.bootstrap(), &group, &topic, &balancer);
                cfg.cooperative_rejoin_delay = delay;
                CohortRunner::start(cfg, trace(name))
            };
            let (a, b) = (member("a").await, member("b").await);
            let c = third(
                &t0,
                &p,
                &topic,
                || settled(&a.owned, &b.owned, PARTITIONS),
                || member("c"),
                |c| c.owned.load(Ordering::SeqCst) > 0 && c.consumed.load(Ordering::Relaxed) > 0,
            )
            .await;
            let took = t0.lock().unwrap().elapsed();
            let generation = c.generation.load(Ordering::SeqCst) - 1;
            println!("--- c consumed in generation {generation}");
            for m in [a, b, c] {
                m.stop().await;
            }
            took
        };
        println!("--- round {round}: {:.2} s", took.as_secs_f64());
        totals.push(took.as_secs_f64());
    }
    let mean = totals.iter().sum::<f64>() / totals.len() as f64;
    println!("rounds: {totals:.2?}, mean {mean:.2} s");
}

/// Waits for the first two members to settle (and idle, as the benchmark does),
/// restarts the clock, starts the third member and trickles records until it has consumed one.
async fn third<M, F: std::future::Future<Output = M>>(
    t0: &Mutex<Instant>,
    p: &Producer,
    topic: &str,
    settled: impl Fn() -> bool,
    start: impl FnOnce() -> F,
    done: impl Fn(&M) -> bool,
) -> M {
    while !settled() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(SETTLED_IDLE).await;
    println!("--- c starts (times from here)");
    *t0.lock().unwrap() = Instant::now();
    let c = start().await;
    while !done(&c) {
        trickle(p, topic, PARTITIONS).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c
}
