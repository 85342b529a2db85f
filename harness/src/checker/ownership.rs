//! Ownership: no partition owned by two members at once, and records processed and offsets
//! committed only for partitions owned.

use super::facts::{Facts, acted_at, was_cut_off};
use super::{Finder, Finding, secs};
use crate::journal::Event;

/// An overlap is tolerated only when the earlier owner had been cut off before the other got
/// the partition and did nothing with it during the overlap (see the module docs of the
/// checker).
pub(super) fn exclusive_ownership(f: &Facts<'_>) -> Finding {
    let start = f.start;
    let mut excl = Finder::new("exclusive-ownership");
    let mut zombies = 0u64;
    for (tp, ivs) in &f.by_tp {
        for (i, a) in ivs.iter().enumerate() {
            for b in &ivs[i + 1..] {
                if b.member == a.member || b.start >= a.end {
                    continue;
                }
                // `a` started first (sorted); they overlap on [b.start, min(a.end, b.end)].
                let (w0, w1) = (b.start, a.end.min(b.end));
                let a_acted = f
                    .activity
                    .get(&(a.member.clone(), tp.clone()))
                    .is_some_and(|ts| ts.iter().any(|t| *t > w0 && *t <= w1));
                if was_cut_off(&f.cut, &a.member, b.start) && !a_acted {
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
    excl.finish(
        format!(
            "no partition owned by two members at once{}",
            if zombies > 0 {
                format!(" ({zombies} overlap(s) with a cut-off member that did nothing with the partition)")
            } else {
                String::new()
            }
        ),
        |n| format!("{n} overlapping ownership(s)"),
    )
}

/// Records are judged at their delivery, commits at their request (with a grace, and
/// [`Facts::answered_late`] for a commit answered after a loss).
pub(super) fn acts_only_while_owned(f: &Facts<'_>) -> Finding {
    let start = f.start;
    let grace = f.input.commit_grace.as_micros() as u64;
    let mut outside = Finder::new("acts-only-while-owned");
    for e in f.entries {
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
                if !f.owned_at(&e.source, &tp, at, 0) {
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
                        if !f.owned_at(&e.source, &tp, at, grace)
                            && !f.answered_late(&e.source, &tp, e.ts, *generation)
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
    outside.finish(
        "records processed and offsets committed only for owned partitions".into(),
        |n| format!("{n} record run(s) or commit(s) for partitions not owned"),
    )
}
