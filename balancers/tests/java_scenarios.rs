//! Table tests: Kafka's Java assignor test suites' named scenarios (read with the project's
//! search tool from apache/kafka `RangeAssignorTest`, `RoundRobinAssignorTest`,
//! `AbstractStickyAssignorTest`, `AbstractPartitionAssignorTest`), the KIP-54 and KIP-341
//! examples, and the range/roundrobin outputs that must equal Java's byte for byte.

mod common;

use cohort_balancers::{
    Balancer, CooperativeSticky, GroupMember, Plan, Range, RoundRobin, Sticky, TopicInfo,
};
use common::*;

/// `"t1-0, t1-3"` for a member, sorted as Java's `toSortedString` sorts (string order).
fn sorted_string(plan: &cohort_balancers::Plan, member: usize) -> String {
    let mut parts: Vec<String> = plan
        .topics_of(member)
        .into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |p| format!("{t}-{p}")))
        .collect();
    parts.sort();
    parts.join(", ")
}

const ALL_RACKS: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];

fn racks(n: usize) -> Vec<Option<&'static str>> {
    (0..n)
        .map(|i| Some(ALL_RACKS[i % ALL_RACKS.len()]))
        .collect()
}

/// Java `AbstractPartitionAssignorTest.partitionsPerTopic`: brokers numbered 0.. with the given
/// racks; partition `i` of a topic has replicas on brokers `(i + j + next) % brokers`, where
/// `next` counts partitions of the topics before it (in the map's insertion order).
fn topics_with_racks(
    spec: &[(&str, u32)],
    replication: usize,
    broker_racks: &[Option<&str>],
) -> Vec<TopicInfo> {
    let mut next = 0usize;
    spec.iter()
        .map(|&(name, n)| {
            let rs: Vec<Vec<String>> = (0..n as usize)
                .map(|i| {
                    (0..replication)
                        .filter_map(|j| {
                            broker_racks[(i + j + next) % broker_racks.len()].map(str::to_owned)
                        })
                        .collect()
                })
                .collect();
            next += n as usize;
            TopicInfo::new(name, n).with_racks(&rs)
        })
        .collect()
}

fn consumers(topics: &[Vec<&str>], consumer_racks: &[Option<&str>]) -> Vec<GroupMember> {
    topics
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            let m = GroupMember::new(&format!("consumer{i}"), ts);
            match consumer_racks[i] {
                Some(r) => m.with_rack(r),
                None => m,
            }
        })
        .collect()
}

fn mismatches(
    plan: &cohort_balancers::Plan,
    members: &[GroupMember],
    topics: &[TopicInfo],
) -> usize {
    let mut n = 0;
    for (i, m) in members.iter().enumerate() {
        let Some(rack) = m.subscription.rack_id.as_deref() else {
            continue;
        };
        for (t, ps) in plan.topics_of(i) {
            let info = topics.iter().find(|x| x.name == t).unwrap();
            for p in ps {
                if !info.replica_racks[p as usize]
                    .iter()
                    .any(|r| r.as_str() == rack)
                {
                    n += 1;
                }
            }
        }
    }
    n
}

fn check(
    b: &dyn Balancer,
    topics: &[TopicInfo],
    members: &[GroupMember],
    expected: &[&str],
    mismatched: Option<usize>,
) {
    let plan = b.assign(members, topics).unwrap();
    let got: Vec<String> = (0..members.len())
        .map(|i| sorted_string(&plan, i))
        .collect();
    assert_eq!(got, expected, "{}", b.protocol_name());
    if let Some(n) = mismatched {
        assert_eq!(mismatches(&plan, members, topics), n, "rack mismatches");
    }
}

// ---------------------------------------------------------------------------------------------
// range

#[test]
fn range_javadoc_example() {
    let topics = vec![TopicInfo::new("t0", 3), TopicInfo::new("t1", 3)];
    let members = vec![
        GroupMember::new("C0", &["t0", "t1"]),
        GroupMember::new("C1", &["t0", "t1"]),
    ];
    check(
        &Range,
        &topics,
        &members,
        &["t0-0, t0-1, t1-0, t1-1", "t0-2, t1-2"],
        None,
    );
}

#[test]
fn range_static_members_sort_by_instance_id() {
    // RangeAssignorTest.testStaticMemberRangeAssignmentPersistent: the assignment follows the
    // instance ids, so bouncing members (new member ids) get the same partitions back.
    let topics = vec![TopicInfo::new("topic1", 5), TopicInfo::new("topic2", 5)];
    let mk = |member: &str, instance: &str| {
        GroupMember::new(member, &["topic1", "topic2"]).with_instance_id(instance)
    };
    let first = vec![
        mk("consumer1", "instance1"),
        mk("consumer2", "instance2"),
        mk("consumer3", "instance3"),
    ];
    let bounced = vec![
        mk("consumer1", "instance1"),
        mk("consumer5", "instance2"),
        mk("consumer4", "instance3"),
    ];
    let a = Range.assign(&first, &topics).unwrap();
    let b = Range.assign(&bounced, &topics).unwrap();
    for i in 0..3 {
        assert_eq!(a.topics_of(i), b.topics_of(i), "instance{}", i + 1);
    }
    assert_eq!(
        sorted_string(&a, 0),
        "topic1-0, topic1-1, topic2-0, topic2-1"
    );
    assert_eq!(sorted_string(&a, 2), "topic1-4, topic2-4");
    // Dynamic members sort after static ones.
    let mixed = vec![
        GroupMember::new("a-dynamic", &["topic1"]),
        GroupMember::new("z", &["topic1"]).with_instance_id("i"),
    ];
    let p = Range.assign(&mixed, &topics).unwrap();
    assert_eq!(p.partitions_of(1, "topic1"), vec![0, 1, 2]);
    assert_eq!(p.partitions_of(0, "topic1"), vec![3, 4]);
}

#[test]
fn range_rack_aware_uniform_subscription() {
    // RangeAssignorTest.testRackAwareAssignmentWithUniformSubscription.
    let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
    let all = vec!["t1", "t2", "t3"];
    let subs = vec![all.clone(), all.clone(), all];
    let non_rack = [
        "t1-0, t1-1, t2-0, t2-1, t2-2, t3-0",
        "t1-2, t1-3, t2-3, t2-4, t3-1",
        "t1-4, t1-5, t2-5, t2-6",
    ];
    // No rack on one side, or every partition on every rack: plain ranges.
    check(
        &Range,
        &topics_with_racks(&spec, 3, &[None, None, None]),
        &consumers(&subs, &racks(3)),
        &non_rack,
        None,
    );
    check(
        &Range,
        &topics_with_racks(&spec, 3, &racks(3)),
        &consumers(&subs, &[None, None, None]),
        &non_rack,
        None,
    );
    check(
        &Range,
        &topics_with_racks(&spec, 3, &racks(3)),
        &consumers(&subs, &racks(3)),
        &non_rack,
        Some(0),
    );
    check(
        &Range,
        &topics_with_racks(&spec, 3, &racks(3)),
        &consumers(&subs, &[Some("d"), Some("e"), Some("f")]),
        &non_rack,
        None,
    );
    // Replicas on a subset of racks: rack-aligned ranges.
    check(
        &Range,
        &topics_with_racks(&spec, 1, &racks(3)),
        &consumers(&subs, &racks(3)),
        &[
            "t1-0, t1-3, t2-0, t2-3, t2-6",
            "t1-1, t1-4, t2-1, t2-4, t3-0",
            "t1-2, t1-5, t2-2, t2-5, t3-1",
        ],
        Some(0),
    );
    check(
        &Range,
        &topics_with_racks(&spec, 2, &racks(3)),
        &consumers(&subs, &racks(3)),
        &[
            "t1-0, t1-2, t2-0, t2-2, t2-3, t3-1",
            "t1-1, t1-3, t2-1, t2-4, t3-0",
            "t1-4, t1-5, t2-5, t2-6",
        ],
        Some(1),
    );
    // One consumer on a rack with no partitions.
    check(
        &Range,
        &topics_with_racks(&spec, 3, &racks(2)),
        &consumers(&subs, &racks(3)),
        &non_rack,
        Some(4),
    );
}

#[test]
fn range_rack_aware_non_equal_subscription() {
    // RangeAssignorTest.testRackAwareAssignmentWithNonEqualSubscription.
    let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
    let all = vec!["t1", "t2", "t3"];
    let subs = vec![all.clone(), all, vec!["t1", "t3"]];
    check(
        &Range,
        &topics_with_racks(&spec, 3, &racks(3)),
        &consumers(&subs, &racks(3)),
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-2, t2-3, t3-0",
            "t1-2, t1-3, t2-4, t2-5, t2-6, t3-1",
            "t1-4, t1-5",
        ],
        Some(0),
    );
    check(
        &Range,
        &topics_with_racks(&spec, 1, &racks(3)),
        &consumers(&subs, &racks(3)),
        &[
            "t1-0, t1-3, t2-0, t2-2, t2-3, t2-6",
            "t1-1, t1-4, t2-1, t2-4, t2-5, t3-0",
            "t1-2, t1-5, t3-1",
        ],
        Some(2),
    );
    check(
        &Range,
        &topics_with_racks(&spec, 2, &racks(3)),
        &consumers(&subs, &racks(3)),
        &[
            "t1-0, t1-2, t2-0, t2-2, t2-3, t2-5, t3-1",
            "t1-1, t1-3, t2-1, t2-4, t2-6, t3-0",
            "t1-4, t1-5",
        ],
        Some(0),
    );
}

#[test]
fn range_co_partitioning_comes_before_rack_alignment() {
    // RangeAssignorTest.testRackAwareAssignmentWithUniformPartitions and
    // testRackAwareAssignmentWithCoPartitioning.
    let spec = [("t1", 5), ("t2", 5), ("t3", 5)];
    let all = vec!["t1", "t2", "t3"];
    let subs = vec![all.clone(), all.clone(), all];
    let non_rack = [
        "t1-0, t1-1, t2-0, t2-1, t3-0, t3-1",
        "t1-2, t1-3, t2-2, t2-3, t3-2, t3-3",
        "t1-4, t2-4, t3-4",
    ];
    check(
        &Range,
        &topics_with_racks(&spec, 1, &racks(3)),
        &consumers(&subs, &racks(3)),
        &non_rack,
        Some(10),
    );
    check(
        &Range,
        &topics_with_racks(&spec, 2, &racks(3)),
        &consumers(&subs, &racks(3)),
        &non_rack,
        Some(5),
    );

    let spec = [("t1", 6), ("t2", 6), ("t3", 2), ("t4", 2)];
    let subs = vec![
        vec!["t1", "t2"],
        vec!["t1", "t2"],
        vec!["t3", "t4"],
        vec!["t3", "t4"],
    ];
    let crack = [Some("a"), Some("b"), Some("b"), Some("a")];
    check(
        &Range,
        &topics_with_racks(&spec, 1, &racks(2)),
        &consumers(&subs, &crack),
        &[
            "t1-0, t1-2, t1-4, t2-0, t2-2, t2-4",
            "t1-1, t1-3, t1-5, t2-1, t2-3, t2-5",
            "t3-1, t4-1",
            "t3-0, t4-0",
        ],
        Some(0),
    );
}

// ---------------------------------------------------------------------------------------------
// roundrobin

#[test]
fn roundrobin_java_cases() {
    // RoundRobinAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
    let topics = vec![TopicInfo::new("topic1", 3), TopicInfo::new("topic2", 3)];
    let members = vec![
        GroupMember::new("consumer1", &["topic1", "topic2"]),
        GroupMember::new("consumer2", &["topic1", "topic2"]),
    ];
    check(
        &RoundRobin,
        &topics,
        &members,
        &[
            "topic1-0, topic1-2, topic2-1",
            "topic1-1, topic2-0, topic2-2",
        ],
        None,
    );
    // testMultipleConsumersMixedTopics: a member not subscribed to a topic is skipped.
    let topics = vec![TopicInfo::new("topic1", 3), TopicInfo::new("topic2", 2)];
    let members = vec![
        GroupMember::new("consumer1", &["topic1"]),
        GroupMember::new("consumer2", &["topic1", "topic2"]),
        GroupMember::new("consumer3", &["topic1"]),
    ];
    check(
        &RoundRobin,
        &topics,
        &members,
        &["topic1-0", "topic1-1, topic2-0, topic2-1", "topic1-2"],
        None,
    );
    // Unknown topics are skipped (and reported), not an error.
    let members = vec![GroupMember::new("c", &["topic1", "nope"])];
    let plan = RoundRobin.assign(&members, &topics).unwrap();
    assert_eq!(plan.partitions_of(0, "topic1"), vec![0, 1, 2]);
    assert!(
        plan.warnings.iter().any(|w| w.contains("nope")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn duplicate_member_ids_are_an_error() {
    let topics = vec![TopicInfo::new("t", 1)];
    let members = vec![
        GroupMember::new("same", &["t"]),
        GroupMember::new("same", &["t"]),
    ];
    for b in [
        &Range as &dyn Balancer,
        &RoundRobin,
        &Sticky::default(),
        &CooperativeSticky,
    ] {
        assert!(matches!(
            b.assign(&members, &topics),
            Err(cohort_balancers::AssignError::DuplicateMember(_))
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// sticky and cooperative-sticky

#[test]
fn sticky_fresh_assignment_matches_java_round_robin_layout() {
    // AbstractStickyAssignorTest.testRackAwareAssignmentWithUniformSubscription: the same layout
    // without racks, and rack-aligned with replication factor 1.
    let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
    let all = vec!["t1", "t2", "t3"];
    let subs = vec![all.clone(), all.clone(), all];
    let expected = [
        "t1-0, t1-3, t2-0, t2-3, t2-6",
        "t1-1, t1-4, t2-1, t2-4, t3-0",
        "t1-2, t1-5, t2-2, t2-5, t3-1",
    ];
    for b in [&Sticky::default() as &dyn Balancer, &CooperativeSticky] {
        check(
            b,
            &topics_with_racks(&spec, 3, &[None, None, None]),
            &consumers(&subs, &racks(3)),
            &expected,
            None,
        );
        check(
            b,
            &topics_with_racks(&spec, 1, &racks(3)),
            &consumers(&subs, &racks(3)),
            &expected,
            Some(0),
        );
    }
}

#[test]
fn sticky_realigns_misaligned_owners() {
    // "Verify that rack-awareness is improved if already owned partitions are misaligned":
    // owners hold rack-misaligned partitions; the eager sticky assignor realigns them.
    let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
    let topics = topics_with_racks(&spec, 1, &racks(3));
    let all = vec!["t1", "t2", "t3"];
    let owned: [&[(&str, &[i32])]; 3] = [
        &[("t1", &[0, 1, 2, 3, 4])],
        &[("t1", &[5]), ("t2", &[0, 1, 2, 3])],
        &[("t2", &[4, 5, 6]), ("t3", &[0, 1])],
    ];
    let members: Vec<GroupMember> = (0..3)
        .map(|i| {
            let base = GroupMember::new(&format!("consumer{i}"), &all).with_rack(ALL_RACKS[i]);
            let ud = cohort_protocol::consumer_protocol::StickyUserData {
                previous_assignment: owned[i]
                    .iter()
                    .map(|(t, ps)| ((*t).to_owned().into(), ps.to_vec()))
                    .collect(),
                generation: Some(1),
            };
            base.with_user_data(ud.encode().unwrap())
        })
        .collect();
    check(
        &Sticky::default(),
        &topics,
        &members,
        &[
            "t1-0, t1-3, t2-0, t2-3, t2-6",
            "t1-1, t1-4, t2-1, t2-4, t3-0",
            "t1-2, t1-5, t2-2, t2-5, t3-1",
        ],
        Some(0),
    );
}

#[test]
fn kip54_example_1_member_leaves() {
    // KIP-54: C0, C1, C2 subscribe to t0..t3 (2 partitions each). When C1 leaves, C0 and C2 keep
    // everything they had and split C1's partitions.
    let topics: Vec<TopicInfo> = (0..4).map(|t| TopicInfo::new(format!("t{t}"), 2)).collect();
    let all = ["t0", "t1", "t2", "t3"];
    let members: Vec<GroupMember> = (0..3)
        .map(|i| GroupMember::new(&format!("C{i}"), &all))
        .collect();
    for b in [&Sticky::default() as &dyn Balancer, &CooperativeSticky] {
        let first = b.assign(&members, &topics).unwrap();
        assert_balanced(&first, &members);
        let next = vec![
            member_from_plan(&members[0], &first, 0, 1),
            member_from_plan(&members[2], &first, 2, 1),
        ];
        let second = b.assign(&next, &topics).unwrap();
        assert_complete_and_exclusive(&second, &next, &topics, false);
        for (i, orig) in [(0usize, 0usize), (1, 2)] {
            for g in &first.members[orig].partitions {
                assert!(
                    second.members[i].partitions.contains(g),
                    "{} lost a partition",
                    next[i].member_id
                );
            }
        }
        assert_eq!(second.members[0].partitions.len(), 4);
        assert_eq!(second.members[1].partitions.len(), 4);
    }
}

#[test]
fn kip54_example_2_unequal_subscriptions() {
    // KIP-54: C0 -> t0; C1 -> t0, t1; C2 -> t0, t1, t2 with 1, 2, 3 partitions. Sticky gives
    // C0 [t0p0], C1 [t1p0, t1p1], C2 [t2p0, t2p1, t2p2]; when C0 leaves, only t0p0 moves.
    let topics = vec![
        TopicInfo::new("t0", 1),
        TopicInfo::new("t1", 2),
        TopicInfo::new("t2", 3),
    ];
    let members = vec![
        GroupMember::new("C0", &["t0"]),
        GroupMember::new("C1", &["t0", "t1"]),
        GroupMember::new("C2", &["t0", "t1", "t2"]),
    ];
    let first = Sticky::default().assign(&members, &topics).unwrap();
    assert_eq!(sorted_string(&first, 0), "t0-0");
    assert_eq!(sorted_string(&first, 1), "t1-0, t1-1");
    assert_eq!(sorted_string(&first, 2), "t2-0, t2-1, t2-2");
    let next = vec![
        member_from_plan(&members[1], &first, 1, 1),
        member_from_plan(&members[2], &first, 2, 1),
    ];
    let second = Sticky::default().assign(&next, &topics).unwrap();
    assert_balanced(&second, &next);
    assert_eq!(sorted_string(&second, 0), "t0-0, t1-0, t1-1");
    assert_eq!(sorted_string(&second, 1), "t2-0, t2-1, t2-2");
}

#[test]
fn kip341_stale_generation_loses_to_current_claims() {
    // KIP-341: a member that was paused (GC) comes back claiming its old partitions with an old
    // generation; the members of the current generation keep what they own.
    let topics = vec![TopicInfo::new("t", 6)];
    let mk = |id: &str, owned: &[i32], generation: i32| {
        let ud = cohort_protocol::consumer_protocol::StickyUserData {
            previous_assignment: vec![("t".into(), owned.to_vec())],
            generation: Some(generation),
        };
        GroupMember::new(id, &["t"]).with_user_data(ud.encode().unwrap())
    };
    let members = vec![
        mk("C0", &[0, 1, 2], 5),
        mk("C1", &[3, 4, 5], 5),
        mk("zombie", &[0, 1, 3], 3),
    ];
    let plan = Sticky::default().assign(&members, &topics).unwrap();
    // Each current member keeps two of its three; the zombie gets the rest, none of which it
    // owned in generation 5's view.
    assert_eq!(plan.partitions_of(0, "t").len(), 2);
    assert_eq!(plan.partitions_of(1, "t").len(), 2);
    for p in plan.partitions_of(0, "t") {
        assert!([0, 1, 2].contains(&p));
    }
    for p in plan.partitions_of(1, "t") {
        assert!([3, 4, 5].contains(&p));
    }
    // v0 user data (no generation) counts as the default generation -1.
    let v0 = cohort_protocol::consumer_protocol::StickyUserData {
        previous_assignment: vec![("t".into(), vec![0, 1, 2, 3, 4, 5])],
        generation: None,
    };
    let members = vec![
        mk("C0", &[0, 1, 2], 1),
        GroupMember::new("old", &["t"]).with_user_data(v0.encode().unwrap()),
    ];
    let plan = Sticky::default().assign(&members, &topics).unwrap();
    assert_eq!(plan.partitions_of(0, "t"), vec![0, 1, 2]);
    assert_eq!(plan.partitions_of(1, "t"), vec![3, 4, 5]);
}

#[test]
fn cooperative_add_remove_consumer_one_topic() {
    // AbstractStickyAssignorTest.testAddRemoveConsumerOneTopic: consumer1 owns all 3, consumer2
    // joins: consumer1 keeps [0, 1]; topic-2 is withheld (transferring), then assigned.
    let topics = vec![TopicInfo::new("topic", 3)];
    let c1 = GroupMember::new("consumer1", &["topic"]).with_owned(&[("topic", &[0, 1, 2])], 1);
    let c2 = GroupMember::new("consumer2", &["topic"]).with_owned(&[], 1);
    let plan = CooperativeSticky
        .assign(&[c1.clone(), c2.clone()], &topics)
        .unwrap();
    assert_eq!(plan.partitions_of(0, "topic"), vec![0, 1]);
    assert_eq!(
        plan.partitions_of(1, "topic"),
        Vec::<i32>::new(),
        "topic-2 is revoked first"
    );
    // Next round: consumer1 owns [0, 1] at generation 2; consumer2 gets topic-2.
    let c1 = c1.with_owned(&[("topic", &[0, 1])], 2);
    let c2 = c2.with_owned(&[], 2);
    let plan = CooperativeSticky.assign(&[c1, c2], &topics).unwrap();
    assert_eq!(plan.partitions_of(0, "topic"), vec![0, 1]);
    assert_eq!(plan.partitions_of(1, "topic"), vec![2]);
}

#[test]
fn cooperative_partition_claimed_twice_in_one_generation_is_withheld() {
    // testPartitionsTransferringOwnershipIncludeThePartitionClaimedByMultipleConsumersInSameGeneration
    let topics = vec![TopicInfo::new("topic", 3)];
    let members = vec![
        GroupMember::new("consumer1", &["topic"]).with_owned(&[("topic", &[0, 1])], 1),
        GroupMember::new("consumer2", &["topic"]).with_owned(&[("topic", &[0, 2])], 1),
        GroupMember::new("consumer3", &["topic"]).with_owned(&[], 1),
    ];
    let plan = CooperativeSticky.assign(&members, &topics).unwrap();
    assert_eq!(plan.partitions_of(0, "topic"), vec![1]);
    assert_eq!(plan.partitions_of(1, "topic"), vec![2]);
    // topic-0 had two owners in the same generation: nobody keeps it, and it is not handed out
    // in this round either (either owner may still be consuming it).
    assert_eq!(plan.partitions_of(2, "topic"), Vec::<i32>::new());
}

#[test]
fn partitions_go_to_the_highest_generation() {
    // testEnsurePartitionsAssignedToHighestGeneration.
    let topics = vec![
        TopicInfo::new("topic", 3),
        TopicInfo::new("topic2", 3),
        TopicInfo::new("topic3", 3),
    ];
    let all = ["topic", "topic2", "topic3"];
    let members = vec![
        GroupMember::new("consumer1", &all)
            .with_owned(&[("topic", &[0]), ("topic2", &[0]), ("topic3", &[0])], 10),
        GroupMember::new("consumer2", &all)
            .with_owned(&[("topic", &[1]), ("topic2", &[1]), ("topic3", &[1])], 9),
        GroupMember::new("consumer3", &all).with_owned(&[("topic2", &[1]), ("topic3", &[0, 2])], 8),
    ];
    let plan = CooperativeSticky.assign(&members, &topics).unwrap();
    assert_eq!(sorted_string(&plan, 0), "topic-0, topic2-0, topic3-0");
    assert_eq!(sorted_string(&plan, 1), "topic-1, topic2-1, topic3-1");
    assert_eq!(sorted_string(&plan, 2), "topic-2, topic2-2, topic3-2");
}

#[test]
fn claims_outside_the_subscription_or_metadata_are_ignored() {
    // testOnlyAssignsPartitionsFromSubscribedTopics, plus a negative and an out-of-range
    // partition (franz-go 2f6d70e2: "ignore negative claimed partitions instead of panicking").
    let topics = vec![TopicInfo::new("topic", 2), TopicInfo::new("other", 2)];
    let members = vec![GroupMember::new("c", &["topic"]).with_owned(
        &[
            ("topic", &[0, 1, -3, 99]),
            ("other", &[0, 1]),
            ("gone", &[0]),
        ],
        1,
    )];
    let plan = CooperativeSticky.assign(&members, &topics).unwrap();
    assert_eq!(sorted_string(&plan, 0), "topic-0, topic-1");
    assert!(!plan.warnings.is_empty());
}

#[test]
fn poor_round_robin_scenario_is_balanced() {
    // testPoorRoundRobinAssignmentScenario.
    let topics: Vec<TopicInfo> = (1..=5)
        .map(|i| TopicInfo::new(format!("topic{i}"), (i % 2) + 1))
        .collect();
    let all = ["topic1", "topic2", "topic3", "topic4", "topic5"];
    let odd = ["topic1", "topic3", "topic5"];
    let members = vec![
        GroupMember::new("consumer1", &all),
        GroupMember::new("consumer2", &odd),
        GroupMember::new("consumer3", &odd),
        GroupMember::new("consumer4", &all),
    ];
    for b in [&Sticky::default() as &dyn Balancer, &CooperativeSticky] {
        let plan = b.assign(&members, &topics).unwrap();
        assert_complete_and_exclusive(&plan, &members, &topics, false);
        assert_balanced(&plan, &members);
        for i in 0..4 {
            assert_eq!(plan.members[i].partitions.len(), 2, "member {i}");
        }
    }
}

#[test]
fn reassignment_after_one_consumer_leaves_with_nested_subscriptions() {
    // testReassignmentAfterOneConsumerLeaves: 19 topics with 1..19 partitions, consumer i
    // subscribes to topics 1..i; consumer 10 leaves; the others keep everything.
    let topics: Vec<TopicInfo> = (1..20)
        .map(|i| TopicInfo::new(format!("topic{i:02}"), i))
        .collect();
    let members: Vec<GroupMember> = (1..20)
        .map(|i| {
            let ts: Vec<String> = (1..=i).map(|j| format!("topic{j:02}")).collect();
            let refs: Vec<&str> = ts.iter().map(String::as_str).collect();
            GroupMember::new(&format!("consumer{i:02}"), &refs)
        })
        .collect();
    for b in [&Sticky::default() as &dyn Balancer, &CooperativeSticky] {
        let first = b.assign(&members, &topics).unwrap();
        assert_balanced(&first, &members);
        let next: Vec<GroupMember> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 9)
            .map(|(i, m)| member_from_plan(m, &first, i, 1))
            .collect();
        let previous = cohort_balancers::metrics::previous_from_subscriptions(&next);
        let e = cohort_balancers::metrics::evaluate(b, &next, &topics, &previous).unwrap();
        assert_complete_and_exclusive(&e.stable, &next, &topics, false);
        assert_balanced(&e.stable, &next);
        assert_eq!(
            e.metrics.moved,
            e.metrics.moved_lower_bound,
            "{}",
            b.protocol_name()
        );
    }
}

#[test]
fn cooperative_withholds_partitions_claimed_after_their_topic_was_dropped() {
    // CooperativeStickyAssignor#computePartitionsTransferringOwnership counts every claim: a
    // member that stopped subscribing to `a` but still lists a-0 may be consuming it until it
    // sees its next assignment, so a-0 goes to nobody this round, and to a subscriber the next.
    let topics = vec![TopicInfo::new("a", 2), TopicInfo::new("b", 2)];
    let members = vec![
        GroupMember::new("c1", &["b"]).with_owned(&[("a", &[0]), ("b", &[0, 1])], 3),
        GroupMember::new("c2", &["a"]).with_owned(&[("a", &[1])], 3),
    ];
    let plan = CooperativeSticky.assign(&members, &topics).unwrap();
    assert_eq!(sorted_string(&plan, 0), "b-0, b-1");
    assert_eq!(sorted_string(&plan, 1), "a-1", "a-0 is withheld");
    let next = vec![
        GroupMember::new("c1", &["b"]).with_owned(&[("b", &[0, 1])], 4),
        GroupMember::new("c2", &["a"]).with_owned(&[("a", &[1])], 4),
    ];
    let plan = CooperativeSticky.assign(&next, &topics).unwrap();
    assert_eq!(sorted_string(&plan, 1), "a-0, a-1");
    // The eager sticky assignor revokes everything anyway: nothing to withhold.
    let plan = Sticky::default().assign(&members, &topics).unwrap();
    assert_eq!(sorted_string(&plan, 1), "a-0, a-1");
}

#[test]
fn a_newer_claim_on_a_dropped_topic_outranks_an_older_claim() {
    // AbstractStickyAssignor#allSubscriptionsEqual weighs every claim on a topic of the group:
    // c1 got t-0 in generation 11 and has since dropped `t`; c2's claim is from generation 10.
    // c1 is the owner, so the cooperative round hands t-0 to nobody until c1 has revoked it,
    // even to c2, which still lists it.
    let topics = vec![TopicInfo::new("t", 2), TopicInfo::new("u", 1)];
    let members = vec![
        GroupMember::new("c1", &["u"]).with_owned(&[("t", &[0]), ("u", &[0])], 11),
        GroupMember::new("c2", &["t"]).with_owned(&[("t", &[0, 1])], 10),
        GroupMember::new("c3", &["t"]),
    ];
    let plan = CooperativeSticky.assign(&members, &topics).unwrap();
    assert_eq!(sorted_string(&plan, 0), "u-0");
    assert!(
        (1..3).all(|m| !sorted_string(&plan, m).contains("t-0")),
        "t-0 is withheld: {} / {}",
        sorted_string(&plan, 1),
        sorted_string(&plan, 2)
    );
}

#[test]
fn a_member_without_a_rack_keeps_what_it_owns() {
    // RackInfo#racksMismatch: only a member with a rack can be on the wrong one. c2 has no rack,
    // so it keeps t-1 and t-3 although c1 (rack r1) could read t-1 locally: c1 takes the free
    // r1 partitions instead, and nothing moves.
    let on = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let topics = vec![TopicInfo::new("t", 6).with_racks(&[
        on(&["r1"]),
        on(&["r1", "r2"]),
        on(&["r1", "r0"]),
        on(&[]),
        on(&["r2"]),
        on(&["r1", "r2"]),
    ])];
    // The eager assignor reads ownership from its user data.
    let owning = |m: GroupMember, ps: &[i32]| {
        let ud = cohort_protocol::consumer_protocol::StickyUserData {
            previous_assignment: vec![("t".to_owned().into(), ps.to_vec())],
            generation: Some(7),
        };
        m.with_user_data(ud.encode().unwrap())
    };
    let members = vec![
        owning(GroupMember::new("c1", &["t"]).with_rack("r1"), &[0]),
        owning(GroupMember::new("c2", &["t"]), &[1, 3]),
    ];
    let plan = Sticky::default().assign(&members, &topics).unwrap();
    assert_eq!(sorted_string(&plan, 0), "t-0, t-2, t-5");
    assert_eq!(sorted_string(&plan, 1), "t-1, t-3, t-4");
}

#[test]
fn plans_from_maps_are_checked_against_subscriptions() {
    let topics = vec![TopicInfo::new("a", 2), TopicInfo::new("b", 1)];
    let members = vec![
        GroupMember::new("c1", &["a"]),
        GroupMember::new("c2", &["a", "b"]),
    ];
    let map = |c1: &[(&str, &[i32])], c2: &[(&str, &[i32])]| {
        let one = |e: &[(&str, &[i32])]| {
            e.iter()
                .map(|(t, ps)| ((*t).to_owned(), ps.to_vec()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        std::collections::BTreeMap::from([("c1".to_owned(), one(c1)), ("c2".to_owned(), one(c2))])
    };
    let ok = Plan::from_map(&members, &topics, &map(&[("a", &[0, 1])], &[("b", &[0])])).unwrap();
    assert_eq!(sorted_string(&ok, 0), "a-0, a-1");
    for (bad, why) in [
        (map(&[("b", &[0])], &[("a", &[0, 1])]), "does not subscribe"),
        (map(&[("a", &[0])], &[("a", &[0])]), "given twice"),
        (map(&[("a", &[2])], &[]), "no partition"),
        (map(&[("c", &[0])], &[]), "no topic"),
    ] {
        let err = Plan::from_map(&members, &topics, &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{err}");
    }
}

/// Found by the Java-agreement tool (`harness/tests/java_agreement.rs`, seed 20261204, group
/// 3390): Java's `StickyAssignor` moves nothing here. Members under the base share are filled
/// with rack-matched partitions before one that may take an extra: the member on rack r1 that
/// kept partition 6 took partition 0 before the empty member on r1 could, and gave up partition
/// 3 (no replica racks, so not matched) to stay within its share. Nothing moves now; and of
/// the extra partitions of the uneven split, one goes to the member without a rack, which holds
/// partition 5 (no replica racks) without a mismatch where Java gives it to a member with a rack
/// (KIP-881: locality before stickiness, and no partition moves for it here).
#[test]
fn rack_matched_partitions_fill_members_below_their_share_first() {
    use cohort_protocol::consumer_protocol::StickyUserData;
    let topics = [TopicInfo::new("orders", 7).with_racks(&[
        vec!["r1"],
        vec!["r2", "r0"],
        vec![],
        vec![],
        vec![],
        vec![],
        vec!["r0", "r1"],
    ])];
    let ud = |owned: &[i32], generation: i32| {
        StickyUserData {
            previous_assignment: if owned.is_empty() {
                Vec::new()
            } else {
                vec![("orders".into(), owned.to_vec())]
            },
            generation: Some(generation),
        }
        .encode()
        .unwrap()
    };
    let members = vec![
        GroupMember::new("consumer-15-7a6a4817", &["orders"])
            .with_rack("r1")
            .with_user_data(ud(&[], 19)),
        GroupMember::new("consumer-491-9ea5799a", &["orders"])
            .with_instance_id("instance-931")
            .with_rack("r1")
            .with_user_data(ud(&[3, 6], 19)),
        GroupMember::new("consumer-499-c66edda2", &["orders"])
            .with_instance_id("instance-800")
            .with_user_data(ud(&[4], 18)),
        GroupMember::new("consumer-577-ec808e7f", &["orders"])
            .with_rack("r2")
            .with_user_data(ud(&[], 18)),
        GroupMember::new("consumer-827-93c0f88a", &["orders"])
            .with_instance_id("instance-796")
            .with_rack("r9"),
    ];
    let plan = Sticky::default()
        .assign(&members, &topics)
        .unwrap()
        .to_map();
    assert_eq!(plan["consumer-491-9ea5799a"]["orders"], vec![3, 6]);
    assert_eq!(plan["consumer-499-c66edda2"]["orders"], vec![4, 5]);
    assert_eq!(plan["consumer-15-7a6a4817"]["orders"], vec![0]);
}

/// Found by the Java-agreement tool (generated group 3526 of seed 20261204): a class of members
/// subscribed to both topics keeps one `T1` partition, and two of its members own one. The first
/// in member order kept it although its four owned `t1` partitions already filled its share, and
/// the other, owning only `T1-2`, lost it: four partitions moved where Java's `StickyAssignor`
/// moves three. The member that can fill its share with other units yields the scarce one.
#[test]
fn a_member_keeps_the_scarce_unit_another_member_could_spare() {
    let topics = [TopicInfo::new("T1", 4), TopicInfo::new("t1", 7)];
    let ud = |owned: &[(&str, &[i32])]| sticky_user_data(owned, 6);
    let members = vec![
        GroupMember::new("consumer-97", &["T1"]).with_user_data(ud(&[])),
        GroupMember::new("consumer-211", &["t1"]),
        GroupMember::new("consumer-430", &["T1", "t1"])
            .with_user_data(ud(&[("T1", &[0]), ("t1", &[1, 2, 5, 6])])),
        GroupMember::new("consumer-454", &["T1", "t1"]).with_user_data(ud(&[("t1", &[0])])),
        GroupMember::new("consumer-943", &["T1"]).with_user_data(ud(&[("T1", &[1])])),
        GroupMember::new("consumer-973", &["t1", "T1"]).with_user_data(ud(&[("T1", &[2])])),
    ];
    let plan = Sticky::default()
        .assign(&members, &topics)
        .unwrap()
        .to_map();
    let owns = |m: &str, t: &str, p: i32| holds(&plan, m, t, p);
    assert!(owns("consumer-973", "T1", 2), "{plan:?}");
    assert!(owns("consumer-943", "T1", 1), "{plan:?}");
    assert!(owns("consumer-454", "t1", 0), "{plan:?}");
    // consumer-430 keeps two of its partitions and gives up the other three, T1-0 among them.
    let kept = [("T1", 0), ("t1", 1), ("t1", 2), ("t1", 5), ("t1", 6)]
        .iter()
        .filter(|(t, p)| owns("consumer-430", t, *p))
        .count();
    assert_eq!(kept, 2, "{plan:?}");
    assert!(!owns("consumer-430", "T1", 0), "{plan:?}");
}

/// Found by the Java-agreement tool (generated group 1330 of seed 20261204): two members own
/// partitions, one with `T1-0` and `orders-0` (its share), the other with three (one over).
/// Counting only what each subscription class keeps, keeping `t1-2` in the class of the two
/// looked as good as keeping `orders-0`; but only the member over its share owns `t1-2`, so
/// keeping it made the other lose `orders-0`: two partitions moved where Java's
/// `StickyAssignor` moves one. Small groups are settled member by member.
#[test]
fn the_class_keeps_the_units_its_members_can_keep() {
    let topics = [
        TopicInfo::new("T1", 1),
        TopicInfo::new("orders", 1),
        TopicInfo::new("t1", 3),
        TopicInfo::new("t10", 4),
    ];
    let ud = |owned: &[(&str, &[i32])]| sticky_user_data(owned, 8);
    let members = vec![
        GroupMember::new("consumer-72", &["orders", "T1", "t10", "t1"])
            .with_user_data(ud(&[("T1", &[0]), ("orders", &[0])])),
        GroupMember::new("consumer-94", &["T1", "t10"]).with_user_data(ud(&[])),
        GroupMember::new("consumer-253", &["t1", "orders"]).with_user_data(ud(&[])),
        GroupMember::new("consumer-515", &["T1", "orders", "t10", "t1"])
            .with_user_data(ud(&[("t1", &[2]), ("t10", &[1, 3])])),
        GroupMember::new("consumer-995", &["t1", "T1", "t10"]).with_user_data(ud(&[])),
    ];
    let plan = Sticky::default()
        .assign(&members, &topics)
        .unwrap()
        .to_map();
    let owns = |m: &str, t: &str, p: i32| holds(&plan, m, t, p);
    assert!(owns("consumer-72", "T1", 0), "{plan:?}");
    assert!(owns("consumer-72", "orders", 0), "{plan:?}");
    assert!(owns("consumer-515", "t10", 1), "{plan:?}");
    assert!(owns("consumer-515", "t10", 3), "{plan:?}");
    let sizes: Vec<usize> = plan
        .values()
        .map(|a| a.values().map(Vec::len).sum())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 9, "{plan:?}");
    assert!(sizes.iter().all(|&n| (1..=2).contains(&n)), "{plan:?}");
}

/// A sticky member's user data: what it owned, by topic, and its generation.
fn sticky_user_data(owned: &[(&str, &[i32])], generation: i32) -> bytes::Bytes {
    cohort_protocol::consumer_protocol::StickyUserData {
        previous_assignment: owned
            .iter()
            .map(|(t, ps)| (t.to_string().into(), ps.to_vec()))
            .collect(),
        generation: Some(generation),
    }
    .encode()
    .unwrap()
}

/// Whether member `m` holds partition `p` of topic `t` in a plan's map.
fn holds(
    plan: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<i32>>>,
    m: &str,
    t: &str,
    p: i32,
) -> bool {
    plan.get(m)
        .and_then(|a| a.get(t))
        .is_some_and(|ps| ps.contains(&p))
}

/// Two members of 100,000 partitions with different subscriptions: the settle's flow costs a
/// forced level at about `partitions^3` a unit and pushed 49,999 units at once, and its cost
/// total overflowed (a panic where overflow is checked, as in debug builds).
#[test]
fn a_large_two_member_group_settles_without_overflow() {
    let topics = [TopicInfo::new("a", 100_000), TopicInfo::new("b", 1)];
    let members = vec![
        GroupMember::new("m1", &["a", "b"]),
        GroupMember::new("m2", &["a"]),
    ];
    for plan in [
        Sticky::default().assign(&members, &topics).unwrap(),
        CooperativeSticky.assign(&members, &topics).unwrap(),
    ] {
        let mut sizes: Vec<usize> = plan
            .to_map()
            .values()
            .map(|a| a.values().map(Vec::len).sum())
            .collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [50_000, 50_001]);
    }
}

/// Found by the Java-agreement tool (generated group 2750 of seed 7): sticky, five members with
/// unequal subscriptions and racks. Java's `StickyAssignor` moves 4 partitions and leaves 16
/// off their replicas' racks. Realigning member by member (the all-topics member first given no
/// `t2` units by the class split, then its rack-matched owned partitions kept, free ones
/// matched, mismatched owned ones last) moved 6: the split cost its rack-matched `t2-2`, and
/// `orders-3` left a member on a rack no partition has for locality the split then wasted. One
/// flow over kinds of partitions (signature and replica racks) orders balance, locality and
/// moves as KIP-881 does: 4 moves, 15 off their racks.
#[test]
fn a_rack_aware_split_keeps_rack_matched_owned_partitions() {
    use cohort_protocol::consumer_protocol::StickyUserData;
    let orders: [&[&str]; 9] = [
        &["r2"],
        &["r1"],
        &[],
        &["r2", "r1"],
        &[],
        &["r0", "r1"],
        &["r1"],
        &["r2"],
        &["r2", "r0"],
    ];
    let t10: [&[&str]; 4] = [&["r2", "r0"], &[], &[], &["r1"]];
    let t2: [&[&str]; 9] = [
        &["r0", "r2"],
        &[],
        &["r2"],
        &["r0", "r1"],
        &[],
        &["r0"],
        &["r1", "r2"],
        &[],
        &[],
    ];
    let racks = |rs: &[&[&str]]| -> Vec<Vec<String>> {
        rs.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    let topics = [
        TopicInfo::new("orders", 9).with_racks(&racks(&orders)),
        TopicInfo::new("t10", 4).with_racks(&racks(&t10)),
        TopicInfo::new("t2", 9).with_racks(&racks(&t2)),
    ];
    let ud = |owned: &[(&str, &[i32])]| {
        StickyUserData {
            previous_assignment: owned
                .iter()
                .map(|(t, ps)| (t.to_string().into(), ps.to_vec()))
                .collect(),
            generation: Some(9),
        }
        .encode()
        .unwrap()
    };
    let members = vec![
        GroupMember::new("consumer-5-58eb59bd", &["t10", "orders"]).with_rack("r9"),
        GroupMember::new("consumer-507-d14d8ea9", &["t2"])
            .with_rack("r1")
            .with_user_data(ud(&[("t2", &[5, 8])])),
        GroupMember::new("consumer-591-f42f4d8b", &["t10", "orders"])
            .with_rack("r9")
            .with_user_data(ud(&[("orders", &[2, 3]), ("t10", &[3])])),
        GroupMember::new("consumer-828-529f3e4b", &["t2", "t10", "orders"])
            .with_rack("r2")
            .with_user_data(ud(&[
                ("orders", &[1, 6, 8]),
                ("t10", &[0, 1]),
                ("t2", &[2, 7]),
            ])),
        GroupMember::new("consumer-990-0c4cb712", &["t2"])
            .with_instance_id("instance-76")
            .with_rack("r1"),
    ];
    let previous: Vec<(&str, &str, i32)> = vec![
        ("consumer-507-d14d8ea9", "t2", 5),
        ("consumer-507-d14d8ea9", "t2", 8),
        ("consumer-591-f42f4d8b", "orders", 2),
        ("consumer-591-f42f4d8b", "orders", 3),
        ("consumer-591-f42f4d8b", "t10", 3),
        ("consumer-828-529f3e4b", "orders", 1),
        ("consumer-828-529f3e4b", "orders", 6),
        ("consumer-828-529f3e4b", "orders", 8),
        ("consumer-828-529f3e4b", "t10", 0),
        ("consumer-828-529f3e4b", "t10", 1),
        ("consumer-828-529f3e4b", "t2", 2),
        ("consumer-828-529f3e4b", "t2", 7),
    ];
    let plan = Sticky::default()
        .assign(&members, &topics)
        .unwrap()
        .to_map();
    let held = |m: &str, t: &str, p: i32| plan[m].get(t).is_some_and(|ps| ps.contains(&p));
    let moved = previous.iter().filter(|&&(m, t, p)| !held(m, t, p)).count();
    let rack_of = |m: &str| match m {
        "consumer-507-d14d8ea9" | "consumer-990-0c4cb712" => "r1",
        "consumer-828-529f3e4b" => "r2",
        _ => "r9",
    };
    let replicas = |t: &str, p: i32| -> &[&str] {
        match t {
            "orders" => orders[p as usize],
            "t10" => t10[p as usize],
            _ => t2[p as usize],
        }
    };
    let mut off_rack = 0;
    let mut loads = Vec::new();
    for (m, ts) in &plan {
        let rack = rack_of(m);
        loads.push(ts.values().map(Vec::len).sum::<usize>());
        for (t, ps) in ts {
            off_rack += ps
                .iter()
                .filter(|&&p| !replicas(t, p).contains(&rack))
                .count();
        }
    }
    loads.sort_unstable();
    assert_eq!(loads, vec![4, 4, 4, 5, 5]);
    assert_eq!((moved, off_rack), (4, 15), "{plan:?}");
    assert!(held("consumer-828-529f3e4b", "t2", 2));
}
