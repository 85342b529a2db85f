//! Rebalance measurement (from the triggering change to every member consuming again, with
//! the rounds it took), convergence after the last fault, and the rebalance bound.

use std::collections::BTreeSet;

use super::facts::Facts;
use super::stability::Stability;
use super::{CheckInput, Finding, Rebalance, ms, secs};
use crate::journal::{Entry, Event};

/// Stability over time: rebalance episodes and the spans in which the group was stable.
pub(super) fn rebalances(
    entries: &[Entry],
    input: &CheckInput,
) -> (Vec<Rebalance>, Vec<(u64, u64)>) {
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

/// After the last fault of the timeline the group is stable (for at least a second) within
/// the bound; returns the time it took.
pub(super) fn convergence(f: &Facts<'_>, stable_spans: &[(u64, u64)]) -> (Finding, Option<u64>) {
    let input = f.input;
    let last_fault = f
        .entries
        .iter()
        .filter(|e| matches!(e.event, Event::Chaos { .. }) && e.ts <= input.timeline_end_ts)
        .map(|e| e.ts)
        .max();
    let convergence_ms = last_fault.and_then(|fault| {
        stable_spans
            .iter()
            .find(|(s, e)| *e > fault && *e - (*s).max(fault) >= 1_000_000)
            .map(|(s, _)| ms((*s).max(fault), fault))
    });
    let bound_ms = input.convergence_bound.as_millis() as u64;
    let finding = match (last_fault, convergence_ms) {
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
        (Some(fault), None) => Finding {
            check: "convergence".into(),
            passed: false,
            summary: format!(
                "not stable after the last fault at {} (bound {bound_ms} ms)",
                secs(fault, f.start)
            ),
            evidence: Vec::new(),
        },
    };
    (finding, convergence_ms)
}

/// The scenario's bound on rebalance latency, when it sets one.
pub(super) fn rebalances_bounded(input: &CheckInput, rebalances: &[Rebalance]) -> Option<Finding> {
    let bound_ms = input.max_rebalance?.as_millis() as u64;
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
    Some(Finding {
        check: "rebalances-bounded".into(),
        passed: slow.is_empty(),
        summary: format!(
            "longest rebalance {max} ms (bound {bound_ms} ms, {} rebalances)",
            rebalances.len()
        ),
        evidence: slow,
    })
}
