//! Consumes a prefilled topic with one cohort member and prints where the time goes
//! (`RUST_LOG=cohort::consumer=trace` shows every fetch). A development aid for the group
//! throughput benchmark: it runs in seconds where the criterion benchmark takes minutes.
//!
//! `consume_timing [ROUNDS]` alternates cohort and librdkafka (same broker, same topic, same
//! timing: from the first record to the last) for ROUNDS rounds (default 3) and prints each
//! run's wall time and the client's CPU time per record. `consume_timing ROUNDS cohort` runs
//! cohort alone, `consume_timing ROUNDS many` only its `recv_many` (for `perf record`).
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cohort::{ClientConfig, GroupConfig, OffsetReset, Producer, ProducerRecord};
use cohort_testbroker::{TestBroker, unique_name};

use cohort_benches::process_cpu_ns as cpu_ns;

const RECORDS: usize = 200_000;

/// Minor page faults of this process so far (`/proc/self/stat`, field 10): the broker is a
/// child process and not counted. Fresh memory costs a fault per page, which showed as a fifth
/// of the consumer's CPU before receive buffers and record vectors were reused.
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = &s[s.rfind(')')? + 2..];
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Runs one drain and reports its wall time, this process's CPU time and page faults.
async fn measured(who: &str, drain: impl std::future::Future<Output = Duration>) -> Duration {
    let (cpu_start, faults) = (cpu_ns(), minor_faults());
    let took = drain.await;
    report(
        who,
        took,
        cpu_ns().saturating_sub(cpu_start),
        minor_faults() - faults,
    );
    took
}

fn report(who: &str, took: Duration, cpu: u64, faults: u64) {
    println!(
        "{who:>10}: {RECORDS} records in {:.1} ms: {:.0} records/s, client CPU {:.1} ms ({:.0} ns/record), {faults} page faults",
        took.as_secs_f64() * 1e3,
        RECORDS as f64 / took.as_secs_f64(),
        cpu as f64 / 1e6,
        cpu as f64 / RECORDS as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let mode = std::env::args().nth(2);
    let cohort_only = matches!(mode.as_deref(), Some("cohort" | "many"));
    let many_only = mode.as_deref() == Some("many");
    let broker = TestBroker::start().expect("broker");
    let topic = unique_name("t");
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    p.create_topic(&topic, 4, 1).await.unwrap();
    let value = vec![b'x'; 100];
    for part in 0..4 {
        for _ in 0..50 {
            let recs: Vec<ProducerRecord> = (0..1000)
                .map(|_| ProducerRecord::value(value.clone()))
                .collect();
            p.send(&topic, part, &recs).await.unwrap();
        }
    }
    let (mut cohort_total, mut rd_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        // A second between runs lets the broker finish with the previous client (an
        // abandoned long poll, its group), so neither side pays for the other.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !many_only {
            cohort_total +=
                measured("cohort", cohort_drain(broker.bootstrap(), &topic, false)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        measured(
            "cohort-many",
            cohort_drain(broker.bootstrap(), &topic, true),
        )
        .await;
        if cohort_only {
            continue;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (bootstrap, t) = (broker.bootstrap().to_owned(), topic.clone());
        rd_total += measured("librdkafka", async move {
            tokio::task::spawn_blocking(move || rd_drain(&bootstrap, &t))
                .await
                .unwrap()
        })
        .await;
    }
    println!(
        "mean: cohort {:.1} ms, librdkafka {:.1} ms",
        cohort_total.as_secs_f64() * 1e3 / rounds as f64,
        rd_total.as_secs_f64() * 1e3 / rounds as f64
    );
}

/// cohort with the group benchmark's settings: `recv` and `ack` per record, or `recv_many` and
/// `ack_many`.
async fn cohort_drain(bootstrap: &str, topic: &str, many: bool) -> Duration {
    let mut cfg = GroupConfig::new(bootstrap, &unique_name("g"), &[topic]);
    cfg.balancers = vec![Box::new(cohort_balancers::Range)];
    cfg.session_timeout = Duration::from_secs(6);
    cfg.heartbeat_interval = Duration::from_millis(500);
    cfg.offset_reset = OffsetReset::Earliest;
    if many {
        drain_many(cfg, RECORDS).await
    } else {
        common::cohort_drain(cfg, RECORDS).await
    }
}

/// librdkafka with the group benchmark's settings, polling on this thread.
fn rd_drain(bootstrap: &str, topic: &str) -> Duration {
    let mut cfg = rdkafka::config::ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("g"))
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("broker.address.family", "v4");
    common::rd_drain(&cfg, topic, RECORDS)
}

/// `common::cohort_drain` with `recv_many` and `ack_many`, up to 1,000 records a call.
async fn drain_many(cfg: GroupConfig, records: usize) -> Duration {
    let mut c = cohort::Consumer::new(cfg).await.expect("consumer");
    let mut n = 0;
    let mut first = None;
    let mut batch = Vec::with_capacity(1000);
    while let Some(got) = c.recv_many(&mut batch, 1000.min(records - n)).await {
        got.expect("records");
        first.get_or_insert_with(Instant::now);
        c.ack_many(&batch);
        n += batch.len();
        batch.clear();
        if n == records {
            break;
        }
    }
    let took = first.map(|f| f.elapsed()).unwrap_or_default();
    c.abort();
    took
}
