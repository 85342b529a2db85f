//! Records and offsets: nothing lost, duplicates explained (and bounded), commits never go
//! backwards, and the final commit at the end of every partition.

use std::collections::BTreeMap;

use super::facts::{Facts, acted_at};
use super::{CheckInput, Duplicates, Finder, Finding, Interval, Tp, secs};
use crate::journal::{Entry, Event, Offsets};

/// What the records add up to, and the two findings that come from the same count.
pub(super) struct Tally {
    pub(super) produced: u64,
    pub(super) processed: u64,
    pub(super) forgotten: u64,
    pub(super) duplicates: Duplicates,
    /// Per partition: its epoch (forgets so far) and the end offset in it.
    pub(super) end_offsets: BTreeMap<Tp, (usize, i64)>,
    pub(super) nothing_lost: Finding,
    pub(super) duplicates_explained: Finding,
}

/// Every acknowledged produced record is processed at least once; each extra delivery is
/// attributed to the hand-over between the two. Records a restarted in-memory broker forgot
/// are excluded, and offsets counted per epoch.
pub(super) fn tally(f: &Facts<'_>) -> Tally {
    let mut produced: BTreeMap<Tp, Vec<(i64, i64, u64)>> = BTreeMap::new();
    let mut produced_n = 0u64;
    let mut forgotten_n = 0u64;
    let mut end_offsets: BTreeMap<Tp, (usize, i64)> = BTreeMap::new();
    for e in f.entries {
        if let Event::Produced {
            topic,
            partition,
            first,
            last,
        } = &e.event
        {
            let tp = (topic.clone(), *partition);
            let n = (last - first + 1).max(0) as u64;
            if f.forgotten_after(&tp, e.ts) {
                forgotten_n += n;
            } else {
                produced_n += n;
                produced
                    .entry(tp.clone())
                    .or_default()
                    .push((*first, *last, e.ts));
            }
            let ep = f.epoch(&tp, e.ts);
            let ent = end_offsets.entry(tp).or_insert((ep, 0));
            if ep > ent.0 {
                *ent = (ep, 0);
            }
            ent.1 = ent.1.max(last + 1);
        }
    }
    // Processed offsets of the current epoch of each partition.
    let mut processed_runs: BTreeMap<Tp, Vec<(i64, i64, String, u64)>> = BTreeMap::new();
    for e in f.entries {
        if let Event::Processed {
            topic,
            partition,
            first,
            last,
            ..
        } = &e.event
        {
            let tp = (topic.clone(), *partition);
            if f.epoch(&tp, e.ts) == f.final_epoch(&tp) {
                // A record a member read is in the log even if its produce was never
                // acknowledged (the answer lost to a broker restart after the write, which
                // Kafka allows): the end is past it, and a commit there is at the end.
                if let Some(end) = end_offsets.get_mut(&tp) {
                    end.1 = end.1.max(last + 1);
                }
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
        for (first, last, m, ts) in processed_runs.get(tp).into_iter().flatten() {
            for o in *first..=*last {
                counts.entry(o).or_default().push((m.clone(), *ts));
            }
        }
        let mut missing = Vec::new();
        for (first, last, _) in runs {
            for o in *first..=*last {
                match counts.get(&o) {
                    None => missing.push(o),
                    Some(v) => {
                        processed_distinct += 1;
                        if v.len() > 1 {
                            for w in v.windows(2) {
                                dups.total += 1;
                                let cause = duplicate_cause(&f.by_tp, tp, &w[0], &w[1], f.start);
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
    let nothing_lost = lost.finish(
        format!(
            "all {produced_n} acknowledged records processed{}",
            if forgotten_n > 0 {
                format!(" ({forgotten_n} more forgotten by a restarted in-memory broker)")
            } else {
                String::new()
            }
        ),
        |n| format!("records lost on {n} partition(s)"),
    );
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
    let duplicates_explained = unexplained.finish(dup_summary, |n| {
        format!("{n} duplicate(s) without a hand-over")
    });
    Tally {
        produced: produced_n,
        processed: processed_distinct,
        forgotten: forgotten_n,
        duplicates: dups,
        end_offsets,
        nothing_lost,
        duplicates_explained,
    }
}

/// The scenario's bound on duplicates, when it sets one.
pub(super) fn duplicates_bounded(input: &CheckInput, dups: &Duplicates) -> Option<Finding> {
    let bound = input.max_duplicates?;
    Some(Finding {
        check: "duplicates-bounded".into(),
        passed: dups.total <= bound,
        summary: format!("{} duplicates (bound {bound})", dups.total),
        evidence: Vec::new(),
    })
}

/// Committed offsets never go backwards, as members report them and as the broker does.
/// Members' commits are ordered by their requests: the coordinator applies commits of one
/// partition in generation order, and a member requests one only while in the generation.
pub(super) fn commits_never_go_backwards(f: &Facts<'_>) -> Finding {
    let start = f.start;
    let mut back = Finder::new("commits-never-go-backwards");
    for source in ["members", "broker"] {
        let mut commits: Vec<(u64, &Entry, &Offsets)> = f
            .entries
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
                        let reset = f.forgotten_between(&tp, *prev_ts, at);
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
    back.finish("committed offsets never went backwards".into(), |n| {
        format!("{n} commit(s) went backwards")
    })
}

/// The final committed offset (the broker's, observed after the drain) equals the end, per
/// partition; also returns both, by partition name.
pub(super) fn final_commit_at_end(
    f: &Facts<'_>,
    end_offsets: &BTreeMap<Tp, (usize, i64)>,
) -> (Finding, BTreeMap<String, (i64, i64)>) {
    let mut final_offsets = BTreeMap::new();
    let last_observed: BTreeMap<Tp, i64> = f
        .entries
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
    for (tp, (_, end)) in end_offsets {
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
    let finding = final_ok.finish(
        format!(
            "final committed offset equals the end offset on all {} partitions",
            end_offsets.len()
        ),
        |n| format!("{n} partition(s) not committed to the end"),
    );
    (finding, final_offsets)
}

/// Why a record was processed again: the hand-over between the two deliveries.
fn duplicate_cause(
    by_tp: &BTreeMap<Tp, Vec<Interval>>,
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
    if std::ptr::eq(a, b) {
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
