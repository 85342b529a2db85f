//! Consumes a prefilled topic with one cohort member and prints where the time goes
//! (`RUST_LOG=cohort::consumer=trace` shows every fetch). A development aid for the group
//! throughput benchmark.

use std::time::{Duration, Instant};

use cohort::{ClientConfig, Consumer, GroupConfig, OffsetReset, Producer, ProducerRecord};
use cohort_testbroker::{TestBroker, unique_name};

/// CPU time of every thread of this process so far (Linux: `/proc/self/task/*/schedstat`).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
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
    let mut cfg = GroupConfig::new(broker.bootstrap(), &unique_name("g"), &[&topic]);
    cfg.balancers = vec![Box::new(cohort_balancers::Range)];
    cfg.session_timeout = Duration::from_secs(6);
    cfg.heartbeat_interval = Duration::from_millis(500);
    cfg.offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(cfg).await.unwrap();
    let cpu_start = cpu_ns();
    let mut n = 0;
    let mut first = None;
    while let Some(r) = c.recv().await {
        let r = r.unwrap();
        first.get_or_insert_with(Instant::now);
        c.ack(&r);
        n += 1;
        if n == 200_000 {
            break;
        }
    }
    let took = first.unwrap().elapsed();
    let cpu = cpu_ns().saturating_sub(cpu_start);
    println!(
        "200000 records in {took:?}: {:.0} records/s, client CPU {:.1} ms ({:.0} ns/record)",
        200_000.0 / took.as_secs_f64(),
        cpu as f64 / 1e6,
        cpu as f64 / 200_000.0
    );
    c.abort();
}
