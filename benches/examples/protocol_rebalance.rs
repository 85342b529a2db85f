//! Rebalance latency of the consumer group protocol (KIP-848) against the classic
//! cooperative-sticky protocol, for cohort, the Java consumer (the pinned release's
//! kafka-clients, `cohort_harness::java`) and librdkafka, on one Apache Kafka broker in one run,
//! so the figures compare as ratios on a shared machine.
//!
//! The pure-Rust clients krafka and kacrab (`harness/clients/rust`) run beside them on both.
//!
//! With `--all-clients` first, every reference client instead, on the classic protocol: eager
//! range for all eight (cohort, Java, librdkafka, kafka-go, sarama, franz-go, krafka, kacrab)
//! and cooperative-sticky for the six that have it.
//!
//! `protocol_rebalance [--all-clients] [ROUNDS] [GROUP_SIZE]...` (`COHORT_BENCH_ONLY=CLIENT,...`
//! runs those clients' cases alone; defaults: 5 rounds, groups of 4 and 16; with
//! `COHORT_BENCH_SVG=FILE` the medians are also drawn as a bar chart into FILE, and
//! `--chart LOG`, `--rounds-chart LOG` or `--split-chart LOG` draw one from an earlier run's
//! output (medians, every round's samples per client, or the expected figures split below);
//! `COHORT_BENCH_RESTARTS=N` times N static restarts a round rather than one). For
//! each client, protocol and group size: the group settles (every partition owned, every member
//! some), then
//! - **join**: one more member starts; timed until the group owns every partition again, the
//!   newcomer holds its share and has consumed a record;
//! - **leave**: that member closes (a clean leave); timed until the others own every partition.
//!
//! Prints the median and the range of each case, and one JSON line per case for the record,
//! with every sample in the order taken (`join_samples`, ...: round k of every client saw the
//! same idle time before the change).
//!
//! The broker logs every request (`BrokerOptions::request_log`), and each join and leave is
//! split where the last member of the group heard of the change (`cohort_harness::request_log`):
//! **heard**, the wait for the members' next heartbeats, and **after**, the clients' own work
//! from there (`join_heard_samples`, `join_after_samples`, ...). The heard part depends on
//! where the change fell in the members' heartbeat cycle, which differs by client: the change
//! comes at a fixed time after a client reports its group settled, and a member process reports
//! through a pipe, later than a member in this process, and starts later. **expected** is what
//! a change at a uniformly drawn moment of the cycle would cost (the members' mean wait, from
//! their heartbeats, plus after): the figure that compares clients.
//! The broker runs consumer groups with a 500 ms heartbeat interval (the test brokers' setting;
//! Kafka's default is 5 s), the classic members with a 6 s session and 500 ms heartbeats (the
//! group benchmark's settings): both protocols hear of a change within one interval. Each
//! change comes at a different point of the heartbeat cycle (the idle time before it varies by
//! round), so the medians are not an artefact of the members' heartbeats lining up with it.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

#[path = "../benches/members/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with the group benchmark, which uses the rest"
)]
mod members;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cohort::{ClientConfig, GroupProtocol, Producer, ProducerRecord};
use cohort_harness::request_log::{self, Span};
use cohort_testbroker::{TestBroker, unique_name};
use members::{CohortRunner, RdRunner, cohort_config, rd_config, trickle};

/// Partitions per member of the settled group, so every member has a share.
const PER_MEMBER: i32 = 2;
/// How long a case may take before the round is given up.
const LIMIT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    Cohort,
    Java,
    Librdkafka,
    KafkaGo,
    Sarama,
    FranzGo,
    Krafka,
    Kacrab,
}

/// A member process of a reference client (the Java consumer, kafka-go, sarama, franz-go), read
/// through the event lines it prints (`cohort member` format).
struct ProcessRunner {
    child: std::process::Child,
    owned: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
    /// When its `started` line was read: the cases time a newcomer from there (the reader
    /// notes it exactly; polling for it had the process clients start the clock up to 5 ms
    /// late, after their client had begun to connect).
    started_at: Option<Instant>,
}

impl ProcessRunner {
    fn start(
        client: Client,
        protocol: Protocol,
        bootstrap: &str,
        group: &str,
        topic: &str,
        instance: Option<&str>,
    ) -> Self {
        use cohort_harness::process_member::Client as C;
        use std::io::BufRead;
        let (kind, name) = match client {
            Client::KafkaGo => (C::KafkaGo, "kafka-go"),
            Client::Sarama => (C::Sarama, "sarama"),
            Client::FranzGo => (C::FranzGo, "franz-go"),
            Client::Krafka => (C::Krafka, "krafka"),
            Client::Kacrab => (C::Kacrab, "kacrab"),
            _ => (C::Java, "java"),
        };
        let program = cohort_harness::clients::install(kind).expect("the member program");
        let mut cmd = std::process::Command::new(&program.program);
        cmd.args(&program.args)
            .args(["--bootstrap", bootstrap, "--group", group, "--topic", topic])
            .args(["--name", name, "--commit-interval-ms", "1000"]);
        if let Some(id) = instance {
            cmd.args(["--instance-id", id]);
        }
        match protocol {
            Protocol::Consumer => {
                cmd.args(["--group-protocol", "consumer"]);
            }
            Protocol::Classic | Protocol::Range => {
                let session = members::SESSION.as_millis().to_string();
                let heartbeat = members::HEARTBEAT.as_millis().to_string();
                cmd.args(["--balancer", protocol.balancer()])
                    .args(["--session-timeout-ms", &session])
                    .args(["--heartbeat-interval-ms", &heartbeat]);
            }
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("the member process");
        let out = child.stdout.take().expect("stdout");
        let owned = Arc::new(AtomicU64::new(0));
        let consumed = Arc::new(AtomicU64::new(0));
        let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let (o2, c2, s2) = (owned.clone(), consumed.clone(), started.clone());
        std::thread::spawn(move || {
            let count = |v: &serde_json::Value| -> u64 {
                v.as_object()
                    .map(|m| {
                        m.values()
                            .filter_map(|ps| ps.as_array())
                            .map(|a| a.len() as u64)
                            .sum()
                    })
                    .unwrap_or(0)
            };
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                match v["event"].as_str() {
                    Some("started") => {
                        let mut at = s2.lock().expect("not poisoned");
                        at.get_or_insert_with(Instant::now);
                    }
                    Some("assigned") => o2.store(count(&v["partitions"]), Ordering::SeqCst),
                    Some("revoked") | Some("lost") => {
                        let n = count(&v["partitions"]);
                        let _ = o2.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                            Some(o.saturating_sub(n))
                        });
                    }
                    Some("processed") => {
                        let n = v["last"].as_i64().unwrap_or(0) - v["first"].as_i64().unwrap_or(0);
                        c2.fetch_add(n as u64 + 1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
        // Timed from here, like the in-process clients: the JVM's start is not the protocol's.
        let t0 = Instant::now();
        let started_at = loop {
            let at = *started.lock().expect("not poisoned");
            if at.is_some() || t0.elapsed() >= LIMIT {
                break at;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        Self {
            child,
            owned,
            consumed,
            started_at,
        }
    }

    /// SIGTERM: the member commits, leaves and exits.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The group protocol and, for the classic one, the balancer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    /// Classic, cooperative-sticky (KIP-429).
    Classic,
    /// The consumer group protocol (KIP-848).
    Consumer,
    /// Classic, eager range: the one balancer every client has.
    Range,
}

impl Protocol {
    fn balancer(self) -> &'static str {
        match self {
            Protocol::Range => "range",
            _ => "cooperative-sticky",
        }
    }
}

/// Whether the case measures a static restart: clients with static membership, on the classic
/// protocol in `--all-clients` mode.
fn restarts(client: Client, protocol: Protocol) -> bool {
    client != Client::KafkaGo && protocol == Protocol::Range
}

/// A running member of either client, read through its counters.
enum Running {
    Cohort(CohortRunner),
    Process(ProcessRunner),
    Rd(RdRunner),
}

impl Running {
    /// Where a newcomer's case starts: a process's `started` line, or now for the clients in
    /// this process (their start returns once the consumer exists, before it has connected).
    fn started_at(&self) -> Instant {
        match self {
            Running::Process(j) => j.started_at.unwrap_or_else(Instant::now),
            Running::Cohort(_) | Running::Rd(_) => Instant::now(),
        }
    }

    fn owned(&self) -> &AtomicU64 {
        match self {
            Running::Cohort(c) => &c.owned,
            Running::Process(j) => &j.owned,
            Running::Rd(r) => &r.owned,
        }
    }

    fn consumed(&self) -> u64 {
        match self {
            Running::Cohort(c) => c.consumed.load(Ordering::Relaxed),
            Running::Process(j) => j.consumed.load(Ordering::Relaxed),
            Running::Rd(r) => r.consumed.load(Ordering::Relaxed),
        }
    }

    async fn stop(self) {
        match self {
            Running::Cohort(c) => c.stop().await,
            Running::Process(j) => {
                let _ = tokio::task::spawn_blocking(move || j.stop()).await;
            }
            Running::Rd(r) => {
                let _ = tokio::task::spawn_blocking(move || r.stop()).await;
            }
        }
    }
}

async fn start(
    client: Client,
    protocol: Protocol,
    bootstrap: &str,
    group: &str,
    topic: &str,
    instance: Option<&str>,
) -> Running {
    match client {
        Client::Cohort => {
            let mut cfg = cohort_config(bootstrap, group, topic, protocol.balancer());
            if protocol == Protocol::Consumer {
                cfg = cohort::GroupConfig::new(bootstrap, group, &[topic]);
                cfg.group_protocol = GroupProtocol::Consumer;
                cfg.offset_reset = cohort::OffsetReset::Earliest;
                cfg.auto_commit_interval = Some(Duration::from_secs(1));
                cfg.rebalance_timeout = Duration::from_secs(15);
            }
            cfg.group_instance_id = instance.map(str::to_owned);
            Running::Cohort(CohortRunner::start(cfg, None).await)
        }
        Client::Java
        | Client::KafkaGo
        | Client::Sarama
        | Client::FranzGo
        | Client::Krafka
        | Client::Kacrab => {
            let (b, g, t) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
            let i = instance.map(str::to_owned);
            Running::Process(
                tokio::task::spawn_blocking(move || {
                    ProcessRunner::start(client, protocol, &b, &g, &t, i.as_deref())
                })
                .await
                .expect("member process"),
            )
        }
        Client::Librdkafka => {
            let mut cfg = rd_config(bootstrap, group, protocol.balancer());
            if protocol == Protocol::Consumer {
                let mut c = rdkafka::config::ClientConfig::new();
                c.set("bootstrap.servers", bootstrap)
                    .set("group.id", group)
                    .set("group.protocol", "consumer")
                    .set("auto.offset.reset", "earliest")
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", "1000")
                    .set("broker.address.family", "v4");
                cfg = c;
            }
            if let Some(id) = instance {
                cfg.set("group.instance.id", id);
            }
            Running::Rd(RdRunner::start(cfg, topic, None))
        }
    }
}

/// Every partition is owned, and member `i` holds its share and has consumed a record.
fn back_in(members: &[Running], i: usize, partitions: i32, share: u64) -> bool {
    let m = &members[i];
    total(members) == partitions as u64
        && m.owned().load(Ordering::SeqCst) >= share
        && m.consumed() > 0
}

fn total(members: &[Running]) -> u64 {
    members
        .iter()
        .map(|m| m.owned().load(Ordering::SeqCst))
        .sum()
}

async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if done() {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// How many static restarts a round times: one where the client has static membership, more
/// with `COHORT_BENCH_RESTARTS=N` (a restart takes a few milliseconds against the seconds a
/// round takes to settle, and its median needs many samples on a shared machine).
fn restart_samples(client: Client, protocol: Protocol) -> usize {
    if !restarts(client, protocol) {
        return 0;
    }
    std::env::var("COHORT_BENCH_RESTARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// A record on every partition every few milliseconds, each partition by a task of its own,
/// while it lives. The join's end is the newcomer's first record: its wait for one is this
/// short for every client. (A record on each partition in turn every 50 ms had the join wait up
/// to 50 ms more for the feed, by chance, and longer for clients whose members commit all they
/// read before giving a partition up, so that nothing waits for the newcomer.)
struct Feed(Vec<tokio::task::JoinHandle<()>>);

impl Feed {
    fn start(p: &Producer, topic: &str, partitions: i32) -> Self {
        let tasks = (0..partitions)
            .map(|part| {
                let (p, topic) = (p.clone(), topic.to_owned());
                tokio::spawn(async move {
                    loop {
                        let _ = p.send(&topic, part, &[ProducerRecord::value("t")]).await;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Self(tasks)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs `f` and times it, `None` when it gave up.
async fn timed<F: Future<Output = Option<Duration>>>(f: F) -> Option<Duration> {
    f.await
}

struct Samples {
    join: Vec<Duration>,
    leave: Vec<Duration>,
    restart: Vec<Duration>,
    /// Each join's and leave's group and time span, in the order of `join` and `leave`, to
    /// find them in the broker's request log.
    join_spans: Vec<Span>,
    leave_spans: Vec<Span>,
}

/// A timed case's span on the request log's clock (epoch milliseconds).
fn span(group: &str, t0: Instant, took: Duration) -> Span {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let from = now - t0.elapsed().as_secs_f64() * 1e3;
    Span {
        group: group.to_owned(),
        from,
        to: from + took.as_secs_f64() * 1e3,
    }
}

/// Two seconds and a fraction of the heartbeat interval that changes with `salt`.
fn idle(salt: usize) -> Duration {
    Duration::from_millis(2000 + (salt as u64 * 317) % 500)
}

async fn round(
    client: Client,
    protocol: Protocol,
    bootstrap: &str,
    p: &Producer,
    size: usize,
    salt: usize,
    samples: &mut Samples,
) {
    let partitions = PER_MEMBER * (size as i32 + 1);
    let topic = unique_name("pr");
    p.create_topic(&topic, partitions, 1).await.expect("topic");
    trickle(p, &topic, partitions).await;
    let group = unique_name("g");
    let mut members = Vec::new();
    for _ in 0..size {
        // Member 0 is static where the client has static membership (KIP-345; kafka-go has
        // none), for the restart at the end.
        let instance = (members.is_empty() && restarts(client, protocol)).then_some("static-0");
        members.push(start(client, protocol, bootstrap, &group, &topic, instance).await);
    }
    let settled = until(LIMIT, || {
        total(&members) == partitions as u64
            && members.iter().all(|m| m.owned().load(Ordering::SeqCst) > 0)
    })
    .await;
    if settled.is_none() {
        eprintln!("{client:?} {protocol:?} {size}: the group did not settle; round skipped");
    } else {
        tokio::time::sleep(idle(salt)).await;
        let share = PER_MEMBER as u64;
        // Join: the newcomer's share, every partition owned, a record consumed.
        // Records keep coming, so the newcomer has something to consume once it owns a share.
        let feed = Feed::start(p, &topic, partitions);
        let newcomer = start(client, protocol, bootstrap, &group, &topic, None).await;
        let t0 = newcomer.started_at();
        // Marks for a timeline of the case next to the client's own traces
        // (`RUST_LOG=protocol_rebalance=info,cohort::member=debug`).
        tracing::info!(?client, ?protocol, "join starts");
        members.push(newcomer);
        let newest = members.len() - 1;
        let joined = timed(until(LIMIT, || {
            back_in(&members, newest, partitions, share)
        }))
        .await;
        drop(feed);
        match joined {
            Some(_) => {
                tracing::info!(
                    ?client,
                    ?protocol,
                    ms = t0.elapsed().as_millis(),
                    "join done"
                );
                let took = t0.elapsed();
                samples.join_spans.push(span(&group, t0, took));
                samples.join.push(took);
            }
            None => eprintln!("{client:?} {protocol:?} {size}: join did not complete"),
        }
        tokio::time::sleep(idle(salt + 1)).await;
        // Leave: the newcomer closes; the others own every partition again.
        let t0 = Instant::now();
        tracing::info!(?client, ?protocol, "leave starts");
        if let Some(last) = members.pop() {
            last.stop().await;
        }
        let left = until(LIMIT, || total(&members) == partitions as u64).await;
        match left {
            Some(_) => {
                tracing::info!(
                    ?client,
                    ?protocol,
                    ms = t0.elapsed().as_millis(),
                    "leave done"
                );
                let took = t0.elapsed();
                samples.leave_spans.push(span(&group, t0, took));
                samples.leave.push(took);
            }
            None => eprintln!("{client:?} {protocol:?} {size}: leave did not complete"),
        }
        for k in 0..restart_samples(client, protocol) {
            tokio::time::sleep(idle(salt + 2 + k)).await;
            // Static restart within the session timeout: the static member stops (a static
            // member does not leave the group) and starts again under the same instance id;
            // timed until it holds a share again, has consumed, and every partition is owned
            // (KIP-345: the broker gives it its assignment back without a rebalance).
            let old = members.remove(0);
            old.stop().await;
            // A record on every partition before the new member starts: the old one committed
            // what it consumed, so otherwise its successor waits for the next record, and
            // the case would time the feed's phase (up to its 50 ms interval) and whether the
            // old member happened to read the last records before it stopped, not the restart.
            trickle(p, &topic, partitions).await;
            let feed = {
                let (p, topic) = (p.clone(), topic.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        trickle(&p, &topic, partitions).await;
                    }
                })
            };
            let again = start(
                client,
                protocol,
                bootstrap,
                &group,
                &topic,
                Some("static-0"),
            )
            .await;
            // Timed from the new member's start (a process's first line), as the join is: a
            // JVM's start is not the protocol's.
            let t0 = again.started_at();
            members.insert(0, again);
            let back = until(LIMIT, || back_in(&members, 0, partitions, share)).await;
            feed.abort();
            match back {
                Some(_) => samples.restart.push(t0.elapsed()),
                None => eprintln!("{client:?} {protocol:?} {size}: restart did not complete"),
            }
        }
    }
    for m in members {
        m.stop().await;
    }
    let _ = p.delete_topics(&[&topic]).await;
}

/// One measured case, for the chart.
struct Row {
    label: String,
    group: usize,
    join: f64,
    leave: f64,
    /// A static member's restart; NaN where not measured.
    restart: f64,
}

/// Grouped horizontal bars: for each group size, join and leave medians per client and protocol.
fn svg(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let max = rows
        .iter()
        .flat_map(|r| [r.join, r.leave, r.restart])
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    let (left, width, bar, gap) = (190.0, 520.0, 11.0, 4.0);
    let block = rows.len() as f64
        / rows
            .iter()
            .map(|r| r.group)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            .max(1) as f64;
    let restarts = rows.iter().filter(|r| r.restart.is_finite()).count() as f64;
    let height = 60.0
        + rows.len() as f64 * (2.0 * bar + gap + 6.0)
        + restarts * (bar + 1.0)
        + 40.0 * (rows.len() as f64 / block);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">",
        left + width + 90.0
    );
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Rebalance latency, median ms (shorter is better): a member joins, then leaves</text>\n<rect x=\"{left}\" y=\"30\" width=\"10\" height=\"10\" fill=\"#4878d0\"/><text x=\"{}\" y=\"39\">join</text><rect x=\"{}\" y=\"30\" width=\"10\" height=\"10\" fill=\"#ee854a\"/><text x=\"{}\" y=\"39\">leave</text><rect x=\"{}\" y=\"30\" width=\"10\" height=\"10\" fill=\"#6acc64\"/><text x=\"{}\" y=\"39\">static restart</text>",
        left + 14.0,
        left + 60.0,
        left + 74.0,
        left + 120.0,
        left + 134.0
    );
    let mut y = 55.0;
    let mut group = 0;
    for r in rows {
        if r.group != group {
            group = r.group;
            y += 16.0;
            let _ = writeln!(
                out,
                "<text x=\"10\" y=\"{y:.0}\" font-weight=\"bold\">a group of {group} (+1)</text>"
            );
            y += 8.0;
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + bar + 2.0,
            r.label
        );
        let restart = Some((r.restart, "#6acc64")).filter(|(v, _)| v.is_finite());
        for (v, color) in [(r.join, "#4878d0"), (r.leave, "#ee854a")]
            .into_iter()
            .chain(restart)
        {
            let w = if v.is_finite() { v / max * width } else { 0.0 };
            let _ = writeln!(
                out,
                "<rect x=\"{left}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{bar}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.0}\">{v:.0}</text>",
                left + w + 4.0,
                y + bar - 2.0
            );
            y += bar + 1.0;
        }
        y += gap + 6.0;
    }
    out.push_str("</svg>\n");
    out
}

/// The median of a `json` line's samples under `key` (nulls left out).
fn median_of(v: &serde_json::Value, key: &str) -> f64 {
    let ms: Vec<Duration> = v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .map(|x| Duration::from_secs_f64(x.max(0.0) / 1e3))
        .collect();
    summary(&ms).0
}

/// Per client and protocol, a bar for the join and one for the leave: the expected wait for
/// the members' heartbeats (grey) and the clients' own work after it (coloured), medians.
fn split_svg(runs: &[serde_json::Value]) -> String {
    use std::fmt::Write as _;
    struct Bar {
        label: String,
        case: &'static str,
        wait: f64,
        after: f64,
    }
    let mut bars = Vec::new();
    for v in runs {
        let label = format!(
            "{} {}",
            v["client"].as_str().unwrap_or("?"),
            if v["protocol"] == "Range" {
                "range"
            } else {
                "cooperative"
            }
        )
        .to_lowercase();
        for case in ["join", "leave"] {
            let after = median_of(v, &format!("{case}_after_samples"));
            let expected = median_of(v, &format!("{case}_expected_samples"));
            if after.is_finite() && expected.is_finite() {
                bars.push(Bar {
                    label: label.clone(),
                    case,
                    wait: expected - after,
                    after,
                });
            }
        }
    }
    let max = bars.iter().map(|b| b.wait + b.after).fold(1.0f64, f64::max);
    let (left, width, bar) = (200.0, 520.0, 12.0);
    let height = 70.0 + bars.len() as f64 * (bar + 4.0) + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">",
        left + width + 110.0
    );
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Rebalance latency for a change at a random moment, median ms (shorter is better)</text>\n<rect x=\"{left}\" y=\"32\" width=\"10\" height=\"10\" fill=\"#bbbbbb\"/><text x=\"{}\" y=\"41\">waiting for the members' heartbeats</text><rect x=\"{}\" y=\"32\" width=\"10\" height=\"10\" fill=\"#4878d0\"/><text x=\"{}\" y=\"41\">join: the clients' work</text><rect x=\"{}\" y=\"32\" width=\"10\" height=\"10\" fill=\"#ee854a\"/><text x=\"{}\" y=\"41\">leave: the clients' work</text>",
        left + 14.0,
        left + 240.0,
        left + 254.0,
        left + 390.0,
        left + 404.0
    );
    let mut y = 60.0;
    for b in &bars {
        let (ww, wa) = (b.wait / max * width, b.after / max * width);
        let color = if b.case == "join" {
            "#4878d0"
        } else {
            "#ee854a"
        };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.0}\" text-anchor=\"end\">{} {}</text><rect x=\"{left}\" y=\"{y:.0}\" width=\"{ww:.1}\" height=\"{bar}\" fill=\"#bbbbbb\"/><rect x=\"{:.1}\" y=\"{y:.0}\" width=\"{wa:.1}\" height=\"{bar}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.0}\">{:.0} + {:.0}</text>",
            left - 6.0,
            y + bar - 2.0,
            b.label,
            b.case,
            left + ww,
            left + ww + wa + 4.0,
            y + bar - 2.0,
            b.wait,
            b.after
        );
        y += bar + 4.0;
    }
    out.push_str("</svg>\n");
    out
}

/// Four panels (join and leave, eager range and cooperative-sticky): a line per client through
/// its samples, round by round.
fn rounds_svg(runs: &[serde_json::Value]) -> String {
    use std::fmt::Write as _;
    const COLORS: [&str; 8] = [
        "#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4", "#8c613c", "#dc7ec0", "#797979",
    ];
    let (pw, ph, margin) = (420.0, 220.0, 50.0);
    let samples = |v: &serde_json::Value, case: &str| -> Vec<f64> {
        v[format!("{case}_samples")]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let mut clients: Vec<String> = Vec::new();
    for v in runs {
        let c = v["client"].as_str().unwrap_or("?").to_lowercase();
        if !clients.contains(&c) {
            clients.push(c);
        }
    }
    let width = 2.0 * (pw + margin) + 30.0;
    let height = 2.0 * (ph + margin) + 60.0 + 16.0 * clients.len().div_ceil(4) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">Rebalance latency by round, ms: the round decides most of it, the client the rest</text>"
    );
    for (k, c) in clients.iter().enumerate() {
        let (x, y) = (10.0 + 150.0 * (k % 4) as f64, 38.0 + 16.0 * (k / 4) as f64);
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{:.0}\" width=\"14\" height=\"3\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{y:.0}\">{c}</text>",
            y - 4.0,
            COLORS[k % COLORS.len()],
            x + 18.0
        );
    }
    let top = 50.0 + 16.0 * clients.len().div_ceil(4) as f64;
    for (panel, (case, protocol)) in [
        ("join", "Range"),
        ("leave", "Range"),
        ("join", "Classic"),
        ("leave", "Classic"),
    ]
    .into_iter()
    .enumerate()
    {
        let x0 = 40.0 + (panel % 2) as f64 * (pw + margin);
        let y0 = top + (panel / 2) as f64 * (ph + margin);
        let lines: Vec<(usize, Vec<f64>)> = runs
            .iter()
            .filter(|v| v["protocol"].as_str() == Some(protocol))
            .filter_map(|v| {
                let c = v["client"].as_str().unwrap_or("?").to_lowercase();
                let k = clients.iter().position(|x| *x == c)?;
                Some((k, samples(v, case))).filter(|(_, s)| !s.is_empty())
            })
            .collect();
        let n = lines.iter().map(|(_, s)| s.len()).max().unwrap_or(1).max(2);
        // The scale reaches the slowest sample but stops at three times the slowest median, so
        // one client's stall does not flatten everyone else's lines; points above it are drawn
        // at the edge.
        let median = |s: &Vec<f64>| {
            let mut v = s.clone();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let slowest = lines
            .iter()
            .map(|(_, s)| median(s))
            .fold(100.0f64, f64::max);
        let top_ms = lines
            .iter()
            .flat_map(|(_, s)| s.iter().copied())
            .fold(100.0f64, f64::max)
            .min(3.0 * slowest);
        let name = if protocol == "Range" {
            "eager range"
        } else {
            "cooperative-sticky"
        };
        let _ = writeln!(
            out,
            "<text x=\"{x0}\" y=\"{:.0}\" font-weight=\"bold\">a member {}s, {name}</text><rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#bbb\"/><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{top_ms:.0}</text><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">0</text><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">round 1 .. {n}</text>",
            y0 - 6.0,
            case,
            x0 - 4.0,
            y0 + 10.0,
            x0 - 4.0,
            y0 + ph,
            x0 + pw / 2.0,
            y0 + ph + 14.0
        );
        for (k, s) in &lines {
            let points: Vec<String> = s
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = x0 + pw * i as f64 / (n - 1) as f64;
                    let y = y0 + ph - ph * (v / top_ms).min(1.0);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
                COLORS[k % COLORS.len()],
                points.join(" ")
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

fn summary(v: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let n = ms.len();
    // The mean of the middle two for an even count: with a dozen rounds the upper middle one
    // alone favours no client but moves the median by a sample's spacing.
    let median = if n.is_multiple_of(2) {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    } else {
        ms[n / 2]
    };
    (median, ms[0], ms[n - 1])
}

/// The samples in milliseconds, in the order taken, as a JSON array (rounds interleave
/// clients, so sample k of every client saw the same phase of the heartbeat cycle).
fn json_ms(v: &[Duration]) -> String {
    let ms: Vec<String> = v
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    format!("[{}]", ms.join(","))
}

/// A case split where the group heard of the change (`request_log::split`): heard, after, and
/// the expected heard part (`request_log::expected_heard`), in ms; `None` where the broker's
/// request log has nothing for it.
type Split = Option<(f64, f64, f64)>;

/// One part of each case's split, as a JSON array (`null` where the case was not found).
fn json_split(v: &[Split], pick: fn(&(f64, f64, f64)) -> f64) -> String {
    let ms: Vec<String> = v
        .iter()
        .map(|x| x.map_or("null".to_owned(), |x| format!("{:.1}", pick(&x))))
        .collect();
    format!("[{}]", ms.join(","))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let mut args = std::env::args().skip(1).peekable();
    // `--chart LOG`: draw the chart of an earlier run from its `json` lines, measuring nothing.
    if args.peek().map(String::as_str) == Some("--chart") {
        let log = args.nth(1).expect("--chart LOG");
        let text = std::fs::read_to_string(&log).expect("the log");
        let rows: Vec<Row> = text
            .lines()
            .filter_map(|l| l.strip_prefix("json "))
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .map(|v| Row {
                label: format!(
                    "{} {}",
                    v["client"].as_str().unwrap_or("?"),
                    v["protocol"].as_str().unwrap_or("?")
                )
                .to_lowercase(),
                group: v["group"].as_u64().unwrap_or(0) as usize,
                join: v["join_ms"].as_f64().unwrap_or(f64::NAN),
                leave: v["leave_ms"].as_f64().unwrap_or(f64::NAN),
                restart: v["restart_ms"].as_f64().unwrap_or(f64::NAN),
            })
            .collect();
        let path = std::env::var_os("COHORT_BENCH_SVG").expect("COHORT_BENCH_SVG=FILE");
        std::fs::write(&path, svg(&rows)).expect("write the chart");
        return;
    }
    // `--rounds-chart LOG`: every round's join and leave per client, from the `json` lines'
    // samples, to show that the round (where the change fell in the heartbeat cycle) decides
    // most of a case and the client the rest. `--split-chart LOG`: each case's expected cost,
    // split into the heartbeat wait and the clients' own work, from the split samples.
    let draw: Option<fn(&[serde_json::Value]) -> String> = match args.peek().map(String::as_str) {
        Some("--rounds-chart") => Some(rounds_svg),
        Some("--split-chart") => Some(split_svg),
        _ => None,
    };
    if let Some(draw) = draw {
        let log = args.nth(1).expect("--rounds-chart or --split-chart LOG");
        let text = std::fs::read_to_string(&log).expect("the log");
        let runs: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("json "))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        let path = std::env::var_os("COHORT_BENCH_SVG").expect("COHORT_BENCH_SVG=FILE");
        std::fs::write(&path, draw(&runs)).expect("write the chart");
        return;
    }
    let all_clients = args.peek().map(String::as_str) == Some("--all-clients");
    if all_clients {
        args.next();
    }
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut sizes: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![4, 16];
    }
    // The broker logs every request, so that each case can be split where the group heard of
    // the change (`split`), from the broker's side and alike for every client.
    let broker = TestBroker::start_with(cohort_testbroker::BrokerOptions {
        request_log: true,
        ..cohort_testbroker::BrokerOptions::from_env().expect("broker options")
    })
    .expect("broker");
    println!("broker: {}", broker.info());
    let p = Producer::new(ClientConfig::new(broker.bootstrap()));
    let mut rows: Vec<Row> = Vec::new();
    println!(
        "{:<11} {:<9} {:>5} {:>6}  {:>22}  {:>22}",
        "client",
        "protocol",
        "group",
        "rounds",
        "join ms (median, range)",
        "leave ms (median, range)"
    );
    for &size in &sizes {
        // Clients and protocols interleave round by round, so a noisy moment of the machine
        // lands on all of them alike.
        // `--all-clients`: eager range for every client and cooperative-sticky for those that
        // have it (kafka-go and sarama have no cooperative balancer and no KIP-848).
        let cases: &[(Client, Protocol)] = if all_clients {
            &[
                (Client::Cohort, Protocol::Range),
                (Client::Java, Protocol::Range),
                (Client::Librdkafka, Protocol::Range),
                (Client::KafkaGo, Protocol::Range),
                (Client::Sarama, Protocol::Range),
                (Client::FranzGo, Protocol::Range),
                (Client::Krafka, Protocol::Range),
                (Client::Kacrab, Protocol::Range),
                (Client::Cohort, Protocol::Classic),
                (Client::Java, Protocol::Classic),
                (Client::Librdkafka, Protocol::Classic),
                (Client::FranzGo, Protocol::Classic),
                (Client::Krafka, Protocol::Classic),
                (Client::Kacrab, Protocol::Classic),
            ]
        } else {
            &[
                (Client::Cohort, Protocol::Classic),
                (Client::Cohort, Protocol::Consumer),
                (Client::Java, Protocol::Classic),
                (Client::Java, Protocol::Consumer),
                (Client::Librdkafka, Protocol::Classic),
                (Client::Librdkafka, Protocol::Consumer),
                (Client::Krafka, Protocol::Classic),
                (Client::Krafka, Protocol::Consumer),
                (Client::Kacrab, Protocol::Classic),
                (Client::Kacrab, Protocol::Consumer),
            ]
        };
        // COHORT_BENCH_ONLY=cohort,franzgo (clients' names) runs those clients' cases alone.
        let only = std::env::var("COHORT_BENCH_ONLY").ok();
        let cases: Vec<(Client, Protocol)> = cases
            .iter()
            .copied()
            .filter(|(c, _)| {
                only.as_deref().is_none_or(|o| {
                    o.split(',')
                        .any(|o| format!("{c:?}").eq_ignore_ascii_case(o.trim()))
                })
            })
            .collect();
        let mut samples: Vec<Samples> = cases
            .iter()
            .map(|_| Samples {
                join: Vec::new(),
                leave: Vec::new(),
                restart: Vec::new(),
                join_spans: Vec::new(),
                leave_spans: Vec::new(),
            })
            .collect();
        for r in 0..rounds {
            for (i, (client, protocol)) in cases.iter().enumerate() {
                round(
                    *client,
                    *protocol,
                    broker.bootstrap(),
                    &p,
                    size,
                    2 * r,
                    &mut samples[i],
                )
                .await;
            }
        }
        let groups: std::collections::HashSet<&str> = samples
            .iter()
            .flat_map(|s| s.join_spans.iter().chain(&s.leave_spans))
            .map(|s| s.group.as_str())
            .collect();
        let logs = request_log::read(&broker.request_logs(), &groups);
        let splits: Vec<[Vec<Split>; 2]> = samples
            .iter()
            .map(|s| {
                [&s.join_spans, &s.leave_spans].map(|spans| {
                    spans
                        .iter()
                        .map(|span| {
                            let (heard, after) = request_log::split(&logs, span)?;
                            Some((heard, after, request_log::expected_heard(&logs, span)?))
                        })
                        .collect()
                })
            })
            .collect();
        for (((client, protocol), s), [join_split, leave_split]) in
            cases.iter().zip(&samples).zip(&splits)
        {
            let (jm, jlo, jhi) = summary(&s.join);
            let (lm, llo, lhi) = summary(&s.leave);
            let (rm, rlo, rhi) = summary(&s.restart);
            println!(
                "{:<11} {:<9} {size:>5} {:>6}  {jm:>8.0} ({jlo:.0}-{jhi:.0})  {lm:>10.0} ({llo:.0}-{lhi:.0})  {}",
                format!("{client:?}").to_lowercase(),
                format!("{protocol:?}").to_lowercase(),
                s.join.len(),
                if s.restart.is_empty() {
                    String::new()
                } else {
                    format!("static restart {rm:.0} ({rlo:.0}-{rhi:.0})")
                }
            );
            println!(
                "json {{\"client\":\"{client:?}\",\"protocol\":\"{protocol:?}\",\"group\":{size},\"join_ms\":{jm:.0},\"leave_ms\":{lm:.0},\"restart_ms\":{},\"rounds\":{},\"join_samples\":{},\"leave_samples\":{},\"restart_samples\":{},\"join_heard_samples\":{},\"join_after_samples\":{},\"leave_heard_samples\":{},\"leave_after_samples\":{},\"join_expected_samples\":{},\"leave_expected_samples\":{}}}",
                if s.restart.is_empty() {
                    "null".to_owned()
                } else {
                    format!("{rm:.0}")
                },
                s.join.len(),
                json_ms(&s.join),
                json_ms(&s.leave),
                json_ms(&s.restart),
                json_split(join_split, |x| x.0),
                json_split(join_split, |x| x.1),
                json_split(leave_split, |x| x.0),
                json_split(leave_split, |x| x.1),
                json_split(join_split, |x| x.2 + x.1),
                json_split(leave_split, |x| x.2 + x.1),
            );
            rows.push(Row {
                label: format!("{client:?} {protocol:?}").to_lowercase(),
                group: size,
                join: jm,
                leave: lm,
                restart: if s.restart.is_empty() { f64::NAN } else { rm },
            });
        }
        if logs.is_empty() {
            println!("(no request log from this broker: the cases are not split)");
            continue;
        }
        println!(
            "split where the last member heard of the change (the broker's request log), medians ms;\n\
             expected: the members' mean wait for a change at a uniformly drawn moment of their\n\
             heartbeat cycle, plus after:"
        );
        println!(
            "{:<11} {:<9} {:>5}  {:>10} {:>10} {:>8}  {:>11} {:>11} {:>8}",
            "client",
            "protocol",
            "group",
            "join heard",
            "join after",
            "expected",
            "leave heard",
            "leave after",
            "expected"
        );
        for ((client, protocol), [join_split, leave_split]) in cases.iter().zip(&splits) {
            let half = |v: &[Split], pick: fn(&(f64, f64, f64)) -> f64| {
                let ms: Vec<Duration> = v
                    .iter()
                    .flatten()
                    .map(|x| Duration::from_secs_f64(pick(x).max(0.0) / 1e3))
                    .collect();
                summary(&ms).0
            };
            println!(
                "{:<11} {:<9} {size:>5}  {:>10.0} {:>10.0} {:>8.0}  {:>11.0} {:>11.0} {:>8.0}",
                format!("{client:?}").to_lowercase(),
                format!("{protocol:?}").to_lowercase(),
                half(join_split, |x| x.0),
                half(join_split, |x| x.1),
                half(join_split, |x| x.2 + x.1),
                half(leave_split, |x| x.0),
                half(leave_split, |x| x.1),
                half(leave_split, |x| x.2 + x.1),
            );
        }
    }
    if let Some(path) = std::env::var_os("COHORT_BENCH_SVG") {
        std::fs::write(&path, svg(&rows)).expect("write the chart");
        println!("chart: {}", std::path::Path::new(&path).display());
    }
}
