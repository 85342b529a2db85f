//! The live stability tracker: the group's state as the journal tells it, entry by entry. The
//! runner follows a run with it (for `when = "stable"` triggers), the checker measures
//! rebalances with it.

use std::collections::{BTreeMap, BTreeSet};

use super::Tp;
use crate::journal::{Entry, Event};

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
