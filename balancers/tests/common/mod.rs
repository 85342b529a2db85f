//! Invariant checks and group generators shared by the balancer tests (franz-go's
//! `help_test.go` is the model: test plans by invariants first, examples second).

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};

use cohort_balancers::metrics::Previous;
use cohort_balancers::{GroupMember, Plan, TopicInfo};
use cohort_protocol::StrBytes;

pub fn topic_set(m: &GroupMember) -> BTreeSet<String> {
    m.subscription
        .topics
        .iter()
        .map(|t| t.to_string())
        .collect()
}

/// Every partition of a subscribed topic goes to exactly one member (at most one when
/// `allow_withheld`, for a cooperative round), and only to members subscribed to its topic.
pub fn assert_complete_and_exclusive(
    plan: &Plan,
    members: &[GroupMember],
    topics: &[TopicInfo],
    allow_withheld: bool,
) {
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        let subs = topic_set(m);
        let pi = plan.member_index(&m.member_id).expect("member in plan");
        assert_eq!(pi, i, "plan lists members in input order");
        for (t, ps) in plan.topics_of(pi) {
            assert!(
                subs.contains(t.as_str()),
                "{} got {t} it does not subscribe to",
                m.member_id
            );
            for p in ps {
                if let Some(o) = owner.insert((t.to_string(), p), m.member_id.to_string()) {
                    panic!("{t}-{p} assigned to both {o} and {}", m.member_id);
                }
            }
        }
    }
    let subscribed: BTreeSet<String> = members.iter().flat_map(topic_set).collect();
    for t in topics {
        if !subscribed.contains(t.name.as_str()) {
            continue;
        }
        for p in 0..t.partitions as i32 {
            if !allow_withheld {
                assert!(
                    owner.contains_key(&(t.name.to_string(), p)),
                    "{}-{p} unassigned",
                    t.name
                );
            }
        }
    }
}

/// Java's balance rule (`AbstractStickyAssignorTest.verifyValidityAndBalance`): if member `a` has
/// at least two more partitions than member `b`, then `b` is subscribed to none of `a`'s topics,
/// so no single move could improve balance. With identical subscriptions this is max - min <= 1.
pub fn assert_balanced(plan: &Plan, members: &[GroupMember]) {
    let loads: Vec<usize> = (0..members.len())
        .map(|i| plan.members[i].partitions.len())
        .collect();
    for (a, ma) in members.iter().enumerate() {
        for (b, mb) in members.iter().enumerate() {
            if loads[a] < loads[b] + 2 {
                continue;
            }
            let b_topics = topic_set(mb);
            for (t, _) in plan.topics_of(a) {
                assert!(
                    !b_topics.contains(t.as_str()),
                    "unbalanced: {} has {} partitions, {} has {} and could take {t}",
                    ma.member_id,
                    loads[a],
                    mb.member_id,
                    loads[b]
                );
            }
        }
    }
}

/// Members with the same weight-adjusted share: every member's count is within `w` of
/// `P * w / W` for uniform subscriptions.
pub fn assert_weighted_shares(plan: &Plan, weights: &[u32]) {
    let total: usize = plan.members.iter().map(|m| m.partitions.len()).sum();
    let w_total: u32 = weights.iter().sum();
    for (i, &w) in weights.iter().enumerate() {
        let share = total as f64 * f64::from(w) / f64::from(w_total);
        let got = plan.members[i].partitions.len() as f64;
        assert!(
            (got - share).abs() <= f64::from(w),
            "member {i} (weight {w}) got {got}, share {share:.1}"
        );
    }
}

/// Previous ownership as the plan gave it, at `generation`.
pub fn previous_of(plan: &Plan, generation: i32) -> Vec<Previous> {
    (0..plan.members.len())
        .map(|i| Previous {
            owned: plan.topics_of(i),
            generation,
        })
        .collect()
}

/// A member owning what `plan` gave member `i`, at `generation`, in both places balancers look:
/// the subscription (cooperative family) and sticky user data (eager `sticky`).
pub fn member_from_plan(base: &GroupMember, plan: &Plan, i: usize, generation: i32) -> GroupMember {
    let owned = plan.topics_of(i);
    let mut m = base.clone();
    m.subscription.owned_partitions = owned
        .iter()
        .map(
            |(t, ps)| cohort_protocol::consumer_protocol::OwnedTopicPartitions {
                topic: t.clone(),
                partitions: ps.clone(),
            },
        )
        .collect();
    m.subscription.generation_id = generation;
    m.subscription.user_data = Some(
        cohort_protocol::consumer_protocol::StickyUserData {
            previous_assignment: owned,
            generation: Some(generation),
        }
        .encode()
        .unwrap(),
    );
    m
}

/// A tiny deterministic generator for group shapes.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(seed ^ 0x2545_f491_4f6c_dd1d)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random group: topics with partitions and replica racks, members with subscriptions
/// (uniform or not), racks, static ids.
pub fn random_group(
    g: &mut Gen,
    uniform: bool,
    with_racks: bool,
) -> (Vec<GroupMember>, Vec<TopicInfo>) {
    let n_topics = 1 + g.below(5) as usize;
    let racks = ["a", "b", "c"];
    let topics: Vec<TopicInfo> = (0..n_topics)
        .map(|t| {
            let parts = 1 + g.below(12) as u32;
            let mut info = TopicInfo::new(format!("t{t}"), parts);
            if with_racks {
                let rr: Vec<Vec<String>> = (0..parts)
                    .map(|p| {
                        let rf = 1 + g.below(2) as usize;
                        (0..rf)
                            .map(|r| racks[(p as usize + r) % 3].to_string())
                            .collect()
                    })
                    .collect();
                info = info.with_racks(&rr);
            }
            info
        })
        .collect();
    let n_members = 1 + g.below(7) as usize;
    let all: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    let members = (0..n_members)
        .map(|i| {
            let subs: Vec<&str> = if uniform {
                all.clone()
            } else {
                let mut s: Vec<&str> = all.iter().copied().filter(|_| g.chance(60)).collect();
                if s.is_empty() {
                    s.push(all[g.below(all.len() as u64) as usize]);
                }
                s
            };
            let mut m = GroupMember::new(&format!("m{i}-{}", g.below(1000)), &subs);
            if g.chance(20) {
                m = m.with_instance_id(&format!("i{}", g.below(100)));
            }
            if with_racks && g.chance(80) {
                m = m.with_rack(racks[g.below(3) as usize]);
            }
            m
        })
        .collect();
    (dedup_ids(members), topics)
}

fn dedup_ids(mut members: Vec<GroupMember>) -> Vec<GroupMember> {
    let mut seen = BTreeSet::new();
    for (i, m) in members.iter_mut().enumerate() {
        if !seen.insert(m.member_id.to_string()) {
            m.member_id = StrBytes::from(format!("{}-{i}", m.member_id));
        }
    }
    // Duplicate instance ids are not a valid group either.
    let mut inst = BTreeSet::new();
    for m in members.iter_mut() {
        if let Some(id) = &m.group_instance_id
            && !inst.insert(id.to_string())
        {
            m.group_instance_id = None;
        }
    }
    members
}
