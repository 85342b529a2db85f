//! Plans compared with the Java client's own assignors (`RangeAssignor`, `RoundRobinAssignor`,
//! `StickyAssignor`, `CooperativeStickyAssignor` of the pinned kafka-clients release), run by
//! `harness/clients/java/src/cohort/JavaAssign.java` on the very JoinGroup metadata cohort's
//! leader decodes, as `ConsumerCoordinator#onLeaderElected` would.
//!
//! What must hold: range and round-robin plans are identical to Java's (the member order, instance
//! ids and KIP-881 rack matching included). Sticky and cooperative-sticky plans may differ, but
//! cohort's must be valid (every subscribed partition given once, only to a subscriber, and for
//! cooperative-sticky no partition handed straight from its owner to another member, KIP-429),
//! as balanced as Java's, as rack-local at equal balance (KIP-881), and move no more partitions
//! than Java's from the same previous ownership, judged once the group is stable (after the
//! cooperative follow-up rounds, simulated the same way for both; cohort's within two).
//!
//! Balance is judged as Java's own assignor tests judge it (`AbstractStickyAssignorTest`'s
//! `verifyValidityAndBalance` and `StickyAssignor`'s balance score): a plan is balanced when no
//! member holds two or more partitions more than another member that subscribes to one of them,
//! and the balance score is the sum over all pairs of members of their difference in partition
//! count. Cohort's plan must be balanced whenever Java's is, with a score no higher than Java's.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use cohort_balancers::metrics;
use cohort_balancers::{Plan, TopicInfo};
use cohort_protocol::StrBytes;
use serde_json::{Value, json};

use crate::assign::{self, MemberSpec, Metadata, PlanMap};
use crate::clients::{self, Program};
use crate::error::HarnessError;

/// The Java assignors this tool can run: cohort's balancer names, which are Kafka's protocol
/// names.
pub const JAVA_ASSIGNORS: [&str; 4] = ["range", "roundrobin", "sticky", "cooperative-sticky"];

/// Rounds simulated for a cooperative balancer before giving up on the group becoming stable
/// (as `cohort_balancers::metrics::evaluate` does).
const MAX_ROUNDS: u32 = 8;
/// How much of Java's stderr an error message quotes.
const STDERR_TAIL: usize = 16 * 1024;

/// One group for Java's leader step.
#[derive(Debug, Clone)]
pub struct JavaGroup {
    /// Assignor (one of [`JAVA_ASSIGNORS`]).
    pub assignor: String,
    /// Timed runs (the fastest is reported); 1 for a comparison.
    pub repeat: u32,
    /// Topics with their partitions' replica racks.
    pub topics: Vec<TopicInfo>,
    /// Every member's JoinGroup metadata.
    pub members: Vec<Metadata>,
}

/// Java's answer for one group.
#[derive(Debug, Clone)]
pub struct JavaPlan {
    /// The whole leader step (decode every subscription, assign, encode every assignment), ns.
    pub step_ns: u64,
    /// The assignor alone, ns.
    pub assign_ns: u64,
    /// The plan.
    pub assignment: PlanMap,
}

/// The Java assignors, built against the pinned release's jars on first use.
#[derive(Debug, Clone)]
pub struct JavaAssignors {
    program: Program,
}

impl JavaAssignors {
    /// Builds `JavaAssign` when it is not built yet (idempotent).
    pub fn install() -> Result<Self, HarnessError> {
        Ok(Self {
            program: clients::java_program("cohort.JavaAssign")?,
        })
    }

    /// Runs every group through Java's leader step in one JVM; one answer per group, `Err` with
    /// Java's exception when the assignor refused the group.
    pub fn plan(
        &self,
        groups: &[JavaGroup],
    ) -> Result<Vec<Result<JavaPlan, String>>, HarnessError> {
        let input = groups
            .iter()
            .map(write_group)
            .collect::<Result<String, _>>()?;
        let mut child = Command::new(&self.program.program)
            .args(&self.program.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(HarnessError::io("starting the Java assignors"))?;
        // Written from a thread: Java answers while it reads, and both pipes are bounded.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        // Drained from a thread too: Java's logging goes to stderr, and a full pipe would stop
        // it mid-batch. The tail is kept for the error message.
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let drainer = std::thread::spawn(move || {
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            tail
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let answers = read_answers(BufReader::new(stdout), groups.len());
        let wrote = writer
            .join()
            .map_err(|_| HarnessError::invalid("the thread feeding Java panicked"))?;
        let status = child
            .wait()
            .map_err(HarnessError::io("waiting for the Java assignors"))?;
        let stderr = drainer.join().unwrap_or_default();
        let answers = match (answers, wrote, status.success()) {
            (Ok(a), Ok(()), true) => a,
            (answers, wrote, _) => {
                return Err(HarnessError::invalid(format!(
                    "the Java assignors failed ({}; {}{}): {}",
                    status,
                    answers.err().map(|e| e.to_string()).unwrap_or_default(),
                    wrote.err().map(|e| e.to_string()).unwrap_or_default(),
                    String::from_utf8_lossy(&stderr).trim()
                )));
            }
        };
        Ok(answers)
    }
}

fn b64(s: &str) -> Result<String, HarnessError> {
    if s.is_empty() {
        return Err(HarnessError::invalid(
            "an empty topic, rack or member id cannot be given to Java's assignors",
        ));
    }
    Ok(B64.encode(s))
}

fn write_group(g: &JavaGroup) -> Result<String, HarnessError> {
    if !JAVA_ASSIGNORS.contains(&g.assignor.as_str()) {
        return Err(HarnessError::invalid(format!(
            "no Java assignor for {:?} (Java has {})",
            g.assignor,
            JAVA_ASSIGNORS.join(", ")
        )));
    }
    let mut s = format!("case {} {}\n", g.assignor, g.repeat.max(1));
    for t in &g.topics {
        s += &format!("topic {} {}", b64(&t.name)?, t.partitions);
        for racks in &t.replica_racks {
            let racks = racks
                .iter()
                .map(|r| b64(r))
                .collect::<Result<Vec<_>, _>>()?;
            s.push(' ');
            s += &if racks.is_empty() {
                "-".to_owned()
            } else {
                racks.join(",")
            };
        }
        s.push('\n');
    }
    for (id, instance, metadata) in &g.members {
        let instance = match instance {
            Some(i) => b64(i)?,
            None => "-".to_owned(),
        };
        s += &format!("member {} {instance} {}\n", b64(id)?, B64.encode(metadata));
    }
    s += "run\n";
    Ok(s)
}

/// One answer being read: Java's timings and each member's encoded assignment, or its error.
type Pending = Result<(u64, u64, Vec<(String, Bytes)>), String>;

fn read_answers(
    stdout: impl BufRead,
    expected: usize,
) -> Result<Vec<Result<JavaPlan, String>>, HarnessError> {
    let bad = |line: &str| HarnessError::invalid(format!("unexpected answer from Java: {line:?}"));
    let mut answers = Vec::with_capacity(expected);
    let mut current: Option<Pending> = None;
    for line in stdout.lines() {
        let line = line.map_err(HarnessError::io("reading the Java assignors"))?;
        let mut t = line.split(' ');
        match (t.next(), &mut current) {
            (Some("plan"), None) => {
                let mut n = || {
                    t.next()
                        .and_then(|x| x.parse().ok())
                        .ok_or_else(|| bad(&line))
                };
                current = Some(Ok((n()?, n()?, Vec::new())));
            }
            (Some("error"), None) => current = Some(Err(line["error ".len()..].to_owned())),
            (Some("assign"), Some(Ok((_, _, members)))) => {
                let (Some(id), Some(a)) = (t.next(), t.next()) else {
                    return Err(bad(&line));
                };
                let id = B64.decode(id).map_err(|_| bad(&line))?;
                let a = B64.decode(a).map_err(|_| bad(&line))?;
                members.push((String::from_utf8_lossy(&id).into_owned(), Bytes::from(a)));
            }
            (Some("done"), Some(_)) => {
                let answer = match current.take().expect("matched Some") {
                    Ok((step_ns, assign_ns, members)) => Ok(JavaPlan {
                        step_ns,
                        assign_ns,
                        assignment: assign::decode_plan(
                            members.iter().map(|(id, b)| (id.as_str(), b)),
                        )?,
                    }),
                    Err(e) => Err(e),
                };
                answers.push(answer);
            }
            _ => return Err(bad(&line)),
        }
    }
    if answers.len() != expected {
        return Err(HarnessError::invalid(format!(
            "Java answered {} of {expected} groups",
            answers.len()
        )));
    }
    Ok(answers)
}

/// A group to compare: a balancer, the members as `cohort assign` describes them, the topics.
#[derive(Debug, Clone)]
pub struct Case {
    /// Balancer (one of [`JAVA_ASSIGNORS`]).
    pub balancer: String,
    /// Members with what they own.
    pub members: Vec<MemberSpec>,
    /// Topics.
    pub topics: Vec<TopicInfo>,
}

impl Case {
    /// The case of a `cohort assign` description.
    pub fn from_input(input: &assign::Input, balancer: Option<&str>) -> Result<Self, HarnessError> {
        let balancer = balancer
            .map(str::to_owned)
            .or(input.balancer.clone())
            .ok_or(HarnessError::invalid(
                "no balancer: give \"balancer\" in the input or --balancer",
            ))?;
        assign::check_size(&input.topics, &input.members)?;
        Ok(Self {
            balancer,
            members: input.members.clone(),
            topics: assign::topic_infos(&input.topics)?,
        })
    }
}

/// One side's plan and measures.
#[derive(Debug, Clone)]
pub struct Side {
    /// The first rebalance's plan.
    pub first: PlanMap,
    /// The plan once the group is stable.
    pub stable: PlanMap,
    /// The measures of the stable plan against the previous ownership.
    pub metrics: metrics::Metrics,
    /// Rebalance rounds until stable.
    pub rounds: u32,
    /// Whether the stable plan is balanced as Java's tests define it.
    pub balanced: bool,
    /// Sum over pairs of members of the difference in partition count (lower is better).
    pub balance_score: u64,
    /// Partitions held by a member whose rack has no replica of them, in groups where Java's
    /// assignors use racks (KIP-881; lower is better).
    pub rack_mismatches: u64,
    /// The first leader step, µs.
    pub step_us: f64,
}

impl Side {
    fn to_json(&self) -> Value {
        let m = &self.metrics;
        json!({
            "assignment": self.first,
            "stable_assignment": self.stable,
            "metrics": {
                "spread": m.spread,
                "moved": m.moved,
                "unassigned": m.unassigned,
                "rounds": self.rounds,
                "balanced": self.balanced,
                "balance_score": self.balance_score,
                "rack_mismatches": self.rack_mismatches,
                "step_us": self.step_us,
            },
        })
    }
}

/// Cohort's plan beside Java's for one group.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The balancer.
    pub balancer: String,
    /// Cohort's side.
    pub cohort: Side,
    /// Java's side (`Err`: Java refused the group).
    pub java: Result<Side, String>,
    /// What does not hold, apart from moves; empty when cohort's plan is valid, safe and at
    /// least as balanced as Java's (identical, for range and round-robin).
    pub problems: Vec<String>,
    /// Partitions moved by cohort and by Java, when cohort moves more (sticky family).
    pub moves_more: Option<(u64, u64)>,
    /// What is wrong with Java's own plan, when it is invalid (then nothing is compared).
    pub java_defect: Option<String>,
}

impl Comparison {
    /// Whether everything required holds, moves included.
    pub fn agrees(&self) -> bool {
        self.problems.is_empty() && self.moves_more.is_none()
    }

    /// Cohort moves more partitions than Java only to reach a strictly better balance (a lower
    /// balance score): Java stops at its pairwise rule, cohort at the most balanced split.
    pub fn trades_moves_for_balance(&self) -> bool {
        self.moves_more.is_some()
            && self
                .java
                .as_ref()
                .is_ok_and(|j| self.cohort.balance_score < j.balance_score)
    }

    /// Cohort moves more partitions than Java only to hold fewer of them off their replicas'
    /// racks, as balanced as Java: KIP-881 puts rack locality before stickiness (Java's
    /// `StickyAssignor` drops every owned partition on the wrong rack, then places greedily, and
    /// can end with more mismatches than the fewest possible).
    pub fn trades_moves_for_locality(&self) -> bool {
        self.moves_more.is_some()
            && self.java.as_ref().is_ok_and(|j| {
                self.cohort.balance_score <= j.balance_score
                    && self.cohort.rack_mismatches < j.rack_mismatches
            })
    }

    /// `{"balancer", "cohort", "java", "agrees", "problems", "java_defect"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "balancer": self.balancer,
            "cohort": self.cohort.to_json(),
            "java": match &self.java {
                Ok(s) => s.to_json(),
                Err(e) => json!({ "error": e }),
            },
            "agrees": self.agrees(),
            "problems": self.problems.iter().cloned().chain(self.moves_more.map(|(ours, theirs)| {
                format!("moves more than Java: {ours} partitions against {theirs}")
            })).collect::<Vec<_>>(),
            "trades_moves_for_balance": self.trades_moves_for_balance(),
            "trades_moves_for_locality": self.trades_moves_for_locality(),
            "java_defect": self.java_defect,
        })
    }
}

/// Whether a plan leaves subscribed, existing partitions unassigned: a cooperative round that
/// withheld partitions changing owner.
fn withheld(plan: &PlanMap, members: &[MemberSpec], topics: &[TopicInfo]) -> bool {
    let subscribed: u64 = topics
        .iter()
        .filter(|t| {
            members
                .iter()
                .any(|m| m.topics.contains(&t.name.to_string()))
        })
        .map(|t| u64::from(t.partitions))
        .sum();
    let assigned: u64 = plan.values().flatten().map(|(_, ps)| ps.len() as u64).sum();
    assigned < subscribed
}

/// The members of the next cooperative round: each owns what `plan` gave it, at `generation`.
fn next_round(members: &[MemberSpec], plan: &PlanMap, generation: i32) -> Vec<MemberSpec> {
    members
        .iter()
        .map(|m| MemberSpec {
            owned: plan.get(&m.id).cloned().unwrap_or_default(),
            generation,
            ..m.clone()
        })
        .collect()
}

/// Partitions a plan hands straight from their owner (the one claim of the highest generation)
/// to another member, which KIP-429 forbids within one cooperative round.
fn transfers(plan: &PlanMap, members: &[MemberSpec]) -> Vec<String> {
    let mut owner: BTreeMap<(&str, i32), (i32, Option<&str>)> = BTreeMap::new();
    for m in members {
        for (t, ps) in &m.owned {
            for &p in ps {
                let e = owner.entry((t, p)).or_insert((i32::MIN, None));
                if m.generation > e.0 {
                    *e = (m.generation, Some(&m.id));
                } else if m.generation == e.0 {
                    // Claimed twice in one generation: nobody owns it for sure.
                    e.1 = None;
                }
            }
        }
    }
    let mut out = Vec::new();
    for (id, topics) in plan {
        for (t, ps) in topics {
            for &p in ps {
                if let Some((_, Some(o))) = owner.get(&(t.as_str(), p))
                    && *o != id
                {
                    out.push(format!("{t}-{p} goes from {o} to {id} in one round"));
                }
            }
        }
    }
    out
}

/// Partition count of every member (those missing from the plan hold none).
fn loads(plan: &PlanMap, members: &[MemberSpec]) -> Vec<u64> {
    members
        .iter()
        .map(|m| {
            plan.get(&m.id)
                .map_or(0, |ts| ts.values().map(|ps| ps.len() as u64).sum())
        })
        .collect()
}

/// Sum over all pairs of members of their difference in partition count (`StickyAssignor`'s
/// balance score): with the counts sorted, the i-th of n is subtracted by the n-1-i after it and
/// subtracts the i before it.
fn balance_score(plan: &PlanMap, members: &[MemberSpec]) -> u64 {
    let mut l = loads(plan, members);
    l.sort_unstable();
    let n = l.len() as i128;
    let score: i128 = l
        .iter()
        .enumerate()
        .map(|(i, &x)| i128::from(x) * (2 * i as i128 - (n - 1)))
        .sum();
    score as u64
}

/// Partitions a member holds although its rack has none of their replicas (Java
/// `RackInfo.racksMismatch`), counted only where Java's assignors use racks at all: some member
/// rack is a replica rack, and not every partition has the same replica racks.
fn rack_mismatches(plan: &PlanMap, members: &[MemberSpec], topics: &[TopicInfo]) -> u64 {
    let racks_of = |t: &str, p: i32| -> &[StrBytes] {
        topics
            .iter()
            .find(|x| x.name.as_str() == t)
            .and_then(|x| x.replica_racks.get(p as usize))
            .map_or(&[], Vec::as_slice)
    };
    let member_racks: Vec<&str> = members.iter().filter_map(|m| m.rack.as_deref()).collect();
    let all: Vec<&[StrBytes]> = topics
        .iter()
        .flat_map(|t| (0..t.partitions).map(|p| racks_of(t.name.as_str(), p as i32)))
        .collect();
    let any_match = all
        .iter()
        .any(|rs| rs.iter().any(|r| member_racks.contains(&r.as_str())));
    if !any_match || all.iter().all(|rs| *rs == all[0]) {
        return 0;
    }
    let mut n = 0;
    for m in members {
        let (Some(rack), Some(held)) = (m.rack.as_deref(), plan.get(&m.id)) else {
            continue;
        };
        for (t, ps) in held {
            n += ps
                .iter()
                .filter(|&&p| !racks_of(t, p).iter().any(|r| r.as_str() == rack))
                .count() as u64;
        }
    }
    n
}

/// Whether no member holds two or more partitions more than a member that subscribes to one of
/// its topics (Java's `verifyValidityAndBalance`): nothing could move to even the load out.
fn is_balanced(plan: &PlanMap, members: &[MemberSpec]) -> bool {
    let l = loads(plan, members);
    let empty = BTreeMap::new();
    for (i, small) in members.iter().enumerate() {
        for (j, big) in members.iter().enumerate() {
            if l[j] < l[i] + 2 {
                continue;
            }
            let held = plan.get(&big.id).unwrap_or(&empty);
            if held.keys().any(|t| small.topics.contains(t)) {
                return false;
            }
        }
    }
    true
}

/// Compares cohort's plans with Java's for many groups, with one JVM per round.
pub fn compare(java: &JavaAssignors, cases: &[Case]) -> Result<Vec<Comparison>, HarnessError> {
    let mut planned = Vec::with_capacity(cases.len());
    for c in cases {
        planned.push(assign::plan(&c.balancer, &c.members, &c.topics)?);
    }
    let cooperative = |c: &Case| c.balancer == "cooperative-sticky";
    // Java's rounds: every group once, then the cooperative ones that withheld partitions again,
    // each member owning what the last round gave it, at the next generation.
    let mut first: Vec<Option<Result<JavaPlan, String>>> = vec![None; cases.len()];
    let mut stable: Vec<Option<(PlanMap, u32)>> = vec![None; cases.len()];
    let mut pending: Vec<(usize, Vec<MemberSpec>)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.members.clone()))
        .collect();
    for round in 1..=MAX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let groups = pending
            .iter()
            .map(|(i, members)| {
                Ok(JavaGroup {
                    assignor: cases[*i].balancer.clone(),
                    repeat: 1,
                    topics: cases[*i].topics.clone(),
                    members: assign::join_metadata(&cases[*i].balancer, members)?,
                })
            })
            .collect::<Result<Vec<_>, HarnessError>>()?;
        let answers = java.plan(&groups)?;
        let mut next = Vec::new();
        for ((i, members), answer) in pending.into_iter().zip(answers) {
            let plan = match &answer {
                Ok(p) => p.assignment.clone(),
                Err(_) => {
                    first[i].get_or_insert(answer);
                    continue;
                }
            };
            first[i].get_or_insert(answer);
            let c = &cases[i];
            if cooperative(c)
                && round < MAX_ROUNDS
                && withheld(&plan, members.as_slice(), &c.topics)
            {
                let generation = c
                    .members
                    .iter()
                    .map(|m| m.generation)
                    .max()
                    .unwrap_or(-1)
                    .max(0)
                    .saturating_add(round as i32);
                next.push((i, next_round(&members, &plan, generation)));
            } else {
                stable[i] = Some((plan, round));
            }
        }
        pending = next;
    }

    let mut out = Vec::with_capacity(cases.len());
    for (i, (c, p)) in cases.iter().zip(planned).enumerate() {
        let previous = assign::previous(&c.members);
        let cohort = Side {
            rounds: p.metrics.rounds.unwrap_or(1),
            balanced: is_balanced(&p.stable, &c.members),
            balance_score: balance_score(&p.stable, &c.members),
            rack_mismatches: rack_mismatches(&p.stable, &c.members, &c.topics),
            first: p.first,
            stable: p.stable,
            metrics: p.metrics,
            step_us: p.elapsed_us as f64,
        };
        let mut problems = Vec::new();
        let judge = |plan: &PlanMap| {
            Plan::from_map(&p.members, &c.topics, plan)
                .and_then(|plan| metrics::measure(&plan, &p.members, &c.topics, &previous, None))
        };
        if let Err(e) = judge(&cohort.stable) {
            problems.push(format!("cohort's plan: {e}"));
        }
        if cohort.metrics.unassigned > 0 {
            problems.push(format!(
                "cohort leaves {} partitions unassigned",
                cohort.metrics.unassigned
            ));
        }
        if cooperative(c) && cohort.rounds > 2 {
            // KIP-429: the partitions a round withholds are assigned in the next, which
            // moves nothing more.
            problems.push(format!("cohort takes {} rounds to settle", cohort.rounds));
        }
        if cooperative(c) {
            problems.extend(
                transfers(&cohort.first, &c.members)
                    .into_iter()
                    .map(|t| format!("cohort: {t}")),
            );
        }
        let java = match first[i].take() {
            Some(Ok(j)) => {
                let (stable_plan, rounds) = stable[i]
                    .take()
                    .unwrap_or_else(|| (j.assignment.clone(), MAX_ROUNDS));
                match judge(&stable_plan) {
                    Ok(metrics) => Ok(Side {
                        balanced: is_balanced(&stable_plan, &c.members),
                        balance_score: balance_score(&stable_plan, &c.members),
                        rack_mismatches: rack_mismatches(&stable_plan, &c.members, &c.topics),
                        first: j.assignment,
                        stable: stable_plan,
                        metrics,
                        rounds,
                        step_us: j.step_ns as f64 / 1_000.0,
                    }),
                    Err(e) => Err(format!("Java's plan is invalid: {e}")),
                }
            }
            Some(Err(e)) => Err(e),
            None => Err("Java gave no answer".to_owned()),
        };
        let mut java_defect = None;
        let mut moves_more = None;
        match &java {
            Err(e) if e.starts_with("Java's plan is invalid") => java_defect = Some(e.clone()),
            Err(e) => problems.push(format!("no Java plan to compare with: {e}")),
            Ok(j) => {
                problems.extend(judge_against(c, &cohort, j));
                let sticky_family = !matches!(c.balancer.as_str(), "range" | "roundrobin");
                if sticky_family && cohort.metrics.moved > j.metrics.moved {
                    moves_more = Some((cohort.metrics.moved, j.metrics.moved));
                }
            }
        }
        out.push(Comparison {
            balancer: c.balancer.clone(),
            cohort,
            java,
            problems,
            moves_more,
            java_defect,
        });
    }
    Ok(out)
}

/// What cohort's side must satisfy against Java's.
fn judge_against(c: &Case, cohort: &Side, java: &Side) -> Vec<String> {
    let mut problems = Vec::new();
    match c.balancer.as_str() {
        "range" | "roundrobin" => {
            let ids = cohort.first.keys().chain(java.first.keys());
            for id in ids.collect::<std::collections::BTreeSet<_>>() {
                let (ours, theirs) = (cohort.first.get(id), java.first.get(id));
                let empty = BTreeMap::new();
                if ours.unwrap_or(&empty) != theirs.unwrap_or(&empty) {
                    problems.push(format!(
                        "{id}: cohort gives {}, Java {}",
                        json!(ours),
                        json!(theirs)
                    ));
                }
            }
        }
        _ => {
            if java.balanced && !cohort.balanced {
                problems.push("unbalanced where Java's plan is balanced".to_owned());
            }
            if cohort.balance_score > java.balance_score {
                problems.push(format!(
                    "less balanced than Java: balance score {} against {}",
                    cohort.balance_score, java.balance_score
                ));
            }
            // KIP-881: locality comes after balance, so only an equally balanced plan must
            // match Java's locality.
            if cohort.balance_score == java.balance_score
                && cohort.rack_mismatches > java.rack_mismatches
            {
                problems.push(format!(
                    "more partitions off their racks than Java: {} against {}",
                    cohort.rack_mismatches, java.rack_mismatches
                ));
            }
        }
    }
    problems
}

/// `cohort assign --java`: cohort's plan and Java's for one description, and whether they agree.
pub fn run(input: &str, balancer: Option<&str>) -> Result<Value, HarnessError> {
    let input: assign::Input = serde_json::from_str(input).map_err(HarnessError::parse("input"))?;
    let case = Case::from_input(&input, balancer)?;
    let java = JavaAssignors::install()?;
    let c = compare(&java, &[case])?;
    Ok(c.into_iter()
        .next()
        .map(|c| c.to_json())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, generation: i32, owned: &[(&str, &[i32])]) -> MemberSpec {
        MemberSpec {
            id: id.into(),
            instance_id: None,
            topics: vec!["t".into()],
            rack: None,
            owned: owned
                .iter()
                .map(|(t, ps)| ((*t).to_owned(), ps.to_vec()))
                .collect(),
            generation,
            weight: 1,
        }
    }

    fn plan(entries: &[(&str, &[i32])]) -> PlanMap {
        entries
            .iter()
            .map(|(id, ps)| {
                (
                    (*id).to_owned(),
                    BTreeMap::from([("t".to_owned(), ps.to_vec())]),
                )
            })
            .collect()
    }

    #[test]
    fn transfers_follow_the_highest_generation_and_skip_ties() {
        let members = [
            member("a", 3, &[("t", &[0, 1])]),
            member("b", 2, &[("t", &[1, 2])]),
            member("c", 3, &[("t", &[2, 3])]),
            member("d", 3, &[("t", &[3])]),
        ];
        // t-0 is a's: giving it to b is a transfer; t-1 is a's (generation 3 beats b's 2);
        // t-3 is claimed by c and d in generation 3, so nobody surely owns it.
        let p = plan(&[("a", &[1]), ("b", &[0, 3]), ("c", &[2])]);
        assert_eq!(
            transfers(&p, &members),
            vec!["t-0 goes from a to b in one round"]
        );
    }

    #[test]
    fn balance_is_judged_as_java_judges_it() {
        let mut members = vec![
            member("a", -1, &[]),
            member("b", -1, &[]),
            member("c", -1, &[]),
        ];
        // 3, 4, 3 and 3, 3, 4: both balanced, both score 2.
        let p = plan(&[("a", &[0, 1, 2]), ("b", &[3, 4, 5, 6]), ("c", &[7, 8, 9])]);
        assert!(is_balanced(&p, &members));
        assert_eq!(balance_score(&p, &members), 2);
        // 5, 2, 3: a could give c... b one partition: unbalanced, score 3 + 2 + 1.
        let p = plan(&[("a", &[0, 1, 2, 3, 4]), ("b", &[5, 6]), ("c", &[7, 8, 9])]);
        assert!(!is_balanced(&p, &members));
        assert_eq!(balance_score(&p, &members), 6);
        // 4, 2, 3 is balanced when b cannot take any of a's topics.
        members[1].topics = vec!["u".into()];
        let mut p = plan(&[("a", &[0, 1, 2, 3]), ("c", &[7, 8, 9])]);
        p.insert("b".into(), BTreeMap::from([("u".to_owned(), vec![0, 1])]));
        assert!(is_balanced(&p, &members));
        // A member missing from the plan holds nothing.
        let p = plan(&[("a", &[0, 1])]);
        assert!(!is_balanced(
            &p,
            &members[..1]
                .iter()
                .cloned()
                .chain([member("z", -1, &[])])
                .collect::<Vec<_>>()
        ));
    }

    #[test]
    fn withheld_counts_only_subscribed_topics() {
        let members = [member("a", -1, &[])];
        let topics = [TopicInfo::new("t", 2), TopicInfo::new("other", 5)];
        assert!(withheld(&plan(&[("a", &[0])]), &members, &topics));
        assert!(!withheld(&plan(&[("a", &[0, 1])]), &members, &topics));
    }

    #[test]
    fn answers_are_read_and_checked() {
        let a = cohort_protocol::consumer_protocol::encode_assignment(
            &cohort_protocol::consumer_protocol::ConsumerProtocolAssignment {
                assigned_partitions: vec![
                    cohort_protocol::consumer_protocol::AssignedTopicPartitions {
                        topic: "t".into(),
                        partitions: vec![1, 0],
                    },
                ],
                user_data: None,
            },
            0,
        )
        .unwrap();
        let text = format!(
            "plan 10 5\nassign {} {}\ndone\nerror IllegalStateException: no\ndone\n",
            B64.encode("m"),
            B64.encode(&a)
        );
        let answers = read_answers(text.as_bytes(), 2).unwrap();
        let first = answers[0].as_ref().unwrap();
        assert_eq!((first.step_ns, first.assign_ns), (10, 5));
        assert_eq!(first.assignment, plan(&[("m", &[0, 1])]));
        assert_eq!(
            answers[1].as_ref().unwrap_err(),
            "IllegalStateException: no"
        );
        assert!(read_answers(text.as_bytes(), 3).is_err());
        assert!(read_answers("assign x y\n".as_bytes(), 1).is_err());
        assert!(read_answers("plan x\n".as_bytes(), 1).is_err());
    }

    #[test]
    fn only_java_assignors_and_non_empty_names_are_written() {
        let g = JavaGroup {
            assignor: "weighted-sticky".into(),
            repeat: 1,
            topics: vec![TopicInfo::new("t", 1)],
            members: Vec::new(),
        };
        assert!(
            write_group(&g)
                .unwrap_err()
                .to_string()
                .contains("no Java assignor")
        );
        let g = JavaGroup {
            assignor: "range".into(),
            topics: vec![TopicInfo::new("", 1)],
            ..g
        };
        assert!(write_group(&g).is_err());
    }
}
