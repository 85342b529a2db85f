//! User data through the same path as a group leader: each balancer's subscription user data
//! encoded by the member, carried in a version-prefixed subscription, decoded by the leader.

use bytes::Bytes;
use cohort_balancers::{
    Balancer, CooperativeSticky, GroupMember, MemberState, Sticky, TopicInfo, WeightedSticky,
    decode_weight,
};
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, OwnedTopicPartitions, StickyUserData,
    decode_subscription, encode_subscription,
};

/// A member's subscription as it crosses the wire at `version`.
fn through_the_wire(
    sub: ConsumerProtocolSubscription,
    version: i16,
) -> ConsumerProtocolSubscription {
    decode_subscription(encode_subscription(&sub, version).unwrap())
        .unwrap()
        .1
}

fn member(
    id: &str,
    b: &dyn Balancer,
    owned: &[OwnedTopicPartitions],
    generation: i32,
    version: i16,
) -> GroupMember {
    let topics = vec!["t".into()];
    let ud = b.user_data(&MemberState {
        topics: &topics,
        owned,
        generation,
        rack: None,
    });
    let sub = ConsumerProtocolSubscription {
        topics: topics.into(),
        user_data: ud,
        owned_partitions: owned.to_vec(),
        generation_id: generation,
        rack_id: None,
    };
    GroupMember {
        member_id: id.to_owned().into(),
        group_instance_id: None,
        subscription: through_the_wire(sub, version),
    }
}

#[test]
fn sticky_remembers_its_assignment_through_on_assignment() {
    let topics = vec![TopicInfo::new("t", 4)];
    let mut b1 = Sticky::default();
    b1.on_assignment(
        &ConsumerProtocolAssignment {
            assigned_partitions: vec![
                cohort_protocol::consumer_protocol::AssignedTopicPartitions {
                    topic: "t".into(),
                    partitions: vec![1, 3],
                },
            ],
            user_data: None,
        },
        7,
    );
    // Eager members revoke everything before joining: nothing owned, the memory is in the
    // user data (v1: previous assignment + generation, KIP-341).
    let m1 = member("m1", &b1, &[], -1, 0);
    let ud = StickyUserData::decode(m1.subscription.user_data.as_ref()).unwrap();
    assert_eq!(ud.generation, Some(7));
    assert_eq!(ud.previous_assignment, vec![("t".into(), vec![1, 3])]);
    let m2 = member("m2", &Sticky::default(), &[], -1, 0);
    let plan = b1.assign(&[m1, m2], &topics).unwrap();
    assert_eq!(plan.partitions_of(0, "t"), vec![1, 3]);
    assert_eq!(plan.partitions_of(1, "t"), vec![0, 2]);
}

#[test]
fn cooperative_generation_travels_in_user_data_and_v2_field() {
    let topics = vec![TopicInfo::new("t", 4)];
    let owned = |ps: &[i32]| {
        vec![OwnedTopicPartitions {
            topic: "t".into(),
            partitions: ps.to_vec(),
        }]
    };
    // v1 subscriptions carry no generation field: the cooperative user data gives it. m1 (gen 5)
    // and m2 (gen 4) both claim partition 0; m1's claim wins.
    let m1 = member("m1", &CooperativeSticky, &owned(&[0, 1]), 5, 1);
    let m2 = member("m2", &CooperativeSticky, &owned(&[0, 2]), 4, 1);
    assert_eq!(m1.subscription.generation_id, -1, "v1 has no GenerationId");
    let plan = CooperativeSticky.assign(&[m1, m2], &topics).unwrap();
    assert!(plan.partitions_of(0, "t").contains(&0));
    assert!(!plan.partitions_of(1, "t").contains(&0));
}

#[test]
fn unparsable_sticky_user_data_means_no_previous_assignment() {
    // Java StickyAssignor: user data that cannot be parsed is ignored, never fatal.
    let topics = vec![TopicInfo::new("t", 2)];
    let garbage = GroupMember::new("g", &["t"])
        .with_user_data(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0xde, 0xad]));
    let other = GroupMember::new("o", &["t"]);
    let plan = Sticky::default()
        .assign(&[garbage, other], &topics)
        .unwrap();
    assert_eq!(plan.members[0].partitions.len(), 1);
    assert_eq!(plan.members[1].partitions.len(), 1);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("could not be parsed")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn weighted_user_data_and_a_newer_subscription_version() {
    let b = WeightedSticky::new(3);
    let m = member("m", &b, &[], 2, 3);
    assert_eq!(decode_weight(m.subscription.user_data.as_ref()), 3);
    // A subscription from a future client version (v9) still decodes, user data intact.
    let sub = ConsumerProtocolSubscription {
        topics: vec!["t".into()].into(),
        user_data: m.subscription.user_data.clone(),
        ..Default::default()
    };
    let mut bytes = encode_subscription(&sub, 3).unwrap().to_vec();
    bytes[0..2].copy_from_slice(&9i16.to_be_bytes());
    bytes.extend_from_slice(b"unknown future fields");
    let (v, back) = decode_subscription(Bytes::from(bytes)).unwrap();
    assert_eq!(v, 9);
    assert_eq!(decode_weight(back.user_data.as_ref()), 3);
}
