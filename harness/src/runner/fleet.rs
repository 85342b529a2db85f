//! The members of a run: starting, stopping, freezing and controlling each kind (cohort in
//! process, librdkafka in process, either as a `cohort member` process).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::HarnessError;
use crate::foreign::RdMember;
use crate::journal::{Entry, Event, now_us};
use crate::member::{CohortMember, MemberOptions, StopHow, journal_sink};
use crate::net::Direction;
use crate::netns::{Bridge, KernelFault};
use crate::process_member::{Client, ControlCommand};
use crate::scenario::{Action, ActionSpec, MemberSettings, Placement};

use super::context::Ctx;

// ---------------------------------------------------------------------------------------------

pub(super) enum Handle {
    Ours(CohortMember),
    Theirs(RdMember),
    Process(ProcessMember),
}

pub(super) struct ProcessMember {
    pub(super) child: tokio::process::Child,
    pub(super) stdin: Option<tokio::process::ChildStdin>,
    pub(super) pid: u32,
    /// Set when the harness ends the process, so its end is not taken for a crash.
    pub(super) stopping: Arc<AtomicBool>,
    /// Ends the member if `cohort run` dies without stopping it (SIGKILL, a panic, a frozen
    /// member that would never see its control pipe close).
    pub(super) watchdog: Option<std::process::Child>,
}

impl Drop for ProcessMember {
    fn drop(&mut self) {
        cohort_testbroker::dismiss_watchdog(self.watchdog.take());
    }
}

pub(super) struct Slot {
    pub(super) settings: MemberSettings,
    pub(super) handle: Option<Handle>,
    pub(super) frozen: bool,
}

pub(super) fn describe(s: &MemberSettings) -> String {
    let client = crate::clients::version(s.client.unwrap_or(Client::Cohort));
    let place = match s.placement.unwrap_or_default() {
        Placement::InProcess if s.client.unwrap_or(Client::Cohort).in_process() => "in-process",
        Placement::Netns => "process in a network namespace",
        _ => "process",
    };
    let strategy = if s.consumer_protocol() {
        format!(
            "consumer protocol ({})",
            s.group_remote_assignor
                .as_deref()
                .unwrap_or("broker's assignor")
        )
    } else {
        s.balancers.clone().unwrap_or_default().join("+")
    };
    let mut d = format!("{client}, {place}, {strategy}");
    if s.static_membership == Some(true) {
        d.push_str(", static");
    }
    if let Some(b) = s.bug {
        d.push_str(&format!(", bug {b:?}"));
    }
    d
}

pub(super) async fn start_member(ctx: &Arc<Ctx>, name: &str) -> Result<(), HarnessError> {
    let mut members = ctx.members.lock().await;
    let slot = members
        .get_mut(name)
        .ok_or(HarnessError::invalid(format!("no member {name}")))?;
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
                        .map_err(HarnessError::task("starting a librdkafka member"))??,
                )
            }
            // The reference clients other than librdkafka are always processes.
            Client::Java
            | Client::KafkaGo
            | Client::Sarama
            | Client::FranzGo
            | Client::Krafka
            | Client::Kacrab => Handle::Process(spawn_process(ctx, name, &opts, client).await?),
        },
        Placement::Process => Handle::Process(spawn_process(ctx, name, &opts, client).await?),
        Placement::Netns => {
            let bridge = ctx.netns.clone().ok_or_else(|| {
                HarnessError::invalid(format!("{name}: no bridge for network namespaces"))
            })?;
            let who = name.to_owned();
            let ns = tokio::task::spawn_blocking(move || bridge.member(&who))
                .await
                .map_err(HarnessError::task("making a network namespace"))??;
            Handle::Process(spawn_process_in(ctx, name, &opts, client, Some(&ns.name)).await?)
        }
    };
    slot.handle = Some(handle);
    slot.frozen = false;
    Ok(())
}

pub(super) async fn spawn_process(
    ctx: &Arc<Ctx>,
    name: &str,
    o: &MemberOptions,
    client: Client,
) -> Result<ProcessMember, HarnessError> {
    spawn_process_in(ctx, name, o, client, None).await
}

/// Starts a `cohort member` process, in the network namespace `netns` if one is given
/// (`ip netns exec` enters it and then becomes the member: the pid is the member's).
async fn spawn_process_in(
    ctx: &Arc<Ctx>,
    name: &str,
    o: &MemberOptions,
    client: Client,
    netns: Option<&str>,
) -> Result<ProcessMember, HarnessError> {
    let ms = |d: Duration| d.as_millis().to_string();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&ctx.cohort_bin);
            c
        }
        None => tokio::process::Command::new(&ctx.cohort_bin),
    };
    cmd.arg("member")
        .args([
            "--bootstrap",
            &o.bootstrap,
            "--group",
            &o.group,
            "--name",
            name,
        ])
        .args(["--processing-us", &o.processing.as_micros().to_string()])
        .args(["--client", crate::clients::flag_name(client)])
        .arg("--control");
    for t in &o.topics {
        cmd.args(["--topic", t]);
    }
    let consumer = o.group_protocol == cohort::GroupProtocol::Consumer;
    if consumer {
        // The broker owns the session, the heartbeat and the assignment (KIP-848).
        cmd.args(["--group-protocol", "consumer"]);
        if let Some(a) = &o.group_remote_assignor {
            cmd.args(["--group-remote-assignor", a]);
        }
    } else {
        cmd.args(["--session-timeout-ms", &ms(o.session_timeout)])
            .args(["--heartbeat-interval-ms", &ms(o.heartbeat_interval)]);
        for b in &o.balancers {
            cmd.args(["--balancer", b]);
        }
    }
    if let Some(i) = &o.instance_id {
        cmd.args(["--instance-id", i]);
    }
    if !o.security.is_plaintext() {
        // The password goes through the environment, never the arguments (`ps` shows those).
        let (args, env) = o.security.member_args();
        cmd.args(args);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
    }
    match client {
        Client::Cohort | Client::Librdkafka => {
            cmd.args(["--rebalance-timeout-ms", &ms(o.rebalance_timeout)])
                .args(["--max-poll-interval-ms", &ms(o.max_poll_interval)])
                .args(["--weight", &o.weight.to_string()])
                .args([
                    "--cooperative-rejoin-delay-ms",
                    &ms(o.cooperative_rejoin_delay),
                ]);
            if o.bug.is_some() {
                cmd.args(["--bug", "commit-after-revoke"]);
            }
            if let Some(seed) = o.jitter_seed {
                cmd.args(["--jitter-seed", &seed.to_string()]);
            }
        }
        // Java's rebalance timeout is max.poll.interval.ms (krafka's and kacrab's too): the
        // member's rebalance timeout, so that a group waits for it as long as for the others.
        Client::Java | Client::Krafka | Client::Kacrab => {
            cmd.args(["--max-poll-interval-ms", &ms(o.rebalance_timeout)]);
        }
        // The Go clients have a rebalance timeout and no poll interval bound.
        Client::KafkaGo | Client::Sarama | Client::FranzGo => {
            cmd.args(["--rebalance-timeout-ms", &ms(o.rebalance_timeout)]);
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ctx.out.join(format!("member-{name}.log")))
        .map_err(HarnessError::io(format!("member-{name}.log")))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(HarnessError::io(format!(
        "starting {}",
        ctx.cohort_bin.display()
    )))?;
    let pid = child.id().unwrap_or(0);
    let stdout = child.stdout.take().ok_or_else(|| {
        HarnessError::io(format!("member {name}"))(std::io::Error::other("no stdout"))
    })?;
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

pub(super) fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub(super) async fn stop_member(ctx: &Arc<Ctx>, name: &str, how: StopHow) {
    let handle = {
        let mut members = ctx.members.lock().await;
        let Some(slot) = members.get_mut(name) else {
            return;
        };
        slot.frozen = false;
        slot.handle.take()
    };
    if let Some(h) = handle {
        h.stop(ctx, name, how).await;
    }
}

/// Sends a control command to a running member.
pub(super) async fn control(ctx: &Arc<Ctx>, name: &str, cmd: ControlCommand) {
    let mut members = ctx.members.lock().await;
    let Some(slot) = members.get_mut(name) else {
        return;
    };
    let client = slot.settings.client.unwrap_or(Client::Cohort);
    if slot.handle.is_none() {
        return;
    }
    // A member in a network namespace takes its network faults in the kernel; what the
    // kernel cannot do (delay without sch_netem, held requests) goes to its dialer.
    let cmd = match (&ctx.netns, slot.settings.placement) {
        (Some(bridge), Some(Placement::Netns)) => {
            match kernel_control(ctx, bridge, name, client, cmd) {
                Some(rest) => rest,
                None => return,
            }
        }
        _ => cmd,
    };
    if let Some(h) = &mut slot.handle
        && let Some(why) = h.control(client, cmd).await
    {
        ctx.note(format!("{name}: {why}"));
    }
}

/// Applies a network fault to a member in a network namespace; `Some` is what is left for the
/// member's own dialer.
fn kernel_control(
    ctx: &Ctx,
    bridge: &Bridge,
    name: &str,
    client: Client,
    cmd: ControlCommand,
) -> Option<ControlCommand> {
    let ns = match bridge.member(name) {
        Ok(ns) => ns,
        Err(e) => {
            ctx.note(format!("{name}: {e}"));
            return None;
        }
    };
    let done = match &cmd {
        ControlCommand::Blackhole => bridge.apply(&ns, KernelFault::Blackhole),
        ControlCommand::Cut { direction } => bridge.apply(
            &ns,
            match direction {
                Direction::Inbound => KernelFault::CutInbound,
                Direction::Outbound => KernelFault::CutOutbound,
            },
        ),
        ControlCommand::Drop => bridge.reset(&ns),
        ControlCommand::Heal => {
            let _ = bridge.delay(&ns, 0);
            bridge.heal(&ns)
        }
        ControlCommand::Latency { ms } => match bridge.delay(&ns, *ms) {
            Ok(()) => Ok(()),
            Err(e) => {
                ctx.note(format!(
                    "{name}: no kernel-level delay here ({e}); latency goes through the member's dialer"
                ));
                return Some(cmd);
            }
        },
        ControlCommand::Hold { .. } | ControlCommand::Processing { .. } => return Some(cmd),
    };
    if done.is_ok() {
        ctx.note(format!(
            "{name}: network faults applied in the kernel (namespace {}, {})",
            ns.name, ns.addr
        ));
    }
    match done {
        // Heal also reaches a cohort member's dialer, where a fallback delay may be in force.
        Ok(()) if matches!(cmd, ControlCommand::Heal) && client == Client::Cohort => Some(cmd),
        Ok(()) => None,
        Err(e) => {
            ctx.note(format!("{name}: a kernel-level fault failed: {e}"));
            None
        }
    }
}

/// Drops `percent` of a member's packets both ways (0 lifts it); only members in network
/// namespaces can take it.
pub(super) async fn set_loss(ctx: &Arc<Ctx>, name: &str, percent: u8) {
    let placement = {
        let members = ctx.members.lock().await;
        let Some(slot) = members.get(name) else {
            return;
        };
        if slot.handle.is_none() {
            return;
        }
        slot.settings.placement
    };
    let (Some(bridge), Some(Placement::Netns)) = (&ctx.netns, placement) else {
        ctx.note(format!(
            "{name}: packet loss needs a member in a network namespace (placement = \"netns\"); not applied"
        ));
        return;
    };
    let r = bridge.member(name).and_then(|ns| {
        if percent == 0 {
            bridge.heal(&ns)
        } else {
            bridge.apply(&ns, KernelFault::Loss { percent })
        }
    });
    if let Err(e) = r {
        ctx.note(format!("{name}: a kernel-level fault failed: {e}"));
    }
}

pub(super) async fn set_frozen(ctx: &Arc<Ctx>, name: &str, frozen: bool) {
    let mut members = ctx.members.lock().await;
    let Some(slot) = members.get_mut(name) else {
        return;
    };
    if slot.frozen == frozen {
        return;
    }
    let Some(h) = &slot.handle else {
        return;
    };
    if let Some(caveat) = h.set_frozen(frozen) {
        ctx.note(format!("{name}: {caveat}"));
    }
    slot.frozen = frozen;
}

impl Handle {
    /// Ends the member: a clean close (LeaveGroup unless static) or a crash.
    async fn stop(self, ctx: &Ctx, name: &str, how: StopHow) {
        match self {
            Handle::Ours(m) => m.stop(how).await,
            Handle::Theirs(m) => {
                if how == StopHow::Crash {
                    ctx.note(format!(
                        "{name}: an in-process librdkafka member cannot crash (its threads keep heartbeating); it was closed instead. Use placement = \"process\" to crash it."
                    ));
                }
                let _ = tokio::task::spawn_blocking(move || m.stop(StopHow::Close)).await;
            }
            Handle::Process(p) => p.stop(ctx, name, how).await,
        }
    }

    /// Applies a control command; `Some` says what could not be applied, and why.
    async fn control(&mut self, client: Client, cmd: ControlCommand) -> Option<String> {
        match self {
            Handle::Ours(m) => {
                crate::process_member::apply(m.controls(), &cmd);
                None
            }
            Handle::Theirs(m) => match cmd {
                ControlCommand::Processing { us } => {
                    m.set_processing(Duration::from_micros(us));
                    None
                }
                other => Some(format!(
                    "an in-process librdkafka member has no pluggable dialer; {other:?} was not applied"
                )),
            },
            Handle::Process(p) => p.control(client, cmd).await,
        }
    }

    /// Freezes or thaws the member; `Some` says how far short of a freeze that fell.
    fn set_frozen(&self, frozen: bool) -> Option<&'static str> {
        match self {
            Handle::Ours(m) => {
                if frozen {
                    m.controls().freeze();
                } else {
                    m.controls().thaw();
                }
                None
            }
            Handle::Process(p) => {
                signal(p.pid, if frozen { "STOP" } else { "CONT" });
                None
            }
            Handle::Theirs(m) => {
                m.set_paused(frozen);
                Some(
                    "an in-process librdkafka member can only stop polling, not freeze (its threads keep heartbeating)",
                )
            }
        }
    }
}

impl ProcessMember {
    async fn stop(mut self, ctx: &Ctx, name: &str, how: StopHow) {
        match how {
            StopHow::Crash => {
                self.stopping.store(true, Ordering::Relaxed);
                signal(self.pid, "CONT");
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                ctx.journal.record(name, Event::Crashed);
            }
            StopHow::Close => {
                signal(self.pid, "CONT");
                signal(self.pid, "TERM");
                if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
                    .await
                    .is_err()
                {
                    self.stopping.store(true, Ordering::Relaxed);
                    let _ = self.child.start_kill();
                    let _ = self.child.wait().await;
                    ctx.journal.record(name, Event::Crashed);
                    ctx.note(format!(
                        "{name}: did not exit within 30 s of SIGTERM; killed"
                    ));
                }
            }
        }
    }

    /// Writes the command on the member's control pipe (one JSON line); `Some` says what
    /// the member could not apply.
    async fn control(&mut self, client: Client, cmd: ControlCommand) -> Option<String> {
        if let Some(stdin) = &mut self.stdin {
            let line = serde_json::to_string(&cmd).unwrap_or_default() + "\n";
            let _ = stdin.write_all(line.as_bytes()).await;
            let _ = stdin.flush().await;
        }
        if client != Client::Cohort && !matches!(cmd, ControlCommand::Processing { .. }) {
            return Some(format!(
                "a {} member has no pluggable dialer; network faults were not applied",
                format!("{client:?}").to_lowercase()
            ));
        }
        None
    }
}

pub(super) async fn running(ctx: &Arc<Ctx>) -> Vec<String> {
    let members = ctx.members.lock().await;
    members
        .iter()
        .filter(|(_, s)| s.handle.is_some())
        .map(|(n, _)| n.clone())
        .collect()
}

pub(super) async fn targets(ctx: &Arc<Ctx>, a: &ActionSpec) -> Vec<String> {
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
pub(super) fn leader(ctx: &Ctx) -> Option<String> {
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
