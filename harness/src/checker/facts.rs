//! What every check reads, gathered once from the journal: ownership intervals, when members
//! were cut off, when they acted on each partition, and when a restarted in-memory broker
//! forgot records.

use std::collections::{BTreeMap, BTreeSet};

use super::{CheckInput, Interval, Tp};
use crate::journal::{Entry, Event};

/// The facts of one journal.
pub(super) struct Facts<'a> {
    pub(super) entries: &'a [Entry],
    pub(super) input: &'a CheckInput,
    /// When the run started (the origin of the times in findings).
    pub(super) start: u64,
    /// Every ownership interval, sorted by partition and start.
    pub(super) intervals: Vec<Interval>,
    /// The same, per partition.
    pub(super) by_tp: BTreeMap<Tp, Vec<Interval>>,
    /// Cut-off windows per member (`*` for everyone: a broker fault).
    pub(super) cut: BTreeMap<String, Vec<(u64, u64)>>,
    /// When each member processed or committed each partition (see [`acted_at`]).
    pub(super) activity: BTreeMap<(String, Tp), Vec<u64>>,
    /// When a restarted in-memory broker forgot each partition's records.
    pub(super) forgotten_at: BTreeMap<Tp, Vec<u64>>,
}

impl<'a> Facts<'a> {
    pub(super) fn gather(entries: &'a [Entry], input: &'a CheckInput) -> Self {
        let intervals = intervals(entries, input.end_ts);
        let mut by_tp: BTreeMap<Tp, Vec<Interval>> = BTreeMap::new();
        for i in &intervals {
            by_tp
                .entry((i.topic.clone(), i.partition))
                .or_default()
                .push(i.clone());
        }
        let mut activity: BTreeMap<(String, Tp), Vec<u64>> = BTreeMap::new();
        let mut forgotten_at: BTreeMap<Tp, Vec<u64>> = BTreeMap::new();
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
                Event::Forgotten { topic, partitions } => {
                    for p in partitions {
                        forgotten_at
                            .entry((topic.clone(), *p))
                            .or_default()
                            .push(e.ts);
                    }
                }
                _ => {}
            }
        }
        Facts {
            entries,
            input,
            start: input.start_ts,
            cut: cutoff_windows(entries, input.end_ts),
            intervals,
            by_tp,
            activity,
            forgotten_at,
        }
    }

    /// Whether `member` owned `tp` at `ts` (or up to `grace` after an interval ended).
    pub(super) fn owned_at(&self, member: &str, tp: &Tp, ts: u64, grace: u64) -> bool {
        self.by_tp.get(tp).is_some_and(|v| {
            v.iter()
                .any(|i| i.member == member && i.start <= ts && ts <= i.end + grace)
        })
    }

    /// Whether a commit answered at `ts` after the member lost `tp` was valid when applied.
    ///
    /// A commit sent while the member owned the partition may be answered after it gave the
    /// partition up as lost (a coordinator failing over holds it for seconds). The broker
    /// accepts a commit only in the group's current generation, so one acknowledged in the
    /// generation of the member's last ownership, with no other member owning the partition
    /// since, was valid when it was applied (the Java client completes such commits too, after
    /// onPartitionsLost).
    pub(super) fn answered_late(&self, member: &str, tp: &Tp, ts: u64, generation: i32) -> bool {
        self.by_tp.get(tp).is_some_and(|v| {
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
    }

    /// Whether `tp`'s records were forgotten after `ts`.
    pub(super) fn forgotten_after(&self, tp: &Tp, ts: u64) -> bool {
        self.forgotten_at
            .get(tp)
            .is_some_and(|v| v.iter().any(|f| *f > ts))
    }

    /// Whether `tp`'s records were forgotten in `(from, to]`.
    pub(super) fn forgotten_between(&self, tp: &Tp, from: u64, to: u64) -> bool {
        self.forgotten_at
            .get(tp)
            .is_some_and(|v| v.iter().any(|f| *f > from && *f <= to))
    }

    /// Offsets are numbered afresh after a forget: the number of forgets up to `ts`.
    pub(super) fn epoch(&self, tp: &Tp, ts: u64) -> usize {
        self.forgotten_at
            .get(tp)
            .map_or(0, |v| v.iter().filter(|f| **f <= ts).count())
    }

    /// The number of forgets of `tp` in the whole run.
    pub(super) fn final_epoch(&self, tp: &Tp) -> usize {
        self.forgotten_at.get(tp).map_or(0, Vec::len)
    }
}

/// When a member acted: a record run at its delivery, a commit at its request (the entry is
/// written when the answer arrives, seconds later for a member frozen meanwhile), anything else
/// when it was journaled.
pub(super) fn acted_at(e: &Entry) -> u64 {
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

pub(super) fn was_cut_off(
    windows: &BTreeMap<String, Vec<(u64, u64)>>,
    member: &str,
    at: u64,
) -> bool {
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
