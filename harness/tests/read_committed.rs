//! `isolation.level=read_committed` on Apache Kafka, with a transactional producer (librdkafka's,
//! the reference client here): committed and aborted transactions interleaved on the same
//! partitions, then one left open. A read_committed consumer gets every committed record and no
//! aborted one, stops at the last stable offset while the transaction is open (its lag measured
//! to there), and gets the rest once it commits; a read_uncommitted consumer of the same topic
//! does get the aborted records, so the test tells the two apart.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohort::{Consumer, GroupConfig, IsolationLevel, OffsetReset, TopicPartition};
use cohort_testbroker::{TestBroker, unique_name};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::util::Timeout;

const PARTITIONS: i32 = 2;

fn send(p: &BaseProducer, topic: &str, prefix: &str, n: i32) {
    for i in 0..n {
        let value = format!("{prefix}-{i}");
        p.send(
            BaseRecord::<(), String>::to(topic)
                .partition(i % PARTITIONS)
                .payload(&value),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    }
    p.flush(Timeout::After(Duration::from_secs(30)))
        .expect("flush");
}

/// Values received within `quiet` of the last one (or `limit` overall), with the consumer.
async fn drain(c: &mut Consumer, want: usize, limit: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let wait = if got.len() >= want {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        match tokio::time::timeout(wait, c.recv()).await {
            Ok(Some(r)) => {
                let r = r.expect("record");
                got.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into());
                c.ack(&r);
            }
            Ok(None) => break,
            Err(_) if got.len() >= want => break,
            Err(_) => {}
        }
    }
    got
}

fn consumer_config(bootstrap: &str, topic: &str, isolation: IsolationLevel) -> GroupConfig {
    let mut cfg = GroupConfig::new(bootstrap, &unique_name("g"), &[topic]);
    cfg.offset_reset = OffsetReset::Earliest;
    cfg.isolation_level = isolation;
    cfg.fetch_max_wait = Duration::from_millis(200);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_committed_drops_aborted_transactions_and_stops_at_the_last_stable_offset() {
    let broker = TestBroker::shared().expect("broker");
    let topic = unique_name("txn");
    cohort::Producer::new(cohort::ClientConfig::new(broker.bootstrap()))
        .create_topic(&topic, PARTITIONS, 1)
        .await
        .expect("topic");
    let p: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("transactional.id", unique_name("tx"))
        .set("broker.address.family", "v4")
        .create()
        .expect("transactional producer");
    let t = Timeout::After(Duration::from_secs(30));
    p.init_transactions(t).expect("init_transactions");
    // Six transactions, committed and aborted in turn, and records outside any transaction
    // are not possible on a transactional producer: every record is in one.
    for round in 0..6 {
        p.begin_transaction().expect("begin");
        if round % 2 == 0 {
            send(&p, &topic, &format!("commit{round}"), 10);
            p.commit_transaction(t).expect("commit");
        } else {
            send(&p, &topic, &format!("abort{round}"), 10);
            p.abort_transaction(t).expect("abort");
        }
    }
    // One left open: its records are past the last stable offset.
    p.begin_transaction().expect("begin");
    send(&p, &topic, "open", 10);

    let mut committed = Consumer::new(consumer_config(
        broker.bootstrap(),
        &topic,
        IsolationLevel::ReadCommitted,
    ))
    .await
    .expect("read_committed consumer");
    let got = drain(&mut committed, 30, Duration::from_secs(60)).await;
    let aborted: Vec<&String> = got.iter().filter(|v| !v.starts_with("commit")).collect();
    assert!(
        aborted.is_empty(),
        "delivered outside committed transactions: {aborted:?}"
    );
    assert_eq!(got.len(), 30, "every committed record once: {got:?}");
    // Lag is measured to the last stable offset: nothing is left before the open transaction.
    let lag: BTreeMap<TopicPartition, i64> = committed.metrics().await.lag;
    assert_eq!(lag.len(), PARTITIONS as usize, "{lag:?}");
    assert!(lag.values().all(|&l| l == 0), "lag to the LSO: {lag:?}");

    // The open transaction commits: its records follow.
    p.commit_transaction(t)
        .expect("commit the open transaction");
    let more = drain(&mut committed, 10, Duration::from_secs(30)).await;
    assert_eq!(more.len(), 10, "{more:?}");
    assert!(more.iter().all(|v| v.starts_with("open")), "{more:?}");
    committed.close().await.expect("close");

    // read_uncommitted sees the aborted records too (40 data records, markers skipped).
    let mut uncommitted = Consumer::new(consumer_config(
        broker.bootstrap(),
        &topic,
        IsolationLevel::ReadUncommitted,
    ))
    .await
    .expect("read_uncommitted consumer");
    let all = drain(&mut uncommitted, 70, Duration::from_secs(60)).await;
    assert_eq!(all.len(), 70, "{all:?}");
    assert_eq!(all.iter().filter(|v| v.starts_with("abort")).count(), 30);
    uncommitted.close().await.expect("close");

    // `cohort member --isolation-level` of both clients processes the 40 committed records.
    for client in ["cohort", "librdkafka"] {
        for (level, want) in [("read_committed", 40), ("read_uncommitted", 70)] {
            let n = member_processes(broker.bootstrap(), &topic, client, level, want);
            assert_eq!(n, want, "{client} {level}");
        }
    }
}

/// Records a `cohort member` process reports processed, once it reached `want` and stayed
/// there for 2 s (or after 40 s).
fn member_processes(bootstrap: &str, topic: &str, client: &str, level: &str, want: i64) -> i64 {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["member", "--bootstrap", bootstrap, "--topic", topic])
        .args(["--group", &unique_name("g"), "--balancer", "range"])
        .args(["--client", client, "--isolation-level", level])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cohort member");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let (mut n, end) = (0i64, Instant::now() + Duration::from_secs(40));
    let mut reached: Option<Instant> = None;
    while Instant::now() < end && reached.is_none_or(|t| t.elapsed() < Duration::from_secs(2)) {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(100))
            && v["event"] == "processed"
        {
            n += v["last"].as_i64().unwrap_or(0) - v["first"].as_i64().unwrap_or(0) + 1;
        }
        if n >= want && reached.is_none() {
            reached = Some(Instant::now());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    n
}
