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

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::journal::Entry;

mod facts;
mod ownership;
mod rebalance;
mod records;
mod stability;
#[cfg(test)]
mod tests;

pub use facts::intervals;
pub use stability::Stability;

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

pub(super) fn ms(ts: u64, start: u64) -> u64 {
    ts.saturating_sub(start) / 1000
}

pub(super) fn secs(ts: u64, start: u64) -> String {
    format!("{:.1}s", ts.saturating_sub(start) as f64 / 1e6)
}

pub(super) struct Finder {
    name: &'static str,
    evidence: Vec<String>,
    count: u64,
}

impl Finder {
    pub(super) fn new(name: &'static str) -> Self {
        Self {
            name,
            evidence: Vec::new(),
            count: 0,
        }
    }
    pub(super) fn violation(&mut self, what: String) {
        self.count += 1;
        if self.evidence.len() < EVIDENCE {
            self.evidence.push(what);
        }
    }
    pub(super) fn finish(self, ok: String, bad: impl FnOnce(u64) -> String) -> Finding {
        Finding {
            check: self.name.to_owned(),
            passed: self.count == 0,
            summary: if self.count == 0 { ok } else { bad(self.count) },
            evidence: self.evidence,
        }
    }
}

/// Runs every check: the facts are gathered once from the journal, then each check reads them.
pub fn check(entries: &[Entry], input: &CheckInput) -> Analysis {
    let f = facts::Facts::gather(entries, input);
    let mut findings = vec![
        ownership::exclusive_ownership(&f),
        ownership::acts_only_while_owned(&f),
    ];
    let tally = records::tally(&f);
    findings.push(tally.nothing_lost.clone());
    findings.push(records::commits_never_go_backwards(&f));
    let (final_commit, final_offsets) = records::final_commit_at_end(&f, &tally.end_offsets);
    findings.push(final_commit);
    findings.push(tally.duplicates_explained.clone());
    findings.extend(records::duplicates_bounded(input, &tally.duplicates));
    let (rebalances, stable_spans) = rebalance::rebalances(entries, input);
    let (convergence, convergence_ms) = rebalance::convergence(&f, &stable_spans);
    findings.push(convergence);
    findings.extend(rebalance::rebalances_bounded(input, &rebalances));
    Analysis {
        findings,
        intervals: f.intervals,
        rebalances,
        duplicates: tally.duplicates,
        produced: tally.produced,
        processed: tally.processed,
        forgotten: tally.forgotten,
        convergence_ms,
        final_offsets,
    }
}
