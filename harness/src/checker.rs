//! The checker: reads a run's journal and decides whether the group kept its guarantees.
//!
//! - **Exclusive ownership**: no partition owned by two members at once. Ownership runs from
//!   the member's `assigned` to its `revoked`, `lost`, `left` or `crashed`. An overlap is only
//!   tolerated when the earlier owner had been cut off (frozen, black-holed, its traffic cut,
//!   or the broker paused) before the other member got the partition, *and* it neither
//!   processed nor committed the partition during the overlap: Kafka cannot stop a partitioned
//!   member from believing it still owns something, only from acting on it.
//! - **Processing and commits only while owned**: every processed record and every commit
//!   falls inside one of the member's ownership intervals (commits get a short grace for the
//!   response of a commit sent before the revoke completed).
//! - **Nothing lost**: every acknowledged produced record is processed at least once,
//!   committed offsets never go backwards (as members report them and as the broker reports
//!   them), and the final committed offset of every partition equals its end offset. Records a
//!   restarted in-memory broker forgot are excluded (and reported).
//! - **Duplicates** are counted and attributed to the hand-over that caused them; a duplicate
//!   without a hand-over is a violation, and a bound can be set.
//! - **Convergence**: after the last fault the group is stable within a bound.
//! - **Rebalance latency** per rebalance, from the triggering change to every member consuming
//!   again, with the number of rounds (generations) it took.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::journal::{Entry, Event, Offsets};

/// A partition.
pub type Tp = (String, i32);

/// What the checker needs besides the journal.
#[derive(Debug, Clone)]
pub struct CheckInput {
    /// Partition count per topic at the start of the run.
    pub topics: BTreeMap<String, i32>,
    /// When the run started (µs since the epoch).
    pub start_ts: u64,
    /// When the timeline ended and the producer stopped.
    pub timeline_end_ts: u64,
    /// When the run ended (after draining).
    pub end_ts: u64,
    /// Most duplicates allowed.
    pub max_duplicates: Option<u64>,
    /// Longest a rebalance may take, from its trigger to a stable group.
    pub max_rebalance: Option<Duration>,
    /// Time after the last fault by which the group must be stable.
    pub convergence_bound: Duration,
    /// Grace for a commit response arriving after the revoke it preceded.
    pub commit_grace: Duration,
}

/// One ownership interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Interval {
    /// Member.
    pub member: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// From (µs).
    pub start: u64,
    /// To (µs).
    pub end: u64,
    /// How it ended: `revoked`, `lost`, `left`, `crashed`, `reassigned`, `end`.
    pub ended_by: String,
    /// Generation of the assignment (-1 when unknown).
    pub generation: i32,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Check name.
    pub check: String,
    /// Whether it held.
    pub passed: bool,
    /// One line for people.
    pub summary: String,
    /// The first pieces of evidence.
    pub evidence: Vec<String>,
}

/// One rebalance.
#[derive(Debug, Clone, Serialize)]
pub struct Rebalance {
    /// What triggered it (a timeline action, a member starting), if anything did.
    pub trigger: String,
    /// When the trigger happened (ms from the start).
    pub trigger_ms: u64,
    /// When the group became unstable (ms from the start).
    pub start_ms: u64,
    /// When every member consumed again under the new assignment (ms from the start).
    pub end_ms: u64,
    /// `end - trigger`.
    pub latency_ms: u64,
    /// Generations it took (cooperative rebalances take two or more).
    pub rounds: usize,
}

/// Duplicates and their causes.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Duplicates {
    /// Records processed more than once (each extra delivery counts).
    pub total: u64,
    /// Extra deliveries by cause.
    pub by_cause: BTreeMap<String, u64>,
}

/// Everything the checker found.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// Check results.
    pub findings: Vec<Finding>,
    /// Ownership intervals.
    pub intervals: Vec<Interval>,
    /// Rebalances.
    pub rebalances: Vec<Rebalance>,
    /// Duplicates.
    pub duplicates: Duplicates,
    /// Records acknowledged by the broker.
    pub produced: u64,
    /// Distinct records processed.
    pub processed: u64,
    /// Records a restarted in-memory broker forgot (excluded from "nothing lost").
    pub forgotten: u64,
    /// Time from the last fault to a stable group (ms), if it got stable.
    pub convergence_ms: Option<u64>,
    /// Final committed offset and end offset per partition.
    pub final_offsets: BTreeMap<String, (i64, i64)>,
}

impl Analysis {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.passed)
    }
}

const EVIDENCE: usize = 8;

fn ms(ts: u64, start: u64) -> u64 {
    ts.saturating_sub(start) / 1000
}

fn secs(ts: u64, start: u64) -> String {
    format!("{:.1}s", ts.saturating_sub(start) as f64 / 1e6)
}

struct Finder {
    name: &'static str,
    evidence: Vec<String>,
    count: u64,
}

impl Finder {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            evidence: Vec::new(),
            count: 0,
        }
    }
    fn violation(&mut self, what: String) {
        self.count += 1;
        if self.evidence.len() < EVIDENCE {
            self.evidence.push(what);
        }
    }
    fn finish(self, ok: String, bad: impl FnOnce(u64) -> String) -> Finding {
        Finding {
            check: self.name.to_owned(),
            passed: self.count == 0,
            summary: if self.count == 0 { ok } else { bad(self.count) },
            evidence: self.evidence,
        }
    }
}

/// When a processed run's records were handed to the application (its journal time when the
/// member did not say).
/// When a member acted: a record run at its delivery, a commit at its request (the entry is
/// written when the answer arrives, seconds later for a member frozen meanwhile), anything else
/// when it was journaled.
fn acted_at(e: &Entry) -> u64 {
    match &e.event {
        Event::Processed { delivered, .. } if *delivered > 0 => *delivered,
        Event::Committed { requested, .. } if *requested > 0 => *requested,
        _ => e.ts,
    }
}

/// Cut-off windows per member (`*` for everyone: a paused broker).
fn cutoff_windows(entries: &[Entry], end: u64) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut open: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for e in entries {
        if let Event::Chaos {
            action,
            target,
            detail,
        } = &e.event
        {
            // A broker fault (a paused, killed, stopped or restarting node) can cut any member
            // off its coordinator or its partitions' leaders.
            let broker = action.starts_with("broker-");
            let cuts = broker || matches!(action.as_str(), "freeze" | "blackhole" | "cut");
            if !cuts {
                continue;
            }
            let who = if broker {
                "*".to_owned()
            } else {
                target.clone()
            };
            let key = (who.clone(), action.clone());
            if detail == "end" {
                if let Some(s) = open.remove(&key) {
                    out.entry(who).or_default().push((s, e.ts));
                }
            } else {
                open.entry(key).or_insert(e.ts);
            }
        }
    }
    for ((who, _), s) in open {
        out.entry(who).or_default().push((s, end));
    }
    out
}

fn was_cut_off(windows: &BTreeMap<String, Vec<(u64, u64)>>, member: &str, at: u64) -> bool {
    // Cut off at some point before `at`, within the window the coordinator takes to notice.
    [member, "*"].iter().any(|w| {
        windows
            .get(*w)
            .is_some_and(|ws| ws.iter().any(|(s, _)| *s <= at))
    })
}

/// Ownership intervals from the journal.
pub fn intervals(entries: &[Entry], end: u64) -> Vec<Interval> {
    let mut open: BTreeMap<(String, Tp), (u64, i32)> = BTreeMap::new();
    let mut out = Vec::new();
    let close = |open: &mut BTreeMap<(String, Tp), (u64, i32)>,
                 out: &mut Vec<Interval>,
                 member: &str,
                 tp: &Tp,
                 ts: u64,
                 why: &str| {
        if let Some((start, generation)) = open.remove(&(member.to_owned(), tp.clone())) {
            out.push(Interval {
                member: member.to_owned(),
                topic: tp.0.clone(),
                partition: tp.1,
                start,
                end: ts,
                ended_by: why.to_owned(),
                generation,
            });
        }
    };
    for e in entries {
        let m = e.source.as_str();
        match &e.event {
            Event::Assigned {
                partitions,
                generation,
                ..
            } => {
                let now: BTreeSet<Tp> = partitions
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                    .collect();
                let held: Vec<Tp> = open
                    .keys()
                    .filter(|(mm, _)| mm == m)
                    .map(|(_, tp)| tp.clone())
                    .collect();
                for tp in held.iter().filter(|tp| !now.contains(*tp)) {
                    close(&mut open, &mut out, m, tp, e.ts, "reassigned");
                }
                for tp in now {
                    open.entry((m.to_owned(), tp))
                        .or_insert((e.ts, *generation));
                }
            }
            Event::Revoked { partitions, .. } | Event::Lost { partitions } => {
                let why = if matches!(e.event, Event::Lost { .. }) {
                    "lost"
                } else {
                    "revoked"
                };
                for (t, ps) in partitions {
                    for p in ps {
                        close(&mut open, &mut out, m, &(t.clone(), *p), e.ts, why);
                    }
                }
            }
            Event::Left | Event::Crashed => {
                let why = if matches!(e.event, Event::Left) {
                    "left"
                } else {
                    "crashed"
                };
                let held: Vec<Tp> = open
                    .keys()
                    .filter(|(mm, _)| mm == m)
                    .map(|(_, tp)| tp.clone())
                    .collect();
                for tp in held {
                    close(&mut open, &mut out, m, &tp, e.ts, why);
                }
            }
            _ => {}
        }
    }
    for ((m, tp), _) in open.clone() {
        close(&mut open, &mut out, &m, &tp, end, "end");
    }
    out.sort_by(|a, b| (&a.topic, a.partition, a.start).cmp(&(&b.topic, b.partition, b.start)));
    out
}

/// Runs every check.
pub fn check(entries: &[Entry], input: &CheckInput) -> Analysis {
    let start = input.start_ts;
    let intervals = intervals(entries, input.end_ts);
    let cut = cutoff_windows(entries, input.end_ts);
    let mut by_tp: BTreeMap<Tp, Vec<&Interval>> = BTreeMap::new();
    for i in &intervals {
        by_tp
            .entry((i.topic.clone(), i.partition))
            .or_default()
            .push(i);
    }
    let owned_at = |member: &str, tp: &Tp, ts: u64, grace: u64| {
        by_tp.get(tp).is_some_and(|v| {
            v.iter()
                .any(|i| i.member == member && i.start <= ts && ts <= i.end + grace)
        })
    };

    // Processing and commits per member and partition, for the overlap rule.
    let mut activity: BTreeMap<(String, Tp), Vec<u64>> = BTreeMap::new();
    for e in entries {
        match &e.event {
            Event::Processed {
                topic, partition, ..
            } => activity
                .entry((e.source.clone(), (topic.clone(), *partition)))
                .or_default()
                .push(acted_at(e)),
            Event::Committed { offsets, .. } => {
                for (t, ps) in offsets {
                    for p in ps.keys() {
                        activity
                            .entry((e.source.clone(), (t.clone(), *p)))
                            .or_default()
                            .push(acted_at(e));
                    }
                }
            }
            _ => {}
        }
    }

    // 1. Exclusive ownership.
    let mut excl = Finder::new("exclusive-ownership");
    let mut zombies = 0u64;
    for (tp, ivs) in &by_tp {
        for (i, a) in ivs.iter().enumerate() {
            for b in &ivs[i + 1..] {
                if b.member == a.member || b.start >= a.end {
                    continue;
                }
                // `a` started first (sorted); they overlap on [b.start, min(a.end, b.end)].
                let (w0, w1) = (b.start, a.end.min(b.end));
                let a_acted = activity
                    .get(&(a.member.clone(), tp.clone()))
                    .is_some_and(|ts| ts.iter().any(|t| *t > w0 && *t <= w1));
                if was_cut_off(&cut, &a.member, b.start) && !a_acted {
                    zombies += 1;
                    continue;
                }
                excl.violation(format!(
                    "{}/{}: {} (generation {}, from {}) and {} (generation {}, from {}) both owned it from {} to {}{}",
                    tp.0,
                    tp.1,
                    a.member,
                    a.generation,
                    secs(a.start, start),
                    b.member,
                    b.generation,
                    secs(b.start, start),
                    secs(w0, start),
                    secs(w1, start),
                    if a_acted { format!("; {} processed or committed it meanwhile", a.member) } else { String::new() }
                ));
            }
        }
    }
    let mut findings = vec![excl.finish(
        format!(
            "no partition owned by two members at once{}",
            if zombies > 0 {
                format!(" ({zombies} overlap(s) with a cut-off member that did nothing with the partition)")
            } else {
                String::new()
            }
        ),
        |n| format!("{n} overlapping ownership(s)"),
    )];

    // 2. Processing and commits only while owned.
    let grace = input.commit_grace.as_micros() as u64;
    // A commit sent while the member owned the partition may be answered after it gave the
    // partition up as lost (a coordinator failing over holds it for seconds). The broker accepts
    // a commit only in the group's current generation, so one acknowledged in the generation of
    // the member's last ownership, with no other member owning the partition since, was valid
    // when it was applied (the Java client completes such commits too, after
    // onPartitionsLost). Anything else outside ownership is a violation.
    let answered_late = |member: &str, tp: &Tp, ts: u64, generation: i32| {
        by_tp.get(tp).is_some_and(|v| {
            v.iter().any(|i| {
                i.member == member
                    && i.ended_by == "lost"
                    && i.generation == generation
                    && generation >= 0
                    && i.end <= ts
                    && !v
                        .iter()
                        .any(|j| j.member != member && j.start <= ts && j.end >= i.end)
            })
        })
    };
    let mut outside = Finder::new("acts-only-while-owned");
    for e in entries {
        match &e.event {
            Event::Processed {
                topic,
                partition,
                first,
                last,
                ..
            } => {
                let tp = (topic.clone(), *partition);
                let at = acted_at(e);
                if !owned_at(&e.source, &tp, at, 0) {
                    outside.violation(format!(
                        "{} was handed {}/{} offsets {}..={} at {} without owning it",
                        e.source,
                        topic,
                        partition,
                        first,
                        last,
                        secs(at, start)
                    ));
                }
            }
            Event::Committed {
                offsets,
                generation,
                ..
            } => {
                let at = acted_at(e);
                for (t, ps) in offsets {
                    for (p, o) in ps {
                        let tp = (t.clone(), *p);
                        if !owned_at(&e.source, &tp, at, grace)
                            && !answered_late(&e.source, &tp, e.ts, *generation)
                        {
                            outside.violation(format!(
                                "{} committed {}/{} = {} at {} without owning it",
                                e.source,
                                t,
                                p,
                                o,
                                secs(at, start)
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    findings.push(outside.finish(
        "records processed and offsets committed only for owned partitions".into(),
        |n| format!("{n} record run(s) or commit(s) for partitions not owned"),
    ));

    // 3. Nothing lost.
    let mut forgotten_at: BTreeMap<Tp, Vec<u64>> = BTreeMap::new();
    for e in entries {
        if let Event::Forgotten { topic, partitions } = &e.event {
            for p in partitions {
                forgotten_at
                    .entry((topic.clone(), *p))
                    .or_default()
                    .push(e.ts);
            }
        }
    }
    let forgotten_before = |tp: &Tp, produced_ts: u64| {
        forgotten_at
            .get(tp)
            .is_some_and(|v| v.iter().any(|f| *f > produced_ts))
    };
    // Offsets are numbered afresh after a forget, so key records by epoch (forgets before).
    let epoch = |tp: &Tp, ts: u64| {
        forgotten_at
            .get(tp)
            .map_or(0, |v| v.iter().filter(|f| **f <= ts).count())
    };
    let mut produced: BTreeMap<Tp, Vec<(i64, i64, u64)>> = BTreeMap::new();
    let mut produced_n = 0u64;
    let mut forgotten_n = 0u64;
    let mut end_offsets: BTreeMap<Tp, (usize, i64)> = BTreeMap::new();
    for e in entries {
        if let Event::Produced {
            topic,
            partition,
            first,
            last,
        } = &e.event
        {
            let tp = (topic.clone(), *partition);
            let n = (last - first + 1).max(0) as u64;
            if forgotten_before(&tp, e.ts) {
                forgotten_n += n;
            } else {
                produced_n += n;
                produced
                    .entry(tp.clone())
                    .or_default()
                    .push((*first, *last, e.ts));
            }
            let ep = epoch(&tp, e.ts);
            let ent = end_offsets.entry(tp).or_insert((ep, 0));
            if ep > ent.0 {
                *ent = (ep, 0);
            }
            ent.1 = ent.1.max(last + 1);
        }
    }
    // Processed offsets of the current epoch of each partition.
    let mut processed_runs: BTreeMap<Tp, Vec<(i64, i64, String, u64)>> = BTreeMap::new();
    for e in entries {
        if let Event::Processed {
            topic,
            partition,
            first,
            last,
            ..
        } = &e.event
        {
            let tp = (topic.clone(), *partition);
            let final_epoch = forgotten_at.get(&tp).map_or(0, Vec::len);
            if epoch(&tp, e.ts) == final_epoch {
                processed_runs.entry(tp).or_default().push((
                    *first,
                    *last,
                    e.source.clone(),
                    acted_at(e),
                ));
            }
        }
    }
    let mut lost = Finder::new("nothing-lost");
    let mut processed_distinct = 0u64;
    let mut dups = Duplicates::default();
    let mut unexplained = Finder::new("duplicates-explained");
    for (tp, runs) in &produced {
        let mut counts: BTreeMap<i64, Vec<(String, u64)>> = BTreeMap::new();
        for (f, l, m, ts) in processed_runs.get(tp).into_iter().flatten() {
            for o in *f..=*l {
                counts.entry(o).or_default().push((m.clone(), *ts));
            }
        }
        let mut missing = Vec::new();
        for (f, l, _) in runs {
            for o in *f..=*l {
                match counts.get(&o) {
                    None => missing.push(o),
                    Some(v) => {
                        processed_distinct += 1;
                        if v.len() > 1 {
                            for w in v.windows(2) {
                                dups.total += 1;
                                let cause = duplicate_cause(&by_tp, tp, &w[0], &w[1], start);
                                match cause {
                                    Some(c) => *dups.by_cause.entry(c).or_default() += 1,
                                    None => unexplained.violation(format!(
                                        "{}/{} offset {o} processed twice by {} within one ownership",
                                        tp.0, tp.1, w[1].0
                                    )),
                                }
                            }
                        }
                    }
                }
            }
        }
        if !missing.is_empty() {
            lost.violation(format!(
                "{}/{}: {} produced record(s) never processed, first offsets {:?}",
                tp.0,
                tp.1,
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
    }
    // Committed offsets never go backwards, as members report them and as the broker does.
    // Members' commits are ordered by their requests: the coordinator applies commits of one
    // partition in generation order, and a member requests one only while in the generation.
    let mut back = Finder::new("commits-never-go-backwards");
    for source in ["members", "broker"] {
        let mut commits: Vec<(u64, &Entry, &Offsets)> = entries
            .iter()
            .filter_map(|e| match (&e.event, source) {
                (Event::Committed { offsets, .. }, "members") => Some((acted_at(e), e, offsets)),
                (Event::Observed { offsets }, "broker") => Some((e.ts, e, offsets)),
                _ => None,
            })
            .collect();
        commits.sort_by_key(|(at, ..)| *at);
        let mut last: BTreeMap<Tp, (i64, u64, String)> = BTreeMap::new();
        for (at, e, offsets) in commits {
            for (t, ps) in offsets {
                for (p, o) in ps {
                    let tp = (t.clone(), *p);
                    if *o < 0 {
                        continue;
                    }
                    if let Some((prev, prev_ts, who)) = last.get(&tp) {
                        let reset = forgotten_at
                            .get(&tp)
                            .is_some_and(|v| v.iter().any(|f| *f > *prev_ts && *f <= at));
                        if *o < *prev && !reset {
                            back.violation(format!(
                                "{}/{}: {} committed {} at {} after {} committed {} at {} ({})",
                                t,
                                p,
                                if source == "broker" {
                                    "the broker reported"
                                } else {
                                    &e.source
                                },
                                o,
                                secs(at, start),
                                who,
                                prev,
                                secs(*prev_ts, start),
                                source
                            ));
                        }
                    }
                    last.insert(tp, (*o, at, e.source.clone()));
                }
            }
        }
    }
    // The final committed offset (the broker's, observed after the drain) equals the end.
    let mut final_offsets = BTreeMap::new();
    let last_observed: BTreeMap<Tp, i64> = entries
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::Observed { offsets } if e.source == "monitor-final" => Some(offsets),
            _ => None,
        })
        .map(|o| {
            o.iter()
                .flat_map(|(t, ps)| ps.iter().map(move |(p, v)| ((t.clone(), *p), *v)))
                .collect()
        })
        .unwrap_or_default();
    let mut final_ok = Finder::new("final-commit-at-end");
    for (tp, (_, end)) in &end_offsets {
        let committed = last_observed.get(tp).copied().unwrap_or(-1);
        final_offsets.insert(format!("{}/{}", tp.0, tp.1), (committed, *end));
        if committed != *end {
            final_ok.violation(format!(
                "{}/{}: committed {} but the end offset is {}",
                tp.0, tp.1, committed, end
            ));
        }
    }
    if last_observed.is_empty() && !end_offsets.is_empty() {
        final_ok.violation("no final OffsetFetch was recorded".into());
    }
    findings.push(lost.finish(
        format!(
            "all {produced_n} acknowledged records processed{}",
            if forgotten_n > 0 {
                format!(" ({forgotten_n} more forgotten by a restarted in-memory broker)")
            } else {
                String::new()
            }
        ),
        |n| format!("records lost on {n} partition(s)"),
    ));
    findings.push(
        back.finish("committed offsets never went backwards".into(), |n| {
            format!("{n} commit(s) went backwards")
        }),
    );
    findings.push(final_ok.finish(
        format!(
            "final committed offset equals the end offset on all {} partitions",
            end_offsets.len()
        ),
        |n| format!("{n} partition(s) not committed to the end"),
    ));
    let dup_summary = if dups.total == 0 {
        "no duplicates".to_owned()
    } else {
        format!(
            "{} duplicate deliveries, each after a hand-over: {}",
            dups.total,
            dups.by_cause
                .iter()
                .map(|(c, n)| format!("{n} after {c}"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    findings.push(unexplained.finish(dup_summary, |n| {
        format!("{n} duplicate(s) without a hand-over")
    }));
    if let Some(bound) = input.max_duplicates {
        findings.push(Finding {
            check: "duplicates-bounded".into(),
            passed: dups.total <= bound,
            summary: format!("{} duplicates (bound {bound})", dups.total),
            evidence: Vec::new(),
        });
    }

    // 4. Convergence and 5. rebalances.
    let (rebalances, stable_spans) = rebalances(entries, input);
    let last_fault = entries
        .iter()
        .filter(|e| matches!(e.event, Event::Chaos { .. }) && e.ts <= input.timeline_end_ts)
        .map(|e| e.ts)
        .max();
    let convergence_ms = last_fault.and_then(|f| {
        stable_spans
            .iter()
            .find(|(s, e)| *e > f && *e - (*s).max(f) >= 1_000_000)
            .map(|(s, _)| ms((*s).max(f), f))
    });
    let bound_ms = input.convergence_bound.as_millis() as u64;
    findings.push(match (last_fault, convergence_ms) {
        (None, _) => Finding {
            check: "convergence".into(),
            passed: !stable_spans.is_empty(),
            summary: if stable_spans.is_empty() {
                "the group never became stable".into()
            } else {
                "the group became stable (no faults in this run)".into()
            },
            evidence: Vec::new(),
        },
        (Some(_), Some(c)) => Finding {
            check: "convergence".into(),
            passed: c <= bound_ms,
            summary: format!("stable {c} ms after the last fault (bound {bound_ms} ms)"),
            evidence: Vec::new(),
        },
        (Some(f), None) => Finding {
            check: "convergence".into(),
            passed: false,
            summary: format!(
                "not stable after the last fault at {} (bound {bound_ms} ms)",
                secs(f, start)
            ),
            evidence: Vec::new(),
        },
    });
    if let Some(bound) = input.max_rebalance {
        let bound_ms = bound.as_millis() as u64;
        let slow: Vec<String> = rebalances
            .iter()
            .filter(|r| r.latency_ms > bound_ms)
            .map(|r| {
                format!(
                    "{} at {:.1}s took {} ms",
                    r.trigger,
                    r.trigger_ms as f64 / 1000.0,
                    r.latency_ms
                )
            })
            .collect();
        let max = rebalances.iter().map(|r| r.latency_ms).max().unwrap_or(0);
        findings.push(Finding {
            check: "rebalances-bounded".into(),
            passed: slow.is_empty(),
            summary: format!(
                "longest rebalance {max} ms (bound {bound_ms} ms, {} rebalances)",
                rebalances.len()
            ),
            evidence: slow,
        });
    }

    Analysis {
        findings,
        intervals,
        rebalances,
        duplicates: dups,
        produced: produced_n,
        processed: processed_distinct,
        forgotten: forgotten_n,
        convergence_ms,
        final_offsets,
    }
}

/// Why a record was processed again: the hand-over between the two deliveries.
fn duplicate_cause(
    by_tp: &BTreeMap<Tp, Vec<&Interval>>,
    tp: &Tp,
    first: &(String, u64),
    second: &(String, u64),
    start: u64,
) -> Option<String> {
    let ivs = by_tp.get(tp)?;
    let of = |m: &str, ts: u64| {
        ivs.iter()
            .find(|i| i.member == m && i.start <= ts && ts <= i.end)
    };
    let a = of(&first.0, first.1)?;
    let b = of(&second.0, second.1)?;
    if std::ptr::eq(*a, *b) {
        return None;
    }
    Some(format!(
        "{} {} at {}",
        a.member,
        match a.ended_by.as_str() {
            "revoked" => "gave it up (revoked)",
            "lost" => "lost it",
            "crashed" => "crashed",
            "left" => "left",
            "reassigned" => "was reassigned",
            other => other,
        },
        secs(a.end, start)
    ))
}

/// The group's state as the journal tells it, entry by entry: who runs, what each owns, who
/// is in the middle of a rebalance, and how many partitions each topic has.
#[derive(Debug, Clone, Default)]
pub struct Stability {
    counts: BTreeMap<String, i32>,
    running: BTreeSet<String>,
    current: BTreeMap<String, BTreeSet<Tp>>,
    /// Members with a rebalance under way (a `rebalancing` or `lost` after their last
    /// `assigned`), or started and not yet assigned.
    pending: BTreeSet<String>,
    /// Members frozen or cut off the network (a `freeze`, `blackhole` or `cut` in force): they
    /// can act on nothing, so the group is stable without them once the others own every
    /// partition (as the coordinator sees it after removing them).
    cut_off: BTreeSet<String>,
    generation: i32,
}

impl Stability {
    /// Starts from the topics' partition counts.
    pub fn new(counts: BTreeMap<String, i32>) -> Self {
        Self {
            counts,
            generation: -1,
            ..Default::default()
        }
    }

    /// Applies one entry; returns whether it concerned the group.
    pub fn apply(&mut self, e: &Entry) -> bool {
        let m = e.source.clone();
        match &e.event {
            Event::Started { .. } => {
                self.running.insert(m.clone());
                self.pending.insert(m);
            }
            Event::Rebalancing { .. } => {
                self.pending.insert(m);
            }
            Event::Assigned {
                partitions,
                generation,
                ..
            } => {
                self.pending.remove(&m);
                self.generation = self.generation.max(*generation);
                self.current.insert(
                    m,
                    partitions
                        .iter()
                        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                        .collect(),
                );
            }
            Event::Revoked { partitions, .. } | Event::Lost { partitions } => {
                if let Some(cur) = self.current.get_mut(&m) {
                    for (t, ps) in partitions {
                        for p in ps {
                            cur.remove(&(t.clone(), *p));
                        }
                    }
                }
                if matches!(e.event, Event::Lost { .. }) {
                    self.pending.insert(m);
                }
            }
            Event::Left | Event::Crashed => {
                self.running.remove(&m);
                self.pending.remove(&m);
                self.current.remove(&m);
            }
            Event::Chaos {
                action,
                target,
                detail,
            } => {
                if action == "add-partitions"
                    && let Ok(n) = detail.parse::<i32>()
                {
                    self.counts.insert(target.clone(), n);
                }
                if matches!(action.as_str(), "freeze" | "blackhole" | "cut") {
                    if detail == "end" {
                        self.cut_off.remove(target);
                    } else {
                        self.cut_off.insert(target.clone());
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Every running member that is not cut off has its assignment, none is rebalancing, and
    /// every partition has exactly one owner among them.
    pub fn is_stable(&self) -> bool {
        let active = |m: &String| self.running.contains(m) && !self.cut_off.contains(m);
        if !self.running.iter().any(active) || self.pending.iter().any(active) {
            return false;
        }
        let total: usize = self.counts.values().map(|n| *n as usize).sum();
        let mut owners: BTreeMap<&Tp, usize> = BTreeMap::new();
        for (m, ps) in &self.current {
            if active(m) {
                for tp in ps {
                    *owners.entry(tp).or_default() += 1;
                }
            }
        }
        owners.len() == total
            && owners.values().all(|n| *n == 1)
            && owners
                .keys()
                .all(|(t, p)| self.counts.get(t).is_some_and(|n| *p < *n))
    }

    /// Members running.
    pub fn running(&self) -> &BTreeSet<String> {
        &self.running
    }

    /// Highest generation seen.
    pub fn generation(&self) -> i32 {
        self.generation
    }
}

/// Stability over time: rebalance episodes and the spans in which the group was stable.
fn rebalances(entries: &[Entry], input: &CheckInput) -> (Vec<Rebalance>, Vec<(u64, u64)>) {
    let start = input.start_ts;
    let mut st = Stability::new(input.topics.clone());
    let mut stable = false;
    let mut stable_since = start;
    let mut spans = Vec::new();
    let mut out = Vec::new();
    let mut unstable_since: Option<u64> = None;
    let mut generations: BTreeSet<i32> = BTreeSet::new();
    let mut last_trigger: Option<(u64, String)> = None;
    let mut episode_trigger: Option<(u64, String)> = None;
    for e in entries {
        if !st.apply(e) {
            continue;
        }
        let m = &e.source;
        match &e.event {
            Event::Started { .. } => {
                // A `join` or `restart` action names the member just before it starts: keep
                // the action as the trigger.
                let named = last_trigger.as_ref().is_some_and(|(t, what)| {
                    what.ends_with(&format!(" {m}")) && e.ts.saturating_sub(*t) < 5_000_000
                });
                if !named {
                    last_trigger = Some((e.ts, format!("{m} started")));
                }
            }
            Event::Assigned { generation, .. } if *generation >= 0 => {
                generations.insert(*generation);
            }
            Event::Chaos {
                action,
                target,
                detail,
            } if detail != "end" => {
                last_trigger = Some((e.ts, format!("{action} {target}").trim().to_owned()));
            }
            _ => {}
        }
        let now_stable = st.is_stable();
        if now_stable && !stable {
            stable_since = e.ts;
            if let Some(s) = unstable_since.take() {
                let (trigger_ts, trigger) = match episode_trigger.take() {
                    Some((t, what)) if t <= s => (t, what),
                    _ => (s, "rebalance".to_owned()),
                };
                out.push(Rebalance {
                    trigger,
                    trigger_ms: ms(trigger_ts, start),
                    start_ms: ms(s, start),
                    end_ms: ms(e.ts, start),
                    latency_ms: ms(e.ts, trigger_ts),
                    rounds: generations.len().max(1),
                });
                last_trigger = None;
            }
        } else if !now_stable && stable {
            spans.push((stable_since, e.ts));
            unstable_since = Some(e.ts);
            // What caused the episode is what happened last before it began; later actions
            // during the episode do not replace it.
            episode_trigger = last_trigger.clone();
            generations.clear();
        } else if !now_stable && unstable_since.is_none() && out.is_empty() {
            // The initial formation of the group.
            unstable_since = Some(e.ts);
            episode_trigger = last_trigger.clone();
            generations.clear();
        }
        stable = now_stable;
    }
    if stable {
        spans.push((stable_since, input.end_ts));
    }
    (out, spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Offsets, Partitions};

    fn e(ts: u64, source: &str, event: Event) -> Entry {
        Entry {
            ts: ts * 1_000_000,
            source: source.into(),
            event,
        }
    }
    fn parts(ps: &[i32]) -> Partitions {
        [("t".to_owned(), ps.to_vec())].into()
    }
    fn assigned(ps: &[i32], g: i32) -> Event {
        Event::Assigned {
            generation: g,
            member_id: String::new(),
            leader: None,
            protocol: None,
            partitions: parts(ps),
        }
    }
    fn offsets(p: i32, o: i64) -> Offsets {
        [("t".to_owned(), [(p, o)].into())].into()
    }
    fn processed(p: i32, first: i64, last: i64) -> Event {
        Event::Processed {
            topic: "t".into(),
            partition: p,
            first,
            last,
            generation: 1,
            delivered: 0,
        }
    }
    fn input() -> CheckInput {
        CheckInput {
            topics: [("t".to_owned(), 2)].into(),
            start_ts: 0,
            timeline_end_ts: 50_000_000,
            end_ts: 60_000_000,
            max_duplicates: None,
            max_rebalance: None,
            convergence_bound: Duration::from_secs(30),
            commit_grace: Duration::from_secs(1),
        }
    }
    fn started() -> Event {
        Event::Started {
            client: "cohort".into(),
            balancers: vec![],
            instance_id: None,
        }
    }
    fn produced(p: i32, first: i64, last: i64) -> Event {
        Event::Produced {
            topic: "t".into(),
            partition: p,
            first,
            last,
        }
    }

    /// A clean run: a hands partition 1 to b at a rebalance, everything is processed once.
    fn clean() -> Vec<Entry> {
        vec![
            e(1, "a", started()),
            e(2, "producer", produced(0, 0, 9)),
            e(2, "producer", produced(1, 0, 9)),
            e(3, "a", assigned(&[0, 1], 1)),
            e(4, "a", processed(0, 0, 9)),
            e(4, "a", processed(1, 0, 4)),
            e(
                5,
                "a",
                Event::Committed {
                    generation: 1,
                    offsets: offsets(1, 5),
                    requested: 0,
                },
            ),
            e(
                6,
                "chaos",
                Event::Chaos {
                    action: "join".into(),
                    target: "b".into(),
                    detail: String::new(),
                },
            ),
            e(6, "b", started()),
            e(
                7,
                "a",
                Event::Revoked {
                    generation: 1,
                    partitions: parts(&[1]),
                },
            ),
            e(8, "a", assigned(&[0], 2)),
            e(10, "b", assigned(&[1], 3)),
            e(11, "b", processed(1, 5, 9)),
            e(
                12,
                "a",
                Event::Committed {
                    generation: 3,
                    offsets: offsets(0, 10),
                    requested: 0,
                },
            ),
            e(
                12,
                "b",
                Event::Committed {
                    generation: 3,
                    offsets: offsets(1, 10),
                    requested: 0,
                },
            ),
            e(
                55,
                "monitor-final",
                Event::Observed {
                    offsets: [("t".to_owned(), [(0, 10), (1, 10)].into())].into(),
                },
            ),
        ]
    }

    fn failed(a: &Analysis) -> Vec<&str> {
        a.findings
            .iter()
            .filter(|f| !f.passed)
            .map(|f| f.check.as_str())
            .collect()
    }

    #[test]
    fn a_clean_run_passes_and_measures_the_rebalance() {
        let a = check(&clean(), &input());
        assert!(a.passed(), "{:#?}", a.findings);
        assert_eq!(a.produced, 20);
        assert_eq!(a.processed, 20);
        assert_eq!(a.duplicates.total, 0);
        assert_eq!(a.rebalances.len(), 2, "{:?}", a.rebalances);
        let r = &a.rebalances[1];
        assert_eq!(r.trigger, "join b");
        assert_eq!(r.latency_ms, 4000);
        assert_eq!(r.rounds, 2, "cooperative: two generations");
        assert_eq!(a.convergence_ms, Some(4000));
    }

    #[test]
    fn a_commit_after_revoke_is_caught() {
        let mut j = clean();
        // a commits partition 1 again, rewinding b's progress, long after giving it up.
        j.push(e(
            14,
            "a",
            Event::Committed {
                generation: 3,
                offsets: offsets(1, 5),
                requested: 0,
            },
        ));
        j.sort_by_key(|x| x.ts);
        let a = check(&j, &input());
        let f = failed(&a);
        assert!(f.contains(&"acts-only-while-owned"), "{f:?}");
        assert!(f.contains(&"commits-never-go-backwards"), "{f:?}");
    }

    /// A commit sent while owned and answered after the partition was given up as lost, in the
    /// generation of that ownership and before anyone else owned it, is fine (the broker only
    /// accepts it in the current generation); after a new owner took over it is not.
    #[test]
    fn a_commit_answered_after_a_loss_is_judged_by_its_generation() {
        let lost_then_committed = |at: u64| {
            let mut j = clean();
            for x in &mut j {
                if x.source == "a" && matches!(x.event, Event::Revoked { .. }) {
                    x.event = Event::Lost {
                        partitions: parts(&[1]),
                    };
                }
            }
            j.push(e(
                at,
                "a",
                Event::Committed {
                    generation: 1,
                    offsets: offsets(1, 5),
                    requested: 0,
                },
            ));
            j.sort_by_key(|x| x.ts);
            failed(&check(&j, &input()))
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<String>>()
        };
        // Lost at 7, b owns partition 1 from 10.
        let f = lost_then_committed(9);
        assert!(!f.iter().any(|c| c == "acts-only-while-owned"), "{f:?}");
        let f = lost_then_committed(11);
        assert!(f.iter().any(|c| c == "acts-only-while-owned"), "{f:?}");
    }

    #[test]
    fn double_ownership_lost_records_and_unexplained_duplicates_are_caught() {
        // b gets partition 1 while a still owns it (a was never cut off).
        let mut j = clean();
        j.retain(|x| !matches!(x.event, Event::Revoked { .. }));
        for x in &mut j {
            if x.source == "a" && matches!(x.event, Event::Assigned { generation: 2, .. }) {
                x.event = assigned(&[0, 1], 2);
            }
        }
        let a = check(&j, &input());
        assert!(
            failed(&a).contains(&"exclusive-ownership"),
            "{:?}",
            failed(&a)
        );

        // Records 5..9 of partition 1 never processed; the final commit stops short.
        let mut j = clean();
        j.retain(|x| !matches!(&x.event, Event::Processed { first: 5, .. }));
        j.retain(|x| x.source != "monitor-final");
        j.push(e(
            55,
            "monitor-final",
            Event::Observed {
                offsets: [("t".to_owned(), [(0, 10), (1, 5)].into())].into(),
            },
        ));
        let a = check(&j, &input());
        let f = failed(&a);
        assert!(
            f.contains(&"nothing-lost") && f.contains(&"final-commit-at-end"),
            "{f:?}"
        );

        // a processes offsets 0..=4 of partition 0 twice within one ownership.
        let mut j = clean();
        j.push(e(5, "a", processed(0, 0, 4)));
        j.sort_by_key(|x| x.ts);
        let a = check(&j, &input());
        assert!(
            failed(&a).contains(&"duplicates-explained"),
            "{:?}",
            failed(&a)
        );
    }

    #[test]
    fn duplicates_after_a_crash_are_explained_and_can_be_bounded() {
        let j = vec![
            e(1, "a", started()),
            e(1, "producer", produced(0, 0, 9)),
            e(1, "producer", produced(1, 0, 9)),
            e(2, "a", assigned(&[0, 1], 1)),
            e(3, "a", processed(0, 0, 9)),
            e(3, "a", processed(1, 0, 9)),
            e(
                4,
                "chaos",
                Event::Chaos {
                    action: "crash".into(),
                    target: "a".into(),
                    detail: String::new(),
                },
            ),
            e(4, "a", Event::Crashed),
            e(5, "b", started()),
            e(7, "b", assigned(&[0, 1], 2)),
            e(8, "b", processed(0, 0, 9)),
            e(8, "b", processed(1, 0, 9)),
            e(
                9,
                "b",
                Event::Committed {
                    generation: 2,
                    offsets: [("t".to_owned(), [(0, 10), (1, 10)].into())].into(),
                    requested: 0,
                },
            ),
            e(
                55,
                "monitor-final",
                Event::Observed {
                    offsets: [("t".to_owned(), [(0, 10), (1, 10)].into())].into(),
                },
            ),
        ];
        let a = check(&j, &input());
        assert!(a.passed(), "{:#?}", a.findings);
        assert_eq!(a.duplicates.total, 20);
        assert_eq!(a.duplicates.by_cause.len(), 1);
        assert!(
            a.duplicates
                .by_cause
                .keys()
                .next()
                .unwrap()
                .starts_with("a crashed")
        );
        let mut i = input();
        i.max_duplicates = Some(5);
        assert!(failed(&check(&j, &i)).contains(&"duplicates-bounded"));
    }

    #[test]
    fn a_commit_is_placed_at_its_request_not_at_its_late_answer() {
        // a requests a commit at 19 s and is frozen at 20 s before it reads the answer; b gets
        // partition 0 at 30 s (resuming at the committed 11) and commits 12 at 32 s. a thaws at
        // 35 s, journals its commit (requested at 19 s) and then the loss.
        let with = |requested: u64| {
            let mut j = clean();
            j.push(e(19, "a", processed(0, 10, 10)));
            j.push(e(
                20,
                "chaos",
                Event::Chaos {
                    action: "freeze".into(),
                    target: "a".into(),
                    detail: "start".into(),
                },
            ));
            j.push(e(30, "b", assigned(&[0, 1], 4)));
            j.push(e(31, "b", processed(0, 11, 11)));
            j.push(e(
                32,
                "b",
                Event::Committed {
                    generation: 4,
                    offsets: offsets(0, 12),
                    requested: 32_000_000,
                },
            ));
            j.push(e(
                35,
                "chaos",
                Event::Chaos {
                    action: "freeze".into(),
                    target: "a".into(),
                    detail: "end".into(),
                },
            ));
            j.push(e(
                35,
                "a",
                Event::Committed {
                    generation: 1,
                    offsets: offsets(0, 11),
                    requested,
                },
            ));
            j.push(e(
                35,
                "a",
                Event::Lost {
                    partitions: parts(&[0]),
                },
            ));
            j.push(e(43, "a", assigned(&[], 5)));
            j.sort_by_key(|x| x.ts);
            check(&j, &input())
        };
        let a = with(19_000_000);
        assert!(a.passed(), "{:#?}", a.findings);
        // Placed at its answer instead, the same commit overlaps b's ownership and goes back.
        let late = with(0);
        let f = failed(&late);
        assert!(f.contains(&"exclusive-ownership"), "{f:?}");
        assert!(f.contains(&"commits-never-go-backwards"), "{f:?}");
    }

    #[test]
    fn a_frozen_member_that_does_nothing_is_a_tolerated_zombie() {
        let mut j = clean();
        // a is frozen at 20 s and keeps believing it owns partition 0 until 40 s; b gets it at 30 s.
        j.push(e(
            20,
            "chaos",
            Event::Chaos {
                action: "freeze".into(),
                target: "a".into(),
                detail: "start".into(),
            },
        ));
        j.push(e(30, "b", assigned(&[0, 1], 4)));
        j.push(e(
            35,
            "chaos",
            Event::Chaos {
                action: "freeze".into(),
                target: "a".into(),
                detail: "end".into(),
            },
        ));
        j.push(e(
            40,
            "a",
            Event::Lost {
                partitions: parts(&[0]),
            },
        ));
        j.push(e(43, "a", assigned(&[], 5)));
        j.sort_by_key(|x| x.ts);
        let a = check(&j, &input());
        assert!(a.passed(), "{:#?}", a.findings);
        // Had it processed meanwhile, it would be a violation.
        j.push(e(36, "a", processed(0, 10, 10)));
        j.sort_by_key(|x| x.ts);
        assert!(failed(&check(&j, &input())).contains(&"exclusive-ownership"));
    }

    #[test]
    fn forgotten_records_are_excluded_and_offsets_may_restart() {
        let j = vec![
            e(1, "a", started()),
            e(1, "producer", produced(0, 0, 9)),
            e(2, "a", assigned(&[0, 1], 1)),
            e(
                3,
                "a",
                Event::Committed {
                    generation: 1,
                    offsets: offsets(0, 4),
                    requested: 0,
                },
            ),
            e(
                4,
                "monitor",
                Event::Observed {
                    offsets: offsets(0, 4),
                },
            ),
            e(
                5,
                "chaos",
                Event::Forgotten {
                    topic: "t".into(),
                    partitions: vec![0, 1],
                },
            ),
            e(6, "producer", produced(0, 0, 2)),
            e(7, "a", processed(0, 0, 2)),
            e(
                8,
                "a",
                Event::Committed {
                    generation: 1,
                    offsets: offsets(0, 3),
                    requested: 0,
                },
            ),
            e(
                55,
                "monitor-final",
                Event::Observed {
                    offsets: offsets(0, 3),
                },
            ),
        ];
        let a = check(&j, &input());
        assert!(a.passed(), "{:#?}", a.findings);
        assert_eq!(a.forgotten, 10);
        assert_eq!(a.produced, 3);
    }
}
