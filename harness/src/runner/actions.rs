//! The timeline: playing actions at their times or triggers, the faults they inject (on
//! members, their network, the broker or its nodes) and waiting for a stable group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cohort_testbroker::TestBroker;
use tokio::time::Instant;

use crate::checker::Stability;
use crate::error::HarnessError;
use crate::journal::Event;
use crate::member::StopHow;
use crate::net::Direction;
use crate::process_member::ControlCommand;
use crate::scenario::{Action, ActionSpec, ProtocolSetting, Trigger, limits};

use super::context::Ctx;
use super::fleet::{control, set_frozen, set_loss, start_member, stop_member, targets};

/// Whether the group is stable now (see [`Stability`]).
pub(super) fn is_stable(ctx: &Ctx) -> bool {
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
pub(super) async fn wait_stable(ctx: &Arc<Ctx>, limit: Duration) -> bool {
    holds_for_a_second(limit, Duration::from_millis(100), || {
        std::future::ready(ctx.active_faults.load(Ordering::SeqCst) == 0 && is_stable(ctx))
    })
    .await
}

/// Polls `quiet` every `every` until it has held for a second; false when `limit` passes
/// first. A second is also what the convergence check asks of a stable span.
pub(super) async fn holds_for_a_second<F: std::future::Future<Output = bool>>(
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
pub(super) async fn grow(ctx: &Arc<Ctx>, topic: &str, n: i32) -> Result<(), HarnessError> {
    match ctx.admin.create_partitions(topic, n).await {
        Ok(()) => {}
        Err(cohort::Error::UnsupportedVersion { .. }) => {
            ctx.note(format!(
                "add-partitions on {topic}: not run, the broker has no CreatePartitions (see `cohort conformance`, check create-partitions)"
            ));
            return Ok(());
        }
        Err(e) => {
            return Err(HarnessError::invalid(format!(
                "CreatePartitions {topic}: {e}"
            )));
        }
    }
    ctx.counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(topic.to_owned(), n);
    ctx.chaos("add-partitions", topic, &n.to_string());
    Ok(())
}

/// The nodes a broker action is done to.
pub(super) enum Nodes {
    /// The whole broker (Tansu, a container, or `all`).
    Whole,
    /// These nodes of an Apache Kafka process cluster, with a label for the journal.
    Some(Vec<i32>, String),
}

/// Resolves a broker action's `target` (see `ActionSpec::target`).
pub(super) async fn nodes_of(
    ctx: &Arc<Ctx>,
    b: &TestBroker,
    target: Option<&str>,
) -> Result<Nodes, HarnessError> {
    let ids = b.node_ids();
    let target = target.unwrap_or("all");
    if target == "all" {
        return Ok(Nodes::Whole);
    }
    if ids.is_empty() {
        return Err(HarnessError::invalid(format!(
            "target {target:?} names a node, and {} has none this run controls",
            b.info()
        )));
    }
    let (id, label) = match target {
        "coordinator" => {
            // A fresh lookup: the coordinator may have moved since the admin client last asked.
            let cluster = ctx.admin.cluster();
            cluster.forget_coordinator(&ctx.group);
            let id = cluster
                .find_coordinator(&ctx.group)
                .await
                .map_err(HarnessError::client("finding the group's coordinator"))?;
            (id, format!("node {id} (coordinator)"))
        }
        "leader" => {
            let topic = ctx
                .topics()
                .into_iter()
                .next()
                .ok_or(HarnessError::invalid("no topic"))?;
            let cluster = ctx.admin.cluster();
            cluster
                .refresh_metadata(Some(std::slice::from_ref(&topic)))
                .await
                .map_err(HarnessError::client(format!("metadata of {topic}")))?;
            let id = cluster
                .leader(&topic, 0)
                .ok_or(HarnessError::invalid(format!("{topic}-0 has no leader")))?;
            (id, format!("node {id} (leader of {topic}-0)"))
        }
        n => {
            let id: i32 = n
                .parse()
                .map_err(|_| HarnessError::invalid(format!("bad node {n:?}")))?;
            (id, format!("node {id}"))
        }
    };
    if !ids.contains(&id) {
        return Err(HarnessError::invalid(format!(
            "no node {id} (nodes: {ids:?})"
        )));
    }
    Ok(Nodes::Some(vec![id], label))
}

/// Runs a blocking broker operation off the runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, cohort_testbroker::BrokerError> + Send + 'static,
) -> Result<T, HarnessError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(HarnessError::task("a broker operation"))??)
}

pub(super) async fn restart_broker(
    ctx: &Arc<Ctx>,
    target: Option<&str>,
) -> Result<(), HarnessError> {
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
                .map_err(HarnessError::client(format!("recreating {t}")))?;
        }
    }
    ctx.producer_paused.store(false, Ordering::SeqCst);
    Ok(())
}

/// `broker-kill` and `broker-stop`: the nodes go down, and come back after `for` if given, else
/// at a `broker-start` (or when the timeline ends).
pub(super) async fn take_down(
    ctx: &Arc<Ctx>,
    a: &ActionSpec,
    kill: bool,
) -> Result<(), HarnessError> {
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
            return Err(HarnessError::invalid(format!(
                "{action} needs Apache Kafka nodes this run controls; {} has none",
                b.info()
            )));
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
pub(super) async fn bring_up(ctx: &Arc<Ctx>, only: Option<&[i32]>) -> Result<(), HarnessError> {
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
pub(super) fn lasting<F, G>(
    ctx: &Arc<Ctx>,
    action: &'static str,
    target: String,
    d: Duration,
    on: F,
    off: G,
) where
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

pub(super) async fn execute(ctx: &Arc<Ctx>, a: &ActionSpec) -> Result<(), HarnessError> {
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
                    HarnessError::invalid(format!(
                        "broker-start target {t:?}: expected all or a node id"
                    ))
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
                .ok_or(HarnessError::invalid(format!("no topic {scenario_topic}")))?;
            let target = match a.grow_by {
                Some(by) => {
                    let now = ctx.counts().get(&topic).copied().unwrap_or(0);
                    now.checked_add(by)
                        .filter(|n| u64::try_from(*n).is_ok_and(|n| n <= limits::PARTITIONS))
                        .ok_or(HarnessError::invalid(format!(
                            "{topic}: {now} + {by} partitions is more than {}",
                            limits::PARTITIONS
                        )))?
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

pub(super) async fn member_action(
    ctx: &Arc<Ctx>,
    a: &ActionSpec,
    name: &str,
    d: Duration,
) -> Result<(), HarnessError> {
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
            if a.balancers.is_some() || a.group_protocol.is_some() {
                let mut m = ctx.members.lock().await;
                if let Some(s) = m.get_mut(name) {
                    if let Some(b) = &a.balancers {
                        s.settings.balancers = Some(b.clone());
                    }
                    if let Some(p) = a.group_protocol {
                        s.settings.group_protocol = Some(p);
                        if p == ProtocolSetting::Consumer {
                            // The broker owns these with KIP-848.
                            s.settings.balancers = None;
                            s.settings.session_timeout = None;
                            s.settings.heartbeat_interval = None;
                        }
                    }
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
        Action::Loss => {
            let percent = a.loss.unwrap_or(0);
            let (c1, c2, n1, n2) = (ctx.clone(), ctx.clone(), n.clone(), n.clone());
            lasting(
                ctx,
                "loss",
                n,
                d,
                async move { set_loss(&c1, &n1, percent).await },
                async move { set_loss(&c2, &n2, 0).await },
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
pub(super) fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

pub(super) async fn timeline(
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
pub(super) enum Rounds {
    Once,
    UntilTheEnd,
}

/// Plays the actions once, `at` counted from `round_start`; false when the run's end came
/// first.
pub(super) async fn play(
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
