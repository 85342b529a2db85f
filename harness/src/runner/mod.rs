//! Runs a scenario: starts the broker, checks the behaviours the scenario requires, creates the
//! topics, runs the producer, the offset monitor and the members, plays the timeline, drains,
//! and hands the journal to the checker and the reports.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cohort::Producer;
use cohort_testbroker::{BrokerOptions, TestBroker};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::checker::{self, CheckInput};
use crate::error::HarnessError;
use crate::journal::{Event, Journal, now_us};
use crate::member::StopHow;
use crate::netns::Bridge;
use crate::process_member::{Client, ControlCommand};
use crate::report::{BrokerReport, Report, Verdict, throughput};
use crate::scenario::{BrokerBackend, BrokerSoftware, Placement, Scenario};

mod actions;
mod context;
mod fleet;
mod registry;
mod traffic;

use actions::{Rounds, bring_up, holds_for_a_second, is_stable, panic_text, timeline};
use context::Ctx;
use fleet::{Slot, control, describe, running, set_frozen, start_member, stop_member};
pub use registry::{DEMO, SHIPPED, load};
use traffic::{committed, drained, monitor, produce, status};

/// Cohort members pause this long before the follow-up JoinGroup of a cooperative rebalance
/// when the broker is Tansu, which answers pending SyncGroups on a one-second poll: a leader
/// that rejoins sooner strands the followers' assignments (their SyncGroup is answered
/// REBALANCE_IN_PROGRESS) and a two-round rebalance takes four rounds or more.
pub const TANSU_REJOIN_DELAY: Duration = Duration::from_millis(1200);

/// Starts the default broker (Apache Kafka unless `COHORT_BROKER_KIND` and friends say
/// otherwise, see `cohort-testbroker`), or the given kind.
pub async fn embedded_broker(
    kind: Option<cohort_testbroker::BrokerKind>,
    nodes: usize,
) -> Result<TestBroker, HarnessError> {
    let mut o = BrokerOptions::from_env()?;
    if let Some(k) = kind {
        o.kind = Some(k);
        if o.backend == Some(cohort_testbroker::Backend::External) {
            o.backend = None;
            o.bootstrap = None;
        }
    }
    o.nodes = nodes.max(1);
    Ok(
        tokio::task::spawn_blocking(move || TestBroker::start_with(o))
            .await
            .map_err(HarnessError::task("starting the broker"))??,
    )
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
    /// Security settings from the command line, over the scenario's `[security]`.
    pub security: crate::security::SecuritySpec,
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
            security: crate::security::SecuritySpec::default(),
        }
    }
}

/// The broker a run uses: the environment's (`COHORT_BROKER_KIND`, `COHORT_BROKER`, ...; Apache
/// Kafka as a process by default), overridden by the scenario's `[broker]` table, overridden by
/// the command line (`--broker`, `--image`, `--bootstrap`).
fn broker_options(s: &Scenario, opts: &RunOptions) -> Result<(BrokerOptions, usize), HarnessError> {
    use cohort_testbroker::{Backend, BrokerKind};
    let mut o = BrokerOptions::from_env()?;
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
pub async fn run(s: &Scenario, opts: &RunOptions) -> Result<Report, HarnessError> {
    let seed = opts.seed.or(s.seed).unwrap_or_else(|| now_us() % 1_000_000);
    eprintln!(
        "cohort run {}: seed {seed} (replay with --seed {seed})",
        s.name
    );
    std::fs::create_dir_all(&opts.out).map_err(HarnessError::io(opts.out.display()))?;

    // The broker: the environment's (Apache Kafka by default), then what the scenario says,
    // then the command line.
    let (mut broker_opts, nodes_needed) = broker_options(s, opts)?;
    let security = opts.security.clone().over(&s.security).resolve()?;
    if !security.is_plaintext() && broker_opts.bootstrap.is_none() {
        return Err(HarnessError::invalid(format!(
            "security protocol {}: the brokers a run starts listen in plaintext; give the secured cluster with --bootstrap",
            security.protocol
        )));
    }
    // A TLS listener answers the broker crate's plaintext probe with an alert; the run's own
    // clients (the admin first) connect with the settings instead.
    broker_opts.probe_external = !security.protocol.uses_tls();
    if !security.is_plaintext()
        && let Some((name, _, st)) = s
            .resolved_members()
            .into_iter()
            .find(|(_, _, st)| !st.client.unwrap_or(Client::Cohort).in_process())
    {
        return Err(HarnessError::invalid(format!(
            "member {name}: the {} client does not take security settings yet (cohort and librdkafka do)",
            crate::clients::flag_name(st.client.unwrap_or(Client::Cohort))
        )));
    }
    // Members in network namespaces reach the brokers over a bridge, so the brokers listen on
    // its address (they must be this run's Apache Kafka processes).
    let in_netns = s
        .resolved_members()
        .iter()
        .any(|(_, _, st)| st.placement == Some(Placement::Netns));
    let netns = if in_netns {
        let ours = broker_opts.effective_backend() == cohort_testbroker::Backend::Process
            && broker_opts
                .kind
                .unwrap_or(cohort_testbroker::BrokerKind::ApacheKafka)
                == cohort_testbroker::BrokerKind::ApacheKafka;
        if !ours {
            return Err(HarnessError::invalid(
                "members with placement = \"netns\" need the run's own Apache Kafka processes, which listen on the namespaces' bridge (not --bootstrap, --image or --broker tansu)",
            ));
        }
        let bridge = tokio::task::spawn_blocking(Bridge::create)
            .await
            .map_err(HarnessError::task("making the network namespaces' bridge"))??;
        broker_opts.host = Some(bridge.host());
        Some(Arc::new(bridge))
    } else {
        None
    };
    let broker = Arc::new(
        tokio::task::spawn_blocking(move || TestBroker::start_with(broker_opts))
            .await
            .map_err(HarnessError::task("starting the broker"))??,
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
        let results = crate::conformance::run(&bootstrap, &security, &s.requires).await?;
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
                verdict: Verdict::NotRun {
                    reason: format!(
                        "the broker lacks what the scenario requires: {}",
                        missing.join("; ")
                    ),
                },
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
                .map_err(HarnessError::io("writing reports"))?;
            return Ok(report);
        }
    }

    // Topics, group, context.
    let run_id = format!("{seed}-{}", std::process::id());
    let admin = Producer::new(security.client_config(&bootstrap)?);
    let mut topic_names = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let replication = broker.info().nodes.clamp(1, 3) as i16;
    for t in &s.topics {
        let name = format!("{}-{run_id}", t.name);
        admin
            .create_topic(&name, t.partitions, replication)
            .await
            .map_err(HarnessError::client(format!("creating {name}")))?;
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
        None => std::env::current_exe().map_err(HarnessError::io("the cohort binary"))?,
    };
    // The reference clients' programs are built before the clock starts (once per machine;
    // a first build of the Go members takes a while), not while a member is expected to start.
    let mut programs: Vec<Client> = s
        .resolved_members()
        .iter()
        .filter_map(|(_, _, st)| st.client)
        .filter(|c| !c.in_process())
        .collect();
    programs.sort_by_key(|c| crate::clients::flag_name(*c));
    programs.dedup();
    for c in programs {
        tokio::task::spawn_blocking(move || crate::clients::install(c))
            .await
            .map_err(HarnessError::task("building a reference client"))??;
    }
    let journal = Journal::new();
    let start_ts = now_us();
    let ctx = Arc::new(Ctx {
        journal: journal.clone(),
        bootstrap: bootstrap.clone(),
        security,
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
        netns,
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
            Verdict::Passed
        } else {
            Verdict::Failed
        },
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
        .map_err(HarnessError::io("writing reports"))?;
    Ok(report)
}
