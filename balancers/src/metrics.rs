//! How good a plan is: balance (spread), movement (moved partitions against the previous
//! assignment, and the least movement any plan with the same balance could have), and for
//! cooperative balancers the number of rebalance rounds until the group is stable.
//!
//! ```
//! use cohort_balancers::{CooperativeSticky, GroupMember, TopicInfo, metrics};
//!
//! let topics = vec![TopicInfo::new("t", 6)];
//! // m1 owned everything; m2 joins.
//! let members = vec![
//!     GroupMember::new("m1", &["t"]).with_owned(&[("t", &[0, 1, 2, 3, 4, 5])], 4),
//!     GroupMember::new("m2", &["t"]),
//! ];
//! let previous = metrics::previous_from_subscriptions(&members);
//! let e = metrics::evaluate(&CooperativeSticky, &members, &topics, &previous).unwrap();
//! assert_eq!(e.metrics.spread, 0);
//! assert_eq!(e.metrics.moved, 3);
//! assert_eq!(e.metrics.moved_lower_bound, 3);
//! assert_eq!(e.metrics.rounds, Some(2)); // revoke first, assign next round (KIP-429)
//! ```

use std::collections::BTreeMap;

use cohort_protocol::StrBytes;
use cohort_protocol::consumer_protocol::OwnedTopicPartitions;

use crate::claims::{Claims, NONE};
use crate::flow::Mcmf;
use crate::index::{Claimed, Indexed};
use crate::plan::Plan;
use crate::{AssignError, Balancer, GroupMember, TopicInfo};

/// What a member owned before the rebalance, and in which generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// Owned partitions per topic.
    pub owned: Vec<(StrBytes, Vec<i32>)>,
    /// Generation of that assignment (-1 when unknown).
    pub generation: i32,
}

/// Reads previous ownership from the members' subscriptions (owned partitions, generation).
pub fn previous_from_subscriptions(members: &[GroupMember]) -> Vec<Previous> {
    members
        .iter()
        .map(|m| Previous {
            owned: m
                .subscription
                .owned_partitions
                .iter()
                .map(|o| (o.topic.clone(), o.partitions.clone()))
                .collect(),
            generation: m.subscription.generation_id,
        })
        .collect()
}

/// The measures of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// Largest difference in partition count between two members with the same subscription.
    pub spread: u64,
    /// Partitions whose previous owner is still in the group but no longer owns them.
    pub moved: u64,
    /// The fewest moves any plan giving every member the same number of partitions could make:
    /// for uniform subscriptions with the balanced split chosen to favour current owners, in
    /// general the minimum-cost-flow optimum.
    pub moved_lower_bound: u64,
    /// Cooperative balancers: rebalance rounds until nothing is withheld (1 if nothing moves, 2
    /// if something does). `None` for eager balancers, where every rebalance is one round.
    pub rounds: Option<u32>,
    /// Partitions of subscribed topics.
    pub partitions: u64,
    /// Subscribed partitions nobody got (in the final plan).
    pub unassigned: u64,
}

/// A plan and its measures.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The plan of the first rebalance.
    pub plan: Plan,
    /// The plan once the group is stable (after the follow-up rounds of a cooperative balancer;
    /// the first plan otherwise).
    pub stable: Plan,
    /// The measures, of the stable plan against the previous ownership.
    pub metrics: Metrics,
}

/// Runs `balancer` and measures its plan. For cooperative balancers the follow-up rounds are
/// simulated: every member subscribes again owning what the previous round gave it, at the next
/// generation, until a round withholds nothing (at most 8 rounds).
pub fn evaluate(
    balancer: &dyn Balancer,
    members: &[GroupMember],
    topics: &[TopicInfo],
    previous: &[Previous],
) -> Result<Evaluation, AssignError> {
    let plan = balancer.assign(members, topics)?;
    let mut rounds = None;
    let mut stable = plan.clone();
    if balancer.supports_cooperative() {
        let mut r = 1;
        let mut current = members.to_vec();
        let mut generation = previous
            .iter()
            .map(|p| p.generation)
            .max()
            .unwrap_or(-1)
            .max(0)
            .saturating_add(1);
        while withheld(&stable, &current) && r < 8 {
            for (i, m) in current.iter_mut().enumerate() {
                m.subscription.owned_partitions = stable
                    .topics_of(i)
                    .into_iter()
                    .map(|(topic, partitions)| OwnedTopicPartitions { topic, partitions })
                    .collect();
                m.subscription.generation_id = generation;
            }
            stable = balancer.assign(&current, topics)?;
            generation = generation.saturating_add(1);
            r += 1;
        }
        rounds = Some(r);
    }
    let metrics = measure(&stable, members, topics, previous, rounds)?;
    Ok(Evaluation {
        plan,
        stable,
        metrics,
    })
}

/// Whether a plan leaves subscribed partitions unassigned (a cooperative round withholding
/// partitions that change owner).
fn withheld(plan: &Plan, members: &[GroupMember]) -> bool {
    let table = plan.table();
    let mut subscribed = vec![false; table.len()];
    for m in members {
        for t in m.subscription.topics.iter() {
            if let Some(i) = table.index(t) {
                subscribed[i as usize] = true;
            }
        }
    }
    let total: u64 = (0..table.len() as u32)
        .filter(|&t| subscribed[t as usize])
        .map(|t| u64::from(table.range(t).len() as u32))
        .sum();
    let assigned: u64 = plan.members.iter().map(|m| m.partitions.len() as u64).sum();
    assigned < total
}

/// Measures a plan against the previous ownership.
pub fn measure(
    plan: &Plan,
    members: &[GroupMember],
    topics: &[TopicInfo],
    previous: &[Previous],
    rounds: Option<u32>,
) -> Result<Metrics, AssignError> {
    let idx = Indexed::new(members, topics)?;
    let table = &idx.table;
    let n = members.len();
    // One map from member id to plan position: `Plan::member_index` per member would make
    // this quadratic (100,000 members took 14 s).
    let by_id: std::collections::HashMap<&str, usize> = plan
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.member_id.as_str(), i))
        .collect();
    let plan_index: Vec<usize> = members
        .iter()
        .map(|m| {
            by_id
                .get(m.member_id.as_str())
                .copied()
                .unwrap_or(usize::MAX)
        })
        .collect();
    let load: Vec<u64> = plan_index
        .iter()
        .map(|&i| plan.members.get(i).map_or(0, |m| m.partitions.len() as u64))
        .collect();

    // Spread within each subscription class.
    let mut by_class: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (m, &l) in load.iter().enumerate() {
        let e = by_class.entry(idx.member_class[m]).or_insert((u64::MAX, 0));
        e.0 = e.0.min(l);
        e.1 = e.1.max(l);
    }
    let spread = by_class.values().map(|(lo, hi)| hi - lo).max().unwrap_or(0);

    // Previous owners, resolved by generation, in Java member order.
    let claims_java: Vec<Claimed> = idx
        .order
        .iter()
        .map(|&m| {
            let p = previous.get(m as usize);
            let mut out = Claimed::default();
            idx.claims(
                m as usize,
                p.into_iter()
                    .flat_map(|p| p.owned.iter().map(|(t, ps)| (t.as_str(), ps.as_slice()))),
                &mut out,
            );
            out
        })
        .collect();
    let gens: Vec<i32> = idx
        .order
        .iter()
        .map(|&m| previous.get(m as usize).map_or(-1, |p| p.generation))
        .collect();
    let resolved = Claims::resolve(table.partitions(), &claims_java, &gens);
    // Previous owner of each partition as an input position.
    let prev_owner: Vec<u32> = resolved
        .owner
        .iter()
        .map(|&o| {
            if (o as usize) < n {
                idx.order[o as usize]
            } else {
                NONE
            }
        })
        .collect();

    let new_owner = {
        let mut owner = vec![NONE; table.partitions() as usize];
        for (m, &pi) in plan_index.iter().enumerate() {
            if let Some(mp) = plan.members.get(pi) {
                for &g in &mp.partitions {
                    owner[g as usize] = m as u32;
                }
            }
        }
        owner
    };
    let moved = prev_owner
        .iter()
        .zip(&new_owner)
        .filter(|(p, n)| **p != NONE && p != n)
        .count() as u64;

    // Subscribed partitions and their signatures (sets of classes).
    let mut topic_classes: Vec<Vec<u32>> = vec![Vec::new(); table.len()];
    for (c, ts) in idx.classes.iter().enumerate() {
        for &t in ts {
            topic_classes[t as usize].push(c as u32);
        }
    }
    let partitions: u64 = (0..table.len())
        .filter(|&t| !topic_classes[t].is_empty())
        .map(|t| u64::from(table.range(t as u32).len() as u32))
        .sum();
    let assigned: u64 = new_owner.iter().filter(|&&o| o != NONE).count() as u64;

    let uniform = idx.classes.len() == 1;
    let moved_lower_bound = if uniform {
        uniform_lower_bound(&prev_owner, n, partitions)
    } else {
        flow_lower_bound(&idx, &topic_classes, &prev_owner, &load)
    };
    Ok(Metrics {
        spread,
        moved,
        moved_lower_bound,
        rounds,
        partitions,
        unassigned: partitions - assigned,
    })
}

/// Uniform subscriptions: every member's share is `P / N` or one more; the fewest moves keep
/// `min(owned, share)` everywhere, with the larger shares going to members that own more.
fn uniform_lower_bound(prev_owner: &[u32], n: usize, partitions: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut owned = vec![0u64; n];
    for &o in prev_owner {
        if o != NONE {
            owned[o as usize] += 1;
        }
    }
    let base = partitions / n as u64;
    let extra = partitions % n as u64;
    let over = owned.iter().filter(|&&o| o > base).count() as u64;
    let kept: u64 = owned.iter().map(|&o| o.min(base)).sum::<u64>() + extra.min(over);
    owned.iter().sum::<u64>() - kept
}

/// General subscriptions: minimum-cost flow on an aggregated graph. Partitions a member owns in
/// a signature form one group that can stay (cost 0) or go to the signature's pool (cost 1, a
/// move); the pool and the free partitions go to any member of a class in the signature; every
/// member receives exactly its load in the plan. The minimum cost is the fewest moves any plan
/// with these loads could make.
fn flow_lower_bound(
    idx: &Indexed,
    topic_classes: &[Vec<u32>],
    prev_owner: &[u32],
    load: &[u64],
) -> u64 {
    let table = &idx.table;
    let n = load.len();
    // Signatures.
    let mut sig_ids: BTreeMap<&[u32], usize> = BTreeMap::new();
    let mut topic_sig = vec![usize::MAX; table.len()];
    for (t, cs) in topic_classes.iter().enumerate() {
        if !cs.is_empty() {
            let next = sig_ids.len();
            topic_sig[t] = *sig_ids.entry(cs.as_slice()).or_insert(next);
        }
    }
    let n_sigs = sig_ids.len();
    let mut sig_classes: Vec<&[u32]> = vec![&[]; n_sigs];
    for (cs, &s) in &sig_ids {
        sig_classes[s] = cs;
    }
    // Owned counts per (signature, member) and free counts per signature.
    let mut groups: BTreeMap<(usize, u32), u64> = BTreeMap::new();
    let mut free = vec![0u64; n_sigs];
    for t in 0..table.len() as u32 {
        let s = topic_sig[t as usize];
        if s == usize::MAX {
            continue;
        }
        for g in table.range(t) {
            match prev_owner[g as usize] {
                NONE => free[s] += 1,
                o => *groups.entry((s, o)).or_insert(0) += 1,
            }
        }
    }
    // Nodes: 0 source, 1 sink, members, signature pools, groups.
    let member_node = |m: usize| 2 + m;
    let pool_node = |s: usize| 2 + n + s;
    let first_group = 2 + n + n_sigs;
    let mut g = Mcmf::new(first_group + groups.len());
    const INF: i64 = i64::MAX / 4;
    for (i, (&(s, o), &count)) in groups.iter().enumerate() {
        let node = first_group + i;
        g.edge(0, node, count as i64, 0);
        // Staying requires the owner to still subscribe to the signature.
        if sig_classes[s].contains(&idx.member_class[o as usize]) {
            g.edge(node, member_node(o as usize), INF, 0);
        }
        g.edge(node, pool_node(s), INF, 1);
    }
    for s in 0..n_sigs {
        g.edge(0, pool_node(s), free[s] as i64, 0);
        for m in 0..n {
            if sig_classes[s].contains(&idx.member_class[m]) {
                g.edge(pool_node(s), member_node(m), INF, 0);
            }
        }
    }
    for (m, &l) in load.iter().enumerate() {
        g.edge(member_node(m), 1, l as i64, 0);
    }
    let (_flow, cost) = g.run(0, 1);
    cost.max(0) as u64
}
