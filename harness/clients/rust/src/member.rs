//! `rustbench member --client krafka|kacrab FLAGS`: a krafka or kacrab consumer as a harness
//! member, with the flags of `cohort member` that the client honours and the same JSON event
//! lines on stdout (started, assigned, revoked, lost, processed, committed, left, error), so the
//! journal and the checker treat it like every other member. `cohort member --client krafka`
//! replaces itself with this. A flag the client cannot honour is an error naming the client.
//!
//! Both commit by hand what was processed (`--commit-interval-ms`, and on the way out):
//! - krafka has a rebalance listener (Java's `ConsumerRebalanceListener`): a revocation commits
//!   what was processed of the partitions going away before they go, as Java's docs prescribe.
//! - kacrab has none: every group step happens inside `poll`, and its way of committing before a
//!   rebalance is auto-commit, which commits the positions (everything the earlier polls
//!   returned, all of it processed by then) before it rejoins. So the member turns auto-commit
//!   on with an interval too long to matter (its own commits keep the interval) and journals
//!   those commits from an interceptor (`ConsumerInterceptor::on_commit`). It learns of a change
//!   when `poll` returns: the partitions that went away are journaled as revoked at the moment
//!   that `poll` began, or just after kacrab's commit inside it (from then on the member did
//!   nothing with them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Microseconds since the Unix epoch, the journal's clock.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What `cohort member` passes, for the flags these clients honour.
struct Flags {
    client: String,
    bootstrap: String,
    group: String,
    topics: Vec<String>,
    balancers: Vec<String>,
    instance_id: Option<String>,
    session_timeout_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    max_poll_interval_ms: Option<u64>,
    commit_interval: Duration,
    name: String,
    control: bool,
    consumer_protocol: bool,
    remote_assignor: Option<String>,
}

fn fail(client: &str, why: &str) -> ! {
    eprintln!("{client} member: {why}");
    std::process::exit(2);
}

fn parse(args: &[String], processing_us: &AtomicU64) -> Flags {
    let client = args
        .windows(2)
        .find(|w| w[0] == "--client")
        .map(|w| w[1].clone())
        .unwrap_or_default();
    if client != "krafka" && client != "kacrab" {
        fail("rustbench", "--client krafka|kacrab is required");
    }
    let mut f = Flags {
        client: client.clone(),
        bootstrap: String::new(),
        group: String::new(),
        topics: Vec::new(),
        balancers: Vec::new(),
        instance_id: None,
        session_timeout_ms: None,
        heartbeat_interval_ms: None,
        max_poll_interval_ms: None,
        commit_interval: Duration::from_millis(500),
        name: "member".into(),
        control: false,
        consumer_protocol: false,
        remote_assignor: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        if flag == "--control" {
            f.control = true;
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .unwrap_or_else(|| fail(&client, &format!("{flag} needs a value")))
        };
        let ms = |v: String| {
            v.parse::<u64>()
                .unwrap_or_else(|_| fail(&client, &format!("{flag}: not a number: {v}")))
        };
        match flag {
            "--client" => {
                value();
            }
            "--bootstrap" => f.bootstrap = value(),
            "--group" => f.group = value(),
            "--topic" => f.topics.push(value()),
            "--balancer" => f.balancers.push(value()),
            "--instance-id" => f.instance_id = Some(value()),
            "--session-timeout-ms" => f.session_timeout_ms = Some(ms(value())),
            "--heartbeat-interval-ms" => f.heartbeat_interval_ms = Some(ms(value())),
            // Both clients take the rebalance timeout from max.poll.interval.ms, as Java does.
            "--max-poll-interval-ms" => f.max_poll_interval_ms = Some(ms(value())),
            "--commit-interval-ms" => f.commit_interval = Duration::from_millis(ms(value())),
            "--processing-us" => processing_us.store(ms(value()), Ordering::Relaxed),
            "--name" => f.name = value(),
            "--group-protocol" => match value().as_str() {
                "consumer" => f.consumer_protocol = true,
                "classic" => f.consumer_protocol = false,
                other => fail(
                    &client,
                    &format!("--group-protocol {other}: classic or consumer"),
                ),
            },
            "--group-remote-assignor" => f.remote_assignor = Some(value()),
            "--rebalance-timeout-ms" => fail(
                &client,
                "--rebalance-timeout-ms cannot be honoured: its rebalance timeout is --max-poll-interval-ms",
            ),
            other => fail(&client, &format!("{other} cannot be honoured")),
        }
    }
    if f.bootstrap.is_empty() || f.group.is_empty() || f.topics.is_empty() {
        fail(&client, "--bootstrap, --group and --topic are required");
    }
    if f.consumer_protocol && !f.balancers.is_empty() {
        fail(
            &client,
            "--balancer belongs to the classic protocol (with --group-protocol consumer the broker assigns)",
        );
    }
    if f.consumer_protocol {
        // The broker assigns (KIP-848); named as cohort members name it in the journal.
        let assignor = f.remote_assignor.as_deref().unwrap_or("default");
        f.balancers = vec![format!("consumer-protocol:{assignor}")];
    } else if f.balancers.is_empty() {
        f.balancers.push("range".into());
    }
    if f.consumer_protocol && (f.session_timeout_ms.is_some() || f.heartbeat_interval_ms.is_some())
    {
        fail(
            &client,
            "--session-timeout-ms and --heartbeat-interval-ms belong to the broker with --group-protocol consumer",
        );
    }
    f
}

/// A topic's partition.
type Tp = (String, i32);
/// The next offset to commit and the leader epoch of the record before it.
type Next = (i64, Option<i32>);

/// topic -> partitions, as the journal writes them.
type Partitions = BTreeMap<String, BTreeSet<i32>>;

/// What the member shares between its loop, its listener and its control reader.
struct State {
    f: Flags,
    processing_us: AtomicU64,
    stop: AtomicBool,
    out: Mutex<std::io::Stdout>,
    owned: Mutex<Partitions>,
    /// Processed, not committed yet: (topic, partition) -> (next offset, leader epoch).
    pending: Mutex<BTreeMap<Tp, Next>>,
    /// A commit of the member's own is under way (kacrab's interceptor hears of it too).
    manual: AtomicBool,
    /// When kacrab last committed by itself (µs; 0: never).
    auto_committed: AtomicU64,
}

impl State {
    fn emit_at(&self, ts: u64, event: &str, fields: Value) {
        let mut line = Map::new();
        line.insert("ts".into(), json!(ts));
        line.insert("source".into(), json!(self.f.name));
        line.insert("event".into(), json!(event));
        if let Value::Object(m) = fields {
            line.extend(m);
        }
        let text = Value::Object(line).to_string();
        let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "{text}");
        let _ = o.flush();
    }

    fn emit(&self, event: &str, fields: Value) {
        self.emit_at(now_us(), event, fields);
    }

    fn error(&self, message: String) {
        self.emit("error", json!({ "message": message }));
    }

    fn add(&self, parts: impl IntoIterator<Item = (String, i32)>) -> Partitions {
        let mut o = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        for (t, p) in parts {
            o.entry(t).or_default().insert(p);
        }
        o.clone()
    }

    /// Removes partitions from the owned set and from what waits to be committed.
    fn remove(&self, parts: &[(String, i32)]) -> Partitions {
        let mut o = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = Partitions::new();
        for (t, p) in parts {
            pending.remove(&(t.clone(), *p));
            if let Some(ps) = o.get_mut(t) {
                ps.remove(p);
                if ps.is_empty() {
                    o.remove(t);
                }
            }
            gone.entry(t.clone()).or_default().insert(*p);
        }
        gone
    }

    /// What was processed and not committed, of `only` (or of every partition).
    fn to_commit(&self, only: Option<&[(String, i32)]>) -> Vec<(Tp, Next)> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .iter()
            .filter(|(k, _)| only.is_none_or(|o| o.contains(k)))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// After a commit: what it covered is no longer pending (unless more was processed since).
    fn committed(&self, generation: i32, requested: u64, offs: &[(Tp, Next)]) {
        let mut journal: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (k, (o, _)) in offs {
                if pending.get(k).is_some_and(|(cur, _)| cur == o) {
                    pending.remove(k);
                }
                journal
                    .entry(k.0.clone())
                    .or_default()
                    .insert(k.1.to_string(), *o);
            }
        }
        self.emit(
            "committed",
            json!({ "generation": generation, "offsets": journal, "requested": requested }),
        );
    }

    /// A commit refused because a rebalance began meanwhile is not an error of the member:
    /// what it covered stays pending and goes out with the revocation or in the next
    /// generation (Java reports it as `RebalanceInProgressException` and retries the same way).
    fn commit_failed(&self, why: String) {
        if !["IllegalGeneration", "RebalanceInProgress"]
            .iter()
            .any(|code| why.contains(code))
        {
            self.error(format!("commit: {why}"));
        }
    }

    /// Spends the processing time of `n` records.
    async fn process(&self, n: usize) {
        let us = self.processing_us.load(Ordering::Relaxed) * n as u64;
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
    }

    /// Processes what a poll returned (topic, partition, offset, leader epoch of each record),
    /// a run of each partition at a time.
    async fn process_batch<'a>(
        &self,
        records: impl Iterator<Item = (&'a str, i32, i64, Option<i32>)>,
        generation: i32,
    ) {
        let delivered = now_us();
        for run in &runs(records) {
            self.processed(run, generation, delivered).await;
        }
    }

    /// Journals one contiguous run of a partition's records and marks it for commit.
    async fn processed(&self, run: &Run, generation: i32, delivered: u64) {
        self.process(run.n).await;
        self.emit(
            "processed",
            json!({
                "topic": run.topic, "partition": run.partition, "first": run.first,
                "last": run.last, "generation": generation, "delivered": delivered,
            }),
        );
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(
            (run.topic.clone(), run.partition),
            (run.last + 1, run.epoch),
        );
    }
}

/// Consecutive records of one partition in a poll's answer.
struct Run {
    topic: String,
    partition: i32,
    first: i64,
    last: i64,
    epoch: Option<i32>,
    n: usize,
}

/// Groups a poll's records (topic, partition, offset, leader epoch) into runs per partition.
fn runs<'a>(records: impl Iterator<Item = (&'a str, i32, i64, Option<i32>)>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (t, p, o, e) in records {
        match out.last_mut() {
            Some(r) if r.topic == t && r.partition == p && o > r.last => {
                r.last = o;
                r.epoch = e;
                r.n += 1;
            }
            _ => out.push(Run {
                topic: t.to_owned(),
                partition: p,
                first: o,
                last: o,
                epoch: e,
                n: 1,
            }),
        }
    }
    out
}

fn as_list(p: &Partitions) -> Value {
    json!(p)
}

/// Sets `stop` on SIGTERM or SIGINT, and reads control commands when asked (a closed control
/// pipe means the harness is gone: the member leaves, as a cohort member does).
fn watch(s: &Arc<State>) {
    let s2 = s.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            s2.error("cannot watch SIGTERM".into());
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        s2.stop.store(true, Ordering::SeqCst);
    });
    if !s.f.control {
        return;
    }
    let s3 = s.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["cmd"] == "processing" => {
                    s3.processing_us
                        .store(v["us"].as_u64().unwrap_or(0), Ordering::Relaxed);
                }
                _ => s3.error(format!(
                    "the {} client has no pluggable network; not applied: {line}",
                    s3.f.client
                )),
            }
        }
        s3.stop.store(true, Ordering::SeqCst);
    });
}

/// Runs the member; exits the process.
pub async fn run(args: Vec<String>) -> ! {
    let processing_us = AtomicU64::new(0);
    let f = parse(&args, &processing_us);
    let s = Arc::new(State {
        f,
        processing_us,
        stop: AtomicBool::new(false),
        out: Mutex::new(std::io::stdout()),
        owned: Mutex::new(Partitions::new()),
        pending: Mutex::new(BTreeMap::new()),
        manual: AtomicBool::new(false),
        auto_committed: AtomicU64::new(0),
    });
    let result = match s.f.client.as_str() {
        "krafka" => krafka_member(&s).await,
        _ => kacrab_member(&s).await,
    };
    match result {
        Ok(()) => {
            s.emit("left", json!({}));
            std::process::exit(0)
        }
        Err(e) => {
            s.error(e);
            std::process::exit(1)
        }
    }
}

fn started(s: &State, version: &str) {
    let mut fields = json!({ "client": version, "balancers": s.f.balancers });
    if let Some(i) = &s.f.instance_id {
        fields["instance_id"] = json!(i);
    }
    s.emit("started", fields);
}

// ---- krafka -------------------------------------------------------------------------------

type Krafka = krafka::consumer::Consumer;

struct KrafkaListener {
    s: Arc<State>,
    consumer: Arc<OnceLock<Arc<Krafka>>>,
}

impl KrafkaListener {
    async fn identity(&self) -> (i32, String) {
        match self.consumer.get() {
            Some(c) => match c.group_metadata().await {
                Some(m) => (m.generation_id(), m.member_id().to_owned()),
                None => (-1, String::new()),
            },
            None => (-1, String::new()),
        }
    }
}

fn pairs(parts: &[krafka::consumer::TopicPartition]) -> Vec<(String, i32)> {
    parts
        .iter()
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect()
}

impl krafka::consumer::ConsumerRebalanceListener for KrafkaListener {
    async fn on_partitions_assigned(&self, partitions: &[krafka::consumer::TopicPartition]) {
        let (generation, member_id) = self.identity().await;
        let all = self.s.add(pairs(partitions));
        self.s.emit(
            "assigned",
            json!({ "generation": generation, "member_id": member_id, "partitions": as_list(&all) }),
        );
    }

    async fn on_partitions_revoked(&self, partitions: &[krafka::consumer::TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        let parts = pairs(partitions);
        // Still owned here: their last commit goes out before they are given up; whatever did
        // not commit is not this member's to commit any more.
        if let Some(c) = self.consumer.get() {
            krafka_commit(&self.s, c, Some(&parts)).await;
        }
        let (generation, _) = self.identity().await;
        let gone = self.s.remove(&parts);
        self.s.emit(
            "revoked",
            json!({ "generation": generation, "partitions": as_list(&gone) }),
        );
    }

    async fn on_partitions_lost(&self, partitions: &[krafka::consumer::TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        let gone = self.s.remove(&pairs(partitions));
        self.s.emit("lost", json!({ "partitions": as_list(&gone) }));
    }
}

async fn krafka_commit(s: &State, c: &Krafka, only: Option<&[(String, i32)]>) {
    use krafka::consumer::{OffsetAndMetadata, TopicPartition};
    let offs = s.to_commit(only);
    if offs.is_empty() {
        return;
    }
    let requested = now_us();
    let generation = c.group_metadata().await.map_or(-1, |m| m.generation_id());
    let map: HashMap<TopicPartition, OffsetAndMetadata> = offs
        .iter()
        .map(|((t, p), (o, e))| {
            let meta = match e {
                Some(e) => OffsetAndMetadata::with_epoch(*o, *e),
                None => OffsetAndMetadata::new(*o),
            };
            (TopicPartition::new(t.clone(), *p), meta)
        })
        .collect();
    match c.commit_offsets(&map).await {
        Ok(()) => s.committed(generation, requested, &offs),
        Err(e) => s.commit_failed(e.to_string()),
    }
}

async fn krafka_member(s: &Arc<State>) -> Result<(), String> {
    use krafka::consumer::{AutoOffsetReset, GroupProtocol, PartitionAssignmentStrategy as P};
    let f = &s.f;
    let mut strategies = Vec::new();
    for b in f.balancers.iter().filter(|_| !f.consumer_protocol) {
        strategies.push(match b.as_str() {
            "range" => P::Range,
            "roundrobin" => P::RoundRobin,
            "cooperative-sticky" => P::CooperativeSticky,
            other => fail(
                "krafka",
                &format!("balancer {other}: krafka has range, roundrobin and cooperative-sticky"),
            ),
        });
    }
    // Started before the first connection (krafka's `connect` also fetches metadata), as the
    // other clients' members are: the rebalance benchmark times a member from this line.
    started(s, "krafka 0.28.1");
    let kafka = krafka::Kafka::builder(f.bootstrap.as_str())
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let slot = Arc::new(OnceLock::new());
    let mut b = kafka
        .consumer(f.group.as_str())
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .enable_auto_commit(false)
        .rebalance_listener(KrafkaListener {
            s: s.clone(),
            consumer: slot.clone(),
        });
    if f.consumer_protocol {
        b = b.group_protocol(GroupProtocol::Consumer);
        if let Some(a) = &f.remote_assignor {
            b = b.group_remote_assignor(a.as_str());
        }
    } else {
        b = b.partition_assignment_strategies(strategies);
    }
    if let Some(i) = &f.instance_id {
        b = b.group_instance_id(i.as_str());
    }
    if let Some(v) = f.session_timeout_ms {
        b = b.session_timeout(Duration::from_millis(v));
    }
    if let Some(v) = f.heartbeat_interval_ms {
        b = b.heartbeat_interval(Duration::from_millis(v));
    }
    if let Some(v) = f.max_poll_interval_ms {
        b = b.max_poll_interval(Duration::from_millis(v));
    }
    let c = Arc::new(b.build().await.map_err(|e| format!("consumer: {e}"))?);
    let _ = slot.set(c.clone());
    watch(s);
    c.subscribe(f.topics.iter())
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let mut last_commit = Instant::now();
    while !s.stop.load(Ordering::SeqCst) {
        let records = match c.poll(Duration::from_millis(200)).await {
            Ok(r) => r,
            Err(e) => {
                s.error(format!("poll: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !records.is_empty() {
            let generation = c.group_metadata().await.map_or(-1, |m| m.generation_id());
            let batch = records
                .iter()
                .map(|r| (&*r.topic, r.partition, r.offset, r.leader_epoch));
            s.process_batch(batch, generation).await;
        }
        if last_commit.elapsed() >= f.commit_interval {
            krafka_commit(s, &c, None).await;
            last_commit = Instant::now();
        }
    }
    krafka_commit(s, &c, None).await;
    // Close runs the listener's revocation (it commits) and leaves the group.
    c.close().await.map_err(|e| format!("close: {e}"))
}

// ---- kacrab -------------------------------------------------------------------------------

async fn kacrab_commit(s: &State, c: &mut kacrab::consumer::Consumer) {
    use kacrab::common::{OffsetAndMetadata, TopicPartition};
    let offs = s.to_commit(None);
    if offs.is_empty() {
        return;
    }
    let requested = now_us();
    let generation = c.group_metadata().generation_id;
    let map: HashMap<TopicPartition, OffsetAndMetadata> = offs
        .iter()
        .map(|((t, p), (o, e))| {
            let mut meta = OffsetAndMetadata::new(*o);
            meta.leader_epoch = *e;
            (TopicPartition::new(t.clone(), *p), meta)
        })
        .collect();
    s.manual.store(true, Ordering::SeqCst);
    let result = c.commit_sync_offsets(map).await;
    s.manual.store(false, Ordering::SeqCst);
    match result {
        Ok(()) => s.committed(generation, requested, &offs),
        Err(e) => s.commit_failed(e.to_string()),
    }
}

/// Journals the commits kacrab makes by itself: before it rejoins (its positions: everything
/// the member was handed, all processed, since it polls only when done) and on close.
struct KacrabCommits(Arc<State>);

impl kacrab::consumer::ConsumerInterceptor for KacrabCommits {
    fn on_commit(
        &self,
        offsets: &HashMap<kacrab::common::TopicPartition, kacrab::common::OffsetAndMetadata>,
    ) {
        let s = &self.0;
        if s.manual.load(Ordering::SeqCst) {
            return;
        }
        // Only what the member owns as far as its journal knows: kacrab's first poll also
        // commits, after it joined and before the member heard of the assignment, the positions
        // it just read from the committed offsets (nothing processed, nothing new).
        let owned = s.owned.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let offs: Vec<(Tp, Next)> = offsets
            .iter()
            .filter(|(tp, _)| {
                owned
                    .get(&tp.topic)
                    .is_some_and(|ps| ps.contains(&tp.partition))
            })
            .map(|(tp, o)| ((tp.topic.clone(), tp.partition), (o.offset, o.leader_epoch)))
            .collect();
        if offs.is_empty() {
            return;
        }
        s.auto_committed.store(now_us(), Ordering::SeqCst);
        // The generation is kacrab's, not visible from here.
        s.committed(-1, 0, &offs);
    }
}

async fn kacrab_member(s: &Arc<State>) -> Result<(), String> {
    let f = &s.f;
    for b in f.balancers.iter().filter(|_| !f.consumer_protocol) {
        if !matches!(
            b.as_str(),
            "range" | "roundrobin" | "sticky" | "cooperative-sticky"
        ) {
            fail(
                "kacrab",
                &format!(
                    "balancer {b}: kacrab has range, roundrobin, sticky and cooperative-sticky"
                ),
            );
        }
    }
    let client_id = format!("kacrab-{}", f.name);
    let mut config: Vec<(&str, String)> = vec![
        ("bootstrap.servers", f.bootstrap.clone()),
        ("group.id", f.group.clone()),
        ("client.id", client_id),
        ("auto.offset.reset", "earliest".into()),
        // Only the commits before a rebalance and on close (see the module docs).
        ("enable.auto.commit", "true".into()),
        ("auto.commit.interval.ms", "86400000".into()),
    ];
    if f.consumer_protocol {
        config.push(("group.protocol", "consumer".into()));
        if let Some(a) = &f.remote_assignor {
            config.push(("group.remote.assignor", a.clone()));
        }
    } else {
        config.push(("partition.assignment.strategy", f.balancers.join(",")));
    }
    if let Some(i) = &f.instance_id {
        config.push(("group.instance.id", i.clone()));
    }
    for (key, v) in [
        ("session.timeout.ms", f.session_timeout_ms),
        ("heartbeat.interval.ms", f.heartbeat_interval_ms),
        ("max.poll.interval.ms", f.max_poll_interval_ms),
    ] {
        if let Some(v) = v {
            config.push((key, v.to_string()));
        }
    }
    let mut c = kacrab::consumer::Consumer::from_map(config.iter().map(|(k, v)| (*k, v.as_str())))
        .await
        .map_err(|e| format!("consumer: {e}"))?;
    c.add_interceptor(KacrabCommits(s.clone()));
    started(s, "kacrab 0.4.0");
    watch(s);
    c.subscribe(f.topics.iter().cloned())
        .map_err(|e| format!("subscribe: {e}"))?;
    let mut last_commit = Instant::now();
    let t0 = Instant::now();
    let mut generation = -1;
    let mut announced = false;
    while !s.stop.load(Ordering::SeqCst) {
        let began = now_us();
        let polled = c.poll(Duration::from_millis(200)).await;
        // What `poll` changed: kacrab reports no rebalance, so the member compares.
        let meta = c.group_metadata();
        let now: BTreeSet<(String, i32)> = c
            .assignment()
            .into_iter()
            .map(|tp| (tp.topic, tp.partition))
            .collect();
        let before: BTreeSet<(String, i32)> = {
            let o = s.owned.lock().unwrap_or_else(|e| e.into_inner());
            o.iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect()
        };
        // An eager protocol gives everything up at each rebalance and starts the partitions it
        // gets back from their committed offsets (kacrab's `apply_assignment`), so a new
        // generation revokes all of them; kacrab does not say which protocol the group chose,
        // so that holds unless the member offers cooperative-sticky alone or runs the consumer
        // protocol (KIP-848: incremental, the epoch moves with every change of its own).
        let regenerated = meta.generation_id != generation && generation >= 0;
        let cooperative =
            s.f.consumer_protocol || s.f.balancers.iter().all(|b| b == "cooperative-sticky");
        let gone: Vec<(String, i32)> = if regenerated && !cooperative {
            before.iter().cloned().collect()
        } else {
            before.difference(&now).cloned().collect()
        };
        if !gone.is_empty() {
            let gone = s.remove(&gone);
            // After kacrab's own commit in this poll, if it made one (it commits, then
            // gives the partitions up).
            let auto = s.auto_committed.load(Ordering::SeqCst);
            let at = if auto >= began { auto + 1 } else { began };
            s.emit_at(
                at,
                "revoked",
                json!({ "generation": generation, "partitions": as_list(&gone) }),
            );
        }
        // With the consumer protocol kacrab's `group_metadata` reports no member epoch (it
        // keeps the classic generation, -1), so a change of the assignment is what tells, and
        // the first assignment is announced once the member holds one (or has polled for 2 s:
        // a member may get nothing).
        let joined = if f.consumer_protocol {
            !now.is_empty() || (polled.is_ok() && t0.elapsed() >= Duration::from_secs(2))
        } else {
            meta.generation_id >= 0
        };
        if joined && (meta.generation_id != generation || now != before || !announced) {
            generation = meta.generation_id;
            announced = true;
            let all = s.add(now.iter().cloned());
            s.emit(
                "assigned",
                json!({ "generation": generation, "member_id": meta.member_id, "partitions": as_list(&all) }),
            );
        }
        let records = match polled {
            Ok(r) => r,
            Err(e) => {
                s.error(format!("poll: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !records.is_empty() {
            let batch = records
                .iter()
                .map(|r| (&*r.topic, r.partition, r.offset, r.leader_epoch));
            s.process_batch(batch, generation).await;
        }
        if last_commit.elapsed() >= f.commit_interval {
            kacrab_commit(s, &mut c).await;
            last_commit = Instant::now();
        }
    }
    kacrab_commit(s, &mut c).await;
    let all: Vec<(String, i32)> = {
        let o = s.owned.lock().unwrap_or_else(|e| e.into_inner());
        o.iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    };
    if !all.is_empty() {
        let gone = s.remove(&all);
        s.emit(
            "revoked",
            json!({ "generation": generation, "partitions": as_list(&gone) }),
        );
    }
    // Close commits the positions again (the same offsets: nothing was handed out since the
    // commit above) and leaves the group; that commit comes after the revocation journaled
    // above, so it is not journaled.
    s.manual.store(true, Ordering::SeqCst);
    c.close().await;
    Ok(())
}
