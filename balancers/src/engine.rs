//! The sticky engine shared by `sticky`, `cooperative-sticky` and the weighted balancer.
//!
//! Priorities, in order (Java `AbstractStickyAssignor`, KIP-54, KIP-881):
//! 1. **Balance.** Members with identical subscriptions form a *class*; partitions whose topic is
//!    subscribed by the same set of classes form a *signature*. How many partitions of each
//!    signature each class gets is decided first: owned partitions stay where they are, the rest
//!    are poured into the lowest classes (water-filling, most constrained signatures first), then
//!    partitions are shifted between classes while a single move would still improve balance.
//!    Within a class, counts differ by at most one. The result meets Java's balance rule: counts
//!    differ by at most one, or no single partition move could reduce the difference. Among the
//!    most balanced class totals, the one that moves fewest partitions is then chosen by a
//!    minimum-cost flow (`settle`; groups of moderate size).
//! 2. **Rack locality** (KIP-881), when members report racks, partitions have replica racks, the
//!    two intersect and not every partition has the same racks. Groups of up to
//!    [`MEMBER_SETTLE_MAX`] members and [`RACK_SETTLE_MAX`] partitions get their whole plan from
//!    one minimum-cost flow (`settle_racks`): the best plan in the order balance, locality,
//!    moves, eager and cooperative alike (the partitions a cooperative round withholds are free
//!    in the next, where the same plan is best again and moves nothing). Larger groups, eager
//!    (`realign_racks`): rack-matched owned partitions are kept first, then members receive
//!    rack-matched free partitions, then their mismatched owned ones, then anything, so
//!    misaligned owners are realigned as Java's sticky assignor does. Larger groups,
//!    cooperative: owned partitions are kept (matched ones first, so a member over its share
//!    sheds mismatched ones), and racks choose among free partitions only: realigned greedily,
//!    a partition moved for locality would be withheld for a round, and the next round's greedy
//!    choice could differ and keep the group moving.
//! 3. **Stickiness.** Members keep what they own up to their share; the members that get the
//!    extra partition of an uneven split are those that already own more than the base share.
//!
//! Members are *slots* here: one per member, or one per unit of weight for the weighted
//! balancer. Every step is deterministic and linear in partitions plus members, except the
//! class-level rebalancing, which is quadratic in the number of distinct subscriptions.

use rustc_hash::FxHashMap;

use crate::flow::Mcmf;
use crate::plan::TopicTable;

const NONE: u32 = u32::MAX;

/// One slot of the engine.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// Subscription class.
    pub(crate) class: u32,
    /// Partitions the slot validly owns (after generation resolution), in claim order.
    pub(crate) owned: Vec<u32>,
    /// Rack id in the topic table's numbering; `Some(u32::MAX)` for a rack no partition has.
    pub(crate) rack: Option<u32>,
}

/// Per signature: the classes that may take its partitions and how many each gets.
struct Sig {
    classes: Vec<u32>,
    total: u64,
    /// Units each class keeps from what its members own.
    owned: Vec<u64>,
    /// Units each class receives that its members do not own.
    poured: Vec<u64>,
}

/// Runs the engine; returns each slot's partitions, ascending.
pub(crate) fn balance(
    table: &TopicTable,
    classes: &[Vec<u32>],
    slots: &[Slot],
    realign_racks: bool,
) -> Vec<Vec<u32>> {
    let n_parts = table.partitions() as usize;
    let k = classes.len();
    let mut class_slots: Vec<Vec<u32>> = vec![Vec::new(); k];
    for (i, s) in slots.iter().enumerate() {
        class_slots[s.class as usize].push(i as u32);
    }

    // Signatures: topics grouped by the set of classes that subscribe to them.
    let mut topic_classes: Vec<Vec<u32>> = vec![Vec::new(); table.len()];
    for (c, ts) in classes.iter().enumerate() {
        if class_slots[c].is_empty() {
            continue;
        }
        for &t in ts {
            topic_classes[t as usize].push(c as u32);
        }
    }
    let mut sig_of: FxHashMap<&[u32], u32> = FxHashMap::default();
    let mut sigs: Vec<Sig> = Vec::new();
    let mut topic_sig = vec![NONE; table.len()];
    for (t, cs) in topic_classes.iter().enumerate() {
        if cs.is_empty() {
            continue;
        }
        let s = *sig_of.entry(cs.as_slice()).or_insert_with(|| {
            sigs.push(Sig {
                classes: cs.clone(),
                total: 0,
                owned: vec![0; cs.len()],
                poured: vec![0; cs.len()],
            });
            sigs.len() as u32 - 1
        });
        topic_sig[t] = s;
        sigs[s as usize].total += u64::from(table.range(t as u32).len() as u32);
    }
    let mut part_sig = vec![NONE; n_parts];
    for (t, &s) in topic_sig.iter().enumerate() {
        if s != NONE {
            part_sig[table.range(t as u32).start as usize..table.range(t as u32).end as usize]
                .fill(s);
        }
    }
    let pos_in = |sig: &Sig, c: u32| sig.classes.iter().position(|&x| x == c).unwrap_or(0);

    // Class totals start from what members own.
    let sizes: Vec<u64> = class_slots.iter().map(|v| v.len() as u64).collect();
    let mut totals = vec![0u64; k];
    for s in slots {
        for &p in &s.owned {
            let sg = part_sig[p as usize];
            if sg == NONE {
                continue;
            }
            let sig = &mut sigs[sg as usize];
            let j = pos_in(sig, s.class);
            sig.owned[j] += 1;
            totals[s.class as usize] += 1;
        }
    }

    // Pour the unowned partitions, most constrained signatures first, into the least loaded
    // eligible *members* (water-filling over member loads, which start at what each member owns).
    // Filling members rather than class averages gives units to the classes whose owners would
    // otherwise have to shed partitions, which is what keeps movement minimal and lets a
    // cooperative group settle in two rounds.
    let mut member_load: Vec<u64> = slots.iter().map(|s| s.owned.len() as u64).collect();
    let mut pour_order: Vec<u32> = (0..sigs.len() as u32).collect();
    pour_order.sort_by_key(|&s| {
        let eligible: u64 = sigs[s as usize]
            .classes
            .iter()
            .map(|&c| sizes[c as usize])
            .sum();
        (eligible, s)
    });
    for s in pour_order {
        let sig = &mut sigs[s as usize];
        let units = sig.total - sig.owned.iter().sum::<u64>();
        if units == 0 {
            continue;
        }
        let eligible: Vec<u32> = if sig.classes.len() == 1 {
            class_slots[sig.classes[0] as usize].clone()
        } else {
            let mut e: Vec<u32> = sig
                .classes
                .iter()
                .flat_map(|&c| class_slots[c as usize].iter().copied())
                .collect();
            e.sort_unstable();
            e
        };
        water_fill_members(units, &eligible, &mut member_load);
        // Attribute what each class's members received to the class.
        for (j, &c) in sig.classes.iter().enumerate() {
            let got: u64 = class_slots[c as usize]
                .iter()
                .map(|&i| member_load[i as usize])
                .sum::<u64>()
                - totals[c as usize];
            sig.poured[j] += got;
            totals[c as usize] += got;
        }
    }

    let racks = table.racks();
    let rack_aware = racks.is_some_and(|r| rack_aware(r, slots, n_parts));
    let owned_before: Vec<Vec<u64>> = sigs.iter().map(|s| s.owned.clone()).collect();
    rebalance_classes(&mut sigs, &mut totals, &sizes);
    // Small rack-aware groups: the whole plan in one flow.
    if let Some(r) = racks.filter(|_| rack_aware)
        && let Some(plan) = settle_racks(r, &sigs, slots, &part_sig, &totals, &sizes)
    {
        return plan;
    }
    // Small groups without racks: members' targets and what each keeps in one flow.
    let member_plan = if rack_aware {
        None
    } else {
        settle_members(
            &mut sigs,
            &class_slots,
            slots,
            &part_sig,
            &mut totals,
            &sizes,
        )
    };
    let mut owned_counts: Vec<Vec<u64>> = vec![Vec::new(); k];
    for sl in slots {
        owned_counts[sl.class as usize].push(sl.owned.len() as u64);
    }
    if member_plan.is_none()
        && !settle(&mut sigs, &owned_before, &owned_counts, &mut totals, &sizes)
    {
        resplit(&mut sigs, &owned_before, &totals);
    }

    // Member targets within each class: base share, the extras to members already owning more.
    let mut target = vec![0u64; slots.len()];
    for (c, members) in class_slots.iter().enumerate() {
        if members.is_empty() || member_plan.is_some() {
            continue;
        }
        let m = members.len() as u64;
        let base = totals[c] / m;
        let mut extra = totals[c] % m;
        for &i in members {
            target[i as usize] = base;
        }
        let mut over: Vec<u32> = members
            .iter()
            .copied()
            .filter(|&i| slots[i as usize].owned.len() as u64 > base)
            .collect();
        if extra > 0 && (extra as usize) < over.len() {
            // More owners over the base share than extras: the extras go to those that can keep
            // the most, counting only owned partitions of signatures the class keeps units of.
            let keepable = |i: u32| -> usize {
                slots[i as usize]
                    .owned
                    .iter()
                    .filter(|&&p| {
                        let sg = part_sig[p as usize];
                        sg != NONE && {
                            let sig = &sigs[sg as usize];
                            sig.owned[pos_in(sig, c as u32)] > 0
                        }
                    })
                    .count()
            };
            over.sort_by_cached_key(|&i| std::cmp::Reverse(keepable(i)));
        }
        for &i in &over {
            if extra == 0 {
                break;
            }
            target[i as usize] += 1;
            extra -= 1;
        }
        for &i in members {
            if extra == 0 {
                break;
            }
            if target[i as usize] == base {
                target[i as usize] += 1;
                extra -= 1;
            }
        }
    }

    if let Some((t, _)) = &member_plan {
        target.clone_from(t);
    }

    // Units each class still needs of each signature.
    let mut need: Vec<Vec<u64>> = sigs
        .iter()
        .map(|s| s.owned.iter().zip(&s.poured).map(|(a, b)| a + b).collect())
        .collect();
    let need_idx = |s: u32, c: u32| pos_in(&sigs[s as usize], c);

    let mut taken = vec![false; n_parts];
    let mut assigned: Vec<Vec<u32>> = slots
        .iter()
        .zip(&target)
        .map(|(_, &t)| Vec::with_capacity(t as usize))
        .collect();

    let matched = |p: u32, rack: Option<u32>| -> bool {
        match (racks, rack) {
            (Some(r), Some(id)) => r.of(p).contains(&id),
            _ => false,
        }
    };

    // Java `RackInfo.racksMismatch`: only a member with a rack can be on the wrong one, so a
    // member without a rack keeps its owned partitions in the first pass, and members with a
    // rack cannot take them away for locality.
    let mismatched = |p: u32, rack: Option<u32>| rack.is_some() && !matched(p, rack);

    // Without racks, which member keeps which owned unit is settled per class first, where
    // that choice matters (`keep_quotas`).
    let mut quotas = match member_plan {
        Some((_, quotas)) => quotas,
        None if rack_aware => vec![None; slots.len()],
        None => keep_quotas(&class_slots, slots, &target, &part_sig, &sigs, &need),
    };

    // Keep owned partitions: rack-matched ones first when rack-aware.
    let mut keep = |only_matched: bool,
                    assigned: &mut Vec<Vec<u32>>,
                    taken: &mut Vec<bool>,
                    need: &mut Vec<Vec<u64>>| {
        for (i, s) in slots.iter().enumerate() {
            for &p in &s.owned {
                if assigned[i].len() as u64 >= target[i] {
                    break;
                }
                if taken[p as usize] || (only_matched && mismatched(p, s.rack)) {
                    continue;
                }
                let sg = part_sig[p as usize];
                if sg == NONE {
                    continue;
                }
                let j = need_idx(sg, s.class);
                if need[sg as usize][j] == 0 {
                    continue;
                }
                if let Some(q) = &mut quotas[i] {
                    match q.iter_mut().find(|(x, _)| *x == sg) {
                        Some((_, left)) if *left > 0 => *left -= 1,
                        _ => continue,
                    }
                }
                need[sg as usize][j] -= 1;
                taken[p as usize] = true;
                assigned[i].push(p);
            }
        }
    };
    if rack_aware {
        // Rack-matched owned partitions first, so that a member over its share sheds the
        // mismatched ones.
        keep(true, &mut assigned, &mut taken, &mut need);
        if realign_racks {
            // Eager: rack locality before stickiness (Java's sticky assignor realigns owned
            // partitions that are on the wrong rack).
            if let Some(r) = racks {
                fill_matched(
                    r,
                    classes,
                    &class_slots,
                    slots,
                    &target,
                    &part_sig,
                    &sigs,
                    &mut need,
                    &mut taken,
                    &mut assigned,
                );
            }
            keep(false, &mut assigned, &mut taken, &mut need);
        } else {
            // Cooperative: every owned partition within the member's share is kept, and only free
            // partitions are matched to racks. A partition moved for locality would be withheld,
            // and the next round could realign again: keeping owned partitions is what lets a
            // cooperative group settle in two rounds.
            keep(false, &mut assigned, &mut taken, &mut need);
            if let Some(r) = racks {
                fill_matched(
                    r,
                    classes,
                    &class_slots,
                    slots,
                    &target,
                    &part_sig,
                    &sigs,
                    &mut need,
                    &mut taken,
                    &mut assigned,
                );
            }
        }
    } else {
        keep(false, &mut assigned, &mut taken, &mut need);
    }

    // Fill the rest, class by class, topic by topic, round-robin over members with room.
    let mut cursor: Vec<u32> = (0..table.len() as u32)
        .map(|t| table.range(t).start)
        .collect();
    let mut tile: Vec<u32> = Vec::new();
    let mut before: Vec<u32> = Vec::new();
    for (c, members) in class_slots.iter().enumerate() {
        // Round-robin over the members with room, in order, one partition each per round; a
        // member leaves the rounds once full; partitions are taken topic by topic. Handing
        // them out one at a time wrote to every member's list in turn (half of a fresh
        // 1M-partition assignment in those scattered writes): instead a few rounds' partitions
        // are taken at a time (`tile`, small enough to stay in cache) and each member's share
        // of them is read out together.
        let active: Vec<(u32, usize)> = members
            .iter()
            .filter_map(|&i| {
                let room = target[i as usize].saturating_sub(assigned[i as usize].len() as u64);
                (room > 0).then_some((i, room as usize))
            })
            .collect();
        if active.is_empty() {
            continue;
        }
        // Round `r` hands one partition to each member with more than `r` of room, in order:
        // it starts at `start[r]`, and a member's place in it is the number of members before
        // it still in the rounds (`before[r]`).
        let rounds = active.iter().map(|&(_, r)| r).max().unwrap_or(0);
        let mut start = vec![0usize; rounds + 1];
        for &(_, room) in &active {
            start[room] += 1;
        }
        let mut in_rounds = active.len();
        let mut at = 0usize;
        for s in &mut start {
            let leaving = *s;
            *s = at;
            in_rounds -= leaving;
            at += in_rounds;
        }
        before.clear();
        before.resize(rounds, 0);
        let mut local = [0u32; 32];
        // Rounds per tile: about 32,768 partitions.
        let per_tile = (32_768 / active.len()).max(1);
        let topics = &classes[c];
        let mut ti = 0usize;
        let mut r0 = 0usize;
        while r0 < rounds {
            let r1 = (r0 + per_tile).min(rounds);
            let want = start[r1] - start[r0];
            tile.clear();
            while tile.len() < want && ti < topics.len() {
                let t = topics[ti] as usize;
                let sg = topic_sig[t];
                if sg == NONE {
                    ti += 1;
                    continue;
                }
                let j = need_idx(sg, c as u32);
                let end = table.range(t as u32).end;
                // The cursor and the need in locals: through the vectors, every push to the
                // tile (which could alias them, as far as the compiler knows) reloaded both.
                let need_t = &mut need[sg as usize][j];
                let (mut p, mut left) = (cursor[t], *need_t);
                while tile.len() < want && left > 0 && p < end {
                    if !std::mem::replace(&mut taken[p as usize], true) {
                        left -= 1;
                        tile.push(p);
                    }
                    p += 1;
                }
                cursor[t] = p;
                *need_t = left;
                if tile.len() < want {
                    ti += 1;
                }
            }
            // A member's partitions of this tile go through a local array, appended to its
            // vector a chunk at a time: pushed one at a time, the vector's length was
            // reloaded and stored around every partition (a written `u32` could alias it, as
            // far as the compiler knows), at every member of the group in turn.
            let (tile, start) = (&tile[..], &start[..]);
            let before = &mut before[..];
            for &(i, room) in &active {
                let out = &mut assigned[i as usize];
                let mut r = r0;
                let end = r1.min(room);
                while r < end {
                    let stop = end.min(r + local.len());
                    let mut n = 0;
                    for r in r..stop {
                        // Short of partitions (the class plan and the targets disagree), the
                        // last round ends early: the safety net below gives out what is left.
                        if let Some(&p) = tile.get(start[r] + before[r] as usize - start[r0]) {
                            local[n] = p;
                            n += 1;
                        }
                        before[r] += 1;
                    }
                    out.extend_from_slice(&local[..n]);
                    r = stop;
                }
            }
            r0 = r1;
        }
        // Every member with room took one partition of each round it had room for; a member
        // over target would mean the class totals and targets disagree.
        debug_assert!(
            members
                .iter()
                .all(|&i| assigned[i as usize].len() as u64 <= target[i as usize] + 1)
        );
    }

    // Safety net: the steps above assign every subscribed partition exactly once when the
    // class plan is consistent. If a bug ever left one out, give it to the least loaded
    // eligible member rather than lose it.
    for (p, &sg) in part_sig.iter().enumerate() {
        if sg == NONE || taken[p] {
            continue;
        }
        debug_assert!(false, "partition {p} was left unassigned");
        let best = sigs[sg as usize]
            .classes
            .iter()
            .flat_map(|&c| class_slots[c as usize].iter().copied())
            .min_by_key(|&i| (assigned[i as usize].len(), i));
        if let Some(i) = best {
            assigned[i as usize].push(p as u32);
        }
    }

    for a in &mut assigned {
        a.sort_unstable();
    }
    assigned
}

/// [`settle`] at the level of members, for groups of up to [`MEMBER_SETTLE_MAX`] members
/// without racks: one minimum-cost flow decides each member's count and which of its owned
/// units it keeps. The class-level flow counts what a class keeps without its members' shares:
/// it may keep a unit that only a member already over its share owns, which then moves anyway
/// (seen in generated groups with unequal subscriptions: one partition more than Java's
/// `StickyAssignor` at equal balance). Units flow from signatures to members directly (a unit
/// the member owns, free) or through the member's class (any unit, cost one: it moves or was
/// free); members' loads cost as in [`settle`], by level, the levels below the one
/// [`rebalance_classes`] found forced. Returns the targets and, per member, the units of each
/// signature it keeps, and sets the classes' totals and split; `None`, changing nothing, for
/// larger groups or when the flow cannot meet the levels.
#[allow(clippy::type_complexity)]
fn settle_members(
    sigs: &mut [Sig],
    class_slots: &[Vec<u32>],
    slots: &[Slot],
    part_sig: &[u32],
    totals: &mut [u64],
    sizes: &[u64],
) -> Option<(Vec<u64>, Vec<Option<Vec<(u32, u64)>>>)> {
    let n = slots.len();
    let total: u64 = sigs.iter().map(|s| s.total).sum();
    if sigs.iter().all(|s| s.classes.len() == 1) || n > MEMBER_SETTLE_MAX || total > 200_000 {
        return None;
    }
    let (k, n_sigs) = (class_slots.len(), sigs.len());
    let (big, forced) = level_costs(total, 1, totals, sizes)?;
    let class_node = |c: usize| 2 + n_sigs + c;
    let member_node = |i: usize| 2 + n_sigs + k + i;
    let mut g = Mcmf::new(2 + n_sigs + k + n);
    let mut other: Vec<Vec<usize>> = Vec::with_capacity(n_sigs);
    for (s, sig) in sigs.iter().enumerate() {
        g.edge(0, 2 + s, sig.total as i64, 0);
        other.push(
            sig.classes
                .iter()
                .map(|&c| g.edge(2 + s, class_node(c as usize), sig.total as i64, 1))
                .collect(),
        );
    }
    // A member's owned units by signature, on signatures its class takes.
    let mut keep: Vec<Vec<(u32, usize)>> = Vec::with_capacity(n);
    for (i, sl) in slots.iter().enumerate() {
        let mut by_sig: Vec<(u32, i64)> = Vec::new();
        for &p in &sl.owned {
            let sg = part_sig[p as usize];
            if sg == NONE || !sigs[sg as usize].classes.contains(&sl.class) {
                continue;
            }
            match by_sig.iter_mut().find(|(x, _)| *x == sg) {
                Some((_, c)) => *c += 1,
                None => by_sig.push((sg, 1)),
            }
        }
        keep.push(
            by_sig
                .into_iter()
                .map(|(sg, c)| (sg, g.edge(2 + sg as usize, member_node(i), c, 0)))
                .collect(),
        );
    }
    let mut into_sink: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut lowest_of = vec![0u64; n];
    for (c, members) in class_slots.iter().enumerate() {
        let m = sizes[c];
        if m == 0 {
            continue;
        }
        let q = totals[c] / m;
        for &i in members {
            let i = i as usize;
            g.edge(class_node(c), member_node(i), total as i64, 0);
            (into_sink[i], lowest_of[i]) = member_levels(&mut g, member_node(i), q, big, forced);
        }
    }
    let (flow, _) = g.run(0, 1);
    if !levels_met(&g, flow, total, &into_sink, &lowest_of) {
        // The chains' totals are feasible within these levels, so this cannot happen.
        debug_assert!(false, "member settle flow {flow} != {total}");
        return None;
    }
    let target: Vec<u64> = into_sink
        .iter()
        .map(|arcs| arcs.iter().map(|&e| g.flow(e) as u64).sum())
        .collect();
    for (s, sig) in sigs.iter_mut().enumerate() {
        for (j, &c) in sig.classes.iter().enumerate() {
            sig.poured[j] = g.flow(other[s][j]) as u64;
            sig.owned[j] = 0;
            for &i in &class_slots[c as usize] {
                if let Some(&(_, e)) = keep[i as usize].iter().find(|(x, _)| *x == s as u32) {
                    sig.owned[j] += g.flow(e) as u64;
                }
            }
        }
    }
    for (c, members) in class_slots.iter().enumerate() {
        totals[c] = members.iter().map(|&i| target[i as usize]).sum();
    }
    let quotas = keep
        .iter()
        .map(|arcs| Some(arcs.iter().map(|&(sg, e)| (sg, g.flow(e) as u64)).collect()))
        .collect();
    Some((target, quotas))
}

/// Rack-aware groups of up to [`MEMBER_SETTLE_MAX`] members and [`RACK_SETTLE_MAX`] partitions:
/// the whole plan from one minimum-cost flow, optimal in the order of KIP-881 (and of Kafka's
/// `UniformAssignor`): balance, then rack locality, then stickiness (eager; cooperative swaps the
/// last two, see the module comment). Realigning greedily (keep rack-matched owned partitions,
/// match free ones, then keep the rest) decides locality member by member: which members take
/// the extra partition of an uneven split, or which class takes a shared topic's units, is
/// settled first, and a split that scores as few moves can force both a rack mismatch and a move
/// the flow avoids (generated rack-aware groups moved one or two partitions more than Java's
/// `StickyAssignor` at equal balance and locality).
///
/// Partitions of the same signature and the same replica racks are interchangeable (*kinds*);
/// members of the same class and rack likewise (*groups*). A kind's units flow to a member that
/// owns some of them (what it keeps) or through a group (a move, or a free partition), a unit
/// costing one for the move and `total + 1` for a rack mismatch (Java `RackInfo.racksMismatch`:
/// the member has a rack the partition has no replica on); members' loads cost as in
/// [`settle_members`]. `None`, changing nothing, for larger groups or graphs.
#[allow(clippy::too_many_arguments)]
fn settle_racks(
    racks: &crate::plan::Racks,
    sigs: &[Sig],
    slots: &[Slot],
    part_sig: &[u32],
    totals: &[u64],
    sizes: &[u64],
) -> Option<Vec<Vec<u32>>> {
    let n = slots.len();
    let total: u64 = sigs.iter().map(|s| s.total).sum();
    if n > MEMBER_SETTLE_MAX || total > RACK_SETTLE_MAX {
        return None;
    }
    // A partition's racks matter only as far as members are on them: kinds are told apart by
    // the member racks among their replicas' (a bit set; groups whose members' racks number
    // 64 or more take the other path).
    let mut member_racks = 0u64;
    for sl in slots {
        match sl.rack {
            Some(r) if r != NONE && r >= 64 => return None,
            Some(r) if r != NONE => member_racks |= 1 << r,
            _ => {}
        }
    }
    let mut kind_of: FxHashMap<(u32, u64), u32> = FxHashMap::default();
    let mut kinds: Vec<(u32, u64)> = Vec::new();
    let mut kind_parts: Vec<Vec<u32>> = Vec::new();
    let mut part_kind = vec![NONE; part_sig.len()];
    for (p, &sg) in part_sig.iter().enumerate() {
        if sg == NONE {
            continue;
        }
        let on = racks
            .of(p as u32)
            .iter()
            .filter(|&&r| r < 64)
            .fold(0u64, |m, &r| m | 1 << r)
            & member_racks;
        let key = (sg, on);
        let k = *kind_of.entry(key).or_insert_with(|| {
            kinds.push(key);
            kind_parts.push(Vec::new());
            kinds.len() as u32 - 1
        });
        kind_parts[k as usize].push(p as u32);
        part_kind[p] = k;
    }
    let mut group_of: FxHashMap<(u32, Option<u32>), usize> = FxHashMap::default();
    let mut groups: Vec<(u32, Option<u32>)> = Vec::new();
    let mut group_members: Vec<Vec<usize>> = Vec::new();
    for (i, sl) in slots.iter().enumerate() {
        let key = (sl.class, sl.rack);
        let g = *group_of.entry(key).or_insert_with(|| {
            groups.push(key);
            group_members.push(Vec::new());
            groups.len() - 1
        });
        group_members[g].push(i);
    }
    if kinds.len().saturating_mul(groups.len()) > RACK_SETTLE_ARCS {
        return None;
    }
    let mismatch =
        |rack: Option<u32>, k: usize| rack.is_some_and(|r| r == NONE || kinds[k].1 & 1 << r == 0);
    // A mismatch outweighs every move.
    let (w_move, w_rack) = (1, total as i64 + 1);
    let (big, forced) = level_costs(total, w_move + w_rack, totals, sizes)?;
    let (n_kinds, n_groups) = (kinds.len(), groups.len());
    let group_node = |g: usize| 2 + n_kinds + g;
    let member_node = |i: usize| 2 + n_kinds + n_groups + i;
    let mut graph = Mcmf::new(2 + n_kinds + n_groups + n);
    // Per group, (kind, arc) of what flows in through it.
    let mut intake: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n_groups];
    for (k, &(sg, _)) in kinds.iter().enumerate() {
        let size = kind_parts[k].len() as i64;
        graph.edge(0, 2 + k, size, 0);
        for (g, &(c, rack)) in groups.iter().enumerate() {
            if sigs[sg as usize].classes.contains(&c) {
                let cost = w_move + if mismatch(rack, k) { w_rack } else { 0 };
                intake[g].push((k, graph.edge(2 + k, group_node(g), size, cost)));
            }
        }
    }
    // Per member, (kind, arc) of the owned partitions it may keep.
    let mut keep: Vec<Vec<(u32, usize)>> = Vec::with_capacity(n);
    for (i, sl) in slots.iter().enumerate() {
        let mut by_kind: Vec<(u32, i64)> = Vec::new();
        for &p in &sl.owned {
            let k = part_kind[p as usize];
            if k == NONE
                || !sigs[kinds[k as usize].0 as usize]
                    .classes
                    .contains(&sl.class)
            {
                continue;
            }
            match by_kind.iter_mut().find(|(x, _)| *x == k) {
                Some((_, c)) => *c += 1,
                None => by_kind.push((k, 1)),
            }
        }
        keep.push(
            by_kind
                .into_iter()
                .map(|(k, c)| {
                    let cost = if mismatch(sl.rack, k as usize) {
                        w_rack
                    } else {
                        0
                    };
                    (k, graph.edge(2 + k as usize, member_node(i), c, cost))
                })
                .collect(),
        );
    }
    let arcs =
        intake.iter().map(Vec::len).sum::<usize>() + keep.iter().map(Vec::len).sum::<usize>();
    if arcs > RACK_SETTLE_ARCS {
        return None;
    }
    let mut into_member = vec![0usize; n];
    let mut into_sink: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut lowest_of = vec![0u64; n];
    for (g, members) in group_members.iter().enumerate() {
        let c = groups[g].0 as usize;
        let q = totals[c] / sizes[c].max(1);
        for &i in members {
            into_member[i] = graph.edge(group_node(g), member_node(i), total as i64, 0);
            (into_sink[i], lowest_of[i]) =
                member_levels(&mut graph, member_node(i), q, big, forced);
        }
    }
    let (flow, _) = graph.run(0, 1);
    if !levels_met(&graph, flow, total, &into_sink, &lowest_of) {
        debug_assert!(false, "rack settle flow {flow} != {total}");
        return None;
    }

    let mut taken = vec![false; part_sig.len()];
    let mut assigned: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (i, sl) in slots.iter().enumerate() {
        let mut left: Vec<(u32, i64)> = keep[i].iter().map(|&(k, e)| (k, graph.flow(e))).collect();
        for &p in &sl.owned {
            let k = part_kind[p as usize];
            if let Some((_, l)) = left.iter_mut().find(|(x, l)| *x == k && *l > 0)
                && !std::mem::replace(&mut taken[p as usize], true)
            {
                *l -= 1;
                assigned[i].push(p);
            }
        }
    }
    // What flows through a group goes to its members in order, kind by kind, partitions
    // ascending: within a group every such unit costs the same.
    let mut cursor = vec![0usize; n_kinds];
    for (g, members) in group_members.iter().enumerate() {
        let mut supply: Vec<(usize, i64)> = intake[g]
            .iter()
            .map(|&(k, e)| (k, graph.flow(e)))
            .filter(|&(_, f)| f > 0)
            .collect();
        let mut at = 0usize;
        for &i in members {
            let mut want = graph.flow(into_member[i]);
            while want > 0 {
                let (k, left) = supply.get_mut(at)?;
                if *left == 0 {
                    at += 1;
                    continue;
                }
                let parts = &kind_parts[*k];
                while taken[*parts.get(cursor[*k])? as usize] {
                    cursor[*k] += 1;
                }
                let p = parts[cursor[*k]];
                taken[p as usize] = true;
                assigned[i].push(p);
                *left -= 1;
                want -= 1;
            }
        }
    }
    for a in &mut assigned {
        a.sort_unstable();
    }
    Some(assigned)
}

/// Rack-aware groups up to this many subscribed partitions are settled by [`settle_racks`]. The
/// flow pushes a few units at a time, each a shortest-path search: 128 members on 6 racks with
/// 2,000 partitions of 82 kinds took 22 ms (1.1 ms greedily), 1,000 partitions on 3 racks
/// 4.8 ms (0.7); 5,000 partitions on 6 racks would take 62 ms. Its costs reach
/// `partitions^4`, which must also stay within `i64`.
const RACK_SETTLE_MAX: u64 = 2_000;

/// ... and up to this many arcs from kinds.
const RACK_SETTLE_ARCS: usize = 6_000;

/// A member's arcs to the sink in [`settle_members`] and [`settle_racks`], its class's members
/// averaging `q` partitions: loads up to `q - 1` forced, then one arc a level up to `q + 2`,
/// costing as in [`settle`]. Returns the arcs (the forced one first, when there is one) and the
/// forced load.
fn member_levels(g: &mut Mcmf, node: usize, q: u64, big: i64, forced: i64) -> (Vec<usize>, u64) {
    let lowest = q.saturating_sub(1);
    let mut arcs = Vec::with_capacity(4);
    if lowest > 0 {
        arcs.push(g.edge(node, 1, lowest as i64, forced));
    }
    for level in lowest..=q + 1 {
        arcs.push(g.edge(node, 1, 1, big * (2 * level as i64 + 1)));
    }
    (arcs, lowest)
}

/// Whether a member-level flow placed all `total` units and filled every forced load.
fn levels_met(g: &Mcmf, flow: i64, total: u64, into_sink: &[Vec<usize>], lowest: &[u64]) -> bool {
    flow as u64 == total
        && lowest
            .iter()
            .zip(into_sink)
            .all(|(&l, arcs)| l == 0 || g.flow(arcs[0]) == l as i64)
}

/// Groups up to this many members are settled member by member ([`settle_members`]): the flow
/// pushes about three units a member one at a time, each a shortest-path search over the graph.
const MEMBER_SETTLE_MAX: usize = 128;

/// How many owned units of each signature each member keeps, for the classes where members
/// compete for them: a class keeps fewer units of a signature than its members own, and some
/// member owns units of two signatures. Kept in member order, the first member would keep the
/// scarce units up to its target even when it could reach it with others, and a member that
/// owns only scarce units would lose them: one partition moved that Java's assignor keeps in
/// place (seen in generated groups with unequal subscriptions). A maximum flow from members
/// (up to their targets) through their owned units to the class's needs keeps as many as
/// possible. `None` for a member leaves the plain order (no competition, or a class whose
/// graph would be large).
fn keep_quotas(
    class_slots: &[Vec<u32>],
    slots: &[Slot],
    target: &[u64],
    part_sig: &[u32],
    sigs: &[Sig],
    need: &[Vec<u64>],
) -> Vec<Option<Vec<(u32, u64)>>> {
    let mut quotas: Vec<Option<Vec<(u32, u64)>>> = vec![None; slots.len()];
    let pos_in = |sig: &Sig, c: u32| sig.classes.iter().position(|&x| x == c).unwrap_or(0);
    // Classes that take units of two signatures or more: only there can members compete (a
    // large group's members mostly share one subscription, and are not scanned).
    let mut wanted = vec![0u32; class_slots.len()];
    for (sg, sig) in sigs.iter().enumerate() {
        for (j, &c) in sig.classes.iter().enumerate() {
            if need[sg][j] > 0 {
                wanted[c as usize] += 1;
            }
        }
    }
    let mut class_owned = vec![0u64; sigs.len()];
    for (c, members) in class_slots.iter().enumerate() {
        if wanted[c] < 2 {
            continue;
        }
        // Each member's owned units by signature, for the signatures the class keeps some of.
        let mut owns: Vec<Vec<(u32, u64)>> = Vec::with_capacity(members.len());
        class_owned.fill(0);
        let mut mixed = false;
        for &i in members {
            let mut by_sig: Vec<(u32, u64)> = Vec::new();
            for &p in &slots[i as usize].owned {
                let sg = part_sig[p as usize];
                if sg == NONE || need[sg as usize][pos_in(&sigs[sg as usize], c as u32)] == 0 {
                    continue;
                }
                match by_sig.iter_mut().find(|(x, _)| *x == sg) {
                    Some((_, n)) => *n += 1,
                    None => by_sig.push((sg, 1)),
                }
                class_owned[sg as usize] += 1;
            }
            mixed |= by_sig.len() > 1;
            owns.push(by_sig);
        }
        let sig_list: Vec<u32> = (0..sigs.len() as u32)
            .filter(|&sg| class_owned[sg as usize] > 0)
            .collect();
        let scarce = sig_list.iter().any(|&sg| {
            class_owned[sg as usize] > need[sg as usize][pos_in(&sigs[sg as usize], c as u32)]
        });
        let arcs: usize = owns.iter().map(Vec::len).sum();
        if !mixed || !scarce || arcs > 4_000 {
            continue;
        }
        let sig_node = |sg: u32| 2 + members.len() + sig_list.binary_search(&sg).unwrap_or(0);
        let mut g = Mcmf::new(2 + members.len() + sig_list.len());
        let mut member_arcs: Vec<Vec<(u32, usize)>> = Vec::with_capacity(members.len());
        for (m, &i) in members.iter().enumerate() {
            g.edge(0, 2 + m, target[i as usize] as i64, 0);
            member_arcs.push(
                owns[m]
                    .iter()
                    .map(|&(sg, n)| (sg, g.edge(2 + m, sig_node(sg), n as i64, 0)))
                    .collect(),
            );
        }
        for &sg in &sig_list {
            let n = need[sg as usize][pos_in(&sigs[sg as usize], c as u32)];
            g.edge(sig_node(sg), 1, n as i64, 0);
        }
        g.run(0, 1);
        for (m, &i) in members.iter().enumerate() {
            quotas[i as usize] = Some(
                member_arcs[m]
                    .iter()
                    .map(|&(sg, e)| (sg, g.flow(e) as u64))
                    .collect(),
            );
        }
    }
    quotas
}

/// Adds `units` to the members `eligible` (slot numbers, ascending), raising the lowest loads
/// first; ties at the final level go to the earliest members.
fn water_fill_members(units: u64, eligible: &[u32], load: &mut [u64]) {
    if eligible.is_empty() {
        return;
    }
    let demand = |level: u64| -> u64 {
        eligible
            .iter()
            .map(|&i| level.saturating_sub(load[i as usize]))
            .fold(0u64, u64::saturating_add)
    };
    // Largest level every eligible member can be raised to.
    let (mut lo, mut hi) = (
        0u64,
        eligible
            .iter()
            .map(|&i| load[i as usize])
            .min()
            .unwrap_or(0)
            + units
            + 1,
    );
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if demand(mid) <= units {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut rest = units - demand(lo);
    for &i in eligible {
        let l = &mut load[i as usize];
        if *l < lo {
            *l = lo;
        }
    }
    for &i in eligible {
        if rest == 0 {
            break;
        }
        if load[i as usize] == lo {
            load[i as usize] += 1;
            rest -= 1;
        }
    }
    debug_assert_eq!(rest, 0);
}

/// Shifts units between classes until no chain of moves could improve balance.
///
/// A chain `c1 -> c2 -> ... -> ck` moves one unit from each class to the next through a
/// signature both subscribe to; the classes in between keep their totals, `c1` loses a unit and
/// `ck` gains one. A chain improves balance when `c1`'s most loaded member has at least two more
/// partitions than `ck`'s least loaded one. Single moves are the chains of length one, so the
/// result meets Java's rule; longer chains reach the most balanced loads, which are unique, so a
/// cooperative group that rebalances again from the withheld state lands on the same totals.
/// Chains that move only units a class does not own are tried first; moving owned units (which
/// moves partitions away from their owners) happens only when nothing else improves balance.
fn rebalance_classes(sigs: &mut [Sig], totals: &mut [u64], sizes: &[u64]) {
    let k = totals.len();
    if sigs.iter().all(|s| s.classes.len() == 1) {
        return;
    }
    let mut class_sigs: Vec<Vec<(u32, usize)>> = vec![Vec::new(); k];
    for (s, sig) in sigs.iter().enumerate() {
        for (j, &c) in sig.classes.iter().enumerate() {
            class_sigs[c as usize].push((s as u32, j));
        }
    }
    let max_load = |c: usize, totals: &[u64]| totals[c].div_ceil(sizes[c]);
    let min_load = |c: usize, totals: &[u64]| totals[c] / sizes[c];
    // Per class in the search: the edge it was reached by (signature, giver position, taker
    // position).
    let mut via: Vec<Option<(u32, usize, usize)>> = vec![None; k];
    let mut queue: Vec<usize> = Vec::with_capacity(k);
    let mut expanded = vec![false; sigs.len()];
    for _round in 0..10_000_000u32 {
        let mut order: Vec<usize> = (0..k).filter(|&c| sizes[c] > 0).collect();
        order.sort_by_key(|&c| (std::cmp::Reverse(max_load(c, totals)), c));
        let mut found: Option<(usize, usize)> = None;
        'tiers: for owned_tier in [false, true] {
            for &c1 in &order {
                let hi = max_load(c1, totals);
                if hi < 2 {
                    break;
                }
                // Breadth-first search from c1 over signatures with movable units.
                via.iter_mut().for_each(|v| *v = None);
                queue.clear();
                queue.push(c1);
                let mut seen = vec![false; k];
                seen[c1] = true;
                // A signature reached once has put all its classes in the queue: scanning
                // it again from its other classes finds none new. Without this, a group of
                // hundreds of distinct subscriptions rescanned every topic's hundreds of
                // classes from each of them (600 members of random topic subsets: 4.7 s).
                expanded.iter_mut().for_each(|e| *e = false);
                let mut best: Option<(u64, usize)> = None;
                let mut head = 0;
                while head < queue.len() {
                    let c = queue[head];
                    head += 1;
                    for &(s, j1) in &class_sigs[c] {
                        if expanded[s as usize] {
                            continue;
                        }
                        let sig = &sigs[s as usize];
                        let movable = if owned_tier {
                            sig.owned[j1] + sig.poured[j1]
                        } else {
                            sig.poured[j1]
                        };
                        if movable == 0 {
                            continue;
                        }
                        expanded[s as usize] = true;
                        for (j2, &c2) in sig.classes.iter().enumerate() {
                            let c2 = c2 as usize;
                            if seen[c2] {
                                continue;
                            }
                            seen[c2] = true;
                            via[c2] = Some((s, j1, j2));
                            queue.push(c2);
                            let lo = min_load(c2, totals);
                            if hi >= lo + 2 && best.is_none_or(|b| (lo, c2) < b) {
                                best = Some((lo, c2));
                            }
                        }
                    }
                }
                if let Some((_, c2)) = best {
                    found = Some((c1, c2));
                    break 'tiers;
                }
            }
        }
        let Some((c1, c2)) = found else {
            return;
        };
        // Walk the chain back from c2 to c1: the amount is bounded by every edge's movable units
        // and by the amount that equalizes c1 and c2.
        let mut path: Vec<(u32, usize, usize)> = Vec::new();
        let mut c = c2;
        while c != c1 {
            let (s, j1, j2) = via[c].unwrap_or((0, 0, 0));
            path.push((s, j1, j2));
            c = sigs[s as usize].classes[j1] as usize;
        }
        let (x1, m1, x2, m2) = (
            totals[c1] as i128,
            sizes[c1] as i128,
            totals[c2] as i128,
            sizes[c2] as i128,
        );
        let mut delta = ((x1 * m2 - x2 * m1) / (m1 + m2)).max(1) as u64;
        for &(s, j1, _) in &path {
            let sig = &sigs[s as usize];
            let movable = if sig.poured[j1] > 0 {
                sig.poured[j1]
            } else {
                sig.owned[j1]
            };
            delta = delta.min(movable);
        }
        let delta = delta.max(1);
        for &(s, j1, j2) in &path {
            let sig = &mut sigs[s as usize];
            let from_poured = delta.min(sig.poured[j1]);
            sig.poured[j1] -= from_poured;
            sig.owned[j1] -= delta - from_poured;
            sig.poured[j2] += delta;
        }
        totals[c1] -= delta;
        totals[c2] += delta;
    }
    debug_assert!(false, "class rebalancing did not converge");
}

/// Among the most balanced class totals, picks those that move the fewest owned units, and the
/// split that achieves them: one minimum-cost flow from signatures to classes where a unit
/// costs, first, what it adds to the sum of squared member loads (convex: `2q + 1` for a unit
/// that lifts a class's members from `q` partitions) and, second, one if it leaves its owner's
/// class. [`rebalance_classes`] reaches *a* most balanced outcome by single chains; when several
/// exist (two classes can trade one unit at equal balance), the chain order decides, and it can
/// move partitions Java's assignor leaves alone. The optimal totals of a convex flow share its
/// dual prices, so every optimum lies within one load level of the one found: only those levels
/// get arcs, and the levels below are forced. Returns `false`, changing nothing, for groups
/// where the graph would be large (then [`resplit`] keeps the chains' totals).
fn settle(
    sigs: &mut [Sig],
    owned_before: &[Vec<u64>],
    owned_counts: &[Vec<u64>],
    totals: &mut [u64],
    sizes: &[u64],
) -> bool {
    let arcs: usize = sigs.iter().map(|s| s.classes.len()).sum();
    let total: u64 = sigs.iter().map(|s| s.total).sum();
    if sigs.iter().all(|s| s.classes.len() == 1) || arcs > 4_000 || total > 200_000 {
        return false;
    }
    let k = totals.len();
    let n_sigs = sigs.len();
    let Some((big, forced)) = level_costs(total, 1, totals, sizes) else {
        return false;
    };
    let class_node = |c: usize| 2 + n_sigs + c;
    let (mut g, arcs_of) = split_graph(sigs, owned_before, k, total as i64);
    let mut into_sink: Vec<Vec<usize>> = vec![Vec::new(); k];
    for c in 0..k {
        let m = sizes[c];
        if m == 0 {
            continue;
        }
        let q = totals[c] / m;
        let lowest = q.saturating_sub(1);
        if lowest > 0 {
            into_sink[c].push(g.edge(class_node(c), 1, (m * lowest) as i64, forced));
        }
        for level in lowest..=q + 1 {
            let cost = big * (2 * level as i64 + 1);
            // Within a level, the first units go to members that own more than `level` (the
            // engine's targets give extras to them): each spares one of their partitions a move.
            let owners = owned_counts[c].iter().filter(|&&o| o > level).count() as u64;
            if owners > 0 {
                into_sink[c].push(g.edge(class_node(c), 1, owners as i64, cost - 1));
            }
            if m > owners {
                into_sink[c].push(g.edge(class_node(c), 1, (m - owners) as i64, cost));
            }
        }
    }
    let (flow, _) = g.run(0, 1);
    let forced_met = (0..k).all(|c| {
        let m = sizes[c];
        let lowest = totals[c].checked_div(m).map_or(0, |q| q.saturating_sub(1));
        lowest == 0 || g.flow(into_sink[c][0]) == (m * lowest) as i64
    });
    if flow as u64 != total || !forced_met {
        // The chains' totals are feasible within these levels, so this cannot happen.
        debug_assert!(false, "settle flow {flow} != {total}");
        return false;
    }
    for (s, sig) in sigs.iter_mut().enumerate() {
        for (j, &(keep, other)) in arcs_of[s].iter().enumerate() {
            sig.owned[j] = g.flow(keep) as u64;
            sig.poured[j] = g.flow(other) as u64;
        }
    }
    for (c, t) in totals.iter_mut().enumerate() {
        *t = into_sink[c].iter().map(|&e| g.flow(e) as u64).sum();
    }
    true
}

/// The costs of [`settle`], [`settle_members`] and [`settle_racks`]: a unit of balance (`big`)
/// outweighs what every unit could cost otherwise (`unit` at most each: one for a move), and a
/// unit on a forced level (`forced`, below the levels that get arcs) outweighs any balance cost.
/// `None` when they would overflow.
fn level_costs(total: u64, unit: i64, totals: &[u64], sizes: &[u64]) -> Option<(i64, i64)> {
    let big = (total as i64).checked_mul(unit)?.checked_add(1)?;
    let top_level = (0..totals.len())
        .filter(|&c| sizes[c] > 0)
        .map(|c| totals[c] / sizes[c] + 1)
        .max()
        .unwrap_or(0) as i64;
    let forced = big
        .checked_mul(2 * top_level + 3)?
        .checked_mul(total as i64 + 1)?;
    Some((big, -forced))
}

/// The flow graph shared by [`settle`] and [`resplit`]: nodes 0 (source), 1 (sink), `2 + s` for
/// signature `s`, then `2 + sigs + c` for class `c` (the caller adds the class-to-sink arcs).
/// Each signature's units flow to its classes over two arcs: up to what the class owned, free,
/// and any amount (up to `cap`) at cost one, a unit leaving its owner's class. Returns the
/// graph and, per signature and class, the (keep, other) arc numbers.
#[allow(clippy::type_complexity)]
fn split_graph(
    sigs: &[Sig],
    owned_before: &[Vec<u64>],
    classes: usize,
    cap: i64,
) -> (Mcmf, Vec<Vec<(usize, usize)>>) {
    let n_sigs = sigs.len();
    let mut g = Mcmf::new(2 + n_sigs + classes);
    let mut arcs_of = Vec::with_capacity(n_sigs);
    for (s, sig) in sigs.iter().enumerate() {
        g.edge(0, 2 + s, sig.total as i64, 0);
        let mut these = Vec::with_capacity(sig.classes.len());
        for (j, &c) in sig.classes.iter().enumerate() {
            let class = 2 + n_sigs + c as usize;
            let keep = g.edge(2 + s, class, owned_before[s][j] as i64, 0);
            let other = g.edge(2 + s, class, cap, 1);
            these.push((keep, other));
        }
        arcs_of.push(these);
    }
    (g, arcs_of)
}

/// With the class totals fixed by [`rebalance_classes`], decides how many units of each signature
/// each class gets so that as few owned units as possible change class: a minimum-cost flow from
/// signatures to classes where a class's own units cost nothing and any other unit costs one.
/// The balancing steps only ever see one chain at a time; this settles the split globally. Skipped
/// for very diverse groups (many distinct subscriptions), where the flow graph would be large.
fn resplit(sigs: &mut [Sig], owned_before: &[Vec<u64>], totals: &[u64]) {
    let arcs: usize = sigs.iter().map(|s| s.classes.len()).sum();
    if sigs.iter().all(|s| s.classes.len() == 1) || arcs > 20_000 {
        return;
    }
    let k = totals.len();
    let n_sigs = sigs.len();
    let class_node = |c: usize| 2 + n_sigs + c;
    let (mut g, arcs_of) = split_graph(sigs, owned_before, k, i64::MAX / 4);
    for (c, &t) in totals.iter().enumerate() {
        g.edge(class_node(c), 1, t as i64, 0);
    }
    let total: u64 = sigs.iter().map(|s| s.total).sum();
    let (flow, _cost) = g.run(0, 1);
    if flow as u64 != total {
        // The totals came from a feasible split, so this cannot happen; keep that split.
        debug_assert!(false, "resplit flow {flow} != {total}");
        return;
    }
    for (s, sig) in sigs.iter_mut().enumerate() {
        for (j, &(keep, other)) in arcs_of[s].iter().enumerate() {
            sig.owned[j] = g.flow(keep) as u64;
            sig.poured[j] = g.flow(other) as u64;
        }
    }
}

/// Java's `useRackAwareAssignment`: some member rack matches some partition rack, and not every
/// partition has the same racks (then locality cannot differ between members).
fn rack_aware(racks: &crate::plan::Racks, slots: &[Slot], n_parts: usize) -> bool {
    let member_racks: Vec<u32> = slots
        .iter()
        .filter_map(|s| s.rack)
        .filter(|&r| r != u32::MAX)
        .collect();
    if member_racks.is_empty() || n_parts == 0 {
        return false;
    }
    let any_match =
        (0..n_parts as u32).any(|p| racks.of(p).iter().any(|r| member_racks.contains(r)));
    if !any_match {
        return false;
    }
    let first = racks.of(0);
    (1..n_parts as u32).any(|p| racks.of(p) != first)
}

/// Gives members with a rack free partitions that have a replica on that rack, round-robin
/// within each class, respecting what each class still needs of each signature.
#[allow(clippy::too_many_arguments)]
fn fill_matched(
    racks: &crate::plan::Racks,
    classes: &[Vec<u32>],
    class_slots: &[Vec<u32>],
    slots: &[Slot],
    target: &[u64],
    part_sig: &[u32],
    sigs: &[Sig],
    need: &mut [Vec<u64>],
    taken: &mut [bool],
    assigned: &mut [Vec<u32>],
) {
    // Partitions with a replica on each rack. Taken first: partitions nobody owns (a member on
    // another rack keeps what it owns when it can, which moves less than Java does), then those
    // the fewest members could take for locality (Java `RackInfo.sortPartitionsByRackConsumers`:
    // the most constrained first, so more members end up rack-matched), then ascending.
    let mut claimed = vec![false; part_sig.len()];
    let mut members_on = vec![0u32; racks.names.len()];
    for s in slots {
        for &p in &s.owned {
            claimed[p as usize] = true;
        }
        if let Some(r) = s.rack.filter(|&r| r != u32::MAX) {
            members_on[r as usize] += 1;
        }
    }
    let mut by_rack: Vec<Vec<u32>> = vec![Vec::new(); racks.names.len()];
    for p in 0..part_sig.len() as u32 {
        for &r in racks.of(p) {
            by_rack[r as usize].push(p);
        }
    }
    let candidates = |p: u32| -> u32 { racks.of(p).iter().map(|&r| members_on[r as usize]).sum() };
    for list in &mut by_rack {
        list.sort_by_cached_key(|&p| (claimed[p as usize], candidates(p), p));
    }
    for (c, members) in class_slots.iter().enumerate() {
        let _ = &classes[c];
        let mut cursors: FxHashMap<u32, usize> = FxHashMap::default();
        // Members below the class's base share first, then those with room for an extra one
        // (Java `ConstrainedAssignmentBuilder.assignRackAwareRoundRobin`: members under the
        // minimum quota, then those at it): a member that kept one owned partition and may keep
        // another is not filled before one that has nothing, which would leave its other owned
        // partition to move.
        let base = members
            .iter()
            .map(|&i| target[i as usize])
            .min()
            .unwrap_or(0);
        for cap in [Some(base), None] {
            let room = |i: u32, assigned: &[Vec<u32>]| -> bool {
                let have = assigned[i as usize].len() as u64;
                have < target[i as usize] && cap.is_none_or(|b| have < b)
            };
            let mut active: Vec<u32> = members
                .iter()
                .copied()
                .filter(|&i| {
                    let s = &slots[i as usize];
                    s.rack.is_some_and(|r| r != u32::MAX) && room(i, assigned)
                })
                .collect();
            while !active.is_empty() {
                let mut still = Vec::with_capacity(active.len());
                for &i in &active {
                    let s = &slots[i as usize];
                    let Some(r) = s.rack else { continue };
                    let list = &by_rack[r as usize];
                    let cur = cursors.entry(r).or_insert(0);
                    let mut got = false;
                    while *cur < list.len() {
                        let p = list[*cur];
                        *cur += 1;
                        let sg = part_sig[p as usize];
                        if taken[p as usize] || sg == NONE {
                            continue;
                        }
                        let Some(j) = sigs[sg as usize]
                            .classes
                            .iter()
                            .position(|&x| x as usize == c)
                        else {
                            continue;
                        };
                        if need[sg as usize][j] == 0 {
                            continue;
                        }
                        need[sg as usize][j] -= 1;
                        taken[p as usize] = true;
                        assigned[i as usize].push(p);
                        got = true;
                        break;
                    }
                    if got && room(i, assigned) {
                        still.push(i);
                    }
                }
                active = still;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_fill_raises_the_lowest_members_first() {
        // Members own 3, 3, 0 and 2, 0: four units go to the two empty members.
        let mut load = vec![3, 3, 0, 2, 0];
        water_fill_members(4, &[0, 1, 2, 3, 4], &mut load);
        assert_eq!(load, vec![3, 3, 2, 2, 2]);
        let mut load = vec![5, 0];
        water_fill_members(3, &[1], &mut load);
        assert_eq!(load, vec![5, 3]);
        let mut load = vec![1, 1, 1];
        water_fill_members(2, &[0, 1, 2], &mut load);
        assert_eq!(load, vec![2, 2, 1]);
    }
}
