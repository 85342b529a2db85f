//! Runs a scenario: starts the broker, checks the behaviours the scenario requires, creates the
//! topics, runs the producer, the offset monitor and the members, plays the timeline, drains,
//! and hands the journal to the checker and the reports.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cohort::{ClientConfig, Producer, ProducerRecord, TopicPartition, partition_for_key};
use cohort_testbroker::{BrokerOptions, TestBroker};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::checker::{self, CheckInput, Stability};
use crate::foreign::{RdMember, librdkafka_version};
use crate::journal::{Entry, Event, Journal, Offsets, now_us};
use crate::member::{CohortMember, MemberOptions, StopHow, journal_sink};
use crate::net::Direction;
use crate::process_member::{Client, ControlCommand};
use crate::report::{BrokerReport, Report, throughput};
use crate::scenario::{
    Action, ActionSpec, BrokerBackend, BrokerSoftware, Keys, MemberSettings, Placement, Scenario,
    Trigger, limits,
};

/// Cohort members pause this long before the follow-up JoinGroup of a cooperative rebalance
/// when the broker is Tansu, which answers pending SyncGroups on a one-second poll: a leader
/// that rejoins sooner strands the followers' assignments (their SyncGroup is answered
/// REBALANCE_IN_PROGRESS) and a two-round rebalance takes four rounds or more.
pub const TANSU_REJOIN_DELAY: Duration = Duration::from_millis(1200);

/// The scenario `cohort demo` runs.
pub const DEMO: &str = include_str!("../scenarios/demo.toml");

/// The shipped scenarios, by name, so the binary finds them wherever it runs.
pub const SHIPPED: &[(&str, &str)] = &[
    ("demo", DEMO),
    ("smoke", include_str!("../scenarios/smoke.toml")),
    (
        "rolling-restart",
        include_str!("../scenarios/rolling-restart.toml"),
    ),
    (
        "scale-out-in",
        include_str!("../scenarios/scale-out-in.toml"),
    ),
    ("crash-storm", include_str!("../scenarios/crash-storm.toml")),
    (
        "flapping-network",
        include_str!("../scenarios/flapping-network.toml"),
    ),
    (
        "stalled-consumer",
        include_str!("../scenarios/stalled-consumer.toml"),
    ),
    (
        "partitions-added",
        include_str!("../scenarios/partitions-added.toml"),
    ),
    (
        "eager-to-cooperative",
        include_str!("../scenarios/eager-to-cooperative.toml"),
    ),
    (
        "mixed-clients",
        include_str!("../scenarios/mixed-clients.toml"),
    ),
    (
        "static-restart",
        include_str!("../scenarios/static-restart.toml"),
    ),
    (
        "broker-restart",
        include_str!("../scenarios/broker-restart.toml"),
    ),
    (
        "rebalance-timeout",
        include_str!("../scenarios/rebalance-timeout.toml"),
    ),
    (
        "leader-leaves-mid-rebalance",
        include_str!("../scenarios/leader-leaves-mid-rebalance.toml"),
    ),
    (
        "coordinator-failover",
        include_str!("../scenarios/coordinator-failover.toml"),
    ),
    (
        "leader-change",
        include_str!("../scenarios/leader-change.toml"),
    ),
    ("soak", include_str!("../scenarios/soak.toml")),
];

/// A scenario's text from a path or a shipped name.
pub fn load(path_or_name: &str) -> Result<String, String> {
    let p = std::path::Path::new(path_or_name);
    if p.exists() {
        return std::fs::read_to_string(p).map_err(|e| format!("{path_or_name}: {e}"));
    }
    let name = path_or_name.trim_end_matches(".toml");
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| (*t).to_owned())
        .ok_or_else(|| {
            format!(
                "{path_or_name}: no such file or shipped scenario (shipped: {})",
                SHIPPED.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
            )
        })
}

/// Starts the default broker (Apache Kafka unless `COHORT_BROKER_KIND` and friends say
/// otherwise, see `cohort-testbroker`), or the given kind.
pub async fn embedded_broker(
    kind: Option<cohort_testbroker::BrokerKind>,
    nodes: usize,
) -> Result<TestBroker, String> {
    let mut o = BrokerOptions::from_env().map_err(|e| e.to_string())?;
    if let Some(k) = kind {
        o.kind = Some(k);
        if o.backend == Some(cohort_testbroker::Backend::External) {
            o.backend = None;
            o.bootstrap = None;
        }
    }
    o.nodes = nodes.max(1);
    tokio::task::spawn_blocking(move || TestBroker::start_with(o))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Report directory.
    pub out: PathBuf,
    /// Seed (else the scenario's, else random).
    pub seed: Option<u64>,
    /// Run against this cluster.
    pub bootstrap: Option<String>,
    /// Run against this image.
    pub image: Option<String>,
    /// Run on this broker software (`--broker`).
    pub broker: Option<cohort_testbroker::BrokerKind>,
    /// Show progress (a bar on a terminal, a line every 10 s otherwise).
    pub progress: bool,
    /// The `cohort` binary for process members (default: this executable).
    pub cohort_bin: Option<PathBuf>,
}

impl RunOptions {
    /// Defaults.
    pub fn new(out: PathBuf, seed: Option<u64>) -> Self {
        Self {
            out,
            seed,
            bootstrap: None,
            image: None,
            broker: None,
            progress: true,
            cohort_bin: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------

enum Handle {
    Ours(CohortMember),
    Theirs(RdMember),
    Process(ProcessMember),
}

struct ProcessMember {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    pid: u32,
    /// Set when the harness ends the process, so its end is not taken for a crash.
    stopping: Arc<AtomicBool>,
    /// Ends the member if `cohort run` dies without stopping it (SIGKILL, a panic, a frozen
    /// member that would never see its control pipe close).
    watchdog: Option<std::process::Child>,
}

impl Drop for ProcessMember {
    fn drop(&mut self) {
        cohort_testbroker::dismiss_watchdog(self.watchdog.take());
    }
}

struct Slot {
    settings: MemberSettings,
    handle: Option<Handle>,
    frozen: bool,
}

struct Ctx {
    journal: Journal,
    bootstrap: String,
    group: String,
    /// Scenario topic name → run topic name.
    topic_names: BTreeMap<String, String>,
    /// Run topic name → partitions.
    counts: std::sync::Mutex<BTreeMap<String, i32>>,
    admin: Producer,
    broker: Option<Arc<TestBroker>>,
    producer_paused: AtomicBool,
    producer_stop: AtomicBool,
    broker_paused: AtomicBool,
    /// Nodes a `broker-kill` or `broker-stop` took down: the action and the journal's label.
    down: std::sync::Mutex<BTreeMap<i32, (&'static str, String)>>,
    /// Replication factor of the run's topics (every node, up to 3, so that a node can fail).
    replication: i16,
    /// Lasting faults in force (a `when = "stable"` trigger waits for them to end).
    active_faults: AtomicU64,
    notes: std::sync::Mutex<Vec<String>>,
    members: Mutex<BTreeMap<String, Slot>>,
    /// Applied to every cohort member (see `GroupConfig::cooperative_rejoin_delay`).
    cooperative_rejoin_delay: Duration,
    rng: std::sync::Mutex<ChaCha8Rng>,
    /// The scenario's seed, from which each member's retry jitter is derived.
    seed: u64,
    out: PathBuf,
    cohort_bin: PathBuf,
    start: Instant,
    produced: AtomicU64,
}

impl Ctx {
    fn note(&self, n: String) {
        let mut v = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if !v.contains(&n) {
            v.push(n);
        }
    }

    fn chaos(&self, action: &str, target: &str, detail: &str) {
        self.journal.record(
            "chaos",
            Event::Chaos {
                action: action.to_owned(),
                target: target.to_owned(),
                detail: detail.to_owned(),
            },
        );
    }

    fn counts(&self) -> BTreeMap<String, i32> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn topics(&self) -> Vec<String> {
        self.topic_names.values().cloned().collect()
    }

    fn member_options(&self, name: &str, s: &MemberSettings) -> MemberOptions {
        let mut o = MemberOptions::new(name, &self.bootstrap, &self.group, &self.topics());
        if let Some(b) = &s.balancers {
            o.balancers = b.clone();
        }
        if s.static_membership == Some(true) {
            o.instance_id = Some(name.to_owned());
        }
        if let Some(d) = s.session_timeout {
            o.session_timeout = d;
        }
        if let Some(d) = s.heartbeat_interval {
            o.heartbeat_interval = d;
        }
        if let Some(d) = s.rebalance_timeout {
            o.rebalance_timeout = d;
        }
        if let Some(d) = s.max_poll_interval {
            o.max_poll_interval = d;
        }
        if let Some(d) = s.processing {
            o.processing = d;
        }
        if let Some(w) = s.weight {
            o.weight = w;
        }
        o.bug = s.bug;
        o.cooperative_rejoin_delay = self.cooperative_rejoin_delay;
        o.jitter_seed = Some(member_seed(self.seed, name));
        o
    }
}

/// A member's jitter seed: the scenario's seed mixed with its name (FNV-1a, stable across Rust
/// releases unlike `DefaultHasher`), so members differ and a replay repeats each one's retries.
fn member_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn describe(s: &MemberSettings) -> String {
    let client = match s.client.unwrap_or(Client::Cohort) {
        Client::Cohort => "cohort".to_owned(),
        Client::Librdkafka => format!("librdkafka {}", librdkafka_version()),
    };
    let place = match s.placement.unwrap_or_default() {
        Placement::InProcess => "in-process",
        Placement::Process => "process",
    };
    let mut d = format!(
        "{client}, {place}, {}",
        s.balancers.clone().unwrap_or_default().join("+")
    );
    if s.static_membership == Some(true) {
        d.push_str(", static");
    }
    if let Some(b) = s.bug {
        d.push_str(&format!(", bug {b:?}"));
    }
    d
}

async fn start_member(ctx: &Arc<Ctx>, name: &str) -> Result<(), String> {
    let mut members = ctx.members.lock().await;
    let slot = members.get_mut(name).ok_or(format!("no member {name}"))?;
    if slot.handle.is_some() {
        return Ok(());
    }
    let opts = ctx.member_options(name, &slot.settings);
    let client = slot.settings.client.unwrap_or(Client::Cohort);
    let handle = match slot.settings.placement.unwrap_or_default() {
        Placement::InProcess => match client {
            Client::Cohort => {
                Handle::Ours(CohortMember::start(opts, journal_sink(&ctx.journal, name)).await?)
            }
            Client::Librdkafka => {
                let sink = journal_sink(&ctx.journal, name);
                Handle::Theirs(
                    tokio::task::spawn_blocking(move || RdMember::start(opts, sink))
                        .await
                        .map_err(|e| e.to_string())??,
                )
            }
        },
        Placement::Process => Handle::Process(spawn_process(ctx, name, &opts, client).await?),
    };
    slot.handle = Some(handle);
    slot.frozen = false;
    Ok(())
}

async fn spawn_process(
    ctx: &Arc<Ctx>,
    name: &str,
    o: &MemberOptions,
    client: Client,
) -> Result<ProcessMember, String> {
    let ms = |d: Duration| d.as_millis().to_string();
    let mut cmd = tokio::process::Command::new(&ctx.cohort_bin);
    cmd.arg("member")
        .args([
            "--bootstrap",
            &o.bootstrap,
            "--group",
            &o.group,
            "--name",
            name,
        ])
        .args(["--session-timeout-ms", &ms(o.session_timeout)])
        .args(["--heartbeat-interval-ms", &ms(o.heartbeat_interval)])
        .args(["--rebalance-timeout-ms", &ms(o.rebalance_timeout)])
        .args(["--max-poll-interval-ms", &ms(o.max_poll_interval)])
        .args(["--processing-us", &o.processing.as_micros().to_string()])
        .args(["--weight", &o.weight.to_string()])
        .args([
            "--client",
            match client {
                Client::Cohort => "cohort",
                Client::Librdkafka => "librdkafka",
            },
        ])
        .arg("--control");
    for t in &o.topics {
        cmd.args(["--topic", t]);
    }
    for b in &o.balancers {
        cmd.args(["--balancer", b]);
    }
    if let Some(i) = &o.instance_id {
        cmd.args(["--instance-id", i]);
    }
    if o.bug.is_some() {
        cmd.args(["--bug", "commit-after-revoke"]);
    }
    cmd.args([
        "--cooperative-rejoin-delay-ms",
        &ms(o.cooperative_rejoin_delay),
    ]);
    if let Some(seed) = o.jitter_seed {
        cmd.args(["--jitter-seed", &seed.to_string()]);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ctx.out.join(format!("member-{name}.log")))
        .map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", ctx.cohort_bin.display()))?;
    let pid = child.id().unwrap_or(0);
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stdin = child.stdin.take();
    let stopping = Arc::new(AtomicBool::new(false));
    let (journal, who, stop2) = (ctx.journal.clone(), name.to_owned(), stopping.clone());
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut ended = false;
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Entry>(&line) {
                Ok(e) => {
                    ended |= matches!(e.event, Event::Left | Event::Crashed);
                    journal.push(e);
                }
                Err(err) => journal.record(
                    &who,
                    Event::Error {
                        message: format!("unreadable line {line:?}: {err}"),
                    },
                ),
            }
        }
        // The process is gone without saying so: a crash (unless the harness killed it and
        // recorded that itself).
        if !ended && !stop2.load(Ordering::Relaxed) {
            journal.record(&who, Event::Crashed);
        }
    });
    // The member counts as started once it says so (its first line), so triggers and the
    // checker see it from then on.
    let spawned = now_us();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let started = ctx.journal.with(|entries| {
            entries.iter().rev().any(|e| {
                e.source == name && e.ts >= spawned && matches!(e.event, Event::Started { .. })
            })
        });
        if started {
            break;
        }
        if Instant::now() > end {
            ctx.note(format!(
                "{name}: the process did not report its start within 20 s"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(ProcessMember {
        child,
        stdin,
        pid,
        stopping,
        watchdog: cohort_testbroker::watch_process(pid),
    })
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

async fn stop_member(ctx: &Arc<Ctx>, name: &str, how: StopHow) {
    let handle = {
        let mut members = ctx.members.lock().await;
        let Some(slot) = members.get_mut(name) else {
            return;
        };
        slot.frozen = false;
        slot.handle.take()
    };
    match handle {
        None => {}
        Some(Handle::Ours(m)) => m.stop(how).await,
        Some(Handle::Theirs(m)) => {
            if how == StopHow::Crash {
                ctx.note(format!(
                    "{name}: an in-process librdkafka member cannot crash (its threads keep heartbeating); it was closed instead. Use placement = \"process\" to crash it."
                ));
            }
            let _ = tokio::task::spawn_blocking(move || m.stop(StopHow::Close)).await;
        }
        Some(Handle::Process(mut p)) => match how {
            StopHow::Crash => {
                p.stopping.store(true, Ordering::Relaxed);
                signal(p.pid, "CONT");
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
                ctx.journal.record(name, Event::Crashed);
            }
            StopHow::Close => {
                signal(p.pid, "CONT");
                signal(p.pid, "TERM");
                if tokio::time::timeout(Duration::from_secs(30), p.child.wait())
                    .await
                    .is_err()
                {
                    p.stopping.store(true, Ordering::Relaxed);
                    let _ = p.child.start_kill();
                    let _ = p.child.wait().await;
                    ctx.journal.record(name, Event::Crashed);
                    ctx.note(format!(
                        "{name}: did not exit within 30 s of SIGTERM; killed"
                    ));
                }
            }
        },
    }
}

/// Sends a control command to a running member.
async fn control(ctx: &Arc<Ctx>, name: &str, cmd: ControlCommand) {
    let mut members = ctx.members.lock().await;
    let Some(slot) = members.get_mut(name) else {
        return;
    };
    match &mut slot.handle {
        Some(Handle::Ours(m)) => crate::process_member::apply(m.controls(), &cmd),
        Some(Handle::Theirs(m)) => match cmd {
            ControlCommand::Processing { us } => m.set_processing(Duration::from_micros(us)),
            other => ctx.note(format!(
                "{name}: an in-process librdkafka member has no pluggable dialer; {other:?} was not applied"
            )),
        },
        Some(Handle::Process(p)) => {
            if let Some(stdin) = &mut p.stdin {
                let line = serde_json::to_string(&cmd).unwrap_or_default() + "\n";
                let _ = stdin.write_all(line.as_bytes()).await;
                let _ = stdin.flush().await;
            }
            if slot.settings.client == Some(Client::Librdkafka)
                && !matches!(cmd, ControlCommand::Processing { .. })
            {
                ctx.note(format!(
                    "{name}: a librdkafka member has no pluggable dialer; network faults were not applied"
                ));
            }
        }
        None => {}
    }
}

async fn set_frozen(ctx: &Arc<Ctx>, name: &str, frozen: bool) {
    let mut members = ctx.members.lock().await;
    let Some(slot) = members.get_mut(name) else {
        return;
    };
    if slot.frozen == frozen {
        return;
    }
    match &slot.handle {
        Some(Handle::Ours(m)) => {
            if frozen {
                m.controls().freeze();
            } else {
                m.controls().thaw();
            }
        }
        Some(Handle::Process(p)) => signal(p.pid, if frozen { "STOP" } else { "CONT" }),
        Some(Handle::Theirs(m)) => {
            m.set_paused(frozen);
            ctx.note(format!(
                "{name}: an in-process librdkafka member can only stop polling, not freeze (its threads keep heartbeating)"
            ));
        }
        None => return,
    }
    slot.frozen = frozen;
}

async fn running(ctx: &Arc<Ctx>) -> Vec<String> {
    let members = ctx.members.lock().await;
    members
        .iter()
        .filter(|(_, s)| s.handle.is_some())
        .map(|(n, _)| n.clone())
        .collect()
}

async fn targets(ctx: &Arc<Ctx>, a: &ActionSpec) -> Vec<String> {
    let target = a.target.as_deref().unwrap_or("");
    let members = ctx.members.lock().await;
    let (up, down): (Vec<String>, Vec<String>) = {
        let mut up = Vec::new();
        let mut down = Vec::new();
        for (n, s) in members.iter() {
            if s.handle.is_some() {
                up.push(n.clone());
            } else {
                down.push(n.clone());
            }
        }
        (up, down)
    };
    let pool = if a.action == Action::Join { down } else { up };
    match target {
        "all" => pool,
        "leader" => {
            drop(members);
            leader(ctx)
                .into_iter()
                .filter(|l| pool.contains(l))
                .collect()
        }
        "random" => {
            if pool.is_empty() {
                return Vec::new();
            }
            let i = ctx
                .rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .random_range(0..pool.len());
            vec![pool[i].clone()]
        }
        name => vec![name.to_owned()],
    }
}

/// The member that led the latest generation any member was assigned in.
fn leader(ctx: &Ctx) -> Option<String> {
    ctx.journal.with(|entries| {
        entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::Assigned {
                    generation,
                    leader: Some(true),
                    ..
                } => Some((*generation, e.source.clone())),
                _ => None,
            })
            .max_by_key(|(g, _)| *g)
            .map(|(_, m)| m)
    })
}

/// Whether the group is stable now (see [`Stability`]).
fn is_stable(ctx: &Ctx) -> bool {
    let mut st = Stability::new(ctx.counts());
    ctx.journal.with(|entries| {
        for e in entries {
            st.apply(e);
        }
    });
    st.is_stable()
}

/// Waits until no lasting fault is in force and the group has been stable for a second (so a
/// member that is about to learn it lost its partitions, or one that just started, counts).
async fn wait_stable(ctx: &Arc<Ctx>, limit: Duration) -> bool {
    holds_for_a_second(limit, Duration::from_millis(100), || {
        std::future::ready(ctx.active_faults.load(Ordering::SeqCst) == 0 && is_stable(ctx))
    })
    .await
}

/// Polls `quiet` every `every` until it has held for a second; false when `limit` passes
/// first. A second is also what the convergence check asks of a stable span.
async fn holds_for_a_second<F: std::future::Future<Output = bool>>(
    limit: Duration,
    every: Duration,
    mut quiet: impl FnMut() -> F,
) -> bool {
    let end = Instant::now() + limit;
    let mut since: Option<Instant> = None;
    while Instant::now() < end {
        match (quiet().await, since) {
            (true, Some(t)) if t.elapsed() >= Duration::from_secs(1) => return true,
            (true, None) => since = Some(Instant::now()),
            (false, _) => since = None,
            _ => {}
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// Grows a topic with CreatePartitions. A broker without it (Tansu) skips the
/// action with a note: recreating the topic is no stand-in, since Tansu keeps a group's
/// committed offsets of a deleted topic and answers a fetch beyond the log end with no records
/// (not OFFSET_OUT_OF_RANGE), so members would resume in the middle of the new log.
async fn grow(ctx: &Arc<Ctx>, topic: &str, n: i32) -> Result<(), String> {
    match ctx.admin.create_partitions(topic, n).await {
        Ok(()) => {}
        Err(cohort::Error::UnsupportedVersion { .. }) => {
            ctx.note(format!(
                "add-partitions on {topic}: not run, the broker has no CreatePartitions (see `cohort conformance`, check create-partitions)"
            ));
            return Ok(());
        }
        Err(e) => return Err(format!("CreatePartitions {topic}: {e}")),
    }
    ctx.counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(topic.to_owned(), n);
    ctx.chaos("add-partitions", topic, &n.to_string());
    Ok(())
}

/// The nodes a broker action is done to.
enum Nodes {
    /// The whole broker (Tansu, a container, or `all`).
    Whole,
    /// These nodes of an Apache Kafka process cluster, with a label for the journal.
    Some(Vec<i32>, String),
}

/// Resolves a broker action's `target` (see `ActionSpec::target`).
async fn nodes_of(ctx: &Arc<Ctx>, b: &TestBroker, target: Option<&str>) -> Result<Nodes, String> {
    let ids = b.node_ids();
    let target = target.unwrap_or("all");
    if target == "all" {
        return Ok(Nodes::Whole);
    }
    if ids.is_empty() {
        return Err(format!(
            "target {target:?} names a node, and {} has none this run controls",
            b.info()
        ));
    }
    let (id, label) = match target {
        "coordinator" => {
            // A fresh lookup: the coordinator may have moved since the admin client last asked.
            let cluster = ctx.admin.cluster();
            cluster.forget_coordinator(&ctx.group);
            let id = cluster
                .find_coordinator(&ctx.group)
                .await
                .map_err(|e| format!("finding the group's coordinator: {e}"))?;
            (id, format!("node {id} (coordinator)"))
        }
        "leader" => {
            let topic = ctx.topics().into_iter().next().ok_or("no topic")?;
            let cluster = ctx.admin.cluster();
            cluster
                .refresh_metadata(Some(std::slice::from_ref(&topic)))
                .await
                .map_err(|e| format!("metadata of {topic}: {e}"))?;
            let id = cluster
                .leader(&topic, 0)
                .ok_or(format!("{topic}-0 has no leader"))?;
            (id, format!("node {id} (leader of {topic}-0)"))
        }
        n => {
            let id: i32 = n.parse().map_err(|_| format!("bad node {n:?}"))?;
            (id, format!("node {id}"))
        }
    };
    if !ids.contains(&id) {
        return Err(format!("no node {id} (nodes: {ids:?})"));
    }
    Ok(Nodes::Some(vec![id], label))
}

/// Runs a blocking broker operation off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, cohort_testbroker::BrokerError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn restart_broker(ctx: &Arc<Ctx>, target: Option<&str>) -> Result<(), String> {
    let Some(b) = ctx.broker.clone() else {
        ctx.note("broker-restart: not possible with an external cluster; skipped".into());
        return Ok(());
    };
    if let Nodes::Some(ids, label) = nodes_of(ctx, &b, target).await? {
        // One node of a cluster: the others serve meanwhile, so the producer goes on.
        ctx.chaos("broker-restart", &label, "start");
        for id in ids {
            let b2 = Arc::clone(&b);
            blocking(move || b2.restart_node(id)).await?;
        }
        ctx.chaos("broker-restart", &label, "end");
        return Ok(());
    }
    ctx.producer_paused.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ctx.chaos("broker-restart", "broker", "start");
    let b2 = Arc::clone(&b);
    blocking(move || b2.restart()).await?;
    ctx.broker_paused.store(false, Ordering::SeqCst);
    ctx.chaos("broker-restart", "broker", "end");
    if b.is_volatile() {
        ctx.note(
            "broker-restart: Tansu keeps its data in memory, so a restart loses topics and committed offsets; the harness recreates the topics and does not expect the records written before the restart".into(),
        );
        for (t, n) in ctx.counts() {
            ctx.journal.record(
                "chaos",
                Event::Forgotten {
                    topic: t.clone(),
                    partitions: (0..n).collect(),
                },
            );
            ctx.admin
                .create_topic(&t, n, ctx.replication)
                .await
                .map_err(|e| format!("recreating {t}: {e}"))?;
        }
    }
    ctx.producer_paused.store(false, Ordering::SeqCst);
    Ok(())
}

/// `broker-kill` and `broker-stop`: the nodes go down, and come back after `for` if given, else
/// at a `broker-start` (or when the timeline ends).
async fn take_down(ctx: &Arc<Ctx>, a: &ActionSpec, kill: bool) -> Result<(), String> {
    let action = if kill { "broker-kill" } else { "broker-stop" };
    let Some(b) = ctx.broker.clone() else {
        ctx.note(format!(
            "{action}: not possible with an external cluster; skipped"
        ));
        return Ok(());
    };
    let (ids, label) = match nodes_of(ctx, &b, a.target.as_deref()).await? {
        Nodes::Some(ids, label) => (ids, label),
        Nodes::Whole if !b.node_ids().is_empty() => {
            let ids = b.node_ids();
            (ids, "broker".to_owned())
        }
        Nodes::Whole => {
            return Err(format!(
                "{action} needs Apache Kafka nodes this run controls; {} has none",
                b.info()
            ));
        }
    };
    let whole = ids.len() == b.node_ids().len();
    if whole {
        ctx.producer_paused.store(true, Ordering::SeqCst);
        ctx.broker_paused.store(true, Ordering::SeqCst);
    }
    ctx.chaos(action, &label, "start");
    for id in &ids {
        let (b2, id) = (Arc::clone(&b), *id);
        if kill {
            blocking(move || b2.kill_node(id)).await?;
        } else {
            blocking(move || b2.stop_node(id)).await?;
        }
    }
    {
        let mut down = ctx.down.lock().unwrap_or_else(|e| e.into_inner());
        for id in &ids {
            down.insert(*id, (action, label.clone()));
        }
    }
    if let Some(d) = a.lasting {
        ctx.active_faults.fetch_add(1, Ordering::SeqCst);
        let ctx = Arc::clone(ctx);
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = bring_up(&ctx, Some(&ids)).await;
            ctx.active_faults.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

/// Starts nodes a `broker-kill` or `broker-stop` took down (`None`: all of them) and records
/// the end of each fault.
async fn bring_up(ctx: &Arc<Ctx>, only: Option<&[i32]>) -> Result<(), String> {
    let Some(b) = ctx.broker.clone() else {
        return Ok(());
    };
    let todo: Vec<(i32, (&'static str, String))> = {
        let mut down = ctx.down.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<i32> = down
            .keys()
            .copied()
            .filter(|id| only.is_none_or(|o| o.contains(id)))
            .collect();
        ids.into_iter()
            .filter_map(|id| down.remove(&id).map(|d| (id, d)))
            .collect()
    };
    let mut ended: BTreeMap<(&'static str, String), ()> = BTreeMap::new();
    for (id, (action, label)) in todo {
        let b2 = Arc::clone(&b);
        blocking(move || b2.start_node(id)).await?;
        ended.insert((action, label), ());
    }
    for (action, label) in ended.into_keys() {
        ctx.chaos(action, &label, "end");
    }
    if ctx
        .down
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty()
    {
        ctx.broker_paused.store(false, Ordering::SeqCst);
        ctx.producer_paused.store(false, Ordering::SeqCst);
    }
    Ok(())
}

/// Runs a lasting fault: `on` now, `off` after `d` (in the background), recorded as
/// start/end.
fn lasting<F, G>(ctx: &Arc<Ctx>, action: &'static str, target: String, d: Duration, on: F, off: G)
where
    F: std::future::Future<Output = ()> + Send + 'static,
    G: std::future::Future<Output = ()> + Send + 'static,
{
    let ctx = Arc::clone(ctx);
    ctx.active_faults.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        ctx.chaos(action, &target, "start");
        on.await;
        tokio::time::sleep(d).await;
        off.await;
        ctx.chaos(action, &target, "end");
        ctx.active_faults.fetch_sub(1, Ordering::SeqCst);
    });
}

async fn execute(ctx: &Arc<Ctx>, a: &ActionSpec) -> Result<(), String> {
    let d = a.lasting.unwrap_or_default();
    match a.action {
        Action::Wait => Ok(()),
        Action::BrokerPause => {
            let Some(b) = ctx.broker.clone() else {
                ctx.note("broker-pause: not possible with an external cluster; skipped".into());
                return Ok(());
            };
            match nodes_of(ctx, &b, a.target.as_deref()).await? {
                Nodes::Whole => {
                    let (b1, b2, c1, c2) = (b.clone(), b, ctx.clone(), ctx.clone());
                    lasting(
                        ctx,
                        "broker-pause",
                        "broker".into(),
                        d,
                        async move {
                            c1.broker_paused.store(true, Ordering::SeqCst);
                            let _ = tokio::task::spawn_blocking(move || b1.pause()).await;
                        },
                        async move {
                            if c2.broker_paused.swap(false, Ordering::SeqCst) {
                                let _ = tokio::task::spawn_blocking(move || b2.resume()).await;
                            }
                        },
                    );
                }
                Nodes::Some(ids, label) => {
                    let (b1, b2) = (b.clone(), b);
                    let ids2 = ids.clone();
                    lasting(
                        ctx,
                        "broker-pause",
                        label,
                        d,
                        async move {
                            let _ = tokio::task::spawn_blocking(move || {
                                ids.iter().try_for_each(|id| b1.pause_node(*id))
                            })
                            .await;
                        },
                        async move {
                            let _ = tokio::task::spawn_blocking(move || {
                                ids2.iter().try_for_each(|id| b2.resume_node(*id))
                            })
                            .await;
                        },
                    );
                }
            }
            Ok(())
        }
        Action::BrokerKill => take_down(ctx, a, true).await,
        Action::BrokerStop => take_down(ctx, a, false).await,
        Action::BrokerStart => {
            let only = match a.target.as_deref() {
                None | Some("all") => None,
                Some(t) => Some(vec![t.parse::<i32>().map_err(|_| {
                    format!("broker-start target {t:?}: expected all or a node id")
                })?]),
            };
            bring_up(ctx, only.as_deref()).await
        }
        Action::BrokerRestart => restart_broker(ctx, a.target.as_deref()).await,
        Action::AddPartitions => {
            let scenario_topic = a
                .target
                .clone()
                .unwrap_or_else(|| ctx.topic_names.keys().next().cloned().unwrap_or_default());
            let topic = ctx
                .topic_names
                .get(&scenario_topic)
                .cloned()
                .ok_or(format!("no topic {scenario_topic}"))?;
            let target = match a.grow_by {
                Some(by) => {
                    let now = ctx.counts().get(&topic).copied().unwrap_or(0);
                    now.checked_add(by)
                        .filter(|n| u64::try_from(*n).is_ok_and(|n| n <= limits::PARTITIONS))
                        .ok_or(format!(
                            "{topic}: {now} + {by} partitions is more than {}",
                            limits::PARTITIONS
                        ))?
                }
                None => a.partitions.unwrap_or(0),
            };
            grow(ctx, &topic, target).await
        }
        _ => {
            let names = targets(ctx, a).await;
            if names.is_empty() {
                ctx.note(format!(
                    "{:?} {}: no member to act on at that moment; skipped",
                    a.action,
                    a.target.as_deref().unwrap_or("")
                ));
            }
            for name in names {
                member_action(ctx, a, &name, d).await?;
            }
            Ok(())
        }
    }
}

async fn member_action(
    ctx: &Arc<Ctx>,
    a: &ActionSpec,
    name: &str,
    d: Duration,
) -> Result<(), String> {
    let n = name.to_owned();
    match a.action {
        Action::Join => {
            ctx.chaos("join", name, "");
            start_member(ctx, name).await?;
        }
        Action::Leave => {
            ctx.chaos("leave", name, "");
            stop_member(ctx, name, StopHow::Close).await;
        }
        Action::Crash => {
            ctx.chaos("crash", name, "");
            stop_member(ctx, name, StopHow::Crash).await;
        }
        Action::Restart => {
            ctx.chaos("restart", name, if a.crash { "crash" } else { "" });
            stop_member(
                ctx,
                name,
                if a.crash {
                    StopHow::Crash
                } else {
                    StopHow::Close
                },
            )
            .await;
            if let Some(b) = &a.balancers {
                let mut m = ctx.members.lock().await;
                if let Some(s) = m.get_mut(name) {
                    s.settings.balancers = Some(b.clone());
                }
            }
            start_member(ctx, name).await?;
        }
        Action::Freeze => {
            let (c1, c2, n1, n2) = (ctx.clone(), ctx.clone(), n.clone(), n.clone());
            lasting(
                ctx,
                "freeze",
                n,
                d,
                async move { set_frozen(&c1, &n1, true).await },
                async move { set_frozen(&c2, &n2, false).await },
            );
        }
        Action::Slow => {
            let normal = {
                let m = ctx.members.lock().await;
                m.get(name)
                    .and_then(|s| s.settings.processing)
                    .unwrap_or_default()
            };
            let slow = a.processing.unwrap_or_default();
            let (c1, c2, n1, n2) = (ctx.clone(), ctx.clone(), n.clone(), n.clone());
            lasting(
                ctx,
                "slow",
                n,
                d,
                async move {
                    control(
                        &c1,
                        &n1,
                        ControlCommand::Processing {
                            us: slow.as_micros() as u64,
                        },
                    )
                    .await
                },
                async move {
                    control(
                        &c2,
                        &n2,
                        ControlCommand::Processing {
                            us: normal.as_micros() as u64,
                        },
                    )
                    .await
                },
            );
        }
        Action::Latency => {
            let ms = a.latency.unwrap_or_default().as_millis() as u64;
            let (c1, c2, n1, n2) = (ctx.clone(), ctx.clone(), n.clone(), n.clone());
            lasting(
                ctx,
                "latency",
                n,
                d,
                async move { control(&c1, &n1, ControlCommand::Latency { ms }).await },
                async move { control(&c2, &n2, ControlCommand::Latency { ms: 0 }).await },
            );
        }
        Action::Blackhole | Action::Cut => {
            let cmd = if a.action == Action::Blackhole {
                ControlCommand::Blackhole
            } else {
                ControlCommand::Cut {
                    direction: a.direction.unwrap_or(Direction::Inbound),
                }
            };
            let action = if a.action == Action::Blackhole {
                "blackhole"
            } else {
                "cut"
            };
            let (c1, c2, n1, n2) = (ctx.clone(), ctx.clone(), n.clone(), n.clone());
            lasting(
                ctx,
                action,
                n,
                d,
                async move { control(&c1, &n1, cmd).await },
                async move { control(&c2, &n2, ControlCommand::Heal).await },
            );
        }
        Action::HoldRequests => {
            let apis = a.api_keys()?;
            let what = a.apis.clone().unwrap_or_default().join("+");
            let (c1, c2, n1, n2) = (ctx.clone(), ctx.clone(), n.clone(), n.clone());
            lasting(
                ctx,
                "hold-requests",
                n,
                d,
                async move { control(&c1, &n1, ControlCommand::Hold { apis }).await },
                async move { control(&c2, &n2, ControlCommand::Hold { apis: Vec::new() }).await },
            );
            ctx.note(format!(
                "hold-requests: {what} requests of the target were swallowed"
            ));
        }
        Action::Drop => {
            ctx.chaos("drop", name, "");
            control(ctx, name, ControlCommand::Drop).await;
        }
        Action::Heal => {
            ctx.chaos("heal", name, "");
            control(ctx, name, ControlCommand::Heal).await;
        }
        Action::Wait
        | Action::BrokerPause
        | Action::BrokerRestart
        | Action::BrokerKill
        | Action::BrokerStop
        | Action::BrokerStart
        | Action::AddPartitions => {}
    }
    Ok(())
}

/// The message of a task's panic.
fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

async fn timeline(
    ctx: Arc<Ctx>,
    actions: Vec<ActionSpec>,
    duration: Duration,
    stability_limit: Duration,
    rounds: Rounds,
) {
    let end = ctx.start + duration;
    let mut round_start = ctx.start;
    // A round boundary is not journaled: the checker takes timeline entries for the triggers
    // of rebalances, and a new round triggers nothing.
    while play(&ctx, &actions, end, round_start, stability_limit).await
        && rounds == Rounds::UntilTheEnd
        && Instant::now() < end
    {
        round_start = Instant::now();
    }
}

/// Whether the timeline plays once or again and again until the run's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rounds {
    Once,
    UntilTheEnd,
}

/// Plays the actions once, `at` counted from `round_start`; false when the run's end came
/// first.
async fn play(
    ctx: &Arc<Ctx>,
    actions: &[ActionSpec],
    end: Instant,
    round_start: Instant,
    stability_limit: Duration,
) -> bool {
    for (i, a) in actions.iter().enumerate() {
        if let Some(at) = a.at {
            tokio::time::sleep_until(round_start + at).await;
        }
        if a.when == Some(Trigger::Stable) && !wait_stable(ctx, stability_limit).await {
            ctx.note(format!(
                "action {} ({:?}): the group was not stable within {} s; fired anyway",
                i + 1,
                a.action,
                stability_limit.as_secs()
            ));
        }
        if let Some(after) = a.after {
            tokio::time::sleep(after).await;
        }
        for rep in 0..a.repeat.max(1) {
            if Instant::now() >= end {
                ctx.note(format!(
                    "action {} ({:?}) and later ones fell after the end of the run; not played",
                    i + 1,
                    a.action
                ));
                return false;
            }
            if let Err(e) = execute(ctx, a).await {
                ctx.note(format!("action {} ({:?}) failed: {e}", i + 1, a.action));
            }
            if rep + 1 < a.repeat {
                tokio::time::sleep(a.every.unwrap_or_default()).await;
            }
        }
    }
    true
}

async fn produce(ctx: Arc<Ctx>, spec: crate::scenario::ProducerSpec, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let tick = Duration::from_millis(50);
    let mut carry = 0.0f64;
    let mut rr: u64 = 0;
    let mut seq: u64 = 0;
    let mut failures = 0u32;
    let mut next = Instant::now();
    while !ctx.producer_stop.load(Ordering::SeqCst) {
        next += tick;
        tokio::time::sleep_until(next).await;
        if ctx.producer_paused.load(Ordering::SeqCst) || ctx.broker_paused.load(Ordering::SeqCst) {
            continue;
        }
        carry += f64::from(spec.rate) * tick.as_secs_f64();
        let n = carry.floor() as u64;
        carry -= n as f64;
        let counts = ctx.counts();
        let topics: Vec<(&String, &i32)> = counts.iter().collect();
        if topics.is_empty() {
            continue;
        }
        let mut batches: BTreeMap<(String, i32), Vec<ProducerRecord>> = BTreeMap::new();
        for _ in 0..n {
            let (topic, parts) = topics[(rr % topics.len() as u64) as usize];
            let key = match spec.keys {
                Keys::None => None,
                Keys::Uniform => Some(format!("k{}", rng.random_range(0..spec.key_space.max(1)))),
                Keys::Hot => Some(if rng.random_bool(0.5) {
                    "k0".to_owned()
                } else {
                    format!("k{}", rng.random_range(0..spec.key_space.max(1)))
                }),
            };
            let partition = match &key {
                None => ((rr / topics.len() as u64) % *parts as u64) as i32,
                Some(k) => partition_for_key(k.as_bytes(), *parts),
            };
            rr += 1;
            let mut value = format!("{seq}-");
            seq += 1;
            while value.len() < spec.record_size {
                value.push('x');
            }
            let rec = match key {
                Some(k) => ProducerRecord::keyed(k, value),
                None => ProducerRecord::value(value),
            };
            batches
                .entry((topic.clone(), partition))
                .or_default()
                .push(rec);
        }
        // One send per partition, all at once: a partition whose leader is down (a node killed
        // in a cluster) must not hold back the others.
        let mut sends = tokio::task::JoinSet::new();
        for ((topic, partition), recs) in batches {
            let ctx = Arc::clone(&ctx);
            sends.spawn(async move {
                let r = ctx.admin.send(&topic, partition, &recs).await;
                (topic, partition, recs.len(), r)
            });
        }
        while let Some(done) = sends.join_next().await {
            let Ok((topic, partition, n, r)) = done else {
                continue;
            };
            match r {
                Ok(base) => {
                    ctx.produced.fetch_add(n as u64, Ordering::Relaxed);
                    ctx.journal.record(
                        "producer",
                        Event::Produced {
                            topic,
                            partition,
                            first: base,
                            last: base + n as i64 - 1,
                        },
                    );
                }
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        ctx.journal.record(
                            "producer",
                            Event::Error {
                                message: format!("produce {topic}/{partition}: {e}"),
                            },
                        );
                    }
                }
            }
        }
    }
}

async fn committed(ctx: &Ctx) -> Option<Offsets> {
    let tps: Vec<TopicPartition> = ctx
        .counts()
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t, p)))
        .collect();
    let got = cohort::unstable::fetch_committed(
        ctx.admin.cluster(),
        &ctx.group,
        &tps,
        Duration::from_secs(3),
    )
    .await
    .ok()?;
    let mut out = Offsets::new();
    for (tp, o) in got {
        if let Some(o) = o {
            out.entry(tp.topic).or_default().insert(tp.partition, o);
        }
    }
    Some(out)
}

async fn monitor(ctx: Arc<Ctx>) {
    let mut last = Offsets::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if ctx.broker_paused.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(o) = committed(&ctx).await
            && o != last
        {
            ctx.journal
                .record("monitor", Event::Observed { offsets: o.clone() });
            last = o;
        }
    }
}

/// End offsets from what the producer wrote since the last forget.
fn end_offsets(entries: &[Entry]) -> BTreeMap<(String, i32), i64> {
    let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for e in entries {
        match &e.event {
            Event::Produced {
                topic,
                partition,
                last,
                ..
            } => {
                let v = out.entry((topic.clone(), *partition)).or_insert(0);
                *v = (*v).max(last + 1);
            }
            Event::Forgotten { topic, partitions } => {
                for p in partitions {
                    out.remove(&(topic.clone(), *p));
                }
            }
            _ => {}
        }
    }
    out
}

fn drained(ctx: &Ctx, committed: &Offsets) -> bool {
    let ends = ctx.journal.with(end_offsets);
    ends.iter().all(|((t, p), end)| {
        committed
            .get(t)
            .and_then(|ps| ps.get(p))
            .is_some_and(|c| c == end)
    })
}

fn status(ctx: &Ctx) -> String {
    let mut st = Stability::new(ctx.counts());
    let mut processed = 0u64;
    ctx.journal.with(|entries| {
        for e in entries {
            st.apply(e);
            if let Event::Processed { first, last, .. } = &e.event {
                processed += (last - first + 1) as u64;
            }
        }
    });
    format!(
        "generation {} · {} members · {} · produced {} · processed {}",
        st.generation(),
        st.running().len(),
        if st.is_stable() {
            "stable"
        } else {
            "rebalancing"
        },
        ctx.produced.load(Ordering::Relaxed),
        processed
    )
}

/// The broker a run uses: the environment's (`COHORT_BROKER_KIND`, `COHORT_BROKER`, ...; Apache
/// Kafka as a process by default), overridden by the scenario's `[broker]` table, overridden by
/// the command line (`--broker`, `--image`, `--bootstrap`).
fn broker_options(s: &Scenario, opts: &RunOptions) -> Result<(BrokerOptions, usize), String> {
    use cohort_testbroker::{Backend, BrokerKind};
    let mut o = BrokerOptions::from_env().map_err(|e| e.to_string())?;
    let spec = &s.broker;
    if let Some(k) = spec.kind {
        o.kind = Some(match k {
            BrokerSoftware::ApacheKafka => BrokerKind::ApacheKafka,
            BrokerSoftware::Tansu => BrokerKind::Tansu,
        });
    }
    if let Some(b) = spec.backend {
        o.backend = Some(match b {
            BrokerBackend::Process => Backend::Process,
            BrokerBackend::Container => Backend::Container,
        });
    }
    if let Some(n) = spec.nodes {
        o.nodes = n as usize;
    }
    if let Some(i) = &spec.image {
        o.image = Some(i.clone());
        o.backend = Some(Backend::Container);
    }
    if let Some(b) = &spec.bootstrap {
        o.bootstrap = Some(b.clone());
        o.backend = Some(Backend::External);
    }
    if let Some(k) = opts.broker {
        o.kind = Some(k);
        // A broker kind on the command line means one this run starts.
        if o.backend == Some(Backend::External) {
            o.backend = None;
            o.bootstrap = None;
        }
    }
    if let Some(i) = &opts.image {
        o.image = Some(i.clone());
        o.backend = Some(Backend::Container);
    }
    if let Some(b) = &opts.bootstrap {
        o.bootstrap = Some(b.clone());
        o.backend = Some(Backend::External);
    }
    // Clusters are Apache Kafka processes; elsewhere the run starts one node, and `run` reports
    // the scenario as not run.
    let wanted = o.nodes.max(1);
    let cluster_ok = o.effective_backend() == Backend::Process
        && o.kind.unwrap_or(BrokerKind::ApacheKafka) == BrokerKind::ApacheKafka;
    if !cluster_ok {
        o.nodes = 1;
    }
    Ok((o, wanted))
}

/// Runs a scenario and writes its reports into `opts.out`.
pub async fn run(s: &Scenario, opts: &RunOptions) -> Result<Report, String> {
    let seed = opts.seed.or(s.seed).unwrap_or_else(|| now_us() % 1_000_000);
    eprintln!(
        "cohort run {}: seed {seed} (replay with --seed {seed})",
        s.name
    );
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;

    // The broker: the environment's (Apache Kafka by default), then what the scenario says,
    // then the command line.
    let (broker_opts, nodes_needed) = broker_options(s, opts)?;
    let broker = Arc::new(
        tokio::task::spawn_blocking(move || TestBroker::start_with(broker_opts))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("broker: {e}"))?,
    );
    let bootstrap = broker.bootstrap().to_owned();
    let broker_report = BrokerReport::of(&broker);
    eprintln!("cohort run {}: broker {broker_report}", s.name);
    let members_desc: BTreeMap<String, String> = s
        .resolved_members()
        .into_iter()
        .map(|(n, _, st)| (n, describe(&st)))
        .collect();

    // Behaviours the scenario needs: a cluster of its size, and the conformance checks it lists.
    let mut missing: Vec<String> = Vec::new();
    if nodes_needed > 1 && broker.node_ids().len() < nodes_needed {
        missing.push(format!(
            "a cluster of {nodes_needed} Apache Kafka nodes this run controls ({broker_report} cannot stop and start nodes)"
        ));
    }
    if !s.requires.is_empty() {
        let results = crate::conformance::run(&bootstrap, &s.requires).await?;
        missing.extend(
            results
                .iter()
                .filter(|r| !r.passed)
                .map(|r| format!("{} ({})", r.name, r.evidence)),
        );
    }
    {
        if !missing.is_empty() {
            let report = Report {
                scenario: s.name.clone(),
                description: s.description.clone(),
                seed,
                broker: broker_report,
                verdict: "not-run".into(),
                not_run_reason: Some(format!(
                    "the broker lacks what the scenario requires: {}",
                    missing.join("; ")
                )),
                duration_ms: 0,
                members: members_desc,
                notes: Vec::new(),
                analysis: None,
                throughput: Vec::new(),
                actions: Vec::new(),
                faults: BTreeMap::new(),
            };
            report
                .write(&opts.out, &[], now_us())
                .map_err(|e| e.to_string())?;
            return Ok(report);
        }
    }

    // Topics, group, context.
    let run_id = format!("{seed}-{}", std::process::id());
    let admin = Producer::new(ClientConfig::new(&bootstrap));
    let mut topic_names = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let replication = broker.info().nodes.clamp(1, 3) as i16;
    for t in &s.topics {
        let name = format!("{}-{run_id}", t.name);
        admin
            .create_topic(&name, t.partitions, replication)
            .await
            .map_err(|e| format!("creating {name}: {e}"))?;
        topic_names.insert(t.name.clone(), name.clone());
        counts.insert(name, t.partitions);
    }
    let mut slots = BTreeMap::new();
    let mut initial = Vec::new();
    for (name, start, settings) in s.resolved_members() {
        if start {
            initial.push(name.clone());
        }
        slots.insert(
            name,
            Slot {
                settings,
                handle: None,
                frozen: false,
            },
        );
    }
    let cohort_bin = match &opts.cohort_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let journal = Journal::new();
    let start_ts = now_us();
    let ctx = Arc::new(Ctx {
        journal: journal.clone(),
        bootstrap: bootstrap.clone(),
        group: format!("cohort-{}-{run_id}", s.name),
        topic_names,
        counts: std::sync::Mutex::new(counts.clone()),
        admin,
        broker: Some(Arc::clone(&broker)),
        producer_paused: AtomicBool::new(false),
        producer_stop: AtomicBool::new(false),
        broker_paused: AtomicBool::new(false),
        down: std::sync::Mutex::new(BTreeMap::new()),
        replication,
        active_faults: AtomicU64::new(0),
        notes: std::sync::Mutex::new(Vec::new()),
        members: Mutex::new(slots),
        cooperative_rejoin_delay: if broker.is_tansu() {
            TANSU_REJOIN_DELAY
        } else {
            Duration::ZERO
        },
        rng: std::sync::Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        seed,
        out: opts.out.clone(),
        cohort_bin,
        start: Instant::now(),
        produced: AtomicU64::new(0),
    });

    // Timeouts the checker derives its bounds from.
    let defaults = ctx.member_options("x", &s.defaults);
    let longest_session = s
        .resolved_members()
        .iter()
        .map(|(n, _, st)| ctx.member_options(n, st).session_timeout)
        .max()
        .unwrap_or(defaults.session_timeout);
    let longest_rebalance = s
        .resolved_members()
        .iter()
        .map(|(n, _, st)| ctx.member_options(n, st).rebalance_timeout)
        .max()
        .unwrap_or(defaults.rebalance_timeout);
    // A member that vanished is noticed within a session; the rejoin takes up to a rebalance
    // timeout; Tansu holds each JoinGroup for half a session, and cooperative groups need two
    // rounds.
    let convergence = s
        .checks
        .convergence
        .unwrap_or(longest_session * 3 + longest_rebalance);
    let drain_limit = s
        .checks
        .drain
        .unwrap_or(convergence + Duration::from_secs(30));

    for name in &initial {
        start_member(&ctx, name).await?;
    }
    let producer = tokio::spawn(produce(Arc::clone(&ctx), s.producer.clone(), seed));
    let monitor_task = tokio::spawn(monitor(Arc::clone(&ctx)));
    let timeline_task = tokio::spawn(timeline(
        Arc::clone(&ctx),
        s.actions.clone(),
        s.duration,
        convergence,
        if s.repeat_timeline {
            Rounds::UntilTheEnd
        } else {
            Rounds::Once
        },
    ));

    // Progress.
    let progress = if opts.progress && std::io::stderr().is_terminal() {
        let pb = indicatif::ProgressBar::new(s.duration.as_secs().max(1));
        pb.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len}s {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Some(pb)
    } else {
        None
    };
    let end = ctx.start + s.duration;
    let mut last_line = Instant::now();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let msg = status(&ctx);
        if let Some(pb) = &progress {
            pb.set_position(ctx.start.elapsed().as_secs());
            pb.set_message(msg);
        } else if opts.progress && last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!("  {:>4}s {msg}", ctx.start.elapsed().as_secs());
            last_line = Instant::now();
        }
    }
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    timeline_task.abort();
    // A task of the run that panicked (an action, the producer, the monitor) fails the run:
    // its work did not happen, and the checker would judge a run that was not the scenario.
    let mut task_failures: Vec<String> = Vec::new();
    let mut joined = |what: &str, r: Result<(), tokio::task::JoinError>| {
        if let Err(e) = r
            && e.is_panic()
        {
            task_failures.push(format!("the {what} task panicked: {}", panic_text(e)));
        }
    };
    joined("timeline", timeline_task.await);
    let timeline_end_ts = now_us();

    // Lift every fault, stop the producer, drain.
    if let Err(e) = bring_up(&ctx, None).await {
        ctx.note(format!("starting the nodes that were down at the end: {e}"));
    }
    if ctx.broker_paused.swap(false, Ordering::SeqCst) {
        let b = Arc::clone(&broker);
        let _ = tokio::task::spawn_blocking(move || b.resume()).await;
        ctx.chaos("broker-pause", "broker", "end");
    }
    for name in running(&ctx).await {
        let frozen = ctx
            .members
            .lock()
            .await
            .get(&name)
            .is_some_and(|s| s.frozen);
        if frozen {
            set_frozen(&ctx, &name, false).await;
            ctx.chaos("freeze", &name, "end");
        }
        let normal = {
            let m = ctx.members.lock().await;
            m.get(&name)
                .and_then(|s| s.settings.processing)
                .unwrap_or_default()
        };
        let client = ctx
            .members
            .lock()
            .await
            .get(&name)
            .and_then(|s| s.settings.client)
            .unwrap_or(Client::Cohort);
        if client == Client::Cohort {
            control(&ctx, &name, ControlCommand::Heal).await;
        }
        control(
            &ctx,
            &name,
            ControlCommand::Processing {
                us: normal.as_micros() as u64,
            },
        )
        .await;
    }
    ctx.producer_stop.store(true, Ordering::SeqCst);
    joined("producer", producer.await);
    if opts.progress {
        eprintln!(
            "  timeline done; draining (up to {} s)",
            drain_limit.as_secs()
        );
    }
    // Everything committed, and the group stable for a second: stopping the members the
    // moment a rebalance settles would cut the span that shows it converged after the last
    // fault.
    let drained_ok = holds_for_a_second(drain_limit, Duration::from_millis(250), || {
        let ctx = Arc::clone(&ctx);
        async move {
            match committed(&ctx).await {
                Some(c) => drained(&ctx, &c) && is_stable(&ctx),
                None => false,
            }
        }
    })
    .await;
    if !drained_ok {
        ctx.note(format!(
            "the group did not commit everything within the drain limit of {} s",
            drain_limit.as_secs()
        ));
    }
    monitor_task.abort();
    joined("monitor", monitor_task.await);
    let names = running(&ctx).await;
    let mut stops = Vec::new();
    for name in names {
        let c = Arc::clone(&ctx);
        stops.push(tokio::spawn(async move {
            stop_member(&c, &name, StopHow::Close).await
        }));
    }
    for s in stops {
        let _ = s.await;
    }
    if let Some(o) = committed(&ctx).await {
        ctx.journal
            .record("monitor-final", Event::Observed { offsets: o });
    }
    // Let process members' last lines arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let end_ts = now_us();

    let entries = journal.snapshot();
    let input = CheckInput {
        topics: counts,
        start_ts,
        timeline_end_ts,
        end_ts,
        max_duplicates: s.checks.max_duplicates,
        max_rebalance: s.checks.max_rebalance,
        convergence_bound: convergence,
        commit_grace: Duration::from_secs(1),
    };
    let mut analysis = checker::check(&entries, &input);
    if !task_failures.is_empty() {
        analysis.findings.push(checker::Finding {
            check: "harness-tasks".into(),
            passed: false,
            summary: format!("{} task(s) of the run panicked", task_failures.len()),
            evidence: task_failures,
        });
    }
    let mut notes = ctx.notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let any_cooperative = s.resolved_members().iter().any(|(_, _, st)| {
        st.balancers
            .as_ref()
            .is_some_and(|b| b.iter().any(|n| n == "cooperative-sticky"))
    });
    if !ctx.cooperative_rejoin_delay.is_zero() && any_cooperative {
        notes.push(format!(
            "cohort members waited {} ms before the second round of a cooperative rebalance: Tansu answers pending SyncGroups once a second",
            ctx.cooperative_rejoin_delay.as_millis()
        ));
    }
    let errors: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Error { message } => Some(format!("{}: {message}", e.source)),
            _ => None,
        })
        .collect();
    if !errors.is_empty() {
        notes.push(format!(
            "{} error event(s), e.g. {}",
            errors.len(),
            errors
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    let actions: Vec<(u64, String)> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Chaos {
                action,
                target,
                detail,
            } => Some((
                e.ts.saturating_sub(start_ts) / 1000,
                format!("{action} {target} {detail}").trim().to_owned(),
            )),
            _ => None,
        })
        .collect();
    let report = Report {
        scenario: s.name.clone(),
        description: s.description.clone(),
        seed,
        broker: broker_report,
        verdict: if analysis.passed() {
            "passed"
        } else {
            "failed"
        }
        .into(),
        not_run_reason: None,
        duration_ms: end_ts.saturating_sub(start_ts) / 1000,
        members: members_desc,
        notes,
        throughput: throughput(&entries, start_ts, end_ts),
        analysis: Some(analysis),
        actions,
        faults: crate::report::fault_counts(&entries),
    };
    report
        .write(&opts.out, &entries, start_ts)
        .map_err(|e| format!("writing reports: {e}"))?;
    Ok(report)
}
