//! Property tests over generated groups: every balancer's plan is complete, exclusive, respects
//! subscriptions and balance; sticky plans move exactly the lower bound for single joins and
//! leaves with uniform subscriptions; cooperative plans never hand an owned partition straight to
//! another member and settle in two rounds; every plan is deterministic.

mod common;

use cohort_balancers::metrics::{self, Previous};
use cohort_balancers::{
    Balancer, CooperativeSticky, GroupMember, Range, RoundRobin, Sticky, TopicInfo, WeightedSticky,
};
use cohort_protocol::consumer_protocol::encode_assignment;
use common::*;
use proptest::prelude::*;

fn balancers() -> Vec<Box<dyn Balancer>> {
    vec![
        Box::new(Range),
        Box::new(RoundRobin),
        Box::new(Sticky::default()),
        Box::new(CooperativeSticky),
        Box::new(WeightedSticky::new(1)),
    ]
}

/// Runs a balancer twice (determinism), on reversed member order too, and checks the invariants.
fn check_plan(
    b: &dyn Balancer,
    members: &[GroupMember],
    topics: &[TopicInfo],
    allow_withheld: bool,
) -> cohort_balancers::Plan {
    let plan = b.assign(members, topics).unwrap();
    let again = b.assign(members, topics).unwrap();
    assert_eq!(
        plan.to_map(),
        again.to_map(),
        "{}: not deterministic",
        b.protocol_name()
    );
    let mut reversed = members.to_vec();
    reversed.reverse();
    let r = b.assign(&reversed, topics).unwrap();
    assert_eq!(
        plan.to_map(),
        r.to_map(),
        "{}: depends on member input order",
        b.protocol_name()
    );
    assert_complete_and_exclusive(&plan, members, topics, allow_withheld);
    // The leader's direct encoding is the message's encoding, at every version.
    for i in 0..plan.members.len() {
        for v in 0..=3 {
            assert_eq!(
                plan.encode_assignment(i, v).unwrap(),
                encode_assignment(&plan.to_assignment(i), v).unwrap(),
                "member {i}, version {v}"
            );
        }
        assert!(plan.encode_assignment(i, 4).is_err());
    }
    // All at once into one buffer: the same bytes, member by member.
    for v in 0..=3 {
        let all = plan.encode_assignments(v).unwrap();
        assert_eq!(all.len(), plan.members.len());
        for (i, bytes) in all.iter().enumerate() {
            assert_eq!(
                *bytes,
                plan.encode_assignment(i, v).unwrap(),
                "member {i}, version {v}"
            );
        }
    }
    assert!(plan.encode_assignments(4).is_err());
    plan
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Fresh assignments: complete, exclusive, subscribed only; the sticky family is balanced.
    #[test]
    fn fresh_plans_are_valid(seed in any::<u64>(), uniform in any::<bool>(), racks in any::<bool>()) {
        let mut g = Gen::new(seed);
        let (members, topics) = random_group(&mut g, uniform, racks);
        for b in balancers() {
            let plan = check_plan(b.as_ref(), &members, &topics, false);
            if !matches!(b.protocol_name(), "range" | "roundrobin") {
                assert_balanced(&plan, &members);
            }
        }
    }

    /// A second round after random membership changes, with claims from the first: still valid
    /// and balanced; cooperative rounds withhold only partitions whose owner is another member,
    /// and the group is stable by the second round.
    #[test]
    fn rebalances_after_churn(seed in any::<u64>(), uniform in any::<bool>(), racks in any::<bool>()) {
        let mut g = Gen::new(seed);
        let (members, topics) = random_group(&mut g, uniform, racks);
        for b in [Box::new(Sticky::default()) as Box<dyn Balancer>, Box::new(CooperativeSticky), Box::new(WeightedSticky::new(1))] {
            let first = b.assign(&members, &topics).unwrap();
            // Next generation: some members leave, some new ones join, survivors claim their
            // partitions at generation 5 (a few at a stale generation 4).
            let mut next: Vec<GroupMember> = Vec::new();
            for (i, m) in members.iter().enumerate() {
                if g.chance(25) { continue; }
                let generation = if g.chance(10) { 4 } else { 5 };
                next.push(member_from_plan(m, &first, i, generation));
            }
            for j in 0..g.below(3) {
                let subs: Vec<&str> = topics.iter().map(|t| t.name.as_str()).filter(|_| uniform || g.chance(70)).collect();
                let subs = if subs.is_empty() { vec![topics[0].name.as_str()] } else { subs };
                next.push(GroupMember::new(&format!("new{j}"), &subs));
            }
            if next.is_empty() { continue; }
            let coop = b.supports_cooperative();
            let plan = check_plan(b.as_ref(), &next, &topics, coop);
            let previous = metrics::previous_from_subscriptions(&next);
            if coop {
                // Never straight from one owner to another (KIP-429).
                let owners = previous_owner_map(&next);
                for (i, m) in next.iter().enumerate() {
                    for (t, ps) in plan.topics_of(i) {
                        for p in ps {
                            if let Some(o) = owners.get(&(t.to_string(), p)) {
                                prop_assert_eq!(o.as_str(), m.member_id.as_str(), "{}-{} handed from {} to {}", t, p, o, m.member_id);
                            }
                        }
                    }
                }
                let e = metrics::evaluate(b.as_ref(), &next, &topics, &previous).unwrap();
                // Uniform subscriptions settle in two rounds (revoke, then assign). With mixed
                // subscriptions the most balanced loads can sit on different classes in the
                // second round, which then moves again: measured 10 in 40,000 random churn cases
                // (docs/DESIGN.md); never more than three rounds.
                let bound = if uniform { 2 } else { 3 };
                prop_assert!(e.metrics.rounds.unwrap() <= bound, "rounds {:?}", e.metrics.rounds);
                assert_complete_and_exclusive(&e.stable, &next, &topics, false);
                assert_balanced(&e.stable, &next);
            } else {
                assert_balanced(&plan, &next);
            }
        }
    }

    /// Uniform subscriptions: one member joins, or one leaves; sticky moves exactly the lower
    /// bound: floor(P / (N + 1)) for a join, 0 for a leave.
    #[test]
    fn single_join_and_leave_move_the_minimum(seed in any::<u64>(), join in any::<bool>()) {
        let mut g = Gen::new(seed);
        let (members, topics) = random_group(&mut g, true, false);
        let p: u64 = topics.iter().map(|t| u64::from(t.partitions)).sum();
        for b in [Box::new(Sticky::default()) as Box<dyn Balancer>, Box::new(CooperativeSticky)] {
            let first = b.assign(&members, &topics).unwrap();
            let mut next: Vec<GroupMember> = members.iter().enumerate().map(|(i, m)| member_from_plan(m, &first, i, 3)).collect();
            let n_before = next.len() as u64;
            if join {
                let subs: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
                next.push(GroupMember::new("joiner", &subs));
            } else if next.len() > 1 {
                let k = g.below(next.len() as u64) as usize;
                next.remove(k);
            } else {
                continue;
            }
            let previous: Vec<Previous> = metrics::previous_from_subscriptions(&next);
            let e = metrics::evaluate(b.as_ref(), &next, &topics, &previous).unwrap();
            let expected = if join { p / (n_before + 1) } else { 0 };
            prop_assert_eq!(e.metrics.moved_lower_bound, expected, "{} lower bound", b.protocol_name());
            prop_assert_eq!(e.metrics.moved, expected, "{} moved", b.protocol_name());
            prop_assert!(e.metrics.spread <= 1);
        }
    }

    /// The weighted balancer gives shares proportional to weight.
    #[test]
    fn weighted_shares_follow_weights(seed in any::<u64>()) {
        let mut g = Gen::new(seed);
        let topics = vec![TopicInfo::new("t0", 20 + g.below(100) as u32), TopicInfo::new("t1", g.below(50) as u32)];
        let n = 1 + g.below(6) as usize;
        let weights: Vec<u32> = (0..n).map(|_| 1 + g.below(4) as u32).collect();
        let members: Vec<GroupMember> = weights.iter().enumerate().map(|(i, &w)| {
            GroupMember::new(&format!("m{i}"), &["t0", "t1"]).with_user_data(cohort_balancers::encode_weighted_user_data(w, -1))
        }).collect();
        let plan = check_plan(&WeightedSticky::new(1), &members, &topics, false);
        assert_weighted_shares(&plan, &weights);
    }
}

fn previous_owner_map(
    members: &[GroupMember],
) -> std::collections::BTreeMap<(String, i32), String> {
    // Highest generation wins; ties invalidate (and those partitions may go anywhere next).
    let mut best: std::collections::BTreeMap<(String, i32), (i32, Option<String>)> =
        Default::default();
    for m in members {
        for o in &m.subscription.owned_partitions {
            for &p in &o.partitions {
                let k = (o.topic.to_string(), p);
                let g = m.subscription.generation_id;
                match best.get(&k) {
                    None => {
                        best.insert(k, (g, Some(m.member_id.to_string())));
                    }
                    Some((bg, _)) if g > *bg => {
                        best.insert(k, (g, Some(m.member_id.to_string())));
                    }
                    Some((bg, _)) if g == *bg => {
                        best.insert(k, (g, None));
                    }
                    _ => {}
                }
            }
        }
    }
    best.into_iter()
        .filter_map(|(k, (_, o))| o.map(|o| (k, o)))
        .collect()
}
