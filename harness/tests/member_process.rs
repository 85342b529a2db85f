//! `cohort member` as a process: it joins, prints one JSON object per event line, commits what
//! it consumed, and on SIGTERM leaves cleanly and exits 0. Every client run this way (cohort,
//! librdkafka, and the pure-Rust krafka and kacrab) speaks the same line format.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cohort::{ClientConfig, Producer, ProducerRecord};
use cohort_testbroker::{TestBroker, unique_name};
use serde_json::Value;

fn run_member(client: &str) {
    let broker = TestBroker::shared().expect("broker");
    let topic = unique_name("proc");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = Producer::new(ClientConfig::new(broker.bootstrap()));
        p.create_topic(&topic, 3, 1).await.expect("topic");
        for part in 0..3 {
            let recs: Vec<ProducerRecord> = (0..10)
                .map(|i| ProducerRecord::value(format!("{i}")))
                .collect();
            p.send(&topic, part, &recs).await.expect("produce");
        }
    });
    let group = unique_name("g");
    // A cohort member also serves its metrics (librdkafka's are its own, not served here).
    let metrics_addr = (client == "cohort").then(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["member", "--bootstrap", broker.bootstrap()])
        .args(["--group", &group, "--topic", &topic])
        .args(["--balancer", "range", "--name", "solo", "--client", client])
        .args([
            "--session-timeout-ms",
            "6000",
            "--heartbeat-interval-ms",
            "500",
        ])
        .args(
            metrics_addr
                .iter()
                .flat_map(|a| ["--metrics-addr".to_owned(), a.clone()]),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cohort member");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait = |seen: &mut Vec<Value>, what: &str, pred: &dyn Fn(&Value) -> bool| {
        let end = Instant::now() + Duration::from_secs(40);
        while Instant::now() < end {
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
                let hit = pred(&v);
                seen.push(v);
                if hit {
                    return;
                }
            }
        }
        panic!("no {what} line; saw {seen:#?}");
    };
    wait(&mut seen, "assigned", &|v| {
        v["event"] == "assigned"
            && v["source"] == "solo"
            && v["partitions"][&topic]
                .as_array()
                .is_some_and(|a| a.len() == 3)
    });
    // Everything consumed is committed: 10 records per partition (in one commit or several:
    // a member commits only what changed since its last commit).
    let last = std::cell::RefCell::new([0i64; 3]);
    wait(&mut seen, "committed", &|v| {
        if v["event"] == "committed" {
            let mut last = last.borrow_mut();
            for (p, o) in last.iter_mut().enumerate() {
                if let Some(n) = v["offsets"][&topic][p.to_string()].as_i64() {
                    *o = n;
                }
            }
        }
        *last.borrow() == [10; 3]
    });
    if let Some(addr) = &metrics_addr {
        check_metrics(addr, &group, &topic);
    }
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    wait(&mut seen, "left", &|v| v["event"] == "left");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        seen.iter().all(|v| v["event"] != "error"),
        "errors: {seen:#?}"
    );
}

/// `GET /metrics` from `--metrics-addr`.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics listener");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The value of the series whose line starts with `name{` and has every label of `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The member consumed 30 records of 3 partitions: its metrics say so, with Kafka's names.
fn check_metrics(addr: &str, group: &str, topic: &str) {
    let ours = [r#"client_id="cohort-solo""#, &format!(r#"group="{group}""#)];
    let end = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(addr);
        // The lag gauges follow the next fetch response after the last records.
        if value(&text, "kafka_consumer_records_consumed_total", &ours) == Some(30.0)
            && (0..3).all(|p| {
                let part = format!(r#"partition="{p}""#);
                let t = format!(r#"topic="{topic}""#);
                value(&text, "kafka_consumer_records_lag", &[ours[0], &t, &part]) == Some(0.0)
            })
        {
            break text;
        }
        assert!(
            Instant::now() < end,
            "metrics never showed 30 records consumed: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let at_least = |name: &str, min: f64| {
        let v = value(&text, name, &ours).unwrap_or_else(|| panic!("no {name} in {text}"));
        assert!(v >= min, "{name} = {v} < {min}: {text}");
    };
    assert_eq!(
        value(&text, "kafka_consumer_assigned_partitions", &ours),
        Some(3.0),
        "{text}"
    );
    at_least("kafka_consumer_rebalance_total", 1.0);
    at_least("kafka_consumer_heartbeat_total", 1.0);
    at_least("kafka_consumer_fetch_latency_seconds_count", 1.0);
    at_least("kafka_consumer_commit_latency_seconds_count", 1.0);
    at_least("kafka_consumer_rebalance_latency_seconds_count", 1.0);
    at_least("kafka_consumer_last_rebalance_seconds_ago", 0.0);
}

#[test]
fn a_cohort_member_process_reports_events_and_leaves_on_sigterm() {
    run_member("cohort");
}

#[test]
fn a_librdkafka_member_process_speaks_the_same_lines() {
    run_member("librdkafka");
}

/// krafka and kacrab (harness/clients/rust) as member processes: the same lines, commits
/// covering everything consumed, a clean leave on SIGTERM.
#[test]
fn a_krafka_member_process_speaks_the_same_lines() {
    run_member("krafka");
}

#[test]
fn a_kacrab_member_process_speaks_the_same_lines() {
    run_member("kacrab");
}

/// A setting the client cannot honour is refused, naming the client, before anything starts.
#[test]
fn the_rust_clients_refuse_what_they_cannot_honour() {
    let refused = |client: &str, extra: &[&str], why: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["member", "--bootstrap", "127.0.0.1:1", "--group", "g"])
            .args(["--topic", "t", "--client", client])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{client} {extra:?} ran");
        assert!(
            err.contains(client) && err.contains(why),
            "{client} {extra:?}: {err}"
        );
    };
    // krafka has no eager sticky assignor.
    refused("krafka", &["--balancer", "sticky"], "balancer sticky");
    // Their rebalance timeout is max.poll.interval.ms, as Java's.
    for client in ["krafka", "kacrab"] {
        refused(
            client,
            &[
                "--rebalance-timeout-ms",
                "1000",
                "--max-poll-interval-ms",
                "2000",
            ],
            "--rebalance-timeout-ms",
        );
        refused(client, &["--weight", "2"], "--weight");
    }
}

#[test]
fn a_bad_flag_is_an_error_line_and_a_failure() {
    let out = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args([
            "member",
            "--bootstrap",
            "127.0.0.1:1",
            "--group",
            "g",
            "--topic",
            "t",
        ])
        .args(["--balancer", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.contains(r#""event":"error""#) && line.contains("unknown balancer"),
        "{line}"
    );
}

/// A member whose broker cannot be reached says so at the default log level and as a JSON
/// `error` event, with the broker, the cause and the next attempt, instead of staying silent.
#[test]
fn an_unreachable_broker_is_an_error_event() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .args(["member", "--bootstrap", &dead])
        .args(["--group", "g", "--topic", "t", "--balancer", "range"])
        .args(["--name", "lonely", "--client", "cohort"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cohort member");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let error = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("an error event within 20 s");
        let v: Value = serde_json::from_str(&line).expect(&line);
        if v.to_string().contains("\"error\"") && line.contains("cannot connect") {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(error.contains("cannot connect to broker"), "{error}");
    assert!(error.contains(&dead), "{error}");
    assert!(error.contains("retry_in_ms"), "{error}");
}

/// A member process can be SIGKILLed at any moment, and the checker counts a committed record
/// without a `processed` line as lost. The member writes its lines in runs and the consumer
/// commits on a timer of its own, so a commit must never cover a record whose line is not out
/// yet: with commits every 20 ms and lines every 200 ms, killing the member while it consumes
/// finds any such record within a few rounds (the 2026-12-04 soak lost two records this way).
#[test]
fn a_killed_member_process_never_committed_past_its_journal() {
    let broker = TestBroker::shared().expect("broker");
    let topic = unique_name("killed");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let per_partition = 5_000;
    rt.block_on(async {
        let p = Producer::new(ClientConfig::new(broker.bootstrap()));
        p.create_topic(&topic, 3, 1).await.expect("topic");
        let recs: Vec<ProducerRecord> = (0..per_partition)
            .map(|i| ProducerRecord::value(format!("{i}")))
            .collect();
        for part in 0..3 {
            p.send(&topic, part, &recs).await.expect("produce");
        }
    });
    let cluster = cohort::unstable::Cluster::new(ClientConfig::new(broker.bootstrap()));
    let partitions: Vec<cohort::TopicPartition> = (0..3)
        .map(|p| cohort::TopicPartition::new(topic.as_str(), p))
        .collect();
    let mut in_flight_rounds = 0;
    for round in 0..4u64 {
        let group = unique_name("killed-g");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(["member", "--bootstrap", broker.bootstrap()])
            .args(["--group", &group, "--topic", &topic, "--balancer", "range"])
            .args(["--name", "victim", "--auto-commit-interval-ms", "20"])
            // About a thousand records a second: the kill lands mid-stream.
            .args(["--processing-us", "200"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cohort member");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Value>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("a JSON line");
                let _ = tx.send(v);
            }
        });
        // Kill it a little later each round, while it is consuming.
        let end = Instant::now() + Duration::from_secs(40);
        let mut lines = Vec::new();
        loop {
            assert!(Instant::now() < end, "no processed line; saw {lines:#?}");
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(100)) {
                let first = v["event"] == "processed";
                lines.push(v);
                if first {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300 + 130 * round));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        // What the journal shows processed: the next offset per partition.
        let mut journaled = [0i64; 3];
        for v in lines.iter().filter(|v| v["event"] == "processed") {
            let p = v["partition"].as_u64().unwrap() as usize;
            journaled[p] = journaled[p].max(v["last"].as_i64().unwrap() + 1);
        }
        let committed = rt
            .block_on(cohort::unstable::fetch_committed(
                &cluster,
                &group,
                &partitions,
                Duration::from_secs(30),
            ))
            .expect("committed offsets");
        for (tp, c) in committed {
            let c = c.unwrap_or(0);
            let j = journaled[tp.partition as usize];
            assert!(
                c <= j,
                "round {round}: partition {} committed at {c} but journaled only up to {j}",
                tp.partition
            );
            if c > 0 && c < per_partition {
                in_flight_rounds += 1;
            }
        }
    }
    // The kills landed while records were being consumed and committed, or the test shows
    // nothing.
    assert!(
        in_flight_rounds > 0,
        "every kill came before or after the work"
    );
}
